//! Group 1, framing: text and binary messages of 0 to 65536 bytes, each length form at its
//! boundaries (125/126, 65535/65536), echoed back.

use super::client::*;

/// (case number, payload length, how the frame is written).
const SIZES: [(u8, usize, How); 8] = [
    (1, 0, How::Whole),
    (2, 125, How::Whole),
    (3, 126, How::Whole),
    (4, 127, How::Whole),
    (5, 128, How::Whole),
    (6, 65535, How::Whole),
    (7, 65536, How::Whole),
    (8, 65536, How::Chop(997)),
];

#[test]
fn autobahn_group_1() {
    let srv = server();
    let addr = srv.public_addr;
    let mut t = Tally::new("group 1");
    for (n, len, how) in SIZES {
        t.case(format!("1.1.{n}"), || {
            let p = vec![b'*'; len];
            run(addr, &[frame(OP_TEXT, &p)], how, &[text(&p)], End::Clean);
        });
    }
    for (n, len, how) in SIZES {
        t.case(format!("1.2.{n}"), || {
            let p = vec![0xFE; len];
            run(
                addr,
                &[frame(OP_BINARY, &p)],
                how,
                &[binary(&p)],
                End::Clean,
            );
        });
    }
    t.finish();
}
