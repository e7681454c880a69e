//! The faults an Engine.IO request or packet can commit, and the one place deciding the HTTP
//! answer to each: [`Error::status`], [`Error::code`] and [`Error::http_body`].

use std::fmt;

use serde_json::json;

/// Why a request or a packet was refused.
///
/// The first six variants are the reference server's own error codes 0-5 (engine.io
/// `Server.errors`); the codec returns some of them from [`super::parse_query`] and the server
/// builds the others itself (`UnknownSid`, `BadHandshakeMethod`, `Forbidden`,
/// `PayloadTooLarge`). [`Error::InvalidPacket`] closes the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `transport` is missing or names a transport this server does not offer.
    UnknownTransport,
    /// `sid` names no live session.
    UnknownSid,
    /// A handshake (a request without `sid`) that is not a `GET`.
    BadHandshakeMethod,
    /// The request is malformed: a missing or non-numeric `EIO`, a transport mismatch, a second
    /// concurrent `GET` or `POST`.
    BadRequest,
    /// The application refused the connection.
    Forbidden,
    /// `EIO` is a number other than 4 (Engine.IO v3 clients send `EIO=3`).
    UnsupportedProtocolVersion,
    /// A polling `POST` body longer than the `maxPayload` announced in the open packet.
    PayloadTooLarge {
        /// Bytes the body holds (or declares in `Content-Length`).
        len: u64,
        /// The announced `maxPayload`.
        max: u64,
    },
    /// A packet that cannot be decoded.
    InvalidPacket(PacketFault),
}

/// What is wrong with an undecodable packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketFault {
    /// No packet type at all: an empty frame, body or payload segment.
    Empty,
    /// A first character that is not one of the packet types `0`-`6`.
    UnknownType(char),
    /// A `b`-prefixed payload segment that is not valid base64.
    BadBase64,
}

impl Error {
    /// The HTTP status answering this fault.
    ///
    /// engine.io `abortRequest`: 403 for `FORBIDDEN`, 400 for every other code; the polling
    /// transport answers an oversized body with 413.
    pub fn status(&self) -> u16 {
        match self {
            Error::Forbidden => 403,
            Error::PayloadTooLarge { .. } => 413,
            Error::UnknownTransport
            | Error::UnknownSid
            | Error::BadHandshakeMethod
            | Error::BadRequest
            | Error::UnsupportedProtocolVersion
            | Error::InvalidPacket(_) => 400,
        }
    }

    /// The reference server's error code (engine.io `Server.errors`), or `None` for the faults it
    /// has no code for.
    pub fn code(&self) -> Option<u8> {
        match self {
            Error::UnknownTransport => Some(0),
            Error::UnknownSid => Some(1),
            Error::BadHandshakeMethod => Some(2),
            Error::BadRequest => Some(3),
            Error::Forbidden => Some(4),
            Error::UnsupportedProtocolVersion => Some(5),
            Error::PayloadTooLarge { .. } | Error::InvalidPacket(_) => None,
        }
    }

    /// The JSON body of the error response, `{"code":<n>,"message":"..."}`.
    ///
    /// The messages are engine.io's `Server.errorMessages`, so clients that show them read the
    /// same text as against the reference server. Faults without a reference code are bad
    /// requests and carry code 3, so every body has the same shape.
    pub fn http_body(&self) -> String {
        let message = match self {
            Error::UnknownTransport => "Transport unknown".to_owned(),
            Error::UnknownSid => "Session ID unknown".to_owned(),
            Error::BadHandshakeMethod => "Bad handshake method".to_owned(),
            Error::BadRequest => "Bad request".to_owned(),
            Error::Forbidden => "Forbidden".to_owned(),
            // Keeps the reference message as a prefix, and tells a v3 client's developer what to
            // upgrade to.
            Error::UnsupportedProtocolVersion => {
                "Unsupported protocol version: herald speaks Engine.IO v4 (EIO=4) only".to_owned()
            }
            Error::PayloadTooLarge { len, max } => {
                format!("Payload too large: {len} bytes exceeds the limit of {max}")
            }
            Error::InvalidPacket(fault) => format!("Bad request: {fault}"),
        };
        json!({"code": self.code().unwrap_or(3), "message": message}).to_string()
    }
}

impl fmt::Display for PacketFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketFault::Empty => f.write_str("empty packet"),
            PacketFault::UnknownType(c) => write!(f, "unknown packet type {c:?}"),
            PacketFault::BadBase64 => f.write_str("binary packet is not valid base64"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownTransport => f.write_str("unknown transport"),
            Error::UnknownSid => f.write_str("unknown session id"),
            Error::BadHandshakeMethod => f.write_str("handshake is not a GET request"),
            Error::BadRequest => f.write_str("bad request"),
            Error::Forbidden => f.write_str("connection refused by the application"),
            Error::UnsupportedProtocolVersion => {
                f.write_str("unsupported protocol version: only EIO=4 is spoken")
            }
            Error::PayloadTooLarge { len, max } => {
                write!(f, "payload of {len} bytes exceeds the limit of {max}")
            }
            Error::InvalidPacket(fault) => write!(f, "invalid packet: {fault}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! answers {
        ($($name:ident: $err:expr => $status:expr, $code:expr, $body:expr;)*) => {$(
            #[test]
            fn $name() {
                let err = $err;
                assert_eq!(err.status(), $status);
                assert_eq!(err.code(), $code);
                assert_eq!(err.http_body(), $body);
            }
        )*};
    }

    answers! {
        unknown_transport: Error::UnknownTransport
            => 400, Some(0), r#"{"code":0,"message":"Transport unknown"}"#;
        unknown_sid: Error::UnknownSid
            => 400, Some(1), r#"{"code":1,"message":"Session ID unknown"}"#;
        bad_handshake_method: Error::BadHandshakeMethod
            => 400, Some(2), r#"{"code":2,"message":"Bad handshake method"}"#;
        bad_request: Error::BadRequest
            => 400, Some(3), r#"{"code":3,"message":"Bad request"}"#;
        forbidden: Error::Forbidden
            => 403, Some(4), r#"{"code":4,"message":"Forbidden"}"#;
        unsupported_version: Error::UnsupportedProtocolVersion
            => 400, Some(5),
            r#"{"code":5,"message":"Unsupported protocol version: herald speaks Engine.IO v4 (EIO=4) only"}"#;
        payload_too_large: Error::PayloadTooLarge { len: 2_000_000, max: 1_000_000 }
            => 413, None,
            r#"{"code":3,"message":"Payload too large: 2000000 bytes exceeds the limit of 1000000"}"#;
        invalid_packet: Error::InvalidPacket(PacketFault::UnknownType('9'))
            => 400, None, r#"{"code":3,"message":"Bad request: unknown packet type '9'"}"#;
    }

    #[test]
    fn display_names_the_fault() {
        assert_eq!(
            Error::InvalidPacket(PacketFault::BadBase64).to_string(),
            "invalid packet: binary packet is not valid base64"
        );
        assert_eq!(
            Error::PayloadTooLarge { len: 2, max: 1 }.to_string(),
            "payload of 2 bytes exceeds the limit of 1"
        );
    }
}
