//! Resident memory per probe under load (docs/benchmarks.md): a real `scopehub serve` takes
//! reports from `scopehub loadgen` with N synthetic probes (10 containers × 3 connections each)
//! for longer than the 15 s window; its RSS is sampled from /proc and compared with the idle
//! server's. One fresh server per N, so the numbers do not carry over.
//!
//! `cargo bench -p scopehub --bench memory` (about two minutes).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_scopehub");
const EMAIL: &str = "bench@example.com";
const PASSWORD: &str = "correct horse battery staple";
const RUN: Duration = Duration::from_secs(25);

struct Server {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let data = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--dist-dir",
            "/nonexistent",
        ])
        .args([
            "--data-dir",
            data.path().to_str().unwrap(),
            "--log-format",
            "json",
        ])
        // Room for 100 probes at one report a second each.
        .args([
            "--default-max-probes",
            "200",
            "--default-max-reports-per-second",
            "500",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn scopehub serve");
    let out = child.stdout.take().unwrap();
    let url = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("Scopehub is running at ")
                .map(|u| u.trim_end_matches('/').to_owned())
        })
        .expect("serve announces its URL");
    Server {
        child,
        url,
        _data: data,
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Signs up the first account (the site admin), creates an instance and returns its probe token.
async fn instance_token(url: &str) -> String {
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method,
                path: &str,
                cookie: Option<&str>,
                csrf: Option<&str>,
                body: Value| {
        let mut r = client
            .request(method, format!("{url}{path}"))
            .header("origin", url)
            .json(&body);
        if let Some(c) = cookie {
            r = r.header("cookie", format!("scopehub_session={c}"));
        }
        if let Some(t) = csrf {
            r = r.header("x-csrf-token", t);
        }
        r.send()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{url}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "server never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    call(
        reqwest::Method::POST,
        "/api/users/signup",
        None,
        None,
        json!({"email": EMAIL, "password": PASSWORD}),
    )
    .await
    .unwrap();
    let login = call(
        reqwest::Method::POST,
        "/api/users/login",
        None,
        None,
        json!({"email": EMAIL, "password": PASSWORD}),
    )
    .await
    .unwrap();
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.strip_prefix("scopehub_session="))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
        .next()
        .expect("session cookie");
    let me: Value = login.json().await.unwrap();
    let csrf = me["csrf_token"].as_str().unwrap().to_owned();
    let me: Value = call(
        reqwest::Method::GET,
        "/api/users/me",
        Some(&cookie),
        None,
        Value::Null,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let org = me["orgs"][0]["id"].as_str().unwrap();
    let created: Value = call(
        reqwest::Method::POST,
        "/api/instances",
        Some(&cookie),
        Some(&csrf),
        json!({"org_id": org, "name": "bench"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let id = created["instance"]["id"].as_str().unwrap().to_owned();
    loop {
        let details: Value = call(
            reqwest::Method::GET,
            &format!("/api/instances/{id}"),
            Some(&cookie),
            None,
            Value::Null,
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if details["instance"]["state"] == "ready" {
            break;
        }
        assert!(Instant::now() < deadline, "instance never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    created["probe_token"].as_str().unwrap().to_owned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `cargo test --benches` runs benches with `--bench` absent: skip the long run there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("memory: run with `cargo bench -p scopehub --bench memory`");
        return;
    }
    println!("| probes | idle RSS (MiB) | RSS under load (MiB) | per probe (KiB) |");
    println!("|---:|---:|---:|---:|");
    for probes in [10usize, 50, 100] {
        let server = start();
        let token = instance_token(&server.url).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = rss_kib(server.child.id());
        let mut loadgen = Command::new(BIN)
            .args(["loadgen", "--url", &server.url, "--token", &token])
            .args([
                "--hosts",
                &probes.to_string(),
                "--containers",
                "10",
                "--connections",
                "3",
            ])
            .args(["--interval", "1", "--duration", &RUN.as_secs().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn loadgen");
        let mut peak = idle;
        let started = Instant::now();
        while started.elapsed() < RUN {
            tokio::time::sleep(Duration::from_millis(500)).await;
            // Past the first window the state is what a steady stream of reports keeps.
            if started.elapsed() > Duration::from_secs(16) {
                peak = peak.max(rss_kib(server.child.id()));
            }
        }
        let _ = loadgen.wait();
        println!(
            "| {probes} | {:.1} | {:.1} | {} |",
            idle as f64 / 1024.0,
            peak as f64 / 1024.0,
            peak.saturating_sub(idle) / probes as u64
        );
    }
}
