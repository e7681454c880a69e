//! A worker's state driven without a socket or a clock (see [`super::driver`]): bytes in, `now`
//! advanced by hand, the bytes each connection would be written read back from its queue.

use std::time::Duration;

use crate::command::Target;
use crate::config::Config;
use crate::core::conn::Phase;
use crate::core::driver::Driver;
use crate::core::worker::{new_sid, sid_worker};
use crate::ws::frame::encode_masked;

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: herald\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// What the tests read back of a driven worker.
trait Read {
    fn frames(&mut self, k: usize) -> Vec<(u8, Vec<u8>)>;
    fn send_text(&mut self, k: usize, text: &str);
    fn raw_client(&mut self, user: &str) -> usize;
    fn body(&mut self, k: usize) -> String;
}

impl Read for Driver {
    /// The server frames written to `k`: (opcode, payload).
    fn frames(&mut self, k: usize) -> Vec<(u8, Vec<u8>)> {
        let bytes = self.written(k);
        let mut frames = Vec::new();
        let mut rest = &bytes[..];
        while rest.len() >= 2 {
            let op = rest[0] & 0x0f;
            let (len, at) = match rest[1] & 0x7f {
                126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            frames.push((op, rest[at..at + len].to_vec()));
            rest = &rest[at + len..];
        }
        frames
    }

    fn send_text(&mut self, k: usize, text: &str) {
        self.read(
            k,
            &encode_masked(true, 0x1, 0, text.as_bytes(), [1, 2, 3, 4]),
        );
    }

    /// A raw `/ws` client, upgraded and subscribed to `user`.
    fn raw_client(&mut self, user: &str) -> usize {
        let k = self.connect().unwrap();
        self.read(k, UPGRADE.as_bytes());
        let answer = String::from_utf8(self.written(k)).unwrap();
        assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
        self.send_text(k, &format!(r#"{{"event":"subscribe","data":"{user}"}}"#));
        let frames = self.frames(k);
        assert_eq!(frames.len(), 1);
        let text = String::from_utf8(frames[0].1.clone()).unwrap();
        assert!(text.contains(r#""event":"subscribed""#), "{text}");
        k
    }

    /// The body of the HTTP answer written to `k`.
    fn body(&mut self, k: usize) -> String {
        let answer = String::from_utf8(self.written(k)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body.to_owned()
    }
}

fn polling(method: &str, sid: Option<&str>, body: &str) -> String {
    let sid = sid.map(|s| format!("&sid={s}")).unwrap_or_default();
    format!(
        "{method} /socket.io/?EIO=4&transport=polling{sid} HTTP/1.1\r\nHost: herald\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_raw_client_upgrades_subscribes_and_is_pushed_to() {
    let mut h = Driver::single();
    let k = h.connect().unwrap();
    // The request in three pieces, as a slow network delivers it.
    for piece in [&UPGRADE[..10], &UPGRADE[10..40], &UPGRADE[40..]] {
        h.read(k, piece.as_bytes());
    }
    let answer = String::from_utf8(h.written(k)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    h.send_text(k, r#"{"event":"subscribe","data":"u1"}"#);
    assert_eq!(h.frames(k).len(), 1);

    assert_eq!(h.push(Target::User("u1".into()), r#"{"message":"hi"}"#), 1);
    assert_eq!(
        h.push(Target::User("u2".into()), r#"{"message":"not yours"}"#),
        0
    );
    let frames = h.frames(k);
    assert_eq!(frames.len(), 1, "one frame for the one push to u1");
    let text = String::from_utf8(frames[0].1.clone()).unwrap();
    let want = format!(
        r#"{{"event":"notification","data":{{"message":"hi"}},"offset":"{}"}}"#,
        h.offset(1)
    );
    assert_eq!(text, want);
    assert_eq!(h.state.io.metrics.deliveries, 1);
}

#[test]
fn a_push_is_queued_once_per_socket_and_written_at_the_turns_end() {
    let mut h = Driver::single();
    let a = h.raw_client("u1");
    let b = h.raw_client("u1");
    // Drain what subscribing listed.
    h.end_turn();
    assert_eq!(
        h.push(Target::Users(vec!["u1".into(), "u1".into()]), "{}"),
        2
    );
    assert_eq!(h.push(Target::All, "{}"), 2);
    // Each socket is listed once however many frames wait for it, in the order it was listed.
    assert_eq!(h.end_turn(), vec![a, b]);
    assert_eq!(h.frames(a).len(), 2);
    assert_eq!(h.frames(b).len(), 2);
}

#[test]
fn an_unfinished_request_is_dropped_at_the_handshake_timeout() {
    let mut h = Driver::single();
    let k = h.connect().unwrap();
    h.read(k, b"GET /ws HTTP/1.1\r\n");
    let timeout = h.state.config.handshake_timeout;
    let next = h.advance(timeout / 2);
    assert!(!h.is_gone(k));
    assert_eq!(
        next,
        Some(h.now + timeout / 2),
        "the sweep names the deadline"
    );
    h.advance(timeout / 2);
    assert!(h.is_gone(k));
    assert_eq!(h.state.io.metrics.handshake_timeouts, 1);
}

#[test]
fn a_silent_client_is_pinged_then_dropped_and_leaves_its_room() {
    let mut h = Driver::single();
    let k = h.raw_client("u1");
    let (interval, timeout) = (h.state.config.ping_interval, h.state.config.ping_timeout);
    h.advance(interval);
    assert_eq!(h.frames(k), vec![(0x9, vec![])], "a ping");
    h.advance(timeout - Duration::from_millis(1));
    assert!(!h.is_gone(k));
    h.advance(Duration::from_millis(1));
    assert!(h.is_gone(k));
    assert_eq!(h.state.io.metrics.ping_timeouts, 1);
    assert_eq!(h.push(Target::User("u1".into()), "{}"), 0);
}

#[test]
fn a_client_that_answers_pings_stays() {
    let mut h = Driver::single();
    let k = h.raw_client("u1");
    for _ in 0..5 {
        h.advance(h.state.config.ping_interval);
        assert_eq!(h.frames(k), vec![(0x9, vec![])]);
        h.read(k, &encode_masked(true, 0xA, 0, b"", [1, 2, 3, 4]));
    }
    assert!(!h.is_gone(k));
    assert_eq!(h.push(Target::User("u1".into()), "{}"), 1);
}

#[test]
fn a_reader_that_never_drains_is_closed_as_a_slow_consumer() {
    let mut c = Config::for_tests();
    c.workers = 1;
    c.max_queued_bytes = 4096;
    let mut h = Driver::new(c, 0, 1);
    let k = h.raw_client("u1");
    let big = format!(r#"{{"message":"{}"}}"#, "x".repeat(1000));
    let taken = (0..10)
        .map(|_| h.push(Target::User("u1".into()), &big))
        .sum::<usize>();
    assert!(taken < 10, "the queue's limit stops it");
    assert_eq!(h.state.io.metrics.slow_consumers, 1);
    let frames = h.frames(k);
    let (op, payload) = frames.last().expect("a close frame");
    assert_eq!(*op, 0x8);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 4008);
    assert_eq!(
        h.push(Target::User("u1".into()), "{}"),
        0,
        "out of its room"
    );
}

#[test]
fn a_socketio_client_connects_subscribes_and_is_pushed_to_over_polling() {
    let mut h = Driver::single();
    let k = h.connect().unwrap();
    h.read(k, polling("GET", None, "").as_bytes());
    let open = h.body(k);
    let sid = open
        .strip_prefix("0{\"sid\":\"")
        .and_then(|rest| rest.split('"').next())
        .expect("an open packet")
        .to_owned();
    assert_eq!(sid_worker(sid.as_bytes()), Some(0));

    h.read(k, polling("POST", Some(&sid), "40").as_bytes());
    assert_eq!(h.body(k), "ok");
    h.read(k, polling("GET", Some(&sid), "").as_bytes());
    assert!(h.body(k).starts_with("40{\"sid\":"));

    h.read(
        k,
        polling("POST", Some(&sid), r#"42["subscribe","u1"]"#).as_bytes(),
    );
    assert_eq!(h.body(k), "ok");
    h.read(k, polling("GET", Some(&sid), "").as_bytes());
    assert!(h.body(k).starts_with(r#"42["subscribed""#));

    // A GET with nothing to send is held; the push answers it.
    h.read(k, polling("GET", Some(&sid), "").as_bytes());
    assert!(h.written(k).is_empty(), "held");
    assert_eq!(h.push(Target::User("u1".into()), r#"{"n":1}"#), 1);
    let want = format!(r#"42["notification",{{"n":1}},"{}"]"#, h.offset(1));
    assert_eq!(h.body(k), want);
}

#[test]
fn a_request_for_another_workers_session_is_handed_to_it() {
    let mut c = Config::for_tests();
    c.workers = 2;
    let mut h = Driver::new(c, 0, 2);
    let sid = new_sid(1);
    let sid = std::str::from_utf8(&sid).unwrap();
    let k = h.connect().unwrap();
    h.read(k, polling("GET", Some(sid), "").as_bytes());
    assert!(h.is_gone(k), "no longer this worker's");
    let (key, conn, owner) = h.handed.pop().expect("handed over");
    assert_eq!((key, owner), (k, 1));
    // The request travels unparsed: the owner reads it.
    let Phase::Http { head, .. } = &conn.phase else {
        panic!("between requests");
    };
    assert!(head.starts_with(b"GET /socket.io/"));

    let mut owner = Driver::new(
        {
            let mut c = Config::for_tests();
            c.workers = 2;
            c
        },
        1,
        2,
    );
    let adopted = owner.state.adopt(conn, owner.now);
    let answer = String::from_utf8(owner.written(adopted)).unwrap();
    // The owner does not know this made-up session: it answers as for any unknown sid.
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("Session ID unknown"), "{answer}");
}

#[test]
fn the_wall_clock_moves_with_now() {
    let h = Driver::single();
    let start = h.state.unix(h.now);
    assert_eq!(start, Duration::from_secs(1_800_000_000));
    assert_eq!(
        h.state.unix(h.now + Duration::from_millis(1500)),
        start + Duration::from_millis(1500)
    );
}

/// A socket that takes `left` more bytes, then would block.
struct Partial {
    left: usize,
    took: Vec<u8>,
}

impl std::io::Write for Partial {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        self.took.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn what_a_full_socket_refuses_stays_queued_in_order() {
    let mut h = Driver::single();
    let k = h.raw_client("u1");
    for n in 0..3 {
        h.push(Target::User("u1".into()), &format!(r#"{{"n":{n}}}"#));
    }
    let mut socket = Partial {
        left: 30,
        took: Vec::new(),
    };
    h.write_to(k, &mut socket);
    assert_eq!(socket.took.len(), 30, "the socket took what it could");
    let mut all = socket.took;
    all.extend(h.written(k));
    let text = String::from_utf8_lossy(&all);
    let order: Vec<usize> = (0..3)
        .map(|n| text.find(&format!(r#"{{"n":{n}}}"#)).expect("every frame"))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn shutdown_tells_every_raw_client_1012_and_drops_idle_connections() {
    let mut h = Driver::single();
    let open = h.raw_client("u1");
    let idle = h.connect().unwrap();
    h.shutdown();
    let frames = h.frames(open);
    let (op, payload) = frames.last().expect("a close frame");
    assert_eq!(*op, 0x8);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1012);
    assert!(
        h.is_gone(idle),
        "a connection with no request is closed at once"
    );
    assert_eq!(
        h.push(Target::All, "{}"),
        0,
        "a closing socket takes no push"
    );
}
