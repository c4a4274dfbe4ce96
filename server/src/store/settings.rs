//! The `settings` table: deployment-wide key/value pairs.

use super::{Result, Store, on_pool};
use crate::clock::now_millis;

/// A random id made the first time a deployment's database is prepared.
pub const INSTALLATION_ID: &str = "installation_id";

impl Store {
    pub async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        self.require_prepared()?;
        let value = on_pool!(self, pool => {
            sqlx::query_scalar::<_, String>("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await
        })?;
        Ok(value)
    }

    /// Inserts or replaces the value of `key`.
    pub async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        self.require_prepared()?;
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(key)
            .bind(value)
            .bind(now_millis())
            .execute(pool)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    /// Stores `value` under `key` unless a value is already there; returns the value that is stored
    /// afterwards. Concurrent callers (several replicas starting at once) all get the same answer.
    pub async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<String> {
        self.require_prepared()?;
        self.insert_setting_if_absent(key, value).await
    }

    /// The body of `put_setting_if_absent`, also used by `prepare` before the store counts as ready.
    async fn insert_setting_if_absent(&self, key: &str, value: &str) -> Result<String> {
        let stored = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING")
                .bind(key)
                .bind(value)
                .bind(now_millis())
                .execute(&mut *tx)
                .await?;
            let stored = sqlx::query_scalar::<_, String>("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(stored)
        })?;
        Ok(stored)
    }

    pub(super) async fn ensure_installation_id(&self) -> Result<String> {
        let candidate = crate::secrets::random_hex(16);
        self.insert_setting_if_absent(INSTALLATION_ID, &candidate)
            .await
    }
}
