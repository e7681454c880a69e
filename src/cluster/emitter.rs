//! What `@socket.io/redis-emitter` 5.x publishes, read as herald pushes. No I/O.
//!
//! A backend written for Socket.IO publishes `emitter.to('user_42').emit('notification', n)` as
//! a MessagePack array `[uid, packet, opts]` on `socket.io#/#` (or `socket.io#/#<room>#` when
//! it names one room): `packet` is `{type: 2, data: [event, ...args], nsp: "/"}` and `opts` is
//! `{rooms, except, flags}`. herald reads it so:
//!
//! - rooms `user_<id>` (the prefix is `--redis-emitter-room-prefix`) are pushes to user `<id>`;
//!   other rooms have no herald socket in them and are passed over; no room at all is a
//!   broadcast; `except` rooms take their users out of the list (a broadcast with exceptions is
//!   refused: herald's log keeps no exceptions for the cluster);
//! - the event is delivered under its own name (`notification` as every push is); its one
//!   argument is the data (several are sent as a list, none as `null`); a `notification` object
//!   without `timestamp` gets one, as the control API gives it;
//! - acknowledgements, binary arguments, other namespaces and reserved event names are refused,
//!   as the emitter itself refuses them.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::command::Target;
use crate::rooms::MAX_USER_ID_LEN;
use crate::socketio::packet::RESERVED_EVENTS;

/// Socket.IO's EVENT packet type.
const EVENT: u8 = 2;

/// A push read from the emitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    pub target: Target,
    /// `None` for `notification`.
    pub event: Option<Arc<str>>,
    /// The data, as JSON.
    pub notification: Bytes,
}

/// Why a message on the emitter's channels is not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not `[uid, packet, opts]` in MessagePack, or data JSON cannot hold (binary, dates).
    Malformed,
    /// A packet other than a plain EVENT (an acknowledgement, binary attachments).
    NotAnEvent,
    /// An event with an acknowledgement id: the emitter has no way to receive it.
    Ack,
    /// Another namespace than `/`.
    Namespace,
    /// A reserved event name.
    Reserved,
    /// Rooms were named, none of them a user's.
    NoUserRoom,
    /// A broadcast with `except` rooms.
    Except,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::Malformed => "malformed",
            Refused::NotAnEvent => "not_an_event",
            Refused::Ack => "ack",
            Refused::Namespace => "namespace",
            Refused::Reserved => "reserved",
            Refused::NoUserRoom => "no_user_room",
            Refused::Except => "except",
        }
    }
}

#[derive(Deserialize)]
struct Packet {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    data: Vec<Value>,
    #[serde(default = "root")]
    nsp: String,
    #[serde(default)]
    id: Option<Value>,
}

fn root() -> String {
    "/".into()
}

#[derive(Deserialize, Default)]
struct Opts {
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
}

/// The channel pattern the emitter publishes on under `key` (its `key` option, `socket.io`).
pub fn pattern(key: &str) -> String {
    format!("{key}#/#*")
}

/// Reads one message; `now` stamps a `notification` that has no `timestamp`.
pub fn decode(payload: &[u8], room_prefix: &str, now: SystemTime) -> Result<Emitted, Refused> {
    let (_uid, packet, opts): (Value, Packet, Option<Opts>) =
        rmp_serde::from_slice(payload).map_err(|_| Refused::Malformed)?;
    let opts = opts.unwrap_or_default();
    if packet.kind != EVENT {
        return Err(Refused::NotAnEvent);
    }
    if packet.id.is_some_and(|id| !id.is_null()) {
        return Err(Refused::Ack);
    }
    if packet.nsp != "/" {
        return Err(Refused::Namespace);
    }
    let mut data = packet.data.into_iter();
    let Some(Value::String(event)) = data.next() else {
        return Err(Refused::Malformed);
    };
    // The emitter refuses to emit the names Socket.IO reserves.
    if RESERVED_EVENTS.contains(&event.as_str()) {
        return Err(Refused::Reserved);
    }
    let mut args: Vec<Value> = data.collect();
    let mut value = match args.len() {
        0 => Value::Null,
        1 => args.pop().unwrap_or(Value::Null),
        _ => Value::Array(args),
    };
    let is_notification = event == "notification";
    if is_notification {
        if let Value::Object(map) = &mut value {
            if !map.contains_key("timestamp") {
                map.insert(
                    "timestamp".into(),
                    Value::String(crate::time::rfc3339_millis(now)),
                );
            }
        }
    }
    let user_of = |room: &String| {
        room.strip_prefix(room_prefix)
            .filter(|u| !u.is_empty() && u.len() <= MAX_USER_ID_LEN)
            .map(str::to_owned)
    };
    let except: Vec<String> = opts.except.iter().filter_map(user_of).collect();
    let target = if opts.rooms.is_empty() {
        if !opts.except.is_empty() {
            return Err(Refused::Except);
        }
        Target::All
    } else {
        let mut users: Vec<String> = Vec::new();
        for u in opts.rooms.iter().filter_map(user_of) {
            if !except.contains(&u) && !users.contains(&u) {
                users.push(u);
            }
        }
        match users.len() {
            0 => return Err(Refused::NoUserRoom),
            1 => Target::User(users.pop().unwrap_or_default()),
            _ => Target::Users(users),
        }
    };
    let notification = serde_json::to_vec(&value).map_err(|_| Refused::Malformed)?;
    Ok(Emitted {
        target,
        event: (!is_notification).then(|| event.into()),
        notification: Bytes::from(notification),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The bytes the emitter publishes (notepack writes what rmp_serde writes for these).
    fn emitted(data: Value, rooms: &[&str], except: &[&str]) -> Vec<u8> {
        let msg = json!(["emitter", {"type": 2, "data": data, "nsp": "/"},
            {"rooms": rooms, "flags": {}, "except": except}]);
        rmp_serde::to_vec_named(&msg).unwrap()
    }

    fn at(ms: u64) -> SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
    }

    #[test]
    fn a_user_room_is_a_push_to_that_user() {
        let m = emitted(json!(["notification", {"type": "LIKE"}]), &["user_42"], &[]);
        let e = decode(&m, "user_", at(0)).unwrap();
        assert_eq!(e.target, Target::User("42".into()));
        assert_eq!(e.event, None);
        assert_eq!(
            &e.notification[..],
            br#"{"type":"LIKE","timestamp":"1970-01-01T00:00:00.000Z"}"#
        );
    }

    #[test]
    fn rooms_and_exceptions_make_a_list_and_no_room_is_everyone() {
        let m = emitted(
            json!(["chat", "hi"]),
            &["user_1", "user_2", "lobby", "user_3"],
            &["user_2"],
        );
        let e = decode(&m, "user_", at(0)).unwrap();
        assert_eq!(e.target, Target::Users(vec!["1".into(), "3".into()]));
        assert_eq!(e.event.as_deref(), Some("chat"));
        assert_eq!(&e.notification[..], br#""hi""#);
        let all = decode(&emitted(json!(["tick", 1, 2]), &[], &[]), "user_", at(0)).unwrap();
        assert_eq!(all.target, Target::All);
        assert_eq!(&all.notification[..], b"[1,2]");
        let kept = json!(["notification", {"timestamp": "t"}]);
        let e = decode(&emitted(kept, &[], &[]), "user_", at(0)).unwrap();
        assert_eq!(&e.notification[..], br#"{"timestamp":"t"}"#);
    }

    #[test]
    fn what_the_emitter_refuses_is_refused() {
        let refused = |payload: Vec<u8>| decode(&payload, "user_", at(0)).unwrap_err();
        assert_eq!(
            refused(emitted(json!(["disconnect"]), &[], &[])),
            Refused::Reserved
        );
        assert_eq!(
            refused(emitted(json!(["x"]), &[], &["user_1"])),
            Refused::Except
        );
        assert_eq!(
            refused(emitted(json!(["x"]), &["lobby"], &[])),
            Refused::NoUserRoom
        );
        let ack = json!(["emitter", {"type": 2, "data": ["x"], "nsp": "/", "id": 3}, {}]);
        assert_eq!(
            refused(rmp_serde::to_vec_named(&ack).unwrap()),
            Refused::Ack
        );
        let nsp = json!(["emitter", {"type": 2, "data": ["x"], "nsp": "/admin"}, {}]);
        assert_eq!(
            refused(rmp_serde::to_vec_named(&nsp).unwrap()),
            Refused::Namespace
        );
        let binary = json!(["emitter", {"type": 5, "data": ["x"], "nsp": "/"}, {}]);
        assert_eq!(
            refused(rmp_serde::to_vec_named(&binary).unwrap()),
            Refused::NotAnEvent
        );
        assert_eq!(refused(b"\xc1".to_vec()), Refused::Malformed);
        assert_eq!(refused(emitted(json!([1]), &[], &[])), Refused::Malformed);
        // A Buffer argument is MessagePack bin: no JSON form.
        let bin = b"\x93\xa7emitter\x83\xa4type\x02\xa4data\x92\xa1x\xc4\x01\x00\xa3nsp\xa1/\x80";
        assert_eq!(refused(bin.to_vec()), Refused::Malformed);
    }
}
