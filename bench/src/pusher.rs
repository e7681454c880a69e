//! The open-loop pusher: control requests sent at a fixed rate over keep-alive connections,
//! pipelined, each answer read in order by a reader thread; or, `synchronous`, one caller per
//! connection that waits for each answer before its next request.
//!
//! Push `k` is due at `start + k / rate` and goes out over control connection `k % connections`.
//! A writer sends everything due in one `write`, then sleeps until the next push is due; a slow
//! server makes pushes late, never fewer, and the notification carries the due time, so latency
//! is measured from when the push should have left (no coordinated omission). A writer hands
//! each request's expected delivery count and due time to its reader before writing it; the
//! reader adds the count to the expected total when the answer is 2xx, and records the call's
//! latency (answer read minus due time).
//!
//! A synchronous caller is one backend thread making blocking calls: it sends push `k` when it
//! is due and the previous call is answered, whichever is later. A server slower than the
//! offered rate makes its calls late; pushes still unsent when the schedule ends are not sent
//! (counted as `unsent`, not as failures), so the number answered says what rate the server
//! kept up with.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use hdrhistogram::Histogram;

use crate::sys::{self, Clock, Rng};

/// How the pushes choose their recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pattern {
    /// `POST /v1/broadcast`: every connection.
    Broadcast,
    /// `POST /v1/users/{u}/notifications`: one random user per push.
    Unicast,
    /// `POST /v1/notifications`: `--k` distinct random users per push.
    Multicast,
}

impl Pattern {
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Broadcast => "broadcast",
            Pattern::Unicast => "unicast",
            Pattern::Multicast => "multicast",
        }
    }
}

/// What the pusher is asked to do.
pub struct Plan {
    pub control: SocketAddr,
    pub host: String,
    pub pattern: Pattern,
    /// Users per multicast push (at most `users`).
    pub k: usize,
    pub rate: f64,
    pub total: u64,
    pub connections: usize,
    /// One request at a time per connection (a synchronous caller) rather than pipelined.
    pub synchronous: bool,
    /// Subscribed connections per user index: the generator's own subscription map.
    pub subscribers: Arc<Vec<u32>>,
    /// Every subscribed connection: what a broadcast should reach.
    pub subscribed_total: u64,
    pub clock: Clock,
    /// Unix ns at which push 0 is due.
    pub start_ns: u64,
    /// The `message` text of every notification, from [`message_text`].
    pub message: String,
    pub pin_cpu: Option<usize>,
}

/// Counters shared with the main thread while pushing.
#[derive(Default)]
pub struct Progress {
    /// Requests written whole.
    pub sent: AtomicU64,
    /// Requests answered, any status.
    pub answered: AtomicU64,
    /// Deliveries expected from the pushes answered 2xx.
    pub expected: AtomicU64,
    /// Writers finished (all their pushes sent, or their connection failed).
    pub writers_done: AtomicU64,
    /// Readers finished.
    pub readers_done: AtomicU64,
    /// The largest delay of a request behind its due time, in ns.
    pub max_lag_ns: AtomicU64,
    /// Unix ns of the latest answer read.
    pub last_answer_ns: AtomicU64,
    /// Synchronous pushes not sent because the schedule ended first.
    pub unsent: AtomicU64,
}

/// What a reader (or a synchronous caller) hands back.
pub struct ReaderReport {
    pub statuses: BTreeMap<u16, u64>,
    /// Call latency in µs: from the push's due time to its answer read, any status.
    pub calls: Histogram<u64>,
    /// Why the connection ended early, if it did.
    pub error: Option<String>,
}

impl ReaderReport {
    fn new() -> Self {
        ReaderReport {
            statuses: BTreeMap::new(),
            calls: latency_histogram(),
            error: None,
        }
    }

    /// Counts the answer to a push due at `due_ns`, read at `now_ns`.
    fn answered(&mut self, status: u16, due_ns: u64, now_ns: u64, progress: &Progress) {
        *self.statuses.entry(status).or_default() += 1;
        let us = now_ns.saturating_sub(due_ns) / 1000;
        self.calls.saturating_record(us.max(1));
        progress.answered.fetch_add(1, Ordering::Relaxed);
        progress.last_answer_ns.fetch_max(now_ns, Ordering::Relaxed);
    }
}

/// A histogram of µs from 1 µs to an hour, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// A running pusher's threads.
pub struct Running {
    pub progress: Arc<Progress>,
    writers: Vec<std::thread::JoinHandle<Option<String>>>,
    readers: Vec<std::thread::JoinHandle<ReaderReport>>,
}

/// What the pusher did, once joined.
pub struct Outcome {
    pub statuses: BTreeMap<u16, u64>,
    /// Call latency in µs over every answer.
    pub calls: Histogram<u64>,
    pub errors: Vec<String>,
}

/// Opens the control connections and starts a writer and a reader on each.
pub fn start(plan: Plan, stop: Arc<AtomicBool>) -> io::Result<Running> {
    let plan = Arc::new(plan);
    let progress = Arc::new(Progress::default());
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for c in 0..plan.connections {
        let stream = TcpStream::connect_timeout(&plan.control, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        // Timeouts only so that a stuck server cannot keep a thread from seeing `stop`.
        stream.set_read_timeout(Some(Duration::from_millis(100)))?;
        stream.set_write_timeout(Some(Duration::from_millis(100)))?;
        if plan.synchronous {
            let (p, pr, st) = (plan.clone(), progress.clone(), stop.clone());
            readers.push(
                std::thread::Builder::new()
                    .name(format!("caller-{c}"))
                    .spawn(move || call_loop(&p, c, stream, &pr, &st))?,
            );
            continue;
        }
        let read_half = stream.try_clone()?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let (p, pr, st) = (plan.clone(), progress.clone(), stop.clone());
        writers.push(
            std::thread::Builder::new()
                .name(format!("push-w{c}"))
                .spawn(move || write_loop(&p, c, stream, tx, &pr, &st))?,
        );
        let (p, pr, st) = (plan.clone(), progress.clone(), stop.clone());
        readers.push(
            std::thread::Builder::new()
                .name(format!("push-r{c}"))
                .spawn(move || read_loop(&p, read_half, rx, &pr, &st))?,
        );
    }
    Ok(Running {
        progress,
        writers,
        readers,
    })
}

impl Running {
    /// Joins every thread (they end once done, or soon after `stop` is set).
    pub fn join(self) -> Outcome {
        let mut outcome = Outcome {
            statuses: BTreeMap::new(),
            calls: latency_histogram(),
            errors: Vec::new(),
        };
        for w in self.writers {
            match w.join() {
                Ok(Some(e)) => outcome.errors.push(e),
                Ok(None) => {}
                Err(_) => outcome.errors.push("a push writer panicked".into()),
            }
        }
        for r in self.readers {
            match r.join() {
                Ok(report) => {
                    for (status, n) in report.statuses {
                        *outcome.statuses.entry(status).or_default() += n;
                    }
                    // Both histograms have the same bounds: adding cannot fail.
                    let _ = outcome.calls.add(&report.calls);
                    outcome.errors.extend(report.error);
                }
                Err(_) => outcome.errors.push("a push reader panicked".into()),
            }
        }
        outcome
    }
}

/// The most request bytes gathered into one `write`.
const MAX_BATCH: usize = 256 * 1024;

fn write_loop(
    plan: &Plan,
    c: usize,
    mut stream: TcpStream,
    expected_tx: Sender<(u64, u64)>,
    progress: &Progress,
    stop: &AtomicBool,
) -> Option<String> {
    sys::maybe_pin(plan.pin_cpu);
    let mut rng = Rng::new();
    let mut batch = Vec::with_capacity(MAX_BATCH + 4096);
    let mut picks = Vec::with_capacity(plan.k);
    let step = plan.connections as u64;
    let due = |k: u64| plan.start_ns + (k as f64 * 1e9 / plan.rate) as u64;
    let mut k = c as u64;
    let mut error = None;
    'push: while k < plan.total && !stop.load(Ordering::Relaxed) {
        let now = plan.clock.now_ns();
        let next_due = due(k);
        if next_due > now {
            std::thread::sleep(Duration::from_nanos(next_due - now));
            continue;
        }
        batch.clear();
        let mut in_batch = 0u64;
        while k < plan.total && due(k) <= now && batch.len() < MAX_BATCH {
            let expected = request(plan, k, due(k), &mut rng, &mut picks, &mut batch);
            // Before the write: the answer must find its entry waiting.
            if expected_tx.send((expected, due(k))).is_err() {
                // The reader ends on its own only when stopped or when the connection failed,
                // and says so itself.
                break 'push;
            }
            progress
                .max_lag_ns
                .fetch_max(now - due(k), Ordering::Relaxed);
            in_batch += 1;
            k += step;
        }
        if let Err(e) = write_all(&mut stream, &batch, stop) {
            error = Some(format!("control connection {c}: write: {e}"));
            break;
        }
        progress.sent.fetch_add(in_batch, Ordering::Relaxed);
    }
    progress.writers_done.fetch_add(1, Ordering::Relaxed);
    error
}

/// One synchronous caller on control connection `c`: each push is sent when due (or when the
/// previous one is answered, if later) and its answer is read before the next is sent.
fn call_loop(
    plan: &Plan,
    c: usize,
    mut stream: TcpStream,
    progress: &Progress,
    stop: &AtomicBool,
) -> ReaderReport {
    sys::maybe_pin(plan.pin_cpu);
    let mut report = ReaderReport::new();
    let mut rng = Rng::new();
    let mut request_buf = Vec::with_capacity(4096);
    let mut picks = Vec::with_capacity(plan.k);
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let step = plan.connections as u64;
    let due = |k: u64| plan.start_ns + (k as f64 * 1e9 / plan.rate) as u64;
    let schedule_end = due(plan.total);
    let mut k = c as u64;
    'push: while k < plan.total && !stop.load(Ordering::Relaxed) {
        let now = plan.clock.now_ns();
        if now >= schedule_end {
            break;
        }
        if due(k) > now {
            std::thread::sleep(Duration::from_nanos(due(k) - now));
            continue;
        }
        progress
            .max_lag_ns
            .fetch_max(now - due(k), Ordering::Relaxed);
        request_buf.clear();
        let expected = request(plan, k, due(k), &mut rng, &mut picks, &mut request_buf);
        if let Err(e) = write_all(&mut stream, &request_buf, stop) {
            report.error = Some(format!("control connection {c}: write: {e}"));
            break;
        }
        progress.sent.fetch_add(1, Ordering::Relaxed);
        loop {
            match parse_response(&buf) {
                Ok(Some((status, len))) => {
                    buf.drain(..len);
                    report.answered(status, due(k), plan.clock.now_ns(), progress);
                    if (200..300).contains(&status) {
                        progress.expected.fetch_add(expected, Ordering::Relaxed);
                    }
                    if !buf.is_empty() {
                        report.error = Some("an answer to a request never sent".into());
                        break 'push;
                    }
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    report.error = Some(format!("control answer: {e}"));
                    break 'push;
                }
            }
            if stop.load(Ordering::Relaxed) {
                report.error = Some("a request unanswered when stopped".into());
                break 'push;
            }
            match stream.read(&mut chunk) {
                Ok(0) => {
                    report.error = Some("control connection closed by the server".into());
                    break 'push;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    report.error = Some(format!("control read: {e}"));
                    break 'push;
                }
            }
        }
        k += step;
    }
    // What the schedule left unsent on this connection: pushes k, k + step, ... below total.
    if report.error.is_none() && k < plan.total {
        let unsent = (plan.total - k).div_ceil(step);
        progress.unsent.fetch_add(unsent, Ordering::Relaxed);
    }
    progress.writers_done.fetch_add(1, Ordering::Relaxed);
    progress.readers_done.fetch_add(1, Ordering::Relaxed);
    report
}

/// Writes all of `buf`, riding out write timeouts until `stop`.
fn write_all(stream: &mut TcpStream, mut buf: &[u8], stop: &AtomicBool) -> io::Result<()> {
    while !buf.is_empty() {
        match stream.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    return Err(io::Error::other("stopped while the server was not reading"));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Appends push `seq`'s request to `out` and returns how many deliveries it should make.
fn request(
    plan: &Plan,
    seq: u64,
    due_ns: u64,
    rng: &mut Rng,
    picks: &mut Vec<u32>,
    out: &mut Vec<u8>,
) -> u64 {
    let notification = format!(
        r#"{{"type":"BENCH","message":"{}","data":{{"seq":{seq},"t":{due_ns}}}}}"#,
        plan.message
    );
    let users = plan.subscribers.len() as u64;
    let (path, body, expected) = match plan.pattern {
        Pattern::Broadcast => (
            "/v1/broadcast".to_string(),
            format!(r#"{{"notification":{notification}}}"#),
            plan.subscribed_total,
        ),
        Pattern::Unicast => {
            let u = rng.below(users) as usize;
            (
                format!("/v1/users/user-{u}/notifications"),
                notification,
                u64::from(plan.subscribers[u]),
            )
        }
        Pattern::Multicast => {
            picks.clear();
            while picks.len() < plan.k {
                let u = rng.below(users) as u32;
                if !picks.contains(&u) {
                    picks.push(u);
                }
            }
            let ids: Vec<String> = picks.iter().map(|u| format!("\"user-{u}\"")).collect();
            let expected = picks
                .iter()
                .map(|&u| u64::from(plan.subscribers[u as usize]))
                .sum();
            (
                "/v1/notifications".to_string(),
                format!(
                    r#"{{"userIds":[{}],"notification":{notification}}}"#,
                    ids.join(",")
                ),
                expected,
            )
        }
    };
    let _ = write!(
        out,
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        plan.host,
        body.len()
    );
    expected
}

/// What a long `message` is made of: words, so that it compresses about as prose does rather than
/// as a run of one byte would. Plain ASCII, nothing to escape in JSON.
const WORDS: [&str; 32] = [
    "your", "order", "has", "shipped", "and", "will", "arrive", "on", "monday", "between", "nine",
    "noon", "a", "new", "message", "from", "the", "team", "about", "project", "review", "is",
    "ready", "payment", "of", "received", "for", "invoice", "reminder", "meeting", "starts", "in",
];

/// The `message` text of every notification: `m` unless `size` asks for that many bytes of
/// words. The words are the same on every run, so runs compress alike.
pub fn message_text(size: Option<usize>) -> String {
    let Some(size) = size else {
        return "m".into();
    };
    let mut rng = Rng::with_seed(0x6865_7261_6C64);
    let mut text = String::with_capacity(size + 16);
    while text.len() < size {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    text.truncate(size);
    text
}

/// The longest response head or chunk-size line the reader waits for.
const MAX_HEAD: usize = 64 * 1024;

fn read_loop(
    plan: &Plan,
    mut stream: TcpStream,
    expected_rx: Receiver<(u64, u64)>,
    progress: &Progress,
    stop: &AtomicBool,
) -> ReaderReport {
    sys::maybe_pin(plan.pin_cpu);
    let mut report = ReaderReport::new();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    // Expected counts and due times of requests sent and not yet answered, oldest first.
    let mut waiting: VecDeque<(u64, u64)> = VecDeque::new();
    let mut writer_done = false;
    'outer: loop {
        loop {
            match expected_rx.try_recv() {
                Ok(e) => waiting.push_back(e),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    writer_done = true;
                    break;
                }
            }
        }
        // Every whole response in the buffer, dropped from it in one go afterwards.
        let mut used = 0;
        loop {
            match parse_response(&buf[used..]) {
                Ok(Some((status, len))) => {
                    used += len;
                    let Some((expected, due_ns)) = waiting.pop_front() else {
                        report.error = Some("an answer to a request never sent".into());
                        break 'outer;
                    };
                    report.answered(status, due_ns, plan.clock.now_ns(), progress);
                    if (200..300).contains(&status) {
                        progress.expected.fetch_add(expected, Ordering::Relaxed);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    report.error = Some(format!("control answer: {e}"));
                    break 'outer;
                }
            }
        }
        buf.drain(..used);
        // Done once the writer is gone and everything it sent is answered.
        if writer_done && waiting.is_empty() && buf.is_empty() {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            let unanswered = waiting.len() + expected_rx.len();
            if unanswered > 0 {
                report.error = Some(format!("{unanswered} requests unanswered when stopped"));
            }
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                if !waiting.is_empty() || !expected_rx.is_empty() {
                    report.error = Some("control connection closed by the server".into());
                }
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                report.error = Some(format!("control read: {e}"));
                break;
            }
        }
    }
    progress.readers_done.fetch_add(1, Ordering::Relaxed);
    report
}

/// Parses one whole HTTP/1.1 response (head and body, `Content-Length` or chunked) from the
/// start of `buf`: its status and length, or `Ok(None)` while incomplete.
pub fn parse_response(buf: &[u8]) -> Result<Option<(u16, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err("response head too long".into())
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.code.unwrap_or(0);
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let chunked = header("transfer-encoding").is_some_and(|v| {
        std::str::from_utf8(v).is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
    });
    if chunked {
        return Ok(chunked_end(buf, head)?.map(|end| (status, end)));
    }
    let length = match header("content-length") {
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or("bad Content-Length")?,
        // 1xx, 204 and 304 have no body; anything else without a length is not keep-alive.
        None if status < 200 || status == 204 || status == 304 => 0,
        None => return Err(format!("status {status} without Content-Length")),
    };
    Ok((buf.len() >= head + length).then_some((status, head + length)))
}

/// Where a chunked body starting at `pos` ends (after the trailer), if it is all there.
fn chunked_end(buf: &[u8], mut pos: usize) -> Result<Option<usize>, String> {
    loop {
        let Some(eol) = crate::proto::find(&buf[pos..], b"\r\n") else {
            return if buf.len() - pos > MAX_HEAD {
                Err("chunk size line too long".into())
            } else {
                Ok(None)
            };
        };
        let line = std::str::from_utf8(&buf[pos..pos + eol]).map_err(|e| e.to_string())?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| "bad chunk size")?;
        pos += eol + 2;
        if size == 0 {
            // Trailer lines until an empty one.
            loop {
                let Some(eol) = crate::proto::find(&buf[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some(pos));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        pos += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_text_has_the_size_asked_for() {
        assert_eq!(message_text(None), "m");
        assert_eq!(message_text(Some(0)), "");
        for size in [1, 7, 1000, 4096] {
            let text = message_text(Some(size));
            assert_eq!(text.len(), size);
            assert_eq!(text, message_text(Some(size)), "the same on every call");
            let json = format!(r#"{{"message":"{text}"}}"#);
            assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok());
        }
    }

    #[test]
    fn responses_with_length_chunked_and_partial() {
        let a = b"HTTP/1.1 202 Accepted\r\nContent-Length: 13\r\n\r\n{\"sockets\":1}";
        assert_eq!(parse_response(a), Ok(Some((202, a.len()))));
        assert_eq!(parse_response(&a[..a.len() - 1]), Ok(None));
        let c = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n";
        assert_eq!(parse_response(c), Ok(Some((201, c.len()))));
        assert_eq!(parse_response(&c[..c.len() - 2]), Ok(None));
        let mut two = a.to_vec();
        two.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(parse_response(&two), Ok(Some((202, a.len()))));
        assert_eq!(
            parse_response(&two[a.len()..]),
            Ok(Some((204, two.len() - a.len())))
        );
    }
}
