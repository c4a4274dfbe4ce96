//! The view registry, its options and filters, and the `/api/topology` list with stats
//! (scope-render.md §9–§11).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

pub use shared::topology::{Stats, TopologyDesc};

use super::summary::{Censor, NodeSummary, summaries, summaries_json};
use super::*;

/// A node predicate behind a view option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Predicate {
    System,
    Application,
    Stopped,
    Running,
    NotPseudo,
    Connected,
    NotStorage,
    NotSnapshot,
    Namespace(String),
}

const SYSTEM_CONTAINER_NAMES: [&str; 6] = [
    "weavescope",
    "weavedns",
    "weave",
    "weaveproxy",
    "weaveexec",
    "ecs-agent",
];
const SYSTEM_IMAGES: [&str; 9] = [
    "swarm",
    "weaveworks/scope",
    "weaveworks/weavedns",
    "weaveworks/weave",
    "weaveworks/weaveproxy",
    "weaveworks/weaveexec",
    "amazon/amazon-ecs-agent",
    "openshift/origin-pod",
    "docker.io/openshift/origin-pod",
];

fn is_application(n: &RNode) -> bool {
    let latest = |k: &str| n.latest(k).unwrap_or("");
    let image = latest("docker_image_name");
    let image_prefix = image.split(':').next().unwrap_or("");
    !(SYSTEM_CONTAINER_NAMES.contains(&latest("docker_container_name"))
        || SYSTEM_IMAGES.contains(&image_prefix)
        || views::is_pause_image(image)
        || latest("docker_label_io.kubernetes.docker.type") == "podsandbox"
        || latest("docker_label_works.weave.role") == "system"
        || latest("docker_image_label_works.weave.role") == "system"
        || latest("docker_label_io.kubernetes.pod.namespace") == "kube-system"
        || latest("docker_label_io.kubernetes.pod.name").starts_with("kube-system/"))
}

impl Predicate {
    pub fn test(&self, n: &RNode) -> bool {
        match self {
            Predicate::System => !is_application(n),
            Predicate::Application => is_application(n),
            Predicate::Running => views::is_running(n),
            Predicate::Stopped => !views::is_running(n),
            Predicate::NotPseudo => {
                !n.is_pseudo() || n.id.ends_with("theinternet") || n.id.starts_with(SERVICE_PREFIX)
            }
            Predicate::Connected => n.latest("is_connected").is_some(),
            Predicate::NotStorage => ![PERSISTENT_VOLUME, PERSISTENT_VOLUME_CLAIM, STORAGE_CLASS]
                .contains(&n.topology.as_str()),
            Predicate::NotSnapshot => {
                ![VOLUME_SNAPSHOT, VOLUME_SNAPSHOT_DATA].contains(&n.topology.as_str())
            }
            Predicate::Namespace(ns) => in_namespaces(n, &HashSet::from([ns.as_str()])),
        }
    }
}

/// Whether `n` is in one of `namespaces` (Kubernetes namespaces or Docker stacks; "No stack" takes
/// the nodes in none).
fn in_namespaces(n: &RNode, namespaces: &HashSet<&str>) -> bool {
    let got = [
        "kubernetes_namespace",
        "docker_label_io.kubernetes.pod.namespace",
        "stack_namespace",
        "docker_label_com.docker.stack.namespace",
    ]
    .iter()
    .find_map(|k| n.latest(k))
    .unwrap_or("");
    namespaces.contains(got) || (got.is_empty() && namespaces.contains("No stack"))
}

#[derive(Debug, Clone)]
pub struct ViewOption {
    pub value: String,
    pub label: String,
    filter: Option<Predicate>,
    /// Whether the filter applies to pseudo nodes too (otherwise they always pass).
    filter_pseudo: bool,
}

fn opt(value: &str, label: &str, filter: Option<Predicate>, filter_pseudo: bool) -> ViewOption {
    ViewOption {
        value: value.to_owned(),
        label: label.to_owned(),
        filter,
        filter_pseudo,
    }
}

#[derive(Debug, Clone)]
pub struct OptionGroup {
    pub id: String,
    pub default_value: String,
    pub options: Vec<ViewOption>,
    pub select_type: Option<String>,
    pub none_label: Option<String>,
}

impl OptionGroup {
    /// As the API shows it.
    pub fn wire(&self) -> shared::topology::OptionGroup {
        shared::topology::OptionGroup {
            id: self.id.clone(),
            default_value: self.default_value.clone(),
            options: self
                .options
                .iter()
                .map(|o| shared::topology::TopologyOption {
                    value: o.value.clone(),
                    label: o.label.clone(),
                })
                .collect(),
            select_type: self.select_type.clone(),
            none_label: self.none_label.clone(),
        }
    }

    /// The filter for `value`: the selected options' filters ORed; `None` when nothing matches.
    fn filter_for(&self, value: &str) -> Option<impl Fn(&RNode) -> bool + '_> {
        // A set: a query may name thousands of values, a probe report thousands of namespaces.
        let values: HashSet<&str> = if self.select_type.as_deref() == Some("union") {
            value.split(',').collect()
        } else {
            [value].into_iter().collect()
        };
        // Selected namespaces are looked up in a set, the few other options tested one by one:
        // a filter costs each node a lookup, not the number of namespaces selected.
        let mut namespaces: HashSet<&str> = HashSet::new();
        let mut others: Vec<&ViewOption> = Vec::new();
        for o in self
            .options
            .iter()
            .filter(|o| values.contains(o.value.as_str()))
        {
            match &o.filter {
                Some(Predicate::Namespace(ns)) if !o.filter_pseudo => {
                    namespaces.insert(ns.as_str());
                }
                _ => others.push(o),
            }
        }
        if namespaces.is_empty() && others.is_empty() {
            return None;
        }
        Some(move |n: &RNode| {
            others.iter().any(|o| match &o.filter {
                None => true,
                Some(p) if o.filter_pseudo => p.test(n),
                Some(p) => n.is_pseudo() || p.test(n),
            }) || (!namespaces.is_empty() && (n.is_pseudo() || in_namespaces(n, &namespaces)))
        })
    }
}

fn group(id: &str, default: &str, options: Vec<ViewOption>) -> OptionGroup {
    OptionGroup {
        id: id.to_owned(),
        default_value: default.to_owned(),
        options,
        select_type: None,
        none_label: None,
    }
}

fn container_options() -> Vec<OptionGroup> {
    vec![
        group(
            "system",
            "application",
            vec![
                opt("all", "All", None, false),
                opt(
                    "system",
                    "System containers",
                    Some(Predicate::System),
                    false,
                ),
                opt(
                    "application",
                    "Application containers",
                    Some(Predicate::Application),
                    false,
                ),
            ],
        ),
        group(
            "stopped",
            "running",
            vec![
                opt(
                    "stopped",
                    "Stopped containers",
                    Some(Predicate::Stopped),
                    false,
                ),
                opt(
                    "running",
                    "Running containers",
                    Some(Predicate::Running),
                    false,
                ),
                opt("both", "Both", None, false),
            ],
        ),
        group(
            "pseudo",
            "hide",
            vec![
                opt("show", "Show uncontained", None, false),
                opt("hide", "Hide uncontained", Some(Predicate::NotPseudo), true),
            ],
        ),
    ]
}

fn unmanaged_option() -> OptionGroup {
    group(
        "pseudo",
        "hide",
        vec![
            opt("show", "Show unmanaged", None, false),
            opt("hide", "Hide unmanaged", Some(Predicate::NotPseudo), true),
        ],
    )
}

fn unconnected_option() -> OptionGroup {
    group(
        "unconnected",
        "hide",
        vec![
            opt("show", "Show unconnected", None, false),
            opt(
                "hide",
                "Hide unconnected",
                Some(Predicate::Connected),
                false,
            ),
        ],
    )
}

/// One entry of the registry.
#[derive(Debug, Clone)]
pub struct ViewDesc {
    pub id: &'static str,
    pub parent: Option<&'static str>,
    pub name: &'static str,
    pub rank: i64,
    pub hide_if_empty: bool,
    pub options: Vec<OptionGroup>,
}

fn desc(
    id: &'static str,
    parent: Option<&'static str>,
    name: &'static str,
    rank: i64,
    hide_if_empty: bool,
    options: Vec<OptionGroup>,
) -> ViewDesc {
    ViewDesc {
        id,
        parent,
        name,
        rank,
        hide_if_empty,
        options,
    }
}

/// Scope's registry (`MakeRegistry`), in registration order, with the namespace option groups
/// this report calls for.
pub fn registry(report: &Report) -> Vec<ViewDesc> {
    let snapshot = group(
        "snapshot",
        "hide",
        vec![
            opt("show", "Show snapshots", None, false),
            opt(
                "hide",
                "Hide snapshots",
                Some(Predicate::NotSnapshot),
                false,
            ),
        ],
    );
    let storage = group(
        "storage",
        "hide",
        vec![
            opt("show", "Show storage", None, false),
            opt("hide", "Hide storage", Some(Predicate::NotStorage), false),
        ],
    );
    let mut views = vec![
        desc(
            "processes",
            None,
            "Processes",
            1,
            true,
            vec![unconnected_option()],
        ),
        desc(
            "processes-by-name",
            Some("processes"),
            "by name",
            0,
            true,
            vec![unconnected_option()],
        ),
        desc(
            "containers",
            None,
            "Containers",
            2,
            false,
            container_options(),
        ),
        desc(
            "containers-by-hostname",
            Some("containers"),
            "by DNS name",
            0,
            false,
            container_options(),
        ),
        desc(
            "containers-by-image",
            Some("containers"),
            "by image",
            0,
            false,
            container_options(),
        ),
        desc(
            "pods",
            None,
            "Pods",
            3,
            true,
            vec![snapshot, storage, unmanaged_option()],
        ),
        desc(
            "kube-controllers",
            Some("pods"),
            "Controllers",
            0,
            true,
            vec![unmanaged_option()],
        ),
        desc(
            "services",
            Some("pods"),
            "Services",
            0,
            true,
            vec![unmanaged_option()],
        ),
        desc(
            "ecs-tasks",
            None,
            "Tasks",
            3,
            true,
            vec![unmanaged_option()],
        ),
        desc(
            "ecs-services",
            Some("ecs-tasks"),
            "Services",
            0,
            true,
            vec![unmanaged_option()],
        ),
        desc(
            "swarm-services",
            None,
            "Services",
            3,
            true,
            vec![unmanaged_option()],
        ),
        desc("hosts", None, "Hosts", 4, false, Vec::new()),
        desc("weave", Some("hosts"), "Weave Net", 0, false, Vec::new()),
    ];
    let names = |topology: &str, key: &str| -> BTreeSet<String> {
        report
            .topology(topology)
            .into_iter()
            .flat_map(|t| t.nodes.values())
            .filter_map(|n| n.latest.get(key).map(|l| l.value.to_string()))
            .collect()
    };
    let namespace_group = |names: &BTreeSet<String>, none_label: &str| OptionGroup {
        id: "namespace".to_owned(),
        default_value: String::new(),
        options: names
            .iter()
            .map(|ns| opt(ns, ns, Some(Predicate::Namespace(ns.clone())), false))
            .collect(),
        select_type: Some("union".to_owned()),
        none_label: Some(none_label.to_owned()),
    };
    let kube = names("Namespace", "kubernetes_name");
    if !kube.is_empty() {
        let g = namespace_group(&kube, "All Namespaces");
        for v in &mut views {
            let root = v.parent.unwrap_or(v.id);
            if root == "containers"
                || v.id == "pods"
                || v.id == "services"
                || v.id == "kube-controllers"
            {
                v.options.push(g.clone());
            }
        }
    }
    let stacks = names("SwarmService", "stack_namespace");
    if !stacks.is_empty() {
        let g = namespace_group(&stacks, "All Stacks");
        for v in &mut views {
            if v.parent.unwrap_or(v.id) == "containers" || v.id == "swarm-services" {
                v.options.push(g.clone());
            }
        }
    }
    views
}

/// A request's query: its parameters, and whether it had any (which switches option defaults on).
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub params: BTreeMap<String, String>,
    pub any: bool,
}

impl Query {
    /// What the web app asks with no option chosen: every option at its default (the map as a
    /// user first sees it).
    pub fn defaults() -> Query {
        Query {
            params: BTreeMap::new(),
            any: true,
        }
    }

    /// Under what the topology list with [`Query::defaults`] is kept: the list the timeline's view
    /// counts come from.
    pub fn default_list_key() -> String {
        Query::defaults().cache_key("")
    }

    pub fn parse(raw: Option<&str>) -> Query {
        let pairs: Vec<(String, String)> = raw
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        Query {
            any: !pairs.is_empty(),
            params: pairs.into_iter().collect(),
        }
    }

    /// What determines a view's render: the view, whether defaults apply, and the parameters other
    /// than the websocket's tick.
    pub fn cache_key(&self, view: &str) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .filter(|(k, _)| k.as_str() != "t")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{view}?{}&{}", self.any, params.join("&"))
    }

    pub fn censor(&self) -> Censor {
        let on = |k: &str| self.params.get(k).is_some_and(|v| v == "true");
        Censor {
            command_line: on("hideCommandLineArguments"),
            environment: on("hideEnvironmentVariables"),
        }
    }
}

/// Applies the query's option filters (only when it has parameters), then drops unconnected
/// pseudo nodes.
pub fn transform(view: &ViewDesc, rendered: &Rendered, query: &Query) -> Rendered {
    let mut filtered: Option<Rendered> = None;
    if query.any {
        for g in &view.options {
            let value = query.params.get(&g.id).unwrap_or(&g.default_value);
            if let Some(keep) = g.filter_for(value) {
                filtered = Some(filter(filtered.as_ref().unwrap_or(rendered), keep));
            }
        }
    }
    filter_unconnected_pseudo(filtered.as_ref().unwrap_or(rendered))
}

pub fn stats(r: &Rendered) -> Stats {
    Stats {
        node_count: r.nodes.len(),
        nonpseudo_node_count: r.nodes.values().filter(|n| !n.is_pseudo()).count(),
        edge_count: r.nodes.values().map(|n| n.adjacency.len()).sum(),
        filtered_nodes: r.filtered,
    }
}

/// Renders `view` and applies the query: the nodes a client is shown.
pub fn render_view(ctx: &mut Ctx, view: &ViewDesc, query: &Query) -> Rendered {
    let rendered = views::render(ctx, view.id).unwrap_or_default();
    transform(view, &rendered, query)
}

/// `GET /api/topology`: top-level views sorted by name, sub-views in registration order, each with
/// the stats this query would give.
pub fn topology_list(ctx: &mut Ctx, query: &Query) -> Vec<TopologyDesc> {
    topology_list_planned(ctx, query, None).0
}

/// When a topology list last asks for each memoised rendering: the view (its place in the list's
/// order) after which no other asks for it. Learned from one list and followed by the next of the
/// same instance, which lets go of each rendering as soon as the views still to come will not ask
/// for it — instead of holding every view's intermediate renderings until the list is done (at 50
/// hosts, a sixth of the list's working set). A plan that no longer fits (the report's shape
/// changed) costs a rendering made twice, never a wrong answer, and the list learns a new one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListPlan {
    pub(super) last_asked: HashMap<String, usize>,
}

/// [`topology_list`] following `plan` (from the last list of the same instance), with the plan
/// this one learned.
pub fn topology_list_planned(
    ctx: &mut Ctx,
    query: &Query,
    plan: Option<&ListPlan>,
) -> (Vec<TopologyDesc>, ListPlan) {
    let registry = registry(ctx.report);
    let mut learned = ListPlan::default();
    let mut place = 0;
    let mut describe = |ctx: &mut Ctx, v: &ViewDesc| {
        let desc = TopologyDesc {
            name: v.name.to_owned(),
            rank: v.rank,
            hide_if_empty: v.hide_if_empty,
            options: v.options.iter().map(OptionGroup::wire).collect(),
            url: format!("/api/topology/{}", v.id),
            sub_topologies: Vec::new(),
            stats: stats(&render_view(ctx, v, query)),
        };
        for key in ctx.take_asked() {
            learned.last_asked.insert(key, place);
        }
        for (key, _) in plan
            .iter()
            .flat_map(|p| &p.last_asked)
            .filter(|(_, last)| **last == place)
        {
            ctx.release(key);
        }
        place += 1;
        desc
    };
    let mut top: Vec<TopologyDesc> = Vec::new();
    for v in registry.iter().filter(|v| v.parent.is_none()) {
        let mut d = describe(ctx, v);
        for sub in registry.iter().filter(|s| s.parent == Some(v.id)) {
            d.sub_topologies.push(describe(ctx, sub));
        }
        top.push(d);
    }
    top.sort_by(|a, b| a.name.cmp(&b.name));
    (top, learned)
}

/// Each view's (and sub-view's) node count in a topology list, by view id.
pub fn view_counts(list: &[TopologyDesc]) -> BTreeMap<String, u64> {
    list.iter()
        .flat_map(|t| std::iter::once(t).chain(&t.sub_topologies))
        .map(|t| (t.view_id().to_owned(), t.stats.node_count as u64))
        .collect()
}

/// `GET /api/topology/{view}`: `None` for an unknown view.
pub fn topology(ctx: &mut Ctx, view: &str, query: &Query) -> Option<BTreeMap<String, NodeSummary>> {
    let rendered = rendered_view(ctx, view, query)?;
    Some(summaries(ctx.report, &rendered.nodes, query.censor()))
}

/// [`topology`] with each node's summary serialised as it is made (`summary::summaries_json`).
pub fn topology_json(
    ctx: &mut Ctx,
    view: &str,
    query: &Query,
) -> Option<serde_json::Result<BTreeMap<String, Box<serde_json::value::RawValue>>>> {
    let rendered = rendered_view(ctx, view, query)?;
    Some(summaries_json(ctx.report, &rendered.nodes, query.censor()))
}

fn rendered_view(ctx: &mut Ctx, view: &str, query: &Query) -> Option<Rendered> {
    let desc = registry(ctx.report).into_iter().find(|v| v.id == view)?;
    Some(render_view(ctx, &desc, query))
}

pub fn find_view(report: &Report, view: &str) -> Option<ViewDesc> {
    registry(report).into_iter().find(|v| v.id == view)
}
