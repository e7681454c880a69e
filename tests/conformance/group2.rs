//! Group 2, pings and pongs: every ping answered with its payload, 125 bytes the most a control
//! frame carries, unsolicited pongs ignored.

use super::client::*;

#[test]
fn autobahn_group_2() {
    let srv = server();
    let addr = srv.public_addr;
    let mut t = Tally::new("group 2");
    let bin = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff";
    let fe125 = [0xFE; 125];
    cases! { t, addr;
        "2.1" => [frame(OP_PING, b"")] How::Whole => [pong(b"")] End::Clean;
        "2.2" => [frame(OP_PING, b"Hello, world!")] How::Whole => [pong(b"Hello, world!")] End::Clean;
        "2.3" => [frame(OP_PING, bin)] How::Whole => [pong(bin)] End::Clean;
        "2.4" => [frame(OP_PING, &fe125)] How::Whole => [pong(fe125)] End::Clean;
        // RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less".
        "2.5" => [frame(OP_PING, &[0xFE; 126])] How::Whole => [] PROTOCOL_ERROR;
        "2.6" => [frame(OP_PING, &fe125)] How::Chop(1) => [pong(fe125)] End::Clean;
        // Unsolicited pongs: nothing comes back but the close.
        "2.7" => [frame(OP_PONG, b"")] How::Whole => [] End::Clean;
        "2.8" => [frame(OP_PONG, b"unsolicited pong payload")] How::Whole => [] End::Clean;
        "2.9" => [frame(OP_PONG, b"unsolicited pong payload"), frame(OP_PING, b"ping payload")]
            How::Whole => [pong(b"ping payload")] End::Clean;
    }
    // 2.10 and 2.11: ten pings, ten pongs in order. Autobahn notes the spec does not require a
    // pong for every ping (§5.5.3 allows answering only the latest); herald answers each one
    // whose pong it can write at once, and nothing holds these back.
    for (id, how) in [("2.10", How::Whole), ("2.11", How::Chop(1))] {
        t.case(id, || {
            let payloads: Vec<String> = (0..10).map(|i| format!("payload-{i}")).collect();
            let pings: Vec<Vec<u8>> = payloads
                .iter()
                .map(|p| frame(OP_PING, p.as_bytes()))
                .collect();
            let pongs: Vec<Reply> = payloads.iter().map(pong).collect();
            run(addr, &pings, how, &pongs, End::Clean);
        });
    }
    t.finish();
}
