//! herald: a real-time notification gateway.
//!
//! Browsers and apps hold a WebSocket to herald and subscribe to user ids; backend services push
//! notifications over an HTTP control API, and every socket subscribed to the user gets each one.
//!
//! The data path is one straight line, and the modules follow it:
//!
//! ```text
//! bytes ─▶ ws::Decoder ─▶ ws::Event ─▶ protocol::raw ─▶ subscribe / unsubscribe ─▶ rooms
//! control HTTP ─▶ Command ─▶ router (buckets, directory) ─▶ channel + Waker per worker ─▶ rooms ─▶ one shared frame ─▶ sockets
//! ```
//!
//! - [`ws`]: RFC 6455 codec: opening handshake, frame decoder and encoder, close codes. No I/O.
//! - [`engineio`]: Engine.IO v4 codec: packets, polling payloads, handshake, HTTP errors. No I/O.
//! - [`socketio`]: Socket.IO v5 codec: packets in Engine.IO messages, attachments. No I/O.
//! - [`protocol`]: the application protocols spoken over a WebSocket (the raw `{"event","data"}`
//!   envelope). No I/O.
//! - [`proxy`]: the client's real address behind proxies: trusted proxies, the
//!   `X-Forwarded-For`/`Forwarded` walk, the PROXY protocol v1 and v2 decoder. No I/O.
//! - [`auth`]: JWT verification (keys chosen by `kid`, JWK Sets), token extraction (header,
//!   query, Socket.IO auth) and the control API key check. No I/O, no clock: the caller passes
//!   the time in.
//! - [`jwt_keys`]: the JWT keys' files (`--jwt-public-key`, `--jwt-jwks`), read at start and
//!   again on a reload.
//! - [`core`]: the sans-IO core of a worker: connections and sessions as state machines, HTTP
//!   routing, both protocols' client commands (once), rooms' fan-out, every timer. No socket,
//!   no clock: bytes and `now` in, bytes to write and the next deadline out.
//! - [`rooms`]: user ids interned to room indices, membership kept both ways.
//! - [`fanout`]: a push serialized and framed once, shared by every recipient.
//! - [`command`]: the values the control API sends to the event loop.
//! - [`http`]: the HTTP/1.1 bits both ports share: the one response-head writer and the one
//!   percent-decoder; and the origin lists (`*`, exact, `https://*.example.com`) CORS and
//!   `--allowed-origins` match. No I/O.
//! - [`control`]: the HTTP/1.1 control API, on its own threads.
//! - [`router`]: where control requests meet the workers: push buckets, the directory of which
//!   worker holds which user, answers gathered from several workers.
//! - [`cluster`]: with `--redis`, a node of a cluster: the log in a Redis Stream, pushes routed
//!   only to the nodes holding their users, presence, the Socket.IO emitter's messages; its Redis
//!   I/O on threads of its own, meeting the workers through the router.
//! - [`server`]: the runtime: one thin mio loop per core around that core's state; it owns the
//!   sockets and only polls, reads, writes and wakes. Its `reload` reads the reloadable parts
//!   of the configuration again (SIGHUP).
//! - [`limits`]: token buckets, per-user push limits and per-address connection caps, as plain
//!   counters. No I/O.
//! - [`metrics`]: the workers' counters and their Prometheus rendering.
//! - [`log_limit`]: warnings a peer can cause, at most a few lines a second of each kind.
//! - [`config`]: every limit and address, with its default.

#![forbid(unsafe_code)]

pub mod auth;
pub mod cluster;
pub mod command;
pub mod config;
pub mod control;
pub mod core;
pub mod engineio;
pub mod fanout;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod jwt_keys;
pub mod limits;
pub mod log_limit;
pub mod metrics;
pub mod protocol;
pub mod proxy;
pub mod rooms;
pub mod router;
pub mod server;
pub mod socketio;
pub mod time;
pub mod ws;
