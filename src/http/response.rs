//! The one writer of HTTP/1.1 response heads, for the public port (handshake answers, Engine.IO
//! polling answers, health probes) and the control API alike.
//!
//! It owns the status line and its reason phrase, the `Name: value` line syntax, and the blank
//! line that ends a head. It never decides a status, a header or its order: the callers' error
//! types and answers do, and a head is written in the order its caller gives, so each answer keeps
//! its bytes. No I/O: it appends to a buffer the caller owns.

use std::fmt::Display;
use std::io::Write as _;

/// A response head being written into a caller's buffer: [`ResponseHead::new`] writes the status line,
/// each method one header line, and [`ResponseHead::end`] or [`ResponseHead::body`] closes the head.
#[must_use = "a head is only complete once `end` or `body` is called"]
pub struct ResponseHead<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> ResponseHead<'a> {
    /// Starts a response with its status line, `HTTP/1.1 <status> <reason>`.
    pub fn new(out: &'a mut Vec<u8>, status: u16) -> Self {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason(status));
        ResponseHead { out }
    }

    /// One header line. `value` must be a valid field value (no CR or LF): every caller passes
    /// values it built or checked itself, never raw peer bytes.
    pub fn header(&mut self, name: &str, value: impl Display) -> &mut Self {
        let start = self.out.len();
        let _ = write!(self.out, "{name}: {value}");
        debug_assert!(
            !self.out[start..].iter().any(|&b| b == b'\r' || b == b'\n'),
            "a header line must not hold CR or LF"
        );
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// `Content-Length: <len>`: the body's length, also on the answer to a `HEAD` request, which
    /// sends no body (RFC 9110 §9.3.2).
    pub fn content_length(&mut self, len: usize) -> &mut Self {
        self.header("Content-Length", len)
    }

    /// `Connection: keep-alive` or `Connection: close`.
    pub fn connection(&mut self, keep_alive: bool) -> &mut Self {
        self.header(
            "Connection",
            if keep_alive { "keep-alive" } else { "close" },
        )
    }

    /// Ends the head with its blank line; no body follows (a 101, a 204, a `HEAD` answer).
    pub fn end(self) {
        self.out.extend_from_slice(b"\r\n");
    }

    /// Ends the head and appends `body`, whose length the caller gave [`ResponseHead::content_length`].
    pub fn body(self, body: &[u8]) {
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
    }
}

/// The reason phrase of every status herald answers (RFC 9110 §15). Clients ignore it (RFC 9112
/// §4), but people reading a trace do not.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        // RFC 9112 §4: `status-line = HTTP-version SP status-code SP [ reason-phrase ]`.
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_with_a_body() {
        let mut out = Vec::new();
        let mut head = ResponseHead::new(&mut out, 405);
        head.header("Content-Type", "application/json")
            .content_length(14)
            .connection(false)
            .header("Allow", "GET");
        head.body(b"{\"error\":\"no\"}");
        assert_eq!(
            out,
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\n\
              Content-Length: 14\r\nConnection: close\r\nAllow: GET\r\n\r\n{\"error\":\"no\"}"
        );
    }

    #[test]
    fn a_head_alone_appends_to_what_is_there() {
        let mut out = b"earlier".to_vec();
        let mut head = ResponseHead::new(&mut out, 101);
        head.header("Upgrade", "websocket");
        head.end();
        assert_eq!(
            out,
            b"earlierHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        );
    }

    #[test]
    fn keep_alive_and_unknown_status() {
        let mut out = Vec::new();
        let mut head = ResponseHead::new(&mut out, 299);
        head.connection(true);
        head.end();
        assert_eq!(out, b"HTTP/1.1 299 \r\nConnection: keep-alive\r\n\r\n");
    }

    #[test]
    fn reasons_follow_rfc_9110() {
        assert_eq!(reason(413), "Content Too Large");
        assert_eq!(reason(431), "Request Header Fields Too Large");
        assert_eq!(reason(426), "Upgrade Required");
    }
}
