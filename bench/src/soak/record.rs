//! What the parts of a soak run hand each other: the pushes the control API answered, the
//! samples taken every second. Plain data, no I/O.

/// A position in herald's log: `"<epoch in hex>-<n>"` as the control API and the clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset {
    pub epoch: u64,
    pub n: u64,
}

impl Offset {
    /// Parses an offset herald wrote; `None` for anything else.
    pub fn parse(s: &str) -> Option<Offset> {
        herald::router::log::parse_offset(s).map(|(epoch, n)| Offset { epoch, n })
    }
}

/// Who one push was for. Users are indices: user `u` is `{prefix}{u}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `POST /v1/users/{u}/notifications`.
    User(u32),
    /// `POST /v1/notifications` with these distinct users.
    Users(Vec<u32>),
    /// `POST /v1/broadcast`.
    All,
}

impl Target {
    /// Whether a client subscribed to `user` is a recipient.
    pub fn reaches(&self, user: u32) -> bool {
        match self {
            Target::User(u) => *u == user,
            Target::Users(us) => us.contains(&user),
            Target::All => true,
        }
    }
}

/// One push request and its answer.
#[derive(Debug, Clone)]
pub struct PushRecord {
    /// Unique over the run, carried in the notification as `data.seq`.
    pub seq: u64,
    pub target: Target,
    /// The answer's HTTP status; 0 when none came (refused connection, reset, timeout).
    pub status: u16,
    /// The answer's `offset`: the push is in the log (2xx only).
    pub offset: Option<Offset>,
    /// The answer said `"cluster":"degraded"`: delivered to the answering node's sockets only,
    /// not logged, owed to nobody.
    pub degraded: bool,
    /// Which control address was asked (index into the run's list).
    pub node: usize,
    /// Unix ns when the request was written and when its answer was read (or given up on).
    pub sent_ns: u64,
    pub answered_ns: u64,
}

impl PushRecord {
    /// Accepted: answered 2xx. Only an accepted push with an offset is owed to anyone.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One second of a run, as the CSV's row and the chart's points.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Seconds since the run started.
    pub t: f64,
    /// Per server process (in the order of `--server-pid`/`--pid-file`): resident bytes, open
    /// file descriptors, CPU seconds used in the last interval per wall second (1.0 = one core).
    /// `None` while the process is not there (restarting).
    pub servers: Vec<ServerSample>,
    /// Client side: connections subscribed now, notifications received in the interval.
    pub clients_connected: u64,
    pub deliveries: u64,
    /// Pushes answered 2xx in the interval, and answered otherwise (or not at all).
    pub pushes_accepted: u64,
    pub pushes_failed: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ServerSample {
    pub pid: Option<u32>,
    pub rss_bytes: Option<u64>,
    pub fds: Option<u64>,
    pub cpu: Option<f64>,
    /// From that node's `/metrics`, when it answered: `herald_connections`,
    /// `herald_subscriptions`, `herald_deliveries_total`.
    pub connections: Option<u64>,
    pub subscriptions: Option<u64>,
    pub deliveries_total: Option<u64>,
}
