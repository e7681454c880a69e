//! Rate limits over real sockets: a user's push bucket (`--user-rate`, `--user-burst`) as the
//! control API answers it, and a connection's inbound bucket (`--client-rate`,
//! `--client-burst`) on the raw `/ws` endpoint and on Socket.IO. `Config::for_tests` turns every
//! limit off; each test turns on the one it checks.

mod common;

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use herald::server::Running;
use serde_json::{json, Value};
use tungstenite::Message;

use common::*;

const USER_LIMITED: &str = "herald_rate_limited_total{limit=\"user\"}";
const CLIENT_LIMITED: &str = "herald_rate_limited_total{limit=\"client\"}";

/// One notification a second per user, three at once.
fn user_limited() -> Running {
    start_server_with(|c| {
        c.user_rate = 1;
        c.user_burst = 3;
    })
}

/// `POST /v1/users/{user}/notifications`; returns the status, the response head and the JSON body.
fn push_raw(srv: &Running, user: &str, message: &str) -> (u16, String, Value) {
    let body = json!({"type": "TEST", "message": message}).to_string();
    let (status, head, body) = http(
        srv.control_addr,
        "POST",
        &format!("/v1/users/{user}/notifications"),
        Some(&body),
    );
    let body = serde_json::from_str(&body).unwrap_or_else(|_| panic!("a JSON body: {body:?}"));
    (status, head, body)
}

/// Pushes `message` to `user` once its bucket holds a token again (every refusal before must be a
/// 429); returns how many sockets took it. A sentinel pushed this way, read last, shows that
/// nothing refused before it was delivered, without waiting for silence.
fn push_once_refilled(srv: &Running, user: &str, message: &str) -> u64 {
    let start = Instant::now();
    loop {
        let (status, head, body) = push_raw(srv, user, message);
        if status == 202 {
            return body["sockets"].as_u64().unwrap();
        }
        assert_eq!(status, 429, "{head}\n{body}");
        assert!(start.elapsed() < PATIENCE, "{user}'s bucket never refilled");
        thread::sleep(Duration::from_millis(100));
    }
}

fn messages(notifications: &[Value]) -> Vec<&str> {
    notifications
        .iter()
        .map(|n| n["message"].as_str().unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Per user, outbound.

#[test]
fn pushes_beyond_a_users_burst_are_answered_429_and_not_delivered() {
    let srv = user_limited();
    let mut ws = client_for(&srv, "u");
    for m in ["n0", "n1", "n2"] {
        assert_eq!(push_to(&srv, "u", m), 1);
    }
    let (status, head, body) = push_raw(&srv, "u", "over the limit");
    assert_eq!(status, 429, "{head}\n{body}");
    let retry_after: u64 = header(&head, "Retry-After")
        .unwrap_or_else(|| panic!("a Retry-After header: {head}"))
        .parse()
        .expect("Retry-After in whole seconds");
    assert!(retry_after >= 1, "{head}");
    assert_eq!(
        body,
        json!({"error": "rate limited", "retryAfter": retry_after})
    );
    assert_eq!(metric(&srv, USER_LIMITED), 1.0);

    assert_eq!(push_once_refilled(&srv, "u", "end"), 1);
    let got = notifications_until(&mut ws, "end");
    assert_eq!(
        messages(&got),
        ["n0", "n1", "n2"],
        "the refused push never arrived"
    );
}

#[test]
fn multi_user_pushes_and_broadcasts_skip_limited_users() {
    let srv = user_limited();
    let mut limited = client_for(&srv, "limited");
    let mut fresh = client_for(&srv, "fresh");
    for m in ["n0", "n1", "n2"] {
        assert_eq!(push_to(&srv, "limited", m), 1);
    }

    let (status, body) = post(
        &srv,
        "/v1/notifications",
        json!({"userIds": ["limited", "fresh"], "notification": {"message": "multi"}}),
    );
    assert_eq!(
        (status, &body["sockets"], &body["rateLimited"]),
        (202, &json!(1), &json!(1))
    );
    let (status, body) = post(
        &srv,
        "/v1/broadcast",
        json!({"notification": {"message": "everyone"}}),
    );
    assert_eq!(
        (status, &body["sockets"], &body["rateLimited"]),
        (202, &json!(1), &json!(1))
    );
    assert_eq!(metric(&srv, USER_LIMITED), 2.0);

    assert_eq!(push_to(&srv, "fresh", "end"), 1);
    assert_eq!(
        messages(&notifications_until(&mut fresh, "end")),
        ["multi", "everyone"]
    );
    assert_eq!(push_once_refilled(&srv, "limited", "end"), 1);
    assert_eq!(
        messages(&notifications_until(&mut limited, "end")),
        ["n0", "n1", "n2"]
    );
}

#[test]
fn a_user_with_no_sockets_spends_nothing() {
    let srv = user_limited();
    for _ in 0..10 {
        assert_eq!(push_to(&srv, "nobody", "into the void"), 0);
    }
    let mut ws = client_for(&srv, "nobody");
    // The whole burst is still there for the first socket.
    for m in ["n0", "n1", "n2"] {
        assert_eq!(push_to(&srv, "nobody", m), 1);
    }
    assert_eq!(metric(&srv, USER_LIMITED), 0.0);
    assert_eq!(push_once_refilled(&srv, "nobody", "end"), 1);
    assert_eq!(
        messages(&notifications_until(&mut ws, "end")),
        ["n0", "n1", "n2"]
    );
}

// ---------------------------------------------------------------------------------------------
// Per connection, inbound.

/// One message a second per connection, five at once.
fn client_limited() -> Running {
    start_server_with(|c| {
        c.client_rate = 1;
        c.client_burst = 5;
    })
}

fn subscribe_frame(user: &str) -> Vec<u8> {
    client_frame(
        true,
        0x1,
        json!({"event": "subscribe", "data": user})
            .to_string()
            .as_bytes(),
    )
}

#[test]
fn a_flooding_client_gets_one_error_then_close_1008() {
    let srv = client_limited();
    let mut c = RawClient::connect(srv.public_addr);
    // All thirty in one write, so they arrive together, well within a second.
    let flood: Vec<u8> = (0..30)
        .flat_map(|i| subscribe_frame(&format!("u{i}")))
        .collect();
    c.send(&flood);
    for i in 0..5 {
        let reply = c.recv_json();
        assert_eq!(reply["event"], "subscribed", "{reply}");
        assert_eq!(reply["data"]["userId"], format!("u{i}"));
    }
    // The first dropped message is told; the next ones are dropped silently until a burst's
    // worth in a row has been dropped.
    assert_eq!(
        c.recv_json(),
        json!({"event": "error", "data": {"message": "rate limited"}})
    );
    assert_eq!(c.expect_close_next(), 1008);
    assert!(metric(&srv, CLIENT_LIMITED) > 0.0);
    eventually("the close to be counted", || {
        metric(&srv, "herald_closes_total{code=\"1008\"}") == 1.0
    });
}

#[test]
fn a_client_under_the_rate_is_never_limited() {
    let srv = start_server_with(|c| {
        c.client_rate = 4;
        c.client_burst = 5;
    });
    let mut ws = connect(&srv);
    for i in 0..3 {
        subscribe(&mut ws, &format!("u{i}"));
    }
    // A second refills four tokens: the bucket is full again.
    thread::sleep(Duration::from_secs(1));
    for i in 3..6 {
        subscribe(&mut ws, &format!("u{i}"));
    }
    assert_eq!(metric(&srv, CLIENT_LIMITED), 0.0);
    assert_eq!(push_to(&srv, "u5", "fine"), 1);
    assert_eq!(recv_json(&mut ws)["data"]["message"], "fine");
}

fn sio_websocket_connected(addr: SocketAddr) -> Client {
    let mut ws = sio_websocket(addr);
    ws.send(Message::Text("40".into())).unwrap();
    let reply = recv_text(&mut ws);
    assert!(reply.starts_with("40{\"sid\":"), "{reply}");
    ws
}

#[test]
fn a_flooding_socketio_client_gets_an_error_event_then_close_1008() {
    let srv = client_limited();
    let mut ws = sio_websocket_connected(srv.public_addr);
    for i in 0..30 {
        ws.write(Message::Text(format!(r#"42["subscribe","u{i}"]"#)))
            .unwrap();
    }
    ws.flush().unwrap();
    // The CONNECT packet spent the first of the five tokens.
    for i in 0..4 {
        let (name, data) = sio_event(&recv_text(&mut ws));
        assert_eq!(name, "subscribed", "{data}");
        assert_eq!(data["userId"], format!("u{i}"));
    }
    assert_eq!(
        sio_event(&recv_text(&mut ws)),
        ("error".to_string(), json!({"message": "rate limited"}))
    );
    let code = loop {
        match ws.read() {
            // A DISCONNECT before the close frame is allowed, not required.
            Ok(Message::Text(t)) if t == "41" => {}
            Ok(Message::Close(f)) => break f.map(|f| u16::from(f.code)),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            other => panic!("expected the close frame, got {other:?}"),
        }
    };
    assert_eq!(code, Some(1008));
    assert!(metric(&srv, CLIENT_LIMITED) > 0.0);
}
