//! User rooms: which connections are subscribed to which user ids.
//!
//! A user id is interned to a compact [`RoomId`] when its first socket subscribes and released when
//! its last one leaves, so a day of user churn does not grow memory. Membership is kept both ways:
//! room -> connections (for a push) and connection -> rooms (for a disconnect), each entry
//! remembering its position in the other list, so subscribe, unsubscribe and disconnect are O(1)
//! per membership and never scan a room.
//!
//! This module knows nothing of sockets: a connection is the `usize` key the event loop gives it.

use std::collections::HashMap;
use std::fmt;

use slab::Slab;

/// The event loop's key for a connection (its slab index).
pub type ConnId = usize;

/// Longest user id accepted, in bytes.
pub const MAX_USER_ID_LEN: usize = 128;

/// A room's index, valid while the room has members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoomId(u32);

/// Why a user id was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserIdError {
    Empty,
    TooLong {
        len: usize,
    },
    /// Neither a string nor an integer.
    NotAString,
    /// A subscription's `userIds` is not a list of user ids, or is empty.
    NotAList,
    /// A subscription's `offset` is not a string of at most [`MAX_OFFSET_LEN`] bytes.
    BadOffset,
}

/// Longest offset accepted from a client, in bytes (herald's are at most 37).
pub const MAX_OFFSET_LEN: usize = 64;

/// Most user ids one `userIds` list may name (the per-connection limit applies too).
pub const MAX_LIST_LEN: usize = 1024;

/// What a `subscribe` asks for: one user id (the plain string form, or `{"userId":...}`) or
/// several (`{"userIds":[...]}`), and the last offset the client saw, if it gives one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Valid user ids, each once, in the order given.
    pub users: Vec<String>,
    /// As the client gave it: checked against the log, not here.
    pub offset: Option<String>,
    /// Asked with `userIds`: answered with `userIds`.
    pub list: bool,
}

impl Subscription {
    /// A plain subscription to one user.
    pub fn one(user: String) -> Self {
        Subscription {
            users: vec![user],
            offset: None,
            list: false,
        }
    }
}

impl From<&str> for Subscription {
    fn from(user: &str) -> Self {
        Subscription::one(user.to_owned())
    }
}

/// A `subscribe` event's data: a user id, `{"userId":...,"offset":...}` or
/// `{"userIds":[...],"offset":...}`.
pub fn subscription_from_json(v: &serde_json::Value) -> Result<Subscription, UserIdError> {
    let serde_json::Value::Object(map) = v else {
        return user_id_from_json(v).map(Subscription::one);
    };
    let offset = match map.get("offset") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.len() <= MAX_OFFSET_LEN => Some(s.clone()),
        Some(_) => return Err(UserIdError::BadOffset),
    };
    let (users, list) = match map.get("userIds") {
        Some(serde_json::Value::Array(ids)) if !ids.is_empty() && ids.len() <= MAX_LIST_LEN => {
            let mut users: Vec<String> = Vec::with_capacity(ids.len());
            for id in ids {
                let id = user_id_from_json(id)?;
                if !users.contains(&id) {
                    users.push(id);
                }
            }
            (users, true)
        }
        Some(_) => return Err(UserIdError::NotAList),
        None => (
            vec![user_id_from_json(
                map.get("userId").unwrap_or(&serde_json::Value::Null),
            )?],
            false,
        ),
    };
    Ok(Subscription {
        users,
        offset,
        list,
    })
}

impl fmt::Display for UserIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserIdError::Empty => f.write_str("userId must not be empty"),
            UserIdError::TooLong { len } => {
                write!(
                    f,
                    "userId is {len} bytes, at most {MAX_USER_ID_LEN} are allowed"
                )
            }
            UserIdError::NotAString => f.write_str("userId must be a string or an integer"),
            UserIdError::NotAList => write!(
                f,
                "userIds must be a list of 1 to {MAX_LIST_LEN} user ids (strings or integers)"
            ),
            UserIdError::BadOffset => write!(
                f,
                "offset must be a string of at most {MAX_OFFSET_LEN} bytes, as herald sent it"
            ),
        }
    }
}

/// Checks a user id: non-empty, at most [`MAX_USER_ID_LEN`] bytes.
pub fn validate_user_id(id: &str) -> Result<(), UserIdError> {
    if id.is_empty() {
        Err(UserIdError::Empty)
    } else if id.len() > MAX_USER_ID_LEN {
        Err(UserIdError::TooLong { len: id.len() })
    } else {
        Ok(())
    }
}

/// A user id as clients and services send it in JSON: a string, or an integer taken as its
/// decimal string (socket.io front ends do `emit('subscribe', 123)`).
pub fn user_id_from_json(v: &serde_json::Value) -> Result<String, UserIdError> {
    let id = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => return Err(UserIdError::NotAString),
    };
    validate_user_id(&id)?;
    Ok(id)
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeError {
    /// The connection already holds `max` subscriptions.
    TooMany { max: usize },
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscribeError::TooMany { max } => {
                write!(f, "a connection may subscribe to at most {max} user ids")
            }
        }
    }
}

struct Room {
    /// The interned user id; the key of this room in `Rooms::index`.
    name: Box<str>,
    /// Member connections. Invariant: `members[i] = c` iff `by_conn[c]` holds
    /// `Membership { room: this, pos: i }`.
    members: Vec<ConnId>,
}

#[derive(Debug, Clone, Copy)]
struct Membership {
    room: RoomId,
    /// Position of the connection in `room.members`.
    pos: u32,
    /// When it joined, in seconds since the Unix epoch as the caller gave it (0: not given):
    /// what the control API shows of a user's sockets. Four bytes, good until 2106.
    since: u32,
}

/// A room opened (its first member joined) or closed (its last member left), in the order
/// they happened: what a worker tells the router's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    Opened(Box<str>),
    Closed(Box<str>),
    /// The room now has this many members (only with [`Rooms::counting_members`]).
    Members(Box<str>, usize),
}

/// Rooms and their members, both ways.
pub struct Rooms {
    index: HashMap<Box<str>, RoomId>,
    rooms: Slab<Room>,
    /// Indexed by connection id; an empty `Vec` does not allocate.
    by_conn: Vec<Vec<Membership>>,
    max_per_conn: usize,
    /// Whether rooms opening and closing are logged in `events` (see [`Rooms::logging_events`]).
    log_events: bool,
    /// Whether every change of a room's member count is logged too (a cluster node's presence).
    log_counts: bool,
    events: Vec<RoomEvent>,
}

impl Rooms {
    /// `max_per_conn`: how many rooms one connection may join.
    pub fn new(max_per_conn: usize) -> Self {
        Rooms {
            index: HashMap::new(),
            rooms: Slab::new(),
            by_conn: Vec::new(),
            max_per_conn,
            log_events: false,
            log_counts: false,
            events: Vec::new(),
        }
    }

    /// How many rooms one connection may join.
    pub fn max_per_conn(&self) -> usize {
        self.max_per_conn
    }

    /// Logs every room opening and closing, to be taken with [`Rooms::take_events`].
    pub fn logging_events(mut self) -> Self {
        self.log_events = true;
        self
    }

    /// Logs every change of a room's member count as well, as [`RoomEvent::Members`].
    pub fn counting_members(mut self) -> Self {
        self.log_events = true;
        self.log_counts = true;
        self
    }

    /// The rooms opened and closed since the last call, in order.
    pub fn take_events(&mut self) -> std::vec::Drain<'_, RoomEvent> {
        self.events.drain(..)
    }

    /// Joins `conn` to `user_id`'s room without noting when: [`Rooms::subscribe_at`] at 0.
    pub fn subscribe(&mut self, conn: ConnId, user_id: &str) -> Result<bool, SubscribeError> {
        self.subscribe_at(conn, user_id, 0)
    }

    /// Joins `conn` to `user_id`'s room at `unix_secs` (seconds since the Unix epoch; later
    /// than 2106 is kept as the largest). Returns `Ok(false)` when it was already a member
    /// (subscribing twice is idempotent, and keeps the first time). The caller validated
    /// `user_id`.
    pub fn subscribe_at(
        &mut self,
        conn: ConnId,
        user_id: &str,
        unix_secs: u64,
    ) -> Result<bool, SubscribeError> {
        if let Some(&room) = self.index.get(user_id) {
            if self.is_member(conn, room) {
                return Ok(false);
            }
        }
        if self.by_conn.get(conn).map_or(0, Vec::len) >= self.max_per_conn {
            return Err(SubscribeError::TooMany {
                max: self.max_per_conn,
            });
        }
        let room = match self.index.get(user_id) {
            Some(&room) => room,
            None => {
                let key = self.rooms.insert(Room {
                    name: user_id.into(),
                    members: Vec::new(),
                });
                let room = RoomId(key as u32);
                self.index.insert(user_id.into(), room);
                if self.log_events {
                    self.events.push(RoomEvent::Opened(user_id.into()));
                }
                room
            }
        };
        let members = &mut self.rooms[room.0 as usize].members;
        let pos = members.len() as u32;
        members.push(conn);
        if self.log_counts {
            let n = members.len();
            self.events.push(RoomEvent::Members(user_id.into(), n));
        }
        if self.by_conn.len() <= conn {
            self.by_conn.resize_with(conn + 1, Vec::new);
        }
        let since = u32::try_from(unix_secs).unwrap_or(u32::MAX);
        self.by_conn[conn].push(Membership { room, pos, since });
        Ok(true)
    }

    /// Removes `conn` from `user_id`'s room. Returns whether it was a member.
    pub fn unsubscribe(&mut self, conn: ConnId, user_id: &str) -> bool {
        let Some(&room) = self.index.get(user_id) else {
            return false;
        };
        let Some(list) = self.by_conn.get_mut(conn) else {
            return false;
        };
        let Some(i) = list.iter().position(|m| m.room == room) else {
            return false;
        };
        let m = list.swap_remove(i);
        if list.is_empty() {
            *list = Vec::new();
        }
        self.leave(conn, m);
        true
    }

    /// Removes `conn` from every room it joined: O(rooms of that connection).
    pub fn remove_conn(&mut self, conn: ConnId) {
        let Some(list) = self.by_conn.get_mut(conn) else {
            return;
        };
        for m in std::mem::take(list) {
            self.leave(conn, m);
        }
    }

    /// Takes `conn` out of `m.room`, keeping the moved member's back-pointer right, and frees the
    /// room when it empties.
    fn leave(&mut self, conn: ConnId, m: Membership) {
        let key = m.room.0 as usize;
        let members = &mut self.rooms[key].members;
        debug_assert_eq!(members[m.pos as usize], conn);
        members.swap_remove(m.pos as usize);
        if let Some(&moved) = members.get(m.pos as usize) {
            if let Some(back) = self.by_conn[moved].iter_mut().find(|x| x.room == m.room) {
                back.pos = m.pos;
            }
        }
        if self.log_counts {
            let room = &self.rooms[key];
            self.events
                .push(RoomEvent::Members(room.name.clone(), room.members.len()));
        }
        if self.rooms[key].members.is_empty() {
            let room = self.rooms.remove(key);
            self.index.remove(&room.name);
            if self.log_events {
                self.events.push(RoomEvent::Closed(room.name));
            }
        }
    }

    fn is_member(&self, conn: ConnId, room: RoomId) -> bool {
        self.by_conn
            .get(conn)
            .is_some_and(|l| l.iter().any(|m| m.room == room))
    }

    /// The connections subscribed to `user_id` (empty when none).
    pub fn members(&self, user_id: &str) -> &[ConnId] {
        match self.index.get(user_id) {
            Some(room) => &self.rooms[room.0 as usize].members,
            None => &[],
        }
    }

    /// When `conn` joined `user_id`'s room, in seconds since the Unix epoch as
    /// [`Rooms::subscribe_at`] was given it; `None` when it is not a member.
    pub fn subscribed_at(&self, conn: ConnId, user_id: &str) -> Option<u64> {
        let room = *self.index.get(user_id)?;
        let m = self.by_conn.get(conn)?.iter().find(|m| m.room == room)?;
        Some(m.since.into())
    }

    /// Every room: its user id and members.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[ConnId])> + '_ {
        self.rooms.iter().map(|(_, r)| (&*r.name, &r.members[..]))
    }

    /// The user ids `conn` is subscribed to.
    pub fn rooms_of(&self, conn: ConnId) -> impl Iterator<Item = &str> + '_ {
        self.by_conn
            .get(conn)
            .into_iter()
            .flatten()
            .map(|m| &*self.rooms[m.room.0 as usize].name)
    }

    /// Rooms with at least one member (empty rooms are never kept).
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// Memberships summed over all rooms.
    pub fn subscriptions(&self) -> usize {
        self.rooms.iter().map(|(_, r)| r.members.len()).sum()
    }

    /// Checks both directions of membership agree and no empty room is kept; for tests and the
    /// rooms fuzz target.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        assert_eq!(self.index.len(), self.rooms.len());
        for (key, room) in &self.rooms {
            assert!(!room.members.is_empty(), "empty room {:?} kept", room.name);
            assert_eq!(self.index.get(&room.name), Some(&RoomId(key as u32)));
            for (pos, &c) in room.members.iter().enumerate() {
                let back = self.by_conn[c]
                    .iter()
                    .filter(|m| m.room.0 as usize == key)
                    .collect::<Vec<_>>();
                assert_eq!(back.len(), 1, "conn {c} listed once in room {key}");
                assert_eq!(back[0].pos as usize, pos);
            }
        }
        for (c, list) in self.by_conn.iter().enumerate() {
            assert!(list.len() <= self.max_per_conn);
            for m in list {
                assert_eq!(self.rooms[m.room.0 as usize].members[m.pos as usize], c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_is_idempotent_and_two_way() {
        let mut r = Rooms::new(16);
        assert_eq!(r.subscribe(1, "alice"), Ok(true));
        assert_eq!(r.subscribe(1, "alice"), Ok(false));
        assert_eq!(r.subscribe(2, "alice"), Ok(true));
        assert_eq!(r.subscribe(2, "bob"), Ok(true));
        assert_eq!(r.members("alice"), &[1, 2]);
        assert_eq!(r.rooms_of(2).collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(r.len(), 2);
        r.check_invariants();
    }

    #[test]
    fn leaving_moves_the_last_member_and_fixes_its_position() {
        let mut r = Rooms::new(16);
        for c in 0..5 {
            r.subscribe(c, "u").unwrap();
        }
        assert!(r.unsubscribe(1, "u"));
        assert!(!r.unsubscribe(1, "u"));
        r.check_invariants();
        r.remove_conn(4);
        r.remove_conn(0);
        r.check_invariants();
        let mut m = r.members("u").to_vec();
        m.sort();
        assert_eq!(m, [2, 3]);
    }

    #[test]
    fn rooms_opening_and_closing_are_logged_in_order() {
        let mut r = Rooms::new(16).logging_events();
        r.subscribe(1, "ann").unwrap();
        r.subscribe(2, "ann").unwrap();
        r.subscribe(2, "bob").unwrap();
        r.remove_conn(1);
        r.remove_conn(2);
        let events: Vec<_> = r.take_events().collect();
        assert_eq!(
            events,
            [
                RoomEvent::Opened("ann".into()),
                RoomEvent::Opened("bob".into()),
                RoomEvent::Closed("ann".into()),
                RoomEvent::Closed("bob".into()),
            ]
        );
        assert_eq!(r.take_events().count(), 0);
        // Without logging nothing is kept.
        let mut quiet = Rooms::new(16);
        quiet.subscribe(1, "ann").unwrap();
        assert_eq!(quiet.take_events().count(), 0);
    }

    #[test]
    fn empty_rooms_are_freed() {
        let mut r = Rooms::new(16);
        for i in 0..1000 {
            let user = format!("user-{i}");
            r.subscribe(i % 7, &user).ok();
            r.remove_conn(i % 7);
        }
        assert!(r.is_empty());
        assert!(
            r.index.capacity() < 64,
            "the index stays as small as its peak"
        );
        r.check_invariants();
    }

    #[test]
    fn the_time_of_joining_is_kept_per_membership() {
        let mut r = Rooms::new(16);
        r.subscribe_at(1, "ann", 1_700_000_000).unwrap();
        r.subscribe_at(2, "ann", 1_700_000_005).unwrap();
        r.subscribe_at(1, "bob", 1_700_000_009).unwrap();
        // Subscribing again keeps the first time.
        assert_eq!(r.subscribe_at(1, "ann", 1_800_000_000), Ok(false));
        assert_eq!(r.subscribed_at(1, "ann"), Some(1_700_000_000));
        assert_eq!(r.subscribed_at(2, "ann"), Some(1_700_000_005));
        assert_eq!(r.subscribed_at(1, "bob"), Some(1_700_000_009));
        assert_eq!(r.subscribed_at(2, "bob"), None);
        assert_eq!(r.subscribed_at(3, "ann"), None);
        r.remove_conn(1);
        assert_eq!(r.subscribed_at(2, "ann"), Some(1_700_000_005));
        r.subscribe_at(4, "cy", u64::MAX).unwrap();
        assert_eq!(r.subscribed_at(4, "cy"), Some(u32::MAX.into()));
        r.check_invariants();
    }

    #[test]
    fn cap_per_connection() {
        let mut r = Rooms::new(2);
        r.subscribe(0, "a").unwrap();
        r.subscribe(0, "b").unwrap();
        assert_eq!(r.subscribe(0, "c"), Err(SubscribeError::TooMany { max: 2 }));
        assert_eq!(
            r.subscribe(0, "a"),
            Ok(false),
            "already a member is not over the cap"
        );
        r.check_invariants();
    }

    #[test]
    fn user_ids_from_json() {
        use serde_json::json;
        assert_eq!(user_id_from_json(&json!("u-1")).unwrap(), "u-1");
        assert_eq!(user_id_from_json(&json!(123)).unwrap(), "123");
        assert_eq!(user_id_from_json(&json!(-5)).unwrap(), "-5");
        assert_eq!(user_id_from_json(&json!("")), Err(UserIdError::Empty));
        assert_eq!(user_id_from_json(&json!(1.5)), Err(UserIdError::NotAString));
        assert_eq!(
            user_id_from_json(&json!(null)),
            Err(UserIdError::NotAString)
        );
        let long = "x".repeat(129);
        assert_eq!(
            user_id_from_json(&json!(long)),
            Err(UserIdError::TooLong { len: 129 })
        );
        assert!(user_id_from_json(&json!("x".repeat(128))).is_ok());
    }
}
