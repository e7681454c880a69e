//! No notification lost across reconnects and restarts, over real sockets: raw clients that
//! resubscribe with the last offset they saw, Socket.IO sessions taken back with their `pid`,
//! offsets that cannot be honoured, the seam between replay and live pushes under load on four
//! workers, the drain on SIGTERM (1012) and the log kept across a restart in `--state-dir`.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tungstenite::Message;

use common::*;

const SECRET: &str = "herald-test-secret-of-32-bytes!!";

fn token(sub: &str) -> String {
    let claims = json!({"sub": sub, "exp": unix_now() + 300});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("a signed token")
}

/// Pushes `n` to `user` through the control API at `control`; returns the 202 answer.
fn push_at(control: SocketAddr, user: &str, n: u64) -> Value {
    let body = json!({"type": "TEST", "n": n}).to_string();
    let path = format!("/v1/users/{user}/notifications");
    let (status, _, answer) = http(control, "POST", &path, Some(&body));
    assert_eq!(status, 202, "{answer}");
    serde_json::from_str(&answer).expect("a JSON answer")
}

fn broadcast_at(control: SocketAddr, n: u64) -> Value {
    let body = json!({"notification": {"type": "ALL", "n": n}}).to_string();
    let (status, _, answer) = http(control, "POST", "/v1/broadcast", Some(&body));
    assert_eq!(status, 202, "{answer}");
    serde_json::from_str(&answer).expect("a JSON answer")
}

/// Sends a raw `subscribe` with `data` and returns the `subscribed` answer's data.
fn subscribe_with(ws: &mut Client, data: Value) -> Value {
    send_json(ws, json!({"event": "subscribe", "data": data}));
    let reply = recv_json(ws);
    assert_eq!(reply["event"], "subscribed", "{reply}");
    reply["data"].clone()
}

/// The next notification's `n` and offset.
fn next_n(ws: &mut Client) -> (u64, String) {
    let v = recv_json(ws);
    assert_eq!(v["event"], "notification", "{v}");
    let offset = v["offset"].as_str().expect("an offset").to_owned();
    (v["data"]["n"].as_u64().expect("n"), offset)
}

#[test]
fn a_raw_client_gets_what_it_missed_exactly_once_then_live_ones() {
    let srv = start_server();
    let control = srv.control_addr;
    let mut a = connect(&srv);
    let first = subscribe_with(&mut a, json!("u1"));
    assert!(first["offset"].is_string(), "{first}");
    assert!(first.get("recovered").is_none(), "no offset given: {first}");
    let answer = push_at(control, "u1", 1);
    let (n, seen) = next_n(&mut a);
    assert_eq!((n, seen.as_str()), (1, answer["offset"].as_str().unwrap()));
    drop(a);
    eventually("the socket gone", || {
        get(&srv, "/v1/users/u1").1.contains("\"sockets\":0")
    });
    push_at(control, "u1", 2);
    push_at(control, "u2", 3);
    broadcast_at(control, 4);
    push_at(control, "u1", 5);

    let mut b = connect(&srv);
    let data = subscribe_with(&mut b, json!({"userId": "u1", "offset": seen}));
    assert_eq!(data["recovered"], true, "{data}");
    assert_eq!(data["userId"], "u1");
    let got: Vec<u64> = (0..3).map(|_| next_n(&mut b).0).collect();
    assert_eq!(
        got,
        vec![2, 4, 5],
        "u2's push is not replayed; the rest in order"
    );
    push_at(control, "u1", 6);
    assert_eq!(next_n(&mut b).0, 6, "then live ones, nothing twice");
    assert_eq!(metric(&srv, "herald_replayed_total"), 3.0);
}

#[test]
fn broadcasts_let_go_before_a_late_subscribe_are_not_replayed_again() {
    let srv = start_server();
    let control = srv.control_addr;
    let from = broadcast_at(control, 0)["offset"]
        .as_str()
        .unwrap()
        .to_owned();
    // A raw socket that has not subscribed holds broadcasts for a second, then lets them go.
    let mut ws = connect(&srv);
    broadcast_at(control, 1);
    broadcast_at(control, 2);
    assert_eq!(next_n(&mut ws).0, 1, "let go once its grace is over");
    assert_eq!(next_n(&mut ws).0, 2);
    push_at(control, "late", 3);
    // Subscribing now with an offset from before them: it missed only push 3.
    let data = subscribe_with(&mut ws, json!({"userId": "late", "offset": from}));
    assert_eq!(data["recovered"], true, "{data}");
    assert_eq!(next_n(&mut ws).0, 3, "not broadcasts 1 and 2 again");
    broadcast_at(control, 4);
    assert_eq!(next_n(&mut ws).0, 4);
}

/// A client that says it resumes (`/ws?resume=1`) holds its broadcasts until its subscribe,
/// however late past the second of grace: what it missed comes first, in order. Without the
/// word, broadcasts 1 and 2 came at the end of the grace, before the replay of push 0.
#[test]
fn a_client_that_says_it_resumes_gets_what_it_missed_before_broadcasts_however_late_it_subscribes()
{
    let srv = start_server();
    let control = srv.control_addr;
    let mut a = connect(&srv);
    let from = subscribe_with(&mut a, json!("slow"))["offset"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(a);
    eventually("the socket gone", || {
        get(&srv, "/v1/users/slow").1.contains("\"sockets\":0")
    });
    push_at(control, "slow", 0);

    let mut ws = connect_path(srv.public_addr, "/ws?resume=1");
    broadcast_at(control, 1);
    broadcast_at(control, 2);
    // Past the second a client that did not say so holds its broadcasts.
    std::thread::sleep(Duration::from_millis(1_500));
    let data = subscribe_with(&mut ws, json!({"userId": "slow", "offset": from}));
    assert_eq!(data["recovered"], true, "{data}");
    let got: Vec<u64> = (0..3).map(|_| next_n(&mut ws).0).collect();
    assert_eq!(got, vec![0, 1, 2], "what it missed, in order, each once");
    broadcast_at(control, 3);
    assert_eq!(next_n(&mut ws).0, 3);
}

#[test]
fn broadcasts_held_before_a_first_subscribe_come_before_its_answer() {
    let srv = start_server();
    let control = srv.control_addr;
    let mut ws = connect(&srv);
    // Held: the socket has not subscribed, and its second of grace is not over.
    let one = broadcast_at(control, 1)["offset"]
        .as_str()
        .unwrap()
        .to_owned();
    let two = broadcast_at(control, 2)["offset"]
        .as_str()
        .unwrap()
        .to_owned();
    send_json(&mut ws, json!({"event": "subscribe", "data": "u"}));
    // Both were made before the subscription: they come first, then the answer, whose offset
    // says what the socket has; nothing after it is at or before that offset.
    assert_eq!(next_n(&mut ws), (1, one));
    assert_eq!(next_n(&mut ws), (2, two.clone()));
    let answer = recv_json(&mut ws);
    assert_eq!(answer["event"], "subscribed", "{answer}");
    assert_eq!(answer["data"]["offset"], two.as_str(), "{answer}");
    let three = push_at(control, "u", 3);
    assert_eq!(
        next_n(&mut ws),
        (3, three["offset"].as_str().unwrap().to_owned())
    );
}

#[test]
fn a_list_of_users_recovers_and_a_push_to_several_comes_once() {
    let srv = start_server();
    let control = srv.control_addr;
    let mut a = connect(&srv);
    let data = subscribe_with(&mut a, json!({"userIds": ["a", "b"]}));
    assert_eq!(data["userIds"], json!(["a", "b"]), "{data}");
    let from = data["offset"].as_str().unwrap().to_owned();
    drop(a);
    push_at(control, "a", 1);
    let body = json!({"userIds": ["a", "b", "c"], "notification": {"n": 2}}).to_string();
    let (status, _, answer) = http(control, "POST", "/v1/notifications", Some(&body));
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains("\"offset\""), "{answer}");
    push_at(control, "b", 3);
    push_at(control, "c", 4);

    let mut b = connect(&srv);
    let data = subscribe_with(&mut b, json!({"userIds": ["a", "b"], "offset": from}));
    assert_eq!(data["recovered"], true, "{data}");
    let got: Vec<u64> = (0..3).map(|_| next_n(&mut b).0).collect();
    assert_eq!(got, vec![1, 2, 3]);
    push_at(control, "c", 5);
    push_at(control, "b", 6);
    assert_eq!(next_n(&mut b).0, 6, "c's pushes never came");
}

#[test]
fn offsets_that_cannot_be_honoured_are_told_so_and_replay_nothing() {
    let srv = start_server_with(|c| c.recovery_window = Duration::from_secs(1));
    let control = srv.control_addr;
    let first = push_at(control, "u", 1)["offset"]
        .as_str()
        .unwrap()
        .to_owned();
    let (epoch, _) = first.split_once('-').unwrap();
    let other_epoch = if epoch.starts_with('1') { "2" } else { "1" };
    let forged = [
        "garbage".to_owned(),
        format!("{epoch}-"),
        format!("{epoch}--1"),
        format!("{epoch}-99999"),
        format!("{other_epoch}{}-1", &epoch[1..]),
        format!("{epoch}-0 "),
    ];
    for offset in &forged {
        let mut ws = connect(&srv);
        let data = subscribe_with(&mut ws, json!({"userId": "u", "offset": offset}));
        assert_eq!(data["recovered"], false, "{offset}: {data}");
        push_at(control, "u", 2);
        assert_eq!(
            next_n(&mut ws).0,
            2,
            "{offset}: nothing replayed before the live push"
        );
    }
    // Past the window: the first push is dropped, so an offset before it is too old.
    std::thread::sleep(Duration::from_millis(1_300));
    let mut ws = connect(&srv);
    let before_first = format!("{epoch}-0");
    let data = subscribe_with(&mut ws, json!({"userId": "u", "offset": before_first}));
    assert_eq!(data["recovered"], false, "{data}");
    // Not an offset at all: the subscription is refused with an error, and nothing joins.
    send_json(
        &mut ws,
        json!({"event": "subscribe", "data": {"userId": "v", "offset": 7}}),
    );
    let err = recv_json(&mut ws);
    assert_eq!(err["event"], "error", "{err}");
    assert!(
        err["data"]["message"].as_str().unwrap().contains("offset"),
        "{err}"
    );
    assert!(metric(&srv, "herald_recoveries_failed_total") >= 7.0);
}

#[test]
fn with_recovery_off_there_are_no_offsets() {
    let srv = start_server_with(|c| c.recovery = false);
    let mut ws = connect(&srv);
    let data = subscribe_with(&mut ws, json!({"userId": "u", "offset": "1-1"}));
    assert!(data.get("offset").is_none(), "{data}");
    let answer = push_at(srv.control_addr, "u", 1);
    assert!(answer.get("offset").is_none(), "{answer}");
    let v = recv_json(&mut ws);
    assert!(v.get("offset").is_none(), "{v}");
}

/// Calls `push` with 1, 2, 3, ... every few hundred microseconds until `stop`; the thread
/// hands back the last number pushed.
fn keep_pushing(
    stop: Arc<AtomicBool>,
    mut push: impl FnMut(u64) + Send + 'static,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            push(n);
            std::thread::sleep(Duration::from_micros(300));
        }
        n
    })
}

/// Reconnects again and again, on four workers, while a pusher sends a numbered push to the
/// user every few hundred microseconds: each time the client resubscribes with the last offset
/// it saw and must continue the sequence with no gap and no repeat, whatever was in the
/// worker's queue when the replay was read.
#[test]
fn the_seam_between_replay_and_live_pushes_has_no_gap_and_no_repeat() {
    let srv = start_server_with(|c| c.workers = 4);
    let control = srv.control_addr;
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = keep_pushing(stop.clone(), move |n| {
        push_at(control, "seam", n);
    });
    let mut last_n = 0;
    let mut offset: Option<String> = None;
    for round in 0..40u64 {
        // Resuming, it says so: broadcasts would wait for its subscribe (there are none here).
        let mut ws = match offset {
            None => connect(&srv),
            Some(_) => connect_path(srv.public_addr, "/ws?resume=1"),
        };
        let data = match &offset {
            None => subscribe_with(&mut ws, json!("seam")),
            Some(o) => subscribe_with(&mut ws, json!({"userId": "seam", "offset": o})),
        };
        if offset.is_some() {
            assert_eq!(data["recovered"], true, "round {round}: {data}");
        }
        for _ in 0..(5 + round % 7) {
            let (n, o) = next_n(&mut ws);
            if last_n != 0 {
                assert_eq!(n, last_n + 1, "round {round}: after {last_n} came {n}");
            }
            last_n = n;
            offset = Some(o);
        }
        // Killed, not closed: whatever was on its way is lost with the socket.
        drop(ws);
        std::thread::sleep(Duration::from_millis(round % 5));
    }
    stop.store(true, Ordering::Relaxed);
    // Every round read a stream the pusher kept up (a reader that waited would have timed
    // out), and no more than it pushed; the reader may have caught up with the last one.
    let pushed = pusher.join().unwrap();
    assert!(pushed >= last_n, "read {last_n}, pushed {pushed}");
}

/// A Socket.IO session over WebSocket: the open packet read, CONNECT sent with `auth`.
fn sio_connect(addr: SocketAddr, auth: Value) -> (Client, Value) {
    let mut ws = sio_websocket(addr);
    ws.send(Message::Text(format!("40{auth}"))).unwrap();
    let reply = recv_text(&mut ws);
    (ws, connect_reply(&reply))
}

/// The data of a CONNECT reply `40{...}`.
fn connect_reply(packet: &str) -> Value {
    let body = packet
        .strip_prefix("40")
        .unwrap_or_else(|| panic!("a CONNECT reply: {packet}"));
    serde_json::from_str(body).expect("JSON")
}

/// A `notification` event's `n` and offset (its last argument).
fn sio_notification(packet: &str) -> (u64, String) {
    let v: Value = serde_json::from_str(packet.strip_prefix("42").expect("an event")).unwrap();
    assert_eq!(v[0], "notification", "{packet}");
    (
        v[1]["n"].as_u64().unwrap(),
        v[2].as_str().unwrap().to_owned(),
    )
}

/// A new Socket.IO session subscribed to `user`: its WebSocket, `sid`, `pid` and the offset its
/// `subscribed` event gave.
fn sio_subscribed(addr: SocketAddr, user: &str) -> (Client, String, String, String) {
    let (mut ws, connected) = sio_connect(addr, json!({}));
    let sid = connected["sid"].as_str().unwrap().to_owned();
    let pid = connected["pid"].as_str().expect("a pid").to_owned();
    ws.send(Message::Text(format!(r#"42["subscribe","{user}"]"#)))
        .unwrap();
    let subscribed = sio_next(&mut ws);
    let v: Value = serde_json::from_str(&subscribed[2..]).unwrap();
    assert_eq!(v[0], "subscribed", "{subscribed}");
    // The offset goes last, where socket.io-client takes it from, even before any push.
    let from = v[2].as_str().expect("an offset argument").to_owned();
    assert_eq!(v[1]["offset"], from);
    (ws, sid, pid, from)
}

#[test]
fn a_socketio_session_is_taken_back_with_its_rooms_and_what_it_missed() {
    let srv = start_server_with(|c| c.workers = 2);
    let control = srv.control_addr;
    let (ws, sid, pid, from) = sio_subscribed(srv.public_addr, "s1");
    drop(ws);
    eventually("the session kept", || {
        metric(&srv, "herald_sessions_parked_total") >= 1.0
    });
    push_at(control, "s1", 1);
    broadcast_at(control, 2);
    push_at(control, "other", 3);

    let auth = json!({"pid": pid, "offset": from});
    let mut ws = sio_websocket(srv.public_addr);
    ws.send(Message::Text(format!("40{auth}"))).unwrap();
    // What it missed comes first, then the CONNECT reply with the same ids.
    assert_eq!(sio_notification(&sio_next(&mut ws)).0, 1);
    assert_eq!(sio_notification(&sio_next(&mut ws)).0, 2);
    let again = connect_reply(&sio_next(&mut ws));
    assert_eq!(again["sid"], sid.as_str());
    assert_eq!(again["pid"], pid.as_str());
    // Its subscription came back with it.
    push_at(control, "s1", 4);
    assert_eq!(sio_notification(&sio_next(&mut ws)).0, 4);
    assert_eq!(metric(&srv, "herald_sessions_recovered_total"), 1.0);

    // Its client may come back again before herald noticed it left: the connected session is
    // taken over, with what came after the offset given, once.
    let mut ws2 = sio_websocket(srv.public_addr);
    ws2.send(Message::Text(format!("40{auth}"))).unwrap();
    let replayed: Vec<u64> = (0..3)
        .map(|_| sio_notification(&sio_next(&mut ws2)).0)
        .collect();
    assert_eq!(replayed, vec![1, 2, 4]);
    let again = connect_reply(&sio_next(&mut ws2));
    assert_eq!(again["sid"], sid.as_str());
    assert_eq!(metric(&srv, "herald_sessions_recovered_total"), 2.0);
}

/// A session kept for its client, whose return carries an offset the log cannot honour (of
/// another epoch, as after a cluster's Redis came back empty, or older than the log keeps): the
/// client gets a new session, new ids and no rooms, so that socket.io-client tells it
/// `recovered: false` and it subscribes again. Answered with its old ids, it believed it had
/// recovered and waited for pushes its session no longer had a room for.
#[test]
fn a_kept_session_whose_offset_cannot_be_honoured_comes_back_as_a_new_one() {
    let srv = start_server_with(|c| c.workers = 2);
    let control = srv.control_addr;
    let (ws, sid, pid, from) = sio_subscribed(srv.public_addr, "k1");
    drop(ws);
    eventually("the session kept", || {
        metric(&srv, "herald_sessions_parked_total") >= 1.0
    });
    push_at(control, "k1", 1);
    let failed = metric(&srv, "herald_recoveries_failed_total");

    // The same pid, with an offset of another epoch.
    let (epoch, n) = from.split_once('-').unwrap();
    let other = format!(
        "{}{}-{n}",
        if epoch.starts_with('1') { "2" } else { "1" },
        &epoch[1..]
    );
    let (mut ws, again) = sio_connect(srv.public_addr, json!({"pid": pid, "offset": other}));
    assert_ne!(again["sid"], sid.as_str(), "{again}");
    assert_ne!(again["pid"], pid.as_str(), "{again}");
    assert_eq!(metric(&srv, "herald_recoveries_failed_total"), failed + 1.0);
    assert_eq!(metric(&srv, "herald_sessions_recovered_total"), 0.0);
    // Nothing replayed, and no room: a push to k1 reaches nobody until it subscribes again.
    assert_eq!(
        push_at(control, "k1", 2)["sockets"],
        0,
        "k1 still subscribed"
    );
    ws.send(Message::Text(r#"42["subscribe","k1"]"#.into()))
        .unwrap();
    let subscribed = sio_next(&mut ws);
    assert!(subscribed.starts_with(r#"42["subscribed""#), "{subscribed}");
    push_at(control, "k1", 3);
    assert_eq!(sio_notification(&sio_next(&mut ws)).0, 3);
}

/// Closes a Socket.IO WebSocket cleanly, as a client dropping its transport does: the close
/// frame sent, then whatever herald sent before reading it drained unhandled (a browser's
/// WebSocket drops what arrives once closing) until the close completes. herald keeps the
/// session once it reads the close frame, before it answers it.
fn sio_close(mut ws: Client) -> usize {
    ws.close(None).unwrap();
    let mut unhandled = 0;
    loop {
        match ws.read() {
            Ok(Message::Text(p)) if p.starts_with("42") => unhandled += 1,
            Ok(_) => {}
            Err(_) => return unhandled,
        }
    }
}

/// A push herald writes to a session whose client is already closing arrives, but is never
/// handled: the client resumes from the offset it had before. Taken back, the session gets
/// such a push again, once, with what it missed after, then the CONNECT answer, then live
/// pushes, none twice.
///
/// The soak saw one notification twice after such a return (`seq 1113 at 1113 after 1113 (1
/// after a return from 1106)`): its clients counted what arrived while their close was under
/// way as received, without moving the offset they resume from. herald's part is this test.
#[test]
fn a_push_sent_while_the_client_closes_comes_again_once_on_its_return() {
    let srv = start_server_with(|c| c.workers = 2);
    let control = srv.control_addr;
    let (mut ws, connected) = sio_connect(srv.public_addr, json!({}));
    let pid = connected["pid"].as_str().expect("a pid").to_owned();
    ws.send(Message::Text(r#"42["subscribe","c1"]"#.into()))
        .unwrap();
    let v: Value = serde_json::from_str(&sio_next(&mut ws)[2..]).unwrap();
    let from = v[2].as_str().expect("an offset").to_owned();
    // Both are queued for the socket (the control API answers once they are) before herald
    // reads the close the client sends next.
    push_at(control, "c1", 1);
    broadcast_at(control, 2);
    assert_eq!(sio_close(ws), 2, "both arrived while closing");
    push_at(control, "c1", 3);

    let mut ws = sio_websocket(srv.public_addr);
    ws.send(Message::Text(format!(
        "40{}",
        json!({"pid": pid, "offset": from})
    )))
    .unwrap();
    let replayed: Vec<u64> = (0..3)
        .map(|_| sio_notification(&sio_next(&mut ws)).0)
        .collect();
    assert_eq!(replayed, vec![1, 2, 3]);
    assert_eq!(connect_reply(&sio_next(&mut ws))["sid"], connected["sid"]);
    broadcast_at(control, 4);
    push_at(control, "c1", 5);
    assert_eq!(
        sio_notification(&sio_next(&mut ws)).0,
        4,
        "then live, none twice"
    );
    assert_eq!(sio_notification(&sio_next(&mut ws)).0, 5);
}

/// [`the_seam_between_replay_and_live_pushes_has_no_gap_and_no_repeat`] for a Socket.IO
/// session taken back again and again, on four workers, while pushes to its user and
/// broadcasts come every few hundred microseconds: each return's CONNECT races the pushes, and
/// what arrived while the client closed is left unhandled. The numbers it handles continue
/// with no gap and no repeat.
#[test]
fn a_socketio_session_taken_back_under_pushes_and_broadcasts_has_no_gap_and_no_repeat() {
    let srv = start_server_with(|c| c.workers = 4);
    let control = srv.control_addr;
    let stop = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let pusher = keep_pushing(stop.clone(), {
        let pushed = pushed.clone();
        move |n| {
            if n % 2 == 0 {
                broadcast_at(control, n);
            } else {
                push_at(control, "sio-seam", n);
            }
            pushed.store(n, Ordering::SeqCst);
        }
    });
    let (mut ws, connected) = sio_connect(srv.public_addr, json!({}));
    let pid = connected["pid"].as_str().expect("a pid").to_owned();
    ws.send(Message::Text(r#"42["subscribe","sio-seam"]"#.into()))
        .unwrap();
    let mut offset = loop {
        let p = sio_next(&mut ws);
        let (name, _) = sio_event(&p);
        if name == "subscribed" {
            let v: Value = serde_json::from_str(&p[2..]).unwrap();
            break v[2].as_str().expect("an offset").to_owned();
        }
    };
    let mut last_n = 0;
    for round in 0..30u64 {
        let mut connected_again = round == 0;
        let mut handled = 0;
        while handled < 5 + round % 7 || !connected_again {
            let p = sio_next(&mut ws);
            if p.starts_with("40") {
                assert_eq!(connect_reply(&p)["sid"], connected["sid"], "round {round}");
                connected_again = true;
                continue;
            }
            let (n, o) = sio_notification(&p);
            if last_n != 0 {
                assert_eq!(n, last_n + 1, "round {round}: after {last_n} came {n}");
            }
            last_n = n;
            offset = o;
            handled += 1;
        }
        sio_close(ws);
        // At least one push while it is away, however slow the pusher runs.
        let at = pushed.load(Ordering::SeqCst);
        eventually("a push while away", || pushed.load(Ordering::SeqCst) > at);
        ws = sio_websocket(srv.public_addr);
        let auth = json!({"pid": pid, "offset": offset});
        ws.send(Message::Text(format!("40{auth}"))).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    pusher.join().unwrap();
    eventually("the returns counted as recovered", || {
        metric(&srv, "herald_sessions_recovered_total") >= 29.0
    });
    assert!(
        metric(&srv, "herald_replayed_total") > 0.0,
        "pushes came while it was away"
    );
}

/// One polling request on its own connection (`Connection: close`): the body of the answer.
fn polling(addr: SocketAddr, method: &str, query: &str, body: &str) -> String {
    let request = format!(
        "{method} /socket.io/?EIO=4&transport=polling{query} HTTP/1.1\r\nHost: x\r\n\
         Connection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, _, answer) = raw_http(addr, request.as_bytes());
    assert_eq!(status, 200, "{answer}");
    answer
}

/// A Socket.IO client coming back over a WebSocket with its `pid` and last offset, as
/// socket.io-client does: the CONNECT sent, nothing read yet.
fn sio_return(addr: SocketAddr, pid: &str, from: &str) -> Client {
    let mut ws = sio_websocket(addr);
    let auth = json!({"pid": pid, "offset": from});
    ws.send(Message::Text(format!("40{auth}"))).unwrap();
    ws
}

/// A Socket.IO client over long-polling, connected and subscribed to `user`: its `&sid=` query
/// part, its CONNECT reply and the offset its `subscribed` event gave.
fn polling_subscribed(addr: SocketAddr, user: &str) -> (String, Value, String) {
    let open = polling(addr, "GET", "", "");
    let open: Value =
        serde_json::from_str(open.strip_prefix('0').expect("an open packet")).unwrap();
    let sid = format!("&sid={}", open["sid"].as_str().unwrap());
    assert_eq!(polling(addr, "POST", &sid, "40"), "ok");
    let connected = connect_reply(&polling(addr, "GET", &sid, ""));
    let subscribe = format!(r#"42["subscribe","{user}"]"#);
    assert_eq!(polling(addr, "POST", &sid, &subscribe), "ok");
    let subscribed = polling(addr, "GET", &sid, "");
    let v: Value = serde_json::from_str(subscribed.strip_prefix("42").unwrap()).unwrap();
    assert_eq!(v[0], "subscribed", "{subscribed}");
    let from = v[2].as_str().expect("an offset").to_owned();
    (sid, connected, from)
}

#[test]
fn a_polling_client_whose_held_get_is_cut_takes_its_session_back_at_once() {
    // The default ping settings: without the cut noticed, the session would stay open for
    // 45 s (its client could take it over, see below, but not find it kept).
    let srv = start_server();
    let addr = srv.public_addr;
    let (sid, connected, from) = polling_subscribed(addr, "p1");
    let pid = connected["pid"].as_str().expect("a pid").to_owned();

    // A GET held open, then its connection closed under it, as a client losing its network
    // mid-poll (or a browser tab killed) leaves it.
    let mut held = std::net::TcpStream::connect(addr).unwrap();
    let get = format!("GET /socket.io/?EIO=4&transport=polling{sid} HTTP/1.1\r\nHost: x\r\n\r\n");
    std::io::Write::write_all(&mut held, get.as_bytes()).unwrap();
    eventually("the GET held", || {
        metric(&srv, "herald_socketio_polls_held") >= 1.0
    });
    socket2::SockRef::from(&held)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(held);
    eventually("the session kept at once", || {
        metric(&srv, "herald_sessions_parked_total") >= 1.0
    });
    push_at(srv.control_addr, "p1", 1);

    // Back over a WebSocket with its pid: the same session, what it missed, its room.
    let mut ws = sio_return(addr, &pid, &from);
    assert_eq!(sio_notification(&sio_next(&mut ws)).0, 1);
    let again = connect_reply(&sio_next(&mut ws));
    assert_eq!(again["sid"], connected["sid"]);
    push_at(srv.control_addr, "p1", 2);
    assert_eq!(sio_notification(&sio_next(&mut ws)).0, 2);
}

/// A polling client cut between two GETs comes back before herald noticed it left (which takes
/// the ping timeout, 45 s by default): its session, still open, is taken over with its `pid`,
/// with what it missed; the Engine.IO session left behind is closed. Before, the client got a
/// new session and `recovered: false`, as from the reference server (which takes back only a
/// session it knows is gone).
#[test]
fn a_polling_client_back_before_herald_noticed_it_left_takes_its_session_over() {
    let srv = start_server_with(|c| c.workers = 1);
    let addr = srv.public_addr;
    let (sid, connected, from) = polling_subscribed(addr, "t1");
    let pid = connected["pid"].as_str().expect("a pid").to_owned();
    // Cut between two GETs: herald holds nothing of the client's and has noticed nothing.
    push_at(srv.control_addr, "t1", 1);
    assert_eq!(metric(&srv, "herald_socketio_sessions"), 1.0);
    assert_eq!(metric(&srv, "herald_sessions_parked_total"), 0.0);

    let mut ws = sio_return(addr, &pid, &from);
    assert_eq!(sio_notification(&sio_next(&mut ws)).0, 1);
    let again = connect_reply(&sio_next(&mut ws));
    assert_eq!(again["sid"], connected["sid"], "the same socket");
    assert_eq!(metric(&srv, "herald_sessions_recovered_total"), 1.0);
    // The session left behind is gone, and with it its room: the next push comes once.
    eventually("the session left behind closed", || {
        metric(&srv, "herald_socketio_sessions") == 1.0
    });
    push_at(srv.control_addr, "t1", 2);
    assert_eq!(sio_notification(&sio_next(&mut ws)).0, 2);
    let (_, presence) = get(&srv, "/v1/users/t1");
    assert!(presence.contains("\"sockets\":1"), "one socket: {presence}");
    // Its old Engine.IO id is unknown now.
    let (status, _, _) = raw_http(
        addr,
        format!("GET /socket.io/?EIO=4&transport=polling{sid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(status, 400);
}

/// A Socket.IO client over WebSocket comes back (its old WebSocket half-open, as a network
/// change leaves it) on whichever worker: the Engine.IO session left behind is closed by its own
/// worker at once, not at its ping timeout (45 s here), and the user counts one socket.
#[test]
fn the_session_left_behind_by_a_takeover_is_closed_whichever_worker_holds_it() {
    let srv = start_server_with(|c| c.workers = 2);
    let addr = srv.public_addr;
    // Six returns: each pair of sessions lands on two workers or one, by the accept's turn.
    let mut back = Vec::new();
    for i in 0..6 {
        let user = format!("w{i}");
        let (mut old, sid, pid, from) = sio_subscribed(addr, &user);
        let mut new = sio_return(addr, &pid, &from);
        let again = connect_reply(&sio_next(&mut new));
        assert_eq!(again["sid"], sid.as_str(), "round {i}");
        // The old WebSocket is closed by herald: a close frame, then the end.
        loop {
            match old.read() {
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        eventually("the session left behind closed", || {
            metric(&srv, "herald_socketio_sessions") == (i + 1) as f64
        });
        let (_, presence) = get(&srv, &format!("/v1/users/{user}"));
        assert!(presence.contains("\"sockets\":1"), "round {i}: {presence}");
        push_at(srv.control_addr, &user, 1);
        assert_eq!(sio_notification(&sio_next(&mut new)).0, 1, "round {i}");
        back.push(new);
    }
}

#[test]
fn a_socketio_client_that_disconnects_itself_is_not_kept() {
    let srv = start_server();
    let (mut ws, connected) = sio_connect(srv.public_addr, json!({}));
    let sid = connected["sid"].as_str().unwrap().to_owned();
    let pid = connected["pid"].as_str().unwrap().to_owned();
    ws.send(Message::Text(r#"42["subscribe","d1"]"#.into()))
        .unwrap();
    sio_next(&mut ws);
    // socket.disconnect(): DISCONNECT, then the transport closes.
    ws.send(Message::Text("41".into())).unwrap();
    let _ = ws.close(None);
    drop(ws);
    std::thread::sleep(Duration::from_millis(100));
    let (_ws, again) = sio_connect(srv.public_addr, json!({"pid": pid}));
    assert_ne!(again["sid"], sid.as_str(), "a new session");
}

#[test]
fn a_pid_never_authenticates_and_another_users_pid_leaks_nothing() {
    let srv = start_server_with(|c| c.jwt_secret = Some(SECRET.into()));
    let control = srv.control_addr;
    let (mut ws, connected) = sio_connect(srv.public_addr, json!({"token": token("alice")}));
    let sid = connected["sid"].as_str().unwrap().to_owned();
    let pid = connected["pid"].as_str().unwrap().to_owned();
    ws.send(Message::Text(r#"42["subscribe","alice"]"#.into()))
        .unwrap();
    let v: Value = serde_json::from_str(&sio_next(&mut ws)[2..]).unwrap();
    let from = v[2].as_str().unwrap().to_owned();
    drop(ws);
    eventually("the session kept", || {
        metric(&srv, "herald_sessions_parked_total") >= 1.0
    });
    push_at(control, "alice", 1);

    // Mallory has alice's pid and offset, and her own valid token: a new session, nothing of
    // alice's.
    let auth = json!({"token": token("mallory"), "pid": pid, "offset": from});
    let (mut m, got) = sio_connect(srv.public_addr, auth);
    assert_ne!(got["sid"], sid.as_str());
    m.send(Message::Text(r#"42["subscribe","mallory"]"#.into()))
        .unwrap();
    assert!(sio_next(&mut m).starts_with(r#"42["subscribed""#));
    // Without any token: refused outright.
    let mut anon = sio_websocket(srv.public_addr);
    anon.send(Message::Text(format!(
        "40{}",
        json!({"pid": pid, "offset": from})
    )))
    .unwrap();
    assert!(recv_text(&mut anon).starts_with("44"), "CONNECT refused");
    push_at(control, "alice", 2);
    push_at(control, "mallory", 99);
    let p = sio_next(&mut m);
    assert_eq!(sio_notification(&p).0, 99, "nothing of alice's came: {p}");

    // Alice, with her token, still takes her session back.
    let auth = json!({"token": token("alice"), "pid": pid, "offset": from});
    let mut a = sio_websocket(srv.public_addr);
    a.send(Message::Text(format!("40{auth}"))).unwrap();
    assert_eq!(sio_notification(&sio_next(&mut a)).0, 1);
    assert_eq!(sio_notification(&sio_next(&mut a)).0, 2);
    assert_eq!(connect_reply(&sio_next(&mut a))["sid"], sid.as_str());
}

/// Reads raw frames until a close frame; returns its code.
fn close_code(ws: &mut Client) -> u16 {
    expect_close_code(ws)
}

#[test]
fn sigterm_drains_with_1012_and_a_restart_with_state_keeps_every_offset() {
    let dir = std::env::temp_dir().join(format!("herald-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_str().unwrap().to_owned();
    let args = ["--state-dir", &dir_arg, "--drain-time", "200ms"];
    let mut h = spawn_herald(&args);
    let mut ws = connect_path(h.public_addr, "/ws");
    subscribe_with(&mut ws, json!("r1"));
    push_at(h.control_addr, "r1", 1);
    let (_, seen) = next_n(&mut ws);
    // After the offset the client will resume from: it is owed these after the restart.
    push_at(h.control_addr, "r1", 2);
    broadcast_at(h.control_addr, 3);
    let pid = h.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    // Frames already sent are read first; then the close.
    let mut tail = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => tail.push(t),
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1012, "service restart");
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    }
    assert_eq!(tail.len(), 2, "{tail:?}");
    let _ = h.child.wait();
    assert!(dir.join("log.bin").exists(), "the log was saved");

    let h2 = spawn_herald(&args);
    let mut ws = connect_path(h2.public_addr, "/ws");
    let data = subscribe_with(&mut ws, json!({"userId": "r1", "offset": seen}));
    assert_eq!(
        data["recovered"], true,
        "same epoch after the restart: {data}"
    );
    assert_eq!(next_n(&mut ws).0, 2);
    assert_eq!(next_n(&mut ws).0, 3);
    let answer = push_at(h2.control_addr, "r1", 4);
    let (n, offset) = next_n(&mut ws);
    assert_eq!(n, 4);
    assert_eq!(answer["offset"].as_str(), Some(offset.as_str()));
    assert!(!dir.join("log.bin").exists(), "taken at start");
    drop(h2);
    let _ = std::fs::remove_dir_all(&dir);

    // Without --state-dir the epoch changes: the old offset is not honoured.
    let mut h3 = spawn_herald(&["--drain-time", "0s"]);
    let mut ws = connect_path(h3.public_addr, "/ws");
    subscribe_with(&mut ws, json!("r1"));
    let (_, seen) = {
        push_at(h3.control_addr, "r1", 1);
        next_n(&mut ws)
    };
    h3.terminate();
    assert_eq!(close_code(&mut ws), 1012);
    let h4 = spawn_herald(&["--drain-time", "0s"]);
    let mut ws = connect_path(h4.public_addr, "/ws");
    let data = subscribe_with(&mut ws, json!({"userId": "r1", "offset": seen}));
    assert_eq!(data["recovered"], false, "{data}");
}
