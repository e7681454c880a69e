//! The event loop: one thread, one `mio::Poll`, every connection in one `Slab`.
//!
//! It reads until `WouldBlock` and feeds the WebSocket decoder, hands decoded events to the raw
//! protocol and the rooms, drains the command channel when the control API wakes it, and writes.
//! Writes go straight to the socket; only what would block is queued, and `WRITABLE` interest is
//! registered only while something is queued. Timers (handshake, ping, close) are checked by a
//! sweep every [`tick`] rather than one timer per connection: O(connections) per tick, a few
//! nanoseconds each, and no per-connection timer state beyond two instants.

use std::io::{self, Read};
use std::mem;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use crossbeam_channel::Receiver;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;
use tracing::{debug, info, warn};

use crate::command::{Command, PushReply, Target, UserInfo};
use crate::config::Config;
use crate::fanout::Payload;
use crate::protocol::raw;
use crate::rooms::Rooms;
use crate::server::conn::{Conn, Phase, SocketId};
use crate::server::metrics::{Gauges, Metrics};
use crate::ws::frame::{self, opcode};
use crate::ws::handshake::{self, HandshakeError};
use crate::ws::{CloseCode, Event};

pub const LISTENER: Token = Token(usize::MAX - 1);
pub const WAKER: Token = Token(usize::MAX - 2);

/// Bytes read from a socket per `read` call, into one buffer shared by all connections.
const READ_CHUNK: usize = 64 * 1024;
/// Reads one connection may take per wake-up before others get their turn.
const READS_PER_TURN: usize = 16;

/// The timer sweep period: a quarter of the shortest timer, between 10 ms and 1 s.
pub fn tick(c: &Config) -> Duration {
    let shortest = [
        c.handshake_timeout,
        c.ping_interval,
        c.ping_timeout,
        c.close_timeout,
    ]
    .into_iter()
    .min()
    .unwrap_or(Duration::from_secs(1));
    (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

pub struct EventLoop {
    poll: Poll,
    /// `None` once shutdown began: no new connections.
    listener: Option<TcpListener>,
    /// Accepting failed for want of resources (file descriptors); retried at the next tick.
    accept_paused: bool,
    rx: Receiver<Command>,
    read_buf: Box<[u8]>,
    /// Connections that still had bytes to read when their turn ended.
    more_to_read: Vec<usize>,
    state: State,
}

/// Everything the handlers touch, apart from the poll and the listener.
struct State {
    config: Config,
    io: Io,
    rooms: Rooms,
    /// Incremented per multi-user push; see [`Conn::push_mark`].
    push_seq: u64,
    shutdown_deadline: Option<Instant>,
}

/// The connections and what writing to them needs, split from [`Rooms`] so a push can walk a
/// room's members while writing to them.
struct Io {
    registry: Registry,
    conns: Slab<Conn>,
    metrics: Metrics,
    /// Connections closed during this batch of events, removed from the slab after it.
    dead: Vec<usize>,
}

impl EventLoop {
    pub fn new(
        poll: Poll,
        mut listener: TcpListener,
        rx: Receiver<Command>,
        config: Config,
    ) -> io::Result<Self> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let registry = poll.registry().try_clone()?;
        Ok(EventLoop {
            poll,
            listener: Some(listener),
            accept_paused: false,
            rx,
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            more_to_read: Vec::new(),
            state: State {
                rooms: Rooms::new(config.max_subscriptions),
                config,
                io: Io {
                    registry,
                    conns: Slab::new(),
                    metrics: Metrics::default(),
                    dead: Vec::new(),
                },
                push_seq: 0,
                shutdown_deadline: None,
            },
        })
    }

    /// Runs until a [`Command::Shutdown`] has been carried out.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let tick = tick(&self.state.config);
        let mut next_tick = Instant::now() + tick;
        loop {
            let timeout = if self.more_to_read.is_empty() {
                next_tick.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            for k in mem::take(&mut self.more_to_read) {
                self.read(k, now);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => {} // the channel is drained below, after every wake-up
                    Token(k) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(k, now);
                        }
                        if event.is_writable() {
                            self.state.io.flush(k);
                        }
                    }
                }
            }
            self.drain_commands(now);
            self.state.reap();
            if now >= next_tick {
                if self.accept_paused {
                    self.accept(now);
                }
                self.state.sweep(now);
                self.state.reap();
                next_tick = now + tick;
            }
            if let Some(deadline) = self.state.shutdown_deadline {
                if self.state.io.conns.is_empty() || now >= deadline {
                    info!(left = self.state.io.conns.len(), "shutdown complete");
                    return Ok(());
                }
            }
        }
    }

    fn accept(&mut self, now: Instant) {
        let Some(listener) = &self.listener else {
            return;
        };
        self.accept_paused = false;
        loop {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    // Notifications are small and latency is the point: no Nagle delay.
                    let _ = stream.set_nodelay(true);
                    let io = &mut self.state.io;
                    let entry = io.conns.vacant_entry();
                    if let Err(e) =
                        io.registry
                            .register(&mut stream, Token(entry.key()), Interest::READABLE)
                    {
                        warn!(%peer, error = %e, "could not register a connection");
                        continue;
                    }
                    let c = &self.state.config;
                    debug!(%peer, conn = entry.key(), "connection accepted");
                    entry.insert(Conn::new(
                        stream,
                        new_socket_id(),
                        now,
                        now + c.handshake_timeout,
                        c.max_message,
                    ));
                    io.metrics.connections_accepted += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: the backlog keeps the connections; try again at the
                    // next tick rather than spin on an error that persists.
                    warn!(error = %e, "accept failed; pausing accepts until the next tick");
                    self.accept_paused = true;
                    return;
                }
            }
        }
    }

    /// Reads what connection `k` has, up to [`READS_PER_TURN`] chunks.
    fn read(&mut self, k: usize, now: Instant) {
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.state.io.conns.get_mut(k) else {
                return;
            };
            if matches!(conn.phase, Phase::Dead) {
                return;
            }
            match conn.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    self.state.peer_closed(k);
                    return;
                }
                Ok(n) => self.state.on_bytes(k, &self.read_buf[..n], now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(conn = k, error = %e, "read failed");
                    self.state.io.kill(k);
                    return;
                }
            }
        }
        self.more_to_read.push(k);
    }

    fn drain_commands(&mut self, now: Instant) {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Push {
                    target,
                    notification,
                    reply,
                } => {
                    let sockets = self.state.push(target, notification);
                    let _ = reply.send(PushReply { sockets });
                }
                Command::UserInfo { user_id, reply } => {
                    let sockets = self.state.rooms.members(&user_id).len();
                    let _ = reply.send(UserInfo { sockets });
                }
                Command::Metrics { reply } => {
                    let _ = reply.send(self.state.render_metrics());
                }
                Command::Shutdown => {
                    if let Some(mut listener) = self.listener.take() {
                        let _ = self.poll.registry().deregister(&mut listener);
                    }
                    self.state.begin_shutdown(now);
                }
            }
        }
    }
}

fn new_socket_id() -> SocketId {
    let mut raw = [0u8; 15];
    // The OS generator does not fail on the platforms mio supports; were it to, a zero id still
    // works as an id and only loses its unguessability.
    let _ = getrandom::getrandom(&mut raw);
    let mut id = [0u8; 20];
    let _ = URL_SAFE_NO_PAD.encode_slice(raw, &mut id);
    id
}

impl State {
    fn on_bytes(&mut self, k: usize, data: &[u8], now: Instant) {
        let Some(conn) = self.io.conns.get_mut(k) else {
            return;
        };
        conn.last_heard = now;
        conn.ping_sent = None;
        match &mut conn.phase {
            Phase::Handshake { head, .. } => {
                head.extend_from_slice(data);
                match handshake::parse_request(head, self.config.max_handshake) {
                    Ok(None) => {}
                    Err(e) => self.reject(k, &e, now),
                    Ok(Some((req, used))) => {
                        let head = mem::take(head);
                        let upgrade = if req.path == self.config.ws_path {
                            handshake::validate_upgrade(&req)
                        } else {
                            Err(HandshakeError::NotFound)
                        };
                        match upgrade {
                            Err(e) => self.reject(k, &e, now),
                            Ok(hs) => {
                                let mut out = Vec::with_capacity(160);
                                handshake::write_accept(&hs, &mut out);
                                conn.phase = Phase::Open;
                                self.io.metrics.handshakes_completed += 1;
                                debug!(conn = k, socket = conn.id_str(), "websocket open");
                                if self.io.send(k, &Bytes::from(out)) {
                                    self.on_frames(k, &head[used..], now);
                                }
                            }
                        }
                    }
                }
            }
            Phase::Open => self.on_frames(k, data, now),
            Phase::Closing { .. } | Phase::Dead => {}
        }
    }

    /// Answers a failed handshake with its HTTP status and closes.
    fn reject(&mut self, k: usize, e: &HandshakeError, now: Instant) {
        let status = e.status();
        if let Some(conn) = self.io.conns.get(k) {
            let peer = conn.stream.peer_addr().ok();
            warn!(?peer, status, error = %e, "handshake rejected");
        }
        *self
            .io
            .metrics
            .handshakes_rejected
            .entry(status)
            .or_default() += 1;
        let mut out = Vec::with_capacity(256);
        handshake::write_error(e, &mut out);
        if self.io.send(k, &Bytes::from(out)) {
            self.enter_closing(k, now);
        }
    }

    fn on_frames(&mut self, k: usize, mut input: &[u8], now: Instant) {
        while !input.is_empty() {
            let Some(conn) = self.io.conns.get_mut(k) else {
                return;
            };
            if !conn.is_open() {
                return;
            }
            match conn.decoder.decode(input) {
                Ok((n, event)) => {
                    input = &input[n..];
                    if let Some(event) = event {
                        self.on_event(k, event, now);
                    }
                }
                Err(e) => {
                    let code = CloseCode::from(&e);
                    warn!(conn = k, code = code.0, error = %e, "closing on a protocol fault");
                    self.start_close(k, code, &e.to_string(), now);
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, k: usize, event: Event, now: Instant) {
        match event {
            Event::Text(text) => {
                self.io.metrics.messages_received += 1;
                let reply = match raw::parse(&text) {
                    Ok(raw::ClientEvent::Subscribe(user)) => match self.rooms.subscribe(k, &user) {
                        Ok(_) => {
                            let id = self.io.conns[k].id_str();
                            debug!(conn = k, user = %user, "subscribed");
                            raw::subscribed(&user, id)
                        }
                        Err(e) => raw::error(&format!("subscribe: {e}")),
                    },
                    Ok(raw::ClientEvent::Unsubscribe(user)) => {
                        self.rooms.unsubscribe(k, &user);
                        debug!(conn = k, user = %user, "unsubscribed");
                        raw::unsubscribed(&user)
                    }
                    Err(e) => {
                        debug!(conn = k, error = %e, "bad client message");
                        raw::error(&e.to_string())
                    }
                };
                self.io
                    .send(k, &frame::encode(opcode::TEXT, reply.as_bytes()));
            }
            Event::Binary(_) => {
                self.io.metrics.messages_received += 1;
                let reply = raw::error(&raw::Error::BinaryMessage.to_string());
                self.io
                    .send(k, &frame::encode(opcode::TEXT, reply.as_bytes()));
            }
            // RFC 6455 §5.5.2: upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
            // response [...] with identical "Application data".
            Event::Ping(payload) => {
                self.io.send(k, &frame::encode(opcode::PONG, &payload));
            }
            Event::Pong(_) => {}
            Event::Close(close) => {
                // RFC 6455 §5.5.1: if an endpoint receives a Close frame and did not previously
                // send a Close frame, the endpoint MUST send a Close frame in response (typically
                // echoing the status code it received).
                let (code, reply) = match close {
                    Some((code, _reason)) => (code, frame::encode_close(code, "")),
                    None => (CloseCode::NO_STATUS, frame::encode(opcode::CLOSE, &[])),
                };
                self.io.metrics.count_close(code);
                debug!(conn = k, code = code.0, "client closed");
                if self.io.send(k, &reply) {
                    self.enter_closing(k, now);
                }
            }
        }
    }

    /// Sends a close frame with `code` and waits for the client's answer.
    fn start_close(&mut self, k: usize, code: CloseCode, reason: &str, now: Instant) {
        self.io.metrics.count_close(code);
        if self.io.send(k, &frame::encode_close(code, reason)) {
            self.enter_closing(k, now);
        }
    }

    /// Stops delivering to `k`, shuts its write side once flushed, and waits for its EOF.
    ///
    /// RFC 6455 §7.1.1: the underlying TCP connection, in most normal cases, SHOULD be closed
    /// first by the server; shutting down our write side after the last frame does that while
    /// still letting the client's own close frame arrive.
    fn enter_closing(&mut self, k: usize, now: Instant) {
        self.rooms.remove_conn(k);
        let Some(conn) = self.io.conns.get_mut(k) else {
            return;
        };
        conn.phase = Phase::Closing {
            deadline: now + self.config.close_timeout,
        };
        conn.shutdown_when_flushed = true;
        if conn.out.is_empty() {
            self.io.flush(k);
        }
    }

    fn peer_closed(&mut self, k: usize) {
        if let Some(conn) = self.io.conns.get(k) {
            if conn.is_open() {
                // The peer left without a close frame: RFC 6455 §7.1.5 calls that 1006.
                self.io.metrics.count_close(CloseCode::ABNORMAL);
            }
        }
        self.io.kill(k);
    }

    /// Hands one notification to every recipient of `target`; returns how many sockets took it.
    fn push(&mut self, target: Target, notification: Bytes) -> usize {
        let payload = Payload::new(notification);
        let io = &mut self.io;
        let mut sockets = 0;
        match &target {
            Target::User(user) => {
                io.metrics.pushes_user += 1;
                for &k in self.rooms.members(user) {
                    sockets += io.send(k, payload.raw_frame()) as usize;
                }
            }
            Target::Users(users) => {
                io.metrics.pushes_users += 1;
                self.push_seq += 1;
                for user in users {
                    for &k in self.rooms.members(user) {
                        let Some(conn) = io.conns.get_mut(k) else {
                            continue;
                        };
                        if conn.push_mark == self.push_seq {
                            continue;
                        }
                        conn.push_mark = self.push_seq;
                        sockets += io.send(k, payload.raw_frame()) as usize;
                    }
                }
            }
            Target::All => {
                io.metrics.pushes_broadcast += 1;
                sockets = io.broadcast(payload.raw_frame());
            }
        }
        io.metrics.deliveries += sockets as u64;
        debug!(?target, sockets, "push");
        sockets
    }

    /// Checks every connection's timers.
    fn sweep(&mut self, now: Instant) {
        let (interval, timeout) = (self.config.ping_interval, self.config.ping_timeout);
        let mut ping = Vec::new();
        for (k, conn) in self.io.conns.iter_mut() {
            let expired = match conn.phase {
                Phase::Handshake { deadline, .. } => {
                    if now >= deadline {
                        self.io.metrics.handshake_timeouts += 1;
                    }
                    now >= deadline
                }
                Phase::Open => match conn.ping_sent {
                    Some(sent) if now.duration_since(sent) >= timeout => {
                        self.io.metrics.ping_timeouts += 1;
                        self.io.metrics.count_close(CloseCode::ABNORMAL);
                        true
                    }
                    None if now.duration_since(conn.last_heard) >= interval => {
                        conn.ping_sent = Some(now);
                        ping.push(k);
                        false
                    }
                    _ => false,
                },
                Phase::Closing { deadline } => now >= deadline,
                Phase::Dead => false,
            };
            if expired {
                debug!(conn = k, "timed out");
                conn.phase = Phase::Dead;
                self.io.dead.push(k);
            }
        }
        let frame = Bytes::from_static(&[0x89, 0x00]); // FIN | ping, empty payload
        for k in ping {
            self.io.send(k, &frame);
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        info!(
            connections = self.io.conns.len(),
            "shutting down: closing every client with 1001"
        );
        self.shutdown_deadline = Some(now + self.config.shutdown_timeout);
        let keys: Vec<usize> = self.io.conns.iter().map(|(k, _)| k).collect();
        for k in keys {
            match self.io.conns[k].phase {
                Phase::Open => {
                    self.start_close(k, CloseCode::GOING_AWAY, "server shutting down", now)
                }
                Phase::Handshake { .. } => self.io.kill(k),
                Phase::Closing { .. } | Phase::Dead => {}
            }
        }
    }

    /// Removes the connections closed during this batch.
    fn reap(&mut self) {
        for k in mem::take(&mut self.io.dead) {
            if let Some(mut conn) = self.io.conns.try_remove(k) {
                let _ = self.io.registry.deregister(&mut conn.stream);
                self.rooms.remove_conn(k);
                debug!(conn = k, "connection closed");
            }
        }
    }

    fn render_metrics(&self) -> String {
        let websockets = self.io.conns.iter().filter(|(_, c)| c.is_open()).count();
        self.io.metrics.render(&Gauges {
            connections: self.io.conns.len(),
            websockets,
            rooms: self.rooms.len(),
            subscriptions: self.rooms.subscriptions(),
        })
    }
}

impl Io {
    /// Writes `bytes` to open-or-closing connection `k`; false when `k` is gone or the write failed
    /// (then `k` is closed).
    fn send(&mut self, k: usize, bytes: &Bytes) -> bool {
        let Io {
            registry,
            conns,
            metrics,
            dead,
        } = self;
        match conns.get_mut(k) {
            Some(conn) => send_to(registry, metrics, dead, k, conn, bytes),
            None => false,
        }
    }

    /// Hands `frame` to every open connection; returns how many took it.
    fn broadcast(&mut self, frame: &Bytes) -> usize {
        let Io {
            registry,
            conns,
            metrics,
            dead,
        } = self;
        let mut sockets = 0;
        for (k, conn) in conns.iter_mut() {
            if conn.is_open() {
                sockets += send_to(registry, metrics, dead, k, conn, frame) as usize;
            }
        }
        sockets
    }

    /// Writes what `k` has queued; drops `WRITABLE` interest once drained.
    fn flush(&mut self, k: usize) {
        let Some(conn) = self.conns.get_mut(k) else {
            return;
        };
        if matches!(conn.phase, Phase::Dead) {
            return;
        }
        match conn.flush() {
            Ok(n) => {
                self.metrics.bytes_sent += n as u64;
                if conn.out.is_empty() && conn.writable_interest {
                    conn.writable_interest = false;
                    if self
                        .registry
                        .reregister(&mut conn.stream, Token(k), Interest::READABLE)
                        .is_err()
                    {
                        self.kill(k);
                    }
                }
            }
            Err(_) => {
                if conn.is_open() {
                    self.metrics.count_close(CloseCode::ABNORMAL);
                }
                self.kill(k);
            }
        }
    }

    /// Marks `k` closed; it leaves the slab (and its socket closes) after this batch of events.
    fn kill(&mut self, k: usize) {
        if let Some(conn) = self.conns.get_mut(k) {
            if !matches!(conn.phase, Phase::Dead) {
                conn.phase = Phase::Dead;
                self.dead.push(k);
            }
        }
    }
}

/// [`Io::send`] on borrowed parts, so [`Io::broadcast`] can walk the slab while it writes.
fn send_to(
    registry: &Registry,
    metrics: &mut Metrics,
    dead: &mut Vec<usize>,
    k: usize,
    conn: &mut Conn,
    bytes: &Bytes,
) -> bool {
    if matches!(conn.phase, Phase::Dead) {
        return false;
    }
    let failed = match conn.send(bytes) {
        Ok(n) => {
            metrics.bytes_sent += n as u64;
            if !conn.out.is_empty() && !conn.writable_interest {
                conn.writable_interest = true;
                let interest = Interest::READABLE | Interest::WRITABLE;
                registry
                    .reregister(&mut conn.stream, Token(k), interest)
                    .is_err()
            } else {
                false
            }
        }
        Err(e) => {
            debug!(conn = k, error = %e, "write failed");
            if conn.is_open() {
                metrics.count_close(CloseCode::ABNORMAL);
            }
            true
        }
    };
    if failed {
        conn.phase = Phase::Dead;
        dead.push(k);
    }
    !failed
}
