//! What herald nodes write to Redis and read back: stream ids as offsets, the pushes in the
//! stream and on the pub/sub channels, and the names of the keys. No I/O.
//!
//! A push in the cluster's log is one stream entry whose field `m` holds four MessagePack
//! values written by the push script (`cmsgpack.pack(kind, users, notification, event)`): the
//! kind (`"u"` one user, `"m"` several, `"a"` everyone, `"e"` an epoch's first entry, which is
//! not a push), the user ids (empty for everyone), the serialized notification, and the event's
//! name (empty for `notification`). The same bytes go on the pub/sub channels behind the entry's id:
//! `"<ms>-<n> <m>"`. A line `"S <ms>-<n>"` on a node's channel is a sync mark: every push up
//! to that id routed to the node came before it.
//!
//! A stream id `<ms>-<n>` is the push's sequence number `ms << 20 | n`, so that offsets keep
//! the form `"<epoch>-<seq>"` of one node's log and stay ordered as the stream is.

use bytes::Bytes;
use serde::Deserialize;

use crate::command::Target;

/// Bits of a sequence number given to the entry's number within its millisecond.
const N_BITS: u32 = 20;

/// The sequence number of stream id `"<ms>-<n>"`; `None` for anything else, or an id past what
/// a sequence number holds (a millisecond count beyond the year 2248, a millisecond holding
/// more than a million entries).
pub fn seq_of(id: &str) -> Option<u64> {
    let (ms, n) = id.split_once('-')?;
    let digits = |t: &str| !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(ms) || !digits(n) {
        return None;
    }
    let (ms, n): (u64, u64) = (ms.parse().ok()?, n.parse().ok()?);
    if ms >= 1 << (64 - N_BITS) || n >= 1 << N_BITS {
        return None;
    }
    Some(ms << N_BITS | n)
}

/// The stream id of sequence number `seq`: the inverse of [`seq_of`].
pub fn id_of(seq: u64) -> String {
    format!("{}-{}", seq >> N_BITS, seq & ((1 << N_BITS) - 1))
}

/// The millisecond a sequence number's entry was added in.
pub fn ms_of(seq: u64) -> u64 {
    seq >> N_BITS
}

/// A push as the cluster's log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub target: Target,
    pub notification: Bytes,
    /// The event's name when it is not `notification`.
    pub event: Option<std::sync::Arc<str>>,
}

/// Reads field `m` of the entry with sequence number `seq`.
pub fn decode_entry(seq: u64, m: &[u8]) -> Option<Entry> {
    let mut de = rmp_serde::Deserializer::new(m);
    let kind = String::deserialize(&mut de).ok()?;
    let users = Vec::<String>::deserialize(&mut de).ok()?;
    let notification = String::deserialize(&mut de).ok()?;
    // The event's name; empty (or absent) for `notification`.
    let event = String::deserialize(&mut de)
        .ok()
        .filter(|e| !e.is_empty())
        .map(Into::into);
    let target = match (kind.as_str(), users.len()) {
        ("u", 1) => Target::User(users.into_iter().next()?),
        ("m", _) => Target::Users(users),
        ("a", 0) => Target::All,
        _ => return None,
    };
    Some(Entry {
        seq,
        target,
        notification: Bytes::from(notification),
        event,
    })
}

/// One message on a node's channel or the broadcast channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A push, with its place in the log.
    Push(Entry),
    /// Every push routed to this node up to `head` came before this mark.
    Sync { head: u64 },
}

/// Reads a pub/sub payload; `None` when it is not one herald's scripts write.
pub fn decode_message(payload: &[u8]) -> Option<Message> {
    if let Some(head) = payload.strip_prefix(b"S ") {
        let head = std::str::from_utf8(head).ok()?;
        return Some(Message::Sync {
            head: stream_position(head)?,
        });
    }
    let space = payload.iter().position(|&b| b == b' ')?;
    let id = std::str::from_utf8(&payload[..space]).ok()?;
    let seq = seq_of(id)?;
    decode_entry(seq, &payload[space + 1..]).map(Message::Push)
}

/// A stream position as the scripts write it: an id, or `0-0` for an empty log.
pub fn stream_position(id: &str) -> Option<u64> {
    seq_of(id)
}

/// The kind and users a push script is given for `target`.
pub fn script_target(target: &Target) -> (&'static str, &[String]) {
    match target {
        Target::User(u) => ("u", std::slice::from_ref(u)),
        Target::Users(list) => ("m", list),
        Target::All => ("a", &[]),
    }
}

/// The names under one `--redis-prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub prefix: String,
}

impl Keys {
    /// The stream of pushes.
    pub fn log(&self) -> String {
        format!("{}:log", self.prefix)
    }

    /// The epoch: offsets of another epoch are not honoured.
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// The channel every node reads broadcasts from.
    pub fn all(&self) -> String {
        format!("{}:all", self.prefix)
    }

    /// The channel node `node` reads its users' pushes from.
    pub fn node(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    /// The hash of the nodes holding sockets of `user`, each with its count.
    pub fn user(&self, user: &str) -> String {
        format!("{}:u:{user}", self.prefix)
    }

    /// Which node reads the Socket.IO emitter's channels.
    pub fn emitter_lead(&self) -> String {
        format!("{}:emitter", self.prefix)
    }

    /// Where a Socket.IO session whose transport was lost is kept, by its private id.
    pub fn session(&self, pid: &str) -> String {
        format!("{}:session:{pid}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(kind: &str, users: &[&str], notification: &str) -> Vec<u8> {
        let mut out = rmp_serde::to_vec(kind).unwrap();
        out.extend(rmp_serde::to_vec(&users).unwrap());
        out.extend(rmp_serde::to_vec(notification).unwrap());
        out
    }

    #[test]
    fn stream_ids_are_ordered_sequence_numbers() {
        let a = seq_of("1733212345678-0").unwrap();
        let b = seq_of("1733212345678-1").unwrap();
        let c = seq_of("1733212345679-0").unwrap();
        assert!(a < b && b < c);
        assert_eq!(id_of(b), "1733212345678-1");
        assert_eq!(ms_of(c), 1733212345679);
        assert_eq!(seq_of("0-0"), Some(0));
        for bad in [
            "",
            "1",
            "-1",
            "1-",
            "a-1",
            "1-+1",
            "1-1048576",
            "99999999999999999999-0",
        ] {
            assert_eq!(seq_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn pushes_and_marks_are_read_back() {
        let m = pack("u", &["ann"], "{\"a\":1}");
        let mut payload = b"5-2 ".to_vec();
        payload.extend(&m);
        let Some(Message::Push(e)) = decode_message(&payload) else {
            panic!("not a push");
        };
        assert_eq!(e.seq, seq_of("5-2").unwrap());
        assert_eq!(e.target, Target::User("ann".into()));
        assert_eq!(&e.notification[..], b"{\"a\":1}");
        let all = decode_entry(1, &pack("a", &[], "{}")).unwrap();
        assert_eq!(all.target, Target::All);
        let many = decode_entry(1, &pack("m", &["a", "b"], "{}")).unwrap();
        assert_eq!(many.target, Target::Users(vec!["a".into(), "b".into()]));
        assert_eq!(
            decode_message(b"S 7-0"),
            Some(Message::Sync {
                head: seq_of("7-0").unwrap()
            })
        );
        assert_eq!(decode_message(b"S x"), None);
        assert_eq!(decode_message(b"5-2"), None);
        assert_eq!(decode_entry(1, &pack("u", &["a", "b"], "{}")), None);
        assert_eq!(decode_entry(1, &pack("x", &[], "{}")), None);
        assert_eq!(decode_entry(1, b"\xc1"), None);
    }
}
