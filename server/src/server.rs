//! Running a role: binding, start-up with database retries, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::response::IntoResponse;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{self, Airplane, RoleBasics, Settings};
use crate::clock::{Clock, HOUR};
use crate::collector::CollectorConfig;
use crate::collector::history::History;
use crate::collector::shard::InProcessShard;
use crate::collector::slot::MemoryBudget;
use crate::config::{
    CollectorArgs, CollectorRoleArgs, DatabaseArgs, EdgeArgs, FrontendArgs, HttpArgs, MigrateArgs,
    MonitoringRoleArgs, ProvisioningArgs, ProvisioningRoleArgs, PublicArgs, ServeArgs, UiArgs,
    UsersArgs, UsersRoleArgs,
};
use crate::frontend::EdgeConfig;
use crate::frontend::proxy::Upstreams;
use crate::monitoring::{MonitoringConfig, MonitoringState};
use crate::ops::{Drain, StartupStatus};
use crate::provisioning::ProvisioningConfig;
use crate::provisioning::directory::HttpInstances;
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::ui::Spa;
use crate::users::mail::Mailer;
use crate::users::{UsersConfig, UsersState};
use shared::instances::Limits;
use shared::version::DatabaseBackend;

const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(15);

fn provisioning_config(p: &ProvisioningArgs) -> ProvisioningConfig {
    ProvisioningConfig {
        default_limits: Limits {
            max_probes: p.default_max_probes.into(),
            max_report_bytes: p.default_max_report_bytes.into(),
            max_reports_per_second: p.default_max_reports_per_second.into(),
        },
        token_grace: i64::from(p.probe_token_grace_hours) * HOUR,
        ..ProvisioningConfig::default()
    }
}

fn collector_config(c: &CollectorArgs, public_url: &url::Url) -> CollectorConfig {
    CollectorConfig {
        max_nodes_per_topology: c.max_nodes_per_topology as usize,
        hostname: public_url.host_str().unwrap_or("scopehub").to_owned(),
        render_on_read_ms: i64::from(c.render_on_read_ms),
        memory: MemoryBudget {
            instance_bytes: (c.instance_window_mib as usize) << 20,
            shard_bytes: (c.collector_window_mib as usize) << 20,
        },
        render_budget: Duration::from_millis(u64::from(c.render_budget_ms)),
        control_timeout: Duration::from_secs(u64::from(c.control_timeout_secs)),
    }
}

fn users_config(u: &UsersArgs, public_url: url::Url, first_user_is_admin: bool) -> UsersConfig {
    let mut users = UsersConfig::new(public_url, first_user_is_admin);
    users.open_signup = u.open_signup;
    users
}

/// The public URL: the flag, or the address actually bound (with `--listen …:0` the real port is
/// known only once bound).
fn public_url_of(public: &PublicArgs, listener: &TcpListener) -> anyhow::Result<url::Url> {
    match &public.public_url {
        Some(url) => Ok(url.clone()),
        None => bound_url(listener),
    }
}

fn bound_url(listener: &TcpListener) -> anyhow::Result<url::Url> {
    // A SocketAddr always formats as a valid URL authority.
    Ok(url::Url::parse(&format!(
        "http://{}/",
        listener.local_addr()?
    ))?)
}

/// `scopehub serve`: every role in one process.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (url, store) = open_watched_store(&args.database)?;
    let listener = bind(&args.http).await?;
    let public_url = public_url_of(&args.public, &listener)?;
    // Monitoring and the local probe reach this process the way any client would: over HTTP, on
    // loopback.
    let mut addr = listener.local_addr()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let self_url = url::Url::parse(&format!("http://{addr}/"))?;
    let itself = crate::monitoring::TargetSpec {
        role: "serve".to_owned(),
        url: self_url.clone(),
        every_address: false,
    };
    let settings = Settings {
        // Airplane Mode (SQLite): the first account to sign up becomes the site admin.
        users: users_config(
            &args.users,
            public_url.clone(),
            args.first_signup_admin
                .unwrap_or(args.database.database_url().backend() == DatabaseBackend::Sqlite),
        ),
        collector: collector_config(&args.collector, &public_url),
        public_url: public_url.clone(),
        allowed_origins: args.edge.allowed_origins.clone(),
        mailer: Mailer::new(
            args.users.smtp_url.as_deref(),
            &args.users.mail_from,
            args.users.smtp_timeout(),
        )?,
        provisioning: provisioning_config(&args.provisioning),
        edge: edge_config(&args.http, Some(&args.edge)),
        dist_dir: args.dist.dist_dir.clone(),
        clock: Clock::system(),
        drain: Drain::default(),
        monitoring: MonitoringConfig {
            webhook: args.monitoring.alert_webhook_url.clone(),
            ..MonitoringConfig::new(vec![itself], args.monitoring.scrape_interval)
        },
        history: Some(
            args.collector
                .history
                .config(args.database.data_dir.join("history")),
        ),
    };
    let drain = settings.drain.clone();
    let airplane = Airplane::build(store.clone(), settings)?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(prepare_with_retry(
        store.clone(),
        airplane.startup.clone(),
        shutdown_rx.clone(),
    ));
    airplane.spawn_tasks(&shutdown_rx);
    if args.local_probe {
        airplane.spawn_local_probe(
            self_url,
            args.local_probe_proc_root.clone(),
            Duration::from_secs(3),
            &shutdown_rx,
        );
    }
    announce(
        &listener,
        Some(&public_url),
        Some(&airplane.spa),
        Some(&url),
    )?;

    run_until_shutdown(listener, airplane.router, &args.http, shutdown_tx, drain).await?;
    airplane.shard.flush_history().await;
    store.close().await;
    Ok(())
}

/// `scopehub ui`: the web app alone. Opens no database.
pub async fn ui(args: UiArgs) -> anyhow::Result<()> {
    let spa = Spa::new(&args.dist.dist_dir);
    let drain = Drain::default();
    let router = app::ui_service(
        spa.clone(),
        Metrics::new(),
        &edge_config(&args.http, None),
        drain.clone(),
    );
    let listener = bind(&args.http).await?;
    announce(&listener, None, Some(&spa), None)?;
    let (shutdown_tx, _) = watch::channel(false);
    run_until_shutdown(listener, router, &args.http, shutdown_tx, drain).await
}

fn role_basics(http: &HttpArgs, secret: crate::identity::internal::InternalSecret) -> RoleBasics {
    RoleBasics {
        clock: Clock::system(),
        metrics: Metrics::new(),
        secret,
        edge: edge_config(http, None),
        drain: Drain::default(),
    }
}

/// `scopehub monitoring`: scrapes the roles it is given and serves what it saw. No database.
pub async fn monitoring(args: MonitoringRoleArgs) -> anyhow::Result<()> {
    let listener = bind(&args.http).await?;
    let basics = role_basics(&args.http, args.internal.internal_secret.clone());
    let mut config = MonitoringConfig::new(args.targets.clone(), args.monitoring.scrape_interval);
    config.webhook = args.monitoring.alert_webhook_url.clone();
    let state = match &args.users_url {
        Some(url) => {
            let users = crate::users::directory::HttpDirectory(basics.client(
                "users",
                "monitoring",
                url.clone(),
            )?);
            MonitoringState::mailing(config, basics.clock.clone(), Arc::new(users))
        }
        None => MonitoringState::new(config, basics.clock.clone()),
    };
    let router = app::monitoring_service(&state, &basics);
    announce(&listener, None, None, None)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(state.run(shutdown_rx));
    run_until_shutdown(listener, router, &args.http, shutdown_tx, basics.drain).await
}

/// `scopehub frontend`: the edge alone, proxying to the other roles. No database.
pub async fn frontend(args: FrontendArgs) -> anyhow::Result<()> {
    let listener = bind(&args.http).await?;
    let public_url = public_url_of(&args.public, &listener)?;
    let mut basics = role_basics(&args.http, args.internal.internal_secret.clone());
    basics.edge = edge_config(&args.http, Some(&args.edge));
    let mut shards = std::collections::HashMap::new();
    for shard in &args.collector_shards {
        if shards
            .insert(shard.name.clone(), shard.url.clone())
            .is_some()
        {
            anyhow::bail!("--collector-shard {} is given twice", shard.name);
        }
    }
    let upstreams = Upstreams {
        users: args.users_url.clone(),
        provisioning: args.provisioning_url.clone(),
        ui: args.ui_url.clone(),
        monitoring: args.monitoring_url.clone(),
        shards,
    };
    let router = app::frontend_service(
        upstreams,
        &public_url,
        args.edge.allowed_origins.clone(),
        args.upstream_timeout,
        &basics,
    )?;
    announce(&listener, Some(&public_url), None, None)?;
    let (shutdown_tx, _) = watch::channel(false);
    run_until_shutdown(listener, router, &args.http, shutdown_tx, basics.drain).await
}

/// `scopehub users`: the users role alone, with mail delivery.
pub async fn users(args: UsersRoleArgs) -> anyhow::Result<()> {
    let (url, store) = open_watched_store(&args.database)?;
    let listener = bind(&args.http).await?;
    let public_url = public_url_of(&args.public, &listener)?;
    let basics = role_basics(&args.http, args.internal.internal_secret.clone());
    let mailer = Mailer::new(
        args.users.smtp_url.as_deref(),
        &args.users.mail_from,
        args.users.smtp_timeout(),
    )?;
    let state = UsersState::new(
        store.clone(),
        basics.clock.clone(),
        users_config(&args.users, public_url, false),
        mailer.clone(),
    )
    .with_metrics(&basics.metrics);
    let startup = StartupStatus::default();
    let router = app::users_service(&state, startup.clone(), &basics);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(prepare_with_retry(
        store.clone(),
        startup,
        shutdown_rx.clone(),
    ));
    tokio::spawn(mailer.run(
        store.clone(),
        basics.clock.clone(),
        basics.metrics.clone(),
        shutdown_rx,
    ));
    announce(&listener, None, None, Some(&url))?;
    run_until_shutdown(listener, router, &args.http, shutdown_tx, basics.drain).await?;
    store.close().await;
    Ok(())
}

/// `scopehub provisioning`: the provisioning role alone, with its reconciler over HTTP shards.
pub async fn provisioning(args: ProvisioningRoleArgs) -> anyhow::Result<()> {
    let (url, store) = open_watched_store(&args.database)?;
    let listener = bind(&args.http).await?;
    let basics = role_basics(&args.http, args.internal.internal_secret.clone());
    let shards = args
        .collector_shards
        .iter()
        .map(|s| (s.name.clone(), s.url.clone()))
        .collect();
    let state = app::provisioning_state(
        store.clone(),
        provisioning_config(&args.provisioning),
        args.users_url.clone(),
        shards,
        &basics,
    )?;
    let startup = StartupStatus::default();
    let router = app::provisioning_service(&state, startup.clone(), &basics);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(prepare_with_retry(
        store.clone(),
        startup,
        shutdown_rx.clone(),
    ));
    tokio::spawn(state.reconciler().run(shutdown_rx));
    announce(&listener, None, None, Some(&url))?;
    run_until_shutdown(listener, router, &args.http, shutdown_tx, basics.drain).await?;
    store.close().await;
    Ok(())
}

/// `scopehub collector --shard NAME`: one collector shard alone. No database.
pub async fn collector(args: CollectorRoleArgs) -> anyhow::Result<()> {
    let listener = bind(&args.http).await?;
    let public_url = public_url_of(&args.public, &listener)?;
    let basics = role_basics(&args.http, args.internal.internal_secret.clone());
    let config = collector_config(&args.collector, &public_url);
    let history = History::open(
        args.collector.history.config("./data/history".into()),
        basics.metrics.clone(),
    )?;
    let shard = Arc::new(
        InProcessShard::new(args.shard.clone(), basics.clock.clone())
            .with_memory_budget(config.memory)
            .with_history(Arc::new(history)),
    );
    let state = app::collector_state(
        shard,
        config,
        args.users_url.clone(),
        args.provisioning_url.clone(),
        &basics,
    )?;
    let startup = StartupStatus::default();
    let router = app::collector_service(&state, startup.clone(), &basics);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let provisioning = HttpInstances(basics.client(
        "provisioning",
        &format!("collector {}", args.shard),
        args.provisioning_url.clone(),
    )?);
    tokio::spawn(app::load_placements(
        state.clone(),
        provisioning,
        startup,
        shutdown_rx.clone(),
    ));
    tokio::spawn(state.clone().run_history(shutdown_rx));
    announce(&listener, None, None, None)?;
    run_until_shutdown(listener, router, &args.http, shutdown_tx, basics.drain).await?;
    state.shard.flush_history().await;
    Ok(())
}

/// `scopehub migrate`: apply migrations once and exit; fails fast (a job runner retries).
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let (url, store) = open_store(&args.database)?;
    store
        .prepare()
        .await
        .with_context(|| format!("cannot migrate {url}"))?;
    store.close().await;
    tracing::info!(database = %url, "migrations applied");
    Ok(())
}

/// `scopehub admin create`: makes an account an approved site admin and prints a one-time login
/// link. Creates the account (with a random password to reset later) if there is none.
pub async fn admin_create(
    email: &str,
    public_url: url::Url,
    database: &DatabaseArgs,
) -> anyhow::Result<()> {
    let email =
        shared::users::normalize_email(email).map_err(|e| anyhow::anyhow!("--email {e}"))?;
    let (url, store) = open_store(database)?;
    store
        .prepare()
        .await
        .with_context(|| format!("cannot prepare {url}"))?;
    let users = UsersConfig::new(public_url, false);
    let link =
        crate::users::admin::create_site_admin(&store, &users, &email, crate::clock::now_millis())
            .await?;
    store.close().await;
    println!("{email} is a site admin. Log in within 24 hours with this one-time link:\n{link}");
    Ok(())
}

/// The database the flags name, with a one-line error naming it if it cannot be used.
/// How often a serving process pings its database (`Store::watch_health`).
const DATABASE_HEALTH_EVERY: Duration = Duration::from_secs(1);

/// [`open_store`] for a process that serves requests: its database's health is watched, so that
/// an outage answers 503 at once.
fn open_watched_store(
    database: &DatabaseArgs,
) -> anyhow::Result<(crate::config::DatabaseUrl, Store)> {
    let (url, store) = open_store(database)?;
    store.watch_health(DATABASE_HEALTH_EVERY);
    Ok((url, store))
}

fn open_store(database: &DatabaseArgs) -> anyhow::Result<(crate::config::DatabaseUrl, Store)> {
    let url = database.database_url();
    let store = Store::open(&url).with_context(|| format!("cannot use database {url}"))?;
    Ok((url, store))
}

/// The layers' settings; `edge` for the processes that authenticate (`serve`, `frontend`).
fn edge_config(http: &HttpArgs, edge: Option<&EdgeArgs>) -> EdgeConfig {
    EdgeConfig {
        max_body_bytes: http.max_body_bytes,
        request_timeout: http.request_timeout,
        identity_cache_ttl: edge.map_or(Duration::ZERO, |e| {
            Duration::from_millis(e.identity_cache_ms)
        }),
        trusted_proxies: edge.map(|e| e.trusted_proxies.clone()).unwrap_or_default(),
    }
}

async fn bind(http: &HttpArgs) -> anyhow::Result<TcpListener> {
    let addr = http.listen;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .context("cannot open a socket")?;
    // What the standard library's bind does on Unix: a restarted process can bind at once.
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    if http.reuse_port {
        socket.set_reuseport(true)?;
    }
    socket
        .bind(addr)
        .and_then(|()| socket.listen(1024))
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Prints the one line a person (or a test) looks for on stdout: where the server is.
/// `public_url` is where people reach it (`serve`); a role behind the edge announces the address it
/// listens on.
fn announce(
    listener: &TcpListener,
    public_url: Option<&url::Url>,
    spa: Option<&Spa>,
    db: Option<&crate::config::DatabaseUrl>,
) -> anyhow::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    if let Some(spa) = spa.filter(|spa| !spa.is_built()) {
        tracing::warn!(dist = %spa.dir().display(), "the web app is not built; pages will say so (run `make run`)");
    }
    let url = match public_url {
        Some(url) => url.to_string(),
        None => bound_url(listener)?.to_string(),
    };
    match db {
        Some(db) => tracing::info!(%addr, database = %db, "listening"),
        None => tracing::info!(%addr, "listening"),
    }
    println!("Scopehub is running at {url}");
    Ok(())
}

/// Applies migrations, retrying with exponential backoff until it works or the server shuts down.
/// Until then `/readyz` answers 503 with the last error.
async fn prepare_with_retry(
    store: Store,
    startup: StartupStatus,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delay = FIRST_RETRY;
    let mut attempt = 1u32;
    loop {
        match store.prepare().await {
            Ok(()) => {
                if attempt > 1 {
                    tracing::info!(attempt, "database reachable and migrated");
                }
                startup.set_error(None);
                return;
            }
            Err(e) => {
                tracing::warn!(attempt, retry_in_ms = delay.as_millis() as u64, error = %e, "database not ready; retrying");
                startup.set_error(Some(e.to_string()));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        delay = (delay * 2).min(MAX_RETRY);
        attempt += 1;
    }
}

/// Serves until SIGTERM or Ctrl-C, then shuts down as a rolling update needs it:
/// 1. `/readyz` answers 503 at once; on SIGTERM the process keeps serving for `--shutdown-delay`
///    so that load balancers stop sending to it (Ctrl-C, a person at a terminal, skips the wait);
/// 2. it stops accepting, closes its websockets with 1001 (clients reconnect elsewhere), stops its
///    background tasks and lets in-flight requests finish, for at most `--shutdown-timeout`.
async fn run_until_shutdown(
    listener: TcpListener,
    router: Router,
    http: &HttpArgs,
    shutdown_tx: watch::Sender<bool>,
    drain: Drain,
) -> anyhow::Result<()> {
    let (router, ops) = match http.ops_listen {
        Some(addr) => {
            let ops = serve_ops(addr, router.clone()).await?;
            (operational_details_on_ops_only(router), Some(ops))
        }
        None => (router, None),
    };
    let (signalled_tx, mut signalled_rx) = watch::channel(false);
    let delay = http.shutdown_delay;
    let signal = async move {
        let terminated = shutdown_signal().await;
        drain.start_draining();
        if terminated && !delay.is_zero() {
            tracing::info!(
                delay_s = delay.as_secs_f64(),
                "SIGTERM: not ready any more; still serving until load balancers notice"
            );
            tokio::time::sleep(delay).await;
        }
        tracing::info!("shutting down: draining in-flight requests");
        drain.close_streams();
        let _ = shutdown_tx.send(true);
        let _ = signalled_tx.send(true);
    };
    // Without TCP_NODELAY the tail of a large answer (a view of thousands of nodes) waits for the
    // client's delayed ACK: 40 ms on Linux, on every such read.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal)
    .into_future();
    let deadline = async {
        let _ = signalled_rx.wait_for(|s| *s).await;
        tokio::time::sleep(http.shutdown_timeout).await;
    };
    tokio::select! {
        result = server => result.context("server failed")?,
        () = deadline => tracing::warn!(timeout_s = http.shutdown_timeout.as_secs_f64(), "requests still in flight at the shutdown deadline; exiting anyway"),
    }
    if let Some(ops) = ops {
        ops.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// With an operational listener, what the operational endpoints tell about the process's
/// insides is told there only. The public listener (the edge's is the Internet's way in) answers
/// `/metrics` 404, where it would show anyone the request counts, routes and internals, and its
/// `/readyz` says ready or not ready without why (a database error's text, the backend): a load
/// balancer that checks the public port needs the status only. `/healthz` is the same on both.
fn operational_details_on_ops_only(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| async move {
            let path = req.uri().path();
            if path == "/metrics" {
                return crate::error::Error::not_found(
                    "/metrics is served on the operational listener (--ops-listen) only.",
                )
                .into_response();
            }
            let readiness = path == "/readyz";
            let response = next.run(req).await;
            match (readiness, response.status().is_success()) {
                (false, _) => response,
                (true, true) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
                (true, false) => crate::error::Error::client(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    shared::ErrorCode::Unavailable,
                    "Not ready. Why is on the operational listener (--ops-listen).",
                )
                .into_response(),
            }
        },
    ))
}

/// The internal listener (`--ops-listen`): the operational endpoints of `router`, nothing else.
async fn serve_ops(
    addr: SocketAddr,
    router: Router,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (--ops-listen)"))?;
    let only_ops = Router::new()
        .fallback_service(router)
        .layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| async move {
                if crate::identity::internal::is_operational(req.uri().path()) {
                    next.run(req).await
                } else {
                    crate::error::Error::not_found(
                        "This listener serves /healthz, /readyz and /metrics only.",
                    )
                    .into_response()
                }
            },
        ));
    tracing::info!(%addr, "operational endpoints listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, only_ops).await {
            tracing::warn!(error = %e, "operational listener failed");
        }
    }))
}

/// Waits for Ctrl-C (false) or SIGTERM (true).
async fn shutdown_signal() -> bool {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => false,
        () = terminate => true,
    }
}
