//! The users service: accounts, sessions, the early-access waitlist, orgs, invites, API tokens,
//! the admin console's API, the audit log and mail.
//!
//! Owns the routes under `/api/users`, `/api/orgs`, `/api/invites`, `/api/tokens` and `/api/admin`,
//! the deployment-wide `/api/version` and `/api/client-errors` (`meta.rs`) and, through `store/`,
//! the tables of migration 0002. Identity comes from the edge (`identity`); this module never
//! reads a token header itself. Other roles reach it only through [`directory::Directory`].

pub mod accounts;
pub mod admin;
pub mod directory;
pub mod limits;
pub mod mail;
pub mod meta;
pub mod orgs;
pub mod password;
pub mod tokens;

use std::sync::Arc;

use axum::Router;
use shared::users::{AccountStatus, AuditEvent, UserInfo};
use url::Url;

use self::mail::Mailer;
use crate::clock::{Clock, DAY, HOUR};
use crate::store::{AuditRow, Store, UserRow};

/// What the users role's handlers use. Cheap to clone.
#[derive(Clone)]
pub struct UsersState {
    pub store: Store,
    pub clock: Clock,
    pub config: Arc<UsersConfig>,
    pub mailer: Mailer,
    pub client_errors: meta::ClientErrorLimiter,
    /// The process's bound on concurrent password hashing.
    pub passwords: password::Passwords,
}

impl UsersState {
    pub fn new(store: Store, clock: Clock, config: UsersConfig, mailer: Mailer) -> Self {
        UsersState {
            store,
            clock,
            config: Arc::new(config),
            mailer,
            client_errors: meta::ClientErrorLimiter::default(),
            passwords: password::Passwords::default(),
        }
    }

    /// The same, counting password hashes in `metrics`.
    pub fn with_metrics(mut self, metrics: &crate::telemetry::Metrics) -> Self {
        self.passwords = self.passwords.counting(metrics.password_hashes());
        self
    }

    /// The contract other roles use, answered from this role's store.
    pub fn directory(&self) -> directory::LocalDirectory {
        directory::LocalDirectory {
            store: self.store.clone(),
            clock: self.clock.clone(),
            mailer: self.mailer.clone(),
            session_idle: self.config.session_idle,
        }
    }

    /// The caller's role in `org_id`, at least `needed` (404 for non-members, 403 below it).
    pub(crate) async fn require_role(
        &self,
        identity: &crate::identity::Identity,
        org_id: &str,
        needed: shared::users::Role,
    ) -> crate::error::Result<shared::users::Role> {
        let member = self
            .store
            .role_in(org_id, &identity.user.id)
            .await?
            .and_then(|r| shared::users::Role::parse(&r));
        identity.role_in(org_id, member, needed)
    }

    /// The full row of a caller, for the handlers that change it.
    pub(crate) async fn user_row(
        &self,
        user: &crate::identity::User,
    ) -> crate::error::Result<UserRow> {
        self.store
            .user_by_id(&user.id)
            .await?
            .ok_or_else(crate::identity::unauthorized)
    }
}

/// How the users service behaves in this deployment.
#[derive(Debug, Clone)]
pub struct UsersConfig {
    /// Where links in mail point, and the origin browsers must send.
    pub public_url: Url,
    /// `Secure` and `__Host-` cookies (on whenever the public URL is https).
    pub secure_cookies: bool,
    /// No waitlist: verified accounts are approved at once.
    pub open_signup: bool,
    /// Airplane Mode: the first account to sign up is an approved site admin.
    pub first_user_is_admin: bool,
    pub session_idle: i64,
    pub session_absolute: i64,
}

impl UsersConfig {
    pub fn new(public_url: Url, first_user_is_admin: bool) -> Self {
        UsersConfig {
            secure_cookies: public_url.scheme() == "https",
            public_url,
            open_signup: false,
            first_user_is_admin,
            session_idle: 7 * DAY,
            session_absolute: 30 * DAY,
        }
    }

    /// An absolute link into the web app, e.g. `link("verify", token)`.
    pub fn link(&self, page: &str, token: &str) -> String {
        let mut url = self.public_url.clone();
        url.set_path(page);
        url.set_query(Some(&format!("token={token}")));
        url.to_string()
    }
}

/// The org in the path's `{org}`, for an approved caller with at least role `R` in it (404 for
/// non-members and for API tokens of other orgs, 403 below `R`).
pub struct OrgRole<R> {
    pub identity: crate::identity::Identity,
    pub org: String,
    pub role: shared::users::Role,
    _level: std::marker::PhantomData<R>,
}

impl<R: crate::identity::MinRole> axum::extract::FromRequestParts<UsersState> for OrgRole<R> {
    type Rejection = crate::error::Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &UsersState,
    ) -> crate::error::Result<Self> {
        let no_such_org = || crate::error::Error::not_found("No such org.");
        let crate::identity::Approved(identity) =
            crate::identity::Approved::from_request_parts(parts, state).await?;
        let org = crate::identity::path_param(parts, state, "org")
            .await
            .ok_or_else(no_such_org)?;
        let role = state.require_role(&identity, &org, R::ROLE).await?;
        Ok(OrgRole {
            identity,
            org,
            role,
            _level: std::marker::PhantomData,
        })
    }
}

/// Lifetimes of single-use links.
pub const VERIFY_LINK_TTL: i64 = DAY;
pub const RESET_LINK_TTL: i64 = HOUR;
pub const LOGIN_LINK_TTL: i64 = 15 * 60 * 1000;
/// Approval mail carries a login link that may be read later than a requested one.
pub const APPROVAL_LINK_TTL: i64 = DAY;
pub const INVITE_TTL: i64 = 7 * DAY;

/// The users role's public API, relative to `/api`.
pub fn api_router(state: UsersState) -> Router {
    Router::new()
        .merge(accounts::router())
        .merge(orgs::router())
        .merge(tokens::router())
        .merge(admin::router())
        .merge(meta::router())
        .with_state(state)
}

/// Creates a single-use emailed link token for `user_id`; returns the secret for the mail.
pub(crate) async fn issue_email_link(
    tx: &mut crate::store::Tx,
    user_id: &str,
    purpose: &str,
    ttl: i64,
    now: i64,
) -> crate::store::Result<String> {
    let (token, token_hash) = crate::secrets::new_token("she_");
    tx.insert_email_token(&crate::store::EmailTokenRow {
        token_hash,
        user_id: user_id.to_owned(),
        purpose: purpose.to_owned(),
        created_at: now,
        expires_at: now + ttl,
        used_at: None,
    })
    .await?;
    Ok(token)
}

pub fn user_info(u: &UserRow) -> UserInfo {
    UserInfo {
        id: u.id.clone(),
        email: u.email.clone(),
        status: AccountStatus::parse(&u.status).unwrap_or(AccountStatus::Unverified),
        is_admin: u.is_admin,
        suspended: u.suspended_at.is_some(),
        rejection_reason: u.rejection_reason.clone(),
        created_at: u.created_at,
    }
}

pub fn audit_event(r: AuditRow) -> AuditEvent {
    AuditEvent {
        id: r.id,
        at: r.at,
        action: r.action,
        actor_id: r.actor_id,
        actor_email: r.actor_email,
        org_id: r.org_id,
        target: r.target,
        ip: r.ip,
        detail: r.detail,
    }
}
