//! The reconciler: a level-triggered loop that converges the collector shards (actual state) to
//! the database (desired state).
//!
//! Every pass reads the whole desired state and makes each shard match it, so a pass interrupted
//! anywhere (even by `kill -9`) is finished by the next one: shard operations are idempotent, a
//! shard is chosen deterministically before its name is stored, database steps are conditional
//! transitions, and instances a shard holds that the database does not want are dropped. A ready
//! instance becomes active once its shard reports that it accepted a report.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use shared::instances::InstanceState;
use tokio::sync::watch;

use super::shards::Placement;
use super::{Wakeup, limits_of, state_of, transition};
use crate::clock::Clock;
use crate::collector::shard::{Flags, Shard};
use crate::error::Error;
use crate::store::{InstanceRow, Store};
use crate::telemetry::Metrics;

const PERIOD: Duration = Duration::from_secs(2);

pub struct Reconciler {
    pub store: Store,
    pub placement: Placement,
    pub clock: Clock,
    pub metrics: Metrics,
    pub wakeup: Wakeup,
    pub purge_grace: i64,
}

/// What the shard holding `row` is told of it besides its limits.
pub(crate) fn flags(row: &InstanceRow) -> Flags {
    Flags {
        refuse_uploads: row.refuse_uploads,
        refuse_reads: row.refuse_reads,
        allow_controls: row.allow_controls,
        allow_terminals: row.allow_terminals,
        history_days: u32::try_from(row.history_days).unwrap_or(u32::MAX),
        history_quota_bytes: u64::try_from(row.history_quota_bytes).unwrap_or(0),
    }
}

fn shard_failed(shard: &dyn Shard, e: Error) -> Error {
    anyhow::anyhow!("shard {}: {e}", shard.name()).into()
}

impl Reconciler {
    /// Runs passes until shutdown: every `PERIOD`, and at once when the API wakes it.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if self.store.is_prepared() {
                let started = Instant::now();
                let errors = self.pass().await;
                self.metrics
                    .record_reconcile(started.elapsed().as_secs_f64(), errors);
            }
            tokio::select! {
                () = self.wakeup.wait() => {}
                _ = tokio::time::sleep(PERIOD) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One pass over everything; returns how many steps failed (they are retried next pass).
    pub async fn pass(&self) -> u64 {
        let now = self.clock.now();
        let rows = match self.store.instances_to_reconcile(now).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "reconciler cannot read instances");
                return 1;
            }
        };
        self.pass_over(rows).await
    }

    /// A pass over `rows`, a snapshot of the desired state that may be stale by the time it is
    /// acted on (another replica's pass may have moved on meanwhile).
    pub async fn pass_over(&self, rows: Vec<InstanceRow>) -> u64 {
        let now = self.clock.now();
        let mut errors = 0;
        let mut lag_ms = 0;
        let mut wanted: HashSet<(String, String)> = HashSet::new();
        for row in rows {
            let pending = matches!(
                state_of(&row),
                InstanceState::Created | InstanceState::Provisioning | InstanceState::Deleting
            );
            if pending {
                lag_ms = lag_ms.max(now - row.updated_at);
            }
            match self.converge(row).await {
                Ok(Some(placed)) => {
                    wanted.insert(placed);
                }
                Ok(None) => {}
                Err(e) => {
                    errors += 1;
                    tracing::warn!(error = %e, "reconciler step failed; retrying next pass");
                }
            }
        }
        errors += self.drop_leaks(&wanted).await;
        self.metrics.set_reconcile_lag(lag_ms as f64 / 1000.0);
        errors
    }

    /// Brings one instance to where it should be; returns its (shard, id) if a shard should hold it.
    async fn converge(&self, mut row: InstanceRow) -> Result<Option<(String, String)>, Error> {
        let now = self.clock.now();
        match state_of(&row) {
            InstanceState::Created => {
                let mut tx = self.store.begin().await?;
                transition(
                    &mut tx,
                    &mut row,
                    InstanceState::Provisioning,
                    None,
                    None,
                    now,
                    |_| {},
                )
                .await?;
                tx.commit().await?;
                Box::pin(self.converge(row)).await
            }
            InstanceState::Provisioning => {
                let shard = match row
                    .shard
                    .as_deref()
                    .and_then(|name| self.placement.by_name(name))
                {
                    Some(shard) => shard.clone(),
                    None => self.placement.choose(&row.id).clone(),
                };
                shard
                    .ensure(&row.id, limits_of(&row), flags(&row))
                    .await
                    .map_err(|e| shard_failed(shard.as_ref(), e))?;
                let name = shard.name().to_owned();
                let mut tx = self.store.begin().await?;
                let detail = Some(format!("placed on collector shard {name}"));
                transition(
                    &mut tx,
                    &mut row,
                    InstanceState::Ready,
                    None,
                    detail,
                    now,
                    |r| r.shard = Some(name.clone()),
                )
                .await?;
                tx.commit().await?;
                Ok(Some((name, row.id)))
            }
            InstanceState::Ready | InstanceState::Active | InstanceState::Suspended => {
                let Some(shard) = row
                    .shard
                    .as_deref()
                    .and_then(|name| self.placement.by_name(name))
                else {
                    return Err(anyhow::anyhow!(
                        "instance {} is on unknown shard {:?}",
                        row.id,
                        row.shard
                    )
                    .into());
                };
                let shard = shard.clone();
                shard
                    .ensure(&row.id, limits_of(&row), flags(&row))
                    .await
                    .map_err(|e| shard_failed(shard.as_ref(), e))?;
                if state_of(&row) == InstanceState::Ready {
                    self.activate_on_first_report(shard.as_ref(), &mut row)
                        .await?;
                }
                Ok(Some((shard.name().to_owned(), row.id)))
            }
            InstanceState::Deleting => {
                for shard in self.placement.shards() {
                    shard
                        .drop_instance(&row.id)
                        .await
                        .map_err(|e| shard_failed(shard.as_ref(), e))?;
                    shard
                        .purge_history(&row.id)
                        .await
                        .map_err(|e| shard_failed(shard.as_ref(), e))?;
                }
                let purge_after = now + self.purge_grace;
                let mut tx = self.store.begin().await?;
                tx.revoke_probe_tokens(&row.id, None, now).await?;
                let detail = Some("collector state dropped".to_owned());
                transition(
                    &mut tx,
                    &mut row,
                    InstanceState::Deleted,
                    None,
                    detail,
                    now,
                    |r| {
                        r.deleted_at = Some(now);
                        r.purge_after = Some(purge_after);
                    },
                )
                .await?;
                tx.commit().await?;
                Ok(None)
            }
            InstanceState::Deleted => {
                let mut tx = self.store.begin().await?;
                tx.purge_instance(&row.id).await?;
                tx.commit().await?;
                tracing::info!(instance = %row.id, "purged deleted instance");
                Ok(None)
            }
        }
    }

    /// Moves a ready instance to active once its shard has accepted a report for it.
    async fn activate_on_first_report(
        &self,
        shard: &dyn Shard,
        row: &mut InstanceRow,
    ) -> Result<(), Error> {
        let received = shard
            .usage(&row.id)
            .await
            .map_err(|e| shard_failed(shard, e))?
            .is_some_and(|usage| usage.reports_received > 0);
        if !received {
            return Ok(());
        }
        let mut tx = self.store.begin().await?;
        let detail = Some("first probe report".to_owned());
        let moved = transition(
            &mut tx,
            row,
            InstanceState::Active,
            None,
            detail,
            self.clock.now(),
            |_| {},
        )
        .await;
        match moved {
            Ok(()) => Ok(tx.commit().await?),
            // Someone changed it meanwhile (a suspension): the next pass looks again.
            Err(e) if e.status() == axum::http::StatusCode::CONFLICT => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Drops what shards hold that the database does not want there.
    /// Whether the database wants `id` on `shard` now. This pass's snapshot may predate another
    /// reconciler's placement (two provisioning replicas run at once during a rolling update), so
    /// nothing is dropped without asking again. When unsure, keep it: the next pass decides.
    async fn still_wanted_on(&self, shard: &dyn Shard, id: &str) -> bool {
        let row = match self.store.instance(id).await {
            Ok(row) => row,
            Err(_) => return true,
        };
        let Some(row) = row else { return false };
        match state_of(&row) {
            InstanceState::Ready | InstanceState::Active | InstanceState::Suspended => {
                row.shard.as_deref() == Some(shard.name())
            }
            // Being placed: held on the shard every replica chooses for it.
            InstanceState::Provisioning => {
                row.shard
                    .as_deref()
                    .unwrap_or_else(|| self.placement.choose(id).name())
                    == shard.name()
            }
            InstanceState::Created | InstanceState::Deleting | InstanceState::Deleted => false,
        }
    }

    async fn drop_leaks(&self, wanted: &HashSet<(String, String)>) -> u64 {
        let mut errors = 0;
        for shard in self.placement.shards() {
            let held = match shard.list().await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(shard = shard.name(), error = %e, "cannot list shard");
                    errors += 1;
                    continue;
                }
            };
            let kept = held
                .iter()
                .filter(|id| wanted.contains(&(shard.name().to_owned(), (*id).clone())))
                .count();
            self.metrics.set_shard_instances(shard.name(), kept);
            for id in held {
                if !wanted.contains(&(shard.name().to_owned(), id.clone()))
                    && !self.still_wanted_on(shard.as_ref(), &id).await
                {
                    tracing::info!(shard = shard.name(), instance = %id, "dropping an instance the database does not want here");
                    if let Err(e) = shard.drop_instance(&id).await {
                        tracing::warn!(shard = shard.name(), error = %e, "cannot drop instance");
                        errors += 1;
                    }
                }
            }
        }
        errors
    }
}
