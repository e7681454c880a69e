//! Caps at accept, before a connection is given a slot: `--max-connections` in total (503),
//! `--max-connections-per-ip` (429) and `--connection-rate-per-ip` (429 with `Retry-After`).
//! `Config::for_tests` turns these off; each test turns on its own.

mod common;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};

use common::*;

const HOME: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Another loopback address: Linux routes all of 127.0.0.0/8 to `lo`.
const NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// How a connection attempt ended.
#[derive(Debug)]
enum Attempt {
    /// Upgraded to a WebSocket; the stream is kept open.
    Open(TcpStream),
    /// Refused with an HTTP answer: status, head, body.
    Refused(u16, String, String),
}

impl Attempt {
    fn refused(self) -> (u16, String, String) {
        match self {
            Attempt::Refused(status, head, body) => (status, head, body),
            Attempt::Open(_) => panic!("expected a refusal, the WebSocket opened"),
        }
    }

    fn open(self) -> TcpStream {
        match self {
            Attempt::Open(s) => s,
            Attempt::Refused(status, head, body) => {
                panic!("expected a WebSocket, got {status}:\n{head}\n\n{body}")
            }
        }
    }
}

/// When an attempt reads before it sends: long enough for a refusal written at accept to arrive,
/// after which the request is sent anyway (a connection that was accepted waits for it).
const READ_FIRST_WAIT: Duration = Duration::from_millis(500);

/// Connects from `local` and asks for a WebSocket on `/ws`. herald refuses at accept, before it
/// reads a request, so the order of the two must not matter: with `read_first` the attempt
/// listens for a refusal before it sends its request.
fn attempt(addr: SocketAddr, local: Ipv4Addr, read_first: bool) -> Attempt {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.bind(&SocketAddr::from((local, 0)).into()).unwrap();
    socket.connect(&addr.into()).expect("TCP connect");
    let mut s: TcpStream = socket.into();
    let mut buf = Vec::new();
    if read_first {
        s.set_read_timeout(Some(READ_FIRST_WAIT)).unwrap();
        read_head(&mut s, &mut buf);
    }
    // A refused connection may be gone already; its answer is in the buffer all the same.
    let _ = s.write_all(upgrade_request(addr, "/ws").as_bytes());
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    read_head(&mut s, &mut buf);
    if buf.starts_with(b"HTTP/1.1 101") {
        assert!(
            buf.ends_with(b"\r\n\r\n"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
        return Attempt::Open(s);
    }
    // The refusal's body, then the close.
    let _ = s.read_to_end(&mut buf);
    let (status, head, body) = parse_response(&buf);
    Attempt::Refused(status, head, body)
}

/// Reads into `buf` byte by byte until a whole response head is there, or the connection ends,
/// or the read times out.
fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut byte = [0u8];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            Ok(_) => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn assert_json_error(head: &str, body: &str) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {head}\n\n{body}"));
    assert!(v["error"].is_string(), "{body}");
}

#[test]
fn past_max_connections_the_next_is_answered_503_until_one_closes() {
    let srv = start_server_with(|c| c.max_connections = 5);
    let addr = srv.public_addr;
    let mut open: Vec<TcpStream> = (0..5).map(|_| attempt(addr, HOME, false).open()).collect();

    let (status, head, body) = attempt(addr, HOME, false).refused();
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert_eq!(status, 503);
    assert_json_error(&head, &body);
    let (status, head, _) = attempt(addr, HOME, true).refused();
    assert_eq!(status, 503, "{head}");
    assert_eq!(
        metric(&srv, "herald_connections_refused_total{reason=\"total\"}"),
        2.0
    );

    drop(open.pop());
    let mut again = None;
    eventually("a slot to free up", || match attempt(addr, HOME, false) {
        Attempt::Open(s) => {
            again = Some(s);
            true
        }
        Attempt::Refused(status, head, _) => {
            assert_eq!(status, 503, "{head}");
            false
        }
    });
    assert_eq!(metric(&srv, "herald_websockets"), 5.0);
}

#[test]
fn past_max_connections_per_ip_the_next_from_that_address_is_answered_429() {
    let srv = start_server_with(|c| c.max_connections_per_ip = 3);
    let addr = srv.public_addr;
    let _open: Vec<TcpStream> = (0..3).map(|_| attempt(addr, HOME, false).open()).collect();

    let (status, head, body) = attempt(addr, HOME, true).refused();
    assert_eq!(status, 429, "{head}");
    assert_json_error(&head, &body);
    let (status, head, _) = attempt(addr, HOME, false).refused();
    assert_eq!(status, 429, "{head}");
    assert_eq!(
        metric(&srv, "herald_connections_refused_total{reason=\"per_ip\"}"),
        2.0
    );
    // Another address has its own count.
    let _neighbour = attempt(addr, NEIGHBOUR, false).open();
    assert_eq!(metric(&srv, "herald_websockets"), 4.0);
}

#[test]
fn past_the_connection_rate_per_ip_the_next_is_answered_429_with_retry_after() {
    // One per second, bursts of five seconds' worth: five rapid connections pass.
    let srv = start_server_with(|c| c.connection_rate_per_ip = 1);
    let addr = srv.public_addr;
    let mut open = Vec::new();
    // Connections come faster than one a second, so the sixth is refused; were this machine so
    // slow that a token came back in between, the next one would be.
    let refusal = loop {
        match attempt(addr, HOME, false) {
            Attempt::Open(s) => open.push(s),
            Attempt::Refused(status, head, body) => break (status, head, body),
        }
        assert!(open.len() < 50, "no connection was refused");
    };
    assert!(
        open.len() >= 5,
        "a burst of five passes; {} did",
        open.len()
    );
    let (status, head, body) = refusal;
    assert_eq!(status, 429, "{head}");
    assert_json_error(&head, &body);
    let retry_after = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("retry-after")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no Retry-After in {head}"));
    let secs: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After in whole seconds: {retry_after:?}"));
    assert!(secs >= 1, "{head}");
    // Reading before sending gets the same answer.
    let (status, head, _) = attempt(addr, HOME, true).refused();
    assert_eq!(status, 429, "{head}");
    assert!(metric(&srv, "herald_connections_refused_total{reason=\"rate\"}") >= 2.0);
    // Another address has its own bucket.
    let _neighbour = attempt(addr, NEIGHBOUR, false).open();
}

/// A Socket.IO client over a WebSocket holds one connection and one session: it is one of
/// `--max-connections`, and one of `--max-connections-per-ip` for its address, not two (it was
/// counted twice: a cap of 4 let 2 such clients in). Sessions have their own cap,
/// `--max-sessions` (see `tests/pipelined_polling.rs`).
#[test]
fn a_socketio_client_over_a_websocket_is_one_connection_not_two() {
    let srv = start_server_with(|c| {
        c.max_connections = 4;
        c.max_connections_per_ip = 4;
    });
    let addr = srv.public_addr;
    let mut clients: Vec<_> = (0..4).map(|_| sio_websocket(addr)).collect();
    for ws in &mut clients {
        ws.send(tungstenite::Message::Text("40".into())).unwrap();
        assert!(recv_text(ws).starts_with("40{\"sid\":"));
    }
    assert_eq!(metric(&srv, "herald_socketio_sessions"), 4.0);
    assert_eq!(metric(&srv, "herald_connections"), 4.0);
    let (status, head, body) = attempt(addr, HOME, false).refused();
    assert_eq!(status, 503, "{head}");
    assert!(body.contains("4 connections already open"), "{body}");
}
