//! API tokens: create (shown once), list with last use, revoke.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::ApiError;
use shared::users::{NewApiToken, TokenScope};

use crate::api;
use crate::components::async_view::{ErrorNotice, Loading};
use crate::components::copy::CopyField;
use crate::components::forms::{FieldError, FormError, when};
use crate::session::use_session;

#[component]
pub fn Tokens() -> impl IntoView {
    let session = use_session();
    let tokens = LocalResource::new(api::api_tokens);
    let orgs = move || {
        session
            .me
            .with(|m| m.as_ref().map(|m| m.orgs.clone()).unwrap_or_default())
    };
    let org = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let scope = RwSignal::new("read".to_owned());
    let days = RwSignal::new("90".to_owned());
    let error = RwSignal::new(None::<ApiError>);
    let secret = RwSignal::new(None::<String>);
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let org_id = Some(org.get_untracked())
            .filter(|o| !o.is_empty())
            .or_else(|| orgs().first().map(|o| o.id.clone()));
        let body = NewApiToken {
            org_id: org_id.unwrap_or_default(),
            name: name.get_untracked(),
            scope: if scope.get_untracked() == "write" {
                TokenScope::Write
            } else {
                TokenScope::Read
            },
            expires_in_days: days.get_untracked().trim().parse().ok(),
        };
        spawn_local(async move {
            match api::create_api_token(body).await {
                Ok(created) => {
                    error.set(None);
                    name.set(String::new());
                    secret.set(created.token);
                    tokens.refetch();
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <section class="tokens">
            <h1>"API tokens"</h1>
            <p>"Send a token as " <code>"Authorization: Bearer …"</code> ". It acts for you in one org, within your role there; read tokens cannot change anything."</p>
            {move || secret.get().map(|s| view! {
                <div class="notice" role="status">
                    <p>"Copy your new token now; it will not be shown again:"</p>
                    <CopyField id="new-token" value=s what="the API token" />
                </div>
            })}
            <form on:submit=create>
                <label>"Org" <select on:change=move |ev| org.set(event_target_value(&ev))>
                    {move || orgs().into_iter().map(|o| view! { <option value=o.id.clone()>{o.name.clone()}</option> }).collect_view()}
                </select></label>
                <label>"Name" <input type="text" maxlength="80" prop:value=name on:input=move |ev| name.set(event_target_value(&ev)) /></label>
                <FieldError error=error name="name" />
                <label>"Scope" <select on:change=move |ev| scope.set(event_target_value(&ev))>
                    <option value="read" selected=true>"read"</option>
                    <option value="write">"write"</option>
                </select></label>
                <label>"Expires in (days)" <input type="number" min="1" max="365" prop:value=days
                    on:input=move |ev| days.set(event_target_value(&ev)) /></label>
                <FieldError error=error name="expires_in_days" />
                <FormError error=error />
                <button type="submit">"Create token"</button>
            </form>
            <Suspense fallback=|| view! { <Loading what="tokens" /> }>
                {move || tokens.get().map(|result| match result {
                    Err(e) => view! { <ErrorNotice error=e /> }.into_any(),
                    Ok(list) => view! {
                        <table class="list" id="tokens">
                            <thead><tr><th>"Name"</th><th>"Scope"</th><th>"Created"</th><th>"Expires"</th><th>"Last used"</th><th></th></tr></thead>
                            <tbody>
                                {list.into_iter().map(|t| {
                                    let id = t.id.clone();
                                    let revoke = move |_| {
                                        let id = id.clone();
                                        spawn_local(async move {
                                            match api::revoke_api_token(id).await {
                                                Ok(()) => tokens.refetch(),
                                                Err(e) => error.set(Some(e)),
                                            }
                                        });
                                    };
                                    view! {
                                        <tr>
                                            <td>{t.name.clone()}</td>
                                            <td>{t.scope.as_str()}</td>
                                            <td>{when(t.created_at)}</td>
                                            <td>{when(t.expires_at)}</td>
                                            <td>{t.last_used_at.map(when).unwrap_or_else(|| "never".into())}</td>
                                            <td>{if t.revoked {
                                                view! { <span class="badge">"revoked"</span> }.into_any()
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
        </section>
    }
}
