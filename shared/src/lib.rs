//! Types shared by the Scopehub server and the WASM app.
//!
//! This crate owns the shapes that cross the HTTP boundary (request and response bodies, the one error
//! body) and the validation rules both sides apply. It must stay free of server-only dependencies so
//! that it builds for `wasm32-unknown-unknown`; anything that needs the database or tokio lives in
//! `server/`.

pub mod client_error;
pub mod error;
pub mod instances;
pub mod monitoring;
pub mod topology;
pub mod users;
pub mod version;

pub use client_error::ClientErrorReport;
pub use error::{ApiError, ErrorCode, FieldErrors};
pub use version::{DatabaseBackend, VersionInfo};
