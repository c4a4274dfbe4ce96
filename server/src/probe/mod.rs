//! Our probe (`scopehub probe`): reports the host it runs on in Scope's wire format.
//!
//! Owns reading `/proc` (`host.rs`) and publishing reports with backoff. Shares only the report
//! types with the collector. Like Scope's probe it sends a full report every third publish and
//! deltas against the last full one in between (and a full one again after any failure).
//! Containers come from the Docker engine's socket when it answers (`docker.rs`).

pub mod control;
pub mod docker;
pub mod host;
pub mod host_shell;
pub mod loadgen;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::collector::report::{Node, Report, Time, Topology};
use crate::config::ProbeArgs;

const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// One publish in this many is a full report (Scope's `--probe.full-report-every`).
const FULL_EVERY: u32 = 3;

/// Encodes a report as the probe sends it: gzip of msgpack (or of JSON with `--json`).
pub fn encode(report: &Report, json: bool) -> anyhow::Result<(Vec<u8>, &'static str)> {
    let (raw, content_type) = if json {
        (serde_json::to_vec(report)?, "application/json")
    } else {
        (rmp_serde::to_vec_named(report)?, "application/msgpack")
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw)?;
    Ok((gz.finish()?, content_type))
}

/// What changed in `current` since `full`, as Scope's probe sends it between full reports: nodes the
/// full report had lose their id and topology and keep only changed sections (metrics always);
/// new nodes are sent whole; templates and shapes are left out.
pub fn delta(current: &Report, full: &Report) -> Report {
    let mut out = Report {
        ts: current.ts,
        window: current.window,
        id: current.id.clone(),
        ..Report::default()
    };
    for (name, topology) in &current.topologies {
        let base = full.topologies.get(name);
        let mut nodes = BTreeMap::new();
        for (id, node) in &topology.nodes {
            let Some(old) = base.and_then(|b| b.nodes.get(id)) else {
                nodes.insert(id.clone(), node.clone());
                continue;
            };
            let mut part = Node {
                metrics: node.metrics.clone(),
                ..Node::default()
            };
            part.latest = Arc::new(
                node.latest
                    .iter()
                    .filter(|(k, v)| old.latest.get(k).is_none_or(|o| o.value != v.value))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            );
            if node.sets != old.sets {
                part.sets = node.sets.clone();
            }
            if node.adjacency != old.adjacency {
                part.adjacency = node.adjacency.clone();
            }
            if node.parents != old.parents {
                part.parents = node.parents.clone();
            }
            if part != Node::default() {
                nodes.insert(id.clone(), part);
            }
        }
        out.topologies.insert(
            name.clone(),
            Topology {
                nodes,
                ..Topology::default()
            },
        );
    }
    out
}

fn now() -> Time {
    Time(crate::clock::now_millis().saturating_mul(1_000_000))
}

/// What a probe needs to publish: where, with which token, how often.
#[derive(Debug, Clone)]
pub struct Options {
    pub url: url::Url,
    pub token: String,
    pub interval: Duration,
    pub json: bool,
    pub once: bool,
    pub proc_root: std::path::PathBuf,
    pub docker_socket: std::path::PathBuf,
    /// Offer a shell on this host (`--host-exec`).
    pub host_exec: bool,
}

/// `scopehub probe`: collect and publish until stopped (or once, with `--once`).
pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    publish(Options {
        url: args.url,
        token: args.token,
        interval: args.interval,
        json: args.json,
        once: args.once,
        proc_root: args.proc_root,
        docker_socket: args.docker_socket,
        host_exec: args.host_exec,
    })
    .await
}

/// Collects and publishes until stopped (or once). Also runs inside `serve --local-probe`.
pub async fn publish(args: Options) -> anyhow::Result<()> {
    let report_url = args.url.join("api/report").context("--url")?;
    let probe_id = crate::secrets::random_hex(8);
    let mut collector = host::Collector::new(&args.proc_root, probe_id.clone());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(12))
        .build()?;
    tracing::info!(url = %args.url, probe = %probe_id, host = %collector.hostname, "probe starting");
    let docker = std::sync::Arc::new(docker::Docker::new(&args.docker_socket));
    // Controls asked for on the map come over the control channel; one that changed something
    // makes the next report go at once.
    let changed = std::sync::Arc::new(tokio::sync::Notify::new());
    if !args.once {
        tokio::spawn(control::run(
            control::Channel {
                url: args.url.clone(),
                token: args.token.clone(),
                probe_id: probe_id.clone(),
                host_exec: args.host_exec,
                host_id: collector.host_node_id(),
            },
            docker.clone(),
            changed.clone(),
        ));
    }
    // Whether containers were readable last time: the log says so once per change, not per report.
    let mut containers_readable: Option<bool> = None;
    let mut backoff = Duration::from_secs(1);
    let mut last_full: Option<Report> = None;
    let mut publishes: u32 = 0;
    loop {
        let started = std::time::Instant::now();
        let mut report = collector.collect(now());
        match docker.snapshot().await {
            Ok(snapshot) => {
                if containers_readable != Some(true) {
                    tracing::info!(socket = %docker.socket().display(), containers = snapshot.containers.len(), "reporting containers from the Docker engine");
                }
                containers_readable = Some(true);
                let proc_root = args.proc_root.clone();
                let at = report.ts;
                let host = docker::HostSide {
                    node_id: collector.host_node_id(),
                    probe_id: probe_id.clone(),
                    addresses: host::host_addresses(&args.proc_root),
                };
                docker::add_to_report(&mut report, &snapshot, &host, at, |pid| {
                    std::fs::read_to_string(proc_root.join(pid).join("cgroup")).ok()
                });
            }
            Err(error) => {
                if containers_readable != Some(false) {
                    tracing::info!(socket = %docker.socket().display(), %error, "no container runtime readable; reporting no containers");
                }
                containers_readable = Some(false);
            }
        }
        if args.host_exec {
            let at = report.ts;
            host_shell::announce(&mut report, &collector.host_node_id(), &probe_id, at);
        }
        report.window = i64::try_from(args.interval.as_nanos()).unwrap_or(i64::MAX);
        let full = publishes.is_multiple_of(FULL_EVERY) || last_full.is_none();
        let to_send = match (&last_full, full) {
            (Some(base), false) => delta(&report, base),
            _ => report.clone(),
        };
        let (body, content_type) = encode(&to_send, args.json)?;
        let sent = client
            .post(report_url.clone())
            .header("authorization", format!("Scope-Probe token={}", args.token))
            .header("content-type", content_type)
            .header("content-encoding", "gzip")
            .header("x-scope-probe-id", &probe_id)
            .header("x-scope-probe-version", env!("CARGO_PKG_VERSION"))
            .header(
                "user-agent",
                concat!("Scopehub_Probe/", env!("CARGO_PKG_VERSION")),
            )
            .body(body)
            .send()
            .await;
        let outcome = match sent {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                Err(format!(
                    "{status}: {}",
                    text.chars().take(300).collect::<String>()
                ))
            }
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => {
                backoff = Duration::from_secs(1);
                if full {
                    last_full = Some(report);
                }
                publishes = publishes.wrapping_add(1);
                if args.once {
                    return Ok(());
                }
                tokio::select! {
                    () = tokio::time::sleep(args.interval.saturating_sub(started.elapsed())) => {}
                    () = changed.notified() => {}
                }
            }
            Err(error) if args.once => anyhow::bail!("report refused: {error}"),
            Err(error) => {
                tracing::warn!(%error, retry_in_s = backoff.as_secs(), "publishing failed; retrying");
                // The app may have missed the full report the deltas refer to: start again with one.
                last_full = None;
                publishes = 0;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::report::{LatestEntry, Metric, Sample};

    fn node(id: &str, name: &str, adjacency: &[&str], at: i64) -> Node {
        let mut n = Node {
            id: id.into(),
            topology: "process".into(),
            ..Node::default()
        };
        n.latest_mut().insert(
            "name",
            LatestEntry {
                timestamp: Time(at),
                value: name.into(),
            },
        );
        n.latest_mut().insert(
            "pid",
            LatestEntry {
                timestamp: Time(at),
                value: "1".into(),
            },
        );
        n.adjacency = adjacency
            .iter()
            .map(|a| crate::collector::name::Name::from(*a))
            .collect();
        n.metrics_mut().insert(
            "cpu",
            Metric {
                samples: vec![Sample {
                    date: Time(at),
                    value: at as f64,
                }],
                min: 0.0,
                max: 100.0,
            },
        );
        n
    }

    fn report(nodes: Vec<Node>, at: i64) -> Report {
        let mut r = Report {
            ts: Time(at),
            window: 1,
            ..Report::default()
        };
        let nodes = nodes.into_iter().map(|n| (n.id.clone(), n)).collect();
        r.topologies.insert(
            "Process".into(),
            Topology {
                shape: "square".into(),
                nodes,
                ..Topology::default()
            },
        );
        r
    }

    #[test]
    fn deltas_carry_only_changes_and_merge_back_to_the_current_state() {
        let full = report(
            vec![node("h;1", "old", &["x"], 1), node("h;2", "same", &[], 1)],
            1,
        );
        let current = report(
            vec![
                node("h;1", "new", &["x", "y"], 2),
                node("h;2", "same", &[], 2),
                node("h;3", "born", &[], 2),
            ],
            2,
        );
        let d = delta(&current, &full);
        let nodes = &d.topologies["Process"].nodes;
        let changed = &nodes["h;1"];
        assert!(
            changed.id.is_empty() && changed.topology.is_empty(),
            "known nodes are partial"
        );
        assert_eq!(
            changed.latest.keys().collect::<Vec<_>>(),
            vec!["name"],
            "only the changed value"
        );
        assert_eq!(changed.adjacency, vec!["x", "y"]);
        assert!(
            nodes["h;2"].latest.is_empty() && !nodes["h;2"].metrics.is_empty(),
            "metrics always"
        );
        assert_eq!(nodes["h;3"].id, "h;3", "new nodes are whole");
        assert!(
            d.topologies["Process"].shape.is_empty(),
            "shapes are left out"
        );

        // What the collector makes of full + delta is the current state.
        let merged = Report::merge_all([&full, &d]);
        for (id, now) in &current.topologies["Process"].nodes {
            let m = &merged.topologies["Process"].nodes[id];
            assert_eq!(m.id, *id);
            for (k, v) in now.latest.iter() {
                assert_eq!(m.latest[k].value, v.value, "{id} {k}");
            }
            assert!(now.adjacency.iter().all(|a| m.adjacency.contains(a)));
        }
    }

    #[test]
    fn encoded_reports_decode_in_the_collector() {
        let r = report(vec![node("h;1", "a", &[], 5)], 5);
        for json in [false, true] {
            let (body, content_type) = encode(&r, json).unwrap();
            let format = crate::collector::decode::format_of(Some(content_type)).unwrap();
            let back = crate::collector::decode::decode(&body, format, true, 1 << 20).unwrap();
            assert_eq!(
                back.topologies["Process"].nodes,
                r.topologies["Process"].nodes
            );
        }
    }
}
