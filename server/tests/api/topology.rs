//! Scope's browser API over HTTP and websocket: the topology list, views, node details and live
//! diffs, with tenant isolation between instances.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::reports::{fixture, post_report, ready_instance};
use crate::support::agent::{Agent, approved_user};
use crate::support::{AppOptions, Backend, TestApp, both};

const PROBE: &str = "71c372b17f588646";

pub(crate) async fn post_msgpack(app: &TestApp, token: &str, name: &str) {
    let (status, body) = post_report(
        app,
        token,
        PROBE,
        fixture(&format!("{name}.msgpack.gz")),
        "application/msgpack",
        true,
    )
    .await;
    assert_eq!(status, 200, "{name}: {body}");
}

fn node_ids(answer: &Value) -> Vec<String> {
    answer["nodes"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

async fn members_read_views_and_node_details(b: Backend) {
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
        post_msgpack(&app, &token, name).await;
    }
    let base = format!("/api/app/{id}/api");

    // Scope UI's first call: the app's details.
    let (status, details) = alice.get(&base).await;
    assert_eq!(status, 200, "{details}");
    assert_eq!(details["id"], id.as_str());
    assert_eq!(details["capabilities"]["historic_reports"], true);
    assert!(details["version"].is_string() && details["hostname"].is_string());

    let (status, list) = alice.get(&format!("{base}/topology")).await;
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Containers",
            "Hosts",
            "Pods",
            "Processes",
            "Services",
            "Tasks"
        ]
    );
    // As Scope: `null` options for a topology that has none.
    let hosts = &list[1];
    assert_eq!(hosts["options"], Value::Null, "{hosts}");
    assert!(list[0]["options"].is_array());
    let processes = &list[3];
    assert_eq!(processes["url"], "/api/topology/processes");
    assert_eq!(processes["stats"]["node_count"], 9);
    assert_eq!(processes["sub_topologies"][0]["name"], "by name");
    assert_eq!(list[1]["stats"]["node_count"], 1);

    let (status, procs) = alice.get(&format!("{base}/topology/processes")).await;
    assert_eq!(status, 200);
    assert_eq!(node_ids(&procs).len(), 9);
    let webapp = &procs["nodes"]["scope-fixture-host;6"];
    assert_eq!(webapp["label"], "webapp");
    assert_eq!(
        webapp["adjacency"],
        json!(["scope-fixture-host;3", "scope-fixture-host;4"])
    );
    assert_eq!(webapp["metrics"][0]["samples"], Value::Null);
    // Any parameter switches the option defaults on: unconnected processes are hidden.
    let (_, connected) = alice
        .get(&format!("{base}/topology/processes?unconnected=hide"))
        .await;
    assert_eq!(node_ids(&connected).len(), 6);

    // A view shows a metric's last value; the merge views share keeps no more of its samples,
    // but node details draw every sample of the window: the four reports' 11 host load samples.
    let (status, hosts) = alice.get(&format!("{base}/topology/hosts")).await;
    assert_eq!(status, 200, "{hosts}");
    let load = |metrics: &Value| {
        metrics
            .as_array()
            .and_then(|m| m.iter().find(|m| m["id"] == "load1"))
            .cloned()
            .unwrap_or_else(|| panic!("no load1 in {metrics}"))
    };
    let summary = load(&hosts["nodes"]["scope-fixture-host;<host>"]["metrics"]);
    assert_eq!(summary["samples"], Value::Null);

    // Node ids are percent-encoded path segments.
    let (status, host) = alice
        .get(&format!(
            "{base}/topology/hosts/scope-fixture-host%3B%3Chost%3E"
        ))
        .await;
    assert_eq!(status, 200, "{host}");
    let node = &host["node"];
    assert_eq!(node["label"], "scope-fixture-host");
    assert!(
        node["metrics"][0]["samples"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "details keep samples: {}",
        node["metrics"]
    );
    let detailed = load(&node["metrics"]);
    let samples = detailed["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 11, "{detailed}");
    let dates: Vec<&str> = samples
        .iter()
        .map(|s| s["date"].as_str().unwrap())
        .collect();
    assert!(dates.is_sorted(), "{dates:?}");
    let last = samples[10]["value"].as_f64().unwrap();
    assert_eq!(summary["value"], detailed["value"]);
    assert_eq!(
        summary["value"].as_f64(),
        Some((last * 100.0).trunc() / 100.0)
    );
    assert_eq!(node["children"][0]["label"], "Processes");
    assert_eq!(node["children"][0]["nodes"].as_array().unwrap().len(), 9);
    assert_eq!(node["connections"][0]["id"], "incoming-connections");
    // The host offers the control its probe declared (controls themselves come later).
    assert_eq!(node["controls"][0]["id"], "host_exec");
    assert_eq!(node["controls"][0]["human"], "Exec shell");
    assert_eq!(node["controls"][0]["probeId"], PROBE);

    let (status, details) = alice
        .get(&format!("{base}/topology/processes/scope-fixture-host%3B6"))
        .await;
    assert_eq!(status, 200);
    let inbound = &details["node"]["connections"][0]["connections"];
    assert_eq!(inbound[0]["nodeId"], "scope-fixture-host;15");
    assert_eq!(inbound[0]["metadata"][1]["value"], "3");

    // The Go fixture as JSON: an image id with a slash, and a pod view.
    let (status, _) = post_report(
        &app,
        &token,
        PROBE,
        fixture("fixture-report.json"),
        "application/json",
        false,
    )
    .await;
    assert_eq!(status, 200);
    let (status, image) = alice
        .get(&format!(
            "{base}/topology/containers-by-image/image%2Fserver%3B%3Ccontainer_image%3E"
        ))
        .await;
    assert_eq!(status, 200, "{image}");
    assert_eq!(image["node"]["label"], "image/server");
    assert_eq!(image["node"]["labelMinor"], "2 containers");
    let (_, pods) = alice.get(&format!("{base}/topology/pods")).await;
    assert_eq!(pods["nodes"]["5d4c3b2a1;<pod>"]["label"], "pong-a");

    // Unknown views and nodes are 404.
    assert_eq!(alice.get(&format!("{base}/topology/nope")).await.0, 404);
    assert_eq!(
        alice
            .get(&format!("{base}/topology/processes/nope"))
            .await
            .0,
        404
    );
}
both!(members_read_views_and_node_details);

#[tokio::test]
async fn instances_are_isolated_from_each_other() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (mut alice, a, token_a) = ready_instance(&app).await;
    let mut admin = Agent::new(&app);
    admin
        .login(
            crate::support::agent::ADMIN,
            crate::support::agent::PASSWORD,
        )
        .await;
    let (mut bob, bob_org) = approved_user(&app, &mut admin, "bob@example.com").await;
    let (status, created) = bob
        .post("/api/instances", json!({"org_id": bob_org, "name": "bobs"}))
        .await;
    assert_eq!(status, 201);
    let b = created["instance"]["id"].as_str().unwrap().to_owned();

    // A's token, with a forged tenant header naming B: the report still lands in A only.
    let response = app
        .client
        .post(app.at("/api/report"))
        .header("authorization", format!("Scope-Probe token={token_a}"))
        .header("content-type", "application/msgpack")
        .header("content-encoding", "gzip")
        .header("x-scope-probe-id", PROBE)
        .header("x-scope-orgid", &b)
        .body(fixture("probe-full-4.msgpack.gz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, a_procs) = alice
        .get(&format!("/api/app/{a}/api/topology/processes"))
        .await;
    assert_eq!(node_ids(&a_procs).len(), 9);
    let (status, b_procs) = bob
        .get(&format!("/api/app/{b}/api/topology/processes"))
        .await;
    assert_eq!(status, 200);
    assert!(node_ids(&b_procs).is_empty());

    // Neither reads the other's instance, by any path; a forged header changes nothing.
    for path in [
        "",
        "/topology",
        "/topology/processes",
        "/topology/processes/scope-fixture-host%3B6",
        "/report",
        "/probes",
    ] {
        assert_eq!(
            bob.get(&format!("/api/app/{a}/api{path}")).await.0,
            404,
            "{path}"
        );
        assert_eq!(
            alice.get(&format!("/api/app/{b}/api{path}")).await.0,
            404,
            "{path}"
        );
    }
    let forged = app
        .client
        .get(app.at(&format!("/api/app/{a}/api/topology/processes")))
        .header(
            "cookie",
            format!("scopehub_session={}", bob.cookie.clone().unwrap()),
        )
        .header("x-scope-orgid", &a)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 404);
    // A probe token is not a browser credential.
    let probe_as_browser = app
        .client
        .get(app.at(&format!("/api/app/{a}/api/topology")))
        .header("authorization", format!("Bearer {token_a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe_as_browser.status(), 401);
}

#[tokio::test]
async fn topologies_too_large_are_refused_whole() {
    let options = AppOptions {
        max_nodes_per_topology: Some(20),
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let (mut alice, id, token) = ready_instance(&app).await;
    // full-1 has 17 endpoints; full-4 has 34, over the limit of 20.
    post_msgpack(&app, &token, "probe-full-1").await;
    let (status, body) = post_report(
        &app,
        &token,
        PROBE,
        fixture("probe-full-4.msgpack.gz"),
        "application/msgpack",
        true,
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "payload_too_large");
    assert!(body["message"].as_str().unwrap().contains("20"));
    // Nothing of the refused report was kept: no process edges exist without full-4.
    let (_, report) = alice.get(&format!("/api/app/{id}/api/report")).await;
    assert_eq!(report["Endpoint"]["nodes"].as_object().unwrap().len(), 17);
}

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame of a map websocket, as JSON (within 10 s).
pub(crate) async fn next_frame(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .expect("socket open")
            .expect("no socket error");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

fn ids_of(frame: &Value, key: &str) -> Vec<String> {
    match &frame[key] {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|n| {
                n.as_str()
                    .map_or_else(|| n["id"].as_str().unwrap().to_owned(), str::to_owned)
            })
            .collect(),
        other => panic!("{key}: {other}"),
    }
}

#[tokio::test]
async fn the_topology_websocket_sends_diffs() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (alice, id, token) = ready_instance(&app).await;
    post_msgpack(&app, &token, "probe-full-1").await;
    let connect = |query: &str| {
        let request = crate::support::browser_ws_request(
            &format!(
                "ws://{}/api/app/{id}/api/topology/processes/ws?{query}",
                app.addr
            ),
            &alice.cookie.clone().unwrap(),
        );
        tokio_tungstenite::connect_async(request)
    };
    let (mut socket, _) = connect("t=200ms&unconnected=show")
        .await
        .expect("handshake");

    // First frame: a reset holding the whole view.
    let first = next_frame(&mut socket).await;
    assert_eq!(first["reset"], true);
    assert_eq!(ids_of(&first, "add").len(), 9);
    assert_eq!(first["update"], Value::Null);
    assert_eq!(first["remove"], Value::Null);
    // Nothing changed: the next frame says so, with all three fields null and no reset.
    let quiet = next_frame(&mut socket).await;
    assert_eq!(quiet, json!({"add": null, "update": null, "remove": null}));

    // full-4 brings connections: the processes that gained edges are updates.
    post_msgpack(&app, &token, "probe-full-4").await;
    let changed = loop {
        let frame = next_frame(&mut socket).await;
        if frame["update"] != Value::Null {
            break frame;
        }
    };
    let updated = ids_of(&changed, "update");
    assert!(
        updated.contains(&"scope-fixture-host;6".to_owned()),
        "{updated:?}"
    );
    let webapp = changed["update"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "scope-fixture-host;6")
        .unwrap();
    assert_eq!(
        webapp["adjacency"],
        json!(["scope-fixture-host;3", "scope-fixture-host;4"])
    );
    assert_eq!(changed["add"], Value::Null);

    // Once the reports leave the 15 s window, every node is removed.
    app.clock.advance(16_000);
    let removed = loop {
        let frame = next_frame(&mut socket).await;
        if frame["remove"] != Value::Null {
            break frame;
        }
    };
    assert_eq!(ids_of(&removed, "remove").len(), 9);
    // Open websockets are a gauge on /metrics (the monitoring page shows it).
    let open = || async {
        metric(
            &app.get("/metrics").await.text().await.unwrap(),
            "scopehub_collector_websockets",
        )
    };
    assert_eq!(open().await, 1);
    socket.close(None).await.ok();
    crate::support::eventually(
        std::time::Duration::from_secs(10),
        "the websocket counted closed",
        || async { (open().await == 0).then_some(()) },
    )
    .await;

    // An invalid tick is refused before the upgrade; so are outsiders.
    let refused = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {:?}", other.map(|_| ())),
    };
    assert_eq!(refused(connect("t=soon").await), 400);
    let anonymous = format!("ws://{}/api/app/{id}/api/topology/processes/ws", app.addr)
        .into_client_request()
        .unwrap();
    assert_eq!(
        refused(tokio_tungstenite::connect_async(anonymous).await),
        401
    );
}

fn metric(text: &str, name: &str) -> u64 {
    crate::support::metric(text, name) as u64
}

#[tokio::test]
async fn one_render_serves_every_reader_until_the_window_changes() {
    use scopehub::collector::history::{HistoryConfig, HistoryLocation};
    // History written (and views counted for its timeline, a render) only at the start: the
    // renders counted here are the readers'.
    let folder = tempfile::tempdir().unwrap();
    let options = AppOptions {
        history: Some(HistoryConfig {
            flush_interval: Duration::from_secs(3600),
            ..HistoryConfig::new(HistoryLocation::Folder(folder.path().to_owned()))
        }),
        // Every render is made by the read that finds the window changed, however long it takes:
        // on a busy machine a render over the default 20 ms would be made again in the
        // background instead, after the count is read.
        render_on_read_ms: Some(i64::from(u32::MAX)),
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let (mut alice, id, token) = ready_instance(&app).await;
    post_msgpack(&app, &token, "probe-full-4").await;
    let counts = || async {
        let text = app
            .client
            .get(app.at("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (
            metric(&text, "scopehub_collector_renders_total"),
            metric(&text, "scopehub_collector_render_cache_hits_total"),
        )
    };
    let (renders, hits) = counts().await;
    let path = format!("/api/app/{id}/api/topology/processes?unconnected=show");
    let (_, first) = alice.get(&path).await;
    for _ in 0..3 {
        assert_eq!(alice.get(&path).await.1, first);
    }
    assert_eq!(counts().await, (renders + 1, hits + 3));
    // Other options are another render; so is the same view after a new report.
    alice
        .get(&format!(
            "/api/app/{id}/api/topology/processes?unconnected=hide"
        ))
        .await;
    assert_eq!(counts().await.0, renders + 2);
    post_msgpack(&app, &token, "probe-full-1").await;
    alice.get(&path).await;
    assert_eq!(counts().await.0, renders + 3);
    // Readers arriving together while it renders wait for that one render.
    let (renders, hits) = counts().await;
    let containers = format!("/api/app/{id}/api/topology/containers");
    let cookie = format!("scopehub_session={}", alice.cookie.clone().unwrap());
    let together = (0..6).map(|_| {
        app.client
            .get(app.at(&containers))
            .header("cookie", &cookie)
            .send()
    });
    for response in futures_util::future::join_all(together).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    assert_eq!(counts().await, (renders + 1, hits + 5));
    // The topology list (every view, for its stats) is kept the same way.
    let (renders, hits) = counts().await;
    let list = format!("/api/app/{id}/api/topology");
    let (status, first) = alice.get(&list).await;
    assert_eq!(status, 200);
    assert_eq!(alice.get(&list).await.1, first);
    assert_eq!(counts().await, (renders + 1, hits + 1));
}

/// A JSON report of one host, as a probe on `host` would send it.
fn host_report(host: &str) -> Vec<u8> {
    let id = format!("{host};<host>");
    serde_json::to_vec(&json!({
        "Host": {"nodes": {id.clone(): {
            "id": id,
            "topology": "host",
            "latest": {"host_name": {"timestamp": "2026-12-01T00:00:00Z", "value": host}},
        }}},
    }))
    .unwrap()
}

#[tokio::test]
async fn a_costly_view_is_served_while_it_is_rendered_again_in_the_background() {
    // Every render counts as costly here, as a large instance's do.
    let options = AppOptions {
        render_on_read_ms: Some(0),
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let (mut alice, id, token) = ready_instance(&app).await;
    let post = |probe: &'static str, host: &'static str| {
        let (app, token) = (&app, &token);
        async move {
            let (status, body) = post_report(
                app,
                token,
                probe,
                host_report(host),
                "application/json",
                false,
            )
            .await;
            assert_eq!(status, 200, "{body}");
        }
    };
    let hosts = format!("/api/app/{id}/api/topology/hosts");
    post("probe-1", "one").await;
    // Nothing rendered yet: the first reader waits for the render.
    let (status, first) = alice.get(&hosts).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(node_ids(&first), ["one;<host>"]);
    // A new report within the second: readers get the last render, and nothing is rendered.
    post("probe-2", "two").await;
    let (_, served) = alice.get(&hosts).await;
    assert_eq!(served, first, "the last render, not a new one");
    // A second on, a reader still gets the last render, and starts a new one in the background…
    app.clock.advance(1_000);
    let (_, served) = alice.get(&hosts).await;
    assert_eq!(served, first);
    // …which the next readers get once it is made.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, now) = alice.get(&hosts).await;
        if node_ids(&now) == ["one;<host>", "two;<host>"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new render never came: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn views_are_sent_gzipped_to_clients_that_take_it() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (alice, id, token) = ready_instance(&app).await;
    post_msgpack(&app, &token, "probe-full-4").await;
    // A client that shows the bytes as they come.
    let raw = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .build()
        .unwrap();
    let cookie = format!("scopehub_session={}", alice.cookie.clone().unwrap());
    for path in ["api/topology/processes", "api/topology"] {
        let get = |encoding: &'static str| {
            raw.get(app.at(&format!("/api/app/{id}/{path}")))
                .header("cookie", &cookie)
                .header("accept-encoding", encoding)
                .send()
        };
        let plain = get("identity").await.unwrap();
        assert_eq!(plain.status(), 200);
        assert!(plain.headers().get("content-encoding").is_none());
        let plain: Value = plain.json().await.unwrap();
        let zipped = get("gzip, br").await.unwrap();
        assert_eq!(zipped.headers()["content-encoding"], "gzip", "{path}");
        assert_eq!(zipped.headers()["vary"], "accept-encoding");
        let bytes = zipped.bytes().await.unwrap();
        let mut json = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut json)
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&json).unwrap(),
            plain,
            "{path}"
        );
    }
}
