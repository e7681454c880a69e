//! A client that never reads: herald closes it with 4008 once more than `--max-queued-bytes`
//! waits for it, drops what waited, and a client beside it that reads misses nothing.

mod common;

use serde_json::json;

use common::*;

/// Pushes of [`BIG`] bytes to the slow client's user: 12.8 MB, far more than the socket buffers
/// and the 1 MiB limit hold.
const BIG_PUSHES: usize = 200;
const BIG: usize = 64 * 1000;

fn subscribe_raw(c: &mut RawClient, user: &str) {
    let msg = json!({"event": "subscribe", "data": user}).to_string();
    c.send(&client_frame(true, 0x1, msg.as_bytes()));
    let (op, reply) = c.read_frame().expect("subscribed");
    assert_eq!(op, 0x1);
    assert!(String::from_utf8_lossy(&reply).contains("subscribed"));
}

#[test]
fn a_client_that_never_reads_is_closed_with_4008() {
    let srv = start_server();
    let mut slow = RawClient::connect(srv.public_addr);
    subscribe_raw(&mut slow, "slow");
    subscribe_raw(&mut slow, "everyone");
    let mut reader = client_for(&srv, "everyone");

    let big = "x".repeat(BIG);
    for i in 0..BIG_PUSHES {
        let (status, _) = post(
            &srv,
            "/v1/users/slow/notifications",
            json!({"type": "T", "message": big}),
        );
        assert_eq!(status, 202);
        // Beside it, a reader of another user's pushes gets every one, in order.
        push_to(&srv, "everyone", &i.to_string());
        let m = recv_json(&mut reader);
        assert_eq!(m["data"]["message"], i.to_string());
    }
    eventually("the slow client to be closed", || {
        metric(&srv, "herald_slow_consumers_total") == 1.0
    });
    assert_eq!(metric(&srv, "herald_closes_total{code=\"4008\"}"), 1.0);
    // What waited was dropped: the slow client, reading at last, finds what its socket buffers
    // held, then the close frame.
    assert_eq!(slow.expect_close(), 4008);
    // Pushes to its user now reach nobody; the reader is unaffected.
    assert_eq!(push_to(&srv, "slow", "gone"), 0);
    assert_eq!(push_to(&srv, "everyone", "still here"), 1);
    assert_eq!(recv_json(&mut reader)["data"]["message"], "still here");
}
