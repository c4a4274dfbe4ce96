//! `GET /api/admin/system`: what the monitoring role sees of every role replica (site admins).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every scrape target the monitoring role knows of, roles in name order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SystemStatus {
    /// How often targets are scraped, in seconds.
    pub interval_seconds: f64,
    pub targets: Vec<TargetStatus>,
    /// The alerts firing now.
    #[serde(default)]
    pub firing: Vec<FiringAlert>,
    /// The latest alerts that fired or resolved, newest first.
    #[serde(default)]
    pub alert_history: Vec<AlertEvent>,
}

/// An alert firing now: a rule whose condition has held on a replica for the rule's duration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FiringAlert {
    pub rule: String,
    pub role: String,
    pub instance: String,
    pub summary: String,
    /// Since when the condition holds (Unix milliseconds).
    pub since_ms: i64,
}

/// An alert changing state: `firing` or `resolved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub rule: String,
    pub role: String,
    pub instance: String,
    pub state: String,
    pub summary: String,
    /// Since when the condition held.
    pub since_ms: i64,
    /// When the alert changed state.
    pub at_ms: i64,
}

/// One replica of one role, as its last scrapes found it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TargetStatus {
    /// `users`, `provisioning`, `collector`, `frontend`, `ui`, `serve`…
    pub role: String,
    /// The replica: the `host:port` scraped.
    pub instance: String,
    /// `/metrics` answered with metrics on the last scrape.
    pub up: bool,
    /// `/readyz` answered 200 on the last scrape.
    pub ready: bool,
    /// Why not, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was last scraped (Unix milliseconds); `None` before the first scrape.
    pub last_scrape_ms: Option<i64>,
    /// Since the scrape before: requests per second, the 5xx share of them, latency quantiles.
    pub requests_per_second: Option<f64>,
    pub error_ratio: Option<f64>,
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    /// Probe reports per second by outcome (`accepted`, or why refused): collectors only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reports_per_second: BTreeMap<String, f64>,
    /// The reconciler's lag: provisioning only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_lag_seconds: Option<f64>,
    /// Map websockets open: collectors only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websockets: Option<f64>,
    /// Reconciler steps failing per second: provisioning only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_errors_per_second: Option<f64>,
    /// The shard a collector holds, probes connected to it (reported within the last minute) and
    /// its instances, busiest first: collectors only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<ShardInstance>,
    /// The outbox: messages waiting for delivery, those whose last attempt failed, and failed
    /// attempts per second: users only (with SMTP configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_queue: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_failing: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_failures_per_second: Option<f64>,
    /// Requests and background steps failing on the database, per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_errors_per_second: Option<f64>,
    /// History (time travel): per second by outcome (`stored`, `dropped_buffer_full`,
    /// `write_failed`, `damaged`, `deleted`), and report bytes waiting to be written: collectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub history_per_second: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_buffer_bytes: Option<f64>,
    /// How long the oldest of those has waited, as of the collector's last flush (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_oldest_waiting_seconds: Option<f64>,
    /// The last hour, a point per scrape, oldest first (for sparklines).
    pub history: Vec<HistoryPoint>,
}

/// One customer instance on a collector shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInstance {
    pub instance: String,
    /// Probes that reported within the last minute.
    pub probes: f64,
    /// Reports accepted per second since the scrape before; `None` on the first scrape.
    pub reports_per_second: Option<f64>,
    /// Estimated memory of its live window.
    pub window_bytes: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub at_ms: i64,
    pub up: bool,
    pub ready: bool,
    pub requests_per_second: Option<f64>,
    pub error_ratio: Option<f64>,
    pub p99_seconds: Option<f64>,
    /// Reports accepted per second: collectors only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reports_per_second: Option<f64>,
}
