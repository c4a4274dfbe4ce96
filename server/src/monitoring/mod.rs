//! Monitoring: scrapes the other roles' `/healthz`, `/readyz` and `/metrics` and serves a status API.
//!
//! The per-process pieces every role already serves live in `ops.rs` and `telemetry.rs`.
