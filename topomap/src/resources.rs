//! The resource view (Scope's): hosts, their containers and the containers' processes as three rows
//! of boxes whose widths share one scale. A host is as wide as its capacity (the metric's `max`, or
//! its use when it has none); a container or process as wide as what it uses, inside its parent's
//! box, largest first. So a host full of busy containers looks full, and a busy process stands out
//! wherever it runs.

use std::collections::BTreeMap;

use shared::topology::NodeSummary;

/// What the boxes are sized by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Cpu,
    Memory,
}

impl Metric {
    /// From the URL's `metric=`: `memory`, anything else CPU.
    pub fn parse(s: &str) -> Metric {
        if s == "memory" {
            Metric::Memory
        } else {
            Metric::Cpu
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Memory => "memory",
        }
    }

    /// The metric's id in each layer's nodes, as Scope's probes name them.
    fn id(self, layer: Layer) -> &'static str {
        match (self, layer) {
            (Metric::Cpu, Layer::Host) => "host_cpu_usage_percent",
            (Metric::Cpu, Layer::Container) => "docker_cpu_total_usage",
            (Metric::Cpu, Layer::Process) => "process_cpu_usage_percent",
            (Metric::Memory, Layer::Host) => "host_mem_usage_bytes",
            (Metric::Memory, Layer::Container) => "docker_memory_usage",
            (Metric::Memory, Layer::Process) => "process_memory_usage_bytes",
        }
    }
}

/// The three rows, top to bottom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    Host,
    Container,
    Process,
}

impl Layer {
    /// The view a node of this layer is shown in (for its details).
    pub fn view(self) -> &'static str {
        match self {
            Layer::Host => "hosts",
            Layer::Container => "containers",
            Layer::Process => "processes",
        }
    }
}

/// One box: `x` and `width` are fractions of the whole width (0..=1).
#[derive(Debug, Clone, PartialEq)]
pub struct Box {
    pub id: String,
    pub label: String,
    pub layer: Layer,
    pub x: f64,
    pub width: f64,
    /// What the node uses, in the metric's unit, and that unit's format (`percent`, `filesize`).
    pub value: f64,
    pub format: String,
    /// How full the box is (use over capacity; 1 for containers and processes, whose width is
    /// their use).
    pub fill: f64,
}

/// A node's value of the metric, with its max and format; `None` when it does not report it.
fn reading(n: &NodeSummary, id: &str) -> Option<(f64, f64, String)> {
    n.metrics
        .iter()
        .find(|m| m.id == id)
        .filter(|m| m.value.is_finite() && m.value >= 0.0)
        .map(|m| (m.value, m.max, m.format.clone()))
}

/// The parent of `n` in a topology (`hosts`, `containers`).
fn parent<'a>(n: &'a NodeSummary, topology: &str) -> Option<&'a str> {
    n.parents
        .iter()
        .find(|p| p.topology_id == topology)
        .map(|p| p.id.as_str())
}

/// The nodes that report metric `id`, pseudo nodes left out, with their readings.
fn readings<'a>(
    nodes: &'a BTreeMap<String, NodeSummary>,
    id: &'static str,
) -> impl Iterator<Item = (&'a NodeSummary, (f64, f64, String))> {
    nodes
        .values()
        .filter(|n| !n.pseudo)
        .filter_map(move |n| reading(n, id).map(|r| (n, r)))
}

struct Item<'a> {
    node: &'a NodeSummary,
    value: f64,
    format: String,
}

/// Places `items` side by side from `x`, largest first, `scale` wide per unit, shrunk together if
/// they would overflow `room`.
fn row<'a>(
    mut items: Vec<Item<'a>>,
    layer: Layer,
    x: f64,
    room: f64,
    scale: f64,
    out: &mut Vec<Box>,
) -> Vec<(&'a NodeSummary, f64, f64)> {
    items.sort_by(|a, b| {
        b.value
            .total_cmp(&a.value)
            .then_with(|| a.node.label.cmp(&b.node.label))
            .then_with(|| a.node.id.cmp(&b.node.id))
    });
    let wanted: f64 = items.iter().map(|i| i.value * scale).sum();
    let shrink = if wanted > room && wanted > 0.0 {
        room / wanted
    } else {
        1.0
    };
    let mut cursor = x;
    let mut placed = Vec::with_capacity(items.len());
    for item in items {
        let width = item.value * scale * shrink;
        out.push(Box {
            id: item.node.id.clone(),
            label: item.node.label.clone(),
            layer,
            x: cursor,
            width,
            value: item.value,
            format: item.format,
            fill: 1.0,
        });
        placed.push((item.node, cursor, width));
        cursor += width;
    }
    placed
}

/// The boxes of the three rows, hosts first. Pseudo nodes and nodes without the metric are left
/// out; containers and processes whose host (or container) is not there too. Linear in the nodes
/// plus a sort per parent.
pub fn layout(
    hosts: &BTreeMap<String, NodeSummary>,
    containers: &BTreeMap<String, NodeSummary>,
    processes: &BTreeMap<String, NodeSummary>,
    metric: Metric,
) -> Vec<Box> {
    let items = |nodes, layer| readings(nodes, metric.id(layer));
    // Hosts: as wide as their capacity.
    let mut host_list: Vec<(&NodeSummary, f64, f64, String)> = items(hosts, Layer::Host)
        .map(|(n, (value, max, format))| {
            let capacity = if max > value { max } else { value };
            (n, value, capacity, format)
        })
        .collect();
    let total: f64 = host_list.iter().map(|h| h.2).sum();
    if total <= 0.0 {
        return Vec::new();
    }
    host_list.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.label.cmp(&b.0.label)));
    let scale = 1.0 / total;

    let mut containers_of: BTreeMap<&str, Vec<Item>> = BTreeMap::new();
    for (n, (value, _, format)) in items(containers, Layer::Container) {
        if let Some(host) = parent(n, "hosts") {
            containers_of.entry(host).or_default().push(Item {
                node: n,
                value,
                format,
            });
        }
    }
    let mut processes_of_container: BTreeMap<&str, Vec<Item>> = BTreeMap::new();
    let mut processes_of_host: BTreeMap<&str, Vec<Item>> = BTreeMap::new();
    for (n, (value, _, format)) in items(processes, Layer::Process) {
        let item = Item {
            node: n,
            value,
            format,
        };
        if let Some(container) = parent(n, "containers") {
            processes_of_container
                .entry(container)
                .or_default()
                .push(item);
        } else if let Some(host) = parent(n, "hosts") {
            processes_of_host.entry(host).or_default().push(item);
        }
    }

    let mut out = Vec::new();
    let mut x = 0.0;
    for (host, value, capacity, format) in host_list {
        let width = capacity * scale;
        out.push(Box {
            id: host.id.clone(),
            label: host.label.clone(),
            layer: Layer::Host,
            x,
            width,
            value,
            format,
            fill: if capacity > 0.0 {
                value / capacity
            } else {
                0.0
            },
        });
        let placed = row(
            containers_of.remove(host.id.as_str()).unwrap_or_default(),
            Layer::Container,
            x,
            width,
            scale,
            &mut out,
        );
        // Processes under their container, then the host's own after its containers.
        let mut used = 0.0;
        for (container, cx, cw) in placed {
            used += cw;
            let inside = processes_of_container
                .remove(container.id.as_str())
                .unwrap_or_default();
            row(inside, Layer::Process, cx, cw, scale, &mut out);
        }
        let own = processes_of_host
            .remove(host.id.as_str())
            .unwrap_or_default();
        row(own, Layer::Process, x + used, width - used, scale, &mut out);
        x += width;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(id: &str, metric: &str, value: f64, max: f64, parents: &[(&str, &str)]) -> NodeSummary {
        serde_json::from_value(json!({
            "id": id,
            "label": id,
            "metrics": [{"id": metric, "value": value, "max": max, "format": "percent"}],
            "parents": parents.iter().map(|(t, p)| json!({"id": p, "topologyId": t})).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    fn map(nodes: Vec<NodeSummary>) -> BTreeMap<String, NodeSummary> {
        nodes.into_iter().map(|n| (n.id.clone(), n)).collect()
    }

    fn find<'a>(boxes: &'a [Box], id: &str) -> &'a Box {
        boxes.iter().find(|b| b.id == id).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn hosts_share_the_width_by_capacity_and_children_nest_by_use() {
        let hosts = map(vec![
            node("small", "host_cpu_usage_percent", 10.0, 100.0, &[]),
            node("big", "host_cpu_usage_percent", 150.0, 300.0, &[]),
        ]);
        let containers = map(vec![
            node(
                "c1",
                "docker_cpu_total_usage",
                40.0,
                0.0,
                &[("hosts", "big")],
            ),
            node(
                "c2",
                "docker_cpu_total_usage",
                80.0,
                0.0,
                &[("hosts", "big")],
            ),
            node(
                "c3",
                "docker_cpu_total_usage",
                5.0,
                0.0,
                &[("hosts", "gone")],
            ),
        ]);
        let processes = map(vec![
            node(
                "p1",
                "process_cpu_usage_percent",
                30.0,
                0.0,
                &[("containers", "c1"), ("hosts", "big")],
            ),
            node(
                "p2",
                "process_cpu_usage_percent",
                20.0,
                0.0,
                &[("hosts", "big")],
            ),
            node(
                "p3",
                "process_cpu_usage_percent",
                4.0,
                0.0,
                &[("hosts", "small")],
            ),
        ]);
        let boxes = layout(&hosts, &containers, &processes, Metric::Cpu);
        // Capacity 300 + 100: the big host first, three quarters wide, half full.
        let (big, small) = (find(&boxes, "big"), find(&boxes, "small"));
        assert!(close(big.x, 0.0) && close(big.width, 0.75) && close(big.fill, 0.5));
        assert!(close(small.x, 0.75) && close(small.width, 0.25) && close(small.fill, 0.1));
        // Containers inside their host, largest first, on the same scale (1/400 per unit).
        let (c1, c2) = (find(&boxes, "c1"), find(&boxes, "c2"));
        assert!(close(c2.x, 0.0) && close(c2.width, 0.2));
        assert!(close(c1.x, 0.2) && close(c1.width, 0.1));
        assert!(
            boxes.iter().all(|b| b.id != "c3"),
            "a container of a host not shown"
        );
        // A container's process inside it; the host's own after its containers.
        let (p1, p2, p3) = (find(&boxes, "p1"), find(&boxes, "p2"), find(&boxes, "p3"));
        assert!(close(p1.x, c1.x) && close(p1.width, 0.075));
        assert!(close(p2.x, 0.3) && close(p2.width, 0.05));
        assert!(close(p3.x, 0.75) && close(p3.width, 0.01));
        assert_eq!(p1.layer, Layer::Process);
    }

    #[test]
    fn children_that_overflow_their_parent_are_shrunk_into_it() {
        let hosts = map(vec![node("h", "host_mem_usage_bytes", 100.0, 0.0, &[])]);
        let containers = map(vec![
            node("a", "docker_memory_usage", 90.0, 0.0, &[("hosts", "h")]),
            node("b", "docker_memory_usage", 90.0, 0.0, &[("hosts", "h")]),
        ]);
        let boxes = layout(&hosts, &containers, &BTreeMap::new(), Metric::Memory);
        let (a, b) = (find(&boxes, "a"), find(&boxes, "b"));
        assert!(close(a.width, 0.5) && close(b.width, 0.5));
        assert!(close(b.x + b.width, 1.0));
        // Nothing to size by: no boxes, not a division by zero.
        let idle = map(vec![node("h", "host_mem_usage_bytes", 0.0, 0.0, &[])]);
        assert!(layout(&idle, &containers, &BTreeMap::new(), Metric::Memory).is_empty());
        // CPU asked for, memory reported: nothing.
        assert!(layout(&hosts, &containers, &BTreeMap::new(), Metric::Cpu).is_empty());
    }

    #[test]
    fn every_box_stays_inside_its_row_at_scale() {
        let hosts = map((0..20)
            .map(|h| node(&format!("h{h}"), "host_cpu_usage_percent", 50.0, 100.0, &[]))
            .collect());
        let containers = map((0..2000)
            .map(|c| {
                let host = format!("h{}", c % 20);
                node(
                    &format!("c{c}"),
                    "docker_cpu_total_usage",
                    (c % 7) as f64,
                    0.0,
                    &[("hosts", &host)],
                )
            })
            .collect());
        let boxes = layout(&hosts, &containers, &BTreeMap::new(), Metric::Cpu);
        assert_eq!(boxes.len(), 2020);
        for b in &boxes {
            assert!(b.x >= -1e-9 && b.x + b.width <= 1.0 + 1e-9, "{b:?}");
        }
    }
}
