//! The sans-IO core of a worker: what a client may do and what its standing is, decided from
//! plain values. No I/O, no clock: `now` is passed in.
//!
//! - [`commands`]: subscribe, unsubscribe, auth and refresh, once for both protocols: each
//!   protocol decodes its wire form into a [`commands::ClientCommand`] and encodes what
//!   [`commands::handle`] hands back in its own.
//! - [`identity`]: who a client is when JWT auth is on, what that lets it subscribe to, and when
//!   its standing runs out.
//!
//! It never touches a socket, a slab entry or a metric, and never encodes a wire answer: the
//! event loop owns those.

pub mod commands;
pub mod identity;
