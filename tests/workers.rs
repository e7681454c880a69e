//! Several workers, each an event loop owning its connections: a push reaches the sockets of
//! every worker and is counted once; a Socket.IO session lives on one worker, and its requests
//! reach it whichever connection (and so whichever worker) they arrive on.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::*;
use herald::config::Accept;
use serde_json::{json, Value};

const WORKERS: u16 = 4;

/// The worker a session id names: the index of its first character in URL-safe base64.
fn owner(sid: &str) -> usize {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    ALPHABET.find(&sid[..1]).expect("a base64 sid")
}

fn open_session(addr: SocketAddr) -> String {
    let (status, _, body) = http(addr, "GET", "/socket.io/?EIO=4&transport=polling", None);
    assert_eq!(status, 200, "{body}");
    let open: Value = serde_json::from_str(body.strip_prefix('0').unwrap()).unwrap();
    open["sid"].as_str().unwrap().to_owned()
}

fn polling(sid: &str) -> String {
    format!("/socket.io/?EIO=4&transport=polling&sid={sid}")
}

#[test]
fn sessions_are_spread_over_the_workers_and_named_by_them() {
    let srv = start_server_with(|c| c.workers = WORKERS);
    let mut owners = [0; WORKERS as usize];
    for _ in 0..16 {
        owners[owner(&open_session(srv.public_addr))] += 1;
    }
    // Connections are dealt to the workers in turn, so each opened sessions.
    assert!(
        owners.iter().all(|&n| n > 0),
        "sessions per worker: {owners:?}"
    );
    assert_eq!(metric(&srv, "herald_workers"), WORKERS as f64);
}

/// Every request of the session arrives on a connection of its own, so most reach a worker
/// that does not own the session and must hand the connection to the one that does.
#[test]
fn a_session_whose_every_request_is_a_new_connection_reaches_its_worker() {
    let srv = start_server_with(|c| c.workers = WORKERS);
    let addr = srv.public_addr;
    let sid = open_session(addr);
    let (status, _, body) = http(addr, "POST", &polling(&sid), Some("40"));
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (_, _, body) = http(addr, "GET", &polling(&sid), None);
    assert!(body.starts_with("40{"), "{body}");
    for i in 0..8 {
        let user = format!("roaming-{i}");
        let sub = format!(r#"42["subscribe","{user}"]"#);
        let (status, _, _) = http(addr, "POST", &polling(&sid), Some(&sub));
        assert_eq!(status, 200);
        let (_, _, body) = http(addr, "GET", &polling(&sid), None);
        assert!(body.contains("subscribed"), "{body}");
        assert_eq!(push_to(&srv, &user, &format!("hop {i}")), 1);
        let (_, _, body) = http(addr, "GET", &polling(&sid), None);
        assert!(body.contains(&format!("hop {i}")), "{body}");
    }
}

/// Reads one HTTP response with a `Content-Length` from a keep-alive connection.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, String) {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = header(&head, "content-length")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                buf.drain(..end + 4 + len);
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return (status, body);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).expect("a response");
        assert!(n > 0, "connection closed before the response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn keep_alive_request(s: &mut TcpStream, addr: SocketAddr, method: &str, path: &str, body: &str) {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
}

/// Two sessions owned by different workers, driven over one keep-alive connection: the
/// connection moves between their workers between requests, and every answer comes back in
/// order.
#[test]
fn two_sessions_of_two_workers_share_one_keep_alive_connection() {
    let srv = start_server_with(|c| c.workers = WORKERS);
    let addr = srv.public_addr;
    let a = open_session(addr);
    let b = loop {
        let b = open_session(addr);
        if owner(&b) != owner(&a) {
            break b;
        }
    };
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = Vec::new();
    for (sid, user) in [(&a, "left"), (&b, "right")] {
        keep_alive_request(&mut s, addr, "POST", &polling(sid), "40");
        assert_eq!(read_response(&mut s, &mut buf), (200, "ok".to_owned()));
        keep_alive_request(&mut s, addr, "GET", &polling(sid), "");
        let (status, body) = read_response(&mut s, &mut buf);
        assert_eq!(status, 200);
        assert!(body.starts_with("40{"), "{body}");
        let sub = format!(r#"42["subscribe","{user}"]"#);
        keep_alive_request(&mut s, addr, "POST", &polling(sid), &sub);
        assert_eq!(read_response(&mut s, &mut buf), (200, "ok".to_owned()));
    }
    // Pipelined: both sessions' GETs in one write; each is answered in turn.
    keep_alive_request(&mut s, addr, "GET", &polling(&a), "");
    keep_alive_request(&mut s, addr, "GET", &polling(&b), "");
    let (_, body) = read_response(&mut s, &mut buf);
    assert!(body.contains(r#""userId":"left""#), "{body}");
    let (_, body) = read_response(&mut s, &mut buf);
    assert!(body.contains(r#""userId":"right""#), "{body}");
    for round in 0..4 {
        assert_eq!(push_to(&srv, "left", &format!("l{round}")), 1);
        assert_eq!(push_to(&srv, "right", &format!("r{round}")), 1);
        keep_alive_request(&mut s, addr, "GET", &polling(&a), "");
        let (_, body) = read_response(&mut s, &mut buf);
        assert!(body.contains(&format!("\"l{round}\"")), "{body}");
        keep_alive_request(&mut s, addr, "GET", &polling(&b), "");
        let (_, body) = read_response(&mut s, &mut buf);
        assert!(body.contains(&format!("\"r{round}\"")), "{body}");
    }
}

/// A user's sockets on every worker: a push is counted once per socket, the user's count and
/// the metrics add the workers up.
#[test]
fn a_push_reaches_the_sockets_of_every_worker_once() {
    let srv = start_server_with(|c| c.workers = WORKERS);
    let mut clients: Vec<_> = (0..12).map(|_| client_for(&srv, "everywhere")).collect();
    let mut others: Vec<_> = (0..5)
        .map(|i| client_for(&srv, &format!("solo-{i}")))
        .collect();
    // Some clients also subscribe to a second user: one delivery per socket all the same.
    for ws in clients.iter_mut().take(6) {
        subscribe(ws, "solo-0");
    }
    let (_, info) = get(&srv, "/v1/users/everywhere");
    assert!(info.contains(r#""sockets":12"#), "{info}");
    assert_eq!(push_to(&srv, "everywhere", "one"), 12);
    let (status, body) = post(
        &srv,
        "/v1/notifications",
        json!({"userIds": ["everywhere", "solo-0", "nobody"], "notification": {"message": "two"}}),
    );
    assert_eq!((status, &body["sockets"]), (202, &json!(13)), "{body}");
    let (status, body) = post(
        &srv,
        "/v1/broadcast",
        json!({"notification": {"message": "three"}}),
    );
    assert_eq!((status, &body["sockets"]), (202, &json!(17)), "{body}");
    for ws in clients.iter_mut() {
        let got: Vec<_> = notifications_until(ws, "three");
        assert_eq!(got.len(), 2, "one and two, once each: {got:?}");
    }
    for ws in others.iter_mut().skip(1) {
        assert!(notifications_until(ws, "three").is_empty());
    }
    assert_eq!(metric(&srv, "herald_subscribed_users"), 6.0);
    assert_eq!(metric(&srv, "herald_deliveries_total"), 12.0 + 13.0 + 17.0);
    assert_eq!(metric(&srv, "herald_pushes_total{kind=\"user\"}"), 1.0);
    let per_worker: f64 = (0..WORKERS)
        .map(|w| {
            metric(
                &srv,
                &format!("herald_worker_connections{{worker=\"{w}\"}}"),
            )
        })
        .sum();
    assert_eq!(per_worker, metric(&srv, "herald_connections"));
    assert!(metric(&srv, "herald_fanout_seconds_count") >= 3.0);
    // A user whose sockets are gone leaves the directory: no worker is asked.
    drop(clients);
    eventually("the user's sockets to close", || {
        get(&srv, "/v1/users/everywhere")
            .1
            .contains(r#""sockets":0"#)
    });
    assert_eq!(push_to(&srv, "everywhere", "gone"), 0);
}

/// The per-address cap is one count across workers, whichever worker a connection lands on.
#[test]
fn the_per_address_cap_is_exact_across_workers() {
    let srv = start_server_with(|c| {
        c.workers = WORKERS;
        c.max_connections_per_ip = 6;
    });
    let held: Vec<_> = (0..6).map(|_| connect(&srv)).collect();
    for _ in 0..3 {
        let (status, _, _) = refused_upgrade(srv.public_addr, "/ws", "");
        assert_eq!(status, 429);
    }
    drop(held);
    eventually("the cap to free up", || {
        metric(&srv, "herald_connections") == 0.0
    });
    let _again: Vec<_> = (0..6).map(|_| connect(&srv)).collect();
}

/// `--accept reuseport`: a listener per worker on one port; everything works the same.
#[test]
fn reuseport_listeners_serve_every_worker() {
    let srv = start_server_with(|c| {
        c.workers = WORKERS;
        c.accept = Accept::Reuseport;
    });
    let mut clients: Vec<_> = (0..24).map(|_| client_for(&srv, "shared")).collect();
    assert_eq!(push_to(&srv, "shared", "hello"), 24);
    for ws in clients.iter_mut() {
        assert_eq!(recv_json(ws)["data"]["message"], "hello");
    }
    let sid = open_session(srv.public_addr);
    let (status, _, _) = http(srv.public_addr, "POST", &polling(&sid), Some("40"));
    assert_eq!(status, 200);
    let (_, _, body) = http(srv.public_addr, "GET", &polling(&sid), None);
    assert!(body.starts_with("40{"), "{body}");
}
