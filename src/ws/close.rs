//! Close status codes (RFC 6455 §7.4) and the one mapping from decoder faults to them.

use crate::ws::error::Error;

/// A close status code as carried in the first two bytes of a Close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: Self = CloseCode(0x03E8);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = CloseCode(0x03E9);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = CloseCode(0x03EA);
    /// 1003: the endpoint cannot accept this type of data.
    pub const UNSUPPORTED_DATA: Self = CloseCode(0x03EB);
    /// 1005: no status code was present. Never sent on the wire.
    pub const NO_STATUS: Self = CloseCode(0x03ED);
    /// 1006: the connection dropped without a Close frame. Never sent on the wire.
    pub const ABNORMAL: Self = CloseCode(0x03EE);
    /// 1007: a message's data was inconsistent with its type (non-UTF-8 text).
    pub const INVALID_PAYLOAD: Self = CloseCode(0x03EF);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY: Self = CloseCode(0x03F0);
    /// 1009: a message was too big to process.
    pub const TOO_BIG: Self = CloseCode(0x03F1);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: Self = CloseCode(0x03F3);
    /// 1012 (IANA registry): the service is restarting; the client may reconnect.
    pub const SERVICE_RESTART: Self = CloseCode(0x03F4);
    /// 4008, herald's own (4000-4999 are for applications): the client read too slowly and too
    /// much waited for it; it should reconnect.
    pub const SLOW_CONSUMER: Self = CloseCode(0x0FA8);
    /// 4001, herald's own: no valid token within `--auth-timeout`, or a message before one
    /// (echoing HTTP 401).
    pub const UNAUTHORIZED: Self = CloseCode(0x0FA1);
    /// 4003, herald's own: the token expired and no fresh one came (echoing HTTP 403).
    pub const TOKEN_EXPIRED: Self = CloseCode(0x0FA3);

    /// Whether this code may appear in a Close frame.
    ///
    /// 1000-1003 and 1007-1014 are defined or registered with IANA; 3000-4999 belong to libraries
    /// and applications. 1004 is reserved, and 1005/1006/1015 are only ever reported locally.
    pub fn is_valid_on_wire(self) -> bool {
        // RFC 6455 §7.4.1: 1005, 1006 and 1015 MUST NOT be set as a status code in a Close control
        // frame by an endpoint; §7.4.2: 0-999 are not used and 1000-2999 are reserved for the
        // protocol and its extensions.
        matches!(self.0, 0x03E8..=0x03EB | 0x03EF..=0x03F6 | 0x0BB8..=0x1387)
    }
}

impl From<&Error> for CloseCode {
    /// The one place deciding how each decoder fault is answered on the wire.
    ///
    /// Every variant is listed, so a new fault cannot slip through with a default answer.
    fn from(err: &Error) -> Self {
        match err {
            Error::UnmaskedFrame
            | Error::ReservedBits
            | Error::UnknownOpcode(_)
            | Error::ControlFrameTooLong
            | Error::FragmentedControlFrame
            | Error::UnexpectedContinuation
            | Error::ExpectedContinuation
            | Error::LengthTopBit
            | Error::BadClosePayload
            | Error::InvalidCloseCode(_)
            | Error::InvalidCloseReason
            | Error::MisplacedCompressedBit => CloseCode::PROTOCOL_ERROR,
            // RFC 6455 §8.1: invalid UTF-8 in a text message is answered with 1007; data that
            // does not inflate is likewise "data within a message that was not consistent with
            // the type of the message" (§7.4.1).
            Error::InvalidUtf8 | Error::BadCompressedData => CloseCode::INVALID_PAYLOAD,
            // RFC 6455 §7.4.1: "1009 indicates that an endpoint is terminating the connection
            // because it has received a message that is too big for it to process." Too many
            // fragments is too big in frames rather than bytes: the same answer, so a client
            // library reports both alike.
            Error::MessageTooLong { .. }
            | Error::InflatedTooLong { .. }
            | Error::TooManyFragments { .. } => CloseCode::TOO_BIG,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_rfc_numbers() {
        assert_eq!(CloseCode::NORMAL.0, 1000);
        assert_eq!(CloseCode::GOING_AWAY.0, 1001);
        assert_eq!(CloseCode::PROTOCOL_ERROR.0, 1002);
        assert_eq!(CloseCode::UNSUPPORTED_DATA.0, 1003);
        assert_eq!(CloseCode::NO_STATUS.0, 1005);
        assert_eq!(CloseCode::ABNORMAL.0, 1006);
        assert_eq!(CloseCode::INVALID_PAYLOAD.0, 1007);
        assert_eq!(CloseCode::POLICY.0, 1008);
        assert_eq!(CloseCode::TOO_BIG.0, 1009);
        assert_eq!(CloseCode::INTERNAL_ERROR.0, 1011);
    }

    #[test]
    fn validity_on_wire() {
        let valid = [
            1000, 1001, 1002, 1003, 1007, 1010, 1011, 1014, 3000, 4000, 4999,
        ];
        let invalid = [
            0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 0xFFFF,
        ];
        for code in valid {
            assert!(CloseCode(code).is_valid_on_wire(), "{code}");
        }
        for code in invalid {
            assert!(!CloseCode(code).is_valid_on_wire(), "{code}");
        }
    }

    #[test]
    fn error_mapping() {
        assert_eq!(
            CloseCode::from(&Error::UnmaskedFrame),
            CloseCode::PROTOCOL_ERROR
        );
        assert_eq!(
            CloseCode::from(&Error::InvalidUtf8),
            CloseCode::INVALID_PAYLOAD
        );
        let too_long = Error::MessageTooLong { size: 2, max: 1 };
        assert_eq!(CloseCode::from(&too_long), CloseCode::TOO_BIG);
        let too_many = Error::TooManyFragments { max: 1024 };
        assert_eq!(CloseCode::from(&too_many), CloseCode::TOO_BIG);
        assert_eq!(
            CloseCode::from(&Error::InvalidCloseReason),
            CloseCode::PROTOCOL_ERROR
        );
    }
}
