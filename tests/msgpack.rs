//! The raw protocol's MessagePack mode over real sockets: chosen by subprotocol or query, the same
//! `{event, data}` envelope both ways in binary frames, and the same notification content a JSON
//! client receives in the same run.

mod common;

use std::io::Read;

use flate2::read::DeflateDecoder;
use serde::Serialize;
use serde_json::{json, Value};

use common::*;

const MSGPACK: &str = "Sec-WebSocket-Protocol: herald.msgpack\r\n";

#[derive(Serialize)]
struct Envelope<'a> {
    event: &'a str,
    data: &'a str,
}

fn encode(event: &str, data: &str) -> Vec<u8> {
    rmp_serde::to_vec_named(&Envelope { event, data }).unwrap()
}

/// Reads the next data message: (opcode, decoded envelope). Binary frames are MessagePack, text
/// frames JSON; compressed ones are inflated first.
fn recv(c: &mut RawClient) -> (u8, Value) {
    loop {
        let (b0, payload) = c.read_frame_raw().expect("a frame");
        let op = b0 & 0x0F;
        if op == 0x9 {
            continue;
        }
        let bytes = if b0 & 0x40 != 0 {
            let mut data = payload;
            data.extend_from_slice(&[0x00, 0x00, 0xFF, 0xFF]);
            let mut out = Vec::new();
            let _ = DeflateDecoder::new(&data[..]).read_to_end(&mut out);
            out
        } else {
            payload
        };
        let value = match op {
            0x2 => rmp_serde::from_slice(&bytes).expect("MessagePack"),
            0x1 => serde_json::from_slice(&bytes).expect("JSON"),
            other => panic!("unexpected opcode {other:#x}"),
        };
        return (op, value);
    }
}

fn msgpack_client(srv: &herald::server::Running, target: &str, extra: &str) -> RawClient {
    let (c, head) = RawClient::open(srv.public_addr, target, extra);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    c
}

fn subscribe(c: &mut RawClient, user: &str) -> Value {
    c.send(&herald::ws::frame::encode_masked(
        true,
        0x2,
        0,
        &encode("subscribe", user),
        [1, 2, 3, 4],
    ));
    let (op, reply) = recv(c);
    assert_eq!(op, 0x2, "MessagePack replies come in binary frames");
    assert_eq!(reply["event"], "subscribed", "{reply}");
    reply
}

#[test]
fn msgpack_and_json_clients_receive_the_same_notification() {
    let srv = start_server();
    let (mut by_protocol, head) = RawClient::open(srv.public_addr, "/ws", MSGPACK);
    assert!(head.contains(MSGPACK), "the subprotocol is echoed: {head}");
    let mut by_query = msgpack_client(&srv, "/ws?format=msgpack", "");
    let mut json_client = client_for(&srv, "dana");
    let reply = subscribe(&mut by_protocol, "dana");
    assert_eq!(reply["data"]["userId"], "dana");
    assert!(reply["data"]["socketId"]
        .as_str()
        .is_some_and(|s| s.len() == 20));
    subscribe(&mut by_query, "dana");

    let sent = json!({"type": "MENTION", "message": "you were mentioned", "actorId": 42,
                      "data": {"postId": "p-1", "score": -3.5, "tags": ["a", "é"], "big": u64::MAX,
                               "none": null, "ok": true}});
    let (status, body) = post(&srv, "/v1/users/dana/notifications", sent.clone());
    assert_eq!((status, body["sockets"].as_u64()), (202, Some(3)), "{body}");
    let from_json = recv_json(&mut json_client);
    for c in [&mut by_protocol, &mut by_query] {
        let (op, m) = recv(c);
        assert_eq!(op, 0x2);
        assert_eq!(m, from_json, "the same envelope, decoded from MessagePack");
    }
    assert_eq!(from_json["data"]["data"], sent["data"]);
}

#[test]
fn the_format_is_negotiated_per_rfc_6455() {
    let srv = start_server();
    for (extra, target, echoed) in [
        (
            "Sec-WebSocket-Protocol: chat, herald.msgpack\r\n",
            "/ws",
            Some("herald.msgpack"),
        ),
        (
            "Sec-WebSocket-Protocol: herald.json\r\n",
            "/ws",
            Some("herald.json"),
        ),
        // Only unknown subprotocols: herald picks none and omits the header (RFC 6455 §4.2.2).
        ("Sec-WebSocket-Protocol: chat\r\n", "/ws", None),
        ("", "/ws?format=json", None),
    ] {
        let (_c, head) = RawClient::open(srv.public_addr, target, extra);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        match echoed {
            Some(p) => assert!(
                head.contains(&format!("Sec-WebSocket-Protocol: {p}\r\n")),
                "{head}"
            ),
            None => assert!(!head.contains("Sec-WebSocket-Protocol"), "{head}"),
        }
    }
    for (extra, target) in [
        ("", "/ws?format=xml"),
        (
            "Sec-WebSocket-Protocol: herald.json\r\n",
            "/ws?format=msgpack",
        ),
    ] {
        let (mut c, head) = RawClient::open(srv.public_addr, target, extra);
        assert!(head.starts_with("HTTP/1.1 400"), "{target}: {head}");
        let mut body = String::new();
        let _ = c.stream.read_to_string(&mut body);
        let body: Value = serde_json::from_str(&body).expect("a JSON error body");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
}

#[test]
fn wrong_frame_kinds_get_an_error_event_in_the_clients_format() {
    let srv = start_server();
    let mut c = msgpack_client(&srv, "/ws", MSGPACK);
    c.send(&client_frame(
        true,
        0x1,
        br#"{"event":"subscribe","data":"u"}"#,
    ));
    let (op, m) = recv(&mut c);
    assert_eq!((op, &m["event"]), (0x2, &json!("error")), "{m}");
    assert!(
        m["data"]["message"].as_str().unwrap().contains("binary"),
        "{m}"
    );
    // Not MessagePack at all.
    c.send(&client_frame(true, 0x2, &[0xC1, 0x00]));
    let (_, m) = recv(&mut c);
    assert_eq!(m["event"], "error", "{m}");
    // The socket stays open and works.
    subscribe(&mut c, "erin");
    assert_eq!(push_to(&srv, "erin", "still here"), 1);
    let (_, m) = recv(&mut c);
    assert_eq!(m["data"]["message"], "still here");
}

#[test]
fn msgpack_frames_are_compressed_once_like_json_ones() {
    let srv = start_server();
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let mut clients: Vec<RawClient> = (0..3)
        .map(|_| msgpack_client(&srv, "/ws", &format!("{MSGPACK}{offer}")))
        .collect();
    for c in &mut clients {
        subscribe(c, "fay");
    }
    let long = "a long notification text ".repeat(100);
    assert_eq!(push_to(&srv, "fay", &long), 3);
    for c in &mut clients {
        let b0 = {
            let (b0, payload) = c.read_frame_raw().unwrap();
            let mut data = payload;
            data.extend_from_slice(&[0x00, 0x00, 0xFF, 0xFF]);
            let mut out = Vec::new();
            let _ = DeflateDecoder::new(&data[..]).read_to_end(&mut out);
            let m: Value = rmp_serde::from_slice(&out).unwrap();
            assert_eq!(m["data"]["message"], long.as_str());
            b0
        };
        assert_eq!(b0, 0xC2, "FIN, RSV1, binary");
    }
    // Once per push and wire form on each worker holding recipients: each has its compressor.
    let runs = metric(&srv, "herald_deflate_compressions_total");
    assert!(
        runs >= 1.0 && runs <= metric(&srv, "herald_workers"),
        "{runs} compressor runs"
    );
}

#[test]
fn a_push_with_no_msgpack_form_skips_only_msgpack_sockets() {
    let srv = start_server();
    let mut m = msgpack_client(&srv, "/ws", MSGPACK);
    subscribe(&mut m, "gus");
    let mut j = client_for(&srv, "gus");
    // Valid JSON, but beyond what MessagePack's float64 holds.
    let (status, _, body) = http(
        srv.control_addr,
        "POST",
        "/v1/users/gus/notifications",
        Some(r#"{"type":"T","message":"huge","n":1e400}"#),
    );
    assert_eq!(status, 202, "{body}");
    // JSON clients get the bytes as the service sent them (a JSON parser may call it infinity).
    match j.read().expect("a message") {
        tungstenite::Message::Text(t) => assert!(t.contains(r#""n":1e400"#), "{t}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(push_to(&srv, "gus", "after"), 2);
    let (_, next) = recv(&mut m);
    assert_eq!(
        next["data"]["message"], "after",
        "the MessagePack socket skipped only that push"
    );
    assert_eq!(metric(&srv, "herald_msgpack_skipped_total"), 1.0);
}
