//! Containers, from the Docker Engine API on its unix socket (Scope's `probe/docker`, in short):
//! running containers and their images become Container and ContainerImage nodes, and processes
//! whose cgroup names a running container get `docker_container_id`, so the containers view groups
//! them. Read-only: only `GET /containers/json` and `GET /images/json` are called.
//!
//! Container metrics (CPU, memory) would need one stats call per container and are not read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::collector::keyed::KeyedMap;
use crate::collector::report::{LatestEntry, Node, Report, Time, Topology};

/// Where Docker listens by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// Largest answer read from the socket.
const MAX_ANSWER: usize = 32 << 20;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Port {
    #[serde(default, rename = "IP")]
    pub ip: String,
    #[serde(default)]
    pub private_port: u16,
    #[serde(default)]
    pub public_port: u16,
    #[serde(default, rename = "Type")]
    pub kind: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Network {
    #[serde(default, rename = "IPAddress")]
    pub ip_address: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    #[serde(default)]
    pub networks: BTreeMap<String, Network>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    #[serde(default)]
    pub network_mode: String,
}

/// One entry of `GET /containers/json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Container {
    pub id: String,
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub image: String,
    #[serde(default, rename = "ImageID")]
    pub image_id: String,
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub network_settings: Option<NetworkSettings>,
    #[serde(default)]
    pub host_config: Option<HostConfig>,
}

/// One entry of `GET /images/json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Image {
    pub id: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub virtual_size: i64,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// What the engine reported at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub containers: Vec<Container>,
    pub images: Vec<Image>,
}

/// A Docker engine reachable on a unix socket.
#[derive(Debug, Clone)]
pub struct Docker {
    socket: PathBuf,
}

impl Docker {
    pub fn new(socket: impl Into<PathBuf>) -> Docker {
        Docker {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET path` over HTTP/1.0 (the engine answers and closes: no chunking, no keep-alive).
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let mut stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .with_context(|| format!("cannot connect to {}", self.socket.display()))?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes())
            .await?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(MAX_ANSWER as u64 + 1)
            .read_to_end(&mut answer)
            .await?;
        anyhow::ensure!(answer.len() <= MAX_ANSWER, "answer to {path} is too large");
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("malformed HTTP answer")?;
        let head = String::from_utf8_lossy(&answer[..split]);
        let status = head.split_whitespace().nth(1).unwrap_or("");
        anyhow::ensure!(status == "200", "{path}: HTTP {status}");
        serde_json::from_slice(&answer[split + 4..]).with_context(|| format!("{path}: bad JSON"))
    }

    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let fetch = async {
            Ok::<_, anyhow::Error>(Snapshot {
                containers: self.get("/containers/json").await?,
                images: self.get("/images/json").await?,
            })
        };
        tokio::time::timeout(Duration::from_secs(5), fetch)
            .await
            .context("the Docker engine did not answer within 5 s")?
    }
}

fn short_id(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

/// The container a process belongs to, from its cgroup path (`…/docker-<id>.scope`,
/// `/docker/<id>`, `…/<id>`): the last 64-hex-digit name in it.
pub fn container_of(cgroup: &str) -> Option<&str> {
    cgroup
        .lines()
        .flat_map(|line| line.split(['/', '-', '.', ':']))
        .rfind(|part| part.len() == 64 && part.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn template(id: &str, label: &str, priority: f64, from: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "label": label, "priority": priority, "from": from})
}

/// Adds the snapshot's containers and images to `report` (whose host node is `host_id`), and marks
/// the processes inside them. `cgroup_of(pid)` reads a process's cgroup file.
pub fn add_to_report(
    report: &mut Report,
    snapshot: &Snapshot,
    host_id: &str,
    now: Time,
    cgroup_of: impl Fn(&str) -> Option<String>,
) {
    let host_parent = || {
        std::sync::Arc::new(KeyedMap::from([(
            "host".to_owned(),
            vec![host_id.to_owned()],
        )]))
    };
    let images: HashMap<&str, &Image> = snapshot
        .images
        .iter()
        .map(|i| (short_id(&i.id), i))
        .collect();
    let mut containers = BTreeMap::new();
    let mut image_nodes = BTreeMap::new();
    let mut running = HashMap::new();
    for c in &snapshot.containers {
        let id = format!("{};<container>", c.id);
        let image_id = short_id(&c.image_id).to_owned();
        let image = images.get(image_id.as_str());
        let image_name = image
            .and_then(|i| i.repo_tags.as_ref()?.first().cloned())
            .filter(|t| t != "<none>:<none>")
            .unwrap_or_else(|| c.image.clone());
        let mut node = Node {
            id: id.clone(),
            topology: "container".into(),
            parents: host_parent(),
            ..Node::default()
        };
        if !image_id.is_empty() {
            node.parents_mut().insert(
                "container_image".into(),
                vec![format!("{image_id};<container_image>")],
            );
        }
        let name = c
            .names
            .first()
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_default();
        for (key, value) in [
            ("docker_container_id", c.id.clone()),
            ("docker_container_name", name),
            ("docker_image_id", image_id.clone()),
            ("docker_image_name", image_name.clone()),
            ("docker_container_command", c.command.clone()),
            ("docker_container_state", c.state.clone()),
            ("docker_container_state_human", c.status.clone()),
            ("docker_container_created", c.created.to_string()),
            ("host_node_id", host_id.to_owned()),
        ] {
            node.latest_mut()
                .insert(key.into(), LatestEntry::new(value, now));
        }
        for (k, v) in c.labels.iter().flatten() {
            node.latest_mut().insert(
                format!("docker_label_{k}"),
                LatestEntry::new(v.clone(), now),
            );
        }
        let host_network = c
            .host_config
            .as_ref()
            .is_some_and(|h| h.network_mode == "host");
        if host_network {
            node.latest_mut().insert(
                "docker_is_in_host_network".into(),
                LatestEntry::new("true", now),
            );
        }
        let ips: Vec<String> = c
            .network_settings
            .iter()
            .flat_map(|n| n.networks.values())
            .map(|n| n.ip_address.clone())
            .filter(|ip| !ip.is_empty())
            .collect();
        if !ips.is_empty() {
            node.sets_mut().insert(
                "docker_container_ips_with_scopes".into(),
                ips.iter().map(|ip| format!(";{ip}")).collect(),
            );
            node.sets_mut().insert("docker_container_ips".into(), ips);
        }
        let ports: Vec<String> = c
            .ports
            .iter()
            .map(|p| match p.public_port {
                0 => format!("{}/{}", p.private_port, p.kind),
                public => format!("{}:{public}->{}/{}", p.ip, p.private_port, p.kind),
            })
            .collect();
        if !ports.is_empty() {
            node.sets_mut()
                .insert("docker_container_ports".into(), ports);
        }
        if !image_id.is_empty() {
            let mut image_node = Node {
                id: format!("{image_id};<container_image>"),
                topology: "container_image".into(),
                parents: host_parent(),
                ..Node::default()
            };
            image_node
                .latest_mut()
                .insert("docker_image_id".into(), LatestEntry::new(&image_id, now));
            image_node.latest_mut().insert(
                "docker_image_name".into(),
                LatestEntry::new(&image_name, now),
            );
            if let Some(i) = image {
                image_node.latest_mut().insert(
                    "docker_image_size".into(),
                    LatestEntry::new(i.size.to_string(), now),
                );
                for (k, v) in i.labels.iter().flatten() {
                    image_node.latest_mut().insert(
                        format!("docker_image_label_{k}"),
                        LatestEntry::new(v.clone(), now),
                    );
                }
            }
            image_nodes.insert(image_node.id.clone(), image_node);
        }
        running.insert(c.id.clone(), id.clone());
        containers.insert(id, node);
    }
    if let Some(processes) = report.topologies.get_mut("Process") {
        for process in processes.nodes.values_mut() {
            let Some(pid) = process.latest.get("pid").map(|l| l.value.clone()) else {
                continue;
            };
            let Some(cgroup) = cgroup_of(&pid) else {
                continue;
            };
            if let Some(container) = container_of(&cgroup).and_then(|c| running.get(c)) {
                let cid = container.trim_end_matches(";<container>").to_owned();
                process
                    .latest_mut()
                    .insert("docker_container_id".into(), LatestEntry::new(cid, now));
                process
                    .parents_mut()
                    .insert("container".into(), vec![container.clone()]);
            }
        }
    }
    let metadata: crate::collector::report::Templates = [
        template("docker_image_name", "Image", 2.0, "latest"),
        template("docker_container_command", "Command", 3.0, "latest"),
        template("docker_container_state_human", "State", 4.0, "latest"),
        template("docker_container_id", "ID", 11.0, "latest"),
        template("docker_container_ips", "IPs", 15.0, "sets"),
        template("docker_container_ports", "Ports", 16.0, "sets"),
    ]
    .into_iter()
    .map(|t| (t["id"].as_str().unwrap_or_default().to_owned(), t))
    .collect();
    report.topologies.insert(
        "Container".into(),
        Topology {
            nodes: containers,
            metadata_templates: metadata,
            ..Topology::default()
        },
    );
    report.topologies.insert(
        "ContainerImage".into(),
        Topology {
            nodes: image_nodes,
            metadata_templates: [
                template("docker_image_id", "Image ID", 1.0, "latest"),
                template("container", "# Containers", 2.0, "counters"),
            ]
            .into_iter()
            .map(|t| (t["id"].as_str().unwrap_or_default().to_owned(), t))
            .collect(),
            ..Topology::default()
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa99887766554433221100";

    #[test]
    fn containers_are_found_in_cgroup_paths() {
        assert_eq!(
            container_of(&format!("0::/system.slice/docker-{ID}.scope")),
            Some(ID)
        );
        assert_eq!(container_of(&format!("12:cpu:/docker/{ID}")), Some(ID));
        assert_eq!(
            container_of("0::/user.slice/user-1000.slice/session-2.scope"),
            None
        );
    }

    /// A fake engine on a unix socket answering like Docker does (HTTP/1.0, then close).
    async fn engine(dir: &Path) -> PathBuf {
        let socket = dir.join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let body = if request.starts_with("GET /containers/json ") {
                    serde_json::json!([{
                        "Id": ID, "Names": ["/web"], "Image": "nginx:1.25",
                        "ImageID": "sha256:abc123", "Command": "nginx -g 'daemon off;'",
                        "Created": 1_700_000_000, "State": "running", "Status": "Up 2 hours",
                        "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
                        "Labels": {"app": "web"},
                        "HostConfig": {"NetworkMode": "bridge"},
                        "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}}
                    }])
                } else if request.starts_with("GET /images/json ") {
                    serde_json::json!([{"Id": "sha256:abc123", "RepoTags": ["nginx:1.25"], "Size": 187_000_000}])
                } else {
                    let _ = stream.write_all(b"HTTP/1.0 404 Not Found\r\n\r\n{}").await;
                    continue;
                };
                let answer =
                    format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}");
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        socket
    }

    #[tokio::test]
    async fn a_docker_engine_becomes_containers_images_and_grouped_processes() {
        let dir = tempfile::tempdir().unwrap();
        let docker = Docker::new(engine(dir.path()).await);
        let snapshot = docker.snapshot().await.unwrap();
        assert_eq!(snapshot.containers.len(), 1);

        let now = Time(1_000);
        let mut report = Report::default();
        let mut process = Node {
            id: "h;42".into(),
            topology: "process".into(),
            ..Node::default()
        };
        process
            .latest_mut()
            .insert("pid".into(), LatestEntry::new("42", now));
        process
            .latest_mut()
            .insert("name".into(), LatestEntry::new("nginx", now));
        process
            .latest_mut()
            .insert("host_node_id".into(), LatestEntry::new("h;<host>", now));
        let outside = Node {
            id: "h;7".into(),
            latest: KeyedMap::from([("pid".into(), LatestEntry::new("7", now))]).into(),
            ..process.clone()
        };
        report.topologies.insert(
            "Process".into(),
            Topology {
                nodes: BTreeMap::from([("h;42".into(), process), ("h;7".into(), outside)]),
                ..Topology::default()
            },
        );
        add_to_report(&mut report, &snapshot, "h;<host>", now, |pid| {
            (pid == "42").then(|| format!("0::/system.slice/docker-{ID}.scope"))
        });
        let container = &report.topology("Container").unwrap().nodes[&format!("{ID};<container>")];
        assert_eq!(container.latest["docker_container_name"].value, "web");
        assert_eq!(container.latest["docker_image_id"].value, "abc123");
        assert_eq!(container.latest["docker_label_app"].value, "web");
        assert_eq!(
            container.sets["docker_container_ips_with_scopes"],
            [";172.17.0.2"]
        );
        assert_eq!(
            container.sets["docker_container_ports"],
            ["0.0.0.0:8080->80/tcp"]
        );
        let image = &report.topology("ContainerImage").unwrap().nodes["abc123;<container_image>"];
        assert_eq!(image.latest["docker_image_name"].value, "nginx:1.25");
        let procs = &report.topology("Process").unwrap().nodes;
        assert_eq!(procs["h;42"].latest["docker_container_id"].value, ID);
        assert!(!procs["h;7"].latest.contains_key("docker_container_id"));

        // Rendered, the process is inside its container, labelled by name, ranked by image.
        let merged = Report::merge_all([&report]);
        let mut ctx = crate::collector::render::Ctx::new(&merged, now);
        let view = crate::collector::render::topologies::topology(
            &mut ctx,
            "containers",
            &crate::collector::render::topologies::Query::default(),
        )
        .unwrap();
        let web = &view[&format!("{ID};<container>")];
        assert_eq!((web.label.as_str(), web.rank.as_str()), ("web", "nginx"));
        let rendered = crate::collector::render::views::render(&mut ctx, "containers").unwrap();
        let children =
            |id: &str| -> Vec<String> { rendered.nodes[id].children.keys().cloned().collect() };
        assert_eq!(children(&format!("{ID};<container>")), ["h;42"]);
        assert_eq!(children("pseudo:uncontained:h"), ["h;7"]);

        // No engine: an error, not a hang.
        assert!(
            Docker::new(dir.path().join("none.sock"))
                .snapshot()
                .await
                .is_err()
        );
    }
}
