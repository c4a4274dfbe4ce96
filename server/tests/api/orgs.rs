//! Orgs, memberships, invites, API tokens, the admin console and the audit log: every
//! authorisation rule through the HTTP API, on both backends.

use scopehub::clock::{DAY, MINUTE};
use serde_json::{Value, json};

use crate::support::agent::{Agent, PASSWORD, approved_user, last_link_token, site_admin};
use crate::support::{Backend, TestApp, both};

fn ids(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v[key].as_str().unwrap().to_owned())
        .collect()
}

async fn user_id(app: &TestApp, email: &str) -> String {
    app.store.user_by_email(email).await.unwrap().unwrap().id
}

async fn org_roles_and_tenant_boundaries(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let (mut alice, org_a) = approved_user(&app, &mut admin, "alice@example.com").await;
    let (mut bob, org_b) = approved_user(&app, &mut admin, "bob@example.com").await;

    // A member of org A cannot read or change org B; it looks as if it does not exist.
    for path in [
        format!("/api/orgs/{org_b}/members"),
        format!("/api/orgs/{org_b}/invites"),
        format!("/api/orgs/{org_b}/audit"),
    ] {
        let (status, body) = alice.get(&path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    assert_eq!(
        alice
            .patch(&format!("/api/orgs/{org_b}"), json!({"name": "Mine now"}))
            .await
            .0,
        404
    );
    assert_eq!(
        alice
            .post(
                &format!("/api/orgs/{org_b}/invites"),
                json!({"email": "x@example.com", "role": "admin"})
            )
            .await
            .0,
        404
    );

    // Rename within limits.
    let (status, body) = alice
        .patch(
            &format!("/api/orgs/{org_a}"),
            json!({"name": "  Acme Inc  "}),
        )
        .await;
    assert_eq!((status, body["name"].as_str()), (200, Some("Acme Inc")));
    assert_eq!(
        alice
            .patch(
                &format!("/api/orgs/{org_a}"),
                json!({"name": "x".repeat(81)})
            )
            .await
            .0,
        422
    );

    // Bob joins A as a viewer through an invite.
    let (status, invite) = alice
        .post(
            &format!("/api/orgs/{org_a}/invites"),
            json!({"email": "bob@example.com", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 201, "{invite}");
    let token = crate::support::agent::link_token(invite["link"].as_str().unwrap()).unwrap();
    assert_ne!(
        last_link_token(&app, "bob@example.com").await,
        token,
        "the invitee is mailed a link of their own"
    );
    let (status, joined) = bob
        .post("/api/invites/accept", json!({"token": token}))
        .await;
    assert_eq!(
        (status, joined["role"].as_str()),
        (200, Some("viewer")),
        "{joined}"
    );

    // A viewer reads members but cannot invite, rename or change roles.
    let (status, members) = bob.get(&format!("/api/orgs/{org_a}/members")).await;
    assert_eq!(status, 200);
    assert_eq!(
        ids(&members, "email"),
        vec!["alice@example.com", "bob@example.com"]
    );
    let (status, body) = bob
        .post(
            &format!("/api/orgs/{org_a}/invites"),
            json!({"email": "eve@example.com", "role": "viewer"}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(
        bob.patch(&format!("/api/orgs/{org_a}"), json!({"name": "Bob's"}))
            .await
            .0,
        403
    );
    let alice_id = user_id(&app, "alice@example.com").await;
    let bob_id = user_id(&app, "bob@example.com").await;
    assert_eq!(
        bob.patch(
            &format!("/api/orgs/{org_a}/members/{alice_id}"),
            json!({"role": "viewer"})
        )
        .await
        .0,
        403
    );
    assert_eq!(bob.get(&format!("/api/orgs/{org_a}/audit")).await.0, 403);

    // The last admin cannot step down or leave.
    let (status, _) = alice
        .patch(
            &format!("/api/orgs/{org_a}/members/{alice_id}"),
            json!({"role": "editor"}),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(
        alice
            .delete(&format!("/api/orgs/{org_a}/members/{alice_id}"))
            .await
            .0,
        409
    );
    // Make Bob admin; now Alice may leave, and Bob may not (the last admin again).
    assert_eq!(
        alice
            .patch(
                &format!("/api/orgs/{org_a}/members/{bob_id}"),
                json!({"role": "admin"})
            )
            .await
            .0,
        204
    );
    assert_eq!(
        alice
            .patch(
                &format!("/api/orgs/{org_a}/members/{bob_id}"),
                json!({"role": "owner"})
            )
            .await
            .0,
        422
    );
    assert_eq!(
        alice
            .delete(&format!("/api/orgs/{org_a}/members/{alice_id}"))
            .await
            .0,
        204
    );
    assert_eq!(
        alice.get(&format!("/api/orgs/{org_a}/members")).await.0,
        404
    );
    assert_eq!(
        bob.delete(&format!("/api/orgs/{org_a}/members/{bob_id}"))
            .await
            .0,
        409
    );

    // Org admins see their org's events, with actor, target and address.
    let (status, events) = bob.get(&format!("/api/orgs/{org_a}/audit")).await;
    assert_eq!(status, 200);
    let actions = ids(&events, "action");
    for action in [
        "org_renamed",
        "invite_sent",
        "invite_accepted",
        "role_changed",
        "member_left",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} missing from {actions:?}"
        );
    }
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["org_id"] == org_a.as_str())
    );
    let sent = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "invite_sent")
        .unwrap();
    assert_eq!(sent["actor_email"], "alice@example.com");
    assert_eq!(sent["ip"], "127.0.0.1");
    let _ = org_b;
}
both!(org_roles_and_tenant_boundaries);

async fn invites_are_email_bound_single_use_revocable_and_expire(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let (mut alice, org) = approved_user(&app, &mut admin, "alice@example.com").await;
    let invite = |email: &str, role: &str| json!({"email": email, "role": role});
    let path = format!("/api/orgs/{org}/invites");

    // A new person: preview, then accept by choosing a password; no verification, no waitlist.
    let (_, created) = alice
        .post(&path, invite("newbie@example.com", "editor"))
        .await;
    // The inviter's copyable link cannot create the account: whoever holds it could otherwise
    // make a verified account for any address with a password of their choosing.
    let copied = crate::support::agent::link_token(created["link"].as_str().unwrap()).unwrap();
    let mut anon = Agent::new(&app);
    let (status, preview) = anon.get(&format!("/api/invites/{copied}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            preview["has_account"].as_bool(),
            preview["emailed"].as_bool()
        ),
        (Some(false), Some(false)),
        "the copyable link tells nothing about the address: {preview}"
    );
    let (status, body) = anon
        .post(
            "/api/invites/accept",
            json!({"token": copied, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        app.store
            .user_by_email("newbie@example.com")
            .await
            .unwrap()
            .is_none()
    );
    // The emailed link proves the address.
    let token = last_link_token(&app, "newbie@example.com").await;
    let (status, preview) = anon.get(&format!("/api/invites/{token}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (preview["email"].as_str(), preview["has_account"].as_bool()),
        (Some("newbie@example.com"), Some(false))
    );
    assert_eq!(preview["emailed"], true);
    assert_eq!(preview["invited_by"], "alice@example.com");
    let (status, body) = anon
        .post(
            "/api/invites/accept",
            json!({"token": token, "password": "short"}),
        )
        .await;
    assert_eq!(
        (status, body["fields"]["password"].is_string()),
        (422, true)
    );
    assert!(
        app.store
            .user_by_email("newbie@example.com")
            .await
            .unwrap()
            .is_none(),
        "no half-made account"
    );
    let (status, joined) = anon
        .post(
            "/api/invites/accept",
            json!({"token": token, "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (status, joined["role"].as_str()),
        (200, Some("editor")),
        "{joined}"
    );
    let (status, me) = anon.get("/api/users/me").await;
    assert_eq!(
        (status, me["user"]["status"].as_str()),
        (200, Some("approved"))
    );
    assert!(
        me["orgs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["id"] == org.as_str())
    );
    // Used: it cannot be replayed, by anyone.
    assert_eq!(
        Agent::new(&app)
            .get(&format!("/api/invites/{token}"))
            .await
            .0,
        404
    );
    assert_eq!(
        Agent::new(&app)
            .post(
                "/api/invites/accept",
                json!({"token": token, "password": PASSWORD})
            )
            .await
            .0,
        404
    );

    // Email-bound: someone logged in as another address cannot take it.
    let (mut carol, _) = approved_user(&app, &mut admin, "carol@example.com").await;
    let (_, created) = alice
        .post(&path, invite("dave@example.com", "viewer"))
        .await;
    let dave_token = crate::support::agent::link_token(created["link"].as_str().unwrap()).unwrap();
    let (status, body) = carol
        .post("/api/invites/accept", json!({"token": dave_token}))
        .await;
    assert_eq!(status, 403, "{body}");
    // An existing account must log in first.
    let (_, created) = alice
        .post(&path, invite("carol@example.com", "viewer"))
        .await;
    let carol_token = crate::support::agent::link_token(created["link"].as_str().unwrap()).unwrap();
    let (status, body) = Agent::new(&app)
        .post(
            "/api/invites/accept",
            json!({"token": carol_token, "password": PASSWORD}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));

    // Revoked.
    let invite_id = created["id"].as_str().unwrap();
    assert_eq!(alice.delete(&format!("{path}/{invite_id}")).await.0, 204);
    assert_eq!(alice.delete(&format!("{path}/{invite_id}")).await.0, 404);
    assert_eq!(
        carol
            .post("/api/invites/accept", json!({"token": carol_token}))
            .await
            .0,
        404
    );

    // Expired after 7 days (Alice stays active meanwhile, so her session does not idle out).
    app.clock.advance(4 * DAY);
    assert_eq!(alice.get("/api/users/me").await.0, 200);
    app.clock.advance(3 * DAY + MINUTE);
    assert_eq!(
        Agent::new(&app)
            .post(
                "/api/invites/accept",
                json!({"token": dave_token, "password": PASSWORD})
            )
            .await
            .0,
        404
    );
    let (_, list) = alice.get(&path).await;
    let states: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["state"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        states.contains(&"accepted".into())
            && states.contains(&"revoked".into())
            && states.contains(&"expired".into()),
        "{states:?}"
    );
    // The secret link is never listed again.
    assert!(list.as_array().unwrap().iter().all(|i| i["link"].is_null()));

    // Invalid input.
    assert_eq!(
        alice.post(&path, invite("not-an-email", "viewer")).await.0,
        422
    );
    assert_eq!(
        alice
            .post(&path, invite("x@example.com", "superuser"))
            .await
            .0,
        422
    );

    // An invite also takes someone off the waitlist.
    let waiting = crate::support::agent::verified_user(&app, "waiting@example.com").await;
    let _ = waiting;
    let (_, created) = alice
        .post(&path, invite("waiting@example.com", "viewer"))
        .await;
    let token = crate::support::agent::link_token(created["link"].as_str().unwrap()).unwrap();
    let mut waiting = Agent::new(&app);
    let (_, me) = waiting.login("waiting@example.com", PASSWORD).await;
    assert_eq!(me["user"]["status"], "waitlisted");
    assert_eq!(
        waiting
            .post("/api/invites/accept", json!({"token": token}))
            .await
            .0,
        200
    );
    let (_, me) = waiting.get("/api/users/me").await;
    assert_eq!(me["user"]["status"], "approved");
}
both!(invites_are_email_bound_single_use_revocable_and_expire);

async fn api_tokens_follow_scope_role_org_and_lifetime(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let (mut alice, org_a) = approved_user(&app, &mut admin, "alice@example.com").await;
    let (mut bob, org_b) = approved_user(&app, &mut admin, "bob@example.com").await;

    let (status, read) = alice
        .post(
            "/api/tokens",
            json!({"org_id": org_a, "name": "dashboards", "scope": "read"}),
        )
        .await;
    assert_eq!(status, 201, "{read}");
    let read_token = read["token"].as_str().unwrap().to_owned();
    assert!(read_token.starts_with("sha_"));
    // Default lifetime: 90 days.
    assert_eq!(
        read["expires_at"].as_i64().unwrap() - read["created_at"].as_i64().unwrap(),
        90 * DAY
    );
    let (_, write) = alice
        .post(
            "/api/tokens",
            json!({"org_id": org_a, "name": "automation", "scope": "write", "expires_in_days": 1}),
        )
        .await;
    let write_token = write["token"].as_str().unwrap().to_owned();

    // Shown once: the list never carries the secret, but shows last use.
    let (_, list) = alice.get("/api/tokens").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|t| t["token"].is_null() && t["last_used_at"].is_null())
    );

    let mut reader = Agent::with_token(&app, &read_token);
    let (status, members) = reader.get(&format!("/api/orgs/{org_a}/members")).await;
    assert_eq!((status, members.as_array().map(Vec::len)), (200, Some(1)));
    let (status, body) = reader
        .patch(
            &format!("/api/orgs/{org_a}"),
            json!({"name": "Renamed by a reader"}),
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (403, Some("This API token is read-only."))
    );
    let (_, list) = alice.get("/api/tokens").await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "dashboards" && t["last_used_at"].is_i64())
    );

    // Bound to its org: other orgs do not exist for it, even orgs the user belongs to.
    let (_, invite) = bob
        .post(
            &format!("/api/orgs/{org_b}/invites"),
            json!({"email": "alice@example.com", "role": "admin"}),
        )
        .await;
    let token = crate::support::agent::link_token(invite["link"].as_str().unwrap()).unwrap();
    assert_eq!(
        alice
            .post("/api/invites/accept", json!({"token": token}))
            .await
            .0,
        200
    );
    assert_eq!(
        alice.get(&format!("/api/orgs/{org_b}/members")).await.0,
        200
    );
    assert_eq!(
        reader.get(&format!("/api/orgs/{org_b}/members")).await.0,
        404
    );
    let (_, orgs) = reader.get("/api/orgs").await;
    assert_eq!(ids(&orgs, "id"), vec![org_a.clone()]);

    // Write scope works within the user's role.
    let mut writer = Agent::with_token(&app, &write_token);
    assert_eq!(
        writer
            .patch(
                &format!("/api/orgs/{org_a}"),
                json!({"name": "Renamed by automation"})
            )
            .await
            .0,
        200
    );
    // Tokens cannot manage credentials or reach the admin console.
    assert_eq!(
        writer
            .post(
                "/api/tokens",
                json!({"org_id": org_a, "name": "more", "scope": "write"})
            )
            .await
            .0,
        403
    );
    assert_eq!(writer.get("/api/users/sessions").await.0, 403);

    // A write token of a viewer cannot do what a viewer cannot.
    let (_, invite) = alice
        .post(
            &format!("/api/orgs/{org_a}/invites"),
            json!({"email": "bob@example.com", "role": "viewer"}),
        )
        .await;
    let token = crate::support::agent::link_token(invite["link"].as_str().unwrap()).unwrap();
    assert_eq!(
        bob.post("/api/invites/accept", json!({"token": token}))
            .await
            .0,
        200
    );
    let (_, bob_write) = bob
        .post(
            "/api/tokens",
            json!({"org_id": org_a, "name": "bw", "scope": "write"}),
        )
        .await;
    let mut bob_writer = Agent::with_token(&app, bob_write["token"].as_str().unwrap());
    assert_eq!(
        bob_writer
            .patch(
                &format!("/api/orgs/{org_a}"),
                json!({"name": "Viewer wins"})
            )
            .await
            .0,
        403
    );

    // Expired, revoked, malformed and unknown tokens are refused with 401.
    app.clock.advance(DAY + MINUTE);
    let (status, headers, _) = writer
        .send_full(reqwest::Method::GET, "/api/orgs", None)
        .await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer");
    let read_id = read["id"].as_str().unwrap();
    assert_eq!(alice.delete(&format!("/api/tokens/{read_id}")).await.0, 204);
    assert_eq!(alice.delete(&format!("/api/tokens/{read_id}")).await.0, 404);
    assert_eq!(reader.get("/api/orgs").await.0, 401);
    for bogus in ["sha_nope", "shs_not_an_api_token", ""] {
        assert_eq!(
            Agent::with_token(&app, bogus).get("/api/orgs").await.0,
            401,
            "{bogus}"
        );
    }
    // Someone else's token id cannot be revoked.
    let bob_token_id = bob_write["id"].as_str().unwrap();
    assert_eq!(
        alice.delete(&format!("/api/tokens/{bob_token_id}")).await.0,
        404
    );

    // Validation.
    assert_eq!(
        alice
            .post(
                "/api/tokens",
                json!({"org_id": org_a, "name": "", "scope": "read"})
            )
            .await
            .0,
        422
    );
    assert_eq!(
        alice
            .post(
                "/api/tokens",
                json!({"org_id": org_a, "name": "t", "scope": "admin"})
            )
            .await
            .0,
        422
    );
    assert_eq!(
        alice
            .post(
                "/api/tokens",
                json!({"org_id": org_a, "name": "t", "scope": "read", "expires_in_days": 400})
            )
            .await
            .0,
        422
    );
    assert_eq!(
        alice
            .post(
                "/api/tokens",
                json!({"org_id": "nope", "name": "t", "scope": "read"})
            )
            .await
            .0,
        404
    );

    let (_, events) = alice.get(&format!("/api/orgs/{org_a}/audit")).await;
    let actions = ids(&events, "action");
    assert!(
        actions.contains(&"token_created".into()) && actions.contains(&"token_revoked".into()),
        "{actions:?}"
    );
}
both!(api_tokens_follow_scope_role_org_and_lifetime);

async fn the_admin_console_is_for_site_admins_only(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let (mut alice, org) = approved_user(&app, &mut admin, "alice@example.com").await;
    let alice_id = user_id(&app, "alice@example.com").await;
    let admin_id = user_id(&app, crate::support::agent::ADMIN).await;

    for path in [
        "/api/admin/waitlist",
        "/api/admin/users",
        "/api/admin/orgs",
        "/api/admin/outbox",
        "/api/admin/audit",
    ] {
        assert_eq!(alice.get(path).await.0, 403, "{path}");
        assert_eq!(Agent::new(&app).get(path).await.0, 401, "{path}");
        assert_eq!(admin.get(path).await.0, 200, "{path}");
    }
    assert_eq!(
        alice
            .post(&format!("/api/admin/users/{admin_id}/suspend"), json!({}))
            .await
            .0,
        403
    );

    // Users list with search.
    let (_, found) = admin.get("/api/admin/users?q=ALICE").await;
    assert_eq!(ids(&found, "email"), vec!["alice@example.com"]);
    let (_, found) = admin.get("/api/admin/users?q=%25").await;
    assert!(
        found.as_array().unwrap().is_empty(),
        "LIKE wildcards are literal"
    );
    let (_, orgs) = admin.get("/api/admin/orgs").await;
    assert!(ids(&orgs, "id").contains(&org));
    let (_, outbox) = admin.get("/api/admin/outbox").await;
    assert!(
        outbox
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["to"] == "alice@example.com" && m["status"] == "kept")
    );

    // Make and unmake admins; the last one stays; nobody suspends themselves.
    assert_eq!(
        admin
            .post(
                &format!("/api/admin/users/{admin_id}/admin"),
                json!({"is_admin": false})
            )
            .await
            .0,
        409
    );
    assert_eq!(
        admin
            .post(&format!("/api/admin/users/{admin_id}/suspend"), json!({}))
            .await
            .0,
        409
    );
    let (status, body) = admin
        .post(
            &format!("/api/admin/users/{alice_id}/admin"),
            json!({"is_admin": true}),
        )
        .await;
    assert_eq!((status, body["is_admin"].as_bool()), (200, Some(true)));
    assert_eq!(alice.get("/api/admin/users").await.0, 200);
    assert_eq!(
        alice
            .post(
                &format!("/api/admin/users/{admin_id}/admin"),
                json!({"is_admin": false})
            )
            .await
            .0,
        200
    );
    assert_eq!(admin.get("/api/admin/users").await.0, 403);
    assert_eq!(
        alice
            .post("/api/admin/users/nope/approve", json!({}))
            .await
            .0,
        404
    );

    // Site admins see every event, including sign-ups and logins.
    let (_, events) = alice.get("/api/admin/audit?limit=500").await;
    let actions = ids(&events, "action");
    for action in [
        "signup",
        "verify",
        "login",
        "approved",
        "admin_granted",
        "admin_revoked",
        "org_created",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} missing from {actions:?}"
        );
    }
    // Paging by id.
    let newest = events[0]["id"].as_i64().unwrap();
    let (_, older) = alice
        .get(&format!("/api/admin/audit?before={newest}&limit=2"))
        .await;
    assert_eq!(older.as_array().unwrap().len(), 2);
    assert!(older[0]["id"].as_i64().unwrap() < newest);
}
both!(the_admin_console_is_for_site_admins_only);

async fn members_create_more_orgs_and_switch_between_them(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let (mut alice, personal) = approved_user(&app, &mut admin, "alice@example.com").await;
    let (status, org) = alice
        .post("/api/orgs", json!({"name": "  Side project "}))
        .await;
    assert_eq!(
        (status, org["name"].as_str(), org["role"].as_str()),
        (201, Some("Side project"), Some("admin"))
    );
    assert_eq!(alice.post("/api/orgs", json!({"name": ""})).await.0, 422);
    assert_eq!(
        alice.post("/api/orgs", json!({"name": "a\u{7}b"})).await.0,
        422
    );
    let (_, me) = alice.get("/api/users/me").await;
    let mut names: Vec<_> = me["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["Side project", "alice's org"]);
    // Viewers of an org do not see its invites.
    let (_, invite) = alice
        .post(
            &format!("/api/orgs/{personal}/invites"),
            json!({"email": "bob@example.com", "role": "viewer"}),
        )
        .await;
    let (mut bob, _) = approved_user(&app, &mut admin, "bob@example.com").await;
    let token = crate::support::agent::link_token(invite["link"].as_str().unwrap()).unwrap();
    assert_eq!(
        bob.post("/api/invites/accept", json!({"token": token}))
            .await
            .0,
        200
    );
    assert_eq!(
        bob.get(&format!("/api/orgs/{personal}/invites")).await.0,
        403
    );
    // Orgs are not created with API tokens.
    let (_, t) = alice
        .post(
            "/api/tokens",
            json!({"org_id": personal, "name": "w", "scope": "write"}),
        )
        .await;
    let mut api = Agent::with_token(&app, t["token"].as_str().unwrap());
    assert_eq!(
        api.post("/api/orgs", json!({"name": "By token"})).await.0,
        403
    );
}
both!(members_create_more_orgs_and_switch_between_them);
