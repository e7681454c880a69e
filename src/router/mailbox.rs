//! What the router hands a worker, and how the workers' answers to one request are gathered
//! into one.
//!
//! A request that several workers answer (a push, a user's socket count, the metrics) carries
//! one shared gatherer: each worker adds its part; the last one to add finishes the answer and
//! sends it on the request's one-shot channel. No worker waits for another.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Sender;
use mio::net::TcpStream;

use crate::command::{PushReply, Target, UserInfo, MAX_DEVICES};
use crate::core::conn::SocketId;
use crate::metrics::WorkerReport;
use crate::router::log::{offset_string, Record, Records, Unrecoverable};

/// A message to one worker.
pub enum ToWorker {
    /// Hand this notification to the worker's recipients of its target.
    Push(Arc<PushJob>),
    /// Count the worker's sockets of a user.
    UserInfo {
        user_id: Arc<str>,
        gather: Arc<Gather<UserInfo>>,
    },
    /// The worker's counters and gauges.
    Metrics(Arc<Gather<Vec<WorkerReport>>>),
    /// Whether the worker takes new clients.
    Readiness(Arc<Gather<bool>>),
    /// A connection the acceptor took, for this worker to serve from now on.
    Accepted(TcpStream, std::net::SocketAddr),
    /// The log's answer to one of this worker's joins: every push before it was queued ahead
    /// of it, every push after it comes behind it.
    Joined(Box<Joined>),
    /// Stop accepting, close every client with 1001, flush, and return.
    Shutdown,
    /// The log began a new epoch under connected clients (a cluster's Redis came back without
    /// its data): close every client, over `--drain-time`, with a code that makes it
    /// reconnect, and keep no Socket.IO session, so that each is told `recovered: false`.
    Reconnect,
    /// The client of this worker's Engine.IO session with this id took its Socket.IO session
    /// over on another worker: close it (it no longer holds the `pid`, so it keeps nothing).
    TakenOver(crate::core::conn::SocketId),
}

/// One push, shared by every worker it goes to.
pub struct PushJob {
    pub target: Target,
    /// The serialized notification; every wire form is built from these bytes.
    pub notification: Bytes,
    /// Users whose push bucket was empty (a broadcast under `--user-rate`): their sockets are
    /// passed over.
    pub except: Vec<String>,
    /// When the router took the push: the start of `herald_fanout_seconds`.
    pub arrived: Instant,
    /// The push as the log keeps it, when recovery is on: its offset goes in every frame.
    pub record: Option<Arc<Record>>,
    /// The event's name when it is not `notification` (a push from the Redis emitter).
    pub event: Option<Arc<str>>,
    /// Workers yet to count their recipients; the last one answers.
    to_count: AtomicUsize,
    /// Workers yet to write their recipients' frames; the last one records the fan-out time.
    to_write: AtomicUsize,
    sockets: AtomicUsize,
    /// The router's part of the answer (users it skipped) and where the answer goes.
    answer: Mutex<Option<(PushReply, Sender<PushReply>)>>,
}

impl PushJob {
    /// A push for `workers` workers; `base` holds what the router counted already.
    pub fn new(
        target: Target,
        notification: Bytes,
        except: Vec<String>,
        arrived: Instant,
        workers: usize,
        base: PushReply,
        reply: Sender<PushReply>,
    ) -> Self {
        PushJob {
            target,
            notification,
            except,
            arrived,
            record: None,
            event: None,
            to_count: AtomicUsize::new(workers),
            to_write: AtomicUsize::new(workers),
            sockets: AtomicUsize::new(0),
            answer: Mutex::new(Some((base, reply))),
        }
    }

    /// A push no one waits to be answered about: one the cluster's feed brought.
    pub fn unanswered(
        target: Target,
        notification: Bytes,
        arrived: Instant,
        workers: usize,
        record: Arc<Record>,
    ) -> Self {
        PushJob {
            target,
            notification,
            except: Vec::new(),
            arrived,
            event: record.event.clone(),
            record: Some(record),
            to_count: AtomicUsize::new(workers),
            to_write: AtomicUsize::new(workers),
            sockets: AtomicUsize::new(0),
            answer: Mutex::new(None),
        }
    }

    /// The push's offset and sequence number in the log, when it has one.
    pub fn offset(&self) -> Option<(u64, &Arc<str>)> {
        self.record.as_ref().map(|r| (r.seq, &r.offset))
    }

    /// A worker handed the push to `sockets` of its sockets (queued, not yet written). The last
    /// worker to count sends the answer.
    pub fn counted(&self, sockets: usize) {
        self.sockets.fetch_add(sockets, Ordering::SeqCst);
        if self.to_count.fetch_sub(1, Ordering::SeqCst) == 1 {
            let answer = self.answer.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some((mut reply, tx)) = answer {
                reply.sockets = self.sockets.load(Ordering::SeqCst);
                let _ = tx.send(reply);
            }
        }
    }

    /// A worker wrote its recipients' frames (or queued them behind a full socket buffer). For
    /// the last worker to do so, the time since the push arrived.
    pub fn written(&self, now: Instant) -> Option<Duration> {
        (self.to_write.fetch_sub(1, Ordering::SeqCst) == 1)
            .then(|| now.saturating_duration_since(self.arrived))
    }
}

/// Where a client's recovery starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// Nowhere: a plain subscribe, a fresh CONNECT.
    Now,
    /// The offset the client gave, as it gave it.
    Client(String),
    /// A sequence number of this log's epoch: a recovered Socket.IO session whose client had
    /// seen no offset, from the push that was newest when it first connected.
    Seq(u64),
}

/// How a join is answered once the log has placed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinReply {
    /// The raw protocol's `subscribed`; `list` when it asked with `userIds`.
    Raw { list: bool },
    /// Socket.IO's `subscribed` event, and the ack when one was asked for.
    Event { ack: Option<u64>, list: bool },
    /// Socket.IO's CONNECT reply. `sid` and `pid` are the session's socket id and private id,
    /// new or taken back; `recovering` when they were taken back.
    Connect {
        sid: SocketId,
        pid: SocketId,
        recovering: bool,
    },
}

/// A member joining rooms while recovery is on: placed in the log's order by
/// [`crate::router::Router::join`] before it takes effect, so that what it missed is replayed
/// exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// The member's slab key, and its id (a connection's, or a session's Engine.IO id): the
    /// key may have been given to another member by the time the answer comes.
    pub member: usize,
    pub id: SocketId,
    /// The users it joins.
    pub users: Vec<String>,
    /// The users it held already.
    pub held: Vec<String>,
    pub since: Since,
    pub reply: JoinReply,
    /// In a cluster: a CONNECT whose `pid` no session kept on this node has; the cluster looks
    /// for it among those other nodes kept before the join is placed.
    pub lookup: Option<Lookup>,
}

/// A session to look for on the other nodes of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub pid: String,
    /// The `sub` of the CONNECT's token, when JWT auth is on: the session must be that user's.
    pub user: Option<String>,
    /// The offset the client gave.
    pub offset: Option<String>,
}

impl Join {
    /// The join of a session taken back: `kept`, under `pid`, with the offset the client gave
    /// (from where it joined when it gave none).
    pub fn taken_back(
        member: usize,
        id: SocketId,
        kept: crate::router::parked::Session,
        pid: SocketId,
        offset: Option<String>,
    ) -> Option<Join> {
        let sid: SocketId = kept.sid.as_bytes().try_into().ok()?;
        Some(Join {
            member,
            id,
            users: kept.users,
            held: Vec::new(),
            since: offset.map_or(Since::Seq(kept.joined), Since::Client),
            reply: JoinReply::Connect {
                sid,
                pid,
                recovering: true,
            },
            lookup: None,
        })
    }
}

/// A join placed in the log.
#[derive(Debug)]
pub struct Joined {
    pub join: Join,
    /// The newest push at the join, its sequence number and offset.
    pub head: u64,
    pub offset: Arc<str>,
    /// For a join with an offset: the pushes after it that reach the member's users (or
    /// everyone), oldest first; or why the offset cannot be honoured.
    pub missed: Option<Result<Vec<Arc<Record>>, Unrecoverable>>,
    /// Pushes after the head that reached the node before the join was placed (a cluster's
    /// feed runs ahead of the join's answer): handed after `missed`, whatever the offset.
    pub after: Vec<Arc<Record>>,
}

impl Joined {
    /// Places `join` in `log` (its epoch `epoch`) at `now_ms`.
    pub fn place(log: &mut Records, epoch: u64, join: Join, now_ms: u64) -> Joined {
        let head = log.head();
        let mut users = join.users.clone();
        users.extend(join.held.iter().cloned());
        let missed = match &join.since {
            Since::Now => None,
            Since::Client(offset) => Some(log.since(offset, now_ms, |r| r.reaches(&users))),
            Since::Seq(seq) => {
                let offset = offset_string(epoch, *seq);
                Some(log.since(&offset, now_ms, |r| r.reaches(&users)))
            }
        };
        Joined {
            join,
            head,
            offset: offset_string(epoch, head).into(),
            missed,
            after: Vec::new(),
        }
    }
}

/// Parts of one answer, merged as they come.
pub trait Merge {
    fn merge(&mut self, part: Self);
}

impl Merge for UserInfo {
    fn merge(&mut self, part: Self) {
        self.sockets += part.sockets;
        self.addresses.extend(part.addresses);
        self.more_devices |= part.more_devices;
        let room = MAX_DEVICES.saturating_sub(self.devices.len());
        self.more_devices |= part.devices.len() > room;
        self.devices.extend(part.devices.into_iter().take(room));
    }
}

impl Merge for bool {
    /// Ready when every worker is.
    fn merge(&mut self, part: Self) {
        *self &= part;
    }
}

impl<T> Merge for Vec<T> {
    fn merge(&mut self, part: Self) {
        self.extend(part);
    }
}

type Finish<T> = Box<dyn FnOnce(T) + Send>;

/// Gathers `parts` answers into one and hands it to `finish` when the last arrives. Dropped
/// unfinished (a worker stopped), it drops `finish` and with it the request's channel: the
/// waiting side sees the sender gone.
pub struct Gather<T> {
    state: Mutex<Option<(T, usize, Finish<T>)>>,
}

impl<T: Merge> Gather<T> {
    pub fn new(parts: usize, init: T, finish: impl FnOnce(T) + Send + 'static) -> Self {
        Gather {
            state: Mutex::new(Some((init, parts, Box::new(finish)))),
        }
    }

    /// Adds one worker's part.
    pub fn add(&self, part: T) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some((acc, left, _)) = state.as_mut() else {
            return;
        };
        acc.merge(part);
        *left -= 1;
        if *left == 0 {
            if let Some((acc, _, finish)) = state.take() {
                drop(state);
                finish(acc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_part_finishes_the_answer() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let g = Gather::new(3, UserInfo::local(0), move |u| {
            let _ = tx.send(u);
        });
        g.add(UserInfo::local(2));
        g.add(UserInfo::local(0));
        assert!(rx.try_recv().is_err());
        g.add(UserInfo::local(5));
        assert_eq!(rx.try_recv().unwrap().sockets, 7);
    }

    #[test]
    fn an_unfinished_gather_drops_its_channel() {
        let (tx, rx) = crossbeam_channel::bounded::<bool>(1);
        let g = Gather::new(2, true, move |r| {
            let _ = tx.send(r);
        });
        g.add(true);
        drop(g);
        assert!(matches!(rx.recv(), Err(crossbeam_channel::RecvError)));
    }

    #[test]
    fn a_push_is_answered_by_the_last_count_and_timed_by_the_last_write() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let t0 = Instant::now();
        let base = PushReply {
            rate_limited: 1,
            ..PushReply::default()
        };
        let job = PushJob::new(Target::All, Bytes::new(), Vec::new(), t0, 2, base, tx);
        job.counted(3);
        assert!(rx.try_recv().is_err());
        job.counted(4);
        let reply = rx.try_recv().unwrap();
        assert_eq!((reply.sockets, reply.rate_limited), (7, 1));
        assert_eq!(job.written(t0), None);
        assert_eq!(
            job.written(t0 + Duration::from_millis(3)),
            Some(Duration::from_millis(3))
        );
    }
}
