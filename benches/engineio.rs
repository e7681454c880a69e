//! Engine.IO and Socket.IO packets: what a Socket.IO client sends (decode) and what herald sends
//! (encode).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;

use herald::{engineio, socketio};

/// A client's `subscribe` with an ack id, as socket.io-client writes it inside Engine.IO's `4`.
const SUBSCRIBE: &str = r#"421["subscribe","user-123"]"#;
/// A polling POST body carrying a pong, a subscribe and a binary message.
const PAYLOAD: &str = "3\x1e42[\"subscribe\",\"user-123\"]\x1e4hello\x1ebAQIDBA==";

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("engineio_decode");
    g.throughput(Throughput::Bytes(SUBSCRIBE.len() as u64));
    g.bench_function("engineio+socketio/subscribe", |b| {
        b.iter(|| match engineio::decode_text(black_box(SUBSCRIBE)) {
            Ok(engineio::Packet::Message(engineio::Data::Text(t))) => socketio::decode(&t, 10).ok(),
            _ => None,
        })
    });
    g.throughput(Throughput::Bytes(PAYLOAD.len() as u64));
    g.bench_function("polling_payload", |b| {
        b.iter(|| engineio::decode_payload(black_box(PAYLOAD)))
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("socketio_encode");
    let reply = json!({"userId": "user-123", "socketId": "kzrMlg8pRFETkkuO2hyt"});
    g.throughput(Throughput::Elements(1));
    g.bench_function("event/subscribed", |b| {
        b.iter(|| socketio::encode_event("subscribed", std::slice::from_ref(black_box(&reply))))
    });
    g.bench_function("ack", |b| {
        b.iter(|| socketio::encode_ack(1, std::slice::from_ref(black_box(&reply))))
    });
    g.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
