//! The router: where every control request meets the workers.
//!
//! It stands between the control API and the workers (one event loop per core, each owning its
//! connections). A push is checked once here against its users' push buckets (`--user-rate`),
//! then sent only to the workers holding sockets of its users ([`directory`]), or to every
//! worker for a broadcast; the workers' counts are summed into one answer ([`mailbox`]). Reads
//! (a user's sockets, the metrics, readiness) are gathered the same way.
//!
//! Runs on the calling control thread: no thread of its own, no I/O but the channels and the
//! workers' wakers.
//!
//! - [`directory`]: which workers hold sockets of which user.
//! - [`mailbox`]: the messages a worker takes, and the gathering of their answers.

pub mod directory;
pub mod log;
pub mod mailbox;
pub mod parked;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::Sender;
use mio::Waker;

use crate::cluster::{wire::Entry, Cluster, Request};
use crate::command::{ClusterState, Command, LoopGone, PushReply, Target, UserInfo};
use crate::limits::UserBuckets;
use crate::metrics::{self, RouterCounts};
use directory::{workers_in, Directory};
use log::{offset_string, Log, Record, Unrecoverable};
use mailbox::{Gather, Join, Joined, PushJob, Since, ToWorker};
use parked::Parked;

/// How the router reaches one worker: its channel and the waker of its poll.
#[derive(Clone)]
pub struct WorkerLink {
    pub tx: Sender<ToWorker>,
    pub waker: Arc<Waker>,
}

impl WorkerLink {
    /// Queues `msg` and wakes the worker.
    pub fn send(&self, msg: ToWorker) -> Result<(), LoopGone> {
        self.tx.send(msg).map_err(|_| LoopGone)?;
        self.waker.wake().map_err(|_| LoopGone)
    }
}

/// The control API's handle on the workers; cheap to clone, one per control thread.
#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
}

struct Shared {
    workers: Arc<[WorkerLink]>,
    directory: Arc<Directory>,
    /// Per-user push buckets; `None` without `--user-rate`.
    users: Option<Mutex<UserBuckets>>,
    pushes_user: AtomicU64,
    pushes_users: AtomicU64,
    pushes_broadcast: AtomicU64,
    rate_limited_user: AtomicU64,
    /// Shutdown was asked for: not ready, whatever the workers say.
    draining: AtomicBool,
    /// The recovery log; `None` with `--recovery false`.
    log: Option<Arc<Log>>,
    /// Socket.IO sessions kept for recovery; `None` with `--recovery false`.
    parked: Option<Arc<Parked>>,
    /// The other nodes, through Redis (`--redis`). The log is then this node's part of the
    /// cluster's: the pushes Redis routed to it.
    cluster: Option<Cluster>,
}

impl Router {
    pub fn new(
        workers: Arc<[WorkerLink]>,
        directory: Arc<Directory>,
        users: Option<UserBuckets>,
        log: Option<Arc<Log>>,
        parked: Option<Arc<Parked>>,
        cluster: Option<Cluster>,
    ) -> Self {
        Router {
            shared: Arc::new(Shared {
                workers,
                directory,
                users: users.map(Mutex::new),
                pushes_user: AtomicU64::new(0),
                pushes_users: AtomicU64::new(0),
                pushes_broadcast: AtomicU64::new(0),
                rate_limited_user: AtomicU64::new(0),
                draining: AtomicBool::new(false),
                log,
                parked,
                cluster,
            }),
        }
    }

    /// The directory of which workers hold which users.
    pub fn directory(&self) -> &Directory {
        &self.shared.directory
    }

    /// The cluster, with `--redis`.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.shared.cluster.as_ref()
    }

    /// The recovery log, when recovery is on.
    pub fn log(&self) -> Option<&Arc<Log>> {
        self.shared.log.as_ref()
    }

    /// The Socket.IO sessions kept for recovery, when recovery is on.
    pub fn parked(&self) -> Option<&Arc<Parked>> {
        self.shared.parked.as_ref()
    }

    /// Places `join`, from `worker`, in the log's order: the worker is entered in the
    /// directory for the users it joins, and the answer is queued to it, both under the log's
    /// lock. So every push before the join is in the worker's queue ahead of the answer (or in
    /// what the answer replays), and every push after it reaches the worker behind it.
    ///
    /// In a cluster the join goes to Redis first (see [`Router::place_cluster`]); while Redis
    /// is unreachable it is placed on this node alone ([`Router::place_here`]).
    pub fn join(&self, worker: usize, join: Join) -> Result<(), LoopGone> {
        let s = &*self.shared;
        if let Some(cluster) = &s.cluster {
            // A plain subscribe to users this node holds already needs nothing from Redis: the
            // node is entered for them, and its log has every push routed here since.
            let held_here = join.since == Since::Now
                && join.lookup.is_none()
                && join.users.iter().all(|u| s.directory.workers_of(u) != 0);
            if held_here {
                self.place_local(worker, join);
                return Ok(());
            }
            if !cluster.up() {
                self.place_here(worker, join);
                return Ok(());
            }
            if let Err(req) = cluster.request(Request::Join { worker, join }) {
                if let Request::Join { worker, join } = *req {
                    self.place_here(worker, join);
                }
            }
            return Ok(());
        }
        let Some(log) = &s.log else {
            return Ok(());
        };
        let mut records = log.lock();
        for user in &join.users {
            s.directory.opened(user, worker);
        }
        let joined = Joined::place(&mut records, log.epoch(), join, unix_ms());
        match s.workers.get(worker) {
            // No wake: the worker asking carries out its joins' answers as soon as it placed
            // them (see the runtime's `settle`).
            Some(link) => link
                .tx
                .send(ToWorker::Joined(Box::new(joined)))
                .map_err(|_| LoopGone),
            None => Err(LoopGone),
        }
    }

    /// Carries out one control request; its answer comes on the channel it carries.
    pub fn send(&self, cmd: Command) -> Result<(), LoopGone> {
        let s = &*self.shared;
        match cmd {
            Command::Push {
                target,
                notification,
                reply,
            } => match &s.cluster {
                None => self.push(target, notification, None, reply, true, None),
                Some(_) => self.push_cluster(target, notification, None, reply),
            },
            Command::UserInfo { user_id, reply } => {
                // In a cluster this node's count is gathered first, then Redis is asked for
                // the other nodes'.
                let finish: Box<dyn FnOnce(UserInfo) + Send> = match &s.cluster {
                    None => Box::new(move |info| {
                        let _ = reply.send(info);
                    }),
                    Some(cluster) => {
                        let (cluster, user) = (cluster.clone(), user_id.clone());
                        Box::new(move |info| cluster.presence(user, info, reply))
                    }
                };
                let mask = s.directory.workers_of(&user_id);
                if mask == 0 {
                    finish(UserInfo::local(0));
                    return Ok(());
                }
                let gather = Arc::new(Gather::new(
                    mask.count_ones() as usize,
                    UserInfo::local(0),
                    finish,
                ));
                let user_id: Arc<str> = user_id.into();
                self.to_each(mask, || ToWorker::UserInfo {
                    user_id: user_id.clone(),
                    gather: gather.clone(),
                })
            }
            Command::Metrics { reply } => {
                let shared = self.shared.clone();
                let gather = Arc::new(Gather::new(s.workers.len(), Vec::new(), move |reports| {
                    let _ = reply.send(metrics::render(&reports, &shared.counts()));
                }));
                self.to_all(|| ToWorker::Metrics(gather.clone()))
            }
            Command::Readiness { reply } => {
                let apart = s.cluster.as_ref().is_some_and(|c| !c.up());
                if s.draining.load(Ordering::SeqCst) || apart {
                    let _ = reply.send(false);
                    return Ok(());
                }
                let gather = Arc::new(Gather::new(s.workers.len(), true, move |ready| {
                    let _ = reply.send(ready);
                }));
                self.to_all(|| ToWorker::Readiness(gather.clone()))
            }
            Command::Shutdown => {
                s.draining.store(true, Ordering::SeqCst);
                self.to_all(|| ToWorker::Shutdown)
            }
        }
    }

    /// Checks the push buckets, then sends the push to the workers holding its recipients.
    ///
    /// A user spends a token only when it has a socket somewhere to be handed the push: the
    /// limit is on what reaches a person's devices.
    ///
    /// `logged`: the push enters the log (one node's); `cluster` goes in the answer.
    fn push(
        &self,
        target: Target,
        notification: bytes::Bytes,
        event: Option<Arc<str>>,
        reply: Sender<PushReply>,
        logged: bool,
        cluster: Option<ClusterState>,
    ) -> Result<(), LoopGone> {
        let s = &*self.shared;
        let arrived = Instant::now();
        // Held until the push is in every worker's queue: workers see pushes, and the joins
        // placed between them, in offset order.
        let mut records = s.log.as_ref().filter(|_| logged).map(|log| log.lock());
        if records.as_ref().is_some_and(|r| r.is_closed()) {
            // Saved for the next start: the process is exiting.
            return Err(LoopGone);
        }
        let mut base = PushReply {
            cluster,
            ..PushReply::default()
        };
        let mut except = Vec::new();
        let (mask, target, logged) = match target {
            Target::User(user) => {
                s.pushes_user.fetch_add(1, Ordering::Relaxed);
                let mask = s.directory.workers_of(&user);
                if mask != 0 {
                    if let Err(wait) = s.check(&user, arrived) {
                        tracing::debug!(user = %user, ?wait, "push refused: user over its rate");
                        base.rate_limited = 1;
                        base.retry_after = Some(wait);
                        s.rate_limited_user.fetch_add(1, Ordering::Relaxed);
                        return s.answer_now(base, reply);
                    }
                }
                let logged = records.is_some().then(|| Target::User(user.clone()));
                (mask, Target::User(user), logged)
            }
            Target::Users(list) => {
                s.pushes_users.fetch_add(1, Ordering::Relaxed);
                let mut mask = 0;
                let mut kept = Vec::with_capacity(list.len());
                // Everyone the push is for, connected or not, but those over their rate: what a
                // reconnecting client is owed.
                let mut logged = Vec::new();
                for user in list {
                    let held = s.directory.workers_of(&user);
                    if held == 0 {
                        if records.is_some() {
                            logged.push(user);
                        }
                        continue;
                    }
                    if s.check(&user, arrived).is_err() {
                        base.rate_limited += 1;
                        continue;
                    }
                    mask |= held;
                    if records.is_some() {
                        logged.push(user.clone());
                    }
                    kept.push(user);
                }
                let logged = records.is_some().then_some(Target::Users(logged));
                (mask, Target::Users(kept), logged)
            }
            Target::All => {
                s.pushes_broadcast.fetch_add(1, Ordering::Relaxed);
                if s.users.is_some() {
                    // The sockets of users over their rate are passed over by the broadcast.
                    s.directory.for_each_user(|user| {
                        if s.check(user, arrived).is_err() {
                            except.push(user.to_owned());
                        }
                    });
                    base.rate_limited = except.len();
                }
                (all_workers(s.workers.len()), Target::All, Some(Target::All))
            }
        };
        s.rate_limited_user
            .fetch_add(base.rate_limited as u64, Ordering::Relaxed);
        let record = match (records.as_mut(), logged) {
            (Some(records), Some(logged)) => {
                let record =
                    records.append(logged, except.clone(), notification.clone(), unix_ms());
                base.offset = Some(record.offset.clone());
                Some(record)
            }
            _ => None,
        };
        if mask == 0 {
            return s.answer_now(base, reply);
        }
        let mut job = PushJob::new(
            target,
            notification,
            except,
            arrived,
            mask.count_ones() as usize,
            base,
            reply,
        );
        job.record = record;
        job.event = event;
        let job = Arc::new(job);
        // Queued under the lock, which is what orders pushes and joins; the workers are woken
        // after it is released, so that the other control threads are not kept waiting on a
        // system call.
        let workers = mask.count_ones();
        let mut took = 0u64;
        for w in workers_in(mask) {
            let queued = s
                .workers
                .get(w)
                .is_some_and(|link| link.tx.send(ToWorker::Push(job.clone())).is_ok());
            took |= (queued as u64) << w;
        }
        if took == 0 {
            // Answered 503: a push refused must not be replayed later.
            if let (Some(records), Some(record)) = (records.as_mut(), job.record.as_ref()) {
                records.unappend(record.seq);
            }
        }
        drop(records);
        for w in workers_in(took) {
            // A worker that stopped after the push reached its queue never carries it out.
            if s.workers
                .get(w)
                .is_none_or(|link| link.waker.wake().is_err())
            {
                took &= !(1u64 << w);
            }
        }
        let gone = workers - took.count_ones();
        if gone == workers {
            return Err(LoopGone);
        }
        // Some workers stopped (shutdown): the others delivered the push, which is logged, so
        // it is answered as delivered; the stopped ones count nothing.
        for _ in 0..gone {
            job.counted(0);
            let _ = job.written(arrived);
        }
        Ok(())
    }

    /// A push in a cluster: logged and routed through Redis, or served here alone while Redis
    /// is unreachable.
    pub(crate) fn push_cluster(
        &self,
        target: Target,
        notification: bytes::Bytes,
        event: Option<Arc<str>>,
        reply: Sender<PushReply>,
    ) -> Result<(), LoopGone> {
        let Some(cluster) = self.shared.cluster.as_ref().filter(|c| c.up()) else {
            return self.push_here(target, notification, event, reply);
        };
        let req = Request::Push {
            target,
            notification,
            event,
            reply,
        };
        match cluster.request(req).map_err(|req| *req) {
            Err(Request::Push {
                target,
                notification,
                event,
                reply,
            }) => self.push_here(target, notification, event, reply),
            _ => Ok(()),
        }
    }

    /// A push served by this node alone, Redis being unreachable: delivered to its own
    /// sockets, not logged, answered `"cluster":"degraded"`.
    pub(crate) fn push_here(
        &self,
        target: Target,
        notification: bytes::Bytes,
        event: Option<Arc<str>>,
        reply: Sender<PushReply>,
    ) -> Result<(), LoopGone> {
        if let Some(cluster) = &self.shared.cluster {
            cluster.count_degraded();
        }
        self.push(
            target,
            notification,
            event,
            reply,
            false,
            Some(ClusterState::Degraded),
        )
    }

    /// Counts a push Redis logged and routed for this node's control API.
    pub(crate) fn count_push(&self, target: &Target, rate_limited: usize) {
        let s = &*self.shared;
        let counter = match target {
            Target::User(_) => &s.pushes_user,
            Target::Users(_) => &s.pushes_users,
            Target::All => &s.pushes_broadcast,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        s.rate_limited_user
            .fetch_add(rate_limited as u64, Ordering::Relaxed);
    }

    /// The log of a node in a cluster: the pushes Redis routed to it. `None` only without
    /// recovery, which a cluster does not run without.
    pub(crate) fn cluster_log(&self) -> &Arc<Log> {
        self.shared
            .log
            .as_ref()
            .expect("a cluster node runs with its log (checked at start)")
    }

    /// A push the cluster's feed brought, in the stream's order: kept in this node's log and
    /// handed to the workers holding its users. One already fed is dropped.
    pub(crate) fn deliver(&self, entry: Entry) {
        let s = &*self.shared;
        let Some(log) = &s.log else {
            return;
        };
        let arrived = Instant::now();
        let mut records = log.lock();
        let Some(record) = records.insert(
            entry.seq,
            entry.target.clone(),
            entry.notification.clone(),
            entry.event.clone(),
            unix_ms(),
        ) else {
            return;
        };
        let mask = match &entry.target {
            Target::User(u) => s.directory.workers_of(u),
            Target::Users(list) => list.iter().fold(0, |m, u| m | s.directory.workers_of(u)),
            Target::All => all_workers(s.workers.len()),
        };
        if mask == 0 {
            return;
        }
        let job = Arc::new(PushJob::unanswered(
            entry.target,
            entry.notification,
            arrived,
            mask.count_ones() as usize,
            record,
        ));
        for w in workers_in(mask) {
            if let Some(link) = s.workers.get(w) {
                let _ = link.tx.send(ToWorker::Push(job.clone()));
            }
        }
        drop(records);
        for w in workers_in(mask) {
            if let Some(link) = s.workers.get(w) {
                let _ = link.waker.wake();
            }
        }
    }

    /// Places a join Redis answered, once this node's feed has brought every push up to its
    /// `head`: `missed` is what the stream held after the client's offset; what the feed
    /// brought after the head (before this moment) is handed after it; what comes later
    /// reaches the worker behind the answer, as on one node.
    pub(crate) fn place_cluster(
        &self,
        worker: usize,
        join: Join,
        epoch: u64,
        head: u64,
        missed: Option<Result<Vec<Arc<Record>>, Unrecoverable>>,
    ) {
        let s = &*self.shared;
        let log = self.cluster_log();
        let records = log.lock();
        for user in &join.users {
            s.directory.opened(user, worker);
        }
        let mut users = join.users.clone();
        users.extend(join.held.iter().cloned());
        // Broadcasts too: one that reached this node meanwhile was not handed to a Socket.IO
        // session being taken back (it has no socket id until its answer), and a raw socket
        // that recovers lets go of those it held. The worker skips what a member was handed
        // live.
        let after = records.after(head, |r| r.reaches(&users));
        let joined = Joined {
            join,
            head,
            offset: offset_string(epoch, head).into(),
            missed,
            after,
        };
        if let Some(link) = s.workers.get(worker) {
            let _ = link.send(ToWorker::Joined(Box::new(joined)));
        }
        drop(records);
    }

    /// Places a join without Redis (unreachable, or the join failed there): the worker is
    /// entered for its users here, and in Redis once it can be (see [`Cluster::unentered`]); a
    /// client's offset cannot be honoured (`recovered: false`).
    pub(crate) fn place_here(&self, worker: usize, join: Join) {
        if let Some(cluster) = &self.shared.cluster {
            cluster.unentered(&join.users);
        }
        self.place_local(worker, join);
    }

    /// [`Router::place_here`] for users this node is entered in Redis for already.
    fn place_local(&self, worker: usize, join: Join) {
        let s = &*self.shared;
        let log = self.cluster_log();
        let records = log.lock();
        for user in &join.users {
            s.directory.opened(user, worker);
        }
        let head = records.head();
        let missed = match join.since {
            Since::Now => None,
            _ => Some(Err(Unrecoverable::Unavailable)),
        };
        let joined = Joined {
            join,
            head,
            offset: offset_string(records.epoch(), head).into(),
            missed,
            after: Vec::new(),
        };
        if let Some(link) = s.workers.get(worker) {
            let _ = link.send(ToWorker::Joined(Box::new(joined)));
        }
        drop(records);
    }

    /// Every worker closes its clients for them to reconnect (see [`ToWorker::Reconnect`]).
    pub fn reconnect_all(&self) {
        let _ = self.to_all(|| ToWorker::Reconnect);
    }

    fn to_all(&self, msg: impl FnMut() -> ToWorker) -> Result<(), LoopGone> {
        self.to_each(all_workers(self.shared.workers.len()), msg)
    }

    /// Sends a message to every worker in `mask`; fails if any is gone.
    fn to_each(&self, mask: u64, mut msg: impl FnMut() -> ToWorker) -> Result<(), LoopGone> {
        let mut result = Ok(());
        for w in workers_in(mask) {
            if let Some(link) = self.shared.workers.get(w) {
                if link.send(msg()).is_err() {
                    result = Err(LoopGone);
                }
            }
        }
        result
    }
}

impl Shared {
    /// Takes a token from `user`'s push bucket, or says how long until it has one.
    fn check(&self, user: &str, now: Instant) -> Result<(), std::time::Duration> {
        match &self.users {
            None => Ok(()),
            Some(users) => users
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .check(user, now),
        }
    }

    /// Answers a push no worker needs to see.
    fn answer_now(&self, reply: PushReply, tx: Sender<PushReply>) -> Result<(), LoopGone> {
        let _ = tx.send(reply);
        Ok(())
    }

    fn counts(&self) -> RouterCounts {
        let (log_records, log_bytes) = self.log.as_ref().map_or((0, 0), |l| l.lock().size());
        RouterCounts {
            pushes_user: self.pushes_user.load(Ordering::Relaxed),
            pushes_users: self.pushes_users.load(Ordering::Relaxed),
            pushes_broadcast: self.pushes_broadcast.load(Ordering::Relaxed),
            rate_limited_user: self.rate_limited_user.load(Ordering::Relaxed),
            users: self.directory.len(),
            log_records,
            log_bytes,
            parked: self.parked.as_ref().map_or(0, |p| p.len()),
            cluster: self.cluster.as_ref().map(|c| c.counts()),
        }
    }
}

/// Milliseconds since the Unix epoch: the log's clock, which outlives a restart.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The mask naming workers `0..n`.
fn all_workers(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}
