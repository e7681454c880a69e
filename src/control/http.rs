//! Sans-IO HTTP/1.1 for the control API: [`parse`] turns buffered bytes into a [`Request`], and
//! [`Response::write`] appends a response to a buffer the caller owns. No sockets here.
//!
//! Only what a backend calling a JSON API needs: bodies framed by `Content-Length` (no chunked
//! requests), keep-alive, pipelining. Anything else is refused with a status that says why.

use std::fmt;
use std::time::Duration;

use crate::http::ResponseHead;

/// Largest request head (request line and headers) accepted, in bytes.
pub const MAX_HEAD: usize = 8 * 1024;

/// Most request headers accepted.
pub const MAX_HEADERS: usize = 32;

/// A request method. The control API routes on the few it knows; any other is kept by name so a
/// 405 can still be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other(String),
}

impl Method {
    fn from_token(s: &str) -> Self {
        // RFC 9110 §9.1: the method token is case-sensitive.
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        }
    }

    /// Methods whose requests carry a body, and so must say how long it is.
    fn has_body(&self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }
}

/// One parsed request, body included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The request target up to `?`, still percent-encoded.
    pub path: String,
    /// The request target after `?`, if there was one.
    pub query: Option<String>,
    /// Whether the connection stays open after the answer: HTTP/1.1 unless `Connection: close`,
    /// HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    pub content_type: Option<String>,
    /// The `Authorization` header's value, checked against the API key when one is set. `None`
    /// when absent or sent more than once (RFC 9110 §11.6.2 defines it as one credential, and
    /// which of two a proxy and herald would each pick is not a question worth having).
    pub authorization: Option<Credentials>,
    /// The `Cookie` headers' values, joined with `; ` when several (RFC 6265 §5.4 has a user
    /// agent send one); where the admin page's session travels.
    pub cookie: Option<Credentials>,
    /// `X-Herald-Admin: 1` was sent: the admin page's own requests, the only ones on which its
    /// session cookie counts (see [`super::admin`]).
    pub admin: bool,
    /// Exactly `Content-Length` bytes; empty when there was none.
    pub body: Vec<u8>,
}

/// An `Authorization` header value, kept out of `Debug` output so that logging a request never
/// logs the API key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials(pub Vec<u8>);

impl Credentials {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials([redacted])")
    }
}

/// Why a request could not be read. After any of these the connection is answered and closed:
/// the byte stream can no longer be split into requests reliably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The request line or a header is not valid HTTP/1.x.
    Malformed(httparse::Error),
    /// The head did not end within [`MAX_HEAD`] bytes.
    HeadTooLarge { max: usize },
    /// More than [`MAX_HEADERS`] headers.
    TooManyHeaders { max: usize },
    /// A POST, PUT or PATCH without `Content-Length`.
    LengthRequired,
    /// `Transfer-Encoding` was sent; only `Content-Length` framing is supported.
    ChunkedNotSupported,
    /// `Content-Length` is not a decimal number (or does not fit in 64 bits).
    BadContentLength,
    /// `Content-Length` was sent more than once.
    DuplicateContentLength,
    /// The declared body is larger than the configured maximum.
    BodyTooLarge { len: u64, max: usize },
    /// The request had not arrived whole this long after it began. Found by the caller, who
    /// owns the clock; named here so that its status is decided with the others.
    RequestTimeout { after: Duration },
}

impl HttpError {
    /// The status answered for this error; the one place that decides it.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_)
            | HttpError::BadContentLength
            | HttpError::DuplicateContentLength => 400,
            HttpError::LengthRequired | HttpError::ChunkedNotSupported => 411,
            HttpError::RequestTimeout { .. } => 408,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => 431,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Malformed(e) => write!(f, "malformed request: {e}"),
            HttpError::HeadTooLarge { max } => {
                write!(f, "request head is larger than {max} bytes")
            }
            HttpError::TooManyHeaders { max } => write!(f, "more than {max} request headers"),
            HttpError::LengthRequired => f.write_str("a request with a body needs Content-Length"),
            HttpError::ChunkedNotSupported => {
                f.write_str("send Content-Length; chunked bodies are not supported")
            }
            HttpError::BadContentLength => f.write_str("Content-Length must be a decimal number"),
            HttpError::DuplicateContentLength => f.write_str("Content-Length sent more than once"),
            HttpError::BodyTooLarge { len, max } => {
                write!(f, "request body is {len} bytes, at most {max} are allowed")
            }
            HttpError::RequestTimeout { after } => {
                write!(f, "request did not arrive whole within {after:?}")
            }
        }
    }
}

impl std::error::Error for HttpError {}

impl From<&HttpError> for Response {
    fn from(e: &HttpError) -> Self {
        Response::error(e.status(), &e.to_string())
    }
}

/// Parses one request from the front of `buf`. Returns the request and how many bytes it took,
/// or `Ok(None)` when the head or the body is not complete yet (nothing is consumed then).
/// Bytes after the request (a pipelined next one) are left for the next call.
pub fn parse(buf: &[u8], max_body: usize) -> Result<Option<(Request, usize)>, HttpError> {
    let Some(head) = parse_head(buf, max_body)? else {
        return Ok(None);
    };
    // A body is only taken whole; `Ok(None)` until all of it is here.
    let Some(end) = head
        .len
        .checked_add(head.body_len)
        .filter(|&end| end <= buf.len())
    else {
        return Ok(None);
    };
    let mut req = head.req;
    req.body = buf[head.len..end].to_vec();
    Ok(Some((req, end)))
}

/// True when `buf` starts with a complete, acceptable head that asks `Expect: 100-continue` and
/// its body has not fully arrived: the client is waiting for `100 Continue` before sending it.
pub fn wants_continue(buf: &[u8], max_body: usize) -> bool {
    match parse_head(buf, max_body) {
        Ok(Some(head)) => head.req.expect_continue && buf.len() - head.len < head.body_len,
        _ => false,
    }
}

/// The request at the front of `buf` once its head is complete (`Ok(None)` before), its body
/// left out, and how it is framed: what the caller needs to let it in, and to budget for its
/// body, before reading the body.
pub fn head(buf: &[u8], max_body: usize) -> Result<Option<(Request, Framing)>, HttpError> {
    Ok(parse_head(buf, max_body)?.map(|head| {
        let framing = Framing {
            head_len: head.len,
            body_len: head.body_len,
        };
        (head.req, framing)
    }))
}

/// The lengths of a request whose head has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub head_len: usize,
    /// From `Content-Length`, already checked against the maximum.
    pub body_len: usize,
}

impl Framing {
    /// Bytes the whole request takes.
    pub fn total(&self) -> usize {
        self.head_len + self.body_len
    }
}

/// The interim response that tells a client to go ahead and send its body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A parsed head: the request without its body, the head's length and the declared body length.
struct Head {
    req: Request,
    len: usize,
    body_len: usize,
}

fn parse_head(buf: &[u8], max_body: usize) -> Result<Option<Head>, HttpError> {
    // Only the first MAX_HEAD bytes can hold an acceptable head, so a client trickling a huge
    // head costs at most a re-parse of 8 KiB per read.
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if window.len() == MAX_HEAD => {
            return Err(HttpError::HeadTooLarge { max: MAX_HEAD })
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::TooManyHeaders { max: MAX_HEADERS })
        }
        Err(e) => return Err(HttpError::Malformed(e)),
    };
    // Complete implies all three are set; the fallbacks keep this path free of unwraps.
    let method = Method::from_token(parsed.method.unwrap_or(""));
    let target = parsed.path.unwrap_or("");
    let minor_version = parsed.version.unwrap_or(1);

    let mut content_length: Option<u64> = None;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    let mut content_type = None;
    let mut authorization = None;
    let mut authorization_count = 0usize;
    let mut cookie: Option<Vec<u8>> = None;
    let mut admin = false;
    for h in parsed.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                // RFC 9112 §6.3: differing lengths are unrecoverable; a repeat is refused
                // outright rather than compared.
                return Err(HttpError::DuplicateContentLength);
            }
            content_length = Some(parse_content_length(h.value)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::ChunkedNotSupported);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(String::from_utf8_lossy(h.value).into_owned());
        } else if name.eq_ignore_ascii_case("authorization") {
            authorization_count += 1;
            authorization = Some(Credentials(h.value.to_vec()));
        } else if name.eq_ignore_ascii_case("cookie") {
            let joined = cookie.get_or_insert_with(Vec::new);
            if !joined.is_empty() {
                joined.extend_from_slice(b"; ");
            }
            joined.extend_from_slice(h.value);
        } else if name.eq_ignore_ascii_case(super::admin::HEADER) {
            admin = h.value.trim_ascii() == b"1";
        }
    }
    if authorization_count > 1 {
        authorization = None;
    }

    let body_len = match content_length {
        None if method.has_body() => return Err(HttpError::LengthRequired),
        None => 0,
        // Decided from the header, so an oversized body is never read.
        Some(len) => match usize::try_from(len) {
            Ok(n) if n <= max_body => n,
            _ => return Err(HttpError::BodyTooLarge { len, max: max_body }),
        },
    };

    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let keep_alive = !close && (minor_version >= 1 || keep_alive_token);
    Ok(Some(Head {
        req: Request {
            method,
            path,
            query,
            keep_alive,
            expect_continue,
            content_type,
            authorization,
            cookie: cookie.map(Credentials),
            admin,
            body: Vec::new(),
        },
        len: head_len,
        body_len,
    }))
}

fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    let digits = value.trim_ascii();
    // `str::parse` would also take a leading `+`; RFC 9110 §8.6 allows digits only.
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadContentLength);
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(HttpError::BadContentLength)
}

/// A response, written whole by [`Response::write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// JSON, or text for `/metrics`.
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// Headers beyond the ones `write` always sends, e.g. `Allow` on a 405.
    pub headers: Vec<(&'static str, String)>,
}

pub const JSON: &str = "application/json";

impl Response {
    pub fn json(status: u16, v: &serde_json::Value) -> Self {
        Response {
            status,
            body: v.to_string().into_bytes(),
            content_type: JSON,
            headers: Vec::new(),
        }
    }

    /// `{"error": msg}`, the shape of every error answer.
    pub fn error(status: u16, msg: &str) -> Self {
        Response::json(status, &serde_json::json!({ "error": msg }))
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Self {
        Response {
            status,
            body: body.into_bytes(),
            content_type,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Appends the status line, headers and body to `out`.
    pub fn write(&self, keep_alive: bool, out: &mut Vec<u8>) {
        self.head(keep_alive, out).body(&self.body);
    }

    /// Appends the status line and headers only, with the `Content-Length` the body would have:
    /// the answer to a `HEAD` request (RFC 9110 §9.3.2).
    pub fn write_head(&self, keep_alive: bool, out: &mut Vec<u8>) {
        self.head(keep_alive, out).end();
    }

    fn head<'a>(&self, keep_alive: bool, out: &'a mut Vec<u8>) -> ResponseHead<'a> {
        let mut head = ResponseHead::new(out, self.status);
        head.header("Content-Type", self.content_type)
            .content_length(self.body.len())
            .connection(keep_alive);
        for (name, value) in &self.headers {
            head.header(name, value);
        }
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_BODY: usize = 64;

    fn parse_one(raw: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
        parse(raw, MAX_BODY)
    }

    fn status_of(raw: &[u8]) -> u16 {
        match parse_one(raw) {
            Err(e) => e.status(),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn post_with_body() {
        let raw = b"POST /v1/users/7/notifications?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"a\":\"b\"}";
        let (req, used) = parse_one(raw).unwrap().unwrap();
        assert_eq!(used, raw.len());
        assert_eq!(req.method, Method::Post);
        assert_eq!(req.path, "/v1/users/7/notifications");
        assert_eq!(req.query.as_deref(), Some("x=1"));
        assert_eq!(req.content_type.as_deref(), Some("application/json"));
        assert_eq!(req.body, b"{\"a\":\"b\"}");
        assert!(req.keep_alive);
    }

    #[test]
    fn authorization_is_kept_once_and_never_printed() {
        let raw = b"GET /healthz HTTP/1.1\r\nauthorization: Bearer k3y\r\n\r\n";
        let (req, _) = parse_one(raw).unwrap().unwrap();
        let creds = req.authorization.as_ref().expect("the header");
        assert_eq!(creds.as_bytes(), b"Bearer k3y");
        assert!(!format!("{req:?}").contains("k3y"));

        let none = b"GET /healthz HTTP/1.1\r\n\r\n";
        assert_eq!(parse_one(none).unwrap().unwrap().0.authorization, None);
    }

    #[test]
    fn a_repeated_authorization_counts_as_none() {
        let raw =
            b"GET /healthz HTTP/1.1\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n";
        assert_eq!(parse_one(raw).unwrap().unwrap().0.authorization, None);
    }

    #[test]
    fn partial_input_is_none_at_every_split() {
        let raw = b"POST /v1/broadcast HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        for split in 0..raw.len() {
            assert_eq!(parse_one(&raw[..split]), Ok(None), "split at {split}");
        }
        assert!(parse_one(raw).unwrap().is_some());
    }

    #[test]
    fn pipelined_requests_leave_the_rest() {
        let raw = b"GET /healthz HTTP/1.1\r\n\r\nPOST /v1/broadcast HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET /metr";
        let (first, used) = parse_one(raw).unwrap().unwrap();
        assert_eq!(first.path, "/healthz");
        assert!(first.body.is_empty());
        let rest = &raw[used..];
        let (second, used2) = parse_one(rest).unwrap().unwrap();
        assert_eq!(second.method, Method::Post);
        assert_eq!(second.body, b"{}");
        assert_eq!(parse_one(&rest[used2..]), Ok(None));
    }

    #[test]
    fn keep_alive_rules() {
        let cases: [(&[u8], bool); 5] = [
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (
                b"GET / HTTP/1.1\r\nConnection: Upgrade, Close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
        ];
        for (raw, keep) in cases {
            let (req, _) = parse_one(raw).unwrap().unwrap();
            assert_eq!(req.keep_alive, keep, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn malformed_is_400() {
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/2.0\r\n\r\n"), 400);
    }

    #[test]
    fn missing_length_is_411() {
        let raw = b"POST /v1/broadcast HTTP/1.1\r\n\r\n";
        assert_eq!(parse_one(raw), Err(HttpError::LengthRequired));
        assert_eq!(status_of(raw), 411);
    }

    #[test]
    fn chunked_is_411() {
        let raw = b"POST /v1/broadcast HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(parse_one(raw), Err(HttpError::ChunkedNotSupported));
        assert_eq!(status_of(raw), 411);
        assert!(HttpError::ChunkedNotSupported
            .to_string()
            .contains("send Content-Length"));
    }

    #[test]
    fn bad_content_length_is_400() {
        for v in ["abc", "+5", "-1", "", "1 2", "99999999999999999999999"] {
            let raw = format!("POST / HTTP/1.1\r\nContent-Length: {v}\r\n\r\n");
            assert_eq!(status_of(raw.as_bytes()), 400, "{v:?}");
        }
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx";
        assert_eq!(parse_one(raw), Err(HttpError::DuplicateContentLength));
    }

    #[test]
    fn body_too_large_is_413_before_the_body_arrives() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n";
        assert_eq!(
            parse_one(raw),
            Err(HttpError::BodyTooLarge {
                len: 65,
                max: MAX_BODY
            })
        );
        assert_eq!(status_of(raw), 413);
    }

    #[test]
    fn head_too_large_is_431() {
        let mut raw = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        raw.resize(MAX_HEAD + 10, b'a');
        assert_eq!(
            parse_one(&raw),
            Err(HttpError::HeadTooLarge { max: MAX_HEAD })
        );
        assert_eq!(status_of(&raw), 431);
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            raw.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert_eq!(status_of(&raw), 431);
    }

    #[test]
    fn get_without_length_has_no_body() {
        let head = b"GET /healthz HTTP/1.1\r\n\r\n";
        let mut raw = head.to_vec();
        raw.extend_from_slice(b"xyz");
        let (req, used) = parse_one(&raw).unwrap().unwrap();
        assert!(req.body.is_empty());
        assert_eq!(used, head.len());
    }

    #[test]
    fn expect_continue_is_wanted_only_while_the_body_is_missing() {
        let head = b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        assert!(!wants_continue(&head[..head.len() - 1], MAX_BODY));
        assert!(wants_continue(head, MAX_BODY));
        let mut whole = head.to_vec();
        whole.extend_from_slice(b"{}");
        assert!(!wants_continue(&whole, MAX_BODY));
    }

    #[test]
    fn the_head_is_read_before_the_body_arrives() {
        let raw = b"POST /v1/broadcast HTTP/1.1\r\nAuthorization: Bearer k\r\nExpect: 100-continue\r\nContent-Length: 20\r\n\r\n{";
        assert_eq!(head(&raw[..raw.len() - 4], MAX_BODY), Ok(None));
        let (req, framing) = head(raw, MAX_BODY).unwrap().unwrap();
        assert_eq!(req.authorization.unwrap().as_bytes(), b"Bearer k");
        assert!(req.expect_continue);
        assert!(req.body.is_empty());
        assert_eq!(framing.body_len, 20);
        assert_eq!(framing.total(), raw.len() - 1 + 20);
        assert_eq!(parse_one(raw), Ok(None));
    }

    #[test]
    fn response_bytes() {
        let mut out = Vec::new();
        Response::error(405, "no")
            .with_header("Allow", "GET".into())
            .write(false, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nContent-Length: 14\r\nConnection: close\r\nAllow: GET\r\n\r\n{\"error\":\"no\"}"
        );
    }

    #[test]
    fn unauthorized_and_too_many_requests_have_reasons() {
        let mut out = Vec::new();
        Response::error(401, "unauthorized")
            .with_header("WWW-Authenticate", "Bearer".into())
            .write(true, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 401 Unauthorized\r\n"));
        out.clear();
        Response::error(429, "rate limited").write(true, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 429 Too Many Requests\r\n"));
    }
}
