//! Weave Scope's report model (shared scope-protocol.md §2), as the real probe sends it.
//!
//! Decoding is lenient where the probe is: `null` for empty maps and lists, unknown and legacy fields
//! ignored, times either RFC 3339 strings (JSON) or Go `time.MarshalBinary` blobs inside msgpack
//! strings. The same types decode both encodings.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::keyed::KeyedMap;
use super::name::Name;

/// The 23 topologies of a report, by their wire names.
pub const TOPOLOGIES: [&str; 23] = [
    "Endpoint",
    "Process",
    "Container",
    "ContainerImage",
    "Pod",
    "Service",
    "Deployment",
    "ReplicaSet",
    "DaemonSet",
    "StatefulSet",
    "CronJob",
    "Namespace",
    "Host",
    "Overlay",
    "ECSTask",
    "ECSService",
    "SwarmService",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "StorageClass",
    "VolumeSnapshot",
    "VolumeSnapshotData",
    "Job",
];

/// Nanoseconds since the Unix epoch, UTC. Times outside what that can hold (Go's zero time,
/// 0001-01-01, above all) are clamped to its ends; [`Time::ZERO`] is the oldest, and the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub i64);

impl Default for Time {
    fn default() -> Self {
        Time::ZERO
    }
}

/// Seconds from 0001-01-01 to 1970-01-01, as Go counts them.
const GO_UNIX_OFFSET: i64 = 62_135_596_800;

impl Time {
    /// Go's zero time, "unset".
    pub const ZERO: Time = Time(i64::MIN);

    fn from_unix(secs: i64, nanos: u32) -> Time {
        match secs
            .checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(i64::from(nanos)))
        {
            Some(n) if n != i64::MIN => Time(n),
            _ if secs < 0 => Time::ZERO,
            _ => Time(i64::MAX),
        }
    }

    /// Go's `time.MarshalBinary`: version 1 (15 bytes) or 2 (16 bytes: seconds in the zone offset).
    pub fn from_go_binary(bytes: &[u8]) -> Option<Time> {
        let (&version, rest) = bytes.split_first()?;
        let expected = match version {
            1 => 14,
            2 => 15,
            _ => return None,
        };
        if rest.len() != expected {
            return None;
        }
        let secs = i64::from_be_bytes(rest[0..8].try_into().ok()?);
        let nanos = i32::from_be_bytes(rest[8..12].try_into().ok()?);
        if !(0..1_000_000_000).contains(&nanos) {
            return None;
        }
        Some(Time::from_unix(
            secs.checked_sub(GO_UNIX_OFFSET)?,
            nanos as u32,
        ))
    }

    pub fn parse_rfc3339(s: &str) -> Option<Time> {
        if let Some(t) = Time::parse_utc(s.as_bytes()) {
            return Some(t);
        }
        let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
        Some(Time::from_unix(t.timestamp(), t.timestamp_subsec_nanos()))
    }

    /// The form every probe writes, `2026-11-28T06:10:18.062328274Z` (UTC, the fraction
    /// optional, at most nanoseconds), read without a general parser: a report carries a time for
    /// every latest value and sample. `None` for anything else, which the general parser reads.
    fn parse_utc(b: &[u8]) -> Option<Time> {
        fn digits(b: &[u8]) -> Option<i64> {
            b.iter().try_fold(0i64, |n, &c| {
                c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
            })
        }
        if b.len() < 20 || b[b.len() - 1] != b'Z' {
            return None;
        }
        if [b[4], b[7], b[10], b[13], b[16]] != [b'-', b'-', b'T', b':', b':'] {
            return None;
        }
        let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
        let (hour, minute, second) = (
            digits(&b[11..13])?,
            digits(&b[14..16])?,
            digits(&b[17..19])?,
        );
        let nanos = match &b[19..b.len() - 1] {
            [] => 0,
            [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
                digits(fraction)? * 10i64.pow(9 - fraction.len() as u32)
            }
            _ => return None,
        };
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let month_days = [
            31,
            if leap { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        if !(1..=12).contains(&month)
            || day < 1
            || day > month_days[(month - 1) as usize]
            || hour > 23
            || minute > 59
            || second > 59
        {
            // Leap seconds and invalid dates are the general parser's to judge.
            return None;
        }
        // Days from 1970-01-01 to the date (the proleptic Gregorian calendar, as chrono counts).
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let year_of_era = y - era * 400;
        let m = (month + 9) % 12;
        let day_of_year = (153 * m + 2) / 5 + day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        let days = era * 146_097 + day_of_era - 719_468;
        let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
        Some(Time::from_unix(secs, nanos as u32))
    }

    pub fn to_rfc3339(self) -> String {
        if self == Time::ZERO {
            return "0001-01-01T00:00:00Z".to_owned();
        }
        let secs = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000) as u32;
        let Some(t) = chrono::DateTime::from_timestamp(secs, nanos) else {
            return String::new();
        };
        // Go's RFC3339Nano, as Scope writes times: the fraction without trailing zeros, or none.
        let whole = t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        if nanos == 0 {
            return whole;
        }
        let fraction = format!("{nanos:09}");
        format!(
            "{}.{}Z",
            whole.trim_end_matches('Z'),
            fraction.trim_end_matches('0')
        )
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        struct TimeVisitor;
        impl<'de> Visitor<'de> for TimeVisitor {
            type Value = Time;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 time or a Go binary time")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Time, E> {
                if let Some(time) = recall_time(v.as_bytes()) {
                    return Ok(time);
                }
                // A binary blob that happens to be valid UTF-8 arrives here too (msgpack reports
                // carry every time so): it starts with its version byte, 1 or 2, where an RFC 3339
                // time starts with a digit of the year.
                let rfc3339_first = v.as_bytes().first().is_some_and(u8::is_ascii_digit);
                let parsed = if rfc3339_first {
                    Time::parse_rfc3339(v).or_else(|| Time::from_go_binary(v.as_bytes()))
                } else {
                    Time::from_go_binary(v.as_bytes()).or_else(|| Time::parse_rfc3339(v))
                };
                let time = parsed
                    .ok_or_else(|| E::custom(format!("invalid time `{}`", v.escape_debug())))?;
                remember_time(v.as_bytes(), time);
                Ok(time)
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Time, E> {
                Time::from_go_binary(v).ok_or_else(|| E::custom("invalid Go binary time"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Time, E> {
                Ok(Time::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Time, E> {
                Ok(Time::default())
            }
        }
        d.deserialize_any(TimeVisitor)
    }
}

/// The longest time text kept by [`remember_time`]: an RFC 3339 time with nanoseconds is 30 bytes,
/// a Go binary time 15.
const REMEMBERED_TIME_BYTES: usize = 32;

thread_local! {
    /// The last time this thread decoded, with its text: a report stamps its latest values with
    /// a few times, each many times over, and reading one again costs more than comparing it.
    static LAST_TIME: Cell<([u8; REMEMBERED_TIME_BYTES], usize, Time)> =
        const { Cell::new(([0; REMEMBERED_TIME_BYTES], usize::MAX, Time::ZERO)) };
}

fn recall_time(text: &[u8]) -> Option<Time> {
    let (kept, len, time) = LAST_TIME.get();
    (kept.get(..len) == Some(text)).then_some(time)
}

fn remember_time(text: &[u8], time: Time) {
    if text.len() <= REMEMBERED_TIME_BYTES {
        let mut kept = [0; REMEMBERED_TIME_BYTES];
        kept[..text.len()].copy_from_slice(text);
        LAST_TIME.set((kept, text.len(), time));
    }
}

/// `null` decodes as the empty value (real probes send `null` for empty sets, parents, children).
pub(super) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A map of string lists where the map, or any list in it, may be `null` (old probes do that).
fn string_sets<'de, D: Deserializer<'de>>(d: D) -> Result<StringSets, D::Error> {
    let raw: Option<BTreeMap<String, Option<Vec<Name>>>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatestEntry {
    #[serde(default)]
    pub timestamp: Time,
    #[serde(default, deserialize_with = "null_default")]
    pub value: Name,
}

impl LatestEntry {
    pub fn new(value: impl Into<Name>, timestamp: Time) -> LatestEntry {
        LatestEntry {
            timestamp,
            value: value.into(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    #[serde(default)]
    pub date: Time,
    #[serde(default)]
    pub value: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    #[serde(default, deserialize_with = "null_default")]
    pub samples: Vec<Sample>,
    #[serde(default)]
    pub min: f64,
    #[serde(default)]
    pub max: f64,
}

/// A node's named string sets (`sets`, `parents`).
pub type StringSets = KeyedMap<Vec<Name>>;
/// A node's latest values by key.
pub type Latest = KeyedMap<LatestEntry>;
/// A node's metrics by key.
pub type Metrics = KeyedMap<Metric>;

/// A node's map, shared (`Arc`). Most nodes lack most maps, and an `Arc` of an empty map is still
/// an allocation: the empty map is one for all.
pub trait Shared: Sized {
    fn shared(self) -> Arc<Self>;
}

macro_rules! shared_when_empty {
    ($map:ty) => {
        impl Shared for $map {
            fn shared(self) -> Arc<Self> {
                static EMPTY: LazyLock<Arc<$map>> = LazyLock::new(Default::default);
                if self.is_empty() {
                    Arc::clone(&EMPTY)
                } else {
                    Arc::new(self)
                }
            }
        }
    };
}

shared_when_empty!(StringSets);
shared_when_empty!(Latest);
shared_when_empty!(Metrics);

/// A report node. Its maps are shared (`Arc`): renders take nodes from the merged window by
/// reference, and a map is copied only when a render changes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Empty in deltas, which carry only what changed.
    #[serde(default, deserialize_with = "null_default")]
    pub id: Name,
    #[serde(default, deserialize_with = "null_default")]
    pub topology: Name,
    #[serde(default, deserialize_with = "shared_string_sets")]
    pub sets: Arc<StringSets>,
    #[serde(default, deserialize_with = "null_default")]
    pub adjacency: Vec<Name>,
    #[serde(default, deserialize_with = "shared_null_default")]
    pub latest: Arc<Latest>,
    #[serde(default, deserialize_with = "shared_null_default")]
    pub metrics: Arc<Metrics>,
    #[serde(default, deserialize_with = "shared_string_sets")]
    pub parents: Arc<StringSets>,
    #[serde(default, deserialize_with = "null_default")]
    pub children: Vec<Node>,
}

impl Default for Node {
    fn default() -> Self {
        Node {
            id: Name::default(),
            topology: Name::default(),
            sets: StringSets::new().shared(),
            adjacency: Vec::new(),
            latest: Latest::new().shared(),
            metrics: Metrics::new().shared(),
            parents: StringSets::new().shared(),
            children: Vec::new(),
        }
    }
}

impl Node {
    pub fn sets_mut(&mut self) -> &mut StringSets {
        Arc::make_mut(&mut self.sets)
    }

    pub fn latest_mut(&mut self) -> &mut Latest {
        Arc::make_mut(&mut self.latest)
    }

    pub fn metrics_mut(&mut self) -> &mut Metrics {
        Arc::make_mut(&mut self.metrics)
    }

    pub fn parents_mut(&mut self) -> &mut StringSets {
        Arc::make_mut(&mut self.parents)
    }
}

/// A shared map's contents, copied only if someone else holds it too.
pub fn owned<T: Clone>(shared: Arc<T>) -> T {
    Arc::try_unwrap(shared).unwrap_or_else(|shared| T::clone(&shared))
}

fn shared_null_default<'de, D, T>(d: D) -> Result<Arc<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    null_default(d).map(Arc::new)
}

fn shared_string_sets<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<StringSets>, D::Error> {
    string_sets(d).map(Arc::new)
}

/// Templates and controls are passed through to the UI as they came.
pub type Templates = BTreeMap<String, serde_json::Value>;

/// Templates of each kind (controls, metadata, metric and table templates) a topology keeps at
/// most, from one report and in a merged window. Scope's probes send at most a dozen; every node
/// summary is made from all of its topology's templates, so their number and size multiply with the
/// node count and are bounded here.
pub const MAX_TEMPLATES: usize = 64;
/// A template larger than this (decoded) is dropped.
pub const MAX_TEMPLATE_BYTES: usize = 4096;

fn template_fits(template: &serde_json::Value) -> bool {
    use super::footprint::Footprint;
    template.heap_bytes() <= MAX_TEMPLATE_BYTES
}

/// A report's templates within the limits: the first [`MAX_TEMPLATES`] by id of those that fit.
pub fn bounded_templates(templates: Templates) -> Templates {
    if templates.len() <= MAX_TEMPLATES && templates.values().all(template_fits) {
        return templates;
    }
    templates
        .into_iter()
        .filter(|(_, t)| template_fits(t))
        .take(MAX_TEMPLATES)
        .collect()
}

/// Adds template `id` to `mine`: of one id from several probes the higher priority wins (Scope's
/// rule); a new id is added only while `mine` has fewer than [`MAX_TEMPLATES`].
pub fn merge_template(mine: &mut Templates, id: &str, template: &serde_json::Value) {
    let priority = |t: &serde_json::Value| {
        t.get("priority")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    if !template_fits(template) {
        return;
    }
    let room = mine.len() < MAX_TEMPLATES;
    match mine.get_mut(id) {
        Some(existing) if priority(existing) < priority(template) => existing.clone_from(template),
        Some(_) => {}
        None if room => {
            mine.insert(id.to_owned(), template.clone());
        }
        None => {}
    }
}

/// A topology of a report; it is decoded as [`super::wire::WireTopology`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Topology {
    pub shape: String,
    pub tag: String,
    pub label: String,
    pub label_plural: String,
    pub nodes: BTreeMap<Name, Node>,
    pub controls: Templates,
    pub metadata_templates: Templates,
    pub metric_templates: Templates,
    pub table_templates: Templates,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    #[serde(rename = "TS")]
    pub ts: Time,
    /// Nanoseconds.
    #[serde(rename = "Window")]
    pub window: i64,
    #[serde(rename = "Shortcut")]
    pub shortcut: bool,
    #[serde(rename = "ID")]
    pub id: String,
    /// By wire name (`Endpoint`, `Process`, …); only topologies the report carried.
    #[serde(flatten)]
    pub topologies: BTreeMap<String, Topology>,
    #[serde(rename = "DNS", skip_serializing_if = "serde_json::Value::is_null")]
    pub dns: serde_json::Value,
    #[serde(rename = "Plugins", skip_serializing_if = "serde_json::Value::is_null")]
    pub plugins: serde_json::Value,
}

impl Report {
    pub fn topology(&self, name: &str) -> Option<&Topology> {
        self.topologies.get(name)
    }

    /// Nodes in all topologies.
    pub fn node_count(&self) -> usize {
        self.topologies.values().map(|t| t.nodes.len()).sum()
    }
}

/// Decoded through the wire form, the one decoder of reports.
impl<'de> Deserialize<'de> for Report {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Report, D::Error> {
        super::wire::WireReport::deserialize(d).map(super::wire::WireReport::into_report)
    }
}

#[cfg(test)]
mod tests {
    use super::Time;

    #[test]
    fn probe_times_are_read_as_the_general_parser_reads_them() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut times = vec![
            "1970-01-01T00:00:00Z".to_owned(),
            "0001-01-01T00:00:00Z".to_owned(),
            "1969-12-31T23:59:59.999999999Z".to_owned(),
            "2000-02-29T12:00:00.5Z".to_owned(),
            "2400-02-29T23:59:59.000000001Z".to_owned(),
            "9999-12-31T23:59:59.123Z".to_owned(),
        ];
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let t = Time((seed as i64) >> 1 >> (seed % 3));
            times.push(t.to_rfc3339());
        }
        for s in &times {
            let fast = Time::parse_utc(s.as_bytes());
            let general = chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| Time::from_unix(t.timestamp(), t.timestamp_subsec_nanos()));
            assert!(fast.is_some(), "{s}");
            assert_eq!(fast, general, "{s}");
        }
        // What it leaves to the general parser, which reads or refuses it.
        for s in [
            "2026-11-28T06:10:18+01:00",
            "2026-11-28t06:10:18z",
            "2026-11-28T06:10:18.Z",
            "2026-11-28T06:10:18.0123456789Z",
            "2026-02-29T06:10:18Z",
            "2026-11-28T24:00:00Z",
            "2016-12-31T23:59:60Z",
            "+2026-11-28T06:10:18Z",
            "2026-11-28T06:10:1xZ",
        ] {
            assert_eq!(Time::parse_utc(s.as_bytes()), None, "{s}");
        }
        assert_eq!(
            Time::parse_rfc3339("2026-11-28T06:10:18+01:00"),
            Time::parse_rfc3339("2026-11-28T05:10:18Z")
        );
    }

    #[test]
    fn a_time_decoded_again_is_the_same_time() {
        // Each a prefix of the next, then back: a remembered time must match the whole text.
        let texts = [
            "2026-11-28T06:10:18Z",
            "2026-11-28T06:10:18.5Z",
            "2026-11-28T06:10:18.55Z",
            "2026-11-28T06:10:18.5Z",
            "2026-11-28T06:10:18.5Z",
            "2026-11-28T06:10:18Z",
            "2026-11-28T06:10:18+01:00",
            "2026-11-28T06:10:18Z",
        ];
        let json = serde_json::to_string(&texts).unwrap();
        let decoded: Vec<Time> = serde_json::from_str(&json).unwrap();
        let parsed: Vec<Time> = texts
            .iter()
            .map(|s| Time::parse_rfc3339(s).unwrap())
            .collect();
        assert_eq!(decoded, parsed);
        assert_ne!(decoded[0], decoded[1]);
        assert_ne!(decoded[5], decoded[6]);
        // A text that is not a time is refused even right after one that is.
        assert!(
            serde_json::from_str::<Vec<Time>>(r#"["2026-11-28T06:10:18Z", "2026-11-28T06:10:18"]"#)
                .is_err()
        );
    }

    #[test]
    fn go_binary_times_decode() {
        // 2026-11-28T06:10:18.062328274Z, from probe-full-1's TS.
        let raw = [
            0x01, 0, 0, 0, 0x0e, 0xe2, 0x9c, 0x67, 0x4a, 0x03, 0xb7, 0x0d, 0xd2, 0, 0,
        ];
        let t = Time::from_go_binary(&raw).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-28T06:10:18.062328274Z");
        assert_eq!(
            Time::parse_rfc3339("2026-11-28T06:10:18.062328274Z"),
            Some(t)
        );
        // An explicit UTC zone (-1) decodes the same.
        let mut utc = raw;
        utc[13] = 0xff;
        utc[14] = 0xff;
        assert_eq!(Time::from_go_binary(&utc), Some(t));
        assert_eq!(Time::from_go_binary(&raw[..14]), None);
        // Go's zero time, in both encodings.
        let zero = [0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        assert_eq!(Time::from_go_binary(&zero), Some(Time::ZERO));
        assert_eq!(
            Time::parse_rfc3339("0001-01-01T00:00:00Z"),
            Some(Time::ZERO)
        );
        assert_eq!(Time::ZERO.to_rfc3339(), "0001-01-01T00:00:00Z");
        // As Go's RFC3339Nano: trailing zeros of the fraction dropped, no fraction for whole seconds.
        let at = |nanos: i64| Time(1_764_000_000_000_000_000 + nanos).to_rfc3339();
        assert_eq!(at(0), "2025-11-24T16:00:00Z");
        assert_eq!(at(500_000_000), "2025-11-24T16:00:00.5Z");
        assert_eq!(at(62_328_000), "2025-11-24T16:00:00.062328Z");
        assert_eq!(at(1), "2025-11-24T16:00:00.000000001Z");
        assert!(Time::ZERO < t);
        assert_eq!(Time::from_go_binary(&[9; 15]), None);
    }
}
