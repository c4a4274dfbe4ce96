//! The binary's life: start-up while the database is unreachable, graceful shutdown on SIGTERM.

use std::io::{Read, Write};
use std::time::Duration;

use shared::{ApiError, ErrorCode};

use crate::support::process::ServerProcess;
use crate::support::{eventually, pg};

#[tokio::test]
async fn starts_without_its_database_and_becomes_ready_when_it_appears() {
    let Some(pg) = pg::server() else { return };
    let name = pg.unique_database_name();
    let url = pg.url(&name);
    let server = ServerProcess::serve(&[
        "--database-url",
        &url,
        "--dist-dir",
        "/nonexistent",
        "--first-signup-admin",
        "true",
    ]);
    let client = reqwest::Client::new();

    // Serving, alive, but not ready, and saying why; the API answers 503 in our shape.
    let health = client
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = client
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let why: ApiError = ready.json().await.unwrap();
    assert!(
        why.message.contains("database not ready"),
        "{}",
        why.message
    );
    let version = client
        .get(format!("{}/api/version", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(version.status(), 503);
    assert_eq!(
        version.json::<ApiError>().await.unwrap().code,
        ErrorCode::Unavailable
    );

    // The retries are logged.
    let logs = &server;
    eventually(
        Duration::from_secs(30),
        "a logged retry",
        move || async move {
            logs.stderr()
                .contains("database not ready; retrying")
                .then_some(())
        },
    )
    .await;

    // The database appears: the server migrates it and becomes ready by itself.
    pg.create_named_database(&name).await;
    eventually(Duration::from_secs(60), "/readyz to turn 200", || {
        let client = client.clone();
        let url = format!("{}/readyz", server.url);
        async move { (client.get(url).send().await.ok()?.status() == 200).then_some(()) }
    })
    .await;
    let version = client
        .get(format!("{}/api/version", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(version.status(), 200);
    let logs = server.stderr();
    assert!(!logs.contains("panicked"));
    // Each 503 above was logged once, with its cause, and /readyz's "not ready" not as an error.
    assert!(logs.contains("request failed"), "{logs}");
    assert!(!logs.contains("response failed"), "{logs}");
}

#[tokio::test]
async fn sigterm_stops_accepting_and_finishes_in_flight_requests() {
    let data = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::serve(&["--data-dir", data.path().to_str().unwrap()]);
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(30), "readiness", || {
        let client = client.clone();
        let url = format!("{}/readyz", server.url);
        async move { (client.get(url).send().await.ok()?.status() == 200).then_some(()) }
    })
    .await;

    let addr = server.url.trim_start_matches("http://").to_owned();
    let body = r#"{"message":"in flight during shutdown","url":"/"}"#;
    let (head, tail) = body.split_at(10);
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        conn,
        "POST /api/client-errors HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{head}",
        body.len()
    )
    .unwrap();
    conn.flush().unwrap();
    // Let the server start on the request before it is told to stop.
    std::thread::sleep(Duration::from_millis(300));
    server.signal(libc::SIGTERM);

    // It stops accepting new connections…
    eventually(Duration::from_secs(10), "the listener to close", || {
        let addr = addr.clone();
        async move { std::net::TcpStream::connect(&addr).is_err().then_some(()) }
    })
    .await;

    // …but the request already in flight completes normally.
    conn.write_all(tail.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 204"), "{response}");

    let status = server.wait_exit(Duration::from_secs(20));
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{}",
        server.stderr()
    );
    assert!(server.stderr().contains("draining in-flight requests"));
}

#[tokio::test]
async fn the_ui_role_serves_the_app_and_no_api() {
    let dist = tempfile::tempdir().unwrap();
    crate::support::write_fake_dist(dist.path());
    let dist_dir = dist.path().join("dist");
    let server = ServerProcess::start("ui", &["--dist-dir", dist_dir.to_str().unwrap()]);
    let client = reqwest::Client::new();

    let page = client
        .get(format!("{}/some/deep/link", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("SPA INDEX"));
    let api = client
        .get(format!("{}/api/version", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404);
    assert_eq!(
        api.json::<ApiError>().await.unwrap().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// A rolling update's view of SIGTERM: not ready at once, still serving through the shutdown
/// delay, then websockets end with 1001 ("going away") so clients reconnect elsewhere.
#[tokio::test]
async fn sigterm_turns_unready_keeps_serving_for_the_delay_then_closes_websockets_with_1001() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use crate::support::agent::{ADMIN, Agent, PASSWORD};

    let data = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::serve(&[
        "--data-dir",
        data.path().to_str().unwrap(),
        "--shutdown-delay",
        "2",
    ]);
    server.wait_ready().await;
    let mut admin = Agent::for_url(&server.url);
    let (status, _) = admin
        .post(
            "/api/users/signup",
            serde_json::json!({"email": ADMIN, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 202);
    let (_, me) = admin.login(ADMIN, PASSWORD).await;
    let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();
    let (status, created) = admin
        .post(
            "/api/instances",
            serde_json::json!({"org_id": org, "name": "i"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["instance"]["id"].as_str().unwrap().to_owned();
    admin.wait_for_instance(&id, "ready").await;
    let request = crate::support::browser_ws_request(
        &format!(
            "ws://{}/api/app/{id}/api/topology/hosts/ws?t=200ms",
            server.url.trim_start_matches("http://")
        ),
        &admin.cookie.clone().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    server.signal(libc::SIGTERM);
    let signalled = std::time::Instant::now();
    let ready = eventually(Duration::from_secs(1), "/readyz to say 503", || {
        let url = format!("{}/readyz", server.url);
        async move {
            let response = reqwest::get(url).await.ok()?;
            (response.status() == 503).then_some(response.json::<ApiError>().await.ok()?)
        }
    })
    .await;
    assert!(ready.message.contains("shutting down"), "{}", ready.message);
    let (status, _) = admin.get("/api/users/me").await;
    assert_eq!(status, 200, "still serving during the delay");

    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert!(
        signalled.elapsed() >= Duration::from_millis(1_500),
        "closed after {:?}, before the delay was over",
        signalled.elapsed()
    );
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));
    let status = server.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}: {}", server.stderr());
}
