//! WebSocket frame costs: decoding a client frame (unmasking and, for text, UTF-8 validation
//! included), encoding a server frame, and masking alone.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use herald::ws::frame::{self, apply_mask, encode_masked, opcode};
use herald::ws::Decoder;

/// Payload sizes: a tiny event, a typical notification, a large one, the default message limit.
const SIZES: [usize; 4] = [16, 200, 4 * 1024, 64 * 1024];
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for size in SIZES {
        let payload = "n".repeat(size);
        let bytes = encode_masked(true, opcode::TEXT, 0, payload.as_bytes(), MASK);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("text", size), &bytes, |b, bytes| {
            b.iter(|| {
                let mut dec = Decoder::new(64 * 1024);
                black_box(dec.decode(black_box(bytes)).ok())
            })
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for size in SIZES {
        let payload = vec![b'n'; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("text", size), &payload, |b, p| {
            b.iter(|| black_box(frame::encode(opcode::TEXT, black_box(p))))
        });
    }
    g.finish();
}

fn mask(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for size in SIZES {
        let mut buf = vec![0u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), MASK, 1))
        });
    }
    g.finish();
}

criterion_group!(benches, decode, encode, mask);
criterion_main!(benches);
