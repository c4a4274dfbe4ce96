//! Test harness: apps on both backends, the binary as a process, a throwaway PostgreSQL.

pub mod agent;
pub mod pg;
pub mod process;
pub mod smtp;
pub mod split;
pub mod webdriver;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use scopehub::app::{Airplane, Settings};
use scopehub::clock::Clock;
use scopehub::collector::CollectorConfig;
use scopehub::collector::shard::InProcessShard;
use scopehub::config::DatabaseUrl;
use scopehub::frontend::EdgeConfig;
use scopehub::monitoring::MonitoringConfig;
use scopehub::store::Store;
use scopehub::users::UsersConfig;
use scopehub::users::mail::Mailer;
use std::sync::Arc;
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per backend: `both!(name);` next to `async fn name(b: Backend)`.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name($crate::support::Backend::Postgres).await
            }
        }
    };
}
pub(crate) use both;

/// A fresh, empty database of one backend. `None` when PostgreSQL is not installed and not required.
pub struct TestDb {
    pub url: DatabaseUrl,
    _dir: Option<TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = DatabaseUrl::sqlite_file(&dir.path().join("nested/scopehub.db"));
                Some(TestDb {
                    url,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let server = pg::server()?;
                let url = server.create_database().await;
                Some(TestDb { url, _dir: None })
            }
        }
    }

    /// Runs a query returning one integer on a raw connection, bypassing the store.
    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        use sqlx::Connection;
        match self.url.backend() {
            shared::DatabaseBackend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(self.url.as_str())
                    .await
                    .expect("connect");
                sqlx::query_scalar(sql)
                    .fetch_one(&mut conn)
                    .await
                    .expect("query")
            }
            shared::DatabaseBackend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(self.url.as_str())
                    .await
                    .expect("connect");
                sqlx::query_scalar(sql)
                    .fetch_one(&mut conn)
                    .await
                    .expect("query")
            }
        }
    }

    /// A store on this database, prepared (migrated) unless `prepared` is false.
    pub async fn store(&self, prepared: bool) -> Store {
        let store = Store::open(&self.url).expect("open store");
        if prepared {
            store.prepare().await.expect("prepare store");
        }
        store
    }
}

/// The `serve` router on a real loopback socket, in this test's runtime.
pub struct TestApp {
    pub url: String,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub store: Store,
    pub clock: Clock,
    /// The in-process collector shard the reconciler places instances on.
    pub shard: Arc<InProcessShard>,
    /// The roles' states, as the composition root built them.
    pub users: scopehub::users::UsersState,
    pub provisioning: scopehub::provisioning::ProvisioningState,
    /// The in-process monitoring (scraping the app when `AppOptions::monitor_every` is set).
    pub monitoring: scopehub::monitoring::MonitoringState,
    _db: TestDb,
    _dist: TempDir,
    /// The default history folder (empty when the test chose another location).
    pub history_dir: TempDir,
}

pub struct AppOptions {
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub with_dist: bool,
    pub open_signup: bool,
    pub smtp_url: Option<String>,
    /// How long one delivery may take.
    pub smtp_timeout: Duration,
    /// Limits of new instances (the server's defaults when `None`).
    pub limits: Option<shared::instances::Limits>,
    /// Nodes one topology of one report may carry (the server's default when `None`).
    pub max_nodes_per_topology: Option<usize>,
    /// Renders cheaper than this are made on read (the server's default when `None`).
    pub render_on_read_ms: Option<i64>,
    /// What the live windows may take (the server's default when `None`).
    pub memory: Option<scopehub::collector::slot::MemoryBudget>,
    /// Proxies whose `X-Forwarded-For` the edge believes.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How long one render may run (the server's default when `None`).
    pub render_budget: Option<Duration>,
    /// The in-process monitoring scrapes the app itself this often (never when `None`)…
    pub monitor_every: Option<Duration>,
    /// …and these targets too (`ROLE=URL`).
    pub monitor_also: Vec<String>,
    /// How long a control waits for the probe (the server's default when `None`).
    pub control_timeout: Option<Duration>,
    /// Where and how history is kept: by default a temporary folder written every second, its
    /// retention enforced hourly (a test changes `location` or the intervals to its needs).
    pub history: Option<scopehub::collector::history::HistoryConfig>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 1024 * 1024,
            with_dist: true,
            open_signup: false,
            smtp_url: None,
            smtp_timeout: Duration::from_secs(30),
            limits: None,
            max_nodes_per_topology: None,
            render_on_read_ms: None,
            memory: None,
            trusted_proxies: Vec::new(),
            render_budget: None,
            monitor_every: None,
            monitor_also: Vec::new(),
            control_timeout: None,
            history: None,
        }
    }
}

impl TestApp {
    /// The web app's folder this app serves (the fake one of `write_fake_dist`).
    pub fn dist_dir(&self) -> std::path::PathBuf {
        self._dist.path().join("dist")
    }

    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, AppOptions::default()).await
    }

    pub async fn spawn_with(backend: Backend, options: AppOptions) -> Option<TestApp> {
        let db = TestDb::new(backend).await?;
        let store = db.store(true).await;
        let dist = tempfile::tempdir().expect("temp dir");
        if options.with_dist {
            write_fake_dist(dist.path());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let public_url: url::Url = format!("http://{addr}/").parse().unwrap();
        let mut users = UsersConfig::new(public_url.clone(), true);
        users.open_signup = options.open_signup;
        let mailer = Mailer::new(
            options.smtp_url.as_deref(),
            "Scopehub Tests <tests@scopehub.localhost>",
            options.smtp_timeout,
        )
        .expect("mailer");
        let clock = Clock::adjustable();
        let mut provisioning = scopehub::provisioning::ProvisioningConfig::default();
        if let Some(limits) = options.limits {
            provisioning.default_limits = limits;
        }
        let history_dir = tempfile::tempdir().expect("temp dir");
        let history = options.history.clone().unwrap_or_else(|| {
            use scopehub::collector::history::{HistoryConfig, HistoryLocation};
            HistoryConfig {
                flush_interval: Duration::from_secs(1),
                retention_interval: Duration::from_secs(3600),
                ..HistoryConfig::new(HistoryLocation::Folder(history_dir.path().to_owned()))
            }
        });
        let mut collector = CollectorConfig::default();
        if let Some(max) = options.max_nodes_per_topology {
            collector.max_nodes_per_topology = max;
        }
        if let Some(ms) = options.render_on_read_ms {
            collector.render_on_read_ms = ms;
        }
        if let Some(memory) = options.memory {
            collector.memory = memory;
        }
        if let Some(budget) = options.render_budget {
            collector.render_budget = budget;
        }
        if let Some(timeout) = options.control_timeout {
            collector.control_timeout = timeout;
        }
        // The same wiring as `scopehub serve`: the composition root builds every role.
        let airplane = Airplane::build(
            store.clone(),
            Settings {
                public_url: public_url.clone(),
                users,
                allowed_origins: Vec::new(),
                mailer,
                provisioning,
                collector,
                edge: EdgeConfig {
                    max_body_bytes: options.max_body_bytes,
                    request_timeout: options.request_timeout,
                    identity_cache_ttl: scopehub::config::DEFAULT_IDENTITY_CACHE,
                    trusted_proxies: options.trusted_proxies.clone(),
                },
                dist_dir: dist.path().join("dist"),
                clock: clock.clone(),
                drain: Default::default(),
                monitoring: match options.monitor_every {
                    Some(every) => MonitoringConfig::new(
                        std::iter::once(format!("serve={public_url}"))
                            .chain(options.monitor_also.iter().cloned())
                            .map(|t| t.parse().unwrap())
                            .collect(),
                        every,
                    ),
                    None => MonitoringConfig::new(Vec::new(), Duration::from_secs(3600)),
                },
                history: Some(history),
            },
        )
        .expect("the app builds");
        let (_shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        airplane.spawn_tasks(&shutdown_rx);
        let shard = airplane.shard.clone();
        let monitoring = airplane.monitoring.clone();
        let (users_state, provisioning_state) =
            (airplane.users.clone(), airplane.provisioning.clone());
        let router = airplane.router;
        tokio::spawn(async move {
            let _keep_mailer_running = _shutdown_tx;
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("serve");
        });
        let client = reqwest::Client::builder()
            .no_gzip()
            .no_brotli()
            .build()
            .expect("client");
        Some(TestApp {
            url: format!("http://{addr}"),
            addr,
            client,
            store,
            clock,
            shard,
            users: users_state,
            provisioning: provisioning_state,
            monitoring,
            _db: db,
            _dist: dist,
            history_dir,
        })
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.at(path))
            .send()
            .await
            .expect("request")
    }
}

/// A stand-in for trunk's output with the same kinds of files: the first-visit page, the full
/// app's page, hashed assets, a favicon.
pub fn write_fake_dist(root: &Path) {
    let dist = root.join("dist");
    std::fs::create_dir_all(&dist).expect("mkdir dist");
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><html><body>SPA INDEX</body></html>",
    )
    .expect("write");
    std::fs::write(
        dist.join("map.html"),
        "<!doctype html><html><body>SPA FULL APP</body></html>",
    )
    .expect("write");
    std::fs::write(
        dist.join("scopehub-app-0123456789abcdef.js"),
        "console.log('app');".repeat(50),
    )
    .expect("write");
    std::fs::write(
        dist.join("favicon.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    )
    .expect("write");
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`. For waiting on
/// asynchronous effects (a server becoming ready), never for measuring speed.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether an environment flag such as `REQUIRE_POSTGRES` is set to a true value.
/// The value of one series (name with its labels, as written) in a `/metrics` text; 0 if absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

pub fn required(var: &str) -> bool {
    matches!(
        std::env::var(var).as_deref(),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

/// Prints a warning that test output capture does not swallow (libtest captures only the print
/// macros), so a skipped variant is visible in `make test` output.
pub fn warn(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// A websocket handshake as a browser on the app's own page makes it: the session cookie, and
/// the page's Origin (the websocket URL's host, over http).
pub fn browser_ws_request(
    url: &str,
    cookie: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    let host = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let headers = request.headers_mut();
    headers.insert(
        "cookie",
        format!("scopehub_session={cookie}").parse().unwrap(),
    );
    headers.insert("origin", format!("http://{host}").parse().unwrap());
    request
}
