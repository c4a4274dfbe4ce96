//! What the fuzz target (`fuzz/fuzz_targets/decode.rs`) does with any bytes, here so that the test
//! replaying its saved corpus runs exactly the same path.

use super::decode::{Format, decode};
use super::render::Ctx;
use super::render::topologies::{Query, topology, topology_list};
use super::render::views::VIEWS;
use super::report::{Report, Time};

/// Decodes `data` every way a probe may send it (msgpack, JSON, gzipped msgpack) within a 4 MiB
/// report's limits; whatever decodes is merged with itself and rendered through the topology list
/// and every view. Returns how many of the three ways decoded. Refusals are fine; a panic is a bug.
pub fn decode_merge_render(data: &[u8]) -> usize {
    let mut decoded = 0;
    for (format, gzip) in [
        (Format::Msgpack, false),
        (Format::Json, false),
        (Format::Msgpack, true),
    ] {
        if let Ok(report) = decode(data, format, gzip, 4 << 20) {
            decoded += 1;
            let merged = Report::merge_all([&report, &report]);
            let mut ctx = Ctx::new(&merged, Time(0));
            topology_list(&mut ctx, &Query::default());
            for view in VIEWS {
                topology(&mut ctx, view, &Query::parse(Some("pseudo=show")));
            }
        }
    }
    decoded
}
