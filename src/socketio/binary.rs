//! Binary attachments: a BINARY_EVENT or BINARY_ACK is followed by as many Engine.IO binary
//! messages as it announces, and its JSON holds a `{"_placeholder":true,"num":N}` object where
//! attachment N belongs.

use std::mem;

use serde_json::{json, Map, Value};

use crate::socketio::error::Error;
use crate::socketio::packet::Packet;

/// A completed binary packet: placeholders replaced, and its attachments in `num` order.
pub type Reassembled = (Packet, Vec<Vec<u8>>);

/// Collects the binary attachments announced by a BINARY_EVENT or BINARY_ACK.
///
/// Make one from a decoded packet whose `attachments` is above 0 (a packet announcing none is
/// complete as decoded), then [`push`](Self::push) each following binary message until it
/// returns the packet. A text message arriving before then is a protocol error the caller
/// reports; the reference client never interleaves one.
#[derive(Debug)]
pub struct Reassembler {
    /// The packet as decoded; its placeholders are replaced once every attachment is in.
    packet: Packet,
    /// Attachments received so far, in arrival order, which is their `num` order.
    buffers: Vec<Vec<u8>>,
    /// Set once `push` has returned the packet or an error; any later push is an error.
    done: bool,
}

impl Reassembler {
    pub fn new(packet: Packet) -> Self {
        Reassembler {
            packet,
            buffers: Vec::new(),
            done: false,
        }
    }

    /// The attachment bytes held so far: what a session waiting for the rest is charged.
    pub fn held_bytes(&self) -> usize {
        self.buffers.iter().map(Vec::len).sum()
    }

    /// Adds the next attachment. Returns `Ok(None)` while more are due, then the packet with
    /// every placeholder replaced, and the attachments themselves.
    ///
    /// Each placeholder becomes `{"_binary":<byte length>,"num":<N>}`, so code reading the JSON
    /// sees what was sent without carrying the bytes, and can find them at index N of the
    /// returned buffers. `attachments` keeps its count.
    pub fn push(&mut self, buf: Vec<u8>) -> Result<Option<Reassembled>, Error> {
        if self.done || self.buffers.len() >= self.packet.attachments {
            self.done = true;
            return Err(Error::UnexpectedAttachment);
        }
        self.buffers.push(buf);
        if self.buffers.len() < self.packet.attachments {
            return Ok(None);
        }
        self.done = true;

        let mut used = vec![false; self.buffers.len()];
        if let Some(data) = self.packet.data.as_mut() {
            replace_placeholders(data, &self.buffers, &mut used)?;
        }
        // socket.io-client writes one placeholder per attachment; a buffer nobody points at
        // means the packet and its attachments do not belong together.
        if let Some(num) = used.iter().position(|u| !u) {
            return Err(Error::UnusedAttachment(num));
        }
        let packet = Packet {
            data: self.packet.data.take(),
            namespace: mem::take(&mut self.packet.namespace),
            ..self.packet
        };
        Ok(Some((packet, mem::take(&mut self.buffers))))
    }
}

/// Walks `value` and replaces each placeholder, as socket.io-parser's `reconstructPacket` does.
///
/// Recursion is bounded: serde_json refuses input nested more than 128 levels deep.
fn replace_placeholders(
    value: &mut Value,
    buffers: &[Vec<u8>],
    used: &mut [bool],
) -> Result<(), Error> {
    match value {
        Value::Object(map) if is_placeholder(map) => {
            let num = map
                .get("num")
                .and_then(Value::as_u64)
                .ok_or(Error::BadPlaceholder)?;
            let index = usize::try_from(num)
                .ok()
                .filter(|&i| i < buffers.len())
                .ok_or(Error::PlaceholderOutOfRange {
                    num,
                    attachments: buffers.len(),
                })?;
            used[index] = true;
            *value = json!({"_binary": buffers[index].len(), "num": num});
            Ok(())
        }
        Value::Object(map) => map
            .values_mut()
            .try_for_each(|v| replace_placeholders(v, buffers, used)),
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|v| replace_placeholders(v, buffers, used)),
        _ => Ok(()),
    }
}

/// socket.io-parser: `data._placeholder === true`.
fn is_placeholder(map: &Map<String, Value>) -> bool {
    map.get("_placeholder") == Some(&Value::Bool(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socketio::packet::{decode, PacketType};

    fn reassembler(wire: &str) -> Reassembler {
        let packet = decode(wire, 10).expect("test input is valid");
        Reassembler::new(packet)
    }

    #[test]
    fn two_attachments() {
        let mut r = reassembler(
            r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"nested":{"_placeholder":true,"num":1}}]"#,
        );
        assert_eq!(r.push(vec![0x01, 0x02]), Ok(None));
        let (packet, buffers) = r
            .push(vec![0x03, 0x04, 0x05])
            .expect("valid")
            .expect("complete");
        assert_eq!(packet.kind, PacketType::BinaryEvent);
        assert_eq!(packet.namespace, "/admin");
        assert_eq!(packet.attachments, 2);
        assert_eq!(
            packet.data,
            Some(json!([
                "baz",
                {"_binary": 2, "num": 0},
                {"nested": {"_binary": 3, "num": 1}}
            ]))
        );
        assert_eq!(buffers, vec![vec![0x01, 0x02], vec![0x03, 0x04, 0x05]]);
        assert_eq!(r.push(vec![0x06]), Err(Error::UnexpectedAttachment));
    }

    #[test]
    fn binary_ack_keeps_its_id() {
        let mut r = reassembler(r#"61-15["bar",{"_placeholder":true,"num":0}]"#);
        let (packet, buffers) = r.push(vec![1, 2, 3, 4]).expect("valid").expect("complete");
        assert_eq!(packet.kind, PacketType::BinaryAck);
        assert_eq!(packet.id, Some(15));
        assert_eq!(packet.data, Some(json!(["bar", {"_binary": 4, "num": 0}])));
        assert_eq!(buffers, vec![vec![1, 2, 3, 4]]);
    }

    #[test]
    fn placeholder_may_be_reused() {
        let mut r =
            reassembler(r#"51-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":0}]"#);
        let (packet, _) = r.push(vec![9]).expect("valid").expect("complete");
        assert_eq!(
            packet.data,
            Some(json!(["x", {"_binary": 1, "num": 0}, {"_binary": 1, "num": 0}]))
        );
    }

    macro_rules! refused {
        ($($name:ident: $wire:expr, $pushes:expr => $err:expr;)*) => {$(
            #[test]
            fn $name() {
                let mut r = reassembler($wire);
                let pushes: usize = $pushes;
                for _ in 1..pushes {
                    assert_eq!(r.push(vec![0]), Ok(None));
                }
                assert_eq!(r.push(vec![0]), Err($err));
                assert_eq!(r.push(vec![0]), Err(Error::UnexpectedAttachment));
            }
        )*};
    }

    refused! {
        placeholder_out_of_range: r#"51-["x",{"_placeholder":true,"num":1}]"#, 1
            => Error::PlaceholderOutOfRange { num: 1, attachments: 1 };
        placeholder_huge_num: r#"52-["x",{"_placeholder":true,"num":18446744073709551615}]"#, 2
            => Error::PlaceholderOutOfRange { num: u64::MAX, attachments: 2 };
        placeholder_negative: r#"51-["x",{"_placeholder":true,"num":-1}]"#, 1
            => Error::BadPlaceholder;
        placeholder_fraction: r#"51-["x",{"_placeholder":true,"num":0.5}]"#, 1
            => Error::BadPlaceholder;
        placeholder_string_num: r#"51-["x",{"_placeholder":true,"num":"0"}]"#, 1
            => Error::BadPlaceholder;
        placeholder_without_num: r#"51-["x",{"_placeholder":true}]"#, 1
            => Error::BadPlaceholder;
        attachment_not_referred_to: r#"52-["x",{"_placeholder":true,"num":0}]"#, 2
            => Error::UnusedAttachment(1);
        no_placeholder_at_all: r#"51-["x"]"#, 1 => Error::UnusedAttachment(0);
    }

    #[test]
    fn packet_announcing_none_takes_no_attachment() {
        let mut r = reassembler(r#"50-["x"]"#);
        assert_eq!(r.push(vec![1]), Err(Error::UnexpectedAttachment));
    }

    #[test]
    fn placeholder_false_is_plain_data() {
        let mut r =
            reassembler(r#"51-["x",{"_placeholder":false,"num":7},{"_placeholder":true,"num":0}]"#);
        let (packet, _) = r.push(vec![]).expect("valid").expect("complete");
        assert_eq!(
            packet.data,
            Some(json!(["x", {"_placeholder": false, "num": 7}, {"_binary": 0, "num": 0}]))
        );
    }
}
