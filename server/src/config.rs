//! Command line and environment configuration. Every flag has a `SCOPEHUB_*` environment fallback.
//!
//! Parsing validates everything it can (addresses, URLs, database URLs) so that bad configuration
//! fails at start with a one-line error naming the problem, never later at run time.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shared::DatabaseBackend;
use url::Url;

use crate::identity::internal::InternalSecret;

#[derive(Debug, Parser)]
#[command(
    name = "scopehub",
    version,
    about = "Scopehub: hosted, multi-tenant Weave Scope",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Airplane Mode: every role in one process (SQLite by default, 127.0.0.1:4040).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(MigrateArgs),
    /// Serve the built web app (`dist/`) with its cache headers, and nothing else.
    Ui(UiArgs),
    /// The users service alone, behind the edge: accounts, orgs, tokens, admin, mail.
    Users(UsersRoleArgs),
    /// The provisioning service alone, behind the edge: instances, the reconciler over HTTP shards.
    Provisioning(ProvisioningRoleArgs),
    /// One collector shard alone, behind the edge: the Scope app for the instances placed on it.
    Collector(CollectorRoleArgs),
    /// The edge alone (split mode): authenticates every request and proxies it to the role that
    /// serves it.
    Frontend(FrontendArgs),
    /// Monitoring alone: scrapes every role replica and serves their state to site admins.
    Monitoring(MonitoringRoleArgs),
    /// Our probe: reports this host in Scope's wire format.
    Probe(ProbeArgs),
    /// Synthetic hosts × containers × connections posting reports, for load tests (stops by itself).
    Loadgen(LoadgenArgs),
    /// Operator tasks, such as creating a site admin.
    Admin(AdminArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log output format.
    #[arg(long, env = "SCOPEHUB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax, e.g. `info` or `scopehub=debug,tower_http=info`.
    #[arg(long, env = "SCOPEHUB_LOG", default_value = "info")]
    pub log: String,
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Where data lives: the default SQLite file, generated secrets.
    #[arg(long, env = "SCOPEHUB_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://…`. Defaults to `sqlite://<data-dir>/scopehub.db`.
    #[arg(long, env = "SCOPEHUB_DATABASE_URL", value_parser = DatabaseUrl::from_str)]
    pub database_url: Option<DatabaseUrl>,
}

impl DatabaseArgs {
    pub fn database_url(&self) -> DatabaseUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| DatabaseUrl::sqlite_file(&self.data_dir.join("scopehub.db")))
    }
}

#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Address to listen on.
    #[arg(long, env = "SCOPEHUB_LISTEN", default_value = "127.0.0.1:4040")]
    pub listen: SocketAddr,
    /// Share the address with another process of the same user (`SO_REUSEPORT`): a new process
    /// can start on it before the old one stops, for restarts without a gap on one machine. Off
    /// by default, so that a second copy started by mistake fails with "address in use".
    #[arg(long, env = "SCOPEHUB_REUSE_PORT")]
    pub reuse_port: bool,
    /// Also serve `/healthz`, `/readyz` and `/metrics` (and nothing else) on this address: the
    /// internal listener for probes and scrapers, which reaches this very process even when
    /// `--listen` is shared with another (`--reuse-port`).
    #[arg(long, env = "SCOPEHUB_OPS_LISTEN")]
    pub ops_listen: Option<SocketAddr>,
    /// Largest request body accepted by the API, in bytes; larger ones get 413.
    #[arg(long, env = "SCOPEHUB_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Longest time one request may take, in seconds.
    #[arg(long, env = "SCOPEHUB_REQUEST_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub request_timeout: Duration,
    /// On SIGTERM, how long to keep serving while `/readyz` answers 503, so that load balancers
    /// stop sending requests before the listener closes (Ctrl-C skips it), in seconds.
    #[arg(long, env = "SCOPEHUB_SHUTDOWN_DELAY", default_value = "5", value_parser = parse_seconds)]
    pub shutdown_delay: Duration,
    /// After that, how long in-flight requests may take to finish before the process exits anyway.
    #[arg(long, env = "SCOPEHUB_SHUTDOWN_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub shutdown_timeout: Duration,
}

/// For roles that tell users and probes where they are (links in mail, Scope's `GET /api`).
#[derive(Debug, Clone, Args)]
pub struct PublicArgs {
    /// The URL users and probes reach Scopehub at. Defaults to `http://<listen>`.
    #[arg(long, env = "SCOPEHUB_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<Url>,
}

/// For roles that serve the web app.
#[derive(Debug, Clone, Args)]
pub struct DistArgs {
    /// The built web app (trunk's output folder).
    #[arg(long, env = "SCOPEHUB_DIST_DIR", default_value = "dist")]
    pub dist_dir: PathBuf,
}

#[derive(Clone, Args)]
pub struct UsersArgs {
    /// Turn the early-access waitlist off: confirmed accounts are approved at once.
    #[arg(long, env = "SCOPEHUB_OPEN_SIGNUP")]
    pub open_signup: bool,
    /// SMTP server for outgoing mail: `smtp://[user:pass@]host:port` (plain), `…?tls=required`
    /// (STARTTLS) or `smtps://…`. Without it, mail stays in the outbox that site admins read.
    #[arg(long, env = "SCOPEHUB_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// The sender of outgoing mail.
    #[arg(
        long,
        env = "SCOPEHUB_MAIL_FROM",
        default_value = "Scopehub <noreply@scopehub.localhost>"
    )]
    pub mail_from: String,
    /// How long delivering one message may take, in seconds (at most 90): a server that hangs
    /// costs one attempt, retried later, never the requests that queued mail.
    #[arg(long, env = "SCOPEHUB_SMTP_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=90))]
    pub smtp_timeout_secs: u64,
}

impl UsersArgs {
    pub fn smtp_timeout(&self) -> Duration {
        Duration::from_secs(self.smtp_timeout_secs)
    }
}

/// The edge's settings (in `serve`, and later `scopehub frontend`).
#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    /// Extra origins allowed to make state-changing requests (comma-separated), e.g. the
    /// `trunk serve` address http://127.0.0.1:8080.
    #[arg(
        long = "allowed-origin",
        env = "SCOPEHUB_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// How long the edge keeps what the users and provisioning roles answered about a session,
    /// token, probe token, membership or instance, in milliseconds. A change made through another
    /// edge replica (or by the roles) is seen after at most this long; one made through this edge
    /// at once. 0 asks every time.
    #[arg(long, env = "SCOPEHUB_IDENTITY_CACHE_MS", default_value_t = DEFAULT_IDENTITY_CACHE.as_millis() as u64, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub identity_cache_ms: u64,
    /// Reverse proxies in front of this edge (CIDRs, comma-separated), e.g. the load balancer's
    /// network. Only a request arriving from one of them has its `X-Forwarded-For` read for the
    /// client's address (which rate limits and the audit log use); from anyone else the header
    /// is ignored. None by default: the TCP peer is the client.
    #[arg(
        long = "trusted-proxy",
        env = "SCOPEHUB_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// The edge's identity cache TTL: well under the 1 s in which a revocation must take effect.
pub const DEFAULT_IDENTITY_CACHE: Duration = Duration::from_millis(500);

/// The key that authenticates identities between the edge and the roles (design.md §9).
#[derive(Debug, Clone, Args)]
pub struct InternalArgs {
    /// Shared by the edge and every role; at least 32 characters. Never put it on a command line
    /// in production: use the environment variable (from a Secret).
    #[arg(long, env = "SCOPEHUB_INTERNAL_SECRET", value_parser = InternalSecret::from_str, hide_env_values = true)]
    pub internal_secret: InternalSecret,
}

#[derive(Debug, Clone, Args)]
pub struct CollectorArgs {
    /// Nodes one topology of one report may carry (larger reports get 413).
    #[arg(
        long,
        env = "SCOPEHUB_MAX_NODES_PER_TOPOLOGY",
        default_value_t = 100_000
    )]
    pub max_nodes_per_topology: u32,
    /// Views that take less than this many milliseconds to render are rendered again on the first
    /// read after the window changes; costlier ones are served as last rendered (at most 3 s old)
    /// while rendered again in the background, at most once a second.
    #[arg(long, env = "SCOPEHUB_RENDER_ON_READ_MS", default_value_t = 20)]
    pub render_on_read_ms: u32,
    /// Memory one instance's live window may take, in MiB (estimated from what it holds); beyond
    /// it the instance's reports get 429 until older ones leave the 15 s window.
    #[arg(long, env = "SCOPEHUB_INSTANCE_WINDOW_MIB", default_value_t = 256)]
    pub instance_window_mib: u32,
    /// Memory the live windows of all instances of this collector may take together, in MiB;
    /// beyond it, instances holding at least an equal share of it get 429.
    #[arg(long, env = "SCOPEHUB_COLLECTOR_WINDOW_MIB", default_value_t = 2048)]
    pub collector_window_mib: u32,
    /// How long one render (a view, node details, the topology list) may run, in milliseconds;
    /// a render past it is stopped and its readers get 503.
    #[arg(long, env = "SCOPEHUB_RENDER_BUDGET_MS", default_value_t = 10_000)]
    pub render_budget_ms: u32,
    /// How long a control (restart a container…) waits for the probe's reply, in seconds, before
    /// the user gets 504 (a container's stop may take its 10 s grace period).
    #[arg(long, env = "SCOPEHUB_CONTROL_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=600))]
    pub control_timeout_secs: u32,
    #[command(flatten)]
    pub history: HistoryArgs,
}

/// History (time travel): where accepted reports are kept, and how they are written.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Where reports are kept: a folder (or `file:///path`), or `s3://bucket/prefix` for an
    /// S3-compatible bucket, whose credentials, region and endpoint come from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
    /// `AWS_ALLOW_HTTP`). Default: `<data-dir>/history` for `serve`, `./data/history` for
    /// `collector`.
    #[arg(long, env = "SCOPEHUB_HISTORY_URL")]
    pub history_url: Option<crate::collector::history::HistoryLocation>,
    /// How often kept reports are written out, in seconds: what a crash can lose at most.
    #[arg(long, env = "SCOPEHUB_HISTORY_FLUSH_SECS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=300))]
    pub history_flush_secs: u32,
    /// Report bytes waiting to be written the collector may hold, in MiB; beyond it (a store down
    /// for long), reports are still accepted but not kept.
    #[arg(long, env = "SCOPEHUB_HISTORY_BUFFER_MIB", default_value_t = 256)]
    pub history_buffer_mib: u32,
    /// How often retention and quotas are enforced, in seconds.
    #[arg(long, env = "SCOPEHUB_HISTORY_RETENTION_CHECK_SECS", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub history_retention_check_secs: u32,
    /// How often each instance's views are counted for the timeline's sparkline, in seconds, when
    /// no reader's topology list did: a render of every view of each instance receiving reports.
    #[arg(long, env = "SCOPEHUB_HISTORY_COUNT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=3_600))]
    pub history_count_secs: u32,
}

impl HistoryArgs {
    /// The history configuration, kept in `default_folder` unless `--history-url` says otherwise.
    pub fn config(&self, default_folder: PathBuf) -> crate::collector::history::HistoryConfig {
        use crate::collector::history::{HistoryConfig, HistoryLocation};
        let location = self
            .history_url
            .clone()
            .unwrap_or(HistoryLocation::Folder(default_folder));
        HistoryConfig {
            flush_interval: Duration::from_secs(u64::from(self.history_flush_secs)),
            buffer_bytes: (self.history_buffer_mib as usize) << 20,
            retention_interval: Duration::from_secs(u64::from(self.history_retention_check_secs)),
            count_interval: Duration::from_secs(u64::from(self.history_count_secs)),
            ..HistoryConfig::new(location)
        }
    }
}

/// The SMTP URL may hold a password: never print it.
impl fmt::Debug for UsersArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsersArgs")
            .field("open_signup", &self.open_signup)
            .field("smtp_url", &self.smtp_url.as_ref().map(|_| "***"))
            .field("mail_from", &self.mail_from)
            .field("smtp_timeout_secs", &self.smtp_timeout_secs)
            .finish()
    }
}

#[derive(Debug, Clone, Args)]
pub struct ProvisioningArgs {
    /// How long a rotated probe token keeps working, in hours.
    #[arg(long, env = "SCOPEHUB_PROBE_TOKEN_GRACE_HOURS", default_value_t = 24)]
    pub probe_token_grace_hours: u32,
    /// Default limit of new instances: probes reporting at once.
    #[arg(long, env = "SCOPEHUB_DEFAULT_MAX_PROBES", default_value_t = 50)]
    pub default_max_probes: u32,
    /// Default limit of new instances: bytes of one report after decompression.
    #[arg(long, env = "SCOPEHUB_DEFAULT_MAX_REPORT_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub default_max_report_bytes: u32,
    /// Default limit of new instances: reports per second.
    #[arg(
        long,
        env = "SCOPEHUB_DEFAULT_MAX_REPORTS_PER_SECOND",
        default_value_t = 20
    )]
    pub default_max_reports_per_second: u32,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub public: PublicArgs,
    #[command(flatten)]
    pub dist: DistArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub users: UsersArgs,
    #[command(flatten)]
    pub provisioning: ProvisioningArgs,
    #[command(flatten)]
    pub collector: CollectorArgs,
    #[command(flatten)]
    pub edge: EdgeArgs,
    /// Make the first account that signs up a site admin (Airplane Mode's way to get one). By
    /// default only with a SQLite database: a PostgreSQL deployment gets its first admin from
    /// `scopehub admin`, not from whoever signs up first.
    #[arg(long, env = "SCOPEHUB_FIRST_SIGNUP_ADMIN")]
    pub first_signup_admin: Option<bool>,
    /// Airplane Mode: report this machine into an instance "This machine" of the first admin's org,
    /// with a probe running inside the server (`make run` turns this on).
    #[arg(long, env = "SCOPEHUB_LOCAL_PROBE")]
    pub local_probe: bool,
    /// Where this machine's proc filesystem is, for `--local-probe`.
    #[arg(long, env = "SCOPEHUB_LOCAL_PROBE_PROC_ROOT", default_value = "/proc")]
    pub local_probe_proc_root: PathBuf,
    #[command(flatten)]
    pub monitoring: MonitoringArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Args)]
pub struct UsersRoleArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub public: PublicArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub users: UsersArgs,
    #[command(flatten)]
    pub internal: InternalArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// What the monitoring role scrapes, and how often (in `serve`: the process itself).
#[derive(Debug, Clone, Args)]
pub struct MonitoringArgs {
    /// How often every target is scraped, in seconds (at least 0.1).
    #[arg(long, env = "SCOPEHUB_SCRAPE_INTERVAL", default_value = "15", value_parser = parse_scrape_interval)]
    pub scrape_interval: Duration,
    /// Where every alert that fires or resolves is posted as JSON (retried with backoff).
    #[arg(long, env = "SCOPEHUB_ALERT_WEBHOOK_URL", value_parser = parse_public_url)]
    pub alert_webhook_url: Option<Url>,
}

#[derive(Debug, Clone, Args)]
pub struct MonitoringRoleArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub monitoring: MonitoringArgs,
    /// A role replica to scrape, as `ROLE=URL` (its `/metrics` and `/readyz`), or `ROLE=dns+URL`
    /// for every address the URL's host resolves to (a headless Service: every replica); repeat
    /// for each (comma-separated in the environment).
    #[arg(
        long = "target",
        env = "SCOPEHUB_MONITORING_TARGETS",
        value_delimiter = ',',
        required = true
    )]
    pub targets: Vec<crate::monitoring::TargetSpec>,
    /// The users service, through whose outbox alerts are mailed to the site admins; without it
    /// alerts are only shown and logged.
    #[arg(long, env = "SCOPEHUB_USERS_URL", value_parser = parse_public_url)]
    pub users_url: Option<Url>,
    #[command(flatten)]
    pub internal: InternalArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ProvisioningRoleArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub provisioning: ProvisioningArgs,
    /// The users service's internal URL (memberships).
    #[arg(long, env = "SCOPEHUB_USERS_URL", value_parser = parse_public_url)]
    pub users_url: Url,
    /// A collector shard, as `NAME=URL`; repeat for each (comma-separated in the environment).
    #[arg(long = "collector-shard", env = "SCOPEHUB_COLLECTOR_SHARDS", value_parser = parse_shard, value_delimiter = ',', required = true)]
    pub collector_shards: Vec<ShardUrl>,
    #[command(flatten)]
    pub internal: InternalArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CollectorRoleArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub public: PublicArgs,
    #[command(flatten)]
    pub collector: CollectorArgs,
    /// This shard's name, as provisioning knows it (in Kubernetes: the pod's name).
    #[arg(long, env = "SCOPEHUB_SHARD")]
    pub shard: String,
    /// The users service's internal URL (open websockets re-check membership through it).
    #[arg(long, env = "SCOPEHUB_USERS_URL", value_parser = parse_public_url)]
    pub users_url: Url,
    /// The provisioning service's internal URL (open websockets re-check the instance through it).
    #[arg(long, env = "SCOPEHUB_PROVISIONING_URL", value_parser = parse_public_url)]
    pub provisioning_url: Url,
    #[command(flatten)]
    pub internal: InternalArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Args)]
pub struct FrontendArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub public: PublicArgs,
    #[command(flatten)]
    pub edge: EdgeArgs,
    /// The users service (accounts, orgs, tokens, admin; identity lookups).
    #[arg(long, env = "SCOPEHUB_USERS_URL", value_parser = parse_public_url)]
    pub users_url: Url,
    /// The provisioning service (instances; probe token and placement lookups).
    #[arg(long, env = "SCOPEHUB_PROVISIONING_URL", value_parser = parse_public_url)]
    pub provisioning_url: Url,
    /// The ui service (the web app).
    #[arg(long, env = "SCOPEHUB_UI_URL", value_parser = parse_public_url)]
    pub ui_url: Url,
    /// The monitoring service (`/api/admin/system`); without it that page answers 503.
    #[arg(long, env = "SCOPEHUB_MONITORING_URL", value_parser = parse_public_url)]
    pub monitoring_url: Option<Url>,
    /// A collector shard, as `NAME=URL`; repeat for each (comma-separated in the environment).
    #[arg(long = "collector-shard", env = "SCOPEHUB_COLLECTOR_SHARDS", value_parser = parse_shard, value_delimiter = ',', required = true)]
    pub collector_shards: Vec<ShardUrl>,
    /// Longest wait for a role's answer before the edge answers 504, in seconds.
    #[arg(long, env = "SCOPEHUB_UPSTREAM_TIMEOUT", default_value = "25", value_parser = parse_seconds)]
    pub upstream_timeout: Duration,
    #[command(flatten)]
    pub internal: InternalArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// `NAME=URL` of one collector shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardUrl {
    pub name: String,
    pub url: Url,
}

fn parse_shard(s: &str) -> Result<ShardUrl, String> {
    let (name, url) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=URL"))?;
    let name = name.trim();
    if name.is_empty() || name.len() > 63 {
        return Err(format!("`{s}`: a shard name has 1 to 63 characters"));
    }
    Ok(ShardUrl {
        name: name.to_owned(),
        url: parse_public_url(url.trim())?,
    })
}

#[derive(Clone, Args)]
pub struct ProbeArgs {
    /// The Scopehub (or Scope app) URL to report to.
    #[arg(long, env = "SCOPEHUB_PROBE_URL", value_parser = parse_public_url)]
    pub url: Url,
    /// The instance's probe token (`shp_…`).
    #[arg(long, env = "SCOPEHUB_PROBE_TOKEN")]
    pub token: String,
    /// Time between reports, in seconds.
    #[arg(long, env = "SCOPEHUB_PROBE_INTERVAL", default_value = "3", value_parser = parse_seconds)]
    pub interval: Duration,
    /// Send JSON instead of msgpack.
    #[arg(long)]
    pub json: bool,
    /// Send one report and exit (non-zero if it was refused).
    #[arg(long)]
    pub once: bool,
    /// Where the host's proc filesystem is (e.g. `/host/proc` in a container).
    #[arg(long, env = "SCOPEHUB_PROBE_PROC", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// The Docker engine's socket; containers are reported while it answers.
    #[arg(long, env = "SCOPEHUB_PROBE_DOCKER_SOCKET", default_value = crate::probe::docker::DEFAULT_SOCKET)]
    pub docker_socket: PathBuf,
    /// Offer a shell on this host from the map ("Open shell" on the host's node, for editors of
    /// instances whose terminals are on). Off unless given: it is root on the host.
    #[arg(long, env = "SCOPEHUB_PROBE_HOST_EXEC")]
    pub host_exec: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

/// The token is a secret: never print it.
impl fmt::Debug for ProbeArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeArgs")
            .field("url", &self.url.as_str())
            .field("token", &"***")
            .field("interval", &self.interval)
            .finish()
    }
}

#[derive(Debug, Clone, Args)]
pub struct LoadgenArgs {
    /// The Scopehub URL to report to.
    #[arg(long, value_parser = parse_public_url)]
    pub url: Url,
    /// The instance's probe token.
    #[arg(long, env = "SCOPEHUB_PROBE_TOKEN")]
    pub token: String,
    /// Synthetic hosts (each a probe).
    #[arg(long, default_value_t = 10)]
    pub hosts: usize,
    /// What each host runs: `small` (see `--containers`, `--connections`), or Scope-sized `medium`
    /// (150 processes, 50 containers, 16 images, 400 connections) or `large` (600, 200, 40, 1,600).
    #[arg(long, value_enum, default_value_t = LoadShape::Small)]
    pub shape: LoadShape,
    /// Containers per host (`small` shape).
    #[arg(long, default_value_t = 10)]
    pub containers: usize,
    /// Connections per container (`small` shape).
    #[arg(long, default_value_t = 3)]
    pub connections: usize,
    /// Seconds between one host's reports.
    #[arg(long, default_value = "3", value_parser = parse_seconds)]
    pub interval: Duration,
    /// Seconds to run before stopping.
    #[arg(long, default_value = "30", value_parser = parse_seconds)]
    pub duration: Duration,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadShape {
    Small,
    Medium,
    Large,
}

impl LoadgenArgs {
    pub fn shape(&self) -> crate::probe::loadgen::Shape {
        use crate::probe::loadgen::Shape;
        match self.shape {
            LoadShape::Small => Shape::small(self.containers, self.connections),
            LoadShape::Medium => Shape::medium(),
            LoadShape::Large => Shape::large(),
        }
    }
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Make the account with this email an approved site admin (creating it if needed) and print a
    /// one-time login link.
    Create {
        #[arg(long)]
        email: String,
        /// The URL the printed link points at.
        #[arg(long, env = "SCOPEHUB_PUBLIC_URL", value_parser = parse_public_url, default_value = "http://127.0.0.1:4040/")]
        public_url: Url,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        log: LogArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Args)]
pub struct UiArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub dist: DistArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("`{s}` must be between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_scrape_interval(s: &str) -> Result<Duration, String> {
    let interval = parse_seconds(s)?;
    if interval < Duration::from_millis(100) {
        return Err(format!("`{s}`: scrape at most every 0.1 seconds"));
    }
    Ok(interval)
}

fn parse_public_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "`{s}` must be an http:// or https:// URL with a host"
        ));
    }
    Ok(url)
}

/// A validated database URL. Parsing checks the scheme and that the driver accepts the rest.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    backend: DatabaseBackend,
    url: String,
}

impl DatabaseUrl {
    pub fn sqlite_file(path: &Path) -> Self {
        DatabaseUrl {
            backend: DatabaseBackend::Sqlite,
            url: format!("sqlite://{}", path.display()),
        }
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.backend
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The file behind a `sqlite://` URL, when it names one (not `:memory:`).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        if self.backend != DatabaseBackend::Sqlite {
            return None;
        }
        let rest = self
            .url
            .strip_prefix("sqlite://")
            .or_else(|| self.url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let backend = if s.starts_with("sqlite:") {
            sqlx::sqlite::SqliteConnectOptions::from_str(s)
                .map_err(|e| format!("invalid SQLite URL: {e}"))?;
            DatabaseBackend::Sqlite
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            sqlx::postgres::PgConnectOptions::from_str(s)
                .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
            DatabaseBackend::Postgres
        } else {
            return Err("must start with sqlite:// or postgres://".to_owned());
        };
        Ok(DatabaseUrl {
            backend,
            url: s.to_owned(),
        })
    }
}

/// Never print a password: logs and errors show the URL with its password replaced.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Url::parse(&self.url) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                f.write_str(url.as_str())
            }
            _ => f.write_str(&self.url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_validated_by_scheme_and_driver() {
        assert_eq!(
            "sqlite://./data/x.db"
                .parse::<DatabaseUrl>()
                .unwrap()
                .backend(),
            DatabaseBackend::Sqlite
        );
        assert_eq!(
            "postgres://u@localhost/db"
                .parse::<DatabaseUrl>()
                .unwrap()
                .backend(),
            DatabaseBackend::Postgres
        );
        assert!("mysql://localhost/db".parse::<DatabaseUrl>().is_err());
        assert!(
            "postgres://localhost:notaport/db"
                .parse::<DatabaseUrl>()
                .is_err()
        );
    }

    #[test]
    fn passwords_never_reach_the_display_form() {
        let url: DatabaseUrl = "postgres://user:hunter2@db.internal/scopehub"
            .parse()
            .unwrap();
        assert!(!url.to_string().contains("hunter2"));
        assert!(!format!("{url:?}").contains("hunter2"));
    }

    #[test]
    fn sqlite_paths_are_extracted() {
        let url: DatabaseUrl = "sqlite://./data/scopehub.db?mode=rwc".parse().unwrap();
        assert_eq!(url.sqlite_path(), Some(PathBuf::from("./data/scopehub.db")));
        let mem: DatabaseUrl = "sqlite::memory:".parse().unwrap();
        assert_eq!(mem.sqlite_path(), None);
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
