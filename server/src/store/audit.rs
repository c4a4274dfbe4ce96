//! The append-only audit log and the mail outbox.
//!
//! Mail is written to the outbox in the same transaction as the change it reports (a signup and its
//! verification mail commit together); the mailer delivers pending rows afterwards.

use super::tx::on_tx;
use super::{Result, Store, Tx, on_pool};

/// One audit event. Only `action` is required; the rest says who, where and to what.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    pub action: &'static str,
    pub actor_id: Option<String>,
    pub actor_email: Option<String>,
    pub org_id: Option<String>,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub action: String,
    pub actor_id: Option<String>,
    pub actor_email: Option<String>,
    pub org_id: Option<String>,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewMail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: String,
    pub to_email: String,
    pub subject: String,
    pub body: String,
    pub created_at: i64,
    pub status: String,
    pub attempts: i64,
    pub sent_at: Option<i64>,
    pub error: Option<String>,
}

const AUDIT_COLUMNS: &str = "id, at, action, actor_id, actor_email, org_id, target, ip, detail";
const OUTBOX_COLUMNS: &str =
    "id, to_email, subject, body, created_at, status, attempts, sent_at, error";

impl Store {
    /// Writes one audit event on its own (for events whose request otherwise fails, like a bad login).
    pub async fn audit(&self, entry: &AuditEntry, now: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.audit(entry, now).await?;
        tx.commit().await
    }

    /// Newest first; `org` limits to one org's events; `before` pages by id.
    pub async fn audit_events(
        &self,
        org: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>> {
        self.require_prepared()?;
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE ($1 IS NULL OR org_id = $1) AND ($2 IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3"
        );
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, AuditRow>(&sql).bind(org).bind(before).bind(limit).fetch_all(pool).await
        })?)
    }

    pub async fn outbox(&self, limit: i64) -> Result<Vec<OutboxRow>> {
        self.require_prepared()?;
        let sql =
            format!("SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY created_at DESC, id LIMIT $1");
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, OutboxRow>(&sql).bind(limit).fetch_all(pool).await)?,
        )
    }

    /// Messages waiting for delivery, and how many of them failed their last attempt.
    pub async fn mail_queue(&self) -> Result<(u64, u64)> {
        self.require_prepared()?;
        let (waiting, failing) = on_pool!(self, pool => {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0)
                 FROM outbox WHERE status = 'pending'",
            )
            .fetch_one(pool)
            .await
        })?;
        Ok((waiting.max(0) as u64, failing.max(0) as u64))
    }

    /// Messages waiting for delivery whose next attempt is due.
    pub async fn due_mail(&self, now: i64, limit: i64) -> Result<Vec<OutboxRow>> {
        self.require_prepared()?;
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1
             ORDER BY created_at, id LIMIT $2"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, OutboxRow>(&sql).bind(now).bind(limit).fetch_all(pool).await)?,
        )
    }

    /// Takes a due message for delivery: moves its next attempt to `lease_until` if it is still
    /// due at `now`. Exactly one of several users replicas gets `true` for a message; if that one
    /// dies before marking it, the message is due again once the lease ends.
    pub async fn claim_mail(&self, id: &str, now: i64, lease_until: i64) -> Result<bool> {
        self.require_prepared()?;
        let done = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE outbox SET next_attempt_at = $3
                 WHERE id = $1 AND status = 'pending' AND next_attempt_at <= $2",
            )
            .bind(id)
            .bind(now)
            .bind(lease_until)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }

    /// Records a delivered mail, keeping `body` (the delivered body with its links redacted).
    pub async fn mark_mail_sent(&self, id: &str, body: &str, now: i64) -> Result<()> {
        self.require_prepared()?;
        on_pool!(self, pool => {
            sqlx::query("UPDATE outbox SET status = 'sent', error = NULL, sent_at = $1, attempts = attempts + 1, body = $3 WHERE id = $2")
                .bind(now)
                .bind(id)
                .bind(body)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Records a failed delivery: tried again at `retry_at`, or given up (`failed`) after `max_attempts`.
    pub async fn mark_mail_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: i64,
        max_attempts: i64,
    ) -> Result<()> {
        self.require_prepared()?;
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, error = $2, next_attempt_at = $3,
                 status = CASE WHEN attempts + 1 >= $4 THEN 'failed' ELSE 'pending' END WHERE id = $1",
            )
            .bind(id)
            .bind(error)
            .bind(retry_at)
            .bind(max_attempts)
            .execute(pool)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }
}

impl Tx {
    pub async fn audit(&mut self, e: &AuditEntry, now: i64) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO audit_log (at, action, actor_id, actor_email, org_id, target, ip, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(now)
            .bind(e.action)
            .bind(&e.actor_id)
            .bind(&e.actor_email)
            .bind(&e.org_id)
            .bind(&e.target)
            .bind(&e.ip)
            .bind(&e.detail)
            .execute(conn)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    /// Queues a message; `status` is `pending` (an SMTP server will get it) or `kept` (no SMTP:
    /// it stays in the outbox for admins to read).
    pub async fn enqueue_mail(
        &mut self,
        id: &str,
        mail: &NewMail,
        status: &str,
        now: i64,
    ) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query("INSERT INTO outbox (id, to_email, subject, body, created_at, status) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(id)
                .bind(&mail.to)
                .bind(&mail.subject)
                .bind(&mail.body)
                .bind(now)
                .bind(status)
                .execute(conn)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }
}
