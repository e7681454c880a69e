//! `--handshakes`: connections opened and closed as fast as the server takes them, to measure
//! what a TLS handshake costs it. Each connection connects, completes its TLS handshake, reads
//! the session tickets a TLS 1.3 server sends after it, sends close_notify and closes; no HTTP
//! and no WebSocket are spoken. Without TLS a connection shuts its write side as soon as it is
//! connected and is done when the server has closed too: the cost of a bare accept and close,
//! to set beside. (Done at connect, a connection the server has not accepted yet would wait in
//! its listen backlog while the next one is opened; once the backlog is full the kernel drops
//! SYNs, and each costs a second's retransmission.)
//!
//! A thread keeps `concurrency` connections in flight until `until`, then lets those in flight
//! finish (each has `timeout` from its connect), and reports what completed and how.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::{ClientConnection, HandshakeKind};
use slab::Slab;

use crate::sys;
use crate::tls;

/// How often a thread wakes with nothing to do, to check deadlines.
const TICK: Duration = Duration::from_millis(20);

/// What one handshake thread is asked to do.
pub struct Plan {
    pub server: SocketAddr,
    /// TLS handshakes with this client; plain connections when `None`.
    pub tls: Option<Arc<tls::Client>>,
    pub source_ips: Vec<Ipv4Addr>,
    /// Connections in flight at once on this thread.
    pub concurrency: usize,
    /// No connection is opened after this.
    pub until: Instant,
    /// A connection not done this long after it was opened counts as failed.
    pub timeout: Duration,
    pub pin_cpu: Option<usize>,
}

/// What a thread hands back.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Connections that completed: connected, and with TLS, handshake done (and tickets read).
    pub completed: u64,
    /// TLS handshakes by kind (`HandshakeKind`), and by the version agreed.
    pub full: u64,
    pub resumed: u64,
    pub tls13: u64,
    pub tls12: u64,
    /// TLS 1.3 handshakes closed before a session ticket arrived (the wait timed out).
    pub no_ticket: u64,
    /// Why connections failed, with counts.
    pub failures: BTreeMap<String, u64>,
}

impl Outcome {
    pub fn add(&mut self, other: Outcome) {
        self.completed += other.completed;
        self.full += other.full;
        self.resumed += other.resumed;
        self.tls13 += other.tls13;
        self.tls12 += other.tls12;
        self.no_ticket += other.no_ticket;
        for (why, n) in other.failures {
            *self.failures.entry(why).or_default() += n;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Handshaking,
    /// TLS 1.3, handshake done: waiting for the server's session tickets.
    Tickets,
    /// Plain: write side shut, waiting for the server to close.
    Closing,
}

struct Conn {
    stream: TcpStream,
    session: Option<ClientConnection>,
    phase: Phase,
    opened: Instant,
}

/// How a connection's event ended.
enum Step {
    /// Still under way.
    Continue,
    /// Done: close it and count it.
    Done,
    Failed(String),
}

/// Runs one handshake thread; see the module documentation.
pub fn run(plan: Plan) -> io::Result<Outcome> {
    sys::maybe_pin(plan.pin_cpu);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::with_capacity(plan.concurrency);
    let mut outcome = Outcome::default();
    let mut scratch = vec![0u8; 16 * 1024];
    let mut opened = 0usize;
    let mut last_scan = Instant::now();
    loop {
        let now = Instant::now();
        while now < plan.until && conns.len() < plan.concurrency {
            let source = match plan.source_ips.len() {
                0 => None,
                n => Some(plan.source_ips[opened % n]),
            };
            opened += 1;
            if let Err(e) = open(&plan, source, &poll, &mut conns) {
                *outcome
                    .failures
                    .entry(format!("connect: {}", e.kind()))
                    .or_default() += 1;
            }
        }
        if now >= plan.until && conns.is_empty() {
            return Ok(outcome);
        }
        match poll.poll(&mut events, Some(TICK)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let step = drive(conn, &mut scratch, &mut outcome);
            match step {
                Step::Continue => {}
                Step::Done => {
                    outcome.completed += 1;
                    close(&poll, conns.remove(key));
                }
                Step::Failed(why) => {
                    *outcome.failures.entry(why).or_default() += 1;
                    close(&poll, conns.remove(key));
                }
            }
        }
        let now = Instant::now();
        if now.duration_since(last_scan) >= Duration::from_millis(100) {
            last_scan = now;
            let late: Vec<usize> = conns
                .iter()
                .filter(|(_, c)| now.duration_since(c.opened) >= plan.timeout)
                .map(|(k, _)| k)
                .collect();
            for key in late {
                let conn = conns.remove(key);
                if conn.phase == Phase::Tickets {
                    // The handshake is done: count it, without the tickets.
                    outcome.no_ticket += 1;
                    outcome.completed += 1;
                } else {
                    let why = match conn.phase {
                        Phase::Connecting => "connect: timeout",
                        Phase::Closing => "close: timeout",
                        _ => "handshake: timeout",
                    };
                    *outcome.failures.entry(why.into()).or_default() += 1;
                }
                close(&poll, conn);
            }
        }
    }
}

fn open(
    plan: &Plan,
    source: Option<Ipv4Addr>,
    poll: &Poll,
    conns: &mut Slab<Conn>,
) -> io::Result<()> {
    let mut stream = sys::connect(source, plan.server)?;
    let session = match &plan.tls {
        Some(client) => Some(client.session()?),
        None => None,
    };
    let entry = conns.vacant_entry();
    poll.registry().register(
        &mut stream,
        Token(entry.key()),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    entry.insert(Conn {
        stream,
        session,
        phase: Phase::Connecting,
        opened: Instant::now(),
    });
    Ok(())
}

/// Ends a connection: TLS sessions say close_notify first (best effort, the socket closes
/// right after).
fn close(poll: &Poll, mut conn: Conn) {
    if let Some(session) = &mut conn.session {
        session.send_close_notify();
        let _ = tls::write(session, &mut conn.stream, &mut Vec::new());
    }
    let _ = poll.registry().deregister(&mut conn.stream);
}

fn drive(conn: &mut Conn, scratch: &mut [u8], outcome: &mut Outcome) -> Step {
    if conn.phase == Phase::Connecting {
        match conn.stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return Step::Failed(format!("connect: {}", e.kind())),
        }
        match conn.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Step::Continue,
            Err(e) => return Step::Failed(format!("connect: {}", e.kind())),
        }
        if conn.session.is_none() {
            let _ = conn.stream.shutdown(Shutdown::Write);
            conn.phase = Phase::Closing;
        } else {
            conn.phase = Phase::Handshaking;
        }
    }
    if conn.phase == Phase::Closing {
        loop {
            match conn.stream.read(scratch) {
                // The server closed (or reset): it accepted, saw the end and let go.
                Ok(0) => return Step::Done,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Step::Done,
                Ok(_) => return Step::Failed("close: the server sent data".into()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Failed(format!("close: {}", e.kind())),
            }
        }
    }
    let Some(session) = &mut conn.session else {
        return Step::Done;
    };
    let mut received = 0;
    loop {
        let handshaking = session.is_handshaking();
        let before = received;
        let read = tls::read(session, &mut conn.stream, scratch, &mut received);
        if handshaking && !session.is_handshaking() {
            count(session, outcome);
            conn.phase = Phase::Tickets;
        } else if conn.phase == Phase::Tickets && received > before {
            // Records after the handshake: the server's NewSessionTicket messages, which it
            // sends at once after the client's Finished. The session has stored them.
            let _ = tls::write(session, &mut conn.stream, &mut Vec::new());
            return Step::Done;
        }
        match read {
            Ok(Some(_)) => {} // no application data is expected; none is kept
            Ok(None) => break,
            Err(tls::ReadError::Closed) => return Step::Failed("handshake: closed".into()),
            Err(tls::ReadError::Tls(e)) => return Step::Failed(format!("handshake: tls: {e}")),
            Err(tls::ReadError::Io(e)) => return Step::Failed(format!("handshake: {}", e.kind())),
        }
    }
    if let Err(e) = tls::write(session, &mut conn.stream, &mut Vec::new()) {
        return Step::Failed(format!("handshake: {}", e.kind()));
    }
    // TLS 1.2 sends no tickets after the handshake (a ticket, if any, came before the
    // server's Finished): the handshake is all there is.
    if conn.phase == Phase::Tickets && tls::agreed(session) != Some("1.3") {
        return Step::Done;
    }
    Step::Continue
}

fn count(session: &ClientConnection, outcome: &mut Outcome) {
    match session.handshake_kind() {
        Some(HandshakeKind::Resumed) => outcome.resumed += 1,
        Some(_) => outcome.full += 1,
        None => {}
    }
    match tls::agreed(session) {
        Some("1.3") => outcome.tls13 += 1,
        Some("1.2") => outcome.tls12 += 1,
        _ => {}
    }
}
