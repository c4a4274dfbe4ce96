//! The users service's contract: what other roles may ask it, and nothing more.
//!
//! [`Directory`] resolves a session or API token to an [`Identity`] and answers a user's role in an
//! org. [`LocalDirectory`] answers from this process's store (Airplane Mode, and the users role
//! itself); [`HttpDirectory`] asks a users process over its internal API ([`internal_router`]).
//! The session cookie's names live here too: the users role sets the cookie, the edge reads it.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::routing::{get, post};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use shared::users::{AccountStatus, Role, TokenScope};

use crate::clock::{Clock, MINUTE};
use crate::error::{Error, Json, Result};
use crate::identity::{Identity, User, Via};
use crate::internal_client::{InternalClient, SecretBody};
use crate::secrets::sha256_hex;
use crate::store::{Store, UserRow};

pub const SESSION_COOKIE: &str = "scopehub_session";
pub const SECURE_SESSION_COOKIE: &str = "__Host-scopehub_session";
/// Last-use timestamps are written at most this often per session or token.
const TOUCH_EVERY: i64 = MINUTE;

/// The first site admin and their personal org (Airplane Mode's local probe reports into it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminOrg {
    pub user_id: String,
    pub org_id: String,
}

pub trait Directory: Send + Sync {
    /// The identity behind a session cookie's value; `None` for an unknown, revoked, expired or
    /// idle session, or a suspended user (the request then proceeds anonymously).
    fn session(&self, token: &str) -> BoxFuture<'_, Result<Option<Identity>>>;
    /// The identity behind an API token; `None` unless the token is live and its user approved.
    fn api_token(&self, token: &str) -> BoxFuture<'_, Result<Option<Identity>>>;
    /// The user's role in the org; `None` when they are not a member.
    fn role_in(&self, org_id: &str, user_id: &str) -> BoxFuture<'_, Result<Option<Role>>>;
    /// The first site admin's personal org, once there is one.
    fn first_admin_org(&self) -> BoxFuture<'_, Result<Option<AdminOrg>>>;
    /// Whether the session or API token `identity` was resolved from is still live and its user
    /// may still use it: what an open websocket re-checks. (Fails closed where not implemented.)
    fn still_valid(&self, identity: &Identity) -> BoxFuture<'_, Result<bool>> {
        let _ = identity;
        Box::pin(async { Ok(false) })
    }
    /// A number that moves whenever access is taken away anywhere (a revocation, a suspension, a
    /// membership change): pollers re-check what they hold when it does.
    fn identity_generation(&self) -> BoxFuture<'_, Result<i64>> {
        Box::pin(async { Ok(0) })
    }
    /// Writes `record` to the audit log. (Fails where not implemented.)
    fn record_audit(&self, record: &AuditRecord) -> BoxFuture<'_, Result<()>> {
        let _ = record;
        Box::pin(async {
            Err(Error::Internal(anyhow::anyhow!(
                "this directory cannot write the audit log"
            )))
        })
    }
    /// Queues `mail` in the outbox for every site admin (monitoring's alerts); says how many. (Fails
    /// where not implemented: a directory that cannot send mail says so.)
    fn mail_site_admins(&self, mail: &SiteAdminMail) -> BoxFuture<'_, Result<usize>> {
        let _ = mail;
        Box::pin(async {
            Err(Error::Internal(anyhow::anyhow!(
                "this directory cannot send mail"
            )))
        })
    }
}

/// An entry for the audit log from another role: what a member did there. Only the actions in
/// [`AuditRecord::ACTIONS`] are taken; every field is cut to [`AuditRecord::MAX_FIELD`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub action: String,
    pub actor_id: String,
    pub actor_email: String,
    pub org_id: String,
    pub target: String,
    pub ip: Option<String>,
    pub detail: String,
}

impl AuditRecord {
    /// `instance_control`: a control on a node of an instance; `instance_terminal`: a terminal or
    /// log stream that ended (both from the collector).
    pub const ACTIONS: [&'static str; 2] = ["instance_control", "instance_terminal"];
    pub const MAX_FIELD: usize = 512;
}

/// A message for every site admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteAdminMail {
    pub subject: String,
    pub body: String,
}

pub fn user_of(row: &UserRow) -> User {
    User {
        id: row.id.clone(),
        email: row.email.clone(),
        status: AccountStatus::parse(&row.status).unwrap_or(AccountStatus::Unverified),
        is_admin: row.is_admin,
    }
}

/// The directory over this process's store.
#[derive(Clone)]
pub struct LocalDirectory {
    pub store: Store,
    pub clock: Clock,
    pub mailer: super::mail::Mailer,
    /// Sessions unused for longer than this no longer authenticate.
    pub session_idle: i64,
}

impl LocalDirectory {
    async fn resolve_session(&self, token: &str) -> Result<Option<Identity>> {
        let now = self.clock.now();
        let Some(session) = self.store.session_by_token_hash(&sha256_hex(token)).await? else {
            return Ok(None);
        };
        let idle_expired = now - session.last_seen_at > self.session_idle;
        if session.revoked_at.is_some() || session.expires_at <= now || idle_expired {
            return Ok(None);
        }
        let Some(user) = self.store.user_by_id(&session.user_id).await? else {
            return Ok(None);
        };
        if user.suspended_at.is_some() {
            return Ok(None);
        }
        // Best effort: a session that cannot be touched (the disk is full) still authenticates.
        if now - session.last_seen_at > TOUCH_EVERY
            && let Err(e) = self.store.touch_session(&session.id, now).await
        {
            tracing::warn!(error = %e, "cannot record a session's use");
        }
        Ok(Some(Identity {
            user: user_of(&user),
            via: Via::Session {
                id: session.id,
                csrf_token: session.csrf_token,
            },
        }))
    }

    async fn resolve_api_token(&self, token: &str) -> Result<Option<Identity>> {
        let now = self.clock.now();
        let Some(row) = self.store.api_token_by_hash(&sha256_hex(token)).await? else {
            return Ok(None);
        };
        if row.revoked_at.is_some() || row.expires_at <= now {
            return Ok(None);
        }
        let Some(user) = self.store.user_by_id(&row.user_id).await? else {
            return Ok(None);
        };
        if user.suspended_at.is_some() || user.status != AccountStatus::Approved.as_str() {
            return Ok(None);
        }
        if row.last_used_at.is_none_or(|t| now - t > TOUCH_EVERY)
            && let Err(e) = self.store.touch_api_token(&row.id, now).await
        {
            tracing::warn!(error = %e, "cannot record an API token's use");
        }
        let scope = TokenScope::parse(&row.scope).unwrap_or(TokenScope::Read);
        Ok(Some(Identity {
            user: user_of(&user),
            via: Via::ApiToken {
                id: row.id,
                org_id: row.org_id,
                scope,
            },
        }))
    }

    async fn check_still_valid(&self, identity: &Identity) -> Result<bool> {
        let now = self.clock.now();
        let user_id = match &identity.via {
            // Not idle expiry: a map left open is the session in use.
            Via::Session { id, .. } => match self.store.session_by_id(id).await? {
                Some(s) if s.revoked_at.is_none() && s.expires_at > now => s.user_id,
                _ => return Ok(false),
            },
            Via::ApiToken { id, .. } => match self.store.api_token_by_id(id).await? {
                Some(t) if t.revoked_at.is_none() && t.expires_at > now => t.user_id,
                _ => return Ok(false),
            },
        };
        if user_id != identity.user.id {
            return Ok(false);
        }
        let Some(user) = self.store.user_by_id(&user_id).await? else {
            return Ok(false);
        };
        Ok(user.suspended_at.is_none() && user.status == AccountStatus::Approved.as_str())
    }

    async fn first_admin(&self) -> Result<Option<AdminOrg>> {
        let Some(admin) = self.store.first_site_admin().await? else {
            return Ok(None);
        };
        let mut tx = self.store.begin().await?;
        let org = tx.personal_org_of(&admin.id).await?;
        tx.commit().await?;
        Ok(org.map(|org_id| AdminOrg {
            user_id: admin.id,
            org_id,
        }))
    }
}

impl Directory for LocalDirectory {
    fn record_audit(&self, record: &AuditRecord) -> BoxFuture<'_, Result<()>> {
        let record = record.clone();
        Box::pin(async move {
            let Some(action) = AuditRecord::ACTIONS.iter().find(|a| **a == record.action) else {
                return Err(Error::bad_request(format!(
                    "{:?} is not an action other roles may audit.",
                    record.action
                )));
            };
            let cut = |s: String| -> String { s.chars().take(AuditRecord::MAX_FIELD).collect() };
            let entry = crate::store::AuditEntry {
                action,
                actor_id: Some(cut(record.actor_id)),
                actor_email: Some(cut(record.actor_email)),
                org_id: Some(cut(record.org_id)).filter(|o| !o.is_empty()),
                target: Some(cut(record.target)),
                ip: record.ip.map(cut),
                detail: Some(cut(record.detail)),
            };
            Ok(self.store.audit(&entry, self.clock.now()).await?)
        })
    }

    fn mail_site_admins(&self, mail: &SiteAdminMail) -> BoxFuture<'_, Result<usize>> {
        let mail = mail.clone();
        Box::pin(async move {
            let now = self.clock.now();
            let admins = self.store.site_admin_emails().await?;
            let mut tx = self.store.begin().await?;
            let mut queued = Vec::with_capacity(admins.len());
            for to in admins {
                let message = crate::store::NewMail {
                    to,
                    subject: mail.subject.clone(),
                    body: mail.body.clone(),
                };
                self.mailer.queue(&mut tx, &message, now).await?;
                queued.push(message);
            }
            tx.commit().await?;
            for message in &queued {
                self.mailer.sent(message);
            }
            Ok(queued.len())
        })
    }

    fn still_valid(&self, identity: &Identity) -> BoxFuture<'_, Result<bool>> {
        let identity = identity.clone();
        Box::pin(async move { self.check_still_valid(&identity).await })
    }

    fn identity_generation(&self) -> BoxFuture<'_, Result<i64>> {
        Box::pin(async move { Ok(self.store.identity_generation().await?) })
    }

    fn session(&self, token: &str) -> BoxFuture<'_, Result<Option<Identity>>> {
        let token = token.to_owned();
        Box::pin(async move { self.resolve_session(&token).await })
    }

    fn api_token(&self, token: &str) -> BoxFuture<'_, Result<Option<Identity>>> {
        let token = token.to_owned();
        Box::pin(async move { self.resolve_api_token(&token).await })
    }

    fn role_in(&self, org_id: &str, user_id: &str) -> BoxFuture<'_, Result<Option<Role>>> {
        let (org_id, user_id) = (org_id.to_owned(), user_id.to_owned());
        Box::pin(async move {
            Ok(self
                .store
                .role_in(&org_id, &user_id)
                .await?
                .and_then(|r| Role::parse(&r)))
        })
    }

    fn first_admin_org(&self) -> BoxFuture<'_, Result<Option<AdminOrg>>> {
        Box::pin(self.first_admin())
    }
}

/// The directory of a users process, over its internal API.
#[derive(Clone)]
pub struct HttpDirectory(pub InternalClient);

impl Directory for HttpDirectory {
    fn record_audit(&self, record: &AuditRecord) -> BoxFuture<'_, Result<()>> {
        let record = record.clone();
        Box::pin(async move {
            self.0
                .call(Method::POST, &["internal", "users", "audit"], Some(&record))
                .await
        })
    }

    fn mail_site_admins(&self, mail: &SiteAdminMail) -> BoxFuture<'_, Result<usize>> {
        let mail = mail.clone();
        Box::pin(async move {
            self.0
                .call(
                    Method::POST,
                    &["internal", "users", "site-admin-mail"],
                    Some(&mail),
                )
                .await
        })
    }

    fn still_valid(&self, identity: &Identity) -> BoxFuture<'_, Result<bool>> {
        let identity = identity.clone();
        Box::pin(async move {
            self.0
                .call(
                    Method::POST,
                    &["internal", "users", "still-valid"],
                    Some(&identity),
                )
                .await
        })
    }

    fn identity_generation(&self) -> BoxFuture<'_, Result<i64>> {
        Box::pin(async move {
            self.0
                .call(
                    Method::GET,
                    &["internal", "users", "identity-generation"],
                    None::<&()>,
                )
                .await
        })
    }

    fn session(&self, token: &str) -> BoxFuture<'_, Result<Option<Identity>>> {
        let body = SecretBody {
            token: token.to_owned(),
        };
        Box::pin(async move {
            self.0
                .call(Method::POST, &["internal", "users", "session"], Some(&body))
                .await
        })
    }

    fn api_token(&self, token: &str) -> BoxFuture<'_, Result<Option<Identity>>> {
        let body = SecretBody {
            token: token.to_owned(),
        };
        Box::pin(async move {
            self.0
                .call(
                    Method::POST,
                    &["internal", "users", "api-token"],
                    Some(&body),
                )
                .await
        })
    }

    fn role_in(&self, org_id: &str, user_id: &str) -> BoxFuture<'_, Result<Option<Role>>> {
        let (org_id, user_id) = (org_id.to_owned(), user_id.to_owned());
        Box::pin(async move {
            self.0
                .call(
                    Method::GET,
                    &["internal", "users", "orgs", &org_id, "members", &user_id],
                    None::<&()>,
                )
                .await
        })
    }

    fn first_admin_org(&self) -> BoxFuture<'_, Result<Option<AdminOrg>>> {
        Box::pin(async move {
            self.0
                .call(
                    Method::GET,
                    &["internal", "users", "first-admin-org"],
                    None::<&()>,
                )
                .await
        })
    }
}

/// The users role's internal API: [`Directory`] over HTTP. Mounted only in a users process,
/// behind the identity check; the edge never routes `/internal` from outside.
pub fn internal_router(directory: LocalDirectory) -> Router {
    Router::new()
        .route("/internal/users/session", post(session))
        .route("/internal/users/api-token", post(api_token))
        .route("/internal/users/orgs/{org}/members/{user}", get(membership))
        .route("/internal/users/first-admin-org", get(first_admin_org))
        .route("/internal/users/still-valid", post(still_valid))
        .route("/internal/users/site-admin-mail", post(site_admin_mail))
        .route("/internal/users/audit", post(record_audit))
        .route(
            "/internal/users/identity-generation",
            get(identity_generation),
        )
        .with_state(directory)
}

async fn session(
    State(d): State<LocalDirectory>,
    Json(body): Json<SecretBody>,
) -> Result<Json<Option<Identity>>> {
    Ok(Json(d.resolve_session(&body.token).await?))
}

async fn api_token(
    State(d): State<LocalDirectory>,
    Json(body): Json<SecretBody>,
) -> Result<Json<Option<Identity>>> {
    Ok(Json(d.resolve_api_token(&body.token).await?))
}

async fn membership(
    State(d): State<LocalDirectory>,
    Path((org, user)): Path<(String, String)>,
) -> Result<Json<Option<Role>>> {
    Ok(Json(d.role_in(&org, &user).await?))
}

async fn still_valid(
    State(d): State<LocalDirectory>,
    Json(identity): Json<Identity>,
) -> Result<Json<bool>> {
    Ok(Json(d.check_still_valid(&identity).await?))
}

async fn identity_generation(State(d): State<LocalDirectory>) -> Result<Json<i64>> {
    Ok(Json(d.store.identity_generation().await?))
}

async fn site_admin_mail(
    State(d): State<LocalDirectory>,
    Json(mail): Json<SiteAdminMail>,
) -> Result<Json<usize>> {
    Ok(Json(d.mail_site_admins(&mail).await?))
}

async fn record_audit(
    State(d): State<LocalDirectory>,
    Json(record): Json<AuditRecord>,
) -> Result<Json<()>> {
    Ok(Json(d.record_audit(&record).await?))
}

async fn first_admin_org(State(d): State<LocalDirectory>) -> Result<Json<Option<AdminOrg>>> {
    Ok(Json(d.first_admin().await?))
}

/// The session cookie's value, if the request carries one.
pub fn session_cookie(headers: &HeaderMap, secure: bool) -> Option<String> {
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
