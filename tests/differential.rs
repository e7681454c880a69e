//! herald's WebSocket decoder against tungstenite's, on the same client byte streams.
//!
//! Each stream goes to `herald::ws::Decoder` and to a server-side `tungstenite::WebSocket` over
//! an in-memory socket, and the two must reach the same verdict: the same messages and control
//! frames, then the same ending: the stream ran out, the client closed, or the connection
//! failed with a close code of the same class (1002 protocol error, 1007 invalid data, 1009 too
//! big). tungstenite does not send a close code when it fails; it returns an error, mapped here
//! to the code a server built on it sends for it (see [`tungstenite_verdict`]).
//!
//! Configured alike: tungstenite's message limit is herald's, it refuses unmasked frames, and
//! neither side negotiates permessage-deflate (tungstenite 0.24 has none). tungstenite's frame
//! limit is off, because herald has none besides the message limit; herald's fragment limit is
//! off, because tungstenite has none.
//!
//! Where the two differ by design, each case is named at the place that allows it:
//! - herald judges a frame from its header and fails fast on bad UTF-8 inside a payload, where
//!   tungstenite waits for the whole frame. When a stream ends inside the frame herald failed
//!   on, the frame is completed with filler bytes and both are compared on that; a frame too
//!   large to build is left out ([`Comparison::Excluded`]), counted, and held to a share.
//! - RFC 6455 §5.2: "the most significant bit MUST be 0" in a 64-bit length; herald checks it,
//!   tungstenite reads such a length as a frame it waits for forever. Left out likewise.
//! - A Close whose reason is not UTF-8: herald answers 1002, tungstenite's UTF-8 error maps to
//!   1007. RFC 6455 §8.1 only says to fail the connection; both are accepted
//!   ([`Comparison::Alike`]).
//! - Close code 1014 ("Bad Gateway", registered with IANA after RFC 6455) is valid to herald and
//!   unknown to tungstenite 0.24, which answers 1002. Such streams are left out.

mod strategies;

use std::cell::Cell;
use std::io::{self, Read, Write};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use tungstenite::error::{Error as TError, ProtocolError};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Message, Role, WebSocket, WebSocketConfig};

use herald::ws::frame::{apply_mask, encode_masked, opcode, parse_header};
use herald::ws::{CloseCode, Decoder, Error, Event};
use strategies::{bytes_from, frame_len, text_of_len};

/// Random streams compared per run.
const CASES: u32 = 4096;

/// The largest filler a truncated frame is completed with before comparing.
const MAX_FILLER: u64 = 1 << 18;

/// Code 1014, valid to herald and not to tungstenite 0.24 (see the module comment).
const BAD_GATEWAY: u16 = 1014;

// ---------------------------------------------------------------------------------------------
// The two decoders

/// How a stream ended for a decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The bytes ran out with the connection still open.
    Open,
    /// The client sent a Close; what follows it is ignored.
    Closed,
    /// The connection failed with this close code.
    Failed(u16),
}

/// What a decoder made of a stream: its events in order, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    events: Vec<Event>,
    ending: Ending,
}

/// herald's verdict, and its error when it failed.
fn herald_verdict(bytes: &[u8], max_message: usize) -> (Verdict, Option<Error>) {
    // tungstenite bounds no fragment count; herald's bound (beyond the RFC) is lifted.
    let mut dec = Decoder::new(max_message).with_max_fragments(u32::MAX);
    let mut events = Vec::new();
    let mut input = bytes;
    while !input.is_empty() {
        match dec.decode(input) {
            Ok((n, ev)) => {
                input = &input[n..];
                if let Some(ev) = ev {
                    let closed = matches!(ev, Event::Close(_));
                    events.push(ev);
                    if closed {
                        let ending = Ending::Closed;
                        return (Verdict { events, ending }, None);
                    }
                }
            }
            Err(err) => {
                let ending = Ending::Failed(CloseCode::from(&err).0);
                return (Verdict { events, ending }, Some(err));
            }
        }
    }
    let ending = Ending::Open;
    (Verdict { events, ending }, None)
}

/// An in-memory socket: reads serve `input` in `chunk`-sized pieces then end, writes are kept.
struct MemorySocket {
    input: Vec<u8>,
    pos: usize,
    chunk: usize,
    written: Vec<u8>,
}

impl Read for MemorySocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.input.len() - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for MemorySocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// tungstenite's verdict, with its error mapped to the close code a server sends for it.
///
/// `chunk` is how many bytes each read of the socket gets, so tungstenite's own buffering meets
/// frames split every way too.
fn tungstenite_verdict(bytes: &[u8], max_message: usize, chunk: usize) -> Verdict {
    let config = WebSocketConfig {
        max_message_size: Some(max_message),
        max_frame_size: None,
        accept_unmasked_frames: false,
        ..WebSocketConfig::default()
    };
    let socket = MemorySocket {
        input: bytes.to_vec(),
        pos: 0,
        chunk: chunk.max(1),
        written: Vec::new(),
    };
    let mut ws = WebSocket::from_raw_socket(socket, Role::Server, Some(config));
    let mut events = Vec::new();
    let ending = loop {
        match ws.read() {
            Ok(Message::Text(s)) => events.push(Event::Text(s)),
            Ok(Message::Binary(b)) => events.push(Event::Binary(b)),
            Ok(Message::Ping(p)) => events.push(Event::Ping(p)),
            Ok(Message::Pong(p)) => events.push(Event::Pong(p)),
            Ok(Message::Close(frame)) => {
                let close = frame.map(|CloseFrame { code, reason }| {
                    (CloseCode(code.into()), reason.into_owned())
                });
                // tungstenite answers a Close whose code may not be sent with a 1002 of its
                // own, and hands that to the reader in place of the client's: it fails the
                // connection with 1002.
                if let (Some((code, _)), Some(sent)) = (&close, first_close_code(bytes)) {
                    if code.0 != sent {
                        break Ending::Failed(CloseCode::PROTOCOL_ERROR.0);
                    }
                }
                events.push(Event::Close(close));
                break Ending::Closed;
            }
            Ok(Message::Frame(_)) => panic!("tungstenite returned a raw frame to a reader"),
            // The peer's bytes ended before a Close.
            Err(TError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
                break Ending::Open
            }
            Err(TError::Protocol(_)) => break Ending::Failed(CloseCode::PROTOCOL_ERROR.0),
            Err(TError::Utf8) => break Ending::Failed(CloseCode::INVALID_PAYLOAD.0),
            Err(TError::Capacity(_)) => break Ending::Failed(CloseCode::TOO_BIG.0),
            Err(other) => panic!("unexpected tungstenite error {other:?}"),
        }
    };
    Verdict { events, ending }
}

/// The status code in the first Close frame of a stream of whole frames, if it has one with a
/// code: the Close a decoder that got that far stopped at.
fn first_close_code(bytes: &[u8]) -> Option<u16> {
    let mut pos = 0;
    while let Ok(Some((h, n))) = parse_header(&bytes[pos..]) {
        let start = pos + n;
        let end = start.checked_add(usize::try_from(h.len).ok()?)?;
        let payload = bytes.get(start..end)?;
        if h.opcode == opcode::CLOSE {
            let mut head = [*payload.first()?, *payload.get(1)?];
            if let Some(mask) = h.mask {
                apply_mask(&mut head, mask, 0);
            }
            return Some(u16::from_be_bytes(head));
        }
        pos = end;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Comparing

/// The outcome of comparing the two on one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Same,
    /// Both failed the connection after the same events, with codes RFC 6455 leaves open.
    Alike(&'static str),
    /// A by-design difference, named in the module comment, kept the verdicts apart.
    Excluded(&'static str),
}

/// Where the last frame that the stream holds only part of starts, if one does.
///
/// Frames are walked by their headers alone, bad or not: whatever either decoder makes of them,
/// a frame's extent is in its header.
fn trailing_partial_frame(bytes: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while pos < bytes.len() {
        match parse_header(&bytes[pos..]) {
            Ok(Some((h, n))) => {
                let end = (pos + n) as u64 + h.len;
                if end > bytes.len() as u64 {
                    return Some(pos);
                }
                pos = end as usize;
            }
            Ok(None) | Err(_) => return Some(pos),
        }
    }
    None
}

/// Compares herald and tungstenite on `bytes`.
fn compare(bytes: &[u8], max_message: usize, chunk: usize) -> Result<Comparison, String> {
    let (ours, err) = herald_verdict(bytes, max_message);
    if let Some(Event::Close(Some((code, _)))) = ours.events.last() {
        if code.0 == BAD_GATEWAY {
            return Ok(Comparison::Excluded("close code 1014"));
        }
    }
    let mut theirs = tungstenite_verdict(bytes, max_message, chunk);

    // herald failed inside a frame the stream holds only part of, where tungstenite waits for the
    // rest: complete the frame, so tungstenite sees what herald judged.
    if let (Ending::Failed(_), Ending::Open, Some(start)) =
        (ours.ending, theirs.ending, trailing_partial_frame(bytes))
    {
        let (before, _) = herald_verdict(&bytes[..start], max_message);
        if !matches!(before.ending, Ending::Failed(_)) {
            if err == Some(Error::LengthTopBit) {
                return Ok(Comparison::Excluded("64-bit length with the top bit set"));
            }
            let Ok(Some((h, n))) = parse_header(&bytes[start..]) else {
                return Err(format!(
                    "herald failed ({err:?}) on a header it cannot have read"
                ));
            };
            let missing = (start + n) as u64 + h.len - bytes.len() as u64;
            if missing > MAX_FILLER {
                return Ok(Comparison::Excluded(
                    "fault in a frame too large to complete",
                ));
            }
            let mut completed = bytes.to_vec();
            completed.resize(completed.len() + missing as usize, 0x00);
            let (again, _) = herald_verdict(&completed, max_message);
            if again != ours {
                return Err(format!(
                    "herald changed its verdict when bytes came after its fault: {ours:?} then \
                     {again:?}"
                ));
            }
            theirs = tungstenite_verdict(&completed, max_message, chunk);
        }
    }

    // A Close reason that is not UTF-8: 1002 from herald, 1007 from tungstenite; both fail.
    // tungstenite reads the reason before the code, so a bad code with it counts the same.
    if matches!(
        err,
        Some(Error::InvalidCloseReason | Error::InvalidCloseCode(_))
    ) && theirs.ending == Ending::Failed(CloseCode::INVALID_PAYLOAD.0)
        && theirs.events == ours.events
    {
        return Ok(Comparison::Alike("close reason not UTF-8"));
    }

    if ours == theirs {
        Ok(Comparison::Same)
    } else {
        Err(format!(
            "verdicts differ\n  herald:      {:?} (error {err:?})\n  tungstenite: {:?}",
            summary(&ours),
            summary(&theirs)
        ))
    }
}

/// A verdict with long payloads shortened, for failure messages.
fn summary(v: &Verdict) -> (Vec<String>, Ending) {
    let events = v
        .events
        .iter()
        .map(|e| {
            let s = format!("{e:?}");
            if s.len() > 80 {
                let head: String = s.chars().take(80).collect();
                format!("{head}... ({} bytes)", s.len())
            } else {
                s
            }
        })
        .collect();
    (events, v.ending)
}

// ---------------------------------------------------------------------------------------------
// Random client streams

/// Byte sequences that are not UTF-8: overlong forms, surrogates, past U+10FFFF, bytes that never
/// appear, a stray continuation, and sequences cut short.
const NOT_UTF8: &[&[u8]] = &[
    b"\xC0\xAF",
    b"\xE0\x80\xAF",
    b"\xF0\x80\x80\xAF",
    b"\xED\xA0\x80",
    b"\xED\xBF\xBF",
    b"\xF4\x90\x80\x80",
    b"\xF8\x88\x80\x80\x80",
    b"\xFE",
    b"\xFF",
    b"\x80",
    b"\xE2\x82",
    b"\xF0\x9F\x98",
];

/// A client frame: masked with the given key, or unmasked when `mask` is `None`.
fn client_frame(fin: bool, op: u8, rsv: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let key = mask.unwrap_or([0; 4]);
    let mut frame = encode_masked(fin, op, rsv, payload, key);
    if mask.is_none() {
        // With a zero key the payload went out as it was; drop the MASK bit and the key.
        let key_at = frame.len() - payload.len() - 4;
        frame[1] &= 0x7F;
        frame.drain(key_at..key_at + 4);
    }
    frame
}

/// Masks: almost always a key, sometimes none (RFC 6455 §5.1 refuses those).
fn mask() -> impl Strategy<Value = Option<[u8; 4]>> {
    prop_oneof![19 => any::<[u8; 4]>().prop_map(Some), 1 => Just(None)]
}

/// A piece of a client stream.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    let pool = || vec(any::<char>(), 1..5);
    prop_oneof![
        // A valid message in one to four frames, control frames after some of them.
        6 => (
            any::<bool>(),
            vec((frame_len(), mask(), prop::option::of((any::<bool>(), 0usize..=125))), 1..=4),
            pool(),
            any::<u64>(),
        )
            .prop_map(|(text, frames, pool, seed)| {
                let total = frames.iter().map(|f| f.0).sum();
                let data = if text { text_of_len(&pool, total).into_bytes() } else { bytes_from(seed, total) };
                let mut out = Vec::new();
                let mut at = 0;
                let last = frames.len() - 1;
                for (i, (len, key, control)) in frames.into_iter().enumerate() {
                    let op = match (i, text) {
                        (0, true) => opcode::TEXT,
                        (0, false) => opcode::BINARY,
                        _ => opcode::CONTINUATION,
                    };
                    out.extend(client_frame(i == last, op, 0, &data[at..at + len], key));
                    at += len;
                    if let Some((ping, n)) = control {
                        let op = if ping { opcode::PING } else { opcode::PONG };
                        out.extend(client_frame(true, op, 0, &bytes_from(seed, n), key));
                    }
                }
                out
            }),
        // A text message with a sequence that is not UTF-8 somewhere in it, in one to three
        // frames, the last of which may leave the message unfinished.
        3 => (
            pool(),
            0usize..40,
            prop::sample::select(NOT_UTF8),
            any::<Index>(),
            vec(any::<Index>(), 0..3),
            any::<bool>(),
            any::<[u8; 4]>(),
        )
            .prop_map(|(pool, len, bad, at, cuts, fin, key)| {
                let good = text_of_len(&pool, len).into_bytes();
                // Insert at a char boundary of the valid text, so only `bad` is at fault.
                let mut i = at.index(good.len() + 1);
                while std::str::from_utf8(&good[..i]).is_err() {
                    i -= 1;
                }
                let data = [&good[..i], bad, &good[i..]].concat();
                let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
                cuts.sort_unstable();
                cuts.push(data.len());
                let mut out = Vec::new();
                let mut start = 0;
                for (n, end) in cuts.iter().enumerate() {
                    let op = if n == 0 { opcode::TEXT } else { opcode::CONTINUATION };
                    let last = n + 1 == cuts.len();
                    out.extend(client_frame(last && fin, op, 0, &data[start..*end], Some(key)));
                    start = *end;
                }
                out
            }),
        // A frame with any header bits: reserved bits and opcodes, FIN clear on control frames,
        // stray continuations, control frames past 125 bytes.
        4 => (
            any::<bool>(),
            prop_oneof![3 => Just(0u8), 1 => 0u8..8],
            0u8..16,
            prop_oneof![3 => 0usize..=16, 2 => 120usize..=200],
            any::<u64>(),
            mask(),
        )
            .prop_map(|(fin, rsv, op, len, seed, key)| {
                client_frame(fin, op, rsv, &bytes_from(seed, len), key)
            }),
        // A Close: empty, one byte, or a code (interesting or any) and a reason (text or not).
        3 => (
            prop_oneof![
                1 => Just(None),
                1 => any::<u8>().prop_map(|b| Some(vec![b])),
                6 => (
                    prop_oneof![
                        3 => prop::sample::select(&[
                            0u16, 999, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008,
                            1009, 1010, 1011, 1012, 1013, 1015, 1016, 2999, 3000, 4999, 5000,
                            0xFFFF,
                        ][..]),
                        1 => any::<u16>(),
                    ],
                    prop_oneof![
                        3 => (pool(), 0usize..=60).prop_map(|(p, n)| text_of_len(&p, n).into_bytes()),
                        1 => prop::sample::select(NOT_UTF8).prop_map(<[u8]>::to_vec),
                    ],
                )
                    .prop_map(|(code, reason)| {
                        Some([&code.to_be_bytes()[..], &reason].concat())
                    }),
            ],
            mask(),
        )
            .prop_map(|(body, key)| match body {
                None => client_frame(true, opcode::CLOSE, 0, &[], key),
                Some(body) => client_frame(true, opcode::CLOSE, 0, &body, key),
            }),
        // A frame whose length uses a longer form than it needs (allowed), or the 64-bit form
        // with its top bit set (refused).
        1 => (0usize..=130, any::<bool>(), any::<[u8; 4]>(), any::<u64>()).prop_map(
            |(len, top, key, seed)| {
                let mut out = vec![0x82, 0xFF];
                let declared = len as u64 | if top { 1 << 63 } else { 0 };
                out.extend_from_slice(&declared.to_be_bytes());
                out.extend_from_slice(&key);
                let mut payload = bytes_from(seed, len);
                apply_mask(&mut payload, key, 0);
                out.extend(payload);
                out
            }
        ),
        // Noise.
        1 => vec(any::<u8>(), 1..48),
    ]
}

/// A stream: pieces, maybe cut short, with the message limit and read size to use.
fn client_stream() -> impl Strategy<Value = (Vec<u8>, usize, usize)> {
    (
        vec(piece(), 1..6),
        prop::option::weighted(0.3, any::<Index>()),
        prop::sample::select(&[1000usize, 65536][..]),
        prop::sample::select(&[1usize, 7, 4096][..]),
    )
        .prop_map(|(pieces, cut, max, chunk)| {
            let mut bytes = pieces.concat();
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            (bytes, max, chunk)
        })
}

#[test]
fn random_client_streams_get_the_same_verdict() {
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let same = Cell::new(0u32);
    let excluded = Cell::new(0u32);
    let failed = Cell::new(0u32);
    let result = runner.run(&client_stream(), |(bytes, max, chunk)| {
        match compare(&bytes, max, chunk) {
            Ok(Comparison::Same) => {
                same.set(same.get() + 1);
                let (v, _) = herald_verdict(&bytes, max);
                if matches!(v.ending, Ending::Failed(_)) {
                    failed.set(failed.get() + 1);
                }
            }
            Ok(Comparison::Alike(_)) => {
                same.set(same.get() + 1);
                failed.set(failed.get() + 1);
            }
            Ok(Comparison::Excluded(_)) => excluded.set(excluded.get() + 1),
            Err(why) => return Err(TestCaseError::fail(why)),
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (same, excluded, failed) = (same.get(), excluded.get(), failed.get());
    eprintln!("{same} streams compared ({failed} failing), {excluded} left out");
    // The comparison must have bitten: most streams compared, and both endings well represented.
    assert!(
        excluded * 10 < CASES,
        "{excluded} of {CASES} streams left out; {same} compared"
    );
    assert!(
        failed * 10 > same && failed * 10 < same * 9,
        "{failed} of {same} compared streams failed the connection"
    );
}

// ---------------------------------------------------------------------------------------------
// Hand-written streams

const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];
const MAX: usize = 1000;

fn frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    encode_masked(fin, op, 0, payload, MASK)
}

fn close(code: u16, reason: &[u8]) -> Vec<u8> {
    frame(
        true,
        opcode::CLOSE,
        &[&code.to_be_bytes()[..], reason].concat(),
    )
}

fn text(s: &str) -> Event {
    Event::Text(s.to_owned())
}

fn closed_with(code: u16, reason: &str) -> Event {
    Event::Close(Some((CloseCode(code), reason.to_owned())))
}

fn verdict(events: Vec<Event>, ending: Ending) -> Verdict {
    Verdict { events, ending }
}

/// Each stream, fed to both whole and one read per byte, must give the verdict written for it:
/// `same` for both, or `herald` and `tungstenite` apart where they differ by design.
macro_rules! streams {
    ($($name:ident: $bytes:expr => $($side:ident)+ ($events:expr, $ending:expr);)*) => {
        $(
            #[test]
            fn $name() {
                let bytes: Vec<u8> = $bytes;
                let want = verdict($events, $ending);
                streams!(@check bytes, want, $($side)+);
            }
        )*
    };
    (@check $bytes:ident, $want:ident, same) => {
        for chunk in [4096, 1] {
            assert_eq!(tungstenite_verdict(&$bytes, MAX, chunk), $want, "tungstenite, reads of {chunk}");
        }
        assert_eq!(herald_verdict(&$bytes, MAX).0, $want, "herald");
        assert_eq!(compare(&$bytes, MAX, 1), Ok(Comparison::Same));
    };
    (@check $bytes:ident, $want:ident, herald) => {
        assert_eq!(herald_verdict(&$bytes, MAX).0, $want, "herald");
    };
    (@check $bytes:ident, $want:ident, tungstenite) => {
        assert_eq!(tungstenite_verdict(&$bytes, MAX, 4096), $want, "tungstenite");
    };
}

const P: Ending = Ending::Failed(1002);
const I: Ending = Ending::Failed(1007);
const B: Ending = Ending::Failed(1009);

streams! {
    // RFC 6455 §5.7 examples.
    rfc_masked_hello: vec![0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]
        => same (vec![text("Hello")], Ending::Open);
    rfc_fragmented_hello_with_ping: [
        frame(false, opcode::TEXT, b"Hel"),
        frame(true, opcode::PING, b"Hello"),
        frame(true, opcode::CONTINUATION, b"lo"),
    ].concat() => same (vec![Event::Ping(b"Hello".to_vec()), text("Hello")], Ending::Open);
    unmasked_text: vec![0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F] => same (vec![], P);
    rsv1_without_extension: encode_masked(true, opcode::TEXT, 0b100, b"x", MASK)
        => same (vec![], P);
    rsv3_on_ping: encode_masked(true, opcode::PING, 0b001, b"", MASK) => same (vec![], P);
    opcode_3: frame(true, 0x3, b"") => same (vec![], P);
    opcode_f: frame(true, 0xF, b"") => same (vec![], P);
    ping_of_125: frame(true, opcode::PING, &[0x2A; 125])
        => same (vec![Event::Ping(vec![0x2A; 125])], Ending::Open);
    ping_of_126: frame(true, opcode::PING, &[0x2A; 126]) => same (vec![], P);
    fragmented_ping: frame(false, opcode::PING, b"") => same (vec![], P);
    stray_continuation: frame(true, opcode::CONTINUATION, b"x") => same (vec![], P);
    text_inside_fragmented_text: [
        frame(false, opcode::TEXT, b"a"),
        frame(true, opcode::TEXT, b"b"),
    ].concat() => same (vec![], P);
    overlong_slash: frame(true, opcode::TEXT, b"\xC0\xAF") => same (vec![], I);
    surrogate: frame(true, opcode::TEXT, b"a\xED\xA0\x80") => same (vec![], I);
    past_u10ffff_across_fragments: [
        frame(false, opcode::TEXT, b"a\xF4"),
        frame(false, opcode::CONTINUATION, b"\x90\x80\x80"),
    ].concat() => same (vec![], I);
    // Fail-fast: the first fragment is enough, though the message never ends.
    bad_utf8_in_unfinished_message: frame(false, opcode::TEXT, b"\xCE\xBA\xED\xA0\x80")
        => same (vec![], I);
    utf8_cut_at_message_end: [
        frame(false, opcode::TEXT, b"a"),
        frame(true, opcode::CONTINUATION, b"\xE2\x82"),
    ].concat() => same (vec![], I);
    utf8_split_across_fragments: [
        frame(false, opcode::TEXT, b"\xCE\xBA\xE1"),
        frame(false, opcode::CONTINUATION, b"\xBD"),
        frame(true, opcode::CONTINUATION, b"\xB9\xCF\x83\xCE\xBC\xCE\xB5"),
    ].concat() => same (vec![text("\u{3BA}\u{1F79}\u{3C3}\u{3BC}\u{3B5}")], Ending::Open);
    message_at_limit: frame(true, opcode::BINARY, &[7; MAX])
        => same (vec![Event::Binary(vec![7; MAX])], Ending::Open);
    message_past_limit: frame(true, opcode::BINARY, &[7; MAX + 1]) => same (vec![], B);
    fragments_past_limit: [
        frame(false, opcode::BINARY, &[7; 600]),
        frame(true, opcode::CONTINUATION, &[7; 401]),
    ].concat() => same (vec![], B);
    non_minimal_length: {
        let mut f = vec![0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 2];
        f.extend_from_slice(&MASK);
        f.extend_from_slice(&[0x37 ^ 1, 0xFA ^ 2]);
        f
    } => same (vec![Event::Binary(vec![1, 2])], Ending::Open);
    close_empty: frame(true, opcode::CLOSE, b"") => same (vec![Event::Close(None)], Ending::Closed);
    close_bye: close(1000, b"bye") => same (vec![closed_with(1000, "bye")], Ending::Closed);
    close_4999: close(4999, b"") => same (vec![closed_with(4999, "")], Ending::Closed);
    close_one_byte: frame(true, opcode::CLOSE, &[0x03]) => same (vec![], P);
    close_999: close(999, b"") => same (vec![], P);
    close_1004: close(1004, b"") => same (vec![], P);
    close_1005: close(1005, b"") => same (vec![], P);
    close_1006: close(1006, b"") => same (vec![], P);
    close_1015: close(1015, b"") => same (vec![], P);
    close_2999: close(2999, b"") => same (vec![], P);
    close_5000: close(5000, b"") => same (vec![], P);
    data_after_close_is_ignored: [
        close(1000, b""),
        frame(true, opcode::TEXT, b"late"),
        vec![0xFF, 0xFF],
    ].concat() => same (vec![closed_with(1000, "")], Ending::Closed);
    // By design: herald refuses a Close reason that is not UTF-8 as a protocol error (1002);
    // tungstenite reports a UTF-8 error (1007).
    close_reason_not_utf8: close(1000, b"\xFF") => herald (vec![], P);
    close_reason_not_utf8_tungstenite: close(1000, b"\xFF") => tungstenite (vec![], I);
    // By design: 1014 was registered with IANA after tungstenite 0.24's list was written.
    close_1014: close(BAD_GATEWAY, b"") => herald (vec![closed_with(1014, "")], Ending::Closed);
    close_1014_tungstenite: close(BAD_GATEWAY, b"") => tungstenite (vec![], P);
    // By design: RFC 6455 §5.2's top bit. herald fails at the header; tungstenite, its frame
    // limit off, waits for 2^63 bytes.
    length_top_bit: {
        let mut f = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1];
        f.extend_from_slice(&MASK);
        f
    } => herald (vec![], P);
    length_top_bit_tungstenite: {
        let mut f = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1];
        f.extend_from_slice(&MASK);
        f
    } => tungstenite (vec![], Ending::Open);
}

/// The comparison can fail: a stream where a decoder taking the wrong side would show up.
#[test]
fn comparison_tells_verdicts_apart() {
    let accepted = frame(true, opcode::TEXT, b"ok");
    let (ours, _) = herald_verdict(&accepted, MAX);
    let theirs = tungstenite_verdict(&frame(true, opcode::TEXT, b"\xFF"), MAX, 4096);
    assert_ne!(ours, theirs);
    // herald fails at the header of a control frame past 125 bytes that has not fully arrived;
    // completing it lets tungstenite agree.
    let partial = frame(true, opcode::PING, &[0; 200]);
    assert_eq!(compare(&partial[..20], MAX, 7), Ok(Comparison::Same));
}
