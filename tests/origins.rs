//! `--allowed-origins`: a page from another origin may not open a WebSocket or long-poll, whatever
//! the path; clients that send no `Origin` (not a browser) pass.

mod common;

use std::io::Read;

use common::*;
use serde_json::Value;

const ALLOWED: &str = "http://app.example:3000";

fn guarded() -> herald::server::Running {
    start_server_with(|c| {
        c.allowed_origins = vec![ALLOWED.into(), "https://other.example".into()];
    })
}

/// A WebSocket upgrade on `path`, with `origin` when given: the status, and the body of a refusal.
fn upgrade(srv: &herald::server::Running, path: &str, origin: Option<&str>) -> (u16, String) {
    let extra = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let (mut c, head) = RawClient::open(srv.public_addr, path, &extra);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = String::new();
    if status != 101 {
        let _ = c.stream.read_to_string(&mut body);
    }
    (status, body)
}

fn error_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v["error"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_websocket_from_another_origin_is_answered_403() {
    let srv = guarded();
    for path in ["/ws", "/socket.io/?EIO=4&transport=websocket"] {
        let (status, body) = upgrade(&srv, path, Some("http://evil.example"));
        assert_eq!(
            (status, error_of(&body).as_str()),
            (403, "origin not allowed"),
            "{path}"
        );
        // The port is part of the origin: the same host on another port is another origin.
        let (status, _) = upgrade(&srv, path, Some("http://app.example:3001"));
        assert_eq!(status, 403, "{path}");
        assert_eq!(upgrade(&srv, path, Some(ALLOWED)).0, 101, "{path}");
        assert_eq!(upgrade(&srv, path, Some("https://other.example")).0, 101);
        // No Origin: not a browser page, so nothing to check.
        assert_eq!(upgrade(&srv, path, None).0, 101, "{path}");
    }
    assert_eq!(metric(&srv, "herald_origins_refused_total"), 4.0);
    assert_eq!(
        metric(&srv, "herald_handshakes_rejected_total{status=\"403\"}"),
        4.0
    );
}

#[test]
fn long_polling_from_another_origin_is_answered_403() {
    let srv = guarded();
    let poll = |origin: &str| {
        let request = format!(
            "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: localhost\r\n\
             Origin: {origin}\r\nConnection: close\r\n\r\n"
        );
        raw_http(srv.public_addr, request.as_bytes())
    };
    let (status, _, body) = poll("http://evil.example");
    assert_eq!(
        (status, error_of(&body).as_str()),
        (403, "origin not allowed")
    );
    let (status, _, body) = poll(ALLOWED);
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("0{\"sid\":"), "{body}");
    assert_eq!(metric(&srv, "herald_socketio_sessions_total"), 1.0);
}

#[test]
fn without_allowed_origins_every_origin_passes() {
    let srv = start_server();
    assert_eq!(upgrade(&srv, "/ws", Some("http://evil.example")).0, 101);
    assert_eq!(metric(&srv, "herald_origins_refused_total"), 0.0);
}
