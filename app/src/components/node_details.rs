//! The details panel of a selected node: metrics with sparklines, metadata, parents (links to their
//! views), children tables, and connections in and out. It refreshes while open.

use leptos::prelude::*;
use shared::ApiError;
use shared::topology::{ChildGroup, Connections, NodeDetails};

use crate::api;
use crate::components::async_view::ErrorNotice;
use crate::components::metrics::{Sparkline, format_metric};

/// How often an open panel reloads.
const REFRESH_MS: u64 = 5_000;

/// A link from the panel: to another node, maybe in another view.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLink {
    pub view: String,
    pub node: String,
}

fn children_table(group: ChildGroup, on_open: Callback<NodeLink>) -> impl IntoView {
    let columns = group.columns.clone().unwrap_or_default();
    let view_id = group.topology_id.clone();
    view! {
        <h4>{group.label.clone()}</h4>
        <table class="list compact">
            <thead><tr>
                <th>"Name"</th>
                {columns.iter().map(|c| view! { <th>{c.label.clone()}</th> }).collect_view()}
            </tr></thead>
            <tbody>
                {group.nodes.clone().unwrap_or_default().into_iter().map(|n| {
                    let link = NodeLink { view: view_id.clone(), node: n.id.clone() };
                    let cells: Vec<String> = columns.iter().map(|c| {
                        n.metrics.iter().find(|m| m.id == c.id).map(|m| format_metric(m.value, &m.format))
                            .or_else(|| n.metadata.iter().find(|m| m.id == c.id).map(|m| m.value.clone()))
                            .unwrap_or_default()
                    }).collect();
                    view! {
                        <tr>
                            <td><button type="button" class="link-like" on:click=move |_| on_open.run(link.clone())>{n.label.clone()}</button></td>
                            {cells.into_iter().map(|c| view! { <td>{c}</td> }).collect_view()}
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
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

fn body(d: NodeDetails, on_open: Callback<NodeLink>) -> impl IntoView {
    let s = d.summary;
    view! {
        <header class="details-head">
            <h2 id="details-label">{s.label.clone()}</h2>
            <p class="muted">{s.label_minor.clone()}</p>
        </header>
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
                {s.metadata.iter().map(|m| view! { <dt>{m.label.clone()}</dt><dd>{m.value.clone()}</dd> }).collect_view()}
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
            .map(|g| children_table(g, on_open)).collect_view()}
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
    let tick = RwSignal::new(0u64);
    let handle = set_interval_with_handle(
        move || tick.update(|t| *t += 1),
        std::time::Duration::from_millis(REFRESH_MS),
    )
    .ok();
    on_cleanup(move || {
        if let Some(h) = handle {
            h.clear();
        }
    });
    let details = LocalResource::new(move || {
        tick.track();
        let (i, v, n, q) = (instance.get(), view.get(), node.get(), options.get());
        async move { api::node_details(&i, &v, &n, &q).await }
    });
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
                Some(Ok(d)) => body(d, on_open).into_any(),
            }}
        </aside>
    }
}
