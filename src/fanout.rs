//! A push prepared once and shared by every recipient.
//!
//! The control API serializes a notification to JSON once; the event loop wraps it in each wire
//! form a recipient needs (the raw protocol's `{"event":"notification","data":...}` text frame or
//! its MessagePack binary twin, Socket.IO's `42["notification",...]` packet and frame, each frame
//! also compressed with permessage-deflate), built the first time a recipient of that form is met and then handed to
//! every such socket as a clone of one [`Bytes`]: a reference-count increment, never a copy. So a
//! push runs the compressor at most once per wire form, however many sockets take it.

use std::cell::{Cell, OnceCell, RefCell};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::raw;
use crate::ws::deflate::Compressor;
use crate::ws::frame::{self, opcode};

const RAW_PREFIX: &[u8] = b"{\"event\":\"notification\",\"data\":";

/// Engine.IO message (`4`) carrying a Socket.IO EVENT (`2`) on `/`: `42["notification",{...}]`.
const SIO_PREFIX: &[u8] = b"42[\"notification\",";

/// RFC 7692 §6: the "Per-Message Compressed" bit, RSV1, in a frame's first byte.
const RSV1: u8 = 0x40;

/// permessage-deflate for pushes: one compressor for the whole event loop, and the rule for which
/// messages are worth compressing.
pub struct Deflate {
    compressor: RefCell<Compressor>,
    /// Payloads shorter than this go uncompressed.
    threshold: usize,
    /// Messages compressed since start: at most one per push and wire form (and one per echoed
    /// message, when the echo route is on).
    runs: Cell<u64>,
    /// Payload bytes given to the compressor, and the compressed bytes it gave back.
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
}

impl Deflate {
    pub fn new(level: u32, threshold: usize) -> Self {
        Deflate {
            compressor: RefCell::new(Compressor::new(level)),
            threshold,
            runs: Cell::new(0),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
        }
    }

    /// Messages compressed since start.
    pub fn runs(&self) -> u64 {
        self.runs.get()
    }

    /// Payload bytes compressed since start, before and after.
    pub fn bytes(&self) -> (u64, u64) {
        (self.bytes_in.get(), self.bytes_out.get())
    }

    /// One unfragmented `op` frame of `payload` for a single connection: compressed when
    /// `deflate` (the connection agreed permessage-deflate) and worth it, plain otherwise. What
    /// the conformance echo sends back.
    pub fn message_frame(&self, op: u8, payload: &[u8], deflate: bool) -> Bytes {
        let compressed = if deflate {
            self.frame(op, &[payload])
        } else {
            None
        };
        compressed.unwrap_or_else(|| frame::encode(op, payload))
    }

    /// One compressed frame (RSV1 set) whose payload is `parts` joined; `None` when the payload
    /// is below the threshold, does not shrink, or the compressor failed. Sending it
    /// uncompressed is then always right: RSV1 is chosen per message.
    fn frame(&self, op: u8, parts: &[&[u8]]) -> Option<Bytes> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len < self.threshold {
            return None;
        }
        let mut compressor = self.compressor.try_borrow_mut().ok()?;
        let mut body = Vec::with_capacity(len / 2 + 16);
        compressor.compress(parts, &mut body).ok()?;
        self.runs.set(self.runs.get() + 1);
        self.bytes_in.set(self.bytes_in.get() + len as u64);
        self.bytes_out.set(self.bytes_out.get() + body.len() as u64);
        if body.len() >= len {
            return None;
        }
        let mut out = frame_with_header(op, body.len());
        out[0] |= RSV1;
        out.put_slice(&body);
        Some(out.freeze())
    }
}

/// One push: the notification's JSON and the frames built from it.
pub struct Payload<'d> {
    /// The notification object, serialized once by the control API.
    notification: Bytes,
    /// The push's sequence number and offset in the recovery log, when recovery is on.
    offset: Option<(u64, Arc<str>)>,
    /// What follows the notification in the raw envelope (`,"offset":"..."}` or `}`) and in
    /// Socket.IO's event (`,"..."]` or `]`): the offset goes last, as the reference server
    /// puts it.
    raw_tail: Bytes,
    sio_tail: Bytes,
    /// What precedes the notification: `{"event":"notification","data":` and
    /// `42["notification",`, or the same with another event's name (see [`Payload::named`]).
    raw_prefix: Bytes,
    sio_prefix: Bytes,
    /// The event's name when it is not `notification`.
    event: Option<Arc<str>>,
    deflate: &'d Deflate,
    /// The raw protocol text frame, header included, and its compressed twin.
    raw_frame: OnceCell<Bytes>,
    raw_frame_z: OnceCell<Bytes>,
    /// The Engine.IO packet `42["notification",...]`, as a polling response carries it.
    sio_packet: OnceCell<Bytes>,
    /// The same packet as a WebSocket text frame, and compressed.
    sio_frame: OnceCell<Bytes>,
    sio_frame_z: OnceCell<Bytes>,
    /// The raw protocol's envelope in MessagePack, or `None` when the notification has no
    /// MessagePack form (a number beyond f64's range, nesting deeper than 128).
    msgpack: OnceCell<Option<Bytes>>,
    /// It as a binary frame, and compressed.
    msgpack_frame: OnceCell<Bytes>,
    msgpack_frame_z: OnceCell<Bytes>,
}

impl<'d> Payload<'d> {
    pub fn new(notification: Bytes, offset: Option<(u64, Arc<str>)>, deflate: &'d Deflate) -> Self {
        let (raw_tail, sio_tail) = match &offset {
            None => (Bytes::from_static(b"}"), Bytes::from_static(b"]")),
            // Offsets are `<hex>-<digits>`: nothing in them needs escaping.
            Some((_, o)) => (
                Bytes::from(format!(",\"offset\":\"{o}\"}}")),
                Bytes::from(format!(",\"{o}\"]")),
            ),
        };
        Payload {
            notification,
            offset,
            raw_tail,
            sio_tail,
            raw_prefix: Bytes::from_static(RAW_PREFIX),
            sio_prefix: Bytes::from_static(SIO_PREFIX),
            event: None,
            deflate,
            raw_frame: OnceCell::new(),
            raw_frame_z: OnceCell::new(),
            sio_packet: OnceCell::new(),
            sio_frame: OnceCell::new(),
            sio_frame_z: OnceCell::new(),
            msgpack: OnceCell::new(),
            msgpack_frame: OnceCell::new(),
            msgpack_frame_z: OnceCell::new(),
        }
    }

    /// The push as an event of another name than `notification` (one a Socket.IO backend sent
    /// through the Redis emitter): `{"event":<name>,"data":...}`, `42[<name>,...]`.
    pub fn named(mut self, event: Option<Arc<str>>) -> Self {
        if let Some(name) = &event {
            let quoted = serde_json::to_string(&**name).unwrap_or_else(|_| "\"\"".into());
            self.raw_prefix = Bytes::from(format!("{{\"event\":{quoted},\"data\":"));
            self.sio_prefix = Bytes::from(format!("42[{quoted},"));
        }
        self.event = event;
        self
    }

    /// The notification as the raw `/ws` protocol sends it: one complete WebSocket text frame,
    /// compressed for a connection that agreed permessage-deflate when it is worth it.
    pub fn raw_frame(&self, deflate: bool) -> &Bytes {
        let parts = [
            &self.raw_prefix[..],
            &self.notification[..],
            &self.raw_tail[..],
        ];
        self.form(
            opcode::TEXT,
            deflate,
            &parts,
            &self.raw_frame,
            &self.raw_frame_z,
        )
    }

    /// The notification as the raw protocol sends it in MessagePack mode: one binary frame,
    /// transcoded from the JSON once per push. `None` when the notification has no MessagePack
    /// form.
    pub fn msgpack_frame(&self, deflate: bool) -> Option<&Bytes> {
        let body = self
            .msgpack
            .get_or_init(|| {
                let offset = self.offset.as_ref().map(|(_, o)| &**o);
                raw::event_msgpack(self.event.as_deref(), &self.notification, offset)
                    .ok()
                    .map(Bytes::from)
            })
            .as_ref()?;
        let parts = [&body[..]];
        Some(self.form(
            opcode::BINARY,
            deflate,
            &parts,
            &self.msgpack_frame,
            &self.msgpack_frame_z,
        ))
    }

    /// The notification as a Socket.IO client on HTTP long-polling receives it: one Engine.IO
    /// packet, to be joined with others into a polling response.
    pub fn sio_packet(&self) -> &Bytes {
        self.sio_packet.get_or_init(|| {
            let mut out = BytesMut::with_capacity(
                self.sio_prefix.len() + self.notification.len() + self.sio_tail.len(),
            );
            out.put_slice(&self.sio_prefix);
            out.put_slice(&self.notification);
            out.put_slice(&self.sio_tail);
            out.freeze()
        })
    }

    /// The notification as a Socket.IO client on WebSocket receives it: one text frame, compressed
    /// as [`Payload::raw_frame`] is.
    pub fn sio_frame(&self, deflate: bool) -> &Bytes {
        let parts = [
            &self.sio_prefix[..],
            &self.notification[..],
            &self.sio_tail[..],
        ];
        self.form(
            opcode::TEXT,
            deflate,
            &parts,
            &self.sio_frame,
            &self.sio_frame_z,
        )
    }

    /// The push's sequence number in the recovery log (0 without one).
    pub fn seq(&self) -> u64 {
        self.offset.as_ref().map_or(0, |(seq, _)| *seq)
    }

    /// An `op` frame of `parts`, plain or compressed, each built at most once.
    fn form<'p>(
        &'p self,
        op: u8,
        deflate: bool,
        parts: &[&[u8]],
        plain: &'p OnceCell<Bytes>,
        compressed: &'p OnceCell<Bytes>,
    ) -> &'p Bytes {
        if deflate {
            // A message not worth compressing is shared with the plain recipients.
            let z = compressed.get_or_init(|| {
                self.deflate
                    .frame(op, parts)
                    .unwrap_or_else(|| plain.get_or_init(|| data_frame(op, parts)).clone())
            });
            return z;
        }
        plain.get_or_init(|| data_frame(op, parts))
    }
}

/// A server frame header for an unfragmented `op` frame of `len` payload bytes, in a buffer with
/// room for the payload.
fn frame_with_header(op: u8, len: usize) -> BytesMut {
    let mut head = Vec::with_capacity(10);
    frame::write_header(&mut head, true, op, len);
    let mut out = BytesMut::with_capacity(head.len() + len);
    out.put_slice(&head);
    out
}

/// One unfragmented server text frame whose payload is `parts` joined, in one allocation.
pub fn text_frame(parts: &[&[u8]]) -> Bytes {
    data_frame(opcode::TEXT, parts)
}

/// One unfragmented server `op` frame whose payload is `parts` joined, in one allocation.
fn data_frame(op: u8, parts: &[&[u8]]) -> Bytes {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut out = frame_with_header(op, len);
    for p in parts {
        out.put_slice(p);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_frame_is_built_once_and_shared() {
        let off = Deflate::new(1, usize::MAX);
        let p = Payload::new(Bytes::from_static(br#"{"type":"LIKE"}"#), None, &off);
        let a = p.raw_frame(false).clone();
        let b = p.raw_frame(false).clone();
        assert_eq!(a.as_ptr(), b.as_ptr(), "both recipients share one buffer");
        let text = br#"{"event":"notification","data":{"type":"LIKE"}}"#;
        assert_eq!(a[0], 0x81);
        assert_eq!(a[1] as usize, text.len());
        assert_eq!(&a[2..], text);
    }

    #[test]
    fn an_event_of_another_name_keeps_it_in_every_form() {
        let off = Deflate::new(1, usize::MAX);
        let p = Payload::new(
            Bytes::from_static(br#"{"a":1}"#),
            Some((5, "e-5".into())),
            &off,
        )
        .named(Some("chat \"x\"".into()));
        assert_eq!(
            &p.raw_frame(false)[2..],
            br#"{"event":"chat \"x\"","data":{"a":1},"offset":"e-5"}"#
        );
        assert_eq!(&p.sio_packet()[..], br#"42["chat \"x\"",{"a":1},"e-5"]"#);
        let m: serde_json::Value =
            rmp_serde::from_slice(&p.msgpack_frame(false).unwrap()[2..]).unwrap();
        assert_eq!(
            m,
            serde_json::json!({"event": "chat \"x\"", "data": {"a": 1}, "offset": "e-5"})
        );
    }

    #[test]
    fn a_form_no_recipient_uses_is_never_built() {
        let off = Deflate::new(1, usize::MAX);
        let p = Payload::new(Bytes::from_static(br#"{"m":1}"#), None, &off);
        p.raw_frame(false);
        assert!(p.raw_frame.get().is_some());
        assert!(p.sio_packet.get().is_none() && p.sio_frame.get().is_none());
        let off = Deflate::new(1, usize::MAX);
        let q = Payload::new(Bytes::from_static(br#"{"m":1}"#), None, &off);
        q.sio_packet();
        assert!(q.raw_frame.get().is_none() && q.sio_frame.get().is_none());
    }

    #[test]
    fn socketio_forms() {
        let off = Deflate::new(1, usize::MAX);
        let p = Payload::new(Bytes::from_static(br#"{"m":1}"#), None, &off);
        assert_eq!(&p.sio_packet()[..], br#"42["notification",{"m":1}]"#);
        let f = p.sio_frame(false);
        assert_eq!(&f[..2], &[0x81, p.sio_packet().len() as u8]);
        assert_eq!(&f[2..], &p.sio_packet()[..]);
    }

    #[test]
    fn long_payload_uses_16_bit_length() {
        let body = format!("{{\"m\":\"{}\"}}", "x".repeat(300));
        let off = Deflate::new(1, usize::MAX);
        let p = Payload::new(Bytes::from(body.clone()), None, &off);
        let f = p.raw_frame(false);
        let len = RAW_PREFIX.len() + body.len() + b"}".len();
        assert_eq!(&f[..4], &[0x81, 0x7E, (len >> 8) as u8, len as u8]);
        assert_eq!(f.len(), 4 + len);
    }

    /// A notification large enough to be compressed, as services send them.
    fn big_notification() -> Bytes {
        let items: Vec<String> = (0..40)
            .map(|i| format!(r#"{{"id":{i},"title":"Comment on your post","read":false}}"#))
            .collect();
        Bytes::from(format!(
            r#"{{"type":"DIGEST","message":"You have 40 new comments","items":[{}]}}"#,
            items.join(",")
        ))
    }

    /// The payload of a server frame without its header.
    fn payload_of(frame: &[u8]) -> &[u8] {
        match frame[1] {
            126 => &frame[4..],
            127 => &frame[10..],
            _ => &frame[2..],
        }
    }

    #[test]
    fn one_compressor_run_for_many_deflate_recipients() {
        let deflate = Deflate::new(1, 1024);
        let p = Payload::new(big_notification(), None, &deflate);
        let frames: Vec<Bytes> = (0..1000).map(|_| p.raw_frame(true).clone()).collect();
        assert_eq!(
            deflate.runs(),
            1,
            "one push, one wire form: one compressor run"
        );
        assert!(frames.iter().all(|f| f.as_ptr() == frames[0].as_ptr()));
        let z = &frames[0];
        assert_eq!(z[0], 0xC1, "FIN, RSV1, text");
        let inflated = crate::ws::deflate::inflate(payload_of(z), 1 << 20).unwrap();
        assert_eq!(inflated, payload_of(p.raw_frame(false)));
        assert!(z.len() < p.raw_frame(false).len() / 2, "{} bytes", z.len());
        // Plain recipients of the same push get the plain frame; Socket.IO's form is a second run.
        assert_eq!(p.raw_frame(false)[0], 0x81);
        for _ in 0..100 {
            p.sio_frame(true);
        }
        assert_eq!(deflate.runs(), 2);
        let sio = crate::ws::deflate::inflate(payload_of(p.sio_frame(true)), 1 << 20).unwrap();
        assert_eq!(&sio[..], &p.sio_packet()[..]);
    }

    #[test]
    fn small_payloads_are_shared_uncompressed() {
        let deflate = Deflate::new(1, 1024);
        let p = Payload::new(Bytes::from_static(br#"{"type":"LIKE"}"#), None, &deflate);
        assert_eq!(p.raw_frame(true).as_ptr(), p.raw_frame(false).as_ptr());
        assert_eq!(p.raw_frame(true)[0], 0x81);
        assert_eq!(
            deflate.runs(),
            0,
            "below the threshold nothing is compressed"
        );
    }

    #[test]
    fn incompressible_payloads_go_plain() {
        let deflate = Deflate::new(1, 0);
        let mut x = 0x9E37_79B9u32;
        let noise: String = (0..3000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                char::from(b'!' + (x % 90) as u8)
            })
            .filter(|c| *c != '"' && *c != '\\')
            .collect();
        let body = Bytes::from(format!(r#"{{"m":"{noise}"}}"#));
        let p = Payload::new(body, None, &deflate);
        let z = p.raw_frame(true);
        assert_eq!(deflate.runs(), 1);
        if z[0] == 0xC1 {
            assert!(z.len() < p.raw_frame(false).len());
        } else {
            assert_eq!(z.as_ptr(), p.raw_frame(false).as_ptr());
        }
    }

    #[test]
    fn msgpack_form_is_transcoded_once_and_can_be_compressed() {
        let deflate = Deflate::new(1, 1024);
        let p = Payload::new(big_notification(), None, &deflate);
        let a = p.msgpack_frame(false).unwrap().clone();
        let b = p.msgpack_frame(false).unwrap().clone();
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert_eq!(a[0], 0x82, "FIN, binary");
        let decoded: serde_json::Value = rmp_serde::from_slice(payload_of(&a)).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(payload_of(p.raw_frame(false))).unwrap();
        assert_eq!(decoded, json, "the same envelope in MessagePack");
        let z = p.msgpack_frame(true).unwrap();
        assert_eq!(z[0], 0xC2, "FIN, RSV1, binary");
        let inflated = crate::ws::deflate::inflate(payload_of(z), 1 << 20).unwrap();
        assert_eq!(inflated, payload_of(&a));
        assert_eq!(deflate.runs(), 1);
    }

    #[test]
    fn message_frame_compresses_only_when_agreed_and_worth_it() {
        let deflate = Deflate::new(1, 1024);
        let text = big_notification();
        let z = deflate.message_frame(opcode::BINARY, &text, true);
        assert_eq!(z[0], 0xC2, "FIN, RSV1, binary");
        let inflated = crate::ws::deflate::inflate(payload_of(&z), 1 << 20).unwrap();
        assert_eq!(inflated, &text[..]);
        let plain = deflate.message_frame(opcode::BINARY, &text, false);
        assert_eq!(plain, frame::encode(opcode::BINARY, &text));
        let small = deflate.message_frame(opcode::TEXT, b"hi", true);
        assert_eq!(&small[..], &[0x81, 0x02, b'h', b'i'], "below the threshold");
        assert_eq!(deflate.runs(), 1);
    }

    #[test]
    fn a_notification_without_a_msgpack_form_gives_none() {
        let deflate = Deflate::new(1, 1024);
        let p = Payload::new(Bytes::from_static(br#"{"n":1e400}"#), None, &deflate);
        assert!(p.msgpack_frame(false).is_none());
        assert!(p.msgpack_frame(true).is_none());
        assert_eq!(p.raw_frame(false)[0], 0x81, "JSON recipients still get it");
    }
}
