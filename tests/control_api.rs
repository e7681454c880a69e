//! The control API's routes and its error answers.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use crossbeam_channel::Receiver;
use herald::command::{Command, LoopHandle, PushReply, Target, UserInfo};
use herald::config::Config;
use herald::control::{self, ControlOptions};
use herald::server;
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
    assert_eq!(
        (status, &body["sockets"], &body["rateLimited"]),
        (202, &json!(0), &json!(0))
    );
    // Logged all the same, for whoever reconnects: the answer names its offset.
    assert!(body["offset"].is_string(), "{body}");
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

const KEY: &str = "test-control-key-6f1e";

/// One request with an `Authorization` header (when given) on a fresh connection.
fn http_with_auth(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    authorization: Option<&str>,
) -> (u16, String, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(a) = authorization {
        req += &format!("Authorization: {a}\r\n");
    }
    if let Some(b) = body {
        req += &format!("Content-Length: {}\r\n\r\n{b}", b.len());
    } else {
        req += "\r\n";
    }
    raw_http(addr, req.as_bytes())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn with_an_api_key_every_route_needs_it() {
    let srv = start_server_with(|c| c.api_key = vec![KEY.into()]);
    let push = r#"{"message":"m"}"#;
    let routes = [
        ("GET", "/healthz", None),
        ("GET", "/metrics", None),
        ("GET", "/v1/users/u", None),
        ("POST", "/v1/users/u/notifications", Some(push)),
        ("POST", "/v1/broadcast", Some(r#"{"notification":{}}"#)),
        ("GET", "/no/such/route", None),
    ];
    let wrong = format!("Bearer {KEY}-not");
    for (method, path, body) in routes {
        for authorization in [None, Some(wrong.as_str()), Some("Basic dTpw")] {
            let (status, head, text) =
                http_with_auth(srv.control_addr, method, path, body, authorization);
            assert_eq!(status, 401, "{method} {path} {authorization:?}: {head}");
            assert_eq!(header(&head, "www-authenticate"), Some("Bearer"), "{head}");
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v, json!({"error": "unauthorized"}));
        }
    }
    let right = format!("Bearer {KEY}");
    let (status, _, _) = http_with_auth(srv.control_addr, "GET", "/healthz", None, Some(&right));
    assert_eq!(status, 200);
    let (status, _, body) = http_with_auth(srv.control_addr, "GET", "/metrics", None, Some(&right));
    assert_eq!(status, 200);
    assert!(body.contains("herald_connections"), "{body}");
}

#[test]
fn with_an_api_key_a_push_with_it_is_delivered() {
    let srv = start_server_with(|c| c.api_key = vec![KEY.into()]);
    let mut ws = client_for(&srv, "u");
    let (status, _, body) = http_with_auth(
        srv.control_addr,
        "POST",
        "/v1/users/u/notifications",
        Some(r#"{"message":"keyed"}"#),
        Some(&format!("Bearer {KEY}")),
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, &body["sockets"]), (202, &json!(1)));
    let n = recv_json(&mut ws);
    assert_eq!(n["data"]["message"], "keyed");
    assert_eq!(
        n["offset"], body["offset"],
        "the answer names the push's offset"
    );
}

#[test]
fn a_refused_request_keeps_the_connection_for_the_next() {
    let srv = start_server_with(|c| c.api_key = vec![KEY.into()]);
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n\r\n"
    );
    let mut s = TcpStream::connect(srv.control_addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let first = text.find("HTTP/1.1 401").expect("a 401 first");
    let second = text.find("HTTP/1.1 200").expect("then a 200");
    assert!(first < second, "{text}");
}

/// A configuration whose control API would listen on every interface.
fn exposed(ip: &str) -> Config {
    let mut config = Config::for_tests();
    config.control = SocketAddr::new(ip.parse().unwrap(), 0);
    config
}

#[test]
fn a_control_address_off_loopback_without_a_key_is_refused_before_binding() {
    // The public address is taken: had `start` bound anything before refusing, it would fail
    // with AddrInUse instead.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    for ip in ["0.0.0.0", "::"] {
        let mut config = exposed(ip);
        config.listen = taken.local_addr().unwrap();
        let err = match server::start(config) {
            Err(e) => e,
            Ok(_) => panic!("started with the control API on {ip} and no key"),
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("--api-key"), "{err}");
    }
}

#[test]
fn loopback_control_addresses_need_no_key() {
    for ip in ["127.0.0.1", "127.0.0.2", "::ffff:127.0.0.1"] {
        // Binding is not the point (127.0.0.2 or a mapped address may not be bindable here);
        // only that the refusal does not fire.
        if let Err(e) = server::start(exposed(ip)) {
            assert_ne!(e.kind(), io::ErrorKind::InvalidInput, "{ip}: {e}");
        }
    }
}

#[test]
fn with_a_key_the_control_api_may_listen_on_every_interface() {
    let mut config = exposed("0.0.0.0");
    config.api_key = vec![KEY.into()];
    let srv = server::start(config).expect("starts with a key");
    assert!(srv.control_addr.ip().is_unspecified());
    // Reached over loopback only.
    let local = SocketAddr::from(([127, 0, 0, 1], srv.control_addr.port()));
    let (status, _, _) = http_with_auth(local, "GET", "/healthz", None, None);
    assert_eq!(status, 401);
    let (status, _, _) = http_with_auth(
        local,
        "GET",
        "/healthz",
        None,
        Some(&format!("Bearer {KEY}")),
    );
    assert_eq!(status, 200);
}

/// A stand-in event loop whose every user's push bucket is empty: a one-user push is refused
/// (retry in 1.2 s), a many-user push or a broadcast skips two users and reaches 5 sockets.
/// It lets the control API's answers be checked on the wire without the real loop's limits.
fn rate_limited_loop() -> LoopHandle {
    let poll = mio::Poll::new().unwrap();
    let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || answer_limited(poll, rx));
    LoopHandle::new(tx, waker)
}

fn answer_limited(_poll: mio::Poll, rx: Receiver<Command>) {
    for cmd in rx {
        match cmd {
            Command::Push { target, reply, .. } => {
                let answer = match target {
                    Target::User(_) => PushReply {
                        sockets: 0,
                        rate_limited: 1,
                        retry_after: Some(Duration::from_millis(1_200)),
                        ..PushReply::default()
                    },
                    Target::Users(_) | Target::All => PushReply {
                        sockets: 5,
                        rate_limited: 2,
                        ..PushReply::default()
                    },
                };
                let _ = reply.send(answer);
            }
            Command::UserInfo { reply, .. } => {
                let _ = reply.send(UserInfo::local(0));
            }
            Command::Metrics { reply } => {
                let _ = reply.send(String::new());
            }
            Command::Readiness { reply } => {
                let _ = reply.send(true);
            }
            Command::Shutdown => return,
        }
    }
}

fn start_control_with_limited_loop() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = ControlOptions::from(&Config::for_tests());
    control::spawn(listener, rate_limited_loop(), opts).unwrap();
    addr
}

#[test]
fn a_rate_limited_push_to_one_user_is_429_with_retry_after() {
    let addr = start_control_with_limited_loop();
    let (status, head, body) = http(addr, "POST", "/v1/users/u/notifications", Some("{}"));
    assert_eq!(status, 429, "{head}");
    assert_eq!(header(&head, "retry-after"), Some("2"), "{head}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, json!({"error": "rate limited", "retryAfter": 2}));
}

#[test]
fn many_user_pushes_and_broadcasts_say_how_many_users_were_skipped() {
    let addr = start_control_with_limited_loop();
    let many = r#"{"userIds":["a","b","c"],"notification":{}}"#;
    let (status, _, body) = http(addr, "POST", "/v1/notifications", Some(many));
    assert_eq!(
        (status, body.as_str()),
        (202, r#"{"sockets":5,"rateLimited":2}"#)
    );
    let all = r#"{"notification":{}}"#;
    let (status, _, body) = http(addr, "POST", "/v1/broadcast", Some(all));
    assert_eq!(
        (status, body.as_str()),
        (202, r#"{"sockets":5,"rateLimited":2}"#)
    );
}
