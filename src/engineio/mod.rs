//! Engine.IO v4 codec, server side, doing no I/O.
//!
//! It decodes and encodes Engine.IO packets ([`Packet`]: one per WebSocket frame, text or
//! binary), splits and joins the 0x1E-separated payloads of HTTP long-polling
//! ([`decode_payload`], [`encode_payload`]), writes the open packet ([`open_packet`]), reads the
//! `EIO`/`transport`/`sid` query of every request ([`parse_query`]), and decides the HTTP status
//! and JSON body answering each fault ([`Error`]). It keeps no sessions, runs no ping timers and
//! touches no sockets or clocks: the server owns those, and the Socket.IO layer
//! ([`crate::socketio`]) reads what travels inside message packets. JSONP polling and the v3
//! protocol (`EIO=3`) are not spoken.

pub mod error;
pub mod handshake;
pub mod packet;

pub use error::{Error, PacketFault};
pub use handshake::{open_packet, parse_query, OpenParams, Query, Transport};
pub use packet::{
    decode_binary, decode_payload, decode_text, encode_payload, encode_text, Data, Packet,
    RECORD_SEPARATOR,
};
