//! Group 3, reserved bits: with no extension agreed, any RSV bit fails the connection with 1002
//! (RFC 6455 §5.2: RSV1-3 "MUST be 0 unless an extension is negotiated that defines meanings
//! for non-zero values").
//!
//! Autobahn's `rsv` argument is the three bits as a number, RSV1 being 4. Where a valid message
//! precedes the bad frame, Autobahn accepts its echo (OK) or none (NON-STRICT); herald handles
//! frames in order, so the echo is asserted.

use super::client::*;

const HELLO: &[u8] = b"Hello, world!";
const BIN: &[u8] = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff";

#[test]
fn autobahn_group_3() {
    let srv = server();
    let addr = srv.public_addr;
    let mut t = Tally::new("group 3");
    cases! { t, addr;
        "3.1" => [frame_rsv(true, 1, OP_TEXT, HELLO)] How::Whole => [] PROTOCOL_ERROR;
        "3.2" => [frame(OP_TEXT, HELLO), frame_rsv(true, 2, OP_TEXT, HELLO), frame(OP_PING, b"")]
            How::Whole => [text(HELLO)] PROTOCOL_ERROR;
        "3.3" => [frame(OP_TEXT, HELLO), frame_rsv(true, 3, OP_TEXT, HELLO), frame(OP_PING, b"")]
            How::PerFrame => [text(HELLO)] PROTOCOL_ERROR;
        "3.4" => [frame(OP_TEXT, HELLO), frame_rsv(true, 4, OP_TEXT, HELLO), frame(OP_PING, b"")]
            How::Chop(1) => [text(HELLO)] PROTOCOL_ERROR;
        "3.5" => [frame_rsv(true, 5, OP_BINARY, BIN)] How::Whole => [] PROTOCOL_ERROR;
        // Autobahn describes 3.6 as a ping but sends a binary frame, as here; the ping is in
        // `beyond`.
        "3.6" => [frame_rsv(true, 6, OP_BINARY, HELLO)] How::Whole => [] PROTOCOL_ERROR;
        "3.7" => [frame_rsv(true, 7, OP_CLOSE, b"")] How::Whole => [] PROTOCOL_ERROR;
    }
    t.finish();
}
