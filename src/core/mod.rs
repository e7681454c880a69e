//! The sans-IO core of a worker: everything a worker decides, from plain values. No socket, no
//! poll, no clock: bytes read, pushes and `now` go in; bytes to write per connection, sockets
//! to close, connections to hand to another worker and the next deadline come out. The runtime
//! around it ([`crate::server`]) only polls, reads, writes and wakes.
//!
//! - [`worker`]: a worker's state ([`worker::State`]): its connections and sessions in one slab,
//!   its rooms and compressor, HTTP routing, the raw protocol, fan-out, slow consumers.
//! - `engine`: Engine.IO sessions (long-polling, WebSocket, the upgrade) and Socket.IO events.
//! - [`timers`]: the sweep that fires handshake, ping, close, connect and token deadlines and
//!   names the earliest one left.
//! - [`conn`]: one connection's phase and write queue; [`session`]: an Engine.IO session.
//! - `polling`: the public port's plain HTTP answers (polling, CORS, Engine.IO errors);
//!   `health`: `/healthz` and `/readyz`.
//! - [`commands`]: subscribe, unsubscribe, auth and refresh, once for both protocols: each
//!   protocol decodes its wire form into a [`commands::ClientCommand`] and encodes what
//!   [`commands::handle`] hands back in its own.
//! - [`identity`]: who a client is when JWT auth is on, what that lets it subscribe to, and when
//!   its standing runs out.

pub mod commands;
pub mod conn;
#[doc(hidden)]
pub mod driver;
mod engine;
mod health;
pub mod identity;
mod polling;
pub mod session;
pub mod timers;
pub mod worker;

#[cfg(test)]
mod tests;
