//! The admin console's System tab: every role replica as the monitoring role last scraped it, with
//! sparklines of its last hour and its own signals, the collector shards with their instances'
//! ingest, and the alerts firing and past. Refreshes every 5 s.

use std::time::Duration;

use leptos::prelude::*;
use shared::monitoring::{HistoryPoint, SystemStatus, TargetStatus};

use crate::api;
use crate::components::async_view::{ErrorNotice, Loading, last_answer};
use crate::components::metrics::ValuesLine;
use crate::components::ticker::ticker;

const REFRESH: Duration = Duration::from_secs(5);

/// A Unix-milliseconds time as the browser's local time of day.
fn time_of(ms: i64) -> String {
    js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64))
        .to_locale_time_string("en-GB")
        .as_string()
        .unwrap_or_default()
}

fn seconds(s: Option<f64>) -> String {
    match s {
        None => "–".to_owned(),
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) => format!("{s:.2} s"),
    }
}

/// A line of one figure over the last hour (gaps left out), or a dash without two points.
fn line(history: &[HistoryPoint], figure: fn(&HistoryPoint) -> Option<f64>) -> AnyView {
    let values: Vec<f64> = history.iter().filter_map(figure).collect();
    if values.len() < 2 {
        return view! { <span class="muted">"–"</span> }.into_any();
    }
    view! { <ValuesLine values=values min=0.0 max=f64::NAN /> }.into_any()
}

/// A role's own figures, in words: only those it exports.
fn signals(t: &TargetStatus) -> Vec<String> {
    let mut out: Vec<String> = t
        .reports_per_second
        .iter()
        .filter(|(_, r)| **r > 0.0 || t.reports_per_second.len() == 1)
        .map(|(outcome, r)| format!("reports {outcome} {r:.1}/s"))
        .collect();
    let mut add = |figure: Option<f64>, say: &dyn Fn(f64) -> String| {
        if let Some(v) = figure {
            out.push(say(v));
        }
    };
    add(t.probes, &|p| format!("{p:.0} probes"));
    add(t.websockets, &|w| format!("{w:.0} websockets"));
    add(t.reconcile_lag_seconds, &|l| {
        format!("reconcile lag {l:.0} s")
    });
    add(t.reconcile_errors_per_second.filter(|r| *r > 0.0), &|r| {
        format!("reconcile errors {r:.2}/s")
    });
    add(t.mail_queue, &|q| format!("{q:.0} mails waiting"));
    add(t.mail_failing.filter(|n| *n > 0.0), &|n| {
        format!("{n:.0} failing delivery")
    });
    add(t.database_errors_per_second.filter(|r| *r > 0.0), &|r| {
        format!("database errors {r:.2}/s")
    });
    add(t.history_buffer_bytes, &|b| {
        format!("history waiting {}", bytes(b))
    });
    add(
        t.history_oldest_waiting_seconds.filter(|s| *s > 0.0),
        &|s| format!("oldest waiting {s:.0} s"),
    );
    for (outcome, r) in &t.history_per_second {
        if *r > 0.0 || outcome == "stored" {
            out.push(format!("history {} {r:.1}/s", outcome.replace('_', " ")));
        }
    }
    out
}

/// Bytes in the unit that reads best.
fn bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

/// Instances listed per shard; the quieter rest are counted.
const SHOWN_INSTANCES: usize = 50;

/// A collector replica: its shard, probes, ingest over the hour, and its busiest instances.
fn shard_view(t: TargetStatus) -> impl IntoView {
    let name = t.shard.clone().unwrap_or_else(|| "?".to_owned());
    let total: f64 = t
        .instances
        .iter()
        .filter_map(|i| i.reports_per_second)
        .sum();
    let count = t.instances.len();
    let more = count.saturating_sub(SHOWN_INSTANCES);
    let rows = t.instances.iter().take(SHOWN_INSTANCES).map(|i| view! {
        <tr data-instance=i.instance.clone()>
            <td><code>{i.instance.clone()}</code></td>
            <td class="num">{format!("{:.0}", i.probes)}</td>
            <td class="num ingest">{i.reports_per_second.map_or("–".to_owned(), |r| format!("{r:.2}"))}</td>
            <td class="num">{bytes(i.window_bytes)}</td>
        </tr>
    }).collect_view();
    view! {
        <div class="shard" data-shard=name.clone() data-instance=t.instance.clone()>
            <h3>{format!("Shard {name}")}<span class="muted small">{format!(" · {} · {count} instances · {} probes · {total:.1} reports/s", t.instance, t.probes.map_or(0.0, |p| p))}</span></h3>
            <p class="small">"Reports accepted per second, last hour: "{line(&t.history, |p| p.reports_per_second)}</p>
            {if count == 0 {
                view! { <p class="empty">"No instance is placed on this shard."</p> }.into_any()
            } else {
                view! {
                    <div class="table-wrap">
                        <table class="list shard-instances">
                            <thead><tr><th>"Instance"</th><th>"Probes"</th><th>"Reports/s"</th><th>"Window"</th></tr></thead>
                            <tbody>{rows}</tbody>
                        </table>
                    </div>
                    {(more > 0).then(|| view! { <p class="muted small">{format!("… and {more} quieter instances.")}</p> })}
                }.into_any()
            }}
        </div>
    }
}

fn target_row(t: TargetStatus) -> impl IntoView {
    let state = match (t.up, t.ready) {
        (true, true) => "ready",
        (true, false) => "not ready",
        (false, _) => "down",
    };
    view! {
        <tr data-role=t.role.clone() data-instance=t.instance.clone() data-state=state>
            <td>{t.role.clone()}</td>
            <td>{t.instance.clone()}</td>
            <td><span class=format!("badge health-{}", state.replace(' ', "-"))>{state}</span>
                {t.error.clone().map(|e| view! { <div class="muted small">{e}</div> })}</td>
            <td class="num">{t.requests_per_second.map_or("–".to_owned(), |r| format!("{r:.1}"))}</td>
            <td>{line(&t.history, |p| p.requests_per_second)}</td>
            <td class="num">{t.error_ratio.map_or("–".to_owned(), |r| format!("{:.1}%", r * 100.0))}</td>
            <td>{line(&t.history, |p| p.error_ratio)}</td>
            <td class="num">{seconds(t.p99_seconds)}</td>
            <td>{line(&t.history, |p| p.p99_seconds)}</td>
            <td class="small signals">{signals(&t).join(" · ")}</td>
            <td class="small">{t.last_scrape_ms.map(time_of)}</td>
        </tr>
    }
}

fn system_view(status: SystemStatus) -> impl IntoView {
    let shards: Vec<TargetStatus> = status
        .targets
        .iter()
        .filter(|t| t.shard.is_some())
        .cloned()
        .collect();
    let firing = status.firing.clone();
    let past = status.alert_history.clone();
    let healthy = status.targets.iter().all(|t| t.up && t.ready) && firing.is_empty();
    view! {
        <p id="system-summary" class=if healthy { "notice" } else { "error-notice" }>
            {if status.targets.is_empty() {
                "Monitoring has not scraped anything yet.".to_owned()
            } else if healthy {
                format!("All {} replicas are ready; no alert is firing.", status.targets.len())
            } else {
                let down = status.targets.iter().filter(|t| !(t.up && t.ready)).count();
                format!("{down} of {} replicas not ready; {} alerts firing.", status.targets.len(), firing.len())
            }}
        </p>
        <h2>"Alerts firing"</h2>
        {if firing.is_empty() {
            view! { <p class="empty" id="alerts-none">"None."</p> }.into_any()
        } else {
            view! {
                <ul class="alerts" id="alerts-firing">
                    {firing.into_iter().map(|a| view! {
                        <li data-rule=a.rule.clone()><strong>{a.rule.clone()}</strong>" · "{a.role.clone()}" "{a.instance.clone()}
                            " · since "{time_of(a.since_ms)}<div class="muted">{a.summary.clone()}</div></li>
                    }).collect_view()}
                </ul>
            }.into_any()
        }}
        <h2>"Roles"</h2>
        <div class="table-wrap">
            <table class="list" id="system-targets">
                <thead><tr><th>"Role"</th><th>"Replica"</th><th>"State"</th><th>"Requests/s"</th><th>"last hour"</th>
                    <th>"5xx"</th><th>"last hour"</th><th>"p99"</th><th>"last hour"</th><th>"Signals"</th><th>"Scraped"</th></tr></thead>
                <tbody>{status.targets.into_iter().map(target_row).collect_view()}</tbody>
            </table>
        </div>
        <h2>"Collector shards"</h2>
        {if shards.is_empty() {
            view! { <p class="empty" id="shards-none">"No collector shard has been scraped."</p> }.into_any()
        } else {
            view! { <div id="system-shards">{shards.into_iter().map(shard_view).collect_view()}</div> }.into_any()
        }}
        <h2>"Alert history"</h2>
        {if past.is_empty() {
            view! { <p class="empty">"No alert has fired."</p> }.into_any()
        } else {
            view! {
                <ul class="alerts" id="alert-history">
                    {past.into_iter().map(|e| view! {
                        <li>{time_of(e.at_ms)}" · "<span class="badge">{e.state.clone()}</span>" "<strong>{e.rule.clone()}</strong>
                            " · "{e.role.clone()}" "{e.instance.clone()}</li>
                    }).collect_view()}
                </ul>
            }.into_any()
        }}
    }
}

#[component]
pub fn SystemTab() -> impl IntoView {
    let tick = ticker(REFRESH);
    let read = LocalResource::new(move || {
        tick.track();
        api::admin_system()
    });
    // The last answer stays while the next loads; an error is shown above it.
    let (shown, error) = last_answer(read);
    view! {
        <section class="system" id="system">
            {move || error.get().map(|e| view! { <ErrorNotice error=e /> })}
            {move || match shown.get() {
                None if error.with(Option::is_none) => view! { <Loading what="the system's state" /> }.into_any(),
                None => ().into_any(),
                Some(s) => system_view(s).into_any(),
            }}
        </section>
    }
}
