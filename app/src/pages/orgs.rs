//! Orgs: the list, one org's members and invites, and accepting an invite.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};
use shared::users::Role;
use shared::{ApiError, ErrorCode};

use crate::api;
use crate::components::async_view::{ErrorNotice, Loading};
use crate::components::copy::CopyField;
use crate::components::forms::{FieldError, FormError, Notice, when};
use crate::session::use_session;

fn role_of(value: &str) -> Role {
    Role::parse(value).unwrap_or(Role::Viewer)
}

#[component]
pub fn Orgs() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let name = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let navigate = navigate.clone();
        spawn_local(async move {
            match api::create_org(name.get_untracked()).await {
                Ok(org) => {
                    session.reload().await;
                    navigate(&format!("/orgs/{}", org.id), Default::default());
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <section class="orgs">
            <h1>"Your orgs"</h1>
            <ul class="org-list">
                {move || session.me.with(|m| m.as_ref().map(|m| m.orgs.clone()).unwrap_or_default()).into_iter().map(|o| view! {
                    <li><A href=format!("/orgs/{}", o.id)>{o.name.clone()}</A> " " <span class="badge">{o.role.as_str()}</span></li>
                }).collect_view()}
            </ul>
            <h2>"New org"</h2>
            <form on:submit=create>
                <label>"Name" <input type="text" maxlength="80" prop:value=name on:input=move |ev| name.set(event_target_value(&ev)) /></label>
                <FieldError error=error name="name" />
                <FormError error=error />
                <button type="submit">"Create org"</button>
            </form>
        </section>
    }
}

#[component]
pub fn Org() -> impl IntoView {
    let session = use_session();
    let params = use_params_map();
    let org_id = move || params.with(|p| p.get("id").unwrap_or_default());
    let my_role = move || {
        let id = org_id();
        session.me.with(|m| {
            m.as_ref()
                .and_then(|m| m.orgs.iter().find(|o| o.id == id).map(|o| o.role))
        })
    };
    let org_name = move || {
        let id = org_id();
        session.me.with(|m| {
            m.as_ref()
                .and_then(|m| m.orgs.iter().find(|o| o.id == id).map(|o| o.name.clone()))
        })
    };
    let is_admin = move || my_role() == Some(Role::Admin);
    let members = LocalResource::new(move || api::members(org_id()));
    let invites = LocalResource::new(move || {
        let id = org_id();
        async move {
            if is_admin() {
                api::invites(id).await.map(Some)
            } else {
                Ok(None)
            }
        }
    });
    let action_error = RwSignal::new(None::<ApiError>);

    // Rename.
    let new_name = RwSignal::new(String::new());
    let rename_error = RwSignal::new(None::<ApiError>);
    let rename = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        spawn_local(async move {
            match api::rename_org(org_id(), new_name.get_untracked()).await {
                Ok(_) => {
                    rename_error.set(None);
                    new_name.set(String::new());
                    session.refresh();
                }
                Err(e) => rename_error.set(Some(e)),
            }
        });
    };

    // Invite.
    let invite_email = RwSignal::new(String::new());
    let invite_role = RwSignal::new("viewer".to_owned());
    let invite_error = RwSignal::new(None::<ApiError>);
    let invite_link = RwSignal::new(None::<String>);
    let invite = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        spawn_local(async move {
            match api::invite(
                org_id(),
                invite_email.get_untracked(),
                role_of(&invite_role.get_untracked()),
            )
            .await
            {
                Ok(created) => {
                    invite_error.set(None);
                    invite_email.set(String::new());
                    invite_link.set(created.link);
                    invites.refetch();
                }
                Err(e) => invite_error.set(Some(e)),
            }
        });
    };

    Effect::new(move |_| session.current_org.set(Some(org_id())));
    // An org that does not exist or that the caller may not see: one message, nothing else.
    let missing = move || {
        members.with(|m| {
            matches!(m, Some(Err(e)) if matches!(e.code, ErrorCode::NotFound | ErrorCode::Forbidden))
        })
    };
    view! {
        <section class="org">
          <Show when=move || !missing() fallback=|| view! {
              <h1>"Org not found"</h1>
              <p class="error-notice" role="alert" id="org-missing">"This org does not exist, or you are not a member of it."</p>
              <p><A href="/orgs">"Your orgs"</A></p>
          }>
            <h1 id="org-name">{move || org_name().unwrap_or_else(|| "Org".into())}</h1>
            {move || my_role().map(|r| view! {
                <p>"Your role: " <span class="badge" id="my-role">{r.as_str()}</span></p>
            })}
            <FormError error=action_error />

            <crate::pages::instances::OrgInstances org=Signal::derive(org_id) role=Signal::derive(my_role) />

            <h2>"Members"</h2>
            <Suspense fallback=|| view! { <Loading what="members" /> }>
                {move || members.get().map(|result| match result {
                    Err(e) => view! { <ErrorNotice error=e /> }.into_any(),
                    Ok(list) => view! {
                        <table class="list" id="members">
                            <thead><tr><th>"Email"</th><th>"Role"</th><th>"Joined"</th><th></th></tr></thead>
                            <tbody>
                                {list.into_iter().map(|m| {
                                    let me = session.me.with_untracked(|s| s.as_ref().map(|s| s.user.id.clone())) == Some(m.user_id.clone());
                                    let user = m.user_id.clone();
                                    let user2 = m.user_id.clone();
                                    let change = move |ev: leptos::ev::Event| {
                                        let role = role_of(&event_target_value(&ev));
                                        let user = user.clone();
                                        spawn_local(async move {
                                            match api::change_role(org_id(), user, role).await {
                                                Ok(()) => { action_error.set(None); members.refetch(); session.refresh(); }
                                                Err(e) => { action_error.set(Some(e)); members.refetch(); }
                                            }
                                        });
                                    };
                                    let remove = move |_| {
                                        let user = user2.clone();
                                        spawn_local(async move {
                                            match api::remove_member(org_id(), user).await {
                                                Ok(()) => { action_error.set(None); members.refetch(); session.refresh(); }
                                                Err(e) => action_error.set(Some(e)),
                                            }
                                        });
                                    };
                                    let role = m.role;
                                    view! {
                                        <tr>
                                            <td class="member-email">{m.email.clone()}</td>
                                            <td>{if is_admin() {
                                                view! {
                                                    <select aria-label="Role" on:change=change>
                                                        {[Role::Viewer, Role::Editor, Role::Admin].into_iter().map(|r| view! {
                                                            <option value=r.as_str() selected=r == role>{r.as_str()}</option>
                                                        }).collect_view()}
                                                    </select>
                                                }.into_any()
                                            } else {
                                                view! { <span class="badge">{role.as_str()}</span> }.into_any()
                                            }}</td>
                                            <td>{when(m.joined_at)}</td>
                                            <td>{(is_admin() || me).then(|| view! {
                                                <button type="button" class="secondary" on:click=remove>{if me { "Leave" } else { "Remove" }}</button>
                                            })}</td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                })}
            </Suspense>

            <Show when=is_admin>
                <h2>"Invite a teammate"</h2>
                <form on:submit=invite id="invite-form">
                    <label>"Email" <input id="invite-email" type="email" required prop:value=invite_email
                        on:input=move |ev| invite_email.set(event_target_value(&ev)) /></label>
                    <FieldError error=invite_error name="email" />
                    <label>"Role" <select id="invite-role" on:change=move |ev| invite_role.set(event_target_value(&ev))>
                        <option value="viewer" selected=true>"viewer"</option>
                        <option value="editor">"editor"</option>
                        <option value="admin">"admin"</option>
                    </select></label>
                    <FormError error=invite_error />
                    <button type="submit">"Send invite"</button>
                </form>
                {move || invite_link.get().map(|link| view! {
                    <div class="notice" role="status"><p>"Invite sent. You can also copy the link (only the invited address can accept it):"</p>
                        <CopyField id="invite-link" value=link what="the invite link" wide=true /></div>
                })}

                <h2>"Invites"</h2>
                <Suspense fallback=|| view! { <Loading what="invites" /> }>
                    {move || invites.get().map(|result| match result {
                        Err(e) => view! { <ErrorNotice error=e /> }.into_any(),
                        Ok(list) => view! {
                            <table class="list" id="invites">
                                <thead><tr><th>"Email"</th><th>"Role"</th><th>"State"</th><th>"Expires"</th><th></th></tr></thead>
                                <tbody>
                                    {list.unwrap_or_default().into_iter().map(|i| {
                                        let id = i.id.clone();
                                        let revoke = move |_| {
                                            let id = id.clone();
                                            spawn_local(async move {
                                                match api::revoke_invite(org_id(), id).await {
                                                    Ok(()) => invites.refetch(),
                                                    Err(e) => action_error.set(Some(e)),
                                                }
                                            });
                                        };
                                        let pending = i.state == "pending";
                                        view! {
                                            <tr>
                                                <td>{i.email.clone()}</td>
                                                <td>{i.role.as_str()}</td>
                                                <td><span class="badge">{i.state.clone()}</span></td>
                                                <td>{when(i.expires_at)}</td>
                                                <td>{pending.then(|| view! { <button type="button" class="secondary" on:click=revoke>"Revoke"</button> })}</td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                    })}
                </Suspense>

                <h2>"Rename"</h2>
                <form on:submit=rename>
                    <label>"New name" <input type="text" maxlength="80" prop:value=new_name
                        on:input=move |ev| new_name.set(event_target_value(&ev)) /></label>
                    <FieldError error=rename_error name="name" />
                    <FormError error=rename_error />
                    <button type="submit">"Rename org"</button>
                </form>
                <p><A href=move || format!("/orgs/{}/audit", org_id())>"Audit log"</A></p>
            </Show>
          </Show>
        </section>
    }
}

#[component]
pub fn OrgAudit() -> impl IntoView {
    let params = use_params_map();
    let org_id = move || params.with(|p| p.get("id").unwrap_or_default());
    let events = LocalResource::new(move || api::org_audit(org_id()));
    view! {
        <section>
            <h1>"Audit log"</h1>
            <Suspense fallback=|| view! { <Loading what="events" /> }>
                {move || events.get().map(|result| match result {
                    Err(e) => view! { <ErrorNotice error=e /> }.into_any(),
                    Ok(list) => view! { <crate::pages::admin::AuditTable events=list /> }.into_any(),
                })}
            </Suspense>
        </section>
    }
}

/// `/invite?token=…`: see the invite and accept it.
#[component]
pub fn Invite() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let token = use_query_map()
        .get_untracked()
        .get("token")
        .unwrap_or_default();
    let preview = LocalResource::new({
        let token = token.clone();
        move || api::preview_invite(token.clone())
    });
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let done = RwSignal::new(None::<String>);
    let accept = move |with_password: bool| {
        let token = token.clone();
        let navigate = navigate.clone();
        spawn_local(async move {
            let password = with_password.then(|| password.get_untracked());
            match api::accept_invite(token, password).await {
                Ok(org) => {
                    done.set(Some(format!("You joined {}.", org.name)));
                    // Accepting may have created the account and its session: know it before the
                    // org page (which needs a user) opens.
                    session.reload().await;
                    navigate(&format!("/orgs/{}", org.id), Default::default());
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let login_next = {
        let token = use_query_map()
            .get_untracked()
            .get("token")
            .unwrap_or_default();
        format!("/login?next=/invite%3Ftoken%3D{token}")
    };
    view! {
        <section class="auth invite">
            <h1>"Join an org"</h1>
            <Notice message=done />
            <FormError error=error />
            <Suspense fallback=|| view! { <Loading what="the invite" /> }>
                {move || preview.get().map(|result| match result {
                    Err(e) => view! { <ErrorNotice error=e /> }.into_any(),
                    Ok(p) => {
                        let logged_in_as = session.me.with(|m| m.as_ref().map(|m| m.user.email.clone()));
                        let accept = accept.clone();
                        let intro = view! {
                            <p id="invite-summary">{format!("{} invited {} to join ", p.invited_by, p.email)}
                                <strong>{p.org_name.clone()}</strong>{format!(" as {}.", p.role.as_str())}</p>
                        };
                        let action = match (logged_in_as, p.has_account || !p.emailed) {
                            (Some(email), _) if email == p.email => view! {
                                <button type="button" id="accept-invite" on:click=move |_| accept(false)>"Accept the invite"</button>
                            }.into_any(),
                            (Some(email), _) => view! {
                                <p class="error-notice">{format!("You are logged in as {email}; log out and in as {} to accept.", p.email)}</p>
                            }.into_any(),
                            (None, true) if !p.emailed => view! {
                                <p id="invite-login"><A href=login_next.clone()>{format!("Log in as {} to accept", p.email)}</A></p>
                                <p>{format!("No account yet? Use the link we emailed to {}, or sign up with that address first.", p.email)}</p>
                            }.into_any(),
                            (None, true) => view! {
                                <p><A href=login_next.clone()>{format!("Log in as {} to accept", p.email)}</A></p>
                            }.into_any(),
                            (None, false) => view! {
                                <form on:submit=move |ev: leptos::ev::SubmitEvent| { ev.prevent_default(); accept(true) }>
                                    <p>"Choose a password for your new account:"</p>
                                    <label>"Password (at least 10 characters)" <input id="invite-password" type="password"
                                        autocomplete="new-password" minlength="10" prop:value=password
                                        on:input=move |ev| password.set(event_target_value(&ev)) /></label>
                                    <FieldError error=error name="password" />
                                    <button type="submit" id="accept-invite">"Create account and join"</button>
                                </form>
                            }.into_any(),
                        };
                        view! { {intro} {action} }.into_any()
                    }
                })}
            </Suspense>
        </section>
    }
}
