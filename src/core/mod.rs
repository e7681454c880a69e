//! The sans-IO core of a worker: what a client may do and what its standing is, decided from
//! plain values. No I/O, no clock: `now` is passed in.
//!
//! - [`identity`]: who a client is when JWT auth is on, what that lets it subscribe to, and when
//!   its standing runs out.
//!
//! It never touches a socket, a slab entry or a metric, and never encodes a wire answer: the
//! event loop owns those.

pub mod identity;
