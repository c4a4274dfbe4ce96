//! Assembles the roles into one public router (what `scopehub serve` runs) and holds their shared state.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;

use axum::middleware;

use crate::clock::Clock;
use crate::error::Error;
use crate::frontend::{self, EdgeConfig, auth, spa::Spa};
use crate::provisioning::reconciler::Reconciler;
use crate::provisioning::shards::{InProcessShard, Placement, Shard};
use crate::provisioning::{ProvisioningConfig, Wakeup};
use crate::store::Store;
use crate::telemetry::{self, Metrics};
use crate::users::UsersConfig;
use crate::users::mail::Mailer;
use crate::{collector, meta, ops, provisioning, users};

/// State shared by every handler. Everything inside is reference-counted, so cloning is cheap.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Metrics,
    pub spa: Spa,
    pub startup: StartupStatus,
    pub client_error_limit: meta::ClientErrorLimiter,
    pub clock: Clock,
    pub users: Arc<UsersConfig>,
    pub mailer: Mailer,
    pub provisioning: Arc<ProvisioningConfig>,
    /// Wakes the reconciler after an API change.
    pub wakeup: Wakeup,
    /// This process's collector shard (Airplane Mode: the only one).
    pub collector: Arc<InProcessShard>,
}

impl AppState {
    pub fn new(store: Store, spa: Spa, users: UsersConfig, mailer: Mailer) -> Self {
        AppState {
            store,
            metrics: Metrics::new(),
            spa,
            startup: StartupStatus::default(),
            client_error_limit: meta::ClientErrorLimiter::default(),
            clock: Clock::system(),
            users: Arc::new(users),
            mailer,
            provisioning: Arc::new(ProvisioningConfig::default()),
            wakeup: Wakeup::default(),
            collector: Arc::new(InProcessShard::new("local")),
        }
    }

    /// Placement over the shards this process knows: its own.
    pub fn placement(&self) -> Placement {
        Placement::new(vec![self.collector.clone() as Arc<dyn Shard>])
    }

    pub fn with_provisioning(mut self, config: ProvisioningConfig) -> Self {
        self.provisioning = Arc::new(config);
        self
    }

    /// The reconciler for this state's store, clock and metrics, on `placement`.
    pub fn reconciler(&self, placement: Placement) -> Reconciler {
        Reconciler {
            store: self.store.clone(),
            placement,
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            wakeup: self.wakeup.clone(),
            purge_grace: self.provisioning.purge_grace,
        }
    }

    /// Replaces the clock (tests move an adjustable one to check expiry rules).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

impl FromRef<AppState> for Store {
    fn from_ref(state: &AppState) -> Store {
        state.store.clone()
    }
}

impl FromRef<AppState> for Metrics {
    fn from_ref(state: &AppState) -> Metrics {
        state.metrics.clone()
    }
}

impl FromRef<AppState> for Spa {
    fn from_ref(state: &AppState) -> Spa {
        state.spa.clone()
    }
}

/// Why the process is not ready yet, as last seen by the start-up task; `/readyz` reports it.
#[derive(Clone, Default)]
pub struct StartupStatus {
    last_error: Arc<Mutex<Option<String>>>,
}

impl StartupStatus {
    pub fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|slot| slot.clone())
    }
}

/// The public router of `scopehub serve`: every built role behind the edge layers.
pub fn router(state: AppState, edge: &EdgeConfig) -> Router {
    let api = Router::new()
        .merge(meta::router())
        .merge(users::router())
        .merge(provisioning::api::router())
        .merge(collector::probe_router())
        .merge(collector::app_router())
        .fallback(|| async { Error::not_found("No API route matches this path.") })
        .method_not_allowed_fallback(|| async { Error::method_not_allowed() });
    let metrics = state.metrics.clone();
    let routed = Router::new()
        .merge(ops::router())
        .nest("/api", api)
        .fallback(frontend::spa::serve)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .with_state(state);
    frontend::apply_layers(routed, metrics, edge)
}

/// The router of `scopehub ui`: the SPA and the operational endpoints, nothing else.
pub fn ui_router(state: AppState, edge: &EdgeConfig) -> Router {
    let metrics = state.metrics.clone();
    let routed = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(telemetry::metrics_handler))
        .nest(
            "/api",
            Router::new()
                .fallback(|| async { Error::not_found("This server only serves the web app.") }),
        )
        .fallback(frontend::spa::serve)
        .with_state(state);
    frontend::apply_layers(routed, metrics, edge)
}
