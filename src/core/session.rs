//! An Engine.IO session: what outlives any one HTTP request or WebSocket of a Socket.IO client.
//!
//! A session lives in the event loop's slab beside the connections, and it, not a connection,
//! is what joins rooms: a push to one of its users is queued here for the next long-polling GET,
//! or written to its WebSocket once the client has upgraded.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::core::conn::{Live, SocketId};
use crate::core::identity::Identity;
use crate::engineio::Packet;
use crate::limits::InboundBucket;
use crate::socketio::Reassembler;

/// Which connections carry a session's packets. Each key here is a connection whose
/// [`Conn::session`](crate::core::conn::Conn::session) names this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP long-polling; `get` is the connection holding a GET open, if any.
    Polling { get: Option<usize> },
    /// Polling still, while WebSocket `ws` probes (`2probe`/`3probe`) before it takes over on `5`.
    Upgrading { get: Option<usize>, ws: usize },
    /// WebSocket `ws` carries every packet.
    WebSocket { ws: usize },
}

pub struct Session {
    /// The Engine.IO session id.
    pub sid: SocketId,
    pub transport: Transport,
    /// Encoded Engine.IO packets (`42[...]`, `2`, ...) waiting for a polling GET.
    pub queue: VecDeque<Bytes>,
    /// The bytes `queue` holds: what the slow-consumer limit is checked against.
    pub queued: usize,
    /// When the last Engine.IO ping was sent (or the session opened).
    pub last_ping: Instant,
    /// Whether that ping still awaits its pong.
    pub awaiting_pong: bool,
    /// When a polling GET last ended; a polling client silent for pingInterval + pingTimeout is
    /// gone.
    pub last_poll: Instant,
    /// The Socket.IO socket id, once the client connected to `/`.
    pub socket: Option<SocketId>,
    /// The client must connect to `/` by then; `None` once it has (leaving `/` later does not
    /// arm it again).
    pub connect_deadline: Option<Instant>,
    /// A binary Socket.IO packet waiting for its attachments (boxed: rare, and large).
    pub binary: Option<Box<Reassembler>>,
    /// See [`Conn::push_mark`](crate::core::conn::Conn::push_mark).
    pub push_mark: u64,
    /// See [`Conn::live`](crate::core::conn::Conn::live).
    pub live: Live,
    /// Its private id for connection state recovery, once its CONNECT was accepted with
    /// recovery on.
    pub pid: Option<SocketId>,
    /// The log's newest push when its CONNECT was accepted.
    pub joined: u64,
    /// A join of its own waits for the log: the packets the client sent after it wait in
    /// `held`, to be handled in order once it is answered.
    pub joining: bool,
    pub held: VecDeque<Packet>,
    /// Closed; removed from the slab after this batch of events.
    pub closed: bool,
    /// Who the Socket.IO client is: set by its CONNECT's token, refreshed by `refresh` events.
    pub identity: Identity,
    /// The address that opened it, counted against the per-address caps (and the total) like
    /// a connection until the session is removed.
    pub peer: IpAddr,
    /// Its budget of client packets over long-polling (`--client-rate`); over WebSocket the
    /// connection's own bucket counts its frames.
    pub inbound: InboundBucket,
}

impl Session {
    pub fn new(
        sid: SocketId,
        transport: Transport,
        peer: IpAddr,
        now: Instant,
        connect_deadline: Option<Instant>,
    ) -> Self {
        Session {
            sid,
            peer,
            transport,
            queue: VecDeque::new(),
            queued: 0,
            last_ping: now,
            awaiting_pong: false,
            last_poll: now,
            socket: None,
            connect_deadline,
            binary: None,
            push_mark: 0,
            live: Live::default(),
            pid: None,
            joined: 0,
            joining: false,
            held: VecDeque::new(),
            closed: false,
            identity: Identity::Anyone,
            inbound: InboundBucket::new(None),
        }
    }

    pub fn socket_str(&self) -> &str {
        self.socket
            .as_ref()
            .and_then(|s| std::str::from_utf8(s).ok())
            .unwrap_or("")
    }

    /// Lets go of the polling GET held open, if any, which the caller answers.
    pub fn take_get(&mut self) -> Option<usize> {
        match &mut self.transport {
            Transport::Polling { get } | Transport::Upgrading { get, .. } => get.take(),
            Transport::WebSocket { .. } => None,
        }
    }

    /// The polling GET held open, if any.
    pub fn get(&self) -> Option<usize> {
        match self.transport {
            Transport::Polling { get } | Transport::Upgrading { get, .. } => get,
            Transport::WebSocket { .. } => None,
        }
    }
}
