//! The admin console: waitlist, users, orgs, instances, outbox, audit, and the system's health
//! (`system.rs`).

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_query_map};
use shared::ApiError;
use shared::users::{AuditEvent, UserInfo};

use crate::api;
use crate::components::async_view::{ErrorNotice, Loading};
use crate::components::forms::{FormError, Notice, confirmed, when};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Waitlist,
    Users,
    Orgs,
    Instances,
    Outbox,
    Audit,
    System,
}

impl Tab {
    const ALL: [(Tab, &'static str, &'static str); 7] = [
        (Tab::Waitlist, "waitlist", "Waitlist"),
        (Tab::Users, "users", "Users"),
        (Tab::Orgs, "orgs", "Orgs"),
        (Tab::Instances, "instances", "Instances"),
        (Tab::Outbox, "outbox", "Outbox"),
        (Tab::Audit, "audit", "Audit log"),
        (Tab::System, "system", "System"),
    ];

    /// The tab named in the URL (`/admin?tab=outbox`), the waitlist by default.
    fn named(name: Option<&str>) -> Tab {
        Tab::ALL
            .iter()
            .find(|(_, n, _)| Some(*n) == name)
            .map_or(Tab::Waitlist, |(t, _, _)| *t)
    }
}

#[component]
pub fn Admin() -> impl IntoView {
    let query = use_query_map();
    let navigate = use_navigate();
    let tab = Memo::new(move |_| query.with(|q| Tab::named(q.get("tab").as_deref())));
    let tabs = Tab::ALL.map(|(t, name, label)| {
        let navigate = navigate.clone();
        view! {
            <button type="button" id=format!("tab-{name}") class=move || if tab.get() == t { "tab active" } else { "tab" }
                aria-pressed=move || (tab.get() == t).to_string()
                on:click=move |_| navigate(&format!("/admin?tab={name}"), Default::default())>{label}</button>
        }
    });
    view! {
        <section class="admin">
            <h1>"Admin console"</h1>
            <nav class="tabs" aria-label="Admin sections">{tabs.into_iter().collect_view()}</nav>
            {move || match tab.get() {
                Tab::Waitlist => view! { <WaitlistTab /> }.into_any(),
                Tab::Users => view! { <UsersTab /> }.into_any(),
                Tab::Orgs => view! { <OrgsTab /> }.into_any(),
                Tab::Instances => view! { <InstancesTab /> }.into_any(),
                Tab::Outbox => view! { <OutboxTab /> }.into_any(),
                Tab::Audit => view! { <AuditTab /> }.into_any(),
                Tab::System => view! { <crate::pages::system::SystemTab /> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn WaitlistTab() -> impl IntoView {
    let list = LocalResource::new(api::admin_waitlist);
    let error = RwSignal::new(None::<ApiError>);
    let done = RwSignal::new(None::<String>);
    view! {
        <FormError error=error />
        <Notice message=done />
        <Suspense fallback=|| view! { <Loading what="the waitlist" /> }>
            {move || list.get().map(|result| match result {
                Err(e) => view! { <ErrorNotice error=e /> }.into_any(),
                Ok(users) if users.is_empty() => view! { <p>"Nobody is waiting."</p> }.into_any(),
                Ok(users) => view! {
                    <table class="list" id="waitlist">
                        <thead><tr><th>"Email"</th><th>"Signed up"</th><th></th></tr></thead>
                        <tbody>
                            {users.into_iter().map(|u| {
                                let reason = RwSignal::new(String::new());
                                let (a, r) = (u.id.clone(), u.id.clone());
                                let (email_a, email_r) = (u.email.clone(), u.email.clone());
                                let approve = move |_| {
                                    let (id, email) = (a.clone(), email_a.clone());
                                    if !confirmed(&format!("Approve {email}? They are emailed and can log in at once.")) {
                                        return;
                                    }
                                    spawn_local(async move {
                                        match api::admin_user_action(id, "approve").await {
                                            Ok(_) => {
                                                error.set(None);
                                                done.set(Some(format!("Approved {email}: they have been emailed.")));
                                                list.refetch();
                                            }
                                            Err(e) => error.set(Some(e)),
                                        }
                                    });
                                };
                                let reject = move |_| {
                                    let (id, email) = (r.clone(), email_r.clone());
                                    if !confirmed(&format!("Reject {email}? Their account is closed.")) {
                                        return;
                                    }
                                    spawn_local(async move {
                                        match api::admin_reject(id, reason.get_untracked()).await {
                                            Ok(_) => {
                                                error.set(None);
                                                done.set(Some(format!("Rejected {email}.")));
                                                list.refetch();
                                            }
                                            Err(e) => error.set(Some(e)),
                                        }
                                    });
                                };
                                view! {
                                    <tr data-email=u.email.clone()>
                                        <td>{u.email.clone()}</td>
                                        <td>{when(u.created_at)}</td>
                                        <td class="actions">
                                            <button type="button" class="approve" on:click=approve>"Approve"</button>
                                            <input type="text" placeholder="Reason for rejecting" aria-label="Reason"
                                                prop:value=reason on:input=move |ev| reason.set(event_target_value(&ev)) />
                                            <button type="button" class="secondary" on:click=reject>"Reject"</button>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            })}
        </Suspense>
    }
}

#[component]
fn UsersTab() -> impl IntoView {
    let query = RwSignal::new(String::new());
    let list = LocalResource::new(move || api::admin_users(query.get()));
    let error = RwSignal::new(None::<ApiError>);
    let act = move |fut: std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<UserInfo, ApiError>>>,
    >| {
        spawn_local(async move {
            match fut.await {
                Ok(_) => {
                    error.set(None);
                    list.refetch();
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <label>"Search by email " <input type="search" prop:value=query on:input=move |ev| query.set(event_target_value(&ev)) /></label>
        <FormError error=error />
        <Suspense fallback=|| view! { <Loading what="users" /> }>
            {move || list.get().map(|result| match result {
                Err(e) => view! { <ErrorNotice error=e /> }.into_any(),
                Ok(users) if users.is_empty() => view! { <p class="empty" id="users-empty">"No user matches."</p> }.into_any(),
                Ok(users) => view! {
                    <table class="list" id="users">
                        <thead><tr><th>"Email"</th><th>"Status"</th><th>"Admin"</th><th></th></tr></thead>
                        <tbody>
                            {users.into_iter().map(|u| {
                                let (id1, id2) = (u.id.clone(), u.id.clone());
                                let suspended = u.suspended;
                                let is_admin = u.is_admin;
                                view! {
                                    <tr>
                                        <td>{u.email.clone()}</td>
                                        <td>{format!("{:?}", u.status).to_lowercase()}{suspended.then_some(" (suspended)")}</td>
                                        <td>{if is_admin { "yes" } else { "" }}</td>
                                        <td class="actions">
                                            <button type="button" class="secondary" on:click=move |_| {
                                                let action = if suspended { "unsuspend" } else { "suspend" };
                                                act(Box::pin(api::admin_user_action(id1.clone(), action)))
                                            }>{if suspended { "Unsuspend" } else { "Suspend" }}</button>
                                            <button type="button" class="secondary" on:click=move |_| {
                                                act(Box::pin(api::admin_set_admin(id2.clone(), !is_admin)))
                                            }>{if is_admin { "Remove admin" } else { "Make admin" }}</button>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            })}
        </Suspense>
    }
}

#[component]
fn OrgsTab() -> impl IntoView {
    let list = LocalResource::new(api::admin_orgs);
    view! {
        <Suspense fallback=|| view! { <Loading what="orgs" /> }>
            {move || list.get().map(|result| match result {
                Err(e) => view! { <ErrorNotice error=e /> }.into_any(),
                Ok(orgs) if orgs.is_empty() => view! { <p class="empty">"No orgs yet."</p> }.into_any(),
                Ok(orgs) => view! {
                    <table class="list" id="all-orgs">
                        <thead><tr><th>"Name"</th><th>"Members"</th><th>"Created"</th></tr></thead>
                        <tbody>
                            {orgs.into_iter().map(|o| view! {
                                <tr id=format!("org-{}", o.id)><td>{o.name.clone()}</td><td>{o.members}</td><td>{when(o.created_at)}</td></tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            })}
        </Suspense>
    }
}

#[component]
fn InstancesTab() -> impl IntoView {
    let list = LocalResource::new(api::admin_instances);
    // Org names for the org column (ids say nothing to a person).
    let orgs = LocalResource::new(api::admin_orgs);
    let org_name = move |id: &str| {
        orgs.with(|o| {
            o.as_ref()
                .and_then(|r| r.as_ref().ok())
                .and_then(|l| l.iter().find(|o| o.id == id).map(|o| o.name.clone()))
        })
    };
    let error = RwSignal::new(None::<ApiError>);
    view! {
        <FormError error=error />
        <Suspense fallback=|| view! { <Loading what="instances" /> }>
            {move || list.get().map(|result| match result {
                Err(e) => view! { <ErrorNotice error=e /> }.into_any(),
                Ok(instances) if instances.is_empty() => view! { <p class="empty">"No instances yet."</p> }.into_any(),
                Ok(instances) => view! {
                    <table class="list" id="all-instances">
                        <thead><tr><th>"Name"</th><th>"Org"</th><th>"State"</th><th>"History kept"</th><th></th></tr></thead>
                        <tbody>
                            {instances.into_iter().map(|i| {
                                let reason = RwSignal::new(String::new());
                                let days = RwSignal::new(i.history_days.to_string());
                                let quota_gib = RwSignal::new((i.history_quota_bytes >> 30).max(1).to_string());
                                let save_history = {
                                    let id = i.id.clone();
                                    move |_| {
                                        let id = id.clone();
                                        let policy = shared::instances::HistoryPolicy {
                                            days: days.get_untracked().trim().parse().ok(),
                                            quota_bytes: quota_gib.get_untracked().trim().parse::<u64>().ok().map(|g| g << 30),
                                        };
                                        spawn_local(async move {
                                            match api::admin_set_history(id, policy).await {
                                                Ok(_) => { error.set(None); list.refetch(); }
                                                Err(e) => error.set(Some(e)),
                                            }
                                        });
                                    }
                                };
                                let id = i.id.clone();
                                let suspended = i.state == shared::instances::InstanceState::Suspended;
                                let toggle = move |_| {
                                    let id = id.clone();
                                    spawn_local(async move {
                                        let result = if suspended {
                                            api::admin_resume_instance(id).await
                                        } else {
                                            api::admin_suspend_instance(id, reason.get_untracked()).await
                                        };
                                        match result {
                                            Ok(_) => { error.set(None); list.refetch(); }
                                            Err(e) => error.set(Some(e)),
                                        }
                                    });
                                };
                                view! {
                                    <tr>
                                        <td>{i.name.clone()}</td>
                                        <td>{
                                            let org = i.org_id.clone();
                                            let label = org_name(&org).unwrap_or_else(|| org.clone());
                                            view! { <a href=format!("/admin?tab=orgs#org-{org}") class="org-link">{label}</a> }
                                        }</td>
                                        <td>{i.state.as_str()}{i.suspension_reason.clone().map(|r| format!(" ({r})"))}</td>
                                        <td class="history-policy">
                                            <input type="number" min="1" max="3650" class="narrow" aria-label="Days of history"
                                                prop:value=days on:input=move |ev| days.set(event_target_value(&ev)) />" days, at most "
                                            <input type="number" min="1" class="narrow" aria-label="History quota (GiB)"
                                                prop:value=quota_gib on:input=move |ev| quota_gib.set(event_target_value(&ev)) />" GiB "
                                            <button type="button" class="secondary" on:click=save_history>"Save"</button>
                                        </td>
                                        <td class="actions">
                                            {(!suspended).then(|| view! {
                                                <input type="text" placeholder="Reason (the org sees it)" aria-label="Reason"
                                                    prop:value=reason on:input=move |ev| reason.set(event_target_value(&ev)) />
                                            })}
                                            <button type="button" class="secondary" on:click=toggle>{if suspended { "Resume" } else { "Suspend" }}</button>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            })}
        </Suspense>
    }
}

#[component]
fn OutboxTab() -> impl IntoView {
    let list = LocalResource::new(api::admin_outbox);
    view! {
        <Suspense fallback=|| view! { <Loading what="the outbox" /> }>
            {move || list.get().map(|result| match result {
                Err(e) => view! { <ErrorNotice error=e /> }.into_any(),
                Ok(messages) if messages.is_empty() => view! {
                    <p class="empty" id="outbox-empty">"The outbox is empty: no mail has been sent yet."</p>
                }.into_any(),
                Ok(messages) => view! {
                    <ul class="outbox" id="outbox">
                        {messages.into_iter().map(|m| view! {
                            <li>
                                <p><strong>{m.subject.clone()}</strong>" → "{m.to.clone()}" · "{when(m.created_at)}" · "
                                   <span class="badge">{m.status.clone()}</span></p>
                                <pre>{m.body.clone()}</pre>
                                {m.error.clone().map(|e| view! { <p class="error-notice">{e}</p> })}
                            </li>
                        }).collect_view()}
                    </ul>
                }.into_any(),
            })}
        </Suspense>
    }
}

#[component]
fn AuditTab() -> impl IntoView {
    let list = LocalResource::new(api::admin_audit);
    view! {
        <Suspense fallback=|| view! { <Loading what="the audit log" /> }>
            {move || list.get().map(|result| match result {
                Err(e) => view! { <ErrorNotice error=e /> }.into_any(),
                Ok(events) if events.is_empty() => view! { <p class="empty">"Nothing has happened yet."</p> }.into_any(),
                Ok(events) => view! { <AuditTable events=events /> }.into_any(),
            })}
        </Suspense>
    }
}

/// Audit events as a table; shared with the org audit page.
#[component]
pub fn AuditTable(events: Vec<AuditEvent>) -> impl IntoView {
    view! {
        <table class="list audit">
            <thead><tr><th>"When"</th><th>"Event"</th><th>"Who"</th><th>"Target"</th><th>"Address"</th><th>"Detail"</th></tr></thead>
            <tbody>
                {events.into_iter().map(|e| view! {
                    <tr>
                        <td>{when(e.at)}</td>
                        <td>{e.action.clone()}</td>
                        <td>{e.actor_email.clone().unwrap_or_default()}</td>
                        <td>{e.target.clone().unwrap_or_default()}</td>
                        <td>{e.ip.clone().unwrap_or_default()}</td>
                        <td>{e.detail.clone().unwrap_or_default()}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}
