//! The `herald` binary itself: flags, the listening log line, and SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::json;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

fn herald(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    // A key or secret in the environment of a test run must not change what is tested.
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("HERALD_API_KEY")
        .env_remove("HERALD_JWT_SECRET")
        .env_remove("HERALD_JWT_PUBLIC_KEY")
        .env_remove("HERALD_CONTROL");
    cmd
}

/// Starts the binary on ephemeral ports and reads the addresses from its log.
fn spawn() -> (Child, SocketAddr, SocketAddr) {
    spawn_logging(true).0
}

/// Starts the binary and reads the addresses from its log; then keeps draining the log so the
/// child never blocks on a full pipe (`drain`), or closes the pipe. Also returns the log lines
/// up to the listening one.
fn spawn_logging(drain: bool) -> ((Child, SocketAddr, SocketAddr), Vec<String>) {
    spawn_with_env(drain, &[])
}

/// [`spawn_logging`] with the variables `env` set.
fn spawn_with_env(
    drain: bool,
    env: &[(&str, &str)],
) -> ((Child, SocketAddr, SocketAddr), Vec<String>) {
    let mut child = herald(&["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .expect("herald starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut before = Vec::new();
    let line = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| {
            before.push(l.clone());
            l.contains("herald listening")
        })
        .expect("a listening line");
    let addr = |key: &str| -> SocketAddr {
        let rest = &line[line.find(key).unwrap() + key.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let (public, control) = (addr("websocket="), addr("control="));
    if drain {
        std::thread::spawn(move || lines.for_each(drop));
    }
    ((child, public, control), before)
}

#[test]
fn help_explains_every_flag() {
    let out = herald(&["--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--control",
        "--ws-path",
        "--max-message",
        "--max-fragments",
        "--max-handshake",
        "--handshake-timeout",
        "--ping-interval",
        "--ping-timeout",
        "--close-timeout",
        "--max-subscriptions",
        "--shutdown-timeout",
        "--control-max-body",
        "--control-max-connections",
        "--control-idle-timeout",
        "--user-rate",
        "--user-burst",
        "--client-rate",
        "--client-burst",
        "--max-connections",
        "--max-connections-per-ip",
        "--connection-rate-per-ip",
        "--api-key",
        "--control-auth-failures",
        "--control-auth-window",
        "--control-auth-max-addresses",
        "--cors-origins",
        "--allowed-origins",
    ] {
        assert!(text.contains(flag), "{flag} in --help");
    }
    assert!(text.contains("HERALD_LISTEN"), "env twins are listed");
}

#[test]
fn a_bad_flag_is_refused() {
    let out = herald(&["--listen", "not-an-address"]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits() {
    let (mut child, public, control) = spawn();
    let mut ws = connect_path(public, "/ws");
    send_json(&mut ws, json!({"event": "subscribe", "data": "u"}));
    assert_eq!(recv_json(&mut ws)["event"], "subscribed");
    let (status, _, body) = http(
        control,
        "POST",
        "/v1/users/u/notifications",
        Some(r#"{"message":"before"}"#),
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(recv_json(&mut ws)["data"]["message"], "before");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Restart),
        other => panic!("expected close 1012, got {other:?}"),
    }
    drop(ws);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// herald used to ignore SIGTERM once nothing read its stderr: the signal thread logged before
/// it asked the loop to stop, the log write failed on the closed pipe, tracing reported that on
/// stderr with `eprintln!`, which panicked, and the thread died without sending the shutdown.
#[test]
fn sigterm_works_when_stderr_is_gone() {
    let ((mut child, _public, _control), _) = spawn_logging(false);
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            return;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("herald ignored SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_control_address_off_loopback_without_a_key_is_refused() {
    // Refused before anything is bound, so nothing listens on every interface even briefly.
    let out = herald(&["--listen", "127.0.0.1:0", "--control", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--api-key"), "{stderr}");
    assert!(!stderr.contains("herald listening"), "{stderr}");
}

#[test]
fn without_jwt_auth_a_warning_names_the_flags() {
    let ((mut child, _, _), log) = spawn_logging(true);
    let _ = child.kill();
    let _ = child.wait();
    let warning = log
        .iter()
        .find(|l| l.contains("WARN") && l.contains("not authenticated"))
        .unwrap_or_else(|| panic!("no warning in {log:?}"));
    assert!(warning.contains("--jwt-secret"), "{warning}");
    assert!(warning.contains("--jwt-public-key"), "{warning}");
}

/// Keys are rotated without downtime by listing the new one beside the old, in the variable as
/// on the command line.
#[test]
fn several_api_keys_from_the_environment_are_all_accepted() {
    let ((mut child, _, control), _) =
        spawn_with_env(true, &[("HERALD_API_KEY", "old-key-1f2e,new-key-3d4c")]);
    let get = |authorization: Option<&str>| {
        let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        let req = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        raw_http(control, req.as_bytes()).0
    };
    let statuses = [
        get(Some("Bearer old-key-1f2e")),
        get(Some("Bearer new-key-3d4c")),
        get(Some("Bearer old-key-1f2e,new-key-3d4c")),
        get(None),
    ];
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(statuses, [200, 200, 401, 401]);
}
