//! Browser origins (RFC 6454): the `Origin` a page's request carries, and the lists of origins
//! `--cors-origins` and `--allowed-origins` are written in. Parsed once at start into
//! [`Origins`]; a request's `Origin` is then matched without allocating. No I/O.
//!
//! An entry is one of:
//! - `*`: every origin. It stands alone: beside other entries it would make them meaningless.
//! - `scheme://host[:port]`, exactly as a browser serializes an origin
//!   (`https://app.example.com`, `http://localhost:3000`, `http://[::1]:8080`).
//! - `scheme://*.domain[:port]`: every host one or more labels below `domain`
//!   (`https://*.example.com` takes `https://a.example.com` and `https://a.b.example.com`, not
//!   `https://example.com` nor `https://evil-example.com`). `*` is only ever the whole of the
//!   leftmost label.
//!
//! The scheme must be the origin's; so must the port: an entry without a port takes only origins
//! without one. A scheme's default port is no port (`https://a.com:443` is `https://a.com`), as
//! browsers never send it. Scheme and host compare without case, as browsers lowercase both. An
//! origin has no path, so `https://app.example.com/` is refused, as is `null` (the origin of
//! sandboxed pages and local files, which any page can borrow).

use std::fmt;

/// Most characters in a host name (RFC 1035 §2.3.4), and in one of its labels.
const MAX_HOST: usize = 253;
const MAX_LABEL: usize = 63;

/// The origins a list admits, parsed from its entries. Empty: nothing was configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins {
    /// `*` was given (then alone): every origin.
    any: bool,
    rules: Vec<Rule>,
}

/// One `scheme://host[:port]` entry, lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    scheme: Box<str>,
    host: HostRule,
    /// `None`: the origin must have no port (or its scheme's default).
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    /// This host exactly.
    Exact(Box<str>),
    /// Any host ending in this suffix, which starts with its dot (`.example.com`), with at least
    /// one label before it.
    Below(Box<str>),
}

/// Why a list of origins was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginError {
    /// The entry is not an origin or a pattern of origins.
    Malformed { entry: String, why: &'static str },
    /// `*` was listed beside other entries.
    AnyAmongOthers,
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginError::Malformed { entry, why } => write!(
                f,
                "{entry:?} is not an origin: {why} (write scheme://host[:port], \
                 scheme://*.domain[:port], or * alone)"
            ),
            OriginError::AnyAmongOthers => {
                f.write_str("* already admits every origin: give it alone, or list origins")
            }
        }
    }
}

impl std::error::Error for OriginError {}

impl Origins {
    /// Parses a list's entries. Empty entries (a trailing comma) and spaces around an entry are
    /// ignored.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Origins, OriginError> {
        let mut origins = Origins::default();
        for entry in entries.iter().map(|e| e.as_ref().trim()) {
            match Entry::parse(entry)? {
                Entry::Blank => {}
                Entry::Any => origins.any = true,
                Entry::Rule(rule) => origins.rules.push(rule),
            }
        }
        if origins.any && !origins.rules.is_empty() {
            return Err(OriginError::AnyAmongOthers);
        }
        Ok(origins)
    }

    /// Checks one entry alone, as the command line is read.
    pub fn check_entry(entry: &str) -> Result<(), OriginError> {
        Entry::parse(entry.trim()).map(|_| ())
    }

    /// Nothing was configured.
    pub fn is_empty(&self) -> bool {
        !self.any && self.rules.is_empty()
    }

    /// `*`: every origin.
    pub fn is_any(&self) -> bool {
        self.any
    }

    /// Whether the `Origin` header value `origin` is admitted. A value that is not a well-formed
    /// origin (including `null`) is admitted only by `*`.
    pub fn allows(&self, origin: &[u8]) -> bool {
        if self.any {
            return true;
        }
        let Some(parts) = std::str::from_utf8(origin)
            .ok()
            .and_then(|s| Parts::split(s, false).ok())
        else {
            return false;
        };
        self.rules.iter().any(|rule| rule.matches(&parts))
    }
}

/// One entry of a list.
enum Entry {
    Blank,
    Any,
    Rule(Rule),
}

impl Entry {
    fn parse(entry: &str) -> Result<Entry, OriginError> {
        match entry {
            "" => return Ok(Entry::Blank),
            "*" => return Ok(Entry::Any),
            _ => {}
        }
        let malformed = |why| OriginError::Malformed {
            entry: entry.to_owned(),
            why,
        };
        let parts = Parts::split(entry, true).map_err(malformed)?;
        let host = match parts.host.strip_prefix('*') {
            Some(suffix) => {
                // `split` let a `*` through only as the whole leftmost label, before a domain.
                let last = suffix.rsplit('.').next().unwrap_or_default();
                if last.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(malformed(
                        "a pattern stands for names under a domain, not IP addresses",
                    ));
                }
                HostRule::Below(suffix.to_ascii_lowercase().into())
            }
            None => HostRule::Exact(parts.host.to_ascii_lowercase().into()),
        };
        Ok(Entry::Rule(Rule {
            scheme: parts.scheme.to_ascii_lowercase().into(),
            host,
            port: parts.port,
        }))
    }
}

impl Rule {
    fn matches(&self, origin: &Parts<'_>) -> bool {
        self.port == origin.port
            && self.scheme.eq_ignore_ascii_case(origin.scheme)
            && match &self.host {
                HostRule::Exact(host) => host.eq_ignore_ascii_case(origin.host),
                HostRule::Below(suffix) => {
                    let host = origin.host.as_bytes();
                    // Longer than the suffix: at least one label comes before it, since a
                    // well-formed host has no empty label.
                    host.len() > suffix.len()
                        && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
                }
            }
    }
}

/// An origin taken apart, borrowing from the string it came from.
struct Parts<'a> {
    scheme: &'a str,
    /// A DNS name, an IPv4 address, or an IPv6 address in brackets.
    host: &'a str,
    /// `None` when absent or the scheme's default.
    port: Option<u16>,
}

impl<'a> Parts<'a> {
    /// Splits `s`, `scheme://host[:port]`; with `pattern`, the host may open with a `*` label.
    fn split(s: &'a str, pattern: bool) -> Result<Parts<'a>, &'static str> {
        let (scheme, authority) = s.split_once("://").ok_or("no scheme://")?;
        // RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
        let mut chars = scheme.bytes();
        if !chars.next().is_some_and(|b| b.is_ascii_alphabetic())
            || !chars.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err("the scheme is not letters, digits, +, - or .");
        }
        if authority.contains(['/', '?', '#']) {
            return Err("an origin has no path, query or fragment (drop any trailing /)");
        }
        if authority.contains('@') {
            return Err("an origin has no user name or password");
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (addr, after) = v6.split_once(']').ok_or("an unclosed [ in the host")?;
                if addr.is_empty()
                    || !addr
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
                {
                    return Err("the address in [ ] is not an IPv6 address");
                }
                let port = match after {
                    "" => None,
                    _ => Some(after.strip_prefix(':').ok_or("text after the ]")?),
                };
                (&authority[..addr.len() + 2], port)
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if !host.starts_with('[') {
            check_host(host, pattern)?;
        }
        let port = match port {
            None => None,
            Some(p) => {
                if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err("the port is not a number from 1 to 65535");
                }
                match p.parse::<u16>() {
                    Ok(0) | Err(_) => return Err("the port is not a number from 1 to 65535"),
                    Ok(n) => Some(n),
                }
            }
        };
        // RFC 6454 §6.2: the serialization leaves out the scheme's default port.
        let is = |name: &str| scheme.eq_ignore_ascii_case(name);
        let default = match () {
            _ if is("http") || is("ws") => Some(80),
            _ if is("https") || is("wss") => Some(443),
            _ => None,
        };
        let port = port.filter(|p| Some(*p) != default);
        Ok(Parts { scheme, host, port })
    }
}

/// A host name's labels: 1 to 63 letters, digits, `-` or `_` each, 253 characters in all; with
/// `pattern`, the first may be `*` if others follow.
fn check_host(host: &str, pattern: bool) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("no host");
    }
    if host.len() > MAX_HOST {
        return Err("the host is longer than 253 characters");
    }
    for (i, label) in host.split('.').enumerate() {
        if label == "*" && pattern && i == 0 {
            if host == "*" {
                return Err("a * needs a domain after it, as in https://*.example.com");
            }
            continue;
        }
        if label.contains('*') {
            return Err("* may only be the whole leftmost label, as in https://*.example.com");
        }
        if label.is_empty() || label.len() > MAX_LABEL {
            return Err("a label of the host is empty or longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("the host is not letters, digits, -, _ and dots");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Origins {
        Origins::parse(entries).unwrap_or_else(|e| panic!("{entries:?}: {e}"))
    }

    macro_rules! admits {
        ($($name:ident: $entries:expr => { $($origin:literal: $want:expr),* $(,)? };)*) => {$(
            #[test]
            fn $name() {
                let origins = list(&$entries);
                $(assert_eq!(
                    origins.allows($origin.as_bytes()), $want, "{:?} admits {}", $entries, $origin
                );)*
            }
        )*};
    }

    admits! {
        exact_origin: ["https://app.example.com"] => {
            "https://app.example.com": true,
            "HTTPS://App.Example.COM": true,
            "https://app.example.com:443": true,
            "http://app.example.com": false,
            "https://app.example.com:8443": false,
            "https://app.example.com.evil.net": false,
            "https://a.app.example.com": false,
            "https://app.example.com/": false,
            "null": false,
            "": false,
        };
        exact_with_port: ["http://localhost:3000"] => {
            "http://localhost:3000": true,
            "http://localhost": false,
            "http://localhost:3001": false,
        };
        default_port_written_out: ["https://app.example.com:443"] => {
            "https://app.example.com": true,
        };
        pattern_is_one_or_more_labels_below: ["https://*.example.com"] => {
            "https://a.example.com": true,
            "https://a.b.example.com": true,
            "https://A.EXAMPLE.com": true,
            "https://example.com": false,
            "https://evil-example.com": false,
            "https://aexample.com": false,
            "https://a.example.com.evil.net": false,
            "https://.example.com": false,
            "https://a..example.com": false,
            "http://a.example.com": false,
            "https://a.example.com:8443": false,
            "wss://a.example.com": false,
        };
        pattern_with_port: ["http://*.localhost:3000"] => {
            "http://app.localhost:3000": true,
            "http://app.localhost": false,
            "http://app.localhost:3001": false,
        };
        ipv6_literal: ["http://[::1]:8080"] => {
            "http://[::1]:8080": true,
            "http://[::2]:8080": false,
        };
        any: ["*"] => {
            "https://anything.example": true,
            "null": true,
            "not an origin": true,
        };
        several: ["http://localhost:3000", " https://*.example.com ", ""] => {
            "http://localhost:3000": true,
            "https://x.example.com": true,
            "https://example.com": false,
        };
    }

    #[test]
    fn empty_and_any_are_told_apart() {
        assert!(list(&[]).is_empty());
        assert!(list(&["", " "]).is_empty());
        assert!(!list(&["*"]).is_empty());
        assert!(list(&["*"]).is_any());
        assert!(!list(&["https://a.b"]).is_any());
    }

    #[test]
    fn malformed_entries_are_refused_by_name() {
        for entry in [
            "app.example.com",
            "https://",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://user@app.example.com",
            "https://app.example.com:0",
            "https://app.example.com:65536",
            "https://app.example.com:",
            "https://app.example.com:80a",
            "https://*",
            "https://*.*.example.com",
            "https://app-*.example.com",
            "https://app.*.com",
            "*.example.com",
            "https://*.0.0.1",
            "https://a..b",
            "https://[::1",
            "https://[zz]",
            "https://[::1]x",
            "1http://a.b",
            "null",
            "https://exa mple.com",
        ] {
            match Origins::parse(&[entry]) {
                Err(e @ OriginError::Malformed { .. }) => {
                    assert!(e.to_string().contains(&format!("{entry:?}")), "{e}")
                }
                other => panic!("{entry:?} was not refused: {other:?}"),
            }
            assert!(Origins::check_entry(entry).is_err(), "{entry:?}");
        }
    }

    #[test]
    fn any_stands_alone() {
        assert_eq!(
            Origins::parse(&["*", "https://a.b"]),
            Err(OriginError::AnyAmongOthers)
        );
        assert!(Origins::check_entry("*").is_ok());
    }

    #[test]
    fn a_long_host_is_refused() {
        let label = "a".repeat(64);
        assert!(Origins::check_entry(&format!("https://{label}.com")).is_err());
        let host = vec!["a".repeat(50); 6].join(".");
        assert!(Origins::check_entry(&format!("https://{host}")).is_err());
    }
}
