//! Scope's topology API as the browser sees it (`/api/app/{instance}/api/topology…`, shared
//! scope-render.md §9–§16): the collector serializes these, the app deserializes them. Field names
//! and omissions follow Scope's JSON, so Scope's own UI could read the same answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataRow {
    pub id: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub value: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: f64,
    #[serde(rename = "dataType", default, skip_serializing_if = "String::is_empty")]
    pub data_type: String,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub truncate: i64,
}

/// One metric sample: RFC 3339 date and value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub date: String,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    pub id: String,
    #[serde(default)]
    pub label: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub format: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default)]
    pub value: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: f64,
    /// `null` in topology answers and websocket frames; node details carry them.
    #[serde(default)]
    pub samples: Option<Vec<Sample>>,
    #[serde(default)]
    pub min: f64,
    #[serde(default)]
    pub max: f64,
    #[serde(default)]
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub id: String,
    #[serde(default)]
    pub label: String,
    #[serde(rename = "defaultSort", default)]
    pub default_sort: bool,
    #[serde(rename = "dataType", default)]
    pub data_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRow {
    pub id: String,
    #[serde(default)]
    pub entries: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub id: String,
    #[serde(default)]
    pub label: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub columns: Option<Vec<Column>>,
    #[serde(default)]
    pub rows: Vec<TableRow>,
    #[serde(
        rename = "truncationCount",
        default,
        skip_serializing_if = "is_zero_i64"
    )]
    pub truncation_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parent {
    pub id: String,
    #[serde(default)]
    pub label: String,
    #[serde(rename = "topologyId", default)]
    pub topology_id: String,
}

/// A node as a view shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub id: String,
    #[serde(default)]
    pub label: String,
    #[serde(rename = "labelMinor", default)]
    pub label_minor: String,
    #[serde(default)]
    pub rank: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub shape: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub stack: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub pseudo: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<MetadataRow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<Parent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricRow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<Table>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adjacency: Vec<String>,
}

/// A control a probe offers on a node (issuing controls comes with its own issue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Control {
    #[serde(rename = "probeId")]
    pub probe_id: String,
    #[serde(rename = "nodeId")]
    pub node_id: String,
    pub id: String,
    #[serde(default)]
    pub human: String,
    #[serde(default)]
    pub icon: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub confirmation: String,
    #[serde(default)]
    pub rank: i64,
}

/// Children of one topology in node details (Scope's `NodeSummaryGroup`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildGroup {
    #[serde(default)]
    pub id: String,
    pub label: String,
    #[serde(default)]
    pub nodes: Option<Vec<NodeSummary>>,
    #[serde(rename = "topologyId", default)]
    pub topology_id: String,
    #[serde(default)]
    pub columns: Option<Vec<Column>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionRow {
    pub id: String,
    #[serde(rename = "nodeId")]
    pub node_id: String,
    #[serde(default)]
    pub label: String,
    #[serde(
        rename = "labelMinor",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub label_minor: String,
    #[serde(default)]
    pub metadata: Vec<MetadataRow>,
}

/// The inbound or outbound connections of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connections {
    pub id: String,
    #[serde(rename = "topologyId", default)]
    pub topology_id: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub columns: Vec<Column>,
    #[serde(default)]
    pub connections: Vec<ConnectionRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDetails {
    #[serde(flatten)]
    pub summary: NodeSummary,
    #[serde(default)]
    pub controls: Vec<Control>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildGroup>,
    #[serde(default)]
    pub connections: Vec<Connections>,
}

/// `GET …/api/topology/{view}/{node}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeAnswer {
    pub node: NodeDetails,
}

/// `GET …/api/topology/{view}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TopologyAnswer {
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeSummary>,
    /// Only in an answer about a past moment (`?timestamp=`): whether history covered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryNote>,
}

/// What a past moment's answer was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryNote {
    /// The moment (RFC 3339, whole seconds): the window is the 15 s before it.
    pub at: String,
    /// `kept` (reports of that moment are kept), `before-history` (before the oldest report kept:
    /// the map is empty) or `gap` (no probe reported then: empty).
    pub state: String,
    /// The oldest report kept (RFC 3339), if any.
    #[serde(default)]
    pub kept_from: Option<String>,
}

/// `GET …/api/history?from=&to=&points=` (ms since the epoch): what the timeline shows.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Timeline {
    pub from: i64,
    pub to: i64,
    /// The span of reports kept, and what they take.
    pub kept_from: Option<i64>,
    pub kept_to: Option<i64>,
    pub kept_bytes: u64,
    /// Samples over the range: the live window's nodes when each was written.
    pub points: Vec<TimelinePoint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub at: i64,
    /// Distinct nodes per report topology (`Host`, `Container`, `Process`, `Pod`…).
    pub counts: BTreeMap<String, u64>,
    /// Nodes per view (`containers`, `processes-by-name`…) with its options' defaults, as the
    /// topology list counts them: what the map showed at `views_at` (counted less often than
    /// batches are written, so several points may carry the same count). Empty for history kept
    /// before views were counted, or when no count was made in time.
    #[serde(default)]
    pub views: BTreeMap<String, u64>,
    #[serde(default)]
    pub views_at: Option<i64>,
}

/// `GET …/api/topology/{view}/changes?from=&to=` (RFC 3339 each; a moment within the last second
/// is the live window): what appeared and vanished in a view between two moments.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Changes {
    pub from: String,
    pub to: String,
    /// Nodes at `to` that were not at `from`, and nodes at `from` gone at `to` (as they were).
    pub appeared: Vec<NodeSummary>,
    pub vanished: Vec<NodeSummary>,
    /// Edges (source, target) likewise.
    pub edges_appeared: Vec<(String, String)>,
    pub edges_vanished: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopologyOption {
    pub value: String,
    #[serde(default)]
    pub label: String,
}

/// A group of view options (`?system=application`); `union` groups take comma-separated values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionGroup {
    pub id: String,
    #[serde(rename = "defaultValue", default)]
    pub default_value: String,
    #[serde(default)]
    pub options: Vec<TopologyOption>,
    #[serde(
        rename = "selectType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub select_type: Option<String>,
    #[serde(rename = "noneLabel", default, skip_serializing_if = "Option::is_none")]
    pub none_label: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    #[serde(default)]
    pub node_count: usize,
    #[serde(default)]
    pub nonpseudo_node_count: usize,
    #[serde(default)]
    pub edge_count: usize,
    #[serde(default)]
    pub filtered_nodes: usize,
}

/// One entry of `GET …/api/topology`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopologyDesc {
    pub name: String,
    #[serde(default)]
    pub rank: i64,
    #[serde(default)]
    pub hide_if_empty: bool,
    /// `null` on the wire when there are none, as Scope sends it.
    #[serde(
        default,
        serialize_with = "empty_as_null",
        deserialize_with = "null_as_empty"
    )]
    pub options: Vec<OptionGroup>,
    pub url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_topologies: Vec<TopologyDesc>,
    #[serde(default)]
    pub stats: Stats,
}

fn empty_as_null<S: serde::Serializer, T: Serialize>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    if v.is_empty() {
        s.serialize_none()
    } else {
        v.serialize(s)
    }
}

fn null_as_empty<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

impl TopologyDesc {
    /// The view id: the last segment of `url` (`/api/topology/containers` → `containers`).
    pub fn view_id(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or(&self.url)
    }
}

/// One entry of `GET …/api/probes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeStatus {
    pub id: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub version: String,
    /// RFC 3339.
    #[serde(rename = "lastSeen", default)]
    pub last_seen: String,
}

/// One frame of the topology websocket: what changed since the previous frame.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Diff {
    #[serde(default)]
    pub add: Option<Vec<NodeSummary>>,
    #[serde(default)]
    pub update: Option<Vec<NodeSummary>>,
    #[serde(default)]
    pub remove: Option<Vec<String>>,
    /// Only on the first frame, whose `add` holds the whole view.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reset: bool,
    /// Scopehub's addition: more frames of the same tick follow (a large change is cut into
    /// frames of bounded size). A client may wait for the last one before redrawing; Scope's UI
    /// ignores the field and applies each frame as it comes, which gives the same map.
    #[serde(default, skip_serializing_if = "is_false")]
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_shapes_round_trip_with_their_omissions() {
        let summary = NodeSummary {
            id: "h;1".into(),
            label: "init".into(),
            label_minor: "h (1)".into(),
            rank: "init".into(),
            shape: "square".into(),
            tag: String::new(),
            stack: false,
            pseudo: false,
            metadata: vec![],
            parents: vec![],
            metrics: vec![MetricRow {
                id: "cpu".into(),
                label: "CPU".into(),
                format: "percent".into(),
                group: String::new(),
                value: 1.5,
                priority: 1.0,
                samples: None,
                min: 0.0,
                max: 100.0,
                url: String::new(),
            }],
            tables: vec![],
            adjacency: vec!["h;2".into()],
        };
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["labelMinor"], "h (1)");
        assert!(json.get("tag").is_none() && json.get("stack").is_none());
        assert!(json["metrics"][0]["samples"].is_null());
        assert_eq!(
            serde_json::from_value::<NodeSummary>(json).unwrap(),
            summary
        );
        let diff: Diff =
            serde_json::from_str(r#"{"add":null,"update":null,"remove":["x"]}"#).unwrap();
        assert_eq!(diff.remove, Some(vec!["x".to_owned()]));
        assert!(!diff.reset);
        let desc: TopologyDesc =
            serde_json::from_str(r#"{"name":"Hosts","url":"/api/topology/hosts","options":[]}"#)
                .unwrap();
        assert_eq!(desc.view_id(), "hosts");
        // Scope sends `null` for a topology without options; so do we.
        let desc: TopologyDesc =
            serde_json::from_str(r#"{"name":"Hosts","url":"/api/topology/hosts","options":null}"#)
                .unwrap();
        assert!(desc.options.is_empty());
        assert_eq!(
            serde_json::to_value(&desc).unwrap()["options"],
            serde_json::Value::Null
        );
    }
}
