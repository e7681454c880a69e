//! JSON text transcoded to MessagePack as it is parsed: serde_json's parser drives a visitor that
//! writes each value straight into the output, so no `serde_json::Value` tree is built (see
//! `benches/msgpack.rs` for what that saves on a notification).
//!
//! Each value gets MessagePack's shortest encoding, the bytes `rmp_serde` writes for the same
//! `Value`: integers in the narrowest int format, any other number as float 64, strings as str,
//! objects as maps keeping the document's key order. One difference: an object that repeats a
//! key keeps both entries, as the JSON text did, where a `Value` keeps one. No I/O.
//!
//! Format names below are the MessagePack specification's ("Formats" section).

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

const NIL: u8 = 0xc0;
const FALSE: u8 = 0xc2;
const TRUE: u8 = 0xc3;
const FLOAT64: u8 = 0xcb;
const UINT8: u8 = 0xcc;
const UINT16: u8 = 0xcd;
const UINT32: u8 = 0xce;
const UINT64: u8 = 0xcf;
const INT8: u8 = 0xd0;
const INT16: u8 = 0xd1;
const INT32: u8 = 0xd2;
const INT64: u8 = 0xd3;
/// fixstr `101xxxxx`: the length, under 32, in the low five bits.
const FIXSTR: u8 = 0xa0;
const STR8: u8 = 0xd9;
const STR16: u8 = 0xda;
const STR32: u8 = 0xdb;

/// The three header sizes of a container: fix (count in the low four bits), 16 and 32.
#[derive(Clone, Copy)]
struct Container {
    fix: u8,
    m16: u8,
    m32: u8,
}

/// fixarray `1001xxxx`, array 16, array 32.
const ARRAY: Container = Container {
    fix: 0x90,
    m16: 0xdc,
    m32: 0xdd,
};
/// fixmap `1000xxxx`, map 16, map 32.
const MAP: Container = Container {
    fix: 0x80,
    m16: 0xde,
    m32: 0xdf,
};

/// Appends the MessagePack encoding of the one JSON value in `json` to `out`.
///
/// Fails on anything serde_json refuses (bad syntax, trailing bytes, invalid UTF-8, nesting
/// beyond its recursion limit of 128) and on a string or container too large for MessagePack's
/// 32-bit lengths. On failure `out` holds part of a value and is to be discarded.
pub fn transcode_json(json: &[u8], out: &mut Vec<u8>) -> serde_json::Result<()> {
    let mut de = serde_json::Deserializer::from_slice(json);
    Transcoder { out }.deserialize(&mut de)?;
    de.end()
}

/// Writes one value, whatever its type, as the deserializer reads it.
struct Transcoder<'a> {
    out: &'a mut Vec<u8>,
}

impl Transcoder<'_> {
    /// The same output, for the next nested value.
    fn nested(&mut self) -> Transcoder<'_> {
        Transcoder {
            out: &mut *self.out,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Transcoder<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Transcoder<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.push(NIL);
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.out.push(if v { TRUE } else { FALSE });
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        write_uint(self.out, v);
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        write_int(self.out, v);
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.out.push(FLOAT64);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        write_str(self.out, v).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let at = begin(self.out);
        let mut count = 0;
        while seq.next_element_seed(self.nested())?.is_some() {
            count += 1;
        }
        finish(self.out, at, count, ARRAY).map_err(de::Error::custom)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let at = begin(self.out);
        let mut count = 0;
        // serde_json hands every key to `visit_str`, so keys come out as str.
        while map.next_key_seed(self.nested())?.is_some() {
            map.next_value_seed(self.nested())?;
            count += 1;
        }
        finish(self.out, at, count, MAP).map_err(de::Error::custom)
    }
}

/// A string or container longer than MessagePack's 32-bit lengths can say.
#[derive(Debug)]
struct TooLong {
    what: &'static str,
    len: usize,
}

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} is beyond MessagePack's limit of 2^32 - 1",
            self.what, self.len
        )
    }
}

/// A non-negative integer, in the narrowest of positive fixint, uint 8/16/32/64.
fn write_uint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        // positive fixint `0xxxxxxx`: the value itself.
        out.push(v as u8);
    } else if let Ok(v) = u8::try_from(v) {
        out.extend_from_slice(&[UINT8, v]);
    } else if let Ok(v) = u16::try_from(v) {
        out.push(UINT16);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = u32::try_from(v) {
        out.push(UINT32);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(UINT64);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// An integer: non-negative ones as [`write_uint`] (as `rmp` does), negative ones in the
/// narrowest of negative fixint, int 8/16/32/64.
fn write_int(out: &mut Vec<u8>, v: i64) {
    if let Ok(v) = u64::try_from(v) {
        write_uint(out, v);
    } else if v >= -32 {
        // negative fixint `111xxxxx`: the value's two's-complement byte.
        out.push(v as u8);
    } else if let Ok(v) = i8::try_from(v) {
        out.extend_from_slice(&[INT8, v as u8]);
    } else if let Ok(v) = i16::try_from(v) {
        out.push(INT16);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = i32::try_from(v) {
        out.push(INT32);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(INT64);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// A string, in the narrowest of fixstr, str 8/16/32.
fn write_str(out: &mut Vec<u8>, s: &str) -> Result<(), TooLong> {
    let len = s.len();
    if len < 32 {
        out.push(FIXSTR | len as u8);
    } else if let Ok(n) = u8::try_from(len) {
        out.extend_from_slice(&[STR8, n]);
    } else if let Ok(n) = u16::try_from(len) {
        out.push(STR16);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(len) {
        out.push(STR32);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        return Err(TooLong {
            what: "a string",
            len,
        });
    }
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Reserves a container's header before its count is known: one byte, enough for the fix form
/// that most notifications' objects and arrays fit.
fn begin(out: &mut Vec<u8>) -> usize {
    out.push(0);
    out.len() - 1
}

/// Writes the header reserved at `at` for `count` entries, widening it in place when the count
/// needs the 16- or 32-bit form. Widening moves the container's bytes once, and only for
/// containers of 16 entries or more.
fn finish(out: &mut Vec<u8>, at: usize, count: usize, kind: Container) -> Result<(), TooLong> {
    let mut header = [0u8; 5];
    let header: &[u8] = if count < 16 {
        header[0] = kind.fix | count as u8;
        &header[..1]
    } else if let Ok(n) = u16::try_from(count) {
        header[0] = kind.m16;
        header[1..3].copy_from_slice(&n.to_be_bytes());
        &header[..3]
    } else if let Ok(n) = u32::try_from(count) {
        header[0] = kind.m32;
        header[1..5].copy_from_slice(&n.to_be_bytes());
        &header[..5]
    } else {
        let what = if kind.fix == MAP.fix {
            "a map"
        } else {
            "an array"
        };
        return Err(TooLong { what, len: count });
    };
    // The reserved byte is at `at`; the container's entries follow it.
    let end = out.len();
    let grow = header.len() - 1;
    if grow > 0 {
        out.resize(end + grow, 0);
        out.copy_within(at + 1..end, at + 1 + grow);
    }
    out[at..at + header.len()].copy_from_slice(header);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn transcode(json: &str) -> serde_json::Result<Vec<u8>> {
        let mut out = Vec::new();
        transcode_json(json.as_bytes(), &mut out).map(|()| out)
    }

    /// What `rmp_serde` writes for the same JSON read into a `Value`: the reference the
    /// streaming route must match byte for byte.
    fn through_value(json: &str) -> Vec<u8> {
        let v: Value = serde_json::from_str(json).unwrap();
        rmp_serde::to_vec_named(&v).unwrap()
    }

    macro_rules! encodes {
        ($($name:ident: $json:expr => $bytes:expr;)*) => {$(
            #[test]
            fn $name() {
                let json: &str = $json;
                let want: &[u8] = $bytes;
                assert_eq!(transcode(json).unwrap(), want, "{json}");
                assert_eq!(through_value(json), want, "rmp_serde disagrees on {json}");
            }
        )*};
    }

    // Byte literals worked out from the MessagePack specification.
    encodes! {
        null: "null" => &[0xc0];
        bools: "[true,false]" => &[0x92, 0xc3, 0xc2];
        zero: "0" => &[0x00];
        largest_positive_fixint: "127" => &[0x7f];
        smallest_uint8: "128" => &[0xcc, 0x80];
        smallest_uint16: "256" => &[0xcd, 0x01, 0x00];
        smallest_uint32: "65536" => &[0xce, 0x00, 0x01, 0x00, 0x00];
        smallest_uint64: "4294967296" => &[0xcf, 0, 0, 0, 1, 0, 0, 0, 0];
        largest_u64: "18446744073709551615" => &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        minus_one: "-1" => &[0xff];
        smallest_negative_fixint: "-32" => &[0xe0];
        largest_int8: "-33" => &[0xd0, 0xdf];
        smallest_int8: "-128" => &[0xd0, 0x80];
        largest_int16: "-129" => &[0xd1, 0xff, 0x7f];
        largest_int32: "-32769" => &[0xd2, 0xff, 0xff, 0x7f, 0xff];
        smallest_i64: "-9223372036854775808" => &[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0];
        float: "1.5" => &[0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0];
        float_without_fraction: "1e2" => &[0xcb, 0x40, 0x59, 0, 0, 0, 0, 0, 0];
        beyond_u64_is_float: "18446744073709551616" => &[0xcb, 0x43, 0xf0, 0, 0, 0, 0, 0, 0];
        empty_string: r#""""# => &[0xa0];
        fixstr: r#""abc""# => &[0xa3, b'a', b'b', b'c'];
        escapes_are_decoded: r#""a\n\u00e9""# => &[0xa4, b'a', b'\n', 0xc3, 0xa9];
        empty_array: "[]" => &[0x90];
        empty_object: "{}" => &[0x80];
        object_keeps_key_order: r#"{"b":1,"a":[null]}"# => &[0x82, 0xa1, b'b', 0x01, 0xa1, b'a', 0x91, 0xc0];
        white_space_is_dropped: " { \"a\" : [ 1 , 2 ] } " => &[0x81, 0xa1, b'a', 0x92, 0x01, 0x02];
    }

    /// Lengths at each boundary between header forms, nested so that a widened header also
    /// moves the bytes of the containers around it.
    #[test]
    fn header_forms_match_rmp_serde_at_every_boundary() {
        for len in [0, 15, 16, 31, 32, 255, 256, 65535, 65536] {
            let s = format!("\"{}\"", "é".repeat(len / 2) + &"x".repeat(len % 2));
            let array = format!("[{}]", vec!["1"; len].join(","));
            let map = format!(
                "{{{}}}",
                (0..len)
                    .map(|i| format!("\"k{i}\":{i}"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            for json in [
                s,
                format!("[{array},{array}]"),
                format!("{{\"a\":{map},\"b\":[{map}]}}"),
            ] {
                assert_eq!(transcode(&json).unwrap(), through_value(&json), "{len}");
            }
        }
    }

    #[test]
    fn repeated_keys_are_kept_as_sent() {
        assert_eq!(
            transcode(r#"{"a":1,"a":2}"#).unwrap(),
            [0x82, 0xa1, b'a', 0x01, 0xa1, b'a', 0x02]
        );
    }

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\"}",
            "{1:2}",
            "nul",
            "1 2",
            "\"\\ud800\"",
            "[1]]",
            &deep,
        ] {
            assert!(transcode(bad).is_err(), "{bad:?}");
        }
        let mut out = Vec::new();
        assert!(transcode_json(b"\"\xff\"", &mut out).is_err());
    }
}
