//! A push's fan-out preparation: serialized once and framed once, then one reference-counted
//! handle per recipient, against serializing and framing per recipient (what a gateway that
//! emits per socket does).

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};

use herald::fanout::{Deflate, Payload};
use herald::ws::frame::{self, opcode};

const RECIPIENTS: [usize; 3] = [1, 100, 10_000];

fn notification() -> Value {
    json!({"type": "LIKE", "message": "Someone liked your post", "actorId": "user-9",
           "data": {"postId": "p1"}, "timestamp": "2026-11-26T05:00:00.000Z"})
}

fn fanout(c: &mut Criterion) {
    let n = notification();
    // Compression is measured in `benches/deflate.rs`; here it is off.
    let deflate = Deflate::new(1, usize::MAX);
    let mut g = c.benchmark_group("fanout");
    for recipients in RECIPIENTS {
        g.throughput(Throughput::Elements(recipients as u64));
        g.bench_with_input(
            BenchmarkId::new("once", recipients),
            &recipients,
            |b, &r| {
                let mut handed: Vec<Bytes> = Vec::with_capacity(r);
                b.iter(|| {
                    handed.clear();
                    let payload = Payload::new(
                        Bytes::from(serde_json::to_vec(black_box(&n)).unwrap_or_default()),
                        None,
                        &deflate,
                    );
                    let frame = payload.raw_frame(false);
                    for _ in 0..r {
                        handed.push(frame.clone());
                    }
                    black_box(handed.len())
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("per_recipient", recipients),
            &recipients,
            |b, &r| {
                let mut handed: Vec<Bytes> = Vec::with_capacity(r);
                b.iter(|| {
                    handed.clear();
                    for _ in 0..r {
                        let msg = json!({"event": "notification", "data": black_box(&n)});
                        let text = serde_json::to_vec(&msg).unwrap_or_default();
                        handed.push(frame::encode(opcode::TEXT, &text));
                    }
                    black_box(handed.len())
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
