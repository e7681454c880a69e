//! Socket.IO v5 packets in the default parser's text encoding:
//! `<type>[<attachments>-][<namespace>,][<ack id>][JSON]`, carried in an Engine.IO message.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::socketio::error::Error;

/// The main namespace, which the encoding leaves out.
pub const MAIN_NAMESPACE: &str = "/";

/// Event names socket.io-parser refuses to decode, because Socket.IO or Node's EventEmitter
/// already gives them a meaning.
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The packet types, numbered as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl PacketType {
    fn from_digit(c: char) -> Option<Self> {
        Some(match c {
            '0' => PacketType::Connect,
            '1' => PacketType::Disconnect,
            '2' => PacketType::Event,
            '3' => PacketType::Ack,
            '4' => PacketType::ConnectError,
            '5' => PacketType::BinaryEvent,
            '6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    /// Whether binary attachments follow the packet, so its encoding carries their count.
    pub fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}

/// One decoded Socket.IO packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub kind: PacketType,
    /// `"/"` when the encoding names none.
    pub namespace: String,
    /// The acknowledgement id: on an EVENT, the client wants an ACK with the same id.
    pub id: Option<u64>,
    /// The JSON payload, already checked against `kind` (see [`decode`]).
    pub data: Option<Value>,
    /// How many binary messages follow (BINARY_EVENT and BINARY_ACK only; 0 otherwise).
    pub attachments: usize,
}

/// Decodes one Socket.IO packet from a client: the text after Engine.IO's `4`,
/// `<type>[<attachments>-][<namespace>,][<ack id>][JSON]`.
///
/// Refuses more than `max_attachments` announced attachments, so a client cannot make the server
/// wait for and buffer an unbounded number of binary messages. The payload is checked as
/// socket.io-parser's `isPayloadValid` checks it; see [`Error`] for each fault.
pub fn decode(s: &str, max_attachments: usize) -> Result<Packet, Error> {
    let mut chars = s.chars();
    let first = chars.next().ok_or(Error::Empty)?;
    let kind = PacketType::from_digit(first).ok_or(Error::UnknownType(first))?;
    if kind == PacketType::ConnectError {
        // socket.io-protocol v5: "the server MUST respond with either: a CONNECT packet [...] or
        // a CONNECT_ERROR packet"; a client has no reason to send one.
        return Err(Error::ConnectErrorFromClient);
    }
    let mut rest = chars.as_str();

    let mut attachments = 0;
    if kind.is_binary() {
        let (digits, after) = split_digits(rest);
        let after = after
            .strip_prefix('-')
            .filter(|_| !digits.is_empty())
            .ok_or(Error::MissingAttachmentCount)?;
        // Saturating: a count too long for usize is over any limit anyway.
        let count = digits.parse::<usize>().unwrap_or(usize::MAX);
        if count > max_attachments {
            return Err(Error::TooManyAttachments {
                count,
                max: max_attachments,
            });
        }
        attachments = count;
        rest = after;
    }

    let namespace = if rest.starts_with('/') {
        // The namespace ends at the first ',' or at the end of the packet: socket.io-parser
        // writes the ',', but reads `0/admin` as a CONNECT to "/admin" as well, and so do the
        // official protocol suite and clients other than socket.io-client.
        let (namespace, after) = rest.split_once(',').unwrap_or((rest, ""));
        rest = after;
        namespace.to_owned()
    } else {
        MAIN_NAMESPACE.to_owned()
    };

    let (digits, after) = split_digits(rest);
    let id = if digits.is_empty() {
        None
    } else {
        rest = after;
        Some(digits.parse::<u64>().map_err(|_| Error::AckIdOverflow)?)
    };

    let data = if rest.is_empty() {
        None
    } else {
        // `from_str` also refuses anything after the value ("trailing characters").
        Some(serde_json::from_str::<Value>(rest).map_err(|e| Error::InvalidJson(e.to_string()))?)
    };
    check_payload(kind, data.as_ref())?;

    Ok(Packet {
        kind,
        namespace,
        id,
        data,
        attachments,
    })
}

/// Splits off the leading ASCII digits.
fn split_digits(s: &str) -> (&str, &str) {
    let end = s.bytes().take_while(u8::is_ascii_digit).count();
    s.split_at(end)
}

/// socket.io-parser `isPayloadValid`, for the packet types a server receives.
fn check_payload(kind: PacketType, data: Option<&Value>) -> Result<(), Error> {
    match kind {
        PacketType::Connect => match data {
            None | Some(Value::Object(_)) => Ok(()),
            Some(_) => Err(Error::ConnectPayloadNotObject),
        },
        PacketType::Disconnect => match data {
            None => Ok(()),
            Some(_) => Err(Error::UnexpectedPayload),
        },
        // socket.io-protocol v5: "The payload is mandatory and MUST be a non-empty array. If
        // that's not the case, then the receiver MUST close the connection."
        PacketType::Event | PacketType::BinaryEvent => {
            let args = as_array(data)?;
            match args.first() {
                None => Err(Error::EmptyEvent),
                Some(Value::String(name)) => match RESERVED_EVENTS.iter().find(|r| **r == *name) {
                    Some(reserved) => Err(Error::ReservedEventName(reserved)),
                    None => Ok(()),
                },
                Some(_) => Err(Error::EventNameNotString),
            }
        }
        // socket.io-protocol v5, "Acknowledgement": "The payload is mandatory and MUST be an
        // array (possibly empty)."
        PacketType::Ack | PacketType::BinaryAck => as_array(data).map(|_| ()),
        PacketType::ConnectError => Err(Error::ConnectErrorFromClient),
    }
}

fn as_array(data: Option<&Value>) -> Result<&Vec<Value>, Error> {
    match data {
        None => Err(Error::MissingPayload),
        Some(Value::Array(args)) => Ok(args),
        Some(_) => Err(Error::PayloadNotArray),
    }
}

/// Writes the namespace part: nothing for the main namespace, else `<namespace>,`.
fn push_namespace(out: &mut String, namespace: &str) {
    if namespace != MAIN_NAMESPACE {
        out.push_str(namespace);
        out.push(',');
    }
}

/// `0{"sid":"..."}`, or `0{"sid":"...","pid":"..."}` with connection state recovery: the server
/// accepts a connection to the main namespace.
pub fn encode_connect(sid: &str, pid: Option<&str>) -> String {
    match pid {
        Some(pid) => format!("0{}", json!({ "sid": sid, "pid": pid })),
        None => format!("0{}", json!({ "sid": sid })),
    }
}

/// `4/admin,{"message":"..."}`, or `4{"message":"..."}` on the main namespace: the server refuses
/// a connection to `namespace`.
pub fn encode_connect_error(namespace: &str, message: &str) -> String {
    let mut out = String::from("4");
    push_namespace(&mut out, namespace);
    // Writing into a String cannot fail.
    let _ = write!(out, "{}", json!({ "message": message }));
    out
}

/// `2["name",arg1,...]`: an event on the main namespace.
pub fn encode_event(name: &str, args: &[Value]) -> String {
    let mut out = String::from("2[");
    let _ = write!(out, "{}", Value::from(name));
    for arg in args {
        let _ = write!(out, ",{arg}");
    }
    out.push(']');
    out
}

/// `3<id>[arg1,...]`: the acknowledgement of the client's event `id`, on the main namespace.
pub fn encode_ack(id: u64, args: &[Value]) -> String {
    let mut out = String::new();
    let _ = write!(out, "3{id}[");
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{arg}");
    }
    out.push(']');
    out
}

/// `1`: the server disconnects the client from the main namespace.
pub fn encode_disconnect() -> String {
    "1".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 10;

    fn packet(
        kind: PacketType,
        namespace: &str,
        id: Option<u64>,
        data: Option<Value>,
        attachments: usize,
    ) -> Packet {
        Packet {
            kind,
            namespace: namespace.to_owned(),
            id,
            data,
            attachments,
        }
    }

    macro_rules! decodes {
        ($($name:ident: $wire:expr => $kind:ident, $ns:expr, $id:expr, $data:expr, $att:expr;)*) => {$(
            #[test]
            fn $name() {
                let want = packet(PacketType::$kind, $ns, $id, $data, $att);
                assert_eq!(decode($wire, MAX), Ok(want));
            }
        )*};
    }

    // The examples of the socket.io-protocol v5 README, "Packet encoding".
    decodes! {
        connect_main: "0" => Connect, "/", None, None, 0;
        connect_admin: "0/admin," => Connect, "/admin", None, None, 0;
        connect_with_payload: r#"0/admin,{"token":"123"}"#
            => Connect, "/admin", None, Some(json!({"token": "123"})), 0;
        disconnect_main: "1" => Disconnect, "/", None, None, 0;
        disconnect_admin: "1/admin," => Disconnect, "/admin", None, None, 0;
        event_main: r#"2["foo"]"# => Event, "/", None, Some(json!(["foo"])), 0;
        event_hello: r#"2["hello",1]"# => Event, "/", None, Some(json!(["hello", 1])), 0;
        event_admin: r#"2/admin,["bar"]"# => Event, "/admin", None, Some(json!(["bar"])), 0;
        event_with_id: r#"212["foo"]"# => Event, "/", Some(12), Some(json!(["foo"])), 0;
        event_admin_with_id: r#"2/admin,456["project:delete",123]"#
            => Event, "/admin", Some(456), Some(json!(["project:delete", 123])), 0;
        ack_main: "312[]" => Ack, "/", Some(12), Some(json!([])), 0;
        ack_admin: r#"3/admin,13["bar"]"# => Ack, "/admin", Some(13), Some(json!(["bar"])), 0;
        ack_admin_empty: "3/admin,456[]" => Ack, "/admin", Some(456), Some(json!([])), 0;
        binary_event: r#"51-["baz",{"_placeholder":true,"num":0}]"#
            => BinaryEvent, "/", None, Some(json!(["baz", {"_placeholder": true, "num": 0}])), 1;
        binary_event_hello: r#"51-["hello",{"_placeholder":true,"num":0}]"#
            => BinaryEvent, "/", None, Some(json!(["hello", {"_placeholder": true, "num": 0}])), 1;
        binary_event_two: r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
            => BinaryEvent, "/admin", None,
               Some(json!(["baz", {"_placeholder": true, "num": 0}, {"_placeholder": true, "num": 1}])), 2;
        binary_ack: r#"61-15["bar",{"_placeholder":true,"num":0}]"#
            => BinaryAck, "/", Some(15), Some(json!(["bar", {"_placeholder": true, "num": 0}])), 1;
        binary_ack_admin: r#"61-/admin,456[{"_placeholder":true,"num":0}]"#
            => BinaryAck, "/admin", Some(456), Some(json!([{"_placeholder": true, "num": 0}])), 1;
        binary_event_no_attachments: r#"50-["x"]"# => BinaryEvent, "/", None, Some(json!(["x"])), 0;
        attachments_at_the_cap: r#"510-["x"]"# => BinaryEvent, "/", None, Some(json!(["x"])), 10;
        ack_id_max: r#"218446744073709551615["x"]"#
            => Event, "/", Some(u64::MAX), Some(json!(["x"])), 0;
        namespace_with_query_chars: r#"2/chat?x=1,["x"]"# => Event, "/chat?x=1", None, Some(json!(["x"])), 0;
        connect_namespace_without_comma: "0/random" => Connect, "/random", None, None, 0;
        disconnect_namespace_without_comma: "1/custom" => Disconnect, "/custom", None, None, 0;
        // socket.io-parser reads everything up to the end as the namespace, payload included.
        connect_namespace_swallows_payload: r#"0/admin{"token":"1"}"#
            => Connect, r#"/admin{"token":"1"}"#, None, None, 0;
    }

    macro_rules! refused {
        ($($name:ident: $wire:expr => $err:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(decode($wire, MAX), Err($err));
            }
        )*};
    }

    refused! {
        empty: "" => Error::Empty;
        unknown_type: "9" => Error::UnknownType('9');
        unknown_type_letter: "x[]" => Error::UnknownType('x');
        connect_error_from_client: r#"4{"message":"Not authorized"}"# => Error::ConnectErrorFromClient;
        connect_not_object: r#"0/admin,"invalid""# => Error::ConnectPayloadNotObject;
        connect_null: "0null" => Error::ConnectPayloadNotObject;
        connect_array: "0[]" => Error::ConnectPayloadNotObject;
        disconnect_with_data: "1/admin,{}" => Error::UnexpectedPayload;
        event_no_data: "2" => Error::MissingPayload;
        event_id_no_data: "212" => Error::MissingPayload;
        event_object: "2{}" => Error::PayloadNotArray;
        event_string: r#"2/admin,"invalid""# => Error::PayloadNotArray;
        event_empty: "2[]" => Error::EmptyEvent;
        event_name_number: "2[1]" => Error::EventNameNotString;
        event_name_object: r#"2[{"toString":"foo"}]"# => Error::EventNameNotString;
        event_name_null: r#"2[null,"bar"]"# => Error::EventNameNotString;
        event_name_bool: r#"2[true,"foo"]"# => Error::EventNameNotString;
        event_reserved: r#"2["disconnect"]"# => Error::ReservedEventName("disconnect");
        binary_event_reserved: r#"51-["connect",{"_placeholder":true,"num":0}]"#
            => Error::ReservedEventName("connect");
        ack_no_data: "312" => Error::MissingPayload;
        ack_object: "312{}" => Error::PayloadNotArray;
        ack_id_overflow: r#"299999999999999999999999["x"]"# => Error::AckIdOverflow;
        ack_id_overflow_by_one: r#"218446744073709551616["x"]"# => Error::AckIdOverflow;
        no_attachment_count: r#"5["x"]"# => Error::MissingAttachmentCount;
        empty_attachment_count: r#"5-["x"]"# => Error::MissingAttachmentCount;
        attachment_count_no_dash: r#"61["x"]"# => Error::MissingAttachmentCount;
        attachments_over_cap: r#"5999-["x"]"# => Error::TooManyAttachments { count: 999, max: MAX };
        attachments_overflow: r#"599999999999999999999999-["x"]"#
            => Error::TooManyAttachments { count: usize::MAX, max: MAX };
        // Without a ',' the payload is read as part of the namespace, and an EVENT has none.
        event_namespace_without_comma: r#"2/admin["x"]"# => Error::MissingPayload;
        ack_namespace_without_comma: "3/admin" => Error::MissingPayload;
    }

    #[test]
    fn bad_json_is_an_error() {
        for bad in [
            r#"2["x""#,
            r#"2["x"]garbage"#,
            r#"2["x"]["y"]"#,
            "2[",
            "0{",
            r#"2/admin,12["x",]"#,
            "2 x",
        ] {
            assert!(
                matches!(decode(bad, MAX), Err(Error::InvalidJson(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn multibyte_input_never_panics() {
        for s in ["€", "2€", "5€-[]", "51€", "2/€", "2/€,€", "21€", "€€€"] {
            assert!(decode(s, MAX).is_err(), "{s:?}");
        }
        assert_eq!(
            decode(r#"2/é,["ü"]"#, MAX),
            Ok(packet(PacketType::Event, "/é", None, Some(json!(["ü"])), 0))
        );
    }

    #[test]
    fn encoders_write_the_documented_text() {
        assert_eq!(
            encode_connect("wZX3oN0bSVIhsaknAAAI", None),
            r#"0{"sid":"wZX3oN0bSVIhsaknAAAI"}"#
        );
        assert_eq!(
            encode_connect_error("/", "Not authorized"),
            r#"4{"message":"Not authorized"}"#
        );
        assert_eq!(
            encode_connect_error("/admin", "Invalid namespace"),
            r#"4/admin,{"message":"Invalid namespace"}"#
        );
        assert_eq!(encode_event("foo", &[]), r#"2["foo"]"#);
        assert_eq!(
            encode_event("note", &[json!({"id": 1, "text": "a\"b"}), json!(2)]),
            r#"2["note",{"id":1,"text":"a\"b"},2]"#
        );
        assert_eq!(encode_event("a\"b", &[]), r#"2["a\"b"]"#);
        assert_eq!(encode_ack(12, &[]), "312[]");
        assert_eq!(
            encode_ack(13, &[json!("bar"), json!(null)]),
            r#"313["bar",null]"#
        );
        assert_eq!(encode_disconnect(), "1");
    }

    #[test]
    fn encoded_events_and_acks_decode_back() {
        let event = encode_event("hello", &[json!(1), json!({"k": [true]})]);
        assert_eq!(
            decode(&event, MAX),
            Ok(packet(
                PacketType::Event,
                "/",
                None,
                Some(json!(["hello", 1, {"k": [true]}])),
                0
            ))
        );
        let ack = encode_ack(7, &[json!("ok")]);
        assert_eq!(
            decode(&ack, MAX),
            Ok(packet(
                PacketType::Ack,
                "/",
                Some(7),
                Some(json!(["ok"])),
                0
            ))
        );
    }
}
