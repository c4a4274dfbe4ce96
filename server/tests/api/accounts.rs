//! Accounts and sessions through the HTTP API, on both backends.

use scopehub::clock::{DAY, HOUR, MINUTE};
use serde_json::json;

use crate::support::agent::{
    ADMIN, Agent, PASSWORD, approved_user, last_link_token, last_mail, site_admin, verified_user,
};
use crate::support::{Backend, TestApp, both};

async fn signup_verify_waitlist_approve_login(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let mut admin = site_admin(&app).await;

    let mut user = Agent::new(&app);
    let (status, body) = user
        .post(
            "/api/users/signup",
            json!({"email": "  New.User@Example.com ", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    // Not confirmed yet: the password is right but login is refused, saying why.
    let (status, body) = user.login("new.user@example.com", PASSWORD).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("email_not_verified"))
    );

    let (subject, mail) = last_mail(&app, "new.user@example.com").await;
    assert!(subject.contains("Confirm"), "{subject}");
    assert!(
        mail.contains(&format!("{}/verify?token=she_", app.url)),
        "{mail}"
    );
    let token = last_link_token(&app, "new.user@example.com").await;
    let (status, body) = user
        .post("/api/users/verify", json!({"token": token}))
        .await;
    assert_eq!(status, 200);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("early-access list")
    );

    // On the waitlist: logging in works, but only to learn that.
    let (status, me) = user.login("new.user@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    assert_eq!(me["user"]["status"], "waitlisted");
    assert_eq!(me["orgs"], json!([]));
    let (status, _) = user.get("/api/orgs").await;
    assert_eq!(status, 403);

    // The admin sees the waitlist and approves; the approval mail carries a login link.
    let (status, list) = admin.get("/api/admin/waitlist").await;
    assert_eq!(status, 200);
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "new.user@example.com")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = admin
        .post(&format!("/api/admin/users/{id}/approve"), json!({}))
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("approved")));
    let (subject, _) = last_mail(&app, "new.user@example.com").await;
    assert!(subject.contains("approved"), "{subject}");
    let token = last_link_token(&app, "new.user@example.com").await;
    let mut fresh = Agent::new(&app);
    let (status, me) = fresh.login_with_link(&token).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["status"], "approved");
    // The first approved login made a personal org, with the user as its admin.
    assert_eq!(me["orgs"].as_array().unwrap().len(), 1);
    assert_eq!(me["orgs"][0]["role"], "admin");
    // The link is single-use.
    let (status, _) = Agent::new(&app).login_with_link(&token).await;
    assert_eq!(status, 400);
    let (status, orgs) = fresh.get("/api/orgs").await;
    assert_eq!((status, orgs.as_array().unwrap().len()), (200, 1));
}
both!(signup_verify_waitlist_approve_login);

async fn signup_and_login_do_not_reveal_registered_emails(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let _admin = site_admin(&app).await;
    let mut a = Agent::new(&app);
    let first = a
        .post(
            "/api/users/signup",
            json!({"email": "taken@example.com", "password": PASSWORD}),
        )
        .await;
    let again = a
        .post(
            "/api/users/signup",
            json!({"email": "taken@example.com", "password": "another password"}),
        )
        .await;
    let fresh = a
        .post(
            "/api/users/signup",
            json!({"email": "fresh@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(first, again);
    assert_eq!(first, fresh);
    // The owner of the address hears about the second attempt; the account itself is unchanged.
    let users = app.store.search_users("taken@", None, 10).await.unwrap();
    assert_eq!(users.len(), 1);

    let wrong_password = a.login(ADMIN, "wrong password!").await;
    let unknown = a.login("nobody@example.com", "wrong password!").await;
    assert_eq!(wrong_password.0, 401);
    assert_eq!(wrong_password, unknown);

    // Resend, login link and forgot-password answer the same for known and unknown addresses.
    for path in [
        "/api/users/verify/resend",
        "/api/users/login-link",
        "/api/users/password/forgot",
    ] {
        let known = a.post(path, json!({"email": "taken@example.com"})).await;
        let unknown = a.post(path, json!({"email": "nobody@example.com"})).await;
        assert_eq!(known, unknown, "{path}");
        assert_eq!(known.0, 202, "{path}");
    }
}
both!(signup_and_login_do_not_reveal_registered_emails);

async fn failed_logins_are_throttled_not_locked_out(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let _admin = site_admin(&app).await;
    let mut a = Agent::new(&app);
    for _ in 0..5 {
        assert_eq!(a.login(ADMIN, "wrong password!").await.0, 401);
    }
    let (status, headers, body) = a
        .send_full(
            reqwest::Method::POST,
            "/api/users/login",
            Some(json!({"email": ADMIN, "password": PASSWORD})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_requests"))
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=15 * 60).contains(&retry), "{retry}");
    // Never permanent: after the window the right password works again.
    app.clock.advance(16 * MINUTE);
    assert_eq!(a.login(ADMIN, PASSWORD).await.0, 200);
    let (_, events) = a.get("/api/admin/audit?limit=500").await;
    let failures = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "login_failed")
        .count();
    assert_eq!(failures, 5);
}
both!(failed_logins_are_throttled_not_locked_out);

async fn links_are_single_use_and_expire(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let _admin = site_admin(&app).await;
    let mut a = Agent::new(&app);

    // Verification: 24 hours.
    a.post(
        "/api/users/signup",
        json!({"email": "slow@example.com", "password": PASSWORD}),
    )
    .await;
    let token = last_link_token(&app, "slow@example.com").await;
    app.clock.advance(DAY + MINUTE);
    assert_eq!(
        a.post("/api/users/verify", json!({"token": token})).await.0,
        400
    );
    a.post(
        "/api/users/verify/resend",
        json!({"email": "slow@example.com"}),
    )
    .await;
    let fresh = last_link_token(&app, "slow@example.com").await;
    assert_ne!(fresh, token);
    assert_eq!(
        a.post("/api/users/verify", json!({"token": fresh})).await.0,
        200
    );
    assert_eq!(
        a.post("/api/users/verify", json!({"token": fresh})).await.0,
        400
    );

    // Password reset: 1 hour, single use, and it ends every session.
    let mut session = Agent::new(&app);
    assert_eq!(session.login(ADMIN, PASSWORD).await.0, 200);
    a.post("/api/users/password/forgot", json!({"email": ADMIN}))
        .await;
    let reset = last_link_token(&app, ADMIN).await;
    app.clock.advance(HOUR + MINUTE);
    let (status, _) = a
        .post(
            "/api/users/password/reset",
            json!({"token": reset, "password": "a new password"}),
        )
        .await;
    assert_eq!(status, 400);
    a.post("/api/users/password/forgot", json!({"email": ADMIN}))
        .await;
    let reset = last_link_token(&app, ADMIN).await;
    let (status, body) = a
        .post(
            "/api/users/password/reset",
            json!({"token": reset, "password": "short"}),
        )
        .await;
    assert_eq!(
        (status, body["fields"]["password"].is_string()),
        (422, true)
    );
    let (status, _) = a
        .post(
            "/api/users/password/reset",
            json!({"token": reset, "password": "a new password"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        a.post(
            "/api/users/password/reset",
            json!({"token": reset, "password": "third password"})
        )
        .await
        .0,
        400
    );
    assert_eq!(session.get("/api/users/me").await.0, 401);
    assert_eq!(a.login(ADMIN, PASSWORD).await.0, 401);
    assert_eq!(a.login(ADMIN, "a new password").await.0, 200);

    // Login link: 15 minutes.
    a.post("/api/users/login-link", json!({"email": ADMIN}))
        .await;
    let link = last_link_token(&app, ADMIN).await;
    app.clock.advance(16 * MINUTE);
    assert_eq!(Agent::new(&app).login_with_link(&link).await.0, 400);
    // A link is only good for its own purpose.
    a.post("/api/users/login-link", json!({"email": ADMIN}))
        .await;
    let link = last_link_token(&app, ADMIN).await;
    assert_eq!(
        a.post(
            "/api/users/password/reset",
            json!({"token": link, "password": "fourth password"})
        )
        .await
        .0,
        400
    );
    assert_eq!(Agent::new(&app).login_with_link(&link).await.0, 200);
}
both!(links_are_single_use_and_expire);

async fn sessions_are_listed_revoked_and_expire(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let mut laptop = site_admin(&app).await;
    let mut phone = Agent::new(&app);
    assert_eq!(phone.login(ADMIN, PASSWORD).await.0, 200);

    let (status, list) = laptop.get("/api/users/sessions").await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    let other = list.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        laptop
            .delete(&format!("/api/users/sessions/{other}"))
            .await
            .0,
        204
    );
    assert_eq!(phone.get("/api/users/me").await.0, 401);
    assert_eq!(
        laptop
            .delete(&format!("/api/users/sessions/{other}"))
            .await
            .0,
        404
    );

    // Logout ends this session; log out everywhere ends all.
    assert_eq!(phone.login(ADMIN, PASSWORD).await.0, 200);
    let (status, headers, _) = laptop
        .send_full(reqwest::Method::POST, "/api/users/logout-all", None)
        .await;
    assert_eq!(status, 204);
    assert!(
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(phone.get("/api/users/me").await.0, 401);

    // Idle expiry (7 days without use) and absolute expiry (30 days).
    let mut idle = Agent::new(&app);
    assert_eq!(idle.login(ADMIN, PASSWORD).await.0, 200);
    let mut busy = Agent::new(&app);
    assert_eq!(busy.login(ADMIN, PASSWORD).await.0, 200);
    for _ in 0..4 {
        app.clock.advance(6 * DAY);
        assert_eq!(busy.get("/api/users/me").await.0, 200);
    }
    assert_eq!(idle.get("/api/users/me").await.0, 401, "idle expiry");
    app.clock.advance(5 * DAY);
    assert_eq!(busy.get("/api/users/me").await.0, 200);
    app.clock.advance(2 * DAY);
    assert_eq!(busy.get("/api/users/me").await.0, 401, "absolute expiry");
}
both!(sessions_are_listed_revoked_and_expire);

async fn cookies_and_csrf_defence(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let (status, headers, _) = admin
        .send_full(
            reqwest::Method::POST,
            "/api/users/login",
            Some(json!({"email": ADMIN, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 200);
    let cookie = headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    // Airplane Mode on http: no Secure flag, no __Host- prefix (they would break plain http).
    assert!(
        !cookie.contains("Secure") && cookie.starts_with("scopehub_session="),
        "{cookie}"
    );
    admin.csrf = None;
    admin.login(ADMIN, PASSWORD).await;

    let org_name = json!({"name": "Renamed"});
    let (_, me) = admin.get("/api/users/me").await;
    let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/orgs/{org}");

    let csrf = admin.csrf.take();
    let (status, body) = admin.patch(&path, org_name.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "no CSRF token"
    );
    admin.csrf = Some("wrong".into());
    assert_eq!(
        admin.patch(&path, org_name.clone()).await.0,
        403,
        "wrong CSRF token"
    );
    admin.csrf = csrf;
    let origin = admin.origin.replace("https://evil.example".into());
    assert_eq!(
        admin.patch(&path, org_name.clone()).await.0,
        403,
        "foreign origin"
    );
    // Login CSRF: a foreign page cannot log a browser in either.
    assert_eq!(
        Agent {
            origin: Some("https://evil.example".into()),
            ..Agent::new(&app)
        }
        .login(ADMIN, PASSWORD)
        .await
        .0,
        403
    );
    admin.origin = origin;
    assert_eq!(admin.patch(&path, org_name).await.0, 200);
    // Reads need no token.
    admin.csrf = None;
    assert_eq!(admin.get("/api/users/me").await.0, 200);
}
both!(cookies_and_csrf_defence);

async fn password_change_keeps_this_session_only(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let mut other = Agent::new(&app);
    other.login(ADMIN, PASSWORD).await;
    let (status, body) = admin
        .post(
            "/api/users/password",
            json!({"current_password": "not it at all", "new_password": "brand new password"}),
        )
        .await;
    assert_eq!(
        (status, body["fields"]["current_password"].as_str()),
        (422, Some("is wrong"))
    );
    let (status, _) = admin
        .post(
            "/api/users/password",
            json!({"current_password": PASSWORD, "new_password": "brand new password"}),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(admin.get("/api/users/me").await.0, 200);
    assert_eq!(other.get("/api/users/me").await.0, 401);
    assert_eq!(
        Agent::new(&app).login(ADMIN, "brand new password").await.0,
        200
    );
}
both!(password_change_keeps_this_session_only);

async fn bad_input_gets_4xx_and_writes_nothing(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let mut a = Agent::new(&app);
    let cases = [
        (
            json!({"email": format!("{}@example.com", "a".repeat(300)), "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": "\u{430}dmin@example.com", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": "not-an-email", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": "ok@example.com", "password": "short"}),
            "password",
        ),
        (
            json!({"email": "ok@example.com", "password": "x".repeat(129)}),
            "password",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = a.post("/api/users/signup", body.clone()).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(error["code"], "validation_failed");
        assert!(error["fields"][field].is_string(), "{error}");
    }
    let (status, error) = a
        .post(
            "/api/users/signup",
            json!({"email": 42, "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (422, Some("invalid_json"))
    );
    let (status, _) = a
        .post(
            "/api/users/signup",
            json!({"email": "ok@example.com", "password": PASSWORD, "is_admin": true}),
        )
        .await;
    assert_eq!(status, 422, "unknown fields are refused");
    assert!(
        app.store
            .search_users("", None, 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing was written"
    );
    // Replayed, made-up and overlong link tokens.
    for token in ["she_0000", "", &"x".repeat(500)] {
        let (status, error) = a.post("/api/users/verify", json!({"token": token})).await;
        assert!(status == 400 || status == 422, "{status}");
        assert!(error["code"].is_string());
    }
}
both!(bad_input_gets_4xx_and_writes_nothing);

async fn rejected_and_suspended_accounts(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let id = verified_user(&app, "nope@example.com").await;
    let (status, body) = admin
        .post(
            &format!("/api/admin/users/{id}/reject"),
            json!({"reason": ""}),
        )
        .await;
    assert_eq!((status, body["fields"]["reason"].is_string()), (422, true));
    let (status, _) = admin
        .post(
            &format!("/api/admin/users/{id}/reject"),
            json!({"reason": "Not in our pilot region yet"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = Agent::new(&app).login("nope@example.com", PASSWORD).await;
    assert_eq!(status, 403);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Not in our pilot region yet")
    );
    assert_eq!(
        admin
            .post(&format!("/api/admin/users/{id}/approve"), json!({}))
            .await
            .0,
        409
    );

    // Suspension ends sessions and API tokens at once; unsuspending lets the user log in again.
    let (mut user, org) = approved_user(&app, &mut admin, "bad@example.com").await;
    let (_, token) = user
        .post(
            "/api/tokens",
            json!({"org_id": org, "name": "ci", "scope": "read"}),
        )
        .await;
    let token = token["token"].as_str().unwrap().to_owned();
    let mut api = Agent::with_token(&app, &token);
    assert_eq!(api.get("/api/orgs").await.0, 200);
    let bad_id = app
        .store
        .user_by_email("bad@example.com")
        .await
        .unwrap()
        .unwrap()
        .id;
    let (status, body) = admin
        .post(&format!("/api/admin/users/{bad_id}/suspend"), json!({}))
        .await;
    assert_eq!((status, body["suspended"].as_bool()), (200, Some(true)));
    assert_eq!(user.get("/api/users/me").await.0, 401);
    assert_eq!(api.get("/api/orgs").await.0, 401);
    assert_eq!(
        Agent::new(&app).login("bad@example.com", PASSWORD).await.0,
        403
    );
    assert_eq!(
        admin
            .post(&format!("/api/admin/users/{bad_id}/unsuspend"), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        Agent::new(&app).login("bad@example.com", PASSWORD).await.0,
        200
    );
    // Revoked tokens stay revoked.
    assert_eq!(api.get("/api/orgs").await.0, 401);
}
both!(rejected_and_suspended_accounts);

#[tokio::test]
async fn open_signup_skips_the_waitlist() {
    let options = crate::support::AppOptions {
        open_signup: true,
        ..Default::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let _admin = site_admin(&app).await;
    verified_user(&app, "eager@example.com").await;
    let (status, me) = Agent::new(&app).login("eager@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    assert_eq!(me["user"]["status"], "approved");
    assert_eq!(me["orgs"].as_array().unwrap().len(), 1);
}
