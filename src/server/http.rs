//! The plain HTTP answers of the public port: Engine.IO long-polling responses, their CORS
//! headers, and Engine.IO's errors. Writes into caller-owned buffers; no I/O.

use std::fmt::Write as _;

use crate::engineio;
use crate::server::conn::HttpMeta;
use crate::ws::handshake::Request;

/// The request's `Origin`, when it is one of `allowed` (exact `scheme://host:port` match).
pub fn allowed_origin(req: &Request, allowed: &[String]) -> Option<Box<str>> {
    let origin = std::str::from_utf8(req.header("origin")?).ok()?;
    allowed.iter().any(|a| a == origin).then(|| origin.into())
}

/// Whether the connection stays open after the response: HTTP/1.1 unless `Connection: close`;
/// HTTP/1.0 only with `Connection: keep-alive`.
pub fn keep_alive(req: &Request) -> bool {
    let has = |token: &str| {
        req.header("connection").is_some_and(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if req.version >= 1 {
        !has("close")
    } else {
        has("keep-alive")
    }
}

fn head(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    content_type: &str,
    len: usize,
    meta: &HttpMeta,
) {
    let mut h = String::with_capacity(256);
    let _ = write!(
        h,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n"
    );
    if let Some(origin) = &meta.cors {
        let _ = write!(
            h,
            "Access-Control-Allow-Origin: {origin}\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"
        );
    }
    h.push_str(if meta.keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    out.extend_from_slice(h.as_bytes());
}

/// A polling GET's answer: Engine.IO packets joined by the record separator (0x1E).
pub fn write_packets<'a>(
    out: &mut Vec<u8>,
    packets: impl Iterator<Item = &'a [u8]> + Clone,
    meta: &HttpMeta,
) {
    let count = packets.clone().count();
    let len = packets.clone().map(<[u8]>::len).sum::<usize>() + count.saturating_sub(1);
    head(out, 200, "OK", "text/plain; charset=UTF-8", len, meta);
    engineio::encode_payload(packets, out);
}

/// A polling POST's answer, as the reference server gives it.
pub fn write_ok(out: &mut Vec<u8>, meta: &HttpMeta) {
    head(out, 200, "OK", "text/html", 2, meta);
    out.extend_from_slice(b"ok");
}

/// An Engine.IO error: its status and JSON body, decided by [`engineio::Error`].
pub fn write_engine_error(out: &mut Vec<u8>, e: &engineio::Error, meta: &HttpMeta) {
    let body = e.http_body();
    let status = e.status();
    head(
        out,
        status,
        reason(status),
        "application/json",
        body.len(),
        meta,
    );
    out.extend_from_slice(body.as_bytes());
}

/// The answer to a CORS preflight (`OPTIONS`) on the Socket.IO path.
pub fn write_preflight(out: &mut Vec<u8>, req: &Request, meta: &HttpMeta) {
    let mut h = String::from("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n");
    if let Some(origin) = &meta.cors {
        let headers = req
            .header("access-control-request-headers")
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|v| v.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
            .unwrap_or("content-type");
        let _ = write!(
            h,
            "Access-Control-Allow-Origin: {origin}\r\nAccess-Control-Allow-Credentials: true\r\n\
             Access-Control-Allow-Methods: GET, POST, OPTIONS\r\nAccess-Control-Allow-Headers: {headers}\r\n\
             Access-Control-Max-Age: 86400\r\nVary: Origin\r\n"
        );
    }
    h.push_str(if meta.keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    out.extend_from_slice(h.as_bytes());
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_joined_by_the_record_separator() {
        let mut out = Vec::new();
        let packets: [&[u8]; 3] = [b"2", b"42[\"a\"]", b"6"];
        let meta = HttpMeta {
            cors: Some("http://a:1".into()),
            keep_alive: true,
        };
        write_packets(&mut out, packets.iter().copied(), &meta);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 11\r\n"), "{text}");
        assert!(
            text.contains("Access-Control-Allow-Origin: http://a:1\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n2\x1e42[\"a\"]\x1e6"), "{text}");
    }
}
