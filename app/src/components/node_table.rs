//! The table mode of a view: one row per node, sortable by any column, like `top`.

use std::collections::{BTreeMap, BTreeSet};

use leptos::prelude::*;
use shared::topology::NodeSummary;

use crate::components::metrics::format_metric;

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Label,
    Minor,
    Metadata,
    Metric(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Col {
    id: String,
    label: String,
    kind: Kind,
}

/// Columns: label, minor label, the metadata rows most nodes have, then every metric.
fn columns(nodes: &BTreeMap<String, NodeSummary>) -> Vec<Col> {
    let mut cols = vec![
        Col {
            id: "label".into(),
            label: "Name".into(),
            kind: Kind::Label,
        },
        Col {
            id: "labelMinor".into(),
            label: "Where".into(),
            kind: Kind::Minor,
        },
    ];
    let mut meta: BTreeMap<String, (String, usize, f64)> = BTreeMap::new();
    let mut metrics: BTreeMap<String, (String, String, f64)> = BTreeMap::new();
    for n in nodes.values() {
        for m in &n.metadata {
            let e = meta
                .entry(m.id.clone())
                .or_insert((m.label.clone(), 0, m.priority));
            e.1 += 1;
        }
        for m in &n.metrics {
            metrics
                .entry(m.id.clone())
                .or_insert((m.label.clone(), m.format.clone(), m.priority));
        }
    }
    let mut meta: Vec<(String, (String, usize, f64))> = meta
        .into_iter()
        .filter(|(id, (_, count, _))| *count * 2 >= nodes.len() && id != "cmdline")
        .collect();
    meta.sort_by(|a, b| a.1.2.total_cmp(&b.1.2));
    cols.extend(meta.into_iter().take(4).map(|(id, (label, _, _))| Col {
        id,
        label,
        kind: Kind::Metadata,
    }));
    let mut metrics: Vec<(String, (String, String, f64))> = metrics.into_iter().collect();
    metrics.sort_by(|a, b| a.1.2.total_cmp(&b.1.2));
    cols.extend(metrics.into_iter().map(|(id, (label, format, _))| Col {
        id,
        label,
        kind: Kind::Metric(format),
    }));
    cols
}

/// A cell's text and, for numbers, its value for sorting.
fn cell(n: &NodeSummary, col: &Col) -> (String, Option<f64>) {
    match &col.kind {
        Kind::Label => (n.label.clone(), None),
        Kind::Minor => (n.label_minor.clone(), None),
        Kind::Metadata => match n.metadata.iter().find(|m| m.id == col.id) {
            Some(m) => (
                topomap::values::display(&m.value, &m.data_type),
                m.value.trim().parse::<f64>().ok(),
            ),
            None => (String::new(), None),
        },
        Kind::Metric(format) => match n.metrics.iter().find(|m| m.id == col.id) {
            Some(m) => (format_metric(m.value, format), Some(m.value)),
            None => (String::new(), None),
        },
    }
}

#[component]
pub fn NodeTable(
    #[prop(into)] nodes: Signal<BTreeMap<String, NodeSummary>>,
    #[prop(into)] selected: Signal<Option<String>>,
    #[prop(into)] matches: Signal<Option<BTreeSet<String>>>,
    on_select: Callback<String>,
) -> impl IntoView {
    // Sorted by the first metric (descending), like `top`, until a header is clicked.
    let sort = RwSignal::new(None::<(String, bool)>);
    let cols = Memo::new(move |_| nodes.with(columns));
    let rows = Memo::new(move |_| {
        let cols = cols.get();
        let (by, descending) = sort.get().unwrap_or_else(|| {
            cols.iter()
                .find(|c| matches!(c.kind, Kind::Metric(_)))
                .map(|c| (c.id.clone(), true))
                .unwrap_or(("label".into(), false))
        });
        let col = cols.iter().find(|c| c.id == by).cloned();
        let mut rows: Vec<(String, Vec<String>, Option<f64>, String)> = nodes.with(|ns| {
            ns.values()
                .map(|n| {
                    let cells: Vec<String> = cols.iter().map(|c| cell(n, c).0).collect();
                    let (text, num) = col.as_ref().map(|c| cell(n, c)).unwrap_or_default();
                    (n.id.clone(), cells, num, text.to_lowercase())
                })
                .collect()
        });
        rows.sort_by(|a, b| {
            let order = match (a.2, b.2) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Greater,
                (None, Some(_)) => std::cmp::Ordering::Less,
                (None, None) => a.3.cmp(&b.3),
            }
            .then_with(|| a.0.cmp(&b.0));
            if descending { order.reverse() } else { order }
        });
        rows
    });
    let header_click = move |id: String| {
        sort.update(|s| {
            *s = match s {
                Some((current, descending)) if *current == id => Some((id, !*descending)),
                _ => Some((id, false)),
            }
        })
    };
    let arrow = move |id: &str| {
        let active = sort.get().or_else(|| {
            cols.get()
                .iter()
                .find(|c| matches!(c.kind, Kind::Metric(_)))
                .map(|c| (c.id.clone(), true))
        });
        match active {
            Some((c, true)) if c == id => " ▼",
            Some((c, false)) if c == id => " ▲",
            _ => "",
        }
    };
    view! {
        <div class="node-table-wrap">
            <table class="list node-table" id="node-table">
                <thead><tr>
                    {move || cols.get().into_iter().map(|c| {
                        let id = c.id.clone();
                        let id2 = c.id.clone();
                        view! {
                            <th><button type="button" class="sort" data-column=c.id.clone()
                                on:click=move |_| header_click(id.clone())>{c.label.clone()}{move || arrow(&id2)}</button></th>
                        }
                    }).collect_view()}
                </tr></thead>
                <tbody>
                    {move || rows.get().into_iter().map(|(id, cells, _, _)| {
                        let (id_sel, id_dim, id_click) = (id.clone(), id.clone(), id.clone());
                        view! {
                            <tr data-id=id.clone()
                                class:selected=move || selected.with(|s| s.as_deref() == Some(id_sel.as_str()))
                                class:dim=move || matches.with(|m| m.as_ref().is_some_and(|m| !m.contains(&id_dim)))
                                on:click=move |_| on_select.run(id_click.clone())>
                                {cells.into_iter().map(|c| view! { <td>{c}</td> }).collect_view()}
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}
