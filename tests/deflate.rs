//! permessage-deflate over real sockets: what herald agrees to, that a push reaches compressing
//! and plain clients alike from one compressor run, that compressed client messages are
//! understood, and that bad compressed input is answered with the right close code.
//!
//! The client side compresses and inflates with flate2 directly, not with herald's own codec.

mod common;

use std::io::{Read, Write};

use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;
use serde_json::{json, Value};

use common::*;

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const AGREED: &str = "Sec-WebSocket-Extensions: permessage-deflate; \
                      server_no_context_takeover; client_no_context_takeover\r\n";

/// RFC 7692 §7.2.1 as a client does it: raw DEFLATE, sync flush, tail removed.
fn compress(data: &[u8]) -> Vec<u8> {
    let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).unwrap();
    enc.flush().unwrap();
    let mut out = enc.get_ref().clone();
    assert!(out.ends_with(&[0x00, 0x00, 0xFF, 0xFF]));
    out.truncate(out.len() - 4);
    out
}

/// RFC 7692 §7.2.2: put the tail back and inflate.
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut data = payload.to_vec();
    data.extend_from_slice(&[0x00, 0x00, 0xFF, 0xFF]);
    let mut out = Vec::new();
    // The tail is a sync point, not the end of the stream: read what it yields.
    let _ = DeflateDecoder::new(&data[..]).read_to_end(&mut out);
    out
}

/// A masked client frame with RSV1 (compressed) set.
fn compressed_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    herald::ws::frame::encode_masked(fin, opcode, 0b100, payload, [0x11, 0x22, 0x33, 0x44])
}

fn deflate_client(srv: &herald::server::Running) -> RawClient {
    let (client, head) = RawClient::open(srv.public_addr, "/ws", OFFER);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains(AGREED), "{head}");
    client
}

/// Reads the next data message as JSON, inflating it when RSV1 is set; returns whether it was.
fn recv(client: &mut RawClient) -> (bool, Value) {
    loop {
        let (b0, payload) = client.read_frame_raw().expect("a frame");
        if b0 & 0x0F == 0x9 {
            continue;
        }
        assert_eq!(b0 & 0x80, 0x80, "herald never fragments");
        let compressed = b0 & 0x40 != 0;
        let bytes = if compressed {
            inflate(&payload)
        } else {
            payload
        };
        return (compressed, serde_json::from_slice(&bytes).expect("JSON"));
    }
}

/// A notification of about 3 KiB: over the default 1 KiB threshold.
fn digest(message: &str) -> Value {
    let items: Vec<Value> = (0..40)
        .map(|i| json!({"id": i, "title": "New comment on your post", "read": false}))
        .collect();
    json!({"type": "DIGEST", "message": message, "actorId": "u-9", "data": {"items": items}})
}

#[test]
fn the_offer_is_answered_per_rfc_7692() {
    let srv = start_server();
    let addr = srv.public_addr;
    let mut open = Vec::new();
    for (offer, agreed) in [
        (OFFER, Some(AGREED)),
        (
            "Sec-WebSocket-Extensions: permessage-deflate\r\n",
            Some(AGREED),
        ),
        (
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=15\r\n",
            Some("client_no_context_takeover; server_max_window_bits=15\r\n"),
        ),
        // A window herald cannot honour, an unknown parameter, another extension: declined.
        (
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n",
            None,
        ),
        (
            "Sec-WebSocket-Extensions: permessage-deflate; foo=1\r\n",
            None,
        ),
        ("Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n", None),
        ("", None),
    ] {
        let (client, head) = RawClient::open(addr, "/ws", offer);
        open.push(client);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        match agreed {
            Some(line) => assert!(head.contains(line), "offer {offer:?} got {head}"),
            None => assert!(
                !head.contains("Sec-WebSocket-Extensions"),
                "offer {offer:?} got {head}"
            ),
        }
    }
    eventually("the agreed sockets to be counted", || {
        metric(&srv, "herald_deflate_websockets") == 3.0
    });
}

#[test]
fn disabled_deflate_declines_every_offer() {
    let srv = start_server_with(|c| c.deflate = false);
    let (mut client, head) = RawClient::open(srv.public_addr, "/ws", OFFER);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(!head.contains("Sec-WebSocket-Extensions"), "{head}");
    // And RSV1 is then a protocol error, as without any extension.
    client.send(&compressed_frame(true, 0x1, &compress(b"{}")));
    assert_eq!(client.expect_close(), 1002);
}

#[test]
fn one_compressor_run_serves_every_deflate_client() {
    let srv = start_server();
    let mut zipped: Vec<RawClient> = (0..20).map(|_| deflate_client(&srv)).collect();
    // Compressing clients subscribe with compressed messages.
    for c in &mut zipped {
        let subscribe = json!({"event": "subscribe", "data": "alice"}).to_string();
        c.send(&compressed_frame(
            true,
            0x1,
            &compress(subscribe.as_bytes()),
        ));
        let (_, reply) = recv(c);
        assert_eq!(reply["event"], "subscribed", "{reply}");
    }
    let mut plain: Vec<Client> = (0..5).map(|_| client_for(&srv, "alice")).collect();
    assert_eq!(metric(&srv, "herald_messages_inflated_total"), 20.0);

    let big = digest("weekly digest");
    let (status, body) = post(&srv, "/v1/users/alice/notifications", big.clone());
    assert_eq!(
        (status, body["sockets"].as_u64()),
        (202, Some(25)),
        "{body}"
    );
    let mut first = None;
    for c in &mut zipped {
        let (compressed, m) = recv(c);
        assert!(compressed, "a 3 KiB push goes out compressed");
        assert_eq!(m["event"], "notification");
        assert_eq!(m["data"]["data"], big["data"]);
        first.get_or_insert(m.clone());
        assert_eq!(
            Some(&m),
            first.as_ref(),
            "every deflate client gets the same message"
        );
    }
    for ws in &mut plain {
        let m = recv_json(ws);
        assert_eq!(
            Some(&m),
            first.as_ref(),
            "plain clients get the same content"
        );
    }
    // Once per push and wire form on each worker holding recipients: each has its compressor.
    let runs = metric(&srv, "herald_deflate_compressions_total");
    assert!(
        runs >= 1.0 && runs <= metric(&srv, "herald_workers"),
        "{runs} compressor runs"
    );
    assert_eq!(metric(&srv, "herald_deliveries_compressed_total"), 20.0);

    // Below the threshold, deflate clients get the plain frame and nothing is compressed.
    assert_eq!(push_to(&srv, "alice", "small"), 25);
    for c in &mut zipped {
        let (compressed, m) = recv(c);
        assert!(!compressed);
        assert_eq!(m["data"]["message"], "small");
    }
    assert_eq!(metric(&srv, "herald_deflate_compressions_total"), runs);
}

#[test]
fn a_compressed_message_may_be_fragmented() {
    let srv = start_server();
    let mut c = deflate_client(&srv);
    let z = compress(
        json!({"event": "subscribe", "data": "bob"})
            .to_string()
            .as_bytes(),
    );
    let (a, b) = z.split_at(z.len() / 2);
    // RSV1 on the first frame only, a ping between the fragments.
    c.send(&compressed_frame(false, 0x1, a));
    c.send(&client_frame(true, 0x9, b"hi"));
    c.send(&client_frame(true, 0x0, b));
    let (op, pong) = c.read_frame().unwrap();
    assert_eq!((op, &pong[..]), (0xA, &b"hi"[..]));
    let (_, reply) = recv(&mut c);
    assert_eq!(reply["data"]["userId"], "bob", "{reply}");
}

#[test]
fn bad_compressed_input_is_answered_with_its_close_code() {
    let srv = start_server_with(|c| c.max_message = 64 * 1024);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        // RFC 7692 §6.1: RSV1 on a control frame or a continuation fails the connection.
        ("rsv1 on ping", compressed_frame(true, 0x9, b""), 1002),
        (
            "rsv1 on continuation",
            [
                compressed_frame(false, 0x1, &compress(b"{\"event\":")),
                compressed_frame(true, 0x0, b""),
            ]
            .concat(),
            1002,
        ),
        ("not deflate", compressed_frame(true, 0x1, &[0xFF; 8]), 1007),
        (
            "invalid UTF-8 inside",
            compressed_frame(true, 0x1, &compress(b"\xC0\xAF")),
            1007,
        ),
        // 16 MiB of zeros in about 16 KiB: refused once 64 KiB have come out.
        (
            "decompression bomb",
            compressed_frame(true, 0x2, &compress(&vec![0; 16 << 20])),
            1009,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut c = deflate_client(&srv);
        c.send(&bytes);
        assert_eq!(c.expect_close(), code, "{what}");
    }
    let closes = |code: u16| metric(&srv, &format!("herald_closes_total{{code=\"{code}\"}}"));
    eventually("the closes to be counted", || {
        closes(1002) == 2.0 && closes(1007) == 2.0 && closes(1009) == 1.0
    });
}

#[test]
fn socketio_websocket_transport_compresses_too() {
    let srv = start_server();
    let (mut c, head) = RawClient::open(
        srv.public_addr,
        "/socket.io/?EIO=4&transport=websocket",
        OFFER,
    );
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains(AGREED), "{head}");
    let text = |c: &mut RawClient| -> (bool, String) {
        loop {
            let (b0, payload) = c.read_frame_raw().expect("a frame");
            if b0 & 0x0F == 0x9 {
                continue;
            }
            let compressed = b0 & 0x40 != 0;
            let bytes = if compressed {
                inflate(&payload)
            } else {
                payload
            };
            return (compressed, String::from_utf8(bytes).unwrap());
        }
    };
    let (_, open) = text(&mut c);
    assert!(open.starts_with("0{"), "{open}");
    // CONNECT to "/" and subscribe, both sent compressed.
    c.send(&compressed_frame(true, 0x1, &compress(b"40")));
    let (_, connected) = text(&mut c);
    assert!(connected.starts_with("40{"), "{connected}");
    c.send(&compressed_frame(
        true,
        0x1,
        &compress(br#"421["subscribe","carol"]"#),
    ));
    let mut subscribed = false;
    while !subscribed {
        let (_, m) = text(&mut c);
        subscribed = m.starts_with("431[") || m.starts_with(r#"42["subscribed""#);
    }
    let big = digest("to a socket.io client");
    let (status, _) = post(&srv, "/v1/users/carol/notifications", big.clone());
    assert_eq!(status, 202);
    loop {
        let (compressed, m) = text(&mut c);
        if let Some(event) = m.strip_prefix("42") {
            let v: Value = serde_json::from_str(event).unwrap();
            if v[0] == "notification" {
                assert!(compressed, "a 3 KiB push goes out compressed");
                assert_eq!(v[1]["data"], big["data"]);
                break;
            }
        }
    }
    assert!(metric(&srv, "herald_messages_inflated_total") >= 2.0);
    assert_eq!(metric(&srv, "herald_deflate_compressions_total"), 1.0);
}
