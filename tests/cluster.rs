//! A cluster of herald processes on a real `redis-server`: pushes across nodes for raw and
//! Socket.IO clients, devices of one user spread over nodes, routing only to the nodes holding a
//! user (their received-bytes counters), presence counted over the cluster and forgotten when a
//! node dies, a client recovering on another node, Redis killed and restarted, Redis paused while
//! a push waits on it, a node whose expiry passed a moment ago, broadcasts reaching a node while
//! a join waits on Redis, a node cut off from Redis catching up, and a pub/sub connection that
//! silently stops delivering.
//!
//! Each test starts its own `redis-server` (Debian's package, which `.ci/test` installs) on a
//! free port, and its own nodes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::Message;

use common::*;

/// A `redis-server` of the test's own, without persistence; killed when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        Redis::on(free_port())
    }

    fn on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian's redis-server package; .ci/test installs it)");
        let r = Redis { child, port };
        eventually("redis-server answers", || r.ping());
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Runs one command and returns its answer as Redis wrote it (RESP), up to 4 KiB.
    fn command(&self, args: &[&str]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req += &format!("${}\r\n{a}\r\n", a.len());
        }
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Sends it `signal` (`STOP` pauses it, as a stalled host would; `CONT` resumes it).
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal}");
    }

    /// Kills it at once, as a crash would.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node of the cluster on `url`, with a short node TTL so that a dead node stops counting
/// within the test.
fn node(url: &str) -> Herald {
    node_with(url, &[])
}

fn node_with(url: &str, extra: &[&str]) -> Herald {
    let mut args = vec!["--redis", url, "--workers", "2"];
    if !extra.contains(&"--redis-node-ttl") {
        args.extend(["--redis-node-ttl", "1s"]);
    }
    // Tests push faster than a person is notified: no per-user rate unless a test sets one.
    if !extra.contains(&"--user-rate") {
        args.extend(["--user-rate", "0"]);
    }
    args.extend_from_slice(extra);
    let h = spawn_herald(&args);
    eventually("the node joined the cluster", || ready(&h));
    h
}

fn ready(h: &Herald) -> bool {
    http(h.control_addr, "GET", "/readyz", None).0 == 200
}

fn push_at(h: &Herald, user: &str, n: u64) -> Value {
    let body = json!({"type": "TEST", "n": n}).to_string();
    let path = format!("/v1/users/{user}/notifications");
    let (status, _, answer) = http(h.control_addr, "POST", &path, Some(&body));
    assert_eq!(status, 202, "{answer}");
    serde_json::from_str(&answer).expect("a JSON answer")
}

fn raw_client(h: &Herald, data: Value) -> (Client, Value) {
    // A client resuming with an offset says so: its broadcasts wait for its subscribe, however
    // late this thread, on a loaded machine, sends it.
    let path = match data.get("offset") {
        Some(_) => "/ws?resume=1",
        None => "/ws",
    };
    let mut ws = connect_path(h.public_addr, path);
    send_json(&mut ws, json!({"event": "subscribe", "data": data}));
    let reply = recv_json(&mut ws);
    assert_eq!(reply["event"], "subscribed", "{reply}");
    (ws, reply["data"].clone())
}

/// The next notification's `n` and offset.
fn next_n(ws: &mut Client) -> (u64, String) {
    let v = recv_json(ws);
    assert_eq!(v["event"], "notification", "{v}");
    (
        v["data"]["n"].as_u64().expect("n"),
        v["offset"].as_str().expect("an offset").to_owned(),
    )
}

/// A Socket.IO client over WebSocket, connected and subscribed to `user`.
fn sio_client(h: &Herald, user: &str) -> Client {
    sio_session(h, user).0
}

/// [`sio_client`], with its CONNECT reply (`{"sid","pid"}`).
fn sio_session(h: &Herald, user: &str) -> (Client, Value) {
    let mut ws = sio_websocket(h.public_addr);
    ws.send(Message::Text("40".into())).unwrap();
    let connected: Value = serde_json::from_str(&sio_next(&mut ws)[2..]).unwrap();
    ws.send(Message::Text(format!(r#"42["subscribe","{user}"]"#)))
        .unwrap();
    let (name, _) = sio_event(&sio_next(&mut ws));
    assert_eq!(name, "subscribed");
    (ws, connected)
}

/// A Socket.IO client over WebSocket whose CONNECT carries `auth` (a `pid` and offset to take
/// a session back with); the answer is for the caller to read.
fn sio_resume(h: &Herald, auth: &Value) -> Client {
    let mut ws = sio_websocket(h.public_addr);
    ws.send(Message::Text(format!("40{auth}"))).unwrap();
    ws
}

fn sio_n(ws: &mut Client) -> (u64, String) {
    let packet = sio_next(ws);
    let v: Value = serde_json::from_str(packet.strip_prefix("42").expect("an event")).unwrap();
    assert_eq!(v[0], "notification", "{packet}");
    (
        v[1]["n"].as_u64().unwrap(),
        v[2].as_str().expect("the offset, last").to_owned(),
    )
}

fn user_info(h: &Herald, user: &str) -> Value {
    let (status, _, body) = http(h.control_addr, "GET", &format!("/v1/users/{user}"), None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn a_push_on_any_node_reaches_every_device_on_every_node() {
    let redis = Redis::start();
    let url = redis.url();
    let nodes: Vec<Herald> = (0..3).map(|_| node(&url)).collect();
    // One user's devices on all three nodes, in both protocols.
    let (mut a, _) = raw_client(&nodes[0], json!("ann"));
    let (mut b, _) = raw_client(&nodes[1], json!("ann"));
    let mut c = sio_client(&nodes[2], "ann");
    let (mut bob, _) = raw_client(&nodes[2], json!("bob"));
    for (i, n) in nodes.iter().enumerate() {
        let answer = push_at(n, "ann", i as u64 + 1);
        assert_eq!(answer["cluster"], "ok", "{answer}");
        assert_eq!(answer["nodes"], 3, "{answer}");
        let offset = answer["offset"].as_str().unwrap();
        assert_eq!(next_n(&mut a), (i as u64 + 1, offset.to_owned()));
        assert_eq!(next_n(&mut b), (i as u64 + 1, offset.to_owned()));
        assert_eq!(sio_n(&mut c), (i as u64 + 1, offset.to_owned()));
    }
    // A push to several users and a broadcast, each once per socket.
    let body = json!({"userIds": ["ann", "bob", "nobody"], "notification": {"n": 10}});
    let (status, _, answer) = http(
        nodes[1].control_addr,
        "POST",
        "/v1/notifications",
        Some(&body.to_string()),
    );
    assert_eq!(status, 202, "{answer}");
    let body = json!({"notification": {"n": 11}});
    let (status, _, answer) = http(
        nodes[0].control_addr,
        "POST",
        "/v1/broadcast",
        Some(&body.to_string()),
    );
    assert_eq!(status, 202, "{answer}");
    for ws in [&mut a, &mut b, &mut bob] {
        assert_eq!(next_n(ws).0, 10);
        assert_eq!(next_n(ws).0, 11);
    }
    assert_eq!(sio_n(&mut c).0, 10);
    assert_eq!(sio_n(&mut c).0, 11);
}

#[test]
fn a_push_is_read_only_by_the_nodes_holding_its_user() {
    let redis = Redis::start();
    let url = redis.url();
    let nodes: Vec<Herald> = (0..3).map(|_| node(&url)).collect();
    let (mut ws, _) = raw_client(&nodes[0], json!("solo"));
    let bytes = |h: &Herald| metric_at(h.control_addr, "herald_redis_push_bytes_received_total");
    let before: Vec<f64> = nodes.iter().map(bytes).collect();
    for i in 0..50 {
        let answer = push_at(&nodes[i % 3], "solo", i as u64);
        assert_eq!(answer["nodes"], 1, "{answer}");
        assert_eq!(next_n(&mut ws).0, i as u64);
    }
    // A user with no socket anywhere is routed nowhere.
    assert_eq!(push_at(&nodes[1], "nobody", 0)["nodes"], 0);
    let after: Vec<f64> = nodes.iter().map(bytes).collect();
    assert!(
        after[0] > before[0],
        "the holder read them: {before:?} {after:?}"
    );
    assert_eq!(after[1], before[1], "node 1 read nothing");
    assert_eq!(after[2], before[2], "node 2 read nothing");
    // Once its last socket leaves, the node is no longer routed to.
    drop(ws);
    eventually("the node's entry removed", || {
        push_at(&nodes[2], "solo", 99)["nodes"] == 0
    });
}

#[test]
fn presence_counts_every_node_and_a_dead_node_stops_counting() {
    let redis = Redis::start();
    let url = redis.url();
    let n0 = node(&url);
    let mut n1 = node(&url);
    let n2 = node(&url);
    let (_a, _) = raw_client(&n0, json!("pat"));
    let (_b, _) = raw_client(&n0, json!("pat"));
    let (_c, _) = raw_client(&n1, json!("pat"));
    eventually("both nodes counted", || {
        let v = user_info(&n2, "pat");
        v["sockets"] == 3 && v["nodes"] == 2
    });
    let v = user_info(&n2, "pat");
    assert_eq!(v["online"], true, "{v}");
    assert_eq!(v["cluster"], "ok", "{v}");
    assert_eq!(user_info(&n2, "nobody")["sockets"], 0);
    // Each node lists its own sockets only.
    assert!(v.get("devices").is_none(), "{v}");
    let here = user_info(&n0, "pat");
    assert_eq!(here["sockets"], 3, "{here}");
    assert_eq!(here["devices"].as_array().map(Vec::len), Some(2), "{here}");
    // A node killed with -9 says nothing: its expiry (1 s here) ends its count.
    let _ = n1.child.kill();
    let _ = n1.child.wait();
    eventually("the dead node forgotten", || {
        let v = user_info(&n2, "pat");
        v["nodes"] == 1 && v["sockets"] == 2
    });
    // And pushes are no longer routed to it.
    assert_eq!(push_at(&n2, "pat", 1)["nodes"], 1);
}

#[test]
fn a_users_push_rate_holds_across_nodes() {
    let redis = Redis::start();
    let url = redis.url();
    let limited = ["--user-rate", "1", "--user-burst", "3"];
    let n0 = node_with(&url, &limited);
    let n1 = node_with(&url, &limited);
    let (_ws, _) = raw_client(&n0, json!("lim"));
    let body = json!({"n": 0}).to_string();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let h = if i % 2 == 0 { &n0 } else { &n1 };
        let (status, head, answer) = http(
            h.control_addr,
            "POST",
            "/v1/users/lim/notifications",
            Some(&body),
        );
        if status == 429 {
            assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
            assert!(answer.contains("rate limited"), "{answer}");
        }
        statuses.push(status);
    }
    // One bucket for the user, whichever node is asked: the burst of 3, then refusals.
    assert_eq!(statuses, [202, 202, 202, 429, 429, 429]);
    // A user with no socket anywhere spends nothing.
    for _ in 0..5 {
        push_at(&n1, "nobody", 0);
    }
}

#[test]
fn a_client_recovers_on_another_node() {
    let redis = Redis::start();
    let url = redis.url();
    let n0 = node(&url);
    let mut n1 = node(&url);
    let n2 = node(&url);
    // Subscribed before the cluster's first push: its offset counts from the log's start.
    let (early, first) = raw_client(&n2, json!("early"));
    drop(early);
    push_at(&n0, "early", 7);
    let (mut ws, data) = raw_client(&n1, json!({"userId": "early", "offset": first["offset"]}));
    assert_eq!(data["recovered"], true, "{data}");
    assert_eq!(next_n(&mut ws).0, 7);

    let (mut ws, _) = raw_client(&n1, json!("rio"));
    push_at(&n0, "rio", 1);
    let (_, seen) = next_n(&mut ws);
    // Its node dies; pushes go on meanwhile, from any node.
    let _ = n1.child.kill();
    let _ = n1.child.wait();
    push_at(&n0, "rio", 2);
    push_at(&n2, "rio", 3);
    let (mut ws, data) = raw_client(&n2, json!({"userId": "rio", "offset": seen}));
    assert_eq!(data["recovered"], true, "{data}");
    assert_eq!(next_n(&mut ws).0, 2);
    assert_eq!(next_n(&mut ws).0, 3);
    let answer = push_at(&n0, "rio", 4);
    assert_eq!(
        next_n(&mut ws),
        (4, answer["offset"].as_str().unwrap().to_owned())
    );
    // An offset from before the window, or never given, is refused as on one node.
    let forged = format!("{}-1", seen.split('-').next().unwrap());
    let (_ws, data) = raw_client(&n0, json!({"userId": "rio", "offset": forged}));
    assert_eq!(data["recovered"], false, "{data}");
}

#[test]
fn a_socketio_session_is_taken_back_on_another_node() {
    let redis = Redis::start();
    let url = redis.url();
    let n0 = node(&url);
    let n1 = node(&url);
    let (mut ws, connected) = sio_session(&n0, "sam");
    let (sid, pid) = (connected["sid"].clone(), connected["pid"].clone());
    let (_, seen) = {
        push_at(&n1, "sam", 1);
        sio_n(&mut ws)
    };
    drop(ws);
    eventually("the session kept", || {
        metric_at(n0.control_addr, "herald_sessions_parked_total") >= 1.0
    });
    push_at(&n1, "sam", 2);
    push_at(&n0, "sam", 3);
    // Back on the other node with its pid and last offset: same ids, what it missed first.
    let auth = json!({"pid": pid, "offset": seen});
    let mut ws = sio_resume(&n1, &auth);
    assert_eq!(sio_n(&mut ws).0, 2);
    assert_eq!(sio_n(&mut ws).0, 3);
    let again: Value = serde_json::from_str(&sio_next(&mut ws)[2..]).unwrap();
    assert_eq!((&again["sid"], &again["pid"]), (&sid, &pid), "{again}");
    // Its room came back with it.
    push_at(&n0, "sam", 4);
    assert_eq!(sio_n(&mut ws).0, 4);
    // Taken once: the same pid again, on the first node, is a new session.
    let mut ws2 = sio_resume(&n0, &auth);
    let other: Value = serde_json::from_str(&sio_next(&mut ws2)[2..]).unwrap();
    assert_ne!(other["sid"], sid, "{other}");
}

#[test]
fn a_socketio_session_outlives_its_node_killed_with_9() {
    let redis = Redis::start();
    let url = redis.url();
    let mut n0 = node(&url);
    let n1 = node(&url);
    let (mut ws, connected) = sio_session(&n0, "kay");
    let (sid, pid) = (connected["sid"].clone(), connected["pid"].clone());
    push_at(&n1, "kay", 1);
    let (_, seen) = sio_n(&mut ws);
    // The node dies without a word: nothing is parked, but the session was kept in Redis while
    // it was connected.
    let _ = n0.child.kill();
    let _ = n0.child.wait();
    push_at(&n1, "kay", 2);
    let auth = json!({"pid": pid, "offset": seen});
    let mut ws = sio_resume(&n1, &auth);
    assert_eq!(sio_n(&mut ws).0, 2);
    let again: Value = serde_json::from_str(&sio_next(&mut ws)[2..]).unwrap();
    assert_eq!((&again["sid"], &again["pid"]), (&sid, &pid), "{again}");
    push_at(&n1, "kay", 3);
    assert_eq!(sio_n(&mut ws).0, 3);
}

#[test]
fn a_socketio_client_that_disconnects_itself_is_not_taken_back_anywhere() {
    let redis = Redis::start();
    let url = redis.url();
    let n0 = node(&url);
    let n1 = node(&url);
    let (mut ws, connected) = sio_session(&n0, "dee");
    // The client's own disconnect (DISCONNECT, then close) ends the session for good.
    ws.send(Message::Text("41".into())).unwrap();
    eventually("the session gone", || user_info(&n1, "dee")["sockets"] == 0);
    let mut ws = sio_resume(&n1, &json!({"pid": connected["pid"]}));
    let other: Value = serde_json::from_str(&sio_next(&mut ws)[2..]).unwrap();
    assert_ne!(other["sid"], connected["sid"], "{other}");
}

#[test]
fn a_polling_request_for_a_session_on_another_node_is_told_the_sid_is_unknown() {
    let redis = Redis::start();
    let url = redis.url();
    let n0 = node(&url);
    let n1 = node(&url);
    let (status, _, body) = http(
        n0.public_addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let open: Value = serde_json::from_str(body.trim_start_matches('0')).unwrap();
    let sid = open["sid"].as_str().unwrap();
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let (status, _, body) = http(n1.public_addr, "GET", &path, None);
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"code": 1, "message": "Session ID unknown"})
    );
    // On its own node it is served.
    assert_eq!(http(n0.public_addr, "POST", &path, Some("40")).0, 200);
}

#[test]
fn the_seam_between_replay_and_live_pushes_holds_across_nodes() {
    seam_across_nodes(false);
}

/// The same with every other push a broadcast: one that reaches the node between the join's
/// answer from Redis and its placing is replayed to a recovering socket (its broadcasts held
/// until then are let go), not taken as handed.
#[test]
fn the_seam_holds_across_nodes_with_broadcasts_among_the_pushes() {
    seam_across_nodes(true);
}

/// A raw client of user `seam` leaves and comes back with its offset, twenty times, on either
/// node, while pushes numbered 1, 2, 3... go out (every other one a broadcast when
/// `broadcasts`): it gets each once, in order.
fn seam_across_nodes(broadcasts: bool) {
    let redis = Redis::start();
    let url = redis.url();
    // Hundreds of connections a second from loopback.
    let n0 = node_with(&url, &["--connection-rate-per-ip", "0"]);
    let n1 = node_with(&url, &["--connection-rate-per-ip", "0"]);
    let stop = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(Mutex::new(0u64));
    let pusher = {
        let (stop, pushed) = (stop.clone(), pushed.clone());
        let control = n0.control_addr;
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let (path, body) = if broadcasts && n % 2 == 0 {
                    ("/v1/broadcast", json!({"notification": {"n": n}}))
                } else {
                    ("/v1/users/seam/notifications", json!({"n": n}))
                };
                let (status, _, answer) = http(control, "POST", path, Some(&body.to_string()));
                assert_eq!(status, 202, "{answer}");
                *pushed.lock().unwrap() = n;
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };
    let (mut ws, _) = raw_client(&n1, json!("seam"));
    let (mut last, mut offset) = next_n(&mut ws);
    // More rounds with broadcasts: one must land in the moment between a join's answer from
    // Redis and its placing.
    let rounds = if broadcasts { 400 } else { 20 };
    for round in 0..rounds {
        // Away for a moment, back on either node with the last offset: the sequence goes on
        // with no gap and no repeat.
        drop(ws);
        std::thread::sleep(Duration::from_millis(5));
        let h = if round % 2 == 0 { &n0 } else { &n1 };
        let (w, data) = raw_client(h, json!({"userId": "seam", "offset": offset}));
        assert_eq!(data["recovered"], true, "{data}");
        ws = w;
        for _ in 0..5 {
            let (n, o) = next_n(&mut ws);
            assert_eq!(n, last + 1, "round {round}");
            (last, offset) = (n, o);
        }
    }
    stop.store(true, Ordering::SeqCst);
    pusher.join().unwrap();
    let total = *pushed.lock().unwrap();
    while last < total {
        let (n, _) = next_n(&mut ws);
        assert_eq!(n, last + 1);
        last = n;
    }
}

#[test]
fn redis_killed_and_restarted_degrades_then_serves_the_cluster_again() {
    let mut redis = Redis::start();
    let url = redis.url();
    let n0 = node(&url);
    let n1 = node(&url);
    let (mut ann, _) = raw_client(&n0, json!("ann"));
    let (mut bob, _) = raw_client(&n1, json!("bob"));
    push_at(&n1, "ann", 1);
    let (_, seen) = next_n(&mut ann);

    redis.kill();
    eventually("not ready without Redis", || !ready(&n0));
    assert_eq!(metric_at(n0.control_addr, "herald_redis_up"), 0.0);
    // Each node still serves its own sockets, and says so.
    let answer = push_at(&n0, "ann", 2);
    assert_eq!(answer["cluster"], "degraded", "{answer}");
    assert_eq!(answer["sockets"], 1, "{answer}");
    let v = recv_json(&mut ann);
    assert_eq!(v["data"]["n"], 2, "{v}");
    assert_eq!(push_at(&n0, "bob", 3)["sockets"], 0);
    let (status, _, body) = http(n1.control_addr, "GET", "/v1/users/bob", None);
    assert_eq!(status, 200);
    assert!(body.contains(r#""cluster":"degraded""#), "{body}");
    // A client subscribing meanwhile is placed by its node alone, and entered in Redis later.
    let (mut cy, data) = raw_client(&n0, json!("cy"));
    assert_eq!(data["userId"], "cy", "{data}");

    // Back, empty: the log's epoch is new, and pushes made before a node entered its users
    // again did not reach it. Every client is told: closed with 1012, it reconnects, and its
    // offset from before is of another epoch (`recovered: false`).
    let _redis = Redis::on(redis.port);
    eventually("ready again", || ready(&n0) && ready(&n1));
    assert_eq!(metric_at(n1.control_addr, "herald_redis_up"), 1.0);
    for ws in [&mut ann, &mut bob, &mut cy] {
        assert_eq!(expect_close_code(ws), 1012);
    }
    let (mut ann, data) = raw_client(&n1, json!({"userId": "ann", "offset": seen}));
    assert_eq!(data["recovered"], false, "{data}");
    let (mut bob, _) = raw_client(&n0, json!("bob"));
    let (mut cy, _) = raw_client(&n0, json!("cy"));
    // The nodes serve each other again.
    let answer = push_at(&n0, "ann", 4);
    assert_eq!(answer["cluster"], "ok", "{answer}");
    assert_eq!(next_n(&mut ann).0, 4);
    push_at(&n1, "bob", 5);
    assert_eq!(next_n(&mut bob).0, 5);
    push_at(&n1, "cy", 6);
    assert_eq!(next_n(&mut cy).0, 6);
}

#[test]
fn a_push_redis_runs_after_its_node_gave_up_waiting_is_not_delivered_twice() {
    let redis = Redis::start();
    let url = redis.url();
    let n0 = node(&url);
    let n1 = node(&url);
    let (mut here, _) = raw_client(&n0, json!("ann"));
    let (mut there, _) = raw_client(&n1, json!("ann"));
    push_at(&n1, "ann", 1);
    let (_, seen) = next_n(&mut here);
    assert_eq!(next_n(&mut there).0, 1);

    // Paused, Redis keeps what node 0 sends it and runs it when it resumes; node 0 gives up
    // waiting for the answer and serves its own sockets alone.
    redis.signal("STOP");
    let answer = push_at(&n0, "ann", 2);
    assert_eq!(answer["cluster"], "degraded", "{answer}");
    assert_eq!(answer["sockets"], 1, "{answer}");
    let v = recv_json(&mut here);
    assert_eq!(v["data"]["n"], 2, "{v}");
    assert!(v.get("offset").is_none(), "{v}");
    redis.signal("CONT");
    eventually("ready again", || ready(&n0) && ready(&n1));

    // The push Redis ran late was refused by its script: neither node's sockets get it now,
    // nor does a return from before it.
    assert_eq!(push_at(&n1, "ann", 3)["cluster"], "ok");
    assert_eq!(next_n(&mut here).0, 3, "the degraded push came again");
    assert_eq!(
        next_n(&mut there).0,
        3,
        "the degraded push reached another node"
    );
    let (mut back, data) = raw_client(&n1, json!({"userId": "ann", "offset": seen}));
    assert_eq!(data["recovered"], true, "{data}");
    assert_eq!(next_n(&mut back).0, 3, "the degraded push was replayed");
}

#[test]
fn a_node_whose_expiry_passed_a_moment_ago_is_still_routed_its_users_pushes() {
    let redis = Redis::start();
    let url = redis.url();
    // Heartbeats 12 s apart: the one that would renew the expiry set below does not come
    // within the test.
    let n0 = node_with(&url, &["--redis-node-ttl", "60s"]);
    let n1 = node(&url);
    let (mut ws, _) = raw_client(&n0, json!("eve"));
    push_at(&n1, "eve", 1);
    assert_eq!(next_n(&mut ws).0, 1);

    // Its expiry passed 2 s ago, as when Redis stalled past it or the node's heartbeat is late;
    // its pub/sub connection still delivers.
    let entry = redis.command(&["HKEYS", "herald:u:eve"]);
    let node0 = entry
        .lines()
        .nth(2)
        .expect("node 0 entered for eve")
        .to_owned();
    let time = redis.command(&["TIME"]);
    let secs: u64 = time.lines().nth(2).unwrap().parse().unwrap();
    let expired = (secs * 1000 - 2000).to_string();
    assert_eq!(
        redis.command(&["ZADD", "herald:nodes", &expired, &node0]),
        ":0\r\n"
    );
    let answer = push_at(&n1, "eve", 2);
    assert_eq!(answer["nodes"], 1, "{answer}");
    assert_eq!(next_n(&mut ws).0, 2);
    // Its entry was kept: the next push reaches it too.
    push_at(&n1, "eve", 3);
    assert_eq!(next_n(&mut ws).0, 3);
}

/// After Redis stalled for more than a minute, the first heartbeat it runs forgets every node
/// (none renewed its expiry meanwhile). A node whose pub/sub connection lived through the stall
/// keeps getting its users' pushes: its channel's reader is proof it lives. A node that is gone
/// (no reader) and unheard of for over a minute past its expiry has its entries removed.
#[test]
fn a_forgotten_node_with_a_reader_is_still_routed_and_a_dead_one_is_removed() {
    let redis = Redis::start();
    let url = redis.url();
    let n0 = node_with(&url, &["--redis-node-ttl", "60s"]);
    let n1 = node(&url);
    let mut n2 = node(&url);
    let (mut ws, _) = raw_client(&n0, json!("eve"));
    let (_gone, _) = raw_client(&n2, json!("dan"));
    push_at(&n1, "eve", 1);
    assert_eq!(next_n(&mut ws).0, 1);
    let entered = |user: &str| -> Vec<String> {
        let hkeys = redis.command(&["HKEYS", &format!("herald:u:{user}")]);
        // A RESP array of bulk strings: every other line after the count is a node.
        hkeys
            .lines()
            .skip(2)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let [node0] = &entered("eve")[..] else {
        panic!("node 0 alone entered for eve: {:?}", entered("eve"))
    };
    let [node2] = &entered("dan")[..] else {
        panic!("node 2 alone entered for dan: {:?}", entered("dan"))
    };

    // Node 0 forgotten, as the first heartbeat after a long stall leaves it; its pub/sub
    // connection still delivers.
    assert_eq!(redis.command(&["ZREM", "herald:nodes", node0]), ":1\r\n");
    let answer = push_at(&n1, "eve", 2);
    assert_eq!(answer["nodes"], 1, "{answer}");
    assert_eq!(next_n(&mut ws).0, 2);
    assert_eq!(entered("eve"), [node0.as_str()], "its entry was kept");

    // Node 2 killed: no reader on its channel. Within a minute of its expiry its entry stays
    // (its heartbeat may only be late); once forgotten, the next push removes it.
    let _ = n2.child.kill();
    let _ = n2.child.wait();
    let channel = format!("herald:node:{node2}");
    eventually("Redis to see node 2's pub/sub connection closed", || {
        redis
            .command(&["PUBSUB", "NUMSUB", &channel])
            .ends_with(":0\r\n")
    });
    let answer = push_at(&n1, "dan", 3);
    assert_eq!(answer["nodes"], 0, "{answer}");
    assert_eq!(entered("dan"), [node2.as_str()]);
    assert_eq!(redis.command(&["ZREM", "herald:nodes", node2]), ":1\r\n");
    let answer = push_at(&n1, "dan", 4);
    assert_eq!(answer["nodes"], 0, "{answer}");
    assert!(entered("dan").is_empty(), "{:?}", entered("dan"));
}

/// A TCP proxy in front of Redis that the test can cut (every connection closed, new ones
/// refused), wedge (what Redis sends on pub/sub connections is dropped, silently) or hold up
/// (what Redis answers on the other connections is kept back until let go).
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    wedge: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let wedge = Arc::new(AtomicBool::new(false));
        let hold = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (c, w, h, k) = (cut.clone(), wedge.clone(), hold.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let pubsub = Arc::new(AtomicBool::new(false));
                {
                    let mut k = k.lock().unwrap();
                    k.push(client.try_clone().unwrap());
                    k.push(server.try_clone().unwrap());
                }
                let (mut cr, mut sw) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let p = pubsub.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = cr.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if buf[..n]
                            .windows(9)
                            .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"))
                        {
                            p.store(true, Ordering::SeqCst);
                        }
                        if sw.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown(std::net::Shutdown::Both);
                });
                let (mut sr, mut cw) = (server, client);
                let (w, h) = (w.clone(), h.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    let mut held = Vec::new();
                    // Wakes now and then to let go of what it held.
                    let _ = sr.set_read_timeout(Some(Duration::from_millis(20)));
                    loop {
                        let n = match sr.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) =>
                            {
                                0
                            }
                            Err(_) => break,
                        };
                        let pubsub = pubsub.load(Ordering::SeqCst);
                        if w.load(Ordering::SeqCst) && pubsub {
                            continue;
                        }
                        held.extend_from_slice(&buf[..n]);
                        if h.load(Ordering::SeqCst) && !pubsub {
                            continue;
                        }
                        if !held.is_empty() && cw.write_all(&held).is_err() {
                            break;
                        }
                        held.clear();
                    }
                    let _ = cw.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Proxy {
            addr,
            cut,
            wedge,
            hold,
            conns,
        }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn cut(&self, on: bool) {
        self.cut.store(on, Ordering::SeqCst);
        if on {
            for s in self.conns.lock().unwrap().drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

#[test]
fn a_node_cut_off_from_redis_catches_up_on_what_others_pushed_meanwhile() {
    let redis = Redis::start();
    let proxy = Proxy::start(redis.port);
    let n0 = node(&proxy.url());
    let n1 = node(&redis.url());
    let (mut ws, _) = raw_client(&n0, json!("cat"));
    push_at(&n1, "cat", 1);
    assert_eq!(next_n(&mut ws).0, 1);
    proxy.cut(true);
    eventually("the cut node is not ready", || !ready(&n0));
    // Pushed while node 0 is away: logged in the stream, and its entry still routes them
    // there (it has not expired yet), where nobody reads them.
    for n in 2..=4 {
        assert_eq!(push_at(&n1, "cat", n)["cluster"], "ok");
    }
    std::thread::sleep(Duration::from_millis(300));
    proxy.cut(false);
    eventually("the node is back", || ready(&n0));
    for n in 2..=4 {
        assert_eq!(next_n(&mut ws).0, n, "caught up from the stream, in order");
    }
    assert!(metric_at(n0.control_addr, "herald_redis_caught_up_total") >= 3.0);
    push_at(&n1, "cat", 5);
    assert_eq!(next_n(&mut ws).0, 5);
}

#[test]
fn broadcasts_that_reach_a_node_while_a_join_waits_on_redis_come_once() {
    let redis = Redis::start();
    let proxy = Proxy::start(redis.port);
    let n0 = node(&proxy.url());
    let n1 = node(&redis.url());
    let mut ws = connect_path(n0.public_addr, "/ws");
    // Node 0's join runs in Redis, but its answer is held up: the node's pub/sub connection
    // brings the broadcasts made after it before the node has placed the join, and the socket,
    // not subscribed yet, holds them. Its offset is of another epoch: not recovered, so the
    // socket lets go of what it held when answered.
    proxy.hold.store(true, Ordering::SeqCst);
    send_json(
        &mut ws,
        json!({"event": "subscribe", "data": {"userId": "ivy", "offset": "ffff-1"}}),
    );
    std::thread::sleep(Duration::from_millis(300));
    for n in 1..=3 {
        let body = json!({"notification": {"type": "ALL", "n": n}}).to_string();
        let (status, _, answer) = http(n1.control_addr, "POST", "/v1/broadcast", Some(&body));
        assert_eq!(status, 202, "{answer}");
    }
    eventually("node 0 read the broadcasts", || {
        metric_at(n0.control_addr, "herald_redis_pushes_received_total") >= 3.0
    });
    proxy.hold.store(false, Ordering::SeqCst);
    let reply = recv_json(&mut ws);
    assert_eq!(reply["event"], "subscribed", "{reply}");
    assert_eq!(reply["data"]["recovered"], false, "{reply}");
    push_at(&n1, "ivy", 4);
    let got: Vec<u64> = (0..4).map(|_| next_n(&mut ws).0).collect();
    assert_eq!(
        got,
        [1, 2, 3, 4],
        "each broadcast once, then the user's push"
    );
}

#[test]
fn a_pubsub_connection_that_stops_delivering_is_rebuilt_and_nothing_is_lost() {
    let redis = Redis::start();
    let proxy = Proxy::start(redis.port);
    let n0 = node(&proxy.url());
    let n1 = node(&redis.url());
    let (mut ws, _) = raw_client(&n0, json!("wed"));
    push_at(&n1, "wed", 1);
    assert_eq!(next_n(&mut ws).0, 1);
    // Commands still work, pub/sub delivers nothing: the failover wedge.
    proxy.wedge.store(true, Ordering::SeqCst);
    let started = Instant::now();
    push_at(&n1, "wed", 2);
    eventually("the wedge detected", || {
        metric_at(n0.control_addr, "herald_redis_pubsub_rebuilt_total") >= 1.0
    });
    proxy.wedge.store(false, Ordering::SeqCst);
    assert_eq!(next_n(&mut ws).0, 2, "after {:?}", started.elapsed());
    push_at(&n1, "wed", 3);
    assert_eq!(next_n(&mut ws).0, 3);
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs (Debian's openssl package; .ci/test installs it)");
    assert!(status.success(), "openssl {args:?}");
}

#[test]
fn nodes_reach_redis_over_tls() {
    let dir = std::env::temp_dir().join(format!("herald-redis-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=herald test CA",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "redis.key",
            "-out",
            "redis.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "redis.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "redis.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
    let port = free_port();
    let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--tls-cert-file",
            &file("redis.crt"),
            "--tls-key-file",
            &file("redis.key"),
        ])
        .args([
            "--tls-ca-cert-file",
            &file("ca.crt"),
            "--tls-auth-clients",
            "no",
        ])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server runs");
    let url = format!("rediss://localhost:{port}");
    let ca = file("ca.crt");
    let n0 = node_with(&url, &["--redis-ca", &ca]);
    let n1 = node_with(&url, &["--redis-ca", &ca]);
    let (mut ws, _) = raw_client(&n0, json!("tls"));
    assert_eq!(push_at(&n1, "tls", 1)["cluster"], "ok");
    assert_eq!(next_n(&mut ws).0, 1);
    // Without the CA the certificate is not trusted: the node stays apart, and says so.
    let lone = spawn_herald(&["--redis", &url, "--redis-node-ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!ready(&lone));
    assert_eq!(metric_at(lone.control_addr, "herald_redis_up"), 0.0);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn redis_without_recovery_is_refused_at_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
        .args(["--redis", "redis://127.0.0.1:1", "--recovery", "false"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--recovery"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
        .args(["--redis", "http://nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--redis"));
}
