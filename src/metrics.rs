//! The event loop's counters, owned by the loop thread and rendered on request: no atomics and no
//! locks on the hot path; `GET /metrics` asks the loop over the command channel.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::log_limit::{PeerFault, PeerWarnings};
use crate::ws::CloseCode;

/// Counters since start. Gauges (connections, rooms) are read from the loop's state at render time.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_accepted: u64,
    pub handshakes_completed: u64,
    /// Rejected handshakes by HTTP status.
    pub handshakes_rejected: BTreeMap<u16, u64>,
    pub handshake_timeouts: u64,
    /// Engine.IO sessions opened (Socket.IO clients), on either transport.
    pub sessions_opened: u64,
    pub ping_timeouts: u64,
    pub pushes_user: u64,
    pub pushes_users: u64,
    pub pushes_broadcast: u64,
    /// Notifications handed to a socket (written or queued).
    pub deliveries: u64,
    /// Bytes written to client sockets.
    pub bytes_sent: u64,
    /// Batches of several commands whose frames were written together, one write per socket.
    pub corked_batches: u64,
    pub messages_received: u64,
    /// Client messages that arrived compressed (permessage-deflate).
    pub messages_inflated: u64,
    /// Connections and polling sessions closed for reading too slowly (4008).
    pub slow_consumers: u64,
    /// Socket.IO sessions closed for holding more than `--max-queued-bytes` of binary
    /// attachments of a packet not yet complete.
    pub attachments_refused: u64,
    /// Pushes withheld from a user whose push bucket was empty (`--user-rate`).
    pub rate_limited_user: u64,
    /// Client messages dropped by their connection's bucket (`--client-rate`).
    pub rate_limited_client: u64,
    /// Connections refused at accept: the total cap, the per-address cap, the per-address rate.
    pub refused_total: u64,
    pub refused_per_ip: u64,
    pub refused_rate: u64,
    /// Handshakes refused for an `Origin` not in `--allowed-origins`.
    pub origins_refused: u64,
    /// Pongs replaced by a newer one before they could be written (a ping flood).
    pub pongs_dropped: u64,
    /// Tokens refused (missing, malformed, badly signed, expired, wrong issuer or audience).
    pub auth_failures: u64,
    /// Connections and sessions closed for not authenticating within `--auth-timeout`.
    pub auth_timeouts: u64,
    /// Subscriptions refused because the user id was not the token's `sub`.
    pub forbidden: u64,
    /// Sockets closed because their token expired without a fresh one.
    pub tokens_expired: u64,
    /// MessagePack recipients skipped because the notification has no MessagePack form.
    pub msgpack_skipped: u64,
    /// Deliveries whose frame went out compressed.
    pub deliveries_compressed: u64,
    /// The push compressor's runs and bytes in and out, copied in at render time.
    pub compressions: u64,
    pub compressed_bytes_in: u64,
    pub compressed_bytes_out: u64,
    /// Closed WebSocket connections by close code; 1006 where none was exchanged (the peer vanished
    /// or timed out).
    pub closes: BTreeMap<u16, u64>,
    /// The rate limit of warnings peers can cause, and its count of lines held back.
    pub peer_warnings: PeerWarnings,
}

/// Gauges sampled from the loop's state.
pub struct Gauges {
    pub connections: usize,
    pub websockets: usize,
    pub sessions: usize,
    /// Long-polling GETs held open, waiting for packets.
    pub held_polls: usize,
    pub rooms: usize,
    pub subscriptions: usize,
    /// Open WebSockets that agreed permessage-deflate.
    pub deflate_websockets: usize,
}

impl Metrics {
    /// Counts one WebSocket connection ending with `code`.
    pub fn count_close(&mut self, code: CloseCode) {
        *self.closes.entry(code.0).or_default() += 1;
    }

    /// The Prometheus text exposition format, version 0.0.4.
    pub fn render(&self, g: &Gauges) -> String {
        let mut s = String::with_capacity(2048);
        let gauge = |s: &mut String, name: &str, help: &str, v: usize| {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
        };
        gauge(
            &mut s,
            "herald_connections",
            "Open TCP connections on the public port.",
            g.connections,
        );
        gauge(
            &mut s,
            "herald_websockets",
            "Connections past the WebSocket handshake.",
            g.websockets,
        );
        gauge(
            &mut s,
            "herald_socketio_sessions",
            "Engine.IO sessions (Socket.IO clients) on either transport.",
            g.sessions,
        );
        gauge(
            &mut s,
            "herald_socketio_polls_held",
            "Long-polling GETs held open until their session has packets.",
            g.held_polls,
        );
        gauge(
            &mut s,
            "herald_subscribed_users",
            "User ids with at least one subscribed socket.",
            g.rooms,
        );
        gauge(
            &mut s,
            "herald_rooms",
            "Rooms held (empty rooms are freed).",
            g.rooms,
        );
        gauge(
            &mut s,
            "herald_subscriptions",
            "Socket-to-user subscriptions.",
            g.subscriptions,
        );
        gauge(
            &mut s,
            "herald_deflate_websockets",
            "Open WebSockets that agreed permessage-deflate.",
            g.deflate_websockets,
        );
        let counter = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = write!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            );
        };
        counter(
            &mut s,
            "herald_connections_accepted_total",
            "TCP connections accepted.",
            self.connections_accepted,
        );
        counter(
            &mut s,
            "herald_socketio_sessions_total",
            "Engine.IO sessions opened.",
            self.sessions_opened,
        );
        counter(
            &mut s,
            "herald_corked_batches_total",
            "Batches of commands whose frames were coalesced into one write per socket.",
            self.corked_batches,
        );
        counter(
            &mut s,
            "herald_handshakes_total",
            "WebSocket handshakes completed.",
            self.handshakes_completed,
        );
        counter(
            &mut s,
            "herald_handshake_timeouts_total",
            "Connections closed for not completing the handshake in time.",
            self.handshake_timeouts,
        );
        counter(
            &mut s,
            "herald_ping_timeouts_total",
            "Connections closed for not answering a ping in time.",
            self.ping_timeouts,
        );
        counter(
            &mut s,
            "herald_deliveries_total",
            "Notifications handed to a socket.",
            self.deliveries,
        );
        counter(
            &mut s,
            "herald_bytes_sent_total",
            "Bytes written to client sockets.",
            self.bytes_sent,
        );
        counter(
            &mut s,
            "herald_messages_received_total",
            "WebSocket messages received from clients.",
            self.messages_received,
        );
        counter(
            &mut s,
            "herald_messages_inflated_total",
            "Client messages that arrived compressed with permessage-deflate.",
            self.messages_inflated,
        );
        counter(
            &mut s,
            "herald_deliveries_compressed_total",
            "Notifications handed to a socket as a compressed frame.",
            self.deliveries_compressed,
        );
        counter(
            &mut s,
            "herald_slow_consumers_total",
            "Connections and polling sessions closed (4008) for letting more than --max-queued-bytes wait.",
            self.slow_consumers,
        );
        counter(
            &mut s,
            "herald_attachments_refused_total",
            "Socket.IO sessions closed (1009) for holding more than --max-queued-bytes of an incomplete binary packet's attachments.",
            self.attachments_refused,
        );
        counter(
            &mut s,
            "herald_msgpack_skipped_total",
            "MessagePack sockets not sent a push that has no MessagePack form (a number beyond f64, nesting over 128).",
            self.msgpack_skipped,
        );
        counter(
            &mut s,
            "herald_deflate_compressions_total",
            "Messages run through the push compressor: at most one per push and wire form.",
            self.compressions,
        );
        counter(
            &mut s,
            "herald_deflate_bytes_in_total",
            "Payload bytes given to the push compressor.",
            self.compressed_bytes_in,
        );
        counter(
            &mut s,
            "herald_deflate_bytes_out_total",
            "Compressed bytes the push compressor produced.",
            self.compressed_bytes_out,
        );
        counter(
            &mut s,
            "herald_pongs_dropped_total",
            "Pongs replaced by the answer to a newer ping before they could be written.",
            self.pongs_dropped,
        );
        counter(
            &mut s,
            "herald_origins_refused_total",
            "Handshakes refused (403) for an Origin not in --allowed-origins.",
            self.origins_refused,
        );
        counter(
            &mut s,
            "herald_auth_failures_total",
            "Client tokens refused: missing, invalid, expired, wrong issuer or audience.",
            self.auth_failures,
        );
        counter(
            &mut s,
            "herald_auth_timeouts_total",
            "Clients closed for not authenticating within --auth-timeout.",
            self.auth_timeouts,
        );
        counter(
            &mut s,
            "herald_forbidden_total",
            "Subscriptions refused because the user id is not the token's sub.",
            self.forbidden,
        );
        counter(
            &mut s,
            "herald_tokens_expired_total",
            "Sockets closed (4003) when their token expired without a fresh one.",
            self.tokens_expired,
        );
        let _ = write!(s, "# HELP herald_rate_limited_total Pushes withheld from a user over --user-rate, and client messages dropped over --client-rate.\n# TYPE herald_rate_limited_total counter\n");
        for (limit, v) in [
            ("user", self.rate_limited_user),
            ("client", self.rate_limited_client),
        ] {
            let _ = writeln!(s, "herald_rate_limited_total{{limit=\"{limit}\"}} {v}");
        }
        let _ = write!(s, "# HELP herald_connections_refused_total Connections refused at accept: the total cap (503), the per-address cap or rate (429).\n# TYPE herald_connections_refused_total counter\n");
        for (reason, v) in [
            ("total", self.refused_total),
            ("per_ip", self.refused_per_ip),
            ("rate", self.refused_rate),
        ] {
            let _ = writeln!(
                s,
                "herald_connections_refused_total{{reason=\"{reason}\"}} {v}"
            );
        }
        let _ = write!(s, "# HELP herald_pushes_total Pushes received from the control API.\n# TYPE herald_pushes_total counter\n");
        for (kind, v) in [
            ("user", self.pushes_user),
            ("users", self.pushes_users),
            ("broadcast", self.pushes_broadcast),
        ] {
            let _ = writeln!(s, "herald_pushes_total{{kind=\"{kind}\"}} {v}");
        }
        let _ = write!(s, "# HELP herald_handshakes_rejected_total Handshakes answered with an HTTP error.\n# TYPE herald_handshakes_rejected_total counter\n");
        for (status, v) in &self.handshakes_rejected {
            let _ = writeln!(
                s,
                "herald_handshakes_rejected_total{{status=\"{status}\"}} {v}"
            );
        }
        let _ = write!(s, "# HELP herald_closes_total Closed WebSocket connections by close code (1006: none exchanged).\n# TYPE herald_closes_total counter\n");
        for (code, v) in &self.closes {
            let _ = writeln!(s, "herald_closes_total{{code=\"{code}\"}} {v}");
        }
        let _ = write!(s, "# HELP herald_log_lines_suppressed_total Warnings a peer caused that were not logged, past a few lines a second of each kind.\n# TYPE herald_log_lines_suppressed_total counter\n");
        for kind in PeerFault::ALL {
            let _ = writeln!(
                s,
                "herald_log_lines_suppressed_total{{kind=\"{}\"}} {}",
                kind.label(),
                self.peer_warnings.suppressed(kind)
            );
        }
        s
    }
}
