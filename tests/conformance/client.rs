//! A raw WebSocket client for the conformance cases: it writes any frame (masked or not, any
//! RSV bits, any opcode, any length encoding) in any TCP chops, and reads the server's frames,
//! its close and the end of the TCP connection. Frames are built here rather than with herald's
//! own encoder, so that the cases do not lean on the code they test.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::thread;
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use herald::server::Running;

use crate::common::{start_server_with, PATIENCE};

/// Where the conformance server echoes.
pub const ECHO: &str = "/echo";

/// The time herald has to start the close after the offending bytes (what Autobahn's
/// `killAfter(1)` gives an implementation).
pub const CLOSE_WITHIN: Duration = Duration::from_secs(1);

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest message the conformance server takes: Autobahn's largest, 16 MiB (cases 9.1.6 and
/// 9.2.6).
pub const MAX_MESSAGE: usize = 16 << 20;
/// Most frames per message: case 9.3.1 sends 4 MiB in 64-byte fragments, 65536 of them.
/// herald's default (`--max-fragments 1024`) refuses that message with 1009 on purpose.
pub const MAX_FRAGMENTS: u32 = 1 << 16;

/// A gateway with the echo route on and limits wide enough for every Autobahn case: 16 MiB
/// messages, 65536 fragments, a write queue that holds a 16 MiB echo, and every message worth
/// compressing compressed (so that groups 12 and 13 see the compressor at every size).
pub fn server() -> Running {
    start_server_with(|c| {
        c.echo_path = Some(ECHO.to_owned());
        c.max_message = MAX_MESSAGE;
        c.max_fragments = MAX_FRAGMENTS;
        c.max_queued_bytes = 4 * MAX_MESSAGE;
        c.deflate_threshold = 0;
    })
}

/// A client frame: FIN, RSV (`0b0xyz`, x being RSV1, Autobahn's `rsv` argument), opcode, and
/// the payload, masked with a fresh key.
pub fn frame_rsv(fin: bool, rsv: u8, op: u8, payload: &[u8]) -> Vec<u8> {
    encode(fin, rsv, op, payload, Some(next_mask()))
}

/// A final, masked, RSV-clear frame.
pub fn frame(op: u8, payload: &[u8]) -> Vec<u8> {
    frame_rsv(true, 0, op, payload)
}

/// A masked frame with FIN as given: a fragment.
pub fn frag(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    frame_rsv(fin, 0, op, payload)
}

/// A close frame with `code` and `reason` as bytes (which need not be UTF-8).
pub fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(reason);
    frame(OP_CLOSE, &body)
}

/// Encodes a frame with the minimal length form; `mask: None` sends it unmasked.
pub fn encode(fin: bool, rsv: u8, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let b0 = (u8::from(fin) << 7) | ((rsv & 0x07) << 4) | (op & 0x0F);
    let mut out = vec![b0];
    let m = if mask.is_some() { 0x80 } else { 0x00 };
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n @ 126..=0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked frame header declaring a 64-bit `len` (any value, top bit included), with no
/// payload behind it.
pub fn header64(b0: u8, len: u64) -> Vec<u8> {
    let mut out = vec![b0, 0x80 | 127];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&next_mask());
    out
}

/// Masking keys from a fixed sequence: varied (a zero key would hide a masking bug) and the
/// same on every run.
fn next_mask() -> [u8; 4] {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u32> = const { Cell::new(0x9E37_79B9) });
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s.set(x);
        x.to_be_bytes()
    })
}

/// `len` bytes of `pattern` repeated, as Autobahn's `payload_len` builds large payloads.
pub fn repeat(pattern: &[u8], len: usize) -> Vec<u8> {
    pattern.iter().copied().cycle().take(len).collect()
}

/// How a case's bytes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// All frames in one write.
    Whole,
    /// One write per frame (Autobahn's `sync = True`).
    PerFrame,
    /// Writes of at most this many bytes (Autobahn's `chopsize`).
    Chop(usize),
}

/// A pause between small writes, so that the server very likely reads each on its own rather
/// than finding them coalesced in its socket buffer. The cases never depend on it: the same
/// answer is due however the bytes arrive.
const CHOP_PAUSE: Duration = Duration::from_millis(1);
/// Above this many writes the pause is left out, to keep large chopped cases fast.
const MAX_PAUSED_WRITES: usize = 512;

/// What the server sent, one whole message or control frame at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame: its code when it has one, and its reason.
    Close(Option<u16>, Vec<u8>),
}

/// Something expected back: an echoed message or a pong.
pub type Reply = Msg;

pub fn text(payload: impl AsRef<[u8]>) -> Reply {
    Msg::Text(payload.as_ref().to_vec())
}

pub fn binary(payload: impl AsRef<[u8]>) -> Reply {
    Msg::Binary(payload.as_ref().to_vec())
}

pub fn pong(payload: impl AsRef<[u8]>) -> Reply {
    Msg::Pong(payload.as_ref().to_vec())
}

/// How a case ends.
#[derive(Debug, Clone, Copy)]
pub enum End {
    /// The client closes with 1000 and the server answers 1000, then ends the TCP connection
    /// (Autobahn: `closedByMe`, clean, code 1000).
    Clean,
    /// The server fails the connection first, with one of these codes, within [`CLOSE_WITHIN`]
    /// of the last write (Autobahn: not `closedByMe`).
    Fail(&'static [u16]),
}

/// One connection of a case.
pub struct Ws {
    pub stream: TcpStream,
    /// The handshake response head.
    pub head: String,
    /// permessage-deflate was agreed: server frames may have RSV1 set.
    pub deflate: bool,
    /// Echoes that arrived compressed.
    pub compressed: usize,
}

impl Ws {
    /// Opens a WebSocket on the echo route.
    pub fn connect(addr: SocketAddr) -> Ws {
        Ws::connect_with(addr, "")
    }

    /// Opens a WebSocket on the echo route with `extra` header lines (each ending in CRLF);
    /// the server must accept it.
    pub fn connect_with(addr: SocketAddr, extra: &str) -> Ws {
        let (ws, status) = Ws::request(addr, ECHO, extra);
        assert_eq!(status, 101, "{}", ws.head);
        ws
    }

    /// Sends an upgrade request for `path`; returns the client and the response status.
    pub fn request(addr: SocketAddr, path: &str, extra: &str) -> (Ws, u16) {
        let mut stream = TcpStream::connect(addr).expect("tcp connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             {extra}\r\n"
        );
        stream.write_all(req.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("a response head");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).expect("an ASCII head");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        if status == 101 {
            // RFC 6455 §1.3's example key and its accept value.
            assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        }
        let deflate = extensions(&head).is_some_and(|e| e.starts_with("permessage-deflate"));
        let ws = Ws {
            stream,
            head,
            deflate,
            compressed: 0,
        };
        (ws, status)
    }

    /// Writes `bytes` as `how` says; panics if the server is gone.
    pub fn send(&mut self, bytes: &[u8], how: How) {
        self.try_send(bytes, how).expect("the server reads");
    }

    /// Writes `bytes` as `how` says; an error means the server closed the connection already.
    pub fn try_send(&mut self, bytes: &[u8], how: How) -> std::io::Result<()> {
        match how {
            How::Whole | How::PerFrame => self.stream.write_all(bytes),
            How::Chop(n) => {
                let pause = bytes.len().div_ceil(n) <= MAX_PAUSED_WRITES;
                for chunk in bytes.chunks(n) {
                    self.stream.write_all(chunk)?;
                    if pause {
                        thread::sleep(CHOP_PAUSE);
                    }
                }
                Ok(())
            }
        }
    }

    /// Writes `frames` as `how` says.
    pub fn send_frames(&mut self, frames: &[Vec<u8>], how: How) -> std::io::Result<()> {
        match how {
            How::Whole => self.stream.write_all(&frames.concat()),
            How::PerFrame => {
                for f in frames {
                    self.stream.write_all(f)?;
                    thread::sleep(CHOP_PAUSE);
                }
                Ok(())
            }
            How::Chop(_) => frames.iter().try_for_each(|f| self.try_send(f, how)),
        }
    }

    /// Reads one server frame: (FIN, RSV, opcode, payload), or `None` at the end of the stream.
    pub fn read_frame(&mut self) -> Option<(bool, u8, u8, Vec<u8>)> {
        let mut h = [0u8; 2];
        match self.stream.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if is_end(&e) => return None,
            Err(e) => panic!("reading a frame: {e}"),
        }
        // RFC 6455 §5.1: "A server MUST NOT mask any frames that it sends to the client."
        assert_eq!(h[1] & 0x80, 0, "a masked server frame");
        let len = match h[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).expect("a length");
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).expect("a length");
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).expect("a length that fits")];
        self.stream
            .read_exact(&mut payload)
            .expect("the whole payload");
        Some((h[0] & 0x80 != 0, (h[0] >> 4) & 0x07, h[0] & 0x0F, payload))
    }

    /// Reads one whole message or control frame, reassembling fragments and inflating a
    /// compressed message; `None` at the end of the stream. Checks what a client must: no RSV
    /// bit but RSV1 on a compressed message's first frame, known opcodes, UTF-8 text.
    pub fn read_msg(&mut self) -> Option<Msg> {
        let (mut fin, rsv, op, mut payload) = self.read_frame()?;
        assert!(
            rsv == 0 || (rsv == 0b100 && self.deflate && (op == OP_TEXT || op == OP_BINARY)),
            "RSV {rsv:#05b} on opcode {op:#x}"
        );
        let compressed = rsv == 0b100;
        match op {
            OP_CLOSE | OP_PING | OP_PONG => {
                assert!(fin, "a fragmented control frame");
                assert!(payload.len() <= 125, "a control frame over 125 bytes");
                return Some(match op {
                    OP_PING => Msg::Ping(payload),
                    OP_PONG => Msg::Pong(payload),
                    _ => close_msg(payload),
                });
            }
            OP_TEXT | OP_BINARY => {}
            other => panic!("the server sent opcode {other:#x}"),
        }
        while !fin {
            let (f, rsv, next_op, more) = self.read_frame().expect("the rest of a message");
            assert_eq!(rsv, 0, "RSV on a continuation");
            assert_eq!(next_op, OP_CONT, "a frame between fragments");
            payload.extend_from_slice(&more);
            fin = f;
        }
        if compressed {
            self.compressed += 1;
            payload = inflate(&payload);
        }
        Some(if op == OP_TEXT {
            assert!(
                std::str::from_utf8(&payload).is_ok(),
                "text that is not UTF-8"
            );
            Msg::Text(payload)
        } else {
            Msg::Binary(payload)
        })
    }

    /// Reads the next message, which must be `want`.
    pub fn expect(&mut self, want: &Reply) {
        match self.read_msg() {
            Some(got) if got == *want => {}
            Some(got) => panic!("expected {}, got {}", show(want), show(&got)),
            None => panic!("expected {}, the connection ended", show(want)),
        }
    }

    /// Closes with 1000 and expects Autobahn's clean close: the server answers with 1000 (or
    /// one of `codes`), sends nothing after it, and ends the TCP connection first.
    pub fn close_clean(&mut self) {
        self.close_with(&close_frame(1000, b""), &[1000]);
    }

    /// Sends `close` and expects the server's close with one of `codes` (`0`: an empty close),
    /// then nothing but the end of the connection.
    pub fn close_with(&mut self, close: &[u8], codes: &[u16]) {
        self.send(close, How::Whole);
        self.expect_close(codes, Instant::now());
    }

    /// Reads the server's close, which must carry one of `codes` (`0`: an empty close) and come
    /// within [`CLOSE_WITHIN`] of `since`, then nothing but the end of the connection.
    pub fn expect_close(&mut self, codes: &[u16], since: Instant) {
        let got = self.read_msg();
        let waited = since.elapsed();
        match got {
            Some(Msg::Close(code, _)) => {
                let code = code.unwrap_or(0);
                assert!(codes.contains(&code), "close {code}, expected {codes:?}");
            }
            Some(other) => panic!("expected a close, got {}", show(&other)),
            None => panic!("expected a close, the connection ended"),
        }
        assert!(waited <= CLOSE_WITHIN, "the close came after {waited:?}");
        self.expect_end();
    }

    /// Expects the server to fail the connection: its close frame, with one of `codes`, comes
    /// within [`CLOSE_WITHIN`] of `since` (when the offending bytes were written) and before
    /// anything else; it is answered, and nothing but the end of the connection follows.
    pub fn expect_fail(&mut self, codes: &[u16], since: Instant) {
        let got = self.read_msg();
        let waited = since.elapsed();
        match got {
            Some(Msg::Close(Some(code), reason)) => {
                assert!(
                    codes.contains(&code),
                    "close {code} ({}), expected {codes:?}",
                    String::from_utf8_lossy(&reason)
                );
            }
            Some(other) => panic!("expected a close with {codes:?}, got {}", show(&other)),
            None => panic!("expected a close with {codes:?}, the connection ended"),
        }
        assert!(
            waited <= CLOSE_WITHIN,
            "the close came {waited:?} after the offending bytes"
        );
        // RFC 6455 §5.5.1: the endpoint receiving a close answers it; the server may already be
        // gone, so the write may fail.
        let _ = self.stream.write_all(&close_frame(1000, b""));
        self.expect_end();
    }

    /// Reads to the end of the stream: nothing may come, and the server must end it.
    pub fn expect_end(&mut self) {
        let mut rest = Vec::new();
        match self.stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if is_end(&e) => {}
            Err(e) => panic!("waiting for the server to end the connection: {e}"),
        }
        assert!(rest.is_empty(), "bytes after the close frame: {rest:02x?}");
    }

    /// Sends a ping and reads its pong: proof the server took everything before it without
    /// failing the connection.
    pub fn probe(&mut self, payload: &[u8]) {
        self.send(&frame(OP_PING, payload), How::Whole);
        self.expect(&pong(payload));
    }
}

/// The standard shape of a case: open a connection, write `frames` as `how` says, read the
/// `replies` in order, then end as `end` says.
pub fn run(addr: SocketAddr, frames: &[Vec<u8>], how: How, replies: &[Reply], end: End) {
    let mut ws = Ws::connect(addr);
    let sent = ws.send_frames(frames, how);
    let since = Instant::now();
    if let End::Clean = end {
        sent.expect("the server reads");
    }
    for want in replies {
        ws.expect(want);
    }
    match end {
        End::Clean => ws.close_clean(),
        End::Fail(codes) => ws.expect_fail(codes, since),
    }
}

/// Close codes a failed connection may carry.
pub const PROTOCOL_ERROR: End = End::Fail(&[1002]);
pub const INVALID_PAYLOAD: End = End::Fail(&[1007]);
pub const TOO_BIG: End = End::Fail(&[1009]);

/// A table of cases of the standard shape ([`run`]):
/// `"id" => [frames] how => [replies] end;`
macro_rules! cases {
    ($tally:ident, $addr:ident;
     $( $id:literal => [$($frame:expr),* $(,)?] $how:expr => [$($reply:expr),* $(,)?] $end:expr; )*) => {
        $( $tally.case($id, || run($addr, &[$($frame),*], $how, &[$($reply),*], $end)); )*
    };
}

/// Whether a read error means the server ended the connection.
fn is_end(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
    )
}

fn close_msg(payload: Vec<u8>) -> Msg {
    match payload.as_slice() {
        [] => Msg::Close(None, Vec::new()),
        [_] => panic!("a close frame with a one-byte body"),
        [hi, lo, reason @ ..] => {
            assert!(
                std::str::from_utf8(reason).is_ok(),
                "a close reason not UTF-8"
            );
            Msg::Close(Some(u16::from_be_bytes([*hi, *lo])), reason.to_vec())
        }
    }
}

/// A message for an assertion: its kind and length, and its start.
fn show(m: &Msg) -> String {
    let (kind, p) = match m {
        Msg::Text(p) => ("text", p),
        Msg::Binary(p) => ("binary", p),
        Msg::Ping(p) => ("ping", p),
        Msg::Pong(p) => ("pong", p),
        Msg::Close(code, p) => return format!("close {code:?} {:?}", String::from_utf8_lossy(p)),
    };
    let head = &p[..p.len().min(24)];
    format!("{kind} of {} bytes {head:02x?}", p.len())
}

/// The `Sec-WebSocket-Extensions` value of a response head, if any.
pub fn extensions(head: &str) -> Option<&str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| v.trim())
    })
}

/// RFC 7692 §7.2.2: the receiver appends 0x00 0x00 0xff 0xff and inflates.
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0x00, 0x00, 0xFF, 0xFF]);
    // A fresh inflater per message: herald agreed server_no_context_takeover, so each of its
    // messages must inflate on its own.
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(payload.len() * 4 + 64);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(1024));
        }
        let consumed = d.total_in() as usize;
        let status = d
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .expect("the server's compressed message inflates");
        // All input taken with room to spare in `out`: nothing is pending in the inflater.
        if status == Status::StreamEnd
            || (d.total_in() as usize == input.len() && out.len() < out.capacity())
        {
            return out;
        }
    }
}

/// RFC 7692 §7.2.1: compresses one message on its own (client_no_context_takeover) and drops
/// the final 0x00 0x00 0xff 0xff.
pub fn deflate(payload: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    loop {
        let consumed = c.total_in() as usize;
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(1024));
        }
        c.compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
            .expect("compression");
        if c.total_in() as usize == payload.len() && out.ends_with(&[0x00, 0x00, 0xFF, 0xFF]) {
            break;
        }
    }
    out.truncate(out.len() - 4);
    out
}

/// Cases run one by one; a failing case is recorded with its message rather than hiding the
/// cases after it. [`Tally::finish`] prints the group's line and fails the test if any failed.
pub struct Tally {
    group: &'static str,
    passed: usize,
    failed: Vec<(String, String)>,
    started: Instant,
}

impl Tally {
    pub fn new(group: &'static str) -> Tally {
        Tally {
            group,
            passed: 0,
            failed: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Runs case `id`.
    pub fn case(&mut self, id: impl Into<String>, f: impl FnOnce()) {
        let id = id.into();
        match panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(()) => self.passed += 1,
            Err(e) => {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.failed.push((id, why));
            }
        }
    }

    pub fn finish(self) {
        let total = self.passed + self.failed.len();
        println!(
            "{}: {}/{} cases pass ({:.1?})",
            self.group,
            self.passed,
            total,
            self.started.elapsed()
        );
        for (id, why) in &self.failed {
            println!("  {id} FAILED: {why}");
        }
        assert!(
            self.failed.is_empty(),
            "{}: {} of {total} cases failed: {:?}",
            self.group,
            self.failed.len(),
            self.failed
        );
    }
}
