//! Socket.IO v5 over Engine.IO v4, spoken by hand over real HTTP and WebSocket connections: the
//! long-polling transport, the upgrade, the protocol's errors, and the events.

mod common;

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tungstenite::Message;

const RS: char = '\u{1e}';

fn path(query: &str) -> String {
    format!("/socket.io/?{query}")
}

/// Opens a polling session; returns its sid and the open packet's JSON.
fn open_polling(addr: SocketAddr) -> (String, Value) {
    let (status, _, body) = http(addr, "GET", &path("EIO=4&transport=polling&t=1"), None);
    assert_eq!(status, 200, "{body}");
    let open: Value =
        serde_json::from_str(body.strip_prefix('0').expect("an open packet")).unwrap();
    (open["sid"].as_str().unwrap().to_string(), open)
}

fn poll(addr: SocketAddr, sid: &str) -> Vec<String> {
    let (status, _, body) = http(
        addr,
        "GET",
        &path(&format!("EIO=4&transport=polling&sid={sid}")),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body.split(RS).map(str::to_string).collect()
}

/// The status of a polling GET on session `sid` (which must fail: a held GET never returns).
fn poll_status(addr: SocketAddr, sid: &str) -> u16 {
    http(
        addr,
        "GET",
        &path(&format!("EIO=4&transport=polling&sid={sid}")),
        None,
    )
    .0
}

fn send(addr: SocketAddr, sid: &str, packets: &[&str]) -> (u16, String) {
    let body = packets.join(&RS.to_string());
    let (status, _, body) = http(
        addr,
        "POST",
        &path(&format!("EIO=4&transport=polling&sid={sid}")),
        Some(&body),
    );
    (status, body)
}

/// A polling session connected to `/`; returns (sid, socket id).
fn connected(addr: SocketAddr) -> (String, String) {
    let (sid, _) = open_polling(addr);
    assert_eq!(send(addr, &sid, &["40"]), (200, "ok".to_string()));
    let packets = poll(addr, &sid);
    let connect: Value = serde_json::from_str(packets[0].strip_prefix("40").unwrap()).unwrap();
    (sid, connect["sid"].as_str().unwrap().to_string())
}

fn event(packet: &str) -> (String, Value) {
    let v: Value = serde_json::from_str(
        packet
            .strip_prefix("42")
            .unwrap_or_else(|| panic!("an event: {packet}")),
    )
    .unwrap();
    (v[0].as_str().unwrap().to_string(), v[1].clone())
}

#[test]
fn polling_handshake_gives_the_open_packet() {
    let srv = start_server();
    let (sid, open) = open_polling(srv.public_addr);
    assert_eq!(sid.len(), 20);
    assert_eq!(open["upgrades"], json!(["websocket"]));
    assert_eq!(open["pingInterval"], 25000);
    assert_eq!(open["pingTimeout"], 20000);
    assert_eq!(open["maxPayload"], 1000000);
    let (other, _) = open_polling(srv.public_addr);
    assert_ne!(sid, other);
}

#[test]
fn subscribe_and_receive_over_polling() {
    let srv = start_server();
    let addr = srv.public_addr;
    let (sid, socket_id) = connected(addr);
    send(
        addr,
        &sid,
        &[r#"42["subscribe","u1"]"#, r#"421["subscribe",7]"#],
    );
    let packets = poll(addr, &sid);
    assert_eq!(packets.len(), 3, "{packets:?}");
    let (name, mut data) = event(&packets[0]);
    // The log's newest offset, to recover from (see tests/recovery.rs).
    assert!(data["offset"].is_string(), "{data}");
    data.as_object_mut().unwrap().remove("offset");
    assert_eq!(
        (name, data),
        (
            "subscribed".into(),
            json!({"userId": "u1", "socketId": socket_id})
        )
    );
    assert_eq!(event(&packets[1]).1["userId"], "7");
    let mut ack: Value = serde_json::from_str(packets[2].strip_prefix("431").unwrap()).unwrap();
    ack[0].as_object_mut().unwrap().remove("offset");
    assert_eq!(ack, json!([{"userId": "7", "socketId": socket_id}]));

    // A GET with nothing to send is held until a push arrives.
    let waiter = {
        let sid = sid.clone();
        thread::spawn(move || poll(addr, &sid))
    };
    eventually("the GET to be held", || {
        get(&srv, "/v1/users/u1").1.contains("\"sockets\":1")
    });
    thread::sleep(Duration::from_millis(50));
    assert_eq!(push_to(&srv, "u1", "over polling"), 1);
    let packets = waiter.join().unwrap();
    let (name, n) = event(&packets[0]);
    assert_eq!(name, "notification");
    assert_eq!(n["message"], "over polling");
    assert!(n["timestamp"].is_string());
}

#[test]
fn unsubscribe_and_bad_arguments() {
    let srv = start_server();
    let addr = srv.public_addr;
    let (sid, _) = connected(addr);
    send(
        addr,
        &sid,
        &[
            r#"42["subscribe","u"]"#,
            r#"42["unsubscribe","u"]"#,
            r#"42["subscribe",""]"#,
            r#"42["dance"]"#,
        ],
    );
    let packets = poll(addr, &sid);
    assert_eq!(packets.len(), 3, "unknown events are ignored: {packets:?}");
    assert_eq!(
        event(&packets[1]),
        ("unsubscribed".into(), json!({"userId": "u"}))
    );
    let (name, err) = event(&packets[2]);
    assert_eq!(name, "error");
    assert!(err["message"].as_str().unwrap().contains("empty"), "{err}");
    assert_eq!(push_to(&srv, "u", "nobody"), 0);
}

#[test]
fn unknown_namespace_is_refused() {
    let srv = start_server();
    let addr = srv.public_addr;
    let (sid, _) = open_polling(addr);
    send(addr, &sid, &["40/admin,"]);
    assert_eq!(
        poll(addr, &sid),
        [r#"44/admin,{"message":"Invalid namespace"}"#]
    );
}

macro_rules! refused {
    ($($name:ident: ($method:expr, $query:expr) => ($status:expr, $code:expr);)*) => {$(
        #[test]
        fn $name() {
            let srv = start_server();
            let body = ($method == "POST").then_some("40");
            let (status, head, body) = http(srv.public_addr, $method, &path($query), body);
            assert_eq!(status, $status, "{head}\n{body}");
            let v: Value = serde_json::from_str(&body).expect("a JSON error body");
            assert_eq!(v["code"], $code, "{body}");
            assert!(v["message"].is_string());
        }
    )*};
}

refused! {
    missing_transport: ("GET", "EIO=4") => (400, 0);
    unknown_transport: ("GET", "EIO=4&transport=flash") => (400, 0);
    unknown_sid: ("GET", "EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA") => (400, 1);
    post_without_session: ("POST", "EIO=4&transport=polling") => (400, 2);
    missing_eio: ("GET", "transport=polling") => (400, 3);
    engine_io_v3: ("GET", "EIO=3&transport=polling") => (400, 5);
}

#[test]
fn version_3_is_told_only_v4_is_supported() {
    let srv = start_server();
    let (_, _, body) = http(
        srv.public_addr,
        "GET",
        &path("EIO=3&transport=polling"),
        None,
    );
    assert!(body.contains("EIO=4"), "{body}");
}

#[test]
fn a_second_concurrent_get_closes_the_session() {
    let srv = start_server();
    let addr = srv.public_addr;
    let (sid, _) = connected(addr);
    let first = {
        let sid = sid.clone();
        thread::spawn(move || poll(addr, &sid))
    };
    eventually("the first GET to be held", || {
        metric(&srv, "herald_socketio_polls_held") == 1.0
    });
    assert_eq!(poll_status(addr, &sid), 400);
    assert_eq!(
        first.join().unwrap(),
        ["1"],
        "the held GET is told the session closed"
    );
    assert_eq!(poll_status(addr, &sid), 400, "the session is gone");
}

#[test]
fn a_malformed_packet_closes_that_session_only() {
    let srv = start_server();
    let addr = srv.public_addr;
    let (bad, _) = connected(addr);
    let (good, _) = connected(addr);
    send(addr, &bad, &[r#"42{"not":"an array"}"#]);
    assert_eq!(poll_status(addr, &bad), 400);
    send(addr, &good, &[r#"42["subscribe","g"]"#]);
    assert_eq!(event(&poll(addr, &good)[0]).0, "subscribed");
}

#[test]
fn sessions_that_stop_polling_are_reaped() {
    let srv = start_server_with(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.ping_timeout = Duration::from_millis(100);
    });
    let addr = srv.public_addr;
    for _ in 0..20 {
        let (sid, _) = connected(addr);
        send(addr, &sid, &[r#"42["subscribe","leaky"]"#]);
    }
    assert_eq!(metric(&srv, "herald_socketio_sessions"), 20.0);
    eventually("every silent session to be reaped", || {
        metric(&srv, "herald_socketio_sessions") == 0.0
    });
    assert_eq!(metric(&srv, "herald_rooms"), 0.0);
    assert_eq!(
        get(&srv, "/v1/users/leaky").1,
        r#"{"userId":"leaky","online":false,"sockets":0}"#
    );
}

#[test]
fn heartbeat_keeps_a_polling_session_that_answers() {
    let srv = start_server_with(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.ping_timeout = Duration::from_millis(500);
    });
    let addr = srv.public_addr;
    let (sid, _) = connected(addr);
    for _ in 0..3 {
        assert_eq!(poll(addr, &sid), ["2"]);
        assert_eq!(send(addr, &sid, &["3"]).0, 200);
    }
    assert_eq!(metric(&srv, "herald_socketio_sessions"), 1.0);
}

#[test]
fn no_connect_within_the_timeout_closes() {
    let srv = start_server_with(|c| c.connect_timeout = Duration::from_millis(100));
    let (sid, _) = open_polling(srv.public_addr);
    eventually("the session to close", || {
        metric(&srv, "herald_socketio_sessions") == 0.0
    });
    assert_eq!(poll_status(srv.public_addr, &sid), 400);
}

#[test]
fn cors_reflects_only_allowed_origins() {
    let srv = start_server_with(|c| c.cors_origins = vec!["http://app.test:3000".into()]);
    let get_with = |origin: &str| {
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n",
            path("EIO=4&transport=polling")
        );
        raw_http(srv.public_addr, req.as_bytes())
            .1
            .to_ascii_lowercase()
    };
    let allowed = get_with("http://app.test:3000");
    assert!(
        allowed.contains("access-control-allow-origin: http://app.test:3000"),
        "{allowed}"
    );
    assert!(
        allowed.contains("access-control-allow-credentials: true"),
        "{allowed}"
    );
    let other = get_with("http://evil.test");
    assert!(!other.contains("access-control-allow-origin"), "{other}");
    let preflight = format!(
        "OPTIONS {} HTTP/1.1\r\nHost: x\r\nOrigin: http://app.test:3000\r\nAccess-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: content-type\r\nConnection: close\r\n\r\n",
        path("EIO=4&transport=polling")
    );
    let (status, head, _) = raw_http(srv.public_addr, preflight.as_bytes());
    assert_eq!(status, 204);
    assert!(
        head.to_ascii_lowercase()
            .contains("access-control-allow-methods"),
        "{head}"
    );
}

fn ws_text(ws: &mut Client) -> String {
    loop {
        match ws.read().expect("a message") {
            Message::Text(t) => return t,
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

#[test]
fn websocket_from_the_start() {
    let srv = start_server();
    let mut ws = connect_path(srv.public_addr, "/socket.io/?EIO=4&transport=websocket");
    let open: Value = serde_json::from_str(ws_text(&mut ws).strip_prefix('0').unwrap()).unwrap();
    assert_eq!(open["upgrades"], json!([]));
    ws.send(Message::Text("40".into())).unwrap();
    let connect = ws_text(&mut ws);
    assert!(connect.starts_with("40{\"sid\":"), "{connect}");
    ws.send(Message::Text(r#"42["subscribe","w"]"#.into()))
        .unwrap();
    assert_eq!(event(&ws_text(&mut ws)).0, "subscribed");
    // A raw /ws socket of the same user gets the same push.
    let mut raw = client_for(&srv, "w");
    assert_eq!(push_to(&srv, "w", "both"), 2);
    assert_eq!(event(&ws_text(&mut ws)).1["message"], "both");
    assert_eq!(recv_json(&mut raw)["data"]["message"], "both");
}

#[test]
fn upgrade_from_polling_to_websocket() {
    let srv = start_server();
    let addr = srv.public_addr;
    let (sid, _) = connected(addr);
    send(addr, &sid, &[r#"42["subscribe","up"]"#]);
    assert_eq!(event(&poll(addr, &sid)[0]).0, "subscribed");
    let held = {
        let sid = sid.clone();
        thread::spawn(move || poll(addr, &sid))
    };
    thread::sleep(Duration::from_millis(50));
    let mut ws = connect_path(
        addr,
        &format!("/socket.io/?EIO=4&transport=websocket&sid={sid}"),
    );
    ws.send(Message::Text("2probe".into())).unwrap();
    assert_eq!(ws_text(&mut ws), "3probe");
    assert_eq!(
        held.join().unwrap(),
        ["6"],
        "the held GET is released with a noop"
    );
    // A push between the probe and the upgrade waits in the polling queue, then goes over the
    // WebSocket once it takes over.
    assert_eq!(push_to(&srv, "up", "queued"), 1);
    ws.send(Message::Text("5".into())).unwrap();
    assert_eq!(event(&ws_text(&mut ws)).1["message"], "queued");
    assert_eq!(push_to(&srv, "up", "direct"), 1);
    assert_eq!(event(&ws_text(&mut ws)).1["message"], "direct");
    // Polling is over for this session.
    assert_eq!(poll_status(addr, &sid), 400);
}

/// A second WebSocket for a session that has upgraded was refused with HTTP 400 at its
/// handshake, which Node's `ws` raises as an uncaught error (the official Engine.IO suite's
/// "ignores WebSocket connection with same sid after upgrade" failed on it). The reference
/// server opens it and closes it at once; the session keeps its own WebSocket.
#[test]
fn a_second_websocket_for_an_upgraded_session_is_opened_and_closed() {
    let srv = start_server();
    let addr = srv.public_addr;
    let (sid, _) = connected(addr);
    send(addr, &sid, &[r#"42["subscribe","twice"]"#]);
    assert_eq!(event(&poll(addr, &sid)[0]).0, "subscribed");
    let target = format!("/socket.io/?EIO=4&transport=websocket&sid={sid}");
    let mut ws = connect_path(addr, &target);
    ws.send(Message::Text("2probe".into())).unwrap();
    assert_eq!(ws_text(&mut ws), "3probe");
    ws.send(Message::Text("5".into())).unwrap();
    // No GET was held: the noop meant for it comes over the WebSocket once that takes over.
    assert_eq!(ws_text(&mut ws), "6");
    let mut second = connect_path(addr, &target);
    assert_eq!(expect_close_code(&mut second), 1008);
    assert_eq!(push_to(&srv, "twice", "still here"), 1);
    assert_eq!(event(&ws_text(&mut ws)).1["message"], "still here");
}

#[test]
fn a_socketio_client_is_disconnected_on_shutdown_with_1012() {
    let srv = start_server();
    let mut ws = connect_path(srv.public_addr, "/socket.io/?EIO=4&transport=websocket");
    ws_text(&mut ws);
    srv.shutdown();
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 1012);
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("expected close 1001: {e}"),
        }
    }
}

/// `40/random`, a CONNECT whose namespace has no `,` after it, was refused by the decoder and
/// closed the WebSocket with 1002, and so did `41/custom`. socket.io-client always writes the
/// `,`, but socket.io-parser reads the namespace to the end of the packet, the official
/// socket.io-protocol suite sends both packets that way, and other clients may too. The CONNECT
/// must be refused as any unknown namespace is, and the DISCONNECT leave the session as it was.
#[test]
fn a_namespace_may_end_the_packet_without_its_comma() {
    let srv = start_server();
    let mut ws = sio_websocket(srv.public_addr);
    ws.send(Message::Text("40/random".into())).unwrap();
    assert_eq!(
        recv_text(&mut ws),
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    ws.send(Message::Text("40".into())).unwrap();
    assert!(recv_text(&mut ws).starts_with("40{\"sid\":"));
    ws.send(Message::Text("41/custom".into())).unwrap();
    ws.send(Message::Text(r#"42["subscribe","n"]"#.into()))
        .unwrap();
    assert_eq!(sio_event(&recv_text(&mut ws)).0, "subscribed");
}

/// A polling client that closed its session (`1` in a POST) while its GET was held got `1` on
/// that GET, as if the server had closed it. engine.io's polling transport answers such a GET
/// with a noop (`Polling.onClose`), and the official engine.io-protocol suite expects `6`.
#[test]
fn a_client_close_releases_the_held_get_with_a_noop() {
    let srv = start_server();
    let addr = srv.public_addr;
    let (sid, _) = connected(addr);
    let held = {
        let sid = sid.clone();
        thread::spawn(move || poll(addr, &sid))
    };
    eventually("the GET to be held", || {
        metric(&srv, "herald_socketio_polls_held") == 1.0
    });
    assert_eq!(send(addr, &sid, &["1"]), (200, "ok".to_string()));
    assert_eq!(held.join().unwrap(), ["6"]);
    assert_eq!(poll_status(addr, &sid), 400, "the session is gone");
}

/// After a client's `41` (leaving `/`), herald armed its connect timer again and closed the
/// Engine.IO session a connect timeout later. The reference server arms that timer once, for a
/// client that never connected, and keeps a session that left `/` open, so the client may
/// CONNECT again on it.
#[test]
fn leaving_the_main_namespace_keeps_the_session() {
    let srv = start_server_with(|c| c.connect_timeout = Duration::from_millis(100));
    let mut ws = sio_websocket(srv.public_addr);
    ws.send(Message::Text("40".into())).unwrap();
    assert!(recv_text(&mut ws).starts_with("40{\"sid\":"));
    ws.send(Message::Text("41".into())).unwrap();
    // Several connect timeouts: the session would have been closed by now.
    thread::sleep(Duration::from_millis(500));
    assert_eq!(metric(&srv, "herald_socketio_sessions"), 1.0);
    ws.send(Message::Text("40".into())).unwrap();
    assert!(recv_text(&mut ws).starts_with("40{\"sid\":"));
}

/// An event herald does not know, sent with an ack id, was ignored, so the client's
/// `emitWithAck` waited for its whole timeout. Its ack is answered with an error at once; the
/// same event without an ack id is still ignored, as the reference server ignores an event
/// nobody listens to.
#[test]
fn an_unknown_event_with_an_ack_id_is_answered_with_an_error() {
    let srv = start_server();
    let mut ws = sio_websocket(srv.public_addr);
    ws.send(Message::Text("40".into())).unwrap();
    assert!(recv_text(&mut ws).starts_with("40{\"sid\":"));
    for packet in [
        r#"42["dance"]"#,
        r#"427["dance",1]"#,
        r#"42["subscribe","a"]"#,
    ] {
        ws.send(Message::Text(packet.into())).unwrap();
    }
    assert_eq!(recv_text(&mut ws), r#"437[{"error":"unknown event"}]"#);
    assert_eq!(sio_event(&recv_text(&mut ws)).0, "subscribed");
}
