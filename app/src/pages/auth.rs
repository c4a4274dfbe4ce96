//! Signing up, confirming, logging in and out, passwords, the waitlist.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_query_map};
use shared::ApiError;
use shared::ErrorCode;

use crate::api;
use crate::components::forms::{FieldError, FormError, Notice};
use crate::session::{home_of, use_session};

fn token_from_query() -> Option<String> {
    use_query_map()
        .get_untracked()
        .get("token")
        .filter(|t| !t.is_empty())
}

#[component]
pub fn Signup() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let done = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        error.set(None);
        let navigate = navigate.clone();
        spawn_local(async move {
            let (email, password) = (email.get_untracked(), password.get_untracked());
            match api::signup(email.clone(), password.clone()).await {
                // The first account of an Airplane Mode Scopehub: straight in.
                Ok(accepted) if accepted.can_log_in => match api::login(email, password).await {
                    Ok(me) => {
                        let home = home_of(&me);
                        session.set(me);
                        navigate(&home, Default::default());
                    }
                    Err(e) => error.set(Some(e)),
                },
                Ok(accepted) => done.set(Some(accepted.message)),
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    view! {
        <section class="auth">
            <h1>"Sign up"</h1>
            <Notice message=done />
            <Show when=move || done.get().is_none()>
                <form on:submit=submit.clone()>
                    <label>"Email" <input id="signup-email" type="email" autocomplete="email" required
                        prop:value=email on:input=move |ev| email.set(event_target_value(&ev)) /></label>
                    <FieldError error=error name="email" />
                    <label>"Password (at least 10 characters)" <input id="signup-password" type="password"
                        autocomplete="new-password" required minlength="10"
                        prop:value=password on:input=move |ev| password.set(event_target_value(&ev)) /></label>
                    <FieldError error=error name="password" />
                    <FormError error=error />
                    <button type="submit" disabled=move || busy.get()>"Sign up"</button>
                </form>
            </Show>
            <p>"Already have an account? " <A href="/login">"Log in"</A></p>
        </section>
    }
}

#[component]
pub fn Verify() -> impl IntoView {
    let error = RwSignal::new(None::<ApiError>);
    let done = RwSignal::new(None::<String>);
    match token_from_query() {
        Some(token) => spawn_local(async move {
            match api::verify(token).await {
                Ok(accepted) => done.set(Some(accepted.message)),
                Err(e) => error.set(Some(e)),
            }
        }),
        None => error.set(Some(ApiError::new(
            ErrorCode::BadRequest,
            "This link has no token.",
        ))),
    }
    view! {
        <section class="auth">
            <h1>"Confirm your email"</h1>
            <Show when=move || done.get().is_none() && error.get().is_none()>
                <p class="loading" role="status">"Confirming…"</p>
            </Show>
            <Notice message=done />
            <FormError error=error />
            <p><A href="/login">"Log in"</A></p>
        </section>
    }
}

#[component]
pub fn Login() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let notice = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let next = use_query_map()
        .get_untracked()
        .get("next")
        .and_then(|n| same_origin_path(&n));
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        error.set(None);
        let navigate = navigate.clone();
        let next = next.clone();
        spawn_local(async move {
            match api::login(email.get_untracked(), password.get_untracked()).await {
                Ok(me) => {
                    let target = next.unwrap_or_else(|| home_of(&me));
                    session.set(me);
                    navigate(&target, Default::default());
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    let resend = move |_| {
        spawn_local(async move {
            match api::resend_verification(email.get_untracked()).await {
                Ok(a) => {
                    error.set(None);
                    notice.set(Some(a.message));
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let link = move |_| {
        spawn_local(async move {
            match api::request_login_link(email.get_untracked()).await {
                Ok(a) => {
                    error.set(None);
                    notice.set(Some(a.message));
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <section class="auth">
            <h1>"Log in"</h1>
            <Notice message=notice />
            <form on:submit=submit>
                <label>"Email" <input id="login-email" type="email" autocomplete="email" required
                    prop:value=email on:input=move |ev| email.set(event_target_value(&ev)) /></label>
                <FieldError error=error name="email" />
                <label>"Password" <input id="login-password" type="password" autocomplete="current-password"
                    prop:value=password on:input=move |ev| password.set(event_target_value(&ev)) /></label>
                <FieldError error=error name="password" />
                <FormError error=error />
                <Show when=move || error.get().is_some_and(|e| e.code == ErrorCode::EmailNotVerified)>
                    <button type="button" class="secondary" on:click=resend>"Send a new confirmation link"</button>
                </Show>
                <button type="submit" disabled=move || busy.get()>"Log in"</button>
                <button type="button" class="secondary" on:click=link>"Email me a login link instead"</button>
            </form>
            <p><A href="/forgot-password">"Forgot your password?"</A> " · " <A href="/signup">"Sign up"</A></p>
        </section>
    }
}

#[component]
pub fn LoginLink() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let error = RwSignal::new(None::<ApiError>);
    match token_from_query() {
        Some(token) => spawn_local(async move {
            match api::consume_login_link(token).await {
                Ok(me) => {
                    let target = home_of(&me);
                    session.set(me);
                    navigate(&target, Default::default());
                }
                Err(e) => error.set(Some(e)),
            }
        }),
        None => error.set(Some(ApiError::new(
            ErrorCode::BadRequest,
            "This link has no token.",
        ))),
    }
    view! {
        <section class="auth">
            <h1>"Logging you in"</h1>
            <Show when=move || error.get().is_none()>
                <p class="loading" role="status">"Checking the link…"</p>
            </Show>
            <FormError error=error />
            <p><A href="/login">"Log in another way"</A></p>
        </section>
    }
}

#[component]
pub fn ForgotPassword() -> impl IntoView {
    let email = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let done = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        spawn_local(async move {
            match api::forgot_password(email.get_untracked()).await {
                Ok(a) => {
                    error.set(None);
                    done.set(Some(a.message));
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <section class="auth">
            <h1>"Reset your password"</h1>
            <Notice message=done />
            <form on:submit=submit>
                <label>"Email" <input id="forgot-email" type="email" required
                    prop:value=email on:input=move |ev| email.set(event_target_value(&ev)) /></label>
                <FieldError error=error name="email" />
                <FormError error=error />
                <button type="submit">"Email me a reset link"</button>
            </form>
        </section>
    }
}

#[component]
pub fn ResetPassword() -> impl IntoView {
    let token = token_from_query().unwrap_or_default();
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let done = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let token = token.clone();
        spawn_local(async move {
            match api::reset_password(token, password.get_untracked()).await {
                Ok(a) => {
                    error.set(None);
                    done.set(Some(a.message));
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <section class="auth">
            <h1>"Choose a new password"</h1>
            <Notice message=done />
            <Show when=move || done.get().is_none()>
                <form on:submit=submit.clone()>
                    <label>"New password (at least 10 characters)" <input id="reset-password" type="password"
                        autocomplete="new-password" required minlength="10"
                        prop:value=password on:input=move |ev| password.set(event_target_value(&ev)) /></label>
                    <FieldError error=error name="password" />
                    <FieldError error=error name="token" />
                    <FormError error=error />
                    <button type="submit">"Change password"</button>
                </form>
            </Show>
            <p><A href="/login">"Log in"</A></p>
        </section>
    }
}

/// "You're on the list": all a waitlisted account can see.
#[component]
pub fn Waitlist() -> impl IntoView {
    let session = use_session();
    let email = move || {
        session
            .me
            .with(|m| m.as_ref().map(|m| m.user.email.clone()).unwrap_or_default())
    };
    view! {
        <section class="auth waitlist">
            <h1>"You're on the list"</h1>
            <p>"Thanks for confirming " <strong>{email}</strong> ". Scopehub is in early access: an administrator will "
               "review your request, and we will email you as soon as you are in."</p>
        </section>
    }
}

/// `next` as a path of this site, resolved as the browser resolves it (so `/\evil.example`, which
/// browsers read as `//evil.example`, or `/<tab>/evil.example` are seen for what they are); `None`
/// when it leads anywhere else.
fn same_origin_path(next: &str) -> Option<String> {
    let origin = window().location().origin().ok()?;
    let url = web_sys::Url::new_with_base(next, &origin).ok()?;
    (url.origin() == origin).then(|| format!("{}{}{}", url.pathname(), url.search(), url.hash()))
}
