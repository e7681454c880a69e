//! The raw JSON protocol at `/ws`: text frames carrying `{"event":"<name>","data":<value>}`.
//!
//! Client events: `subscribe` and `unsubscribe`, `data` a user id (string, or integer taken as
//! its decimal string). Server events: `subscribed` `{userId, socketId}`, `unsubscribed`
//! `{userId}`, `notification` (built by [`crate::fanout`]) and `error` `{message}`. A bad message
//! earns an `error` event; the connection stays open.

use std::fmt;

use serde::Deserialize;
use serde_json::{json, Value};

use super::truncate;
use crate::rooms::{self, UserIdError};

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    Subscribe(String),
    Unsubscribe(String),
}

/// Why a client message was refused; its `Display` is the `message` of the `error` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    InvalidJson(String),
    UnknownEvent(String),
    BadUserId {
        event: &'static str,
        fault: UserIdError,
    },
    BinaryMessage,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidJson(e) => write!(
                f,
                "invalid message: expected {{\"event\":\"subscribe\",\"data\":\"<userId>\"}} ({e})"
            ),
            Error::UnknownEvent(e) => write!(
                f,
                "unknown event {e:?}: expected \"subscribe\" or \"unsubscribe\""
            ),
            Error::BadUserId { event, fault } => write!(f, "{event}: {fault}"),
            Error::BinaryMessage => {
                f.write_str("binary messages are not understood: send JSON text frames")
            }
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    event: String,
    #[serde(default)]
    data: Value,
}

/// Parses one text message from a client.
pub fn parse(text: &str) -> Result<ClientEvent, Error> {
    let env: Envelope =
        serde_json::from_str(text).map_err(|e| Error::InvalidJson(e.to_string()))?;
    let (event, make): (&'static str, fn(String) -> ClientEvent) = match env.event.as_str() {
        "subscribe" => ("subscribe", ClientEvent::Subscribe),
        "unsubscribe" => ("unsubscribe", ClientEvent::Unsubscribe),
        _ => return Err(Error::UnknownEvent(truncate(&env.event, 64).to_owned())),
    };
    rooms::user_id_from_json(&env.data)
        .map(make)
        .map_err(|fault| Error::BadUserId { event, fault })
}

/// `{"event":"subscribed","data":{"userId":...,"socketId":...}}`
pub fn subscribed(user_id: &str, socket_id: &str) -> String {
    json!({"event": "subscribed", "data": {"userId": user_id, "socketId": socket_id}}).to_string()
}

/// `{"event":"unsubscribed","data":{"userId":...}}`
pub fn unsubscribed(user_id: &str) -> String {
    json!({"event": "unsubscribed", "data": {"userId": user_id}}).to_string()
}

/// `{"event":"error","data":{"message":...}}`
pub fn error(message: &str) -> String {
    json!({"event": "error", "data": {"message": message}}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn invalid_json_is_an_error_not_a_panic() {
        for bad in ["", "{", "[]", "null", r#"{"event":1}"#, "\u{0}"] {
            assert!(matches!(parse(bad), Err(Error::InvalidJson(_))), "{bad:?}");
        }
    }

    #[test]
    fn replies_are_the_documented_envelopes() {
        assert_eq!(
            subscribed("u1", "abc"),
            r#"{"event":"subscribed","data":{"userId":"u1","socketId":"abc"}}"#
        );
        assert_eq!(
            unsubscribed("u1"),
            r#"{"event":"unsubscribed","data":{"userId":"u1"}}"#
        );
        assert_eq!(
            error("x\"y"),
            r#"{"event":"error","data":{"message":"x\"y"}}"#
        );
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
