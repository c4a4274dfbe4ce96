//! Node details (scope-render.md §13): a node's summary with samples, its controls, its children
//! grouped by topology, and its inbound and outbound connections.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;
pub use shared::topology::{ChildGroup, ConnectionRow, Connections, Control, NodeDetails};

use super::net;
use super::summary::{Column, MetadataRow, NodeSummary, primary_view, summarize};
use super::topologies::{Query, ViewDesc, transform};
use super::*;

fn column(id: &str, label: &str, data_type: &str, default_sort: bool) -> Column {
    Column {
        id: id.to_owned(),
        label: label.to_owned(),
        default_sort,
        data_type: data_type.to_owned(),
    }
}

/// Children groups in Scope's fixed order, with their columns.
fn child_group_specs() -> Vec<(&'static str, &'static str, Vec<Column>)> {
    vec![
        (
            POD,
            "Pods",
            vec![
                column("kubernetes_state", "State", "", false),
                column(CONTAINER, "# Containers", "number", false),
                column("kubernetes_ip", "IP", "ip", false),
            ],
        ),
        (
            ECS_TASK,
            "Tasks",
            vec![column("ecs_created_at", "Created At", "datetime", false)],
        ),
        (
            CONTAINER,
            "Containers",
            vec![
                column("docker_cpu_total_usage", "CPU", "number", false),
                column("docker_memory_usage", "Memory", "number", false),
            ],
        ),
        (
            PROCESS,
            "Processes",
            vec![
                column("pid", "PID", "number", false),
                column("process_cpu_usage_percent", "CPU", "number", false),
                column("process_memory_usage_bytes", "Memory", "number", false),
            ],
        ),
        (CONTAINER_IMAGE, "Container images", Vec::new()),
        (PERSISTENT_VOLUME, "Persistent Volumes", Vec::new()),
        (
            PERSISTENT_VOLUME_CLAIM,
            "Persistent Volume Claims",
            Vec::new(),
        ),
        (STORAGE_CLASS, "Storage Classes", Vec::new()),
        (VOLUME_SNAPSHOT, "Volume Snapshots", Vec::new()),
        (VOLUME_SNAPSHOT_DATA, "Volume Snapshot Data", Vec::new()),
    ]
}

fn children(report: &Report, n: &RNode) -> Vec<ChildGroup> {
    let mut by_topology: BTreeMap<String, Vec<NodeSummary>> = BTreeMap::new();
    for child in n.children.values() {
        if child.id == n.id {
            continue;
        }
        if let Some(s) = summarize(report, child, false) {
            by_topology
                .entry(child.topology.to_string())
                .or_default()
                .push(s);
        }
    }
    let mut out = Vec::new();
    for (topology, label, columns) in child_group_specs() {
        if let Some(mut nodes) = by_topology.remove(topology) {
            nodes.sort_by(|a, b| a.id.cmp(&b.id));
            out.push(ChildGroup {
                id: String::new(),
                label: label.to_owned(),
                nodes: Some(nodes),
                topology_id: primary_view(topology).unwrap_or("").to_owned(),
                columns: Some(columns),
            });
        }
    }
    // Scope lists other child topologies as groups without their nodes; so do we, for the same UI.
    for topology in by_topology.keys() {
        let (Some(view), Some(t)) = (
            primary_view(topology),
            wire_name(topology).and_then(|w| report.topology(w)),
        ) else {
            continue;
        };
        // As Scope's fallback group has it (render/detailed/node.go): no id, no columns.
        out.push(ChildGroup {
            id: String::new(),
            label: t.label_plural.clone(),
            nodes: None,
            topology_id: view.to_owned(),
            columns: Some(Vec::new()),
        });
    }
    out
}

fn controls(report: &Report, n: &RNode) -> Vec<Control> {
    let Some(topology) = wire_name(&n.topology).and_then(|w| report.topology(w)) else {
        return Vec::new();
    };
    let Some(probe) = n.latest("control_probe_id") else {
        return Vec::new();
    };
    if !topology.nodes.contains_key(n.id.as_str()) {
        return Vec::new();
    }
    let active = n.latest("active_controls").unwrap_or("");
    active
        .split(';')
        .filter_map(|name| {
            let c = topology.controls.get(name)?;
            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let own_probe = s("probeId");
            Some(Control {
                probe_id: if own_probe.is_empty() {
                    probe.to_owned()
                } else {
                    own_probe
                },
                node_id: n.id.to_string(),
                id: name.to_owned(),
                human: s("human"),
                icon: s("icon"),
                confirmation: s("confirmation"),
                rank: c.get("rank").and_then(Value::as_i64).unwrap_or(0),
            })
        })
        .collect()
}

fn is_internet(id: &str) -> bool {
    id == INCOMING_INTERNET || id == OUTGOING_INTERNET
}

/// Endpoint children of a node by id, plus the ids they are copies of (mapped back to the child).
fn endpoint_children(n: &RNode) -> (Vec<&Arc<RNode>>, BTreeMap<Name, Name>) {
    let mut list = Vec::new();
    let mut ids = BTreeMap::new();
    for child in n.children.values().filter(|c| c.topology == ENDPOINT) {
        list.push(child);
        ids.insert(child.id.clone(), child.id.clone());
        if let Some(copy) = child.latest("copy_of") {
            ids.entry(Name::from(copy))
                .or_insert_with(|| child.id.clone());
        }
    }
    (list, ids)
}

/// An endpoint of a node the viewed node points to: the node's place in its edges, the node, and
/// the endpoint's id.
type Owner<'a> = (usize, &'a Arc<RNode>, String);

/// Connections one details answer counts at most (a hostile node's edges times its neighbours'
/// endpoints could otherwise be their product).
const MAX_CONNECTIONS: usize = 1_000_000;

#[derive(Default)]
struct Counter {
    counted: HashSet<String>,
    counts: BTreeMap<(String, String, String, String), u64>,
}

impl Counter {
    /// One connection between `local` (an endpoint of the viewed node) and `remote` (of another),
    /// identified by its source endpoint so it counts once.
    fn add(
        &mut self,
        outgoing: bool,
        local_node: &str,
        remote_node: &str,
        local: (&str, Option<&RNode>),
        remote: (&str, Option<&RNode>),
    ) {
        let (src, dst) = if outgoing {
            (local, remote)
        } else {
            (remote, local)
        };
        let id = src
            .1
            .and_then(|n| n.latest("copy_of"))
            .unwrap_or(src.0)
            .to_owned();
        if self.counted.contains(&id) {
            return;
        }
        let Some((_, _, port)) = parse_endpoint_id(dst.0) else {
            return;
        };
        let addr = |endpoint: &str| parse_endpoint_id(endpoint).map(|(_, a, _)| a.to_owned());
        let local_addr = if is_internet(local_node) {
            match addr(local.0) {
                Some(a) => a,
                None => return,
            }
        } else {
            String::new()
        };
        let remote_addr = if is_internet(remote_node) {
            match addr(remote.0) {
                Some(a) => a,
                None => return,
            }
        } else {
            String::new()
        };
        let count = src
            .1
            .and_then(|n| n.latest("conn_count"))
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(1);
        self.counted.insert(id);
        *self
            .counts
            .entry((
                remote_node.to_owned(),
                remote_addr,
                local_addr,
                port.to_owned(),
            ))
            .or_default() += count;
    }
}

fn address_label(report: &Report, addr: &str) -> String {
    match net::dns_names(report, addr).first() {
        Some(name) => format!("{name} ({addr})"),
        None => addr.to_owned(),
    }
}

fn meta(id: &str, value: String) -> MetadataRow {
    MetadataRow {
        id: id.to_owned(),
        label: String::new(),
        value,
        priority: 0.0,
        data_type: String::new(),
        truncate: 0,
    }
}

fn connection_rows(
    report: &Report,
    nodes: &Nodes,
    counter: Counter,
    include_local: bool,
) -> Vec<ConnectionRow> {
    // Labels are worked out once per remote node and per address, not once per row.
    let mut node_labels: HashMap<String, (String, String)> = HashMap::new();
    let mut address_labels: HashMap<String, String> = HashMap::new();
    let mut label_of_address = |addr: &str| {
        address_labels
            .entry(addr.to_owned())
            .or_insert_with(|| address_label(report, addr))
            .clone()
    };
    let mut rows: Vec<ConnectionRow> = counter
        .counts
        .into_iter()
        .map(|((remote_node, remote_addr, local_addr, port), count)| {
            let (mut label, mut label_minor) = if remote_addr.is_empty() {
                node_labels
                    .entry(remote_node.clone())
                    .or_insert_with(|| {
                        nodes
                            .get(remote_node.as_str())
                            .and_then(|n| summarize(report, n, false))
                            .map(|s| (s.label, s.label_minor))
                            .unwrap_or_default()
                    })
                    .clone()
            } else {
                Default::default()
            };
            if !remote_addr.is_empty() {
                label = label_of_address(&remote_addr);
                label_minor = String::new();
            }
            let mut metadata = Vec::new();
            // Scope's rows carry no data types: the table's columns say them.
            if include_local {
                metadata.push(meta("remote", label_of_address(&local_addr)));
            }
            metadata.push(meta("port", port.clone()));
            metadata.push(meta("count", count.to_string()));
            ConnectionRow {
                id: format!("{remote_node}-{remote_addr}-{local_addr}-{port}"),
                node_id: remote_node,
                label,
                label_minor,
                metadata,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    rows
}

fn connections(report: &Report, view: &str, n: &RNode, nodes: &Nodes) -> Vec<Connections> {
    let internet = is_internet(&n.id);
    let mut columns = Vec::new();
    if internet {
        // Scope's `InternetColumns`: the remote column has no data type.
        columns.push(column("remote", "Remote", "", false));
    }
    columns.push(column("port", "Port", "number", false));
    columns.push(column("count", "Count", "number", true));

    let (local_endpoints, local_ids) = endpoint_children(n);
    // Inbound: nodes with an edge to this one, their endpoints' targets among ours.
    let mut inbound = Counter::default();
    for other in nodes.values() {
        if !other.adjacency.contains(&n.id) {
            continue;
        }
        let (remote_endpoints, _) = endpoint_children(other);
        for remote in remote_endpoints {
            for target in &remote.adjacency {
                if let Some(local_id) = local_ids.get(target) {
                    let local = n.children.get(local_id).map(|c| c.as_ref());
                    inbound.add(
                        false,
                        &n.id,
                        &other.id,
                        (local_id, local),
                        (&remote.id, Some(remote)),
                    );
                }
            }
        }
    }
    // Outbound: our endpoints' targets among the endpoints of the nodes we point to, looked up in
    // one index of those endpoints (scanning all our endpoints' edges again for each node we
    // point to cost their product). Matches are counted in the order a scan per node would meet
    // them (node, then our endpoint, then its edge), since each source endpoint counts once.
    let mut owners: HashMap<&str, Vec<Owner>> = HashMap::new();
    let mut remote_ids_of = Vec::new();
    for (index, target_id) in n.adjacency.iter().enumerate() {
        if let Some(other) = nodes.get(target_id) {
            remote_ids_of.push((index, other, endpoint_children(other).1));
        }
    }
    for (index, other, remote_ids) in &remote_ids_of {
        for (alias, remote_id) in remote_ids {
            owners
                .entry(alias.as_str())
                .or_default()
                .push((*index, *other, remote_id.to_string()));
        }
    }
    let mut found = Vec::new();
    'endpoints: for (at, local) in local_endpoints.iter().enumerate() {
        for (edge, target) in local.adjacency.iter().enumerate() {
            super::budget::spend();
            for (index, other, remote_id) in owners.get(target.as_str()).into_iter().flatten() {
                if found.len() == MAX_CONNECTIONS {
                    break 'endpoints;
                }
                found.push(((*index, at, edge), *other, remote_id.as_str(), *local));
            }
        }
    }
    found.sort_unstable_by_key(|(order, ..)| *order);
    let mut outbound = Counter::default();
    for (_, other, remote_id, local) in found {
        super::budget::spend();
        let remote = other.children.get(remote_id).map(|c| c.as_ref());
        outbound.add(
            true,
            &n.id,
            &other.id,
            (&local.id, Some(local)),
            (remote_id, remote),
        );
    }
    vec![
        Connections {
            id: "incoming-connections".into(),
            topology_id: view.to_owned(),
            label: "Inbound".into(),
            columns: columns.clone(),
            connections: connection_rows(report, nodes, inbound, internet),
        },
        Connections {
            id: "outgoing-connections".into(),
            topology_id: view.to_owned(),
            label: "Outbound".into(),
            columns,
            connections: connection_rows(report, nodes, outbound, internet),
        },
    ]
}

/// `GET /api/topology/{view}/{id}`: `None` when the view has no such node.
pub fn node_details(
    ctx: &mut Ctx,
    view: &ViewDesc,
    id: &str,
    query: &Query,
) -> Option<NodeDetails> {
    let rendered = views::render(ctx, view.id)?;
    let node = rendered.nodes.get(id)?.clone();
    let mut filtered = transform(view, &rendered, query);
    if !filtered.nodes.contains_key(id) {
        filtered.nodes.insert(Name::from(id), node);
        filtered.filtered = filtered.filtered.saturating_sub(1);
    }
    let node = filtered.nodes.get(id)?;
    let mut summary = summarize(ctx.report, node, true)?;
    let censor = query.censor();
    censor.apply(&mut summary);
    let mut kids = children(ctx.report, node);
    for g in &mut kids {
        for s in g.nodes.iter_mut().flatten() {
            censor.apply(s);
        }
    }
    Some(NodeDetails {
        controls: controls(ctx.report, node),
        children: kids,
        connections: connections(ctx.report, view.id, node, &filtered.nodes),
        summary,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::collector::report::Time;

    /// A child of a topology without a group of its own is listed as Scope's fallback group lists
    /// it: no id, no nodes, no columns.
    #[test]
    fn children_without_a_group_spec_are_listed_as_scope_s_fallback_group() {
        let report = Report::with_defaults();
        let mut host = RNode::bare("h1;<host>", HOST);
        host.set_latest("host_name", "h1", Time(1));
        let mut pod = RNode::bare("p1;<pod>", POD);
        pod.children_mut().insert(host.id.clone(), Arc::new(host));
        let groups = children(&report, &pod);
        assert_eq!(groups.len(), 1);
        let group = &groups[0];
        assert_eq!(
            (
                group.id.as_str(),
                group.topology_id.as_str(),
                group.label.as_str()
            ),
            ("", "hosts", "hosts")
        );
        assert!(group.nodes.is_none());
        assert_eq!(group.columns, Some(Vec::new()));
    }
}
