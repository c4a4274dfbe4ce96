//! `GET /api/version`: which build is running and on which database backend.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseBackend {
    Sqlite,
    Postgres,
}

impl DatabaseBackend {
    pub fn label(self) -> &'static str {
        match self {
            DatabaseBackend::Sqlite => "SQLite",
            DatabaseBackend::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The server's crate version, e.g. `0.1.0`.
    pub version: String,
    /// The git commit the server was built from, when the build knew it.
    #[serde(default)]
    pub git_commit: Option<String>,
    pub database: DatabaseBackend,
    /// A random id made the first time this deployment's database was set up; stable across restarts.
    pub installation_id: String,
}
