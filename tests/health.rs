//! Health and readiness probes, on the public port (no key) and on the control API.
//!
//! The story: `/healthz` existed only on the control API, which sits on loopback or behind a
//! key, so a load balancer that reaches only the public port could not check herald, and there
//! was no way at all to tell a draining herald from a healthy one.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::{json, Value};

use common::*;

fn body_json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

#[test]
fn the_public_port_answers_probes_without_the_api_key() {
    let srv = start_server_with(|c| c.api_key = vec!["s3cret".into()]);
    for path in ["/healthz", "/readyz"] {
        let (status, head, body) = http(srv.public_addr, "GET", path, None);
        assert_eq!(status, 200, "{path}: {head}");
        assert_eq!(body_json(&body), json!({"status": "ok"}), "{path}");
        assert_eq!(header(&head, "content-type"), Some("application/json"));
    }
    let (status, head, _) = http(srv.public_addr, "POST", "/healthz", Some("{}"));
    assert_eq!(status, 405);
    assert_eq!(header(&head, "allow"), Some("GET, HEAD"));
    // The control API still wants its key.
    assert_eq!(get(&srv, "/healthz").0, 401);
}

#[test]
fn probes_keep_the_connection_alive_and_answer_pipelined_requests_in_order() {
    let srv = start_server();
    let mut s = TcpStream::connect(srv.public_addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\nGET /readyz HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let one = b"HTTP/1.1 200 OK\r\n";
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while got.windows(one.len()).filter(|w| w == one).count() < 2 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    // Still open: a third request is answered on the same connection, and closes it when asked.
    s.write_all(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut last = Vec::new();
    s.read_to_end(&mut last).unwrap();
    let (status, head, body) = parse_response(&last);
    assert_eq!(status, 200);
    assert_eq!(header(&head, "connection"), Some("close"));
    assert_eq!(body_json(&body), json!({"status": "ok"}));
}

#[test]
fn the_control_api_readyz_turns_503_once_shutdown_began() {
    let srv = start_server();
    let (status, body) = get(&srv, "/readyz");
    assert_eq!((status, body_json(&body)), (200, json!({"status": "ok"})));
    srv.shutdown();
    // The shutdown command is ahead of the probe's on the loop's channel.
    let (status, body) = get(&srv, "/readyz");
    assert_eq!(
        (status, body_json(&body)),
        (503, json!({"status": "draining"}))
    );
}
