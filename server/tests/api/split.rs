//! The split deployment (`scopehub frontend` in front of every role as its own process, two
//! collector shards): the whole journey through the edge, a shard killed and restarted, identity
//! headers from outside, revocation at the edge.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::reports::fixture;
use crate::support::agent::Agent;
use crate::support::split::{Split, post_report};
use crate::support::{self as support, Backend, TestDb, both, eventually};

/// Instances of `org` until one sits on each shard: (instance, token) per shard.
async fn one_instance_per_shard(
    split: &Split,
    agent: &mut Agent,
    org: &str,
) -> Vec<(String, String)> {
    let mut placed: Vec<Option<(String, String)>> = vec![None, None];
    for n in 0..16 {
        let (id, token) = Split::ready_instance(agent, org, &format!("instance {n}")).await;
        for (shard, slot) in placed.iter_mut().enumerate() {
            if slot.is_none() && split.held_by(shard).await.contains(&id) {
                *slot = Some((id.clone(), token.clone()));
            }
        }
        if placed.iter().all(Option::is_some) {
            return placed.into_iter().map(Option::unwrap).collect();
        }
    }
    panic!("16 instances never covered both shards");
}

async fn first_frame(url: &str, cookie: &str) -> Value {
    let request = crate::support::browser_ws_request(url, cookie);
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket through the edge");
    crate::topology::next_frame(&mut socket).await
}

/// A browser's message over the edge's limit (1 MiB) ends its websocket at the edge: it is never
/// buffered whole or relayed to the shard.
async fn an_oversized_message_ends_the_websocket(url: &str, cookie: &str) {
    use futures_util::{SinkExt, StreamExt};
    let request = crate::support::browser_ws_request(url, cookie);
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket through the edge");
    crate::topology::next_frame(&mut socket).await;
    let _ = socket.send(Message::text("x".repeat(2 << 20))).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => panic!("the websocket stayed open after a 2 MiB message"),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// A collector folds reports on its background threads, which run at a lower priority than the
/// threads serving requests (`collector::background`): reads come first on a busy machine.
fn the_report_was_folded_below_the_serving_threads(pid: i32) {
    // Each thread's name and nice (the 17th field after the name in its stat line).
    let threads: Vec<(String, i32)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| {
            let task = task.ok()?.path();
            let name = std::fs::read_to_string(task.join("comm")).ok()?;
            let stat = std::fs::read_to_string(task.join("stat")).ok()?;
            let nice = stat.rsplit_once(") ")?.1.split_whitespace().nth(16)?;
            Some((name.trim().to_owned(), nice.parse().ok()?))
        })
        .collect();
    let nice_of = |name: &str| -> Vec<i32> {
        threads
            .iter()
            .filter(|t| t.0 == name)
            .map(|t| t.1)
            .collect()
    };
    let (serving, background) = (nice_of("tokio-rt-worker"), nice_of("background"));
    assert!(!serving.is_empty() && !background.is_empty(), "{threads:?}");
    let lowest_serving = serving.iter().max().unwrap();
    assert!(
        background
            .iter()
            .all(|nice| nice >= &(lowest_serving + 10).min(19)),
        "{threads:?}"
    );
}

async fn the_whole_journey_goes_through_the_edge_to_two_shards(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let split = Split::start(db.url.as_str()).await;
    let base = split.url();
    let mut admin = split.site_admin("admin@example.com").await;
    let (mut alice, org) = split.customer(&mut admin, "alice@example.com").await;
    let placed = one_instance_per_shard(&split, &mut alice, &org).await;

    // The web app comes from the ui role, through the edge.
    let page = reqwest::get(format!("{base}/instances/x")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("SPA INDEX"));

    for (n, (id, token)) in placed.iter().enumerate() {
        let (status, body) = post_report(
            &base,
            token,
            &format!("probe-{n}"),
            fixture("probe-full-1.msgpack.gz"),
        )
        .await;
        assert_eq!(status, 200, "report to shard {n}: {body}");
        the_report_was_folded_below_the_serving_threads(split.shards[n].process().pid());
        let (status, list) = alice.get(&format!("/api/app/{id}/api/topology")).await;
        assert_eq!(status, 200, "{list}");
        let (status, view) = alice
            .get(&format!("/api/app/{id}/api/topology/processes"))
            .await;
        assert_eq!(status, 200, "{view}");
        assert!(
            !view["nodes"].as_object().unwrap().is_empty(),
            "shard {n} shows the report's processes: {view}"
        );
        let ws = format!(
            "ws://{}/api/app/{id}/api/topology/processes/ws?t=1s&unconnected=show",
            split.frontend.listen
        );
        let frame = first_frame(&ws, alice.cookie.as_deref().unwrap()).await;
        assert!(
            frame["add"].as_array().is_some_and(|a| !a.is_empty()),
            "the first frame adds the view's nodes: {frame}"
        );
        if n == 0 {
            an_oversized_message_ends_the_websocket(&ws, alice.cookie.as_deref().unwrap()).await;
        }
    }
    // Each instance lives on its shard only: the other shard does not hold it.
    assert!(!split.held_by(1).await.contains(&placed[0].0));
    assert!(!split.held_by(0).await.contains(&placed[1].0));

    // Another customer cannot read alice's instances through the edge.
    let (mut bob, _) = split.customer(&mut admin, "bob@example.com").await;
    let (status, _) = bob
        .get(&format!("/api/app/{}/api/topology", placed[0].0))
        .await;
    assert_eq!(status, 404);
    // An API path nothing serves is the edge's JSON 404.
    let (status, body) = alice.get("/api/nothing-here").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    // This edge has no monitoring role (no --monitoring-url): its page says so.
    let (status, body) = admin.get("/api/admin/system").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("--monitoring-url")
    );
}
both!(the_whole_journey_goes_through_the_edge_to_two_shards);

#[tokio::test]
async fn a_killed_shard_fails_fast_and_serves_again_after_a_restart() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let mut split = Split::start(db.url.as_str()).await;
    let base = split.url();
    let mut admin = split.site_admin("admin@example.com").await;
    let (mut alice, org) = split.customer(&mut admin, "alice@example.com").await;
    let placed = one_instance_per_shard(&split, &mut alice, &org).await;
    for (id, token) in &placed {
        let (status, _) = post_report(&base, token, "p", fixture("probe-full-1.msgpack.gz")).await;
        assert_eq!(status, 200, "{id}");
    }

    split.shards[0].process().signal(libc::SIGKILL);
    split.shards[0]
        .process
        .as_mut()
        .unwrap()
        .wait_exit(Duration::from_secs(5));
    let started = Instant::now();
    let (status, body) = alice
        .get(&format!("/api/app/{}/api/topology/processes", placed[0].0))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("shard-a"),
        "the answer names the failed shard: {body}"
    );
    let (status, view) = alice
        .get(&format!("/api/app/{}/api/topology/processes", placed[1].0))
        .await;
    assert_eq!(status, 200, "the other shard is unaffected: {view}");

    // Restarted at the same address, with nothing in memory: the reconciler places the instance
    // again, and the probe's next report is served without anyone doing anything.
    split.shards[0].start();
    split.shards[0].wait_ready().await;
    let (id, token) = placed[0].clone();
    eventually(
        Duration::from_secs(15),
        "the restarted shard to take reports",
        || {
            let (base, token) = (base.clone(), token.clone());
            async move {
                let (status, _) =
                    post_report(&base, &token, "p", fixture("probe-full-1.msgpack.gz")).await;
                (status == 200).then_some(())
            }
        },
    )
    .await;
    let (status, view) = alice
        .get(&format!("/api/app/{id}/api/topology/processes"))
        .await;
    assert_eq!(status, 200);
    assert!(!view["nodes"].as_object().unwrap().is_empty(), "{view}");
}

/// The edge's request histograms, as its operational listener exports them: (every request's
/// seconds from arrival to answer, the edge's own part of the proxied ones).
async fn edge_seconds(split: &Split) -> (f64, f64) {
    let text = split.frontend.metrics().await;
    let requests = text
        .lines()
        .filter(|l| l.starts_with("scopehub_http_request_duration_seconds_sum{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    (
        requests,
        support::metric(&text, "scopehub_edge_own_seconds_sum"),
    )
}

/// Posts `body` to `path` until the answer is other than `refused` (a probe's channel, or a
/// setting, reaches the shard a moment after it changes): that answer, within 10 s.
async fn post_unless(mut agent: Agent, path: String, body: Value, refused: u16) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, answer) = agent.post(&path, body.clone()).await;
        if status != refused || Instant::now() > deadline {
            return (status, answer);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Controls and pipes through the edge: each probe's control channel reaches the shard holding
/// its instance (two probes with the same id, one per instance, each get only their own
/// instance's calls); a user's control travels edge → shard → probe and its reply comes back; a
/// terminal's two ends, the probe's and the browser's, meet on that shard and carry bytes both
/// ways. The edge counts the wait for the probe's reply as the role's time, not its own.
#[tokio::test]
async fn controls_and_terminals_reach_the_probe_through_the_edge() {
    use crate::controls::{
        allow_terminals, browser_pipe_end, bytes_go_both_ways, connect_probe_at, control_path,
        next_bytes, next_call, probe_pipe_end, reply,
    };
    use serde_json::json;

    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let split = Split::start(db.url.as_str()).await;
    let base = split.url();
    let mut admin = split.site_admin("admin@example.com").await;
    let (mut alice, org) = split.customer(&mut admin, "alice@example.com").await;
    let placed = one_instance_per_shard(&split, &mut alice, &org).await;
    let mut probes = Vec::new();
    for (_, token) in &placed {
        probes.push(connect_probe_at(&base, token, "probe-1").await);
    }

    let node = "abc;<container>";
    for (n, (id, _)) in placed.iter().enumerate() {
        let path = control_path(id, "probe-1", node, "docker_restart_container");
        // The shard hears of the probe's channel a moment after it opens.
        let call = tokio::spawn(post_unless(
            alice.clone(),
            path,
            json!({"n": n.to_string()}),
            503,
        ));
        let Ok((head, body)) =
            tokio::time::timeout(Duration::from_secs(12), next_call(&mut probes[n])).await
        else {
            panic!("no call reached instance {n}'s probe: {:?}", call.await);
        };
        assert_eq!(body["Value"]["NodeID"], node);
        assert_eq!(
            body["Value"]["ControlArgs"]["n"],
            n.to_string(),
            "instance {n}'s own call"
        );
        let before = edge_seconds(&split).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seq = head["Request"]["Seq"].as_u64().unwrap();
        reply(
            &mut probes[n],
            seq,
            json!({"value": format!("restarted {n}")}),
        )
        .await;
        let (status, answer) = call.await.unwrap();
        assert_eq!(
            (status, &answer),
            (200, &json!({"value": format!("restarted {n}")}))
        );
        // The other instance's probe of the same id heard nothing.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), probes[1 - n].next())
                .await
                .is_err(),
            "instance {n}'s control reached the other instance's probe"
        );
        let after = edge_seconds(&split).await;
        assert!(after.0 - before.0 >= 0.25, "{before:?} → {after:?}");
        assert!(after.1 - before.1 < 0.1, "{before:?} → {after:?}");
    }

    // A terminal on the second shard's instance, both ends through the edge.
    let (id, token) = &placed[1];
    allow_terminals(&mut alice, id, true).await;
    let exec = control_path(id, "probe-1", node, "docker_exec_container");
    let call = tokio::spawn(post_unless(alice.clone(), exec, json!({}), 403));
    let (head, _) = tokio::time::timeout(Duration::from_secs(10), next_call(&mut probes[1]))
        .await
        .expect("the exec reached the probe");
    let announced = json!({"pipe": "pipe-1", "raw_tty": true});
    reply(
        &mut probes[1],
        head["Request"]["Seq"].as_u64().unwrap(),
        announced.clone(),
    )
    .await;
    assert_eq!(call.await.unwrap(), (200, announced));
    // The pipe is the instance's: the other instance's probe of the same id cannot open it.
    assert_eq!(
        probe_pipe_end(&split.frontend.listen, &placed[0].1, "probe-1", "pipe-1")
            .await
            .err(),
        Some(404)
    );
    let mut probe_end = probe_pipe_end(&split.frontend.listen, token, "probe-1", "pipe-1")
        .await
        .unwrap();
    let addr: std::net::SocketAddr = split.frontend.listen.parse().unwrap();
    let mut browser_end = browser_pipe_end(&addr, &alice, id, "pipe-1").await;
    bytes_go_both_ways(&mut browser_end, &mut probe_end).await;
    // The browser goes: the probe's end is closed, through the edge too.
    drop(browser_end);
    assert_eq!(next_bytes(&mut probe_end).await, None);
}

#[tokio::test]
async fn identity_headers_from_outside_are_ignored_and_roles_refuse_requests_that_skip_the_edge() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let split = Split::start(db.url.as_str()).await;
    let mut admin = split.site_admin("admin@example.com").await;
    let (mut alice, org) = split.customer(&mut admin, "alice@example.com").await;
    let (id, _) = Split::ready_instance(&mut alice, &org, "prod").await;

    // Forged identity and tenant headers, sent to the edge without a credential: nothing granted.
    let forged = reqwest::Client::new()
        .get(format!("{}/api/app/{id}/api/topology", split.url()))
        .header("x-scope-orgid", &id)
        .header("x-scopehub-identity", "e30")
        .header("x-scopehub-signature", "00".repeat(32))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let forged = reqwest::Client::new()
        .get(format!("{}/api/users/me", split.url()))
        .header("x-scope-userid", "someone")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // Straight to a role, even with alice's cookie: refused without the edge's signature.
    let cookie = format!("scopehub_session={}", alice.cookie.as_deref().unwrap());
    for url in [
        format!("{}/api/users/me", split.users.url()),
        format!("{}/api/instances?org={org}", split.provisioning.url()),
        format!("{}/api/app/{id}/api/topology", split.shards[0].url()),
        format!("{}/api/app/{id}/api/topology", split.shards[1].url()),
    ] {
        let response = reqwest::Client::new()
            .get(&url)
            .header("cookie", &cookie)
            .header("x-scope-orgid", &id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{url}");
    }

    // The operational endpoints: with `--ops-listen` (as in Kubernetes), /metrics is not on the
    // public listener — the edge's is the Internet's way in — but on the operational one; health
    // and readiness are on both.
    for role in [&split.frontend, &split.users, &split.shards[0]] {
        let public = reqwest::get(format!("{}/metrics", role.url()))
            .await
            .unwrap();
        assert_eq!(public.status(), 404, "{}", role.name);
        let body: Value = public.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains("--ops-listen"),
            "{body}"
        );
        assert!(role.metrics().await.contains("scopehub_ready"));
        for path in ["/healthz", "/readyz"] {
            let status = reqwest::get(format!("{}{path}", role.url()))
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200, "{} {path}", role.name);
        }
    }
    // Readiness's details (here the database's backend) are on the operational listener only.
    let ready = |url: String| async move {
        let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        body
    };
    let public = ready(format!("{}/readyz", split.users.url())).await;
    assert_eq!(public, serde_json::json!({"status": "ready"}));
    let operational = ready(format!("http://{}/readyz", split.users.ops)).await;
    assert!(operational["database"].is_string(), "{operational}");
}

/// Session lookups the users role has answered (its own request histogram, on its operational
/// listener).
async fn session_lookups(split: &Split) -> f64 {
    let text = split.users.metrics().await;
    support::metric(
        &text,
        "scopehub_http_request_duration_seconds_count{method=\"POST\",route=\"/internal/users/session\",status=\"200\"}",
    )
}

/// The edge keeps each session's lookup for its TTL (500 ms). Another tenant's change, or
/// requests anyone can make succeed (a sign-up's "forgot my password"), do not make it forget
/// alice's: her next request within the TTL asks the users role nothing.
#[tokio::test]
async fn one_tenants_changes_do_not_empty_the_edges_cache_for_another() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let split = Split::start(db.url.as_str()).await;
    let mut admin = split.site_admin("admin@example.com").await;
    let (mut alice, _) = split.customer(&mut admin, "alice@example.com").await;
    let (mut bob, _) = split.customer(&mut admin, "bob@example.com").await;
    let anonymous = reqwest::Client::new();
    // A trial counts only if it took less than the TTL; a slow machine gets another.
    for trial in 0..20 {
        assert_eq!(alice.get("/api/users/me").await.0, 200);
        assert_eq!(bob.get("/api/users/me").await.0, 200);
        let started = Instant::now();
        let before = session_lookups(&split).await;
        let forgot = anonymous
            .post(format!("{}/api/users/password/forgot", split.url()))
            .json(&serde_json::json!({"email": "nobody@example.com"}))
            .send()
            .await
            .unwrap();
        assert!(forgot.status().is_success(), "{}", forgot.status());
        let (status, body) = bob
            .post(
                "/api/orgs",
                serde_json::json!({"name": format!("bob's {trial}")}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(alice.get("/api/users/me").await.0, 200);
        let after = session_lookups(&split).await;
        if started.elapsed() < Duration::from_millis(400) {
            assert_eq!(after, before, "alice's session was asked for again");
            return;
        }
    }
    panic!("no trial finished within the cache's TTL");
}

#[tokio::test]
async fn a_token_revoked_through_one_edge_stops_working_at_another_within_a_second() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let split = Split::start(db.url.as_str()).await;
    let mut admin = split.site_admin("admin@example.com").await;
    let (mut alice, org) = split.customer(&mut admin, "alice@example.com").await;
    let (status, created) = alice
        .post(
            "/api/tokens",
            serde_json::json!({"org_id": org, "name": "ci", "scope": "read"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    let token_id = created["id"].as_str().unwrap().to_owned();

    // A second edge replica, with the production default cache.
    let mut second = crate::support::split::Role::new_like(&split.frontend);
    second.start();
    second.wait_ready().await;
    let mut with_token = Agent::for_url(&second.url());
    with_token.origin = None;
    with_token.bearer = Some(token.clone());
    // Keep it in the second edge's cache.
    for _ in 0..3 {
        let (status, body) = with_token.get(&format!("/api/instances?org={org}")).await;
        assert_eq!(status, 200, "{body}");
    }

    let (status, body) = alice.delete(&format!("/api/tokens/{token_id}")).await;
    assert_eq!(status, 204, "{body}");
    let revoked = Instant::now();
    loop {
        let (status, _) = with_token.get(&format!("/api/instances?org={org}")).await;
        if status == 401 {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "the revoked token still worked at the other edge after {:?}",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the map, the account and the web app through the edge until told to stop; returns every
/// answer that was not a success.
async fn read_until(
    agent: &Agent,
    instance: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (usize, Vec<String>) {
    let mut reader = alice_copy(agent);
    let paths = [
        format!("/api/app/{instance}/api/topology/hosts"),
        format!("/api/app/{instance}/api/topology"),
        "/api/users/me".to_owned(),
        format!("/api/instances/{instance}"),
    ];
    let (mut reads, mut failures) = (0, Vec::new());
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        for path in &paths {
            let (status, body) = reader.get(path).await;
            reads += 1;
            if status != 200 {
                failures.push(format!("{path}: {status} {body}"));
            }
        }
        let page = reqwest::get(format!("{}/instances", reader.base)).await;
        if !page.as_ref().is_ok_and(|p| p.status() == 200) {
            failures.push(format!("web app: {page:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (reads, failures)
}

/// Keeps a map websocket open through the edge, reconnecting whenever it closes; returns
/// (reconnections, frames received after the last one).
async fn watch_until(
    url: String,
    cookie: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (usize, usize) {
    let (mut reconnects, mut frames) = (0, 0);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let request = crate::support::browser_ws_request(&url, &cookie);
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(request).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        frames = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            match tokio::time::timeout(Duration::from_millis(500), socket.next()).await {
                Err(_) => continue,
                Ok(Some(Ok(Message::Text(_)))) => frames += 1,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => break,
            }
        }
        if !stop.load(std::sync::atomic::Ordering::SeqCst) {
            reconnects += 1;
        }
    }
    (reconnects, frames)
}

#[tokio::test]
async fn a_rolling_restart_of_every_role_under_load_fails_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let mut split = Split::start_with(
        db.url.as_str(),
        &[
            "--reuse-port",
            "--shutdown-delay",
            "1",
            "--shutdown-timeout",
            "10",
        ],
    )
    .await;
    let base = split.url();
    let mut admin = split.site_admin("admin@example.com").await;
    let (mut alice, org) = split.customer(&mut admin, "alice@example.com").await;
    let (id, token) = Split::ready_instance(&mut alice, &org, "prod").await;

    let loadgen = crate::support::process::binary()
        .args(["loadgen", "--url", &base, "--token", &token, "--hosts", "3"])
        .args(["--interval", "0.5", "--duration", "30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn({
        let (agent, id, stop) = (alice_copy(&alice), id.clone(), stop.clone());
        async move { read_until(&agent, id, stop).await }
    });
    let ws = format!(
        "ws://{}/api/app/{id}/api/topology/hosts/ws?t=200ms",
        split.frontend.listen
    );
    let watcher = tokio::spawn(watch_until(ws, alice.cookie.clone().unwrap(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Each role in turn: start the new process, wait until it is ready, SIGTERM the old one.
    for role in split.roles_mut() {
        let mut next = crate::support::split::Role::replacement(role);
        next.start();
        next.wait_ready().await;
        role.process().signal(libc::SIGTERM);
        let status = role
            .process
            .as_mut()
            .unwrap()
            .wait_exit(Duration::from_secs(20));
        assert!(status.success(), "{} exited with {status}", role.name);
        *role = next;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let (reads, failures) = reader.await.unwrap();
    let (reconnects, frames) = watcher.await.unwrap();
    let output = loadgen.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&output.stdout);

    assert!(
        failures.is_empty(),
        "{} of {reads} reads failed: {failures:#?}",
        failures.len()
    );
    assert!(reads > 100, "{reads} reads");
    assert!(
        summary.contains("refused: none"),
        "probes had reports refused: {summary}"
    );
    assert!(
        reconnects >= 1,
        "the websocket was closed for the restarts and reconnected"
    );
    assert!(frames > 0, "frames arrive after the last reconnection");
}

fn alice_copy(agent: &Agent) -> Agent {
    Agent {
        base: agent.base.clone(),
        client: reqwest::Client::new(),
        cookie: agent.cookie.clone(),
        csrf: agent.csrf.clone(),
        bearer: agent.bearer.clone(),
        origin: agent.origin.clone(),
    }
}

/// Two provisioning replicas reconcile at once (as during a rolling update): every instance is
/// placed once, and an instance its shard holds is never dropped by the other replica's pass.
#[tokio::test]
async fn two_provisioning_replicas_reconcile_without_undoing_each_other() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let split = Split::start(db.url.as_str()).await;
    let mut second = crate::support::split::Role::new_like(&split.provisioning);
    second.start();
    second.wait_ready().await;
    let mut admin = split.site_admin("admin@example.com").await;
    let (mut alice, org) = split.customer(&mut admin, "alice@example.com").await;
    // Created over several of the second replica's passes (every 2 s), so that its snapshots
    // keep catching instances the first one is placing.
    let mut created = Vec::new();
    for n in 0..20 {
        let (status, body) = alice
            .post(
                "/api/instances",
                serde_json::json!({"org_id": org, "name": format!("i{n}")}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        created.push(body["instance"]["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Watch the shards while both replicas place them: once held, always held.
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        for shard in 0..2 {
            let held = split.held_by(shard).await;
            for (id, at) in &seen {
                if *at == shard {
                    assert!(held.contains(id), "{id} was dropped from shard {shard}");
                }
            }
            for id in held {
                if let Some(at) = seen.insert(id.clone(), shard) {
                    assert_eq!(at, shard, "{id} moved between shards");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in &created {
        assert!(seen.contains_key(id), "{id} never placed");
        let (_, details) = alice.get(&format!("/api/instances/{id}")).await;
        assert_eq!(details["instance"]["state"], "ready", "{details}");
        let placed = details["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["to_state"] == "ready")
            .count();
        assert_eq!(placed, 1, "placed once: {details}");
    }
}
