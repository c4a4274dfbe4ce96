//! The composition root: the one place that wires the roles together.
//!
//! [`Airplane`] puts every role in one process behind the edge (what `scopehub serve` runs and what
//! the API tests drive): the contracts between roles are their in-process implementations. The
//! `*_service` functions build one role alone behind [`trust_edge`], as `scopehub users`,
//! `provisioning` and `collector` run it: the contracts it needs are HTTP clients of the others.
//! Nothing else constructs a role's state.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware;
use tokio::sync::watch;
use url::Url;

use crate::clock::Clock;
use crate::collector::history::{History, HistoryConfig};
use crate::collector::shard::{HttpShard, InProcessShard, Shard};
use crate::collector::{self, CollectorConfig, CollectorState, ReadAccess};
use crate::error::{Error, Result};
use crate::frontend::auth::{
    EdgeAuth, IDENTITY_POLL, IdentityChanges, Origins, ReaderCheck, authenticate,
};
use crate::frontend::proxy::{self, Proxy, Upstreams};
use crate::frontend::{self, EdgeConfig};
use crate::identity::internal::{InternalSecret, Verifier, trust_edge};
use crate::internal_client::InternalClient;
use crate::monitoring::{self, MonitoringConfig, MonitoringState};
use crate::ops::{self, Drain, OpsState, Readiness, StartupStatus};
use crate::provisioning::directory::{HttpInstances, InstanceDirectory};
use crate::provisioning::shards::Placement;
use crate::provisioning::{self, ProvisioningConfig, ProvisioningState, Wakeup};
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::ui::{self, Spa};
use crate::users::directory::{Directory, HttpDirectory};
use crate::users::mail::Mailer;
use crate::users::{self, UsersConfig, UsersState};

/// Everything a deployment is configured with, whichever roles a process runs.
pub struct Settings {
    pub public_url: Url,
    pub users: UsersConfig,
    /// Origins besides the public URL's that may make state-changing requests.
    pub allowed_origins: Vec<String>,
    pub mailer: Mailer,
    pub provisioning: ProvisioningConfig,
    pub collector: CollectorConfig,
    pub edge: EdgeConfig,
    pub dist_dir: PathBuf,
    pub clock: Clock,
    /// Flips when the process shuts down: `/readyz` says 503, websockets close with 1001.
    pub drain: Drain,
    /// What the in-process monitoring scrapes (in `serve`: the process itself).
    pub monitoring: MonitoringConfig,
    /// Where the collector keeps reports for time travel (none: no history).
    pub history: Option<HistoryConfig>,
}

/// The name of the one collector shard in Airplane Mode.
pub const LOCAL_SHARD: &str = "local";

/// Every role in one process (Airplane Mode).
pub struct Airplane {
    /// The public router: the edge in front of every role.
    pub router: Router,
    pub store: Store,
    pub clock: Clock,
    pub metrics: Metrics,
    /// The start-up task's last error, for `/readyz`.
    pub startup: StartupStatus,
    /// The in-process collector shard the reconciler places instances on.
    pub shard: Arc<InProcessShard>,
    /// The collector role serving that shard.
    pub collector: CollectorState,
    pub users: UsersState,
    pub provisioning: ProvisioningState,
    pub spa: Spa,
    pub monitoring: MonitoringState,
}

impl Airplane {
    /// Fails only when the history store cannot be opened.
    pub fn build(store: Store, settings: Settings) -> anyhow::Result<Self> {
        let clock = settings.clock.clone();
        let metrics = Metrics::new();
        let startup = StartupStatus::default();
        let users = UsersState::new(
            store.clone(),
            clock.clone(),
            settings.users,
            settings.mailer,
        )
        .with_metrics(&metrics);
        let wakeup = Wakeup::default();
        let woken = wakeup.clone();
        let mut shard = InProcessShard::new(LOCAL_SHARD, clock.clone())
            .with_memory_budget(settings.collector.memory)
            .with_first_report_hook(Arc::new(move || woken.wake()));
        if let Some(history) = settings.history {
            shard = shard.with_history(Arc::new(History::open(history, metrics.clone())?));
        }
        let shard = Arc::new(shard);
        metrics.observe_instances(shard.clone());
        let directory: Arc<dyn Directory> = Arc::new(users.directory());
        let provisioning = ProvisioningState {
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            config: Arc::new(settings.provisioning),
            wakeup,
            users: directory.clone(),
            placement: Placement::new(vec![shard.clone() as Arc<dyn Shard>]),
        };
        let edge = EdgeAuth::new(
            directory.clone(),
            Arc::new(provisioning.directory()),
            Origins::new(&settings.public_url, settings.allowed_origins),
            settings.edge.identity_cache_ttl,
            clock.clone(),
        )
        .trusting(settings.edge.trusted_proxies.clone());
        let collector = CollectorState {
            shard: shard.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            config: Arc::new(settings.collector),
            access: Arc::new(ReaderCheck {
                changes: IdentityChanges::polled(directory.clone(), IDENTITY_POLL),
                ..edge.readers()
            }) as Arc<dyn ReadAccess>,
            drain: settings.drain.clone(),
            control_log: Arc::new(AuditedControls(directory.clone())),
        };
        let spa = Spa::new(&settings.dist_dir);
        let ops = OpsState {
            metrics: metrics.clone(),
            readiness: Readiness::Database {
                store: store.clone(),
                startup: startup.clone(),
            },
            drain: settings.drain.clone(),
        };
        let monitoring =
            MonitoringState::mailing(settings.monitoring, clock.clone(), directory.clone());
        let api = users::api_router(users.clone())
            .merge(provisioning::api_router(provisioning.clone()))
            .merge(collector::api_router(collector.clone()))
            .merge(monitoring::api_router(monitoring.clone()));
        let routed = Router::new()
            .merge(ops::router(ops))
            .nest("/api", with_api_fallbacks(api))
            .merge(ui::router(spa.clone()))
            .layer(middleware::from_fn_with_state(edge, authenticate));
        let router = frontend::apply_layers(routed, metrics.clone(), &settings.edge);
        Ok(Airplane {
            router,
            store,
            clock,
            metrics,
            startup,
            shard,
            collector,
            users,
            provisioning,
            spa,
            monitoring,
        })
    }

    /// Starts the background work of every role: mail delivery, the reconciler, monitoring's
    /// scrapes and history's writes and retention. They stop when `shutdown` turns true.
    pub fn spawn_tasks(&self, shutdown: &watch::Receiver<bool>) {
        tokio::spawn(self.users.mailer.clone().run(
            self.store.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(self.provisioning.reconciler().run(shutdown.clone()));
        tokio::spawn(self.monitoring.clone().run(shutdown.clone()));
        tokio::spawn(self.collector.clone().run_history(shutdown.clone()));
    }

    /// Airplane Mode's probe of this machine, reporting to `url` like any probe.
    pub fn spawn_local_probe(
        &self,
        url: Url,
        proc_root: PathBuf,
        interval: Duration,
        shutdown: &watch::Receiver<bool>,
    ) {
        tokio::spawn(provisioning::local_probe::run(
            self.provisioning.clone(),
            url,
            proc_root,
            interval,
            shutdown.clone(),
        ));
    }
}

/// JSON answers for API paths no route matches, rather than the web app.
fn with_api_fallbacks(api: Router) -> Router {
    api.fallback(|| async { Error::not_found("No API route matches this path.") })
        .method_not_allowed_fallback(|| async { Error::method_not_allowed() })
}

/// One role alone behind the identity check: its operational endpoints, its public API under
/// `/api` and its internal API.
fn role_service(
    api: Option<Router>,
    internal: Router,
    ops: OpsState,
    verifier: Verifier,
    edge: &EdgeConfig,
) -> Router {
    let metrics = ops.metrics.clone();
    let mut routed = Router::new().merge(internal);
    if let Some(api) = api {
        routed = routed.nest("/api", with_api_fallbacks(api));
    }
    let routed = routed
        .fallback(|| async { Error::not_found("No route matches this path.") })
        .layer(middleware::from_fn_with_state(verifier, trust_edge))
        .merge(ops::router(ops));
    frontend::apply_layers(routed, metrics, edge)
}

/// What every role process has: its clock, metrics and the secret the edge signs with.
pub struct RoleBasics {
    pub clock: Clock,
    pub metrics: Metrics,
    pub secret: InternalSecret,
    pub edge: EdgeConfig,
    pub drain: Drain,
}

impl RoleBasics {
    fn verifier(&self) -> Verifier {
        Verifier {
            secret: self.secret.clone(),
            clock: self.clock.clone(),
        }
    }

    /// A client of another role's internal API.
    pub fn client(&self, role: &'static str, caller: &str, url: Url) -> Result<InternalClient> {
        InternalClient::new(role, caller, url, self.secret.clone(), self.clock.clone())
    }

    /// `/readyz` of a role with a database.
    fn database_ops(&self, store: &Store, startup: StartupStatus) -> OpsState {
        OpsState {
            metrics: self.metrics.clone(),
            readiness: Readiness::Database {
                store: store.clone(),
                startup,
            },
            drain: self.drain.clone(),
        }
    }
}

/// `scopehub users`: the users role alone, with its internal API ([`Directory`] over HTTP).
pub fn users_service(state: &UsersState, startup: StartupStatus, basics: &RoleBasics) -> Router {
    let ops = basics.database_ops(&state.store, startup);
    role_service(
        Some(users::api_router(state.clone())),
        users::directory::internal_router(state.directory()),
        ops,
        basics.verifier(),
        &basics.edge,
    )
}

/// The monitoring role alone: its API behind the edge, no internal API, ready while serving.
pub fn monitoring_service(state: &MonitoringState, basics: &RoleBasics) -> Router {
    let ops = OpsState {
        metrics: basics.metrics.clone(),
        readiness: Readiness::Serving,
        drain: basics.drain.clone(),
    };
    role_service(
        Some(monitoring::api_router(state.clone())),
        Router::new(),
        ops,
        basics.verifier(),
        &basics.edge,
    )
}

/// The provisioning role's state when it runs alone: users and the collector shards over HTTP.
pub fn provisioning_state(
    store: Store,
    config: ProvisioningConfig,
    users_url: Url,
    shards: Vec<(String, Url)>,
    basics: &RoleBasics,
) -> Result<ProvisioningState> {
    let users = HttpDirectory(basics.client("users", "provisioning", users_url)?);
    let mut placed: Vec<Arc<dyn Shard>> = Vec::new();
    for (name, url) in shards {
        let client = basics.client("collector", "provisioning", url)?;
        placed.push(Arc::new(HttpShard::new(name, client)));
    }
    if placed.is_empty() {
        return Err(Error::Internal(anyhow::anyhow!(
            "provisioning needs at least one collector shard"
        )));
    }
    Ok(ProvisioningState {
        store,
        clock: basics.clock.clone(),
        metrics: basics.metrics.clone(),
        config: Arc::new(config),
        wakeup: Wakeup::default(),
        users: Arc::new(users),
        placement: Placement::new(placed),
    })
}

/// `scopehub provisioning`: the provisioning role alone, with its internal API
/// ([`InstanceDirectory`] over HTTP).
pub fn provisioning_service(
    state: &ProvisioningState,
    startup: StartupStatus,
    basics: &RoleBasics,
) -> Router {
    let ops = basics.database_ops(&state.store, startup);
    role_service(
        Some(provisioning::api_router(state.clone())),
        provisioning::directory::internal_router(state.directory()),
        ops,
        basics.verifier(),
        &basics.edge,
    )
}

/// The collector role's state when it runs alone: websockets re-check access through the users
/// and provisioning roles over HTTP.
pub fn collector_state(
    shard: Arc<InProcessShard>,
    config: CollectorConfig,
    users_url: Url,
    provisioning_url: Url,
    basics: &RoleBasics,
) -> Result<CollectorState> {
    let caller = format!("collector {}", shard.name());
    let users: Arc<dyn Directory> =
        Arc::new(HttpDirectory(basics.client("users", &caller, users_url)?));
    let instances: Arc<dyn InstanceDirectory> = Arc::new(HttpInstances(basics.client(
        "provisioning",
        &caller,
        provisioning_url,
    )?));
    basics.metrics.observe_instances(shard.clone());
    Ok(CollectorState {
        shard,
        clock: basics.clock.clone(),
        metrics: basics.metrics.clone(),
        config: Arc::new(config),
        control_log: Arc::new(AuditedControls(users.clone())),
        access: Arc::new(ReaderCheck {
            changes: IdentityChanges::polled(users.clone(), IDENTITY_POLL),
            users,
            instances,
        }),
        drain: basics.drain.clone(),
    })
}

/// The collector's controls, audited in the users role's audit log (its `Directory` contract).
struct AuditedControls(Arc<dyn Directory>);

impl crate::collector::controls::ControlLog for AuditedControls {
    fn record(
        &self,
        r: crate::collector::controls::ControlRecord,
    ) -> futures_util::future::BoxFuture<'_, Result<()>> {
        let record = crate::users::directory::AuditRecord {
            action: "instance_control".to_owned(),
            actor_id: r.user_id,
            actor_email: r.user_email,
            org_id: r.org,
            target: r.instance,
            ip: r.ip,
            detail: format!(
                "{} on {} (probe {}): {}",
                r.control, r.node, r.probe, r.outcome
            ),
        };
        Box::pin(async move { self.0.record_audit(&record).await })
    }

    fn record_terminal(
        &self,
        r: crate::collector::controls::TerminalRecord,
    ) -> futures_util::future::BoxFuture<'_, Result<()>> {
        let seconds = (r.ended_at_ms - r.started_at_ms).max(0) / 1000;
        let record = crate::users::directory::AuditRecord {
            action: "instance_terminal".to_owned(),
            actor_id: r.user_id,
            actor_email: r.user_email,
            org_id: r.org,
            target: r.instance,
            ip: None,
            detail: format!(
                "{} on {} (probe {}, pipe {}): {seconds} s, {} bytes in, {} bytes out",
                r.control, r.node, r.probe, r.pipe, r.bytes_in, r.bytes_out
            ),
        };
        Box::pin(async move { self.0.record_audit(&record).await })
    }
}

/// `scopehub collector`: one shard alone, with its internal API ([`Shard`] over HTTP). It is ready
/// once `startup` is done: [`load_placements`].
pub fn collector_service(
    state: &CollectorState,
    startup: StartupStatus,
    basics: &RoleBasics,
) -> Router {
    let ops = OpsState {
        metrics: basics.metrics.clone(),
        readiness: Readiness::Started(startup),
        drain: basics.drain.clone(),
    };
    role_service(
        Some(collector::api_router(state.clone())),
        collector::shard::internal_router(state.shard.clone()),
        ops,
        basics.verifier(),
        &basics.edge,
    )
}

/// A collector process's start-up: it asks provisioning which instances are placed on its shard
/// and holds them before it reports ready, so that a restarted or replaced shard takes reports
/// at once (a rolling update loses no request) instead of after the reconciler's next pass.
/// Retried with backoff until provisioning answers or the process stops.
pub async fn load_placements(
    state: CollectorState,
    provisioning: HttpInstances,
    startup: StartupStatus,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = state.shard.name().to_owned();
    let client = provisioning;
    startup.set_error(Some("loading the placed instances".to_owned()));
    let mut delay = Duration::from_millis(100);
    loop {
        match client.placed_on(&name).await {
            Ok(placed) => {
                for instance in &placed {
                    let (limits, flags) = (instance.placed.limits, instance.placed.flags);
                    if let Err(e) = state.shard.ensure(&instance.id, limits, flags).await {
                        tracing::warn!(instance = %instance.id, error = %e, "cannot hold a placed instance");
                    }
                }
                tracing::info!(shard = %name, instances = placed.len(), "placed instances loaded");
                startup.set_done();
                return;
            }
            Err(e) => {
                tracing::warn!(shard = %name, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot load placed instances yet");
                startup.set_error(Some(format!("loading placed instances: {e}")));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// `scopehub ui`: the web app and the operational endpoints; no database, no identity.
pub fn ui_service(spa: Spa, metrics: Metrics, edge: &EdgeConfig, drain: Drain) -> Router {
    let ops = OpsState {
        metrics: metrics.clone(),
        readiness: Readiness::Serving,
        drain,
    };
    let routed = Router::new()
        .merge(ops::router(ops))
        .nest(
            "/api",
            Router::new()
                .fallback(|| async { Error::not_found("This server only serves the web app.") }),
        )
        .merge(ui::router(spa));
    frontend::apply_layers(routed, metrics, edge)
}

/// `scopehub frontend`: the edge alone, in front of the other roles over HTTP. It resolves
/// credentials through the users and provisioning roles' internal APIs and proxies every request
/// (`frontend::proxy`).
pub fn frontend_service(
    upstreams: Upstreams,
    public_url: &Url,
    allowed_origins: Vec<String>,
    upstream_timeout: Duration,
    basics: &RoleBasics,
) -> Result<Router> {
    let users = HttpDirectory(basics.client("users", "frontend", upstreams.users.clone())?);
    let instances =
        HttpInstances(basics.client("provisioning", "frontend", upstreams.provisioning.clone())?);
    let edge = EdgeAuth::new(
        Arc::new(users),
        Arc::new(instances),
        Origins::new(public_url, allowed_origins),
        basics.edge.identity_cache_ttl,
        basics.clock.clone(),
    )
    .trusting(basics.edge.trusted_proxies.clone());
    let proxy = Proxy::new(
        upstreams,
        basics.secret.clone(),
        basics.clock.clone(),
        upstream_timeout,
        basics.edge.max_body_bytes,
        basics.drain.clone(),
    );
    let ops = OpsState {
        metrics: basics.metrics.clone(),
        readiness: Readiness::Serving,
        drain: basics.drain.clone(),
    };
    let proxied = Router::new()
        .fallback(proxy::forward)
        .with_state(proxy)
        .layer(middleware::from_fn_with_state(edge, authenticate));
    let routed = Router::new().merge(ops::router(ops)).merge(proxied);
    Ok(frontend::apply_proxy_layers(
        routed,
        basics.metrics.clone(),
        &basics.edge,
    ))
}
