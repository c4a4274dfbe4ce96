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
