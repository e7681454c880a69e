//! Warnings a peer can cause are rate-limited, and counted in metrics instead.
//!
//! The story: every refused handshake wrote one WARN line, so 5,000 requests for `/nope` wrote
//! 5,000 lines; anyone who could open connections could grow herald's log (and the disk under
//! it) as fast as they could send. Now at most a few lines a second of each kind are written,
//! the first after a gap says how many were held back, and
//! `herald_log_lines_suppressed_total{kind}` counts the rest.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;

const REQUESTS: usize = 2_000;

#[test]
fn a_flood_of_refused_requests_writes_a_few_lines_not_one_each() {
    let (mut herald, log) = spawn_herald_logged(&[
        "--max-connections-per-ip",
        "0",
        "--connection-rate-per-ip",
        "0",
    ]);
    for _ in 0..REQUESTS {
        let mut s = TcpStream::connect(herald.public_addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(b"GET /nope HTTP/1.1\r\nHost: herald\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        assert!(answer.starts_with(b"HTTP/1.1 404"), "{answer:?}");
    }
    let rejected = metric_at(
        herald.control_addr,
        "herald_handshakes_rejected_total{status=\"404\"}",
    );
    let suppressed = metric_at(
        herald.control_addr,
        "herald_log_lines_suppressed_total{kind=\"handshake\"}",
    );
    herald.terminate();
    let log: Vec<String> = log.iter().collect();
    let lines = log
        .iter()
        .filter(|l| l.contains("handshake rejected"))
        .count();
    assert_eq!(rejected as usize, REQUESTS);
    // Every refusal is either a line or counted as held back.
    assert_eq!(lines + suppressed as usize, REQUESTS, "{lines} lines");
    // Five lines a second: a tenth of the requests in lines would take 40 s of flooding.
    assert!(
        lines <= REQUESTS / 10,
        "{lines} lines for {REQUESTS} requests"
    );
}
