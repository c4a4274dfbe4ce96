//! Credentials → identity: the only code that decides who a request is (design.md §3).
//!
//! The `authenticate` layer runs on every request that reaches a role through the edge. It first
//! deletes every header only the edge may set (`identity::internal::RESERVED_HEADERS`), then:
//! - on Scope's probe paths, resolves the probe token through provisioning's contract and grants
//!   the probe's instance, if it accepts uploads now;
//! - on other API paths, resolves a session cookie or an `Authorization: Bearer` API token through
//!   the users contract, and enforces CSRF defence (Origin check plus the session's token) and
//!   API-token scope on state-changing requests;
//! - on `/api/app/{instance}/…`, also checks that the caller may read that instance (membership of
//!   its org, through both contracts) and grants exactly it.
//!
//! What it decides becomes the request extensions of `identity`; in split mode the same travels as
//! signed headers. Roles never resolve credentials themselves.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::future::BoxFuture;
use shared::ErrorCode;
use shared::users::{AccountStatus, Role, TokenScope};

use super::cache::{CachedDirectory, CachedInstances, Forget, IdentityCache};
use crate::collector::ReadAccess;
use crate::error::{Error, Result};
use crate::identity::internal::RESERVED_HEADERS;
use crate::identity::{ClientIp, Grant, Identity, Via, unauthorized};
use crate::provisioning::directory::{InstanceDirectory, InstanceRoute};
use crate::users::directory::{Directory, session_cookie};

pub const CSRF_HEADER: &str = "x-csrf-token";

/// Scope's probe-facing paths (design.md §3): probe tokens, never cookies or API tokens.
pub fn is_probe_path(path: &str) -> bool {
    matches!(path, "/api" | "/api/report")
        || path.starts_with("/api/control/")
        || path.starts_with("/api/pipe/")
}

/// Public endpoints that start or do not need a session.
const SESSIONLESS_PATHS: [&str; 8] = [
    "/api/users/signup",
    "/api/users/verify",
    "/api/users/verify/resend",
    "/api/users/login",
    "/api/users/login-link",
    "/api/users/login-link/consume",
    "/api/users/password/forgot",
    "/api/users/password/reset",
];

/// What the edge knows and asks: the users and provisioning contracts (through its brief cache),
/// and its origin rules.
#[derive(Clone)]
pub struct EdgeAuth {
    pub users: Arc<dyn Directory>,
    pub instances: Arc<dyn InstanceDirectory>,
    pub origins: Arc<Origins>,
    pub cache: Arc<IdentityCache>,
    /// Proxies whose `X-Forwarded-For` is believed ([`client_ip`]).
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
}

/// Where the edge found a granted instance: the collector shard holding it (if placed yet) and the
/// largest body its probes may send. For the proxy; no role reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub instance: String,
    pub shard: Option<String>,
    pub max_report_bytes: Option<u64>,
}

/// Where browsers may make state-changing requests from, and how the session cookie is named.
#[derive(Debug, Clone)]
pub struct Origins {
    /// The public URL's origin.
    pub own: String,
    /// Other origins allowed (e.g. `trunk serve` on :8080).
    pub extra: Vec<String>,
    /// `__Host-` cookies (whenever the public URL is https).
    pub secure_cookies: bool,
}

impl Origins {
    pub fn new(public_url: &url::Url, extra: Vec<String>) -> Self {
        Origins {
            own: public_url.origin().ascii_serialization(),
            extra,
            secure_cookies: public_url.scheme() == "https",
        }
    }

    pub fn allowed(&self, origin: &str) -> bool {
        origin == self.own || self.extra.iter().any(|o| o.trim_end_matches('/') == origin)
    }
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy; then the last address
/// of `X-Forwarded-For` that is not a trusted proxy (each proxy appends the address it got the
/// request from, so addresses left of the first untrusted one may be forged). All trusted: the
/// first one.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // Unparseable: nothing to its left can be believed.
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

/// The edge layer; see the module docs.
pub async fn authenticate(State(edge): State<EdgeAuth>, mut req: Request, next: Next) -> Response {
    for name in RESERVED_HEADERS {
        req.headers_mut().remove(name);
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = peer.map(|peer| client_ip(peer, req.headers(), &edge.trusted_proxies).to_string());
    req.extensions_mut().insert(ClientIp(ip));
    let path = req.uri().path().to_owned();
    // Only the API has identities; static files never touch a credential.
    if path != "/api" && !path.starts_with("/api/") {
        return next.run(req).await;
    }
    if is_probe_path(&path) {
        return match edge.probe_grant(req.headers()).await {
            Ok((grant, placed)) => {
                req.extensions_mut().insert(grant);
                req.extensions_mut().insert(placed);
                next.run(req).await
            }
            Err(e) => e.into_response(),
        };
    }

    let identity = match edge.resolve(req.headers()).await {
        Ok(identity) => identity,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = edge.check_unsafe_request(&req, identity.as_ref()) {
        return e.into_response();
    }
    let reads_an_instance = match app_instance(&path) {
        Some(instance) => match edge.reader_grant(identity.as_ref(), instance).await {
            Ok((grant, placed)) => {
                req.extensions_mut().insert(grant);
                req.extensions_mut().insert(placed);
                true
            }
            Err(e) => return e.into_response(),
        },
        None => false,
    };
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let forget = (changes_state && !reads_an_instance)
        .then(|| forget_after(&path, identity.as_ref()))
        .flatten();
    if let Some(identity) = identity {
        req.extensions_mut().insert(identity);
    }
    let response = next.run(req).await;
    // A change made through this edge (a logout, a revoked token, a suspension, a deletion…) is
    // seen by its next request at once, not after the cache's TTL.
    if let Some(forget) = forget
        && response.status().is_success()
    {
        edge.cache.forget(forget);
    }
    response
}

/// What of the edge's cache a successful change at `path` by `identity` may have made stale: the
/// answers about the user who asked and about whatever the path names (`/api/orgs/{org}/members/
/// {user}`, `/api/instances/{id}/…`: any segment may be an id); everything after a site admin's
/// change. Nothing after a sign-up, a login or a reset asked for (which anyone may make succeed,
/// and which change no kept answer: only positive answers are kept); a password reset forgets
/// everything (it ends the user's sessions, and takes a token mailed to them).
fn forget_after(path: &str, identity: Option<&Identity>) -> Option<Forget> {
    if path.starts_with("/api/admin/") || path == "/api/users/password/reset" {
        return Some(Forget::Everything);
    }
    if SESSIONLESS_PATHS.contains(&path) {
        return None;
    }
    let segments: Vec<&str> = path
        .trim_start_matches("/api/")
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    // A forgetting looks each id up in the cache's index: a path longer than any route, or with a
    // segment longer than any id, is bounded as everything (no role answers one with a success).
    if segments.len() > MAX_PATH_IDS || segments.iter().any(|s| s.len() > MAX_ID_BYTES) {
        return Some(Forget::Everything);
    }
    let ids = identity
        .map(|i| i.user.id.clone())
        .into_iter()
        .chain(segments.into_iter().map(str::to_owned))
        .collect();
    Some(Forget::Concerning(ids))
}

/// Segments of an API path taken as ids to forget at most (the longest route has five).
const MAX_PATH_IDS: usize = 8;
/// Longer segments are not ids (ours are UUIDs and short names).
const MAX_ID_BYTES: usize = 128;

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The `{instance}` of `/api/app/{instance}/…`.
fn app_instance(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/api/app/")?;
    let instance = rest.split('/').next().unwrap_or(rest);
    (!instance.is_empty()).then_some(instance)
}

impl EdgeAuth {
    /// The edge over these contracts, remembering their answers for `cache_ttl`
    /// ([`IdentityCache`]).
    pub fn new(
        users: Arc<dyn Directory>,
        instances: Arc<dyn InstanceDirectory>,
        origins: Origins,
        cache_ttl: std::time::Duration,
        clock: crate::clock::Clock,
    ) -> Self {
        let cache = IdentityCache::new(cache_ttl, clock);
        EdgeAuth {
            users: Arc::new(CachedDirectory {
                inner: users,
                cache: cache.clone(),
            }),
            instances: Arc::new(CachedInstances {
                inner: instances,
                cache: cache.clone(),
            }),
            origins: Arc::new(origins),
            cache,
            trusted_proxies: Arc::new([]),
        }
    }

    /// The edge, believing `X-Forwarded-For` from these proxies.
    pub fn trusting(mut self, proxies: Vec<ipnet::IpNet>) -> Self {
        self.trusted_proxies = proxies.into();
        self
    }

    async fn resolve(&self, headers: &HeaderMap) -> Result<Option<Identity>> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| t.starts_with("sha_") && t.len() <= 128)
                .ok_or_else(unauthorized)?;
            // An API token that does not authenticate is an error, not anonymity.
            return self
                .users
                .api_token(token)
                .await?
                .ok_or_else(unauthorized)
                .map(Some);
        }
        match session_cookie(headers, self.origins.secure_cookies) {
            // An unknown, revoked or expired cookie is simply no identity: the request proceeds
            // anonymously (and endpoints that need a user answer 401).
            Some(token) if token.len() <= 128 => self.users.session(&token).await,
            _ => Ok(None),
        }
    }

    /// The probe's instance, if its token is live and the instance accepts uploads now.
    async fn probe_grant(&self, headers: &HeaderMap) -> Result<(Grant, Placed)> {
        let token = probe_token(headers).ok_or_else(unauthorized)?;
        let route = self
            .instances
            .probe_token(&token)
            .await?
            .ok_or_else(unauthorized)?;
        if !route.accepts_uploads() {
            return Err(Error::client(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "This instance does not accept reports now.",
            ));
        }
        let placed = Placed {
            instance: route.id.clone(),
            shard: route.shard,
            max_report_bytes: u64::try_from(route.limits.max_report_bytes).ok(),
        };
        Ok((Grant::Probe { instance: route.id }, placed))
    }

    /// The caller may read `instance`: approved, a member of its org (any role; an API token only
    /// in its own org), and the instance's data is readable now.
    async fn reader_grant(
        &self,
        identity: Option<&Identity>,
        instance: &str,
    ) -> Result<(Grant, Placed)> {
        let identity = identity.ok_or_else(unauthorized)?;
        if identity.status() != AccountStatus::Approved {
            return Err(Error::forbidden("Your account is waiting for approval."));
        }
        let (route, role) = self.readers().check(identity, instance).await?;
        let grant = Grant::Reader {
            instance: instance.to_owned(),
            org: route.org_id.clone(),
            role,
        };
        let placed = Placed {
            instance: route.id,
            shard: route.shard,
            max_report_bytes: None,
        };
        Ok((grant, placed))
    }

    /// The checks a reader of an instance passes, for websockets to re-run.
    pub fn readers(&self) -> ReaderCheck {
        ReaderCheck {
            users: self.users.clone(),
            instances: self.instances.clone(),
            changes: IdentityChanges::never(),
        }
    }

    /// A websocket handshake is a GET that any site's page may open with the user's cookies
    /// (cross-site websocket hijacking): one riding a session must come from one of our origins,
    /// which browsers always send on a handshake. A foreign Origin is refused whatever the
    /// credential; clients that are not browsers (API tokens) may send none.
    fn check_websocket_origin(
        &self,
        headers: &HeaderMap,
        identity: Option<&Identity>,
    ) -> Result<()> {
        let origin = headers
            .get(header::ORIGIN)
            .map(|o| o.to_str().unwrap_or(""));
        let refused = || Error::forbidden("This websocket was opened from another site.");
        match origin {
            Some(origin) if !self.origins.allowed(origin) => Err(refused()),
            None if matches!(identity.map(|i| &i.via), Some(Via::Session { .. })) => Err(refused()),
            _ => Ok(()),
        }
    }

    /// CSRF defence and token scope for state-changing API requests.
    fn check_unsafe_request(&self, req: &Request, identity: Option<&Identity>) -> Result<()> {
        let headers = req.headers();
        if is_websocket_upgrade(headers) {
            return self.check_websocket_origin(headers, identity);
        }
        if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        // Browsers send Origin on every cross-site and same-site POST; a foreign one is refused,
        // with or without a session (that also stops login CSRF). Non-browser clients send none.
        if let Some(origin) = headers.get(header::ORIGIN) {
            let allowed = origin.to_str().is_ok_and(|o| self.origins.allowed(o));
            if !allowed {
                return Err(Error::forbidden("This request came from another site."));
            }
        }
        if headers
            .get("sec-fetch-site")
            .is_some_and(|v| v == "cross-site")
        {
            return Err(Error::forbidden("This request came from another site."));
        }
        match identity.map(|i| &i.via) {
            // Logging in (or proving an emailed link) does not act on the current session, and the
            // Origin check above already stops cross-site forms: no CSRF token needed.
            Some(Via::Session { .. }) if SESSIONLESS_PATHS.contains(&req.uri().path()) => {}
            Some(Via::Session { csrf_token, .. }) => {
                let sent = headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !crate::secrets::constant_time_eq(sent, csrf_token) {
                    return Err(Error::forbidden(
                        "Missing or wrong CSRF token; reload the page.",
                    ));
                }
            }
            Some(Via::ApiToken {
                scope: TokenScope::Read,
                ..
            }) => {
                return Err(Error::forbidden("This API token is read-only."));
            }
            _ => {}
        }
        Ok(())
    }
}

/// May a caller read an instance: a member of its org (any role; an API token only in its own
/// org), and the instance's data readable now. What the edge checks before granting a read, and
/// what an open websocket re-checks every so often.
#[derive(Clone)]
pub struct ReaderCheck {
    pub users: Arc<dyn Directory>,
    pub instances: Arc<dyn InstanceDirectory>,
    /// When access was last taken away anywhere: open websockets re-check then.
    pub changes: IdentityChanges,
}

/// How often a process polls the identity generation for its open websockets.
pub const IDENTITY_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The identity generation ([`Directory::identity_generation`]) as this process last polled it.
/// One poll a second per process, whatever the number of websockets: each websocket watches the
/// value and re-checks its caller when it moves.
#[derive(Clone)]
pub struct IdentityChanges {
    generation: tokio::sync::watch::Receiver<i64>,
    /// Keeps the sender of [`IdentityChanges::never`] alive.
    _never: Option<Arc<tokio::sync::watch::Sender<i64>>>,
}

impl IdentityChanges {
    /// A value that never moves (re-checks then happen on their timer only).
    pub fn never() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(0);
        IdentityChanges {
            generation: rx,
            _never: Some(Arc::new(tx)),
        }
    }

    /// Polls `users` every `every`, from a task that lives as long as the runtime.
    pub fn polled(users: Arc<dyn Directory>, every: std::time::Duration) -> Self {
        let (tx, rx) = tokio::sync::watch::channel(0);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match users.identity_generation().await {
                    Ok(now) => {
                        tx.send_if_modified(|seen| std::mem::replace(seen, now) != now);
                    }
                    Err(e) => tracing::debug!(error = %e, "cannot poll the identity generation"),
                }
            }
        });
        IdentityChanges {
            generation: rx,
            _never: None,
        }
    }

    /// A receiver that sees the next change (not the ones before).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<i64> {
        let mut rx = self.generation.clone();
        rx.mark_unchanged();
        rx
    }
}

impl ReaderCheck {
    /// Where the instance lives, and the caller's role in its org, if the caller may read it.
    pub async fn check(
        &self,
        identity: &Identity,
        instance: &str,
    ) -> Result<(InstanceRoute, Role)> {
        let not_found = || Error::not_found("No such instance.");
        let route = self
            .instances
            .instance(instance)
            .await?
            .ok_or_else(not_found)?;
        let member = self.users.role_in(&route.org_id, &identity.user.id).await?;
        let role = identity
            .role_in(&route.org_id, member, Role::Viewer)
            .map_err(|e| match e.status() {
                StatusCode::NOT_FOUND => not_found(),
                _ => e,
            })?;
        if !route.readable() {
            return Err(Error::forbidden("This instance's data cannot be read now."));
        }
        Ok((route, role))
    }
}

impl ReadAccess for ReaderCheck {
    fn still_readable<'a>(
        &'a self,
        identity: &'a Identity,
        instance: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if !self.users.still_valid(identity).await? {
                return Err(Error::client(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::Unauthorized,
                    "Your session or token has ended.",
                ));
            }
            self.check(identity, instance).await.map(drop)
        })
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<i64> {
        self.changes.watch()
    }
}

/// The probe token a request carries, in any of the forms the Weave Scope probe sends:
/// `Authorization: Scope-Probe token=…`, `Bearer …`, or Basic auth with the token as password.
pub fn probe_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let token = if let Some(rest) = value.strip_prefix("Scope-Probe ") {
        rest.trim().strip_prefix("token=")?.trim().to_owned()
    } else if let Some(rest) = value.strip_prefix("Bearer ") {
        rest.trim().to_owned()
    } else if let Some(rest) = value.strip_prefix("Basic ") {
        let decoded = STANDARD.decode(rest.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (_, password) = decoded.split_once(':')?;
        password.to_owned()
    } else {
        return None;
    };
    (token.starts_with("shp_") && token.len() <= 128).then_some(token)
}

#[cfg(test)]
mod client_ip_tests {
    use super::*;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let lb: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Straight from a client: its address, whatever it claims.
        assert_eq!(
            client_ip(ip("203.0.113.7"), &forwarded("1.2.3.4"), &lb),
            ip("203.0.113.7")
        );
        // Through the load balancer: the last untrusted hop, not a forged one to its left.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &forwarded("6.6.6.6, 198.51.100.9"), &lb),
            ip("198.51.100.9")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &forwarded("198.51.100.9, 10.1.1.1"), &lb),
            ip("198.51.100.9")
        );
        // No proxies configured: the header means nothing.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &forwarded("198.51.100.9"), &[]),
            ip("10.0.0.2")
        );
        // Garbage stops the walk at the last good hop.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &forwarded("1.1.1.1, junk"), &lb),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &HeaderMap::new(), &lb),
            ip("10.0.0.2")
        );
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{HeaderMap, Request};
    use axum::middleware;
    use axum::routing::get;
    use futures_util::future::BoxFuture;
    use shared::users::Role;
    use tower::ServiceExt;

    use super::*;
    use crate::provisioning::directory::InstanceRoute;
    use crate::users::directory::AdminOrg;

    /// Contracts that know nobody: the test is about headers, not credentials.
    struct Nobody;

    impl Directory for Nobody {
        fn session(&self, _: &str) -> BoxFuture<'_, Result<Option<Identity>>> {
            Box::pin(async { Ok(None) })
        }
        fn api_token(&self, _: &str) -> BoxFuture<'_, Result<Option<Identity>>> {
            Box::pin(async { Ok(None) })
        }
        fn role_in(&self, _: &str, _: &str) -> BoxFuture<'_, Result<Option<Role>>> {
            Box::pin(async { Ok(None) })
        }
        fn first_admin_org(&self) -> BoxFuture<'_, Result<Option<AdminOrg>>> {
            Box::pin(async { Ok(None) })
        }
    }

    impl InstanceDirectory for Nobody {
        fn probe_token(&self, _: &str) -> BoxFuture<'_, Result<Option<InstanceRoute>>> {
            Box::pin(async { Ok(None) })
        }
        fn instance(&self, _: &str) -> BoxFuture<'_, Result<Option<InstanceRoute>>> {
            Box::pin(async { Ok(None) })
        }
    }

    #[tokio::test]
    async fn client_supplied_tenant_and_identity_headers_never_reach_a_handler() {
        let edge = EdgeAuth::new(
            Arc::new(Nobody),
            Arc::new(Nobody),
            Origins::new(&"http://127.0.0.1:4040/".parse().unwrap(), Vec::new()),
            std::time::Duration::ZERO,
            crate::clock::Clock::system(),
        );
        let seen = |headers: HeaderMap| async move {
            RESERVED_HEADERS
                .iter()
                .map(|h| format!("{:?}", headers.get(*h)))
                .collect::<Vec<_>>()
                .join("/")
        };
        let app = Router::new()
            .route("/api/echo", get(seen))
            .route("/echo", get(seen))
            .layer(middleware::from_fn_with_state(edge, authenticate));
        for path in ["/api/echo", "/echo"] {
            let request = Request::get(path)
                .header("X-Scope-OrgID", "someone-elses-instance")
                .header("x-scope-userid", "someone-else")
                .header("x-scopehub-identity", "forged")
                .header("x-scopehub-signature", "forged")
                .body(Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            assert_eq!(&body[..], b"None/None/None/None", "{path}");
        }
    }

    #[test]
    fn a_change_forgets_what_its_path_and_its_user_name() {
        use super::{Forget, forget_after};
        let alice = crate::identity::Identity {
            user: crate::identity::User {
                id: "alice-id".into(),
                email: "alice@example.com".into(),
                status: shared::users::AccountStatus::Approved,
                is_admin: false,
            },
            via: crate::identity::Via::Session {
                id: "s".into(),
                csrf_token: "c".into(),
            },
        };
        let concerning = |ids: &[&str]| {
            Some(Forget::Concerning(
                ids.iter().map(|s| s.to_string()).collect(),
            ))
        };
        assert_eq!(
            forget_after("/api/orgs/o1/members/u2", Some(&alice)),
            concerning(&["alice-id", "orgs", "o1", "members", "u2"])
        );
        assert_eq!(
            forget_after("/api/users/logout", Some(&alice)),
            concerning(&["alice-id", "users", "logout"])
        );
        // Anyone can make these succeed; they change no kept answer.
        for path in [
            "/api/users/signup",
            "/api/users/password/forgot",
            "/api/users/login",
        ] {
            assert_eq!(forget_after(path, None), None, "{path}");
        }
        assert_eq!(
            forget_after("/api/admin/users/u2/suspend", Some(&alice)),
            Some(Forget::Everything)
        );
        assert_eq!(
            forget_after("/api/users/password/reset", None),
            Some(Forget::Everything)
        );
        // Bounded: a forgetting's cost does not grow with a path's length.
        let long = format!("/api/orgs/{}", "a/".repeat(1000));
        assert_eq!(forget_after(&long, Some(&alice)), Some(Forget::Everything));
        let wide = format!("/api/orgs/{}", "a".repeat(10_000));
        assert_eq!(forget_after(&wide, Some(&alice)), Some(Forget::Everything));
    }

    #[test]
    fn the_instance_of_an_app_path_is_its_first_segment() {
        assert_eq!(app_instance("/api/app/abc/api/topology"), Some("abc"));
        assert_eq!(app_instance("/api/app/abc"), Some("abc"));
        assert_eq!(app_instance("/api/app/"), None);
        assert_eq!(app_instance("/api/instances"), None);
    }
}

#[cfg(test)]
mod probe_token_tests {
    use axum::http::HeaderMap;

    fn with(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", auth.parse().unwrap());
        h
    }

    #[test]
    fn every_form_the_scope_probe_sends_is_read() {
        assert_eq!(
            super::probe_token(&with("Scope-Probe token=shp_abc")).as_deref(),
            Some("shp_abc")
        );
        assert_eq!(
            super::probe_token(&with("Bearer shp_abc")).as_deref(),
            Some("shp_abc")
        );
        // "user:shp_abc" in Basic auth.
        assert_eq!(
            super::probe_token(&with("Basic dXNlcjpzaHBfYWJj")).as_deref(),
            Some("shp_abc")
        );
        assert_eq!(
            super::probe_token(&with("Bearer sha_not_a_probe_token")),
            None
        );
        assert_eq!(super::probe_token(&with("Scope-Probe token=")), None);
        assert_eq!(super::probe_token(&HeaderMap::new()), None);
    }
}
