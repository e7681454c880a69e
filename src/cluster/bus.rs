//! The cluster's threads of Redis I/O (and the emitter's reader, at the end).
//!
//! - **Commands** (`commands`): takes the router's requests (pushes, joins, presence) from its
//!   channel, as many as are waiting, and sends them to Redis in one pipeline; renews the node's
//!   expiry and puts its presence changes in Redis every heartbeat. While Redis is unreachable
//!   pushes are delivered on this node alone (`"cluster":"degraded"`), joins are placed without
//!   the stream, and it reconnects with backoff.
//! - **Feed** (`feed`): subscribes to this node's channel and the broadcast channel, enters
//!   the node for every user it holds, reads back from the stream what it missed while it was
//!   not subscribed, then feeds every push it reads to the router in the stream's order. Sync
//!   marks (from heartbeats and joins) tell it how far the feed is complete, which places the
//!   joins waiting for that; a heartbeat that stops coming through (a pub/sub connection that
//!   silently stopped delivering) has the connection rebuilt.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use redis::{Connection, Value};
use tracing::{debug, info, warn};

use super::wire::{self, Message};
use super::{scripts, Inner, Request, Waiting};
use crate::command::{ClusterState, PushReply, UserInfo};
use crate::router::log::{offset_string, parse_offset, Record, Unrecoverable};
use crate::router::mailbox::{Join, Since};
use crate::router::parked::{Session, Shared};
use crate::router::Router;

/// Most requests sent in one pipeline.
const MAX_BATCH: usize = 512;
/// Entries read per page when catching up or replaying from the stream.
const PAGE: usize = 1000;
/// Users entered per script call when the node enters all of its users again.
const ENTER_BATCH: usize = 500;
/// The longest wait between two attempts to reach Redis.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one command may take before Redis counts as unreachable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the command thread waits for Redis's answers: shorter than the control API's reply
/// deadline, so that a push Redis does not answer is answered `"degraded"` when served alone.
const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// A push's deadline, after it is sent: its script refuses to run later (Redis stalled with
/// it), since by then its node may have stopped waiting and served its own sockets alone.
/// Half of [`ANSWER_WAIT`], so that a push run before its deadline is answered in time but for
/// a stall of more than that between the script and its answer.
const LATE_AFTER: Duration = Duration::from_millis(1500);

/// Redis's clock as the node last read it (from a heartbeat's answer), carried forward by the
/// node's monotonic clock. It never runs ahead of Redis's: the reading was taken some time
/// before its answer arrived, which only makes deadlines earlier.
#[derive(Debug, Clone, Copy)]
struct RedisClock {
    redis_ms: u64,
    read_at: Instant,
}

impl RedisClock {
    /// Redis's clock at `at`, in ms.
    fn at(&self, at: Instant) -> u64 {
        self.redis_ms + at.saturating_duration_since(self.read_at).as_millis() as u64
    }

    /// Keeps the closer of two readings (the later one, projected to now), but not one older
    /// than a minute: Redis's clock may have been set since.
    fn update(clock: &mut Option<RedisClock>, new: RedisClock) {
        let now = Instant::now();
        let keep = clock.is_some_and(|old| {
            now.saturating_duration_since(old.read_at) < Duration::from_secs(60)
                && old.at(now) > new.at(now)
        });
        if !keep {
            *clock = Some(new);
        }
    }
}

pub(super) fn spawn(
    inner: Arc<Inner>,
    router: Router,
    rx: Receiver<Request>,
) -> std::io::Result<()> {
    let client = inner.settings.client().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--redis: {e}"))
    })?;
    let (i, r, c) = (inner.clone(), router.clone(), client.clone());
    thread::Builder::new()
        .name("herald-redis-commands".into())
        .spawn(move || commands(i, r, c, rx))?;
    if inner.settings.emitter_key.is_some() {
        let (i, r, c) = (inner.clone(), router.clone(), client.clone());
        thread::Builder::new()
            .name("herald-redis-emitter".into())
            .spawn(move || emitter(i, r, c))?;
    }
    thread::Builder::new()
        .name("herald-redis-feed".into())
        .spawn(move || feed(inner, router, client))?;
    Ok(())
}

/// The loaded scripts' hashes.
struct Scripts {
    push: redis::Script,
    join: redis::Script,
    heartbeat: redis::Script,
    presence: redis::Script,
    lead: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            push: redis::Script::new(&scripts::push()),
            join: redis::Script::new(&scripts::join()),
            heartbeat: redis::Script::new(&scripts::heartbeat()),
            presence: redis::Script::new(scripts::PRESENCE),
            lead: redis::Script::new(scripts::LEAD),
        }
    }

    fn load(&self, con: &mut Connection) -> redis::RedisResult<()> {
        for s in [
            &self.push,
            &self.join,
            &self.heartbeat,
            &self.presence,
            &self.lead,
        ] {
            s.load(con)?;
        }
        Ok(())
    }
}

/// Connects, checks the server can run the scripts, and loads them.
fn connect(client: &redis::Client, scripts: &Scripts) -> redis::RedisResult<Connection> {
    let mut con = client.get_connection_with_timeout(COMMAND_TIMEOUT)?;
    con.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    con.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    let info: String = redis::cmd("INFO").arg("server").query(&mut con)?;
    if let Some(version) = server_version(&info) {
        if version < (6, 2) {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "herald needs Redis 6.2 or later (XADD MINID, XRANGE with exclusive ranges)",
            )));
        }
    }
    scripts.load(&mut con)?;
    Ok(con)
}

/// [`connect`] for the command thread, which waits [`ANSWER_WAIT`] for an answer.
fn connect_commands(client: &redis::Client, scripts: &Scripts) -> redis::RedisResult<Connection> {
    let con = connect(client, scripts)?;
    con.set_read_timeout(Some(ANSWER_WAIT))?;
    Ok(con)
}

/// `redis_version:7.0.15` in `INFO server`, as (major, minor).
fn server_version(info: &str) -> Option<(u32, u32)> {
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))?;
    let mut parts = line.trim().split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Waits before the next attempt, doubling up to [`MAX_BACKOFF`].
fn backoff(delay: &mut Duration) {
    thread::sleep(*delay);
    *delay = (*delay * 2).min(MAX_BACKOFF);
}

fn commands(inner: Arc<Inner>, router: Router, client: redis::Client, rx: Receiver<Request>) {
    let scripts = Scripts::new();
    let mut con: Option<Connection> = None;
    let mut clock: Option<RedisClock> = None;
    let mut delay = Duration::from_millis(100);
    let mut retry_at = Instant::now();
    let heartbeat = inner.settings.heartbeat();
    let mut next_beat = Instant::now();
    // Connected Socket.IO sessions kept in Redis expire a window after they were last written
    // unless renewed: every third of the window.
    let renew_every = inner.settings.window / 3;
    let mut renew_at = Instant::now() + renew_every;
    loop {
        if con.is_none() && Instant::now() >= retry_at {
            match connect_commands(&client, &scripts) {
                Ok(c) => {
                    info!(node = %inner.node, "redis: command connection up");
                    con = Some(c);
                    // Perhaps another Redis, on another clock.
                    clock = None;
                    delay = Duration::from_millis(100);
                    next_beat = Instant::now();
                }
                Err(e) => {
                    if e.kind() == redis::ErrorKind::InvalidClientConfig {
                        warn!(error = %e, "redis: cannot be used");
                    } else {
                        debug!(error = %e, "redis: unreachable");
                    }
                    retry_at = Instant::now() + delay;
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
            }
        }
        inner.cmd_up.store(con.is_some(), Ordering::SeqCst);
        let wake_at = if con.is_some() {
            next_beat
        } else {
            retry_at.min(next_beat)
        };
        let first = match rx.recv_timeout(wake_at.saturating_duration_since(Instant::now())) {
            Ok(req) => Some(req),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch: Vec<Request> = first.into_iter().collect();
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        let beat = Instant::now() >= next_beat;
        if beat {
            next_beat = Instant::now() + heartbeat;
        }
        // The feed lost its connection: this one may be dead too without having noticed (a
        // Redis that restarted). Checked before a push is sent into it.
        if inner.recheck.swap(false, Ordering::SeqCst) {
            let alive = con
                .as_mut()
                .is_some_and(|c| redis::cmd("PING").query::<String>(c).is_ok());
            if !alive && con.is_some() {
                con = connect_commands(&client, &scripts).ok();
                clock = None;
                if con.is_none() {
                    inner.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    retry_at = Instant::now() + delay;
                }
            }
        }
        let renew = beat && Instant::now() >= renew_at;
        if renew {
            renew_at = Instant::now() + renew_every;
        }
        let failed = match con.as_mut() {
            Some(c) if inner.sub_up.load(Ordering::SeqCst) || batch.is_empty() => {
                let result = if beat {
                    beat_once(&inner, &router, &scripts, c, renew).map(|read| {
                        if let Some(read) = read {
                            RedisClock::update(&mut clock, read);
                        }
                    })
                } else {
                    Ok(())
                };
                match result.and_then(|()| run(&inner, &router, &scripts, c, clock, &mut batch)) {
                    Ok(()) => false,
                    Err(e) => {
                        warn!(error = %e, "redis: command failed; serving this node's sockets alone until it is back");
                        true
                    }
                }
            }
            // The feed is down: a push routed now might not reach this node's own sockets.
            Some(c) => {
                if beat {
                    if let Err(e) = beat_once(&inner, &router, &scripts, c, renew) {
                        debug!(error = %e, "redis: heartbeat failed");
                    }
                }
                false
            }
            None => false,
        };
        if failed {
            con = None;
            inner.cmd_up.store(false, Ordering::SeqCst);
            inner.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            retry_at = Instant::now();
        }
        // What Redis did not take is served by this node alone.
        for req in batch.drain(..) {
            alone(&router, req);
        }
    }
}

/// A request served without Redis.
fn alone(router: &Router, req: Request) {
    match req {
        Request::Push {
            target,
            notification,
            event,
            reply,
        } => {
            let _ = router.push_here(target, notification, event, reply);
        }
        Request::Join { worker, join } => router.place_here(worker, join),
        // Kept on this node only while Redis is away.
        Request::Park(_) => {}
        Request::Presence { local, reply, .. } => {
            let _ = reply.send(UserInfo::degraded(local.sockets).with_sockets_of(local));
        }
    }
}

/// Renews the node's expiry and puts its presence changes in Redis; with `renew`, renews the
/// expiry of the connected Socket.IO sessions it keeps there too. Returns Redis's clock as the
/// heartbeat read it.
fn beat_once(
    inner: &Inner,
    router: &Router,
    scripts: &Scripts,
    con: &mut Connection,
    renew: bool,
) -> redis::RedisResult<Option<RedisClock>> {
    let ttl = inner.settings.node_ttl.as_millis() as u64;
    let beat: Value = scripts
        .heartbeat
        .arg(&inner.keys.prefix)
        .arg(super::random_hex(8))
        .arg(&inner.node)
        .arg(ttl)
        .invoke(con)?;
    let clock = match &beat {
        Value::Array(parts) => parts.get(2).and_then(int),
        _ => None,
    }
    .and_then(|ms| u64::try_from(ms).ok())
    .map(|redis_ms| RedisClock {
        redis_ms,
        read_at: Instant::now(),
    });
    if let (true, Some(parked)) = (renew, router.parked()) {
        let window = inner.settings.window.as_millis() as u64;
        for chunk in parked.live().chunks(PAGE) {
            let mut pipe = redis::pipe();
            for pid in chunk {
                pipe.cmd("PEXPIRE")
                    .arg(inner.keys.session(pid))
                    .arg(window)
                    .ignore();
            }
            pipe.query::<()>(con)?;
        }
    }
    let left = router.directory().take_left();
    let counts = router.directory().take_counts();
    let mut unentered =
        std::mem::take(&mut *inner.unentered.lock().unwrap_or_else(|e| e.into_inner()));
    if left.is_empty() && counts.is_empty() && unentered.is_empty() {
        return Ok(clock);
    }
    let mut pipe = redis::pipe();
    for user in left {
        let still = router.directory().workers_of(&user) != 0
            || inner.placing().joining.contains_key(&*user);
        if !still {
            pipe.cmd("HDEL")
                .arg(inner.keys.user(&user))
                .arg(&inner.node)
                .ignore();
        }
    }
    // Users whose join was placed without Redis, and still held.
    unentered.retain(|u| router.directory().workers_of(u) != 0);
    enter(inner, scripts, con, &unentered)?;
    // Each node's socket count, for presence; only while the node still holds the user (its
    // entry is removed above when it does not).
    for (user, n) in counts {
        if n > 0 && router.directory().workers_of(&user) != 0 {
            pipe.cmd("HSET")
                .arg(inner.keys.user(&user))
                .arg(&inner.node)
                .arg(n)
                .ignore();
        }
    }
    if !pipe.is_empty() {
        pipe.query::<()>(con)?;
    }
    Ok(clock)
}

/// Enters this node in Redis for `users`, [`ENTER_BATCH`] to a script call.
fn enter(
    inner: &Inner,
    scripts: &Scripts,
    con: &mut Connection,
    users: &[String],
) -> redis::RedisResult<()> {
    for chunk in users.chunks(ENTER_BATCH) {
        let mut inv = scripts.join.prepare_invoke();
        inv.arg(&inner.keys.prefix)
            .arg(super::random_hex(8))
            .arg(&inner.node);
        for u in chunk {
            inv.arg(u);
        }
        let _: Value = inv.invoke(con)?;
    }
    Ok(())
}

/// Sends `batch` in one pipeline and answers each request; the batch is emptied of what Redis
/// took. `Err` when the connection failed: what is left is for [`alone`]. Pushes are given a
/// deadline on Redis's `clock` ([`LATE_AFTER`] from now); those Redis runs later (`late`) are
/// left for [`alone`] too.
fn run(
    inner: &Inner,
    router: &Router,
    scripts: &Scripts,
    con: &mut Connection,
    clock: Option<RedisClock>,
    batch: &mut Vec<Request>,
) -> redis::RedisResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    look_up_sessions(inner, con, batch)?;
    let deadline = clock.map_or(0, |c| c.at(Instant::now() + LATE_AFTER));
    let s = &inner.settings;
    // The epoch Redis keeps if it has none: one per batch will do, new at every batch.
    let new_epoch = super::random_hex(8);
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for req in batch.iter() {
        match req {
            Request::Push {
                target,
                notification,
                event,
                ..
            } => {
                let (kind, users) = wire::script_target(target);
                pipe.cmd("EVALSHA")
                    .arg(scripts.push.get_hash())
                    .arg(0)
                    .arg(&inner.keys.prefix)
                    .arg(&new_epoch)
                    .arg(s.window.as_millis() as u64)
                    .arg(kind)
                    .arg(&notification[..])
                    .arg(s.user_rate)
                    .arg(s.user_burst.max(1))
                    .arg(event.as_deref().unwrap_or(""))
                    .arg(deadline)
                    .arg(users);
            }
            Request::Join { join, .. } => {
                let mut users = inner.placing();
                for u in &join.users {
                    *users.joining.entry(u.clone()).or_default() += 1;
                }
                drop(users);
                pipe.cmd("EVALSHA")
                    .arg(scripts.join.get_hash())
                    .arg(0)
                    .arg(&inner.keys.prefix)
                    .arg(&new_epoch)
                    .arg(&inner.node)
                    .arg(&join.users);
            }
            Request::Presence { user, .. } => {
                pipe.cmd("EVALSHA")
                    .arg(scripts.presence.get_hash())
                    .arg(0)
                    .arg(&inner.keys.prefix)
                    .arg(user);
            }
            Request::Park(Shared::Kept(pid, session)) => {
                let ttl = session
                    .until_ms
                    .saturating_sub(crate::router::unix_ms())
                    .max(1);
                pipe.cmd("SET")
                    .arg(inner.keys.session(pid))
                    .arg(session.to_bytes())
                    .arg("PX")
                    .arg(ttl);
            }
            Request::Park(Shared::Taken(pid)) => {
                pipe.cmd("DEL").arg(inner.keys.session(pid));
            }
        }
    }
    let replies: Vec<Value> = match pipe.query(con) {
        Ok(r) => r,
        Err(e) => {
            for req in batch.iter() {
                if let Request::Join { join, .. } = req {
                    forget_joining(inner, &join.users);
                }
            }
            return Err(e);
        }
    };
    let mut replies = replies.into_iter();
    let mut joins = Vec::new();
    for req in std::mem::take(batch) {
        let reply = replies.next().unwrap_or(Value::Nil);
        if let Value::ServerError(e) = &reply {
            warn!(error = ?e, "redis: a script failed");
        }
        match req {
            Request::Push {
                target,
                notification,
                event,
                reply: tx,
            } => match push_reply(&reply) {
                Some(answer) if answer.late => {
                    inner.counters.late.fetch_add(1, Ordering::Relaxed);
                    batch.push(Request::Push {
                        target,
                        notification,
                        event,
                        reply: tx,
                    })
                }
                Some(answer) => {
                    let answer = answer.reply;
                    inner
                        .counters
                        .published
                        .fetch_add(answer.offset.is_some() as u64, Ordering::Relaxed);
                    router.count_push(&target, answer.rate_limited);
                    let _ = tx.send(answer);
                }
                None => batch.push(Request::Push {
                    target,
                    notification,
                    event,
                    reply: tx,
                }),
            },
            Request::Join { worker, join } => match join_reply(&reply) {
                Some((epoch, head, oldest)) => joins.push((worker, join, epoch, head, oldest)),
                None => {
                    forget_joining(inner, &join.users);
                    router.place_here(worker, join);
                }
            },
            Request::Presence {
                user,
                local,
                reply: tx,
            } => {
                let info =
                    presence_reply(&reply, &inner.node, local.sockets).with_sockets_of(local);
                debug!(user = %user, sockets = info.sockets, "presence");
                let _ = tx.send(info);
            }
            Request::Park(_) => {}
        }
    }
    let mut joins = joins.into_iter();
    while let Some((worker, join, epoch, head, oldest)) = joins.next() {
        let missed = match missed(inner, con, &join, epoch, head, oldest) {
            Ok(missed) => missed,
            Err(e) => {
                for (worker, join, ..) in
                    std::iter::once((worker, join, epoch, head, oldest)).chain(joins)
                {
                    forget_joining(inner, &join.users);
                    router.place_here(worker, join);
                }
                return Err(e);
            }
        };
        let waiting = Waiting {
            worker,
            join,
            epoch,
            head,
            missed,
        };
        let mut placing = inner.placing();
        placing.waiting.push(waiting);
        place_ready(router, &mut placing);
    }
    Ok(())
}

/// Looks for the sessions the batch's CONNECTs name among those other nodes kept; one found
/// (and the same user's) is taken (no other node may take it) and its join becomes the
/// session's.
fn look_up_sessions(
    inner: &Inner,
    con: &mut Connection,
    batch: &mut [Request],
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    let mut asked = Vec::new();
    for (i, req) in batch.iter().enumerate() {
        if let Request::Join { join, .. } = req {
            if let Some(lookup) = &join.lookup {
                pipe.cmd("GETDEL").arg(inner.keys.session(&lookup.pid));
                asked.push(i);
            }
        }
    }
    if asked.is_empty() {
        return Ok(());
    }
    let found: Vec<Option<Vec<u8>>> = pipe.query(con)?;
    let now_ms = crate::router::unix_ms();
    for (i, bytes) in asked.into_iter().zip(found) {
        let Some(Request::Join { join, .. }) = batch.get_mut(i) else {
            continue;
        };
        let Some(lookup) = join.lookup.take() else {
            continue;
        };
        let Some(kept) = bytes.as_deref().and_then(Session::from_bytes) else {
            continue;
        };
        if kept.until_ms <= now_ms {
            continue;
        }
        if kept.user != lookup.user {
            // A pid alone never authenticates: put it back for its owner.
            debug!("kept session is another user's: not taken back");
            let ttl = kept.until_ms - now_ms;
            redis::cmd("SET")
                .arg(inner.keys.session(&lookup.pid))
                .arg(kept.to_bytes())
                .arg("PX")
                .arg(ttl)
                .query::<()>(con)?;
            continue;
        }
        let Ok(pid) = lookup.pid.as_bytes().try_into() else {
            continue;
        };
        if let Some(taken) =
            Join::taken_back(join.member, join.id, kept, pid, lookup.offset.clone())
        {
            debug!(
                users = taken.users.len(),
                "session taken back from another node"
            );
            *join = taken;
        }
    }
    Ok(())
}

/// A join's users have been placed (or given up on): their entries may be removed again.
fn forget_joining(inner: &Inner, users: &[String]) {
    let mut placing = inner.placing();
    for u in users {
        if let Some(n) = placing.joining.get_mut(u) {
            *n -= 1;
            if *n == 0 {
                placing.joining.remove(u);
            }
        }
    }
}

/// Places the waiting joins the feed has caught up with.
pub(super) fn place_ready(router: &Router, placing: &mut super::Placing) {
    let (epoch, fed_to) = (placing.epoch, placing.fed_to);
    let mut i = 0;
    while i < placing.waiting.len() {
        let w = &placing.waiting[i];
        if w.epoch == epoch && w.head <= fed_to {
            let w = placing.waiting.swap_remove(i);
            for u in &w.join.users {
                if let Some(n) = placing.joining.get_mut(u) {
                    *n -= 1;
                    if *n == 0 {
                        placing.joining.remove(u);
                    }
                }
            }
            router.place_cluster(w.worker, w.join, w.epoch, w.head, w.missed);
        } else {
            i += 1;
        }
    }
}

/// Places every waiting join without the stream (the feed stopped, or Redis lost its data).
fn place_all_here(inner: &Inner, router: &Router) {
    let waiting = std::mem::take(&mut inner.placing().waiting);
    for w in waiting {
        forget_joining(inner, &w.join.users);
        router.place_here(w.worker, w.join);
    }
}

/// What a join with an offset missed: the stream's pushes after it up to `head` reaching the
/// member's users; or why the offset cannot be honoured.
fn missed(
    inner: &Inner,
    con: &mut Connection,
    join: &Join,
    epoch: u64,
    head: u64,
    oldest: u64,
) -> redis::RedisResult<Option<Result<Vec<Arc<Record>>, Unrecoverable>>> {
    let since = match &join.since {
        Since::Now => return Ok(None),
        Since::Client(offset) => match parse_offset(offset) {
            None => return Ok(Some(Err(Unrecoverable::Malformed))),
            Some((e, _)) if e != epoch => return Ok(Some(Err(Unrecoverable::OtherEpoch))),
            Some((_, seq)) => seq,
        },
        Since::Seq(seq) => *seq,
    };
    if since > head {
        return Ok(Some(Err(Unrecoverable::Ahead)));
    }
    // Trimming drops a prefix of the stream: from the oldest entry left on, nothing is missing.
    if since < oldest {
        return Ok(Some(Err(Unrecoverable::TooOld)));
    }
    let mut users = join.users.clone();
    users.extend(join.held.iter().cloned());
    let mut out = Vec::new();
    let mut from = since;
    while from < head {
        let page = read_stream(con, &inner.keys.log(), from, Some(head), PAGE)?;
        let Some(last) = page.last().map(|(seq, _)| *seq) else {
            break;
        };
        for (seq, entry) in page {
            let Some(entry) = entry else { continue };
            let record = Record {
                seq,
                at_ms: wire::ms_of(seq),
                target: entry.target,
                except: Vec::new(),
                notification: entry.notification,
                offset: offset_string(epoch, seq).into(),
                event: entry.event,
            };
            if record.reaches(&users) {
                out.push(Arc::new(record));
            }
        }
        from = last;
    }
    Ok(Some(Ok(out)))
}

/// Up to `count` entries after `from` (and up to `to`), oldest first: their sequence numbers,
/// and the pushes among them (`None` for entries that are not, such as an epoch's first).
#[allow(clippy::type_complexity)]
fn read_stream(
    con: &mut Connection,
    key: &str,
    from: u64,
    to: Option<u64>,
    count: usize,
) -> redis::RedisResult<Vec<(u64, Option<wire::Entry>)>> {
    let to = to.map_or_else(|| "+".to_owned(), wire::id_of);
    let reply: Value = redis::cmd("XRANGE")
        .arg(key)
        .arg(format!("({}", wire::id_of(from)))
        .arg(to)
        .arg("COUNT")
        .arg(count)
        .query(con)?;
    let mut out = Vec::new();
    let Value::Array(entries) = reply else {
        return Ok(out);
    };
    for e in entries {
        let Value::Array(parts) = e else { continue };
        let mut parts = parts.into_iter();
        let (Some(id), Some(Value::Array(fields))) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(seq) = text(&id).and_then(|id| wire::seq_of(&id)) else {
            continue;
        };
        let m = fields
            .chunks(2)
            .find(|kv| kv.first().and_then(text).as_deref() == Some("m"))
            .and_then(|kv| match kv.get(1) {
                Some(Value::BulkString(b)) => Some(b.as_slice()),
                _ => None,
            });
        out.push((seq, m.and_then(|m| wire::decode_entry(seq, m))));
    }
    Ok(out)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

fn epoch_of(v: &Value) -> Option<u64> {
    u64::from_str_radix(&text(v)?, 16).ok().filter(|&e| e != 0)
}

/// The push script's answer.
struct PushAnswer {
    reply: PushReply,
    /// It ran after its deadline, and did nothing.
    late: bool,
}

/// The push script's answer; `None` when it failed.
fn push_reply(v: &Value) -> Option<PushAnswer> {
    let Value::Array(parts) = v else { return None };
    let epoch = epoch_of(parts.first()?)?;
    if parts.get(1).and_then(text).as_deref() == Some("late") {
        return Some(PushAnswer {
            reply: PushReply::default(),
            late: true,
        });
    }
    let limited = int(parts.get(3)?)? as usize;
    let mut reply = PushReply {
        rate_limited: limited,
        cluster: Some(ClusterState::Ok),
        ..PushReply::default()
    };
    match parts.get(1)? {
        Value::Nil => {
            reply.retry_after = Some(Duration::from_millis(int(parts.get(4)?)?.max(1) as u64));
        }
        id => {
            let seq = wire::seq_of(&text(id)?)?;
            reply.offset = Some(offset_string(epoch, seq).into());
            reply.nodes = Some(int(parts.get(2)?)? as usize);
        }
    }
    Some(PushAnswer { reply, late: false })
}

/// The join script's answer: the epoch, the head and the oldest entry.
fn join_reply(v: &Value) -> Option<(u64, u64, u64)> {
    let Value::Array(parts) = v else { return None };
    Some((
        epoch_of(parts.first()?)?,
        wire::stream_position(&text(parts.get(1)?)?)?,
        wire::stream_position(&text(parts.get(2)?)?)?,
    ))
}

/// The presence script's answer: this node's exact count, and the others' as they wrote it.
fn presence_reply(v: &Value, node: &str, local: usize) -> UserInfo {
    let Value::Array(parts) = v else {
        return UserInfo::degraded(local);
    };
    let mut info = UserInfo {
        cluster: Some(ClusterState::Ok),
        ..UserInfo::degraded(local)
    };
    for pair in parts.chunks(2) {
        let (Some(n), Some(count)) = (pair.first().and_then(text), pair.get(1).and_then(int))
        else {
            continue;
        };
        if n == node {
            continue;
        }
        info.sockets += count.max(0) as usize;
        info.nodes = info.nodes.map(|k| k + 1);
    }
    info
}

/// The feed thread: subscribes, catches up, then reads until the connection fails or the
/// heartbeat stops coming through it; then again, with backoff.
fn feed(inner: Arc<Inner>, router: Router, client: redis::Client) {
    let scripts = Scripts::new();
    let mut delay = Duration::from_millis(100);
    let mut first = true;
    loop {
        match follow(&inner, &router, &client, &scripts, &mut delay) {
            Ok(()) => {}
            Err(e) => debug!(error = %e, "redis: feed down"),
        }
        let was_up = inner.sub_up.swap(false, Ordering::SeqCst);
        inner.recheck.store(true, Ordering::SeqCst);
        place_all_here(&inner, &router);
        if was_up {
            warn!("redis: pub/sub connection lost; reconnecting");
        }
        if !first || was_up {
            inner.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        backoff(&mut delay);
    }
}

/// One life of the feed's connections.
fn follow(
    inner: &Inner,
    router: &Router,
    client: &redis::Client,
    scripts: &Scripts,
    delay: &mut Duration,
) -> redis::RedisResult<()> {
    let mut aux = connect(client, scripts)?;
    let mut con = client.get_connection_with_timeout(COMMAND_TIMEOUT)?;
    con.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    con.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    let mut pubsub = con.as_pubsub();
    pubsub.subscribe(&[inner.keys.node(&inner.node), inner.keys.all()])?;
    // Alive before anything is routed by it.
    let beat: Value = scripts
        .heartbeat
        .arg(&inner.keys.prefix)
        .arg(super::random_hex(8))
        .arg(&inner.node)
        .arg(inner.settings.node_ttl.as_millis() as u64)
        .invoke(&mut aux)?;
    let (epoch, head) = match &beat {
        Value::Array(parts) => (
            parts.first().and_then(epoch_of),
            parts
                .get(1)
                .and_then(text)
                .and_then(|h| wire::stream_position(&h)),
        ),
        _ => (None, None),
    };
    let (Some(epoch), Some(head)) = (epoch, head) else {
        return Err(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "heartbeat answer",
        )));
    };
    let log = router.cluster_log();
    let mut lost = false;
    let fresh = {
        let mut records = log.lock();
        if records.epoch() != epoch {
            if records.head() != 0 {
                lost = true;
                warn!(
                    old = %format!("{:x}", records.epoch()),
                    new = %format!("{epoch:x}"),
                    "redis: the cluster's log is new (Redis lost its data); clients' offsets from before are not honoured"
                );
            }
            log.reset(&mut records, epoch);
            true
        } else {
            false
        }
    };
    if fresh {
        let mut placing = inner.placing();
        placing.epoch = epoch;
        placing.fed_to = 0;
        drop(placing);
        place_all_here(inner, router);
    }
    if lost {
        // The clients' offsets are of the old epoch, and pushes made since Redis came back
        // were not routed here (the node had not entered its users again): they reconnect and
        // are told `recovered: false`.
        router.reconnect_all();
    }
    // Enter the node again for every user it holds (Redis may have lost them, or dropped the
    // node as dead while it was away).
    let mut users = Vec::new();
    router
        .directory()
        .for_each_user(|u| users.push(u.to_owned()));
    enter(inner, scripts, &mut aux, &users)?;
    // What was routed while the node was not subscribed is in the stream. A node with no
    // users and no joins waiting has nothing to catch up with.
    let nothing_owed = users.is_empty() && inner.placing().waiting.is_empty();
    if nothing_owed {
        log.lock().skip_to(head);
    }
    let mut from = log.lock().head();
    let mut caught = 0u64;
    loop {
        let page = read_stream(&mut aux, &inner.keys.log(), from, None, PAGE)?;
        let n = page.len();
        for (seq, entry) in page {
            from = seq;
            if let Some(entry) = entry {
                caught += 1;
                router.deliver(entry);
            }
        }
        if n < PAGE {
            break;
        }
    }
    log.lock().skip_to(from);
    if caught > 0 {
        info!(pushes = caught, "redis: caught up from the stream");
        inner
            .counters
            .caught_up
            .fetch_add(caught, Ordering::Relaxed);
    }
    {
        let mut placing = inner.placing();
        placing.epoch = epoch;
        placing.fed_to = placing.fed_to.max(from);
        place_ready(router, &mut placing);
    }
    drop(aux);
    inner.sub_up.store(true, Ordering::SeqCst);
    *delay = Duration::from_millis(100);
    info!(node = %inner.node, "redis: subscribed and caught up");
    let heartbeat = inner.settings.heartbeat();
    pubsub.set_read_timeout(Some(heartbeat.min(Duration::from_millis(250))))?;
    let mut last_mark = Instant::now();
    loop {
        let msg = match pubsub.get_message() {
            Ok(msg) => msg,
            Err(e) if e.is_timeout() => {
                // The command thread renews the heartbeat, whose mark comes through here: a
                // connection that stopped delivering while commands work is rebuilt.
                let stale = last_mark.elapsed() > heartbeat * 3;
                if stale && inner.cmd_up.load(Ordering::SeqCst) {
                    warn!("redis: the heartbeat stopped coming through pub/sub; rebuilding it");
                    inner
                        .counters
                        .pubsub_rebuilt
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let payload = msg.get_payload_bytes();
        match wire::decode_message(payload) {
            Some(Message::Push(entry)) => {
                let c = &inner.counters;
                c.pushes_received.fetch_add(1, Ordering::Relaxed);
                c.push_bytes_received.fetch_add(
                    (payload.len() + msg.get_channel_name().len()) as u64,
                    Ordering::Relaxed,
                );
                router.deliver(entry);
            }
            Some(Message::Sync { head }) => {
                last_mark = Instant::now();
                inner.counters.sync_marks.fetch_add(1, Ordering::Relaxed);
                let mut placing = inner.placing();
                if placing.epoch == epoch {
                    placing.fed_to = placing.fed_to.max(head);
                    log.lock().skip_to(head);
                }
                place_ready(router, &mut placing);
            }
            None => debug!(channel = %msg.get_channel_name(), "redis: message not understood"),
        }
    }
}

/// The emitter thread: the node that holds the lead reads the Socket.IO emitter's channels and
/// makes each message a push, logged and routed as the control API's are; the others wait to
/// take the lead over if it lapses (a node that stops holds it for `--redis-node-ttl` at most).
fn emitter(inner: Arc<Inner>, router: Router, client: redis::Client) {
    let scripts = Scripts::new();
    loop {
        if let Err(e) = lead(&inner, &router, &client, &scripts) {
            debug!(error = %e, "redis: emitter reading stopped");
        }
        thread::sleep(inner.settings.heartbeat());
    }
}

/// Waits for the lead, then reads the emitter's channels while it keeps it.
fn lead(
    inner: &Inner,
    router: &Router,
    client: &redis::Client,
    scripts: &Scripts,
) -> redis::RedisResult<()> {
    let Some(key) = &inner.settings.emitter_key else {
        return Ok(());
    };
    let heartbeat = inner.settings.heartbeat();
    let ttl = inner.settings.node_ttl.as_millis() as u64;
    let mut aux = connect(client, scripts)?;
    let take = |aux: &mut Connection| -> redis::RedisResult<bool> {
        let led: i64 = scripts
            .lead
            .arg(inner.keys.emitter_lead())
            .arg(&inner.node)
            .arg(ttl)
            .invoke(aux)?;
        Ok(led == 1)
    };
    while !take(&mut aux)? {
        thread::sleep(heartbeat);
    }
    let mut con = client.get_connection_with_timeout(COMMAND_TIMEOUT)?;
    con.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    con.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    let mut pubsub = con.as_pubsub();
    pubsub.psubscribe(super::emitter::pattern(key))?;
    pubsub.set_read_timeout(Some(heartbeat.min(Duration::from_millis(250))))?;
    info!(node = %inner.node, channels = %super::emitter::pattern(key), "redis: reading the Socket.IO emitter's channels");
    let mut renew_at = Instant::now() + heartbeat;
    loop {
        match pubsub.get_message() {
            Ok(msg) => emitted(inner, router, msg.get_payload_bytes()),
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= renew_at {
            if !take(&mut aux)? {
                info!("redis: another node reads the Socket.IO emitter's channels now");
                return Ok(());
            }
            renew_at = Instant::now() + heartbeat;
        }
    }
}

/// One message from the emitter, pushed like the control API's.
fn emitted(inner: &Inner, router: &Router, payload: &[u8]) {
    let prefix = &inner.settings.emitter_room_prefix;
    match super::emitter::decode(payload, prefix, std::time::SystemTime::now()) {
        Ok(e) => {
            inner.counters.emitted.fetch_add(1, Ordering::Relaxed);
            // No one waits for the answer: the emitter publishes and forgets.
            let (reply, _) = crossbeam_channel::bounded(1);
            let _ = router.push_cluster(e.target, e.notification, e.event, reply);
        }
        Err(why) => {
            inner
                .counters
                .emitted_refused
                .fetch_add(1, Ordering::Relaxed);
            debug!(why = why.label(), "redis: an emitted message was refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Target;

    #[test]
    fn the_server_version_is_read_from_info() {
        assert_eq!(
            server_version("# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:0\r\n"),
            Some((7, 0))
        );
        assert_eq!(server_version("nothing"), None);
    }

    #[test]
    fn script_answers_are_read() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let ok = Value::Array(vec![
            bulk("ff"),
            bulk("5-1"),
            Value::Int(2),
            Value::Int(1),
            Value::Int(0),
        ]);
        let r = push_reply(&ok).unwrap();
        assert!(!r.late);
        let r = r.reply;
        assert_eq!(
            r.offset.as_deref(),
            Some(&*offset_string(0xff, wire::seq_of("5-1").unwrap()))
        );
        assert_eq!((r.nodes, r.rate_limited), (Some(2), 1));
        let refused = Value::Array(vec![
            bulk("ff"),
            Value::Nil,
            Value::Int(0),
            Value::Int(1),
            Value::Int(250),
        ]);
        let r = push_reply(&refused).unwrap().reply;
        assert_eq!(
            (r.offset, r.retry_after),
            (None, Some(Duration::from_millis(250)))
        );
        let late = Value::Array(vec![bulk("ff"), bulk("late")]);
        assert!(push_reply(&late).unwrap().late);
        assert!(push_reply(&Value::Nil).is_none());
        assert_eq!(
            join_reply(&Value::Array(vec![bulk("1"), bulk("9-0"), bulk("3-1")])),
            Some((
                1,
                wire::seq_of("9-0").unwrap(),
                wire::seq_of("3-1").unwrap()
            ))
        );
        let p = Value::Array(vec![bulk("me"), bulk("7"), bulk("other"), bulk("2")]);
        let info = presence_reply(&p, "me", 3);
        assert_eq!((info.sockets, info.nodes), (5, Some(2)));
        let info = presence_reply(&Value::Array(vec![]), "me", 0);
        assert_eq!((info.sockets, info.nodes), (0, Some(0)));
    }

    #[test]
    fn only_push_targets_are_sent_to_the_script() {
        assert_eq!(wire::script_target(&Target::All), ("a", &[][..]));
    }
}
