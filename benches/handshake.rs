//! The WebSocket opening handshake: parsing a browser's request head and validating it.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use herald::ws::handshake::{parse_request, validate_upgrade, write_accept};

/// What Chromium sends to open `ws://localhost:5000/ws` (headers as a browser writes them).
const BROWSER_REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: localhost:5000\r\nConnection: Upgrade\r\n\
Pragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) \
AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36\r\nUpgrade: websocket\r\n\
Origin: http://localhost:3000\r\nSec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

fn handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Bytes(BROWSER_REQUEST.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| parse_request(black_box(BROWSER_REQUEST), 8192))
    });
    g.bench_function("parse+validate+accept", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            if let Ok(Some((req, _))) = parse_request(black_box(BROWSER_REQUEST), 8192) {
                if let Ok(hs) = validate_upgrade(&req) {
                    write_accept(&hs, &mut out);
                }
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, handshake);
criterion_main!(benches);
