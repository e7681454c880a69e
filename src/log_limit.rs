//! Warnings a peer can cause, rate-limited: at most [`LINES_PER_SECOND`] lines a second of each
//! [`PeerFault`] kind reach the log, and the rest are counted. Without this, every refused
//! handshake wrote a WARN line, so a client sending 5,000 requests for `/nope` wrote 5,000 lines
//! and could fill a disk at the rate it could open connections.
//!
//! The first line logged after some were held back carries `suppressed = M`, how many of its kind
//! were not logged since the last one; `herald_log_lines_suppressed_total{kind}` counts them all.
//! No I/O and no clock: the caller passes `now`.

use std::time::{Duration, Instant};

/// Lines of one kind logged per second, at most.
pub const LINES_PER_SECOND: u32 = 5;

/// What a peer did that is worth a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerFault {
    /// A request answered with an HTTP error instead of an upgrade or a polling answer.
    Handshake,
    /// A WebSocket or Engine.IO/Socket.IO protocol fault that closes the connection or session.
    Protocol,
    /// A client closed for sending over `--client-rate`.
    Rate,
    /// `accept` failing, which a flood of connections can cause (out of descriptors).
    Accept,
}

impl PeerFault {
    pub const ALL: [PeerFault; 4] = [
        PeerFault::Handshake,
        PeerFault::Protocol,
        PeerFault::Rate,
        PeerFault::Accept,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            PeerFault::Handshake => "handshake",
            PeerFault::Protocol => "protocol",
            PeerFault::Rate => "rate",
            PeerFault::Accept => "accept",
        }
    }
}

/// One kind's window.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    /// When the current one-second window began; `None` before the first line.
    start: Option<Instant>,
    /// Lines logged in the current window.
    lines: u32,
    /// Lines held back since the last one logged.
    pending: u64,
    /// Lines held back since start.
    total: u64,
}

/// The per-kind windows, owned by the event loop's metrics.
#[derive(Debug, Default, Clone)]
pub struct PeerWarnings {
    windows: [Window; PeerFault::ALL.len()],
}

impl PeerWarnings {
    /// Whether a line of `kind` may be logged at `now`; if so, how many of its kind were held
    /// back since the last one logged.
    pub fn admit(&mut self, kind: PeerFault, now: Instant) -> Option<u64> {
        let w = &mut self.windows[kind as usize];
        if w.start
            .is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(1))
        {
            w.start = Some(now);
            w.lines = 0;
        }
        if w.lines < LINES_PER_SECOND {
            w.lines += 1;
            Some(std::mem::take(&mut w.pending))
        } else {
            w.pending += 1;
            w.total += 1;
            None
        }
    }

    /// Adds another worker's counts of lines held back (its windows stay its own).
    pub fn merge(&mut self, o: &PeerWarnings) {
        for (a, b) in self.windows.iter_mut().zip(&o.windows) {
            a.total += b.total;
        }
    }

    /// Lines of `kind` held back since start.
    pub fn suppressed(&self, kind: PeerFault) -> u64 {
        self.windows[kind as usize].total
    }
}

/// `tracing::warn!` through a [`PeerWarnings`]: `peer_warn!(warnings, kind, now, fields..., "message")`.
/// A line logged after some were held back gets a `suppressed` field.
macro_rules! peer_warn {
    ($warnings:expr, $kind:expr, $now:expr, $($arg:tt)+) => {
        match $warnings.admit($kind, $now) {
            None => {}
            Some(0) => ::tracing::warn!($($arg)+),
            Some(suppressed) => ::tracing::warn!(suppressed, $($arg)+),
        }
    };
}
pub(crate) use peer_warn;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_limit_per_second_then_a_count_of_the_rest() {
        let t0 = Instant::now();
        let mut w = PeerWarnings::default();
        let logged = (0..5_000)
            .filter(|_| w.admit(PeerFault::Handshake, t0).is_some())
            .count();
        assert_eq!(logged, LINES_PER_SECOND as usize);
        assert_eq!(w.suppressed(PeerFault::Handshake), 5_000 - 5);
        // Other kinds have windows of their own.
        assert_eq!(w.admit(PeerFault::Protocol, t0), Some(0));
        // The next window's first line says how many were held back.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(w.admit(PeerFault::Handshake, t1), Some(4_995));
        assert_eq!(w.admit(PeerFault::Handshake, t1), Some(0));
        assert_eq!(w.suppressed(PeerFault::Handshake), 4_995);
    }

    #[test]
    fn a_clock_that_goes_backwards_does_not_panic() {
        let t0 = Instant::now() + Duration::from_secs(5);
        let mut w = PeerWarnings::default();
        assert!(w.admit(PeerFault::Rate, t0).is_some());
        assert!(w
            .admit(PeerFault::Rate, t0 - Duration::from_secs(1))
            .is_some());
    }
}
