//! The reconciler survives `kill -9` at any step: the server is killed repeatedly while instances
//! are being created and deleted, restarted on the same database, and every instance must end in
//! the right state with nothing duplicated or leaked.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::agent::{ADMIN, Agent, PASSWORD};
use crate::support::process::ServerProcess;
use crate::support::{Backend, TestDb, both};

const ROUNDS: usize = 4;

fn start(db: &TestDb) -> ServerProcess {
    ServerProcess::serve(&[
        "--database-url",
        db.url.as_str(),
        "--dist-dir",
        "/nonexistent",
        // On PostgreSQL too: these tests get their admin by signing up first.
        "--first-signup-admin",
        "true",
    ])
}

/// Re-points a logged-in agent at a restarted server (the session lives in the database).
fn follow(agent: &mut Agent, server: &ServerProcess) {
    agent.base = server.url.clone();
    agent.origin = Some(server.url.clone());
}

/// Signs up the first account of a fresh server (Airplane Mode makes it the site admin) and logs in;
/// returns its agent and org.
async fn first_admin(server: &ServerProcess) -> (Agent, String) {
    let mut agent = Agent::for_url(&server.url);
    let (status, body) = agent
        .post(
            "/api/users/signup",
            json!({"email": ADMIN, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let (_, me) = agent.login(ADMIN, PASSWORD).await;
    let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();
    (agent, org)
}

async fn instances(agent: &mut Agent, org: &str) -> Vec<Value> {
    let (status, list) = agent.get(&format!("/api/instances?org={org}")).await;
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().clone()
}

async fn survives_kill_9_while_instances_come_and_go(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let mut server = start(&db);
    server.wait_ready().await;
    let (mut agent, org) = first_admin(&server).await;

    // name → whether the test last asked for it to exist (true) or be deleted (false), for every
    // request the server answered; an unanswered create may or may not have happened.
    let mut wanted: HashMap<String, bool> = HashMap::new();
    let mut unanswered: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        // Fire creates and deletes without waiting for the reconciler, then kill mid-stream.
        let mut requests = Vec::new();
        for i in 0..6 {
            let name = format!("r{round}-i{i}");
            let (status, body) = agent
                .post("/api/instances", json!({"org_id": org, "name": name}))
                .await;
            match status {
                201 => {
                    wanted.insert(name.clone(), true);
                    requests.push((name, body["instance"]["id"].as_str().unwrap().to_owned()));
                }
                _ => unanswered.push(name),
            }
        }
        for (name, id) in requests.iter().step_by(2) {
            if agent.delete(&format!("/api/instances/{id}")).await.0 == 202 {
                wanted.insert(name.clone(), false);
            }
        }
        // Kill at a different moment each round: right away, or after the reconciler got going.
        tokio::time::sleep(Duration::from_millis(40 * round as u64)).await;
        server.signal(libc::SIGKILL);
        server.wait_exit(Duration::from_secs(10));
        server = start(&db);
        follow(&mut agent, &server);
        server.wait_ready().await;
    }

    // Converged: every instance the test kept is ready, every one it deleted is deleted, none is
    // stuck in between, and no name appears twice.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let list = loop {
        let list = instances(&mut agent, &org).await;
        let settled = list
            .iter()
            .all(|i| matches!(i["state"].as_str(), Some("ready" | "deleted")));
        if settled {
            break list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not converged: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut seen: HashMap<String, String> = HashMap::new();
    for instance in &list {
        let name = instance["name"].as_str().unwrap().to_owned();
        let state = instance["state"].as_str().unwrap().to_owned();
        assert!(
            seen.insert(name.clone(), state.clone()).is_none(),
            "{name} exists twice"
        );
        match wanted.get(&name) {
            Some(true) => assert_eq!(state, "ready", "{name}"),
            Some(false) => assert_eq!(state, "deleted", "{name}"),
            None => assert!(unanswered.contains(&name), "{name} was never asked for"),
        }
    }
    for (name, keep) in &wanted {
        assert!(seen.contains_key(name), "{name} (wanted: {keep}) was lost");
    }

    // Nothing leaked: the collector shard holds exactly the instances that are ready.
    let ready = list.iter().filter(|i| i["state"] == "ready").count();
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!("scopehub_shard_instances{{shard=\"local\"}} {ready}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut metrics = metrics;
    while !metrics.contains(&line) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected `{line}` in\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        metrics = reqwest::get(format!("{}/metrics", server.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    assert!(
        metrics.contains("scopehub_reconcile_passes_total"),
        "{metrics}"
    );
}
both!(survives_kill_9_while_instances_come_and_go);

/// `scopehub probe` against a real `scopehub serve`: this machine shows up in the instance.
#[tokio::test]
async fn our_probe_reports_this_machine() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::serve(&[
        "--data-dir",
        data.path().to_str().unwrap(),
        "--dist-dir",
        "/nonexistent",
    ]);
    server.wait_ready().await;
    let (mut agent, org) = first_admin(&server).await;
    let (id, token) = agent.create_ready_instance(&org, "laptop").await;

    let probe = |extra: &[&str], token: &str| {
        crate::support::process::binary()
            .args(["probe", "--url", &server.url, "--token", token, "--once"])
            .args(extra)
            .output()
            .expect("run scopehub probe")
    };
    for extra in [&[][..], &["--json"][..]] {
        let out = probe(extra, &token);
        assert!(
            out.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let refused = probe(&[], "shp_not_a_real_token");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    let (_, details) = agent.get(&format!("/api/instances/{id}")).await;
    assert_eq!(details["instance"]["state"], "active");
    assert_eq!(details["usage"]["reports_received"], 2);
    let (_, probes) = agent.get(&format!("/api/app/{id}/api/probes")).await;
    assert_eq!(
        probes.as_array().unwrap().len(),
        2,
        "each run is a new probe: {probes}"
    );
    assert!(
        probes
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["hostname"] == hostname.as_str())
    );
    let (_, report) = agent.get(&format!("/api/app/{id}/api/report")).await;
    let processes = report["Process"]["nodes"].as_object().unwrap();
    assert!(
        processes
            .values()
            .any(|p| p["latest"]["name"]["value"] == "scopehub"),
        "the probe saw itself"
    );
    assert!(
        report["Host"]["nodes"][format!("{hostname};<host>")]["metrics"]["host_mem_usage_bytes"]
            .is_object()
    );

    // Running on: a full report, then deltas; the merged window stays whole.
    let running = crate::support::process::binary()
        .args([
            "probe",
            "--url",
            &server.url,
            "--token",
            &token,
            "--interval",
            "0.3",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start scopehub probe");
    let mut running = crate::support::process::KillOnDrop(running);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, details) = agent.get(&format!("/api/instances/{id}")).await;
        if details["usage"]["reports_received"].as_u64().unwrap_or(0) >= 6 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the probe did not keep reporting: {details}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The running probe keeps its HTTP connection to the server open: this machine's processes
    // view shows that connection, from the probe to the server.
    let (status, procs) = agent
        .get(&format!(
            "/api/app/{id}/api/topology/processes?unconnected=hide"
        ))
        .await;
    assert_eq!(status, 200);
    let nodes = procs["nodes"].as_object().unwrap();
    let probe_pid = running.0.id().to_string();
    let prober = nodes
        .values()
        .find(|n| {
            n["id"]
                .as_str()
                .unwrap()
                .ends_with(&format!(";{probe_pid}"))
        })
        .unwrap_or_else(|| {
            panic!(
                "the probe process {probe_pid} (server {}) is connected: {procs}",
                server.pid()
            )
        });
    assert_eq!(prober["label"], "scopehub");
    let server_pid = server.pid().to_string();
    assert!(
        prober["adjacency"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().ends_with(&format!(";{server_pid}"))),
        "probe → server edge: {prober}"
    );
    running.stop();
    let (_, report) = agent.get(&format!("/api/app/{id}/api/report")).await;
    let processes = report["Process"]["nodes"].as_object().unwrap();
    assert!(
        processes
            .values()
            .all(|p| p["topology"] == "process" && p["id"].is_string())
    );
    let cpu_samples = processes
        .values()
        .filter_map(|p| p["metrics"]["process_cpu_usage_percent"]["samples"].as_array())
        .map(Vec::len)
        .max()
        .unwrap_or(0);
    assert!(
        cpu_samples >= 2,
        "deltas added samples to the full report's nodes"
    );
}

/// `serve --local-probe` (what `make run` starts): the first admin's org gets "This machine",
/// reported by a probe inside the server; a restart reuses the instance.
#[tokio::test]
async fn the_local_probe_shows_this_machine() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    let start = || {
        ServerProcess::serve(&[
            "--data-dir",
            &dir,
            "--dist-dir",
            "/nonexistent",
            "--local-probe",
        ])
    };
    let server = start();
    server.wait_ready().await;
    let (mut agent, org) = first_admin(&server).await;
    let active = |list: &[Value]| {
        list.iter()
            .find(|i| i["name"] == "This machine" && i["state"] == "active")
            .map(|i| i["id"].as_str().unwrap().to_owned())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let id = loop {
        if let Some(id) = active(&instances(&mut agent, &org).await) {
            break id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no active local instance"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    let (_, hosts) = agent
        .get(&format!("/api/app/{id}/api/topology/hosts"))
        .await;
    assert!(
        hosts["nodes"].get(format!("{hostname};<host>")).is_some(),
        "{hosts}"
    );
    let (_, procs) = agent
        .get(&format!("/api/app/{id}/api/topology/processes"))
        .await;
    let server_node = format!("{hostname};{}", server.pid());
    assert_eq!(
        procs["nodes"][&server_node]["label"], "scopehub",
        "{server_node}"
    );

    // After a restart the same instance is used, with a new token; nothing is duplicated.
    drop(server);
    let server = start();
    server.wait_ready().await;
    follow(&mut agent, &server);
    let (_, before) = agent.get(&format!("/api/instances/{id}")).await;
    let received = before["usage"]["reports_received"].as_u64().unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, details) = agent.get(&format!("/api/instances/{id}")).await;
        if details["usage"]["reports_received"].as_u64().unwrap_or(0) > received {
            // The previous start's token is revoked; this start's is the one live token.
            let tokens = details["tokens"].as_array().unwrap();
            assert_eq!(tokens.len(), 2, "{details}");
            assert_eq!(tokens.iter().filter(|t| t["revoked"] == false).count(), 1);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the local probe did not resume"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let list = instances(&mut agent, &org).await;
    assert_eq!(list.len(), 1, "{list:?}");
}

/// `scopehub loadgen` posts synthetic hosts through the real HTTP path and stops by itself.
#[tokio::test]
async fn the_load_generator_reports_synthetic_hosts() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::serve(&[
        "--data-dir",
        data.path().to_str().unwrap(),
        "--dist-dir",
        "/nonexistent",
    ]);
    server.wait_ready().await;
    let (mut agent, org) = first_admin(&server).await;
    let (id, token) = agent.create_ready_instance(&org, "load").await;
    let out = crate::support::process::binary()
        .args(["loadgen", "--url", &server.url, "--token", &token])
        .args([
            "--hosts",
            "3",
            "--containers",
            "4",
            "--connections",
            "2",
            "--interval",
            "0.25",
            "--duration",
            "1",
        ])
        .output()
        .expect("run scopehub loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("accepted, refused: none"), "{stdout}");

    let (_, probes) = agent.get(&format!("/api/app/{id}/api/probes")).await;
    assert_eq!(probes.as_array().unwrap().len(), 3);
    let (_, report) = agent.get(&format!("/api/app/{id}/api/report")).await;
    assert_eq!(report["Container"]["nodes"].as_object().unwrap().len(), 12);
    assert_eq!(report["Host"]["nodes"].as_object().unwrap().len(), 3);
}
