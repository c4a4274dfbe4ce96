//! The edge's cost (`cargo bench -p scopehub --bench edge`; numbers in docs/benchmarks.md).
//!
//! One collector shard holds an instance fed by `scopehub loadgen` (small shape, 10 hosts). The
//! same requests — `GET …/api/topology/containers` and `POST /api/report` — are timed three ways:
//! straight to the collector (the client signs the identity as the edge would), through nginx as a
//! plain keep-alive reverse proxy in front of it (the reference), and through `scopehub frontend`
//! (which also authenticates each request, from its identity cache). Closed loop: `CONCURRENCY`
//! clients, each on its own keep-alive connection, for `SECONDS` per measurement.
//! `EDGE_SECONDS` and `EDGE_CONCURRENCY` override them.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use prometheus_parse::{Scrape, Value};
use scopehub::identity::internal::{Caller, Envelope, InternalSecret, LIFETIME_MS};
use scopehub::identity::{ClientIp, Grant, Identity, User, Via};
use scopehub::monitoring::signals::quantile;
use support::BIN;

const SECRET: &str = "edge-benchmark-secret-0123456789abcdef0123";

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: nginx's master then stops its workers too.
        if let Ok(pid) = i32::try_from(self.0.id()) {
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `scopehub ROLE …` on `listen`, once it announces itself. `EDGE_THREADS_<ROLE>` sets that
/// role's worker threads (tokio's `TOKIO_WORKER_THREADS`).
fn role(name: &str, listen: &str, args: &[&str]) -> Process {
    let mut command = Command::new(BIN);
    if let Ok(threads) = std::env::var(format!("EDGE_THREADS_{}", name.to_uppercase())) {
        command.env("TOKIO_WORKER_THREADS", threads);
    }
    let mut child = command
        .args([
            name,
            "--listen",
            listen,
            "--log-format",
            "json",
            "--log",
            "warn",
        ])
        .args(["--internal-secret", SECRET])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn scopehub");
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.starts_with("Scopehub is running at")),
        "{name} did not start"
    );
    std::thread::spawn(move || for _ in lines {});
    Process(child)
}

async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(format!("{url}/readyz"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "{url} never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// nginx (Debian's) as a plain reverse proxy with keep-alive connections to `upstream`.
fn nginx(listen: u16, upstream: &str, dir: &std::path::Path) -> Option<Process> {
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes auto;\n\
             pid {dir}/nginx.pid;\n\
             error_log {dir}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {dir}/body;\n\
               proxy_temp_path {dir}/proxy;\n\
               client_max_body_size 16m;\n\
               upstream collector {{ server {upstream}; keepalive 64; }}\n\
               server {{\n\
                 listen 127.0.0.1:{listen};\n\
                 location / {{\n\
                   proxy_pass http://collector;\n\
                   proxy_http_version 1.1;\n\
                   proxy_set_header Connection \"\";\n\
                 }}\n\
               }}\n\
             }}\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    let child = Command::new("nginx")
        .args(["-c", conf.to_str().unwrap(), "-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Process(child))
}

/// How a request authenticates: as a browser/probe would (through the edge), or with the signed
/// identity the edge would have added (straight to the collector, or through nginx).
#[derive(Clone)]
enum Auth {
    Credentials {
        cookie: String,
        token: String,
    },
    Signed {
        secret: InternalSecret,
        instance: String,
    },
}

impl Auth {
    fn apply(
        &self,
        request: reqwest::RequestBuilder,
        method: &Method,
        path: &str,
        probe: bool,
    ) -> reqwest::RequestBuilder {
        match self {
            Auth::Credentials { cookie, token } => {
                if probe {
                    request.header("authorization", format!("Scope-Probe token={token}"))
                } else {
                    request.header("cookie", format!("scopehub_session={cookie}"))
                }
            }
            Auth::Signed { secret, instance } => {
                let grant = if probe {
                    Grant::Probe {
                        instance: instance.clone(),
                    }
                } else {
                    Grant::Reader {
                        instance: instance.clone(),
                        org: String::new(),
                        role: shared::users::Role::Viewer,
                    }
                };
                let identity = (!probe).then(|| Identity {
                    user: User {
                        id: "bench".into(),
                        email: "bench@example.com".into(),
                        status: shared::users::AccountStatus::Approved,
                        is_admin: false,
                    },
                    via: Via::Session {
                        id: "bench".into(),
                        csrf_token: "bench".into(),
                    },
                });
                let envelope = Envelope {
                    caller: Caller::Edge,
                    identity,
                    grant: Some(grant),
                    client_ip: ClientIp(Some("127.0.0.1".into())),
                    expires_at: scopehub::clock::now_millis() + LIFETIME_MS,
                };
                let mut request = request;
                for (name, value) in secret.sign(&envelope, method, path) {
                    request = request.header(name, value);
                }
                request
            }
        }
    }
}

/// The CPU seconds used so far by process `pid` and its children (nginx's workers).
fn cpu_with_children(pid: u32) -> f64 {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    support::cpu_seconds(pid)
        + children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
            .map(support::cpu_seconds)
            .sum::<f64>()
}

struct Measured {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
}

/// `concurrency` clients sending the request for `seconds`: each as soon as its last answer is
/// in (a closed loop: the proxies' throughput), or, with `rate`, `rate` requests a second in all
/// whatever the answers take (an open loop: latency at a load the servers keep up with, each
/// request timed from when it was due, so a request held up by a slow one counts its wait).
async fn measure(
    base: &str,
    auth: &Auth,
    instance: &str,
    report: Option<Arc<Vec<u8>>>,
    (concurrency, rate): (usize, Option<f64>),
    seconds: u64,
) -> Measured {
    let (method, path) = match report {
        Some(_) => (Method::POST, "/api/report".to_owned()),
        None => (
            Method::GET,
            format!("/api/app/{instance}/api/topology/containers"),
        ),
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (base, auth, path, method, report) = (
            base.to_owned(),
            auth.clone(),
            path.clone(),
            method.clone(),
            report.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let mut pace = rate.map(|rate| {
                let mut pace =
                    tokio::time::interval(Duration::from_secs_f64(concurrency as f64 / rate));
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                pace
            });
            let (mut times, mut failed) = (Vec::new(), 0u64);
            let mut answered = Instant::now();
            while Instant::now() < deadline {
                // Timed from when it was due if the last answer came after that (it waited for
                // it), else from now: tokio's timer wakes up to a millisecond late.
                let due = match &mut pace {
                    Some(pace) => {
                        let due = pace.tick().await.into_std();
                        if answered > due { due } else { Instant::now() }
                    }
                    None => Instant::now(),
                };
                let mut request = client.request(method.clone(), format!("{base}{path}"));
                request = auth.apply(request, &method, &path, report.is_some());
                if let Some(body) = &report {
                    request = request
                        .header("content-type", "application/msgpack")
                        .header("content-encoding", "gzip")
                        .header("x-scope-probe-id", "bench-probe")
                        .body(body.as_ref().clone());
                }
                let ok = match request.send().await {
                    Ok(r) => {
                        let ok = r.status().is_success();
                        ok && r.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                answered = Instant::now();
                if ok {
                    times.push(due.elapsed().as_secs_f64() * 1000.0);
                } else {
                    failed += 1;
                }
            }
            (times, failed)
        }));
    }
    let (mut all, mut failed) = (Vec::new(), 0);
    for task in tasks {
        let (times, f) = task.await.unwrap();
        all.extend(times);
        failed += f;
    }
    all.sort_by(f64::total_cmp);
    let at = |p: f64| {
        all.get(((all.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Measured {
        rps: all.len() as f64 / seconds as f64,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        failed,
    }
}

/// The frontend's `scopehub_edge_own_seconds` histogram: cumulative counts by upper bound, in
/// order, read as the monitoring role reads a scrape.
async fn edge_own_buckets(edge: &str) -> Vec<(f64, f64)> {
    let text = reqwest::get(format!("{edge}/metrics"))
        .await
        .and_then(|r| r.error_for_status())
        .expect("the frontend's metrics")
        .text()
        .await
        .unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    scrape
        .samples
        .into_iter()
        .find_map(|sample| match sample.value {
            Value::Histogram(counts) if sample.metric == "scopehub_edge_own_seconds" => Some(
                counts
                    .iter()
                    .map(|c| (c.less_than, c.count))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .expect("the edge's own histogram")
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("EDGE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let concurrency: usize = std::env::var("EDGE_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    // `EDGE_RATE=2000`: that many requests a second in all instead of as many as answered.
    let rate: Option<f64> = std::env::var("EDGE_RATE").ok().and_then(|s| s.parse().ok());
    let data = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/scopehub.db", data.path().display());
    let [users, provisioning, collector, frontend, nginx_port] = [(); 5].map(|()| free_port());
    let at = |port: u16| format!("127.0.0.1:{port}");
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let shard = format!("shard-a={}", url(collector));
    let _users = role("users", &at(users), &["--database-url", &db]);
    wait_ready(&url(users)).await;
    let _collector = role(
        "collector",
        &at(collector),
        &[
            "--shard",
            "shard-a",
            "--users-url",
            &url(users),
            "--provisioning-url",
            &url(provisioning),
        ],
    );
    let _provisioning = role(
        "provisioning",
        &at(provisioning),
        &[
            "--database-url",
            &db,
            "--users-url",
            &url(users),
            "--collector-shard",
            &shard,
            "--default-max-reports-per-second",
            "100000",
            "--default-max-probes",
            "1000",
        ],
    );
    let frontend_process = role(
        "frontend",
        &at(frontend),
        &[
            "--users-url",
            &url(users),
            "--provisioning-url",
            &url(provisioning),
            "--ui-url",
            &url(users),
            "--collector-shard",
            &shard,
        ],
    );
    for port in [provisioning, collector, frontend] {
        wait_ready(&url(port)).await;
    }
    let edge = url(frontend);
    let tenant = support::tenant_with(&edge, |email| {
        let status = Command::new(BIN)
            .args([
                "admin",
                "create",
                "--email",
                email,
                "--database-url",
                &db,
                "--log",
                "warn",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    })
    .await;
    let mut feed = Command::new(BIN)
        .args([
            "loadgen",
            "--url",
            &edge,
            "--token",
            &tenant.token,
            "--hosts",
            "10",
            "--interval",
            "3",
            "--duration",
            "3600",
            "--log",
            "warn",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let nginx_dir = tempfile::tempdir().unwrap();
    let _nginx = nginx(nginx_port, &at(collector), nginx_dir.path());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let report = Arc::new(
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/scope/probe-full-1.msgpack.gz"
        ))
        .expect("fixture"),
    );
    let signed = Auth::Signed {
        secret: SECRET.parse().unwrap(),
        instance: tenant.instance.clone(),
    };
    let credentials = Auth::Credentials {
        cookie: tenant.cookie.clone(),
        token: tenant.token.clone(),
    };
    let pace = rate.map_or("each as fast as answered".to_owned(), |r| {
        format!("{r:.0} requests/s in all")
    });
    println!(
        "edge benchmark: {concurrency} clients ({pace}) × {seconds} s per row, 2 cores shared by clients and servers\n"
    );
    println!(
        "| request | path | requests/s | p50 ms | p99 ms | failed | proxy CPU µs/request | the edge's own ms p50 / p99 |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (label, body) in [
        ("GET containers view", None),
        ("POST /api/report (3 KB)", Some(report.clone())),
    ] {
        let mut rows = vec![
            (
                "straight to the collector",
                url(collector),
                signed.clone(),
                None,
            ),
            (
                "scopehub frontend",
                edge.clone(),
                credentials.clone(),
                Some(frontend_process.0.id()),
            ),
        ];
        if let Some(nginx) = &_nginx {
            let nginx_row = (
                "nginx → collector",
                url(nginx_port),
                signed.clone(),
                Some(nginx.0.id()),
            );
            rows.insert(1, nginx_row);
        }
        for (path, base, auth, proxy) in rows {
            let cpu_before = proxy.map(cpu_with_children);
            let own_before = edge_own_buckets(&edge).await;
            let m = measure(
                &base,
                &auth,
                &tenant.instance,
                body.clone(),
                (concurrency, rate),
                seconds,
            )
            .await;
            let cpu = match (proxy, cpu_before) {
                (Some(pid), Some(before)) => format!(
                    "{:.0}",
                    (cpu_with_children(pid) - before) * 1e6 / (m.rps * seconds as f64)
                ),
                _ => "–".to_owned(),
            };
            // The frontend's own part of its requests in this row (its histogram's difference):
            // what it adds without the machine's shared stalls that every path's p99 carries.
            let own = if base == edge {
                let row = edge_own_buckets(&edge)
                    .await
                    .iter()
                    .zip(&own_before)
                    .map(|(&(le, after), &(_, before))| (le, after - before))
                    .collect::<Vec<_>>();
                let ms = |q| quantile(q, &row).map_or(f64::NAN, |s| s * 1e3);
                format!("{:.3} / {:.3}", ms(0.5), ms(0.99))
            } else {
                "–".to_owned()
            };
            println!(
                "| {label} | {path} | {:.0} | {:.2} | {:.2} | {} | {cpu} | {own} |",
                m.rps, m.p50_ms, m.p99_ms, m.failed
            );
        }
    }
    if _nginx.is_none() {
        println!("\n(nginx is not installed: apt-get install nginx for the reference rows)");
    }
    // What each role holds after the run: the sizing of k8s/ (requests and limits).
    let rss = |p: &Process| support::rss_kib(p.0.id()) as f64 / 1024.0;
    println!(
        "\nresident memory after the run: frontend {:.0} MiB, users {:.0} MiB, provisioning {:.0} MiB, collector {:.0} MiB",
        rss(&frontend_process),
        rss(&_users),
        rss(&_provisioning),
        rss(&_collector)
    );
    let _ = feed.kill();
    let _ = feed.wait();
}
