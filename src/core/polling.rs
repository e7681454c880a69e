//! The plain HTTP answers of the public port: Engine.IO long-polling responses, their CORS
//! headers, and Engine.IO's errors. Writes into caller-owned buffers; no I/O.

use crate::core::conn::{Cors, HttpMeta};
use crate::engineio;
use crate::http::{Origins, ResponseHead};
use crate::ws::handshake::Request;

/// The CORS headers `req` is answered with under `--cors-origins` `origins`.
pub fn cors(req: &Request, origins: &Origins) -> Cors {
    if origins.is_empty() {
        return Cors::Off;
    }
    if origins.is_any() {
        return Cors::Any;
    }
    let Some(origin) = req.header("origin").filter(|o| origins.allows(o)) else {
        return Cors::Refused;
    };
    // Admitted only once it parsed as an origin, which is ASCII.
    match std::str::from_utf8(origin) {
        Ok(origin) => Cors::Allowed(origin.into()),
        Err(_) => Cors::Refused,
    }
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
    allow_origin(&mut head, &meta.cors);
    head.connection(meta.keep_alive);
    head
}

/// The headers every CORS answer carries, preflight or not.
fn allow_origin(head: &mut ResponseHead<'_>, cors: &Cors) {
    match cors {
        Cors::Off => {}
        // Fetch standard, CORS check: `*` is refused for a request with credentials, so
        // `Access-Control-Allow-Credentials` would only mislead; none is sent.
        Cors::Any => {
            head.header("Access-Control-Allow-Origin", "*");
        }
        Cors::Allowed(origin) => {
            head.header("Access-Control-Allow-Origin", origin)
                .header("Access-Control-Allow-Credentials", "true")
                .header("Vary", "Origin");
        }
        Cors::Refused => {
            head.header("Vary", "Origin");
        }
    }
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
    allow_origin(&mut head, &meta.cors);
    if matches!(meta.cors, Cors::Any | Cors::Allowed(_)) {
        let headers = req
            .header("access-control-request-headers")
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|v| v.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
            .unwrap_or("content-type");
        head.header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            .header("Access-Control-Allow-Headers", headers)
            .header("Access-Control-Max-Age", 86400);
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
            cors: Cors::Allowed("http://a:1".into()),
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

    fn ok_with(cors: Cors) -> String {
        let mut out = Vec::new();
        let meta = HttpMeta {
            cors,
            keep_alive: false,
        };
        write_ok(&mut out, &meta);
        String::from_utf8(out).unwrap()
    }

    fn preflight_with(cors: Cors) -> String {
        let raw = b"OPTIONS /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nOrigin: http://a:1\r\nAccess-Control-Request-Headers: x-token\r\n\r\n";
        let (req, _) = crate::ws::handshake::parse_request(raw, 1024)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        let meta = HttpMeta {
            cors,
            keep_alive: false,
        };
        write_preflight(&mut out, &req, &meta);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn any_origin_is_a_star_without_credentials_or_vary() {
        for text in [ok_with(Cors::Any), preflight_with(Cors::Any)] {
            assert!(
                text.contains("Access-Control-Allow-Origin: *\r\n"),
                "{text}"
            );
            assert!(!text.contains("Credentials"), "{text}");
            assert!(!text.contains("Vary"), "{text}");
        }
        let preflight = preflight_with(Cors::Any);
        assert!(
            preflight.contains("Access-Control-Allow-Headers: x-token\r\n"),
            "{preflight}"
        );
    }

    #[test]
    fn a_listed_origin_is_echoed_with_credentials_and_vary() {
        for text in [
            ok_with(Cors::Allowed("http://a:1".into())),
            preflight_with(Cors::Allowed("http://a:1".into())),
        ] {
            assert!(
                text.contains("Access-Control-Allow-Origin: http://a:1\r\n"),
                "{text}"
            );
            assert!(
                text.contains("Access-Control-Allow-Credentials: true\r\n"),
                "{text}"
            );
            assert!(text.contains("Vary: Origin\r\n"), "{text}");
        }
    }

    #[test]
    fn an_origin_the_list_refuses_gets_only_vary() {
        for text in [ok_with(Cors::Refused), preflight_with(Cors::Refused)] {
            assert!(!text.contains("Access-Control"), "{text}");
            assert!(text.contains("Vary: Origin\r\n"), "{text}");
        }
        for text in [ok_with(Cors::Off), preflight_with(Cors::Off)] {
            assert!(!text.contains("Access-Control"), "{text}");
            assert!(!text.contains("Vary"), "{text}");
        }
    }

    #[test]
    fn the_decision_follows_the_list_and_the_origin() {
        let req = |origin: &str| {
            let raw = format!("GET /socket.io/ HTTP/1.1\r\n{origin}\r\n");
            crate::ws::handshake::parse_request(raw.as_bytes(), 1024)
                .unwrap()
                .unwrap()
                .0
        };
        let list = Origins::parse(&["https://*.example.com"]).unwrap();
        let any = Origins::parse(&["*"]).unwrap();
        let none = Origins::default();
        let from_a = req("Origin: https://a.example.com\r\n");
        assert_eq!(
            cors(&from_a, &list),
            Cors::Allowed("https://a.example.com".into())
        );
        assert_eq!(
            cors(&req("Origin: https://example.com\r\n"), &list),
            Cors::Refused
        );
        assert_eq!(cors(&req(""), &list), Cors::Refused);
        assert_eq!(cors(&from_a, &any), Cors::Any);
        assert_eq!(cors(&req(""), &any), Cors::Any);
        assert_eq!(cors(&from_a, &none), Cors::Off);
    }
}
