//! Decoding within a budget: a [`Budget`], and a serde [`Deserializer`] that wraps JSON's and
//! charges every value it reads against it *while* decoding (msgpack's reader, `msgpack.rs`,
//! charges the same budget itself), so a report that would decode into
//! far more memory than its wire size suggests is stopped at the limit, not after.
//!
//! A msgpack empty string is one byte on the wire and a 24-byte string in memory; a list of
//! sixteen million of them (a 16 MiB body) decoded to ~400 MB before this. Each value read now
//! costs [`VALUE_COST`] bytes plus its string's length; nesting deeper than the budget's depth is
//! refused; and strings longer than [`MAX_STRING_BYTES`] are cut (on a character boundary) before
//! they are kept, so no later step (a render's scan of a label) can be handed an unbounded string.
//!
//! The wrapper is transparent otherwise: borrowed strings stay borrowed, and every value reaches the
//! type being decoded exactly as the inner deserializer gave it.

use std::cell::Cell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// What one value (a number, a string, a list, a map entry's key or value) is charged on top of
/// its string bytes: about what it takes in memory once decoded (a `Cow<str>` is 24 bytes, a map
/// entry more).
pub const VALUE_COST: usize = 32;

/// Strings longer than this are cut to it. Scope's strings are names, ids, labels and command
/// lines; the longest real ones (a Java command line with its class path) are a few KiB.
pub const MAX_STRING_BYTES: usize = 16 * 1024;

/// Lists and maps nested deeper than this are refused. A Scope report nests about eight deep
/// (report, topology, nodes, node, a set, its members; templates and DNS a little more).
pub const MAX_DEPTH: usize = 32;

/// How much of a budget a decode may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Decoded bytes, as [`VALUE_COST`] per value plus string lengths.
    pub bytes: usize,
    pub depth: usize,
    pub string_bytes: usize,
    /// Elements of any one list or map (a topology's nodes, a set's members, an edge list).
    pub elements: usize,
}

impl BudgetLimits {
    /// The limits for a report of at most `max_report_bytes` (after decompression): a real
    /// report decodes to about three times its msgpack size by this count (less for JSON;
    /// [`DECODED_PER_REPORT_BYTE`] leaves room above that), a hostile one is stopped at the same
    /// multiple, and no report at more than [`MAX_DECODED_BYTES`].
    pub fn for_report(max_report_bytes: usize) -> Self {
        BudgetLimits {
            bytes: max_report_bytes
                .saturating_mul(DECODED_PER_REPORT_BYTE)
                .min(MAX_DECODED_BYTES),
            depth: MAX_DEPTH,
            string_bytes: MAX_STRING_BYTES,
            elements: MAX_ELEMENTS,
        }
    }

    /// The same with at most `elements` in any one list or map.
    pub fn with_elements(self, elements: usize) -> Self {
        BudgetLimits { elements, ..self }
    }
}

/// Elements any one list or map may have, unless the instance says fewer (the collector's
/// `max_nodes_per_topology`).
pub const MAX_ELEMENTS: usize = 100_000;

/// Decoded bytes a report may take per byte of its (decompressed) body.
pub const DECODED_PER_REPORT_BYTE: usize = 8;

/// Decoded bytes no report may go past, whatever its instance's size limit: a 16 MiB msgpack
/// report of a real probe would take about 48 MiB. (Scope's large report is 1.7 MB.)
pub const MAX_DECODED_BYTES: usize = 64 << 20;

/// Which limit a decode ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// More decoded bytes than this.
    Bytes(usize),
    /// Nested deeper than this.
    Depth(usize),
    /// A list or map with more elements than this.
    Elements(usize),
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::Bytes(n) => write!(f, "it decodes to more than {n} bytes"),
            Exceeded::Depth(n) => write!(f, "it nests lists or maps more than {n} deep"),
            Exceeded::Elements(n) => write!(f, "a list or map in it has more than {n} elements"),
        }
    }
}

/// What a decode has used, and the limit it ran into. One per decode; not shared across threads.
#[derive(Debug)]
pub struct Budget {
    limits: BudgetLimits,
    used: Cell<usize>,
    #[cfg(test)]
    values: Cell<u64>,
    depth: Cell<usize>,
    truncated: Cell<u64>,
    exceeded: Cell<Option<Exceeded>>,
}

impl Budget {
    pub fn new(limits: BudgetLimits) -> Self {
        Budget {
            limits,
            used: Cell::new(0),
            #[cfg(test)]
            values: Cell::new(0),
            depth: Cell::new(0),
            truncated: Cell::new(0),
            exceeded: Cell::new(None),
        }
    }

    /// Decoded bytes charged so far.
    pub fn used(&self) -> usize {
        self.used.get()
    }

    /// Values read so far (counted in tests only, to show where a decode stopped).
    #[cfg(test)]
    fn values(&self) -> u64 {
        self.values.get()
    }

    /// Strings that were cut to the limit.
    pub fn truncated(&self) -> u64 {
        self.truncated.get()
    }

    /// The limit the decode ran into, if it did.
    pub fn exceeded(&self) -> Option<Exceeded> {
        self.exceeded.get()
    }

    #[cold]
    fn refuse<E: de::Error>(&self, why: Exceeded) -> E {
        self.exceeded.set(Some(why));
        E::custom(format_args!("refused: {why}"))
    }

    #[inline]
    pub(super) fn charge<E: de::Error>(&self, string_bytes: usize) -> Result<(), E> {
        #[cfg(test)]
        self.values.set(self.values.get() + 1);
        // Strings are at most `string_bytes` long, so this cannot overflow.
        let used = self.used.get() + VALUE_COST + string_bytes;
        if used > self.limits.bytes {
            return Err(self.refuse(Exceeded::Bytes(self.limits.bytes)));
        }
        self.used.set(used);
        Ok(())
    }

    #[inline]
    pub(super) fn enter<E: de::Error>(&self) -> Result<(), E> {
        let depth = self.depth.get() + 1;
        if depth > self.limits.depth {
            return Err(self.refuse(Exceeded::Depth(self.limits.depth)));
        }
        self.depth.set(depth);
        Ok(())
    }

    /// Counts one more element of a list or map that has `seen` so far.
    #[inline]
    fn element<E: de::Error>(&self, seen: &mut usize) -> Result<(), E> {
        *seen += 1;
        if *seen > self.limits.elements {
            return Err(self.refuse(Exceeded::Elements(self.limits.elements)));
        }
        Ok(())
    }

    #[inline]
    pub(super) fn leave(&self) {
        self.depth.set(self.depth.get().saturating_sub(1));
    }

    /// Refuses a list or map that says it has `len` elements, more than the limit, before any is
    /// read (msgpack announces its lengths).
    #[inline]
    pub(super) fn elements<E: de::Error>(&self, len: usize) -> Result<(), E> {
        if len > self.limits.elements {
            return Err(self.refuse(Exceeded::Elements(self.limits.elements)));
        }
        Ok(())
    }

    /// The longest a kept string may be.
    pub(super) fn string_bytes(&self) -> usize {
        self.limits.string_bytes
    }

    /// `s` cut to the string limit on a character boundary.
    #[inline]
    pub(super) fn cut<'s>(&self, s: &'s str) -> &'s str {
        if s.len() <= self.limits.string_bytes {
            return s;
        }
        self.truncated.set(self.truncated.get() + 1);
        &s[..s.floor_char_boundary(self.limits.string_bytes)]
    }

    /// `b` cut to the string limit, on a character boundary when it is text.
    pub(super) fn cut_bytes<'s>(&self, b: &'s [u8]) -> &'s [u8] {
        if b.len() <= self.limits.string_bytes {
            return b;
        }
        self.truncated.set(self.truncated.get() + 1);
        let head = &b[..self.limits.string_bytes];
        match std::str::from_utf8(head) {
            Ok(_) => head,
            // Text cut inside a character: back off to where it started.
            Err(e) if e.error_len().is_none() => &head[..e.valid_up_to()],
            Err(_) => head,
        }
    }
}

/// `inner`, charging everything it decodes to `budget`.
pub struct Bounded<'b, D> {
    inner: D,
    budget: &'b Budget,
}

impl<'b, D> Bounded<'b, D> {
    pub fn new(inner: D, budget: &'b Budget) -> Self {
        Bounded { inner, budget }
    }
}

macro_rules! forward {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.inner.$method(Watch { inner: visitor, budget: self.budget, charge: true })
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Bounded<'_, D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_ignored_any,
    );

    /// A struct's field name: read and dropped (the map entry it starts is counted as one), so
    /// not charged; a long one is still cut.
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let watch = Watch {
            inner: visitor,
            budget: self.budget,
            charge: false,
        };
        self.inner.deserialize_identifier(watch)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let watch = self.watch(visitor);
        self.inner.deserialize_unit_struct(name, watch)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let watch = self.watch(visitor);
        self.inner.deserialize_newtype_struct(name, watch)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let watch = self.watch(visitor);
        self.inner.deserialize_tuple(len, watch)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let watch = self.watch(visitor);
        self.inner.deserialize_tuple_struct(name, len, watch)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let watch = self.watch(visitor);
        self.inner.deserialize_struct(name, fields, watch)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let watch = self.watch(visitor);
        self.inner.deserialize_enum(name, variants, watch)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

impl<'b, D> Bounded<'b, D> {
    fn watch<V>(&self, visitor: V) -> Watch<'b, V> {
        Watch {
            inner: visitor,
            budget: self.budget,
            charge: true,
        }
    }
}

/// A visitor that charges what it is shown, then shows it to the visitor it wraps.
struct Watch<'b, V> {
    inner: V,
    budget: &'b Budget,
    /// False for a struct's field names.
    charge: bool,
}

impl<V> Watch<'_, V> {
    #[inline]
    fn charge<E: de::Error>(&self, string_bytes: usize) -> Result<(), E> {
        if self.charge {
            self.budget.charge(string_bytes)
        } else {
            Ok(())
        }
    }
}

macro_rules! charged {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.charge(0)?;
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Watch<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.expecting(f)
    }

    charged!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
    );

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        let v = self.budget.cut(v);
        self.charge(v.len())?;
        self.inner.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        let v = self.budget.cut(v);
        self.charge(v.len())?;
        self.inner.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, mut v: String) -> Result<V::Value, E> {
        let len = self.budget.cut(&v).len();
        v.truncate(len);
        self.charge(v.len())?;
        self.inner.visit_string(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        let v = self.budget.cut_bytes(v);
        self.charge(v.len())?;
        self.inner.visit_bytes(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        let v = self.budget.cut_bytes(v);
        self.charge(v.len())?;
        self.inner.visit_borrowed_bytes(v)
    }

    fn visit_byte_buf<E: de::Error>(self, mut v: Vec<u8>) -> Result<V::Value, E> {
        let len = self.budget.cut_bytes(&v).len();
        v.truncate(len);
        self.charge(v.len())?;
        self.inner.visit_byte_buf(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.charge(0)?;
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.charge(0)?;
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Bounded::new(d, self.budget))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner
            .visit_newtype_struct(Bounded::new(d, self.budget))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.charge(0)?;
        self.budget.enter()?;
        let value = self.inner.visit_seq(Elements::new(seq, self.budget));
        self.budget.leave();
        value
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.charge(0)?;
        self.budget.enter()?;
        let value = self.inner.visit_map(Elements::new(map, self.budget));
        self.budget.leave();
        value
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.charge(0)?;
        self.inner.visit_enum(Elements::new(data, self.budget))
    }
}

/// A list's, a map's or an enum's access, handing each element a [`Bounded`] deserializer.
struct Elements<'b, A> {
    inner: A,
    budget: &'b Budget,
    /// Elements (or map entries) taken so far.
    seen: usize,
}

impl<'b, A> Elements<'b, A> {
    fn new(inner: A, budget: &'b Budget) -> Self {
        Elements {
            inner,
            budget,
            seen: 0,
        }
    }
}

/// A seed whose value is decoded within the budget.
struct Seeded<'b, S> {
    inner: S,
    budget: &'b Budget,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seeded<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Bounded::new(d, self.budget))
    }
}

impl<'b, A> Elements<'b, A> {
    fn seeded<S>(&self, seed: S) -> Seeded<'b, S> {
        Seeded {
            inner: seed,
            budget: self.budget,
        }
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Elements<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let seed = self.seeded(seed);
        let element = self.inner.next_element_seed(seed)?;
        if element.is_some() {
            self.budget.element(&mut self.seen)?;
        }
        Ok(element)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Elements<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let seed = self.seeded(seed);
        let key = self.inner.next_key_seed(seed)?;
        if key.is_some() {
            self.budget.element(&mut self.seen)?;
        }
        Ok(key)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let seed = self.seeded(seed);
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 'b, A: EnumAccess<'de>> EnumAccess<'de> for Elements<'b, A> {
    type Error = A::Error;
    type Variant = Elements<'b, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let budget = self.budget;
        let seed = self.seeded(seed);
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((value, Elements::new(variant, budget)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Elements<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let seed = self.seeded(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let watch = Watch {
            inner: visitor,
            budget: self.budget,
            charge: true,
        };
        self.inner.tuple_variant(len, watch)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let watch = Watch {
            inner: visitor,
            budget: self.budget,
            charge: true,
        };
        self.inner.struct_variant(fields, watch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::decode::{DecodeError, Format, inflate, parse, read_fixture};
    use crate::collector::msgpack;
    use crate::collector::report::{Report, Time};
    use crate::collector::wire::WireReport;
    use crate::probe::loadgen::{Shape, synthetic_report};

    const MIB: usize = 1 << 20;

    /// What a decode of `raw` used, as decoded bytes per byte of body.
    fn ratio(raw: &[u8], format: Format) -> f64 {
        let budget = Budget::new(BudgetLimits::for_report(64 * MIB));
        match format {
            Format::Msgpack => {
                msgpack::from_slice::<WireReport>(raw, &budget).unwrap();
            }
            Format::Json => {
                let mut de = serde_json::Deserializer::from_slice(raw);
                WireReport::deserialize(Bounded::new(&mut de, &budget)).unwrap();
            }
        }
        budget.used() as f64 / raw.len() as f64
    }

    use serde::Deserialize;

    #[test]
    fn real_reports_decode_alike_and_well_within_the_budget() {
        let medium = synthetic_report(0, 50, &Shape::medium(), Time(1_800_000_000_000_000_000));
        let large = synthetic_report(0, 50, &Shape::large(), Time(1_800_000_000_000_000_000));
        let mut bodies = Vec::new();
        for report in [&medium, &large] {
            let (body, _) = crate::probe::encode(report, false).unwrap();
            bodies.push((
                inflate(&body, true, 64 * MIB).unwrap().into_owned(),
                Format::Msgpack,
            ));
            let (body, _) = crate::probe::encode(report, true).unwrap();
            bodies.push((
                inflate(&body, true, 64 * MIB).unwrap().into_owned(),
                Format::Json,
            ));
        }
        for (raw, format) in &bodies {
            let ratio = ratio(raw, *format);
            eprintln!(
                "{format:?} {} bytes: {ratio:.2} decoded bytes per byte",
                raw.len()
            );
            assert!(
                ratio * 2.0 < DECODED_PER_REPORT_BYTE as f64,
                "{format:?}: {ratio:.2}"
            );
            // Decoded within the budget of its own size, the report is what an unbounded decode
            // gives.
            let bounded: Report = parse(raw, *format, BudgetLimits::for_report(raw.len())).unwrap();
            let plain: Report = match format {
                Format::Msgpack => rmp_serde::from_slice(raw).unwrap(),
                Format::Json => serde_json::from_slice(raw).unwrap(),
            };
            assert_eq!(bounded, plain);
        }
        assert_eq!(
            bounded_fixture("probe-full-1.msgpack.gz"),
            read_fixture("probe-full-1.msgpack.gz")
        );
    }

    fn bounded_fixture(name: &str) -> Report {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/scope")
            .join(name);
        let body = std::fs::read(path).unwrap();
        let raw = inflate(&body, true, 64 * MIB).unwrap();
        assert!(ratio(&raw, Format::Msgpack) * 2.0 < DECODED_PER_REPORT_BYTE as f64);
        let plain: Report = rmp_serde::from_slice(&raw).unwrap();
        plain
    }

    /// msgpack for `{"Process": {"nodes": {"n": {"sets": {"s": [<members> × ""]}}}}}`.
    fn empty_strings_report(members: u32) -> Vec<u8> {
        let mut body = Vec::with_capacity(members as usize + 64);
        let fixstr = |body: &mut Vec<u8>, s: &str| {
            body.push(0xa0 | s.len() as u8);
            body.extend_from_slice(s.as_bytes());
        };
        for key in ["Process", "nodes", "n", "sets", "s"] {
            body.push(0x81);
            fixstr(&mut body, key);
        }
        body.push(0xdd);
        body.extend_from_slice(&members.to_be_bytes());
        body.resize(body.len() + members as usize, 0xa0);
        body
    }

    #[test]
    fn a_list_of_empty_strings_is_stopped_at_the_budget_while_decoding() {
        // Four million one-byte empty strings: ~100 MB as decoded strings, before this.
        let body = empty_strings_report(4_000_000);
        let limits = BudgetLimits::for_report(body.len()).with_elements(usize::MAX);
        let budget = Budget::new(limits);
        assert!(msgpack::from_slice::<WireReport>(&body, &budget).is_err());
        assert_eq!(budget.exceeded(), Some(Exceeded::Bytes(limits.bytes)));
        // It stopped after reading no more values than the budget pays for.
        assert!(budget.values() <= (limits.bytes / VALUE_COST) as u64 + 1);
        assert!(budget.values() < 4_000_000 / 2, "{}", budget.values());
        // And the decode says so.
        let err = parse::<WireReport>(&body, Format::Msgpack, limits).unwrap_err();
        assert!(
            matches!(err, DecodeError::TooComplex(Exceeded::Bytes(_))),
            "{err}"
        );
        // The same body is refused by the element count of one list, too.
        let err = parse::<WireReport>(
            &body,
            Format::Msgpack,
            BudgetLimits::for_report(64 * MIB).with_elements(1_000),
        )
        .unwrap_err();
        assert_eq!(err, DecodeError::TooComplex(Exceeded::Elements(1_000)));
    }

    #[test]
    fn a_json_report_with_a_million_nodes_stops_at_the_element_limit() {
        let mut body = String::from(r#"{"Process": {"nodes": {"#);
        for n in 0..1_000_000 {
            if n > 0 {
                body.push(',');
            }
            body.push_str(&format!(r#""n{n}": {{}}"#));
        }
        body.push_str("}}}");
        let budget = Budget::new(BudgetLimits::for_report(body.len()).with_elements(100_000));
        let mut de = serde_json::Deserializer::from_slice(body.as_bytes());
        assert!(WireReport::deserialize(Bounded::new(&mut de, &budget)).is_err());
        assert_eq!(budget.exceeded(), Some(Exceeded::Elements(100_000)));
        assert!(budget.values() < 400_000, "{}", budget.values());
    }

    #[test]
    fn long_strings_are_cut_on_a_character_boundary() {
        // "é" is two bytes: a cut at an odd length would split one.
        let long = "é".repeat(MAX_STRING_BYTES);
        let escaped = format!("\\\"{}", "x".repeat(MAX_STRING_BYTES * 2));
        let body = format!(
            r#"{{"Process": {{"nodes": {{"{long}": {{"latest": {{"k": {{"value": "{escaped}"}}}}}}}}}}}}"#
        );
        let budget = Budget::new(BudgetLimits::for_report(body.len()));
        let mut de = serde_json::Deserializer::from_slice(body.as_bytes());
        let report = WireReport::deserialize(Bounded::new(&mut de, &budget)).unwrap();
        assert_eq!(budget.truncated(), 2);
        let topology = &report.topologies[0].1;
        let (id, node) = &topology.nodes[0];
        assert_eq!(id.as_str().len(), MAX_STRING_BYTES);
        assert!(long.starts_with(id.as_str()));
        let value = topology.maps.latest[node.latest.start].1.value.as_str();
        assert_eq!(value.len(), MAX_STRING_BYTES);
        assert!(value.starts_with("\"xxx"));
        // msgpack: borrowed, cut the same way.
        let report = Report {
            id: long.clone(),
            ..Report::default()
        };
        let raw = rmp_serde::to_vec_named(&report).unwrap();
        let decoded: WireReport =
            parse(&raw, Format::Msgpack, BudgetLimits::for_report(raw.len())).unwrap();
        assert!(decoded.id.is_borrowed());
        assert_eq!(decoded.id.as_str().len(), MAX_STRING_BYTES);
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused() {
        let nested =
            |depth: usize| format!(r#"{{"DNS": {}{}}}"#, "[".repeat(depth), "]".repeat(depth));
        let fits = nested(MAX_DEPTH - 1);
        parse::<WireReport>(fits.as_bytes(), Format::Json, BudgetLimits::for_report(MIB)).unwrap();
        let deep = nested(MAX_DEPTH);
        let err = parse::<WireReport>(deep.as_bytes(), Format::Json, BudgetLimits::for_report(MIB))
            .unwrap_err();
        assert_eq!(err, DecodeError::TooComplex(Exceeded::Depth(MAX_DEPTH)));
        // Malformed input is still malformed, not "too complex".
        let err = parse::<WireReport>(b"{\"TS\": [", Format::Json, BudgetLimits::for_report(MIB))
            .unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)), "{err}");
    }
}
