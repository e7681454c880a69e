//! The soak's pushers: synchronous callers of the control API that keep pushing, at given rates,
//! through herald's restarts and a cluster node's death, and keep every answer.
//!
//! Each pusher thread holds one keep-alive connection and makes one call at a time: push `j` of
//! its schedule is due at `start + j / rate`, and goes out when due or when the previous call is
//! answered, whichever is later. Its kind (one user, `k` users, everyone) is drawn by the weight
//! of the three rates. Every push gets a `seq` unique over the run, carried in the notification,
//! and a [`PushRecord`], whatever became of it: a call that failed (refused, reset, no answer
//! within [`ANSWER_TIMEOUT`]) is recorded with status 0 and never retried, since its outcome is
//! unknown; the next push, with a new seq, goes to the next control address once a connection
//! can be made again (after a backoff doubling from [`BACKOFF_MIN`] to [`BACKOFF_MAX`]; a push
//! due meanwhile is recorded with status 0 without a call). A
//! pusher more than [`MAX_LAG`] behind its schedule (after an outage) starts it again from now,
//! so that pushes missed while away do not come in a burst: they are counted in
//! [`Live::pushes_skipped`], not recorded.
//!
//! Pushers never judge what was delivered: that is the ledger's work, from their records.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::pusher::parse_response;
use crate::soak::record::{Offset, PushRecord, Target};
use crate::sys::{Clock, Rng};

/// How long a call waits for its answer (and a connection for its connect) before it counts as
/// failed.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait before connecting again after a failure; it doubles on each failure in a row.
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How far behind its schedule a pusher may fall before it starts the schedule again from now.
pub const MAX_LAG: Duration = Duration::from_secs(1);
/// The longest a pusher sleeps at once while waiting for a push to be due, so that it sees
/// `stop` soon.
const SLEEP_SLICE: Duration = Duration::from_millis(50);

/// Counters the run's parts add to as it goes, read by the sampler: all cumulative but
/// `clients_connected`.
#[derive(Debug, Default)]
pub struct Live {
    /// Pushes answered 2xx.
    pub pushes_accepted: AtomicU64,
    /// Pushes answered otherwise, or not at all.
    pub pushes_failed: AtomicU64,
    /// Pushes not made because their pusher was more than a second behind its schedule (after
    /// an outage): neither accepted nor failed, and not recorded.
    pub pushes_skipped: AtomicU64,
    /// Client connections subscribed now (the clients add and take away).
    pub clients_connected: AtomicU64,
    /// Notifications the clients received.
    pub deliveries: AtomicU64,
}

/// What the pushers are asked to do.
pub struct Plan {
    /// Control API addresses and the `Host` header for each.
    pub controls: Vec<(SocketAddr, String)>,
    /// Sent as `Authorization: Bearer`.
    pub api_key: Option<String>,
    /// Users are `0..users`; user `u` is `format!("{user_prefix}{u}")`.
    pub users: u32,
    pub user_prefix: String,
    /// Pushes per second over all pushers, by kind.
    pub unicast_rate: f64,
    pub multi_rate: f64,
    /// Distinct users per multi-user push (at most `users`).
    pub k: usize,
    pub broadcast_rate: f64,
    /// Threads; the total rate is split evenly between them.
    pub pushers: usize,
    /// Seed of the kinds and users drawn.
    pub seed: u64,
    pub clock: Clock,
}

/// The running pusher threads.
pub struct Pushers {
    threads: Vec<JoinHandle<Vec<PushRecord>>>,
}

/// Checks the plan and starts its threads; they push until `stop` is set.
pub fn start(plan: Plan, stop: Arc<AtomicBool>, live: Arc<Live>) -> io::Result<Pushers> {
    let invalid = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, why.to_string()));
    let rates = [plan.unicast_rate, plan.multi_rate, plan.broadcast_rate];
    if rates.iter().any(|r| !(r.is_finite() && *r >= 0.0)) {
        return invalid("a push rate is a number >= 0");
    }
    if rates.iter().sum::<f64>() <= 0.0 {
        return invalid("no push rate above 0");
    }
    if plan.controls.is_empty() {
        return invalid("no control address");
    }
    if plan.pushers == 0 {
        return invalid("no pusher");
    }
    if (plan.unicast_rate > 0.0 || plan.multi_rate > 0.0) && plan.users == 0 {
        return invalid("pushes to users with no user");
    }
    if plan.multi_rate > 0.0 && (plan.k == 0 || plan.k > plan.users as usize) {
        return invalid("users per multi-user push: k must be in 1..=users");
    }
    let plan = Arc::new(plan);
    let next_seq = Arc::new(AtomicU64::new(1));
    let mut threads = Vec::with_capacity(plan.pushers);
    for i in 0..plan.pushers {
        let (p, seq, st, lv) = (plan.clone(), next_seq.clone(), stop.clone(), live.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("soak-push-{i}"))
            .spawn(move || Caller::new(&p, i).run(&seq, &st, &lv));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                // Those started stop at once and are not waited for.
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
    }
    Ok(Pushers { threads })
}

impl Pushers {
    /// Waits for every thread (each ends within [`ANSWER_TIMEOUT`] of `stop`) and returns every
    /// push made, any outcome, by seq.
    pub fn join(self) -> Vec<PushRecord> {
        let mut records = Vec::new();
        for t in self.threads {
            match t.join() {
                Ok(r) => records.extend(r),
                Err(_) => eprintln!("soak: a pusher thread panicked; its pushes are not counted"),
            }
        }
        records.sort_unstable_by_key(|r| r.seq);
        records
    }
}

/// What one answer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// A 2xx answer's `offset`: the push is in the log.
    pub offset: Option<Offset>,
    /// A 2xx answer's `"cluster":"degraded"`: not logged, owed to nobody.
    pub degraded: bool,
}

/// Reads one whole answer from the start of `buf`: what it says and its length, or `Ok(None)`
/// while incomplete. A 2xx body that is not the JSON expected is an answer without an offset.
pub fn parse_answer(buf: &[u8]) -> Result<Option<(Answer, usize)>, String> {
    let Some((status, len)) = parse_response(buf)? else {
        return Ok(None);
    };
    let mut answer = Answer {
        status,
        offset: None,
        degraded: false,
    };
    if (200..300).contains(&status) {
        let body = response_body(&buf[..len]).unwrap_or_default();
        if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(&body) {
            answer.offset = fields
                .get("offset")
                .and_then(|o| o.as_str())
                .and_then(Offset::parse);
            answer.degraded = fields.get("cluster").and_then(|c| c.as_str()) == Some("degraded");
        }
    }
    Ok(Some((answer, len)))
}

/// The body of one whole response (as [`parse_response`] delimits it), chunks joined; `None`
/// when it is not one.
pub fn response_body(response: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = resp.parse(response).ok()? else {
        return None;
    };
    let chunked = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && std::str::from_utf8(h.value)
                .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
    });
    let rest = &response[head..];
    if !chunked {
        return Some(Cow::Borrowed(rest));
    }
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let eol = crate::proto::find(&rest[pos..], b"\r\n")?;
        let line = std::str::from_utf8(&rest[pos..pos + eol]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        pos += eol + 2;
        if size == 0 {
            return Some(Cow::Owned(body));
        }
        body.extend_from_slice(rest.get(pos..pos + size)?);
        pos += size + 2;
    }
}

/// One keep-alive connection to a control address and the bytes read from it not yet used.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, ANSWER_TIMEOUT)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Whether the server closed the connection (or sent something unasked) while it idled: a
    /// request written on it would fail for no fault of the server's.
    fn stale(&self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return true;
        }
        let stale = match self.stream.peek(&mut [0u8; 1]) {
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
            Ok(_) => true,
        };
        self.stream.set_nonblocking(false).is_err() || stale
    }

    /// Writes `request` and reads its answer, giving up at `deadline`. The answer and whether
    /// the connection may carry the next call (nothing unasked came after it).
    fn call(&mut self, request: &[u8], deadline: Instant) -> io::Result<(Answer, bool)> {
        let left = |deadline: Instant| {
            let d = deadline.saturating_duration_since(Instant::now());
            if d.is_zero() {
                Err(io::Error::from(io::ErrorKind::TimedOut))
            } else {
                Ok(d)
            }
        };
        self.stream.set_write_timeout(Some(left(deadline)?))?;
        self.stream.write_all(request)?;
        let mut chunk = [0u8; 4096];
        loop {
            match parse_answer(&self.buf) {
                Ok(Some((answer, len))) => {
                    self.buf.drain(..len);
                    return Ok((answer, self.buf.is_empty()));
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            self.stream.set_read_timeout(Some(left(deadline)?))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::ErrorKind::TimedOut.into())
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// One pusher thread's state.
struct Caller<'a> {
    plan: &'a Plan,
    /// Which of the plan's threads this is.
    index: usize,
    /// Pushes per second of this thread.
    rate: f64,
    rng: Rng,
    /// The control address asked now (or next, while disconnected).
    node: usize,
    conn: Option<Conn>,
    /// No connection is tried before this.
    retry_at: Instant,
    /// The wait after the next failure.
    backoff: Duration,
}

impl<'a> Caller<'a> {
    fn new(plan: &'a Plan, i: usize) -> Caller<'a> {
        let seed = plan
            .seed
            .wrapping_add((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let total = plan.unicast_rate + plan.multi_rate + plan.broadcast_rate;
        Caller {
            plan,
            index: i,
            rate: total / plan.pushers as f64,
            rng: Rng::with_seed(seed),
            node: i % plan.controls.len(),
            conn: None,
            retry_at: Instant::now(),
            backoff: BACKOFF_MIN,
        }
    }

    fn run(mut self, next_seq: &AtomicU64, stop: &AtomicBool, live: &Live) -> Vec<PushRecord> {
        let clock = self.plan.clock;
        let period_ns = 1e9 / self.rate;
        // Thread i starts i / pushers of a period late, so that the threads' pushes interleave.
        let mut base =
            clock.now_ns() + (self.index as f64 * period_ns / self.plan.pushers as f64) as u64;
        let mut j = 0u64;
        let mut records = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let due = base + (j as f64 * period_ns) as u64;
            let now = clock.now_ns();
            if due > now {
                std::thread::sleep(Duration::from_nanos(due - now).min(SLEEP_SLICE));
                continue;
            }
            let lag = now - due;
            if lag > MAX_LAG.as_nanos() as u64 {
                // This push goes now; those due since its due time are dropped.
                let skipped = (lag as f64 / period_ns) as u64;
                live.pushes_skipped.fetch_add(skipped, Ordering::Relaxed);
                base = now;
                j = 0;
            }
            j += 1;
            let record = self.push(next_seq.fetch_add(1, Ordering::Relaxed));
            let counter = if record.accepted() {
                &live.pushes_accepted
            } else {
                &live.pushes_failed
            };
            counter.fetch_add(1, Ordering::Relaxed);
            records.push(record);
        }
        records
    }

    /// Makes push `seq` now: draws its target, calls, and records what came of it.
    fn push(&mut self, seq: u64) -> PushRecord {
        let clock = self.plan.clock;
        let target = self.draw_target();
        let now = clock.now_ns();
        let mut record = PushRecord {
            seq,
            target,
            status: 0,
            offset: None,
            degraded: false,
            node: self.node,
            sent_ns: now,
            answered_ns: now,
        };
        if self.conn.as_ref().is_some_and(Conn::stale) {
            // Closed while idle (herald's idle timeout, or it went away): a new connection to
            // the same address, tried now, says which.
            self.conn = None;
            self.retry_at = Instant::now();
        }
        if self.conn.is_none() {
            if Instant::now() < self.retry_at {
                return record;
            }
            match Conn::open(self.plan.controls[self.node].0) {
                Ok(c) => self.conn = Some(c),
                Err(_) => {
                    self.failed();
                    record.answered_ns = clock.now_ns();
                    return record;
                }
            }
        }
        // Stamped when written: connecting may have taken a while.
        record.sent_ns = clock.now_ns();
        let request = self.request(&record.target, seq, record.sent_ns);
        let outcome = match self.conn.as_mut() {
            Some(conn) => conn.call(&request, Instant::now() + ANSWER_TIMEOUT),
            None => Err(io::ErrorKind::NotConnected.into()),
        };
        record.answered_ns = clock.now_ns();
        match outcome {
            Ok((answer, reusable)) => {
                record.status = answer.status;
                record.offset = answer.offset;
                record.degraded = answer.degraded;
                self.backoff = BACKOFF_MIN;
                if !reusable {
                    self.conn = None;
                }
            }
            Err(_) => self.failed(),
        }
        record
    }

    /// A connection failed or could not be made: the next one goes to the next address, after
    /// the backoff.
    fn failed(&mut self) {
        self.conn = None;
        self.node = (self.node + 1) % self.plan.controls.len();
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Draws a kind by the weight of its rate, then its users.
    fn draw_target(&mut self) -> Target {
        let p = self.plan;
        let total = p.unicast_rate + p.multi_rate + p.broadcast_rate;
        // 53 random bits: a uniform number in [0, total).
        let x = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        if x < p.unicast_rate {
            Target::User(self.rng.below(u64::from(p.users)) as u32)
        } else if x < p.unicast_rate + p.multi_rate || p.broadcast_rate == 0.0 {
            Target::Users(distinct_users(&mut self.rng, p.users, p.k))
        } else {
            Target::All
        }
    }

    /// The HTTP request of push `seq` to `target`, its notification stamped `now_ns`.
    fn request(&self, target: &Target, seq: u64, now_ns: u64) -> Vec<u8> {
        let p = self.plan;
        let notification =
            format!(r#"{{"type":"SOAK","message":"m","data":{{"seq":{seq},"t":{now_ns}}}}}"#);
        let user = |u: u32| format!("{}{u}", p.user_prefix);
        let (path, body) = match target {
            Target::User(u) => (
                format!("/v1/users/{}/notifications", path_segment(&user(*u))),
                notification,
            ),
            Target::Users(us) => {
                let ids: Vec<String> = us.iter().map(|&u| json_string(&user(u))).collect();
                (
                    "/v1/notifications".to_string(),
                    format!(
                        r#"{{"userIds":[{}],"notification":{notification}}}"#,
                        ids.join(",")
                    ),
                )
            }
            Target::All => (
                "/v1/broadcast".to_string(),
                format!(r#"{{"notification":{notification}}}"#),
            ),
        };
        let mut out = Vec::with_capacity(256 + body.len());
        let _ = write!(
            out,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n",
            p.controls[self.node].1,
            body.len()
        );
        if let Some(key) = &p.api_key {
            let _ = write!(out, "Authorization: Bearer {key}\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
        out
    }
}

/// `k` distinct users of `0..users` (`k <= users`), by Floyd's algorithm: `k` draws whatever
/// the ratio, no retries.
fn distinct_users(rng: &mut Rng, users: u32, k: usize) -> Vec<u32> {
    let k = (k as u32).min(users);
    let mut picks: Vec<u32> = Vec::with_capacity(k as usize);
    for j in users - k..users {
        let t = rng.below(u64::from(j) + 1) as u32;
        picks.push(if picks.contains(&t) { j } else { t });
    }
    picks
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// `s` percent-encoded as one path segment (RFC 3986 §2.3: unreserved characters stay).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A whole response with `head` (status line and headers) and `body`.
    fn response(head: &str, body: &str) -> Vec<u8> {
        format!("{head}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    }

    macro_rules! answer {
        ($head:expr, $body:expr => $status:expr, $offset:expr, $degraded:expr) => {{
            let r = response($head, $body);
            let (answer, len) = parse_answer(&r).unwrap().unwrap();
            assert_eq!(len, r.len());
            let expected = Answer {
                status: $status,
                offset: $offset,
                degraded: $degraded,
            };
            assert_eq!(answer, expected, "{}", $body);
        }};
    }

    #[test]
    fn answers_say_status_offset_and_degraded() {
        let offset = Some(Offset { epoch: 0xab, n: 7 });
        let accepted = "HTTP/1.1 202 Accepted";
        answer!(accepted, r#"{"sockets":2,"offset":"ab-7"}"# => 202, offset, false);
        answer!(accepted, r#"{"nodes":1,"cluster":"ok","offset":"ab-7"}"# => 202, offset, false);
        answer!(accepted, r#"{"sockets":3,"cluster":"degraded"}"# => 202, None, true);
        // Not counted by the loop within its reply timeout: accepted, offset unknown.
        answer!(accepted, r#"{"accepted":true}"# => 202, None, false);
        // Not 2xx: the body is not read for an offset.
        answer!(
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1",
            r#"{"error":"rate limited","retryAfter":1,"offset":"ab-7"}"# => 429, None, false
        );
        answer!(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1",
            r#"{"error":"shutting down","offset":"ab-7"}"# => 503, None, false
        );
        // An offset herald would not write, and a body that is not JSON: no offset.
        answer!(accepted, r#"{"offset":"zz-7"}"# => 202, None, false);
        answer!(accepted, "ok" => 202, None, false);

        let chunked = b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n\
            5\r\n{\"off\r\nC\r\nset\":\"ab-7\"}\r\n0\r\n\r\n";
        let (answer, len) = parse_answer(chunked).unwrap().unwrap();
        assert_eq!((answer.offset, len), (offset, chunked.len()));

        let whole = response(accepted, r#"{"accepted":true}"#);
        assert_eq!(parse_answer(&whole[..whole.len() - 1]), Ok(None));
        assert!(parse_answer(b"SMTP nonsense\r\n\r\n").is_err());
    }

    #[test]
    fn multi_user_pushes_draw_distinct_users() {
        let mut rng = Rng::with_seed(5);
        for (users, k) in [(10, 3), (10, 10), (1, 1), (1000, 10)] {
            for _ in 0..100 {
                let mut picks = distinct_users(&mut rng, users, k);
                assert_eq!(picks.len(), k);
                assert!(picks.iter().all(|&u| u < users));
                picks.sort_unstable();
                picks.dedup();
                assert_eq!(picks.len(), k);
            }
        }
    }

    #[test]
    fn user_ids_are_escaped_in_paths_and_bodies() {
        assert_eq!(path_segment("soak-1"), "soak-1");
        assert_eq!(path_segment("a b/é"), "a%20b%2F%C3%A9");
        assert_eq!(json_string("a\"b"), r#""a\"b""#);
    }

    /// One request read off `stream`: its path and JSON body; `None` once the client closed.
    fn read_request(
        stream: &mut TcpStream,
        buf: &mut Vec<u8>,
    ) -> Option<(String, serde_json::Value)> {
        let mut chunk = [0u8; 4096];
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(head)) = req.parse(buf) {
                let length: usize = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                    .unwrap();
                if buf.len() >= head + length {
                    let path = req.path.unwrap().to_string();
                    let body = serde_json::from_slice(&buf[head..head + length]).unwrap();
                    buf.drain(..head + length);
                    return Some((path, body));
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Answers `202` with the offset `ab-<seq>` of the push asked.
    fn answer_with_offset(stream: &mut TcpStream, body: &serde_json::Value) {
        let notification = body.get("notification").unwrap_or(body);
        assert_eq!(notification["type"], "SOAK");
        assert!(notification["data"]["t"].as_u64().unwrap() > 0);
        let seq = notification["data"]["seq"].as_u64().unwrap();
        let json = format!(r#"{{"sockets":1,"offset":"ab-{seq}"}}"#);
        let answer = format!(
            "HTTP/1.1 202 Accepted\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        );
        stream.write_all(answer.as_bytes()).unwrap();
    }

    fn plan(controls: Vec<(SocketAddr, String)>, pushers: usize, rate: f64) -> Plan {
        Plan {
            controls,
            api_key: Some("k3y".into()),
            users: 20,
            user_prefix: "soak-".into(),
            unicast_rate: rate * 0.6,
            multi_rate: rate * 0.3,
            k: 3,
            broadcast_rate: rate * 0.1,
            pushers,
            seed: 1,
            clock: Clock::new(),
        }
    }

    #[test]
    fn a_server_that_closes_mid_call_costs_one_push_and_a_reconnection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (back_tx, back_rx) = crossbeam_channel::bounded(1);
        let server = std::thread::spawn(move || {
            let mut paths = Vec::new();
            // The first connection: three pushes answered, the fourth read and not answered.
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = Vec::new();
            for _ in 0..3 {
                let (path, body) = read_request(&mut stream, &mut buf).unwrap();
                answer_with_offset(&mut stream, &body);
                paths.push(path);
            }
            read_request(&mut stream, &mut buf).unwrap();
            drop(stream);
            // The pusher comes back: everything answered until it stops.
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = Vec::new();
            while let Some((path, body)) = read_request(&mut stream, &mut buf) {
                answer_with_offset(&mut stream, &body);
                paths.push(path);
                if paths.len() == 10 {
                    let _ = back_tx.send(());
                }
            }
            paths
        });
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Live::default());
        let pushers = start(
            plan(vec![(addr, "control".into())], 1, 40.0),
            stop.clone(),
            live.clone(),
        )
        .unwrap();
        back_rx.recv_timeout(Duration::from_secs(60)).unwrap();
        stop.store(true, Ordering::Relaxed);
        let records = pushers.join();
        let paths = server.join().unwrap();

        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=records.len() as u64).collect::<Vec<_>>());
        for r in &records[..3] {
            assert_eq!(
                (r.status, r.offset),
                (
                    202,
                    Some(Offset {
                        epoch: 0xab,
                        n: r.seq
                    })
                )
            );
        }
        assert_eq!(records[3].status, 0, "the call the server closed on");
        assert_eq!(records[3].offset, None);
        // Pushes due during the backoff fail without a call; then the new connection answers
        // every one.
        let back = records[4..].iter().position(|r| r.status == 202).unwrap() + 4;
        assert!(records[3..back].iter().all(|r| r.status == 0));
        for r in &records[back..] {
            assert_eq!(
                (r.status, r.offset),
                (
                    202,
                    Some(Offset {
                        epoch: 0xab,
                        n: r.seq
                    })
                )
            );
        }
        for r in &records {
            assert_eq!(r.node, 0);
            assert!(r.answered_ns >= r.sent_ns);
        }
        let failed = records.iter().filter(|r| !r.accepted()).count() as u64;
        assert_eq!(live.pushes_failed.load(Ordering::Relaxed), failed);
        assert_eq!(
            live.pushes_accepted.load(Ordering::Relaxed),
            records.len() as u64 - failed
        );
        assert_eq!(paths.len() as u64, records.len() as u64 - failed);
        for (r, p) in records.iter().filter(|r| r.accepted()).zip(&paths) {
            let expected = match &r.target {
                Target::User(u) => format!("/v1/users/soak-{u}/notifications"),
                Target::Users(us) => {
                    assert_eq!(us.len(), 3);
                    "/v1/notifications".into()
                }
                Target::All => "/v1/broadcast".into(),
            };
            assert_eq!(p, &expected);
        }
    }

    #[test]
    fn nothing_listening_fails_every_push_without_spinning() {
        // Ports just freed: connections to them are refused.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let other = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Live::default());
        let controls = vec![(addr, "a".into()), (other, "b".into())];
        let clock = Clock::new();
        let started = clock.now_ns();
        let pushers = start(plan(controls, 2, 100.0), stop.clone(), live.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let records = pushers.join();
        let elapsed_s = (clock.now_ns() - started) as f64 / 1e9;
        // One record per push due, none more: failures are not retried.
        assert!(!records.is_empty());
        assert!(records.len() as f64 <= elapsed_s * 100.0 + 2.0);
        assert!(records.iter().all(|r| r.status == 0 && r.offset.is_none()));
        // Each thread starts on its own address.
        assert!(records.iter().any(|r| r.node == 0) && records.iter().any(|r| r.node == 1));
        assert_eq!(
            live.pushes_failed.load(Ordering::Relaxed),
            records.len() as u64
        );
        assert_eq!(live.pushes_accepted.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_pusher_far_behind_starts_its_schedule_again() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (back_tx, back_rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = Vec::new();
            let mut answered = 0;
            while let Some((_, body)) = read_request(&mut stream, &mut buf) {
                if answered == 0 {
                    // 1.5 s behind at 20/s: 30 pushes fall due meanwhile.
                    std::thread::sleep(Duration::from_millis(1500));
                }
                answer_with_offset(&mut stream, &body);
                answered += 1;
                if answered == 3 {
                    let _ = back_tx.send(());
                }
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Live::default());
        let p = plan(vec![(addr, "c".into())], 1, 20.0);
        let clock = p.clock;
        let pushers = start(p, stop.clone(), live.clone()).unwrap();
        back_rx.recv_timeout(Duration::from_secs(60)).unwrap();
        stop.store(true, Ordering::Relaxed);
        let stopped = clock.now_ns();
        let records = pushers.join();
        let skipped = live.pushes_skipped.load(Ordering::Relaxed);
        assert!(skipped >= 20, "{skipped} skipped");
        assert!(records.iter().all(|r| r.status == 202));
        // After the slow call, the pushes follow the schedule again from then: no burst of
        // those skipped.
        let after = (stopped - records[0].answered_ns) as f64 / 1e9;
        assert!(
            (records.len() - 1) as f64 <= after * 20.0 + 2.0,
            "{} pushes in {after} s",
            records.len() - 1
        );
    }
}
