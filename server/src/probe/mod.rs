//! Our probe (`scopehub probe`) and the load generator: report a host in Scope's wire format.
//!
//! Will own: reading `/proc`, container runtimes, building reports, publishing them with backoff.
//! Shares only the wire types with the collector.
