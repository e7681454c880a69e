//! The handshake: the query every Engine.IO request carries, and the open packet answering a
//! new session.

use serde_json::json;

use crate::engineio::error::Error;

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
        let slot = match percent_decode(key).as_str() {
            "EIO" => &mut eio,
            "transport" => &mut transport,
            "sid" => &mut sid,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(percent_decode(value));
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

/// Decodes `%XX` escapes and `+` (a space in form encoding, as Node's `querystring` reads it).
///
/// A malformed escape is kept literally and invalid UTF-8 becomes U+FFFD, as `querystring` does:
/// a bad value then fails the checks that read it instead of the whole request.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                    std::str::from_utf8(h)
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                });
                // `from_str_radix` accepts a sign, which an escape never has.
                let signed = bytes.get(i + 1).is_some_and(|b| matches!(b, b'+' | b'-'));
                match hex {
                    Some(byte) if !signed => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
