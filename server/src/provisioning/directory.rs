//! The provisioning service's contract: what other roles may ask it about instances.
//!
//! [`InstanceDirectory`] resolves a probe token to its instance (with limits and suspension flags)
//! and an instance id to where it lives (its org, state and shard). [`LocalInstances`] answers from
//! this process's store; [`HttpInstances`] asks a provisioning process over its internal API
//! ([`internal_router`]).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::routing::{get, post};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use shared::instances::{InstanceState, Limits};

use super::state_of;
use crate::clock::Clock;
use crate::collector::shard::Placed;
use crate::error::{Json, Result};
use crate::internal_client::{InternalClient, SecretBody};
use crate::secrets::sha256_hex;
use crate::store::{InstanceRow, Store};

/// Where an instance lives and what it allows now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRoute {
    pub id: String,
    pub org_id: String,
    pub state: InstanceState,
    /// The collector shard holding it, once placed.
    pub shard: Option<String>,
    pub limits: Limits,
    pub refuse_reads: bool,
    pub refuse_uploads: bool,
}

impl InstanceRoute {
    pub fn of(row: &InstanceRow) -> Self {
        InstanceRoute {
            id: row.id.clone(),
            org_id: row.org_id.clone(),
            state: state_of(row),
            shard: row.shard.clone(),
            limits: super::limits_of(row),
            refuse_reads: row.refuse_reads,
            refuse_uploads: row.refuse_uploads,
        }
    }

    /// Probes may upload: placed, not suspended, not being deleted.
    pub fn accepts_uploads(&self) -> bool {
        matches!(self.state, InstanceState::Ready | InstanceState::Active) && !self.refuse_uploads
    }

    /// Members may read its data.
    pub fn readable(&self) -> bool {
        !self.refuse_reads
            && !matches!(self.state, InstanceState::Deleting | InstanceState::Deleted)
    }
}

/// An instance a collector shard should hold, with what it needs to take its reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedInstance {
    pub id: String,
    pub placed: Placed,
}

pub trait InstanceDirectory: Send + Sync {
    /// The instance of a live probe token (whatever the instance's state: callers decide).
    fn probe_token(&self, token: &str) -> BoxFuture<'_, Result<Option<InstanceRoute>>>;
    /// An instance by id.
    fn instance(&self, id: &str) -> BoxFuture<'_, Result<Option<InstanceRoute>>>;
}

/// The directory over this process's store.
#[derive(Clone)]
pub struct LocalInstances {
    pub store: Store,
    pub clock: Clock,
}

impl LocalInstances {
    async fn by_token(&self, token: &str) -> Result<Option<InstanceRoute>> {
        let row = self
            .store
            .instance_for_probe_token(&sha256_hex(token), self.clock.now())
            .await?;
        Ok(row.as_ref().map(InstanceRoute::of))
    }

    /// What `shard` should hold: a collector process loads it before it reports ready, so a
    /// restarted or replaced shard takes its instances' reports at once rather than after the
    /// reconciler's next pass.
    pub async fn placed_on(&self, shard: &str) -> Result<Vec<PlacedInstance>> {
        let rows = self.store.instances_on_shard(shard).await?;
        Ok(rows
            .iter()
            .map(|row| PlacedInstance {
                id: row.id.clone(),
                placed: Placed {
                    limits: super::limits_of(row),
                    flags: super::reconciler::flags(row),
                },
            })
            .collect())
    }

    async fn by_id(&self, id: &str) -> Result<Option<InstanceRoute>> {
        Ok(self
            .store
            .instance(id)
            .await?
            .as_ref()
            .map(InstanceRoute::of))
    }
}

impl InstanceDirectory for LocalInstances {
    fn probe_token(&self, token: &str) -> BoxFuture<'_, Result<Option<InstanceRoute>>> {
        let token = token.to_owned();
        Box::pin(async move { self.by_token(&token).await })
    }

    fn instance(&self, id: &str) -> BoxFuture<'_, Result<Option<InstanceRoute>>> {
        let id = id.to_owned();
        Box::pin(async move { self.by_id(&id).await })
    }
}

/// The directory of a provisioning process, over its internal API.
#[derive(Clone)]
pub struct HttpInstances(pub InternalClient);

impl HttpInstances {
    /// [`LocalInstances::placed_on`], asked over HTTP.
    pub async fn placed_on(&self, shard: &str) -> Result<Vec<PlacedInstance>> {
        self.0
            .call(
                Method::GET,
                &["internal", "provisioning", "shards", shard, "instances"],
                None::<&()>,
            )
            .await
    }
}

impl InstanceDirectory for HttpInstances {
    fn probe_token(&self, token: &str) -> BoxFuture<'_, Result<Option<InstanceRoute>>> {
        let body = SecretBody {
            token: token.to_owned(),
        };
        Box::pin(async move {
            self.0
                .call(
                    Method::POST,
                    &["internal", "provisioning", "probe-token"],
                    Some(&body),
                )
                .await
        })
    }

    fn instance(&self, id: &str) -> BoxFuture<'_, Result<Option<InstanceRoute>>> {
        let id = id.to_owned();
        Box::pin(async move {
            self.0
                .call(
                    Method::GET,
                    &["internal", "provisioning", "instances", &id],
                    None::<&()>,
                )
                .await
        })
    }
}

/// The provisioning role's internal API: [`InstanceDirectory`] over HTTP.
pub fn internal_router(instances: LocalInstances) -> Router {
    Router::new()
        .route("/internal/provisioning/probe-token", post(probe_token))
        .route("/internal/provisioning/instances/{id}", get(instance))
        .route(
            "/internal/provisioning/shards/{shard}/instances",
            get(placed_on),
        )
        .with_state(instances)
}

async fn placed_on(
    State(d): State<LocalInstances>,
    Path(shard): Path<String>,
) -> Result<Json<Vec<PlacedInstance>>> {
    Ok(Json(d.placed_on(&shard).await?))
}

async fn probe_token(
    State(d): State<LocalInstances>,
    Json(body): Json<SecretBody>,
) -> Result<Json<Option<InstanceRoute>>> {
    Ok(Json(d.by_token(&body.token).await?))
}

async fn instance(
    State(d): State<LocalInstances>,
    Path(id): Path<String>,
) -> Result<Json<Option<InstanceRoute>>> {
    Ok(Json(d.by_id(&id).await?))
}
