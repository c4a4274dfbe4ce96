//! The provisioning service through its HTTP API, with the reconciler running: lifecycle,
//! permissions, probe tokens, on both backends.

use std::time::Duration;

use scopehub::clock::{DAY, HOUR, MINUTE};
use serde_json::{Value, json};

use crate::support::agent::{Agent, approved_user, site_admin};
use crate::support::{Backend, TestApp, both, eventually};

/// Creates an instance in `org`; returns its id and probe token.
async fn create(agent: &mut Agent, org: &str, name: &str) -> (String, String) {
    let (status, body) = agent
        .post("/api/instances", json!({"org_id": org, "name": name}))
        .await;
    assert_eq!(status, 201, "{body}");
    (
        body["instance"]["id"].as_str().unwrap().to_owned(),
        body["probe_token"].as_str().unwrap().to_owned(),
    )
}

async fn wait_for_state(agent: &mut Agent, id: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = agent.get(&format!("/api/instances/{id}")).await;
        if status == 200 && body["instance"]["state"] == state {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "instance {id} never became {state}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /api` as a Scope probe sends it.
async fn probe_details(app: &TestApp, token: &str) -> (u16, Value) {
    let response = app
        .client
        .get(app.at("/api"))
        .header("authorization", format!("Scope-Probe token={token}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn lifecycle_through_the_api_and_the_reconciler(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let (mut alice, org) = approved_user(&app, &mut admin, "alice@example.com").await;

    let (id, token) = create(&mut alice, &org, "  production  ").await;
    assert!(token.starts_with("shp_"));
    assert!(
        id.len() >= 16 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "opaque, URL-safe: {id}"
    );
    // The reconciler places it on the collector shard; it then waits for its first probe.
    let details = wait_for_state(&mut alice, &id, "ready").await;
    assert_eq!(details["instance"]["name"], "production");
    assert_eq!(details["instance"]["shard"], "local");
    assert!(app.shard.limits_of(&id).is_some(), "the shard holds it");
    let (status, body) = probe_details(&app, &token).await;
    assert_eq!((status, body["id"].as_str()), (200, Some(id.as_str())));
    assert_eq!(body["capabilities"]["historic_reports"], true);

    // Illegal steps answer 409 and change nothing.
    let (status, body) = alice
        .post(&format!("/api/instances/{id}/resume"), json!({}))
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")));

    // Suspend: uploads refused (the probe is told), reads too when asked; resume returns to ready.
    let (status, body) = alice
        .post(
            &format!("/api/instances/{id}/suspend"),
            json!({"reason": "", "refuse_reads": true}),
        )
        .await;
    assert_eq!((status, body["fields"]["reason"].is_string()), (422, true));
    let (status, body) = alice
        .post(
            &format!("/api/instances/{id}/suspend"),
            json!({"reason": "Quiet period", "refuse_reads": true}),
        )
        .await;
    assert_eq!(
        (
            status,
            body["state"].as_str(),
            body["refuse_reads"].as_bool()
        ),
        (200, Some("suspended"), Some(true))
    );
    assert_eq!(probe_details(&app, &token).await.0, 403);
    assert_eq!(
        alice
            .post(
                &format!("/api/instances/{id}/suspend"),
                json!({"reason": "again"})
            )
            .await
            .0,
        409
    );
    let (status, body) = alice
        .post(&format!("/api/instances/{id}/resume"), json!({}))
        .await;
    assert_eq!(
        (
            status,
            body["state"].as_str(),
            body["refuse_uploads"].as_bool()
        ),
        (200, Some("ready"), Some(false))
    );
    assert_eq!(probe_details(&app, &token).await.0, 200);

    // Rename.
    let (status, body) = alice
        .patch(&format!("/api/instances/{id}"), json!({"name": "prod-eu"}))
        .await;
    assert_eq!((status, body["name"].as_str()), (200, Some("prod-eu")));

    // Delete: tokens stop at once; the reconciler drops the collector state.
    let (status, body) = alice.delete(&format!("/api/instances/{id}")).await;
    assert_eq!((status, body["state"].as_str()), (202, Some("deleting")));
    assert_eq!(probe_details(&app, &token).await.0, 401);
    let details = wait_for_state(&mut alice, &id, "deleted").await;
    assert!(app.shard.limits_of(&id).is_none(), "the shard dropped it");
    assert!(
        details["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["revoked"] == true)
    );
    assert_eq!(alice.delete(&format!("/api/instances/{id}")).await.0, 409);
    assert_eq!(
        alice
            .post(&format!("/api/instances/{id}/tokens"), json!({}))
            .await
            .0,
        409
    );
    assert_eq!(
        alice
            .patch(&format!("/api/instances/{id}"), json!({"name": "zombie"}))
            .await
            .0,
        409
    );

    // Every step is on the instance's timeline and in the org's audit log.
    let steps: Vec<_> = details["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to_state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        steps,
        [
            "created",
            "provisioning",
            "ready",
            "suspended",
            "ready",
            "ready",
            "deleting",
            "deleted"
        ]
    );
    let by_reconciler = details["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"].is_null())
        .count();
    assert_eq!(
        by_reconciler, 3,
        "provisioning, ready and deleted are the reconciler's"
    );
    let (_, audit) = alice.get(&format!("/api/orgs/{org}/audit?limit=500")).await;
    let actions: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    for action in [
        "instance_created",
        "instance_ready",
        "instance_suspended",
        "instance_renamed",
        "instance_deleting",
        "instance_deleted",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} missing from {actions:?}"
        );
    }

    // Purged after the grace period (7 days).
    app.clock.advance(7 * DAY + MINUTE);
    let store = &app.store;
    let id_ref = id.as_str();
    eventually(
        Duration::from_secs(30),
        "the deleted instance to be purged",
        move || async move {
            store
                .instance(id_ref)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
}
both!(lifecycle_through_the_api_and_the_reconciler);

/// A new account that joins `org` with `role` through an invite from `owner`.
async fn roles_decide_who_does_what(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let (mut owner, org) = approved_user(&app, &mut admin, "owner@example.com").await;
    let mut editor =
        crate::support::agent::join_org(&app, &mut owner, &org, "editor@example.com", "editor")
            .await;
    let mut viewer =
        crate::support::agent::join_org(&app, &mut owner, &org, "viewer@example.com", "viewer")
            .await;
    let (mut outsider, _) = approved_user(&app, &mut admin, "outsider@example.com").await;

    // Viewers see; they cannot create, rename or touch tokens.
    let (status, _) = viewer
        .post("/api/instances", json!({"org_id": org, "name": "nope"}))
        .await;
    assert_eq!(status, 403);
    let (id, _) = create(&mut editor, &org, "staging").await;
    let (status, list) = viewer.get(&format!("/api/instances?org={org}")).await;
    assert_eq!((status, list.as_array().map(Vec::len)), (200, Some(1)));
    assert_eq!(viewer.get(&format!("/api/instances/{id}")).await.0, 200);
    assert_eq!(
        viewer
            .patch(&format!("/api/instances/{id}"), json!({"name": "x"}))
            .await
            .0,
        403
    );
    assert_eq!(
        viewer
            .post(&format!("/api/instances/{id}/tokens"), json!({}))
            .await
            .0,
        403
    );

    // Editors create, rename and rotate; only org admins suspend, resume and delete.
    wait_for_state(&mut editor, &id, "ready").await;
    assert_eq!(
        editor
            .patch(
                &format!("/api/instances/{id}"),
                json!({"name": "staging-2"})
            )
            .await
            .0,
        200
    );
    assert_eq!(
        editor
            .post(&format!("/api/instances/{id}/tokens"), json!({}))
            .await
            .0,
        201
    );
    assert_eq!(
        editor
            .post(
                &format!("/api/instances/{id}/suspend"),
                json!({"reason": "x"})
            )
            .await
            .0,
        403
    );
    assert_eq!(editor.delete(&format!("/api/instances/{id}")).await.0, 403);

    // Other orgs' members do not even learn it exists.
    assert_eq!(outsider.get(&format!("/api/instances/{id}")).await.0, 404);
    assert_eq!(
        outsider.get(&format!("/api/instances?org={org}")).await.0,
        404
    );
    assert_eq!(
        outsider.delete(&format!("/api/instances/{id}")).await.0,
        404
    );
    assert_eq!(
        Agent::new(&app)
            .get(&format!("/api/instances/{id}"))
            .await
            .0,
        401
    );

    // A site admin suspends with a reason the org sees; the org cannot lift it, the site admin can.
    assert_eq!(owner.get("/api/admin/instances").await.0, 403);
    let (status, _) = admin
        .post(
            &format!("/api/admin/instances/{id}/suspend"),
            json!({"reason": "Abuse report #12"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, details) = viewer.get(&format!("/api/instances/{id}")).await;
    assert_eq!(details["instance"]["suspension_reason"], "Abuse report #12");
    assert_eq!(details["instance"]["suspended_by_site"], true);
    assert_eq!(
        owner
            .post(&format!("/api/instances/{id}/resume"), json!({}))
            .await
            .0,
        403
    );
    assert_eq!(
        admin
            .post(&format!("/api/admin/instances/{id}/resume"), json!({}))
            .await
            .0,
        200
    );
    let (_, all) = admin.get("/api/admin/instances").await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == id.as_str())
    );

    // Org admins delete.
    assert_eq!(owner.delete(&format!("/api/instances/{id}")).await.0, 202);

    // Bad input.
    assert_eq!(
        owner
            .post("/api/instances", json!({"org_id": org, "name": ""}))
            .await
            .0,
        422
    );
    assert_eq!(
        owner
            .post(
                "/api/instances",
                json!({"org_id": org, "name": "x".repeat(81)})
            )
            .await
            .0,
        422
    );
    assert_eq!(
        owner.post("/api/instances", json!({"org_id": org})).await.0,
        422
    );
    assert_eq!(
        owner
            .post("/api/instances", json!({"org_id": "nope", "name": "x"}))
            .await
            .0,
        404
    );
}
both!(roles_decide_who_does_what);

async fn probe_tokens_rotate_with_grace_and_revoke_at_once(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let (mut alice, org) = approved_user(&app, &mut admin, "alice@example.com").await;
    let (id, first) = create(&mut alice, &org, "prod").await;
    wait_for_state(&mut alice, &id, "ready").await;
    assert_eq!(probe_details(&app, &first).await.0, 200);

    // Rotation: the new token works, the old one too for 24 hours.
    let (status, rotated) = alice
        .post(&format!("/api/instances/{id}/tokens"), json!({}))
        .await;
    assert_eq!(status, 201);
    let second = rotated["probe_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(probe_details(&app, &second).await.0, 200);
    assert_eq!(probe_details(&app, &first).await.0, 200);
    // Keep Alice's session alive across the grace period.
    app.clock.advance(12 * HOUR);
    assert_eq!(alice.get("/api/users/me").await.0, 200);
    app.clock.advance(12 * HOUR + MINUTE);
    assert_eq!(
        probe_details(&app, &first).await.0,
        401,
        "grace period over"
    );
    assert_eq!(probe_details(&app, &second).await.0, 200);

    // Every form the Scope probe uses works.
    let basic = format!("Basic {}", base64(&format!("scope:{second}")));
    for auth in [format!("Bearer {second}"), basic] {
        let response = app
            .client
            .get(app.at("/api"))
            .header("authorization", auth.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{auth}");
    }

    // Revocation is immediate.
    let (_, details) = alice.get(&format!("/api/instances/{id}")).await;
    let live: Vec<_> = details["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["expires_at"].is_null())
        .collect();
    assert_eq!(live.len(), 1);
    let token_id = live[0]["id"].as_str().unwrap();
    assert_eq!(
        alice
            .delete(&format!("/api/instances/{id}/tokens/{token_id}"))
            .await
            .0,
        204
    );
    assert_eq!(
        alice
            .delete(&format!("/api/instances/{id}/tokens/{token_id}"))
            .await
            .0,
        404
    );
    assert_eq!(probe_details(&app, &second).await.0, 401);
    // The secrets are never listed.
    assert!(!details.to_string().contains("shp_"));
    for bogus in ["shp_unknown", "sha_api_token", "", "Scope-Probe"] {
        assert_eq!(probe_details(&app, bogus).await.0, 401, "{bogus}");
    }
}
both!(probe_tokens_rotate_with_grace_and_revoke_at_once);

fn base64(input: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = input.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Two provisioning replicas reconcile at once during a rolling update: one may act on a snapshot
/// taken before the other placed an instance. It must not drop that instance from its shard.
async fn a_stale_reconciler_pass_never_drops_a_placed_instance(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let (_, id, _) = crate::reports::ready_instance(&app).await;
    assert!(
        scopehub::collector::shard::Shard::list(app.shard.as_ref())
            .await
            .unwrap()
            .contains(&id)
    );
    // What the other replica read just before this one placed the instance: still "created".
    let mut stale = app
        .store
        .instances_to_reconcile(app.clock.now())
        .await
        .unwrap();
    for row in &mut stale {
        row.state = "created".into();
        row.shard = None;
    }
    let errors = app.provisioning.reconciler().pass_over(stale).await;
    assert_eq!(errors, 1, "the stale transition loses to the real one");
    assert!(
        scopehub::collector::shard::Shard::list(app.shard.as_ref())
            .await
            .unwrap()
            .contains(&id),
        "the placed instance is still held"
    );
}
both!(a_stale_reconciler_pass_never_drops_a_placed_instance);
