//! The collector: Weave Scope's app for many tenants (design.md §5, shared scope-protocol.md).
//!
//! Will own: report ingest (`POST /api/report`), the per-instance 15 s window in memory, rendering of
//! Scope's topology views, websockets, the probe registry. Must not: see tokens; it trusts the tenant
//! only as set by the edge.
