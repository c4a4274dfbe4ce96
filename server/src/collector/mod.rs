//! The collector: Weave Scope's app for many tenants (design.md §5, shared scope-protocol.md).
//!
//! Owns: report ingest (`POST /api/report`, `api/control/ws`), the per-instance 15 s window in
//! memory with its limits and probe registry (`slot.rs`), merging (`merge.rs`), rendering of
//! Scope's views (`render/`) and the browser API with its websocket (`api.rs`). Must not: see
//! tokens; it trusts the tenant only as the edge resolves it (`frontend::auth::instance_for_probe`
//! for probes, `frontend::auth::Approved` plus org membership for browsers).

mod api;
pub mod decode;
pub mod merge;
pub mod render;
pub mod report;
pub mod slot;

pub use api::app_router;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use serde_json::{Value, json};
use shared::ErrorCode;
use shared::instances::{InstanceState, ProbeInfo};

use self::decode::DecodeError;
use self::slot::Refusal;
use crate::app::AppState;
use crate::error::{Error, Json, Result};
use crate::frontend::auth::instance_for_probe;
use crate::provisioning::{state_of, transition};

/// Scope's probe-facing paths, mounted under `/api`.
pub fn probe_router() -> Router<AppState> {
    Router::new()
        .route("/", get(details))
        .route("/report", post(ingest))
        .route("/control/ws", get(control_ws))
}

/// How often the app pings a probe's control websocket (Scope: about 33 s, pong wait 60 s).
const CONTROL_PING: std::time::Duration = std::time::Duration::from_secs(30);

/// `GET /api/control/ws`: the probe's long-lived control channel. Scope's app is the JSON-RPC
/// client on it; issuing controls comes later, so for now the connection is accepted and kept
/// alive with pings (a probe whose handshake fails logs errors and retries forever).
async fn control_ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: axum::extract::WebSocketUpgrade,
) -> Result<axum::response::Response> {
    let instance = instance_for_probe(&state, &headers).await?;
    let Some(probe_id) =
        header_str(&headers, "x-scope-probe-id").map(|p| p.chars().take(64).collect::<String>())
    else {
        return Err(Error::bad_request(
            "The X-Scope-Probe-ID header is required.",
        ));
    };
    Ok(ws.on_upgrade(move |socket| async move {
        tracing::debug!(instance = %instance.id, probe = %probe_id, "probe control channel open");
        keep_alive(socket).await;
        tracing::debug!(instance = %instance.id, probe = %probe_id, "probe control channel closed");
    }))
}

async fn keep_alive(mut socket: axum::extract::ws::WebSocket) {
    use axum::extract::ws::Message;
    let mut ping = tokio::time::interval(CONTROL_PING);
    ping.tick().await;
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            message = socket.recv() => match message {
                // Pongs and (until controls exist) anything else the probe sends are read and dropped.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

fn refusal_error(why: Refusal, limit: i64) -> Error {
    match why {
        Refusal::TooLarge => Error::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("Reports to this instance may be at most {limit} bytes."),
        ),
        Refusal::TooManyReports => Error::TooManyRequests {
            retry_after_secs: 1,
            message: format!("This instance takes at most {limit} reports per second."),
        },
        Refusal::TooManyProbes => Error::TooManyRequests {
            retry_after_secs: 60,
            message: format!("This instance takes reports from at most {limit} probes."),
        },
        Refusal::Malformed => Error::bad_request("The report cannot be decoded."),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /api/report`: a probe's report, full or delta, msgpack or JSON, gzipped or not.
/// Refusals (401/403 credentials, 400 format, 413 size, 429 rate or probes) change nothing.
async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode> {
    let instance = instance_for_probe(&state, &headers).await?;
    let format = decode::format_of(header_str(&headers, header::CONTENT_TYPE.as_str()))
        .map_err(|e| Error::bad_request(e.to_string()))?;
    let gzip = decode::is_gzip(header_str(&headers, header::CONTENT_ENCODING.as_str()))
        .map_err(|e| Error::bad_request(e.to_string()))?;
    let probe_id: String = header_str(&headers, "x-scope-probe-id")
        .unwrap_or("unknown")
        .chars()
        .take(64)
        .collect();
    let version = header_str(&headers, "x-scope-probe-version")
        .map(|v| v.chars().take(64).collect::<String>());
    let now = state.clock.now();
    let collector = &state.collector;
    let unplaced = || {
        Error::client(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "The instance is being placed; retry shortly.",
        )
    };

    // Cheap refusals first, before reading the body.
    match collector.with_slot(&instance.id, |slot| slot.admit(&probe_id, now)) {
        None => return Err(unplaced()),
        Some(Err(why)) => {
            let limit = match why {
                Refusal::TooManyProbes => instance.max_probes,
                _ => instance.max_reports_per_second,
            };
            return Err(refusal_error(why, limit));
        }
        Some(Ok(())) => {}
    }
    let max = usize::try_from(instance.max_report_bytes).unwrap_or(usize::MAX);
    let refuse = |why: Refusal| {
        collector.with_slot(&instance.id, |slot| slot.refuse(why));
        refusal_error(why, instance.max_report_bytes)
    };
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| refuse(Refusal::TooLarge))?;
    let report = tokio::task::spawn_blocking(move || decode::decode(&bytes, format, gzip, max))
        .await
        .map_err(|e| Error::Internal(e.into()))?;
    let report = match report {
        Ok(report) => report,
        Err(DecodeError::TooLarge(_)) => return Err(refuse(Refusal::TooLarge)),
        Err(e) => {
            refuse(Refusal::Malformed);
            return Err(Error::bad_request(e.to_string()));
        }
    };
    let max_nodes = state.provisioning.max_nodes_per_topology;
    if let Some((name, _)) = report
        .topologies
        .iter()
        .find(|(_, t)| t.nodes.len() > max_nodes)
    {
        refuse(Refusal::TooLarge);
        return Err(Error::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("A topology may carry at most {max_nodes} nodes; {name} has more."),
        ));
    }
    let hostname = report.topology("Host").and_then(|t| {
        t.nodes
            .values()
            .find_map(|n| n.latest.get("host_name").map(|l| l.value.clone()))
    });
    let probe = ProbeInfo {
        id: probe_id,
        hostname,
        version,
        last_seen: now,
    };
    let first = collector
        .with_slot(&instance.id, |slot| {
            slot.accept(probe, report, now);
            !slot.activated
        })
        .ok_or_else(unplaced)?;
    if first {
        activate(&state, &instance.id).await?;
    }
    Ok(StatusCode::OK)
}

/// The first report moves a ready instance to active (once; a race with another change is fine).
async fn activate(state: &AppState, id: &str) -> Result<()> {
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    if let Some(mut row) = tx.instance(id).await?
        && state_of(&row) == InstanceState::Ready
    {
        let detail = Some("first probe report".to_owned());
        match transition(
            &mut tx,
            &mut row,
            InstanceState::Active,
            None,
            detail,
            now,
            |_| {},
        )
        .await
        {
            Ok(()) => tx.commit().await?,
            Err(Error::Client {
                status: StatusCode::CONFLICT,
                ..
            }) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    state.collector.with_slot(id, |slot| slot.activated = true);
    Ok(())
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
