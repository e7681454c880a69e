//! What the `herald` binary says at start when it is given a mistake, or runs where it cannot
//! keep its promises, and the shape of its log lines.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

fn herald() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    // The test's own environment must not configure the binary behind the test's back.
    for (name, _) in std::env::vars() {
        if name.starts_with("HERALD_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Runs `cmd`, which must end by itself: herald refusing its configuration. One that starts
/// instead is stopped, and fails the test.
fn refused(mut cmd: Command) -> (ExitStatus, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("herald runs");
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("herald started: {}", reader.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = reader.join().unwrap();
    assert!(!status.success(), "{stderr}");
    (status, stderr)
}

/// Starts `cmd` and returns it with its log up to and including the listening line.
fn started(mut cmd: Command) -> (Child, Vec<String>) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("herald starts");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines().map_while(Result::ok) {
        let listening = line.contains("herald listening");
        seen.push(line);
        if listening {
            return (child, seen);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("herald never listened: {seen:#?}");
}

/// `--ping-interval 0s` was accepted, and a client was pinged 276 times in 3 s.
#[test]
fn a_zero_ping_interval_is_refused_naming_the_flag() {
    let mut cmd = herald();
    cmd.args(["--ping-interval", "0s"]);
    let (status, stderr) = refused(cmd);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--ping-interval"), "{stderr}");
    assert!(stderr.contains("above zero"), "{stderr}");
}

/// `HERALD_PING_INTERVAL=abc` was reported as a bad `--ping-interval`, a flag the operator had
/// not typed and could not find on the command line.
#[test]
fn a_bad_variable_is_named_with_its_flag() {
    for value in ["abc", "0s"] {
        let mut cmd = herald();
        cmd.env("HERALD_PING_INTERVAL", value);
        let (status, stderr) = refused(cmd);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("HERALD_PING_INTERVAL"), "{stderr}");
        assert!(stderr.contains("--ping-interval"), "{stderr}");
    }
}

/// `--listen localhost:7050` was refused as "invalid socket address syntax".
#[test]
fn host_names_are_accepted_for_both_addresses() {
    let mut cmd = herald();
    cmd.args(["--listen", "localhost:0", "--control", "localhost:0"]);
    let (mut child, log) = started(cmd);
    let _ = child.kill();
    let _ = child.wait();
    let listening = log.last().unwrap();
    assert!(
        listening.contains("websocket=127.0.0.1:") && listening.contains("control=127.0.0.1:"),
        "{listening}"
    );
}

/// With the shell's usual limit of 1,024 open files and the default 100,000 connections, herald
/// started silently and reset connections once it ran out of descriptors.
#[test]
fn a_file_limit_below_max_connections_is_warned_about() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "ulimit -n 512 && exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_herald"))
        .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
        .args(["--max-connections", "10000"])
        .env_remove("RUST_LOG");
    let (mut child, log) = started(cmd);
    let _ = child.kill();
    let _ = child.wait();
    let warning = log
        .iter()
        .find(|l| l.contains("open-file limit"))
        .unwrap_or_else(|| panic!("no warning in {log:#?}"));
    for needle in [
        "(512)",
        "--max-connections 10000",
        "ulimit -n",
        "LimitNOFILE",
    ] {
        assert!(warning.contains(needle), "{needle} in {warning}");
    }
}

#[test]
fn json_logs_are_one_object_a_line() {
    let (mut herald, log) = spawn_herald_logged(&["--log-format", "json"]);
    let (status, _, _) = http(herald.public_addr, "GET", "/nope", None);
    assert_eq!(status, 404);
    herald.terminate();
    let log: Vec<String> = log.iter().collect();
    assert!(
        log.iter().any(|l| l.contains("handshake rejected")),
        "{log:#?}"
    );
    for line in &log {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
}
