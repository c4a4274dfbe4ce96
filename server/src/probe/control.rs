//! The probe's end of Scope's control channel: a websocket to the app's `/api/control/ws` on
//! which the probe is the JSON-RPC server (`../shared/scope-protocol.md`, "Controls RPC"). Each
//! call is two JSON text frames (`{"Request":{"ServiceMethod":"control.Handle","Seq":N}}`, then
//! `{"Value":{"NodeID","Control","ControlArgs"}}`), answered by two (`{"Response":{…,"Seq":N,
//! "Error":""}}`, then `{"Value":{"error"|"removedNode"…}}`). Container controls are carried out
//! on the engine (`docker.rs`); after one, the probe publishes at once so the map shows it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::docker::{self, ControlDone, Docker};
use super::host_shell;

/// Controls carried out at once at most; more wait for the websocket's next read.
const AT_ONCE: usize = 8;
/// The largest message taken from the app.
const MAX_MESSAGE: usize = 1 << 20;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
struct RequestHeader {
    #[serde(rename = "ServiceMethod", default)]
    service_method: String,
    #[serde(rename = "Seq", default)]
    seq: u64,
}

#[derive(Debug, Default, Deserialize)]
struct Envelope {
    #[serde(rename = "Request", default)]
    request: Option<RequestHeader>,
    #[serde(rename = "Value", default)]
    value: Option<Value>,
}

/// What the probe was asked: Scope's `xfer.Request`.
#[derive(Debug, Deserialize)]
struct ControlRequest {
    #[serde(rename = "NodeID", default)]
    node_id: String,
    #[serde(rename = "Control", default)]
    control: String,
    #[serde(rename = "ControlArgs", default)]
    args: Option<HashMap<String, String>>,
}

/// Where the app is, and with which credentials; what this probe offers besides containers.
pub struct Channel {
    pub url: url::Url,
    pub token: String,
    pub probe_id: String,
    /// `--host-exec`: a shell on this host, on the node `host_id`.
    pub host_exec: bool,
    pub host_id: String,
}

impl Channel {
    /// A websocket request to `path` (under the app's URL) with the probe's credentials.
    fn websocket(
        &self,
        path: &str,
    ) -> anyhow::Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
        let mut url = self.url.join(path)?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|()| anyhow::anyhow!("cannot make a websocket URL of {}", self.url))?;
        let mut request = url.as_str().into_client_request()?;
        let headers = request.headers_mut();
        headers.insert(
            "authorization",
            format!("Scope-Probe token={}", self.token).parse()?,
        );
        headers.insert("x-scope-probe-id", self.probe_id.parse()?);
        headers.insert(
            "user-agent",
            concat!("Scopehub_Probe/", env!("CARGO_PKG_VERSION")).parse()?,
        );
        Ok(request)
    }
}

/// How an open terminal is resized.
#[derive(Clone)]
enum Resizing {
    /// It cannot be (logs, attach).
    Fixed,
    Exec(String),
    Pty(super::host_shell::Resizer),
}

/// The terminals this probe has open, by pipe id.
type Execs = Arc<Mutex<HashMap<String, Resizing>>>;

/// Terminals and log streams open at once at most.
const MAX_PIPES: usize = 16;
/// How many times (200 ms apart) a pipe's end knocks before the app knows the pipe.
const PIPE_KNOCKS: u32 = 25;

/// Keeps the control channel open until the process ends, reconnecting with backoff; `changed` is
/// notified after each control that changed something, for an immediate report.
pub async fn run(channel: Channel, docker: Arc<Docker>, changed: Arc<Notify>) {
    let channel = Arc::new(channel);
    let execs: Execs = Arc::default();
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = std::time::Instant::now();
        match serve_once(&channel, &docker, &changed, &execs).await {
            Ok(()) => tracing::info!("control channel closed by the app; reconnecting"),
            Err(error) => {
                tracing::warn!(%error, retry_in_s = backoff.as_secs(), "control channel failed")
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_secs(1);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn serve_once(
    channel: &Arc<Channel>,
    docker: &Arc<Docker>,
    changed: &Notify,
    execs: &Execs,
) -> anyhow::Result<()> {
    let request = channel.websocket("api/control/ws")?;
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let (socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), false).await?;
    tracing::info!("control channel open");
    let (mut sink, mut stream) = socket.split();
    let mut header: Option<RequestHeader> = None;
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            Some((seq, method, error, reply)) = running.next(), if !running.is_empty() => {
                let head = json!({"Request": null, "Response": {"ServiceMethod": method, "Seq": seq, "Error": error}, "Value": null});
                let body = json!({"Request": null, "Response": null, "Value": reply});
                sink.send(Message::Text(head.to_string().into())).await?;
                sink.send(Message::Text(body.to_string().into())).await?;
            }
            message = stream.next(), if running.len() < AT_ONCE => {
                let text = match message {
                    None | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(Message::Text(text))) => text,
                    // Pings are answered by tungstenite; nothing else is part of the protocol.
                    Some(Ok(_)) => continue,
                };
                let envelope: Envelope = serde_json::from_str(text.as_str())?;
                match (header.take(), envelope.request) {
                    (None, Some(h)) => header = Some(h),
                    (Some(h), None) => {
                        let value = envelope.value.unwrap_or(Value::Null);
                        running.push(handle(h, value, channel, docker, changed, execs));
                    }
                    _ => anyhow::bail!("the app broke the RPC framing"),
                }
            }
        }
    }
}

/// One call: `(seq, method, rpc error, reply value)`.
async fn handle(
    header: RequestHeader,
    value: Value,
    channel: &Arc<Channel>,
    docker: &Arc<Docker>,
    changed: &Notify,
    execs: &Execs,
) -> (u64, String, String, Value) {
    if header.service_method != "control.Handle" {
        let error = format!("rpc: can't find method {}", header.service_method);
        return (header.seq, header.service_method, error, Value::Null);
    }
    let reply = match serde_json::from_value::<ControlRequest>(value) {
        Err(e) => json!({"error": format!("bad control request: {e}")}),
        Ok(request) => {
            let reply = carry_out(&request, channel, docker, execs).await;
            if reply.get("error").is_none() && reply.get("pipe").is_none() {
                changed.notify_one();
            }
            reply
        }
    };
    (header.seq, header.service_method, String::new(), reply)
}

async fn carry_out(
    request: &ControlRequest,
    channel: &Arc<Channel>,
    docker: &Arc<Docker>,
    execs: &Execs,
) -> Value {
    let arg = |name: &str| request.args.as_ref().and_then(|a| a.get(name)).cloned();
    if request.control == docker::RESIZE_EXEC || request.control == host_shell::HOST_RESIZE {
        let resizing = arg("pipeID").and_then(|pipe| execs.lock().ok()?.get(&pipe).cloned());
        let size = arg("height")
            .and_then(|h| h.parse::<u16>().ok())
            .zip(arg("width").and_then(|w| w.parse::<u16>().ok()))
            .filter(|(h, w)| *h > 0 && *w > 0);
        let Some((height, width)) = size else {
            return json!({"error": "a resize needs pipeID, height and width"});
        };
        let resized = match resizing {
            Some(Resizing::Exec(exec)) => docker.resize_exec(&exec, height, width).await,
            Some(Resizing::Pty(pty)) => pty.resize(height, width),
            Some(Resizing::Fixed) => Ok(()),
            None => return json!({"error": "no such terminal"}),
        };
        return match resized {
            Ok(()) => json!({}),
            Err(e) => json!({"error": format!("{e:#}")}),
        };
    }
    let session = if request.control == host_shell::HOST_EXEC {
        if !channel.host_exec {
            return json!({"error": "this probe does not offer a host shell (scopehub probe --host-exec)"});
        }
        if request.node_id != channel.host_id {
            return json!({"error": format!("{} is not this probe's host", request.node_id)});
        }
        tracing::info!("opening a shell on this host");
        host_shell::open()
    } else {
        let Some(container) = request.node_id.strip_suffix(";<container>") else {
            return json!({"error": format!("{} is not a container this probe controls", request.node_id)});
        };
        tracing::info!(container, control = %request.control, "carrying out a control");
        match request.control.as_str() {
            docker::EXEC => docker.exec_shell(container).await,
            docker::ATTACH => docker.attach(container).await,
            docker::LOGS => docker.logs(container),
            _ => {
                return match docker.control(container, &request.control).await {
                    Ok(ControlDone::Done) => json!({}),
                    Ok(ControlDone::Removed) => json!({"removedNode": request.node_id}),
                    Err(error) => json!({"error": format!("{error:#}")}),
                };
            }
        }
    };
    let session = match session {
        Ok(session) => session,
        Err(error) => return json!({"error": format!("{error:#}")}),
    };
    let id = crate::secrets::random_hex(16);
    {
        let Ok(mut open) = execs.lock() else {
            return json!({"error": "the probe's terminal registry failed"});
        };
        if open.len() >= MAX_PIPES {
            return json!({"error": "too many terminals are open on this host"});
        }
        let resizing = match &session.handle {
            docker::SessionHandle::Stream => Resizing::Fixed,
            docker::SessionHandle::Exec(exec) => Resizing::Exec(exec.clone()),
            docker::SessionHandle::Pty(pty) => Resizing::Pty(pty.resizer()),
        };
        open.insert(id.clone(), resizing);
    }
    let tty = session.tty;
    let resize_control = match &session.handle {
        docker::SessionHandle::Stream => None,
        docker::SessionHandle::Exec(_) => Some(docker::RESIZE_EXEC),
        docker::SessionHandle::Pty(_) => Some(host_shell::HOST_RESIZE),
    };
    tokio::spawn(pipe(
        channel.clone(),
        docker.clone(),
        id.clone(),
        session,
        execs.clone(),
    ));
    let mut reply = json!({"pipe": id, "raw_tty": tty});
    if let Some(control) = resize_control {
        reply["resize_tty_control"] = control.into();
    }
    reply
}

/// The probe's end of pipe `id`: what the session prints goes to the app, what the user types goes
/// to the session, until either ends (the app closing it ends the session: its connection to the
/// engine is dropped).
async fn pipe(
    channel: Arc<Channel>,
    docker: Arc<Docker>,
    id: String,
    mut session: docker::Session,
    execs: Execs,
) {
    // The app learns of the pipe from this probe's reply, which may reach it after this end
    // knocks: a 404 is tried again for a few seconds before the session is given up.
    let opened = async {
        let mut tries = 0;
        loop {
            let request = channel.websocket(&format!("api/pipe/{id}/probe"))?;
            let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .max_message_size(Some(MAX_MESSAGE))
                .max_frame_size(Some(MAX_MESSAGE));
            match tokio_tungstenite::connect_async_with_config(request, Some(config), false).await {
                Ok((socket, _)) => return Ok::<_, anyhow::Error>(socket),
                Err(tokio_tungstenite::tungstenite::Error::Http(r))
                    if r.status() == 404 && tries < PIPE_KNOCKS =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    match opened.await {
        Err(error) => tracing::warn!(pipe = %id, %error, "cannot open a pipe's end"),
        Ok(mut socket) => {
            use tokio::io::AsyncWriteExt;
            loop {
                tokio::select! {
                    out = session.output.next() => match out {
                        Some(Ok(out)) => {
                            if socket.send(Message::Binary(out.into())).await.is_err() {
                                break;
                            }
                        }
                        // The command ended: the app is told by the pipe closing.
                        Some(Err(_)) | None => {
                            let _ = socket.close(None).await;
                            break;
                        }
                    },
                    typed = socket.next() => match typed {
                        Some(Ok(Message::Binary(bytes))) => {
                            if let Some(input) = session.input.as_mut()
                                && (input.write_all(&bytes).await.is_err() || input.flush().await.is_err())
                            {
                                break;
                            }
                        }
                        Some(Ok(Message::Text(text))) => {
                            if let Some(input) = session.input.as_mut()
                                && (input.write_all(text.as_bytes()).await.is_err() || input.flush().await.is_err())
                            {
                                break;
                            }
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => {}
                    },
                }
            }
        }
    }
    if let Ok(mut open) = execs.lock() {
        open.remove(&id);
    }
    // The connection closes with the session, and what the terminal left running is ended.
    let docker::Session { handle, .. } = session;
    match handle {
        docker::SessionHandle::Stream => {}
        docker::SessionHandle::Exec(exec) => {
            if let Err(error) = docker.end_exec(&exec).await {
                tracing::warn!(pipe = %id, %error, "a closed terminal's processes may still run");
            }
        }
        docker::SessionHandle::Pty(pty) => {
            let _ = tokio::task::spawn_blocking(move || pty.end()).await;
        }
    }
    tracing::info!(pipe = %id, "pipe closed");
}
