//! Clients behind proxies: `--trusted-proxies` with `X-Forwarded-For` or `Forwarded`, and
//! `--proxy-protocol`. The client's address, not the proxy's, is what the per-address caps
//! count and what `GET /v1/users/{id}` lists; a client cannot claim another address through a
//! proxy herald does not trust.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};

use common::*;
use herald::config::Config;
use herald::proxy::TrustedProxies;
use herald::server::Running;

fn trusting(list: &str) -> impl FnOnce(&mut Config) + '_ {
    move |c: &mut Config| c.trusted_proxies = list.parse::<TrustedProxies>().unwrap()
}

fn addresses(srv: &Running, user: &str) -> Value {
    let (status, body) = get(srv, &format!("/v1/users/{user}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["addresses"].clone()
}

fn subscribed_via(addr: SocketAddr, user: &str, headers: &[(&str, &str)]) -> Client {
    let mut ws = connect_with_headers(addr, "/ws", headers);
    subscribe(&mut ws, user);
    ws
}

#[test]
fn a_trusted_proxy_names_the_client_in_x_forwarded_for() {
    let srv = start_server_with(trusting("127.0.0.1"));
    let _a = subscribed_via(
        srv.public_addr,
        "alice",
        // A spoofed entry on the left, the client, then another trusted hop on the right.
        &[("X-Forwarded-For", "6.6.6.6, 198.51.100.7, 127.0.0.1")],
    );
    assert_eq!(addresses(&srv, "alice"), json!(["198.51.100.7"]));
    // No header: the proxy's own address.
    let _b = subscribed_via(srv.public_addr, "bob", &[]);
    assert_eq!(addresses(&srv, "bob"), json!(["127.0.0.1"]));
}

#[test]
fn an_untrusted_peer_cannot_claim_another_address() {
    let srv = start_server_with(trusting("10.0.0.0/8"));
    let _ws = subscribed_via(
        srv.public_addr,
        "mallory",
        &[("X-Forwarded-For", "198.51.100.7")],
    );
    assert_eq!(addresses(&srv, "mallory"), json!(["127.0.0.1"]));
}

#[test]
fn forwarded_is_read_when_asked_and_x_forwarded_for_then_ignored() {
    let srv = start_server_with(|c| {
        trusting("127.0.0.1")(c);
        c.proxy_header = herald::proxy::ForwardHeader::Forwarded;
    });
    let _ws = subscribed_via(
        srv.public_addr,
        "carol",
        &[
            ("Forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=https"),
            ("X-Forwarded-For", "6.6.6.6"),
        ],
    );
    assert_eq!(addresses(&srv, "carol"), json!(["2001:db8:cafe::17"]));
}

#[test]
fn the_per_address_cap_counts_each_client_behind_the_proxy() {
    let srv = start_server_with(|c| {
        trusting("127.0.0.1")(c);
        c.max_connections_per_ip = 2;
    });
    let a = [("X-Forwarded-For", "198.51.100.7")];
    let _one = connect_with_headers(srv.public_addr, "/ws", &a);
    let _two = connect_with_headers(srv.public_addr, "/ws", &a);
    let (status, _, body) =
        refused_upgrade(srv.public_addr, "/ws", "X-Forwarded-For: 198.51.100.7\r\n");
    assert_eq!(status, 429, "{body}");
    // Another client behind the same proxy is not held to the first one's cap, and neither
    // is the proxy's own address.
    let _other = connect_with_headers(
        srv.public_addr,
        "/ws",
        &[("X-Forwarded-For", "198.51.100.8")],
    );
    let _more: Vec<Client> = (0..5)
        .map(|i| {
            connect_with_headers(
                srv.public_addr,
                "/ws",
                &[("X-Forwarded-For", &format!("203.0.113.{i}"))],
            )
        })
        .collect();
    assert_eq!(
        metric(&srv, "herald_connections_refused_total{reason=\"per_ip\"}"),
        1.0
    );
}

/// An Engine.IO polling handshake sent on `stream` as if from `client`; the status and body.
fn polling_handshake(stream: &mut TcpStream, client: &str) -> (u16, String) {
    let request = format!(
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\
         X-Forwarded-For: {client}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            let len: usize = header(&head, "content-length").unwrap().parse().unwrap();
            if got.len() >= end + 4 + len {
                let (status, _, body) = parse_response(&got[..end + 4 + len]);
                return (status, body);
            }
        }
    }
}

#[test]
fn polling_sessions_on_one_proxy_connection_count_against_their_own_clients() {
    // nginx keeps a few connections to herald open and sends any client's polling request on
    // any of them: each request names its client, and each session counts against it.
    let srv = start_server_with(|c| {
        trusting("127.0.0.1")(c);
        c.max_connections_per_ip = 1;
    });
    let mut upstream = TcpStream::connect(srv.public_addr).unwrap();
    upstream.set_read_timeout(Some(PATIENCE)).unwrap();
    let (status, body) = polling_handshake(&mut upstream, "198.51.100.7");
    assert_eq!(status, 200, "{body}");
    let (status, body) = polling_handshake(&mut upstream, "198.51.100.8");
    assert_eq!(status, 200, "{body}");
    // The first client's second session is over its cap (the refusal closes the connection).
    let (status, body) = polling_handshake(&mut upstream, "198.51.100.7");
    assert_eq!(status, 429, "{body}");
}

/// A PROXY protocol v1 line for a TCP4 client.
fn proxy_v1(client: &str) -> String {
    format!("PROXY TCP4 {client} 192.0.2.1 51234 443\r\n")
}

/// A PROXY protocol v2 header for a TCP over IPv6 client.
fn proxy_v2_v6(client: std::net::Ipv6Addr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x21); // AF_INET6, STREAM
    h.extend_from_slice(&36u16.to_be_bytes());
    h.extend_from_slice(&client.octets());
    h.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    h.extend_from_slice(&51234u16.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

/// A WebSocket opened after sending `prefix` on the connection.
fn connect_after(addr: SocketAddr, prefix: &[u8]) -> Client {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(prefix).unwrap();
    let (ws, resp) = tungstenite::client(format!("ws://{addr}/ws"), stream).expect("handshake");
    assert_eq!(resp.status(), 101);
    ws
}

fn proxy_protocol(c: &mut Config) {
    trusting("127.0.0.1")(c);
    c.proxy_protocol = true;
}

#[test]
fn the_proxy_protocol_names_the_client_in_v1_and_v2() {
    let srv = start_server_with(proxy_protocol);
    let mut v1 = connect_after(srv.public_addr, proxy_v1("203.0.113.9").as_bytes());
    subscribe(&mut v1, "dave");
    let client: std::net::Ipv6Addr = "2001:db8:beef::9".parse().unwrap();
    let mut v2 = connect_after(srv.public_addr, &proxy_v2_v6(client));
    subscribe(&mut v2, "dave");
    assert_eq!(
        addresses(&srv, "dave"),
        json!(["203.0.113.9", "2001:db8:beef::9"])
    );
    // A LOCAL header (the balancer's own health check) keeps the connection's address.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    let mut own = connect_after(srv.public_addr, &local);
    subscribe(&mut own, "erin");
    assert_eq!(addresses(&srv, "erin"), json!(["127.0.0.1"]));
    assert_eq!(push_to(&srv, "dave", "through the balancer"), 2);
}

/// Sends `bytes` on a new connection and reads until herald closes it; fails if it answered
/// anything. Then waits for `series` to read 1.
fn closed_unanswered(srv: &Running, bytes: &[u8], series: &str) {
    let mut stream = TcpStream::connect(srv.public_addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    // The write may already fail, the connection being closed.
    let _ = stream.write_all(bytes);
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    eventually(series, || metric(srv, series) == 1.0);
}

#[test]
fn a_connection_without_its_proxy_header_is_closed_unanswered() {
    let srv = start_server_with(proxy_protocol);
    let request = upgrade_request(srv.public_addr, "/ws");
    closed_unanswered(
        &srv,
        request.as_bytes(),
        "herald_proxy_protocol_refused_total",
    );
}

#[test]
fn a_truncated_proxy_header_is_closed_at_the_handshake_timeout() {
    let srv = start_server_with(|c| {
        proxy_protocol(c);
        c.handshake_timeout = Duration::from_secs(1);
    });
    closed_unanswered(
        &srv,
        b"PROXY TCP4 203.0.113.9 19",
        "herald_handshake_timeouts_total",
    );
}

#[test]
fn a_proxy_header_from_an_untrusted_address_is_refused() {
    let srv = start_server_with(|c| {
        trusting("10.0.0.0/8")(c);
        c.proxy_protocol = true;
    });
    // A spoofed header, from an address the balancer list does not name.
    closed_unanswered(
        &srv,
        proxy_v1("203.0.113.9").as_bytes(),
        "herald_proxy_protocol_refused_total",
    );
}

#[test]
fn the_per_address_cap_applies_to_the_proxy_protocols_client() {
    let srv = start_server_with(|c| {
        proxy_protocol(c);
        c.max_connections_per_ip = 1;
    });
    let _one = connect_after(srv.public_addr, proxy_v1("203.0.113.9").as_bytes());
    let mut stream = TcpStream::connect(srv.public_addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .write_all(proxy_v1("203.0.113.9").as_bytes())
        .unwrap();
    stream
        .write_all(upgrade_request(srv.public_addr, "/ws").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    let (status, _, _) = parse_response(&got);
    assert_eq!(status, 429);
    let _other = connect_after(srv.public_addr, proxy_v1("203.0.113.10").as_bytes());
}

#[test]
fn start_refuses_the_proxy_protocol_trusting_no_one() {
    let e = Config::try_parse_args(["herald", "--proxy-protocol", "true"]).unwrap_err();
    assert!(e.to_string().contains("--trusted-proxies"), "{e}");
}

#[test]
fn forwarding_headers_from_a_private_address_with_no_proxy_trusted_are_warned_of_once() {
    let (herald, log) = spawn_herald_logged(&[]);
    for _ in 0..3 {
        let _ = connect_with_headers(
            herald.public_addr,
            "/ws",
            &[("X-Forwarded-For", "198.51.100.7")],
        );
    }
    let mut warnings = 0;
    // The warning comes before the third connection is answered; later lines are not needed.
    while let Ok(line) = log.recv_timeout(Duration::from_millis(500)) {
        if line.contains("--trusted-proxies") {
            warnings += 1;
        }
    }
    assert_eq!(warnings, 1);
}
