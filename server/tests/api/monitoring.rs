//! The monitoring role (issue 16): in-process in `serve`, and alone against role processes.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::agent::{Agent, site_admin};
use crate::support::process::{ServerProcess, free_port};
use crate::support::{AppOptions, Backend, TestApp, eventually};
use scopehub::identity::internal::{Caller, Envelope, InternalSecret, LIFETIME_MS};
use scopehub::identity::{ClientIp, Identity, User, Via};
use shared::users::AccountStatus;

/// The target of `role` in an answer of `/api/admin/system`.
fn target<'a>(status: &'a Value, role: &str) -> Option<&'a Value> {
    status["targets"]
        .as_array()?
        .iter()
        .find(|t| t["role"] == role)
}

/// Whether `rule` is firing in an answer of `/api/admin/system`.
fn firing(status: &Value, rule: &str) -> bool {
    status["firing"]
        .as_array()
        .is_some_and(|f| f.iter().any(|a| a["rule"] == rule))
}

/// Events of `rule` in an answer of `/api/admin/system`'s alert history.
fn events_of(status: &Value, rule: &str) -> usize {
    status["alert_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["rule"] == rule)
        .count()
}

/// Airplane Mode watches itself: site admins see the process up and ready with its request rate
/// and latency; nobody else sees the page.
#[tokio::test]
async fn serve_monitors_itself_for_site_admins() {
    let options = AppOptions {
        monitor_every: Some(Duration::from_millis(300)),
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    // Scraped a few times (the page's own requests make the rates).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let found = loop {
        let (status, body) = admin.get("/api/admin/system").await;
        assert_eq!(status, 200, "{body}");
        if let Some(t) = target(&body, "serve")
            && t["history"].as_array().is_some_and(|h| h.len() >= 3)
            && t["requests_per_second"].is_number()
            && t["p99_seconds"].is_number()
        {
            break t.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never scraped: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(found["up"], true, "{found}");
    assert_eq!(found["ready"], true, "{found}");
    assert!(
        found["p99_seconds"].as_f64().is_some_and(|p| p > 0.0),
        "{found}"
    );
    assert!(
        found["instance"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    let (status, _) = Agent::new(&app).get("/api/admin/system").await;
    assert_eq!(status, 401);
    let (mut user, _) =
        crate::support::agent::approved_user(&app, &mut admin, "someone@example.com").await;
    let (status, _) = user.get("/api/admin/system").await;
    assert_eq!(status, 403);
}

/// A replica down for a minute: one alert, one mail to every site admin through the outbox — and
/// no second one while it stays down.
#[tokio::test]
async fn an_alert_is_mailed_to_site_admins_once() {
    let options = AppOptions {
        monitor_every: Some(Duration::from_millis(200)),
        monitor_also: vec!["users=http://127.0.0.1:9".to_owned()],
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let subject = "[Scopehub] FIRING: RoleNotReady on users 127.0.0.1:9";
    let mut advanced = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = admin.get("/api/admin/system").await;
        assert_eq!(status, 200, "{body}");
        let down = target(&body, "users").is_some_and(|t| t["up"] == false);
        if down && !advanced {
            // Seen down once: a minute later it still is.
            app.clock.advance(61_000);
            advanced = true;
        }
        let fired = body["firing"].as_array().is_some_and(|f| {
            f.iter()
                .any(|a| a["rule"] == "RoleNotReady" && a["role"] == "users")
        });
        if fired {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no alert: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    async fn mails(admin: &mut Agent, subject: &str) -> Vec<Value> {
        let (status, outbox) = admin.get("/api/admin/outbox").await;
        assert_eq!(status, 200, "{outbox}");
        outbox
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["subject"] == subject)
            .cloned()
            .collect()
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let sent = loop {
        let sent = mails(&mut admin, subject).await;
        if !sent.is_empty() {
            break sent;
        }
        assert!(std::time::Instant::now() < deadline, "no mail");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["to"], crate::support::agent::ADMIN);
    assert!(
        sent[0]["body"]
            .as_str()
            .unwrap()
            .contains("not been ready for a minute")
    );
    // Several more rounds, still down: still one mail.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(mails(&mut admin, subject).await.len(), 1);
}

/// The collector's part of the page: the shard, the probes connected to it and each instance's
/// ingest rate, busiest first, as reports arrive.
#[tokio::test]
async fn serve_shows_its_shard_with_each_instances_ingest() {
    let options = AppOptions {
        monitor_every: Some(Duration::from_millis(300)),
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let (status, org) = admin.post("/api/orgs", json!({"name": "ops"})).await;
    assert_eq!(status, 201, "{org}");
    let org = org["id"].as_str().unwrap();
    let (busy, token) = admin.create_ready_instance(org, "busy").await;
    let (quiet, _) = admin.create_ready_instance(org, "quiet").await;
    let report = crate::reports::fixture("probe-full-4.msgpack.gz");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let serve = loop {
        let (status, body) =
            crate::support::split::post_report(&app.url, &token, "probe-1", report.clone()).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = admin.get("/api/admin/system").await;
        assert_eq!(status, 200, "{body}");
        let serve = target(&body, "serve").cloned().unwrap_or_default();
        let ingesting = serve["instances"].as_array().is_some_and(|list| {
            list.first().is_some_and(|i| {
                i["instance"] == busy.as_str()
                    && i["reports_per_second"].as_f64().is_some_and(|r| r > 0.0)
            })
        });
        if ingesting {
            break serve;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ingest seen: {body}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    assert_eq!(serve["shard"], "local", "{serve}");
    assert_eq!(serve["probes"], 1.0, "{serve}");
    let instances = serve["instances"].as_array().unwrap();
    assert_eq!(instances[0]["probes"], 1.0, "{serve}");
    assert!(instances[0]["window_bytes"].as_f64().unwrap() > 0.0);
    // The quiet instance is listed after it, with nothing coming in.
    let listed_quiet = instances
        .iter()
        .find(|i| i["instance"] == quiet.as_str())
        .unwrap_or_else(|| panic!("{serve}"));
    assert_eq!(listed_quiet["probes"], 0.0);
    assert!(
        serve["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["reports_per_second"].as_f64().is_some_and(|r| r > 0.0)),
        "{serve}"
    );
}

/// The SMTP server refuses connections: the outbox fills with mail whose delivery failed, the
/// page shows it, and after ten minutes MailFailing fires (once).
#[tokio::test]
async fn mail_that_keeps_failing_fires_an_alert() {
    let port = free_port();
    let options = AppOptions {
        monitor_every: Some(Duration::from_millis(200)),
        smtp_url: Some(format!("smtp://127.0.0.1:{port}")),
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let (status, _) = Agent::new(&app)
        .post(
            "/api/users/signup",
            json!({"email": "waiting@example.com", "password": crate::support::agent::PASSWORD}),
        )
        .await;
    assert_eq!(status, 202);
    let mut advanced = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = admin.get("/api/admin/system").await;
        assert_eq!(status, 200, "{body}");
        let serve = target(&body, "serve").cloned().unwrap_or_default();
        if serve["mail_failing"].as_f64().is_some_and(|n| n >= 1.0) && !advanced {
            assert!(serve["mail_queue"].as_f64().unwrap() >= 1.0, "{serve}");
            app.clock.advance(10 * 60_000 + 1_000);
            advanced = true;
        }
        if firing(&body, "MailFailing") {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "no alert: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let serve = target(&body, "serve").unwrap();
    assert!(
        serve["mail_failures_per_second"].is_number(),
        "failed attempts are counted: {serve}"
    );
    // Still failing a few rounds later: one firing event, no storm.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, body) = admin.get("/api/admin/system").await;
    assert_eq!(events_of(&body, "MailFailing"), 1, "{body}");
}

/// `serve` with `history`, scraping itself every 300 ms; its site admin, and the probe token of a
/// ready instance `name` in the admin's org "ops".
async fn watched_with_history(
    history: scopehub::collector::history::HistoryConfig,
    limits: Option<shared::instances::Limits>,
    name: &str,
) -> Option<(TestApp, Agent, String)> {
    let options = AppOptions {
        monitor_every: Some(Duration::from_millis(300)),
        limits,
        history: Some(history),
        ..AppOptions::default()
    };
    let app = TestApp::spawn_with(Backend::Sqlite, options).await?;
    let mut admin = site_admin(&app).await;
    let (status, org) = admin.post("/api/orgs", json!({"name": "ops"})).await;
    assert_eq!(status, 201, "{org}");
    let (_, token) = admin
        .create_ready_instance(org["id"].as_str().unwrap(), name)
        .await;
    Some((app, admin, token))
}

/// A collector whose history buffer cannot take a report drops every report's history: the page
/// shows the drops, and once they have gone on for a minute HistoryDropping fires (once). Ingest
/// itself is unaffected.
#[tokio::test]
async fn history_that_is_dropped_fires_an_alert() {
    use scopehub::collector::history::{HistoryConfig, HistoryLocation};
    let folder = tempfile::tempdir().unwrap();
    let history = HistoryConfig {
        // Smaller than any report: each one's history is dropped.
        buffer_bytes: 1,
        flush_interval: Duration::from_secs(1),
        retention_interval: Duration::from_secs(3600),
        ..HistoryConfig::new(HistoryLocation::Folder(folder.path().to_owned()))
    };
    let limits = shared::instances::Limits {
        max_probes: 10,
        max_report_bytes: 10 << 20,
        max_reports_per_second: 1_000,
    };
    let Some((app, mut admin, token)) = watched_with_history(history, Some(limits), "lossy").await
    else {
        return;
    };
    // A probe keeps reporting while the page is watched: every scrape sees new drops.
    let (url, report) = (
        app.url.clone(),
        crate::reports::fixture("probe-full-4.msgpack.gz"),
    );
    let probe = tokio::spawn(async move {
        loop {
            let (status, body) =
                crate::support::split::post_report(&url, &token, "probe-1", report.clone()).await;
            assert_eq!(
                status, 200,
                "history dropped, reports still accepted: {body}"
            );
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    });
    let mut advanced = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = admin.get("/api/admin/system").await;
        assert_eq!(status, 200, "{body}");
        let serve = target(&body, "serve").cloned().unwrap_or_default();
        let dropping = serve["history_per_second"]["dropped_buffer_full"]
            .as_f64()
            .is_some_and(|r| r > 0.0);
        if firing(&body, "HistoryDropping") {
            break body;
        }
        // A minute on, and again if a slow scrape saw no drop and started the minute over.
        if dropping {
            app.clock.advance(60_000 + 1_000);
            advanced = true;
        }
        assert!(!probe.is_finished(), "the probe stopped: {body}");
        assert!(std::time::Instant::now() < deadline, "no alert: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(advanced, "fired before a minute of drops: {body}");
    // Still dropping a few scrapes later: one firing event, no storm.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    probe.abort();
    let (_, body) = admin.get("/api/admin/system").await;
    assert_eq!(events_of(&body, "HistoryDropping"), 1, "{body}");
}

/// A collector whose history store takes nothing keeps its reports' history waiting, older at
/// every flush: the page shows how long, and once the oldest has waited over 5 minutes for 5
/// minutes HistoryStalled fires (once), before any history is dropped. It resolves when the
/// store takes the reports again.
#[tokio::test]
async fn history_that_waits_for_a_failing_store_fires_an_alert() {
    use scopehub::collector::history::{HistoryConfig, HistoryLocation};
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path().join("history");
    std::fs::create_dir_all(&root).unwrap();
    let history = HistoryConfig {
        flush_interval: Duration::from_millis(300),
        retention_interval: Duration::from_secs(3600),
        ..HistoryConfig::new(HistoryLocation::Folder(root.clone()))
    };
    let Some((app, mut admin, token)) = watched_with_history(history, None, "stalled").await else {
        return;
    };
    // The store's folder is a file now: every write fails.
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::write(&root, b"not a folder").unwrap();
    let report = crate::reports::fixture("probe-full-4.msgpack.gz");
    let (status, body) =
        crate::support::split::post_report(&app.url, &token, "probe-1", report).await;
    assert_eq!(status, 200, "{body}");

    let waited = |body: &Value| {
        let serve = target(body, "serve").cloned().unwrap_or_default();
        serve["history_oldest_waiting_seconds"].as_f64()
    };
    // Six minutes on, the next flush finds the report still waiting, now for over 5 minutes.
    app.clock.advance(6 * 60_000);
    eventually(Duration::from_secs(20), "the page to show the wait", || {
        let mut admin = admin.clone();
        async move {
            let (_, body) = admin.get("/api/admin/system").await;
            assert!(!firing(&body, "HistoryStalled"), "fired at once: {body}");
            waited(&body).filter(|s| *s > 300.0)
        }
    })
    .await;
    // Five more minutes of it fire the alert, once.
    app.clock.advance(5 * 60_000 + 1_000);
    let body = eventually(Duration::from_secs(20), "HistoryStalled to fire", || {
        let mut admin = admin.clone();
        async move {
            let (_, body) = admin.get("/api/admin/system").await;
            firing(&body, "HistoryStalled").then_some(body)
        }
    })
    .await;
    assert!(!firing(&body, "HistoryDropping"), "{body}");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (_, body) = admin.get("/api/admin/system").await;
    assert_eq!(events_of(&body, "HistoryStalled"), 1, "{body}");

    // The store is back: the report is written, nothing waits, the alert resolves.
    std::fs::remove_file(&root).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let body = eventually(Duration::from_secs(20), "HistoryStalled to resolve", || {
        let mut admin = admin.clone();
        async move {
            let (_, body) = admin.get("/api/admin/system").await;
            (!firing(&body, "HistoryStalled")).then_some(body)
        }
    })
    .await;
    assert_eq!(waited(&body), Some(0.0), "{body}");
    assert_eq!(
        events_of(&body, "HistoryStalled"),
        2,
        "fired, resolved: {body}"
    );
}

/// Server errors fed to a real role: the scrapes see the 5xx share climb, and once it has stayed
/// above 1% for five minutes HighErrorRatio fires — once.
#[tokio::test]
async fn server_errors_fire_the_error_ratio_alert() {
    let options = AppOptions {
        monitor_every: Some(Duration::from_millis(200)),
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    // The database goes away under the app: every request that needs it answers 5xx.
    app.store.close().await;
    let mut advanced = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        for _ in 0..5 {
            let (status, body) = admin.get("/api/orgs").await;
            assert!(status >= 500, "{status} {body}");
        }
        let status = app.monitoring.status();
        let ratio = status
            .targets
            .iter()
            .find(|t| t.role == "serve")
            .and_then(|t| t.error_ratio);
        if ratio.is_some_and(|r| r > 0.5) && !advanced {
            app.clock.advance(5 * 60_000 + 1_000);
            advanced = true;
        }
        if status.firing.iter().any(|a| a.rule == "HighErrorRatio") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "no alert: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(advanced, "fired before five minutes had passed: {status:?}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let fired = app
        .monitoring
        .status()
        .alert_history
        .iter()
        .filter(|e| e.rule == "HighErrorRatio")
        .count();
    assert_eq!(fired, 1);
}

const SECRET: &str = "monitoring-test-secret-0123456789abcdef";

/// `GET /api/admin/system` straight to the monitoring process, as the edge would send it for
/// `identity`.
async fn system_as(base: &str, identity: Option<Identity>) -> (u16, Value) {
    let secret: InternalSecret = SECRET.parse().unwrap();
    let envelope = Envelope {
        caller: Caller::Edge,
        identity,
        grant: None,
        client_ip: ClientIp(Some("127.0.0.1".into())),
        expires_at: scopehub::clock::now_millis() + LIFETIME_MS,
    };
    let mut request = reqwest::Client::new().get(format!("{base}/api/admin/system"));
    for (name, value) in secret.sign(&envelope, &Method::GET, "/api/admin/system") {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn person(is_admin: bool) -> Identity {
    Identity {
        user: User {
            id: "u1".into(),
            email: "ops@example.com".into(),
            status: AccountStatus::Approved,
            is_admin,
        },
        via: Via::Session {
            id: "s1".into(),
            csrf_token: "c1".into(),
        },
    }
}

/// A ui process on a fixed port (so it can be restarted there) and `scopehub monitoring` watching
/// it with `extra` flags: (its dist folder, its address, the ui, monitoring).
fn watched_ui(extra: &[&str]) -> (tempfile::TempDir, String, ServerProcess, ServerProcess) {
    let dist = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let ui = ServerProcess::start_on(
        "ui",
        &listen,
        &["--dist-dir", dist.path().to_str().unwrap()],
    );
    let target = format!("ui=http://{listen}");
    let mut args = vec!["--target", &target, "--internal-secret", SECRET];
    args.extend_from_slice(extra);
    let monitoring = ServerProcess::start("monitoring", &args);
    (dist, listen, ui, monitoring)
}

/// `scopehub monitoring` against a role process: up and ready while it runs; killed (SIGKILL),
/// down with the reason; restarted, up again, the outage kept in its history.
#[tokio::test]
async fn the_monitoring_role_sees_a_role_go_down_and_come_back() {
    let (dist, listen, mut ui, monitoring) = watched_ui(&["--scrape-interval", "0.3"]);
    let dist_dir = dist.path().to_str().unwrap().to_owned();
    monitoring.wait_ready().await;
    let base = monitoring.url.clone();
    let ui_is = |up: bool| {
        let base = base.clone();
        async move {
            let (status, body) = system_as(&base, Some(person(true))).await;
            assert_eq!(status, 200, "{body}");
            let t = target(&body, "ui")?.clone();
            (t["up"] == up && t["ready"] == up).then_some(t)
        }
    };
    eventually(Duration::from_secs(20), "ui up", || ui_is(true)).await;
    assert_eq!(system_as(&base, Some(person(false))).await.0, 403);
    assert_eq!(system_as(&base, None).await.0, 401);

    ui.signal(9);
    ui.wait_exit(Duration::from_secs(10));
    let down = eventually(Duration::from_secs(20), "ui down", || ui_is(false)).await;
    assert!(
        down["error"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{down}"
    );

    let _ui = ServerProcess::start_on("ui", &listen, &["--dist-dir", &dist_dir]);
    let back = eventually(Duration::from_secs(20), "ui up again", || ui_is(true)).await;
    let history = back["history"].as_array().unwrap();
    assert!(history.iter().any(|p| p["up"] == false), "{back}");
    assert!(history.last().unwrap()["up"] == true);
    assert!(
        !monitoring.stderr().contains("panicked"),
        "{}",
        monitoring.stderr()
    );
}

/// The end to end: `scopehub monitoring` with a users role for its mail, watching a ui
/// process. Killed (SIGKILL), the ui is reported down at once and, a minute later, RoleNotReady
/// fires — mailed once to the site admin; restarted, it resolves — mailed once. (About 70 s: the
/// rule's minute is real time here.)
#[tokio::test]
async fn a_killed_role_fires_an_alert_mailed_once_and_resolves_after_restart() {
    let Some(db) = crate::support::TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let created = crate::support::process::binary()
        .args(["admin", "create", "--email", "ops@example.com"])
        .args(["--database-url", db.url.as_str()])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let users = ServerProcess::start(
        "users",
        &[
            "--database-url",
            db.url.as_str(),
            "--internal-secret",
            SECRET,
        ],
    );
    users.wait_ready().await;
    let (dist, listen, mut ui, monitoring) =
        watched_ui(&["--scrape-interval", "1", "--users-url", &users.url]);
    let dist_dir = dist.path().to_str().unwrap().to_owned();
    monitoring.wait_ready().await;
    let base = monitoring.url.clone();
    let status = || {
        let base = base.clone();
        async move {
            let (code, body) = system_as(&base, Some(person(true))).await;
            assert_eq!(code, 200, "{body}");
            body
        }
    };
    eventually(Duration::from_secs(20), "ui up", || async {
        target(&status().await, "ui")
            .is_some_and(|t| t["up"] == true)
            .then_some(())
    })
    .await;

    ui.signal(9);
    ui.wait_exit(Duration::from_secs(10));
    let firing = |s: &Value| {
        s["firing"].as_array().is_some_and(|f| {
            f.iter()
                .any(|a| a["rule"] == "RoleNotReady" && a["role"] == "ui")
        })
    };
    let fired = eventually(Duration::from_secs(90), "RoleNotReady to fire", || async {
        let s = status().await;
        firing(&s).then_some(s)
    })
    .await;
    assert_eq!(target(&fired, "ui").unwrap()["up"], false);
    let mails = |state: &'static str| {
        let db = &db;
        async move {
            db.scalar_i64(&format!(
                "SELECT COUNT(*) FROM outbox WHERE to_email = 'ops@example.com' \
                 AND subject LIKE '[Scopehub] {state}: RoleNotReady on ui %'"
            ))
            .await
        }
    };
    eventually(Duration::from_secs(20), "the firing mail", || async {
        (mails("FIRING").await == 1).then_some(())
    })
    .await;

    let _ui = ServerProcess::start_on("ui", &listen, &["--dist-dir", &dist_dir]);
    eventually(
        Duration::from_secs(30),
        "RoleNotReady to resolve",
        || async { (!firing(&status().await)).then_some(()) },
    )
    .await;
    eventually(Duration::from_secs(20), "the resolved mail", || async {
        (mails("RESOLVED").await == 1).then_some(())
    })
    .await;
    // Exactly one mail per change of state.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!((mails("FIRING").await, mails("RESOLVED").await), (1, 1));
    assert!(
        !monitoring.stderr().contains("panicked"),
        "{}",
        monitoring.stderr()
    );
}
