//! Engine.IO v4 packets, one per WebSocket frame, and polling payloads that join several.
//!
//! Text form: `<packet type>[<data>]`, the type one ASCII digit. Over WebSocket a binary frame is
//! a binary message with no type byte; in a polling payload a binary message is the segment
//! `b<base64>`, and segments are separated by the record separator 0x1E.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use crate::engineio::error::{Error, PacketFault};

/// engine.io-protocol v4, "HTTP long-polling": "The packets are separated by the record
/// separator character: `\x1e`".
pub const RECORD_SEPARATOR: u8 = 0x1E;

/// Marks a binary message in a polling payload: "Binary payloads MUST be base64-encoded and
/// prefixed with a `b` character".
const BINARY_PREFIX: u8 = 0x62;

/// Standard alphabet; padding written on encode, and optional on decode, because Node's
/// `Buffer.from(s, "base64")` accepts both and some clients trim it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Type 0, server to client: the handshake data as JSON (see [`super::open_packet`]).
    Open(String),
    /// Type 1: the transport can be closed.
    Close,
    /// Type 2: heartbeat from the server, or the upgrade probe (`"probe"`) from the client.
    Ping(String),
    /// Type 3: the answer to a ping, carrying its payload back.
    Pong(String),
    /// Type 4: application data (the Socket.IO layer rides here).
    Message(Data),
    /// Type 5: the client switches to the probed WebSocket transport.
    Upgrade,
    /// Type 6: nothing; flushes a pending polling `GET` during an upgrade.
    Noop,
}

/// The payload of a message packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Text(String),
    Binary(Vec<u8>),
}

/// Decodes one packet from a WebSocket text frame or from one polling-payload segment: the type
/// digit, then the data.
///
/// Data after the types that carry none (close, upgrade, noop) is ignored, as engine.io-parser
/// does.
pub fn decode_text(s: &str) -> Result<Packet, Error> {
    let mut chars = s.chars();
    let kind = chars
        .next()
        .ok_or(Error::InvalidPacket(PacketFault::Empty))?;
    let data = chars.as_str();
    let packet = match kind {
        '0' => Packet::Open(data.to_owned()),
        '1' => Packet::Close,
        '2' => Packet::Ping(data.to_owned()),
        '3' => Packet::Pong(data.to_owned()),
        '4' => Packet::Message(Data::Text(data.to_owned())),
        '5' => Packet::Upgrade,
        '6' => Packet::Noop,
        other => return Err(Error::InvalidPacket(PacketFault::UnknownType(other))),
    };
    Ok(packet)
}

/// A WebSocket binary frame is a binary message.
///
/// engine.io-protocol v4, "WebSocket": "Binary payloads are sent as is, without modification" (v3
/// put a type byte first; v4 does not).
pub fn decode_binary(b: &[u8]) -> Packet {
    Packet::Message(Data::Binary(b.to_vec()))
}

/// Decodes a polling `POST` body: packets separated by 0x1E, a segment starting with `b` being a
/// base64 binary message.
///
/// Any undecodable segment (including an empty one, so an empty body too) fails the whole body:
/// the server closes the session, as the reference does on a parse error.
pub fn decode_payload(body: &str) -> Result<Vec<Packet>, Error> {
    body.split(char::from(RECORD_SEPARATOR))
        .map(
            |segment| match segment.strip_prefix(char::from(BINARY_PREFIX)) {
                Some(b64) => BASE64
                    .decode(b64)
                    .map(|bytes| Packet::Message(Data::Binary(bytes)))
                    .map_err(|_| Error::InvalidPacket(PacketFault::BadBase64)),
                None => decode_text(segment),
            },
        )
        .collect()
}

/// Encodes a packet as a WebSocket text frame or a polling-payload segment: `"4hello"`, `"2"`,
/// `"3probe"`, `"6"`.
///
/// A binary message becomes the polling segment `b<base64>`; over WebSocket send its bytes as a
/// binary frame instead.
pub fn encode_text(p: &Packet) -> String {
    let (kind, data) = match p {
        Packet::Open(json) => ('0', json.as_str()),
        Packet::Close => ('1', ""),
        Packet::Ping(data) => ('2', data.as_str()),
        Packet::Pong(data) => ('3', data.as_str()),
        Packet::Message(Data::Text(text)) => ('4', text.as_str()),
        Packet::Message(Data::Binary(bytes)) => {
            let mut out = String::with_capacity(1 + bytes.len().div_ceil(3) * 4);
            out.push(char::from(BINARY_PREFIX));
            BASE64.encode_string(bytes, &mut out);
            return out;
        }
        Packet::Upgrade => ('5', ""),
        Packet::Noop => ('6', ""),
    };
    let mut out = String::with_capacity(1 + data.len());
    out.push(kind);
    out.push_str(data);
    out
}

/// Appends a polling `GET` response body to `out`: the already-encoded packets joined by 0x1E.
///
/// Each item is one packet exactly as [`encode_text`] writes it (`b"42[\"note\",1]"`, `b"2"`, or
/// `b"b<base64>"` for binary), so a server can keep its outgoing queue as encoded
/// `bytes::Bytes` (one buffer shared by every recipient of a broadcast) and join it here
/// without decoding or copying it twice. `&[&str]`, `Vec<String>` and `VecDeque<Bytes>` all
/// fit. Nothing is escaped: as the spec notes, this "assumes the record separator is not used in
/// the data", which holds for JSON text (it escapes control characters) and for base64.
pub fn encode_payload<I>(packets: I, out: &mut Vec<u8>)
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    for (i, packet) in packets.into_iter().enumerate() {
        if i > 0 {
            out.push(RECORD_SEPARATOR);
        }
        out.extend_from_slice(packet.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use bytes::Bytes;

    use super::*;

    fn text(s: &str) -> Packet {
        Packet::Message(Data::Text(s.to_owned()))
    }

    macro_rules! round_trips {
        ($($name:ident: $wire:expr => $packet:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(decode_text($wire), Ok($packet));
                assert_eq!(encode_text(&$packet), $wire);
            }
        )*};
    }

    round_trips! {
        open: r#"0{"sid":"abc"}"# => Packet::Open(r#"{"sid":"abc"}"#.to_owned());
        close: "1" => Packet::Close;
        ping_empty: "2" => Packet::Ping(String::new());
        ping_probe: "2probe" => Packet::Ping("probe".to_owned());
        pong_empty: "3" => Packet::Pong(String::new());
        pong_probe: "3probe" => Packet::Pong("probe".to_owned());
        message: "4hello" => text("hello");
        message_empty: "4" => text("");
        message_utf8: "4€" => text("€");
        message_socketio: r#"42["note",{"id":1}]"# => text(r#"2["note",{"id":1}]"#);
        upgrade: "5" => Packet::Upgrade;
        noop: "6" => Packet::Noop;
    }

    macro_rules! refused {
        ($($name:ident: $wire:expr => $fault:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(decode_text($wire), Err(Error::InvalidPacket($fault)));
            }
        )*};
    }

    refused! {
        empty: "" => PacketFault::Empty;
        type_seven: "7" => PacketFault::UnknownType('7');
        type_nine: "9hello" => PacketFault::UnknownType('9');
        letter: "hello" => PacketFault::UnknownType('h');
        multibyte: "€" => PacketFault::UnknownType('€');
        binary_prefix_in_frame: "bAQID" => PacketFault::UnknownType('b');
    }

    #[test]
    fn data_after_dataless_types_is_ignored() {
        assert_eq!(decode_text("1x"), Ok(Packet::Close));
        assert_eq!(decode_text("5x"), Ok(Packet::Upgrade));
        assert_eq!(decode_text("6x"), Ok(Packet::Noop));
    }

    #[test]
    fn binary_frame_is_a_binary_message() {
        assert_eq!(
            decode_binary(&[0x01, 0x02, 0x03, 0x04]),
            Packet::Message(Data::Binary(vec![0x01, 0x02, 0x03, 0x04]))
        );
        assert_eq!(decode_binary(&[]), Packet::Message(Data::Binary(vec![])));
    }

    #[test]
    fn binary_message_encodes_as_base64_segment() {
        let p = Packet::Message(Data::Binary(vec![0x01, 0x02, 0x03, 0x04]));
        assert_eq!(encode_text(&p), "bAQIDBA==");
    }

    #[test]
    fn spec_payload_with_ping() {
        assert_eq!(
            decode_payload("4hello\x1e2\x1e4world"),
            Ok(vec![
                text("hello"),
                Packet::Ping(String::new()),
                text("world")
            ])
        );
    }

    #[test]
    fn spec_payload_with_binary() {
        let want = vec![
            text("hello"),
            text("€"),
            Packet::Message(Data::Binary(vec![0x01, 0x02, 0x03, 0x04])),
        ];
        assert_eq!(
            decode_payload("4hello\x1e4€\x1ebAQIDBA=="),
            Ok(want.clone())
        );
        let encoded: Vec<String> = want.iter().map(encode_text).collect();
        let mut out = Vec::new();
        encode_payload(&encoded, &mut out);
        assert_eq!(out, "4hello\x1e4€\x1ebAQIDBA==".as_bytes());
    }

    #[test]
    fn payload_of_one_packet() {
        assert_eq!(decode_payload("40"), Ok(vec![text("0")]));
    }

    #[test]
    fn base64_padding_is_optional() {
        assert_eq!(
            decode_payload("bAQIDBA"),
            Ok(vec![Packet::Message(Data::Binary(vec![1, 2, 3, 4]))])
        );
        assert_eq!(
            decode_payload("b"),
            Ok(vec![Packet::Message(Data::Binary(vec![]))])
        );
    }

    macro_rules! bad_payloads {
        ($($name:ident: $body:expr => $fault:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(decode_payload($body), Err(Error::InvalidPacket($fault)));
            }
        )*};
    }

    bad_payloads! {
        payload_empty: "" => PacketFault::Empty;
        payload_empty_segment: "4a\x1e\x1e4b" => PacketFault::Empty;
        payload_trailing_separator: "4a\x1e" => PacketFault::Empty;
        payload_unknown_type: "4a\x1e8b" => PacketFault::UnknownType('8');
        payload_bad_base64: "4a\x1eb!!!!" => PacketFault::BadBase64;
        payload_base64_bad_length: "bA" => PacketFault::BadBase64;
    }

    #[test]
    fn encode_payload_joins_shared_buffers_and_appends() {
        let queue: VecDeque<Bytes> = [
            Bytes::from_static(b"42[\"note\",1]"),
            Bytes::from_static(b"2"),
        ]
        .into_iter()
        .collect();
        let mut out = b"HTTP head\r\n\r\n".to_vec();
        encode_payload(&queue, &mut out);
        assert_eq!(out, b"HTTP head\r\n\r\n42[\"note\",1]\x1e2".to_vec());
    }

    #[test]
    fn encode_payload_of_nothing_writes_nothing() {
        let mut out = Vec::new();
        encode_payload(std::iter::empty::<&[u8]>(), &mut out);
        assert!(out.is_empty());
        encode_payload(["6"], &mut out);
        assert_eq!(out, b"6");
    }
}
