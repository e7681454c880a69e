//! herald: a real-time notification gateway.
//!
//! Browsers and apps hold a WebSocket to herald and subscribe to user ids; backend services push
//! notifications over an HTTP control API, and every socket subscribed to the user gets each one.
//!
//! The data path is one straight line, and the modules follow it:
//!
//! ```text
//! bytes ─▶ ws::Decoder ─▶ ws::Event ─▶ protocol::raw ─▶ subscribe / unsubscribe ─▶ rooms
//! control HTTP ─▶ Command ─▶ crossbeam channel + mio Waker ─▶ server loop ─▶ rooms ─▶ one shared frame ─▶ sockets
//! ```
//!
//! - [`ws`]: RFC 6455 codec: opening handshake, frame decoder and encoder, close codes. No I/O.
//! - [`engineio`]: Engine.IO v4 codec: packets, polling payloads, handshake, HTTP errors. No I/O.
//! - [`socketio`]: Socket.IO v5 codec: packets in Engine.IO messages, attachments. No I/O.
//! - [`protocol`]: the application protocols spoken over a WebSocket (the raw `{"event","data"}`
//!   envelope). No I/O.
//! - [`auth`]: JWT verification, token extraction (header, query, Socket.IO auth) and the
//!   control API key check. No I/O, no clock: the caller passes the time in.
//! - [`core`]: the sans-IO core of a worker: a client's identity, and its commands (subscribe,
//!   unsubscribe, auth, refresh) carried out once for both protocols. No I/O, no clock.
//! - [`rooms`]: user ids interned to room indices, membership kept both ways.
//! - [`fanout`]: a push serialized and framed once, shared by every recipient.
//! - [`command`]: the values the control API sends to the event loop.
//! - [`control`]: the HTTP/1.1 control API, on its own threads.
//! - [`server`]: the mio event loop that owns every connection.
//! - [`limits`]: token buckets, per-user push limits and per-address connection caps, as plain
//!   counters. No I/O.
//! - [`config`]: every limit and address, with its default.

pub mod auth;
pub mod command;
pub mod config;
pub mod control;
pub mod core;
pub mod engineio;
pub mod fanout;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod protocol;
pub mod rooms;
pub mod server;
pub mod socketio;
pub mod time;
pub mod ws;
