//! The control API's door: the key is checked from a request's head, before `100 Continue` and
//! before its body is read; several keys may be valid at once; and an address that keeps
//! presenting wrong keys is answered 429 for a while, whatever key it sends.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use herald::server::Running;
use serde_json::{json, Value};

const KEY: &str = "control-key-7c1d93";
const NEW_KEY: &str = "control-key-next-0b44";

/// A gateway whose control API takes `keys`, and locks an address out after `failures` wrong
/// keys within `window` (0: never).
fn keyed(keys: &[&str], failures: u32, window: Duration) -> Running {
    start_server_with(|c| {
        c.api_key = keys.iter().map(|k| k.to_string()).collect();
        c.control_auth_failures = failures;
        c.control_auth_window = window;
    })
}

/// A connection to `addr` from the loopback address `from` (any address in 127.0.0.0/8 is this
/// host on Linux), so that one test can be two clients.
fn connect_from(from: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    socket.connect(&addr.into()).unwrap();
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

fn local(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// `GET /healthz` from `from` with `Authorization: Bearer <key>` (no header for `None`);
/// returns the status, head and body.
fn healthz(from: IpAddr, addr: SocketAddr, key: Option<&str>) -> (u16, String, String) {
    let mut s = connect_from(from, addr);
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let req = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf)
}

/// The head of a push to user `u` whose body (`len` bytes) is to follow only once the server
/// says `100 Continue`.
fn expect_continue_head(key: Option<&str>, len: usize) -> String {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    format!(
        "POST /v1/users/u/notifications HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
         Expect: 100-continue\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// Reads one response head (up to its blank line) off `s`, byte by byte so that nothing after
/// it is consumed.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("connection ended inside a head ({other:?}): {head:?}"),
        }
    }
    String::from_utf8(head).unwrap()
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("a JSON body: {body:?}"))
}

#[test]
fn a_wrong_key_with_expect_continue_is_answered_401_and_never_told_to_continue() {
    // The bug: `100 Continue` went out as soon as the head arrived, before the key was
    // checked, so a caller without the key was invited to send --control-max-body bytes, and
    // its body was read and held before the 401.
    let srv = keyed(&[KEY], 0, Duration::from_secs(60));
    let body_len = 500_000;
    for key in [Some("not-the-key"), None] {
        let mut s = connect_from(local(1), srv.control_addr);
        s.write_all(expect_continue_head(key, body_len).as_bytes())
            .unwrap();
        // Only the head was sent: whatever comes is the answer to the head alone, and the server
        // ends the connection after it rather than wait for a body.
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(!text.contains("100 Continue"), "{key:?}: {text}");
        let (status, head, body) = parse_response(&answer);
        assert_eq!(status, 401, "{key:?}: {text}");
        assert_eq!(header(&head, "www-authenticate"), Some("Bearer"), "{head}");
        assert_eq!(header(&head, "connection"), Some("close"), "{head}");
        assert_eq!(json_of(&body), json!({"error": "unauthorized"}));
    }
    // Nothing of the bodies was budgeted; nothing was pushed.
    let metrics = get_metrics(&srv, KEY);
    assert!(
        metrics.contains("herald_control_inflight_bytes_peak 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_control_auth_failures_total 2\n"),
        "{metrics}"
    );
}

#[test]
fn the_right_key_with_expect_continue_is_told_to_continue() {
    let srv = keyed(&[KEY], 10, Duration::from_secs(60));
    let mut ws = client_for(&srv, "u");
    let body = r#"{"message":"continued"}"#;
    let mut s = connect_from(local(1), srv.control_addr);
    s.write_all(expect_continue_head(Some(KEY), body.len()).as_bytes())
        .unwrap();
    assert_eq!(read_head(&mut s), "HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body.as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 202 "), "{head}");
    assert_eq!(recv_json(&mut ws)["data"]["message"], "continued");
}

#[test]
fn a_wrong_key_whose_body_is_still_coming_is_answered_before_the_body() {
    let srv = keyed(&[KEY], 0, Duration::from_secs(60));
    let len = 400_000;
    let mut s = connect_from(local(1), srv.control_addr);
    let head = format!(
        "POST /v1/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Length: {len}\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).unwrap();
    let answer = read_head(&mut s);
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    assert_eq!(header(&answer, "connection"), Some("close"), "{answer}");
    let metrics = get_metrics(&srv, KEY);
    assert!(
        metrics.contains("herald_control_inflight_bytes_peak 0\n"),
        "{metrics}"
    );
}

#[test]
fn an_address_that_fails_too_often_is_answered_429_even_with_the_right_key() {
    let srv = keyed(&[KEY], 3, Duration::from_secs(600));
    let (guesser, other) = (local(1), local(2));
    for wrong in [Some("guess-1"), None, Some("guess-3")] {
        assert_eq!(
            healthz(guesser, srv.control_addr, wrong).0,
            401,
            "{wrong:?}"
        );
    }
    // Successful requests did not count, and do not clear the count.
    assert_eq!(healthz(guesser, srv.control_addr, Some(KEY)).0, 429);
    for key in [Some(KEY), Some("guess-4"), None] {
        let (status, head, body) = healthz(guesser, srv.control_addr, key);
        assert_eq!(status, 429, "{key:?}: {head}");
        let retry: u64 = header(&head, "retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("a Retry-After in seconds: {head}"));
        assert!((1..=600).contains(&retry), "{head}");
        assert_eq!(
            json_of(&body),
            json!({
                "error": "too many failed API key attempts from this address; retry later",
                "retryAfter": retry
            })
        );
    }
    // Not told to continue either, and its body not read.
    let mut s = connect_from(guesser, srv.control_addr);
    s.write_all(expect_continue_head(Some(KEY), 1000).as_bytes())
        .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let (status, head, _) = parse_response(&answer);
    assert_eq!(status, 429, "{head}");

    // Another address is someone else.
    assert_eq!(healthz(other, srv.control_addr, Some(KEY)).0, 200);
    let metrics = get_metrics_from(other, &srv, KEY);
    assert!(
        metrics.contains("herald_control_auth_failures_total 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_control_auth_limited_total 5\n"),
        "{metrics}"
    );
}

#[test]
fn the_lockout_ends_with_its_window() {
    let srv = keyed(&[KEY], 1, Duration::from_secs(1));
    assert_eq!(healthz(local(1), srv.control_addr, Some("wrong")).0, 401);
    assert_eq!(healthz(local(1), srv.control_addr, Some(KEY)).0, 429);
    eventually("the window to end", || {
        healthz(local(1), srv.control_addr, Some(KEY)).0 == 200
    });
}

#[test]
fn with_the_limit_off_wrong_keys_are_only_401() {
    let srv = keyed(&[KEY], 0, Duration::from_secs(60));
    for _ in 0..20 {
        assert_eq!(healthz(local(1), srv.control_addr, Some("wrong")).0, 401);
    }
    assert_eq!(healthz(local(1), srv.control_addr, Some(KEY)).0, 200);
}

#[test]
fn two_keys_are_both_accepted_while_callers_move_to_the_new_one() {
    let srv = keyed(&[KEY, NEW_KEY], 10, Duration::from_secs(60));
    let mut ws = client_for(&srv, "u");
    for (key, message) in [(KEY, "old"), (NEW_KEY, "new")] {
        let body = format!(r#"{{"message":"{message}"}}"#);
        let req = format!(
            "POST /v1/users/u/notifications HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, _, answer) = raw_http(srv.control_addr, req.as_bytes());
        assert_eq!(status, 202, "{key}: {answer}");
        assert_eq!(recv_json(&mut ws)["data"]["message"], message);
    }
    assert_eq!(
        healthz(local(1), srv.control_addr, Some("third-key")).0,
        401
    );
    let both = format!("{KEY},{NEW_KEY}");
    assert_eq!(healthz(local(1), srv.control_addr, Some(&both)).0, 401);
}

fn get_metrics(srv: &Running, key: &str) -> String {
    get_metrics_from(local(1), srv, key)
}

fn get_metrics_from(from: IpAddr, srv: &Running, key: &str) -> String {
    let mut s = connect_from(from, srv.control_addr);
    let req = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let (status, head, body) = parse_response(&buf);
    assert_eq!(status, 200, "{head}");
    body
}
