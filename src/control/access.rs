//! Who may use the control API: the API key check, and the lockout of client addresses that
//! keep presenting wrong keys. Decided from a request's head alone, so that a caller without
//! the key is answered before its body is read (or asked for, with `Expect: 100-continue`).
//!
//! [`Lockout`] is the plain table of failures, with the clock passed in; [`Access`] puts it
//! behind a lock for the connection threads (the control API's own threads, never the event
//! loop's) and says which [`ApiError`] a refused request gets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::api::ApiError;
use super::stats::Stats;
use crate::auth::ApiKeys;
use crate::limits::IpKey;

/// How many failed attempts an address may make, over what window, and how many addresses
/// are remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutSettings {
    /// Failures within `window` after which an address is refused; 0: never.
    pub max_failures: u32,
    pub window: Duration,
    /// Addresses remembered at once.
    pub max_addresses: usize,
}

/// An address's failures in its current window.
#[derive(Debug, Clone, Copy)]
struct Strikes {
    count: u32,
    /// Its first failure in the window: the window ends `window` after it.
    since: Instant,
}

/// Failed key attempts per client address (an IPv4 address or an IPv6 /64, as the connection
/// caps count them), in fixed windows that open with an address's first failure. Once an
/// address has `max_failures` in its window, it is refused until the window ends; refusals do
/// not move the end, so a caller that keeps trying is let in again on time.
///
/// Memory: at most `max_addresses` entries. When full, entries whose window ended are dropped,
/// and if none has, the one whose window began first: a spray of addresses costs a scan of the
/// table per new address, never more room.
#[derive(Debug)]
pub struct Lockout {
    settings: LockoutSettings,
    strikes: HashMap<IpKey, Strikes>,
}

impl Lockout {
    pub fn new(settings: LockoutSettings) -> Lockout {
        Lockout {
            settings,
            strikes: HashMap::new(),
        }
    }

    /// How long `peer` must still wait, when it has used up its failures; `None` when it may
    /// try. Forgets an address whose window ended.
    pub fn refused(&mut self, peer: IpAddr, now: Instant) -> Option<Duration> {
        let key = IpKey::of(peer);
        let strikes = self.strikes.get(&key)?;
        let end = strikes.since + self.settings.window;
        if now >= end {
            self.strikes.remove(&key);
            return None;
        }
        (strikes.count >= self.settings.max_failures).then(|| end - now)
    }

    /// Counts a failed attempt of `peer`.
    pub fn fail(&mut self, peer: IpAddr, now: Instant) {
        let key = IpKey::of(peer);
        let window = self.settings.window;
        if let Some(strikes) = self.strikes.get_mut(&key) {
            if now < strikes.since + window {
                strikes.count = strikes.count.saturating_add(1);
            } else {
                *strikes = Strikes {
                    count: 1,
                    since: now,
                };
            }
            return;
        }
        if self.strikes.len() >= self.settings.max_addresses {
            self.strikes.retain(|_, s| now < s.since + window);
        }
        if self.strikes.len() >= self.settings.max_addresses {
            let oldest = self.strikes.iter().min_by_key(|(_, s)| s.since);
            if let Some((&oldest, _)) = oldest {
                self.strikes.remove(&oldest);
            }
        }
        self.strikes.insert(
            key,
            Strikes {
                count: 1,
                since: now,
            },
        );
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.strikes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strikes.is_empty()
    }
}

/// The control API's door: its keys, and the lockout of addresses that failed too often.
#[derive(Debug)]
pub struct Access {
    /// `None`: no authentication; every request passes and nothing is counted.
    keys: Option<ApiKeys>,
    /// `None` without keys, or with `--control-auth-failures 0`.
    lockout: Option<Mutex<Lockout>>,
}

impl Access {
    pub fn new(keys: Option<ApiKeys>, lockout: LockoutSettings) -> Access {
        let lockout =
            (keys.is_some() && lockout.max_failures > 0).then(|| Mutex::new(Lockout::new(lockout)));
        Access { keys, lockout }
    }

    /// No authentication: every request passes.
    pub fn open() -> Access {
        Access {
            keys: None,
            lockout: None,
        }
    }

    /// Whether a request from `peer` whose `Authorization` header is `authorization` may be
    /// served. An address that failed too often is refused before its key is even compared, so
    /// that it learns nothing more, right key or wrong; otherwise a wrong or missing key counts
    /// a failure against it. Counted in `stats`.
    pub fn check(
        &self,
        authorization: Option<&[u8]>,
        peer: IpAddr,
        now: Instant,
        stats: &Stats,
    ) -> Result<(), ApiError> {
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        if let Some(lockout) = &self.lockout {
            if let Some(retry_after) = lock(lockout).refused(peer, now) {
                stats.count_auth_limited();
                return Err(ApiError::TooManyAuthFailures { retry_after });
            }
        }
        if keys.matches(authorization) {
            return Ok(());
        }
        stats.count_auth_failure();
        if let Some(lockout) = &self.lockout {
            lock(lockout).fail(peer, now);
        }
        Err(ApiError::Unauthorized)
    }
}

/// The table is plain data that no operation leaves half-changed, so a thread that panicked
/// while holding it leaves nothing to distrust.
fn lock(lockout: &Mutex<Lockout>) -> std::sync::MutexGuard<'_, Lockout> {
    lockout.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn settings(max_failures: u32, max_addresses: usize) -> LockoutSettings {
        LockoutSettings {
            max_failures,
            window: WINDOW,
            max_addresses,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_refused_after_its_failures_until_the_window_ends() {
        let t0 = Instant::now();
        let mut lockout = Lockout::new(settings(3, 100));
        let a = ip("192.0.2.1");
        for i in 0..3 {
            assert_eq!(lockout.refused(a, t0), None, "before failure {i}");
            lockout.fail(a, t0 + Duration::from_secs(i));
        }
        assert_eq!(
            lockout.refused(a, t0 + Duration::from_secs(10)),
            Some(WINDOW - Duration::from_secs(10))
        );
        // Another address, and another /64, are someone else.
        assert_eq!(lockout.refused(ip("192.0.2.2"), t0), None);
        // Refusals do not move the end.
        assert_eq!(
            lockout.refused(a, t0 + WINDOW - Duration::from_millis(1)),
            Some(Duration::from_millis(1))
        );
        assert_eq!(lockout.refused(a, t0 + WINDOW), None);
        assert!(lockout.is_empty(), "forgotten once its window ended");
    }

    #[test]
    fn a_failure_after_the_window_opens_a_new_one() {
        let t0 = Instant::now();
        let mut lockout = Lockout::new(settings(2, 100));
        let a = ip("192.0.2.1");
        lockout.fail(a, t0);
        lockout.fail(a, t0 + WINDOW);
        assert_eq!(
            lockout.refused(a, t0 + WINDOW),
            None,
            "one failure in the new window"
        );
        lockout.fail(a, t0 + WINDOW);
        assert_eq!(lockout.refused(a, t0 + WINDOW), Some(WINDOW));
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let t0 = Instant::now();
        let mut lockout = Lockout::new(settings(2, 100));
        lockout.fail(ip("2001:db8::1"), t0);
        lockout.fail(ip("2001:db8::ffff"), t0);
        assert!(lockout.refused(ip("2001:db8::2"), t0).is_some());
        assert!(lockout.refused(ip("2001:db8:0:1::1"), t0).is_none());
        lockout.fail(ip("::ffff:192.0.2.9"), t0);
        lockout.fail(ip("192.0.2.9"), t0);
        assert!(lockout.refused(ip("192.0.2.9"), t0).is_some());
    }

    #[test]
    fn a_spray_of_addresses_is_bounded_dropping_the_expired_then_the_oldest() {
        let t0 = Instant::now();
        let mut lockout = Lockout::new(settings(1, 4));
        for i in 0..4u8 {
            lockout.fail(
                IpAddr::from([10, 0, 0, i]),
                t0 + Duration::from_secs(i.into()),
            );
        }
        // Full and none expired: the oldest (10.0.0.0) goes.
        lockout.fail(ip("10.0.1.0"), t0 + Duration::from_secs(5));
        assert_eq!(lockout.len(), 4);
        assert!(lockout
            .refused(ip("10.0.0.0"), t0 + Duration::from_secs(5))
            .is_none());
        assert!(lockout
            .refused(ip("10.0.0.1"), t0 + Duration::from_secs(5))
            .is_some());
        // Later, every window but the newest ended: they all go at once.
        let later = t0 + WINDOW + Duration::from_secs(4);
        lockout.fail(ip("10.0.2.0"), later);
        assert_eq!(lockout.len(), 2);
        for i in 0..10_000u32 {
            lockout.fail(IpAddr::from(i.to_be_bytes()), later);
        }
        assert_eq!(lockout.len(), 4);
    }

    fn bearer(key: &str) -> Vec<u8> {
        format!("Bearer {key}").into_bytes()
    }

    #[test]
    fn access_refuses_a_locked_out_address_even_with_the_key() {
        let stats = Stats::default();
        let access = Access::new(Some(ApiKeys::new(&["k-1", "k-2"])), settings(2, 100));
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let now = Instant::now();
        assert!(access.check(Some(&bearer("k-1")), a, now, &stats).is_ok());
        assert!(access.check(Some(&bearer("k-2")), a, now, &stats).is_ok());
        for wrong in [None, Some(bearer("k-3"))] {
            assert!(matches!(
                access.check(wrong.as_deref(), a, now, &stats),
                Err(ApiError::Unauthorized)
            ));
        }
        assert!(matches!(
            access.check(Some(&bearer("k-1")), a, now, &stats),
            Err(ApiError::TooManyAuthFailures { retry_after }) if retry_after == WINDOW
        ));
        assert!(access.check(Some(&bearer("k-1")), b, now, &stats).is_ok());
        assert!(access
            .check(Some(&bearer("k-1")), a, now + WINDOW, &stats)
            .is_ok());
        let mut text = String::new();
        stats.render(&mut text);
        assert!(
            text.contains("herald_control_auth_failures_total 2\n"),
            "{text}"
        );
        assert!(
            text.contains("herald_control_auth_limited_total 1\n"),
            "{text}"
        );
    }

    #[test]
    fn without_keys_or_with_the_limit_off_nothing_is_locked_out() {
        let stats = Stats::default();
        let now = Instant::now();
        let open = Access::new(None, settings(1, 100));
        let unlimited = Access::new(Some(ApiKeys::new(&["k"])), settings(0, 100));
        for _ in 0..5 {
            assert!(open.check(None, ip("192.0.2.1"), now, &stats).is_ok());
            assert!(matches!(
                unlimited.check(None, ip("192.0.2.1"), now, &stats),
                Err(ApiError::Unauthorized)
            ));
        }
        assert!(Access::open()
            .check(None, ip("192.0.2.1"), now, &stats)
            .is_ok());
    }
}
