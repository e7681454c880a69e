//! Application protocols spoken over an open WebSocket. No I/O: each takes a client message and
//! says what the client asked for, and builds the server's replies for the caller to frame.
//!
//! - [`format`](mod@format): the wire format of `/ws`, JSON in text frames or MessagePack in
//!   binary frames, negotiated once from the opening handshake.
//! - [`raw`]: the `{"event":"...","data":...}` envelope at `/ws` (the one NestJS's `ws` adapter
//!   uses), in either format.
//! - [`msgpack`]: JSON text transcoded to MessagePack without building a tree, for notifications.

pub mod format;
pub mod msgpack;
pub mod raw;

/// Cuts `s` to at most `max` bytes at a char boundary, so an error never echoes a huge input.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
