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

use crate::command::{Command, LoopGone, PushReply, Target, UserInfo};
use crate::limits::UserBuckets;
use crate::metrics::{self, RouterCounts};
use directory::{workers_in, Directory};
use log::Log;
use mailbox::{Gather, Join, Joined, PushJob, ToWorker};
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
}

impl Router {
    pub fn new(
        workers: Arc<[WorkerLink]>,
        directory: Arc<Directory>,
        users: Option<UserBuckets>,
        log: Option<Arc<Log>>,
        parked: Option<Arc<Parked>>,
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
            }),
        }
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
    pub fn join(&self, worker: usize, join: Join) -> Result<(), LoopGone> {
        let s = &*self.shared;
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
            } => self.push(target, notification, reply),
            Command::UserInfo { user_id, reply } => {
                let mask = s.directory.workers_of(&user_id);
                if mask == 0 {
                    let _ = reply.send(UserInfo { sockets: 0 });
                    return Ok(());
                }
                let gather = Arc::new(Gather::new(
                    mask.count_ones() as usize,
                    UserInfo { sockets: 0 },
                    move |info| {
                        let _ = reply.send(info);
                    },
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
                if s.draining.load(Ordering::SeqCst) {
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
    fn push(
        &self,
        target: Target,
        notification: bytes::Bytes,
        reply: Sender<PushReply>,
    ) -> Result<(), LoopGone> {
        let s = &*self.shared;
        let arrived = Instant::now();
        // Held until the push is in every worker's queue: workers see pushes, and the joins
        // placed between them, in offset order.
        let mut records = s.log.as_ref().map(|log| log.lock());
        if records.as_ref().is_some_and(|r| r.is_closed()) {
            // Saved for the next start: the process is exiting.
            return Err(LoopGone);
        }
        let mut base = PushReply::default();
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
        let job = Arc::new(job);
        // Queued under the lock, which is what orders pushes and joins; the workers are woken
        // after it is released, so that the other control threads are not kept waiting on a
        // system call.
        let mut sent = Ok(());
        for w in workers_in(mask) {
            if let Some(link) = s.workers.get(w) {
                if link.tx.send(ToWorker::Push(job.clone())).is_err() {
                    sent = Err(LoopGone);
                }
            }
        }
        if sent.is_err() {
            // Answered 503: a push refused must not be replayed later.
            if let (Some(records), Some(record)) = (records.as_mut(), job.record.as_ref()) {
                records.unappend(record.seq);
            }
        }
        drop(records);
        for w in workers_in(mask) {
            if let Some(link) = s.workers.get(w) {
                if link.waker.wake().is_err() {
                    sent = Err(LoopGone);
                }
            }
        }
        sent
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
