//! The recovery log's cost per push: appending a one-user push, a push to 1,000 users and a
//! broadcast under the log's lock (the same O(1) work whatever the number of recipients), with
//! the window full; and reading what a reconnecting client missed: the pushes after its offset
//! that reach its user, from 1,000 back.

use std::time::Duration;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use herald::command::Target;
use herald::router::log::{offset_string, Log};

/// A notification as services send them.
const NOTIFICATION: &[u8] =
    br#"{"type":"LIKE","message":"Ana liked your post","actorId":"u-77","timestamp":"2026-12-03T06:00:00.000Z"}"#;

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Elements(1));
    let n = Bytes::from_static(NOTIFICATION);
    // 64 MiB of pushes already there: every append also drops the oldest.
    let log = Log::new(Duration::from_secs(3600), 64 << 20);
    {
        let mut r = log.lock();
        while r.size().1 < 64 << 20 {
            r.append(Target::User("user-1".into()), Vec::new(), n.clone(), 0);
        }
    }
    let mut i = 0u64;
    g.bench_function("append_user", |b| {
        b.iter(|| {
            i += 1;
            let target = Target::User(format!("user-{}", i % 1000));
            black_box(log.lock().append(target, Vec::new(), n.clone(), 0))
        })
    });
    let many: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    g.bench_function("append_1000_users", |b| {
        b.iter_batched(
            || Target::Users(many.clone()),
            |target| black_box(log.lock().append(target, Vec::new(), n.clone(), 0)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("append_broadcast", |b| {
        b.iter(|| black_box(log.lock().append(Target::All, Vec::new(), n.clone(), 0)))
    });
    g.finish();
}

fn since(c: &mut Criterion) {
    let mut g = c.benchmark_group("log");
    let n = Bytes::from_static(NOTIFICATION);
    let log = Log::new(Duration::from_secs(3600), 1 << 30);
    let mut r = log.lock();
    for i in 0..100_000u64 {
        r.append(
            Target::User(format!("user-{}", i % 1000)),
            Vec::new(),
            n.clone(),
            0,
        );
    }
    let users = vec!["user-7".to_owned()];
    let from = offset_string(log.epoch(), r.head() - 1000);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("since_1000_back", |b| {
        b.iter(|| {
            black_box(
                r.since(&from, 0, |rec| rec.reaches(&users))
                    .map(|v| v.len()),
            )
        })
    });
    drop(r);
    g.finish();
}

criterion_group!(benches, append, since);
criterion_main!(benches);
