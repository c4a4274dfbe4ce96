//! Grouping a large map: the nodes that run on one host (their parent in the `hosts` topology)
//! drawn as one stacked node, as Scope draws groups, with the edges between groups merged. 200
//! containers on 20 hosts with 600 connections become 20 nodes and at most 380 edges (one per pair
//! of hosts that talk, each way); a click opens a group into its members.

use std::collections::{BTreeMap, BTreeSet};

use shared::topology::NodeSummary;

use crate::{Look, Structure};

/// Ids of group nodes start with this, which no Scope node id does.
pub const PREFIX: &str = "group:";

pub fn is_group(id: &str) -> bool {
    id.starts_with(PREFIX)
}

/// The map as drawn with groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grouped {
    pub structure: Structure,
    pub looks: BTreeMap<String, Look>,
    /// Each group's members, by the group's id.
    pub members: BTreeMap<String, Vec<String>>,
}

/// Groups `nodes` by their parent in `topology` (`hosts`). A node without one, or whose group is in
/// `open`, is drawn as itself, as is the only member of a group. A group's look: the parent's
/// label, "N `noun`" below it, stacked, in its members' most common shape. Linear in the nodes and
/// edges (plus the sorting of sets).
pub fn grouped(
    nodes: &BTreeMap<String, NodeSummary>,
    topology: &str,
    open: &BTreeSet<String>,
    noun: &str,
) -> Grouped {
    // Each node's group (id and label), if it has one.
    let group_of = |n: &NodeSummary| {
        n.parents
            .iter()
            .find(|p| p.topology_id == topology)
            .map(|p| (format!("{PREFIX}{}", p.id), p.label.clone()))
    };
    let mut members: BTreeMap<String, (String, Vec<&NodeSummary>)> = BTreeMap::new();
    for n in nodes.values() {
        if let Some((group, label)) = group_of(n)
            && !open.contains(&group)
        {
            members
                .entry(group)
                .or_insert_with(|| (label, Vec::new()))
                .1
                .push(n);
        }
    }
    members.retain(|_, (_, m)| m.len() > 1);
    let mut drawn_as: BTreeMap<&str, &str> = BTreeMap::new();
    for (group, (_, m)) in &members {
        for n in m {
            drawn_as.insert(n.id.as_str(), group.as_str());
        }
    }
    let drawn = |id: &str| -> String { drawn_as.get(id).copied().unwrap_or(id).to_owned() };

    let mut looks = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for n in nodes.values() {
        if !drawn_as.contains_key(n.id.as_str()) {
            ids.insert(n.id.clone());
            looks.insert(n.id.clone(), Look::of(n));
        }
    }
    for (group, (label, m)) in &members {
        let mut shapes: BTreeMap<&str, usize> = BTreeMap::new();
        for n in m {
            *shapes.entry(n.shape.as_str()).or_default() += 1;
        }
        let shape = shapes
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .map(|(s, _)| s.to_owned())
            .unwrap_or_default();
        ids.insert(group.clone());
        looks.insert(
            group.clone(),
            Look {
                shape,
                stack: true,
                pseudo: false,
                label: label.clone(),
                label_minor: format!("{} {noun}", m.len()),
            },
        );
    }
    let mut edges = BTreeSet::new();
    for (id, n) in nodes {
        for t in &n.adjacency {
            if t != id && nodes.contains_key(t) {
                let (a, b) = (drawn(id), drawn(t));
                if a != b {
                    edges.insert((a, b));
                }
            }
        }
    }
    Grouped {
        structure: (ids.into_iter().collect(), edges.into_iter().collect()),
        looks,
        members: members
            .into_iter()
            .map(|(group, (_, m))| (group, m.iter().map(|n| n.id.clone()).collect()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Options, layout, quality};
    use serde_json::json;

    /// The load generator's containers view: `hosts` × `per_host` containers, each connected to
    /// the containers `c + k` of host `h + k + 1` for k < 3.
    fn loadgen(hosts: usize, per_host: usize) -> BTreeMap<String, NodeSummary> {
        let id = |h: usize, c: usize| format!("{h:04x}{c:04x}cafe;<container>");
        let mut nodes = BTreeMap::new();
        for h in 0..hosts {
            for c in 0..per_host {
                let adjacency: Vec<String> = (0..3)
                    .map(|k| id((h + k + 1) % hosts, (c + k) % per_host))
                    .collect();
                let n: NodeSummary = serde_json::from_value(json!({
                    "id": id(h, c),
                    "label": format!("app-{c}"),
                    "labelMinor": format!("host-{h}"),
                    "shape": "hexagon",
                    "parents": [{"id": format!("host-{h};<host>"), "label": format!("host-{h}"), "topologyId": "hosts"}],
                    "adjacency": adjacency,
                }))
                .unwrap();
                nodes.insert(n.id.clone(), n);
            }
        }
        nodes
    }

    #[test]
    fn containers_group_by_host_and_edges_merge() {
        let nodes = loadgen(20, 10);
        let g = grouped(&nodes, "hosts", &BTreeSet::new(), "containers");
        assert_eq!(g.structure.0.len(), 20);
        assert!(g.structure.0.iter().all(|id| is_group(id)));
        // Host h talks to h+1, h+2, h+3: 60 merged edges instead of 600.
        assert_eq!(g.structure.1.len(), 60);
        let look = &g.looks["group:host-3;<host>"];
        assert_eq!(
            (
                look.label.as_str(),
                look.label_minor.as_str(),
                look.stack,
                look.shape.as_str()
            ),
            ("host-3", "10 containers", true, "hexagon")
        );
        assert_eq!(g.members["group:host-3;<host>"].len(), 10);

        // Opened: its members are drawn, with their own edges to the other groups.
        let open = BTreeSet::from(["group:host-3;<host>".to_owned()]);
        let g = grouped(&nodes, "hosts", &open, "containers");
        assert_eq!(g.structure.0.len(), 19 + 10);
        assert!(!g.members.contains_key("group:host-3;<host>"));
        let from_member = g
            .structure
            .1
            .iter()
            .filter(|(a, _)| a.starts_with("0003"))
            .count();
        // Each member's 3 connections go to 3 different hosts.
        assert_eq!(from_member, 30);
    }

    #[test]
    fn lone_members_and_nodes_without_a_host_stay_themselves() {
        let mut nodes = loadgen(2, 1);
        let internet: NodeSummary = serde_json::from_value(json!({
            "id": "in-theinternet", "label": "The Internet", "pseudo": true,
            "adjacency": ["00000000cafe;<container>"],
        }))
        .unwrap();
        nodes.insert(internet.id.clone(), internet);
        let g = grouped(&nodes, "hosts", &BTreeSet::new(), "containers");
        assert!(g.members.is_empty());
        assert_eq!(g.structure, crate::structure(&nodes));
        assert_eq!(g.looks, crate::looks(&nodes));
    }

    /// The numbers of docs/map.md: the 200-container map, as it is and grouped by host.
    #[test]
    fn grouping_the_load_generators_map_cuts_crossings() {
        let nodes = loadgen(20, 10);
        let opts = Options::default();
        let labels = |looks: &BTreeMap<String, Look>| -> BTreeMap<String, (String, String)> {
            looks
                .iter()
                .map(|(id, l)| (id.clone(), (l.label.clone(), l.label_minor.clone())))
                .collect()
        };
        let measure = |structure: &Structure, looks: &BTreeMap<String, Look>| {
            let l = layout(structure.0.iter().map(String::as_str), &structure.1, &opts);
            quality(&l, &structure.1, &labels(looks), (20, 24))
        };
        let flat = measure(&crate::structure(&nodes), &crate::looks(&nodes));
        let g = grouped(&nodes, "hosts", &BTreeSet::new(), "containers");
        let by_host = measure(&g.structure, &g.looks);
        eprintln!("200 containers, 600 edges: as they are {flat:?}; grouped by host {by_host:?}");
        assert!(
            by_host.crossings * 10 < flat.crossings,
            "{flat:?} {by_host:?}"
        );
        assert_eq!(by_host.label_overlaps, 0);
    }
}
