//! The client's real address behind proxies, doing no I/O.
//!
//! Behind a reverse proxy or a load balancer, a connection comes from the proxy's address, not
//! the client's. Two things bring the client's along: the header an HTTP proxy writes
//! (`X-Forwarded-For`, or RFC 7239 `Forwarded`; [`RealIp`]), and the PROXY protocol header a
//! layer-4 balancer sends before the client's first byte ([`protocol`]). Either is believed only
//! from the addresses the operator trusts ([`TrustedProxies`]). Nothing here reads a socket or
//! keeps state: the runtime passes the peer's address and the bytes or header lines in, and gets
//! an address or a fault out. It does not decide which limits the address counts against, nor
//! log: a refused PROXY header closes the connection, and that is the runtime's to do.
//!
//! The runtime's calling order, for a connection accepted from `peer` on the public listener,
//! with the [`Settings`] built at start:
//!
//! 1. `settings.admits(peer.ip())`, or close the connection at once: with `--proxy-protocol`
//!    only the trusted proxies may connect.
//! 2. With `settings.proxy_protocol`, call [`protocol::decode`] on everything received so far,
//!    before anything else reads it: `Ok(None)`, read more (the handshake timeout bounds the
//!    wait); `Err`, close; `Ok(Some((header, used)))`, the connection's address is
//!    `header.source_or(peer)`, and the bytes from `used` on are the client's first.
//! 3. For each HTTP request on it, the client is
//!    `settings.real_ip.client_addr(addr.ip(), request.headers_named(settings.real_ip.header_name()))`,
//!    `addr` being the connection's address from step 2 (or `peer`). A client behind an HTTP
//!    proxy behind a layer-4 balancer is found by both steps in turn.

pub mod protocol;
pub mod real_ip;
pub mod trusted;

use std::fmt;
use std::net::IpAddr;

pub use protocol::{decode, Header, ProxyProtocolError, Version};
pub use real_ip::{ForwardHeader, RealIp};
pub use trusted::{TrustedProxies, TrustedProxyError};

/// How the public listener finds its clients' addresses: what `--trusted-proxies`,
/// `--proxy-header` and `--proxy-protocol` say, checked. Built by
/// [`crate::config::Config::proxy`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Whose headers are believed, and which header is read.
    pub real_ip: RealIp,
    /// Every connection must open with a PROXY protocol header, and only trusted proxies may
    /// connect.
    pub proxy_protocol: bool,
}

impl Settings {
    /// Checks that the settings can admit anyone: with `proxy_protocol`, an empty trusted set
    /// would refuse every connection.
    pub fn new(real_ip: RealIp, proxy_protocol: bool) -> Result<Self, SettingsError> {
        if proxy_protocol && real_ip.trusted.is_empty() {
            return Err(SettingsError::ProxyProtocolTrustsNoOne);
        }
        Ok(Settings {
            real_ip,
            proxy_protocol,
        })
    }

    /// Whether a connection from `peer` may proceed at all. With `proxy_protocol` the PROXY
    /// header's addresses are believed only from a trusted proxy, and the spec (§2) asks that
    /// the header never be guessed at, so a connection from anyone else is refused outright:
    /// letting it through without a header would make the listener serve two protocols, and
    /// believing its header would let it claim any address.
    pub fn admits(&self, peer: IpAddr) -> bool {
        !self.proxy_protocol || self.real_ip.trusted.contains(peer)
    }
}

/// A combination of proxy settings herald refuses to start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsError {
    /// `--proxy-protocol` without `--trusted-proxies`: every connection would be refused.
    ProxyProtocolTrustsNoOne,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::ProxyProtocolTrustsNoOne => f.write_str(
                "--proxy-protocol needs --trusted-proxies: PROXY headers are taken only from \
                 trusted proxies, and with none every connection would be refused",
            ),
        }
    }
}

impl std::error::Error for SettingsError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_proxy_protocol_everyone_is_admitted() {
        let settings = Settings::default();
        assert!(settings.admits(ip("192.0.2.1")));
        assert!(settings.admits(ip("::1")));
    }

    #[test]
    fn with_proxy_protocol_only_trusted_proxies_are_admitted() {
        let real_ip = RealIp {
            trusted: "10.0.0.0/8".parse().unwrap(),
            header: ForwardHeader::XForwardedFor,
        };
        let settings = Settings::new(real_ip, true).unwrap();
        assert!(settings.admits(ip("10.1.2.3")));
        assert!(settings.admits(ip("::ffff:10.1.2.3")));
        assert!(!settings.admits(ip("192.0.2.1")));
        assert!(!settings.admits(ip("::1")));
    }

    #[test]
    fn proxy_protocol_trusting_no_one_is_refused() {
        assert_eq!(
            Settings::new(RealIp::default(), true),
            Err(SettingsError::ProxyProtocolTrustsNoOne)
        );
        assert!(Settings::new(RealIp::default(), false).is_ok());
    }

    /// The three steps of the module's calling order, on a connection from a layer-4 balancer
    /// carrying a request an HTTP proxy forwarded.
    #[test]
    fn the_calling_order_end_to_end() {
        let real_ip = RealIp {
            trusted: "10.0.0.0/8".parse().unwrap(),
            header: ForwardHeader::XForwardedFor,
        };
        let settings = Settings::new(real_ip, true).unwrap();
        let peer: std::net::SocketAddr = "10.0.0.1:40000".parse().unwrap();
        assert!(settings.admits(peer.ip()));
        let received = b"PROXY TCP4 10.0.0.9 10.0.0.1 51000 5000\r\nGET /ws HTTP/1.1\r\n\
                         X-Forwarded-For: 6.6.6.6, 198.51.100.4\r\n\r\n";
        let Ok(Some((header, used))) = decode(received) else {
            panic!("a whole header")
        };
        let addr = header.source_or(peer);
        assert_eq!(addr, "10.0.0.9:51000".parse().unwrap());
        let (request, _) = crate::ws::handshake::parse_request(&received[used..], 8192)
            .unwrap()
            .unwrap();
        let client = settings.real_ip.client_addr(
            addr.ip(),
            request.headers_named(settings.real_ip.header_name()),
        );
        assert_eq!(client, ip("198.51.100.4"));
    }
}
