//! A push's payload for the raw `/ws` protocol, built once per push: the JSON envelope (the
//! three copies `fanout::Payload::raw_frame` makes, frame header left out) against the
//! MessagePack envelope, transcoded from the same JSON as it is parsed
//! (`raw::notification_msgpack`) and, for comparison, through a `serde_json::Value` tree and
//! `rmp_serde`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde::Serialize;
use serde_json::{json, Value};

use herald::protocol::raw;

/// Notification sizes in bytes of JSON, roughly: a bare like, a comment with its context, a
/// digest of recent activity.
const SIZES: [usize; 3] = [100, 1024, 8 * 1024];

/// What `fanout.rs` wraps around the notification for the JSON form.
const JSON_PREFIX: &[u8] = b"{\"event\":\"notification\",\"data\":";
const JSON_SUFFIX: &[u8] = b"}";

/// A `{type, message, actorId, data, timestamp}` notification of about `size` bytes: the bare
/// notification, plus as many recent-activity items in `data` as it takes to reach the size.
fn notification(size: usize) -> Vec<u8> {
    let mut n = json!({
        "type": "LIKE",
        "message": "Ann liked your post",
        "actorId": "user-9",
        "data": {"postId": "p1"},
        "timestamp": "2026-11-26T05:00:00.000Z",
    });
    let mut i = 0u64;
    while serde_json::to_vec(&n).map_or(usize::MAX, |v| v.len()) < size {
        let item = json!({
            "id": format!("evt-{i:06}"),
            "kind": if i.is_multiple_of(3) { "COMMENT" } else { "LIKE" },
            "actor": {"id": format!("user-{}", 1000 + i * 37), "name": "Jörg Müller", "verified": i.is_multiple_of(2)},
            "excerpt": "Great shot! Where was this taken? ✨",
            "score": 0.5 + i as f64 / 8.0,
            "count": i * 131,
            "at": 1_795_000_000_000u64 + i * 60_000,
        });
        match n["data"].get_mut("recent") {
            Some(Value::Array(items)) => items.push(item),
            _ => n["data"]["recent"] = json!([item]),
        }
        i += 1;
    }
    serde_json::to_vec(&n).unwrap_or_default()
}

#[derive(Serialize)]
struct Envelope<'a> {
    event: &'static str,
    data: &'a Value,
}

/// The tree route: parse into a `Value`, serialize that with rmp_serde.
fn msgpack_via_value(notification: &[u8]) -> Option<Vec<u8>> {
    let data: Value = serde_json::from_slice(notification).ok()?;
    rmp_serde::to_vec_named(&Envelope {
        event: "notification",
        data: &data,
    })
    .ok()
}

fn envelope(c: &mut Criterion) {
    let mut g = c.benchmark_group("notification_envelope");
    for size in SIZES {
        let n = notification(size);
        g.throughput(Throughput::Bytes(n.len() as u64));
        g.bench_with_input(BenchmarkId::new("json", n.len()), &n, |b, n| {
            b.iter(|| {
                let n = black_box(n);
                let mut out = Vec::with_capacity(JSON_PREFIX.len() + n.len() + 1);
                out.extend_from_slice(JSON_PREFIX);
                out.extend_from_slice(n);
                out.extend_from_slice(JSON_SUFFIX);
                out
            })
        });
        g.bench_with_input(BenchmarkId::new("msgpack", n.len()), &n, |b, n| {
            b.iter(|| raw::notification_msgpack(black_box(n), None).ok())
        });
        g.bench_with_input(
            BenchmarkId::new("msgpack_via_value", n.len()),
            &n,
            |b, n| b.iter(|| msgpack_via_value(black_box(n))),
        );
    }
    g.finish();
}

criterion_group!(benches, envelope);
criterion_main!(benches);
