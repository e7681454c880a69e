//! The opening handshake (RFC 6455 §4.2): request head parsing, upgrade validation, responses.
//!
//! Split in two steps because the same port also serves plain HTTP: [`parse_request`] reads any
//! HTTP/1.1 request head, and [`validate_upgrade`] decides whether it is a WebSocket upgrade.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::http::ResponseHead;
use crate::limits::{self, IpRefusal};
use crate::ws::deflate;

/// The most header lines a request head may carry; more is answered with 431.
pub const MAX_HEADERS: usize = 64;

/// RFC 6455 §1.3: the GUID appended to the client's key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Headers that RFC 7230 §3.2.2 lets a client repeat as a comma-separated list, and that the
/// handshake reads as one list.
const LIST_HEADERS: [&str; 4] = [
    "connection",
    "upgrade",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
];

/// A parsed HTTP/1.x request head, owning its data so the read buffer can be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method token, as sent (methods are case-sensitive).
    pub method: String,
    /// The request target up to, not including, the first `?`.
    pub path: String,
    /// What follows the first `?`, if there is one.
    pub query: Option<String>,
    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// Header names as sent and raw values, in order. Repeated list headers (`Connection`,
    /// `Upgrade`, `Sec-WebSocket-Extensions`, `Sec-WebSocket-Protocol`) are joined into the
    /// first occurrence with `", "`; other repeats are kept as separate entries.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    /// The value of the first header named `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The values of every header line named `name`, compared case-insensitively, in the order
    /// they were sent: what a header that proxies append to line by line (`X-Forwarded-For`,
    /// `Forwarded`) is read from, since its repeats are kept as separate entries.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// How many header lines named `name` the request kept (after joining list headers).
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

/// Parses an HTTP/1.x request head from the start of `buf`.
///
/// Returns the request and the length of its head (the body, if any, starts there), or
/// `Ok(None)` when the head is incomplete and `buf` is still within `max_head` bytes.
pub fn parse_request(
    buf: &[u8],
    max_head: usize,
) -> Result<Option<(Request, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    // Never look past `max_head`: a head that is not complete within it is too large, and the
    // work per call stays bounded however much a client sends.
    let window = &buf[..buf.len().min(max_head)];
    let head_len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max_head => {
            return Err(HandshakeError::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeadersTooLarge),
        Err(e) => return Err(HandshakeError::Malformed(e)),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        // A complete parse always fills these; treat anything else as malformed, not a panic.
        return Err(HandshakeError::Malformed(httparse::Error::Token));
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.to_owned(), None),
    };
    let mut kept: Vec<(String, Vec<u8>)> = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let is_list = LIST_HEADERS.iter().any(|l| l.eq_ignore_ascii_case(h.name));
        let earlier = kept
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(h.name));
        match earlier {
            Some((_, value)) if is_list => {
                value.extend_from_slice(b", ");
                value.extend_from_slice(h.value);
            }
            _ => kept.push((h.name.to_owned(), h.value.to_vec())),
        }
    }
    let request = Request {
        method: method.to_owned(),
        path,
        query,
        version,
        headers: kept,
    };
    Ok(Some((request, head_len)))
}

/// A request that passed every check of RFC 6455 §4.2.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The request path, without the query; routing it is the caller's job.
    pub path: String,
    /// The query string, without the `?`.
    pub query: Option<String>,
    /// The client's `Sec-WebSocket-Key`, trimmed; known to decode to 16 bytes.
    pub key: String,
    /// The `Origin` header (non-UTF-8 bytes replaced, so it can never match an allow-list).
    pub origin: Option<String>,
    /// The raw `Sec-WebSocket-Protocol` list, repeats joined.
    pub protocols: Option<String>,
    /// The raw `Sec-WebSocket-Extensions` list, repeats joined.
    pub extensions: Option<String>,
}

/// Checks that `req` is a WebSocket opening handshake this server can accept.
pub fn validate_upgrade(req: &Request) -> Result<Handshake, HandshakeError> {
    // RFC 6455 §4.2.1: the server MUST stop processing a handshake that does not match the
    // description and return an HTTP error code (such as 400 Bad Request). Item 1: "An HTTP/1.1
    // or higher GET request".
    if req.method != "GET" {
        return Err(HandshakeError::NotGet);
    }
    if req.version < 1 {
        return Err(HandshakeError::NotHttp11);
    }
    // RFC 6455 §4.2.1 item 2: "A |Host| header field containing the server's authority."
    if req.header("host").is_none() {
        return Err(HandshakeError::MissingHost);
    }
    // RFC 6455 §4.2.1 item 3: "An |Upgrade| header field containing the value "websocket",
    // treated as an ASCII case-insensitive value."
    if !has_token(req.header("upgrade"), b"websocket") {
        return Err(HandshakeError::MissingUpgrade);
    }
    // RFC 6455 §4.2.1 item 4: "A |Connection| header field that includes the token "Upgrade",
    // treated as an ASCII case-insensitive value."
    if !has_token(req.header("connection"), b"upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    // RFC 6455 §11.3.1: the |Sec-WebSocket-Key| header field MUST NOT appear more than once in
    // an HTTP request.
    if req.header_count("sec-websocket-key") > 1 {
        return Err(HandshakeError::DuplicateKey);
    }
    // RFC 6455 §4.2.1 item 5: "A |Sec-WebSocket-Key| header field with a base64-encoded value
    // that, when decoded, is 16 bytes in length."
    let key = req
        .header("sec-websocket-key")
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
        .filter(|k| matches!(BASE64.decode(k), Ok(nonce) if nonce.len() == 16))
        .ok_or(HandshakeError::BadKey)?;
    // RFC 6455 §11.3.5: the |Sec-WebSocket-Version| header field MUST NOT appear more than once
    // in an HTTP request.
    if req.header_count("sec-websocket-version") > 1 {
        return Err(HandshakeError::DuplicateVersion);
    }
    // RFC 6455 §4.2.1 item 6: "A |Sec-WebSocket-Version| header field, with a value of 13."
    match req.header("sec-websocket-version").map(<[u8]>::trim_ascii) {
        Some(b"13") => {}
        Some(_) => return Err(HandshakeError::UnsupportedVersion),
        None => return Err(HandshakeError::MissingVersion),
    }
    let text = |name: &str| {
        req.header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    Ok(Handshake {
        path: req.path.clone(),
        query: req.query.clone(),
        key: key.to_owned(),
        origin: text("origin"),
        protocols: text("sec-websocket-protocol"),
        extensions: text("sec-websocket-extensions"),
    })
}

/// Whether a comma-separated header value lists `token`, ASCII case-insensitively.
fn has_token(value: Option<&[u8]>, token: &[u8]) -> bool {
    value.is_some_and(|v| {
        v.split(|&b| b == b',')
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
    })
}

/// The `Sec-WebSocket-Accept` value for a client key (RFC 6455 §4.2.2 item 5.4).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID);
    BASE64.encode(sha.finalize())
}

/// What the server agreed to on a handshake beyond the upgrade itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Agreement {
    /// permessage-deflate, when the client offered it acceptably and the server compresses.
    pub deflate: Option<deflate::Agreed>,
    /// The subprotocol chosen from the client's `Sec-WebSocket-Protocol` list.
    pub protocol: Option<&'static str>,
}

/// Writes the `101 Switching Protocols` response accepting `hs` with no extension or
/// subprotocol.
pub fn write_accept(hs: &Handshake, out: &mut Vec<u8>) {
    write_accept_with(hs, &Agreement::default(), out);
}

/// Writes the `101 Switching Protocols` response accepting `hs` with what `agreed` says.
pub fn write_accept_with(hs: &Handshake, agreed: &Agreement, out: &mut Vec<u8>) {
    let mut head = ResponseHead::new(out, 101);
    head.header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Accept", accept_key(&hs.key));
    if let Some(protocol) = agreed.protocol {
        // RFC 6455 §4.2.2 item 5.4: the |Sec-WebSocket-Protocol| field, if present, holds "the
        // value [...] of the subprotocol the server has selected" from the client's list.
        head.header("Sec-WebSocket-Protocol", protocol);
    }
    if let Some(deflate) = &agreed.deflate {
        head.header("Sec-WebSocket-Extensions", deflate.response_value());
    }
    head.end();
}

/// Writes the error response for `err`: its status, a JSON body naming the fault, and
/// `Connection: close`.
pub fn write_error(err: &HandshakeError, out: &mut Vec<u8>) {
    let status = err.status();
    // Serializing a JSON string value cannot fail, and this escapes whatever the message holds.
    let message = serde_json::Value::String(err.to_string());
    let body = format!("{{\"error\":{message}}}");
    let mut head = ResponseHead::new(out, status);
    head.header("Content-Type", "application/json")
        .content_length(body.len())
        .connection(false);
    if status == 426 {
        // RFC 6455 §4.2.2: on a version it does not understand the server MUST send "an
        // appropriate HTTP error code (such as 426 Upgrade Required) and a
        // |Sec-WebSocket-Version| header field indicating the version(s) the server is capable
        // of understanding."
        head.header("Sec-WebSocket-Version", "13");
    }
    if status == 401 {
        // RFC 9110 §11.6.1: a 401 response MUST send a WWW-Authenticate header field.
        head.header("WWW-Authenticate", "Bearer");
    }
    if let HandshakeError::Refused(refusal) = err {
        if let Some(wait) = refusal.retry_after() {
            head.header("Retry-After", limits::retry_after_secs(wait));
        }
    }
    head.body(body.as_bytes());
}

/// Why a request head was refused; [`HandshakeError::status`] decides the HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The head exceeds the size limit or carries more than [`MAX_HEADERS`] header lines.
    HeadersTooLarge,
    /// The head is not valid HTTP/1.x.
    Malformed(httparse::Error),
    /// The method is not GET.
    NotGet,
    /// The request is HTTP/1.0.
    NotHttp11,
    /// No route serves the path; decided by the caller's router.
    NotFound,
    /// No `Host` header.
    MissingHost,
    /// No `Upgrade` header listing `websocket`.
    MissingUpgrade,
    /// No `Connection` header listing `upgrade`.
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Key` is missing or does not decode to 16 bytes.
    BadKey,
    /// `Sec-WebSocket-Key` appears more than once.
    DuplicateKey,
    /// `Sec-WebSocket-Version` appears more than once.
    DuplicateVersion,
    /// No `Sec-WebSocket-Version` header.
    MissingVersion,
    /// A `Sec-WebSocket-Version` other than 13.
    UnsupportedVersion,
    /// The application refuses what the request asks for (a subprotocol or parameter it cannot
    /// serve); the message says what.
    Unacceptable(String),
    /// The request carries a token that does not verify; the message is what the client may
    /// know ("unauthorized" or "token expired").
    Unauthorized(&'static str),
    /// A browser's `Origin` is not in `--allowed-origins`.
    OriginNotAllowed,
    /// Too many connections, in total or from this address, or too fast from it; answered as
    /// soon as the connection is accepted.
    Refused(IpRefusal),
}

impl HandshakeError {
    /// The HTTP status answering this fault: the one place deciding it.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeadersTooLarge => 431,
            HandshakeError::Malformed(_)
            | HandshakeError::NotGet
            | HandshakeError::NotHttp11
            | HandshakeError::MissingHost
            | HandshakeError::MissingUpgrade
            | HandshakeError::MissingConnectionUpgrade
            | HandshakeError::BadKey
            | HandshakeError::DuplicateKey
            | HandshakeError::DuplicateVersion
            | HandshakeError::Unacceptable(_) => 400,
            HandshakeError::Unauthorized(_) => 401,
            HandshakeError::OriginNotAllowed => 403,
            HandshakeError::NotFound => 404,
            HandshakeError::MissingVersion | HandshakeError::UnsupportedVersion => 426,
            HandshakeError::Refused(refusal) => refusal.status(),
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::HeadersTooLarge => f.write_str("request headers too large"),
            HandshakeError::Malformed(e) => write!(f, "malformed request: {e}"),
            HandshakeError::NotGet => f.write_str("websocket upgrade must use GET"),
            HandshakeError::NotHttp11 => f.write_str("websocket upgrade requires HTTP/1.1"),
            HandshakeError::NotFound => f.write_str("not found"),
            HandshakeError::MissingHost => f.write_str("missing Host header"),
            HandshakeError::MissingUpgrade => f.write_str("missing Upgrade: websocket header"),
            HandshakeError::MissingConnectionUpgrade => {
                f.write_str("missing Connection: Upgrade header")
            }
            HandshakeError::BadKey => f.write_str("Sec-WebSocket-Key must be base64 of 16 bytes"),
            HandshakeError::DuplicateKey => f.write_str("Sec-WebSocket-Key sent more than once"),
            HandshakeError::DuplicateVersion => {
                f.write_str("Sec-WebSocket-Version sent more than once")
            }
            HandshakeError::MissingVersion => f.write_str("missing Sec-WebSocket-Version header"),
            HandshakeError::UnsupportedVersion => {
                f.write_str("unsupported Sec-WebSocket-Version, only 13 is supported")
            }
            HandshakeError::Unacceptable(why) => f.write_str(why),
            HandshakeError::Unauthorized(why) => f.write_str(why),
            HandshakeError::OriginNotAllowed => f.write_str("origin not allowed"),
            HandshakeError::Refused(refusal) => write!(f, "{refusal}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_HEAD: usize = 8192;

    const GOOD: &[u8] = b"GET /ws?user=42 HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn parse(buf: &[u8]) -> Request {
        match parse_request(buf, MAX_HEAD) {
            Ok(Some((req, n))) => {
                assert_eq!(n, buf.len());
                req
            }
            other => panic!("expected a request, got {other:?}"),
        }
    }

    // RFC 6455 §1.3: the worked example of the accept key.
    #[test]
    fn rfc_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn accept_key_agrees_with_tungstenite() {
        for key in ["dGhlIHNhbXBsZSBub25jZQ==", "AQIDBAUGBwgJCgsMDQ4PEA=="] {
            let reference = tungstenite::handshake::derive_accept_key(key.as_bytes());
            assert_eq!(accept_key(key), reference);
        }
    }

    #[test]
    fn good_request_validates() {
        let req = parse(GOOD);
        assert_eq!((req.method.as_str(), req.version), ("GET", 1));
        let hs = validate_upgrade(&req).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hs.path, "/ws");
        assert_eq!(hs.query.as_deref(), Some("user=42"));
        assert_eq!(hs.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(hs.origin.as_deref(), Some("http://example.com"));
        assert_eq!(hs.protocols.as_deref(), Some("chat, superchat"));
        assert_eq!(hs.extensions, None);
    }

    #[test]
    fn every_prefix_is_incomplete() {
        for end in 0..GOOD.len() {
            assert_eq!(
                parse_request(&GOOD[..end], MAX_HEAD),
                Ok(None),
                "prefix {end}"
            );
        }
    }

    #[test]
    fn head_length_excludes_body() {
        let mut buf = GOOD.to_vec();
        buf.extend_from_slice(b"\x81\x85");
        let (_, n) = parse_request(&buf, MAX_HEAD)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!());
        assert_eq!(n, GOOD.len());
    }

    #[test]
    fn size_limits() {
        // Complete, but the head is longer than the limit.
        let limit = GOOD.len() - 1;
        assert_eq!(
            parse_request(GOOD, limit),
            Err(HandshakeError::HeadersTooLarge)
        );
        // Exactly at the limit is fine.
        assert!(matches!(parse_request(GOOD, GOOD.len()), Ok(Some(_))));
        // Incomplete and already longer than the limit.
        let partial = &GOOD[..40];
        assert_eq!(
            parse_request(partial, 39),
            Err(HandshakeError::HeadersTooLarge)
        );
        assert_eq!(parse_request(partial, 40), Ok(None));
        // Too many header lines.
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_request(&many, MAX_HEAD),
            Err(HandshakeError::HeadersTooLarge)
        );
    }

    #[test]
    fn malformed_is_400() {
        let err = parse_request(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", MAX_HEAD);
        assert!(matches!(err, Err(HandshakeError::Malformed(_))), "{err:?}");
        assert_eq!(
            parse_request(b"\x00\x01 / HTTP/1.1\r\n\r\n", MAX_HEAD).map_err(|e| e.status()),
            Err(400)
        );
    }

    #[test]
    fn repeated_list_headers_are_joined() {
        let req = parse(
            b"GET / HTTP/1.1\r\nHost: h\r\nconnection: keep-alive\r\nConnection: Upgrade\r\n\
              Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: a\r\n\
              sec-websocket-extensions: b; x=1\r\nX-Other: 1\r\nX-Other: 2\r\n\r\n",
        );
        assert_eq!(req.header("CONNECTION"), Some(&b"keep-alive, Upgrade"[..]));
        assert_eq!(req.header_count("x-other"), 2);
        assert_eq!(req.header("x-other"), Some(&b"1"[..]));
        let others: Vec<&[u8]> = req.headers_named("X-OTHER").collect();
        assert_eq!(others, [&b"1"[..], b"2"]);
        assert_eq!(req.headers_named("x-absent").count(), 0);
        let hs = validate_upgrade(&req).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hs.extensions.as_deref(), Some("a, b; x=1"));
    }

    #[test]
    fn token_lists_are_case_insensitive() {
        let req = parse(
            b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: keep-alive,UPGRADE \r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        assert!(validate_upgrade(&req).is_ok());
    }

    /// Replaces the header line starting with `name` in GOOD (or drops it when `with` is empty),
    /// and swaps the request line when `line` is given.
    fn variant(line: Option<&str>, name: &str, with: &str) -> Vec<u8> {
        let text = String::from_utf8_lossy(GOOD).into_owned();
        let mut out = String::new();
        for (i, l) in text.split_inclusive("\r\n").enumerate() {
            if i == 0 && line.is_some() {
                out.push_str(line.unwrap_or_default());
                out.push_str("\r\n");
            } else if !name.is_empty() && l.starts_with(name) {
                if !with.is_empty() {
                    out.push_str(with);
                    out.push_str("\r\n");
                }
            } else {
                out.push_str(l);
            }
        }
        out.into_bytes()
    }

    macro_rules! refused {
        ($($name:ident: $line:expr, $header:expr, $with:expr => $err:expr, $status:expr;)*) => {$(
            #[test]
            fn $name() {
                let req = parse(&variant($line, $header, $with));
                let err = validate_upgrade(&req).err();
                assert_eq!(err, Some($err));
                assert_eq!($err.status(), $status);
            }
        )*};
    }

    refused! {
        refuse_post: Some("POST /ws HTTP/1.1"), "", "" => HandshakeError::NotGet, 400;
        refuse_http10: Some("GET /ws HTTP/1.0"), "", "" => HandshakeError::NotHttp11, 400;
        refuse_no_host: None, "Host", "" => HandshakeError::MissingHost, 400;
        refuse_no_upgrade: None, "Upgrade", "" => HandshakeError::MissingUpgrade, 400;
        refuse_wrong_upgrade: None, "Upgrade", "Upgrade: h2c" => HandshakeError::MissingUpgrade, 400;
        refuse_no_connection: None, "Connection", "" =>
            HandshakeError::MissingConnectionUpgrade, 400;
        refuse_connection_close: None, "Connection", "Connection: close" =>
            HandshakeError::MissingConnectionUpgrade, 400;
        refuse_no_key: None, "Sec-WebSocket-Key", "" => HandshakeError::BadKey, 400;
        refuse_short_key: None, "Sec-WebSocket-Key", "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4P" =>
            HandshakeError::BadKey, 400;
        refuse_not_base64_key: None, "Sec-WebSocket-Key", "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==" =>
            HandshakeError::BadKey, 400;
        refuse_two_keys: None, "Sec-WebSocket-Key",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" =>
            HandshakeError::DuplicateKey, 400;
        refuse_two_versions: None, "Sec-WebSocket-Version",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13" =>
            HandshakeError::DuplicateVersion, 400;
        refuse_no_version: None, "Sec-WebSocket-Version", "" => HandshakeError::MissingVersion, 426;
        refuse_version_8: None, "Sec-WebSocket-Version", "Sec-WebSocket-Version: 8" =>
            HandshakeError::UnsupportedVersion, 426;
    }

    #[test]
    fn statuses_of_the_other_faults() {
        assert_eq!(HandshakeError::HeadersTooLarge.status(), 431);
        assert_eq!(HandshakeError::NotFound.status(), 404);
        assert_eq!(
            HandshakeError::Malformed(httparse::Error::Token).status(),
            400
        );
    }

    #[test]
    fn accept_response_bytes() {
        let hs = validate_upgrade(&parse(GOOD)).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        write_accept(&hs, &mut out);
        let expected: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn accept_response_with_protocol_and_deflate() {
        let hs = validate_upgrade(&parse(GOOD)).unwrap_or_else(|e| panic!("{e}"));
        let agreed = Agreement {
            deflate: deflate::negotiate("permessage-deflate; client_max_window_bits"),
            protocol: Some("herald.msgpack"),
        };
        let mut out = Vec::new();
        write_accept_with(&hs, &agreed, &mut out);
        let expected: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
            Sec-WebSocket-Protocol: herald.msgpack\r\n\
            Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
            client_no_context_takeover\r\n\r\n";
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(expected)
        );
    }

    #[test]
    fn error_response_bytes() {
        let mut out = Vec::new();
        write_error(&HandshakeError::NotFound, &mut out);
        let expected: &[u8] = b"HTTP/1.1 404 Not Found\r\n\
            Content-Type: application/json\r\n\
            Content-Length: 21\r\n\
            Connection: close\r\n\r\n\
            {\"error\":\"not found\"}";
        assert_eq!(out, expected);

        let mut out = Vec::new();
        write_error(&HandshakeError::UnsupportedVersion, &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(
            json["error"],
            HandshakeError::UnsupportedVersion.to_string()
        );

        let mut out = Vec::new();
        write_error(&HandshakeError::HeadersTooLarge, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(!out.windows(21).any(|w| w == b"Sec-WebSocket-Version"));
    }
}
