//! The proxies whose word on a client's address is believed: a short list of IPv4 and IPv6
//! networks, parsed once at start from `--trusted-proxies` and asked once per connection or
//! request.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A set of IPv4 and IPv6 networks (CIDRs). Empty, the default, trusts no address.
///
/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack listener reports for an IPv4
/// client) is one IPv4 address: it is matched against the IPv4 networks, and an entry written in
/// that form becomes the IPv4 network it maps. IPv6 entries match IPv6 addresses only, so `::/0`
/// trusts every IPv6 client and no IPv4 one.
///
/// [`contains`](Self::contains) scans every network: an operator lists a handful, and a scan of a
/// few masks costs less than any tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// `(network, mask)`, the network's host bits zero.
    v4: Vec<(u32, u32)>,
    /// `(network, mask)`, the network's host bits zero.
    v6: Vec<(u128, u128)>,
}

/// The networks `private` stands for: RFC 1918 §3, loopback (RFC 1122 §3.2.1.3), RFC 4193 §3.1
/// (unique local addresses) and the IPv6 loopback (RFC 4291 §2.5.3).
pub const PRIVATE: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "fc00::/7",
    "::1/128",
];

/// The keyword of `--trusted-proxies` that stands for [`PRIVATE`].
const PRIVATE_KEYWORD: &str = "private";

impl TrustedProxies {
    /// Whether `ip` is in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let ip = u32::from(v4);
                self.v4.iter().any(|&(net, mask)| ip & mask == net)
            }
            IpAddr::V6(v6) => {
                let ip = u128::from(v6);
                self.v6.iter().any(|&(net, mask)| ip & mask == net)
            }
        }
    }

    /// Whether no address is trusted.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Adds one entry: an address, a CIDR, or `private`.
    fn add(&mut self, entry: &str) -> Result<(), TrustedProxyError> {
        if entry.eq_ignore_ascii_case(PRIVATE_KEYWORD) {
            for net in PRIVATE {
                self.add(net)?;
            }
            return Ok(());
        }
        let (addr, prefix) = match entry.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (entry, None),
        };
        let Ok(addr) = addr.parse::<IpAddr>() else {
            return Err(TrustedProxyError::NotAnAddress {
                entry: entry.to_owned(),
            });
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // Digits only: `u8::from_str` would take a leading `+`.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => {
                        return Err(TrustedProxyError::BadPrefix {
                            entry: entry.to_owned(),
                            max,
                        })
                    }
                }
            }
            Some(_) => {
                return Err(TrustedProxyError::BadPrefix {
                    entry: entry.to_owned(),
                    max,
                })
            }
        };
        match addr {
            IpAddr::V4(v4) => self.add_v4(entry, v4, prefix),
            // An IPv4-mapped network whose prefix covers the mapping's 96 bits is an IPv4 one;
            // kept as IPv6 it could never match, addresses being compared as IPv4.
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => self.add_v4(entry, v4, prefix - 96),
                _ => self.add_v6(entry, v6, prefix),
            },
        }
    }

    fn add_v4(&mut self, entry: &str, addr: Ipv4Addr, prefix: u8) -> Result<(), TrustedProxyError> {
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let ip = u32::from(addr);
        check_host_bits(entry, ip & mask == ip, || {
            format!("{}/{prefix}", Ipv4Addr::from(ip & mask))
        })?;
        self.v4.push((ip, mask));
        Ok(())
    }

    fn add_v6(&mut self, entry: &str, addr: Ipv6Addr, prefix: u8) -> Result<(), TrustedProxyError> {
        let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        let ip = u128::from(addr);
        check_host_bits(entry, ip & mask == ip, || {
            format!("{}/{prefix}", Ipv6Addr::from(ip & mask))
        })?;
        self.v6.push((ip, mask));
        Ok(())
    }
}

/// `10.0.0.1/8` is refused rather than read as `10.0.0.0/8`: whoever wrote it meant either one
/// host or a network, and guessing wrong would trust sixteen million addresses, or fail to trust
/// the proxy.
fn check_host_bits(
    entry: &str,
    clear: bool,
    network: impl FnOnce() -> String,
) -> Result<(), TrustedProxyError> {
    if clear {
        return Ok(());
    }
    Err(TrustedProxyError::HostBitsSet {
        entry: entry.to_owned(),
        network: network(),
    })
}

impl FromStr for TrustedProxies {
    type Err = TrustedProxyError;

    /// Comma-separated entries, each an IPv4 or IPv6 address, a CIDR, or `private`; blanks
    /// around entries and empty entries are ignored, so `""` is the empty set.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = TrustedProxies::default();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            set.add(entry)?;
        }
        Ok(set)
    }
}

impl fmt::Display for TrustedProxies {
    /// The networks in CIDR form, comma-separated, `private` spelled out: what herald logs at
    /// start.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v4 = self
            .v4
            .iter()
            .map(|&(net, mask)| format!("{}/{}", Ipv4Addr::from(net), mask.count_ones()));
        let v6 = self
            .v6
            .iter()
            .map(|&(net, mask)| format!("{}/{}", Ipv6Addr::from(net), mask.count_ones()));
        for (i, net) in v4.chain(v6).enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&net)?;
        }
        Ok(())
    }
}

/// An entry of `--trusted-proxies` that names no network. Each variant carries the entry as
/// written, so the message at start points at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedProxyError {
    /// Neither an IP address, a CIDR, nor `private`.
    NotAnAddress { entry: String },
    /// A prefix length that is not a number from 0 to `max`.
    BadPrefix { entry: String, max: u8 },
    /// An address with bits set below its prefix; `network` is what the prefix keeps.
    HostBitsSet { entry: String, network: String },
}

impl fmt::Display for TrustedProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustedProxyError::NotAnAddress { entry } => write!(
                f,
                "`{entry}` is neither an IP address, a CIDR (10.0.0.0/8, 2001:db8::/32) nor `private`"
            ),
            TrustedProxyError::BadPrefix { entry, max } => {
                write!(f, "`{entry}`: the prefix length must be a number from 0 to {max}")
            }
            TrustedProxyError::HostBitsSet { entry, network } => write!(
                f,
                "`{entry}` has bits set below its prefix: write the network, {network}, or the address alone for one host"
            ),
        }
    }
}

impl std::error::Error for TrustedProxyError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> TrustedProxies {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_trusts_nothing() {
        for s in ["", " ", ",", " , ,"] {
            let t = set(s);
            assert!(t.is_empty(), "{s:?}");
            assert!(!t.contains(ip("127.0.0.1")));
            assert!(!t.contains(ip("::1")));
        }
        assert_eq!(TrustedProxies::default(), set(""));
    }

    #[test]
    fn private_is_rfc1918_rfc4193_and_loopback() {
        let t = set("private");
        assert_eq!(t, set(&PRIVATE.join(",")));
        assert_eq!(
            t.to_string(),
            "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.0/8,fc00::/7,::1/128"
        );
        for inside in [
            "10.0.0.0",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "192.168.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "fc00::1",
            "fd12:3456:789a::1",
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::1",
            "::ffff:10.1.2.3",
            "::ffff:127.0.0.1",
        ] {
            assert!(t.contains(ip(inside)), "{inside}");
        }
        for outside in [
            "9.255.255.255",
            "11.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "128.0.0.1",
            "169.254.0.1",
            "100.64.0.1",
            "8.8.8.8",
            "fe80::1",
            "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe00::",
            "::2",
            "::",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!t.contains(ip(outside)), "{outside}");
        }
        assert_eq!(set("PRIVATE"), t);
        assert_eq!(
            set("private, private"),
            set(&[PRIVATE, PRIVATE].concat().join(","))
        );
    }

    #[test]
    fn bare_addresses_are_one_host() {
        let t = set("192.0.2.7, 2001:db8::7");
        assert_eq!(t, set("192.0.2.7/32,2001:db8::7/128"));
        assert!(t.contains(ip("192.0.2.7")));
        assert!(!t.contains(ip("192.0.2.6")));
        assert!(!t.contains(ip("192.0.2.8")));
        assert!(t.contains(ip("2001:db8::7")));
        assert!(!t.contains(ip("2001:db8::6")));
        assert!(!t.contains(ip("2001:db8::8")));
    }

    #[test]
    fn prefix_edges() {
        let all_v4 = set("0.0.0.0/0");
        assert!(all_v4.contains(ip("0.0.0.0")));
        assert!(all_v4.contains(ip("255.255.255.255")));
        assert!(all_v4.contains(ip("::ffff:1.2.3.4")));
        assert!(
            !all_v4.contains(ip("::1")),
            "an IPv4 entry matches IPv4 only"
        );

        let all_v6 = set("::/0");
        assert!(all_v6.contains(ip("::")));
        assert!(all_v6.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!all_v6.contains(ip("1.2.3.4")));
        assert!(
            !all_v6.contains(ip("::ffff:1.2.3.4")),
            "a mapped address is an IPv4 one"
        );

        let t = set("203.0.113.128/25, 2001:db8:ab00::/40, 198.51.100.255/32, ::/128");
        assert!(!t.contains(ip("203.0.113.127")));
        assert!(t.contains(ip("203.0.113.128")));
        assert!(t.contains(ip("203.0.113.255")));
        assert!(!t.contains(ip("203.0.114.0")));
        assert!(t.contains(ip("2001:db8:ab00::")));
        assert!(t.contains(ip("2001:db8:abff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!t.contains(ip("2001:db8:ac00::")));
        assert!(!t.contains(ip("2001:db8:aaff:ffff:ffff:ffff:ffff:ffff")));
        assert!(t.contains(ip("198.51.100.255")));
        assert!(!t.contains(ip("198.51.100.254")));
        assert!(t.contains(ip("::")));
        assert!(!t.contains(ip("::1")));
    }

    #[test]
    fn mapped_entries_become_ipv4_networks() {
        assert_eq!(set("::ffff:10.0.0.0/104"), set("10.0.0.0/8"));
        assert_eq!(set("::ffff:192.0.2.1"), set("192.0.2.1"));
        assert_eq!(set("::ffff:0.0.0.0/96"), set("0.0.0.0/0"));
        assert!(set("::ffff:10.0.0.0/104").contains(ip("10.9.8.7")));
        // Wider than the mapping: an IPv6 network, matching IPv6 addresses only.
        let wide = set("::fffe:0:0/95");
        assert!(!wide.contains(ip("10.0.0.1")));
        assert!(!wide.contains(ip("::ffff:10.0.0.1")));
        assert!(wide.contains(ip("::fffe:0:1")));
    }

    #[test]
    fn host_bits_set_are_refused_naming_the_network() {
        for (entry, network) in [
            ("10.0.0.1/8", "10.0.0.0/8"),
            ("192.0.2.1/0", "0.0.0.0/0"),
            ("172.16.0.0/11", "172.0.0.0/11"),
            ("2001:db8::1/32", "2001:db8::/32"),
            ("::1/0", "::/0"),
            ("::ffff:10.0.0.1/104", "10.0.0.0/8"),
        ] {
            let e = entry.parse::<TrustedProxies>().unwrap_err();
            assert_eq!(
                e,
                TrustedProxyError::HostBitsSet {
                    entry: entry.to_owned(),
                    network: network.to_owned()
                }
            );
            assert!(e.to_string().contains(entry), "{e}");
        }
    }

    #[test]
    fn invalid_entries_are_refused_naming_the_entry() {
        for (list, entry) in [
            ("10.0.0.0/8, proxy.example", "proxy.example"),
            ("10.0.0", "10.0.0"),
            ("010.0.0.1", "010.0.0.1"),
            ("256.0.0.1", "256.0.0.1"),
            ("fe80::1%eth0", "fe80::1%eth0"),
            ("[::1]", "[::1]"),
            ("privat", "privat"),
            ("10.0.0.0 /8", "10.0.0.0 /8"),
        ] {
            let e = list.parse::<TrustedProxies>().unwrap_err();
            assert_eq!(
                e,
                TrustedProxyError::NotAnAddress {
                    entry: entry.to_owned()
                },
                "{list}"
            );
            assert!(e.to_string().contains(entry), "{e}");
        }
        for (entry, max) in [
            ("10.0.0.0/33", 32),
            ("10.0.0.0/", 32),
            ("10.0.0.0/+8", 32),
            ("10.0.0.0/-1", 32),
            ("10.0.0.0/8/8", 32),
            ("10.0.0.0/8 10.1.0.0/16", 32),
            ("10.0.0.0/0008", 32),
            ("::/129", 128),
            ("::/x", 128),
        ] {
            let e = entry.parse::<TrustedProxies>().unwrap_err();
            assert_eq!(
                e,
                TrustedProxyError::BadPrefix {
                    entry: entry.to_owned(),
                    max
                }
            );
            assert!(e.to_string().contains(entry), "{e}");
        }
    }

    #[test]
    fn display_reads_back_as_the_same_set() {
        let t = set("private, 192.0.2.7, 2001:db8::/32, ::ffff:198.51.100.0/120");
        assert_eq!(set(&t.to_string()), t);
    }
}
