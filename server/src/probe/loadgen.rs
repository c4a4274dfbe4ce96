//! `scopehub loadgen`: synthetic hosts × containers × connections posting realistic reports through
//! the real HTTP path, for load tests and benchmarks. It always stops by itself (`--duration`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::collector::keyed::KeyedMap;
use crate::collector::name::Name;
use crate::collector::report::{Latest, LatestEntry, Metric, Node, Report, Sample, Time, Topology};
use crate::config::LoadgenArgs;

/// What one synthetic host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub containers: usize,
    /// Processes on the host, spread over its containers (the rest run outside any container).
    pub processes: usize,
    /// Distinct images the containers run.
    pub images: usize,
    /// Outgoing TCP connections per container, to containers on other hosts.
    pub connections: usize,
}

impl Shape {
    /// `containers` containers of one process each, over 5 images.
    pub fn small(containers: usize, connections: usize) -> Shape {
        Shape {
            containers,
            processes: containers,
            images: 5,
            connections,
        }
    }

    /// The "medium" host of the comparison with Scope's app (docs/benchmarks.md): 150 processes,
    /// 50 containers, 16 images, 400 outgoing connections.
    pub fn medium() -> Shape {
        Shape {
            containers: 50,
            processes: 150,
            images: 16,
            connections: 8,
        }
    }

    /// The "large" host: 600 processes, 200 containers, 40 images, 1,600 outgoing connections.
    pub fn large() -> Shape {
        Shape {
            containers: 200,
            processes: 600,
            images: 40,
            connections: 8,
        }
    }
}

fn gauge(value: f64, max: f64, now: Time) -> Metric {
    Metric {
        samples: vec![Sample { date: now, value }],
        min: 0.0,
        max,
    }
}

/// One synthetic host's report: a host node, its containers and their images, its processes (as
/// evenly spread over the containers as they go) and, per container, `connections` TCP connections
/// to containers on other hosts, with both ends' endpoints as Scope's probe reports them.
pub fn synthetic_report(host: usize, hosts: usize, shape: &Shape, now: Time) -> Report {
    let hostname = format!("loadgen-host-{host}");
    let host_id = format!("{hostname};<host>");
    let ip = |h: usize, c: usize| format!("10.{}.{}.{}", (h / 250) % 250, h % 250, c % 250 + 1);
    let mut report = Report {
        ts: now,
        window: 3_000_000_000,
        id: crate::secrets::random_hex(8),
        ..Report::default()
    };
    let latest = |pairs: &[(&str, String)]| -> Arc<Latest> {
        Arc::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), LatestEntry::new(v.clone(), now)))
                .collect(),
        )
    };

    let mut host_node = Node {
        id: Name::from(&host_id),
        topology: "host".into(),
        latest: latest(&[
            ("host_name", hostname.clone()),
            ("os", "linux".into()),
            ("kernel_version", "6.1.0-loadgen".into()),
            ("uptime", "3600".into()),
        ]),
        ..Node::default()
    };
    // The synthetic hosts share one private network, as a cluster's hosts do.
    host_node
        .sets_mut()
        .insert("local_networks", vec!["10.0.0.0/8".into()]);
    host_node
        .metrics_mut()
        .insert("load1", gauge((host % 7) as f64 / 2.0, 4.0, now));
    // CPU use moves with the clock, as a real host's does: each report changes the map a little.
    let second = (now.0 / 1_000_000_000).rem_euclid(60) as f64;
    host_node.metrics_mut().insert(
        "host_cpu_usage_percent",
        gauge(12.5 + second / 4.0, 100.0, now),
    );
    host_node
        .metrics_mut()
        .insert("host_mem_usage_bytes", gauge(2.0e9, 16.0e9, now));

    let images = shape.images.max(1);
    let mut image_nodes = BTreeMap::new();
    let mut container_nodes = BTreeMap::new();
    let mut process_nodes = BTreeMap::new();
    let mut endpoint_nodes = BTreeMap::new();
    for i in 0..images.min(shape.containers.max(1)) {
        let image = format!("{i:04x}{host:04x}feed");
        let image_id = format!("{image};<container_image>");
        image_nodes.insert(
            Name::from(&image_id),
            Node {
                id: image_id.into(),
                topology: "container_image".into(),
                latest: latest(&[
                    ("docker_image_id", image),
                    ("docker_image_name", format!("example/app-{i}:1.{i}")),
                ]),
                parents: Arc::new(KeyedMap::from([("host", vec![Name::from(&host_id)])])),
                ..Node::default()
            },
        );
    }
    let container_of = |p: usize| (shape.containers > 0).then(|| p % shape.containers);
    // PIDs of several lengths, as on a real host (they sort as numbers, not as text).
    let pid_of = |p: usize| 100 + p * 37;
    for c in 0..shape.containers {
        let cid = format!("{host:04x}{c:04x}cafe");
        let container_id = format!("{cid};<container>");
        let image = c % images;
        let mut container = Node {
            id: Name::from(&container_id),
            topology: "container".into(),
            latest: latest(&[
                ("docker_container_id", cid.clone()),
                ("docker_container_name", format!("app-{c}")),
                (
                    "docker_image_name",
                    format!("example/app-{image}:1.{image}"),
                ),
                ("docker_image_id", format!("{image:04x}{host:04x}feed")),
                ("docker_container_state", "running".into()),
                ("docker_container_state_human", "Up 1 hour".into()),
                ("docker_container_uptime", "3537".into()),
                ("docker_container_ips", ip(host, c)),
                ("host_node_id", host_id.clone()),
            ]),
            ..Node::default()
        };
        container
            .parents_mut()
            .insert("host", vec![Name::from(&host_id)]);
        container.parents_mut().insert(
            "container_image",
            vec![format!("{image:04x}{host:04x}feed;<container_image>").into()],
        );
        container.metrics_mut().insert(
            "docker_cpu_total_usage",
            gauge((c as f64 + second) % 50.0, 100.0, now),
        );
        container
            .metrics_mut()
            .insert("docker_memory_usage", gauge(64.0e6 + c as f64, 1.0e9, now));
        container_nodes.insert(Name::from(&container_id), container);
    }
    for p in 0..shape.processes {
        let pid = pid_of(p);
        let process_id = format!("{hostname};{pid}");
        let mut process = Node {
            id: Name::from(&process_id),
            topology: "process".into(),
            latest: latest(&[
                ("pid", pid.to_string()),
                ("ppid", "1".into()),
                ("name", format!("app-{}", p % 7)),
                (
                    "cmdline",
                    format!("/usr/bin/app-{} --port 8080 --worker {p}", p % 7),
                ),
                ("threads", "8".into()),
                ("host_node_id", host_id.clone()),
            ]),
            ..Node::default()
        };
        process
            .parents_mut()
            .insert("host", vec![Name::from(&host_id)]);
        if let Some(c) = container_of(p) {
            let cid = format!("{host:04x}{c:04x}cafe");
            process
                .latest_mut()
                .insert("docker_container_id", LatestEntry::new(&cid, now));
            process
                .parents_mut()
                .insert("container", vec![format!("{cid};<container>").into()]);
        }
        process.metrics_mut().insert(
            "process_cpu_usage_percent",
            gauge((p as f64 + second) % 10.0, 100.0, now),
        );
        process.metrics_mut().insert(
            "process_memory_usage_bytes",
            gauge(32.0e6 + p as f64, 1.0e9, now),
        );
        process_nodes.insert(process_id.into(), process);
    }
    for c in 0..shape.containers {
        // The container's first process owns its sockets.
        let pid = pid_of(c).to_string();
        // The container's listening socket, which its peers' connections reach.
        let listening = format!(";{};8080", ip(host, c));
        let server_side = endpoint_nodes
            .entry(Name::from(&listening))
            .or_insert_with(|| Node {
                id: listening.into(),
                topology: "endpoint".into(),
                ..Node::default()
            });
        server_side
            .latest_mut()
            .insert("pid", LatestEntry::new(&pid, now));
        server_side
            .latest_mut()
            .insert("host_node_id", LatestEntry::new(&host_id, now));
        for k in 0..shape.connections {
            let peer_host = (host + k + 1) % hosts.max(1);
            let peer_container = (c + k) % shape.containers.max(1);
            let local = format!(";{};{}", ip(host, c), 40_000 + k);
            let remote = format!(";{};{}", ip(peer_host, peer_container), 8080);
            let mut endpoint = Node {
                id: Name::from(&local),
                topology: "endpoint".into(),
                ..Node::default()
            };
            endpoint.adjacency = vec![Name::from(&remote)];
            endpoint
                .latest_mut()
                .insert("pid", LatestEntry::new(&pid, now));
            endpoint
                .latest_mut()
                .insert("host_node_id", LatestEntry::new(&host_id, now));
            endpoint_nodes.insert(local.into(), endpoint);
            endpoint_nodes
                .entry(Name::from(&remote))
                .or_insert_with(|| Node {
                    id: remote.into(),
                    topology: "endpoint".into(),
                    ..Node::default()
                });
        }
    }
    // The templates Scope's probe sends with these topologies, so that the map shows the same
    // rows and metrics for synthetic hosts as for real ones.
    use super::host::{HOST_METADATA, HOST_METRICS, PROCESS_METADATA, PROCESS_METRICS, templates};
    for (name, nodes, metadata, metrics) in [
        (
            "Host",
            BTreeMap::from([(host_node.id.clone(), host_node)]),
            HOST_METADATA,
            HOST_METRICS,
        ),
        ("ContainerImage", image_nodes, IMAGE_METADATA, "{}"),
        (
            "Container",
            container_nodes,
            CONTAINER_METADATA,
            CONTAINER_METRICS,
        ),
        ("Process", process_nodes, PROCESS_METADATA, PROCESS_METRICS),
        ("Endpoint", endpoint_nodes, "{}", "{}"),
    ] {
        report.topologies.insert(
            name.into(),
            Topology {
                nodes,
                metadata_templates: templates(metadata),
                metric_templates: templates(metrics),
                ..Topology::default()
            },
        );
    }
    report
}

// Scope's probe's templates for containers and images (as in shared/fixtures/scope).
const CONTAINER_METADATA: &str = r##"{"docker_image_name":{"id":"docker_image_name","label":"Image","priority":2.0,"from":"latest"},"docker_container_state_human":{"id":"docker_container_state_human","label":"State","priority":4.0,"from":"latest"},"docker_container_id":{"id":"docker_container_id","label":"ID","priority":11.0,"from":"latest"},"docker_container_uptime":{"id":"docker_container_uptime","label":"Uptime","dataType":"duration","priority":6.0,"from":"latest"}}"##;
const CONTAINER_METRICS: &str = r##"{"docker_cpu_total_usage":{"id":"docker_cpu_total_usage","label":"CPU","format":"percent","priority":1.0},"docker_memory_usage":{"id":"docker_memory_usage","label":"Memory","format":"filesize","priority":2.0}}"##;
const IMAGE_METADATA: &str = r##"{"docker_image_id":{"id":"docker_image_id","label":"Image ID","priority":1.0,"from":"latest"},"container":{"id":"container","label":"# Containers","dataType":"number","priority":2.0,"from":"counters"}}"##;

/// Posts synthetic reports until `--duration` is over; prints what the server answered.
pub async fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    let url = args.url.join("api/report").context("--url")?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(12))
        .build()?;
    let sent = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(std::sync::Mutex::new(BTreeMap::<String, u64>::new()));
    let deadline = Instant::now() + args.duration;
    let mut tasks = Vec::new();
    for host in 0..args.hosts {
        let (client, url, token) = (client.clone(), url.clone(), args.token.clone());
        let (sent, accepted, refused) = (sent.clone(), accepted.clone(), refused.clone());
        let hosts = args.hosts;
        let interval = args.interval;
        let shape = args.shape();
        tasks.push(tokio::spawn(async move {
            let probe_id = crate::secrets::random_hex(8);
            while Instant::now() < deadline {
                let started = Instant::now();
                let now = Time(crate::clock::now_millis().saturating_mul(1_000_000));
                let report = synthetic_report(host, hosts, &shape, now);
                let Ok((body, content_type)) = super::encode(&report, false) else {
                    return;
                };
                let response = client
                    .post(url.clone())
                    .header("authorization", format!("Scope-Probe token={token}"))
                    .header("content-type", content_type)
                    .header("content-encoding", "gzip")
                    .header("x-scope-probe-id", &probe_id)
                    .body(body)
                    .send()
                    .await;
                sent.fetch_add(1, Ordering::Relaxed);
                match response {
                    Ok(r) if r.status().is_success() => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        *refused
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(r.status().as_u16().to_string())
                            .or_default() += 1
                    }
                    Err(_) => {
                        *refused
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry("error".into())
                            .or_default() += 1
                    }
                }
                tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let refused = refused.lock().map(|r| r.clone()).unwrap_or_default();
    println!(
        "loadgen: {} reports sent, {} accepted, refused: {}",
        sent.load(Ordering::Relaxed),
        accepted.load(Ordering::Relaxed),
        if refused.is_empty() {
            "none".to_owned()
        } else {
            format!("{refused:?}")
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_reports_have_the_requested_shape() {
        let r = synthetic_report(1, 3, &Shape::small(4, 2), Time(1));
        assert_eq!(r.topology("Container").unwrap().nodes.len(), 4);
        assert_eq!(r.topology("Process").unwrap().nodes.len(), 4);
        let local_endpoints = r
            .topology("Endpoint")
            .unwrap()
            .nodes
            .values()
            .filter(|n| !n.adjacency.is_empty())
            .count();
        assert_eq!(local_endpoints, 8);
        let medium = synthetic_report(0, 10, &Shape::medium(), Time(1));
        assert_eq!(medium.topology("Process").unwrap().nodes.len(), 150);
        assert_eq!(medium.topology("Container").unwrap().nodes.len(), 50);
        assert_eq!(medium.topology("ContainerImage").unwrap().nodes.len(), 16);
        let outgoing: usize = medium
            .topology("Endpoint")
            .unwrap()
            .nodes
            .values()
            .map(|n| n.adjacency.len())
            .sum();
        assert_eq!(outgoing, 400);
    }
}
