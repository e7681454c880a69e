//! permessage-deflate on the push path: the cost of compressing one notification (once per
//! push), and a whole fan-out with compression on against off. With compression on, a push to N
//! deflate recipients still runs the compressor once; the per-recipient variant is what a
//! gateway keeping a compression context per connection pays.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};

use herald::fanout::{Deflate, Payload};
use herald::ws::deflate::{inflate, Compressor};

/// Notification sizes: a typical "liked your post", a 1 KiB digest, an 8 KiB digest.
const SIZES: [(&str, usize); 3] = [("100B", 100), ("1KiB", 1024), ("8KiB", 8192)];
const RECIPIENTS: [usize; 3] = [1, 100, 10_000];
/// The fastest zlib level: herald's default.
const LEVEL: u32 = 1;

/// A notification of at least `size` bytes: a "liked your post" with digest entries added until
/// it is that large.
fn notification(size: usize) -> Bytes {
    let mut n = json!({"type": "LIKE", "message": "Someone liked your post", "actorId": "user-9",
                       "timestamp": "2026-11-26T05:00:00.000Z"});
    let mut items: Vec<Value> = Vec::new();
    loop {
        let bytes = serde_json::to_vec(&n).unwrap_or_default();
        if bytes.len() >= size {
            return Bytes::from(bytes);
        }
        let i = items.len();
        items
            .push(json!({"id": i, "title": "New comment on your post", "by": format!("user-{i}")}));
        n["data"] = json!({ "items": items });
    }
}

fn compress_once(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate/compress");
    let mut compressor = Compressor::new(LEVEL);
    let mut out = Vec::new();
    for (name, size) in SIZES {
        let n = notification(size);
        g.throughput(Throughput::Bytes(n.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &n, |b, n| {
            b.iter(|| {
                out.clear();
                let _ = compressor.compress(&[black_box(&n[..])], &mut out);
                black_box(out.len())
            })
        });
        out.clear();
        let _ = compressor.compress(&[&n[..]], &mut out);
        println!(
            "deflate/compress/{name}: {} -> {} bytes at level {LEVEL}",
            n.len(),
            out.len()
        );
    }
    g.finish();

    let mut g = c.benchmark_group("deflate/inflate");
    for (name, size) in SIZES {
        let n = notification(size);
        let mut z = Vec::new();
        let _ = compressor.compress(&[&n[..]], &mut z);
        g.throughput(Throughput::Bytes(n.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &z, |b, z| {
            b.iter(|| black_box(inflate(black_box(z), 1 << 20).map(|v| v.len())))
        });
    }
    g.finish();
}

fn fanout(c: &mut Criterion) {
    // The 1 KiB digest: at the default threshold, so it is compressed.
    let n = notification(SIZES[1].1);
    let mut g = c.benchmark_group("deflate/fanout");
    for recipients in RECIPIENTS {
        g.throughput(Throughput::Elements(recipients as u64));
        for (name, on) in [("off", false), ("on", true)] {
            let deflate = Deflate::new(LEVEL, 1024);
            let mut handed: Vec<Bytes> = Vec::with_capacity(recipients);
            g.bench_with_input(BenchmarkId::new(name, recipients), &recipients, |b, &r| {
                b.iter(|| {
                    handed.clear();
                    let payload = Payload::new(black_box(n.clone()), None, &deflate);
                    for _ in 0..r {
                        handed.push(payload.raw_frame(on).clone());
                    }
                    black_box(handed.len())
                })
            });
        }
        let mut compressor = Compressor::new(LEVEL);
        let mut handed: Vec<Vec<u8>> = Vec::with_capacity(recipients);
        g.bench_with_input(
            BenchmarkId::new("per_recipient", recipients),
            &recipients,
            |b, &r| {
                b.iter(|| {
                    handed.clear();
                    for _ in 0..r {
                        let mut out = Vec::new();
                        let _ = compressor.compress(&[black_box(&n[..])], &mut out);
                        handed.push(out);
                    }
                    black_box(handed.len())
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, compress_once, fanout);
criterion_main!(benches);
