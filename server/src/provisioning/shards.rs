//! Where instances go: the collector shards provisioning knows, and the choice of one for a new
//! instance by rendezvous hashing, so retrying a half-done placement always picks the same shard;
//! the database's `shard` column is the truth afterwards. `serve` knows one in-process shard;
//! `scopehub provisioning` knows the collector processes given by `--collector-shard`.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::collector::shard::Shard;

/// The shards instances can be placed on.
#[derive(Clone)]
pub struct Placement {
    shards: Arc<Vec<Arc<dyn Shard>>>,
}

impl Placement {
    pub fn new(shards: Vec<Arc<dyn Shard>>) -> Self {
        assert!(!shards.is_empty(), "placement needs at least one shard");
        Placement {
            shards: Arc::new(shards),
        }
    }

    pub fn shards(&self) -> &[Arc<dyn Shard>] {
        &self.shards
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<dyn Shard>> {
        self.shards.iter().find(|s| s.name() == name)
    }

    /// The shard a new instance goes to: highest hash of (shard, instance), stable across retries.
    pub fn choose(&self, instance: &str) -> &Arc<dyn Shard> {
        self.shards
            .iter()
            .max_by_key(|s| Sha256::digest(format!("{}/{instance}", s.name()).as_bytes()).to_vec())
            .expect("placement has at least one shard")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::clock::Clock;
    use crate::collector::shard::{Flags, InProcessShard};
    use shared::instances::Limits;

    #[test]
    fn placement_is_stable_and_spreads_instances() {
        let shards: Vec<Arc<dyn Shard>> = (0..4)
            .map(|i| {
                Arc::new(InProcessShard::new(format!("shard-{i}"), Clock::system()))
                    as Arc<dyn Shard>
            })
            .collect();
        let placement = Placement::new(shards);
        let mut used = std::collections::HashSet::new();
        for i in 0..200 {
            let id = format!("instance-{i}");
            let first = placement.choose(&id).name().to_owned();
            assert_eq!(placement.choose(&id).name(), first);
            used.insert(first);
        }
        assert_eq!(used.len(), 4);
    }

    #[tokio::test]
    async fn in_process_shards_are_idempotent() {
        let shard = InProcessShard::new("s", Clock::system());
        let limits = Limits {
            max_probes: 1,
            max_report_bytes: 2,
            max_reports_per_second: 3,
        };
        let flags = Flags::default();
        shard.ensure("a", limits, flags).await.unwrap();
        shard.ensure("a", limits, flags).await.unwrap();
        assert_eq!(shard.list().await.unwrap(), vec!["a"]);
        shard.drop_instance("a").await.unwrap();
        shard.drop_instance("a").await.unwrap();
        assert!(shard.list().await.unwrap().is_empty());
    }
}
