//! What a piece of the collector's state takes in memory, estimated by walking it: the heap bytes
//! of its strings and vectors (by capacity) plus the size of what holds them. It is what an
//! instance's window is charged against its memory budget (`slot.rs`), so it follows what is
//! kept: a probe that sends the same report again costs nothing more, one that sends new nodes
//! each time costs each of them until its bucket leaves the window.
//!
//! An estimate, not the allocator's count: it leaves out allocator rounding and the maps' spare
//! room, which is why budgets are set with room to spare (docs/security.md).

use std::collections::BTreeMap;
use std::mem::size_of;
use std::sync::Arc;

use super::keyed::KeyedMap;
use super::name::Name;
use super::report::{LatestEntry, Metric, Node, Topology};

/// Heap bytes owned by a value (its own size is counted by whatever holds it).
pub trait Footprint {
    fn heap_bytes(&self) -> usize;
}

/// A `BTreeMap` entry's share of its nodes beyond the key and value (about half a node is spare).
pub(super) const BTREE_OVERHEAD: usize = 16;

impl Footprint for String {
    fn heap_bytes(&self) -> usize {
        self.capacity()
    }
}

/// As if not shared (the text and the reference counts): an upper bound where it is.
impl Footprint for Name {
    fn heap_bytes(&self) -> usize {
        2 * size_of::<usize>() + self.len()
    }
}

impl<T: Footprint> Footprint for Vec<T> {
    fn heap_bytes(&self) -> usize {
        self.capacity() * size_of::<T>() + self.iter().map(Footprint::heap_bytes).sum::<usize>()
    }
}

impl<A: Footprint, B: Footprint> Footprint for (A, B) {
    fn heap_bytes(&self) -> usize {
        self.0.heap_bytes() + self.1.heap_bytes()
    }
}

impl<A: Footprint, B: Footprint, C: Footprint> Footprint for (A, B, C) {
    fn heap_bytes(&self) -> usize {
        self.0.heap_bytes() + self.1.heap_bytes() + self.2.heap_bytes()
    }
}

impl<V: Footprint> Footprint for KeyedMap<V> {
    fn heap_bytes(&self) -> usize {
        self.len() * size_of::<(Name, V)>()
            + self
                .iter()
                .map(|(k, v)| k.heap_bytes() + v.heap_bytes())
                .sum::<usize>()
    }
}

impl<K: Footprint, V: Footprint> Footprint for BTreeMap<K, V> {
    fn heap_bytes(&self) -> usize {
        self.len() * (size_of::<(K, V)>() + BTREE_OVERHEAD)
            + self
                .iter()
                .map(|(k, v)| k.heap_bytes() + v.heap_bytes())
                .sum::<usize>()
    }
}

impl<T: Footprint> Footprint for Arc<T> {
    /// As if not shared: an upper bound where it is.
    fn heap_bytes(&self) -> usize {
        size_of::<T>() + (**self).heap_bytes()
    }
}

macro_rules! flat {
    ($($ty:ty),*) => {
        $(impl Footprint for $ty {
            fn heap_bytes(&self) -> usize {
                0
            }
        })*
    };
}

flat!(u32, u64, i64, f64, bool, super::report::Time);

impl Footprint for serde_json::Value {
    fn heap_bytes(&self) -> usize {
        use serde_json::Value;
        match self {
            Value::String(s) => s.heap_bytes(),
            Value::Array(items) => items.heap_bytes(),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| {
                    size_of::<(String, Value)>() + BTREE_OVERHEAD + k.heap_bytes() + v.heap_bytes()
                })
                .sum(),
            _ => 0,
        }
    }
}

impl Footprint for LatestEntry {
    fn heap_bytes(&self) -> usize {
        self.value.heap_bytes()
    }
}

impl Footprint for Metric {
    fn heap_bytes(&self) -> usize {
        self.samples.capacity() * size_of::<super::report::Sample>()
    }
}

impl Footprint for Node {
    fn heap_bytes(&self) -> usize {
        self.id.heap_bytes()
            + self.topology.heap_bytes()
            + self.sets.heap_bytes()
            + self.adjacency.heap_bytes()
            + self.latest.heap_bytes()
            + self.metrics.heap_bytes()
            + self.parents.heap_bytes()
            + self.children.heap_bytes()
    }
}

impl Footprint for Topology {
    fn heap_bytes(&self) -> usize {
        self.shape.heap_bytes()
            + self.tag.heap_bytes()
            + self.label.heap_bytes()
            + self.label_plural.heap_bytes()
            + self.nodes.heap_bytes()
            + self.controls.heap_bytes()
            + self.metadata_templates.heap_bytes()
            + self.metric_templates.heap_bytes()
            + self.table_templates.heap_bytes()
    }
}
