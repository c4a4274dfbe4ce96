//! What monitoring reads off one scrape of a role's `/metrics`, and what two scrapes in a row say:
//! request rate, 5xx ratio, p50/p99 latency, reports accepted and refused. Pure: no I/O.
//!
//! A `Reading` keeps the few figures the status page and the alert rules use, summed over label
//! sets, not the samples themselves: about 1 KB whatever the target sends (its buckets, its report
//! outcomes — both bounded below), so an hour of readings per target stays small.

use std::collections::BTreeMap;

use prometheus_parse::{Scrape, Value};

/// Scopehub's metric names (`telemetry.rs`), as the text format gives them.
const REQUESTS: &str = "scopehub_http_request_duration_seconds";
const REPORTS: &str = "scopehub_collector_reports_total";
const RECONCILE_LAG: &str = "scopehub_reconcile_lag_seconds";
const RECONCILE_ERRORS: &str = "scopehub_reconcile_errors_total";
const WEBSOCKETS: &str = "scopehub_collector_websockets";
const PROBES: &str = "scopehub_collector_probes";
const SHARD: &str = "scopehub_collector_shard";
const INSTANCE_PROBES: &str = "scopehub_collector_instance_probes";
const INSTANCE_REPORTS: &str = "scopehub_collector_instance_reports_total";
const INSTANCE_WINDOW: &str = "scopehub_collector_instance_window_bytes";
const MAIL_DELIVERIES: &str = "scopehub_mail_deliveries_total";
const MAIL_QUEUE: &str = "scopehub_mail_queue";
const MAIL_FAILING: &str = "scopehub_mail_failing";
const DATABASE_ERRORS: &str = "scopehub_database_errors_total";
const HISTORY_REPORTS: &str = "scopehub_history_reports_total";
const HISTORY_BUFFER: &str = "scopehub_history_buffer_bytes";
const HISTORY_OLDEST_WAITING: &str = "scopehub_history_oldest_waiting_seconds";

/// At most this many latency buckets and report outcomes are kept of one reading (ours have 16 and
/// a handful); of a target that sends more, the lowest bounds and the first outcomes.
const MAX_BUCKETS: usize = 64;
const MAX_OUTCOMES: usize = 32;
/// At most this many of a collector's instances are read (the first by id); the rest are counted
/// in the shard's totals only. Only a target's latest two readings keep them (`history.rs`).
pub const MAX_INSTANCES: usize = 2_000;
/// Shard names longer than this are cut.
const MAX_NAME: usize = 128;

/// One scrape's figures. Counters are totals since the target started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// HTTP requests answered, and those answered with a 5xx.
    pub requests: f64,
    pub server_errors: f64,
    /// Cumulative request counts by upper bound (`le`, seconds), summed over routes, ascending.
    pub latency_buckets: Vec<(f64, f64)>,
    /// Probe reports by outcome (`accepted`, or why refused).
    pub reports: BTreeMap<String, f64>,
    pub reconcile_lag_seconds: Option<f64>,
    pub reconcile_errors: Option<f64>,
    /// Map websockets open (collectors).
    pub websockets: Option<f64>,
    /// Probes that reported within the last minute (collectors).
    pub probes: Option<f64>,
    /// The collector's shard name.
    pub shard: Option<String>,
    /// A collector's instances by id: at most [`MAX_INSTANCES`].
    pub instances: BTreeMap<String, InstanceReading>,
    /// Outbox messages waiting, and those of them whose last attempt failed (users).
    pub mail_queue: Option<f64>,
    pub mail_failing: Option<f64>,
    /// Delivery attempts that failed, since start (users).
    pub mail_failures: Option<f64>,
    /// Requests and background steps that failed on the database, since start.
    pub database_errors: Option<f64>,
    /// History: reports stored, not kept, batches failed… by outcome, since start (collectors).
    pub history: BTreeMap<String, f64>,
    /// History: report bytes waiting to be written (collectors).
    pub history_buffer_bytes: Option<f64>,
    /// History: how long the oldest waiting report has waited, at the last flush (collectors).
    pub history_oldest_waiting_seconds: Option<f64>,
}

/// One instance on a collector, as one scrape found it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceReading {
    pub probes: f64,
    /// Reports accepted since the shard took the instance (a counter).
    pub reports: f64,
    pub window_bytes: f64,
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
            Some(*v).filter(|v| v.is_finite())
        }
        Value::Histogram(_) | Value::Summary(_) => None,
    }
}

/// The figures of `scrape`. Unknown metrics are ignored; malformed values were skipped by the
/// parser.
pub fn read(scrape: &Scrape) -> Reading {
    let mut reading = Reading::default();
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for sample in &scrape.samples {
        let name = sample.metric.as_str();
        match (name, &sample.value) {
            (REQUESTS, Value::Histogram(counts)) => {
                let total = counts
                    .iter()
                    .find(|c| c.less_than.is_infinite())
                    .map_or(0.0, |c| c.count);
                if !total.is_finite() {
                    continue;
                }
                reading.requests += total;
                let status: u16 = sample
                    .labels
                    .get("status")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if status >= 500 {
                    reading.server_errors += total;
                }
                for c in counts {
                    if !c.count.is_finite() || c.less_than.is_nan() {
                        continue;
                    }
                    // Keyed by the bound's bits: the same `le` from every route adds up. (As many
                    // as the body held; cut to `MAX_BUCKETS` below.)
                    let key = c.less_than.to_bits();
                    buckets.entry(key).or_insert((c.less_than, 0.0)).1 += c.count;
                }
            }
            (REPORTS, value) => {
                let outcome = sample.labels.get("outcome").unwrap_or("unknown");
                if let Some(v) = number(value)
                    && (reading.reports.len() < MAX_OUTCOMES
                        || reading.reports.contains_key(outcome))
                {
                    *reading.reports.entry(outcome.to_owned()).or_default() += v;
                }
            }
            (INSTANCE_PROBES | INSTANCE_REPORTS | INSTANCE_WINDOW, value) => {
                let (Some(id), Some(v)) = (sample.labels.get("instance_id"), number(value)) else {
                    continue;
                };
                if reading.instances.len() >= MAX_INSTANCES && !reading.instances.contains_key(id) {
                    continue;
                }
                let entry = reading.instances.entry(id.to_owned()).or_default();
                match name {
                    INSTANCE_PROBES => entry.probes = v,
                    INSTANCE_REPORTS => entry.reports = v,
                    _ => entry.window_bytes = v,
                }
            }
            (SHARD, _) => {
                reading.shard = sample
                    .labels
                    .get("shard")
                    .map(|s| s.chars().take(MAX_NAME).collect());
            }
            (PROBES, value) => reading.probes = number(value),
            (MAIL_QUEUE, value) => reading.mail_queue = number(value),
            (MAIL_FAILING, value) => reading.mail_failing = number(value),
            (MAIL_DELIVERIES, value) if sample.labels.get("outcome") == Some("failed") => {
                reading.mail_failures = number(value);
            }
            (DATABASE_ERRORS, value) => reading.database_errors = number(value),
            (HISTORY_BUFFER, value) => reading.history_buffer_bytes = number(value),
            (HISTORY_OLDEST_WAITING, value) => {
                reading.history_oldest_waiting_seconds = number(value);
            }
            (HISTORY_REPORTS, value) => {
                let outcome = sample.labels.get("outcome").unwrap_or("unknown");
                if let Some(v) = number(value)
                    && (reading.history.len() < MAX_OUTCOMES
                        || reading.history.contains_key(outcome))
                {
                    *reading.history.entry(outcome.to_owned()).or_default() += v;
                }
            }
            (RECONCILE_LAG, value) => reading.reconcile_lag_seconds = number(value),
            (RECONCILE_ERRORS, value) => reading.reconcile_errors = number(value),
            (WEBSOCKETS, value) => reading.websockets = number(value),
            _ => {}
        }
    }
    let mut latency: Vec<(f64, f64)> = buckets.into_values().collect();
    latency.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Too many bounds: the lowest ones, and `+Inf` (the total) always.
    if latency.len() > MAX_BUCKETS {
        let last = latency[latency.len() - 1];
        latency.truncate(MAX_BUCKETS - 1);
        latency.push(last);
    }
    reading.latency_buckets = latency;
    reading
}

/// What happened between two readings of one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    pub requests_per_second: f64,
    /// 5xx over all requests; `None` without requests.
    pub error_ratio: Option<f64>,
    /// Latency quantiles in seconds, from the buckets' growth; `None` without requests.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub reports_per_second: BTreeMap<String, f64>,
    /// Reports accepted per second by instance (collectors).
    pub instance_reports_per_second: BTreeMap<String, f64>,
    pub reconcile_errors_per_second: Option<f64>,
    pub mail_failures_per_second: Option<f64>,
    pub database_errors_per_second: Option<f64>,
    /// History by outcome, per second (collectors).
    pub history_per_second: BTreeMap<String, f64>,
}

/// How much a counter grew from `before` to `after`; a counter that went down was reset (the
/// process restarted), and has grown by its new value since (Prometheus' rule).
fn growth(before: f64, after: f64) -> f64 {
    if after >= before {
        after - before
    } else {
        after
    }
}

/// The rates between `before` and `after`, taken `seconds` apart.
pub fn rates(before: &Reading, after: &Reading, seconds: f64) -> Rates {
    if seconds <= 0.0 || !seconds.is_finite() {
        return Rates::default();
    }
    let restarted = after.requests < before.requests;
    let requests = growth(before.requests, after.requests);
    let errors = if restarted {
        after.server_errors
    } else {
        growth(before.server_errors, after.server_errors)
    };
    let bucket_growth: Vec<(f64, f64)> = after
        .latency_buckets
        .iter()
        .map(|&(le, count)| {
            let was = if restarted {
                0.0
            } else {
                before
                    .latency_buckets
                    .iter()
                    .find(|(b, _)| *b == le)
                    .map_or(0.0, |(_, c)| *c)
            };
            (le, growth(was, count))
        })
        .collect();
    let outcomes_per_second = |before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>| {
        after
            .iter()
            .map(|(outcome, &count)| {
                let was = before.get(outcome).copied().unwrap_or(0.0);
                (outcome.clone(), growth(was, count) / seconds)
            })
            .collect()
    };
    let reports_per_second = outcomes_per_second(&before.reports, &after.reports);
    let history_per_second = outcomes_per_second(&before.history, &after.history);
    // Instances the shard took since the reading before count from zero.
    let instance_reports_per_second = after
        .instances
        .iter()
        .map(|(id, now)| {
            let was = before.instances.get(id).map_or(0.0, |b| b.reports);
            (id.clone(), growth(was, now.reports) / seconds)
        })
        .collect();
    let per_second = |was: Option<f64>, now: Option<f64>| {
        now.map(|now| growth(if restarted { 0.0 } else { was.unwrap_or(0.0) }, now) / seconds)
    };
    Rates {
        instance_reports_per_second,
        reconcile_errors_per_second: per_second(before.reconcile_errors, after.reconcile_errors),
        mail_failures_per_second: per_second(before.mail_failures, after.mail_failures),
        database_errors_per_second: per_second(before.database_errors, after.database_errors),
        requests_per_second: requests / seconds,
        error_ratio: (requests > 0.0).then(|| (errors / requests).min(1.0)),
        p50: quantile(0.5, &bucket_growth),
        p99: quantile(0.99, &bucket_growth),
        reports_per_second,
        history_per_second,
    }
}

/// The `q` quantile of a histogram given as cumulative counts by upper bound (ascending), with
/// Prometheus' `histogram_quantile` interpolation: linear within the bucket the rank falls in, the
/// first bucket starting at 0; a rank in the `+Inf` bucket answers the largest finite bound.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let within = count - lower.1;
            let share = if within > 0.0 {
                (rank - lower.1) / within
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * share);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Reading {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        read(&scrape)
    }

    /// The shape `telemetry.rs` exports (OpenMetrics text from prometheus-client).
    fn exposition(ok: u64, fail: u64, fast: u64, accepted: u64, lag: f64) -> String {
        format!(
            "# HELP scopehub_http_request_duration_seconds Time from request to response head.
# TYPE scopehub_http_request_duration_seconds histogram
scopehub_http_request_duration_seconds_sum{{method=\"GET\",route=\"/api\",status=\"200\"}} 1.0
scopehub_http_request_duration_seconds_count{{method=\"GET\",route=\"/api\",status=\"200\"}} {ok}
scopehub_http_request_duration_seconds_bucket{{le=\"0.001\",method=\"GET\",route=\"/api\",status=\"200\"}} {fast}
scopehub_http_request_duration_seconds_bucket{{le=\"0.1\",method=\"GET\",route=\"/api\",status=\"200\"}} {ok}
scopehub_http_request_duration_seconds_bucket{{le=\"+Inf\",method=\"GET\",route=\"/api\",status=\"200\"}} {ok}
scopehub_http_request_duration_seconds_sum{{method=\"POST\",route=\"/api/report\",status=\"503\"}} 1.0
scopehub_http_request_duration_seconds_count{{method=\"POST\",route=\"/api/report\",status=\"503\"}} {fail}
scopehub_http_request_duration_seconds_bucket{{le=\"0.001\",method=\"POST\",route=\"/api/report\",status=\"503\"}} 0
scopehub_http_request_duration_seconds_bucket{{le=\"0.1\",method=\"POST\",route=\"/api/report\",status=\"503\"}} 0
scopehub_http_request_duration_seconds_bucket{{le=\"+Inf\",method=\"POST\",route=\"/api/report\",status=\"503\"}} {fail}
# TYPE scopehub_collector_reports counter
scopehub_collector_reports_total{{outcome=\"accepted\"}} {accepted}
scopehub_collector_reports_total{{outcome=\"too_large\"}} 2
# TYPE scopehub_reconcile_lag_seconds gauge
scopehub_reconcile_lag_seconds {lag}
# TYPE scopehub_collector_websockets gauge
scopehub_collector_websockets 4
# EOF
"
        )
    }

    #[test]
    fn a_reading_sums_routes_and_keeps_what_the_page_shows() {
        let r = parse(&exposition(100, 5, 40, 7, 1.5));
        assert_eq!((r.requests, r.server_errors), (105.0, 5.0));
        assert_eq!(
            r.latency_buckets,
            vec![(0.001, 40.0), (0.1, 100.0), (f64::INFINITY, 105.0)]
        );
        assert_eq!(r.reports["accepted"], 7.0);
        assert_eq!(r.reports["too_large"], 2.0);
        assert_eq!(r.reconcile_lag_seconds, Some(1.5));
        assert_eq!(r.websockets, Some(4.0));
    }

    #[test]
    fn rates_between_two_readings() {
        let before = parse(&exposition(100, 5, 40, 7, 0.0));
        let after = parse(&exposition(200, 15, 60, 37, 0.0));
        let r = rates(&before, &after, 10.0);
        assert_eq!(r.requests_per_second, 11.0);
        assert_eq!(r.error_ratio, Some(10.0 / 110.0));
        assert_eq!(r.reports_per_second["accepted"], 3.0);
        assert_eq!(r.reports_per_second["too_large"], 0.0);
        // 110 new requests: 20 under 1 ms, 100 under 100 ms, 10 (the 503s) above.
        let p50 = r.p50.unwrap();
        assert!(p50 > 0.001 && p50 < 0.1, "{p50}");
        assert_eq!(r.p99, Some(0.1));
        // Nothing happened: no ratio, no quantiles.
        let idle = rates(&after, &after, 10.0);
        assert_eq!((idle.error_ratio, idle.p50), (None, None));
        assert_eq!(idle.requests_per_second, 0.0);
    }

    #[test]
    fn a_restarted_target_counts_from_zero() {
        let before = parse(&exposition(1000, 50, 400, 70, 0.0));
        let after = parse(&exposition(20, 2, 10, 3, 0.0));
        let r = rates(&before, &after, 2.0);
        assert_eq!(r.requests_per_second, 11.0);
        assert_eq!(r.error_ratio, Some(2.0 / 22.0));
        assert_eq!(r.reports_per_second["accepted"], 1.5);
    }

    #[test]
    fn quantiles_interpolate_as_prometheus_does() {
        let b = [(0.1, 50.0), (0.2, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(0.5, &b), Some(0.1));
        assert_eq!(quantile(0.25, &b), Some(0.05));
        assert!((quantile(0.75, &b).unwrap() - 0.15).abs() < 1e-12);
        // A rank in +Inf: the largest finite bound.
        let slow = [(0.1, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(quantile(0.99, &slow), Some(0.1));
        assert_eq!(quantile(0.5, &[]), None);
        assert_eq!(quantile(0.5, &[(f64::INFINITY, 0.0)]), None);
    }

    /// A collector shard whose figures the test sets.
    struct FakeShard(std::sync::Mutex<Vec<crate::telemetry::InstanceFigures>>);

    impl crate::telemetry::LiveInstances for FakeShard {
        fn shard_name(&self) -> &str {
            "shard-b"
        }
        fn instance_figures(&self) -> Vec<crate::telemetry::InstanceFigures> {
            self.0.lock().unwrap().clone()
        }
    }

    fn figures(instance: &str, probes: u64, reports: u64) -> crate::telemetry::InstanceFigures {
        crate::telemetry::InstanceFigures {
            instance: instance.into(),
            probes,
            reports_accepted: reports,
            window_bytes: 1000 * reports,
        }
    }

    /// What `telemetry.rs` exports is what this module reads: the two agree on names and labels.
    #[test]
    fn the_roles_own_metrics_read_back() {
        let metrics = crate::telemetry::Metrics::new();
        let shard = std::sync::Arc::new(FakeShard(std::sync::Mutex::new(vec![
            figures("inst-a", 2, 10),
            figures("inst-b", 1, 4),
        ])));
        metrics.observe_instances(shard.clone());
        metrics.record_mail("sent");
        metrics.record_mail("failed");
        metrics.record_mail("failed");
        metrics.set_mail_queue(5, 2);
        metrics.record_database_error();
        metrics.set_reconcile_lag(3.5);
        metrics.record_history("stored", 30);
        metrics.set_history_buffer(4096);
        metrics.set_history_oldest_waiting(42);
        let _socket = metrics.websocket_open();
        let before = parse(&metrics.encode());
        assert_eq!(before.history["stored"], 30.0);
        assert_eq!(before.history_buffer_bytes, Some(4096.0));
        assert_eq!(before.history_oldest_waiting_seconds, Some(42.0));
        assert_eq!(before.shard.as_deref(), Some("shard-b"));
        assert_eq!(before.probes, Some(3.0));
        assert_eq!(
            before.instances["inst-a"],
            InstanceReading {
                probes: 2.0,
                reports: 10.0,
                window_bytes: 10_000.0
            }
        );
        assert_eq!(
            (before.mail_queue, before.mail_failing, before.mail_failures),
            (Some(5.0), Some(2.0), Some(2.0))
        );
        assert_eq!(before.database_errors, Some(1.0));
        assert_eq!(before.reconcile_lag_seconds, Some(3.5));
        assert_eq!(before.websockets, Some(1.0));

        // Ten seconds later: inst-a took 20 reports, inst-b was dropped, inst-c is new.
        *shard.0.lock().unwrap() = vec![figures("inst-a", 2, 30), figures("inst-c", 1, 5)];
        metrics.record_mail("failed");
        metrics.record_database_error();
        metrics.record_database_error();
        metrics.record_history("stored", 20);
        metrics.record_history("dropped_buffer_full", 5);
        let after = parse(&metrics.encode());
        let r = rates(&before, &after, 10.0);
        assert_eq!(r.instance_reports_per_second["inst-a"], 2.0);
        assert_eq!(r.instance_reports_per_second["inst-c"], 0.5);
        assert!(!r.instance_reports_per_second.contains_key("inst-b"));
        assert_eq!(r.mail_failures_per_second, Some(0.1));
        assert_eq!(r.database_errors_per_second, Some(0.2));
        assert_eq!(r.history_per_second["stored"], 2.0);
        assert_eq!(r.history_per_second["dropped_buffer_full"], 0.5);
    }

    #[test]
    fn a_shard_with_too_many_instances_is_read_in_part() {
        let mut text = String::from("# TYPE scopehub_collector_instance_probes gauge\n");
        for i in 0..MAX_INSTANCES + 500 {
            text.push_str(&format!(
                "scopehub_collector_instance_probes{{instance_id=\"i{i:05}\"}} 1\n"
            ));
        }
        assert_eq!(parse(&text).instances.len(), MAX_INSTANCES);
    }

    #[test]
    fn garbage_reads_as_nothing() {
        let r = parse("hello\x00world\n{{{\n# TYPE x histogram\nx_bucket{le=\"nan\"} NaN\n");
        assert_eq!(r, Reading::default());
        // A histogram sent with a thousand bounds keeps MAX_BUCKETS of them.
        let mut text = String::from("# TYPE scopehub_http_request_duration_seconds histogram\n");
        for i in 0..1000 {
            text.push_str(&format!(
                "scopehub_http_request_duration_seconds_bucket{{le=\"{i}\",status=\"200\"}} {i}\n"
            ));
        }
        text.push_str(
            "scopehub_http_request_duration_seconds_bucket{le=\"+Inf\",status=\"200\"} 1000\n",
        );
        let kept = parse(&text).latency_buckets;
        assert_eq!(kept.len(), MAX_BUCKETS);
        assert_eq!(kept[MAX_BUCKETS - 1], (f64::INFINITY, 1000.0));
    }
}
