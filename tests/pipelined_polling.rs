//! Pipelined HTTP on the Socket.IO path: many requests written back to back on one keep-alive
//! connection, with and without a polling GET held open in front of them. Each is answered, in
//! order, and none can make herald recurse, buffer without bound, or open sessions past the
//! connection caps.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use common::*;

const HANDSHAKE: &str = "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h\r\n\r\n";

/// One HTTP response read off a stream: status and body.
fn read_response(r: &mut impl BufRead) -> Option<(u16, String)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut len = 0;
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                len = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A polling session's id, from a handshake on its own connection.
fn open_session(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(HANDSHAKE.as_bytes()).unwrap();
    let (status, body) = read_response(&mut BufReader::new(s)).expect("a handshake answer");
    assert_eq!(status, 200, "{body}");
    let open: serde_json::Value = serde_json::from_str(&body[1..]).expect("an open packet");
    open["sid"].as_str().unwrap().to_owned()
}

fn poll_request(sid: &str) -> String {
    format!("GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: h\r\n\r\n")
}

/// The stack overflow: a polling GET held open, then a few hundred kilobytes of pipelined
/// handshakes on the same connection. When the GET was answered, each waiting request was
/// parsed from inside the answer to the one before it, one stack frame deeper each time, and
/// the loop thread overflowed its stack ("fatal runtime error: stack overflow"), taking the
/// whole process with it. Every request must be answered, in order, and herald must stay up.
#[test]
fn thousands_of_requests_pipelined_behind_a_held_get_are_each_answered() {
    const REQUESTS: usize = 6_000;
    let herald = spawn_herald(&[
        "--ping-interval",
        "300ms",
        "--max-connections-per-ip",
        "0",
        "--connection-rate-per-ip",
        "0",
    ]);
    let addr = herald.public_addr;
    let sid = open_session(addr);
    let conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut writer = conn.try_clone().unwrap();
    let pipelined = {
        let mut all = poll_request(&sid);
        all.push_str(&HANDSHAKE.repeat(REQUESTS));
        all
    };
    assert!(pipelined.len() > 250_000);
    let write = thread::spawn(move || writer.write_all(pipelined.as_bytes()));

    let mut reader = BufReader::new(conn);
    // The held GET is answered by the session's first ping.
    let (status, body) = read_response(&mut reader).expect("the held GET's answer");
    assert_eq!((status, body.as_str()), (200, "2"));
    for i in 0..REQUESTS {
        let (status, body) = read_response(&mut reader)
            .unwrap_or_else(|| panic!("no answer to pipelined request {i}: herald is gone"));
        assert_eq!(status, 200, "request {i}: {body}");
        assert!(body.starts_with("0{\"sid\":"), "request {i}: {body}");
    }
    write.join().unwrap().expect("every request written");
    // Still serving: the first session, the pipelined ones, and one more.
    open_session(addr);
    assert_eq!(
        metric_at(herald.control_addr, "herald_socketio_sessions"),
        (1 + REQUESTS + 1) as f64
    );
}

/// Unbounded buffering: while a polling GET was held, whatever else arrived on its connection
/// was appended to a buffer with no limit; 200 MB streamed took herald from 4.7 MB to 209 MB.
/// Those bytes are the client's next requests, answered only after the GET: once a request
/// head's worth waits, herald stops reading the connection, and TCP holds the client back.
#[test]
fn bytes_behind_a_held_get_are_not_buffered_without_bound() {
    const OFFERED: usize = 200 << 20;
    let herald = spawn_herald(&["--ping-interval", "60s", "--ping-timeout", "60s"]);
    let addr = herald.public_addr;
    let sid = open_session(addr);
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(poll_request(&sid).as_bytes()).unwrap();
    // Let the GET be taken and held before the flood.
    thread::sleep(Duration::from_millis(200));
    conn.set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut written = 0;
    let started = Instant::now();
    while written < OFFERED && started.elapsed() < Duration::from_secs(60) {
        match conn.write(&chunk) {
            Ok(n) => written += n,
            Err(_) => break, // blocked for the write timeout: herald stopped reading
        }
    }
    // What loopback's socket buffers hold, and no more.
    assert!(
        written < 64 << 20,
        "herald kept reading: {written} bytes taken"
    );
    let peak = herald.peak_rss();
    assert!(peak < 64 << 20, "peak RSS {peak} bytes");
    // The session is unharmed.
    assert_eq!(
        metric_at(herald.control_addr, "herald_socketio_polls_held"),
        1.0,
        "the GET is still held"
    );
}

/// Sessions outside the caps: one keep-alive connection pipelining handshakes opened two
/// million Engine.IO sessions in 34 s (1.14 GB), none of them counted against any cap. Sessions
/// are counted, apart from connections: the handshake past `--max-connections-per-ip` sessions
/// from one address is answered 429, past `--max-sessions` 503, and its connection closed; the
/// connection carrying them is not one of them; and the count falls again as sessions go.
#[test]
fn sessions_count_against_the_per_address_and_session_caps() {
    for (flags, status, refused) in [
        (
            ["--max-connections-per-ip", "5", "--max-sessions", "0"],
            429,
            "herald_connections_refused_total{reason=\"per_ip\"}",
        ),
        (
            ["--max-connections-per-ip", "0", "--max-sessions", "5"],
            503,
            "herald_connections_refused_total{reason=\"sessions\"}",
        ),
    ] {
        let mut args = vec!["--connection-rate-per-ip", "0", "--connect-timeout", "1s"];
        args.extend(flags);
        let herald = spawn_herald(&args);
        let conn = TcpStream::connect(herald.public_addr).unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        (&conn).write_all(HANDSHAKE.repeat(10).as_bytes()).unwrap();
        let mut reader = BufReader::new(conn);
        for i in 0..5 {
            let (s, body) = read_response(&mut reader).expect("an answer");
            assert_eq!(s, 200, "handshake {i}: {body}");
        }
        let (s, body) = read_response(&mut reader).expect("the refusal");
        assert_eq!(s, status, "{body}");
        assert!(body.contains("5 sessions already open"), "{body}");
        assert!(
            read_response(&mut reader).is_none(),
            "the connection is closed after the refusal"
        );
        assert_eq!(metric_at(herald.control_addr, refused), 1.0);
        // Unconnected sessions go at the connect timeout, and with them their count.
        eventually("the sessions to be reaped", || {
            metric_at(herald.control_addr, "herald_socketio_sessions") == 0.0
        });
        open_session(herald.public_addr);
    }
}

/// Every request on the Socket.IO path that a client can pipeline, as a proptest strategy.
#[derive(Debug, Clone)]
enum Req {
    Handshake,
    /// A GET on the session: answered at once with what is queued, or held.
    Poll,
    /// A POST of a ping packet on the session.
    Ping,
    Preflight,
    UnknownSid,
}

impl Req {
    fn text(&self, sid: &str) -> String {
        let q = |extra: &str| format!("/socket.io/?EIO=4&transport=polling{extra}");
        match self {
            Req::Handshake => HANDSHAKE.to_owned(),
            Req::Poll => poll_request(sid),
            Req::Ping => format!(
                "POST {} HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n2",
                q(&format!("&sid={sid}"))
            ),
            Req::Preflight => format!("OPTIONS {} HTTP/1.1\r\nHost: h\r\n\r\n", q("")),
            Req::UnknownSid => poll_request("AAAAAAAAAAAAAAAAAAAA"),
        }
    }
}

fn req() -> impl Strategy<Value = Req> {
    prop_oneof![
        4 => Just(Req::Handshake),
        2 => Just(Req::Poll),
        2 => Just(Req::Ping),
        1 => Just(Req::Preflight),
        1 => Just(Req::UnknownSid),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any run of pipelined polling requests, written in any cuts, is answered request by
    /// request in order until one of them ends the connection (an unknown sid, a second GET),
    /// and the gateway serves the next client whatever came before.
    #[test]
    fn pipelined_polling_requests_are_answered_in_order(
        reqs in proptest::collection::vec(req(), 1..300),
        cuts in proptest::collection::vec(1usize..4096, 1..16),
    ) {
        // A held GET is answered by a ping within 100 ms; a session whose pings go unanswered
        // is gone 200 ms later, and the requests after that find no session.
        let srv = start_server_with(|c| {
            c.ping_interval = Duration::from_millis(100);
            c.ping_timeout = Duration::from_millis(200);
        });
        let addr = srv.public_addr;
        let sid = open_session(addr);
        let stream: String = reqs.iter().map(|r| r.text(&sid)).collect();
        let conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        conn.set_nodelay(true).unwrap();
        let mut writer = conn.try_clone().unwrap();
        let write = thread::spawn(move || {
            let mut rest = stream.as_bytes();
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (now, later) = rest.split_at((*cut).min(rest.len()));
                if writer.write_all(now).is_err() {
                    return; // herald closed the connection: the rest is not for it
                }
                rest = later;
            }
        });
        let mut reader = BufReader::new(conn);
        for (i, r) in reqs.iter().enumerate() {
            let Some((status, body)) = read_response(&mut reader) else {
                panic!("no answer to request {i} ({r:?})");
            };
            let ends = match r {
                Req::Handshake => {
                    prop_assert_eq!(status, 200);
                    prop_assert!(body.starts_with("0{\"sid\":"), "{}", body);
                    false
                }
                Req::Preflight => {
                    prop_assert_eq!(status, 204);
                    false
                }
                Req::Ping => {
                    // A POST on a session closed by an earlier fault finds no session.
                    prop_assert!(status == 200 || status == 400, "{} {}", status, body);
                    status == 400
                }
                Req::Poll => {
                    prop_assert!(status == 200 || status == 400, "{} {}", status, body);
                    status == 400
                }
                Req::UnknownSid => {
                    prop_assert_eq!(status, 400);
                    true
                }
            };
            if ends {
                break;
            }
        }
        drop(reader);
        write.join().unwrap();
        open_session(addr);
    }
}
