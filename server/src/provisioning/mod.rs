//! The provisioning service: Scope instances, their lifecycle, probe tokens, placement.
//!
//! Owns `/api/instances…` and `/api/admin/instances…`, the tables of migration 0003 (through
//! `store/`) and the reconciler, which converges the collector shards (actual state) to the
//! database (desired state). Must not hold report data (the collector does) or resolve credentials
//! (the edge does, asking [`directory::InstanceDirectory`] about probe tokens). It reaches the
//! users role through `users::directory` and the collector through `collector::shard` only.

pub mod api;
pub mod directory;
pub mod local_probe;
pub mod reconciler;
pub mod shards;

use std::sync::Arc;

use shared::instances::{InstanceEvent, InstanceInfo, InstanceState, Limits, ProbeTokenInfo};
use tokio::sync::Notify;

use self::shards::Placement;
use crate::clock::{Clock, DAY, HOUR};
use crate::error::{Error, Result};
use crate::store::{AuditEntry, InstanceEventRow, InstanceRow, ProbeTokenRow, Store, Tx};
use crate::telemetry::Metrics;
use crate::users::directory::Directory;

/// What the provisioning role's handlers and reconciler use. Cheap to clone.
#[derive(Clone)]
pub struct ProvisioningState {
    pub store: Store,
    pub clock: Clock,
    pub metrics: Metrics,
    pub config: Arc<ProvisioningConfig>,
    /// Wakes the reconciler after an API change.
    pub wakeup: Wakeup,
    /// The users role: memberships and the first admin's org.
    pub users: Arc<dyn Directory>,
    /// The collector shards instances are placed on.
    pub placement: Placement,
}

impl ProvisioningState {
    /// The reconciler over this state's store and shards.
    pub fn reconciler(&self) -> reconciler::Reconciler {
        reconciler::Reconciler {
            store: self.store.clone(),
            placement: self.placement.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            wakeup: self.wakeup.clone(),
            purge_grace: self.config.purge_grace,
        }
    }

    /// The contract other roles use, answered from this role's store.
    pub fn directory(&self) -> directory::LocalInstances {
        directory::LocalInstances {
            store: self.store.clone(),
            clock: self.clock.clone(),
        }
    }
}

/// The provisioning role's public API, relative to `/api`.
pub fn api_router(state: ProvisioningState) -> axum::Router {
    api::router().with_state(state)
}

pub fn limits_of(row: &InstanceRow) -> Limits {
    Limits {
        max_probes: row.max_probes,
        max_report_bytes: row.max_report_bytes,
        max_reports_per_second: row.max_reports_per_second,
    }
}

#[derive(Debug, Clone)]
pub struct ProvisioningConfig {
    /// Limits of new instances.
    pub default_limits: Limits,
    /// How long a rotated probe token keeps working.
    pub token_grace: i64,
    /// How long a deleted instance's row is kept before it is purged.
    pub purge_grace: i64,
}

impl Default for ProvisioningConfig {
    fn default() -> Self {
        ProvisioningConfig {
            default_limits: Limits {
                max_probes: 50,
                max_report_bytes: 16 * 1024 * 1024,
                max_reports_per_second: 20,
            },
            token_grace: 24 * HOUR,
            purge_grace: 7 * DAY,
        }
    }
}

/// Shared by the API (which wakes it) and the reconciler (which waits for it).
#[derive(Clone, Default)]
pub struct Wakeup(Arc<Notify>);

impl Wakeup {
    pub fn wake(&self) {
        self.0.notify_one();
    }

    pub async fn wait(&self) {
        self.0.notified().await;
    }
}

pub fn state_of(row: &InstanceRow) -> InstanceState {
    InstanceState::parse(&row.state).unwrap_or(InstanceState::Deleted)
}

pub fn info(r: &InstanceRow) -> InstanceInfo {
    InstanceInfo {
        id: r.id.clone(),
        org_id: r.org_id.clone(),
        name: r.name.clone(),
        state: state_of(r),
        shard: r.shard.clone(),
        created_by: r.created_by.clone(),
        created_at: r.created_at,
        updated_at: r.updated_at,
        limits: limits_of(r),
        refuse_reads: r.refuse_reads,
        refuse_uploads: r.refuse_uploads,
        suspension_reason: r.suspension_reason.clone(),
        suspended_by_site: r.suspended_by_site,
        allow_controls: r.allow_controls,
        allow_terminals: r.allow_terminals,
        history_days: u32::try_from(r.history_days).unwrap_or(u32::MAX),
        history_quota_bytes: u64::try_from(r.history_quota_bytes).unwrap_or(0),
    }
}

pub fn token_info(t: &ProbeTokenRow) -> ProbeTokenInfo {
    ProbeTokenInfo {
        id: t.id.clone(),
        created_at: t.created_at,
        expires_at: t.expires_at,
        revoked: t.revoked_at.is_some(),
    }
}

pub fn event_info(e: InstanceEventRow) -> InstanceEvent {
    InstanceEvent {
        at: e.at,
        from_state: e.from_state.as_deref().and_then(InstanceState::parse),
        to_state: InstanceState::parse(&e.to_state).unwrap_or(InstanceState::Deleted),
        actor: e.actor_email,
        detail: e.detail,
    }
}

pub(crate) fn audit_action(to: InstanceState) -> &'static str {
    match to {
        InstanceState::Created => "instance_created",
        InstanceState::Provisioning => "instance_provisioning",
        InstanceState::Ready => "instance_ready",
        InstanceState::Active => "instance_active",
        InstanceState::Suspended => "instance_suspended",
        InstanceState::Deleting => "instance_deleting",
        InstanceState::Deleted => "instance_deleted",
    }
}

/// Who caused a lifecycle step: a user, or the reconciler (`None`).
pub struct Actor<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub ip: Option<String>,
}

/// Records one lifecycle step (instance event + audit entry) in `tx`.
pub(crate) async fn record(
    tx: &mut Tx,
    action: &'static str,
    row: &InstanceRow,
    from: Option<InstanceState>,
    actor: Option<&Actor<'_>>,
    detail: Option<String>,
    now: i64,
) -> crate::store::Result<()> {
    let to = state_of(row);
    tx.insert_instance_event(&InstanceEventRow {
        id: 0,
        instance_id: row.id.clone(),
        at: now,
        from_state: from.map(|f| f.as_str().to_owned()),
        to_state: to.as_str().to_owned(),
        actor_email: actor.map(|a| a.email.to_owned()),
        detail: detail.clone(),
    })
    .await?;
    let entry = AuditEntry {
        action,
        actor_id: actor.map(|a| a.id.to_owned()),
        actor_email: actor.map(|a| a.email.to_owned()),
        org_id: Some(row.org_id.clone()),
        target: Some(row.id.clone()),
        ip: actor.and_then(|a| a.ip.clone()),
        detail: Some(match &detail {
            Some(d) => format!("{}: {d}", row.name),
            None => row.name.clone(),
        }),
    };
    tx.audit(&entry, now).await
}

/// Moves an instance to `to` if the lifecycle allows it and nobody changed it meanwhile; `change`
/// adjusts the other fields of the row on the way. Illegal steps answer 409.
pub(crate) async fn transition(
    tx: &mut Tx,
    row: &mut InstanceRow,
    to: InstanceState,
    actor: Option<&Actor<'_>>,
    detail: Option<String>,
    now: i64,
    change: impl FnOnce(&mut InstanceRow),
) -> Result<()> {
    let from = state_of(row);
    if !from.can_become(to) {
        return Err(Error::conflict(format!(
            "An instance that is {} cannot become {}.",
            from.as_str(),
            to.as_str()
        )));
    }
    let expected = row.state.clone();
    row.state = to.as_str().to_owned();
    row.updated_at = now;
    change(row);
    if !tx.update_instance(row, &expected).await? {
        return Err(Error::conflict(
            "The instance changed meanwhile; reload and try again.",
        ));
    }
    record(tx, audit_action(to), row, Some(from), actor, detail, now).await?;
    Ok(())
}
