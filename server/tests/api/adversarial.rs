//! Hostile input from one tenant (issue 14): each test posts what an attacker with one probe token
//! or one account would, through the real HTTP interface, and checks that it is refused early, with
//! a clear reason, counted, and that it leaves the service (and other tenants) unharmed.

use std::io::Write;

use serde_json::{Value, json};

use crate::reports::{fixture, post_report, ready_instance};
use crate::support::agent::{ADMIN, Agent, PASSWORD, site_admin};
use crate::support::{AppOptions, Backend, TestApp, both};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn fixstr(body: &mut Vec<u8>, s: &str) {
    body.push(0xa0 | s.len() as u8);
    body.extend_from_slice(s.as_bytes());
}

/// msgpack of one process node whose `sets` hold `sets` lists of `members` empty strings each: a
/// few bytes per element on the wire, a string each once decoded.
fn empty_strings_report(sets: u16, members: u32) -> Vec<u8> {
    let mut body = Vec::new();
    for key in ["Process", "nodes", "n"] {
        body.push(0x81);
        fixstr(&mut body, key);
    }
    body.push(0x81);
    fixstr(&mut body, "sets");
    body.push(0xde);
    body.extend_from_slice(&sets.to_be_bytes());
    for set in 0..sets {
        fixstr(&mut body, &format!("s{set}"));
        body.push(0xdd);
        body.extend_from_slice(&members.to_be_bytes());
        body.resize(body.len() + members as usize, 0xa0);
    }
    body
}

async fn metrics(app: &TestApp) -> String {
    let response = app.client.get(app.at("/metrics")).send().await.unwrap();
    response.text().await.unwrap()
}

fn counted(metrics: &str, outcome: &str) -> u64 {
    let name = format!("scopehub_collector_reports_total{{outcome=\"{outcome}\"}}");
    crate::support::metric(metrics, &name) as u64
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn reports_that_decode_into_too_much_are_refused_while_decoding() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (mut alice, id, token) = ready_instance(&app).await;
    let before = metrics(&app).await;

    // One list of four million empty strings: 4 MB of msgpack, a few KB gzipped; ~100 MB as
    // strings. Refused at the element limit of one list.
    let one_list = gzip(&empty_strings_report(1, 4_000_000));
    assert!(one_list.len() < 64 * 1024, "{}", one_list.len());
    let (status, body) =
        post_report(&app, &token, "p", one_list, "application/msgpack", true).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "payload_too_large");
    assert!(
        message(&body).contains("more than 100000 elements"),
        "{body}"
    );

    // Sixty lists just under that limit: refused at the decoded-size budget.
    let many_lists = gzip(&empty_strings_report(60, 99_000));
    let (status, body) =
        post_report(&app, &token, "p", many_lists, "application/msgpack", true).await;
    assert_eq!(status, 413, "{body}");
    assert!(message(&body).contains("decodes to more than"), "{body}");

    // JSON nested past the depth limit.
    let deep = format!(r#"{{"DNS": {}{}}}"#, "[".repeat(100), "]".repeat(100));
    let (status, body) = post_report(
        &app,
        &token,
        "p",
        deep.into_bytes(),
        "application/json",
        false,
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(message(&body).contains("deep"), "{body}");

    // Counted on the instance page and in the metrics; a real report is still taken.
    let (_, details) = alice.get(&format!("/api/instances/{id}")).await;
    assert_eq!(details["usage"]["refused"]["too_large"], 3, "{details}");
    let after = metrics(&app).await;
    assert_eq!(
        counted(&after, "too_large"),
        counted(&before, "too_large") + 3
    );
    // The CPU the decoding threads spent, refused reports included, and then the real one's.
    let cpu =
        |text: &str| crate::support::metric(text, "scopehub_collector_report_cpu_seconds_total");
    assert!(cpu(&after) > cpu(&before), "{after}");
    crate::topology::post_msgpack(&app, &token, "probe-full-1").await;
    let last = metrics(&app).await;
    assert_eq!(counted(&last, "accepted"), counted(&after, "accepted") + 1);
    assert!(cpu(&last) > cpu(&after), "{last}");
}

#[tokio::test]
async fn an_instance_at_its_memory_budget_gets_429_until_its_window_drains() {
    let options = AppOptions {
        memory: Some(scopehub::collector::slot::MemoryBudget {
            instance_bytes: 300_000,
            shard_bytes: usize::MAX,
        }),
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let (mut alice, id, token) = ready_instance(&app).await;
    let full = fixture("probe-full-4.msgpack.gz");
    // Each probe's part holds its host's nodes: enough probes fill the budget.
    let mut refused = None;
    for probe in 0..50 {
        let (status, body) = post_report(
            &app,
            &token,
            &format!("probe-{probe}"),
            full.clone(),
            "application/msgpack",
            true,
        )
        .await;
        if status != 200 {
            refused = Some((status, body));
            break;
        }
    }
    let (status, body) = refused.expect("the budget was never reached");
    assert_eq!(status, 429, "{body}");
    assert!(message(&body).contains("memory budget"), "{body}");
    let (_, details) = alice.get(&format!("/api/instances/{id}")).await;
    let usage = &details["usage"];
    assert_eq!(usage["refused"]["window_full"], 1, "{details}");
    assert!(
        usage["window_bytes"].as_u64().unwrap() >= 300_000,
        "{usage}"
    );
    assert_eq!(usage["window_budget_bytes"], 300_000);
    assert!(counted(&metrics(&app).await, "window_full") >= 1);

    // Once the window's reports are older than 15 s, reports are taken again.
    app.clock.advance(16_000);
    let (status, body) =
        post_report(&app, &token, "probe-0", full, "application/msgpack", true).await;
    assert_eq!(status, 200, "{body}");
}

/// Mails in the outbox to `to`.
async fn mails_to(app: &TestApp, to: &str) -> usize {
    let rows = app.store.outbox(10_000).await.expect("outbox");
    rows.iter().filter(|m| m.to_email == to).count()
}

async fn mail_requests_are_limited_per_address_and_per_client(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let _admin = site_admin(&app).await;
    let mut anyone = Agent::new(&app);
    let victim = "victim@example.com";
    let (status, _) = anyone
        .post(
            "/api/users/signup",
            json!({"email": victim, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 202);
    // Every endpoint that mails the address counts towards the same limit: five an hour.
    let paths = [
        "/api/users/verify/resend",
        "/api/users/login-link",
        "/api/users/password/forgot",
    ];
    let mut statuses = Vec::new();
    for n in 0..9 {
        let (status, _) = anyone
            .post(paths[n % paths.len()], json!({"email": victim}))
            .await;
        statuses.push(status);
    }
    assert_eq!(statuses[..4], [202; 4], "{statuses:?}");
    assert!(statuses[4..].iter().all(|s| *s == 429), "{statuses:?}");
    assert!(mails_to(&app, victim).await <= 5);
    // The same for an address with no account: the answer tells nothing about it.
    let mut nobody = Vec::new();
    for _ in 0..6 {
        let (status, _) = anyone
            .post(
                "/api/users/password/forgot",
                json!({"email": "nobody@example.com"}),
            )
            .await;
        nobody.push(status);
    }
    assert_eq!(nobody, [202, 202, 202, 202, 202, 429]);
    // After the hour, the address may be mailed again.
    app.clock.advance(61 * 60 * 1000);
    let (status, _) = anyone
        .post("/api/users/login-link", json!({"email": victim}))
        .await;
    assert_eq!(status, 202);

    // Per client: thirty requests an hour that may send mail, whatever the addresses.
    let mut refused = 0;
    for n in 0..40 {
        let (status, body) = anyone
            .post(
                "/api/users/password/forgot",
                json!({"email": format!("someone{n}@example.com")}),
            )
            .await;
        if status == 429 {
            refused += 1;
            assert!(message(&body).contains("network"), "{body}");
        }
    }
    assert!((9..=11).contains(&refused), "{refused}");
}
both!(mail_requests_are_limited_per_address_and_per_client);

async fn password_hashes(app: &TestApp) -> u64 {
    let text = metrics(app).await;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("scopehub_password_hashes_total")?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0) as u64
}

async fn a_bogus_password_reset_is_refused_before_any_hashing(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let before = password_hashes(&app).await;
    let statuses = post_at_once(
        &app,
        "/api/users/password/reset",
        |n| json!({"token": format!("shr_bogus{n:0>40}"), "password": "a brand new password"}),
    )
    .await;
    assert!(statuses.iter().all(|s| *s == 400), "{statuses:?}");
    assert_eq!(password_hashes(&app).await, before);
}
both!(a_bogus_password_reset_is_refused_before_any_hashing);

/// POSTs 16 bodies to `path` all at once; their statuses.
async fn post_at_once(app: &TestApp, path: &str, body: impl Fn(usize) -> Value) -> Vec<u16> {
    let requests = (0..16).map(|n| {
        let request = app.client.post(app.at(path)).json(&body(n));
        tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
    });
    let mut statuses = Vec::new();
    for task in requests.collect::<Vec<_>>() {
        statuses.push(task.await.unwrap());
    }
    statuses
}

async fn concurrent_wrong_passwords_cannot_pass_the_login_limit(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let _admin = site_admin(&app).await;
    let statuses = post_at_once(
        &app,
        "/api/users/login",
        |_| json!({"email": ADMIN, "password": "wrong password!"}),
    )
    .await;
    let tried = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((tried, refused), (5, 11), "{statuses:?}");
    // The right password is refused too until the window passes.
    let mut admin = Agent::new(&app);
    assert_eq!(admin.login(ADMIN, PASSWORD).await.0, 429);
}
both!(concurrent_wrong_passwords_cannot_pass_the_login_limit);

/// A fresh API token of `agent` in `org`, and an agent using it.
async fn api_token(app: &TestApp, agent: &mut Agent, org: &str, name: &str) -> Agent {
    let (status, token) = agent
        .post(
            "/api/tokens",
            json!({"org_id": org, "name": name, "scope": "read"}),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    Agent::with_token(app, token["token"].as_str().unwrap())
}

async fn a_password_reset_and_logging_out_everywhere_end_api_tokens(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let email = "tokens@example.com";
    let (mut user, org) = crate::support::agent::approved_user(&app, &mut admin, email).await;

    // Logging out everywhere keeps API tokens unless asked.
    let mut kept = api_token(&app, &mut user, &org, "kept").await;
    assert_eq!(user.post("/api/users/logout-all", json!({})).await.0, 204);
    assert_eq!(kept.get("/api/orgs").await.0, 200);
    assert_eq!(user.login(email, PASSWORD).await.0, 200);
    let (status, _) = user
        .post("/api/users/logout-all", json!({"revoke_api_tokens": true}))
        .await;
    assert_eq!(status, 204);
    assert_eq!(kept.get("/api/orgs").await.0, 401);

    // A password reset revokes every API token: whoever knew the old password may have made one.
    assert_eq!(user.login(email, PASSWORD).await.0, 200);
    let mut made_before = api_token(&app, &mut user, &org, "before reset").await;
    assert_eq!(made_before.get("/api/orgs").await.0, 200);
    let mut anyone = Agent::new(&app);
    anyone
        .post("/api/users/password/forgot", json!({"email": email}))
        .await;
    let link = crate::support::agent::last_link_token(&app, email).await;
    let (status, body) = anyone
        .post(
            "/api/users/password/reset",
            json!({"token": link, "password": "an entirely new password"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(made_before.get("/api/orgs").await.0, 401);
}
both!(a_password_reset_and_logging_out_everywhere_end_api_tokens);

/// Reads `socket` until the server closes it; panics if it is still open after `within`.
async fn closed_within(socket: &mut crate::topology::Socket, within: std::time::Duration) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => panic!("the websocket is still open after {within:?}"),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn map_socket(
    app: &TestApp,
    instance: &str,
    header: (&'static str, String),
) -> crate::topology::Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!(
        "ws://{}/api/app/{instance}/api/topology/processes/ws?t=200ms",
        app.addr
    )
    .into_client_request()
    .unwrap();
    request
        .headers_mut()
        .insert(header.0, header.1.parse().unwrap());
    request
        .headers_mut()
        .insert("origin", format!("http://{}", app.addr).parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("handshake");
    crate::topology::next_frame(&mut socket).await;
    socket
}

async fn open_websockets_close_when_their_session_or_token_ends(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let (mut alice, id, probe_token) = ready_instance(&app).await;
    crate::topology::post_msgpack(&app, &probe_token, "probe-full-1").await;
    let within = std::time::Duration::from_secs(5);

    // Logging out closes the map the session had open (re-checked at once, not in 30 s).
    let cookie = format!("scopehub_session={}", alice.cookie.clone().unwrap());
    let mut socket = map_socket(&app, &id, ("cookie", cookie)).await;
    assert_eq!(alice.post("/api/users/logout", json!({})).await.0, 204);
    closed_within(&mut socket, within).await;

    // Revoking an API token closes the maps it had open.
    assert_eq!(alice.login("alice@example.com", PASSWORD).await.0, 200);
    let (_, details) = alice.get(&format!("/api/instances/{id}")).await;
    let org = details["instance"]["org_id"].as_str().unwrap().to_owned();
    let (status, made) = alice
        .post(
            "/api/tokens",
            json!({"org_id": org, "name": "map", "scope": "read"}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let bearer = format!("Bearer {}", made["token"].as_str().unwrap());
    let mut socket = map_socket(&app, &id, ("authorization", bearer)).await;
    let token_id = made["info"]["id"]
        .as_str()
        .or(made["id"].as_str())
        .unwrap()
        .to_owned();
    assert_eq!(
        alice.delete(&format!("/api/tokens/{token_id}")).await.0,
        204
    );
    closed_within(&mut socket, within).await;
}
both!(open_websockets_close_when_their_session_or_token_ends);

/// Twenty-five wrong passwords for as many accounts, each claiming another client address.
async fn wrong_logins_from_many_addresses(app: &TestApp) -> Vec<u16> {
    let mut statuses = Vec::new();
    for n in 0..25 {
        let response = app
            .client
            .post(app.at("/api/users/login"))
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .json(&json!({"email": format!("user{n}@example.com"), "password": "wrong password!"}))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
    // Without a trusted proxy the header is ignored: every attempt is the TCP peer's, and the
    // per-address login limit (20) stops the rest.
    let Some(direct) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let statuses = wrong_logins_from_many_addresses(&direct).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        5,
        "{statuses:?}"
    );
    // Behind a trusted proxy each client is counted on its own: one failure each, none refused
    // (behind a proxy, twenty failures from anyone no longer block every login).
    let options = AppOptions {
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..AppOptions::default()
    };
    let Some(proxied) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let statuses = wrong_logins_from_many_addresses(&proxied).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
}

/// A member may keep 16 live maps of an instance open (tabs, dashboards), no more: the next
/// handshake is refused with 429 and says why, another member of the org is not affected, and a
/// map closed makes room at once.
#[tokio::test]
async fn a_member_may_keep_only_so_many_maps_of_an_instance_open() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (mut alice, id, probe_token) = ready_instance(&app).await;
    crate::topology::post_msgpack(&app, &probe_token, "probe-full-1").await;
    let (_, details) = alice.get(&format!("/api/instances/{id}")).await;
    let org = details["instance"]["org_id"].as_str().unwrap().to_owned();
    let bob =
        crate::support::agent::join_org(&app, &mut alice, &org, "bob@example.com", "viewer").await;
    let cookie = |agent: &Agent| format!("scopehub_session={}", agent.cookie.clone().unwrap());
    let open = |cookie: String| {
        let mut request = format!("ws://{}/api/app/{id}/api/topology/hosts/ws", app.addr)
            .into_client_request()
            .unwrap();
        let headers = request.headers_mut();
        headers.insert("cookie", cookie.parse().unwrap());
        headers.insert("origin", format!("http://{}", app.addr).parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    let mut maps = Vec::new();
    for _ in 0..16 {
        let (mut socket, _) = open(cookie(&alice)).await.expect("a map");
        crate::topology::next_frame(&mut socket).await;
        maps.push(socket);
    }
    let refused = |result: Result<_, tokio_tungstenite::tungstenite::Error>| match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            (
                response.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            )
        }
        Ok(_) => (101, String::new()),
        Err(e) => panic!("{e}"),
    };
    let (status, body) = refused(open(cookie(&alice)).await);
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("16 live maps"), "{body}");
    // Bob's maps are his own.
    let (mut bobs, _) = open(cookie(&bob)).await.expect("bob's map");
    crate::topology::next_frame(&mut bobs).await;
    // One of Alice's closed: she may open another.
    let mut closing = maps.pop().unwrap();
    closing.close(None).await.unwrap();
    crate::support::eventually(std::time::Duration::from_secs(5), "room for a map", || {
        let request = open(cookie(&alice));
        async move {
            let (mut socket, _) = request.await.ok()?;
            crate::topology::next_frame(&mut socket).await;
            Some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_session_websocket_from_another_site_is_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (alice, id, _) = ready_instance(&app).await;
    let url = format!("ws://{}/api/app/{id}/api/topology/processes/ws", app.addr);
    let cookie = format!("scopehub_session={}", alice.cookie.clone().unwrap());
    let status = |origin: Option<&str>| {
        let mut request = url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("cookie", cookie.parse().unwrap());
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
        }
        async move {
            match tokio_tungstenite::connect_async(request).await {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                Err(e) => panic!("{e}"),
            }
        }
    };
    // A page on another site opening the map with the user's cookie: refused.
    assert_eq!(status(Some("https://evil.example")).await, 403);
    // No Origin at all is not a browser page of ours either.
    assert_eq!(status(None).await, 403);
    assert_eq!(status(Some(&format!("http://{}", app.addr))).await, 101);
}

#[tokio::test]
async fn an_api_token_sees_only_its_own_org_of_the_user() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let (mut user, personal) =
        crate::support::agent::approved_user(&app, &mut admin, "two@example.com").await;
    let (status, other) = user
        .post("/api/orgs", json!({"name": "Side project"}))
        .await;
    assert_eq!(status, 201, "{other}");
    let (_, me) = user.get("/api/users/me").await;
    assert_eq!(me["orgs"].as_array().unwrap().len(), 2, "{me}");
    let mut api = api_token(&app, &mut user, &personal, "ci").await;
    let (status, me) = api.get("/api/users/me").await;
    assert_eq!(status, 200);
    let orgs: Vec<&str> = me["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(orgs, [personal.as_str()], "{me}");
}

async fn the_first_signup_is_site_admin_only_in_airplane_mode(b: Backend) {
    let Some(db) = crate::support::TestDb::new(b).await else {
        return;
    };
    let server = crate::support::process::ServerProcess::serve(&[
        "--database-url",
        db.url.as_str(),
        "--dist-dir",
        "/nonexistent",
    ]);
    server.wait_ready().await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/users/signup", server.url))
        .json(&json!({"email": "first@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    // Only an account that can log in at once is told so (the web app then logs it in).
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["can_log_in"].as_bool().unwrap_or(false),
        b == Backend::Sqlite,
        "{body}"
    );
    let user = db
        .store(true)
        .await
        .user_by_email("first@example.com")
        .await
        .unwrap()
        .expect("the account");
    // SQLite is Airplane Mode; on PostgreSQL the first admin comes from `scopehub admin`.
    assert_eq!(user.is_admin, b == Backend::Sqlite);
}
both!(the_first_signup_is_site_admin_only_in_airplane_mode);

async fn two_admins_demoting_each_other_at_once_leave_one(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let (alice, org) =
        crate::support::agent::approved_user(&app, &mut admin, "alice@example.com").await;
    let (bob, _) = crate::support::agent::approved_user(&app, &mut admin, "bob@example.com").await;
    let id_of = |email: &'static str| {
        let store = app.store.clone();
        async move { store.user_by_email(email).await.unwrap().unwrap().id }
    };
    // (agent, user id, email); the first is an admin of `org` at the start of each round.
    let mut people = [
        (alice, id_of("alice@example.com").await, "alice@example.com"),
        (bob, id_of("bob@example.com").await, "bob@example.com"),
    ];
    for round in 0..5 {
        // Both admins: the one who is makes the other one.
        let [(first, _, _), (second, _, second_email)] = &mut people;
        let (status, invite) = first
            .post(
                &format!("/api/orgs/{org}/invites"),
                json!({"email": *second_email, "role": "admin"}),
            )
            .await;
        assert_eq!(status, 201, "{invite}");
        let token = crate::support::agent::link_token(invite["link"].as_str().unwrap()).unwrap();
        let (status, body) = second
            .post("/api/invites/accept", json!({"token": token}))
            .await;
        assert_eq!(status, 200, "{body}");
        // Each demotes the other at the same moment.
        let [(first, first_id, _), (second, second_id, _)] = &mut people;
        let to_second = format!("/api/orgs/{org}/members/{second_id}");
        let to_first = format!("/api/orgs/{org}/members/{first_id}");
        let (a, b) = tokio::join!(
            first.patch(&to_second, json!({"role": "viewer"})),
            second.patch(&to_first, json!({"role": "viewer"})),
        );
        let (_, members) = people[0].0.get(&format!("/api/orgs/{org}/members")).await;
        let admins: Vec<&str> = members
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "admin")
            .filter_map(|m| m["email"].as_str())
            .collect();
        assert_eq!(admins.len(), 1, "round {round}: {a:?} {b:?} {members}");
        if admins[0] != people[0].2 {
            people.swap(0, 1);
        }
    }
}
both!(two_admins_demoting_each_other_at_once_leave_one);

/// The resident memory of process `pid`, in MiB.
fn rss_mib(pid: i32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The fuzzer's saved inputs (`fuzz/corpus/decode`, docs/testing.md "Fuzzing"), as bodies a probe
/// could post: gzip, JSON or msgpack by their first bytes.
pub(crate) fn fuzz_corpus() -> Vec<(&'static str, bool, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decode");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let body = std::fs::read(&path).unwrap();
            let gzipped = body.starts_with(&[0x1f, 0x8b]);
            let json = body.trim_ascii_start().starts_with(b"{");
            let content_type = if json {
                "application/json"
            } else {
                "application/msgpack"
            };
            (content_type, gzipped, body)
        })
        .collect()
}

/// Hostile bodies, as (content type, gzipped, body): what the limits of issue 14 stop, plus
/// random and mangled reports and the fuzzer's corpus. `n` varies them.
fn hostile_body(
    n: usize,
    corpus: &[(&'static str, bool, Vec<u8>)],
) -> (&'static str, bool, Vec<u8>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    let fixture = crate::reports::fixture("probe-full-4.msgpack.gz");
    match n % 8 {
        7 => corpus[(n / 8) % corpus.len()].clone(),
        0 => (
            "application/msgpack",
            true,
            gzip(&empty_strings_report(60, 99_000)),
        ),
        1 => (
            "application/msgpack",
            true,
            gzip(&empty_strings_report(1, 2_000_000)),
        ),
        2 => {
            let deep = format!(r#"{{"DNS": {}{}}}"#, "[".repeat(5_000), "]".repeat(5_000));
            ("application/json", false, deep.into_bytes())
        }
        3 => {
            let long = "x".repeat(4 << 20);
            let body = format!(
                r#"{{"Process": {{"nodes": {{"n": {{"latest": {{"k": {{"value": "{long}"}}}}}}}}}}}}"#
            );
            ("application/json", true, gzip(body.as_bytes()))
        }
        4 => {
            let noise: Vec<u8> = (0..rng.random_range(1..200_000))
                .map(|_| rng.random())
                .collect();
            ("application/msgpack", false, noise)
        }
        5 => {
            // The real report's msgpack with random bytes flipped.
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&fixture[..]), &mut raw)
                .unwrap();
            for _ in 0..20 {
                let at = rng.random_range(0..raw.len());
                raw[at] = rng.random();
            }
            ("application/msgpack", false, raw)
        }
        _ => {
            // A large host whose nodes are new each time: the window grows to its budget.
            let report = scopehub::probe::loadgen::synthetic_report(
                n,
                10_000,
                &scopehub::probe::loadgen::Shape::large(),
                scopehub::collector::report::Time(1_800_000_000_000_000_000),
            );
            (
                "application/msgpack",
                true,
                scopehub::probe::encode(&report, false).unwrap().0,
            )
        }
    }
}

/// Three tenants post hostile reports as fast as they are let while a fourth reads its map: the
/// reads all answer, the hostile ones only ever get 4xx, and the server stays within its memory
/// budget. Prints the reads' latency and the server's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_tenants_do_not_starve_a_quiet_one_or_exhaust_memory() {
    use std::time::{Duration, Instant};
    let data = tempfile::tempdir().unwrap();
    let server = crate::support::process::ServerProcess::serve(&[
        "--data-dir",
        data.path().to_str().unwrap(),
        "--dist-dir",
        "/nonexistent",
        "--instance-window-mib",
        "12",
        "--collector-window-mib",
        "48",
    ]);
    server.wait_ready().await;
    let base = server.url.clone();
    let (mut admin, _) = crate::support::agent::first_admin_at(&base).await;
    let mut tenants = Vec::new();
    for name in ["quiet", "hostile-1", "hostile-2", "hostile-3"] {
        let (status, org) = admin.post("/api/orgs", json!({"name": name})).await;
        assert_eq!(status, 201, "{org}");
        let org = org["id"].as_str().unwrap();
        tenants.push(admin.create_ready_instance(org, name).await);
    }
    let post = {
        let base = base.clone();
        move |token: String, (content_type, gzipped, body): (&'static str, bool, Vec<u8>)| {
            let base = base.clone();
            async move {
                let mut request = reqwest::Client::new()
                    .post(format!("{base}/api/report"))
                    .header("authorization", format!("Scope-Probe token={token}"))
                    .header("content-type", content_type)
                    .header("x-scope-probe-id", "probe")
                    .body(body);
                if gzipped {
                    request = request.header("content-encoding", "gzip");
                }
                request
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        }
    };
    let quiet = tenants[0].clone();
    let real = (
        "application/msgpack",
        true,
        crate::reports::fixture("probe-full-4.msgpack.gz"),
    );
    assert_eq!(post(quiet.1.clone(), real.clone()).await, 200);
    let idle_rss = rss_mib(server.pid());

    // Made before the attack, so that it runs at the pace the server lets it.
    let bodies = std::sync::Arc::new(
        tokio::task::spawn_blocking(|| {
            let corpus = fuzz_corpus();
            (0..48)
                .map(|n| hostile_body(n, &corpus))
                .chain(corpus.iter().cloned())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap(),
    );
    let run = Duration::from_secs(12);
    let started = Instant::now();
    let mut attackers = Vec::new();
    for (k, (_, token)) in tenants[1..].iter().cloned().enumerate() {
        let post = post.clone();
        let bodies = bodies.clone();
        attackers.push(tokio::spawn(async move {
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            let mut n = k;
            while started.elapsed() < run {
                let status = post(token.clone(), bodies[n % bodies.len()].clone()).await;
                *statuses.entry(status).or_default() += 1;
                n += 3;
            }
            statuses
        }));
    }
    // A hostile tenant's own maps are read too: what its reports decode to is rendered, within
    // the render budget (200, or 503 when a render is stopped), never a server error.
    let hostile_reads = {
        let base = base.clone();
        let hostile = tenants[1].0.clone();
        tokio::spawn(async move {
            let mut reader = crate::support::agent::Agent::for_url(&base);
            let (status, _) = reader
                .login(
                    crate::support::agent::ADMIN,
                    crate::support::agent::PASSWORD,
                )
                .await;
            assert_eq!(status, 200);
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            for view in ["processes", "containers", "hosts", "pods"].iter().cycle() {
                if started.elapsed() >= run {
                    break;
                }
                let (status, _) = reader
                    .get(&format!("/api/app/{hostile}/api/topology/{view}"))
                    .await;
                *statuses.entry(status).or_default() += 1;
            }
            statuses
        })
    };
    // The quiet tenant: a report a second, and its map read over and over.
    let mut latencies = Vec::new();
    let mut peak_rss = idle_rss;
    let mut last_report = Instant::now();
    let path = format!("/api/app/{}/api/topology/processes", quiet.0);
    while started.elapsed() < run {
        if last_report.elapsed() > Duration::from_secs(1) {
            assert_eq!(
                post(quiet.1.clone(), real.clone()).await,
                200,
                "the quiet probe was refused"
            );
            last_report = Instant::now();
        }
        let asked = Instant::now();
        let (status, body) = admin.get(&path).await;
        latencies.push(asked.elapsed());
        assert_eq!(status, 200, "{body}");
        assert!(
            body["nodes"].as_object().is_some_and(|n| !n.is_empty()),
            "{body}"
        );
        peak_rss = peak_rss.max(rss_mib(server.pid()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut refused = std::collections::BTreeMap::<u16, usize>::new();
    for attacker in attackers {
        for (status, count) in attacker.await.unwrap() {
            *refused.entry(status).or_default() += count;
        }
    }
    let hostile_reads = hostile_reads.await.unwrap();
    assert!(
        hostile_reads.keys().all(|s| [200, 503].contains(s)),
        "a hostile tenant's map: {hostile_reads:?}\n{}",
        server.stderr()
    );
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "hostile load: {} reads, p50 {:?}, p99 {:?}, max {:?}; hostile posts by status {refused:?}; \
         hostile maps read by status {hostile_reads:?}; RSS idle {idle_rss:.0} MiB, peak {peak_rss:.0} MiB",
        latencies.len(),
        at(0.5),
        at(0.99),
        latencies[latencies.len() - 1]
    );
    assert!(
        refused.keys().all(|s| (200..500).contains(s)),
        "a hostile report got a server error: {refused:?}\n{}",
        server.stderr()
    );
    assert!(
        refused.contains_key(&413),
        "the decode limits never engaged: {refused:?}"
    );
    // The reads never waited on the attack: far under the 30 s request timeout.
    assert!(
        at(1.0 - f64::EPSILON) < Duration::from_secs(5),
        "slowest read {:?}",
        latencies.last()
    );
    // Memory: the windows' budget (48 MiB) and two reports decoding at once (64 MiB of decoded
    // values each, at most), over the idle process, with room for the allocator.
    let budget = idle_rss + 48.0 + 2.0 * 64.0 + 64.0;
    assert!(
        peak_rss < budget,
        "peak RSS {peak_rss:.0} MiB over {budget:.0} MiB"
    );
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

#[tokio::test]
async fn a_render_past_its_budget_is_stopped_with_503() {
    let options = AppOptions {
        render_budget: Some(std::time::Duration::ZERO),
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let (mut alice, id, token) = ready_instance(&app).await;
    for host in 0..3 {
        let report = scopehub::probe::loadgen::synthetic_report(
            host,
            3,
            &scopehub::probe::loadgen::Shape::medium(),
            scopehub::collector::report::Time(1_800_000_000_000_000_000),
        );
        let body = scopehub::probe::encode(&report, false).unwrap().0;
        let (status, _) = post_report(
            &app,
            &token,
            &format!("host-{host}"),
            body,
            "application/msgpack",
            true,
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, body) = alice
        .get(&format!("/api/app/{id}/api/topology/processes"))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(message(&body).contains("was stopped"), "{body}");
}
