//! One instance's place on a collector shard: its reports of the last window, the probes that sent
//! them, and the limits that guard it.
//!
//! The window is kept per probe, with each probe's reports merged once and reused until that probe's
//! part of the window changes, so that a read after a new report merges one part per probe (one of
//! them new) rather than every report of the window. Reports of one probe that arrive within the
//! same second are merged into one bucket as they arrive, so a probe that floods keeps at most one
//! bucket per second of the window, whatever its rate: memory follows the system's size, not the
//! report rate. (At Scope's pace, one report every 3 s, every bucket holds one report.)

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use shared::instances::{Limits, ProbeInfo, Usage};
use shared::topology::NodeSummary;

use super::render::topologies::TopologyDesc;
use super::report::Report;

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
}

/// Reports of one probe arriving within one quantum share a bucket.
pub const QUANTUM_MS: i64 = 1_000;

/// One probe's reports of one quantum, merged in the order they arrived.
#[derive(Clone)]
struct Bucket {
    quantum: i64,
    /// When its newest report arrived: the bucket leaves the window with it.
    last_at: i64,
    reports: u64,
    report: Arc<Report>,
}

/// One probe's reports in the window, oldest first, and their merge once a reader made it.
#[derive(Default)]
struct ProbeWindow {
    reports: VecDeque<Bucket>,
    /// Bumped whenever `reports` changes.
    version: u64,
    merged: Option<(u64, Arc<Report>)>,
}

pub struct Slot {
    pub limits: Limits,
    /// The window, by probe id.
    windows: BTreeMap<String, ProbeWindow>,
    probes: BTreeMap<String, ProbeInfo>,
    tokens: f64,
    refilled_ms: i64,
    received: u64,
    refused: BTreeMap<&'static str, u64>,
    /// What the instance refuses now, as provisioning last said.
    pub flags: super::shard::Flags,
    /// Bumped whenever the window changes, so a merge of it can be reused until then.
    generation: u64,
    merged: Option<(u64, Arc<Report>)>,
    /// Rendered views of the window at `renders_generation`, by view and query, shared by every
    /// reader (requests and websocket ticks) until the window changes.
    renders: HashMap<String, Rendered>,
    /// Reports that left the window, to be dropped once the slot's lock is let go
    /// ([`Slot::take_expired`]): freeing a large report takes a while.
    expired: Vec<Arc<Report>>,
    /// Renders being made for `renders_generation`: readers who ask meanwhile wait for them.
    pending: HashMap<String, Arc<tokio::sync::OnceCell<Rendered>>>,
    renders_generation: u64,
}

/// Where a reader gets a render from.
pub enum RenderSlot {
    /// Made already.
    Done(Rendered),
    /// Being made, or to be made by whoever initialises it first.
    Pending(Arc<tokio::sync::OnceCell<Rendered>>),
}

/// A view's nodes, summarised, by id.
pub type Summaries = BTreeMap<String, NodeSummary>;

/// What a read renders from the window and the slot keeps for the next reader of the same.
#[derive(Clone)]
pub enum Rendered {
    /// A view's summaries.
    View(Arc<Summaries>),
    /// The topology list with its stats.
    List(Arc<Vec<TopologyDesc>>),
}

/// Renders kept per instance (views × option sets in use); beyond this, new ones are not kept.
const MAX_RENDERS: usize = 64;

/// What a reader needs to render the window: the cached merge if it is current, else its parts.
pub enum Snapshot {
    /// The window's generation and its cached merge.
    Merged(u64, Arc<Report>),
    /// The window's generation and one part per probe, in the order their reports arrived.
    Parts(u64, Vec<Part>),
}

/// One probe's part of the window.
pub enum Part {
    /// Its reports, merged (`Report::merge_plain`) by an earlier reader.
    Merged(Arc<Report>),
    /// Its reports, oldest first, to merge; the merge is kept with [`Slot::cache_part`].
    Reports {
        probe: String,
        version: u64,
        reports: Vec<Arc<Report>>,
    },
}

impl Slot {
    pub fn new(limits: Limits) -> Self {
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
            merged: None,
            renders: HashMap::new(),
            pending: HashMap::new(),
            expired: Vec::new(),
            renders_generation: 0,
        }
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
        self.tokens -= 1.0;
        Ok(())
    }

    pub fn refuse(&mut self, why: Refusal) -> Refusal {
        let key = match why {
            Refusal::TooLarge => "too_large",
            Refusal::TooManyReports => "too_many_reports",
            Refusal::TooManyProbes => "too_many_probes",
            Refusal::Malformed => "malformed",
        };
        *self.refused.entry(key).or_default() += 1;
        why
    }

    /// Keeps a decoded report from `probe`; true if it is the first the instance ever accepted.
    pub fn accept(&mut self, probe: ProbeInfo, report: Report, now_ms: i64) -> bool {
        let first = self.received == 0;
        self.received += 1;
        let window = self.windows.entry(probe.id.clone()).or_default();
        let quantum = now_ms.div_euclid(QUANTUM_MS);
        match window.reports.back_mut() {
            Some(bucket) if bucket.quantum == quantum => {
                Arc::make_mut(&mut bucket.report).merge(&report);
                bucket.last_at = now_ms;
                bucket.reports += 1;
            }
            _ => window.reports.push_back(Bucket {
                quantum,
                last_at: now_ms,
                reports: 1,
                report: Arc::new(report),
            }),
        }
        window.version += 1;
        self.probes.insert(probe.id.clone(), probe);
        self.generation += 1;
        self.prune(now_ms);
        first
    }

    fn prune(&mut self, now_ms: i64) {
        let mut changed = false;
        for window in self.windows.values_mut() {
            while window
                .reports
                .front()
                .is_some_and(|bucket| now_ms - bucket.last_at > WINDOW_MS)
            {
                if let Some(bucket) = window.reports.pop_front() {
                    self.expired.push(bucket.report);
                }
                window.version += 1;
                changed = true;
            }
        }
        if changed {
            self.windows.retain(|_, w| !w.reports.is_empty());
            self.generation += 1;
        }
    }

    /// The probes' windows in the order their oldest reports arrived (then by probe id), so that
    /// merging them keeps the order of the window wherever it matters (the first report's id).
    fn ordered(&self) -> Vec<(&String, &ProbeWindow)> {
        let mut windows: Vec<_> = self.windows.iter().collect();
        windows.sort_by_key(|(probe, w)| (w.reports.front().map(|b| b.last_at), *probe));
        windows
    }

    /// The window's merge if one is cached for its current contents, else the reports to merge.
    pub fn snapshot(&mut self, now_ms: i64) -> Snapshot {
        self.prune(now_ms);
        if let Some((generation, merged)) = &self.merged
            && *generation == self.generation
        {
            return Snapshot::Merged(*generation, merged.clone());
        }
        let parts = self
            .ordered()
            .into_iter()
            .map(|(probe, window)| match &window.merged {
                Some((version, merged)) if *version == window.version => {
                    Part::Merged(merged.clone())
                }
                _ => Part::Reports {
                    probe: probe.clone(),
                    version: window.version,
                    reports: window.reports.iter().map(|b| b.report.clone()).collect(),
                },
            })
            .collect();
        Snapshot::Parts(self.generation, parts)
    }

    /// Keeps the merge of a probe's part as it was at `version`.
    /// Gives back the part it replaces, to drop outside the slot's lock.
    #[must_use = "drop what it gives back after letting go of the slot"]
    pub fn cache_part(
        &mut self,
        probe: &str,
        version: u64,
        merged: Arc<Report>,
    ) -> Option<Arc<Report>> {
        match self.windows.get_mut(probe) {
            Some(window) if window.version == version => {
                window.merged.replace((version, merged)).map(|(_, old)| old)
            }
            _ => Some(merged),
        }
    }

    fn renders_for(&mut self, generation: u64) {
        if self.renders_generation != generation {
            self.renders.clear();
            self.pending.clear();
            self.renders_generation = generation;
        }
    }

    /// The render of the window at `generation` under `key`, or the cell every reader of it
    /// shares while one of them makes it. `None` when it cannot be kept (the window moved on, or
    /// the instance has as many renders as it may keep): the reader renders for itself.
    pub fn render_slot(&mut self, generation: u64, key: &str) -> Option<RenderSlot> {
        if generation != self.generation {
            return None;
        }
        self.renders_for(generation);
        if let Some(done) = self.renders.get(key) {
            return Some(RenderSlot::Done(done.clone()));
        }
        if let Some(cell) = self.pending.get(key) {
            return Some(RenderSlot::Pending(cell.clone()));
        }
        if self.renders.len() + self.pending.len() >= MAX_RENDERS {
            return None;
        }
        let cell = Arc::new(tokio::sync::OnceCell::new());
        self.pending.insert(key.to_owned(), cell.clone());
        Some(RenderSlot::Pending(cell))
    }

    /// Keeps a render of the window as it was at `generation`.
    pub fn cache_render(&mut self, generation: u64, key: String, rendered: Rendered) {
        if generation != self.generation {
            return;
        }
        self.renders_for(generation);
        self.pending.remove(&key);
        if self.renders.len() < MAX_RENDERS {
            self.renders.insert(key, rendered);
        }
    }

    /// The reports that left the window since the last call, for the caller to drop.
    pub fn take_expired(&mut self) -> Vec<Arc<Report>> {
        std::mem::take(&mut self.expired)
    }
    /// Keeps a merge of the window as it was at `generation`.
    /// Gives back the merge it replaces, to drop outside the slot's lock.
    #[must_use = "drop what it gives back after letting go of the slot"]
    pub fn cache_merged(&mut self, generation: u64, merged: Arc<Report>) -> Option<Arc<Report>> {
        if generation == self.generation {
            self.merged
                .replace((generation, merged))
                .map(|(_, old)| old)
        } else {
            Some(merged)
        }
    }

    /// The reports of the current window, oldest first.
    pub fn window(&mut self, now_ms: i64) -> Vec<Arc<Report>> {
        self.prune(now_ms);
        let mut buckets: Vec<&Bucket> = self
            .windows
            .values()
            .flat_map(|w| w.reports.iter())
            .collect();
        // Stable: one probe's buckets keep their order.
        buckets.sort_by_key(|b| b.last_at);
        buckets.into_iter().map(|b| b.report.clone()).collect()
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
                .flat_map(|w| w.reports.iter())
                .map(|b| b.reports)
                .sum(),
            reports_received: self.received,
            refused: self
                .refused
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
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

    #[test]
    fn the_window_keeps_fifteen_seconds() {
        let mut slot = Slot::new(limits(10, 100));
        slot.accept(probe("a", 0), Report::default(), 1_000);
        slot.accept(probe("a", 0), Report::default(), 10_000);
        assert_eq!(slot.window(15_500).len(), 2);
        assert_eq!(slot.window(16_500).len(), 1);
        assert_eq!(slot.usage(16_500).reports_received, 2);
    }

    /// The parts a reader would merge now: (cached, to merge) counts.
    fn part_kinds(slot: &mut Slot, now: i64) -> Option<(usize, usize)> {
        match slot.snapshot(now) {
            Snapshot::Merged(..) => None,
            Snapshot::Parts(_, parts) => Some(parts.iter().fold((0, 0), |(c, m), p| match p {
                Part::Merged(_) => (c + 1, m),
                Part::Reports { .. } => (c, m + 1),
            })),
        }
    }

    /// Merges what the snapshot asks for and keeps it, as a reader does.
    fn read(slot: &mut Slot, now: i64) -> u64 {
        let Snapshot::Parts(generation, parts) = slot.snapshot(now) else {
            unreachable!("read only when something changed")
        };
        let mut merged_parts = Vec::new();
        for part in parts {
            match part {
                Part::Merged(m) => merged_parts.push(m),
                Part::Reports {
                    probe,
                    version,
                    reports,
                } => {
                    let m = Arc::new(Report::merge_plain(reports.iter().map(|r| r.as_ref())));
                    let _ = slot.cache_part(&probe, version, m.clone());
                    merged_parts.push(m);
                }
            }
        }
        let merged = Report::merge_all(merged_parts.iter().map(|r| r.as_ref()));
        let _ = slot.cache_merged(generation, Arc::new(merged));
        generation
    }

    #[test]
    fn the_merge_is_cached_until_the_window_changes() {
        let mut slot = Slot::new(limits(10, 100));
        slot.accept(probe("a", 0), Report::default(), 1_000);
        slot.accept(probe("b", 0), Report::default(), 1_500);
        assert_eq!(
            part_kinds(&mut slot, 2_000),
            Some((0, 2)),
            "nothing cached yet"
        );
        read(&mut slot, 2_000);
        assert!(matches!(slot.snapshot(2_000), Snapshot::Merged(..)));
        // A new report of one probe: only its part is merged again.
        slot.accept(probe("a", 0), Report::default(), 3_000);
        assert_eq!(part_kinds(&mut slot, 3_000), Some((1, 1)));
        let generation = read(&mut slot, 3_000);
        assert!(matches!(slot.snapshot(3_000), Snapshot::Merged(..)));
        // An old report leaving the window changes its probe's part: a's first report…
        assert_eq!(part_kinds(&mut slot, 16_200), Some((1, 1)));
        read(&mut slot, 16_200);
        // …then b's only one, and b's part goes.
        assert_eq!(part_kinds(&mut slot, 16_600), Some((1, 0)));
        assert_eq!(slot.window(16_600).len(), 1);
        // Renders are kept for the generation they were made from, and dropped when it changes.
        let generation_now = read(&mut slot, 16_600);
        assert_ne!(generation, generation_now);
        let empty = Rendered::View(Arc::new(Summaries::new()));
        slot.cache_render(generation_now, "hosts?".into(), empty);
        assert!(matches!(
            slot.render_slot(generation_now, "hosts?"),
            Some(RenderSlot::Done(_))
        ));
        assert!(matches!(
            slot.render_slot(generation_now, "processes?"),
            Some(RenderSlot::Pending(_))
        ));
        slot.accept(probe("a", 0), Report::default(), 17_000);
        assert!(slot.render_slot(generation_now, "hosts?").is_none());
        // A merge computed for an older generation is not kept.
        let _ = slot.cache_merged(generation_now, Arc::new(Report::default()));
        assert!(matches!(slot.snapshot(17_000), Snapshot::Parts(..)));
    }

    #[test]
    fn readers_of_one_render_share_it_while_it_is_made() {
        let mut slot = Slot::new(limits(10, 100));
        slot.accept(probe("a", 0), Report::default(), 1_000);
        let generation = read(&mut slot, 1_000);
        let Some(RenderSlot::Pending(first)) = slot.render_slot(generation, "hosts?") else {
            panic!("nothing made yet")
        };
        let Some(RenderSlot::Pending(second)) = slot.render_slot(generation, "hosts?") else {
            panic!("still being made")
        };
        assert!(Arc::ptr_eq(&first, &second), "one render for both");
        let made = Rendered::View(Arc::new(Summaries::new()));
        slot.cache_render(generation, "hosts?".into(), made);
        assert!(matches!(
            slot.render_slot(generation, "hosts?"),
            Some(RenderSlot::Done(_))
        ));
        // A render for a window that has moved on is not shared: its reader makes its own.
        slot.accept(probe("a", 0), Report::default(), 2_000);
        assert!(slot.render_slot(generation, "hosts?").is_none());
    }

    #[test]
    fn a_flooding_probe_keeps_one_bucket_per_second() {
        let mut slot = Slot::new(limits(10, 1_000));
        let report = |n: usize| {
            let mut r = Report::default();
            r.topologies.entry("Host".into()).or_default().nodes.insert(
                format!("h{n}"),
                crate::collector::report::Node {
                    id: format!("h{n}"),
                    topology: "host".into(),
                    ..Default::default()
                },
            );
            r
        };
        for n in 0..100 {
            // 100 reports over 2 s: two buckets.
            slot.accept(probe("a", 0), report(n), 1_000 + n as i64 * 20);
        }
        assert_eq!(slot.windows["a"].reports.len(), 2);
        assert_eq!(slot.usage(3_000).reports_in_window, 100);
        // Nothing is lost by the folding: the window holds every report's node.
        let merged = Report::merge_all(slot.window(3_000).iter().map(|r| r.as_ref()));
        assert_eq!(merged.topology("Host").unwrap().nodes.len(), 100);
        // A bucket leaves the window with its newest report.
        assert_eq!(
            slot.usage(1_000 + 49 * 20 + WINDOW_MS).reports_in_window,
            100
        );
        assert_eq!(
            slot.usage(1_000 + 49 * 20 + WINDOW_MS + 1)
                .reports_in_window,
            50
        );
    }

    #[test]
    fn parts_follow_the_order_reports_arrived_in() {
        let mut slot = Slot::new(limits(10, 100));
        let report = |id: &str| Report {
            id: id.into(),
            ..Report::default()
        };
        slot.accept(probe("z", 0), report("first"), 1_000);
        slot.accept(probe("a", 0), report("second"), 2_000);
        read(&mut slot, 2_000);
        let Snapshot::Merged(_, merged) = slot.snapshot(2_000) else {
            unreachable!()
        };
        assert_eq!(merged.id, "first", "the window's oldest report comes first");
        assert_eq!(
            slot.window(2_000)
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            ["first", "second"]
        );
    }
}
