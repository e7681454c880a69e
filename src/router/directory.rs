//! Which workers hold sockets of which user: the router sends a push for a user only to those.
//!
//! Each worker tells the directory when a user's room opens or closes on it (see
//! [`crate::rooms::RoomEvent`]), before the `subscribed` answer that follows leaves the worker:
//! a push sent after a client saw `subscribed` always reaches the worker that holds it. A push
//! racing a room's closing may still visit that worker and find no one: it counts nothing there.
//!
//! A user is a bit mask of workers (64 at most), in one of [`SHARDS`] maps each behind its own
//! lock, chosen by the user id's hash: a worker's update and a control thread's lookup meet on one
//! shard's lock for a few nanoseconds, and only when they touch users of the same shard. No I/O.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

/// The most workers a mask can name.
pub const MAX_WORKERS: usize = 64;

/// Maps the directory is split into.
const SHARDS: usize = 64;

/// One shard: users to the bit mask of the workers holding their sockets.
type Shard = HashMap<Box<str>, u64>;

/// Users to the workers holding their sockets.
pub struct Directory {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// In a cluster: users this node stopped holding, for its entries in Redis to be removed
    /// (see [`Directory::take_left`]).
    left: Option<Mutex<Vec<Box<str>>>>,
    /// In a cluster: each user's sockets on each worker, and the users whose total changed
    /// since the last [`Directory::take_counts`].
    counts: Option<Mutex<Counts>>,
}

#[derive(Default)]
struct Counts {
    per_worker: HashMap<Box<str>, Vec<(usize, usize)>>,
    changed: HashMap<Box<str>, usize>,
}

impl Default for Directory {
    fn default() -> Self {
        Directory {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            left: None,
            counts: None,
        }
    }
}

impl Directory {
    fn shard(&self, user: &str) -> MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(user) as usize) % SHARDS;
        // A worker that panicked while holding a shard left a consistent map (every update is
        // one insert or remove): keep using it.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A directory that also lists the users the node stopped holding, and counts sockets.
    pub fn recording() -> Self {
        Directory {
            left: Some(Mutex::default()),
            counts: Some(Mutex::default()),
            ..Directory::default()
        }
    }

    /// `worker` now holds at least one socket of `user`.
    pub fn opened(&self, user: &str, worker: usize) {
        let bit = 1u64 << (worker % MAX_WORKERS);
        let mut shard = self.shard(user);
        match shard.get_mut(user) {
            Some(mask) => *mask |= bit,
            None => {
                shard.insert(user.into(), bit);
            }
        }
    }

    /// `worker` holds no socket of `user` any more.
    pub fn closed(&self, user: &str, worker: usize) {
        let bit = 1u64 << (worker % MAX_WORKERS);
        let mut shard = self.shard(user);
        if let Some(mask) = shard.get_mut(user) {
            *mask &= !bit;
            if *mask == 0 {
                shard.remove(user);
                if let Some(left) = &self.left {
                    left.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(user.into());
                }
            }
        }
    }

    /// `worker` now holds `n` sockets of `user` (a recording directory only).
    pub fn count(&self, user: &str, worker: usize, n: usize) {
        let Some(counts) = &self.counts else {
            return;
        };
        let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
        let per = c.per_worker.entry(user.into()).or_default();
        match per.iter_mut().find(|(w, _)| *w == worker) {
            Some(slot) => slot.1 = n,
            None => per.push((worker, n)),
        }
        per.retain(|&(_, n)| n > 0);
        let total = per.iter().map(|&(_, n)| n).sum();
        if total == 0 {
            c.per_worker.remove(user);
        }
        c.changed.insert(user.into(), total);
    }

    /// The users whose socket count on this node changed since the last call, with the count.
    pub fn take_counts(&self) -> HashMap<Box<str>, usize> {
        match &self.counts {
            Some(c) => std::mem::take(&mut c.lock().unwrap_or_else(|e| e.into_inner()).changed),
            None => HashMap::new(),
        }
    }

    /// The users the node stopped holding since the last call, in order.
    pub fn take_left(&self) -> Vec<Box<str>> {
        match &self.left {
            Some(left) => std::mem::take(&mut *left.lock().unwrap_or_else(|e| e.into_inner())),
            None => Vec::new(),
        }
    }

    /// The workers holding sockets of `user`, as a bit mask; 0 when it has none.
    pub fn workers_of(&self, user: &str) -> u64 {
        self.shard(user).get(user).copied().unwrap_or(0)
    }

    /// Users with at least one socket on some worker.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with every user held anywhere, one shard locked at a time.
    pub fn for_each_user(&self, mut f: impl FnMut(&str)) {
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for user in shard.keys() {
                f(user);
            }
        }
    }
}

/// The workers a mask names, lowest first.
pub fn workers_in(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let w = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(w)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_held_by_the_workers_that_opened_its_room() {
        let d = Directory::default();
        assert_eq!(d.workers_of("ann"), 0);
        d.opened("ann", 0);
        d.opened("ann", 3);
        d.opened("bob", 63);
        assert_eq!(d.workers_of("ann"), 0b1001);
        assert_eq!(workers_in(d.workers_of("ann")).collect::<Vec<_>>(), [0, 3]);
        assert_eq!(d.len(), 2);
        d.closed("ann", 0);
        assert_eq!(d.workers_of("ann"), 0b1000);
        d.closed("ann", 3);
        assert_eq!(d.workers_of("ann"), 0);
        assert_eq!(d.len(), 1);
        // Closing what is not open changes nothing.
        d.closed("carol", 1);
        assert_eq!(workers_in(d.workers_of("bob")).collect::<Vec<_>>(), [63]);
        let mut users = Vec::new();
        d.for_each_user(|u| users.push(u.to_owned()));
        assert_eq!(users, ["bob"]);
    }
}
