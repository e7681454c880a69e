//! The control API's own counters and its budget of request bytes in flight, shared by its
//! threads as atomics. The event loop never sees them; `GET /metrics` appends them to the loop's.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Bodies this small are always admitted (still counted): a one-user push must get through
/// while heavy pushes hold the budget, and `max_connections` of them bound their memory anyway.
pub const SMALL_BODY: usize = 64 * 1024;

/// Counters since start, and the gauge of body bytes held.
#[derive(Debug, Default)]
pub struct Stats {
    /// Body bytes reserved by requests being read or answered. A push's bytes stay reserved until
    /// the loop has taken its command, even when the answer went out before (see
    /// [`super::api::Answer::unconfirmed`]).
    inflight_bytes: AtomicUsize,
    /// The highest `inflight_bytes` has been.
    inflight_peak: AtomicUsize,
    /// Connections refused (503) over `--control-max-connections`.
    refused_connections: AtomicU64,
    /// Requests refused (503) whose body would have taken `inflight_bytes` over the budget.
    refused_inflight: AtomicU64,
    /// Requests answered 408: not whole within `--control-request-timeout`.
    request_timeouts: AtomicU64,
    /// Pushes answered 202 `{"accepted":true}`: the loop had not counted them in time.
    unconfirmed_pushes: AtomicU64,
    /// Requests answered 401: no API key, or a wrong one.
    auth_failures: AtomicU64,
    /// Requests answered 429, their key not compared: their address failed too often.
    auth_limited: AtomicU64,
}

/// Body bytes held against the budget; dropping it gives them back.
#[derive(Debug)]
pub struct Reservation {
    stats: Arc<Stats>,
    len: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.stats
            .inflight_bytes
            .fetch_sub(self.len, Ordering::AcqRel);
    }
}

impl Stats {
    /// Reserves `len` body bytes under a budget of `max`. Refused (`None`) when they would take
    /// the bytes held past `max`, unless the body is [`SMALL_BODY`] or less, or nothing else is
    /// held (so a budget below `--control-max-body` still lets one request through at a time).
    pub fn reserve(self: &Arc<Self>, len: usize, max: usize) -> Option<Reservation> {
        let mut held = self.inflight_bytes.load(Ordering::Acquire);
        loop {
            let after = held.saturating_add(len);
            if after > max && len > SMALL_BODY && held > 0 {
                self.refused_inflight.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            match self.inflight_bytes.compare_exchange_weak(
                held,
                after,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.inflight_peak.fetch_max(after, Ordering::Relaxed);
                    return Some(Reservation {
                        stats: Arc::clone(self),
                        len,
                    });
                }
                Err(now) => held = now,
            }
        }
    }

    pub fn count_refused_connection(&self) {
        self.refused_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_request_timeout(&self) {
        self.request_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_unconfirmed_push(&self) {
        self.unconfirmed_pushes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_auth_limited(&self) {
        self.auth_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the counters in the Prometheus text format.
    pub fn render(&self, s: &mut String) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = write!(s, "# HELP herald_control_refused_total Control API refusals: connections over --control-max-connections (503), bodies over --control-max-inflight-bytes (503), requests not whole within --control-request-timeout (408).\n# TYPE herald_control_refused_total counter\n");
        for (reason, v) in [
            ("connections", load(&self.refused_connections)),
            ("inflight_bytes", load(&self.refused_inflight)),
            ("request_timeout", load(&self.request_timeouts)),
        ] {
            let _ = writeln!(s, "herald_control_refused_total{{reason=\"{reason}\"}} {v}");
        }
        let _ = write!(s, "# HELP herald_control_inflight_bytes Control API request body bytes held until the loop has taken their commands.\n# TYPE herald_control_inflight_bytes gauge\nherald_control_inflight_bytes {}\n", self.inflight_bytes.load(Ordering::Relaxed));
        let _ = write!(s, "# HELP herald_control_inflight_bytes_peak The most control API request body bytes held at once since start.\n# TYPE herald_control_inflight_bytes_peak gauge\nherald_control_inflight_bytes_peak {}\n", self.inflight_peak.load(Ordering::Relaxed));
        let _ = write!(s, "# HELP herald_control_auth_failures_total Control API requests answered 401: no API key, or a wrong one.\n# TYPE herald_control_auth_failures_total counter\nherald_control_auth_failures_total {}\n", load(&self.auth_failures));
        let _ = write!(s, "# HELP herald_control_auth_limited_total Control API requests answered 429 without comparing their key: their address made --control-auth-failures failed attempts within --control-auth-window.\n# TYPE herald_control_auth_limited_total counter\nherald_control_auth_limited_total {}\n", load(&self.auth_limited));
        let _ = write!(s, "# HELP herald_control_pushes_unconfirmed_total Pushes answered 202 {{\"accepted\":true}} because the loop had not counted them within the reply timeout; they are delivered all the same.\n# TYPE herald_control_pushes_unconfirmed_total counter\nherald_control_pushes_unconfirmed_total {}\n", load(&self.unconfirmed_pushes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_heavy_bodies_past_it_and_gives_bytes_back() {
        let stats = Arc::new(Stats::default());
        let max = 3 * SMALL_BODY;
        let a = stats.reserve(2 * SMALL_BODY, max).expect("fits");
        assert!(
            stats.reserve(2 * SMALL_BODY, max).is_none(),
            "over the budget"
        );
        // Small bodies pass even over it.
        let small = stats.reserve(SMALL_BODY, max).expect("small");
        let more = stats.reserve(SMALL_BODY, max).expect("small");
        drop((a, small, more));
        assert_eq!(stats.inflight_bytes.load(Ordering::Relaxed), 0);
        // Alone, a body larger than the whole budget is let through.
        let alone = stats.reserve(4 * SMALL_BODY, max).expect("alone");
        drop(alone);
        let mut text = String::new();
        stats.render(&mut text);
        assert!(text.contains("herald_control_refused_total{reason=\"inflight_bytes\"} 1\n"));
        assert!(text.contains(&format!(
            "herald_control_inflight_bytes_peak {}\n",
            4 * SMALL_BODY
        )));
        assert!(text.contains("herald_control_inflight_bytes 0\n"));
    }
}
