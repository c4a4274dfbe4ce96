//! History (docs/benchmarks.md, "History"): what keeping every report costs in storage, and how long
//! a past moment takes to render next to the live window. A real `scopehub serve` keeps history
//! in its data folder while `scopehub loadgen` sends Scope-sized "medium" reports (150 processes,
//! 50 containers, 400 connections per host) from P probes every 3 s; then the containers view is
//! read live (a render shared by every reader), rendered anew from the live window, at past
//! moments never read before (cold: the window is made again from the kept batches), at the same
//! moments again (warm: cached), and a second at a time forward from a moment read (each window
//! made from the one before).
//!
//! `cargo bench -p scopehub --bench history` (about two minutes). Not a test: it prints numbers.
//! `HISTORY_PROBES` (default 10) and `HISTORY_SECS` (default 60) change the load;
//! `HISTORY_COLD` (default 15) the cold moments read (spread over 30 s of the load); with
//! `HISTORY_PIDFILE=path` the server's pid is written there two seconds before the cold moments
//! are read (to attach a profiler to them: `perf record -p $(cat path) -- sleep 3`).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{BIN, start, tenant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::main]
async fn main() {
    let probes = env_or("HISTORY_PROBES", 10);
    let secs = env_or("HISTORY_SECS", 60);
    let server = start();
    let tenant = tenant(&server.url).await;
    let mut load = Command::new(BIN)
        .args(["loadgen", "--url", &server.url, "--token", &tenant.token])
        .args(["--shape", "medium", "--hosts", &probes.to_string()])
        .args(["--interval", "3", "--duration", &(secs + 120).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn loadgen");
    let started = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_secs(secs)).await;

    let text = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let stored = metric(&text, "scopehub_history_reports_total{outcome=\"stored\"}");
    let bytes = metric(&text, "scopehub_history_written_bytes_total");
    let per_report = bytes / stored.max(1.0);
    println!(
        "history: {probes} medium probes for {secs} s: {stored} reports in {:.1} MB of batches, \
         {:.1} KB per report, {:.1} MB per probe per hour (a report every 3 s)",
        bytes / 1e6,
        per_report / 1e3,
        per_report * 1200.0 / 1e6
    );

    let time = |path: String| {
        let tenant = &tenant;
        let url = server.url.clone();
        async move {
            let began = Instant::now();
            let response = tenant.get(&url, &path).await;
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            let _ = response.bytes().await.unwrap();
            began.elapsed().as_secs_f64() * 1e3
        }
    };
    let mut live = Vec::new();
    for _ in 0..15 {
        live.push(time("api/topology/containers".to_owned()).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The live window rendered anew (a parameter no view reads makes a render of its own): what
    // every live read costs once a report has changed the window.
    let mut anew = Vec::new();
    for i in 0..15 {
        anew.push(time(format!("api/topology/containers?bench={i}")).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let rounds = env_or("HISTORY_COLD", 15) as i64;
    if let Ok(file) = std::env::var("HISTORY_PIDFILE") {
        std::fs::write(file, server.child.id().to_string()).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for k in (0..rounds).rev() {
        // Moments well inside the load, each read once cold, then again; latest first, so that
        // none is made from the one read before it (a step forward).
        let at = rfc3339(started + 20_000 + k * 30_000 / rounds);
        let path = format!("api/topology/containers?timestamp={at}");
        cold.push(time(path.clone()).await);
        warm.push(time(path).await);
    }
    // Steps forward of a second from a moment read cold, as a websocket at a past moment advances
    // or a slider is dragged: each moment is made from the one before and the reports between.
    let base = started + 50_000;
    time(format!(
        "api/topology/containers?timestamp={}",
        rfc3339(base)
    ))
    .await;
    let mut steps = Vec::new();
    for k in 1..=12 {
        let at = rfc3339(base + k * 1_000);
        steps.push(time(format!("api/topology/containers?timestamp={at}")).await);
    }
    let (live, anew, cold, warm, step) = (
        median(live),
        median(anew),
        median(cold),
        median(warm),
        median(steps),
    );
    println!(
        "containers view ({probes} probes): live read {live:.1} ms (a shared render), live window \
         rendered anew {anew:.1} ms; past moment cold {cold:.1} ms ({:.2}× the live render), \
         warm {warm:.1} ms ({:.2}× the live read), a second's step forward {step:.1} ms \
         ({:.2}× the live render)",
        cold / anew,
        warm / live,
        step / anew
    );
    let _ = load.kill();
    let _ = load.wait();
}
