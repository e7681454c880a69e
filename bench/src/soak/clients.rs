//! The soak's clients: each a device of one user that connects, subscribes, stays, drops in one
//! of four ways, stays away and comes back asking for what it missed, for the whole run.
//!
//! A thread owns a mio `Poll`, its clients and a `Slab` of their connections (one at a time per
//! client). Four kinds: raw JSON, raw MessagePack with permessage-deflate (both at `/ws`),
//! Socket.IO over a WebSocket, Socket.IO over HTTP long-polling (one keep-alive connection, one
//! request at a time: the open GET, the CONNECT POST, then GETs held until herald has packets,
//! with a POST between two GETs when the client has something to say).
//!
//! What each client received, and how its returns were answered, goes into its
//! [`History`](super::ledger::History) for the ledger to judge; the thread judges nothing.
//! A return is a raw subscribe with the last offset the client holds, or a Socket.IO CONNECT
//! with the session's `pid` and that offset, as socket.io-client sends it.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};
use slab::Slab;

use herald::ws::frame::{encode_masked, opcode};

use super::ledger::{Chain, History};
use super::pushers::Live;
use super::record::Offset;
use super::Span;
use crate::proto::{self, FrameReader, Inflater, Message, Offer};
use crate::sys::{self, Rng};

/// The phases of a run, as the main thread sets them.
pub const RAMP: u8 = 0;
pub const CHURN: u8 = 1;
pub const SETTLE: u8 = 2;
pub const STOP: u8 = 3;

/// How often a thread looks at its clients' timers.
const SCAN: Duration = Duration::from_millis(50);
const READ_CHUNK: usize = 64 * 1024;
/// The largest server message a client keeps.
const MAX_MESSAGE: usize = 1 << 20;
/// How long a clean close waits for the server's side of it.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// After herald closed or lost a connection, the client is back within this.
const RECONNECT_AFTER_CLOSE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RawJson,
    RawMsgpack,
    SocketioWs,
    SocketioPolling,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::RawJson,
        Kind::RawMsgpack,
        Kind::SocketioWs,
        Kind::SocketioPolling,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::RawJson => "raw-json",
            Kind::RawMsgpack => "raw-msgpack",
            Kind::SocketioWs => "socketio-ws",
            Kind::SocketioPolling => "socketio-polling",
        }
    }

    fn socketio(self) -> bool {
        matches!(self, Kind::SocketioWs | Kind::SocketioPolling)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropMode {
    Clean,
    Reset,
    Vanish,
    Midframe,
}

impl DropMode {
    pub const ALL: [DropMode; 4] = [
        DropMode::Clean,
        DropMode::Reset,
        DropMode::Vanish,
        DropMode::Midframe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropMode::Clean => "clean",
            DropMode::Reset => "reset",
            DropMode::Vanish => "vanish",
            DropMode::Midframe => "midframe",
        }
    }
}

/// One herald node as the clients reach it.
#[derive(Debug, Clone)]
pub struct Node {
    pub addr: SocketAddr,
    pub host: String,
}

/// What one client thread runs.
pub struct Plan {
    pub thread: usize,
    /// `(client index, kind)` of this thread's clients; client `i` is user `i % users`.
    pub clients: Vec<(u32, Kind)>,
    pub users: u32,
    pub user_prefix: String,
    pub nodes: Vec<Node>,
    pub ws_path: String,
    pub socketio_path: String,
    pub source_ips: Vec<Ipv4Addr>,
    pub concurrency: usize,
    pub connect_timeout: Duration,
    pub stay: Span,
    pub away: Span,
    /// Cumulative weights of the drop modes, in [`DropMode::ALL`]'s order.
    pub drops: [f64; 4],
    pub reap_after: Duration,
    pub recovery_window: Duration,
    pub max_backoff: Duration,
    pub seed: u64,
}

/// Counts a thread hands back besides the histories.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub connects: u64,
    /// Connections that reached their subscription, by kind (in [`Kind::ALL`]'s order).
    pub sessions: [u64; 4],
    /// Drops made, by mode (in [`DropMode::ALL`]'s order).
    pub drops: [u64; 4],
    /// Connections herald ended (close frame or packet, EOF, reset), and why.
    pub ended_by_server: std::collections::BTreeMap<String, u64>,
    /// Connection attempts that failed before the subscription was answered, and why.
    pub failed: std::collections::BTreeMap<String, u64>,
    /// `error` events herald sent.
    pub errors: std::collections::BTreeMap<String, u64>,
    pub pings: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.connects += o.connects;
        for i in 0..4 {
            self.sessions[i] += o.sessions[i];
            self.drops[i] += o.drops[i];
        }
        for (k, v) in &o.ended_by_server {
            *self.ended_by_server.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.failed {
            *self.failed.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.pings += o.pings;
    }
}

pub struct ThreadReport {
    pub histories: Vec<History>,
    pub stats: Stats,
}

/// Where a client is.
enum Place {
    /// Not connected; (re)connects at `at`.
    Away { at: Instant },
    /// A connection in the slab.
    Live(usize),
}

struct Client {
    index: u32,
    user: u32,
    kind: Kind,
    place: Place,
    /// The next node to try.
    node: usize,
    backoff: Duration,
    /// When its last connection ended; `None` before its first subscription.
    away_since: Option<Instant>,
    /// Socket.IO: the session id and private id herald gave, kept across returns.
    sid: Option<String>,
    pid: Option<String>,
    /// When the current connection drops (set once subscribed).
    drop_at: Option<Instant>,
    history: History,
    /// Notifications that came before the subscription's answer began a chain.
    early: Vec<(Option<Offset>, u64)>,
    /// How its last connection ended: a drop mode, or what herald did.
    left_by: String,
}

impl Client {
    /// A recovered return: what came before herald's answer belongs to the chain that goes on.
    fn absorb_early(&mut self) {
        for (o, seq) in std::mem::take(&mut self.early) {
            match (o, self.history.chains.last_mut()) {
                (Some(o), Some(chain)) if o.epoch == chain.start.epoch => {
                    chain.received.push((o.n, seq));
                }
                (Some(o), Some(chain)) => chain.foreign.push((o, seq)),
                _ => self.history.unlogged.push(seq),
            }
        }
    }

    /// Notes where a recovered return begins in the current chain (for the examples).
    fn mark_resume(&mut self) {
        let from = self.resume_offset();
        if let Some(chain) = self.history.chains.last_mut() {
            let n = from
                .and_then(|o| Offset::parse(&o))
                .map_or(chain.start.n, |o| o.n);
            chain.resumes.push((chain.received.len(), n));
        }
    }

    /// The offset to resume from: the last one received in the current chain, or its start.
    fn resume_offset(&self) -> Option<String> {
        let chain = self.history.chains.last()?;
        let n = chain
            .received
            .iter()
            .map(|&(n, _)| n)
            .max()
            .unwrap_or(chain.start.n)
            .max(chain.start.n);
        Some(format!("{:x}-{n}", chain.start.epoch))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Connecting,
    /// WebSocket: the upgrade request sent.
    Upgrading,
    /// Socket.IO: waiting for the Engine.IO open packet.
    WaitOpen,
    /// Socket.IO: CONNECT sent, waiting for its answer.
    WaitConnect,
    /// The subscription sent, waiting for `subscribed`.
    Subscribing,
    Ready,
    /// A clean close under way: waiting for the server's end.
    Closing,
}

/// A polling request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Req {
    Get,
    Post,
}

struct Conn {
    client: usize,
    stream: TcpStream,
    step: Step,
    /// Setup (or a clean close) must be done by then.
    deadline: Instant,
    key: String,
    pending: Vec<u8>,
    out: Vec<u8>,
    reader: FrameReader,
    deflate: bool,
    msgpack: bool,
    /// This connection is a return: the answer to its subscription says whether it recovered.
    returning: bool,
    /// Socket.IO: the CONNECT answer gave another session id than the one asked back.
    fresh_session: bool,
    /// Polling: the Engine.IO session of this connection, the request in flight, the packets
    /// waiting to be posted.
    engine_sid: String,
    inflight: Option<Req>,
    queue: Vec<String>,
    /// When it was opened, and when it last brought bytes: what the examples say of a client
    /// that lost notifications.
    opened: Instant,
    last_read: Instant,
}

/// What a message asks of its connection.
enum Next {
    Go,
    End(String),
}

struct Thread<'a> {
    plan: &'a Plan,
    live: &'a Live,
    poll: Poll,
    conns: Slab<Conn>,
    clients: Vec<Client>,
    rng: Rng,
    inflater: Inflater,
    stats: Stats,
    /// Connections between connect and subscription.
    in_setup: usize,
    /// Vanished connections' sockets, held silent (whether or not their clients came back)
    /// until --reap-after past their drop, oldest first: herald must notice them by itself.
    vanished: std::collections::VecDeque<(Instant, TcpStream)>,
}

pub fn run(plan: Plan, phase: Arc<AtomicU8>, live: Arc<Live>) -> io::Result<ThreadReport> {
    let now = Instant::now();
    let clients = plan
        .clients
        .iter()
        .map(|&(index, kind)| Client {
            index,
            user: index % plan.users.max(1),
            kind,
            place: Place::Away { at: now },
            node: index as usize % plan.nodes.len().max(1),
            backoff: Duration::from_millis(100),
            away_since: None,
            sid: None,
            pid: None,
            drop_at: None,
            history: History {
                client: index,
                user: index % plan.users.max(1),
                kind: kind.name(),
                ..History::default()
            },
            early: Vec::new(),
            left_by: String::new(),
        })
        .collect();
    let mut t = Thread {
        plan: &plan,
        live: &live,
        poll: Poll::new()?,
        conns: Slab::new(),
        clients,
        rng: Rng::with_seed(plan.seed ^ (plan.thread as u64 + 1).wrapping_mul(0x9E37_79B9)),
        inflater: Inflater::new(),
        stats: Stats::default(),
        in_setup: 0,
        vanished: Default::default(),
    };
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut next_scan = Instant::now();
    loop {
        let p = phase.load(Ordering::Relaxed);
        if p == STOP {
            break;
        }
        let timeout = next_scan.saturating_duration_since(Instant::now());
        if let Err(e) = t.poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        for ev in events.iter() {
            let key = ev.token().0;
            if !t.conns.contains(key) {
                continue;
            }
            let outcome = t.on_event(key, &mut buf);
            if let Err(why) = outcome {
                t.end(key, why);
            }
        }
        let now = Instant::now();
        if now >= next_scan {
            t.scan(now, p);
            next_scan = now + SCAN;
        }
    }
    Ok(t.finish())
}

impl Thread<'_> {
    fn user_id(&self, user: u32) -> String {
        format!("{}{user}", self.plan.user_prefix)
    }

    fn span(&mut self, s: Span) -> Duration {
        let range = s.max.saturating_sub(s.min).as_nanos() as u64;
        let extra = if range == 0 {
            0
        } else {
            self.rng.below(range + 1)
        };
        s.min + Duration::from_nanos(extra)
    }

    fn pick_drop(&mut self) -> DropMode {
        let total = self.plan.drops[3];
        let x = (self.rng.below(1 << 53) as f64 / (1u64 << 53) as f64) * total;
        DropMode::ALL
            .into_iter()
            .zip(self.plan.drops)
            .find(|&(_, upto)| x < upto)
            .map_or(DropMode::Clean, |(m, _)| m)
    }

    /// Timers: connections to open, setups past their deadline, drops due, returns due.
    fn scan(&mut self, now: Instant, phase: u8) {
        while self.vanished.front().is_some_and(|&(at, _)| at <= now) {
            self.vanished.pop_front();
        }
        for c in 0..self.clients.len() {
            match self.clients[c].place {
                Place::Away { at } if at <= now => {
                    if self.in_setup >= self.plan.concurrency {
                        continue;
                    }
                    self.open(c, now);
                }
                Place::Away { .. } => {}
                Place::Live(key) => {
                    let conn = &self.conns[key];
                    let ready = conn.step == Step::Ready;
                    if !ready && conn.deadline <= now {
                        let why = if conn.step == Step::Closing {
                            "closed".to_string()
                        } else {
                            format!("timeout in {:?}", conn.step)
                        };
                        self.end(key, why);
                    } else if ready
                        && phase == CHURN
                        && self.clients[c].drop_at.is_some_and(|d| d <= now)
                    {
                        let mode = self.pick_drop();
                        self.drop_conn(key, mode, now);
                    }
                }
            }
        }
    }

    /// Opens client `c`'s next connection.
    fn open(&mut self, c: usize, now: Instant) {
        let plan = self.plan;
        let client = &mut self.clients[c];
        let node = &plan.nodes[client.node % plan.nodes.len()];
        let source = (!plan.source_ips.is_empty())
            .then(|| plan.source_ips[client.index as usize % plan.source_ips.len()]);
        self.stats.connects += 1;
        let stream = match sys::connect(source, node.addr) {
            Ok(s) => s,
            Err(e) => {
                *self
                    .stats
                    .failed
                    .entry(format!("connect: {e}"))
                    .or_default() += 1;
                self.retry_later(c, now);
                return;
            }
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let mut stream = stream;
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            *self
                .stats
                .failed
                .entry(format!("register: {e}"))
                .or_default() += 1;
            self.retry_later(c, now);
            return;
        }
        let mut raw = [0u8; 16];
        for chunk in raw.chunks_mut(8) {
            chunk.copy_from_slice(&self.rng.next_u64().to_le_bytes()[..chunk.len()]);
        }
        let returning = client.away_since.is_some();
        entry.insert(Conn {
            client: c,
            stream,
            step: Step::Connecting,
            deadline: now + plan.connect_timeout,
            key: BASE64.encode(raw),
            pending: Vec::new(),
            out: Vec::new(),
            reader: FrameReader::new(false),
            deflate: false,
            msgpack: false,
            returning,
            fresh_session: false,
            engine_sid: String::new(),
            inflight: None,
            queue: Vec::new(),
            opened: now,
            last_read: now,
        });
        client.place = Place::Live(key);
        self.in_setup += 1;
    }

    /// A failed attempt: try the next node after the backoff.
    fn retry_later(&mut self, c: usize, now: Instant) {
        let max = self.plan.max_backoff;
        let client = &mut self.clients[c];
        let wait = client.backoff;
        client.backoff = (client.backoff * 2).min(max);
        client.node += 1;
        let jitter = Duration::from_nanos(self.rng.below(wait.as_nanos() as u64 / 2 + 1));
        client.place = Place::Away {
            at: now + wait / 2 + jitter,
        };
    }

    fn on_event(&mut self, key: usize, buf: &mut [u8]) -> Result<(), String> {
        if self.conns[key].step == Step::Connecting {
            let conn = &mut self.conns[key];
            if let Ok(Some(e)) | Err(e) = conn.stream.take_error() {
                return Err(format!("connect: {e}"));
            }
            match conn.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(format!("connect: {e}")),
            }
            self.connected(key);
        }
        // Read until the socket has nothing more.
        loop {
            let conn = &mut self.conns[key];
            match conn.stream.read(buf) {
                Ok(0) => {
                    self.process(key)?;
                    return Err(if self.conns[key].step == Step::Closing {
                        "closed".into()
                    } else {
                        "eof".into()
                    });
                }
                Ok(n) => {
                    conn.last_read = Instant::now();
                    // Read on even after a short read: a FIN that came with the last bytes
                    // raises no new edge, and would be missed until the socket is written to.
                    conn.pending.extend_from_slice(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(match e.kind() {
                        io::ErrorKind::ConnectionReset => "reset".into(),
                        _ => format!("read: {e}"),
                    })
                }
            }
        }
        self.process(key)?;
        self.flush(key)
    }

    /// The TCP connection is up: send the first request.
    fn connected(&mut self, key: usize) {
        let plan = self.plan;
        let conn = &mut self.conns[key];
        let client = &self.clients[conn.client];
        let host = &plan.nodes[client.node % plan.nodes.len()].host;
        match client.kind {
            Kind::RawJson | Kind::RawMsgpack | Kind::SocketioWs => {
                let offer = Offer {
                    deflate: client.kind == Kind::RawMsgpack,
                    msgpack: client.kind == Kind::RawMsgpack,
                };
                let path = if client.kind.socketio() {
                    format!("{}?EIO=4&transport=websocket", plan.socketio_path)
                } else if conn.returning && client.resume_offset().is_some() {
                    // It will subscribe with an offset: herald holds its broadcasts until then,
                    // however slow this thread is to send the subscribe.
                    format!("{}?resume=1", plan.ws_path)
                } else {
                    plan.ws_path.clone()
                };
                conn.out
                    .extend(proto::handshake_request(host, &path, &conn.key, offer));
                conn.step = Step::Upgrading;
            }
            Kind::SocketioPolling => {
                let _ = write!(
                    conn.out,
                    "GET {}?EIO=4&transport=polling HTTP/1.1\r\nHost: {host}\r\n\r\n",
                    plan.socketio_path
                );
                conn.inflight = Some(Req::Get);
                conn.step = Step::WaitOpen;
            }
        }
    }

    fn flush(&mut self, key: usize) -> Result<(), String> {
        let conn = &mut self.conns[key];
        while !conn.out.is_empty() {
            match conn.stream.write(&conn.out) {
                Ok(0) => return Err("write: zero".into()),
                Ok(n) => {
                    conn.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        Ok(())
    }

    /// Handles whatever whole units (a response head, frames, HTTP responses) have arrived.
    fn process(&mut self, key: usize) -> Result<(), String> {
        let kind = self.clients[self.conns[key].client].kind;
        if kind == Kind::SocketioPolling {
            return self.process_polling(key);
        }
        if self.conns[key].step == Step::Upgrading {
            let conn = &mut self.conns[key];
            let offer = Offer {
                deflate: kind == Kind::RawMsgpack,
                msgpack: kind == Kind::RawMsgpack,
            };
            let Some(up) = proto::parse_upgrade_response(&conn.pending, &conn.key, offer)
                .map_err(|f| f.to_string())?
            else {
                return Ok(());
            };
            conn.pending.drain(..up.head_len);
            conn.deflate = up.deflate;
            conn.msgpack = up.msgpack;
            conn.reader = FrameReader::new(up.deflate);
            if kind.socketio() {
                conn.step = Step::WaitOpen;
            } else {
                self.send_subscribe(key);
            }
        }
        // Frames: take the buffer out so that messages can be handled with `self` borrowed.
        let mut pending = std::mem::take(&mut self.conns[key].pending);
        let mut reader = std::mem::take(&mut self.conns[key].reader);
        let mut messages: Vec<(Vec<u8>, bool)> = Vec::new();
        let mut pings: Vec<Vec<u8>> = Vec::new();
        let mut closed = false;
        let inflater = &mut self.inflater;
        let used = reader
            .decode(&pending, MAX_MESSAGE, |m| {
                match m {
                    Message::Data {
                        payload,
                        binary,
                        compressed,
                    } => {
                        let body = if compressed {
                            inflater.inflate(payload, MAX_MESSAGE)?.to_vec()
                        } else {
                            payload.to_vec()
                        };
                        messages.push((body, binary));
                    }
                    Message::Ping(p) => pings.push(p.to_vec()),
                    Message::Close => closed = true,
                }
                Ok(())
            })
            .map_err(|f| f.to_string());
        let used = match used {
            Ok(n) => n,
            Err(e) => {
                self.conns[key].reader = reader;
                return Err(e);
            }
        };
        pending.drain(..used);
        self.conns[key].pending = pending;
        self.conns[key].reader = reader;
        for p in pings {
            let mask = self.mask();
            self.conns[key]
                .out
                .extend(encode_masked(true, opcode::PONG, 0, &p, mask));
        }
        for (body, binary) in messages {
            let next = if kind.socketio() {
                self.socketio_packet(key, &body)
            } else {
                let value = if binary {
                    rmp_serde::from_slice::<Value>(&body).map_err(|e| e.to_string())
                } else {
                    serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string())
                };
                match value {
                    Ok(v) => self.raw_message(key, &v),
                    Err(e) => Next::End(format!("bad message: {e}")),
                }
            };
            if let Next::End(why) = next {
                return Err(why);
            }
        }
        if closed {
            let step = self.conns[key].step;
            return Err(if step == Step::Closing {
                "closed".into()
            } else {
                "close frame".into()
            });
        }
        Ok(())
    }

    fn mask(&mut self) -> [u8; 4] {
        (self.rng.next_u64() as u32).to_le_bytes()
    }

    /// Sends a text (or, for MessagePack, binary) message on a WebSocket, or queues a packet
    /// on a polling connection.
    fn send(&mut self, key: usize, text: &str) {
        let kind = self.clients[self.conns[key].client].kind;
        if kind == Kind::SocketioPolling {
            self.conns[key].queue.push(text.to_string());
            return;
        }
        let mask = self.mask();
        self.conns[key]
            .out
            .extend(encode_masked(true, opcode::TEXT, 0, text.as_bytes(), mask));
    }

    /// The raw subscription, with the offset to resume from on a return.
    fn send_subscribe(&mut self, key: usize) {
        let conn = &self.conns[key];
        let client = &self.clients[conn.client];
        let user = self.user_id(client.user);
        if client.kind.socketio() {
            let msg = format!("42{}", json!(["subscribe", user]));
            self.conns[key].step = Step::Subscribing;
            self.send(key, &msg);
            return;
        }
        let mut data = json!({ "userIds": [user] });
        if conn.returning {
            if let Some(o) = client.resume_offset() {
                data["offset"] = json!(o);
            }
        }
        let msg = json!({ "event": "subscribe", "data": data });
        let msgpack = conn.msgpack;
        self.conns[key].step = Step::Subscribing;
        if msgpack {
            let bytes = rmp_serde::to_vec_named(&msg).unwrap_or_default();
            let mask = self.mask();
            self.conns[key]
                .out
                .extend(encode_masked(true, opcode::BINARY, 0, &bytes, mask));
        } else {
            self.send(key, &msg.to_string());
        }
    }

    /// One raw-protocol message.
    fn raw_message(&mut self, key: usize, v: &Value) -> Next {
        match v.get("event").and_then(Value::as_str) {
            Some("subscribed") => {
                let data = &v["data"];
                let offset = data.get("offset").and_then(Value::as_str);
                let recovered = data.get("recovered").and_then(Value::as_bool);
                self.subscribed(key, offset, recovered)
            }
            Some("notification") => {
                let offset = v.get("offset").and_then(Value::as_str);
                let seq = v["data"]["data"]["seq"].as_u64();
                self.notification(key, offset, seq);
                Next::Go
            }
            Some("error") => {
                let msg = v["data"]["message"].as_str().unwrap_or("?").to_string();
                *self.stats.errors.entry(msg.clone()).or_default() += 1;
                if self.conns[key].step == Step::Subscribing {
                    Next::End(format!("subscription refused: {msg}"))
                } else {
                    Next::Go
                }
            }
            _ => Next::Go,
        }
    }

    /// One Engine.IO packet (a WebSocket message or one packet of a polling body).
    fn socketio_packet(&mut self, key: usize, p: &[u8]) -> Next {
        match p {
            b"2" => {
                self.stats.pings += 1;
                self.send(key, "3");
                Next::Go
            }
            b"6" => Next::Go,
            [b'1', ..] => Next::End("engine.io close".into()),
            [b'0', rest @ ..] => {
                let v: Value = serde_json::from_slice(rest).unwrap_or(Value::Null);
                let sid = v["sid"].as_str().unwrap_or("").to_string();
                self.conns[key].engine_sid = sid;
                let client = &self.clients[self.conns[key].client];
                let auth = match (&client.pid, client.resume_offset()) {
                    (Some(pid), Some(offset)) if self.conns[key].returning => {
                        format!("40{}", json!({ "pid": pid, "offset": offset }))
                    }
                    _ => "40".to_string(),
                };
                self.conns[key].step = Step::WaitConnect;
                self.send(key, &auth);
                Next::Go
            }
            [b'4', b'0', rest @ ..] => {
                let v: Value = serde_json::from_slice(rest).unwrap_or(Value::Null);
                let sid = v["sid"].as_str().map(str::to_string);
                let pid = v["pid"].as_str().map(str::to_string);
                let c = self.conns[key].client;
                let returning = self.conns[key].returning;
                let same = returning && sid.is_some() && sid == self.clients[c].sid;
                if pid.is_some() {
                    self.clients[c].pid = pid;
                }
                self.clients[c].sid = sid;
                if same {
                    // The session was taken back: subscriptions and what was missed with it.
                    // As from the reference server, what was missed may come before this
                    // answer (socket.io-client buffers it until connected): it belongs to the
                    // chain that goes on.
                    let client = &mut self.clients[c];
                    client.history.returns.recovered += 1;
                    client.mark_resume();
                    client.absorb_early();
                    self.ready(key);
                } else {
                    self.conns[key].fresh_session = returning;
                    self.send_subscribe(key);
                }
                Next::Go
            }
            [b'4', b'1', ..] => Next::End("socket.io disconnect".into()),
            [b'4', b'4', ..] => Next::End("socket.io connect refused".into()),
            [b'4', b'2', rest @ ..] => {
                let Ok(Value::Array(args)) = serde_json::from_slice::<Value>(rest) else {
                    return Next::Go;
                };
                let name = args.first().and_then(Value::as_str).unwrap_or("");
                // herald sends the offset as the last argument, as socket.io-client reads it.
                let last = args.last().and_then(Value::as_str);
                match name {
                    "subscribed" => {
                        let offset = args
                            .get(1)
                            .and_then(|d| d.get("offset"))
                            .and_then(Value::as_str)
                            .or(last);
                        let fresh = self.conns[key].fresh_session;
                        self.subscribed(key, offset, fresh.then_some(false))
                    }
                    "notification" => {
                        let seq = args.get(1).and_then(|d| d["data"]["seq"].as_u64());
                        let offset = if args.len() > 2 { last } else { None };
                        self.notification(key, offset, seq);
                        Next::Go
                    }
                    "error" => {
                        let msg = args
                            .get(1)
                            .and_then(|d| d["message"].as_str())
                            .unwrap_or("?")
                            .to_string();
                        *self.stats.errors.entry(msg.clone()).or_default() += 1;
                        if self.conns[key].step == Step::Subscribing {
                            Next::End(format!("subscription refused: {msg}"))
                        } else {
                            Next::Go
                        }
                    }
                    _ => Next::Go,
                }
            }
            _ => Next::Go,
        }
    }

    /// The subscription's answer: a new chain, or the current one going on.
    fn subscribed(&mut self, key: usize, offset: Option<&str>, recovered: Option<bool>) -> Next {
        if self.conns[key].step != Step::Subscribing {
            return Next::Go;
        }
        let Some(start) = offset.and_then(Offset::parse) else {
            return Next::End("subscribed without an offset".into());
        };
        let now = Instant::now();
        let window = self.plan.recovery_window;
        let c = self.conns[key].client;
        let client = &mut self.clients[c];
        match recovered {
            Some(true) if !client.history.chains.is_empty() => {
                client.history.returns.recovered += 1;
                client.mark_resume();
                client.absorb_early();
            }
            _ => {
                if let Some(prev) = client.history.chains.last() {
                    let r = &mut client.history.returns;
                    if prev.start.epoch != start.epoch {
                        r.new_epoch += 1;
                    } else if client
                        .away_since
                        .is_some_and(|t| now.duration_since(t) > window)
                    {
                        r.late += 1;
                    } else {
                        r.refused += 1;
                        let away = client.away_since.map(|t| now.duration_since(t));
                        if client.history.notes.len() < 3 {
                            client.history.notes.push(format!(
                                "return refused after {away:?} away (left by {})",
                                client.left_by
                            ));
                        }
                    }
                }
                client.history.chains.push(Chain::new(start));
                // What came before the answer: kept for the duplicate check, in the chain
                // when it is after its start.
                for (o, seq) in std::mem::take(&mut client.early) {
                    let chain = client.history.chains.last_mut().expect("just pushed");
                    match o {
                        Some(o) if o.epoch == start.epoch && o.n > start.n => {
                            chain.received.push((o.n, seq));
                        }
                        _ => client.history.unlogged.push(seq),
                    }
                }
            }
        }
        self.ready(key);
        Next::Go
    }

    /// Subscribed: deliveries count, the drop is scheduled.
    fn ready(&mut self, key: usize) {
        let stay = self.plan.stay;
        let drop_in = (stay.max > Duration::ZERO).then(|| self.span(stay));
        let conn = &mut self.conns[key];
        conn.step = Step::Ready;
        self.in_setup = self.in_setup.saturating_sub(1);
        let client = &mut self.clients[conn.client];
        client.backoff = Duration::from_millis(100);
        client.drop_at = drop_in.map(|d| Instant::now() + d);
        let k = Kind::ALL
            .iter()
            .position(|&k| k == client.kind)
            .unwrap_or(0);
        self.stats.sessions[k] += 1;
        self.live.clients_connected.fetch_add(1, Ordering::Relaxed);
    }

    fn notification(&mut self, key: usize, offset: Option<&str>, seq: Option<u64>) {
        let Some(seq) = seq else { return };
        self.live.deliveries.fetch_add(1, Ordering::Relaxed);
        let step = self.conns[key].step;
        let client = &mut self.clients[self.conns[key].client];
        let offset = offset.and_then(Offset::parse);
        // A clean drop under way: the client let go of the connection when it sent its close,
        // as a browser's WebSocket drops what arrives once closing and engine.io-client stops
        // listening to a transport it closed. What herald sent before reading the close is
        // not handled, nor kept as the offset to resume from: the return gets it again.
        if step == Step::Closing {
            return;
        }
        if step != Step::Ready {
            client.early.push((offset, seq));
            return;
        }
        let Some(o) = offset else {
            client.history.unlogged.push(seq);
            return;
        };
        let Some(chain) = client.history.chains.last_mut() else {
            client.history.unlogged.push(seq);
            return;
        };
        if o.epoch == chain.start.epoch {
            chain.received.push((o.n, seq));
            return;
        }
        let seen = client
            .history
            .chains
            .iter()
            .any(|c| c.start.epoch == o.epoch);
        let chain = client.history.chains.last_mut().expect("checked above");
        if seen {
            // An epoch it had left: never expected.
            chain.foreign.push((o, seq));
            return;
        }
        // The log's epoch changed under a connected client (a cluster's Redis came back
        // empty): from the new epoch's first push on, everything for it is owed.
        chain.open = false;
        client.history.returns.epoch_changed += 1;
        let mut next = Chain::new(Offset {
            epoch: o.epoch,
            n: 0,
        });
        next.received.push((o.n, seq));
        client.history.chains.push(next);
    }

    /// Ends a connection that failed or that herald ended.
    fn end(&mut self, key: usize, why: String) {
        let now = Instant::now();
        let conn = self.conns.remove(key);
        let mut stream = conn.stream;
        let _ = self.poll.registry().deregister(&mut stream);
        let c = conn.client;
        match conn.step {
            Step::Ready => {
                self.live.clients_connected.fetch_sub(1, Ordering::Relaxed);
            }
            Step::Closing => {}
            _ => self.in_setup = self.in_setup.saturating_sub(1),
        }
        match conn.step {
            Step::Ready => {
                let client = &mut self.clients[c];
                client.left_by = format!("herald: {why}");
                *self.stats.ended_by_server.entry(why).or_default() += 1;
                client.away_since = Some(now);
                let wait = Duration::from_nanos(
                    self.rng.below(RECONNECT_AFTER_CLOSE.as_nanos() as u64 + 1),
                );
                client.place = Place::Away { at: now + wait };
            }
            Step::Closing => {
                // Our own clean close, finished: back at the time the drop chose.
                let client = &mut self.clients[c];
                let at = client.drop_at.take().unwrap_or(now).max(now);
                client.place = Place::Away { at };
            }
            _ => {
                *self
                    .stats
                    .failed
                    .entry(format!("{why} ({})", self.clients[c].kind.name()))
                    .or_default() += 1;
                // A replay that came before an answer that never did is asked for again, from
                // the same offset, by the next attempt.
                self.clients[c].early.clear();
                self.retry_later(c, now);
            }
        }
    }

    /// The client drops its connection in the way asked.
    fn drop_conn(&mut self, key: usize, mode: DropMode, now: Instant) {
        // Polling: what has arrived is read first, so that a GET herald has just answered is
        // not taken for one it still holds (see `unnoticed` below).
        if self.clients[self.conns[key].client].kind == Kind::SocketioPolling {
            let mut buf = vec![0u8; READ_CHUNK];
            if let Err(why) = self.on_event(key, &mut buf) {
                self.end(key, why);
                return;
            }
        }
        let m = DropMode::ALL.iter().position(|&m| m == mode).unwrap_or(0);
        self.stats.drops[m] += 1;
        self.live.clients_connected.fetch_sub(1, Ordering::Relaxed);
        let c = self.conns[key].client;
        let kind = self.clients[c].kind;
        // Back whenever it likes, as a real client is: herald learns that a vanished client
        // left, or a polling one cut between two GETs, only at the ping timeout, and one back
        // sooner takes its still-open session over (a raw one resumes from its offset).
        let away = self.span(self.plan.away);
        {
            let client = &mut self.clients[c];
            client.away_since = Some(now);
            client.drop_at = None;
            client.left_by = mode.name().to_string();
        }
        match mode {
            DropMode::Clean => {
                match kind {
                    // A page going away closes its connections: the GET's with a FIN. (An
                    // Engine.IO close `1` is a client leaving for good, not to come back.)
                    Kind::SocketioPolling => {}
                    _ => {
                        let mask = self.mask();
                        self.conns[key].out.extend(encode_masked(
                            true,
                            opcode::CLOSE,
                            0,
                            &1000u16.to_be_bytes(),
                            mask,
                        ));
                    }
                }
                let _ = self.flush(key);
                let conn = &mut self.conns[key];
                let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                conn.step = Step::Closing;
                conn.deadline = now + CLOSE_WAIT;
                self.clients[c].place = Place::Live(key);
                // The return: after the away time, once the close has finished (`end`).
                self.clients[c].drop_at = Some(now + away);
            }
            DropMode::Reset | DropMode::Midframe | DropMode::Vanish => {
                let mut conn = self.conns.remove(key);
                let _ = self.poll.registry().deregister(&mut conn.stream);
                if mode == DropMode::Midframe {
                    // A frame (or request) that announces more than it sends.
                    let partial: Vec<u8> = if kind == Kind::SocketioPolling {
                        format!(
                            "POST {}?EIO=4&transport=polling&sid={} HTTP/1.1\r\nHost: x\r\n\
                             Content-Length: 100\r\n\r\n42[\"subsc",
                            self.plan.socketio_path, conn.engine_sid
                        )
                        .into_bytes()
                    } else {
                        let mut f = encode_masked(true, opcode::TEXT, 0, &[b'x'; 100], self.mask());
                        f.truncate(20);
                        f
                    };
                    let _ = conn.stream.write(&partial);
                }
                if mode == DropMode::Vanish {
                    let at = now + self.plan.reap_after;
                    self.vanished.push_back((at, conn.stream));
                } else {
                    let _ = sys::reset_on_close(conn.stream.as_raw_fd());
                    drop(conn.stream);
                }
                self.clients[c].place = Place::Away { at: now + away };
            }
        }
    }

    fn finish(mut self) -> ThreadReport {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        let mut histories = Vec::with_capacity(self.clients.len());
        for key in keys {
            let conn = &self.conns[key];
            if conn.step == Step::Ready {
                if let Some(chain) = self.clients[conn.client].history.chains.last_mut() {
                    chain.open = true;
                }
            }
        }
        let now = Instant::now();
        for client in &mut self.clients {
            let open = matches!(client.place, Place::Live(k) if self.conns[k].step == Step::Ready);
            client.history.stranded = !open;
            client.history.at_end = match client.place {
                Place::Live(k) => {
                    let conn = &self.conns[k];
                    format!(
                        "at the end {:?} on a connection of {:.1}s, its last bytes {:.1}s before, \
                         request in flight {:?}, engine.io sid {:?}, {} returns recovered, left last by {}",
                        conn.step,
                        now.duration_since(conn.opened).as_secs_f64(),
                        now.duration_since(conn.last_read).as_secs_f64(),
                        conn.inflight,
                        conn.engine_sid,
                        client.history.returns.recovered,
                        client.left_by,
                    )
                }
                Place::Away { .. } => format!("at the end away, left last by {}", client.left_by),
            };
            let early = std::mem::take(&mut client.early);
            client
                .history
                .unlogged
                .extend(early.into_iter().map(|(_, s)| s));
            histories.push(std::mem::take(&mut client.history));
        }
        ThreadReport {
            histories,
            stats: self.stats,
        }
    }

    /// Polling: every whole HTTP response that has arrived.
    fn process_polling(&mut self, key: usize) -> Result<(), String> {
        loop {
            let conn = &mut self.conns[key];
            let Some((status, head, end)) = http_response(&conn.pending)? else {
                break;
            };
            let body = conn.pending[head..end].to_vec();
            conn.pending.drain(..end);
            let req = conn.inflight.take();
            if conn.step == Step::Closing {
                continue;
            }
            if status != 200 {
                return Err(format!(
                    "polling {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(80)])
                ));
            }
            if req == Some(Req::Get) {
                for packet in body.split(|&b| b == 0x1e) {
                    if let Next::End(why) = self.socketio_packet(key, packet) {
                        return Err(why);
                    }
                }
            }
            self.polling_next(key);
        }
        Ok(())
    }

    /// Polling: with nothing in flight, post what waits, or poll.
    fn polling_next(&mut self, key: usize) {
        let plan = self.plan;
        let conn = &mut self.conns[key];
        if conn.inflight.is_some() || conn.step == Step::Closing {
            return;
        }
        let host = &plan.nodes[self.clients[conn.client].node % plan.nodes.len()].host;
        let target = format!(
            "{}?EIO=4&transport=polling&sid={}",
            plan.socketio_path, conn.engine_sid
        );
        if conn.queue.is_empty() {
            let _ = write!(conn.out, "GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
            conn.inflight = Some(Req::Get);
        } else {
            let body = conn.queue.join("\u{1e}");
            conn.queue.clear();
            let _ = write!(
                conn.out,
                "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain;charset=UTF-8\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            conn.inflight = Some(Req::Post);
        }
    }
}

/// One whole HTTP/1.1 response with a `Content-Length` at the start of `buf`: status, where
/// its body starts and where it ends; `None` while incomplete.
fn http_response(buf: &[u8]) -> Result<Option<(u16, usize, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > proto::MAX_HEAD => {
            return Err("response head too long".into())
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad response: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    let length = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .ok_or_else(|| format!("status {status} without Content-Length"))?;
    Ok((buf.len() >= head + length).then_some((status, head, head + length)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_responses_whole_and_partial() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1";
        assert_eq!(http_response(r), Ok(Some((200, 38, 40))));
        assert_eq!(http_response(&r[..39]), Ok(None));
        assert!(http_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}
