//! Reading msgpack within a budget: a serde [`Deserializer`] over the (decompressed) body that
//! charges every value to a [`Budget`] as it reads it, exactly as [`super::bounded::Bounded`]
//! charges what a wrapped deserializer hands out (the JSON path keeps that wrapper).
//!
//! Why not `rmp_serde` behind the wrapper: reports are decoded on every ingest and every past
//! moment is made again from stored reports, and the two layers (a generic reader under a
//! charging wrapper, each value passing through both) took half of a report's decode. Here the
//! budget is charged where the value is read, lengths are checked against the element limit
//! before the elements are read, ignored values are skipped without being built, and struct
//! field names are matched as bytes without a UTF-8 check.
//!
//! The format is msgpack's specification (github.com/msgpack/msgpack/blob/master/spec.md); what a
//! report can hold of it is what Go's msgpack encoders write: nil, booleans, integers, floats,
//! strings, binary, arrays and maps. Extension types are skipped where the value is ignored and
//! refused where it is read. Strings borrow from the body; a string that is not UTF-8 is handed
//! over as bytes (the type decoding it decides).

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use super::bounded::Budget;

/// Why a msgpack body did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, Error>;

/// Decodes one value from the start of `body` within `budget`. Bytes after it are not read (as
/// Scope's app, which decodes a report from a stream).
pub fn from_slice<'de, T: de::Deserialize<'de>>(body: &'de [u8], budget: &Budget) -> Result<T> {
    from_slice_seed(body, budget, std::marker::PhantomData::<T>)
}

/// [`from_slice`] through a seed (a decoding that hands what it decodes over as it goes).
pub fn from_slice_seed<'de, S: de::DeserializeSeed<'de>>(
    body: &'de [u8],
    budget: &Budget,
    seed: S,
) -> Result<S::Value> {
    seed.deserialize(&mut Reader {
        input: body,
        budget,
    })
}

/// What a value's first bytes say it is.
#[derive(Debug, Clone, Copy)]
enum Head {
    Nil,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    F32(f32),
    F64(f64),
    /// Its length in bytes.
    Str(usize),
    Bin(usize),
    /// Its length in elements.
    Array(usize),
    /// Its length in entries.
    Map(usize),
    /// Its data's length (the type byte is read).
    Ext(usize),
}

struct Reader<'de, 'b> {
    /// What is left to read.
    input: &'de [u8],
    budget: &'b Budget,
}

#[cold]
fn unread(left: usize) -> Error {
    Error(format!(
        "msgpack: {left} elements of a list or map were not read"
    ))
}

#[cold]
fn truncated() -> Error {
    Error("the body ends inside a value".into())
}

impl<'de> Reader<'de, '_> {
    #[inline]
    fn byte(&mut self) -> Result<u8> {
        let (&b, rest) = self.input.split_first().ok_or_else(truncated)?;
        self.input = rest;
        Ok(b)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if n > self.input.len() {
            return Err(truncated());
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<usize> {
        self.byte().map(usize::from)
    }

    fn u16(&mut self) -> Result<usize> {
        self.array().map(|a| usize::from(u16::from_be_bytes(a)))
    }

    fn u32(&mut self) -> Result<usize> {
        // msgpack lengths are at most u32; usize is 64 bits on every target the server builds for.
        self.array().map(|a| u32::from_be_bytes(a) as usize)
    }

    /// An extension's type byte, skipped: its data's length is `len`.
    fn ext(&mut self, len: usize) -> Result<Head> {
        self.byte()?;
        Ok(Head::Ext(len))
    }

    #[inline(always)]
    fn head(&mut self) -> Result<Head> {
        let marker = self.byte()?;
        Ok(match marker {
            0x00..=0x7f => Head::Unsigned(u64::from(marker)),
            0x80..=0x8f => Head::Map(usize::from(marker & 0x0f)),
            0x90..=0x9f => Head::Array(usize::from(marker & 0x0f)),
            0xa0..=0xbf => Head::Str(usize::from(marker & 0x1f)),
            0xc0 => Head::Nil,
            0xc1 => return Err(Error("msgpack: 0xc1 is never used".into())),
            0xc2 => Head::Bool(false),
            0xc3 => Head::Bool(true),
            0xc4 => Head::Bin(self.u8()?),
            0xc5 => Head::Bin(self.u16()?),
            0xc6 => Head::Bin(self.u32()?),
            0xc7 => {
                let len = self.u8()?;
                self.ext(len)?
            }
            0xc8 => {
                let len = self.u16()?;
                self.ext(len)?
            }
            0xc9 => {
                let len = self.u32()?;
                self.ext(len)?
            }
            0xca => Head::F32(f32::from_be_bytes(self.array()?)),
            0xcb => Head::F64(f64::from_be_bytes(self.array()?)),
            0xcc => Head::Unsigned(u64::from(self.byte()?)),
            0xcd => Head::Unsigned(u64::from(u16::from_be_bytes(self.array()?))),
            0xce => Head::Unsigned(u64::from(u32::from_be_bytes(self.array()?))),
            0xcf => Head::Unsigned(u64::from_be_bytes(self.array()?)),
            0xd0 => Head::Signed(i64::from(i8::from_be_bytes(self.array()?))),
            0xd1 => Head::Signed(i64::from(i16::from_be_bytes(self.array()?))),
            0xd2 => Head::Signed(i64::from(i32::from_be_bytes(self.array()?))),
            0xd3 => Head::Signed(i64::from_be_bytes(self.array()?)),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9 => Head::Str(self.u8()?),
            0xda => Head::Str(self.u16()?),
            0xdb => Head::Str(self.u32()?),
            0xdc => Head::Array(self.u16()?),
            0xdd => Head::Array(self.u32()?),
            0xde => Head::Map(self.u16()?),
            0xdf => Head::Map(self.u32()?),
            0xe0..=0xff => Head::Signed(i64::from(marker as i8)),
        })
    }

    /// Hands the value that `head` starts to `visitor`, charged.
    fn visit<V: Visitor<'de>>(&mut self, head: Head, visitor: V) -> Result<V::Value> {
        match head {
            Head::Str(len) => {
                let bytes = self.take(len)?;
                self.text(bytes, visitor)
            }
            Head::Bin(len) => {
                let bytes = self.budget.cut_bytes(self.take(len)?);
                self.budget.charge(bytes.len())?;
                visitor.visit_borrowed_bytes(bytes)
            }
            Head::Array(len) => {
                self.open(len)?;
                let mut elements = Elements {
                    de: self,
                    left: len,
                };
                let value = visitor.visit_seq(&mut elements)?;
                let left = elements.left;
                self.close(left, value)
            }
            Head::Map(len) => {
                self.open(len)?;
                let mut entries = Elements {
                    de: self,
                    left: len,
                };
                let value = visitor.visit_map(&mut entries)?;
                let left = entries.left;
                self.close(left, value)
            }
            Head::Ext(_) => Err(Error(
                "msgpack: an extension type where a report has none".into(),
            )),
            Head::Nil => self.budget.charge(0).and_then(|()| visitor.visit_unit()),
            Head::Bool(b) => self.budget.charge(0).and_then(|()| visitor.visit_bool(b)),
            Head::Unsigned(n) => self.budget.charge(0).and_then(|()| visitor.visit_u64(n)),
            Head::Signed(n) => self.budget.charge(0).and_then(|()| visitor.visit_i64(n)),
            Head::F32(x) => self.budget.charge(0).and_then(|()| visitor.visit_f32(x)),
            Head::F64(x) => self.budget.charge(0).and_then(|()| visitor.visit_f64(x)),
        }
    }

    /// A string, borrowed and cut to the string limit; bytes that are not UTF-8 go as bytes.
    #[inline]
    fn text<V: Visitor<'de>>(&mut self, bytes: &'de [u8], visitor: V) -> Result<V::Value> {
        match utf8(bytes) {
            Ok(s) => {
                let s = self.budget.cut(s);
                self.budget.charge(s.len())?;
                visitor.visit_borrowed_str(s)
            }
            Err(_) => {
                let bytes = self.budget.cut_bytes(bytes);
                self.budget.charge(bytes.len())?;
                visitor.visit_borrowed_bytes(bytes)
            }
        }
    }

    /// Enters a list or map of `len` elements: charged, one level deeper, within the element limit.
    #[inline]
    fn open(&mut self, len: usize) -> Result<()> {
        self.budget.charge(0)?;
        self.budget.elements(len)?;
        self.budget.enter()
    }

    /// Leaves a list or map: every element must have been read, or what follows would be misread.
    #[inline]
    fn close<T>(&mut self, left: usize, value: T) -> Result<T> {
        self.budget.leave();
        if left > 0 {
            return Err(unread(left));
        }
        Ok(value)
    }

    /// Reads past one value without building it, charging it as if it were read.
    fn skip(&mut self) -> Result<()> {
        match self.head()? {
            Head::Str(len) | Head::Bin(len) => {
                self.take(len)?;
                self.budget.charge(len.min(self.budget.string_bytes()))
            }
            Head::Ext(len) => {
                self.take(len)?;
                self.budget.charge(0)
            }
            Head::Array(len) => {
                self.open(len)?;
                for _ in 0..len {
                    self.skip()?;
                }
                self.close(0, ())
            }
            Head::Map(len) => {
                self.open(len)?;
                for _ in 0..len {
                    self.skip()?;
                    self.skip()?;
                }
                self.close(0, ())
            }
            _ => self.budget.charge(0),
        }
    }
}

/// `bytes` as text, if they are UTF-8. Nearly every string of a report is ASCII, which an inlined
/// check tells faster than the general validation (a call per string, a tenth of a decode).
#[inline]
fn utf8(bytes: &[u8]) -> std::result::Result<&str, std::str::Utf8Error> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes)
    }
}

impl<'de> Deserializer<'de> for &mut Reader<'de, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let head = self.head()?;
        self.visit(head, visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.input.first() == Some(&0xc0) {
            self.input = &self.input[1..];
            self.budget.charge(0)?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    /// A struct's field name: matched as bytes (derived field visitors take them), not charged
    /// (the map entry it starts is counted), a long one still cut.
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.head()? {
            Head::Str(len) => {
                let bytes = self.budget.cut_bytes(self.take(len)?);
                visitor.visit_borrowed_bytes(bytes)
            }
            other => self.visit(other, visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.skip()?;
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    /// A unit variant as its name, or a map of one entry: the variant's name and its value.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.head()? {
            Head::Str(len) => {
                let name = self.take(len)?;
                let name = std::str::from_utf8(name)
                    .map_err(|_| Error("msgpack: a variant name that is not UTF-8".into()))?;
                self.budget.charge(name.len())?;
                visitor.visit_enum(de::value::BorrowedStrDeserializer::new(name))
            }
            Head::Map(1) => {
                self.open(1)?;
                let value = visitor.visit_enum(&mut *self)?;
                self.close(0, value)
            }
            _ => Err(Error(
                "msgpack: an enum is a name or a map of one entry".into(),
            )),
        }
    }

    fn is_human_readable(&self) -> bool {
        false
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct
    }
}

/// The elements of a list, or the entries of a map, still to be read.
struct Elements<'a, 'de, 'b> {
    de: &'a mut Reader<'de, 'b>,
    left: usize,
}

impl<'de> SeqAccess<'de> for &mut Elements<'_, 'de, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> MapAccess<'de> for &mut Elements<'_, 'de, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> EnumAccess<'de> for &mut Reader<'de, '_> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self)> {
        let variant = seed.deserialize(&mut *self)?;
        Ok((variant, self))
    }
}

impl<'de> VariantAccess<'de> for &mut Reader<'de, '_> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        de::Deserialize::deserialize(self)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_any(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_any(visitor)
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use serde::Deserialize;
    use serde::de::{MapAccess, SeqAccess, Visitor};

    use super::*;
    use crate::collector::bounded::{Bounded, BudgetLimits, Exceeded};
    use crate::collector::decode::{Format, inflate, parse};
    use crate::collector::report::{Report, Time};
    use crate::probe::loadgen::{Shape, synthetic_report};

    const MIB: usize = 1 << 20;

    /// Any msgpack value, as a decoder hands it over.
    #[derive(Debug, Clone, PartialEq)]
    enum Any {
        Nil,
        Bool(bool),
        Unsigned(u64),
        Signed(i64),
        Float(f64),
        Text(String),
        Bytes(Vec<u8>),
        List(Vec<Any>),
        Map(Vec<(Any, Any)>),
    }

    impl<'de> Deserialize<'de> for Any {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Any, D::Error> {
            struct AnyVisitor;
            impl<'de> Visitor<'de> for AnyVisitor {
                type Value = Any;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("anything")
                }
                fn visit_unit<E>(self) -> std::result::Result<Any, E> {
                    Ok(Any::Nil)
                }
                fn visit_bool<E>(self, v: bool) -> std::result::Result<Any, E> {
                    Ok(Any::Bool(v))
                }
                fn visit_u64<E>(self, v: u64) -> std::result::Result<Any, E> {
                    Ok(Any::Unsigned(v))
                }
                fn visit_i64<E>(self, v: i64) -> std::result::Result<Any, E> {
                    // Decoders differ on which of the two a non-negative signed integer is.
                    Ok(u64::try_from(v).map_or(Any::Signed(v), Any::Unsigned))
                }
                fn visit_f64<E>(self, v: f64) -> std::result::Result<Any, E> {
                    Ok(Any::Float(v))
                }
                fn visit_str<E>(self, v: &str) -> std::result::Result<Any, E> {
                    Ok(Any::Text(v.to_owned()))
                }
                fn visit_bytes<E>(self, v: &[u8]) -> std::result::Result<Any, E> {
                    Ok(Any::Bytes(v.to_owned()))
                }
                fn visit_seq<A: SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> std::result::Result<Any, A::Error> {
                    let mut items = Vec::new();
                    while let Some(item) = seq.next_element()? {
                        items.push(item);
                    }
                    Ok(Any::List(items))
                }
                fn visit_map<A: MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> std::result::Result<Any, A::Error> {
                    let mut entries = Vec::new();
                    while let Some(entry) = map.next_entry()? {
                        entries.push(entry);
                    }
                    Ok(Any::Map(entries))
                }
            }
            d.deserialize_any(AnyVisitor)
        }
    }

    /// Bytes serialised as msgpack's binary type.
    struct Binary<'a>(&'a [u8]);

    impl serde::Serialize for Binary<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    /// What the decode before this reader gave: `rmp_serde` under the charging wrapper.
    fn decoded_before<'de, T: Deserialize<'de>>(
        raw: &'de [u8],
        limits: BudgetLimits,
    ) -> (Option<T>, Option<Exceeded>) {
        let budget = Budget::new(limits);
        let mut de = rmp_serde::Deserializer::from_read_ref(raw);
        let value = T::deserialize(Bounded::new(&mut de, &budget)).ok();
        (value, budget.exceeded())
    }

    fn decoded_now<'de, T: Deserialize<'de>>(
        raw: &'de [u8],
        limits: BudgetLimits,
    ) -> (Option<T>, Option<Exceeded>) {
        let budget = Budget::new(limits);
        let value = from_slice(raw, &budget).ok();
        (value, budget.exceeded())
    }

    #[test]
    fn every_kind_and_width_of_value_reads_as_rmp_serde_reads_it() {
        let long = |n: usize| "é".repeat(n / 2);
        let values: Vec<Vec<u8>> = vec![
            rmp_serde::to_vec(&()).unwrap(),
            rmp_serde::to_vec(&true).unwrap(),
            rmp_serde::to_vec(&false).unwrap(),
            rmp_serde::to_vec(&[0u64, 127, 128, 255, 256, 65_535, 65_536, u64::MAX]).unwrap(),
            rmp_serde::to_vec(&[
                -1i64,
                -32,
                -33,
                -128,
                -129,
                -32_768,
                -32_769,
                i64::from(i32::MIN) - 1,
                i64::MIN,
            ])
            .unwrap(),
            rmp_serde::to_vec(&[1.5f32, -0.0]).unwrap(),
            rmp_serde::to_vec(&[1e300f64, f64::MIN_POSITIVE]).unwrap(),
            rmp_serde::to_vec(&["", "x", &long(31), &long(32), &long(300), &long(70_000)]).unwrap(),
            rmp_serde::to_vec(&Binary(&[0xff; 10])).unwrap(),
            rmp_serde::to_vec(&Binary(&[1; 300])).unwrap(),
            rmp_serde::to_vec(&Binary(&[2; 70_000])).unwrap(),
            rmp_serde::to_vec(&vec![7u8; 15]).unwrap(),
            rmp_serde::to_vec(&vec![7u8; 16]).unwrap(),
            rmp_serde::to_vec(&vec![7u8; 70_000]).unwrap(),
            rmp_serde::to_vec(&(0..15).map(|n| (n, n)).collect::<Vec<_>>()).unwrap(),
            rmp_serde::to_vec(
                &(0..20)
                    .map(|n| (n.to_string(), vec![n]))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .unwrap(),
            rmp_serde::to_vec(
                &(0..70_000)
                    .map(|n| (n, ()))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .unwrap(),
        ];
        let limits = BudgetLimits::for_report(64 * MIB);
        for raw in &values {
            let (now, refused) = decoded_now::<Any>(raw, limits);
            assert_eq!(refused, None);
            let head = &raw[..raw.len().min(16)];
            let now = now.unwrap_or_else(|| panic!("{head:x?}"));
            // The value the decode before gave, and (where no string is long enough to be cut)
            // rmp_serde's own.
            assert!(
                Some(&now) == decoded_before::<Any>(raw, limits).0.as_ref(),
                "{head:x?}"
            );
            if raw.len() <= limits.string_bytes {
                assert!(
                    Some(&now) == rmp_serde::from_slice::<Any>(raw).ok().as_ref(),
                    "{head:x?}"
                );
            }
        }
        // A 16 KiB string cut on a character boundary, as the wrapper cuts it.
        let raw = rmp_serde::to_vec(&long(70_000)).unwrap();
        let (Some(Any::Text(cut)), None) = decoded_now::<Any>(&raw, limits) else {
            panic!("not a string")
        };
        assert_eq!(Some(Any::Text(cut.clone())), decoded_before(&raw, limits).0);
        assert!(cut.len() <= limits.string_bytes && cut.len() > limits.string_bytes - 2);
        // Text that is not UTF-8 is handed over as bytes.
        let raw = [0xa2, 0xff, 0xfe];
        assert_eq!(
            decoded_now::<Any>(&raw, limits).0,
            Some(Any::Bytes(vec![0xff, 0xfe]))
        );
        // Ignored values are skipped, extension types included; read ones are refused.
        let ext = [0x82, 0xa1, b'a', 0xd4, 1, 2, 0xa2, b'I', b'D', 0xa1, b'x'];
        let (report, _) = decoded_now::<Report>(&ext, limits);
        assert_eq!(report.map(|r| r.id), Some("x".to_owned()));
        assert_eq!(decoded_now::<Any>(&ext, limits).0, None);
        // Truncated anywhere, a body is an error, never a panic.
        let raw = &values[7];
        for end in 0..raw.len().min(400) {
            assert_eq!(decoded_now::<Any>(&raw[..end], limits).0, None);
        }
    }

    #[test]
    fn real_and_scope_sized_reports_decode_as_before() {
        let mut bodies = Vec::new();
        for name in [
            "probe-full-1.msgpack.gz",
            "probe-full-4.msgpack.gz",
            "probe-delta-2.msgpack.gz",
            "probe-delta-3.msgpack.gz",
        ] {
            let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/fixtures/scope")
                .join(name);
            let body = std::fs::read(path).unwrap();
            bodies.push(inflate(&body, true, 64 * MIB).unwrap().into_owned());
        }
        for shape in [Shape::medium(), Shape::large()] {
            let report = synthetic_report(3, 50, &shape, Time(1_800_000_000_000_000_000));
            let (body, _) = crate::probe::encode(&report, false).unwrap();
            bodies.push(inflate(&body, true, 64 * MIB).unwrap().into_owned());
        }
        for raw in &bodies {
            let limits = BudgetLimits::for_report(raw.len());
            let now: Report = parse(raw, Format::Msgpack, limits).unwrap();
            assert!(now.topologies.values().any(|t| !t.nodes.is_empty()));
            let (before, refused) = decoded_before::<Report>(raw, limits);
            assert_eq!(refused, None);
            assert_eq!(Some(now), before);
            // Charged the same, value for value.
            let (budget_now, budget_before) = (Budget::new(limits), Budget::new(limits));
            from_slice::<Report>(raw, &budget_now).unwrap();
            let mut de = rmp_serde::Deserializer::from_read_ref(&raw[..]);
            Report::deserialize(Bounded::new(&mut de, &budget_before)).unwrap();
            assert_eq!(budget_now.used(), budget_before.used());
        }
    }

    #[test]
    fn damaged_reports_decode_or_fail_as_before() {
        let report = synthetic_report(1, 2, &Shape::small(3, 4), Time(1_800_000_000_000_000_000));
        let raw = rmp_serde::to_vec_named(&report).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(18);
        let limits = BudgetLimits::for_report(4 * MIB).with_elements(500);
        let (mut decoded, mut failed) = (0, 0);
        for _ in 0..3_000 {
            let mut damaged = raw.clone();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..damaged.len());
                damaged[at] = rng.random();
            }
            let (now, refused_now) = decoded_now::<Report>(&damaged, limits);
            let (before, refused_before) = decoded_before::<Report>(&damaged, limits);
            assert_eq!(now, before);
            match (refused_now, refused_before) {
                (now, before) if now == before => {}
                // A length past the limit is refused before its elements are read (the body may
                // end before them: the old decode saw that first).
                (Some(Exceeded::Elements(_)), None) => {}
                other => panic!("{other:?}"),
            }
            if now.is_some() {
                decoded += 1
            } else {
                failed += 1
            }
        }
        // Both kinds of outcome were exercised.
        assert!(
            decoded > 100 && failed > 100,
            "{decoded} decoded, {failed} failed"
        );
    }
}
