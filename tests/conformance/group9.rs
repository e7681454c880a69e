//! Group 9, limits and performance: messages up to 16 MiB in one frame, 4 MiB in fragments of
//! 64 bytes to 4 MiB, 1 MiB written in chops of 64 to 2048 bytes, and a thousand round trips
//! per message size. Autobahn checks only the echo's length; its content is compared here too.
//!
//! The server runs with `--max-message 16MiB` and `--max-fragments 65536` (see
//! [`server`]): herald's defaults (64 KiB, 1024 frames) refuse the larger cases with 1009, as
//! they are meant to.

use super::client::*;

const TEXT_PATTERN: &[u8] = b"BAsd7&jh23";
const BINARY_PATTERN: &[u8] = b"\x00\xfe\x23\xfa\xf0";

/// `payload` as a message of `op` in frames of at most `size` bytes (Autobahn's
/// `fragmentSize`).
fn fragmented(op: u8, payload: &[u8], size: usize) -> Vec<u8> {
    let count = payload.len().div_ceil(size);
    payload
        .chunks(size)
        .enumerate()
        .flat_map(|(i, chunk)| frag(i + 1 == count, if i == 0 { op } else { OP_CONT }, chunk))
        .collect()
}

fn echo(op: u8, payload: &[u8]) -> Reply {
    if op == OP_TEXT {
        text(payload)
    } else {
        binary(payload)
    }
}

#[test]
fn autobahn_group_9() {
    let srv = server();
    let addr = srv.public_addr;
    let mut t = Tally::new("group 9");
    let sizes = [64 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20, 16 << 20];
    for (group, op, pattern) in [(1, OP_TEXT, TEXT_PATTERN), (2, OP_BINARY, BINARY_PATTERN)] {
        for (i, len) in sizes.into_iter().enumerate() {
            t.case(format!("9.{group}.{}", i + 1), || {
                let p = repeat(pattern, len);
                run(
                    addr,
                    &[frame(op, &p)],
                    How::Whole,
                    &[echo(op, &p)],
                    End::Clean,
                );
            });
        }
    }
    let frags = [
        64,
        256,
        1 << 10,
        4 << 10,
        16 << 10,
        64 << 10,
        256 << 10,
        1 << 20,
        4 << 20,
    ];
    for (group, op) in [(3, OP_TEXT), (4, OP_BINARY)] {
        for (i, size) in frags.into_iter().enumerate() {
            t.case(format!("9.{group}.{}", i + 1), || {
                // 9.4.1 sends 0xFE bytes; every other case '*'.
                let byte = if (group, i) == (4, 0) { 0xFE } else { b'*' };
                let p = vec![byte; 4 << 20];
                let mut ws = Ws::connect(addr);
                ws.send(&fragmented(op, &p, size), How::Whole);
                ws.expect(&echo(op, &p));
                ws.close_clean();
            });
        }
    }
    let chops = [64, 128, 256, 512, 1024, 2048];
    for (group, op, pattern) in [(5, OP_TEXT, TEXT_PATTERN), (6, OP_BINARY, BINARY_PATTERN)] {
        for (i, chop) in chops.into_iter().enumerate() {
            t.case(format!("9.{group}.{}", i + 1), || {
                let p = repeat(pattern, 1 << 20);
                run(
                    addr,
                    &[frame(op, &p)],
                    How::Chop(chop),
                    &[echo(op, &p)],
                    End::Clean,
                );
            });
        }
    }
    // 9.7.x and 9.8.x: 1000 messages, each sent once the last one's echo is back.
    let lens = [0, 16, 64, 256, 1024, 4096];
    for (group, op, byte) in [(7, OP_TEXT, b'*'), (8, OP_BINARY, 0xFE)] {
        for (i, len) in lens.into_iter().enumerate() {
            t.case(format!("9.{group}.{}", i + 1), || {
                let p = vec![byte; len];
                let f = frame(op, &p);
                let want = echo(op, &p);
                let mut ws = Ws::connect(addr);
                for _ in 0..1000 {
                    ws.send(&f, How::Whole);
                    ws.expect(&want);
                }
                ws.close_clean();
            });
        }
    }
    t.finish();
}
