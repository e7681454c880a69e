//! A worker's runtime: one thread, one `mio::Poll`, the sockets of this worker's connections,
//! and the [`State`] they feed. It only polls, reads, writes and wakes: every decision is the
//! state's (`crate::core::worker`).
//!
//! One turn: read every ready socket into the state, take the connections other workers hand
//! over, carry out the queued commands, sweep the timers when due, tell the directory which
//! rooms opened and closed, then write each connection with output once (one `writev` of all
//! its frames), at most [`FLUSHES_PER_TURN`] of them; what would block stays queued, and
//! `WRITABLE` interest is registered only while something is. It sleeps until the state's
//! earliest deadline, or not at all while work is left.

use std::io::{self, Read, Write};
use std::mem;
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::collections::{HashMap, VecDeque};
use tracing::{debug, info, warn};

use crate::auth::Verifier;
use crate::command::{LoopGone, UserInfo};
use crate::config::Config;
use crate::core::conn::{Conn, Phase};
use crate::core::timers::{max_sweep_gap, next_sweep};
use crate::core::worker::{count_refusal, lock_ips, Entry, State};
use crate::limits::{IpLimiter, IpRefusal};
use crate::log_limit::{peer_warn, PeerFault};
use crate::rooms::RoomEvent;
use crate::router::directory::Directory;
use crate::router::mailbox::{PushJob, ToWorker};
use crate::router::{Router, WorkerLink};
use crate::server::tls::Tls;
use crate::server::transport::Socket;
use crate::ws::handshake::{self, HandshakeError};
use crate::ws::CloseCode;

pub const LISTENER: Token = Token(usize::MAX - 1);
pub const WAKER: Token = Token(usize::MAX - 2);
/// Bytes read from a socket per `read` call, into one buffer shared by all connections.
const READ_CHUNK: usize = 64 * 1024;
/// Reads one connection may take per wake-up before others get their turn.
const READS_PER_TURN: usize = 16;
/// Commands one turn carries out before its frames are written and sockets read again: a
/// flood of pushes cannot starve reads, pings and the writes themselves.
const COMMANDS_PER_TURN: usize = 64;
/// Connections one turn writes. A broadcast to thousands of sockets is written over several
/// turns that poll without sleeping, so reads, pings and new commands are taken between them;
/// a push arriving meanwhile joins the frames still waiting, and each socket gets both in one
/// `writev`.
const FLUSHES_PER_TURN: usize = 64;
/// Refused connections kept draining until their client closes (see [`refuse`]);
/// past this many, a refused connection is closed at once.
const MAX_REFUSED_DRAINING: usize = 1024;
pub struct EventLoop {
    poll: Poll,
    /// `None` once shutdown began, and on a worker that does not accept (`--accept handoff`
    /// gives the listener to worker 0 alone).
    listener: Option<TcpListener>,
    /// Accepting failed for want of resources (file descriptors); retried at the next sweep.
    accept_paused: bool,
    rx: Receiver<ToWorker>,
    /// Connections other workers hand this one: those carrying requests for its sessions.
    handovers: Receiver<Handover>,
    /// Where to hand another worker a connection that carries a request for its session.
    handover: Arc<[Sender<Handover>]>,
    /// Every worker's channel, for dealing accepted connections out (`--accept handoff`).
    links: Arc<[WorkerLink]>,
    /// Where this worker's rooms opening and closing are told.
    directory: Arc<Directory>,
    /// The socket of each connection, by its key in the state's slab (`None` for sessions and
    /// free keys): the state never touches a socket.
    sockets: Vec<Option<Socket>>,
    /// The listener's TLS (`--tls-cert`): every accepted connection starts a session of it.
    tls: Option<Arc<Tls>>,
    /// The worker the next accepted connection goes to.
    next_worker: usize,
    read_buf: Box<[u8]>,
    /// Connections that still had bytes to read when their turn ended.
    more_to_read: Vec<usize>,
    /// Connections refused at accept, answered and shut for writing, read until their client
    /// closes or the deadline passes; never in the slab.
    refused: Vec<(TcpStream, Instant)>,
    /// Pushes whose frames wait to be written, each with the [`Io::corked_total`] its
    /// delivery reached: it is written once [`Io::flushed_total`] gets there.
    unwritten_pushes: VecDeque<(Arc<PushJob>, u64)>,
    router: Router,
    /// Users with joins of this worker's members placed in the log and not yet answered: the
    /// directory keeps this worker for them even if their room here closes meanwhile.
    pins: HashMap<String, usize>,
    /// Joins placed in the log whose answers have not been carried out yet.
    joins_waiting: usize,
    state: State,
}
/// What one worker shares with the others.
pub struct WorkerShared {
    /// This worker's index, `0..workers`; it is the first character of its sessions' ids.
    pub worker: usize,
    pub links: Arc<[WorkerLink]>,
    /// Where to hand each worker a connection: indexed like `links`.
    pub handover: Arc<[Sender<Handover>]>,
    pub handovers: Receiver<Handover>,
    pub directory: Arc<Directory>,
    pub ips: Arc<Mutex<IpLimiter>>,
    /// The session caps, counted apart from connections.
    pub sessions: Arc<Mutex<IpLimiter>>,
    /// Where joins are placed in the log's order.
    pub router: Router,
    /// The public listener's TLS, if it speaks TLS.
    pub tls: Option<Arc<Tls>>,
    /// A clone of the one verifier of client tokens (`None`: JWT auth is off): a reload of its
    /// keys reaches every worker.
    pub verifier: Option<Verifier>,
}
/// A connection one worker hands another: its state and its socket.
pub type Handover = (Box<Conn>, Socket);
impl EventLoop {
    pub fn new(
        poll: Poll,
        listener: Option<TcpListener>,
        rx: Receiver<ToWorker>,
        shared: WorkerShared,
        config: Config,
    ) -> io::Result<Self> {
        let mut listener = listener;
        if let Some(listener) = &mut listener {
            poll.registry()
                .register(listener, LISTENER, Interest::READABLE)?;
        }
        let workers = shared.links.len();
        let state = State::new(
            config,
            shared.verifier,
            shared.worker,
            workers,
            shared.ips,
            shared.sessions,
            shared.router.parked().cloned(),
            Instant::now(),
            unix_time(),
        )?;
        Ok(EventLoop {
            poll,
            listener,
            accept_paused: false,
            rx,
            handovers: shared.handovers,
            handover: shared.handover,
            links: shared.links,
            directory: shared.directory,
            sockets: Vec::new(),
            tls: shared.tls,
            next_worker: shared.worker,
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            more_to_read: Vec::new(),
            refused: Vec::new(),
            unwritten_pushes: VecDeque::new(),
            router: shared.router,
            pins: HashMap::new(),
            joins_waiting: 0,
            state,
        })
    }

    /// Runs until a [`ToWorker::Shutdown`] has been carried out.
    ///
    /// One turn: read every ready connection and take every handed-over one, carry out the
    /// queued commands (at most [`COMMANDS_PER_TURN`]), check the timers when due, tell the
    /// directory which rooms opened and closed, then write each connection with output once
    /// (one `writev` of all its frames). A push is answered when its frames are queued, before
    /// they are written; a lone push on an idle worker is written in the turn it arrived.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let max_gap = max_sweep_gap(&self.state.config);
        let mut sweep_at = Instant::now() + max_gap;
        let mut busy = false;
        loop {
            let mut wake_at = match self.state.shutdown_deadline {
                Some(deadline) => sweep_at.min(deadline),
                None => sweep_at,
            };
            if let Some(batch) = self.state.drain_due() {
                wake_at = wake_at.min(batch);
            }
            let timeout = if self.more_to_read.is_empty() && !busy {
                wake_at.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            self.state.io.now = now;
            for k in mem::take(&mut self.more_to_read) {
                self.read(k, now);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => {} // the channels are drained below, after every wake-up
                    Token(k) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(k, now);
                        }
                        if event.is_writable() {
                            self.write(k);
                        }
                    }
                }
            }
            while let Ok((conn, stream)) = self.handovers.try_recv() {
                self.adopt(conn, stream, now);
            }
            busy = self.drain_commands(now);
            if self.state.drain_due().is_some_and(|at| now >= at) {
                self.state.drain_step(now);
                self.settle();
            }
            self.state.reap(now);
            self.settle();
            if now >= sweep_at {
                if self.accept_paused {
                    self.accept(now);
                }
                let earliest = self.state.sweep(now);
                self.settle();
                self.state.reap(now);
                self.settle();
                self.drain_refused(now);
                sweep_at = next_sweep(now, earliest, max_gap);
            }
            self.publish_rooms();
            let unwritten = self.uncork(FLUSHES_PER_TURN);
            self.pushes_written();
            if unwritten {
                // Writes are left for the next turn, which polls without sleeping: let a thread
                // waiting for this core run first. The control thread that will answer the push
                // just counted, or read the next one, may share it, and would otherwise wait
                // out this thread's time slice.
                std::thread::yield_now();
            }
            busy |= unwritten;
            self.more_to_read.append(&mut self.state.io.resume);
            if let Some(deadline) = self.state.shutdown_deadline {
                if self.state.io.entries.is_empty() || now >= deadline {
                    info!(
                        worker = self.state.worker,
                        left = self.state.io.entries.len(),
                        "shutdown complete"
                    );
                    return Ok(());
                }
            }
        }
    }

    fn accept(&mut self, now: Instant) {
        self.accept_paused = false;
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    // `--accept handoff`: connections are dealt to the workers in turn.
                    let w = self.next_worker % self.links.len().max(1);
                    self.next_worker = self.next_worker.wrapping_add(1);
                    if w == self.state.worker {
                        self.take(stream, peer, now);
                    } else if let Err(LoopGone) =
                        self.links[w].send(ToWorker::Accepted(stream, peer))
                    {
                        // The worker stopped (shutdown): the connection closes unanswered.
                        debug!(worker = w, "could not hand a connection over");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: the backlog keeps the connections; try again at the
                    // next sweep rather than spin on an error that persists.
                    let warnings = &mut self.state.io.metrics.peer_warnings;
                    peer_warn!(
                        warnings,
                        PeerFault::Accept,
                        now,
                        error = %e,
                        "accept failed; pausing accepts until the next sweep"
                    );
                    self.accept_paused = true;
                    return;
                }
            }
        }
    }

    /// Serves an accepted connection: counted against the caps (or refused), registered, and
    /// given a slot.
    fn take(&mut self, mut stream: TcpStream, peer: SocketAddr, now: Instant) {
        let proxy = &self.state.proxy;
        if !proxy.admits(peer.ip()) {
            // `--proxy-protocol`: only the trusted balancers may connect.
            self.state.io.metrics.proxy_refused += 1;
            debug!(%peer, "connection from an untrusted address refused (--proxy-protocol)");
            return;
        }
        // From a trusted proxy (or through a PROXY header), the client is known later: until
        // then the connection counts in the total only.
        let via_proxy = proxy.proxy_protocol || proxy.real_ip.trusted.contains(peer.ip());
        let admitted = {
            let mut ips = lock_ips(&self.state.ips);
            match via_proxy {
                true => ips.on_connect_unattributed(),
                false => ips.on_connect(peer.ip(), now),
            }
        };
        let uncount = |ips: &Mutex<IpLimiter>| lock_ips(ips).release(peer.ip(), !via_proxy);
        if let Err(refusal) = admitted {
            if self.tls.is_some() {
                // No plain-text answer can be read on a TLS port, and a handshake spent on a
                // refused client is what the caps are there to spare: closed at once.
                count_refusal(&mut self.state.io.metrics, &refusal);
                debug!(%peer, %refusal, "connection refused");
                return;
            }
            refuse(&mut self.state, &mut self.refused, stream, refusal, now);
            return;
        }
        let socket = match &self.tls {
            None => None,
            Some(tls) => match tls.accept() {
                Ok(session) => Some(session),
                Err(e) => {
                    warn!(%peer, error = %e, "could not start a TLS session");
                    uncount(&self.state.ips);
                    return;
                }
            },
        };
        // Notifications are small and latency is the point: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let k = self.state.io.entries.vacant_key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(k), Interest::READABLE)
        {
            warn!(%peer, error = %e, "could not register a connection");
            uncount(&self.state.ips);
            return;
        }
        debug!(%peer, conn = k, worker = self.state.worker, "connection accepted");
        let opened = self.state.open_conn(peer.ip(), !via_proxy, now);
        debug_assert_eq!(opened, k);
        let mut socket = match socket {
            Some(session) => Socket::tls(stream, session),
            None => Socket::plain(stream),
        };
        if self.state.proxy.proxy_protocol {
            socket.expect_proxy_header();
        }
        place(&mut self.sockets, k, socket);
        // Its first bytes may have arrived before it was registered here.
        self.more_to_read.push(k);
    }

    /// Takes a connection another worker handed over: registers its socket here, and the
    /// state routes the request it carries. It is read this turn: bytes may have arrived
    /// meanwhile.
    fn adopt(&mut self, conn: Box<Conn>, mut socket: Socket, now: Instant) {
        let k = self.state.io.entries.vacant_key();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut socket.stream, Token(k), Interest::READABLE)
        {
            debug!(error = %e, "could not register a handed-over connection");
            conn.uncount(&mut lock_ips(&self.state.ips));
            return;
        }
        place(&mut self.sockets, k, socket);
        let adopted = self.state.adopt(conn, now);
        debug_assert_eq!(adopted, k);
        self.more_to_read.push(k);
        self.settle();
    }

    /// Carries out what the state asked of the sockets during its last call: writes that
    /// cannot wait for the turn's end, sockets of removed connections to close, connections
    /// to hand to another worker. Called after every call into the state that may ask, before
    /// a key it freed can be given again.
    fn settle(&mut self) {
        while !self.state.io.write_now.is_empty() {
            for k in mem::take(&mut self.state.io.write_now) {
                self.write(k);
            }
        }
        for k in mem::take(&mut self.state.io.closed) {
            if let Some(mut socket) = self.sockets.get_mut(k).and_then(Option::take) {
                let _ = self.poll.registry().deregister(&mut socket.stream);
            }
        }
        let joins = mem::take(&mut self.state.joins);
        for join in joins {
            for user in &join.users {
                *self.pins.entry(user.clone()).or_default() += 1;
            }
            // Fails only when this worker's own channel is gone: it is stopping.
            if self.router.join(self.state.worker, join).is_ok() {
                self.joins_waiting += 1;
            }
        }
        // The answers are in this worker's own queue, behind the pushes placed before them:
        // carried out now, in order, so that a client is answered in the turn it asked.
        while self.joins_waiting > 0 {
            let Ok(msg) = self.rx.try_recv() else {
                break;
            };
            let now = self.state.io.now;
            self.carry_out(msg, now);
        }
        for (owner, sid) in mem::take(&mut self.state.taken_over) {
            // A worker that stopped has no session left to close.
            if let Some(link) = self.links.get(owner) {
                if link.tx.send(ToWorker::TakenOver(sid)).is_ok() {
                    let _ = link.waker.wake();
                }
            }
        }
        for (k, conn, owner) in mem::take(&mut self.state.handed) {
            let Some(mut socket) = self.sockets.get_mut(k).and_then(Option::take) else {
                continue;
            };
            let _ = self.poll.registry().deregister(&mut socket.stream);
            let (peer, attributed) = (conn.peer, conn.attributed);
            let sent = self.handover[owner].send((conn, socket)).is_ok()
                && self.links[owner].waker.wake().is_ok();
            if !sent {
                // The owner stopped (shutdown): the connection was dropped and closed.
                lock_ips(&self.state.ips).release(peer, attributed);
            }
        }
    }

    /// Writes the connections that had frames queued, once each, in the order they were
    /// listed, at most `limit` of them; true when some are left for the next turn.
    fn uncork(&mut self, limit: usize) -> bool {
        if !self.state.io.corked() {
            return false;
        }
        self.state.io.metrics.corked_batches += 1;
        for _ in 0..limit {
            let Some(k) = self.state.io.next_corked() else {
                break;
            };
            self.write(k);
        }
        self.settle();
        self.state.io.corked()
    }

    /// Writes what `k` has queued; drops `WRITABLE` interest once drained.
    fn write(&mut self, k: usize) {
        let io = &mut self.state.io;
        let Some(Entry::Conn(conn)) = io.entries.get_mut(k) else {
            return;
        };
        if matches!(conn.phase, Phase::Dead) {
            return;
        }
        let Some(socket) = self.sockets.get_mut(k).and_then(Option::as_mut) else {
            return;
        };
        match conn.flush(socket).and_then(|f| socket.drain().map(|()| f)) {
            Ok(flushed) => {
                io.metrics.bytes_sent += flushed.written as u64;
                if flushed.shut {
                    // The peer sees FIN after our last frame; an error here means it is gone
                    // already.
                    socket.shutdown_write();
                }
                let want = !conn.out.is_empty() || socket.pending();
                if want != conn.writable_interest {
                    conn.writable_interest = want;
                    let interest = if want {
                        Interest::READABLE | Interest::WRITABLE
                    } else {
                        Interest::READABLE
                    };
                    if self
                        .poll
                        .registry()
                        .reregister(&mut socket.stream, Token(k), interest)
                        .is_err()
                    {
                        io.kill(k);
                    }
                }
            }
            Err(_) => {
                if conn.is_open() {
                    io.metrics.count_close(CloseCode::ABNORMAL);
                }
                io.kill(k);
            }
        }
    }

    /// Tells the router's directory which of this worker's rooms opened and closed, in order:
    /// before the turn's frames (a `subscribed` answer among them) are written.
    fn publish_rooms(&mut self) {
        let worker = self.state.worker;
        for event in self.state.rooms.take_events() {
            match event {
                RoomEvent::Opened(user) => self.directory.opened(&user, worker),
                // A join placed for the user keeps the worker in the directory until answered.
                RoomEvent::Closed(user) if self.pins.contains_key(&*user) => {}
                RoomEvent::Closed(user) => self.directory.closed(&user, worker),
                RoomEvent::Members(user, n) => self.directory.count(&user, worker, n),
            }
        }
    }

    /// A join for `users` was answered: the directory forgets this worker for those of them
    /// with no room here and no other join waiting.
    fn unpin(&mut self, users: Vec<String>) {
        for user in users {
            let Some(n) = self.pins.get_mut(&user) else {
                continue;
            };
            *n -= 1;
            if *n > 0 {
                continue;
            }
            self.pins.remove(&user);
            if self.state.rooms.members(&user).is_empty() {
                self.directory.closed(&user, self.state.worker);
            }
        }
    }

    /// Tells each push whose frames are all written so; the last worker to say so times it.
    fn pushes_written(&mut self) {
        let io = &mut self.state.io;
        let mut written = None;
        while let Some((_, mark)) = self.unwritten_pushes.front() {
            if *mark > io.flushed_total {
                return;
            }
            let at = *written.get_or_insert_with(Instant::now);
            if let Some((job, _)) = self.unwritten_pushes.pop_front() {
                if let Some(took) = job.written(at) {
                    io.metrics.fanout.observe(took);
                }
            }
        }
    }

    /// Reads the refused connections dry; drops those whose client closed or whose time is up.
    fn drain_refused(&mut self, now: Instant) {
        let buf = &mut self.read_buf;
        self.refused.retain_mut(|(stream, deadline)| {
            if now >= *deadline {
                return false;
            }
            loop {
                match stream.read(buf) {
                    Ok(0) => return false,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
        });
    }

    /// Reads what connection `k` has, up to [`READS_PER_TURN`] chunks.
    fn read(&mut self, k: usize, now: Instant) {
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.state.io.conn_mut(k) else {
                return;
            };
            if matches!(conn.phase, Phase::Dead) {
                return;
            }
            if !conn.wants_input(self.state.config.max_handshake) {
                conn.read_paused = true;
                return;
            }
            let Some(socket) = self.sockets.get_mut(k).and_then(Option::as_mut) else {
                return;
            };
            if socket.awaits_proxy_header() {
                if !self.read_proxy_header(k, now) {
                    return;
                }
                continue;
            }
            let Some(socket) = self.sockets.get_mut(k).and_then(Option::as_mut) else {
                return;
            };
            let handshaking = socket.handshaking();
            let read = socket.read(&mut self.read_buf);
            let metrics = &mut self.state.io.metrics;
            if handshaking && !socket.handshaking() {
                metrics.tls_handshakes += 1;
            }
            if socket.is_tls()
                && read
                    .as_ref()
                    .is_err_and(|e| e.kind() == io::ErrorKind::InvalidData)
            {
                metrics.tls_failures += 1;
            }
            if socket.pending() {
                // TLS handshake messages to answer with, or an alert to send before closing.
                self.write(k);
            }
            match read {
                Ok(0) => {
                    self.state.peer_closed(k);
                    return;
                }
                Ok(n) => {
                    self.state.on_bytes(k, &self.read_buf[..n], now);
                    self.settle();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(conn = k, error = %e, "read failed");
                    self.state.peer_closed(k);
                    return;
                }
            }
        }
        self.more_to_read.push(k);
    }

    /// Reads what `k` sent while its PROXY protocol header (`--proxy-protocol`) is not whole.
    /// Once it is, the state learns the client's address, and what followed the header goes
    /// on as the connection's first bytes (through its TLS session, if it has one). A
    /// connection that does not open with a valid header is closed unanswered: what sent it is
    /// a balancer set up wrong, or not a balancer. False when there is nothing more to read now.
    fn read_proxy_header(&mut self, k: usize, now: Instant) -> bool {
        let Some(socket) = self.sockets.get_mut(k).and_then(Option::as_mut) else {
            return false;
        };
        let n = match socket.stream.read(&mut self.read_buf) {
            Ok(0) => {
                self.state.peer_closed(k);
                return false;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return true,
            Err(_) => {
                self.state.peer_closed(k);
                return false;
            }
        };
        let (header, rest) = match socket.proxy_header(&self.read_buf[..n]) {
            Ok(None) => return true,
            Ok(Some(whole)) => whole,
            Err(e) => {
                let metrics = &mut self.state.io.metrics;
                metrics.proxy_refused += 1;
                peer_warn!(
                    metrics.peer_warnings,
                    PeerFault::Handshake,
                    now,
                    conn = k,
                    error = %e,
                    "PROXY protocol header refused; closing"
                );
                self.state.io.kill(k);
                self.settle();
                return false;
            }
        };
        let Some(peer) = self.state.io.conn_mut(k).map(|c| c.peer) else {
            return false;
        };
        let client = header.source.map_or(peer, |source| source.ip());
        self.state.proxied_from(k, client, now);
        self.settle();
        let Some(socket) = self.sockets.get_mut(k).and_then(Option::as_mut) else {
            return false;
        };
        match socket.feed(&rest) {
            Ok(Some(plain)) => {
                if !plain.is_empty() {
                    self.state.on_bytes(k, plain, now);
                    self.settle();
                }
            }
            Ok(None) => {
                if socket.pending() {
                    self.write(k);
                }
            }
            Err(_) => {
                self.state.io.metrics.tls_failures += 1;
                self.state.peer_closed(k);
                return false;
            }
        }
        true
    }

    /// Carries out up to [`COMMANDS_PER_TURN`] queued commands; true when more wait (the next
    /// turn then polls without sleeping).
    fn drain_commands(&mut self, now: Instant) -> bool {
        for _ in 0..COMMANDS_PER_TURN {
            let Ok(msg) = self.rx.try_recv() else {
                return false;
            };
            self.carry_out(msg, now);
        }
        !self.rx.is_empty()
    }

    /// Carries out one message from the router.
    fn carry_out(&mut self, msg: ToWorker, now: Instant) {
        match msg {
            ToWorker::Push(job) => {
                let sockets = self.state.push(&job, now);
                self.settle();
                job.counted(sockets);
                self.unwritten_pushes
                    .push_back((job, self.state.io.corked_total));
            }
            ToWorker::UserInfo { user_id, gather } => {
                let (devices, more_devices, sockets) = self.state.member_devices(&user_id);
                gather.add(UserInfo {
                    addresses: self.state.member_addresses(&user_id),
                    devices,
                    more_devices,
                    ..UserInfo::local(sockets)
                });
            }
            ToWorker::Metrics(gather) => gather.add(vec![self.state.report()]),
            ToWorker::TakenOver(sid) => {
                self.state.close_taken_over(&sid, now);
                self.settle();
            }
            ToWorker::Readiness(gather) => gather.add(self.state.shutdown_deadline.is_none()),
            ToWorker::Joined(joined) => {
                self.joins_waiting = self.joins_waiting.saturating_sub(1);
                let users = joined.join.users.clone();
                self.state.on_joined(*joined, now);
                self.settle();
                self.unpin(users);
            }
            ToWorker::Accepted(stream, peer) => {
                if self.state.shutdown_deadline.is_none() {
                    self.take(stream, peer, now);
                }
            }
            ToWorker::Reconnect => {
                if self.state.shutdown_deadline.is_none() {
                    self.state.begin_reconnect(now);
                    self.settle();
                }
            }
            ToWorker::Shutdown => {
                if let Some(mut listener) = self.listener.take() {
                    let _ = self.poll.registry().deregister(&mut listener);
                }
                if self.state.shutdown_deadline.is_none() {
                    self.state.begin_shutdown(now);
                    self.settle();
                }
            }
        }
    }
}
/// Answers a connection the per-address caps refuse, without giving it a slot: the status
/// goes out at once (it fits any socket buffer), the write side is shut, and the socket is
/// kept only to read and drop what its client sends until it closes. Closing with the
/// client's request unread would reset the connection, and the client might lose the answer
/// before reading it.
fn refuse(
    state: &mut State,
    refused: &mut Vec<(TcpStream, Instant)>,
    mut stream: TcpStream,
    refusal: IpRefusal,
    now: Instant,
) {
    count_refusal(&mut state.io.metrics, &refusal);
    debug!(peer = ?stream.peer_addr().ok(), %refusal, "connection refused");
    let mut out = Vec::with_capacity(256);
    handshake::write_error(&HandshakeError::Refused(refusal), &mut out);
    let _ = stream.write(&out);
    let _ = stream.shutdown(Shutdown::Write);
    if refused.len() < MAX_REFUSED_DRAINING {
        refused.push((stream, now + state.config.close_timeout));
    }
}
/// Time since the Unix epoch, to the nanosecond: read once, when a worker starts (see
/// [`State::unix`]).
fn unix_time() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}
/// Puts `stream` at key `k` of the socket table.
fn place(sockets: &mut Vec<Option<Socket>>, k: usize, socket: Socket) {
    if sockets.len() <= k {
        sockets.resize_with(k + 1, || None);
    }
    sockets[k] = Some(socket);
}
