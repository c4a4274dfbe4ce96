//! One instance's place on a collector shard: its reports of the last window, the probes that sent
//! them, and the limits that guard it.
//!
//! The window is kept per probe, each probe's reports folded into one state as they arrive
//! ([`FoldedWindow`]): what a report carries is kept until its bucket leaves the window, and no
//! report is kept whole. Reports of one probe that arrive within the same second share a bucket, so
//! a probe that floods keeps at most one bucket per second of the window, whatever its rate: memory
//! follows the system's size, not the report rate. A read merges one folded part per probe, and its
//! merge is kept until the window changes.
//!
//! Each probe's part has a lock of its own, so that a report is folded, and a reader merges the
//! parts, without holding the slot's lock; the slot's lock is only ever taken before a part's.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use axum::body::Bytes;
use shared::instances::{Limits, ProbeInfo, Usage};

use super::fold::{FoldedWindow, Samples};
use super::render::topologies::ListPlan;
use super::report::Report;
use super::wire::WireReport;

/// Reports older than this are dropped (Scope's `--app.window`).
pub const WINDOW_MS: i64 = 15_000;
/// A probe counts towards `max_probes` while it has reported within this time.
pub const PROBE_TTL_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooLarge,
    TooManyReports,
    TooManyProbes,
    Malformed,
    /// The instance's window is at its memory budget.
    WindowFull,
    /// The shard's windows are at the shard's memory budget, and this instance holds at least
    /// its share of it.
    ShardFull,
}

impl Refusal {
    /// The reason as the instance page and the metrics count it.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TooLarge => "too_large",
            Refusal::TooManyReports => "too_many_reports",
            Refusal::TooManyProbes => "too_many_probes",
            Refusal::Malformed => "malformed",
            Refusal::WindowFull => "window_full",
            Refusal::ShardFull => "collector_full",
        }
    }
}

/// How much memory the windows may take, estimated as `footprint.rs` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    /// One instance's window.
    pub instance_bytes: usize,
    /// The windows of every instance of the shard together.
    pub shard_bytes: usize,
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget {
            instance_bytes: 256 << 20,
            shard_bytes: 2 << 30,
        }
    }
}

/// What the windows of one shard's instances take together, kept up to date by their slots.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    pub budget: MemoryBudget,
    total: AtomicUsize,
    /// Instances whose window holds anything.
    holding: AtomicUsize,
}

impl MemoryLedger {
    pub fn new(budget: MemoryBudget) -> Self {
        MemoryLedger {
            budget,
            ..MemoryLedger::default()
        }
    }

    /// The windows' estimated bytes, together.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// An instance's window went from `before` to `after` bytes.
    fn moved(&self, before: usize, after: usize) {
        if after >= before {
            self.total.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.total.fetch_sub(before - after, Ordering::Relaxed);
        }
        match (before > 0, after > 0) {
            (false, true) => {
                self.holding.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.holding.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Whether an instance whose window holds `window_bytes` must refuse reports: the shard is at
    /// its budget and the instance holds at least an equal share of it. Instances below their
    /// share keep taking reports, so one tenant filling the shard does not stop the others.
    fn over_share(&self, window_bytes: usize) -> bool {
        let total = self.total();
        if total < self.budget.shard_bytes {
            return false;
        }
        let holding = self.holding.load(Ordering::Relaxed).max(1);
        window_bytes >= self.budget.shard_bytes / holding
    }
}

/// Reports of one probe arriving within one quantum share a bucket.
pub const QUANTUM_MS: i64 = 1_000;

/// One probe's part of the window, shared by the slot, the report being folded in and readers.
pub type Part = Arc<Mutex<FoldedWindow>>;

/// A part's lock. A fold that panicked leaves a part that is still a valid window (at worst missing
/// some of that report), so a poisoned lock is used as it is.
pub fn lock(part: &Mutex<FoldedWindow>) -> MutexGuard<'_, FoldedWindow> {
    part.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Folds a report that arrived at `now_ms` into a probe's part, after letting go of what left the
/// window, and returns the part's footprint. Runs without the slot's lock; [`Slot::accepted`]
/// follows.
pub fn fold_into<'de>(
    part: &Mutex<FoldedWindow>,
    report: impl Into<WireReport<'de>>,
    now_ms: i64,
) -> usize {
    let mut window = lock(part);
    window.expire(now_ms, WINDOW_MS);
    window.accept(report, now_ms, QUANTUM_MS);
    window.footprint()
}

/// The window of `parts` at `now_ms` (as [`Slot::parts`] gives them), merged with every core's
/// help, its metrics with the `samples` asked for: see [`super::fold::merge_window_on`]. The
/// parts are merged in the order their oldest reports still in the window arrived (then in the
/// order given), which keeps the window's order wherever it matters (the first report's id). Each
/// part is locked only while its oldest report is looked up, and while what left the window is
/// let go of and it is materialised.
pub fn merge_parts(parts: &[Part], now_ms: i64, drop_partial: bool, samples: Samples) -> Report {
    static CORES: LazyLock<usize> =
        LazyLock::new(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut ordered: Vec<_> = parts
        .iter()
        .map(|part| (lock(part).oldest_within(now_ms, WINDOW_MS), part.clone()))
        .collect();
    ordered.sort_by_key(|(oldest, _)| *oldest);
    let parts: Vec<Part> = ordered.into_iter().map(|(_, part)| part).collect();
    super::fold::merge_window_on(
        &parts,
        |part| {
            let mut part = lock(part);
            part.expire(now_ms, WINDOW_MS);
            part.materialize_with(samples)
        },
        *CORES,
        drop_partial,
    )
}

/// Where a slot keeps its merge with `samples`.
fn merge_kind(samples: Samples) -> usize {
    match samples {
        Samples::Last => 0,
        Samples::All => 1,
    }
}

/// Leaves `removed` nodes out of a merged window.
pub fn without_nodes(report: &mut Report, removed: &[String]) {
    if removed.is_empty() {
        return;
    }
    for topology in report.topologies.values_mut() {
        for id in removed {
            topology.nodes.remove(id.as_str());
        }
    }
}

/// Map websockets one user may have open on one instance (tabs, dashboards), and the instance in
/// all.
pub const MAP_SOCKETS_PER_USER: usize = 16;
pub const MAP_SOCKETS_PER_INSTANCE: usize = 256;

/// Why a map websocket was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapSocketsFull {
    User,
    Instance,
}

pub struct Slot {
    pub limits: Limits,
    /// The window, by probe id.
    windows: BTreeMap<String, Part>,
    probes: BTreeMap<String, ProbeInfo>,
    tokens: f64,
    refilled_ms: i64,
    received: u64,
    refused: BTreeMap<&'static str, u64>,
    /// What the instance refuses now, as provisioning last said.
    pub flags: super::shard::Flags,
    /// Bumped whenever the window changes, so a merge of it can be reused until then.
    generation: u64,
    /// The window's merges at a generation, one per [`Samples`] kept (views: the newest; node
    /// details: all), while someone still uses each: not kept beyond that, for under constant
    /// ingest the next reader needs a newer one anyway, and a large instance's merge is tens of
    /// megabytes.
    merged: [Option<(u64, Weak<Report>)>; 2],
    /// Merges being made, likewise: readers who need one meanwhile wait for it rather than make
    /// their own.
    merging: [Option<Merging>; 2],
    /// One background render at a time per instance.
    background: Arc<tokio::sync::Semaphore>,
    /// Rendered views and topology lists, by view and query, shared by every reader (requests and
    /// websocket ticks): see [`Slot::render_plan`].
    renders: HashMap<String, Kept>,
    /// The plan each topology list learned (`topologies::ListPlan`), by its key: kept beyond the
    /// list itself, as an unwatched instance's list is made once a minute for the timeline and
    /// let go of unread before the next.
    list_plans: HashMap<String, Arc<ListPlan>>,
    /// Renders being made: readers who have to wait for one share it.
    pending: HashMap<String, Making>,
    /// Each part's footprint when last folded into or pruned, by probe id, and their sum.
    part_bytes: BTreeMap<String, usize>,
    window_bytes: usize,
    /// The shard's account of its windows' memory.
    ledger: Arc<MemoryLedger>,
    /// Each connected probe's control channel, by probe id.
    controls: BTreeMap<String, super::controls::ProbeLink>,
    /// Each user's allowance of controls on this instance.
    pub control_allowances: super::controls::ControlAllowances,
    /// Map websockets open on this instance, by user.
    map_sockets: HashMap<String, usize>,
    /// When history's task last began counting the views for the timeline (ms).
    views_counted: i64,
    /// Nodes a control removed (a container deleted), by id, with when: left out of the window's
    /// merge until the reports that still hold them have left the window.
    removed: BTreeMap<String, i64>,
    /// Terminals and log streams between users and probes.
    pub pipes: super::pipes::Pipes,
}

/// Removed nodes remembered per instance at most (the oldest are forgotten first).
const MAX_REMOVED: usize = 1_000;

impl Drop for Slot {
    fn drop(&mut self) {
        self.ledger.moved(self.window_bytes, 0);
    }
}

/// A render being made, with the window generation it was made from once it is.
pub type Making = Arc<tokio::sync::OnceCell<(u64, Rendered)>>;

/// A render kept for the next readers of the same view and options.
struct Kept {
    /// The window generation it was made from.
    generation: u64,
    /// When making it began (what it shows is the window as it was then), and how long it took,
    /// merge and render.
    made_at: i64,
    cost_ms: i64,
    last_read: i64,
    rendered: Rendered,
}

/// Where a reader gets a render from.
pub enum RenderPlan {
    /// Made from the window as it is.
    Current(Rendered),
    /// A costly render of the window as it was less than [`MAX_STALE_MS`] ago; `refresh`, when
    /// set, is a render of the window as it is now for the reader to start in the background.
    Recent {
        rendered: Rendered,
        refresh: Option<(Making, Arc<tokio::sync::Semaphore>)>,
    },
    /// To wait for: made by whoever initialises it first.
    Wait(Making),
}

/// Renders that took less than this are made again on the next read after the window changes,
/// so a reader always sees the window as it is. Costlier ones (large windows) are served as they
/// were last made while a new one is made in the background, at most once per [`REFRESH_MS`]:
/// a large instance costs one render per second per view in use, not one per report, and no
/// reader waits for it.
pub const RENDER_ON_READ_MS: i64 = 20;
pub const REFRESH_MS: i64 = 1_000;
/// The oldest a costly render may be and still be served without waiting for a new one…
pub const MAX_STALE_MS: i64 = 3_000;
/// …or, while a new one is being made (background renders of one instance take turns, and on a
/// busy machine a turn can take longer than a second), this old.
pub const MAX_STALE_REFRESHING_MS: i64 = 10_000;
/// Renders nobody read for this long are let go.
const KEEP_UNREAD_MS: i64 = 60_000;

/// A view's nodes, summarised and serialised (`summary::summaries_json`), by id.
pub type Summaries = BTreeMap<String, Box<serde_json::value::RawValue>>;

/// What a read renders from the window and the slot keeps for the next reader of the same.
#[derive(Clone)]
pub enum Rendered {
    /// A view's summaries (for websocket diffs) and its answer.
    View(Arc<Summaries>, Answer),
    /// The topology list's answer, each view's node count in it (the timeline's sparkline), and
    /// the plan the next list of the instance follows.
    List(Arc<ViewCounts>, Answer, Arc<ListPlan>),
}

/// Nodes per view id, as the topology list's stats count them.
pub type ViewCounts = BTreeMap<String, u64>;

/// A JSON answer made once per render and sent as it is to every reader that takes gzip (every
/// browser); inflated while it is sent to one that does not. Compressing a large view for each
/// reader would cost more than the read, and keeping it plain as well would hold it twice: the
/// processes view of 50 hosts is 7 MiB of JSON, 1 MiB gzipped.
#[derive(Clone, Default)]
pub struct Answer {
    pub gzip: Bytes,
    /// The JSON's length before compression.
    pub json_len: usize,
}

/// Renders kept per instance (views × option sets in use); beyond this, new ones are not kept.
const MAX_RENDERS: usize = 64;

/// A merge of the window being made, with the generation it was made from once it is.
pub type Merging = Arc<tokio::sync::OnceCell<(u64, Arc<Report>)>>;

/// What a reader needs to render the window.
pub enum Snapshot {
    /// The window's generation and its cached merge.
    Merged(u64, Arc<Report>),
    /// A merge to wait for, or to make if nobody is making it: of the parts as they are when it
    /// begins ([`Slot::parts`]), kept with [`Slot::cache_merged`].
    Merge(Merging),
}

impl Slot {
    /// A slot on its own, with the default memory budget.
    pub fn new(limits: Limits) -> Self {
        Slot::on(limits, Arc::new(MemoryLedger::new(MemoryBudget::default())))
    }

    /// A slot whose window counts towards a shard's `ledger`.
    pub fn on(limits: Limits, ledger: Arc<MemoryLedger>) -> Self {
        Slot {
            limits,
            windows: BTreeMap::new(),
            probes: BTreeMap::new(),
            tokens: limits.max_reports_per_second as f64,
            refilled_ms: 0,
            received: 0,
            refused: BTreeMap::new(),
            flags: super::shard::Flags::default(),
            generation: 0,
            merged: [None, None],
            merging: [None, None],
            background: Arc::new(tokio::sync::Semaphore::new(1)),
            renders: HashMap::new(),
            list_plans: HashMap::new(),
            pending: HashMap::new(),
            part_bytes: BTreeMap::new(),
            window_bytes: 0,
            ledger,
            controls: BTreeMap::new(),
            control_allowances: Default::default(),
            map_sockets: HashMap::new(),
            views_counted: i64::MIN,
            removed: BTreeMap::new(),
            pipes: super::pipes::Pipes::default(),
        }
    }

    /// A control removed `node` at `now_ms` (its reply's `removedNode`): the map drops it now,
    /// not when the window forgets it.
    pub fn forget_node(&mut self, node: &str, now_ms: i64) {
        if self.removed.len() >= MAX_REMOVED
            && let Some(oldest) = self
                .removed
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(id, _)| id.clone())
        {
            self.removed.remove(&oldest);
        }
        self.removed.insert(node.to_owned(), now_ms);
        self.generation += 1;
    }

    /// The nodes to leave out of a merge made at `now_ms`.
    pub fn removed_nodes(&mut self, now_ms: i64) -> Vec<String> {
        self.removed.retain(|_, at| now_ms - *at <= WINDOW_MS);
        self.removed.keys().cloned().collect()
    }

    /// Keeps `link` as `probe`'s control channel (replacing an older connection of the same
    /// probe); refused when as many other probes as the instance may have are connected.
    pub fn link_probe(
        &mut self,
        probe: &str,
        link: super::controls::ProbeLink,
    ) -> Result<(), Refusal> {
        self.controls.retain(|_, l| !l.is_closed());
        let others = self.controls.keys().filter(|p| *p != probe).count();
        if others >= usize::try_from(self.limits.max_probes).unwrap_or(0) {
            return Err(Refusal::TooManyProbes);
        }
        self.controls.insert(probe.to_owned(), link);
        Ok(())
    }

    /// Forgets `probe`'s control channel if it is still the `connection` that ended.
    pub fn unlink_probe(&mut self, probe: &str, connection: u64) {
        if self
            .controls
            .get(probe)
            .is_some_and(|l| l.connection == connection)
        {
            self.controls.remove(probe);
        }
    }

    /// Counts a map websocket of `user` as open, unless the user or the instance has as many as
    /// they may ([`MAP_SOCKETS_PER_USER`], [`MAP_SOCKETS_PER_INSTANCE`]): each streams its own
    /// diffs every tick and may hold a render of its own (a past moment's), so without a bound one
    /// member (or a leaked read token) could take a shard's memory and cores from every tenant.
    pub fn open_map_socket(&mut self, user: &str) -> Result<(), MapSocketsFull> {
        let open = self.map_sockets.get(user).copied().unwrap_or(0);
        if open >= MAP_SOCKETS_PER_USER {
            return Err(MapSocketsFull::User);
        }
        if self.map_sockets.values().sum::<usize>() >= MAP_SOCKETS_PER_INSTANCE {
            return Err(MapSocketsFull::Instance);
        }
        *self.map_sockets.entry(user.to_owned()).or_default() += 1;
        Ok(())
    }

    /// A map websocket of `user` counted by [`Slot::open_map_socket`] ended.
    pub fn close_map_socket(&mut self, user: &str) {
        if let Some(open) = self.map_sockets.get_mut(user) {
            *open -= 1;
            if *open == 0 {
                self.map_sockets.remove(user);
            }
        }
    }

    /// `probe`'s control channel, if it is connected.
    pub fn probe_link(&self, probe: &str) -> Option<super::controls::ProbeLink> {
        self.controls.get(probe).cloned()
    }

    pub fn memory_budget(&self) -> MemoryBudget {
        self.ledger.budget
    }

    /// The window's estimated bytes.
    pub fn window_bytes(&self) -> usize {
        self.window_bytes
    }

    fn set_part_bytes(&mut self, probe: &str, bytes: usize) {
        let before = self.window_bytes;
        let old = match self.part_bytes.get_mut(probe) {
            Some(kept) => std::mem::replace(kept, bytes),
            None => {
                self.part_bytes.insert(probe.to_owned(), bytes);
                0
            }
        };
        self.window_bytes = self.window_bytes - old + bytes;
        self.ledger.moved(before, self.window_bytes);
    }

    /// Checks the rate and probe limits for a report from `probe_id` arriving at `now_ms`.
    pub fn admit(&mut self, probe_id: &str, now_ms: i64) -> Result<(), Refusal> {
        let rate = self.limits.max_reports_per_second.max(1) as f64;
        if self.refilled_ms == 0 {
            self.refilled_ms = now_ms;
        }
        let elapsed = (now_ms - self.refilled_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.refilled_ms = now_ms;
        self.probes
            .retain(|_, p| now_ms - p.last_seen < PROBE_TTL_MS);
        if !self.probes.contains_key(probe_id) && self.probes.len() as i64 >= self.limits.max_probes
        {
            return Err(self.refuse(Refusal::TooManyProbes));
        }
        if self.tokens < 1.0 {
            return Err(self.refuse(Refusal::TooManyReports));
        }
        let over = |slot: &Slot| {
            if slot.window_bytes >= slot.ledger.budget.instance_bytes {
                Some(Refusal::WindowFull)
            } else if slot.ledger.over_share(slot.window_bytes) {
                Some(Refusal::ShardFull)
            } else {
                None
            }
        };
        if over(self).is_some() {
            // Refused reports fold nothing, so what left the window is let go here.
            self.let_go_now(now_ms);
            if let Some(why) = over(self) {
                return Err(self.refuse(why));
            }
        }
        self.tokens -= 1.0;
        Ok(())
    }

    pub fn refuse(&mut self, why: Refusal) -> Refusal {
        *self.refused.entry(why.reason()).or_default() += 1;
        why
    }

    /// Keeps a decoded report from `probe`, all under the slot's lock (ingest folds outside it:
    /// [`Slot::part_of`], [`fold_into`], [`Slot::accepted`]); true if it is the first the
    /// instance ever accepted.
    pub fn accept<'de>(
        &mut self,
        probe: ProbeInfo,
        report: impl Into<WireReport<'de>>,
        now_ms: i64,
    ) -> bool {
        let part = self.part_of(&probe.id);
        let bytes = fold_into(&part, report, now_ms);
        self.accepted(probe, &part, bytes, now_ms)
    }

    /// The part of the window a report from `probe` is to be folded into.
    pub fn part_of(&mut self, probe: &str) -> Part {
        self.windows.entry(probe.to_owned()).or_default().clone()
    }

    /// Records a report folded into `part`, which [`Slot::part_of`] gave and which now takes
    /// `bytes`; true if it is the first the instance ever accepted. (`prune` keeps a part while a
    /// fold holds it, so `part` is still the probe's.)
    pub fn accepted(&mut self, probe: ProbeInfo, part: &Part, bytes: usize, now_ms: i64) -> bool {
        let first = self.received == 0;
        self.received += 1;
        self.windows
            .entry(probe.id.clone())
            .or_insert_with(|| part.clone());
        self.set_part_bytes(&probe.id, bytes);
        self.probes.insert(probe.id.clone(), probe);
        self.generation += 1;
        self.prune(now_ms);
        first
    }

    /// Notes what left the window (a new generation: the window changed) and lets go of the parts
    /// wholly out of it. Runs under the slot's lock, which every reader and every report of the
    /// instance needs, often on the async runtime, so it only looks at each part's oldest buckets:
    /// letting go of what left a part walks all its nodes, and is done off the runtime by whoever
    /// uses the part next (a fold expires its part first, a merge each part it reads:
    /// [`merge_parts`], [`super::history::node_counts`]). A part's bytes are counted again as its
    /// probe's next report is folded, or at once when the instance is over its memory budget
    /// ([`Slot::let_go_now`]). A part busy now (folded into or merged) is not waited for: the next
    /// look notes it.
    fn prune(&mut self, now_ms: i64) {
        let mut changed = false;
        for part in self.windows.values() {
            let mut part = match part.try_lock() {
                Ok(part) => part,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => continue,
            };
            changed |= part.note_expiry(now_ms, WINDOW_MS);
        }
        // A part being folded into is kept even while empty; one wholly out of the window is
        // freed on a background thread (a probe's part is thousands of allocations).
        let mut out = Vec::new();
        self.windows.retain(|_, part| {
            let keep = Arc::strong_count(part) > 1 || !lock(part).is_empty_at(now_ms, WINDOW_MS);
            if !keep {
                out.push(part.clone());
            }
            keep
        });
        if !out.is_empty() {
            super::background::free(out);
        }
        let gone: Vec<String> = self
            .part_bytes
            .keys()
            .filter(|probe| !self.windows.contains_key(*probe))
            .cloned()
            .collect();
        for probe in gone {
            self.set_part_bytes(&probe, 0);
            self.part_bytes.remove(&probe);
        }
        if changed {
            self.generation += 1;
        }
    }

    /// The probes' parts, by probe id ([`merge_parts`] puts them in the order of the window).
    /// Takes no part's lock: a part being folded into is not waited for under the slot's.
    pub fn parts(&mut self, now_ms: i64) -> Vec<Part> {
        self.prune(now_ms);
        self.windows.values().cloned().collect()
    }

    /// Lets go at once of what left the window and counts the parts' bytes again: before a report
    /// is refused because the instance is over its memory budget.
    fn let_go_now(&mut self, now_ms: i64) {
        let mut shrunk = Vec::new();
        for (probe, part) in &self.windows {
            let mut part = match part.try_lock() {
                Ok(part) => part,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => continue,
            };
            if part.expire(now_ms, WINDOW_MS) {
                shrunk.push((probe.clone(), part.footprint()));
            }
        }
        if !shrunk.is_empty() {
            self.generation += 1;
        }
        for (probe, bytes) in shrunk {
            self.set_part_bytes(&probe, bytes);
        }
        self.prune(now_ms);
    }

    /// The window's merge with the `samples` asked for if one is cached for its current contents,
    /// else the merge being made (one at a time: under constant ingest, readers share the one in
    /// progress even if a report arrived since it began).
    pub fn snapshot(&mut self, now_ms: i64, samples: Samples) -> Snapshot {
        self.prune(now_ms);
        let kind = merge_kind(samples);
        if let Some((generation, merged)) = &self.merged[kind]
            && *generation == self.generation
            && let Some(merged) = merged.upgrade()
        {
            return Snapshot::Merged(*generation, merged);
        }
        if let Some(cell) = &self.merging[kind] {
            if cell.get().is_none() {
                return Snapshot::Merge(cell.clone());
            }
            // Made, but its maker went before keeping it.
            self.merging[kind] = None;
        }
        let cell = Merging::default();
        self.merging[kind] = Some(cell.clone());
        Snapshot::Merge(cell)
    }

    /// The window's generation now.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Where a reader of `key` gets its render from at `now_ms` (see [`RENDER_ON_READ_MS`]).
    pub fn render_plan(&mut self, key: &str, now_ms: i64, on_read_ms: i64) -> RenderPlan {
        self.prune(now_ms);
        self.renders
            .retain(|_, kept| now_ms - kept.last_read <= KEEP_UNREAD_MS);
        if let Some(kept) = self.renders.get_mut(key) {
            kept.last_read = now_ms;
            if kept.generation == self.generation {
                return RenderPlan::Current(kept.rendered.clone());
            }
            let age = now_ms - kept.made_at;
            let refreshing = self.pending.contains_key(key);
            // While a new render is on its way, a busy instance's readers keep the last one a
            // while longer rather than all waiting for it.
            let max_stale = if refreshing {
                MAX_STALE_REFRESHING_MS
            } else {
                MAX_STALE_MS
            };
            if kept.cost_ms >= on_read_ms && age <= max_stale {
                let rendered = kept.rendered.clone();
                let refresh = (age >= REFRESH_MS && !refreshing).then(|| {
                    let cell = Making::default();
                    self.pending.insert(key.to_owned(), cell.clone());
                    (cell, self.background.clone())
                });
                return RenderPlan::Recent { rendered, refresh };
            }
        }
        if let Some(cell) = self.pending.get(key) {
            return RenderPlan::Wait(cell.clone());
        }
        let cell = Making::default();
        if self.renders.contains_key(key) || self.renders.len() + self.pending.len() < MAX_RENDERS {
            self.pending.insert(key.to_owned(), cell.clone());
        }
        RenderPlan::Wait(cell)
    }

    /// Keeps a render made from the window at `generation` (unless a newer one is kept), begun at
    /// `made_at` and `cost_ms` long, and lets go of `cell`, which made it. Gives back the render it
    /// replaced, for the caller to free outside the slot's lock (a view's nodes are thousands of
    /// allocations).
    #[must_use]
    pub fn cache_render(
        &mut self,
        key: &str,
        cell: &Making,
        generation: u64,
        (made_at, cost_ms): (i64, i64),
        rendered: Rendered,
    ) -> Option<Rendered> {
        self.release_render(key, cell);
        if let Rendered::List(.., plan) = &rendered
            && (self.list_plans.contains_key(key) || self.list_plans.len() < MAX_RENDERS)
        {
            self.list_plans.insert(key.to_owned(), plan.clone());
        }
        let last_read = match self.renders.get(key) {
            Some(kept) if kept.generation > generation => return Some(rendered),
            Some(kept) => kept.last_read.max(made_at),
            None if self.renders.len() >= MAX_RENDERS => return Some(rendered),
            None => made_at,
        };
        let kept = Kept {
            generation,
            made_at,
            cost_ms,
            last_read,
            rendered,
        };
        self.renders
            .insert(key.to_owned(), kept)
            .map(|replaced| replaced.rendered)
    }

    /// The plan the last topology list made under `key` learned, for the next to follow.
    pub fn list_plan(&self, key: &str) -> Option<Arc<ListPlan>> {
        self.list_plans.get(key).cloned()
    }

    /// The view counts of the topology list kept under `key`, with when it was made (the window
    /// it counts), if that was at `since_ms` or later.
    pub fn list_counts(&self, key: &str, since_ms: i64) -> Option<(i64, Arc<ViewCounts>)> {
        match self.renders.get(key) {
            Some(Kept {
                made_at,
                rendered: Rendered::List(counts, ..),
                ..
            }) if *made_at >= since_ms => Some((*made_at, counts.clone())),
            _ => None,
        }
    }

    /// Whether the views are to be counted for the timeline at `now_ms`: neither a topology list
    /// kept under `key` was made, nor a count begun (made or failed), since `since_ms`. If so,
    /// the count is taken to begin now — a count that fails (a render over its budget) is not
    /// tried again before the next interval.
    pub fn count_due(&mut self, key: &str, since_ms: i64, now_ms: i64) -> bool {
        if self.views_counted >= since_ms || self.list_counts(key, since_ms).is_some() {
            return false;
        }
        self.views_counted = now_ms;
        true
    }

    /// Lets go of `cell` as the render being made under `key` (made and kept, or failed).
    pub fn release_render(&mut self, key: &str, cell: &Making) {
        if self.pending.get(key).is_some_and(|p| Arc::ptr_eq(p, cell)) {
            self.pending.remove(key);
        }
    }

    /// Shares a merge of the window as it was at `generation` with the `samples` it keeps, made by
    /// `cell`, with the readers that come while it is in use.
    pub fn cache_merged(
        &mut self,
        cell: &Merging,
        generation: u64,
        merged: &Arc<Report>,
        samples: Samples,
    ) {
        let kind = merge_kind(samples);
        if self.merging[kind]
            .as_ref()
            .is_some_and(|m| Arc::ptr_eq(m, cell))
        {
            self.merging[kind] = None;
        }
        if generation == self.generation {
            self.merged[kind] = Some((generation, Arc::downgrade(merged)));
        }
    }

    /// The permit a background render of this instance takes first (one at a time).
    pub fn background(&self) -> Arc<tokio::sync::Semaphore> {
        self.background.clone()
    }

    /// Probes heard from within [`PROBE_TTL_MS`], reports accepted, window bytes: what a scrape
    /// of the collector's metrics exports (without pruning, which is the readers' work).
    pub fn figures(&self, now_ms: i64) -> (u64, u64, u64) {
        let probes = self
            .probes
            .values()
            .filter(|p| now_ms - p.last_seen < PROBE_TTL_MS)
            .count();
        (probes as u64, self.received, self.window_bytes as u64)
    }

    pub fn usage(&mut self, now_ms: i64) -> Usage {
        self.prune(now_ms);
        self.probes
            .retain(|_, p| now_ms - p.last_seen < PROBE_TTL_MS);
        Usage {
            probes: self.probes.values().cloned().collect(),
            reports_in_window: self
                .windows
                .values()
                .map(|p| lock(p).reports_within(now_ms, WINDOW_MS))
                .sum(),
            reports_received: self.received,
            refused: self
                .refused
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            window_bytes: self.window_bytes as u64,
            window_budget_bytes: self.ledger.budget.instance_bytes as u64,
            history: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(probes: i64, rate: i64) -> Limits {
        Limits {
            max_probes: probes,
            max_report_bytes: 1024,
            max_reports_per_second: rate,
        }
    }

    fn probe(id: &str, at: i64) -> ProbeInfo {
        ProbeInfo {
            id: id.into(),
            hostname: None,
            version: None,
            last_seen: at,
        }
    }

    #[test]
    fn views_are_counted_once_an_interval_and_a_failed_count_is_not_retried_sooner() {
        const EVERY: i64 = 60_000;
        let mut slot = Slot::new(limits(10, 2));
        let due = |slot: &mut Slot, now: i64| slot.count_due("list", now - EVERY, now);
        // Never counted: due, and taken to begin now.
        assert!(due(&mut slot, 100_000));
        // Whatever came of it (here: nothing kept, as when a render is over its budget), not
        // again within the interval…
        assert!(!due(&mut slot, 101_000));
        assert!(!due(&mut slot, 160_000));
        // …but after it.
        assert!(due(&mut slot, 160_001));
        // A list a reader made counts as a count.
        let counts = Arc::new(ViewCounts::from([("hosts".to_owned(), 2)]));
        let cell = Making::default();
        let plan = Arc::new(ListPlan::default());
        let list = Rendered::List(counts.clone(), Answer::default(), plan.clone());
        assert!(slot.list_plan("list").is_none());
        let _ = slot.cache_render("list", &cell, 0, (230_000, 5), list);
        // The next list of the instance follows the plan this one learned.
        assert!(Arc::ptr_eq(&slot.list_plan("list").unwrap(), &plan));
        assert!(!due(&mut slot, 230_001));
        assert_eq!(slot.list_counts("list", 230_000), Some((230_000, counts)));
        assert_eq!(slot.list_counts("list", 230_001), None);
        assert!(!due(&mut slot, 289_999));
        assert!(due(&mut slot, 290_001));
        // The list, unread for a minute, is let go of; its plan is kept for the next count.
        let _ = slot.render_plan("another", 300_000, 20);
        assert_eq!(slot.list_counts("list", 0), None);
        assert!(Arc::ptr_eq(&slot.list_plan("list").unwrap(), &plan));
    }

    #[test]
    fn rate_limit_refills_over_time() {
        let mut slot = Slot::new(limits(10, 2));
        assert!(slot.admit("p", 1_000).is_ok());
        assert!(slot.admit("p", 1_000).is_ok());
        assert_eq!(slot.admit("p", 1_000), Err(Refusal::TooManyReports));
        assert!(slot.admit("p", 1_600).is_ok());
        assert_eq!(slot.usage(1_600).refused["too_many_reports"], 1);
    }

    #[test]
    fn probe_limit_counts_recent_probes_only() {
        let mut slot = Slot::new(limits(1, 100));
        slot.admit("a", 1_000).unwrap();
        slot.accept(probe("a", 1_000), Report::default(), 1_000);
        assert_eq!(slot.admit("b", 2_000), Err(Refusal::TooManyProbes));
        assert!(slot.admit("a", 2_000).is_ok());
        // Once "a" has been silent for a minute, "b" may take its place.
        assert!(slot.admit("b", 1_000 + PROBE_TTL_MS + 1).is_ok());
    }

    /// The slot's lock is what every reader takes first: a report being folded into one probe's
    /// part must not hold it up (this test hung before), and the part is expired once free.
    #[test]
    fn a_busy_part_does_not_hold_up_the_slot() {
        let mut slot = Slot::new(limits(10, 100));
        slot.accept(probe("a", 1_000), host_report("h1"), 1_000);
        let busy = slot.part_of("a");
        let folding = lock(&busy);
        // A minute later, another probe's report: "a"'s only bucket has left the window.
        slot.accept(probe("b", 61_000), host_report("h2"), 61_000);
        assert_eq!(folding.buckets(), 1, "not expired while busy");
        drop(folding);
        drop(busy);
        let parts = slot.parts(61_000);
        assert_eq!(parts.len(), 1, "expired and let go once free");
    }

    fn host_report(id: &str) -> Report {
        let mut r = Report::default();
        r.topologies.entry("Host".into()).or_default().nodes.insert(
            id.into(),
            crate::collector::report::Node {
                id: id.into(),
                topology: "host".into(),
                ..Default::default()
            },
        );
        r
    }

    /// Hosts in the window as a reader merges it now.
    fn hosts(slot: &mut Slot, now: i64) -> Vec<String> {
        let merged = merge_parts(&slot.parts(now), now, true, Samples::All);
        merged.topologies["Host"]
            .nodes
            .keys()
            .map(String::from)
            .collect()
    }

    #[test]
    fn the_window_keeps_fifteen_seconds() {
        let mut slot = Slot::new(limits(10, 100));
        slot.accept(probe("a", 0), host_report("h1"), 1_000);
        slot.accept(probe("a", 0), host_report("h2"), 10_000);
        assert_eq!(hosts(&mut slot, 15_500), ["h1", "h2"]);
        assert_eq!(usage_in_window(&mut slot, 15_500), 2);
        assert_eq!(hosts(&mut slot, 16_500), ["h2"]);
        assert_eq!(usage_in_window(&mut slot, 16_500), 1);
        assert_eq!(slot.usage(16_500).reports_received, 2);
        // Once a probe's last bucket left, its part goes.
        assert!(hosts(&mut slot, 25_001).is_empty());
        assert!(slot.windows.is_empty());
    }

    fn usage_in_window(slot: &mut Slot, now: i64) -> u64 {
        slot.usage(now).reports_in_window
    }

    /// Merges what the snapshot asks for and keeps it, as a reader does.
    /// Merges the window as a reader does; the merge is shared while the caller holds it.
    fn read(slot: &mut Slot, now: i64) -> (u64, Arc<Report>) {
        let Snapshot::Merge(cell) = slot.snapshot(now, Samples::Last) else {
            unreachable!("read only when something changed")
        };
        let parts = slot.parts(now);
        let generation = slot.generation();
        let merged = Arc::new(merge_parts(&parts, now, true, Samples::Last));
        slot.cache_merged(&cell, generation, &merged, Samples::Last);
        (generation, merged)
    }

    #[test]
    fn the_merge_is_shared_while_in_use_until_the_window_changes() {
        let mut slot = Slot::new(limits(10, 100));
        slot.accept(probe("a", 0), Report::default(), 1_000);
        slot.accept(probe("b", 0), Report::default(), 1_500);
        assert!(matches!(
            slot.snapshot(2_000, Samples::Last),
            Snapshot::Merge(_)
        ));
        assert_eq!(slot.parts(2_000).len(), 2);
        let (_, in_use) = read(&mut slot, 2_000);
        assert!(matches!(
            slot.snapshot(2_000, Samples::Last),
            Snapshot::Merged(..)
        ));
        // Node details' merge (every sample) is another, shared the same way.
        let Snapshot::Merge(all) = slot.snapshot(2_000, Samples::All) else {
            panic!("the views' merge keeps the newest samples only")
        };
        let with_all = Arc::new(Report::default());
        slot.cache_merged(&all, slot.generation(), &with_all, Samples::All);
        let Snapshot::Merged(_, shared) = slot.snapshot(2_000, Samples::All) else {
            panic!("details' merge not shared")
        };
        assert!(Arc::ptr_eq(&shared, &with_all));
        let Snapshot::Merged(_, views) = slot.snapshot(2_000, Samples::Last) else {
            panic!("the views' merge let go of")
        };
        assert!(Arc::ptr_eq(&views, &in_use));
        drop((shared, views, with_all));
        // Once nobody uses it, it is let go of: the next reader merges again.
        drop(in_use);
        assert!(matches!(
            slot.snapshot(2_000, Samples::Last),
            Snapshot::Merge(_)
        ));
        let (_, in_use) = read(&mut slot, 2_000);
        // A new report changes the window.
        slot.accept(probe("a", 0), Report::default(), 3_000);
        assert!(matches!(
            slot.snapshot(3_000, Samples::Last),
            Snapshot::Merge(_)
        ));
        let (generation, _in_use) = read(&mut slot, 3_000);
        assert!(matches!(
            slot.snapshot(3_000, Samples::Last),
            Snapshot::Merged(..)
        ));
        drop(in_use);
        // So does an old report leaving it: a's first…
        assert!(matches!(
            slot.snapshot(16_200, Samples::Last),
            Snapshot::Merge(_)
        ));
        assert_eq!(slot.parts(16_200).len(), 2);
        let _in_use = read(&mut slot, 16_200);
        // …then b's only one, and b's part goes.
        assert!(matches!(
            slot.snapshot(16_600, Samples::Last),
            Snapshot::Merge(_)
        ));
        assert_eq!(slot.parts(16_600).len(), 1);
        let _in_use = read(&mut slot, 16_600);
        slot.accept(probe("a", 0), Report::default(), 17_000);
        // A merge computed for an older generation is not shared.
        let Snapshot::Merge(cell) = slot.snapshot(17_000, Samples::Last) else {
            panic!("the window changed")
        };
        let old = Arc::new(Report::default());
        slot.cache_merged(&cell, generation, &old, Samples::Last);
        assert!(matches!(
            slot.snapshot(17_000, Samples::Last),
            Snapshot::Merge(_)
        ));
        // Readers share the merge being made.
        let Snapshot::Merge(again) = slot.snapshot(17_000, Samples::Last) else {
            panic!("still no merge")
        };
        let Snapshot::Merge(third) = slot.snapshot(17_000, Samples::Last) else {
            panic!("still no merge")
        };
        assert!(Arc::ptr_eq(&again, &third));
    }

    fn view() -> Rendered {
        Rendered::View(Arc::new(Summaries::new()), Answer::default())
    }

    /// A render of the window as it is at `now`, `cost_ms` long, kept as a reader would.
    fn make(slot: &mut Slot, key: &str, now: i64, cost_ms: i64) {
        let RenderPlan::Wait(cell) = slot.render_plan(key, now, RENDER_ON_READ_MS) else {
            panic!("expected to have to make {key}")
        };
        let generation = slot.generation;
        let _ = slot.cache_render(key, &cell, generation, (now, cost_ms), view());
    }

    #[test]
    fn readers_of_one_render_share_it_while_it_is_made() {
        let mut slot = Slot::new(limits(10, 100));
        slot.accept(probe("a", 0), Report::default(), 1_000);
        let RenderPlan::Wait(first) = slot.render_plan("hosts?", 1_000, RENDER_ON_READ_MS) else {
            panic!("nothing made yet")
        };
        let RenderPlan::Wait(second) = slot.render_plan("hosts?", 1_000, RENDER_ON_READ_MS) else {
            panic!("still being made")
        };
        assert!(Arc::ptr_eq(&first, &second), "one render for both");
        let generation = slot.generation;
        let _ = slot.cache_render("hosts?", &first, generation, (1_000, 5), view());
        assert!(matches!(
            slot.render_plan("hosts?", 1_100, RENDER_ON_READ_MS),
            RenderPlan::Current(_)
        ));
        // Another view, or the same with other options, is another render.
        assert!(matches!(
            slot.render_plan("processes?", 1_100, RENDER_ON_READ_MS),
            RenderPlan::Wait(_)
        ));
        // A render that failed is let go of: the next reader makes it.
        let RenderPlan::Wait(failed) = slot.render_plan("hosts?x", 1_100, RENDER_ON_READ_MS) else {
            panic!()
        };
        slot.release_render("hosts?x", &failed);
        let RenderPlan::Wait(again) = slot.render_plan("hosts?x", 1_100, RENDER_ON_READ_MS) else {
            panic!()
        };
        assert!(!Arc::ptr_eq(&failed, &again));
    }

    #[test]
    fn a_cheap_render_is_made_again_when_the_window_changes() {
        let mut slot = Slot::new(limits(10, 100));
        slot.accept(probe("a", 0), Report::default(), 1_000);
        make(&mut slot, "hosts?", 1_000, RENDER_ON_READ_MS - 1);
        slot.accept(probe("a", 0), Report::default(), 1_100);
        // The reader waits for a render of the window as it is.
        make(&mut slot, "hosts?", 1_200, RENDER_ON_READ_MS - 1);
        assert!(matches!(
            slot.render_plan("hosts?", 1_300, RENDER_ON_READ_MS),
            RenderPlan::Current(_)
        ));
    }

    #[test]
    fn a_costly_render_is_served_while_a_new_one_is_made_at_most_once_a_second() {
        let mut slot = Slot::new(limits(10, 100));
        slot.accept(probe("a", 0), Report::default(), 1_000);
        make(&mut slot, "hosts?", 1_000, 300);
        slot.accept(probe("a", 0), Report::default(), 1_200);
        // Within a second of the last render: the last render, and nothing to make.
        assert!(matches!(
            slot.render_plan("hosts?", 1_500, RENDER_ON_READ_MS),
            RenderPlan::Recent { refresh: None, .. }
        ));
        // A second on: the last render, and a new one to make in the background, once.
        let RenderPlan::Recent {
            refresh: Some((cell, _)),
            ..
        } = slot.render_plan("hosts?", 2_000, RENDER_ON_READ_MS)
        else {
            panic!("expected a refresh")
        };
        assert!(matches!(
            slot.render_plan("hosts?", 2_100, RENDER_ON_READ_MS),
            RenderPlan::Recent { refresh: None, .. }
        ));
        let generation = slot.generation;
        let replaced = slot.cache_render("hosts?", &cell, generation, (2_000, 300), view());
        assert!(
            replaced.is_some(),
            "the render replaced is given back, to be freed elsewhere"
        );
        assert!(matches!(
            slot.render_plan("hosts?", 2_400, RENDER_ON_READ_MS),
            RenderPlan::Current(_)
        ));
        // While a new render is being made, the last one is served up to MAX_STALE_REFRESHING_MS.
        slot.accept(probe("a", 0), Report::default(), 2_500);
        let RenderPlan::Recent {
            refresh: Some(_), ..
        } = slot.render_plan("hosts?", 3_000, RENDER_ON_READ_MS)
        else {
            panic!("expected a refresh")
        };
        assert!(matches!(
            slot.render_plan("hosts?", 2_000 + MAX_STALE_MS + 1, RENDER_ON_READ_MS),
            RenderPlan::Recent { refresh: None, .. }
        ));
        assert!(matches!(
            slot.render_plan(
                "hosts?",
                2_000 + MAX_STALE_REFRESHING_MS + 1,
                RENDER_ON_READ_MS
            ),
            RenderPlan::Wait(_)
        ));
        // With none being made, a render older than MAX_STALE_MS is not served: the reader waits
        // for a new one (the view was not read for a while).
        let making = slot.pending.remove("hosts?");
        assert!(making.is_some());
        assert!(matches!(
            slot.render_plan("hosts?", 2_000 + MAX_STALE_MS + 1, RENDER_ON_READ_MS),
            RenderPlan::Wait(_)
        ));
        // A render made from an older window never replaces a newer one.
        let older = Making::default();
        let _ = slot.cache_render("hosts?", &older, generation - 1, (2_600, 300), view());
        assert_eq!(slot.renders["hosts?"].generation, generation);
    }

    #[test]
    fn renders_nobody_reads_are_let_go() {
        let mut slot = Slot::new(limits(10, 100));
        slot.accept(probe("a", 0), Report::default(), 1_000);
        make(&mut slot, "hosts?", 1_000, 5);
        slot.render_plan("processes?", 1_000 + KEEP_UNREAD_MS + 1, RENDER_ON_READ_MS);
        assert!(!slot.renders.contains_key("hosts?"));
    }

    /// Map websockets are bounded per user and per instance, and each one closed makes room.
    #[test]
    fn map_websockets_are_bounded_per_user_and_per_instance() {
        let mut slot = Slot::new(limits(10, 10));
        for _ in 0..MAP_SOCKETS_PER_USER {
            slot.open_map_socket("alice").unwrap();
        }
        assert_eq!(slot.open_map_socket("alice"), Err(MapSocketsFull::User));
        slot.close_map_socket("alice");
        slot.open_map_socket("alice").unwrap();
        // Everyone else, until the instance is full.
        let others = MAP_SOCKETS_PER_INSTANCE - MAP_SOCKETS_PER_USER;
        for n in 0..others {
            slot.open_map_socket(&format!("user-{}", n / MAP_SOCKETS_PER_USER))
                .unwrap();
        }
        assert_eq!(slot.open_map_socket("bob"), Err(MapSocketsFull::Instance));
        slot.close_map_socket("user-0");
        slot.open_map_socket("bob").unwrap();
        // A user who closes everything is forgotten.
        for _ in 0..MAP_SOCKETS_PER_USER {
            slot.close_map_socket("alice");
        }
        assert!(!slot.map_sockets.contains_key("alice"));
        slot.close_map_socket("nobody");
    }

    #[test]
    fn a_flooding_probe_keeps_one_bucket_per_second() {
        let mut slot = Slot::new(limits(10, 1_000));
        for n in 0..100 {
            // 100 reports over 2 s: two buckets.
            slot.accept(
                probe("a", 0),
                host_report(&format!("h{n:02}")),
                1_000 + n as i64 * 20,
            );
        }
        assert_eq!(lock(&slot.windows["a"]).buckets(), 2);
        assert_eq!(slot.usage(3_000).reports_in_window, 100);
        // Nothing is lost by the folding: the window holds every report's node.
        assert_eq!(hosts(&mut slot, 3_000).len(), 100);
        // A bucket leaves the window with its newest report, and its nodes with it.
        assert_eq!(
            slot.usage(1_000 + 49 * 20 + WINDOW_MS).reports_in_window,
            100
        );
        assert_eq!(
            slot.usage(1_000 + 49 * 20 + WINDOW_MS + 1)
                .reports_in_window,
            50
        );
        let left = hosts(&mut slot, 1_000 + 49 * 20 + WINDOW_MS + 1);
        assert_eq!(left.first().map(String::as_str), Some("h50"));
        assert_eq!(left.len(), 50);
    }

    #[test]
    fn a_reader_notes_what_left_the_window_once_and_the_merge_lets_go_of_it() {
        let mut slot = Slot::new(limits(10, 100));
        slot.accept(probe("a", 0), host_report("h1"), 1_000);
        slot.accept(probe("a", 0), host_report("h2"), 10_000);
        let before = slot.generation();
        slot.prune(16_000);
        assert_eq!(slot.generation(), before, "nothing left the window yet");
        // The reader's look (under the slot's lock) notes that the first bucket left: the window
        // changed, once; letting go of it is left to whoever merges the part next.
        slot.prune(16_500);
        assert_eq!(slot.generation(), before + 1);
        assert_eq!(lock(&slot.windows["a"]).buckets(), 2);
        slot.prune(16_600);
        assert_eq!(slot.generation(), before + 1, "noted once");
        assert_eq!(usage_in_window(&mut slot, 16_600), 1);
        assert_eq!(hosts(&mut slot, 16_600), ["h2"]);
        assert_eq!(lock(&slot.windows["a"]).buckets(), 1, "the merge let go");
        slot.prune(16_700);
        assert_eq!(slot.generation(), before + 1);
    }

    #[test]
    fn parts_follow_the_order_of_their_oldest_reports_still_in_the_window() {
        let mut slot = Slot::new(limits(10, 100));
        let report = |id: &str| Report {
            id: id.into(),
            ..Report::default()
        };
        // Not the order of the probes' names: the order their reports arrived in.
        slot.accept(probe("z", 0), report("z-first"), 1_000);
        slot.accept(probe("a", 0), report("a-second"), 5_000);
        let (_, merged) = read(&mut slot, 5_000);
        assert_eq!(
            merged.id, "z-first",
            "the window's oldest report comes first"
        );
        slot.accept(probe("z", 0), report("z-newer"), 12_000);
        // z's first bucket left the window (noted, not yet let go of): a's report is the oldest.
        let (_, merged) = read(&mut slot, 16_500);
        assert_eq!(merged.id, "a-second");
    }

    #[test]
    fn a_part_being_folded_into_is_not_let_go() {
        let mut slot = Slot::new(limits(10, 100));
        slot.accept(probe("a", 0), host_report("old"), 1_000);
        // Ingest takes the part to fold into, then the window empties before it is done.
        let part = slot.part_of("a");
        assert!(hosts(&mut slot, 20_000).is_empty());
        let bytes = fold_into(&part, host_report("new"), 20_000);
        slot.accepted(probe("a", 20_000), &part, bytes, 20_000);
        assert_eq!(hosts(&mut slot, 20_000), ["new"]);
    }

    /// A report of one host with `nodes` processes named after `tag`.
    fn processes(tag: &str, nodes: usize) -> Report {
        let mut report = host_report(tag);
        let topology = report.topologies.entry("Process".to_owned()).or_default();
        for n in 0..nodes {
            let id = format!("{tag};{n}");
            let node = crate::collector::report::Node {
                id: crate::collector::name::Name::from(&id),
                topology: "process".into(),
                latest: Arc::new(
                    [(
                        "cmdline".to_owned(),
                        crate::collector::report::LatestEntry {
                            timestamp: crate::collector::report::Time(1),
                            value: format!("/usr/bin/{tag}-{n} --flag").into(),
                        },
                    )]
                    .into_iter()
                    .collect(),
                ),
                ..Default::default()
            };
            topology.nodes.insert(id.into(), node);
        }
        report
    }

    #[test]
    fn the_window_is_charged_for_distinct_nodes_not_for_reports() {
        let mut slot = Slot::new(limits(10, 100));
        slot.accept(probe("a", 0), processes("same", 200), 1_000);
        let once = slot.window_bytes();
        assert!(once > 200 * 64, "{once}");
        for at in [4_000, 7_000, 10_000, 13_000] {
            slot.accept(probe("a", at), processes("same", 200), at);
        }
        let again = slot.window_bytes();
        assert!(again < once + once / 5, "{once} → {again}");
        // Reports of new processes each time keep each until its bucket leaves.
        let mut other = Slot::new(limits(10, 100));
        for (n, at) in [1_000, 4_000, 7_000, 10_000, 13_000]
            .into_iter()
            .enumerate()
        {
            other.accept(probe("a", at), processes(&format!("new{n}"), 200), at);
        }
        let distinct = other.window_bytes();
        assert!(distinct > 4 * once, "{once} vs {distinct}");
        // And when they leave, so do their bytes.
        let _ = other.usage(40_000);
        assert_eq!(other.window_bytes(), 0);
    }

    #[test]
    fn an_instance_over_its_memory_budget_refuses_reports_until_its_window_drains() {
        let ledger = Arc::new(MemoryLedger::new(MemoryBudget {
            instance_bytes: 100_000,
            shard_bytes: usize::MAX,
        }));
        let mut slot = Slot::on(limits(10, 100), ledger.clone());
        let mut at = 1_000;
        while slot.admit("a", at).is_ok() {
            slot.accept(probe("a", at), processes(&format!("r{at}"), 50), at);
            at += 1_000;
            assert!(at < 100_000, "never refused");
        }
        assert_eq!(slot.admit("a", at), Err(Refusal::WindowFull));
        assert!(slot.window_bytes() >= 100_000);
        assert_eq!(ledger.total(), slot.window_bytes());
        assert_eq!(slot.usage(at).refused["window_full"], 2);
        // Nothing is read meanwhile; once the window's reports are old, a report is taken again.
        assert_eq!(slot.admit("a", at + WINDOW_MS + 1), Ok(()));
        assert_eq!(ledger.total(), slot.window_bytes());
        drop(slot);
        assert_eq!(ledger.total(), 0);
    }

    #[test]
    fn a_full_shard_refuses_only_instances_holding_their_share_of_it() {
        let ledger = Arc::new(MemoryLedger::new(MemoryBudget {
            instance_bytes: usize::MAX,
            shard_bytes: 200_000,
        }));
        let mut big = Slot::on(limits(10, 1_000), ledger.clone());
        let mut small = Slot::on(limits(10, 1_000), ledger.clone());
        small.accept(probe("s", 1_000), processes("small", 5), 1_000);
        let mut at = 1_000;
        while big.admit("b", at).is_ok() {
            big.accept(probe("b", at), processes(&format!("b{at}"), 50), at);
            at += 100;
            assert!(at < 14_000, "never refused");
        }
        assert_eq!(big.admit("b", at), Err(Refusal::ShardFull));
        assert!(ledger.total() >= 200_000);
        // The small instance is far below half of the shard: its probe goes on.
        assert_eq!(small.admit("s", at), Ok(()));
        small.accept(probe("s", at), processes("small", 5), at);
        assert_eq!(big.usage(at).refused["collector_full"], 2);
    }
}
