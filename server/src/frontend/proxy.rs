//! The edge's proxy (split mode): after `auth::authenticate` has decided who a request is, send it
//! to the role that serves it and hand back the answer.
//!
//! - **Where** ([`destination`]): accounts, orgs, invites, tokens and admin → users; instances
//!   and instance admin → provisioning; Scope's probe paths and `/api/app/{instance}/…` → the
//!   collector shard holding the instance (as `authenticate` found it: [`Placed`]); every other
//!   path → ui. An API path nothing serves is answered 404 here.
//! - **How**: one pooled keep-alive HTTP/1 client (hyper-util); answer bodies and request bodies
//!   stream through (a request body is cut at the instance's report limit, or the edge's body
//!   limit), except a request body declared at most 64 KiB long, which is read before it is sent;
//!   identity travels as the signed headers of `identity::internal` over the exact method and path
//!   forwarded, plus `X-Scope-OrgID` on the collector's routes (design.md §3). The collector is
//!   never sent a credential: `Authorization` and `Cookie` stay at the edge.
//! - **Websockets** are proxied message by message, each direction awaiting the other side's write
//!   before reading on (backpressure); when the edge drains for a shutdown it closes them with 1001
//!   so clients reconnect to another replica.
//! - **Failures** answer in the usual JSON error shape naming the role: 503 when no connection
//!   could be made (retried first, for idempotent requests without a body only), 504 when the role
//!   did not answer within the upstream timeout, 502 when it answered something unusable.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use shared::ErrorCode;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use url::Url;

use super::auth::{Placed, is_probe_path};
use crate::clock::Clock;
use crate::error::{Error, Result, UpstreamFailure};
use crate::identity::internal::{Caller, Envelope, InternalSecret, LIFETIME_MS};
use crate::identity::{ClientIp, Grant, Identity};
use crate::ops::{Drain, GOING_AWAY};
use crate::telemetry::{self, UpstreamWait};

/// Request bodies declared this small or smaller are read whole before they are forwarded; larger
/// ones (and those of unknown length) stream through.
const BUFFERED_BODY_BYTES: u64 = 64 << 10;

/// Where each role is reached. A URL may be a Kubernetes Service (several replicas behind it).
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub users: Url,
    pub provisioning: Url,
    pub ui: Url,
    /// The monitoring role, when it is deployed.
    pub monitoring: Option<Url>,
    /// Collector shards by name, as provisioning places instances on them.
    pub shards: HashMap<String, Url>,
}

/// The role that serves a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Users,
    Provisioning,
    /// The collector shard holding the request's instance.
    Collector,
    Ui,
    Monitoring,
}

/// `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Which role serves `path` (design.md §3); `None` for an API path that nothing serves.
pub fn destination(path: &str) -> Option<Destination> {
    if !under(path, "/api") {
        return Some(Destination::Ui);
    }
    if is_probe_path(path) || under(path, "/api/app") {
        return Some(Destination::Collector);
    }
    if under(path, "/api/instances") || under(path, "/api/admin/instances") {
        return Some(Destination::Provisioning);
    }
    if under(path, "/api/admin/system") {
        return Some(Destination::Monitoring);
    }
    let users = [
        "/api/users",
        "/api/orgs",
        "/api/invites",
        "/api/tokens",
        "/api/admin",
        "/api/version",
        "/api/client-errors",
    ];
    users
        .iter()
        .any(|prefix| under(path, prefix))
        .then_some(Destination::Users)
}

/// Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection and are never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

/// The HTTP client of the edge: keep-alive connections pooled per upstream.
type Pool = Client<HttpConnector, Body>;

#[derive(Clone)]
pub struct Proxy(Arc<Inner>);

struct Inner {
    users: Upstream,
    provisioning: Upstream,
    ui: Upstream,
    monitoring: Option<Upstream>,
    shards: HashMap<String, Upstream>,
    pool: Pool,
    secret: InternalSecret,
    clock: Clock,
    /// Longest wait for an upstream's answer (its headers; bodies then stream).
    timeout: Duration,
    /// Largest request body forwarded, except reports (the instance's own limit).
    max_body_bytes: u64,
    drain: Drain,
}

/// Connection attempts for an idempotent request whose upstream refused the connection: a
/// Service's next connection may reach a replica that is up.
const CONNECT_ATTEMPTS: u32 = 3;
const CONNECT_RETRY_DELAY: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A role behind the edge, prepared once: what errors and metrics call it and where it is.
struct Upstream {
    /// As errors name it: "users", "collector (shard shard-a)".
    role: String,
    /// The request metrics' route label: "proxy users", "proxy collector".
    label: String,
    base: Url,
    /// The base URL as a URI, when it has no path of its own (then a request's URI is built from
    /// it and the request's path without any parsing).
    root: Option<axum::http::uri::Parts>,
}

impl Upstream {
    fn new(role: String, kind: &str, base: Url) -> Self {
        let root = (base.path() == "/")
            .then(|| base.as_str().trim_end_matches('/').parse::<Uri>().ok())
            .flatten()
            .map(Uri::into_parts);
        Upstream {
            role,
            label: format!("proxy {kind}"),
            base,
            root,
        }
    }

    /// Where a request for `uri` goes.
    fn uri_for(&self, uri: &Uri) -> std::result::Result<Uri, String> {
        let path_and_query = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| axum::http::uri::PathAndQuery::from_static("/"));
        match &self.root {
            Some(root) => {
                let mut parts = axum::http::uri::Parts::default();
                parts.scheme.clone_from(&root.scheme);
                parts.authority.clone_from(&root.authority);
                parts.path_and_query = Some(path_and_query);
                Uri::from_parts(parts).map_err(|e| e.to_string())
            }
            None => join(&self.base, path_and_query.as_str())
                .parse()
                .map_err(|e: axum::http::uri::InvalidUri| e.to_string()),
        }
    }
}

/// One upstream chosen for a request.
struct Target<'a> {
    upstream: &'a Upstream,
    /// The instance, for the collector's tenant header.
    instance: Option<String>,
    body_limit: u64,
}

impl Proxy {
    pub fn new(
        upstreams: Upstreams,
        secret: InternalSecret,
        clock: Clock,
        timeout: Duration,
        max_body_bytes: usize,
        drain: Drain,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let pool = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let shards = upstreams
            .shards
            .into_iter()
            .map(|(name, url)| {
                let role = format!("collector (shard {name})");
                (name, Upstream::new(role, "collector", url))
            })
            .collect();
        Proxy(Arc::new(Inner {
            users: Upstream::new("users".into(), "users", upstreams.users),
            provisioning: Upstream::new(
                "provisioning".into(),
                "provisioning",
                upstreams.provisioning,
            ),
            ui: Upstream::new("ui".into(), "ui", upstreams.ui),
            monitoring: upstreams
                .monitoring
                .map(|url| Upstream::new("monitoring".into(), "monitoring", url)),
            shards,
            pool,
            secret,
            clock,
            timeout,
            max_body_bytes: max_body_bytes as u64,
            drain,
        }))
    }

    fn target(&self, req: &Request) -> Result<Target<'_>> {
        let inner = &self.0;
        let simple = |upstream| Target {
            upstream,
            instance: None,
            body_limit: inner.max_body_bytes,
        };
        match destination(req.uri().path()) {
            None => Err(Error::not_found("No API route matches this path.")),
            Some(Destination::Users) => Ok(simple(&inner.users)),
            Some(Destination::Provisioning) => Ok(simple(&inner.provisioning)),
            Some(Destination::Ui) => Ok(simple(&inner.ui)),
            Some(Destination::Monitoring) => match &inner.monitoring {
                Some(upstream) => Ok(simple(upstream)),
                None => Err(Error::client(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "The monitoring service is not deployed with this edge (--monitoring-url).",
                )),
            },
            Some(Destination::Collector) => {
                // `authenticate` granted this request an instance and said where it is.
                let placed = req
                    .extensions()
                    .get::<Placed>()
                    .ok_or_else(crate::identity::unauthorized)?;
                let shard = placed.shard.as_deref().ok_or_else(|| {
                    Error::client(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ErrorCode::Unavailable,
                        "The instance is being placed; retry shortly.",
                    )
                })?;
                let upstream = inner.shards.get(shard).ok_or_else(|| Error::Upstream {
                    role: format!("collector (shard {shard})"),
                    failure: UpstreamFailure::Unreachable,
                    detail: format!("this edge has no --collector-shard {shard}=URL"),
                })?;
                Ok(Target {
                    upstream,
                    instance: Some(placed.instance.clone()),
                    body_limit: placed
                        .max_report_bytes
                        .map_or(inner.max_body_bytes, |b| b.max(inner.max_body_bytes)),
                })
            }
        }
    }

    /// Turns the client's headers into the upstream's: less hop-by-hop ones (and credentials, for
    /// the collector), plus the signed identity (taken out of `extensions`: the request is not
    /// handled here after this) and the tenant.
    fn prepare_headers(
        &self,
        headers: &mut HeaderMap,
        extensions: &mut axum::http::Extensions,
        method: &Method,
        path_and_query: &str,
        target: &Target<'_>,
    ) {
        remove_hop_by_hop(headers);
        headers.remove(header::HOST);
        if let Some(instance) = &target.instance {
            headers.remove(header::AUTHORIZATION);
            headers.remove(header::COOKIE);
            if let Ok(value) = HeaderValue::from_str(instance) {
                headers.insert(HeaderName::from_static("x-scope-orgid"), value);
            }
        }
        let client_ip = extensions.remove::<ClientIp>().unwrap_or_default();
        if let Some(Ok(value)) = client_ip.0.as_deref().map(HeaderValue::from_str) {
            headers.insert(HeaderName::from_static("x-forwarded-for"), value);
        }
        let envelope = Envelope {
            caller: Caller::Edge,
            identity: extensions.remove::<Identity>(),
            grant: extensions.remove::<Grant>(),
            client_ip,
            expires_at: self.0.clock.now() + LIFETIME_MS,
        };
        for (name, value) in self.0.secret.sign(&envelope, method, path_and_query) {
            headers.insert(name, value);
        }
    }

    async fn forward(&self, req: Request) -> Result<Response> {
        let target = self.target(&req)?;
        let mut response = if is_websocket(req.headers()) {
            self.websocket(req, &target).await?
        } else {
            self.http(req, &target).await?
        };
        telemetry::label_route(&mut response, target.upstream.label.clone());
        Ok(response)
    }

    async fn http(&self, req: Request, target: &Target<'_>) -> Result<Response> {
        let (mut parts, body) = req.into_parts();
        let uri = target
            .upstream
            .uri_for(&parts.uri)
            .map_err(|e| failed(target, UpstreamFailure::BadAnswer, format!("bad URL: {e}")))?;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > target.body_limit) {
            return Err(too_large(target.body_limit));
        }
        let mut headers = std::mem::take(&mut parts.headers);
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        self.prepare_headers(
            &mut headers,
            &mut parts.extensions,
            &parts.method,
            path,
            target,
        );
        let method = parts.method;
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        let retryable = idempotent && axum::body::HttpBody::is_end_stream(&body);
        // Kept for a retry only when one is possible.
        let again = retryable.then(|| (headers.clone(), uri.clone()));
        let body = match declared {
            // A small body (a probe's report, a form) is read here, on the client connection's
            // own task, as nginx buffers bodies: streamed, each of its chunks would cross from this
            // task to the upstream connection's and wake it.
            Some(len) if len <= BUFFERED_BODY_BYTES => {
                // The server holds the client to its declared length; a client that sends it
                // slower than the upstream timeout allows is cut off as an upstream would.
                let reading = axum::body::to_bytes(body, len as usize);
                let read = tokio::time::timeout(self.0.timeout, reading)
                    .await
                    .map_err(|_| {
                        Error::client(
                            StatusCode::REQUEST_TIMEOUT,
                            ErrorCode::BadRequest,
                            "The request body did not arrive in time.",
                        )
                    })?
                    .map_err(|e| {
                        Error::bad_request(format!("The request body could not be read: {e}"))
                    })?;
                Body::from(read)
            }
            _ => Body::new(Limited::new(
                body,
                usize::try_from(target.body_limit).unwrap_or(usize::MAX),
            )),
        };
        let mut upstream = axum::http::Request::new(body);
        *upstream.method_mut() = method.clone();
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = headers;
        let mut attempt = 1;
        // The role's time, and a retry's wait for it, is not the edge's (`edge_own_seconds`).
        let asked = Instant::now();
        loop {
            let sent = tokio::time::timeout(self.0.timeout, self.0.pool.request(upstream)).await;
            let error = match sent {
                Err(_) => {
                    return Err(failed(
                        target,
                        UpstreamFailure::Timeout,
                        format!("no answer within {:?}", self.0.timeout),
                    ));
                }
                Ok(Ok(response)) => {
                    let (mut parts, incoming) = response.into_parts();
                    remove_hop_by_hop(&mut parts.headers);
                    parts.extensions.insert(UpstreamWait(asked.elapsed()));
                    return Ok(Response::from_parts(parts, Body::new(incoming)));
                }
                Ok(Err(e)) => e,
            };
            if caused_by::<LengthLimitError>(&error) {
                return Err(too_large(target.body_limit));
            }
            if !error.is_connect() {
                return Err(failed(target, UpstreamFailure::BadAnswer, chain(&error)));
            }
            let Some((headers, uri)) = again.as_ref().filter(|_| attempt < CONNECT_ATTEMPTS) else {
                return Err(failed(target, UpstreamFailure::Unreachable, chain(&error)));
            };
            attempt += 1;
            tokio::time::sleep(CONNECT_RETRY_DELAY).await;
            upstream = axum::http::Request::new(Body::empty());
            *upstream.method_mut() = method.clone();
            *upstream.uri_mut() = uri.clone();
            *upstream.headers_mut() = headers.clone();
        }
    }

    async fn websocket(&self, req: Request, target: &Target<'_>) -> Result<Response> {
        let (mut parts, _) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let mut headers = parts.headers.clone();
        self.prepare_headers(
            &mut headers,
            &mut parts.extensions,
            &parts.method,
            &path,
            target,
        );
        // The handshake's own headers are made afresh for the upstream connection.
        for name in [
            "sec-websocket-key",
            "sec-websocket-version",
            "sec-websocket-extensions",
            "sec-websocket-protocol",
        ] {
            headers.remove(name);
        }
        // Browsers send the map nothing but pings (and, later, a terminal's keystrokes); the
        // shard sends a view at a time.
        let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &())
            .await
            .map_err(|rejection| Error::bad_request(rejection.body_text()))?
            .max_message_size(MAX_CLIENT_MESSAGE)
            .max_frame_size(MAX_CLIENT_MESSAGE);
        let base = &target.upstream.base;
        let mut url = join(base, &path);
        url.replace_range(..url.find("://").unwrap_or(0), ws_scheme(base));
        let mut request = url
            .into_client_request()
            .map_err(|e| failed(target, UpstreamFailure::BadAnswer, e))?;
        for (name, value) in &headers {
            request.headers_mut().append(name, value.clone());
        }
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_SHARD_MESSAGE))
            .max_frame_size(Some(MAX_SHARD_MESSAGE));
        let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let upstream = match tokio::time::timeout(self.0.timeout, connect).await {
            Err(_) => {
                return Err(failed(
                    target,
                    UpstreamFailure::Timeout,
                    "no websocket handshake in time",
                ));
            }
            // The role refused the websocket (401, 403, 404…): its answer is the client's.
            Ok(Err(tungstenite::Error::Http(refused))) => {
                let (parts, body) = refused.into_parts();
                let mut response = Response::new(Body::from(body.unwrap_or_default()));
                *response.status_mut() = parts.status;
                for name in [
                    header::CONTENT_TYPE,
                    header::RETRY_AFTER,
                    header::WWW_AUTHENTICATE,
                ] {
                    if let Some(value) = parts.headers.get(&name) {
                        response.headers_mut().insert(name, value.clone());
                    }
                }
                return Ok(response);
            }
            Ok(Err(tungstenite::Error::Io(e))) => {
                return Err(failed(target, UpstreamFailure::Unreachable, e));
            }
            Ok(Err(e)) => return Err(failed(target, UpstreamFailure::BadAnswer, e)),
            Ok(Ok((upstream, _))) => upstream,
        };
        let drain = self.0.drain.clone();
        Ok(upgrade.on_upgrade(move |client| relay(client, upstream, drain)))
    }
}

/// The largest websocket message the edge takes from a browser.
const MAX_CLIENT_MESSAGE: usize = 1 << 20;
/// The largest websocket message the edge takes from a shard: a whole view of a large instance
/// (100,000 nodes) is about this much JSON.
const MAX_SHARD_MESSAGE: usize = 32 << 20;

/// The edge's fallback handler: everything not answered by the edge itself.
pub async fn forward(State(proxy): State<Proxy>, req: Request) -> Response {
    match proxy.forward(req).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

fn join(base: &Url, path_and_query: &str) -> String {
    format!("{}{}", base.as_str().trim_end_matches('/'), path_and_query)
}

fn ws_scheme(base: &Url) -> &'static str {
    if base.scheme() == "https" {
        "wss"
    } else {
        "ws"
    }
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn failed(target: &Target<'_>, failure: UpstreamFailure, detail: impl std::fmt::Display) -> Error {
    Error::Upstream {
        role: target.upstream.role.clone(),
        failure,
        detail: format!("{}: {detail}", target.upstream.base),
    }
}

fn too_large(limit: u64) -> Error {
    Error::client(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!("The request body is larger than {limit} bytes."),
    )
}

/// `error` or one of its causes is an `E`.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<E>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// An error with its causes, for the log.
fn chain(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

type UpstreamSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Copies messages both ways until either side closes, or the edge drains (then the client is
/// told 1001 and reconnects elsewhere).
async fn relay(client: WebSocket, upstream: UpstreamSocket, drain: Drain) {
    let (mut to_client, mut from_client) = client.split();
    let (mut to_upstream, mut from_upstream) = upstream.split();
    let closing = drain.streams_closing();
    tokio::pin!(closing);
    loop {
        tokio::select! {
            message = from_client.next() => {
                let Some(Ok(message)) = message else { break };
                let close = matches!(message, ws::Message::Close(_));
                if to_upstream.send(to_upstream_message(message)).await.is_err() || close {
                    break;
                }
            }
            message = from_upstream.next() => {
                let Some(Ok(message)) = message else { break };
                let Some(message) = to_client_message(message) else { continue };
                let close = matches!(message, ws::Message::Close(_));
                if to_client.send(message).await.is_err() || close {
                    break;
                }
            }
            () = &mut closing => {
                let _ = to_client
                    .send(ws::Message::Close(Some(ws::CloseFrame {
                        code: GOING_AWAY,
                        reason: "Scopehub is restarting; reconnect".into(),
                    })))
                    .await;
                break;
            }
        }
    }
    let _ = to_upstream.close().await;
    let _ = to_client.close().await;
}

fn to_upstream_message(message: ws::Message) -> tungstenite::Message {
    use tungstenite::protocol::CloseFrame;
    match message {
        ws::Message::Text(text) => tungstenite::Message::text(text.as_str()),
        ws::Message::Binary(bytes) => tungstenite::Message::Binary(bytes),
        ws::Message::Ping(bytes) => tungstenite::Message::Ping(bytes),
        ws::Message::Pong(bytes) => tungstenite::Message::Pong(bytes),
        ws::Message::Close(frame) => tungstenite::Message::Close(frame.map(|f| CloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().to_owned().into(),
        })),
    }
}

fn to_client_message(message: tungstenite::Message) -> Option<ws::Message> {
    Some(match message {
        tungstenite::Message::Text(text) => ws::Message::Text(text.as_str().into()),
        tungstenite::Message::Binary(bytes) => ws::Message::Binary(bytes),
        tungstenite::Message::Ping(bytes) => ws::Message::Ping(bytes),
        tungstenite::Message::Pong(bytes) => ws::Message::Pong(bytes),
        tungstenite::Message::Close(frame) => ws::Message::Close(frame.map(|f| ws::CloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
        // Raw frames are never read from a stream.
        tungstenite::Message::Frame(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    /// A proxy whose users role is at `users` (the other roles nowhere), answering within
    /// `timeout`, forwarding bodies of at most 1 KiB.
    fn proxy_to(users: &str, timeout: Duration) -> axum::Router {
        let nowhere: Url = "http://127.0.0.1:9/".parse().unwrap();
        let upstreams = Upstreams {
            users: users.parse().unwrap(),
            provisioning: nowhere.clone(),
            ui: nowhere,
            monitoring: None,
            shards: HashMap::new(),
        };
        let proxy = Proxy::new(
            upstreams,
            "0123456789abcdef0123456789abcdef".parse().unwrap(),
            Clock::system(),
            timeout,
            1024,
            Drain::default(),
        );
        axum::Router::new().fallback(forward).with_state(proxy)
    }

    async fn answer(router: axum::Router, request: axum::http::Request<Body>) -> (u16, String) {
        let response = router.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn get(path: &str) -> axum::http::Request<Body> {
        axum::http::Request::get(path).body(Body::empty()).unwrap()
    }

    /// A "role" that accepts connections and does `serve` with each.
    async fn fake_role(
        serve: impl Fn(tokio::net::TcpStream) -> futures_util::future::BoxFuture<'static, ()>
        + Send
        + 'static,
    ) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream));
            }
        });
        url
    }

    /// A role that answers 200 with the body it was sent.
    async fn echo_role() -> String {
        fake_role(|stream| {
            Box::pin(async move {
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let body = http_body_util::BodyExt::collect(req.into_body())
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Body::from(body)))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            })
        })
        .await
    }

    /// A metric's value in `scopehub`'s exposition (0 when absent).
    fn metric(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    #[tokio::test]
    async fn the_edge_counts_its_own_time_without_the_roles() {
        let slow = fake_role(|stream| {
            Box::pin(async move {
                let service = hyper::service::service_fn(|_| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Body::from("late")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            })
        })
        .await;
        let metrics = telemetry::Metrics::new();
        let router = proxy_to(&slow, Duration::from_secs(5)).layer(
            axum::middleware::from_fn_with_state(metrics.clone(), telemetry::track_requests),
        );
        let (status, body) = answer(router, get("/api/users/me")).await;
        assert_eq!((status, body.as_str()), (200, "late"));
        let text = metrics.encode();
        let total = metric(
            &text,
            "scopehub_http_request_duration_seconds_sum{method=\"GET\",route=\"proxy users\",status=\"200\"}",
        );
        assert!(total >= 0.3, "{text}");
        assert_eq!(
            metric(&text, "scopehub_edge_own_seconds_count"),
            1.0,
            "{text}"
        );
        assert!(
            metric(&text, "scopehub_edge_own_seconds_sum") < 0.1,
            "{text}"
        );

        // An answer the edge made itself (the role is down) is not a proxied one.
        let down = proxy_to("http://127.0.0.1:9/", Duration::from_secs(5)).layer(
            axum::middleware::from_fn_with_state(metrics.clone(), telemetry::track_requests),
        );
        assert_eq!(answer(down, get("/api/users/me")).await.0, 503);
        let text = metrics.encode();
        assert_eq!(
            metric(&text, "scopehub_edge_own_seconds_count"),
            1.0,
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_role_that_is_down_is_503_one_that_hangs_504_one_that_babbles_502() {
        let (status, body) = answer(
            proxy_to("http://127.0.0.1:9/", Duration::from_secs(5)),
            get("/api/users/me"),
        )
        .await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("The users service is unavailable"), "{body}");

        let hangs = fake_role(|stream| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                drop(stream);
            })
        })
        .await;
        let (status, body) = answer(
            proxy_to(&hangs, Duration::from_millis(200)),
            get("/api/users/me"),
        )
        .await;
        assert_eq!(status, 504, "{body}");
        assert!(body.contains("did not answer in time"), "{body}");

        let babbles = fake_role(|mut stream| {
            Box::pin(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(b"this is not HTTP\r\n\r\n").await;
            })
        })
        .await;
        let (status, body) = answer(
            proxy_to(&babbles, Duration::from_secs(5)),
            get("/api/users/me"),
        )
        .await;
        assert_eq!(status, 502, "{body}");
        assert!(body.contains("The users service failed"), "{body}");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_413_whether_declared_or_streamed() {
        let echo = echo_role().await;
        let router = proxy_to(&echo, Duration::from_secs(5));
        let small = axum::http::Request::post("/api/users/login")
            .body(Body::from(vec![b'x'; 1000]))
            .unwrap();
        assert_eq!(answer(router.clone(), small).await.0, 200);
        let declared = axum::http::Request::post("/api/users/login")
            .header(header::CONTENT_LENGTH, "5000")
            .body(Body::from(vec![b'x'; 5000]))
            .unwrap();
        assert_eq!(answer(router.clone(), declared).await.0, 413);
        let chunks = futures_util::stream::iter(
            (0..10).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; 500]))),
        );
        let streamed = axum::http::Request::post("/api/users/login")
            .body(Body::from_stream(chunks))
            .unwrap();
        let (status, body) = answer(router, streamed).await;
        assert_eq!(status, 413, "{body}");
    }

    #[tokio::test]
    async fn bodies_read_whole_or_streamed_arrive_as_sent_and_a_stalled_one_is_cut_off() {
        let echo = echo_role().await;
        let router = proxy_to(&echo, Duration::from_millis(300));
        let sent: String = (0..1000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        // Declared small: read whole at the edge, then forwarded.
        let declared = axum::http::Request::post("/api/users/login")
            .header(header::CONTENT_LENGTH, sent.len())
            .body(Body::from(sent.clone()))
            .unwrap();
        assert_eq!(answer(router.clone(), declared).await, (200, sent.clone()));
        // Of unknown length: streamed chunk by chunk.
        let chunks = futures_util::stream::iter(
            sent.as_bytes()
                .chunks(300)
                .map(|c| Ok::<_, std::io::Error>(axum::body::Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        let streamed = axum::http::Request::post("/api/users/login")
            .body(Body::from_stream(chunks))
            .unwrap();
        assert_eq!(answer(router.clone(), streamed).await, (200, sent.clone()));
        // Declared, then never finished: cut off after the upstream timeout, not held forever.
        let first = futures_util::stream::iter([Ok::<_, std::io::Error>(
            axum::body::Bytes::from_static(b"abc"),
        )]);
        let stalled = axum::http::Request::post("/api/users/login")
            .header(header::CONTENT_LENGTH, "1000")
            .body(Body::from_stream(
                first.chain(futures_util::stream::pending()),
            ))
            .unwrap();
        let (status, body) = tokio::time::timeout(Duration::from_secs(5), answer(router, stalled))
            .await
            .expect("answered");
        assert_eq!(status, 408, "{body}");
    }

    #[test]
    fn every_path_goes_to_the_role_that_serves_it() {
        use Destination::*;
        for (path, expected) in [
            ("/", Some(Ui)),
            ("/login", Some(Ui)),
            ("/assets/app-1234.wasm", Some(Ui)),
            ("/apiary", Some(Ui)),
            ("/api", Some(Collector)),
            ("/api/report", Some(Collector)),
            ("/api/control/ws", Some(Collector)),
            ("/api/pipe/abc/probe", Some(Collector)),
            ("/api/app/i1/api/topology/containers", Some(Collector)),
            ("/api/app/i1/api/topology/containers/ws", Some(Collector)),
            ("/api/users/login", Some(Users)),
            ("/api/orgs/o1/members", Some(Users)),
            ("/api/invites/accept", Some(Users)),
            ("/api/tokens", Some(Users)),
            ("/api/version", Some(Users)),
            ("/api/client-errors", Some(Users)),
            ("/api/admin/waitlist", Some(Users)),
            ("/api/admin/instances", Some(Provisioning)),
            ("/api/admin/instances/i1/suspend", Some(Provisioning)),
            ("/api/admin/system", Some(Monitoring)),
            ("/api/admin/systems", Some(Users)),
            ("/api/instances", Some(Provisioning)),
            ("/api/instances/i1/tokens", Some(Provisioning)),
            ("/api/instancesx", None),
            ("/api/nothing", None),
            ("/api/internal/users/session", None),
        ] {
            assert_eq!(destination(path), expected, "{path}");
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_not_forwarded() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, x-private".parse().unwrap());
        headers.insert("x-private", "1".parse().unwrap());
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        headers.insert(header::ACCEPT, "*/*".parse().unwrap());
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::ACCEPT));
    }
}
