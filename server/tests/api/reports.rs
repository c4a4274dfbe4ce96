//! `POST /api/report` with the real probe's reports: formats, the first report, limits, refusals.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use shared::instances::Limits;

use crate::support::agent::{Agent, approved_user, site_admin};
use crate::support::{AppOptions, Backend, TestApp, both};

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/scope")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// An instance that is ready for reports; returns the owner's agent, the instance id and its token.
pub(crate) async fn ready_instance(app: &TestApp) -> (Agent, String, String) {
    let mut admin = site_admin(app).await;
    let (mut alice, org) = approved_user(app, &mut admin, "alice@example.com").await;
    let (status, created) = alice
        .post("/api/instances", json!({"org_id": org, "name": "prod"}))
        .await;
    assert_eq!(status, 201);
    let id = created["instance"]["id"].as_str().unwrap().to_owned();
    let token = created["probe_token"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, details) = alice.get(&format!("/api/instances/{id}")).await;
        if details["instance"]["state"] == "ready" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (alice, id, token)
}

/// Posts a report as the Scope probe does (headers from the fixture's capture).
pub(crate) async fn post_report(
    app: &TestApp,
    token: &str,
    probe: &str,
    body: Vec<u8>,
    content_type: &str,
    gzip: bool,
) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.at("/api/report"))
        .header("authorization", format!("Scope-Probe token={token}"))
        .header("content-type", content_type)
        .header("x-scope-probe-id", probe)
        .header("x-scope-probe-version", "dev")
        .header("user-agent", "Scope_Probe/dev")
        .body(body);
    if gzip {
        request = request.header("content-encoding", "gzip");
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn real_probe_reports_are_accepted_and_activate_the_instance(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let (mut alice, id, token) = ready_instance(&app).await;
    for name in [
        "probe-full-1",
        "probe-delta-2",
        "probe-delta-3",
        "probe-full-4",
    ] {
        let (status, body) = post_report(
            &app,
            &token,
            "71c372b17f588646",
            fixture(&format!("{name}.msgpack.gz")),
            "application/msgpack",
            true,
        )
        .await;
        assert_eq!(status, 200, "{name}: {body}");
    }
    // JSON, plain.
    let (status, _) = post_report(
        &app,
        &token,
        "71c372b17f588646",
        fixture("probe-full-1.json"),
        "application/json",
        false,
    )
    .await;
    assert_eq!(status, 200);

    // The reconciler activates the instance once its shard took a report: woken by the first
    // report, but on its own task, so not necessarily before this request.
    let details = alice.wait_for_instance(&id, "active").await;
    assert_eq!(details["instance"]["state"], "active");
    let last = details["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["to_state"].as_str(), last["detail"].as_str()),
        (Some("active"), Some("first probe report"))
    );
    let usage = &details["usage"];
    assert_eq!(usage["reports_received"], 5);
    assert_eq!(usage["reports_in_window"], 5);
    assert_eq!(usage["probes"][0]["id"], "71c372b17f588646");
    assert_eq!(usage["probes"][0]["hostname"], "scope-fixture-host");
    assert_eq!(usage["probes"][0]["version"], "dev");

    // Refusals change nothing: other content types, unknown encodings, malformed bodies, bad tokens.
    let (status, body) = post_report(&app, &token, "p", b"{}".to_vec(), "text/plain", false).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")));
    let full = fixture("probe-full-1.msgpack.gz");
    let (status, _) = post_report(
        &app,
        &token,
        "p",
        full[..full.len() / 2].to_vec(),
        "application/msgpack",
        true,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post_report(
        &app,
        &token,
        "p",
        b"{\"TS\":".to_vec(),
        "application/json",
        false,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post_report(
        &app,
        "shp_wrong",
        "p",
        fixture("probe-full-1.json"),
        "application/json",
        false,
    )
    .await;
    assert_eq!(status, 401);
    let (_, details) = alice.get(&format!("/api/instances/{id}")).await;
    assert_eq!(details["usage"]["reports_received"], 5);
    assert_eq!(details["usage"]["refused"]["malformed"], 2);

    // The window keeps 15 s of reports.
    app.clock.advance(16_000);
    let (_, details) = alice.get(&format!("/api/instances/{id}")).await;
    assert_eq!(details["usage"]["reports_in_window"], 0);

    // A suspended instance refuses uploads; a deleted one drops its state.
    alice
        .post(
            &format!("/api/instances/{id}/suspend"),
            json!({"reason": "pause"}),
        )
        .await;
    let (status, _) = post_report(
        &app,
        &token,
        "71c372b17f588646",
        fixture("probe-full-1.json"),
        "application/json",
        false,
    )
    .await;
    assert_eq!(status, 403);
    alice
        .post(&format!("/api/instances/{id}/resume"), json!({}))
        .await;
    let (_, details) = alice.get(&format!("/api/instances/{id}")).await;
    assert_eq!(
        details["instance"]["state"], "active",
        "resume returns to active"
    );
    alice.delete(&format!("/api/instances/{id}")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app.shard.limits_of(&id).is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "collector state not dropped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
both!(real_probe_reports_are_accepted_and_activate_the_instance);

#[tokio::test]
async fn limits_answer_413_and_429_and_show_on_the_instance() {
    let limits = Limits {
        max_probes: 1,
        max_report_bytes: 20_000,
        max_reports_per_second: 3,
    };
    let Some(app) = TestApp::spawn_with(
        Backend::Sqlite,
        AppOptions {
            limits: Some(limits),
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let (mut alice, id, token) = ready_instance(&app).await;
    let small = fixture("probe-delta-2.msgpack.gz");

    // Too large after decompression (full-4 inflates to 22 590 bytes), and a gzip bomb.
    let (status, body) = post_report(
        &app,
        &token,
        "a",
        fixture("probe-full-4.msgpack.gz"),
        "application/msgpack",
        true,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut bomb, &vec![b' '; 10 * 1024 * 1024]).unwrap();
    let (status, _) = post_report(
        &app,
        &token,
        "a",
        bomb.finish().unwrap(),
        "application/json",
        true,
    )
    .await;
    assert_eq!(status, 413);

    // Reports per second: the bucket holds 3.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            post_report(
                &app,
                &token,
                "a",
                small.clone(),
                "application/msgpack",
                true,
            )
            .await
            .0,
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // Probes: one at a time.
    app.clock.advance(2_000);
    let (status, body) = post_report(
        &app,
        &token,
        "b",
        small.clone(),
        "application/msgpack",
        true,
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("at most 1 probes")
    );

    let (_, details) = alice.get(&format!("/api/instances/{id}")).await;
    let refused = &details["usage"]["refused"];
    assert_eq!(refused["too_large"], 2);
    assert!(refused["too_many_reports"].as_u64().unwrap() >= 1);
    assert_eq!(refused["too_many_probes"], 1);
}

async fn members_read_the_merged_window_and_the_probes(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let (mut alice, id, token) = ready_instance(&app).await;
    for name in ["probe-full-1", "probe-delta-2", "probe-delta-3"] {
        let (status, _) = post_report(
            &app,
            &token,
            "71c372b17f588646",
            fixture(&format!("{name}.msgpack.gz")),
            "application/msgpack",
            true,
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, report) = alice.get(&format!("/api/app/{id}/api/report")).await;
    assert_eq!(status, 200);
    let processes = report["Process"]["nodes"].as_object().unwrap();
    assert_eq!(processes.len(), 9);
    assert!(
        processes
            .values()
            .all(|n| n["topology"] == "process" && n["id"].is_string())
    );
    assert_eq!(report["TS"], "2026-11-28T06:10:18.062328274Z");
    assert_eq!(
        report["Host"]["nodes"]["scope-fixture-host;<host>"]["latest"]["host_name"]["value"],
        "scope-fixture-host"
    );

    let (status, probes) = alice.get(&format!("/api/app/{id}/api/probes")).await;
    assert_eq!(status, 200);
    assert_eq!(probes[0]["id"], "71c372b17f588646");
    assert_eq!(probes[0]["hostname"], "scope-fixture-host");
    assert!(probes[0]["lastSeen"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        alice
            .get(&format!("/api/app/{id}/api/probes?sparse"))
            .await
            .1,
        json!(true)
    );

    // A read-only API token of a member reads too.
    let (_, me) = alice.get("/api/users/me").await;
    let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();
    let (_, t) = alice
        .post(
            "/api/tokens",
            json!({"org_id": org, "name": "dash", "scope": "read"}),
        )
        .await;
    assert_eq!(
        Agent::with_token(&app, t["token"].as_str().unwrap())
            .get(&format!("/api/app/{id}/api/report"))
            .await
            .0,
        200
    );

    // Outsiders learn nothing; anonymous callers must log in; refused reads are refused.
    let mut admin = Agent::new(&app);
    admin
        .login(
            crate::support::agent::ADMIN,
            crate::support::agent::PASSWORD,
        )
        .await;
    let (mut outsider, _) = approved_user(&app, &mut admin, "outsider@example.com").await;
    assert_eq!(
        outsider.get(&format!("/api/app/{id}/api/report")).await.0,
        404
    );
    assert_eq!(
        outsider.get(&format!("/api/app/{id}/api/probes")).await.0,
        404
    );
    assert_eq!(
        Agent::new(&app)
            .get(&format!("/api/app/{id}/api/report"))
            .await
            .0,
        401
    );
    alice
        .post(
            &format!("/api/instances/{id}/suspend"),
            json!({"reason": "audit", "refuse_reads": true}),
        )
        .await;
    assert_eq!(alice.get(&format!("/api/app/{id}/api/report")).await.0, 403);
}
both!(members_read_the_merged_window_and_the_probes);

#[tokio::test]
async fn the_probe_control_websocket_is_accepted_and_kept_alive() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (_, _, token) = ready_instance(&app).await;
    let connect = |token: &str, probe: Option<&str>| {
        let mut request = format!("ws://{}/api/control/ws", app.addr)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Scope-Probe token={token}").parse().unwrap(),
        );
        if let Some(probe) = probe {
            request
                .headers_mut()
                .insert("x-scope-probe-id", probe.parse().unwrap());
        }
        tokio_tungstenite::connect_async(request)
    };
    let (mut socket, response) = connect(&token, Some("71c372b17f588646"))
        .await
        .expect("handshake");
    assert_eq!(response.status(), 101);
    socket
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply, Message::Pong(b"are you there".to_vec().into()));
    socket.close(None).await.unwrap();

    // Like Scope, the probe id is required; and only a live probe token opens the channel.
    let refused = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {:?}", other.map(|_| ())),
    };
    assert_eq!(refused(connect(&token, None).await), 400);
    assert_eq!(refused(connect("shp_nope", Some("p")).await), 401);
}
