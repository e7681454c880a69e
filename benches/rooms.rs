//! Room churn: sockets subscribing and leaving, users coming and going.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use herald::rooms::Rooms;

/// Connections and users in the steady state the churn runs against.
const CONNECTIONS: usize = 10_000;
const USERS: usize = 5_000;

fn churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("rooms");
    let names: Vec<String> = (0..USERS * 2).map(|i| format!("user-{i}")).collect();
    let mut rooms = Rooms::new(16);
    for conn in 0..CONNECTIONS {
        rooms.subscribe(conn, &names[conn % USERS]).ok();
    }
    g.throughput(Throughput::Elements(1));
    // One connection leaves its (shared) room and joins a fresh user's room, then goes back:
    // two subscribes, two unsubscribes, one room created and freed.
    let mut i = 0;
    g.bench_function("subscribe+unsubscribe", |b| {
        b.iter(|| {
            let conn = i % CONNECTIONS;
            let fresh = &names[USERS + i % USERS];
            let home = &names[conn % USERS];
            rooms.unsubscribe(conn, home);
            rooms.subscribe(conn, black_box(fresh)).ok();
            rooms.unsubscribe(conn, fresh);
            rooms.subscribe(conn, home).ok();
            i += 1;
        })
    });
    g.bench_function("disconnect+reconnect", |b| {
        b.iter(|| {
            let conn = i % CONNECTIONS;
            rooms.remove_conn(conn);
            rooms.subscribe(conn, black_box(&names[conn % USERS])).ok();
            i += 1;
        })
    });
    g.bench_function("members", |b| {
        b.iter(|| {
            i += 1;
            black_box(rooms.members(&names[i % USERS]).len())
        })
    });
    g.finish();
}

criterion_group!(benches, churn);
criterion_main!(benches);
