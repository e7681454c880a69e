//! Socket.IO v5 codec, server side, doing no I/O.
//!
//! It decodes the packets a client sends inside Engine.IO message packets ([`decode`]: connect,
//! disconnect, events and acknowledgements, each checked as the reference parser checks them),
//! puts a binary event back together from the binary messages that follow it ([`Reassembler`]),
//! and encodes what the server sends ([`encode_connect`], [`encode_connect_error`],
//! [`encode_event`], [`encode_ack`], [`encode_disconnect`]), without Engine.IO's leading `4`. It
//! does not track which namespaces a client joined, pending acknowledgements, or timeouts; the
//! server does, and every [`Error`] closes the connection. Only the default text parser is
//! spoken (not msgpack), and the server encodes to the main namespace only.

pub mod binary;
pub mod error;
pub mod packet;

pub use binary::{Reassembled, Reassembler};
pub use error::Error;
pub use packet::{
    decode, encode_ack, encode_connect, encode_connect_error, encode_disconnect, encode_event,
    Packet, PacketType, MAIN_NAMESPACE,
};
