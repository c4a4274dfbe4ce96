//! The topology map's logic (design.md §6), kept out of the Leptos app so it is tested on the host
//! and benchmarked natively: the layered layout (`layout`) and the search language (`search`).

pub mod clusters;
pub mod layout;
pub mod resources;
pub mod search;
pub mod values;

use std::collections::BTreeMap;

use shared::topology::{Diff, NodeSummary};

/// What a frame changed, so that a page redoes only what depends on it: a frame that moves only
/// metrics (most frames of a live map) leaves the layout and the drawing of nodes alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    /// Any node at all (its metrics, metadata, anything).
    pub nodes: bool,
    /// Which nodes there are, or their edges: what the layout depends on.
    pub structure: bool,
    /// How some node is drawn (`Look`).
    pub looks: bool,
}

impl Change {
    /// Everything changed (a map replaced wholesale).
    pub const ALL: Change = Change {
        nodes: true,
        structure: true,
        looks: true,
    };
}

impl std::ops::BitOrAssign for Change {
    fn bitor_assign(&mut self, other: Change) {
        self.nodes |= other.nodes;
        self.structure |= other.structure;
        self.looks |= other.looks;
    }
}

/// What a node is drawn from on the graph: its shape and labels, not its metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Look {
    pub shape: String,
    pub stack: bool,
    pub pseudo: bool,
    pub label: String,
    pub label_minor: String,
}

impl Look {
    pub fn of(n: &NodeSummary) -> Look {
        Look {
            shape: n.shape.clone(),
            stack: n.stack,
            pseudo: n.pseudo,
            label: n.label.clone(),
            label_minor: n.label_minor.clone(),
        }
    }

    fn differs(a: &NodeSummary, b: &NodeSummary) -> bool {
        a.shape != b.shape
            || a.stack != b.stack
            || a.pseudo != b.pseudo
            || a.label != b.label
            || a.label_minor != b.label_minor
    }
}

/// Applies one frame of the topology websocket to the nodes a page holds: a reset starts over, then
/// additions and updates replace nodes by id, and removals drop them. Says what changed; the cost
/// is that of the frame, not of the map.
pub fn apply(nodes: &mut BTreeMap<String, NodeSummary>, diff: Diff) -> Change {
    let mut change = Change::default();
    if diff.reset && !nodes.is_empty() {
        nodes.clear();
        change = Change::ALL;
    }
    for n in diff
        .add
        .into_iter()
        .flatten()
        .chain(diff.update.into_iter().flatten())
    {
        change.nodes = true;
        match nodes.get_mut(&n.id) {
            Some(old) => {
                change.structure |= old.adjacency != n.adjacency;
                change.looks |= Look::differs(old, &n);
                *old = n;
            }
            None => {
                change.structure = true;
                change.looks = true;
                nodes.insert(n.id.clone(), n);
            }
        }
    }
    for id in diff.remove.into_iter().flatten() {
        if nodes.remove(&id).is_some() {
            change = Change::ALL;
        }
    }
    change
}

/// The map's shape for the layout: the node ids, and the edges between nodes that are both there
/// (self-loops and repeats left out), both sorted.
pub type Structure = (Vec<String>, Vec<(String, String)>);

pub fn structure(nodes: &BTreeMap<String, NodeSummary>) -> Structure {
    let ids = nodes.keys().cloned().collect();
    let mut edges = std::collections::BTreeSet::new();
    for (id, n) in nodes {
        for t in &n.adjacency {
            if t != id && nodes.contains_key(t) {
                edges.insert((id.clone(), t.clone()));
            }
        }
    }
    (ids, edges.into_iter().collect())
}

/// Every node's `Look`.
pub fn looks(nodes: &BTreeMap<String, NodeSummary>) -> BTreeMap<String, Look> {
    nodes
        .iter()
        .map(|(id, n)| (id.clone(), Look::of(n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, label: &str) -> NodeSummary {
        NodeSummary {
            id: id.into(),
            label: label.into(),
            label_minor: String::new(),
            rank: String::new(),
            shape: String::new(),
            tag: String::new(),
            stack: false,
            pseudo: false,
            metadata: vec![],
            parents: vec![],
            metrics: vec![],
            tables: vec![],
            adjacency: vec![],
        }
    }

    #[test]
    fn frames_apply_in_order() {
        let mut nodes = BTreeMap::from([("old".to_owned(), node("old", "Old"))]);
        apply(
            &mut nodes,
            Diff {
                add: Some(vec![node("a", "A"), node("b", "B")]),
                reset: true,
                ..Diff::default()
            },
        );
        assert_eq!(nodes.keys().collect::<Vec<_>>(), ["a", "b"]);
        apply(
            &mut nodes,
            Diff {
                update: Some(vec![node("a", "A2")]),
                remove: Some(vec!["b".into()]),
                ..Diff::default()
            },
        );
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes["a"].label, "A2");
        // A frame with nothing in it changes nothing.
        assert_eq!(apply(&mut nodes, Diff::default()), Change::default());
        assert_eq!(nodes.len(), 1);
    }

    fn with(mut n: NodeSummary, edit: impl FnOnce(&mut NodeSummary)) -> NodeSummary {
        edit(&mut n);
        n
    }

    #[test]
    fn frames_say_what_they_changed() {
        let a = with(node("a", "A"), |n| n.adjacency = vec!["b".into()]);
        let mut nodes = BTreeMap::new();
        let reset = Diff {
            add: Some(vec![a.clone(), node("b", "B")]),
            reset: true,
            ..Diff::default()
        };
        assert_eq!(apply(&mut nodes, reset.clone()), Change::ALL);
        let update = |n: NodeSummary| Diff {
            update: Some(vec![n]),
            ..Diff::default()
        };
        // Metrics, metadata: only the nodes.
        let busier = with(a.clone(), |n| {
            n.metadata = vec![shared::topology::MetadataRow {
                id: "uptime".into(),
                label: "Uptime".into(),
                value: "3600".into(),
                priority: 1.0,
                data_type: String::new(),
                truncate: 0,
            }]
        });
        let only_nodes = Change {
            nodes: true,
            ..Change::default()
        };
        assert_eq!(apply(&mut nodes, update(busier.clone())), only_nodes);
        assert_eq!(nodes["a"], busier);
        // A new label: the look; a new edge: the structure.
        let renamed = with(busier.clone(), |n| n.label = "A2".into());
        assert_eq!(
            apply(&mut nodes, update(renamed.clone())),
            Change {
                looks: true,
                ..only_nodes
            }
        );
        let rewired = with(renamed, |n| n.adjacency = vec![]);
        assert_eq!(
            apply(&mut nodes, update(rewired)),
            Change {
                structure: true,
                ..only_nodes
            }
        );
        // Removing a node that is not there changes nothing; one that is, everything.
        let remove = |id: &str| Diff {
            remove: Some(vec![id.into()]),
            ..Diff::default()
        };
        assert_eq!(apply(&mut nodes, remove("zz")), Change::default());
        assert_eq!(apply(&mut nodes, remove("b")), Change::ALL);
        // A reset of the same map starts over: everything.
        assert_eq!(apply(&mut nodes, reset), Change::ALL);
        assert_eq!(structure(&nodes).1, vec![("a".to_owned(), "b".to_owned())]);
    }
}
