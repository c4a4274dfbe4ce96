//! Reading this host from `/proc`: the host node, processes, and TCP connections mapped to the
//! processes that own them (through socket inodes), as Scope's report topologies.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::collector::name::Name;
use crate::collector::report::{LatestEntry, Metric, Node, Report, Sample, Time, Topology};

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;
/// Bytes per page for `rss` (4 KiB on the platforms Scopehub builds for).
const PAGE_SIZE: f64 = 4096.0;

/// What one collection remembers for the next (CPU usage is a difference between two readings).
#[derive(Default)]
pub struct Previous {
    at: Option<Time>,
    host_cpu: Option<(u64, u64)>,
    process_ticks: HashMap<u32, u64>,
}

pub struct Collector {
    root: PathBuf,
    pub hostname: String,
    pub probe_id: String,
    previous: Previous,
}

// The templates Scope's probe sends for the same data (as in shared/fixtures/scope), so the UI
// shows the same rows for both probes.
pub(crate) const HOST_METADATA: &str = r##"{"os":{"id":"os","label":"OS","priority":12.0,"from":"latest"},"local_networks":{"id":"local_networks","label":"Local networks","priority":13.0,"from":"sets"},"host_scope_version":{"id":"host_scope_version","label":"Scope version","priority":14.0,"from":"latest"},"kernel_version":{"id":"kernel_version","label":"Kernel version","priority":1.0,"from":"latest"},"uptime":{"id":"uptime","label":"Uptime","dataType":"duration","priority":2.0,"from":"latest"},"host_name":{"id":"host_name","label":"Hostname","priority":11.0,"from":"latest"}}"##;
pub(crate) const HOST_METRICS: &str = r##"{"host_cpu_usage_percent":{"id":"host_cpu_usage_percent","label":"CPU","format":"percent","priority":1.0},"host_mem_usage_bytes":{"id":"host_mem_usage_bytes","label":"Memory","format":"filesize","priority":2.0},"load1":{"id":"load1","label":"Load (1m)","group":"load","priority":11.0}}"##;
pub(crate) const PROCESS_METADATA: &str = r##"{"pid":{"id":"pid","label":"PID","dataType":"number","priority":1.0,"from":"latest"},"cmdline":{"id":"cmdline","label":"Command","priority":2.0,"from":"latest"},"ppid":{"id":"ppid","label":"Parent PID","dataType":"number","priority":3.0,"from":"latest"},"threads":{"id":"threads","label":"# Threads","dataType":"number","priority":4.0,"from":"latest"}}"##;
pub(crate) const PROCESS_METRICS: &str = r##"{"open_files_count":{"id":"open_files_count","label":"Open files","format":"integer","priority":3.0},"process_cpu_usage_percent":{"id":"process_cpu_usage_percent","label":"CPU","format":"percent","priority":1.0},"process_memory_usage_bytes":{"id":"process_memory_usage_bytes","label":"Memory","format":"filesize","priority":2.0}}"##;

pub(crate) fn templates(json: &str) -> crate::collector::report::Templates {
    serde_json::from_str(json).unwrap_or_default()
}

/// This host's own addresses, loopback left out: IPv4 from the kernel's local routes
/// (`/proc/net/fib_trie`: an address followed by `/32 host LOCAL`), IPv6 from `/proc/net/if_inet6`.
/// Containers on the host's network have these (as Scope's probe reports them).
pub fn host_addresses(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut last: Option<&str> = None;
    let trie = read(root.join("net/fib_trie")).unwrap_or_default();
    for line in trie.lines() {
        let line = line.trim_start();
        if let Some(address) = line.strip_prefix("|-- ") {
            last = Some(address.trim());
        } else if line.starts_with("/32 host LOCAL")
            && let Some(address) = last.take()
            && let Ok(ip) = address.parse::<std::net::Ipv4Addr>()
            && !ip.is_loopback()
        {
            out.push(ip.to_string());
        }
    }
    for line in read(root.join("net/if_inet6")).unwrap_or_default().lines() {
        let Some(Ok(addr)) = line
            .split_whitespace()
            .next()
            .map(|a| u128::from_str_radix(a, 16))
        else {
            continue;
        };
        let ip = std::net::Ipv6Addr::from(addr);
        if !ip.is_loopback() {
            out.push(ip.to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The networks this host's interfaces are on, as CIDRs: IPv4 routes that are not the default
/// route (`/proc/net/route`), the loopback network, and IPv6 interface prefixes
/// (`/proc/net/if_inet6`). The collector treats addresses in them as local, not "the internet".
pub fn local_networks(root: &Path) -> Vec<String> {
    let mut out = vec!["127.0.0.0/8".to_owned()];
    for line in read(root.join("net/route"))
        .unwrap_or_default()
        .lines()
        .skip(1)
    {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(dest), Some(mask)) = (cols.get(1), cols.get(7)) else {
            continue;
        };
        let (Ok(dest), Ok(mask)) = (u32::from_str_radix(dest, 16), u32::from_str_radix(mask, 16))
        else {
            continue;
        };
        // The kernel prints the network-order fields as native integers.
        if mask == 0 {
            continue;
        }
        let dest = std::net::Ipv4Addr::from(dest.to_ne_bytes());
        out.push(format!("{dest}/{}", mask.count_ones()));
    }
    for line in read(root.join("net/if_inet6")).unwrap_or_default().lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(bits)) = (cols.first(), cols.get(2)) else {
            continue;
        };
        let (Ok(addr), Ok(bits)) = (u128::from_str_radix(addr, 16), u8::from_str_radix(bits, 16))
        else {
            continue;
        };
        if bits == 0 || bits > 128 {
            continue;
        }
        let net = addr & (u128::MAX << (128 - u32::from(bits)));
        out.push(format!("{}/{bits}", std::net::Ipv6Addr::from(net)));
    }
    out.sort();
    out.dedup();
    out
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok()
}

fn metric(value: f64, min: f64, max: f64, now: Time) -> Metric {
    Metric {
        samples: vec![Sample { date: now, value }],
        min,
        max,
    }
}

impl Collector {
    /// `root` is normally `/proc`.
    pub fn new(root: impl Into<PathBuf>, probe_id: String) -> Self {
        let root = root.into();
        let hostname = read(root.join("sys/kernel/hostname"))
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty());
        Collector {
            hostname: hostname.unwrap_or_else(|| "localhost".into()),
            root,
            probe_id,
            previous: Previous::default(),
        }
    }

    pub fn host_node_id(&self) -> String {
        format!("{};<host>", self.hostname)
    }

    /// A full report of this host as it is now.
    pub fn collect(&mut self, now: Time) -> Report {
        let mut report = Report {
            ts: now,
            window: 0,
            id: crate::secrets::random_hex(8),
            ..Report::default()
        };
        let elapsed = self
            .previous
            .at
            .map(|at| (now.0 - at.0) as f64 / 1e9)
            .filter(|s| *s > 0.0);
        let host = self.host(now, elapsed);
        let (processes, sockets) = self.processes(now, elapsed);
        let endpoints = self.endpoints(now, &sockets);
        report.topologies.insert(
            "Host".into(),
            Topology {
                shape: "circle".into(),
                label: "host".into(),
                label_plural: "hosts".into(),
                nodes: host,
                metadata_templates: templates(HOST_METADATA),
                metric_templates: templates(HOST_METRICS),
                ..Topology::default()
            },
        );
        report.topologies.insert(
            "Process".into(),
            Topology {
                shape: "square".into(),
                label: "process".into(),
                label_plural: "processes".into(),
                nodes: processes,
                metadata_templates: templates(PROCESS_METADATA),
                metric_templates: templates(PROCESS_METRICS),
                ..Topology::default()
            },
        );
        report.topologies.insert(
            "Endpoint".into(),
            Topology {
                nodes: endpoints,
                ..Topology::default()
            },
        );
        self.previous.at = Some(now);
        report
    }

    fn host(&mut self, now: Time, elapsed: Option<f64>) -> BTreeMap<Name, Node> {
        let id = self.host_node_id();
        let mut node = Node {
            id: Name::from(&id),
            topology: "host".into(),
            ..Node::default()
        };
        node.sets_mut().insert(
            "local_networks",
            local_networks(&self.root)
                .into_iter()
                .map(Name::from)
                .collect(),
        );
        let l = node.latest_mut();
        l.insert("host_name", LatestEntry::new(&self.hostname, now));
        l.insert("host_node_id", LatestEntry::new(&id, now));
        l.insert("os", LatestEntry::new("linux", now));
        l.insert("control_probe_id", LatestEntry::new(&self.probe_id, now));
        l.insert(
            "host_scope_version",
            LatestEntry::new(concat!("scopehub-", env!("CARGO_PKG_VERSION")), now),
        );
        l.insert("ts", LatestEntry::new(now.to_rfc3339(), now));
        if let Some(kernel) = read(self.root.join("sys/kernel/osrelease")) {
            l.insert("kernel_version", LatestEntry::new(kernel.trim(), now));
        }
        if let Some(uptime) = read(self.root.join("uptime"))
            .and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok())
        {
            l.insert("uptime", LatestEntry::new((uptime as u64).to_string(), now));
        }
        if let Some(load1) = read(self.root.join("loadavg"))
            .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        {
            node.metrics_mut()
                .insert("load1", metric(load1, 0.0, load1.max(1.0), now));
        }
        if let Some(meminfo) = read(self.root.join("meminfo")) {
            let field = |name: &str| {
                meminfo.lines().find_map(|line| {
                    line.strip_prefix(name)?
                        .split_whitespace()
                        .next()?
                        .parse::<f64>()
                        .ok()
                })
            };
            if let (Some(total), Some(available)) = (field("MemTotal:"), field("MemAvailable:")) {
                node.metrics_mut().insert(
                    "host_mem_usage_bytes",
                    metric((total - available) * 1024.0, 0.0, total * 1024.0, now),
                );
            }
        }
        if let Some(stat) = read(self.root.join("stat"))
            && let Some(cpu) = stat.lines().next().filter(|l| l.starts_with("cpu "))
        {
            let values: Vec<u64> = cpu
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            let total: u64 = values.iter().sum();
            let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
            if let Some((prev_total, prev_idle)) = self.previous.host_cpu
                && total > prev_total
            {
                let busy =
                    1.0 - (idle.saturating_sub(prev_idle)) as f64 / (total - prev_total) as f64;
                node.metrics_mut().insert(
                    "host_cpu_usage_percent",
                    metric(busy * 100.0, 0.0, 100.0, now),
                );
            }
            self.previous.host_cpu = Some((total, idle));
        }
        let _ = elapsed;
        BTreeMap::from([(id.into(), node)])
    }

    /// Processes, and which process owns each socket inode.
    fn processes(
        &mut self,
        now: Time,
        elapsed: Option<f64>,
    ) -> (BTreeMap<Name, Node>, HashMap<u64, u32>) {
        let mut nodes = BTreeMap::new();
        let mut sockets = HashMap::new();
        let mut ticks_now = HashMap::new();
        let host_id = self.host_node_id();
        let Ok(entries) = fs::read_dir(&self.root) else {
            return (nodes, sockets);
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let dir = entry.path();
            let Some(stat) = read(dir.join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid …`: comm may contain spaces and parentheses.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let name = stat[open + 1..close].to_owned();
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            // After `)`: 0 state, 1 ppid, 11 utime, 12 stime, 17 num_threads, 21 rss.
            let ppid = field(1).unwrap_or(0);
            let ticks = field(11).unwrap_or(0) + field(12).unwrap_or(0);
            let threads = field(17).unwrap_or(1);
            let rss = field(21).unwrap_or(0) as f64 * PAGE_SIZE;
            let cmdline = read(dir.join("cmdline"))
                .map(|c| c.replace('\0', " "))
                .unwrap_or_default();

            let id = format!("{};{pid}", self.hostname);
            let mut node = Node {
                id: Name::from(&id),
                topology: "process".into(),
                ..Node::default()
            };
            node.latest_mut()
                .insert("pid", LatestEntry::new(pid.to_string(), now));
            node.latest_mut()
                .insert("ppid", LatestEntry::new(ppid.to_string(), now));
            node.latest_mut()
                .insert("name", LatestEntry::new(&name, now));
            node.latest_mut()
                .insert("cmdline", LatestEntry::new(cmdline.trim_end(), now));
            node.latest_mut()
                .insert("threads", LatestEntry::new(threads.to_string(), now));
            node.latest_mut()
                .insert("host_node_id", LatestEntry::new(&host_id, now));
            node.parents_mut()
                .insert("host", vec![Name::from(&host_id)]);
            node.metrics_mut().insert(
                "process_memory_usage_bytes",
                metric(rss, 0.0, rss.max(1.0), now),
            );
            if let (Some(elapsed), Some(prev)) = (elapsed, self.previous.process_ticks.get(&pid)) {
                let percent =
                    ticks.saturating_sub(*prev) as f64 / TICKS_PER_SECOND / elapsed * 100.0;
                node.metrics_mut().insert(
                    "process_cpu_usage_percent",
                    metric(percent, 0.0, 100.0, now),
                );
            }
            ticks_now.insert(pid, ticks);
            if let Ok(fds) = fs::read_dir(dir.join("fd")) {
                let mut open_files = 0.0;
                for fd in fds.flatten() {
                    open_files += 1.0;
                    if let Some(inode) = fs::read_link(fd.path()).ok().and_then(|t| {
                        t.to_str()?
                            .strip_prefix("socket:[")?
                            .strip_suffix(']')?
                            .parse::<u64>()
                            .ok()
                    }) {
                        sockets.insert(inode, pid);
                    }
                }
                node.metrics_mut().insert(
                    "open_files_count",
                    metric(open_files, 0.0, open_files.max(1.0), now),
                );
            }
            nodes.insert(id.into(), node);
        }
        self.previous.process_ticks = ticks_now;
        (nodes, sockets)
    }

    /// Established TCP connections as endpoint nodes, with adjacency from the side that connected
    /// to the side that listens (as Scope draws them): a socket whose local port is listening was
    /// connected to, any other socket connected out.
    fn endpoints(&self, now: Time, sockets: &HashMap<u64, u32>) -> BTreeMap<Name, Node> {
        let mut nodes: BTreeMap<Name, Node> = BTreeMap::new();
        let host_id = self.host_node_id();
        let mut established = Vec::new();
        let mut listening: std::collections::HashSet<(String, u16)> = Default::default();
        let mut listening_any: std::collections::HashSet<u16> = Default::default();
        for (file, v6) in [("net/tcp", false), ("net/tcp6", true)] {
            let Some(table) = read(self.root.join(file)) else {
                continue;
            };
            for line in table.lines().skip(1) {
                let cols: Vec<&str> = line.split_whitespace().collect();
                if cols.len() < 10 {
                    continue;
                }
                let (Some(local), Some(remote)) =
                    (parse_addr(cols[1], v6), parse_addr(cols[2], v6))
                else {
                    continue;
                };
                match cols[3] {
                    "0A" if local.0 == "0.0.0.0" || local.0 == "::" => {
                        listening_any.insert(local.1);
                    }
                    "0A" => {
                        listening.insert(local);
                    }
                    "01" => established.push((local, remote, cols[9].parse::<u64>().unwrap_or(0))),
                    _ => {}
                }
            }
        }
        let endpoint = |nodes: &mut BTreeMap<Name, Node>, id: &str| {
            nodes
                .entry(Name::from(id))
                .or_insert_with(|| Node {
                    id: id.to_owned().into(),
                    topology: "endpoint".into(),
                    ..Node::default()
                })
                .id
                .clone()
        };
        for (local, remote, inode) in established {
            let incoming = listening_any.contains(&local.1) || listening.contains(&local);
            let local_id = endpoint(&mut nodes, &self.endpoint_id(&local));
            let remote_id = endpoint(&mut nodes, &self.endpoint_id(&remote));
            let (from, to) = if incoming {
                (&remote_id, &local_id)
            } else {
                (&local_id, &remote_id)
            };
            if let Some(node) = nodes.get_mut(from)
                && !node.adjacency.contains(to)
            {
                node.adjacency.push(to.clone());
                node.adjacency.sort();
            }
            if let Some(local_node) = nodes.get_mut(&local_id) {
                local_node
                    .latest_mut()
                    .insert("host_node_id", LatestEntry::new(&host_id, now));
                if let Some(pid) = sockets.get(&inode) {
                    local_node
                        .latest_mut()
                        .insert("pid", LatestEntry::new(pid.to_string(), now));
                }
            }
        }
        nodes
    }

    /// Scope's endpoint id: `scope;addr;port`, the scope being the host for loopback addresses.
    fn endpoint_id(&self, (addr, port): &(String, u16)) -> String {
        let loopback = addr.starts_with("127.") || addr == "::1";
        let scope = if loopback { self.hostname.as_str() } else { "" };
        format!("{scope};{addr};{port}")
    }
}

/// `0100007F:1F90` (little-endian words) → ("127.0.0.1", 8080).
fn parse_addr(field: &str, v6: bool) -> Option<(String, u16)> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let bytes: Vec<u8> = (0..addr.len() / 2)
        .map(|i| u8::from_str_radix(&addr[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let mut ordered = Vec::with_capacity(bytes.len());
    for word in bytes.chunks(4) {
        ordered.extend(word.iter().rev());
    }
    let text = if v6 {
        let octets: [u8; 16] = ordered.try_into().ok()?;
        let ip = Ipv6Addr::from(octets);
        match ip.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => ip.to_string(),
        }
    } else {
        let octets: [u8; 4] = ordered.try_into().ok()?;
        Ipv4Addr::from(octets).to_string()
    };
    Some((text, port))
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_addresses_are_the_local_routes_and_interface_addresses_but_loopback() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("net")).unwrap();
        std::fs::write(
            root.path().join("net/fib_trie"),
            "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 127.0.0.1\n        /32 host LOCAL\n     |-- 192.0.2.0\n        /24 link UNICAST\n     |-- 192.0.2.2\n        /32 host LOCAL\n     |-- 192.0.2.255\n        /32 link BROADCAST\nLocal:\n     |-- 192.0.2.2\n        /32 host LOCAL\n",
        )
        .unwrap();
        std::fs::write(
            root.path().join("net/if_inet6"),
            "00000000000000000000000000000001 01 80 10 80       lo\nfe800000000000000000000000000001 02 40 20 80     eth0\n",
        )
        .unwrap();
        assert_eq!(host_addresses(root.path()), ["192.0.2.2", "fe80::1"]);
    }

    #[test]
    fn local_networks_come_from_routes_and_interfaces() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("net")).unwrap();
        // What /proc/net/route and /proc/net/if_inet6 hold on the fixtures' VM.
        std::fs::write(
            root.path().join("net/route"),
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
        )
        .unwrap();
        std::fs::write(
            root.path().join("net/if_inet6"),
            "fd000000000000000000000000000002 04 40 00 82     eth0\n\
             00000000000000000000000000000001 01 80 10 80       lo\n",
        )
        .unwrap();
        assert_eq!(
            local_networks(root.path()),
            ["127.0.0.0/8", "192.0.2.0/24", "::1/128", "fd00::/64"]
        );
    }

    use super::*;

    #[test]
    fn proc_net_addresses_decode() {
        assert_eq!(
            parse_addr("0100007F:1F90", false),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(
            parse_addr("0000000000000000FFFF00000100007F:0050", true),
            Some(("127.0.0.1".into(), 80))
        );
        assert_eq!(
            parse_addr("00000000000000000000000001000000:0016", true),
            Some(("::1".into(), 22))
        );
        assert_eq!(parse_addr("zz:1", false), None);
    }

    #[test]
    fn this_host_is_collected_with_its_processes_and_their_connections() {
        // A connection this test owns, so its endpoint must be found and mapped to this process.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server, _) = listener.accept().unwrap();

        let mut collector = Collector::new("/proc", "probe-1".into());
        let first = collector.collect(Time(1_000_000_000));
        let report = collector.collect(Time(2_000_000_000));
        let host = &report.topology("Host").unwrap().nodes[collector.host_node_id().as_str()];
        assert_eq!(host.latest["host_name"].value, collector.hostname);
        assert!(host.metrics.contains_key("host_mem_usage_bytes"));
        let me = std::process::id();
        let processes = &report.topology("Process").unwrap().nodes;
        let mine = &processes[format!("{};{me}", collector.hostname).as_str()];
        assert_eq!(mine.latest["pid"].value, me.to_string());
        assert!(
            mine.metrics.contains_key("process_cpu_usage_percent"),
            "CPU usage needs two readings"
        );
        assert!(
            !first
                .topology("Process")
                .unwrap()
                .nodes
                .values()
                .any(|n| n.metrics.contains_key("process_cpu_usage_percent"))
        );
        let endpoints = &report.topology("Endpoint").unwrap().nodes;
        let server_side = format!("{};127.0.0.1;{port}", collector.hostname);
        let ours = endpoints
            .values()
            .find(|n| n.adjacency.iter().any(|a| *a == server_side))
            .expect("the client end of our connection");
        assert_eq!(ours.latest["pid"].value, me.to_string());
        // The listening side is connected to, not connecting: no edge back to the client.
        let server = &endpoints[server_side.as_str()];
        assert!(server.adjacency.is_empty(), "{server:?}");
        assert_eq!(server.latest["pid"].value, me.to_string());
    }
}
