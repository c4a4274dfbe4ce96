//! The details panel of a selected node: its controls (restart a container…), metrics with
//! sparklines, metadata, parents (links to their views), children tables, and connections in and
//! out. It refreshes while open.

use std::collections::BTreeMap;

use leptos::prelude::*;
use shared::ApiError;
use shared::topology::{ChildGroup, Connections, Control, NodeDetails};
use shared::users::Role;
use topomap::values;

use crate::api;
use crate::components::async_view::ErrorNotice;
use crate::components::metrics::{Sparkline, format_metric};
use crate::components::ticker::ticker;

/// How often an open panel reloads.
const REFRESH_MS: u64 = 5_000;

/// A link from the panel: to another node, maybe in another view.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLink {
    pub view: String,
    pub node: String,
}

/// Rows a children table shows until "Show all" is pressed.
const CHILD_ROWS: usize = 20;

/// How a children table is sorted (column, 0 being the name; descending) and whether it shows
/// every row. Kept by the panel across its refreshes, by the table's id.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct TableView {
    sort: Option<(usize, bool)>,
    all: bool,
}

#[derive(Debug, Clone, Copy)]
enum TableChange {
    SortBy(usize),
    ToggleAll,
}

/// A row of a children table: the link, and each cell's text and the value it sorts by.
#[derive(Clone)]
struct ChildRow {
    link: NodeLink,
    cells: Vec<(String, String)>,
}

fn children_table(
    group: ChildGroup,
    on_open: Callback<NodeLink>,
    views: RwSignal<BTreeMap<String, TableView>>,
) -> impl IntoView {
    let columns = group.columns.clone().unwrap_or_default();
    let key = format!("{}/{}", group.topology_id, group.id);
    let rows: Vec<ChildRow> = group
        .nodes
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|n| {
            let mut cells = vec![(n.label.clone(), n.label.clone())];
            cells.extend(columns.iter().map(|c| {
                if let Some(m) = n.metrics.iter().find(|m| m.id == c.id) {
                    (format_metric(m.value, &m.format), m.value.to_string())
                } else if let Some(m) = n.metadata.iter().find(|m| m.id == c.id) {
                    (values::display(&m.value, &m.data_type), m.value.clone())
                } else {
                    (String::new(), String::new())
                }
            }));
            ChildRow {
                link: NodeLink {
                    view: group.topology_id.clone(),
                    node: n.id.clone(),
                },
                cells,
            }
        })
        .collect();
    let total = rows.len();
    // Scope's default: the column marked `defaultSort`, largest first; else by name.
    let default_sort = columns
        .iter()
        .position(|c| c.default_sort)
        .map_or((0, false), |i| (i + 1, true));
    let current = {
        let key = key.clone();
        Signal::derive(move || views.with(|v| v.get(&key).copied().unwrap_or_default()))
    };
    let sorted = move || {
        let state = current.get();
        let (column, descending) = state.sort.unwrap_or(default_sort);
        let mut sorted = rows.clone();
        sorted.sort_by(|a, b| {
            let order = values::compare(&a.cells[column].1, &b.cells[column].1);
            if descending { order.reverse() } else { order }
        });
        sorted.truncate(if state.all { total } else { CHILD_ROWS });
        sorted
    };
    let change = {
        let key = key.clone();
        Callback::new(move |change: TableChange| {
            views.update(|v| {
                let view = v.entry(key.clone()).or_default();
                match change {
                    TableChange::SortBy(column) => {
                        let (current, descending) = view.sort.unwrap_or(default_sort);
                        // Again: the other way; another column: names A→Z, values largest first.
                        view.sort = Some(if current == column {
                            (column, !descending)
                        } else {
                            (column, column != 0)
                        });
                    }
                    TableChange::ToggleAll => view.all = !view.all,
                }
            })
        })
    };
    let headers: Vec<String> = std::iter::once("Name".to_owned())
        .chain(columns.iter().map(|c| c.label.clone()))
        .collect();
    view! {
        <h4>{group.label.clone()}</h4>
        <div class="table-scroll">
            <table class="list compact children" data-table=key.clone()>
                <thead><tr>
                    {headers.into_iter().enumerate().map(|(i, label)| {
                        let sorted_by = move || current.get().sort.unwrap_or(default_sort);
                        view! {
                            <th aria-sort=move || match sorted_by() {
                                (c, true) if c == i => "descending",
                                (c, false) if c == i => "ascending",
                                _ => "none",
                            }>
                                <button type="button" class="sort" data-column=i.to_string()
                                    on:click=move |_| change.run(TableChange::SortBy(i))>
                                    {label}
                                    {move || match sorted_by() {
                                        (c, true) if c == i => " ▼",
                                        (c, false) if c == i => " ▲",
                                        _ => "",
                                    }}
                                </button>
                            </th>
                        }
                    }).collect_view()}
                </tr></thead>
                <tbody>
                    {move || sorted().into_iter().map(|row| {
                        let link = row.link;
                        let mut cells = row.cells.into_iter().map(|(text, _)| text);
                        let name = cells.next().unwrap_or_default();
                        view! {
                            <tr>
                                <td><button type="button" class="link-like" on:click=move |_| on_open.run(link.clone())>{name}</button></td>
                                {cells.map(|c| view! { <td class="value">{c}</td> }).collect_view()}
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
        {(total > CHILD_ROWS).then(|| view! {
            <button type="button" class="link-like show-all" data-table=key.clone()
                on:click=move |_| change.run(TableChange::ToggleAll)>
                {move || if current.get().all { format!("Show the first {CHILD_ROWS}") } else { format!("Show all {total}") }}
            </button>
        })}
    }
}

fn connections_table(c: Connections, on_open: Callback<NodeLink>) -> impl IntoView {
    let view_id = c.topology_id.clone();
    let empty = c.connections.is_empty();
    view! {
        <h4>{c.label.clone()}</h4>
        {if empty {
            view! { <p class="muted">"None"</p> }.into_any()
        } else {
            view! {
                <table class="list compact" id=c.id.clone()>
                    <thead><tr>
                        <th>"Node"</th>
                        {c.columns.iter().map(|col| view! { <th>{col.label.clone()}</th> }).collect_view()}
                    </tr></thead>
                    <tbody>
                        {c.connections.iter().map(|row| {
                            let link = NodeLink { view: view_id.clone(), node: row.node_id.clone() };
                            let values: Vec<String> = c.columns.iter().map(|col| {
                                row.metadata.iter().find(|m| m.id == col.id).map(|m| m.value.clone()).unwrap_or_default()
                            }).collect();
                            view! {
                                <tr>
                                    <td><button type="button" class="link-like" on:click=move |_| on_open.run(link.clone())>{row.label.clone()}</button>
                                        {(!row.label_minor.is_empty()).then(|| view! { <span class="muted">" "{row.label_minor.clone()}</span> })}</td>
                                    {values.into_iter().map(|v| view! { <td>{v}</td> }).collect_view()}
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any()
        }}
    }
}

/// What the panel's control buttons need: where to send a control, whether this user may, and
/// what the last one did. Kept by the panel across its refreshes.
#[derive(Clone, Copy)]
struct Controls {
    instance: Signal<String>,
    /// Why this user may not use controls (a viewer), if so.
    blocked: Signal<Option<String>>,
    /// The control in progress.
    running: RwSignal<Option<String>>,
    /// What the last control said: done, or its error.
    said: RwSignal<Option<Result<String, String>>>,
    /// The node is gone (a removed container): the panel closes.
    on_removed: Callback<()>,
    /// The terminal or log stream a control opened.
    terminal: RwSignal<Option<crate::components::terminal::OpenPipe>>,
}

fn control_button(control: Control, c: Controls) -> impl IntoView {
    let id = control.id.clone();
    let busy_id = id.clone();
    let human = if control.human.is_empty() {
        control.id.clone()
    } else {
        control.human.clone()
    };
    let label = human.clone();
    let run = move |_| {
        if !control.confirmation.is_empty()
            && !crate::components::forms::confirmed(&control.confirmation)
        {
            return;
        }
        c.running.set(Some(control.id.clone()));
        c.said.set(None);
        let (probe, node, which, human) = (
            control.probe_id.clone(),
            control.node_id.clone(),
            control.id.clone(),
            human.clone(),
        );
        let instance = c.instance.get_untracked();
        leptos::task::spawn_local(async move {
            let result = api::control(&instance, &probe, &node, &which).await;
            c.running.set(None);
            match result {
                Ok(reply) => {
                    if let Some(pipe) = reply.get("pipe").and_then(|p| p.as_str()) {
                        let text = |k: &str| reply.get(k).and_then(|v| v.as_str()).unwrap_or("");
                        let resize = text("resize_tty_control");
                        c.terminal.set(Some(crate::components::terminal::OpenPipe {
                            id: pipe.to_owned(),
                            title: human.clone(),
                            raw_tty: reply
                                .get("raw_tty")
                                .and_then(|v| v.as_bool())
                                .unwrap_or(false),
                            resize: (!resize.is_empty())
                                .then(|| (probe.clone(), node.clone(), resize.to_owned())),
                            input: which != "docker_logs_container",
                        }));
                        c.said.set(Some(Ok(format!("{human}: opened below."))));
                    } else {
                        c.said.set(Some(Ok(format!("{human}: done."))));
                    }
                    if reply.get("removedNode").is_some() {
                        c.on_removed.run(());
                    }
                }
                Err(e) => c
                    .said
                    .set(Some(Err(format!("{human} failed: {}", e.message)))),
            }
        });
    };
    view! {
        <button type="button" class="secondary control" data-control=id
            disabled=move || c.blocked.with(Option::is_some) || c.running.with(Option::is_some)
            title=move || c.blocked.get().unwrap_or_default()
            on:click=run>
            {label}
            {move || (c.running.with(|r| r.as_deref() == Some(busy_id.as_str()))).then_some("…")}
        </button>
    }
}

fn controls_bar(mut list: Vec<Control>, c: Controls) -> impl IntoView {
    if list.is_empty() {
        return ().into_any();
    }
    list.sort_by_key(|control| control.rank);
    view! {
        <div class="node-controls" id="node-controls">
            {list.into_iter().map(|control| control_button(control, c)).collect_view()}
            {move || c.blocked.get().map(|why| view! { <p class="muted small" id="controls-blocked">{why}</p> })}
            {move || c.running.with(Option::is_some).then(|| view! { <p class="muted small" id="control-running">"Waiting for the probe…"</p> })}
            {move || c.said.get().map(|said| match said {
                Ok(m) => view! { <p class="notice small" id="control-done" role="status">{m}</p> }.into_any(),
                Err(e) => view! { <p class="error-notice small" id="control-error" role="alert">{e}</p> }.into_any(),
            })}
        </div>
    }
    .into_any()
}

fn body(
    d: NodeDetails,
    on_open: Callback<NodeLink>,
    tables: RwSignal<BTreeMap<String, TableView>>,
    controls: Controls,
) -> impl IntoView {
    let s = d.summary;
    view! {
        <header class="details-head">
            <h2 id="details-label">{s.label.clone()}</h2>
            <p class="muted">{s.label_minor.clone()}</p>
        </header>
        {controls_bar(d.controls, controls)}
        {(!s.metrics.is_empty()).then(|| view! {
            <section class="details-metrics">
                {s.metrics.iter().map(|m| view! {
                    <div class="metric">
                        <span class="metric-label">{m.label.clone()}</span>
                        <span class="metric-value">{format_metric(m.value, &m.format)}</span>
                        {m.samples.clone().filter(|s| s.len() > 1).map(|samples| view! {
                            <Sparkline samples=samples min=m.min max=m.max />
                        })}
                    </div>
                }).collect_view()}
            </section>
        })}
        {(!s.metadata.is_empty()).then(|| view! {
            <dl class="facts details-metadata">
                {s.metadata.iter().map(|m| view! { <dt>{m.label.clone()}</dt><dd>{values::display(&m.value, &m.data_type)}</dd> }).collect_view()}
            </dl>
        })}
        {(!s.parents.is_empty()).then(|| view! {
            <p class="parents">
                {s.parents.iter().map(|p| {
                    let link = NodeLink { view: p.topology_id.clone(), node: p.id.clone() };
                    view! { <button type="button" class="chip" on:click=move |_| on_open.run(link.clone())>{p.label.clone()}</button> }
                }).collect_view()}
            </p>
        })}
        {s.tables.into_iter().filter(|t| !t.rows.is_empty()).map(|t| view! {
            <h4>{t.label.clone()}</h4>
            <dl class="facts">
                {t.rows.into_iter().map(|r| {
                    let label = r.entries.get("label").cloned().unwrap_or_else(|| r.id.clone());
                    let value = r.entries.get("value").cloned()
                        .unwrap_or_else(|| r.entries.values().cloned().collect::<Vec<_>>().join(" · "));
                    view! { <dt>{label}</dt><dd>{value}</dd> }
                }).collect_view()}
            </dl>
        }).collect_view()}
        {d.children.into_iter().filter(|g| g.nodes.as_ref().is_some_and(|n| !n.is_empty()))
            .map(|g| children_table(g, on_open, tables)).collect_view()}
        {d.connections.into_iter().map(|c| connections_table(c, on_open)).collect_view()}
    }
}

#[component]
pub fn NodeDetailsPanel(
    #[prop(into)] instance: Signal<String>,
    #[prop(into)] view: Signal<String>,
    #[prop(into)] node: Signal<String>,
    #[prop(into)] options: Signal<String>,
    on_close: Callback<()>,
    on_open: Callback<NodeLink>,
) -> impl IntoView {
    let tick = ticker(std::time::Duration::from_millis(REFRESH_MS));
    let details = LocalResource::new(move || {
        tick.track();
        let (i, v, n, q) = (instance.get(), view.get(), node.get(), options.get());
        async move { api::node_details(&i, &v, &n, &q).await }
    });
    // How each children table is sorted, kept while the panel refreshes.
    let tables = RwSignal::new(BTreeMap::<String, TableView>::new());
    // Viewers see the controls, disabled: their role in the instance's org says so.
    let session = use_context::<crate::session::Session>();
    let org = LocalResource::new(move || {
        let id = instance.get();
        async move {
            api::instance(id)
                .await
                .ok()
                .map(|d| (d.instance.org_id, d.instance.allow_controls))
        }
    });
    let blocked = Signal::derive(move || {
        let (org, allowed) = org.get().flatten()?;
        if !allowed {
            return Some(
                "Controls are turned off for this instance; an org admin can turn them on in its settings."
                    .to_owned(),
            );
        }
        let role = session?.me.with(|m| {
            m.as_ref()?
                .orgs
                .iter()
                .find(|o| o.id == org)
                .map(|o| o.role)
        })?;
        (role < Role::Editor)
            .then(|| "Controls need the editor role in this org; you are a viewer.".to_owned())
    });
    let controls = Controls {
        instance,
        blocked,
        running: RwSignal::new(None),
        said: RwSignal::new(None),
        on_removed: on_close,
        terminal: RwSignal::new(None),
    };
    // Keep the last answer on screen while the next one loads.
    let shown = RwSignal::new(None::<Result<NodeDetails, ApiError>>);
    Effect::new(move |_| {
        if let Some(r) = details.get() {
            shown.set(Some(r));
        }
    });
    Effect::new(move |_| {
        node.track();
        shown.set(None);
        controls.said.set(None);
    });
    view! {
        <aside class="details" id="node-details" aria-label="Node details">
            <div class="details-actions">
                <button type="button" class="secondary" id="details-back" title="Back"
                    on:click=move |_| { if let Some(w) = web_sys::window() { let _ = w.history().map(|h| h.back()); } }>"←"</button>
                <button type="button" class="secondary" id="details-close" title="Close" on:click=move |_| on_close.run(())>"×"</button>
            </div>
            {move || match shown.get() {
                None => view! { <p class="loading">"Loading details…"</p> }.into_any(),
                Some(Err(e)) => view! { <ErrorNotice error=e /> }.into_any(),
                Some(Ok(d)) => body(d, on_open, tables, controls).into_any(),
            }}
            {move || controls.terminal.get().map(|pipe| view! {
                <crate::components::terminal::TerminalPanel instance=instance pipe=pipe
                    on_close=Callback::new(move |()| controls.terminal.set(None)) />
            })}
        </aside>
    }
}
