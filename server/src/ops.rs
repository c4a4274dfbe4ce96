//! Operational endpoints every role serves: `/healthz`, `/readyz`, `/metrics`.
//!
//! Readiness depends on the role: one with a database is ready once migrations are applied and the
//! database answers; one without (the collector, the UI) is ready as soon as it serves. Every role
//! stops being ready the moment it starts draining for a shutdown ([`Drain`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use shared::{ApiError, ErrorCode};

use tokio::sync::watch;

use crate::store::Store;
use crate::telemetry::{self, Metrics};

const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` checks.
#[derive(Clone)]
pub enum Readiness {
    /// Migrations applied (by the start-up task, whose last error is kept) and the database answers.
    Database {
        store: Store,
        startup: StartupStatus,
    },
    /// Nothing to wait for: ready while serving.
    Serving,
    /// Ready once its start-up task is done (a collector shard loading the instances placed on
    /// it), with the task's last error until then.
    Started(StartupStatus),
}

#[derive(Clone)]
pub struct OpsState {
    pub metrics: Metrics,
    pub readiness: Readiness,
    pub drain: Drain,
}

/// A process on its way out, in two steps (for rolling updates): first it *drains* — `/readyz`
/// answers 503 so load balancers stop sending new requests, while it keeps serving — then its
/// long-lived *streams close* (websockets end with 1001 "going away", so clients reconnect to
/// another replica) as it finishes in-flight requests and exits.
#[derive(Clone)]
pub struct Drain {
    draining: Arc<AtomicBool>,
    closing: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            draining: Arc::new(AtomicBool::new(false)),
            closing: watch::Sender::new(false),
        }
    }
}

impl Drain {
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Tells every open stream to close now.
    pub fn close_streams(&self) {
        self.start_draining();
        self.closing.send_replace(true);
    }

    /// Resolves once streams must close (at once if they already must).
    pub fn streams_closing(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closing = self.closing.subscribe();
        async move {
            let _ = closing.wait_for(|closing| *closing).await;
        }
    }
}

/// The websocket close code for "the server is going away": clients reconnect.
pub const GOING_AWAY: u16 = 1001;

impl axum::extract::FromRef<OpsState> for Metrics {
    fn from_ref(state: &OpsState) -> Metrics {
        state.metrics.clone()
    }
}

pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(telemetry::metrics_handler))
        .with_state(state)
}

/// Why the process is not ready yet, as last seen by the start-up task; `/readyz` reports it.
#[derive(Clone, Default)]
pub struct StartupStatus {
    last_error: Arc<Mutex<Option<String>>>,
    done: Arc<AtomicBool>,
}

impl StartupStatus {
    pub fn set_done(&self) {
        self.set_error(None);
        self.done.store(true, Ordering::SeqCst);
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    pub fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|slot| slot.clone())
    }
}

/// Liveness: the process serves HTTP. Never checks dependencies (a database outage must not get
/// every replica restarted).
pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Readiness: not draining, and (for a role with a database) migrations have been applied and the
/// database answers now. The answer is also kept as the `scopehub_ready` gauge, for Prometheus.
pub async fn readyz(State(state): State<OpsState>) -> Response {
    let response = readiness(&state).await;
    state.metrics.set_ready(response.status().is_success());
    response
}

async fn readiness(state: &OpsState) -> Response {
    let not_ready = |message: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(ApiError::new(ErrorCode::Unavailable, message)),
        )
            .into_response()
    };
    if state.drain.is_draining() {
        return not_ready("shutting down".to_owned());
    }
    let (store, startup) = match &state.readiness {
        Readiness::Serving => return axum::Json(json!({"status": "ready"})).into_response(),
        Readiness::Started(startup) if startup.is_done() => {
            return axum::Json(json!({"status": "ready"})).into_response();
        }
        Readiness::Started(startup) => {
            let why = startup
                .last_error()
                .unwrap_or_else(|| "still starting".to_owned());
            return not_ready(format!("starting: {why}"));
        }
        Readiness::Database { store, startup } => (store, startup),
    };
    if !store.is_prepared() {
        let why = startup
            .last_error()
            .unwrap_or_else(|| "still connecting".to_owned());
        return not_ready(format!("database not ready: {why}"));
    }
    if store.is_unreachable() {
        return not_ready("database unreachable (its health check failed)".to_owned());
    }
    match tokio::time::timeout(PING_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => {
            axum::Json(json!({"status": "ready", "database": store.backend()})).into_response()
        }
        Ok(Err(e)) => not_ready(format!("database unreachable: {e}")),
        Err(_) => not_ready(format!(
            "database did not answer within {} s",
            PING_TIMEOUT.as_secs()
        )),
    }
}
