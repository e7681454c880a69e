//! Pushes arriving faster than the loop turns: the loop takes them in batches and writes each
//! socket once per batch (one `writev` for all its frames). Nothing may be lost, duplicated or
//! reordered per sender on the way.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;

use common::*;

const SENDERS: usize = 6;
const PER_SENDER: usize = 300;

/// Sends `PER_SENDER` pipelined pushes on one keep-alive connection and reads their answers.
fn sender(
    addr: std::net::SocketAddr,
    id: usize,
    path: &'static str,
    body: fn(usize, usize) -> String,
) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reqs = String::new();
    for n in 0..PER_SENDER {
        let b = body(id, n);
        reqs += &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        );
    }
    s.write_all(reqs.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while String::from_utf8_lossy(&got)
        .matches("HTTP/1.1 202")
        .count()
        < PER_SENDER
    {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "control connection closed early");
        got.extend_from_slice(&buf[..n]);
    }
}

fn check(clients: &mut [Client]) {
    for ws in clients {
        let mut seen = HashSet::new();
        let mut last = [None; SENDERS];
        for _ in 0..SENDERS * PER_SENDER {
            let m = recv_json(ws);
            let (id, n) = (
                m["data"]["id"].as_u64().unwrap() as usize,
                m["data"]["n"].as_u64().unwrap(),
            );
            assert!(seen.insert((id, n)), "duplicate {id}/{n}");
            assert!(last[id] < Some(n), "sender {id}: {n} after {:?}", last[id]);
            last[id] = Some(n);
        }
    }
}

#[test]
fn concurrent_pushes_to_one_user_arrive_once_each_in_order() {
    let srv = start_server();
    let mut clients: Vec<Client> = (0..3).map(|_| client_for(&srv, "burst")).collect();
    let senders: Vec<_> = (0..SENDERS)
        .map(|id| {
            let addr = srv.control_addr;
            thread::spawn(move || {
                sender(addr, id, "/v1/users/burst/notifications", |id, n| {
                    format!(r#"{{"id":{id},"n":{n}}}"#)
                })
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    check(&mut clients);
}

#[test]
fn concurrent_broadcasts_arrive_once_each_in_order() {
    let srv = start_server();
    let mut clients: Vec<Client> = (0..20).map(|_| connect(&srv)).collect();
    let senders: Vec<_> = (0..SENDERS)
        .map(|id| {
            let addr = srv.control_addr;
            thread::spawn(move || {
                sender(addr, id, "/v1/broadcast", |id, n| {
                    format!(r#"{{"notification":{{"id":{id},"n":{n}}}}}"#)
                })
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    check(&mut clients);
    assert_eq!(
        metric(&srv, "herald_deliveries_total"),
        (20 * SENDERS * PER_SENDER) as f64
    );
    // How many batches were coalesced depends on timing; it is printed, not asserted.
    println!(
        "corked batches: {}",
        metric(&srv, "herald_corked_batches_total")
    );
}
