//! Faults, with real processes (issue 14, item 9): the database stopped while Scopehub serves.
//! Requests that need it answer 503 at once, `/readyz` says why, open maps keep streaming from the
//! collector, and when the database is back everything recovers by itself.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::reports::fixture;
use crate::support::agent::{ADMIN, Agent, PASSWORD, first_admin_at};
use crate::support::pg::DedicatedPg;
use crate::support::process::ServerProcess;
use crate::support::smtp::SmtpServer;
use crate::support::{browser_ws_request, eventually};

async fn get_status(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Text frames of `socket` received within `window`; panics if it closes.
async fn frames_within(socket: &mut crate::topology::Socket, window: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + window;
    let mut frames = 0;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return frames,
            Ok(Some(Ok(Message::Text(_)))) => frames += 1,
            Ok(Some(Ok(Message::Close(frame)))) => panic!("the map closed: {frame:?}"),
            Ok(None | Some(Err(_))) => panic!("the map's websocket ended"),
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test]
async fn postgres_stopped_while_serving_answers_503_at_once_and_everything_recovers() {
    let Some(mut pg) = DedicatedPg::start() else {
        return;
    };
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let server = ServerProcess::serve(&[
        "--database-url",
        &pg.url(),
        "--dist-dir",
        "/nonexistent",
        "--first-signup-admin",
        "true",
        "--smtp-url",
        &smtp.url(),
    ]);
    server.wait_ready().await;
    let base = server.url.clone();

    // An admin with an instance that has a report, and its map open.
    let (mut admin, me) = first_admin_at(&base).await;
    let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();
    let (id, probe_token) = admin.create_ready_instance(&org, "prod").await;
    let (status, body) = crate::support::split::post_report(
        &base,
        &probe_token,
        "p",
        fixture("probe-full-1.msgpack.gz"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ws = format!(
        "ws://{}/api/app/{id}/api/topology/processes/ws?t=200ms",
        base.trim_start_matches("http://")
    );
    let (mut socket, _) =
        tokio_tungstenite::connect_async(browser_ws_request(&ws, admin.cookie.as_ref().unwrap()))
            .await
            .expect("map websocket");
    assert!(frames_within(&mut socket, Duration::from_secs(1)).await > 0);

    // The database goes away.
    pg.stop();
    let readyz = format!("{base}/readyz");
    // Within about a second the health watch sees it, and /readyz says so.
    eventually(
        Duration::from_secs(10),
        "/readyz to say the database is unreachable",
        || async {
            let (status, body) = get_status(&readyz).await;
            (status == 503 && body.contains("database unreachable")).then_some(())
        },
    )
    .await;
    // Requests that need it answer 503 at once: not after the pool's 5 s wait for a connection.
    for path in ["/api/users/me", "/api/instances?org_id=x", "/api/orgs"] {
        let started = Instant::now();
        let (status, body) = admin.get(path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["code"], "unavailable", "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{path} waited {:?}",
            started.elapsed()
        );
    }
    // Each was counted as a database error, for monitoring to see.
    let metrics = get_status(&format!("{base}/metrics")).await.1;
    let errors = crate::support::metric(&metrics, "scopehub_database_errors_total");
    assert!(errors >= 3.0, "{errors}");
    // The open map goes on streaming from the collector's memory.
    assert!(frames_within(&mut socket, Duration::from_secs(3)).await > 5);

    // The database comes back: everything recovers without a restart.
    pg.resume();
    eventually(
        Duration::from_secs(30),
        "/readyz to say 200 again",
        || async { (get_status(&readyz).await.0 == 200).then_some(()) },
    )
    .await;
    let (status, me) = admin.get("/api/users/me").await;
    assert_eq!(status, 200, "the session survived: {me}");
    let mut again = Agent::for_url(&base);
    assert_eq!(again.login(ADMIN, PASSWORD).await.0, 200);
    // Mail is delivered, and the reconciler converges on a new instance.
    let (status, _) = Agent::for_url(&base)
        .post(
            "/api/users/signup",
            json!({"email": "after@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 202);
    let smtp_ref = &smtp;
    eventually(
        Duration::from_secs(30),
        "the mail sent after the outage",
        || async move {
            smtp_ref
                .messages()
                .into_iter()
                .find(|m| m.contains("after@example.com"))
        },
    )
    .await;
    let (status, created) = admin
        .post("/api/instances", json!({"org_id": org, "name": "after"}))
        .await;
    assert_eq!(status, 201, "{created}");
    admin
        .wait_for_instance(created["instance"]["id"].as_str().unwrap(), "ready")
        .await;
    assert!(frames_within(&mut socket, Duration::from_secs(1)).await > 0);
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

/// A tmpfs of `mib` MiB mounted on a fresh folder, unmounted when dropped. `None` when this
/// machine does not let the test mount one (not root), unless `REQUIRE_TMPFS=1`.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            return Some(SmallDisk { dir });
        }
        assert!(
            !crate::support::required("REQUIRE_TMPFS"),
            "REQUIRE_TMPFS=1 but a tmpfs cannot be mounted here"
        );
        crate::support::warn(
            "WARNING: cannot mount a tmpfs (not root?); skipping the full-disk test",
        );
        None
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fills what is left of it with one file.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        while file.write_all(&chunk).is_ok() {}
        while file.write_all(&[0u8]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn sqlite_on_a_full_disk_answers_507_keeps_reading_and_recovers_when_space_is_freed() {
    let Some(disk) = SmallDisk::mount(8) else {
        return;
    };
    let server = ServerProcess::serve(&[
        "--data-dir",
        disk.path().to_str().unwrap(),
        "--dist-dir",
        "/nonexistent",
    ]);
    server.wait_ready().await;
    let (mut admin, _) = first_admin_at(&server.url).await;

    // The disk fills up. Writes fail once SQLite needs a page it cannot get (its write-ahead log
    // has some room left first), with a clear 507; nothing half-written.
    let filler = disk.fill();
    let mut made = Vec::new();
    let refused = loop {
        let name = format!("org {}", made.len());
        let (status, body) = admin.post("/api/orgs", json!({"name": name})).await;
        if status != 201 {
            break (status, body);
        }
        made.push(name);
        assert!(made.len() < 5_000, "writes never failed on a full disk");
    };
    assert_eq!(refused.0, 507, "{}", refused.1);
    assert!(
        refused.1["message"]
            .as_str()
            .unwrap()
            .contains("storage is full"),
        "{}",
        refused.1
    );
    // Reads go on.
    let (status, me) = admin.get("/api/users/me").await;
    assert_eq!(status, 200, "{me}");

    // Space is freed: writes work again without a restart, and nothing was lost or corrupted.
    std::fs::remove_file(filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = admin.post("/api/orgs", json!({"name": "after"})).await;
        if status == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes never worked again: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, orgs) = admin.get("/api/orgs").await;
    let names: Vec<&str> = orgs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    for name in made.iter().map(String::as_str).chain(["after"]) {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    drop(server);
    let db = format!("sqlite://{}", disk.path().join("scopehub.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db)
        .await
        .unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(check, "ok");
}
