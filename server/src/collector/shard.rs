//! The collector's contract: a shard holding the live state of the instances placed on it.
//!
//! Provisioning's reconciler drives shards through [`Shard`] only: `ensure` an instance with its
//! limits and flags, `drop_instance`, `list` what a shard holds, and read an instance's `usage`
//! (which is how it learns that the first report arrived). [`InProcessShard`] is a shard in this
//! process (Airplane Mode, and a collector process itself); [`HttpShard`] drives a collector
//! process over its internal API ([`internal_router`]). All operations are idempotent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::routing::get;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use shared::instances::{Limits, Usage};

use super::history::{History, WindowCounts};
use super::slot::{MemoryBudget, MemoryLedger, Slot};
use crate::clock::Clock;
use crate::error::{Error, Json, Result};
use crate::internal_client::InternalClient;
use crate::telemetry::{InstanceFigures, LiveInstances};

/// What an instance refuses now (a suspension or a deletion in progress), and what its members
/// may do from the map. The edge already refuses suspended instances' requests; the shard enforces
/// the same so that a stale edge cannot get past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags {
    pub refuse_uploads: bool,
    pub refuse_reads: bool,
    /// Controls may be used (org admins' setting, on by default).
    #[serde(default = "yes")]
    pub allow_controls: bool,
    /// Terminals (exec, attach, a host's shell) may be opened (off by default).
    #[serde(default)]
    pub allow_terminals: bool,
    /// How long its history is kept, in days, and the most bytes it may take (site admins').
    #[serde(default = "default_history_days")]
    pub history_days: u32,
    #[serde(default = "default_history_quota")]
    pub history_quota_bytes: u64,
}

/// History kept unless a site admin says otherwise: a week, at most 10 GiB.
pub const DEFAULT_HISTORY_DAYS: u32 = 7;
pub const DEFAULT_HISTORY_QUOTA_BYTES: u64 = 10 << 30;

fn default_history_days() -> u32 {
    DEFAULT_HISTORY_DAYS
}

fn default_history_quota() -> u64 {
    DEFAULT_HISTORY_QUOTA_BYTES
}

fn yes() -> bool {
    true
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            refuse_uploads: false,
            refuse_reads: false,
            allow_controls: true,
            allow_terminals: false,
            history_days: DEFAULT_HISTORY_DAYS,
            history_quota_bytes: DEFAULT_HISTORY_QUOTA_BYTES,
        }
    }
}

/// `ensure`'s body on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    pub limits: Limits,
    pub flags: Flags,
}

pub trait Shard: Send + Sync {
    fn name(&self) -> &str;
    /// Makes sure the shard holds the instance, with these limits and flags.
    fn ensure(&self, instance: &str, limits: Limits, flags: Flags) -> BoxFuture<'_, Result<()>>;
    /// Drops the instance and everything the shard holds of it.
    fn drop_instance(&self, instance: &str) -> BoxFuture<'_, Result<()>>;
    /// The instances the shard holds, sorted.
    fn list(&self) -> BoxFuture<'_, Result<Vec<String>>>;
    /// What the instance's probes did lately; `None` if the shard does not hold it.
    fn usage(&self, instance: &str) -> BoxFuture<'_, Result<Option<Usage>>>;
    /// Deletes the instance's history (it was deleted). Any shard may be asked, and more than
    /// once.
    fn purge_history(&self, instance: &str) -> BoxFuture<'_, Result<()>>;
}

/// Called once per instance when its first report is accepted (`serve` wakes the reconciler with
/// it, so the instance becomes active at once rather than on the next pass).
pub type FirstReportHook = Arc<dyn Fn() + Send + Sync>;

/// A shard inside this process. Each instance's slot has its own lock, so that work on one
/// instance (a report merged into its window, a read) never waits for another's.
pub struct InProcessShard {
    name: String,
    clock: Clock,
    slots: Mutex<HashMap<String, Arc<Mutex<Slot>>>>,
    first_report: Option<FirstReportHook>,
    /// Reports being decoded and folded at once: one per core. More would not go faster, and
    /// each holds its decoded report; fifty probes reporting together once made fifty of them,
    /// whose memory, freed, stayed scattered among the parts' (tokio's semaphore is fair: the
    /// instances' reports wait their turn in the order they came).
    folding: Arc<tokio::sync::Semaphore>,
    /// What the instances' windows take, against the shard's memory budget.
    memory: Arc<MemoryLedger>,
    /// Where accepted reports are kept for time travel.
    history: Option<Arc<History>>,
}

fn poisoned() -> Error {
    Error::Internal(anyhow::anyhow!("collector shard lock poisoned"))
}

impl InProcessShard {
    pub fn new(name: impl Into<String>, clock: Clock) -> Self {
        InProcessShard {
            name: name.into(),
            clock,
            slots: Mutex::new(HashMap::new()),
            first_report: None,
            folding: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            memory: Arc::new(MemoryLedger::new(MemoryBudget::default())),
            history: None,
        }
    }

    /// The shard keeping its instances' reports in `history`.
    pub fn with_history(mut self, history: Arc<History>) -> Self {
        self.history = Some(history);
        self
    }

    pub fn history(&self) -> Option<&Arc<History>> {
        self.history.as_ref()
    }

    /// Writes out the reports history holds now, each instance's batch carrying its live
    /// window's node counts for the timeline: per report topology, counted here, and per view,
    /// from the topology list with its options' defaults last made within the count interval (by
    /// [`CollectorState::count_views`](super::CollectorState) or a reader), with when.
    pub async fn flush_history(&self) -> usize {
        let Some(history) = &self.history else {
            return 0;
        };
        let now = self.clock.now();
        let config = history.config();
        let within = config.count_interval + config.flush_interval;
        let since = now.saturating_sub(i64::try_from(within.as_millis()).unwrap_or(i64::MAX));
        let list = super::render::topologies::Query::default_list_key();
        let counts = |instance: &str| -> BoxFuture<'static, WindowCounts> {
            let window = self.with_slot(instance, |slot| {
                (slot.parts(now), slot.list_counts(&list, since))
            });
            let instance = instance.to_owned();
            Box::pin(async move {
                let Some((parts, views)) = window else {
                    return WindowCounts::default();
                };
                let (views_at_ms, views) = views.unzip();
                // Off the serving threads: it walks every node of the window (and waits for any
                // part being folded into).
                let counts =
                    super::background::spawn(move || super::history::node_counts(&parts, now))
                        .await
                        .unwrap_or_else(|e| {
                            tracing::warn!(%instance, error = %e, "the window's nodes could not be counted");
                            Default::default()
                        });
                WindowCounts {
                    counts,
                    views: views.map(|v| (*v).clone()).unwrap_or_default(),
                    views_at_ms,
                }
            })
        };
        history.flush(now, &counts).await
    }

    /// Deletes what each instance on this shard keeps beyond its retention and quota.
    pub async fn enforce_retention(&self, history: &History) {
        let instances: Vec<(String, Flags)> = match self.slots.lock() {
            Ok(slots) => slots
                .iter()
                .filter_map(|(id, slot)| Some((id.clone(), slot.lock().ok()?.flags)))
                .collect(),
            Err(_) => return,
        };
        for (instance, flags) in instances {
            let retention = super::history::Retention {
                days: flags.history_days,
                quota_bytes: flags.history_quota_bytes,
            };
            match history
                .enforce(&instance, retention, self.clock.now())
                .await
            {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::info!(%instance, deleted, "history beyond retention or quota deleted")
                }
                Err(e) => tracing::warn!(%instance, error = %e, "cannot enforce history retention"),
            }
        }
    }

    /// The shard with this memory budget (before any instance is placed on it).
    pub fn with_memory_budget(mut self, budget: MemoryBudget) -> Self {
        self.memory = Arc::new(MemoryLedger::new(budget));
        self
    }

    /// What the instances' windows take now, estimated.
    pub fn window_bytes(&self) -> usize {
        self.memory.total()
    }

    /// A turn to decode and fold a report, waited for.
    pub async fn folding_turn(&self) -> tokio::sync::OwnedSemaphorePermit {
        Arc::clone(&self.folding)
            .acquire_owned()
            .await
            .expect("the folding semaphore is never closed")
    }

    pub fn with_first_report_hook(mut self, hook: FirstReportHook) -> Self {
        self.first_report = Some(hook);
        self
    }

    fn slot(&self, instance: &str) -> Option<Arc<Mutex<Slot>>> {
        self.slots.lock().ok()?.get(instance).cloned()
    }

    /// Runs `f` on the instance's slot, if this shard holds the instance.
    pub fn with_slot<R>(&self, instance: &str, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        let slot = self.slot(instance)?;
        let mut slot = slot.lock().ok()?;
        Some(f(&mut slot))
    }

    pub fn limits_of(&self, instance: &str) -> Option<Limits> {
        self.with_slot(instance, |s| s.limits)
    }

    /// Tells whoever asked that an instance received its first report.
    pub fn first_report_accepted(&self) {
        if let Some(hook) = &self.first_report {
            hook();
        }
    }

    fn ensure_now(&self, instance: &str, limits: Limits, flags: Flags) -> Result<()> {
        let slot = self
            .slots
            .lock()
            .map_err(|_| poisoned())?
            .entry(instance.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(Slot::on(limits, self.memory.clone()))))
            .clone();
        let mut slot = slot.lock().map_err(|_| poisoned())?;
        slot.limits = limits;
        slot.flags = flags;
        Ok(())
    }

    fn drop_now(&self, instance: &str) -> Result<()> {
        self.slots.lock().map_err(|_| poisoned())?.remove(instance);
        Ok(())
    }

    fn list_now(&self) -> Result<Vec<String>> {
        let slots = self.slots.lock().map_err(|_| poisoned())?;
        let mut ids: Vec<String> = slots.keys().cloned().collect();
        ids.sort();
        Ok(ids)
    }

    async fn usage_now(&self, instance: &str) -> Result<Option<Usage>> {
        let now = self.clock.now();
        let Some(slot) = self.slot(instance) else {
            return Ok(None);
        };
        let (mut usage, flags) = {
            let mut slot = slot.lock().map_err(|_| poisoned())?;
            (slot.usage(now), slot.flags)
        };
        if let Some(history) = &self.history {
            // History the store cannot tell now is left out rather than failing the page.
            match history.kept(instance).await {
                Ok(kept) => {
                    usage.history = Some(shared::instances::HistoryUsage {
                        from: kept.from_ms,
                        to: kept.to_ms,
                        bytes: kept.bytes,
                        batches: kept.batches,
                        retention_days: flags.history_days,
                        quota_bytes: flags.history_quota_bytes,
                    })
                }
                Err(e) => tracing::warn!(%instance, error = %e, "cannot read what history keeps"),
            }
        }
        Ok(Some(usage))
    }

    async fn purge_now(&self, instance: &str) -> Result<()> {
        if let Some(history) = &self.history {
            let deleted = history
                .purge(instance)
                .await
                .map_err(|e| Error::Internal(e.into()))?;
            tracing::info!(%instance, deleted, "history purged");
        }
        Ok(())
    }
}

impl LiveInstances for InProcessShard {
    fn shard_name(&self) -> &str {
        &self.name
    }

    fn instance_figures(&self) -> Vec<InstanceFigures> {
        let now = self.clock.now();
        // The slots are read one at a time, outside the shard's lock: a scrape never holds up
        // ingest into several instances at once.
        let slots: Vec<(String, Arc<Mutex<Slot>>)> = match self.slots.lock() {
            Ok(slots) => slots.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => return Vec::new(),
        };
        let mut figures: Vec<InstanceFigures> = slots
            .into_iter()
            .filter_map(|(instance, slot)| {
                let (probes, reports_accepted, window_bytes) = slot.lock().ok()?.figures(now);
                Some(InstanceFigures {
                    instance,
                    probes,
                    reports_accepted,
                    window_bytes,
                })
            })
            .collect();
        figures.sort_by(|a, b| a.instance.cmp(&b.instance));
        figures
    }
}

impl Shard for InProcessShard {
    fn name(&self) -> &str {
        &self.name
    }

    fn ensure(&self, instance: &str, limits: Limits, flags: Flags) -> BoxFuture<'_, Result<()>> {
        let result = self.ensure_now(instance, limits, flags);
        Box::pin(async move { result })
    }

    fn drop_instance(&self, instance: &str) -> BoxFuture<'_, Result<()>> {
        let result = self.drop_now(instance);
        Box::pin(async move { result })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        let result = self.list_now();
        Box::pin(async move { result })
    }

    fn usage(&self, instance: &str) -> BoxFuture<'_, Result<Option<Usage>>> {
        let instance = instance.to_owned();
        Box::pin(async move { self.usage_now(&instance).await })
    }

    fn purge_history(&self, instance: &str) -> BoxFuture<'_, Result<()>> {
        let instance = instance.to_owned();
        Box::pin(async move { self.purge_now(&instance).await })
    }
}

/// A collector process's shard, driven over its internal API.
pub struct HttpShard {
    name: String,
    client: InternalClient,
}

impl HttpShard {
    pub fn new(name: impl Into<String>, client: InternalClient) -> Self {
        HttpShard {
            name: name.into(),
            client,
        }
    }
}

const INSTANCES: [&str; 3] = ["internal", "collector", "instances"];

impl Shard for HttpShard {
    fn name(&self) -> &str {
        &self.name
    }

    fn ensure(&self, instance: &str, limits: Limits, flags: Flags) -> BoxFuture<'_, Result<()>> {
        let instance = instance.to_owned();
        Box::pin(async move {
            let path = [&INSTANCES[..], &[instance.as_str()]].concat();
            self.client
                .call(Method::PUT, &path, Some(&Placed { limits, flags }))
                .await
        })
    }

    fn drop_instance(&self, instance: &str) -> BoxFuture<'_, Result<()>> {
        let instance = instance.to_owned();
        Box::pin(async move {
            let path = [&INSTANCES[..], &[instance.as_str()]].concat();
            self.client.call(Method::DELETE, &path, None::<&()>).await
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move { self.client.call(Method::GET, &INSTANCES, None::<&()>).await })
    }

    fn usage(&self, instance: &str) -> BoxFuture<'_, Result<Option<Usage>>> {
        let instance = instance.to_owned();
        Box::pin(async move {
            let path = [&INSTANCES[..], &[instance.as_str(), "usage"]].concat();
            self.client.call(Method::GET, &path, None::<&()>).await
        })
    }

    fn purge_history(&self, instance: &str) -> BoxFuture<'_, Result<()>> {
        let instance = instance.to_owned();
        Box::pin(async move {
            let path = [&INSTANCES[..], &[instance.as_str(), "history"]].concat();
            self.client.call(Method::DELETE, &path, None::<&()>).await
        })
    }
}

/// The collector role's internal API: [`Shard`] over HTTP, for provisioning's reconciler.
pub fn internal_router(shard: Arc<InProcessShard>) -> Router {
    Router::new()
        .route("/internal/collector/instances", get(list))
        .route(
            "/internal/collector/instances/{id}",
            axum::routing::put(ensure).delete(drop_instance),
        )
        .route("/internal/collector/instances/{id}/usage", get(usage))
        .route(
            "/internal/collector/instances/{id}/history",
            axum::routing::delete(purge_history),
        )
        .with_state(shard)
}

async fn list(State(shard): State<Arc<InProcessShard>>) -> Result<Json<Vec<String>>> {
    Ok(Json(shard.list_now()?))
}

async fn ensure(
    State(shard): State<Arc<InProcessShard>>,
    Path(id): Path<String>,
    Json(placed): Json<Placed>,
) -> Result<Json<()>> {
    shard.ensure_now(&id, placed.limits, placed.flags)?;
    Ok(Json(()))
}

async fn drop_instance(
    State(shard): State<Arc<InProcessShard>>,
    Path(id): Path<String>,
) -> Result<Json<()>> {
    shard.drop_now(&id)?;
    Ok(Json(()))
}

async fn usage(
    State(shard): State<Arc<InProcessShard>>,
    Path(id): Path<String>,
) -> Result<Json<Option<Usage>>> {
    Ok(Json(shard.usage_now(&id).await?))
}

async fn purge_history(
    State(shard): State<Arc<InProcessShard>>,
    Path(id): Path<String>,
) -> Result<Json<()>> {
    shard.purge_now(&id).await?;
    Ok(Json(()))
}
