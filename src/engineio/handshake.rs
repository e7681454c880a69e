//! The handshake: the query every Engine.IO request carries, and the open packet answering a
//! new session.

use serde_json::json;

use crate::engineio::error::Error;
use crate::http::{percent_decode, Plus};

/// What the server announces in the open packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenParams<'a> {
    /// The new session's id; the client sends it back as `sid` on every later request.
    pub sid: &'a str,
    /// Transports the client may upgrade to: `["websocket"]` on a polling session, `[]` on a
    /// WebSocket one.
    pub upgrades: &'a [&'a str],
    /// How often the server pings.
    pub ping_interval_ms: u64,
    /// How long the server waits for the pong.
    pub ping_timeout_ms: u64,
    /// The most bytes a polling `POST` body may hold; the client batches packets under it.
    pub max_payload: u64,
}

/// The open packet: `0{"sid":...,"upgrades":[...],"pingInterval":...,"pingTimeout":...,
/// "maxPayload":...}`, keys in the spec's order.
///
/// engine.io-protocol v4, "Handshake": "If the server accepts the connection, then it MUST
/// respond with an `open` packet with the following JSON-encoded payload".
pub fn open_packet(p: &OpenParams) -> String {
    // serde_json is built with `preserve_order`, so the keys stay in the order written here.
    let handshake = json!({
        "sid": p.sid,
        "upgrades": p.upgrades,
        "pingInterval": p.ping_interval_ms,
        "pingTimeout": p.ping_timeout_ms,
        "maxPayload": p.max_payload,
    });
    format!("0{handshake}")
}

/// The transport a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP long-polling: `GET` receives, `POST` sends.
    Polling,
    /// One WebSocket connection.
    WebSocket,
}

/// What the query string of an Engine.IO request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub transport: Transport,
    /// The session id; `None` on a handshake (an empty `sid=` counts as absent, as in the
    /// reference server's `if (sid)`).
    pub sid: Option<String>,
}

/// Parses the query string of a handshake or session request
/// (`EIO=4&transport=polling&t=Nxyz&sid=...`), percent-decoding values.
///
/// Checks in the reference server's order: the transport first (engine.io `verify`), then the
/// protocol version (engine.io `handshake`). Unknown keys, such as the cache-busting `t`, are
/// ignored; a repeated key counts once, first value wins.
pub fn parse_query(query: Option<&str>) -> Result<Query, Error> {
    let mut eio = None;
    let mut transport = None;
    let mut sid = None;
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match decode(key).as_str() {
            "EIO" => &mut eio,
            "transport" => &mut transport,
            "sid" => &mut sid,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(decode(value));
        }
    }

    let transport = match transport.as_deref() {
        Some("polling") => Transport::Polling,
        Some("websocket") => Transport::WebSocket,
        _ => return Err(Error::UnknownTransport),
    };

    // engine.io-protocol v4, "Query parameters": `EIO` is "Mandatory, the version of the
    // protocol", and "If a mandatory query parameter is missing, then the server MUST respond
    // with an HTTP 400 error status."
    match eio.as_deref() {
        Some("4") => {}
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(Error::UnsupportedProtocolVersion)
        }
        _ => return Err(Error::BadRequest),
    }

    Ok(Query {
        transport,
        sid: sid.filter(|s| !s.is_empty()),
    })
}

/// Decodes a query key or value: `%XX` escapes, and `+` as a space (form encoding, as Node's
/// `querystring` reads it).
///
/// A value with a malformed escape or escapes that are not UTF-8 is kept as sent (`+` still read
/// as a space): it then fails the check that reads it (an unknown transport, a bad `EIO`, an
/// unknown `sid`) instead of the whole request, as with the reference server's `querystring`.
/// Such a value always keeps a `%`, which no transport, version or session id holds.
fn decode(s: &str) -> String {
    percent_decode(s, Plus::Space).unwrap_or_else(|_| s.replace('+', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_packet_is_the_spec_example() {
        let p = OpenParams {
            sid: "lv_VI97HAXpY6yYWAAAC",
            upgrades: &["websocket"],
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            max_payload: 1_000_000,
        };
        assert_eq!(
            open_packet(&p),
            r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
    }

    #[test]
    fn open_packet_without_upgrades_escapes_the_sid() {
        let p = OpenParams {
            sid: "a\"b",
            upgrades: &[],
            ping_interval_ms: 300,
            ping_timeout_ms: 200,
            max_payload: 1,
        };
        assert_eq!(
            open_packet(&p),
            r#"0{"sid":"a\"b","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1}"#
        );
    }

    fn query(transport: Transport, sid: Option<&str>) -> Result<Query, Error> {
        Ok(Query {
            transport,
            sid: sid.map(str::to_owned),
        })
    }

    macro_rules! queries {
        ($($name:ident: $q:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(parse_query($q), $want);
            }
        )*};
    }

    queries! {
        polling_handshake: Some("EIO=4&transport=polling&t=N8hyd6w")
            => query(Transport::Polling, None);
        websocket_handshake: Some("EIO=4&transport=websocket")
            => query(Transport::WebSocket, None);
        polling_with_sid: Some("EIO=4&transport=polling&t=N8hyd6w&sid=lv_VI97HAXpY6yYWAAAC")
            => query(Transport::Polling, Some("lv_VI97HAXpY6yYWAAAC"));
        upgrade_with_sid: Some("sid=abc&transport=websocket&EIO=4")
            => query(Transport::WebSocket, Some("abc"));
        percent_encoded_sid: Some("EIO=4&transport=polling&sid=a%2Fb%3D%3D")
            => query(Transport::Polling, Some("a/b=="));
        percent_encoded_key: Some("EIO=4&%74ransport=polling")
            => query(Transport::Polling, None);
        plus_is_space: Some("EIO=4&transport=polling&sid=a+b")
            => query(Transport::Polling, Some("a b"));
        malformed_escape_kept: Some("EIO=4&transport=polling&sid=a%zz%4")
            => query(Transport::Polling, Some("a%zz%4"));
        signed_escape_kept: Some("EIO=4&transport=polling&sid=%+1")
            => query(Transport::Polling, Some("% 1"));
        escape_not_utf8_kept: Some("EIO=4&transport=polling&sid=a%FF")
            => query(Transport::Polling, Some("a%FF"));
        bad_escape_in_transport_is_unknown: Some("EIO=4&transport=polling%zz")
            => Err(Error::UnknownTransport);
        bad_escape_in_eio_is_bad_request: Some("EIO=4%zz&transport=polling")
            => Err(Error::BadRequest);
        not_utf8_eio_is_bad_request: Some("EIO=%FF&transport=polling")
            => Err(Error::BadRequest);
        empty_sid_is_handshake: Some("EIO=4&transport=polling&sid=")
            => query(Transport::Polling, None);
        first_value_wins: Some("EIO=4&transport=polling&transport=flash")
            => query(Transport::Polling, None);
        no_query: None => Err(Error::UnknownTransport);
        empty_query: Some("") => Err(Error::UnknownTransport);
        missing_transport: Some("EIO=4") => Err(Error::UnknownTransport);
        unknown_transport: Some("EIO=4&transport=flash") => Err(Error::UnknownTransport);
        transport_case_matters: Some("EIO=4&transport=Polling") => Err(Error::UnknownTransport);
        transport_checked_before_version: Some("EIO=3&transport=flash")
            => Err(Error::UnknownTransport);
        missing_eio: Some("transport=polling") => Err(Error::BadRequest);
        empty_eio: Some("EIO=&transport=polling") => Err(Error::BadRequest);
        eio_not_a_number: Some("EIO=four&transport=polling") => Err(Error::BadRequest);
        eio_3: Some("EIO=3&transport=polling") => Err(Error::UnsupportedProtocolVersion);
        eio_5: Some("EIO=5&transport=websocket") => Err(Error::UnsupportedProtocolVersion);
        eio_04: Some("EIO=04&transport=polling") => Err(Error::UnsupportedProtocolVersion);
    }
}
