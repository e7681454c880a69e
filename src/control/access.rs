//! Who may use the control API: the API key check, and the lockout of client addresses that
//! keep presenting wrong keys. Decided from a request's head alone, so that a caller without
//! the key is answered before its body is read (or asked for, with `Expect: 100-continue`).
//!
//! A key is presented as `Authorization: Bearer <key>`, or typed once into the admin page's
//! login, whose session cookie then stands for it on requests that also carry
//! `X-Herald-Admin: 1` (see [`super::admin`]). Which routes need neither is
//! [`super::admin::door`]'s to say.
//!
//! [`Lockout`] is the plain table of failures, with the clock passed in; [`Access`] puts it
//! behind a lock for the connection threads (the control API's own threads, never the event
//! loop's) and says which [`ApiError`] a refused request gets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::admin::{self, Door, Sessions};
use super::api::ApiError;
use super::http::Request;
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
    /// The admin page's sessions; `None` without keys (the page is open then), or when the
    /// system's random source failed at start (no session can be opened then: the key still
    /// works as a bearer token).
    sessions: Option<Sessions>,
}

impl Access {
    pub fn new(keys: Option<ApiKeys>, lockout: LockoutSettings) -> Access {
        let lockout =
            (keys.is_some() && lockout.max_failures > 0).then(|| Mutex::new(Lockout::new(lockout)));
        let sessions = match keys {
            None => None,
            Some(_) => Sessions::new()
                .inspect_err(|_| {
                    tracing::error!(
                        "no random key for admin sessions: the admin page cannot log in"
                    )
                })
                .ok(),
        };
        Access {
            keys,
            lockout,
            sessions,
        }
    }

    /// No authentication: every request passes.
    pub fn open() -> Access {
        Access {
            keys: None,
            lockout: None,
            sessions: None,
        }
    }

    /// Whether keys are configured.
    pub fn has_keys(&self) -> bool {
        self.keys.is_some()
    }

    /// Whether request `req` from `peer` may be served, `now_unix` (seconds since the Unix
    /// epoch) dating sessions. An address that failed too often is refused before its key is
    /// even compared, so that it learns nothing more, right key or wrong; otherwise a wrong or
    /// missing key counts a failure against it. A session cookie counts as the key only with
    /// `X-Herald-Admin: 1`. Counted in `stats`.
    pub fn check(
        &self,
        req: &Request,
        peer: IpAddr,
        now: Instant,
        now_unix: u64,
        stats: &Stats,
    ) -> Result<(), ApiError> {
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        match admin::door(req) {
            Door::Open => Ok(()),
            Door::Lockout => self.not_locked_out(peer, now, stats),
            Door::Credentials => {
                self.not_locked_out(peer, now, stats)?;
                let authorization = req.authorization.as_ref().map(|c| c.as_bytes());
                let cookie = req.cookie.as_ref().map(|c| c.as_bytes());
                let right = keys.matches(authorization)
                    || (req.admin && self.session_valid(cookie, now_unix));
                self.judge(right, peer, now, stats)
            }
        }
    }

    /// The admin page's login: `key` as typed, checked as a bearer key is (in constant time),
    /// its failure counted alike.
    pub fn log_in(
        &self,
        key: &[u8],
        peer: IpAddr,
        now: Instant,
        stats: &Stats,
    ) -> Result<(), ApiError> {
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        self.not_locked_out(peer, now, stats)?;
        let right = std::str::from_utf8(key).is_ok_and(|key| keys.matches_key(key));
        self.judge(right, peer, now, stats)
    }

    /// Whether the `Cookie` header `cookies` holds a valid admin session; always, without keys.
    pub fn session_valid(&self, cookies: Option<&[u8]>, now_unix: u64) -> bool {
        match (&self.keys, &self.sessions) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(sessions)) => sessions.any_valid(cookies, now_unix),
        }
    }

    /// A session cookie's value, opened at `now_unix`; `None` without keys or sessions.
    pub fn mint_session(&self, now_unix: u64) -> Option<String> {
        self.keys.as_ref()?;
        Some(self.sessions.as_ref()?.mint(now_unix))
    }

    /// Logs the session `value` out, if it is one.
    pub fn revoke_session(&self, value: &str, now_unix: u64) {
        if let Some(sessions) = &self.sessions {
            sessions.revoke(value, now_unix);
        }
    }

    fn not_locked_out(&self, peer: IpAddr, now: Instant, stats: &Stats) -> Result<(), ApiError> {
        if let Some(lockout) = &self.lockout {
            if let Some(retry_after) = lock(lockout).refused(peer, now) {
                stats.count_auth_limited();
                return Err(ApiError::TooManyAuthFailures { retry_after });
            }
        }
        Ok(())
    }

    /// Lets `right` credentials in, and counts wrong ones against `peer`.
    fn judge(
        &self,
        right: bool,
        peer: IpAddr,
        now: Instant,
        stats: &Stats,
    ) -> Result<(), ApiError> {
        if right {
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
    use crate::control::http::{Credentials, Method};

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

    /// `GET /metrics` with `Authorization: <authorization>`, a `Cookie` header and
    /// `X-Herald-Admin: 1` if asked.
    fn request(authorization: Option<&[u8]>, cookie: Option<String>, admin: bool) -> Request {
        request_to(Method::Get, "/metrics", authorization, cookie, admin)
    }

    fn request_to(
        method: Method,
        path: &str,
        authorization: Option<&[u8]>,
        cookie: Option<String>,
        admin: bool,
    ) -> Request {
        Request {
            method,
            path: path.to_owned(),
            query: None,
            keep_alive: true,
            expect_continue: false,
            content_type: None,
            authorization: authorization.map(|a| Credentials(a.to_vec())),
            cookie: cookie.map(|c| Credentials(c.into_bytes())),
            admin,
            body: Vec::new(),
        }
    }

    /// `check` of a plain request with `authorization`.
    fn check(
        access: &Access,
        authorization: Option<&[u8]>,
        peer: IpAddr,
        now: Instant,
        stats: &Stats,
    ) -> Result<(), ApiError> {
        access.check(&request(authorization, None, false), peer, now, 0, stats)
    }

    #[test]
    fn a_session_counts_only_with_the_admin_header_and_the_lockout_counts_logins() {
        let stats = Stats::default();
        let access = Access::new(Some(ApiKeys::new(&["k-1"])), settings(2, 100));
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let now = Instant::now();
        let unix = 1_800_000_000;
        let session = access.mint_session(unix).unwrap();
        let cookie = || Some(format!("{}={session}", admin::COOKIE));
        let with =
            |cookie, admin| access.check(&request(None, cookie, admin), b, now, unix, &stats);
        assert!(with(cookie(), true).is_ok());
        assert!(matches!(with(cookie(), false), Err(ApiError::Unauthorized)));
        assert!(matches!(
            with(Some("herald_admin=1.x".into()), true),
            Err(ApiError::Unauthorized)
        ));
        assert!(access
            .check(
                &request(None, cookie(), true),
                b,
                now,
                unix + 43_200,
                &stats
            )
            .is_err());
        // The page's routes are open; logging in is refused at the door only when locked out.
        let page = request_to(Method::Get, "/admin", None, None, false);
        let login = request_to(Method::Post, "/admin/login", None, None, false);
        assert!(access.check(&page, a, now, unix, &stats).is_ok());
        assert!(access.check(&login, a, now, unix, &stats).is_ok());
        assert!(access.log_in(b"k-1", a, now, &stats).is_ok());
        for wrong in [&b"k-2"[..], b""] {
            assert!(matches!(
                access.log_in(wrong, a, now, &stats),
                Err(ApiError::Unauthorized)
            ));
        }
        assert!(matches!(
            access.log_in(b"k-1", a, now, &stats),
            Err(ApiError::TooManyAuthFailures { .. })
        ));
        assert!(matches!(
            access.check(&login, a, now, unix, &stats),
            Err(ApiError::TooManyAuthFailures { .. })
        ));
        assert!(access.check(&page, a, now, unix, &stats).is_ok());
        access.revoke_session(&session, unix);
        assert!(with(cookie(), true).is_err());
    }

    #[test]
    fn access_refuses_a_locked_out_address_even_with_the_key() {
        let stats = Stats::default();
        let access = Access::new(Some(ApiKeys::new(&["k-1", "k-2"])), settings(2, 100));
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let now = Instant::now();
        assert!(check(&access, Some(&bearer("k-1")), a, now, &stats).is_ok());
        assert!(check(&access, Some(&bearer("k-2")), a, now, &stats).is_ok());
        for wrong in [None, Some(bearer("k-3"))] {
            assert!(matches!(
                check(&access, wrong.as_deref(), a, now, &stats),
                Err(ApiError::Unauthorized)
            ));
        }
        assert!(matches!(
            check(&access, Some(&bearer("k-1")), a, now, &stats),
            Err(ApiError::TooManyAuthFailures { retry_after }) if retry_after == WINDOW
        ));
        assert!(check(&access, Some(&bearer("k-1")), b, now, &stats).is_ok());
        assert!(check(&access, Some(&bearer("k-1")), a, now + WINDOW, &stats).is_ok());
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
            assert!(check(&open, None, ip("192.0.2.1"), now, &stats).is_ok());
            assert!(matches!(
                check(&unlimited, None, ip("192.0.2.1"), now, &stats),
                Err(ApiError::Unauthorized)
            ));
        }
        assert!(check(&Access::open(), None, ip("192.0.2.1"), now, &stats).is_ok());
    }
}
