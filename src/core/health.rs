//! `/healthz` and `/readyz` on the public port, for load balancers that reach only that port: no
//! API key, no upgrade, a plain HTTP answer.
//!
//! - `/healthz`: 200 `{"status":"ok"}` while the loop runs.
//! - `/readyz`: the same, but 503 `{"status":"draining"}` once shutdown began. herald stops
//!   accepting when it begins, so a balancer mostly sees the refused connection; a request that
//!   still reaches the loop gets the 503.
//!
//! Any method but GET and HEAD is answered 405 with `Allow`. The answer keeps the connection
//! alive when the request asks for it (HTTP/1.1 by default), like a polling answer does.

use std::time::Instant;

use bytes::BytesMut;

use crate::core::conn::{Cors, HttpMeta};
use crate::core::polling::keep_alive;
use crate::core::worker::State;
use crate::http::ResponseHead;
use crate::ws::handshake::Request;

/// Which probe a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Health,
    Ready,
}

impl Probe {
    /// The probe at `path` (the query is not part of it), if any.
    pub fn at(path: &str) -> Option<Probe> {
        match path {
            "/healthz" => Some(Probe::Health),
            "/readyz" => Some(Probe::Ready),
            _ => None,
        }
    }
}

/// Writes the answer to `probe` asked with `method`: herald is `draining` once shutdown began.
pub fn write_answer(out: &mut Vec<u8>, probe: Probe, method: &str, draining: bool, keep: bool) {
    let (status, body) = match (method, probe, draining) {
        ("GET" | "HEAD", Probe::Ready, true) => (503, r#"{"status":"draining"}"#),
        ("GET" | "HEAD", ..) => (200, r#"{"status":"ok"}"#),
        _ => (405, r#"{"error":"method not allowed"}"#),
    };
    let mut head = ResponseHead::new(out, status);
    head.header("Content-Type", "application/json")
        .content_length(body.len())
        .header("Cache-Control", "no-store");
    if status == 405 {
        head.header("Allow", "GET, HEAD");
    }
    head.connection(keep);
    if method == "HEAD" {
        head.end();
    } else {
        head.body(body.as_bytes());
    }
}

impl State {
    /// Answers `probe` on connection `k`, then waits for its next request (`rest` holds what
    /// followed this one) or closes it.
    pub(crate) fn answer_probe(
        &mut self,
        k: usize,
        probe: Probe,
        req: &Request,
        rest: BytesMut,
        now: Instant,
    ) {
        let keep = keep_alive(req);
        let mut out = Vec::with_capacity(192);
        let draining = self.shutdown_deadline.is_some();
        write_answer(&mut out, probe, &req.method, draining, keep);
        let meta = HttpMeta {
            cors: Cors::Off,
            keep_alive: keep,
        };
        self.answer(k, out, rest, &meta, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(probe: Probe, method: &str, draining: bool, keep: bool) -> String {
        let mut out = Vec::new();
        write_answer(&mut out, probe, method, draining, keep);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn paths() {
        assert_eq!(Probe::at("/healthz"), Some(Probe::Health));
        assert_eq!(Probe::at("/readyz"), Some(Probe::Ready));
        assert_eq!(Probe::at("/healthz/"), None);
        assert_eq!(Probe::at("/ws"), None);
    }

    #[test]
    fn healthy_ready_and_draining() {
        let ok = answer(Probe::Health, "GET", false, true);
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Length: 15\r\n"), "{ok}");
        assert!(ok.contains("Connection: keep-alive\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\n{\"status\":\"ok\"}"), "{ok}");

        // Healthy while draining: the process still serves its clients.
        let health = answer(Probe::Health, "GET", true, false);
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        assert!(health.contains("Connection: close\r\n"), "{health}");

        let ready = answer(Probe::Ready, "GET", false, true);
        assert!(ready.starts_with("HTTP/1.1 200 OK\r\n"), "{ready}");
        let draining = answer(Probe::Ready, "GET", true, true);
        assert!(
            draining.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{draining}"
        );
        assert!(
            draining.ends_with("{\"status\":\"draining\"}"),
            "{draining}"
        );
    }

    #[test]
    fn head_has_no_body_and_other_methods_are_405() {
        let head = answer(Probe::Health, "HEAD", false, true);
        assert!(head.contains("Content-Length: 15\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        let post = answer(Probe::Ready, "POST", false, true);
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{post}"
        );
        assert!(post.contains("Allow: GET, HEAD\r\n"), "{post}");
    }
}
