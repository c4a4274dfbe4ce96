//! Containers, from a Docker-compatible engine (Docker, or podman's compatible API) through the
//! `bollard` client on its unix socket (Scope's `probe/docker`, in short): containers — running
//! and stopped — and their images become Container and ContainerImage nodes with CPU and memory
//! from each running container's stats, and processes whose cgroup names a container get
//! `docker_container_id`, so the containers view groups them. The controls Scope's probe offers
//! on a container are announced with them and carried out by [`Docker::control`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use bollard::models::{ContainerStatsResponse, ContainerSummary, ImageSummary};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder,
    RestartContainerOptionsBuilder, StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;

use crate::collector::keyed::KeyedMap;
use crate::collector::name::Name;
use crate::collector::report::{LatestEntry, Metric, Node, Report, Sample, Time, Topology};

/// Where Docker listens by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// The Engine API version asked for: 1.41 is what podman 4's compatible API speaks, and every
/// Docker since 20.10 does too.
const API_VERSION: bollard::ClientVersion = bollard::ClientVersion {
    major_version: 1,
    minor_version: 41,
};
/// How long one call to the engine may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Containers reported at most (the newest first), and stats read at once.
const MAX_CONTAINERS: usize = 2_000;
const STATS_AT_ONCE: usize = 8;
/// How long a stop or restart lets the container's process end before it is killed.
const STOP_GRACE_SECONDS: i32 = 10;
/// How long a control may take in all.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(STOP_GRACE_SECONDS as u64 + 10);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Port {
    pub ip: String,
    pub private_port: u16,
    pub public_port: u16,
    pub kind: String,
}

/// A running container's resource use, from its stats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// CPU use since the stats before, in percent of one core (as `docker stats` shows it);
    /// `None` for the first reading of a container.
    pub cpu_percent: Option<f64>,
    /// Memory in use (without the page cache the kernel may drop), and the limit.
    pub memory_bytes: u64,
    pub memory_limit: u64,
}

/// One container as the engine lists it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Container {
    pub id: String,
    pub names: Vec<String>,
    pub image: String,
    pub image_id: String,
    pub command: String,
    pub created: i64,
    /// `running`, `paused`, `exited`, `created`…
    pub state: String,
    /// In words: "Up 2 hours".
    pub status: String,
    pub ports: Vec<Port>,
    pub labels: BTreeMap<String, String>,
    pub ips: Vec<String>,
    /// `host`, `bridge`…, when the engine says.
    pub network_mode: Option<String>,
    pub host_network: bool,
    pub stats: Option<Stats>,
}

/// One image as the engine lists it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Image {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub size: i64,
    pub labels: BTreeMap<String, String>,
}

/// What the engine reported at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub containers: Vec<Container>,
    pub images: Vec<Image>,
}

/// The CPU counters of a container's last stats, for the next one's percentage.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    container: u64,
    system: u64,
}

/// A Docker-compatible engine reachable on a unix socket.
pub struct Docker {
    socket: PathBuf,
    client: Result<bollard::Docker, String>,
    cpu: Mutex<HashMap<String, CpuSample>>,
    /// Each container's network mode, for engines whose list leaves it out (podman's): read once
    /// per container by inspecting it (a container's network mode never changes).
    network_modes: Mutex<HashMap<String, String>>,
}

fn container_of_summary(c: ContainerSummary) -> Container {
    let network_mode = c.host_config.as_ref().and_then(|h| h.network_mode.clone());
    let host_network = network_mode.as_deref() == Some("host");
    let mut ips: Vec<String> = c
        .network_settings
        .and_then(|n| n.networks)
        .into_iter()
        .flat_map(|networks| networks.into_values())
        .filter_map(|n| n.ip_address)
        .filter(|ip| !ip.is_empty())
        .collect();
    ips.sort();
    ips.dedup();
    Container {
        id: c.id.unwrap_or_default(),
        names: c.names.unwrap_or_default(),
        image: c.image.unwrap_or_default(),
        image_id: c.image_id.unwrap_or_default(),
        command: c.command.unwrap_or_default(),
        created: c.created.unwrap_or_default(),
        state: c.state.map(|s| s.to_string()).unwrap_or_default(),
        status: c.status.unwrap_or_default(),
        ports: c
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| Port {
                ip: p.ip.unwrap_or_default(),
                private_port: p.private_port,
                public_port: p.public_port.unwrap_or(0),
                kind: p.typ.map(|t| t.to_string()).unwrap_or_default(),
            })
            .collect(),
        labels: c.labels.unwrap_or_default().into_iter().collect(),
        ips,
        network_mode,
        host_network,
        stats: None,
    }
}

fn image_of_summary(i: ImageSummary) -> Image {
    Image {
        id: i.id,
        repo_tags: i.repo_tags,
        size: i.size,
        labels: i.labels.into_iter().collect(),
    }
}

/// Memory in use as `docker stats` counts it: the usage without the inactive page cache.
fn memory_in_use(stats: &ContainerStatsResponse) -> (u64, u64) {
    let Some(memory) = &stats.memory_stats else {
        return (0, 0);
    };
    let usage = memory.usage.unwrap_or(0);
    let cache = memory
        .stats
        .as_ref()
        .and_then(|s| {
            s.get("inactive_file")
                .or_else(|| s.get("total_inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    (usage.saturating_sub(cache), memory.limit.unwrap_or(0))
}

/// CPU use between two samples, in percent of one core: the container's share of the whole
/// machine's time, times its cores.
fn cpu_percent(before: CpuSample, now: CpuSample, cores: u32) -> Option<f64> {
    let container = now.container.checked_sub(before.container)?;
    let system = now.system.checked_sub(before.system)?;
    (system > 0).then(|| container as f64 / system as f64 * f64::from(cores.max(1)) * 100.0)
}

impl Docker {
    pub fn new(socket: impl Into<PathBuf>) -> Docker {
        let socket = socket.into();
        // The client's own timeout is a backstop for controls (a stop waits for the container's
        // grace period); listings and stats have `CALL_TIMEOUT` each.
        let client = bollard::Docker::connect_with_unix(
            &socket.to_string_lossy(),
            CONTROL_TIMEOUT.as_secs(),
            &API_VERSION,
        )
        .map_err(|e| e.to_string());
        Docker {
            socket,
            client,
            cpu: Mutex::new(HashMap::new()),
            network_modes: Mutex::new(HashMap::new()),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn client(&self) -> anyhow::Result<&bollard::Docker> {
        self.client
            .as_ref()
            .map_err(|e| anyhow::anyhow!("cannot use {}: {e}", self.socket.display()))
    }

    /// Every container (running or not, at most [`MAX_CONTAINERS`]) with the running ones'
    /// stats, and every image.
    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let client = self.client()?;
        let fetch = async {
            let containers = client
                .list_containers(Some(ListContainersOptionsBuilder::new().all(true).build()))
                .await
                .context("listing containers")?;
            let images = client
                .list_images(Some(ListImagesOptionsBuilder::new().build()))
                .await
                .context("listing images")?;
            Ok::<_, anyhow::Error>((containers, images))
        };
        let (containers, images) = tokio::time::timeout(CALL_TIMEOUT, fetch)
            .await
            .context("the container engine did not answer within 5 s")??;
        let mut containers: Vec<Container> = containers
            .into_iter()
            .map(container_of_summary)
            .filter(|c| !c.id.is_empty())
            .collect();
        containers.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        containers.truncate(MAX_CONTAINERS);
        self.add_network_modes(client, &mut containers).await;
        self.add_stats(client, &mut containers).await;
        Ok(Snapshot {
            containers,
            images: images.into_iter().map(image_of_summary).collect(),
        })
    }

    /// Fills in the network mode of containers listed without one and without networks (podman's
    /// list has no `HostConfig`): inspected once each, a few at a time, then remembered.
    async fn add_network_modes(&self, client: &bollard::Docker, containers: &mut [Container]) {
        let known: HashMap<String, String> = self
            .network_modes
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let unknown: Vec<String> = containers
            .iter()
            .filter(|c| c.network_mode.is_none() && c.ips.is_empty() && !known.contains_key(&c.id))
            .map(|c| c.id.clone())
            .collect();
        let inspected: Vec<(String, String)> = futures_util::stream::iter(unknown)
            .map(|id| async move {
                let inspect = client.inspect_container(&id, None);
                let mode = tokio::time::timeout(CALL_TIMEOUT, inspect)
                    .await
                    .ok()?
                    .ok()?
                    .host_config?
                    .network_mode?;
                Some((id, mode))
            })
            .buffer_unordered(STATS_AT_ONCE)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        let mut modes = self.network_modes.lock().unwrap_or_else(|e| e.into_inner());
        modes.extend(inspected);
        // Containers gone are forgotten.
        let present: std::collections::HashSet<&str> =
            containers.iter().map(|c| c.id.as_str()).collect();
        modes.retain(|id, _| present.contains(id.as_str()));
        for c in containers.iter_mut() {
            if c.network_mode.is_none()
                && let Some(mode) = modes.get(&c.id)
            {
                c.host_network = mode == "host";
                c.network_mode = Some(mode.clone());
            }
        }
    }

    /// Reads the running containers' stats, a few at a time; a container whose stats do not come
    /// is reported without them.
    async fn add_stats(&self, client: &bollard::Docker, containers: &mut [Container]) {
        let running: Vec<String> = containers
            .iter()
            .filter(|c| c.state == "running")
            .map(|c| c.id.clone())
            .collect();
        let read: HashMap<String, ContainerStatsResponse> = futures_util::stream::iter(running)
            .map(|id| async move {
                let options = StatsOptionsBuilder::new()
                    .stream(false)
                    .one_shot(true)
                    .build();
                let mut stream = client.stats(&id, Some(options));
                let first = tokio::time::timeout(CALL_TIMEOUT, stream.next()).await;
                match first {
                    Ok(Some(Ok(stats))) => Some((id, stats)),
                    _ => None,
                }
            })
            .buffer_unordered(STATS_AT_ONCE)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        let mut previous = self.cpu.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = HashMap::new();
        for c in containers.iter_mut() {
            let Some(stats) = read.get(&c.id) else {
                continue;
            };
            let cpu = stats.cpu_stats.as_ref();
            let sample = cpu.and_then(|cpu| {
                Some(CpuSample {
                    container: cpu.cpu_usage.as_ref()?.total_usage?,
                    system: cpu.system_cpu_usage?,
                })
            });
            let cores = cpu.and_then(|c| c.online_cpus).unwrap_or(1);
            let cpu_percent = match (sample, previous.get(&c.id)) {
                (Some(now), Some(before)) => cpu_percent(*before, now, cores),
                _ => None,
            };
            if let Some(sample) = sample {
                next.insert(c.id.clone(), sample);
            }
            let (memory_bytes, memory_limit) = memory_in_use(stats);
            c.stats = Some(Stats {
                cpu_percent,
                memory_bytes,
                memory_limit,
            });
        }
        // Containers gone are forgotten.
        *previous = next;
    }

    /// Carries out one of Scope's container controls on `container` (an id).
    pub async fn control(&self, container: &str, control: &str) -> anyhow::Result<ControlDone> {
        let client = self.client()?;
        let call = async {
            match control {
                START => client.start_container(container, None).await?,
                STOP => {
                    let options = StopContainerOptionsBuilder::new()
                        .t(STOP_GRACE_SECONDS)
                        .build();
                    client.stop_container(container, Some(options)).await?
                }
                RESTART => {
                    let options = RestartContainerOptionsBuilder::new()
                        .t(STOP_GRACE_SECONDS)
                        .build();
                    client.restart_container(container, Some(options)).await?
                }
                PAUSE => client.pause_container(container).await?,
                UNPAUSE => client.unpause_container(container).await?,
                REMOVE => {
                    let options = RemoveContainerOptionsBuilder::new().build();
                    client.remove_container(container, Some(options)).await?;
                    return Ok(ControlDone::Removed);
                }
                other => anyhow::bail!("unknown control {other:?}"),
            }
            Ok(ControlDone::Done)
        };
        tokio::time::timeout(CONTROL_TIMEOUT, call)
            .await
            .with_context(|| format!("the container engine did not finish {control} in time"))?
    }
}

/// A stream between a user and a command (a container's shell, attach or logs, a host's shell):
/// what it prints, and (unless it is logs) its input.
pub struct Session {
    pub output: std::pin::Pin<Box<dyn futures_util::Stream<Item = anyhow::Result<Vec<u8>>> + Send>>,
    pub input: Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
    /// A terminal (raw bytes, resizable) rather than lines.
    pub tty: bool,
    /// How its terminal is resized and what ends it.
    pub handle: SessionHandle,
}

/// What a session's terminal is, for resizing it and ending what runs on it.
pub enum SessionHandle {
    /// Nothing to resize; closing the connection ends it.
    Stream,
    /// A container exec, by id.
    Exec(String),
    /// A pseudo-terminal on the host and the shell on it (`host_shell.rs`).
    Pty(super::host_shell::Pty),
}

/// The engine's output frames as bytes.
fn engine_output(
    output: std::pin::Pin<
        Box<
            dyn futures_util::Stream<
                    Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
                > + Send,
        >,
    >,
) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = anyhow::Result<Vec<u8>>> + Send>> {
    Box::pin(output.map(|frame| {
        frame
            .map(|f| f.into_bytes().to_vec())
            .map_err(anyhow::Error::from)
    }))
}

/// The shell an exec starts: the container's root shell if it names one, else `/bin/sh` (as
/// Scope's probe does).
const SHELL: &str = "TERM=xterm exec $( (type getent > /dev/null 2>&1 && getent passwd root | cut -d: -f7 2>/dev/null) || echo /bin/sh)";

impl Docker {
    /// A shell in `container`, on a terminal.
    pub async fn exec_shell(&self, container: &str) -> anyhow::Result<Session> {
        let client = self.client()?;
        let created = client
            .create_exec(
                container,
                bollard::exec::CreateExecOptions {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(true),
                    cmd: Some(vec!["/bin/sh", "-c", SHELL]),
                    ..Default::default()
                },
            )
            .await
            .context("creating the exec")?;
        let started = client
            .start_exec(
                &created.id,
                Some(bollard::exec::StartExecOptions {
                    detach: false,
                    tty: true,
                    output_capacity: None,
                }),
            )
            .await
            .context("starting the exec")?;
        match started {
            bollard::exec::StartExecResults::Attached { output, input } => Ok(Session {
                output: engine_output(output),
                input: Some(input),
                tty: true,
                handle: SessionHandle::Exec(created.id),
            }),
            bollard::exec::StartExecResults::Detached => {
                anyhow::bail!("the engine started the exec detached")
            }
        }
    }

    /// `container`'s own input and output (its main process), as it is now.
    pub async fn attach(&self, container: &str) -> anyhow::Result<Session> {
        let client = self.client()?;
        let tty = client
            .inspect_container(container, None)
            .await
            .context("inspecting the container")?
            .config
            .and_then(|c| c.tty)
            .unwrap_or(false);
        let options = bollard::query_parameters::AttachContainerOptionsBuilder::new()
            .stream(true)
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .build();
        let attached = client
            .attach_container(container, Some(options))
            .await
            .context("attaching")?;
        Ok(Session {
            output: engine_output(attached.output),
            input: Some(attached.input),
            tty,
            handle: SessionHandle::Stream,
        })
    }

    /// `container`'s logs: the last 200 lines, then what it prints from now on.
    pub fn logs(&self, container: &str) -> anyhow::Result<Session> {
        let client = self.client()?;
        let options = bollard::query_parameters::LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .tail("200")
            .build();
        Ok(Session {
            output: engine_output(Box::pin(client.logs(container, Some(options)))),
            input: None,
            tty: false,
            handle: SessionHandle::Stream,
        })
    }

    /// Ends what is still running of a terminal whose user went: closing the engine connection does
    /// not (a shell left behind would run on), so its process group is hung up, then killed if it
    /// is still there after a grace period. The engine gives the exec's PID as the host sees it;
    /// the probe shares the host's PID namespace (as Scope's must).
    pub async fn end_exec(&self, exec: &str) -> anyhow::Result<()> {
        use rustix::process::{Pid, Signal, kill_process_group};
        let client = self.client()?;
        for signal in [Signal::HUP, Signal::KILL] {
            let inspected = client
                .inspect_exec(exec)
                .await
                .context("inspecting the exec")?;
            let (Some(true), Some(pid)) = (inspected.running, inspected.pid) else {
                return Ok(());
            };
            let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
                return Ok(());
            };
            if let Err(e) = kill_process_group(pid, signal) {
                anyhow::bail!("cannot signal the terminal's processes: {e}");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(())
    }

    /// Resizes an exec's terminal.
    pub async fn resize_exec(&self, exec: &str, height: u16, width: u16) -> anyhow::Result<()> {
        self.client()?
            .resize_exec(exec, bollard::exec::ResizeExecOptions { height, width })
            .await
            .context("resizing the terminal")
    }
}

/// What a control did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlDone {
    Done,
    /// The container is gone: the reply says `removedNode`.
    Removed,
}

/// Scope's container controls (`probe/docker/controls.go`), by id.
pub const START: &str = "docker_start_container";
pub const STOP: &str = "docker_stop_container";
pub const RESTART: &str = "docker_restart_container";
pub const PAUSE: &str = "docker_pause_container";
pub const UNPAUSE: &str = "docker_unpause_container";
pub const REMOVE: &str = "docker_remove_container";
pub const EXEC: &str = "docker_exec_container";
pub const ATTACH: &str = "docker_attach_container";
/// Scopehub's own: a container's logs, followed (Scope's probe has it for Kubernetes pods only).
pub const LOGS: &str = "docker_logs_container";
pub const RESIZE_EXEC: &str = "docker_resize_exec_tty";

/// The controls a container in `state` offers (Scope's `container.controls()`, and logs).
fn active_controls(state: &str) -> &'static [&'static str] {
    match state {
        "paused" => &[UNPAUSE, LOGS],
        "running" => &[RESTART, STOP, PAUSE, ATTACH, EXEC, LOGS],
        _ => &[START, REMOVE, LOGS],
    }
}

/// The controls' templates as Scope's probe announces them on the Container topology; the
/// destructive ones ask first.
fn control_templates() -> BTreeMap<String, serde_json::Value> {
    [
        (ATTACH, "Attach", "fa fa-desktop", 1, ""),
        (EXEC, "Exec shell", "fa fa-terminal", 2, ""),
        (LOGS, "Logs", "fa fa-align-left", 2, ""),
        (START, "Start", "fa fa-play", 3, ""),
        (RESTART, "Restart", "fa fa-redo", 4, ""),
        (PAUSE, "Pause", "fa fa-pause", 5, ""),
        (UNPAUSE, "Unpause", "fa fa-play", 6, ""),
        (STOP, "Stop", "fa fa-stop", 7, "Stop this container?"),
        (
            REMOVE,
            "Remove",
            "far fa-trash-alt",
            8,
            "Remove this container? This cannot be undone.",
        ),
    ]
    .into_iter()
    .map(|(id, human, icon, rank, confirmation)| {
        let mut control = serde_json::json!({"id": id, "human": human, "icon": icon, "rank": rank});
        if !confirmation.is_empty() {
            control["confirmation"] = confirmation.into();
        }
        (id.to_owned(), control)
    })
    .collect()
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

/// The host a snapshot's containers run on, as the report names it.
pub struct HostSide {
    /// The host's node id and the probe reporting it.
    pub node_id: String,
    pub probe_id: String,
    /// The host's own addresses (for containers on its network).
    pub addresses: Vec<String>,
}

/// A metric of one sample at `now`.
fn metric(value: f64, max: f64, now: Time) -> Metric {
    Metric {
        samples: vec![Sample { date: now, value }],
        min: 0.0,
        max,
    }
}

/// Adds the snapshot's containers and images to `report` (whose host node is `host_id`, made by
/// the probe `probe_id`, which takes their controls), and marks the processes inside them.
/// `cgroup_of(pid)` reads a process's cgroup file.
pub fn add_to_report(
    report: &mut Report,
    snapshot: &Snapshot,
    host: &HostSide,
    now: Time,
    cgroup_of: impl Fn(&str) -> Option<String>,
) {
    let (host_id, probe_id) = (host.node_id.as_str(), host.probe_id.as_str());
    let host_parent = || std::sync::Arc::new(KeyedMap::from([("host", vec![Name::from(host_id)])]));
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
            .and_then(|i| i.repo_tags.first().cloned())
            .filter(|t| t != "<none>:<none>")
            .unwrap_or_else(|| c.image.clone());
        let mut node = Node {
            id: Name::from(&id),
            topology: "container".into(),
            parents: host_parent(),
            ..Node::default()
        };
        if !image_id.is_empty() {
            node.parents_mut().insert(
                "container_image",
                vec![format!("{image_id};<container_image>").into()],
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
            ("control_probe_id", probe_id.to_owned()),
            ("active_controls", active_controls(&c.state).join(";")),
        ] {
            node.latest_mut().insert(key, LatestEntry::new(value, now));
        }
        for (k, v) in &c.labels {
            node.latest_mut().insert(
                format!("docker_label_{k}"),
                LatestEntry::new(v.clone(), now),
            );
        }
        if let Some(stats) = &c.stats {
            if let Some(cpu) = stats.cpu_percent {
                node.metrics_mut()
                    .insert("docker_cpu_total_usage", metric(cpu, 0.0, now));
            }
            node.metrics_mut().insert(
                "docker_memory_usage",
                metric(stats.memory_bytes as f64, stats.memory_limit as f64, now),
            );
        }
        if c.host_network {
            node.latest_mut()
                .insert("docker_is_in_host_network", LatestEntry::new("true", now));
        }
        // A container on the host's network has the host's addresses (as Scope reports them).
        let ips = if c.host_network && c.ips.is_empty() {
            host.addresses.clone()
        } else {
            c.ips.clone()
        };
        if !ips.is_empty() {
            node.sets_mut().insert(
                "docker_container_ips_with_scopes",
                ips.iter().map(|ip| format!(";{ip}").into()).collect(),
            );
            node.sets_mut()
                .insert("docker_container_ips", ips.iter().map(Name::from).collect());
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
            node.sets_mut().insert(
                "docker_container_ports",
                ports.into_iter().map(Name::from).collect(),
            );
        }
        if !image_id.is_empty() {
            let mut image_node = Node {
                id: format!("{image_id};<container_image>").into(),
                topology: "container_image".into(),
                parents: host_parent(),
                ..Node::default()
            };
            image_node
                .latest_mut()
                .insert("docker_image_id", LatestEntry::new(&image_id, now));
            image_node
                .latest_mut()
                .insert("docker_image_name", LatestEntry::new(&image_name, now));
            if let Some(i) = image {
                image_node.latest_mut().insert(
                    "docker_image_size",
                    LatestEntry::new(i.size.to_string(), now),
                );
                for (k, v) in &i.labels {
                    image_node.latest_mut().insert(
                        format!("docker_image_label_{k}"),
                        LatestEntry::new(v.clone(), now),
                    );
                }
            }
            image_nodes.insert(image_node.id.clone(), image_node);
        }
        running.insert(c.id.clone(), id.clone());
        containers.insert(id.into(), node);
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
                    .insert("docker_container_id", LatestEntry::new(cid, now));
                process
                    .parents_mut()
                    .insert("container", vec![Name::from(container.as_str())]);
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
    let metrics: crate::collector::report::Templates = [
        serde_json::json!({"id": "docker_cpu_total_usage", "label": "CPU", "format": "percent", "priority": 1}),
        serde_json::json!({"id": "docker_memory_usage", "label": "Memory", "format": "filesize", "priority": 2}),
    ]
    .into_iter()
    .map(|t| (t["id"].as_str().unwrap_or_default().to_owned(), t))
    .collect();
    report.topologies.insert(
        "Container".into(),
        Topology {
            nodes: containers,
            metadata_templates: metadata,
            metric_templates: metrics,
            controls: control_templates().into_iter().collect(),
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa99887766554433221100";
    const HOSTNET: &str = "0000000000000000000000000000000000000000000000000000000000000042";

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

    /// A fake engine on a unix socket answering like Docker does (one answer per connection).
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
                let body = if request.contains(&format!("/containers/{HOSTNET}/json")) {
                    // Podman lists containers without their HostConfig; inspecting says it.
                    serde_json::json!({"Id": HOSTNET, "HostConfig": {"NetworkMode": "host"}})
                } else if request.contains("/containers/json") {
                    serde_json::json!([{
                        "Id": ID, "Names": ["/web"], "Image": "nginx:1.25",
                        "ImageID": "sha256:abc123", "Command": "nginx -g 'daemon off;'",
                        "Created": 1_700_000_000, "State": "running", "Status": "Up 2 hours",
                        "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
                        "Labels": {"app": "web"},
                        "HostConfig": {"NetworkMode": "bridge"},
                        "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}}
                    }, {
                        "Id": HOSTNET, "Names": ["/hostnet"], "Image": "nginx:1.25",
                        "ImageID": "sha256:abc123", "Created": 1_600_000_000, "State": "exited",
                        "NetworkSettings": {"Networks": null}
                    }])
                } else if request.contains("/images/json") {
                    serde_json::json!([{
                        "Id": "sha256:abc123", "ParentId": "", "RepoTags": ["nginx:1.25"],
                        "RepoDigests": null, "Created": 1_700_000_000, "Size": 187_000_000,
                        "SharedSize": -1, "Labels": null, "Containers": -1
                    }])
                } else {
                    let _ = stream
                        .write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 2\r\n\r\n{}")
                        .await;
                    continue;
                };
                let body = body.to_string();
                let answer = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
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
        assert_eq!(snapshot.containers.len(), 2);

        let now = Time(1_000);
        let mut report = Report::default();
        let mut process = Node {
            id: "h;42".into(),
            topology: "process".into(),
            ..Node::default()
        };
        process
            .latest_mut()
            .insert("pid", LatestEntry::new("42", now));
        process
            .latest_mut()
            .insert("name", LatestEntry::new("nginx", now));
        process
            .latest_mut()
            .insert("host_node_id", LatestEntry::new("h;<host>", now));
        let outside = Node {
            id: "h;7".into(),
            latest: KeyedMap::from([("pid", LatestEntry::new("7", now))]).into(),
            ..process.clone()
        };
        report.topologies.insert(
            "Process".into(),
            Topology {
                nodes: BTreeMap::from([("h;42".into(), process), ("h;7".into(), outside)]),
                ..Topology::default()
            },
        );
        let host = HostSide {
            node_id: "h;<host>".into(),
            probe_id: "probe-1".into(),
            addresses: vec!["192.0.2.2".into()],
        };
        add_to_report(&mut report, &snapshot, &host, now, |pid| {
            (pid == "42").then(|| format!("0::/system.slice/docker-{ID}.scope"))
        });
        let container =
            &report.topology("Container").unwrap().nodes[format!("{ID};<container>").as_str()];
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
        // On the host's network (known by inspecting it): the host's addresses; stopped, it can
        // be started or removed.
        let hostnet =
            &report.topology("Container").unwrap().nodes[format!("{HOSTNET};<container>").as_str()];
        assert_eq!(hostnet.sets["docker_container_ips"], ["192.0.2.2"]);
        assert_eq!(hostnet.latest["docker_is_in_host_network"].value, "true");
        assert_eq!(
            hostnet.latest["active_controls"].value,
            "docker_start_container;docker_remove_container;docker_logs_container"
        );
        let image = &report.topology("ContainerImage").unwrap().nodes["abc123;<container_image>"];
        assert_eq!(image.latest["docker_image_name"].value, "nginx:1.25");
        // A running container offers restart, stop and pause, through this probe.
        assert_eq!(
            container.latest["active_controls"].value,
            "docker_restart_container;docker_stop_container;docker_pause_container;\
             docker_attach_container;docker_exec_container;docker_logs_container"
        );
        assert_eq!(container.latest["control_probe_id"].value, "probe-1");
        let controls = &report.topology("Container").unwrap().controls;
        assert_eq!(controls.len(), 9);
        assert!(controls[STOP]["confirmation"].is_string());
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
        let children = |id: &str| -> Vec<String> {
            rendered.nodes[id]
                .children
                .keys()
                .map(String::from)
                .collect()
        };
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
