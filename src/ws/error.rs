//! The faults a peer's frames can commit, one variant each.
//!
//! Which close code answers which fault is decided in one place only:
//! `impl From<&Error> for CloseCode` in [`super::close`].

use std::fmt;

/// A frame-level or message-level protocol violation found while decoding client bytes.
///
/// Every variant is fatal: RFC 6455 asks the server to _Fail the WebSocket Connection_.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A client frame arrived without a masking key.
    UnmaskedFrame,
    /// An RSV bit was set that no negotiated extension gives a meaning to.
    ReservedBits,
    /// An opcode RFC 6455 reserves (0x3-0x7, 0xB-0xF).
    UnknownOpcode(u8),
    /// A control frame declared more than 125 bytes of payload.
    ControlFrameTooLong,
    /// A control frame arrived with FIN clear.
    FragmentedControlFrame,
    /// A continuation frame arrived while no fragmented message was in progress.
    UnexpectedContinuation,
    /// A new text or binary frame arrived while a fragmented message was still in progress.
    ExpectedContinuation,
    /// A 64-bit payload length had its most significant bit set.
    LengthTopBit,
    /// The message (the sum of its fragments' declared lengths) would exceed the limit.
    MessageTooLong {
        /// Bytes the message would hold once the offending frame is in.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// A data message spans more frames (its first one plus continuations) than the limit.
    TooManyFragments {
        /// The configured limit.
        max: u32,
    },
    /// A compressed message would inflate past the limit.
    InflatedTooLong {
        /// The configured limit.
        max: u64,
    },
    /// A compressed message is not valid DEFLATE data.
    BadCompressedData,
    /// RSV1, permessage-deflate's "compressed" bit, on a control frame or a continuation.
    MisplacedCompressedBit,
    /// A text message is not valid UTF-8.
    InvalidUtf8,
    /// A close frame carried a one-byte payload, too short for a status code.
    BadClosePayload,
    /// A close frame carried a status code that may not appear on the wire.
    InvalidCloseCode(u16),
    /// A close frame's reason is not valid UTF-8.
    InvalidCloseReason,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnmaskedFrame => f.write_str("client frame is not masked"),
            Error::ReservedBits => f.write_str("reserved bits set without a negotiated extension"),
            Error::UnknownOpcode(op) => write!(f, "unknown opcode {op:#x}"),
            Error::ControlFrameTooLong => {
                f.write_str("control frame payload longer than 125 bytes")
            }
            Error::FragmentedControlFrame => f.write_str("control frame is fragmented"),
            Error::UnexpectedContinuation => {
                f.write_str("continuation frame without a message in progress")
            }
            Error::ExpectedContinuation => {
                f.write_str("new data frame while a fragmented message is in progress")
            }
            Error::LengthTopBit => f.write_str("64-bit payload length has its top bit set"),
            Error::MessageTooLong { size, max } => {
                write!(f, "message of {size} bytes exceeds the limit of {max}")
            }
            Error::TooManyFragments { max } => {
                write!(f, "message spans more than {max} frames")
            }
            Error::InflatedTooLong { max } => {
                write!(f, "decompressed message exceeds the limit of {max} bytes")
            }
            Error::BadCompressedData => f.write_str("compressed message is not valid DEFLATE data"),
            Error::MisplacedCompressedBit => {
                f.write_str("compressed bit set on a control frame or a continuation")
            }
            Error::InvalidUtf8 => f.write_str("text message is not valid UTF-8"),
            Error::BadClosePayload => f.write_str("close frame payload of one byte"),
            Error::InvalidCloseCode(code) => {
                write!(f, "close code {code} is not valid on the wire")
            }
            Error::InvalidCloseReason => f.write_str("close reason is not valid UTF-8"),
        }
    }
}

impl std::error::Error for Error {}
