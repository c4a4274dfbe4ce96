//! Rendering: Scope's views computed from a merged report (shared scope-render.md).
//!
//! The building blocks mirror Scope's (`render/render.go`): a [`Join`] maps input nodes onto output
//! nodes and rebuilds edges through that mapping, [`reduce`] merges several renderings node by node,
//! [`filter`] drops nodes and the edges to them. Views (`views.rs`) combine them; summaries
//! (`summary.rs`), node details (`detail.rs`) and the topology list (`topologies.rs`) turn the result
//! into Scope's JSON. Everything here is pure: a report in, values out, no I/O and no clock but the
//! one passed in.

pub mod budget;
pub mod detail;
mod net;
pub mod summary;
pub mod topologies;
pub mod views;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::keyed::{SortedSet, merge_sorted};
use super::merge::{merge_latest, merge_metrics, union_sets};
use super::name::Name;
use super::report::{Latest, LatestEntry, Metrics, Node, Report, Shared, StringSets, Time};

pub const PSEUDO: &str = "pseudo";
pub const ENDPOINT: &str = "endpoint";
pub const PROCESS: &str = "process";
pub const CONTAINER: &str = "container";
pub const CONTAINER_IMAGE: &str = "container_image";
pub const POD: &str = "pod";
pub const SERVICE: &str = "service";
pub const DEPLOYMENT: &str = "deployment";
pub const DAEMON_SET: &str = "daemon_set";
pub const STATEFUL_SET: &str = "stateful_set";
pub const CRON_JOB: &str = "cron_job";
pub const JOB: &str = "job";
pub const HOST: &str = "host";
pub const OVERLAY: &str = "overlay";
pub const ECS_TASK: &str = "ecs_task";
pub const ECS_SERVICE: &str = "ecs_service";
pub const SWARM_SERVICE: &str = "swarm_service";
pub const PERSISTENT_VOLUME: &str = "persistent_volume";
pub const PERSISTENT_VOLUME_CLAIM: &str = "persistent_volume_claim";
pub const STORAGE_CLASS: &str = "storage_class";
pub const VOLUME_SNAPSHOT: &str = "volume_snapshot";
pub const VOLUME_SNAPSHOT_DATA: &str = "volume_snapshot_data";

pub const INCOMING_INTERNET: &str = "in-theinternet";
pub const OUTGOING_INTERNET: &str = "out-theinternet";
pub const SERVICE_PREFIX: &str = "service-";
pub const UNCONTAINED_PREFIX: &str = "pseudo:uncontained:";
pub const UNMANAGED_PREFIX: &str = "pseudo:unmanaged:";

/// A node's internal topology name → the report's wire name for that topology.
pub fn wire_name(topology: &str) -> Option<&'static str> {
    Some(match topology {
        ENDPOINT => "Endpoint",
        PROCESS => "Process",
        CONTAINER => "Container",
        CONTAINER_IMAGE => "ContainerImage",
        POD => "Pod",
        SERVICE => "Service",
        DEPLOYMENT => "Deployment",
        "replica_set" => "ReplicaSet",
        DAEMON_SET => "DaemonSet",
        STATEFUL_SET => "StatefulSet",
        CRON_JOB => "CronJob",
        "namespace" => "Namespace",
        HOST => "Host",
        OVERLAY => "Overlay",
        ECS_TASK => "ECSTask",
        ECS_SERVICE => "ECSService",
        SWARM_SERVICE => "SwarmService",
        PERSISTENT_VOLUME => "PersistentVolume",
        PERSISTENT_VOLUME_CLAIM => "PersistentVolumeClaim",
        STORAGE_CLASS => "StorageClass",
        VOLUME_SNAPSHOT => "VolumeSnapshot",
        VOLUME_SNAPSHOT_DATA => "VolumeSnapshotData",
        JOB => "Job",
        _ => return None,
    })
}

/// A node as renderers see it: a report node plus counters (children per topology) and children
/// shared by reference, so that grouping a node does not copy what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct RNode {
    pub id: Name,
    pub topology: Name,
    /// Shared with the report node it was made from until a render changes them.
    pub latest: Arc<Latest>,
    pub sets: Arc<StringSets>,
    pub parents: Arc<StringSets>,
    pub metrics: Arc<Metrics>,
    /// Scope keeps these in `latest` as `count_<topology>`; they are summed when nodes merge.
    pub counters: BTreeMap<Name, u64>,
    pub adjacency: SortedSet,
    /// Shared with the nodes this one was copied from (a filter that drops edges copies a node)
    /// until a render adds to them; most nodes have none and share one empty map.
    pub children: Arc<Children>,
}

pub type Nodes = BTreeMap<Name, Arc<RNode>>;

/// A node's children by id.
pub type Children = BTreeMap<Name, Arc<RNode>>;

/// The empty children map every node without children shares.
fn no_children() -> Arc<Children> {
    static EMPTY: std::sync::LazyLock<Arc<Children>> = std::sync::LazyLock::new(Arc::default);
    Arc::clone(&EMPTY)
}

impl Default for RNode {
    fn default() -> Self {
        RNode {
            id: Name::default(),
            topology: Name::default(),
            latest: Latest::new().shared(),
            sets: StringSets::new().shared(),
            parents: StringSets::new().shared(),
            metrics: Metrics::new().shared(),
            counters: BTreeMap::new(),
            adjacency: SortedSet::new(),
            children: no_children(),
        }
    }
}

impl RNode {
    pub fn bare(id: impl Into<Name>, topology: &str) -> RNode {
        RNode {
            id: id.into(),
            topology: Name::known(topology),
            ..RNode::default()
        }
    }

    pub fn from_report(node: &Node) -> RNode {
        RNode {
            adjacency: node.adjacency.iter().cloned().collect(),
            children: if node.children.is_empty() {
                no_children()
            } else {
                Arc::new(
                    node.children
                        .iter()
                        .filter(|c| !c.id.is_empty())
                        .map(|c| {
                            let child = RNode::from_report(c);
                            (child.id.clone(), Arc::new(child))
                        })
                        .collect(),
                )
            },
            ..RNode::labelled(node)
        }
    }

    /// A report node's maps without its edges and children: what labels and metadata are made
    /// from.
    pub fn labelled(node: &Node) -> RNode {
        RNode {
            id: node.id.clone(),
            topology: node.topology.clone(),
            latest: Arc::clone(&node.latest),
            sets: Arc::clone(&node.sets),
            parents: Arc::clone(&node.parents),
            metrics: Arc::clone(&node.metrics),
            counters: BTreeMap::new(),
            adjacency: SortedSet::new(),
            children: no_children(),
        }
    }

    pub fn children_mut(&mut self) -> &mut Children {
        Arc::make_mut(&mut self.children)
    }

    pub fn sets_mut(&mut self) -> &mut StringSets {
        Arc::make_mut(&mut self.sets)
    }

    pub fn latest_mut(&mut self) -> &mut Latest {
        Arc::make_mut(&mut self.latest)
    }

    pub fn metrics_mut(&mut self) -> &mut Metrics {
        Arc::make_mut(&mut self.metrics)
    }

    pub fn parents_mut(&mut self) -> &mut StringSets {
        Arc::make_mut(&mut self.parents)
    }

    pub fn latest(&self, key: &str) -> Option<&str> {
        self.latest.get(key).map(|l| l.value.as_str())
    }

    pub fn set_latest(&mut self, key: &str, value: &str, at: Time) {
        self.latest_mut()
            .insert(key.to_owned(), LatestEntry::new(value, at));
    }

    pub fn parents(&self, topology: &str) -> &[Name] {
        self.parents.get(topology).map_or(&[], |v| v.as_slice())
    }

    pub fn is_pseudo(&self) -> bool {
        self.topology == PSEUDO
    }

    /// The host a node is on: its `host_node_id` without the `;<host>` suffix.
    pub fn host_id(&self) -> &str {
        self.latest("host_node_id")
            .map(|h| h.split(';').next().unwrap_or(h))
            .unwrap_or("")
    }

    /// Scope's node merge: newest latest values win, sets, parents, adjacency and children are
    /// unioned, metric samples merged by time; counters add up.
    pub fn merge(&mut self, other: &RNode) {
        budget::spend();
        if self.topology.is_empty() {
            self.topology = other.topology.clone();
        }
        // A shared map is copied only when the other node adds to it.
        merge_latest(&mut self.latest, &other.latest);
        union_sets(&mut self.sets, &other.sets);
        union_sets(&mut self.parents, &other.parents);
        merge_metrics(&mut self.metrics, &other.metrics);
        for (k, v) in &other.counters {
            *self.counters.entry(k.clone()).or_default() += v;
        }
        self.adjacency.extend(other.adjacency.iter().cloned());
        self.adopt_children_of(other);
    }

    /// `other`'s children this node does not have yet (its own kept on a tie); shared as they
    /// are while it has none.
    fn adopt_children_of(&mut self, other: &RNode) {
        if self.children.is_empty() {
            self.children = Arc::clone(&other.children);
        } else if !other.children.is_empty() && !Arc::ptr_eq(&self.children, &other.children) {
            union_into(self.children_mut(), &other.children);
        }
    }

    pub fn has_children_of(&self, topology: &str) -> bool {
        self.children.values().any(|c| c.topology == topology)
    }
}

/// Adds to `mine` the entries of `other` it lacks, keeping its own on a tie. A few are inserted
/// one by one; more are merged with `mine`'s in one ordered pass, and the map is built once from
/// the sorted result: inserting each costs a descent of the tree with an id comparison at every
/// level (grouping images by name merges every host's image node, children and all, into one).
fn union_into<V: Clone>(mine: &mut BTreeMap<Name, V>, other: &BTreeMap<Name, V>) {
    if other.len() <= 2 || other.len() * 8 < mine.len() {
        for (k, v) in other {
            mine.entry(k.clone()).or_insert_with(|| v.clone());
        }
        return;
    }
    let merged = merge_sorted(
        std::mem::take(mine).into_iter().collect(),
        other,
        |(k, _), (id, _)| k.cmp(id),
        |same, (id, v)| same.unwrap_or_else(|| (id.clone(), v.clone())),
    );
    *mine = merged.into_iter().collect();
}

/// The output of a renderer: nodes by id and how many were filtered out since the last join.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub nodes: Nodes,
    pub filtered: usize,
}

/// Outputs one input node maps to at most (a container to its pods, a pod to its services: a few).
pub const MAX_OUTPUTS: usize = 64;
/// Edges one join makes at most: a hostile node with many parents and many edges would otherwise
/// make their product.
pub const MAX_JOIN_EDGES: usize = 2_000_000;

/// Scope's `joinResults`: output nodes under construction and which output ids each input id went to.
#[derive(Default)]
pub struct Join {
    nodes: BTreeMap<Name, RNode>,
    mapped: HashMap<Name, Vec<Name>>,
    /// Mapped nodes for an output that already existed, merged into it in [`Join::result`]: many
    /// inputs of one output merged one by one would copy the growing output each time.
    to_merge: HashMap<Name, Vec<RNode>>,
}

impl Join {
    pub fn new() -> Join {
        Join::default()
    }

    /// Starts from `seed`'s nodes (with their own edges cleared: edges come only from the mapping).
    /// A node's id is its key itself, so that the mapping records one copy of each output's name.
    pub fn seeded(seed: &Nodes) -> Join {
        Join {
            nodes: seed
                .iter()
                .map(|(id, n)| {
                    let mut n = RNode::clone(n);
                    n.adjacency.clear();
                    if n.id == *id {
                        n.id = id.clone();
                    }
                    (id.clone(), n)
                })
                .collect(),
            ..Join::default()
        }
    }

    /// Records that input `from` maps to output `to`. Most inputs map to one output; repeats are
    /// dropped once, in [`Join::result`] (checking each time cost the square of a node's parents),
    /// and an input maps to at most [`MAX_OUTPUTS`] outputs.
    fn map_to(&mut self, from: &Name, to: Name) {
        let outs = self.mapped.entry(from.clone()).or_default();
        if outs.last().is_some_and(|o| *o == to) {
            return;
        }
        if outs.len() < MAX_OUTPUTS * 2 {
            outs.push(to);
        } else {
            outs.sort_unstable();
            outs.dedup();
            outs.truncate(MAX_OUTPUTS);
            if outs.len() < MAX_OUTPUTS && !outs.contains(&to) {
                outs.push(to);
            }
        }
    }

    fn output(&mut self, id: &str, topology: &str) -> &mut RNode {
        budget::spend();
        if self.nodes.contains_key(id) {
            return self.nodes.get_mut(id).expect("present");
        }
        let id = Name::from(id);
        self.nodes
            .entry(id.clone())
            .or_insert_with(|| RNode::bare(id, topology))
    }

    /// Adds `child` to output node `id` (created bare if missing) without recording a mapping:
    /// the child's edges do not become the output's.
    /// The output's id.
    pub fn add_unmapped_child(&mut self, child: &Arc<RNode>, id: &str, topology: &str) -> Name {
        let out = self.output(id, topology);
        adopt(out, child);
        out.id.clone()
    }

    pub fn add_child(&mut self, child: &Arc<RNode>, id: &str, topology: &str) {
        let out = self.add_unmapped_child(child, id, topology);
        self.map_to(&child.id, out);
    }

    /// [`Join::add_child`], and the child's own children become the output's too.
    pub fn add_child_and_children(&mut self, child: &Arc<RNode>, id: &str, topology: &str) {
        let out = self.output(id, topology);
        adopt(out, child);
        if !child.children.is_empty() {
            union_into(out.children_mut(), &child.children);
        }
        let out_id = out.id.clone();
        self.map_to(&child.id, out_id);
    }

    pub fn pass_through(&mut self, node: &Arc<RNode>) {
        let mut n = RNode::clone(node);
        n.adjacency.clear();
        self.add_mapped(&node.id, n);
    }

    /// Scope's `Map`: `out` (a rewritten input node) merged into the output node with its id.
    /// Every input mapped onto an existing output records that output's key, not the id the
    /// input brought (its own copy of the same text): [`Join::result`] groups edges by address.
    pub fn add_mapped(&mut self, from: &Name, mut out: RNode) {
        out.adjacency.clear();
        let id = match self.nodes.get_key_value(&out.id) {
            Some((key, _)) => {
                let key = key.clone();
                self.to_merge.entry(key.clone()).or_default().push(out);
                key
            }
            None => {
                let id = out.id.clone();
                self.nodes.insert(id.clone(), out);
                id
            }
        };
        self.map_to(from, id);
    }

    /// Rebuilds edges: each mapped input node's edges, through the mapping of both ends.
    /// A join resets the filtered count.
    pub fn result(self, input: &Nodes) -> Rendered {
        let Join {
            mut nodes,
            mut mapped,
            to_merge,
        } = self;
        for (id, more) in to_merge {
            if let Some(node) = nodes.get_mut(&id) {
                merge_into(node, more);
            }
        }
        for outs in mapped.values_mut() {
            if outs.len() > 1 {
                outs.sort_unstable();
                outs.dedup();
                outs.truncate(MAX_OUTPUTS);
            }
        }
        // Many input edges map onto the same output edge (every connection between two
        // containers): collected by reference, then each output edge and node is visited once.
        let mut edges: Vec<(&Name, &Name)> = Vec::new();
        'inputs: for (id, node) in input {
            let Some(outs) = mapped.get(id) else {
                continue;
            };
            for adj in &node.adjacency {
                budget::spend();
                if let Some(targets) = mapped.get(adj) {
                    for out in outs {
                        for target in targets {
                            edges.push((out, target));
                        }
                    }
                }
                if edges.len() >= MAX_JOIN_EDGES {
                    // Sorted and deduplicated, the edges gathered so far may be far fewer.
                    sort_by_address(&mut edges);
                    if edges.len() >= MAX_JOIN_EDGES {
                        tracing::warn!(edges = edges.len(), "a view's edges were cut at the limit");
                        break 'inputs;
                    }
                }
            }
        }
        sort_by_address(&mut edges);
        for from in edges.chunk_by(|a, b| address(a.0) == address(b.0)) {
            if let Some(node) = nodes.get_mut(from[0].0) {
                node.adjacency
                    .extend(from.iter().map(|(_, to)| Name::clone(to)));
            }
        }
        Rendered {
            nodes: nodes.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            filtered: 0,
        }
    }
}

/// Where a name's text is: names that are copies of one name share it. An output's name in a
/// join's mapping is one of at most two copies (its key, and its node's id), so that edges
/// sorted by address instead of by text (comparing numbers, not strings) still group each
/// output's edges in one or two runs; the node's edge set sorts their ends by text.
fn address(name: &Name) -> usize {
    name.as_ptr() as usize
}

/// The addresses of a map's keys, sorted: whether an edge ends at one of its nodes is mostly a
/// search among numbers, since a join's edges end at its outputs' keys themselves (and filters
/// keep them); only an end that is a copy of its own has its text compared.
struct KeyAddresses(Vec<usize>);

impl KeyAddresses {
    fn of(nodes: &Nodes) -> KeyAddresses {
        let mut addresses: Vec<usize> = nodes.keys().map(address).collect();
        addresses.sort_unstable();
        KeyAddresses(addresses)
    }

    /// The address of `nodes`' key equal to `name`, if there is one (these are `nodes`' keys).
    fn find(&self, nodes: &Nodes, name: &Name) -> Option<usize> {
        if self.0.binary_search(&address(name)).is_ok() {
            return Some(address(name));
        }
        nodes.get_key_value(name).map(|(key, _)| address(key))
    }
}

/// Sorts `edges` by the addresses of their ends and drops repeats.
fn sort_by_address(edges: &mut Vec<(&Name, &Name)>) {
    let ends = |(from, to): &(&Name, &Name)| (address(from), address(to));
    edges.sort_unstable_by_key(ends);
    edges.dedup_by_key(|edge| ends(edge));
}

/// `child` as one of `out`'s children, counted by its topology (endpoints are not counted).
fn adopt(out: &mut RNode, child: &Arc<RNode>) {
    out.children_mut()
        .entry(child.id.clone())
        .or_insert_with(|| child.clone());
    if child.topology != ENDPOINT {
        *out.counters.entry(child.topology.clone()).or_default() += 1;
    }
}

/// Merges `more` into `node` in order, as merging each in turn would. Their children are
/// unioned once, all together ([`union_all`]); the rest in rounds ([`merge_all`]).
fn merge_into(node: &mut RNode, mut more: Vec<RNode>) {
    let children =
        union_all(std::iter::once(&node.children).chain(more.iter().map(|n| &n.children)));
    for n in &mut more {
        n.children = no_children();
    }
    if let Some(more) = merge_all(more) {
        node.merge(&more);
    }
    node.children = children;
}

/// The union of `maps`, the first map's entry kept where several have the same id (as merging
/// them in order would): every entry gathered, sorted once (a stable sort of sorted runs) and
/// built into one map, where merging them two by two would build every round's maps anew.
fn union_all<'m>(maps: impl Iterator<Item = &'m Arc<Children>>) -> Arc<Children> {
    let maps: Vec<&Arc<Children>> = maps.filter(|m| !m.is_empty()).collect();
    match maps.as_slice() {
        [] => no_children(),
        [one] => Arc::clone(one),
        _ => {
            let mut all: Vec<(&Name, &Arc<RNode>)> = maps.iter().flat_map(|m| m.iter()).collect();
            all.sort_by(|a, b| a.0.cmp(b.0));
            all.dedup_by(|later, first| later.0 == first.0);
            Arc::new(
                all.into_iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        }
    }
}

/// Merges `nodes` in order, as merging each into the first would, in rounds of
/// neighbours: each round costs the nodes' total size, and there are log₂ n rounds, where merging
/// one after the other into a growing node costs its size each time. The merge rules are
/// associative (unions, sums, the later of two timestamps, the first non-empty value).
fn merge_all(mut nodes: Vec<RNode>) -> Option<RNode> {
    while nodes.len() > 1 {
        let mut merged = Vec::with_capacity(nodes.len().div_ceil(2));
        let mut pairs = nodes.into_iter();
        while let Some(mut left) = pairs.next() {
            if let Some(right) = pairs.next() {
                left.merge(&right);
            }
            merged.push(left);
        }
        nodes = merged;
    }
    nodes.pop()
}

/// Merges renderings node by node and sums what they filtered.
pub fn reduce(parts: &[Arc<Rendered>]) -> Rendered {
    let mut out = Rendered::default();
    for part in parts {
        out.filtered += part.filtered;
        for (id, node) in &part.nodes {
            match out.nodes.get_mut(id) {
                Some(existing) => Arc::make_mut(existing).merge(node),
                None => {
                    out.nodes.insert(id.clone(), node.clone());
                }
            }
        }
    }
    out
}

/// Keeps the nodes `keep` accepts, drops edges to the others, counts what it dropped.
pub fn filter(input: &Rendered, keep: impl Fn(&RNode) -> bool) -> Rendered {
    let kept: Vec<bool> = input.nodes.values().map(|node| keep(node)).collect();
    let dropped = kept.iter().filter(|k| !**k).count();
    // All kept: the map copied as it is. Otherwise built from the kept nodes in their order (a
    // comparison or two per node), not inserted one by one (a search from the root each).
    let mut nodes: Nodes = if dropped == 0 {
        input.nodes.clone()
    } else {
        input
            .nodes
            .iter()
            .zip(&kept)
            .filter(|(_, kept)| **kept)
            .map(|((id, node), _)| (id.clone(), node.clone()))
            .collect()
    };
    prune_edges(&mut nodes);
    Rendered {
        nodes,
        filtered: input.filtered + dropped,
    }
}

/// Scope's `MakeFilter`: pseudo nodes always pass.
pub fn filter_non_pseudo(input: &Rendered, keep: impl Fn(&RNode) -> bool) -> Rendered {
    filter(input, |n| n.is_pseudo() || keep(n))
}

fn prune_edges(nodes: &mut Nodes) {
    let keys = KeyAddresses::of(nodes);
    let dangling: Vec<Name> = nodes
        .iter()
        .filter(|(_, n)| n.adjacency.iter().any(|a| keys.find(nodes, a).is_none()))
        .map(|(id, _)| id.clone())
        .collect();
    for id in dangling {
        let keep: SortedSet = nodes[&id]
            .adjacency
            .iter()
            .filter(|a| keys.find(nodes, a).is_some())
            .cloned()
            .collect();
        if let Some(n) = nodes.get_mut(&id) {
            Arc::make_mut(n).adjacency = keep;
        }
    }
}

/// Ids of nodes with an edge to or from a different node: each end gathered as the address of
/// its key in `nodes`, sorted once as numbers, then the keys taken in order (a set of ids would
/// compare strings twice per edge, for both ends).
pub fn connected(nodes: &Nodes) -> BTreeSet<Name> {
    let mut linked: Vec<usize> = Vec::new();
    let keys = KeyAddresses::of(nodes);
    for (id, node) in nodes {
        let before = linked.len();
        for adj in &node.adjacency {
            if adj != id
                && let Some(key) = keys.find(nodes, adj)
            {
                linked.push(key);
            }
        }
        if linked.len() > before {
            linked.push(address(id));
        }
    }
    linked.sort_unstable();
    linked.dedup();
    nodes
        .keys()
        .filter(|key| linked.binary_search(&address(key)).is_ok())
        .cloned()
        .collect()
}

/// Scope's `FilterUnconnectedPseudo`: drops the internet→internet edge, then pseudo nodes that no
/// longer connect to anything else.
pub fn filter_unconnected_pseudo(input: &Rendered) -> Rendered {
    let keep_connected = |input: &Rendered| {
        let linked = connected(&input.nodes);
        filter(input, |n| !n.is_pseudo() || linked.contains(&n.id))
    };
    if input
        .nodes
        .get(INCOMING_INTERNET)
        .is_some_and(|n| n.adjacency.contains(OUTGOING_INTERNET))
    {
        let mut input = input.clone();
        if let Some(n) = input.nodes.get_mut(INCOMING_INTERNET) {
            Arc::make_mut(n).adjacency.remove(OUTGOING_INTERNET);
        }
        return keep_connected(&input);
    }
    keep_connected(input)
}

/// Node ids for endpoints: `scope;address;port`.
pub fn parse_endpoint_id(id: &str) -> Option<(&str, &str, &str)> {
    let mut parts = id.splitn(3, ';');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// What a renderer needs: the merged report, the render time, and renderings done so far.
pub struct Ctx<'a> {
    pub report: &'a Report,
    pub now: Time,
    memo: HashMap<String, Arc<Rendered>>,
    /// Keys asked of the memo since [`Ctx::take_asked`] last took them, hits and renders alike.
    asked: Vec<String>,
    /// Renderings the memo made (asked for and not kept).
    made: usize,
    local_networks: Option<Arc<net::Networks>>,
}

impl<'a> Ctx<'a> {
    pub fn new(report: &'a Report, now: Time) -> Ctx<'a> {
        Ctx {
            report,
            now,
            memo: HashMap::new(),
            asked: Vec::new(),
            made: 0,
            local_networks: None,
        }
    }

    /// Renders once per key and context (Scope's `Memoise`).
    pub fn memo(&mut self, key: &str, f: impl FnOnce(&mut Ctx<'a>) -> Rendered) -> Arc<Rendered> {
        self.asked.push(key.to_owned());
        if let Some(hit) = self.memo.get(key) {
            return hit.clone();
        }
        self.made += 1;
        let out = Arc::new(f(self));
        self.memo.insert(key.to_owned(), out.clone());
        out
    }

    /// The memo's keys asked for since the last call, in order (hits and renders alike).
    pub fn take_asked(&mut self) -> Vec<String> {
        std::mem::take(&mut self.asked)
    }

    /// Lets go of a memoised rendering: asked for again, it is rendered again.
    pub fn release(&mut self, key: &str) {
        self.memo.remove(key);
    }

    /// The nodes of one report topology (by internal name), as renderers take them.
    pub fn select(&mut self, topology: &'static str) -> Arc<Rendered> {
        let report = self.report;
        self.memo(&format!("select:{topology}"), |_| Rendered {
            nodes: wire_name(topology)
                .and_then(|w| report.topology(w))
                .map(|t| {
                    t.nodes
                        .iter()
                        .map(|(id, n)| (id.clone(), Arc::new(RNode::from_report(n))))
                        .collect()
                })
                .unwrap_or_default(),
            filtered: 0,
        })
    }

    pub fn has_nodes(&self, topology: &str) -> bool {
        wire_name(topology)
            .and_then(|w| self.report.topology(w))
            .is_some_and(|t| !t.nodes.is_empty())
    }

    fn local_networks(&mut self) -> Arc<net::Networks> {
        if let Some(n) = &self.local_networks {
            return n.clone();
        }
        let n = Arc::new(net::Networks::of_report(self.report));
        self.local_networks = Some(n.clone());
        n
    }
}

#[cfg(test)]
mod tests;
