//! Scope's browser-facing API for one instance (scope-render.md), mounted under `/api` as
//! `/app/{instance}/api/…`: the topology list, views, node details, the topology websocket, the
//! probes and the merged report. The edge checks the caller's membership of the instance's org and
//! grants exactly that instance; every handler takes it through `InstanceReader`, and the shard
//! still refuses reads of an instance suspended with reads off.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, RawQuery, State};

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use shared::topology::{NodeAnswer, ProbeStatus};

use super::CollectorState;
use super::fold::Samples;
use super::render::topologies;
use super::render::{self, Ctx, detail, views};
use super::report::{self, Report, Time};
use super::slot::{
    self, Answer, Making, Merging, RenderPlan, Rendered, Snapshot, Summaries, ViewCounts,
};
use crate::error::{Error, Json, Result};
use crate::identity::{Identity, InstanceReader};

pub fn app_router() -> Router<CollectorState> {
    Router::new()
        .route("/app/{instance}/api", get(details))
        .route("/app/{instance}/api/report", get(merged_report))
        .route("/app/{instance}/api/probes", get(probes))
        .route("/app/{instance}/api/topology", get(topology_list))
        .route("/app/{instance}/api/topology/{view}", get(topology))
        .route("/app/{instance}/api/topology/{view}/ws", get(topology_ws))
        .route(
            "/app/{instance}/api/topology/{view}/changes",
            get(super::past::changes),
        )
        .route("/app/{instance}/api/history", get(super::past::timeline))
        .route(
            "/app/{instance}/api/topology/{view}/{node}",
            get(node_details),
        )
        .route(
            "/app/{instance}/api/control/{probe}/{node}/{control}",
            axum::routing::post(control),
        )
        .route(
            "/app/{instance}/api/pipe/{pipe}",
            get(browser_pipe).delete(close_browser_pipe),
        )
        .route("/app/{instance}/api/pipe/{pipe}/check", get(check_pipe))
}

/// The pipe `id` of `instance`, if `identity` opened it: anyone else is told it does not exist.
fn own_pipe<R>(
    state: &CollectorState,
    instance: &str,
    id: &str,
    identity: &Identity,
    f: impl FnOnce(&mut super::pipes::Pipe) -> R,
) -> Result<R> {
    state
        .shard
        .with_slot(instance, |slot| {
            slot.pipes
                .get_mut(id)
                .filter(|p| p.user_id == identity.user.id)
                .map(f)
        })
        .flatten()
        .ok_or_else(|| Error::not_found("No such pipe: it may have closed."))
}

/// `GET /api/app/{instance}/api/pipe/{id}/check`: 204 while the pipe is open, 404 once it is not.
async fn check_pipe(
    State(state): State<CollectorState>,
    InstanceReader {
        identity, instance, ..
    }: InstanceReader,
    Path((_, id)): Path<(String, String)>,
) -> Result<axum::http::StatusCode> {
    own_pipe(&state, &instance, &id, &identity, |_| ())?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// `DELETE /api/app/{instance}/api/pipe/{id}`: the user closes the pipe; the probe's end is told.
async fn close_browser_pipe(
    State(state): State<CollectorState>,
    InstanceReader {
        identity, instance, ..
    }: InstanceReader,
    Path((_, id)): Path<(String, String)>,
) -> Result<axum::http::StatusCode> {
    own_pipe(&state, &instance, &id, &identity, |_| ())?;
    state
        .shard
        .with_slot(&instance, |slot| slot.pipes.remove(&id));
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// `GET /api/app/{instance}/api/pipe/{id}` (websocket): the browser's end of a terminal or log
/// stream its user opened. When it closes, the pipe closes (the probe's end is told) and the
/// session is audited with its byte counts.
async fn browser_pipe(
    State(state): State<CollectorState>,
    InstanceReader {
        identity,
        instance,
        org,
        role,
    }: InstanceReader,
    Path((_, id)): Path<(String, String)>,
    ws: WebSocketUpgrade,
) -> Result<Response> {
    if role < shared::users::Role::Editor {
        return Err(Error::forbidden(
            "Terminals need the editor role in the instance's org.",
        ));
    }
    let (io, pipe) = own_pipe(&state, &instance, &id, &identity, |p| {
        (
            p.take(super::pipes::End::Browser),
            (p.probe.clone(), p.node.clone(), p.control.clone()),
        )
    })?;
    let io = io.ok_or_else(|| {
        Error::client(
            axum::http::StatusCode::CONFLICT,
            shared::ErrorCode::Conflict,
            "This pipe is open in another window already.",
        )
    })?;
    let ws = ws
        .max_message_size(super::MAX_INBOUND_MESSAGE)
        .max_frame_size(super::MAX_INBOUND_MESSAGE);
    Ok(ws.on_upgrade(move |socket| async move {
        let started = state.clock.now();
        let copied = super::pipes::copy(socket, io, state.drain.clone()).await;
        state
            .shard
            .with_slot(&instance, |slot| slot.pipes.remove(&id));
        let (probe, node, control) = pipe;
        let record = super::controls::TerminalRecord {
            user_id: identity.user.id.clone(),
            user_email: identity.user.email.clone(),
            org,
            instance,
            probe,
            node,
            control,
            pipe: id,
            started_at_ms: started,
            ended_at_ms: state.clock.now(),
            bytes_in: copied.sent,
            bytes_out: copied.received,
        };
        if let Err(e) = state.control_log.record_terminal(record.clone()).await {
            tracing::error!(error = %e, ?record, "a terminal session could not be audited");
        }
    }))
}

/// A control's arguments: at most this many bytes of JSON, this many arguments.
const MAX_CONTROL_ARGS_BYTES: usize = 64 * 1024;
const MAX_CONTROL_ARGS: usize = 64;

/// `POST /api/app/{instance}/api/control/{probeID}/{nodeID}/{control}`: Scope's control call,
/// carried to the probe over its control channel (`controls.rs`). The optional body is a JSON
/// object of string arguments. Answers Scope's reply (`value`, `pipe`, `removedNode`…) with 200;
/// a control the probe could not carry out is 400 with its error (as Scope's app answers); 403
/// below the editor role; 503 when the probe is not connected; 504 when it does not reply in time.
/// Every call that names a control is audited with its outcome, refusals included.
async fn control(
    State(state): State<CollectorState>,
    reader: InstanceReader,
    ip: crate::identity::ClientIp,
    Path((_, probe, node, control)): Path<(String, String, String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<super::controls::ControlReply>> {
    use super::controls::Allowance;
    use axum::http::StatusCode;
    let now = state.clock.now();
    let allowance = state.shard.with_slot(&reader.instance, |slot| {
        (slot.control_allowances).take(&reader.identity.user.id, now)
    });
    let too_many = |retry_after_secs| Error::TooManyRequests {
        retry_after_secs,
        message: "You have made too many controls on this instance in a short time; wait a moment."
            .to_owned(),
    };
    let result = match allowance {
        // A streak of refusals is audited once, at its first.
        Some(Allowance::Refused {
            first: false,
            retry_after_secs,
        }) => return Err(too_many(retry_after_secs)),
        Some(Allowance::Refused {
            first: true,
            retry_after_secs,
        }) => Err(too_many(retry_after_secs)),
        Some(Allowance::Allowed) | None => {
            carry_control(&state, &reader, &probe, &node, &control, &body).await
        }
    };
    let outcome = match &result {
        Ok(reply) if reply.contains_key("removedNode") => "removed".to_owned(),
        Ok(_) => "done".to_owned(),
        Err(e) if e.status() == StatusCode::GATEWAY_TIMEOUT => "timed out".to_owned(),
        Err(e) if e.status() == StatusCode::FORBIDDEN => format!("refused: {e}"),
        Err(e) if e.status() == StatusCode::TOO_MANY_REQUESTS => format!(
            "refused: {e} (the user's next refusals until a control is allowed again are not audited)"
        ),
        Err(e) => format!("failed: {e}"),
    };
    let record = super::controls::ControlRecord {
        user_id: reader.identity.user.id.clone(),
        user_email: reader.identity.user.email.clone(),
        ip: ip.0,
        org: reader.org.clone(),
        instance: reader.instance.clone(),
        probe,
        node,
        control,
        outcome,
    };
    // The control has happened (or not) whatever the log says: a failure to audit is logged
    // loudly, not turned into the user's error.
    if let Err(e) = state.control_log.record(record.clone()).await {
        tracing::error!(error = %e, ?record, "a control could not be audited");
    }
    result.map(Json)
}

async fn carry_control(
    state: &CollectorState,
    reader: &InstanceReader,
    probe: &str,
    node: &str,
    control: &str,
    body: &[u8],
) -> Result<super::controls::ControlReply> {
    use super::controls::{CallFailure, ControlRequest};
    use axum::http::StatusCode;
    use shared::ErrorCode;
    let instance = &reader.instance;
    if reader.role < shared::users::Role::Editor {
        return Err(Error::forbidden(
            "Controls need the editor role in the instance's org; viewers can only look.",
        ));
    }
    readable(state, instance)?;
    let flags = state.shard.with_slot(instance, |slot| slot.flags);
    if let Some(flags) = flags {
        if !flags.allow_controls {
            return Err(Error::forbidden(
                "Controls are turned off for this instance; an org admin can turn them on in its settings.",
            ));
        }
        if super::controls::TERMINAL_CONTROLS.contains(&control) && !flags.allow_terminals {
            return Err(Error::forbidden(
                "Terminals are turned off for this instance; an org admin can turn them on in its settings.",
            ));
        }
    }
    if body.len() > MAX_CONTROL_ARGS_BYTES {
        return Err(Error::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("A control's arguments may be at most {MAX_CONTROL_ARGS_BYTES} bytes."),
        ));
    }
    let args: BTreeMap<String, String> = if body.iter().all(u8::is_ascii_whitespace) {
        BTreeMap::new()
    } else {
        serde_json::from_slice(body).map_err(|e| {
            Error::bad_request(format!(
                "A control's arguments are a JSON object of strings: {e}"
            ))
        })?
    };
    if args.len() > MAX_CONTROL_ARGS {
        return Err(Error::bad_request(format!(
            "A control takes at most {MAX_CONTROL_ARGS} arguments."
        )));
    }
    let unavailable = |message: String| {
        Error::client(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            message,
        )
    };
    let link = state
        .shard
        .with_slot(instance, |slot| slot.probe_link(probe))
        .ok_or_else(super::unplaced)?
        .ok_or_else(|| {
            unavailable(format!(
                "The probe {probe} is not connected: it may have stopped, or cannot reach Scopehub."
            ))
        })?;
    let request = ControlRequest {
        app_id: String::new(),
        node_id: node.to_owned(),
        control: control.to_owned(),
        args,
    };
    let failed = |why: CallFailure| match why {
        CallFailure::Disconnected => unavailable(format!(
            "The probe {probe} disconnected before it answered."
        )),
        CallFailure::Busy => unavailable(format!(
            "The probe {probe} has too many controls in progress; retry shortly."
        )),
        CallFailure::Rpc(e) => Error::client(
            StatusCode::BAD_GATEWAY,
            ErrorCode::Unavailable,
            format!("The probe {probe} failed to handle the control: {e}"),
        ),
    };
    let answer = link.call(request).map_err(failed)?;
    let timeout = state.config.control_timeout;
    let reply = match tokio::time::timeout(timeout, answer).await {
        Err(_) => {
            return Err(Error::client(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::Timeout,
                format!(
                    "The probe {probe} did not answer within {} s; the control may still happen.",
                    timeout.as_secs_f64()
                ),
            ));
        }
        Ok(Err(_)) => return Err(failed(CallFailure::Disconnected)),
        Ok(Ok(reply)) => reply.map_err(failed)?,
    };
    if let Some(error) = reply
        .get("error")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
    {
        return Err(Error::bad_request(
            error.chars().take(1000).collect::<String>(),
        ));
    }
    if let Some(pipe) = reply.get("pipe").and_then(Value::as_str) {
        open_pipe(state, reader, probe, node, control, pipe)?;
    }
    if let Some(removed) = reply.get("removedNode").and_then(Value::as_str) {
        let now = state.clock.now();
        state
            .shard
            .with_slot(instance, |slot| slot.forget_node(removed, now));
    }
    Ok(reply)
}

/// Keeps the pipe a probe's reply announced, for its two ends to join; collected if they have not
/// both joined in time.
fn open_pipe(
    state: &CollectorState,
    reader: &InstanceReader,
    probe: &str,
    node: &str,
    control: &str,
    id: &str,
) -> Result<()> {
    use super::pipes::{JOIN_WITHIN, Pipe, valid_id};
    if !valid_id(id) {
        return Err(Error::client(
            axum::http::StatusCode::BAD_GATEWAY,
            shared::ErrorCode::Unavailable,
            "The probe answered a pipe id that is not one.",
        ));
    }
    let pipe = Pipe::new(
        probe.to_owned(),
        reader.identity.user.id.clone(),
        reader.identity.user.email.clone(),
        control.to_owned(),
        node.to_owned(),
        state.clock.now(),
    );
    let added = state
        .shard
        .with_slot(&reader.instance, |slot| slot.pipes.add(id, pipe))
        .unwrap_or(Err("the instance is no longer on this collector"));
    added.map_err(|why| {
        Error::client(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            shared::ErrorCode::TooManyRequests,
            format!("The terminal could not be opened: {why}."),
        )
    })?;
    let (shard, instance, id) = (state.shard.clone(), reader.instance.clone(), id.to_owned());
    tokio::spawn(async move {
        tokio::time::sleep(JOIN_WITHIN).await;
        if shard
            .with_slot(&instance, |slot| slot.pipes.collect_unjoined(&id))
            .flatten()
            .is_some()
        {
            tracing::info!(%instance, pipe = %id, "collected a pipe whose ends did not both join");
        }
    });
    Ok(())
}

/// Refuses reads of an instance whose reads are off on this shard (a suspension that the edge may
/// not have seen yet).
fn readable(state: &CollectorState, instance: &str) -> Result<()> {
    let refused = state
        .shard
        .with_slot(instance, |slot| slot.flags.refuse_reads)
        .unwrap_or(false);
    if refused {
        return Err(Error::forbidden("This instance's data cannot be read now."));
    }
    Ok(())
}

/// `GET /api/app/{instance}/api`: the app's details, Scope UI's first call.
async fn details(
    State(state): State<CollectorState>,
    InstanceReader { instance, .. }: InstanceReader,
) -> Result<Json<Value>> {
    readable(&state, &instance)?;
    Ok(Json(super::app_details(&state, &instance)))
}

/// `GET /api/app/{instance}/api/report`: the instance's window, merged (with the nodes only
/// deltas described, as Scope's `/api/report` shows them).
async fn merged_report(
    State(state): State<CollectorState>,
    InstanceReader { instance, .. }: InstanceReader,
    RawQuery(raw): RawQuery,
) -> Result<Json<Report>> {
    readable(&state, &instance)?;
    let mut query = topologies::Query::parse(raw.as_deref());
    if let Some(at) = super::past::moment(&state, &mut query)? {
        let past = super::past::window(&state, &instance, at, Samples::All).await?;
        return Ok(Json((*past.report).clone()));
    }
    let now = state.clock.now();
    let parts = state
        .shard
        .with_slot(&instance, |slot| slot.parts(now))
        .unwrap_or_default();
    let merged = blocking(move || slot::merge_parts(&parts, now, false, Samples::All)).await?;
    Ok(Json(merged))
}

/// Runs `f` off the async runtime, at the serving threads' priority: a reader waits for it.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    off_runtime(Waiting::Reader, f).await
}

/// Who waits for a merge or render made off the async runtime: a reader, or nobody yet (a view
/// rendered again behind the one readers are given, the timeline's count), whose work goes to the
/// [`background`](super::background) threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Waiting {
    Reader,
    Nobody,
}

async fn off_runtime<T: Send + 'static>(
    waiting: Waiting,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    match waiting {
        Waiting::Reader => tokio::task::spawn_blocking(f).await,
        Waiting::Nobody => super::background::spawn(f).await,
    }
    .map_err(|e| Error::Internal(e.into()))
}

/// The instance's window merged for rendering, with its generation (0 when the instance has no
/// slot here): the merge another reader still uses if the window has not changed since, else a new
/// one. One merge at a time: readers arriving while one is made wait for it. The probes' parts are
/// merged without the slot's lock. Its metrics keep the `samples` asked for: views show only the
/// newest, node details draw them all (two merges, each shared by its readers).
async fn window_report(
    state: &CollectorState,
    instance: &str,
    samples: Samples,
    waiting: Waiting,
) -> Result<(u64, Arc<Report>)> {
    let now = state.clock.now();
    let cell = match state
        .shard
        .with_slot(instance, |slot| slot.snapshot(now, samples))
    {
        Some(Snapshot::Merged(generation, report)) => return Ok((generation, report)),
        Some(Snapshot::Merge(cell)) => cell,
        None => Merging::default(),
    };
    let (generation, merged) = cell
        .get_or_try_init(|| async {
            let now = state.clock.now();
            let (generation, parts, removed) = state
                .shard
                .with_slot(instance, |slot| {
                    let parts = slot.parts(now);
                    (slot.generation(), parts, slot.removed_nodes(now))
                })
                .unwrap_or_default();
            let merged = off_runtime(waiting, move || {
                let mut merged = slot::merge_parts(&parts, now, true, samples);
                slot::without_nodes(&mut merged, &removed);
                Arc::new(merged)
            })
            .await?;
            state.shard.with_slot(instance, |slot| {
                slot.cache_merged(&cell, generation, &merged, samples);
            });
            Ok::<_, Error>((generation, merged))
        })
        .await?;
    Ok((*generation, merged.clone()))
}

/// What a read renders from the merged window (at the time given, with a note of what history
/// had for a past moment): a view's summaries or the topology list; `None` for an unknown view.
pub(super) type Render = Arc<
    dyn Fn(&Report, Time, Option<&shared::topology::HistoryNote>) -> Result<Option<Rendered>>
        + Send
        + Sync,
>;

/// What `render` makes of the window, shared by every reader that asks for it under `key` (the
/// slot's [`RenderPlan`]): a render of the window as it is, or (for a costly one) the last render
/// while a new one is made in the background.
async fn render_once(
    state: &CollectorState,
    instance: &str,
    key: String,
    render: Render,
    waiting: Waiting,
) -> Result<Option<Rendered>> {
    let now = state.clock.now();
    let plan = state
        .shard
        .with_slot(instance, |slot| {
            slot.render_plan(&key, now, state.config.render_on_read_ms)
        })
        // Not on this shard: the empty window, rendered for this reader.
        .unwrap_or_else(|| RenderPlan::Wait(Making::default()));
    let cell = match plan {
        RenderPlan::Current(rendered) => {
            state.metrics.record_render(true);
            return Ok(Some(rendered));
        }
        RenderPlan::Recent { rendered, refresh } => {
            state.metrics.record_render(true);
            if let Some((cell, background)) = refresh {
                let (state, instance) = (state.clone(), instance.to_owned());
                tokio::spawn(async move {
                    // One background render at a time per instance: views refreshed one after
                    // the other share the merge instead of making one each at once.
                    let Ok(_permit) = background.acquire_owned().await else {
                        return;
                    };
                    let made = cell
                        .get_or_try_init(|| {
                            make_render(&state, &instance, &key, &cell, render, Waiting::Nobody)
                        })
                        .await;
                    if let Err(e) = made {
                        tracing::warn!(instance = %instance, error = %e, "background render failed");
                    }
                });
            }
            return Ok(Some(rendered));
        }
        RenderPlan::Wait(cell) => cell,
    };
    let made = std::sync::atomic::AtomicBool::new(false);
    let rendered = cell
        .get_or_try_init(|| {
            made.store(true, std::sync::atomic::Ordering::Relaxed);
            make_render(state, instance, &key, &cell, render, waiting)
        })
        .await;
    state
        .metrics
        .record_render(!made.load(std::sync::atomic::Ordering::Relaxed));
    match rendered {
        Ok((_, rendered)) => Ok(Some(rendered.clone())),
        Err(e) if e.status() == axum::http::StatusCode::NOT_FOUND => Ok(None),
        Err(e) => Err(e),
    }
}

/// Merges the window (or takes the slot's merge) and renders it off the async runtime, then keeps
/// the render in the slot with when it began and what it cost.
async fn make_render(
    state: &CollectorState,
    instance: &str,
    key: &str,
    cell: &Making,
    render: Render,
    waiting: Waiting,
) -> Result<(u64, Rendered)> {
    let began = state.clock.now();
    let started = std::time::Instant::now();
    let made = async {
        let (generation, report) = window_report(state, instance, Samples::Last, waiting).await?;
        let at = render_time(state);
        let budget = state.config.render_budget;
        let rendered = off_runtime(waiting, move || {
            render::budget::within(budget, || render(&report, at, None))
        })
        .await?
        .map_err(|_| over_budget(budget))??
        .ok_or_else(unknown_view)?;
        Ok((generation, rendered))
    }
    .await;
    let cost_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let replaced = state.shard.with_slot(instance, |slot| match &made {
        Ok((generation, rendered)) => {
            slot.cache_render(key, cell, *generation, (began, cost_ms), rendered.clone())
        }
        Err(_) => {
            slot.release_render(key, cell);
            None
        }
    });
    if let Some(Some(replaced)) = replaced {
        super::background::free(replaced);
    }
    made
}

/// A view's summaries, and its JSON answer (Scope's `TopologyAnswer`), for the window as it is now
/// (or, for a costly view, as it was at most `slot::MAX_STALE_MS` ago), rendered and serialised
/// once for every request and websocket tick that asks. `None` for an unknown view.
pub(super) async fn view_render(
    state: &CollectorState,
    instance: &str,
    view: &str,
    query: &topologies::Query,
    at: Option<i64>,
) -> Result<Option<(Arc<Summaries>, Answer)>> {
    let (view_id, q) = (view.to_owned(), query.clone());
    let render: Render = Arc::new(move |report, time, note| {
        let mut ctx = Ctx::new(report, time);
        let Some(nodes) = topologies::topology_json(&mut ctx, &view_id, &q) else {
            return Ok(None);
        };
        let nodes = nodes.map_err(|e| Error::Internal(e.into()))?;
        let answer = answer_of(&NodesAnswer {
            nodes: &nodes,
            history: note,
        })?;
        Ok(Some(Rendered::View(Arc::new(nodes), answer)))
    });
    let key = query.cache_key(view);
    let rendered = render_at(state, instance, key, render, at, Waiting::Reader).await?;
    Ok(match rendered {
        Some(Rendered::View(nodes, body)) => Some((nodes, body)),
        _ => None,
    })
}

/// What `render` makes of the window ending at `at` (a past moment, from history) or of the live
/// window (`None`), shared by every reader of the same.
async fn render_at(
    state: &CollectorState,
    instance: &str,
    key: String,
    render: Render,
    at: Option<i64>,
    waiting: Waiting,
) -> Result<Option<Rendered>> {
    match at {
        None => render_once(state, instance, key, render, waiting).await,
        Some(at) => super::past::render(state, instance, at, key, render).await,
    }
}

/// Serialises an answer once, plain and gzipped (fast: it is made once per render, off the async
/// runtime, and sent to every reader).
pub(super) fn answer_of(value: &impl Serialize) -> Result<Answer> {
    use std::io::Write;
    /// Counts what passes through to the compressor: the JSON's length.
    struct Counted<W> {
        inner: W,
        len: usize,
    }
    impl<W: Write> Write for Counted<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.len += n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let internal = |e: std::io::Error| Error::Internal(e.into());
    // Serialised straight into the compressor, in 64 KiB runs: the plain JSON is never held whole.
    let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut out = std::io::BufWriter::with_capacity(
        64 << 10,
        Counted {
            inner: gzip,
            len: 0,
        },
    );
    serde_json::to_writer(&mut out, value).map_err(|e| Error::Internal(e.into()))?;
    let counted = out.into_inner().map_err(|e| internal(e.into_error()))?;
    let gzip = counted.inner.finish().map_err(internal)?;
    Ok(Answer {
        gzip: gzip.into(),
        json_len: counted.len,
    })
}

/// Whether the client takes gzip (`Accept-Encoding: gzip`, or `*`, without `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// An answer made once, sent as it is (the edge does not compress what is already encoded).
pub(super) fn send_answer(answer: Answer, headers: &HeaderMap) -> Response {
    let json = (header::CONTENT_TYPE, "application/json");
    let vary = (header::VARY, "accept-encoding");
    if accepts_gzip(headers) {
        let gzip = (header::CONTENT_ENCODING, "gzip");
        ([json, vary, gzip], answer.gzip).into_response()
    } else {
        (
            [json, vary],
            axum::body::Body::from_stream(inflated(answer.gzip)),
        )
            .into_response()
    }
}

/// Gzipped bytes inflated a chunk at a time as the body is sent: a client that does not take gzip
/// costs the server 64 KiB at a time, not the whole plain answer.
fn inflated(gzip: bytes::Bytes) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    use std::io::Read;
    let reader = flate2::read::GzDecoder::new(bytes::Buf::reader(gzip));
    futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut chunk = vec![0; 64 << 10];
        match reader.read(&mut chunk) {
            Ok(0) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok(bytes::Bytes::from(chunk)), Some(reader)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

fn render_time(state: &CollectorState) -> Time {
    Time(state.clock.now().saturating_mul(1_000_000))
}

/// A render stopped at its budget (`render::budget`).
pub(super) fn over_budget(budget: Duration) -> Error {
    Error::client(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        shared::ErrorCode::Unavailable,
        format!(
            "This view took more than {} s to render and was stopped; try a narrower view or filter.",
            budget.as_secs_f64()
        ),
    )
}

pub(super) fn unknown_view() -> Error {
    Error::not_found("No such topology.")
}

/// Checks the caller may read the instance (and that `view` exists), then gives the window merged
/// with every metric sample (node details draw them) and the time to render it at.
async fn detail_window(
    state: &CollectorState,
    instance: &str,
    view: Option<&str>,
) -> Result<(Arc<Report>, Time)> {
    check_view(state, instance, view)?;
    let merged = window_report(state, instance, Samples::All, Waiting::Reader)
        .await?
        .1;
    Ok((merged, render_time(state)))
}

/// Checks the caller may read the instance, and that `view` exists.
pub(super) fn check_view(state: &CollectorState, instance: &str, view: Option<&str>) -> Result<()> {
    readable(state, instance)?;
    if view.is_some_and(|v| !views::VIEWS.contains(&v)) {
        return Err(unknown_view());
    }
    Ok(())
}

/// `GET …/api/topology`: every view with its options and the stats this query gives.
async fn topology_list(
    State(state): State<CollectorState>,
    InstanceReader { instance, .. }: InstanceReader,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<axum::response::Response> {
    check_view(&state, &instance, None)?;
    let mut query = topologies::Query::parse(raw.as_deref());
    let at = super::past::moment(&state, &mut query)?;
    let (_, answer) = list_render(&state, &instance, query, at, Waiting::Reader).await?;
    Ok(send_answer(answer, &headers))
}

/// The topology list for `query` (every view rendered, for its stats) and each view's node count
/// in it, shared by readers as views are.
async fn list_render(
    state: &CollectorState,
    instance: &str,
    query: topologies::Query,
    at: Option<i64>,
    waiting: Waiting,
) -> Result<(Arc<ViewCounts>, Answer)> {
    let key = query.cache_key("");
    let plan = state
        .shard
        .with_slot(instance, |slot| slot.list_plan(&key))
        .flatten();
    let render: Render = Arc::new(move |report, time, _| {
        let mut ctx = Ctx::new(report, time);
        let (list, learned) = topologies::topology_list_planned(&mut ctx, &query, plan.as_deref());
        let counts = Arc::new(topologies::view_counts(&list));
        Ok(Some(Rendered::List(
            counts,
            answer_of(&list)?,
            Arc::new(learned),
        )))
    });
    match render_at(state, instance, key, render, at, waiting).await? {
        Some(Rendered::List(counts, answer, _)) => Ok((counts, answer)),
        _ => Err(Error::Internal(anyhow::anyhow!(
            "the topology list rendered as a view"
        ))),
    }
}

/// Renders the live window's topology list with the options' defaults (or finds it made by a
/// reader), for the timeline's counts: [`Shard::flush_history`](super::shard::InProcessShard)
/// takes them from the slot.
pub(super) async fn count_views(state: &CollectorState, instance: &str) -> Result<()> {
    let defaults = topologies::Query::defaults();
    list_render(state, instance, defaults, None, Waiting::Nobody).await?;
    Ok(())
}

#[derive(Serialize)]
struct NodesAnswer<'a> {
    nodes: &'a Summaries,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<&'a shared::topology::HistoryNote>,
}

/// `GET …/api/topology/{view}`: the view's nodes, summarised (Scope's `TopologyAnswer`).
async fn topology(
    State(state): State<CollectorState>,
    InstanceReader { instance, .. }: InstanceReader,
    Path((_, view)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<axum::response::Response> {
    check_view(&state, &instance, Some(&view))?;
    let mut query = topologies::Query::parse(raw.as_deref());
    let at = super::past::moment(&state, &mut query)?;
    let (_, answer) = view_render(&state, &instance, &view, &query, at)
        .await?
        .ok_or_else(unknown_view)?;
    Ok(send_answer(answer, &headers))
}

/// `GET …/api/topology/{view}/{node}`: one node's details (the id is percent-decoded, so `%2F`
/// works).
async fn node_details(
    State(state): State<CollectorState>,
    InstanceReader { instance, .. }: InstanceReader,
    Path((_, view, node)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<NodeAnswer>> {
    let mut query = topologies::Query::parse(raw.as_deref());
    let (report, now) = match super::past::moment(&state, &mut query)? {
        None => detail_window(&state, &instance, Some(&view)).await?,
        Some(at) => {
            check_view(&state, &instance, Some(&view))?;
            let past = super::past::window(&state, &instance, at, Samples::All).await?;
            (past.report, Time(at.saturating_mul(1_000_000)))
        }
    };
    let details = blocking(move || {
        let mut ctx = Ctx::new(&report, now);
        let desc = topologies::find_view(&report, &view)?;
        detail::node_details(&mut ctx, &desc, &node, &query)
    })
    .await?
    .ok_or_else(|| Error::not_found("No such node in this topology."))?;
    Ok(Json(NodeAnswer { node: details }))
}

/// Scope's default websocket tick, and the bounds we hold clients to.
const DEFAULT_TICK: Duration = Duration::from_secs(1);
const MIN_TICK: Duration = Duration::from_millis(100);
const MAX_TICK: Duration = Duration::from_secs(60);
/// How often an open websocket re-checks that its caller may still read the instance.
const RECHECK: Duration = Duration::from_secs(30);

/// Go's `time.ParseDuration` for what clients send: `1s`, `500ms`, `1.5s`, `1m30s`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    (total.is_finite() && total < 1e9).then(|| Duration::from_secs_f64(total))
}

fn diff<'a>(previous: &'a Summaries, current: &'a Summaries, reset: bool) -> Delta<'a> {
    Delta {
        add: current
            .iter()
            .filter(|(id, _)| !previous.contains_key(*id))
            .map(|(_, n)| &**n)
            .collect(),
        // Summaries serialise the same way every time: equal JSON is an equal node.
        update: current
            .iter()
            .filter(|(id, n)| previous.get(*id).is_some_and(|p| p.get() != n.get()))
            .map(|(_, n)| &**n)
            .collect(),
        remove: previous
            .keys()
            .filter(|id| !current.contains_key(*id))
            .map(String::as_str)
            .collect(),
        reset,
    }
}

/// A websocket tick's change to a view (Scope's `Diff`), its nodes as kept: serialised.
struct Delta<'a> {
    add: Vec<&'a RawValue>,
    update: Vec<&'a RawValue>,
    remove: Vec<&'a str>,
    reset: bool,
}

/// Bytes of nodes one websocket frame carries at most (one node larger than this goes alone). A
/// tick's changes of a large view go out as several frames, each a diff of its own applied in
/// order — Scope's UI takes them as it takes any diff — so a browser decodes and applies a
/// 2,000-node update in short steps (about 5 ms each) instead of one task of 2 MB.
const FRAME_BYTES: usize = 128 * 1024;

/// One frame on the wire: `Diff`'s shape.
#[derive(Serialize)]
struct Frame<'a> {
    add: Option<Vec<&'a RawValue>>,
    update: Option<Vec<&'a RawValue>>,
    remove: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    reset: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    more: bool,
}

/// `diff` as the frames to send, in order: the adds, then the updates, then the removals, cut so
/// that each frame holds at most `budget` bytes of them; only the first frame carries `reset`, and
/// every frame but the last `more`. A diff that changes nothing is one empty frame (the client's
/// sign the link is alive).
fn frames(diff: &Delta, budget: usize) -> serde_json::Result<Vec<String>> {
    let empty = |reset| Frame {
        add: None,
        update: None,
        remove: None,
        reset,
        more: false,
    };
    let mut frames = vec![empty(diff.reset)];
    let mut bytes = 0;
    let items = diff
        .add
        .iter()
        .map(|n| Item::Add(n))
        .chain(diff.update.iter().map(|n| Item::Update(n)))
        .chain(diff.remove.iter().map(|id| Item::Remove(id)));
    for item in items {
        let size = match &item {
            Item::Add(n) | Item::Update(n) => n.get().len() + 1,
            Item::Remove(id) => id.len() + 3,
        };
        if bytes > 0 && bytes + size > budget {
            frames.last_mut().expect("at least one frame").more = true;
            frames.push(empty(false));
            bytes = 0;
        }
        bytes += size;
        let frame = frames.last_mut().expect("at least one frame");
        match item {
            Item::Add(n) => frame.add.get_or_insert_with(Vec::new).push(n),
            Item::Update(n) => frame.update.get_or_insert_with(Vec::new).push(n),
            Item::Remove(id) => frame.remove.get_or_insert_with(Vec::new).push(id),
        }
    }
    frames.iter().map(serde_json::to_string).collect()
}

/// What a frame carries, in the order frames carry them.
enum Item<'a> {
    Add(&'a RawValue),
    Update(&'a RawValue),
    Remove(&'a str),
}

/// `GET …/api/topology/{view}/ws?t=<duration>&<options>`: the view, re-rendered every tick, sent
/// as add/update/remove diffs (the first frame a reset holding everything), in frames of at most
/// `FRAME_BYTES` of nodes.
async fn topology_ws(
    State(state): State<CollectorState>,
    InstanceReader {
        identity, instance, ..
    }: InstanceReader,
    Path((_, view)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response> {
    readable(&state, &instance)?;
    if !views::VIEWS.contains(&view.as_str()) {
        return Err(unknown_view());
    }
    let mut query = topologies::Query::parse(raw.as_deref());
    // A past moment streams on from there with the wall clock, as Scope's does.
    let since = super::past::moment(&state, &mut query)?.map(|at| (at, state.clock.now()));
    let tick = match query.params.get("t") {
        None => DEFAULT_TICK,
        Some(t) => parse_go_duration(t)
            .ok_or_else(|| Error::bad_request(format!("Invalid duration `t={t}`.")))?
            .clamp(MIN_TICK, MAX_TICK),
    };
    let open = MapSocket::open(&state, &instance, &identity.user.id)?;
    let ws = ws
        .max_message_size(super::MAX_INBOUND_MESSAGE)
        .max_frame_size(super::MAX_INBOUND_MESSAGE);
    Ok(ws.on_upgrade(move |socket| async move {
        let _open = open;
        let stream = Stream {
            view,
            query,
            tick,
            since,
        };
        stream_topology(state, identity, instance, stream, socket).await;
    }))
}

/// A map websocket counted open on its instance's slot until it is dropped (the stream ended, or
/// the handshake never completed).
struct MapSocket {
    state: CollectorState,
    instance: String,
    user: String,
}

impl MapSocket {
    /// Counts one more map websocket of `user` on `instance`, or refuses with 429.
    fn open(state: &CollectorState, instance: &str, user: &str) -> Result<MapSocket> {
        use slot::{MAP_SOCKETS_PER_INSTANCE, MAP_SOCKETS_PER_USER, MapSocketsFull};
        let opened = state
            .shard
            .with_slot(instance, |slot| slot.open_map_socket(user))
            .ok_or_else(super::unplaced)?;
        let message = match opened {
            Ok(()) => {
                return Ok(MapSocket {
                    state: state.clone(),
                    instance: instance.to_owned(),
                    user: user.to_owned(),
                });
            }
            Err(MapSocketsFull::User) => format!(
                "You have {MAP_SOCKETS_PER_USER} live maps of this instance open already (other \
                 tabs or windows?); close one to open another."
            ),
            Err(MapSocketsFull::Instance) => format!(
                "This instance has {MAP_SOCKETS_PER_INSTANCE} live maps open already; try again \
                 when some are closed."
            ),
        };
        Err(Error::TooManyRequests {
            retry_after_secs: 5,
            message,
        })
    }
}

impl Drop for MapSocket {
    fn drop(&mut self) {
        self.state
            .shard
            .with_slot(&self.instance, |slot| slot.close_map_socket(&self.user));
    }
}

/// What a topology websocket streams: a view with its options, every tick, live or from a past
/// moment (with when it was asked for: the moment advances with the wall clock).
struct Stream {
    view: String,
    query: topologies::Query,
    tick: Duration,
    since: Option<(i64, i64)>,
}

async fn stream_topology(
    state: CollectorState,
    identity: Identity,
    instance: String,
    Stream {
        view,
        query,
        tick,
        since,
    }: Stream,
    mut socket: WebSocket,
) {
    let _open = state.metrics.websocket_open();
    let mut previous: Arc<Summaries> = Arc::default();
    let mut first = true;
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checked = tokio::time::Instant::now();
    let closing = state.drain.streams_closing();
    tokio::pin!(closing);
    let mut changes = state.access.changes();
    let mut watching = true;
    loop {
        let mut recheck = checked.elapsed() >= RECHECK;
        tokio::select! {
            _ = ticker.tick() => {}
            changed = changes.changed(), if watching => {
                // A revocation, suspension or membership change somewhere: check this caller now.
                watching = changed.is_ok();
                recheck = true;
            }
            message = socket.recv() => match message {
                // Scope's app ignores what the browser sends; so do we, until it closes.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
            () = &mut closing => {
                let _ = socket.send(going_away()).await;
                return;
            }
        }
        if recheck || checked.elapsed() >= RECHECK {
            checked = tokio::time::Instant::now();
            let allowed = match state.access.still_readable(&identity, &instance).await {
                Ok(()) => readable(&state, &instance),
                // The database (or the role that reads it) is down: nothing can have been
                // revoked meanwhile, so the map goes on streaming from memory; checked again
                // on the next change or timer.
                Err(e) if e.status().is_server_error() => {
                    tracing::debug!(error = %e, "cannot re-check a map websocket's access now");
                    Ok(())
                }
                Err(e) => Err(e),
            };
            if allowed.is_err() {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        }
        let at = since
            .map(|(at, asked)| at + (state.clock.now() - asked))
            .and_then(|at| {
                let at = at - at.rem_euclid(1000);
                (at < state.clock.now() - super::past::LIVE_WITHIN_MS).then_some(at)
            });
        let Ok(Some((current, _))) = view_render(&state, &instance, &view, &query, at).await else {
            return;
        };
        let Ok(texts) = frames(&diff(&previous, &current, first), FRAME_BYTES) else {
            return;
        };
        for text in texts {
            if socket.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
        previous = current;
        first = false;
    }
}

/// The close frame of a process shutting down: the client reconnects (to another replica).
pub fn going_away() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame {
        code: crate::ops::GOING_AWAY,
        reason: "Scopehub is restarting; reconnect".into(),
    }))
}

#[derive(Debug, serde::Deserialize)]
struct ProbesQuery {
    sparse: Option<String>,
}

/// `GET /api/app/{instance}/api/probes`: `[{id, hostname, version, lastSeen}]`, or with `?sparse`
/// whether any probe is connected.
async fn probes(
    State(state): State<CollectorState>,
    InstanceReader { instance, .. }: InstanceReader,
    Query(q): Query<ProbesQuery>,
) -> Result<Json<Value>> {
    readable(&state, &instance)?;
    let now = state.clock.now();
    let usage = state
        .shard
        .with_slot(&instance, |slot| slot.usage(now))
        .unwrap_or_default();
    if q.sparse.is_some() {
        return Ok(Json(json!(!usage.probes.is_empty())));
    }
    let list: Vec<ProbeStatus> = usage
        .probes
        .iter()
        .map(|p| ProbeStatus {
            id: p.id.clone(),
            hostname: p.hostname.clone().unwrap_or_default(),
            version: p.version.clone().unwrap_or_default(),
            last_seen: report::Time(p.last_seen.saturating_mul(1_000_000)).to_rfc3339(),
        })
        .collect();
    Ok(Json(json!(list)))
}

#[cfg(test)]
mod tests {
    use shared::topology::{Diff, NodeSummary};

    use super::*;

    #[test]
    fn gzip_is_sent_only_to_clients_that_take_it() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, value.parse().unwrap());
            accepts_gzip(&headers)
        };
        assert!(with("gzip"));
        assert!(with("br, GZIP;q=0.5"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("br, identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn an_answer_kept_gzipped_is_sent_whole_to_a_client_that_does_not_take_gzip() {
        use futures_util::StreamExt;
        // Several of the 64 KiB runs it is made and inflated in, and not all alike.
        let value: Vec<String> = (0..40_000)
            .map(|i| format!("node-{i}-{}", i * 7919))
            .collect();
        let plain = serde_json::to_vec(&value).unwrap();
        assert!(plain.len() > 4 * (64 << 10));
        let answer = answer_of(&value).unwrap();
        assert_eq!(answer.json_len, plain.len());
        assert!(answer.gzip.len() < plain.len() / 2);
        let mut sent = Vec::new();
        let mut chunks = 0;
        let mut body = std::pin::pin!(inflated(answer.gzip.clone()));
        while let Some(chunk) = body.next().await {
            sent.extend_from_slice(&chunk.unwrap());
            chunks += 1;
        }
        assert_eq!(sent, plain);
        assert!(chunks > 4, "{chunks} chunks");
        // Damaged bytes end the body with an error, not with a short answer passed off as whole.
        let mut damaged = answer.gzip.to_vec();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0xff;
        let results: Vec<_> = inflated(damaged.into()).collect().await;
        assert!(results.iter().any(|r| r.is_err()));
    }

    fn summary(id: &str, label_bytes: usize) -> NodeSummary {
        serde_json::from_value(json!({"id": id, "label": "x".repeat(label_bytes)})).unwrap()
    }

    /// A node as a render keeps it: serialised.
    fn node(id: &str, label_bytes: usize) -> Box<RawValue> {
        serde_json::value::to_raw_value(&summary(id, label_bytes)).unwrap()
    }

    /// The nodes as a client reads them.
    fn read(nodes: &Summaries) -> BTreeMap<String, NodeSummary> {
        nodes
            .iter()
            .map(|(id, n)| (id.clone(), serde_json::from_str(n.get()).unwrap()))
            .collect()
    }

    /// Applies frames as a client does: a reset empties the map, then adds, updates, removals.
    fn apply(map: &mut BTreeMap<String, NodeSummary>, frame: &str) {
        let diff: Diff = serde_json::from_str(frame).unwrap();
        if diff.reset {
            map.clear();
        }
        for n in diff
            .add
            .into_iter()
            .flatten()
            .chain(diff.update.into_iter().flatten())
        {
            map.insert(n.id.clone(), n);
        }
        for id in diff.remove.into_iter().flatten() {
            map.remove(&id);
        }
    }

    #[test]
    fn a_large_diff_goes_out_in_frames_that_apply_to_the_same_map() {
        let before: BTreeMap<_, _> = (0..300)
            .map(|i| (format!("n{i:03}"), node(&format!("n{i:03}"), 100)))
            .collect();
        let mut after = before.clone();
        for i in 0..100 {
            after.remove(&format!("n{i:03}"));
        }
        for i in 100..200 {
            after.insert(format!("n{i:03}"), node(&format!("n{i:03}"), 120));
        }
        for i in 300..400 {
            after.insert(format!("n{i:03}"), node(&format!("n{i:03}"), 100));
        }
        let budget = 2_000;
        for (previous, current, reset) in
            [(&BTreeMap::new(), &before, true), (&before, &after, false)]
        {
            let diff = diff(previous, current, reset);
            let texts = frames(&diff, budget).unwrap();
            assert!(texts.len() > 10, "{}", texts.len());
            let mut map = if reset {
                BTreeMap::new()
            } else {
                read(previous)
            };
            for (i, text) in texts.iter().enumerate() {
                assert!(text.len() <= budget + 100, "{}", text.len());
                let frame: Diff = serde_json::from_str(text).unwrap();
                assert_eq!(frame.reset, reset && i == 0);
                assert_eq!(frame.more, i + 1 < texts.len());
                assert!(frame.add.is_some() || frame.update.is_some() || frame.remove.is_some());
                apply(&mut map, text);
            }
            assert_eq!(map, read(current));
        }
    }

    #[test]
    fn frames_keep_the_diff_shape_and_send_one_frame_when_nothing_changed() {
        let map = BTreeMap::from([("a".to_owned(), node("a", 10))]);
        let quiet = frames(&diff(&map, &map, false), FRAME_BYTES).unwrap();
        assert_eq!(quiet.len(), 1);
        let frame: Value = serde_json::from_str(&quiet[0]).unwrap();
        assert_eq!(frame, json!({"add": null, "update": null, "remove": null}));
        // A node larger than the budget goes alone, whole.
        let big = BTreeMap::from([("b".to_owned(), node("b", 5_000))]);
        let texts = frames(&diff(&map, &big, true), 1_000).unwrap();
        assert_eq!(texts.len(), 2);
        let whole: Diff = serde_json::from_str(&texts[0]).unwrap();
        assert_eq!(whole.add.unwrap()[0], summary("b", 5_000));
        assert!(whole.reset);
        let Diff { remove, add, .. } = serde_json::from_str(&texts[1]).unwrap();
        assert_eq!((add, remove), (None, Some(vec!["a".to_owned()])));
        // The same bytes as the one-frame encoding when it fits.
        let one = Diff {
            add: Some(vec![summary("b", 5_000)]),
            update: None,
            remove: Some(vec!["a".to_owned()]),
            reset: false,
            more: false,
        };
        assert_eq!(
            frames(&diff(&map, &big, false), usize::MAX).unwrap(),
            vec![serde_json::to_string(&one).unwrap()]
        );
        // A node whose summary changed is an update.
        let relabelled = BTreeMap::from([("a".to_owned(), node("a", 11))]);
        let texts = frames(&diff(&map, &relabelled, false), FRAME_BYTES).unwrap();
        let Diff {
            add,
            update,
            remove,
            ..
        } = serde_json::from_str(&texts[0]).unwrap();
        assert_eq!(
            (add, update, remove),
            (None, Some(vec![summary("a", 11)]), None)
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_go_duration(""), None);
    }
}
