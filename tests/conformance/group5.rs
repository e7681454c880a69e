//! Group 5, fragmentation: control frames may not be fragmented but may come between a
//! message's fragments; a continuation needs a message to continue, and a new message may not
//! start before the last one ended (RFC 6455 §5.4).

use super::client::*;

const F1: &[u8] = b"fragment1";
const F2: &[u8] = b"fragment2";
const NON_CONT: &[u8] = b"non-continuation payload";
const HELLO: &[u8] = b"Hello, world!";
const PING: &[u8] = b"ping payload";

#[test]
fn autobahn_group_5() {
    let srv = server();
    let addr = srv.public_addr;
    let mut t = Tally::new("group 5");
    cases! { t, addr;
        // A fragmented ping or pong.
        "5.1" => [frag(false, OP_PING, F1), frag(true, OP_CONT, F2)] How::Whole => [] PROTOCOL_ERROR;
        "5.2" => [frag(false, OP_PONG, F1), frag(true, OP_CONT, F2)] How::Whole => [] PROTOCOL_ERROR;
        // Two fragments, whole, frame by frame, byte by byte.
        "5.3" => [frag(false, OP_TEXT, F1), frag(true, OP_CONT, F2)]
            How::Whole => [text(b"fragment1fragment2")] End::Clean;
        "5.4" => [frag(false, OP_TEXT, F1), frag(true, OP_CONT, F2)]
            How::PerFrame => [text(b"fragment1fragment2")] End::Clean;
        "5.5" => [frag(false, OP_TEXT, F1), frag(true, OP_CONT, F2)]
            How::Chop(1) => [text(b"fragment1fragment2")] End::Clean;
        // A ping between the fragments is answered before the message completes.
        "5.6" => [frag(false, OP_TEXT, F1), frame(OP_PING, PING), frag(true, OP_CONT, F2)]
            How::Whole => [pong(PING), text(b"fragment1fragment2")] End::Clean;
        "5.7" => [frag(false, OP_TEXT, F1), frame(OP_PING, PING), frag(true, OP_CONT, F2)]
            How::PerFrame => [pong(PING), text(b"fragment1fragment2")] End::Clean;
        "5.8" => [frag(false, OP_TEXT, F1), frame(OP_PING, PING), frag(true, OP_CONT, F2)]
            How::Chop(1) => [pong(PING), text(b"fragment1fragment2")] End::Clean;
        // A continuation with no message to continue, final or not.
        "5.9" => [frag(true, OP_CONT, NON_CONT), frame(OP_TEXT, HELLO)] How::Whole => [] PROTOCOL_ERROR;
        "5.10" => [frag(true, OP_CONT, NON_CONT), frame(OP_TEXT, HELLO)] How::PerFrame => [] PROTOCOL_ERROR;
        "5.11" => [frag(true, OP_CONT, NON_CONT), frame(OP_TEXT, HELLO)] How::Chop(1) => [] PROTOCOL_ERROR;
        "5.12" => [frag(false, OP_CONT, NON_CONT), frame(OP_TEXT, HELLO)] How::Whole => [] PROTOCOL_ERROR;
        "5.13" => [frag(false, OP_CONT, NON_CONT), frame(OP_TEXT, HELLO)] How::PerFrame => [] PROTOCOL_ERROR;
        "5.14" => [frag(false, OP_CONT, NON_CONT), frame(OP_TEXT, HELLO)] How::Chop(1) => [] PROTOCOL_ERROR;
        // A whole message, then a continuation after it (NON-STRICT would allow no echo).
        "5.15" => [
            frag(false, OP_TEXT, F1), frag(true, OP_CONT, F2),
            frag(false, OP_CONT, b"fragment3"), frag(true, OP_TEXT, b"fragment4"),
        ] How::Whole => [text(b"fragment1fragment2")] PROTOCOL_ERROR;
        "5.16" => [
            frag(false, OP_CONT, F1), frag(false, OP_TEXT, F2), frag(true, OP_CONT, b"fragment3"),
            frag(false, OP_CONT, F1), frag(false, OP_TEXT, F2), frag(true, OP_CONT, b"fragment3"),
        ] How::Whole => [] PROTOCOL_ERROR;
        "5.17" => [
            frag(true, OP_CONT, F1), frag(false, OP_TEXT, F2), frag(true, OP_CONT, b"fragment3"),
            frag(true, OP_CONT, F1), frag(false, OP_TEXT, F2), frag(true, OP_CONT, b"fragment3"),
        ] How::Whole => [] PROTOCOL_ERROR;
        // A new text frame inside a fragmented message.
        "5.18" => [frag(false, OP_TEXT, F1), frag(true, OP_TEXT, F2)] How::Whole => [] PROTOCOL_ERROR;
    }
    // 5.19 and 5.20: a fragmented message with a ping after its second fragment, a pause, two
    // more fragments, a second ping and the last fragment. The first pong must come before the
    // message is complete: it is read before the second part is sent.
    for (id, how) in [("5.19", How::Whole), ("5.20", How::PerFrame)] {
        t.case(id, || {
            let mut ws = Ws::connect(addr);
            let part1 = [
                frag(false, OP_TEXT, F1),
                frag(false, OP_CONT, F2),
                frame(OP_PING, b"pongme 1!"),
            ];
            ws.send_frames(&part1, how).unwrap();
            ws.expect(&pong(b"pongme 1!"));
            let part2 = [
                frag(false, OP_CONT, b"fragment3"),
                frag(false, OP_CONT, b"fragment4"),
                frame(OP_PING, b"pongme 2!"),
                frag(true, OP_CONT, b"fragment5"),
            ];
            ws.send_frames(&part2, how).unwrap();
            ws.expect(&pong(b"pongme 2!"));
            ws.expect(&text(b"fragment1fragment2fragment3fragment4fragment5"));
            ws.close_clean();
        });
    }
    t.finish();
}
