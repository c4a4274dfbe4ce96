//! Our probe (`scopehub probe`): reports the host it runs on in Scope's wire format.
//!
//! Owns reading `/proc` (`host.rs`) and publishing reports with backoff. Shares only the report
//! types with the collector. Today it sends full reports every interval; deltas between full
//! reports, containers, and HTTPS come next (see docs/collector.md).

pub mod host;

use std::io::Write;
use std::time::Duration;

use anyhow::Context;

use crate::collector::report::{Report, Time};
use crate::config::ProbeArgs;

const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Encodes a report as the probe sends it: gzip of msgpack (or of JSON with `--json`).
pub fn encode(report: &Report, json: bool) -> anyhow::Result<(Vec<u8>, &'static str)> {
    let (raw, content_type) = if json {
        (serde_json::to_vec(report)?, "application/json")
    } else {
        (rmp_serde::to_vec_named(report)?, "application/msgpack")
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw)?;
    Ok((gz.finish()?, content_type))
}

fn now() -> Time {
    Time(crate::clock::now_millis().saturating_mul(1_000_000))
}

/// `scopehub probe`: collect and publish until stopped (or once, with `--once`).
pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    if args.url.scheme() != "http" {
        anyhow::bail!(
            "--url {}: only http:// is supported by this probe so far",
            args.url
        );
    }
    let report_url = args.url.join("api/report").context("--url")?;
    let probe_id = crate::secrets::random_hex(8);
    let mut collector = host::Collector::new(&args.proc_root, probe_id.clone());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(12))
        .build()?;
    tracing::info!(url = %args.url, probe = %probe_id, host = %collector.hostname, "probe starting");
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = std::time::Instant::now();
        let mut report = collector.collect(now());
        report.window = i64::try_from(args.interval.as_nanos()).unwrap_or(i64::MAX);
        let (body, content_type) = encode(&report, args.json)?;
        let sent = client
            .post(report_url.clone())
            .header("authorization", format!("Scope-Probe token={}", args.token))
            .header("content-type", content_type)
            .header("content-encoding", "gzip")
            .header("x-scope-probe-id", &probe_id)
            .header("x-scope-probe-version", env!("CARGO_PKG_VERSION"))
            .header(
                "user-agent",
                concat!("Scopehub_Probe/", env!("CARGO_PKG_VERSION")),
            )
            .body(body)
            .send()
            .await;
        let outcome = match sent {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                Err(format!(
                    "{status}: {}",
                    text.chars().take(300).collect::<String>()
                ))
            }
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => {
                backoff = Duration::from_secs(1);
                if args.once {
                    return Ok(());
                }
                tokio::time::sleep(args.interval.saturating_sub(started.elapsed())).await;
            }
            Err(error) if args.once => anyhow::bail!("report refused: {error}"),
            Err(error) => {
                tracing::warn!(%error, retry_in_s = backoff.as_secs(), "publishing failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
