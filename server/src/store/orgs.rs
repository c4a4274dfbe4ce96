//! Orgs, memberships, invites and API tokens.

use super::tx::on_tx;
use super::{Result, Store, Tx, on_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrgRow {
    pub id: String,
    pub name: String,
    pub personal_of: Option<String>,
    pub created_at: i64,
}

/// An org as one of its members sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MembershipRow {
    pub org_id: String,
    pub org_name: String,
    pub role: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InviteRow {
    pub id: String,
    pub token_hash: String,
    pub org_id: String,
    pub email: String,
    pub role: String,
    pub invited_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub accepted_by: Option<String>,
    pub revoked_at: Option<i64>,
    /// The emailed link's digest (`token_hash` is the copyable link's).
    pub mail_token_hash: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiTokenRow {
    pub id: String,
    pub token_hash: String,
    pub user_id: String,
    pub org_id: String,
    pub name: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrgSummaryRow {
    pub id: String,
    pub name: String,
    pub members: i64,
    pub created_at: i64,
}

const INVITE_COLUMNS: &str = "id, token_hash, org_id, email, role, invited_by, created_at, expires_at, accepted_at, accepted_by, revoked_at, mail_token_hash";
const TOKEN_COLUMNS: &str = "id, token_hash, user_id, org_id, name, scope, created_at, expires_at, last_used_at, revoked_at";

impl Store {
    pub async fn org(&self, id: &str) -> Result<Option<OrgRow>> {
        self.require_prepared()?;
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, OrgRow>("SELECT id, name, personal_of, created_at FROM orgs WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
        })?)
    }

    pub async fn memberships_of(&self, user_id: &str) -> Result<Vec<MembershipRow>> {
        self.require_prepared()?;
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, MembershipRow>(
                "SELECT m.org_id, o.name AS org_name, m.role FROM memberships m JOIN orgs o ON o.id = m.org_id
                 WHERE m.user_id = $1 ORDER BY o.name, o.id",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await
        })?)
    }

    /// The user's role in the org, if a member.
    pub async fn role_in(&self, org_id: &str, user_id: &str) -> Result<Option<String>> {
        self.require_prepared()?;
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar::<_, String>("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                .bind(org_id)
                .bind(user_id)
                .fetch_optional(pool)
                .await
        })?)
    }

    pub async fn members(&self, org_id: &str) -> Result<Vec<MemberRow>> {
        self.require_prepared()?;
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, MemberRow>(
                "SELECT m.user_id, u.email, m.role, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id
                 WHERE m.org_id = $1 ORDER BY u.email",
            )
            .bind(org_id)
            .fetch_all(pool)
            .await
        })?)
    }

    pub async fn all_orgs(&self, limit: i64) -> Result<Vec<OrgSummaryRow>> {
        self.require_prepared()?;
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, OrgSummaryRow>(
                "SELECT o.id, o.name, (SELECT COUNT(*) FROM memberships m WHERE m.org_id = o.id) AS members, o.created_at
                 FROM orgs o ORDER BY o.created_at DESC, o.id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
        })?)
    }

    pub async fn invites_of(&self, org_id: &str) -> Result<Vec<InviteRow>> {
        self.require_prepared()?;
        let sql = format!(
            "SELECT {INVITE_COLUMNS} FROM invites WHERE org_id = $1 ORDER BY created_at DESC, id"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, InviteRow>(&sql).bind(org_id).fetch_all(pool).await)?,
        )
    }

    pub async fn invite_by_token_hash(&self, token_hash: &str) -> Result<Option<InviteRow>> {
        self.require_prepared()?;
        let sql = format!(
            "SELECT {INVITE_COLUMNS} FROM invites WHERE token_hash = $1 OR mail_token_hash = $1"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, InviteRow>(&sql).bind(token_hash).fetch_optional(pool).await)?,
        )
    }

    pub async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiTokenRow>> {
        self.require_prepared()?;
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1");
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, ApiTokenRow>(&sql).bind(token_hash).fetch_optional(pool).await)?,
        )
    }

    pub async fn api_token_by_id(&self, id: &str) -> Result<Option<ApiTokenRow>> {
        self.require_prepared()?;
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, ApiTokenRow>(&sql).bind(id).fetch_optional(pool).await)?,
        )
    }

    pub async fn api_tokens_of(&self, user_id: &str) -> Result<Vec<ApiTokenRow>> {
        self.require_prepared()?;
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC, id"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, ApiTokenRow>(&sql).bind(user_id).fetch_all(pool).await)?,
        )
    }

    pub async fn touch_api_token(&self, id: &str, now: i64) -> Result<()> {
        self.require_prepared()?;
        on_pool!(self, pool => {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2").bind(now).bind(id).execute(pool).await.map(|_| ())
        })?;
        Ok(())
    }
}

impl Tx {
    pub async fn insert_org(&mut self, o: &OrgRow) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query("INSERT INTO orgs (id, name, personal_of, created_at) VALUES ($1, $2, $3, $4)")
                .bind(&o.id)
                .bind(&o.name)
                .bind(&o.personal_of)
                .bind(o.created_at)
                .execute(conn)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    pub async fn personal_org_of(&mut self, user_id: &str) -> Result<Option<String>> {
        Ok(on_tx!(self, conn => {
            sqlx::query_scalar::<_, String>("SELECT id FROM orgs WHERE personal_of = $1").bind(user_id).fetch_optional(conn).await
        })?)
    }

    pub async fn rename_org(&mut self, id: &str, name: &str) -> Result<bool> {
        let n = on_tx!(self, conn => {
            sqlx::query("UPDATE orgs SET name = $1 WHERE id = $2").bind(name).bind(id).execute(conn).await.map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    pub async fn role_in(&mut self, org_id: &str, user_id: &str) -> Result<Option<String>> {
        Ok(on_tx!(self, conn => {
            sqlx::query_scalar::<_, String>("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                .bind(org_id)
                .bind(user_id)
                .fetch_optional(conn)
                .await
        })?)
    }

    /// Adds a member, or changes the role of an existing one.
    pub async fn upsert_membership(
        &mut self,
        org_id: &str,
        user_id: &str,
        role: &str,
        now: i64,
    ) -> Result<()> {
        on_tx!(self, conn => {
            sqlx::query(
                "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
            )
            .bind(org_id)
            .bind(user_id)
            .bind(role)
            .bind(now)
            .execute(conn)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    pub async fn delete_membership(&mut self, org_id: &str, user_id: &str) -> Result<bool> {
        let n = on_tx!(self, conn => {
            sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
                .bind(org_id)
                .bind(user_id)
                .execute(conn)
                .await
                .map(|r| r.rows_affected())
        })?;
        if n == 1 {
            self.identity_changed().await?;
        }
        Ok(n == 1)
    }

    /// Locks the org's admin memberships until the transaction ends, so that two transactions
    /// each removing a different admin cannot both see the other still there (PostgreSQL reads
    /// what was committed; SQLite already runs one writer at a time).
    pub async fn lock_org_admins(&mut self, org_id: &str) -> Result<()> {
        if let Tx::Postgres(t) = self {
            sqlx::query(
                "SELECT user_id FROM memberships WHERE org_id = $1 AND role = 'admin' FOR UPDATE",
            )
            .bind(org_id)
            .fetch_all(&mut **t)
            .await?;
        }
        Ok(())
    }

    pub async fn count_org_admins(&mut self, org_id: &str) -> Result<i64> {
        Ok(on_tx!(self, conn => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND role = 'admin'")
                .bind(org_id)
                .fetch_one(conn)
                .await
        })?)
    }

    pub async fn insert_invite(&mut self, i: &InviteRow) -> Result<()> {
        let sql = format!(
            "INSERT INTO invites ({INVITE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
        on_tx!(self, conn => {
            sqlx::query(&sql)
                .bind(&i.id)
                .bind(&i.token_hash)
                .bind(&i.org_id)
                .bind(&i.email)
                .bind(&i.role)
                .bind(&i.invited_by)
                .bind(i.created_at)
                .bind(i.expires_at)
                .bind(i.accepted_at)
                .bind(&i.accepted_by)
                .bind(i.revoked_at)
                .bind(&i.mail_token_hash)
                .execute(conn)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    pub async fn revoke_invite(&mut self, org_id: &str, id: &str, now: i64) -> Result<bool> {
        let n = on_tx!(self, conn => {
            sqlx::query("UPDATE invites SET revoked_at = $1 WHERE id = $2 AND org_id = $3 AND revoked_at IS NULL AND accepted_at IS NULL")
                .bind(now)
                .bind(id)
                .bind(org_id)
                .execute(conn)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    /// Marks an invite accepted, once, while it is pending and unexpired; returns it.
    pub async fn accept_invite(
        &mut self,
        token_hash: &str,
        user_id: &str,
        now: i64,
    ) -> Result<Option<InviteRow>> {
        let n = on_tx!(self, conn => {
            sqlx::query(
                "UPDATE invites SET accepted_at = $1, accepted_by = $2
                 WHERE token_hash = $3 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $1",
            )
            .bind(now)
            .bind(user_id)
            .bind(token_hash)
            .execute(conn)
            .await
            .map(|r| r.rows_affected())
        })?;
        if n != 1 {
            return Ok(None);
        }
        let sql = format!("SELECT {INVITE_COLUMNS} FROM invites WHERE token_hash = $1");
        Ok(
            on_tx!(self, conn => sqlx::query_as::<_, InviteRow>(&sql).bind(token_hash).fetch_optional(conn).await)?,
        )
    }

    pub async fn insert_api_token(&mut self, t: &ApiTokenRow) -> Result<()> {
        let sql = format!(
            "INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        on_tx!(self, conn => {
            sqlx::query(&sql)
                .bind(&t.id)
                .bind(&t.token_hash)
                .bind(&t.user_id)
                .bind(&t.org_id)
                .bind(&t.name)
                .bind(&t.scope)
                .bind(t.created_at)
                .bind(t.expires_at)
                .bind(t.last_used_at)
                .bind(t.revoked_at)
                .execute(conn)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Revokes one token of a user; returns whether it was live.
    pub async fn revoke_api_token(
        &mut self,
        user_id: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<String>> {
        let n = on_tx!(self, conn => {
            sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .bind(user_id)
                .execute(conn)
                .await
                .map(|r| r.rows_affected())
        })?;
        if n != 1 {
            return Ok(None);
        }
        self.identity_changed().await?;
        Ok(on_tx!(self, conn => {
            sqlx::query_scalar::<_, String>("SELECT org_id FROM api_tokens WHERE id = $1").bind(id).fetch_optional(conn).await
        })?)
    }

    pub async fn revoke_api_tokens_of(
        &mut self,
        user_id: &str,
        org_id: Option<&str>,
        now: i64,
    ) -> Result<u64> {
        let revoked = on_tx!(self, conn => {
            sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL AND ($3 IS NULL OR org_id = $3)")
                .bind(now)
                .bind(user_id)
                .bind(org_id)
                .execute(conn)
                .await
                .map(|r| r.rows_affected())
        })?;
        if revoked > 0 {
            self.identity_changed().await?;
        }
        Ok(revoked)
    }
}
