//! The collector: Weave Scope's app for many tenants (design.md §5, shared scope-protocol.md).
//!
//! Will own: report ingest (`POST /api/report`), the per-instance 15 s window in memory, rendering of
//! Scope's topology views, websockets, the probe registry. Must not: see tokens; it trusts the tenant
//! only as the edge resolves it (`frontend::auth::instance_for_probe`).
//!
//! Built so far: `GET /api`, the details a Scope probe asks for first; the report model and its
//! decoder (`report.rs`, `decode.rs`).

pub mod decode;
pub mod report;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::{Json, Result};
use crate::frontend::auth::instance_for_probe;

/// Scope's probe-facing paths, mounted under `/api`.
pub fn probe_router() -> Router<AppState> {
    Router::new().route("/", get(details))
}

/// `GET /api`: Scope's app details. The probe uses `id` to recognise one app behind several
/// addresses, so it is the instance's id: each instance is one Scope app.
async fn details(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>> {
    let instance = instance_for_probe(&state, &headers).await?;
    let hostname = state
        .users
        .public_url
        .host_str()
        .unwrap_or("scopehub")
        .to_owned();
    Ok(Json(json!({
        "id": instance.id,
        "version": env!("CARGO_PKG_VERSION"),
        "hostname": hostname,
        "plugins": null,
        "capabilities": {"historic_reports": false},
        "newVersion": null,
    })))
}
