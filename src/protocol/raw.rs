//! The raw protocol at `/ws`: the envelope `{"event":"<name>","data":<value>}`, as JSON in text
//! frames or MessagePack in binary frames, in the [`Format`] the handshake chose.
//!
//! Client events: `subscribe`, `data` a user id (string, or integer taken as its decimal
//! string), `{"userId":...,"offset":...}` or `{"userIds":[...],"offset":...}` (the offset being
//! the last one the client saw, to be handed what it missed); `unsubscribe`, `data` a user id;
//! `auth`, `data` a token (a JWT, as a string; verifying it is not this module's business).
//! Server events: `subscribed` `{userId | userIds, socketId, offset, recovered}`,
//! `unsubscribed` `{userId}`, `authenticated` `{userId, exp}`, `notification` (built by
//! [`crate::fanout`], with its `offset` beside `data`; its MessagePack form by
//! [`notification_msgpack`]) and `error` `{message}`. In MessagePack the envelope is a map with
//! str keys `event` and `data`, and `data` is what its JSON would be: maps with str keys, ints,
//! float 64, str, arrays, nil, booleans. A bad message earns an `error` event; the connection
//! stays open.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::format::Format;
use super::{msgpack, truncate};
use crate::rooms::{self, Subscription, UserIdError};

/// Deepest nesting a MessagePack client message may have: serde_json's own recursion limit, so
/// that neither format lets a client recurse further than the other (rmp_serde allows 1024).
const MAX_MSGPACK_DEPTH: usize = 128;

/// Longest token an `auth` event may carry, in bytes. A JWT signed with RS256 and the usual
/// claims is well under 2 KiB; the margin is for large claim sets, and the cap keeps a client
/// from handing the verifier a message-sized string to decode and check.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The MessagePack envelope's head up to the notification: fixmap of 2 (`0x82`), fixstr 5
/// `event`, fixstr 12 `notification`, fixstr 4 `data`.
const NOTIFICATION_HEAD: &[u8] = b"\x82\xa5event\xacnotification\xa4data";

/// Whether a `/ws` handshake's raw query string (what follows `?`) says the client resumes:
/// `resume=1`, put there by a client that will subscribe with the offset it last saw. Such a
/// socket holds the broadcasts it is sent until that subscribe, however late it comes (within
/// `--connect-timeout`), so that what it missed comes first. Any other value, or none, is a
/// client that may never subscribe (a listener to broadcasts): its broadcasts are held a second
/// at most.
pub fn resumes(query: Option<&str>) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .any(|pair| pair == "resume=1")
}

/// One whole message from a client, as the WebSocket layer delivers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    Subscribe(Subscription),
    Unsubscribe(String),
    /// A token to authenticate with, or to refresh an authentication with: at most
    /// [`MAX_TOKEN_LEN`] bytes, not empty, and not yet verified.
    Auth(String),
}

/// Why an `auth` event's `data` is not a token. No variant carries the token itself: an error
/// event or a log line must never echo a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFault {
    /// `data` is missing, or not a string (a number, an object, nil, binary).
    NotAString,
    Empty,
    TooLong {
        len: usize,
        max: usize,
    },
}

impl fmt::Display for TokenFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenFault::NotAString => f.write_str("data must be the token, as a string"),
            TokenFault::Empty => f.write_str("the token is empty"),
            TokenFault::TooLong { len, max } => {
                write!(f, "the token is {len} bytes, over the limit of {max}")
            }
        }
    }
}

/// Why a client message was refused; its `Display` is the `message` of the `error` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    InvalidJson(String),
    InvalidMessagePack(String),
    UnknownEvent(String),
    BadUserId {
        event: &'static str,
        fault: UserIdError,
    },
    /// An `auth` event whose `data` is not a usable token.
    BadToken(TokenFault),
    /// A binary frame from a JSON client.
    BinaryMessage,
    /// A text frame from a MessagePack client.
    TextMessage,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidJson(e) => write!(
                f,
                "invalid message: expected {{\"event\":\"subscribe\",\"data\":\"<userId>\"}} ({e})"
            ),
            Error::InvalidMessagePack(e) => write!(
                f,
                "invalid message: expected a MessagePack map \
                 {{\"event\":\"subscribe\",\"data\":\"<userId>\"}} ({e})"
            ),
            Error::UnknownEvent(e) => write!(
                f,
                "unknown event {e:?}: expected \"subscribe\", \"unsubscribe\" or \"auth\""
            ),
            Error::BadUserId { event, fault } => write!(f, "{event}: {fault}"),
            Error::BadToken(fault) => write!(f, "auth: {fault}"),
            Error::BinaryMessage => {
                f.write_str("binary messages are not understood: send JSON text frames")
            }
            Error::TextMessage => f.write_str(
                "text frames are not understood in MessagePack mode: send binary frames",
            ),
        }
    }
}

/// Why a notification could not be put in MessagePack: its JSON is invalid or nested too deep,
/// or a string or container is beyond MessagePack's 32-bit lengths. The control API checks
/// notifications before they reach the loop, so this is a server fault, not a client's, and is
/// kept out of [`Error`], whose every variant is an answer to a client.
#[derive(Debug)]
pub struct NotificationError(serde_json::Error);

impl fmt::Display for NotificationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "notification cannot be encoded as MessagePack: {}",
            self.0
        )
    }
}

impl std::error::Error for NotificationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The client envelope in either format. Like any serde struct it is also read from a
/// two-element array `["subscribe", "u1"]`; both formats accept that alike.
#[derive(Deserialize)]
struct Envelope {
    event: String,
    #[serde(default)]
    data: Value,
}

/// Parses one client message in the connection's format. A frame of the other kind is refused
/// with an error naming the kind to send, so a client that got the format wrong learns why.
pub fn decode(format: Format, message: Message<'_>) -> Result<ClientEvent, Error> {
    match (format, message) {
        (Format::Json, Message::Text(text)) => parse(text),
        (Format::Json, Message::Binary(_)) => Err(Error::BinaryMessage),
        (Format::MessagePack, Message::Binary(bytes)) => parse_msgpack(bytes),
        (Format::MessagePack, Message::Text(_)) => Err(Error::TextMessage),
    }
}

/// Parses one text message from a JSON client.
pub fn parse(text: &str) -> Result<ClientEvent, Error> {
    let env: Envelope =
        serde_json::from_str(text).map_err(|e| Error::InvalidJson(e.to_string()))?;
    event(env)
}

/// Parses one binary message from a MessagePack client.
pub fn parse_msgpack(bytes: &[u8]) -> Result<ClientEvent, Error> {
    // A `&[u8]` reader advances past what it hands out, so what is left of it after the
    // envelope is whatever followed it. Lengths are never trusted ahead of the bytes: the
    // reader copies a str or bin out as far as the message goes, and `Value` grows arrays and
    // maps entry by entry, so a header claiming 4 GiB costs no more than the message's size.
    let mut de = rmp_serde::Deserializer::new(bytes);
    de.set_max_depth(MAX_MSGPACK_DEPTH);
    let env =
        Envelope::deserialize(&mut de).map_err(|e| Error::InvalidMessagePack(e.to_string()))?;
    // One message is one envelope, as serde_json::from_str refuses trailing characters.
    let rest = de.get_ref().len();
    if rest > 0 {
        return Err(Error::InvalidMessagePack(format!(
            "{rest} bytes after the envelope"
        )));
    }
    event(env)
}

/// The event an envelope asks for, whatever format it came in.
fn event(env: Envelope) -> Result<ClientEvent, Error> {
    match env.event.as_str() {
        "subscribe" => rooms::subscription_from_json(&env.data)
            .map(ClientEvent::Subscribe)
            .map_err(|fault| Error::BadUserId {
                event: "subscribe",
                fault,
            }),
        "unsubscribe" => rooms::user_id_from_json(&env.data)
            .map(ClientEvent::Unsubscribe)
            .map_err(|fault| Error::BadUserId {
                event: "unsubscribe",
                fault,
            }),
        "auth" => token(env.data)
            .map(ClientEvent::Auth)
            .map_err(Error::BadToken),
        _ => Err(Error::UnknownEvent(truncate(&env.event, 64).to_owned())),
    }
}

/// The token an `auth` event's `data` holds: a non-empty string of at most [`MAX_TOKEN_LEN`]
/// bytes. Unlike a user id, a number is not taken as its decimal string: no JWT is a number.
fn token(data: Value) -> Result<String, TokenFault> {
    match data {
        Value::String(s) if s.is_empty() => Err(TokenFault::Empty),
        Value::String(s) if s.len() > MAX_TOKEN_LEN => Err(TokenFault::TooLong {
            len: s.len(),
            max: MAX_TOKEN_LEN,
        }),
        Value::String(s) => Ok(s),
        _ => Err(TokenFault::NotAString),
    }
}

/// A server event; one definition serves both formats, so they cannot drift apart.
#[derive(Serialize)]
struct Reply<D> {
    event: &'static str,
    data: D,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Subscribed<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_ids: Option<&'a [String]>,
    socket_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<bool>,
}

/// What a `subscribed` answer says: the users (one, or the list asked for), the socket, and
/// with recovery on the newest offset and, when the client gave one, whether what it missed
/// follows.
#[derive(Debug, Clone, Copy)]
pub struct SubscribedAnswer<'a> {
    pub users: &'a [String],
    pub list: bool,
    pub socket_id: &'a str,
    pub offset: Option<&'a str>,
    pub recovered: Option<bool>,
}

impl SubscribedAnswer<'_> {
    /// The `data` of a `subscribed` event, as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.fields()).unwrap_or(Value::Null)
    }

    fn fields(&self) -> Subscribed<'_> {
        let (user_id, user_ids) = match (self.list, self.users.first()) {
            (false, Some(one)) => (Some(one.as_str()), None),
            _ => (None, Some(self.users)),
        };
        Subscribed {
            user_id,
            user_ids,
            socket_id: self.socket_id,
            offset: self.offset,
            recovered: self.recovered,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Unsubscribed<'a> {
    user_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Authenticated<'a> {
    user_id: &'a str,
    exp: u64,
}

#[derive(Serialize)]
struct ErrorData<'a> {
    message: &'a str,
}

/// The payload of one server event in `format`; the caller frames it as text or binary by
/// [`Format::is_binary`].
fn reply<D: Serialize>(format: Format, event: &'static str, data: D) -> Vec<u8> {
    let reply = Reply { event, data };
    let encoded = match format {
        Format::Json => serde_json::to_vec(&reply).ok(),
        // `_named`: structs as maps with str keys, not rmp_serde's default arrays.
        Format::MessagePack => rmp_serde::to_vec_named(&reply).ok(),
    };
    // Neither encoder can fail here: every field is a string or an integer and the writer a
    // `Vec`; only a failing `Serialize` impl or a non-string map key would make one fail.
    debug_assert!(encoded.is_some(), "{event} reply failed to encode");
    encoded.unwrap_or_default()
}

/// `{"event":"subscribed","data":{"userId":...,"socketId":...}}`, with `userIds` for a list,
/// and `offset` and `recovered` when they are known.
pub fn subscribed(format: Format, answer: &SubscribedAnswer<'_>) -> Vec<u8> {
    reply(format, "subscribed", answer.fields())
}

/// `{"event":"unsubscribed","data":{"userId":...}}`
pub fn unsubscribed(format: Format, user_id: &str) -> Vec<u8> {
    reply(format, "unsubscribed", Unsubscribed { user_id })
}

/// `{"event":"authenticated","data":{"userId":...,"exp":...}}`: the token was accepted for
/// `user_id` until `exp`, in seconds since the Unix epoch (the JWT's own `exp`). In MessagePack
/// `exp` is an unsigned int in its narrowest form.
pub fn authenticated(format: Format, user_id: &str, exp: u64) -> Vec<u8> {
    reply(format, "authenticated", Authenticated { user_id, exp })
}

/// `{"event":"error","data":{"message":...}}`
pub fn error(format: Format, message: &str) -> Vec<u8> {
    reply(format, "error", ErrorData { message })
}

/// `{"event":"notification","data":<notification>}` in MessagePack, from the notification's JSON
/// as the control API passed it on. Built once per push and shared by every MessagePack
/// recipient, so the JSON is transcoded as it is parsed, never built into a `Value` tree; keys
/// keep their order.
pub fn notification_msgpack(
    notification: &[u8],
    offset: Option<&str>,
) -> Result<Vec<u8>, NotificationError> {
    event_msgpack(None, notification, offset)
}

/// A MessagePack str: its head (fixstr, str 8, 16 or 32 by length), then its bytes.
fn put_msgpack_str(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= u8::MAX as usize {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= u16::MAX as usize {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

/// [`notification_msgpack`] for an event named `event` (`None`: `notification`).
pub fn event_msgpack(
    event: Option<&str>,
    notification: &[u8],
    offset: Option<&str>,
) -> Result<Vec<u8>, NotificationError> {
    // MessagePack is rarely longer than the JSON it came from (only short floats grow, to 9
    // bytes), so this one allocation usually holds the whole envelope.
    let mut out = Vec::with_capacity(NOTIFICATION_HEAD.len() + notification.len() + 48);
    match event {
        None => out.extend_from_slice(NOTIFICATION_HEAD),
        Some(name) => {
            out.extend_from_slice(b"\x82\xa5event");
            put_msgpack_str(&mut out, name);
            out.extend_from_slice(b"\xa4data");
        }
    }
    if offset.is_some() {
        // fixmap of 3: `offset` follows `data`.
        out[0] = 0x83;
    }
    msgpack::transcode_json(notification, &mut out).map_err(NotificationError)?;
    if let Some(offset) = offset {
        out.extend_from_slice(b"\xa6offset");
        // Offsets are short ASCII: fixstr (< 32 bytes) or str 8.
        if offset.len() < 32 {
            out.push(0xa0 | offset.len() as u8);
        } else {
            out.push(0xd9);
            out.push(offset.len().min(255) as u8);
        }
        out.extend_from_slice(&offset.as_bytes()[..offset.len().min(255)]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn resume_is_said_with_resume_1_alone() {
        assert!(resumes(Some("resume=1")));
        assert!(resumes(Some("format=msgpack&resume=1")));
        for query in [
            None,
            Some(""),
            Some("resume"),
            Some("resume=0"),
            Some("resume=10"),
        ] {
            assert!(!resumes(query), "{query:?}");
        }
    }

    macro_rules! parses {
        ($($name:ident: $input:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(parse($input), $want);
            }
        )*};
    }

    parses! {
        subscribe_string: r#"{"event":"subscribe","data":"user-123"}"# => Ok(ClientEvent::Subscribe("user-123".into()));
        subscribe_number: r#"{"event":"subscribe","data":123}"# => Ok(ClientEvent::Subscribe("123".into()));
        unsubscribe: r#"{"data":"u","event":"unsubscribe"}"# => Ok(ClientEvent::Unsubscribe("u".into()));
        unknown_event: r#"{"event":"hello","data":"u"}"# => Err(Error::UnknownEvent("hello".into()));
        missing_data: r#"{"event":"subscribe"}"# => Err(Error::BadUserId { event: "subscribe", fault: UserIdError::NotAString });
        empty_user: r#"{"event":"subscribe","data":""}"# => Err(Error::BadUserId { event: "subscribe", fault: UserIdError::Empty });
        object_user: r#"{"event":"unsubscribe","data":{}}"# => Err(Error::BadUserId { event: "unsubscribe", fault: UserIdError::NotAString });
        auth: r#"{"event":"auth","data":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln"}"# => Ok(ClientEvent::Auth("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln".into()));
        auth_data_first: r#"{"data":"t","event":"auth"}"# => Ok(ClientEvent::Auth("t".into()));
        auth_number: r#"{"event":"auth","data":123}"# => Err(Error::BadToken(TokenFault::NotAString));
        auth_missing_data: r#"{"event":"auth"}"# => Err(Error::BadToken(TokenFault::NotAString));
        auth_null: r#"{"event":"auth","data":null}"# => Err(Error::BadToken(TokenFault::NotAString));
        auth_object: r#"{"event":"auth","data":{"token":"t"}}"# => Err(Error::BadToken(TokenFault::NotAString));
        auth_array: r#"{"event":"auth","data":["t"]}"# => Err(Error::BadToken(TokenFault::NotAString));
        auth_empty: r#"{"event":"auth","data":""}"# => Err(Error::BadToken(TokenFault::Empty));
        auth_is_case_sensitive: r#"{"event":"Auth","data":"t"}"# => Err(Error::UnknownEvent("Auth".into()));
    }

    /// The JSON table again, each message MessagePack-encoded: both formats must read alike.
    macro_rules! parses_msgpack {
        ($($name:ident: $json:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                let value: Value = serde_json::from_str($json).unwrap();
                let bytes = rmp_serde::to_vec_named(&value).unwrap();
                assert_eq!(parse_msgpack(&bytes), $want);
            }
        )*};
    }

    parses_msgpack! {
        msgpack_subscribe_string: r#"{"event":"subscribe","data":"user-123"}"# => Ok(ClientEvent::Subscribe("user-123".into()));
        msgpack_subscribe_number: r#"{"event":"subscribe","data":123}"# => Ok(ClientEvent::Subscribe("123".into()));
        msgpack_subscribe_negative: r#"{"event":"subscribe","data":-5}"# => Ok(ClientEvent::Subscribe("-5".into()));
        msgpack_subscribe_u64: r#"{"event":"subscribe","data":18446744073709551615}"# => Ok(ClientEvent::Subscribe("18446744073709551615".into()));
        msgpack_unsubscribe: r#"{"data":"u","event":"unsubscribe"}"# => Ok(ClientEvent::Unsubscribe("u".into()));
        msgpack_unknown_keys_ignored: r#"{"event":"subscribe","data":"u","id":7}"# => Ok(ClientEvent::Subscribe("u".into()));
        msgpack_unknown_event: r#"{"event":"hello","data":"u"}"# => Err(Error::UnknownEvent("hello".into()));
        msgpack_missing_data: r#"{"event":"subscribe"}"# => Err(Error::BadUserId { event: "subscribe", fault: UserIdError::NotAString });
        msgpack_nil_data: r#"{"event":"subscribe","data":null}"# => Err(Error::BadUserId { event: "subscribe", fault: UserIdError::NotAString });
        msgpack_empty_user: r#"{"event":"subscribe","data":""}"# => Err(Error::BadUserId { event: "subscribe", fault: UserIdError::Empty });
        msgpack_float_user: r#"{"event":"subscribe","data":1.5}"# => Err(Error::BadUserId { event: "subscribe", fault: UserIdError::NotAString });
        msgpack_object_user: r#"{"event":"unsubscribe","data":{}}"# => Err(Error::BadUserId { event: "unsubscribe", fault: UserIdError::NotAString });
        msgpack_auth: r#"{"event":"auth","data":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln"}"# => Ok(ClientEvent::Auth("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln".into()));
        msgpack_auth_data_first: r#"{"data":"t","event":"auth"}"# => Ok(ClientEvent::Auth("t".into()));
        msgpack_auth_number: r#"{"event":"auth","data":123}"# => Err(Error::BadToken(TokenFault::NotAString));
        msgpack_auth_missing_data: r#"{"event":"auth"}"# => Err(Error::BadToken(TokenFault::NotAString));
        msgpack_auth_nil: r#"{"event":"auth","data":null}"# => Err(Error::BadToken(TokenFault::NotAString));
        msgpack_auth_object: r#"{"event":"auth","data":{"token":"t"}}"# => Err(Error::BadToken(TokenFault::NotAString));
        msgpack_auth_empty: r#"{"event":"auth","data":""}"# => Err(Error::BadToken(TokenFault::Empty));
    }

    #[test]
    fn msgpack_auth_from_bytes() {
        // fixmap 2, fixstr "event", fixstr "auth", fixstr "data", str 8 of 40 bytes.
        let token = "x".repeat(40);
        let mut msg = vec![0x82, 0xa5];
        msg.extend_from_slice(b"event");
        msg.push(0xa4);
        msg.extend_from_slice(b"auth");
        msg.push(0xa4);
        msg.extend_from_slice(b"data");
        msg.extend_from_slice(&[0xd9, 40]);
        msg.extend_from_slice(token.as_bytes());
        assert_eq!(parse_msgpack(&msg), Ok(ClientEvent::Auth(token)));
        // The same token as bin 8 is not a string.
        let at = msg.len() - 42;
        msg[at] = 0xc4;
        assert!(
            matches!(
                parse_msgpack(&msg),
                Err(Error::InvalidMessagePack(_) | Error::BadToken(TokenFault::NotAString))
            ),
            "{:?}",
            parse_msgpack(&msg)
        );
    }

    #[test]
    fn token_length_is_capped_in_both_formats() {
        let longest = "t".repeat(MAX_TOKEN_LEN);
        let too_long = "t".repeat(MAX_TOKEN_LEN + 1);
        let too_long_error = Err(Error::BadToken(TokenFault::TooLong {
            len: MAX_TOKEN_LEN + 1,
            max: MAX_TOKEN_LEN,
        }));
        let json = |token: &str| json!({"event": "auth", "data": token});
        assert_eq!(
            parse(&json(&longest).to_string()),
            Ok(ClientEvent::Auth(longest.clone()))
        );
        assert_eq!(parse(&json(&too_long).to_string()), too_long_error);
        let msgpack = |token: &str| rmp_serde::to_vec_named(&json(token)).unwrap();
        assert_eq!(
            parse_msgpack(&msgpack(&longest)),
            Ok(ClientEvent::Auth(longest))
        );
        assert_eq!(parse_msgpack(&msgpack(&too_long)), too_long_error);
        // The limit is in bytes, not chars.
        let wide = "é".repeat(MAX_TOKEN_LEN / 2 + 1);
        assert!(matches!(
            parse(&json(&wide).to_string()),
            Err(Error::BadToken(TokenFault::TooLong { .. }))
        ));
    }

    #[test]
    fn token_errors_say_what_is_wrong_and_never_echo_the_token() {
        let secret = "s3cr3t-".repeat(2000);
        let cases = [
            (
                json!({"event": "auth", "data": 7}),
                "auth: data must be the token, as a string",
            ),
            (
                json!({"event": "auth", "data": ""}),
                "auth: the token is empty",
            ),
            (
                json!({"event": "auth", "data": secret}),
                "auth: the token is 14000 bytes, over the limit of 8192",
            ),
        ];
        for (message, want) in cases {
            let err = parse(&message.to_string()).unwrap_err();
            assert_eq!(err.to_string(), want);
            assert!(!format!("{err:?}").contains("s3cr3t"));
        }
        let unknown = parse(r#"{"event":"login","data":"t"}"#).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            r#"unknown event "login": expected "subscribe", "unsubscribe" or "auth""#
        );
    }

    #[test]
    fn msgpack_subscribe_from_bytes() {
        // fixmap 2, fixstr "event", fixstr "subscribe", fixstr "data", fixstr "u1".
        let mut msg = vec![0x82, 0xa5];
        msg.extend_from_slice(b"event");
        msg.push(0xa9);
        msg.extend_from_slice(b"subscribe");
        msg.push(0xa4);
        msg.extend_from_slice(b"data");
        msg.push(0xa2);
        msg.extend_from_slice(b"u1");
        assert_eq!(parse_msgpack(&msg), Ok(ClientEvent::Subscribe("u1".into())));
        // The same id as a positive fixint.
        let n = msg.len() - 3;
        msg.truncate(n);
        msg.push(0x07);
        assert_eq!(parse_msgpack(&msg), Ok(ClientEvent::Subscribe("7".into())));
    }

    #[test]
    fn invalid_json_is_an_error_not_a_panic() {
        for bad in ["", "{", "[]", "null", r#"{"event":1}"#, "\u{0}"] {
            assert!(matches!(parse(bad), Err(Error::InvalidJson(_))), "{bad:?}");
        }
    }

    #[test]
    fn invalid_msgpack_is_an_error_not_a_panic() {
        let valid = rmp_serde::to_vec_named(&json!({"event": "subscribe", "data": "u"})).unwrap();
        let mut trailing = valid.clone();
        trailing.push(0xc0);
        let nested = |depth: usize| {
            let mut m = valid[..valid.len() - 2].to_vec();
            m.extend(std::iter::repeat_n(0x91, depth));
            m.push(0xc0);
            m
        };
        let bad: &[&[u8]] = &[
            b"",
            &[0xc1],                         // the one marker the format never uses
            &[0xc0],                         // nil, not a map
            &[0x82],                         // a map whose entries never come
            &[0x81, 0xa5, b'e', b'v'],       // a key cut short
            &[0xdb, 0xff, 0xff, 0xff, 0xff], // str 32 claiming 4 GiB
            &[0xdf, 0xff, 0xff, 0xff, 0xff], // map 32 claiming 4 G entries
            &[0x81, 0xa5, b'e', b'v', b'e', b'n', b't', 0xa1, 0xff], // event not UTF-8
            &[0x81, 0xa5, b'e', b'v', b'e', b'n', b't', 0x01], // event an int
            &[
                0x82, 0xa5, b'e', b'v', b'e', b'n', b't', 0xa9, b's', b'u', b'b', b's', b'c', b'r',
                b'i', b'b', b'e', 0xa4, b'd', b'a', b't', b'a', 0xc4, 0x01, b'u',
            ], // bin 8 as data
            &valid[..valid.len() - 1],
            &trailing,
            &nested(200),
            // A JSON client's message sent to a MessagePack connection: `{` is the fixint 123.
            br#"{"event":"subscribe","data":"u"}"#,
        ];
        for b in bad {
            assert!(
                matches!(parse_msgpack(b), Err(Error::InvalidMessagePack(_))),
                "{b:x?}: {:?}",
                parse_msgpack(b)
            );
        }
        // Nesting within the limit is read, and refused as a user id.
        assert_eq!(
            parse_msgpack(&nested(100)),
            Err(Error::BadUserId {
                event: "subscribe",
                fault: UserIdError::NotAString
            })
        );
    }

    #[test]
    fn decode_wants_the_frame_kind_of_the_format() {
        let json = r#"{"event":"subscribe","data":"u"}"#;
        let msgpack = rmp_serde::to_vec_named(&json!({"event": "subscribe", "data": "u"})).unwrap();
        let want = Ok(ClientEvent::Subscribe("u".into()));
        assert_eq!(decode(Format::Json, Message::Text(json)), want);
        assert_eq!(decode(Format::MessagePack, Message::Binary(&msgpack)), want);
        let auth_json = r#"{"event":"auth","data":"t"}"#;
        let auth_msgpack = rmp_serde::to_vec_named(&json!({"event": "auth", "data": "t"})).unwrap();
        let auth = Ok(ClientEvent::Auth("t".into()));
        assert_eq!(decode(Format::Json, Message::Text(auth_json)), auth);
        assert_eq!(
            decode(Format::MessagePack, Message::Binary(&auth_msgpack)),
            auth
        );
        assert_eq!(
            decode(Format::Json, Message::Binary(&auth_msgpack)),
            Err(Error::BinaryMessage)
        );
        assert_eq!(
            decode(Format::Json, Message::Binary(&msgpack)),
            Err(Error::BinaryMessage)
        );
        assert_eq!(
            decode(Format::MessagePack, Message::Text(json)),
            Err(Error::TextMessage)
        );
        assert_eq!(
            Error::TextMessage.to_string(),
            "text frames are not understood in MessagePack mode: send binary frames"
        );
    }

    /// A plain `subscribed` answer for one user, leaked: test replies outlive nothing.
    fn one(user: &str, socket_id: &'static str) -> SubscribedAnswer<'static> {
        let users: &'static [String] = Box::leak(vec![user.to_owned()].into_boxed_slice());
        SubscribedAnswer {
            users,
            list: false,
            socket_id,
            offset: None,
            recovered: None,
        }
    }

    #[test]
    fn replies_are_the_documented_envelopes() {
        assert_eq!(
            subscribed(Format::Json, &one("u1", "abc")),
            br#"{"event":"subscribed","data":{"userId":"u1","socketId":"abc"}}"#
        );
        let users = ["u1".to_owned(), "u2".to_owned()];
        let answer = SubscribedAnswer {
            users: &users,
            list: true,
            socket_id: "abc",
            offset: Some("1f-3"),
            recovered: Some(false),
        };
        assert_eq!(
            subscribed(Format::Json, &answer),
            br#"{"event":"subscribed","data":{"userIds":["u1","u2"],"socketId":"abc","offset":"1f-3","recovered":false}}"#
        );
        assert_eq!(
            unsubscribed(Format::Json, "u1"),
            br#"{"event":"unsubscribed","data":{"userId":"u1"}}"#
        );
        assert_eq!(
            error(Format::Json, "x\"y"),
            br#"{"event":"error","data":{"message":"x\"y"}}"#
        );
        assert_eq!(
            authenticated(Format::Json, "u1", 1_700_000_000),
            br#"{"event":"authenticated","data":{"userId":"u1","exp":1700000000}}"#
        );
    }

    #[test]
    fn msgpack_authenticated_bytes() {
        // fixmap 2, "event", "authenticated", "data", fixmap 2, "userId", "u1", "exp",
        // uint 32 1700000000.
        let mut want = vec![0x82, 0xa5];
        want.extend_from_slice(b"event");
        want.push(0xad);
        want.extend_from_slice(b"authenticated");
        want.push(0xa4);
        want.extend_from_slice(b"data");
        want.extend_from_slice(&[0x82, 0xa6]);
        want.extend_from_slice(b"userId");
        want.push(0xa2);
        want.extend_from_slice(b"u1");
        want.push(0xa3);
        want.extend_from_slice(b"exp");
        want.push(0xce);
        want.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        assert_eq!(
            authenticated(Format::MessagePack, "u1", 1_700_000_000),
            want
        );
        // A small exp takes a positive fixint, a huge one uint 64: the narrowest form.
        let tail = |exp| {
            let out = authenticated(Format::MessagePack, "u1", exp);
            out[out.len() - 9..].to_vec()
        };
        assert_eq!(tail(5)[8], 0x05);
        assert_eq!(
            tail(u64::MAX),
            [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn msgpack_reply_bytes() {
        // fixmap 2, "event", "unsubscribed", "data", fixmap 1, "userId", "u1".
        let mut want = vec![0x82, 0xa5];
        want.extend_from_slice(b"event");
        want.push(0xac);
        want.extend_from_slice(b"unsubscribed");
        want.push(0xa4);
        want.extend_from_slice(b"data");
        want.extend_from_slice(&[0x81, 0xa6]);
        want.extend_from_slice(b"userId");
        want.push(0xa2);
        want.extend_from_slice(b"u1");
        assert_eq!(unsubscribed(Format::MessagePack, "u1"), want);
    }

    #[test]
    fn msgpack_replies_carry_what_json_replies_carry() {
        let long = "m".repeat(70_000);
        let pairs = |format| {
            [
                subscribed(format, &one("u1", "abc")),
                subscribed(format, &one("ü-\u{1F600}", "")),
                unsubscribed(format, "u1"),
                error(format, "x\"y"),
                error(format, &long),
                authenticated(format, "u1", 1_700_000_000),
                authenticated(format, "ü-\u{1F600}", 0),
                authenticated(format, "u1", u64::MAX),
            ]
        };
        for (json, msgpack) in pairs(Format::Json).iter().zip(pairs(Format::MessagePack)) {
            let from_json: Value = serde_json::from_slice(json).unwrap();
            let from_msgpack: Value = rmp_serde::from_slice(&msgpack).unwrap();
            assert_eq!(from_msgpack, from_json);
        }
    }

    /// Notifications as a backend might send them, in the compact form the control API passes
    /// on and with white space, which the envelope must not depend on.
    const NOTIFICATIONS: &[&str] = &[
        r#"{"type":"LIKE","message":"Someone liked your post","actorId":"user-9","data":{"postId":"p1"},"timestamp":"2026-11-26T05:00:00.000Z"}"#,
        r#"{"z":1,"a":2,"m":{"y":[1,[2,[3,{"deep":true}]]],"b":null}}"#,
        r#"{"text":"héllo \u00e9 \ud83d\ude00 日本語 \"quoted\" \\ \n","emoji":"😀"}"#,
        r#"{"neg":-1,"neg8":-100,"neg16":-1000,"neg32":-100000,"min":-9223372036854775808}"#,
        r#"{"pos":127,"u8":200,"u16":60000,"u32":4000000000,"max":18446744073709551615}"#,
        r#"{"f":1.5,"g":-0.25,"e":6.02e23,"whole":2.0,"tiny":5e-324,"huge":1.7976931348623157e308}"#,
        r#"{"t":true,"f":false,"n":null,"empty":{},"none":[],"s":""}"#,
        "{ \"spaced\" : [ 1 , 2 , 3 ] ,\n\t\"x\" : { } }",
    ];

    fn json_envelope(notification: &str) -> Value {
        serde_json::from_str(&format!(
            r#"{{"event":"notification","data":{notification}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn notification_msgpack_carries_the_json_envelope() {
        let many_keys: String = format!(
            "{{{}}}",
            (0..40)
                .map(|i| format!("\"k{i}\":[{}]", vec!["0.5"; i].join(",")))
                .collect::<Vec<_>>()
                .join(",")
        );
        let notifications = NOTIFICATIONS.iter().copied().chain([many_keys.as_str()]);
        for n in notifications {
            let out = notification_msgpack(n.as_bytes(), None).unwrap();
            let envelope = json_envelope(n);
            let decoded: Value = rmp_serde::from_slice(&out).unwrap();
            assert_eq!(decoded, envelope, "{n}");
            // Keys in the order sent, compared as text since `Value` equality ignores order.
            assert_eq!(decoded.to_string(), envelope.to_string(), "{n}");
            // And the very bytes rmp_serde writes for the envelope.
            assert_eq!(out, rmp_serde::to_vec_named(&envelope).unwrap(), "{n}");
        }
    }

    #[test]
    fn notification_head_is_the_envelope_rmp_serde_writes() {
        let out = notification_msgpack(b"null", None).unwrap();
        assert_eq!(&out[..NOTIFICATION_HEAD.len()], NOTIFICATION_HEAD);
        assert_eq!(
            out,
            rmp_serde::to_vec_named(&json!({"event": "notification", "data": null})).unwrap()
        );
    }

    #[test]
    fn notification_msgpack_never_panics_on_garbage() {
        // `1e400` is beyond f64: serde_json refuses it, though the control API, which skips
        // values without reading them, lets it through to JSON clients.
        let bad: [&[u8]; 7] = [
            b"",
            b"{",
            b"{\"a\":}",
            b"{} {}",
            b"\"\xff\"",
            b"{\"a\":1,}",
            b"{\"huge\":1e400}",
        ];
        for b in bad {
            assert!(notification_msgpack(b, None).is_err(), "{b:?}");
        }
        // Every prefix of a valid notification, and a sweep of byte flips over it: whatever
        // serde_json makes of them, nothing panics, and what is accepted round-trips.
        let n = NOTIFICATIONS[0].as_bytes();
        for end in 0..n.len() {
            assert!(notification_msgpack(&n[..end], None).is_err());
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            // xorshift64: a fixed sequence, so a failure reproduces.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut m = n.to_vec();
            let at = (seed % m.len() as u64) as usize;
            m[at] = (seed >> 32) as u8;
            if let Ok(out) = notification_msgpack(&m, None) {
                let json: Value = serde_json::from_slice(&m).unwrap();
                let decoded: Value = rmp_serde::from_slice(&out).unwrap();
                assert_eq!(decoded["data"], json, "{:?}", String::from_utf8_lossy(&m));
            }
        }
    }

    #[test]
    fn long_unknown_event_names_are_truncated() {
        let name = "é".repeat(100);
        let msg = format!(r#"{{"event":"{name}","data":"u"}}"#);
        match parse(&msg) {
            Err(Error::UnknownEvent(e)) => assert!(e.len() <= 64),
            other => panic!("{other:?}"),
        }
    }
}
