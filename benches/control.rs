//! The control API: parsing a push request and routing it to a command.

use std::time::{Duration, SystemTime};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use herald::command::{Command, LoopGone, PushReply};
use herald::control::{api, http};

/// A backend's push as curl sends it.
const PUSH: &[u8] = b"POST /v1/users/user-123/notifications HTTP/1.1\r\nHost: localhost:5001\r\n\
User-Agent: curl/8.5.0\r\nAccept: */*\r\ncontent-type: application/json\r\nContent-Length: 93\r\n\r\n\
{\"type\":\"LIKE\",\"message\":\"Someone liked your post\",\"actorId\":\"user-9\",\"data\":{\"postId\":\"p1\"}}";

/// Answers every push at once, as the loop would.
struct Answer;

impl api::Dispatch for Answer {
    fn dispatch(&self, cmd: Command) -> Result<(), LoopGone> {
        if let Command::Push { reply, .. } = cmd {
            let _ = reply.send(PushReply {
                sockets: 1,
                ..PushReply::default()
            });
        }
        Ok(())
    }
}

fn control(c: &mut Criterion) {
    let mut g = c.benchmark_group("control");
    g.throughput(Throughput::Bytes(PUSH.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| http::parse(black_box(PUSH), 1 << 20))
    });
    g.bench_function("parse+route+serialize", |b| {
        b.iter(|| {
            if let Ok(Some((req, _))) = http::parse(black_box(PUSH), 1 << 20) {
                let resp = api::handle(
                    &req,
                    &Answer,
                    Duration::from_secs(1),
                    SystemTime::UNIX_EPOCH,
                );
                black_box(resp.status);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, control);
criterion_main!(benches);
