//! What the load benchmarks share: a fresh `scopehub serve`, an account with an instance, RSS and
//! CPU readings from /proc.

// Each benchmark binary uses part of this.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_scopehub");
const EMAIL: &str = "bench@example.com";
const PASSWORD: &str = "correct horse battery staple";

pub struct Server {
    pub child: Child,
    pub url: String,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh `scopehub serve` with room for `probes` probes reporting as fast as they like.
pub fn start() -> Server {
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
        .args([
            "--default-max-probes",
            "200",
            "--default-max-reports-per-second",
            "1000",
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

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time the process used so far (user + system), in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The account and instance a benchmark reads and reports into.
pub struct Tenant {
    pub client: reqwest::Client,
    pub cookie: String,
    pub instance: String,
    pub token: String,
}

impl Tenant {
    /// A logged-in GET on the instance's app API, e.g. `api/topology/containers`.
    pub async fn get(&self, url: &str, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{url}/api/app/{}/{path}", self.instance))
            .header("cookie", format!("scopehub_session={}", self.cookie))
            .send()
            .await
            .expect("request")
    }
}

/// Signs up the first account (the site admin), creates an instance and waits until it is ready.
pub async fn tenant(url: &str) -> Tenant {
    tenant_with(url, |_| {}).await
}

/// As [`tenant`], calling `promote(email)` between sign-up and log-in (outside Airplane Mode the
/// first account is not an admin: `scopehub admin create` makes it one).
pub async fn tenant_with(url: &str, promote: impl Fn(&str)) -> Tenant {
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
    promote(EMAIL);
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
    Tenant {
        client,
        cookie,
        instance: id,
        token: created["probe_token"].as_str().unwrap().to_owned(),
    }
}
