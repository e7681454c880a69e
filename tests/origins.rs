//! `--allowed-origins`: a page from another origin may not open a WebSocket or long-poll, whatever
//! the path; clients that send no `Origin` (not a browser) pass. `--cors-origins`: which pages a
//! browser lets read the polling answers, as Socket.IO users write it: `*`, exact origins, and
//! `https://*.example.com`.

mod common;

use std::io::{self, Read};

use common::*;
use herald::config::Config;
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

#[test]
fn allowed_origins_take_patterns_and_any() {
    let srv = start_server_with(|c| c.allowed_origins = vec!["https://*.example.com".into()]);
    for (origin, status) in [
        ("https://a.example.com", 101),
        ("https://a.b.example.com", 101),
        ("https://example.com", 403),
        ("https://evil-example.com", 403),
        ("https://a.example.com.evil.net", 403),
        ("http://a.example.com", 403),
    ] {
        assert_eq!(upgrade(&srv, "/ws", Some(origin)).0, status, "{origin}");
    }
    let any = start_server_with(|c| c.allowed_origins = vec!["*".into()]);
    assert_eq!(upgrade(&any, "/ws", Some("http://evil.example")).0, 101);
    assert_eq!(metric(&any, "herald_origins_refused_total"), 0.0);
}

/// A polling handshake from `origin` (none for `None`); returns the status and the head,
/// lowercased.
fn polling_from(srv: &herald::server::Running, origin: Option<&str>) -> (u16, String) {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let request = format!(
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: localhost\r\n{origin}Connection: close\r\n\r\n"
    );
    let (status, head, _) = raw_http(srv.public_addr, request.as_bytes());
    (status, head.to_ascii_lowercase())
}

/// A CORS preflight of a polling POST from `origin`; returns the status and the head,
/// lowercased.
fn preflight_from(srv: &herald::server::Running, origin: &str) -> (u16, String) {
    let request = format!(
        "OPTIONS /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\n\
         Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\
         Connection: close\r\n\r\n"
    );
    let (status, head, _) = raw_http(srv.public_addr, request.as_bytes());
    (status, head.to_ascii_lowercase())
}

#[test]
fn cors_any_origin_is_a_star_without_credentials() {
    let srv = start_server_with(|c| c.cors_origins = vec!["*".into()]);
    for origin in [
        Some("https://anyone.example"),
        Some("http://localhost:3000"),
        None,
    ] {
        let (status, head) = polling_from(&srv, origin);
        assert_eq!(status, 200, "{head}");
        assert_eq!(
            header(&head, "access-control-allow-origin"),
            Some("*"),
            "{head}"
        );
        // The CORS rules forbid credentials with `*`; and the answer is the same whatever the
        // Origin, so it does not vary by it.
        assert_eq!(
            header(&head, "access-control-allow-credentials"),
            None,
            "{head}"
        );
        assert_eq!(header(&head, "vary"), None, "{head}");
    }
    let (status, head) = preflight_from(&srv, "https://anyone.example");
    assert_eq!(status, 204, "{head}");
    assert_eq!(
        header(&head, "access-control-allow-origin"),
        Some("*"),
        "{head}"
    );
    assert!(
        header(&head, "access-control-allow-methods").is_some_and(|m| m.contains("post")),
        "{head}"
    );
    assert_eq!(
        header(&head, "access-control-allow-headers"),
        Some("content-type"),
        "{head}"
    );
    assert_eq!(
        header(&head, "access-control-allow-credentials"),
        None,
        "{head}"
    );
    assert_eq!(header(&head, "vary"), None, "{head}");
}

#[test]
fn cors_patterns_and_exact_origins_echo_only_what_they_admit() {
    let srv = start_server_with(|c| {
        c.cors_origins = vec![
            "https://*.example.com".into(),
            "http://app.test:3000".into(),
        ]
    });
    for origin in [
        "https://a.example.com",
        "https://a.b.example.com",
        "http://app.test:3000",
    ] {
        let (status, head) = polling_from(&srv, Some(origin));
        assert_eq!(status, 200, "{head}");
        assert_eq!(
            header(&head, "access-control-allow-origin"),
            Some(origin),
            "{head}"
        );
        assert_eq!(
            header(&head, "access-control-allow-credentials"),
            Some("true"),
            "{head}"
        );
        assert_eq!(header(&head, "vary"), Some("origin"), "{head}");
        let (status, head) = preflight_from(&srv, origin);
        assert_eq!(status, 204, "{head}");
        assert_eq!(
            header(&head, "access-control-allow-origin"),
            Some(origin),
            "{head}"
        );
        assert_eq!(
            header(&head, "access-control-allow-credentials"),
            Some("true"),
            "{head}"
        );
        assert_eq!(header(&head, "vary"), Some("origin"), "{head}");
    }
    let refused = [
        Some("https://example.com"),
        Some("https://evil-example.com"),
        Some("https://a.example.com.evil.net"),
        Some("http://a.example.com"),
        Some("https://a.example.com:8443"),
        Some("http://app.test:3001"),
        Some("null"),
        None,
    ];
    for origin in refused {
        // Served (polling is not refused without --allowed-origins), but no browser page may
        // read it; and it says the answer depends on Origin, so no cache serves it to another.
        let (status, head) = polling_from(&srv, origin);
        assert_eq!(status, 200, "{origin:?}: {head}");
        assert_eq!(
            header(&head, "access-control-allow-origin"),
            None,
            "{origin:?}: {head}"
        );
        assert_eq!(
            header(&head, "access-control-allow-credentials"),
            None,
            "{head}"
        );
        assert_eq!(header(&head, "vary"), Some("origin"), "{origin:?}: {head}");
        if let Some(origin) = origin {
            let (status, head) = preflight_from(&srv, origin);
            assert_eq!(status, 204, "{head}");
            assert_eq!(
                header(&head, "access-control-allow-origin"),
                None,
                "{origin}: {head}"
            );
            assert_eq!(
                header(&head, "access-control-allow-methods"),
                None,
                "{origin}: {head}"
            );
            assert_eq!(header(&head, "vary"), Some("origin"), "{origin}: {head}");
        }
    }
}

#[test]
fn without_cors_origins_polling_answers_carry_no_cors_headers() {
    let srv = start_server();
    let (status, head) = polling_from(&srv, Some("https://a.example.com"));
    assert_eq!(status, 200, "{head}");
    assert_eq!(header(&head, "access-control-allow-origin"), None, "{head}");
    assert_eq!(header(&head, "vary"), None, "{head}");
}

#[test]
fn origin_lists_that_do_not_parse_are_refused_at_start_naming_the_flag() {
    let cases = [
        (
            "--cors-origins",
            ["*", "https://a.example"],
            "give it alone",
        ),
        (
            "--allowed-origins",
            ["https://app.example.com/", ""],
            "https://app.example.com/",
        ),
        (
            "--cors-origins",
            ["https://app-*.example.com", ""],
            "https://app-*.example.com",
        ),
    ];
    for (flag, entries, named) in cases {
        let mut config = Config::for_tests();
        let entries = entries.map(String::from).to_vec();
        match flag {
            "--cors-origins" => config.cors_origins = entries,
            _ => config.allowed_origins = entries,
        }
        let err = match herald::server::start(config) {
            Err(e) => e,
            Ok(_) => panic!("started with a bad {flag}"),
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let text = err.to_string();
        assert!(text.contains(flag) && text.contains(named), "{text}");
    }
}
