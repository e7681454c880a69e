//! Socket.IO sessions whose transport was lost, kept for the client to take back: Socket.IO's
//! connection state recovery.
//!
//! When a connected session loses its transport for a reason the client reconnects after (the
//! connection dropped, pings went unanswered, the server drained it), what it was is kept here
//! under its private id (`pid`, sent only to that client in its CONNECT reply) for
//! `--recovery-window`: its socket id, the users it was subscribed to, whom its token named,
//! and the offset it joined at. A CONNECT carrying the `pid` takes it back on whichever worker
//! it lands (see [`crate::core::engine`]). Shared by the workers; saved in `--state-dir` with
//! the log, so that a restart keeps them. No I/O but [`Parked::save`] and [`Parked::load`].
//!
//! A client may also come back before herald noticed its transport was lost (a polling client
//! cut between two requests, a WebSocket left half-open by a network change): its session is
//! still open, held by an Engine.IO session the client has left. So every connected session is
//! known here too, as it last was, with the Engine.IO session holding it ([`Parked::hold`]); a
//! CONNECT with its `pid` takes it over ([`Parked::take_over`]), and the Engine.IO session left
//! behind, once closed, neither keeps nor forgets what is no longer its own
//! ([`Parked::let_go`]).

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Mutex;

use crate::router::log::{put_bytes, put_u64, write_atomically, Reader};

/// What a session was when its transport was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The Socket.IO socket id it had, and gets back.
    pub sid: String,
    /// The users it was subscribed to.
    pub users: Vec<String>,
    /// The `sub` of its token, when JWT auth is on: a CONNECT taking it back must carry a valid
    /// token for the same user.
    pub user: Option<String>,
    /// The log's newest push when it connected: where recovery starts for a client that saw no
    /// offset at all.
    pub joined: u64,
    /// Kept until then, in milliseconds since the Unix epoch.
    pub until_ms: u64,
}

impl Session {
    /// Appends the session in the form [`Session::decode`] reads.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.sid.as_bytes());
        put_u64(out, self.users.len() as u64);
        for u in &self.users {
            put_bytes(out, u.as_bytes());
        }
        match &self.user {
            Some(u) => {
                out.push(1);
                put_bytes(out, u.as_bytes());
            }
            None => out.push(0),
        }
        put_u64(out, self.joined);
        put_u64(out, self.until_ms);
    }

    /// The session alone, in the form [`Session::from_bytes`] reads.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode(&mut out);
        out
    }

    /// A session [`Session::to_bytes`] wrote; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Session> {
        let mut rd = Reader(bytes);
        let s = Session::decode(&mut rd)?;
        rd.0.is_empty().then_some(s)
    }

    /// Reads a session [`Session::encode`] wrote.
    pub(crate) fn decode(rd: &mut Reader<'_>) -> Option<Session> {
        let sid = rd.string()?;
        let k = rd.u64()?;
        let mut users = Vec::new();
        for _ in 0..k {
            users.push(rd.string()?);
        }
        let user = match rd.take(1)?[0] {
            0 => None,
            1 => Some(rd.string()?),
            _ => return None,
        };
        let joined = rd.u64()?;
        let until_ms = rd.u64()?;
        Some(Session {
            sid,
            users,
            user,
            joined,
            until_ms,
        })
    }
}

/// The sessions kept, by `pid`.
pub struct Parked {
    sessions: Mutex<HashMap<String, Session>>,
    /// Expired sessions are swept when the map has grown past this since the last sweep.
    sweep_at: Mutex<usize>,
    /// In a cluster: told of every session kept and taken, so that another node can take it
    /// back (see [`Parked::share`]).
    shared: std::sync::OnceLock<Box<dyn Fn(Shared) + Send + Sync>>,
    /// In a cluster: the `pid`s of the connected sessions kept in Redis (see
    /// [`Parked::share_live`]), whose expiry the cluster renews.
    live: Mutex<std::collections::HashSet<String>>,
    /// The connected sessions, by `pid`: the Engine.IO session id holding each, and what it
    /// was at its last change (see [`Parked::hold`]), encoded ([`Session::to_bytes`]): one
    /// allocation of some 80 bytes for a session of one user, beside the entry's 56.
    connected: Mutex<Connected>,
}

/// A `pid` as herald makes them: 20 characters.
type Pid = [u8; 20];

/// The connected sessions: by `pid`, the holder and the session encoded.
type Connected = HashMap<Pid, (Holder, Box<[u8]>)>;

/// The Engine.IO session id of the session holding a `pid`.
pub type Holder = [u8; 20];

/// A change to the sessions kept, for the other nodes of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shared {
    /// Kept under this `pid`.
    Kept(String, Session),
    /// Taken back here: no other node may take it.
    Taken(String),
}

impl Default for Parked {
    fn default() -> Self {
        Parked {
            sessions: Mutex::new(HashMap::new()),
            sweep_at: Mutex::new(1024),
            shared: std::sync::OnceLock::new(),
            live: Mutex::default(),
            connected: Mutex::default(),
        }
    }
}

const MAGIC: &[u8] = b"herald-sessions-1\n";
const FILE: &str = "sessions.bin";

impl Parked {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `session` under `pid` until its `until_ms`.
    pub fn park(&self, pid: String, session: Session, now_ms: u64) {
        if let Some(share) = self.shared.get() {
            self.live_pids().remove(&pid);
            share(Shared::Kept(pid.clone(), session.clone()));
        }
        let mut map = self.map();
        map.insert(pid, session);
        let mut sweep_at = self.sweep_at.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= *sweep_at {
            map.retain(|_, s| s.until_ms > now_ms);
            *sweep_at = (map.len() * 2).max(1024);
        }
    }

    /// Takes back the session kept under `pid`, unless its time is up.
    pub fn take(&self, pid: &str, now_ms: u64) -> Option<Session> {
        let taken = self.map().remove(pid).filter(|s| s.until_ms > now_ms);
        if let (Some(_), Some(share)) = (&taken, self.shared.get()) {
            share(Shared::Taken(pid.to_owned()));
        }
        taken
    }

    fn connected(&self) -> std::sync::MutexGuard<'_, Connected> {
        self.connected.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connected session `pid`, held by Engine.IO session `holder`, is now `session`; false
    /// (and ignored) when another Engine.IO session took it over, or `pid` is not one herald
    /// makes.
    pub fn hold(&self, pid: &str, holder: Holder, session: &Session) -> bool {
        let Ok(pid) = Pid::try_from(pid.as_bytes()) else {
            return false;
        };
        let bytes = session.to_bytes().into_boxed_slice();
        match self.connected().entry(pid) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if e.get().0 != holder {
                    return false;
                }
                e.insert((holder, bytes));
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert((holder, bytes));
            }
        }
        true
    }

    /// Takes over connected session `pid` for Engine.IO session `by`, when its token named
    /// `user` (a `pid` alone never authenticates): what it was at its last change, and the
    /// Engine.IO session left behind. That one can no longer keep the `pid` for its client nor
    /// end it ([`Parked::let_go`]); its worker is told to close it.
    pub fn take_over(
        &self,
        pid: &str,
        user: Option<&str>,
        by: Holder,
    ) -> Option<(Session, Holder)> {
        let key = Pid::try_from(pid.as_bytes()).ok()?;
        let mut connected = self.connected();
        let (holder, bytes) = connected.get_mut(&key)?;
        let session = Session::from_bytes(bytes)?;
        if session.user.as_deref() != user || *holder == by {
            return None;
        }
        let left = std::mem::replace(holder, by);
        let taken = (session, left);
        drop(connected);
        if let Some(share) = self.shared.get() {
            share(Shared::Taken(pid.to_owned()));
        }
        Some(taken)
    }

    /// Engine.IO session `holder`, which held `pid`, is closing: true when it still holds it
    /// (or nobody does), and may keep it for its client or end it; false when another one took
    /// it over.
    pub fn let_go(&self, pid: &str, holder: Holder) -> bool {
        let Ok(pid) = Pid::try_from(pid.as_bytes()) else {
            return true;
        };
        let mut connected = self.connected();
        match connected.get(&pid) {
            Some((h, _)) if *h != holder => false,
            Some(_) => {
                connected.remove(&pid);
                true
            }
            None => true,
        }
    }

    /// Connected sessions known (held, or taken over and not yet answered).
    pub fn connected_len(&self) -> usize {
        self.connected().len()
    }

    /// In a cluster: a connected session as it is now, kept in Redis (not here) so that its
    /// client can take it back on another node even if this one dies without parking it.
    pub fn share_live(&self, pid: String, session: Session) {
        if let Some(share) = self.shared.get() {
            self.live_pids().insert(pid.clone());
            share(Shared::Kept(pid, session));
        }
    }

    /// In a cluster: session `pid` ended. Unless it is kept here for its client, no node may
    /// take it back.
    pub fn forget(&self, pid: &str) {
        if let Some(share) = self.shared.get() {
            self.live_pids().remove(pid);
            if !self.map().contains_key(pid) {
                share(Shared::Taken(pid.to_owned()));
            }
        }
    }

    /// The connected sessions kept in Redis, whose expiry is to be renewed.
    pub fn live(&self) -> Vec<String> {
        self.live_pids().iter().cloned().collect()
    }

    fn live_pids(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells `share` of every session kept and taken from now on: a cluster keeps them in
    /// Redis too. Set once.
    pub fn share(&self, share: impl Fn(Shared) + Send + Sync + 'static) {
        let _ = self.shared.set(Box::new(share));
    }

    /// Sessions kept (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn encode(&self, now_ms: u64) -> Vec<u8> {
        let map = self.map();
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        let live: Vec<_> = map.iter().filter(|(_, s)| s.until_ms > now_ms).collect();
        put_u64(&mut out, live.len() as u64);
        for (pid, s) in live {
            put_bytes(&mut out, pid.as_bytes());
            s.encode(&mut out);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Parked> {
        let mut rd = Reader(bytes);
        if rd.take(MAGIC.len())? != MAGIC {
            return None;
        }
        let n = rd.u64()?;
        let mut map = HashMap::new();
        for _ in 0..n {
            let pid = rd.string()?;
            map.insert(pid, Session::decode(&mut rd)?);
        }
        if !rd.0.is_empty() {
            return None;
        }
        Some(Parked {
            sessions: Mutex::new(map),
            ..Parked::default()
        })
    }

    /// Writes the sessions still kept at `now_ms` to `dir`.
    pub fn save(&self, dir: &Path, now_ms: u64) -> io::Result<()> {
        write_atomically(&dir.join(FILE), &self.encode(now_ms))
    }

    /// The sessions saved in `dir` by the last clean exit, taken (the file is removed); none
    /// when there is no such file or it cannot be read.
    pub fn load(dir: &Path) -> Parked {
        let path = dir.join(FILE);
        let Ok(bytes) = std::fs::read(&path) else {
            return Parked::default();
        };
        let _ = std::fs::remove_file(&path);
        Parked::decode(&bytes).unwrap_or_else(|| {
            tracing::warn!(path = %path.display(), "saved sessions unreadable: none kept");
            Parked::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(until_ms: u64) -> Session {
        Session {
            sid: "abc".into(),
            users: vec!["u1".into(), "u2".into()],
            user: Some("u1".into()),
            joined: 7,
            until_ms,
        }
    }

    #[test]
    fn a_session_is_taken_back_once_and_only_in_time() {
        let p = Parked::default();
        p.park("pid1".into(), session(100), 0);
        p.park("pid2".into(), session(100), 0);
        assert_eq!(p.take("pid1", 50), Some(session(100)));
        assert_eq!(p.take("pid1", 50), None, "taken already");
        assert_eq!(p.take("pid2", 100), None, "its time is up");
        assert_eq!(p.take("nope", 0), None);
    }

    #[test]
    fn a_connected_session_is_taken_over_by_its_user_and_the_one_left_behind_lets_go() {
        let p = Parked::default();
        let (old, new) = ([1u8; 20], [2u8; 20]);
        let pid = "pidpidpidpidpidpidpi";
        assert!(!p.hold("short", old, &session(0)), "not a pid herald makes");
        assert!(p.hold(pid, old, &session(0)));
        assert_eq!(p.take_over(pid, Some("u2"), new), None, "another user's");
        assert_eq!(
            p.take_over(pid, None, new),
            None,
            "no token, another user's"
        );
        assert_eq!(p.take_over(pid, Some("u1"), new), Some((session(0), old)));
        // The one left behind changes nothing, keeps nothing, ends nothing.
        assert!(!p.hold(pid, old, &session(1)));
        assert!(!p.let_go(pid, old));
        assert_eq!(p.connected_len(), 1);
        // The new holder goes on, then lets go when it closes.
        assert!(p.hold(pid, new, &session(2)));
        assert_eq!(p.take_over(pid, Some("u1"), new), None, "not from itself");
        assert!(p.let_go(pid, new));
        assert_eq!(p.connected_len(), 0);
        assert!(p.let_go(pid, old), "nobody holds it");
        assert_eq!(p.take_over(pid, Some("u1"), new), None);
    }

    #[test]
    fn saved_sessions_read_back_and_cuts_are_refused() {
        let p = Parked::default();
        p.park("pid1".into(), session(100), 0);
        p.park("old".into(), session(10), 0);
        let bytes = p.encode(50);
        let back = Parked::decode(&bytes).unwrap();
        assert_eq!(back.len(), 1, "an expired session is not saved");
        assert_eq!(back.take("pid1", 60), Some(session(100)));
        for cut in 0..bytes.len() {
            assert!(Parked::decode(&bytes[..cut]).is_none());
        }
    }
}
