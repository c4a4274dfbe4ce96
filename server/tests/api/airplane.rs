//! Airplane Mode in containers: the image `make image` built, running the production manifests
//! (`k8s/overlays/airplane`) under podman, with the journey through its frontend: sign up, a site
//! admin, an instance, a probe report, the topology.
//!
//! Needs podman, runc, kubectl, PyYAML and the image (`make test` builds it when podman is there);
//! skipped with a warning without them, failed with `REQUIRE_PODMAN=1` (as `.ci/run` sets).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::reports::fixture;
use crate::support::agent::{Agent, PASSWORD, link_token};
use crate::support::split::post_report;
use crate::support::{required, warn};

const BASE: &str = "http://127.0.0.1:4040";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn missing() -> Option<String> {
    for tool in ["podman", "runc", "kubectl", "python3"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    if !repo().join("target/image/tag").is_file() {
        return Some("the image is not built (make image)".to_owned());
    }
    None
}

/// Stops the played pods when the test ends, however it ends.
struct Played {
    state: PathBuf,
}

impl Drop for Played {
    fn drop(&mut self) {
        let _ = airplane("down", &self.state, Path::new("/nonexistent"));
    }
}

/// Runs `scripts/airplane.sh COMMAND`; returns whether it succeeded and what it printed. Output
/// goes through a file: a pipe would stay open as long as the containers' monitors run.
fn airplane(command: &str, state: &Path, data: &Path) -> (bool, String) {
    let log = state.join(format!("{command}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let status = Command::new(repo().join("scripts/airplane.sh"))
        .arg(command)
        .env("AIRPLANE_STATE", state)
        .env("AIRPLANE_DATA", data)
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .status()
        .expect("scripts/airplane.sh");
    (
        status.success(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

#[tokio::test]
async fn airplane_mode_runs_in_containers_from_the_production_manifests() {
    if let Some(why) = missing() {
        if required("REQUIRE_PODMAN") {
            panic!("REQUIRE_PODMAN=1 but {why}");
        }
        warn(&format!(
            "WARNING: skipping the Airplane-in-containers test: {why}"
        ));
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let _played = Played {
        state: state.path().to_owned(),
    };
    let (up, printed) = airplane("up", state.path(), data.path());
    assert!(up, "make airplane failed:\n{printed}");

    // Every role of the overlay is up, each in its own container, on its own port.
    for port in [4040, 4041, 4042, 4043, 4044, 4046] {
        let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
            .await
            .unwrap();
        assert_eq!(ready.status(), 200, "port {port}");
    }
    let (status, version) = Agent::for_url(BASE).get("/api/version").await;
    assert_eq!(
        (status, version["database"].as_str()),
        (200, Some("sqlite"))
    );

    // Sign up, then make that account the site admin inside the users container.
    let mut admin = Agent::for_url(BASE);
    let (status, body) = admin
        .post(
            "/api/users/signup",
            json!({"email": "admin@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let made = Command::new("podman")
        .env("CONTAINERS_CONF", state.path().join("containers.conf"))
        .args([
            "exec",
            "users-pod-0-scopehub",
            "/scopehub",
            "admin",
            "create",
        ])
        .args(["--email", "admin@example.com"])
        .args(["--database-url", "sqlite:///data/scopehub.db"])
        .args(["--public-url", "http://127.0.0.1:4040/"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let (status, me) = admin.login("admin@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{me}");
    assert!(link_token(&String::from_utf8_lossy(&made.stdout)).is_some());
    let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();

    // An instance, placed on the collector container.
    let (status, created) = admin
        .post(
            "/api/instances",
            json!({"org_id": org, "name": "in containers"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["instance"]["id"].as_str().unwrap().to_owned();
    let token = created["probe_token"].as_str().unwrap().to_owned();
    admin.wait_for_instance(&id, "ready").await;

    // A probe reports through the frontend; the map shows it.
    let (status, body) =
        post_report(BASE, &token, "probe-1", fixture("probe-full-1.msgpack.gz")).await;
    assert_eq!(status, 200, "{body}");
    let (status, view) = admin
        .get(&format!("/api/app/{id}/api/topology/hosts"))
        .await;
    assert_eq!(status, 200, "{view}");
    assert!(
        !view["nodes"].as_object().unwrap().is_empty(),
        "the host of the report is on the map: {view}"
    );
    // The monitoring container scrapes every role; the site admin sees them all ready through
    // the frontend, and the collector shard with the instance on it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, system) = admin.get("/api/admin/system").await;
        assert_eq!(status, 200, "{system}");
        let targets = system["targets"].as_array().cloned().unwrap_or_default();
        let ready: std::collections::BTreeSet<&str> = targets
            .iter()
            .filter(|t| t["ready"] == true)
            .filter_map(|t| t["role"].as_str())
            .collect();
        let shard_holds_it = targets.iter().any(|t| {
            t["shard"] == "collector-0"
                && t["instances"]
                    .as_array()
                    .is_some_and(|list| list.iter().any(|i| i["instance"] == id.as_str()))
        });
        if ready.len() == 5 && shard_holds_it {
            assert_eq!(
                ready.into_iter().collect::<Vec<_>>(),
                ["collector", "frontend", "provisioning", "ui", "users"]
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "monitoring never saw every role ready: {system}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // /metrics only on each role's operational port, which monitoring scrapes: the frontend's
    // public port answers it 404.
    let public = reqwest::get(format!("{BASE}/metrics")).await.unwrap();
    assert_eq!(public.status(), 404);
    let ops = reqwest::get("http://127.0.0.1:4050/metrics").await.unwrap();
    assert_eq!(ops.status(), 200);
    assert!(
        ops.text()
            .await
            .unwrap()
            .contains("scopehub_edge_own_seconds")
    );
    // The web app is served from the image too.
    let page = reqwest::get(format!("{BASE}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<html"));
}
