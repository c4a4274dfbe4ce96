//! API tokens: per user and org, read or write scope, shown once, revocable. Managed only from a
//! browser session, so a leaked token cannot mint more tokens.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use shared::users::{ApiTokenInfo, NewApiToken, Role, TokenScope};

use super::UsersState;
use crate::clock::DAY;
use crate::error::{Error, Json, Result};
use crate::identity::{ClientIp, SessionUser};
use crate::secrets::{new_id, new_token};
use crate::store::{ApiTokenRow, AuditEntry};

pub fn router() -> Router<UsersState> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/{id}", delete(revoke))
}

fn info(t: ApiTokenRow, secret: Option<String>) -> ApiTokenInfo {
    ApiTokenInfo {
        revoked: t.revoked_at.is_some(),
        id: t.id,
        org_id: t.org_id,
        name: t.name,
        scope: TokenScope::parse(&t.scope).unwrap_or(TokenScope::Read),
        created_at: t.created_at,
        expires_at: t.expires_at,
        last_used_at: t.last_used_at,
        token: secret,
    }
}

async fn list(
    State(state): State<UsersState>,
    SessionUser(identity): SessionUser,
) -> Result<Json<Vec<ApiTokenInfo>>> {
    let tokens = state.store.api_tokens_of(&identity.user.id).await?;
    Ok(Json(tokens.into_iter().map(|t| info(t, None)).collect()))
}

async fn create(
    State(state): State<UsersState>,
    SessionUser(identity): SessionUser,
    ip: ClientIp,
    Json(body): Json<NewApiToken>,
) -> Result<(StatusCode, Json<ApiTokenInfo>)> {
    let (name, days) = body.validate().map_err(Error::validation)?;
    if identity.status() != shared::users::AccountStatus::Approved {
        return Err(Error::forbidden("Your account is waiting for approval."));
    }
    // Any member may hold a token; what it can do is still limited by their role.
    state
        .require_role(&identity, &body.org_id, Role::Viewer)
        .await?;
    let now = state.clock.now();
    let (secret, token_hash) = new_token("sha_");
    let row = ApiTokenRow {
        id: new_id(),
        token_hash,
        user_id: identity.user.id.clone(),
        org_id: body.org_id.clone(),
        name,
        scope: body.scope.as_str().to_owned(),
        created_at: now,
        expires_at: now + i64::from(days) * DAY,
        last_used_at: None,
        revoked_at: None,
    };
    let mut tx = state.store.begin().await?;
    tx.insert_api_token(&row).await?;
    tx.audit(
        &AuditEntry {
            action: "token_created",
            actor_id: Some(identity.user.id.clone()),
            actor_email: Some(identity.user.email.clone()),
            org_id: Some(row.org_id.clone()),
            target: Some(row.id.clone()),
            ip: ip.0,
            detail: Some(format!("{} ({})", row.name, row.scope)),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(info(row, Some(secret)))))
}

async fn revoke(
    State(state): State<UsersState>,
    SessionUser(identity): SessionUser,
    ip: ClientIp,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    let org_id = tx
        .revoke_api_token(&identity.user.id, &id, now)
        .await?
        .ok_or_else(|| Error::not_found("No live token with that id."))?;
    tx.audit(
        &AuditEntry {
            action: "token_revoked",
            actor_id: Some(identity.user.id.clone()),
            actor_email: Some(identity.user.email.clone()),
            org_id: Some(org_id),
            target: Some(id),
            ip: ip.0,
            detail: None,
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
