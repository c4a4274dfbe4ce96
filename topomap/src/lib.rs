//! The topology map's logic (design.md §6), kept out of the Leptos app so it is tested on the host
//! and benchmarked natively: the layered layout (`layout`) and the search language (`search`).

pub mod layout;
pub mod search;
pub mod values;

use std::collections::BTreeMap;

use shared::topology::{Diff, NodeSummary};

/// Applies one frame of the topology websocket to the nodes a page holds: a reset starts over, then
/// additions and updates replace nodes by id, and removals drop them.
pub fn apply(nodes: &mut BTreeMap<String, NodeSummary>, diff: Diff) {
    if diff.reset {
        nodes.clear();
    }
    for n in diff
        .add
        .into_iter()
        .flatten()
        .chain(diff.update.into_iter().flatten())
    {
        nodes.insert(n.id.clone(), n);
    }
    for id in diff.remove.into_iter().flatten() {
        nodes.remove(&id);
    }
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
        apply(&mut nodes, Diff::default());
        assert_eq!(nodes.len(), 1);
    }
}
