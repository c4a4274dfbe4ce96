//! The account page: change password, sessions, log out everywhere.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::ApiError;

use crate::api;
use crate::components::async_view::{ErrorNotice, Loading};
use crate::components::forms::{FieldError, FormError, Notice, when};
use crate::session::use_session;

#[component]
pub fn Account() -> impl IntoView {
    let session = use_session();
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let done = RwSignal::new(None::<String>);
    let sessions = LocalResource::new(api::sessions);
    let list_error = RwSignal::new(None::<ApiError>);

    let change = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        spawn_local(async move {
            match api::change_password(current.get_untracked(), new.get_untracked()).await {
                Ok(()) => {
                    error.set(None);
                    current.set(String::new());
                    new.set(String::new());
                    done.set(Some(
                        "Password changed. Your other sessions were logged out.".into(),
                    ));
                    sessions.refetch();
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let revoke_tokens = RwSignal::new(false);
    let everywhere = move |_| {
        spawn_local(async move {
            let _ = api::logout_everywhere(revoke_tokens.get_untracked()).await;
            session.leave();
        });
    };
    view! {
        <section class="account">
            <h1>"Your account"</h1>
            <p>{move || session.me.with(|m| m.as_ref().map(|m| m.user.email.clone()))}</p>

            <h2>"Change password"</h2>
            <Notice message=done />
            <form on:submit=change>
                <label>"Current password" <input type="password" autocomplete="current-password"
                    prop:value=current on:input=move |ev| current.set(event_target_value(&ev)) /></label>
                <FieldError error=error name="current_password" />
                <label>"New password" <input type="password" autocomplete="new-password" minlength="10"
                    prop:value=new on:input=move |ev| new.set(event_target_value(&ev)) /></label>
                <FieldError error=error name="new_password" />
                <FormError error=error />
                <button type="submit">"Change password"</button>
            </form>

            <h2>"Sessions"</h2>
            <FormError error=list_error />
            <Suspense fallback=|| view! { <Loading what="sessions" /> }>
                {move || sessions.get().map(|result| match result {
                    Err(e) => view! { <ErrorNotice error=e /> }.into_any(),
                    Ok(list) => view! {
                        <table class="list" id="sessions">
                            <thead><tr><th>"Started"</th><th>"Last active"</th><th>"Browser"</th><th>"Address"</th><th></th></tr></thead>
                            <tbody>
                                {list.into_iter().map(|s| {
                                    let id = s.id.clone();
                                    let revoke = move |_| {
                                        let id = id.clone();
                                        spawn_local(async move {
                                            match api::revoke_session(id).await {
                                                Ok(()) => sessions.refetch(),
                                                Err(e) => list_error.set(Some(e)),
                                            }
                                        });
                                    };
                                    view! {
                                        <tr>
                                            <td>{when(s.created_at)}</td>
                                            <td>{when(s.last_seen_at)}</td>
                                            <td>{s.user_agent.clone().unwrap_or_default()}</td>
                                            <td>{s.ip.clone().unwrap_or_default()}</td>
                                            <td>{if s.current {
                                                view! { <span class="badge">"this session"</span> }.into_any()
                                            } else {
                                                view! { <button type="button" class="secondary" on:click=revoke>"Revoke"</button> }.into_any()
                                            }}</td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                })}
            </Suspense>
            <label><input type="checkbox" id="revoke-api-tokens" prop:checked=revoke_tokens
                on:change=move |ev| revoke_tokens.set(event_target_checked(&ev)) />
                " Also revoke my API tokens"</label>
            <button type="button" class="danger" on:click=everywhere>"Log out everywhere"</button>
        </section>
    }
}
