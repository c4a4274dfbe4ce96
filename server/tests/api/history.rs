//! History (time travel): every read at `?timestamp=` shows the map as it was from kept reports;
//! the timeline, changes between moments, retention and quotas set by site admins, purge with a
//! deleted instance; the store a folder or a real S3-compatible server; `kill -9` while writing.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::reports::ready_instance;
use crate::support::agent::{ADMIN, Agent, PASSWORD};
use crate::support::{Backend, TestApp, both};
use crate::topology::post_msgpack;

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A view's nodes as the map draws them: id, label and edges.
fn drawn(answer: &Value) -> BTreeSet<(String, String, String)> {
    answer["nodes"]
        .as_object()
        .unwrap_or_else(|| panic!("no nodes in {answer}"))
        .values()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_owned(),
                n["label"].as_str().unwrap_or("").to_owned(),
                n["adjacency"].to_string(),
            )
        })
        .collect()
}

const VIEWS: [&str; 2] = ["hosts", "processes"];

async fn a_past_moment_shows_the_map_as_it_was(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let (mut alice, id, token) = ready_instance(&app).await;
    let base = format!("/api/app/{id}/api");
    let (_, details) = alice.get(&base).await;
    assert_eq!(details["capabilities"]["historic_reports"], true);

    // The map while the probe reports…
    let reported = app.clock.now();
    for name in ["probe-full-1", "probe-delta-2", "probe-delta-3"] {
        post_msgpack(&app, &token, name).await;
    }
    let mut live = Vec::new();
    for view in VIEWS {
        let (status, answer) = alice.get(&format!("{base}/topology/{view}")).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer.get("history").is_none(), "{answer}");
        live.push(drawn(&answer));
    }
    assert!(live.iter().all(|nodes| !nodes.is_empty()));
    let (_, live_list) = alice.get(&format!("{base}/topology")).await;
    // Written (with the live window's node counts, for the timeline).
    app.shard.flush_history().await;

    // …a minute later the probe is gone and the live map is empty…
    app.clock.advance(60_000);
    let (_, now) = alice.get(&format!("{base}/topology/hosts")).await;
    assert!(drawn(&now).is_empty(), "{now}");

    // …but the moment it reported shows it as it was, for every view, its options and details.
    // Any moment within 15 s after the reports shows them (a moment is whole seconds).
    let moment = rfc3339(reported + 5_000);
    let at = format!("timestamp={moment}");
    for (view, nodes) in VIEWS.iter().zip(&live) {
        let (status, answer) = alice.get(&format!("{base}/topology/{view}?{at}")).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(&drawn(&answer), nodes, "{view} at {moment}");
        assert_eq!(answer["history"]["state"], "kept", "{answer}");
        assert_eq!(answer["history"]["at"], moment.as_str());
    }
    let (status, list) = alice.get(&format!("{base}/topology?{at}")).await;
    assert_eq!(status, 200, "{list}");
    let stats = |list: &Value| -> Vec<Value> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|t| t["stats"].clone())
            .collect()
    };
    assert_eq!(stats(&list), stats(&live_list));
    let host = live[0].iter().next().unwrap().0.clone();
    let path = format!("{base}/topology/hosts/{}?{at}", urlencode(&host));
    let (status, node) = alice.get(&path).await;
    assert_eq!(status, 200, "{node}");
    assert_eq!(node["node"]["id"], host.as_str());
    let (status, report) = alice.get(&format!("{base}/report?{at}")).await;
    assert_eq!(status, 200);
    assert!(
        report["Host"]["nodes"]
            .as_object()
            .unwrap()
            .contains_key(&host)
    );
    // The same moment again comes from the cache: the same answer.
    let (_, again) = alice.get(&format!("{base}/topology/processes?{at}")).await;
    assert_eq!(drawn(&again), live[1]);

    // Before the history kept: an empty map that says so, not an error.
    let before = format!("timestamp={}", rfc3339(reported - 3_600_000));
    let (status, empty) = alice.get(&format!("{base}/topology/hosts?{before}")).await;
    assert_eq!(status, 200, "{empty}");
    assert!(drawn(&empty).is_empty());
    assert_eq!(empty["history"]["state"], "before-history");
    assert!(empty["history"]["kept_from"].is_string(), "{empty}");
    // Within it, with no probe reporting then: empty too, a gap.
    let gap = format!("timestamp={}", rfc3339(reported + 40_000));
    let (_, empty) = alice.get(&format!("{base}/topology/hosts?{gap}")).await;
    assert_eq!(empty["history"]["state"], "gap", "{empty}");
    for bad in ["yesterday", "2026-13-45T00:00:00Z", ""] {
        let (status, error) = alice
            .get(&format!("{base}/topology/hosts?timestamp={bad}"))
            .await;
        assert_eq!(status, 400, "{bad}: {error}");
    }

    // What changed: everything appeared since before history, and vanishes after the window.
    let changes = format!(
        "{base}/topology/processes/changes?from={}&to={moment}",
        rfc3339(reported - 3_600_000)
    );
    let (status, changed) = alice.get(&changes).await;
    assert_eq!(status, 200, "{changed}");
    let ids = |list: &Value| -> BTreeSet<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let process_ids: BTreeSet<String> = live[1].iter().map(|n| n.0.clone()).collect();
    assert_eq!(ids(&changed["appeared"]), process_ids);
    assert!(changed["vanished"].as_array().unwrap().is_empty());
    let edges: usize = live[1]
        .iter()
        .map(|n| serde_json::from_str::<Value>(&n.2).unwrap())
        .map(|a| a.as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(changed["edges_appeared"].as_array().unwrap().len(), edges);
    let (_, gone) = alice
        .get(&format!(
            "{base}/topology/processes/changes?from={moment}&to={}",
            rfc3339(app.clock.now())
        ))
        .await;
    assert_eq!(ids(&gone["vanished"]), process_ids);
    assert_eq!(gone["edges_vanished"].as_array().unwrap().len(), edges);
    let (status, _) = alice
        .get(&format!("{base}/topology/processes/changes?from={moment}"))
        .await;
    assert_eq!(status, 400);

    // The timeline: the span kept, and node counts while it was written.
    let (status, timeline) = alice
        .get(&format!(
            "{base}/history?from={}&to={}",
            reported - 60_000,
            app.clock.now()
        ))
        .await;
    assert_eq!(status, 200, "{timeline}");
    assert!(timeline["kept_bytes"].as_u64().unwrap() > 0);
    let near = |v: &Value| {
        v.as_i64()
            .is_some_and(|t| (reported..reported + 5_000).contains(&t))
    };
    assert!(near(&timeline["kept_from"]), "{timeline}");
    let points = timeline["points"].as_array().unwrap();
    assert!(!points.is_empty(), "{timeline}");
    assert_eq!(points[0]["counts"]["Host"], 1, "{timeline}");
    assert_eq!(points[0]["counts"]["Process"], live[1].len(), "{timeline}");
    // Ranges at the ends of the numbers are refused, not overflowed.
    for range in [
        format!("from={}&to=0", i64::MIN),
        format!("to={}", i64::MIN),
        format!("from={}&to={}", i64::MIN, i64::MAX),
    ] {
        let (status, body) = alice.get(&format!("{base}/history?{range}")).await;
        assert_eq!(status, 400, "{range}: {body}");
    }
    // The instance page shows what is kept.
    let (_, page) = alice.get(&format!("/api/instances/{id}")).await;
    let kept = &page["usage"]["history"];
    assert!(near(&kept["from"]), "{page}");
    assert_eq!(kept["retention_days"], 7);
    assert!(kept["bytes"].as_u64().unwrap() > 0);

    // Another tenant reads none of it.
    let mut bob = Agent::new(&app);
    bob.login(ADMIN, PASSWORD).await;
    let (status, _) = bob.get(&format!("{base}/topology/hosts?{at}")).await;
    assert!(status == 403 || status == 404, "{status}");
    let (status, _) = bob.get(&format!("{base}/history")).await;
    assert!(status == 403 || status == 404, "{status}");
}
both!(a_past_moment_shows_the_map_as_it_was);

/// Scope's Go fixture (containers, images, pods) as a JSON report.
async fn post_go_fixture(app: &TestApp, token: &str) {
    let report = crate::reports::fixture("fixture-report.json");
    let (status, _) =
        crate::reports::post_report(app, token, "probe", report, "application/json", false).await;
    assert_eq!(status, 200);
}

/// The timeline counts what each view shows with its options' defaults (as the topology list
/// does), counted by the collector's own history task before it writes a batch.
#[tokio::test]
async fn the_timeline_counts_each_view_as_the_map_shows_it() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (mut alice, id, token) = ready_instance(&app).await;
    let base = format!("/api/app/{id}/api");
    let from = app.clock.now();
    post_go_fixture(&app, &token).await;
    // The history task writes a batch each second, its views counted first (nobody has read
    // the topology list: the task renders it). The same report again each time: the window's
    // nodes stay the same.
    let point = last_point_once(&app, &token, &alice, &base, from, "views counted", |last| {
        last["views"].as_object().is_some_and(|v| !v.is_empty())
    })
    .await;
    // What the web app asks for, every option at its default, counts the same.
    let (status, list) = alice.get(&format!("{base}/topology?t=2s")).await;
    assert_eq!(status, 200, "{list}");
    // (That read may have rendered the list again — the window changed with the last report —
    // and a reader's list counts like the task's.)
    let listed = app.clock.now();
    let mut shown = serde_json::Map::new();
    for t in list.as_array().unwrap() {
        for v in std::iter::once(t).chain(t["sub_topologies"].as_array().into_iter().flatten()) {
            let id = v["url"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned();
            shown.insert(id, v["stats"]["node_count"].clone());
        }
    }
    assert!(shown.len() > 10, "{list}");
    assert_eq!(point["views"], Value::Object(shown), "{list}");
    // The report topologies' counts, as before, beside the views': the containers view shows
    // the report's three containers and a pseudo node, grouped by image they are fewer.
    assert_eq!(point["counts"]["Container"], 3, "{point}");
    assert_eq!(point["views"]["containers"], 4, "{point}");
    assert_eq!(point["views"]["containers-by-image"], 3, "{point}");
    // With when they were counted: the views are counted less often than batches are written
    // (once a minute here)…
    let counted = point["views_at"].as_i64();
    assert!(
        counted.is_some_and(|c| (from..=app.clock.now()).contains(&c)),
        "{point}"
    );
    let renders = || async {
        let text = app.client.get(app.at("/metrics")).send().await.unwrap();
        crate::support::metric(
            &text.text().await.unwrap(),
            "scopehub_collector_renders_total",
        )
    };
    let before = renders().await;
    let path = |from: i64| format!("{base}/history?from={from}&to={}", app.clock.now() + 1);
    for _ in 0..6 {
        post_go_fixture(&app, &token).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_, timeline) = alice.get(&path(from)).await;
    let points = timeline["points"].as_array().unwrap();
    let later = points.last().unwrap();
    assert!(later["at"].as_i64() > point["at"].as_i64(), "{timeline}");
    assert_eq!(later["views"], point["views"], "{timeline}");
    let counted = later["views_at"].as_i64().unwrap();
    assert!(
        (point["views_at"].as_i64().unwrap()..=listed).contains(&counted),
        "{timeline}"
    );
    assert_eq!(renders().await, before, "nobody read, nothing rendered");
    // …and again once that minute is past.
    app.clock.advance(61_000);
    let since = app.clock.now();
    last_point_once(
        &app,
        &token,
        &alice,
        &base,
        since,
        "views counted again",
        |last| last["views_at"].as_i64().is_some_and(|t| t >= since),
    )
    .await;
    assert!(renders().await > before);
}

/// Posts the Go fixture (every 300 ms) until the last point of the timeline from `from` is
/// `wanted`; that point.
async fn last_point_once(
    app: &TestApp,
    token: &str,
    alice: &Agent,
    base: &str,
    from: i64,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    crate::support::eventually(Duration::from_secs(30), what, || {
        let mut alice = alice.clone();
        let path = format!("{base}/history?from={from}&to={}", app.clock.now() + 1);
        let wanted = &wanted;
        async move {
            post_go_fixture(app, token).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (_, timeline) = alice.get(&path).await;
            let last = timeline["points"].as_array()?.last()?.clone();
            wanted(&last).then_some(last)
        }
    })
    .await
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Site admins set an instance's retention and quota; the collector deletes what is beyond them,
/// and nothing of other instances; a deleted instance's history is purged with it.
async fn retention_is_set_by_site_admins_and_enforced(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let (mut alice, id, token) = ready_instance(&app).await;
    let org = {
        let (_, page) = alice.get(&format!("/api/instances/{id}")).await;
        page["instance"]["org_id"].as_str().unwrap().to_owned()
    };
    let (status, other) = alice
        .post("/api/instances", json!({"org_id": org, "name": "staging"}))
        .await;
    assert_eq!(status, 201);
    let other_id = other["instance"]["id"].as_str().unwrap().to_owned();
    let other_token = other["probe_token"].as_str().unwrap().to_owned();
    crate::support::eventually(Duration::from_secs(30), "the second instance", || {
        let mut alice = alice.clone();
        let path = format!("/api/instances/{other_id}");
        async move { (alice.get(&path).await.1["instance"]["state"] == "ready").then_some(()) }
    })
    .await;
    let reported = app.clock.now();
    post_msgpack(&app, &token, "probe-full-1").await;
    crate::topology::post_msgpack(&app, &other_token, "probe-full-1").await;
    app.shard.flush_history().await;

    // Only site admins, and only sensible values.
    let path = format!("/api/admin/instances/{id}/history");
    let (status, _) = alice.patch(&path, json!({"days": 1})).await;
    assert_eq!(status, 403);
    let mut admin = Agent::new(&app);
    admin.login(ADMIN, PASSWORD).await;
    let (status, error) = admin.patch(&path, json!({"days": 0})).await;
    assert_eq!(status, 422, "{error}");
    assert!(error["fields"]["days"].is_string(), "{error}");
    let (status, error) = admin.patch(&path, json!({"quota_bytes": 10})).await;
    assert_eq!(status, 422, "{error}");
    let (status, info) = admin.patch(&path, json!({"days": 1})).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(
        (
            info["history_days"].as_u64(),
            info["history_quota_bytes"].as_u64()
        ),
        (Some(1), Some(10 << 30))
    );
    let (_, page) = alice.get(&format!("/api/instances/{id}")).await;
    assert!(
        page["events"].to_string().contains("history kept 1 days"),
        "{page}"
    );

    // Two days on, the retention pass deletes the instance's old history, not the other's.
    app.clock.advance(2 * 24 * 3_600_000);
    crate::support::eventually(Duration::from_secs(10), "the shard told", || {
        let shard = app.shard.clone();
        let id = id.clone();
        async move { (shard.with_slot(&id, |s| s.flags.history_days) == Some(1)).then_some(()) }
    })
    .await;
    let history = app.shard.history().unwrap().clone();
    app.shard.enforce_retention(&history).await;
    let at = format!("timestamp={}", rfc3339(reported + 5_000));
    let (_, answer) = alice
        .get(&format!("/api/app/{id}/api/topology/hosts?{at}"))
        .await;
    assert_eq!(answer["history"]["state"], "before-history", "{answer}");
    let (_, answer) = alice
        .get(&format!("/api/app/{other_id}/api/topology/hosts?{at}"))
        .await;
    assert_eq!(answer["history"]["state"], "kept", "{answer}");
    assert_eq!(drawn(&answer).len(), 1);

    // A deleted instance's history goes with it.
    let folder = app.history_dir.path().join("v1").join(&other_id);
    assert!(folder.exists());
    let (status, body) = alice.delete(&format!("/api/instances/{other_id}")).await;
    assert!((200..300).contains(&status), "{status} {body}");
    crate::support::eventually(Duration::from_secs(30), "the history purged", || {
        let folder = folder.clone();
        async move {
            let files = walk(&folder);
            files.is_empty().then_some(())
        }
    })
    .await;
}
both!(retention_is_set_by_site_admins_and_enforced);

/// Every file under `dir` (none if it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// An S3-compatible server (PyPI's `moto` in server mode) on loopback with one bucket, or `None`
/// (with a warning) where it is not installed, unless `REQUIRE_S3=1`.
struct S3Server {
    _process: crate::support::process::KillOnDrop,
    endpoint: String,
}

const BUCKET: &str = "scopehub-history";

async fn s3_server() -> Option<S3Server> {
    let found = std::process::Command::new("moto_server")
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            !crate::support::required("REQUIRE_S3"),
            "REQUIRE_S3=1 but moto_server (pip install 'moto[server]') is not installed"
        );
        crate::support::warn("WARNING: moto_server not installed; skipping the S3 history test");
        return None;
    }
    let port = crate::support::process::free_port();
    let child = std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server");
    let process = crate::support::process::KillOnDrop(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let bucket = format!("{endpoint}/{BUCKET}");
    crate::support::eventually(Duration::from_secs(30), "moto to create the bucket", || {
        let (client, bucket) = (client.clone(), bucket.clone());
        async move {
            let response = client.put(bucket).send().await.ok()?;
            response.status().is_success().then_some(())
        }
    })
    .await;
    Some(S3Server {
        _process: process,
        endpoint,
    })
}

/// `scopehub serve` keeping history at `url` (and the environment `env`), on `db`.
fn serve_keeping(
    data: &std::path::Path,
    listen: &str,
    url: &str,
    env: &[(&str, &str)],
) -> crate::support::process::ServerProcess {
    let db = format!("sqlite://{}/scopehub.db", data.display());
    crate::support::process::ServerProcess::start_with_env(
        "serve",
        listen,
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--database-url",
            &db,
            "--dist-dir",
            "/nonexistent",
            "--history-url",
            url,
            "--history-flush-secs",
            "1",
        ],
        env,
    )
}

/// Reports posted while the server is killed with `kill -9` mid-write: after a restart on the
/// same store, what was written before is read back whole (nothing damaged), at most the last
/// unflushed second is missing, and reporting and history go on.
async fn history_survives_kill_9(url: &str, env: &[(&str, &str)]) {
    let data = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", crate::support::process::free_port());
    let server = serve_keeping(data.path(), &listen, url, env);
    server.wait_ready().await;
    let (mut admin, me) = crate::support::agent::first_admin_at(&server.url).await;
    let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();
    let (id, token) = crate::support::split::Split::ready_instance(&mut admin, &org, "prod").await;
    let body = crate::reports::fixture("probe-full-1.msgpack.gz");
    let sent = chrono::Utc::now().timestamp_millis();
    // When the first report was surely in (its POST answered): a slow first POST (the suite runs
    // tests side by side) must not leave the moments read below before it.
    let mut first = None;
    let mut last_accepted = sent;
    // Five seconds of reports, four a second; killed in the middle of them.
    for i in 0..20 {
        let (status, answer) =
            crate::support::split::post_report(&server.url, &token, "p1", body.clone()).await;
        assert_eq!(status, 200, "{answer}");
        last_accepted = chrono::Utc::now().timestamp_millis();
        first.get_or_insert(last_accepted);
        if i == 14 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    server.signal(libc::SIGKILL);
    drop(server);

    let server = serve_keeping(data.path(), &listen, url, env);
    server.wait_ready().await;
    admin.base = server.url.clone();
    admin.origin = Some(server.url.clone());
    let base = format!("/api/app/{id}/api");
    // History is read before the restarted server has placed the instance again.
    // Kept up to a second before the kill at the latest (one flush a second).
    let (status, timeline) = admin
        .get(&format!("{base}/history?from={}", sent - 60_000))
        .await;
    assert_eq!(status, 200, "{timeline}");
    let first = first.unwrap_or(sent);
    assert!(
        timeline["kept_from"].as_i64().unwrap() >= sent
            && timeline["kept_to"].as_i64().unwrap() >= last_accepted - 2_500,
        "{timeline} (reports from {sent} to {last_accepted})"
    );
    // (Moments are whole seconds: 1.5 s after `first` is at least half a second after the first
    // report was accepted.) A moment within the last second is the live window, which the
    // restarted server has not filled again: wait until the later moment is surely past (a
    // quick restart reads it about 4 s after `first`).
    let past = first + 3_000 + 2_000; // the live second (`LIVE_WITHIN_MS`) and one more
    let wait = past - chrono::Utc::now().timestamp_millis();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    for offset in [1_500, 3_000] {
        let at = rfc3339(first + offset);
        let (status, answer) = admin
            .get(&format!("{base}/topology/hosts?timestamp={at}"))
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["history"]["state"], "kept", "{at}: {answer}");
        assert_eq!(drawn(&answer).len(), 1, "{at}: {answer}");
    }
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        crate::support::metric(
            &metrics,
            "scopehub_history_reports_total{outcome=\"damaged\"}"
        ),
        0.0,
        "{metrics}"
    );
    // History goes on after the restart.
    crate::support::eventually(Duration::from_secs(30), "a report accepted again", || {
        let (url, token, body) = (server.url.clone(), token.clone(), body.clone());
        async move {
            let (status, _) = crate::support::split::post_report(&url, &token, "p1", body).await;
            (status == 200).then_some(())
        }
    })
    .await;
    crate::support::eventually(Duration::from_secs(10), "the new report written", || {
        let url = format!("{}/metrics", server.url);
        async move {
            let text = reqwest::get(url).await.ok()?.text().await.ok()?;
            (crate::support::metric(&text, "scopehub_history_reports_total{outcome=\"stored\"}")
                >= 1.0)
                .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_folder_of_history_survives_kill_9() {
    let folder = tempfile::tempdir().unwrap();
    history_survives_kill_9(folder.path().to_str().unwrap(), &[]).await;
    // Every object in the folder is a whole batch (a write in flight leaves at most a staging
    // file, which is never read).
    for file in walk(folder.path()) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".batch") {
            let bytes = std::fs::read(&file).unwrap();
            assert_eq!(&bytes[..4], b"SHH1", "{name}");
        } else {
            assert!(name.contains('#'), "unexpected file {}", file.display());
        }
    }
}

#[tokio::test]
async fn an_s3_bucket_of_history_survives_kill_9() {
    let Some(s3) = s3_server().await else {
        return;
    };
    let env = [
        ("AWS_ENDPOINT", s3.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    history_survives_kill_9(&format!("s3://{BUCKET}/tests"), &env).await;
    // The objects are in the bucket, under the prefix.
    let listing = reqwest::get(format!(
        "{}/{BUCKET}?list-type=2&prefix=tests/v1/",
        s3.endpoint
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(listing.contains(".batch</Key>"), "{listing}");
}

async fn wait_count(browser: &crate::support::webdriver::Browser, css: &str, n: u64) {
    crate::support::eventually(Duration::from_secs(20), css, || async move {
        (crate::map::count(browser, css).await as u64 == n).then_some(())
    })
    .await;
}

/// Sets a form control's value as a user's input would and lets the page hear of it.
async fn set_control(browser: &crate::support::webdriver::Browser, css: &str, value: &str) {
    browser
        .execute(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
             e.dispatchEvent(new Event('input', {bubbles: true})); \
             e.dispatchEvent(new Event('change', {bubbles: true}));",
            vec![json!(css), json!(value)],
        )
        .await;
}

/// The timeline in the browser: a shared link to a moment shows the map as it was, "changes
/// since" marks what appeared and (as ghosts) what vanished, the slider moves to another moment
/// (nodes glide there), and "Live" goes back.
#[tokio::test]
async fn the_timeline_travels_in_time_in_the_browser() {
    let Some(dist) = crate::browser::prerequisites() else {
        return;
    };
    let (server, _data) = crate::browser::serve_app(&dist, &["--history-flush-secs", "1"]).await;
    let base = server.url.clone();
    let (mut agent, me) = crate::support::agent::first_admin_at(&base).await;
    let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();
    let (id, token) = agent.create_ready_instance(&org, "travel").await;
    let browser = crate::support::webdriver::Browser::start().await;
    crate::journey::log_in_at(&browser, &format!("{base}/login"), ADMIN).await;
    browser.wait_for_url(|u| !u.contains("/login")).await;

    // Two hosts report for a few seconds, then stop.
    let mut load = crate::support::process::KillOnDrop(
        crate::support::process::binary()
            .args(["loadgen", "--url", &base, "--token", &token])
            .args(["--hosts", "2", "--containers", "1", "--connections", "1"])
            .args(["--interval", "1", "--duration", "300"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("scopehub loadgen"),
    );
    browser
        .goto(&format!("{base}/instances/{id}/map?view=hosts"))
        .await;
    wait_count(&browser, ".graph .node", 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reported = chrono::Utc::now().timestamp_millis() - 1_000;
    load.stop();

    // A link to that moment: the map as it was, said to be history.
    let moment = rfc3339(reported);
    browser
        .goto(&format!("{base}/instances/{id}/map?view=hosts&at={moment}"))
        .await;
    wait_count(&browser, ".graph .node", 2).await;
    browser
        .wait_for_text("#link-status", |t| t == "History")
        .await;
    crate::support::eventually(Duration::from_secs(10), "the moment kept", || async {
        let state = browser
            .execute(
                "return document.getElementById('timeline').dataset.state;",
                vec![],
            )
            .await;
        (state == "kept").then_some(())
    })
    .await;
    crate::support::eventually(Duration::from_secs(10), "the sparkline", || async {
        let points = browser
            .execute(
                "return document.getElementById('timeline-sparkline').dataset.points;",
                vec![],
            )
            .await;
        (points.as_str().is_some_and(|p| p != "0")).then_some(())
    })
    .await;
    // It draws the view's counts as the collector counted what the map showed: grouped by
    // image, the two hosts' containers are one node (their report topology has two images).
    browser
        .goto(&format!(
            "{base}/instances/{id}/map?view=containers-by-image&at={moment}"
        ))
        .await;
    crate::support::eventually(Duration::from_secs(15), "the view's counts drawn", || {
        let (browser, mut agent) = (&browser, agent.clone());
        let path = format!("/api/app/{id}/api/history");
        async move {
            let (_, timeline) = agent.get(&path).await;
            let most = timeline["points"]
                .as_array()?
                .iter()
                .filter_map(|p| p["views"]["containers-by-image"].as_u64())
                .max()?;
            let drawn = browser
                .execute(
                    "return document.getElementById('timeline-sparkline').dataset.most;",
                    vec![],
                )
                .await;
            (most == 1 && drawn.as_str() == Some("1")).then_some(())
        }
    })
    .await;
    browser
        .goto(&format!("{base}/instances/{id}/map?view=hosts&at={moment}"))
        .await;
    wait_count(&browser, ".graph .node", 2).await;

    // Changes since 15 s before: nothing was there, so both hosts appeared.
    set_control(&browser, "#timeline-compare", "15000").await;
    wait_count(&browser, ".graph .node.appeared", 2).await;
    browser
        .wait_for_text("#changes-summary", |t| t.contains("+2 nodes"))
        .await;

    // Later, once the reports left the window: dragged there, both hosts vanished (drawn as ghosts),
    // and the nodes glide between moments.
    // A whole second: the slider's steps.
    let later = (reported + 20_000) / 1_000 * 1_000;
    let wait = later + 2_500 - chrono::Utc::now().timestamp_millis();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    set_control(&browser, "#timeline-slider", &later.to_string()).await;
    let later_at = rfc3339(later);
    browser
        .wait_for_url(|u| u.contains(&format!("at={}", later_at.replace(':', "%3A"))))
        .await;
    wait_count(&browser, ".graph .node.vanished", 2).await;
    assert_eq!(
        crate::map::count(&browser, ".graph-canvas.animated").await,
        1
    );
    browser
        .wait_for_text("#changes-summary", |t| t.contains("−2 nodes"))
        .await;

    // Back to live: the URL forgets the moment and the map streams again.
    browser.click_css("#timeline-live").await;
    browser.wait_for_url(|u| !u.contains("at=")).await;
    browser
        .wait_for_text("#link-status", |t| t != "History")
        .await;
    wait_count(&browser, ".graph .node.vanished", 0).await;

    // The instance page shows the history kept.
    browser.goto(&format!("{base}/instances/{id}")).await;
    browser
        .wait_for_text("#history-kept", |t| {
            t.starts_with("Kept from") && t.contains("kept 7 days")
        })
        .await;

    // A site admin keeps it longer from the admin console.
    browser.goto(&format!("{base}/admin?tab=instances")).await;
    browser.wait_for(".history-policy input").await;
    set_control(&browser, ".history-policy input", "30").await;
    browser.click_css(".history-policy button").await;
    crate::support::eventually(Duration::from_secs(10), "the retention saved", || {
        let mut agent = agent.clone();
        let path = format!("/api/instances/{id}");
        async move {
            let (_, page) = agent.get(&path).await;
            (page["instance"]["history_days"] == 30).then_some(())
        }
    })
    .await;
    browser.quit().await;
}
