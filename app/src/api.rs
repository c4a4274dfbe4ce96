//! The app's only HTTP client. Every call returns `Result<T, ApiError>`: server errors arrive in the
//! API's own error shape; network failures and undecodable answers are turned into the same shape so
//! pages render one kind of error.
//!
//! State-changing calls carry the session's CSRF token (`X-CSRF-Token`), which the server hands out
//! with `Me` at login and from `GET /api/users/me`; it is kept in memory only.

use std::cell::RefCell;

use gloo_net::http::{Request, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shared::instances::{
    InstanceDetails, InstanceInfo, InstanceWithToken, NewInstance, Suspension,
};
use shared::users::{
    AcceptInvite, Accepted, AdminFlag, ApiTokenInfo, AuditEvent, ChangePassword, Credentials,
    EmailOnly, InviteInfo, InvitePreview, LogoutAll, Me, MemberInfo, NewApiToken, NewInvite,
    OrgInfo, OrgMembership, OrgName, OutboxMessage, Rejection, ResetPassword, Role, RoleChange,
    SessionInfo, TokenOnly, UserInfo,
};
use shared::{ApiError, ClientErrorReport, ErrorCode, VersionInfo};

thread_local! {
    static CSRF: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Remembers the CSRF token of the session that `me` describes.
fn remember(me: &Me) {
    CSRF.with(|c| *c.borrow_mut() = me.csrf_token.clone());
}

pub fn forget_session() {
    CSRF.with(|c| *c.borrow_mut() = None);
}

pub async fn version() -> Result<VersionInfo, ApiError> {
    get_json("/api/version").await
}

// ---- accounts ---------------------------------------------------------------------------------------

/// The logged-in user, or `None` when nobody is (401).
pub async fn me() -> Result<Option<Me>, ApiError> {
    match get_json::<Me>("/api/users/me").await {
        Ok(me) => {
            remember(&me);
            Ok(Some(me))
        }
        Err(e) if e.code == ErrorCode::Unauthorized => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn signup(email: String, password: String) -> Result<Accepted, ApiError> {
    send(
        "POST",
        "/api/users/signup",
        Some(&Credentials { email, password }),
    )
    .await
}

pub async fn verify(token: String) -> Result<Accepted, ApiError> {
    send("POST", "/api/users/verify", Some(&TokenOnly { token })).await
}

pub async fn resend_verification(email: String) -> Result<Accepted, ApiError> {
    send(
        "POST",
        "/api/users/verify/resend",
        Some(&EmailOnly { email }),
    )
    .await
}

pub async fn login(email: String, password: String) -> Result<Me, ApiError> {
    let me: Me = send(
        "POST",
        "/api/users/login",
        Some(&Credentials { email, password }),
    )
    .await?;
    remember(&me);
    Ok(me)
}

pub async fn request_login_link(email: String) -> Result<Accepted, ApiError> {
    send("POST", "/api/users/login-link", Some(&EmailOnly { email })).await
}

pub async fn consume_login_link(token: String) -> Result<Me, ApiError> {
    let me: Me = send(
        "POST",
        "/api/users/login-link/consume",
        Some(&TokenOnly { token }),
    )
    .await?;
    remember(&me);
    Ok(me)
}

pub async fn forgot_password(email: String) -> Result<Accepted, ApiError> {
    send(
        "POST",
        "/api/users/password/forgot",
        Some(&EmailOnly { email }),
    )
    .await
}

pub async fn reset_password(token: String, password: String) -> Result<Accepted, ApiError> {
    send(
        "POST",
        "/api/users/password/reset",
        Some(&ResetPassword { token, password }),
    )
    .await
}

pub async fn change_password(
    current_password: String,
    new_password: String,
) -> Result<(), ApiError> {
    send_empty(
        "POST",
        "/api/users/password",
        Some(&ChangePassword {
            current_password,
            new_password,
        }),
    )
    .await
}

pub async fn logout() -> Result<(), ApiError> {
    let result = send_empty::<()>("POST", "/api/users/logout", None).await;
    forget_session();
    result
}

/// Ends every session of the account (and, if asked, revokes its API tokens).
pub async fn logout_everywhere(revoke_api_tokens: bool) -> Result<(), ApiError> {
    let body = LogoutAll { revoke_api_tokens };
    let result = send_empty("POST", "/api/users/logout-all", Some(&body)).await;
    forget_session();
    result
}

pub async fn sessions() -> Result<Vec<SessionInfo>, ApiError> {
    get_json("/api/users/sessions").await
}

pub async fn revoke_session(id: String) -> Result<(), ApiError> {
    send_empty::<()>("DELETE", &format!("/api/users/sessions/{id}"), None).await
}

// ---- orgs, invites, tokens --------------------------------------------------------------------------

pub async fn create_org(name: String) -> Result<OrgMembership, ApiError> {
    send("POST", "/api/orgs", Some(&OrgName { name })).await
}

pub async fn rename_org(org: String, name: String) -> Result<OrgMembership, ApiError> {
    send(
        "PATCH",
        &format!("/api/orgs/{org}"),
        Some(&OrgName { name }),
    )
    .await
}

pub async fn members(org: String) -> Result<Vec<MemberInfo>, ApiError> {
    get_json(&format!("/api/orgs/{org}/members")).await
}

pub async fn change_role(org: String, user: String, role: Role) -> Result<(), ApiError> {
    send_empty(
        "PATCH",
        &format!("/api/orgs/{org}/members/{user}"),
        Some(&RoleChange { role }),
    )
    .await
}

pub async fn remove_member(org: String, user: String) -> Result<(), ApiError> {
    send_empty::<()>("DELETE", &format!("/api/orgs/{org}/members/{user}"), None).await
}

pub async fn invites(org: String) -> Result<Vec<InviteInfo>, ApiError> {
    get_json(&format!("/api/orgs/{org}/invites")).await
}

pub async fn invite(org: String, email: String, role: Role) -> Result<InviteInfo, ApiError> {
    send(
        "POST",
        &format!("/api/orgs/{org}/invites"),
        Some(&NewInvite { email, role }),
    )
    .await
}

pub async fn revoke_invite(org: String, id: String) -> Result<(), ApiError> {
    send_empty::<()>("DELETE", &format!("/api/orgs/{org}/invites/{id}"), None).await
}

pub async fn org_audit(org: String) -> Result<Vec<AuditEvent>, ApiError> {
    get_json(&format!("/api/orgs/{org}/audit")).await
}

pub async fn preview_invite(token: String) -> Result<InvitePreview, ApiError> {
    get_json(&format!("/api/invites/{token}")).await
}

pub async fn accept_invite(
    token: String,
    password: Option<String>,
) -> Result<OrgMembership, ApiError> {
    send(
        "POST",
        "/api/invites/accept",
        Some(&AcceptInvite { token, password }),
    )
    .await
}

pub async fn api_tokens() -> Result<Vec<ApiTokenInfo>, ApiError> {
    get_json("/api/tokens").await
}

pub async fn create_api_token(body: NewApiToken) -> Result<ApiTokenInfo, ApiError> {
    send("POST", "/api/tokens", Some(&body)).await
}

pub async fn revoke_api_token(id: String) -> Result<(), ApiError> {
    send_empty::<()>("DELETE", &format!("/api/tokens/{id}"), None).await
}

// ---- instances --------------------------------------------------------------------------------------

pub async fn instances(org: String) -> Result<Vec<InstanceInfo>, ApiError> {
    get_json(&format!("/api/instances?org={}", js_sys_encode(&org))).await
}

pub async fn create_instance(org_id: String, name: String) -> Result<InstanceWithToken, ApiError> {
    send(
        "POST",
        "/api/instances",
        Some(&NewInstance { org_id, name }),
    )
    .await
}

pub async fn instance(id: String) -> Result<InstanceDetails, ApiError> {
    get_json(&format!("/api/instances/{id}")).await
}

pub async fn rename_instance(id: String, name: String) -> Result<InstanceInfo, ApiError> {
    send(
        "PATCH",
        &format!("/api/instances/{id}"),
        Some(&OrgName { name }),
    )
    .await
}

pub async fn suspend_instance(
    id: String,
    reason: String,
    refuse_reads: bool,
) -> Result<InstanceInfo, ApiError> {
    send(
        "POST",
        &format!("/api/instances/{id}/suspend"),
        Some(&Suspension {
            reason,
            refuse_reads,
        }),
    )
    .await
}

/// Turns controls or terminals on or off (org admins).
pub async fn change_instance_settings(
    id: String,
    settings: shared::instances::InstanceSettings,
) -> Result<InstanceInfo, ApiError> {
    send(
        "PATCH",
        &format!("/api/instances/{id}/settings"),
        Some(&settings),
    )
    .await
}

pub async fn resume_instance(id: String) -> Result<InstanceInfo, ApiError> {
    send::<(), _>("POST", &format!("/api/instances/{id}/resume"), None).await
}

pub async fn delete_instance(id: String) -> Result<InstanceInfo, ApiError> {
    send::<(), _>("DELETE", &format!("/api/instances/{id}"), None).await
}

pub async fn rotate_probe_token(id: String) -> Result<InstanceWithToken, ApiError> {
    send::<(), _>("POST", &format!("/api/instances/{id}/tokens"), None).await
}

pub async fn revoke_probe_token(id: String, token: String) -> Result<(), ApiError> {
    send_empty::<()>(
        "DELETE",
        &format!("/api/instances/{id}/tokens/{token}"),
        None,
    )
    .await
}

// ---- admin ------------------------------------------------------------------------------------------

pub async fn admin_waitlist() -> Result<Vec<UserInfo>, ApiError> {
    get_json("/api/admin/waitlist").await
}

pub async fn admin_users(query: String) -> Result<Vec<UserInfo>, ApiError> {
    let q: String = js_sys_encode(&query);
    get_json(&format!("/api/admin/users?q={q}")).await
}

pub async fn admin_user_action(id: String, action: &str) -> Result<UserInfo, ApiError> {
    send::<(), _>("POST", &format!("/api/admin/users/{id}/{action}"), None).await
}

pub async fn admin_reject(id: String, reason: String) -> Result<UserInfo, ApiError> {
    send(
        "POST",
        &format!("/api/admin/users/{id}/reject"),
        Some(&Rejection { reason }),
    )
    .await
}

pub async fn admin_set_admin(id: String, is_admin: bool) -> Result<UserInfo, ApiError> {
    send(
        "POST",
        &format!("/api/admin/users/{id}/admin"),
        Some(&AdminFlag { is_admin }),
    )
    .await
}

pub async fn admin_instances() -> Result<Vec<InstanceInfo>, ApiError> {
    get_json("/api/admin/instances").await
}

pub async fn admin_suspend_instance(id: String, reason: String) -> Result<InstanceInfo, ApiError> {
    send(
        "POST",
        &format!("/api/admin/instances/{id}/suspend"),
        Some(&Suspension {
            reason,
            refuse_reads: false,
        }),
    )
    .await
}

/// Sets how long an instance's history is kept (days) and the most bytes it may take.
pub async fn admin_set_history(
    id: String,
    policy: shared::instances::HistoryPolicy,
) -> Result<InstanceInfo, ApiError> {
    send(
        "PATCH",
        &format!("/api/admin/instances/{id}/history"),
        Some(&policy),
    )
    .await
}

pub async fn admin_resume_instance(id: String) -> Result<InstanceInfo, ApiError> {
    send::<(), _>("POST", &format!("/api/admin/instances/{id}/resume"), None).await
}

pub async fn admin_orgs() -> Result<Vec<OrgInfo>, ApiError> {
    get_json("/api/admin/orgs").await
}

/// What the monitoring role sees of every role replica, and its alerts.
pub async fn admin_system() -> Result<shared::monitoring::SystemStatus, ApiError> {
    get_json("/api/admin/system").await
}

pub async fn admin_outbox() -> Result<Vec<OutboxMessage>, ApiError> {
    get_json("/api/admin/outbox").await
}

pub async fn admin_audit() -> Result<Vec<AuditEvent>, ApiError> {
    get_json("/api/admin/audit?limit=200").await
}

// ---- plumbing ---------------------------------------------------------------------------------------

/// Best effort: sends an error report to the server log, never fails or panics itself.
pub fn report_client_error(message: &str) {
    let url = web_sys::window()
        .and_then(|w| w.location().href().ok())
        .unwrap_or_default();
    let report = ClientErrorReport::trimmed(message, &url);
    leptos::task::spawn_local(async move {
        if let Ok(request) = Request::post("/api/client-errors").json(&report) {
            let _ = request.send().await;
        }
    });
}

#[cfg(feature = "map")]
mod live;
#[cfg(feature = "map")]
pub use live::*;

/// Percent-encodes a query value (RFC 3986 unreserved characters pass through).
pub(crate) fn js_sys_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The browser could not reach the server at all (offline, the server down): said plainly; the
/// browser's own words ("TypeError: Failed to fetch") go to the console.
fn unreachable_server(e: impl std::fmt::Display) -> ApiError {
    web_sys::console::warn_1(&format!("request failed: {e}").into());
    ApiError::new(
        ErrorCode::Unavailable,
        "Cannot reach Scopehub. Check your connection; this page tries again by itself.",
    )
}

fn builder(method: &str, path: &str) -> RequestBuilder {
    let builder = match method {
        "POST" => Request::post(path),
        "PATCH" => Request::patch(path),
        "PUT" => Request::put(path),
        "DELETE" => Request::delete(path),
        _ => Request::get(path),
    };
    let builder = builder.header("Accept", "application/json");
    match CSRF.with(|c| c.borrow().clone()) {
        Some(token) if method != "GET" => builder.header("X-CSRF-Token", &token),
        _ => builder,
    }
}

async fn get_json<T: DeserializeOwned>(path: &str) -> Result<T, ApiError> {
    let response = builder("GET", path)
        .send()
        .await
        .map_err(unreachable_server)?;
    decode(response).await
}

async fn request<B: Serialize>(
    method: &str,
    path: &str,
    body: Option<&B>,
) -> Result<Response, ApiError> {
    let builder = builder(method, path);
    let sent = match body {
        Some(body) => {
            builder
                .json(body)
                .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?
                .send()
                .await
        }
        None => builder.send().await,
    };
    sent.map_err(unreachable_server)
}

pub(crate) async fn send<B: Serialize, T: DeserializeOwned>(
    method: &str,
    path: &str,
    body: Option<&B>,
) -> Result<T, ApiError> {
    decode(request(method, path, body).await?).await
}

/// For endpoints that answer 204 No Content.
pub(crate) async fn send_empty<B: Serialize>(
    method: &str,
    path: &str,
    body: Option<&B>,
) -> Result<(), ApiError> {
    let response = request(method, path, body).await?;
    if response.ok() {
        Ok(())
    } else {
        Err(error_of(response).await)
    }
}

async fn decode<T: DeserializeOwned>(response: Response) -> Result<T, ApiError> {
    if response.ok() {
        return response.json::<T>().await.map_err(|e| {
            ApiError::new(
                ErrorCode::Internal,
                format!("The server's answer could not be read: {e}"),
            )
        });
    }
    Err(error_of(response).await)
}

async fn error_of(response: Response) -> ApiError {
    let status = response.status();
    let text = response.status_text();
    response.json::<ApiError>().await.unwrap_or_else(|_| {
        ApiError::new(
            ErrorCode::Unknown,
            format!("The server answered {status} {text}"),
        )
    })
}
