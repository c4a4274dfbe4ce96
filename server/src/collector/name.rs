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

    /// `topology` as a name shared by every node of a known topology (a window holds tens of
    /// thousands of nodes, and each would otherwise hold its own copy of "endpoint").
    pub fn topology(topology: &str) -> Name {
        use super::render::*;
        static KNOWN: LazyLock<Vec<Name>> = LazyLock::new(|| {
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
            ]
            .map(Name::from)
            .into()
        });
        KNOWN
            .iter()
            .find(|known| known.as_str() == topology)
            .cloned()
            .unwrap_or_else(|| Name::from(topology))
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
    fn reads_and_writes_as_a_string() {
        let name: Name = serde_json::from_str(r#""proc\"ess""#).unwrap();
        assert_eq!(name, "proc\"ess");
        assert_eq!(serde_json::to_string(&name).unwrap(), r#""proc\"ess""#);
        assert_eq!(Name::from(""), Name::default());
    }
}
