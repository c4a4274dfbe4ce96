//! Scope instances: the list and create form of an org, and one instance's page.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map};
use shared::ApiError;
use shared::instances::{InstanceInfo, InstanceState};
use shared::users::Role;

use crate::api;
use crate::components::async_view::{ErrorNotice, Loading};
use crate::components::copy::CopyField;
use crate::components::forms::{FieldError, FormError, confirmed, when};
use crate::components::ticker::ticker;
use crate::session::use_session;

/// A probe token just created or rotated, shown once on the instance's page.
#[derive(Clone, Copy)]
pub struct FreshToken(pub RwSignal<Option<(String, String)>>);

pub fn provide_fresh_token() {
    provide_context(FreshToken(RwSignal::new(None)));
}

fn badge(state: InstanceState) -> impl IntoView {
    view! { <span class=format!("badge state-{}", state.as_str())>{state.as_str()}</span> }
}

/// The instances of one org, with a create form for editors; part of the org page.
#[component]
pub fn OrgInstances(
    #[prop(into)] org: Signal<String>,
    #[prop(into)] role: Signal<Option<Role>>,
) -> impl IntoView {
    let navigate = use_navigate();
    let fresh = expect_context::<FreshToken>();
    // Refreshed every 5 s: an instance made elsewhere (a probe's, a teammate's) and state changes
    // show up without a reload.
    let list_tick = ticker(std::time::Duration::from_secs(5));
    let list = LocalResource::new(move || {
        list_tick.track();
        api::instances(org.get())
    });
    let name = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let navigate = navigate.clone();
        spawn_local(async move {
            match api::create_instance(org.get_untracked(), name.get_untracked()).await {
                Ok(created) => {
                    let id = created.instance.id.clone();
                    fresh.0.set(Some((id.clone(), created.probe_token)));
                    navigate(&format!("/instances/{id}"), Default::default());
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <h2>"Scope instances"</h2>
        <Transition fallback=|| view! { <Loading what="instances" /> }>
            {move || list.get().map(|result| match result {
                Err(e) => view! { <ErrorNotice error=e /> }.into_any(),
                Ok(items) if items.is_empty() => view! { <p>"No instances yet."</p> }.into_any(),
                Ok(items) => view! {
                    <table class="list" id="instances">
                        <thead><tr><th>"Name"</th><th>"State"</th><th>"Created"</th></tr></thead>
                        <tbody>
                            {items.into_iter().map(|i: InstanceInfo| view! {
                                <tr>
                                    <td><A href=format!("/instances/{}", i.id)>{i.name.clone()}</A></td>
                                    <td>{badge(i.state)}</td>
                                    <td>{when(i.created_at)}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            })}
        </Transition>
        <Show when=move || role.get().is_some_and(|r| r >= Role::Editor)>
            <form on:submit=create.clone() id="create-instance">
                <label>"New instance name" <input id="instance-name" type="text" maxlength="80" required
                    prop:value=name on:input=move |ev| name.set(event_target_value(&ev)) /></label>
                <FieldError error=error name="name" />
                <FormError error=error />
                <button type="submit">"Create instance"</button>
            </form>
        </Show>
    }
}

#[component]
pub fn Instance() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let fresh = expect_context::<FreshToken>();
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").unwrap_or_default());
    let details = LocalResource::new(move || api::instance(id()));
    let error = RwSignal::new(None::<ApiError>);
    let reason = RwSignal::new(String::new());
    let new_name = RwSignal::new(String::new());
    let origin = web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default();
    let token_for_this = move || fresh.0.get().filter(|(i, _)| *i == id()).map(|(_, t)| t);

    // The instance as it is now, reloaded in place (the rest of the page, and the token being
    // copied, are not redrawn): every 5 s for what the probes send, every 2 s while its new token is
    // on screen, so that the page opens the live map as soon as the first report arrives. A state
    // change reloads the page's details.
    let seconds = ticker(std::time::Duration::from_secs(1));
    let poll = Memo::new(move |_| {
        let waiting = fresh
            .0
            .with(|f| f.as_ref().is_some_and(|(i, _)| *i == id()));
        seconds.get() / if waiting { 2 } else { 5 }
    });
    let live = LocalResource::new(move || {
        poll.track();
        api::instance(id())
    });
    let usage = RwSignal::new(None::<shared::instances::Usage>);
    Effect::new(move |_| {
        if let Some(Ok(d)) = details.get() {
            session.current_org.set(Some(d.instance.org_id.clone()));
            usage.set(d.usage);
        }
    });
    let armed = StoredValue::new(false);
    {
        let navigate = use_navigate();
        Effect::new(move |_| {
            let Some(Ok(now)) = live.get() else {
                return;
            };
            let state = now.instance.state;
            usage.set(now.usage);
            // Only the first report switches to the map (a token rotated on an active instance
            // does not): the watch arms once it has seen the instance not yet active with its
            // token on screen.
            if token_for_this().is_some() {
                if state != InstanceState::Active {
                    armed.set_value(true);
                } else if armed.get_value() {
                    armed.set_value(false);
                    fresh.0.set(None);
                    navigate(&format!("/instances/{}/map", id()), Default::default());
                    return;
                }
            }
            let shown = details.with_untracked(|d| {
                d.as_ref()
                    .and_then(|r| r.as_ref().ok())
                    .map(|d| d.instance.state)
            });
            if shown.is_some_and(|s| s != state) {
                details.refetch();
            }
        });
    }

    let change_settings = move |settings: shared::instances::InstanceSettings| {
        spawn_local(async move {
            match api::change_instance_settings(id(), settings).await {
                Ok(_) => {
                    error.set(None);
                    details.refetch();
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let role = move |org: &str| {
        session.me.with(|m| {
            m.as_ref()
                .and_then(|m| m.orgs.iter().find(|o| o.id == org).map(|o| o.role))
        })
    };
    let act = move |what: &'static str| {
        let navigate = navigate.clone();
        spawn_local(async move {
            let id = id();
            let result = match what {
                "rename" => api::rename_instance(id.clone(), new_name.get_untracked())
                    .await
                    .map(|_| new_name.set(String::new())),
                "rotate" => api::rotate_probe_token(id.clone())
                    .await
                    .map(|r| fresh.0.set(Some((id.clone(), r.probe_token)))),
                "suspend" => {
                    if !confirmed(
                        "Suspend this instance? Its probes' reports are refused until you resume it.",
                    ) {
                        return;
                    }
                    api::suspend_instance(id.clone(), reason.get_untracked(), false)
                        .await
                        .map(|_| ())
                }
                "resume" => api::resume_instance(id.clone()).await.map(|_| ()),
                "delete" => {
                    if !confirmed("Delete this instance? Its probes stop reporting at once.") {
                        return;
                    }
                    api::delete_instance(id.clone())
                        .await
                        .map(|i| navigate(&format!("/orgs/{}", i.org_id), Default::default()))
                }
                _ => Ok(()),
            };
            match result {
                Ok(()) => {
                    error.set(None);
                    details.refetch();
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };

    view! {
        <section class="instance">
            <FormError error=error />
            // Transition: reloads (after a state change) keep the page on screen.
            <Transition fallback=|| view! { <Loading what="the instance" /> }>
                {move || details.get().map(|result| match result {
                    Err(e) => view! { <ErrorNotice error=e /> }.into_any(),
                    Ok(d) => {
                        let i = d.instance.clone();
                        let my_role = role(&i.org_id);
                        let editor = my_role.is_some_and(|r| r >= Role::Editor);
                        let admin = my_role == Some(Role::Admin);
                        let live = !matches!(i.state, InstanceState::Deleting | InstanceState::Deleted);
                        let act = act.clone();
                        let (a0, a1, a2, a3, a4) = (act.clone(), act.clone(), act.clone(), act.clone(), act);
                        let origin = origin.clone();
                        view! {
                            <h1 id="instance-name">{i.name.clone()}</h1>
                            <p>"State: " <span id="instance-state">{badge(i.state)}</span>
                               {i.shard.clone().map(|s| format!(" · collector shard {s}"))}</p>
                            {live.then(|| view! {
                                <p><A href=format!("/instances/{}/map", i.id) attr:class="button" attr:id="open-map">"Open the live map"</A></p>
                            })}
                            {i.suspension_reason.clone().map(|r| view! {
                                <p class="error-notice" role="status">{if i.suspended_by_site { "Suspended by the site's administrators: " } else { "Suspended: " }}{r}</p>
                            })}
                            {move || token_for_this().map(|_| view! {
                                <p class="notice" id="waiting-for-report" role="status">
                                    "Waiting for the first report: this page opens the live map by itself when it arrives."
                                </p>
                            })}
                            {move || token_for_this().map(|token| {
                                let scope = format!(
                                    "docker run -d --name scope-probe --net=host --pid=host --privileged -v /var/run/docker.sock:/var/run/docker.sock weaveworks/scope:1.13.2 --mode=probe --probe-only --probe.token={token} {origin}"
                                );
                                let ours = format!("scopehub probe --url {origin} --token {token}");
                                view! {
                                    <div class="notice" role="status">
                                        <p>"Your probe token — copy it now, it will not be shown again:"</p>
                                        <CopyField id="probe-token" value=token.clone() what="the probe token" />
                                        <p>"Run the Weave Scope probe on each host:"</p>
                                        <CopyField id="scope-command" value=scope what="the Scope probe command" wide=true />
                                        <p>"Or ours:"</p>
                                        <CopyField id="scopehub-command" value=ours what="the scopehub probe command" wide=true />
                                    </div>
                                }
                            })}
                            <h2>"Limits"</h2>
                            <p>{format!("{} probes · {} MiB per report · {} reports per second",
                                i.limits.max_probes, i.limits.max_report_bytes / (1024 * 1024), i.limits.max_reports_per_second)}</p>
                            {move || usage.get().map(|u| view! {
                                <h2>"Probes"</h2>
                                <p id="usage-summary">{format!("{} reports received · {} in the last 15 s · live window {} of {}",
                                    u.reports_received, u.reports_in_window, mebibytes(u.window_bytes), mebibytes(u.window_budget_bytes))}</p>
                                {u.history.clone().map(|h| view! {
                                    <h2>"History"</h2>
                                    <p id="history-kept">{match (h.from, h.to) {
                                        (Some(from), Some(to)) => format!("Kept from {} to {} · {} in {} batches · kept {} days, at most {}",
                                            when(from), when(to), mebibytes(h.bytes), h.batches, h.retention_days, mebibytes(h.quota_bytes)),
                                        _ => format!("Nothing kept yet · kept {} days, at most {}", h.retention_days, mebibytes(h.quota_bytes)),
                                    }}</p>
                                })}
                                {(!u.refused.is_empty()).then(|| view! {
                                    <p class="error-notice" id="refusals">"Refused by the limits: "
                                        {u.refused.iter().map(|(why, n)| format!("{} {}", n, why.replace('_', " "))).collect::<Vec<_>>().join(" · ")}</p>
                                })}
                                <table class="list" id="probes">
                                    <thead><tr><th>"Probe"</th><th>"Host"</th><th>"Version"</th><th>"Last report"</th></tr></thead>
                                    <tbody>
                                        {u.probes.into_iter().map(|p| view! {
                                            <tr><td><code>{p.id}</code></td><td>{p.hostname.unwrap_or_default()}</td>
                                                <td>{p.version.unwrap_or_default()}</td><td>{when(p.last_seen)}</td></tr>
                                        }).collect_view()}
                                    </tbody>
                                </table>
                            })}
                            <h2>"Probe tokens"</h2>
                            <table class="list" id="probe-tokens">
                                <thead><tr><th>"Created"</th><th>"Works until"</th><th></th></tr></thead>
                                <tbody>
                                    {d.tokens.iter().map(|t| {
                                        let token_id = t.id.clone();
                                        let revoke = move |_| {
                                            let token_id = token_id.clone();
                                            spawn_local(async move {
                                                match api::revoke_probe_token(id(), token_id).await {
                                                    Ok(()) => details.refetch(),
                                                    Err(e) => error.set(Some(e)),
                                                }
                                            });
                                        };
                                        view! {
                                            <tr>
                                                <td>{when(t.created_at)}</td>
                                                <td>{if t.revoked { "revoked".to_owned() } else { t.expires_at.map(when).unwrap_or_else(|| "no end".into()) }}</td>
                                                <td>{(editor && !t.revoked).then(|| view! { <button type="button" class="secondary" on:click=revoke>"Revoke"</button> })}</td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                            {(editor && live).then(|| view! {
                                <button type="button" id="rotate-token" on:click=move |_| a1("rotate")>"Rotate probe token"</button>
                                <div class="inline-form">
                                    <input type="text" maxlength="80" placeholder="New name" aria-label="New name" prop:value=new_name
                                        on:input=move |ev| new_name.set(event_target_value(&ev)) />
                                    <button type="button" class="secondary" on:click=move |_| a0("rename")>"Rename"</button>
                                </div>
                            })}
                            <h2>"From the map"</h2>
                            <p id="map-settings">{format!("Controls (restart, stop, pause… a container) are {} · terminals (exec, attach, a host's shell) are {}.",
                                if i.allow_controls { "on" } else { "off" }, if i.allow_terminals { "on" } else { "off" })}</p>
                            {(admin && live).then(|| view! {
                                <label class="checkbox">
                                    <input type="checkbox" id="allow-controls" prop:checked=i.allow_controls
                                        on:change=move |ev| change_settings(shared::instances::InstanceSettings { allow_controls: Some(event_target_checked(&ev)), allow_terminals: None }) />
                                    " Editors may use controls on this instance's containers"
                                </label>
                                <label class="checkbox">
                                    <input type="checkbox" id="allow-terminals" prop:checked=i.allow_terminals
                                        on:change=move |ev| change_settings(shared::instances::InstanceSettings { allow_controls: None, allow_terminals: Some(event_target_checked(&ev)) }) />
                                    " Editors may open terminals into containers and hosts"
                                </label>
                            })}
                            {(admin && live).then(|| view! {
                                <h2>"Manage"</h2>
                                {if i.state == InstanceState::Suspended {
                                    view! { <button type="button" id="resume" on:click=move |_| a2("resume")>"Resume"</button> }.into_any()
                                } else {
                                    view! {
                                        <div class="inline-form">
                                            <input type="text" placeholder="Reason for suspending" aria-label="Reason" prop:value=reason
                                                on:input=move |ev| reason.set(event_target_value(&ev)) />
                                            <button type="button" class="secondary" id="suspend" on:click=move |_| a3("suspend")>"Suspend"</button>
                                        </div>
                                    }.into_any()
                                }}
                                <button type="button" class="danger" id="delete-instance" on:click=move |_| a4("delete")>"Delete instance"</button>
                            })}
                            <h2>"Events"</h2>
                            <ol class="timeline" id="events">
                                {d.events.iter().rev().map(|e| view! {
                                    <li>{when(e.at)}" · " {e.to_state.as_str()}
                                        {e.actor.clone().map(|a| format!(" · by {a}")).unwrap_or_else(|| " · by the reconciler".into())}
                                        {e.detail.clone().map(|d| format!(" · {d}"))}</li>
                                }).collect_view()}
                            </ol>
                            <p><A href=format!("/orgs/{}", i.org_id)>"Back to the org"</A></p>
                        }.into_any()
                    }
                })}
            </Transition>
        </section>
    }
}

/// Bytes as MiB with one decimal ("0.3 MiB").
fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
