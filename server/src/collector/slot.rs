//! One instance's place on a collector shard: its reports of the last window, the probes that sent
//! them, and the limits that guard it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use shared::instances::{Limits, ProbeInfo, Usage};
use shared::topology::NodeSummary;

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

pub struct Slot {
    pub limits: Limits,
    reports: VecDeque<(i64, Arc<Report>)>,
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
    renders: HashMap<String, Arc<Summaries>>,
    renders_generation: u64,
}

/// A view's nodes, summarised, by id.
pub type Summaries = BTreeMap<String, NodeSummary>;

/// Renders kept per instance (views × option sets in use); beyond this, new ones are not kept.
const MAX_RENDERS: usize = 64;

/// What a reader needs to render the window: the cached merge if it is current, else the reports.
pub enum Snapshot {
    /// The window's generation and its cached merge.
    Merged(u64, Arc<Report>),
    Window(u64, Vec<Arc<Report>>),
}

impl Slot {
    pub fn new(limits: Limits) -> Self {
        Slot {
            limits,
            reports: VecDeque::new(),
            probes: BTreeMap::new(),
            tokens: limits.max_reports_per_second as f64,
            refilled_ms: 0,
            received: 0,
            refused: BTreeMap::new(),
            flags: super::shard::Flags::default(),
            generation: 0,
            merged: None,
            renders: HashMap::new(),
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
        self.probes.insert(probe.id.clone(), probe);
        self.reports.push_back((now_ms, Arc::new(report)));
        self.generation += 1;
        self.prune(now_ms);
        first
    }

    fn prune(&mut self, now_ms: i64) {
        while self
            .reports
            .front()
            .is_some_and(|(at, _)| now_ms - at > WINDOW_MS)
        {
            self.reports.pop_front();
            self.generation += 1;
        }
    }

    /// The window's merge if one is cached for its current contents, else the reports to merge.
    pub fn snapshot(&mut self, now_ms: i64) -> Snapshot {
        self.prune(now_ms);
        match &self.merged {
            Some((generation, merged)) if *generation == self.generation => {
                Snapshot::Merged(*generation, merged.clone())
            }
            _ => Snapshot::Window(
                self.generation,
                self.reports.iter().map(|(_, r)| r.clone()).collect(),
            ),
        }
    }

    /// A render of the window at `generation` under `key` (view and query), if one was kept.
    pub fn cached_render(&self, generation: u64, key: &str) -> Option<Arc<Summaries>> {
        if generation != self.generation || generation != self.renders_generation {
            return None;
        }
        self.renders.get(key).cloned()
    }

    /// Keeps a render of the window as it was at `generation`.
    pub fn cache_render(&mut self, generation: u64, key: String, summaries: Arc<Summaries>) {
        if generation != self.generation {
            return;
        }
        if self.renders_generation != generation {
            self.renders.clear();
            self.renders_generation = generation;
        }
        if self.renders.len() < MAX_RENDERS {
            self.renders.insert(key, summaries);
        }
    }

    /// Keeps a merge of the window as it was at `generation`.
    pub fn cache_merged(&mut self, generation: u64, merged: Arc<Report>) {
        if generation == self.generation {
            self.merged = Some((generation, merged));
        }
    }

    /// The reports of the current window, oldest first.
    pub fn window(&mut self, now_ms: i64) -> Vec<Arc<Report>> {
        self.prune(now_ms);
        self.reports.iter().map(|(_, r)| r.clone()).collect()
    }

    pub fn usage(&mut self, now_ms: i64) -> Usage {
        self.prune(now_ms);
        self.probes
            .retain(|_, p| now_ms - p.last_seen < PROBE_TTL_MS);
        Usage {
            probes: self.probes.values().cloned().collect(),
            reports_in_window: self.reports.len() as u64,
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

    #[test]
    fn the_merge_is_cached_until_the_window_changes() {
        let mut slot = Slot::new(limits(10, 100));
        slot.accept(probe("a", 0), Report::default(), 1_000);
        let Snapshot::Window(generation, reports) = slot.snapshot(1_000) else {
            panic!("nothing is cached yet");
        };
        assert_eq!(reports.len(), 1);
        slot.cache_merged(
            generation,
            Arc::new(Report::merge_all(reports.iter().map(|r| r.as_ref()))),
        );
        assert!(matches!(slot.snapshot(2_000), Snapshot::Merged(..)));
        // A new report, or an old one leaving the window, makes the cached merge stale.
        slot.accept(probe("a", 0), Report::default(), 3_000);
        assert!(matches!(slot.snapshot(3_000), Snapshot::Window(_, _)));
        let Snapshot::Window(generation, reports) = slot.snapshot(3_000) else {
            unreachable!()
        };
        slot.cache_merged(
            generation,
            Arc::new(Report::merge_all(reports.iter().map(|r| r.as_ref()))),
        );
        assert!(matches!(slot.snapshot(3_000), Snapshot::Merged(..)));
        assert!(matches!(slot.snapshot(16_500), Snapshot::Window(_, ref w) if w.len() == 1));
        // Renders are kept for the generation they were made from, and dropped when it changes.
        let Snapshot::Window(generation, _) = slot.snapshot(16_500) else {
            unreachable!()
        };
        slot.cache_render(generation, "hosts?".into(), Arc::new(Summaries::new()));
        assert!(slot.cached_render(generation, "hosts?").is_some());
        assert!(slot.cached_render(generation, "processes?").is_none());
        slot.accept(probe("a", 0), Report::default(), 17_000);
        assert!(slot.cached_render(generation, "hosts?").is_none());
        // A merge computed for an older generation is not kept.
        slot.cache_merged(generation, Arc::new(Report::default()));
        assert!(matches!(slot.snapshot(16_500), Snapshot::Window(_, _)));
    }
}
