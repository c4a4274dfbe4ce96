//! The provisioning service: Scope instances, their lifecycle reconciler, probe tokens, placement.
//!
//! Will own: `/api/instances…`, the instances / probe_tokens / placements tables (through `store/`)
//! and the reconciler task that converges collector shards to the database. Must not: hold report
//! data (the collector does) or resolve credentials (the edge does).
