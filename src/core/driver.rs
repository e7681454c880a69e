//! A worker's state driven by hand, without a socket or a clock: what the unit tests and the
//! `core_worker` fuzz target use. Bytes go in with [`Driver::read`], time passes with
//! [`Driver::advance`], pushes arrive with [`Driver::push`], and what each connection would be
//! written is read back from its queue with [`Driver::written`]. After every step the driver
//! does what the runtime does after a call: writes what cannot wait, forgets the sockets of
//! removed connections and the connections handed to another worker.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::unbounded;

use crate::command::{PushReply, Target};
use crate::config::Config;
use crate::core::conn::Conn;
use crate::core::session::Transport;
use crate::core::worker::{lock_ips, Entry, State};
use crate::limits::{IpLimiter, Limits};
use crate::router::log::Log;
use crate::router::mailbox::{Joined, PushJob};
use crate::router::parked::Parked;

/// The address every driven connection comes from.
pub const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The wall clock the driven state starts at: Unix time 1,800,000,000 (2027-01-15).
pub const UNIX_START: Duration = Duration::from_secs(1_800_000_000);

/// One worker's state and the time it has been given.
pub struct Driver {
    pub(crate) state: State,
    pub now: Instant,
    /// Connections handed to another worker, with the key they had and the worker.
    pub handed: Vec<(usize, Box<Conn>, usize)>,
    /// The recovery log, when the configuration turns recovery on: joins are placed in it and
    /// answered at once, as the router and the runtime do between two turns.
    pub log: Option<Log>,
}

impl Driver {
    /// Worker `worker` of `workers`, configured by `config`.
    pub fn new(config: Config, worker: usize, workers: usize) -> Driver {
        let now = Instant::now();
        let limits = Limits::from(&config);
        let ips = IpLimiter::new(limits.ip, now);
        let sessions = IpLimiter::new(limits.sessions, now);
        let (log, parked) = if config.recovery {
            let log = Log::new(config.recovery_window, config.recovery_max_bytes);
            (Some(log), Some(Arc::new(Parked::default())))
        } else {
            (None, None)
        };
        let verifier = config
            .verifier()
            .expect("JWT settings that make a verifier");
        let state = State::new(
            config,
            verifier,
            worker,
            workers,
            Arc::new(Mutex::new(ips)),
            Arc::new(Mutex::new(sessions)),
            parked,
            now,
            UNIX_START,
        )
        .expect("a state the driver's settings allow");
        Driver {
            state,
            now,
            handed: Vec::new(),
            log,
        }
    }

    /// One worker of one, with the test configuration (no limits, no auth).
    pub fn single() -> Driver {
        let mut c = Config::for_tests();
        c.workers = 1;
        Driver::new(c, 0, 1)
    }

    /// A new connection from [`PEER`]; `None` when the per-address caps refuse it.
    pub fn connect(&mut self) -> Option<usize> {
        lock_ips(&self.state.ips).on_connect(PEER, self.now).ok()?;
        Some(self.state.open_conn(PEER, true, self.now))
    }

    /// `bytes` arrive on `k`.
    pub fn read(&mut self, k: usize, bytes: &[u8]) {
        self.state.io.now = self.now;
        self.state.on_bytes(k, bytes, self.now);
        self.settle();
    }

    /// The peer of connection `k` closed its side (nothing when `k` is not a connection: only
    /// connections have sockets).
    pub fn peer_closed(&mut self, k: usize) {
        if self.state.io.conn_mut(k).is_none() {
            return;
        }
        self.state.peer_closed(k);
        self.settle();
    }

    /// Time passes by `by` and the timers are swept; returns the earliest deadline left.
    pub fn advance(&mut self, by: Duration) -> Option<Instant> {
        self.now += by;
        self.state.io.now = self.now;
        let next = self.state.sweep(self.now);
        self.settle();
        next
    }

    /// A push of `notification` (JSON) to `target`; returns how many sockets took it.
    pub fn push(&mut self, target: Target, notification: &str) -> usize {
        let (tx, _rx) = unbounded();
        let notification = Bytes::from(notification.to_owned());
        let mut job = PushJob::new(
            target.clone(),
            notification.clone(),
            Vec::new(),
            self.now,
            1,
            PushReply::default(),
            tx,
        );
        if let Some(log) = &self.log {
            let now_ms = self.state.unix(self.now).as_millis() as u64;
            job.record = Some(log.lock().append(target, Vec::new(), notification, now_ms));
        }
        self.state.io.now = self.now;
        let sockets = self.state.push(&job, self.now);
        self.settle();
        sockets
    }

    /// Shutdown begins: the first batch of clients is told 1012.
    pub fn shutdown(&mut self) {
        self.state.io.now = self.now;
        self.state.begin_shutdown(self.now);
        self.settle();
    }

    /// The offset of push `seq` in the recovery log, as clients see it.
    pub fn offset(&self, seq: u64) -> String {
        let epoch = self.log.as_ref().map_or(0, |l| l.epoch());
        crate::router::log::offset_string(epoch, seq)
    }

    /// The ids of the live Engine.IO sessions, in order.
    pub fn session_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .state
            .sids
            .keys()
            .map(|sid| String::from_utf8_lossy(sid).into_owned())
            .collect();
        ids.sort();
        ids
    }

    /// Whether slot `k` is empty.
    pub fn is_gone(&self, k: usize) -> bool {
        self.state.io.entries.get(k).is_none()
    }

    /// Everything queued for `k`, as a socket that takes it all would be written it.
    pub fn written(&mut self, k: usize) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(k, &mut out);
        out
    }

    /// Writes what `k` has queued to `socket`; a socket that refuses bytes (`WouldBlock`)
    /// leaves the rest queued, as the kernel's buffer does.
    pub fn write_to(&mut self, k: usize, socket: &mut impl std::io::Write) {
        if let Some(conn) = self.state.io.conn_mut(k) {
            if conn.flush(socket).is_err() {
                self.state.io.kill(k);
                self.settle();
            }
        }
    }

    /// The end of a turn: connections listed for writing are taken off the list, in order,
    /// and their keys returned (their bytes stay queued for [`Driver::written`]).
    pub fn end_turn(&mut self) -> Vec<usize> {
        let mut listed = Vec::new();
        while let Some(k) = self.state.io.next_corked() {
            listed.push(k);
        }
        listed
    }

    /// What the runtime does after every call: closed entries leave (and the sockets the state
    /// names are forgotten), connections handed to another worker are kept aside.
    fn settle(&mut self) {
        while !self.state.joins.is_empty() {
            for join in std::mem::take(&mut self.state.joins) {
                let Some(log) = &self.log else {
                    continue;
                };
                let now_ms = self.state.unix(self.now).as_millis() as u64;
                let joined = Joined::place(&mut log.lock(), log.epoch(), join, now_ms);
                self.state.on_joined(joined, self.now);
            }
        }
        self.state.reap(self.now);
        self.state.io.write_now.clear();
        self.state.io.closed.clear();
        self.handed.append(&mut self.state.handed);
        // Another worker's sessions to close: there is no other worker here.
        self.state.taken_over.clear();
    }

    /// Checks what must hold between calls: queue byte counts match the queues, every room
    /// member is a live entry, a session and its connections name each other, and the caps
    /// count each connection (those handed to another worker stay counted as they move) and
    /// each session once.
    pub fn check(&self) {
        let entries = &self.state.io.entries;
        let sessions = entries
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Session(_)))
            .count();
        assert_eq!(
            lock_ips(&self.state.ips).total(),
            entries.len() - sessions + self.handed.len(),
            "connections counted against --max-connections"
        );
        assert_eq!(
            lock_ips(&self.state.sessions).total(),
            sessions,
            "sessions counted against --max-sessions"
        );
        if let Some(parked) = &self.state.parked {
            assert!(
                parked.connected_len() <= sessions,
                "connected sessions known beyond the sessions there are"
            );
        }
        self.state.rooms.check_invariants();
        for (_, members) in self.state.rooms.iter() {
            for &k in members {
                assert!(entries.contains(k), "room member {k} is not an entry");
            }
        }
        for (k, entry) in entries {
            match entry {
                Entry::Conn(c) => {
                    let sum: usize = c.out.iter().map(Bytes::len).sum();
                    assert_eq!(c.queued, sum, "conn {k}'s queued bytes");
                    if let Some(s) = c.session {
                        assert!(
                            matches!(entries.get(s), Some(Entry::Session(_))),
                            "conn {k} names session {s}, not a session"
                        );
                    }
                }
                Entry::Session(s) => {
                    let sum: usize = s.queue.iter().map(Bytes::len).sum();
                    assert_eq!(s.queued, sum, "session {k}'s queued bytes");
                    let carriers = match s.transport {
                        Transport::Polling { get } => [get, None],
                        Transport::Upgrading { get, ws } => [get, Some(ws)],
                        Transport::WebSocket { ws } => [Some(ws), None],
                    };
                    for c in carriers.into_iter().flatten() {
                        assert!(
                            matches!(entries.get(c), Some(Entry::Conn(conn)) if conn.session == Some(k)),
                            "session {k} names conn {c}, which does not name it"
                        );
                    }
                }
            }
        }
    }
}
