//! The admin console's API: the waitlist, users, orgs, the mail outbox and the whole audit log.
//! Site admins only, from a browser session.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use serde::Deserialize;
use shared::users::{
    AccountStatus, AdminFlag, AuditEvent, OrgInfo, OutboxMessage, Rejection, UserInfo,
};

use super::UsersState;
use super::{APPROVAL_LINK_TTL, audit_event, issue_email_link, user_info};
use crate::error::{Error, Json, Result};
use crate::identity::{ClientIp, Identity, SiteAdmin};
use crate::store::{AuditEntry, NewMail, Tx, UserRow};

pub fn router() -> Router<UsersState> {
    Router::new()
        .route("/admin/waitlist", get(waitlist))
        .route("/admin/users", get(users))
        .route("/admin/users/{id}/approve", post(approve))
        .route("/admin/users/{id}/reject", post(reject))
        .route("/admin/users/{id}/suspend", post(suspend))
        .route("/admin/users/{id}/unsuspend", post(unsuspend))
        .route("/admin/users/{id}/admin", post(set_admin))
        .route("/admin/orgs", get(orgs))
        .route("/admin/outbox", get(outbox))
        .route("/admin/audit", get(audit))
}

fn admin_entry(
    action: &'static str,
    admin: &Identity,
    target: &UserRow,
    ip: &ClientIp,
) -> AuditEntry {
    AuditEntry {
        action,
        actor_id: Some(admin.user.id.clone()),
        actor_email: Some(admin.user.email.clone()),
        target: Some(target.id.clone()),
        ip: ip.0.clone(),
        detail: Some(target.email.clone()),
        ..AuditEntry::default()
    }
}

async fn target(tx: &mut Tx, id: &str) -> Result<UserRow> {
    tx.user_by_id(id)
        .await?
        .ok_or_else(|| Error::not_found("No such user."))
}

async fn waitlist(
    State(state): State<UsersState>,
    SiteAdmin(_): SiteAdmin,
) -> Result<Json<Vec<UserInfo>>> {
    let mut rows = state
        .store
        .search_users("", Some(AccountStatus::Waitlisted.as_str()), 500)
        .await?;
    // First come, first served.
    rows.reverse();
    Ok(Json(rows.iter().map(user_info).collect()))
}

#[derive(Debug, Deserialize)]
struct UserQuery {
    #[serde(default)]
    q: String,
    status: Option<AccountStatus>,
}

async fn users(
    State(state): State<UsersState>,
    SiteAdmin(_): SiteAdmin,
    Query(query): Query<UserQuery>,
) -> Result<Json<Vec<UserInfo>>> {
    let q: String = query.q.trim().to_lowercase().chars().take(254).collect();
    let rows = state
        .store
        .search_users(&q, query.status.map(AccountStatus::as_str), 200)
        .await?;
    Ok(Json(rows.iter().map(user_info).collect()))
}

async fn approve(
    State(state): State<UsersState>,
    SiteAdmin(admin): SiteAdmin,
    ip: ClientIp,
    Path(id): Path<String>,
) -> Result<Json<UserInfo>> {
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    let mut user = target(&mut tx, &id).await?;
    if user.status != AccountStatus::Waitlisted.as_str() {
        return Err(Error::conflict(format!(
            "Only waitlisted accounts can be approved; this one is {}.",
            user.status
        )));
    }
    user.status = AccountStatus::Approved.as_str().to_owned();
    user.updated_at = now;
    tx.update_user(&user).await?;
    let token = issue_email_link(&mut tx, &user.id, "login", APPROVAL_LINK_TTL, now).await?;
    let mail = NewMail {
        to: user.email.clone(),
        subject: "You're in: your Scopehub account is approved".into(),
        body: format!(
            "Good news: your early access to Scopehub is approved.\nLog in with this link (valid 24 hours), or with your password:\n\n{}\n",
            state.config.link("/login-link", &token)
        ),
    };
    state.mailer.queue(&mut tx, &mail, now).await?;
    tx.audit(&admin_entry("approved", &admin, &user, &ip), now)
        .await?;
    tx.commit().await?;
    state.mailer.sent(&mail);
    Ok(Json(user_info(&user)))
}

async fn reject(
    State(state): State<UsersState>,
    SiteAdmin(admin): SiteAdmin,
    ip: ClientIp,
    Path(id): Path<String>,
    Json(body): Json<Rejection>,
) -> Result<Json<UserInfo>> {
    let reason = body.validate().map_err(Error::validation)?;
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    let mut user = target(&mut tx, &id).await?;
    if user.status != AccountStatus::Waitlisted.as_str() {
        return Err(Error::conflict(format!(
            "Only waitlisted accounts can be rejected; this one is {}.",
            user.status
        )));
    }
    user.status = AccountStatus::Rejected.as_str().to_owned();
    user.rejection_reason = Some(reason.clone());
    user.updated_at = now;
    tx.update_user(&user).await?;
    tx.revoke_sessions_of(&user.id, None, now).await?;
    let mail = NewMail {
        to: user.email.clone(),
        subject: "Your Scopehub early-access request".into(),
        body: format!(
            "Thank you for your interest in Scopehub. We cannot offer you early access at this time.\n\nReason: {reason}\n"
        ),
    };
    state.mailer.queue(&mut tx, &mail, now).await?;
    tx.audit(
        &AuditEntry {
            detail: Some(format!("{}: {reason}", user.email)),
            ..admin_entry("rejected", &admin, &user, &ip)
        },
        now,
    )
    .await?;
    tx.commit().await?;
    state.mailer.sent(&mail);
    Ok(Json(user_info(&user)))
}

async fn suspend(
    State(state): State<UsersState>,
    SiteAdmin(admin): SiteAdmin,
    ip: ClientIp,
    Path(id): Path<String>,
) -> Result<Json<UserInfo>> {
    if id == admin.user.id {
        return Err(Error::conflict("You cannot suspend yourself."));
    }
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    let mut user = target(&mut tx, &id).await?;
    if user.suspended_at.is_none() {
        user.suspended_at = Some(now);
        user.updated_at = now;
        tx.update_user(&user).await?;
        // Suspension takes effect at once: every session and token of the account ends.
        tx.revoke_sessions_of(&user.id, None, now).await?;
        tx.revoke_api_tokens_of(&user.id, None, now).await?;
        tx.audit(&admin_entry("suspended", &admin, &user, &ip), now)
            .await?;
    }
    tx.commit().await?;
    Ok(Json(user_info(&user)))
}

async fn unsuspend(
    State(state): State<UsersState>,
    SiteAdmin(admin): SiteAdmin,
    ip: ClientIp,
    Path(id): Path<String>,
) -> Result<Json<UserInfo>> {
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    let mut user = target(&mut tx, &id).await?;
    if user.suspended_at.is_some() {
        user.suspended_at = None;
        user.updated_at = now;
        tx.update_user(&user).await?;
        tx.audit(&admin_entry("unsuspended", &admin, &user, &ip), now)
            .await?;
    }
    tx.commit().await?;
    Ok(Json(user_info(&user)))
}

async fn set_admin(
    State(state): State<UsersState>,
    SiteAdmin(admin): SiteAdmin,
    ip: ClientIp,
    Path(id): Path<String>,
    Json(body): Json<AdminFlag>,
) -> Result<Json<UserInfo>> {
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    tx.lock_site_admins().await?;
    let mut user = target(&mut tx, &id).await?;
    if body.is_admin
        && (user.status != AccountStatus::Approved.as_str() || user.suspended_at.is_some())
    {
        return Err(Error::conflict(
            "Only approved, active accounts can be made admins.",
        ));
    }
    if user.is_admin != body.is_admin {
        user.is_admin = body.is_admin;
        user.updated_at = now;
        tx.update_user(&user).await?;
        if tx.count_admins().await? == 0 {
            return Err(Error::conflict(
                "Scopehub must keep at least one site admin.",
            ));
        }
        let action = if body.is_admin {
            "admin_granted"
        } else {
            "admin_revoked"
        };
        tx.audit(&admin_entry(action, &admin, &user, &ip), now)
            .await?;
    }
    tx.commit().await?;
    Ok(Json(user_info(&user)))
}

async fn orgs(
    State(state): State<UsersState>,
    SiteAdmin(_): SiteAdmin,
) -> Result<Json<Vec<OrgInfo>>> {
    let rows = state.store.all_orgs(500).await?;
    Ok(Json(
        rows.into_iter()
            .map(|o| OrgInfo {
                id: o.id,
                name: o.name,
                members: o.members,
                created_at: o.created_at,
            })
            .collect(),
    ))
}

async fn outbox(
    State(state): State<UsersState>,
    SiteAdmin(_): SiteAdmin,
) -> Result<Json<Vec<OutboxMessage>>> {
    let rows = state.store.outbox(200).await?;
    // With SMTP the outbox is only a queue: its links are for their recipients, not for site
    // admins. Without it (Airplane Mode) the outbox is where mail is read.
    let delivered_by_smtp = state.mailer.has_smtp();
    Ok(Json(
        rows.into_iter()
            .map(|m| OutboxMessage {
                id: m.id,
                to: m.to_email,
                subject: m.subject,
                body: if delivered_by_smtp {
                    super::mail::redact_links(&m.body)
                } else {
                    m.body
                },
                created_at: m.created_at,
                status: m.status,
                error: m.error,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

async fn audit(
    State(state): State<UsersState>,
    SiteAdmin(_): SiteAdmin,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEvent>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let rows = state.store.audit_events(None, q.before, limit).await?;
    Ok(Json(rows.into_iter().map(audit_event).collect()))
}

/// Makes `email` an approved, active site admin (creating the account with a random password if
/// needed) and returns a one-time login link. Used by `scopehub admin create`.
pub async fn create_site_admin(
    store: &crate::store::Store,
    users: &super::UsersConfig,
    email: &str,
    now: i64,
) -> Result<String> {
    let mut tx = store.begin().await?;
    let mut user = match tx.user_by_email(email).await? {
        Some(user) => user,
        None => {
            let user = UserRow {
                id: crate::secrets::new_id(),
                email: email.to_owned(),
                password_hash: super::password::Passwords::default()
                    .hash(&crate::secrets::random_hex(32))
                    .await?,
                status: AccountStatus::Approved.as_str().to_owned(),
                rejection_reason: None,
                is_admin: true,
                suspended_at: None,
                email_verified_at: Some(now),
                created_at: now,
                updated_at: now,
            };
            tx.insert_user(&user).await?;
            user
        }
    };
    user.status = AccountStatus::Approved.as_str().to_owned();
    user.is_admin = true;
    user.suspended_at = None;
    user.email_verified_at.get_or_insert(now);
    user.updated_at = now;
    tx.update_user(&user).await?;
    let token = issue_email_link(&mut tx, &user.id, "login", APPROVAL_LINK_TTL, now).await?;
    let entry = AuditEntry {
        action: "admin_granted",
        target: Some(user.id.clone()),
        detail: Some(format!("{email} by `scopehub admin create`")),
        ..AuditEntry::default()
    };
    tx.audit(&entry, now).await?;
    tx.commit().await?;
    Ok(users.link("/login-link", &token))
}
