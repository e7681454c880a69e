//! A push prepared once and shared by every recipient.
//!
//! The control API serializes a notification to JSON once; the event loop wraps it in each wire
//! form a recipient needs (today the raw protocol's `{"event":"notification","data":...}` text
//! frame), built the first time a recipient of that form is met and then handed to every such
//! socket as a clone of one [`Bytes`]: a reference-count increment, never a copy. Later wire forms
//! (Socket.IO, compressed, MessagePack) join as further lazily built fields.

use std::cell::OnceCell;

use bytes::{BufMut, Bytes, BytesMut};

use crate::ws::frame::{self, opcode};

const RAW_PREFIX: &[u8] = b"{\"event\":\"notification\",\"data\":";
const RAW_SUFFIX: &[u8] = b"}";
/// Engine.IO message (`4`) carrying a Socket.IO EVENT (`2`) on `/`: `42["notification",{...}]`.
const SIO_PREFIX: &[u8] = b"42[\"notification\",";
const SIO_SUFFIX: &[u8] = b"]";

/// One push: the notification's JSON and the frames built from it.
pub struct Payload {
    /// The notification object, serialized once by the control API.
    notification: Bytes,
    /// The raw protocol text frame, header included.
    raw_frame: OnceCell<Bytes>,
    /// The Engine.IO packet `42["notification",...]`, as a polling response carries it.
    sio_packet: OnceCell<Bytes>,
    /// The same packet as a WebSocket text frame.
    sio_frame: OnceCell<Bytes>,
}

impl Payload {
    pub fn new(notification: Bytes) -> Self {
        Payload {
            notification,
            raw_frame: OnceCell::new(),
            sio_packet: OnceCell::new(),
            sio_frame: OnceCell::new(),
        }
    }

    /// The notification as the raw `/ws` protocol sends it: one complete WebSocket text frame.
    pub fn raw_frame(&self) -> &Bytes {
        self.raw_frame
            .get_or_init(|| text_frame(&[RAW_PREFIX, &self.notification, RAW_SUFFIX]))
    }

    /// The notification as a Socket.IO client on HTTP long-polling receives it: one Engine.IO
    /// packet, to be joined with others into a polling response.
    pub fn sio_packet(&self) -> &Bytes {
        self.sio_packet.get_or_init(|| {
            let mut out = BytesMut::with_capacity(SIO_PREFIX.len() + self.notification.len() + 1);
            out.put_slice(SIO_PREFIX);
            out.put_slice(&self.notification);
            out.put_slice(SIO_SUFFIX);
            out.freeze()
        })
    }

    /// The notification as a Socket.IO client on WebSocket receives it: one text frame.
    pub fn sio_frame(&self) -> &Bytes {
        self.sio_frame
            .get_or_init(|| text_frame(&[SIO_PREFIX, &self.notification, SIO_SUFFIX]))
    }
}

/// One unfragmented server text frame whose payload is `parts` joined, in one allocation.
pub fn text_frame(parts: &[&[u8]]) -> Bytes {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut head = Vec::with_capacity(10);
    frame::write_header(&mut head, true, opcode::TEXT, len);
    let mut out = BytesMut::with_capacity(head.len() + len);
    out.put_slice(&head);
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
        let p = Payload::new(Bytes::from_static(br#"{"type":"LIKE"}"#));
        let a = p.raw_frame().clone();
        let b = p.raw_frame().clone();
        assert_eq!(a.as_ptr(), b.as_ptr(), "both recipients share one buffer");
        let text = br#"{"event":"notification","data":{"type":"LIKE"}}"#;
        assert_eq!(a[0], 0x81);
        assert_eq!(a[1] as usize, text.len());
        assert_eq!(&a[2..], text);
    }

    #[test]
    fn a_form_no_recipient_uses_is_never_built() {
        let p = Payload::new(Bytes::from_static(br#"{"m":1}"#));
        p.raw_frame();
        assert!(p.raw_frame.get().is_some());
        assert!(p.sio_packet.get().is_none() && p.sio_frame.get().is_none());
        let q = Payload::new(Bytes::from_static(br#"{"m":1}"#));
        q.sio_packet();
        assert!(q.raw_frame.get().is_none() && q.sio_frame.get().is_none());
    }

    #[test]
    fn socketio_forms() {
        let p = Payload::new(Bytes::from_static(br#"{"m":1}"#));
        assert_eq!(&p.sio_packet()[..], br#"42["notification",{"m":1}]"#);
        let f = p.sio_frame();
        assert_eq!(&f[..2], &[0x81, p.sio_packet().len() as u8]);
        assert_eq!(&f[2..], &p.sio_packet()[..]);
    }

    #[test]
    fn long_payload_uses_16_bit_length() {
        let body = format!("{{\"m\":\"{}\"}}", "x".repeat(300));
        let p = Payload::new(Bytes::from(body.clone()));
        let f = p.raw_frame();
        let len = RAW_PREFIX.len() + body.len() + 1;
        assert_eq!(&f[..4], &[0x81, 0x7E, (len >> 8) as u8, len as u8]);
        assert_eq!(f.len(), 4 + len);
    }
}
