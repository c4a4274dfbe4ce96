//! Logs (tracing) and metrics (Prometheus text format) for every role.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
    reconcile_passes: Counter,
    reconcile_errors: Counter,
    reconcile_duration: Histogram,
    reconcile_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    shard_instances: Family<ShardLabels, Gauge>,
    collector_renders: Counter,
    collector_render_hits: Counter,
    reports: Family<ReportLabels, Counter>,
    window_bytes: Gauge,
    websockets: Gauge,
    password_hashes: Counter,
    ready: Gauge,
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
        Metrics {
            inner: Arc::new(MetricsInner {
                registry,
                request_duration,
                reconcile_passes,
                reconcile_errors,
                reconcile_duration,
                reconcile_lag,
                shard_instances,
                collector_renders,
                collector_render_hits,
                reports,
                window_bytes,
                websockets,
                password_hashes,
                ready,
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

    /// A probe report accepted (`outcome = "accepted"`) or refused, and the shard's window bytes.
    pub fn record_report(&self, outcome: &'static str) {
        self.inner
            .reports
            .get_or_create(&ReportLabels { outcome })
            .inc();
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
        .observe(start.elapsed().as_secs_f64());
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
