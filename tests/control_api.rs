//! The control API's routes and its error answers.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;
use serde_json::{json, Value};

fn error_of(body: &str) -> String {
    let v: Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("JSON error body: {body:?}"));
    v["error"].as_str().expect("an error message").to_string()
}

#[test]
fn healthz_and_metrics() {
    let srv = start_server();
    let (status, _) = get(&srv, "/healthz");
    assert_eq!(status, 200);
    let (status, head, body) = http(srv.control_addr, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    for series in [
        "herald_connections",
        "herald_rooms",
        "herald_deliveries_total",
        "herald_bytes_sent_total",
    ] {
        assert!(body.contains(series), "{series} in {body}");
    }
}

#[test]
fn push_to_nobody_is_accepted_with_zero_sockets() {
    let srv = start_server();
    assert_eq!(push_to(&srv, "nobody", "x"), 0);
    let (status, body) = post(&srv, "/v1/broadcast", json!({"notification": {"m": 1}}));
    assert_eq!((status, body), (202, json!({"sockets": 0})));
}

#[test]
fn timestamp_is_kept_when_given() {
    let srv = start_server();
    let mut ws = client_for(&srv, "t");
    post(
        &srv,
        "/v1/users/t/notifications",
        json!({"message": "m", "timestamp": "then"}),
    );
    assert_eq!(recv_json(&mut ws)["data"]["timestamp"], "then");
}

#[test]
fn percent_encoded_user_ids() {
    let srv = start_server();
    let mut ws = client_for(&srv, "a b@c");
    let (status, body) = post(
        &srv,
        "/v1/users/a%20b%40c/notifications",
        json!({"message": "m"}),
    );
    assert_eq!((status, body["sockets"].as_u64()), (202, Some(1)));
    assert_eq!(recv_json(&mut ws)["data"]["message"], "m");
}

macro_rules! answers {
    ($($name:ident: ($method:expr, $path:expr, $body:expr) => $status:expr;)*) => {$(
        #[test]
        fn $name() {
            let srv = start_server();
            let (status, head, body) = http(srv.control_addr, $method, $path, $body);
            assert_eq!(status, $status, "{head}\n\n{body}");
            assert!(!error_of(&body).is_empty());
        }
    )*};
}

answers! {
    invalid_json: ("POST", "/v1/users/u/notifications", Some("{not json")) => 400;
    notification_not_an_object: ("POST", "/v1/users/u/notifications", Some("[1,2]")) => 400;
    user_id_too_long: ("POST", &format!("/v1/users/{}/notifications", "x".repeat(129)), Some("{}")) => 400;
    user_ids_missing: ("POST", "/v1/notifications", Some(r#"{"notification":{}}"#)) => 400;
    user_ids_with_a_bad_entry: ("POST", "/v1/notifications", Some(r#"{"userIds":["a",""],"notification":{}}"#)) => 400;
    broadcast_without_notification: ("POST", "/v1/broadcast", Some(r#"{"message":"x"}"#)) => 400;
    unknown_route: ("GET", "/v2/nothing", None) => 404;
    wrong_method: ("GET", "/v1/broadcast", None) => 405;
    delete_user: ("DELETE", "/v1/users/u", None) => 405;
}

#[test]
fn post_without_content_length_is_411() {
    let srv = start_server();
    let (status, _, body) = raw_http(
        srv.control_addr,
        b"POST /v1/broadcast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 411, "{body}");
    error_of(&body);
}

#[test]
fn body_over_the_limit_is_413_before_it_is_read() {
    let srv = start_server_with(|c| c.control_max_body = 1000);
    let req = "POST /v1/broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n";
    let (status, _, body) = raw_http(srv.control_addr, req.as_bytes());
    assert_eq!(status, 413, "{body}");
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let srv = start_server();
    let mut s = TcpStream::connect(srv.control_addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let body = r#"{"notification":{"m":1}}"#;
    let one = format!(
        "POST /v1/broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Two pipelined requests, then a third that closes.
    s.write_all(
        format!("{one}{one}GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    assert_eq!(text.matches("HTTP/1.1 202").count(), 2, "{text}");
    assert_eq!(text.matches("HTTP/1.1 200").count(), 1, "{text}");
}
