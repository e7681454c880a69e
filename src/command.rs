//! What the control API asks of the gateway.
//!
//! The control threads hand plain [`Command`] values to the [`crate::router::Router`], which
//! passes them to the workers over their channels and wakes them; the answer comes on the
//! one-shot channel the command carries. [`LoopHandle`] sends commands unchanged over one
//! channel, for a stand-in loop in tests.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::Sender;

use crate::metrics::Protocol;

/// Who a push goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every socket subscribed to this user id.
    User(String),
    /// Every socket subscribed to any of these user ids, each socket once.
    Users(Vec<String>),
    /// Every open socket.
    All,
}

/// A request to the event loop.
#[derive(Debug)]
pub enum Command {
    /// Deliver `notification` (a serialized JSON object, timestamp included) to `target`.
    Push {
        target: Target,
        notification: Bytes,
        reply: Sender<PushReply>,
    },
    /// Is this user online, and with how many sockets?
    UserInfo {
        user_id: String,
        reply: Sender<UserInfo>,
    },
    /// The loop's counters, rendered in the Prometheus text format.
    Metrics { reply: Sender<String> },
    /// Whether the loop takes new clients: `false` once shutdown began.
    Readiness { reply: Sender<bool> },
    /// Stop accepting, close every client with 1001, flush, and return.
    Shutdown,
}

/// The loop's answer to [`Command::Push`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushReply {
    /// Sockets the notification was handed to (written or queued for writing).
    pub sockets: usize,
    /// Users skipped because their push bucket (`--user-rate`, `--user-burst`) was empty; their
    /// sockets got nothing.
    pub rate_limited: usize,
    /// For a [`Target::User`] push refused by the user's bucket: how long until it holds a
    /// token again. `None` otherwise.
    pub retry_after: Option<Duration>,
    /// The push's offset in the recovery log; `None` when recovery is off or the push was
    /// refused.
    pub offset: Option<Arc<str>>,
    /// In a cluster: the nodes the push reached (their sockets are not counted: they
    /// are on other machines, and `sockets` is then absent).
    pub nodes: Option<usize>,
    /// In a cluster: whether it reached Redis, or was only delivered on this node.
    pub cluster: Option<ClusterState>,
}

/// How a node of a cluster reaches the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Through Redis.
    Ok,
    /// Redis is unreachable: this node serves its own sockets alone.
    Degraded,
}

impl ClusterState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::Ok => "ok",
            ClusterState::Degraded => "degraded",
        }
    }
}

/// Most of a user's sockets [`UserInfo::devices`] lists; `more_devices` says when it has more.
pub const MAX_DEVICES: usize = 100;

/// One socket of a user on this node, as `GET /v1/users/{id}` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The id its client knows it by: the raw protocol's, or the Socket.IO socket's.
    pub socket_id: String,
    pub protocol: Protocol,
    /// The client's address (behind a trusted proxy, the client's own).
    pub address: IpAddr,
    /// The worker holding it.
    pub worker: usize,
    /// When it subscribed to the user, in seconds since the Unix epoch.
    pub subscribed_at: u64,
}

/// The loop's answer to [`Command::UserInfo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// Sockets currently subscribed to the user.
    pub sockets: usize,
    /// The client addresses of this node's sockets (behind a trusted proxy, the clients'
    /// own), in no order, repeats included.
    pub addresses: Vec<IpAddr>,
    /// This node's sockets, at most [`MAX_DEVICES`], in no order.
    pub devices: Vec<Device>,
    /// This node has more sockets of the user than `devices` lists.
    pub more_devices: bool,
    /// In a cluster: the nodes holding them.
    pub nodes: Option<usize>,
    /// In a cluster: whether the other nodes were asked, or only this one could answer.
    pub cluster: Option<ClusterState>,
}

impl UserInfo {
    /// One node's count, before any cluster is asked.
    pub fn local(sockets: usize) -> Self {
        UserInfo {
            sockets,
            addresses: Vec::new(),
            devices: Vec::new(),
            more_devices: false,
            nodes: None,
            cluster: None,
        }
    }

    /// This answer with `local`'s list of this node's sockets (`addresses`, `devices`): what a
    /// cluster's count adds to the node's own.
    pub fn with_sockets_of(mut self, local: UserInfo) -> Self {
        self.addresses = local.addresses;
        self.devices = local.devices;
        self.more_devices = local.more_devices;
        self
    }

    /// A cluster node's own count, the other nodes out of reach.
    pub fn degraded(sockets: usize) -> Self {
        UserInfo {
            sockets,
            addresses: Vec::new(),
            devices: Vec::new(),
            more_devices: false,
            nodes: Some((sockets > 0) as usize),
            cluster: Some(ClusterState::Degraded),
        }
    }
}

/// The loop has stopped; nothing will answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopGone;

/// The sending side of the loop's command channel, cheap to clone, one per control thread.
#[derive(Clone)]
pub struct LoopHandle {
    tx: Sender<Command>,
    waker: Arc<mio::Waker>,
}

impl LoopHandle {
    pub fn new(tx: Sender<Command>, waker: Arc<mio::Waker>) -> Self {
        LoopHandle { tx, waker }
    }

    /// Queues `cmd` and wakes the loop.
    pub fn send(&self, cmd: Command) -> Result<(), LoopGone> {
        self.tx.send(cmd).map_err(|_| LoopGone)?;
        self.waker.wake().map_err(|_| LoopGone)
    }
}
