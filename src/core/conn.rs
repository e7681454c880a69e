//! One client connection as a worker's state holds it: where it stands in its life, and the
//! bytes not written yet. The socket is the runtime's; [`Conn::flush`] is handed it.
//!
//! Memory: an idle open connection holds one heap block, its boxed WebSocket decoder (whose message
//! buffer exists only while a message is arriving); the slab slot itself stays small, so an
//! Engine.IO session's slot beside it is small too. The handshake buffer exists only until the
//! request is complete; the write queue is empty (and unallocated) unless the socket pushed back.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::mem;
use std::net::IpAddr;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::core::identity::Identity;
use crate::limits::{InboundBucket, IpLimiter};
use crate::protocol::format::Format;
use crate::ws::Decoder;

/// Where a connection stands.
pub enum Phase {
    /// Reading an HTTP request head: a WebSocket handshake, or an Engine.IO long-polling request
    /// (a keep-alive connection comes back here after each response). `head` holds what arrived
    /// so far (a `BytesMut`, so taking one pipelined request off its front costs nothing however
    /// many follow); the connection is closed if the request is not complete by `deadline`.
    Http { head: BytesMut, deadline: Instant },
    /// Reading the body of an Engine.IO polling POST; boxed, as it is rare and large, so every
    /// slab slot stays small.
    Body(Box<PostBody>),
    /// An Engine.IO polling GET held open until [`Conn::session`] has packets to send. Bytes the
    /// client sends meanwhile wait in `pending` for the next request; once `pending` holds a
    /// request head's worth the connection is not read until the GET is answered (see
    /// [`Conn::wants_input`]), so a client cannot grow it without bound.
    Poll { meta: HttpMeta, pending: BytesMut },
    /// WebSocket open, speaking `Proto`.
    Open(Proto),
    /// herald sent its last bytes (a close frame or an HTTP error) and shuts its write side once
    /// they are flushed; it discards input until the peer closes or `deadline` passes.
    Closing { deadline: Instant },
    /// Closed; removed from the slab after the current batch of events, so a slab key is never
    /// reused while events for it may still be pending.
    Dead,
}

/// A polling POST whose body is arriving.
pub struct PostBody {
    pub body: Vec<u8>,
    /// The body's `Content-Length`.
    pub need: usize,
    pub meta: HttpMeta,
    pub deadline: Instant,
    /// The session, named by id rather than slab key: it may close while the body is in flight.
    pub sid: SocketId,
}

/// What an open WebSocket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// The `{"event","data"}` protocol at `/ws`.
    Raw,
    /// Engine.IO v4 packets of the session in [`Conn::session`].
    EngineIo,
    /// The conformance echo at `--echo-path`: every text and binary message goes back as it
    /// came. Never a recipient of pushes.
    Echo,
}

/// What an HTTP response to a polling request needs to know of its request.
#[derive(Debug, Clone, Default)]
pub struct HttpMeta {
    /// Which CORS headers the answer carries.
    pub cors: Cors,
    /// The client did not ask to close the connection after the response.
    pub keep_alive: bool,
}

/// The CORS headers of a polling answer, decided from `--cors-origins` and the request's
/// `Origin` (see `core::polling::cors`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Cors {
    /// No `--cors-origins`: no CORS headers, the answer is the same whatever the `Origin`.
    #[default]
    Off,
    /// `--cors-origins '*'`: `Access-Control-Allow-Origin: *`, the same for every `Origin`.
    Any,
    /// The list admits the request's `Origin`, kept here to be echoed back with credentials
    /// allowed. Checked well-formed by the list's matcher, so it is a valid header value.
    Allowed(Box<str>),
    /// The list does not admit the request's `Origin` (or it sent none): no CORS headers, but
    /// the answer says it depends on `Origin`, so that no cache hands it to an admitted one.
    Refused,
}

/// A socket id as clients see it: 20 characters of URL-safe base64 (120 random bits).
pub type SocketId = [u8; 20];

pub struct Conn {
    pub phase: Phase,
    /// The frame decoder, from the WebSocket handshake on (boxed: a polling connection or an
    /// Engine.IO session's slab slot does not carry its size).
    pub decoder: Option<Box<Decoder>>,
    /// Bytes not yet written, in order; the front may be partly written (it is advanced in place).
    pub out: VecDeque<Bytes>,
    /// The bytes `out` holds, kept as it changes: what the slow-consumer limit is checked against.
    pub queued: usize,
    /// Closed as a slow consumer: nothing more is queued for it.
    pub slow: bool,
    /// Whether `WRITABLE` interest is registered: while `out` holds bytes the socket refused.
    pub writable_interest: bool,
    /// Listed in the worker's corked set: `out` holds frames to write at the end of this turn.
    pub corked: bool,
    /// Shut the write side down once `out` drains (set when entering [`Phase::Closing`]).
    pub shutdown_when_flushed: bool,
    /// permessage-deflate was agreed: pushes worth compressing go out compressed.
    pub deflate: bool,
    /// The raw protocol's wire format, chosen at the handshake.
    pub format: Format,
    /// When the peer last sent anything.
    pub last_heard: Instant,
    /// When herald sent a ping still unanswered, if it did.
    pub ping_sent: Option<Instant>,
    pub id: SocketId,
    /// The sequence number of the last multi-user push this socket was handed, so a socket
    /// subscribed to several of its users receives it once.
    pub push_mark: u64,
    /// The pushes of the recovery log handed to it as they came.
    pub live: Live,
    /// The Engine.IO session this connection carries (as its WebSocket, its upgrade probe, or
    /// with a polling request in flight). The session points back at it; both links are cut
    /// together.
    pub session: Option<usize>,
    /// Whether any request on this connection was answered (a keep-alive polling connection);
    /// one that never was and times out counts as a handshake timeout.
    pub served: bool,
    /// The client's address: the TCP peer's, or the one a PROXY protocol header gave, or, once a
    /// WebSocket upgrade made a connection from a trusted proxy one client's, that client's.
    /// Counted against the per-address caps until the connection closes if `attributed`.
    pub peer: IpAddr,
    /// `peer` is counted against the per-address caps. A connection from a trusted proxy is not
    /// (it carries many clients' requests; each names its client in a header): it counts in the
    /// total only, until a WebSocket upgrade makes it one client's.
    pub attributed: bool,
    /// Its budget of client messages (`--client-rate`); WebSocket frames only (a polling
    /// session's packets are counted on the session).
    pub inbound: InboundBucket,
    /// Who the raw protocol's client is (Engine.IO sessions keep theirs on the session).
    pub identity: Identity,
    /// The answer to the latest ping, held while other frames wait in `out` and written once
    /// they are: a newer ping replaces it, so a client that pings and never reads costs one pong.
    /// Boxed: rarely set, and 8 bytes in every connection's slot rather than 32.
    pub pending_pong: Option<Box<Bytes>>,
    /// The loop stopped reading this connection (see [`Conn::wants_input`]) and must read it
    /// again once it wants input: with edge-triggered readiness no new event would say so.
    pub read_paused: bool,
    /// A join of its own waits for the log ([`crate::router::mailbox::Join`]): what the client
    /// sent after it waits too, in `held_input`, and nothing more is read meanwhile, so that
    /// its messages are answered in the order sent.
    pub joining: bool,
    pub held_input: Option<Box<BytesMut>>,
    /// With recovery on, a raw socket that has not subscribed yet holds the broadcasts it is
    /// handed (in `held_broadcasts`) until its first subscribe is answered, or until this
    /// instant if it subscribes to nothing (a second after it opened, or `--connect-timeout`
    /// for a client that said `resume=1`): so that a client resuming with an offset gets what
    /// it missed in order, not after newer broadcasts.
    pub broadcasts_from: Option<Instant>,
    /// The held broadcasts' log offsets (0: none) and frames.
    pub held_broadcasts: Option<Box<Vec<(u64, Bytes)>>>,
}

/// The log offsets of the first and last push a member was handed as it came (not replayed):
/// every push in between that reached it was handed to it. 0: none yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Live {
    pub first: u64,
    pub last: u64,
}

impl Live {
    /// Push `seq` was handed to the member.
    pub fn saw(&mut self, seq: u64) {
        if seq == 0 {
            return;
        }
        if self.first == 0 {
            self.first = seq;
        }
        self.last = seq;
    }

    /// Whether push `seq` came while the member was taking pushes live.
    pub fn covers(&self, seq: u64) -> bool {
        self.first != 0 && (self.first..=self.last).contains(&seq)
    }
}

/// What one [`Conn::flush`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub written: usize,
    /// Everything queued is written and the write side is to be shut (the peer sees FIN after
    /// our last frame).
    pub shut: bool,
}

/// Buffers handed to one `writev`.
const WRITEV_MAX: usize = 64;

impl Conn {
    /// A connection from `peer`, counted against its address or (`attributed` false) not yet.
    pub fn new(
        peer: IpAddr,
        attributed: bool,
        id: SocketId,
        now: Instant,
        deadline: Instant,
    ) -> Self {
        Conn {
            phase: Phase::Http {
                head: BytesMut::new(),
                deadline,
            },
            decoder: None,
            out: VecDeque::new(),
            queued: 0,
            slow: false,
            writable_interest: false,
            corked: false,
            shutdown_when_flushed: false,
            deflate: false,
            format: Format::Json,
            last_heard: now,
            ping_sent: None,
            id,
            push_mark: 0,
            live: Live::default(),
            session: None,
            served: false,
            peer,
            attributed,
            inbound: InboundBucket::new(None),
            identity: Identity::Anyone,
            pending_pong: None,
            read_paused: false,
            joining: false,
            held_input: None,
            broadcasts_from: None,
            held_broadcasts: None,
        }
    }

    /// Uncounts this connection from the caps it was counted against.
    pub fn uncount(&self, ips: &mut IpLimiter) {
        ips.release(self.peer, self.attributed);
    }

    pub fn id_str(&self) -> &str {
        // The id is generated from the URL-safe base64 alphabet, always ASCII.
        std::str::from_utf8(&self.id).unwrap_or("")
    }

    /// Queues `bytes` behind what waits already.
    pub fn enqueue(&mut self, bytes: Bytes) {
        self.queued += bytes.len();
        self.out.push_back(bytes);
    }

    /// Drops everything queued except the front, which may be partly written and must be
    /// finished for the stream to stay well-framed.
    pub fn drop_queued(&mut self) {
        self.pending_pong = None;
        self.out.truncate(1);
        self.queued = self.out.front().map_or(0, Bytes::len);
    }

    /// Drops `n` written bytes from the front of the queue.
    fn consume(&mut self, mut n: usize) {
        self.queued = self.queued.saturating_sub(n);
        while n > 0 {
            let Some(front) = self.out.front_mut() else {
                return;
            };
            if n >= front.len() {
                n -= front.len();
                self.out.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// Whether the loop should read more of this connection: not while a held polling GET
    /// already has `max_pending` bytes of the client's next requests waiting behind it. Those
    /// are answered only after the GET, so reading on would buffer without bound; the socket's
    /// own buffers hold the rest, and TCP slows the client down.
    pub fn wants_input(&self, max_pending: usize) -> bool {
        !self.joining
            && !matches!(&self.phase, Phase::Poll { pending, .. } if pending.len() >= max_pending)
    }

    /// A WebSocket past its handshake, not closing.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// An open raw-protocol WebSocket: a direct recipient of pushes.
    pub fn is_raw(&self) -> bool {
        matches!(self.phase, Phase::Open(Proto::Raw))
    }

    /// Writes queued bytes to `socket`, then the held pong, until it pushes back or nothing is
    /// left, several buffers per `writev`. Frees the queue's memory once drained, and then says
    /// whether the socket's write side is now to be shut.
    pub fn flush(&mut self, socket: &mut impl Write) -> io::Result<Flushed> {
        let mut written = 0;
        loop {
            if self.out.is_empty() {
                // The held pong goes once what was queued before it has, and only while the
                // connection is open: past our close frame the connection is ending (RFC 6455
                // §5.5.1: "The application MUST NOT send any more data frames after sending a
                // Close frame"), and no pong is owed there either.
                match self.pending_pong.take() {
                    Some(pong) if self.is_open() => self.enqueue(*pong),
                    _ => break,
                }
            }
            let result = if self.out.len() == 1 {
                socket.write(&self.out[0])
            } else {
                let mut slices = [IoSlice::new(&[]); WRITEV_MAX];
                let count = slices
                    .iter_mut()
                    .zip(&self.out)
                    .map(|(slice, bytes)| *slice = IoSlice::new(bytes))
                    .count();
                socket.write_vectored(&slices[..count])
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    self.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Flushed {
                        written,
                        shut: false,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.out = VecDeque::new();
        self.queued = 0;
        Ok(Flushed {
            written,
            shut: mem::take(&mut self.shutdown_when_flushed),
        })
    }
}
