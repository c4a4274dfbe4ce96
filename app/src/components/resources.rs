//! The resource view (Scope's, `?mode=resource&metric=cpu|memory`): hosts, containers and processes
//! as three rows of boxes sized by CPU or memory (`topomap::resources`). It reads the three views
//! itself, every few seconds, with the options that show everything (system containers, stopped
//! ones left out, unconnected processes in).

use std::collections::BTreeMap;
use std::time::Duration;

use leptos::prelude::*;
use shared::ApiError;
use shared::topology::NodeSummary;
use topomap::resources::{Layer, Metric, layout};

use crate::api;
use crate::components::async_view::{ErrorNotice, last_answer};
use crate::components::graph::hue_of;
use crate::components::metrics::format_metric;
use crate::components::ticker::ticker;

const REFRESH: Duration = Duration::from_secs(5);

/// What each row reads: the view and its options.
const SOURCES: [(&str, &str); 3] = [
    ("hosts", ""),
    ("containers", "system=all&stopped=running&pseudo=hide"),
    ("processes", "unconnected=show"),
];

type Views = [BTreeMap<String, NodeSummary>; 3];

async fn read_all(instance: String) -> Result<Views, ApiError> {
    let mut views: Views = Default::default();
    for (slot, (view, query)) in views.iter_mut().zip(SOURCES) {
        *slot = api::topology_nodes(&instance, view, query).await?;
    }
    Ok(views)
}

/// The rows. `on_select` gets the view and the id of a box clicked; `selected` is the node whose
/// details are open.
#[component]
pub fn ResourceView(
    #[prop(into)] instance: Signal<String>,
    #[prop(into)] metric: Signal<Metric>,
    #[prop(into)] selected: Signal<Option<String>>,
    on_select: Callback<(String, String)>,
) -> impl IntoView {
    let tick = ticker(REFRESH);
    let read = LocalResource::new(move || {
        tick.track();
        read_all(instance.get())
    });
    // The last answer stays on screen while the next loads.
    let (views, error) = last_answer(read);
    let boxes = Memo::new(move |_| {
        views.with(|v| {
            v.as_ref().map(|[hosts, containers, processes]| {
                layout(hosts, containers, processes, metric.get())
            })
        })
    });
    let row = move |layer: Layer, title: &'static str| {
        view! {
            <div class="resource-row" data-layer=layer.view()>
                <span class="resource-row-title">{title}</span>
                <For each=move || boxes.with(|b| b.iter().flatten().filter(|b| b.layer == layer).cloned().collect::<Vec<_>>())
                    key=|b| (b.id.clone(), b.x.to_bits(), b.width.to_bits(), b.fill.to_bits()) let:b>
                    {
                        let (id, view_name) = (b.id.clone(), layer.view().to_owned());
                        let id_sel = id.clone();
                        let value = format_metric(b.value, &b.format);
                        view! {
                            <button type="button" class="resource-box" data-id=b.id.clone()
                                class:selected=move || selected.with(|s| s.as_deref() == Some(id_sel.as_str()))
                                style=format!("left:{:.4}%;width:{:.4}%;--hue:{};--fill:{:.3}",
                                    b.x * 100.0, b.width * 100.0, hue_of(&b.label), b.fill.clamp(0.0, 1.0))
                                title=format!("{}: {value}", b.label)
                                on:click=move |_| on_select.run((view_name.clone(), id.clone()))>
                                <span class="resource-fill"></span>
                                <span class="resource-label">{b.label.clone()}</span>
                            </button>
                        }
                    }
                </For>
            </div>
        }
    };
    view! {
        <div class="resources" id="resource-view">
            {move || error.get().map(|e| view! { <ErrorNotice error=e /> })}
            {move || match boxes.with(|b| b.as_ref().map(Vec::is_empty)) {
                None => view! { <p class="loading" role="status">"Loading the resources…"</p> }.into_any(),
                Some(true) => view! {
                    <p class="empty-state" id="resource-empty">
                        {move || format!("No host reports its {} use yet.", if metric.get() == Metric::Memory { "memory" } else { "CPU" })}
                    </p>
                }.into_any(),
                Some(false) => ().into_any(),
            }}
            {row(Layer::Host, "Hosts")}
            {row(Layer::Container, "Containers")}
            {row(Layer::Process, "Processes")}
        </div>
    }
}
