//! Collector shards as the reconciler sees them: the actual state it converges to the database.
//!
//! A shard holds the per-instance state of the collector (today: each instance's slot and limits;
//! the collector issue adds its report window). `serve` runs one in-process shard; split mode adds
//! an HTTP implementation of the same trait. Placement picks a shard for a new instance by
//! rendezvous hashing, so retrying a half-done placement always picks the same shard; the
//! database's `shard` column is the truth afterwards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use shared::instances::Limits;

use crate::collector::slot::Slot;

pub type ShardResult<T> = Result<T, String>;

pub trait Shard: Send + Sync {
    fn name(&self) -> &str;
    /// Makes sure the instance has a slot with these limits (idempotent).
    fn ensure(&self, instance: &str, limits: Limits) -> BoxFuture<'_, ShardResult<()>>;
    /// Drops the instance's slot and everything in it (idempotent).
    fn remove(&self, instance: &str) -> BoxFuture<'_, ShardResult<()>>;
    /// The instances the shard holds now.
    fn instances(&self) -> BoxFuture<'_, ShardResult<Vec<String>>>;
}

/// A shard inside this process (Airplane Mode).
pub struct InProcessShard {
    name: String,
    slots: Mutex<HashMap<String, Slot>>,
}

impl InProcessShard {
    pub fn new(name: impl Into<String>) -> Self {
        InProcessShard {
            name: name.into(),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` on the instance's slot, if this shard holds the instance.
    pub fn with_slot<R>(&self, instance: &str, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        let mut slots = self.slots.lock().ok()?;
        slots.get_mut(instance).map(f)
    }

    pub fn limits_of(&self, instance: &str) -> Option<Limits> {
        self.slots.lock().ok()?.get(instance).map(|s| s.limits)
    }
}

impl Shard for InProcessShard {
    fn name(&self) -> &str {
        &self.name
    }

    fn ensure(&self, instance: &str, limits: Limits) -> BoxFuture<'_, ShardResult<()>> {
        let instance = instance.to_owned();
        Box::pin(async move {
            let mut slots = self
                .slots
                .lock()
                .map_err(|_| "shard lock poisoned".to_owned())?;
            slots
                .entry(instance)
                .and_modify(|slot| slot.limits = limits)
                .or_insert_with(|| Slot::new(limits));
            Ok(())
        })
    }

    fn remove(&self, instance: &str) -> BoxFuture<'_, ShardResult<()>> {
        let instance = instance.to_owned();
        Box::pin(async move {
            self.slots
                .lock()
                .map_err(|_| "shard lock poisoned".to_owned())?
                .remove(&instance);
            Ok(())
        })
    }

    fn instances(&self) -> BoxFuture<'_, ShardResult<Vec<String>>> {
        Box::pin(async move {
            let slots = self
                .slots
                .lock()
                .map_err(|_| "shard lock poisoned".to_owned())?;
            let mut ids: Vec<String> = slots.keys().cloned().collect();
            ids.sort();
            Ok(ids)
        })
    }
}

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

    #[test]
    fn placement_is_stable_and_spreads_instances() {
        let shards: Vec<Arc<dyn Shard>> = (0..4)
            .map(|i| Arc::new(InProcessShard::new(format!("shard-{i}"))) as Arc<dyn Shard>)
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
        let shard = InProcessShard::new("s");
        let limits = Limits {
            max_probes: 1,
            max_report_bytes: 2,
            max_reports_per_second: 3,
        };
        shard.ensure("a", limits).await.unwrap();
        shard.ensure("a", limits).await.unwrap();
        assert_eq!(shard.instances().await.unwrap(), vec!["a"]);
        shard.remove("a").await.unwrap();
        shard.remove("a").await.unwrap();
        assert!(shard.instances().await.unwrap().is_empty());
    }
}
