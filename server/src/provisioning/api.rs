//! `/api/instances…` and `/api/admin/instances…`.
//!
//! Viewers see instances; editors create, rename and rotate or revoke probe tokens; org admins
//! suspend, resume and delete, and decide what members may do from the map (controls, terminals). Site admins can suspend any instance with a reason its org sees;
//! only a site admin resumes what a site admin suspended.

use std::marker::PhantomData;

use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{delete, get, post};
use serde::Deserialize;
use shared::instances::{
    InstanceDetails, InstanceInfo, InstanceSettings, InstanceState, InstanceWithToken, NewInstance,
    Suspension,
};
use shared::users::{OrgName, Role};

use super::{Actor, ProvisioningState, event_info, info, record, state_of, token_info, transition};
use crate::error::{Error, Json, Result};
use crate::identity::{self, Approved, ClientIp, Identity, MinRole, SiteAdmin};
use crate::secrets::{new_token, random_hex};
use crate::store::{InstanceRow, ProbeTokenRow, Tx};

pub fn router() -> Router<ProvisioningState> {
    Router::new()
        .route("/instances", get(list).post(create))
        .route("/instances/{id}", get(details).patch(rename).delete(remove))
        .route(
            "/instances/{id}/settings",
            axum::routing::patch(change_settings),
        )
        .route("/instances/{id}/suspend", post(suspend))
        .route("/instances/{id}/resume", post(resume))
        .route("/instances/{id}/tokens", post(rotate_token))
        .route("/instances/{id}/tokens/{token}", delete(revoke_token))
        .route("/admin/instances", get(admin_list))
        .route("/admin/instances/{id}/suspend", post(admin_suspend))
        .route("/admin/instances/{id}/resume", post(admin_resume))
        .route(
            "/admin/instances/{id}/history",
            axum::routing::patch(admin_history),
        )
}

fn actor<'a>(identity: &'a Identity, ip: &ClientIp) -> Actor<'a> {
    Actor {
        id: &identity.user.id,
        email: &identity.user.email,
        ip: ip.0.clone(),
    }
}

impl ProvisioningState {
    /// The caller's role in `org_id` as the users role knows it, at least `needed`.
    async fn require_role(&self, identity: &Identity, org_id: &str, needed: Role) -> Result<Role> {
        let member = self.users.role_in(org_id, &identity.user.id).await?;
        identity.role_in(org_id, member, needed)
    }
}

fn no_such_instance() -> Error {
    Error::not_found("No such instance.")
}

/// The instance in the path's `{id}`, for an approved caller with at least role `R` in its org.
/// Non-members get 404, as if the instance did not exist.
pub struct InstanceRole<R> {
    pub identity: Identity,
    pub row: InstanceRow,
    _level: PhantomData<R>,
}

impl<R: MinRole> FromRequestParts<ProvisioningState> for InstanceRole<R> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &ProvisioningState) -> Result<Self> {
        let Approved(identity) = Approved::from_request_parts(parts, state).await?;
        let id = identity::path_param(parts, state, "id")
            .await
            .ok_or_else(no_such_instance)?;
        let row = state
            .store
            .instance(&id)
            .await?
            .ok_or_else(no_such_instance)?;
        state
            .require_role(&identity, &row.org_id, R::ROLE)
            .await
            .map_err(|e| match e.status() {
                StatusCode::NOT_FOUND => no_such_instance(),
                _ => e,
            })?;
        Ok(InstanceRole {
            identity,
            row,
            _level: PhantomData,
        })
    }
}

/// A fresh probe token for `instance`, stored as its digest; returns the secret.
pub(crate) async fn issue_probe_token(
    tx: &mut Tx,
    instance: &str,
    by: &str,
    now: i64,
) -> crate::store::Result<(String, String)> {
    let (token, token_hash) = new_token("shp_");
    let id = crate::secrets::new_id();
    tx.insert_probe_token(&ProbeTokenRow {
        id: id.clone(),
        instance_id: instance.to_owned(),
        token_hash,
        created_at: now,
        created_by: Some(by.to_owned()),
        expires_at: None,
        revoked_at: None,
    })
    .await?;
    Ok((id, token))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    org: String,
}

async fn list(
    State(state): State<ProvisioningState>,
    Approved(identity): Approved,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<InstanceInfo>>> {
    state.require_role(&identity, &q.org, Role::Viewer).await?;
    let rows = state.store.instances_of_org(&q.org).await?;
    Ok(Json(rows.iter().map(info).collect()))
}

async fn create(
    State(state): State<ProvisioningState>,
    Approved(identity): Approved,
    ip: ClientIp,
    Json(body): Json<NewInstance>,
) -> Result<(StatusCode, Json<InstanceWithToken>)> {
    let name = body.validate().map_err(Error::validation)?;
    state
        .require_role(&identity, &body.org_id, Role::Editor)
        .await?;
    let (row, token) = create_instance(
        &state,
        &body.org_id,
        name,
        &identity.user.id,
        &actor(&identity, &ip),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(InstanceWithToken {
            instance: info(&row),
            probe_token: token,
        }),
    ))
}

/// Creates an instance in `org_id` (state `created`: the reconciler takes it from there) with its
/// first probe token; returns the row and the token's secret.
pub(crate) async fn create_instance(
    state: &ProvisioningState,
    org_id: &str,
    name: String,
    creator_id: &str,
    actor: &Actor<'_>,
) -> Result<(InstanceRow, String)> {
    let now = state.clock.now();
    let limits = state.config.default_limits;
    let row = InstanceRow {
        id: random_hex(10),
        org_id: org_id.to_owned(),
        name,
        state: InstanceState::Created.as_str().to_owned(),
        resume_state: None,
        shard: None,
        created_by: creator_id.to_owned(),
        created_at: now,
        updated_at: now,
        max_probes: limits.max_probes,
        max_report_bytes: limits.max_report_bytes,
        max_reports_per_second: limits.max_reports_per_second,
        refuse_reads: false,
        refuse_uploads: false,
        suspension_reason: None,
        suspended_by_site: false,
        deleted_at: None,
        purge_after: None,
        allow_controls: true,
        allow_terminals: false,
        history_days: i64::from(crate::collector::shard::DEFAULT_HISTORY_DAYS),
        history_quota_bytes: crate::collector::shard::DEFAULT_HISTORY_QUOTA_BYTES as i64,
    };
    let mut tx = state.store.begin().await?;
    tx.insert_instance(&row).await?;
    record(
        &mut tx,
        "instance_created",
        &row,
        None,
        Some(actor),
        None,
        now,
    )
    .await?;
    let (_, token) = issue_probe_token(&mut tx, &row.id, actor.email, now).await?;
    tx.commit().await?;
    state.wakeup.wake();
    Ok((row, token))
}

async fn details(
    State(state): State<ProvisioningState>,
    InstanceRole { row, .. }: InstanceRole<identity::Viewer>,
) -> Result<Json<InstanceDetails>> {
    let tokens = state.store.probe_tokens_of(&row.id).await?;
    let events = state.store.instance_events(&row.id).await?;
    // Usage is the shard's to tell; an unreachable shard leaves it out rather than failing the page.
    let usage = match row
        .shard
        .as_deref()
        .and_then(|s| state.placement.by_name(s))
    {
        Some(shard) => shard.usage(&row.id).await.unwrap_or_else(|e| {
            tracing::warn!(instance = %row.id, error = %e, "cannot read the instance's usage");
            None
        }),
        None => None,
    };
    Ok(Json(InstanceDetails {
        instance: info(&row),
        tokens: tokens.iter().map(token_info).collect(),
        events: events.into_iter().map(event_info).collect(),
        usage,
    }))
}

async fn rename(
    State(state): State<ProvisioningState>,
    InstanceRole {
        identity, mut row, ..
    }: InstanceRole<identity::Editor>,
    ip: ClientIp,
    Json(body): Json<OrgName>,
) -> Result<Json<InstanceInfo>> {
    let name = body.validate().map_err(Error::validation)?;
    let current = state_of(&row);
    if matches!(current, InstanceState::Deleting | InstanceState::Deleted) {
        return Err(Error::conflict("A deleted instance cannot be renamed."));
    }
    let now = state.clock.now();
    let old = std::mem::replace(&mut row.name, name);
    row.updated_at = now;
    let mut tx = state.store.begin().await?;
    if !tx.update_instance(&row, &row.state.clone()).await? {
        return Err(Error::conflict(
            "The instance changed meanwhile; reload and try again.",
        ));
    }
    let detail = Some(format!("renamed from {old}"));
    record(
        &mut tx,
        "instance_renamed",
        &row,
        Some(current),
        Some(&actor(&identity, &ip)),
        detail,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(info(&row)))
}

/// `PATCH /api/instances/{id}/settings` (org admins): turns controls and terminals on or off. The
/// collector holding the instance is told at once (the reconciler is woken).
async fn change_settings(
    State(state): State<ProvisioningState>,
    InstanceRole {
        identity, mut row, ..
    }: InstanceRole<identity::Admin>,
    ip: ClientIp,
    Json(body): Json<InstanceSettings>,
) -> Result<Json<InstanceInfo>> {
    let current = state_of(&row);
    if matches!(current, InstanceState::Deleting | InstanceState::Deleted) {
        return Err(Error::conflict(
            "A deleted instance has no settings to change.",
        ));
    }
    let mut said = Vec::new();
    if let Some(on) = body.allow_controls {
        row.allow_controls = on;
        said.push(format!("controls {}", if on { "on" } else { "off" }));
    }
    if let Some(on) = body.allow_terminals {
        row.allow_terminals = on;
        said.push(format!("terminals {}", if on { "on" } else { "off" }));
    }
    save_settings(
        &state,
        row,
        &identity,
        &ip,
        "instance_settings_changed",
        said,
    )
    .await
}

/// Writes settings changed in `row` (`said` says which, for the instance's history) and tells the
/// collector holding it at once (the reconciler is woken).
async fn save_settings(
    state: &ProvisioningState,
    mut row: InstanceRow,
    identity: &Identity,
    ip: &ClientIp,
    event: &'static str,
    said: Vec<String>,
) -> Result<Json<InstanceInfo>> {
    if said.is_empty() {
        return Ok(Json(info(&row)));
    }
    let current = state_of(&row);
    let now = state.clock.now();
    row.updated_at = now;
    let mut tx = state.store.begin().await?;
    if !tx.update_instance(&row, &row.state.clone()).await? {
        return Err(Error::conflict(
            "The instance changed meanwhile; reload and try again.",
        ));
    }
    record(
        &mut tx,
        event,
        &row,
        Some(current),
        Some(&actor(identity, ip)),
        Some(said.join(", ")),
        now,
    )
    .await?;
    tx.commit().await?;
    state.wakeup.wake();
    Ok(Json(info(&row)))
}

/// `PATCH /api/admin/instances/{id}/history` (site admins): how long the instance's history is
/// kept and how many bytes it may take. The collector enforces it at its next retention pass.
async fn admin_history(
    State(state): State<ProvisioningState>,
    SiteAdmin(identity): SiteAdmin,
    ip: ClientIp,
    Path(id): Path<String>,
    Json(body): Json<shared::instances::HistoryPolicy>,
) -> Result<Json<InstanceInfo>> {
    let mut row = admin_row(&state, &id).await?;
    if matches!(
        state_of(&row),
        InstanceState::Deleting | InstanceState::Deleted
    ) {
        return Err(Error::conflict(
            "A deleted instance's history is being purged.",
        ));
    }
    let mut errors = shared::FieldErrors::default();
    if body.days.is_some_and(|d| !(1..=3650).contains(&d)) {
        errors.insert("days".to_owned(), "Between 1 and 3650 days.".to_owned());
    }
    if body
        .quota_bytes
        .is_some_and(|q| !(MIN_HISTORY_QUOTA..=MAX_HISTORY_QUOTA).contains(&q))
    {
        errors.insert(
            "quota_bytes".to_owned(),
            "Between 1 MiB and 100 TiB.".to_owned(),
        );
    }
    if !errors.is_empty() {
        return Err(Error::validation(errors));
    }
    let mut said = Vec::new();
    if let Some(days) = body.days {
        row.history_days = i64::from(days);
        said.push(format!("history kept {days} days"));
    }
    if let Some(quota) = body.quota_bytes {
        row.history_quota_bytes = quota as i64;
        said.push(format!("history quota {} MiB", quota >> 20));
    }
    save_settings(
        &state,
        row,
        &identity,
        &ip,
        "instance_history_changed",
        said,
    )
    .await
}

const MIN_HISTORY_QUOTA: u64 = 1 << 20;
const MAX_HISTORY_QUOTA: u64 = 100 << 40;

async fn suspend_as(
    state: &ProvisioningState,
    identity: &Identity,
    ip: &ClientIp,
    mut row: InstanceRow,
    body: Suspension,
    by_site: bool,
) -> Result<Json<InstanceInfo>> {
    let reason = body.validate().map_err(Error::validation)?;
    let now = state.clock.now();
    let resume_to = state_of(&row);
    let mut tx = state.store.begin().await?;
    let detail = format!(
        "{}{reason}",
        if by_site {
            "by the site's administrators: "
        } else {
            ""
        }
    );
    transition(
        &mut tx,
        &mut row,
        InstanceState::Suspended,
        Some(&actor(identity, ip)),
        Some(detail),
        now,
        |r| {
            r.resume_state = Some(resume_to.as_str().to_owned());
            r.refuse_uploads = true;
            r.refuse_reads = body.refuse_reads;
            r.suspension_reason = Some(reason.clone());
            r.suspended_by_site = by_site;
        },
    )
    .await?;
    tx.commit().await?;
    state.wakeup.wake();
    Ok(Json(info(&row)))
}

async fn resume_as(
    state: &ProvisioningState,
    identity: &Identity,
    ip: &ClientIp,
    mut row: InstanceRow,
    by_site: bool,
) -> Result<Json<InstanceInfo>> {
    if row.suspended_by_site && !by_site {
        return Err(Error::forbidden(
            "The site's administrators suspended this instance; only they can resume it.",
        ));
    }
    let to = row
        .resume_state
        .as_deref()
        .and_then(InstanceState::parse)
        .unwrap_or(InstanceState::Ready);
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    transition(
        &mut tx,
        &mut row,
        to,
        Some(&actor(identity, ip)),
        None,
        now,
        |r| {
            r.resume_state = None;
            r.refuse_uploads = false;
            r.refuse_reads = false;
            r.suspension_reason = None;
            r.suspended_by_site = false;
        },
    )
    .await?;
    tx.commit().await?;
    state.wakeup.wake();
    Ok(Json(info(&row)))
}

async fn suspend(
    State(state): State<ProvisioningState>,
    InstanceRole { identity, row, .. }: InstanceRole<identity::Admin>,
    ip: ClientIp,
    Json(body): Json<Suspension>,
) -> Result<Json<InstanceInfo>> {
    suspend_as(&state, &identity, &ip, row, body, false).await
}

async fn resume(
    State(state): State<ProvisioningState>,
    InstanceRole { identity, row, .. }: InstanceRole<identity::Admin>,
    ip: ClientIp,
) -> Result<Json<InstanceInfo>> {
    resume_as(&state, &identity, &ip, row, false).await
}

/// Deleting revokes the probe tokens at once; the reconciler then drops the collector state.
async fn remove(
    State(state): State<ProvisioningState>,
    InstanceRole {
        identity, mut row, ..
    }: InstanceRole<identity::Admin>,
    ip: ClientIp,
) -> Result<(StatusCode, Json<InstanceInfo>)> {
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    transition(
        &mut tx,
        &mut row,
        InstanceState::Deleting,
        Some(&actor(&identity, &ip)),
        None,
        now,
        |r| {
            r.refuse_uploads = true;
            r.refuse_reads = true;
        },
    )
    .await?;
    tx.revoke_probe_tokens(&row.id, None, now).await?;
    tx.commit().await?;
    state.wakeup.wake();
    Ok((StatusCode::ACCEPTED, Json(info(&row))))
}

/// Rotation: a new token now; the old ones keep working for the grace period.
async fn rotate_token(
    State(state): State<ProvisioningState>,
    InstanceRole { identity, row, .. }: InstanceRole<identity::Editor>,
    ip: ClientIp,
) -> Result<(StatusCode, Json<InstanceWithToken>)> {
    if matches!(
        state_of(&row),
        InstanceState::Deleting | InstanceState::Deleted
    ) {
        return Err(Error::conflict("A deleted instance has no tokens."));
    }
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    let (token_id, token) = issue_probe_token(&mut tx, &row.id, &identity.user.email, now).await?;
    tx.expire_probe_tokens(&row.id, &token_id, now + state.config.token_grace)
        .await?;
    let detail = format!(
        "probe token rotated; the previous ones work for {} more hours",
        state.config.token_grace / 3_600_000
    );
    record(
        &mut tx,
        "probe_token_rotated",
        &row,
        Some(state_of(&row)),
        Some(&actor(&identity, &ip)),
        Some(detail),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(InstanceWithToken {
            instance: info(&row),
            probe_token: token,
        }),
    ))
}

async fn revoke_token(
    State(state): State<ProvisioningState>,
    InstanceRole { identity, row, .. }: InstanceRole<identity::Editor>,
    ip: ClientIp,
    Path((_, token)): Path<(String, String)>,
) -> Result<StatusCode> {
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    if tx.revoke_probe_tokens(&row.id, Some(&token), now).await? == 0 {
        return Err(Error::not_found("No live probe token with that id."));
    }
    let detail = Some("probe token revoked".to_owned());
    record(
        &mut tx,
        "probe_token_revoked",
        &row,
        Some(state_of(&row)),
        Some(&actor(&identity, &ip)),
        detail,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn admin_list(
    State(state): State<ProvisioningState>,
    SiteAdmin(_): SiteAdmin,
) -> Result<Json<Vec<InstanceInfo>>> {
    let rows = state.store.all_instances(1000).await?;
    Ok(Json(rows.iter().map(info).collect()))
}

async fn admin_row(state: &ProvisioningState, id: &str) -> Result<InstanceRow> {
    state
        .store
        .instance(id)
        .await?
        .ok_or_else(|| Error::not_found("No such instance."))
}

async fn admin_suspend(
    State(state): State<ProvisioningState>,
    SiteAdmin(identity): SiteAdmin,
    ip: ClientIp,
    Path(id): Path<String>,
    Json(body): Json<Suspension>,
) -> Result<Json<InstanceInfo>> {
    let row = admin_row(&state, &id).await?;
    suspend_as(&state, &identity, &ip, row, body, true).await
}

async fn admin_resume(
    State(state): State<ProvisioningState>,
    SiteAdmin(identity): SiteAdmin,
    ip: ClientIp,
    Path(id): Path<String>,
) -> Result<Json<InstanceInfo>> {
    let row = admin_row(&state, &id).await?;
    resume_as(&state, &identity, &ip, row, true).await
}
