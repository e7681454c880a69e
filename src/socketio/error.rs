//! The faults a client's Socket.IO packet can commit, one variant each.

use std::fmt;

/// Why a Socket.IO packet from a client was refused.
///
/// Every variant is fatal: the reference server closes the connection on any decode error
/// (socket.io `Client.onerror`), and so does herald, closing the Engine.IO session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// An empty message: no packet type.
    Empty,
    /// A first character that is not one of the packet types `0`-`6`.
    UnknownType(char),
    /// A CONNECT_ERROR packet, which only a server may send.
    ConnectErrorFromClient,
    /// A BINARY_EVENT or BINARY_ACK without its `<count>-` prefix.
    MissingAttachmentCount,
    /// More attachments announced than the server accepts (a count too large for `usize` is
    /// reported as `usize::MAX`).
    TooManyAttachments { count: usize, max: usize },
    /// An acknowledgement id too large for a `u64`.
    AckIdOverflow,
    /// The payload is not one JSON value (bad JSON, or bytes after it); serde_json's reason.
    InvalidJson(String),
    /// A CONNECT payload that is not an object.
    ConnectPayloadNotObject,
    /// A DISCONNECT packet with a payload.
    UnexpectedPayload,
    /// An EVENT or ACK packet without its payload.
    MissingPayload,
    /// An EVENT or ACK payload that is not an array.
    PayloadNotArray,
    /// An EVENT payload that is an empty array: no event name.
    EmptyEvent,
    /// An EVENT whose first element, the event name, is not a string.
    EventNameNotString,
    /// An EVENT named like one of the events Socket.IO gives its own meaning.
    ReservedEventName(&'static str),
    /// A `{"_placeholder":true}` object whose `num` is missing or not a non-negative integer.
    BadPlaceholder,
    /// A placeholder pointing past the attachments the packet announced.
    PlaceholderOutOfRange { num: u64, attachments: usize },
    /// An attachment no placeholder refers to.
    UnusedAttachment(usize),
    /// A binary message arrived after every announced attachment had.
    UnexpectedAttachment,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Empty => f.write_str("empty packet"),
            Error::UnknownType(c) => write!(f, "unknown packet type {c:?}"),
            Error::ConnectErrorFromClient => {
                f.write_str("CONNECT_ERROR packet from a client (server to client only)")
            }
            Error::MissingAttachmentCount => {
                f.write_str("binary packet without its attachment count")
            }
            Error::TooManyAttachments { count, max } => {
                write!(f, "{count} attachments announced, the limit is {max}")
            }
            Error::AckIdOverflow => f.write_str("acknowledgement id does not fit in 64 bits"),
            Error::InvalidJson(e) => write!(f, "payload is not valid JSON: {e}"),
            Error::ConnectPayloadNotObject => f.write_str("CONNECT payload is not an object"),
            Error::UnexpectedPayload => f.write_str("DISCONNECT packet with a payload"),
            Error::MissingPayload => f.write_str("EVENT or ACK packet without a payload"),
            Error::PayloadNotArray => f.write_str("EVENT or ACK payload is not an array"),
            Error::EmptyEvent => f.write_str("EVENT payload is an empty array"),
            Error::EventNameNotString => f.write_str("event name is not a string"),
            Error::ReservedEventName(name) => write!(f, "event name {name:?} is reserved"),
            Error::BadPlaceholder => f.write_str("placeholder without a valid num"),
            Error::PlaceholderOutOfRange { num, attachments } => write!(
                f,
                "placeholder {num} out of range of {attachments} attachments"
            ),
            Error::UnusedAttachment(num) => {
                write!(f, "attachment {num} is not referred to by any placeholder")
            }
            Error::UnexpectedAttachment => {
                f.write_str("binary message beyond the announced attachments")
            }
        }
    }
}

impl std::error::Error for Error {}
