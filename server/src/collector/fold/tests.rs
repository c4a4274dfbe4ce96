//! The folded window against the plain merge of the same buckets: after every report and every
//! expiry, for real probe reports and for random ones made to hit every merge rule.

use std::collections::BTreeMap;

use super::*;
use crate::collector::bounded::BudgetLimits;
use crate::collector::decode::{Format, inflate, parse, read_fixture};

const QUANTUM: i64 = 1_000;
const WINDOW: i64 = 15_000;

/// The window as the slot kept it before folding: one report per bucket, the bucket's later
/// reports merged into its first.
#[derive(Default)]
struct PlainWindow {
    buckets: VecDeque<(i64, i64, Report)>,
}

impl PlainWindow {
    fn accept(&mut self, report: Report, now: i64) {
        let quantum = now.div_euclid(QUANTUM);
        match self.buckets.back_mut() {
            Some((q, last_at, bucket)) if *q == quantum => {
                bucket.merge(&report);
                *last_at = now;
            }
            _ => self.buckets.push_back((quantum, now, report)),
        }
    }

    fn expire(&mut self, now: i64) {
        while self
            .buckets
            .front()
            .is_some_and(|(_, last_at, _)| now - last_at > WINDOW)
        {
            self.buckets.pop_front();
        }
    }

    fn merged(&self) -> Report {
        Report::merge_plain(self.buckets.iter().map(|(_, _, r)| r))
    }
}

/// A small deterministic generator (no dependency, same sequence on every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

const IDS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
const KEYS: [&str; 3] = ["name", "pid", "state"];

fn random_node(rng: &mut Rng, id: &str, depth: u32) -> Node {
    let mut node = Node::default();
    if rng.chance(70) {
        node.id = id.into();
    }
    if rng.chance(70) {
        node.topology = rng.pick(&["process", "container"]).into();
    }
    for _ in 0..rng.below(3) {
        let members = (0..rng.below(3)).map(|_| rng.pick(&IDS).into()).collect();
        node.sets_mut()
            .insert(rng.pick(&["ips", "ports"]).to_owned(), members);
    }
    node.adjacency = (0..rng.below(3)).map(|_| rng.pick(&IDS).into()).collect();
    for _ in 0..rng.below(2) {
        let members = (0..rng.below(2)).map(|_| rng.pick(&IDS).into()).collect();
        node.parents_mut().insert("host".to_owned(), members);
    }
    for _ in 0..rng.below(3) {
        // Timestamps from a small range: ties, and values older than those already seen.
        let entry = LatestEntry::new(rng.pick(&IDS), Time(rng.below(5) as i64));
        node.latest_mut().insert(rng.pick(&KEYS).to_owned(), entry);
    }
    for _ in 0..rng.below(2) {
        let samples = (0..rng.below(3))
            .map(|_| Sample {
                date: Time(rng.below(6) as i64),
                value: rng.below(10) as f64,
            })
            .collect();
        let metric = Metric {
            samples,
            min: rng.below(10) as f64 - 3.0,
            max: rng.below(10) as f64,
        };
        node.metrics_mut()
            .insert(rng.pick(&["cpu", "mem"]).to_owned(), metric);
    }
    if depth == 0 && rng.chance(15) {
        let child_id = if rng.chance(60) { rng.pick(&IDS) } else { "" };
        node.children.push(random_node(rng, child_id, 1));
    }
    node
}

fn random_report(rng: &mut Rng) -> Report {
    let mut report = Report {
        ts: if rng.chance(20) {
            Time::ZERO
        } else {
            Time(rng.below(20) as i64)
        },
        window: rng.below(4) as i64,
        shortcut: rng.chance(10),
        id: if rng.chance(50) {
            rng.pick(&IDS).to_owned()
        } else {
            String::new()
        },
        dns: if rng.chance(30) {
            serde_json::json!({"n": rng.below(3)})
        } else {
            serde_json::Value::Null
        },
        ..Report::default()
    };
    for name in ["Process", "Container"] {
        if rng.chance(30) {
            continue;
        }
        let topology = report.topologies.entry(name.to_owned()).or_default();
        if rng.chance(30) {
            topology.label = rng.pick(&["one", "two"]).to_owned();
        }
        if rng.chance(30) {
            topology.metadata_templates.insert(
                "os".to_owned(),
                serde_json::json!({"label": rng.pick(&IDS), "priority": rng.below(3)}),
            );
        }
        for _ in 0..rng.below(4) {
            let id = rng.pick(&IDS);
            topology.nodes.insert(id.into(), random_node(rng, id, 0));
        }
    }
    report
}

fn check(folded: &FoldedWindow, plain: &PlainWindow, step: &str) {
    assert_eq!(folded.to_report(), plain.merged(), "after {step}");
    assert_eq!(folded.buckets(), plain.buckets.len(), "after {step}");
    assert_eq!(
        folded.footprint(),
        folded.footprint_walked(),
        "footprint after {step}"
    );
}

#[test]
fn folding_random_reports_is_merging_the_buckets_in_the_window() {
    for seed in 0..40 {
        let mut rng = Rng(seed);
        let mut folded = FoldedWindow::default();
        // The same reports' JSON folded as it is decoded (history's way) and decoded whole first
        // (ingest's way).
        let mut as_decoded = FoldedWindow::default();
        let mut decoded_whole = FoldedWindow::default();
        let mut plain = PlainWindow::default();
        let mut now = 0;
        for step in 0..120 {
            // Mostly one report a second or so, sometimes several in one quantum, sometimes a gap
            // that empties the window.
            now += match rng.below(10) {
                0..=2 => rng.below(300) as i64,
                3..=8 => 1_000 + rng.below(2_500) as i64,
                _ => rng.below(20_000) as i64,
            };
            folded.expire(now, WINDOW);
            as_decoded.expire(now, WINDOW);
            decoded_whole.expire(now, WINDOW);
            plain.expire(now);
            check(&folded, &plain, &format!("expiry, seed {seed} step {step}"));
            let report = random_report(&mut rng);
            let json = serde_json::to_vec(&report).unwrap();
            folded.accept(report.clone(), now, QUANTUM);
            plain.accept(report, now);
            check(&folded, &plain, &format!("report, seed {seed} step {step}"));
            let limits = BudgetLimits::for_report(1 << 30);
            as_decoded
                .accept_encoded(&json, Format::Json, limits, now, QUANTUM)
                .unwrap();
            let wire: WireReport = parse(&json, Format::Json, limits).unwrap();
            decoded_whole.accept(wire, now, QUANTUM);
            assert_eq!(
                as_decoded.to_report(),
                decoded_whole.to_report(),
                "folded as decoded, seed {seed} step {step}"
            );
            assert_eq!(as_decoded.buckets(), decoded_whole.buckets());
        }
    }
}

#[test]
fn folding_the_probe_fixtures_is_merging_them() {
    let reports = [
        read_fixture("probe-full-1.msgpack.gz"),
        read_fixture("probe-delta-2.msgpack.gz"),
        read_fixture("probe-delta-3.msgpack.gz"),
        read_fixture("probe-full-4.msgpack.gz"),
    ];
    // The fold takes them as ingest does: decoded straight off the wire, strings borrowed.
    let bodies: Vec<Vec<u8>> = ["full-1", "delta-2", "delta-3", "full-4"]
        .iter()
        .map(|name| {
            let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
                "../../shared/fixtures/scope/probe-{name}.msgpack.gz"
            ));
            let body = std::fs::read(&path).unwrap();
            inflate(&body, true, 64 << 20).unwrap().into_owned()
        })
        .collect();
    let mut folded = FoldedWindow::default();
    // And as history folds them: as they are decoded.
    let mut as_decoded = FoldedWindow::default();
    let mut plain = PlainWindow::default();
    // Every 3 s, as the probe sends them, then again (twice as fast) until the first ones leave.
    let times = [
        0, 3_000, 6_000, 9_000, 10_500, 12_000, 13_500, 15_000, 16_500, 21_000,
    ];
    for (n, now) in times.into_iter().enumerate() {
        folded.expire(now, WINDOW);
        plain.expire(now);
        let wire: WireReport = parse(
            &bodies[n % 4],
            Format::Msgpack,
            BudgetLimits::for_report(64 << 20),
        )
        .unwrap();
        folded.accept(wire, now, QUANTUM);
        plain.accept(reports[n % 4].clone(), now);
        check(&folded, &plain, &format!("report {n}"));
        as_decoded.expire(now, WINDOW);
        as_decoded
            .accept_encoded(
                &bodies[n % 4],
                Format::Msgpack,
                BudgetLimits::for_report(64 << 20),
                now,
                QUANTUM,
            )
            .unwrap();
        check(
            &as_decoded,
            &plain,
            &format!("report {n} folded as decoded"),
        );
    }
    for now in [25_000, 30_000, 36_001] {
        assert_eq!(
            folded.expire(now, WINDOW),
            plain.buckets.len() > {
                plain.expire(now);
                plain.buckets.len()
            }
        );
        check(&folded, &plain, &format!("expiry at {now}"));
    }
    assert!(folded.is_empty());
    assert_eq!(folded.to_report(), Report::default());
}

/// Reports written by hand for what `serde_json::to_vec(&Report)` never makes: null topologies and
/// nodes, a topology twice, a node id twice, nodes before the head's fields, unknown fields. Folded
/// as they are decoded they give the window that decoding them whole and folding gives; what
/// decoding whole refuses, folding as they are decoded refuses too.
#[test]
fn folding_as_decoded_is_folding_the_decoded_report_on_odd_reports() {
    let limits = BudgetLimits::for_report(1 << 20);
    let odd = [
        r#"{"Process": null, "Host": {"nodes": null, "shape": "circle"}}"#,
        r#"{"Process": {"nodes": {"a": {"latest": {"k": {"timestamp": "2026-12-03T06:00:00Z",
            "value": "1"}}}}, "label": "P"}, "Process": {"label_plural": "Ps", "nodes": {"a":
            {"latest": {"k": {"timestamp": "2026-12-03T06:00:01Z", "value": "2"}}}, "b": {}}}}"#,
        r#"{"Container": {"nodes": {"c": {"adjacency": ["x"]}, "c": {"adjacency": ["y"],
            "sets": {"s": ["1"]}}}, "shape": "hexagon", "surprise": [1, 2], "controls": null},
            "TS": "2026-12-03T06:00:00Z", "Window": 15000000000, "ID": "r1"}"#,
    ];
    for (i, json) in odd.iter().enumerate() {
        let mut as_decoded = FoldedWindow::default();
        let mut whole = FoldedWindow::default();
        for now in [0, 1_500] {
            as_decoded
                .accept_encoded(json.as_bytes(), Format::Json, limits, now, QUANTUM)
                .unwrap();
            let wire: WireReport = parse(json.as_bytes(), Format::Json, limits).unwrap();
            whole.accept(wire, now, QUANTUM);
            assert_eq!(
                as_decoded.to_report(),
                whole.to_report(),
                "report {i} at {now}"
            );
            assert_eq!(as_decoded.buckets(), whole.buckets());
        }
        let nodes: usize = whole
            .to_report()
            .topologies
            .values()
            .map(|t| t.nodes.len())
            .sum();
        assert_eq!(nodes, [0, 2, 1][i], "report {i}");
    }
    for bad in [
        r#"{"Process": ["circle"]}"#,
        r#"{"Process": {"nodes": {}, "nodes": {}}}"#,
        r#"{"Process": {"nodes": {"a": {"latest": 7}}}}"#,
        r#"{"Process": {"nodes": {}}} trailing"#,
    ] {
        assert!(
            parse::<WireReport>(bad.as_bytes(), Format::Json, limits).is_err(),
            "{bad}"
        );
        assert!(
            FoldedWindow::default()
                .accept_encoded(bad.as_bytes(), Format::Json, limits, 0, QUANTUM)
                .is_err(),
            "{bad}"
        );
    }
}

#[test]
fn the_window_of_several_probes_is_the_merge_of_their_reports() {
    let full = read_fixture("probe-full-1.msgpack.gz");
    let d2 = read_fixture("probe-delta-2.msgpack.gz");
    let d3 = read_fixture("probe-delta-3.msgpack.gz");
    let mut first = FoldedWindow::default();
    first.accept(full.clone(), 0, QUANTUM);
    first.accept(d3.clone(), 6_000, QUANTUM);
    let mut second = FoldedWindow::default();
    second.accept(d2.clone(), 3_000, QUANTUM);
    let parts = [&first, &second];
    assert_eq!(
        merge_window(parts, true),
        Report::merge_all([&Report::merge_plain([&full, &d3]), &d2])
    );
    // Materialised on several threads, assembled in order: the same window.
    let mut third = FoldedWindow::default();
    third.accept(full.clone(), 9_000, QUANTUM);
    let three = [&first, &second, &third];
    for threads in [1, 2, 3, 8] {
        assert_eq!(
            merge_window_on(&three, |p| p.materialize(), threads, true),
            merge_window(three, true),
            "{threads} threads"
        );
    }
    assert_eq!(
        merge_window(parts, false),
        Report::merge_window([&Report::merge_plain([&full, &d3]), &d2])
    );
}

#[test]
fn a_value_outdated_by_a_report_that_left_comes_back() {
    let report = |value: &str, at: i64| {
        let mut node = Node {
            id: "n".into(),
            topology: "host".into(),
            ..Node::default()
        };
        node.latest_mut()
            .insert("state", LatestEntry::new(value, Time(at)));
        let mut report = Report::default();
        report
            .topologies
            .entry("Host".into())
            .or_default()
            .nodes
            .insert("n".into(), node);
        report
    };
    let state = |w: &FoldedWindow| {
        w.to_report().topologies["Host"].nodes["n"].latest["state"]
            .value
            .clone()
    };
    let mut folded = FoldedWindow::default();
    // A probe whose clock went back: its newer report carries an older timestamp.
    folded.accept(report("future", 50), 0, QUANTUM);
    folded.accept(report("now", 10), 3_000, QUANTUM);
    assert_eq!(state(&folded), "future", "the newest timestamp wins");
    folded.expire(15_001, WINDOW);
    assert_eq!(
        state(&folded),
        "now",
        "and the next one comes back when it leaves"
    );
    let sizes: BTreeMap<_, _> = [("buckets", folded.buckets())].into();
    assert_eq!(sizes["buckets"], 1);
}

#[test]
fn views_render_the_same_from_the_newest_samples_only() {
    use crate::collector::render::Ctx;
    use crate::collector::render::topologies::{Query, topology, topology_list};
    use crate::collector::render::views::VIEWS;
    use crate::probe::loadgen::{Shape, synthetic_report};

    // Real probe reports (two or three samples per metric each), the same reports again as a
    // second probe (the same nodes with samples of the same dates), and a Scope-sized host
    // reporting three times.
    let fixtures = [
        read_fixture("probe-full-1.msgpack.gz"),
        read_fixture("probe-delta-2.msgpack.gz"),
        read_fixture("probe-delta-3.msgpack.gz"),
        read_fixture("probe-full-4.msgpack.gz"),
    ];
    let mut first = FoldedWindow::default();
    let mut second = FoldedWindow::default();
    for (n, report) in fixtures.iter().enumerate() {
        first.accept(report.clone(), n as i64 * 3_000, QUANTUM);
        if n % 2 == 0 {
            second.accept(report.clone(), n as i64 * 3_000 + 1, QUANTUM);
        }
    }
    let mut third = FoldedWindow::default();
    for n in 0..3 {
        let at = Time(1_800_000_000_000_000_000 + n * 3_000_000_000);
        third.accept(
            synthetic_report(1, 2, &Shape::small(4, 6), at),
            n * 3_000,
            QUANTUM,
        );
    }
    let parts = [&first, &second, &third];
    let window = |samples| merge_window_on(&parts, |p| p.materialize_with(samples), 2, true);
    let (all, last) = (window(Samples::All), window(Samples::Last));
    let most_samples = |report: &Report| {
        report
            .topologies
            .values()
            .flat_map(|t| t.nodes.values())
            .flat_map(|n| n.metrics.values())
            .map(|m| m.samples.len())
            .max()
            .unwrap_or(0)
    };
    assert!(most_samples(&all) >= 10, "{}", most_samples(&all));
    // One per part at most: each part's newest.
    assert!((1..=parts.len()).contains(&most_samples(&last)));
    let mut compared = 0;
    for query in [Query::default(), Query::parse(Some("pseudo=show"))] {
        let (mut from_all, mut from_last) = (Ctx::new(&all, Time(0)), Ctx::new(&last, Time(0)));
        assert_eq!(
            format!("{:?}", topology_list(&mut from_all, &query)),
            format!("{:?}", topology_list(&mut from_last, &query))
        );
        for view in VIEWS {
            let shown = topology(&mut from_all, view, &query);
            compared += shown
                .iter()
                .flat_map(|nodes| nodes.values())
                .map(|n| n.metrics.len())
                .sum::<usize>();
            assert_eq!(shown, topology(&mut from_last, view, &query), "{view}");
        }
    }
    // Metrics were shown, so their values were compared.
    assert!(compared > 20, "{compared}");
}

#[test]
fn work_on_cores_is_done_once_per_item_and_given_back_in_order() {
    for threads in [0, 1, 2, 3, 16] {
        for len in [0, 1, 2, 7, 40] {
            let items: Vec<u64> = (0..len).collect();
            let done = each_on_cores(items, threads, |n| {
                // Uneven work, so threads finish out of order.
                std::thread::sleep(std::time::Duration::from_micros((n * 37) % 200));
                (n, std::thread::current().id())
            });
            assert_eq!(
                done.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                (0..len).collect::<Vec<_>>(),
                "{threads} threads, {len} items"
            );
            let used: std::collections::HashSet<_> = done.iter().map(|(_, t)| *t).collect();
            assert!(
                used.len() <= threads.max(1),
                "{threads} threads: {}",
                used.len()
            );
        }
    }
    // With two threads and slow items, both share the work.
    let done = each_on_cores((0..8).collect(), 2, |_: i32| {
        std::thread::sleep(std::time::Duration::from_millis(5));
        std::thread::current().id()
    });
    assert_eq!(
        done.iter().collect::<std::collections::HashSet<_>>().len(),
        2
    );
}

#[test]
fn a_panic_in_work_on_cores_reaches_the_caller() {
    let caught = std::panic::catch_unwind(|| {
        each_on_cores((0..6).collect(), 3, |n: i32| {
            assert_ne!(n, 4, "item four");
            n
        })
    });
    assert!(caught.is_err());
}
