//! Protocol faults close the connection with the RFC 6455 code, and a valid byte stream means the
//! same however TCP splits it.

mod common;

use std::thread::sleep;
use std::time::Duration;

use common::*;

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONT: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut f = vec![first, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

macro_rules! closes_with {
    ($($name:ident: $bytes:expr => $code:expr;)*) => {$(
        #[test]
        fn $name() {
            let srv = start_server();
            let mut c = RawClient::connect(srv.public_addr);
            c.send(&$bytes);
            assert_eq!(c.expect_close(), $code);
        }
    )*};
}

closes_with! {
    unmasked_frame: [0x81, 0x02, b'h', b'i'] => 1002;
    rsv1_without_extension: masked(0x80 | 0x40 | TEXT, b"hi") => 1002;
    rsv2: masked(0x80 | 0x20 | TEXT, b"hi") => 1002;
    rsv3: masked(0x80 | 0x10 | TEXT, b"hi") => 1002;
    reserved_data_opcode: masked(0x83, b"") => 1002;
    reserved_control_opcode: masked(0x8B, b"") => 1002;
    fragmented_ping: masked(PING, b"x") => 1002;
    ping_over_125_bytes: {
        let mut f = vec![0x89, 0x80 | 126, 0, 126, 0, 0, 0, 0];
        f.extend(std::iter::repeat_n(0, 126));
        f
    } => 1002;
    stray_continuation: masked(0x80 | CONT, b"x") => 1002;
    missing_continuation: [masked(TEXT, b"a"), masked(0x80 | TEXT, b"b")].concat() => 1002;
    length_with_top_bit: [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0] => 1002;
    close_with_one_byte: masked(0x80 | CLOSE, &[0x03]) => 1002;
    close_with_reserved_code: masked(0x80 | CLOSE, &1005u16.to_be_bytes()) => 1002;
    close_with_code_999: masked(0x80 | CLOSE, &999u16.to_be_bytes()) => 1002;
    close_with_invalid_utf8_reason: masked(0x80 | CLOSE, &[0x03, 0xE8, 0xFF]) => 1002;
    invalid_utf8_text: masked(0x80 | TEXT, &[b'a', 0xFF]) => 1007;
    invalid_utf8_across_fragments: [masked(TEXT, &[0xCE]), masked(0x80 | CONT, &[0x41])].concat() => 1007;
    // The text is invalid at its second byte; herald must not wait for the final fragment.
    invalid_utf8_fails_fast: masked(TEXT, &[0xF4, 0x90]) => 1007;
    surrogate_is_invalid: masked(0x80 | TEXT, &[0xED, 0xA0, 0x80]) => 1007;
    message_over_limit_from_header: [0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0] => 1009;
}

#[test]
fn client_close_is_echoed_and_tcp_closed() {
    let srv = start_server();
    let mut c = RawClient::connect(srv.public_addr);
    c.send(&masked(0x80 | CLOSE, &[0x03, 0xE8, b'b', b'y', b'e']));
    assert_eq!(c.expect_close(), 1000);
}

#[test]
fn message_over_the_limit_summed_over_fragments() {
    let srv = start_server_with(|c| c.max_message = 100);
    let mut c = RawClient::connect(srv.public_addr);
    c.send(&masked(BINARY, &[0; 60]));
    c.send(&masked(0x80 | CONT, &[0; 60]));
    assert_eq!(c.expect_close(), 1009);
}

/// The fragment flood: a text frame with FIN clear, then `continuations` empty masked
/// continuations that never finish the message. Six bytes each, nothing added to the message's
/// size, so only a count of frames stops it.
fn fragment_flood(first: Vec<u8>, continuations: usize) -> Vec<u8> {
    let empty = masked(CONT, b"");
    let mut out = first;
    for _ in 0..continuations {
        out.extend_from_slice(&empty);
    }
    out
}

#[test]
fn fragment_flood_closes_with_1009() {
    let srv = start_server();
    let mut c = RawClient::connect(srv.public_addr);
    c.send(&fragment_flood(masked(TEXT, b"{"), 5_000));
    assert_eq!(c.expect_close(), 1009);
}

#[test]
fn fragment_flood_closes_with_1009_when_compressed() {
    let srv = start_server();
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let (mut c, head) = RawClient::open(srv.public_addr, "/ws", offer);
    assert!(head.contains("permessage-deflate"), "{head}");
    // RSV1 on the first frame: the start of "Hello" compressed (RFC 7692 §7.2.3.1).
    c.send(&fragment_flood(masked(0x40 | TEXT, &[0xF2, 0x48]), 5_000));
    assert_eq!(c.expect_close(), 1009);
}

#[test]
fn a_message_of_exactly_max_fragments_is_understood_and_one_more_is_not() {
    const MAX: u32 = 8;
    let srv = start_server_with(|c| c.max_fragments = MAX);
    let message = br#"{"event":"subscribe","data":"frag"}"#;
    let mut c = RawClient::connect(srv.public_addr);
    let (n, len) = (MAX as usize, message.len());
    let pieces: Vec<&[u8]> = (0..n)
        .map(|i| &message[i * len / n..(i + 1) * len / n])
        .collect();
    for (i, piece) in pieces.iter().enumerate() {
        let first = if i == 0 { TEXT } else { CONT };
        let fin = if i + 1 == pieces.len() { 0x80 } else { 0 };
        c.send(&masked(fin | first, piece));
        if fin == 0 {
            // Pings between fragments are not fragments.
            c.send(&masked(0x80 | PING, b""));
            assert_eq!(c.read_frame(), Some((0xA, Vec::new())));
        }
    }
    let (op, payload) = c.read_frame().expect("an answer");
    assert_eq!(op, TEXT);
    let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(v["event"], "subscribed", "{v}");

    // The same message in one more frame: the empty last one is the frame too many.
    for (i, piece) in pieces.iter().enumerate() {
        c.send(&masked(if i == 0 { TEXT } else { CONT }, piece));
    }
    c.send(&masked(0x80 | CONT, b""));
    assert_eq!(c.expect_close(), 1009);
}

#[test]
fn ping_is_answered_with_the_same_payload_even_mid_message() {
    let srv = start_server();
    let mut c = RawClient::connect(srv.public_addr);
    c.send(&masked(TEXT, br#"{"event":"subscr"#));
    c.send(&masked(0x80 | PING, b"are you there"));
    assert_eq!(c.read_frame(), Some((0xA, b"are you there".to_vec())));
    c.send(&masked(0x80 | CONT, br#"ibe","data":"u"}"#));
    let (op, payload) = c.read_frame().unwrap();
    assert_eq!(op, TEXT);
    let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(v["event"], "subscribed");
}

/// The stream a split test sends: a fragmented subscribe with a ping between its fragments, then
/// an unsubscribe; and the frames herald answers with.
fn split_stream() -> Vec<u8> {
    [
        masked(TEXT, br#"{"event":"subscr"#),
        masked(0x80 | PING, b"p"),
        masked(0x80 | CONT, br#"ibe","data":"split"}"#),
        masked(0x80 | TEXT, br#"{"event":"unsubscribe","data":"split"}"#),
    ]
    .concat()
}

fn answers(c: &mut RawClient) -> Vec<(u8, String)> {
    (0..3)
        .map(|_| {
            let (op, p) = c.read_frame().expect("an answer");
            let mut text = String::from_utf8(p).unwrap();
            if text.contains("socketId") {
                text = "subscribed".into(); // the id differs per connection
            }
            (op, text)
        })
        .collect()
}

#[test]
fn the_same_bytes_split_at_every_position_mean_the_same() {
    let srv = start_server();
    let stream = split_stream();
    let mut whole = RawClient::connect(srv.public_addr);
    whole.send(&stream);
    let want = answers(&mut whole);
    assert_eq!(want[0], (0xA, "p".to_string()));
    assert_eq!(want[1], (TEXT, "subscribed".to_string()));
    for at in 1..stream.len() {
        let mut c = RawClient::connect(srv.public_addr);
        c.send(&stream[..at]);
        // Give the first part its own read on the server side.
        sleep(Duration::from_millis(2));
        c.send(&stream[at..]);
        assert_eq!(answers(&mut c), want, "split at {at}");
    }
}

#[test]
fn one_byte_per_write() {
    let srv = start_server();
    let stream = split_stream();
    let mut c = RawClient::connect(srv.public_addr);
    for b in &stream {
        c.send(&[*b]);
        sleep(Duration::from_micros(200));
    }
    let got = answers(&mut c);
    assert_eq!(got[0], (0xA, "p".to_string()));
    assert_eq!(got[1], (TEXT, "subscribed".to_string()));
    assert_eq!(got[2].0, TEXT);
    assert!(got[2].1.contains("unsubscribed"));
}
