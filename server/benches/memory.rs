//! Resident memory per probe under load (docs/benchmarks.md): a real `scopehub serve` takes
//! reports from `scopehub loadgen` with N synthetic probes (10 containers × 3 connections each)
//! for longer than the 15 s window; its RSS is sampled from /proc and compared with the idle
//! server's. One fresh server per N, so the numbers do not carry over.
//!
//! `cargo bench -p scopehub --bench memory` (about two minutes).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{BIN, rss_kib, start, tenant};

const RUN: Duration = Duration::from_secs(25);

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
        let token = tenant(&server.url).await.token;
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
