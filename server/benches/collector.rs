//! Collector benchmarks (docs/benchmarks.md): decoding and merging the real probe's reports, and
//! rendering the containers and processes views for 1, 10 and 100 probes.
//!
//! `cargo bench -p scopehub --bench collector`

use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use scopehub::collector::bounded::BudgetLimits;
use scopehub::collector::decode::{Format, decode, inflate, parse, with_inflated};
use scopehub::collector::fold::{FoldedWindow, Samples, merge_window, merge_window_on};
use scopehub::collector::render::Ctx;
use scopehub::collector::render::topologies::{Query, topology, topology_list};
use scopehub::collector::report::{Report, Time};
use scopehub::collector::slot::{QUANTUM_MS, WINDOW_MS};
use scopehub::collector::wire::WireReport;
use scopehub::probe::loadgen::{Shape, synthetic_report};

/// The allocator the `scopehub` binary uses, so that these numbers are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/scope")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// The four captured publishes (full, delta, delta, full): decoded from gzip msgpack and merged
/// into one window, as the collector does for every report it keeps.
fn decode_and_merge(c: &mut Criterion) {
    let bodies: Vec<Vec<u8>> = [
        "probe-full-1",
        "probe-delta-2",
        "probe-delta-3",
        "probe-full-4",
    ]
    .iter()
    .map(|n| fixture(&format!("{n}.msgpack.gz")))
    .collect();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(bodies.len() as u64));
    group.bench_function("decode+merge 4 fixture reports", |b| {
        b.iter(|| {
            let reports: Vec<Report> = bodies
                .iter()
                .map(|body| decode(body, Format::Msgpack, true, 64 << 20).unwrap())
                .collect();
            Report::merge_all(reports.iter())
        })
    });
    group.finish();
}

/// One window of `probes` synthetic hosts (10 containers × 3 connections each), merged.
fn window(probes: usize) -> Report {
    let now = Time(1_800_000_000_000_000_000);
    let reports: Vec<Report> = (0..probes)
        .map(|h| synthetic_report(h, probes, &Shape::small(10, 3), now))
        .collect();
    Report::merge_all(reports.iter())
}

/// Rendering a view from a merged window to its summaries, as `GET …/api/topology/{view}` does.
fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    group.sample_size(20);
    for probes in [1usize, 10, 100] {
        let report = window(probes);
        for view in ["containers", "processes"] {
            group.bench_with_input(BenchmarkId::new(view, probes), &report, |b, report| {
                b.iter(|| {
                    let mut ctx = Ctx::new(report, Time(0));
                    let nodes = topology(&mut ctx, view, &Query::default()).unwrap();
                    assert!(!nodes.is_empty());
                    nodes
                })
            });
        }
    }
    group.finish();
}

/// A report (gzipped msgpack) arriving at `at` ms, as ingest takes it: decoded into the thread's
/// kept buffer, the probe's part expired to the window, then the report folded in.
fn arrives(part: &mut FoldedWindow, body: &[u8], at: i64) {
    with_inflated(body, true, 64 << 20, |raw| {
        let report: WireReport =
            parse(raw, Format::Msgpack, BudgetLimits::for_report(64 << 20)).unwrap();
        part.expire(at, WINDOW_MS);
        part.accept(report, at, QUANTUM_MS);
    })
    .unwrap();
}

/// The costs of a read at 50 probes of Scope-sized ("medium") hosts, apart: decoding one medium
/// report, merging the 50 probes' parts into the window, and rendering the default views from it.
fn medium_window(c: &mut Criterion) {
    let now = Time(1_800_000_000_000_000_000);
    let probes = 50;
    let parts: Vec<Report> = (0..probes)
        .map(|h| synthetic_report(h, probes, &Shape::medium(), now))
        .collect();
    let body = scopehub::probe::encode(&parts[0], false).unwrap().0;
    let mut group = c.benchmark_group("medium");
    group.sample_size(10);
    group.bench_function("decode one medium report", |b| {
        b.iter(|| {
            let raw = inflate(&body, true, 64 << 20).unwrap();
            parse::<WireReport>(&raw, Format::Msgpack, BudgetLimits::for_report(64 << 20))
                .unwrap()
                .topologies
                .len()
        })
    });
    group.bench_function("footprint of one medium probe's part", |b| {
        let mut part = FoldedWindow::default();
        let raw = inflate(&body, true, 64 << 20).unwrap();
        let report: WireReport =
            parse(&raw, Format::Msgpack, BudgetLimits::for_report(64 << 20)).unwrap();
        part.accept(report, 0, QUANTUM_MS);
        b.iter(|| part.footprint())
    });
    // Ingest in the steady state, as it happens: each report new (its own times: latest values
    // outdated, a sample more per metric, the oldest bucket's leaving), for the medium and the
    // issue's "large" host (600 processes, 200 containers, 1,600 connections). Making and encoding
    // the report is not timed. (The same report again, the bench before 2026-12-04, cost the same.)
    for (shape_name, shape) in [("medium", Shape::medium()), ("large", Shape::large())] {
        let (mut part, mut at) = (FoldedWindow::default(), 0i64);
        group.bench_function(
            format!("decode and fold one {shape_name} report as they arrive, every 3 s"),
            |b| {
                b.iter_batched(
                    || {
                        at += 3_000;
                        let time = Time(now.0 + at * 1_000_000);
                        let report = synthetic_report(0, probes, &shape, time);
                        (scopehub::probe::encode(&report, false).unwrap().0, at)
                    },
                    |(body, at)| {
                        arrives(&mut part, &body, at);
                        body
                    },
                    criterion::BatchSize::SmallInput,
                )
            },
        );
    }
    // The same with ten large probes taking turns, as at the live bench's large row: each report
    // folds into a part last touched ten reports ago, which the caches no longer hold.
    {
        let hosts = 10;
        let (mut parts, mut at, mut turn) = (
            (0..hosts)
                .map(|_| FoldedWindow::default())
                .collect::<Vec<_>>(),
            0i64,
            0usize,
        );
        group.bench_function(
            "decode and fold one large report as they arrive, 10 probes taking turns",
            |b| {
                b.iter_batched(
                    || {
                        turn = (turn + 1) % hosts;
                        if turn == 0 {
                            at += 3_000;
                        }
                        let time = Time(now.0 + at * 1_000_000);
                        let report = synthetic_report(turn, hosts, &Shape::large(), time);
                        (scopehub::probe::encode(&report, false).unwrap().0, at, turn)
                    },
                    |(body, at, turn)| {
                        arrives(&mut parts[turn], &body, at);
                        body
                    },
                    criterion::BatchSize::SmallInput,
                )
            },
        );
    }
    // A past moment read cold: each probe's part made from nothing out of the window's five
    // reports (as kept: gzipped msgpack), then materialised for the views.
    let bodies: Vec<Vec<u8>> = (0..5i64)
        .map(|i| {
            let report =
                synthetic_report(0, probes, &Shape::medium(), Time(now.0 + i * 3_000_000_000));
            scopehub::probe::encode(&report, false).unwrap().0
        })
        .collect();
    group.bench_function(
        "fold one probe's window of five medium reports from nothing",
        |b| {
            b.iter(|| {
                let mut part = FoldedWindow::default();
                for (i, body) in bodies.iter().enumerate() {
                    // Into the thread's kept buffer, as the collector decodes.
                    with_inflated(body, true, 64 << 20, |raw| {
                        let report: WireReport =
                            parse(raw, Format::Msgpack, BudgetLimits::for_report(64 << 20))
                                .unwrap();
                        part.accept(report, i as i64 * 3_000, QUANTUM_MS);
                    })
                    .unwrap();
                }
                part.materialize_with(Samples::Last)
            })
        },
    );
    group.bench_function(
        "fold one probe's window of five medium reports from nothing, as decoded",
        |b| {
            b.iter(|| {
                let mut part = FoldedWindow::default();
                for (i, body) in bodies.iter().enumerate() {
                    // As history folds a past moment's kept reports.
                    with_inflated(body, true, 64 << 20, |raw| {
                        part.accept_encoded(
                            raw,
                            Format::Msgpack,
                            BudgetLimits::for_report(64 << 20),
                            i as i64 * 3_000,
                            QUANTUM_MS,
                        )
                    })
                    .unwrap()
                    .unwrap();
                }
                part.materialize_with(Samples::Last)
            })
        },
    );
    let folded: Vec<FoldedWindow> = parts
        .iter()
        .map(|report| {
            let mut part = FoldedWindow::default();
            for at in [0, 3_000, 6_000, 9_000, 12_000] {
                part.accept(report.clone(), at, QUANTUM_MS);
            }
            part
        })
        .collect();
    group.bench_function("merge 50 parts", |b| {
        b.iter(|| merge_window(folded.iter(), true))
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    group.bench_function(format!("merge 50 parts on {cores} cores"), |b| {
        b.iter(|| merge_window_on(&folded, FoldedWindow::materialize, cores, true))
    });
    let window = merge_window(folded.iter(), true);
    for view in ["containers", "processes"] {
        group.bench_function(format!("render {view}, 50 probes"), |b| {
            b.iter(|| {
                let mut ctx = Ctx::new(&window, Time(0));
                topology(&mut ctx, view, &Query::default()).unwrap()
            })
        });
    }
    group.bench_function("render the topology list, 50 probes", |b| {
        b.iter(|| {
            let mut ctx = Ctx::new(&window, Time(0));
            topology_list(&mut ctx, &Query::default())
        })
    });
    // What an unwatched instance of the live benchmark's large row renders once a minute for
    // the timeline's counts: the list with its options' defaults, 10 large hosts.
    let hosts = 10;
    let large = Report::merge_all(
        (0..hosts)
            .map(|h| synthetic_report(h, hosts, &Shape::large(), now))
            .collect::<Vec<_>>()
            .iter(),
    );
    group.bench_function(
        "render the topology list with the options' defaults, 10 large probes",
        |b| {
            b.iter(|| {
                let mut ctx = Ctx::new(&large, Time(0));
                topology_list(&mut ctx, &Query::defaults())
            })
        },
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = decode_and_merge, render, medium_window
}
criterion_main!(benches);
