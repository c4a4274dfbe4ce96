//! Operational endpoints every role serves: `/healthz`, `/readyz`, `/metrics`.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use shared::{ApiError, ErrorCode};

use crate::app::AppState;
use crate::telemetry;

const PING_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(telemetry::metrics_handler))
}

/// Liveness: the process serves HTTP. Never checks dependencies (a database outage must not get
/// every replica restarted).
pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Readiness: migrations have been applied and the database answers now.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let not_ready = |message: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(ApiError::new(ErrorCode::Unavailable, message)),
        )
            .into_response()
    };
    if !state.store.is_prepared() {
        let why = state
            .startup
            .last_error()
            .unwrap_or_else(|| "still connecting".to_owned());
        return not_ready(format!("database not ready: {why}"));
    }
    match tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => axum::Json(json!({"status": "ready", "database": state.store.backend()}))
            .into_response(),
        Ok(Err(e)) => not_ready(format!("database unreachable: {e}")),
        Err(_) => not_ready(format!(
            "database did not answer within {} s",
            PING_TIMEOUT.as_secs()
        )),
    }
}
