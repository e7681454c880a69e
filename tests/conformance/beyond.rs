//! Cases Autobahn does not have: client frames without a mask, 64-bit lengths with their top
//! bit set (and without it, past the limit), the fragment limit, and every TCP split of a valid
//! and of an invalid stream, down to one byte per write, giving what the whole stream gives.

use std::net::SocketAddr;
use std::time::Instant;

use super::client::*;

/// κόσμε, 11 bytes of two- and three-byte UTF-8.
const KOSME: &str = "κόσμε";

#[test]
fn beyond_autobahn() {
    let srv = server();
    let addr = srv.public_addr;
    let mut t = Tally::new("beyond Autobahn");
    unmasked(&mut t, addr);
    lengths(&mut t, addr);
    cases! { t, addr;
        // Autobahn's 3.6 as its description has it: a ping with RSV 6.
        "ping with RSV 6" => [frame_rsv(true, 6, OP_PING, b"Hello")] How::Whole => [] PROTOCOL_ERROR;
        // RSV1 means "compressed" only once permessage-deflate is agreed.
        "RSV1 without deflate" => [frame_rsv(true, 4, OP_TEXT, &deflate(b"hello"))]
            How::Whole => [] PROTOCOL_ERROR;
    }
    fragment_limit(&mut t, addr);
    splits(&mut t, addr);
    t.finish();
}

/// RFC 6455 §5.1: "The server MUST close the connection upon receiving a frame that is not
/// masked", whatever the frame: 1002, and no echo or pong for it.
fn unmasked(t: &mut Tally, addr: SocketAddr) {
    let plain = |fin, op, p: &[u8]| encode(fin, 0, op, p, None);
    cases! { t, addr;
        "unmasked text" => [plain(true, OP_TEXT, b"Hello")] How::Whole => [] PROTOCOL_ERROR;
        "unmasked binary" => [plain(true, OP_BINARY, &[1, 2, 3])] How::Whole => [] PROTOCOL_ERROR;
        "unmasked empty text" => [plain(true, OP_TEXT, b"")] How::Whole => [] PROTOCOL_ERROR;
        "unmasked ping" => [plain(true, OP_PING, b"p")] How::Whole => [] PROTOCOL_ERROR;
        "unmasked pong" => [plain(true, OP_PONG, b"")] How::Whole => [] PROTOCOL_ERROR;
        "unmasked close" => [plain(true, OP_CLOSE, &[0x03, 0xE8])] How::Whole => [] PROTOCOL_ERROR;
        "unmasked continuation" => [frag(false, OP_TEXT, b"He"), plain(true, OP_CONT, b"llo")]
            How::Whole => [] PROTOCOL_ERROR;
        "masked echo, then unmasked" => [frame(OP_TEXT, b"ok"), plain(true, OP_TEXT, b"no")]
            How::Whole => [text(b"ok")] PROTOCOL_ERROR;
        "unmasked, byte by byte" => [plain(true, OP_TEXT, b"Hello")] How::Chop(1) => [] PROTOCOL_ERROR;
    }
}

/// RFC 6455 §5.2: in the 64-bit length form "the most significant bit MUST be 0". herald
/// refuses such a header as a protocol error (1002) for every opcode, before it reads a byte
/// of payload; a length with the bit clear but past `--max-message` is refused as too big
/// (1009), also from the header alone; on a control frame any length past 125 is a protocol
/// error. The same verdicts come when the header arrives one byte at a time.
fn lengths(t: &mut Tally, addr: SocketAddr) {
    let top = 1u64 << 63;
    let started = || frag(false, OP_TEXT, b"He");
    cases! { t, addr;
        "text, top bit" => [header64(0x81, top)] How::Whole => [] PROTOCOL_ERROR;
        "text, all bits" => [header64(0x81, u64::MAX)] How::Whole => [] PROTOCOL_ERROR;
        "binary, top bit and 5" => [header64(0x82, top | 5)] How::Whole => [] PROTOCOL_ERROR;
        "continuation, top bit" => [started(), header64(0x80, top)] How::Whole => [] PROTOCOL_ERROR;
        "ping, top bit" => [header64(0x89, top)] How::Whole => [] PROTOCOL_ERROR;
        "close, top bit" => [header64(0x88, top)] How::Whole => [] PROTOCOL_ERROR;
        "text, top bit, byte by byte" => [header64(0x81, top)] How::Chop(1) => [] PROTOCOL_ERROR;
        "text, 2^63 - 1" => [header64(0x81, top - 1)] How::Whole => [] TOO_BIG;
        "binary, one past the limit" => [header64(0x82, MAX_MESSAGE as u64 + 1)] How::Whole => [] TOO_BIG;
        "continuation past the limit" => [started(), header64(0x80, MAX_MESSAGE as u64 - 1)]
            How::Whole => [] TOO_BIG;
        "text, 2^63 - 1, byte by byte" => [header64(0x81, top - 1)] How::Chop(1) => [] TOO_BIG;
        "ping, 64-bit form, 126" => [header64(0x89, 126)] How::Whole => [] PROTOCOL_ERROR;
    }
    // A length in a longer form than it needs is still a length (RFC 6455 §5.2 asks senders for
    // the minimal form but does not make receivers refuse others): herald takes it.
    t.case("ping, 64-bit form, 5 bytes", || {
        let mut ws = Ws::connect(addr);
        let mut f = header64(0x89, 5);
        let mask: [u8; 4] = f[10..14].try_into().unwrap();
        f.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        ws.send(&f, How::Whole);
        ws.expect(&pong(b"hello"));
        ws.close_clean();
    });
}

/// A message may span `--max-fragments` frames and not one more (1009).
fn fragment_limit(t: &mut Tally, addr: SocketAddr) {
    let stream = |frames: u32| -> Vec<u8> {
        let mut s = frag(false, OP_TEXT, b"a");
        for _ in 2..frames {
            s.extend(frag(false, OP_CONT, b""));
        }
        s.extend(frag(true, OP_CONT, b"z"));
        s
    };
    t.case("fragments at the limit", || {
        let mut ws = Ws::connect(addr);
        ws.send(&stream(MAX_FRAGMENTS), How::Whole);
        ws.expect(&text(b"az"));
        ws.close_clean();
    });
    t.case("fragments past the limit", || {
        let mut ws = Ws::connect(addr);
        let _ = ws.try_send(&stream(MAX_FRAGMENTS + 1), How::Whole);
        ws.expect_fail(&[1009], Instant::now());
    });
}

/// A stream written whole, one byte per write, and in two writes cut at every position: each
/// way must bring the same replies and the same end.
fn splits(t: &mut Tally, addr: SocketAddr) {
    let (k1, k2) = KOSME.split_at(4);
    let long = "ω".repeat(70);
    // A text message cut inside a character with a ping between its fragments, a binary
    // message, a text frame with a 16-bit length, an empty one.
    let valid = [
        frag(false, OP_TEXT, k1.as_bytes()),
        frame(OP_PING, b"p"),
        frag(true, OP_CONT, k2.as_bytes()),
        frame(OP_BINARY, &[0, 1, 0xFE, 0xFF]),
        frame(OP_TEXT, long.as_bytes()),
        frame(OP_TEXT, b""),
    ]
    .concat();
    let valid_replies = [
        pong(b"p"),
        text(KOSME),
        binary([0, 1, 0xFE, 0xFF]),
        text(&long),
        text(b""),
    ];
    // A message, then text that turns invalid in its second fragment: an echo, then 1007.
    let bad_utf8 = [
        frame(OP_TEXT, b"ok"),
        frag(false, OP_TEXT, &KOSME.as_bytes()[..3]),
        frag(true, OP_CONT, b"\xbf\xed\xa0\x80"),
    ]
    .concat();
    // A message, then a reserved opcode: an echo, then 1002.
    let bad_opcode = [frame(OP_TEXT, b"ok"), frame(0xB, b"reserved")].concat();
    let streams: [(&str, &[u8], &[Reply], End); 3] = [
        ("valid stream", &valid, &valid_replies, End::Clean),
        (
            "invalid UTF-8 stream",
            &bad_utf8,
            &[text(b"ok")],
            INVALID_PAYLOAD,
        ),
        (
            "reserved opcode stream",
            &bad_opcode,
            &[text(b"ok")],
            PROTOCOL_ERROR,
        ),
    ];
    for (name, bytes, replies, end) in streams {
        t.case(format!("{name}, whole"), || {
            split_case(addr, bytes, &[], replies, end)
        });
        t.case(format!("{name}, one byte per write"), || {
            let cuts: Vec<usize> = (1..bytes.len()).collect();
            split_case(addr, bytes, &cuts, replies, end)
        });
        t.case(
            format!("{name}, cut at each of {} points", bytes.len() - 1),
            || {
                for cut in 1..bytes.len() {
                    split_case(addr, bytes, &[cut], replies, end);
                }
            },
        );
    }
}

/// Writes `bytes` cut at `cuts`, then expects `replies` and `end`.
fn split_case(addr: SocketAddr, bytes: &[u8], cuts: &[usize], replies: &[Reply], end: End) {
    let mut ws = Ws::connect(addr);
    let mut from = 0;
    for &cut in cuts.iter().chain([&bytes.len()]) {
        let piece = &bytes[from..cut];
        // Pieces after the fault may meet a closed connection.
        if ws.try_send(piece, How::Whole).is_err() {
            break;
        }
        from = cut;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let since = Instant::now();
    for want in replies {
        ws.expect(want);
    }
    match end {
        End::Clean => ws.close_clean(),
        End::Fail(codes) => ws.expect_fail(codes, since),
    }
}
