//! Logs (tracing) and metrics (Prometheus text format) for every role.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogArgs, LogFormat};

/// Installs the global tracing subscriber. Logs go to stderr so stdout stays for what the user asked
/// for (the URL `serve` prints).
pub fn init_logging(args: &LogArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log)
        .map_err(|e| anyhow::anyhow!("invalid --log filter `{}`: {e}", args.log))?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match args.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    // Already installed (e.g. a test that runs several servers in one process): keep the first.
    let _ = result;
    Ok(())
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

type DurationFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// The process's metrics registry. Cheap to clone; one per server, never global.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<MetricsInner>,
}

struct MetricsInner {
    registry: Registry,
    request_duration: DurationFamily,
    edge_own: Histogram,
    reconcile_passes: Counter,
    reconcile_errors: Counter,
    reconcile_duration: Histogram,
    reconcile_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    shard_instances: Family<ShardLabels, Gauge>,
    collector_renders: Counter,
    collector_render_hits: Counter,
    reports: Family<ReportLabels, Counter>,
    report_cpu: Counter<f64, AtomicU64>,
    window_bytes: Gauge,
    websockets: Gauge,
    password_hashes: Counter,
    ready: Gauge,
    mail_deliveries: Family<MailLabels, Counter>,
    mail_queue: Gauge,
    mail_failing: Gauge,
    database_errors: Counter,
    history_reports: Family<ReportLabels, Counter>,
    history_bytes: Counter,
    history_buffer: Gauge,
    history_oldest_waiting: Gauge,
    /// What the collector's shard holds, read at each scrape ([`Metrics::observe_instances`]).
    instances: Arc<OnceLock<Arc<dyn LiveInstances>>>,
}

/// One instance on a collector shard, as a scrape reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceFigures {
    pub instance: String,
    /// Probes that reported within the last minute.
    pub probes: u64,
    /// Reports accepted since the shard took the instance.
    pub reports_accepted: u64,
    /// Estimated memory of its live window.
    pub window_bytes: u64,
}

/// A collector shard's instances, read at scrape time (so a probe that went silent stops being
/// counted without a report having to arrive).
pub trait LiveInstances: Send + Sync + 'static {
    /// The shard's name, as provisioning places instances on it.
    fn shard_name(&self) -> &str;
    fn instance_figures(&self) -> Vec<InstanceFigures>;
}

/// Exports [`LiveInstances`] at each scrape: per instance (labelled by its id) probes, reports
/// accepted and window bytes, and the shard's total of probes connected.
struct InstancesCollector(Arc<OnceLock<Arc<dyn LiveInstances>>>);

impl std::fmt::Debug for InstancesCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstancesCollector")
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    instance_id: String,
}

impl Collector for InstancesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let Some(source) = self.0.get() else {
            return Ok(());
        };
        let info = ConstGauge::new(1i64);
        let mut family = encoder.encode_descriptor(
            "collector_shard",
            "The shard this collector holds (its name in the label)",
            None,
            info.metric_type(),
        )?;
        info.encode(family.encode_family(&ShardLabels {
            shard: source.shard_name().to_owned(),
        })?)?;
        let figures = source.instance_figures();
        let total: u64 = figures.iter().map(|f| f.probes).sum();
        let gauge = ConstGauge::new(i64::try_from(total).unwrap_or(i64::MAX));
        gauge.encode(encoder.encode_descriptor(
            "collector_probes",
            "Probes connected to this collector (reported within the last minute)",
            None,
            gauge.metric_type(),
        )?)?;
        type Pick = fn(&InstanceFigures) -> u64;
        let families: [(&str, &str, Pick, bool); 3] = [
            (
                "collector_instance_probes",
                "Probes connected, by instance",
                |f| f.probes,
                false,
            ),
            (
                "collector_instance_reports",
                "Reports accepted, by instance, since this shard took it",
                |f| f.reports_accepted,
                true,
            ),
            (
                "collector_instance_window_bytes",
                "Estimated memory of the live window, by instance",
                |f| f.window_bytes,
                false,
            ),
        ];
        for (name, help, pick, counter) in families {
            let kind = if counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for f in &figures {
                let labels = InstanceLabels {
                    instance_id: f.instance.clone(),
                };
                let value = pick(f);
                let metric = family.encode_family(&labels)?;
                if counter {
                    ConstCounter::new(value).encode(metric)?;
                } else {
                    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(metric)?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MailLabels {
    /// `sent`, or `failed` (an attempt that will be retried, or the last one).
    outcome: &'static str,
}

/// Counts one open websocket in `scopehub_collector_websockets` while it lives.
pub struct OpenWebsocket(Gauge);

impl Drop for OpenWebsocket {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReportLabels {
    /// `accepted`, or why it was refused (`too_large`, `window_full`, …).
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabels {
    shard: String,
}

fn request_histogram() -> Histogram {
    // 1 ms … ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("scopehub");
        let request_duration: DurationFamily = Family::new_with_constructor(request_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response head, by method, route pattern and status",
            request_duration.clone(),
        );
        // 5 µs … ~41 ms: the edge's own part of a request is tens of microseconds, far under the
        // 1 ms the request histogram starts at.
        let edge_own = Histogram::new(exponential_buckets(0.000_005, 2.0, 14));
        registry.register(
            "edge_own_seconds",
            "Time the edge held a request it proxied to a role, from its arrival to its answer's \
             head, less the wait for the role's answer (identity lookups, signing, forwarding)",
            edge_own.clone(),
        );
        let reconcile_passes = Counter::default();
        let reconcile_errors = Counter::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let reconcile_lag = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "reconcile_passes",
            "Reconciler passes run",
            reconcile_passes.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciler steps that failed and will be retried",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconciler pass took",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_lag_seconds",
            "Age of the oldest instance change the reconciler has not converged yet",
            reconcile_lag.clone(),
        );
        let shard_instances = Family::<ShardLabels, Gauge>::default();
        registry.register(
            "shard_instances",
            "Instances each collector shard holds",
            shard_instances.clone(),
        );
        let collector_renders = Counter::default();
        let collector_render_hits = Counter::default();
        registry.register(
            "collector_renders",
            "Views rendered from a merged window",
            collector_renders.clone(),
        );
        registry.register(
            "collector_render_cache_hits",
            "View requests and websocket ticks answered from an earlier render of the same window",
            collector_render_hits.clone(),
        );
        let reports = Family::<ReportLabels, Counter>::default();
        registry.register(
            "collector_reports",
            "Probe reports accepted, and refused by reason",
            reports.clone(),
        );
        let websockets = Gauge::default();
        registry.register(
            "collector_websockets",
            "Map websockets open on this collector",
            websockets.clone(),
        );
        let window_bytes = Gauge::default();
        registry.register(
            "collector_window_bytes",
            "Estimated memory the instances' live windows take on this collector",
            window_bytes.clone(),
        );
        let password_hashes = Counter::default();
        registry.register(
            "password_hashes",
            "Passwords hashed or checked (argon2id)",
            password_hashes.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "What /readyz answered last: 1 ready, 0 not (probed by the kubelet and monitoring)",
            ready.clone(),
        );
        let mail_deliveries = Family::<MailLabels, Counter>::default();
        registry.register(
            "mail_deliveries",
            "Attempts to hand a message from the outbox to the SMTP server, by outcome",
            mail_deliveries.clone(),
        );
        let mail_queue = Gauge::default();
        registry.register(
            "mail_queue",
            "Messages in the outbox waiting for delivery",
            mail_queue.clone(),
        );
        let mail_failing = Gauge::default();
        registry.register(
            "mail_failing",
            "Messages waiting for delivery whose last attempt failed",
            mail_failing.clone(),
        );
        let database_errors = Counter::default();
        registry.register(
            "database_errors",
            "Requests and background steps that failed on the database",
            database_errors.clone(),
        );
        let history_reports = Family::<ReportLabels, Counter>::default();
        registry.register(
            "history_reports",
            "History (time travel): reports stored, not kept (dropped_buffer_full), batches that \
             failed to write (write_failed) or were damaged on read, batches deleted",
            history_reports.clone(),
        );
        let history_bytes = Counter::default();
        registry.register(
            "history_written_bytes",
            "Bytes of history batches written to the store",
            history_bytes.clone(),
        );
        let history_buffer = Gauge::default();
        registry.register(
            "history_buffer_bytes",
            "Report bytes waiting to be written to the history store",
            history_buffer.clone(),
        );
        let history_oldest_waiting = Gauge::default();
        registry.register(
            "history_oldest_waiting_seconds",
            "Age of the oldest report waiting to be written to the history store, as of the last \
             flush (0 when none waits): it grows for as long as the store takes none of it",
            history_oldest_waiting.clone(),
        );
        let report_cpu = Counter::<f64, AtomicU64>::default();
        registry.register(
            "collector_report_cpu_seconds",
            "CPU time spent decoding reports and folding them into their windows (the decoding \
             threads' own clocks; the rest of a report's cost is HTTP and the window's upkeep)",
            report_cpu.clone(),
        );
        let instances = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(InstancesCollector(instances.clone())));
        Metrics {
            inner: Arc::new(MetricsInner {
                registry,
                request_duration,
                edge_own,
                reconcile_passes,
                reconcile_errors,
                reconcile_duration,
                reconcile_lag,
                shard_instances,
                collector_renders,
                collector_render_hits,
                reports,
                report_cpu,
                window_bytes,
                websockets,
                password_hashes,
                ready,
                mail_deliveries,
                mail_queue,
                mail_failing,
                database_errors,
                history_reports,
                history_bytes,
                history_buffer,
                history_oldest_waiting,
                instances,
            }),
        }
    }

    /// One view rendered (`hit = false`) or served from the render cache (`hit = true`).
    pub fn record_render(&self, hit: bool) {
        if hit {
            self.inner.collector_render_hits.inc();
        } else {
            self.inner.collector_renders.inc();
        }
    }

    /// History: `count` reports stored, not kept, or batches failed, damaged or deleted.
    pub fn record_history(&self, outcome: &'static str, count: u64) {
        self.inner
            .history_reports
            .get_or_create(&ReportLabels { outcome })
            .inc_by(count);
    }

    pub fn record_history_bytes(&self, bytes: u64) {
        self.inner.history_bytes.inc_by(bytes);
    }

    pub fn set_history_buffer(&self, bytes: usize) {
        self.inner
            .history_buffer
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The age of the oldest report waiting for the history store.
    pub fn set_history_oldest_waiting(&self, seconds: i64) {
        self.inner.history_oldest_waiting.set(seconds.max(0));
    }

    /// A probe report accepted (`outcome = "accepted"`) or refused, and the shard's window bytes.
    pub fn record_report(&self, outcome: &'static str) {
        self.inner
            .reports
            .get_or_create(&ReportLabels { outcome })
            .inc();
    }

    /// CPU time a thread spent decoding and folding one report (accepted or refused).
    pub fn record_report_cpu(&self, seconds: f64) {
        self.inner.report_cpu.inc_by(seconds);
    }

    /// The counter of argon2 hashes, for the users role's hasher.
    pub fn password_hashes(&self) -> Counter {
        self.inner.password_hashes.clone()
    }

    /// A map websocket opened: counted until the returned guard is dropped.
    pub fn websocket_open(&self) -> OpenWebsocket {
        self.inner.websockets.inc();
        OpenWebsocket(self.inner.websockets.clone())
    }

    pub fn set_window_bytes(&self, bytes: usize) {
        self.inner
            .window_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn record_reconcile(&self, seconds: f64, errors: u64) {
        self.inner.reconcile_passes.inc();
        self.inner.reconcile_errors.inc_by(errors);
        self.inner.reconcile_duration.observe(seconds);
    }

    pub fn set_shard_instances(&self, shard: &str, count: usize) {
        let labels = ShardLabels {
            shard: shard.to_owned(),
        };
        self.inner
            .shard_instances
            .get_or_create(&labels)
            .set(count as i64);
    }

    /// Exports `shard`'s instances at each scrape. One shard per process: a second call is
    /// ignored.
    pub fn observe_instances(&self, shard: Arc<dyn LiveInstances>) {
        let _ = self.inner.instances.set(shard);
    }

    /// One delivery attempt: `sent` or `failed`.
    pub fn record_mail(&self, outcome: &'static str) {
        self.inner
            .mail_deliveries
            .get_or_create(&MailLabels { outcome })
            .inc();
    }

    /// The outbox as the mailer last counted it.
    pub fn set_mail_queue(&self, waiting: u64, failing: u64) {
        self.inner
            .mail_queue
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.inner
            .mail_failing
            .set(i64::try_from(failing).unwrap_or(i64::MAX));
    }

    /// A request or background step failed on the database.
    pub fn record_database_error(&self) {
        self.inner.database_errors.inc();
    }

    /// What `/readyz` just answered.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.set(i64::from(ready));
    }

    pub fn set_reconcile_lag(&self, seconds: f64) {
        self.inner.reconcile_lag.set(seconds);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}

/// Marks a response that failed on the database (set where errors become responses), counted in
/// `scopehub_database_errors_total` by [`track_requests`].
#[derive(Clone, Copy, Debug)]
pub struct DatabaseFailure;

/// The route pattern that served a request, recorded by [`record_route`] for [`track_requests`].
#[derive(Clone)]
struct RoutePattern(String);

/// Route layer: copies the matched route pattern (`/api/version`, never the concrete path, so label
/// cardinality stays bounded) into the response for the outer [`track_requests`] layer.
pub async fn record_route(req: Request, next: Next) -> Response {
    let pattern = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let mut response = next.run(req).await;
    if let Some(pattern) = pattern {
        response.extensions_mut().insert(RoutePattern(pattern));
    }
    response
}

/// How long a proxied request waited for the role's answer (set by the edge's proxy on the
/// response): [`track_requests`] counts the rest of the request's time as the edge's own.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamWait(pub Duration);

/// Labels a response that no route pattern describes (the edge's proxied requests: "proxy users").
pub fn label_route(response: &mut Response, label: String) {
    response.extensions_mut().insert(RoutePattern(label));
}

/// Outer layer: observes every request's duration, labelled by route pattern and status. Requests
/// no route matched are labelled by where they fell through to.
pub async fn track_requests(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let fallback = if req.uri().path() == "/api" || req.uri().path().starts_with("/api/") {
        "/api/{unmatched}"
    } else {
        "/{spa}"
    };
    let response = next.run(req).await;
    let elapsed = start.elapsed();
    if response.extensions().get::<DatabaseFailure>().is_some() {
        metrics.record_database_error();
    }
    let route = response
        .extensions()
        .get::<RoutePattern>()
        .map_or_else(|| fallback.to_owned(), |p| p.0.clone());
    let labels = RequestLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    metrics
        .inner
        .request_duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    if let Some(UpstreamWait(wait)) = response.extensions().get::<UpstreamWait>() {
        let own = elapsed.saturating_sub(*wait);
        metrics.inner.edge_own.observe(own.as_secs_f64());
    }
    response
}

/// `GET /metrics`.
pub async fn metrics_handler(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OneInstance;

    impl LiveInstances for OneInstance {
        fn shard_name(&self) -> &str {
            "s"
        }
        fn instance_figures(&self) -> Vec<InstanceFigures> {
            vec![InstanceFigures {
                instance: "i".into(),
                probes: 1,
                reports_accepted: 2,
                window_bytes: 3,
            }]
        }
    }

    /// Every `scopehub_*` series the Prometheus rules and the Grafana dashboard in `k8s/monitoring/`
    /// query is one the roles export: a renamed metric fails here, not silently on a dashboard.
    #[test]
    fn the_prometheus_rules_and_dashboard_query_only_exported_metrics() {
        let metrics = Metrics::new();
        metrics.observe_instances(Arc::new(OneInstance));
        // Families appear once they have a series.
        metrics
            .inner
            .request_duration
            .get_or_create(&RequestLabels {
                method: "GET".into(),
                route: "/api".into(),
                status: 200,
            })
            .observe(0.1);
        metrics.record_report("accepted");
        metrics.record_mail("sent");
        metrics.record_history("dropped_buffer_full", 1);
        metrics.set_shard_instances("s", 1);
        let text = metrics.encode();
        let mut exported = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ")
                && let Some(name) = rest.split_whitespace().next()
            {
                for suffix in ["", "_total", "_bucket", "_count", "_sum"] {
                    exported.insert(format!("{name}{suffix}"));
                }
            }
        }
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/monitoring");
        let series = regex::Regex::new(r"scopehub_[a-z_]+").unwrap();
        let mut queried = 0;
        for file in ["rules.yaml", "rules_test.yaml", "grafana-dashboard.json"] {
            let content = std::fs::read_to_string(folder.join(file)).unwrap();
            for name in series.find_iter(&content) {
                queried += 1;
                assert!(
                    exported.contains(name.as_str()),
                    "{file} queries {}, which no role exports",
                    name.as_str()
                );
            }
        }
        assert!(queried > 10, "{queried}");
    }
}
