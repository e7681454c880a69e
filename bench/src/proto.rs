//! The client's side of the two WebSocket protocols, no I/O: the opening handshake and what it
//! negotiated (permessage-deflate, the `herald.msgpack` subprotocol), server frames, inflating
//! compressed messages, and what each server message, JSON or MessagePack, means to a benchmark
//! client.
//!
//! Nothing here reads a socket or a clock: bytes come in as slices, replies go into buffers the
//! caller owns, and the receive time is passed in. Clients never compress what they send.

use std::fmt;

use flate2::{Decompress, FlushDecompress, Status};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use herald::ws::frame::{self, opcode};
use herald::ws::handshake::accept_key;

/// The WebSocket protocol the clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// `{"event","data"}` messages at `/ws`: JSON text frames, or MessagePack binary frames
    /// under the `herald.msgpack` subprotocol.
    Raw,
    /// Socket.IO v5 over Engine.IO v4, WebSocket transport only.
    Socketio,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Raw => "raw",
            Protocol::Socketio => "socketio",
        }
    }

    /// The request target a client of this protocol upgrades at, unless told otherwise.
    pub fn default_path(self) -> &'static str {
        match self {
            Protocol::Raw => "/ws",
            Protocol::Socketio => "/socket.io/?EIO=4&transport=websocket",
        }
    }

    /// The message that subscribes a connection to `user`.
    pub fn subscribe(self, user: &str) -> String {
        match self {
            Protocol::Raw => format!(r#"{{"event":"subscribe","data":"{user}"}}"#),
            Protocol::Socketio => format!(r#"42["subscribe","{user}"]"#),
        }
    }
}

/// How raw-protocol messages are encoded, both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JSON in text frames.
    Json,
    /// MessagePack in binary frames, asked for with the `herald.msgpack` subprotocol.
    Msgpack,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Msgpack => "msgpack",
        }
    }
}

/// The subprotocol that switches the raw protocol to MessagePack.
pub const MSGPACK_SUBPROTOCOL: &str = "herald.msgpack";

/// The raw protocol's envelope as a client writes it.
#[derive(Serialize)]
struct Outgoing<'a> {
    event: &'a str,
    data: &'a str,
}

/// The MessagePack subscription to `user`: the map `{"event":"subscribe","data":user}`, to go
/// in a binary frame.
pub fn subscribe_msgpack(user: &str) -> Vec<u8> {
    let subscribe = Outgoing {
        event: "subscribe",
        data: user,
    };
    // Two strings into a Vec: nothing the encoder could fail on.
    rmp_serde::to_vec_named(&subscribe).expect("a map of two strings encodes")
}

/// Why a client connection gave up. Each variant is one line of the report's failure counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The server answered the upgrade with something other than 101 and the right accept key.
    Refused(String),
    /// The 101 named an extension, a parameter or a subprotocol the client cannot accept.
    Negotiation(String),
    /// The response head did not end within the limit.
    HeadTooLong,
    /// RFC 6455 §5.1: a client MUST close on a masked frame from the server.
    MaskedFrame,
    /// A reserved opcode, a stray continuation, a new message inside a fragmented one.
    BadFraming(&'static str),
    /// A message larger than the client keeps (after inflating, when compressed).
    MessageTooLong(u64),
    /// A compressed message that is not valid DEFLATE data.
    Inflate,
    /// The server sent a Close frame (WebSocket) or close packet (Engine.IO).
    ClosedByServer,
    /// The server refused the Socket.IO CONNECT or the subscription.
    SubscribeRefused,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Refused(status) => write!(f, "upgrade refused ({status})"),
            Fault::Negotiation(what) => write!(f, "bad negotiation ({what})"),
            Fault::HeadTooLong => f.write_str("handshake response head too long"),
            Fault::MaskedFrame => f.write_str("masked frame from the server"),
            Fault::BadFraming(what) => write!(f, "bad framing: {what}"),
            Fault::MessageTooLong(n) => write!(f, "message of {n} bytes over the limit"),
            Fault::Inflate => f.write_str("compressed message does not inflate"),
            Fault::ClosedByServer => f.write_str("closed by the server"),
            Fault::SubscribeRefused => f.write_str("subscription refused"),
        }
    }
}

/// The longest handshake response head a client accepts.
pub const MAX_HEAD: usize = 16 * 1024;

/// What a client asks for in its upgrade request beyond plain WebSocket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offer {
    /// Offer permessage-deflate (RFC 7692).
    pub deflate: bool,
    /// Ask for the [`MSGPACK_SUBPROTOCOL`].
    pub msgpack: bool,
}

/// What the server's 101 agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgrade {
    /// Length of the response head: frames start right after it.
    pub head_len: usize,
    /// permessage-deflate is in effect, with `server_no_context_takeover`.
    pub deflate: bool,
    /// The server chose the [`MSGPACK_SUBPROTOCOL`].
    pub msgpack: bool,
}

/// The permessage-deflate offer. `client_max_window_bits` without a value only says the client
/// understands that parameter in the answer (RFC 7692 §7.1.2.2); it sends nothing compressed.
const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The upgrade request of a client whose `Sec-WebSocket-Key` is `key`.
pub fn handshake_request(host: &str, path: &str, key: &str, offer: Offer) -> Vec<u8> {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if offer.deflate {
        req.push_str("Sec-WebSocket-Extensions: ");
        req.push_str(DEFLATE_OFFER);
        req.push_str("\r\n");
    }
    if offer.msgpack {
        req.push_str("Sec-WebSocket-Protocol: ");
        req.push_str(MSGPACK_SUBPROTOCOL);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// Reads the server's answer to the upgrade from the start of `buf`.
///
/// Returns what was agreed once the head is whole and says 101 with the accept key derived from
/// `key`, `Ok(None)` while it is incomplete. An offer the server leaves out is declined, not an
/// error: the caller decides what a declined offer means.
pub fn parse_upgrade_response(
    buf: &[u8],
    key: &str,
    offer: Offer,
) -> Result<Option<Upgrade>, Fault> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(Fault::HeadTooLong),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Fault::Refused(e.to_string())),
    };
    let status = resp.code.unwrap_or(0);
    if status != 101 {
        return Err(Fault::Refused(format!("status {status}")));
    }
    let values = |name: &'static str| {
        resp.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    // RFC 6455 §4.1: the client MUST fail the connection unless the accept value is the
    // base64 SHA-1 of its key and the GUID.
    if values("sec-websocket-accept").next() != Some(accept_key(key).as_bytes()) {
        return Err(Fault::Refused("wrong Sec-WebSocket-Accept".into()));
    }
    let deflate = accepted_deflate(values("sec-websocket-extensions"), offer.deflate)?;
    let msgpack = match values("sec-websocket-protocol")
        .next()
        .map(<[u8]>::trim_ascii)
    {
        None => false,
        Some(chosen) if offer.msgpack && chosen == MSGPACK_SUBPROTOCOL.as_bytes() => true,
        // RFC 6455 §4.1: a subprotocol "that was not present in the client's handshake" MUST
        // fail the connection.
        Some(chosen) => {
            let chosen = String::from_utf8_lossy(chosen);
            return Err(Fault::Negotiation(format!(
                "subprotocol {chosen} not offered"
            )));
        }
    };
    Ok(Some(Upgrade {
        head_len,
        deflate,
        msgpack,
    }))
}

/// Whether the `Sec-WebSocket-Extensions` answer accepts permessage-deflate; an error when it
/// names anything the client cannot use.
fn accepted_deflate<'h>(
    values: impl Iterator<Item = &'h [u8]>,
    offered: bool,
) -> Result<bool, Fault> {
    let mut accepted = false;
    for value in values {
        let value = std::str::from_utf8(value)
            .map_err(|_| Fault::Negotiation("Sec-WebSocket-Extensions is not UTF-8".into()))?;
        for extension in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let mut params = extension.split(';').map(str::trim);
            let name = params.next().unwrap_or_default();
            // RFC 6455 §4.1: an extension "not present in the client's handshake" MUST fail the
            // connection.
            if name != "permessage-deflate" || !offered {
                return Err(Fault::Negotiation(format!("extension {name} not offered")));
            }
            if accepted {
                return Err(Fault::Negotiation(
                    "permessage-deflate accepted twice".into(),
                ));
            }
            deflate_params(params)?;
            accepted = true;
        }
    }
    Ok(accepted)
}

/// Checks the parameters of an accepted permessage-deflate.
///
/// RFC 7692 §5: the client MUST fail the connection on a parameter not defined for a response,
/// an invalid value, a repeated parameter, or "a configuration the client does not support".
fn deflate_params<'p>(params: impl Iterator<Item = &'p str>) -> Result<(), Fault> {
    const NAMES: [&str; 4] = [
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    ];
    let mut seen = [false; NAMES.len()];
    for param in params.filter(|p| !p.is_empty()) {
        let (name, value) = match param.split_once('=') {
            // RFC 7692 §7.1.2: a value may come as a quoted-string.
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        let Some(i) = NAMES.iter().position(|n| *n == name) else {
            return Err(Fault::Negotiation(format!("unknown parameter {name}")));
        };
        if std::mem::replace(&mut seen[i], true) {
            return Err(Fault::Negotiation(format!("{name} given twice")));
        }
        let valid = match (i, value) {
            (0 | 1, None) => true,
            // RFC 7692 §7.1.2: window bits are a decimal integer from 8 to 15. The client
            // offered client_max_window_bits, so the server may set it; it only limits what
            // the client would compress.
            (2 | 3, Some(bits)) => bits.parse::<u8>().is_ok_and(|b| (8..=15).contains(&b)),
            _ => false,
        };
        if !valid {
            return Err(Fault::Negotiation(format!("bad value in {param}")));
        }
    }
    // A thread inflates every connection's messages with one inflater, reset before each
    // message: that needs each message compressed on its own.
    if !seen[0] {
        return Err(Fault::Negotiation(
            "permessage-deflate without server_no_context_takeover".into(),
        ));
    }
    Ok(())
}

/// A whole server message or control frame, as [`FrameReader`] hands it out.
pub enum Message<'a> {
    /// A text or binary message, reassembled when it came in fragments.
    Data {
        payload: &'a [u8],
        /// Sent as a binary message (opcode 0x2) rather than text.
        binary: bool,
        /// RSV1 was set on its first frame: `payload` is DEFLATE data for an [`Inflater`].
        compressed: bool,
    },
    Ping(&'a [u8]),
    Close,
}

/// RSV1, the "Per-Message Compressed" bit of RFC 7692 §6, in [`frame::FrameHeader::rsv`].
const RSV1: u8 = 0b100;

/// Splits server bytes into messages. Keeps only the fragments of an unfinished message.
#[derive(Default)]
pub struct FrameReader {
    /// Payload of the fragmented message being reassembled; empty otherwise.
    fragments: Vec<u8>,
    /// True between the first fragment of a message and its last.
    in_message: bool,
    /// The message being reassembled is binary; meaningful while `in_message`.
    binary: bool,
    /// The message being reassembled is compressed; meaningful while `in_message`.
    compressed: bool,
    /// permessage-deflate was negotiated, so RSV1 may be set on a message's first frame.
    deflate: bool,
}

impl FrameReader {
    /// A reader for a connection whose upgrade negotiated permessage-deflate, or not.
    pub fn new(deflate: bool) -> Self {
        FrameReader {
            deflate,
            ..FrameReader::default()
        }
    }

    /// Hands every whole frame at the start of `buf` to `on`, and returns how many bytes they
    /// took; a partial frame at the end is left for the next call.
    pub fn decode(
        &mut self,
        buf: &[u8],
        max_message: usize,
        mut on: impl FnMut(Message<'_>) -> Result<(), Fault>,
    ) -> Result<usize, Fault> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            let (header, head_len) = match frame::parse_header(rest) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return Ok(pos),
                Err(_) => return Err(Fault::BadFraming("64-bit length with the top bit set")),
            };
            if header.mask.is_some() {
                return Err(Fault::MaskedFrame);
            }
            let compressed = header.rsv & RSV1 != 0;
            // RFC 6455 §5.2: a nonzero RSV bit that no negotiated extension defines MUST fail
            // the connection.
            if header.rsv & !RSV1 != 0 || (compressed && !self.deflate) {
                return Err(Fault::BadFraming("reserved bit set"));
            }
            // RFC 7692 §6.1: RSV1 on a control frame or a non-first fragment MUST fail the
            // connection.
            if compressed
                && (opcode::is_control(header.opcode) || header.opcode == opcode::CONTINUATION)
            {
                return Err(Fault::BadFraming("RSV1 on a control frame or continuation"));
            }
            if header.len > max_message as u64
                || self.fragments.len() as u64 + header.len > max_message as u64
            {
                return Err(Fault::MessageTooLong(header.len));
            }
            let len = header.len as usize;
            let Some(payload) = rest.get(head_len..head_len + len) else {
                return Ok(pos);
            };
            pos += head_len + len;
            let binary = header.opcode == opcode::BINARY;
            match header.opcode {
                opcode::TEXT | opcode::BINARY if self.in_message => {
                    return Err(Fault::BadFraming("new message inside a fragmented one"))
                }
                opcode::TEXT | opcode::BINARY if header.fin => on(Message::Data {
                    payload,
                    binary,
                    compressed,
                })?,
                opcode::TEXT | opcode::BINARY => {
                    self.in_message = true;
                    self.binary = binary;
                    self.compressed = compressed;
                    self.fragments.extend_from_slice(payload);
                }
                opcode::CONTINUATION if !self.in_message => {
                    return Err(Fault::BadFraming("continuation without a message"))
                }
                opcode::CONTINUATION => {
                    self.fragments.extend_from_slice(payload);
                    if header.fin {
                        self.in_message = false;
                        let whole = std::mem::take(&mut self.fragments);
                        on(Message::Data {
                            payload: &whole,
                            binary: self.binary,
                            compressed: self.compressed,
                        })?;
                    }
                }
                opcode::PING => on(Message::Ping(payload))?,
                opcode::PONG => {}
                opcode::CLOSE => {
                    on(Message::Close)?;
                    return Ok(pos);
                }
                _ => return Err(Fault::BadFraming("reserved opcode")),
            }
        }
    }
}

/// RFC 7692 §7.2.1: the empty stored block's tail, which the sender strips from every compressed
/// message and the receiver appends again (§7.2.2).
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// Inflates permessage-deflate messages for every connection of a thread.
///
/// With `server_no_context_takeover` each message is compressed on its own, so one raw inflater
/// reset before each message serves any number of connections: a connection keeps no inflate
/// state, and the generator's memory does not grow with connections for it.
pub struct Inflater {
    raw: Decompress,
    /// The latest message inflated; kept for its allocation.
    out: Vec<u8>,
}

impl Inflater {
    pub fn new() -> Self {
        Inflater {
            raw: Decompress::new(false),
            out: Vec::new(),
        }
    }

    /// Inflates one whole compressed message, refusing it past `max` bytes. The result lives
    /// until the next call.
    pub fn inflate(&mut self, payload: &[u8], max: usize) -> Result<&[u8], Fault> {
        self.raw.reset(false);
        self.out.clear();
        // RFC 7692 §7.2.2: append 0x00 0x00 0xff 0xff to the payload, then decompress.
        'message: for mut input in [payload, &DEFLATE_TAIL[..]] {
            loop {
                if self.out.len() == self.out.capacity() {
                    self.out
                        .reserve((2 * payload.len()).max(self.out.len()).max(256));
                }
                let (read, written) = (self.raw.total_in(), self.raw.total_out());
                let status = self
                    .raw
                    .decompress_vec(input, &mut self.out, FlushDecompress::Sync)
                    .map_err(|_| Fault::Inflate)?;
                let consumed = (self.raw.total_in() - read) as usize;
                input = &input[consumed..];
                if self.out.len() > max {
                    return Err(Fault::MessageTooLong(self.out.len() as u64));
                }
                // A final block (BFINAL) ends the data; whatever follows it is not inflated.
                if status == Status::StreamEnd {
                    break 'message;
                }
                let stalled = consumed == 0 && self.raw.total_out() == written;
                let room_left = self.out.len() < self.out.capacity();
                if stalled || (input.is_empty() && room_left) {
                    break;
                }
            }
        }
        Ok(&self.out)
    }
}

/// What a server message means to a client, given where the client is in its setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// Engine.IO open packet `0{...}`: answer with a Socket.IO CONNECT `40`.
    Open,
    /// Socket.IO CONNECT accepted `40{...}`: send the subscription.
    Connected,
    /// The subscription is confirmed.
    Subscribed,
    /// Engine.IO ping `2`: answer `3` at once, or be dropped after pingTimeout.
    EnginePing,
    /// A delivery carrying the generator's sequence number and intended send time.
    Notification { seq: u64, t: u64 },
    /// A notification (or other message) without the generator's fields.
    Unparsed,
    /// Refusal: Socket.IO CONNECT_ERROR, an `error` event while subscribing.
    Refused,
    /// Engine.IO close `1` or Socket.IO DISCONNECT `41`.
    Closed,
}

/// Classifies one server message. `subscribing` is true until the subscription is confirmed.
pub fn classify(protocol: Protocol, msg: &[u8], subscribing: bool) -> Meaning {
    match protocol {
        Protocol::Raw => {
            if subscribing {
                if find(msg, br#""subscribed""#).is_some() {
                    Meaning::Subscribed
                } else if find(msg, br#""error""#).is_some() {
                    Meaning::Refused
                } else {
                    Meaning::Unparsed
                }
            } else {
                notification(msg)
            }
        }
        Protocol::Socketio => match msg {
            b"2" => Meaning::EnginePing,
            [b'1', ..] => Meaning::Closed,
            [b'0', ..] => Meaning::Open,
            [b'4', b'0', ..] => Meaning::Connected,
            [b'4', b'1', ..] => Meaning::Closed,
            [b'4', b'4', ..] => Meaning::Refused,
            [b'4', b'2', rest @ ..] if subscribing => {
                if rest.starts_with(br#"["subscribed""#) {
                    Meaning::Subscribed
                } else if rest.starts_with(br#"["error""#) {
                    Meaning::Refused
                } else {
                    Meaning::Unparsed
                }
            }
            [b'4', b'2', rest @ ..] => notification(rest),
            _ => Meaning::Unparsed,
        },
    }
}

/// Classifies one raw-protocol message that came as MessagePack, as [`classify`] does its JSON
/// twin.
pub fn classify_msgpack(msg: &[u8], subscribing: bool) -> Meaning {
    let Ok(envelope) = rmp_serde::from_slice::<Envelope<'_>>(msg) else {
        return Meaning::Unparsed;
    };
    match (subscribing, envelope.event, envelope.data) {
        (true, "subscribed", _) => Meaning::Subscribed,
        (true, "error", _) => Meaning::Refused,
        (
            false,
            _,
            Stamp {
                seq: Some(seq),
                t: Some(t),
            },
        ) => Meaning::Notification { seq, t },
        _ => Meaning::Unparsed,
    }
}

/// The raw protocol's envelope as a client reads it from MessagePack: the event, and the
/// generator's fields found in `data`. Nothing else is kept, nothing is allocated.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: &'a str,
    #[serde(default)]
    data: Stamp,
}

/// The first `seq` and `t` keys anywhere in a value, walked in encoding order: the MessagePack
/// counterpart of the byte search [`notification`] makes in JSON.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    seq: Option<u64>,
    t: Option<u64>,
}

impl Stamp {
    /// Keeps what `self` found, fills the rest from `inner`.
    fn or(self, inner: Stamp) -> Stamp {
        Stamp {
            seq: self.seq.or(inner.seq),
            t: self.t.or(inner.t),
        }
    }
}

impl<'de> Deserialize<'de> for Stamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StampVisitor)
    }
}

/// Walks any value; scalars hold no stamp.
struct StampVisitor;

impl<'de> Visitor<'de> for StampVisitor {
    type Value = Stamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any MessagePack value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Stamp, A::Error> {
        let mut found = Stamp::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                // As in JSON, the first key decides: a `seq` that is not an unsigned integer
                // makes the message unparsed.
                Key::Seq if found.seq.is_none() => found.seq = Some(map.next_value()?),
                Key::T if found.t.is_none() => found.t = Some(map.next_value()?),
                _ => found = found.or(map.next_value()?),
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Stamp, A::Error> {
        let mut found = Stamp::default();
        while let Some(inner) = seq.next_element()? {
            found = found.or(inner);
        }
        Ok(found)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Stamp, D::Error> {
        Stamp::deserialize(d)
    }

    /// A MessagePack extension value.
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Stamp, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Stamp::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Stamp, E> {
        Ok(Stamp::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Stamp, E> {
        Ok(Stamp::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Stamp, E> {
        Ok(Stamp::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Stamp, E> {
        Ok(Stamp::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Stamp, E> {
        Ok(Stamp::default())
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Stamp, E> {
        Ok(Stamp::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Stamp, E> {
        Ok(Stamp::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<Stamp, E> {
        Ok(Stamp::default())
    }
}

/// A map key, as far as the search for `seq` and `t` cares.
enum Key {
    Seq,
    T,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KeyVisitor)
    }
}

/// Any string is a key; MessagePack also allows other scalars, none of them `seq` or `t`.
struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "seq" => Key::Seq,
            "t" => Key::T,
            _ => Key::Other,
        })
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Key, E> {
        Ok(Key::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Key, E> {
        Ok(Key::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Key, E> {
        Ok(Key::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Key, E> {
        Ok(Key::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Key, E> {
        Ok(Key::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
        Ok(Key::Other)
    }
}

/// Finds `"seq":` and `"t":` by byte search: a delivery is read, not parsed.
fn notification(msg: &[u8]) -> Meaning {
    match (
        number_after(msg, br#""seq":"#),
        number_after(msg, br#""t":"#),
    ) {
        (Some(seq), Some(t)) => Meaning::Notification { seq, t },
        _ => Meaning::Unparsed,
    }
}

/// The unsigned integer following the first `key` in `hay`, spaces after the colon allowed.
pub fn number_after(hay: &[u8], key: &[u8]) -> Option<u64> {
    let start = find(hay, key)? + key.len();
    let digits = hay[start..].iter().skip_while(|b| **b == b' ');
    let mut value: u64 = 0;
    let mut any = false;
    for b in digits.take_while(|b| b.is_ascii_digit()) {
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

/// The position of the first `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let mut from = 0;
    while let Some(i) = hay.get(from..)?.iter().position(|&b| b == first) {
        let at = from + i;
        if hay.get(at..at + needle.len())? == needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Remembers which sequence numbers a connection has seen among the last [`SeqWindow::SPAN`]
/// below the highest, to count duplicates in bounded memory.
pub struct SeqWindow {
    /// Bit `s % SPAN` is set when `s` was seen; valid for `highest - SPAN < s <= highest`.
    bits: [u64; Self::WORDS],
    /// The highest sequence number seen, `None` before the first.
    highest: Option<u64>,
}

/// How [`SeqWindow::see`] judged a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    First,
    Duplicate,
    /// Too far below the highest to tell: counted as a first delivery.
    TooOld,
}

impl SeqWindow {
    const WORDS: usize = 16;
    pub const SPAN: u64 = 64 * Self::WORDS as u64;

    pub fn new() -> Self {
        SeqWindow {
            bits: [0; Self::WORDS],
            highest: None,
        }
    }

    pub fn see(&mut self, seq: u64) -> Seen {
        match self.highest {
            Some(high) if seq <= high => {
                if high - seq >= Self::SPAN {
                    return Seen::TooOld;
                }
                if self.test_and_set(seq) {
                    Seen::Duplicate
                } else {
                    Seen::First
                }
            }
            Some(high) => {
                if seq - high >= Self::SPAN {
                    self.bits = [0; Self::WORDS];
                } else {
                    for s in high + 1..seq {
                        self.clear(s);
                    }
                }
                self.clear(seq);
                self.test_and_set(seq);
                self.highest = Some(seq);
                Seen::First
            }
            None => {
                self.test_and_set(seq);
                self.highest = Some(seq);
                Seen::First
            }
        }
    }

    fn slot(seq: u64) -> (usize, u64) {
        let bit = seq % Self::SPAN;
        ((bit / 64) as usize, 1 << (bit % 64))
    }

    fn clear(&mut self, seq: u64) {
        let (word, mask) = Self::slot(seq);
        self.bits[word] &= !mask;
    }

    /// Sets the bit of `seq` and says whether it was set before.
    fn test_and_set(&mut self, seq: u64) -> bool {
        let (word, mask) = Self::slot(seq);
        let was = self.bits[word] & mask != 0;
        self.bits[word] |= mask;
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame::write_header(&mut out, fin, op, payload.len());
        out.extend_from_slice(payload);
        out
    }

    fn decode_all(reader: &mut FrameReader, buf: &[u8]) -> (usize, Vec<Vec<u8>>) {
        let mut got = Vec::new();
        let used = reader
            .decode(buf, 1 << 20, |m| {
                if let Message::Data { payload, .. } = m {
                    got.push(payload.to_vec());
                }
                Ok(())
            })
            .expect("valid frames");
        (used, got)
    }

    // RFC 6455 §4.2.2: the accept key example.
    const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    /// A 101 for [`RFC_KEY`] with `extra` header lines.
    fn switching(extra: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {RFC_ACCEPT}\r\n{extra}\r\n"
        )
        .into_bytes()
    }

    const PLAIN: Offer = Offer {
        deflate: false,
        msgpack: false,
    };
    const DEFLATE: Offer = Offer {
        deflate: true,
        msgpack: false,
    };
    const MSGPACK: Offer = Offer {
        deflate: false,
        msgpack: true,
    };

    #[test]
    fn upgrade_response_with_the_rfc_key() {
        let key = RFC_KEY;
        let head = switching("");
        let plain = Upgrade {
            head_len: head.len(),
            deflate: false,
            msgpack: false,
        };
        assert_eq!(parse_upgrade_response(&head, key, PLAIN), Ok(Some(plain)));
        assert_eq!(parse_upgrade_response(&head[..40], key, PLAIN), Ok(None));
        let wrong = b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: AAAA\r\n\r\n";
        assert!(parse_upgrade_response(wrong, key, PLAIN).is_err());
        let refused = b"HTTP/1.1 400 Bad Request\r\n\r\n";
        assert!(parse_upgrade_response(refused, key, PLAIN).is_err());
    }

    #[test]
    fn the_request_carries_the_offer() {
        let plain = handshake_request("h", "/ws", RFC_KEY, PLAIN);
        assert!(find(&plain, b"Sec-WebSocket-Extensions").is_none());
        assert!(plain.ends_with(b"Sec-WebSocket-Version: 13\r\n\r\n"));
        let offer = handshake_request("h", "/ws", RFC_KEY, DEFLATE);
        let line = b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
        assert!(find(&offer, line).is_some());
        assert!(offer.ends_with(b"\r\n\r\n"));
        assert!(find(&offer, b"Sec-WebSocket-Protocol").is_none());
        let msgpack = handshake_request("h", "/ws", RFC_KEY, MSGPACK);
        let line = b"\r\nSec-WebSocket-Protocol: herald.msgpack\r\n";
        assert!(find(&msgpack, line).is_some());
        assert!(find(&msgpack, b"Sec-WebSocket-Extensions").is_none());
        assert!(msgpack.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn subprotocol_answers() {
        let chosen = |offer, extra| {
            let head = switching(extra);
            parse_upgrade_response(&head, RFC_KEY, offer).map(|u| u.map(|u| u.msgpack))
        };
        let herald = "Sec-WebSocket-Protocol: herald.msgpack\r\n";
        assert_eq!(chosen(MSGPACK, herald), Ok(Some(true)));
        assert_eq!(chosen(MSGPACK, ""), Ok(Some(false)));
        assert_eq!(chosen(PLAIN, ""), Ok(Some(false)));
        // RFC 6455 §4.1: a subprotocol the client did not ask for fails the connection.
        assert!(matches!(chosen(PLAIN, herald), Err(Fault::Negotiation(_))));
        assert!(matches!(
            chosen(MSGPACK, "Sec-WebSocket-Protocol: chat\r\n"),
            Err(Fault::Negotiation(_))
        ));
        let both = Offer {
            deflate: true,
            msgpack: true,
        };
        let herald_answer = "Sec-WebSocket-Extensions: permessage-deflate; \
                             server_no_context_takeover; client_no_context_takeover\r\n\
                             Sec-WebSocket-Protocol: herald.msgpack\r\n";
        let head = switching(herald_answer);
        let agreed = parse_upgrade_response(&head, RFC_KEY, both);
        assert_eq!(
            agreed,
            Ok(Some(Upgrade {
                head_len: head.len(),
                deflate: true,
                msgpack: true
            }))
        );
    }

    /// The answer to a permessage-deflate offer: `Ok(true)` accepted, `Ok(false)` declined,
    /// `Err` when the client must fail the connection.
    macro_rules! deflate_answer {
        ($($name:ident: $offer:expr, $extra:expr => $want:pat,)*) => {$(
            #[test]
            fn $name() {
                let head = switching($extra);
                let got = parse_upgrade_response(&head, RFC_KEY, $offer).map(|u| u.map(|u| u.deflate));
                assert!(matches!(got, $want), "{}: {got:?}", $extra);
            }
        )*};
    }

    deflate_answer! {
        deflate_as_herald_answers: DEFLATE,
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover\r\n" => Ok(Some(true)),
        deflate_with_window_bits: DEFLATE,
            "Sec-WebSocket-Extensions: permessage-deflate;server_no_context_takeover;\
             server_max_window_bits=10; client_max_window_bits=\"9\"\r\n" => Ok(Some(true)),
        deflate_declined: DEFLATE, "" => Ok(Some(false)),
        deflate_not_offered: PLAIN,
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
            => Err(Fault::Negotiation(_)),
        deflate_with_context_takeover: DEFLATE,
            "Sec-WebSocket-Extensions: permessage-deflate\r\n" => Err(Fault::Negotiation(_)),
        deflate_unknown_extension: DEFLATE,
            "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n" => Err(Fault::Negotiation(_)),
        deflate_unknown_parameter: DEFLATE,
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             level=9\r\n" => Err(Fault::Negotiation(_)),
        deflate_repeated_parameter: DEFLATE,
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             server_no_context_takeover\r\n" => Err(Fault::Negotiation(_)),
        deflate_bad_window_bits: DEFLATE,
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             server_max_window_bits=16\r\n" => Err(Fault::Negotiation(_)),
        deflate_flag_with_a_value: DEFLATE,
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover=1\r\n"
            => Err(Fault::Negotiation(_)),
        deflate_accepted_twice: DEFLATE,
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
            => Err(Fault::Negotiation(_)),
    }

    /// Reads `wire` whole with a reader for a deflate connection and inflates what came
    /// compressed, as the client does.
    fn read_deflated(wire: &[u8]) -> Result<Vec<(bool, Vec<u8>)>, Fault> {
        let mut inflater = Inflater::new();
        let mut got = Vec::new();
        let used = FrameReader::new(true).decode(wire, 1 << 20, |m| {
            if let Message::Data {
                payload,
                compressed,
                ..
            } = m
            {
                let data = if compressed {
                    inflater.inflate(payload, 1 << 20)?
                } else {
                    payload
                };
                got.push((compressed, data.to_vec()));
            }
            Ok(())
        })?;
        assert_eq!(used, wire.len());
        Ok(got)
    }

    /// RFC 7692 §7.2.3: the same "Hello" sent compressed in different ways.
    macro_rules! rfc7692_hello {
        ($($name:ident: $wire:expr;)*) => {$(
            #[test]
            fn $name() {
                let got = read_deflated(&$wire).expect("inflates");
                assert_eq!(got, vec![(true, b"Hello".to_vec())]);
            }
        )*};
    }

    rfc7692_hello! {
        // §7.2.3.1: one compressed DEFLATE block.
        hello_in_one_block: [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        // §7.2.3.1: the same block in two fragments, RSV1 on the first only.
        hello_in_two_fragments: [0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00];
        // §7.2.3.3: a block with no compression.
        hello_stored: [0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
        // §7.2.3.4: a block with BFINAL set.
        hello_final_block: [0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        // §7.2.3.5: two DEFLATE blocks in one message.
        hello_in_two_blocks: [
            0xc1, 0x0d, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07,
            0x00,
        ];
    }

    #[test]
    fn uncompressed_messages_pass_through_on_a_deflate_connection() {
        let wire = server_frame(true, opcode::TEXT, b"Hello");
        assert_eq!(read_deflated(&wire), Ok(vec![(false, b"Hello".to_vec())]));
    }

    // RFC 7692 §7.2.3.2: the second "Hello" refers back into the first message's window, which a
    // server with server_no_context_takeover never does. The shared inflater is reset between
    // messages, so the reference misses; the inflater does not even notice (it reads zeros), which
    // is why the negotiation insists on server_no_context_takeover.
    #[test]
    fn the_window_does_not_outlive_a_message() {
        let mut wire = vec![0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        wire.extend([0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]);
        let got = read_deflated(&wire).unwrap_or_default();
        let second = got.get(1).map(|(_, data)| data.as_slice());
        assert_ne!(second, Some(&b"Hello"[..]));
    }

    #[test]
    fn reserved_bits() {
        let hello = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let plain = FrameReader::default().decode(&hello, 100, |_| Ok(()));
        assert_eq!(plain, Err(Fault::BadFraming("reserved bit set")));
        // RSV2 (0xa1) and RSV3 (0x91) mean nothing even with deflate.
        for b0 in [0xa1, 0x91] {
            let err = FrameReader::new(true).decode(&[b0, 0x01, b'x'], 100, |_| Ok(()));
            assert_eq!(err, Err(Fault::BadFraming("reserved bit set")));
        }
        let rsv1 = Fault::BadFraming("RSV1 on a control frame or continuation");
        let ping = FrameReader::new(true).decode(&[0xc9, 0x00], 100, |_| Ok(()));
        assert_eq!(ping, Err(rsv1.clone()));
        let continuation = [0x41, 0x01, b'a', 0xc0, 0x01, b'b'];
        let err = FrameReader::new(true).decode(&continuation, 100, |_| Ok(()));
        assert_eq!(err, Err(rsv1));
    }

    /// Compresses `data` as a permessage-deflate sender does: a sync flush, the tail removed.
    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut raw = flate2::Compress::new(flate2::Compression::default(), false);
        let mut out = Vec::with_capacity(data.len() + 64);
        raw.compress_vec(data, &mut out, flate2::FlushCompress::Sync)
            .expect("compresses");
        assert!(out.ends_with(&DEFLATE_TAIL));
        out.truncate(out.len() - DEFLATE_TAIL.len());
        out
    }

    #[test]
    fn one_inflater_serves_message_after_message() {
        let words = ["notification ", "user ", "seq ", "broadcast ", "delivered "];
        let big: Vec<u8> = (0..20_000usize)
            .flat_map(|i| words[i * 7 % words.len()].bytes())
            .collect();
        let mut inflater = Inflater::new();
        for message in [&b"Hello"[..], &big, b"", b"Hello again", &big] {
            let inflated = inflater.inflate(&deflate(message), 1 << 20);
            assert_eq!(inflated, Ok(message), "{} bytes", message.len());
        }
        // The limit applies to the inflated size, however small the compressed message.
        let zeros = deflate(&[0; 100_000]);
        assert!(zeros.len() < 1000);
        assert!(matches!(
            inflater.inflate(&zeros, 50_000),
            Err(Fault::MessageTooLong(_))
        ));
        assert_eq!(inflater.inflate(&deflate(b"after"), 100), Ok(&b"after"[..]));
        assert_eq!(inflater.inflate(b"\xff\xff\xff", 100), Err(Fault::Inflate));
    }

    #[test]
    fn frames_of_every_length_form_and_fragments() {
        let mut wire = server_frame(true, opcode::TEXT, b"Hello");
        wire.extend(server_frame(true, opcode::TEXT, &[b'a'; 300]));
        wire.extend(server_frame(true, opcode::BINARY, &[b'b'; 0x10001]));
        wire.extend(server_frame(false, opcode::TEXT, b"Hel"));
        wire.extend(server_frame(true, opcode::PING, b"p"));
        wire.extend(server_frame(true, opcode::CONTINUATION, b"lo"));
        let mut reader = FrameReader::default();
        // Fed a byte at a time, the messages come out whole and in order.
        let mut pending = Vec::new();
        let mut got = Vec::new();
        for b in &wire {
            pending.push(*b);
            let (used, msgs) = decode_all(&mut reader, &pending);
            pending.drain(..used);
            got.extend(msgs);
        }
        assert!(pending.is_empty());
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], b"Hello");
        assert_eq!(got[1].len(), 300);
        assert_eq!(got[2].len(), 0x10001);
        assert_eq!(got[3], b"Hello");
    }

    #[test]
    fn masked_server_frames_are_refused() {
        let wire = frame::encode_masked(true, opcode::TEXT, 0, b"x", [1, 2, 3, 4]);
        let err = FrameReader::default().decode(&wire, 100, |_| Ok(()));
        assert_eq!(err, Err(Fault::MaskedFrame));
    }

    #[test]
    fn oversized_messages_are_refused_from_the_header() {
        let head = [0x82, 0x7F, 0, 0, 0, 0, 0x10, 0, 0, 0];
        let err = FrameReader::default().decode(&head, 1 << 20, |_| Ok(()));
        assert!(matches!(err, Err(Fault::MessageTooLong(_))));
    }

    #[test]
    fn notifications_are_found_by_byte_search() {
        let raw = br#"{"event":"notification","data":{"type":"BENCH","message":"m","data":{"seq":123,"t":1790000000123456789},"timestamp":"2026-01-01T00:00:00.000Z"}}"#;
        assert_eq!(
            classify(Protocol::Raw, raw, false),
            Meaning::Notification {
                seq: 123,
                t: 1_790_000_000_123_456_789
            }
        );
        let sio = br#"42["notification",{"timestamp":"x","data":{"t": 5,"seq": 9}}]"#;
        assert_eq!(
            classify(Protocol::Socketio, sio, false),
            Meaning::Notification { seq: 9, t: 5 }
        );
        let other = br#"{"event":"notification","data":{"type":"X"}}"#;
        assert_eq!(classify(Protocol::Raw, other, false), Meaning::Unparsed);
    }

    #[test]
    fn socketio_setup_messages() {
        let p = Protocol::Socketio;
        assert_eq!(
            classify(p, br#"0{"sid":"a","pingInterval":25000}"#, true),
            Meaning::Open
        );
        assert_eq!(classify(p, br#"40{"sid":"b"}"#, true), Meaning::Connected);
        assert_eq!(
            classify(p, br#"42["subscribed",{"userId":"user-1"}]"#, true),
            Meaning::Subscribed
        );
        assert_eq!(classify(p, b"2", false), Meaning::EnginePing);
        assert_eq!(
            classify(p, br#"44{"message":"no"}"#, true),
            Meaning::Refused
        );
        assert_eq!(classify(p, b"41", false), Meaning::Closed);
        let raw = br#"{"event":"subscribed","data":{"userId":"user-1","socketId":"s"}}"#;
        assert_eq!(classify(Protocol::Raw, raw, true), Meaning::Subscribed);
    }

    #[test]
    fn frames_say_text_or_binary() {
        let mut wire = server_frame(true, opcode::TEXT, b"t");
        wire.extend(server_frame(true, opcode::BINARY, b"b"));
        wire.extend(server_frame(false, opcode::BINARY, b"b"));
        wire.extend(server_frame(true, opcode::CONTINUATION, b"2"));
        let mut got = Vec::new();
        FrameReader::default()
            .decode(&wire, 100, |m| {
                if let Message::Data {
                    payload, binary, ..
                } = m
                {
                    got.push((binary, payload.to_vec()));
                }
                Ok(())
            })
            .expect("valid frames");
        let want = [(false, &b"t"[..]), (true, b"b"), (true, b"b2")];
        assert_eq!(got, want.map(|(b, p)| (b, p.to_vec())));
    }

    #[test]
    fn msgpack_subscription() {
        // fixmap(2) {fixstr(5) "event": fixstr(9) "subscribe", fixstr(4) "data": fixstr(6) "user-7"}
        let mut want = vec![0x82, 0xa5];
        want.extend(b"event");
        want.push(0xa9);
        want.extend(b"subscribe");
        want.push(0xa4);
        want.extend(b"data");
        want.push(0xa6);
        want.extend(b"user-7");
        assert_eq!(subscribe_msgpack("user-7"), want);
    }

    /// The MessagePack twin of a JSON message, as a server in `herald.msgpack` mode encodes it.
    fn msgpack_of(json: &[u8]) -> Vec<u8> {
        let value: serde_json::Value = serde_json::from_slice(json).expect("valid JSON");
        rmp_serde::to_vec_named(&value).expect("encodes")
    }

    #[test]
    fn msgpack_messages_mean_what_their_json_twins_mean() {
        let twins: [&[u8]; 7] = [
            br#"{"event":"notification","data":{"type":"BENCH","message":"m","data":{"seq":123,"t":1790000000123456789},"timestamp":"2026-01-01T00:00:00.000Z"}}"#,
            br#"{"event":"notification","data":{"timestamp":"x","data":{"t": 5,"seq": 9}}}"#,
            br#"{"event":"notification","data":{"list":[{"seq":0}],"data":{"t":18446744073709551615,"seq":1}}}"#,
            br#"{"event":"notification","data":{"type":"X"}}"#,
            br#"{"event":"notification","data":{"data":{"seq":"12","t":1}}}"#,
            br#"{"event":"notification","data":null}"#,
            br#"{"event":"notification"}"#,
        ];
        for json in twins {
            let want = classify(Protocol::Raw, json, false);
            let got = classify_msgpack(&msgpack_of(json), false);
            assert_eq!(got, want, "{}", String::from_utf8_lossy(json));
        }
        let first = classify_msgpack(&msgpack_of(twins[0]), false);
        assert_eq!(
            first,
            Meaning::Notification {
                seq: 123,
                t: 1_790_000_000_123_456_789
            }
        );
        assert_eq!(
            classify_msgpack(&msgpack_of(twins[2]), false),
            Meaning::Notification {
                seq: 0,
                t: u64::MAX
            }
        );
    }

    #[test]
    fn msgpack_setup_and_garbage() {
        let subscribed =
            msgpack_of(br#"{"event":"subscribed","data":{"userId":"user-1","socketId":"s"}}"#);
        assert_eq!(classify_msgpack(&subscribed, true), Meaning::Subscribed);
        let error = msgpack_of(br#"{"event":"error","data":"bad user id"}"#);
        assert_eq!(classify_msgpack(&error, true), Meaning::Refused);
        let other = msgpack_of(br#"{"event":"hello","data":[1,2.5,true,null]}"#);
        assert_eq!(classify_msgpack(&other, true), Meaning::Unparsed);
        assert_eq!(classify_msgpack(&other, false), Meaning::Unparsed);
        // The envelope as an array (rmp_serde::to_vec of a struct) reads the same.
        let array = rmp_serde::to_vec(&Outgoing {
            event: "subscribed",
            data: "user-1",
        })
        .expect("encodes");
        assert_eq!(array[0], 0x92);
        assert_eq!(classify_msgpack(&array, true), Meaning::Subscribed);
        let whole = msgpack_of(br#"{"event":"notification","data":{"data":{"seq":1,"t":2}}}"#);
        for cut in 0..whole.len() {
            assert_eq!(classify_msgpack(&whole[..cut], false), Meaning::Unparsed);
        }
        assert_eq!(classify_msgpack(b"\xc1", false), Meaning::Unparsed);
        assert_eq!(
            classify_msgpack(br#"{"event":"subscribed"}"#, true),
            Meaning::Unparsed
        );
    }

    #[test]
    fn numbers_after_keys() {
        assert_eq!(number_after(br#"{"a":12}"#, br#""a":"#), Some(12));
        assert_eq!(number_after(br#"{"a":"12"}"#, br#""a":"#), None);
        assert_eq!(
            number_after(br#"{"a":99999999999999999999}"#, br#""a":"#),
            None
        );
        assert_eq!(find(b"aab", b"ab"), Some(1));
        assert_eq!(find(b"a", b"ab"), None);
    }

    #[test]
    fn seq_window_counts_duplicates_in_and_out_of_order() {
        let mut w = SeqWindow::new();
        assert_eq!(w.see(10), Seen::First);
        assert_eq!(w.see(10), Seen::Duplicate);
        assert_eq!(w.see(12), Seen::First);
        assert_eq!(w.see(11), Seen::First);
        assert_eq!(w.see(11), Seen::Duplicate);
        assert_eq!(w.see(10 + SeqWindow::SPAN + 5), Seen::First);
        assert_eq!(w.see(10), Seen::TooOld);
        assert_eq!(w.see(12 + SeqWindow::SPAN), Seen::First);
        assert_eq!(w.see(12 + SeqWindow::SPAN), Seen::Duplicate);
        // A slot reused by a newer number does not remember the older one.
        let mut w = SeqWindow::new();
        w.see(1);
        assert_eq!(w.see(1 + SeqWindow::SPAN), Seen::First);
        assert_eq!(w.see(2 + SeqWindow::SPAN), Seen::First);
    }
}
