//! `serve --local-probe` (Airplane Mode): a probe of this machine running inside the server, so a
//! new user sees their own machine without installing anything.
//!
//! Once the site has its first admin (the first account signed up) and their org, this task makes
//! an instance "This machine" in that org (once: its id is kept in the `settings` table), gives the
//! probe a fresh token at every start (revoking the previous start's token, never the user's), and
//! publishes through the real HTTP path, as `scopehub probe` would. It lives in provisioning's room
//! because what it does is provisioning's (an instance, its tokens); it asks the users role for the
//! first admin's org through the contract.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use url::Url;

use super::api::{create_instance, issue_probe_token};
use super::{Actor, ProvisioningState, state_of};
use crate::error::Result;
use shared::instances::InstanceState;

const INSTANCE_KEY: &str = "local_probe_instance";
const TOKEN_KEY: &str = "local_probe_token";
pub const INSTANCE_NAME: &str = "This machine";
const ACTOR: &str = "local probe";

/// Finds or makes the local instance and a token for it; `None` until the site has an admin org.
async fn prepare(state: &ProvisioningState) -> Result<Option<(String, String)>> {
    let Some(admin) = state.users.first_admin_org().await? else {
        return Ok(None);
    };
    let org = admin.org_id;
    let existing = match state.store.get_setting(INSTANCE_KEY).await? {
        Some(id) => state.store.instance(&id).await?.filter(|row| {
            !matches!(
                state_of(row),
                InstanceState::Deleting | InstanceState::Deleted
            )
        }),
        None => None,
    };
    let actor = Actor {
        id: &admin.user_id,
        email: ACTOR,
        ip: None,
    };
    let now = state.clock.now();
    let (instance, token) = match existing {
        Some(row) => {
            let mut tx = state.store.begin().await?;
            if let Some(previous) = state.store.get_setting(TOKEN_KEY).await? {
                tx.revoke_probe_tokens(&row.id, Some(&previous), now)
                    .await?;
            }
            let (token_id, token) = issue_probe_token(&mut tx, &row.id, ACTOR, now).await?;
            tx.commit().await?;
            state.store.put_setting(TOKEN_KEY, &token_id).await?;
            (row.id, token)
        }
        None => {
            let (row, token) = create_instance(
                state,
                &org,
                INSTANCE_NAME.to_owned(),
                &admin.user_id,
                &actor,
            )
            .await?;
            state.store.put_setting(INSTANCE_KEY, &row.id).await?;
            let tokens = state.store.probe_tokens_of(&row.id).await?;
            if let Some(first) = tokens.first() {
                state.store.put_setting(TOKEN_KEY, &first.id).await?;
            }
            tracing::info!(instance = %row.id, org = %org, "created the instance \"This machine\" for the local probe");
            (row.id, token)
        }
    };
    Ok(Some((instance, token)))
}

/// Runs until `shutdown`: waits for the first admin's org, then probes this machine into it.
pub async fn run(
    state: ProvisioningState,
    url: Url,
    proc_root: PathBuf,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let work = async {
        let (instance, token) = loop {
            match prepare(&state).await {
                Ok(Some(found)) => break found,
                Ok(None) => {}
                Err(error) => tracing::debug!(%error, "local probe: not ready to start yet"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        tracing::info!(%instance, "local probe reporting this machine");
        let options = crate::probe::Options {
            url,
            token,
            interval,
            json: false,
            once: false,
            proc_root,
            docker_socket: crate::probe::docker::DEFAULT_SOCKET.into(),
            // Airplane Mode's own probe offers no shell on the laptop it runs on.
            host_exec: false,
        };
        if let Err(error) = crate::probe::publish(options).await {
            tracing::warn!(%error, "local probe stopped");
        }
    };
    tokio::select! {
        _ = work => {}
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
}
