//! `scopehub loadgen`: synthetic hosts × containers × connections posting realistic reports through
//! the real HTTP path, for load tests and benchmarks. It always stops by itself (`--duration`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::collector::report::{LatestEntry, Metric, Node, Report, Sample, Time, Topology};
use crate::config::LoadgenArgs;

/// One synthetic host's report: a host node, `containers` containers each with one process, and
/// `connections` TCP connections per container to containers on other hosts.
pub fn synthetic_report(
    host: usize,
    hosts: usize,
    containers: usize,
    connections: usize,
    now: Time,
) -> Report {
    let hostname = format!("loadgen-host-{host}");
    let host_id = format!("{hostname};<host>");
    let ip = |h: usize, c: usize| format!("10.{}.{}.{}", (h / 250) % 250, h % 250, c % 250 + 1);
    let mut report = Report {
        ts: now,
        window: 3_000_000_000,
        id: crate::secrets::random_hex(8),
        ..Report::default()
    };

    let mut host_node = Node {
        id: host_id.clone(),
        topology: "host".into(),
        ..Node::default()
    };
    host_node
        .latest
        .insert("host_name".into(), LatestEntry::new(&hostname, now));
    host_node
        .latest
        .insert("os".into(), LatestEntry::new("linux", now));
    // The synthetic hosts share one private network, as a cluster's hosts do.
    host_node
        .sets
        .insert("local_networks".into(), vec!["10.0.0.0/8".into()]);
    let load = (host % 7) as f64 / 2.0;
    host_node.metrics.insert(
        "load1".into(),
        Metric {
            samples: vec![Sample {
                date: now,
                value: load,
            }],
            min: 0.0,
            max: 4.0,
        },
    );

    let mut container_nodes = BTreeMap::new();
    let mut process_nodes = BTreeMap::new();
    let mut endpoint_nodes = BTreeMap::new();
    for c in 0..containers {
        let cid = format!("{host:04x}{c:04x}cafe");
        let container_id = format!("{cid};<container>");
        let pid = 1000 + c;
        let mut container = Node {
            id: container_id.clone(),
            topology: "container".into(),
            ..Node::default()
        };
        container
            .latest
            .insert("docker_container_id".into(), LatestEntry::new(&cid, now));
        container.latest.insert(
            "docker_container_name".into(),
            LatestEntry::new(format!("app-{c}"), now),
        );
        container.latest.insert(
            "docker_image_name".into(),
            LatestEntry::new(format!("example/app-{}", c % 5), now),
        );
        container
            .latest
            .insert("host_node_id".into(), LatestEntry::new(&host_id, now));
        container
            .parents
            .insert("host".into(), vec![host_id.clone()]);
        container_nodes.insert(container_id.clone(), container);

        let process_id = format!("{hostname};{pid}");
        let mut process = Node {
            id: process_id.clone(),
            topology: "process".into(),
            ..Node::default()
        };
        process
            .latest
            .insert("pid".into(), LatestEntry::new(pid.to_string(), now));
        process.latest.insert(
            "name".into(),
            LatestEntry::new(format!("app-{}", c % 5), now),
        );
        process
            .latest
            .insert("docker_container_id".into(), LatestEntry::new(&cid, now));
        process
            .latest
            .insert("host_node_id".into(), LatestEntry::new(&host_id, now));
        process
            .parents
            .insert("container".into(), vec![container_id.clone()]);
        process.parents.insert("host".into(), vec![host_id.clone()]);
        process_nodes.insert(process_id, process);

        // The container's listening socket, which its peers' connections reach.
        let listening = format!(";{};8080", ip(host, c));
        let server_side = endpoint_nodes
            .entry(listening.clone())
            .or_insert_with(|| Node {
                id: listening,
                topology: "endpoint".into(),
                ..Node::default()
            });
        server_side
            .latest
            .insert("pid".into(), LatestEntry::new(pid.to_string(), now));
        server_side
            .latest
            .insert("host_node_id".into(), LatestEntry::new(&host_id, now));
        for k in 0..connections {
            let peer_host = (host + k + 1) % hosts.max(1);
            let peer_container = (c + k) % containers.max(1);
            let local = format!(";{};{}", ip(host, c), 40_000 + k);
            let remote = format!(";{};{}", ip(peer_host, peer_container), 8080);
            let mut endpoint = Node {
                id: local.clone(),
                topology: "endpoint".into(),
                ..Node::default()
            };
            endpoint.adjacency = vec![remote.clone()];
            endpoint
                .latest
                .insert("pid".into(), LatestEntry::new(pid.to_string(), now));
            endpoint
                .latest
                .insert("host_node_id".into(), LatestEntry::new(&host_id, now));
            endpoint_nodes.insert(local, endpoint);
            endpoint_nodes
                .entry(remote.clone())
                .or_insert_with(|| Node {
                    id: remote,
                    topology: "endpoint".into(),
                    ..Node::default()
                });
        }
    }
    report.topologies.insert(
        "Host".into(),
        Topology {
            nodes: BTreeMap::from([(host_id, host_node)]),
            ..Topology::default()
        },
    );
    report.topologies.insert(
        "Container".into(),
        Topology {
            nodes: container_nodes,
            ..Topology::default()
        },
    );
    report.topologies.insert(
        "Process".into(),
        Topology {
            nodes: process_nodes,
            ..Topology::default()
        },
    );
    report.topologies.insert(
        "Endpoint".into(),
        Topology {
            nodes: endpoint_nodes,
            ..Topology::default()
        },
    );
    report
}

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
        let (hosts, containers, connections, interval) =
            (args.hosts, args.containers, args.connections, args.interval);
        tasks.push(tokio::spawn(async move {
            let probe_id = crate::secrets::random_hex(8);
            while Instant::now() < deadline {
                let started = Instant::now();
                let now = Time(crate::clock::now_millis().saturating_mul(1_000_000));
                let report = synthetic_report(host, hosts, containers, connections, now);
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
        let r = synthetic_report(1, 3, 4, 2, Time(1));
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
    }
}
