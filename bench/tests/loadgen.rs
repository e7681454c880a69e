//! The load generator end to end: `herald-bench` on its smallest setting against a gateway in
//! this process, over both protocols, must see every delivery it expects and say so in its JSON
//! and its exit status.
//!
//! It lives in the generator's package so that cargo builds the `herald-bench` binary for it
//! (`CARGO_BIN_EXE_*` names only the binaries of the test's own package).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use herald::config::Config;
use herald::server::{self, Running};

const CONNECTIONS: u64 = 50;
const PUSHES: u64 = 20;

/// A gateway on `127.0.0.1:0` (both ports) with the default limits, as herald's own tests start
/// it.
fn start_server() -> Running {
    server::start(Config::for_tests()).expect("gateway starts")
}

/// The test CA and the server certificate it signed (P-256, for localhost and 127.0.0.1).
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/tls")
        .join(name)
}

/// A gateway as [`start_server`] starts it, speaking TLS on its public port.
fn start_tls_server() -> Running {
    let mut config = Config::for_tests();
    config.tls_cert = Some(fixture("server.pem"));
    config.tls_key = Some(fixture("server.key"));
    server::start(config).expect("gateway starts with the test certificate")
}

fn bench(args: &[&str]) -> (Output, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(args)
        .args(["--quiet", "--json", "-", "--connect-timeout", "5s"])
        .output()
        .expect("herald-bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON report on stdout ({e}); stderr: {stderr}"));
    (out, report)
}

fn tiny_broadcast_loses_nothing(protocol: &str) {
    let srv = start_server();
    let (url, control) = (srv.public_addr.to_string(), srv.control_addr.to_string());
    let (out, r) = bench(&[
        "--url",
        &url,
        "--control",
        &control,
        "--protocol",
        protocol,
        "--connections",
        &CONNECTIONS.to_string(),
        "--pushes",
        &PUSHES.to_string(),
        "--rate",
        "200",
        "--pattern",
        "broadcast",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{r:#}");
    assert!(!stderr.contains("LOSS:"), "{stderr}");
    assert_eq!(r["protocol"], protocol);
    assert_eq!(r["connections_ok"], CONNECTIONS);
    assert_eq!(r["connections_failed"], 0);
    assert_eq!(r["pushes_sent"], PUSHES);
    assert_eq!(r["push_statuses"]["202"], PUSHES);
    assert_eq!(r["push_errors"], 0);
    assert_eq!(r["deliveries_expected"], CONNECTIONS * PUSHES);
    assert_eq!(r["deliveries_received"], CONNECTIONS * PUSHES);
    assert_eq!(r["deliveries_lost"], 0);
    assert_eq!(r["deliveries_duplicates"], 0);
    assert_eq!(r["latency_us"]["count"], CONNECTIONS * PUSHES);
}

#[test]
fn raw_clients_get_every_broadcast() {
    tiny_broadcast_loses_nothing("raw");
}

#[test]
fn socketio_clients_get_every_broadcast() {
    tiny_broadcast_loses_nothing("socketio");
}

#[test]
fn multicast_expectations_come_from_the_subscription_map() {
    let srv = start_server();
    let (url, control) = (srv.public_addr.to_string(), srv.control_addr.to_string());
    // 50 connections over 10 users: every user has 5 sockets, so each push of 3 users reaches 15.
    let (out, r) = bench(&[
        "--url",
        &url,
        "--control",
        &control,
        "--connections",
        "50",
        "--users",
        "10",
        "--pattern",
        "multicast",
        "--k",
        "3",
        "--pushes",
        "20",
        "--rate",
        "500",
        "--control-connections",
        "2",
        "--client-threads",
        "2",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r["deliveries_expected"], 20 * 15);
    assert_eq!(r["deliveries_received"], 20 * 15);
}

#[test]
fn connections_that_fail_make_the_run_fail() {
    let srv = start_server();
    // A port nobody listens on: bound, then released.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let (out, r) = bench(&[
        "--url",
        &closed.to_string(),
        "--control",
        &srv.control_addr.to_string(),
        "--connections",
        "5",
        "--pushes",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(r["connections_failed"], 5);
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAILED:"));
}

#[test]
fn synchronous_callers_wait_for_each_answer_and_time_it() {
    let srv = start_server();
    let (url, control) = (srv.public_addr.to_string(), srv.control_addr.to_string());
    let (out, r) = bench(&[
        "--url",
        &url,
        "--control",
        &control,
        "--connections",
        "20",
        "--pattern",
        "broadcast",
        "--pushes",
        "20",
        "--rate",
        "200",
        "--synchronous",
        "--control-connections",
        "2",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A caller still waiting when the 100 ms schedule ends leaves its later pushes unsent, and
    // that is not a failure; every push sent is answered, timed and delivered.
    let answered = r["pushes_answered"].as_u64().expect("pushes_answered");
    assert!(answered > 0, "{r:#}");
    assert_eq!(answered + r["pushes_unsent"].as_u64().unwrap(), 20, "{r:#}");
    assert_eq!(r["push_call_us"]["count"], answered);
    assert_eq!(r["deliveries_received"], answered * 20);
    // One figure per push: the latency of its last delivery.
    assert_eq!(r["last_delivery_us"]["count"], answered);
}

#[test]
fn wss_clients_get_every_broadcast() {
    let srv = start_tls_server();
    let url = format!("wss://{}", srv.public_addr);
    let ca = fixture("ca.pem");
    for (protocol, version) in [("raw", "any"), ("socketio", "1.2")] {
        let (out, r) = bench(&[
            "--url",
            &url,
            "--control",
            &srv.control_addr.to_string(),
            "--tls-ca",
            ca.to_str().expect("a UTF-8 path"),
            "--tls-version",
            version,
            "--protocol",
            protocol,
            "--connections",
            &CONNECTIONS.to_string(),
            "--pushes",
            &PUSHES.to_string(),
            "--rate",
            "200",
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}\n{r:#}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(r["connections_ok"], CONNECTIONS);
        assert_eq!(r["deliveries_received"], CONNECTIONS * PUSHES);
        assert_eq!(r["deliveries_lost"], 0);
        let agreed = if version == "1.2" { "tls12" } else { "tls13" };
        assert_eq!(r["tls"][agreed], CONNECTIONS, "{r:#}");
    }
}

#[test]
fn handshakes_mode_counts_full_and_resumed_handshakes() {
    let srv = start_tls_server();
    let (url, ca) = (srv.public_addr.to_string(), fixture("ca.pem"));
    let ca = ca.to_str().expect("a UTF-8 path");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--url",
            &url,
            "--tls-ca",
            ca,
            "--handshakes",
            "--duration",
            "300ms",
            "--concurrency",
            "4",
        ];
        args.extend_from_slice(extra);
        let (out, r) = bench(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}\n{r:#}");
        assert_eq!(r["failed"], 0, "{r:#}");
        assert!(r["completed"].as_u64().unwrap() > 0, "{r:#}");
        r
    };
    let full = run(&[]);
    assert_eq!(full["resumed"], 0, "{full:#}");
    assert_eq!(full["full"], full["completed"], "{full:#}");
    assert_eq!(full["no_ticket"], 0, "{full:#}");
    // The first handshakes have no ticket yet; the later ones resume with those given before.
    let resumed = run(&["--tls-resume"]);
    assert!(resumed["resumed"].as_u64().unwrap() > 0, "{resumed:#}");
    let tls12 = run(&["--tls-version", "1.2"]);
    assert_eq!(tls12["tls12"], tls12["completed"], "{tls12:#}");
}

#[test]
fn handshakes_mode_without_tls_connects_and_closes() {
    let srv = start_server();
    let (out, r) = bench(&[
        "--url",
        &srv.public_addr.to_string(),
        "--handshakes",
        "--duration",
        "300ms",
        "--concurrency",
        "4",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r["tls"], false);
    assert_eq!(r["failed"], 0, "{r:#}");
    assert!(r["completed"].as_u64().unwrap() > 0, "{r:#}");
}
