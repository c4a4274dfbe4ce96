//! Counted working sets of a read at 50 Scope-sized ("medium") probes: what the probes' folded
//! parts hold, what the window's merge adds, and the most a view's render and the topology list
//! hold at once, each counted by the allocator (docs/benchmarks.md, "Collector under live load").
//! The live benchmark measures resident memory; this says where it goes.
//!
//! `cargo bench -p scopehub --bench working_set` (a few seconds)

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use scopehub::collector::fold::{FoldedWindow, Samples, merge_window_on};
use scopehub::collector::render::Ctx;
use scopehub::collector::render::topologies::{
    ListPlan, Query, topology_json, topology_list_planned,
};
use scopehub::collector::report::Time;
use scopehub::collector::slot::QUANTUM_MS;
use scopehub::probe::loadgen::{Shape, synthetic_report};

/// mimalloc, as the binary uses, counting the bytes asked for: in use now, and the most since
/// [`mark`].
struct Counted;

static IN_USE: AtomicIsize = AtomicIsize::new(0);
static MOST: AtomicIsize = AtomicIsize::new(0);

fn grew(by: isize) {
    let now = IN_USE.fetch_add(by, Relaxed) + by;
    MOST.fetch_max(now, Relaxed);
}

unsafe impl GlobalAlloc for Counted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size() as isize);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size() as isize, Relaxed);
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size as isize - layout.size() as isize);
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counted = Counted;

/// Starts a measurement: the bytes in use now, from which what follows is counted.
fn mark() -> isize {
    let now = IN_USE.load(Relaxed);
    MOST.store(now, Relaxed);
    now
}

/// MiB (in use now, most at once) since `from`.
fn since(from: isize) -> (f64, f64) {
    let mib = |bytes: isize| bytes as f64 / (1 << 20) as f64;
    (
        mib(IN_USE.load(Relaxed) - from),
        mib(MOST.load(Relaxed) - from),
    )
}

fn main() {
    // `cargo test --benches` runs benches with `--bench` absent: nothing to check there.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let now = Time(1_800_000_000_000_000_000);
    let probes = 50;
    println!("| 50 medium probes | held (MiB) | most at once (MiB) |");
    println!("|---|---:|---:|");
    let row = |what: &str, (held, most): (f64, f64)| println!("| {what} | {held:.1} | {most:.1} |");
    // Each probe's part after five reports (the window at Scope's pace).
    let from = mark();
    let parts: Vec<FoldedWindow> = (0..probes)
        .map(|h| {
            let report = synthetic_report(h, probes, &Shape::medium(), now);
            let mut part = FoldedWindow::default();
            for at in [0, 3_000, 6_000, 9_000, 12_000] {
                part.accept(report.clone(), at, QUANTUM_MS);
            }
            part
        })
        .collect();
    row("the probes' parts", since(from));
    // The merge views share: each metric's newest sample.
    let from = mark();
    let window = merge_window_on(&parts, |p| p.materialize_with(Samples::Last), 1, true);
    row("the window's merge (views)", since(from));
    for view in ["containers", "processes", "hosts"] {
        let from = mark();
        let kept = topology_json(&mut Ctx::new(&window, Time(0)), view, &Query::default())
            .expect("a known view")
            .expect("serialisable");
        row(
            &format!("render of {view} (held: its kept nodes)"),
            since(from),
        );
        drop(kept);
    }
    let list = |plan: Option<&ListPlan>| {
        let from = mark();
        let (list, learned) =
            topology_list_planned(&mut Ctx::new(&window, Time(0)), &Query::default(), plan);
        (list, learned, since(from))
    };
    let (unplanned, plan, counted) = list(None);
    row("the topology list, the instance's first", counted);
    let (planned, _, counted) = list(Some(&plan));
    assert_eq!(planned, unplanned);
    row("the topology list, following the last one's plan", counted);
}
