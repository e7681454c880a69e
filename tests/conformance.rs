//! Autobahn|Testsuite's server cases, reproduced over real sockets against the echo route
//! (`--echo-path`): groups 1-7, 9, 12 and 13, one test per group, each printing how many of its
//! cases pass; and cases Autobahn does not have: unmasked client frames, 64-bit lengths with the
//! top bit set, and every TCP split of a stream.
//!
//! `cargo test --release --test conformance -- --show-output` prints the count per group.
//! The raw frame client and the case runner are in `conformance/client.rs`.

mod common;

mod conformance {
    #[macro_use]
    pub mod client;
    mod beyond;
    mod group1;
    mod group12;
    mod group13;
    mod group2;
    mod group3;
    mod group4;
    mod group5;
    mod group6;
    mod group7;
    mod group9;
}

use std::io::ErrorKind;

use common::{push_to, start_server, start_server_with};
use conformance::client::*;
use herald::config::Config;
use serde_json::json;

#[test]
fn without_the_flag_the_echo_path_answers_404() {
    let srv = start_server();
    let (_, status) = Ws::request(srv.public_addr, ECHO, "");
    assert_eq!(status, 404);
    // The endpoints that are on still upgrade.
    let (_, status) = Ws::request(srv.public_addr, "/ws", "");
    assert_eq!(status, 101);
}

#[test]
fn the_echo_route_sends_every_message_back() {
    let srv = server();
    let mut ws = Ws::connect(srv.public_addr);
    assert!(!ws.deflate, "no extension was offered: {}", ws.head);
    ws.send(
        &frame(OP_TEXT, b"{\"event\":\"subscribe\",\"data\":\"u1\"}"),
        How::Whole,
    );
    ws.expect(&text(b"{\"event\":\"subscribe\",\"data\":\"u1\"}"));
    ws.send(&frame(OP_BINARY, &[0, 1, 2, 0xFF]), How::Whole);
    ws.expect(&binary([0, 1, 2, 0xFF]));
    ws.probe(b"still there");
    // It speaks no protocol of its own: the subscribe above subscribed nobody, and pushes (here
    // a broadcast) pass it by.
    assert_eq!(push_to(&srv, "u1", "hello"), 0);
    let (status, body) = common::post(
        &srv,
        "/v1/broadcast",
        json!({"notification": {"message": "all"}}),
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["sockets"], 0);
    ws.close_clean();
}

#[test]
fn the_echo_compresses_what_is_worth_it_when_deflate_was_agreed() {
    let srv = server();
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let mut ws = Ws::connect_with(srv.public_addr, offer);
    assert!(ws.deflate, "{}", ws.head);
    let json = "{\"type\":\"DIGEST\",\"items\":[1,2,3,4,5,6,7,8,9,10]}".repeat(40);
    // Sent plain, echoed compressed: RSV1 is chosen per message.
    ws.send(&frame(OP_TEXT, json.as_bytes()), How::Whole);
    ws.expect(&text(&json));
    assert_eq!(ws.compressed, 1, "the echo came back compressed");
    // Sent compressed, echoed compressed.
    ws.send(
        &frame_rsv(true, 0b100, OP_BINARY, &deflate(json.as_bytes())),
        How::Whole,
    );
    ws.expect(&binary(&json));
    assert_eq!(ws.compressed, 2);
    ws.close_clean();
}

#[test]
fn shutdown_closes_echo_connections_with_1012() {
    let srv = server();
    let mut ws = Ws::connect(srv.public_addr);
    ws.probe(b"open");
    srv.shutdown();
    ws.expect_fail(&[1012], std::time::Instant::now());
    drop(ws);
    srv.join().unwrap();
}

#[test]
fn an_echo_client_over_its_message_rate_is_dropped_then_closed_with_1008() {
    let srv = start_server_with(|c| {
        c.echo_path = Some(ECHO.to_owned());
        c.client_rate = 1;
        c.client_burst = 3;
    });
    let mut ws = Ws::connect(srv.public_addr);
    // Three within the burst are echoed; the fourth is dropped (the echo has no error event to
    // warn with), and once more than a burst's worth has been dropped in a row, 1008.
    let frames: Vec<Vec<u8>> = (0..10)
        .map(|i| frame(OP_TEXT, format!("{i}").as_bytes()))
        .collect();
    let _ = ws.send_frames(&frames, How::Whole);
    let since = std::time::Instant::now();
    for i in 0..3 {
        ws.expect(&text(format!("{i}")));
    }
    ws.expect_fail(&[1008], since);
}

#[test]
fn an_idle_echo_connection_is_pinged() {
    let srv = start_server_with(|c| {
        c.echo_path = Some(ECHO.to_owned());
        c.ping_interval = std::time::Duration::from_millis(100);
    });
    let mut ws = Ws::connect(srv.public_addr);
    assert_eq!(ws.read_msg(), Some(Msg::Ping(Vec::new())));
    ws.send(&frame(OP_PONG, b""), How::Whole);
    ws.close_clean();
}

#[test]
fn an_echo_path_taken_by_another_endpoint_is_refused_at_start() {
    for taken in ["/ws", "/socket.io/"] {
        let mut c = Config::for_tests();
        c.echo_path = Some(taken.to_owned());
        let err = herald::server::start(c).err().expect("refused");
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("--echo-path"), "{err}");
    }
    // And one that is free starts.
    let srv = start_server_with(|c| c.echo_path = Some("/conformance".into()));
    let (_, status) = Ws::request(srv.public_addr, "/conformance", "");
    assert_eq!(status, 101);
}
