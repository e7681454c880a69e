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

use crate::config::Config;

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

/// Per-user push buckets, for the control API: each user id may be pushed `limit` notifications.
///
/// One instance is shared by the control threads (behind a mutex: a check is a hash lookup and
/// a few integer operations), or kept per thread at the cost of each thread allowing the full
/// rate.
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
}

impl IpRefusal {
    /// The HTTP status herald answers a refused connection with; the one place that decides it.
    pub fn status(&self) -> u16 {
        match self {
            IpRefusal::TooManyConnections { .. } => 503,
            IpRefusal::TooManyFromIp { .. } | IpRefusal::TooFastFromIp { .. } => 429,
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
enum IpKey {
    V4(u32),
    V6Net(u64),
}

impl IpKey {
    fn of(ip: IpAddr) -> Self {
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
    /// Connections counted, all addresses together: the sum of `hosts[..].connections`.
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
        let now = self.epoch.millis(now);
        if let Some(limit) = self.limits.rate_per_ip {
            if now.since(self.last_sweep) >= limit.sweep_every_ms() {
                self.sweep(&limit, now);
            }
        }
        if let Some(max) = self.limits.max_total {
            if self.total >= max {
                return Err(IpRefusal::TooManyConnections { max });
            }
        }
        let key = IpKey::of(ip);
        let rate = self.limits.rate_per_ip;
        let host = self.hosts.entry(key).or_insert_with(|| Host {
            connections: 0,
            bucket: TokenBucket::full(&rate.unwrap_or(Limit::UNUSED)),
        });
        let verdict = match (self.limits.max_per_ip, rate) {
            (Some(max), _) if host.connections >= max => Err(IpRefusal::TooManyFromIp { max }),
            (_, Some(limit)) if !host.bucket.try_take(&limit, now) => {
                Err(IpRefusal::TooFastFromIp {
                    retry_after: host.bucket.retry_after(&limit, now),
                })
            }
            _ => Ok(()),
        };
        if verdict.is_ok() {
            host.connections += 1;
            self.total += 1;
        } else if host.connections == 0 && rate.map_or(true, |l| host.bucket.is_full(&l, now)) {
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
    /// The cap on [`UserBuckets`]' memory.
    pub max_tracked_users: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::build(
            DEFAULT_USER_RATE,
            DEFAULT_USER_BURST,
            DEFAULT_CLIENT_RATE,
            DEFAULT_CLIENT_BURST,
            DEFAULT_MAX_CONNECTIONS,
            DEFAULT_MAX_CONNECTIONS_PER_IP,
            DEFAULT_CONNECTION_RATE_PER_IP,
        )
    }
}

impl From<&Config> for Limits {
    /// `0` on the command line turns a limit off.
    fn from(c: &Config) -> Self {
        Limits::build(
            c.user_rate,
            c.user_burst,
            c.client_rate,
            c.client_burst,
            c.max_connections,
            c.max_connections_per_ip,
            c.connection_rate_per_ip,
        )
    }
}

impl Limits {
    fn build(
        user_rate: u32,
        user_burst: u32,
        client_rate: u32,
        client_burst: u32,
        max_connections: usize,
        max_per_ip: u32,
        connection_rate_per_ip: u32,
    ) -> Self {
        Limits {
            user: Limit::new(user_rate, user_burst),
            client: Limit::new(client_rate, client_burst),
            ip: IpLimits {
                max_total: (max_connections > 0).then_some(max_connections),
                max_per_ip: (max_per_ip > 0).then_some(max_per_ip),
                rate_per_ip: Limit::new(
                    connection_rate_per_ip,
                    connection_rate_per_ip.saturating_mul(CONNECTION_BURST_SECONDS),
                ),
            },
            max_tracked_users: DEFAULT_MAX_TRACKED_USERS,
        }
    }
}
