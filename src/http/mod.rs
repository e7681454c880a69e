//! The HTTP/1.1 bits both ports share: the one response writer ([`response`]), the one
//! percent-decoder ([`percent`]), and browser origins and the lists that admit them
//! ([`origin`]).
//!
//! Only what no single endpoint owns lives here: what both ports share, and the origin lists
//! that the WebSocket handshake and Engine.IO polling both read. Parsing requests,
//! routing, deciding a status or a header's value belong to the callers (`ws::handshake`,
//! `core::polling`, `control::http`); this module does no I/O and depends on no other module of
//! the crate, so every codec may use it.

pub mod origin;
pub mod percent;
pub mod response;

pub use origin::{OriginError, Origins};
pub use percent::{percent_decode, PercentError, Plus};
pub use response::ResponseHead;
