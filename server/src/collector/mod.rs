//! The collector: Weave Scope's app for many tenants (design.md §5, shared scope-protocol.md).
//!
//! Owns: report ingest (`POST /api/report`, `api/control/ws`), the per-instance 15 s window in
//! memory with its limits and probe registry (`slot.rs`), merging (`merge.rs`), rendering of
//! Scope's views (`render/`), the browser API with its websocket (`api.rs`) and the shard that
//! holds it all, with its contract for provisioning (`shard.rs`).
//!
//! Must not: see tokens, read the database, or reach into other roles. It trusts the tenant only
//! as the edge granted it (`identity::ProbeInstance` for probes, `identity::InstanceReader` for
//! browsers), and asks the edge's [`ReadAccess`] whether a long-lived websocket may go on.

mod api;
mod background;
pub mod bounded;
pub mod controls;
pub mod decode;
pub mod fold;
pub mod footprint;
pub mod fuzzing;
pub mod history;
pub mod keyed;
pub mod merge;
pub mod msgpack;
pub mod name;
mod past;
pub mod pipes;
pub mod render;
pub mod report;
pub mod shard;
pub mod slot;
pub mod wire;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use shared::ErrorCode;
use shared::instances::ProbeInfo;

use self::bounded::BudgetLimits;
use self::decode::DecodeError;
use self::shard::InProcessShard;
use self::slot::Refusal;
use self::wire::WireReport;
use crate::clock::Clock;
use crate::error::{Error, Json, Result};
use crate::identity::{Identity, ProbeInstance};
use crate::telemetry::Metrics;

/// How this collector behaves in this deployment.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Nodes one topology of one report may carry, on every instance.
    pub max_nodes_per_topology: usize,
    /// The host name `GET /api` tells probes (the public URL's).
    pub hostname: String,
    /// Renders that cost less are made on read; costlier ones are served while made again in the
    /// background (`slot::RENDER_ON_READ_MS`).
    pub render_on_read_ms: i64,
    /// What the live windows may take in memory, per instance and for the shard.
    pub memory: slot::MemoryBudget,
    /// How long one render may run before it is stopped (`render::budget`).
    pub render_budget: std::time::Duration,
    /// How long a control waits for the probe's reply before answering 504.
    pub control_timeout: std::time::Duration,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            max_nodes_per_topology: 100_000,
            hostname: "scopehub".to_owned(),
            render_on_read_ms: slot::RENDER_ON_READ_MS,
            memory: slot::MemoryBudget::default(),
            render_budget: std::time::Duration::from_secs(10),
            control_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// The edge's checks, re-run by a websocket that stays open: may this caller still read this
/// instance (membership, role, suspension)? Implemented by the edge's `frontend::auth::ReaderCheck`.
pub trait ReadAccess: Send + Sync {
    fn still_readable<'a>(
        &'a self,
        identity: &'a Identity,
        instance: &'a str,
    ) -> BoxFuture<'a, Result<()>>;
    /// Moves whenever access may have been taken away somewhere: a websocket re-checks at once.
    fn changes(&self) -> tokio::sync::watch::Receiver<i64>;
}

/// What the collector's handlers use. Cheap to clone.
#[derive(Clone)]
pub struct CollectorState {
    /// The shard this process holds.
    pub shard: Arc<InProcessShard>,
    pub clock: Clock,
    pub metrics: Metrics,
    pub config: Arc<CollectorConfig>,
    pub access: Arc<dyn ReadAccess>,
    /// Closes websockets (1001) when the process shuts down.
    pub drain: crate::ops::Drain,
    /// Where every control is audited.
    pub control_log: Arc<dyn controls::ControlLog>,
}

/// The collector's public API, relative to `/api`: Scope's probe paths and the browser API.
pub fn api_router(state: CollectorState) -> Router {
    Router::new()
        .merge(probe_router())
        .merge(api::app_router())
        .with_state(state)
}

impl CollectorState {
    /// History's background work on this collector, from the start until `shutdown`: every
    /// flush interval, the views of the instances with reports waiting are counted for the
    /// timeline and what history holds is written out; every retention interval, retention and
    /// quotas are enforced and a local folder's leftover staging files swept. At shutdown, what
    /// is left is written out.
    pub async fn run_history(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let Some(history) = self.shard.history().cloned() else {
            return;
        };
        let interval = history.config().flush_interval;
        let mut flush = tokio::time::interval(interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retention = tokio::time::interval(history.config().retention_interval);
        retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut counting: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            tokio::select! {
                _ = flush.tick() => {
                    // Counted first, for at most half an interval: a count that takes longer
                    // (a huge instance, a busy machine) goes on, for the next write, and costs
                    // this batch its view counts, never history its writes.
                    let mut task = match counting.take() {
                        Some(task) if !task.is_finished() => task,
                        _ => tokio::spawn(self.clone().count_views(history.waiting_instances())),
                    };
                    if tokio::time::timeout(interval / 2, &mut task).await.is_err() {
                        counting = Some(task);
                    }
                    self.shard.flush_history().await;
                }
                _ = retention.tick() => {
                    self.shard.enforce_retention(&history).await;
                    history.sweep().await;
                }
                () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
            }
        }
        self.shard.flush_history().await;
    }

    /// Renders the topology list with its options' defaults of each instance whose list was not
    /// made within the count interval (by a reader — the web app refreshes its own every 10 s —
    /// or an earlier count) nor tried (a count over the render budget waits for the next
    /// interval), one instance after another, for the timeline's counts of what the map shows:
    /// [`InProcessShard::flush_history`] takes them from there.
    pub async fn count_views(self, instances: Vec<String>) {
        let Some(history) = self.shard.history() else {
            return;
        };
        let every = i64::try_from(history.config().count_interval.as_millis()).unwrap_or(i64::MAX);
        let list = render::topologies::Query::default_list_key();
        for instance in instances {
            let now = self.clock.now();
            let due = self.shard.with_slot(&instance, |slot| {
                slot.count_due(&list, now.saturating_sub(every), now)
            });
            if due != Some(true) {
                continue;
            }
            if let Err(e) = api::count_views(&self, &instance).await {
                tracing::debug!(%instance, error = %e, "views not counted for the timeline");
            }
        }
    }
}

/// Scope's probe-facing paths, mounted under `/api`.
fn probe_router() -> Router<CollectorState> {
    Router::new()
        .route("/", get(details))
        .route("/report", post(ingest))
        .route("/control/ws", get(control_ws))
        .route(
            "/pipe/{pipe}",
            axum::routing::delete(close_probe_pipe).post(close_probe_pipe),
        )
        .route("/pipe/{pipe}/probe", get(probe_pipe))
}

/// `DELETE /api/pipe/{id}` (or POST, as Scope's app takes both): the probe closes a pipe (the
/// command ended); the browser's end is told.
async fn close_probe_pipe(
    State(state): State<CollectorState>,
    ProbeInstance(instance): ProbeInstance,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> StatusCode {
    // Only the probe that announced it.
    let probe_id = header_str(&headers, "x-scope-probe-id").unwrap_or("");
    state.shard.with_slot(&instance, |slot| {
        if slot.pipes.get_mut(&id).is_some_and(|p| p.probe == probe_id) {
            slot.pipes.remove(&id);
        }
    });
    StatusCode::NO_CONTENT
}

/// `GET /api/pipe/{id}/probe` (websocket): the probe's end of a pipe its reply announced. 404 for a
/// pipe that is not (or no longer) open in the probe's instance, or was announced by another
/// probe: the probe then closes what it opened.
async fn probe_pipe(
    State(state): State<CollectorState>,
    ProbeInstance(instance): ProbeInstance,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
    ws: axum::extract::WebSocketUpgrade,
) -> Result<axum::response::Response> {
    let probe_id = header_str(&headers, "x-scope-probe-id").unwrap_or("");
    let io = state
        .shard
        .with_slot(&instance, |slot| {
            slot.pipes
                .get_mut(&id)
                .filter(|p| p.probe == probe_id)
                .and_then(|p| p.take(pipes::End::Probe))
        })
        .flatten()
        .ok_or_else(|| Error::not_found("No such pipe: it may have closed."))?;
    let ws = ws
        .max_message_size(MAX_INBOUND_MESSAGE)
        .max_frame_size(MAX_INBOUND_MESSAGE);
    Ok(ws.on_upgrade(move |socket| async move {
        pipes::copy(socket, io, state.drain.clone()).await;
        state
            .shard
            .with_slot(&instance, |slot| slot.pipes.remove(&id));
    }))
}

/// The largest websocket message the collector takes from a probe or a browser (control replies
/// and map requests are small; the edge applies the same limit to browsers before this).
pub(crate) const MAX_INBOUND_MESSAGE: usize = 1 << 20;

/// How often the app pings a probe's control websocket and both ends of a pipe (Scope: about 33 s,
/// pong wait 60 s).
pub(crate) const CONTROL_PING: std::time::Duration = std::time::Duration::from_secs(30);

/// `GET /api/control/ws`: the probe's long-lived control channel, on which Scope's app is the
/// JSON-RPC client: controls users ask for are sent to the probe on it (`controls.rs`). One per
/// probe (a reconnecting probe replaces its older one), as many probes as the instance may have.
async fn control_ws(
    State(state): State<CollectorState>,
    ProbeInstance(instance): ProbeInstance,
    headers: HeaderMap,
    ws: axum::extract::WebSocketUpgrade,
) -> Result<axum::response::Response> {
    static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Some(probe_id) =
        header_str(&headers, "x-scope-probe-id").map(|p| p.chars().take(64).collect::<String>())
    else {
        return Err(Error::bad_request(
            "The X-Scope-Probe-ID header is required.",
        ));
    };
    let connection = CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (link, queue) = controls::link(connection);
    let linked = state.shard.with_slot(&instance, |slot| {
        let max = slot.limits.max_probes;
        slot.link_probe(&probe_id, link).map_err(|why| (why, max))
    });
    match linked {
        None => return Err(unplaced()),
        Some(Err((why, max))) => return Err(refusal_error(why, max)),
        Some(Ok(())) => {}
    }
    let ws = ws
        .max_message_size(MAX_INBOUND_MESSAGE)
        .max_frame_size(MAX_INBOUND_MESSAGE);
    Ok(ws.on_upgrade(move |socket| async move {
        tracing::debug!(instance = %instance, probe = %probe_id, "probe control channel open");
        controls::serve(socket, queue, state.drain.clone(), CONTROL_PING).await;
        state
            .shard
            .with_slot(&instance, |slot| slot.unlink_probe(&probe_id, connection));
        tracing::debug!(instance = %instance, probe = %probe_id, "probe control channel closed");
    }))
}

/// An instance this collector does not hold (yet): provisioning is placing it.
pub(crate) fn unplaced() -> Error {
    Error::client(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        "The instance is being placed; retry shortly.",
    )
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
        Refusal::WindowFull => Error::TooManyRequests {
            retry_after_secs: 15,
            message: format!(
                "This instance's live window is at its memory budget ({} MiB); reports are \
                 refused until older ones leave the window.",
                limit >> 20
            ),
        },
        Refusal::ShardFull => Error::TooManyRequests {
            retry_after_secs: 15,
            message: "The collector holding this instance is at its memory budget; retry shortly."
                .to_owned(),
        },
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /api/report`: a probe's report, full or delta, msgpack or JSON, gzipped or not.
/// Refusals (401/403 credentials, 400 format, 413 size, 429 rate or probes) change nothing.
async fn ingest(
    State(state): State<CollectorState>,
    ProbeInstance(instance): ProbeInstance,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode> {
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
    let shard = &state.shard;
    // Cheap refusals first, before reading the body.
    let admitted = shard.with_slot(&instance, |slot| {
        if slot.flags.refuse_uploads {
            return Err(None);
        }
        let limits = slot.limits;
        slot.admit(&probe_id, now).map(|()| limits).map_err(|why| {
            let limit = match why {
                Refusal::TooManyProbes => limits.max_probes,
                Refusal::WindowFull => slot.memory_budget().instance_bytes as i64,
                _ => limits.max_reports_per_second,
            };
            Some((why, limit))
        })
    });
    let limits = match admitted {
        None => return Err(unplaced()),
        Some(Err(None)) => return Err(not_accepting()),
        Some(Err(Some((why, limit)))) => {
            state.metrics.record_report(why.reason());
            return Err(refusal_error(why, limit));
        }
        Some(Ok(limits)) => limits,
    };
    let max = usize::try_from(limits.max_report_bytes).unwrap_or(usize::MAX);
    let refuse = |why: Refusal| {
        shard.with_slot(&instance, |slot| slot.refuse(why));
        state.metrics.record_report(why.reason());
        refusal_error(why, limits.max_report_bytes)
    };
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| refuse(Refusal::TooLarge))?;
    // Decoding and folding run off the async runtime, and without the slot's lock, which readers
    // and the instance's other probes need meanwhile. The report is decoded in full before any of
    // it is folded: a report refused half-way leaves nothing behind (a new probe's part, empty,
    // goes at the next look at the window).
    let max_nodes = state.config.max_nodes_per_topology;
    let kept = (bytes.clone(), probe_id.clone());
    let turn = state.shard.folding_turn().await;
    let part = shard
        .with_slot(&instance, |slot| slot.part_of(&probe_id))
        .ok_or_else(unplaced)?;
    let folding = part.clone();
    let metrics = state.metrics.clone();
    // Nobody waits on a fold but the probe, which does not mind a few milliseconds: reads first.
    // The background threads take no slot's lock: one preempted while holding it would hold up
    // the instance's readers.
    let folded = background::spawn(move || {
        let _turn = turn;
        let cpu_at_start = background::thread_cpu_seconds();
        let folded = decode::with_inflated(&bytes, gzip, max, |raw| {
            let limits =
                BudgetLimits::for_report(max).with_elements(max_nodes.max(bounded::MAX_ELEMENTS));
            let report: WireReport = decode::parse(raw, format, limits)?;
            if let Some((name, nodes)) = report.most_nodes()
                && nodes > max_nodes
            {
                return Err(Rejected::TooManyNodes(name.to_owned()));
            }
            let probe = ProbeInfo {
                id: probe_id,
                hostname: report.hostname(),
                version,
                last_seen: now,
            };
            let bytes = slot::fold_into(&folding, report, now);
            Ok((probe, bytes))
        })
        .map_err(Rejected::from)
        .and_then(|folded| folded);
        metrics.record_report_cpu(background::thread_cpu_seconds() - cpu_at_start);
        folded
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?;
    let first = match folded {
        Ok((probe, bytes)) => shard
            .with_slot(&instance, |slot| slot.accepted(probe, &part, bytes, now))
            .ok_or_else(unplaced)?,
        Err(Rejected::Decode(DecodeError::TooLarge(_))) => return Err(refuse(Refusal::TooLarge)),
        Err(Rejected::Decode(DecodeError::TooComplex(why))) => {
            refuse(Refusal::TooLarge);
            return Err(Error::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                format!("The report is refused: {why} (the limit for reports to this instance)."),
            ));
        }
        Err(Rejected::Decode(e)) => {
            refuse(Refusal::Malformed);
            return Err(Error::bad_request(e.to_string()));
        }
        Err(Rejected::TooManyNodes(name)) => {
            refuse(Refusal::TooLarge);
            return Err(Error::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                format!("A topology may carry at most {max_nodes} nodes; {name} has more."),
            ));
        }
    };
    if let Some(history) = shard.history() {
        let (body, probe) = kept;
        history.keep(&instance, now, &probe, format, body, gzip);
    }
    state.metrics.record_report("accepted");
    state.metrics.set_window_bytes(shard.window_bytes());
    if first {
        // Provisioning moves the instance to `active` when it sees the usage; tell it now.
        shard.first_report_accepted();
    }
    Ok(StatusCode::OK)
}

/// Why a report that was read was not folded in.
enum Rejected {
    Decode(DecodeError),
    TooManyNodes(String),
}

impl From<DecodeError> for Rejected {
    fn from(e: DecodeError) -> Self {
        Rejected::Decode(e)
    }
}

fn not_accepting() -> Error {
    Error::client(
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
        "This instance does not accept reports now.",
    )
}

/// `GET /api`: Scope's app details. The probe uses `id` to recognise one app behind several
/// addresses, so it is the instance's id: each instance is one Scope app.
async fn details(
    State(state): State<CollectorState>,
    ProbeInstance(instance): ProbeInstance,
) -> Result<Json<Value>> {
    Ok(Json(app_details(&state, &instance)))
}

/// Scope's `Details` of the app that is this instance: what `GET /api` tells a probe and Scope's
/// UI asks first (`/api/app/{instance}/api`).
fn app_details(state: &CollectorState, instance: &str) -> Value {
    let hostname = state.config.hostname.clone();
    json!({
        "id": instance,
        "version": env!("CARGO_PKG_VERSION"),
        "hostname": hostname,
        "plugins": null,
        "capabilities": {"historic_reports": state.shard.history().is_some()},
        "newVersion": null,
    })
}
