//! One probe's reports of the window, folded into one report as they arrive.
//!
//! Keeping every report of the 15 s window decoded made memory grow with the report rate, and made
//! every read merge them again. Here each report is folded into one state per probe when it arrives,
//! and every part of that state (a node, a set member, an edge, a latest value, a metric sample)
//! remembers the newest *bucket* that carried it. A bucket is what one probe sent within one
//! quantum of time (one report at Scope's pace). When a bucket leaves the window, what only it and
//! older buckets carried goes with it. Memory follows the size of the probe's system, not how often
//! it reports.
//!
//! The result is exactly the merge of the window's buckets in the order they arrived
//! (`Report::merge_plain`, scope-protocol.md §2 "Merging"), which the tests check against the
//! plain merge: union for sets, edges and parents; the newest timestamp for latest values (a later
//! bucket wins a tie); samples by date with the later bucket's value; templates and the report's
//! header folded bucket by bucket. Latest values keep, per key, every value that a later bucket has
//! not outdated (almost always just one), so that when a newer value's bucket leaves, the value that
//! was behind it comes back as the plain merge would give it.

use std::collections::{BTreeMap, VecDeque};
use std::mem::take;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::MapAccess;
use smallvec::SmallVec;

use super::bounded::BudgetLimits;
use super::decode::{self, DecodeError, Format};
use super::footprint::{BTREE_OVERHEAD, Footprint};
use super::keyed::{KeyedMap, find_from, merge_sorted};
use super::name::Name;
use super::report::{
    Latest, LatestEntry, Metric, Metrics, Node, Report, Sample, Shared, StringSets, Time, Topology,
};
use super::wire::{
    Few, List, NodeByNode, NodeMaps, NodeMapsDrain, NodeSink, ReportSeed, Room, Text, TopologySink,
    WireLatest, WireMetric, WireNode, WireReport, WireSet,
};

/// A bucket's number within its probe's window; they only grow.
type Seq = u32;

/// What one bucket says for the report as a whole (its reports' header fields, folded).
#[derive(Debug, Clone, Default, PartialEq)]
struct Header {
    ts: Time,
    window: i64,
    shortcut: bool,
    id: String,
    dns: serde_json::Value,
    plugins: serde_json::Value,
}

impl Header {
    fn of(report: &mut WireReport<'_>) -> Header {
        Header {
            ts: report.ts,
            window: report.window,
            shortcut: report.shortcut,
            id: std::mem::take(&mut report.id).into_owned(),
            dns: report.dns.take(),
            plugins: report.plugins.take(),
        }
    }

    /// `Report::merge`'s rules for the header.
    fn merge(&mut self, other: &Header) {
        if self.ts == Time::ZERO || (other.ts != Time::ZERO && other.ts < self.ts) {
            self.ts = other.ts;
        }
        self.window = self.window.saturating_add(other.window);
        self.shortcut |= other.shortcut;
        if self.id.is_empty() {
            self.id.clone_from(&other.id);
        }
        if self.dns.is_null() {
            self.dns = other.dns.clone();
        }
        if self.plugins.is_null() {
            self.plugins = other.plugins.clone();
        }
    }
}

#[derive(Debug)]
struct Bucket {
    seq: Seq,
    quantum: i64,
    /// When its newest report arrived: the bucket leaves the window with it.
    last_at: i64,
    reports: u64,
    header: Header,
}

/// One probe's window, folded.
#[derive(Debug, Default)]
pub struct FoldedWindow {
    buckets: VecDeque<Bucket>,
    next_seq: Seq,
    topologies: BTreeMap<String, FoldedTopology>,
    /// The newest bucket [`FoldedWindow::note_expiry`] saw leave the window.
    noted_expired: Option<Seq>,
}

#[derive(Debug, Default)]
struct FoldedTopology {
    /// The newest bucket that carried the topology at all.
    seq: Seq,
    /// Each bucket's shape, labels and templates (a topology without its nodes), oldest first;
    /// equal ones shared.
    heads: Vec<(Seq, Arc<Topology>)>,
    nodes: BTreeMap<Name, FoldedNode>,
    /// The heap bytes of `nodes`' keys and nodes, kept up to date as they change: the part's
    /// footprint after every report without walking every node again.
    nodes_heap: usize,
}

impl FoldedTopology {
    fn add_head(&mut self, seq: Seq, head: Topology) {
        match self.heads.last_mut() {
            Some((last, mine)) if *last == seq => Arc::make_mut(mine).merge(&head),
            Some((_, mine)) if **mine == head => {
                let shared = mine.clone();
                self.heads.push((seq, shared));
            }
            _ => self.heads.push((seq, Arc::new(head))),
        }
    }

    /// `oldest`: the oldest bucket in the window.
    /// `maps`: the node's maps' entries are the next.
    fn add_node<'a>(
        &mut self,
        (seq, oldest): (Seq, Seq),
        id: Text<'a>,
        node: &mut WireNode<'a>,
        maps: &mut NodeMapsDrain<'_, 'a>,
    ) {
        match self.nodes.get_mut(id.as_str()) {
            Some(known) => {
                let before = known.bytes;
                known.add((seq, oldest), None, node, maps);
                known.bytes = known.heap_bytes();
                self.nodes_heap = self.nodes_heap - before + known.bytes;
            }
            None => {
                let key = Name::new(id.as_str());
                let mut new = FoldedNode {
                    oldest_tag: seq,
                    ..FoldedNode::default()
                };
                new.add((seq, oldest), Some(&key), node, maps);
                new.bytes = new.heap_bytes();
                self.nodes_heap += key.heap_bytes() + new.bytes;
                self.nodes.insert(key, new);
            }
        }
    }

    /// Lets go of what no bucket from `oldest` on carried.
    fn expire(&mut self, oldest: Seq) {
        self.heads.retain(|(seq, _)| *seq >= oldest);
        let mut heap = self.nodes_heap;
        self.nodes.retain(|key, node| {
            let before = node.bytes;
            if node.expire(oldest) {
                heap = heap - before + node.bytes;
                true
            } else {
                heap -= key.heap_bytes() + before;
                false
            }
        });
        self.nodes_heap = heap;
    }
}

/// A report's topologies folded into a window as they are decoded (bucket `seq`).
struct FoldingSink<'w> {
    window: &'w mut FoldedWindow,
    seq: Seq,
}

impl<'a> TopologySink<'a> for FoldingSink<'_> {
    fn topology<A: MapAccess<'a>>(&mut self, name: Text<'a>, map: &mut A) -> Result<(), A::Error> {
        let (seq, oldest) = (self.seq, self.window.oldest_seq());
        let folded = self.window.topology(name.as_str(), seq);
        let mut nodes = FoldingNodes {
            folded,
            seq: (seq, oldest),
            node: Default::default(),
        };
        let (head, ..) = map
            .next_value_seed(NodeByNode(&mut nodes, NodeMaps::default()))?
            .split();
        nodes.folded.add_head(seq, head);
        Ok(())
    }
}

struct FoldingNodes<'t, 'a> {
    folded: &'t mut FoldedTopology,
    /// The bucket folded into, and the window's oldest.
    seq: (Seq, Seq),
    /// The node being decoded, and its id.
    node: (Text<'a>, WireNode<'a>),
}

impl<'a> NodeSink<'a> for FoldingNodes<'_, 'a> {
    fn blank(&mut self, id: Text<'a>) -> &mut WireNode<'a> {
        self.node = (id, WireNode::default());
        &mut self.node.1
    }
    /// Its maps' entries are all that is left in `maps`: taken, nothing is kept for the next.
    fn node(&mut self, maps: &mut NodeMaps<'a>) {
        let (id, node) = &mut self.node;
        let id = take(id);
        self.folded.add_node(self.seq, id, node, &mut maps.drain());
    }
}

/// Values of a keep-the-first field (a node's id and topology): runs of equal non-empty values,
/// each with the newest bucket that carried it. The first run still in the window is the value.
#[derive(Debug, Default)]
struct FirstValue(Vec<(Seq, Name)>);

impl FirstValue {
    /// `name` makes the kept value from a new one.
    fn add(&mut self, seq: Seq, value: Text<'_>, name: impl FnOnce(&str) -> Name) {
        if value.is_empty() {
            return;
        }
        match self.0.last_mut() {
            Some((last, v)) if *v == value.as_str() => *last = seq,
            _ => self.0.push((seq, name(value.as_str()))),
        }
    }

    /// The oldest bucket left ([`Seq::MAX`] if none).
    fn expire(&mut self, oldest: Seq) -> Seq {
        self.0.retain(|(seq, _)| *seq >= oldest);
        oldest_of(self.0.iter().map(|(seq, _)| *seq))
    }

    fn value(&self) -> Name {
        self.0.first().map(|(_, v)| v.clone()).unwrap_or_default()
    }
}

/// A set of names (a set's members, edges), sorted, each with the newest bucket that carried it.
#[derive(Debug, Default)]
struct TaggedSet(Vec<(Name, Seq)>);

impl TaggedSet {
    /// Members already known are tagged in place; otherwise the newcomers are sorted and the two
    /// sorted lists merged in one pass (inserting them one by one would cost the square of a large
    /// set's size).
    fn add(&mut self, seq: Seq, Few(mut items): Few<Text<'_>>) {
        if items.is_empty() {
            return;
        }
        // Mostly members already known (a probe reports the same sets each time): tagged in place,
        // each looked for first where the one before was (they mostly come sorted).
        let mut all_known = true;
        let mut hint = 0;
        for item in &items {
            match find_from(&self.0, item.as_str(), hint) {
                Ok(at) => {
                    self.0[at].1 = seq;
                    hint = at + 1;
                }
                Err(_) => all_known = false,
            }
        }
        if all_known {
            return;
        }
        items.sort_unstable();
        items.dedup();
        // A member already known is tagged with this bucket, now its newest.
        self.0 = merge_sorted(
            std::mem::take(&mut self.0),
            items,
            |(v, _), item| v.as_str().cmp(item.as_str()),
            |_, item| (Name::new(item.as_str()), seq),
        );
    }

    /// The oldest bucket left ([`Seq::MAX`] if none).
    fn expire(&mut self, oldest: Seq) -> Seq {
        self.0.retain(|(_, seq)| *seq >= oldest);
        if self.0.capacity() > 2 * self.0.len() + 4 {
            self.0.shrink_to_fit();
        }
        oldest_of(self.0.iter().map(|(_, seq)| *seq))
    }

    fn values(&self) -> Vec<Name> {
        self.0.iter().map(|(v, _)| v.clone()).collect()
    }
}

/// Named sets (a node's `sets` and `parents`): a name stays while a bucket in the window had it,
/// even with no members (the plain merge keeps such a name with an empty list).
#[derive(Debug, Default)]
struct TaggedSets(KeyedMap<(Seq, TaggedSet)>);

impl TaggedSets {
    fn add<'a>(&mut self, seq: Seq, sets: impl Iterator<Item = WireSet<'a>>) {
        self.0.fold(
            sets,
            |(last, set), items| {
                *last = seq;
                set.add(seq, items);
            },
            |items| {
                let mut set = TaggedSet::default();
                set.add(seq, items);
                (seq, set)
            },
        );
    }

    /// The oldest bucket left ([`Seq::MAX`] if none).
    fn expire(&mut self, oldest: Seq) -> Seq {
        let mut left = Seq::MAX;
        self.0.retain(|_, (seq, set)| {
            left = left.min(set.expire(oldest));
            let kept = *seq >= oldest;
            if kept {
                left = left.min(*seq);
            }
            kept
        });
        self.0.shrink();
        left
    }

    fn values(&self) -> StringSets {
        self.0
            .iter()
            .map(|(name, (_, set))| (name.clone(), set.values()))
            .collect()
    }
}

/// One latest key's values that a later bucket has not outdated, oldest first: timestamps strictly
/// fall along it, so the first is the plain merge's winner (the newest timestamp, the later bucket
/// on a tie), and when its bucket leaves, the next is.
#[derive(Debug)]
struct LatestValues {
    first: (Seq, LatestEntry),
    rest: Vec<(Seq, LatestEntry)>,
}

impl LatestValues {
    fn new(seq: Seq, entry: LatestEntry) -> LatestValues {
        LatestValues {
            first: (seq, entry),
            rest: Vec::new(),
        }
    }

    fn add(&mut self, seq: Seq, WireLatest { timestamp, value }: WireLatest<'_>) {
        while self
            .rest
            .last()
            .is_some_and(|(_, e)| e.timestamp <= timestamp)
        {
            self.rest.pop();
        }
        if self.rest.is_empty() && self.first.1.timestamp <= timestamp {
            // Mostly the value it had, with a newer time: nothing to copy.
            let first = &mut self.first;
            first.0 = seq;
            first.1.timestamp = timestamp;
            if first.1.value != value.as_str() {
                first.1.value = Name::new(value.as_str());
            }
        } else {
            self.rest.push((seq, owned_entry(timestamp, value)));
        }
    }

    /// The oldest bucket left (the first value's: the rest came later), none once none is left.
    fn expire(&mut self, oldest: Seq) -> Option<Seq> {
        if self.first.0 >= oldest {
            return Some(self.first.0);
        }
        let gone = self
            .rest
            .iter()
            .take_while(|(seq, _)| *seq < oldest)
            .count();
        let mut kept = self.rest.split_off(gone);
        if kept.is_empty() {
            return None;
        }
        self.first = kept.remove(0);
        self.rest = kept;
        Some(self.first.0)
    }
}

fn owned_entry(timestamp: Time, value: Text<'_>) -> LatestEntry {
    LatestEntry {
        timestamp,
        value: Name::new(value.as_str()),
    }
}

/// Which of a metric's samples a materialised window keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Samples {
    /// Every sample in the window: node details draw them.
    All,
    /// The newest only, which is all a view shows of a metric (its last value; min and max are
    /// kept apart from the samples). At a burst's rate a window holds hundreds of samples per
    /// metric, and copying them was most of a merge.
    Last,
}

/// A metric's samples by date (with the newest bucket that carried each, and that bucket's
/// value), and each bucket's min and max, to fold in order as `Metric::merge` does. Unlike the
/// rest of a node, its samples and bounds may hold some of buckets already gone (a node whose
/// other parts are all newer is not walked when a bucket leaves): those are let go of when the
/// metric comes again, and passed over when it is read.
#[derive(Debug, Default)]
struct FoldedMetric {
    seq: Seq,
    /// By date: (date, bucket, value).
    samples: Vec<(Time, Seq, f64)>,
    /// Per bucket: (bucket, min, max, had samples).
    bounds: Vec<(Seq, f64, f64, bool)>,
}

impl FoldedMetric {
    /// A metric of a report of bucket `seq`: the bucket's bounds are its reports' metrics merged
    /// (a bucket's first metric, merged into the empty one, is taken as it came).
    fn add(&mut self, (seq, oldest): (Seq, Seq), metric: WireMetric) {
        self.forget_before(oldest);
        self.seq = seq;
        let has_samples = !metric.samples.0.is_empty();
        if self.bounds.last().is_none_or(|(last, ..)| *last != seq) {
            self.bounds.push((seq, 0.0, 0.0, false));
        }
        if let Some((_, min, max, had)) = self.bounds.last_mut() {
            fold_bounds((min, max), *had, has_samples, (metric.min, metric.max));
            *had |= has_samples;
        }
        self.add_samples(seq, metric.samples.0);
    }

    /// Samples by date, a later one winning a date that comes again. Mostly newer than all kept,
    /// so appended; otherwise sorted and merged in one pass.
    fn add_samples(&mut self, seq: Seq, mut samples: SmallVec<[Sample; 2]>) {
        if samples.is_empty() {
            return;
        }
        if !samples.is_sorted_by(|a, b| a.date < b.date) {
            samples.reverse();
            // Stable, on the reversed list: of equal dates the last that came is first.
            samples.sort_by_key(|s| s.date);
            samples.dedup_by_key(|s| s.date);
        }
        let first = samples[0].date;
        if self.samples.last().is_none_or(|(date, ..)| *date < first) {
            self.samples
                .extend(samples.into_iter().map(|s| (s.date, seq, s.value)));
            return;
        }
        self.samples = merge_sorted(
            std::mem::take(&mut self.samples),
            samples,
            |(d, ..), s| d.cmp(&s.date),
            |_, s| (s.date, seq, s.value),
        );
    }

    fn expire(&mut self, oldest: Seq) -> bool {
        self.forget_before(oldest);
        self.seq >= oldest
    }

    /// Lets go of the samples and bounds of buckets before `oldest`.
    fn forget_before(&mut self, oldest: Seq) {
        if self.bounds.first().is_some_and(|(seq, ..)| *seq < oldest) {
            self.samples.retain(|(_, seq, _)| *seq >= oldest);
            self.bounds.retain(|(seq, ..)| *seq >= oldest);
        }
    }

    /// The bucket-by-bucket merge from an empty metric of the buckets from `oldest` on, as
    /// `Report::merge_plain` makes it, with the `samples` asked for.
    fn value(&self, samples: Samples, oldest: Seq) -> Metric {
        let mut metric = Metric::default();
        let mut had = false;
        for (_, min, max, has_samples) in self.bounds.iter().filter(|(seq, ..)| *seq >= oldest) {
            fold_bounds(
                (&mut metric.min, &mut metric.max),
                had,
                *has_samples,
                (*min, *max),
            );
            had |= *has_samples;
        }
        let mut kept = self.samples.iter().filter(|(_, seq, _)| *seq >= oldest);
        let sample = |(date, _, value): &(Time, Seq, f64)| Sample {
            date: *date,
            value: *value,
        };
        metric.samples = match samples {
            Samples::All => kept.map(sample).collect(),
            Samples::Last => kept.next_back().map(sample).into_iter().collect(),
        };
        metric
    }
}

/// `Metric::merge`'s rule for min and max (Scope's): a metric without samples takes the other's
/// bounds; one with samples keeps its own against a metric without, and widens them otherwise.
fn fold_bounds(mine: (&mut f64, &mut f64), had: bool, has: bool, theirs: (f64, f64)) {
    if !had {
        (*mine.0, *mine.1) = theirs;
    } else if has {
        *mine.0 = mine.0.min(theirs.0);
        *mine.1 = mine.1.max(theirs.1);
    }
}

#[derive(Debug, Default)]
struct FoldedNode {
    /// The newest bucket that carried the node at all.
    seq: Seq,
    /// No part of the node (but its metrics' samples and bounds) is of a bucket older than this:
    /// while the window's oldest bucket is not newer, a bucket leaving takes nothing of it, and
    /// the node is not walked. Parts added later are of newer buckets, so it stays true until
    /// the next walk sets it again. A probe sending the same nodes every time has its nodes
    /// walked once every window's length of buckets instead of at every report.
    oldest_tag: Seq,
    /// Its heap bytes ([`Footprint`]) as of its last change.
    bytes: usize,
    id: FirstValue,
    topology: FirstValue,
    sets: TaggedSets,
    adjacency: TaggedSet,
    parents: TaggedSets,
    latest: KeyedMap<LatestValues>,
    metrics: KeyedMap<FoldedMetric>,
    /// Per bucket that had any: its children (rare: probes seldom send them).
    children: Vec<(Seq, Vec<Node>)>,
}

impl FoldedNode {
    /// `key`: a new node's key in its topology, which its id shares when they are the same;
    /// `oldest`: the window's oldest bucket.
    /// `maps`: the node's maps' entries are the next.
    fn add<'a>(
        &mut self,
        (seq, oldest): (Seq, Seq),
        key: Option<&Name>,
        node: &mut WireNode<'a>,
        maps: &mut NodeMapsDrain<'_, 'a>,
    ) {
        self.seq = seq;
        self.id.add(seq, take(&mut node.id), |id| match key {
            Some(key) if key == id => key.clone(),
            _ => Name::new(id),
        });
        self.topology
            .add(seq, take(&mut node.topology), Name::known);
        self.sets.add(seq, maps.sets(node.sets));
        self.adjacency.add(seq, take(&mut node.adjacency));
        self.parents.add(seq, maps.parents(node.parents));
        self.latest.fold(
            maps.latest(node.latest),
            |values, latest| values.add(seq, latest),
            |latest| LatestValues::new(seq, owned_entry(latest.timestamp, latest.value)),
        );
        self.metrics.fold(
            maps.metrics(node.metrics),
            |folded, metric| folded.add((seq, oldest), metric),
            |metric| {
                let mut folded = FoldedMetric::default();
                folded.add((seq, oldest), metric);
                folded
            },
        );
        let List(theirs) = take(&mut node.children);
        if !theirs.is_empty() {
            match self.children.last_mut() {
                Some((last, children)) if *last == seq => merge_children(children, &theirs),
                _ => self.children.push((seq, theirs)),
            }
        }
    }

    /// False once nothing of the node is left.
    fn expire(&mut self, oldest: Seq) -> bool {
        if self.seq < oldest {
            return false;
        }
        if self.oldest_tag >= oldest {
            return true;
        }
        let mut left = self
            .seq
            .min(self.id.expire(oldest))
            .min(self.topology.expire(oldest))
            .min(self.sets.expire(oldest))
            .min(self.adjacency.expire(oldest))
            .min(self.parents.expire(oldest));
        self.latest.retain(|_, values| match values.expire(oldest) {
            Some(seq) => {
                left = left.min(seq);
                true
            }
            None => false,
        });
        self.latest.shrink();
        self.metrics.retain(|_, metric| {
            let kept = metric.expire(oldest);
            if kept {
                left = left.min(metric.seq);
            }
            kept
        });
        self.metrics.shrink();
        self.children.retain(|(seq, _)| *seq >= oldest);
        left = left.min(oldest_of(self.children.iter().map(|(seq, _)| *seq)));
        self.oldest_tag = left;
        self.bytes = self.heap_bytes();
        true
    }

    /// The node as `Report::merge_plain` of the window's buckets has it (from `oldest` on), its
    /// metrics with the `samples` asked for.
    fn value(&self, samples: Samples, oldest: Seq) -> Node {
        let mut children = Vec::new();
        for (_, theirs) in &self.children {
            merge_children(&mut children, theirs);
        }
        Node {
            id: self.id.value(),
            topology: self.topology.value(),
            sets: self.sets.values().shared(),
            adjacency: self.adjacency.values(),
            latest: Latest::shared(
                self.latest
                    .iter()
                    .map(|(key, values)| (key.clone(), values.first.1.clone()))
                    .collect(),
            ),
            metrics: Metrics::shared(
                self.metrics
                    .iter()
                    .map(|(key, metric)| (key.clone(), metric.value(samples, oldest)))
                    .collect(),
            ),
            parents: self.parents.values().shared(),
            children,
        }
    }
}

/// The oldest of `seqs`, [`Seq::MAX`] if there are none.
fn oldest_of(seqs: impl Iterator<Item = Seq>) -> Seq {
    seqs.min().unwrap_or(Seq::MAX)
}

/// `Node::merge`'s rule for children: merged by id, those without one added.
fn merge_children(mine: &mut Vec<Node>, theirs: &[Node]) {
    super::merge::merge_children(mine, theirs);
}

impl Footprint for Header {
    fn heap_bytes(&self) -> usize {
        self.id.heap_bytes() + self.dns.heap_bytes() + self.plugins.heap_bytes()
    }
}

impl Footprint for FirstValue {
    fn heap_bytes(&self) -> usize {
        self.0.heap_bytes()
    }
}

impl Footprint for TaggedSet {
    fn heap_bytes(&self) -> usize {
        self.0.heap_bytes()
    }
}

impl Footprint for TaggedSets {
    fn heap_bytes(&self) -> usize {
        self.0.heap_bytes()
    }
}

impl Footprint for LatestValues {
    fn heap_bytes(&self) -> usize {
        self.first.heap_bytes() + self.rest.heap_bytes()
    }
}

impl Footprint for FoldedMetric {
    fn heap_bytes(&self) -> usize {
        self.samples.capacity() * std::mem::size_of::<(Time, Seq, f64)>()
            + self.bounds.capacity() * std::mem::size_of::<(Seq, f64, f64, bool)>()
    }
}

impl Footprint for FoldedNode {
    fn heap_bytes(&self) -> usize {
        self.id.heap_bytes()
            + self.topology.heap_bytes()
            + self.sets.heap_bytes()
            + self.adjacency.heap_bytes()
            + self.parents.heap_bytes()
            + self.latest.heap_bytes()
            + self.metrics.heap_bytes()
            + self.children.heap_bytes()
    }
}

impl Footprint for FoldedTopology {
    fn heap_bytes(&self) -> usize {
        self.heads_footprint()
            + self.nodes.len() * (std::mem::size_of::<(Name, FoldedNode)>() + BTREE_OVERHEAD)
            + self.nodes_heap
    }
}

impl FoldedTopology {
    /// The heap bytes of its heads.
    fn heads_footprint(&self) -> usize {
        let mut heads = self.heads.capacity() * std::mem::size_of::<(Seq, Arc<Topology>)>();
        // Equal heads of consecutive buckets share one topology: count it once.
        let mut last: Option<&Arc<Topology>> = None;
        for (_, head) in &self.heads {
            if !last.is_some_and(|l| Arc::ptr_eq(l, head)) {
                heads += head.heap_bytes();
            }
            last = Some(head);
        }
        heads
    }
}

impl FoldedWindow {
    /// What the part takes in memory, estimated (`footprint.rs`): grows with the distinct nodes,
    /// keys and values of the window, not with the reports that carried them. Cheap: each node's
    /// share is kept up to date as it changes.
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<FoldedWindow>()
            + self.buckets.capacity() * std::mem::size_of::<Bucket>()
            + self
                .buckets
                .iter()
                .map(|b| b.header.heap_bytes())
                .sum::<usize>()
            + self.topologies.heap_bytes()
    }

    /// [`Self::footprint`] walking every node again, which it must equal.
    #[cfg(test)]
    pub fn footprint_walked(&self) -> usize {
        let (kept, walked) = self.topologies.values().fold((0, 0), |(kept, walked), t| {
            let nodes: usize = t
                .nodes
                .iter()
                .map(|(k, n)| k.heap_bytes() + n.heap_bytes())
                .sum();
            (kept + t.nodes_heap, walked + nodes)
        });
        self.footprint() - kept + walked
    }
}

impl FoldedWindow {
    /// Folds a report that arrived at `now_ms` into the bucket of its quantum.
    pub fn accept<'de>(
        &mut self,
        report: impl Into<WireReport<'de>>,
        now_ms: i64,
        quantum_ms: i64,
    ) {
        let mut report = report.into();
        let seq = self.open_bucket(now_ms, quantum_ms, Header::of(&mut report));
        let oldest = self.oldest_seq();
        for (name, topology) in report.topologies {
            let folded = self.topology(name.as_str(), seq);
            let (head, mut nodes, mut maps) = topology.split();
            folded.add_head(seq, head);
            let mut entries = maps.drain();
            // Taken where they are (a node moved out of the list was copied).
            for (id, node) in &mut nodes {
                folded.add_node((seq, oldest), take(id), node, &mut entries);
            }
            drop(entries);
            Room { nodes, maps }.keep(name.as_str());
        }
    }

    /// [`Self::accept`] of the report encoded in `raw`, folded as it is decoded: each node as it
    /// comes, without making the whole report first (which, for reports folded one after the
    /// other, costs about as much again in memory traffic). The same window as decoding it with
    /// [`decode::parse`] and accepting that, for every report that decodes. One that does not
    /// leaves the window partly folded: meant for reports accepted before (history's), whose
    /// folder starts again without the one that fails.
    pub fn accept_encoded(
        &mut self,
        raw: &[u8],
        format: Format,
        limits: BudgetLimits,
        now_ms: i64,
        quantum_ms: i64,
    ) -> Result<(), DecodeError> {
        let seq = self.open_bucket(now_ms, quantum_ms, Header::default());
        let mut sink = FoldingSink { window: self, seq };
        let mut header = decode::parse_seed(raw, format, limits, ReportSeed(&mut sink))?;
        let header = Header::of(&mut header);
        if let Some(bucket) = self.buckets.back_mut() {
            bucket.header.merge(&header);
        }
        Ok(())
    }

    /// The bucket of `now_ms`'s quantum (a new one if the newest is of an earlier quantum), with
    /// a report and its `header` counted in.
    fn open_bucket(&mut self, now_ms: i64, quantum_ms: i64, header: Header) -> Seq {
        let quantum = now_ms.div_euclid(quantum_ms.max(1));
        match self.buckets.back_mut() {
            Some(bucket) if bucket.quantum == quantum => {
                bucket.header.merge(&header);
                bucket.last_at = now_ms;
                bucket.reports += 1;
                bucket.seq
            }
            _ => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.buckets.push_back(Bucket {
                    seq,
                    quantum,
                    last_at: now_ms,
                    reports: 1,
                    header,
                });
                seq
            }
        }
    }

    /// Topology `name`, carried by bucket `seq`.
    fn topology(&mut self, name: &str, seq: Seq) -> &mut FoldedTopology {
        if !self.topologies.contains_key(name) {
            self.topologies
                .insert(name.to_owned(), FoldedTopology::default());
        }
        let folded = self.topologies.get_mut(name).expect("inserted above");
        folded.seq = seq;
        folded
    }

    /// Lets go of buckets whose newest report is more than `window_ms` older than `now_ms`, and of
    /// what only they carried. True if any left.
    pub fn expire(&mut self, now_ms: i64, window_ms: i64) -> bool {
        let before = self.buckets.len();
        while self
            .buckets
            .front()
            .is_some_and(|b| now_ms - b.last_at > window_ms)
        {
            self.buckets.pop_front();
        }
        if self.buckets.len() == before {
            return false;
        }
        let Some(oldest) = self.buckets.front().map(|b| b.seq) else {
            self.topologies.clear();
            return true;
        };
        self.topologies.retain(|_, topology| {
            topology.expire(oldest);
            topology.seq >= oldest
        });
        true
    }

    /// The oldest bucket held (0 if none).
    fn oldest_seq(&self) -> Seq {
        self.buckets.front().map_or(0, |b| b.seq)
    }

    /// Each report topology this window holds, with its nodes' ids (sorted).
    pub fn node_ids(&self) -> impl Iterator<Item = (&str, impl ExactSizeIterator<Item = &Name>)> {
        self.topologies
            .iter()
            .map(|(topology, folded)| (topology.as_str(), folded.nodes.keys()))
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Whether a bucket left the window by `now_ms` that no earlier call saw leave: the window
    /// changed. A cheap look at the oldest buckets; letting go of them, which looks at every node, is
    /// [`FoldedWindow::expire`]'s.
    pub fn note_expiry(&mut self, now_ms: i64, window_ms: i64) -> bool {
        let newest_gone = self
            .buckets
            .iter()
            .take_while(|b| now_ms - b.last_at > window_ms)
            .last()
            .map(|b| b.seq);
        match newest_gone {
            Some(seq) if self.noted_expired.is_none_or(|noted| seq > noted) => {
                self.noted_expired = Some(seq);
                true
            }
            _ => false,
        }
    }

    /// Whether nothing is left in the window at `now_ms` (whether or not it was let go of).
    pub fn is_empty_at(&self, now_ms: i64, window_ms: i64) -> bool {
        self.buckets
            .back()
            .is_none_or(|b| now_ms - b.last_at > window_ms)
    }

    /// When the oldest report still in the window at `now_ms` arrived (whether or not older ones
    /// were let go of).
    pub fn oldest_within(&self, now_ms: i64, window_ms: i64) -> Option<i64> {
        self.buckets
            .iter()
            .find(|b| now_ms - b.last_at <= window_ms)
            .map(|b| b.last_at)
    }

    /// When the oldest report still in the window arrived.
    pub fn oldest_at(&self) -> Option<i64> {
        self.buckets.front().map(|b| b.last_at)
    }

    /// Buckets in the window.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Reports folded into the buckets still in the window at `now_ms` (whether or not older ones
    /// were let go of).
    pub fn reports_within(&self, now_ms: i64, window_ms: i64) -> u64 {
        self.buckets
            .iter()
            .filter(|b| now_ms - b.last_at <= window_ms)
            .map(|b| b.reports)
            .sum()
    }

    /// Merges this probe's part of the window into `window`, as `window.merge(&part)` would with
    /// `part` the plain merge of the probe's buckets, without making `part` first.
    pub fn merge_into(&self, window: &mut Report) {
        self.materialize().merge_into(window);
    }

    /// The part's header, topology heads and nodes as the plain merge of its buckets has them:
    /// the costly half of merging it into a window, which needs only the part (and its lock).
    pub fn materialize(&self) -> Materialized {
        self.materialize_with(Samples::All)
    }

    /// [`Self::materialize`] with the metric `samples` asked for.
    pub fn materialize_with(&self, samples: Samples) -> Materialized {
        let mut header = Header::default();
        for bucket in &self.buckets {
            header.merge(&bucket.header);
        }
        let oldest = self.oldest_seq();
        let topologies = self
            .topologies
            .iter()
            .map(|(name, folded)| {
                let mut head = Topology::default();
                for (_, theirs) in &folded.heads {
                    head.merge(theirs);
                }
                let nodes = folded
                    .nodes
                    .iter()
                    .map(|(id, node)| (id.clone(), node.value(samples, oldest)))
                    .collect();
                (name.clone(), head, nodes)
            })
            .collect();
        Materialized { header, topologies }
    }
    /// This probe's part of the window on its own: `Report::merge_plain` of its buckets.
    pub fn to_report(&self) -> Report {
        let mut report = Report::default();
        self.merge_into(&mut report);
        report
    }
}

/// A topology's name, head and nodes (by id), materialised.
type MaterializedTopology = (String, Topology, Vec<(Name, Node)>);

/// A probe's part, materialised ([`FoldedWindow::materialize`]).
pub struct Materialized {
    header: Header,
    /// By topology: its head and its nodes, by id.
    topologies: Vec<MaterializedTopology>,
}

impl Materialized {
    /// Merges the part into `window`, as `window.merge(&part)` would, taking its nodes over.
    pub fn merge_into(self, window: &mut Report) {
        let mut mine = Header {
            ts: window.ts,
            window: window.window,
            shortcut: window.shortcut,
            id: std::mem::take(&mut window.id),
            dns: window.dns.take(),
            plugins: window.plugins.take(),
        };
        mine.merge(&self.header);
        (window.ts, window.window, window.shortcut) = (mine.ts, mine.window, mine.shortcut);
        (window.id, window.dns, window.plugins) = (mine.id, mine.dns, mine.plugins);
        for (name, head, nodes) in self.topologies {
            let topology = window.topologies.entry(name).or_default();
            topology.merge(&head);
            for (id, part) in nodes {
                match topology.nodes.get_mut(&id) {
                    Some(existing) => existing.merge(&part),
                    None => {
                        topology.nodes.insert(id, part);
                    }
                }
            }
        }
    }
}

/// The window of several probes, merged in the order given (oldest part first) onto Scope's empty
/// report, as `Report::merge_window` (or, with `drop_partial`, `Report::merge_all`) would merge the
/// same reports.
pub fn merge_window<W: std::ops::Deref<Target = FoldedWindow>>(
    parts: impl IntoIterator<Item = W>,
    drop_partial: bool,
) -> Report {
    let materialized = parts.into_iter().map(|part| part.materialize()).collect();
    finish(assemble(materialized), drop_partial)
}

/// [`merge_window`] of `parts`, opened (locked and materialised) by `open` on up to `threads`
/// threads at once ([`each_on_cores`]). The window is then assembled in the parts' order, so the
/// result is the same.
pub fn merge_window_on<P: Sync>(
    parts: &[P],
    open: impl Fn(&P) -> Materialized + Sync,
    threads: usize,
    drop_partial: bool,
) -> Report {
    let materialized = each_on_cores(parts.iter().collect(), threads, open);
    finish(assemble(materialized), drop_partial)
}

/// `work` done on each of `items` by up to `threads` threads at once (this one and scoped others),
/// each taking the next item not yet taken when it is done with one, so a slow item or a slow
/// thread does not leave the others idle; what each gave, in the items' order. A panic in any is
/// resumed here.
pub fn each_on_cores<T: Send, U: Send>(
    items: Vec<T>,
    threads: usize,
    work: impl Fn(T) -> U + Sync,
) -> Vec<U> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.into_iter().map(work).collect();
    }
    let queue: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let next = AtomicUsize::new(0);
    let pull = || {
        let mut done = Vec::new();
        loop {
            let at = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = queue.get(at) else {
                return done;
            };
            let taken = item.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(taken) = taken {
                done.push((at, work(taken)));
            }
        }
    };
    let mut all = std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads).map(|_| scope.spawn(pull)).collect();
        let mut all = pull();
        for other in others {
            match other.join() {
                Ok(more) => all.extend(more),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    all.sort_unstable_by_key(|(at, _)| *at);
    all.into_iter().map(|(_, done)| done).collect()
}

/// The window of parts already materialised, in the order given (oldest part first): the cheap
/// half of [`merge_window`], for callers that materialised the parts where they were folded.
pub fn merge_materialized(parts: Vec<Materialized>, drop_partial: bool) -> Report {
    finish(assemble(parts), drop_partial)
}

/// Scope's empty report with the parts merged onto it in order, as [`Materialized::merge_into`]
/// one after the other would, but building each topology's node map at once: the parts' nodes
/// (each part's sorted by id) are sorted together (a stable sort merges the runs), a node that
/// several parts carry is merged in the parts' order, and the map is built from the sorted nodes
/// instead of by one insert each.
fn assemble(parts: Vec<Materialized>) -> Report {
    let mut window = Report::with_defaults();
    let mut nodes: BTreeMap<String, Vec<(Name, Node)>> = BTreeMap::new();
    for part in parts {
        let Materialized { header, topologies } = part;
        let only_header = Materialized {
            header,
            topologies: Vec::new(),
        };
        only_header.merge_into(&mut window);
        for (name, head, part_nodes) in topologies {
            window
                .topologies
                .entry(name.clone())
                .or_default()
                .merge(&head);
            nodes.entry(name).or_default().extend(part_nodes);
        }
    }
    for (name, mut all) in nodes {
        let topology = window.topologies.entry(name).or_default();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut merged: Vec<(Name, Node)> = Vec::with_capacity(all.len());
        for (id, node) in all {
            match merged.last_mut() {
                Some((last, existing)) if *last == id => existing.merge(&node),
                _ => match topology.nodes.remove(&id) {
                    // Not so in Scope's empty report, but merged as it would be.
                    Some(mut existing) => {
                        existing.merge(&node);
                        merged.push((id, existing));
                    }
                    // Merging into an empty node changes nothing (`Metric::merge`).
                    None => merged.push((id, node)),
                },
            }
        }
        if topology.nodes.is_empty() {
            topology.nodes = merged.into_iter().collect();
        } else {
            topology.nodes.extend(merged);
        }
    }
    window
}

fn finish(mut merged: Report, drop_partial: bool) -> Report {
    merged.upgrade_pods();
    if drop_partial {
        merged.remove_part_merged();
    }
    merged
}

#[cfg(test)]
mod tests;
