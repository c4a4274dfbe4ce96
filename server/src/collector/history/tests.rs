use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path;
use shared::instances::{Limits, ProbeInfo};

use super::*;
use crate::collector::decode::{self, Format};
use crate::collector::slot::{self, Slot};
use crate::telemetry::Metrics;

const LIMITS: Limits = Limits {
    max_probes: 10,
    max_report_bytes: 64 << 20,
    max_reports_per_second: 100,
};

fn fixture(name: &str) -> Bytes {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/scope")
        .join(name);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into()
}

/// The probe's four reports in the order it sent them: full, delta, delta, full.
const SEQUENCE: [&str; 4] = [
    "probe-full-1.msgpack.gz",
    "probe-delta-2.msgpack.gz",
    "probe-delta-3.msgpack.gz",
    "probe-full-4.msgpack.gz",
];

fn history_on(store: Arc<dyn ObjectStore>, buffer_bytes: usize) -> History {
    let config = HistoryConfig {
        buffer_bytes,
        store_timeout: Duration::from_secs(5),
        ..HistoryConfig::new(HistoryLocation::Folder("unused".into()))
    };
    History::on(store, Path::from("v1"), config, Metrics::new())
}

/// The live window at `at` of `reports` (arrival ms, probe, fixture), as the collector would hold
/// it.
fn live_window(reports: &[(i64, &str, &str)], at: i64, samples: Samples) -> Report {
    let mut slot = Slot::new(LIMITS);
    for (when, probe, name) in reports.iter().filter(|(when, _, _)| *when <= at) {
        let report = decode::decode(&fixture(name), Format::Msgpack, true, 64 << 20).unwrap();
        let probe = ProbeInfo {
            id: (*probe).into(),
            hostname: None,
            version: None,
            last_seen: *when,
        };
        slot.accept(probe, report, *when);
    }
    slot::merge_parts(&slot.parts(at), at, true, samples)
}

fn no_counts(_: &str) -> BoxFuture<'static, WindowCounts> {
    Box::pin(std::future::ready(WindowCounts::default()))
}

/// 14 s before an hour begins: the reports of the first test straddle it.
const T0: i64 = 1_764_662_400_000 - 14_000;

#[tokio::test]
async fn a_past_window_is_the_live_window_it_was() {
    let history = history_on(Arc::new(InMemory::new()), 1 << 30);
    // Two probes, the second 1.5 s behind: each folds into its own part, and the parts merge in
    // the order their oldest reports arrived (which changes as reports leave the window).
    let mut arrivals: Vec<(i64, &str, &str)> = Vec::new();
    for (i, name) in SEQUENCE.iter().enumerate() {
        let at = T0 + 3_000 * i as i64 + 7_000 * (i as i64 / 2);
        arrivals.push((at, "probe-1", *name));
        arrivals.push((at + 1_500, "probe-2", *name));
    }
    for (i, (at, probe, name)) in arrivals.iter().enumerate() {
        history.keep("inst", *at, probe, Format::Msgpack, fixture(name), true);
        // Half are written before the query, half are still in the buffer; the batches straddle
        // an hour.
        if i == 3 {
            assert_eq!(history.flush(T0 + 10_000, &no_counts).await, 1);
        }
    }
    for at in [
        T0 + 1_000,
        T0 + 5_000,
        T0 + 14_000,
        T0 + 20_000,
        T0 + 28_000,
        T0 + 40_000,
    ] {
        let past = history
            .window_at("inst", at, T0 + 60_000, LIMITS, 100_000, Samples::All)
            .await
            .unwrap();
        let live = live_window(&arrivals, at, Samples::All);
        assert!(*past.report == live, "the window at {at} differs");
        let expected = if arrivals
            .iter()
            .any(|(t, _, _)| *t <= at && *t >= at - 15_000)
        {
            Coverage::Kept
        } else {
            Coverage::Gap
        };
        assert_eq!(past.coverage, expected, "at {at}");
    }
    // Each moment after the first was made from the folded parts of the one before (less than a
    // window before it) and the reports between.
    assert_eq!(lock(&history.past).stepped, 5);
    // Written, then asked again: the same answer, now wholly from the store.
    assert_eq!(history.flush(T0 + 60_000, &no_counts).await, 2);
    let kept = history.kept("inst").await.unwrap();
    assert_eq!((kept.from_ms, kept.batches), (Some(T0), 3));
    let mut fresh = history_on(history.store.clone(), 1 << 30);
    fresh.writer = "other".into();
    // Backwards: no moment to step from. With every sample or (for views) the newest only, as
    // the live window has them.
    for at in [T0 + 20_000, T0 + 14_000] {
        for samples in [Samples::All, Samples::Last] {
            let past = fresh
                .window_at("inst", at, T0 + 60_000, LIMITS, 100_000, samples)
                .await
                .unwrap();
            let live = live_window(&arrivals, at, samples);
            assert!(*past.report == live, "at {at}, {samples:?}");
        }
    }
    assert!(
        *fresh
            .window_at(
                "inst",
                T0 + 14_000,
                T0 + 60_000,
                LIMITS,
                100_000,
                Samples::All
            )
            .await
            .unwrap()
            .report
            != live_window(&arrivals, T0 + 14_000, Samples::Last),
        "the fixtures' metrics have several samples in a window"
    );
    // Each moment's newest-sample window was made from the parts folded for its every-sample one
    // (a view read after node details at one moment folds no report again).
    assert_eq!(lock(&fresh.past).stepped, 2);
    // Before the first report: empty, and said so.
    let before = fresh
        .window_at(
            "inst",
            T0 - 1_000,
            T0 + 60_000,
            LIMITS,
            100_000,
            Samples::All,
        )
        .await
        .unwrap();
    assert_eq!(before.coverage, Coverage::BeforeHistory);
    assert!(
        before
            .report
            .topologies
            .values()
            .all(|t| t.nodes.is_empty())
    );
}

/// A kept report that no longer decodes (here a body cut short before it was gzipped) is left out
/// of every window, whether the window is folded from nothing or stepped to from a moment before
/// (its part partly folded when the report failed, so the window is folded again).
#[tokio::test]
async fn a_kept_report_that_does_not_decode_is_left_out_of_its_windows() {
    use std::io::Write;
    let raw = decode::inflate(&fixture(SEQUENCE[1]), true, 64 << 20)
        .unwrap()
        .into_owned();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw[..raw.len() * 2 / 3]).unwrap();
    let damaged = Bytes::from(gz.finish().unwrap());
    // Folded as it is decoded, it fails after some of its nodes went in.
    let mut part = fold::FoldedWindow::default();
    let budget = BudgetLimits::for_report(64 << 20);
    let cut = &raw[..raw.len() * 2 / 3];
    assert!(
        part.accept_encoded(cut, Format::Msgpack, budget, T0, slot::QUANTUM_MS)
            .is_err()
    );
    assert!(part.node_ids().any(|(_, ids)| ids.len() > 0));

    // The damaged report is probe-1's last: a part that lost what came before it shows.
    let good: Vec<(i64, &str, &str)> = vec![
        (T0, "probe-1", SEQUENCE[0]),
        (T0 + 500, "probe-2", SEQUENCE[0]),
        (T0 + 6_500, "probe-2", SEQUENCE[3]),
    ];
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let writer = history_on(store.clone(), 1 << 30);
    for (at, probe, name) in &good {
        writer.keep("inst", *at, probe, Format::Msgpack, fixture(name), true);
    }
    writer.keep(
        "inst",
        T0 + 3_000,
        "probe-1",
        Format::Msgpack,
        damaged,
        true,
    );
    assert_eq!(writer.flush(T0 + 10_000, &no_counts).await, 1);
    let at = T0 + 8_000;
    let live = live_window(&good, at, Samples::All);
    // From nothing.
    let cold = history_on(store.clone(), 1 << 30);
    let past = cold
        .window_at("inst", at, T0 + 60_000, LIMITS, 100_000, Samples::All)
        .await
        .unwrap();
    assert!(*past.report == live, "folded from nothing");
    // Stepped to from a moment before the damaged report.
    let stepped = history_on(store, 1 << 30);
    let before = stepped
        .window_at(
            "inst",
            T0 + 2_000,
            T0 + 60_000,
            LIMITS,
            100_000,
            Samples::All,
        )
        .await
        .unwrap();
    assert!(*before.report == live_window(&good, T0 + 2_000, Samples::All));
    let past = stepped
        .window_at("inst", at, T0 + 60_000, LIMITS, 100_000, Samples::All)
        .await
        .unwrap();
    assert_eq!(lock(&stepped.past).stepped, 1);
    assert!(*past.report == live, "stepped to");
}

/// The folded parts kept for a step forward stay within their bound: the least recently made
/// instance's go first, and a moment over half the bound is not kept.
#[tokio::test]
async fn folded_parts_kept_for_a_step_stay_within_their_bound() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let writer = history_on(store.clone(), 1 << 30);
    for instance in ["a", "b", "c"] {
        writer.keep(
            instance,
            T0,
            "probe-1",
            Format::Msgpack,
            fixture(SEQUENCE[0]),
            true,
        );
    }
    assert_eq!(writer.flush(T0 + 1_000, &no_counts).await, 3);
    let with_bound = |bound: usize| {
        let mut history = history_on(store.clone(), 1 << 30);
        history.config.folded_bytes = bound;
        history
    };
    let one = {
        let history = with_bound(1 << 30);
        history
            .window_at("a", T0 + 2_000, T0 + 60_000, LIMITS, 100_000, Samples::All)
            .await
            .unwrap();
        let bytes = lock(&history.past).folded_bytes;
        assert!(bytes > 0);
        bytes
    };
    // Room for two moments of one probe, not three.
    let history = with_bound(one * 5 / 2);
    for instance in ["a", "b", "c"] {
        history
            .window_at(
                instance,
                T0 + 2_000,
                T0 + 60_000,
                LIMITS,
                100_000,
                Samples::All,
            )
            .await
            .unwrap();
    }
    {
        let past = lock(&history.past);
        let mut kept: Vec<&String> = past.folded.keys().collect();
        kept.sort();
        assert_eq!(kept, ["b", "c"]);
        assert_eq!(past.folded_bytes, 2 * one);
    }
    // A moment over half the bound is not kept.
    let history = with_bound(one * 3 / 2);
    history
        .window_at("a", T0 + 2_000, T0 + 60_000, LIMITS, 100_000, Samples::All)
        .await
        .unwrap();
    assert!(lock(&history.past).folded.is_empty());
    assert_eq!(lock(&history.past).folded_bytes, 0);
}

#[tokio::test]
async fn a_full_buffer_costs_history_not_ingest() {
    let body = fixture(SEQUENCE[0]);
    let history = history_on(Arc::new(InMemory::new()), body.len() * 2);
    for i in 0..3 {
        history.keep("inst", T0 + i, "p", Format::Msgpack, body.clone(), true);
    }
    assert_eq!(lock(&history.buffer).bytes, body.len() * 2);
    let text = history.metrics.encode();
    assert!(
        text.contains("scopehub_history_reports_total{outcome=\"dropped_buffer_full\"} 1"),
        "{text}"
    );
    history.flush(T0 + 5, &no_counts).await;
    assert_eq!(lock(&history.buffer).bytes, 0);
}

#[tokio::test]
async fn a_store_that_fails_keeps_the_reports_for_the_next_flush() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("history");
    std::fs::create_dir_all(&root).unwrap();
    let store = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&root).unwrap());
    let history = history_on(store, 1 << 30);
    history.keep(
        "inst",
        T0,
        "p",
        Format::Json,
        Bytes::from_static(b"{}"),
        false,
    );
    // The store's folder is a file now: every write fails.
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::write(&root, b"not a folder").unwrap();
    assert_eq!(history.flush(T0 + 1, &no_counts).await, 0);
    assert!(lock(&history.buffer).bytes > 0);
    let text = history.metrics.encode();
    assert!(text.contains("scopehub_history_reports_total{outcome=\"write_failed\"} 1"));
    // The report waits, older at each flush that cannot write it.
    history.flush(T0 + 90_000, &no_counts).await;
    let text = history.metrics.encode();
    assert!(
        text.contains("scopehub_history_oldest_waiting_seconds 90\n"),
        "{text}"
    );
    std::fs::remove_file(&root).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    assert_eq!(history.flush(T0 + 90_001, &no_counts).await, 1);
    assert_eq!(lock(&history.buffer).bytes, 0);
    let text = history.metrics.encode();
    assert!(
        text.contains("scopehub_history_oldest_waiting_seconds 0\n"),
        "{text}"
    );
    // Kept gzipped, and read back as it came.
    let records = history
        .records_between("inst", T0 - 1, T0, T0 + 3)
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    let (_, r) = &records[0];
    assert!(r.gzipped);
    assert_eq!(decode::inflate(&r.body, true, 100).unwrap().as_ref(), b"{}");
}

#[tokio::test]
async fn retention_and_quota_delete_the_oldest_and_nothing_else() {
    let history = history_on(Arc::new(InMemory::new()), 1 << 30);
    let day = 24 * HOUR_MS;
    let now = T0 + 10 * day;
    let body = Bytes::from(vec![7u8; 10_000]);
    // One batch a day for ten days, and another instance's.
    for d in 0..10 {
        history.keep("inst", T0 + d * day, "p", Format::Json, body.clone(), true);
        history.flush(T0 + d * day, &no_counts).await;
    }
    history.keep("other", T0, "p", Format::Json, body.clone(), true);
    history.flush(T0, &no_counts).await;
    let size = history.kept("inst").await.unwrap().bytes / 10;
    let week = Retention {
        days: 7,
        quota_bytes: 1 << 30,
    };
    assert_eq!(history.enforce("inst", week, now).await.unwrap(), 3);
    let kept = history.kept("inst").await.unwrap();
    assert_eq!((kept.batches, kept.from_ms), (7, Some(T0 + 3 * day)));
    let small = Retention {
        days: 7,
        quota_bytes: size * 4,
    };
    assert_eq!(history.enforce("inst", small, now).await.unwrap(), 3);
    let kept = history.kept("inst").await.unwrap();
    assert_eq!((kept.batches, kept.from_ms), (4, Some(T0 + 6 * day)));
    assert!(kept.bytes <= size * 4);
    // Within bounds: nothing more goes; the other instance was never touched.
    assert_eq!(history.enforce("inst", small, now).await.unwrap(), 0);
    assert_eq!(history.kept("other").await.unwrap().batches, 1);
    // A purge takes everything of the instance, written or waiting.
    history.keep("inst", now, "p", Format::Json, body, true);
    assert_eq!(history.purge("inst").await.unwrap(), 4);
    assert_eq!(history.kept("inst").await.unwrap(), Kept::default());
    assert_eq!(lock(&history.buffer).bytes, 0);
    assert_eq!(history.kept("other").await.unwrap().batches, 1);
}

#[tokio::test]
async fn the_timeline_samples_batch_headers_over_the_range() {
    let history = history_on(Arc::new(InMemory::new()), 1 << 30);
    for i in 0..50i64 {
        history.keep(
            "inst",
            T0 + i * 10_000,
            "p",
            Format::Json,
            Bytes::new(),
            true,
        );
        let counts = move |_: &str| -> BoxFuture<'static, WindowCounts> {
            Box::pin(std::future::ready(WindowCounts {
                counts: BTreeMap::from([("host".to_owned(), i as u64)]),
                views: BTreeMap::from([("hosts".to_owned(), 2 * i as u64)]),
                views_at_ms: Some(T0 + i * 10_000 - 5_000),
            }))
        };
        history.flush(T0 + i * 10_000, &counts).await;
    }
    let all = history
        .timeline("inst", T0, T0 + 500_000, 100, T0 + 600_000)
        .await
        .unwrap();
    assert_eq!(all.len(), 50);
    assert!(all.windows(2).all(|w| w[0].last_ms < w[1].last_ms));
    assert_eq!(all[49].window.counts["host"], 49);
    assert_eq!(all[49].window.views["hosts"], 98);
    assert_eq!(all[49].window.views_at_ms, Some(T0 + 485_000));
    let few = history
        .timeline("inst", T0, T0 + 500_000, 5, T0 + 600_000)
        .await
        .unwrap();
    let counts: Vec<u64> = few.iter().map(|h| h.window.counts["host"]).collect();
    assert_eq!(counts, [0, 12, 24, 36, 49]);
}

#[test]
fn history_urls() {
    assert_eq!(
        "s3://bucket/some/prefix/".parse(),
        Ok(HistoryLocation::S3 {
            bucket: "bucket".into(),
            prefix: "some/prefix".into()
        })
    );
    assert_eq!(
        "file:///var/lib/x".parse(),
        Ok(HistoryLocation::Folder("/var/lib/x".into()))
    );
    assert_eq!(
        "./data/history".parse(),
        Ok(HistoryLocation::Folder("./data/history".into()))
    );
    assert!("s3://".parse::<HistoryLocation>().is_err());
    assert!("gs://bucket".parse::<HistoryLocation>().is_err());
}

/// Staging files a crash left among a history folder's objects are deleted by the sweep (each
/// retention pass, the first at start) once they are older than any write in flight; objects,
/// fresh staging files, names the store lists as objects, and files outside its objects stay.
#[tokio::test]
async fn staging_files_a_crash_left_are_swept() {
    let folder = tempfile::tempdir().unwrap();
    let hour = folder.path().join("v1/inst/2026-12-03T06");
    std::fs::create_dir_all(&hour).unwrap();
    let aged = |path: std::path::PathBuf, age: Duration| {
        std::fs::write(&path, b"x").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(std::time::SystemTime::now() - age)
            .unwrap();
        path
    };
    let hour_old = Duration::from_secs(3_600);
    let batch = aged(hour.join("1-2-w-1.batch"), hour_old);
    let left = aged(hour.join("1-2-w-2.batch#7"), hour_old);
    let in_flight = aged(hour.join("1-2-w-3.batch#8"), Duration::from_secs(5));
    let listed = aged(hour.join("notes#draft"), hour_old);
    let outside = aged(folder.path().join("elsewhere.batch#9"), hour_old);
    let config = HistoryConfig::new(HistoryLocation::Folder(folder.path().to_owned()));
    let history = History::open(config, Metrics::new()).unwrap();
    assert_eq!(history.sweep().await, 1);
    assert!(!left.exists(), "the old staging file is deleted");
    assert!(batch.exists() && in_flight.exists() && listed.exists() && outside.exists());
    assert_eq!(history.sweep().await, 0);
    // Once old enough, the one in flight goes too.
    assert_eq!(sweep_staging(&folder.path().join("v1"), Duration::ZERO), 1);
    assert!(!in_flight.exists() && batch.exists() && listed.exists());
}

/// The timeline's counts: each report topology's distinct nodes over every probe's part (a node
/// two probes report counted once), endpoints and empty topologies left out.
#[test]
fn a_node_is_counted_once_however_many_parts_hold_it() {
    let reports: Vec<Report> = [SEQUENCE[0], SEQUENCE[3], SEQUENCE[1]]
        .iter()
        .map(|name| decode::decode(&fixture(name), Format::Msgpack, true, 64 << 20).unwrap())
        .collect();
    let parts: Vec<slot::Part> = reports
        .iter()
        .chain(&reports[..1])
        .map(|report| {
            let mut part = FoldedWindow::default();
            part.accept(report.clone(), T0, slot::QUANTUM_MS);
            Arc::new(Mutex::new(part))
        })
        .collect();
    let mut expected: BTreeMap<String, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for report in &reports {
        for (name, topology) in &report.topologies {
            if name != "Endpoint" && !topology.nodes.is_empty() {
                let ids = expected.entry(name.clone()).or_default();
                ids.extend(topology.nodes.keys().map(|id| id.as_str()));
            }
        }
    }
    let expected: BTreeMap<String, u64> = expected
        .into_iter()
        .map(|(name, ids)| (name, ids.len() as u64))
        .collect();
    assert!(
        expected["Process"] > 0 && expected.len() >= 2,
        "{expected:?}"
    );
    assert_eq!(node_counts(&parts, T0), expected);
    assert_eq!(node_counts(&parts[..1], T0)["Process"], {
        reports[0].topologies["Process"].nodes.len() as u64
    });
}
