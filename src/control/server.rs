//! The control API's threads: one accepting, one per connection, blocking `std::net` I/O.
//! Parsing is [`super::http`]'s and answering is [`super::api`]'s; this file only moves bytes.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::access::Access;
use super::admin;
use super::api::{self, Answer, ApiError, Dispatch, Pending};
use super::http::{self, HttpError, Method, Request, Response};
use super::stats::{Reservation, Stats};
use super::ControlOptions;

/// How long the accept thread may block writing a 503 to a refused connection.
const REFUSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// After an error answer, how long the connection keeps reading (and discarding) what the client
/// is still sending, so that closing does not reset the connection before the answer is read.
const LINGER: Duration = Duration::from_secs(1);

/// Most bytes discarded while lingering (beyond a refused body's own length).
const LINGER_MAX: usize = 256 * 1024;

/// Connections refused over the cap whose requests are being read dry; more are closed at once.
const MAX_REFUSED_DRAINING: usize = 256;

/// How often the draining thread reads the refused connections it holds.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// Pause after a failed accept, so running out of file descriptors does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Bytes read at a time, and the buffer a connection keeps between requests: one that took a
/// large body gives the room back once it is answered.
const READ_CHUNK: usize = 8192;

pub(super) fn spawn<D>(
    listener: TcpListener,
    loop_: D,
    opts: ControlOptions,
) -> io::Result<JoinHandle<()>>
where
    D: Dispatch + Clone + Send + 'static,
{
    // The accept thread blocks in accept; a listener handed over non-blocking would spin.
    listener.set_nonblocking(false)?;
    let (refused, to_drain) = crossbeam_channel::bounded(MAX_REFUSED_DRAINING);
    thread::Builder::new()
        .name("herald-control-refused".into())
        .spawn(move || drain_refused(to_drain))?;
    let stats = Arc::new(Stats::default());
    let access = Arc::new(Access::new(opts.api_keys.clone(), opts.lockout));
    let shared = Shared {
        opts: Arc::new(opts),
        access,
        stats,
    };
    thread::Builder::new()
        .name("herald-control-accept".into())
        .spawn(move || accept_loop(listener, loop_, shared, refused))
}

/// A control connection's byte stream: the TCP socket, or a TLS session over it
/// (`--control-tls-cert`). The handshake happens on the first read or write, within the
/// timeouts set on the socket.
trait Conn: Read + Write {
    fn tcp(&self) -> &TcpStream;
    /// Ends what this side sends (with TLS, a close_notify first).
    fn shutdown_write(&mut self) -> io::Result<()>;
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Conn for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush()?;
        self.sock.shutdown(Shutdown::Write)
    }
}

/// What every connection thread reads, or counts in.
#[derive(Clone)]
struct Shared {
    opts: Arc<ControlOptions>,
    access: Arc<Access>,
    stats: Arc<Stats>,
}

fn accept_loop<D>(listener: TcpListener, loop_: D, shared: Shared, refused: Sender<TcpStream>)
where
    D: Dispatch + Clone + Send + 'static,
{
    let Shared { opts, stats, .. } = &shared;
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept() {
            Ok((stream, addr)) => (stream, addr.ip()),
            Err(e) => {
                tracing::warn!(error = %e, "control API accept failed");
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        let Some(slot) = Slot::take(&active, opts.max_connections) else {
            stats.count_refused_connection();
            // Over TLS no plain-text answer can be read: the connection is closed.
            if opts.tls.is_none() {
                refuse(stream, &refused);
            }
            continue;
        };
        let loop_ = loop_.clone();
        let shared = shared.clone();
        let spawned = thread::Builder::new()
            .name("herald-control".into())
            .spawn(move || {
                // Held for the thread's life, released however the thread ends.
                let _slot = slot;
                let served = match &shared.opts.tls {
                    None => serve(stream, peer, &loop_, &shared),
                    Some(tls) => match tls.accept() {
                        Ok(session) => serve(
                            rustls::StreamOwned::new(session, stream),
                            peer,
                            &loop_,
                            &shared,
                        ),
                        Err(e) => Err(io::Error::other(e)),
                    },
                };
                if let Err(e) = served {
                    tracing::debug!(error = %e, "control connection ended with an error");
                }
            });
        // On failure the closure, its slot and its stream are dropped: the count is given back
        // and the client sees the connection close.
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start a control connection thread");
        }
    }
}

/// One of `max_connections` places; dropping it frees the place.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        if active.fetch_add(1, Ordering::AcqRel) >= max {
            active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(Arc::clone(active)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers a connection over the cap with 503 on the accept thread (the answer is small enough
/// for the socket's send buffer, and the write timeout bounds the rare case it isn't), then hands
/// it to the draining thread. Closing it here, with the client's request unread, would make the
/// kernel reset the connection, and the reset can destroy the 503 before the client reads it.
fn refuse(mut stream: TcpStream, drain: &Sender<TcpStream>) {
    let mut out = Vec::new();
    Response::error(503, "too many control connections").write(false, &mut out);
    let _ = stream.set_write_timeout(Some(REFUSE_WRITE_TIMEOUT));
    let _ = stream.write_all(&out);
    let _ = stream.shutdown(Shutdown::Write);
    // Full: closed at once, as a flood of refusals must not grow this without bound.
    let _ = drain.try_send(stream);
}

/// The draining thread: reads refused connections dry, without blocking on any, and closes each
/// once its client has closed, or after [`LINGER`] or [`LINGER_MAX`] bytes.
fn drain_refused(to_drain: Receiver<TcpStream>) {
    let mut held: Vec<(TcpStream, Instant, usize)> = Vec::new();
    let mut sink = [0u8; READ_CHUNK];
    loop {
        let next = if held.is_empty() {
            match to_drain.recv() {
                Ok(stream) => Some(stream),
                Err(_) => return,
            }
        } else {
            match to_drain.recv_timeout(DRAIN_POLL) {
                Ok(stream) => Some(stream),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        let now = Instant::now();
        for stream in next.into_iter().chain(to_drain.try_iter()) {
            if held.len() < MAX_REFUSED_DRAINING && stream.set_nonblocking(true).is_ok() {
                held.push((stream, now + LINGER, 0));
            }
        }
        held.retain_mut(|(stream, deadline, read)| {
            now < *deadline && read_available(stream, read, &mut sink)
        });
    }
}

/// Reads and drops what a non-blocking `stream` has; false once it is done with (the client
/// closed, an error, or more than [`LINGER_MAX`] bytes in all).
fn read_available(stream: &mut TcpStream, read: &mut usize, sink: &mut [u8]) -> bool {
    loop {
        match stream.read(sink) {
            Ok(0) => return false,
            Ok(n) => {
                *read += n;
                if *read >= LINGER_MAX {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// Pipelined requests started before the first of them is answered.
const MAX_PIPELINED: usize = 128;

/// Serves requests on one connection from `peer`, in order, until the client closes, asks to
/// close, idles past the timeout, sends something unparseable, or takes longer than the request
/// timeout to send a request whole.
///
/// Each request is let in ([`Access::check`]) and its body budgeted ([`Stats::reserve`]) once,
/// as soon as its head is here: before its body is read when the body is still to come (a
/// refusal then closes the connection, the body unread, and `100 Continue` only follows
/// admission), when it is taken otherwise. The budget is held until the loop has taken the
/// request's command.
fn serve(
    mut stream: impl Conn,
    peer: IpAddr,
    loop_: &impl Dispatch,
    shared: &Shared,
) -> io::Result<()> {
    let Shared {
        opts,
        access,
        stats,
    } = shared;
    // Lets in the request whose head is `req` and budgets its `body_len` bytes.
    let admit = |req: &Request, body_len: usize| {
        access.check(req, peer, Instant::now(), unix_now(), stats)?;
        stats
            .reserve(body_len, opts.max_inflight_bytes)
            .ok_or(ApiError::TooManyBytesInFlight)
    };
    let opened = Instant::now();
    // A zero duration is refused by set_read_timeout; it means "no limit" here.
    let idle = Some(opts.idle_timeout).filter(|d| !d.is_zero());
    let whole = Some(opts.request_timeout).filter(|d| !d.is_zero());
    // A client that stops reading its answers would otherwise hold this thread forever.
    stream.tcp().set_write_timeout(shortest(idle, whole))?;
    // Each answer is one write; waiting for an ACK to coalesce it only adds latency.
    stream.tcp().set_nodelay(true)?;

    let mut buf = Vec::with_capacity(READ_CHUNK);
    let mut out = Vec::with_capacity(512);
    let mut chunk = [0u8; READ_CHUNK];
    // `100 Continue` is sent at most once per request.
    let mut continued = false;
    // When the request at the front of `buf` must have arrived whole. The first request's time
    // runs from the connection's opening (a client that connects and says nothing holds a slot
    // as surely as one that trickles); a later one's from its first byte. `None` between
    // requests, where only the idle timeout applies.
    let mut deadline = whole.map(|t| opened + t);
    // The budget of the body of the request at the front of `buf`, taken when its head arrived
    // and it was let in.
    let mut reserved: Option<Reservation> = None;
    loop {
        // Start every complete request already buffered (pipelining), so the loop takes their
        // commands in one batch; then answer them in arrival order with one write.
        let mut pending = Vec::new();
        let mut close = false;
        let mut fault = None;
        while pending.len() < MAX_PIPELINED {
            match http::parse(&buf, opts.max_body) {
                Ok(Some((req, used))) => {
                    buf.drain(..used);
                    continued = false;
                    // A request that arrived whole in one read is let in and budgeted now.
                    let admitted = match reserved.take() {
                        Some(reservation) => Ok(reservation),
                        None => admit(&req, req.body.len()),
                    };
                    let (started, reservation) = match admitted {
                        Ok(reservation) => {
                            let admin = admin::Ctx {
                                access,
                                peer,
                                now: Instant::now(),
                                now_unix: unix_now(),
                                stats,
                                settings: &opts.settings,
                                secure: opts.tls.is_some(),
                            };
                            let started = match admin::route(&req, &admin) {
                                Some(answer) => {
                                    Pending::Ready(answer.unwrap_or_else(|e| Response::from(&e)))
                                }
                                None => api::start(
                                    &req,
                                    loop_,
                                    opts.reply_timeout,
                                    Some(stats),
                                    SystemTime::now(),
                                ),
                            };
                            (started, Some(reservation))
                        }
                        Err(e) => (Pending::Ready(Response::from(&e)), None),
                    };
                    pending.push((
                        started,
                        reservation,
                        req.method == Method::Head,
                        req.keep_alive,
                    ));
                    if !req.keep_alive {
                        close = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    fault = Some(e);
                    break;
                }
            }
        }
        if !pending.is_empty() {
            // What is left began arriving with (or after) what was just taken.
            deadline = match buf.is_empty() {
                true => None,
                false => whole.map(|t| Instant::now() + t),
            };
        }
        out.clear();
        let mut unconfirmed = Vec::new();
        for (started, reservation, head, keep_alive) in pending {
            let Answer {
                response,
                unconfirmed: counting,
            } = started.answer();
            if let Some(rx) = counting {
                stats.count_unconfirmed_push();
                unconfirmed.push((rx, reservation));
            }
            if head {
                response.write_head(keep_alive, &mut out);
            } else {
                response.write(keep_alive, &mut out);
            }
        }
        if let Some(e) = &fault {
            tracing::debug!(error = %e, "bad control request");
            Response::from(e).write(false, &mut out);
        }
        let written = match out.is_empty() {
            true => Ok(()),
            false => stream.write_all(&out),
        };
        // Pushes answered 202 before the loop counted them are still in its queue, their bytes
        // with them: their budget is kept until the loop has taken them, and this connection
        // waits with it, so a slow loop slows its callers instead of growing its queue. The loop
        // answers every command it takes, and drops the channel when it stops.
        for (rx, reservation) in unconfirmed {
            let _ = rx.recv();
            drop(reservation);
        }
        written?;
        if fault.is_some() {
            linger_close(&mut stream, LINGER_MAX);
            return Ok(());
        }
        if close {
            return Ok(());
        }
        if buf.capacity() > 4 * READ_CHUNK && buf.len() <= READ_CHUNK {
            buf.shrink_to(READ_CHUNK);
        }
        if http::parse(&buf, opts.max_body).is_ok_and(|r| r.is_some()) {
            // More complete requests than one batch takes: the next batch, before reading.
            continue;
        }
        if reserved.is_none() {
            if let Ok(Some((req, framing))) = http::head(&buf, opts.max_body) {
                // A head whose body is still to come: let in (or not) before the body is read.
                let reservation = match admit(&req, framing.body_len) {
                    Ok(reservation) => reservation,
                    Err(e) => {
                        // Refused before its body is read: none of it is held, nothing is
                        // delivered, and a client that sent `Expect: 100-continue` was never
                        // told to send it. The connection closes, since the body that may still
                        // be on its way cannot be told from a next request without reading it;
                        // what does come is read and dropped while lingering, so that closing
                        // does not reset the answer away.
                        out.clear();
                        Response::from(&e).write(false, &mut out);
                        stream.write_all(&out)?;
                        let unread = framing.total().saturating_sub(buf.len());
                        linger_close(&mut stream, unread + LINGER_MAX);
                        return Ok(());
                    }
                };
                reserved = Some(reservation);
                // Room for the rest made once, rather than by doubling while it arrives.
                buf.reserve_exact(framing.total().saturating_sub(buf.len()));
            }
        }
        if !continued && http::wants_continue(&buf, opts.max_body) {
            stream.write_all(http::CONTINUE)?;
            continued = true;
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return time_out(stream, &buf, whole, stats);
        }
        stream.tcp().set_read_timeout(shortest(idle, left))?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            // The read timeout: the request is late, or the connection idled out.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return time_out(stream, &buf, shortest(whole, idle), stats);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
        if deadline.is_none() {
            deadline = whole.map(|t| Instant::now() + t);
        }
    }
}

/// Seconds since the Unix epoch, by the wall clock (admin sessions expire by it).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Ends a connection whose time ran out: quietly between requests, with 408 when part of a
/// request had arrived (RFC 9110 §15.5.9).
fn time_out(
    mut stream: impl Conn,
    buf: &[u8],
    after: Option<Duration>,
    stats: &Stats,
) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    stats.count_request_timeout();
    let mut out = Vec::new();
    let after = after.unwrap_or_default();
    Response::from(&HttpError::RequestTimeout { after }).write(false, &mut out);
    stream.write_all(&out)?;
    linger_close(&mut stream, LINGER_MAX);
    Ok(())
}

/// The shorter of two optional limits; `None` when neither is set.
fn shortest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Closes our side, then reads and discards what the client still sends, for at most [`LINGER`]
/// in all and `max` bytes. Closing a socket with unread input makes the kernel send a reset,
/// which can destroy the error answer before the client reads it (a 413 sent while the body is
/// still arriving).
fn linger_close(stream: &mut impl Conn, max: usize) {
    if stream.shutdown_write().is_err() {
        return;
    }
    let until = Instant::now() + LINGER;
    let mut sink = [0u8; READ_CHUNK];
    let mut discarded = 0;
    while discarded < max {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.tcp().set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crossbeam_channel::Receiver;

    use super::*;
    use crate::command::{Command, LoopHandle, PushReply, UserInfo};
    use crate::control::access::LockoutSettings;

    /// A stand-in event loop: answers every command from its channel until the channel closes.
    fn fake_loop() -> LoopHandle {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (tx, rx) = crossbeam_channel::unbounded();
        thread::spawn(move || answer(poll, rx));
        LoopHandle::new(tx, waker)
    }

    fn answer(_poll: mio::Poll, rx: Receiver<Command>) {
        for cmd in rx {
            match cmd {
                Command::Push { reply, .. } => {
                    let _ = reply.send(PushReply {
                        sockets: 2,
                        ..PushReply::default()
                    });
                }
                Command::UserInfo { reply, .. } => {
                    let _ = reply.send(UserInfo::local(1));
                }
                Command::Metrics { reply } => {
                    let _ = reply.send(String::new());
                }
                Command::Readiness { reply } => {
                    let _ = reply.send(true);
                }
                Command::Shutdown => return,
            }
        }
    }

    fn start_server(max_connections: usize) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let opts = ControlOptions {
            max_body: 1024,
            max_connections,
            idle_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_inflight_bytes: 1024 * 1024,
            reply_timeout: Duration::from_secs(5),
            api_keys: None,
            lockout: LockoutSettings {
                max_failures: 0,
                window: Duration::from_secs(60),
                max_addresses: 1,
            },
            tls: None,
            settings: Vec::new().into(),
        };
        super::super::spawn(listener, fake_loop(), opts).unwrap();
        addr
    }

    /// Reads one response (head and Content-Length body) off the stream, leaving the rest.
    fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> (u16, Vec<u8>) {
        let mut chunk = [0u8; 1024];
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = resp.parse(pending).unwrap() {
                let len: usize = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                    .unwrap();
                if pending.len() >= head + len {
                    let status = resp.code.unwrap();
                    let body = pending[head..head + len].to_vec();
                    pending.drain(..head + len);
                    return (status, body);
                }
            }
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "server closed before a whole response");
            pending.extend_from_slice(&chunk[..n]);
        }
    }

    #[test]
    fn two_keep_alive_requests_on_one_connection() {
        let addr = start_server(4);
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut pending = Vec::new();

        let body = r#"{"title":"hi"}"#;
        let push = format!(
            "POST /v1/users/42/notifications HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(push.as_bytes()).unwrap();
        let (status, body) = read_response(&mut stream, &mut pending);
        assert_eq!(status, 202);
        assert_eq!(body, br#"{"sockets":2}"#);

        stream
            .write_all(b"GET /v1/users/42 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (status, body) = read_response(&mut stream, &mut pending);
        assert_eq!(status, 200);
        assert_eq!(body, br#"{"userId":"42","online":true,"sockets":1}"#);
    }

    #[test]
    fn over_the_cap_is_503() {
        let addr = start_server(1);
        // Holds the only place: it stays open and idle.
        let first = TcpStream::connect(addr).unwrap();
        let mut second = TcpStream::connect(addr).unwrap();
        second
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (status, body) = read_response(&mut second, &mut Vec::new());
        assert_eq!(status, 503);
        assert_eq!(body, br#"{"error":"too many control connections"}"#);
        drop(first);
    }
}
