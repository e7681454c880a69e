//! A client that never reads: herald closes it with 4008 once more than `--max-queued-bytes`
//! waits for it, drops what waited, and a client beside it that reads misses nothing.

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Instant;

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::json;

use common::*;

/// Pushes of [`BIG`] bytes to the slow client's user: 12.8 MB, far more than the socket buffers
/// and the 1 MiB limit hold.
const BIG_PUSHES: usize = 200;
const BIG: usize = 64 * 1000;

fn subscribe_raw(c: &mut RawClient, user: &str) {
    let msg = json!({"event": "subscribe", "data": user}).to_string();
    c.send(&client_frame(true, 0x1, msg.as_bytes()));
    let (op, reply) = c.read_frame().expect("subscribed");
    assert_eq!(op, 0x1);
    assert!(String::from_utf8_lossy(&reply).contains("subscribed"));
}

#[test]
fn a_client_that_never_reads_is_closed_with_4008() {
    let srv = start_server();
    let mut slow = RawClient::connect(srv.public_addr);
    subscribe_raw(&mut slow, "slow");
    subscribe_raw(&mut slow, "everyone");
    let mut reader = client_for(&srv, "everyone");

    let big = "x".repeat(BIG);
    for i in 0..BIG_PUSHES {
        let (status, _) = post(
            &srv,
            "/v1/users/slow/notifications",
            json!({"type": "T", "message": big}),
        );
        assert_eq!(status, 202);
        // Beside it, a reader of another user's pushes gets every one, in order.
        push_to(&srv, "everyone", &i.to_string());
        let m = recv_json(&mut reader);
        assert_eq!(m["data"]["message"], i.to_string());
    }
    eventually("the slow client to be closed", || {
        metric(&srv, "herald_slow_consumers_total") == 1.0
    });
    assert_eq!(metric(&srv, "herald_closes_total{code=\"4008\"}"), 1.0);
    // What waited was dropped: the slow client, reading at last, finds what its socket buffers
    // held, then the close frame.
    assert_eq!(slow.expect_close(), 4008);
    // Pushes to its user now reach nobody; the reader is unaffected.
    assert_eq!(push_to(&srv, "slow", "gone"), 0);
    assert_eq!(push_to(&srv, "everyone", "still here"), 1);
    assert_eq!(recv_json(&mut reader)["data"]["message"], "still here");
}

/// Readers beside the never-reader in the crowd test, and the broadcasts each must get in order.
const READERS: usize = 1_000;
const BROADCASTS: u64 = 10_000;
/// Each broadcast's frame is under this: `{"event":"notification","data":{"seq":N,"timestamp":
/// "<RFC 3339 ms>"},"offset":"<epoch>-<seq>"}` and a 2-byte header.
const BROADCAST_FRAME_MAX: u64 = 140;
/// `--max-queued-bytes` for this test.
const MAX_QUEUED: u64 = 2 * 1024 * 1024;
/// All broadcasts together are less than `--max-queued-bytes`, so a reader cannot be closed as a
/// slow consumer however far this test's one reading thread falls behind: every reader getting
/// every broadcast does not depend on how fast the test reads.
const _: () = assert!(BROADCASTS * BROADCAST_FRAME_MAX < MAX_QUEUED);
/// Beside every [`SLOW_EVERY`]th broadcast, a push of [`BIG`] bytes to the never-reader's own
/// user: 12.8 MB in all, more than herald's send buffer (at most `net.ipv4.tcp_wmem`'s 4 MiB),
/// the never-reader's 4 KiB receive buffer and the 2 MiB limit hold together. So the never-reader
/// is closed whatever the timing, while no reader gets more than the broadcasts.
const SLOW_EVERY: u64 = 50;
/// herald's peak resident memory must stay under this: a generous bound, a tenth of what
/// queueing every push for the never-reader (and a copy per socket) would cost.
const RSS_BOUND: u64 = 512 * 1024 * 1024;

/// The first bytes of every broadcast's payload; the sequence number follows.
const SEQ_PREFIX: &[u8] = b"{\"event\":\"notification\",\"data\":{\"seq\":";

/// One reader's side of the crowd test: the bytes not yet parsed, and the sequence number it
/// expects next.
struct Reader {
    stream: MioStream,
    buf: Vec<u8>,
    next: u64,
}

impl Reader {
    /// Parses every whole frame in `buf`: each must be the next broadcast.
    fn take_frames(&mut self, who: usize) {
        let mut at = 0;
        loop {
            let rest = &self.buf[at..];
            if rest.len() < 2 {
                break;
            }
            let (header, len) = match rest[1] {
                126 if rest.len() >= 4 => (4, u16::from_be_bytes([rest[2], rest[3]]) as usize),
                126 => break,
                n if n < 126 => (2, n as usize),
                n => panic!("reader {who}: unexpected length byte {n:#x}"),
            };
            if rest.len() < header + len {
                break;
            }
            assert_eq!(rest[0], 0x81, "reader {who}: a whole text frame");
            assert!(
                (header + len) as u64 <= BROADCAST_FRAME_MAX,
                "reader {who}: {len} bytes"
            );
            let payload = &rest[header..header + len];
            let seq = payload
                .strip_prefix(SEQ_PREFIX)
                .map(|p| {
                    p.iter()
                        .take_while(|b| b.is_ascii_digit())
                        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
                })
                .unwrap_or_else(|| panic!("reader {who}: {:?}", String::from_utf8_lossy(payload)));
            assert_eq!(
                seq, self.next,
                "reader {who}: broadcasts in order, none missing"
            );
            self.next += 1;
            at += header + len;
        }
        self.buf.drain(..at);
    }
}

/// Reads every reader from this one thread until each has all [`BROADCASTS`], in order.
fn read_every_broadcast(streams: Vec<TcpStream>) {
    let mut poll = Poll::new().unwrap();
    let mut readers: Vec<Reader> = streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.set_nonblocking(true).unwrap();
            let mut stream = MioStream::from_std(s);
            poll.registry()
                .register(&mut stream, Token(i), Interest::READABLE)
                .unwrap();
            Reader {
                stream,
                buf: Vec::new(),
                next: 0,
            }
        })
        .collect();
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut done = 0;
    while done < readers.len() {
        poll.poll(&mut events, Some(PATIENCE)).unwrap();
        assert!(
            !events.is_empty(),
            "nothing to read for {PATIENCE:?}; {done} of {READERS} readers have every broadcast"
        );
        for event in events.iter() {
            let who = event.token().0;
            let r = &mut readers[who];
            // Edge-triggered: read until the socket is empty.
            loop {
                match r.stream.read(&mut chunk) {
                    Ok(0) => panic!("reader {who} closed after {} broadcasts", r.next),
                    Ok(n) => r.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => panic!("reader {who}: {e}"),
                }
            }
            let before = r.next;
            r.take_frames(who);
            assert!(
                r.next <= BROADCASTS,
                "reader {who}: more than was broadcast"
            );
            if before < BROADCASTS && r.next == BROADCASTS {
                done += 1;
            }
        }
    }
}

/// Reads one frame's opcode and payload, or the error that ended the connection.
fn next_frame(r: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h)?;
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok((h[0] & 0x0F, payload))
}

/// Writes every push, pipelined on one keep-alive control connection, and checks each answer is
/// 202. Pipelining hands herald the pushes as fast as it takes them, in order.
fn push_everything(control: SocketAddr) {
    let stream = TcpStream::connect(control).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut w = stream.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let big = json!({"type": "BIG", "message": "x".repeat(BIG)}).to_string();
        let mut out = Vec::with_capacity(256 * 1024);
        let mut requests = 0u64;
        let mut post = |out: &mut Vec<u8>, path: &str, body: &str| {
            write!(
                out,
                "POST {path} HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            requests += 1;
        };
        for seq in 0..BROADCASTS {
            let body = json!({"notification": {"seq": seq}}).to_string();
            post(&mut out, "/v1/broadcast", &body);
            if seq % SLOW_EVERY == 0 {
                post(&mut out, "/v1/users/slow/notifications", &big);
            }
            if out.len() >= 128 * 1024 {
                w.write_all(&out).unwrap();
                out.clear();
            }
        }
        w.write_all(&out).unwrap();
        requests
    });
    let expected = BROADCASTS + BROADCASTS.div_ceil(SLOW_EVERY);
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    for i in 0..expected {
        line.clear();
        r.read_line(&mut line).expect("a status line");
        assert!(line.starts_with("HTTP/1.1 202"), "answer {i}: {line:?}");
        let mut length = 0;
        loop {
            line.clear();
            r.read_line(&mut line).expect("a header line");
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("a length");
                }
            }
        }
        let mut body = vec![0u8; length];
        r.read_exact(&mut body).expect("the body");
    }
    assert_eq!(writer.join().unwrap(), expected);
}

/// One client that never reads, beside 1,000 that read 10,000 broadcasts, herald running as its
/// own process so its memory is its own: the never-reader is closed with 4008, every reader gets
/// every broadcast in order, and herald's peak memory stays bounded.
#[test]
fn one_client_that_never_reads_beside_a_thousand_readers() {
    let herald = spawn_herald(&[
        "--ping-interval",
        "10m",
        "--client-rate",
        "0",
        "--max-connections-per-ip",
        "0",
        "--connection-rate-per-ip",
        "0",
        "--user-rate",
        "0",
        "--max-queued-bytes",
        &MAX_QUEUED.to_string(),
    ]);
    let addr = herald.public_addr;
    let mut slow = RawClient::connect_small_window(addr, 4096);
    subscribe_raw(&mut slow, "slow");
    let readers: Vec<TcpStream> = (0..READERS)
        .map(|_| RawClient::connect(addr).stream)
        .collect();

    let started = Instant::now();
    let reading = thread::spawn(move || read_every_broadcast(readers));
    push_everything(herald.control_addr);
    let pushed = started.elapsed();
    reading.join().unwrap();
    let delivered = started.elapsed();

    // The never-reader, reading at last, finds what its buffers held, then close 4008 (or only
    // the end of the connection, when the close frame did not fit).
    let mut slow = BufReader::new(slow.stream);
    loop {
        match next_frame(&mut slow) {
            Ok((0x8, payload)) => {
                assert_eq!(payload.get(..2), Some(&4008u16.to_be_bytes()[..]));
                break;
            }
            Ok(_) => {}
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                    ),
                    "the never-reader is not closed: {e}"
                );
                break;
            }
        }
    }
    assert!(metric_at(herald.control_addr, "herald_slow_consumers_total") >= 1.0);
    let rss = herald.peak_rss();
    eprintln!(
        "{READERS} readers x {BROADCASTS} broadcasts: pushed in {pushed:?}, all delivered in \
         {delivered:?}; herald VmHWM {:.1} MiB",
        rss as f64 / (1024.0 * 1024.0)
    );
    assert!(rss < RSS_BOUND, "herald peaked at {rss} bytes");
}
