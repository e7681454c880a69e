//! The HTTP/1.1 bits both ports share: the one response writer ([`response`]) and the one
//! percent-decoder ([`percent`]).
//!
//! Only what is the same on the public port and the control API lives here. Parsing requests,
//! routing, deciding a status or a header's value belong to the callers (`ws::handshake`,
//! `core::polling`, `control::http`); this module does no I/O and depends on no other module of
//! the crate, so every codec may use it.

pub mod percent;
pub mod response;

pub use percent::{percent_decode, PercentError, Plus};
pub use response::ResponseHead;
