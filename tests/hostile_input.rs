//! Hostile input: what a client can send to hurt the gateway or its other clients, and what
//! herald answers. Each test opens with the attack and the answer herald owes.
//!
//! The decompression bomb (a small compressed message inflating past `--max-message`, closed
//! with 1009 before it is inflated in full) is covered in `tests/deflate.rs`.

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use common::*;

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONT: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Whether a read ended the way a closed connection ends: EOF, or a reset.
fn closed(read: &io::Result<usize>) -> bool {
    match read {
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
    }
}

/// Slowloris: a client trickles its request head a byte at a time, steadily enough that no
/// read ever waits long, to hold a connection and its buffer for as long as it likes. herald
/// must close it once `--handshake-timeout` has passed since it connected, however recently the
/// last byte came, and count it in `herald_handshake_timeouts_total`.
#[test]
fn slowloris_is_closed_at_the_handshake_timeout() {
    let srv = start_server_with(|c| c.handshake_timeout = Duration::from_secs(1));
    let addr = srv.public_addr;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_nodelay(true).unwrap();
    // A head that never ends: its closing blank line is never sent, and at a byte every 300 ms
    // it would take longer than the test waits anyway.
    let request = upgrade_request(addr, "/ws");
    let head = request.strip_suffix("\r\n").unwrap().to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let mut w = s.try_clone().unwrap();
        let stop = stop.clone();
        thread::spawn(move || {
            for b in head.bytes() {
                if stop.load(Ordering::Relaxed) || w.write_all(&[b]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    assert!(
        closed(&read),
        "{read:?}: herald did not close the connection"
    );
    assert!(
        answer.is_empty(),
        "no answer to a head that never ended: {answer:?}"
    );
    assert_eq!(metric(&srv, "herald_handshake_timeouts_total"), 1.0);
}

/// Sends `request` as is, never reading until it is all sent, then reads the answer until the
/// server closes (a reset after the answer is fine).
fn answer_to(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    // herald may answer and stop reading before the flood is all sent.
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf)
}

fn assert_json_error(head: &str, body: &str) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {head}\n\n{body}"));
    assert!(v["error"].is_string(), "{body}");
}

/// Header flood, by size: a request head that keeps growing and never ends, so that a server
/// waiting for its end buffers without bound. herald must answer 431 once the head passes
/// `--max-handshake` bytes, without waiting for an end that never comes.
#[test]
fn a_head_over_max_handshake_is_answered_431() {
    let srv = start_server_with(|c| c.max_handshake = 4096);
    let mut flood = String::from("GET /ws HTTP/1.1\r\nHost: x\r\n");
    for i in 0.. {
        if flood.len() > 3 * 4096 {
            break;
        }
        flood += &format!("X-Flood-{i}: {}\r\n", "a".repeat(100));
    }
    let (status, head, body) = answer_to(srv.public_addr, flood.as_bytes());
    assert_eq!(status, 431, "{head}");
    assert_json_error(&head, &body);
}

/// Header flood, by count: a short head of many tiny header lines, each one more entry a parser
/// must hold. herald must answer 431 to more than 64 header lines, however few bytes they take.
#[test]
fn more_than_64_header_lines_are_answered_431() {
    let srv = start_server();
    let mut request = String::from(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    for i in 0..65 {
        request += &format!("X-{i}: y\r\n");
    }
    request += "\r\n";
    assert!(
        request.len() < 1024,
        "small in bytes: only the count is too large"
    );
    let (status, head, body) = answer_to(srv.public_addr, request.as_bytes());
    assert_eq!(status, 431, "{head}");
    assert_json_error(&head, &body);
}

/// Fragment flood: a text message opened with FIN=0 and followed by thousands of empty
/// continuation frames. None of them adds a byte, so `--max-message` never trips, while each
/// costs the server a frame's work and a message that never ends holds its state forever.
/// herald must close with 1009 once one message has more than `--max-fragments` frames
/// (default 1024).
#[test]
fn a_fragment_flood_is_closed_with_1009() {
    let srv = start_server();
    let mut c = RawClient::connect(srv.public_addr);
    let mut flood = client_frame(false, TEXT, b"a");
    for _ in 0..5_000 {
        flood.extend_from_slice(&client_frame(false, CONT, b""));
    }
    c.send(&flood);
    assert_eq!(c.expect_close(), 1009);
    assert_eq!(metric(&srv, "herald_closes_total{code=\"1009\"}"), 1.0);
}

/// Pings sent by the ping flood, each carrying its index as 8 big-endian bytes.
const FLOOD_PINGS: u64 = 1_000_000;

/// Ping flood from a client that never reads: every ping asks for a pong, so a server that
/// queues one pong per ping grows the queue of a client that does not read until it is closed as
/// a slow consumer, or grows without bound. herald must keep at most one pong pending per
/// connection, a newer ping's pong replacing an unsent older one (RFC 6455 §5.5.3 lets an
/// endpoint answer only the most recent ping), count the replaced ones in
/// `herald_pongs_dropped_total`, and so never close the client for its pongs: once it reads,
/// the last pong it gets answers its last ping. (The per-client rate limit is off here, as in
/// every test that does not turn it on.)
#[test]
fn a_ping_flood_from_a_client_that_never_reads_gets_only_the_latest_pong() {
    let srv = start_server();
    // A small window, so that the pongs the kernel buffers before herald's writes block are few
    // next to the pings.
    let mut c = RawClient::connect_small_window(srv.public_addr, 4096);
    // herald reads whatever its writes do, so the writer cannot deadlock against a server that
    // keeps at most one pong waiting; against one that closes the client, its writes fail and
    // it stops.
    let mut w = c.stream.try_clone().unwrap();
    let writer = thread::spawn(move || -> io::Result<()> {
        const PER_WRITE: u64 = 10_000;
        let mut batch = Vec::with_capacity(PER_WRITE as usize * 14);
        for start in (0..FLOOD_PINGS).step_by(PER_WRITE as usize) {
            batch.clear();
            for i in start..(start + PER_WRITE).min(FLOOD_PINGS) {
                batch.extend_from_slice(&client_frame(true, PING, &i.to_be_bytes()));
            }
            w.write_all(&batch)?;
        }
        Ok(())
    });
    let written = writer.join().unwrap();
    assert!(written.is_ok(), "herald stopped the flood: {written:?}");

    let mut pongs = 0u64;
    let mut last: Option<u64> = None;
    loop {
        match c.read_frame() {
            Some((PONG, payload)) => {
                let n = u64::from_be_bytes(payload.as_slice().try_into().expect("8-byte pong"));
                assert!(
                    last < Some(n),
                    "pongs answer later pings: {n} after {last:?}"
                );
                last = Some(n);
                pongs += 1;
                if n == FLOOD_PINGS - 1 {
                    break;
                }
            }
            Some((CLOSE, payload)) => panic!(
                "closed after {pongs} pongs (last {last:?}) with {:?}",
                payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]))
            ),
            Some((op, payload)) => panic!("unexpected frame {op:#x} {payload:?}"),
            None => panic!("no pong for the last ping; {pongs} pongs, the last answering {last:?}"),
        }
    }
    eprintln!("{FLOOD_PINGS} pings, {pongs} pongs");
    // What the kernel buffers before herald's writes would block: at most its send buffer's
    // ceiling (`net.ipv4.tcp_wmem`, 4 MiB by default: some 400,000 pongs of 10 bytes) and the
    // 4 KiB window. Every other pong was replaced before it was sent.
    assert!(
        pongs < FLOOD_PINGS / 2,
        "{pongs} pongs for {FLOOD_PINGS} pings"
    );
    assert_eq!(metric(&srv, "herald_slow_consumers_total"), 0.0);
    assert!(metric(&srv, "herald_pongs_dropped_total") > 0.0);
    // Still open, still answered.
    c.send(&client_frame(true, PING, b"still"));
    assert_eq!(c.read_frame(), Some((PONG, b"still".to_vec())));
}

/// Ping flood with the per-client rate limit on: pings count as messages, so a client sending
/// them faster than `--client-rate` (burst `--client-burst`) gets an error event `rate limited`
/// at its first dropped message, and close 1008 once `--client-burst` messages in a row have
/// been dropped.
#[test]
fn a_ping_flood_past_the_client_rate_limit_is_closed_with_1008() {
    let srv = start_server_with(|c| {
        c.client_rate = 10;
        c.client_burst = 20;
    });
    let mut c = RawClient::connect(srv.public_addr);
    // Far more than the burst, the dropped burst after it, and what a tenth of a second
    // refills, sent at once.
    let mut flood = Vec::new();
    for i in 0u64..200 {
        flood.extend_from_slice(&client_frame(true, PING, &i.to_be_bytes()));
    }
    c.send(&flood);
    let mut errors = Vec::new();
    let code = loop {
        match c.read_frame() {
            Some((PONG, _)) => {}
            Some((TEXT, payload)) => {
                errors.push(serde_json::from_slice::<Value>(&payload).expect("a JSON event"))
            }
            Some((CLOSE, payload)) => {
                assert!(payload.len() >= 2, "close frame carries a code");
                break u16::from_be_bytes([payload[0], payload[1]]);
            }
            Some((op, payload)) => panic!("unexpected frame {op:#x} {payload:?}"),
            None => panic!("no close frame; events {errors:?}"),
        }
    };
    assert_eq!(
        errors,
        [json!({"event": "error", "data": {"message": "rate limited"}})]
    );
    assert_eq!(code, 1008);
    assert!(metric(&srv, "herald_rate_limited_total{limit=\"client\"}") >= 1.0);
    assert_eq!(metric(&srv, "herald_closes_total{code=\"1008\"}"), 1.0);
}

/// A Socket.IO client over the Engine.IO WebSocket transport, past its open packet and its
/// CONNECT to `/`.
fn socketio_client(srv: &herald::server::Running) -> RawClient {
    let (mut c, head) =
        RawClient::open(srv.public_addr, "/socket.io/?EIO=4&transport=websocket", "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (op, open) = c.read_frame().expect("the open packet");
    assert_eq!((op, open.first()), (TEXT, Some(&b'0')), "{open:?}");
    c.send(&client_frame(true, TEXT, b"40"));
    let (op, connect) = c.read_frame().expect("the CONNECT answer");
    assert!(op == TEXT && connect.starts_with(b"40{"), "{connect:?}");
    c
}

/// Socket.IO attachment flood, by announcement: a BINARY_EVENT announcing more attachments than
/// `--max-attachments` (10), so that the server reserves room for, and waits for, buffers that
/// may never come. herald must refuse the packet at its header and close the session: today the
/// WebSocket gets close 1002 (a protocol error) and the session is gone.
#[test]
fn socketio_announcing_too_many_attachments_is_closed() {
    let srv = start_server();
    let mut c = socketio_client(&srv);
    let packet = r#"4511-["subscribe",{"_placeholder":true,"num":0}]"#;
    c.send(&client_frame(true, TEXT, packet.as_bytes()));
    assert_eq!(c.expect_close(), 1002);
    eventually("the session to be gone", || {
        metric(&srv, "herald_socketio_sessions") == 0.0
    });
}

/// Socket.IO attachment flood, by delivery: a BINARY_EVENT announcing one attachment, then
/// binary frame after binary frame, as if they all belonged to it. herald must take the one it
/// announced and close at the first binary message no packet is waiting for: close 1002, the
/// session gone.
#[test]
fn socketio_binary_frames_beyond_those_announced_are_closed() {
    let srv = start_server();
    let mut c = socketio_client(&srv);
    let mut flood = client_frame(
        true,
        TEXT,
        br#"451-["flood",{"_placeholder":true,"num":0}]"#,
    );
    for _ in 0..100 {
        flood.extend_from_slice(&client_frame(true, BINARY, &[0xAB; 1000]));
    }
    c.send(&flood);
    assert_eq!(c.expect_close(), 1002);
    eventually("the session to be gone", || {
        metric(&srv, "herald_socketio_sessions") == 0.0
    });
}

/// Socket.IO attachment hoarding: a BINARY_EVENT announcing nine attachments, then only some of
/// them, each near `maxPayload`, and never the rest. herald held what came with no bound and no
/// deadline (20 such sessions held 184 MB). The attachments waiting for their packet are now
/// charged against `--max-queued-bytes` like what waits to be written: past it the client is
/// told `attachments too large`, the WebSocket is closed with 1009, and the session is gone.
#[test]
fn socketio_attachments_held_past_the_queue_limit_are_closed() {
    let srv = start_server();
    let mut c = socketio_client(&srv);
    let placeholders: Vec<String> = (0..9)
        .map(|n| format!(r#"{{"_placeholder":true,"num":{n}}}"#))
        .collect();
    let packet = format!(r#"459-["hoard",{}]"#, placeholders.join(","));
    c.send(&client_frame(true, TEXT, packet.as_bytes()));
    // 600 KB each: the first fits under the default 1 MiB, the second does not.
    for _ in 0..2 {
        c.send(&client_frame(true, BINARY, &vec![0xAB; 600_000]));
    }
    let (op, error) = c.read_frame().expect("an error event");
    assert_eq!(op, TEXT);
    assert_eq!(
        String::from_utf8_lossy(&error),
        r#"42["error",{"message":"attachments too large"}]"#
    );
    assert_eq!(c.expect_close(), 1009);
    eventually("the session to be gone", || {
        metric(&srv, "herald_socketio_sessions") == 0.0
    });
    assert_eq!(metric(&srv, "herald_attachments_refused_total"), 1.0);
}

/// Idle connections opened in the 10,000 test.
const IDLE: usize = 10_000;
/// Connections opened before their handshakes are read: below the listen backlog (128), so no
/// SYN waits for a retry.
const BATCH: usize = 100;
const JWT_SECRET: &str = "hostile-input-test-secret-0123456789abcdef";

/// Reads one server frame from a buffered connection: (opcode, payload).
fn read_frame(r: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h).ok()?;
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).ok()?;
    Some((h[0] & 0x0F, payload))
}

/// Connection flood with auth on: 10,000 WebSockets that open without a token and then say
/// nothing, each holding a slot, a buffer and a file descriptor for free. herald must send each
/// the error event `unauthorized` and close it with 4001 once `--auth-timeout` has passed.
///
/// herald runs as its own process, so the 10,000 server-side descriptors count against its own
/// limit, not this process's (which holds the 10,000 client ends).
#[test]
fn ten_thousand_idle_unauthenticated_sockets_are_closed_with_4001() {
    let herald = spawn_herald(&[
        "--jwt-secret",
        JWT_SECRET,
        "--auth-timeout",
        "2s",
        "--max-connections-per-ip",
        "0",
        "--connection-rate-per-ip",
        "0",
        "--ping-interval",
        "10m",
    ]);
    let addr = herald.public_addr;
    let request = upgrade_request(addr, "/ws");
    let started = std::time::Instant::now();
    let mut sockets = Vec::with_capacity(IDLE);
    while sockets.len() < IDLE {
        let batch: Vec<TcpStream> = (0..BATCH.min(IDLE - sockets.len()))
            .map(|_| {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(Some(PATIENCE)).unwrap();
                s.write_all(request.as_bytes()).unwrap();
                s
            })
            .collect();
        for s in batch {
            // Small buffers: ten thousand of them. What follows the head (the error event, if
            // the timeout already passed) stays buffered for the frame reads below.
            let mut r = BufReader::with_capacity(256, s);
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let n = r.read_until(b'\n', &mut head).expect("handshake response");
                assert!(n > 0, "closed during the handshake");
            }
            assert!(
                head.starts_with(b"HTTP/1.1 101"),
                "{}",
                String::from_utf8_lossy(&head)
            );
            sockets.push(r);
        }
    }
    eprintln!("{IDLE} WebSockets open in {:?}", started.elapsed());
    let unauthorized = json!({"event": "error", "data": {"message": "unauthorized"}});
    for (i, r) in sockets.iter_mut().enumerate() {
        let (op, payload) = loop {
            match read_frame(r) {
                Some((PING, _)) => {}
                Some(frame) => break frame,
                None => panic!("socket {i}: closed or silent without the error event"),
            }
        };
        assert_eq!(op, TEXT, "socket {i}: {payload:?}");
        let event: Value = serde_json::from_slice(&payload).expect("a JSON event");
        assert_eq!(event, unauthorized, "socket {i}");
        let (op, payload) = read_frame(r).unwrap_or_else(|| panic!("socket {i}: no close frame"));
        assert_eq!(op, CLOSE, "socket {i}: {payload:?}");
        assert_eq!(
            payload.get(..2),
            Some(&4001u16.to_be_bytes()[..]),
            "socket {i}: close code"
        );
        let mut rest = Vec::new();
        assert!(
            closed(&r.read_to_end(&mut rest)),
            "socket {i}: TCP closed after the close frame"
        );
    }
    eprintln!("{IDLE} closed with 4001 after {:?}", started.elapsed());
    assert_eq!(
        metric_at(herald.control_addr, "herald_closes_total{code=\"4001\"}"),
        IDLE as f64
    );
}
