//! Group 4, reserved opcodes: 0x3-0x7 and 0xB-0xF fail the connection with 1002 (RFC 6455
//! §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail the WebSocket
//! Connection_"). A valid message before the bad frame is echoed (Autobahn's OK; NON-STRICT
//! would allow no echo), and the ping after it is never answered.

use super::client::*;

const HELLO: &[u8] = b"Hello, world!";
const RESERVED: &[u8] = b"reserved opcode payload";

#[test]
fn autobahn_group_4() {
    let srv = server();
    let addr = srv.public_addr;
    let mut t = Tally::new("group 4");
    cases! { t, addr;
        "4.1.1" => [frame(0x3, b"")] How::Whole => [] PROTOCOL_ERROR;
        "4.1.2" => [frame(0x4, RESERVED)] How::Whole => [] PROTOCOL_ERROR;
        "4.1.3" => [frame(OP_TEXT, HELLO), frame(0x5, b""), frame(OP_PING, b"")]
            How::Whole => [text(HELLO)] PROTOCOL_ERROR;
        "4.1.4" => [frame(OP_TEXT, HELLO), frame(0x6, HELLO), frame(OP_PING, b"")]
            How::Whole => [text(HELLO)] PROTOCOL_ERROR;
        "4.1.5" => [frame(OP_TEXT, HELLO), frame(0x7, HELLO), frame(OP_PING, b"")]
            How::Chop(1) => [text(HELLO)] PROTOCOL_ERROR;
        "4.2.1" => [frame(0xB, b"")] How::Whole => [] PROTOCOL_ERROR;
        "4.2.2" => [frame(0xC, RESERVED)] How::Whole => [] PROTOCOL_ERROR;
        "4.2.3" => [frame(OP_TEXT, HELLO), frame(0xD, b""), frame(OP_PING, b"")]
            How::Whole => [text(HELLO)] PROTOCOL_ERROR;
        "4.2.4" => [frame(OP_TEXT, HELLO), frame(0xE, HELLO), frame(OP_PING, b"")]
            How::Whole => [text(HELLO)] PROTOCOL_ERROR;
        "4.2.5" => [frame(OP_TEXT, HELLO), frame(0xF, HELLO), frame(OP_PING, b"")]
            How::Chop(1) => [text(HELLO)] PROTOCOL_ERROR;
    }
    t.finish();
}
