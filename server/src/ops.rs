//! Operational endpoints every role serves: `/healthz`, `/readyz`, `/metrics`.
//!
//! Readiness depends on the role: one with a database is ready once migrations are applied and the
//! database answers; one without (the collector, the UI) is ready as soon as it serves.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use shared::{ApiError, ErrorCode};

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
}

#[derive(Clone)]
pub struct OpsState {
    pub metrics: Metrics,
    pub readiness: Readiness,
}

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
}

impl StartupStatus {
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

/// Readiness: migrations have been applied and the database answers now.
pub async fn readyz(State(state): State<OpsState>) -> Response {
    let (store, startup) = match &state.readiness {
        Readiness::Serving => return axum::Json(json!({"status": "ready"})).into_response(),
        Readiness::Database { store, startup } => (store, startup),
    };
    let not_ready = |message: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(ApiError::new(ErrorCode::Unavailable, message)),
        )
            .into_response()
    };
    if !store.is_prepared() {
        let why = startup
            .last_error()
            .unwrap_or_else(|| "still connecting".to_owned());
        return not_ready(format!("database not ready: {why}"));
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
