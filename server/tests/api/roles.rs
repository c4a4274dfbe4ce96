//! Roles as separate `scopehub` processes: each starts with only its own flags, is ready without a
//! database when it has none, and refuses any request that did not come through the edge.

use std::time::Duration;

use axum::http::Method;
use serde_json::Value;

use crate::support::process::{ServerProcess, binary};

const SECRET: &str = "roles-process-test-secret-0123456789abcdef";

async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_ui_role_opens_no_database() {
    let cwd = tempfile::tempdir().unwrap();
    let dist = tempfile::tempdir().unwrap();
    crate::support::write_fake_dist(dist.path());
    let dist_dir = dist.path().join("dist");
    // Started where `serve` would create ./data/scopehub.db, with a database URL in the
    // environment that nothing can reach: the UI must touch neither.
    let mut child = binary()
        .current_dir(cwd.path())
        .env(
            "SCOPEHUB_DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/none",
        )
        .args(["ui", "--listen", "127.0.0.1:0", "--dist-dir"])
        .arg(&dist_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let url = {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        loop {
            let line = lines.next().expect("ui announces its URL").unwrap();
            if let Some(url) = line.strip_prefix("Scopehub is running at ") {
                break url.trim_end_matches('/').to_owned();
            }
        }
    };
    let _kill = crate::support::process::KillOnDrop(child);
    let (status, ready) = get(&format!("{url}/readyz")).await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")));
    assert!(ready.get("database").is_none(), "{ready}");
    let (status, body) = get(&format!("{url}/api/version")).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let page = reqwest::get(format!("{url}/some/deep/link")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("SPA INDEX"));
    assert!(
        std::fs::read_dir(cwd.path()).unwrap().next().is_none(),
        "the UI created files where it ran"
    );
}

#[tokio::test]
async fn roles_run_alone_and_refuse_requests_without_an_edge_identity() {
    let data = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/scopehub.db", data.path().display());
    let users = ServerProcess::start(
        "users",
        &["--database-url", &db, "--internal-secret", SECRET],
    );
    users.wait_ready().await;
    let ops = format!("127.0.0.1:{}", crate::support::process::free_port());
    let collector = ServerProcess::start(
        "collector",
        &[
            "--shard",
            "shard-a",
            "--users-url",
            &users.url,
            "--provisioning-url",
            "http://127.0.0.1:1",
            "--internal-secret",
            SECRET,
            "--ops-listen",
            &ops,
        ],
    );
    // A collector is ready once it holds the instances placed on it, which provisioning (not
    // reachable at this URL) must tell it. Why it is not ready is said on the operational
    // listener only; the public one says not ready and where to look.
    // (Until its first attempt fails it says "still starting".)
    crate::support::eventually(
        Duration::from_secs(10),
        "the collector to say it cannot load its placed instances",
        || async {
            let (status, ready) = get(&format!("http://{ops}/readyz")).await;
            assert_eq!(status, 503, "{ready}");
            ready["message"]
                .as_str()
                .is_some_and(|m| m.contains("placed instances"))
                .then_some(())
        },
    )
    .await;
    let (status, ready) = get(&format!("{}/readyz", collector.url)).await;
    assert_eq!((status, ready["code"].as_str()), (503, Some("unavailable")));
    let told = ready["message"].as_str().unwrap();
    assert!(
        told.contains("--ops-listen") && !told.contains("placed"),
        "{ready}"
    );
    let shard = format!("shard-a={}", collector.url);
    let provisioning = ServerProcess::start(
        "provisioning",
        &[
            "--database-url",
            &db,
            "--users-url",
            &users.url,
            "--collector-shard",
            &shard,
            "--internal-secret",
            SECRET,
        ],
    );
    provisioning.wait_ready().await;

    for url in [
        format!("{}/api/users/me", users.url),
        format!("{}/internal/users/first-admin-org", users.url),
        format!("{}/api/instances?org=x", provisioning.url),
        format!("{}/internal/provisioning/instances/x", provisioning.url),
        format!("{}/api/report", collector.url),
        format!("{}/internal/collector/instances", collector.url),
    ] {
        let (status, body) = get(&url).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthorized")),
            "{url}"
        );
    }

    // The same internal API answers a caller holding the secret.
    let client =
        |role: &'static str, url: &str| crate::support::split::internal_client(role, url, SECRET);
    let held: Vec<String> = client("collector", &collector.url)
        .call(
            Method::GET,
            &["internal", "collector", "instances"],
            None::<&()>,
        )
        .await
        .unwrap();
    assert!(held.is_empty());
    let admin: Option<Value> = client("users", &users.url)
        .call(
            Method::GET,
            &["internal", "users", "first-admin-org"],
            None::<&()>,
        )
        .await
        .unwrap();
    assert_eq!(admin, None, "no site admin yet");
    // Provisioning's reconciler reaches the collector over HTTP: its pass lists the shard.
    crate::support::eventually(
        Duration::from_secs(10),
        "the reconciler to list the collector shard",
        || {
            let url = format!("{}/metrics", provisioning.url);
            async move {
                let text = reqwest::get(url).await.ok()?.text().await.ok()?;
                text.contains("shard=\"shard-a\"").then_some(())
            }
        },
    )
    .await;
}
