//! Credentials → identity: the only code that decides who a request is (design.md §3).
//!
//! The `authenticate` layer runs on every request: it deletes client-supplied tenant headers,
//! resolves a session cookie or an `Authorization: Bearer` API token into an [`Identity`] request
//! extension, and enforces CSRF defence (Origin check plus the session's token) and API-token
//! scope on state-changing requests. Handlers take identities through the extractors below.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shared::ErrorCode;
use shared::users::{AccountStatus, Role, TokenScope};

use crate::app::AppState;
use crate::clock::MINUTE;
use crate::error::{Error, Result};
use crate::secrets::{constant_time_eq, sha256_hex};
use crate::store::{Store, UserRow};

pub const SESSION_COOKIE: &str = "scopehub_session";
pub const SECURE_SESSION_COOKIE: &str = "__Host-scopehub_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Headers only the edge may set; any copy from a client is deleted.
const TENANT_HEADERS: [&str; 2] = ["x-scope-orgid", "x-scope-userid"];
/// Scope's probe-facing paths (design.md §3): probe tokens, never cookies or API tokens.
pub fn is_probe_path(path: &str) -> bool {
    path == "/api/report" || path.starts_with("/api/control/") || path.starts_with("/api/pipe/")
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
/// Last-use timestamps are written at most this often per session or token.
const TOUCH_EVERY: i64 = MINUTE;

/// Who is making the request, and how they proved it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserRow,
    pub via: Via,
}

#[derive(Debug, Clone)]
pub enum Via {
    Session {
        id: String,
        csrf_token: String,
    },
    ApiToken {
        id: String,
        org_id: String,
        scope: TokenScope,
    },
}

/// The client's address as the edge saw it.
#[derive(Debug, Clone, Default)]
pub struct ClientIp(pub Option<String>);

impl Identity {
    pub fn status(&self) -> AccountStatus {
        AccountStatus::parse(&self.user.status).unwrap_or(AccountStatus::Unverified)
    }

    pub fn session_id(&self) -> Option<&str> {
        match &self.via {
            Via::Session { id, .. } => Some(id),
            Via::ApiToken { .. } => None,
        }
    }

    /// The caller's role in `org_id`, checked against membership and, for API tokens, the token's
    /// org; fails unless it is at least `needed`.
    pub async fn require_role(&self, store: &Store, org_id: &str, needed: Role) -> Result<Role> {
        if let Via::ApiToken {
            org_id: token_org, ..
        } = &self.via
            && token_org != org_id
        {
            return Err(Error::not_found("No such org."));
        }
        let role = store
            .role_in(org_id, &self.user.id)
            .await?
            .and_then(|r| Role::parse(&r));
        match role {
            // Not a member: the org's existence is not revealed.
            None => Err(Error::not_found("No such org.")),
            Some(role) if role < needed => Err(Error::client(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                format!("This needs the {} role in the org.", needed.as_str()),
            )),
            Some(role) => Ok(role),
        }
    }
}

/// The edge layer; see the module docs.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    for name in TENANT_HEADERS {
        req.headers_mut().remove(name);
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    req.extensions_mut().insert(ClientIp(ip));
    // Only the API has user identities; static files never touch the database, and Scope's
    // probe-facing paths authenticate the probe's token themselves (`instance_for_probe`).
    if !req.uri().path().starts_with("/api/") || is_probe_path(req.uri().path()) {
        return next.run(req).await;
    }

    let identity = match resolve(&state, req.headers()).await {
        Ok(identity) => identity,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = check_unsafe_request(&state, &req, identity.as_ref()) {
        return e.into_response();
    }
    if let Some(identity) = identity {
        req.extensions_mut().insert(identity);
    }
    next.run(req).await
}

async fn resolve(state: &AppState, headers: &HeaderMap) -> Result<Option<Identity>> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| t.starts_with("sha_"))
            .ok_or_else(unauthorized)?;
        return resolve_api_token(state, token).await.map(Some);
    }
    match session_cookie(headers, state.users.secure_cookies) {
        Some(token) => resolve_session(state, &token).await,
        None => Ok(None),
    }
}

async fn resolve_api_token(state: &AppState, token: &str) -> Result<Identity> {
    let now = state.clock.now();
    let row = state
        .store
        .api_token_by_hash(&sha256_hex(token))
        .await?
        .ok_or_else(unauthorized)?;
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Err(unauthorized());
    }
    let user = state
        .store
        .user_by_id(&row.user_id)
        .await?
        .ok_or_else(unauthorized)?;
    if user.suspended_at.is_some() || user.status != AccountStatus::Approved.as_str() {
        return Err(unauthorized());
    }
    if row.last_used_at.is_none_or(|t| now - t > TOUCH_EVERY) {
        state.store.touch_api_token(&row.id, now).await?;
    }
    let scope = TokenScope::parse(&row.scope).unwrap_or(TokenScope::Read);
    Ok(Identity {
        user,
        via: Via::ApiToken {
            id: row.id,
            org_id: row.org_id,
            scope,
        },
    })
}

/// An unknown, revoked or expired cookie is simply no identity: the request proceeds anonymously
/// (and endpoints that need a user answer 401).
async fn resolve_session(state: &AppState, token: &str) -> Result<Option<Identity>> {
    let now = state.clock.now();
    let Some(session) = state
        .store
        .session_by_token_hash(&sha256_hex(token))
        .await?
    else {
        return Ok(None);
    };
    let idle_expired = now - session.last_seen_at > state.users.session_idle;
    if session.revoked_at.is_some() || session.expires_at <= now || idle_expired {
        return Ok(None);
    }
    let Some(user) = state.store.user_by_id(&session.user_id).await? else {
        return Ok(None);
    };
    if user.suspended_at.is_some() {
        return Ok(None);
    }
    if now - session.last_seen_at > TOUCH_EVERY {
        state.store.touch_session(&session.id, now).await?;
    }
    Ok(Some(Identity {
        user,
        via: Via::Session {
            id: session.id,
            csrf_token: session.csrf_token,
        },
    }))
}

fn session_cookie(headers: &HeaderMap, secure: bool) -> Option<String> {
    let wanted = if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    };
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.to_owned())
}

/// CSRF defence and token scope for state-changing API requests.
fn check_unsafe_request(
    state: &AppState,
    req: &Request,
    identity: Option<&Identity>,
) -> Result<()> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || !req.uri().path().starts_with("/api/")
    {
        return Ok(());
    }
    let headers = req.headers();
    // Browsers send Origin on every cross-site and same-site POST; a foreign one is refused, with or
    // without a session (that also stops login CSRF). Non-browser clients send none.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin.to_str().is_ok_and(|o| state.users.origin_allowed(o));
        if !allowed {
            return Err(forbidden("This request came from another site."));
        }
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v == "cross-site")
    {
        return Err(forbidden("This request came from another site."));
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
            if !constant_time_eq(sent, csrf_token) {
                return Err(forbidden("Missing or wrong CSRF token; reload the page."));
            }
        }
        Some(Via::ApiToken {
            scope: TokenScope::Read,
            ..
        }) => {
            return Err(forbidden("This API token is read-only."));
        }
        _ => {}
    }
    Ok(())
}

fn unauthorized() -> Error {
    Error::client(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
        "Log in, or send a valid API token.",
    )
}

fn forbidden(message: &str) -> Error {
    Error::client(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
}

/// The `Set-Cookie` value that starts a session.
pub fn session_cookie_header(token: &str, max_age_ms: i64, secure: bool) -> HeaderValue {
    let value = if secure {
        format!(
            "{SECURE_SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age={}",
            max_age_ms / 1000
        )
    } else {
        format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
            max_age_ms / 1000
        )
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn clear_cookie_header(secure: bool) -> HeaderValue {
    if secure {
        HeaderValue::from_static(
            "__Host-scopehub_session=; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=0",
        )
    } else {
        HeaderValue::from_static("scopehub_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
    }
}

// ---- extractors -------------------------------------------------------------------------------------

/// Any logged-in caller (session or API token), whatever their account status.
pub struct AuthUser(pub Identity);

/// A caller whose account is approved (past the waitlist).
pub struct Approved(pub Identity);

/// A caller logged in with a browser session (not an API token): for managing credentials.
pub struct SessionUser(pub Identity);

/// A site admin, with a browser session.
pub struct SiteAdmin(pub Identity);

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .map(AuthUser)
            .ok_or_else(unauthorized)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Approved {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let AuthUser(identity) = AuthUser::from_request_parts(parts, state).await?;
        if identity.status() != AccountStatus::Approved {
            return Err(forbidden("Your account is waiting for approval."));
        }
        Ok(Approved(identity))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionUser {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let AuthUser(identity) = AuthUser::from_request_parts(parts, state).await?;
        if identity.session_id().is_none() {
            return Err(forbidden("This needs a browser session, not an API token."));
        }
        Ok(SessionUser(identity))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SiteAdmin {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let SessionUser(identity) = SessionUser::from_request_parts(parts, state).await?;
        if !identity.user.is_admin || identity.status() != AccountStatus::Approved {
            return Err(forbidden("This needs a site admin."));
        }
        Ok(SiteAdmin(identity))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientIp>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The caller's identity if there is one; never rejects.
pub struct MaybeUser(pub Option<Identity>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeUser {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeUser(parts.extensions.get::<Identity>().cloned()))
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{HeaderMap, Request};
    use axum::middleware;
    use axum::routing::get;
    use tower::ServiceExt;

    use crate::app::AppState;
    use crate::frontend::spa::Spa;
    use crate::store::Store;
    use crate::users::UsersConfig;
    use crate::users::mail::Mailer;

    #[tokio::test]
    async fn client_supplied_tenant_headers_never_reach_a_handler() {
        let store = Store::open(&"sqlite::memory:".parse().unwrap()).unwrap();
        let users = UsersConfig::new("http://127.0.0.1:4040/".parse().unwrap(), false);
        let state = AppState::new(
            store,
            Spa::new("/nonexistent"),
            users,
            Mailer::new(None, "a@b.cd").unwrap(),
        );
        let seen = |headers: HeaderMap| async move {
            format!(
                "{:?}/{:?}",
                headers.get("x-scope-orgid"),
                headers.get("x-scope-userid")
            )
        };
        let app = Router::new()
            .route("/api/echo", get(seen))
            .route("/echo", get(seen))
            .layer(middleware::from_fn_with_state(state, super::authenticate));
        for path in ["/api/echo", "/echo"] {
            let request = Request::get(path)
                .header("X-Scope-OrgID", "someone-elses-instance")
                .header("x-scope-userid", "someone-else")
                .body(Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            assert_eq!(&body[..], b"None/None", "{path}");
        }
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
        let decoded = base64_decode(rest.trim())?;
        let (_, password) = decoded.split_once(':')?;
        password.to_owned()
    } else {
        return None;
    };
    (token.starts_with("shp_") && token.len() <= 128).then_some(token)
}

/// The instance a probe may upload to: its token is live and the instance accepts uploads (placed,
/// not suspended, not being deleted). The collector trusts only this answer.
pub async fn instance_for_probe(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<crate::store::InstanceRow> {
    let token = probe_token(headers).ok_or_else(unauthorized)?;
    let row = state
        .store
        .instance_for_probe_token(&sha256_hex(&token), state.clock.now())
        .await?
        .ok_or_else(unauthorized)?;
    let state_name = shared::instances::InstanceState::parse(&row.state);
    let accepts = matches!(
        state_name,
        Some(shared::instances::InstanceState::Ready | shared::instances::InstanceState::Active)
    ) && !row.refuse_uploads;
    if !accepts {
        return Err(Error::client(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "This instance does not accept reports now.",
        ));
    }
    Ok(row)
}

fn base64_decode(input: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in input.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|a| *a == byte)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(out).ok()
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
