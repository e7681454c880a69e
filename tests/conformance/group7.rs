//! Group 7, the closing handshake: a close is answered with a close (echoing its code) and the
//! server then ends the TCP connection (RFC 6455 §7.1.1: "the server SHOULD" close first);
//! nothing answers what the client sends after its close; invalid codes, a one-byte body, an
//! over-long reason and a reason that is not UTF-8 are protocol errors.

use std::time::Instant;

use super::client::*;

const HELLO: &[u8] = b"Hello World!";

/// Sends `frames` in one write; expects `replies`, then the server's close with `code` (`0`:
/// empty) within a second, then nothing: whatever followed the client's close goes unanswered.
fn after_close(addr: std::net::SocketAddr, frames: &[Vec<u8>], replies: &[Reply], code: u16) {
    let mut ws = Ws::connect(addr);
    ws.send(&frames.concat(), How::Whole);
    let since = Instant::now();
    for want in replies {
        ws.expect(want);
    }
    ws.expect_close(&[code], since);
}

#[test]
fn autobahn_group_7() {
    let srv = server();
    let addr = srv.public_addr;
    let mut t = Tally::new("group 7");
    let close = || close_frame(1000, b"");
    t.case("7.1.1", || {
        after_close(
            addr,
            &[frame(OP_TEXT, HELLO), close()],
            &[text(HELLO)],
            1000,
        )
    });
    // A second close, a ping, a text message and the end of a fragmented message after the
    // close: none is answered.
    t.case("7.1.2", || {
        after_close(addr, &[close(), frame(OP_CLOSE, b"")], &[], 1000)
    });
    t.case("7.1.3", || {
        after_close(addr, &[close(), frame(OP_PING, b"")], &[], 1000)
    });
    t.case("7.1.4", || {
        after_close(addr, &[close(), frame(OP_TEXT, HELLO)], &[], 1000)
    });
    t.case("7.1.5", || {
        let frames = [
            frag(false, OP_TEXT, b"fragment1"),
            close(),
            frag(true, OP_CONT, b"fragment2"),
        ];
        after_close(addr, &frames, &[], 1000)
    });
    // 7.1.6, informational in Autobahn (an asynchronous server may process the close before it
    // writes the echo): herald handles frames in order, so both echoes come before its close.
    t.case("7.1.6", || {
        let big = repeat(b"BAsd7&jh23", 256 << 10);
        let frames = [
            frame(OP_TEXT, &big),
            frame(OP_TEXT, HELLO),
            close(),
            frame(OP_PING, b""),
        ];
        after_close(addr, &frames, &[text(&big), text(HELLO)], 1000)
    });
    // Close bodies: empty (answered with an empty close), one byte, a code, a code and a reason,
    // the longest reason (123 bytes), one byte too long (a 126-byte control frame).
    t.case("7.3.1", || {
        Ws::connect(addr).close_with(&frame(OP_CLOSE, b""), &[0])
    });
    t.case("7.3.2", || {
        Ws::connect(addr).close_with(&frame(OP_CLOSE, b"a"), &[1002])
    });
    t.case("7.3.3", || Ws::connect(addr).close_with(&close(), &[1000]));
    t.case("7.3.4", || {
        Ws::connect(addr).close_with(&close_frame(1000, HELLO), &[1000])
    });
    t.case("7.3.5", || {
        Ws::connect(addr).close_with(&close_frame(1000, &[b'*'; 123]), &[1000])
    });
    t.case("7.3.6", || {
        Ws::connect(addr).close_with(&close_frame(1000, &[b'*'; 124]), &[1002])
    });
    // 7.5.1: a reason that is not UTF-8. Autobahn accepts 1002 or 1007; herald answers 1002, a
    // malformed close frame being a protocol error (§7.4.1), as 7.3.2 and 7.3.6 are: 1007 speaks
    // of "data within a message", and a close frame's reason is no message.
    t.case("7.5.1", || {
        let reason = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited";
        Ws::connect(addr).close_with(&close_frame(1000, reason), &[1002])
    });
    // 7.7.x: every code a client may send is echoed (Autobahn accepts the code or 1000).
    let valid = [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ];
    for (i, code) in valid.into_iter().enumerate() {
        t.case(format!("7.7.{}", i + 1), || {
            Ws::connect(addr).close_with(&close_frame(code, b""), &[code])
        });
    }
    // 7.9.x: codes RFC 6455 §7.4 reserves or never puts on the wire: 1002.
    let invalid = [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999];
    for (i, code) in invalid.into_iter().enumerate() {
        t.case(format!("7.9.{}", i + 1), || {
            Ws::connect(addr).close_with(&close_frame(code, b""), &[1002])
        });
    }
    // 7.13.x: codes past 4999; the spec leaves them undefined and Autobahn accepts 1000, the code
    // or 1002. herald treats them as the reserved codes: 1002.
    for (i, code) in [5000, 65535].into_iter().enumerate() {
        t.case(format!("7.13.{}", i + 1), || {
            Ws::connect(addr).close_with(&close_frame(code, b""), &[1002])
        });
    }
    t.finish();
}
