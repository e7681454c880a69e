//! Every address, limit and timer herald has, with its default, its flag and its `HERALD_*`
//! environment twin. `herald --help` prints this table.

use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::auth::{self, ApiKeys, Verifier};
use crate::http::{OriginError, Origins};
use crate::jwt_keys::{JwtKeys, KeyError, KeyPath, KeySources};
use crate::limits::{self, LimitSettings, Limits};
use crate::proxy::{self, ForwardHeader, RealIp, TrustedProxies, TrustedProxyError};
use crate::ws::decoder::DEFAULT_MAX_FRAGMENTS;

/// How accepted connections are spread over the workers (`--accept`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    Handoff,
    Reuseport,
}

/// herald: a real-time notification gateway.
///
/// Clients hold a WebSocket (`ws://HOST:5000/ws`) and subscribe to user ids with
/// `{"event":"subscribe","data":"<userId>"}`; services push notifications over the HTTP control
/// API (`POST http://127.0.0.1:5001/v1/users/<userId>/notifications`), and every socket
/// subscribed to that user receives them. Durations take units: `500ms`, `10s`, `2m`; a timer is
/// above zero unless its flag says what 0 means, and at most a day. A size or count where 0 would
/// refuse everything is refused at start; where 0 means "off", the flag says so.
#[derive(Parser, Debug, Clone)]
#[command(name = "herald", version, about, long_about)]
pub struct Config {
    /// Address of the public WebSocket listener: `IP:PORT`, or `HOST:PORT` resolved once at
    /// start (its first IPv4 address, else its first).
    #[arg(long, env = "HERALD_LISTEN", default_value = "0.0.0.0:5000", value_parser = socket_addr)]
    pub listen: SocketAddr,

    /// Address of the HTTP control API, `IP:PORT` or `HOST:PORT`. An address off loopback needs --api-key: herald refuses
    /// to start without one.
    #[arg(long, env = "HERALD_CONTROL", default_value = "127.0.0.1:5001", value_parser = socket_addr)]
    pub control: SocketAddr,

    /// TLS on the public listener: a PEM file with the certificate chain, the server's own
    /// certificate first. With --tls-key, clients connect with `wss://` and `https://` (TLS 1.3
    /// and 1.2, ALPN `http/1.1`), and the port no longer serves plain text. SIGHUP reads both
    /// files again: open connections stay as they are, new handshakes get the new certificate
    /// (a file that does not load leaves the old one in use, and says why in the log).
    #[arg(
        long,
        env = "HERALD_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "HERALD_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// TLS on the control API, as --tls-cert does for the public listener (reloaded on SIGHUP
    /// too). Services then call `https://`; the API key still applies.
    #[arg(
        long,
        env = "HERALD_CONTROL_TLS_CERT",
        value_name = "PEM",
        requires = "control_tls_key"
    )]
    pub control_tls_cert: Option<PathBuf>,

    /// The private key of --control-tls-cert, PEM.
    #[arg(
        long,
        env = "HERALD_CONTROL_TLS_KEY",
        value_name = "PEM",
        requires = "control_tls_cert"
    )]
    pub control_tls_key: Option<PathBuf>,

    /// Worker threads, each an event loop owning its share of the client connections. 0: one per
    /// CPU this process may run on (its affinity mask and CPU quota), at most 64.
    #[arg(long, env = "HERALD_WORKERS", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub workers: u16,

    /// How new connections reach the workers: `handoff`, one listener whose worker accepts and
    /// deals connections to the workers in turn; `reuseport`, a listener per worker on the same
    /// port (`SO_REUSEPORT`), the kernel choosing (another process of the same user could then
    /// bind the port too and take a share of the connections). Both measured alike; `handoff`
    /// keeps the split exact whatever the clients' addresses, and one listener to close at
    /// shutdown.
    #[arg(long, env = "HERALD_ACCEPT", value_enum, default_value_t = Accept::Handoff)]
    pub accept: Accept,

    /// Path of the raw JSON WebSocket endpoint.
    #[arg(long, env = "HERALD_WS_PATH", default_value = "/ws")]
    pub ws_path: String,

    /// Path of the Socket.IO (Engine.IO v4) endpoint, for socket.io-client front ends.
    #[arg(long, env = "HERALD_SOCKETIO_PATH", default_value = "/socket.io/")]
    pub socketio_path: String,

    /// For conformance testing only (an Autobahn-style test suite): a WebSocket upgraded on this
    /// path echoes every text and binary message back as it came, with no authentication and no
    /// protocol of its own. Never set in production. Unset (the default): the path is unknown
    /// like any other and answered 404.
    #[arg(long, env = "HERALD_ECHO_PATH", value_name = "PATH")]
    pub echo_path: Option<String>,

    /// Origins allowed to use Socket.IO's HTTP long-polling from a browser, comma-separated. Each
    /// is `*` (alone: any origin), an exact `scheme://host[:port]` as browsers send it in
    /// `Origin` (`https://app.example.com,http://localhost:3000`), or a pattern whose leftmost
    /// label is `*`, standing for one or more labels (`https://*.example.com` takes
    /// `https://a.example.com`, not `https://example.com`). Scheme and port must match; an entry
    /// without a port takes origins without one. With `*`, answers carry
    /// `Access-Control-Allow-Origin: *` and no credentials (the CORS rules forbid both together);
    /// an origin a list admits is echoed back with credentials allowed, and one it does not gets
    /// no CORS headers, so browsers refuse cross-origin polling. Empty: same-origin pages and
    /// non-browser clients only. WebSocket connections are not subject to CORS.
    #[arg(long, env = "HERALD_CORS_ORIGINS", value_delimiter = ',', value_parser = origin_entry)]
    pub cors_origins: Vec<String>,

    /// Origins browsers may connect from, comma-separated, in the forms --cors-origins takes
    /// (`https://app.example.com`, `https://*.example.com`, `*`). A WebSocket handshake or polling
    /// request with any other `Origin` is answered 403; requests without one (non-browser
    /// clients) pass. Empty or `*`: every origin.
    #[arg(long, env = "HERALD_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = origin_entry)]
    pub allowed_origins: Vec<String>,

    /// Proxies whose word on a client's address herald believes, comma-separated: IPv4 and IPv6
    /// addresses (one host each) and CIDRs (`10.0.0.0/8`, `2001:db8::/32`), and `private` for
    /// the RFC 1918 networks (10/8, 172.16/12, 192.168/16), RFC 4193's fc00::/7 and loopback
    /// (127/8, ::1). A request from one of them has its client read from --proxy-header, right
    /// to left past the trusted hops to the first address not trusted; a request from any other
    /// address is its own client, whatever its headers say. An IPv4-mapped peer
    /// (`::ffff:a.b.c.d`) is matched as IPv4. An entry that names no network, or a CIDR with
    /// host bits set (`10.0.0.1/8`), is refused at start. Empty (the default): no proxy is
    /// trusted, and every client is the address it connects from.
    #[arg(
        long,
        env = "HERALD_TRUSTED_PROXIES",
        default_value = "",
        hide_default_value = true,
        value_name = "LIST",
        value_parser = trusted_proxies
    )]
    pub trusted_proxies: TrustedProxies,

    /// The header trusted proxies (--trusted-proxies) name the client in: `x-forwarded-for`, or
    /// `forwarded` (RFC 7239, its `for=` parameters). Only that one is read: a proxy rewrites or
    /// appends to the header it is set up to write and passes the other through from the client
    /// as it came, so reading both would let a client choose its address.
    #[arg(long, env = "HERALD_PROXY_HEADER", value_enum, default_value_t = ForwardHeader::XForwardedFor)]
    pub proxy_header: ForwardHeader,

    /// Behind a layer-4 load balancer (HAProxy's `send-proxy` or `send-proxy-v2`, AWS NLB, and
    /// the like): every connection on --listen must open with a PROXY protocol header, v1 or
    /// v2, and the client is the source address it names. It is believed only from
    /// --trusted-proxies, which must then be set: a connection from any other address is
    /// refused, as is one that opens without a valid header. A LOCAL (health check) or UNKNOWN
    /// header keeps the connection's own address. The control API is not affected.
    #[arg(
        long,
        env = "HERALD_PROXY_PROTOCOL",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub proxy_protocol: bool,

    /// Engine.IO `maxPayload`: the largest polling request body and Socket.IO WebSocket message
    /// a client may send, in bytes.
    #[arg(long, env = "HERALD_MAX_PAYLOAD", default_value_t = 1_000_000, value_parser = at_least_one())]
    pub max_payload: usize,

    /// A Socket.IO client that has not connected to a namespace this long after its Engine.IO
    /// session opened is closed.
    #[arg(long, env = "HERALD_CONNECT_TIMEOUT", default_value = "45s", value_parser = positive_duration)]
    pub connect_timeout: Duration,

    /// Most binary attachments one Socket.IO packet may announce. 0: binary packets are refused.
    #[arg(long, env = "HERALD_MAX_ATTACHMENTS", default_value_t = 10)]
    pub max_attachments: usize,

    /// Largest WebSocket message a client may send, in bytes, summed over its fragments.
    /// A larger one is refused from its frame header and closed with 1009.
    #[arg(long, env = "HERALD_MAX_MESSAGE", default_value_t = 64 * 1024, value_parser = at_least_one())]
    pub max_message: usize,

    /// Most frames one WebSocket message from a client may span: its first frame plus its
    /// continuations (pings between them do not count). One more closes the connection with
    /// 1009, so a client cannot hold a message open forever with empty continuations. 0 is
    /// refused: every message has a frame, and an unbounded count is what this limit prevents.
    #[arg(
        long,
        env = "HERALD_MAX_FRAGMENTS",
        default_value_t = DEFAULT_MAX_FRAGMENTS,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_fragments: u32,

    /// Largest HTTP request head (request line and headers) of a WebSocket handshake, in bytes.
    /// A larger one is answered 431.
    #[arg(long, env = "HERALD_MAX_HANDSHAKE", default_value_t = 8 * 1024, value_parser = at_least_one())]
    pub max_handshake: usize,

    /// A connection that has not completed its WebSocket handshake (or, for HTTP long-polling,
    /// sent its next request) by then is closed.
    #[arg(long, env = "HERALD_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub handshake_timeout: Duration,

    /// A connection silent for this long is sent a ping. Also the Engine.IO `pingInterval`:
    /// how often Socket.IO sessions are pinged.
    #[arg(long, env = "HERALD_PING_INTERVAL", default_value = "25s", value_parser = positive_duration)]
    pub ping_interval: Duration,

    /// A connection that sends nothing (no pong, no message) this long after a ping is closed.
    /// Also the Engine.IO `pingTimeout`.
    #[arg(long, env = "HERALD_PING_TIMEOUT", default_value = "20s", value_parser = positive_duration)]
    pub ping_timeout: Duration,

    /// After herald sends a close frame, how long it waits for the client to finish the close
    /// handshake before it drops the TCP connection.
    #[arg(long, env = "HERALD_CLOSE_TIMEOUT", default_value = "3s", value_parser = positive_duration)]
    pub close_timeout: Duration,

    /// Agree permessage-deflate (RFC 7692) with clients that offer it, on `/ws` and on
    /// Socket.IO's WebSocket transport. Each push is compressed once for all its compressing
    /// recipients, and no compression state is kept per connection. `false` declines every offer.
    #[arg(long, env = "HERALD_DEFLATE", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub deflate: bool,

    /// Messages whose payload is smaller than this many bytes go uncompressed even to clients
    /// that agreed permessage-deflate: for small notifications compression costs more than it
    /// saves.
    #[arg(
        long,
        env = "HERALD_DEFLATE_THRESHOLD",
        default_value_t = 1024,
        value_name = "BYTES"
    )]
    pub deflate_threshold: usize,

    /// zlib level of permessage-deflate: 0 (stored) to 9 (smallest); 1 is the fastest.
    #[arg(long, env = "HERALD_DEFLATE_LEVEL", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub deflate_level: u32,

    /// Most bytes herald holds for one connection that reads too slowly (or one Socket.IO
    /// session between polls). A push that would take it past this closes the connection with
    /// 4008 ("slow consumer, reconnect") and drops what was waiting: one slow reader never grows
    /// herald's memory without bound or holds up the others.
    #[arg(
        long,
        env = "HERALD_MAX_QUEUED_BYTES",
        default_value_t = 1024 * 1024,
        value_name = "BYTES",
        value_parser = at_least_one()
    )]
    pub max_queued_bytes: usize,

    /// How many user ids one connection may subscribe to.
    #[arg(long, env = "HERALD_MAX_SUBSCRIPTIONS", default_value_t = 16, value_parser = at_least_one())]
    pub max_subscriptions: usize,

    /// On SIGINT/SIGTERM, once every client was told to go (see --drain-time), how long herald
    /// waits for clients to acknowledge their close and for queued bytes to drain before it
    /// exits anyway. 0: exit without waiting.
    #[arg(long, env = "HERALD_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub shutdown_timeout: Duration,

    /// On SIGINT/SIGTERM, herald stops accepting, answers /readyz 503, and closes its clients in
    /// batches spread over this long (close 1012 on /ws, a transport close for Socket.IO), so
    /// that they reconnect, to another instance or to this one restarted, without all arriving
    /// at once. 0: all at once.
    #[arg(long, env = "HERALD_DRAIN_TIME", default_value = "5s", value_parser = duration)]
    pub drain_time: Duration,

    /// Keep every push in an ordered log with offsets, so that reconnecting clients get what
    /// they missed: raw clients subscribe with the last offset they saw, Socket.IO clients
    /// recover their session (connection state recovery). `false` turns the log, offsets and
    /// recovery off.
    #[arg(long, env = "HERALD_RECOVERY", default_value_t = true, action = clap::ArgAction::Set)]
    pub recovery: bool,

    /// How long pushes are kept for reconnecting clients (and how long a Socket.IO session whose
    /// connection dropped may be taken back); an older offset is answered `recovered: false`.
    #[arg(long, env = "HERALD_RECOVERY_WINDOW", default_value = "2m", value_parser = positive_duration)]
    pub recovery_window: Duration,

    /// The most bytes the recovery log may hold (notifications, user ids and bookkeeping); the
    /// oldest pushes are dropped first when it is full.
    #[arg(long, env = "HERALD_RECOVERY_MAX_BYTES", default_value_t = 64 * 1024 * 1024, value_parser = at_least_one())]
    pub recovery_max_bytes: usize,

    /// A directory where herald writes its recovery log and Socket.IO sessions at a clean exit and
    /// reads them back at start, keeping the log's epoch: clients that reconnect after a restart
    /// recover what was pushed before it. Without it a restart starts a new epoch, and clients
    /// are told `recovered: false`.
    #[arg(long, env = "HERALD_STATE_DIR")]
    pub state_dir: Option<std::path::PathBuf>,

    /// Run as one node of a cluster on Redis: `redis://[user:pass@]host:port[/db]`. A push
    /// made on any node reaches its users' sockets on every node (read from Redis only by the
    /// nodes holding them), the recovery log is a Redis Stream shared by all nodes, and
    /// `GET /v1/users/{id}` counts every node. Without it herald is a single node and uses no
    /// Redis at all. Needs Redis 6.2 or later and `--recovery true`.
    #[arg(long, env = "HERALD_REDIS", value_name = "URL")]
    pub redis: Option<String>,

    /// For `rediss://`: the CA certificate (PEM) that signed Redis's certificate, when it is not
    /// one of the system's trusted roots.
    #[arg(long, env = "HERALD_REDIS_CA", value_name = "PEM")]
    pub redis_ca: Option<std::path::PathBuf>,

    /// The prefix of every Redis key and channel herald uses: clusters sharing one Redis
    /// need different prefixes.
    #[arg(long, env = "HERALD_REDIS_PREFIX", default_value = "herald")]
    pub redis_prefix: String,

    /// How long a node counts as alive after its last heartbeat (sent every fifth of it): a
    /// node that stops is no longer routed to, nor counted in presence, once it passes.
    #[arg(long, env = "HERALD_REDIS_NODE_TTL", default_value = "5s", value_parser = positive_duration)]
    pub redis_node_ttl: Duration,

    /// With `--redis`: read what `@socket.io/redis-emitter` publishes (one node at a time does),
    /// so that backends written for Socket.IO push through herald unchanged: an event sent to
    /// room `user_<id>` is a push to user `<id>`, to no room a broadcast.
    #[arg(long, env = "HERALD_REDIS_EMITTER", default_value_t = true, action = clap::ArgAction::Set)]
    pub redis_emitter: bool,

    /// The emitter's `key` option: it publishes on `<key>#/#` and `<key>#/#<room>#`.
    #[arg(long, env = "HERALD_REDIS_EMITTER_KEY", default_value = "socket.io")]
    pub redis_emitter_key: String,

    /// The prefix of the emitter's rooms that name a user: `user_` reads room `user_42` as user
    /// `42`.
    #[arg(
        long,
        env = "HERALD_REDIS_EMITTER_ROOM_PREFIX",
        default_value = "user_"
    )]
    pub redis_emitter_room_prefix: String,

    /// Largest control API request body, in bytes; a larger one is answered 413.
    #[arg(long, env = "HERALD_CONTROL_MAX_BODY", default_value_t = 1024 * 1024, value_parser = at_least_one())]
    pub control_max_body: usize,

    /// How many control API connections are served at once (a thread each); more are answered 503.
    #[arg(long, env = "HERALD_CONTROL_MAX_CONNECTIONS", default_value_t = 256, value_parser = at_least_one())]
    pub control_max_connections: usize,

    /// A keep-alive control API connection idle this long is closed. 0: never.
    #[arg(long, env = "HERALD_CONTROL_IDLE_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub control_idle_timeout: Duration,

    /// A control API request must arrive whole, head and body, within this long (counted from
    /// its first byte, or from the connection's opening for its first request); a slower one is
    /// answered 408 and its connection closed, so trickling clients cannot hold the connection
    /// slots. 0: no limit.
    #[arg(long, env = "HERALD_CONTROL_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub control_request_timeout: Duration,

    /// Request body bytes the control API holds at once, over all its connections, from the
    /// request's head until the event loop has taken its command. A body that would go past it
    /// is answered 503 with `Retry-After` before it is read; bodies up to 64 KiB always pass, so
    /// small pushes keep moving behind heavy ones.
    #[arg(long, env = "HERALD_CONTROL_MAX_INFLIGHT_BYTES", default_value_t = 32 * 1024 * 1024, value_name = "BYTES")]
    pub control_max_inflight_bytes: usize,

    /// Shared secret of HS256 JWTs, at least 32 bytes (RFC 7518 §3.2). Clients then present a
    /// token whose `sub` is their user id. Exclusive with --jwt-public-key and --jwt-jwks; with
    /// none of them, clients are not authenticated.
    #[arg(
        long,
        env = "HERALD_JWT_SECRET",
        hide_env_values = true,
        conflicts_with_all = ["jwt_public_key", "jwt_jwks"]
    )]
    pub jwt_secret: Option<String>,

    /// PEM public key file of RS256 (RSA, 2048 to 8192 bits) or ES256 (P-256) JWTs, as `PATH`
    /// or `KID=PATH`; repeat the flag (commas in HERALD_JWT_PUBLIC_KEY) for several keys, as
    /// during a key rotation. A key's algorithm follows from its type, and no other is
    /// accepted. A token whose `kid` names a key is verified with that key alone; the others are
    /// tried against the keys of their algorithm given without a KID (at most 4 per
    /// algorithm). Read again on SIGHUP. Exclusive with --jwt-secret.
    #[arg(
        long,
        env = "HERALD_JWT_PUBLIC_KEY",
        value_name = "[KID=]PATH",
        value_delimiter = ',',
        value_parser = key_path
    )]
    pub jwt_public_key: Vec<KeyPath>,

    /// Local JWKS file (RFC 7517 `{"keys":[...]}`) of RS256 and ES256 public keys, alone or
    /// beside --jwt-public-key: RSA keys (`n`, `e`) and EC P-256 keys (`x`, `y`), each named by
    /// its `kid`. Keys for another `use` than `sig`, of another type, curve or `alg`, are
    /// skipped with a warning; a file with no key herald can use is refused. Read again on
    /// SIGHUP. Exclusive with --jwt-secret.
    #[arg(long, env = "HERALD_JWT_JWKS", value_name = "FILE")]
    pub jwt_jwks: Option<PathBuf>,

    /// When set, a JWT's `iss` must equal it.
    #[arg(long, env = "HERALD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// When set, a JWT's `aud` must name it.
    #[arg(long, env = "HERALD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew forgiven on a JWT's `exp` and `nbf`, in whole seconds. 0: none.
    #[arg(long, env = "HERALD_JWT_LEEWAY", default_value = "0s", value_parser = duration)]
    pub jwt_leeway: Duration,

    /// When JWT auth is on, a raw `/ws` connection that has not authenticated this long after
    /// its WebSocket handshake is closed with 4001, and a Socket.IO session with no accepted
    /// CONNECT by then (or by --connect-timeout, if shorter) is closed.
    #[arg(long, env = "HERALD_AUTH_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub auth_timeout: Duration,

    /// Key control API callers present as `Authorization: Bearer <key>`, compared in constant
    /// time. Several keys, repeated or comma-separated (bearer tokens hold no comma), are all
    /// accepted: give the new key beside the old one, move the callers over, then drop the old.
    /// An empty key matches nothing. Unset: the control API has no authentication, so keep it on
    /// loopback.
    #[arg(
        long,
        env = "HERALD_API_KEY",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub api_key: Vec<String>,

    /// With --api-key: failed key attempts one client address (IPv4, or IPv6 /64) may make
    /// within --control-auth-window. Past them its requests are answered 429 with
    /// `Retry-After`, their key not even compared, until the window that began with its first
    /// failure ends. Successful requests do not count. 0: no limit.
    #[arg(long, env = "HERALD_CONTROL_AUTH_FAILURES", default_value_t = 10)]
    pub control_auth_failures: u32,

    /// The window --control-auth-failures counts in, from an address's first failure.
    #[arg(long, env = "HERALD_CONTROL_AUTH_WINDOW", default_value = "1m", value_parser = positive_duration)]
    pub control_auth_window: Duration,

    /// Client addresses whose failed key attempts are remembered at once. When full, those
    /// whose window ended go first, then the oldest; so a spray of addresses costs bounded
    /// memory (about 64 bytes each), at worst letting the oldest start counting again.
    #[arg(long, env = "HERALD_CONTROL_AUTH_MAX_ADDRESSES", default_value_t = 10_000, value_parser = at_least_one())]
    pub control_auth_max_addresses: usize,

    /// Notifications per second one user id may be pushed, sustained; pushes beyond it are
    /// answered 429 with `Retry-After`. 0: no limit.
    #[arg(long, env = "HERALD_USER_RATE", default_value_t = limits::DEFAULT_USER_RATE)]
    pub user_rate: u32,

    /// Notifications one user id may be pushed in a burst, before `--user-rate` paces them.
    #[arg(long, env = "HERALD_USER_BURST", default_value_t = limits::DEFAULT_USER_BURST, value_parser = clap::value_parser!(u32).range(1..))]
    pub user_burst: u32,

    /// Messages per second one client connection may send, sustained, pings included. 0: no
    /// limit.
    #[arg(long, env = "HERALD_CLIENT_RATE", default_value_t = limits::DEFAULT_CLIENT_RATE)]
    pub client_rate: u32,

    /// Messages one client connection may send in a burst, before `--client-rate` paces them:
    /// enough to subscribe `--max-subscriptions` user ids right after connecting.
    #[arg(long, env = "HERALD_CLIENT_BURST", default_value_t = limits::DEFAULT_CLIENT_BURST, value_parser = clap::value_parser!(u32).range(1..))]
    pub client_burst: u32,

    /// Client connections open at once; more are answered 503. The process's open-file limit
    /// may be lower. A Socket.IO client's connections count here, its session under
    /// `--max-sessions`. 0: no limit.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", default_value_t = limits::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Socket.IO (Engine.IO) sessions open at once, on either transport, counted apart from
    /// connections; the handshake past it is answered 503. Per address, sessions are capped by
    /// `--max-connections-per-ip`, again apart from connections. 0: no limit.
    #[arg(long, env = "HERALD_MAX_SESSIONS", default_value_t = limits::DEFAULT_MAX_SESSIONS)]
    pub max_sessions: usize,

    /// Client connections open at once from one IPv4 address or IPv6 /64; more are answered 429.
    /// High by default because many users may share a NAT. 0: no limit.
    #[arg(
        long,
        env = "HERALD_MAX_CONNECTIONS_PER_IP",
        default_value_t = limits::DEFAULT_MAX_CONNECTIONS_PER_IP
    )]
    pub max_connections_per_ip: u32,

    /// New client connections per second from one IPv4 address or IPv6 /64, sustained, with
    /// bursts of five seconds' worth; faster ones are answered 429 with `Retry-After`.
    /// 0: no limit.
    #[arg(
        long,
        env = "HERALD_CONNECTION_RATE_PER_IP",
        default_value_t = limits::DEFAULT_CONNECTION_RATE_PER_IP
    )]
    pub connection_rate_per_ip: u32,

    /// How log lines are written to stderr: `text` for people, `json` (one object a line, with
    /// `timestamp`, `level`, `fields` and `target`) for log collectors. `RUST_LOG` picks what is
    /// logged either way.
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Every flag as this configuration was read, with where its value came from, secrets
    /// masked: what `GET /admin/config` shows. Filled by [`Config::try_parse_args`]; empty for a
    /// configuration built in code ([`Config::for_tests`]), whose fields may differ from any
    /// command line.
    #[arg(skip)]
    pub settings: Vec<Setting>,
}

/// Where a flag's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    Environment,
    CommandLine,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::Environment => "environment",
            Source::CommandLine => "command line",
        }
    }
}

/// One flag as herald was started with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// `--listen`.
    pub flag: String,
    /// `HERALD_LISTEN`.
    pub env: Option<String>,
    /// As given (several values joined with commas), a secret replaced by [`MASK`], a password
    /// in a Redis URL too; `None` when the flag is unset and has no default.
    pub value: Option<String>,
    /// `None` when unset.
    pub source: Option<Source>,
    /// The value is a secret, shown masked.
    pub secret: bool,
}

/// What a secret is shown as.
pub const MASK: &str = "********";

/// Flags whose values are secrets: never shown, whatever their source.
const SECRET_FLAGS: [&str; 2] = ["api_key", "jwt_secret"];

/// Every flag of `cmd` as `matches` read it, in `--help` order.
fn settings(cmd: &clap::Command, matches: &clap::ArgMatches) -> Vec<Setting> {
    use clap::parser::ValueSource;
    cmd.get_arguments()
        .filter(|a| a.get_action().takes_values())
        .filter_map(|a| {
            let id = a.get_id().as_str();
            let flag = format!("--{}", a.get_long()?);
            let secret = SECRET_FLAGS.contains(&id);
            let value = matches.try_get_raw(id).ok().flatten().map(|raw| {
                raw.map(|v| {
                    let v = v.to_string_lossy();
                    match id {
                        _ if secret => MASK.to_owned(),
                        "redis" => mask_url_password(&v),
                        _ => v.into_owned(),
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
            });
            let source = matches.value_source(id).map(|s| match s {
                ValueSource::DefaultValue => Source::Default,
                ValueSource::EnvVariable => Source::Environment,
                _ => Source::CommandLine,
            });
            Some(Setting {
                flag,
                env: a.get_env().map(|e| e.to_string_lossy().into_owned()),
                value,
                source,
                secret,
            })
        })
        .collect()
}

/// `redis://user:secret@host` as `redis://user:********@host`: the password of a URL's user
/// info, if it has one, masked.
fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The authority ends at the first `/`, `?` or `#`; its user info at the last `@` in it.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..end].rfind('@') else {
        return url.to_owned();
    };
    let Some(colon) = rest[..at].find(':') else {
        return url.to_owned();
    };
    format!("{scheme}://{}:{MASK}{}", &rest[..colon], &rest[at..])
}

/// The shape of herald's log lines.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The longest timer herald takes. A timer of more than a day is a slip of the finger, and
/// bounding it keeps every `Instant + timer` far from overflow.
pub const MAX_TIMER: Duration = Duration::from_secs(24 * 60 * 60);

/// A duration flag that may be 0 (its flag says what 0 means), at most [`MAX_TIMER`].
fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > MAX_TIMER {
        return Err(format!(
            "at most {} (a day) is accepted",
            humantime::format_duration(MAX_TIMER)
        ));
    }
    Ok(d)
}

/// A timer that must be above zero: a ping interval of 0 would ping without pause, a timeout of
/// 0 would close every connection at once.
/// `PATH` or `KID=PATH`, see [`KeyPath::parse`].
fn key_path(s: &str) -> Result<KeyPath, String> {
    KeyPath::parse(s)
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        Duration::ZERO => Err("must be above zero (e.g. 500ms, 10s)".to_owned()),
        d => Ok(d),
    }
}

/// A size or count for which 0 would refuse every message, request or client.
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// `--trusted-proxies`, every entry checked now, the message naming the one refused.
fn trusted_proxies(s: &str) -> Result<TrustedProxies, String> {
    s.parse().map_err(|e: TrustedProxyError| e.to_string())
}

/// `--proxy-header`'s values are the headers' names.
impl clap::ValueEnum for ForwardHeader {
    fn value_variants<'a>() -> &'a [Self] {
        &[ForwardHeader::XForwardedFor, ForwardHeader::Forwarded]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// One entry of an origin list (see [`Origins`]), checked as the command line is read so that
/// a bad one is named with its flag; kept as written.
fn origin_entry(s: &str) -> Result<String, String> {
    Origins::check_entry(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

/// `IP:PORT`, or `HOST:PORT` resolved now, once: its first IPv4 address, else its first (so that
/// `localhost` means 127.0.0.1 where both it and ::1 are listed).
fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let hint = "give IP:PORT or HOST:PORT, e.g. 127.0.0.1:5000 or localhost:5000";
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("{e}; {hint}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{s} resolves to no address; {hint}"))
}

/// Rewrites clap's "invalid value for '--flag'" as "invalid value in HERALD_FLAG (--flag)" when
/// the flag is not among `args`, so the value can only have come from its variable.
fn name_env_twin(e: clap::Error, args: &[OsString]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use clap::CommandFactory;
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return e;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    // `--ping-interval <PING_INTERVAL>`
    let Some(long) = arg
        .strip_prefix("--")
        .and_then(|a| a.split([' ', '=']).next())
    else {
        return e;
    };
    let mut cmd = Config::command();
    let Some(env) = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|env| env.to_string_lossy().into_owned())
    else {
        return e;
    };
    let flag = format!("--{long}");
    let on_command_line = args.iter().skip(1).any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    });
    if on_command_line {
        return e;
    }
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => v.clone(),
        _ => String::new(),
    };
    let reason = match std::error::Error::source(&e) {
        Some(source) => source.to_string(),
        None => "not one of the accepted values (see --help)".to_owned(),
    };
    cmd.error(
        ErrorKind::ValueValidation,
        format!("invalid value '{value}' in {env} (the environment twin of {flag}): {reason}"),
    )
}

impl Config {
    /// Parses `args` and the `HERALD_*` variables. A bad value that came from a variable is
    /// reported under the variable's name and its flag's, since the command line the operator
    /// looks at does not show it. Flags that are valid alone but not together are refused here
    /// too, so that herald stops before it binds anything.
    pub fn try_parse_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut cmd = Config::command();
        let matches = cmd
            .try_get_matches_from_mut(&args)
            .map_err(|e| name_env_twin(e, &args))?;
        let mut config = Config::from_arg_matches(&matches)
            .map_err(|e| name_env_twin(e.format(&mut cmd), &args))?;
        config.settings = settings(&cmd, &matches);
        if let Err(e) = config.proxy() {
            return Err(Config::command().error(clap::error::ErrorKind::MissingRequiredArgument, e));
        }
        Ok(config)
    }

    /// The defaults, as `herald` with no flags would run, except that both listeners take
    /// ephemeral loopback ports: what tests and embedders start from.
    pub fn for_tests() -> Self {
        let mut c = Config::parse_from(["herald"]);
        c.listen = ([127, 0, 0, 1], 0).into();
        c.control = ([127, 0, 0, 1], 0).into();
        // `parse_from` reads `HERALD_*` variables: a secret in the environment of a test run
        // must not turn auth on behind the tests' back.
        c.jwt_secret = None;
        c.jwt_public_key = Vec::new();
        c.jwt_jwks = None;
        c.jwt_issuer = None;
        c.jwt_audience = None;
        c.api_key = Vec::new();
        // Nor may an echo route appear that the test did not ask for.
        c.echo_path = None;
        // Nor TLS be spoken that the test did not set up.
        c.tls_cert = None;
        c.tls_key = None;
        c.control_tls_cert = None;
        c.control_tls_key = None;
        // Nor state be read from, or left in, a directory the test did not give.
        c.state_dir = None;
        // Nor a Redis be joined that the test did not start.
        c.redis = None;
        c.redis_ca = None;
        // Nor a proxy be trusted, or a PROXY header required, that the test did not name.
        c.trusted_proxies = TrustedProxies::default();
        c.proxy_header = ForwardHeader::default();
        c.proxy_protocol = false;
        // Tests open many connections from one address and push in bursts; each limit test turns
        // its own limit back on.
        c.user_rate = 0;
        c.client_rate = 0;
        c.max_connections_per_ip = 0;
        c.connection_rate_per_ip = 0;
        c.control_auth_failures = 0;
        // Several workers unless the run asks otherwise (`HERALD_WORKERS=1`): every test then
        // crosses workers, as production on a multi-core machine does.
        if std::env::var_os("HERALD_WORKERS").is_none() {
            c.workers = 4;
        }
        c
    }

    /// The workers to run: `--workers`, or one per CPU the process may run on.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(crate::router::directory::MAX_WORKERS),
            n => n as usize,
        }
    }

    /// Where the JWT verification keys come from: --jwt-secret, or --jwt-public-key and
    /// --jwt-jwks. Empty when JWT auth is off.
    pub fn key_sources(&self) -> KeySources {
        KeySources {
            secret: self.jwt_secret.clone(),
            public_keys: self.jwt_public_key.clone(),
            jwks: self.jwt_jwks.clone(),
        }
    }

    /// The JWT verifier the configuration asks for, with its issuer, audience and leeway, and
    /// where its keys come from: `None` when no key is configured. Reads the key files: call it
    /// once, at startup, and [`JwtKeys::reload`] after.
    pub fn jwt_keys(&self) -> Result<Option<JwtKeys>, KeyError> {
        let sources = self.key_sources();
        if sources.is_empty() {
            return Ok(None);
        }
        JwtKeys::load(sources, |verifier| {
            let mut verifier = verifier.with_leeway(self.jwt_leeway);
            if let Some(iss) = &self.jwt_issuer {
                verifier = verifier.with_issuer(iss.as_str());
            }
            if let Some(aud) = &self.jwt_audience {
                verifier = verifier.with_audience(aud.as_str());
            }
            verifier
        })
        .map(Some)
    }

    /// [`Config::jwt_keys`]'s verifier alone, and its fault without the file it is in.
    pub fn verifier(&self) -> Result<Option<Verifier>, auth::ConfigError> {
        match self.jwt_keys() {
            Ok(keys) => Ok(keys.map(|k| k.verifier().clone())),
            Err(e) => Err(e.error),
        }
    }

    /// The public listener's TLS files, when --tls-cert and --tls-key are given.
    pub fn tls_files(&self) -> Option<crate::server::tls::TlsFiles> {
        let (cert, key) = (self.tls_cert.clone()?, self.tls_key.clone()?);
        Some(crate::server::tls::TlsFiles {
            cert,
            key,
            cert_flag: "--tls-cert",
            key_flag: "--tls-key",
        })
    }

    /// The control API's TLS files, when --control-tls-cert and --control-tls-key are given.
    pub fn control_tls_files(&self) -> Option<crate::server::tls::TlsFiles> {
        let (cert, key) = (
            self.control_tls_cert.clone()?,
            self.control_tls_key.clone()?,
        );
        Some(crate::server::tls::TlsFiles {
            cert,
            key,
            cert_flag: "--control-tls-cert",
            key_flag: "--control-tls-key",
        })
    }

    /// How the public listener finds its clients' addresses behind proxies (see [`proxy`]):
    /// whom to trust, which header to read, whether a PROXY header opens every connection.
    /// Refused when --proxy-protocol is on and no proxy is trusted, which
    /// [`Config::try_parse_args`] checks at start.
    pub fn proxy(&self) -> Result<proxy::Settings, proxy::SettingsError> {
        let real_ip = RealIp {
            trusted: self.trusted_proxies.clone(),
            header: self.proxy_header,
        };
        proxy::Settings::new(real_ip, self.proxy_protocol)
    }

    /// The control API keys, when any is set. An empty --api-key matches no request: set but
    /// blank locks the control API rather than opening it.
    pub fn api_keys(&self) -> Option<ApiKeys> {
        (!self.api_key.is_empty()).then(|| ApiKeys::new(&self.api_key))
    }

    /// `--cors-origins`, parsed.
    pub fn cors_origins(&self) -> Result<Origins, OriginError> {
        Origins::parse(&self.cors_origins)
    }

    /// `--allowed-origins`, parsed.
    pub fn allowed_origins(&self) -> Result<Origins, OriginError> {
        Origins::parse(&self.allowed_origins)
    }
}

impl From<&Config> for LimitSettings {
    fn from(c: &Config) -> Self {
        LimitSettings {
            user_rate: c.user_rate,
            user_burst: c.user_burst,
            client_rate: c.client_rate,
            client_burst: c.client_burst,
            max_connections: c.max_connections,
            max_sessions: c.max_sessions,
            max_connections_per_ip: c.max_connections_per_ip,
            connection_rate_per_ip: c.connection_rate_per_ip,
        }
    }
}

impl From<&Config> for Limits {
    /// `0` on the command line turns a limit off.
    fn from(c: &Config) -> Self {
        Limits::from(LimitSettings::from(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn fixture(name: &str) -> PathBuf {
        [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", name]
            .iter()
            .collect()
    }

    #[test]
    fn settings_name_their_source_and_mask_secrets() {
        let c = Config::try_parse_args([
            "herald",
            "--api-key",
            "k-1,k-2",
            "--jwt-secret",
            SECRET,
            "--redis",
            "redis://user:pa:ss@cache:6379/0",
            "--workers",
            "2",
        ])
        .unwrap();
        let find = |flag: &str| c.settings.iter().find(|s| s.flag == flag).unwrap();
        let key = find("--api-key");
        assert_eq!(key.value.as_deref(), Some("********,********"));
        assert_eq!(key.env.as_deref(), Some("HERALD_API_KEY"));
        assert!(key.secret);
        assert_eq!(find("--jwt-secret").value.as_deref(), Some(MASK));
        assert_eq!(
            find("--redis").value.as_deref(),
            Some("redis://user:********@cache:6379/0")
        );
        let workers = find("--workers");
        assert_eq!(
            (workers.value.as_deref(), workers.source),
            (Some("2"), Some(Source::CommandLine))
        );
        // Whatever HERALD_* variables this test runs with, the rest are defaults or unset.
        for s in &c.settings {
            let text = format!("{s:?}");
            assert!(!text.contains(SECRET) && !text.contains("k-1") && !text.contains("pa:ss"));
        }
        assert!(c.settings.iter().all(|s| s.flag != "--help"));
    }

    #[test]
    fn url_passwords_are_masked() {
        for (url, want) in [
            ("redis://h:6379", "redis://h:6379"),
            ("redis://:pw@h:6379", "redis://:********@h:6379"),
            ("rediss://u:p@w@h/1?x=a@b", "rediss://u:********@h/1?x=a@b"),
            ("redis://user@h", "redis://user@h"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(mask_url_password(url), want, "{url}");
        }
    }

    #[test]
    fn for_tests_keeps_auth_off() {
        let c = Config::for_tests();
        assert!(c.verifier().unwrap().is_none());
        assert!(c.api_keys().is_none());
        assert_eq!(c.auth_timeout, Duration::from_secs(10));
        assert_eq!(c.jwt_leeway, Duration::ZERO);
    }

    #[test]
    fn auth_flags_parse() {
        let c = Config::try_parse_from([
            "herald",
            "--jwt-secret",
            SECRET,
            "--jwt-issuer",
            "auth.example",
            "--jwt-audience",
            "herald",
            "--jwt-leeway",
            "30s",
            "--auth-timeout",
            "2s",
            "--api-key",
            "k",
        ])
        .unwrap();
        assert_eq!(c.jwt_secret.as_deref(), Some(SECRET));
        assert_eq!(c.jwt_issuer.as_deref(), Some("auth.example"));
        assert_eq!(c.jwt_audience.as_deref(), Some("herald"));
        assert_eq!(c.jwt_leeway, Duration::from_secs(30));
        assert_eq!(c.auth_timeout, Duration::from_secs(2));
        assert!(c.api_keys().unwrap().matches(Some(b"Bearer k")));
        let v = c.verifier().unwrap().unwrap();
        assert_eq!(v.algorithm(), jsonwebtoken::Algorithm::HS256);
    }

    #[test]
    fn echo_path_is_off_unless_given() {
        assert_eq!(Config::for_tests().echo_path, None);
        let c = Config::try_parse_from(["herald", "--echo-path", "/echo"]).unwrap();
        assert_eq!(c.echo_path.as_deref(), Some("/echo"));
    }

    #[test]
    fn max_fragments_defaults_to_1024_and_refuses_0() {
        assert_eq!(Config::for_tests().max_fragments, 1024);
        let c = Config::try_parse_from(["herald", "--max-fragments", "16"]).unwrap();
        assert_eq!(c.max_fragments, 16);
        assert!(Config::try_parse_from(["herald", "--max-fragments", "0"]).is_err());
        assert!(Config::try_parse_from(["herald", "--max-fragments", "-1"]).is_err());
    }

    #[test]
    fn secret_and_public_key_conflict_on_the_command_line() {
        let parsed = Config::try_parse_from([
            "herald",
            "--jwt-secret",
            SECRET,
            "--jwt-public-key",
            "key.pem",
        ]);
        assert!(parsed.is_err());
    }

    #[test]
    fn public_keys_repeat_and_split_at_commas() {
        let c = Config::try_parse_from([
            "herald",
            "--jwt-public-key",
            "a=one.pem",
            "--jwt-public-key",
            "two.pem,b=keys/three.pem",
            "--jwt-jwks",
            "jwks.json",
        ])
        .unwrap();
        let key = |kid: Option<&str>, path: &str| KeyPath {
            kid: kid.map(str::to_owned),
            path: path.into(),
        };
        assert_eq!(
            c.jwt_public_key,
            [
                key(Some("a"), "one.pem"),
                key(None, "two.pem"),
                key(Some("b"), "keys/three.pem")
            ]
        );
        assert_eq!(
            c.jwt_jwks.as_deref(),
            Some(std::path::Path::new("jwks.json"))
        );
        assert!(Config::try_parse_from(["herald", "--jwt-public-key", "=one.pem"]).is_err());
        assert!(
            Config::try_parse_from(["herald", "--jwt-secret", SECRET, "--jwt-jwks", "j.json"])
                .is_err()
        );
    }

    #[test]
    fn keys_of_several_files_load_in_order() {
        let mut c = Config::for_tests();
        c.jwt_public_key = vec![
            KeyPath::parse(&format!("ec={}", fixture("jwt_es256_public.pem").display())).unwrap(),
            fixture("jwt_rs256_public.pem").into(),
        ];
        let keys = c.jwt_keys().unwrap().unwrap();
        let loaded = keys.verifier().keys();
        let summary: Vec<_> = loaded
            .keys()
            .iter()
            .map(|k| (k.algorithm(), k.kid()))
            .collect();
        assert_eq!(
            summary,
            [
                (jsonwebtoken::Algorithm::ES256, Some("ec")),
                (jsonwebtoken::Algorithm::RS256, None)
            ]
        );
    }

    #[test]
    fn secret_and_public_key_refused() {
        let mut c = Config::for_tests();
        c.jwt_secret = Some(SECRET.to_owned());
        c.jwt_public_key = vec![fixture("jwt_rs256_public.pem").into()];
        assert!(matches!(
            c.verifier(),
            Err(auth::ConfigError::SecretAndPublicKey)
        ));
    }

    #[test]
    fn short_secret_refused() {
        let mut c = Config::for_tests();
        c.jwt_secret = Some("short".to_owned());
        assert!(matches!(
            c.verifier(),
            Err(auth::ConfigError::SecretTooShort { len: 5, min: 32 })
        ));
    }

    #[test]
    fn public_keys_load() {
        for (file, alg) in [
            ("jwt_rs256_public.pem", jsonwebtoken::Algorithm::RS256),
            ("jwt_es256_public.pem", jsonwebtoken::Algorithm::ES256),
        ] {
            let mut c = Config::for_tests();
            c.jwt_public_key = vec![fixture(file).into()];
            assert_eq!(c.verifier().unwrap().unwrap().algorithm(), alg, "{file}");
        }
    }

    #[test]
    fn unreadable_or_invalid_public_key_refused() {
        let mut c = Config::for_tests();
        c.jwt_public_key = vec![fixture("no-such-key.pem").into()];
        assert!(matches!(
            c.verifier(),
            Err(auth::ConfigError::ReadPublicKey { .. })
        ));
        c.jwt_public_key = vec![fixture("README.md").into()];
        assert!(matches!(c.verifier(), Err(auth::ConfigError::InvalidPem)));
    }

    #[test]
    fn empty_api_key_matches_nothing() {
        let mut c = Config::for_tests();
        c.api_key = vec![String::new()];
        assert!(!c.api_keys().unwrap().matches(Some(b"Bearer ")));
    }

    #[test]
    fn api_keys_repeat_or_separate_with_commas() {
        let c =
            Config::try_parse_from(["herald", "--api-key", "k1,k2", "--api-key", "k3"]).unwrap();
        assert_eq!(c.api_key, ["k1", "k2", "k3"]);
        let keys = c.api_keys().unwrap();
        for k in ["k1", "k2", "k3"] {
            assert!(keys.matches(Some(format!("Bearer {k}").as_bytes())), "{k}");
        }
        assert!(!keys.matches(Some(b"Bearer k1,k2")));
        // Blank locks the API rather than opening it.
        let c = Config::try_parse_from(["herald", "--api-key", ""]).unwrap();
        assert!(!c.api_keys().unwrap().matches(Some(b"Bearer ")));
    }

    #[test]
    fn auth_failure_limits_default_and_switch_off() {
        let c = Config::parse_from(["herald"]);
        assert_eq!(c.control_auth_failures, 10);
        assert_eq!(c.control_auth_window, Duration::from_secs(60));
        assert_eq!(c.control_auth_max_addresses, 10_000);
        assert_eq!(Config::for_tests().control_auth_failures, 0);
        let c = Config::try_parse_from(["herald", "--control-auth-failures", "0"]).unwrap();
        assert_eq!(c.control_auth_failures, 0);
        for (flag, value) in [
            ("--control-auth-window", "0s"),
            ("--control-auth-max-addresses", "0"),
        ] {
            let e = Config::try_parse_from(["herald", flag, value]).unwrap_err();
            assert!(e.to_string().contains(flag), "{flag}: {e}");
        }
    }

    #[test]
    fn origin_lists_take_exact_origins_patterns_and_any() {
        let c = Config::try_parse_from([
            "herald",
            "--cors-origins",
            "https://*.example.com,http://localhost:3000",
            "--allowed-origins",
            "*",
        ])
        .unwrap();
        let cors = c.cors_origins().unwrap();
        assert!(cors.allows(b"https://a.example.com"));
        assert!(!cors.allows(b"https://example.com"));
        assert!(c.allowed_origins().unwrap().is_any());
        assert!(Config::for_tests().cors_origins().unwrap().is_empty());
    }

    #[test]
    fn a_bad_origin_is_refused_naming_it_and_its_flag() {
        for flag in ["--cors-origins", "--allowed-origins"] {
            let e =
                Config::try_parse_from(["herald", flag, "https://ok.example,https://app.example/"])
                    .unwrap_err()
                    .to_string();
            assert!(
                e.contains(flag) && e.contains("https://app.example/"),
                "{e}"
            );
        }
        let mut c = Config::for_tests();
        c.cors_origins = vec!["*".into(), "https://a.example".into()];
        assert_eq!(c.cors_origins(), Err(OriginError::AnyAmongOthers));
    }

    /// `--ping-interval 0s` was accepted and pinged a client 276 times in 3 s; every timer and
    /// every size where 0 means nothing useful is now refused at start, naming its flag.
    #[test]
    fn zero_timers_and_sizes_refused_naming_the_flag() {
        for flag in [
            "--connect-timeout",
            "--handshake-timeout",
            "--ping-interval",
            "--ping-timeout",
            "--close-timeout",
            "--auth-timeout",
        ] {
            for value in ["0s", "0ms", "2d"] {
                let e = Config::try_parse_from(["herald", flag, value]).unwrap_err();
                assert!(e.to_string().contains(flag), "{flag} {value}: {e}");
            }
            assert!(
                Config::try_parse_from(["herald", flag, "250ms"]).is_ok(),
                "{flag}"
            );
        }
        for flag in [
            "--max-payload",
            "--max-message",
            "--max-handshake",
            "--max-queued-bytes",
            "--max-subscriptions",
            "--control-max-body",
            "--control-max-connections",
            "--user-burst",
            "--client-burst",
        ] {
            let e = Config::try_parse_from(["herald", flag, "0"]).unwrap_err();
            assert!(e.to_string().contains(flag), "{flag}: {e}");
            assert!(
                Config::try_parse_from(["herald", flag, "1"]).is_ok(),
                "{flag}"
            );
        }
    }

    #[test]
    fn zero_means_off_where_documented() {
        let c = Config::try_parse_from([
            "herald",
            "--shutdown-timeout",
            "0s",
            "--control-idle-timeout",
            "0s",
            "--jwt-leeway",
            "0s",
            "--max-attachments",
            "0",
            "--deflate-threshold",
            "0",
            "--user-rate",
            "0",
            "--client-rate",
            "0",
            "--max-connections",
            "0",
            "--max-connections-per-ip",
            "0",
            "--connection-rate-per-ip",
            "0",
        ])
        .unwrap();
        assert_eq!(c.shutdown_timeout, Duration::ZERO);
        assert!(Config::try_parse_from(["herald", "--shutdown-timeout", "25h"]).is_err());
    }

    #[test]
    fn the_limit_defaults_are_the_flags_defaults() {
        let c = Config::parse_from(["herald"]);
        assert_eq!(LimitSettings::from(&c), LimitSettings::default());
        assert_eq!(Limits::from(&c), Limits::default());
        let off = Config::parse_from([
            "herald",
            "--user-rate=0",
            "--client-rate=0",
            "--max-connections=0",
            "--max-connections-per-ip=0",
            "--connection-rate-per-ip=0",
        ]);
        let off = Limits::from(&off);
        assert_eq!((off.user, off.client), (None, None));
        assert_eq!(
            (off.ip.max_total, off.ip.max_per_ip, off.ip.rate_per_ip),
            (None, None, None)
        );
    }

    #[test]
    fn proxies_are_off_by_default() {
        let c = Config::try_parse_from(["herald"]).unwrap();
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.proxy_header, ForwardHeader::XForwardedFor);
        assert!(!c.proxy_protocol);
        assert_eq!(c.proxy(), Ok(proxy::Settings::default()));
        assert_eq!(Config::for_tests().proxy(), Ok(proxy::Settings::default()));
    }

    #[test]
    fn proxy_flags_parse() {
        let c = Config::try_parse_args([
            "herald",
            "--trusted-proxies",
            " private, 203.0.113.7,2001:db8::/32 ",
            "--proxy-header",
            "forwarded",
            "--proxy-protocol",
            "true",
        ])
        .unwrap();
        let settings = c.proxy().unwrap();
        assert!(settings.proxy_protocol);
        assert_eq!(settings.real_ip.header, ForwardHeader::Forwarded);
        assert_eq!(settings.real_ip.header_name(), "forwarded");
        assert_eq!(
            settings.real_ip.trusted,
            "private,203.0.113.7/32,2001:db8::/32".parse().unwrap()
        );
        for trusted in ["10.1.2.3", "::1", "203.0.113.7", "2001:db8:ffff::1"] {
            assert!(settings.admits(trusted.parse().unwrap()), "{trusted}");
        }
        assert!(!settings.admits("203.0.113.8".parse().unwrap()));
        let c = Config::try_parse_from(["herald", "--proxy-header", "x-forwarded-for"]).unwrap();
        assert_eq!(c.proxy_header, ForwardHeader::XForwardedFor);
    }

    #[test]
    fn bad_trusted_proxies_are_refused_naming_the_entry() {
        for (value, named) in [
            ("10.0.0.0/8,proxy.example", "proxy.example"),
            ("10.0.0.0/33", "10.0.0.0/33"),
            ("10.0.0.1/8", "10.0.0.0/8"),
        ] {
            let e = Config::try_parse_args(["herald", "--trusted-proxies", value]).unwrap_err();
            let e = e.to_string();
            assert!(
                e.contains(named) && e.contains("--trusted-proxies"),
                "{value}: {e}"
            );
        }
        let e = Config::try_parse_from(["herald", "--proxy-header", "x-real-ip"]).unwrap_err();
        assert!(e.to_string().contains("x-forwarded-for"), "{e}");
        let e = Config::try_parse_from(["herald", "--proxy-protocol", "yes please"]).unwrap_err();
        assert!(e.to_string().contains("--proxy-protocol"), "{e}");
    }

    /// With no proxy trusted, `--proxy-protocol` would refuse every connection: herald refuses
    /// to start instead, naming both flags.
    #[test]
    fn proxy_protocol_without_trusted_proxies_is_refused_at_start() {
        let e = Config::try_parse_args(["herald", "--proxy-protocol", "true"]).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("--proxy-protocol") && e.contains("--trusted-proxies"),
            "{e}"
        );
        let e = Config::try_parse_args([
            "herald",
            "--proxy-protocol",
            "true",
            "--trusted-proxies",
            " , ",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("--trusted-proxies"), "{e}");
        let c = Config::try_parse_args([
            "herald",
            "--proxy-protocol",
            "true",
            "--trusted-proxies",
            "10.0.0.5",
        ])
        .unwrap();
        assert!(c.proxy().unwrap().proxy_protocol);
    }

    /// `--listen localhost:7050` was refused as "invalid socket address syntax".
    #[test]
    fn listen_and_control_take_host_names() {
        let c = Config::try_parse_from([
            "herald",
            "--listen",
            "localhost:7050",
            "--control",
            "localhost:7051",
        ])
        .unwrap();
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 7050)));
        assert_eq!(c.control, SocketAddr::from(([127, 0, 0, 1], 7051)));
        let e = Config::try_parse_from(["herald", "--listen", "localhost"]).unwrap_err();
        assert!(e.to_string().contains("HOST:PORT"), "{e}");
    }

    /// A bad `HERALD_MAX_MESSAGE` was reported as a bad `--max-message`, a flag the operator
    /// never typed. (The variable itself is set in `tests/startup.rs`, on the binary: setting
    /// it here would race the other tests' parsing.)
    #[test]
    fn a_bad_value_not_on_the_command_line_names_its_variable_and_flag() {
        let e = Config::try_parse_from(["herald", "--max-message", "abc"]).unwrap_err();
        let named = name_env_twin(e, &["herald".into()]).to_string();
        assert!(
            named.contains("HERALD_MAX_MESSAGE") && named.contains("--max-message"),
            "{named}"
        );
        let e = Config::try_parse_args(["herald", "--max-message", "abc"]).unwrap_err();
        assert!(!e.to_string().contains("HERALD_MAX_MESSAGE"), "{e}");
        let e =
            Config::try_parse_from(["herald", "--trusted-proxies", "10.0.0.0/8,x"]).unwrap_err();
        let named = name_env_twin(e, &["herald".into()]).to_string();
        assert!(
            named.contains("HERALD_TRUSTED_PROXIES") && named.contains("`x`"),
            "{named}"
        );
    }
}
