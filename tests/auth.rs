//! JWT authentication of clients over real sockets: the raw `/ws` endpoint (a token at the
//! handshake, or an `auth` event after it), Socket.IO's CONNECT auth payload, who may subscribe
//! to whom, expiry and refresh, the three algorithms, auth switched off, and key rotation:
//! several keys told apart by `kid`, a JWKS file, and SIGHUP reading the keys again.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use herald::jwt_keys::KeyPath;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::{json, Value};
use tungstenite::Message;

use common::*;

/// The HS256 secret the gateway under test is given: 32 bytes, the least RFC 7518 §3.2 allows.
const SECRET: &str = "herald-test-secret-of-32-bytes!!";
const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/jwt_rs256_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("fixtures/jwt_rs256_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("fixtures/jwt_es256_private.pem");

fn fixture(name: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", name]
        .iter()
        .collect()
}

fn sign_with(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
    encode(&Header::new(alg), &claims, key).expect("a signed token")
}

/// An HS256 token signed with [`SECRET`].
fn sign(claims: Value) -> String {
    sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

/// A good token for `sub`, valid for `ttl` more seconds; returns it with its `exp`.
fn token_for(sub: &str, ttl: u64) -> (String, u64) {
    let exp = unix_now() + ttl;
    (sign(json!({"sub": sub, "exp": exp})), exp)
}

/// A good token for `sub`, valid for a minute.
fn token(sub: &str) -> String {
    token_for(sub, 60).0
}

fn expired(sub: &str) -> String {
    sign(json!({"sub": sub, "exp": unix_now() - 60}))
}

/// Well formed, but signed with another secret.
fn forged(sub: &str) -> String {
    sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"not-the-secret-herald-was-given!"),
        json!({"sub": sub, "exp": unix_now() + 60}),
    )
}

fn auth_server() -> herald::server::Running {
    start_server_with(|c| c.jwt_secret = Some(SECRET.into()))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A raw `/ws` client whose handshake carries `token` in the query; the upgrade must succeed.
fn raw_with_query_token(addr: SocketAddr, token: &str) -> RawClient {
    let (c, head) = RawClient::open(addr, &format!("/ws?token={token}"), "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    c
}

/// A raw `/ws` client that has not authenticated.
fn raw_anonymous(addr: SocketAddr) -> RawClient {
    RawClient::connect(addr)
}

fn raw_send(c: &mut RawClient, event: &str, data: &str) {
    c.send_text(&json!({"event": event, "data": data}).to_string());
}

fn raw_subscribe(c: &mut RawClient, user: &str) {
    raw_send(c, "subscribe", user);
    let reply = c.recv_json();
    assert_eq!(reply["event"], "subscribed", "{reply}");
    assert_eq!(reply["data"]["userId"], user, "{reply}");
}

fn error_event(message: &str) -> Value {
    json!({"event": "error", "data": {"message": message}})
}

fn sockets_of(srv: &herald::server::Running, user: &str) -> Value {
    let (status, body) = get(srv, &format!("/v1/users/{user}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["sockets"].clone()
}

/// Pushes `message` to `user`, which `ws` is subscribed to, and checks it is the next thing
/// `ws` receives.
fn push_and_receive(srv: &herald::server::Running, ws: &mut Client, user: &str, message: &str) {
    assert_eq!(push_to(srv, user, message), 1);
    let m = recv_json(ws);
    assert_eq!(m["event"], "notification", "{m}");
    assert_eq!(m["data"]["message"], message, "{m}");
}

// ---------------------------------------------------------------------------------------------
// Raw /ws: a token at the handshake.

#[test]
fn a_bearer_header_authenticates_at_the_handshake() {
    let srv = auth_server();
    let mut ws = connect_with_headers(
        srv.public_addr,
        "/ws",
        &[("Authorization", &bearer(&token("alice")))],
    );
    // Authenticated at the handshake: no `authenticated` event, the first reply is `subscribed`.
    subscribe(&mut ws, "alice");
    push_and_receive(&srv, &mut ws, "alice", "by header");
}

#[test]
fn a_query_token_authenticates_at_the_handshake() {
    let srv = auth_server();
    let mut ws = connect_path(srv.public_addr, &format!("/ws?token={}", token("alice")));
    subscribe(&mut ws, "alice");
    push_and_receive(&srv, &mut ws, "alice", "by query");
}

#[test]
fn an_invalid_token_at_the_handshake_is_answered_401() {
    let srv = auth_server();
    let no_alg = format!(
        "eyJhbGciOiJub25lIn0.{}.",
        base64_url(&json!({"sub": "alice", "exp": unix_now() + 60}).to_string())
    );
    for bad in [
        forged("alice"),
        "not-a-jwt".to_string(),
        no_alg,
        sign(json!({"exp": unix_now() + 60})),
        sign(json!({"sub": "alice"})),
    ] {
        for (target, extra) in [
            (format!("/ws?token={bad}"), String::new()),
            (
                "/ws".to_string(),
                format!("Authorization: Bearer {bad}\r\n"),
            ),
        ] {
            let (status, head, body) = refused_upgrade(srv.public_addr, &target, &extra);
            assert_eq!(status, 401, "{target} {extra}: {head}");
            assert_eq!(body, json!({"error": "unauthorized"}), "{target} {extra}");
        }
    }
    assert_eq!(metric(&srv, "herald_websockets"), 0.0, "none was upgraded");
}

#[test]
fn an_expired_token_at_the_handshake_is_answered_401_token_expired() {
    let srv = auth_server();
    let old = expired("alice");
    for (target, extra) in [
        (format!("/ws?token={old}"), String::new()),
        (
            "/ws".to_string(),
            format!("Authorization: Bearer {old}\r\n"),
        ),
    ] {
        let (status, head, body) = refused_upgrade(srv.public_addr, &target, &extra);
        assert_eq!(status, 401, "{head}");
        assert_eq!(body, json!({"error": "token expired"}));
    }
}

// ---------------------------------------------------------------------------------------------
// Raw /ws: an `auth` event after the handshake.

#[test]
fn an_auth_event_authenticates_an_open_socket() {
    let srv = auth_server();
    let mut ws = connect(&srv);
    let (t, exp) = token_for("alice", 60);
    send_json(&mut ws, json!({"event": "auth", "data": t}));
    assert_eq!(
        recv_json(&mut ws),
        json!({"event": "authenticated", "data": {"userId": "alice", "exp": exp}})
    );
    subscribe(&mut ws, "alice");
    push_and_receive(&srv, &mut ws, "alice", "after auth");
}

#[test]
fn a_bad_auth_event_closes_4001() {
    let srv = auth_server();
    for bad in [forged("alice"), "garbage".to_string(), String::new()] {
        let mut c = raw_anonymous(srv.public_addr);
        raw_send(&mut c, "auth", &bad);
        assert_eq!(c.recv_json(), error_event("unauthorized"), "token {bad:?}");
        assert_eq!(c.expect_close_next(), 4001, "token {bad:?}");
    }
}

#[test]
fn subscribing_before_auth_closes_4001() {
    let srv = auth_server();
    let mut c = raw_anonymous(srv.public_addr);
    raw_send(&mut c, "subscribe", "alice");
    assert_eq!(c.recv_json(), error_event("unauthorized"));
    assert_eq!(c.expect_close_next(), 4001);
    assert_eq!(sockets_of(&srv, "alice"), 0);
}

#[test]
fn no_auth_within_the_auth_timeout_closes_4001() {
    let srv = start_server_with(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.auth_timeout = Duration::from_secs(1);
    });
    let mut c = raw_anonymous(srv.public_addr);
    // A ping is answered but does not authenticate, nor does it count as a message before auth.
    c.send(&client_frame(true, 0x9, b"still there?"));
    assert_eq!(c.read_frame(), Some((0xA, b"still there?".to_vec())));
    assert_eq!(c.recv_json(), error_event("unauthorized"));
    assert_eq!(c.expect_close_next(), 4001);
}

// ---------------------------------------------------------------------------------------------
// Raw /ws: who may subscribe to whom.

#[test]
fn a_socket_subscribes_to_its_own_user_only() {
    let srv = auth_server();
    let mut ws = connect_path(srv.public_addr, &format!("/ws?token={}", token("alice")));
    send_json(&mut ws, json!({"event": "subscribe", "data": "bob"}));
    assert_eq!(recv_json(&mut ws), error_event("forbidden"));
    assert_eq!(sockets_of(&srv, "bob"), 0, "not joined to bob's room");
    assert_eq!(push_to(&srv, "bob", "for bob"), 0);
    // The connection stays open and its own user still works.
    subscribe(&mut ws, "alice");
    push_and_receive(&srv, &mut ws, "alice", "for alice");
}

// ---------------------------------------------------------------------------------------------
// Raw /ws: expiry and refresh.

#[test]
fn an_expiring_token_closes_the_socket_4003() {
    let srv = auth_server();
    let (t, _) = token_for("alice", 2);
    let mut c = raw_with_query_token(srv.public_addr, &t);
    raw_subscribe(&mut c, "alice");
    assert_eq!(c.recv_json(), error_event("token expired"));
    assert_eq!(c.expect_close_next(), 4003);
    eventually("alice's socket to leave", || sockets_of(&srv, "alice") == 0);
}

#[test]
fn a_refresh_before_expiry_keeps_the_socket_open() {
    let srv = auth_server();
    let (first, old_exp) = token_for("alice", 3);
    let mut ws = connect_path(srv.public_addr, &format!("/ws?token={first}"));
    subscribe(&mut ws, "alice");
    let (fresh, new_exp) = token_for("alice", 120);
    send_json(&mut ws, json!({"event": "auth", "data": fresh}));
    assert_eq!(
        recv_json(&mut ws),
        json!({"event": "authenticated", "data": {"userId": "alice", "exp": new_exp}})
    );
    // Well past the first token's expiry (the sweep runs several times a second), the socket is
    // still there and the next thing it receives is the push, not an error.
    sleep_until_unix(old_exp + 1);
    thread_sleep_ms(500);
    push_and_receive(&srv, &mut ws, "alice", "after the old exp");
}

#[test]
fn a_refresh_for_another_user_or_with_a_bad_token_keeps_the_old_expiry() {
    let srv = auth_server();
    let (first, _) = token_for("alice", 3);
    let mut c = raw_with_query_token(srv.public_addr, &first);
    raw_subscribe(&mut c, "alice");
    raw_send(&mut c, "auth", &token("bob"));
    assert_eq!(c.recv_json(), error_event("forbidden"));
    raw_send(&mut c, "auth", &forged("alice"));
    assert_eq!(c.recv_json(), error_event("unauthorized"));
    // Neither refused refresh closed the socket nor moved its expiry.
    assert_eq!(sockets_of(&srv, "alice"), 1);
    assert_eq!(c.recv_json(), error_event("token expired"));
    assert_eq!(c.expect_close_next(), 4003);
}

fn thread_sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

// ---------------------------------------------------------------------------------------------
// Algorithms, issuer, audience.

#[test]
fn rs256_and_es256_with_a_public_key() {
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    for (public, alg, key, other_alg, other_key) in [
        (
            "jwt_rs256_public.pem",
            Algorithm::RS256,
            &rsa,
            Algorithm::ES256,
            &ec,
        ),
        (
            "jwt_es256_public.pem",
            Algorithm::ES256,
            &ec,
            Algorithm::RS256,
            &rsa,
        ),
    ] {
        let srv = start_server_with(|c| c.jwt_public_key = vec![fixture(public).into()]);
        let claims = json!({"sub": "alice", "exp": unix_now() + 60});
        let good = sign_with(alg, key, claims.clone());
        let mut ws =
            connect_with_headers(srv.public_addr, "/ws", &[("Authorization", &bearer(&good))]);
        subscribe(&mut ws, "alice");
        push_and_receive(&srv, &mut ws, "alice", &format!("{alg:?}"));

        // The same claims under the other key pair, or HS256 with the test secret: refused.
        for bad in [
            sign_with(other_alg, other_key, claims.clone()),
            sign(claims.clone()),
        ] {
            let (status, _, body) =
                refused_upgrade(srv.public_addr, &format!("/ws?token={bad}"), "");
            assert_eq!(
                (status, body),
                (401, json!({"error": "unauthorized"})),
                "{alg:?}"
            );
        }
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The classic algorithm confusion: the RSA public key is public, so a forger uses its PEM
    // bytes as an HMAC secret and hopes the server lets the token's `alg` choose HS256.
    let srv =
        start_server_with(|c| c.jwt_public_key = vec![fixture("jwt_rs256_public.pem").into()]);
    let forged = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC),
        json!({"sub": "alice", "exp": unix_now() + 60}),
    );
    let (status, _, body) = refused_upgrade(srv.public_addr, &format!("/ws?token={forged}"), "");
    assert_eq!((status, body), (401, json!({"error": "unauthorized"})));
    // Nor does it pass as an `auth` event.
    let mut c = raw_anonymous(srv.public_addr);
    raw_send(&mut c, "auth", &forged);
    assert_eq!(c.recv_json(), error_event("unauthorized"));
    assert_eq!(c.expect_close_next(), 4001);
}

#[test]
fn issuer_and_audience_must_match_when_configured() {
    let srv = start_server_with(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.jwt_issuer = Some("https://auth.test".into());
        c.jwt_audience = Some("herald".into());
    });
    let exp = unix_now() + 60;
    let good =
        sign(json!({"sub": "alice", "exp": exp, "iss": "https://auth.test", "aud": "herald"}));
    let mut ws = connect_path(srv.public_addr, &format!("/ws?token={good}"));
    subscribe(&mut ws, "alice");

    for (what, claims) in [
        (
            "another issuer",
            json!({"sub": "alice", "exp": exp, "iss": "https://evil.test", "aud": "herald"}),
        ),
        (
            "another audience",
            json!({"sub": "alice", "exp": exp, "iss": "https://auth.test", "aud": "billing"}),
        ),
        ("neither claim", json!({"sub": "alice", "exp": exp})),
    ] {
        let bad = sign(claims);
        let (status, _, body) = refused_upgrade(srv.public_addr, &format!("/ws?token={bad}"), "");
        assert_eq!(
            (status, body),
            (401, json!({"error": "unauthorized"})),
            "{what}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// MessagePack clients get the same events, in MessagePack.

#[derive(Serialize)]
struct Envelope<'a> {
    event: &'a str,
    data: &'a str,
}

fn msgpack_send(c: &mut RawClient, event: &str, data: &str) {
    let bytes = rmp_serde::to_vec_named(&Envelope { event, data }).unwrap();
    c.send(&client_frame(true, 0x2, &bytes));
}

/// The next binary frame, decoded from MessagePack.
fn msgpack_recv(c: &mut RawClient) -> Value {
    loop {
        match c.read_frame().expect("a frame") {
            (0x2, payload) => return rmp_serde::from_slice(&payload).expect("MessagePack"),
            (0x9 | 0xA, _) => {}
            (op, payload) => panic!(
                "expected a binary frame, got opcode {op:#x}: {}",
                String::from_utf8_lossy(&payload)
            ),
        }
    }
}

#[test]
fn msgpack_sockets_get_the_auth_events_in_msgpack() {
    let srv = auth_server();
    let (mut c, head) = RawClient::open(srv.public_addr, "/ws?format=msgpack", "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (t, exp) = token_for("alice", 60);
    msgpack_send(&mut c, "auth", &t);
    assert_eq!(
        msgpack_recv(&mut c),
        json!({"event": "authenticated", "data": {"userId": "alice", "exp": exp}})
    );
    msgpack_send(&mut c, "subscribe", "bob");
    assert_eq!(msgpack_recv(&mut c), error_event("forbidden"));
    msgpack_send(&mut c, "subscribe", "alice");
    assert_eq!(msgpack_recv(&mut c)["event"], "subscribed");
    assert_eq!(push_to(&srv, "alice", "packed"), 1);
    assert_eq!(msgpack_recv(&mut c)["data"]["message"], "packed");

    let (mut bad, _) = RawClient::open(srv.public_addr, "/ws?format=msgpack", "");
    msgpack_send(&mut bad, "auth", &forged("alice"));
    assert_eq!(msgpack_recv(&mut bad), error_event("unauthorized"));
    assert_eq!(bad.expect_close_next(), 4001);
}

// ---------------------------------------------------------------------------------------------
// Socket.IO over a raw Engine.IO WebSocket.

fn connect_packet(token: &str) -> String {
    format!("40{}", json!({ "token": token }))
}

/// A Socket.IO session on the WebSocket transport, connected to `/` with `token`.
fn sio_connected(addr: SocketAddr, token: &str) -> Client {
    let mut ws = sio_websocket(addr);
    ws.send(Message::Text(connect_packet(token))).unwrap();
    let reply = recv_text(&mut ws);
    assert!(reply.starts_with("40{\"sid\":"), "{reply}");
    ws
}

fn sio_send(ws: &mut Client, packet: &str) {
    ws.send(Message::Text(packet.to_string())).unwrap();
}

fn sio_subscribe(ws: &mut Client, user: &str) {
    sio_send(ws, &format!(r#"42["subscribe",{}]"#, json!(user)));
    let (name, data) = sio_event(&recv_text(ws));
    assert_eq!(name, "subscribed", "{data}");
    assert_eq!(data["userId"], user);
}

/// Reads packets until the ack with `id` (`43<id>[...]`) and returns its arguments; the events
/// before it must be among `allowed` (name and data).
fn sio_ack(ws: &mut Client, id: u32, allowed: &[(&str, Value)]) -> Value {
    let prefix = format!("43{id}");
    loop {
        let packet = recv_text(ws);
        if let Some(args) = packet.strip_prefix(&prefix) {
            return serde_json::from_str(args).unwrap();
        }
        let event = sio_event(&packet);
        assert!(
            allowed.iter().any(|(n, d)| event.0 == *n && event.1 == *d),
            "{packet} while waiting for ack {id}"
        );
    }
}

fn connect_error(message: &str) -> String {
    format!("44{}", json!({ "message": message }))
}

#[test]
fn socketio_connect_with_a_token() {
    let srv = auth_server();
    let mut ws = sio_connected(srv.public_addr, &token("alice"));
    sio_subscribe(&mut ws, "alice");
    assert_eq!(push_to(&srv, "alice", "over socket.io"), 1);
    let (name, n) = sio_event(&recv_text(&mut ws));
    assert_eq!(
        (name.as_str(), &n["message"]),
        ("notification", &json!("over socket.io"))
    );
}

#[test]
fn socketio_connect_without_a_good_token_is_refused_and_may_be_retried() {
    let srv = auth_server();
    let mut ws = sio_websocket(srv.public_addr);
    for (packet, answer) in [
        ("40".to_string(), "unauthorized"),
        (r#"40{"token":42}"#.to_string(), "unauthorized"),
        (connect_packet("garbage"), "unauthorized"),
        (connect_packet(&forged("alice")), "unauthorized"),
        (connect_packet(&expired("alice")), "token expired"),
    ] {
        sio_send(&mut ws, &packet);
        assert_eq!(recv_text(&mut ws), connect_error(answer), "{packet}");
    }
    // The Engine.IO session stayed open: a CONNECT with a good token now succeeds on it.
    sio_send(&mut ws, &connect_packet(&token("alice")));
    let reply = recv_text(&mut ws);
    assert!(reply.starts_with("40{\"sid\":"), "{reply}");
    sio_subscribe(&mut ws, "alice");
}

#[test]
fn socketio_subscribing_to_another_user_is_forbidden() {
    let srv = auth_server();
    let mut ws = sio_connected(srv.public_addr, &token("alice"));
    sio_send(&mut ws, r#"42["subscribe","bob"]"#);
    assert_eq!(
        sio_event(&recv_text(&mut ws)),
        ("error".to_string(), json!({"message": "forbidden"}))
    );
    sio_send(&mut ws, r#"427["subscribe","bob"]"#);
    assert_eq!(
        sio_ack(&mut ws, 7, &[("error", json!({"message": "forbidden"}))]),
        json!([{"error": "forbidden"}])
    );
    assert_eq!(sockets_of(&srv, "bob"), 0);
    sio_subscribe(&mut ws, "alice");
}

#[test]
fn socketio_expiry_sends_an_error_then_disconnects_4003() {
    let srv = auth_server();
    let (t, _) = token_for("alice", 2);
    let mut ws = sio_connected(srv.public_addr, &t);
    sio_subscribe(&mut ws, "alice");
    assert_eq!(
        sio_event(&recv_text(&mut ws)),
        ("error".to_string(), json!({"message": "token expired"}))
    );
    assert_eq!(recv_text(&mut ws), "41");
    assert_eq!(expect_close_code(&mut ws), 4003);
}

#[test]
fn socketio_refresh_moves_the_expiry() {
    let srv = auth_server();
    let (first, old_exp) = token_for("alice", 3);
    let mut ws = sio_connected(srv.public_addr, &first);
    sio_subscribe(&mut ws, "alice");

    let (fresh, exp) = token_for("alice", 120);
    sio_send(&mut ws, &format!(r#"42["refresh",{}]"#, json!(fresh)));
    let authenticated = json!({"userId": "alice", "exp": exp});
    assert_eq!(
        sio_event(&recv_text(&mut ws)),
        ("authenticated".to_string(), authenticated.clone())
    );
    // `{token}` works too, and an ack gets the same data.
    sio_send(
        &mut ws,
        &format!(r#"423["refresh",{}]"#, json!({ "token": fresh })),
    );
    assert_eq!(
        sio_ack(&mut ws, 3, &[("authenticated", authenticated.clone())]),
        json!([authenticated])
    );

    // Refused refreshes change nothing.
    sio_send(
        &mut ws,
        &format!(r#"42["refresh",{}]"#, json!(token("bob"))),
    );
    assert_eq!(
        sio_event(&recv_text(&mut ws)),
        ("error".to_string(), json!({"message": "forbidden"}))
    );
    sio_send(&mut ws, r#"42["refresh","garbage"]"#);
    assert_eq!(
        sio_event(&recv_text(&mut ws)),
        ("error".to_string(), json!({"message": "unauthorized"}))
    );

    sleep_until_unix(old_exp + 1);
    thread_sleep_ms(500);
    assert_eq!(push_to(&srv, "alice", "still here"), 1);
    let (name, n) = sio_event(&recv_text(&mut ws));
    assert_eq!(
        (name.as_str(), &n["message"]),
        ("notification", &json!("still here"))
    );
}

// ---------------------------------------------------------------------------------------------
// Socket.IO over long-polling.

const RS: char = '\u{1e}';

fn polling(query: &str) -> String {
    format!("/socket.io/?EIO=4&transport=polling{query}")
}

fn open_polling(addr: SocketAddr) -> String {
    let (status, _, body) = http(addr, "GET", &polling(""), None);
    assert_eq!(status, 200, "{body}");
    let open: Value =
        serde_json::from_str(body.strip_prefix('0').expect("an open packet")).unwrap();
    open["sid"].as_str().unwrap().to_string()
}

fn poll(addr: SocketAddr, sid: &str) -> (u16, Vec<String>) {
    let (status, _, body) = http(addr, "GET", &polling(&format!("&sid={sid}")), None);
    (status, body.split(RS).map(str::to_string).collect())
}

fn post_packets(addr: SocketAddr, sid: &str, packets: &[&str]) {
    let body = packets.join(&RS.to_string());
    let (status, _, body) = http(addr, "POST", &polling(&format!("&sid={sid}")), Some(&body));
    assert_eq!((status, body.as_str()), (200, "ok"));
}

#[test]
fn socketio_polling_refusal_keeps_the_session_until_the_auth_timeout() {
    let srv = start_server_with(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.auth_timeout = Duration::from_secs(1);
    });
    let addr = srv.public_addr;

    let retried = open_polling(addr);
    post_packets(addr, &retried, &["40"]);
    assert_eq!(
        poll(addr, &retried),
        (200, vec![connect_error("unauthorized")])
    );
    post_packets(addr, &retried, &[&connect_packet(&token("alice"))]);
    let (status, packets) = poll(addr, &retried);
    assert_eq!(status, 200);
    assert!(packets[0].starts_with("40{\"sid\":"), "{packets:?}");
    post_packets(addr, &retried, &[r#"42["subscribe","alice"]"#]);
    assert_eq!(sio_event(&poll(addr, &retried).1[0]).0, "subscribed");

    // A session that never gets a CONNECT accepted is closed at --auth-timeout (shorter than
    // --connect-timeout here); the connected one stays.
    let refused = open_polling(addr);
    post_packets(addr, &refused, &[&connect_packet("garbage")]);
    assert_eq!(
        poll(addr, &refused),
        (200, vec![connect_error("unauthorized")])
    );
    eventually("the refused session to close", || {
        metric(&srv, "herald_socketio_sessions") == 1.0
    });
    assert_eq!(poll(addr, &refused).0, 400);
    assert_eq!(push_to(&srv, "alice", "polled"), 1);
    let (name, n) = sio_event(&poll(addr, &retried).1[0]);
    assert_eq!(
        (name.as_str(), &n["message"]),
        ("notification", &json!("polled"))
    );
}

// ---------------------------------------------------------------------------------------------
// Auth off.

#[test]
fn with_auth_off_no_token_is_needed_and_a_token_is_ignored() {
    let srv = start_server();
    let addr = srv.public_addr;
    let mut plain = client_for(&srv, "anyone");
    let mut by_query = connect_path(addr, "/ws?token=not-a-jwt");
    subscribe(&mut by_query, "anyone");
    let mut by_header = connect_with_headers(addr, "/ws", &[("Authorization", "Bearer not-a-jwt")]);
    subscribe(&mut by_header, "someone-else");
    let mut sio = sio_connected(addr, "not-a-jwt");
    sio_subscribe(&mut sio, "anyone");

    assert_eq!(push_to(&srv, "anyone", "open house"), 3);
    for ws in [&mut plain, &mut by_query] {
        assert_eq!(recv_json(ws)["data"]["message"], "open house");
    }
    assert_eq!(sio_event(&recv_text(&mut sio)).1["message"], "open house");
    push_and_receive(&srv, &mut by_header, "someone-else", "also open");
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// A long-polling client whose token expires is told so in the answer to its held GET, before
/// the close packet: the queued error event and DISCONNECT used to be dropped with the session,
/// and the client saw only an Engine.IO close with no reason.
#[test]
fn socketio_polling_expiry_is_told_before_the_close_packet() {
    let srv = auth_server();
    let addr = srv.public_addr;
    let (short, _) = token_for("alice", 2);
    let session = open_polling(addr);
    post_packets(addr, &session, &[&connect_packet(&short)]);
    let (status, packets) = poll(addr, &session);
    assert_eq!(status, 200);
    assert!(packets[0].starts_with("40{\"sid\":"), "{packets:?}");
    // This GET is held until the token expires.
    let (status, packets) = poll(addr, &session);
    assert_eq!(status, 200);
    assert_eq!(
        packets,
        vec![
            r#"42["error",{"message":"token expired"}]"#.to_owned(),
            "41".to_owned(),
            "1".to_owned()
        ]
    );
    assert_eq!(metric(&srv, "herald_tokens_expired_total"), 1.0);
}

// ---------------------------------------------------------------------------------------------
// Key rotation: several public keys told apart by `kid`, a JWKS file, and SIGHUP reading them
// again while clients stay connected.

/// A directory of its own for one test's key files, emptied first.
fn key_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-jwt-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn openssl(args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs (Debian's openssl package; .ci/test installs it)");
    assert!(status.success(), "openssl {args:?}");
}

/// A key pair: the private half signs tokens, the public half is what herald is given.
struct KeyPair {
    alg: Algorithm,
    signing: EncodingKey,
    public_pem: PathBuf,
}

impl KeyPair {
    /// A fresh pair made by `openssl` in `dir`, its files named after `name`.
    fn generate(dir: &Path, name: &str, alg: Algorithm) -> KeyPair {
        let private = dir.join(format!("{name}.key"));
        let public = dir.join(format!("{name}.pub.pem"));
        let (private_s, public_s) = (private.to_str().unwrap(), public.to_str().unwrap());
        let params = match alg {
            Algorithm::RS256 => ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            _ => ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        };
        openssl(&[&["genpkey"], &params[..], &["-out", private_s]].concat());
        openssl(&["pkey", "-in", private_s, "-pubout", "-out", public_s]);
        let pem = std::fs::read(&private).unwrap();
        let signing = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            _ => EncodingKey::from_ec_pem(&pem),
        }
        .unwrap();
        KeyPair {
            alg,
            signing,
            public_pem: public,
        }
    }

    /// The RSA pair of the fixtures.
    fn fixture_rsa() -> KeyPair {
        KeyPair {
            alg: Algorithm::RS256,
            signing: EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
            public_pem: fixture("jwt_rs256_public.pem"),
        }
    }

    /// The EC pair of the fixtures.
    fn fixture_ec() -> KeyPair {
        KeyPair {
            alg: Algorithm::ES256,
            signing: EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
            public_pem: fixture("jwt_es256_public.pem"),
        }
    }

    /// A token for `sub`, valid for a minute, whose header names `kid` when given.
    fn token(&self, sub: &str, kid: Option<&str>) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        let claims = json!({"sub": sub, "exp": unix_now() + 60});
        encode(&header, &claims, &self.signing).unwrap()
    }

    /// The public key as a JWK (RFC 7517) named `kid`.
    fn jwk(&self, kid: &str) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.signing, self.alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        serde_json::to_value(jwk).unwrap()
    }

    /// `--jwt-public-key KID=PATH` for this pair's public key.
    fn key_path(&self, kid: &str) -> KeyPath {
        KeyPath {
            kid: Some(kid.to_owned()),
            path: self.public_pem.clone(),
        }
    }
}

fn write_jwks(path: &Path, keys: &[Value]) {
    std::fs::write(path, json!({ "keys": keys }).to_string()).unwrap();
}

/// `token` opens a `/ws` connection as `user`: the connection, subscribed to `user`.
fn accepted(addr: SocketAddr, token: &str, user: &str) -> Client {
    let mut ws = connect_path(addr, &format!("/ws?token={token}"));
    subscribe(&mut ws, user);
    ws
}

/// `token` is refused at the handshake, as any token that does not verify is.
fn assert_refused(addr: SocketAddr, token: &str, what: &str) {
    let (status, _, body) = refused_upgrade(addr, &format!("/ws?token={token}"), "");
    assert_eq!(
        (status, body),
        (401, json!({"error": "unauthorized"})),
        "{what}"
    );
}

#[test]
fn tokens_of_two_keys_are_told_apart_by_kid() {
    let dir = key_dir("two-kids");
    let (a, b) = (
        KeyPair::fixture_rsa(),
        KeyPair::generate(&dir, "b", Algorithm::RS256),
    );
    let srv = start_server_with(|c| c.jwt_public_key = vec![a.key_path("a"), b.key_path("b")]);
    let addr = srv.public_addr;
    let mut by_a = accepted(addr, &a.token("alice", Some("a")), "alice");
    let mut by_b = accepted(addr, &b.token("bob", Some("b")), "bob");
    push_and_receive(&srv, &mut by_a, "alice", "signed by a");
    push_and_receive(&srv, &mut by_b, "bob", "signed by b");

    assert_refused(addr, &a.token("alice", Some("b")), "a's token naming b");
    assert_refused(addr, &a.token("alice", Some("c")), "an unknown kid");
    // Both keys have a kid: a token must name one.
    assert_refused(addr, &a.token("alice", None), "no kid");
    // Nor does an unknown kid pass as an `auth` event after the handshake.
    let mut c = raw_anonymous(addr);
    raw_send(&mut c, "auth", &b.token("bob", Some("zz")));
    assert_eq!(c.recv_json(), error_event("unauthorized"));
    assert_eq!(c.expect_close_next(), 4001);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_key_without_a_kid_takes_tokens_whatever_their_kid() {
    // How a single --jwt-public-key always behaved, kept beside a named key.
    let dir = key_dir("no-kid");
    let (a, b) = (
        KeyPair::fixture_rsa(),
        KeyPair::generate(&dir, "b", Algorithm::RS256),
    );
    let srv = start_server_with(|c| {
        c.jwt_public_key = vec![a.public_pem.clone().into(), b.key_path("b")]
    });
    let addr = srv.public_addr;
    accepted(addr, &a.token("alice", None), "alice");
    accepted(addr, &a.token("alice", Some("from-the-idp")), "alice");
    accepted(addr, &b.token("bob", Some("b")), "bob");
    assert_refused(addr, &b.token("bob", None), "b's token without its kid");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_jwks_file_gives_rs256_and_es256_keys() {
    let dir = key_dir("jwks");
    let (rsa, ec) = (KeyPair::fixture_rsa(), KeyPair::fixture_ec());
    let jwks = dir.join("jwks.json");
    let mut for_encryption = ec.jwk("enc");
    for_encryption["use"] = json!("enc");
    write_jwks(&jwks, &[rsa.jwk("rsa-1"), ec.jwk("ec-1"), for_encryption]);
    let srv = start_server_with(|c| c.jwt_jwks = Some(jwks.clone()));
    let addr = srv.public_addr;
    let mut ws = accepted(addr, &rsa.token("alice", Some("rsa-1")), "alice");
    drop(accepted(addr, &ec.token("alice", Some("ec-1")), "alice"));
    // The push below counts alice's sockets: the one just closed must be gone first.
    eventually("the EC client's socket gone", || {
        sockets_of(&srv, "alice") == 1
    });
    push_and_receive(&srv, &mut ws, "alice", "from a JWKS key");
    assert_refused(
        addr,
        &ec.token("alice", Some("enc")),
        "a key for encryption",
    );
    assert_refused(
        addr,
        &rsa.token("alice", Some("ec-1")),
        "RS256 naming the EC key",
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_reload_rereads_the_key_files_and_keeps_the_keys_when_one_is_broken() {
    let dir = key_dir("reload");
    let (a, b) = (
        KeyPair::generate(&dir, "a", Algorithm::RS256),
        KeyPair::generate(&dir, "b", Algorithm::ES256),
    );
    let current = dir.join("current.pem");
    std::fs::copy(&a.public_pem, &current).unwrap();
    let srv = start_server_with(|c| c.jwt_public_key = vec![current.clone().into()]);
    let addr = srv.public_addr;
    let mut ws = accepted(addr, &a.token("alice", None), "alice");

    std::fs::write(&current, "not a key").unwrap();
    assert!(srv.reloader().reload().is_err());
    accepted(addr, &a.token("alice", None), "alice");

    std::fs::copy(&b.public_pem, &current).unwrap();
    srv.reloader().reload().unwrap();
    accepted(addr, &b.token("alice", None), "alice");
    assert_refused(addr, &a.token("alice", None), "the replaced key");
    // Verified once at its handshake, the first connection is not asked again.
    push_and_receive(&srv, &mut ws, "alice", "after the reload");
    let _ = std::fs::remove_dir_all(dir);
}

/// Sends `signal` to the spawned herald.
fn kill(herald: &Herald, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &herald.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits for a log line containing `what`, and returns it.
fn log_line(log: &Receiver<String>, what: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) if line.contains(what) => return line,
            Ok(_) => {}
            Err(e) => panic!("no log line with {what:?}: {e}"),
        }
    }
}

/// Pushes to `user` through a spawned herald's control API; how many sockets took it.
fn push_at(herald: &Herald, user: &str, message: &str) -> u64 {
    let body = json!({"type": "TEST", "message": message}).to_string();
    let path = format!("/v1/users/{user}/notifications");
    let (status, _, body) = http(herald.control_addr, "POST", &path, Some(&body));
    assert_eq!(status, 202, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["sockets"]
        .as_u64()
        .unwrap()
}

#[test]
fn sighup_reads_the_jwks_again_and_open_connections_stay() {
    let dir = key_dir("sighup");
    let (old, new) = (
        KeyPair::fixture_rsa(),
        KeyPair::generate(&dir, "new", Algorithm::RS256),
    );
    let jwks = dir.join("jwks.json");
    write_jwks(&jwks, &[old.jwk("2024")]);
    let (mut herald, log) = spawn_herald_logged(&["--jwt-jwks", jwks.to_str().unwrap()]);
    let addr = herald.public_addr;
    let mut ws = accepted(addr, &old.token("alice", Some("2024")), "alice");
    assert_refused(
        addr,
        &new.token("alice", Some("2025")),
        "the new key, before",
    );

    // The identity provider rotates: the new key in, the old one out.
    write_jwks(&jwks, &[new.jwk("2025")]);
    kill(&herald, "-HUP");
    let line = log_line(&log, "JWT keys reloaded");
    assert!(line.contains("2025"), "{line}");

    let mut fresh = accepted(addr, &new.token("alice", Some("2025")), "alice");
    assert_refused(addr, &old.token("alice", Some("2024")), "the removed key");
    // The connection made with the old key is still open and receives beside the new one.
    assert_eq!(push_at(&herald, "alice", "still here"), 2);
    for ws in [&mut ws, &mut fresh] {
        let m = recv_json(ws);
        assert_eq!(m["data"]["message"], "still here", "{m}");
    }
    assert!(
        herald.child.try_wait().unwrap().is_none(),
        "SIGHUP stopped herald"
    );
    herald.terminate();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_broken_jwks_at_sighup_leaves_the_old_keys_in_force() {
    let dir = key_dir("sighup-broken");
    let key = KeyPair::fixture_ec();
    let jwks = dir.join("jwks.json");
    write_jwks(&jwks, &[key.jwk("ec")]);
    let (mut herald, log) = spawn_herald_logged(&["--jwt-jwks", jwks.to_str().unwrap()]);
    let addr = herald.public_addr;
    accepted(addr, &key.token("alice", Some("ec")), "alice");

    std::fs::write(&jwks, r#"{"keys": [{"kty": "EC", "crv": "P-256""#).unwrap();
    kill(&herald, "-HUP");
    let line = log_line(&log, "JWT keys not reloaded");
    assert!(line.contains("jwks.json"), "the file is named: {line}");
    accepted(addr, &key.token("alice", Some("ec")), "alice");

    // A set with no usable key is refused too.
    let mut for_encryption = key.jwk("ec");
    for_encryption["use"] = json!("enc");
    write_jwks(&jwks, &[for_encryption]);
    kill(&herald, "-HUP");
    log_line(&log, "JWT keys not reloaded");
    accepted(addr, &key.token("alice", Some("ec")), "alice");
    assert!(
        herald.child.try_wait().unwrap().is_none(),
        "SIGHUP stopped herald"
    );
    herald.terminate();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_public_key_variable_takes_a_comma_separated_list() {
    use std::io::BufRead;

    let keys = format!(
        "rsa={},ec={}",
        fixture("jwt_rs256_public.pem").display(),
        fixture("jwt_es256_public.pem").display()
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
        .env("HERALD_JWT_PUBLIC_KEY", keys)
        .env_remove("HERALD_JWT_SECRET")
        .env_remove("HERALD_JWT_JWKS")
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("herald starts");
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let line = stderr
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("JWT auth on"))
        .expect("the line saying which keys are in force");
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains(r#"kids=["rsa", "ec"]"#), "{line}");
}
