//! The client's side of the two WebSocket protocols, no I/O: the opening handshake, server frames,
//! and what each server message means to a benchmark client.
//!
//! Nothing here reads a socket or a clock: bytes come in as slices, replies go into buffers the
//! caller owns, and the receive time is passed in.

use std::fmt;

use herald::ws::frame::{self, opcode};
use herald::ws::handshake::accept_key;

/// The WebSocket protocol the clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// `{"event","data"}` text frames at `/ws`.
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

/// Why a client connection gave up. Each variant is one line of the report's failure counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The server answered the upgrade with something other than 101 and the right accept key.
    Refused(String),
    /// The response head did not end within the limit.
    HeadTooLong,
    /// RFC 6455 §5.1: a client MUST close on a masked frame from the server.
    MaskedFrame,
    /// A reserved opcode, a stray continuation, a new message inside a fragmented one.
    BadFraming(&'static str),
    /// A message larger than the client keeps.
    MessageTooLong(u64),
    /// The server sent a Close frame (WebSocket) or close packet (Engine.IO).
    ClosedByServer,
    /// The server refused the Socket.IO CONNECT or the subscription.
    SubscribeRefused,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Refused(status) => write!(f, "upgrade refused ({status})"),
            Fault::HeadTooLong => f.write_str("handshake response head too long"),
            Fault::MaskedFrame => f.write_str("masked frame from the server"),
            Fault::BadFraming(what) => write!(f, "bad framing: {what}"),
            Fault::MessageTooLong(n) => write!(f, "message of {n} bytes over the limit"),
            Fault::ClosedByServer => f.write_str("closed by the server"),
            Fault::SubscribeRefused => f.write_str("subscription refused"),
        }
    }
}

/// The longest handshake response head a client accepts.
pub const MAX_HEAD: usize = 16 * 1024;

/// The upgrade request of a client whose `Sec-WebSocket-Key` is `key`.
pub fn handshake_request(host: &str, path: &str, key: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Reads the server's answer to the upgrade from the start of `buf`.
///
/// Returns the head's length once it is whole and says 101 with the accept key derived from
/// `key`, `Ok(None)` while it is incomplete.
pub fn parse_upgrade_response(buf: &[u8], key: &str) -> Result<Option<usize>, Fault> {
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
    let accept = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|h| h.value);
    // RFC 6455 §4.1: the client MUST fail the connection unless the accept value is the
    // base64 SHA-1 of its key and the GUID.
    if accept != Some(accept_key(key).as_bytes()) {
        return Err(Fault::Refused("wrong Sec-WebSocket-Accept".into()));
    }
    Ok(Some(head_len))
}

/// A whole server message or control frame, as [`FrameReader`] hands it out.
pub enum Message<'a> {
    /// A text or binary message, reassembled when it came in fragments.
    Data(&'a [u8]),
    Ping(&'a [u8]),
    Close,
}

/// Splits server bytes into messages. Keeps only the fragments of an unfinished message.
#[derive(Default)]
pub struct FrameReader {
    /// Payload of the fragmented message being reassembled; empty otherwise.
    fragments: Vec<u8>,
    /// True between the first fragment of a message and its last.
    in_message: bool,
}

impl FrameReader {
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
            match header.opcode {
                opcode::TEXT | opcode::BINARY if self.in_message => {
                    return Err(Fault::BadFraming("new message inside a fragmented one"))
                }
                opcode::TEXT | opcode::BINARY if header.fin => on(Message::Data(payload))?,
                opcode::TEXT | opcode::BINARY => {
                    self.in_message = true;
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
                        on(Message::Data(&whole))?;
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
                if let Message::Data(d) = m {
                    got.push(d.to_vec());
                }
                Ok(())
            })
            .expect("valid frames");
        (used, got)
    }

    // RFC 6455 §4.2.2: the accept key example.
    #[test]
    fn upgrade_response_with_the_rfc_key() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(parse_upgrade_response(head, key), Ok(Some(head.len())));
        assert_eq!(parse_upgrade_response(&head[..40], key), Ok(None));
        let wrong = b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: AAAA\r\n\r\n";
        assert!(parse_upgrade_response(wrong, key).is_err());
        let refused = b"HTTP/1.1 400 Bad Request\r\n\r\n";
        assert!(parse_upgrade_response(refused, key).is_err());
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
