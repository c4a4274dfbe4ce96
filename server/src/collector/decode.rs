//! Turning a `POST /api/report` body into a [`Report`]: content type and encoding as Scope's app
//! accepts them, decompression capped while streaming (a gzip bomb is refused without inflating it).

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Read;

use serde::Deserialize;
use serde::de::DeserializeSeed;

use super::bounded::{Bounded, Budget, BudgetLimits, Exceeded};
use super::msgpack;
use super::report::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Msgpack,
    Json,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unsupported Content-Type `{0}`: send application/msgpack or application/json")]
    UnsupportedContentType(String),
    #[error("unsupported Content-Encoding `{0}`: send gzip or nothing")]
    UnsupportedEncoding(String),
    #[error("the report is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the report is refused: {0}")]
    TooComplex(Exceeded),
    #[error("the report cannot be decoded: {0}")]
    Malformed(String),
}

/// The format a `Content-Type` names; like Scope, only its prefix counts (parameters are ignored).
pub fn format_of(content_type: Option<&str>) -> Result<Format, DecodeError> {
    let ct = content_type.unwrap_or("").trim().to_ascii_lowercase();
    if ct.starts_with("application/msgpack") {
        Ok(Format::Msgpack)
    } else if ct.starts_with("application/json") {
        Ok(Format::Json)
    } else {
        Err(DecodeError::UnsupportedContentType(
            content_type.unwrap_or("").chars().take(100).collect(),
        ))
    }
}

/// Whether a `Content-Encoding` means gzip; anything but gzip or identity is refused.
pub fn is_gzip(content_encoding: Option<&str>) -> Result<bool, DecodeError> {
    match content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => Ok(false),
        Some("gzip") | Some("x-gzip") => Ok(true),
        Some(other) => Err(DecodeError::UnsupportedEncoding(
            other.chars().take(100).collect(),
        )),
    }
}

/// Decodes a report body of at most `max_bytes` after decompression, within the decoding budget
/// of a report of that size.
pub fn decode(
    body: &[u8],
    format: Format,
    gzip: bool,
    max_bytes: usize,
) -> Result<Report, DecodeError> {
    parse(
        &inflate(body, gzip, max_bytes)?,
        format,
        BudgetLimits::for_report(max_bytes),
    )
}

/// A body of at most `max_bytes` after decompression, decompressed.
pub fn inflate(body: &[u8], gzip: bool, max_bytes: usize) -> Result<Cow<'_, [u8]>, DecodeError> {
    if !gzip {
        return within(body.len(), max_bytes).map(|()| Cow::Borrowed(body));
    }
    let mut out = Vec::new();
    let len = inflate_over(body, max_bytes, &mut out)?;
    out.truncate(len);
    Ok(Cow::Owned(out))
}

/// Decompressed bodies up to this size leave their buffer to the thread's next report.
const KEPT_BUFFER_BYTES: usize = 4 << 20;

thread_local! {
    static INFLATED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with the body decompressed, as [`inflate`] makes it, into a buffer the thread keeps
/// for its next report: a fresh one, half a megabyte for a Scope-sized report, cost more page
/// faults than the decompression itself. The kept buffer stays initialised, so that decompressing
/// into it does not first fill it with zeros again (`read_to_end` does, on every call).
pub fn with_inflated<R>(
    body: &[u8],
    gzip: bool,
    max_bytes: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, DecodeError> {
    if !gzip {
        return within(body.len(), max_bytes).map(|()| f(body));
    }
    INFLATED.with(|kept| {
        let mut buffer = kept.take();
        let result = inflate_over(body, max_bytes, &mut buffer).map(|len| f(&buffer[..len]));
        if buffer.len() <= KEPT_BUFFER_BYTES {
            kept.replace(buffer);
        }
        result
    })
}

/// Decompresses `body` over the start of `buffer`, whose bytes are all initialised (what they
/// held is overwritten), growing it as needed but never past `max_bytes` and one more (which is
/// how a body too large is told). The length decompressed.
fn inflate_over(body: &[u8], max_bytes: usize, buffer: &mut Vec<u8>) -> Result<usize, DecodeError> {
    let cap = max_bytes.saturating_add(1);
    let mut decoder = flate2::read::GzDecoder::new(body);
    let mut len = 0;
    loop {
        if len >= buffer.len().min(cap) {
            if len >= cap {
                return Err(DecodeError::TooLarge(max_bytes));
            }
            let grown = (len * 2).max(body.len().saturating_mul(4)).max(64 << 10);
            buffer.resize(grown.min(cap), 0);
        }
        let end = buffer.len().min(cap);
        match decoder.read(&mut buffer[len..end]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DecodeError::Malformed(format!("gzip: {e}"))),
        }
    }
    within(len, max_bytes).map(|()| len)
}

fn within(len: usize, max_bytes: usize) -> Result<(), DecodeError> {
    if len > max_bytes {
        return Err(DecodeError::TooLarge(max_bytes));
    }
    Ok(())
}

/// Decodes a decompressed body within `limits` (`bounded.rs`): the decode stops as soon as it
/// goes past them. A [`super::wire::WireReport`] borrows its strings from the body.
pub fn parse<'de, T: Deserialize<'de>>(
    raw: &'de [u8],
    format: Format,
    limits: BudgetLimits,
) -> Result<T, DecodeError> {
    parse_seed(raw, format, limits, std::marker::PhantomData::<T>)
}

/// [`parse`] through a seed (a decoding that hands what it decodes over as it goes).
pub fn parse_seed<'de, S: DeserializeSeed<'de>>(
    raw: &'de [u8],
    format: Format,
    limits: BudgetLimits,
    seed: S,
) -> Result<S::Value, DecodeError> {
    let budget = Budget::new(limits);
    let decoded = match format {
        Format::Msgpack => {
            msgpack::from_slice_seed(raw, &budget, seed).map_err(|e| format!("msgpack: {e}"))
        }
        Format::Json => {
            let mut de = serde_json::Deserializer::from_slice(raw);
            seed.deserialize(Bounded::new(&mut de, &budget))
                .and_then(|value| de.end().map(|()| value))
                .map_err(|e| format!("json: {e}"))
        }
    };
    decoded.map_err(|e| match budget.exceeded() {
        Some(why) => DecodeError::TooComplex(why),
        None => DecodeError::Malformed(e),
    })
}

/// A report of `../shared/fixtures/scope/`, decoded (gzipped msgpack or JSON, by its name).
#[cfg(test)]
pub(crate) fn read_fixture(name: &str) -> Report {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/scope")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (format, gzip) = if name.ends_with(".msgpack.gz") {
        (Format::Msgpack, true)
    } else {
        (Format::Json, false)
    };
    decode(&bytes, format, gzip, 64 << 20).unwrap()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::PathBuf;

    use super::*;

    const MAX: usize = 16 * 1024 * 1024;

    fn fixture(name: &str) -> Vec<u8> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/scope")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// Go's JSON encoder prints some floats one digit short, so compare metric values to 12
    /// significant digits.
    fn rounded(
        nodes: &std::collections::BTreeMap<
            crate::collector::name::Name,
            crate::collector::report::Node,
        >,
    ) -> serde_json::Value {
        fn walk(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Number(n) if n.is_f64() => {
                    let f = n.as_f64().unwrap_or_default();
                    *v = serde_json::Value::String(format!("{f:.11e}"));
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
                serde_json::Value::Object(o) => o.values_mut().for_each(walk),
                _ => {}
            }
        }
        let mut v = serde_json::to_value(nodes).unwrap();
        walk(&mut v);
        v
    }

    #[test]
    fn every_probe_fixture_decodes_alike_from_msgpack_and_json() {
        for name in [
            "probe-full-1",
            "probe-delta-2",
            "probe-delta-3",
            "probe-full-4",
        ] {
            let wire = decode(
                &fixture(&format!("{name}.msgpack.gz")),
                Format::Msgpack,
                true,
                MAX,
            )
            .unwrap();
            let json = decode(&fixture(&format!("{name}.json")), Format::Json, false, MAX).unwrap();
            assert_eq!(wire.ts, json.ts, "{name}");
            assert_eq!(wire.window, json.window, "{name}");
            assert_eq!(wire.id, json.id, "{name}");
            assert!(
                wire.ts.0 > 0 && wire.window > 0 && !wire.id.is_empty(),
                "{name}"
            );
            for (topology, t) in &json.topologies {
                let empty = Default::default();
                let w = wire.topologies.get(topology).map_or(&empty, |t| &t.nodes);
                assert_eq!(rounded(w), rounded(&t.nodes), "{name} {topology}");
            }
            // The same report gzipped as JSON decodes too.
            let again = decode(
                &gzip(&fixture(&format!("{name}.json"))),
                Format::Json,
                true,
                MAX,
            )
            .unwrap();
            assert_eq!(again, json, "{name}");
        }
    }

    #[test]
    fn fixture_contents_are_what_the_readme_says() {
        let full1 = decode(
            &fixture("probe-full-1.msgpack.gz"),
            Format::Msgpack,
            true,
            MAX,
        )
        .unwrap();
        assert_eq!(full1.ts.to_rfc3339(), "2026-11-28T06:10:18.062328274Z");
        assert_eq!(full1.window, 3_001_390_756);
        let count = |r: &Report, t: &str| r.topology(t).map_or(0, |t| t.nodes.len());
        assert_eq!(
            (
                count(&full1, "Endpoint"),
                count(&full1, "Process"),
                count(&full1, "Host")
            ),
            (17, 9, 1)
        );
        let host = &full1.topology("Host").unwrap().nodes["scope-fixture-host;<host>"];
        assert_eq!(host.latest["host_name"].value, "scope-fixture-host");
        assert_eq!(
            host.sets["local_networks"],
            vec!["127.0.0.1/8", "192.0.2.2/24"]
        );
        assert!(host.metrics.values().any(|m| !m.samples.is_empty()));

        // Deltas: process nodes without id or topology.
        let delta = decode(
            &fixture("probe-delta-2.msgpack.gz"),
            Format::Msgpack,
            true,
            MAX,
        )
        .unwrap();
        let processes = &delta.topology("Process").unwrap().nodes;
        assert_eq!(processes.len(), 9);
        assert!(
            processes
                .values()
                .all(|n| n.id.is_empty() && n.topology.is_empty())
        );

        let full4 = decode(
            &fixture("probe-full-4.msgpack.gz"),
            Format::Msgpack,
            true,
            MAX,
        )
        .unwrap();
        assert_eq!(count(&full4, "Endpoint"), 34);
    }

    /// The fuzzer's saved corpus (`fuzz/corpus/decode`, grown from the fixtures and kept small with
    /// `cargo fuzz cmin`) replayed as the fuzz target does: every input decodes or is refused, and
    /// whatever decodes merges and renders through every view without a panic.
    #[test]
    fn the_fuzz_corpus_decodes_or_is_refused_and_renders() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decode");
        let mut inputs = 0;
        let mut decoded = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            inputs += 1;
            decoded += crate::collector::fuzzing::decode_merge_render(&data);
        }
        // A corpus of some size, and not only of inputs the decoder refuses.
        assert!(
            inputs >= 100 && decoded > 0,
            "{inputs} inputs, {decoded} decoded"
        );
    }

    #[test]
    fn scopes_own_and_legacy_json_fixtures_decode() {
        let fixture_report =
            decode(&fixture("fixture-report.json"), Format::Json, false, MAX).unwrap();
        assert!(fixture_report.node_count() > 10);
        // A 2016 report with obsolete `edges`, `controls` and `counters` keys.
        let old = decode(
            &fixture("render-report-2016.json"),
            Format::Json,
            false,
            MAX,
        )
        .unwrap();
        assert!(old.node_count() > 100, "{}", old.node_count());
    }

    /// The thread's kept buffer is decompressed over, not cleared: what a longer earlier body
    /// left in it is never seen, the limit holds to the byte whatever the buffer's size, and a
    /// body that fails leaves the buffer usable.
    #[test]
    fn decompressing_into_the_kept_buffer_sees_only_this_body() {
        let long: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let seen = with_inflated(&gzip(&long), true, MAX, <[u8]>::to_vec).unwrap();
        assert_eq!(seen, long);
        let short = b"{\"ID\":\"x\"}".to_vec();
        let seen = with_inflated(&gzip(&short), true, MAX, <[u8]>::to_vec).unwrap();
        assert_eq!(seen, short);
        // At the limit it passes; one byte over, it is refused (the kept buffer is larger).
        let at = with_inflated(&gzip(&long[..1000]), true, 1000, |raw| raw.len());
        assert_eq!(at, Ok(1000));
        let over = with_inflated(&gzip(&long[..1001]), true, 1000, |raw| raw.len());
        assert_eq!(over, Err(DecodeError::TooLarge(1000)));
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..64 {
            bomb.write_all(&[0u8; 1 << 20]).unwrap();
        }
        let bomb = bomb.finish().unwrap();
        let refused = with_inflated(&bomb, true, 8 << 20, |raw| raw.len());
        assert_eq!(refused, Err(DecodeError::TooLarge(8 << 20)));
        let mut corrupt = gzip(&long);
        let middle = corrupt.len() / 2;
        corrupt[middle] ^= 0xff;
        let refused = with_inflated(&corrupt, true, MAX, |raw| raw.len());
        assert!(
            matches!(refused, Err(DecodeError::Malformed(_))),
            "{refused:?}"
        );
        let truncated = gzip(&long);
        let refused = with_inflated(&truncated[..truncated.len() - 9], true, MAX, |raw| {
            raw.len()
        });
        assert!(
            matches!(refused, Err(DecodeError::Malformed(_))),
            "{refused:?}"
        );
        let seen = with_inflated(&gzip(&short), true, MAX, <[u8]>::to_vec).unwrap();
        assert_eq!(seen, short);
    }

    #[test]
    fn gzip_bombs_are_refused_without_inflating_them() {
        // 64 MiB of zeros compress to about 64 KiB; the cap stops inflation at 1 MiB + 1 byte.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..64 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert_eq!(
            decode(&bomb, Format::Msgpack, true, 1024 * 1024),
            Err(DecodeError::TooLarge(1024 * 1024))
        );
        let plain = vec![b' '; 2048];
        assert_eq!(
            decode(&plain, Format::Json, false, 1024),
            Err(DecodeError::TooLarge(1024))
        );
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let full = fixture("probe-full-1.msgpack.gz");
        assert!(matches!(
            decode(&full[..full.len() / 2], Format::Msgpack, true, MAX),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"\x93\x01\x02", Format::Msgpack, false, MAX),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"{\"TS\": 5", Format::Json, false, MAX),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"[]", Format::Json, false, MAX),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"{\"TS\": \"yesterday\"}", Format::Json, false, MAX),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"not gzip", Format::Json, true, MAX),
            Err(DecodeError::Malformed(_))
        ));
        // Unknown fields and nulls are fine.
        let lenient = br#"{"TS":null,"Future":{"x":1},"Process":{"nodes":{"h;1":{"id":"h;1","sets":null,"parents":null,"children":null,"latest":null}}}}"#;
        let report = decode(lenient, Format::Json, false, MAX).unwrap();
        assert_eq!(report.topology("Process").unwrap().nodes.len(), 1);
    }

    #[test]
    fn content_types_and_encodings_are_checked_like_scope() {
        assert_eq!(format_of(Some("application/msgpack")), Ok(Format::Msgpack));
        assert_eq!(
            format_of(Some("application/json; charset=utf-8")),
            Ok(Format::Json)
        );
        assert!(format_of(Some("text/plain")).is_err());
        assert!(format_of(None).is_err());
        assert_eq!(is_gzip(Some("gzip")), Ok(true));
        assert_eq!(is_gzip(None), Ok(false));
        assert!(is_gzip(Some("br")).is_err());
    }
}
