//! The router's choice for a unicast push: look the user up in the directory and wake only the
//! workers holding it, or wake every worker. Measures the directory lookup and what waking one
//! worker costs (a channel send and an eventfd write), from which both choices are priced for
//! up to 64 workers in BENCHMARKS.md.

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mio::{Poll, Token, Waker};

use herald::router::directory::Directory;

/// Users in the directory while it is looked up.
const USERS: usize = 100_000;
/// Workers the users are spread over.
const WORKERS: usize = 64;

fn directory(c: &mut Criterion) {
    let mut g = c.benchmark_group("router");
    let d = Directory::default();
    let names: Vec<String> = (0..USERS).map(|i| format!("user-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        d.opened(name, i % WORKERS);
    }
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("directory_lookup", |b| {
        b.iter(|| {
            i += 1;
            black_box(d.workers_of(black_box(&names[i % USERS])))
        })
    });
    g.bench_function("directory_open_close", |b| {
        b.iter(|| {
            i += 1;
            let name = &names[i % USERS];
            d.closed(name, i % WORKERS);
            d.opened(black_box(name), i % WORKERS);
        })
    });
    // What reaching one worker costs the router: a message on its channel and a wake-up.
    let poll = Poll::new().unwrap();
    let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
    let (tx, rx) = crossbeam_channel::unbounded::<u64>();
    g.bench_function("send_and_wake_one_worker", |b| {
        b.iter(|| {
            tx.send(black_box(1)).unwrap();
            waker.wake().unwrap();
            // The worker's side, so the channel does not grow: not part of the router's cost
            // but small beside the wake.
            let _ = rx.try_recv();
        })
    });
    g.finish();
}

criterion_group!(benches, directory);
criterion_main!(benches);
