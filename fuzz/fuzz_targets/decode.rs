//! Any bytes a probe may send: decoding must refuse or succeed, never panic or run away; whatever
//! decodes must merge and render through every view without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scopehub::collector::decode::{Format, decode};
use scopehub::collector::render::Ctx;
use scopehub::collector::render::topologies::{Query, topology, topology_list};
use scopehub::collector::render::views::VIEWS;
use scopehub::collector::report::{Report, Time};

const MAX: usize = 4 << 20;

fuzz_target!(|data: &[u8]| {
    for (format, gzip) in [
        (Format::Msgpack, false),
        (Format::Json, false),
        (Format::Msgpack, true),
    ] {
        if let Ok(report) = decode(data, format, gzip, MAX) {
            let merged = Report::merge_all([&report, &report]);
            let mut ctx = Ctx::new(&merged, Time(0));
            let _ = topology_list(&mut ctx, &Query::default());
            for view in VIEWS {
                let _ = topology(&mut ctx, view, &Query::parse(Some("pseudo=show")));
            }
        }
    }
});
