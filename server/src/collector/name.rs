//! [`Name`]: a node id, a topology name or an edge's end, shared instead of copied.
//!
//! The same ids travel from a report to the window's merge, into every view's render nodes, their
//! children and their edges, and are put into maps keyed by them at every step. As `String`s each
//! step copied them (an allocation and a copy each, and a free later); a `Name` is a reference
//! count, so a copy is an increment. It reads as a `str` everywhere (`Deref`, `Borrow<str>`:
//! maps keyed by names are searched with a `&str`) and orders, hashes, serialises and compares as
//! its text.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone)]
pub struct Name(Arc<str>);

impl Name {
    pub fn new(text: &str) -> Name {
        Name::from(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `text` as one name shared by all who use it, if it is a topology's name or a key that
    /// Scope's probes put in every node (`host_node_id`, `pid`, …); otherwise a name of its own.
    /// A fixed list, so that no tenant's input makes it grow.
    pub fn known(text: &str) -> Name {
        use super::render::*;
        static KNOWN: LazyLock<HashMap<&'static str, Name>> = LazyLock::new(|| {
            [
                PSEUDO,
                ENDPOINT,
                PROCESS,
                CONTAINER,
                CONTAINER_IMAGE,
                POD,
                SERVICE,
                DEPLOYMENT,
                "replica_set",
                DAEMON_SET,
                STATEFUL_SET,
                CRON_JOB,
                "namespace",
                HOST,
                OVERLAY,
                ECS_TASK,
                ECS_SERVICE,
                SWARM_SERVICE,
                PERSISTENT_VOLUME,
                PERSISTENT_VOLUME_CLAIM,
                STORAGE_CLASS,
                VOLUME_SNAPSHOT,
                VOLUME_SNAPSHOT_DATA,
                JOB,
                // Keys of latest values, metrics, sets and parents (shared/scope-protocol.md).
                "host_node_id",
                "pid",
                "ppid",
                "name",
                "threads",
                "cmdline",
                "probe_id",
                "addr",
                "port",
                "conntracked",
                "procspied",
                "copy_of",
                "open_files_count",
                "process_cpu_usage_percent",
                "process_memory_usage_bytes",
                "docker_container_id",
                "docker_image_id",
                "docker_image_name",
                "docker_image_tag",
                "docker_image_size",
                "docker_image_virtual_size",
                "docker_container_hostname",
                "docker_container_name",
                "docker_container_state",
                "docker_container_state_human",
                "docker_container_command",
                "docker_container_created",
                "docker_container_ips",
                "docker_container_ips_with_scopes",
                "docker_container_ports",
                "docker_container_uptime",
                "docker_container_restart_count",
                "docker_container_network_mode",
                "docker_cpu_total_usage",
                "docker_memory_usage",
                "docker_cpu_system_cpu_usage",
                "docker_cpu_usage_in_kernelmode",
                "docker_cpu_usage_in_usermode",
                "docker_memory_failcnt",
                "docker_memory_limit",
                "docker_memory_max_usage",
                "host_name",
                "os",
                "kernel_version",
                "uptime",
                "ts",
                "load1",
                "load5",
                "load15",
                "local_networks",
                "host_cpu_usage_percent",
                "host_mem_usage_bytes",
                "host_scope_version",
                "active_controls",
                "control_probe_id",
                "kubernetes_namespace",
                "kubernetes_name",
                "kubernetes_state",
                "kubernetes_ip",
                "kubernetes_created",
                "weave_mac_address",
                "weave_peer_name",
                "weave_peer_nick_name",
            ]
            .into_iter()
            .map(|text| (text, Name(Arc::from(text))))
            .collect()
        });
        match KNOWN.get(text) {
            Some(known) => known.clone(),
            None => Name::from(text),
        }
    }
}

/// The empty name every default node shares.
impl Default for Name {
    fn default() -> Self {
        static EMPTY: LazyLock<Name> = LazyLock::new(|| Name(Arc::from("")));
        EMPTY.clone()
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            Ordering::Equal
        } else {
            self.0.cmp(&other.0)
        }
    }
}

/// As its text, so that a map keyed by names can be searched with a `&str`.
impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == other.as_str()
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Name {
        if text.is_empty() {
            Name::default()
        } else {
            Name(Arc::from(text))
        }
    }
}

impl From<String> for Name {
    fn from(text: String) -> Name {
        Name::from(text.as_str())
    }
}

impl From<&String> for Name {
    fn from(text: &String) -> Name {
        Name::from(text.as_str())
    }
}

impl From<&Name> for String {
    fn from(name: &Name) -> String {
        name.as_str().to_owned()
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        // Borrowed where the input allows it, so that no `String` is made only to be copied.
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Name::from(text.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;

    #[test]
    fn a_copy_shares_the_text_and_compares_orders_and_hashes_as_it() {
        let a = Name::from("host;1234");
        let copy = a.clone();
        assert!(std::ptr::eq(a.as_str(), copy.as_str()));
        let other = Name::from(String::from("host;1234"));
        assert!(!std::ptr::eq(a.as_str(), other.as_str()));
        assert_eq!(a, other);
        assert_eq!(a, "host;1234");
        assert_eq!(Name::from("a;1").cmp(&Name::from("a;2")), Ordering::Less);
        assert_eq!(Name::from("b").cmp(&Name::from("a")), Ordering::Greater);

        let by_name: BTreeMap<Name, u32> = [(Name::from("x"), 1), (Name::from("y"), 2)].into();
        assert_eq!(by_name.get("y"), Some(&2));
        let hashed: HashMap<Name, u32> = [(Name::from("x"), 1)].into();
        assert_eq!(hashed.get("x"), Some(&1));
    }

    #[test]
    fn known_names_are_shared_and_others_are_not() {
        let (one, two) = (Name::known("host_node_id"), Name::known("host_node_id"));
        assert!(std::ptr::eq(one.as_str(), two.as_str()));
        // Every node of a known topology shares its name: a window holds tens of thousands of
        // nodes, and each would otherwise hold its own copy of "endpoint".
        let (one, two) = (Name::known("endpoint"), Name::known("endpoint"));
        assert!(std::ptr::eq(one.as_str(), two.as_str()));
        let (one, two) = (Name::known("a tenant's key"), Name::known("a tenant's key"));
        assert_eq!(one, two);
        assert!(!std::ptr::eq(one.as_str(), two.as_str()));
    }

    #[test]
    fn reads_and_writes_as_a_string() {
        let name: Name = serde_json::from_str(r#""proc\"ess""#).unwrap();
        assert_eq!(name, "proc\"ess");
        assert_eq!(serde_json::to_string(&name).unwrap(), r#""proc\"ess""#);
        assert_eq!(Name::from(""), Name::default());
    }
}
