//! A worker's state: its connections and Engine.IO sessions in one slab, its rooms, its
//! compressor, and every handler that decides what a client's bytes, a push or the passing of
//! time do to them. Sans-IO: it never touches a socket, a poll or the clock. The runtime
//! ([`crate::server`]) reads sockets into [`State::on_bytes`], carries out pushes with
//! [`State::push`], calls [`State::sweep`] when a deadline falls due, and writes each
//! connection by handing its socket to [`Conn::flush`]; what the state needs of the sockets
//! during a call (a write that cannot wait for the turn's end, a socket to close, a connection
//! to hand to another worker) it lists in [`Io::write_now`], [`Io::closed`] and
//! [`State::handed`] for the runtime to carry out right after.
//!
//! The Engine.IO and Socket.IO handlers are in [`super::engine`], the timers in
//! [`super::timers`].

use std::io;
use std::mem;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use tracing::{debug, info, warn};

use crate::auth::{self, Verifier};
use crate::command::{Device, Target, MAX_DEVICES};
use crate::config::Config;
use crate::core::commands::{self, ClientCommand, Outcome, Refusal, Tokens};
use crate::core::conn::{Conn, Live, Phase, Proto, SocketId};
use crate::core::health::Probe;
use crate::core::identity::Identity;
use crate::core::session::{Session, Transport};
use crate::fanout::{Deflate, Payload};
use crate::http::{OriginError, Origins};
use crate::limits::{Admit, Epoch, InboundBucket, IpLimiter, IpRefusal, Limits};
use crate::log_limit::{peer_warn, PeerFault};
use crate::metrics::{Gauges, Metrics, Protocol, WorkerReport};
use crate::protocol::format::{self, Format};
use crate::protocol::raw;
use crate::proxy;
use crate::rooms::Rooms;
use crate::router::log::{Record, Unrecoverable};
use crate::router::mailbox::{Join, JoinReply, Joined, PushJob, Since};
use crate::router::parked::{self, Parked};
use crate::ws::deflate;
use crate::ws::frame::{self, opcode};
use crate::ws::handshake::{self, Agreement, Handshake, HandshakeError, Request};
use crate::ws::{CloseCode, Decoder, Event};

/// A connection with this many bytes queued during a turn is written at once rather than at
/// the end of the turn, so that a long turn does not pass for a slow reader.
const CORKED_FLUSH_AT: usize = 64 * 1024;
/// What a slab slot holds: a TCP connection, or an Engine.IO session (which outlives the HTTP
/// requests and WebSocket that carry it). Both are room members by their key.
///
/// Not boxed, though a session needs half a connection's size: nearly every slot is a
/// connection (a session always comes with one), and boxing would add an allocation and a
/// pointer chase to every event for the sake of the few.
#[allow(clippy::large_enum_variant)]
pub enum Entry {
    Conn(Conn),
    Session(Session),
}

impl Entry {
    /// What a client socket speaks: a raw WebSocket past its handshake, or an Engine.IO session
    /// not closed; `None` for a connection still in HTTP, carrying a session, or closing.
    pub(crate) fn protocol(&self) -> Option<Protocol> {
        match self {
            Entry::Conn(c) => match (&c.phase, c.format) {
                (Phase::Open(Proto::Raw), Format::Json) => Some(Protocol::RawJson),
                (Phase::Open(Proto::Raw), Format::MessagePack) => Some(Protocol::RawMsgpack),
                _ => None,
            },
            Entry::Session(s) if s.closed => None,
            Entry::Session(s) => Some(match s.transport {
                Transport::WebSocket { .. } => Protocol::SocketioWebsocket,
                Transport::Polling { .. } | Transport::Upgrading { .. } => {
                    Protocol::SocketioPolling
                }
            }),
        }
    }
}
/// Everything the handlers touch: no socket, no poll, no clock (every handler is given `now`,
/// and the wall clock is derived from it).
pub(crate) struct State {
    pub(crate) config: Config,
    pub(crate) io: Io,
    pub(crate) rooms: Rooms,
    /// Engine.IO session ids to their slab keys.
    pub(crate) sids: HashMap<SocketId, usize>,
    /// Incremented per multi-user push; see [`Conn::push_mark`].
    push_seq: u64,
    /// The one compressor every push's compressed frames come from.
    pub(crate) deflate: Deflate,
    pub(crate) shutdown_deadline: Option<Instant>,
    /// Checks client tokens; `None` when JWT auth is off.
    pub(crate) verifier: Option<Verifier>,
    /// `--cors-origins`, parsed: which origins polling answers let read them.
    pub(crate) cors_origins: Origins,
    /// `--allowed-origins`, parsed: which origins may connect at all.
    allowed_origins: Origins,
    pub(crate) limits: Limits,
    /// The clock of the per-connection buckets.
    pub(crate) epoch: Epoch,
    /// Per-address connection caps, shared by every worker: checked once, where a connection
    /// or session enters.
    pub(crate) ips: Arc<Mutex<IpLimiter>>,
    /// Per-address and total Engine.IO session caps, shared by every worker like `ips` and
    /// counted apart from it: a session is not a connection.
    pub(crate) sessions: Arc<Mutex<IpLimiter>>,
    /// This worker's index and how many there are.
    pub(crate) worker: usize,
    pub(crate) workers: usize,
    /// Connections to hand to the worker that owns their next request's session, with the
    /// key they had here: the runtime sends each with its socket.
    pub(crate) handed: Vec<(usize, Box<Conn>, usize)>,
    /// Engine.IO sessions of other workers whose clients took their Socket.IO sessions over
    /// here, with their workers: the runtime tells each to close its own.
    pub(crate) taken_over: Vec<(usize, SocketId)>,
    /// The wall clock at one instant of the monotonic one: JWT `exp` is read against
    /// [`State::unix`], derived from the `now` each handler is given.
    wall: (Instant, Duration),
    /// Joins to place in the log's order (recovery on): the runtime hands each to the router,
    /// and the answer comes back as [`State::on_joined`].
    pub(crate) joins: Vec<Join>,
    /// Socket.IO sessions kept for their clients to take back; `None` with recovery off.
    pub(crate) parked: Option<Arc<Parked>>,
    /// Shutting down: the members still to be closed, and when the next batch goes.
    pub(crate) drain: Option<Drain>,
    /// Whose word on a client's address is believed (`--trusted-proxies`, `--proxy-header`,
    /// `--proxy-protocol`).
    pub(crate) proxy: proxy::Settings,
    /// The client of the request being routed: behind a trusted proxy, the one its header
    /// names. What a session it opens counts against, and what its refusals log.
    pub(crate) request_client: Option<IpAddr>,
}

/// Closing every client in batches over `--drain-time`.
pub(crate) struct Drain {
    pub(crate) left: Vec<usize>,
    pub(crate) per_batch: usize,
    pub(crate) next: Instant,
    /// Socket.IO sessions are kept for their clients to take back (a restart), or not (the
    /// log's epoch changed: nothing from before can be replayed).
    pub(crate) keep_sessions: bool,
}

/// Whether `req` asks for a WebSocket (`Upgrade: websocket`).
fn is_upgrade(req: &Request) -> bool {
    req.header("upgrade").is_some_and(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    })
}

/// The private networks and loopback (`--trusted-proxies private`), parsed once.
fn private_networks() -> &'static proxy::TrustedProxies {
    static PRIVATE: std::sync::OnceLock<proxy::TrustedProxies> = std::sync::OnceLock::new();
    PRIVATE.get_or_init(|| "private".parse().unwrap_or_default())
}

/// Says once per process, when no proxy is trusted, that a request from a private address
/// carries a forwarding header: herald is probably behind a proxy it was not told about, and
/// counts every client as the proxy.
fn warn_untrusted_forwarding(peer: IpAddr, req: &Request) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if WARNED.load(Ordering::Relaxed) {
        return;
    }
    let forwarded = req.header("x-forwarded-for").is_some() || req.header("forwarded").is_some();
    if !forwarded || !private_networks().contains(peer) {
        return;
    }
    if !WARNED.swap(true, Ordering::Relaxed) {
        warn!(
            %peer,
            "requests from a private address carry X-Forwarded-For or Forwarded, but no proxy is \
             trusted: every client behind it counts as its address against the per-address \
             limits; set --trusted-proxies (HERALD_TRUSTED_PROXIES) to the proxy's address, or \
             `private`"
        );
    }
}

/// Time between two drain batches.
pub(crate) const DRAIN_STEP: Duration = Duration::from_millis(50);
/// With recovery on, how long a raw socket that has not subscribed holds broadcasts, unless it
/// said it resumes (then `--connect-timeout`, see [`raw::resumes`]).
const BROADCAST_GRACE: Duration = Duration::from_secs(1);
/// The most broadcasts it holds meanwhile.
const MAX_HELD_BROADCASTS: usize = 256;
/// The fewest members a drain batch closes.
const DRAIN_BATCH_MIN: usize = 64;
/// The slab and what writing to it needs, split from [`Rooms`] so a push can walk a room's
/// members while writing to them.
pub(crate) struct Io {
    pub(crate) entries: Slab<Entry>,
    /// The time the runtime gave at the start of this turn.
    pub(crate) now: Instant,
    pub(crate) metrics: Metrics,
    /// Entries closed during this batch of events, removed from the slab after it.
    pub(crate) dead: Vec<usize>,
    /// Keep-alive connections whose next request arrived while a GET was held: parsed after
    /// this batch.
    pub(crate) reparse: Vec<usize>,
    /// Connections whose reading was paused and that want input again: read next turn.
    pub(crate) resume: Vec<usize>,
    /// How long a keep-alive HTTP connection may sit between requests.
    pub(crate) idle: Duration,
    pub(crate) close_timeout: Duration,
    /// Shutting down: HTTP answers close their connections.
    pub(crate) closing_all: bool,
    /// The most bytes queued for one connection or polling session; see
    /// [`Config::max_queued_bytes`].
    pub(crate) max_queued: usize,
    /// Connections and sessions closed as slow consumers during this batch, to leave their rooms
    /// after it.
    pub(crate) slow: Vec<usize>,
    /// Connections with frames queued, in the order they were listed, written once each at
    /// the end of a turn, a bounded number a turn (the runtime takes them with
    /// [`Io::next_corked`]).
    pub(crate) corked_conns: VecDeque<usize>,
    /// Connections ever listed in `corked_conns`, and ever taken off its front: a push whose
    /// delivery left the first at `n` is written once the second reaches `n`.
    pub(crate) corked_total: u64,
    pub(crate) flushed_total: u64,
    /// Connections to write now rather than at the end of the turn: one whose queue passed
    /// [`CORKED_FLUSH_AT`], or whose last bytes are queued and whose write side is to be shut.
    pub(crate) write_now: Vec<usize>,
    /// Connections removed from the slab: the runtime closes their sockets.
    pub(crate) closed: Vec<usize>,
}
/// Locks the shared per-address caps. A worker that panicked holding them left counts that
/// are at worst off by one connection: keep using them.
pub(crate) fn lock_ips(ips: &Mutex<IpLimiter>) -> MutexGuard<'_, IpLimiter> {
    ips.lock().unwrap_or_else(|e| e.into_inner())
}
/// Counts a connection or Engine.IO session the caps refused, by cap.
pub(crate) fn count_refusal(m: &mut Metrics, refusal: &IpRefusal) {
    match refusal {
        IpRefusal::TooManyConnections { .. } => m.refused_total += 1,
        IpRefusal::TooManySessions { .. } => m.refused_sessions += 1,
        IpRefusal::TooManyFromIp { .. } | IpRefusal::TooManySessionsFromIp { .. } => {
            m.refused_per_ip += 1
        }
        IpRefusal::TooFastFromIp { .. } => m.refused_rate += 1,
    }
}
/// 120 random bits as 20 URL-safe base64 characters: socket ids and Engine.IO session ids.
pub(crate) fn new_id() -> SocketId {
    let mut raw = [0u8; 15];
    // The OS generator does not fail on the platforms mio supports; were it to, a zero id still
    // works as an id and only loses its unguessability.
    let _ = getrandom::getrandom(&mut raw);
    let mut id = [0u8; 20];
    let _ = URL_SAFE_NO_PAD.encode_slice(raw, &mut id);
    id
}
/// The URL-safe base64 alphabet, in which session ids are written.
const SID_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// A session id owned by `worker` (`< 64`): its first character names the worker, and a request
/// for the session that reaches another worker is handed to this one. 114 random bits remain.
pub(crate) fn new_sid(worker: usize) -> SocketId {
    let mut id = new_id();
    id[0] = SID_ALPHABET[worker % SID_ALPHABET.len()];
    id
}
/// The worker a session id names, if it is a well-formed id.
pub(crate) fn sid_worker(sid: &[u8]) -> Option<usize> {
    if sid.len() != 20 {
        return None;
    }
    SID_ALPHABET.iter().position(|&c| c == sid[0])
}
impl State {
    /// Worker `worker` of `workers`' state, started at `start`, when the wall clock read
    /// `unix` since the Unix epoch. `verifier` checks client tokens (`None`: JWT auth is off);
    /// every worker holds a clone of one, so that a reload of its keys reaches them all.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: Config,
        verifier: Option<Verifier>,
        worker: usize,
        workers: usize,
        ips: Arc<Mutex<IpLimiter>>,
        sessions: Arc<Mutex<IpLimiter>>,
        parked: Option<Arc<Parked>>,
        start: Instant,
        unix: Duration,
    ) -> io::Result<State> {
        let origins = |parsed: Result<Origins, OriginError>, flag: &str| {
            parsed.map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{flag}: {e}")))
        };
        let cors_origins = origins(config.cors_origins(), "--cors-origins")?;
        let allowed_origins = origins(config.allowed_origins(), "--allowed-origins")?;
        let limits = Limits::from(&config);
        let proxy = config
            .proxy()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        Ok(State {
            rooms: if config.redis.is_some() {
                Rooms::new(config.max_subscriptions).counting_members()
            } else {
                Rooms::new(config.max_subscriptions).logging_events()
            },
            io: Io {
                entries: Slab::new(),
                now: start,
                metrics: Metrics::default(),
                dead: Vec::new(),
                reparse: Vec::new(),
                resume: Vec::new(),
                idle: config.handshake_timeout,
                close_timeout: config.close_timeout,
                closing_all: false,
                max_queued: config.max_queued_bytes,
                slow: Vec::new(),
                corked_conns: VecDeque::new(),
                corked_total: 0,
                flushed_total: 0,
                write_now: Vec::new(),
                closed: Vec::new(),
            },
            deflate: Deflate::new(config.deflate_level, config.deflate_threshold),
            config,
            sids: HashMap::new(),
            push_seq: 0,
            shutdown_deadline: None,
            verifier,
            cors_origins,
            allowed_origins,
            ips,
            sessions,
            epoch: Epoch::new(start),
            limits,
            worker,
            workers,
            handed: Vec::new(),
            taken_over: Vec::new(),
            wall: (start, unix),
            joins: Vec::new(),
            parked,
            drain: None,
            proxy,
            request_client: None,
        })
    }

    /// Gives a connection accepted from `peer` (already counted against the caps: against its
    /// address if `attributed`, see [`Conn::attributed`]) a slot; returns its key, the slab's
    /// next vacant one.
    pub(crate) fn open_conn(&mut self, peer: IpAddr, attributed: bool, now: Instant) -> usize {
        let c = &self.config;
        let mut conn = Conn::new(peer, attributed, new_id(), now, now + c.handshake_timeout);
        conn.inbound = InboundBucket::new(self.limits.client.as_ref());
        let k = self.io.entries.insert(Entry::Conn(conn));
        self.io.metrics.connections_accepted += 1;
        k
    }

    /// The client address of each of `user`'s members here: a raw socket's connection, a
    /// Socket.IO session's handshake.
    pub(crate) fn member_addresses(&self, user: &str) -> Vec<IpAddr> {
        self.rooms
            .members(user)
            .iter()
            .filter_map(|&k| match self.io.entries.get(k)? {
                Entry::Conn(conn) => Some(conn.peer),
                Entry::Session(session) => Some(session.peer),
            })
            .collect()
    }

    /// `user`'s sockets on this worker, at most [`MAX_DEVICES`]; true when it has more; and how
    /// many there are. A member closing (no protocol any more) is neither listed nor counted, so
    /// that the count and the list agree.
    pub(crate) fn member_devices(&self, user: &str) -> (Vec<Device>, bool, usize) {
        let members = self.rooms.members(user);
        let sockets = members
            .iter()
            .filter(|&&k| self.io.entries.get(k).and_then(|e| e.protocol()).is_some())
            .count();
        let devices = members
            .iter()
            .filter_map(|&k| {
                let entry = self.io.entries.get(k)?;
                let (socket_id, address) = match entry {
                    Entry::Conn(c) => (String::from_utf8_lossy(&c.id).into_owned(), c.peer),
                    Entry::Session(s) => (s.socket_str().to_owned(), s.peer),
                };
                Some(Device {
                    socket_id,
                    protocol: entry.protocol()?,
                    address,
                    worker: self.worker,
                    subscribed_at: self.rooms.subscribed_at(k, user).unwrap_or(0),
                })
            })
            .take(MAX_DEVICES)
            .collect::<Vec<_>>();
        let more = sockets > devices.len();
        (devices, more, sockets)
    }

    /// Time since the Unix epoch at `now`, by the wall clock read when the worker started.
    pub(crate) fn unix(&self, now: Instant) -> Duration {
        let (at, unix) = self.wall;
        match now.checked_duration_since(at) {
            Some(since) => unix + since,
            None => unix.saturating_sub(at - now),
        }
    }

    pub(crate) fn on_bytes(&mut self, k: usize, data: &[u8], now: Instant) {
        let Some(conn) = self.io.conn_mut(k) else {
            return;
        };
        conn.last_heard = now;
        conn.ping_sent = None;
        match &mut conn.phase {
            Phase::Http { head, .. } => {
                head.extend_from_slice(data);
                self.on_http(k, now);
            }
            Phase::Body(_) => {
                self.on_body(k, data, now);
                // A completed POST is answered and leaves what followed it as the next head.
                self.on_http(k, now);
            }
            // Bounded: the runtime stops reading a connection whose `pending` holds a full
            // request head's worth (see `Conn::wants_input`).
            Phase::Poll { pending, .. } => pending.extend_from_slice(data),
            Phase::Open(_) => self.on_frames(k, data, now),
            Phase::Closing { .. } | Phase::Dead => {}
        }
    }

    /// Parses and routes every complete request head buffered on `k`, one after another.
    ///
    /// This loop is the only place a connection's next request is taken: an answer only puts
    /// the connection back to reading requests (see `answer`), so any number of pipelined
    /// requests is handled iteratively, never by recursion.
    pub(crate) fn on_http(&mut self, k: usize, now: Instant) {
        loop {
            let Some(conn) = self.io.conn_mut(k) else {
                return;
            };
            let Phase::Http { head, .. } = &mut conn.phase else {
                return;
            };
            match handshake::parse_request(head, self.config.max_handshake) {
                Ok(None) => {
                    if head.is_empty() {
                        // Let go of the buffer the last request came in.
                        *head = BytesMut::new();
                    }
                    return;
                }
                Err(e) => return self.reject(k, &e, now),
                Ok(Some((req, used))) => {
                    if let Some(owner) = self.owner_elsewhere(&req) {
                        return self.hand_over(k, owner);
                    }
                    let Some(Entry::Conn(conn)) = self.io.entries.get_mut(k) else {
                        return;
                    };
                    let Phase::Http { head, .. } = &mut conn.phase else {
                        return;
                    };
                    let _ = head.split_to(used);
                    let rest = mem::take(head);
                    self.route(k, req, rest, now);
                }
            }
        }
    }

    /// Routes one request, as its client's (see [`State::admit_request`]).
    fn route(&mut self, k: usize, req: Request, rest: BytesMut, now: Instant) {
        let Some(client) = self.admit_request(k, &req, now) else {
            return;
        };
        self.request_client = Some(client);
        self.route_to(k, req, rest, now);
        self.request_client = None;
    }

    /// The client `req` on connection `k` comes from: the connection's own address, or, from a
    /// trusted proxy, the one the proxy's header names (each request on its own: a proxy's
    /// keep-alive connection carries many clients' polling requests). A WebSocket upgrade makes
    /// the connection that client's, counted against its address from then on; `None` when
    /// that address is over its caps (the request is answered 429/503 and the connection
    /// closes).
    fn admit_request(&mut self, k: usize, req: &Request, now: Instant) -> Option<IpAddr> {
        let real_ip = &self.proxy.real_ip;
        let conn = self.io.conn_mut(k)?;
        if conn.attributed {
            if real_ip.trusted.is_empty() {
                warn_untrusted_forwarding(conn.peer, req);
            }
            return Some(conn.peer);
        }
        let client = real_ip.client_addr(conn.peer, req.headers_named(real_ip.header_name()));
        if !is_upgrade(req) {
            return Some(client);
        }
        let admitted = lock_ips(&self.ips).attribute(client, now);
        match admitted {
            Ok(()) => {
                conn.peer = client;
                conn.attributed = true;
                Some(client)
            }
            Err(refusal) => {
                count_refusal(&mut self.io.metrics, &refusal);
                debug!(conn = k, %client, %refusal, "proxied websocket refused");
                self.request_client = Some(client);
                self.reject(k, &HandshakeError::Refused(refusal), now);
                self.request_client = None;
                None
            }
        }
    }

    /// Connection `k` opened with a PROXY protocol header naming `client`: counted against
    /// that address now, or, when `client` is itself a trusted proxy (an HTTP proxy behind the
    /// balancer), left to each request's header. Over its caps, it is answered 429/503 and
    /// closes.
    pub(crate) fn proxied_from(&mut self, k: usize, client: IpAddr, now: Instant) {
        let trusted = self.proxy.real_ip.trusted.contains(client);
        let Some(conn) = self.io.conn_mut(k) else {
            return;
        };
        conn.peer = client;
        if trusted {
            return;
        }
        let admitted = lock_ips(&self.ips).attribute(client, now);
        match admitted {
            Ok(()) => conn.attributed = true,
            Err(refusal) => {
                count_refusal(&mut self.io.metrics, &refusal);
                debug!(conn = k, %client, %refusal, "connection refused");
                self.reject(k, &HandshakeError::Refused(refusal), now);
            }
        }
    }

    /// Routes one request: to the raw WebSocket, Socket.IO, or echo path, or a 404.
    fn route_to(&mut self, k: usize, req: Request, rest: BytesMut, now: Instant) {
        if !self.origin_allowed(&req) {
            self.io.metrics.origins_refused += 1;
            return self.reject(k, &HandshakeError::OriginNotAllowed, now);
        }
        if req.path == self.config.ws_path {
            match handshake::validate_upgrade(&req) {
                Err(e) => self.reject(k, &e, now),
                Ok(hs) => self.open_raw(k, &req, &hs, &rest, now),
            }
        } else if req.path == self.config.socketio_path {
            self.on_engine_request(k, req, rest, now);
        } else if self.config.echo_path.as_ref() == Some(&req.path) {
            match handshake::validate_upgrade(&req) {
                Err(e) => self.reject(k, &e, now),
                Ok(hs) => self.open_echo(k, &hs, &rest, now),
            }
        } else if let Some(probe) = Probe::at(&req.path) {
            self.answer_probe(k, probe, &req, rest, now);
        } else {
            self.reject(k, &HandshakeError::NotFound, now);
        }
    }

    /// Whether `req` comes from a browser origin `--allowed-origins` lets in; a request with no
    /// `Origin` is not from a browser page and passes.
    fn origin_allowed(&self, req: &Request) -> bool {
        let allowed = &self.allowed_origins;
        match req.header("origin") {
            _ if allowed.is_empty() || allowed.is_any() => true,
            None => true,
            Some(origin) => allowed.allows(origin),
        }
    }

    /// Accepts a `/ws` handshake in the format the client chose, or refuses it: 400 for a
    /// format it cannot have, 401 for a token that does not verify.
    fn open_raw(&mut self, k: usize, req: &Request, hs: &Handshake, rest: &[u8], now: Instant) {
        let chosen = match format::negotiate(hs.protocols.as_deref(), hs.query.as_deref()) {
            Ok(chosen) => chosen,
            Err(e) => return self.reject(k, &HandshakeError::Unacceptable(e.to_string()), now),
        };
        let identity = match self.identify(req, hs, now) {
            Ok(identity) => identity,
            Err(message) => return self.reject(k, &HandshakeError::Unauthorized(message), now),
        };
        let mut agreed = self.agree(hs);
        agreed.protocol = chosen.subprotocol;
        let recovery = self.parked.is_some();
        if let Some(conn) = self.io.conn_mut(k) {
            conn.format = chosen.format;
            conn.identity = identity;
            if recovery {
                let grace = match raw::resumes(hs.query.as_deref()) {
                    true => self.config.connect_timeout,
                    false => BROADCAST_GRACE,
                };
                conn.broadcasts_from = Some(now + grace);
            }
        }
        let mut out = Vec::with_capacity(256);
        handshake::write_accept_with(hs, &agreed, &mut out);
        self.open_websocket(k, Proto::Raw, &agreed, out, rest, now);
    }

    /// Accepts a handshake on `--echo-path`: no format, no token, permessage-deflate as anywhere.
    fn open_echo(&mut self, k: usize, hs: &Handshake, rest: &[u8], now: Instant) {
        let agreed = self.agree(hs);
        let mut out = Vec::with_capacity(256);
        handshake::write_accept_with(hs, &agreed, &mut out);
        self.open_websocket(k, Proto::Echo, &agreed, out, rest, now);
    }

    /// A text or binary message on the echo route, sent straight back with the same opcode;
    /// compressed, when the connection agreed permessage-deflate, by the rule pushes follow.
    fn on_echo_message(&mut self, k: usize, message: Event) {
        let (op, payload) = match &message {
            Event::Text(text) => (opcode::TEXT, text.as_bytes()),
            Event::Binary(bytes) => (opcode::BINARY, &bytes[..]),
            _ => return,
        };
        let Some(compress) = self.io.conn_mut(k).map(|c| c.deflate) else {
            return;
        };
        let frame = self.deflate.message_frame(op, payload, compress);
        self.io.send(k, &frame);
    }

    /// Who a `/ws` client is from its handshake: its token from `Authorization: Bearer` or else
    /// `?token=`, verified; with none, pending until `--auth-timeout` (browsers cannot set
    /// headers on a WebSocket, and a URL may end up in logs, so a first `auth` message is the
    /// other way in). A token that does not verify refuses the handshake with what the client
    /// may be told.
    fn identify(
        &mut self,
        req: &Request,
        hs: &Handshake,
        now: Instant,
    ) -> Result<Identity, &'static str> {
        let Some(verifier) = &self.verifier else {
            return Ok(Identity::Anyone);
        };
        let token = match req.header("authorization").and_then(auth::bearer) {
            Some(token) => Some(token.to_owned()),
            None => hs.query.as_deref().and_then(auth::query_token),
        };
        let Some(token) = token else {
            return Ok(Identity::new(true, now + self.config.auth_timeout));
        };
        match verifier.verify(&token, self.unix(now).as_secs()) {
            Ok(claims) => Ok(Identity::user(claims, self.config.jwt_leeway.as_secs())),
            Err(e) => {
                debug!(error = %e, "token refused at the handshake");
                self.io.metrics.auth_failures += 1;
                Err(e.message())
            }
        }
    }

    /// What herald agrees to on handshake `hs`: permessage-deflate when the client offers it
    /// acceptably and compression is on.
    pub(crate) fn agree(&self, hs: &Handshake) -> Agreement {
        let deflate = match &hs.extensions {
            Some(offers) if self.config.deflate => deflate::negotiate(offers),
            _ => None,
        };
        Agreement {
            deflate,
            protocol: None,
        }
    }

    /// Completes a WebSocket handshake with `response`, under what was `agreed`, and feeds the
    /// frames that followed it.
    pub(crate) fn open_websocket(
        &mut self,
        k: usize,
        proto: Proto,
        agreed: &Agreement,
        response: Vec<u8>,
        rest: &[u8],
        now: Instant,
    ) -> bool {
        let Some(conn) = self.io.conn_mut(k) else {
            return false;
        };
        conn.phase = Phase::Open(proto);
        // Socket.IO messages may be as large as Engine.IO's maxPayload.
        let max_message = match proto {
            Proto::EngineIo => self.config.max_payload,
            Proto::Raw | Proto::Echo => self.config.max_message,
        };
        let mut decoder = Decoder::new(max_message).with_max_fragments(self.config.max_fragments);
        if agreed.deflate.is_some() {
            conn.deflate = true;
            decoder.enable_deflate();
        }
        conn.decoder = Some(Box::new(decoder));
        self.io.metrics.handshakes_completed += 1;
        debug!(conn = k, ?proto, "websocket open");
        if !self.io.send(k, &Bytes::from(response)) {
            return false;
        }
        if !rest.is_empty() {
            self.on_frames(k, rest, now);
        }
        true
    }

    /// Answers a failed handshake with its HTTP status and closes.
    pub(crate) fn reject(&mut self, k: usize, e: &HandshakeError, now: Instant) {
        let status = e.status();
        if let Some(conn) = self.io.conn_mut(k) {
            let peer = self.request_client.unwrap_or(conn.peer);
            let warnings = &mut self.io.metrics.peer_warnings;
            peer_warn!(
                warnings,
                PeerFault::Handshake,
                now,
                %peer,
                status,
                error = %e,
                "handshake rejected"
            );
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
            if self.input_waits(k) {
                if let Some(conn) = self.io.conn_mut(k) {
                    conn.held_input
                        .get_or_insert_with(Default::default)
                        .extend_from_slice(input);
                }
                return;
            }
            let Some(conn) = self.io.conn_mut(k) else {
                return;
            };
            let Phase::Open(proto) = conn.phase else {
                return;
            };
            let Some(decoder) = conn.decoder.as_mut() else {
                return;
            };
            let decoded = decoder.decode(input);
            let inflated = decoder.message_was_compressed();
            match decoded {
                Ok((n, event)) => {
                    input = &input[n..];
                    let admit = match (&event, &self.limits.client) {
                        (None | Some(Event::Close(_)), _) | (_, None) => Admit::Yes,
                        (Some(_), Some(limit)) => conn.inbound.admit(limit, self.epoch.millis(now)),
                    };
                    if admit != Admit::Yes {
                        if !self.over_client_rate(k, proto, admit, now) {
                            return;
                        }
                        continue;
                    }
                    match event {
                        Some(Event::Ping(payload)) => {
                            // RFC 6455 §5.5.2: upon receipt of a Ping frame, an endpoint MUST
                            // send a Pong frame in response [...] with identical "Application
                            // data".
                            self.io.pong(k, frame::encode(opcode::PONG, &payload));
                        }
                        Some(Event::Pong(_)) => {}
                        Some(Event::Close(close)) => self.on_close_frame(k, close, now),
                        Some(message) => {
                            self.io.metrics.messages_received += 1;
                            self.io.metrics.messages_inflated += inflated as u64;
                            match proto {
                                Proto::Raw => self.on_raw_message(k, message, now),
                                Proto::EngineIo => self.on_engine_message(k, message, now),
                                Proto::Echo => self.on_echo_message(k, message),
                            }
                        }
                        None => {}
                    }
                }
                Err(e) => {
                    let code = CloseCode::from(&e);
                    peer_warn!(
                        self.io.metrics.peer_warnings,
                        PeerFault::Protocol,
                        now,
                        conn = k,
                        code = code.0,
                        error = %e,
                        "closing on a protocol fault"
                    );
                    self.start_close(k, code, &e.to_string(), now);
                    return;
                }
            }
        }
    }

    /// A message from `k` its bucket refused (`admit` is not `Yes`): the first of a run is
    /// answered with an error event, the next dropped, and a client still sending a burst's
    /// worth later is closed with 1008. Returns whether `k` is still open.
    fn over_client_rate(&mut self, k: usize, proto: Proto, admit: Admit, now: Instant) -> bool {
        const MESSAGE: &str = "rate limited";
        self.io.metrics.rate_limited_client += 1;
        let session = self.io.conn_mut(k).and_then(|c| c.session);
        match (admit, proto, session) {
            (Admit::Yes | Admit::Drop, ..) => true,
            (Admit::DropAndWarn, Proto::Raw, _) => {
                debug!(conn = k, "client over its message rate");
                self.raw_error(k, MESSAGE);
                true
            }
            (Admit::DropAndWarn, Proto::EngineIo, Some(s)) => {
                debug!(session = s, "client over its message rate");
                self.socketio_error(s, MESSAGE, now);
                true
            }
            (Admit::Close, Proto::Raw, _) => {
                peer_warn!(
                    self.io.metrics.peer_warnings,
                    PeerFault::Rate,
                    now,
                    conn = k,
                    "client kept sending over its message rate; closing"
                );
                self.start_close(k, CloseCode::POLICY, "rate limit exceeded", now);
                false
            }
            (Admit::Close, Proto::EngineIo, Some(s)) => {
                peer_warn!(
                    self.io.metrics.peer_warnings,
                    PeerFault::Rate,
                    now,
                    session = s,
                    "client kept sending over its message rate; closing"
                );
                self.close_session(s, "rate limit exceeded", Some(CloseCode::POLICY), now);
                false
            }
            (_, Proto::EngineIo, None) => true,
            // The echo has no error event to warn with: what is over the rate is dropped, and
            // a client that keeps at it is closed like any other.
            (Admit::DropAndWarn, Proto::Echo, _) => true,
            (Admit::Close, Proto::Echo, _) => {
                peer_warn!(
                    self.io.metrics.peer_warnings,
                    PeerFault::Rate,
                    now,
                    conn = k,
                    "echo client kept sending over its message rate; closing"
                );
                self.start_close(k, CloseCode::POLICY, "rate limit exceeded", now);
                false
            }
        }
    }

    /// Sends `reply`, a raw-protocol event in `k`'s format, as a text or binary frame.
    fn raw_send(&mut self, k: usize, reply: &[u8]) {
        let Some(conn) = self.io.conn_mut(k) else {
            return;
        };
        let op = if conn.format.is_binary() {
            opcode::BINARY
        } else {
            opcode::TEXT
        };
        self.io.send(k, &frame::encode(op, reply));
    }

    /// Sends `{"event":"error","data":{"message":...}}` to raw client `k`.
    fn raw_error(&mut self, k: usize, message: &str) {
        let Some(format) = self.io.conn_mut(k).map(|c| c.format) else {
            return;
        };
        self.raw_send(k, &raw::error(format, message));
    }

    /// Tells raw client `k` why, with an error event, then closes it with `code`.
    pub(crate) fn raw_refuse(&mut self, k: usize, message: &str, code: CloseCode, now: Instant) {
        self.raw_error(k, message);
        self.start_close(k, code, message, now);
    }

    /// Carries out a client's command for member `k`, a raw connection or a Socket.IO session:
    /// the one way a command from either protocol reaches the rooms or a client's identity, and
    /// so the place to follow what it changes. Counts the refusals that are authentication
    /// failures or forbidden; the caller answers in its own wire form. `None` when `k` is gone.
    pub(crate) fn client_command(
        &mut self,
        k: usize,
        command: Result<ClientCommand, Refusal>,
        now: Instant,
    ) -> Option<Result<Outcome, Refusal>> {
        let unix = self.unix(now).as_secs();
        let identity = match self.io.entries.get_mut(k) {
            Some(Entry::Conn(conn)) => &mut conn.identity,
            Some(Entry::Session(sess)) if !sess.closed => &mut sess.identity,
            _ => return None,
        };
        let tokens = Tokens {
            verifier: self.verifier.as_ref(),
            leeway_secs: self.config.jwt_leeway.as_secs(),
        };
        let join_later = self.parked.is_some();
        let outcome = commands::handle(
            &mut self.rooms,
            tokens,
            k,
            identity,
            command,
            unix,
            join_later,
        );
        match &outcome {
            Ok(outcome) => debug!(member = k, ?outcome, "client command"),
            Err(refusal) => {
                debug!(member = k, ?refusal, "client command refused");
                let m = &mut self.io.metrics;
                m.auth_failures += refusal.is_auth_failure() as u64;
                m.forbidden += (*refusal == Refusal::Forbidden) as u64;
            }
        }
        Some(outcome)
    }

    /// A text or binary message on the raw `/ws` protocol; answered in the connection's format.
    fn on_raw_message(&mut self, k: usize, message: Event, now: Instant) {
        let Some(format) = self.io.conn_mut(k).map(|c| c.format) else {
            return;
        };
        let message = match &message {
            Event::Text(text) => raw::Message::Text(text),
            Event::Binary(bytes) => raw::Message::Binary(bytes),
            _ => return,
        };
        let command = raw::decode(format, message)
            .map(ClientCommand::from)
            .map_err(Refusal::from);
        let Some(outcome) = self.client_command(k, command, now) else {
            return;
        };
        let reply = match outcome {
            Ok(Outcome::Subscribed { users, list, .. }) => {
                let id = self.io.conn_mut(k).map_or("", |c| c.id_str());
                let answer = raw::SubscribedAnswer {
                    users: &users,
                    list,
                    socket_id: id,
                    offset: None,
                    recovered: None,
                };
                raw::subscribed(format, &answer)
            }
            Ok(Outcome::Joining(sub)) => {
                let Some(conn) = self.io.conn_mut(k) else {
                    return;
                };
                let id = conn.id;
                let join = Join {
                    member: k,
                    id,
                    held: self.rooms.rooms_of(k).map(str::to_owned).collect(),
                    users: sub.users,
                    since: sub.offset.map_or(Since::Now, Since::Client),
                    reply: JoinReply::Raw { list: sub.list },
                    lookup: None,
                };
                return self.start_join(join);
            }
            Ok(Outcome::Unsubscribed { user_id, .. }) => raw::unsubscribed(format, &user_id),
            Ok(Outcome::Authenticated { user_id, exp }) => {
                raw::authenticated(format, &user_id, exp)
            }
            Err(refusal) => {
                let message = refusal.to_string();
                return match refusal.raw_close() {
                    Some(code) => self.raw_refuse(k, &message, code, now),
                    None => self.raw_error(k, &message),
                };
            }
        };
        self.raw_send(k, &reply);
    }

    fn on_close_frame(&mut self, k: usize, close: Option<(CloseCode, String)>, now: Instant) {
        // RFC 6455 §5.5.1: if an endpoint receives a Close frame and did not previously send a
        // Close frame, the endpoint MUST send a Close frame in response (typically echoing the
        // status code it received).
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

    /// Sends a close frame with `code` and waits for the client's answer.
    pub(crate) fn start_close(&mut self, k: usize, code: CloseCode, reason: &str, now: Instant) {
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
    pub(crate) fn enter_closing(&mut self, k: usize, now: Instant) {
        self.rooms.remove_conn(k);
        self.unlink(k, now);
        let Some(conn) = self.io.conn_mut(k) else {
            return;
        };
        if matches!(conn.phase, Phase::Dead) {
            return;
        }
        conn.phase = Phase::Closing {
            deadline: now + self.config.close_timeout,
        };
        conn.shutdown_when_flushed = true;
        if conn.out.is_empty() {
            self.io.write_now.push(k);
        }
    }

    pub(crate) fn peer_closed(&mut self, k: usize) {
        if let Some(conn) = self.io.conn_mut(k) {
            if conn.is_open() {
                // The peer left without a close frame: RFC 6455 §7.1.5 calls that 1006.
                self.io.metrics.count_close(CloseCode::ABNORMAL);
            }
        }
        self.io.kill(k);
    }

    /// Hands a push to this worker's recipients of its target, but the sockets of the users the
    /// router found over their rate; returns how many sockets took it (queued, written at the
    /// end of the turn).
    pub(crate) fn push(&mut self, job: &PushJob, now: Instant) -> usize {
        let offset = job.offset().map(|(seq, o)| (seq, o.clone()));
        let payload =
            Payload::new(job.notification.clone(), offset, &self.deflate).named(job.event.clone());
        let io = &mut self.io;
        let mut sockets = 0;
        match &job.target {
            Target::User(user) => {
                for &k in self.rooms.members(user) {
                    sockets += io.deliver(k, &payload, now) as usize;
                }
            }
            Target::Users(list) => {
                self.push_seq += 1;
                for user in list {
                    for &k in self.rooms.members(user) {
                        if io.mark(k, self.push_seq) {
                            sockets += io.deliver(k, &payload, now) as usize;
                        }
                    }
                }
            }
            Target::All => {
                self.push_seq += 1;
                // The sockets of users over their rate are marked with this push's number, and
                // the broadcast passes them over.
                for user in &job.except {
                    for &k in self.rooms.members(user) {
                        io.mark(k, self.push_seq);
                    }
                }
                sockets = io.broadcast(&payload, self.push_seq, now);
            }
        }
        io.metrics.deliveries += sockets as u64;
        debug!(target = ?job.target, sockets, worker = self.worker, "push");
        sockets
    }

    /// The worker whose session a request on the Socket.IO path names, when it is not this
    /// one.
    fn owner_elsewhere(&self, req: &Request) -> Option<usize> {
        if self.workers <= 1 || req.path != self.config.socketio_path {
            return None;
        }
        let query = crate::engineio::parse_query(req.query.as_deref()).ok()?;
        let owner = sid_worker(query.sid?.as_bytes())?;
        (owner != self.worker && owner < self.workers).then_some(owner)
    }

    /// Hands connection `k`, whose next request is for another worker's session, to that
    /// worker: with its buffered requests and any answers still queued, between two requests,
    /// so nothing is lost or reordered. It stays counted against the caps as it moves.
    fn hand_over(&mut self, k: usize, owner: usize) {
        let movable = matches!(
            self.io.entries.get(k),
            Some(Entry::Conn(c)) if c.session.is_none() && matches!(c.phase, Phase::Http { .. })
        );
        if !movable {
            return;
        }
        let Some(Entry::Conn(mut conn)) = self.io.entries.try_remove(k) else {
            return;
        };
        self.rooms.remove_conn(k);
        conn.corked = false;
        conn.writable_interest = false;
        debug!(
            conn = k,
            from = self.worker,
            to = owner,
            "connection handed over"
        );
        self.handed.push((k, Box::new(conn), owner));
    }

    /// Takes a connection another worker handed over and routes the request it carries;
    /// returns its key (the slab's next vacant one).
    pub(crate) fn adopt(&mut self, conn: Box<Conn>, now: Instant) -> usize {
        let mut conn = *conn;
        let corked = !conn.out.is_empty();
        conn.corked = corked;
        let k = self.io.entries.insert(Entry::Conn(conn));
        if corked {
            self.io.cork(k);
        }
        self.on_http(k, now);
        k
    }

    /// Shutdown begins: no new clients, HTTP answers close their connections, idle HTTP
    /// connections are dropped, and every client is listed to be closed in batches over
    /// `--drain-time` ([`State::drain_step`]) with a code that makes it reconnect.
    pub(crate) fn begin_shutdown(&mut self, now: Instant) {
        let drain = self.config.drain_time;
        info!(
            entries = self.io.entries.len(),
            drain = ?drain,
            "shutting down: closing every client with 1012 (service restart)"
        );
        self.shutdown_deadline = Some(now + drain + self.config.shutdown_timeout);
        self.io.closing_all = true;
        self.begin_drain(true, true, now);
    }

    /// The log's epoch changed under the connected clients (a cluster's Redis came back
    /// without its data; pushes made before this node entered its users again did not reach
    /// it): every client is closed over `--drain-time` with a code that makes it reconnect,
    /// and is then told `recovered: false`, as after a restart without state. herald keeps
    /// running and taking clients.
    pub(crate) fn begin_reconnect(&mut self, now: Instant) {
        if self.drain.as_ref().is_some_and(|d| !d.left.is_empty()) {
            return;
        }
        info!(
            entries = self.io.entries.len(),
            "the log's epoch changed: closing every client with 1012 for it to reconnect"
        );
        self.begin_drain(false, false, now);
    }

    /// Lists every client to be closed in batches over `--drain-time`; with `idle_http`, HTTP
    /// connections carrying no session are dropped at once.
    fn begin_drain(&mut self, idle_http: bool, keep_sessions: bool, now: Instant) {
        let drain = self.config.drain_time;
        let keys: Vec<usize> = self.io.entries.iter().map(|(k, _)| k).collect();
        let mut left = Vec::new();
        for k in keys {
            match self.io.entries.get(k) {
                Some(Entry::Session(s)) if !s.closed => left.push(k),
                Some(Entry::Conn(c)) => match c.phase {
                    Phase::Open(Proto::Raw | Proto::Echo) => left.push(k),
                    Phase::Http { .. } | Phase::Body(_) if idle_http && c.session.is_none() => {
                        self.io.kill(k)
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        let steps = (drain.as_millis() / DRAIN_STEP.as_millis()).max(1) as usize;
        let per_batch = left.len().div_ceil(steps).max(DRAIN_BATCH_MIN);
        // The first batch goes now; the last by the end of the drain time.
        left.reverse();
        self.drain = Some(Drain {
            left,
            per_batch,
            next: now,
            keep_sessions,
        });
        self.drain_step(now);
    }

    /// Closes the next batch of clients when it is due: raw clients with 1012, Socket.IO
    /// sessions by closing their transport (kept for recovery), so that every client reconnects.
    pub(crate) fn drain_step(&mut self, now: Instant) {
        let Some(drain) = &mut self.drain else {
            return;
        };
        if now < drain.next || drain.left.is_empty() {
            return;
        }
        drain.next = now + DRAIN_STEP;
        let at = drain.left.len().saturating_sub(drain.per_batch);
        let batch = drain.left.split_off(at);
        let keep = drain.keep_sessions;
        for k in batch {
            match self.io.entries.get(k) {
                Some(Entry::Session(s)) if !s.closed => {
                    if keep {
                        self.park(k, now);
                    }
                    let code = Some(CloseCode::SERVICE_RESTART);
                    self.close_session(k, "server restarting", code, now)
                }
                Some(Entry::Conn(c)) if c.is_open() => {
                    self.start_close(k, CloseCode::SERVICE_RESTART, "server restarting", now)
                }
                _ => {}
            }
        }
    }

    /// When the next drain batch is due, while clients are left to close.
    pub(crate) fn drain_due(&self) -> Option<Instant> {
        self.drain
            .as_ref()
            .filter(|d| !d.left.is_empty())
            .map(|d| d.next)
    }

    /// Keeps Socket.IO session `s`, whose transport is being lost for a reason its client
    /// reconnects after, for the client to take back with its `pid` (recovery on, the session
    /// connected).
    pub(crate) fn park(&mut self, s: usize, now: Instant) {
        let now_ms = self.unix(now).as_millis() as u64;
        let Some((pid, session)) = self.kept_session(s, now) else {
            return;
        };
        let (Some(parked), Some(Entry::Session(sess))) = (&self.parked, self.io.entries.get(s))
        else {
            return;
        };
        if !parked.let_go(&pid, sess.sid) {
            debug!(session = s, "session taken over by its client: not kept");
            return;
        }
        debug!(
            session = s,
            users = session.users.len(),
            "session kept for recovery"
        );
        parked.park(pid, session, now_ms);
        self.io.metrics.sessions_parked += 1;
    }

    /// What Socket.IO session `s` is, as it would be kept for its client to take back: its
    /// `pid` and state, kept until a window from `now`. `None` with recovery off, or for a
    /// session not connected or closed.
    fn kept_session(&self, s: usize, now: Instant) -> Option<(String, parked::Session)> {
        let now_ms = self.unix(now).as_millis() as u64;
        let window = self.config.recovery_window.as_millis() as u64;
        self.parked.as_ref()?;
        let Some(Entry::Session(sess)) = self.io.entries.get(s) else {
            return None;
        };
        let (Some(pid), Some(sid)) = (&sess.pid, &sess.socket) else {
            return None;
        };
        if sess.closed {
            return None;
        }
        let user = match &sess.identity {
            Identity::User { sub, .. } => Some(sub.to_string()),
            _ => None,
        };
        let session = parked::Session {
            sid: String::from_utf8_lossy(sid).into_owned(),
            users: self.rooms.rooms_of(s).map(str::to_owned).collect(),
            user,
            joined: sess.joined.max(sess.live.last),
            until_ms: now_ms + window,
        };
        Some((String::from_utf8_lossy(pid).into_owned(), session))
    }

    /// Connected session `s` as it is now, for its client to take over should it come back
    /// before herald noticed it left ([`Parked::hold`]); in a cluster, kept in Redis too while
    /// it is connected, so that its client can take it back on another node even if this one
    /// dies without parking it.
    pub(crate) fn share_session(&mut self, s: usize, now: Instant) {
        let (Some((pid, session)), Some(parked), Some(Entry::Session(sess))) = (
            self.kept_session(s, now),
            &self.parked,
            self.io.entries.get(s),
        ) else {
            return;
        };
        if parked.hold(&pid, sess.sid, &session) && self.config.redis.is_some() {
            parked.share_live(pid, session);
        }
    }

    /// Session `s` ends: it no longer holds its `pid` (unless another Engine.IO session took it
    /// over, which then does); in a cluster, unless it was just kept for its client, no node
    /// may take it back.
    pub(crate) fn forget_session(&mut self, s: usize) {
        let (Some(parked), Some(Entry::Session(sess))) = (&self.parked, self.io.entries.get(s))
        else {
            return;
        };
        let Some(pid) = &sess.pid else {
            return;
        };
        let pid = String::from_utf8_lossy(pid);
        if parked.let_go(&pid, sess.sid) && self.config.redis.is_some() {
            parked.forget(&pid);
        }
    }

    /// The log placed join `joined`: the member joins its rooms, is answered, and is handed
    /// what it missed, in order, before any push that comes after the join.
    pub(crate) fn on_joined(&mut self, joined: Joined, now: Instant) {
        let Joined {
            join,
            head,
            offset,
            missed,
            after,
        } = joined;
        let k = join.member;
        let (live, socket_id) = match self.io.entries.get(k) {
            Some(Entry::Conn(c)) if c.id == join.id && c.is_open() => (c.live, c.id),
            Some(Entry::Session(s)) if s.sid == join.id && !s.closed => {
                (s.live, s.socket.unwrap_or_default())
            }
            _ => return,
        };
        self.answer_join(join, live, socket_id, head, offset, missed, after, now);
        self.release_held(k, now);
    }

    /// [`State::on_joined`] for a member still there.
    #[allow(clippy::too_many_arguments)]
    fn answer_join(
        &mut self,
        mut join: Join,
        mut live: Live,
        socket_id: SocketId,
        head: u64,
        offset: Arc<str>,
        mut missed: Option<Result<Vec<Arc<Record>>, Unrecoverable>>,
        mut after: Vec<Arc<Record>>,
        now: Instant,
    ) {
        let k = join.member;
        // A session taken back whose offset the log cannot honour (another epoch, or older than
        // the log keeps) is not recovered: as from the reference server, the client gets a new
        // session, without the rooms of the old one, so that socket.io-client tells it
        // `recovered: false` and it subscribes again. Answered with the old ids, it would
        // believe it had everything.
        if let (
            JoinReply::Connect {
                recovering: true, ..
            },
            Some(Err(why)),
        ) = (&join.reply, &missed)
        {
            debug!(
                member = k,
                ?why,
                "session kept, but its offset is not honoured: a new one"
            );
            self.io.metrics.recoveries_failed += 1;
            join.users.clear();
            join.reply = JoinReply::Connect {
                sid: new_id(),
                pid: new_id(),
                recovering: false,
            };
            missed = None;
            after.clear();
        }
        if let JoinReply::Connect { sid, pid, .. } = &join.reply {
            if let Some(sess) = self.io.session_mut(k) {
                sess.socket = Some(*sid);
                sess.pid = Some(*pid);
                sess.joined = head;
                sess.connect_deadline = None;
            }
        }
        let unix_secs = self.unix(now).as_secs();
        for user in &join.users {
            if let Err(e) = self.rooms.subscribe_at(k, user, unix_secs) {
                // Another join of this member took the last room first.
                let message = format!("subscribe: {e}");
                return self.join_refused(k, &join.reply, &message, now);
            }
        }
        let (recovered, missed) = match missed {
            None => (None, Vec::new()),
            Some(Ok(records)) => (Some(true), records),
            Some(Err(why)) => {
                debug!(member = k, ?why, "offset not honoured");
                (Some(false), Vec::new())
            }
        };
        let m = &mut self.io.metrics;
        match recovered {
            Some(true) => m.recoveries += 1,
            Some(false) => m.recoveries_failed += 1,
            None => {}
        }
        let socket_id = std::str::from_utf8(&socket_id).unwrap_or("").to_owned();
        let list = matches!(
            join.reply,
            JoinReply::Raw { list: true } | JoinReply::Event { list: true, .. }
        );
        let answer = raw::SubscribedAnswer {
            users: &join.users,
            list,
            socket_id: &socket_id,
            offset: Some(&offset),
            recovered,
        };
        match &join.reply {
            JoinReply::Raw { .. } => {
                let Some(format) = self.io.conn_mut(k).map(|c| c.format) else {
                    return;
                };
                // Broadcasts held since it opened: those made up to the answer's offset come
                // before it, later ones after it; a recovery replays them below in their place
                // instead.
                if recovered != Some(true) {
                    self.io.send_held_through(k, head);
                }
                self.raw_send(k, &raw::subscribed(format, &answer));
                self.io.release_broadcasts(k, recovered != Some(true));
                // What it let go of counts as handed live: a broadcast among the pushes that
                // reached its node while the join waited is not handed to it again below.
                if let Some(c) = self.io.conn_mut(k) {
                    live = c.live;
                }
            }
            JoinReply::Event { ack, .. } => {
                self.socketio_subscribed(k, *ack, answer.to_json(), &offset, now);
            }
            JoinReply::Connect { .. } => {}
        }
        for record in missed.into_iter().chain(after) {
            // A push that reached users the member held already, or everyone, was handed to it
            // as it came if it came while the member took pushes live.
            let old = matches!(record.target, Target::All) || record.reaches(&join.held);
            if old && live.covers(record.seq) {
                continue;
            }
            self.replay(k, &record, now);
        }
        if let JoinReply::Connect {
            sid,
            pid,
            recovering,
        } = &join.reply
        {
            if *recovering {
                self.io.metrics.sessions_recovered += 1;
            }
            let sid = std::str::from_utf8(sid).unwrap_or("");
            let pid = std::str::from_utf8(pid).unwrap_or("");
            self.socketio_connected(k, sid, Some(pid), now);
        }
        if !matches!(join.reply, JoinReply::Raw { .. }) {
            self.share_session(k, now);
        }
    }

    /// Lists `join` for the runtime to place in the log; what member `k` sends meanwhile waits.
    pub(crate) fn start_join(&mut self, join: Join) {
        match self.io.entries.get_mut(join.member) {
            Some(Entry::Conn(c)) => c.joining = true,
            Some(Entry::Session(s)) => s.joining = true,
            None => return,
        }
        self.joins.push(join);
    }

    /// Whether what connection `k` sent must wait: a join of its own, or of the session it
    /// carries, waits for the log.
    fn input_waits(&self, k: usize) -> bool {
        let Some(Entry::Conn(c)) = self.io.entries.get(k) else {
            return false;
        };
        c.joining
            || c.session.is_some_and(
                |s| matches!(self.io.entries.get(s), Some(Entry::Session(sess)) if sess.joining),
            )
    }

    /// Member `k`'s join was answered: what it sent meanwhile is handled now, in order, and a
    /// connection whose reading paused is read again.
    fn release_held(&mut self, k: usize, now: Instant) {
        match self.io.entries.get_mut(k) {
            Some(Entry::Conn(c)) => {
                c.joining = false;
                let held = c.held_input.take();
                let paused = mem::take(&mut c.read_paused);
                if let Some(held) = held {
                    self.on_frames(k, &held, now);
                }
                if paused {
                    self.io.resume.push(k);
                }
            }
            Some(Entry::Session(sess)) => {
                sess.joining = false;
                let held = mem::take(&mut sess.held);
                let ws = match sess.transport {
                    Transport::WebSocket { ws } | Transport::Upgrading { ws, .. } => Some(ws),
                    Transport::Polling { .. } => None,
                };
                self.polled_packets(k, held, now);
                if let Some(ws) = ws {
                    let input = self.io.conn_mut(ws).and_then(|c| c.held_input.take());
                    if let Some(input) = input {
                        self.on_frames(ws, &input, now);
                    }
                }
            }
            None => {}
        }
    }

    /// Hands member `k` one push it missed.
    fn replay(&mut self, k: usize, record: &Record, now: Instant) {
        let offset = Some((record.seq, record.offset.clone()));
        let payload = Payload::new(record.notification.clone(), offset, &self.deflate)
            .named(record.event.clone());
        if self.io.hand(k, &payload, now) != Handed::No {
            self.io.metrics.replayed += 1;
        }
    }

    /// A join the rooms refused at the last moment: answered as the command would have been.
    fn join_refused(&mut self, k: usize, reply: &JoinReply, message: &str, now: Instant) {
        match reply {
            JoinReply::Raw { .. } => self.raw_error(k, message),
            JoinReply::Event { ack, .. } => self.socketio_refuse(k, *ack, message, now),
            JoinReply::Connect { sid, pid, .. } => {
                let sid = std::str::from_utf8(sid).unwrap_or("").to_owned();
                let pid = std::str::from_utf8(pid).unwrap_or("").to_owned();
                self.socketio_connected(k, &sid, Some(&pid), now)
            }
        }
    }

    /// Removes the entries closed during this batch, cutting the links sessions and connections
    /// hold to each other.
    pub(crate) fn reap(&mut self, now: Instant) {
        self.drop_slow(now);
        // Parsing one connection's next request may answer another's held GET and list that
        // one in turn; each pass is a plain loop, and each connection can be listed only once
        // per answered GET.
        while !self.io.reparse.is_empty() {
            for k in mem::take(&mut self.io.reparse) {
                self.on_http(k, now);
            }
        }
        while !self.io.dead.is_empty() {
            for k in mem::take(&mut self.io.dead) {
                self.unlink(k, now);
                match self.io.entries.try_remove(k) {
                    Some(Entry::Conn(conn)) => {
                        self.io.closed.push(k);
                        conn.uncount(&mut lock_ips(&self.ips));
                        self.rooms.remove_conn(k);
                        debug!(conn = k, "connection closed");
                    }
                    Some(Entry::Session(s)) => {
                        self.rooms.remove_conn(k);
                        self.sids.remove(&s.sid);
                        // Whichever way it closed, it holds its `pid` no more.
                        if let (Some(parked), Some(pid)) = (&self.parked, &s.pid) {
                            parked.let_go(&String::from_utf8_lossy(pid), s.sid);
                        }
                        lock_ips(&self.sessions).on_disconnect(s.peer);
                        debug!(session = k, "session closed");
                    }
                    None => {}
                }
            }
        }
    }

    /// Takes the slow consumers found during the batch out of their rooms; a slow Socket.IO
    /// session, or one whose WebSocket was slow, is closed.
    fn drop_slow(&mut self, now: Instant) {
        for k in mem::take(&mut self.io.slow) {
            match self.io.entries.get(k) {
                Some(Entry::Conn(_)) => {
                    self.rooms.remove_conn(k);
                    self.unlink(k, now);
                }
                Some(Entry::Session(_)) => {
                    let code = Some(CloseCode::SLOW_CONSUMER);
                    self.park(k, now);
                    self.close_session(k, "slow consumer", code, now);
                }
                None => {}
            }
        }
    }

    /// This worker's counters and gauges, for `GET /metrics`.
    pub(crate) fn report(&mut self) -> WorkerReport {
        let m = &mut self.io.metrics;
        m.compressions = self.deflate.runs();
        (m.compressed_bytes_in, m.compressed_bytes_out) = self.deflate.bytes();
        let mut g = Gauges {
            rooms: self.rooms.len(),
            subscriptions: self.rooms.subscriptions(),
            ..Gauges::default()
        };
        for (_, e) in &self.io.entries {
            if let Some(p) = e.protocol() {
                g.sockets[p as usize] += 1;
            }
            match e {
                Entry::Conn(c) => {
                    g.connections += 1;
                    g.websockets += c.is_open() as usize;
                    g.deflate_websockets += (c.is_open() && c.deflate) as usize;
                    g.held_polls += matches!(c.phase, Phase::Poll { .. }) as usize;
                    g.queued_bytes += c.queued;
                }
                Entry::Session(s) => {
                    g.sessions += 1;
                    g.queued_bytes += s.queued;
                }
            }
        }
        WorkerReport {
            worker: self.worker,
            metrics: self.io.metrics.clone(),
            gauges: g,
        }
    }
}
impl Io {
    pub(crate) fn conn_mut(&mut self, k: usize) -> Option<&mut Conn> {
        match self.entries.get_mut(k) {
            Some(Entry::Conn(c)) => Some(c),
            _ => None,
        }
    }

    pub(crate) fn session_mut(&mut self, k: usize) -> Option<&mut Session> {
        match self.entries.get_mut(k) {
            Some(Entry::Session(s)) if !s.closed => Some(s),
            _ => None,
        }
    }

    /// Sends pong `frame` to `k`, or holds it while other frames wait to be written: then a
    /// newer ping's pong replaces the one held. RFC 6455 §5.5.3: "If an endpoint receives a Ping
    /// frame and has not yet sent Pong frame(s) in response to previous Ping frame(s), the
    /// endpoint MAY elect to send a Pong frame for only the most recently processed Ping frame."
    /// So a client that pings and never reads is owed one pong, not a growing queue.
    pub(crate) fn pong(&mut self, k: usize, frame: Bytes) {
        let Some(conn) = self.conn_mut(k) else {
            return;
        };
        // Frames queued this turn are not a reason to hold it: they are written at the turn's
        // end, the pong with them. Only a socket that refused bytes (WRITABLE interest) holds it.
        if !conn.writable_interest {
            self.send(k, &frame);
            return;
        }
        if conn.pending_pong.replace(Box::new(frame)).is_some() {
            self.metrics.pongs_dropped += 1;
        }
        // The held pong follows the frames waiting for the socket to take them.
    }

    /// Queues `bytes` for connection `k`, to be written by the runtime at the end of a turn with
    /// everything else queued for it (see [`Io::next_corked`]); false when `k` is gone, closing as
    /// a slow consumer, or would pass the slow-consumer limit with it (then it is closed as one).
    pub(crate) fn send(&mut self, k: usize, bytes: &Bytes) -> bool {
        let max = self.max_queued;
        let Some(conn) = self.conn_mut(k) else {
            return false;
        };
        if matches!(conn.phase, Phase::Dead) || conn.slow {
            return false;
        }
        if over_limit(conn.queued, bytes.len(), max) {
            self.slow_consumer(k);
            return false;
        }
        conn.enqueue(bytes.clone());
        let flush_now = conn.queued >= CORKED_FLUSH_AT;
        if !conn.corked {
            conn.corked = true;
            self.cork(k);
        }
        if flush_now {
            self.write_now.push(k);
        }
        true
    }

    /// Closes `k`, a connection or polling session whose queue would pass the limit, with 4008:
    /// what waited is dropped (but a partly written frame), so its memory is freed at once, and
    /// the close frame goes last. Its rooms are left after the batch ([`State::drop_slow`]).
    pub(crate) fn slow_consumer(&mut self, k: usize) {
        self.metrics.slow_consumers += 1;
        let close_timeout = self.close_timeout;
        match self.entries.get_mut(k) {
            Some(Entry::Conn(conn)) => {
                debug!(conn = k, queued = conn.queued, "slow consumer");
                conn.slow = true;
                conn.drop_queued();
                if conn.is_open() {
                    conn.enqueue(frame::encode_close(
                        CloseCode::SLOW_CONSUMER,
                        "slow consumer: reconnect",
                    ));
                    self.metrics.count_close(CloseCode::SLOW_CONSUMER);
                }
                conn.phase = Phase::Closing {
                    deadline: self.now + close_timeout,
                };
                conn.shutdown_when_flushed = true;
            }
            Some(Entry::Session(sess)) => {
                debug!(session = k, queued = sess.queued, "slow consumer");
                sess.queue = VecDeque::new();
                sess.queued = 0;
            }
            None => return,
        }
        self.slow.push(k);
        self.write_now.push(k);
    }

    /// Lists `k` (marked `corked`) to be written at the end of a turn.
    pub(crate) fn cork(&mut self, k: usize) {
        self.corked_conns.push_back(k);
        self.corked_total += 1;
    }

    /// Whether connections wait to be written.
    pub(crate) fn corked(&self) -> bool {
        !self.corked_conns.is_empty()
    }

    /// The connection listed longest, to be written now: taken off the list.
    pub(crate) fn next_corked(&mut self) -> Option<usize> {
        let k = self.corked_conns.pop_front()?;
        self.flushed_total += 1;
        if let Some(conn) = self.conn_mut(k) {
            conn.corked = false;
        }
        Some(k)
    }

    /// Marks `k` as handed push `seq`; false when it already was (a socket of two listed users).
    fn mark(&mut self, k: usize, seq: u64) -> bool {
        let mark = match self.entries.get_mut(k) {
            Some(Entry::Conn(c)) => &mut c.push_mark,
            Some(Entry::Session(s)) => &mut s.push_mark,
            None => return false,
        };
        mem::replace(mark, seq) != seq
    }

    /// Hands a push to room member `k` as it comes, in the wire form it speaks.
    fn deliver(&mut self, k: usize, payload: &Payload, now: Instant) -> bool {
        let handed = self.hand(k, payload, now);
        // A broadcast held for a raw socket before its first subscribe is not taken live: a
        // recovery replays it in its place.
        if handed == Handed::Now && payload.seq() != 0 {
            match self.entries.get_mut(k) {
                Some(Entry::Conn(c)) => c.live.saw(payload.seq()),
                Some(Entry::Session(s)) => s.live.saw(payload.seq()),
                None => {}
            }
        }
        handed != Handed::No
    }

    /// Hands a push, live or replayed, to room member `k` in the wire form it speaks.
    pub(crate) fn hand(&mut self, k: usize, payload: &Payload, now: Instant) -> Handed {
        let sent = match self.entries.get(k) {
            Some(Entry::Conn(c)) if c.is_raw() => {
                let frame = match c.format {
                    Format::Json => payload.raw_frame(c.deflate),
                    Format::MessagePack => match payload.msgpack_frame(c.deflate) {
                        Some(frame) => frame,
                        None => {
                            self.metrics.msgpack_skipped += 1;
                            return Handed::No;
                        }
                    },
                };
                self.metrics.deliveries_compressed += frame_is_compressed(frame) as u64;
                match c.broadcasts_from {
                    // Only a broadcast reaches a raw socket before its first subscribe. Past its
                    // grace it still holds them while that subscribe waits for the log: let go
                    // now, they would come before the answer and, for a recovery, again in the
                    // replay.
                    Some(at) if now < at || c.joining => {
                        let frame = frame.clone();
                        self.hold_broadcast(k, payload.seq(), frame);
                        return Handed::Held;
                    }
                    // Its grace is over and the sweep has not seen it yet: what it held first.
                    Some(_) => self.release_broadcasts(k, true),
                    None => {}
                }
                self.send(k, frame)
            }
            Some(Entry::Session(s)) if !s.closed => match s.transport {
                Transport::WebSocket { ws } => {
                    let deflate = self.conn_mut(ws).is_some_and(|c| c.deflate);
                    let frame = payload.sio_frame(deflate);
                    self.metrics.deliveries_compressed += frame_is_compressed(frame) as u64;
                    self.send(ws, frame)
                }
                _ => self.session_send(k, payload.sio_packet(), now),
            },
            _ => false,
        };
        if sent {
            Handed::Now
        } else {
            Handed::No
        }
    }

    /// Holds a broadcast for raw socket `k`, which has not subscribed yet; past
    /// [`MAX_HELD_BROADCASTS`] they are let go at once.
    fn hold_broadcast(&mut self, k: usize, seq: u64, frame: Bytes) {
        let Some(conn) = self.conn_mut(k) else {
            return;
        };
        let held = conn.held_broadcasts.get_or_insert_with(Default::default);
        held.push((seq, frame));
        if held.len() >= MAX_HELD_BROADCASTS {
            self.release_broadcasts(k, true);
        }
    }

    /// Sends raw socket `k` the broadcasts it holds up to log offset `head` (and those without
    /// an offset among them), in the order they came; it holds the rest.
    pub(crate) fn send_held_through(&mut self, k: usize, head: u64) {
        let Some(held) = self.conn_mut(k).and_then(|c| c.held_broadcasts.as_mut()) else {
            return;
        };
        let through = held
            .iter()
            .rposition(|&(seq, _)| seq != 0 && seq <= head)
            .map_or(0, |i| i + 1);
        let early: Vec<(u64, Bytes)> = held.drain(..through).collect();
        for (seq, frame) in &early {
            if self.send(k, frame) {
                if let Some(conn) = self.conn_mut(k) {
                    conn.live.saw(*seq);
                }
            }
        }
    }

    /// Raw socket `k` takes broadcasts as they come from now on; those it held are sent first
    /// (`send`), or dropped when a recovery just handed them over.
    pub(crate) fn release_broadcasts(&mut self, k: usize, send: bool) {
        let Some(conn) = self.conn_mut(k) else {
            return;
        };
        conn.broadcasts_from = None;
        let Some(held) = conn.held_broadcasts.take() else {
            return;
        };
        if send {
            // Handed as they came, in order: a subscribe with an offset later on does not
            // replay them again.
            for (seq, frame) in held.iter() {
                if self.send(k, frame) {
                    if let Some(conn) = self.conn_mut(k) {
                        conn.live.saw(*seq);
                    }
                }
            }
        }
    }

    /// Hands a push to every raw socket and every connected Socket.IO socket, but those already
    /// marked with push `seq`; returns how many took it.
    fn broadcast(&mut self, payload: &Payload, seq: u64, now: Instant) -> usize {
        let mut sockets = 0;
        // Walks the slab by index: a session's delivery writes to another entry (its WebSocket),
        // which an iterator's borrow would forbid.
        for k in 0..self.entries.capacity() {
            let wanted = match self.entries.get(k) {
                Some(Entry::Conn(c)) => c.is_raw() && c.push_mark != seq,
                Some(Entry::Session(s)) => !s.closed && s.socket.is_some() && s.push_mark != seq,
                None => false,
            };
            if wanted {
                sockets += self.deliver(k, payload, now) as usize;
            }
        }
        sockets
    }

    /// Marks `k` closed; it leaves the slab (and a connection's socket closes) after this batch
    /// of events.
    pub(crate) fn kill(&mut self, k: usize) {
        let newly = match self.entries.get_mut(k) {
            Some(Entry::Conn(conn)) => {
                !matches!(mem::replace(&mut conn.phase, Phase::Dead), Phase::Dead)
            }
            Some(Entry::Session(s)) => !mem::replace(&mut s.closed, true),
            None => false,
        };
        if newly {
            self.dead.push(k);
        }
    }
}
/// What became of a push handed to one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handed {
    /// Not taken: the member is gone, closing, or speaks a form the push has not.
    No,
    /// Queued to be written.
    Now,
    /// Held for a raw socket until its first subscribe (see [`Conn::broadcasts_from`]).
    Held,
}

/// Whether queueing `len` more bytes behind `queued` passes the slow-consumer limit `max`. A
/// message on an empty queue always goes, however large: a client that reads gets it.
pub(crate) fn over_limit(queued: usize, len: usize, max: usize) -> bool {
    queued > 0 && queued.saturating_add(len) > max
}
/// Whether a server frame has RSV1, permessage-deflate's compressed bit, set.
fn frame_is_compressed(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x40 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_id_names_its_worker() {
        for worker in 0..64 {
            let sid = new_sid(worker);
            assert_eq!(sid_worker(&sid), Some(worker));
            assert!(sid.iter().all(|c| SID_ALPHABET.contains(c)));
        }
        assert_ne!(new_sid(3), new_sid(3));
        assert_eq!(sid_worker(b"short"), None);
        assert_eq!(sid_worker(b"!aaaaaaaaaaaaaaaaaaa"), None);
    }
}
