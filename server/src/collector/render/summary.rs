//! NodeSummary (scope-render.md §12): what the browser sees of a rendered node — labels, shape,
//! metadata, metric and table rows, parents — in the JSON shape of Scope's app.

use std::collections::BTreeMap;

use serde_json::Value;
pub use shared::topology::{
    Column, MetadataRow, MetricRow, NodeSummary, Parent, Sample, Table, TableRow,
};

use super::super::report::{Metric, Report, Topology};
use super::views::image_name_without_version;
use super::*;

fn report_topology<'r>(report: &'r Report, topology: &str) -> Option<&'r Topology> {
    wire_name(topology).and_then(|w| report.topology(w))
}

/// The view a report topology is shown in first (for links to parents and children).
pub fn primary_view(topology: &str) -> Option<&'static str> {
    Some(match topology {
        PROCESS => "processes",
        CONTAINER => "containers",
        CONTAINER_IMAGE => "containers-by-image",
        POD => "pods",
        DEPLOYMENT | DAEMON_SET | STATEFUL_SET | CRON_JOB | JOB => "kube-controllers",
        SERVICE => "services",
        ECS_TASK => "ecs-tasks",
        ECS_SERVICE => "ecs-services",
        SWARM_SERVICE => "swarm-services",
        HOST => "hosts",
        PERSISTENT_VOLUME
        | PERSISTENT_VOLUME_CLAIM
        | STORAGE_CLASS
        | VOLUME_SNAPSHOT
        | VOLUME_SNAPSHOT_DATA => "pods",
        _ => return None,
    })
}

fn plural(count: u64, singular: &str, plural: &str) -> String {
    if count == 1 {
        format!("{count} {singular}")
    } else {
        format!("{count} {plural}")
    }
}

fn before_semicolon(id: &str) -> &str {
    id.split(';').next().unwrap_or(id)
}

/// Scope's `parseSingleComponentID`: `x` of `x;<tag>`, else empty.
fn single_component<'a>(id: &'a str, tag: &str) -> &'a str {
    match id.split_once(';') {
        Some((first, rest))
            if rest.strip_prefix('<').and_then(|r| r.strip_suffix('>')) == Some(tag) =>
        {
            first
        }
        _ => "",
    }
}

fn str_field<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn num_field(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// Labels, shape and the other fields that need no templates.
fn basics(report: &Report, n: &RNode) -> Option<NodeSummary> {
    let topology = report_topology(report, &n.topology);
    let mut s = NodeSummary {
        id: n.id.to_string(),
        label: String::new(),
        label_minor: String::new(),
        rank: String::new(),
        shape: topology.map_or_else(
            || "triangle".to_owned(),
            |t| {
                if t.shape.is_empty() {
                    "circle".to_owned()
                } else {
                    t.shape.clone()
                }
            },
        ),
        tag: topology.map(|t| t.tag.clone()).unwrap_or_default(),
        stack: false,
        pseudo: false,
        metadata: Vec::new(),
        parents: Vec::new(),
        metrics: Vec::new(),
        tables: Vec::new(),
        adjacency: n.adjacency.iter().map(String::from).collect(),
    };
    let latest = |k: &str| n.latest(k).unwrap_or("").to_owned();
    let count = |t: &str| n.counters.get(t).copied().unwrap_or(0);
    let kube_label = |s: &mut NodeSummary| {
        s.label = n
            .latest("kubernetes_name")
            .map(str::to_owned)
            .unwrap_or_else(|| before_semicolon(&n.id).to_owned());
        s.rank = format!("{}/{}", latest("kubernetes_namespace"), s.label);
    };
    match n.topology.as_str() {
        ENDPOINT => return None,
        PSEUDO => {
            s.pseudo = true;
            s.rank = n.id.strip_prefix("pseudo:").unwrap_or(&n.id).to_owned();
            if n.id == INCOMING_INTERNET || n.id == OUTGOING_INTERNET {
                s.label = "The Internet".into();
                s.label_minor = if n.id == INCOMING_INTERNET {
                    "Inbound connections"
                } else {
                    "Outbound connections"
                }
                .into();
                s.shape = "cloud".into();
            } else if let Some(name) = n.id.strip_prefix(SERVICE_PREFIX) {
                s.label = name.into();
                s.shape = "cloud".into();
            } else if let Some(host) = n.id.strip_prefix(UNCONTAINED_PREFIX) {
                s.label = "Uncontained".into();
                s.label_minor = host.into();
                s.shape = "square".into();
                s.stack = true;
            } else if let Some(host) = n.id.strip_prefix(UNMANAGED_PREFIX) {
                s.label = "Unmanaged".into();
                s.label_minor = host.into();
                s.shape = "square".into();
                s.stack = true;
            } else if let Some((_, addr, _)) = parse_endpoint_id(&n.id) {
                s.label = addr.into();
                s.shape = "circle".into();
            } else {
                s.label = s.rank.clone();
            }
        }
        PROCESS => {
            let (host, pid) = n.id.split_once(';').unwrap_or((&n.id, ""));
            let name = latest("name");
            let container = latest("docker_container_name");
            (s.label, s.label_minor) = match (name.is_empty(), container.is_empty()) {
                (false, false) => (name.clone(), format!("{host} ({container}:{pid})")),
                (false, true) => (name.clone(), format!("{host} ({pid})")),
                (true, false) => (pid.to_owned(), format!("{host} ({container})")),
                (true, true) => (pid.to_owned(), host.to_owned()),
            };
            s.rank = if name.is_empty() {
                host.to_owned()
            } else {
                name
            };
        }
        CONTAINER => {
            s.label = [
                "docker_label_com.amazonaws.ecs.container-name",
                "docker_label_io.kubernetes.container.name",
                "docker_env_MARATHON_APP_ID",
                "docker_container_name",
                "docker_container_hostname",
            ]
            .iter()
            .find_map(|k| n.latest(k))
            .map(str::to_owned)
            .unwrap_or_else(|| {
                single_component(&n.id, "container")
                    .chars()
                    .take(12)
                    .collect()
            });
            s.label_minor = n.host_id().to_owned();
            let image = image_name_without_version(n.latest("docker_image_name").unwrap_or(""));
            s.rank = if !image.is_empty() {
                image.to_owned()
            } else if !s.label_minor.is_empty() {
                s.label_minor.clone()
            } else {
                s.label.clone()
            };
        }
        CONTAINER_IMAGE => {
            let name = latest("docker_image_name");
            let short = image_name_without_version(&name);
            s.label = if !short.is_empty() && short != "<none>" {
                short.to_owned()
            } else if !name.is_empty() {
                name.clone()
            } else {
                before_semicolon(&n.id).to_owned()
            };
            s.label_minor = plural(count(CONTAINER), "container", "containers");
            s.rank = s.label.clone();
            s.stack = true;
        }
        POD => {
            kube_label(&mut s);
            s.label_minor = plural(count(CONTAINER), "container", "containers");
        }
        SERVICE => {
            kube_label(&mut s);
            s.label_minor = plural(count(POD), "pod", "pods");
            s.stack = true;
        }
        DEPLOYMENT | DAEMON_SET | STATEFUL_SET | CRON_JOB | JOB => {
            kube_label(&mut s);
            let kind = match n.topology.as_str() {
                DEPLOYMENT => "Deployment",
                DAEMON_SET => "DaemonSet",
                STATEFUL_SET => "StatefulSet",
                CRON_JOB => "CronJob",
                _ => "Job",
            };
            s.label_minor = format!("{kind} of {}", plural(count(POD), "pod", "pods"));
            s.stack = true;
        }
        PERSISTENT_VOLUME
        | PERSISTENT_VOLUME_CLAIM
        | STORAGE_CLASS
        | VOLUME_SNAPSHOT
        | VOLUME_SNAPSHOT_DATA => kube_label(&mut s),
        HOST => {
            let hostname = before_semicolon(&n.id);
            match hostname.split_once('.') {
                Some((first, rest)) => {
                    s.label = first.into();
                    s.label_minor = rest.into();
                    s.rank = rest.into();
                }
                None => s.label = hostname.into(),
            }
        }
        OVERLAY => {
            let peer = n.id.strip_prefix('#').unwrap_or(&n.id);
            let peer = peer.strip_prefix("docker_peer_").unwrap_or(peer);
            s.label = n.latest("weave_peer_nick_name").unwrap_or(peer).to_owned();
            s.label_minor = peer.into();
        }
        ECS_TASK => {
            s.label = n
                .latest("ecs_task_family")
                .unwrap_or_else(|| before_semicolon(&n.id))
                .to_owned();
        }
        ECS_SERVICE => {
            let (_, service) = n.id.split_once(';').unwrap_or(("", &n.id));
            s.label = service.to_owned();
            s.stack = true;
        }
        SWARM_SERVICE => {
            s.label = n
                .latest("service_name")
                .unwrap_or_else(|| before_semicolon(&n.id))
                .to_owned();
        }
        other if other.starts_with("group:") => {
            let mut parts = other.splitn(3, ':').skip(1);
            let (inner, _key) = (parts.next().unwrap_or(""), parts.next());
            let t = report_topology(report, inner);
            s.label = n.id.to_string();
            s.rank = n.id.to_string();
            if let Some(t) = t {
                let singular = if t.label.is_empty() {
                    &t.label_plural
                } else {
                    &t.label
                };
                s.label_minor = plural(count(inner), singular, &t.label_plural);
                s.shape = if t.shape.is_empty() {
                    "circle".into()
                } else {
                    t.shape.clone()
                };
                s.tag = t.tag.clone();
            }
            s.stack = true;
        }
        _ if topology.is_some() => s.label = n.id.to_string(),
        _ => return None,
    }
    Some(s)
}

/// Metadata rows from the topology's templates (§12), sorted by priority.
fn metadata_rows(t: &Topology, n: &RNode) -> Vec<MetadataRow> {
    let mut rows: Vec<MetadataRow> = t
        .metadata_templates
        .values()
        .filter_map(|tpl| {
            let id = str_field(tpl, "id");
            let from_latest = || n.latest(id).map(str::to_owned);
            let from_sets = || n.sets.get(id).map(|s| s.join(", "));
            let from_counters = || {
                n.counters
                    .get(id)
                    .map(|c| c.to_string())
                    .or_else(|| n.latest(&format!("count_{id}")).map(str::to_owned))
            };
            let value = match str_field(tpl, "from") {
                "latest" => from_latest(),
                "sets" => from_sets(),
                "counters" => from_counters(),
                _ => from_latest().or_else(from_sets).or_else(from_counters),
            }?;
            Some(MetadataRow {
                id: id.to_owned(),
                label: str_field(tpl, "label").to_owned(),
                value,
                priority: num_field(tpl, "priority"),
                data_type: str_field(tpl, "dataType").to_owned(),
                truncate: tpl.get("truncate").and_then(Value::as_i64).unwrap_or(0),
            })
        })
        .collect();
    rows.sort_by(|a, b| a.priority.total_cmp(&b.priority));
    rows
}

/// Scope shows a metric's last value cut (not rounded) to two decimals.
fn last_value(m: &Metric) -> f64 {
    m.samples
        .last()
        .map(|s| (s.value * 100.0).trunc() / 100.0)
        .unwrap_or(0.0)
}

fn metric_rows(t: &Topology, n: &RNode, with_samples: bool) -> Vec<MetricRow> {
    let mut rows: Vec<MetricRow> = t
        .metric_templates
        .values()
        .filter_map(|tpl| {
            let id = str_field(tpl, "id");
            let metric = n.metrics.get(id)?;
            Some(MetricRow {
                id: id.to_owned(),
                label: str_field(tpl, "label").to_owned(),
                format: str_field(tpl, "format").to_owned(),
                group: str_field(tpl, "group").to_owned(),
                value: last_value(metric),
                priority: num_field(tpl, "priority"),
                // Scope writes a metric without samples as `null` (Go's nil slice) here too.
                samples: (with_samples && !metric.samples.is_empty()).then(|| {
                    metric
                        .samples
                        .iter()
                        .map(|s| Sample {
                            date: s.date.to_rfc3339(),
                            value: s.value,
                        })
                        .collect()
                }),
                min: metric.min,
                max: metric.max,
                url: String::new(),
            })
        })
        .collect();
    rows.sort_by(|a, b| a.priority.total_cmp(&b.priority));
    rows
}

/// Scope's app shows every row a table has (its probe sends at most 20 and says how many it left
/// out); we show at most this many, counting the rest with those the probe left out.
const MAX_TABLE_ROWS: usize = 1_000;

/// How many rows the probe left out of a table (`table_truncation_count_<prefix>`, read as Go's
/// `Sscanf("%d")` reads it: an optional sign and digits at the start), 0 if it says nothing.
fn truncated_by_probe(n: &RNode, prefix: &str) -> i64 {
    let Some(value) = n.latest(&format!("table_truncation_count_{prefix}")) else {
        return 0;
    };
    let value = value.trim_start();
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let count: i64 = digits[..end].parse().unwrap_or(0);
    if value.starts_with('-') {
        -count
    } else {
        count
    }
}

fn tables(t: &Topology, n: &RNode) -> Vec<Table> {
    let mut out: Vec<Table> = t
        .table_templates
        .values()
        .map(|tpl| {
            let prefix = str_field(tpl, "prefix");
            let fixed = tpl.get("fixedRows").and_then(Value::as_object);
            let kind = match str_field(tpl, "type") {
                "" => "property-list",
                other => other,
            };
            let mut rows: Vec<TableRow>;
            // Only the node's entries under the prefix and the fixed rows are looked at (by binary
            // search): a node with many entries and a topology with many tables cost their rows.
            if kind == "multicolumn-table" {
                let mut by_row: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
                let under_prefix = n.latest.with_prefix(prefix).filter(|_| !prefix.is_empty());
                for (key, entry) in under_prefix {
                    super::budget::spend();
                    if let Some((row, column)) = key[prefix.len()..].split_once("___") {
                        by_row
                            .entry(row.to_owned())
                            .or_default()
                            .insert(column.to_owned(), entry.value.to_string());
                    }
                }
                rows = by_row
                    .into_iter()
                    .map(|(id, entries)| TableRow { id, entries })
                    .collect();
            } else {
                let row = |label: &str, value: &str| TableRow {
                    id: format!("label_{label}"),
                    entries: BTreeMap::from([
                        ("label".to_owned(), label.to_owned()),
                        ("value".to_owned(), value.to_owned()),
                    ]),
                };
                // (row, key): rows of one label keep the order of their keys.
                let mut keyed: Vec<(TableRow, &str)> = Vec::new();
                for (key, label) in fixed.into_iter().flatten() {
                    super::budget::spend();
                    if let (Some(label), Some(entry)) = (label.as_str(), n.latest.get(key)) {
                        keyed.push((row(label, &entry.value), key));
                    }
                }
                let under_prefix = n.latest.with_prefix(prefix).filter(|_| !prefix.is_empty());
                for (key, entry) in under_prefix {
                    super::budget::spend();
                    // A fixed row's label wins over the prefix's.
                    let is_fixed =
                        fixed.is_some_and(|f| f.get(key.as_str()).is_some_and(Value::is_string));
                    if !is_fixed {
                        keyed.push((row(&key[prefix.len()..], &entry.value), key));
                    }
                }
                keyed.sort_by(|(a, ak), (b, bk)| a.id.cmp(&b.id).then(ak.cmp(bk)));
                rows = keyed.into_iter().map(|(row, _)| row).collect();
            }
            let truncated =
                rows.len().saturating_sub(MAX_TABLE_ROWS) as i64 + truncated_by_probe(n, prefix);
            rows.truncate(MAX_TABLE_ROWS);
            Table {
                id: str_field(tpl, "id").to_owned(),
                label: str_field(tpl, "label").to_owned(),
                kind: kind.to_owned(),
                columns: tpl
                    .get("columns")
                    .and_then(|c| serde_json::from_value(c.clone()).ok()),
                rows,
                truncation_count: truncated,
            }
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

const PARENT_ORDER: [&str; 12] = [
    CONTAINER,
    CONTAINER_IMAGE,
    POD,
    DEPLOYMENT,
    DAEMON_SET,
    STATEFUL_SET,
    CRON_JOB,
    SERVICE,
    ECS_TASK,
    ECS_SERVICE,
    SWARM_SERVICE,
    HOST,
];

fn parents(report: &Report, n: &RNode) -> Vec<Parent> {
    let mut out = Vec::new();
    for topology in PARENT_ORDER {
        let (Some(view), Some(ids)) = (primary_view(topology), n.parents.get(topology)) else {
            continue;
        };
        let nodes = report_topology(report, topology);
        let mut ids = ids.clone();
        ids.sort();
        for id in ids {
            if n.id == id {
                continue;
            }
            // Only its label is needed: its edges and children are not copied (a hundred
            // thousand nodes naming one host copied the host's edges each time).
            let parent = nodes
                .and_then(|t| t.nodes.get(id.as_str()))
                .map(RNode::labelled)
                .unwrap_or_else(|| RNode::bare(id.clone(), topology));
            let label = basics(report, &parent).map(|s| s.label).unwrap_or_default();
            out.push(Parent {
                id: id.to_string(),
                label,
                topology_id: view.to_owned(),
            });
        }
    }
    out
}

/// Summarises a rendered node; `None` for nodes that are not shown (endpoints).
pub fn summarize(report: &Report, n: &RNode, with_samples: bool) -> Option<NodeSummary> {
    super::budget::spend();
    let mut s = basics(report, n)?;
    s.parents = parents(report, n);
    // Group nodes (which count children of their own topology) have no rows of their own.
    let group = n.counters.contains_key(&n.topology);
    if let Some(t) = report_topology(report, &n.topology).filter(|_| !group) {
        s.metadata = metadata_rows(t, n);
        s.metrics = metric_rows(t, n, with_samples);
        s.tables = tables(t, n);
    }
    Some(s)
}

/// What `hideCommandLineArguments` and `hideEnvironmentVariables` take out (§15).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Censor {
    pub command_line: bool,
    pub environment: bool,
}

impl Censor {
    pub fn apply(&self, s: &mut NodeSummary) {
        if self.command_line {
            for row in &mut s.metadata {
                if (row.id == "cmdline" || row.id == "docker_container_command")
                    && let Some((first, _)) = row.value.split_once(' ')
                {
                    row.value = first.to_owned();
                }
            }
        }
        if self.environment {
            s.tables.retain(|t| !t.id.starts_with("docker_env_"));
        }
    }
}

/// Summaries of a rendered view, by id (topology answers and websocket frames: no samples).
pub fn summaries(report: &Report, nodes: &Nodes, censor: Censor) -> BTreeMap<String, NodeSummary> {
    summarised(report, nodes, censor)
        .map(|(id, s)| (id.to_string(), s))
        .collect()
}

/// [`summaries`], each serialised as soon as it is made: what the collector keeps for readers and
/// websocket diffs. A node's JSON takes about half the memory of its summary (whose every label,
/// id and format is a string of its own), and the summaries are never all held at once.
pub fn summaries_json(
    report: &Report,
    nodes: &Nodes,
    censor: Censor,
) -> serde_json::Result<BTreeMap<String, Box<serde_json::value::RawValue>>> {
    summarised(report, nodes, censor)
        .map(|(id, s)| Ok((id.to_string(), serde_json::value::to_raw_value(&s)?)))
        .collect()
}

fn summarised<'a>(
    report: &'a Report,
    nodes: &'a Nodes,
    censor: Censor,
) -> impl Iterator<Item = (&'a Name, NodeSummary)> + 'a {
    nodes.iter().filter_map(move |(id, n)| {
        let mut s = summarize(report, n, false)?;
        censor.apply(&mut s);
        Some((id, s))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::collector::report::{LatestEntry, Metric, Node, Time, Topology};

    /// A container with 25 environment variables, of which its probe says it left 7 out, and a
    /// metric without samples.
    fn container_report() -> (Report, RNode) {
        let mut latest: Vec<(String, LatestEntry)> = (0..25)
            .map(|i| {
                (
                    format!("docker_env_VAR{i:02}"),
                    LatestEntry::new("x", Time(1)),
                )
            })
            .collect();
        latest.push((
            "table_truncation_count_docker_env_".to_owned(),
            LatestEntry::new("7", Time(1)),
        ));
        let node = Node {
            id: "c1;<container>".into(),
            topology: "container".into(),
            latest: Arc::new(latest.into_iter().collect()),
            metrics: Arc::new([("docker_cpu_total_usage".to_owned(), Metric::default())].into()),
            ..Node::default()
        };
        let mut report = Report::with_defaults();
        let topology: &mut Topology = report.topologies.entry("Container".into()).or_default();
        topology.table_templates.insert(
            "docker_env_".into(),
            json!({"id": "docker_env_", "label": "Environment variables", "prefix": "docker_env_"}),
        );
        topology.metric_templates.insert(
            "docker_cpu_total_usage".into(),
            json!({"id": "docker_cpu_total_usage", "label": "CPU", "format": "percent"}),
        );
        let rnode = RNode::from_report(&node);
        topology.nodes.insert(node.id.clone(), node);
        (report, rnode)
    }

    #[test]
    fn tables_show_every_row_and_count_what_the_probe_left_out() {
        let (report, node) = container_report();
        let summary = summarize(&report, &node, true).unwrap();
        let env = &summary.tables[0];
        assert_eq!(env.rows.len(), 25);
        assert_eq!(env.truncation_count, 7);
    }

    /// A property list takes its fixed rows (labelled by the template) and the node's entries under
    /// its prefix (labelled by the rest of the key), each entry once, in label order.
    #[test]
    fn property_lists_take_fixed_rows_and_the_prefix_only() {
        let (mut report, mut node) = container_report();
        report
            .topologies
            .get_mut("Container")
            .unwrap()
            .table_templates = BTreeMap::from([(
            "labels".into(),
            json!({"id": "labels", "prefix": "label_", "fixedRows": {"owner": "Owner", "label_x": "Ex"}}),
        )]);
        let latest = Arc::make_mut(&mut node.latest);
        for (k, v) in [
            ("label_b", "2"),
            ("label_a", "1"),
            ("label_x", "3"),
            ("labelled", "no"),
            ("owner", "me"),
            ("zzz", "no"),
        ] {
            latest.insert(k, LatestEntry::new(v, Time(1)));
        }
        let summary = summarize(&report, &node, false).unwrap();
        let rows: Vec<(&str, &str)> = summary.tables[0]
            .rows
            .iter()
            .map(|r| (r.entries["label"].as_str(), r.entries["value"].as_str()))
            .collect();
        assert_eq!(rows, [("Ex", "3"), ("Owner", "me"), ("a", "1"), ("b", "2")]);
    }

    /// Scope's fallback label: the container id without its `;<container>`, cut to 12 characters.
    #[test]
    fn a_nameless_container_is_labelled_by_its_short_id() {
        let (report, node) = container_report();
        for (id, label) in [
            ("0123456789abcdef;<container>", "0123456789ab"),
            ("short;<container>", "short"),
            ("not-a-container-id", ""),
            ("abc;<pod>", ""),
        ] {
            let mut bare = RNode::clone(&node);
            bare.id = Name::from(id);
            bare.latest = Default::default();
            assert_eq!(
                summarize(&report, &bare, false).unwrap().label,
                label,
                "{id}"
            );
        }
    }

    #[test]
    fn a_metric_without_samples_has_null_samples_in_details() {
        let (report, node) = container_report();
        let summary = summarize(&report, &node, true).unwrap();
        assert_eq!(summary.metrics.len(), 1);
        assert_eq!(summary.metrics[0].samples, None);
    }
}
