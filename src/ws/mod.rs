//! RFC 6455 WebSocket codec, server side, doing no I/O.
//!
//! It parses an HTTP/1.1 request head and validates the opening handshake ([`handshake`]), reads
//! client frames into whole messages and control events ([`Decoder`]), encodes the server's
//! unmasked frames ([`frame`]), and decides the close code answering each fault ([`CloseCode`]).
//! It agrees and runs permessage-deflate ([`deflate`], RFC 7692). It never touches a socket or
//! a clock: callers pass bytes in and get bytes and events out. It does not choose subprotocols,
//! does not route paths, and does not handle the closing handshake's timing; those belong to the
//! server loop.

pub mod close;
pub mod decoder;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;

pub use close::CloseCode;
pub use decoder::{Decoder, Event};
pub use error::Error;
pub use frame::{opcode, FrameHeader};
pub use handshake::{Handshake, HandshakeError, Request};
