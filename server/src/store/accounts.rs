//! Accounts: users, sessions, single-use email links, rate limits (login throttling and more).

use super::tx::on_tx;
use super::{Result, Store, Tx, on_pool};

const USER_COLUMNS: &str = "id, email, password_hash, status, rejection_reason, is_admin, suspended_at, \
                            email_verified_at, created_at, updated_at";
const SESSION_COLUMNS: &str = "id, token_hash, user_id, csrf_token, created_at, last_seen_at, expires_at, user_agent, ip, revoked_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub status: String,
    pub rejection_reason: Option<String>,
    pub is_admin: bool,
    pub suspended_at: Option<i64>,
    pub email_verified_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: String,
    pub token_hash: String,
    pub user_id: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EmailTokenRow {
    pub token_hash: String,
    pub user_id: String,
    pub purpose: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

impl Store {
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        self.require_prepared()?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, UserRow>(&sql).bind(email).fetch_optional(pool).await)?,
        )
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>> {
        self.require_prepared()?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, UserRow>(&sql).bind(id).fetch_optional(pool).await)?,
        )
    }

    /// The addresses of every site admin not suspended, oldest first.
    pub async fn site_admin_emails(&self) -> Result<Vec<String>> {
        self.require_prepared()?;
        Ok(on_pool!(self, pool => sqlx::query_scalar::<_, String>(
            "SELECT email FROM users WHERE is_admin = TRUE AND suspended_at IS NULL ORDER BY created_at, id"
        )
        .fetch_all(pool)
        .await)?)
    }

    /// The oldest site admin (Airplane Mode's owner: the first account signed up).
    pub async fn first_site_admin(&self) -> Result<Option<UserRow>> {
        self.require_prepared()?;
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE is_admin = TRUE AND suspended_at IS NULL
             ORDER BY created_at, id LIMIT 1"
        );
        Ok(on_pool!(self, pool => sqlx::query_as::<_, UserRow>(&sql).fetch_optional(pool).await)?)
    }

    /// Users whose email contains `query` (all users when empty), newest first, at most `limit`.
    pub async fn search_users(
        &self,
        query: &str,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<UserRow>> {
        self.require_prepared()?;
        let pattern = format!(
            "%{}%",
            query
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email LIKE $1 ESCAPE '\\' AND ($2 IS NULL OR status = $2)
             ORDER BY created_at DESC, id LIMIT $3"
        );
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, UserRow>(&sql).bind(&pattern).bind(status).bind(limit).fetch_all(pool).await
        })?)
    }

    pub async fn session_by_token_hash(&self, token_hash: &str) -> Result<Option<SessionRow>> {
        self.require_prepared()?;
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1");
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, SessionRow>(&sql).bind(token_hash).fetch_optional(pool).await)?,
        )
    }

    pub async fn session_by_id(&self, id: &str) -> Result<Option<SessionRow>> {
        self.require_prepared()?;
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, SessionRow>(&sql).bind(id).fetch_optional(pool).await)?,
        )
    }

    /// The user's sessions that are neither revoked nor past their absolute expiry.
    pub async fn live_sessions_of(&self, user_id: &str, now: i64) -> Result<Vec<SessionRow>> {
        self.require_prepared()?;
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
             ORDER BY last_seen_at DESC"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, SessionRow>(&sql).bind(user_id).bind(now).fetch_all(pool).await)?,
        )
    }

    /// Records use of a session (sliding idle expiry). Cheap enough per request.
    pub async fn touch_session(&self, id: &str, now: i64) -> Result<()> {
        self.require_prepared()?;
        on_pool!(self, pool => {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2").bind(now).bind(id).execute(pool).await.map(|_| ())
        })?;
        Ok(())
    }

    /// Failed logins under `key` since `since`: how many, and when the oldest of them was.
    /// The identity generation now (see `Tx::identity_changed`).
    pub async fn identity_generation(&self) -> Result<i64> {
        self.require_prepared()?;
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar("SELECT generation FROM identity_changes WHERE id = 1")
                .fetch_one(pool)
                .await
        })?)
    }

    /// Whether an email link is unused and unexpired (without using it).
    pub async fn email_token_is_live(
        &self,
        token_hash: &str,
        purpose: &str,
        now: i64,
    ) -> Result<bool> {
        self.require_prepared()?;
        let live: i64 = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM email_tokens
                 WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3",
            )
            .bind(token_hash)
            .bind(purpose)
            .bind(now)
            .fetch_one(pool)
            .await
        })?;
        Ok(live > 0)
    }

    /// Counts one hit on each `(key, window_start)` and returns each key's hits in its window,
    /// all in one transaction of upserts: concurrent hits are serialised on the row, so each sees
    /// the count including every hit before it. Rows of windows that started before
    /// `forget_before` are deleted.
    pub async fn hit_rates(&self, keys: &[(&str, i64)], forget_before: i64) -> Result<Vec<i64>> {
        self.require_prepared()?;
        let hits = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut hits = Vec::with_capacity(keys.len());
            for (key, window_start) in keys {
                let count: i64 = sqlx::query_scalar(
                    "INSERT INTO rate_counts (rate_key, window_start, hits) VALUES ($1, $2, 1) \
                     ON CONFLICT (rate_key, window_start) DO UPDATE SET hits = rate_counts.hits + 1 \
                     RETURNING hits",
                )
                .bind(*key)
                .bind(*window_start)
                .fetch_one(&mut *tx)
                .await?;
                hits.push(count);
            }
            sqlx::query("DELETE FROM rate_counts WHERE window_start < $1")
                .bind(forget_before)
                .execute(&mut *tx)
                .await?;
            tx.commit().await.map(|()| hits)
        })?;
        Ok(hits)
    }

    /// Takes back one hit on `key` in its window (a login that turned out right).
    pub async fn unhit_rate(&self, key: &str, window_start: i64) -> Result<()> {
        self.require_prepared()?;
        on_pool!(self, pool => {
            sqlx::query("UPDATE rate_counts SET hits = hits - 1 WHERE rate_key = $1 AND window_start = $2 AND hits > 0")
                .bind(key)
                .bind(window_start)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }
}

impl Tx {
    pub async fn user_by_email(&mut self, email: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
        Ok(
            on_tx!(self, conn => sqlx::query_as::<_, UserRow>(&sql).bind(email).fetch_optional(conn).await)?,
        )
    }

    pub async fn user_by_id(&mut self, id: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        Ok(
            on_tx!(self, conn => sqlx::query_as::<_, UserRow>(&sql).bind(id).fetch_optional(conn).await)?,
        )
    }

    pub async fn count_users(&mut self) -> Result<i64> {
        Ok(
            on_tx!(self, conn => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM users").fetch_one(conn).await)?,
        )
    }

    pub async fn insert_user(&mut self, u: &UserRow) -> Result<()> {
        let sql = format!(
            "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        on_tx!(self, conn => {
            sqlx::query(&sql)
                .bind(&u.id)
                .bind(&u.email)
                .bind(&u.password_hash)
                .bind(&u.status)
                .bind(&u.rejection_reason)
                .bind(u.is_admin)
                .bind(u.suspended_at)
                .bind(u.email_verified_at)
                .bind(u.created_at)
                .bind(u.updated_at)
                .execute(conn)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Writes the mutable fields of a user row back (status, reason, flags, password, timestamps).
    pub async fn update_user(&mut self, u: &UserRow) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "UPDATE users SET password_hash = $2, status = $3, rejection_reason = $4, is_admin = $5,
                 suspended_at = $6, email_verified_at = $7, updated_at = $8 WHERE id = $1",
            )
            .bind(&u.id)
            .bind(&u.password_hash)
            .bind(&u.status)
            .bind(&u.rejection_reason)
            .bind(u.is_admin)
            .bind(u.suspended_at)
            .bind(u.email_verified_at)
            .bind(u.updated_at)
            .execute(conn)
            .await
            .map(|_| ())
        })?;
        // A status, admin flag or suspension may have changed.
        self.identity_changed().await?;
        Ok(())
    }

    /// Locks the site admins' rows until the transaction ends (see `lock_org_admins`).
    pub async fn lock_site_admins(&mut self) -> Result<()> {
        if let Tx::Postgres(t) = self {
            sqlx::query("SELECT id FROM users WHERE is_admin AND suspended_at IS NULL FOR UPDATE")
                .fetch_all(&mut **t)
                .await?;
        }
        Ok(())
    }

    pub async fn count_admins(&mut self) -> Result<i64> {
        Ok(on_tx!(self, conn => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM users WHERE is_admin AND suspended_at IS NULL").fetch_one(conn).await
        })?)
    }

    pub async fn insert_session(&mut self, s: &SessionRow) -> Result<()> {
        let sql = format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        on_tx!(self, conn => {
            sqlx::query(&sql)
                .bind(&s.id)
                .bind(&s.token_hash)
                .bind(&s.user_id)
                .bind(&s.csrf_token)
                .bind(s.created_at)
                .bind(s.last_seen_at)
                .bind(s.expires_at)
                .bind(&s.user_agent)
                .bind(&s.ip)
                .bind(s.revoked_at)
                .execute(conn)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Revokes one session of a user; returns whether it was live.
    pub async fn revoke_session(
        &mut self,
        user_id: &str,
        session_id: &str,
        now: i64,
    ) -> Result<bool> {
        let affected = on_tx!(self, conn => {
            sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL")
                .bind(now)
                .bind(session_id)
                .bind(user_id)
                .execute(conn)
                .await
                .map(|r| r.rows_affected())
        })?;
        if affected > 0 {
            self.identity_changed().await?;
        }
        Ok(affected > 0)
    }

    /// Revokes every live session of a user except `keep`; returns how many.
    pub async fn revoke_sessions_of(
        &mut self,
        user_id: &str,
        keep: Option<&str>,
        now: i64,
    ) -> Result<u64> {
        let revoked = on_tx!(self, conn => {
            sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL AND ($3 IS NULL OR id <> $3)")
                .bind(now)
                .bind(user_id)
                .bind(keep)
                .execute(conn)
                .await
                .map(|r| r.rows_affected())
        })?;
        if revoked > 0 {
            self.identity_changed().await?;
        }
        Ok(revoked)
    }

    pub async fn insert_email_token(&mut self, t: &EmailTokenRow) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO email_tokens (token_hash, user_id, purpose, created_at, expires_at, used_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&t.token_hash)
            .bind(&t.user_id)
            .bind(&t.purpose)
            .bind(t.created_at)
            .bind(t.expires_at)
            .bind(t.used_at)
            .execute(conn)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    /// Uses a single-use email link: succeeds once, while unexpired, for its purpose only.
    pub async fn consume_email_token(
        &mut self,
        token_hash: &str,
        purpose: &str,
        now: i64,
    ) -> Result<Option<EmailTokenRow>> {
        let used = on_tx!(self, conn => {
            sqlx::query(
                "UPDATE email_tokens SET used_at = $1
                 WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1",
            )
            .bind(now)
            .bind(token_hash)
            .bind(purpose)
            .execute(conn)
            .await
            .map(|r| r.rows_affected())
        })?;
        if used != 1 {
            return Ok(None);
        }
        Ok(on_tx!(self, conn => {
            sqlx::query_as::<_, EmailTokenRow>(
                "SELECT token_hash, user_id, purpose, created_at, expires_at, used_at FROM email_tokens WHERE token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(conn)
            .await
        })?)
    }

    /// Makes every unused link of `purpose` for a user unusable (e.g. older reset links after a reset).
    pub async fn retire_email_tokens(
        &mut self,
        user_id: &str,
        purpose: &str,
        now: i64,
    ) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query("UPDATE email_tokens SET used_at = $1 WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL")
                .bind(now)
                .bind(user_id)
                .bind(purpose)
                .execute(conn)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Bumps the identity generation (`identity_changes`): call it in every transaction that takes
    /// access away (a revocation, a suspension, a membership change).
    pub async fn identity_changed(&mut self) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query("UPDATE identity_changes SET generation = generation + 1 WHERE id = 1")
                .execute(conn)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Forgets every hit on `key` (an account's failed logins, once it logs in or resets).
    pub async fn clear_rate(&mut self, key: &str) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query("DELETE FROM rate_counts WHERE rate_key = $1").bind(key).execute(conn).await.map(|_| ())
        })?;
        Ok(())
    }
}
