//! The wire format of the raw `/ws` protocol, chosen once at the opening handshake: the
//! `{"event","data"}` envelope as JSON in text frames (the default), or MessagePack-encoded in
//! binary frames.
//!
//! A client asks for MessagePack with the subprotocol `herald.msgpack`
//! (`new WebSocket(url, ["herald.msgpack"])`), or with `?format=msgpack` where it cannot set
//! subprotocols. This module reads the two raw strings the caller hands over; it does not parse
//! the request or write the response.

use std::fmt;

use super::truncate;

/// The most bytes of an unknown `format=` value echoed back in the error.
const MAX_ECHOED_VALUE: usize = 32;

/// How the envelope travels on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// UTF-8 JSON in text frames: what every client spoke before formats existed.
    #[default]
    Json,
    /// MessagePack in binary frames.
    MessagePack,
}

impl Format {
    /// The subprotocol that names this format in `Sec-WebSocket-Protocol`.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Format::Json => "herald.json",
            Format::MessagePack => "herald.msgpack",
        }
    }

    /// Whether messages in this format travel in binary frames rather than text frames (RFC 6455
    /// §5.6: a text frame's payload must be UTF-8, which MessagePack is not).
    pub fn is_binary(self) -> bool {
        matches!(self, Format::MessagePack)
    }

    fn from_subprotocol(token: &str) -> Option<Format> {
        [Format::Json, Format::MessagePack]
            .into_iter()
            .find(|f| f.subprotocol() == token)
    }

    fn from_query_value(value: &str) -> Option<Format> {
        match value {
            "json" => Some(Format::Json),
            "msgpack" => Some(Format::MessagePack),
            _ => None,
        }
    }
}

/// The outcome of a handshake's negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub format: Format,
    /// The value for the response's `Sec-WebSocket-Protocol` header; `None` means the response
    /// carries no such header.
    pub subprotocol: Option<&'static str>,
}

/// Why a handshake's format request was refused (answered with HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// `format=` named neither `json` nor `msgpack`; holds the value, cut to 32 bytes.
    UnknownFormat(String),
    /// `format=` disagrees with the chosen subprotocol, or with another `format=`.
    Conflict,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::UnknownFormat(v) => {
                write!(f, "unknown format {v:?}: expected \"json\" or \"msgpack\"")
            }
            FormatError::Conflict => f.write_str(
                "conflicting formats: the format query parameter must agree with the \
                 Sec-WebSocket-Protocol subprotocol and with any other format parameter",
            ),
        }
    }
}

impl std::error::Error for FormatError {}

/// Picks the format from the handshake's raw `Sec-WebSocket-Protocol` value (repeated headers
/// already joined with `,`) and its raw query string (what follows `?`).
///
/// The subprotocol is the first one the client lists that herald knows; `format=json|msgpack`
/// in the query serves clients that cannot set subprotocols and must agree with it when both
/// are given. Neither means JSON, so clients from before formats existed are unchanged.
pub fn negotiate(protocols: Option<&str>, query: Option<&str>) -> Result<Negotiated, FormatError> {
    // RFC 6455 §4.2.2, /subprotocol/: "The value chosen MUST be derived from the client's
    // handshake, specifically by selecting one of the values from the |Sec-WebSocket-Protocol|
    // field that the server is willing to use for this connection (if any)." Tokens are compared
    // byte for byte: the echo is our constant, and §4.1 has the client fail the connection on a
    // subprotocol "that was not present in the client's handshake", so a case-folded match
    // would echo a value the client never sent.
    let chosen = protocols.and_then(|list| {
        list.split(',')
            .map(|token| token.trim_matches([' ', '\t']))
            .find_map(Format::from_subprotocol)
    });
    let asked = query_format(query)?;
    let format = match (chosen, asked) {
        (Some(p), Some(q)) if p != q => return Err(FormatError::Conflict),
        (Some(f), _) | (None, Some(f)) => f,
        (None, None) => Format::Json,
    };
    Ok(Negotiated {
        format,
        // RFC 6455 §4.2.2: "if the server does not wish to agree to one of the suggested
        // subprotocols, it MUST NOT send back a |Sec-WebSocket-Protocol| header field in its
        // response". A client that lists none of ours gets no header, even with `?format=`.
        subprotocol: chosen.map(Format::subprotocol),
    })
}

/// The `format=` parameters of a query string, which must all agree. Keys and values are plain
/// tokens, so nothing is percent-decoded: `format=msg%70ack` is an unknown format.
fn query_format(query: Option<&str>) -> Result<Option<Format>, FormatError> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "format" {
            continue;
        }
        let format = Format::from_query_value(value).ok_or_else(|| {
            FormatError::UnknownFormat(truncate(value, MAX_ECHOED_VALUE).to_owned())
        })?;
        match found {
            Some(earlier) if earlier != format => return Err(FormatError::Conflict),
            _ => found = Some(format),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(format: Format, subprotocol: Option<&'static str>) -> Result<Negotiated, FormatError> {
        Ok(Negotiated {
            format,
            subprotocol,
        })
    }

    fn unknown(value: &str) -> Result<Negotiated, FormatError> {
        Err(FormatError::UnknownFormat(value.to_owned()))
    }

    const JSON: Format = Format::Json;
    const MSGPACK: Format = Format::MessagePack;

    macro_rules! negotiates {
        ($($name:ident: $protocols:expr, $query:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(negotiate($protocols, $query), $want);
            }
        )*};
    }

    negotiates! {
        nothing_is_json: None, None => ok(JSON, None);
        msgpack_subprotocol: Some("herald.msgpack"), None => ok(MSGPACK, Some("herald.msgpack"));
        json_subprotocol: Some("herald.json"), None => ok(JSON, Some("herald.json"));
        first_known_is_chosen: Some("chat, herald.msgpack"), None
            => ok(MSGPACK, Some("herald.msgpack"));
        first_of_two_known: Some("herald.json, herald.msgpack"), None
            => ok(JSON, Some("herald.json"));
        unknown_only_is_json_without_echo: Some("chat, superchat"), None => ok(JSON, None);
        subprotocol_case_matters: Some("Herald.MsgPack"), None => ok(JSON, None);
        subprotocol_prefix_is_not_a_match: Some("herald.msgpackx, herald.msgpack.v2"), None
            => ok(JSON, None);
        spaces_and_tabs_around_tokens: Some("  chat ,\therald.msgpack\t "), None
            => ok(MSGPACK, Some("herald.msgpack"));
        empty_tokens_are_skipped: Some(",, ,herald.json,"), None => ok(JSON, Some("herald.json"));
        empty_header: Some(""), None => ok(JSON, None);
        query_msgpack: None, Some("format=msgpack") => ok(MSGPACK, None);
        query_json: None, Some("format=json") => ok(JSON, None);
        query_among_other_keys: None, Some("x=1&&format=msgpack&flag") => ok(MSGPACK, None);
        similar_keys_ignored: None, Some("formats=msgpack&xformat=msgpack&Format=msgpack")
            => ok(JSON, None);
        query_with_unknown_subprotocols: Some("chat"), Some("format=msgpack") => ok(MSGPACK, None);
        query_unknown: None, Some("format=xml") => unknown("xml");
        query_empty_value: None, Some("format=") => unknown("");
        query_without_value: None, Some("format") => unknown("");
        query_case_matters: None, Some("format=MsgPack") => unknown("MsgPack");
        query_not_percent_decoded: None, Some("format=msg%70ack") => unknown("msg%70ack");
        query_unknown_is_cut: None, Some(&format!("format={}", "x".repeat(100)))
            => unknown(&"x".repeat(32));
        query_unknown_is_cut_at_a_char_boundary: None, Some(&format!("format=a{}", "é".repeat(20)))
            => unknown(&format!("a{}", "é".repeat(15)));
        query_unknown_beats_subprotocol: Some("herald.json"), Some("format=xml") => unknown("xml");
        query_agrees_with_subprotocol: Some("herald.msgpack"), Some("format=msgpack")
            => ok(MSGPACK, Some("herald.msgpack"));
        query_conflicts_with_subprotocol: Some("herald.json"), Some("format=msgpack")
            => Err(FormatError::Conflict);
        query_conflicts_with_msgpack_subprotocol: Some("herald.msgpack"), Some("format=json")
            => Err(FormatError::Conflict);
        query_repeated_same: None, Some("format=msgpack&format=msgpack") => ok(MSGPACK, None);
        query_repeated_different: None, Some("format=json&format=msgpack")
            => Err(FormatError::Conflict);
    }

    #[test]
    fn format_names_and_frames() {
        assert_eq!(Format::default(), Format::Json);
        assert_eq!(Format::Json.subprotocol(), "herald.json");
        assert_eq!(Format::MessagePack.subprotocol(), "herald.msgpack");
        assert!(!Format::Json.is_binary());
        assert!(Format::MessagePack.is_binary());
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            FormatError::UnknownFormat("xml".into()).to_string(),
            r#"unknown format "xml": expected "json" or "msgpack""#
        );
        assert!(FormatError::Conflict
            .to_string()
            .starts_with("conflicting formats"));
    }
}
