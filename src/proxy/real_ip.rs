//! The client's address from the header a reverse proxy writes: `X-Forwarded-For`, or RFC 7239
//! `Forwarded`, read right to left past the proxies herald trusts.
//!
//! Every proxy appends the address it got the request from to the right of what it received, and
//! passes the rest through unchanged: only the entries right of the last untrusted hop were
//! written by proxies herald trusts, and everything further left may have been written by the
//! client itself.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::proxy::TrustedProxies;

/// The header a trusted proxy names the client in. Only one is read: a proxy rewrites or
/// appends to the header it is set up to write and passes the other through from the client
/// unchanged, so reading both would let a client pick the answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`: addresses, comma-separated.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1;proto=https`: the `for=` parameter of each
    /// element.
    Forwarded,
}

impl ForwardHeader {
    /// The header's name in lower case (header names compare case-insensitively).
    pub const fn name(self) -> &'static str {
        match self {
            ForwardHeader::XForwardedFor => "x-forwarded-for",
            ForwardHeader::Forwarded => "forwarded",
        }
    }
}

impl fmt::Display for ForwardHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which proxies are trusted and which header they write: everything needed to find a request's
/// client. Built once at start ([`crate::config::Config::proxy`]) and shared by every worker.
///
/// ```
/// use herald::proxy::{ForwardHeader, RealIp};
///
/// let real_ip = RealIp {
///     trusted: "private".parse().unwrap(),
///     header: ForwardHeader::XForwardedFor,
/// };
/// let lines: [&[u8]; 1] = [b"203.0.113.9, 198.51.100.4, 10.0.0.2"];
/// // From a trusted proxy: the rightmost address it does not trust.
/// let client = real_ip.client_addr("10.0.0.1".parse().unwrap(), lines);
/// assert_eq!(client, "198.51.100.4".parse::<std::net::IpAddr>().unwrap());
/// // From anyone else the header is ignored.
/// let client = real_ip.client_addr("192.0.2.1".parse().unwrap(), lines);
/// assert_eq!(client, "192.0.2.1".parse::<std::net::IpAddr>().unwrap());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RealIp {
    /// Peers and hops whose word is believed. Empty: none, and every client is its peer.
    pub trusted: TrustedProxies,
    /// The one header read.
    pub header: ForwardHeader,
}

impl RealIp {
    /// The name of the header whose lines [`client_addr`](Self::client_addr) reads, in lower
    /// case.
    pub fn header_name(&self) -> &'static str {
        self.header.name()
    }

    /// The client's address for a request that came from `peer` with `lines`, the values of
    /// every [`header_name`](Self::header_name) line of the request in the order they came (as
    /// `Request::headers_named` gives them).
    ///
    /// From an untrusted `peer` the header is ignored, and the client is `peer`: a client
    /// cannot pose as another. From a trusted one, the header's elements are walked right to
    /// left, the last line's last element first, past trusted addresses; the first untrusted
    /// address is the client. When every address is trusted, the leftmost is (as nginx's
    /// `real_ip_recursive on`). An element naming no address (garbage, `unknown`, an obfuscated
    /// `_node`, a `Forwarded` element without `for=`) ends the walk: nothing left of it can be
    /// placed, and the client is the nearest hop known, the trusted address just right of it or
    /// `peer`. Ports are dropped; addresses come back as written (an IPv4-mapped one stays
    /// mapped).
    pub fn client_addr<'a>(
        &self,
        peer: IpAddr,
        lines: impl IntoIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        if !self.trusted.contains(peer) {
            return peer;
        }
        // One pass left to right, keeping nothing of the list, ends where the walk would: the
        // walk stops at the rightmost element that is not a trusted address, so only that
        // element and the trusted addresses right of it decide.
        // The rightmost element so far that is not a trusted address: `Some(ip)` for an
        // untrusted address, `None` for no address at all.
        let mut stop: Option<Option<IpAddr>> = None;
        // The leftmost trusted address right of `stop` (of everything, while there is none).
        let mut nearest: Option<IpAddr> = None;
        for line in lines {
            for hop in hops(self.header, line) {
                match hop {
                    Some(ip) if self.trusted.contains(ip) => {
                        nearest.get_or_insert(ip);
                    }
                    other => {
                        stop = Some(other);
                        nearest = None;
                    }
                }
            }
        }
        match stop {
            Some(Some(client)) => client,
            _ => nearest.unwrap_or(peer),
        }
    }
}

/// Each element of one line of `header`, left to right: the address it names, ports dropped, or
/// `None` for one that names none. Empty elements are skipped (RFC 9110 §5.6.1: a recipient
/// MUST accept and ignore a reasonable number of them).
pub fn hops(header: ForwardHeader, line: &[u8]) -> impl Iterator<Item = Option<IpAddr>> + '_ {
    let forwarded = header == ForwardHeader::Forwarded;
    // X-Forwarded-For has no quoted strings; in Forwarded a comma inside one splits nothing.
    Split::new(line, b',', forwarded)
        .map(trim_ows)
        .filter(|element| !element.is_empty())
        .map(move |element| {
            if forwarded {
                forwarded_for(element)
            } else {
                node(element)
            }
        })
}

/// The address in the `for=` parameter of one `Forwarded` element (RFC 7239 §4):
/// `forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )`. `None` when it has no
/// `for=`, has two (§4: each parameter MUST NOT occur more than once per element), names no
/// address, or is not well formed: an element misread could place a client anywhere.
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    let mut found = None;
    for pair in Split::new(element, b';', true).map(trim_ows) {
        if pair.is_empty() {
            continue;
        }
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (name, value) = (&pair[..eq], &pair[eq + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return None;
        }
        let value = unquote(value)?;
        // §4: parameter names are case-insensitive.
        if name.eq_ignore_ascii_case(b"for") {
            if found.is_some() {
                return None;
            }
            found = Some(value);
        }
    }
    node(&found?)
}

/// A `Forwarded` parameter's value: a quoted string's contents (RFC 9110 §5.6.4, quoted pairs
/// unescaped), or the bytes as they are. A bare value is taken even where it is not a `token`:
/// a proxy set up to write `for=$remote_addr` writes an IPv6 client unquoted and unbracketed,
/// and what it means is plain.
fn unquote(value: &[u8]) -> Option<Cow<'_, [u8]>> {
    let Some(quoted) = value.strip_prefix(b"\"") else {
        return (!value.is_empty() && !value.contains(&b'"')).then_some(Cow::Borrowed(value));
    };
    let inner = quoted.strip_suffix(b"\"")?;
    if !inner.contains(&b'\\') {
        // A quote inside means the string ended before the value did.
        return (!inner.contains(&b'"')).then_some(Cow::Borrowed(inner));
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => out.push(*bytes.next()?),
            b'"' => return None,
            _ => out.push(b),
        }
    }
    Some(Cow::Owned(out))
}

/// A node as X-Forwarded-For and RFC 7239 §6 write it: an IPv4 address, an IPv6 address
/// (bracketed when a port follows), and an optional `:port` that is dropped. `unknown`, an
/// obfuscated `_node` and anything else name no address.
fn node(node: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(node).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(bracketed) = text.strip_prefix('[') {
        let (v6, rest) = bracketed.split_once(']')?;
        let ip = v6.parse::<Ipv6Addr>().ok()?;
        return (rest.is_empty() || rest.strip_prefix(':').is_some_and(port))
            .then_some(IpAddr::V6(ip));
    }
    let (v4, rest) = text.split_once(':')?;
    let ip = v4.parse::<Ipv4Addr>().ok()?;
    port(rest).then_some(IpAddr::V4(ip))
}

/// RFC 7239 §6: `node-port = port / obfport`, `obfport = "_" 1*(ALPHA / DIGIT / "." / "_" /
/// "-")`; a numeric port is held to what TCP can carry.
fn port(p: &str) -> bool {
    match p.strip_prefix('_') {
        Some(obfuscated) => {
            !obfuscated.is_empty()
                && obfuscated
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        None => {
            (1..=5).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u16>().is_ok()
        }
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `bytes` without the spaces and tabs around it (RFC 9110 §5.6.3 `OWS`).
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// `bytes` cut at every `sep`, except, when `quotes` is set, inside a quoted string (where a
/// backslash quotes the next byte). An unterminated quoted string runs to the end. Always
/// yields at least one piece, empty ones included.
struct Split<'a> {
    rest: Option<&'a [u8]>,
    sep: u8,
    quotes: bool,
}

impl<'a> Split<'a> {
    fn new(bytes: &'a [u8], sep: u8, quotes: bool) -> Self {
        Split {
            rest: Some(bytes),
            sep,
            quotes,
        }
    }
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        let mut quoted = false;
        let mut i = 0;
        while i < rest.len() {
            match rest[i] {
                b'\\' if quoted => i += 1,
                b'"' if self.quotes => quoted = !quoted,
                b if b == self.sep && !quoted => {
                    self.rest = Some(&rest[i + 1..]);
                    return Some(&rest[..i]);
                }
                _ => {}
            }
            i += 1;
        }
        self.rest = None;
        Some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proxies the tables trust: the private networks and one public address.
    const TRUSTED: &str = "private, 203.0.113.7";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// `name: HEADER, peer, [header lines] => client;`, one test per row.
    macro_rules! walk {
        ($($name:ident: $header:ident, $peer:literal, [$($line:literal),* $(,)?] => $client:literal;)*) => {
            $(
                #[test]
                fn $name() {
                    let real_ip = RealIp {
                        trusted: TRUSTED.parse().unwrap(),
                        header: ForwardHeader::$header,
                    };
                    let lines: &[&str] = &[$($line),*];
                    let got = real_ip.client_addr(ip($peer), lines.iter().map(|l| l.as_bytes()));
                    assert_eq!(got, ip($client), "{lines:?} from {}", $peer);
                }
            )*
        };
    }

    walk! {
        xff_from_an_untrusted_peer_is_ignored: XForwardedFor, "198.51.100.1", ["192.0.2.60"] => "198.51.100.1";
        xff_absent: XForwardedFor, "10.0.0.1", [] => "10.0.0.1";
        xff_empty_line: XForwardedFor, "10.0.0.1", [""] => "10.0.0.1";
        xff_one_hop: XForwardedFor, "10.0.0.1", ["192.0.2.60"] => "192.0.2.60";
        xff_spoofed_leftmost: XForwardedFor, "10.0.0.1", ["6.6.6.6, 192.0.2.60"] => "192.0.2.60";
        xff_spoofed_trusted_leftmost: XForwardedFor, "10.0.0.1", ["10.9.9.9, 192.0.2.60"] => "192.0.2.60";
        xff_spoofed_behind_two_proxies: XForwardedFor, "10.0.0.1", ["6.6.6.6, 192.0.2.60, 10.0.0.2, 203.0.113.7"] => "192.0.2.60";
        xff_all_trusted_is_the_leftmost: XForwardedFor, "10.0.0.1", ["10.0.0.3, 10.0.0.2"] => "10.0.0.3";
        xff_garbage_ends_the_walk_at_the_nearest_hop: XForwardedFor, "10.0.0.1", ["192.0.2.60, garbage, 10.0.0.2"] => "10.0.0.2";
        xff_garbage_rightmost_leaves_the_peer: XForwardedFor, "10.0.0.1", ["192.0.2.60, unknown"] => "10.0.0.1";
        xff_garbage_left_of_the_client_is_not_reached: XForwardedFor, "10.0.0.1", ["garbage, 192.0.2.60"] => "192.0.2.60";
        xff_public_trusted_proxy: XForwardedFor, "203.0.113.7", ["192.0.2.60"] => "192.0.2.60";
        xff_ipv6: XForwardedFor, "fd00::1", ["2001:db8::1"] => "2001:db8::1";
        xff_ipv6_behind_ipv6_proxies: XForwardedFor, "::1", ["2001:db8::1, fd00::2"] => "2001:db8::1";
        xff_ipv6_bracketed: XForwardedFor, "10.0.0.1", ["[2001:db8::1]"] => "2001:db8::1";
        xff_ipv6_bracketed_with_port: XForwardedFor, "10.0.0.1", ["[2001:db8::1]:4711"] => "2001:db8::1";
        xff_ipv4_with_port: XForwardedFor, "10.0.0.1", ["192.0.2.60:47011"] => "192.0.2.60";
        xff_port_out_of_range: XForwardedFor, "10.0.0.1", ["192.0.2.60:65536"] => "10.0.0.1";
        xff_empty_port: XForwardedFor, "10.0.0.1", ["192.0.2.60:"] => "10.0.0.1";
        xff_ipv6_port_unbracketed_is_an_address: XForwardedFor, "10.0.0.1", ["2001:db8::1:80"] => "2001:db8::1:80";
        xff_leading_zeros: XForwardedFor, "10.0.0.1", ["192.0.2.060"] => "10.0.0.1";
        xff_zone: XForwardedFor, "10.0.0.1", ["fe80::1%eth0"] => "10.0.0.1";
        xff_mapped_peer_is_trusted_as_ipv4: XForwardedFor, "::ffff:10.0.0.1", ["192.0.2.60"] => "192.0.2.60";
        xff_mapped_peer_untrusted: XForwardedFor, "::ffff:198.51.100.1", ["192.0.2.60"] => "::ffff:198.51.100.1";
        xff_mapped_hop_is_trusted_as_ipv4: XForwardedFor, "10.0.0.1", ["192.0.2.60, ::ffff:10.0.0.2"] => "192.0.2.60";
        xff_mapped_client_stays_mapped: XForwardedFor, "10.0.0.1", ["::ffff:192.0.2.60"] => "::ffff:192.0.2.60";
        xff_lines_in_order: XForwardedFor, "10.0.0.1", ["6.6.6.6, 192.0.2.1", "192.0.2.60", "10.0.0.3"] => "192.0.2.60";
        xff_lines_all_trusted: XForwardedFor, "10.0.0.1", ["10.0.0.4", "10.0.0.3"] => "10.0.0.4";
        xff_empty_elements_skipped: XForwardedFor, "10.0.0.1", [",192.0.2.60,, ,"] => "192.0.2.60";
        xff_blanks_trimmed: XForwardedFor, "10.0.0.1", ["\t192.0.2.60 ,\t10.0.0.2 "] => "192.0.2.60";
        xff_inner_blank_is_garbage: XForwardedFor, "10.0.0.1", ["192.0.2.60 10.0.0.2"] => "10.0.0.1";
        xff_forwarded_syntax_is_garbage: XForwardedFor, "10.0.0.1", ["for=192.0.2.60"] => "10.0.0.1";
        xff_quotes_are_garbage: XForwardedFor, "10.0.0.1", ["\"192.0.2.60\""] => "10.0.0.1";
        xff_non_ascii: XForwardedFor, "10.0.0.1", ["192.0.2.60, 10.0.0.2\u{ff}"] => "10.0.0.1";

        // RFC 7239 §4's examples.
        fwd_rfc_obfuscated_node: Forwarded, "10.0.0.1", ["for=\"_gazonk\""] => "10.0.0.1";
        fwd_rfc_ipv6_with_port: Forwarded, "10.0.0.1", ["For=\"[2001:db8:cafe::17]:4711\""] => "2001:db8:cafe::17";
        fwd_rfc_with_parameters: Forwarded, "10.0.0.1", ["for=192.0.2.60;proto=http;by=203.0.113.43"] => "192.0.2.60";
        fwd_rfc_two_elements: Forwarded, "10.0.0.1", ["for=192.0.2.43, for=198.51.100.17"] => "198.51.100.17";
        // RFC 7239 §7.1's: the rightmost hop is unknown, so nothing left of it is placed.
        fwd_rfc_unknown_rightmost: Forwarded, "10.0.0.1", ["for=192.0.2.43,for=\"[2001:db8:cafe::17]\",for=unknown"] => "10.0.0.1";
        // RFC 7239 §6's node with a port.
        fwd_rfc_ipv4_with_port: Forwarded, "10.0.0.1", ["for=\"192.0.2.43:47011\""] => "192.0.2.43";
        fwd_obfuscated_port: Forwarded, "10.0.0.1", ["for=\"[2001:db8::1]:_p1\""] => "2001:db8::1";
        fwd_from_an_untrusted_peer_is_ignored: Forwarded, "198.51.100.1", ["for=192.0.2.60"] => "198.51.100.1";
        fwd_spoofed_leftmost: Forwarded, "10.0.0.1", ["for=6.6.6.6, for=192.0.2.60;proto=https, for=10.0.0.2"] => "192.0.2.60";
        fwd_all_trusted_is_the_leftmost: Forwarded, "10.0.0.1", ["for=10.0.0.3, for=\"[fd00::2]\""] => "10.0.0.3";
        fwd_unknown_ends_the_walk_at_the_nearest_hop: Forwarded, "10.0.0.1", ["for=192.0.2.60, for=unknown, for=10.0.0.2"] => "10.0.0.2";
        fwd_names_are_case_insensitive: Forwarded, "10.0.0.1", ["FOR=192.0.2.60;PROTO=https"] => "192.0.2.60";
        fwd_for_anywhere_in_the_element: Forwarded, "10.0.0.1", ["proto=https;for=192.0.2.60;by=10.0.0.1"] => "192.0.2.60";
        fwd_comma_inside_quotes_splits_nothing: Forwarded, "10.0.0.1", ["for=192.0.2.60;host=\"a,b\", for=10.0.0.2"] => "192.0.2.60";
        fwd_semicolon_inside_quotes_splits_nothing: Forwarded, "10.0.0.1", ["for=192.0.2.60;ext=\"x;for=6.6.6.6\""] => "192.0.2.60";
        fwd_quoted_pair: Forwarded, "10.0.0.1", ["for=\"\\192.0.2.60\";ext=\"a\\\"b\""] => "192.0.2.60";
        fwd_two_for_in_one_element: Forwarded, "10.0.0.1", ["for=192.0.2.60;for=6.6.6.6"] => "10.0.0.1";
        fwd_element_without_for: Forwarded, "10.0.0.1", ["for=192.0.2.60, proto=https;by=10.0.0.2"] => "10.0.0.1";
        fwd_unterminated_quote: Forwarded, "10.0.0.1", ["for=192.0.2.60, for=\"10.0.0.2"] => "10.0.0.1";
        fwd_quote_inside_a_bare_value: Forwarded, "10.0.0.1", ["for=192.0.2.60\"x\""] => "10.0.0.1";
        fwd_empty_value: Forwarded, "10.0.0.1", ["for="] => "10.0.0.1";
        fwd_empty_quoted_value: Forwarded, "10.0.0.1", ["for=\"\""] => "10.0.0.1";
        fwd_pair_without_value: Forwarded, "10.0.0.1", ["for=192.0.2.60;secure"] => "10.0.0.1";
        fwd_bad_parameter_name: Forwarded, "10.0.0.1", ["for=192.0.2.60;p(x)=1"] => "10.0.0.1";
        fwd_empty_pairs_allowed: Forwarded, "10.0.0.1", [";for=192.0.2.60;;proto=http;"] => "192.0.2.60";
        fwd_bare_ipv6_is_read: Forwarded, "10.0.0.1", ["for=2001:db8::1"] => "2001:db8::1";
        fwd_bare_bracketed_ipv6: Forwarded, "10.0.0.1", ["for=[2001:db8::1]:4711"] => "2001:db8::1";
        fwd_mapped_hop_is_trusted_as_ipv4: Forwarded, "10.0.0.1", ["for=192.0.2.60, for=\"[::ffff:10.0.0.2]\""] => "192.0.2.60";
        fwd_lines_in_order: Forwarded, "10.0.0.1", ["for=6.6.6.6", "for=192.0.2.60", "for=10.0.0.3;proto=https"] => "192.0.2.60";
        fwd_xff_syntax_is_garbage: Forwarded, "10.0.0.1", ["192.0.2.60"] => "10.0.0.1";
        fwd_blanks_trimmed: Forwarded, "::1", [" for=192.0.2.60 ; proto=http ,\tfor=10.0.0.2 "] => "192.0.2.60";
    }

    #[test]
    fn header_names() {
        assert_eq!(RealIp::default().header_name(), "x-forwarded-for");
        let real_ip = RealIp {
            header: ForwardHeader::Forwarded,
            ..RealIp::default()
        };
        assert_eq!(real_ip.header_name(), "forwarded");
        assert_eq!(ForwardHeader::Forwarded.to_string(), "forwarded");
    }

    #[test]
    fn nothing_is_trusted_by_default() {
        let real_ip = RealIp::default();
        for peer in ["127.0.0.1", "10.0.0.1", "::1"] {
            let lines: [&[u8]; 1] = [b"192.0.2.60"];
            assert_eq!(real_ip.client_addr(ip(peer), lines), ip(peer));
        }
    }

    #[test]
    fn hops_lists_each_element() {
        let xff: Vec<_> = hops(ForwardHeader::XForwardedFor, b"192.0.2.1, x,,[::1]:80 ").collect();
        assert_eq!(xff, [Some(ip("192.0.2.1")), None, Some(ip("::1"))]);
        let fwd: Vec<_> = hops(
            ForwardHeader::Forwarded,
            b"for=192.0.2.1;host=\"a,b\", for=_x, by=10.0.0.1",
        )
        .collect();
        assert_eq!(fwd, [Some(ip("192.0.2.1")), None, None]);
    }
}
