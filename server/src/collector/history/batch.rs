//! History's objects: one *batch* is the reports one collector accepted for one instance within
//! one flush and one hour, as they arrived (gzipped bodies, never decoded here). Pure: encoding,
//! decoding with bounds, and the object keys that index them.
//!
//! Key: `v1/{instance}/{YYYY-MM-DDTHH}/{first_ms}-{last_ms}-{writer}-{seq}.batch`. The hour folder
//! and the first and last arrival times in the name are the index: a moment's window is found by
//! listing at most two hour folders, retention deletes whole folders, and an object appears whole
//! or not at all (a put is atomic on every backend), so a crash can lose the batch being written
//! but never leaves an index that disagrees with the objects.
//!
//! Object: `SHH1`, a header (u32 length + JSON [`BatchHeader`]: arrival span and the node counts
//! of the live window when it was written, per view and per report topology, for the timeline's
//! sparkline), a u32 record count, then
//! records: u64 arrival (ms), u64 sequence number (unique per writer), u8 format, u8 probe id
//! length, the probe id, u32 body length, the gzipped body. All integers little-endian.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::collector::decode::Format;

const MAGIC: &[u8; 4] = b"SHH1";
/// The largest header, record body and object read back (bounds while decoding).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
pub const MAX_BODY_BYTES: usize = 64 << 20;
pub const MAX_OBJECT_BYTES: u64 = 512 << 20;
/// Enough of an object to hold its header in almost every case.
pub const HEADER_PREFIX_BYTES: u64 = 4096;

pub const HOUR_MS: i64 = 3_600_000;

/// One accepted report as history keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// When the collector accepted it (its clock, ms): the window is cut by this.
    pub at_ms: i64,
    /// Unique per writer (with the writer's id in the object key): a query that sees a record both
    /// in memory and in a just-written object takes it once.
    pub seq: u64,
    pub format: Format,
    pub probe: String,
    /// The report's body as the probe sent it; gzipped in every stored batch.
    pub body: Bytes,
    pub gzipped: bool,
}

/// What a batch says of itself, readable from its first bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchHeader {
    pub first_ms: i64,
    pub last_ms: i64,
    /// When it was written, and the live window's nodes then.
    pub at_ms: i64,
    #[serde(flatten)]
    pub window: WindowCounts,
}

/// The live window's nodes when a batch was written: what the timeline's sparkline draws.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowCounts {
    /// Distinct nodes per report topology (`Host`, `Process`…), endpoints left out.
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
    /// Nodes per view with its options' defaults, as the topology list counts them: what the
    /// map showed at `views_at_ms` (views are counted less often than batches are written).
    /// Missing from batches written before views were counted, or when no count was made in
    /// time (a render over its budget, a busy collector).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub views: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views_at_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("not a history batch")]
    NotABatch,
    #[error("history batch truncated")]
    Truncated,
    #[error("history batch exceeds a limit: {0}")]
    TooLarge(&'static str),
    #[error("history batch header unreadable: {0}")]
    Header(String),
}

pub fn encode(header: &BatchHeader, records: &[Record]) -> Bytes {
    let header_json = serde_json::to_vec(header).expect("a header serialises");
    let size: usize = records
        .iter()
        .map(|r| 8 + 8 + 1 + 1 + r.probe.len().min(255) + 4 + r.body.len())
        .sum();
    let mut out = BytesMut::with_capacity(4 + 4 + header_json.len() + 4 + size);
    out.put_slice(MAGIC);
    out.put_u32_le(header_json.len() as u32);
    out.put_slice(&header_json);
    out.put_u32_le(records.len() as u32);
    for r in records {
        debug_assert!(r.gzipped, "batches hold gzipped bodies");
        out.put_i64_le(r.at_ms);
        out.put_u64_le(r.seq);
        out.put_u8(match r.format {
            Format::Msgpack => 0,
            Format::Json => 1,
        });
        let probe = &r.probe.as_bytes()[..r.probe.len().min(255)];
        out.put_u8(probe.len() as u8);
        out.put_slice(probe);
        out.put_u32_le(r.body.len() as u32);
        out.put_slice(&r.body);
    }
    out.freeze()
}

/// The header alone, from the object's first bytes (`None`: more bytes are needed, this many).
pub fn decode_header(prefix: &[u8]) -> Result<Result<BatchHeader, usize>, BatchError> {
    if prefix.len() < 8 {
        return Ok(Err(8));
    }
    if &prefix[..4] != MAGIC {
        return Err(BatchError::NotABatch);
    }
    let len = u32::from_le_bytes(prefix[4..8].try_into().expect("4 bytes")) as usize;
    if len > MAX_HEADER_BYTES {
        return Err(BatchError::TooLarge("header"));
    }
    let Some(json) = prefix.get(8..8 + len) else {
        return Ok(Err(8 + len));
    };
    serde_json::from_slice(json)
        .map(Ok)
        .map_err(|e| BatchError::Header(e.to_string()))
}

/// Every record of a batch, each checked against what is left of the object before it is read.
pub fn decode(object: Bytes) -> Result<(BatchHeader, Vec<Record>), BatchError> {
    let header = match decode_header(&object)? {
        Ok(header) => header,
        Err(_) => return Err(BatchError::Truncated),
    };
    let mut buf = object.clone();
    let header_len = 8 + u32::from_le_bytes(object[4..8].try_into().expect("4 bytes")) as usize;
    buf.advance(header_len);
    let need = |buf: &Bytes, n: usize| {
        if buf.remaining() < n {
            Err(BatchError::Truncated)
        } else {
            Ok(())
        }
    };
    need(&buf, 4)?;
    let count = buf.get_u32_le() as usize;
    // The smallest record is 22 bytes: a count beyond what the object can hold is a lie.
    if count > buf.remaining() / 22 {
        return Err(BatchError::Truncated);
    }
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        need(&buf, 18)?;
        let at_ms = buf.get_i64_le();
        let seq = buf.get_u64_le();
        let format = match buf.get_u8() {
            0 => Format::Msgpack,
            1 => Format::Json,
            _ => return Err(BatchError::NotABatch),
        };
        let probe_len = buf.get_u8() as usize;
        need(&buf, probe_len + 4)?;
        let probe = String::from_utf8_lossy(&buf.split_to(probe_len)).into_owned();
        let body_len = buf.get_u32_le() as usize;
        if body_len > MAX_BODY_BYTES {
            return Err(BatchError::TooLarge("report body"));
        }
        need(&buf, body_len)?;
        let body = buf.split_to(body_len);
        records.push(Record {
            at_ms,
            seq,
            format,
            probe,
            body,
            gzipped: true,
        });
    }
    Ok((header, records))
}

/// The hour folder of a time: `2026-12-02T08`.
pub fn hour_of(ms: i64) -> String {
    let hour = ms.div_euclid(HOUR_MS) * HOUR_MS;
    chrono::DateTime::from_timestamp_millis(hour)
        .map(|t| t.format("%Y-%m-%dT%H").to_string())
        .unwrap_or_else(|| "0000-00-00T00".to_owned())
}

/// The start (ms) of an hour folder's hour.
pub fn hour_start(folder: &str) -> Option<i64> {
    let t = chrono::NaiveDateTime::parse_from_str(&format!("{folder}:00:00"), "%Y-%m-%dT%H:%M:%S")
        .ok()?;
    Some(t.and_utc().timestamp_millis())
}

/// The hour folders that hold reports which arrived in `[from_ms, to_ms]`, oldest first.
pub fn hours_between(from_ms: i64, to_ms: i64) -> Vec<String> {
    let mut hours = Vec::new();
    let mut at = from_ms.div_euclid(HOUR_MS) * HOUR_MS;
    while at <= to_ms {
        hours.push(hour_of(at));
        at += HOUR_MS;
    }
    hours
}

/// What an object's name says: the arrival span of its reports, and who wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchName {
    pub first_ms: i64,
    pub last_ms: i64,
    pub writer: String,
    pub seq: u64,
}

impl BatchName {
    pub fn file_name(&self) -> String {
        format!(
            "{:013}-{:013}-{}-{:08}.batch",
            self.first_ms, self.last_ms, self.writer, self.seq
        )
    }

    pub fn parse(file_name: &str) -> Option<BatchName> {
        let stem = file_name.strip_suffix(".batch")?;
        let mut parts = stem.splitn(4, '-');
        let first_ms = parts.next()?.parse().ok()?;
        let last_ms = parts.next()?.parse().ok()?;
        let writer = parts.next()?.to_owned();
        let seq = parts.next()?.parse().ok()?;
        (first_ms <= last_ms && !writer.is_empty()).then_some(BatchName {
            first_ms,
            last_ms,
            writer,
            seq,
        })
    }

    /// Whether it may hold reports that arrived in `(from_ms, to_ms]`.
    pub fn overlaps(&self, from_ms: i64, to_ms: i64) -> bool {
        self.first_ms <= to_ms && self.last_ms > from_ms
    }
}

/// Instance ids are what provisioning makes (lowercase hex); anything else never names a folder.
pub fn valid_instance(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_ms: i64, seq: u64, probe: &str, body: &[u8]) -> Record {
        Record {
            at_ms,
            seq,
            format: if seq.is_multiple_of(2) {
                Format::Msgpack
            } else {
                Format::Json
            },
            probe: probe.to_owned(),
            body: Bytes::copy_from_slice(body),
            gzipped: true,
        }
    }

    #[test]
    fn a_batch_reads_back_as_written() {
        let header = BatchHeader {
            first_ms: 10,
            last_ms: 20,
            at_ms: 21,
            window: WindowCounts {
                counts: BTreeMap::from([("Host".to_owned(), 3)]),
                views: BTreeMap::from([("hosts".to_owned(), 4)]),
                views_at_ms: Some(15),
            },
        };
        let records = vec![record(10, 1, "p1", b"abc"), record(20, 2, "p2", b"")];
        let object = encode(&header, &records);
        assert_eq!(decode(object.clone()).unwrap(), (header.clone(), records));
        let header_len = serde_json::to_vec(&header).unwrap().len();
        assert_eq!(decode_header(&object[..20]).unwrap(), Err(8 + header_len));
        assert_eq!(decode_header(&object).unwrap(), Ok(header));
    }

    #[test]
    fn a_header_written_before_views_were_counted_still_reads() {
        let old = br#"{"first_ms":1,"last_ms":2,"at_ms":3,"counts":{"Host":1}}"#;
        let header: BatchHeader = serde_json::from_slice(old).unwrap();
        assert_eq!(header.window.counts["Host"], 1);
        assert!(header.window.views.is_empty());
        assert_eq!(header.window.views_at_ms, None);
        // …and one without views is written as before.
        assert_eq!(serde_json::to_vec(&header).unwrap(), old);
    }

    #[test]
    fn damaged_batches_are_refused_without_reading_past_them() {
        let object = encode(&BatchHeader::default(), &[record(1, 1, "p", b"body")]);
        for cut in 0..object.len() {
            assert!(decode(object.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut lying = object.to_vec();
        let count_at = 8 + u32::from_le_bytes(lying[4..8].try_into().unwrap()) as usize;
        lying[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(lying.into()), Err(BatchError::Truncated));
        assert_eq!(
            decode(Bytes::from_static(b"PK\x03\x04....")),
            Err(BatchError::NotABatch)
        );
    }

    #[test]
    fn names_and_hours_index_the_batches() {
        let name = BatchName {
            first_ms: 1_764_662_400_000,
            last_ms: 1_764_662_415_000,
            writer: "ab12".to_owned(),
            seq: 7,
        };
        assert_eq!(BatchName::parse(&name.file_name()), Some(name.clone()));
        assert!(name.overlaps(1_764_662_414_000, 1_764_662_430_000));
        assert!(!name.overlaps(1_764_662_415_000, 1_764_662_430_000));
        assert!(!name.overlaps(0, 1_764_662_399_999));
        assert_eq!(BatchName::parse("x.batch"), None);
        assert_eq!(BatchName::parse("20-10-w-1.batch"), None);
        assert_eq!(hour_of(1_764_662_400_000), "2025-12-02T08");
        assert_eq!(hour_start("2025-12-02T08"), Some(1_764_662_400_000));
        assert_eq!(
            hours_between(1_764_662_400_000 - 1, 1_764_662_400_000 + HOUR_MS),
            ["2025-12-02T07", "2025-12-02T08", "2025-12-02T09"]
        );
        assert!(valid_instance("0a1b2c"));
        assert!(!valid_instance("../etc"));
        assert!(!valid_instance(""));
    }
}
