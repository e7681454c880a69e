//! Rate limits and connection caps on their hot paths: a connection's token bucket (every
//! message a client sends), the per-user push buckets (every push the control API takes), and
//! the per-address accounting (every accepted and every closed socket).
//!
//! Buckets are measured both letting a message through and refusing one. Where a map of buckets
//! is involved, the clock moves as it would under a steady load: each tracked user or address
//! comes back exactly when its bucket has refilled one token, so every check is let through, no
//! bucket is ever full (none is swept away) and the periodic sweep costs what it costs in
//! service, amortized over the checks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use herald::limits::{
    Admit, InboundBucket, IpLimiter, IpLimits, Limit, Limits, Millis, TokenBucket, UserBuckets,
    DEFAULT_CLIENT_BURST, DEFAULT_CLIENT_RATE, DEFAULT_MAX_TRACKED_USERS, DEFAULT_USER_BURST,
    DEFAULT_USER_RATE,
};

/// Users with a push bucket: a busy minute, and the default cap (`--max-tracked-users`).
const TRACKED_USERS: [usize; 2] = [10_000, DEFAULT_MAX_TRACKED_USERS];
/// Connections held open from as many distinct addresses while others come and go: they are
/// in the per-address map the accept path looks up.
const OPEN_CONNECTIONS: u32 = 10_000;
/// Addresses connecting and disconnecting in turn.
const CHURNING_ADDRESSES: u32 = 1_000;

fn client_limit() -> Limit {
    Limit::new(DEFAULT_CLIENT_RATE, DEFAULT_CLIENT_BURST).expect("a nonzero rate")
}

fn user_limit() -> Limit {
    Limit::new(DEFAULT_USER_RATE, DEFAULT_USER_BURST).expect("a nonzero rate")
}

/// How long `limit` takes to refill one token, in milliseconds (exact for the defaults).
fn one_token_ms(limit: &Limit) -> u32 {
    1_000 / limit.rate_per_sec()
}

fn connection_bucket(c: &mut Criterion) {
    let limit = client_limit();
    let step = one_token_ms(&limit);

    let mut g = c.benchmark_group("limits/token_bucket");
    g.throughput(Throughput::Elements(1));
    // Each take comes one token's refill after the last: always let through.
    let mut bucket = TokenBucket::full(&limit);
    let mut now = Millis(0);
    g.bench_function("try_take/admitted", |b| {
        b.iter(|| {
            now = Millis(now.0.wrapping_add(step));
            black_box(bucket.try_take(&limit, black_box(now)))
        })
    });
    assert!(bucket.try_take(&limit, Millis(now.0.wrapping_add(step))));
    // An empty bucket at a standstill: always refused.
    let mut bucket = TokenBucket::full(&limit);
    while bucket.try_take(&limit, Millis(0)) {}
    g.bench_function("try_take/refused", |b| {
        b.iter(|| black_box(bucket.try_take(&limit, black_box(Millis(0)))))
    });
    g.finish();

    let mut g = c.benchmark_group("limits/inbound_bucket");
    g.throughput(Throughput::Elements(1));
    let mut inbound = InboundBucket::new(Some(&limit));
    let mut now = Millis(0);
    g.bench_function("admit/yes", |b| {
        b.iter(|| {
            now = Millis(now.0.wrapping_add(step));
            black_box(inbound.admit(&limit, black_box(now)))
        })
    });
    assert_eq!(
        inbound.admit(&limit, Millis(now.0.wrapping_add(step))),
        Admit::Yes
    );
    // A client that never slows down: dropped, then (past a burst of refusals) closed.
    let mut inbound = InboundBucket::new(Some(&limit));
    while inbound.admit(&limit, Millis(0)) == Admit::Yes {}
    g.bench_function("admit/refused", |b| {
        b.iter(|| black_box(inbound.admit(&limit, black_box(Millis(0)))))
    });
    g.finish();
}

fn user_id(i: usize) -> String {
    format!("user-{i:06}")
}

fn user_buckets(c: &mut Criterion) {
    let limit = user_limit();
    let step = Duration::from_millis(one_token_ms(&limit).into());
    let mut g = c.benchmark_group("limits/user_buckets");
    g.throughput(Throughput::Elements(1));
    for tracked in TRACKED_USERS {
        let ids: Vec<String> = (0..tracked).map(user_id).collect();
        let t0 = Instant::now();
        let mut users = UserBuckets::new(limit, DEFAULT_MAX_TRACKED_USERS, t0);
        for id in &ids {
            assert!(users.check(id, t0).is_ok());
        }
        assert_eq!(users.len(), tracked);

        // Every tracked user pushed in turn; a round of all of them takes one token's refill.
        let mut now = t0 + step;
        for id in &ids {
            assert!(users.check(id, now).is_ok(), "{id} is let through");
        }
        // The first iteration starts a new round.
        let mut next = tracked - 1;
        g.bench_with_input(
            BenchmarkId::new("check/each_user_in_turn", tracked),
            &ids,
            |b, ids| {
                b.iter(|| {
                    next += 1;
                    if next == ids.len() {
                        next = 0;
                        now += step;
                    }
                    black_box(users.check(black_box(&ids[next]), now).is_ok())
                })
            },
        );
        assert_eq!(users.len(), tracked, "no bucket was swept away");

        // One user over and over at one instant: its bucket is soon empty, so this is a hit
        // that is refused (with the wait worked out), on a key that stays in cache.
        let hot = &ids[tracked / 2];
        while users.check(hot, now).is_ok() {}
        g.bench_with_input(
            BenchmarkId::new("check/one_user_refused", tracked),
            hot,
            |b, hot| b.iter(|| black_box(users.check(black_box(hot), now).is_err())),
        );
        assert_eq!(users.len(), tracked);
    }
    g.finish();
}

/// The `i`th address of a family: IPv4 from 100.64.0.0/10, IPv6 one /64 each in 2001:db8::/32.
fn address(ipv6: bool, i: u32) -> IpAddr {
    if ipv6 {
        Ipv6Addr::from((0x2001_0db8_u128 << 96) | (u128::from(i) << 64) | 1).into()
    } else {
        Ipv4Addr::from(0x6440_0000 + i).into()
    }
}

/// A limiter holding [`OPEN_CONNECTIONS`] connections from as many 10.0.0.0/8 addresses.
fn busy_limiter(limits: IpLimits, t0: Instant) -> IpLimiter {
    let mut ips = IpLimiter::new(limits, t0);
    for i in 0..OPEN_CONNECTIONS {
        assert!(ips
            .on_connect(Ipv4Addr::from(0x0a00_0000 + i).into(), t0)
            .is_ok());
    }
    ips
}

fn ip_limiter(c: &mut Criterion) {
    let defaults = Limits::default().ip;
    let rate = defaults.rate_per_ip.expect("a rate per address by default");
    let step = Duration::from_millis(one_token_ms(&rate).into());
    let mut g = c.benchmark_group("limits/ip_limiter");
    g.throughput(Throughput::Elements(1));

    // The defaults (total cap, per-address cap and rate): addresses connect and close in turn, a
    // round of them taking one token's refill, so each stays tracked and is always let in.
    for (family, ipv6) in [("ipv4", false), ("ipv6", true)] {
        let addrs: Vec<IpAddr> = (0..CHURNING_ADDRESSES).map(|i| address(ipv6, i)).collect();
        let t0 = Instant::now();
        let mut ips = busy_limiter(defaults, t0);
        let mut now = t0;
        let mut next = 0;
        g.bench_with_input(
            BenchmarkId::new("connect+disconnect/defaults", family),
            &addrs,
            |b, addrs| {
                b.iter(|| {
                    next += 1;
                    if next == addrs.len() {
                        next = 0;
                        now += step;
                    }
                    let ip = black_box(addrs[next]);
                    let admitted = ips.on_connect(ip, now).is_ok();
                    if admitted {
                        ips.on_disconnect(ip);
                    }
                    admitted
                })
            },
        );
        let last = addrs[next];
        assert!(ips.on_connect(last, now + step).is_ok(), "still let in");
        assert_eq!(ips.total(), OPEN_CONNECTIONS as usize + 1);
    }

    // No rate (what load tests run with): an address is remembered only while connected, so each
    // connect inserts it and each disconnect removes it.
    let caps_only = IpLimits {
        rate_per_ip: None,
        ..defaults
    };
    let t0 = Instant::now();
    let mut ips = busy_limiter(caps_only, t0);
    let ip = address(false, 0);
    g.bench_function("connect+disconnect/caps_only", |b| {
        b.iter(|| {
            let ip = black_box(ip);
            let admitted = ips.on_connect(ip, t0).is_ok();
            if admitted {
                ips.on_disconnect(ip);
            }
            admitted
        })
    });
    assert_eq!(ips.total(), OPEN_CONNECTIONS as usize);
    assert_eq!(ips.tracked(), OPEN_CONNECTIONS as usize);
    g.finish();
}

criterion_group!(benches, connection_bucket, user_buckets, ip_limiter);
criterion_main!(benches);
