//! The `scopehub` command line: bad input, roles not built yet, `migrate`.

use crate::support::process::binary;
use crate::support::{Backend, TestDb};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = binary().args(args).output().expect("run scopehub");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_flags_exit_nonzero_naming_the_flag() {
    let (code, _, stderr) = run(&["serve", "--no-such-flag"]);
    assert_eq!(code, 2);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("unexpected argument '--no-such-flag'"),
        "stderr: {stderr}"
    );
}

#[test]
fn invalid_database_urls_exit_nonzero_naming_the_problem() {
    let (code, _, stderr) = run(&["serve", "--database-url", "mysql://localhost/db"]);
    assert_ne!(code, 0);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("--database-url")
            && first.contains("must start with sqlite:// or postgres://"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&["migrate", "--database-url", "postgres://db:notaport/x"]);
    assert_ne!(code, 0);
    assert!(
        stderr
            .lines()
            .next()
            .unwrap_or_default()
            .contains("invalid PostgreSQL URL"),
        "{stderr}"
    );
}

#[test]
fn invalid_env_fallbacks_are_reported_like_flags() {
    let out = binary()
        .args(["serve"])
        .env("SCOPEHUB_LISTEN", "not-an-address")
        .output()
        .expect("run scopehub");
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .next()
            .unwrap_or_default()
            .contains("not-an-address"),
        "{stderr}"
    );
}

#[test]
fn monitoring_targets_are_checked_at_start() {
    let (code, _, stderr) = run(&["monitoring", "--target", "users=ftp://x"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not an http(s) URL"), "{stderr}");
    let (code, _, stderr) = run(&["monitoring"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--target"), "{stderr}");
}

#[test]
fn roles_behind_the_edge_need_the_internal_secret() {
    for (role, extra) in [
        ("users", &[][..]),
        (
            "provisioning",
            &[
                "--users-url",
                "http://127.0.0.1:1",
                "--collector-shard",
                "a=http://127.0.0.1:2",
            ][..],
        ),
        (
            "collector",
            &[
                "--shard",
                "a",
                "--users-url",
                "http://127.0.0.1:1",
                "--provisioning-url",
                "http://127.0.0.1:2",
            ][..],
        ),
        ("monitoring", &["--target", "users=http://127.0.0.1:1"][..]),
    ] {
        let (code, _, stderr) = run(&[&[role][..], extra].concat());
        assert_eq!(code, 2, "{role}: {stderr}");
        assert!(stderr.contains("--internal-secret"), "{role}: {stderr}");
        let (code, _, stderr) =
            run(&[&[role, "--internal-secret", "too-short"][..], extra].concat());
        assert_eq!(code, 2, "{role}: {stderr}");
        assert!(
            stderr.contains("at least 32 characters"),
            "{role}: {stderr}"
        );
    }
    // Flags of other roles are not accepted: each role takes only what it uses.
    let (code, _, stderr) = run(&["ui", "--database-url", "sqlite::memory:"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = run(&["collector", "--smtp-url", "smtp://x"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn listening_on_a_busy_port_fails_with_one_line() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(&[
        "serve",
        "--listen",
        &addr,
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

async fn migrate_creates_and_migrates_the_database(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let (code, _, stderr) = run(&["migrate", "--database-url", db.url.as_str()]);
    assert_eq!(code, 0, "{stderr}");
    // Already migrated: a second run is a no-op, not an error.
    let (code, _, stderr) = run(&["migrate", "--database-url", db.url.as_str()]);
    assert_eq!(code, 0, "{stderr}");

    // The schema is there and seeded, read with a raw connection (no store, no migrations of its own).
    let seeded = db
        .scalar_i64("SELECT COUNT(*) FROM settings WHERE key = 'installation_id'")
        .await;
    assert_eq!(seeded, 1);
    let applied = db
        .scalar_i64("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .await;
    assert!(applied >= 1);
}
crate::support::both!(migrate_creates_and_migrates_the_database);

async fn admin_create_prints_a_working_one_time_login_link(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let (code, stdout, stderr) = run(&[
        "admin",
        "create",
        "--email",
        " Boss@Example.com",
        "--database-url",
        db.url.as_str(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("boss@example.com is a site admin"),
        "{stdout}"
    );
    let token = crate::support::agent::link_token(&stdout).expect("a link in the output");

    let server =
        crate::support::process::ServerProcess::serve(&["--database-url", db.url.as_str()]);
    server.wait_ready().await;
    let client = reqwest::Client::new();
    let consume = |token: String| {
        client
            .post(format!("{}/api/users/login-link/consume", server.url))
            .json(&serde_json::json!({ "token": token }))
            .send()
    };
    let response = consume(token.clone()).await.unwrap();
    assert_eq!(response.status(), 200);
    let me: serde_json::Value = response.json().await.unwrap();
    assert_eq!(me["user"]["email"], "boss@example.com");
    assert_eq!(me["user"]["is_admin"], true);
    assert_eq!(me["user"]["status"], "approved");
    // One-time.
    assert_eq!(consume(token).await.unwrap().status(), 400);

    let (code, _, stderr) = run(&[
        "admin",
        "create",
        "--email",
        "not an email",
        "--database-url",
        db.url.as_str(),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--email"), "{stderr}");
}
crate::support::both!(admin_create_prints_a_working_one_time_login_link);
