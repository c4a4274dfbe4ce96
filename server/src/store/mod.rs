//! The storage layer: every SQL statement of Scopehub lives under this folder.
//!
//! One `Store` works on SQLite (Airplane Mode) and PostgreSQL (staging, production). Queries are
//! written once in SQL both dialects accept (`$1` placeholders, `ON CONFLICT`, `BIGINT` millisecond
//! timestamps) and run on whichever pool is configured through [`on_pool!`]. Each backend has its own
//! migration folder (`server/migrations/{sqlite,postgres}`), kept in step: same file names, same schema.
//! Other modules never see a pool or write SQL; they call methods here.

mod accounts;
mod audit;
mod instances;
mod orgs;
mod settings;
mod tx;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shared::DatabaseBackend;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::config::DatabaseUrl;

pub use accounts::{EmailTokenRow, SessionRow, UserRow};
pub use audit::{AuditEntry, AuditRow, NewMail, OutboxRow};
pub use instances::{InstanceEventRow, InstanceRow, ProbeTokenRow};
pub use orgs::{ApiTokenRow, InviteRow, MemberRow, MembershipRow, OrgRow, OrgSummaryRow};
pub use settings::INSTALLATION_ID;
pub use tx::Tx;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a caller waits for a pooled connection before the request fails as "unavailable".
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the database folder {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("the database is not migrated yet")]
    NotReady,
    /// The health watch's last ping failed: requests fail at once rather than each waiting for
    /// the pool's connection timeout.
    #[error("the database is unreachable")]
    Unreachable,
}

impl StoreError {
    /// True when the database could not be reached (as opposed to a bad query or constraint).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::NotReady | StoreError::Unreachable | StoreError::CreateDir { .. } => true,
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(e)) | StoreError::Sqlx(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::Tls(_)
                )
            }
            StoreError::Migrate(_) => false,
        }
    }

    /// True when the database's storage is full (SQLite `SQLITE_FULL`, PostgreSQL `disk_full`):
    /// nothing was written, and writes work again once space is freed.
    pub fn is_storage_full(&self) -> bool {
        match self {
            StoreError::Sqlx(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("13" | "53100"))
                    || e.message().contains("disk is full")
                    || e.message().contains("No space left")
            }
            StoreError::Sqlx(sqlx::Error::Io(e)) => e.raw_os_error() == Some(28),
            _ => false,
        }
    }

    /// True when a row the operation needed does not exist (or no longer does).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Sqlx(sqlx::Error::RowNotFound))
    }

    /// True when the statement broke a unique constraint.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Sqlx(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    url: DatabaseUrl,
    migrated: AtomicBool,
    /// Set by the health watch (`Store::watch_health`) while the database does not answer.
    unreachable: AtomicBool,
}

enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool. The body is expanded once per backend, so
/// it type-checks against each driver separately while the SQL text is written once.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.inner.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

impl Store {
    /// Builds the pool without touching the database: connections are made on first use, so a
    /// server can start (and report itself not ready) while its database is still unreachable.
    pub fn open(url: &DatabaseUrl) -> Result<Store> {
        let pool = match url.backend() {
            DatabaseBackend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url.as_str())?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5));
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(8)
                        .acquire_timeout(ACQUIRE_TIMEOUT)
                        .connect_lazy_with(options),
                )
            }
            DatabaseBackend::Postgres => {
                let options =
                    PgConnectOptions::from_str(url.as_str())?.application_name("scopehub");
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(16)
                        .acquire_timeout(ACQUIRE_TIMEOUT)
                        .connect_lazy_with(options),
                )
            }
        };
        Ok(Store {
            inner: Arc::new(Inner {
                pool,
                url: url.clone(),
                migrated: AtomicBool::new(false),
                unreachable: AtomicBool::new(false),
            }),
        })
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.inner.url.backend()
    }

    /// Creates the SQLite file's folder if needed, applies pending migrations and seeds what every
    /// deployment needs (its installation id). Safe to run again and from several processes.
    pub async fn prepare(&self) -> Result<()> {
        if let Some(path) = self.inner.url.sqlite_path()
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| StoreError::CreateDir {
                    path: dir.display().to_string(),
                    source,
                })?;
        }
        match &self.inner.pool {
            Pool::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            Pool::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        self.ensure_installation_id().await?;
        self.inner.migrated.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether [`Store::prepare`] has succeeded in this process.
    pub fn is_prepared(&self) -> bool {
        self.inner.migrated.load(Ordering::Acquire)
    }

    /// One round trip to the database.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Closes every pooled connection; in-flight queries finish first.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }

    /// Starts a transaction: the write paths of the services are sequences of `Tx` calls
    /// committed together, so that a failure never leaves half of an operation behind.
    pub async fn begin(&self) -> Result<Tx> {
        self.require_prepared()?;
        Ok(match &self.inner.pool {
            // IMMEDIATE takes the write lock at the start (waiting up to the busy timeout), so a
            // transaction that reads and then writes cannot fail with SQLITE_BUSY halfway when
            // another writer committed in between, as a deferred one can.
            Pool::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    fn require_prepared(&self) -> Result<()> {
        if !self.is_prepared() {
            return Err(StoreError::NotReady);
        }
        if self.is_unreachable() {
            return Err(StoreError::Unreachable);
        }
        Ok(())
    }

    /// Whether the health watch's last ping failed.
    pub fn is_unreachable(&self) -> bool {
        self.inner.unreachable.load(Ordering::Acquire)
    }

    /// Pings the database every `every` (each ping given as long) for as long as the runtime
    /// runs. While pings fail, every request that needs the database fails at once with
    /// [`StoreError::Unreachable`] (503) instead of waiting for a connection; the first ping
    /// that answers lets them through again. The pool reconnects by itself.
    pub fn watch_health(&self, every: Duration) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if !store.is_prepared() {
                    continue;
                }
                let answered =
                    matches!(tokio::time::timeout(every, store.ping()).await, Ok(Ok(())));
                let was_unreachable = store.inner.unreachable.swap(!answered, Ordering::AcqRel);
                if was_unreachable == answered {
                    if answered {
                        tracing::info!("the database answers again");
                    } else {
                        tracing::warn!(
                            "the database does not answer; requests that need it get 503 until it does"
                        );
                    }
                }
            }
        });
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}
