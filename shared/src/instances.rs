//! Bodies of the provisioning API (`/api/instances…`) and the instance lifecycle's states.

use serde::{Deserialize, Serialize};

use crate::error::FieldErrors;
use crate::users::{Checks, check_reason, normalize_name};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Accepted; the reconciler has not picked it up yet.
    Created,
    /// Being placed on a collector shard.
    Provisioning,
    /// Placed, waiting for its first probe report.
    Ready,
    /// A report has arrived.
    Active,
    Suspended,
    /// Being removed from its shard; its tokens no longer work.
    Deleting,
    /// Gone from every shard; the row is purged after a grace period.
    Deleted,
}

impl InstanceState {
    pub const ALL: [InstanceState; 7] = [
        InstanceState::Created,
        InstanceState::Provisioning,
        InstanceState::Ready,
        InstanceState::Active,
        InstanceState::Suspended,
        InstanceState::Deleting,
        InstanceState::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Created => "created",
            InstanceState::Provisioning => "provisioning",
            InstanceState::Ready => "ready",
            InstanceState::Active => "active",
            InstanceState::Suspended => "suspended",
            InstanceState::Deleting => "deleting",
            InstanceState::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        InstanceState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
    }

    /// Whether the lifecycle allows going from `self` to `to` in one step.
    pub fn can_become(self, to: InstanceState) -> bool {
        use InstanceState::*;
        matches!(
            (self, to),
            (Created, Provisioning)
                | (Provisioning, Ready)
                | (Ready, Active)
                | (Ready | Active, Suspended)
                | (Suspended, Ready | Active)
                | (
                    Created | Provisioning | Ready | Active | Suspended,
                    Deleting
                )
                | (Deleting, Deleted)
        )
    }
}

/// Per-instance limits; defaults come from the server's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_probes: i64,
    pub max_report_bytes: i64,
    pub max_reports_per_second: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub state: InstanceState,
    pub shard: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub limits: Limits,
    pub refuse_reads: bool,
    pub refuse_uploads: bool,
    /// Why it is suspended; shown to the org, also when a site admin suspended it.
    pub suspension_reason: Option<String>,
    pub suspended_by_site: bool,
    /// Members (editors and up) may use controls on its nodes; on unless an org admin turns them
    /// off.
    #[serde(default = "yes")]
    pub allow_controls: bool,
    /// Terminals (exec, attach, a host's shell) may be opened; off unless an org admin turns them on.
    #[serde(default)]
    pub allow_terminals: bool,
    /// How long its history (time travel) is kept, in days, and the most bytes it may take.
    #[serde(default)]
    pub history_days: u32,
    #[serde(default)]
    pub history_quota_bytes: u64,
}

/// `PATCH /api/admin/instances/{id}/history` (site admins): the instance's history retention and
/// quota. Fields left out stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
}

fn yes() -> bool {
    true
}

/// `PATCH /api/instances/{id}/settings` (org admins): what members may do from the map. Fields
/// left out stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_controls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_terminals: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NewInstance {
    pub org_id: String,
    pub name: String,
}

impl NewInstance {
    pub fn validate(&self) -> Result<String, FieldErrors> {
        let mut c = Checks::default();
        let name = c.field("name", normalize_name(&self.name));
        c.finish()?;
        Ok(name.unwrap_or_default())
    }
}

/// The answer to creating an instance or rotating its token: the probe token, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceWithToken {
    pub instance: InstanceInfo,
    pub probe_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Suspension {
    pub reason: String,
    /// Refuse topology reads too (default: only uploads are refused).
    #[serde(default)]
    pub refuse_reads: bool,
}

impl Suspension {
    pub fn validate(&self) -> Result<String, FieldErrors> {
        let mut c = Checks::default();
        let reason = c.field("reason", check_reason(&self.reason));
        c.finish()?;
        Ok(reason.unwrap_or_default())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeTokenInfo {
    pub id: String,
    pub created_at: i64,
    /// Set on a rotated token: it keeps working until then.
    pub expires_at: Option<i64>,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceEvent {
    pub at: i64,
    pub from_state: Option<InstanceState>,
    pub to_state: InstanceState,
    /// Who caused it; `None` for the reconciler.
    pub actor: Option<String>,
    pub detail: Option<String>,
}

/// A probe that has reported to an instance recently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeInfo {
    /// `X-Scope-Probe-ID`: random per probe start.
    pub id: String,
    pub hostname: Option<String>,
    pub version: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub last_seen: i64,
}

/// What the collector holds for an instance, and what it refused (the limits at work).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub probes: Vec<ProbeInfo>,
    pub reports_in_window: u64,
    pub reports_received: u64,
    /// Refused reports by reason: `too_large`, `too_many_reports`, `too_many_probes`, `malformed`,
    /// `window_full` (the instance's memory budget), `collector_full` (the shard's).
    pub refused: std::collections::BTreeMap<String, u64>,
    /// Estimated memory the live window takes now, and the most it may.
    #[serde(default)]
    pub window_bytes: u64,
    #[serde(default)]
    pub window_budget_bytes: u64,
    /// What its history (time travel) keeps; absent where the collector keeps none or cannot
    /// tell now.
    #[serde(default)]
    pub history: Option<HistoryUsage>,
}

/// An instance's history: the span of reports kept (ms since the epoch), their bytes, and the
/// retention and quota it is kept under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryUsage {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub bytes: u64,
    pub batches: u64,
    pub retention_days: u32,
    pub quota_bytes: u64,
}

/// `GET /api/instances/{id}`: everything the instance page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceDetails {
    pub instance: InstanceInfo,
    pub tokens: Vec<ProbeTokenInfo>,
    pub events: Vec<InstanceEvent>,
    /// From the collector shard; absent when the instance is not placed.
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[cfg(test)]
mod tests {
    use super::InstanceState::{self, *};

    #[test]
    fn every_legal_transition_and_no_other() {
        let legal = [
            (Created, Provisioning),
            (Provisioning, Ready),
            (Ready, Active),
            (Ready, Suspended),
            (Active, Suspended),
            (Suspended, Ready),
            (Suspended, Active),
            (Created, Deleting),
            (Provisioning, Deleting),
            (Ready, Deleting),
            (Active, Deleting),
            (Suspended, Deleting),
            (Deleting, Deleted),
        ];
        for from in InstanceState::ALL {
            for to in InstanceState::ALL {
                assert_eq!(
                    from.can_become(to),
                    legal.contains(&(from, to)),
                    "{from:?} → {to:?}"
                );
            }
        }
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for state in InstanceState::ALL {
            assert_eq!(InstanceState::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }
}
