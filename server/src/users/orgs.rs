//! Orgs, memberships and invites. Every route under `/orgs/{org}` checks the caller's role in that
//! org first; non-members get 404 so that org ids reveal nothing.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use serde::Deserialize;
use shared::users::{
    AcceptInvite, AccountStatus, AuditEvent, InviteInfo, InvitePreview, MemberInfo, NewInvite,
    OrgMembership, OrgName, Role, RoleChange, TokenOnly, check_password,
};

use super::OrgRole;
use super::UsersState;
use super::directory::session_cookie_header;
use super::{INVITE_TTL, accounts, audit_event, limits};
use crate::error::{Error, Json, Result};
use crate::identity::{self, Approved, ClientIp, Identity, MaybeUser, Via};
use crate::secrets::{new_id, new_token, sha256_hex};
use crate::store::{AuditEntry, InviteRow, NewMail, OrgRow, UserRow};

pub fn router() -> Router<UsersState> {
    Router::new()
        .route("/orgs", get(my_orgs).post(create_org))
        .route("/orgs/{org}", patch(rename_org))
        .route("/orgs/{org}/members", get(members))
        .route(
            "/orgs/{org}/members/{user}",
            patch(change_role).delete(remove_member),
        )
        .route("/orgs/{org}/invites", get(invites).post(invite))
        .route("/orgs/{org}/invites/{id}", delete(revoke_invite))
        .route("/orgs/{org}/audit", get(org_audit))
        .route("/invites/{token}", get(preview_invite))
        .route("/invites/accept", post(accept_invite))
}

fn org_entry(action: &'static str, actor: &Identity, org_id: &str, ip: &ClientIp) -> AuditEntry {
    AuditEntry {
        action,
        actor_id: Some(actor.user.id.clone()),
        actor_email: Some(actor.user.email.clone()),
        org_id: Some(org_id.to_owned()),
        ip: ip.0.clone(),
        ..AuditEntry::default()
    }
}

async fn my_orgs(
    State(state): State<UsersState>,
    Approved(identity): Approved,
) -> Result<Json<Vec<OrgMembership>>> {
    let token_org = match &identity.via {
        Via::ApiToken { org_id, .. } => Some(org_id.clone()),
        Via::Session { .. } => None,
    };
    let orgs = state
        .store
        .memberships_of(&identity.user.id)
        .await?
        .into_iter()
        .filter(|m| token_org.as_ref().is_none_or(|o| *o == m.org_id))
        .map(|m| OrgMembership {
            id: m.org_id,
            name: m.org_name,
            role: Role::parse(&m.role).unwrap_or(Role::Viewer),
        })
        .collect();
    Ok(Json(orgs))
}

async fn create_org(
    State(state): State<UsersState>,
    Approved(identity): Approved,
    ip: ClientIp,
    Json(body): Json<OrgName>,
) -> Result<(StatusCode, Json<OrgMembership>)> {
    let name = body.validate().map_err(Error::validation)?;
    if identity.session_id().is_none() {
        return Err(Error::forbidden(
            "Orgs are created from a browser session, not with an API token.",
        ));
    }
    let now = state.clock.now();
    let org = OrgRow {
        id: new_id(),
        name: name.clone(),
        personal_of: None,
        created_at: now,
    };
    let mut tx = state.store.begin().await?;
    tx.insert_org(&org).await?;
    tx.upsert_membership(&org.id, &identity.user.id, Role::Admin.as_str(), now)
        .await?;
    tx.audit(
        &AuditEntry {
            target: Some(org.id.clone()),
            ..org_entry("org_created", &identity, &org.id, &ip)
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(OrgMembership {
            id: org.id,
            name,
            role: Role::Admin,
        }),
    ))
}

async fn rename_org(
    State(state): State<UsersState>,
    OrgRole {
        identity,
        org,
        role,
        ..
    }: OrgRole<identity::Admin>,
    ip: ClientIp,
    Json(body): Json<OrgName>,
) -> Result<Json<OrgMembership>> {
    let name = body.validate().map_err(Error::validation)?;
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    if !tx.rename_org(&org, &name).await? {
        return Err(Error::not_found("No such org."));
    }
    tx.audit(
        &AuditEntry {
            detail: Some(format!("renamed to {name}")),
            ..org_entry("org_renamed", &identity, &org, &ip)
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(OrgMembership {
        id: org,
        name,
        role,
    }))
}

async fn members(
    State(state): State<UsersState>,
    OrgRole { org, .. }: OrgRole<identity::Viewer>,
) -> Result<Json<Vec<MemberInfo>>> {
    let list = state
        .store
        .members(&org)
        .await?
        .into_iter()
        .map(|m| MemberInfo {
            user_id: m.user_id,
            email: m.email,
            role: Role::parse(&m.role).unwrap_or(Role::Viewer),
            joined_at: m.created_at,
        })
        .collect();
    Ok(Json(list))
}

async fn change_role(
    State(state): State<UsersState>,
    OrgRole { identity, org, .. }: OrgRole<identity::Admin>,
    ip: ClientIp,
    Path((_, user)): Path<(String, String)>,
    Json(body): Json<RoleChange>,
) -> Result<StatusCode> {
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    tx.lock_org_admins(&org).await?;
    let current = tx
        .role_in(&org, &user)
        .await?
        .ok_or_else(|| Error::not_found("No such member."))?;
    tx.upsert_membership(&org, &user, body.role.as_str(), now)
        .await?;
    if current == Role::Admin.as_str()
        && body.role != Role::Admin
        && tx.count_org_admins(&org).await? == 0
    {
        return Err(Error::conflict("An org must keep at least one admin."));
    }
    let detail = format!("{current} → {}", body.role.as_str());
    tx.audit(
        &AuditEntry {
            target: Some(user),
            detail: Some(detail),
            ..org_entry("role_changed", &identity, &org, &ip)
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a member (org admins), or leaves the org (any member removing themselves).
async fn remove_member(
    State(state): State<UsersState>,
    Approved(identity): Approved,
    ip: ClientIp,
    Path((org, user)): Path<(String, String)>,
) -> Result<StatusCode> {
    let leaving = user == identity.user.id;
    let needed = if leaving { Role::Viewer } else { Role::Admin };
    state.require_role(&identity, &org, needed).await?;
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    tx.lock_org_admins(&org).await?;
    if !tx.delete_membership(&org, &user).await? {
        return Err(Error::not_found("No such member."));
    }
    if tx.count_org_admins(&org).await? == 0 {
        return Err(Error::conflict(
            "An org must keep at least one admin: make someone else admin first.",
        ));
    }
    // API tokens for an org end with the membership.
    tx.revoke_api_tokens_of(&user, Some(&org), now).await?;
    let action = if leaving {
        "member_left"
    } else {
        "member_removed"
    };
    tx.audit(
        &AuditEntry {
            target: Some(user),
            ..org_entry(action, &identity, &org, &ip)
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

fn invite_state(i: &InviteRow, now: i64) -> &'static str {
    if i.accepted_at.is_some() {
        "accepted"
    } else if i.revoked_at.is_some() {
        "revoked"
    } else if i.expires_at <= now {
        "expired"
    } else {
        "pending"
    }
}

fn invite_info(i: InviteRow, org_name: &str, now: i64, link: Option<String>) -> InviteInfo {
    InviteInfo {
        state: invite_state(&i, now).to_owned(),
        id: i.id,
        org_id: i.org_id,
        org_name: org_name.to_owned(),
        email: i.email,
        role: Role::parse(&i.role).unwrap_or(Role::Viewer),
        invited_by: i.invited_by,
        created_at: i.created_at,
        expires_at: i.expires_at,
        link,
    }
}

async fn invites(
    State(state): State<UsersState>,
    OrgRole { org, .. }: OrgRole<identity::Admin>,
) -> Result<Json<Vec<InviteInfo>>> {
    let now = state.clock.now();
    let name = state
        .store
        .org(&org)
        .await?
        .map(|o| o.name)
        .unwrap_or_default();
    let list = state
        .store
        .invites_of(&org)
        .await?
        .into_iter()
        .map(|i| invite_info(i, &name, now, None))
        .collect();
    Ok(Json(list))
}

async fn invite(
    State(state): State<UsersState>,
    OrgRole { identity, org, .. }: OrgRole<identity::Admin>,
    ip: ClientIp,
    Json(body): Json<NewInvite>,
) -> Result<(StatusCode, Json<InviteInfo>)> {
    let email = body.validate().map_err(Error::validation)?;
    let org_row = state
        .store
        .org(&org)
        .await?
        .ok_or_else(|| Error::not_found("No such org."))?;
    let now = state.clock.now();
    // Two links: the inviter's to copy (accepted only by someone logged in as the address), and
    // the emailed one, which proves the address and so may create the account.
    let (token, token_hash) = new_token("shi_");
    let (mail_token, mail_token_hash) = new_token("shi_");
    let row = InviteRow {
        id: new_id(),
        token_hash,
        org_id: org.clone(),
        email: email.clone(),
        role: body.role.as_str().to_owned(),
        invited_by: identity.user.id.clone(),
        created_at: now,
        expires_at: now + INVITE_TTL,
        accepted_at: None,
        accepted_by: None,
        revoked_at: None,
        mail_token_hash: Some(mail_token_hash),
    };
    let link = state.config.link("/invite", &token);
    let mailed_link = state.config.link("/invite", &mail_token);
    let mail = NewMail {
        to: email.clone(),
        subject: format!(
            "{} invited you to {} on Scopehub",
            identity.user.email, org_row.name
        ),
        body: format!(
            "{} invited you to join the org \"{}\" on Scopehub as {}.\nAccept within 7 days:\n\n{mailed_link}\n",
            identity.user.email,
            org_row.name,
            body.role.as_str()
        ),
    };
    let mut tx = state.store.begin().await?;
    tx.insert_invite(&row).await?;
    state.mailer.queue(&mut tx, &mail, now).await?;
    tx.audit(
        &AuditEntry {
            target: Some(email),
            detail: Some(format!("role {}", body.role.as_str())),
            ..org_entry("invite_sent", &identity, &org, &ip)
        },
        now,
    )
    .await?;
    tx.commit().await?;
    state.mailer.sent(&mail);
    Ok((
        StatusCode::CREATED,
        Json(invite_info(row, &org_row.name, now, Some(link))),
    ))
}

async fn revoke_invite(
    State(state): State<UsersState>,
    OrgRole { identity, org, .. }: OrgRole<identity::Admin>,
    ip: ClientIp,
    Path((_, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    if !tx.revoke_invite(&org, &id, now).await? {
        return Err(Error::not_found("No pending invite with that id."));
    }
    tx.audit(
        &AuditEntry {
            target: Some(id),
            ..org_entry("invite_revoked", &identity, &org, &ip)
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

async fn org_audit(
    State(state): State<UsersState>,
    OrgRole { org, .. }: OrgRole<identity::Admin>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEvent>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let rows = state
        .store
        .audit_events(Some(&org), q.before, limit)
        .await?;
    Ok(Json(rows.into_iter().map(audit_event).collect()))
}

/// A live invite for a token, or the one error every bad token gets.
/// A pending invite by either of its links, and whether the link was the emailed one (which
/// proves that whoever holds it reads the invited address's mail).
async fn live_invite(state: &UsersState, token: &str) -> Result<(InviteRow, bool)> {
    let invalid = || Error::not_found("This invite is invalid, used, revoked or expired.");
    TokenOnly {
        token: token.to_owned(),
    }
    .validate()
    .map_err(|_| invalid())?;
    let digest = sha256_hex(token);
    let invite = state
        .store
        .invite_by_token_hash(&digest)
        .await?
        .ok_or_else(invalid)?;
    if invite_state(&invite, state.clock.now()) != "pending" {
        return Err(invalid());
    }
    let emailed = invite.mail_token_hash.as_deref() == Some(digest.as_str());
    Ok((invite, emailed))
}

async fn preview_invite(
    State(state): State<UsersState>,
    Path(token): Path<String>,
) -> Result<Json<InvitePreview>> {
    let (invite, emailed) = live_invite(&state, &token).await?;
    let org = state
        .store
        .org(&invite.org_id)
        .await?
        .ok_or_else(|| Error::not_found("This invite's org no longer exists."))?;
    let inviter = state
        .store
        .user_by_id(&invite.invited_by)
        .await?
        .map(|u| u.email)
        .unwrap_or_default();
    // Whether the address has an account is told only to whoever reads its mail: the inviter's
    // copyable link must not let an org admin probe which addresses are registered.
    let has_account = emailed && state.store.user_by_email(&invite.email).await?.is_some();
    Ok(Json(InvitePreview {
        org_name: org.name,
        email: invite.email,
        role: Role::parse(&invite.role).unwrap_or(Role::Viewer),
        invited_by: inviter,
        expires_at: invite.expires_at,
        has_account,
        emailed,
    }))
}

/// Accepts an invite: as the logged-in invitee, or (no account yet) by creating the account with a
/// password. The emailed link proves the address, so the account skips verification and the
/// waitlist.
async fn accept_invite(
    State(state): State<UsersState>,
    ip: ClientIp,
    headers: HeaderMap,
    MaybeUser(identity): MaybeUser,
    Json(body): Json<AcceptInvite>,
) -> Result<Response> {
    let now = state.clock.now();
    limits::hit(
        &state.store,
        &[(&limits::LINK_CLIENT, limits::client(&ip))],
        now,
    )
    .await?;
    let (invite, emailed) = live_invite(&state, &body.token).await?;
    // A new account's password is hashed before the transaction (which would otherwise hold the
    // database's write lock meanwhile).
    let new_password_hash = match (&identity, emailed) {
        (None, true) if state.store.user_by_email(&invite.email).await?.is_none() => {
            let password = body.password.clone().unwrap_or_default();
            if let Err(message) = check_password(&password) {
                let mut fields = shared::FieldErrors::new();
                fields.insert("password".into(), message);
                return Err(Error::validation(fields));
            }
            Some(state.passwords.hash(&password).await?)
        }
        _ => None,
    };
    let mut tx = state.store.begin().await?;
    let existing = tx.user_by_email(&invite.email).await?;
    let (mut user, new_session) = match (identity, existing) {
        (Some(identity), _) if identity.user.email != invite.email => {
            return Err(Error::forbidden(format!(
                "This invite is for {}; you are logged in as {}.",
                invite.email, identity.user.email
            )));
        }
        (Some(identity), _) if identity.session_id().is_none() => {
            return Err(Error::forbidden(
                "Invites are accepted from a browser session.",
            ));
        }
        (Some(_), Some(user)) => (user, false),
        (Some(_), None) => return Err(crate::identity::unauthorized()),
        (None, Some(_)) => {
            return Err(Error::client(
                StatusCode::UNAUTHORIZED,
                shared::ErrorCode::Unauthorized,
                format!("Log in as {} to accept this invite.", invite.email),
            ));
        }
        (None, None) if !emailed => {
            return Err(Error::client(
                StatusCode::UNAUTHORIZED,
                shared::ErrorCode::Unauthorized,
                format!(
                    "This link cannot create an account. Use the link we emailed to {0}, or sign \
                     up as {0} and open this link again once logged in.",
                    invite.email
                ),
            ));
        }
        (None, None) => {
            let Some(password_hash) = new_password_hash else {
                // The account appeared since it was looked up: log in to accept.
                return Err(Error::client(
                    StatusCode::CONFLICT,
                    shared::ErrorCode::Conflict,
                    format!("Log in as {} to accept this invite.", invite.email),
                ));
            };
            let user = UserRow {
                id: new_id(),
                email: invite.email.clone(),
                password_hash,
                status: AccountStatus::Approved.as_str().to_owned(),
                rejection_reason: None,
                is_admin: false,
                suspended_at: None,
                email_verified_at: Some(now),
                created_at: now,
                updated_at: now,
            };
            tx.insert_user(&user).await?;
            tx.audit(
                &AuditEntry {
                    detail: Some("through an invite".into()),
                    ..user_entry("signup", &user, &ip)
                },
                now,
            )
            .await?;
            (user, true)
        }
    };
    if user.suspended_at.is_some() {
        return Err(Error::forbidden("This account is suspended."));
    }
    let accepted = tx.accept_invite(&invite.token_hash, &user.id, now).await?;
    let Some(accepted) = accepted else {
        return Err(Error::not_found(
            "This invite is invalid, used, revoked or expired.",
        ));
    };
    // The invite skips the waitlist (and proves the address).
    if user.status != AccountStatus::Approved.as_str() {
        user.status = AccountStatus::Approved.as_str().to_owned();
        user.email_verified_at.get_or_insert(now);
        user.updated_at = now;
        tx.update_user(&user).await?;
    }
    // Accepting never lowers a role the user already has in the org.
    let current = tx
        .role_in(&accepted.org_id, &user.id)
        .await?
        .and_then(|r| Role::parse(&r));
    let invited = Role::parse(&accepted.role).unwrap_or(Role::Viewer);
    let role = current.map_or(invited, |c| c.max(invited));
    tx.upsert_membership(&accepted.org_id, &user.id, role.as_str(), now)
        .await?;
    accounts::ensure_personal_org(&mut tx, &user, now).await?;
    tx.audit(
        &AuditEntry {
            org_id: Some(accepted.org_id.clone()),
            detail: Some(format!("role {}", role.as_str())),
            ..user_entry("invite_accepted", &user, &ip)
        },
        now,
    )
    .await?;
    let session = if new_session {
        Some(accounts::start_session(&state, &mut tx, &user, &ip, &headers, now).await?)
    } else {
        None
    };
    tx.commit().await?;
    let org = OrgMembership {
        id: accepted.org_id,
        name: state
            .store
            .org(&invite.org_id)
            .await?
            .map(|o| o.name)
            .unwrap_or_default(),
        role,
    };
    let mut response = Json(org).into_response();
    if let Some((token, _csrf)) = session {
        let cookie = session_cookie_header(
            &token,
            state.config.session_absolute,
            state.config.secure_cookies,
        );
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

fn user_entry(action: &'static str, user: &UserRow, ip: &ClientIp) -> AuditEntry {
    AuditEntry {
        action,
        actor_id: Some(user.id.clone()),
        actor_email: Some(user.email.clone()),
        target: Some(user.id.clone()),
        ip: ip.0.clone(),
        ..AuditEntry::default()
    }
}
