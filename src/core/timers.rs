//! A worker's timers: handshake, ping, close, Engine.IO heartbeats and connect deadlines, token
//! expiry. One sweep over every entry fires what is due and finds the earliest deadline left;
//! the runtime sleeps exactly until then (see [`next_sweep`]) rather than waking on a fixed
//! tick, so a timer fires at its deadline, not up to a tick late. No clock: the sweep is given
//! `now`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;

use super::worker::{Entry, State};
use crate::config::Config;
use crate::core::conn::{Phase, Proto};
use crate::core::session::Transport;
use crate::ws::CloseCode;

/// A slab whose capacity passes this and is under a quarter used is shrunk at the sweep.
const SHRINK_ABOVE: usize = 4096;
/// Sweeps are never closer together than this: deadlines that cluster (thousands of pings
/// due within a few milliseconds) are served by one sweep, at most this late.
const MIN_SWEEP_GAP: Duration = Duration::from_millis(5);
/// The longest the loop sleeps without sweeping, whatever the deadlines say: a backstop for
/// deadlines set between sweeps that the sweep has not seen yet (a token's expiry, accepted
/// moments before it falls due), and for retrying paused accepts.
pub fn max_sweep_gap(c: &Config) -> Duration {
    [
        c.handshake_timeout,
        c.ping_interval,
        c.ping_timeout,
        c.close_timeout,
        c.connect_timeout,
        c.auth_timeout,
        Duration::from_secs(1),
    ]
    .into_iter()
    .min()
    .unwrap_or(Duration::from_secs(1))
    .max(MIN_SWEEP_GAP)
}
/// When the next sweep is due after one at `now` found `earliest` as the earliest deadline
/// left: at that deadline, but no sooner than [`MIN_SWEEP_GAP`] and no later than `max_gap`.
///
/// Every deadline a handler sets between sweeps lies at least one configured timer ahead (a
/// handshake, close, connect or ping timeout from the moment it is set), and so no earlier than
/// `max_gap` from the last sweep; the one exception, a freshly accepted token's expiry, is
/// found by the next sweep, `max_gap` later at most.
pub fn next_sweep(now: Instant, earliest: Option<Instant>, max_gap: Duration) -> Instant {
    let latest = now + max_gap;
    earliest
        .map_or(latest, |at| at.min(latest))
        .max(now + MIN_SWEEP_GAP)
}

impl State {
    /// Checks every entry's timers; returns the earliest deadline left, if any.
    pub(crate) fn sweep(&mut self, now: Instant) -> Option<Instant> {
        let c = &self.config;
        let unix_precise = self.unix(now);
        let unix = unix_precise.as_secs();
        let mut earliest: Option<Instant> = None;
        let mut due = |at: Instant| {
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        };
        let mut ping = Vec::new();
        let mut engine_ping = Vec::new();
        let mut expired_sessions = Vec::new();
        // Raw clients that did not authenticate in time, and sockets whose token expired.
        let mut auth_timeouts = Vec::new();
        let mut raw_expired = Vec::new();
        let mut sessions_expired = Vec::new();
        // Raw sockets that did not subscribe within their grace: held broadcasts go out.
        let mut release = Vec::new();
        for (k, entry) in self.io.entries.iter_mut() {
            let conn = match entry {
                Entry::Session(s) => {
                    if s.closed {
                        continue;
                    }
                    let polling = matches!(s.transport, Transport::Polling { get: None });
                    let why = if s.connect_deadline.is_some_and(|d| now >= d) {
                        Some("connect timeout")
                    } else if s.socket.is_some() && s.identity.expired(unix) {
                        sessions_expired.push(k);
                        continue;
                    } else if s.awaiting_pong && now.duration_since(s.last_ping) >= c.ping_timeout {
                        Some("ping timeout")
                    } else if polling
                        && now.duration_since(s.last_poll) >= c.ping_interval + c.ping_timeout
                    {
                        Some("not polled")
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        expired_sessions.push((k, why));
                        continue;
                    }
                    if !s.awaiting_pong && now.duration_since(s.last_ping) >= c.ping_interval {
                        s.awaiting_pong = true;
                        s.last_ping = now;
                        engine_ping.push(k);
                    }
                    if let Some(at) = s.connect_deadline {
                        due(at);
                    } else if let (Some(_), Some(at)) =
                        (s.socket, s.identity.deadline(now, unix_precise))
                    {
                        due(at);
                    }
                    due(match s.awaiting_pong {
                        true => s.last_ping + c.ping_timeout,
                        false => s.last_ping + c.ping_interval,
                    });
                    if polling {
                        due(s.last_poll + c.ping_interval + c.ping_timeout);
                    }
                    continue;
                }
                Entry::Conn(conn) => conn,
            };
            // A socket whose subscribe waits for the log keeps holding: its answer releases
            // them (or, recovering, replays them in their place).
            if let Some(at) = conn.broadcasts_from.filter(|_| !conn.joining) {
                if now >= at {
                    release.push(k);
                } else {
                    due(at);
                }
            }
            let request_deadline = match &conn.phase {
                Phase::Http { deadline, .. } => Some(*deadline),
                Phase::Body(post) => Some(post.deadline),
                _ => None,
            };
            let expired = match conn.phase {
                Phase::Http { .. } | Phase::Body(_) => {
                    let deadline = request_deadline.unwrap_or(now);
                    if now >= deadline && !conn.served {
                        self.io.metrics.handshake_timeouts += 1;
                    }
                    now >= deadline
                }
                Phase::Open(Proto::Raw) if conn.identity.timed_out(now) => {
                    auth_timeouts.push(k);
                    false
                }
                Phase::Open(Proto::Raw) if conn.identity.expired(unix) => {
                    raw_expired.push(k);
                    false
                }
                // The echo has no identity to time out, but the same keepalive.
                Phase::Open(Proto::Raw | Proto::Echo) => match conn.ping_sent {
                    Some(sent) if now.duration_since(sent) >= c.ping_timeout => {
                        self.io.metrics.ping_timeouts += 1;
                        self.io.metrics.count_close(CloseCode::ABNORMAL);
                        true
                    }
                    None if now.duration_since(conn.last_heard) >= c.ping_interval => {
                        conn.ping_sent = Some(now);
                        ping.push(k);
                        false
                    }
                    _ => false,
                },
                // Engine.IO sessions keep their own heartbeat; a held GET waits on its session.
                Phase::Open(Proto::EngineIo) | Phase::Poll { .. } => false,
                Phase::Closing { deadline } => now >= deadline,
                Phase::Dead => false,
            };
            if expired {
                debug!(conn = k, "timed out");
                conn.phase = Phase::Dead;
                self.io.dead.push(k);
                continue;
            }
            match conn.phase {
                Phase::Http { deadline, .. } | Phase::Closing { deadline } => due(deadline),
                Phase::Body(ref post) => due(post.deadline),
                Phase::Open(Proto::Raw | Proto::Echo) => {
                    if let Some(at) = conn.identity.deadline(now, unix_precise) {
                        due(at);
                    }
                    due(match conn.ping_sent {
                        Some(sent) => sent + c.ping_timeout,
                        None => conn.last_heard + c.ping_interval,
                    });
                }
                Phase::Open(Proto::EngineIo) | Phase::Poll { .. } | Phase::Dead => {}
            }
        }
        for k in release {
            self.io.release_broadcasts(k, true);
        }
        let frame = Bytes::from_static(&[0x89, 0x00]); // FIN | ping, empty payload
        for k in ping {
            self.io.send(k, &frame);
        }
        for k in engine_ping {
            self.session_send(k, &Bytes::from_static(b"2"), now);
        }
        for (k, why) in expired_sessions {
            if why == "ping timeout" {
                self.io.metrics.ping_timeouts += 1;
            }
            if why == "connect timeout" && self.verifier.is_some() {
                self.io.metrics.auth_timeouts += 1;
            }
            // A client gone silent may come back: its session is kept for it.
            self.park(k, now);
            self.close_session(k, why, None, now);
        }
        for k in auth_timeouts {
            debug!(conn = k, "no token within the auth timeout");
            self.io.metrics.auth_timeouts += 1;
            self.raw_refuse(k, "unauthorized", CloseCode::UNAUTHORIZED, now);
        }
        for k in raw_expired {
            debug!(conn = k, "token expired");
            self.io.metrics.tokens_expired += 1;
            self.raw_refuse(k, "token expired", CloseCode::TOKEN_EXPIRED, now);
        }
        for s in sessions_expired {
            self.session_token_expired(s, now);
        }
        if self.io.entries.capacity() > SHRINK_ABOVE
            && self.io.entries.len() < self.io.entries.capacity() / 4
        {
            // A crowd that came and went leaves its slots behind; give back what trails.
            self.io.entries.shrink_to_fit();
            self.sids.shrink_to_fit();
        }
        earliest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_sweep_is_at_the_earliest_deadline_within_bounds() {
        let now = Instant::now();
        let max = Duration::from_secs(1);
        let ms = Duration::from_millis;
        // At the deadline itself.
        assert_eq!(next_sweep(now, Some(now + ms(300)), max), now + ms(300));
        // Never sooner than the minimum gap, even for a deadline already passed.
        assert_eq!(next_sweep(now, Some(now), max), now + MIN_SWEEP_GAP);
        assert_eq!(next_sweep(now, Some(now + ms(1)), max), now + MIN_SWEEP_GAP);
        // Never later than the backstop, and at the backstop when nothing is due.
        assert_eq!(next_sweep(now, Some(now + ms(5_000)), max), now + max);
        assert_eq!(next_sweep(now, None, max), now + max);
    }

    #[test]
    fn the_backstop_is_the_shortest_timer_up_to_a_second() {
        let mut c = Config::for_tests();
        c.ping_timeout = Duration::from_millis(200);
        assert_eq!(max_sweep_gap(&c), Duration::from_millis(200));
        c.ping_timeout = Duration::from_secs(20);
        c.handshake_timeout = Duration::from_secs(20);
        c.close_timeout = Duration::from_secs(20);
        c.auth_timeout = Duration::from_secs(20);
        c.ping_interval = Duration::from_secs(20);
        c.connect_timeout = Duration::from_secs(20);
        assert_eq!(max_sweep_gap(&c), Duration::from_secs(1));
    }
}
