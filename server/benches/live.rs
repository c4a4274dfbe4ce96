//! The collector under live load (docs/benchmarks.md, "Live load"): the workload of the comparison
//! with Scope's app. A real `scopehub serve` takes Scope-sized "medium" reports (150 processes, 50
//! containers, 16 images, 400 connections per host) from `scopehub loadgen`, each of P probes every
//! 3 s, while one keep-alive client reads the UI's default views. Then a burst: as many reports as
//! the load generator can send for 15 s, and the first read after it.
//!
//! `cargo bench -p scopehub --bench live` (about ten minutes). Not a test: it asserts nothing
//! about speed, it prints the numbers. `LIVE_PROBES=50` runs only that row of medium hosts,
//! `LIVE_LARGE=0` skips the row of "large" hosts (600 processes, 200 containers, 1,600 connections;
//! `LIVE_LARGE=20` runs it with 20 probes instead of 10), `LIVE_BURST=0` skips the burst,
//! `LIVE_DEBUG=1` prints every read's size and its time to the first byte,
//! `LIVE_RSS_TRACE=1` every resident-memory sample in order (where the peaks fall) and the
//! server's `Rss*` lines at the end. Where the memory goes: the `working_set` bench.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{BIN, Server, Tenant, cpu_seconds, rss_kib, start, tenant};

/// Long enough for the 15 s window to fill.
const FILL: Duration = Duration::from_secs(17);
const READS: Duration = Duration::from_secs(20);
/// By then every probe has sent its first report (they come every 3 s).
const STEADY_AFTER: Duration = Duration::from_secs(5);
/// Ingest measured again after the reads, with nobody reading, over the interval of the
/// server's periodic work (the timeline's view count, once a minute per instance unwatched):
/// a shorter window would hold a whole count or none.
const UNWATCHED: Duration = Duration::from_secs(60);
const VIEWS: [&str; 3] = [
    "api/topology/containers",
    "api/topology/processes",
    "api/topology",
];

/// The load generator stands in for probes on other hosts: it builds, encodes and gzips every
/// report anew (about twice the server's CPU per report), all its probes at once every 3 s. While
/// a client reads it runs in Linux's idle scheduling class (`chrt --idle`, as `Priority::Idle`):
/// it takes the cores' idle time, not the server's or the reader's. At `nice` 19 (until session 33)
/// it still held a core for a whole time slice when a reader woke up, which added about a
/// millisecond to the reads' p99s. The burst, which nobody reads during, runs it at the usual
/// priority, as fast as it can.
#[derive(Clone, Copy, PartialEq)]
enum Priority {
    Idle,
    Usual,
}

fn loadgen(
    server: &Server,
    token: &str,
    (shape, hosts): (&str, usize),
    (interval, priority): (&str, Priority),
    secs: u64,
) -> Child {
    let mut command = if priority == Priority::Idle {
        let mut chrt = Command::new("chrt");
        chrt.args(["--idle", "0", BIN]);
        chrt
    } else {
        Command::new(BIN)
    };
    command
        .args(["loadgen", "--url", &server.url, "--token", token])
        .args(["--shape", shape, "--hosts", &hosts.to_string()])
        .args(["--interval", interval, "--duration", &secs.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn loadgen")
}

async fn reports_received(server: &Server, tenant: &Tenant) -> u64 {
    let details: Value = tenant
        .client
        .get(format!("{}/api/instances/{}", server.url, tenant.instance))
        .header("cookie", format!("scopehub_session={}", tenant.cookie))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    details["usage"]["reports_received"].as_u64().unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn metric(server: &Server, series: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Renders the server made so far (the rest of its reads were served renders it kept).
async fn renders_made(server: &Server) -> u64 {
    metric(server, "scopehub_collector_renders_total").await as u64
}

/// The server's CPU seconds so far: all of it, and its threads' decoding and folding reports.
async fn cpu_seconds_spent(server: &Server) -> (f64, f64) {
    let decoding = metric(server, "scopehub_collector_report_cpu_seconds_total").await;
    (cpu_seconds(server.child.id()), decoding)
}

async fn timed_get(server: &Server, tenant: &Tenant, path: &str) -> f64 {
    let started = Instant::now();
    let response = tenant.get(&server.url, path).await;
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    let t_head = started.elapsed().as_secs_f64() * 1000.0;
    let body = response.bytes().await.unwrap();
    let t = started.elapsed().as_secs_f64() * 1000.0;
    if std::env::var("LIVE_DEBUG").is_ok() {
        eprintln!(
            "{path}: {} bytes, head {t_head:.1} ms, all {t:.1} ms",
            body.len()
        );
    }
    t
}

/// One row: `probes` hosts of `shape` ("medium" or "large") reporting every 3 s.
async fn steady(shape: &str, probes: usize) {
    let server = start();
    let tenant = tenant(&server.url).await;
    let pid = server.child.id();
    let mut feed = loadgen(
        &server,
        &tenant.token,
        (shape, probes),
        ("3", Priority::Idle),
        (FILL + READS + UNWATCHED).as_secs() + 5,
    );
    // While nobody reads, the server's CPU goes to ingest: over the whole fill, and in the steady
    // state, once every probe's first report (which makes all its nodes) is in.
    let cpu_at = async || {
        let received = reports_received(&server, &tenant).await;
        (cpu_seconds_spent(&server).await, received)
    };
    let first = cpu_at().await;
    tokio::time::sleep(STEADY_AFTER).await;
    let steady = cpu_at().await;
    tokio::time::sleep(FILL - STEADY_AFTER).await;
    let filled = cpu_at().await;
    // Milliseconds per report between two moments: all the server's CPU, and its decoding.
    let per_report_both = |((cpu0, dec0), n0): ((f64, f64), u64),
                           ((cpu1, dec1), n1): ((f64, f64), u64)| {
        let n = n1.saturating_sub(n0).max(1) as f64;
        ((cpu1 - cpu0) * 1000.0 / n, (dec1 - dec0) * 1000.0 / n)
    };
    let per_report = |a, b| per_report_both(a, b).0;
    let (ingest_ms, ingest_all_ms) = (per_report(steady, filled), per_report(first, filled));
    let renders_before = renders_made(&server).await;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); VIEWS.len()];
    // Resident memory sampled every 100 ms while the views are read.
    let reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let reading = reading.clone();
        std::thread::spawn(move || {
            let mut rss = Vec::new();
            while reading.load(std::sync::atomic::Ordering::Relaxed) {
                rss.push(rss_kib(pid) as f64 / 1024.0);
                std::thread::sleep(Duration::from_millis(100));
            }
            rss
        })
    };
    let started = Instant::now();
    while started.elapsed() < READS {
        for (i, view) in VIEWS.iter().enumerate() {
            samples[i].push(timed_get(&server, &tenant, view).await);
        }
    }
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut rss = sampler.join().unwrap();
    if std::env::var("LIVE_RSS_TRACE").is_ok() {
        let trace: Vec<String> = rss.iter().map(|m| format!("{m:.0}")).collect();
        eprintln!("RSS MiB every 100 ms while reading: {}", trace.join(" "));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        for line in status
            .lines()
            .filter(|l| l.starts_with("Rss") || l.starts_with("Threads"))
        {
            eprintln!("{line}");
        }
    }
    rss.sort_by(f64::total_cmp);
    let renders = renders_made(&server).await - renders_before;
    let unwatched = cpu_at().await;
    if std::env::var("LIVE_DEBUG").is_ok() {
        let cpu_ms = cpu_seconds(feed.id()) * 1000.0;
        eprintln!(
            "the load generator's CPU: {:.1} ms per report",
            cpu_ms / unwatched.1.max(1) as f64
        );
    }
    tokio::time::sleep(UNWATCHED).await;
    let (unwatched_ms, decoding_ms) = per_report_both(unwatched, cpu_at().await);
    let _ = feed.kill();
    let _ = feed.wait();
    let mut row = match shape {
        "medium" => format!("| {probes} |"),
        _ => format!("| {probes} {shape} |"),
    };
    for mut s in samples {
        s.sort_by(f64::total_cmp);
        row += &format!(
            " {:.1} / {:.1} ({}) |",
            percentile(&s, 0.5),
            percentile(&s, 0.99),
            s.len()
        );
    }
    row += &format!(
        " {:.0} / {:.0} | {unwatched_ms:.1} ({ingest_ms:.1}; {ingest_all_ms:.1}) | {decoding_ms:.1} | {renders} |",
        percentile(&rss, 0.5),
        rss.last().copied().unwrap_or(f64::NAN)
    );
    println!("{row}");
}

async fn burst() {
    let server = start();
    let tenant = tenant(&server.url).await;
    let pid = server.child.id();
    let mut feed = loadgen(
        &server,
        &tenant.token,
        ("medium", 10),
        ("0", Priority::Usual),
        15,
    );
    let _ = feed.wait();
    let received = reports_received(&server, &tenant).await;
    let first = timed_get(&server, &tenant, VIEWS[0]).await;
    let rss = rss_kib(pid);
    println!(
        "| burst: 10 probes at full rate for 15 s | {received} reports | first containers read {first:.1} ms | RSS {:.0} MiB |",
        rss as f64 / 1024.0
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `cargo test --benches` runs benches with `--bench` absent: skip the long run there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("live: run with `cargo bench -p scopehub --bench live`");
        return;
    }
    println!(
        "| probes (medium hosts unless named) | containers ms p50 / p99 (reads) | processes ms p50 / p99 | topology list ms p50 / p99 | RSS MiB median / peak | ingest CPU ms per report: a minute unwatched (the fill's steady state; all the fill) | of which decoding and folding, unwatched | renders made while reading |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    // `LIVE_PROBES=50` (a comma-separated list) runs only those; `LIVE_BURST=0` skips the burst.
    let probes: Vec<usize> = std::env::var("LIVE_PROBES")
        .ok()
        .map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 10, 50]);
    for p in probes {
        steady("medium", p).await;
    }
    // The large hosts' row: ingest of the "large" report (Scope: 40.7 ms of CPU each).
    let large: usize = std::env::var("LIVE_LARGE")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(10);
    if large > 0 {
        steady("large", large).await;
    }
    if std::env::var("LIVE_BURST").as_deref() != Ok("0") {
        burst().await;
    }
}
