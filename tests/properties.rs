//! Property tests of the codecs, over inputs proptest draws.
//!
//! WebSocket: client frames of any data opcode, length, mask and fragmentation, with control
//! frames between the fragments, decode to exactly the messages and control events that were
//! encoded, compressed or not; and the same bytes (valid, damaged or random) split at any points
//! give the same events and the same error as when decoded whole. Engine.IO: packets and polling
//! payloads decode to what was encoded. Socket.IO: packets of every type, with namespaces, ack
//! ids and JSON data, decode to what their wire text says, binary ones reassembled with their
//! attachments.

mod strategies;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Map, Value};

use herald::engineio::{self, Data, Packet as EioPacket};
use herald::fuzzing::decode_reads as run;
use herald::socketio::{self, PacketType, Reassembler};
use herald::ws::deflate::Compressor;
use herald::ws::frame::{encode_masked, opcode};
use herald::ws::{CloseCode, Decoder, Event};
use strategies::{bytes_from, frame_len, text_of_len};

/// Cases per property: enough to reach each length class and fragment shape many times, few
/// enough that the file runs in seconds.
const CASES: u32 = 256;

/// A message limit above anything the generators build.
const ROOMY: usize = 1 << 20;

/// RSV1, permessage-deflate's "compressed" bit, as `encode_masked` takes RSV bits.
const RSV1: u8 = 0b100;

// ---------------------------------------------------------------------------------------------
// WebSocket generators

/// A Ping or Pong as a client sends it, with the event it must decode to.
#[derive(Debug, Clone)]
struct Control {
    ping: bool,
    payload: Vec<u8>,
    mask: [u8; 4],
}

impl Control {
    fn wire(&self) -> Vec<u8> {
        let op = if self.ping {
            opcode::PING
        } else {
            opcode::PONG
        };
        encode_masked(true, op, 0, &self.payload, self.mask)
    }

    fn event(&self) -> Event {
        if self.ping {
            Event::Ping(self.payload.clone())
        } else {
            Event::Pong(self.payload.clone())
        }
    }
}

fn control() -> impl Strategy<Value = Control> {
    // RFC 6455 §5.5: control payloads are at most 125 bytes; both ends of that range weigh more.
    let len = prop_oneof![Just(0usize), Just(125usize), 0usize..=125];
    (any::<bool>(), len, any::<u64>(), any::<[u8; 4]>()).prop_map(|(ping, len, seed, mask)| {
        Control {
            ping,
            payload: bytes_from(seed, len),
            mask,
        }
    })
}

/// One data message cut into frames, each followed by the control frames sent right after it.
#[derive(Debug, Clone)]
struct Message {
    text: bool,
    compressed: bool,
    /// What the application must receive.
    data: Vec<u8>,
    /// The wire payload of each frame (compressed bytes when `compressed`), its mask, and the
    /// control frames that follow it.
    frames: Vec<(Vec<u8>, [u8; 4], Vec<Control>)>,
}

/// A message of up to four frames whose lengths come from [`frame_len`]; a compressed one (only
/// when `deflate`) cuts its compressed bytes in the same proportions.
fn message(deflate: bool) -> impl Strategy<Value = Message> {
    let compressed = prop::bool::weighted(if deflate { 0.5 } else { 0.0 });
    let frames = vec(
        (frame_len(), any::<[u8; 4]>(), vec(control(), 0..=2)),
        1..=4,
    );
    (
        any::<bool>(),
        compressed,
        frames,
        vec(any::<char>(), 1..6),
        any::<u64>(),
    )
        .prop_map(|(text, compressed, frames, pool, seed)| {
            let total: usize = frames.iter().map(|f| f.0).sum();
            let data = if text {
                text_of_len(&pool, total).into_bytes()
            } else {
                bytes_from(seed, total)
            };
            let wire = if compressed {
                let mut out = Vec::new();
                Compressor::new(6)
                    .compress(&[&data], &mut out)
                    .expect("compressing a test message");
                out
            } else {
                data.clone()
            };
            // Uncompressed, each frame carries exactly its drawn length; compressed, the cuts
            // fall at the same fractions of the (shorter) compressed bytes.
            let mut cuts = Vec::with_capacity(frames.len());
            let mut sum = 0;
            for (len, _, _) in &frames {
                sum += len;
                // An empty message has nothing to cut: every piece but the last is empty.
                cuts.push((sum * wire.len()).checked_div(total).unwrap_or(0));
            }
            if let Some(last) = cuts.last_mut() {
                *last = wire.len();
            }
            let mut start = 0;
            let frames = frames
                .into_iter()
                .zip(cuts)
                .map(|((_, mask, controls), end)| {
                    let piece = wire[start..end].to_vec();
                    start = end;
                    (piece, mask, controls)
                })
                .collect();
            Message {
                text,
                compressed,
                data,
                frames,
            }
        })
}

/// A client byte stream and the events it must decode to.
#[derive(Debug, Clone)]
struct Stream {
    bytes: Vec<u8>,
    events: Vec<Event>,
}

/// The body of a closing Close frame: none, or a code that may be sent and a reason.
fn close_body() -> impl Strategy<Value = Option<(u16, String)>> {
    let code = prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999];
    let reason =
        (vec(any::<char>(), 1..6), 0usize..=123).prop_map(|(pool, len)| text_of_len(&pool, len));
    prop::option::of((code, reason))
}

/// Control frames, then messages (each followed by more control frames), then maybe a Close.
fn stream(deflate: bool) -> impl Strategy<Value = Stream> {
    (
        vec(control(), 0..=2),
        vec(message(deflate), 0..=4),
        prop::option::of((close_body(), any::<[u8; 4]>())),
    )
        .prop_map(|(leading, messages, close)| {
            let mut bytes = Vec::new();
            let mut events = Vec::new();
            for c in &leading {
                bytes.extend(c.wire());
                events.push(c.event());
            }
            for m in &messages {
                let kind = if m.text { opcode::TEXT } else { opcode::BINARY };
                let last = m.frames.len() - 1;
                for (i, (payload, mask, controls)) in m.frames.iter().enumerate() {
                    let op = if i == 0 { kind } else { opcode::CONTINUATION };
                    // RFC 7692 §6: the compressed bit goes on the first frame only.
                    let rsv = if i == 0 && m.compressed { RSV1 } else { 0 };
                    bytes.extend(encode_masked(i == last, op, rsv, payload, *mask));
                    if i == last {
                        events.push(if m.text {
                            Event::Text(String::from_utf8(m.data.clone()).expect("built as text"))
                        } else {
                            Event::Binary(m.data.clone())
                        });
                    }
                    for c in controls {
                        bytes.extend(c.wire());
                        events.push(c.event());
                    }
                }
            }
            if let Some((body, mask)) = close {
                let payload = match &body {
                    None => Vec::new(),
                    Some((code, reason)) => [&code.to_be_bytes()[..], reason.as_bytes()].concat(),
                };
                bytes.extend(encode_masked(true, opcode::CLOSE, 0, &payload, mask));
                events.push(Event::Close(
                    body.map(|(code, reason)| (CloseCode(code), reason)),
                ));
            }
            Stream { bytes, events }
        })
}

/// A frame with any header bits: what a confused or hostile client might send.
fn raw_frame() -> impl Strategy<Value = Vec<u8>> {
    let rsv = prop_oneof![4 => Just(0u8), 1 => 0u8..8];
    let len = prop_oneof![0usize..=8, 120usize..=130];
    (
        any::<bool>(),
        rsv,
        0u8..16,
        prop::bool::weighted(0.9),
        len,
        any::<u64>(),
        any::<[u8; 4]>(),
    )
        .prop_map(|(fin, rsv, op, masked, len, seed, mask)| {
            let mut frame = encode_masked(fin, op, rsv, &bytes_from(seed, len), mask);
            if !masked {
                // Clear the MASK bit and drop the key: the payload bytes stay as they were.
                let key_at = if len <= 125 { 2 } else { 4 };
                frame[1] &= 0x7F;
                frame.drain(key_at..key_at + 4);
            }
            frame
        })
}

/// Byte streams for the split property: valid, valid then damaged, valid then cut short,
/// frames with random header bits, and plain noise.
fn any_stream() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        stream(true).prop_map(|s| s.bytes),
        (stream(true), vec((any::<Index>(), any::<u8>()), 1..4)).prop_map(|(s, flips)| {
            let mut bytes = s.bytes;
            if !bytes.is_empty() {
                for (at, xor) in flips {
                    let i = at.index(bytes.len());
                    bytes[i] ^= xor;
                }
            }
            bytes
        }),
        (stream(true), any::<Index>()).prop_map(|(s, cut)| {
            let mut bytes = s.bytes;
            bytes.truncate(cut.index(bytes.len() + 1));
            bytes
        }),
        vec(raw_frame(), 1..6).prop_map(|frames| frames.concat()),
        vec(any::<u8>(), 0..300),
    ]
}

/// `bytes` cut at the given points (in any order, repeats allowed, so empty pieces occur).
fn split<'a>(bytes: &'a [u8], points: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = points.iter().map(|p| p.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut pieces = Vec::with_capacity(at.len() + 1);
    let mut start = 0;
    for end in at {
        pieces.push(&bytes[start..end]);
        start = end;
    }
    pieces.push(&bytes[start..]);
    pieces
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn frames_round_trip(s in stream(false)) {
        let mut dec = Decoder::new(ROOMY);
        let (events, err) = run(&mut dec, [&s.bytes[..]]);
        prop_assert_eq!(err, None);
        prop_assert_eq!(events, s.events);
    }

    #[test]
    fn compressed_frames_round_trip(s in stream(true)) {
        let mut dec = Decoder::new(ROOMY);
        dec.enable_deflate();
        let (events, err) = run(&mut dec, [&s.bytes[..]]);
        prop_assert_eq!(err, None);
        prop_assert_eq!(events, s.events);
    }

    /// Between messages the decoder holds no memory, whatever came before.
    #[test]
    fn decoder_is_idle_after_whole_messages(s in stream(true)) {
        let mut dec = Decoder::new(ROOMY);
        dec.enable_deflate();
        let (_, err) = run(&mut dec, [&s.bytes[..]]);
        prop_assert_eq!(err, None);
        prop_assert!(dec.is_idle());
    }

    #[test]
    fn splits_give_the_same_events_and_error(
        bytes in any_stream(),
        points in vec(any::<Index>(), 0..16),
        deflate in any::<bool>(),
        small_limits in any::<bool>(),
    ) {
        // Small limits make the size and fragment faults reachable with short streams.
        let (max_message, max_fragments) = if small_limits { (1 << 10, 3) } else { (ROOMY, 1024) };
        let fresh = || {
            let mut dec = Decoder::new(max_message).with_max_fragments(max_fragments);
            if deflate {
                dec.enable_deflate();
            }
            dec
        };
        let whole = run(&mut fresh(), [&bytes[..]]);
        let pieces = run(&mut fresh(), split(&bytes, &points));
        prop_assert_eq!(&pieces, &whole);
        let bytewise = run(&mut fresh(), bytes.chunks(1));
        prop_assert_eq!(&bytewise, &whole);
        // A failed decoder keeps failing with the same error.
        if let Some(err) = whole.1 {
            let mut dec = fresh();
            let _ = run(&mut dec, [&bytes[..]]);
            prop_assert_eq!(dec.decode(b"\x81\x80\x00\x00\x00\x00"), Err(err));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Engine.IO

/// Text without the record separator: engine.io-protocol v4 polling "assumes the record
/// separator is not used in the data".
fn eio_text() -> impl Strategy<Value = String> {
    vec(
        any::<char>().prop_filter("record separator", |c| *c != '\x1e'),
        0..24,
    )
    .prop_map(String::from_iter)
}

fn eio_packet() -> impl Strategy<Value = EioPacket> {
    prop_oneof![
        eio_text().prop_map(EioPacket::Open),
        Just(EioPacket::Close),
        eio_text().prop_map(EioPacket::Ping),
        eio_text().prop_map(EioPacket::Pong),
        eio_text().prop_map(|t| EioPacket::Message(Data::Text(t))),
        vec(any::<u8>(), 0..48).prop_map(|b| EioPacket::Message(Data::Binary(b))),
        Just(EioPacket::Upgrade),
        Just(EioPacket::Noop),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// A text packet travels as one WebSocket text frame; a binary one as a binary frame.
    #[test]
    fn engineio_packet_round_trip(p in eio_packet()) {
        match &p {
            EioPacket::Message(Data::Binary(bytes)) => {
                prop_assert_eq!(engineio::decode_binary(bytes), p.clone());
            }
            _ => prop_assert_eq!(engineio::decode_text(&engineio::encode_text(&p)), Ok(p.clone())),
        }
    }

    /// Polling joins encoded packets with 0x1E, binary ones as `b<base64>`.
    #[test]
    fn engineio_payload_round_trip(packets in vec(eio_packet(), 1..8)) {
        let encoded: Vec<String> = packets.iter().map(engineio::encode_text).collect();
        let mut body = Vec::new();
        engineio::encode_payload(&encoded, &mut body);
        let body = String::from_utf8(body).expect("joined text is text");
        prop_assert_eq!(engineio::decode_payload(&body), Ok(packets));
    }
}

// ---------------------------------------------------------------------------------------------
// Socket.IO

/// JSON without floats (serde_json does not promise to read every float back bit for bit) and
/// without `_placeholder` keys, which only the binary tests place.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((json_key(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn json_key() -> impl Strategy<Value = String> {
    any::<String>().prop_filter("placeholder key", |k| k != "_placeholder")
}

/// `"/"` (left out on the wire) or `/` and any text without a `,`, which ends a namespace.
fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(socketio::MAIN_NAMESPACE.to_owned()),
        vec(any::<char>().prop_filter("comma", |c| *c != ','), 0..12)
            .prop_map(|cs| format!("/{}", String::from_iter(cs))),
    ]
}

/// The names Socket.IO keeps for itself; socket.io-parser refuses them as event names. Written
/// out from socket.io-parser rather than taken from herald's own list, so a name dropped there
/// fails here.
const RESERVED: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

fn event_name() -> impl Strategy<Value = String> {
    any::<String>().prop_filter("reserved name", |n| !RESERVED.contains(&n.as_str()))
}

/// socket.io-protocol v5: `<type>[<attachments>-][<namespace>,][<ack id>][JSON]`.
fn wire(
    kind: PacketType,
    attachments: usize,
    namespace: &str,
    id: Option<u64>,
    data: Option<&Value>,
) -> String {
    let mut s = (kind as u8).to_string();
    if kind.is_binary() {
        s.push_str(&format!("{attachments}-"));
    }
    if namespace != socketio::MAIN_NAMESPACE {
        s.push_str(namespace);
        s.push(',');
    }
    if let Some(id) = id {
        s.push_str(&id.to_string());
    }
    if let Some(data) = data {
        s.push_str(&data.to_string());
    }
    s
}

/// A text packet a client may send, with the payload its type requires.
fn text_packet() -> impl Strategy<Value = (PacketType, Option<Value>)> {
    let object = vec((json_key(), json_value()), 0..4)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()));
    prop_oneof![
        prop::option::of(object).prop_map(|d| (PacketType::Connect, d)),
        Just((PacketType::Disconnect, None)),
        (event_name(), vec(json_value(), 0..4)).prop_map(|(name, args)| {
            let mut all = vec![Value::from(name)];
            all.extend(args);
            (PacketType::Event, Some(Value::Array(all)))
        }),
        vec(json_value(), 0..4).prop_map(|args| (PacketType::Ack, Some(Value::Array(args)))),
    ]
}

/// Where one attachment's placeholder goes: at which argument, and whether wrapped in an object.
type Slot = (Index, bool);

/// Inserts a placeholder for each attachment into `args`, and returns the arguments as sent and
/// as reassembly must give them back (`{"_binary":<len>,"num":N}` in each placeholder's place).
fn place(args: &[Value], sizes: &[usize], slots: &[Slot], reuse: bool) -> (Value, Value) {
    let mut sent = args.to_vec();
    let mut back = args.to_vec();
    let wrap = |v: Value, nested: bool| if nested { json!({ "file": v }) } else { v };
    for (num, (len, (at, nested))) in sizes.iter().zip(slots).enumerate() {
        let i = at.index(sent.len() + 1);
        sent.insert(i, wrap(json!({"_placeholder": true, "num": num}), *nested));
        back.insert(i, wrap(json!({"_binary": len, "num": num}), *nested));
    }
    // socket.io-parser reconstructs every placeholder it meets, so one may appear twice.
    if reuse && !sizes.is_empty() {
        sent.push(json!({"_placeholder": true, "num": 0}));
        back.push(json!({"_binary": sizes[0], "num": 0}));
    }
    (Value::Array(sent), Value::Array(back))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn socketio_packet_decodes_to_its_parts(
        (kind, data) in text_packet(),
        ns in namespace(),
        id in prop::option::of(any::<u64>()),
    ) {
        let text = wire(kind, 0, &ns, id, data.as_ref());
        let packet = socketio::decode(&text, 10);
        prop_assert_eq!(packet, Ok(socketio::Packet {
            kind,
            namespace: ns,
            id,
            data,
            attachments: 0,
        }));
    }

    /// socket.io-parser ends a namespace at a ',' or at the end of the packet, so a CONNECT or
    /// DISCONNECT without payload or ack id may leave the ',' out (`40/random`).
    #[test]
    fn socketio_namespace_may_end_the_packet(
        kind in prop_oneof![Just(PacketType::Connect), Just(PacketType::Disconnect)],
        ns in namespace().prop_filter("main namespace is left out", |ns| ns != "/"),
    ) {
        let text = format!("{}{ns}", kind as u8);
        prop_assert_eq!(socketio::decode(&text, 10), Ok(socketio::Packet {
            kind,
            namespace: ns,
            id: None,
            data: None,
            attachments: 0,
        }));
    }

    /// CONNECT_ERROR is written by servers only; a client's is refused.
    #[test]
    fn socketio_connect_error_from_a_client_is_refused(ns in namespace(), msg in any::<String>()) {
        let text = socketio::encode_connect_error(&ns, &msg);
        prop_assert_eq!(socketio::decode(&text, 10), Err(socketio::Error::ConnectErrorFromClient));
    }

    /// What the server encodes, `decode` reads back: the grammar is the same both ways.
    #[test]
    fn socketio_server_encoders_round_trip(
        name in event_name(),
        args in vec(json_value(), 0..4),
        id in any::<u64>(),
        sid in any::<String>(),
    ) {
        let mut event = vec![Value::from(name.clone())];
        event.extend(args.iter().cloned());
        let main = socketio::MAIN_NAMESPACE.to_owned();
        prop_assert_eq!(
            socketio::decode(&socketio::encode_event(&name, &args), 10),
            Ok(socketio::Packet {
                kind: PacketType::Event,
                namespace: main.clone(),
                id: None,
                data: Some(Value::Array(event)),
                attachments: 0,
            })
        );
        prop_assert_eq!(
            socketio::decode(&socketio::encode_ack(id, &args), 10),
            Ok(socketio::Packet {
                kind: PacketType::Ack,
                namespace: main.clone(),
                id: Some(id),
                data: Some(Value::Array(args)),
                attachments: 0,
            })
        );
        prop_assert_eq!(
            socketio::decode(&socketio::encode_connect(&sid, None), 10),
            Ok(socketio::Packet {
                kind: PacketType::Connect,
                namespace: main.clone(),
                id: None,
                data: Some(json!({ "sid": sid })),
                attachments: 0,
            })
        );
        prop_assert_eq!(
            socketio::decode(&socketio::encode_disconnect(), 10),
            Ok(socketio::Packet {
                kind: PacketType::Disconnect,
                namespace: main,
                id: None,
                data: None,
                attachments: 0,
            })
        );
    }

    #[test]
    fn socketio_reserved_event_names_are_refused(
        name in prop::sample::select(&RESERVED[..]),
        args in vec(json_value(), 0..3),
    ) {
        prop_assert_eq!(
            socketio::decode(&socketio::encode_event(name, &args), 10),
            Err(socketio::Error::ReservedEventName(name))
        );
    }

    /// A binary event or ack travels as its text packet then one binary message per attachment,
    /// here through an Engine.IO polling payload; reassembly puts each buffer back in its place.
    #[test]
    fn socketio_binary_packets_reassemble(
        ack in any::<bool>(),
        name in event_name(),
        args in vec(json_value(), 0..3),
        buffers in vec(vec(any::<u8>(), 0..64), 0..=4),
        slots in vec((any::<Index>(), any::<bool>()), 4),
        reuse in any::<bool>(),
        ns in namespace(),
        id in prop::option::of(any::<u64>()),
    ) {
        let sizes: Vec<usize> = buffers.iter().map(Vec::len).collect();
        let (mut sent, mut back) = place(&args, &sizes, &slots, reuse);
        let kind = if ack { PacketType::BinaryAck } else { PacketType::BinaryEvent };
        if !ack {
            // An event's first argument is its name, before any placeholder.
            for v in [&mut sent, &mut back] {
                if let Value::Array(items) = v {
                    items.insert(0, Value::from(name.clone()));
                }
            }
        }
        let text = wire(kind, buffers.len(), &ns, id, Some(&sent));

        // Engine.IO polling: `4<packet>`, then each attachment as `b<base64>`.
        let mut segments = vec![engineio::encode_text(&EioPacket::Message(Data::Text(text.clone())))];
        segments.extend(
            buffers.iter().map(|b| engineio::encode_text(&EioPacket::Message(Data::Binary(b.clone())))),
        );
        let mut body = Vec::new();
        engineio::encode_payload(&segments, &mut body);
        let body = String::from_utf8(body).expect("joined text is text");
        let mut packets = engineio::decode_payload(&body).expect("payload decodes").into_iter();
        let Some(EioPacket::Message(Data::Text(received))) = packets.next() else {
            return Err(TestCaseError::fail("the first segment is not the text packet"));
        };
        prop_assert_eq!(&received, &text);
        let packet = socketio::decode(&received, 10).expect("valid binary packet");
        prop_assert_eq!(packet.kind, kind);
        prop_assert_eq!(packet.attachments, buffers.len());
        prop_assert_eq!(&packet.namespace, &ns);
        prop_assert_eq!(packet.id, id);
        if buffers.is_empty() {
            // Announcing no attachment, the packet is complete as decoded.
            prop_assert_eq!(packet.data, Some(sent));
            prop_assert_eq!(packets.next(), None);
            return Ok(());
        }
        let mut reassembler = Reassembler::new(packet);
        let mut done = None;
        for (i, p) in packets.enumerate() {
            let EioPacket::Message(Data::Binary(bytes)) = p else {
                return Err(TestCaseError::fail(format!("segment {i} is not binary")));
            };
            let step = reassembler.push(bytes).expect("attachment accepted");
            if i + 1 < buffers.len() {
                prop_assert!(step.is_none(), "complete after {} of {}", i + 1, buffers.len());
            } else {
                done = step;
            }
        }
        let (packet, received) = done.expect("complete after the last attachment");
        prop_assert_eq!(packet.kind, kind);
        prop_assert_eq!(packet.namespace, ns);
        prop_assert_eq!(packet.id, id);
        prop_assert_eq!(packet.attachments, buffers.len());
        prop_assert_eq!(packet.data, Some(back));
        prop_assert_eq!(received, buffers);
    }
}
