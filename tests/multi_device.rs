//! One user on several devices gets every push on each; other users get nothing.

mod common;

use common::*;
use serde_json::json;

#[test]
fn three_devices_of_one_user_each_get_a_push_once() {
    let srv = start_server();
    let mut devices: Vec<Client> = (0..3).map(|_| client_for(&srv, "user-123")).collect();
    let (status, body) = post(
        &srv,
        "/v1/users/user-123/notifications",
        json!({"type":"LIKE","message":"Someone liked your post","actorId":"user-9","data":{"postId":"p1"}}),
    );
    assert_eq!((status, body["sockets"].as_u64()), (202, Some(3)));
    assert_eq!(push_to(&srv, "user-123", "sentinel"), 3);
    for ws in &mut devices {
        let got = notifications_until(ws, "sentinel");
        assert_eq!(got.len(), 1, "exactly once: {got:?}");
        let n = &got[0];
        assert_eq!(n["type"], "LIKE");
        assert_eq!(n["message"], "Someone liked your post");
        assert_eq!(n["actorId"], "user-9");
        assert_eq!(n["data"], json!({"postId": "p1"}));
        let ts = n["timestamp"].as_str().expect("timestamp added");
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "{ts}"
        );
    }
}

#[test]
fn subscribed_reply_names_the_socket() {
    let srv = start_server();
    let mut a = connect(&srv);
    let mut b = connect(&srv);
    let da = subscribe(&mut a, "u");
    let db = subscribe(&mut b, "u");
    let (ia, ib) = (
        da["socketId"].as_str().unwrap(),
        db["socketId"].as_str().unwrap(),
    );
    assert_eq!(ia.len(), 20);
    assert_ne!(ia, ib, "each socket has its own id");
}

#[test]
fn other_users_receive_nothing() {
    let srv = start_server();
    let mut alice = client_for(&srv, "alice");
    let mut bob = client_for(&srv, "bob");
    assert_eq!(push_to(&srv, "alice", "for alice"), 1);
    assert_eq!(push_to(&srv, "bob", "for bob"), 1);
    assert_eq!(push_to(&srv, "alice", "sentinel"), 1);
    let got = notifications_until(&mut alice, "sentinel");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["message"], "for alice");
    // Bob's first notification is his own: nothing of Alice's came before it.
    let m = recv_json(&mut bob);
    assert_eq!(m["data"]["message"], "for bob");
}

#[test]
fn many_users_each_get_only_their_own() {
    let srv = start_server();
    let users: Vec<String> = (0..50).map(|i| format!("user-{i}")).collect();
    let mut clients: Vec<Client> = users.iter().map(|u| client_for(&srv, u)).collect();
    for u in &users {
        assert_eq!(push_to(&srv, u, &format!("hello {u}")), 1);
    }
    for (u, ws) in users.iter().zip(&mut clients) {
        let m = recv_json(ws);
        assert_eq!(m["data"]["message"], format!("hello {u}"));
    }
    assert_eq!(metric(&srv, "herald_subscribed_users"), 50.0);
}

#[test]
fn multi_user_push_reaches_a_socket_of_two_listed_users_once() {
    let srv = start_server();
    let mut both = connect(&srv);
    subscribe(&mut both, "a");
    subscribe(&mut both, "b");
    let mut only_b = client_for(&srv, "b");
    let mut c = client_for(&srv, "c");
    let (status, body) = post(
        &srv,
        "/v1/notifications",
        json!({"userIds": ["a", "b", "a"], "notification": {"message": "multi"}}),
    );
    assert_eq!((status, body["sockets"].as_u64()), (202, Some(2)));
    post(
        &srv,
        "/v1/broadcast",
        json!({"notification": {"message": "sentinel"}}),
    );
    assert_eq!(notifications_until(&mut both, "sentinel").len(), 1);
    assert_eq!(notifications_until(&mut only_b, "sentinel").len(), 1);
    assert_eq!(notifications_until(&mut c, "sentinel").len(), 0);
}

#[test]
fn numeric_user_ids_are_their_decimal_string() {
    let srv = start_server();
    let mut ws = connect(&srv);
    send_json(&mut ws, json!({"event": "subscribe", "data": 123}));
    let reply = recv_json(&mut ws);
    assert_eq!(reply["data"]["userId"], "123");
    let (status, body) = post(
        &srv,
        "/v1/notifications",
        json!({"userIds": [123], "notification": {"message": "n"}}),
    );
    assert_eq!((status, body["sockets"].as_u64()), (202, Some(1)));
    assert_eq!(recv_json(&mut ws)["data"]["message"], "n");
}

#[test]
fn unsubscribe_stops_delivery() {
    let srv = start_server();
    let mut ws = connect(&srv);
    subscribe(&mut ws, "u1");
    subscribe(&mut ws, "u2");
    send_json(&mut ws, json!({"event": "unsubscribe", "data": "u1"}));
    let reply = recv_json(&mut ws);
    assert_eq!(
        reply,
        json!({"event": "unsubscribed", "data": {"userId": "u1"}})
    );
    assert_eq!(push_to(&srv, "u1", "lost"), 0);
    assert_eq!(push_to(&srv, "u2", "sentinel"), 1);
    assert_eq!(notifications_until(&mut ws, "sentinel").len(), 0);
}

#[test]
fn disconnect_frees_the_room() {
    let srv = start_server();
    let mut a = client_for(&srv, "gone");
    let mut b = client_for(&srv, "gone");
    let (status, body) = get(&srv, "/v1/users/gone");
    assert_eq!(status, 200);
    let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Both sockets listed one by one, raw JSON WebSockets from loopback.
    let devices = v.as_object_mut().unwrap().remove("devices").unwrap();
    let devices = devices.as_array().unwrap();
    assert_eq!(devices.len(), 2, "{body}");
    assert_ne!(devices[0]["socketId"], devices[1]["socketId"], "{body}");
    for d in devices {
        assert_eq!(d["protocol"], "raw_json", "{body}");
        assert_eq!(d["address"], "127.0.0.1", "{body}");
    }
    assert_eq!(
        v,
        json!({"userId": "gone", "online": true, "sockets": 2, "addresses": ["127.0.0.1"]})
    );
    a.close(Some(tungstenite::protocol::CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    // Read until the server's answer ends the close handshake.
    while a.read().is_ok() {}
    drop(a);
    // b vanishes without a close frame.
    b.get_mut().shutdown(std::net::Shutdown::Both).unwrap();
    eventually("the room to empty", || {
        get(&srv, "/v1/users/gone").1 == r#"{"userId":"gone","online":false,"sockets":0}"#
    });
    assert_eq!(metric(&srv, "herald_rooms"), 0.0);
    assert_eq!(metric(&srv, "herald_subscriptions"), 0.0);
    eventually("the connections to close", || {
        metric(&srv, "herald_connections") == 0.0
    });
    assert_eq!(metric(&srv, "herald_closes_total{code=\"1000\"}"), 1.0);
    assert_eq!(metric(&srv, "herald_closes_total{code=\"1006\"}"), 1.0);
}

#[test]
fn bad_client_messages_get_an_error_event_and_the_socket_stays_open() {
    let srv = start_server();
    let mut ws = connect(&srv);
    for (msg, needle) in [
        ("not json", "invalid message"),
        (r#"{"event":"dance","data":"u"}"#, "unknown event"),
        (r#"{"event":"subscribe","data":""}"#, "must not be empty"),
        (
            r#"{"event":"subscribe","data":{"id":1}}"#,
            "string or an integer",
        ),
    ] {
        ws.send(tungstenite::Message::Text(msg.into())).unwrap();
        let reply = recv_json(&mut ws);
        assert_eq!(reply["event"], "error", "{msg}");
        let text = reply["data"]["message"].as_str().unwrap();
        assert!(text.contains(needle), "{msg}: {text}");
    }
    ws.send(tungstenite::Message::Binary(vec![1, 2, 3]))
        .unwrap();
    assert_eq!(recv_json(&mut ws)["event"], "error");
    subscribe(&mut ws, "still-open");
}

#[test]
fn subscriptions_per_connection_are_capped() {
    let srv = start_server_with(|c| c.max_subscriptions = 2);
    let mut ws = connect(&srv);
    subscribe(&mut ws, "a");
    subscribe(&mut ws, "b");
    subscribe(&mut ws, "a"); // idempotent, not over the cap
    send_json(&mut ws, json!({"event": "subscribe", "data": "c"}));
    let reply = recv_json(&mut ws);
    assert_eq!(reply["event"], "error");
    assert!(reply["data"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 2"));
}
