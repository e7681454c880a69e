//! Client threads: each owns a mio `Poll` and a `Slab` of connections, opens them with bounded
//! concurrency, walks each through the handshake and subscription, then records deliveries.
//!
//! A thread runs in two phases. Setup: open connections (at most `concurrency` unfinished at a
//! time), each with a deadline covering connect, upgrade and subscription; when every one has
//! subscribed or failed, the thread reports the subscribed indices on `ready`. Run: record every
//! delivery's latency until `stop` is set, then hand back a [`ClientReport`].
//!
//! With TLS (`wss://`) a connection's bytes go through its rustls session (see [`tls`]); the
//! plain path does not change.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use crossbeam_channel::Sender;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::ClientConnection;
use slab::Slab;

use herald::ws::frame::{encode_masked, opcode};

use crate::proto::{
    self, Fault, FrameReader, Inflater, Meaning, Message, Offer, Protocol, Seen, SeqWindow,
};
use crate::report::Wire;
use crate::sys::{self, Clock, Rng};
use crate::tls;

/// The bytes one `read` call may bring in; shared by all connections of a thread.
const READ_CHUNK: usize = 64 * 1024;

/// How often a thread wakes with nothing to do, to check deadlines and the stop flag.
const TICK: Duration = Duration::from_millis(20);

/// What one client thread is asked to do.
pub struct Plan {
    pub protocol: Protocol,
    /// What the upgrade request offers besides plain WebSocket.
    pub offer: Offer,
    pub server: SocketAddr,
    /// `Host` header and request target of the upgrade.
    pub host: String,
    pub path: String,
    /// The global indices of this thread's connections; connection `i` subscribes to
    /// `user-{i % users}` and binds to `source_ips[i % len]`.
    pub connections: Vec<u32>,
    pub users: u32,
    pub source_ips: Vec<Ipv4Addr>,
    /// Connections of this thread between connect and subscription at any time.
    pub concurrency: usize,
    pub connect_timeout: Duration,
    /// The largest server message kept; a larger one fails the connection.
    pub max_message: usize,
    pub pin_cpu: Option<usize>,
    pub clock: Clock,
    /// Connect over TLS with this client (`wss://`); plain when `None`.
    pub tls: Option<Arc<tls::Client>>,
}

/// Counters the main thread reads while the client threads run (progress, drain).
#[derive(Default)]
pub struct Progress {
    pub subscribed: AtomicU64,
    pub failed: AtomicU64,
    /// First deliveries (duplicates excluded).
    pub received: AtomicU64,
    /// Unix ns of the latest delivery.
    pub last_delivery_ns: AtomicU64,
}

/// What a client thread hands back when stopped.
pub struct ClientReport {
    pub histogram: Histogram<u64>,
    pub received: u64,
    pub duplicates: u64,
    /// Deliveries too far out of order to check for duplication (counted as received).
    pub unchecked: u64,
    /// Notifications without the generator's `seq` and `t`.
    pub unparsed: u64,
    /// Per push `seq`: the latency in µs of its latest delivery on this thread (0: none).
    pub slowest: Vec<u64>,
    /// Subscribed connections the server closed during the run.
    pub disconnected: u64,
    /// Why connections failed during setup, with counts.
    pub failures: BTreeMap<String, u64>,
    pub wire: Wire,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// TCP connect in progress.
    Connecting,
    /// Upgrade request sent, waiting for 101.
    Upgrading,
    /// Socket.IO: waiting for the Engine.IO open packet.
    WaitOpen,
    /// Socket.IO: CONNECT sent, waiting for its answer.
    WaitConnect,
    /// Subscription sent, waiting for its confirmation.
    Subscribing,
    /// Subscribed: deliveries count from here on.
    Ready,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Connecting => "connect",
            State::Upgrading => "upgrade",
            State::WaitOpen => "engine.io open",
            State::WaitConnect => "socket.io connect",
            State::Subscribing => "subscribe",
            State::Ready => "ready",
        }
    }
}

struct Conn {
    index: u32,
    stream: TcpStream,
    /// The TLS session over `stream`, for `wss://`. Boxed: a session is large, and a plain
    /// connection's slot should not carry its size.
    tls: Option<Box<ClientConnection>>,
    state: State,
    /// Setup must be done by then.
    deadline: Instant,
    /// `Sec-WebSocket-Key`, needed until the upgrade is checked.
    key: String,
    /// Received bytes not yet making a whole frame (or head); usually empty.
    pending: Vec<u8>,
    /// Bytes to send that would have blocked.
    out: Vec<u8>,
    frames: FrameReader,
    /// The server chose `herald.msgpack`: binary messages are MessagePack, and so is the
    /// subscription.
    msgpack: bool,
    seen: SeqWindow,
}

/// What the connections of one thread share while being handled.
struct Shared {
    tally: Tally,
    /// Masking keys and `Sec-WebSocket-Key`s.
    rng: Rng,
    /// Inflates the compressed messages of every connection.
    inflater: Inflater,
}

/// Per-thread tallies, folded into the [`ClientReport`].
struct Tally {
    histogram: Histogram<u64>,
    received: u64,
    duplicates: u64,
    unchecked: u64,
    unparsed: u64,
    last_delivery_ns: u64,
    /// Per push `seq`, the latency in µs of its latest delivery so far (0: none yet).
    slowest: Vec<u64>,
    wire: Wire,
}

/// The highest push `seq` whose slowest delivery is tracked: 8 bytes per push up to here, per
/// client thread, whatever `seq` a server sends back.
const MAX_TRACKED_SEQ: u64 = 1 << 24;

/// Why a connection ended.
enum End {
    Fault(Fault),
    Eof,
    Io(io::Error),
    Tls(rustls::Error),
}

impl End {
    fn describe(&self, state: State) -> String {
        match self {
            End::Fault(f) => format!("{}: {f}", state.name()),
            End::Eof => format!("{}: connection closed", state.name()),
            End::Io(e) => format!("{}: {}", state.name(), e.kind()),
            End::Tls(e) => format!("{}: tls: {e}", state.name()),
        }
    }
}

impl From<Fault> for End {
    fn from(f: Fault) -> Self {
        End::Fault(f)
    }
}

impl From<tls::ReadError> for End {
    fn from(e: tls::ReadError) -> Self {
        match e {
            tls::ReadError::Closed => End::Eof,
            tls::ReadError::Tls(e) => End::Tls(e),
            tls::ReadError::Io(e) => End::Io(e),
        }
    }
}

/// Runs one client thread; see the module documentation for its phases.
pub fn run(
    plan: Plan,
    progress: Arc<Progress>,
    ready: Sender<Vec<u32>>,
    stop: Arc<AtomicBool>,
) -> io::Result<ClientReport> {
    sys::maybe_pin(plan.pin_cpu);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::with_capacity(plan.connections.len());
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut shared = Shared {
        tally: Tally {
            histogram: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .map_err(|e| io::Error::other(e.to_string()))?,
            received: 0,
            duplicates: 0,
            unchecked: 0,
            unparsed: 0,
            last_delivery_ns: 0,
            slowest: Vec::new(),
            wire: Wire::default(),
        },
        rng: Rng::new(),
        inflater: Inflater::new(),
    };
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut disconnected = 0u64;
    let mut next = 0usize;
    let mut unfinished = 0usize;
    let mut subscribed: Vec<u32> = Vec::with_capacity(plan.connections.len());
    let mut setup_done = false;
    let mut last_scan = Instant::now();

    loop {
        // Setup: keep `concurrency` connections between connect and subscription.
        while !setup_done && unfinished < plan.concurrency && next < plan.connections.len() {
            let index = plan.connections[next];
            next += 1;
            match open(&plan, index, &mut shared.rng, &poll, &mut conns) {
                Ok(()) => unfinished += 1,
                Err(e) => {
                    *failures
                        .entry(format!("connect: {}", e.kind()))
                        .or_default() += 1;
                    progress.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if !setup_done && unfinished == 0 && next == plan.connections.len() {
            setup_done = true;
            let _ = ready.send(std::mem::take(&mut subscribed));
        }
        if setup_done && stop.load(Ordering::Relaxed) {
            break;
        }

        match poll.poll(&mut events, Some(TICK)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let before = shared.tally.received;
        for event in events.iter() {
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let was = conn.state;
            let result = drive(
                conn,
                &plan,
                &mut scratch,
                &mut shared,
                event.is_writable(),
                event.is_read_closed(),
            );
            let now_state = conn.state;
            match result {
                Ok(()) => {
                    if was != State::Ready && now_state == State::Ready {
                        unfinished -= 1;
                        subscribed.push(conn.index);
                        progress.subscribed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(end) => {
                    let conn = conns.remove(key);
                    let _ = poll.registry().deregister(&mut { conn.stream });
                    if was == State::Ready {
                        disconnected += 1;
                    } else {
                        unfinished -= 1;
                        *failures.entry(end.describe(was)).or_default() += 1;
                        progress.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        let tally = &shared.tally;
        if tally.received != before {
            progress
                .received
                .fetch_add(tally.received - before, Ordering::Relaxed);
            progress
                .last_delivery_ns
                .fetch_max(tally.last_delivery_ns, Ordering::Relaxed);
        }

        // Deadlines, checked a few times a second while setup is under way.
        if !setup_done && last_scan.elapsed() >= Duration::from_millis(100) {
            let now = Instant::now();
            last_scan = now;
            let late: Vec<usize> = conns
                .iter()
                .filter(|(_, c)| c.state != State::Ready && c.deadline <= now)
                .map(|(k, _)| k)
                .collect();
            for key in late {
                let conn = conns.remove(key);
                *failures
                    .entry(format!("{}: timeout", conn.state.name()))
                    .or_default() += 1;
                let _ = poll.registry().deregister(&mut { conn.stream });
                unfinished -= 1;
                progress.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    let tally = shared.tally;
    Ok(ClientReport {
        histogram: tally.histogram,
        received: tally.received,
        duplicates: tally.duplicates,
        unchecked: tally.unchecked,
        unparsed: tally.unparsed,
        slowest: tally.slowest,
        disconnected,
        failures,
        wire: tally.wire,
    })
}

/// Starts connection `index` and registers it.
fn open(
    plan: &Plan,
    index: u32,
    rng: &mut Rng,
    poll: &Poll,
    conns: &mut Slab<Conn>,
) -> io::Result<()> {
    let source = match plan.source_ips.len() {
        0 => None,
        n => Some(plan.source_ips[index as usize % n]),
    };
    let mut stream = sys::connect(source, plan.server)?;
    let entry = conns.vacant_entry();
    poll.registry().register(
        &mut stream,
        Token(entry.key()),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    let key = BASE64.encode(rng.next_u64().to_le_bytes().repeat(2));
    let tls = match &plan.tls {
        Some(client) => Some(Box::new(client.session()?)),
        None => None,
    };
    entry.insert(Conn {
        index,
        stream,
        tls,
        state: State::Connecting,
        deadline: Instant::now() + plan.connect_timeout,
        key,
        pending: Vec::new(),
        out: Vec::new(),
        frames: FrameReader::default(),
        msgpack: false,
        seen: SeqWindow::new(),
    });
    Ok(())
}

/// Handles one readiness event: finishes a connect, reads until `WouldBlock`, writes what is
/// pending. Both interests stay registered: edge-triggered readiness makes a spare `WRITABLE`
/// cheap, and no `reregister` call is ever needed.
fn drive(
    conn: &mut Conn,
    plan: &Plan,
    scratch: &mut [u8],
    shared: &mut Shared,
    writable: bool,
    read_closed: bool,
) -> Result<(), End> {
    if conn.state == State::Connecting {
        if let Some(e) = conn.stream.take_error().map_err(End::Io)? {
            return Err(End::Io(e));
        }
        match conn.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
            Err(e) => return Err(End::Io(e)),
        }
        let _ = conn.stream.set_nodelay(true);
        conn.state = State::Upgrading;
        conn.out.extend_from_slice(&proto::handshake_request(
            &plan.host, &plan.path, &conn.key, plan.offer,
        ));
    }
    if conn.tls.is_some() {
        return drive_tls(conn, plan, scratch, shared);
    }
    loop {
        match conn.stream.read(scratch) {
            Ok(0) => return Err(End::Eof),
            Ok(n) => {
                shared.tally.wire.bytes_received += n as u64;
                let now_ns = plan.clock.now_ns();
                feed(conn, plan, &scratch[..n], now_ns, shared)?;
                // A short read emptied the socket: bytes arriving later raise a new edge, so
                // the usual read that ends in `WouldBlock` (a syscall per delivery) is skipped.
                // Unless the peer closed: its FIN raises no further edge.
                if n < scratch.len() && !read_closed {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(End::Io(e)),
        }
    }
    if writable || !conn.out.is_empty() {
        flush(conn)?;
    }
    Ok(())
}

/// [`drive`] for a connection over TLS: reads and decrypts until the socket has nothing more,
/// then writes what the session and `out` hold. The upgrade request queued at connect waits in
/// the session until the handshake is done.
fn drive_tls(
    conn: &mut Conn,
    plan: &Plan,
    scratch: &mut [u8],
    shared: &mut Shared,
) -> Result<(), End> {
    loop {
        let Some(session) = conn.tls.as_deref_mut() else {
            return Ok(());
        };
        let handshaking = session.is_handshaking();
        let read = tls::read(
            session,
            &mut conn.stream,
            scratch,
            &mut shared.tally.wire.bytes_received,
        );
        if handshaking && !session.is_handshaking() {
            shared.tally.wire.tls_agreed(tls::agreed(session));
        }
        match read? {
            None => break,
            Some(n) => {
                let now_ns = plan.clock.now_ns();
                feed(conn, plan, &scratch[..n], now_ns, shared)?;
            }
        }
    }
    if let Some(session) = conn.tls.as_deref_mut() {
        tls::write(session, &mut conn.stream, &mut conn.out).map_err(End::Io)?;
        if conn.out.is_empty() && conn.out.capacity() > 4096 {
            conn.out = Vec::new();
        }
    }
    Ok(())
}

/// Writes pending output until done or `WouldBlock`.
fn flush(conn: &mut Conn) -> Result<(), End> {
    let mut written = 0;
    while written < conn.out.len() {
        match conn.stream.write(&conn.out[written..]) {
            Ok(0) => return Err(End::Eof),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(End::Io(e)),
        }
    }
    conn.out.drain(..written);
    if conn.out.is_empty() && conn.out.capacity() > 4096 {
        conn.out = Vec::new();
    }
    Ok(())
}

/// Takes freshly read bytes: straight from the shared buffer when nothing is pending, keeping
/// only an unfinished tail.
fn feed(
    conn: &mut Conn,
    plan: &Plan,
    data: &[u8],
    now_ns: u64,
    shared: &mut Shared,
) -> Result<(), End> {
    if conn.pending.is_empty() {
        let used = consume(conn, plan, data, now_ns, shared)?;
        conn.pending.extend_from_slice(&data[used..]);
    } else {
        let mut buf = std::mem::take(&mut conn.pending);
        buf.extend_from_slice(data);
        let used = consume(conn, plan, &buf, now_ns, shared)?;
        buf.drain(..used);
        if buf.is_empty() && buf.capacity() > READ_CHUNK {
            buf = Vec::new();
        }
        conn.pending = buf;
    }
    Ok(())
}

/// Consumes the upgrade response head (while upgrading) and every whole frame of `buf`; returns
/// how many bytes were used.
fn consume(
    conn: &mut Conn,
    plan: &Plan,
    buf: &[u8],
    now_ns: u64,
    shared: &mut Shared,
) -> Result<usize, End> {
    let Shared {
        tally,
        rng,
        inflater,
    } = shared;
    let mut pos = 0;
    if conn.state == State::Upgrading {
        let Some(upgrade) = proto::parse_upgrade_response(buf, &conn.key, plan.offer)? else {
            return Ok(0);
        };
        pos = upgrade.head_len;
        conn.key = String::new();
        if plan.offer.deflate && !upgrade.deflate {
            tally.wire.deflate_declined += 1;
        }
        if plan.offer.msgpack && !upgrade.msgpack {
            tally.wire.format_declined += 1;
        }
        conn.frames = FrameReader::new(upgrade.deflate);
        conn.msgpack = upgrade.msgpack;
        match plan.protocol {
            Protocol::Raw => {
                let user = format!("user-{}", conn.index % plan.users);
                if conn.msgpack {
                    let subscribe = proto::subscribe_msgpack(&user);
                    send(&mut conn.out, opcode::BINARY, &subscribe, rng);
                } else {
                    let subscribe = plan.protocol.subscribe(&user);
                    send(&mut conn.out, opcode::TEXT, subscribe.as_bytes(), rng);
                }
                conn.state = State::Subscribing;
            }
            Protocol::Socketio => conn.state = State::WaitOpen,
        }
    }
    let Conn {
        index,
        state,
        out,
        frames,
        msgpack,
        seen,
        ..
    } = conn;
    let used = frames.decode(&buf[pos..], plan.max_message, |msg| {
        match msg {
            Message::Ping(payload) => {
                // RFC 6455 §5.5.2: a Ping is answered with a Pong carrying the same data.
                out.extend(encode_masked(true, opcode::PONG, 0, payload, mask(rng)));
                Ok(())
            }
            Message::Close => {
                out.extend(encode_masked(true, opcode::CLOSE, 0, &[], mask(rng)));
                Err(Fault::ClosedByServer)
            }
            Message::Data {
                payload,
                binary,
                compressed,
            } => {
                let data = if compressed {
                    let data = inflater.inflate(payload, plan.max_message)?;
                    tally.wire.compressed_messages += 1;
                    tally.wire.compressed_bytes += payload.len() as u64;
                    tally.wire.inflated_bytes += data.len() as u64;
                    data
                } else {
                    payload
                };
                tally.wire.message_bytes += data.len() as u64;
                let subscribing = *state != State::Ready;
                let meaning = if binary && *msgpack {
                    proto::classify_msgpack(data, subscribing)
                } else {
                    proto::classify(plan.protocol, data, subscribing)
                };
                match meaning {
                    Meaning::Notification { seq, t } if *state == State::Ready => {
                        match seen.see(seq) {
                            Seen::Duplicate => tally.duplicates += 1,
                            first => {
                                if first == Seen::TooOld {
                                    tally.unchecked += 1;
                                }
                                tally.received += 1;
                                tally.last_delivery_ns = now_ns;
                                let us = now_ns.saturating_sub(t) / 1000;
                                tally.histogram.saturating_record(us.max(1));
                                if seq < MAX_TRACKED_SEQ {
                                    let i = seq as usize;
                                    if tally.slowest.len() <= i {
                                        tally.slowest.resize(i + 1, 0);
                                    }
                                    tally.slowest[i] = tally.slowest[i].max(us.max(1));
                                }
                            }
                        }
                    }
                    Meaning::EnginePing => send(out, opcode::TEXT, b"3", rng),
                    Meaning::Open if *state == State::WaitOpen => {
                        send(out, opcode::TEXT, b"40", rng);
                        *state = State::WaitConnect;
                    }
                    Meaning::Connected if *state == State::WaitConnect => {
                        let user = format!("user-{}", *index % plan.users);
                        let subscribe = plan.protocol.subscribe(&user);
                        send(out, opcode::TEXT, subscribe.as_bytes(), rng);
                        *state = State::Subscribing;
                    }
                    Meaning::Subscribed if *state == State::Subscribing => *state = State::Ready,
                    Meaning::Refused if subscribing => return Err(Fault::SubscribeRefused),
                    Meaning::Closed => return Err(Fault::ClosedByServer),
                    Meaning::Unparsed | Meaning::Notification { .. } if !subscribing => {
                        tally.unparsed += 1
                    }
                    _ => {}
                }
                Ok(())
            }
        }
    })?;
    Ok(pos + used)
}

/// Queues one whole message, uncompressed whatever was negotiated (RFC 7692 lets a sender
/// leave any message uncompressed).
fn send(out: &mut Vec<u8>, op: u8, payload: &[u8], rng: &mut Rng) {
    // RFC 6455 §5.3: the masking key MUST be unpredictable, fresh for each frame.
    out.extend(encode_masked(true, op, 0, payload, mask(rng)));
}

fn mask(rng: &mut Rng) -> [u8; 4] {
    (rng.next_u64() as u32).to_ne_bytes()
}
