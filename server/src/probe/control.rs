//! The probe's end of Scope's control channel: a websocket to the app's `/api/control/ws` on
//! which the probe is the JSON-RPC server (`../shared/scope-protocol.md`, "Controls RPC"). Each
//! call is two JSON text frames (`{"Request":{"ServiceMethod":"control.Handle","Seq":N}}`, then
//! `{"Value":{"NodeID","Control","ControlArgs"}}`), answered by two (`{"Response":{…,"Seq":N,
//! "Error":""}}`, then `{"Value":{"error"|"removedNode"…}}`). Container controls are carried out
//! on the engine (`docker.rs`); after one, the probe publishes at once so the map shows it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::docker::{ControlDone, Docker};

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
}

/// Where the control channel is, and with which credentials.
pub struct Channel {
    pub url: url::Url,
    pub token: String,
    pub probe_id: String,
}

/// Keeps the control channel open until the process ends, reconnecting with backoff; `changed` is
/// notified after each control that changed something, for an immediate report.
pub async fn run(channel: Channel, docker: Arc<Docker>, changed: Arc<Notify>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = std::time::Instant::now();
        match serve_once(&channel, &docker, &changed).await {
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

fn websocket_url(base: &url::Url) -> anyhow::Result<url::Url> {
    let mut url = base.join("api/control/ws")?;
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(scheme)
        .map_err(|()| anyhow::anyhow!("cannot make a websocket URL of {base}"))?;
    Ok(url)
}

async fn serve_once(channel: &Channel, docker: &Docker, changed: &Notify) -> anyhow::Result<()> {
    let mut request = websocket_url(&channel.url)?
        .as_str()
        .into_client_request()?;
    let headers = request.headers_mut();
    headers.insert(
        "authorization",
        format!("Scope-Probe token={}", channel.token).parse()?,
    );
    headers.insert("x-scope-probe-id", channel.probe_id.parse()?);
    headers.insert(
        "user-agent",
        concat!("Scopehub_Probe/", env!("CARGO_PKG_VERSION")).parse()?,
    );
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
                        running.push(handle(h, value, docker, changed));
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
    docker: &Docker,
    changed: &Notify,
) -> (u64, String, String, Value) {
    if header.service_method != "control.Handle" {
        let error = format!("rpc: can't find method {}", header.service_method);
        return (header.seq, header.service_method, error, Value::Null);
    }
    let reply = match serde_json::from_value::<ControlRequest>(value) {
        Err(e) => json!({"error": format!("bad control request: {e}")}),
        Ok(request) => {
            let reply = carry_out(&request, docker).await;
            if reply.get("error").is_none() {
                changed.notify_one();
            }
            reply
        }
    };
    (header.seq, header.service_method, String::new(), reply)
}

async fn carry_out(request: &ControlRequest, docker: &Docker) -> Value {
    let Some(container) = request.node_id.strip_suffix(";<container>") else {
        return json!({"error": format!("{} is not a container this probe controls", request.node_id)});
    };
    tracing::info!(container, control = %request.control, "carrying out a control");
    match docker.control(container, &request.control).await {
        Ok(ControlDone::Done) => json!({}),
        Ok(ControlDone::Removed) => json!({"removedNode": request.node_id}),
        Err(error) => json!({"error": format!("{error:#}")}),
    }
}
