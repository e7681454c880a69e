//! The PROXY protocol, versions 1 and 2 (HAProxy's `proxy-protocol.txt`), receiving side: the
//! header a layer-4 load balancer sends before the client's first byte, naming the client's
//! address.
//!
//! [`decode`] reads it from the start of what the connection received and says how many bytes it
//! took; the bytes after it are the client's own and belong to the next layer (the HTTP request).
//! Both versions are accepted on the same listener, as the spec recommends (§2); a connection that
//! opens with anything else is refused, as it requires (§2: the receiver MUST NOT try to guess
//! whether the header is present).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 1 opens with `PROXY` and one space (§2.1).
const V1_PREFIX: &[u8] = b"PROXY ";

/// §2.1: the longest version 1 line, CRLF included (`PROXY UNKNOWN` with two full IPv6 addresses
/// and ports): "If the CRLF sequence is not found in the first 107 characters, the receiver
/// should declare the line invalid."
pub const V1_MAX_LEN: usize = 107;

/// Version 2 opens with these 12 bytes (§2.2), chosen to be refused by the common protocols.
const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// The fixed part of a version 2 header: signature, version and command, family and protocol,
/// and the length of what follows.
const V2_FIXED_LEN: usize = 16;

/// The longest version 2 header herald takes, fixed part, addresses and TLVs together. The
/// length field allows 64 KiB, but a header is meant to fit in the first segment (§2: both
/// formats fit in 536 bytes); the TLVs balancers add (AWS's VPC endpoint id, HAProxy's TLS
/// details, a unique id of up to 128 bytes) stay in the hundreds. 1,536 bytes, a full Ethernet
/// frame's worth, leaves room for those and keeps what a connection can make herald buffer
/// before it speaks small.
pub const V2_MAX_LEN: usize = 1536;

/// Version 2's command LOCAL: the proxy's own connection (a health check), its addresses ignored.
const CMD_LOCAL: u8 = 0x0;
/// Version 2's command PROXY: a relayed connection, whose addresses follow.
const CMD_PROXY: u8 = 0x1;

/// Version 2 address families (the high nibble of the 14th byte).
const AF_UNSPEC: u8 = 0x0;
const AF_INET: u8 = 0x1;
const AF_INET6: u8 = 0x2;
const AF_UNIX: u8 = 0x3;

/// Version 2 transport protocols (the low nibble of the 14th byte).
const PROTO_UNSPEC: u8 = 0x0;
const PROTO_STREAM: u8 = 0x1;
const PROTO_DGRAM: u8 = 0x2;

/// Which version of the protocol a header was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The human-readable line, `PROXY TCP4 ...\r\n`.
    V1,
    /// The binary header.
    V2,
}

/// A decoded PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The version it was written in.
    pub version: Version,
    /// The client's address and port, as the proxy accepted them. `None` when the header gives
    /// none: a LOCAL connection (the proxy's own health check), `UNKNOWN` in version 1, and in
    /// version 2 an unspecified, UNIX or datagram family. The connection's own peer address then
    /// stands (see [`Header::source_or`]).
    pub source: Option<SocketAddr>,
    /// The address the client connected to, on the proxy; `None` exactly when `source` is.
    pub destination: Option<SocketAddr>,
}

impl Header {
    /// The client's address: the header's source, or `peer`, the connection's own, when it
    /// names none.
    pub fn source_or(&self, peer: SocketAddr) -> SocketAddr {
        self.source.unwrap_or(peer)
    }
}

/// Decodes a PROXY protocol header, v1 or v2, from the start of `buf`.
///
/// Returns the header and how many bytes of `buf` it took (what follows is the client's first
/// bytes, to be kept), or `Ok(None)` while `buf` is the beginning of a header that may still be
/// valid: read more and call again with everything received. A fault is reported as soon as the
/// bytes show it: a connection opening with `GET ` is refused at its first byte.
pub fn decode(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyProtocolError> {
    let starts = |signature: &[u8]| {
        let n = buf.len().min(signature.len());
        buf[..n] == signature[..n]
    };
    if buf.is_empty() {
        Ok(None)
    } else if starts(&V2_SIGNATURE) {
        decode_v2(buf)
    } else if starts(V1_PREFIX) {
        decode_v1(buf)
    } else {
        Err(ProxyProtocolError::NotProxyProtocol)
    }
}

/// Version 1: `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n` or `PROXY UNKNOWN ...\r\n`.
fn decode_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyProtocolError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    match window.iter().position(|&b| b == b'\r' || b == b'\n') {
        // §2.1: "The receiver must not tolerate a single CR or LF character to end the line".
        Some(i) if window[i] == b'\n' => Err(ProxyProtocolError::V1Malformed),
        Some(i) => match window.get(i + 1) {
            Some(b'\n') => parse_v1_line(&window[..i]).map(|header| Some((header, i + 2))),
            Some(_) => Err(ProxyProtocolError::V1Malformed),
            // The CR is the 107th byte: its LF would be one too many.
            None if buf.len() >= V1_MAX_LEN => Err(ProxyProtocolError::V1TooLong),
            None => Ok(None),
        },
        None if buf.len() >= V1_MAX_LEN => Err(ProxyProtocolError::V1TooLong),
        None => Ok(None),
    }
}

/// One version 1 line without its CRLF. §2.1: "Any sequence which does not exactly match the
/// protocol must be discarded": one space between fields, addresses of the family named, no
/// leading zeros.
fn parse_v1_line(line: &[u8]) -> Result<Header, ProxyProtocolError> {
    let rest = &line[V1_PREFIX.len()..];
    // §2.1: for UNKNOWN "the receiver must ignore anything presented before the CRLF".
    if rest == b"UNKNOWN" || rest.starts_with(b"UNKNOWN ") {
        return Ok(Header {
            version: Version::V1,
            source: None,
            destination: None,
        });
    }
    let mut fields = rest.split(|&b| b == b' ');
    let protocol = fields.next().unwrap_or_default();
    if protocol != b"TCP4" && protocol != b"TCP6" {
        return Err(ProxyProtocolError::V1UnknownProtocol);
    }
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(ProxyProtocolError::V1Malformed);
    };
    let (src, dst) = match protocol {
        b"TCP4" => (
            IpAddr::V4(v1_addr::<Ipv4Addr>(src)?),
            IpAddr::V4(v1_addr::<Ipv4Addr>(dst)?),
        ),
        _ => (
            IpAddr::V6(v1_addr::<Ipv6Addr>(src)?),
            IpAddr::V6(v1_addr::<Ipv6Addr>(dst)?),
        ),
    };
    Ok(Header {
        version: Version::V1,
        source: Some(SocketAddr::new(src, v1_port(sport)?)),
        destination: Some(SocketAddr::new(dst, v1_port(dport)?)),
    })
}

/// An address of the family the line names. The standard parsers are as strict as §2.1 asks:
/// four decimal octets without leading zeros, or an IPv6 address with at most one `::`.
fn v1_addr<T: std::str::FromStr>(field: &[u8]) -> Result<T, ProxyProtocolError> {
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProxyProtocolError::V1BadAddress)
}

/// §2.1: "a decimal integer in the range [0..65535] inclusive. Heading zeroes are not
/// permitted".
fn v1_port(field: &[u8]) -> Result<u16, ProxyProtocolError> {
    let digits = !field.is_empty() && field.len() <= 5 && field.iter().all(u8::is_ascii_digit);
    let leading_zero = field.len() > 1 && field[0] == b'0';
    if !digits || leading_zero {
        return Err(ProxyProtocolError::V1BadPort);
    }
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProxyProtocolError::V1BadPort)
}

/// Version 2: the signature, then version and command, family and protocol, the length of the
/// rest, the addresses, and TLVs, which are skipped. Each fixed field is checked as soon as it
/// has arrived.
fn decode_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyProtocolError> {
    let Some(&version_command) = buf.get(12) else {
        return Ok(None);
    };
    // §2.2: the version "must always be sent as \x2 and the receiver must only accept this
    // value"; for the command, "Receivers must drop connections presenting unexpected values".
    let version = version_command >> 4;
    if version != 0x2 {
        return Err(ProxyProtocolError::V2BadVersion(version));
    }
    let command = version_command & 0x0F;
    if command != CMD_LOCAL && command != CMD_PROXY {
        return Err(ProxyProtocolError::V2BadCommand(command));
    }
    let Some(&family_protocol) = buf.get(13) else {
        return Ok(None);
    };
    let family = family_protocol >> 4;
    let protocol = family_protocol & 0x0F;
    // §2.2: for LOCAL the receiver must "discard the protocol block including the family which
    // is ignored"; for PROXY, other family and protocol values "must be rejected as invalid".
    if command == CMD_PROXY && (family > AF_UNIX || protocol > PROTO_DGRAM) {
        return Err(ProxyProtocolError::V2BadFamily(family_protocol));
    }
    let Some(len) = buf.get(14..V2_FIXED_LEN) else {
        return Ok(None);
    };
    let total = V2_FIXED_LEN + usize::from(u16::from_be_bytes([len[0], len[1]]));
    if total > V2_MAX_LEN {
        return Err(ProxyProtocolError::V2TooLong {
            len: total,
            max: V2_MAX_LEN,
        });
    }
    let Some(block) = buf.get(V2_FIXED_LEN..total) else {
        return Ok(None);
    };
    let (source, destination) = if command == CMD_LOCAL {
        (None, None)
    } else {
        v2_addresses(family, protocol, block)?
    };
    let header = Header {
        version: Version::V2,
        source,
        destination,
    };
    Ok(Some((header, total)))
}

/// The source and destination of a PROXY command's address block.
fn v2_addresses(
    family: u8,
    protocol: u8,
    block: &[u8],
) -> Result<(Option<SocketAddr>, Option<SocketAddr>), ProxyProtocolError> {
    // §2.2: with an unspecified protocol "The receiver should ignore address information", as
    // with an unspecified family.
    if family == AF_UNSPEC || protocol == PROTO_UNSPEC {
        return Ok((None, None));
    }
    let needed = match family {
        AF_INET => 2 * 4 + 2 * 2,
        AF_INET6 => 2 * 16 + 2 * 2,
        _ => 2 * 108,
    };
    let too_short = ProxyProtocolError::V2AddressesTooShort {
        family,
        len: block.len(),
        needed,
    };
    if block.len() < needed {
        return Err(too_short);
    }
    // §2.2: a receiver "is not required to implement other ones, provided that it
    // automatically falls back to the UNSPEC mode": a UNIX socket's path, or a datagram
    // protocol, says nothing about a TCP client herald could use.
    if protocol != PROTO_STREAM || family == AF_UNIX {
        return Ok((None, None));
    }
    let mut rest = block;
    let (src, dst) = if family == AF_INET {
        match (take::<4>(&mut rest), take::<4>(&mut rest)) {
            (Some(src), Some(dst)) => (IpAddr::from(src), IpAddr::from(dst)),
            _ => return Err(too_short),
        }
    } else {
        match (take::<16>(&mut rest), take::<16>(&mut rest)) {
            (Some(src), Some(dst)) => (IpAddr::from(src), IpAddr::from(dst)),
            _ => return Err(too_short),
        }
    };
    let (Some(sport), Some(dport)) = (take::<2>(&mut rest), take::<2>(&mut rest)) else {
        return Err(too_short);
    };
    Ok((
        Some(SocketAddr::new(src, u16::from_be_bytes(sport))),
        Some(SocketAddr::new(dst, u16::from_be_bytes(dport))),
    ))
}

/// The first `N` bytes of `bytes`, which then starts after them.
fn take<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = bytes.split_first_chunk::<N>()?;
    *bytes = rest;
    Some(*head)
}

/// A connection's opening that is not a PROXY protocol header herald takes. Every one is
/// answered the same way: the connection is closed without a byte written back (§2.1: "abort
/// the connection as soon as possible"), since herald cannot know what protocol it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocolError {
    /// The first bytes start neither signature: a client (or a proxy not set up to send the
    /// header) speaking straight to a listener that requires one.
    NotProxyProtocol,
    /// A version 1 line that is not `TCP4`, `TCP6` or `UNKNOWN` and five space-separated fields,
    /// or that ends in a lone CR or LF.
    V1Malformed,
    /// A version 1 protocol other than `TCP4`, `TCP6` and `UNKNOWN`.
    V1UnknownProtocol,
    /// A version 1 address that is not one of the family named, in its canonical form.
    V1BadAddress,
    /// A version 1 port that is not a decimal number from 0 to 65535 without leading zeros.
    V1BadPort,
    /// No CRLF within the 107 bytes a version 1 line may take.
    V1TooLong,
    /// A version 2 header of another version than 2.
    V2BadVersion(u8),
    /// A version 2 command other than LOCAL and PROXY.
    V2BadCommand(u8),
    /// A version 2 PROXY header whose family or protocol (the 14th byte) is unassigned.
    V2BadFamily(u8),
    /// A version 2 address block shorter than its family's addresses.
    V2AddressesTooShort {
        /// The family, 1 (IPv4), 2 (IPv6) or 3 (UNIX).
        family: u8,
        /// The address block's length, TLVs included.
        len: usize,
        /// What the family's addresses take.
        needed: usize,
    },
    /// A version 2 header longer than herald takes.
    V2TooLong {
        /// Its length, the fixed part included.
        len: usize,
        /// [`V2_MAX_LEN`].
        max: usize,
    },
}

impl fmt::Display for ProxyProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyProtocolError::NotProxyProtocol => {
                f.write_str("the connection does not open with a PROXY protocol header")
            }
            ProxyProtocolError::V1Malformed => f.write_str("malformed PROXY v1 line"),
            ProxyProtocolError::V1UnknownProtocol => {
                f.write_str("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN")
            }
            ProxyProtocolError::V1BadAddress => {
                f.write_str("PROXY v1 address is not one of the family named")
            }
            ProxyProtocolError::V1BadPort => f.write_str("PROXY v1 port is not 0 to 65535"),
            ProxyProtocolError::V1TooLong => {
                write!(
                    f,
                    "PROXY v1 line without CRLF in its first {V1_MAX_LEN} bytes"
                )
            }
            ProxyProtocolError::V2BadVersion(v) => write!(f, "PROXY v2 header of version {v:#x}"),
            ProxyProtocolError::V2BadCommand(c) => write!(f, "PROXY v2 command {c:#x}"),
            ProxyProtocolError::V2BadFamily(b) => {
                write!(f, "PROXY v2 family and protocol {b:#04x}")
            }
            ProxyProtocolError::V2AddressesTooShort {
                family,
                len,
                needed,
            } => write!(
                f,
                "PROXY v2 address block of {len} bytes for family {family}, which needs {needed}"
            ),
            ProxyProtocolError::V2TooLong { len, max } => {
                write!(f, "PROXY v2 header of {len} bytes, more than {max}")
            }
        }
    }
}

impl std::error::Error for ProxyProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn header(version: Version, src: &str, dst: &str) -> Header {
        Header {
            version,
            source: Some(addr(src)),
            destination: Some(addr(dst)),
        }
    }

    const NO_ADDRESS_V1: Header = Header {
        version: Version::V1,
        source: None,
        destination: None,
    };

    const NO_ADDRESS_V2: Header = Header {
        version: Version::V2,
        source: None,
        destination: None,
    };

    /// Decodes `input` whole, then requires every shorter prefix to be `Ok(None)`: a header is
    /// taken only once complete, and never refused for being cut short. Returns the whole's
    /// result.
    fn decode_checking_prefixes(
        input: &[u8],
    ) -> Result<Option<(Header, usize)>, ProxyProtocolError> {
        let whole = decode(input);
        if let Ok(Some((_, used))) = whole {
            for n in 0..used {
                assert_eq!(decode(&input[..n]), Ok(None), "{n} of {used} bytes");
            }
        }
        whole
    }

    /// `input` decodes to `want`, taking `used` bytes, and the same with bytes after it.
    fn assert_decodes(input: &[u8], want: Header, used: usize) {
        assert_eq!(decode_checking_prefixes(input), Ok(Some((want, used))));
        let mut more = input.to_vec();
        more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(decode(&more), Ok(Some((want, used))));
    }

    // §2.1's example.
    #[test]
    fn v1_spec_example() {
        let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
        let input = [&line[..], b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"].concat();
        let want = header(Version::V1, "192.168.0.1:56324", "192.168.0.11:443");
        assert_eq!(decode(&input), Ok(Some((want, line.len()))));
        assert_eq!(&input[line.len()..line.len() + 4], b"GET ");
        assert_decodes(line, want, line.len());
    }

    // §2.1's longest lines, 56 and 104 bytes, and the short and worst-case UNKNOWN ones, 15 and
    // 107.
    #[test]
    fn v1_spec_lengths() {
        let tcp4 = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
        assert_eq!(tcp4.len(), 56);
        assert_decodes(
            tcp4,
            header(
                Version::V1,
                "255.255.255.255:65535",
                "255.255.255.255:65535",
            ),
            56,
        );
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let tcp6 = format!("PROXY TCP6 {full} {full} 65535 65535\r\n");
        assert_eq!(tcp6.len(), 104);
        let sock = format!("[{full}]:65535");
        assert_decodes(tcp6.as_bytes(), header(Version::V1, &sock, &sock), 104);
        assert_decodes(b"PROXY UNKNOWN\r\n", NO_ADDRESS_V1, 15);
        let worst = format!("PROXY UNKNOWN {full} {full} 65535 65535\r\n");
        assert_eq!(worst.len(), V1_MAX_LEN);
        assert_decodes(worst.as_bytes(), NO_ADDRESS_V1, V1_MAX_LEN);
    }

    #[test]
    fn v1_tcp6_and_zero_port() {
        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 0 443\r\n";
        assert_decodes(
            line,
            header(Version::V1, "[2001:db8::1]:0", "[2001:db8::2]:443"),
            line.len(),
        );
    }

    #[test]
    fn v1_unknown_ignores_the_rest_of_its_line() {
        let line = b"PROXY UNKNOWN whatever \x01 it says\r\n";
        assert_decodes(line, NO_ADDRESS_V1, line.len());
    }

    #[test]
    fn v1_faults() {
        use ProxyProtocolError::*;
        for (input, want) in [
            (&b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..], V1Malformed),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", V1Malformed),
            (b"PROXY\r\n", NotProxyProtocol),
            (b"PROXY \r\n", V1UnknownProtocol),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", V1Malformed),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", V1Malformed),
            (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", V1Malformed),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", V1Malformed),
            (b"PROXY UNKNOWNX\r\n", V1UnknownProtocol),
            (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", V1UnknownProtocol),
            (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", V1UnknownProtocol),
            (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", V1UnknownProtocol),
            (b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", V1BadAddress),
            (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", V1BadAddress),
            (b"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", V1BadAddress),
            (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", V1BadAddress),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", V1BadAddress),
            (b"PROXY TCP6 ::1 ::1%eth0 1 2\r\n", V1BadAddress),
            (b"PROXY TCP6 [::1] ::1 1 2\r\n", V1BadAddress),
            (b"PROXY TCP4 1.2.3.4 5.6.7.\xff 1 2\r\n", V1BadAddress),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", V1BadPort),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 080\r\n", V1BadPort),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", V1BadPort),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", V1BadPort),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n", V1BadPort),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n", V1BadPort),
        ] {
            assert_eq!(decode(input), Err(want), "{}", input.escape_ascii());
        }
    }

    #[test]
    fn v1_without_crlf_in_107_bytes_is_too_long() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(V1_MAX_LEN - 1, b'x');
        assert_eq!(decode(&line), Ok(None));
        line.push(b'\r');
        assert_eq!(decode(&line), Err(ProxyProtocolError::V1TooLong));
        line.push(b'\n');
        assert_eq!(decode(&line), Err(ProxyProtocolError::V1TooLong));
        line.truncate(V1_MAX_LEN - 1);
        line.push(b'x');
        assert_eq!(decode(&line), Err(ProxyProtocolError::V1TooLong));
    }

    #[test]
    fn v1_cut_short_waits() {
        for input in [
            &b"P"[..],
            b"PROXY",
            b"PROXY ",
            b"PROXY TCP4 1.2.3.4",
            b"PROXY UNKNOWN\r",
        ] {
            assert_eq!(decode(input), Ok(None), "{}", input.escape_ascii());
        }
    }

    #[test]
    fn anything_else_is_refused_at_its_first_telling_byte() {
        for input in [
            &b"G"[..],
            b"GET / HTTP/1.1\r\n",
            b"PROXX",
            b"PROXY\t",
            b"proxy ",
            b"\x16\x03\x01",
            b"\r\n\r\n\x00\r\nQUIX",
            b"\r\r",
            b"\x00",
        ] {
            assert_eq!(
                decode(input),
                Err(ProxyProtocolError::NotProxyProtocol),
                "{}",
                input.escape_ascii()
            );
        }
        assert_eq!(decode(b""), Ok(None));
    }

    /// A version 2 header: signature, version 2 and `command`, `family_protocol`, and `block`
    /// (addresses and TLVs) with its length.
    fn v2(command: u8, family_protocol: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family_protocol);
        out.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    /// 192.0.2.1:56324 to 198.51.100.1:443, as a version 2 address block.
    const INET_BLOCK: [u8; 12] = [
        0xC0, 0x00, 0x02, 0x01, // source 192.0.2.1
        0xC6, 0x33, 0x64, 0x01, // destination 198.51.100.1
        0xDC, 0x04, // source port 56324
        0x01, 0xBB, // destination port 443
    ];

    /// [2001:db8::1]:4711 to [2001:db8::2]:443.
    const INET6_BLOCK: [u8; 36] = [
        0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // source
        0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // destination
        0x12, 0x67, // source port 4711
        0x01, 0xBB, // destination port 443
    ];

    #[test]
    fn v2_tcp_over_ipv4() {
        // Byte by byte: what haproxy's `send-proxy-v2` sends for such a connection.
        let input: [u8; 28] = [
            0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54,
            0x0A, // signature
            0x21, // version 2, PROXY
            0x11, // AF_INET, STREAM
            0x00, 0x0C, // 12 bytes follow
            0xC0, 0x00, 0x02, 0x01, 0xC6, 0x33, 0x64, 0x01, 0xDC, 0x04, 0x01, 0xBB,
        ];
        assert_eq!(input[..], v2(CMD_PROXY, 0x11, &INET_BLOCK)[..]);
        assert_decodes(
            &input,
            header(Version::V2, "192.0.2.1:56324", "198.51.100.1:443"),
            28,
        );
    }

    #[test]
    fn v2_tcp_over_ipv6() {
        assert_decodes(
            &v2(CMD_PROXY, 0x21, &INET6_BLOCK),
            header(Version::V2, "[2001:db8::1]:4711", "[2001:db8::2]:443"),
            52,
        );
    }

    #[test]
    fn v2_tlvs_are_skipped() {
        let mut block = INET_BLOCK.to_vec();
        // PP2_TYPE_ALPN "h2", PP2_TYPE_AUTHORITY "example.com", PP2_TYPE_NOOP of 3 bytes.
        block.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']);
        block.extend_from_slice(&[0x02, 0x00, 0x0B]);
        block.extend_from_slice(b"example.com");
        block.extend_from_slice(&[0x04, 0x00, 0x03, 0, 0, 0]);
        let input = v2(CMD_PROXY, 0x11, &block);
        assert_decodes(
            &input,
            header(Version::V2, "192.0.2.1:56324", "198.51.100.1:443"),
            16 + block.len(),
        );
    }

    #[test]
    fn v2_local_keeps_the_peer() {
        // §2.2: the family is ignored for LOCAL, and addresses may be present all the same.
        for (family_protocol, block) in [
            (0x00, &[][..]),
            (0x11, &INET_BLOCK[..]),
            (0xFF, &[1, 2, 3][..]),
        ] {
            let input = v2(CMD_LOCAL, family_protocol, block);
            assert_decodes(&input, NO_ADDRESS_V2, 16 + block.len());
        }
        let h = decode(&v2(CMD_LOCAL, 0x00, &[])).unwrap().unwrap().0;
        assert_eq!(h.source_or(addr("10.0.0.1:5000")), addr("10.0.0.1:5000"));
        let h = decode(&v2(CMD_PROXY, 0x11, &INET_BLOCK))
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(h.source_or(addr("10.0.0.1:5000")), addr("192.0.2.1:56324"));
    }

    #[test]
    fn v2_without_a_usable_address_keeps_the_peer() {
        let unix = [0u8; 216];
        for (family_protocol, block) in [
            (0x00, &[][..]),          // UNSPEC
            (0x01, &[][..]),          // UNSPEC over STREAM
            (0x10, &INET_BLOCK[..]),  // AF_INET, unspecified protocol
            (0x12, &INET_BLOCK[..]),  // UDP over IPv4
            (0x22, &INET6_BLOCK[..]), // UDP over IPv6
            (0x31, &unix[..]),        // UNIX stream
            (0x32, &unix[..]),        // UNIX datagram
        ] {
            let input = v2(CMD_PROXY, family_protocol, block);
            assert_decodes(&input, NO_ADDRESS_V2, 16 + block.len());
        }
    }

    #[test]
    fn v2_cut_at_every_length_waits() {
        let mut block = INET6_BLOCK.to_vec();
        block.extend_from_slice(&[0x05, 0x00, 0x04, 1, 2, 3, 4]);
        let input = v2(CMD_PROXY, 0x21, &block);
        for n in 0..input.len() {
            assert_eq!(decode(&input[..n]), Ok(None), "{n} bytes");
        }
        assert!(matches!(decode(&input), Ok(Some((_, 59)))));
    }

    #[test]
    fn v2_faults() {
        use ProxyProtocolError::*;
        let mut bad_version = v2(CMD_PROXY, 0x11, &INET_BLOCK);
        bad_version[12] = 0x11;
        assert_eq!(decode(&bad_version[..13]), Err(V2BadVersion(1)));
        bad_version[12] = 0x31;
        assert_eq!(decode(&bad_version), Err(V2BadVersion(3)));
        assert_eq!(
            decode(&v2(0x2, 0x11, &INET_BLOCK)[..13]),
            Err(V2BadCommand(2))
        );
        assert_eq!(decode(&v2(0xF, 0x00, &[])), Err(V2BadCommand(0xF)));
        for family_protocol in [0x41, 0x13, 0x03, 0xF1] {
            let input = v2(CMD_PROXY, family_protocol, &INET_BLOCK);
            assert_eq!(decode(&input[..14]), Err(V2BadFamily(family_protocol)));
        }
        for (family_protocol, block, family, needed) in [
            (0x11, &INET_BLOCK[..11], 1, 12),
            (0x21, &INET6_BLOCK[..35], 2, 36),
            (0x21, &INET_BLOCK[..], 2, 36),
            (0x31, &INET6_BLOCK[..], 3, 216),
            (0x12, &[][..], 1, 12),
        ] {
            assert_eq!(
                decode(&v2(CMD_PROXY, family_protocol, block)),
                Err(V2AddressesTooShort {
                    family,
                    len: block.len(),
                    needed
                }),
            );
        }
    }

    #[test]
    fn v2_over_the_cap_is_refused_from_its_length() {
        let at_cap = vec![0u8; V2_MAX_LEN - 16];
        let input = v2(CMD_PROXY, 0x11, &at_cap);
        // Its first twelve zero bytes are 0.0.0.0:0 to 0.0.0.0:0, the rest a TLV area.
        assert_eq!(
            decode(&input),
            Ok(Some((
                header(Version::V2, "0.0.0.0:0", "0.0.0.0:0"),
                V2_MAX_LEN
            )))
        );
        let over = v2(CMD_PROXY, 0x11, &[0u8; V2_MAX_LEN - 15]);
        // Refused as soon as the length has arrived, before the block is waited for.
        assert_eq!(
            decode(&over[..16]),
            Err(ProxyProtocolError::V2TooLong {
                len: V2_MAX_LEN + 1,
                max: V2_MAX_LEN
            })
        );
        let mut most = v2(CMD_LOCAL, 0x00, &[]);
        most[14..16].copy_from_slice(&[0xFF, 0xFF]);
        assert_eq!(
            decode(&most),
            Err(ProxyProtocolError::V2TooLong {
                len: 16 + 0xFFFF,
                max: V2_MAX_LEN
            })
        );
    }
}
