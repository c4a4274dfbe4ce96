//! Scope's renderers, one per view (scope-render.md §3–§9), built from the blocks in `mod.rs`.
//! Each is memoised in the [`Ctx`], so views that share a base (processes → containers → pods →
//! hosts) render it once per report.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use super::net::{self, Networks};
use super::*;

/// The views the API serves, by URL id.
pub const VIEWS: [&str; 13] = [
    "processes",
    "processes-by-name",
    "containers",
    "containers-by-hostname",
    "containers-by-image",
    "pods",
    "kube-controllers",
    "services",
    "ecs-tasks",
    "ecs-services",
    "swarm-services",
    "hosts",
    "weave",
];

/// Renders a view by its URL id, unfiltered (options are applied by the caller).
pub fn render(ctx: &mut Ctx, view: &str) -> Option<Arc<Rendered>> {
    Some(match view {
        "processes" => processes(ctx),
        "processes-by-name" => processes_by_name(ctx),
        "containers" => containers(ctx),
        "containers-by-hostname" => containers_by_hostname(ctx),
        "containers-by-image" => containers_by_image(ctx),
        "pods" => pods(ctx),
        "kube-controllers" => kube_controllers(ctx),
        "services" => services(ctx),
        "ecs-tasks" => ecs_tasks(ctx),
        "ecs-services" => ecs_services(ctx),
        "swarm-services" => swarm_services(ctx),
        "hosts" => hosts(ctx),
        "weave" => weave(ctx),
        _ => return None,
    })
}

type EndpointMap<'f> = &'f dyn Fn(&RNode, &Nodes) -> Option<String>;

/// `MapEndpoints(f, T)` (§3): every node of `T`, plus endpoints mapped onto them by `f` (or onto
/// the internet and known-service pseudo nodes), edges from endpoint adjacency.
fn map_endpoints(ctx: &mut Ctx, topology: &'static str, f: EndpointMap) -> Rendered {
    let local = ctx.local_networks();
    let endpoints = ctx.select(ENDPOINT);
    let seed = ctx.select(topology);
    let mut join = Join::seeded(&seed.nodes);
    for n in endpoints.nodes.values() {
        super::budget::spend();
        if n.latest("host_node_id").is_none()
            && let Some(id) = pseudo_node_id(ctx.report, n, &local)
        {
            join.add_child(n, &id, PSEUDO);
            continue;
        }
        if let Some(id) = f(n, &endpoints.nodes).filter(|id| !id.is_empty()) {
            join.add_child(n, &id, topology);
        }
    }
    join.result(&endpoints.nodes)
}

fn pseudo_node_id(report: &Report, n: &RNode, local: &Networks) -> Option<String> {
    let (_, addr, _) = parse_endpoint_id(&n.id)?;
    if let Some(name) = net::first_known_service(report, addr) {
        return Some(format!("{SERVICE_PREFIX}{name}"));
    }
    let ip = net::parse_ip(addr)?;
    if local.contains(ip) {
        return None;
    }
    // The remote side initiated when the endpoint has outgoing adjacency.
    Some(if n.adjacency.is_empty() {
        OUTGOING_INTERNET.to_owned()
    } else {
        INCOMING_INTERNET.to_owned()
    })
}

/// A source port with connections to more than one real endpoint may have been reused.
fn more_than_one_connection(n: &RNode, endpoints: &Nodes) -> bool {
    if n.adjacency.len() < 2 {
        return false;
    }
    let mut first: Option<&str> = None;
    for id in &n.adjacency {
        let real = endpoints
            .get(id)
            .and_then(|e| e.latest("copy_of"))
            .unwrap_or(id);
        match first {
            None => first = Some(real),
            Some(f) if f != real => return true,
            Some(_) => {}
        }
    }
    false
}

/// `ProcessRenderer` (§4).
fn process_base(ctx: &mut Ctx) -> Arc<Rendered> {
    ctx.memo("base:process", |ctx| {
        if !ctx.has_nodes(PROCESS) {
            return Rendered::default();
        }
        map_endpoints(ctx, PROCESS, &|n, endpoints| {
            let pid = n.latest("pid")?;
            if more_than_one_connection(n, endpoints) {
                return None;
            }
            let host = n.host_id();
            (!host.is_empty()).then(|| format!("{host};{pid}"))
        })
    })
}

/// `ColorConnected`: marks nodes with an edge to or from another node.
fn color_connected(input: &Rendered, now: Time) -> Rendered {
    let linked = connected(&input.nodes);
    let mut out = input.clone();
    for (id, node) in out.nodes.iter_mut() {
        if linked.contains(id) {
            Arc::make_mut(node).set_latest("is_connected", "true", now);
        }
    }
    out
}

fn processes(ctx: &mut Ctx) -> Arc<Rendered> {
    ctx.memo("processes", |ctx| {
        let base = process_base(ctx);
        color_connected(&base, ctx.now)
    })
}

fn processes_by_name(ctx: &mut Ctx) -> Arc<Rendered> {
    ctx.memo("processes-by-name", |ctx| {
        let input = process_base(ctx);
        let mut join = Join::new();
        for n in input.nodes.values() {
            if n.is_pseudo() {
                join.pass_through(n);
            } else if let Some(name) = n.latest("name") {
                join.add_child_and_children(n, name, "group:process:name");
            }
        }
        color_connected(&join.result(&input.nodes), ctx.now)
    })
}

/// `ConnectionJoin` (§5): endpoints matched to nodes of `topology` by address (then address and
/// port); an address claimed by two nodes matches neither.
fn connection_join(
    ctx: &mut Ctx,
    topology: &'static str,
    to_ips: fn(&RNode) -> Vec<String>,
) -> Rendered {
    let input = ctx.select(topology);
    let mut ip_nodes: HashMap<String, Name> = HashMap::new();
    for n in input.nodes.values() {
        for ip in to_ips(n) {
            match ip_nodes.entry(ip) {
                Entry::Occupied(mut e) => {
                    e.insert(Name::default());
                }
                Entry::Vacant(e) => {
                    e.insert(n.id.clone());
                }
            }
        }
    }
    map_endpoints(ctx, topology, &|m, _| {
        let (scope, addr, port) = parse_endpoint_id(&m.id)?;
        let id = match ip_nodes.get(&format!("{scope};{addr};")) {
            Some(id) => id,
            None => ip_nodes.get(&format!("{scope};{addr};{port}"))?,
        };
        (!id.is_empty()).then(|| id.to_string())
    })
}

/// `IP:HOSTPORT->PORT/tcp` anywhere in a Docker port mapping: `(IP, HOSTPORT)`, the leftmost
/// match of Scope's `([0-9\.]+):([0-9]+)->([0-9]+)/tcp`.
///
/// Linear in the string: an IP can only end where its run of digits and dots ends (a `:` is not
/// one of them), so a match starting inside a run would start at the run's beginning too; only
/// each run's beginning is tried, and each character is looked at a bounded number of times
/// (trying every position instead cost 82 CPU-seconds on a 400,000-character value).
fn port_mapping(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let ip_char = |c: u8| c.is_ascii_digit() || c == b'.';
    let run = |from: usize, ok: &dyn Fn(u8) -> bool| {
        let mut i = from;
        while i < b.len() && ok(b[i]) {
            i += 1;
        }
        i
    };
    let mut start = 0;
    while start < b.len() {
        if !ip_char(b[start]) {
            start += 1;
            continue;
        }
        let ip_end = run(start, &ip_char);
        if let Some(port) = mapping_after(s, ip_end) {
            return Some((&s[start..ip_end], port));
        }
        start = ip_end;
    }
    None
}

/// `:HOSTPORT->PORT/tcp` at `at`: the host port.
fn mapping_after(s: &str, at: usize) -> Option<&str> {
    let rest = s[at..].strip_prefix(':')?;
    let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
    let port_len = digits(rest);
    let after_port = rest[port_len..].strip_prefix("->")?;
    let inner_len = digits(after_port);
    if port_len == 0 || inner_len == 0 || !after_port[inner_len..].starts_with("/tcp") {
        return None;
    }
    Some(&rest[..port_len])
}

fn is_loopback(addr: &str) -> bool {
    net::parse_ip(addr).is_some_and(|ip| ip.is_loopback())
}

fn container_ips(m: &RNode) -> Vec<String> {
    if m.latest("does_not_make_connections").is_some()
        || m.latest("docker_is_in_host_network").is_some()
    {
        return Vec::new();
    }
    let mut out = Vec::new();
    for entry in m
        .sets
        .get("docker_container_ips_with_scopes")
        .into_iter()
        .flatten()
    {
        if let Some((scope, addr)) = entry.split_once(';')
            && !is_loopback(addr)
        {
            out.push(format!("{scope};{addr};"));
        }
    }
    for mapping in m.sets.get("docker_container_ports").into_iter().flatten() {
        if let Some((ip, port)) = port_mapping(mapping) {
            out.push(format!(";{ip};{port}"));
        }
    }
    out
}

/// `ContainerRenderer` (§5): processes mapped to containers, with containers matched to endpoints
/// by IP; deleted containers dropped.
fn container_base(ctx: &mut Ctx) -> Arc<Rendered> {
    ctx.memo("base:container", |ctx| {
        let procs = process_base(ctx);
        let mut join = Join::new();
        for n in procs.nodes.values() {
            if n.is_pseudo() {
                join.pass_through(n);
            } else if let Some(cid) = n.latest("docker_container_id") {
                join.add_child_and_children(n, &format!("{cid};<container>"), CONTAINER);
            } else {
                let host = n.id.split(';').next().unwrap_or("");
                join.add_child_and_children(n, &format!("{UNCONTAINED_PREFIX}{host}"), PSEUDO);
            }
        }
        let from_processes = Arc::new(join.result(&procs.nodes));
        let by_ip = Arc::new(connection_join(ctx, CONTAINER, container_ips));
        filter_non_pseudo(&reduce(&[from_processes, by_ip]), |n| {
            n.latest("docker_container_state") != Some("deleted")
        })
    })
}

/// `docker.io/library/nginx:1` → `library/nginx`.
pub fn image_name_without_version(name: &str) -> &str {
    let mut parts = name.splitn(3, '/');
    let (a, b, c) = (parts.next(), parts.next(), parts.next());
    let rest = match (a, b, c) {
        (Some(_), Some(_), Some(_)) => &name[a.map_or(0, str::len) + 1..],
        _ => name,
    };
    rest.split(':').next().unwrap_or(rest)
}

fn image_node_id(image: &str) -> String {
    format!("{image};<container_image>")
}

/// The `containers` view: containers with their image's name (§5).
fn containers(ctx: &mut Ctx) -> Arc<Rendered> {
    ctx.memo("containers", |ctx| {
        let base = container_base(ctx);
        let images = ctx.select(CONTAINER_IMAGE);
        let mut out = Rendered::clone(&base);
        for node in out.nodes.values_mut() {
            let Some(image) = node
                .latest("docker_image_id")
                .and_then(|id| images.nodes.get(image_node_id(id).as_str()))
            else {
                continue;
            };
            let Some(name) = image.latest("docker_image_name") else {
                continue;
            };
            let name_id = image_node_id(image_name_without_version(name));
            let n = Arc::make_mut(node);
            for key in [
                "docker_image_name",
                "docker_image_tag",
                "docker_image_size",
                "docker_image_virtual_size",
                "docker_image_label_works.weave.role",
            ] {
                // Scope's `Propagate`: the newer of the two entries stays.
                if let Some(entry) = image.latest.get(key)
                    && n.latest
                        .get(key)
                        .is_none_or(|mine| mine.timestamp <= entry.timestamp)
                {
                    n.latest_mut().insert(key.to_owned(), entry.clone());
                }
            }
            n.parents_mut()
                .insert(CONTAINER_IMAGE, vec![Name::from(name_id)]);
        }
        out
    })
}

fn containers_by_image(ctx: &mut Ctx) -> Arc<Rendered> {
    ctx.memo("containers-by-image", |ctx| {
        // Scope's ContainerWithImageNameRenderer: the children of an image node are containers
        // with their image's name (rank, parents and image rows as in the containers view).
        let containers = containers(ctx);
        let seed = ctx.select(CONTAINER_IMAGE);
        let mut join = Join::seeded(&seed.nodes);
        for n in containers.nodes.values() {
            if n.is_pseudo() {
                join.pass_through(n);
            } else if let Some(image) = n.latest("docker_image_id") {
                join.add_child_and_children(n, &image_node_id(image), CONTAINER_IMAGE);
            }
        }
        let by_id = join.result(&containers.nodes);
        let mut join = Join::new();
        for n in by_id.nodes.values() {
            if n.is_pseudo() {
                join.add_mapped(&n.id, RNode::clone(n));
            } else if let Some(name) = n.latest("docker_image_name") {
                let mut out = RNode::clone(n);
                out.id = Name::from(image_node_id(image_name_without_version(name)));
                join.add_mapped(&n.id, out);
            }
        }
        filter_non_pseudo(&join.result(&by_id.nodes), |n| n.has_children_of(CONTAINER))
    })
}

fn containers_by_hostname(ctx: &mut Ctx) -> Arc<Rendered> {
    ctx.memo("containers-by-hostname", |ctx| {
        let input = containers(ctx);
        let mut join = Join::new();
        for n in input.nodes.values() {
            if n.is_pseudo() {
                join.pass_through(n);
            } else if let Some(hostname) = n.latest("docker_container_hostname") {
                join.add_child_and_children(
                    n,
                    hostname,
                    "group:container:docker_container_hostname",
                );
            }
        }
        filter_non_pseudo(&join.result(&input.nodes), |n| n.has_children_of(CONTAINER))
    })
}

fn nodes_to_hosts(input: &Rendered) -> Rendered {
    let mut join = Join::new();
    for n in input.nodes.values() {
        if n.is_pseudo() {
            continue;
        }
        for id in n.parents(HOST) {
            // Images span hosts: their edges would invent host-to-host connections.
            if n.topology == CONTAINER_IMAGE {
                join.add_unmapped_child(n, id, HOST);
            } else {
                join.add_child(n, id, HOST);
            }
        }
    }
    join.result(&input.nodes)
}

/// The `hosts` view (§7).
fn hosts(ctx: &mut Ctx) -> Arc<Rendered> {
    ctx.memo("hosts", |ctx| {
        let procs = process_base(ctx);
        let conts = container_base(ctx);
        let images = containers_by_image(ctx);
        let pods = pods(ctx);
        let by_endpoint = map_endpoints(ctx, HOST, &|n, _| {
            n.latest("host_node_id").map(str::to_owned)
        });
        reduce(&[
            Arc::new(nodes_to_hosts(&procs)),
            Arc::new(nodes_to_hosts(&conts)),
            Arc::new(nodes_to_hosts(&images)),
            Arc::new(nodes_to_hosts(&pods)),
            Arc::new(by_endpoint),
        ])
    })
}

/// The `weave` view: Weave Net peers; peers on no known host become unmanaged pseudo nodes.
fn weave(ctx: &mut Ctx) -> Arc<Rendered> {
    ctx.memo("weave", |ctx| {
        let input = ctx.select(OVERLAY);
        let mut join = Join::new();
        for n in input.nodes.values() {
            if !n.id.starts_with('#') || n.id.starts_with("#docker_peer_") {
                continue;
            }
            let mut out = RNode::clone(n);
            if n.latest("host_node_id").is_none() {
                let nick = n.latest("weave_peer_nick_name").unwrap_or("");
                out.id = Name::from(format!("{UNMANAGED_PREFIX}{nick}"));
                out.topology = Name::known(PSEUDO);
            }
            join.add_mapped(&n.id, out);
        }
        join.result(&input.nodes)
    })
}

const KUBERNETES: [&str; 10] = [
    POD,
    SERVICE,
    DEPLOYMENT,
    DAEMON_SET,
    STATEFUL_SET,
    CRON_JOB,
    PERSISTENT_VOLUME,
    PERSISTENT_VOLUME_CLAIM,
    STORAGE_CLASS,
    JOB,
];

fn has_kubernetes(ctx: &Ctx) -> bool {
    KUBERNETES.iter().any(|t| ctx.has_nodes(t))
}

/// "Running": no state, or running, restarting or paused.
pub fn is_running(n: &RNode) -> bool {
    matches!(
        n.latest("docker_container_state"),
        None | Some("running" | "restarting" | "paused")
    )
}

pub fn is_pause_image(name: &str) -> bool {
    ["google_containers/pause", "k8s.gcr.io/pause", "eks/pause"]
        .iter()
        .any(|p| name.contains(p))
}

/// `Map2Parent`: each node becomes a child of its parents of `topologies`; with `unmanaged`,
/// parentless nodes go to `pseudo:unmanaged:<host>` and uncontained nodes are renamed unmanaged.
fn map_to_parents(input: &Rendered, topologies: &[&str], unmanaged: bool) -> Rendered {
    let mut join = Join::new();
    for n in input.nodes.values() {
        if unmanaged && let Some(host) = n.id.strip_prefix(UNCONTAINED_PREFIX) {
            join.add_child_and_children(n, &format!("{UNMANAGED_PREFIX}{host}"), PSEUDO);
            continue;
        }
        if n.is_pseudo() {
            join.pass_through(n);
            continue;
        }
        let mut added = false;
        for topology in topologies {
            for id in n.parents(topology) {
                join.add_child_and_children(n, id, topology);
                added = true;
            }
        }
        if !added && unmanaged {
            let id = format!("{UNMANAGED_PREFIX}{}", n.host_id());
            join.add_child_and_children(n, &id, PSEUDO);
        }
    }
    join.result(&input.nodes)
}

/// A group with exactly one child of `topology` (that makes connections) shows that child's metrics.
fn propagate_single_metrics(input: &Rendered, topology: &str) -> Rendered {
    let mut out = input.clone();
    for node in out.nodes.values_mut() {
        let mut only = node
            .children
            .values()
            .filter(|c| c.topology == topology && c.latest("does_not_make_connections").is_none());
        if let (Some(first), None) = (only.next(), only.next()) {
            let metrics = first.metrics.clone();
            crate::collector::merge::merge_metrics(&mut Arc::make_mut(node).metrics, &metrics);
        }
    }
    out
}

/// A pod without a host parent takes its first child's (Scope's `propagateHostID`, a Map).
fn propagate_host(input: &Rendered) -> Rendered {
    let mut join = Join::new();
    for n in input.nodes.values() {
        let mut out = RNode::clone(n);
        if n.topology == POD
            && n.parents(HOST).is_empty()
            && let Some(child) = n.children.values().find(|c| !c.parents(HOST).is_empty())
        {
            out.parents_mut()
                .insert(HOST.to_owned(), child.parents(HOST).to_vec());
        }
        join.add_mapped(&n.id, out);
    }
    join.result(&input.nodes)
}

fn pod_ips(m: &RNode) -> Vec<String> {
    if m.latest("kubernetes_is_in_host_network").is_some() {
        return Vec::new();
    }
    match m.latest("kubernetes_ip") {
        Some(ip) if !ip.is_empty() => vec![format!(";{ip};")],
        _ => Vec::new(),
    }
}

/// Targets one storage node links to at most (a storage class to its claims: thousands at most).
const MAX_LINKS: usize = 10_000;
/// Edges one volume link makes at most.
const MAX_EDGES: usize = 1_000_000;

/// Edges between pods and their storage (§8 "Volumes"): each source node with its targets as
/// adjacency and children.
fn volumes(ctx: &mut Ctx) -> Rendered {
    let pvcs = ctx.select(PERSISTENT_VOLUME_CLAIM);
    let pvs = ctx.select(PERSISTENT_VOLUME);
    let pods = ctx.select(POD);
    let classes = ctx.select(STORAGE_CLASS);
    let snapshots = ctx.select(VOLUME_SNAPSHOT);
    let snapshot_data = ctx.select(VOLUME_SNAPSHOT_DATA);
    let get = |n: &RNode, k: &str| n.latest(k).unwrap_or("").to_owned();
    // Each source is linked to the targets whose key is one of its keys, looked up in an index of
    // the targets (matching every pair cost sources × targets). An empty key links nothing: no
    // real object lacks a name, and every unnamed one linked to every other was the square of
    // them. A source takes at most `MAX_LINKS` targets and one link at most `MAX_EDGES` edges.
    let link = |sources: &Nodes,
                targets: &Nodes,
                skip: &dyn Fn(&RNode) -> bool,
                source_keys: &dyn Fn(&RNode) -> Vec<String>,
                target_key: &dyn Fn(&RNode) -> String| {
        let mut index: HashMap<String, Vec<&Arc<RNode>>> = HashMap::new();
        for target in targets.values() {
            let key = target_key(target);
            if !key.is_empty() {
                index.entry(key).or_default().push(target);
            }
        }
        let mut out = Nodes::new();
        let mut edges = 0;
        for (id, source) in sources {
            super::budget::spend();
            if skip(source) {
                continue;
            }
            let mut n = RNode::clone(source);
            let mut linked = Vec::new();
            for key in source_keys(source) {
                for target in index.get(&key).into_iter().flatten() {
                    if linked.len() == MAX_LINKS || edges == MAX_EDGES {
                        break;
                    }
                    if n.children_mut()
                        .insert(target.id.clone(), (*target).clone())
                        .is_none()
                    {
                        linked.push(target.id.clone());
                        edges += 1;
                    }
                }
            }
            // Sorted in once (inserting one by one into the sorted edges cost their square).
            n.adjacency.extend(linked);
            out.insert(id.clone(), Arc::new(n));
        }
        Arc::new(Rendered {
            nodes: out,
            filtered: 0,
        })
    };
    let one = |key: String| {
        if key.is_empty() {
            Vec::new()
        } else {
            vec![key]
        }
    };
    let never = |_: &RNode| false;
    // Scope's `volumeSnapshotRenderer` also emits every snapshot data node as a node of its own
    // (once there is a snapshot), not only as a snapshot's child.
    let snapshots_and_data = |mut rendered: Arc<Rendered>| {
        if !snapshots.nodes.is_empty() {
            let rendered = Arc::make_mut(&mut rendered);
            for (id, data) in &snapshot_data.nodes {
                rendered
                    .nodes
                    .entry(id.clone())
                    .or_insert_with(|| data.clone());
            }
        }
        rendered
    };
    let in_namespace =
        |n: &RNode, name: &str| format!("{}\u{0}{name}", get(n, "kubernetes_namespace"));
    let parts = [
        link(
            &pvcs.nodes,
            &pvs.nodes,
            &never,
            &|pvc| one(get(pvc, "kubernetes_volume_name")),
            &|pv| get(pv, "kubernetes_name"),
        ),
        link(
            &pods.nodes,
            &pvcs.nodes,
            &|pod| pod.latest("kubernetes_volume_claim").is_none(),
            &|pod| {
                get(pod, "kubernetes_volume_claim")
                    .split(';')
                    .filter(|claim| !claim.is_empty())
                    .map(|claim| in_namespace(pod, claim))
                    .collect()
            },
            &|pvc| match pvc.latest("kubernetes_name") {
                Some(name) if !name.is_empty() => in_namespace(pvc, name),
                _ => String::new(),
            },
        ),
        link(
            &classes.nodes,
            &pvcs.nodes,
            &never,
            &|class| one(get(class, "kubernetes_name")),
            &|pvc| get(pvc, "kubernetes_storage_class_name"),
        ),
        link(
            &pvs.nodes,
            &snapshots.nodes,
            &never,
            &|pv| one(get(pv, "kubernetes_name")),
            &|snap| get(snap, "kubernetes_volume_name"),
        ),
        snapshots_and_data(link(
            &snapshots.nodes,
            &snapshot_data.nodes,
            &never,
            &|snap| one(get(snap, "kuberneets_snapshot_data")),
            &|data| get(data, "kubernetes_name"),
        )),
    ];
    reduce(&parts)
}

#[cfg(test)]
pub(super) fn volumes_for_tests(ctx: &mut Ctx) -> Rendered {
    Rendered::clone(&volumes(ctx))
}

/// The `pods` view (§8).
fn pods(ctx: &mut Ctx) -> Arc<Rendered> {
    ctx.memo("pods", |ctx| {
        if !has_kubernetes(ctx) {
            return Rendered::default();
        }
        let containers = containers(ctx);
        let running = filter_non_pseudo(&containers, |n| {
            is_running(n) && !n.latest("docker_image_name").is_some_and(is_pause_image)
        });
        let to_pods = propagate_host(&map_to_parents(&running, &[POD], true));
        let from_containers = Arc::new(propagate_single_metrics(&to_pods, CONTAINER));
        let by_ip = Arc::new(connection_join(ctx, POD, pod_ips));
        let storage = Arc::new(volumes(ctx));
        filter_non_pseudo(&reduce(&[from_containers, by_ip, storage]), |n| {
            !matches!(n.latest("kubernetes_state"), Some("deleted" | "Failed"))
        })
    })
}

fn services(ctx: &mut Ctx) -> Arc<Rendered> {
    ctx.memo("services", |ctx| {
        if !has_kubernetes(ctx) {
            return Rendered::default();
        }
        let pods = pods(ctx);
        let grouped = Arc::new(map_to_parents(&pods, &[SERVICE], false));
        let seed = ctx.select(SERVICE);
        propagate_single_metrics(&reduce(&[grouped, seed]), POD)
    })
}

fn kube_controllers(ctx: &mut Ctx) -> Arc<Rendered> {
    ctx.memo("kube-controllers", |ctx| {
        if !has_kubernetes(ctx) {
            return Rendered::default();
        }
        let pods = pods(ctx);
        let controllers = [DEPLOYMENT, DAEMON_SET, STATEFUL_SET, CRON_JOB, JOB];
        let mut parts = vec![Arc::new(map_to_parents(&pods, &controllers, true))];
        for t in controllers {
            parts.push(ctx.select(t));
        }
        propagate_single_metrics(&reduce(&parts), POD)
    })
}

fn running_containers(ctx: &mut Ctx) -> Rendered {
    let containers = containers(ctx);
    filter_non_pseudo(&containers, is_running)
}

fn ecs_tasks(ctx: &mut Ctx) -> Arc<Rendered> {
    ctx.memo("ecs-tasks", |ctx| {
        if !ctx.has_nodes(ECS_TASK) && !ctx.has_nodes(ECS_SERVICE) {
            return Rendered::default();
        }
        map_to_parents(&running_containers(ctx), &[ECS_TASK], true)
    })
}

fn ecs_services(ctx: &mut Ctx) -> Arc<Rendered> {
    ctx.memo("ecs-services", |ctx| {
        let tasks = ecs_tasks(ctx);
        map_to_parents(&tasks, &[ECS_SERVICE], true)
    })
}

fn swarm_services(ctx: &mut Ctx) -> Arc<Rendered> {
    ctx.memo("swarm-services", |ctx| {
        if !ctx.has_nodes(SWARM_SERVICE) {
            return Rendered::default();
        }
        map_to_parents(&running_containers(ctx), &[SWARM_SERVICE], true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_lose_registry_and_tag() {
        assert_eq!(
            image_name_without_version("docker.io/library/nginx:1"),
            "library/nginx"
        );
        assert_eq!(image_name_without_version("nginx:1.9"), "nginx");
        assert_eq!(
            image_name_without_version("weaveworks/scope"),
            "weaveworks/scope"
        );
        assert_eq!(image_name_without_version("localhost:5000/a/b:c"), "a/b");
    }

    #[test]
    fn port_mappings_parse_as_scope_does() {
        assert_eq!(
            port_mapping("0.0.0.0:8080->80/tcp"),
            Some(("0.0.0.0", "8080"))
        );
        assert_eq!(port_mapping("80/tcp"), None);
        assert_eq!(port_mapping("0.0.0.0:53->53/udp"), None);
        assert_eq!(port_mapping("x 10.0.0.1:1->2/tcp"), Some(("10.0.0.1", "1")));
        assert_eq!(port_mapping("1:2:3->4/tcp"), Some(("2", "3")));
        assert_eq!(port_mapping(":1->2/tcp 3:4->5/tcp"), Some(("3", "4")));
    }

    /// Scope's regular expression, as the reference.
    fn scope_port_mapping(s: &str) -> Option<(&str, &str)> {
        static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r"([0-9\.]+):([0-9]+)->([0-9]+)/tcp").unwrap()
        });
        let c = RE.captures(s)?;
        Some((c.get(1)?.as_str(), c.get(2)?.as_str()))
    }

    #[test]
    fn port_mappings_match_scopes_expression_on_random_strings() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        let pieces = [
            "1", "22", ".", ":", "->", "-", ">", "/tcp", "/udp", "/t", " ", "a",
        ];
        for _ in 0..20_000 {
            let len = rng.random_range(0..16);
            let s: String = (0..len)
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect();
            assert_eq!(port_mapping(&s), scope_port_mapping(&s), "{s:?}");
        }
    }

    #[test]
    fn a_huge_port_value_is_read_in_one_pass() {
        // Trying every position cost minutes on 400,000 characters; one pass takes milliseconds
        // (a run of this test would not finish otherwise).
        let hostile = "1:1".repeat(1_000_000) + "0.0.0.0:80->80/tcp";
        assert_eq!(port_mapping(&hostile), Some(("10.0.0.0", "80")));
        let digits = "1".repeat(2_000_000) + ":";
        assert_eq!(port_mapping(&digits), None);
    }
}
