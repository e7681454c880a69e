//! The control API's limits against hostile or heavy callers: requests that trickle, connections
//! over the cap, bodies that would take too much memory, and a loop too slow to count a push.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use crossbeam_channel::{Receiver, Sender};
use herald::command::{Command, LoopHandle, PushReply};
use herald::config::Config;
use herald::control::{self, ControlOptions};
use herald::server::Running;
use serde_json::{json, Value};

/// Sends `request` (head and body) on a fresh connection and reads until the server closes.
/// A write cut short (the server answered before the body was all sent) is not an error: the
/// answer is what counts. `None` when no answer came, e.g. the connection was reset.
fn exchange(addr: SocketAddr, request: &[u8]) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    (!buf.is_empty()).then(|| parse_response(&buf))
}

fn post_request(path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// A client that opens a connection, sends the start of a request and then one more header byte
/// every 100 ms, never finishing the head. Returns what the server answered, once it closes.
fn trickle(addr: SocketAddr) -> thread::JoinHandle<String> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"POST /v1/users/1/notifications HTTP/1.1\r\nX-Slow: ")
        .unwrap();
    let mut writer = s.try_clone().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&done);
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) && writer.write_all(b"a").is_ok() {
            thread::sleep(Duration::from_millis(100));
        }
    });
    thread::spawn(move || {
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        done.store(true, Ordering::Relaxed);
        String::from_utf8_lossy(&answer).into_owned()
    })
}

#[test]
fn trickling_clients_cannot_hold_the_control_slots() {
    // The bug: --control-idle-timeout bounded each read, not the request, so 300 clients sending
    // a request head one byte a second held all 256 control connection slots for as long as they
    // liked, and every real push was answered 503. A request must now arrive whole within
    // --control-request-timeout; a trickler is answered 408 and its slot freed.
    let srv = start_server_with(|c| {
        c.control_max_connections = 4;
        c.control_request_timeout = Duration::from_secs(1);
    });
    let tricklers: Vec<_> = (0..4).map(|_| trickle(srv.control_addr)).collect();
    let body = br#"{"message":"real"}"#;
    eventually("a real push to get through the tricklers", || {
        exchange(
            srv.control_addr,
            &post_request("/v1/users/1/notifications", body),
        )
        .is_some_and(|(status, _, _)| status == 202)
    });
    for t in tricklers {
        let answer = t.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    }
    // Each slot is given back as its connection's thread ends, just after the close the
    // trickler saw: on a loaded machine that may be a moment later.
    assert_eq!(
        metric_once_free(
            &srv,
            "herald_control_refused_total{reason=\"request_timeout\"}"
        ),
        4.0
    );
}

#[test]
fn a_client_that_connects_and_says_nothing_is_closed_by_the_request_timeout() {
    // A client need not trickle to hold a slot: connecting and staying silent did it for as long
    // as the idle timeout. The first request's time runs from the connection's opening.
    let srv = start_server_with(|c| {
        c.control_max_connections = 1;
        c.control_request_timeout = Duration::from_secs(1);
    });
    let mut silent = TcpStream::connect(srv.control_addr).unwrap();
    silent.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut rest = Vec::new();
    silent.read_to_end(&mut rest).expect("closed, not reset");
    assert!(rest.is_empty(), "closed without an answer: {rest:?}");
    // The slot is given back as the connection's thread ends, just after the close.
    eventually("the slot to be free", || get(&srv, "/healthz").0 == 200);
}

#[test]
fn a_connection_refused_over_the_cap_is_read_before_it_is_closed() {
    // The bug: a connection over --control-max-connections was answered 503 and closed at once,
    // with its request unread. Closing a socket with unread input makes the kernel answer with a
    // reset, and a reset that overtakes the 503 on the network destroys it before the client
    // reads it (13 of 17 such answers were lost). On loopback the 503 always arrives first, so
    // what is checked is the cause: a refused client that goes on sending its request after the
    // answer was reset (broken pipe) on every attempt. The refused connection is now read until
    // its client closes, or for a second.
    let srv = start_server_with(|c| {
        c.control_max_connections = 1;
        c.control_request_timeout = Duration::from_secs(60);
    });
    // Holds the only slot.
    let holder = TcpStream::connect(srv.control_addr).unwrap();
    for i in 0..10 {
        let mut s = TcpStream::connect(srv.control_addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(
            b"POST /v1/users/1/notifications HTTP/1.1\r\nHost: x\r\nContent-Length: 30000\r\n\r\n",
        )
        .unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)
            .expect("the answer, then the end");
        let (status, _, body) = parse_response(&answer);
        assert_eq!(status, 503, "{i}: {body}");
        assert!(body.contains("too many control connections"), "{body}");
        for part in 0..3 {
            s.write_all(&[b'x'; 10_000])
                .unwrap_or_else(|e| panic!("refusal {i}, body part {part}: {e}"));
            thread::sleep(Duration::from_millis(20));
        }
    }
    drop(holder);
    assert!(metric_once_free(&srv, "herald_control_refused_total{reason=\"connections\"}") >= 10.0);
}

/// `series` from the first `/metrics` a free slot answers. The story: these tests waited for
/// `/healthz` to answer, then asked `/metrics`; with one slot, the `/healthz` connection holds it
/// until its thread ends, a moment after its answer on a loaded machine, and `/metrics` was
/// refused 503 (seen once in CI-like runs while other processes kept both cores busy).
fn metric_once_free(srv: &Running, series: &str) -> f64 {
    let mut body = String::new();
    eventually("a control slot to be free", || {
        let (status, text) = get(srv, "/metrics");
        body = text;
        status == 200
    });
    metric_in(&body, series)
}

/// Heavy pushes sent at once.
const HEAVY: usize = 100;

/// A multi-user push of about 1 MiB: `watched` and then as many other user ids as fit.
fn heavy_body(watched: &str, message: usize) -> Vec<u8> {
    let mut ids = vec![watched.to_owned()];
    let mut len = 0;
    while len < 1024 * 1024 - 200 {
        let id = format!("u{:07}", ids.len());
        len += id.len() + 3;
        ids.push(id);
    }
    serde_json::to_vec(&json!({"userIds": ids, "notification": {"message": message}})).unwrap()
}

#[test]
fn heavy_pushes_hold_bounded_memory_and_small_pushes_keep_moving() {
    // The bug: 256 concurrent multi-user pushes of 1 MiB each took herald to 4.86 GB RSS
    // (3.34 GB kept after), delayed a one-user push by 19.6 s, and answered 50 of them 503
    // "gateway did not answer in time" although they were delivered, so a backend that retries
    // would deliver them twice. Body bytes in flight are now budgeted
    // (--control-max-inflight-bytes: over it, 503 before the body is read and nothing
    // delivered), small bodies always pass, and a push the loop has not counted in time is
    // answered 202 {"accepted":true}. Every push answered 202 is delivered exactly once and every
    // push answered 503 not at all.
    let herald = spawn_herald(&["--user-rate", "0"]);
    let mut watcher = connect_path(herald.public_addr, "/ws");
    subscribe(&mut watcher, "watched");
    let control = herald.control_addr;
    let heavy: Vec<_> = (0..HEAVY)
        .map(|i| {
            let request = post_request("/v1/notifications", &heavy_body("watched", i));
            thread::spawn(move || (i, exchange(control, &request)))
        })
        .collect();
    let small = post_request("/v1/users/small/notifications", br#"{"message":"small"}"#);
    let (status, _, body) = exchange(control, &small).expect("an answer");
    assert_eq!(status, 202, "a one-user push among the heavy ones: {body}");

    let mut accepted = Vec::new();
    for t in heavy {
        let (i, answer) = t.join().unwrap();
        let (status, head, body) = answer.unwrap_or_else(|| panic!("push {i} got no answer"));
        match status {
            202 => accepted.push(i),
            503 => {
                assert!(body.contains("too many request bytes in flight"), "{body}");
                assert_eq!(header(&head, "Retry-After"), Some("1"), "{head}");
            }
            _ => panic!("push {i}: {status} {body}"),
        }
    }
    let end = post_request("/v1/users/watched/notifications", br#"{"message":"end"}"#);
    assert_eq!(exchange(control, &end).expect("an answer").0, 202);
    let mut delivered: Vec<usize> = notifications_until(&mut watcher, "end")
        .iter()
        .map(|d| d["message"].as_u64().expect("a heavy push's number") as usize)
        .collect();
    delivered.sort_unstable();
    assert_eq!(delivered, accepted, "202 exactly when delivered, once");

    let budget = Config::for_tests().control_max_inflight_bytes as f64;
    let peak = metric_at(control, "herald_control_inflight_bytes_peak");
    assert!(peak <= budget + 256.0 * 64.0 * 1024.0, "{peak} > {budget}");
    assert_eq!(metric_at(control, "herald_control_inflight_bytes"), 0.0);
    let rss = herald.peak_rss();
    eprintln!(
        "{HEAVY} x 1 MiB multi-user pushes: {} accepted; herald VmHWM {:.1} MiB",
        accepted.len(),
        rss as f64 / (1024.0 * 1024.0)
    );
    // Measured: 1175 MiB before the budget, about 250 MiB with it.
    assert!(rss < 600 * 1024 * 1024, "herald peaked at {rss} bytes");
}

/// A stand-in event loop that keeps every push until the test lets it go, then delivers it
/// (answers it), as a loop busy with other work would.
fn holding_loop(release: Receiver<()>) -> LoopHandle {
    let poll = mio::Poll::new().unwrap();
    let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
    let (tx, rx) = crossbeam_channel::unbounded();
    thread::spawn(move || hold(poll, rx, release));
    LoopHandle::new(tx, waker)
}

fn hold(_poll: mio::Poll, rx: Receiver<Command>, release: Receiver<()>) {
    for cmd in rx {
        match cmd {
            Command::Push { reply, .. } => {
                let _ = release.recv();
                let _ = reply.send(PushReply {
                    sockets: 1,
                    ..PushReply::default()
                });
            }
            Command::Metrics { reply } => {
                let _ = reply.send(String::new());
            }
            Command::Readiness { reply } => {
                let _ = reply.send(true);
            }
            Command::UserInfo { .. } => {}
            Command::Shutdown => return,
        }
    }
}

fn start_control_with_holding_loop() -> (SocketAddr, Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut opts = ControlOptions::from(&Config::for_tests());
    opts.reply_timeout = Duration::from_millis(100);
    let (release, released) = crossbeam_channel::unbounded();
    control::spawn(listener, holding_loop(released), opts).unwrap();
    (addr, release)
}

#[test]
fn a_push_the_loop_is_slow_to_count_is_accepted_not_failed() {
    // The bug: a push the event loop had not counted within the reply timeout was answered
    // 503 "gateway did not answer in time", although it sat in the loop's queue and was
    // delivered later; a backend that retried on 503 delivered it twice. Once a push has reached
    // the loop it is answered 202: with counts when the loop answers in time, else
    // {"accepted":true}.
    let (addr, release) = start_control_with_holding_loop();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let body = r#"{"message":"slow"}"#;
    let push = format!(
        "POST /v1/users/1/notifications HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(push.as_bytes()).unwrap();
    let mut head = vec![0u8; 512];
    let n = s.read(&mut head).unwrap();
    let (status, _, answer) = parse_response(&head[..n]);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap(),
        json!({"accepted": true})
    );

    // The loop takes it at last; the connection, which waited for that, serves the next request.
    release.send(()).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let (status, _, metrics) = parse_response(&rest);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("\nherald_control_pushes_unconfirmed_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nherald_control_inflight_bytes 0\n"),
        "{metrics}"
    );
}
