//! The control API's threads: one accepting, one per connection, blocking `std::net` I/O.
//! Parsing is [`super::http`]'s and answering is [`super::api`]'s; this file only moves bytes.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use super::api::{self, Dispatch};
use super::http::{self, Method, Response};
use super::ControlOptions;

/// How long the accept thread may block writing a 503 to a refused connection.
const REFUSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// After an error answer, how long the connection keeps reading (and discarding) what the client
/// is still sending, so that closing does not reset the connection before the answer is read.
const LINGER: Duration = Duration::from_secs(1);

/// Most bytes discarded while lingering.
const LINGER_MAX: usize = 256 * 1024;

/// Pause after a failed accept, so running out of file descriptors does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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
    thread::Builder::new()
        .name("herald-control-accept".into())
        .spawn(move || accept_loop(listener, loop_, Arc::new(opts)))
}

fn accept_loop<D>(listener: TcpListener, loop_: D, opts: Arc<ControlOptions>)
where
    D: Dispatch + Clone + Send + 'static,
{
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "control API accept failed");
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        let Some(slot) = Slot::take(&active, opts.max_connections) else {
            refuse(stream);
            continue;
        };
        let loop_ = loop_.clone();
        let opts = Arc::clone(&opts);
        let spawned = thread::Builder::new()
            .name("herald-control".into())
            .spawn(move || {
                // Held for the thread's life, released however the thread ends.
                let _slot = slot;
                if let Err(e) = serve(stream, &loop_, &opts) {
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

/// Answers a connection over the cap with 503 and closes it, on the accept thread: the answer is
/// small enough for the socket's send buffer, and the write timeout bounds the rare case it isn't.
fn refuse(mut stream: TcpStream) {
    let mut out = Vec::new();
    Response::error(503, "too many control connections").write(false, &mut out);
    let _ = stream.set_write_timeout(Some(REFUSE_WRITE_TIMEOUT));
    let _ = stream.write_all(&out);
    let _ = stream.shutdown(Shutdown::Write);
}

/// Pipelined requests started before the first of them is answered.
const MAX_PIPELINED: usize = 128;

/// Serves requests on one connection, in order, until the client closes, asks to close, idles
/// past the timeout, or sends something unparseable.
fn serve(mut stream: TcpStream, loop_: &impl Dispatch, opts: &ControlOptions) -> io::Result<()> {
    // A zero duration is refused by set_read_timeout; it means "no idle limit" here.
    let idle = Some(opts.idle_timeout).filter(|d| !d.is_zero());
    stream.set_read_timeout(idle)?;
    // A client that stops reading its answers would otherwise hold this thread forever.
    stream.set_write_timeout(idle)?;
    // Each answer is one write; waiting for an ACK to coalesce it only adds latency.
    stream.set_nodelay(true)?;

    let mut buf = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(512);
    let mut chunk = [0u8; 8192];
    // `100 Continue` is sent at most once per request.
    let mut continued = false;
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
                    let started = api::start(
                        &req,
                        loop_,
                        opts.reply_timeout,
                        opts.api_key.as_ref(),
                        SystemTime::now(),
                    );
                    pending.push((started, req.method == Method::Head, req.keep_alive));
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
        out.clear();
        for (started, head, keep_alive) in pending {
            let resp = started.finish();
            if head {
                resp.write_head(keep_alive, &mut out);
            } else {
                resp.write(keep_alive, &mut out);
            }
        }
        if let Some(e) = &fault {
            tracing::debug!(error = %e, "bad control request");
            Response::from(e).write(false, &mut out);
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
        }
        if fault.is_some() {
            linger_close(&mut stream);
            return Ok(());
        }
        if close {
            return Ok(());
        }
        if http::parse(&buf, opts.max_body).is_ok_and(|r| r.is_some()) {
            // More complete requests than one batch takes: the next batch, before reading.
            continue;
        }
        if !continued && http::wants_continue(&buf, opts.max_body) {
            stream.write_all(http::CONTINUE)?;
            continued = true;
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            // The read timeout: the connection idled out.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Closes our side, then reads and discards what the client still sends for a short while.
/// Closing a socket with unread input makes the kernel send a reset, which can destroy the error
/// answer before the client reads it (a 413 sent while the body is still arriving).
fn linger_close(stream: &mut TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() || stream.set_read_timeout(Some(LINGER)).is_err() {
        return;
    }
    let mut sink = [0u8; 8192];
    let mut discarded = 0;
    while discarded < LINGER_MAX {
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
                    let _ = reply.send(UserInfo { sockets: 1 });
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
            reply_timeout: Duration::from_secs(5),
            api_key: None,
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
