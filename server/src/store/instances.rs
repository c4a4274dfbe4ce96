//! Scope instances, their lifecycle events and probe tokens.

use super::tx::on_tx;
use super::{Result, Store, Tx, on_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InstanceRow {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub state: String,
    pub resume_state: Option<String>,
    pub shard: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub max_probes: i64,
    pub max_report_bytes: i64,
    pub max_reports_per_second: i64,
    pub refuse_reads: bool,
    pub refuse_uploads: bool,
    pub suspension_reason: Option<String>,
    pub suspended_by_site: bool,
    pub deleted_at: Option<i64>,
    pub purge_after: Option<i64>,
    /// Members may use controls on its nodes / open terminals (org admins decide).
    pub allow_controls: bool,
    pub allow_terminals: bool,
    /// How long its history is kept, in days, and the most bytes it may take (site admins decide).
    pub history_days: i64,
    pub history_quota_bytes: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InstanceEventRow {
    pub id: i64,
    pub instance_id: String,
    pub at: i64,
    pub from_state: Option<String>,
    pub to_state: String,
    pub actor_email: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProbeTokenRow {
    pub id: String,
    pub instance_id: String,
    pub token_hash: String,
    pub created_at: i64,
    pub created_by: Option<String>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const INSTANCE_COLUMNS: &str = "id, org_id, name, state, resume_state, shard, created_by, created_at, updated_at, \
     max_probes, max_report_bytes, max_reports_per_second, refuse_reads, refuse_uploads, suspension_reason, \
     suspended_by_site, deleted_at, purge_after, allow_controls, allow_terminals, \
     history_days, history_quota_bytes";
const TOKEN_COLUMNS: &str =
    "id, instance_id, token_hash, created_at, created_by, expires_at, revoked_at";

impl Store {
    pub async fn instance(&self, id: &str) -> Result<Option<InstanceRow>> {
        self.require_prepared()?;
        let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1");
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, InstanceRow>(&sql).bind(id).fetch_optional(pool).await)?,
        )
    }

    pub async fn instances_of_org(&self, org_id: &str) -> Result<Vec<InstanceRow>> {
        self.require_prepared()?;
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE org_id = $1 ORDER BY created_at, id"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, InstanceRow>(&sql).bind(org_id).fetch_all(pool).await)?,
        )
    }

    /// Every instance, newest first (site admins).
    pub async fn all_instances(&self, limit: i64) -> Result<Vec<InstanceRow>> {
        self.require_prepared()?;
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances ORDER BY created_at DESC, id LIMIT $1"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, InstanceRow>(&sql).bind(limit).fetch_all(pool).await)?,
        )
    }

    /// What the reconciler works on: every instance not yet deleted, and deleted ones due for purging.
    pub async fn instances_to_reconcile(&self, now: i64) -> Result<Vec<InstanceRow>> {
        self.require_prepared()?;
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE state <> 'deleted' OR purge_after <= $1 ORDER BY created_at, id"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, InstanceRow>(&sql).bind(now).fetch_all(pool).await)?,
        )
    }

    /// The instances placed on `shard` that it should hold (placed and not being deleted).
    pub async fn instances_on_shard(&self, shard: &str) -> Result<Vec<InstanceRow>> {
        self.require_prepared()?;
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE shard = $1 AND state IN ('ready', 'active', 'suspended') ORDER BY id"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, InstanceRow>(&sql).bind(shard).fetch_all(pool).await)?,
        )
    }

    pub async fn instance_events(&self, id: &str) -> Result<Vec<InstanceEventRow>> {
        self.require_prepared()?;
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, InstanceEventRow>(
                "SELECT id, instance_id, at, from_state, to_state, actor_email, detail FROM instance_events
                 WHERE instance_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(pool)
            .await
        })?)
    }

    pub async fn probe_tokens_of(&self, instance_id: &str) -> Result<Vec<ProbeTokenRow>> {
        self.require_prepared()?;
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM probe_tokens WHERE instance_id = $1 ORDER BY created_at, id"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, ProbeTokenRow>(&sql).bind(instance_id).fetch_all(pool).await)?,
        )
    }

    /// The instance a probe token belongs to, if the token is live (not revoked, grace not over).
    pub async fn instance_for_probe_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<InstanceRow>> {
        self.require_prepared()?;
        let columns: String = INSTANCE_COLUMNS
            .split(", ")
            .map(|c| format!("i.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns} FROM probe_tokens t JOIN instances i ON i.id = t.instance_id
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2)"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, InstanceRow>(&sql).bind(token_hash).bind(now).fetch_optional(pool).await)?,
        )
    }
}

impl Tx {
    pub async fn instance(&mut self, id: &str) -> Result<Option<InstanceRow>> {
        let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1");
        Ok(
            on_tx!(self, conn => sqlx::query_as::<_, InstanceRow>(&sql).bind(id).fetch_optional(conn).await)?,
        )
    }

    pub async fn insert_instance(&mut self, r: &InstanceRow) -> Result<()> {
        let sql = format!(
            "INSERT INTO instances ({INSTANCE_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
        );
        on_tx!(self, conn => {
            sqlx::query(&sql)
                .bind(&r.id)
                .bind(&r.org_id)
                .bind(&r.name)
                .bind(&r.state)
                .bind(&r.resume_state)
                .bind(&r.shard)
                .bind(&r.created_by)
                .bind(r.created_at)
                .bind(r.updated_at)
                .bind(r.max_probes)
                .bind(r.max_report_bytes)
                .bind(r.max_reports_per_second)
                .bind(r.refuse_reads)
                .bind(r.refuse_uploads)
                .bind(&r.suspension_reason)
                .bind(r.suspended_by_site)
                .bind(r.deleted_at)
                .bind(r.purge_after)
                .bind(r.allow_controls)
                .bind(r.allow_terminals)
                .bind(r.history_days)
                .bind(r.history_quota_bytes)
                .execute(conn)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Writes the mutable fields back, but only if the state is still `expected_state`; returns
    /// whether it was (so two concurrent transitions cannot both win).
    pub async fn update_instance(&mut self, r: &InstanceRow, expected_state: &str) -> Result<bool> {
        let n = on_tx!(self, conn => {
            sqlx::query(
                "UPDATE instances SET name = $3, state = $4, resume_state = $5, shard = $6, updated_at = $7,
                 refuse_reads = $8, refuse_uploads = $9, suspension_reason = $10, suspended_by_site = $11,
                 deleted_at = $12, purge_after = $13, allow_controls = $14, allow_terminals = $15,
                 history_days = $16, history_quota_bytes = $17
                 WHERE id = $1 AND state = $2",
            )
            .bind(&r.id)
            .bind(expected_state)
            .bind(&r.name)
            .bind(&r.state)
            .bind(&r.resume_state)
            .bind(&r.shard)
            .bind(r.updated_at)
            .bind(r.refuse_reads)
            .bind(r.refuse_uploads)
            .bind(&r.suspension_reason)
            .bind(r.suspended_by_site)
            .bind(r.deleted_at)
            .bind(r.purge_after)
            .bind(r.allow_controls)
            .bind(r.allow_terminals)
            .bind(r.history_days)
            .bind(r.history_quota_bytes)
            .execute(conn)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    pub async fn purge_instance(&mut self, id: &str) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query("DELETE FROM instances WHERE id = $1 AND state = 'deleted'").bind(id).execute(conn).await.map(|_| ())
        })?;
        Ok(())
    }

    pub async fn insert_instance_event(&mut self, e: &InstanceEventRow) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO instance_events (instance_id, at, from_state, to_state, actor_email, detail)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&e.instance_id)
            .bind(e.at)
            .bind(&e.from_state)
            .bind(&e.to_state)
            .bind(&e.actor_email)
            .bind(&e.detail)
            .execute(conn)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    pub async fn insert_probe_token(&mut self, t: &ProbeTokenRow) -> Result<()> {
        let sql = format!(
            "INSERT INTO probe_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        );
        on_tx!(self, conn => {
            sqlx::query(&sql)
                .bind(&t.id)
                .bind(&t.instance_id)
                .bind(&t.token_hash)
                .bind(t.created_at)
                .bind(&t.created_by)
                .bind(t.expires_at)
                .bind(t.revoked_at)
                .execute(conn)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Gives every live token of an instance (but `keep`) an end of grace at `until`, unless it
    /// already ends sooner.
    pub async fn expire_probe_tokens(
        &mut self,
        instance_id: &str,
        keep: &str,
        until: i64,
    ) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "UPDATE probe_tokens SET expires_at = $3
                 WHERE instance_id = $1 AND id <> $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $3)",
            )
            .bind(instance_id)
            .bind(keep)
            .bind(until)
            .execute(conn)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    /// Revokes one token (`Some(id)`) or all of an instance's; returns how many were live.
    pub async fn revoke_probe_tokens(
        &mut self,
        instance_id: &str,
        id: Option<&str>,
        now: i64,
    ) -> Result<u64> {
        Ok(on_tx!(self, conn => {
            sqlx::query(
                "UPDATE probe_tokens SET revoked_at = $3
                 WHERE instance_id = $1 AND ($2 IS NULL OR id = $2) AND revoked_at IS NULL",
            )
            .bind(instance_id)
            .bind(id)
            .bind(now)
            .execute(conn)
            .await
            .map(|r| r.rows_affected())
        })?)
    }
}
