//! The one percent-decoder (RFC 3986 §2.1), strict: a `%` not followed by two hex digits, or
//! escapes that decode to bytes that are not UTF-8, are errors. What a caller does with an error
//! (a 400, a missing token, a value kept as sent) is its own decision.

use std::fmt;

/// How a `+` reads: itself in a path (RFC 3986), a space in a query string encoded as
/// `application/x-www-form-urlencoded` (what `URLSearchParams` and Node's `querystring` write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plus {
    Literal,
    Space,
}

/// Why a percent-encoded string could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PercentError {
    /// The `%` at this byte offset is not followed by two hex digits.
    BadEscape { at: usize },
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl fmt::Display for PercentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PercentError::BadEscape { at } => {
                write!(f, "invalid percent-encoding at byte {at}")
            }
            PercentError::NotUtf8 => f.write_str("percent-decoded bytes are not UTF-8"),
        }
    }
}

impl std::error::Error for PercentError {}

/// Decodes every `%XX` escape of `s` (hex digits in either case, RFC 3986 §2.1), and `+` as
/// `plus` says.
pub fn percent_decode(s: &str, plus: Plus) -> Result<String, PercentError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                // RFC 3986 §2.1: `pct-encoded = "%" HEXDIG HEXDIG`. No sign, no single digit.
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PercentError::BadEscape { at: i });
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus == Plus::Space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| PercentError::NotUtf8)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! decodes {
        ($($name:ident: $input:expr, $plus:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                let got = percent_decode($input, $plus);
                assert_eq!(got.as_deref().map_err(|e| *e), $want);
            }
        )*};
    }

    decodes! {
        // RFC 3986 §2.1: "%20" is the percent-encoding of the space character.
        rfc3986_space: "%20", Plus::Literal => Ok(" ");
        // RFC 3986 §2.1 and §6.2.2.1: the hex digits of an escape are case-insensitive,
        // "%3a" versus "%3A".
        rfc3986_hex_case: "%3a%3A", Plus::Literal => Ok("::");
        // RFC 3986 §2.4: the percent character itself is sent as "%25".
        rfc3986_percent: "100%25", Plus::Literal => Ok("100%");
        // RFC 3986 §2.5: "LATIN CAPITAL LETTER A WITH GRAVE would be represented as "%C3%80",
        // and the character KATAKANA LETTER A would be represented as "%E3%82%A2"".
        rfc3986_utf8_two_bytes: "%C3%80", Plus::Literal => Ok("\u{C0}");
        rfc3986_utf8_three_bytes: "%E3%82%A2", Plus::Literal => Ok("\u{30A2}");
        // RFC 3986 §6.2.2: "example://a/b/c/%7Bfoo%7D" and ".../b/%63/%7bfoo%7d" are equivalent.
        rfc3986_normalization: "/b/%63/%7bfoo%7d", Plus::Literal => Ok("/b/c/{foo}");
        // RFC 3986 §2.2: an encoded delimiter is data once decoded.
        encoded_slash: "a%2Fb", Plus::Literal => Ok("a/b");
        plain: "abc.def-_~", Plus::Literal => Ok("abc.def-_~");
        empty: "", Plus::Literal => Ok("");
        plus_literal_in_a_path: "a+b", Plus::Literal => Ok("a+b");
        plus_is_space_in_a_form: "a+b", Plus::Space => Ok("a b");
        encoded_plus_stays_plus: "a%2Bb", Plus::Space => Ok("a+b");
        lone_percent: "%", Plus::Literal => Err(PercentError::BadEscape { at: 0 });
        truncated_escape: "ab%2", Plus::Literal => Err(PercentError::BadEscape { at: 2 });
        non_hex_escape: "a%zz", Plus::Literal => Err(PercentError::BadEscape { at: 1 });
        signed_escape: "%+1", Plus::Space => Err(PercentError::BadEscape { at: 0 });
        negative_escape: "%-1", Plus::Literal => Err(PercentError::BadEscape { at: 0 });
        first_bad_escape_is_named: "%41%4%zz", Plus::Literal => Err(PercentError::BadEscape { at: 3 });
        not_utf8: "%FF", Plus::Literal => Err(PercentError::NotUtf8);
        truncated_utf8: "%C3", Plus::Literal => Err(PercentError::NotUtf8);
        overlong_utf8: "%C0%AF", Plus::Literal => Err(PercentError::NotUtf8);
    }
}
