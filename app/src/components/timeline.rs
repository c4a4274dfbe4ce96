//! The timeline under the map (time travel): pause at a moment, drag to another, step back and
//! forth, jump back to live; a sparkline of the view's node counts over the range, so changes
//! stand out; and "changes since", which highlights what appeared and vanished on the map.

use leptos::prelude::*;
use shared::topology::{HistoryNote, Timeline as Kept, TimelinePoint};

use crate::api;
use crate::components::ticker::ticker;

/// How far a step goes: Scope's window.
const STEP_MS: i64 = 15_000;

/// The ranges the timeline shows, ending now.
const RANGES: [(i64, &str); 5] = [
    (15 * 60_000, "15 min"),
    (3_600_000, "1 hour"),
    (6 * 3_600_000, "6 hours"),
    (24 * 3_600_000, "24 hours"),
    (7 * 24 * 3_600_000, "7 days"),
];

/// How far back "changes since" compares.
pub const COMPARE: [(i64, &str); 5] = [
    (15_000, "15 s before"),
    (60_000, "1 min before"),
    (5 * 60_000, "5 min before"),
    (15 * 60_000, "15 min before"),
    (3_600_000, "1 hour before"),
];

pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// RFC 3339 in whole seconds (UTC), as the URL and the API take a moment.
pub fn rfc3339(ms: i64) -> String {
    js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(
        (ms - ms.rem_euclid(1000)) as f64,
    ))
    .to_iso_string()
    .as_string()
    .unwrap_or_default()
    .replace(".000Z", "Z")
}

pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let ms = js_sys::Date::parse(s);
    ms.is_finite().then_some(ms as i64)
}

fn local_time(ms: i64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
    format!(
        "{} {}",
        date.to_locale_date_string("en-GB", &wasm_bindgen::JsValue::UNDEFINED),
        date.to_locale_time_string("en-GB")
    )
}

/// What the sparkline draws for `view`: its node counts as the map showed them, each at the
/// moment it was counted (several points may carry one count), or, for history kept before the
/// collector counted views, the nodes of the report topology it is drawn from. Points without a
/// view count (none made in time) are left out rather than mixed in.
fn counts_of(points: &[TimelinePoint], view: &str) -> Vec<(i64, u64)> {
    if points.iter().any(|p| !p.views.is_empty()) {
        let mut counted: Vec<(i64, u64)> = points
            .iter()
            .filter(|p| !p.views.is_empty())
            .map(|p| {
                let at = p.views_at.unwrap_or(p.at);
                (at, p.views.get(view).copied().unwrap_or(0))
            })
            .collect();
        counted.sort_unstable();
        counted.dedup_by_key(|c| c.0);
        return counted;
    }
    let topology = report_topology(view);
    points
        .iter()
        .map(|p| (p.at, p.counts.get(topology).copied().unwrap_or(0)))
        .collect()
}

/// The report topology a view is drawn from (the sparkline of history kept before views were
/// counted).
fn report_topology(view: &str) -> &'static str {
    match view {
        "hosts" => "Host",
        v if v.starts_with("containers-by-image") => "ContainerImage",
        v if v.starts_with("containers") => "Container",
        v if v.starts_with("processes") => "Process",
        "pods" => "Pod",
        "services" => "Service",
        "kube-controllers" | "deployments" => "Deployment",
        "swarm-services" => "SwarmService",
        "ecs-tasks" => "ECSTask",
        "ecs-services" => "ECSService",
        "weave" => "Overlay",
        _ => "Host",
    }
}

/// What the changes since the compared moment came to: nodes and edges appeared and vanished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeCounts {
    pub appeared: usize,
    pub vanished: usize,
    pub edges_appeared: usize,
    pub edges_vanished: usize,
}

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 36.0;

#[component]
pub fn Timeline(
    #[prop(into)] instance: Signal<String>,
    #[prop(into)] view: Signal<String>,
    /// The moment shown (ms), or `None` for live.
    #[prop(into)]
    at: Signal<Option<i64>>,
    /// Moves to a moment, or back to live (`None`).
    on_moment: Callback<Option<i64>>,
    /// How long before the moment "changes since" compares with (ms), if at all.
    compare: RwSignal<Option<i64>>,
    /// What history had for the moment shown.
    #[prop(into)]
    note: Signal<Option<HistoryNote>>,
    #[prop(into)] changes: Signal<Option<ChangeCounts>>,
) -> impl IntoView {
    let range = RwSignal::new(3_600_000i64);
    // The range ends now: moved every second, read again from the server every ten. It ends on a
    // whole second, so that the slider's steps are the whole seconds moments are taken in (a
    // moment dragged to is the one the URL then names).
    let clock = ticker(std::time::Duration::from_secs(1));
    let refresh = ticker(std::time::Duration::from_secs(10));
    let end = Memo::new(move |_| {
        clock.track();
        let now = now_ms();
        now - now.rem_euclid(1_000)
    });
    let kept = LocalResource::new(move || {
        refresh.track();
        at.track();
        let (i, to, span) = (instance.get(), end.get_untracked(), range.get());
        async move { api::timeline(&i, to - span, to).await }
    });
    let timeline = Memo::new(move |_| kept.get().and_then(Result::ok).unwrap_or_default());
    let from = Memo::new(move |_| end.get() - range.get());
    let x_of = move |t: i64| {
        let (f, e) = (from.get(), end.get());
        ((t - f) as f64 / (e - f).max(1) as f64 * WIDTH).clamp(0.0, WIDTH)
    };
    let drawn = Memo::new(move |_| {
        let view = view.get();
        timeline.with(|t: &Kept| counts_of(&t.points, &view))
    });
    let most = Memo::new(move |_| drawn.with(|c| c.iter().map(|c| c.1).max().unwrap_or(0)));
    let sparkline = Memo::new(move |_| {
        let max = most.get().max(1) as f64;
        drawn.with(|counts| {
            counts
                .iter()
                .map(|(t, n)| {
                    format!(
                        "{:.1},{:.1}",
                        x_of(*t),
                        HEIGHT - 2.0 - (*n as f64 / max) * (HEIGHT - 4.0)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
    });
    let kept_span = Memo::new(move |_| {
        timeline.with(|t| match (t.kept_from, t.kept_to) {
            (Some(a), Some(b)) => Some((x_of(a), x_of(b))),
            _ => None,
        })
    });
    let step = move |by: i64| {
        let now = now_ms();
        let next = at.get_untracked().unwrap_or(now) + by;
        on_moment.run((next < now - 2_000).then_some(next));
    };
    let label = move || match at.get() {
        None => "Live".to_owned(),
        Some(t) => {
            let said = note.with(|n| {
                n.as_ref().map(|n| match n.state.as_str() {
                    "before-history" => match n.kept_from.as_deref().and_then(parse_rfc3339) {
                        Some(from) => {
                            format!(" — before the history kept (from {})", local_time(from))
                        }
                        None => " — no history kept yet".to_owned(),
                    },
                    "gap" => " — no probe reported then".to_owned(),
                    _ => String::new(),
                })
            });
            format!("{}{}", local_time(t), said.unwrap_or_default())
        }
    };

    view! {
        <section class="timeline" id="timeline" aria-label="Timeline"
            data-at=move || at.get().map(|t| t.to_string()).unwrap_or_default()
            data-state=move || note.with(|n| n.as_ref().map(|n| n.state.clone())).unwrap_or_else(|| "live".to_owned())>
            <div class="timeline-controls">
                {move || if at.get().is_none() {
                    view! {
                        <button type="button" id="timeline-pause" title="Stop at this moment to look back from it"
                            on:click=move |_| on_moment.run(Some(now_ms() - 2_000))>"⏸ Pause"</button>
                    }.into_any()
                } else {
                    view! {
                        <button type="button" id="timeline-live" class="primary" title="Back to the live map"
                            on:click=move |_| on_moment.run(None)>"● Live"</button>
                    }.into_any()
                }}
                <button type="button" class="secondary" id="timeline-back" title="15 s back"
                    on:click=move |_| step(-STEP_MS)>"◀ 15 s"</button>
                <button type="button" class="secondary" id="timeline-forward" title="15 s forward"
                    disabled=move || at.get().is_none() on:click=move |_| step(STEP_MS)>"15 s ▶"</button>
                <span class="timeline-moment" id="timeline-moment" role="status">{label}</span>
                <label>"Changes since "
                    <select id="timeline-compare" aria-label="Changes since" disabled=move || at.get().is_none()
                        on:change=move |ev| compare.set(event_target_value(&ev).parse::<i64>().ok().filter(|v| *v > 0))>
                        <option value="0" selected=move || compare.get().is_none()>"off"</option>
                        {COMPARE.iter().map(|(ms, name)| {
                            let ms = *ms;
                            view! { <option value=ms.to_string() selected=move || compare.get() == Some(ms)>{*name}</option> }
                        }).collect_view()}
                    </select>
                </label>
                {move || changes.get().map(|c| view! {
                    <span class="changes-summary" id="changes-summary">
                        <span class="appeared">{format!("+{} nodes", c.appeared)}</span>" "
                        <span class="vanished">{format!("−{} nodes", c.vanished)}</span>
                        {format!(" · edges +{} −{}", c.edges_appeared, c.edges_vanished)}
                    </span>
                })}
                <select id="timeline-range" aria-label="Range" on:change=move |ev| {
                    if let Ok(span) = event_target_value(&ev).parse() { range.set(span) }
                }>
                    {RANGES.iter().map(|(ms, name)| {
                        let ms = *ms;
                        view! { <option value=ms.to_string() selected=move || range.get() == ms>{format!("last {name}")}</option> }
                    }).collect_view()}
                </select>
            </div>
            <div class="timeline-track">
                <svg class="sparkline" id="timeline-sparkline" viewBox=format!("0 0 {WIDTH} {HEIGHT}")
                    preserveAspectRatio="none" role="img"
                    aria-label=move || format!("Nodes in this view over the last {}: at most {}", RANGES.iter().find(|r| r.0 == range.get()).map_or("hour", |r| r.1), most.get())
                    data-points=move || timeline.with(|t| t.points.len()).to_string()
                    data-most=move || most.get().to_string()>
                    {move || kept_span.get().map(|(a, b)| view! {
                        <rect class="kept" x=format!("{a:.1}") y="0" width=format!("{:.1}", (b - a).max(1.0)) height=HEIGHT.to_string() />
                    })}
                    <polyline class="counts" points=move || sparkline.get() />
                    {move || at.get().map(|t| {
                        let x = x_of(t);
                        view! { <line class="moment" x1=format!("{x:.1}") x2=format!("{x:.1}") y1="0" y2=HEIGHT.to_string() /> }
                    })}
                </svg>
                <input type="range" id="timeline-slider" aria-label="Moment"
                    min=move || from.get().to_string() max=move || end.get().to_string() step="1000"
                    prop:value=move || at.get().unwrap_or_else(|| end.get()).to_string()
                    on:change=move |ev| {
                        if let Ok(t) = event_target_value(&ev).parse::<i64>() {
                            on_moment.run((t < now_ms() - 2_000).then_some(t));
                        }
                    } />
            </div>
        </section>
    }
}
