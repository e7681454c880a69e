//! Application protocols spoken over an open WebSocket. No I/O: each takes a client message and
//! says what the client asked for, and builds the server's replies as JSON text for the caller to
//! frame.
//!
//! - [`raw`]: the `{"event":"...","data":...}` envelope at `/ws` (the one NestJS's `ws` adapter
//!   uses).

pub mod raw;
