//! The opening handshake: every fault gets its HTTP status, and a connection that never completes
//! its handshake is closed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

fn request(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n")
}

fn upgrade(headers: &str) -> String {
    request("/ws", headers)
}

macro_rules! status {
    ($($name:ident: $req:expr => $status:expr;)*) => {$(
        #[test]
        fn $name() {
            let srv = start_server();
            let (status, head, body) = raw_http(srv.public_addr, $req.as_bytes());
            assert_eq!(status, $status, "{head}\n\n{body}");
            if status != 101 {
                let v: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
                assert!(v["error"].is_string(), "{body}");
            }
        }
    )*};
}

status! {
    unknown_path: request("/nope", &format!("Upgrade: websocket\r\nConnection: Upgrade\r\n{KEY}Sec-WebSocket-Version: 13\r\n")) => 404;
    plain_get: upgrade("") => 400;
    post_method: format!("POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{KEY}Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n") => 400;
    http_1_0: format!("GET /ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{KEY}Sec-WebSocket-Version: 13\r\n\r\n") => 400;
    missing_upgrade: upgrade(&format!("Connection: Upgrade\r\n{KEY}Sec-WebSocket-Version: 13\r\n")) => 400;
    connection_without_upgrade_token: upgrade(&format!("Upgrade: websocket\r\nConnection: keep-alive\r\n{KEY}Sec-WebSocket-Version: 13\r\n")) => 400;
    missing_key: upgrade("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n") => 400;
    short_key: upgrade("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n") => 400;
    old_version: upgrade(&format!("Upgrade: websocket\r\nConnection: Upgrade\r\n{KEY}Sec-WebSocket-Version: 8\r\n")) => 426;
    missing_version: upgrade(&format!("Upgrade: websocket\r\nConnection: Upgrade\r\n{KEY}")) => 426;
    headers_over_8k: upgrade(&format!("X-Big: {}\r\n", "a".repeat(9000))) => 431;
    garbage: "\x16\x03\x01\x02\x00 not http\r\n\r\n".to_string() => 400;
}

#[test]
fn version_426_names_the_supported_version() {
    let srv = start_server();
    let req = upgrade(&format!(
        "Upgrade: websocket\r\nConnection: Upgrade\r\n{KEY}Sec-WebSocket-Version: 8\r\n"
    ));
    let (_, head, _) = raw_http(srv.public_addr, req.as_bytes());
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{head}"
    );
}

#[test]
fn connection_header_is_a_case_insensitive_token_list() {
    let srv = start_server();
    let req = upgrade(&format!("Upgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\n{KEY}Sec-WebSocket-Version: 13\r\n"));
    let mut s = TcpStream::connect(srv.public_addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
}

#[test]
fn a_handshake_that_never_completes_is_closed() {
    let srv = start_server_with(|c| c.handshake_timeout = Duration::from_millis(300));
    let mut s = TcpStream::connect(srv.public_addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut buf = Vec::new();
    let n = s
        .read_to_end(&mut buf)
        .expect("the server closes, not the read timeout");
    assert_eq!(n, 0);
    assert_eq!(metric(&srv, "herald_handshake_timeouts_total"), 1.0);
}

#[test]
fn rejected_handshakes_are_counted_by_status() {
    let srv = start_server();
    raw_http(srv.public_addr, request("/nope", "").as_bytes());
    assert_eq!(
        metric(&srv, "herald_handshakes_rejected_total{status=\"404\"}"),
        1.0
    );
}
