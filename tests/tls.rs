//! TLS on the public port (`--tls-cert`, `--tls-key`): `wss://` and `https://` polling from a
//! client that trusts the test CA (`tests/fixtures/tls`), TLS 1.3 and 1.2, the certificate
//! swapped on reload while connections stay, and what is not a TLS client closed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use common::*;
use herald::config::Config;
use herald::server::Running;

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// Copies of the first test certificate and key in a directory of the test's own, so that a
/// test may overwrite them.
fn cert_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture("server.pem"), dir.join("cert.pem")).unwrap();
    std::fs::copy(fixture("server.key"), dir.join("key.pem")).unwrap();
    dir
}

fn start_tls(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Running {
    start_server_with(|c| {
        c.tls_cert = Some(dir.join("cert.pem"));
        c.tls_key = Some(dir.join("key.pem"));
        tweak(c);
    })
}

fn client_config(versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(fixture("ca.pem")).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A TLS connection to `addr` as `localhost`, handshake completed.
fn tls_connect_with(addr: SocketAddr, config: Arc<ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = StreamOwned::new(ClientConnection::new(config, name).unwrap(), tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    tls
}

fn tls_connect(addr: SocketAddr) -> Tls {
    tls_connect_with(
        addr,
        client_config(&[&rustls::version::TLS13, &rustls::version::TLS12]),
    )
}

fn wss(addr: SocketAddr) -> WebSocket<Tls> {
    let (ws, resp) = tungstenite::client(format!("ws://{addr}/ws"), tls_connect(addr))
        .expect("websocket handshake over TLS");
    assert_eq!(resp.status(), 101);
    ws
}

fn next_json(ws: &mut WebSocket<Tls>) -> Value {
    loop {
        match ws.read().expect("a message") {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

fn subscribe_wss(ws: &mut WebSocket<Tls>, user: &str) {
    ws.send(Message::Text(
        json!({"event": "subscribe", "data": user}).to_string(),
    ))
    .unwrap();
    let reply = next_json(ws);
    assert_eq!(reply["event"], "subscribed", "{reply}");
}

fn expect_notification(ws: &mut WebSocket<Tls>, message: &str) {
    let got = next_json(ws);
    assert_eq!(got["event"], "notification", "{got}");
    assert_eq!(got["data"]["message"], message, "{got}");
}

/// Reads until the server closes; returns what it sent. Fails if it does not close within
/// [`PATIENCE`].
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < PATIENCE, "the connection was not closed");
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

#[test]
fn a_wss_client_subscribes_and_receives_pushes_over_tls13() {
    let dir = cert_dir("wss");
    let srv = start_tls(&dir, |_| {});
    let mut ws = wss(srv.public_addr);
    {
        let conn = &ws.get_ref().conn;
        assert_eq!(
            conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    }
    subscribe_wss(&mut ws, "alice");
    assert_eq!(push_to(&srv, "alice", "over tls"), 1);
    expect_notification(&mut ws, "over tls");
    // A push large enough to span several TLS records arrives whole.
    let big = "x".repeat(100_000);
    assert_eq!(push_to(&srv, "alice", &big), 1);
    expect_notification(&mut ws, &big);
    assert_eq!(metric(&srv, "herald_tls_handshakes_total"), 1.0);
}

#[test]
fn tls12_clients_are_served_too() {
    let dir = cert_dir("tls12");
    let srv = start_tls(&dir, |_| {});
    let tls = tls_connect_with(srv.public_addr, client_config(&[&rustls::version::TLS12]));
    assert_eq!(
        tls.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let (mut ws, _) = tungstenite::client(format!("ws://{}/ws", srv.public_addr), tls).unwrap();
    subscribe_wss(&mut ws, "bob");
    assert_eq!(push_to(&srv, "bob", "tls 1.2"), 1);
    expect_notification(&mut ws, "tls 1.2");
}

#[test]
fn socketio_polling_works_over_https() {
    let dir = cert_dir("polling");
    let srv = start_tls(&dir, |_| {});
    let mut tls = tls_connect(srv.public_addr);
    tls.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    while !got.windows(5).any(|w| w == b"\"sid\"") {
        let n = tls.read(&mut buf).expect("the handshake answer");
        assert!(n > 0, "closed before answering: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    let (status, _, body) = parse_response(&got);
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("0{"), "{body}");
}

#[test]
fn plain_text_on_the_tls_port_gets_an_alert_and_is_closed() {
    let dir = cert_dir("plain");
    let srv = start_tls(&dir, |_| {});
    let mut tcp = TcpStream::connect(srv.public_addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let got = read_until_closed(&mut tcp);
    assert!(
        !got.starts_with(b"HTTP/"),
        "a plain-text answer on a TLS port"
    );
    // A TLS alert record (content type 21), if anything.
    assert!(got.is_empty() || got[0] == 0x15, "{got:?}");
    eventually("the failure counted", || {
        metric(&srv, "herald_tls_failures_total") >= 1.0
    });
}

/// The first flight of a real client, as bytes.
fn client_hello() -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(
        client_config(&[&rustls::version::TLS13, &rustls::version::TLS12]),
        name,
    )
    .unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

#[test]
fn a_truncated_client_hello_is_closed_at_the_handshake_timeout() {
    let dir = cert_dir("truncated");
    let srv = start_tls(&dir, |c| c.handshake_timeout = Duration::from_secs(1));
    let hello = client_hello();
    let mut tcp = TcpStream::connect(srv.public_addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    tcp.write_all(&hello[..hello.len() / 2]).unwrap();
    let got = read_until_closed(&mut tcp);
    assert!(got.is_empty(), "answered a half ClientHello: {got:?}");
    eventually("the timeout counted", || {
        metric(&srv, "herald_handshake_timeouts_total") >= 1.0
    });
}

#[test]
fn a_slowloris_handshake_is_closed_at_the_handshake_timeout() {
    let dir = cert_dir("slowloris");
    let srv = start_tls(&dir, |c| c.handshake_timeout = Duration::from_secs(1));
    let hello = client_hello();
    let mut tcp = TcpStream::connect(srv.public_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0; 64];
    // One byte every 100 ms: the whole hello would take far longer than the timeout.
    for byte in &hello {
        assert!(started.elapsed() < PATIENCE, "never closed");
        if tcp.write_all(std::slice::from_ref(byte)).is_err() {
            return;
        }
        match tcp.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => panic!("answered a slowloris handshake: {:?}", &buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
    panic!("the whole hello went through a byte at a time without the connection closing");
}

#[test]
fn a_reloaded_certificate_is_served_to_new_handshakes_and_open_connections_stay() {
    let dir = cert_dir("reload");
    let srv = start_tls(&dir, |_| {});
    let first = CertificateDer::from_pem_file(fixture("server.pem")).unwrap();
    let second = CertificateDer::from_pem_file(fixture("server2.pem")).unwrap();

    let mut before = wss(srv.public_addr);
    assert_eq!(before.get_ref().conn.peer_certificates().unwrap()[0], first);
    subscribe_wss(&mut before, "carol");

    std::fs::copy(fixture("server2.pem"), dir.join("cert.pem")).unwrap();
    std::fs::copy(fixture("server2.key"), dir.join("key.pem")).unwrap();
    srv.reloader().reload().expect("the second pair loads");

    let mut after = wss(srv.public_addr);
    assert_eq!(after.get_ref().conn.peer_certificates().unwrap()[0], second);
    subscribe_wss(&mut after, "carol");
    assert_eq!(push_to(&srv, "carol", "both"), 2);
    expect_notification(&mut before, "both");
    expect_notification(&mut after, "both");

    // A key that is not the certificate's is refused at reload, and the last good pair stays.
    std::fs::copy(fixture("server.pem"), dir.join("cert.pem")).unwrap();
    let failed = srv
        .reloader()
        .reload()
        .expect_err("a mismatched pair is refused");
    assert!(
        matches!(failed[..], [herald::server::ReloadError::Tls(_)]),
        "{failed:?}"
    );
    let still = tls_connect(srv.public_addr);
    assert_eq!(still.conn.peer_certificates().unwrap()[0], second);
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_at_start() {
    let dir = cert_dir("mismatch");
    std::fs::copy(fixture("server2.key"), dir.join("key.pem")).unwrap();
    let mut config = Config::for_tests();
    config.tls_cert = Some(dir.join("cert.pem"));
    config.tls_key = Some(dir.join("key.pem"));
    let e = herald::server::start(config)
        .err()
        .expect("start refuses the pair");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("cert.pem"), "{e}");

    let mut config = Config::for_tests();
    config.tls_cert = Some(dir.join("missing.pem"));
    config.tls_key = Some(dir.join("key.pem"));
    let e = herald::server::start(config).err().expect("a missing file");
    assert!(e.to_string().contains("--tls-cert"), "{e}");
}

#[test]
fn a_connection_over_the_per_address_cap_is_closed_without_plain_text() {
    let dir = cert_dir("cap");
    let srv = start_tls(&dir, |c| c.max_connections_per_ip = 1);
    let mut held = wss(srv.public_addr);
    subscribe_wss(&mut held, "dave");
    let mut tcp = TcpStream::connect(srv.public_addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    tcp.write_all(&client_hello()).unwrap();
    let got = read_until_closed(&mut tcp);
    assert!(got.is_empty(), "{got:?}");
    eventually("the refusal counted", || {
        metric(&srv, "herald_connections_refused_total{reason=\"per_ip\"}") >= 1.0
    });
}

/// One request on a TLS connection to `addr`, read to the end (the request asks to close).
fn https_request(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut tls = tls_connect(addr);
    tls.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    // The server's close_notify ends the stream; a reset after it is no error here.
    let _ = tls.read_to_end(&mut got);
    parse_response(&got)
}

#[test]
fn the_control_api_speaks_tls_with_its_own_certificate() {
    let dir = cert_dir("control");
    let srv = start_server_with(|c| {
        c.control_tls_cert = Some(dir.join("cert.pem"));
        c.control_tls_key = Some(dir.join("key.pem"));
        c.api_key = vec!["a-key-long-enough-to-be-a-key".into()];
    });
    let mut ws = connect(&srv);
    subscribe(&mut ws, "erin");
    let body = r#"{"type":"T","message":"over https"}"#;
    let request = format!(
        "POST /v1/users/erin/notifications HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer a-key-long-enough-to-be-a-key\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, _, answer) = https_request(srv.control_addr, &request);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(recv_json(&mut ws)["data"]["message"], "over https");

    // Plain HTTP on the control port gets no plain-text answer.
    let mut tcp = TcpStream::connect(srv.control_addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let got = read_until_closed(&mut tcp);
    assert!(!got.starts_with(b"HTTP/"), "{got:?}");

    // A reload swaps the control API's certificate too.
    std::fs::copy(fixture("server2.pem"), dir.join("cert.pem")).unwrap();
    std::fs::copy(fixture("server2.key"), dir.join("key.pem")).unwrap();
    srv.reloader().reload().expect("the second pair loads");
    let tls = tls_connect(srv.control_addr);
    let second = CertificateDer::from_pem_file(fixture("server2.pem")).unwrap();
    assert_eq!(tls.conn.peer_certificates().unwrap()[0], second);
}
