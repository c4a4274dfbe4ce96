//! A report as it comes off the wire, before it is folded into its probe's part of the window.
//!
//! Its strings are borrowed from the request body wherever the encoding allows (msgpack always,
//! JSON unless a string has escapes) and its maps are kept as the lists of entries they came as
//! (a topology's nodes' entries of each map in one list, [`NodeMaps`]):
//! folding it then looks every node, key and member up by the borrowed string and copies only what
//! the part did not have yet. A probe sends almost the same report every few seconds, so a report
//! is folded with few allocations; decoding into owned maps first cost more than the fold itself.
//!
//! The one decoder of reports: [`Report`]'s own decoding goes through it
//! ([`WireReport::into_report`]). A key repeated within one map (no probe sends that; Go's maps
//! cannot) is taken in the order it came: [`Report`] keeps the last, a fold merges them.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use smallvec::SmallVec;

use super::keyed::KeyedMap;
use super::name::Name;
use super::report::{
    LatestEntry, Metric, Node, Report, Sample, Shared, StringSets, TOPOLOGIES, Templates, Time,
    Topology, bounded_templates, owned,
};

/// Elements taken on trust from a length a map or list announces before they arrive.
const MAX_PREALLOCATED: usize = 1024;

/// Nodes of a topology taken on trust the same way: a large report's endpoints number in the
/// thousands, and growing their list by doubling copies every node again (a node in the wire form
/// is a few hundred bytes, so this is at most about a megabyte before any node arrived).
const MAX_PREALLOCATED_NODES: usize = 4096;

/// A string of the report; `null` is the empty string.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text<'a>(Cow<'a, str>);

impl<'a> Text<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_owned(self) -> String {
        self.0.into_owned()
    }

    /// Whether it points into the body it was decoded from.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.0, Cow::Borrowed(_))
    }
}

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Text<'_>> for String {
    fn from(text: Text<'_>) -> String {
        text.into_owned()
    }
}

impl From<String> for Text<'static> {
    fn from(s: String) -> Self {
        Text(Cow::Owned(s))
    }
}

/// A key as the folded window keeps it: a known one shared ([`Name::known`]).
impl From<Text<'_>> for Name {
    fn from(text: Text<'_>) -> Name {
        Name::known(text.as_str())
    }
}

impl From<Name> for Text<'static> {
    fn from(name: Name) -> Self {
        Text(Cow::Owned(name.as_str().to_owned()))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(PhantomData<Text<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or null")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Text<'a>, E> {
                std::str::from_utf8(v)
                    .map(|s| Text(Cow::Borrowed(s)))
                    .map_err(|_| E::invalid_value(de::Unexpected::Bytes(v), &self))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Text<'a>, E> {
                std::str::from_utf8(v)
                    .map(|s| Text(Cow::Owned(s.to_owned())))
                    .map_err(|_| E::invalid_value(de::Unexpected::Bytes(v), &self))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Text<'a>, E> {
                Ok(Text::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Text<'a>, E> {
                Ok(Text::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Text<'a>, D::Error> {
                Text::deserialize(d)
            }
        }
        d.deserialize_any(TextVisitor(PhantomData))
    }
}

/// A list as it came; `null` is the empty list.
#[derive(Debug, Clone, PartialEq)]
pub struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

/// A list as it came, held in place while it has at most two items (an endpoint's one edge, a
/// parent, a metric's sample or two: most of a report's lists, which would otherwise cost an
/// allocation each); `null` is the empty list.
#[derive(Debug, Clone, PartialEq)]
pub struct Few<T>(pub SmallVec<[T; 2]>);

impl<T> Default for Few<T> {
    fn default() -> Self {
        Few(SmallVec::new())
    }
}

/// Where a decoded list's items go.
trait Items<T>: Default {
    fn with_capacity(n: usize) -> Self;
    fn push(&mut self, item: T);
}

impl<T> Items<T> for List<T> {
    fn with_capacity(n: usize) -> Self {
        List(Vec::with_capacity(n))
    }
    fn push(&mut self, item: T) {
        self.0.push(item);
    }
}

impl<T> Items<T> for Few<T> {
    fn with_capacity(n: usize) -> Self {
        Few(SmallVec::with_capacity(n))
    }
    fn push(&mut self, item: T) {
        self.0.push(item);
    }
}

/// A list or `null` into `C`.
fn list<'a, D: Deserializer<'a>, T: Deserialize<'a>, C: Items<T>>(d: D) -> Result<C, D::Error> {
    struct ListVisitor<T, C>(PhantomData<(T, C)>);
    impl<'a, T: Deserialize<'a>, C: Items<T>> Visitor<'a> for ListVisitor<T, C> {
        type Value = C;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list or null")
        }
        fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<C, A::Error> {
            let mut items = C::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_PREALLOCATED));
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(items)
        }
        fn visit_unit<E: de::Error>(self) -> Result<C, E> {
            Ok(C::default())
        }
        fn visit_none<E: de::Error>(self) -> Result<C, E> {
            Ok(C::default())
        }
        fn visit_some<D: Deserializer<'a>>(self, d: D) -> Result<C, D::Error> {
            list(d)
        }
    }
    d.deserialize_any(ListVisitor(PhantomData))
}

impl<'a, T: Deserialize<'a>> Deserialize<'a> for List<T> {
    fn deserialize<D: Deserializer<'a>>(d: D) -> Result<Self, D::Error> {
        list(d)
    }
}

impl<'a, T: Deserialize<'a>> Deserialize<'a> for Few<T> {
    fn deserialize<D: Deserializer<'a>>(d: D) -> Result<Self, D::Error> {
        list(d)
    }
}

/// Where a node's entries of one of its maps are in its topology's [`NodeMaps`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub len: usize,
}

impl Span {
    pub fn range(self) -> std::ops::Range<usize> {
        self.start..self.start + self.len
    }
}

/// Named string sets' entries (a node's `sets` and `parents`).
pub type WireSet<'a> = (Text<'a>, Few<Text<'a>>);

/// The entries of the maps of a topology's nodes, one list per map for all of its nodes, in the
/// order the nodes and their entries came (a key repeated within one node's map included); each
/// node says where its own are ([`Span`]). A node's maps so cost no allocation of their own:
/// most hold one or two entries (an endpoint's latest values, a process's parents and metrics),
/// and a report has hundreds of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeMaps<'a> {
    pub latest: Vec<(Text<'a>, WireLatest<'a>)>,
    pub metrics: Vec<(Text<'a>, WireMetric)>,
    pub sets: Vec<WireSet<'a>>,
    pub parents: Vec<WireSet<'a>>,
}

impl<'a> NodeMaps<'a> {
    /// Takes every entry out, node after node in the order they came.
    pub fn drain(&mut self) -> NodeMapsDrain<'_, 'a> {
        NodeMapsDrain {
            latest: self.latest.drain(..),
            metrics: self.metrics.drain(..),
            sets: self.sets.drain(..),
            parents: self.parents.drain(..),
        }
    }
}

/// The lists of a topology's wire form (its nodes, their maps' entries), kept empty by a thread
/// from one report to the next. A large report's lists are megabytes: made anew for each report,
/// every 4 KiB of them is a page fault on first touch and each doubling copies them again (a
/// fifth of a large report's ingest), and the allocator hands the memory back to the system in
/// between. Kept per topology kind, so each gets back about the room it needs; what a report left
/// in them is dropped first, and a thread keeps at most [`MAX_KEPT_ROOM_BYTES`].
#[derive(Debug, Default)]
pub struct Room<'a> {
    pub nodes: Vec<(Text<'a>, WireNode<'a>)>,
    pub maps: NodeMaps<'a>,
}

/// What a thread keeps of [`Room`]s between reports, at most: a large report needs a few
/// megabytes, and reports are decoded by as many threads as there are cores.
pub const MAX_KEPT_ROOM_BYTES: usize = 16 << 20;

thread_local! {
    /// Per topology of [`TOPOLOGIES`], the room one of its kind left, and its size in bytes.
    static KEPT_ROOM: RefCell<[(Room<'static>, usize); TOPOLOGIES.len()]> =
        RefCell::new(std::array::from_fn(|_| (Room::default(), 0)));
}

/// Where topology `kind` is among [`TOPOLOGIES`] (and in [`KEPT_ROOM`]).
fn kind_index(kind: &str) -> Option<usize> {
    TOPOLOGIES.iter().position(|t| *t == kind)
}

impl Room<'_> {
    /// The room topology `kind`'s last of this thread left (none for a kind not of [`TOPOLOGIES`]).
    pub fn take<'a>(kind: &str) -> Room<'a> {
        let Some(i) = kind_index(kind) else {
            return Room::default();
        };
        KEPT_ROOM.with_borrow_mut(|kept| std::mem::take(&mut kept[i]).0.emptied())
    }

    /// Empties the lists and keeps them for this thread's next topology `kind`, unless that would
    /// keep more than [`MAX_KEPT_ROOM_BYTES`].
    pub fn keep(self, kind: &str) {
        let Some(i) = kind_index(kind) else {
            return;
        };
        let bytes = capacity_bytes(&self.nodes)
            + capacity_bytes(&self.maps.latest)
            + capacity_bytes(&self.maps.metrics)
            + capacity_bytes(&self.maps.sets)
            + capacity_bytes(&self.maps.parents);
        let room = self.emptied();
        KEPT_ROOM.with_borrow_mut(|kept| {
            let others: usize = kept.iter().map(|(_, b)| b).sum::<usize>() - kept[i].1;
            kept[i] = if others + bytes <= MAX_KEPT_ROOM_BYTES {
                (room, bytes)
            } else {
                (Room::default(), 0)
            };
        });
    }

    /// The lists emptied, for strings of any lifetime, in the same memory.
    fn emptied<'b>(self) -> Room<'b> {
        Room {
            nodes: emptied(self.nodes),
            maps: NodeMaps {
                latest: emptied(self.maps.latest),
                metrics: emptied(self.maps.metrics),
                sets: emptied(self.maps.sets),
                parents: emptied(self.maps.parents),
            },
        }
    }
}

fn capacity_bytes<T>(list: &Vec<T>) -> usize {
    list.capacity() * std::mem::size_of::<T>()
}

/// `list` emptied, as a list of `U` in the same memory (collected in place: `T` and `U` differ
/// only in their lifetimes, so they have the same size and alignment).
fn emptied<T, U>(mut list: Vec<T>) -> Vec<U> {
    list.clear();
    list.into_iter()
        .map(|_| unreachable!("the list was emptied"))
        .collect()
}

/// [`NodeMaps`] being taken out node by node, in the order the nodes came: each call takes the
/// next `span.len` entries of one map, the node's own.
pub struct NodeMapsDrain<'m, 'a> {
    latest: Drain<'m, (Text<'a>, WireLatest<'a>)>,
    metrics: Drain<'m, (Text<'a>, WireMetric)>,
    sets: Drain<'m, WireSet<'a>>,
    parents: Drain<'m, WireSet<'a>>,
}

type Drain<'m, T> = std::vec::Drain<'m, T>;

impl<'m, 'a> NodeMapsDrain<'m, 'a> {
    pub fn latest(&mut self, span: Span) -> Next<'_, Drain<'m, (Text<'a>, WireLatest<'a>)>> {
        Next(self.latest.by_ref().take(span.len))
    }
    pub fn metrics(&mut self, span: Span) -> Next<'_, Drain<'m, (Text<'a>, WireMetric)>> {
        Next(self.metrics.by_ref().take(span.len))
    }
    pub fn sets(&mut self, span: Span) -> Next<'_, Drain<'m, WireSet<'a>>> {
        Next(self.sets.by_ref().take(span.len))
    }
    pub fn parents(&mut self, span: Span) -> Next<'_, Drain<'m, WireSet<'a>>> {
        Next(self.parents.by_ref().take(span.len))
    }
}

/// One node's entries of a map being drained; those not taken are dropped with it, so the next
/// node's start where they should.
pub struct Next<'d, I: Iterator>(std::iter::Take<&'d mut I>);

impl<I: Iterator> Iterator for Next<'_, I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        self.0.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<I: Iterator> Drop for Next<'_, I> {
    fn drop(&mut self) {
        self.0.by_ref().for_each(drop);
    }
}

/// Appends a map's entries (or none for `null`) to `entries`.
struct AppendEntries<'m, 'a, V>(&'m mut Vec<(Text<'a>, V)>);

impl<'de: 'a, 'a, V: Deserialize<'de>> de::DeserializeSeed<'de> for AppendEntries<'_, 'a, V> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de: 'a, 'a, V: Deserialize<'de>> Visitor<'de> for AppendEntries<'_, 'a, V> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map or null")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0
            .reserve(map.size_hint().unwrap_or(0).min(MAX_PREALLOCATED));
        while let Some(entry) = map.next_entry()? {
            self.0.push(entry);
        }
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        de::DeserializeSeed::deserialize(self, d)
    }
}

/// As a map: a key that came twice has its last value.
fn into_map<'a, V, T>(
    entries: impl Iterator<Item = (Text<'a>, V)>,
    mut value: impl FnMut(V) -> T,
) -> KeyedMap<T> {
    entries
        .map(|(key, v)| (Name::from(key), value(v)))
        .collect()
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct WireLatest<'a> {
    #[serde(default)]
    pub timestamp: Time,
    #[serde(default, borrow)]
    pub value: Text<'a>,
}

/// A metric as it came: [`Metric`] with its samples in place.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct WireMetric {
    #[serde(default)]
    pub samples: Few<Sample>,
    #[serde(default)]
    pub min: f64,
    #[serde(default)]
    pub max: f64,
}

impl From<WireMetric> for Metric {
    fn from(m: WireMetric) -> Metric {
        Metric {
            samples: m.samples.0.into_vec(),
            min: m.min,
            max: m.max,
        }
    }
}

impl From<Metric> for WireMetric {
    fn from(m: Metric) -> WireMetric {
        WireMetric {
            samples: Few(m.samples.into()),
            min: m.min,
            max: m.max,
        }
    }
}

/// A node as it came; its maps' entries are in its topology's [`NodeMaps`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WireNode<'a> {
    pub id: Text<'a>,
    pub topology: Text<'a>,
    pub adjacency: Few<Text<'a>>,
    pub sets: Span,
    pub latest: Span,
    pub metrics: Span,
    pub parents: Span,
    /// Rare (probes seldom send children), so decoded as they are kept.
    pub children: List<Node>,
}

/// Marks field `name` (bit `bit` of `seen`) as read; refuses it the second time, as a derived
/// decoding does.
fn once<E: de::Error>(seen: &mut u16, bit: u16, name: &'static str) -> Result<(), E> {
    if *seen & bit != 0 {
        return Err(E::duplicate_field(name));
    }
    *seen |= bit;
    Ok(())
}

/// A node's field name: matched as bytes and not charged, as a derived field visitor's are.
enum NodeField {
    Id,
    Topology,
    Sets,
    Adjacency,
    Latest,
    Metrics,
    Parents,
    Children,
    Unknown,
}

impl NodeField {
    /// Its bit among the fields read so far and its name, for [`once`]; none for unknown fields.
    fn known(&self) -> Option<(u16, &'static str)> {
        Some(match self {
            NodeField::Id => (1, "id"),
            NodeField::Topology => (2, "topology"),
            NodeField::Sets => (4, "sets"),
            NodeField::Adjacency => (8, "adjacency"),
            NodeField::Latest => (16, "latest"),
            NodeField::Metrics => (32, "metrics"),
            NodeField::Parents => (64, "parents"),
            NodeField::Children => (128, "children"),
            NodeField::Unknown => return None,
        })
    }
}

impl<'de> Deserialize<'de> for NodeField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = NodeField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a node's field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeField, E> {
                self.visit_bytes(v.as_bytes())
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<NodeField, E> {
                Ok(match v {
                    b"id" => NodeField::Id,
                    b"topology" => NodeField::Topology,
                    b"sets" => NodeField::Sets,
                    b"adjacency" => NodeField::Adjacency,
                    b"latest" => NodeField::Latest,
                    b"metrics" => NodeField::Metrics,
                    b"parents" => NodeField::Parents,
                    b"children" => NodeField::Children,
                    _ => NodeField::Unknown,
                })
            }
        }
        d.deserialize_identifier(FieldVisitor)
    }
}

/// Decodes a node (a map; its fields each at most once, each may be `null` or missing, unknown
/// ones skipped) into a blank one in place (a node is a few hundred bytes: moved out through
/// every layer of the decoding, it was copied each time), its maps' entries appended to the
/// topology's [`NodeMaps`].
struct NodeSeed<'m, 'n, 'a>(&'m mut NodeMaps<'a>, &'n mut WireNode<'a>);

impl<'a> de::DeserializeSeed<'a> for NodeSeed<'_, '_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'a> Visitor<'a> for NodeSeed<'_, '_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a node (a map)")
    }
    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        fn append<'a, A: MapAccess<'a>, V: Deserialize<'a>>(
            map: &mut A,
            entries: &mut Vec<(Text<'a>, V)>,
        ) -> Result<Span, A::Error> {
            let start = entries.len();
            map.next_value_seed(AppendEntries(&mut *entries))?;
            Ok(Span {
                start,
                len: entries.len() - start,
            })
        }
        let NodeSeed(maps, node) = self;
        let mut seen = 0u16;
        while let Some(field) = map.next_key::<NodeField>()? {
            if let Some((bit, name)) = field.known() {
                once(&mut seen, bit, name)?;
            }
            match field {
                NodeField::Id => node.id = map.next_value()?,
                NodeField::Topology => node.topology = map.next_value()?,
                NodeField::Sets => node.sets = append(&mut map, &mut maps.sets)?,
                NodeField::Adjacency => node.adjacency = map.next_value()?,
                NodeField::Latest => node.latest = append(&mut map, &mut maps.latest)?,
                NodeField::Metrics => node.metrics = append(&mut map, &mut maps.metrics)?,
                NodeField::Parents => node.parents = append(&mut map, &mut maps.parents)?,
                NodeField::Children => node.children = map.next_value()?,
                NodeField::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A topology: its nodes and their maps' entries, and its head (everything else, as [`Topology`]
/// holds it). Decoded by [`NodeByNode`], whose nodes go to a [`NodeSink`]: into `nodes` for a
/// [`WireReport`], straight into a window for a fold as it is decoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WireTopology<'a> {
    pub shape: Text<'a>,
    pub tag: Text<'a>,
    pub label: Text<'a>,
    pub label_plural: Text<'a>,
    /// In the order they came.
    pub nodes: Vec<(Text<'a>, WireNode<'a>)>,
    /// What `nodes` did not take of the entries decoded (all of them, for a [`WireReport`]).
    pub maps: NodeMaps<'a>,
    pub controls: Templates,
    pub metadata_templates: Templates,
    pub metric_templates: Templates,
    pub table_templates: Templates,
}

impl<'a> WireTopology<'a> {
    /// The topology without its nodes, and its nodes with their maps' entries.
    pub fn split(self) -> (Topology, Vec<(Text<'a>, WireNode<'a>)>, NodeMaps<'a>) {
        let head = Topology {
            shape: self.shape.into_owned(),
            tag: self.tag.into_owned(),
            label: self.label.into_owned(),
            label_plural: self.label_plural.into_owned(),
            nodes: BTreeMap::new(),
            controls: bounded_templates(self.controls),
            metadata_templates: bounded_templates(self.metadata_templates),
            metric_templates: bounded_templates(self.metric_templates),
            table_templates: bounded_templates(self.table_templates),
        };
        (head, self.nodes, self.maps)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct WireReport<'a> {
    pub ts: Time,
    pub window: i64,
    pub shortcut: bool,
    pub id: Text<'a>,
    /// Only those of [`TOPOLOGIES`], in the order they came.
    pub topologies: Vec<(Text<'a>, WireTopology<'a>)>,
    pub dns: serde_json::Value,
    pub plugins: serde_json::Value,
}

fn next<'a, A: MapAccess<'a>, T: Deserialize<'a> + Default>(map: &mut A) -> Result<T, A::Error> {
    Ok(map.next_value::<Option<T>>()?.unwrap_or_default())
}

/// Where a report's topologies go as the report is decoded: each one's value is decoded by the
/// sink, in the order they came. A [`WireReport`] keeps them whole; a fold takes their nodes one
/// by one (`fold.rs`, [`NodeByNode`]).
pub trait TopologySink<'a> {
    /// Decodes the value of topology `name` (one of [`TOPOLOGIES`]) from `map` and takes it.
    fn topology<A: MapAccess<'a>>(&mut self, name: Text<'a>, map: &mut A) -> Result<(), A::Error>;
}

/// Topologies kept whole, in the order they came.
impl<'a> TopologySink<'a> for Vec<(Text<'a>, WireTopology<'a>)> {
    fn topology<A: MapAccess<'a>>(&mut self, name: Text<'a>, map: &mut A) -> Result<(), A::Error> {
        let Room { mut nodes, maps } = Room::take(name.as_str());
        let mut topology = map.next_value_seed(NodeByNode(&mut nodes, maps))?;
        topology.nodes = nodes;
        self.push((name, topology));
        Ok(())
    }
}

/// A topology's nodes kept, in the order they came: each decoded in its place at the end.
impl<'a> NodeSink<'a> for Vec<(Text<'a>, WireNode<'a>)> {
    fn announced(&mut self, n: usize) {
        self.reserve(n.min(MAX_PREALLOCATED_NODES));
    }
    fn blank(&mut self, id: Text<'a>) -> &mut WireNode<'a> {
        self.push((id, WireNode::default()));
        &mut self.last_mut().expect("pushed").1
    }
    /// Its maps' entries stay in the topology's.
    fn node(&mut self, _maps: &mut NodeMaps<'a>) {}
}

/// A report's top level: its header fields are kept in the [`WireReport`] it returns (its
/// topologies empty), its topologies go to the sink.
pub struct ReportSeed<'s, S>(pub &'s mut S);

impl<'a, S: TopologySink<'a>> de::DeserializeSeed<'a> for ReportSeed<'_, S> {
    type Value = WireReport<'a>;

    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'a, S: TopologySink<'a>> Visitor<'a> for ReportSeed<'_, S> {
    type Value = WireReport<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Scope report (a map)")
    }
    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut report = WireReport::default();
        while let Some(key) = map.next_key::<Text<'a>>()? {
            match key.as_str() {
                "TS" => report.ts = map.next_value()?,
                "Window" => report.window = next::<A, i64>(&mut map)?,
                "Shortcut" => report.shortcut = next::<A, bool>(&mut map)?,
                "ID" => report.id = map.next_value()?,
                "DNS" => report.dns = map.next_value()?,
                "Plugins" => report.plugins = map.next_value()?,
                name if TOPOLOGIES.contains(&name) => self.0.topology(key, &mut map)?,
                // Sampling, the legacy `nodes` (BugDNS), and anything newer.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(report)
    }
}

impl<'a> Deserialize<'a> for WireReport<'a> {
    fn deserialize<D: Deserializer<'a>>(d: D) -> Result<Self, D::Error> {
        let mut topologies = Vec::new();
        let mut report = de::DeserializeSeed::deserialize(ReportSeed(&mut topologies), d)?;
        report.topologies = topologies;
        Ok(report)
    }
}

/// Takes a topology's nodes one by one as they are decoded.
pub trait NodeSink<'a> {
    /// The topology's map announces `n` nodes (before any is decoded: a hint, not a promise).
    fn announced(&mut self, _n: usize) {}
    /// A blank node (`WireNode::default()`) to decode node `id` into.
    fn blank(&mut self, id: Text<'a>) -> &mut WireNode<'a>;
    /// The node last given out by [`NodeSink::blank`], decoded; its maps' entries are the last of
    /// `maps` (what earlier nodes left there before them).
    fn node(&mut self, maps: &mut NodeMaps<'a>);
}

/// The one decoding of a topology's value: its nodes are handed to a [`NodeSink`] as they come, and
/// the topology's head is returned (its nodes empty, its maps' entries appended to the lists
/// given, a [`Room`]'s or new ones). A map with string keys, or `null`; a field repeated is
/// refused; unknown fields are skipped.
pub struct NodeByNode<'s, 'a, N>(pub &'s mut N, pub NodeMaps<'a>);

impl<'a, N: NodeSink<'a>> de::DeserializeSeed<'a> for NodeByNode<'_, 'a, N> {
    type Value = WireTopology<'a>;

    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'a, N: NodeSink<'a>> Visitor<'a> for NodeByNode<'_, 'a, N> {
    type Value = WireTopology<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a topology (a map) or null")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(WireTopology::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(WireTopology::default())
    }
    fn visit_some<D: Deserializer<'a>>(self, d: D) -> Result<Self::Value, D::Error> {
        de::DeserializeSeed::deserialize(self, d)
    }
    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        fn templates<'a, A: MapAccess<'a>>(map: &mut A) -> Result<Templates, A::Error> {
            next::<A, Templates>(map)
        }
        let mut head = WireTopology {
            maps: self.1,
            ..WireTopology::default()
        };
        let mut seen = 0u16;
        while let Some(key) = map.next_key::<Text<'a>>()? {
            match key.as_str() {
                "shape" => {
                    once(&mut seen, 1, "shape")?;
                    head.shape = map.next_value()?;
                }
                "tag" => {
                    once(&mut seen, 2, "tag")?;
                    head.tag = map.next_value()?;
                }
                "label" => {
                    once(&mut seen, 4, "label")?;
                    head.label = map.next_value()?;
                }
                "label_plural" => {
                    once(&mut seen, 8, "label_plural")?;
                    head.label_plural = map.next_value()?;
                }
                "nodes" => {
                    once(&mut seen, 16, "nodes")?;
                    map.next_value_seed(Nodes(&mut *self.0, &mut head.maps))?;
                }
                "controls" => {
                    once(&mut seen, 32, "controls")?;
                    head.controls = templates(&mut map)?;
                }
                "metadata_templates" => {
                    once(&mut seen, 64, "metadata_templates")?;
                    head.metadata_templates = templates(&mut map)?;
                }
                "metric_templates" => {
                    once(&mut seen, 128, "metric_templates")?;
                    head.metric_templates = templates(&mut map)?;
                }
                "table_templates" => {
                    once(&mut seen, 256, "table_templates")?;
                    head.table_templates = templates(&mut map)?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(head)
    }
}

/// A topology's `nodes` (a map by id, or `null`), each handed to the sink as it is decoded, their
/// maps' entries appended to the topology's.
struct Nodes<'s, 'a, N>(&'s mut N, &'s mut NodeMaps<'a>);

impl<'a, N: NodeSink<'a>> de::DeserializeSeed<'a> for Nodes<'_, 'a, N> {
    type Value = ();

    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'a, N: NodeSink<'a>> Visitor<'a> for Nodes<'_, 'a, N> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map or null")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        de::DeserializeSeed::deserialize(self, d)
    }
    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.announced(map.size_hint().unwrap_or(0));
        while let Some(id) = map.next_key::<Text<'a>>()? {
            map.next_value_seed(NodeSeed(&mut *self.1, self.0.blank(id)))?;
            self.0.node(&mut *self.1);
        }
        Ok(())
    }
}

impl WireReport<'_> {
    /// Nodes of the largest topology, counted as they came.
    pub fn most_nodes(&self) -> Option<(&str, usize)> {
        self.topologies
            .iter()
            .map(|(name, t)| (name.as_str(), t.nodes.len()))
            .max_by_key(|(_, n)| *n)
    }

    /// The host's name, as its Host node says.
    pub fn hostname(&self) -> Option<String> {
        let (_, host) = self.topologies.iter().find(|(n, _)| n.as_str() == "Host")?;
        host.nodes.iter().find_map(|(_, node)| {
            host.maps.latest[node.latest.range()]
                .iter()
                .rev()
                .find(|(key, _)| key.as_str() == "host_name")
                .map(|(_, latest)| latest.value.as_str().to_owned())
        })
    }

    /// The report with maps of owned strings.
    pub fn into_report(self) -> Report {
        let mut report = Report {
            ts: self.ts,
            window: self.window,
            shortcut: self.shortcut,
            id: self.id.into_owned(),
            topologies: BTreeMap::new(),
            dns: self.dns,
            plugins: self.plugins,
        };
        for (name, topology) in self.topologies {
            let (mut head, nodes, mut maps) = topology.split();
            let mut maps = maps.drain();
            head.nodes = nodes
                .into_iter()
                .map(|(id, node)| (Name::new(id.as_str()), node.into_node(&mut maps)))
                .collect();
            report.topologies.insert(name.into_owned(), head);
        }
        report
    }
}

fn names(list: Few<Text<'_>>) -> Vec<Name> {
    list.0.iter().map(|text| Name::new(text.as_str())).collect()
}

fn texts(list: Vec<Name>) -> Few<Text<'static>> {
    Few(list.into_iter().map(Text::from).collect())
}

/// Appends `entries` to `to`; where they are.
fn append<T>(to: &mut Vec<T>, entries: impl IntoIterator<Item = T>) -> Span {
    let start = to.len();
    to.extend(entries);
    Span {
        start,
        len: to.len() - start,
    }
}

fn wire_sets(sets: StringSets) -> impl Iterator<Item = WireSet<'static>> {
    sets.into_iter()
        .map(|(name, items)| (Text::from(name), texts(items)))
}

impl<'a> WireNode<'a> {
    /// The node, its maps' entries the next of `maps`.
    pub fn into_node(self, maps: &mut NodeMapsDrain<'_, 'a>) -> Node {
        Node {
            id: Name::from(self.id.as_str()),
            topology: Name::known(self.topology.as_str()),
            sets: into_map(maps.sets(self.sets), names).shared(),
            adjacency: self
                .adjacency
                .0
                .iter()
                .map(|t| Name::from(t.as_str()))
                .collect(),
            latest: into_map(maps.latest(self.latest), |l| LatestEntry {
                timestamp: l.timestamp,
                value: Name::new(l.value.as_str()),
            })
            .shared(),
            metrics: into_map(maps.metrics(self.metrics), Metric::from).shared(),
            parents: into_map(maps.parents(self.parents), names).shared(),
            children: self.children.0,
        }
    }
}

/// `node` in the wire form, its maps' entries appended to `maps`.
fn wire_node(node: Node, maps: &mut NodeMaps<'static>) -> WireNode<'static> {
    WireNode {
        id: Text::from(String::from(&node.id)),
        topology: Text::from(String::from(&node.topology)),
        adjacency: Few(node
            .adjacency
            .iter()
            .map(|a| Text::from(String::from(a)))
            .collect()),
        sets: append(&mut maps.sets, wire_sets(owned(node.sets))),
        latest: append(
            &mut maps.latest,
            owned(node.latest).into_iter().map(|(key, l)| {
                let value = WireLatest {
                    timestamp: l.timestamp,
                    value: l.value.into(),
                };
                (key.into(), value)
            }),
        ),
        metrics: append(
            &mut maps.metrics,
            owned(node.metrics)
                .into_iter()
                .map(|(key, m)| (key.into(), m.into())),
        ),
        parents: append(&mut maps.parents, wire_sets(owned(node.parents))),
        children: List(node.children),
    }
}

/// A report built in memory (tests, benchmarks), to fold as if it had come off the wire.
impl From<Report> for WireReport<'static> {
    fn from(report: Report) -> Self {
        let topologies = report
            .topologies
            .into_iter()
            .map(|(name, topology)| {
                let mut maps = NodeMaps::default();
                let nodes = topology
                    .nodes
                    .into_iter()
                    .map(|(id, node)| (Text::from(String::from(&id)), wire_node(node, &mut maps)))
                    .collect();
                let wire = WireTopology {
                    shape: topology.shape.into(),
                    tag: topology.tag.into(),
                    label: topology.label.into(),
                    label_plural: topology.label_plural.into(),
                    nodes,
                    maps,
                    controls: topology.controls,
                    metadata_templates: topology.metadata_templates,
                    metric_templates: topology.metric_templates,
                    table_templates: topology.table_templates,
                };
                (name.into(), wire)
            })
            .collect();
        WireReport {
            ts: report.ts,
            window: report.window,
            shortcut: report.shortcut,
            id: report.id.into(),
            topologies,
            dns: report.dns,
            plugins: report.plugins,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::bounded::BudgetLimits;
    use crate::collector::decode::{Format, inflate, parse, read_fixture};

    fn fixture_bytes(name: &str) -> Vec<u8> {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/scope")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn msgpack_reports_borrow_their_strings_from_the_body() {
        let body = fixture_bytes("probe-full-1.msgpack.gz");
        let raw = inflate(&body, true, 64 << 20).unwrap();
        let report: WireReport =
            parse(&raw, Format::Msgpack, BudgetLimits::for_report(64 << 20)).unwrap();
        let mut texts = 0;
        for (name, topology) in &report.topologies {
            assert!(name.is_borrowed());
            for (id, node) in &topology.nodes {
                assert!(id.is_borrowed() && node.id.is_borrowed(), "{}", id.as_str());
                for (key, latest) in &topology.maps.latest[node.latest.range()] {
                    assert!(key.is_borrowed() && latest.value.is_borrowed());
                    texts += 2;
                }
                for member in node.adjacency.0.iter().chain(
                    topology.maps.sets[node.sets.range()]
                        .iter()
                        .flat_map(|s| &s.1.0),
                ) {
                    assert!(member.is_borrowed());
                    texts += 1;
                }
            }
        }
        assert!(texts > 100, "{texts}");
        // And round trip: the wire form of the decoded report is what was decoded.
        assert_eq!(
            WireReport::from(report.clone().into_report()).into_report(),
            read_fixture("probe-full-1.msgpack.gz")
        );
    }

    /// A topology's `nodes` (msgpack), announcing `announced` entries of which `given` follow.
    fn msgpack_nodes(announced: u32, given: u32) -> Vec<u8> {
        let mut body = vec![0x81, 0xa5];
        body.extend_from_slice(b"nodes");
        body.push(0xdf);
        body.extend_from_slice(&announced.to_be_bytes());
        for i in 0..given {
            let id = format!("n{i}");
            body.push(0xa0 | id.len() as u8);
            body.extend_from_slice(id.as_bytes());
            body.push(0x80);
        }
        body
    }

    #[test]
    fn a_topologys_nodes_are_room_made_for_as_announced_within_a_bound() {
        use crate::collector::bounded::Budget;
        use crate::collector::msgpack;
        // An honest count: room for all at once (pushing one by one would end at 2,048).
        let body = msgpack_nodes(2000, 2000);
        let budget = Budget::new(BudgetLimits::for_report(1 << 20));
        let mut nodes = Vec::new();
        msgpack::from_slice_seed(&body, &budget, NodeByNode(&mut nodes, NodeMaps::default()))
            .unwrap();
        assert_eq!(nodes.len(), 2000);
        assert_eq!(nodes.capacity(), 2000);
        // A count the body does not have: no more room than the bound before the nodes arrive.
        let body = msgpack_nodes(100_000, 1);
        let budget = Budget::new(BudgetLimits::for_report(1 << 20));
        let mut nodes = Vec::new();
        assert!(
            msgpack::from_slice_seed(&body, &budget, NodeByNode(&mut nodes, NodeMaps::default()))
                .is_err()
        );
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes.capacity(), MAX_PREALLOCATED_NODES);
    }

    #[test]
    fn a_folded_reports_lists_are_the_next_reports_on_the_same_thread() {
        use crate::collector::fold::FoldedWindow;
        let body = fixture_bytes("probe-full-1.msgpack.gz");
        let raw = inflate(&body, true, 64 << 20).unwrap();
        let decode = || -> WireReport {
            parse(&raw, Format::Msgpack, BudgetLimits::for_report(64 << 20)).unwrap()
        };
        let lists = |report: &WireReport| -> Vec<(String, *const u8, usize)> {
            let mut lists = Vec::new();
            for (name, t) in &report.topologies {
                let name = name.as_str();
                lists.push((
                    format!("{name} nodes"),
                    t.nodes.as_ptr().cast(),
                    t.nodes.capacity(),
                ));
                let latest = &t.maps.latest;
                lists.push((
                    format!("{name} latest"),
                    latest.as_ptr().cast(),
                    latest.capacity(),
                ));
                let parents = &t.maps.parents;
                lists.push((
                    format!("{name} parents"),
                    parents.as_ptr().cast(),
                    parents.capacity(),
                ));
            }
            lists.retain(|(_, _, capacity)| *capacity > 0);
            lists
        };
        let mut window = FoldedWindow::default();
        let first = decode();
        let first_lists = lists(&first);
        assert!(first_lists.len() > 5, "{first_lists:?}");
        window.accept(first, 0, 1_000);
        // The same lists, empty, in the same memory: no allocation, no page touched for the first
        // time, no copy when they grow.
        let second = decode();
        assert_eq!(lists(&second), first_lists);
        window.accept(second, 3_000, 1_000);
        // Decoded but not folded (refused, say): dropped, nothing kept.
        drop(decode());
        for (kind, ..) in &first_lists {
            let kind = kind.split(' ').next().unwrap();
            assert_eq!(Room::take(kind).nodes.capacity(), 0, "{kind}");
        }
    }

    #[test]
    fn a_thread_keeps_room_only_empty_and_within_a_bound() {
        let node = || (Text::from("n".to_owned()), WireNode::default());
        let mut nodes = Vec::with_capacity(100);
        nodes.push(node());
        let address = nodes.as_ptr() as usize;
        Room {
            nodes,
            maps: NodeMaps::default(),
        }
        .keep("Process");
        let room = Room::take("Process");
        assert!(room.nodes.is_empty());
        assert_eq!(
            (room.nodes.as_ptr() as usize, room.nodes.capacity()),
            (address, 100)
        );
        // Taken: not there for the next one.
        assert_eq!(Room::take("Process").nodes.capacity(), 0);
        // Not one of the topologies: not kept.
        Room {
            nodes: Vec::with_capacity(100),
            maps: NodeMaps::default(),
        }
        .keep("Bogus");
        assert_eq!(Room::take("Bogus").nodes.capacity(), 0);
        // Over the bound with what the thread keeps already: let go of.
        let node_bytes = std::mem::size_of::<(Text, WireNode)>();
        let half = MAX_KEPT_ROOM_BYTES / 2 / node_bytes;
        Room {
            nodes: Vec::with_capacity(half),
            maps: NodeMaps::default(),
        }
        .keep("Host");
        Room {
            nodes: Vec::with_capacity(half),
            maps: NodeMaps::default(),
        }
        .keep("Process");
        Room {
            nodes: Vec::with_capacity(half),
            maps: NodeMaps::default(),
        }
        .keep("Container");
        assert_eq!(Room::take("Container").nodes.capacity(), 0);
        assert_eq!(Room::take("Process").nodes.capacity(), half);
        // The same kind again replaces its own, which does not count against it.
        Room {
            nodes: Vec::with_capacity(half),
            maps: NodeMaps::default(),
        }
        .keep("Host");
        assert_eq!(Room::take("Host").nodes.capacity(), half);
    }

    #[test]
    fn each_nodes_map_entries_are_its_own_in_the_topologys_lists() {
        let body = br#"{"Process": {"nodes": {
            "a": {"latest": {"k": {"value": "1"}, "l": {"value": "2"}}, "unknown": [1, {}],
                  "parents": {"host": ["h"]}},
            "b": {"metrics": null, "latest": {"k": {"value": "3"}}, "sets": {}},
            "c": {"parents": {"host": ["h"], "container": ["c"]}, "latest": {"m": {"value": "4"}}}
        }}}"#;
        let report: WireReport =
            parse(body, Format::Json, BudgetLimits::for_report(1 << 20)).unwrap();
        let mut topology = report.topologies.into_iter().next().unwrap().1;
        let spans: Vec<_> = topology
            .nodes
            .iter()
            .map(|(id, n)| (id.as_str().to_owned(), n.latest, n.parents))
            .collect();
        let at = |start, len| Span { start, len };
        assert_eq!(
            spans,
            [
                ("a".to_owned(), at(0, 2), at(0, 1)),
                ("b".to_owned(), at(2, 1), at(0, 0)),
                ("c".to_owned(), at(3, 1), at(1, 2)),
            ]
        );
        // Taken node after node: what one node's caller leaves untaken is not the next one's.
        let mut maps = topology.maps.drain();
        let (_, a) = &topology.nodes[0];
        let mut first = maps.latest(a.latest);
        assert_eq!(first.next().unwrap().0.as_str(), "k");
        drop(first);
        drop(maps.parents(a.parents));
        let (_, b) = &topology.nodes[1];
        let values: Vec<_> = maps.latest(b.latest).map(|(_, l)| l.value).collect();
        assert_eq!(values, [Text::from("3".to_owned())]);
        assert_eq!(maps.parents(b.parents).count(), 0);
        let (_, c) = &topology.nodes[2];
        let parents: Vec<_> = maps.parents(c.parents).map(|(key, _)| key).collect();
        assert_eq!(
            parents,
            [
                Text::from("host".to_owned()),
                Text::from("container".to_owned())
            ]
        );
        // A field given twice is refused, as a derived decoding refuses it.
        let body = br#"{"Process": {"nodes": {"a": {"latest": {}, "latest": {}}}}}"#;
        let refused = parse::<WireReport>(body, Format::Json, BudgetLimits::for_report(1 << 20));
        assert!(
            refused
                .unwrap_err()
                .to_string()
                .contains("duplicate field `latest`")
        );
    }

    #[test]
    fn json_strings_with_escapes_are_copied_and_nulls_are_empty() {
        let body = br#"{"Process": {"nodes": {"a\u0041": {"id": null, "latest":
            {"k": {"timestamp": null, "value": "x\"y"}}, "sets": {"s": null}, "adjacency": null,
            "parents": null, "metrics": null, "children": null}}, "shape": null}, "Bogus": {}}"#;
        let report: WireReport =
            parse(body, Format::Json, BudgetLimits::for_report(1 << 20)).unwrap();
        assert_eq!(report.topologies.len(), 1);
        let topology = &report.topologies[0].1;
        let (id, node) = &topology.nodes[0];
        assert_eq!((id.as_str(), id.is_borrowed()), ("aA", false));
        let (key, latest) = &topology.maps.latest[node.latest.start];
        assert!(key.is_borrowed());
        assert_eq!(latest.value.as_str(), "x\"y");
        assert_eq!(latest.timestamp, Time::ZERO);
        assert!(node.id.is_empty() && node.adjacency.0.is_empty() && node.children.0.is_empty());
        assert_eq!(node.sets.len, 1);
        assert!(topology.maps.sets[node.sets.start].1.0.is_empty());
    }
}
