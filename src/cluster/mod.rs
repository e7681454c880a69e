//! A cluster of herald nodes on Redis (`--redis`): a push made on any node reaches its users'
//! sockets on every node, and only the nodes holding them read it.
//!
//! - One log for the cluster: a Redis Stream. A push is appended and routed in one script
//!   ([`scripts::push`]); its offset comes from the entry's id ([`wire`]).
//! - Routing by presence: each user has a hash of the nodes holding its sockets; the push script
//!   publishes the entry on those nodes' own channels (a broadcast on one channel every node
//!   reads). A node is entered for a user when its first socket of the user subscribes, before
//!   the client is answered, and removed when its last one leaves.
//! - Each node keeps the pushes routed to it in its own in-memory log (the
//!   [`crate::router::log::Log`] of one node, fed from Redis in the stream's order): a join is
//!   answered from the stream (what a client missed) and from that log (what arrived since).
//! - Liveness: nodes renew an expiry in a sorted set; a node that stops is no longer counted
//!   once its expiry (`--redis-node-ttl`) passes, and its entries are removed by the pushes that
//!   find no reader on its channel a minute after that. A node with a reader is routed to
//!   whatever its expiry says (its heartbeat may only be late).
//!
//! The Redis I/O runs on threads of its own ([`bus`]): one for commands (pushes, joins,
//! presence, the heartbeat), one reading pub/sub, one reading the Socket.IO emitter's channels. They meet the workers through the router, as
//! the control API does. Without `--redis` none of this exists and nothing here is on any path.
//!
//! - [`wire`]: stream ids, entries and pub/sub messages, key names. No I/O.
//! - [`scripts`]: the Lua scripts, each one atomic step in Redis.
//! - [`bus`]: those threads.

pub mod bus;
pub mod emitter;
pub mod scripts;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use crate::command::{PushReply, Target, UserInfo};
use crate::router::log::{Record, Unrecoverable};
use crate::router::mailbox::Join;

/// What `--redis` and its companions set.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `redis://[user:pass@]host:port[/db]` (or `rediss://`).
    pub url: String,
    /// For `rediss://`: the CA certificate (PEM) to trust instead of the system's roots.
    pub ca: Option<Vec<u8>>,
    /// The prefix of every key and channel herald uses, so that clusters may share a Redis.
    pub prefix: String,
    /// How long a node counts as alive after its last heartbeat.
    pub node_ttl: Duration,
    /// How long pushes are kept in the stream.
    pub window: Duration,
    /// Per-user push rate across the cluster (pushes a second; 0: none) and burst.
    pub user_rate: u32,
    pub user_burst: u32,
    /// Read what `@socket.io/redis-emitter` publishes under this key (`None`: not at all), and
    /// the prefix of the rooms that name users.
    pub emitter_key: Option<String>,
    pub emitter_room_prefix: String,
}

impl Settings {
    /// A client for `url`: TLS (`rediss://`) with `ca` as its root when one is given.
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        if self.url.starts_with("rediss://") {
            // One crypto provider is compiled in; installing it twice is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        match &self.ca {
            Some(ca) => redis::Client::build_with_tls(
                self.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
            None => redis::Client::open(self.url.as_str()),
        }
    }

    /// How often a node renews its expiry and checks its pub/sub connection.
    pub fn heartbeat(&self) -> Duration {
        (self.node_ttl / 5).max(Duration::from_millis(100))
    }
}

/// A request to the command thread.
pub(crate) enum Request {
    /// Log and route a push; answered on `reply`.
    Push {
        target: Target,
        notification: Bytes,
        /// The event's name when it is not `notification` (the Redis emitter's).
        event: Option<Arc<str>>,
        reply: Sender<PushReply>,
    },
    /// Enter this node for the users of a join, then place it.
    Join { worker: usize, join: Join },
    /// Keep a Socket.IO session for the other nodes to take back, or forget it (taken here).
    Park(crate::router::parked::Shared),
    /// The cluster's count of a user's sockets; this node's own answer is `local`.
    Presence {
        user: String,
        local: UserInfo,
        reply: Sender<UserInfo>,
    },
}

/// The cluster as the router sees it; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// This node's id: random, new at every start.
    pub node: String,
    pub keys: wire::Keys,
    pub settings: Settings,
    pub tx: Sender<Request>,
    rx: Mutex<Option<Receiver<Request>>>,
    /// The command connection works.
    pub cmd_up: AtomicBool,
    /// The pub/sub connection is subscribed and caught up.
    pub sub_up: AtomicBool,
    /// The feed lost its connection: the command connection is checked before its next use.
    pub recheck: AtomicBool,
    /// Joins waiting for the feed to reach their head.
    pub placing: Mutex<Placing>,
    /// Users whose join was placed without Redis: the node is entered for them at the next
    /// heartbeat (those it still holds then).
    pub unentered: Mutex<Vec<String>>,
    pub counters: Counters,
}

/// Joins answered by Redis whose node has not yet read every push up to their head.
#[derive(Default)]
pub(crate) struct Placing {
    /// The epoch the feed reads, and how far it has read: every push routed to this node up
    /// to this sequence number has been fed to its log.
    pub epoch: u64,
    pub fed_to: u64,
    pub waiting: Vec<Waiting>,
    /// Users with a join between its entry in Redis and its placing: their entry must not be
    /// removed meanwhile.
    pub joining: HashMap<String, usize>,
}

/// A join Redis answered, waiting for the feed.
pub(crate) struct Waiting {
    pub worker: usize,
    pub join: Join,
    pub epoch: u64,
    pub head: u64,
    /// For a join with an offset: what the stream held after it, up to `head`.
    pub missed: Option<Result<Vec<Arc<Record>>, Unrecoverable>>,
}

/// The cluster's counters, for `/metrics`.
#[derive(Default)]
pub struct Counters {
    /// Pushes read from Redis (pub/sub and catch-up), and their bytes.
    pub pushes_received: AtomicU64,
    pub push_bytes_received: AtomicU64,
    /// Pushes read back from the stream after a reconnection.
    pub caught_up: AtomicU64,
    /// Sync marks read (each heartbeat and join puts one on this node's channel).
    pub sync_marks: AtomicU64,
    /// Pushes published through Redis by this node.
    pub published: AtomicU64,
    /// Pushes this node delivered to its own sockets alone, Redis being unreachable.
    pub degraded: AtomicU64,
    /// Pushes whose script Redis ran after their deadline, and refused (served alone).
    pub late: AtomicU64,
    /// Connections to Redis made again after one failed.
    pub reconnects: AtomicU64,
    /// Pub/sub connections rebuilt because the heartbeat stopped coming through them.
    pub pubsub_rebuilt: AtomicU64,
    /// Messages read from the Socket.IO emitter's channels and pushed, and those refused.
    pub emitted: AtomicU64,
    pub emitted_refused: AtomicU64,
}

/// The cluster's figures, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterCounts {
    pub up: bool,
    pub pushes_received: u64,
    pub push_bytes_received: u64,
    pub caught_up: u64,
    pub sync_marks: u64,
    pub published: u64,
    pub degraded: u64,
    pub late: u64,
    pub reconnects: u64,
    pub pubsub_rebuilt: u64,
    pub emitted: u64,
    pub emitted_refused: u64,
}

impl Cluster {
    /// A cluster handle; its threads start with [`Cluster::spawn`], once the router exists.
    pub fn new(settings: Settings) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Cluster {
            inner: Arc::new(Inner {
                node: random_hex(8),
                keys: wire::Keys {
                    prefix: settings.prefix.clone(),
                },
                settings,
                tx,
                rx: Mutex::new(Some(rx)),
                cmd_up: AtomicBool::new(false),
                sub_up: AtomicBool::new(false),
                recheck: AtomicBool::new(false),
                placing: Mutex::default(),
                unentered: Mutex::default(),
                counters: Counters::default(),
            }),
        }
    }

    /// Starts the command and pub/sub threads; `router` is what they deliver to.
    pub fn spawn(&self, router: crate::router::Router) -> std::io::Result<()> {
        let rx = self
            .inner
            .rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| std::io::Error::other("cluster threads started twice"))?;
        if let Some(parked) = router.parked() {
            let tx = self.inner.tx.clone();
            parked.share(move |change| {
                let _ = tx.send(Request::Park(change));
            });
        }
        bus::spawn(self.inner.clone(), router, rx)
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Whether pushes and joins go through Redis: both connections work.
    pub fn up(&self) -> bool {
        self.inner.cmd_up.load(Ordering::SeqCst) && self.inner.sub_up.load(Ordering::SeqCst)
    }

    /// Hands a request to the command thread; `Err` gives it back when the thread is gone.
    pub(crate) fn request(&self, req: Request) -> Result<(), Box<Request>> {
        self.inner.tx.send(req).map_err(|e| Box::new(e.0))
    }

    /// Answers how many sockets `user` has in the cluster, this node's being `local`: Redis is
    /// asked for the other nodes', unless it is unreachable.
    pub(crate) fn presence(&self, user: String, local: UserInfo, reply: Sender<UserInfo>) {
        let (local, reply) = if self.up() {
            match self.request(Request::Presence { user, local, reply }) {
                Ok(()) => return,
                Err(req) => match *req {
                    Request::Presence { local, reply, .. } => (local, reply),
                    _ => return,
                },
            }
        } else {
            (local, reply)
        };
        let _ = reply.send(UserInfo::degraded(local.sockets).with_sockets_of(local));
    }

    /// `users` were placed without Redis: the node is to be entered for them.
    pub(crate) fn unentered(&self, users: &[String]) {
        self.inner
            .unentered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(users);
    }

    /// A push delivered on this node alone.
    pub(crate) fn count_degraded(&self) {
        self.inner.counters.degraded.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> ClusterCounts {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClusterCounts {
            up: self.up(),
            pushes_received: get(&c.pushes_received),
            push_bytes_received: get(&c.push_bytes_received),
            caught_up: get(&c.caught_up),
            sync_marks: get(&c.sync_marks),
            published: get(&c.published),
            degraded: get(&c.degraded),
            late: get(&c.late),
            reconnects: get(&c.reconnects),
            pubsub_rebuilt: get(&c.pubsub_rebuilt),
            emitted: get(&c.emitted),
            emitted_refused: get(&c.emitted_refused),
        }
    }
}

impl Inner {
    pub fn placing(&self) -> MutexGuard<'_, Placing> {
        self.placing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `bytes` random bytes in hex: a node's id, or an epoch for Redis to keep if it has none
/// (a new one every time, so that a Redis that lost its data never gets an old epoch back).
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    if getrandom::getrandom(&mut raw).is_err() {
        // A failing generator still gives distinct ids per start, from the clock.
        let t = crate::router::unix_ms().to_le_bytes();
        for (i, b) in raw.iter_mut().enumerate() {
            *b = t[i % t.len()] ^ (i as u8);
        }
    }
    raw.iter().map(|b| format!("{b:02x}")).collect()
}
