//! The ordered log of pushes: every push the control API accepts gets the next offset and is kept,
//! with who it was for, for `--recovery-window` and at most `--recovery-max-bytes`, so that a
//! client that reconnects with the last offset it saw is handed what it missed.
//!
//! An offset is the log's **epoch** and a sequence number, written `"<epoch>-<seq>"` (the
//! epoch in hex); clients treat it as opaque. The epoch changes whenever offsets from before can
//! no longer be honoured: a start without the state a clean exit left in `--state-dir`. An
//! offset is honoured when it is of this epoch, not past the newest push, and nothing after it
//! has been dropped for age or size.
//!
//! Appending is O(1) whatever the number of recipients: the record holds the push's target as
//! the control API gave it (the user ids, moved, not copied per recipient) and the one
//! serialized notification every recipient's frame is built from. Reading what a client missed
//! walks the records after its offset (found by index, not by search) and keeps those that reach
//! its users.
//!
//! The log is behind one lock, which the router holds while it appends a push and hands it to
//! the workers, and while it answers a client's join: so a worker sees pushes and joins in
//! offset order, and replays exactly what came before a join while its queue brings what came
//! after (see [`crate::router::Router::join`]). No I/O but [`Log::save`] and [`Log::load`].

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use crate::command::Target;

/// What a record costs beyond its notification and user ids: the record, its `Arc`, its slot.
const RECORD_OVERHEAD: usize = 128;

/// One push as the log keeps it.
#[derive(Debug)]
pub struct Record {
    pub seq: u64,
    /// When it was appended, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who it was for. For [`Target::Users`], every user the push was accepted for, connected
    /// or not.
    pub target: Target,
    /// For a broadcast under `--user-rate`: users whose sockets were passed over.
    pub except: Vec<String>,
    /// The serialized notification.
    pub notification: Bytes,
    /// `"<epoch>-<seq>"`, as clients see it.
    pub offset: Arc<str>,
    /// The event's name when it is not `notification` (a push from the Redis emitter).
    pub event: Option<Arc<str>>,
}

impl Record {
    /// Whether this push reaches a member holding `users` (a broadcast reaches everyone but the
    /// users it passed over).
    pub fn reaches(&self, users: &[String]) -> bool {
        match &self.target {
            Target::User(u) => users.iter().any(|x| x == u),
            Target::Users(list) => list.iter().any(|u| users.contains(u)),
            Target::All => !users.iter().any(|u| self.except.contains(u)),
        }
    }

    fn cost(&self) -> usize {
        let users = match &self.target {
            Target::User(u) => u.len(),
            Target::Users(list) => list.iter().map(|u| u.len() + 24).sum(),
            Target::All => 0,
        };
        RECORD_OVERHEAD
            + users
            + self.except.iter().map(|u| u.len() + 24).sum::<usize>()
            + self.notification.len()
            + self.offset.len()
    }
}

/// Why an offset a client gave cannot be honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrecoverable {
    /// Not an offset herald writes.
    Malformed,
    /// Of another epoch: a herald that restarted without its state, or another cluster.
    OtherEpoch,
    /// Past the newest push: not an offset this log gave.
    Ahead,
    /// Pushes after it were dropped: older than `--recovery-window` or `--recovery-max-bytes`.
    TooOld,
    /// The cluster's log could not be read (Redis is unreachable).
    Unavailable,
}

/// The log: its epoch, its bounds and its records.
pub struct Log {
    /// The records' epoch, readable without the lock; it changes only for a cluster's log
    /// (see [`Records::reset`]).
    epoch: std::sync::atomic::AtomicU64,
    window: Duration,
    max_bytes: usize,
    inner: Mutex<Records>,
}

/// The records, behind the log's lock.
pub struct Records {
    epoch: u64,
    records: VecDeque<Arc<Record>>,
    /// The sequence number the next push gets; the newest is `next - 1`.
    next: u64,
    /// Every push up to this one has been dropped (0: none).
    dropped: u64,
    bytes: usize,
    window_ms: u64,
    max_bytes: usize,
    /// Saved for the next start: nothing more may be appended, or its offset would be given
    /// again after the restart.
    closed: bool,
}

impl Log {
    /// An empty log with a new epoch.
    pub fn new(window: Duration, max_bytes: usize) -> Self {
        Log::with(new_epoch(), 1, VecDeque::new(), window, max_bytes)
    }

    fn with(
        epoch: u64,
        next: u64,
        records: VecDeque<Arc<Record>>,
        window: Duration,
        max_bytes: usize,
    ) -> Self {
        let bytes = records.iter().map(|r| r.cost()).sum();
        let dropped = records.front().map_or(next - 1, |r| r.seq - 1);
        Log {
            epoch: epoch.into(),
            window,
            max_bytes,
            inner: Mutex::new(Records {
                epoch,
                records,
                next,
                dropped,
                bytes,
                window_ms: window.as_millis() as u64,
                max_bytes,
                closed: false,
            }),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts the log over with `epoch`, dropping every record: a cluster's log whose Redis
    /// lost its data.
    pub fn reset(&self, records: &mut Records, epoch: u64) {
        records.epoch = epoch;
        records.records.clear();
        records.bytes = 0;
        records.next = 1;
        records.dropped = 0;
        self.epoch
            .store(epoch, std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes the log's lock. A thread that panicked holding it left the records consistent
    /// (every change is one push or pop): keep using them.
    pub fn lock(&self) -> MutexGuard<'_, Records> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The log in the form [`Log::load`] reads: a header, then each record.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_records(&self.lock())
    }

    fn encode_records(&self, r: &Records) -> Vec<u8> {
        let mut out = Vec::with_capacity(r.bytes + 64);
        out.extend_from_slice(MAGIC);
        put_u64(&mut out, r.epoch);
        put_u64(&mut out, r.next);
        put_u64(&mut out, r.records.len() as u64);
        for rec in &r.records {
            put_u64(&mut out, rec.seq);
            put_u64(&mut out, rec.at_ms);
            match &rec.target {
                Target::User(u) => {
                    out.push(0);
                    put_bytes(&mut out, u.as_bytes());
                }
                Target::Users(list) => {
                    out.push(1);
                    put_u64(&mut out, list.len() as u64);
                    for u in list {
                        put_bytes(&mut out, u.as_bytes());
                    }
                }
                Target::All => out.push(2),
            }
            put_u64(&mut out, rec.except.len() as u64);
            for u in &rec.except {
                put_bytes(&mut out, u.as_bytes());
            }
            put_bytes(&mut out, &rec.notification);
        }
        out
    }

    /// Reads a log [`Log::encode`] wrote, keeping its epoch; records past the window are dropped
    /// when the next push comes. `None` when the bytes are not such a log.
    pub fn decode(bytes: &[u8], window: Duration, max_bytes: usize) -> Option<Log> {
        let mut rd = Reader(bytes);
        if rd.take(MAGIC.len())? != MAGIC {
            return None;
        }
        let epoch = rd.u64()?;
        let next = rd.u64()?;
        let n = rd.u64()?;
        let mut records = VecDeque::new();
        let mut last = 0;
        for _ in 0..n {
            let seq = rd.u64()?;
            let at_ms = rd.u64()?;
            let target = match rd.take(1)?[0] {
                0 => Target::User(rd.string()?),
                1 => {
                    let k = rd.u64()?;
                    let mut list = Vec::new();
                    for _ in 0..k {
                        list.push(rd.string()?);
                    }
                    Target::Users(list)
                }
                2 => Target::All,
                _ => return None,
            };
            let k = rd.u64()?;
            let mut except = Vec::new();
            for _ in 0..k {
                except.push(rd.string()?);
            }
            let notification = Bytes::copy_from_slice(rd.bytes()?);
            if seq <= last || seq >= next {
                return None;
            }
            last = seq;
            records.push_back(Arc::new(Record {
                seq,
                at_ms,
                target,
                except,
                notification,
                offset: offset_string(epoch, seq).into(),
                event: None,
            }));
        }
        if !rd.0.is_empty() || epoch == 0 || next == 0 {
            return None;
        }
        Some(Log::with(epoch, next, records, window, max_bytes))
    }

    /// The log saved in `dir` by the last clean exit, taken (the file is removed, so that a
    /// crash after this start cannot bring back offsets its successor gave again); a new log
    /// with a new epoch when there is none or it cannot be read.
    pub fn load(dir: &std::path::Path, window: Duration, max_bytes: usize) -> Log {
        let path = dir.join(LOG_FILE);
        let log = match std::fs::read(&path) {
            Ok(bytes) => {
                let _ = std::fs::remove_file(&path);
                match Log::decode(&bytes, window, max_bytes) {
                    Some(log) => {
                        tracing::info!(
                            epoch = %format!("{:x}", log.epoch()),
                            pushes = log.lock().records.len(),
                            "recovery log read back"
                        );
                        return log;
                    }
                    None => {
                        tracing::warn!(path = %path.display(), "recovery log unreadable: starting a new epoch");
                        None
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "recovery log unreadable: starting a new epoch");
                None
            }
        };
        log.unwrap_or_else(|| Log::new(window, max_bytes))
    }

    /// Closes the log (no push is taken after this) and writes it to `dir`, through a
    /// temporary file renamed into place; returns how many pushes it holds.
    pub fn save(&self, dir: &std::path::Path) -> io::Result<usize> {
        let mut r = self.lock();
        r.closed = true;
        let bytes = self.encode_records(&r);
        let n = r.records.len();
        drop(r);
        write_atomically(&dir.join(LOG_FILE), &bytes).map(|()| n)
    }

    /// The window records are kept for.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The byte bound.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}

impl Records {
    /// Appends a push; returns its record. Drops what is past the window or the byte bound.
    pub fn append(
        &mut self,
        target: Target,
        except: Vec<String>,
        notification: Bytes,
        now_ms: u64,
    ) -> Arc<Record> {
        let seq = self.next;
        self.next += 1;
        let record = Arc::new(Record {
            seq,
            at_ms: now_ms,
            target,
            except,
            notification,
            offset: offset_string(self.epoch, seq).into(),
            event: None,
        });
        self.bytes += record.cost();
        self.records.push_back(record.clone());
        self.trim(now_ms);
        record
    }

    /// Adds a push a cluster's log gave sequence number `seq`; `None` (and nothing added) when
    /// it is not past the newest: the feed from Redis may bring a push twice (a catch-up after
    /// a reconnection reads again what pub/sub may have brought).
    pub fn insert(
        &mut self,
        seq: u64,
        target: Target,
        notification: Bytes,
        event: Option<Arc<str>>,
        now_ms: u64,
    ) -> Option<Arc<Record>> {
        if seq < self.next {
            return None;
        }
        self.next = seq + 1;
        let record = Arc::new(Record {
            seq,
            at_ms: now_ms,
            target,
            except: Vec::new(),
            notification,
            offset: offset_string(self.epoch, seq).into(),
            event,
        });
        self.bytes += record.cost();
        self.records.push_back(record.clone());
        self.trim(now_ms);
        Some(record)
    }

    /// The records after sequence number `seq` that `keep` selects, oldest first. Unlike
    /// [`Records::since`] it makes no claim that nothing after `seq` is missing: a cluster
    /// node's log holds only the pushes routed to it.
    pub fn after(&self, seq: u64, mut keep: impl FnMut(&Record) -> bool) -> Vec<Arc<Record>> {
        let start = self.records.partition_point(|r| r.seq <= seq);
        self.records
            .range(start..)
            .filter(|r| keep(r))
            .cloned()
            .collect()
    }

    /// Takes every push up to `seq` as seen: a cluster's feed knows none is left to come.
    pub fn skip_to(&mut self, seq: u64) {
        self.next = self.next.max(seq + 1);
    }

    /// The log's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the log was saved for the next start and takes no more pushes.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Takes back the newest push, `seq`, which no worker could be handed.
    pub fn unappend(&mut self, seq: u64) {
        if self.records.back().is_some_and(|r| r.seq == seq) && self.next == seq + 1 {
            if let Some(r) = self.records.pop_back() {
                self.bytes -= r.cost();
            }
            self.next = seq;
        }
    }

    /// Drops records older than the window, and the oldest while over the byte bound.
    pub fn trim(&mut self, now_ms: u64) {
        while let Some(front) = self.records.front() {
            let old = front.at_ms.saturating_add(self.window_ms) < now_ms;
            if !old && self.bytes <= self.max_bytes {
                break;
            }
            self.bytes -= front.cost();
            self.dropped = front.seq;
            self.records.pop_front();
        }
    }

    /// The newest push's sequence number (0 before the first).
    pub fn head(&self) -> u64 {
        self.next - 1
    }

    /// The newest offset, as clients see it.
    pub fn head_offset(&self) -> String {
        offset_string(self.epoch, self.head())
    }

    /// The pushes after `offset` (a client's last), oldest first, that `keep` selects; or why
    /// `offset` cannot be honoured.
    pub fn since(
        &mut self,
        offset: &str,
        now_ms: u64,
        mut keep: impl FnMut(&Record) -> bool,
    ) -> Result<Vec<Arc<Record>>, Unrecoverable> {
        let (epoch, seq) = parse_offset(offset).ok_or(Unrecoverable::Malformed)?;
        if epoch != self.epoch {
            return Err(Unrecoverable::OtherEpoch);
        }
        if seq > self.head() {
            return Err(Unrecoverable::Ahead);
        }
        self.trim(now_ms);
        if seq < self.dropped {
            return Err(Unrecoverable::TooOld);
        }
        // Records are consecutive: the one after `seq` is at `seq - first + 1`.
        let first = self.dropped + 1;
        let start = (seq + 1 - first) as usize;
        Ok(self
            .records
            .range(start.min(self.records.len())..)
            .filter(|r| keep(r))
            .cloned()
            .collect())
    }

    /// Records kept, and the bytes they are counted for.
    pub fn size(&self) -> (usize, usize) {
        (self.records.len(), self.bytes)
    }
}

/// `"<epoch in hex>-<seq>"`.
pub fn offset_string(epoch: u64, seq: u64) -> String {
    let mut s = String::with_capacity(24);
    let _ = write!(s, "{epoch:x}-{seq}");
    s
}

/// The epoch and sequence number of an offset [`offset_string`] wrote; `None` for anything
/// else (signs, spaces, leading `+`, overlong numbers).
pub fn parse_offset(s: &str) -> Option<(u64, u64)> {
    let (epoch, seq) = s.split_once('-')?;
    let digits = |t: &str, radix: u32| {
        !t.is_empty() && t.len() <= 20 && t.chars().all(|c| c.is_digit(radix))
    };
    if !digits(epoch, 16) || !digits(seq, 10) || epoch.len() > 16 {
        return None;
    }
    Some((u64::from_str_radix(epoch, 16).ok()?, seq.parse().ok()?))
}

/// A random non-zero epoch.
fn new_epoch() -> u64 {
    let mut raw = [0u8; 8];
    let _ = getrandom::getrandom(&mut raw);
    // A failing generator still gives a distinct epoch per start, from the clock.
    let epoch = u64::from_le_bytes(raw)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    epoch.max(1)
}

const MAGIC: &[u8] = b"herald-log-1\n";
/// The log's file in `--state-dir`.
pub const LOG_FILE: &str = "log.bin";

/// Writes `bytes` to `path` through a temporary file beside it, renamed into place once synced:
/// a crash leaves the old file or the new one, never half of one.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Reads what [`put_u64`] and [`put_bytes`] wrote; every length is checked against what is left.
pub(crate) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u64()?).ok()?;
        self.take(n)
    }

    pub fn string(&mut self) -> Option<String> {
        std::str::from_utf8(self.bytes()?).ok().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> Log {
        Log::new(Duration::from_secs(120), 1 << 20)
    }

    fn push(r: &mut Records, to: &str, at: u64) -> Arc<Record> {
        r.append(
            Target::User(to.into()),
            Vec::new(),
            Bytes::from_static(b"{}"),
            at,
        )
    }

    #[test]
    fn offsets_name_the_epoch_and_count_up() {
        let log = log();
        let mut r = log.lock();
        assert_eq!(r.head(), 0);
        let a = push(&mut r, "u1", 0);
        let b = push(&mut r, "u2", 0);
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(parse_offset(&b.offset), Some((log.epoch(), 2)));
        assert_eq!(r.head_offset(), *b.offset);
    }

    #[test]
    fn since_gives_what_reaches_the_users_after_the_offset() {
        let log = log();
        let mut r = log.lock();
        let start = r.head_offset();
        push(&mut r, "u1", 0);
        push(&mut r, "u2", 0);
        r.append(Target::All, vec!["u1".into()], Bytes::new(), 0);
        r.append(Target::All, Vec::new(), Bytes::new(), 0);
        let users = vec!["u1".to_owned()];
        let got = r.since(&start, 0, |rec| rec.reaches(&users)).unwrap();
        assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 4]);
        let from_2 = offset_string(log.epoch(), 2);
        let got = r.since(&from_2, 0, |rec| rec.reaches(&users)).unwrap();
        assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![4]);
        let head = r.head_offset();
        assert!(r.since(&head, 0, |_| true).unwrap().is_empty());
    }

    #[test]
    fn offsets_that_cannot_be_honoured() {
        let log = Log::new(Duration::from_secs(1), 1 << 20);
        let mut r = log.lock();
        push(&mut r, "u", 0);
        push(&mut r, "u", 500);
        let e = log.epoch();
        let mut why = |offset: &str, now: u64| r.since(offset, now, |_| true).err();
        assert_eq!(why("x", 0), Some(Unrecoverable::Malformed));
        assert_eq!(why("-1", 0), Some(Unrecoverable::Malformed));
        assert_eq!(why(&format!("{e:x}-+1"), 0), Some(Unrecoverable::Malformed));
        assert_eq!(
            why(&offset_string(e ^ 1, 1), 0),
            Some(Unrecoverable::OtherEpoch)
        );
        assert_eq!(why(&offset_string(e, 3), 0), Some(Unrecoverable::Ahead));
        // At 1,200 ms the first push is past the 1 s window: offset 0 lost it, offset 1 did not.
        assert_eq!(why(&offset_string(e, 0), 1200), Some(Unrecoverable::TooOld));
        assert_eq!(why(&offset_string(e, 1), 1200), None);
        assert_eq!(
            r.since(&offset_string(e, 1), 1200, |_| true).unwrap().len(),
            1
        );
    }

    #[test]
    fn the_byte_bound_drops_the_oldest() {
        let log = Log::new(Duration::from_secs(120), 3 * (RECORD_OVERHEAD + 40));
        let mut r = log.lock();
        for _ in 0..10 {
            push(&mut r, "user", 0);
        }
        let (n, bytes) = r.size();
        assert!(
            n <= 3 && bytes <= log.max_bytes(),
            "{n} records, {bytes} bytes"
        );
        assert_eq!(r.dropped, 10 - n as u64);
    }

    #[test]
    fn a_saved_log_reads_back_with_its_epoch() {
        let log = log();
        {
            let mut r = log.lock();
            push(&mut r, "u1", 5);
            r.append(
                Target::Users(vec!["a".into(), "b".into()]),
                Vec::new(),
                Bytes::from_static(br#"{"m":1}"#),
                6,
            );
            r.append(Target::All, vec!["x".into()], Bytes::from_static(b"{}"), 7);
        }
        let bytes = log.encode();
        let back = Log::decode(&bytes, log.window(), log.max_bytes()).unwrap();
        assert_eq!(back.epoch(), log.epoch());
        let mut r = back.lock();
        assert_eq!(r.head(), 3);
        let all = r
            .since(&offset_string(log.epoch(), 0), 7, |_| true)
            .unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].target, Target::Users(vec!["a".into(), "b".into()]));
        assert_eq!(&all[1].notification[..], br#"{"m":1}"#);
        assert_eq!(all[2].except, vec!["x".to_owned()]);
        // Every cut of the file is refused, not misread.
        for cut in 0..bytes.len() {
            assert!(Log::decode(&bytes[..cut], log.window(), 1 << 20).is_none());
        }
    }
}
