//! Group 6, UTF-8: valid text echoed byte for byte, however it is fragmented; invalid text
//! fails the connection with 1007 (RFC 6455 §8.1), and fails it as soon as the bad byte arrives,
//! within a frame or across fragments, not at the end of the message. Cases 6.5 to 6.23 are
//! Markus Kuhn's UTF-8 decoder stress test as Autobahn sends it: boundaries, stray continuation
//! bytes, lonely and truncated sequences, impossible bytes, overlong forms, surrogates, and
//! noncharacters (which are valid UTF-8).

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use super::client::*;

/// κόσμε, "cosmos" in Greek: Kuhn's sample, 11 bytes.
const KOSME: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
const HELLO_UTF8: &str = "Hello-µ@ßöäüàá-UTF-8!!";

/// Every byte of `payload` in a frame of its own: a text frame, then continuations (Autobahn's
/// `fragmentSize = 1`).
fn bytewise(payload: &[u8]) -> Vec<Vec<u8>> {
    let last = payload.len() - 1;
    payload
        .iter()
        .enumerate()
        .map(|(i, b)| frag(i == last, if i == 0 { OP_TEXT } else { OP_CONT }, &[*b]))
        .collect()
}

#[test]
fn autobahn_group_6() {
    let srv = server();
    let addr = srv.public_addr;
    let mut t = Tally::new("group 6");
    let hello = HELLO_UTF8.as_bytes();
    let (hello1, hello2) = HELLO_UTF8.split_at(HELLO_UTF8.find("ü").unwrap());
    // κόσμε followed by a UTF-16 surrogate (ED A0 80) and "edited": invalid at its 13th byte.
    let bad = [KOSME, b"\xed\xa0\x80", b"edited"].concat();
    let middle = b"middle frame payload";
    cases! { t, addr;
        "6.1.1" => [frame(OP_TEXT, b"")] How::Whole => [text(b"")] End::Clean;
        "6.1.2" => [frag(false, OP_TEXT, b""), frag(false, OP_CONT, b""), frag(true, OP_CONT, b"")]
            How::Whole => [text(b"")] End::Clean;
        "6.1.3" => [frag(false, OP_TEXT, b""), frag(false, OP_CONT, middle), frag(true, OP_CONT, b"")]
            How::Whole => [text(middle)] End::Clean;
        "6.2.1" => [frame(OP_TEXT, hello)] How::Whole => [text(hello)] End::Clean;
        "6.2.2" => [frag(false, OP_TEXT, hello1.as_bytes()), frag(true, OP_CONT, hello2.as_bytes())]
            How::Whole => [text(hello)] End::Clean;
    }
    // Fragments that end inside code points.
    t.case("6.2.3", || {
        run(
            addr,
            &bytewise(hello),
            How::Whole,
            &[text(hello)],
            End::Clean,
        )
    });
    t.case("6.2.4", || {
        run(
            addr,
            &bytewise(KOSME),
            How::Whole,
            &[text(KOSME)],
            End::Clean,
        )
    });
    t.case("6.3.1", || {
        run(
            addr,
            &[frame(OP_TEXT, &bad)],
            How::Whole,
            &[],
            INVALID_PAYLOAD,
        )
    });
    t.case("6.3.2", || {
        run(addr, &bytewise(&bad), How::Whole, &[], INVALID_PAYLOAD)
    });
    fail_fast(&mut t, addr);
    for (section, (_, sequences)) in kuhn().into_iter().enumerate() {
        for (j, (valid, payload)) in sequences.into_iter().enumerate() {
            let id = format!("6.{}.{}", section + 5, j + 1);
            t.case(id, || {
                if valid {
                    run(
                        addr,
                        &[frame(OP_TEXT, &payload)],
                        How::Whole,
                        &[text(&payload)],
                        End::Clean,
                    )
                } else {
                    run(
                        addr,
                        &[frame(OP_TEXT, &payload)],
                        How::Whole,
                        &[],
                        INVALID_PAYLOAD,
                    )
                }
            });
        }
    }
    t.finish();
}

/// 6.4.1 to 6.4.4: a text message whose first part is valid and whose second part makes it
/// invalid (F4 90 80 80 would be U+110000, past Unicode's end). The first part must be taken;
/// the close must follow the second part, before the rest of the message is sent (Autobahn's
/// OK; NON-STRICT would allow the close only at the message's end).
fn fail_fast(t: &mut Tally, addr: std::net::SocketAddr) {
    let part1 = KOSME;
    let part2: &[u8] = b"\xf4\x90\x80\x80";
    let part3: &[u8] = b"edited";
    let whole = [part1, part2, part3].concat();
    // 6.4.1 splits after κόσμε; 6.4.2 right before the byte that makes it invalid (0x90).
    for (id, cut1, cut2) in [("6.4.1", 11, 15), ("6.4.2", 12, 13)] {
        t.case(id, || {
            let mut ws = Ws::connect(addr);
            ws.send(&frag(false, OP_TEXT, &whole[..cut1]), How::Whole);
            // Proof the first fragment was taken: its ping is answered, no close before it.
            ws.probe(b"A");
            ws.send(&frag(false, OP_CONT, &whole[cut1..cut2]), How::Whole);
            let since = Instant::now();
            ws.expect_fail(&[1007], since);
        });
    }
    // 6.4.3 and 6.4.4: the same cuts, as chops of one frame whose header announces the whole.
    for (id, cut1, cut2) in [("6.4.3", 11, 15), ("6.4.4", 12, 13)] {
        t.case(id, || {
            let mut ws = Ws::connect(addr);
            let f = frame(OP_TEXT, &whole);
            let head = f.len() - whole.len();
            ws.send(&f[..head + cut1], How::Whole);
            // Nothing may answer a valid start; no ping can be slipped into a frame, so this
            // only looks for a close that would already be on its way.
            nothing_yet(&mut ws);
            ws.send(&f[head + cut1..head + cut2], How::Whole);
            let since = Instant::now();
            ws.expect_fail(&[1007], since);
        });
    }
}

/// Checks that nothing has arrived within a short look.
fn nothing_yet(ws: &mut Ws) {
    ws.stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut b = [0u8; 1];
    match ws.stream.peek(&mut b) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("something arrived after a valid start: {other:?}"),
    }
    ws.stream
        .set_read_timeout(Some(crate::common::PATIENCE))
        .unwrap();
}

/// One stress case: whether it is valid UTF-8, and its bytes.
type Sequence = (bool, Vec<u8>);

/// Sections 6.5 to 6.23: (title, [(valid, payload)]), after Markus Kuhn's UTF-8-test.txt as
/// Autobahn's `case6_x_x.py` builds it (including its Python ranges, which leave out their
/// upper bound).
fn kuhn() -> Vec<(&'static str, Vec<Sequence>)> {
    let v = |b: &[u8]| (true, b.to_vec());
    let x = |b: &[u8]| (false, b.to_vec());
    let range = |lo: u8, hi: u8, sep: &[u8]| -> Vec<u8> {
        (lo..hi).flat_map(|b| [&[b][..], sep].concat()).collect()
    };
    let truncated: [&[u8]; 10] = [
        b"\xc0",
        b"\xe0\x80",
        b"\xf0\x80\x80",
        b"\xf8\x80\x80\x80",
        b"\xfc\x80\x80\x80\x80",
        b"\xdf",
        b"\xef\xbf",
        b"\xf7\xbf\xbf",
        b"\xfb\xbf\xbf\xbf",
        b"\xfd\xbf\xbf\xbf\xbf",
    ];
    let mut nonchars = vec![v(b"\xef\xbf\xbe"), v(b"\xef\xbf\xbf")];
    for z1 in [0xF0u8, 0xF1, 0xF2, 0xF3, 0xF4] {
        for z2 in [0x8Fu8, 0x9F, 0xAF, 0xBF] {
            // F4 beyond 8F encodes past U+10FFFF.
            if z1 == 0xF4 && z2 != 0x8F {
                continue;
            }
            for z3 in [0xBEu8, 0xBF] {
                // F0 8F is overlong.
                if z1 == 0xF0 && z2 == 0x8F {
                    continue;
                }
                nonchars.push(v(&[z1, z2, 0xBF, z3]));
            }
        }
    }
    let high = [
        b"\xed\xa0\x80",
        b"\xed\xad\xbf",
        b"\xed\xae\x80",
        b"\xed\xaf\xbf",
    ];
    let low = [b"\xed\xb0\x80", b"\xed\xbf\xbf"];
    let paired = high
        .iter()
        .flat_map(|h| low.iter().map(move |l| x(&[&h[..], &l[..]].concat())))
        .collect();
    vec![
        (
            "some valid UTF-8 sequences",
            vec![
                v(b"hello\x24world"),
                v(b"hello\xc2\xa2world"),
                v(b"hello\xe2\x82\xacworld"),
                v(b"hello\xf0\xa4\xad\xa2world"),
                v(KOSME),
            ],
        ),
        (
            "all prefixes of κόσμε: valid where a code point ends",
            (1..=KOSME.len())
                .map(|n| (matches!(n, 2 | 5 | 7 | 9 | 11), KOSME[..n].to_vec()))
                .collect(),
        ),
        (
            "first possible sequence of each length",
            vec![
                v(b"\x00"),
                v(b"\xc2\x80"),
                v(b"\xe0\xa0\x80"),
                v(b"\xf0\x90\x80\x80"),
            ],
        ),
        (
            "first possible sequence of length 5 and 6 (past U+10FFFF)",
            vec![x(b"\xf8\x88\x80\x80\x80"), x(b"\xfc\x84\x80\x80\x80\x80")],
        ),
        (
            "last possible sequence of each length",
            vec![
                v(b"\x7f"),
                v(b"\xdf\xbf"),
                v(b"\xef\xbf\xbf"),
                v(b"\xf4\x8f\xbf\xbf"),
            ],
        ),
        (
            "last possible sequence of length 4, 5 and 6 (past U+10FFFF)",
            vec![
                x(b"\xf7\xbf\xbf\xbf"),
                x(b"\xfb\xbf\xbf\xbf\xbf"),
                x(b"\xfd\xbf\xbf\xbf\xbf\xbf"),
            ],
        ),
        (
            "other boundary conditions",
            vec![
                v(b"\xed\x9f\xbf"),
                v(b"\xee\x80\x80"),
                v(b"\xef\xbf\xbd"),
                v(b"\xf4\x8f\xbf\xbf"),
                x(b"\xf4\x90\x80\x80"),
            ],
        ),
        (
            "unexpected continuation bytes",
            vec![
                x(b"\x80"),
                x(b"\xbf"),
                x(b"\x80\xbf"),
                x(b"\x80\xbf\x80"),
                x(b"\x80\xbf\x80\xbf"),
                x(b"\x80\xbf\x80\xbf\x80"),
                x(b"\x80\xbf\x80\xbf\x80\xbf"),
                x(&range(0x80, 0xBF, b"")),
            ],
        ),
        (
            "lonely start bytes, each followed by a space",
            vec![
                x(&range(0xC0, 0xDF, b" ")),
                x(&range(0xE0, 0xEF, b" ")),
                x(&range(0xF0, 0xF7, b" ")),
                x(&range(0xF8, 0xFB, b" ")),
                x(&range(0xFC, 0xFD, b" ")),
            ],
        ),
        (
            "sequences with their last continuation byte missing",
            truncated.iter().map(|s| x(s)).collect(),
        ),
        (
            "concatenation of incomplete sequences",
            vec![x(&truncated.concat())],
        ),
        (
            "impossible bytes",
            vec![x(b"\xfe"), x(b"\xff"), x(b"\xfe\xfe\xff\xff")],
        ),
        (
            "overlong forms of '/'",
            vec![
                x(b"\xc0\xaf"),
                x(b"\xe0\x80\xaf"),
                x(b"\xf0\x80\x80\xaf"),
                x(b"\xf8\x80\x80\x80\xaf"),
                x(b"\xfc\x80\x80\x80\x80\xaf"),
            ],
        ),
        (
            "maximum overlong sequences",
            vec![
                x(b"\xc1\xbf"),
                x(b"\xe0\x9f\xbf"),
                x(b"\xf0\x8f\xbf\xbf"),
                x(b"\xf8\x87\xbf\xbf\xbf"),
                x(b"\xfc\x83\xbf\xbf\xbf\xbf"),
            ],
        ),
        (
            "overlong forms of NUL",
            vec![
                x(b"\xc0\x80"),
                x(b"\xe0\x80\x80"),
                x(b"\xf0\x80\x80\x80"),
                x(b"\xf8\x80\x80\x80\x80"),
                x(b"\xfc\x80\x80\x80\x80\x80"),
            ],
        ),
        (
            "single UTF-16 surrogates",
            vec![
                x(b"\xed\xa0\x80"),
                x(b"\xed\xad\xbf"),
                x(b"\xed\xae\x80"),
                x(b"\xed\xaf\xbf"),
                x(b"\xed\xb0\x80"),
                x(b"\xed\xbe\x80"),
                x(b"\xed\xbf\xbf"),
            ],
        ),
        ("paired UTF-16 surrogates", paired),
        ("noncharacters (valid UTF-8)", nonchars),
        (
            "Unicode specials (valid)",
            (0xB9..=0xBF).map(|b| v(&[0xEF, 0xBF, b])).collect(),
        ),
    ]
}

#[test]
fn kuhn_table_has_autobahns_case_counts() {
    let counts: Vec<usize> = kuhn().iter().map(|(_, s)| s.len()).collect();
    assert_eq!(
        counts,
        [5, 11, 4, 2, 4, 3, 5, 8, 5, 10, 1, 3, 5, 5, 5, 7, 8, 34, 7]
    );
}
