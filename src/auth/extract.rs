//! Where clients put their token: an `Authorization` header, a `?token=` query parameter, or
//! Socket.IO's CONNECT auth object. Pure functions over what the codecs already parsed.

use crate::http::{percent_decode, Plus};

/// The credentials of an `Authorization: Bearer <token>` header value, trimmed.
///
/// RFC 9110 §11.1: "It uses a case-insensitive token to identify the authentication scheme", so
/// `bearer` and `BEARER` are accepted too. `None` for another scheme, no credentials, or bytes
/// that are not UTF-8.
pub fn bearer(authorization_header: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(authorization_header).ok()?.trim();
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

/// The percent-decoded value of the `token` parameter of a URL query (with or without its
/// leading `?`), for browsers, whose WebSocket API cannot set headers.
///
/// `+` is a space, as `URLSearchParams` encodes it. `None` when the parameter is absent, empty,
/// given more than once (which of two tokens a proxy and herald would each pick is not a
/// question worth having), holds an invalid `%` escape, or decodes to bytes that are not UTF-8.
pub fn query_token(query: &str) -> Option<String> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut found = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "token" {
            continue;
        }
        if found.is_some() {
            return None;
        }
        found = Some(value);
    }
    let decoded = percent_decode(found?, Plus::Space).ok()?;
    (!decoded.is_empty()).then_some(decoded)
}

/// The token in a Socket.IO CONNECT packet's auth payload, `{"token":"<jwt>"}` as
/// `io(url, { auth: { token } })` sends it. `None` when absent, not a string, or empty.
pub fn auth_payload_token(payload: &serde_json::Value) -> Option<&str> {
    payload
        .get("token")?
        .as_str()
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    macro_rules! bearer_cases {
        ($($name:ident: $header:expr => $expected:expr;)*) => {
            $(
                #[test]
                fn $name() {
                    assert_eq!(bearer($header), $expected);
                }
            )*
        };
    }

    bearer_cases! {
        bearer_plain: b"Bearer abc.def.ghi" => Some("abc.def.ghi");
        bearer_lowercase_scheme: b"bearer abc" => Some("abc");
        bearer_uppercase_scheme: b"BEARER abc" => Some("abc");
        bearer_extra_whitespace: b"  Bearer \t abc  " => Some("abc");
        bearer_tab_separator: b"Bearer\tabc" => Some("abc");
        bearer_basic_scheme: b"Basic dXNlcjpwYXNz" => None;
        bearer_no_credentials: b"Bearer" => None;
        bearer_blank_credentials: b"Bearer    " => None;
        bearer_scheme_prefix_only: b"Bearerabc" => None;
        bearer_empty: b"" => None;
        bearer_not_utf8: b"Bearer \xff\xfe" => None;
    }

    macro_rules! query_cases {
        ($($name:ident: $query:expr => $expected:expr;)*) => {
            $(
                #[test]
                fn $name() {
                    assert_eq!(query_token($query).as_deref(), $expected);
                }
            )*
        };
    }

    query_cases! {
        query_only_param: "token=abc.def.ghi" => Some("abc.def.ghi");
        query_leading_question_mark: "?token=abc" => Some("abc");
        query_among_others: "EIO=4&token=abc&transport=websocket" => Some("abc");
        query_percent_dot: "token=abc%2Edef%2eghi" => Some("abc.def.ghi");
        query_percent_utf8: "token=%C3%A9" => Some("é");
        query_plus_is_space: "token=a+b" => Some("a b");
        query_value_holds_equals: "token=a=b" => Some("a=b");
        query_absent: "EIO=4&transport=websocket" => None;
        query_other_key_with_suffix: "tokens=abc&xtoken=def" => None;
        query_empty_value: "token=" => None;
        query_key_without_value: "token" => None;
        query_repeated: "token=a&token=b" => None;
        query_bad_escape_hex: "token=abc%2G" => None;
        query_truncated_escape: "token=abc%2" => None;
        query_lone_percent: "token=%" => None;
        query_escape_not_utf8: "token=%FF" => None;
        query_empty: "" => None;
    }

    #[test]
    fn auth_payload_token_found() {
        assert_eq!(auth_payload_token(&json!({"token": "abc"})), Some("abc"));
        assert_eq!(
            auth_payload_token(&json!({"token": "abc", "other": 1})),
            Some("abc")
        );
    }

    #[test]
    fn auth_payload_token_refused() {
        assert_eq!(auth_payload_token(&json!({})), None);
        assert_eq!(auth_payload_token(&json!({"token": ""})), None);
        assert_eq!(auth_payload_token(&json!({"token": 42})), None);
        assert_eq!(auth_payload_token(&json!({"token": null})), None);
        assert_eq!(auth_payload_token(&json!("abc")), None);
        assert_eq!(auth_payload_token(&json!(null)), None);
    }
}
