//! `/bench/layout?nodes=2000&runs=7`: times the map's layout in this browser (docs/benchmarks.md).
//! Not linked from anywhere; the browser benchmark test opens it and reads the numbers.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use topomap::layout::{Options, layout, sample_graph, update};

fn now() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[component]
pub fn LayoutBench() -> impl IntoView {
    let query = use_query_map();
    let get = |k: &str, default: usize| {
        query.with_untracked(|q| q.get(k).and_then(|v| v.parse().ok()).unwrap_or(default))
    };
    let (nodes, runs) = (get("nodes", 2000).min(20_000), get("runs", 7).clamp(1, 50));
    let result = RwSignal::new(None::<(f64, f64, f64, usize)>);
    // After the first paint, so the page shows that it is working.
    set_timeout(
        move || {
            let opts = Options::default();
            let (ids, edges) = sample_graph(nodes);
            let mut full = Vec::new();
            let mut placed = None;
            for _ in 0..runs {
                let t0 = now();
                placed = Some(layout(ids.iter().map(String::as_str), &edges, &opts));
                full.push(now() - t0);
            }
            let placed = placed.unwrap_or_default();
            // A live update: ten new nodes joining the graph.
            let mut more_ids = ids.clone();
            let mut more_edges = edges.clone();
            for i in 0..10 {
                more_ids.push(format!("new-{i}"));
                more_edges.push((format!("frontend-{i}"), format!("new-{i}")));
            }
            let mut incremental = Vec::new();
            for _ in 0..runs {
                let t0 = now();
                let _ = update(
                    &placed,
                    more_ids.iter().map(String::as_str),
                    &more_edges,
                    &opts,
                );
                incremental.push(now() - t0);
            }
            let worst = full.iter().copied().fold(0.0, f64::max);
            result.set(Some((
                median(full),
                worst,
                median(incremental),
                placed.positions.len(),
            )));
        },
        std::time::Duration::from_millis(50),
    );
    view! {
        <section>
            <h1>"Layout benchmark"</h1>
            <p>{format!("{nodes} nodes, {runs} runs each.")}</p>
            {move || match result.get() {
                None => view! { <p class="loading" id="bench-running">"Running…"</p> }.into_any(),
                Some((full, worst, incremental, placed)) => view! {
                    <dl class="facts">
                        <dt>"Full layout, median (ms)"</dt><dd><output id="layout-ms">{format!("{full:.1}")}</output></dd>
                        <dt>"Full layout, slowest (ms)"</dt><dd><output id="layout-worst-ms">{format!("{worst:.1}")}</output></dd>
                        <dt>"Update with 10 new nodes, median (ms)"</dt><dd><output id="update-ms">{format!("{incremental:.1}")}</output></dd>
                        <dt>"Nodes placed"</dt><dd><output id="layout-nodes">{placed}</output></dd>
                    </dl>
                }.into_any(),
            }}
        </section>
    }
}
