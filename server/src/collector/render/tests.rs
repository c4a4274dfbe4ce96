//! Render outputs for the fixtures in `../shared/fixtures/scope/`, checked against expectations
//! worked out by hand from the fixtures' README and scope-render.md.

use std::collections::BTreeMap;

use super::topologies::{Query, find_view, render_view, stats, topology, topology_list};
use super::*;
use crate::collector::decode::read_fixture;

fn merged(names: &[&str]) -> Report {
    let reports: Vec<Report> = names.iter().map(|n| read_fixture(n)).collect();
    Report::merge_all(reports.iter())
}

fn view(report: &Report, view: &str, q: &str) -> Rendered {
    let mut ctx = Ctx::new(report, Time(0));
    let desc = find_view(report, view).unwrap();
    render_view(
        &mut ctx,
        &desc,
        &Query::parse(Some(q).filter(|q| !q.is_empty())),
    )
}

/// `id -> sorted adjacency` of a rendered view.
fn edges(r: &Rendered) -> BTreeMap<String, Vec<String>> {
    r.nodes
        .iter()
        .map(|(id, n)| {
            (
                id.to_string(),
                n.adjacency.iter().map(String::from).collect(),
            )
        })
        .collect()
}

fn ids(r: &Rendered) -> Vec<&str> {
    r.nodes.keys().map(Name::as_str).collect()
}

fn probe_window() -> Report {
    merged(&[
        "probe-full-1.msgpack.gz",
        "probe-delta-2.msgpack.gz",
        "probe-delta-3.msgpack.gz",
        "probe-full-4.msgpack.gz",
    ])
}

fn h(pid: &str) -> String {
    format!("scope-fixture-host;{pid}")
}

#[test]
fn probe_processes_and_their_connections() {
    let r = probe_window();
    // Bare request: every process, connected or not (quirk 1); the VM's own connection to
    // 203.0.113.80 has no local side and leaves an unconnected internet node, filtered.
    let all = view(&r, "processes", "");
    assert_eq!(all.nodes.len(), 9);
    assert_eq!(all.filtered, 1);
    let e = edges(&all);
    assert_eq!(e[&h("15")], vec![h("6")]);
    assert_eq!(e[&h("16")], vec![h("7")]);
    assert_eq!(e[&h("6")], vec![h("3"), h("4")]);
    assert_eq!(e[&h("7")], vec![h("3"), h("4")]);
    assert!(e[&h("3")].is_empty() && e[&h("1")].is_empty());
    // Any parameter applies the defaults: unconnected processes go.
    let connected = view(&r, "processes", "unconnected=hide");
    assert_eq!(
        ids(&connected),
        [h("15"), h("16"), h("3"), h("4"), h("6"), h("7")]
    );
    assert_eq!(connected.filtered, 4);
    assert_eq!(ids(&view(&r, "processes", "t=1s")), ids(&connected));
    assert_eq!(view(&r, "processes", "unconnected=show").nodes.len(), 9);

    let names = view(&r, "processes-by-name", "unconnected=hide");
    assert_eq!(
        edges(&names),
        BTreeMap::from([
            ("cache".to_owned(), vec![]),
            ("fakedb".to_owned(), vec![]),
            ("loadgen".to_owned(), vec!["webapp".to_owned()]),
            (
                "webapp".to_owned(),
                vec!["cache".to_owned(), "fakedb".to_owned()]
            ),
        ])
    );
    assert_eq!(names.nodes["webapp"].counters[PROCESS], 2);
}

#[test]
fn probe_hosts_and_summaries() {
    let r = probe_window();
    let hosts = view(&r, "hosts", "");
    let host = "scope-fixture-host;<host>";
    // Loopback traffic gives the host a self-edge, counted as an edge (quirk 5).
    assert_eq!(
        edges(&hosts),
        BTreeMap::from([(host.to_owned(), vec![host.to_owned()])])
    );
    assert_eq!(stats(&hosts).edge_count, 1);
    assert_eq!(hosts.nodes[host].counters[PROCESS], 9);

    let mut ctx = Ctx::new(&r, Time(0));
    let s = topology(&mut ctx, "hosts", &Query::default()).unwrap();
    let s = &s[host];
    assert_eq!(
        (s.label.as_str(), s.label_minor.as_str(), s.rank.as_str()),
        ("scope-fixture-host", "", "")
    );
    assert_eq!(s.shape, "circle");
    let rows: Vec<(&str, &str)> = s
        .metadata
        .iter()
        .map(|m| (m.id.as_str(), m.value.as_str()))
        .collect();
    assert!(
        rows.contains(&("local_networks", "127.0.0.1/8, 192.0.2.2/24")),
        "{rows:?}"
    );
    assert!(rows.contains(&("host_name", "scope-fixture-host")));
    let metrics: Vec<&str> = s.metrics.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        metrics,
        ["host_cpu_usage_percent", "host_mem_usage_bytes", "load1"]
    );
    assert!(s.metrics.iter().all(|m| m.samples.is_none()));

    let procs = topology(&mut ctx, "processes", &Query::default()).unwrap();
    let web = &procs[&h("6")];
    assert_eq!(web.label, "webapp");
    assert_eq!(web.label_minor, "scope-fixture-host (6)");
    assert_eq!(web.shape, "square");
    assert_eq!(web.parents.len(), 1);
    assert_eq!(web.parents[0].topology_id, "hosts");
    assert_eq!(web.parents[0].label, "scope-fixture-host");
    let cmd = web.metadata.iter().find(|m| m.id == "cmdline").unwrap();
    assert_eq!(cmd.value, "webapp traffic.py webapp 18080 ");
    // Censoring cuts command lines at the first space.
    let censored = topology(
        &mut ctx,
        "processes",
        &Query::parse(Some("hideCommandLineArguments=true&unconnected=show")),
    )
    .unwrap();
    let cmd = censored[&h("6")]
        .metadata
        .iter()
        .find(|m| m.id == "cmdline")
        .unwrap();
    assert_eq!(cmd.value, "webapp");
}

#[test]
fn probe_node_details_count_connections() {
    let r = probe_window();
    let mut ctx = Ctx::new(&r, Time(0));
    let desc = find_view(&r, "processes").unwrap();
    let d = detail::node_details(&mut ctx, &desc, &h("6"), &Query::default()).unwrap();
    let rows = |i: usize| -> Vec<(String, String, String)> {
        d.connections[i]
            .connections
            .iter()
            .map(|c| {
                (
                    c.node_id.clone(),
                    c.metadata[0].value.clone(),
                    c.metadata[1].value.clone(),
                )
            })
            .collect()
    };
    assert_eq!(d.connections[0].id, "incoming-connections");
    // As Scope's wire shape: data types on the columns (`NormalColumns`), none on the rows.
    let json = serde_json::to_value(&d.connections[0]).unwrap();
    assert_eq!(
        json["columns"],
        serde_json::json!([
            {"id": "port", "label": "Port", "defaultSort": false, "dataType": "number"},
            {"id": "count", "label": "Count", "defaultSort": true, "dataType": "number"}
        ])
    );
    assert_eq!(
        json["connections"][0]["metadata"],
        serde_json::json!([{"id": "port", "label": "", "value": "18080"}, {"id": "count", "label": "", "value": "3"}])
    );
    // One loadgen keeps three connections to :18080; the webapp keeps two to fakedb, one to cache.
    assert_eq!(rows(0), [(h("15"), "18080".into(), "3".into())]);
    assert_eq!(
        rows(1),
        [
            (h("3"), "15432".into(), "2".into()),
            (h("4"), "16379".into(), "1".into())
        ]
    );
    assert!(
        d.summary
            .metrics
            .iter()
            .all(|m| m.samples.as_ref().is_some_and(|s| !s.is_empty()))
    );
    assert!(detail::node_details(&mut ctx, &desc, "nope", &Query::default()).is_none());
}

#[test]
fn a_delta_alone_renders_nothing() {
    let r = merged(&["probe-delta-2.msgpack.gz"]);
    for v in views::VIEWS {
        assert!(view(&r, v, "").nodes.is_empty(), "{v}");
    }
}

fn fixture_report() -> Report {
    merged(&["fixture-report.json"])
}

#[test]
fn go_fixture_processes_containers_and_the_internet() {
    let r = fixture_report();
    let apache = "server.hostname.com;215";
    let procs = view(&r, "processes", "");
    let e = edges(&procs);
    assert_eq!(e["client.hostname.com;10001"], [apache]);
    assert_eq!(e["client.hostname.com;30020"], [apache]);
    assert_eq!(e[INCOMING_INTERNET], [apache]);
    assert_eq!(e["server.hostname.com;1234"], [OUTGOING_INTERNET]);
    assert_eq!(procs.nodes.len(), 6);

    let containers = view(&r, "containers", "");
    let e = edges(&containers);
    assert_eq!(e["a1b2c3d4e5;<container>"], ["5e4d3c2b1a;<container>"]);
    assert_eq!(e[INCOMING_INTERNET], ["5e4d3c2b1a;<container>"]);
    assert_eq!(
        e["pseudo:uncontained:server.hostname.com"],
        [OUTGOING_INTERNET]
    );
    // The container's image parent is its name-based id, as the containers view shows it.
    assert_eq!(
        containers.nodes["5e4d3c2b1a;<container>"].parents(CONTAINER_IMAGE),
        ["image/server;<container_image>"]
    );
    // With the defaults, uncontained processes are hidden (the internet nodes are not).
    let hidden = view(&r, "containers", "pseudo=hide");
    assert!(
        !hidden
            .nodes
            .contains_key("pseudo:uncontained:server.hostname.com")
    );
    assert!(hidden.nodes.contains_key(INCOMING_INTERNET));
    // `out-theinternet` lost its only edge with the uncontained node: unconnected pseudo, filtered.
    assert!(!hidden.nodes.contains_key(OUTGOING_INTERNET));

    let images = view(&r, "containers-by-image", "");
    assert_eq!(
        edges(&images)["image/client;<container_image>"],
        ["image/server;<container_image>"]
    );
    assert_eq!(
        images.nodes["image/server;<container_image>"].counters[CONTAINER],
        2
    );
}

#[test]
fn go_fixture_hosts_pods_and_services() {
    let r = fixture_report();
    let hosts = view(&r, "hosts", "");
    assert_eq!(
        edges(&hosts),
        BTreeMap::from([
            (
                "client.hostname.com;<host>".to_owned(),
                vec!["server.hostname.com;<host>".to_owned()]
            ),
            (
                INCOMING_INTERNET.to_owned(),
                vec!["server.hostname.com;<host>".to_owned()]
            ),
            (OUTGOING_INTERNET.to_owned(), vec![]),
            (
                "server.hostname.com;<host>".to_owned(),
                vec![OUTGOING_INTERNET.to_owned()]
            ),
        ])
    );
    let mut ctx = Ctx::new(&r, Time(0));
    let s = topology(&mut ctx, "hosts", &Query::default()).unwrap();
    let client = &s["client.hostname.com;<host>"];
    assert_eq!(
        (client.label.as_str(), client.label_minor.as_str()),
        ("client", "hostname.com")
    );
    let internet = &s[INCOMING_INTERNET];
    assert!(internet.pseudo);
    assert_eq!(
        (
            internet.label.as_str(),
            internet.label_minor.as_str(),
            internet.shape.as_str()
        ),
        ("The Internet", "Inbound connections", "cloud")
    );

    let pods = view(&r, "pods", "");
    assert_eq!(edges(&pods)["5d4c3b2a1;<pod>"], ["i9h8g7f6e;<pod>"]);
    // Storage shows without parameters, and hides with the defaults.
    assert_eq!(
        edges(&pods)["pvc1234;<persistent_volume_claim>"],
        ["pv1234;<persistent_volume>"]
    );
    // Snapshot data shows as a node of its own, linked from its snapshot (Scope's
    // `volumeSnapshotRenderer`).
    assert_eq!(
        edges(&pods)["vs1234;<volume_snapshot>"],
        ["vsd1234;<volume_snapshot_data>"]
    );
    assert!(pods.nodes.contains_key("vsd1234;<volume_snapshot_data>"));
    let defaults = view(&r, "pods", "pseudo=show");
    assert!(
        !defaults
            .nodes
            .contains_key("pvc1234;<persistent_volume_claim>")
    );
    assert!(defaults.nodes.contains_key("5d4c3b2a1;<pod>"));
    let pod_summaries = topology(&mut ctx, "pods", &Query::default()).unwrap();
    assert_eq!(pod_summaries["5d4c3b2a1;<pod>"].label, "pong-a");
    assert_eq!(pod_summaries["5d4c3b2a1;<pod>"].rank, "ping/pong-a");
    assert_eq!(pod_summaries["5d4c3b2a1;<pod>"].label_minor, "1 container");

    // Pods that talk to each other give their service a self-edge (quirk 5).
    let services = view(&r, "services", "");
    assert_eq!(
        edges(&services)["service1234;<service>"],
        ["service1234;<service>"]
    );
    let sum = topology(&mut ctx, "services", &Query::default()).unwrap();
    assert_eq!(sum["service1234;<service>"].label_minor, "2 pods");
    assert!(sum["service1234;<service>"].stack);
}

fn old_report() -> Report {
    merged(&["render-report-2016.json"])
}

#[test]
fn old_report_containers_and_their_filters() {
    let r = old_report();
    let all = view(&r, "containers", "");
    assert_eq!(all.nodes.len(), 22);
    let weavescope = "c887f8b706b76c5e418e99404ccea84fb19a8edde39eb621dd40f9bd624f9739;<container>";
    assert!(all.nodes.contains_key(weavescope));
    // Defaults (any parameter): application containers that are running.
    let apps = view(&r, "containers", "pseudo=show");
    assert!(!apps.nodes.contains_key(weavescope));
    assert!(apps.nodes.values().all(|n| views::is_running(n)));
    assert_eq!(apps.nodes.len(), 11);
    let system = view(&r, "containers", "system=system&stopped=both");
    assert!(system.nodes.contains_key(weavescope));
    assert!(
        !system
            .nodes
            .values()
            .any(|n| n.latest("docker_container_name") == Some("app1"))
    );

    // By hostname ignores the system and stopped filters: groups carry no container state (quirk 4).
    let by_host = view(&r, "containers-by-hostname", "");
    let by_host_defaults = view(&r, "containers-by-hostname", "system=application");
    assert_eq!(ids(&by_host), ids(&by_host_defaults));
    assert_eq!(by_host.nodes["alpine.weave.local"].counters[CONTAINER], 3);

    let images = view(&r, "containers-by-image", "");
    assert!(images.nodes.contains_key("tomwilkie/app;<container_image>"));
    assert_eq!(
        images.nodes["tomwilkie/app;<container_image>"].counters[CONTAINER],
        2
    );

    let mut ctx = Ctx::new(&r, Time(0));
    let s = topology(&mut ctx, "containers", &Query::default()).unwrap();
    let app1 = s.values().find(|s| s.label == "app1").unwrap();
    assert_eq!(app1.rank, "tomwilkie/app");
    assert_eq!(app1.label_minor, "vagrant-ubuntu-vivid-64");
    // The old report has no templates: no metadata or metric rows.
    assert!(app1.metadata.is_empty() && app1.metrics.is_empty());

    let weave = view(&r, "weave", "");
    assert_eq!(ids(&weave), ["#aa:59:c3:4a:53:61"]);
    let w = topology(&mut ctx, "weave", &Query::default()).unwrap();
    assert_eq!(w["#aa:59:c3:4a:53:61"].label, "vagrant-ubuntu-vivid-64");
}

#[test]
fn the_topology_list_has_every_view_with_stats() {
    let r = fixture_report();
    let mut ctx = Ctx::new(&r, Time(0));
    let list = topology_list(&mut ctx, &Query::default());
    let names: Vec<&str> = list.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Containers",
            "Hosts",
            "Pods",
            "Processes",
            "Services",
            "Tasks"
        ]
    );
    let containers = &list[0];
    assert_eq!(containers.url, "/api/topology/containers");
    let subs: Vec<&str> = containers
        .sub_topologies
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(subs, ["by DNS name", "by image"]);
    assert_eq!(containers.stats.node_count, 6);
    assert_eq!(containers.stats.nonpseudo_node_count, 3);
    let options: Vec<&str> = containers.options.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(options, ["system", "stopped", "pseudo"]);
    let pods = &list[2];
    let subs: Vec<&str> = pods
        .sub_topologies
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(subs, ["Controllers", "Services"]);
    // The stats follow the query: with defaults, storage and unmanaged nodes are filtered.
    let with_defaults = topology_list(&mut ctx, &Query::parse(Some("t=1s")));
    assert!(with_defaults[2].stats.filtered_nodes > pods.stats.filtered_nodes);
    let json = serde_json::to_value(&list).unwrap();
    assert_eq!(
        json[0]["options"][0]["options"][1]["label"],
        "System containers"
    );
    assert_eq!(json[0]["stats"]["edge_count"], 3);
}

#[test]
fn known_services_and_local_networks() {
    use super::super::report::LatestEntry;
    // A host on 10.0.0.0/8 talking to an address the DNS knows as an AWS service, one on the
    // internet and one local address without a host: service pseudo node, the internet, dropped.
    let mut report = Report::default();
    let mut host = Node {
        id: "h;<host>".into(),
        topology: "host".into(),
        ..Node::default()
    };
    host.sets_mut()
        .insert("local_networks", vec!["10.0.0.0/8".into()]);
    let mut proc = Node {
        id: "h;1".into(),
        topology: "process".into(),
        ..Node::default()
    };
    proc.latest_mut().insert(
        "pid",
        LatestEntry {
            timestamp: Time(1),
            value: "1".into(),
        },
    );
    proc.latest_mut().insert(
        "host_node_id",
        LatestEntry {
            timestamp: Time(1),
            value: "h;<host>".into(),
        },
    );
    let mut local = Node {
        id: ";10.0.0.1;5000".into(),
        topology: "endpoint".into(),
        ..Node::default()
    };
    local.latest = proc.latest.clone();
    local.adjacency = vec![
        ";52.1.1.1;443".into(),
        ";8.8.8.8;53".into(),
        ";10.0.0.9;80".into(),
    ];
    // Each of these has one target; the source port check looks at the local side only.
    let mut r2 = local.clone();
    r2.id = ";10.0.0.1;5001".into();
    r2.adjacency = vec![";8.8.8.8;53".into()];
    local.adjacency = vec![";52.1.1.1;443".into()];
    let mut r3 = local.clone();
    r3.id = ";10.0.0.1;5002".into();
    r3.adjacency = vec![";10.0.0.9;80".into()];
    let remote = |id: &str| Node {
        id: id.into(),
        topology: "endpoint".into(),
        ..Node::default()
    };
    let mut t = |name: &str, nodes: Vec<Node>| {
        report
            .topologies
            .entry(name.into())
            .or_default()
            .nodes
            .extend(nodes.into_iter().map(|n| (n.id.clone(), n)));
    };
    t("Host", vec![host]);
    t("Process", vec![proc]);
    t(
        "Endpoint",
        vec![
            local,
            r2,
            r3,
            remote(";52.1.1.1;443"),
            remote(";8.8.8.8;53"),
            remote(";10.0.0.9;80"),
        ],
    );
    report.dns =
        serde_json::json!({"52.1.1.1": {"forward": ["s3.eu-west-1.amazonaws.com"], "reverse": []}});
    let r = Report::merge_all([&report]);
    let procs = view(&r, "processes", "");
    assert_eq!(
        edges(&procs)["h;1"],
        ["out-theinternet", "service-s3.eu-west-1.amazonaws.com"]
    );
    assert!(!procs.nodes.keys().any(|k| k.contains("10.0.0.9")));
    let mut ctx = Ctx::new(&r, Time(0));
    let s = topology(&mut ctx, "processes", &Query::default()).unwrap();
    let svc = &s["service-s3.eu-west-1.amazonaws.com"];
    assert_eq!(
        (svc.label.as_str(), svc.shape.as_str(), svc.pseudo),
        ("s3.eu-west-1.amazonaws.com", "cloud", true)
    );
}

#[test]
fn load_generator_windows_render_connected_containers() {
    // What the benchmarks render: 3 synthetic hosts of 4 containers, 2 connections each.
    let now = Time(1_800_000_000_000_000_000);
    let reports: Vec<Report> = (0..3)
        .map(|h| {
            crate::probe::loadgen::synthetic_report(
                h,
                3,
                &crate::probe::loadgen::Shape::small(4, 2),
                now,
            )
        })
        .collect();
    let r = Report::merge_all(reports.iter());
    let containers = view(&r, "containers", "");
    let s = stats(&containers);
    assert_eq!(s.nonpseudo_node_count, 12, "{:?}", ids(&containers));
    // The hosts share a private network and report both ends: no internet nodes.
    assert_eq!(s.node_count, 12, "{:?}", ids(&containers));
    assert!(s.edge_count >= 12, "{s:?}");
    assert_eq!(stats(&view(&r, "hosts", "")).nonpseudo_node_count, 3);
    assert!(stats(&view(&r, "processes", "")).edge_count >= 12);
}

#[test]
fn an_image_s_container_children_carry_the_image_name_as_scope_s_do() {
    let r = fixture_report();
    let mut ctx = Ctx::new(&r, Time(0));
    let desc = find_view(&r, "containers-by-image").unwrap();
    let d = detail::node_details(
        &mut ctx,
        &desc,
        "image/server;<container_image>",
        &Query::default(),
    )
    .unwrap();
    let containers = d
        .children
        .iter()
        .find(|g| g.topology_id == "containers")
        .and_then(|g| g.nodes.clone())
        .unwrap();
    assert!(!containers.is_empty());
    for child in &containers {
        // Scope's ContainerWithImageNameRenderer: ranked by the image's name without its tag, the
        // image parent named by it, and the image's name among the metadata.
        assert_eq!(child.rank, "image/server", "{}", child.id);
        let image_parent: Vec<_> = child
            .parents
            .iter()
            .filter(|p| p.topology_id == "containers-by-image")
            .map(|p| (p.id.as_str(), p.label.as_str()))
            .collect();
        assert_eq!(
            image_parent,
            [("image/server;<container_image>", "image/server")]
        );
        assert!(
            child
                .metadata
                .iter()
                .any(|m| m.id == "docker_image_name" && m.value == "image/server"),
            "{:?}",
            child.metadata
        );
    }
}

/// Scope's `Propagate`: an image's fields are copied onto its containers unless the container's
/// own entry is newer.
#[test]
fn a_container_keeps_its_own_image_fields_when_they_are_newer() {
    use crate::collector::report::LatestEntry;
    let mut r = fixture_report();
    let containers = &mut r.topologies.get_mut("Container").unwrap().nodes;
    let (id, node) = containers
        .iter_mut()
        .find(|(_, n)| n.latest.contains_key("docker_image_id"))
        .unwrap();
    let id = id.clone();
    node.latest_mut().insert(
        "docker_image_name",
        LatestEntry::new("mine/newer", Time(i64::MAX - 1)),
    );
    let rendered = view(&r, "containers", "");
    let name = |r: &Rendered| {
        r.nodes[id.as_str()]
            .latest("docker_image_name")
            .map(str::to_owned)
    };
    assert_eq!(name(&rendered).as_deref(), Some("mine/newer"));
    // Older than the image's: the image's name is copied over it.
    let node = r
        .topologies
        .get_mut("Container")
        .unwrap()
        .nodes
        .get_mut(&id)
        .unwrap();
    node.latest_mut()
        .insert("docker_image_name", LatestEntry::new("mine/older", Time(1)));
    let rendered = view(&r, "containers", "");
    assert_ne!(name(&rendered).as_deref(), Some("mine/older"));
}

/// A node of `topology` with these latest values.
fn k8s_node(topology: &str, id: &str, latest: &[(&str, &str)]) -> crate::collector::report::Node {
    use crate::collector::report::{LatestEntry, Node};
    Node {
        id: id.into(),
        topology: topology.into(),
        latest: Arc::new(
            latest
                .iter()
                .map(|(k, v)| {
                    let entry = LatestEntry {
                        timestamp: Time(1),
                        value: (*v).into(),
                    };
                    ((*k).to_owned(), entry)
                })
                .collect(),
        ),
        ..Node::default()
    }
}

/// Twenty thousand pods each claiming its own volume claim, and a storage class of all of them:
/// matching every pod with every claim made 4·10⁸ comparisons (minutes); an index makes it one
/// lookup each, and the storage class is linked to its claims up to the limit.
#[test]
fn storage_links_are_looked_up_not_matched_pair_by_pair() {
    let n = 20_000;
    let mut report = Report::default();
    let mut add = |topology: &str, name: &str, node: crate::collector::report::Node| {
        report
            .topologies
            .entry(topology.to_owned())
            .or_default()
            .nodes
            .insert(name.into(), node);
    };
    add(
        "Host",
        "h;<host>",
        k8s_node("host", "h;<host>", &[("host_name", "h")]),
    );
    add(
        "StorageClass",
        "sc",
        k8s_node("storage_class", "sc", &[("kubernetes_name", "fast")]),
    );
    for i in 0..n {
        let claim = format!("claim-{i}");
        let pod = format!("pod-{i}");
        add(
            "PersistentVolumeClaim",
            &claim,
            k8s_node(
                "persistent_volume_claim",
                &claim,
                &[
                    ("kubernetes_name", &claim),
                    ("kubernetes_namespace", "ns"),
                    ("kubernetes_storage_class_name", "fast"),
                ],
            ),
        );
        add(
            "Pod",
            &pod,
            k8s_node(
                "pod",
                &pod,
                &[
                    ("kubernetes_name", &pod),
                    ("kubernetes_namespace", "ns"),
                    ("kubernetes_volume_claim", &format!("{claim};missing")),
                    ("kubernetes_state", "Running"),
                ],
            ),
        );
    }
    let mut ctx = Ctx::new(&report, Time(0));
    let linked = super::views::volumes_for_tests(&mut ctx);
    for i in [0, 1, n / 2, n - 1] {
        let pod = &linked.nodes[format!("pod-{i}").as_str()];
        assert_eq!(
            pod.adjacency.iter().collect::<Vec<_>>(),
            [&format!("claim-{i}")]
        );
    }
    assert_eq!(linked.nodes["sc"].adjacency.len(), n.min(10_000));
}

/// A node with a hundred thousand children merged with another: matched by an index of ids, not
/// by scanning the children for each (5·10⁹ comparisons).
#[test]
fn children_merge_by_id_in_one_pass() {
    use crate::collector::report::Node;
    let child = |i: usize| Node {
        id: format!("c{i}").into(),
        ..Node::default()
    };
    let mut mine = Node {
        children: (0..100_000).map(child).collect(),
        ..Node::default()
    };
    let theirs = Node {
        children: (50_000..150_000)
            .map(child)
            .chain([Node::default(), Node::default()])
            .collect(),
        ..Node::default()
    };
    mine.merge(&theirs);
    // The union by id; children without one are always added.
    assert_eq!(mine.children.len(), 150_002);
    assert_eq!(mine.children[100_000].id, "c100000");
}

/// A report with `nodes` added to `topology` (by id).
fn report_of(
    nodes: impl IntoIterator<Item = (&'static str, crate::collector::report::Node)>,
) -> Report {
    let mut report = Report::default();
    for (topology, node) in nodes {
        report
            .topologies
            .entry(topology.to_owned())
            .or_default()
            .nodes
            .insert(node.id.clone(), node);
    }
    report
}

/// Fifty thousand Weave peers on no known host, all with one nickname, become one unmanaged node
/// holding every peer's addresses. Merged one after the other into the growing node, each merge
/// re-sorted everything gathered so far (10⁹ string moves: 6 s in a debug build at 20,000 peers,
/// about 40 s at 50,000); merged in rounds of neighbours it is n log n, with the same result.
#[test]
fn many_nodes_mapped_to_one_output_merge_in_rounds() {
    let n = 50_000;
    let peers = (0..n).map(|i| {
        let mut node = k8s_node(
            OVERLAY,
            &format!("#peer{i}"),
            &[("weave_peer_nick_name", "nick"), ("weave_peer_name", "x")],
        );
        node.sets = Arc::new(
            [(
                "address".to_owned(),
                vec![format!("10.0.{}.{}", i / 256, i % 256).into()],
            )]
            .into_iter()
            .collect(),
        );
        // Later peers say later: the merged name is the last one's.
        let name = Arc::make_mut(&mut node.latest)
            .get_mut("weave_peer_name")
            .unwrap();
        name.timestamp = Time(i as i64);
        name.value = format!("peer{i}").into();
        ("Overlay", node)
    });
    let report = report_of(peers);
    let weave = super::views::render(&mut Ctx::new(&report, Time(0)), "weave").unwrap();
    let unmanaged = &weave.nodes[format!("{UNMANAGED_PREFIX}nick").as_str()];
    assert_eq!(unmanaged.sets.get("address").map(Vec::len), Some(n));
    assert_eq!(
        unmanaged.latest("weave_peer_name"),
        Some(format!("peer{}", n - 1).as_str())
    );
}

/// Merging in rounds gives what merging one after the other gives, for nodes that disagree.
#[test]
fn merging_in_rounds_equals_merging_in_order() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(18);
    for _ in 0..200 {
        let count = rng.random_range(1..12);
        let nodes: Vec<RNode> = (0..count)
            .map(|_| {
                let mut node = k8s_node(
                    POD,
                    "same",
                    &[(["a", "b", "c"][rng.random_range(0..3)], "v")],
                );
                let latest = Arc::make_mut(&mut node.latest);
                for (k, v) in latest.iter_mut() {
                    v.timestamp = Time(rng.random_range(0..3));
                    v.value = format!("{k}{}", rng.random_range(0..100)).into();
                }
                node.sets = Arc::new(
                    [(
                        "s".to_owned(),
                        vec![rng.random_range(0..5).to_string().into()],
                    )]
                    .into_iter()
                    .collect(),
                );
                let mut rnode = RNode::from_report(&node);
                *rnode.counters.entry(Name::from("x")).or_default() += 1;
                // Children from a few dozen ids, each node's its own (which one a merge keeps
                // shows): none, a few (inserted one by one) or many (merged in one pass).
                let origin = rng.random::<u32>().to_string();
                let many = [0, 2, 40][rng.random_range(0..3)];
                for _ in 0..rng.random_range(0..=many) {
                    let id = format!("child{}", rng.random_range(0..60));
                    let mut child = RNode::bare(id.as_str(), PROCESS);
                    child.set_latest("origin", &origin, Time(0));
                    rnode.children_mut().insert(Name::from(id), Arc::new(child));
                }
                rnode
            })
            .collect();
        let mut first_wins: Children = BTreeMap::new();
        for node in &nodes {
            for (id, child) in node.children.iter() {
                first_wins
                    .entry(id.clone())
                    .or_insert_with(|| child.clone());
            }
        }
        let mut in_order = nodes[0].clone();
        for node in &nodes[1..] {
            in_order.merge(node);
        }
        assert_eq!(*in_order.children, first_wins);
        let mut join = Join::new();
        for (i, node) in nodes.into_iter().enumerate() {
            join.add_mapped(&Name::from(format!("in{i}")), node);
        }
        let rounds = join.result(&Nodes::new());
        let merged = &rounds.nodes["same"];
        assert_eq!(merged.latest, in_order.latest);
        assert_eq!(merged.sets, in_order.sets);
        assert_eq!(merged.counters, in_order.counters);
        assert_eq!(*merged.children, first_wins);
    }
}

/// A pod naming a hundred thousand replica sets, each of its own deployment: the deployments were
/// unioned into the pod's parents one set at a time, re-sorting the growing list each time
/// (33 s in a debug build at 50,000, four times that here); gathered and sorted once they cost
/// n log n.
#[test]
fn a_pod_of_many_replica_sets_gets_their_deployments_in_one_sort() {
    let n = 100_000;
    let mut pod = k8s_node("pod", "pod", &[]);
    let parents =
        |key: &str, values: Vec<Name>| Arc::new([(key.to_owned(), values)].into_iter().collect());
    pod.parents = parents(
        "replica_set",
        (0..n).map(|i| format!("rs{i:06}").into()).collect(),
    );
    let sets = (0..n).map(|i| {
        let mut set = k8s_node("replica_set", &format!("rs{i:06}"), &[]);
        set.parents = parents("deployment", vec![format!("d{}", n - i).into()]);
        ("ReplicaSet", set)
    });
    let mut report = report_of(sets.chain([("Pod", pod)]));
    report.upgrade_pods();
    let pod = &report.topologies["Pod"].nodes["pod"];
    let deployments = &pod.parents["deployment"];
    assert_eq!(deployments.len(), n);
    assert!(deployments.is_sorted());
    assert!(pod.parents.get("replica_set").is_none());
    assert!(report.topologies["ReplicaSet"].nodes.is_empty());
}

/// Twenty thousand pods in as many namespaces, all selected: each pod was tested against every
/// selected namespace (4·10⁸ tests; 10 s in a debug build at 10,000, four times that here); the
/// selection is a set, so each pod costs one lookup.
#[test]
fn a_namespace_filter_looks_each_node_up_once() {
    let n = 20_000;
    let nodes = (0..n).flat_map(|i| {
        let ns = format!("ns{i}");
        let pod = format!("pod{i}");
        [
            (
                "Namespace",
                k8s_node("namespace", &ns, &[("kubernetes_name", &ns)]),
            ),
            (
                "Pod",
                k8s_node(
                    "pod",
                    &pod,
                    &[
                        ("kubernetes_name", &pod),
                        ("kubernetes_namespace", &ns),
                        ("kubernetes_state", "Running"),
                    ],
                ),
            ),
        ]
    });
    let report = report_of(nodes);
    let every: Vec<String> = (0..n).map(|i| format!("ns{i}")).collect();
    let all = view(&report, "pods", &format!("namespace={}", every.join(",")));
    assert_eq!(all.nodes.len(), n);
    let even: Vec<&str> = every.iter().step_by(2).map(String::as_str).collect();
    let half = view(&report, "pods", &format!("namespace={}", even.join(",")));
    assert_eq!(half.nodes.len(), n / 2);
    assert!(half.nodes.contains_key("pod0") && !half.nodes.contains_key("pod1"));
}

#[test]
fn a_view_serialised_as_it_is_summarised_reads_back_as_its_summaries() {
    use super::topologies::topology_json;
    // Views with every kind of row: metadata, metrics, parents, tables, adjacency; and one
    // with options.
    let report = merged(&["fixture-report.json", "probe-full-4.json"]);
    for (view, q) in [
        ("processes", ""),
        ("containers", ""),
        ("containers-by-image", ""),
        ("hosts", ""),
        ("pods", ""),
        ("containers", "system=all&stopped=both"),
    ] {
        let query = Query::parse(Some(q).filter(|q| !q.is_empty()));
        let summaries = topology(&mut Ctx::new(&report, Time(0)), view, &query).unwrap();
        let raw = topology_json(&mut Ctx::new(&report, Time(0)), view, &query)
            .unwrap()
            .unwrap();
        assert!(!summaries.is_empty(), "{view}");
        let read: BTreeMap<String, shared::topology::NodeSummary> = raw
            .iter()
            .map(|(id, n)| (id.clone(), serde_json::from_str(n.get()).unwrap()))
            .collect();
        assert_eq!(read, summaries, "{view}?{q}");
    }
}

#[test]
fn a_list_following_its_plan_lets_go_of_each_rendering_after_its_last_use_and_makes_none_twice() {
    use super::topologies::{ListPlan, topology_list_planned};
    // Views of every kind, Kubernetes ones included, some sharing renderings.
    let report = merged(&["fixture-report.json", "probe-full-4.json"]);
    let query = Query::default();
    let mut unplanned = Ctx::new(&report, Time(0));
    let (list, plan) = topology_list_planned(&mut unplanned, &query, None);
    assert_eq!(list, topology_list(&mut Ctx::new(&report, Time(0)), &query));
    // Without a plan every rendering is held to the end.
    assert!(unplanned.memo.len() > 10, "{}", unplanned.memo.len());
    let mut planned = Ctx::new(&report, Time(0));
    let (followed, learned) = topology_list_planned(&mut planned, &query, Some(&plan));
    assert_eq!(followed, list);
    assert_eq!(learned, plan);
    assert_eq!(planned.made, unplanned.made, "a rendering made twice");
    assert!(planned.memo.is_empty(), "{:?}", planned.memo.keys());
    // A plan that does not fit (here: two renderings let go of after the first view, which later
    // views ask for) costs renderings made again, not a different list; and the plans learned
    // from there come back to the right one.
    let wrong = ListPlan {
        last_asked: ["select:endpoint", "base:process"]
            .map(|key| (key.to_owned(), 0))
            .into(),
    };
    let mut ctx = Ctx::new(&report, Time(0));
    let (followed, mut learned) = topology_list_planned(&mut ctx, &query, Some(&wrong));
    assert_eq!(followed, list);
    assert!(ctx.made > unplanned.made, "{} renderings", ctx.made);
    for _ in 0..2 {
        let mut ctx = Ctx::new(&report, Time(0));
        let (followed, next) = topology_list_planned(&mut ctx, &query, Some(&learned));
        assert_eq!(followed, list);
        assert_eq!(ctx.made, unplanned.made);
        learned = next;
    }
    assert_eq!(learned, plan);
}

#[test]
fn a_node_copied_to_drop_its_edges_or_merged_into_an_empty_one_shares_its_children() {
    let child = Arc::new(RNode::bare("c", CONTAINER));
    let mut a = RNode::bare("a", PROCESS);
    a.children_mut().insert(Name::from("c"), child);
    a.adjacency.extend([Name::from("gone")]);
    let input = Rendered {
        nodes: BTreeMap::from([(Name::from("a"), Arc::new(a))]),
        filtered: 0,
    };
    // The edge to a node not in the rendering is dropped: the node is copied, its children not.
    let out = filter(&input, |_| true);
    assert!(out.nodes["a"].adjacency.is_empty());
    assert!(!input.nodes["a"].adjacency.is_empty());
    assert!(Arc::ptr_eq(
        &out.nodes["a"].children,
        &input.nodes["a"].children
    ));
    let mut b = RNode::bare("b", PROCESS);
    b.merge(&input.nodes["a"]);
    assert!(Arc::ptr_eq(&b.children, &input.nodes["a"].children));
    // Adding to shared children copies them first.
    b.children_mut()
        .insert(Name::from("d"), Arc::new(RNode::bare("d", CONTAINER)));
    assert_eq!(b.children.len(), 2);
    assert_eq!(input.nodes["a"].children.len(), 1);
    // Nodes without children share one empty map.
    assert!(Arc::ptr_eq(
        &RNode::bare("x", HOST).children,
        &RNode::default().children
    ));
}

/// A join's edges go through the mapping of both ends, whichever way an input reached its output
/// (a child of a seeded output, a node mapped onto it with its own copy of the id): the same
/// edges as mapping every edge by the ids' text.
#[test]
fn a_join_s_edges_follow_the_mapping_however_inputs_reached_their_outputs() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..100 {
        let (inputs, outputs) = (rng.random_range(1..40), rng.random_range(1..6));
        // Seeded outputs keyed by one copy of their id, their nodes holding another.
        let seed: Nodes = (0..outputs)
            .filter(|_| rng.random_bool(0.5))
            .map(|o| {
                let node = RNode::bare(format!("out{o}").as_str(), HOST);
                (Name::from(format!("out{o}")), Arc::new(node))
            })
            .collect();
        let mut input = Nodes::new();
        let mut output_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in 0..inputs {
            let mut node = RNode::bare(format!("in{i}").as_str(), PROCESS);
            for _ in 0..rng.random_range(0..4) {
                node.adjacency
                    .insert(Name::from(format!("in{}", rng.random_range(0..inputs))));
            }
            let outs: Vec<String> = (0..rng.random_range(0..3))
                .map(|_| format!("out{}", rng.random_range(0..outputs)))
                .collect();
            output_of.insert(format!("in{i}"), outs);
            input.insert(node.id.clone(), Arc::new(node));
        }
        let mut join = Join::seeded(&seed);
        for (id, node) in &input {
            for out in &output_of[id.as_str()] {
                if rng.random_bool(0.5) {
                    join.add_child(node, out, HOST);
                } else {
                    let mut mapped = RNode::bare(out.as_str(), HOST);
                    mapped.adjacency.insert(Name::from("dropped"));
                    join.add_mapped(id, mapped);
                }
            }
        }
        let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, node) in &input {
            for out in &output_of[id.as_str()] {
                for adj in &node.adjacency {
                    for target in &output_of[adj.as_str()] {
                        expected
                            .entry(out.clone())
                            .or_default()
                            .push(target.clone());
                    }
                }
            }
        }
        for targets in expected.values_mut() {
            targets.sort();
            targets.dedup();
        }
        let rendered = join.result(&input);
        let got: BTreeMap<String, Vec<String>> = rendered
            .nodes
            .iter()
            .filter(|(_, n)| !n.adjacency.is_empty())
            .map(|(id, n)| {
                (
                    id.to_string(),
                    n.adjacency.iter().map(|a| a.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(got, expected);
        // Connected: each node with an edge to or from another.
        let mut linked: Vec<String> = expected
            .iter()
            .flat_map(|(from, to)| {
                let other: Vec<&String> = to.iter().filter(|t| *t != from).collect();
                let from = (!other.is_empty()).then_some(from);
                from.into_iter().chain(other).cloned().collect::<Vec<_>>()
            })
            .collect();
        linked.sort();
        linked.dedup();
        let connected: Vec<String> = connected(&rendered.nodes)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(connected, linked);
    }
}

/// Filters drop the edges to nodes they leave out, and `connected` finds the nodes with edges,
/// whether an edge's end is the node's key itself (a join's edges), a copy of its text (a
/// report's), or no node at all; a filter that keeps every node keeps every edge to one.
#[test]
fn edges_find_their_nodes_by_key_or_by_a_copy_of_its_text() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for round in 0..200 {
        let n = rng.random_range(1..30);
        let keys: Vec<Name> = (0..n).map(|i| Name::from(format!("n{i}"))).collect();
        let mut input = Nodes::new();
        let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in &keys {
            let mut node = RNode::bare(key.as_str(), PROCESS);
            node.id = key.clone();
            for _ in 0..rng.random_range(0..5) {
                let end = match rng.random_range(0..3) {
                    0 => keys[rng.random_range(0..n)].clone(),
                    1 => Name::from(format!("n{}", rng.random_range(0..n))),
                    _ => Name::from(format!("gone{}", rng.random_range(0..3))),
                };
                edges
                    .entry(key.to_string())
                    .or_default()
                    .push(end.to_string());
                node.adjacency.insert(end);
            }
            input.insert(key.clone(), Arc::new(node));
        }
        // Every other round keeps every node.
        let kept: BTreeSet<String> = keys
            .iter()
            .filter(|_| round % 2 == 0 || rng.random_bool(0.7))
            .map(|k| k.to_string())
            .collect();
        let rendered = Rendered {
            nodes: input,
            filtered: 3,
        };
        let out = filter(&rendered, |node| kept.contains(node.id.as_str()));
        assert_eq!(out.filtered, 3 + n - kept.len());
        let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for id in &kept {
            let mut to: Vec<String> = edges
                .get(id)
                .into_iter()
                .flatten()
                .filter(|end| kept.contains(*end))
                .cloned()
                .collect();
            to.sort();
            to.dedup();
            expected.insert(id.clone(), to);
        }
        let got: BTreeMap<String, Vec<String>> = out
            .nodes
            .iter()
            .map(|(id, node)| {
                let to = node.adjacency.iter().map(|a| a.to_string()).collect();
                (id.to_string(), to)
            })
            .collect();
        assert_eq!(got, expected);
        let mut linked: Vec<String> = expected
            .iter()
            .flat_map(|(from, to)| {
                let other: Vec<&String> = to.iter().filter(|t| *t != from).collect();
                let from = (!other.is_empty()).then_some(from);
                from.into_iter().chain(other).cloned().collect::<Vec<_>>()
            })
            .collect();
        linked.sort();
        linked.dedup();
        let connected: Vec<String> = connected(&out.nodes)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(connected, linked);
    }
}
