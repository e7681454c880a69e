//! The workers' counters, each worker's owned by its thread: no atomics and no locks on the hot
//! path. `GET /metrics` asks every worker for a [`WorkerReport`] over its command channel, and
//! [`render`] sums them (a few gauges are also given per worker).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::log_limit::{PeerFault, PeerWarnings};
use crate::ws::CloseCode;

/// Counters since start. Gauges (connections, rooms) are read from the loop's state at render time.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub connections_accepted: u64,
    pub handshakes_completed: u64,
    /// Rejected handshakes by HTTP status.
    pub handshakes_rejected: BTreeMap<u16, u64>,
    pub handshake_timeouts: u64,
    /// TLS handshakes completed, and TLS sessions ended by a protocol error (a client that
    /// does not speak TLS, a bad record, no cipher in common): the alert sent, the connection
    /// closed.
    pub tls_handshakes: u64,
    pub tls_failures: u64,
    /// Connections closed at once on a `--proxy-protocol` listener: from an address not
    /// trusted, or without a valid PROXY header.
    pub proxy_refused: u64,
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
    /// Joins with an offset (a raw subscribe, a Socket.IO session taken back) that were handed
    /// what they missed, and those whose offset could not be honoured.
    pub recoveries: u64,
    pub recoveries_failed: u64,
    /// Notifications handed to a client after it reconnected: what it missed.
    pub replayed: u64,
    /// Socket.IO sessions kept for recovery when their transport was lost, and taken back.
    pub sessions_parked: u64,
    pub sessions_recovered: u64,
    /// Pushes withheld from a user whose push bucket was empty (`--user-rate`).
    pub rate_limited_user: u64,
    /// Client messages dropped by their connection's bucket (`--client-rate`).
    pub rate_limited_client: u64,
    /// Connections refused at accept: the total cap, the per-address cap, the per-address rate;
    /// Engine.IO handshakes refused by `--max-sessions` (a session over the per-address cap
    /// counts in `refused_per_ip`).
    pub refused_total: u64,
    pub refused_per_ip: u64,
    pub refused_rate: u64,
    pub refused_sessions: u64,
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
    /// From a push's arrival at the router to its frames handed to the kernel by the last
    /// worker it went to; one observation per push.
    pub fanout: Histogram,
}

/// Upper bounds of `herald_fanout_seconds`' buckets.
pub const FANOUT_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A Prometheus histogram over [`FANOUT_BUCKETS`].
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    /// Observations at or below each bound (not cumulative; summed at render).
    buckets: [u64; FANOUT_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, d: std::time::Duration) {
        let v = d.as_secs_f64();
        if let Some(i) = FANOUT_BUCKETS.iter().position(|&b| v <= b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += v;
    }

    fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self.count += o.count;
        self.sum += o.sum;
    }

    fn render(&self, s: &mut String, name: &str, help: &str) {
        let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} histogram\n");
        let mut cumulative = 0;
        for (bound, n) in FANOUT_BUCKETS.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(s, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(s, "{name}_sum {}", self.sum);
        let _ = writeln!(s, "{name}_count {}", self.count);
    }
}

/// What one worker reports for `GET /metrics`.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    pub worker: usize,
    pub metrics: Metrics,
    pub gauges: Gauges,
}

/// What the router counts itself: pushes are counted once where they enter, not per worker.
#[derive(Debug, Default, Clone, Copy)]
pub struct RouterCounts {
    pub pushes_user: u64,
    pub pushes_users: u64,
    pub pushes_broadcast: u64,
    pub rate_limited_user: u64,
    /// Users with a socket on some worker (the router's directory).
    pub users: usize,
    /// Pushes the recovery log holds, the bytes they are counted for, and Socket.IO sessions
    /// kept for recovery.
    pub log_records: usize,
    pub log_bytes: usize,
    pub parked: usize,
    /// With `--redis`: the cluster's connection and traffic.
    pub cluster: Option<crate::cluster::ClusterCounts>,
}

/// Every worker's report summed, the router's own counts, and the per-worker gauges.
pub fn render(reports: &[WorkerReport], router: &RouterCounts) -> String {
    let mut total = Metrics::default();
    let mut gauges = Gauges::default();
    for r in reports {
        total.merge(&r.metrics);
        gauges.merge(&r.gauges);
    }
    total.pushes_user = router.pushes_user;
    total.pushes_users = router.pushes_users;
    total.pushes_broadcast = router.pushes_broadcast;
    total.rate_limited_user += router.rate_limited_user;
    gauges.users = router.users;
    let mut s = total.render(&gauges);
    let _ = write!(
        s,
        "# HELP herald_workers Worker threads, each with its own event loop.\n# TYPE herald_workers gauge\nherald_workers {}\n",
        reports.len()
    );
    for (name, help, v) in [
        (
            "herald_log_pushes",
            "Pushes the recovery log holds.",
            router.log_records,
        ),
        (
            "herald_log_bytes",
            "Bytes the recovery log holds (notifications, user ids, bookkeeping); at most --recovery-max-bytes.",
            router.log_bytes,
        ),
        (
            "herald_sessions_parked",
            "Socket.IO sessions kept for connection state recovery, not yet taken back or expired.",
            router.parked,
        ),
    ] {
        let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
    }
    if let Some(c) = &router.cluster {
        let _ = write!(
            s,
            "# HELP herald_redis_up 1 when this node reaches Redis (commands and pub/sub), 0 while it serves its own sockets alone.\n# TYPE herald_redis_up gauge\nherald_redis_up {}\n",
            c.up as u8
        );
        for (name, help, v) in [
            ("herald_redis_pushes_received_total", "Pushes read from Redis: routed to this node, broadcast, or read back from the stream after a reconnection.", c.pushes_received),
            ("herald_redis_push_bytes_received_total", "Bytes of the pushes read from Redis pub/sub (payload and channel name).", c.push_bytes_received),
            ("herald_redis_caught_up_total", "Pushes read back from the stream after a reconnection.", c.caught_up),
            ("herald_redis_sync_marks_total", "Sync marks read from this node's channel (one per heartbeat and per join).", c.sync_marks),
            ("herald_redis_published_total", "Pushes this node's control API logged and routed through Redis.", c.published),
            ("herald_redis_degraded_pushes_total", "Pushes delivered to this node's sockets alone while Redis was unreachable.", c.degraded),
            ("herald_redis_late_pushes_total", "Pushes Redis ran after their deadline (it had stalled with them): refused there, delivered to this node's sockets alone.", c.late),
            ("herald_redis_reconnects_total", "Connections to Redis lost and made again.", c.reconnects),
            ("herald_redis_pubsub_rebuilt_total", "Pub/sub connections rebuilt because this node's heartbeat stopped coming through.", c.pubsub_rebuilt),
            ("herald_redis_emitted_total", "Messages read from the Socket.IO emitter's channels and pushed (by the node holding the lead).", c.emitted),
            ("herald_redis_emitted_refused_total", "Messages on the Socket.IO emitter's channels that were not pushed (acknowledgements, binary data, other namespaces, no user room).", c.emitted_refused),
        ] {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n");
        }
    }
    let mut sorted: Vec<&WorkerReport> = reports.iter().collect();
    sorted.sort_by_key(|r| r.worker);
    let _ = write!(s, "# HELP herald_worker_connections Open TCP connections on the public port, per worker.\n# TYPE herald_worker_connections gauge\n");
    for r in &sorted {
        let _ = writeln!(
            s,
            "herald_worker_connections{{worker=\"{}\"}} {}",
            r.worker, r.gauges.connections
        );
    }
    let _ = write!(s, "# HELP herald_worker_queued_bytes Bytes waiting to be written to client sockets, per worker.\n# TYPE herald_worker_queued_bytes gauge\n");
    for r in &sorted {
        let _ = writeln!(
            s,
            "herald_worker_queued_bytes{{worker=\"{}\"}} {}",
            r.worker, r.gauges.queued_bytes
        );
    }
    s
}

/// What a client socket speaks, as `herald_sockets{protocol}` and the control API's user
/// lookup name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `/ws`, JSON in text frames.
    RawJson,
    /// `/ws`, MessagePack in binary frames.
    RawMsgpack,
    /// Socket.IO whose Engine.IO session runs over a WebSocket.
    SocketioWebsocket,
    /// Socket.IO on HTTP long-polling (upgrading to a WebSocket included, until it has).
    SocketioPolling,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [
        Protocol::RawJson,
        Protocol::RawMsgpack,
        Protocol::SocketioWebsocket,
        Protocol::SocketioPolling,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Protocol::RawJson => "raw_json",
            Protocol::RawMsgpack => "raw_msgpack",
            Protocol::SocketioWebsocket => "socketio_websocket",
            Protocol::SocketioPolling => "socketio_polling",
        }
    }
}

/// Gauges sampled from a worker's state.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// Client sockets by what they speak, indexed as [`Protocol::ALL`]: raw WebSockets past the
    /// handshake, and Engine.IO sessions.
    pub sockets: [usize; 4],
    pub connections: usize,
    pub websockets: usize,
    pub sessions: usize,
    /// Long-polling GETs held open, waiting for packets.
    pub held_polls: usize,
    pub rooms: usize,
    pub subscriptions: usize,
    /// Open WebSockets that agreed permessage-deflate.
    pub deflate_websockets: usize,
    /// Bytes queued for client connections and polling sessions.
    pub queued_bytes: usize,
    /// Users with a socket anywhere: filled in from the router's directory (a user with
    /// sockets on two workers has a room on each).
    pub users: usize,
}

impl Gauges {
    fn merge(&mut self, o: &Gauges) {
        let Gauges {
            sockets,
            connections,
            websockets,
            sessions,
            held_polls,
            rooms,
            subscriptions,
            deflate_websockets,
            queued_bytes,
            users,
        } = o;
        for (a, b) in self.sockets.iter_mut().zip(sockets) {
            *a += b;
        }
        self.connections += connections;
        self.websockets += websockets;
        self.sessions += sessions;
        self.held_polls += held_polls;
        self.rooms += rooms;
        self.subscriptions += subscriptions;
        self.deflate_websockets += deflate_websockets;
        self.queued_bytes += queued_bytes;
        self.users += users;
    }
}

impl Metrics {
    /// Adds another worker's counters to these.
    pub fn merge(&mut self, o: &Metrics) {
        // Destructured whole: a counter added to `Metrics` and forgotten here does not compile.
        let Metrics {
            connections_accepted,
            handshakes_completed,
            handshakes_rejected,
            handshake_timeouts,
            tls_handshakes,
            tls_failures,
            proxy_refused,
            sessions_opened,
            ping_timeouts,
            pushes_user,
            pushes_users,
            pushes_broadcast,
            deliveries,
            bytes_sent,
            corked_batches,
            messages_received,
            messages_inflated,
            slow_consumers,
            attachments_refused,
            recoveries,
            recoveries_failed,
            replayed,
            sessions_parked,
            sessions_recovered,
            rate_limited_user,
            rate_limited_client,
            refused_total,
            refused_per_ip,
            refused_rate,
            refused_sessions,
            origins_refused,
            pongs_dropped,
            auth_failures,
            auth_timeouts,
            forbidden,
            tokens_expired,
            msgpack_skipped,
            deliveries_compressed,
            compressions,
            compressed_bytes_in,
            compressed_bytes_out,
            closes,
            peer_warnings,
            fanout,
        } = o;
        for (a, b) in [
            (&mut self.connections_accepted, connections_accepted),
            (&mut self.handshake_timeouts, handshake_timeouts),
            (&mut self.tls_handshakes, tls_handshakes),
            (&mut self.tls_failures, tls_failures),
            (&mut self.proxy_refused, proxy_refused),
            (&mut self.handshakes_completed, handshakes_completed),
            (&mut self.sessions_opened, sessions_opened),
            (&mut self.ping_timeouts, ping_timeouts),
            (&mut self.pushes_user, pushes_user),
            (&mut self.pushes_users, pushes_users),
            (&mut self.pushes_broadcast, pushes_broadcast),
            (&mut self.deliveries, deliveries),
            (&mut self.bytes_sent, bytes_sent),
            (&mut self.corked_batches, corked_batches),
            (&mut self.messages_received, messages_received),
            (&mut self.messages_inflated, messages_inflated),
            (&mut self.slow_consumers, slow_consumers),
            (&mut self.attachments_refused, attachments_refused),
            (&mut self.recoveries, recoveries),
            (&mut self.recoveries_failed, recoveries_failed),
            (&mut self.replayed, replayed),
            (&mut self.sessions_parked, sessions_parked),
            (&mut self.sessions_recovered, sessions_recovered),
            (&mut self.rate_limited_user, rate_limited_user),
            (&mut self.rate_limited_client, rate_limited_client),
            (&mut self.refused_total, refused_total),
            (&mut self.refused_per_ip, refused_per_ip),
            (&mut self.refused_rate, refused_rate),
            (&mut self.refused_sessions, refused_sessions),
            (&mut self.origins_refused, origins_refused),
            (&mut self.pongs_dropped, pongs_dropped),
            (&mut self.auth_failures, auth_failures),
            (&mut self.auth_timeouts, auth_timeouts),
            (&mut self.forbidden, forbidden),
            (&mut self.tokens_expired, tokens_expired),
            (&mut self.msgpack_skipped, msgpack_skipped),
            (&mut self.deliveries_compressed, deliveries_compressed),
            (&mut self.compressions, compressions),
            (&mut self.compressed_bytes_in, compressed_bytes_in),
            (&mut self.compressed_bytes_out, compressed_bytes_out),
        ] {
            *a += b;
        }
        for (status, n) in handshakes_rejected {
            *self.handshakes_rejected.entry(*status).or_default() += n;
        }
        for (code, n) in closes {
            *self.closes.entry(*code).or_default() += n;
        }
        self.peer_warnings.merge(peer_warnings);
        self.fanout.merge(fanout);
    }

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
        let _ = write!(s, "# HELP herald_sockets Client sockets by protocol: raw /ws JSON and MessagePack WebSockets, Socket.IO sessions over a WebSocket or long-polling.\n# TYPE herald_sockets gauge\n");
        for (p, v) in Protocol::ALL.iter().zip(g.sockets) {
            let _ = writeln!(s, "herald_sockets{{protocol=\"{}\"}} {v}", p.label());
        }
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
            g.users,
        );
        gauge(
            &mut s,
            "herald_rooms",
            "Rooms held, one per user per worker with its sockets (empty rooms are freed).",
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
            "herald_tls_handshakes_total",
            "TLS handshakes completed on the public port.",
            self.tls_handshakes,
        );
        counter(
            &mut s,
            "herald_tls_failures_total",
            "TLS sessions ended by a protocol error (an alert sent, the connection closed).",
            self.tls_failures,
        );
        counter(
            &mut s,
            "herald_proxy_protocol_refused_total",
            "Connections closed on a --proxy-protocol listener: untrusted address, or no valid PROXY header.",
            self.proxy_refused,
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
            "herald_recoveries_total",
            "Subscribes with an offset and Socket.IO sessions taken back that were handed what they missed (recovered: true).",
            self.recoveries,
        );
        counter(
            &mut s,
            "herald_recoveries_failed_total",
            "Subscribes with an offset that could not be honoured (too old, malformed, another epoch): recovered: false.",
            self.recoveries_failed,
        );
        counter(
            &mut s,
            "herald_replayed_total",
            "Notifications handed to reconnected clients from the recovery log.",
            self.replayed,
        );
        counter(
            &mut s,
            "herald_sessions_parked_total",
            "Socket.IO sessions kept for connection state recovery when their transport was lost.",
            self.sessions_parked,
        );
        counter(
            &mut s,
            "herald_sessions_recovered_total",
            "Socket.IO sessions taken back by a reconnecting client (socket.recovered === true).",
            self.sessions_recovered,
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
        let _ = write!(s, "# HELP herald_connections_refused_total Connections and sessions refused: the total cap (503), the per-address cap or rate (429), the Socket.IO session cap (503).\n# TYPE herald_connections_refused_total counter\n");
        for (reason, v) in [
            ("total", self.refused_total),
            ("per_ip", self.refused_per_ip),
            ("rate", self.refused_rate),
            ("sessions", self.refused_sessions),
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
        self.fanout.render(
            &mut s,
            "herald_fanout_seconds",
            "From a push's arrival to its frames handed to the kernel (or queued behind a full socket buffer) on the last worker it went to.",
        );
        s
    }
}
