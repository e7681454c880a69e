//! Rate limits and connection caps as plain counters: a compact token bucket, per-user buckets
//! for pushes, and per-address accounting for accepted connections.
//!
//! Nothing here does I/O or reads the clock: every call takes `now`, so the arithmetic is tested
//! to the millisecond without sleeping. Deciding what to do with a refusal (an HTTP status, a
//! close code, a dropped message) belongs to the caller; [`IpRefusal::status`] is the one place
//! that maps connection refusals to HTTP.
//!
//! A disabled limit is `None` at the call site ([`Limit::new`] gives `None` for rate 0, which is
//! also what `0` means on the command line), so the hot path never asks "is this limit on?" inside
//! the bucket.
//!
//! Time is kept as [`Millis`], milliseconds since an [`Epoch`] chosen by the owner (the event
//! loop's start, say), truncated to `u32`: it wraps every 2^32 ms, about 49.7 days, and the
//! buckets are built for that (see [`TokenBucket`]).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Notifications per second one user may be pushed, sustained. A person reads a handful a
/// second at most; 20/s leaves room for chatty apps while stopping a backend stuck in a loop
/// from flooding every device of a user.
pub const DEFAULT_USER_RATE: u32 = 20;
/// Notifications one user may be pushed at once: a batch job catching up, a digest split in
/// parts.
pub const DEFAULT_USER_BURST: u32 = 50;
/// Messages per second one connection may send, pings and pongs included. Clients send little
/// besides (un)subscribes and keep-alives, so 10/s is generous for a well-behaved one.
pub const DEFAULT_CLIENT_RATE: u32 = 10;
/// Messages one connection may send at once: a client subscribing its full quota
/// (`--max-subscriptions`, 16 by default) right after connecting, plus a ping or two.
pub const DEFAULT_CLIENT_BURST: u32 = 20;
/// Connections open at once, all addresses together. Each costs a file descriptor and a few KiB;
/// the process's open-file limit may be the lower bound in practice.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Engine.IO sessions (Socket.IO clients, on either transport) open at once, all addresses
/// together: counted apart from connections, so that a Socket.IO client over a WebSocket is one
/// connection and one session, not two connections. A session holds memory but no descriptor.
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;
/// Connections open at once from one IPv4 address or IPv6 /64. High, because a carrier-grade
/// NAT or an office egress puts hundreds of users, each with a few tabs and devices, behind one
/// address; still only 1% of the default total, so one host cannot take the gateway.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 1_000;
/// New connections per second from one address, sustained. Enough for a busy NAT, and it turns a
/// reconnect storm or a connect flood from one host into a queue rather than a spike.
pub const DEFAULT_CONNECTION_RATE_PER_IP: u32 = 20;
/// The per-address connection burst, in seconds of `--connection-rate-per-ip`: after a restart
/// every client behind a NAT reconnects within seconds (socket.io-client waits 1 to 5 s), and
/// that first wave should pass.
pub const CONNECTION_BURST_SECONDS: u32 = 5;
/// Users whose push buckets are remembered at once (see [`UserBuckets`]). Only users pushed to
/// within the last few seconds need a bucket, so this is reached only by a flood of distinct ids.
pub const DEFAULT_MAX_TRACKED_USERS: usize = 100_000;

/// Milli-tokens in a token: buckets count thousandths so that a rate in tokens per second times
/// an elapsed time in milliseconds is an exact integer refill, with no remainder to lose.
const MILLI: u32 = 1_000;

/// A `now` up to this far *before* a bucket's stamp is read as "no time passed", not as a gap
/// of almost 2^32 ms: callers on different threads may capture `Instant`s a little out of order
/// before they reach a shared map, and that must never refill a bucket.
const BACKWARDS_TOLERANCE_MS: u32 = 60_000;

/// A time in milliseconds since an [`Epoch`], wrapping every 2^32 ms (≈ 49.7 days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Millis(pub u32);

impl Millis {
    /// Milliseconds from `earlier` to `self`. Exact for gaps below 2^32 ms minus
    /// [`BACKWARDS_TOLERANCE_MS`]; `self` slightly before `earlier` gives 0; longer gaps come out
    /// modulo 2^32 ms, i.e. too short, which can only make a bucket refill less, never more.
    fn since(self, earlier: Millis) -> u32 {
        let d = self.0.wrapping_sub(earlier.0);
        if d > u32::MAX - BACKWARDS_TOLERANCE_MS {
            0
        } else {
            d
        }
    }
}

/// The instant [`Millis`] count from; one per owner of buckets (the event loop, a limiter).
#[derive(Debug, Clone, Copy)]
pub struct Epoch(Instant);

impl Epoch {
    pub fn new(start: Instant) -> Self {
        Epoch(start)
    }

    /// `now` as milliseconds since the epoch, truncated to `u32` (the wrap the buckets expect).
    /// A `now` before the epoch counts as the epoch itself.
    pub fn millis(&self, now: Instant) -> Millis {
        Millis(now.saturating_duration_since(self.0).as_millis() as u32)
    }
}

/// A rate and a burst, shared by every bucket it governs (it is not stored in them).
///
/// Invariants, kept by [`Limit::new`]: `rate_per_sec >= 1`, `1 <= burst <= MAX_BURST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    rate_per_sec: u32,
    burst: u32,
}

impl Limit {
    /// The largest burst: a full bucket's milli-tokens must fit its `u32`.
    pub const MAX_BURST: u32 = u32::MAX / MILLI;

    /// What fills a bucket that no limit will ever consult (a host when there is no rate).
    const UNUSED: Limit = Limit {
        rate_per_sec: 1,
        burst: 1,
    };

    /// `None` for `rate_per_sec == 0`, which means "no limit". A burst of 0 is raised to 1 (a
    /// bucket that can never hold a token would refuse everything, which is not what a rate
    /// asks for) and one above [`Limit::MAX_BURST`] is lowered to it.
    pub fn new(rate_per_sec: u32, burst: u32) -> Option<Limit> {
        (rate_per_sec > 0).then(|| Limit {
            rate_per_sec,
            burst: burst.clamp(1, Self::MAX_BURST),
        })
    }

    pub fn rate_per_sec(&self) -> u32 {
        self.rate_per_sec
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// How long an empty bucket takes to be full again; after that, a bucket nobody touched is
    /// indistinguishable from a new one and may be forgotten.
    pub fn time_to_fill(&self) -> Duration {
        Duration::from_millis(self.fill_ms().into())
    }

    fn capacity(&self) -> u32 {
        self.burst * MILLI
    }

    fn fill_ms(&self) -> u32 {
        self.capacity().div_ceil(self.rate_per_sec)
    }

    /// How often a map of buckets under this limit drops its full ones: once per fill time, so
    /// a sweep visits only buckets used within the last two fill times (amortized O(1) per use),
    /// but not more often than once a second, so a very fast limit does not sweep on every call.
    fn sweep_every_ms(&self) -> u32 {
        self.fill_ms().max(1_000)
    }
}

/// A token bucket in 8 bytes, for every connection's slot.
///
/// `milli_tokens` holds thousandths of a token (at most `burst * 1000`, which [`Limit::MAX_BURST`]
/// keeps within `u32`); `stamp` is when it was last brought up to date, as [`Millis`]. Refill is
/// `elapsed_ms * rate` milli-tokens, exact, capped at the burst, computed in `u64` so no rate or
/// gap overflows.
///
/// The stamp wraps every ≈ 49.7 days. A gap up to that long (less one minute) is measured
/// exactly; a `now` up to a minute before the stamp counts as no time passed; a bucket left
/// untouched for longer than the wrap sees its gap modulo 2^32 ms, so at worst it is found at the
/// level it was left and refills from there. No gap ever puts more than `burst` tokens in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    milli_tokens: u32,
    stamp: Millis,
}

impl TokenBucket {
    /// A bucket holding `burst` tokens. Its stamp does not matter: a full bucket stays full
    /// whatever time is said to have passed.
    pub fn full(limit: &Limit) -> Self {
        TokenBucket {
            milli_tokens: limit.capacity(),
            stamp: Millis(0),
        }
    }

    /// Takes one token if there is one (after refilling up to `now`).
    pub fn try_take(&mut self, limit: &Limit, now: Millis) -> bool {
        self.milli_tokens = self.level(limit, now);
        self.stamp = now;
        if self.milli_tokens >= MILLI {
            self.milli_tokens -= MILLI;
            true
        } else {
            false
        }
    }

    /// How long from `now` until a token is available; zero if one is. Exact to the
    /// millisecond (rounded up); a `Retry-After` header wants [`retry_after_secs`] of it.
    pub fn retry_after(&self, limit: &Limit, now: Millis) -> Duration {
        let missing = MILLI.saturating_sub(self.level(limit, now));
        Duration::from_millis(missing.div_ceil(limit.rate_per_sec).into())
    }

    /// Whether the bucket is full at `now`, i.e. could be replaced by [`TokenBucket::full`].
    pub fn is_full(&self, limit: &Limit, now: Millis) -> bool {
        self.level(limit, now) == limit.capacity()
    }

    /// Milli-tokens at `now`, without moving the stamp.
    fn level(&self, limit: &Limit, now: Millis) -> u32 {
        let refill = u64::from(now.since(self.stamp)) * u64::from(limit.rate_per_sec);
        let level = (u64::from(self.milli_tokens) + refill).min(limit.capacity().into());
        // Capped at the capacity, a u32.
        level as u32
    }
}

/// Whole seconds for a `Retry-After` header (RFC 9110 §10.2.3 takes only integers), rounded up
/// so a client that waits that long finds a token.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// Per-user push buckets: each user id may be pushed `limit` notifications.
///
/// The event loop owns the one instance and checks it as it hands a push to a user's sockets
/// (a hash lookup and a few integer operations), so no lock is involved. Several loops would
/// each need their own, at the cost of each allowing the full rate.
///
/// Memory is bounded twice over:
/// - A bucket that is full again is worth nothing (a new one is the same), so once per fill time
///   ([`Limit::time_to_fill`], at least a second) the full ones are dropped. A sweep visits only
///   buckets used within the last two periods, so it is amortized O(1) per check.
/// - At most `max_users` buckets are kept. A new id arriving at the cap first drops full
///   buckets; if none is full (a flood of distinct ids within one fill time), the buckets used
///   longest ago are dropped until half the cap is left. Those were closest to full, so the
///   least is forgotten; their users may get up to `burst` extra notifications. One such pass is
///   O(cap) and frees at least cap/2 places, so a flood costs O(1) amortized per id, memory stays
///   at `max_users` buckets (plus a transient `Vec<u32>` of as many ages), and nothing panics.
///
/// Keys are the ids as given; the control API validates them ([`crate::rooms::MAX_USER_ID_LEN`])
/// before they get here.
#[derive(Debug)]
pub struct UserBuckets {
    limit: Limit,
    epoch: Epoch,
    /// At least 1.
    max_users: usize,
    buckets: HashMap<Box<str>, TokenBucket>,
    last_sweep: Millis,
}

impl UserBuckets {
    /// `now` becomes the epoch of this map's clock. `max_users` below 1 is raised to 1.
    pub fn new(limit: Limit, max_users: usize, now: Instant) -> Self {
        UserBuckets {
            limit,
            epoch: Epoch::new(now),
            max_users: max_users.max(1),
            buckets: HashMap::new(),
            last_sweep: Millis(0),
        }
    }

    /// Spends one of `user`'s tokens, or says how long until one is available.
    pub fn check(&mut self, user: &str, now: Instant) -> Result<(), Duration> {
        let now = self.epoch.millis(now);
        if now.since(self.last_sweep) >= self.limit.sweep_every_ms() {
            self.sweep(now);
        }
        let limit = self.limit;
        if let Some(bucket) = self.buckets.get_mut(user) {
            return take(bucket, &limit, now);
        }
        if self.buckets.len() >= self.max_users {
            self.make_room(now);
        }
        // A new bucket is full and the burst is at least 1: the first push always passes, and
        // the bucket it leaves behind is no longer full, so it is kept.
        let mut bucket = TokenBucket::full(&limit);
        let verdict = take(&mut bucket, &limit, now);
        self.buckets.insert(user.into(), bucket);
        verdict
    }

    /// Checks every user of a multi-user push, keeps in `users` those that may be pushed, and
    /// returns how many were dropped. Each kept user has spent a token; the order is kept.
    pub fn retain_allowed(&mut self, users: &mut Vec<String>, now: Instant) -> usize {
        let before = users.len();
        users.retain(|user| self.check(user, now).is_ok());
        before - users.len()
    }

    /// Buckets currently remembered.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn sweep(&mut self, now: Millis) {
        let limit = self.limit;
        self.buckets.retain(|_, b| !b.is_full(&limit, now));
        self.last_sweep = now;
    }

    /// Called at the cap: leaves at most `max_users / 2` buckets if dropping the full ones did
    /// not free a place.
    fn make_room(&mut self, now: Millis) {
        self.sweep(now);
        if self.buckets.len() < self.max_users {
            return;
        }
        let keep = self.max_users / 2;
        let mut ages: Vec<u32> = self.buckets.values().map(|b| now.since(b.stamp)).collect();
        // len >= max_users > keep, so `keep` is a valid index.
        let (younger, &mut cut, _) = ages.select_nth_unstable(keep);
        // Buckets younger than `cut` all stay; of those exactly `cut` old, as many as fit.
        let mut ties = keep - younger.iter().filter(|&&age| age < cut).count();
        self.buckets.retain(|_, b| {
            let age = now.since(b.stamp);
            if age < cut {
                true
            } else if age == cut && ties > 0 {
                ties -= 1;
                true
            } else {
                false
            }
        });
    }
}

fn take(bucket: &mut TokenBucket, limit: &Limit, now: Millis) -> Result<(), Duration> {
    if bucket.try_take(limit, now) {
        Ok(())
    } else {
        Err(bucket.retry_after(limit, now))
    }
}

/// What to do with one message a client sent, by its connection's [`InboundBucket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Within the rate: handle it.
    Yes,
    /// The first message over the rate: drop it and tell the client once.
    DropAndWarn,
    /// Over the rate again: drop it without a word (answering each would be a flood of its own).
    Drop,
    /// More than a burst's worth dropped in a row: the client is not slowing down; close it.
    Close,
}

/// A connection's inbound message budget: a [`TokenBucket`] and how many messages in a row it
/// has refused. 12 bytes in every connection's slot.
#[derive(Debug, Clone, Copy)]
pub struct InboundBucket {
    bucket: TokenBucket,
    /// Messages refused since the last one admitted.
    dropped: u32,
}

impl InboundBucket {
    /// A full bucket for `limit`; with no limit, a placeholder never consulted.
    pub fn new(limit: Option<&Limit>) -> Self {
        InboundBucket {
            bucket: TokenBucket::full(limit.unwrap_or(&Limit::UNUSED)),
            dropped: 0,
        }
    }

    /// Spends a token on one message, or decides how to refuse it: the first refusal warns, the
    /// next ones are silent, and once more than `burst` have been refused in a row, close. A
    /// message admitted in between starts the count again, so a client that slows down to the
    /// rate after a warning is never closed.
    pub fn admit(&mut self, limit: &Limit, now: Millis) -> Admit {
        if self.bucket.try_take(limit, now) {
            self.dropped = 0;
            return Admit::Yes;
        }
        self.dropped = self.dropped.saturating_add(1);
        match self.dropped {
            1 => Admit::DropAndWarn,
            n if n > limit.burst() => Admit::Close,
            _ => Admit::Drop,
        }
    }
}

/// The caps [`IpLimiter`] enforces; `None` turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpLimits {
    /// Connections open at once, all addresses together.
    pub max_total: Option<usize>,
    /// Connections open at once from one address (IPv4) or /64 (IPv6).
    pub max_per_ip: Option<u32>,
    /// New connections accepted from one address or /64.
    pub rate_per_ip: Option<Limit>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpRefusal {
    /// The gateway is full: not this client's doing, so 503.
    TooManyConnections { max: usize },
    /// This address already holds `max` connections.
    TooManyFromIp { max: u32 },
    /// This address connects faster than its rate; a token is available after `retry_after`.
    TooFastFromIp { retry_after: Duration },
    /// `--max-sessions` Engine.IO sessions are open: 503, as for connections.
    TooManySessions { max: usize },
    /// This address already holds `max` Engine.IO sessions.
    TooManySessionsFromIp { max: u32 },
}

impl IpRefusal {
    /// The HTTP status herald answers a refused connection with; the one place that decides it.
    pub fn status(&self) -> u16 {
        match self {
            IpRefusal::TooManyConnections { .. } | IpRefusal::TooManySessions { .. } => 503,
            IpRefusal::TooManyFromIp { .. }
            | IpRefusal::TooFastFromIp { .. }
            | IpRefusal::TooManySessionsFromIp { .. } => 429,
        }
    }

    /// The wait worth putting in `Retry-After`, when one is known. A per-address or total cap
    /// frees up when someone disconnects, which nobody can predict.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            IpRefusal::TooFastFromIp { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The refusal of the sessions' [`IpLimiter`] (whose caps are on sessions, not
    /// connections, and which has no rate), named for what it counts.
    pub fn of_sessions(self) -> IpRefusal {
        match self {
            IpRefusal::TooManyConnections { max } => IpRefusal::TooManySessions { max },
            IpRefusal::TooManyFromIp { max } => IpRefusal::TooManySessionsFromIp { max },
            other => other,
        }
    }
}

impl fmt::Display for IpRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpRefusal::TooManyConnections { max } => write!(f, "{max} connections already open"),
            IpRefusal::TooManyFromIp { max } => {
                write!(f, "{max} connections already open from this address")
            }
            IpRefusal::TooFastFromIp { retry_after } => write!(
                f,
                "too many new connections from this address; retry in {} s",
                retry_after_secs(*retry_after)
            ),
            IpRefusal::TooManySessions { max } => write!(f, "{max} sessions already open"),
            IpRefusal::TooManySessionsFromIp { max } => {
                write!(f, "{max} sessions already open from this address")
            }
        }
    }
}

impl std::error::Error for IpRefusal {}

/// Who a connection is counted against: an IPv4 address, or an IPv6 /64.
///
/// IPv6 is grouped by /64 because that is what one subscriber gets: SLAAC and privacy
/// extensions hand a single host as many addresses in its /64 as it likes, so counting per
/// address would count nothing. IPv4-mapped IPv6 (`::ffff:a.b.c.d`, what a dual-stack listener
/// reports for IPv4 clients) is the IPv4 address, so one client is one key whichever socket it
/// came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum IpKey {
    V4(u32),
    V6Net(u64),
}

impl IpKey {
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(v4.into()),
                None => IpKey::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// What is known about one address.
#[derive(Debug, Clone, Copy)]
struct Host {
    /// Open connections counted against it; never more than `IpLimiter::total`.
    connections: u32,
    /// Its connection-rate bucket; unused when `rate_per_ip` is `None`.
    bucket: TokenBucket,
}

/// Per-address connection accounting for the accept path: call [`IpLimiter::on_connect`] for
/// each accepted socket and, if it said `Ok`, [`IpLimiter::on_disconnect`] once when it closes.
///
/// A refused connection is not counted and spends no token: the rate is of connections let in,
/// so a host hammering at its cap does not also push its rate refusals further out.
///
/// Memory: an address is remembered while it has connections, and afterwards only until its
/// rate bucket is full again (dropped at once when there is no rate limit, otherwise by a sweep
/// on the accept path once per fill time, at least once a second). So entries never exceed the
/// open connections plus the addresses let in within the last two fill times, whatever the mix
/// of IPv4 and IPv6 /64s.
#[derive(Debug)]
pub struct IpLimiter {
    limits: IpLimits,
    epoch: Epoch,
    /// Connections counted, all addresses together: the sum of `hosts[..].connections`, plus
    /// the connections from trusted proxies not attributed to a client yet.
    total: usize,
    hosts: HashMap<IpKey, Host>,
    last_sweep: Millis,
}

impl IpLimiter {
    /// `now` becomes the epoch of this limiter's clock.
    pub fn new(limits: IpLimits, now: Instant) -> Self {
        IpLimiter {
            limits,
            epoch: Epoch::new(now),
            total: 0,
            hosts: HashMap::new(),
            last_sweep: Millis(0),
        }
    }

    /// Counts a new connection from `ip`, or says which limit refuses it. Checked in order:
    /// the total cap (503), this address's cap (429), this address's rate (429).
    pub fn on_connect(&mut self, ip: IpAddr, now: Instant) -> Result<(), IpRefusal> {
        self.on_connect_unattributed()?;
        let verdict = self.attribute(ip, now);
        if verdict.is_err() {
            self.total -= 1;
        }
        verdict
    }

    /// Counts a new connection whose client is not known yet (it came from a trusted proxy,
    /// whose requests name their clients) against the total cap alone. Uncounted with
    /// [`IpLimiter::on_disconnect_unattributed`], unless [`IpLimiter::attribute`] gave it an
    /// address.
    pub fn on_connect_unattributed(&mut self) -> Result<(), IpRefusal> {
        if let Some(max) = self.limits.max_total {
            if self.total >= max {
                return Err(IpRefusal::TooManyConnections { max });
            }
        }
        self.total += 1;
        Ok(())
    }

    /// Counts a connection the total already counts (see
    /// [`IpLimiter::on_connect_unattributed`]) against its client's address, now known: this
    /// address's cap, then its rate. Once `Ok`, the connection is uncounted with
    /// [`IpLimiter::on_disconnect`] of that address; refused, it stays unattributed.
    pub fn attribute(&mut self, ip: IpAddr, now: Instant) -> Result<(), IpRefusal> {
        let now = self.epoch.millis(now);
        if let Some(limit) = self.limits.rate_per_ip {
            if now.since(self.last_sweep) >= limit.sweep_every_ms() {
                self.sweep(&limit, now);
            }
        }
        let key = IpKey::of(ip);
        let rate = self.limits.rate_per_ip;
        let host = self.hosts.entry(key).or_insert_with(|| Host {
            connections: 0,
            bucket: TokenBucket::full(&rate.unwrap_or(Limit::UNUSED)),
        });
        // Without a per-address cap the count still stops at u32::MAX rather than overflow.
        let max_per_ip = self.limits.max_per_ip.unwrap_or(u32::MAX);
        let verdict = match rate {
            _ if host.connections >= max_per_ip => {
                Err(IpRefusal::TooManyFromIp { max: max_per_ip })
            }
            Some(limit) if !host.bucket.try_take(&limit, now) => Err(IpRefusal::TooFastFromIp {
                retry_after: host.bucket.retry_after(&limit, now),
            }),
            _ => Ok(()),
        };
        if verdict.is_ok() {
            host.connections += 1;
        } else if host.connections == 0 && rate.is_none_or(|l| host.bucket.is_full(&l, now)) {
            // Refused before anything was recorded for it (a per-address cap of 0).
            self.hosts.remove(&key);
        }
        verdict
    }

    /// Uncounts a connection from `ip` that [`IpLimiter::on_connect`] let in. An address with no
    /// counted connection is ignored, so counts never go below zero.
    pub fn on_disconnect(&mut self, ip: IpAddr) {
        let key = IpKey::of(ip);
        let Some(host) = self.hosts.get_mut(&key) else {
            return;
        };
        if host.connections > 0 {
            host.connections -= 1;
            self.total -= 1;
        }
        // Without a rate there is nothing else to remember; otherwise the sweep drops it once
        // its bucket is full (this call has no `now` to tell).
        if host.connections == 0 && self.limits.rate_per_ip.is_none() {
            self.hosts.remove(&key);
        }
    }

    /// Uncounts a connection from `ip` as it was counted: against `ip` if `attributed`, in the
    /// total alone otherwise.
    pub fn release(&mut self, ip: IpAddr, attributed: bool) {
        match attributed {
            true => self.on_disconnect(ip),
            false => self.on_disconnect_unattributed(),
        }
    }

    /// Uncounts a connection counted by [`IpLimiter::on_connect_unattributed`] and never
    /// attributed.
    pub fn on_disconnect_unattributed(&mut self) {
        self.total = self.total.saturating_sub(1);
    }

    /// Connections counted, all addresses together.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Connections counted against `ip`'s address (IPv4) or /64 (IPv6).
    pub fn connections_from(&self, ip: IpAddr) -> u32 {
        self.hosts
            .get(&IpKey::of(ip))
            .map_or(0, |host| host.connections)
    }

    /// Addresses currently remembered.
    pub fn tracked(&self) -> usize {
        self.hosts.len()
    }

    fn sweep(&mut self, limit: &Limit, now: Millis) {
        self.hosts
            .retain(|_, h| h.connections > 0 || !h.bucket.is_full(limit, now));
        self.last_sweep = now;
    }
}

/// Every rate limit and connection cap, with herald's defaults; `None` is "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Pushes per user id (control API), see [`UserBuckets`].
    pub user: Option<Limit>,
    /// Messages per client connection, pings included; a bucket per connection.
    pub client: Option<Limit>,
    /// Connection caps on the accept path, see [`IpLimiter`].
    pub ip: IpLimits,
    /// Engine.IO session caps at the handshake: `--max-sessions` in total and
    /// `--max-connections-per-ip` per address, counted apart from connections; no rate (the
    /// connection that carries a handshake was let in by the connection rate).
    pub sessions: IpLimits,
    /// The cap on [`UserBuckets`]' memory.
    pub max_tracked_users: usize,
}

/// The limits as the command line states them, `0` meaning "off" where a flag says so: what
/// the configuration hands over, so that this module never reads the configuration itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    pub user_rate: u32,
    pub user_burst: u32,
    pub client_rate: u32,
    pub client_burst: u32,
    pub max_connections: usize,
    pub max_sessions: usize,
    pub max_connections_per_ip: u32,
    pub connection_rate_per_ip: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            user_rate: DEFAULT_USER_RATE,
            user_burst: DEFAULT_USER_BURST,
            client_rate: DEFAULT_CLIENT_RATE,
            client_burst: DEFAULT_CLIENT_BURST,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            connection_rate_per_ip: DEFAULT_CONNECTION_RATE_PER_IP,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from(LimitSettings::default())
    }
}

impl From<LimitSettings> for Limits {
    /// `0` turns a limit off.
    fn from(s: LimitSettings) -> Self {
        let max_per_ip = (s.max_connections_per_ip > 0).then_some(s.max_connections_per_ip);
        Limits {
            user: Limit::new(s.user_rate, s.user_burst),
            client: Limit::new(s.client_rate, s.client_burst),
            sessions: IpLimits {
                max_total: (s.max_sessions > 0).then_some(s.max_sessions),
                max_per_ip,
                rate_per_ip: None,
            },
            ip: IpLimits {
                max_total: (s.max_connections > 0).then_some(s.max_connections),
                max_per_ip,
                rate_per_ip: Limit::new(
                    s.connection_rate_per_ip,
                    s.connection_rate_per_ip
                        .saturating_mul(CONNECTION_BURST_SECONDS),
                ),
            },
            max_tracked_users: DEFAULT_MAX_TRACKED_USERS,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn limit(rate: u32, burst: u32) -> Limit {
        Limit::new(rate, burst).expect("a rate above 0 is a limit")
    }

    /// How many tokens `bucket` gives at `now`, emptying it.
    fn drain(bucket: &mut TokenBucket, limit: &Limit, now: Millis) -> u32 {
        let mut n = 0;
        while bucket.try_take(limit, now) {
            n += 1;
        }
        n
    }

    #[test]
    fn a_bucket_is_eight_bytes() {
        assert_eq!(std::mem::size_of::<TokenBucket>(), 8);
    }

    #[test]
    fn a_full_bucket_gives_exactly_its_burst() {
        let l = limit(20, 50);
        let mut b = TokenBucket::full(&l);
        assert_eq!(drain(&mut b, &l, Millis(1_000)), 50);
        assert!(!b.try_take(&l, Millis(1_000)));
    }

    #[test]
    fn refill_is_exact_at_the_boundary() {
        // 10/s: one token per 100 ms.
        let l = limit(10, 5);
        let mut b = TokenBucket::full(&l);
        assert_eq!(drain(&mut b, &l, Millis(0)), 5);
        assert!(!b.try_take(&l, Millis(99)));
        assert!(b.try_take(&l, Millis(100)));
        assert!(!b.try_take(&l, Millis(199)));
        assert!(b.try_take(&l, Millis(200)));
        // Half a second: five tokens, no more.
        assert_eq!(drain(&mut b, &l, Millis(700)), 5);
    }

    #[test]
    fn fractions_of_a_token_are_kept() {
        // 3/s: a token every 333.3 ms; refusals in between must not lose the partial refill.
        // (Burst 2, so the bucket is never full and nothing is cut off at the cap.)
        let l = limit(3, 2);
        let mut b = TokenBucket::full(&l);
        assert_eq!(drain(&mut b, &l, Millis(0)), 2);
        for t in [100, 200, 300, 333] {
            assert!(!b.try_take(&l, Millis(t)), "at {t} ms");
        }
        assert!(b.try_take(&l, Millis(334)));
        // 334 ms gave 1002 milli-tokens; the 2 left make the next one due at 334 + 333.
        assert!(!b.try_take(&l, Millis(666)));
        assert!(b.try_take(&l, Millis(667)));
        // Over a long run the count is exact: 3 per second.
        let mut b = TokenBucket::full(&l);
        assert_eq!(drain(&mut b, &l, Millis(0)), 2);
        let taken = (1..=10_000).filter(|&t| b.try_take(&l, Millis(t))).count();
        assert_eq!(taken, 30);
    }

    #[test]
    fn a_full_bucket_holds_no_fraction_beyond_its_burst() {
        let l = limit(3, 1);
        let mut b = TokenBucket::full(&l);
        assert!(b.try_take(&l, Millis(0)));
        // 1002 milli-tokens are due at 334 ms, but a bucket of one holds 1000.
        assert!(b.try_take(&l, Millis(334)));
        assert!(!b.try_take(&l, Millis(667)));
        assert!(b.try_take(&l, Millis(668)));
    }

    #[test]
    fn a_long_idle_never_fills_past_the_burst() {
        let l = limit(20, 50);
        let mut b = TokenBucket::full(&l);
        assert_eq!(drain(&mut b, &l, Millis(0)), 50);
        // Forty days idle.
        assert_eq!(drain(&mut b, &l, Millis(40 * 86_400_000)), 50);
        // The fastest rate over the longest exact gap does not overflow either.
        let fast = limit(u32::MAX, Limit::MAX_BURST);
        let mut b = TokenBucket::full(&fast);
        assert!(b.try_take(&fast, Millis(0)));
        assert!(b.is_full(&fast, Millis(u32::MAX - BACKWARDS_TOLERANCE_MS)));
    }

    #[test]
    fn limits_are_clamped_and_rate_zero_is_none() {
        assert_eq!(Limit::new(0, 50), None);
        assert_eq!(limit(5, 0).burst(), 1);
        assert_eq!(limit(5, u32::MAX).burst(), Limit::MAX_BURST);
        assert_eq!(limit(20, 50).time_to_fill(), Duration::from_millis(2_500));
        assert_eq!(limit(3, 1).time_to_fill(), Duration::from_millis(334));
        let huge = limit(1, u32::MAX);
        assert_eq!(
            drain(&mut TokenBucket::full(&huge), &huge, Millis(0)),
            Limit::MAX_BURST
        );
    }

    #[test]
    fn the_clock_may_wrap() {
        let l = limit(10, 2);
        let mut b = TokenBucket::full(&l);
        let before_wrap = Millis(u32::MAX - 49);
        assert_eq!(drain(&mut b, &l, before_wrap), 2);
        // 50 ms later the clock reads 0; 100 ms later, 50.
        assert!(!b.try_take(&l, Millis(0)));
        assert!(!b.try_take(&l, Millis(49)));
        assert!(b.try_take(&l, Millis(50)));
    }

    #[test]
    fn a_clock_slightly_behind_refills_nothing() {
        // Threads may reach a shared bucket with instants a little out of order.
        let l = limit(10, 1);
        let mut b = TokenBucket::full(&l);
        assert!(b.try_take(&l, Millis(10_000)));
        assert!(!b.try_take(&l, Millis(9_000)));
        assert_eq!(b.retry_after(&l, Millis(9_000)), Duration::from_millis(100));
        assert!(b.try_take(&l, Millis(9_100)));
    }

    #[test]
    fn a_gap_beyond_the_wrap_only_refills_less() {
        let l = limit(1, 10);
        let mut b = TokenBucket::full(&l);
        assert_eq!(drain(&mut b, &l, Millis(0)), 10);
        // 2^32 ms + 3 s later the clock reads 3000: three tokens, not ten (and never eleven).
        assert_eq!(drain(&mut b, &l, Millis(3_000)), 3);
        // 2^32 ms - 30 s later reads as 30 s before the stamp: nothing.
        let mut b = TokenBucket::full(&l);
        assert_eq!(drain(&mut b, &l, Millis(100_000)), 10);
        assert_eq!(drain(&mut b, &l, Millis(70_000)), 0);
        // And from there it refills normally.
        assert_eq!(drain(&mut b, &l, Millis(72_000)), 2);
    }

    #[test]
    fn retry_after_is_the_wait_for_one_token() {
        let l = limit(20, 50);
        let mut b = TokenBucket::full(&l);
        assert_eq!(b.retry_after(&l, Millis(0)), Duration::ZERO);
        drain(&mut b, &l, Millis(0));
        assert_eq!(b.retry_after(&l, Millis(0)), Duration::from_millis(50));
        assert_eq!(b.retry_after(&l, Millis(20)), Duration::from_millis(30));
        assert_eq!(b.retry_after(&l, Millis(50)), Duration::ZERO);
        // Rounded up to the millisecond: 3/s needs 333.3 ms.
        let l = limit(3, 1);
        let mut b = TokenBucket::full(&l);
        assert!(b.try_take(&l, Millis(0)));
        assert_eq!(b.retry_after(&l, Millis(0)), Duration::from_millis(334));
        assert!(!b.try_take(&l, Millis(333)));
        assert!(b.try_take(&l, Millis(334)));
        let l = limit(1, 1);
        let mut b = TokenBucket::full(&l);
        assert!(b.try_take(&l, Millis(0)));
        assert_eq!(b.retry_after(&l, Millis(0)), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_seconds_round_up() {
        let cases = [(0, 0), (1, 1), (999, 1), (1_000, 1), (1_001, 2), (2_500, 3)];
        for (ms, secs) in cases {
            assert_eq!(retry_after_secs(Duration::from_millis(ms)), secs, "{ms} ms");
        }
        assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
    }

    #[test]
    fn the_epoch_counts_milliseconds_and_wraps() {
        let t0 = Instant::now();
        let e = Epoch::new(t0);
        assert_eq!(e.millis(t0), Millis(0));
        assert_eq!(e.millis(t0 + Duration::from_micros(1_999)), Millis(1));
        assert_eq!(e.millis(t0 + Duration::from_millis(1 << 32)), Millis(0));
        assert_eq!(
            e.millis(t0 + Duration::from_millis((1 << 32) + 7)),
            Millis(7)
        );
        let later = Epoch::new(t0 + Duration::from_secs(1));
        assert_eq!(later.millis(t0), Millis(0));
    }

    #[test]
    fn users_are_limited_one_by_one() {
        let t0 = Instant::now();
        let mut users = UserBuckets::new(limit(20, 50), 1_000, t0);
        for _ in 0..50 {
            assert_eq!(users.check("alice", t0), Ok(()));
        }
        assert_eq!(users.check("alice", t0), Err(Duration::from_millis(50)));
        assert_eq!(users.check("bob", t0), Ok(()));
        let later = t0 + Duration::from_millis(50);
        assert_eq!(users.check("alice", later), Ok(()));
        assert_eq!(users.check("alice", later), Err(Duration::from_millis(50)));
    }

    #[test]
    fn full_user_buckets_are_forgotten() {
        let t0 = Instant::now();
        let mut users = UserBuckets::new(limit(20, 50), 1_000, t0);
        for i in 0..100 {
            assert!(users.check(&format!("user{i}"), t0).is_ok());
        }
        assert_eq!(users.len(), 100);
        // One sweep period later (2.5 s, the fill time) every bucket is full and the next check
        // sweeps them, keeping only its own.
        let later = t0 + Duration::from_millis(2_500);
        assert!(users.check("someone", later).is_ok());
        assert_eq!(users.len(), 1);
    }

    #[test]
    fn a_flood_of_distinct_ids_stays_within_the_cap() {
        const CAP: usize = 10_000;
        let t0 = Instant::now();
        let mut users = UserBuckets::new(limit(20, 50), CAP, t0);
        let mut max_len = 0;
        for i in 0..1_000_000u32 {
            // Everyone within one second: nothing is full, so the cap has to do the work.
            let now = t0 + Duration::from_micros(u64::from(i));
            assert!(
                users.check(&i.to_string(), now).is_ok(),
                "a new id is let through"
            );
            max_len = max_len.max(users.len());
        }
        assert_eq!(max_len, CAP);
        assert!(users.len() <= CAP);
    }

    #[test]
    fn at_the_cap_the_most_recently_used_buckets_stay() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut users = UserBuckets::new(limit(1, 3), 4, t0);
        for (i, user) in ["a", "b", "c", "d"].into_iter().enumerate() {
            assert!(users.check(user, ms(i as u64)).is_ok());
        }
        // "a" is used again, so it is the youngest; "b" is now the oldest.
        assert!(users.check("a", ms(10)).is_ok());
        assert!(users.check("a", ms(10)).is_ok());
        assert_eq!(users.check("a", ms(10)), Err(Duration::from_millis(990)));
        // A fifth id at the cap of 4: nothing is full, so half the cap (2) stays: "a" and "d".
        assert!(users.check("e", ms(11)).is_ok());
        assert_eq!(users.len(), 3);
        assert!(users.check("a", ms(11)).is_err(), "a kept its empty bucket");
        // A cap of 1 still works.
        let mut one = UserBuckets::new(limit(1, 1), 0, t0);
        assert!(one.check("x", t0).is_ok());
        assert!(one.check("y", t0).is_ok());
        assert_eq!(one.len(), 1);
        assert!(one.check("y", t0).is_err());
    }

    #[test]
    fn a_multi_user_push_keeps_the_allowed_users() {
        let t0 = Instant::now();
        let mut users = UserBuckets::new(limit(1, 1), 100, t0);
        assert!(users.check("b", t0).is_ok());
        let mut ids: Vec<String> = ["a", "b", "c"].map(String::from).into();
        assert_eq!(users.retain_allowed(&mut ids, t0), 1);
        assert_eq!(ids, ["a", "c"]);
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        Ipv4Addr::new(a, b, c, d).into()
    }

    fn v6(s: &str) -> IpAddr {
        s.parse::<Ipv6Addr>().expect("a test address").into()
    }

    fn unlimited() -> IpLimits {
        IpLimits {
            max_total: None,
            max_per_ip: None,
            rate_per_ip: None,
        }
    }

    #[test]
    fn the_total_cap_is_a_503() {
        let t0 = Instant::now();
        let caps = IpLimits {
            max_total: Some(3),
            ..unlimited()
        };
        let mut ips = IpLimiter::new(caps, t0);
        for d in 1..=3 {
            assert_eq!(ips.on_connect(v4(10, 0, 0, d), t0), Ok(()));
        }
        let refusal = ips.on_connect(v4(10, 0, 0, 4), t0).unwrap_err();
        assert_eq!(refusal, IpRefusal::TooManyConnections { max: 3 });
        assert_eq!(refusal.status(), 503);
        assert_eq!(refusal.retry_after(), None);
        assert_eq!(ips.total(), 3);
        ips.on_disconnect(v4(10, 0, 0, 2));
        assert_eq!(ips.total(), 2);
        assert_eq!(ips.on_connect(v4(10, 0, 0, 4), t0), Ok(()));
    }

    #[test]
    fn a_proxied_connection_counts_in_the_total_until_its_client_is_known() {
        let t0 = Instant::now();
        let caps = IpLimits {
            max_total: Some(3),
            max_per_ip: Some(1),
            ..unlimited()
        };
        let mut ips = IpLimiter::new(caps, t0);
        // Two connections from the proxy: the total counts them, no address does.
        assert_eq!(ips.on_connect_unattributed(), Ok(()));
        assert_eq!(ips.on_connect_unattributed(), Ok(()));
        assert_eq!(ips.total(), 2);
        assert_eq!(ips.tracked(), 0);
        // Their clients: the first is let in, the second is over its address's cap and stays
        // unattributed.
        let client = v4(198, 51, 100, 7);
        assert_eq!(ips.attribute(client, t0), Ok(()));
        assert_eq!(
            ips.attribute(client, t0),
            Err(IpRefusal::TooManyFromIp { max: 1 })
        );
        assert_eq!(ips.connections_from(client), 1);
        assert_eq!(ips.total(), 2);
        // The total cap holds for both kinds together.
        assert_eq!(ips.on_connect(v4(10, 0, 0, 1), t0), Ok(()));
        assert_eq!(
            ips.on_connect_unattributed(),
            Err(IpRefusal::TooManyConnections { max: 3 })
        );
        ips.on_disconnect(client);
        ips.on_disconnect_unattributed();
        ips.on_disconnect(v4(10, 0, 0, 1));
        assert_eq!(ips.total(), 0);
        assert_eq!(ips.connections_from(client), 0);
    }

    #[test]
    fn the_per_address_cap_is_a_429() {
        let t0 = Instant::now();
        let caps = IpLimits {
            max_per_ip: Some(2),
            ..unlimited()
        };
        let mut ips = IpLimiter::new(caps, t0);
        let nat = v4(192, 0, 2, 1);
        assert!(ips.on_connect(nat, t0).is_ok());
        assert!(ips.on_connect(nat, t0).is_ok());
        let refusal = ips.on_connect(nat, t0).unwrap_err();
        assert_eq!(refusal, IpRefusal::TooManyFromIp { max: 2 });
        assert_eq!(refusal.status(), 429);
        assert!(
            ips.on_connect(v4(192, 0, 2, 2), t0).is_ok(),
            "others are not affected"
        );
        assert_eq!(ips.connections_from(nat), 2);
        assert_eq!(ips.total(), 3);
        ips.on_disconnect(nat);
        assert_eq!(ips.connections_from(nat), 1);
        assert!(ips.on_connect(nat, t0).is_ok());
    }

    #[test]
    fn the_per_address_rate_is_a_429_with_retry_after() {
        let t0 = Instant::now();
        let caps = IpLimits {
            rate_per_ip: Limit::new(20, 100),
            ..unlimited()
        };
        let mut ips = IpLimiter::new(caps, t0);
        let host = v4(198, 51, 100, 7);
        for _ in 0..100 {
            assert!(ips.on_connect(host, t0).is_ok());
        }
        let refusal = ips.on_connect(host, t0).unwrap_err();
        assert_eq!(
            refusal,
            IpRefusal::TooFastFromIp {
                retry_after: Duration::from_millis(50)
            }
        );
        assert_eq!(refusal.status(), 429);
        assert_eq!(refusal.retry_after(), Some(Duration::from_millis(50)));
        assert_eq!(ips.total(), 100, "a refusal is not counted");
        assert!(ips.on_connect(host, t0 + Duration::from_millis(50)).is_ok());
    }

    #[test]
    fn a_refusal_spends_no_token() {
        let t0 = Instant::now();
        let caps = IpLimits {
            max_per_ip: Some(1),
            rate_per_ip: Limit::new(1, 2),
            ..unlimited()
        };
        let mut ips = IpLimiter::new(caps, t0);
        let host = v4(203, 0, 113, 9);
        assert!(ips.on_connect(host, t0).is_ok());
        for _ in 0..10 {
            assert!(matches!(
                ips.on_connect(host, t0),
                Err(IpRefusal::TooManyFromIp { .. })
            ));
        }
        ips.on_disconnect(host);
        assert!(
            ips.on_connect(host, t0).is_ok(),
            "the second token is still there"
        );
    }

    #[test]
    fn an_unknown_disconnect_is_ignored() {
        let t0 = Instant::now();
        let mut ips = IpLimiter::new(unlimited(), t0);
        assert!(ips.on_connect(v4(10, 1, 1, 1), t0).is_ok());
        ips.on_disconnect(v4(10, 9, 9, 9));
        ips.on_disconnect(v4(10, 1, 1, 1));
        ips.on_disconnect(v4(10, 1, 1, 1));
        assert_eq!(ips.total(), 0);
        assert_eq!(ips.tracked(), 0);
    }

    #[test]
    fn ipv6_counts_per_64() {
        let t0 = Instant::now();
        let caps = IpLimits {
            max_per_ip: Some(2),
            ..unlimited()
        };
        let mut ips = IpLimiter::new(caps, t0);
        assert!(ips.on_connect(v6("2001:db8:1:2::1"), t0).is_ok());
        assert!(ips
            .on_connect(v6("2001:db8:1:2:ffff:ffff:ffff:ffff"), t0)
            .is_ok());
        assert_eq!(
            ips.on_connect(v6("2001:db8:1:2:abcd::9"), t0),
            Err(IpRefusal::TooManyFromIp { max: 2 })
        );
        assert_eq!(ips.connections_from(v6("2001:db8:1:2::42")), 2);
        // The next /64 is someone else.
        assert!(ips.on_connect(v6("2001:db8:1:3::1"), t0).is_ok());
        assert_eq!(
            IpKey::of(v6("2001:db8:1:2::1")),
            IpKey::V6Net(0x2001_0db8_0001_0002)
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_is_ipv4() {
        let t0 = Instant::now();
        let caps = IpLimits {
            max_per_ip: Some(1),
            ..unlimited()
        };
        let mut ips = IpLimiter::new(caps, t0);
        assert!(ips.on_connect(v4(192, 0, 2, 33), t0).is_ok());
        let mapped = v6("::ffff:192.0.2.33");
        assert_eq!(IpKey::of(mapped), IpKey::of(v4(192, 0, 2, 33)));
        assert!(ips.on_connect(mapped, t0).is_err());
        ips.on_disconnect(mapped);
        assert_eq!(ips.total(), 0);
        // Other addresses in ::ffff:0:0/96 map to other IPv4 addresses, not one /64.
        assert!(ips.on_connect(v6("::ffff:192.0.2.34"), t0).is_ok());
        assert!(ips.on_connect(v6("::ffff:192.0.2.35"), t0).is_ok());
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let t0 = Instant::now();
        // No rate: nothing to remember once the last connection goes.
        let mut ips = IpLimiter::new(unlimited(), t0);
        assert!(ips.on_connect(v4(10, 0, 0, 1), t0).is_ok());
        ips.on_disconnect(v4(10, 0, 0, 1));
        assert_eq!(ips.tracked(), 0);
        // With a rate (fill time 1 s): kept until the bucket is full, then swept.
        let caps = IpLimits {
            rate_per_ip: Limit::new(20, 20),
            ..unlimited()
        };
        let mut ips = IpLimiter::new(caps, t0);
        for i in 0..1_000u32 {
            let ip = Ipv4Addr::from(0x0a00_0000 + i).into();
            assert!(ips.on_connect(ip, t0).is_ok());
            if i % 2 == 0 {
                ips.on_disconnect(ip);
            }
        }
        assert_eq!(ips.tracked(), 1_000);
        assert!(ips
            .on_connect(v4(10, 255, 0, 1), t0 + Duration::from_secs(1))
            .is_ok());
        assert_eq!(ips.tracked(), 501, "the connected half and the newcomer");
        assert_eq!(ips.total(), 501);
    }

    #[test]
    fn a_per_address_cap_of_zero_remembers_nothing() {
        let t0 = Instant::now();
        let caps = IpLimits {
            max_per_ip: Some(0),
            ..unlimited()
        };
        let mut ips = IpLimiter::new(caps, t0);
        assert!(ips.on_connect(v4(10, 0, 0, 1), t0).is_err());
        assert_eq!(ips.tracked(), 0);
    }

    #[test]
    fn the_defaults() {
        let limits = Limits::default();
        assert_eq!(limits.user, Limit::new(20, 50));
        assert_eq!(limits.client, Limit::new(10, 20));
        assert_eq!(limits.ip.max_total, Some(100_000));
        assert_eq!(limits.ip.max_per_ip, Some(1_000));
        assert_eq!(limits.ip.rate_per_ip, Limit::new(20, 100));
    }

    #[test]
    fn zero_settings_turn_limits_off() {
        let off = Limits::from(LimitSettings {
            user_rate: 0,
            client_rate: 0,
            max_connections: 0,
            max_sessions: 0,
            max_connections_per_ip: 0,
            connection_rate_per_ip: 0,
            ..LimitSettings::default()
        });
        assert_eq!((off.user, off.client), (None, None));
        assert_eq!(off.ip, unlimited());
        assert_eq!(off.sessions, unlimited());
    }

    #[test]
    fn inbound_bucket_warns_once_then_closes_after_a_burst_of_refusals() {
        let limit = Limit::new(1, 3).unwrap();
        let mut b = InboundBucket::new(Some(&limit));
        let t = Millis(1_000);
        for _ in 0..3 {
            assert_eq!(b.admit(&limit, t), Admit::Yes);
        }
        assert_eq!(b.admit(&limit, t), Admit::DropAndWarn);
        assert_eq!(b.admit(&limit, t), Admit::Drop);
        assert_eq!(b.admit(&limit, t), Admit::Drop);
        assert_eq!(b.admit(&limit, t), Admit::Close);
        assert_eq!(b.admit(&limit, t), Admit::Close);
    }

    #[test]
    fn inbound_bucket_forgives_a_client_that_slows_down() {
        let limit = Limit::new(1, 2).unwrap();
        let mut b = InboundBucket::new(Some(&limit));
        let mut t = Millis(0);
        assert_eq!(b.admit(&limit, t), Admit::Yes);
        assert_eq!(b.admit(&limit, t), Admit::Yes);
        assert_eq!(b.admit(&limit, t), Admit::DropAndWarn);
        assert_eq!(b.admit(&limit, t), Admit::Drop);
        // One message a second from now on: each is admitted, and the refusals never add up.
        for _ in 0..10 {
            t = Millis(t.0 + 1_000);
            assert_eq!(b.admit(&limit, t), Admit::Yes);
        }
        assert_eq!(b.admit(&limit, t), Admit::DropAndWarn);
    }
}
