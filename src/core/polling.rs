//! The plain HTTP answers of the public port: Engine.IO long-polling responses, their CORS
//! headers, and Engine.IO's errors. Writes into caller-owned buffers; no I/O.

use crate::core::conn::HttpMeta;
use crate::engineio;
use crate::http::ResponseHead;
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

/// Starts an answer: status, content type and length, the CORS headers when the request's
/// origin is allowed, and `Connection`.
fn head<'a>(
    out: &'a mut Vec<u8>,
    status: u16,
    content_type: &str,
    len: usize,
    meta: &HttpMeta,
) -> ResponseHead<'a> {
    let mut head = ResponseHead::new(out, status);
    head.header("Content-Type", content_type)
        .content_length(len);
    if let Some(origin) = &meta.cors {
        head.header("Access-Control-Allow-Origin", origin)
            .header("Access-Control-Allow-Credentials", "true")
            .header("Vary", "Origin");
    }
    head.connection(meta.keep_alive);
    head
}

/// A polling GET's answer: Engine.IO packets joined by the record separator (0x1E).
pub fn write_packets<'a>(
    out: &mut Vec<u8>,
    packets: impl Iterator<Item = &'a [u8]> + Clone,
    meta: &HttpMeta,
) {
    let count = packets.clone().count();
    let len = packets.clone().map(<[u8]>::len).sum::<usize>() + count.saturating_sub(1);
    head(out, 200, "text/plain; charset=UTF-8", len, meta).end();
    engineio::encode_payload(packets, out);
}

/// A polling POST's answer, as the reference server gives it.
pub fn write_ok(out: &mut Vec<u8>, meta: &HttpMeta) {
    head(out, 200, "text/html", 2, meta).body(b"ok");
}

/// An Engine.IO error: its status and JSON body, decided by [`engineio::Error`].
pub fn write_engine_error(out: &mut Vec<u8>, e: &engineio::Error, meta: &HttpMeta) {
    let body = e.http_body();
    head(out, e.status(), "application/json", body.len(), meta).body(body.as_bytes());
}

/// The answer to a CORS preflight (`OPTIONS`) on the Socket.IO path.
///
/// It carries `Content-Length: 0` although RFC 9110 §8.6 has a 204 send none, as the `cors`
/// middleware in front of the reference server does; a 204 has no body either way.
pub fn write_preflight(out: &mut Vec<u8>, req: &Request, meta: &HttpMeta) {
    let mut head = ResponseHead::new(out, 204);
    head.content_length(0);
    if let Some(origin) = &meta.cors {
        let headers = req
            .header("access-control-request-headers")
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|v| v.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
            .unwrap_or("content-type");
        head.header("Access-Control-Allow-Origin", origin)
            .header("Access-Control-Allow-Credentials", "true")
            .header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            .header("Access-Control-Allow-Headers", headers)
            .header("Access-Control-Max-Age", 86400)
            .header("Vary", "Origin");
    }
    head.connection(meta.keep_alive);
    head.end();
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
