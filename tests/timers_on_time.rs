//! Timers fire at their deadline. herald checked its timers on a fixed tick, a quarter of its
//! shortest timer, and so closed a session up to that tick late: the official Engine.IO suite's
//! polling ping-timeout test failed 13 times in 20. The loop now sleeps until the earliest
//! deadline the last sweep found.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const PING_INTERVAL: Duration = Duration::from_secs(2);
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How late after its deadline a session may still be found open: far above a timer's
/// lateness now (milliseconds), far below the half-second tick of before.
const SLACK: Duration = Duration::from_millis(150);

/// A polling request on a fresh connection: status and body.
fn request(addr: SocketAddr, query: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let req = format!("GET /socket.io/?EIO=4&transport=polling{query} HTTP/1.1\r\nHost: h\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut len = 0;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("Content-Length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

/// Engine.IO's heartbeat over polling: a client that never answers the ping sent at
/// pingInterval is gone at pingInterval + pingTimeout. Five sessions opened 100 ms apart are each
/// still there shortly before their deadline, and each is gone shortly after it.
#[test]
fn a_polling_session_is_closed_at_its_ping_timeout() {
    let srv = start_server_with(|c| {
        c.ping_interval = PING_INTERVAL;
        c.ping_timeout = PING_TIMEOUT;
        // Every other timer far away, so that the heartbeat alone sets the pace.
        c.handshake_timeout = Duration::from_secs(60);
        c.close_timeout = Duration::from_secs(60);
        c.connect_timeout = Duration::from_secs(60);
        c.auth_timeout = Duration::from_secs(60);
    });
    let addr = srv.public_addr;
    let mut sessions = Vec::new();
    for _ in 0..5 {
        let (status, open) = request(addr, "");
        assert_eq!(status, 200);
        // The session opened before this instant, so its deadline lies before it + 4 s.
        let opened = Instant::now();
        let open: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
        sessions.push((opened, open["sid"].as_str().unwrap().to_owned()));
        thread::sleep(Duration::from_millis(100));
    }
    let deadline = PING_INTERVAL + PING_TIMEOUT;
    for (opened, sid) in &sessions {
        // Before: the ping waits, unanswered, and the GET takes it at once.
        let before = *opened + deadline - Duration::from_millis(300);
        thread::sleep(before.saturating_duration_since(Instant::now()));
        assert_eq!(request(addr, &format!("&sid={sid}")), (200, "2".to_owned()));
    }
    for (opened, sid) in &sessions {
        let after = *opened + deadline + SLACK;
        thread::sleep(after.saturating_duration_since(Instant::now()));
        let (status, body) = request(addr, &format!("&sid={sid}"));
        assert_eq!(
            (status, body.as_str()),
            (400, r#"{"code":1,"message":"Session ID unknown"}"#),
            "the session outlived its ping timeout by {SLACK:?}"
        );
    }
}
