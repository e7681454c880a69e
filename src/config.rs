//! Every address, limit and timer herald has, with its default, its flag and its `HERALD_*`
//! environment twin. `herald --help` prints this table.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::limits;

/// herald: a real-time notification gateway.
///
/// Clients hold a WebSocket (`ws://HOST:5000/ws`) and subscribe to user ids with
/// `{"event":"subscribe","data":"<userId>"}`; services push notifications over the HTTP control
/// API (`POST http://127.0.0.1:5001/v1/users/<userId>/notifications`), and every socket
/// subscribed to that user receives them. Durations take units: `500ms`, `10s`, `2m`.
#[derive(Parser, Debug, Clone)]
#[command(name = "herald", version, about, long_about)]
pub struct Config {
    /// Address of the public WebSocket listener.
    #[arg(long, env = "HERALD_LISTEN", default_value = "0.0.0.0:5000")]
    pub listen: SocketAddr,

    /// Address of the HTTP control API. Keep it on loopback: it has no authentication yet.
    #[arg(long, env = "HERALD_CONTROL", default_value = "127.0.0.1:5001")]
    pub control: SocketAddr,

    /// Path of the raw JSON WebSocket endpoint.
    #[arg(long, env = "HERALD_WS_PATH", default_value = "/ws")]
    pub ws_path: String,

    /// Path of the Socket.IO (Engine.IO v4) endpoint, for socket.io-client front ends.
    #[arg(long, env = "HERALD_SOCKETIO_PATH", default_value = "/socket.io/")]
    pub socketio_path: String,

    /// Origins allowed to use Socket.IO's HTTP long-polling from a browser, comma-separated
    /// (`https://app.example.com,http://localhost:3000`), exact scheme://host:port. A request whose
    /// `Origin` is listed gets it back in `Access-Control-Allow-Origin` (credentials allowed); any
    /// other gets no CORS headers, so browsers refuse cross-origin polling. Empty: same-origin
    /// pages and non-browser clients only. WebSocket connections are not subject to CORS.
    #[arg(long, env = "HERALD_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Engine.IO `maxPayload`: the largest polling request body and Socket.IO WebSocket message
    /// a client may send, in bytes.
    #[arg(long, env = "HERALD_MAX_PAYLOAD", default_value_t = 1_000_000)]
    pub max_payload: usize,

    /// A Socket.IO client that has not connected to a namespace this long after its Engine.IO
    /// session opened is closed.
    #[arg(long, env = "HERALD_CONNECT_TIMEOUT", default_value = "45s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// Most binary attachments one Socket.IO packet may announce.
    #[arg(long, env = "HERALD_MAX_ATTACHMENTS", default_value_t = 10)]
    pub max_attachments: usize,

    /// Largest WebSocket message a client may send, in bytes, summed over its fragments.
    /// A larger one is refused from its frame header and closed with 1009.
    #[arg(long, env = "HERALD_MAX_MESSAGE", default_value_t = 64 * 1024)]
    pub max_message: usize,

    /// Largest HTTP request head (request line and headers) of a WebSocket handshake, in bytes.
    /// A larger one is answered 431.
    #[arg(long, env = "HERALD_MAX_HANDSHAKE", default_value_t = 8 * 1024)]
    pub max_handshake: usize,

    /// A connection that has not completed its WebSocket handshake (or, for HTTP long-polling,
    /// sent its next request) by then is closed.
    #[arg(long, env = "HERALD_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// A connection silent for this long is sent a ping. Also the Engine.IO `pingInterval`:
    /// how often Socket.IO sessions are pinged.
    #[arg(long, env = "HERALD_PING_INTERVAL", default_value = "25s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,

    /// A connection that sends nothing (no pong, no message) this long after a ping is closed.
    /// Also the Engine.IO `pingTimeout`.
    #[arg(long, env = "HERALD_PING_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub ping_timeout: Duration,

    /// After herald sends a close frame, how long it waits for the client to finish the close
    /// handshake before it drops the TCP connection.
    #[arg(long, env = "HERALD_CLOSE_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
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

    /// How many user ids one connection may subscribe to.
    #[arg(long, env = "HERALD_MAX_SUBSCRIPTIONS", default_value_t = 16)]
    pub max_subscriptions: usize,

    /// On SIGINT/SIGTERM, how long herald waits for clients to acknowledge close 1001 and for
    /// queued bytes to drain before it exits anyway.
    #[arg(long, env = "HERALD_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Largest control API request body, in bytes; a larger one is answered 413.
    #[arg(long, env = "HERALD_CONTROL_MAX_BODY", default_value_t = 1024 * 1024)]
    pub control_max_body: usize,

    /// How many control API connections are served at once (a thread each); more are answered 503.
    #[arg(long, env = "HERALD_CONTROL_MAX_CONNECTIONS", default_value_t = 256)]
    pub control_max_connections: usize,

    /// A keep-alive control API connection idle this long is closed.
    #[arg(long, env = "HERALD_CONTROL_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub control_idle_timeout: Duration,

    /// Notifications per second one user id may be pushed, sustained; pushes beyond it are
    /// answered 429 with `Retry-After`. 0: no limit.
    #[arg(long, env = "HERALD_USER_RATE", default_value_t = limits::DEFAULT_USER_RATE)]
    pub user_rate: u32,

    /// Notifications one user id may be pushed in a burst, before `--user-rate` paces them.
    #[arg(long, env = "HERALD_USER_BURST", default_value_t = limits::DEFAULT_USER_BURST)]
    pub user_burst: u32,

    /// Messages per second one client connection may send, sustained, pings included. 0: no
    /// limit.
    #[arg(long, env = "HERALD_CLIENT_RATE", default_value_t = limits::DEFAULT_CLIENT_RATE)]
    pub client_rate: u32,

    /// Messages one client connection may send in a burst, before `--client-rate` paces them:
    /// enough to subscribe `--max-subscriptions` user ids right after connecting.
    #[arg(long, env = "HERALD_CLIENT_BURST", default_value_t = limits::DEFAULT_CLIENT_BURST)]
    pub client_burst: u32,

    /// Client connections open at once; more are answered 503. The process's open-file limit
    /// may be lower. 0: no limit.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", default_value_t = limits::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

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
}

impl Config {
    /// The defaults, as `herald` with no flags would run, except that both listeners take
    /// ephemeral loopback ports: what tests and embedders start from.
    pub fn for_tests() -> Self {
        let mut c = Config::parse_from(["herald"]);
        c.listen = ([127, 0, 0, 1], 0).into();
        c.control = ([127, 0, 0, 1], 0).into();
        c
    }
}
