//! The soak's verdict: what every client was owed, against what it received. No I/O, no clock.
//!
//! A client's life is a list of **chains**. A chain starts at the offset herald gave the
//! client's first subscription (or a subscription herald answered `recovered: false`) and goes
//! on across every return herald answered as recovered. Within a chain the client is owed every
//! push the control API accepted with an offset of the chain's epoch after the chain's start
//! that was for the client's user or for everyone: up to the end of the run when the client is
//! subscribed at the end, and up to the last notification it received when a later return was
//! refused (what came between that and the refusal is not owed: herald said so).
//!
//! Checked: each push owed was received (else **lost**); no push reached a client twice over
//! its whole life, chains and pushes without offsets included (**duplicated**); offsets within a
//! chain only grow (**out of order**); nothing reached a client whose user it was not for
//! (**misrouted**). A notification whose push was never answered 2xx (herald killed between
//! logging and answering) is counted as **unconfirmed**, not as a fault.

use std::collections::HashMap;

use super::record::{Offset, PushRecord, Target};

/// One chain of a client's life, see the module's text.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The offset herald answered the subscription that began the chain with.
    pub start: Offset,
    /// `(n, seq)` of each notification received in the chain's epoch, in arrival order.
    pub received: Vec<(u64, u64)>,
    /// Notifications that arrived with an offset of another epoch (never expected).
    pub foreign: Vec<(Offset, u64)>,
    /// The client was subscribed at the end of the run within this chain.
    pub open: bool,
    /// Where in `received` each recovered return began, with the offset it resumed from.
    pub resumes: Vec<(usize, u64)>,
}

impl Chain {
    pub fn new(start: Offset) -> Chain {
        Chain {
            start,
            received: Vec::new(),
            foreign: Vec::new(),
            open: false,
            resumes: Vec::new(),
        }
    }
}

/// How a client's returns were answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Returns {
    /// Subscriptions (or Socket.IO sessions) taken back with what was missed.
    pub recovered: u64,
    /// `recovered: false` with an offset of another epoch: herald restarted without its state,
    /// or Redis lost its data. The client was told; a new chain starts.
    pub new_epoch: u64,
    /// `recovered: false` in the same epoch after an absence longer than the recovery window.
    pub late: u64,
    /// `recovered: false` in the same epoch within the window: a fault unless allowed.
    pub refused: u64,
    /// Notifications of a new epoch reached a connected client (not a return): a new chain.
    pub epoch_changed: u64,
}

impl Returns {
    pub fn add(&mut self, o: &Returns) {
        self.recovered += o.recovered;
        self.new_epoch += o.new_epoch;
        self.late += o.late;
        self.refused += o.refused;
        self.epoch_changed += o.epoch_changed;
    }
}

/// What one client did, as its thread hands it back.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub client: u32,
    pub user: u32,
    /// The client's kind, for the examples.
    pub kind: &'static str,
    pub chains: Vec<Chain>,
    /// `seq` of notifications that came without an offset (a degraded cluster's local pushes).
    pub unlogged: Vec<u64>,
    pub returns: Returns,
    /// Not subscribed at the end of the run.
    pub stranded: bool,
    /// What a person should see about its returns (a refusal, with how it left).
    pub notes: Vec<String>,
    /// Its connection at the end of the run, told with its first loss.
    pub at_end: String,
}

/// The checks' figures over every client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub chains: u64,
    /// Notifications owed, and of those received.
    pub owed: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub misrouted: u64,
    /// Received with an offset the control API never answered with (see the module's text).
    pub unconfirmed: u64,
    /// Received with an offset at or before its chain's start.
    pub before_start: u64,
    /// Received with an offset of another epoch than their chain's.
    pub foreign_epoch: u64,
    /// Received without an offset.
    pub unlogged: u64,
    /// Pushes answered 2xx without an offset and not degraded: owed to nobody, counted.
    pub accepted_without_offset: u64,
    /// A few of the losses and faults, for a person to look at.
    pub examples: Vec<String>,
    /// A few of the clients' notes (returns refused): not faults when allowed, so kept apart
    /// from the examples, which they would crowd out.
    pub notes: Vec<String>,
}

impl Verdict {
    /// Nothing lost, twice, out of order or misrouted.
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.out_of_order == 0
            && self.misrouted == 0
            && self.before_start == 0
            && self.foreign_epoch == 0
    }

    fn example(&mut self, line: String) {
        if self.examples.len() < 20 {
            self.examples.push(line);
        }
    }
}

/// The accepted pushes of one epoch, by offset and by user.
#[derive(Default)]
struct Epoch {
    /// n → index into the records.
    by_n: HashMap<u64, usize>,
    /// Per user: sorted n of the pushes naming it (unicast and multi-user).
    by_user: HashMap<u32, Vec<u64>>,
    /// Sorted n of the broadcasts.
    broadcasts: Vec<u64>,
}

/// Checks every client's history against the pushes made.
pub fn verify(pushes: &[PushRecord], histories: &[History]) -> Verdict {
    let mut v = Verdict::default();
    let mut epochs: HashMap<u64, Epoch> = HashMap::new();
    for (i, p) in pushes.iter().enumerate() {
        if !p.accepted() {
            continue;
        }
        let Some(o) = p.offset else {
            if !p.degraded {
                v.accepted_without_offset += 1;
            }
            continue;
        };
        let e = epochs.entry(o.epoch).or_default();
        e.by_n.insert(o.n, i);
        match &p.target {
            Target::User(u) => e.by_user.entry(*u).or_default().push(o.n),
            Target::Users(us) => {
                for u in us {
                    e.by_user.entry(*u).or_default().push(o.n);
                }
            }
            Target::All => e.broadcasts.push(o.n),
        }
    }
    for e in epochs.values_mut() {
        e.broadcasts.sort_unstable();
        e.broadcasts.dedup();
        for list in e.by_user.values_mut() {
            list.sort_unstable();
            list.dedup();
        }
    }
    let empty = Epoch::default();
    for h in histories {
        let mut told_end = false;
        for note in &h.notes {
            if v.notes.len() < 10 {
                v.notes.push(format!(
                    "client {} ({}, user {}): {note}",
                    h.client, h.kind, h.user
                ));
            }
        }
        let mut seqs: Vec<u64> = h.unlogged.clone();
        v.unlogged += h.unlogged.len() as u64;
        for chain in &h.chains {
            v.chains += 1;
            seqs.extend(chain.received.iter().map(|&(_, s)| s));
            seqs.extend(chain.foreign.iter().map(|&(_, s)| s));
            for (o, seq) in &chain.foreign {
                v.foreign_epoch += 1;
                v.example(format!(
                    "client {} ({}, user {}): seq {seq} at {o:?} outside its chain's epoch {:x}",
                    h.client, h.kind, h.user, chain.start.epoch
                ));
            }
            let epoch = epochs.get(&chain.start.epoch).unwrap_or(&empty);
            // Order, and what was received that is not owed.
            let mut last = chain.start.n;
            let mut got: Vec<u64> = Vec::with_capacity(chain.received.len());
            for (i, &(n, seq)) in chain.received.iter().enumerate() {
                if n <= chain.start.n {
                    v.before_start += 1;
                    v.example(format!(
                        "client {} ({}, user {}): seq {seq} at {n}, at or before its chain's start {}",
                        h.client,
                        h.kind,
                        h.user, chain.start.n
                    ));
                } else if n <= last {
                    v.out_of_order += 1;
                    let resume = chain.resumes.iter().rev().find(|&&(at, _)| at <= i);
                    let to = epoch
                        .by_n
                        .get(&n)
                        .map_or("unknown", |&i| target_name(&pushes[i].target));
                    v.example(format!(
                        "client {} ({}, user {}): seq {seq} (to {to}) at {n} after {last}{}",
                        h.client,
                        h.kind,
                        h.user,
                        resume.map_or(String::new(), |(at, from)| format!(
                            " ({} after a return from {from})",
                            i - at
                        ))
                    ));
                }
                last = last.max(n);
                match epoch.by_n.get(&n) {
                    None => v.unconfirmed += 1,
                    Some(&i) if !pushes[i].target.reaches(h.user) => {
                        v.misrouted += 1;
                        v.example(format!(
                            "client {} ({}, user {}): seq {seq} at {n} was for {:?}",
                            h.client, h.kind, h.user, pushes[i].target
                        ));
                    }
                    Some(_) => got.push(n),
                }
            }
            got.sort_unstable();
            got.dedup();
            // What was owed: after the start, up to the end of the run or the last received.
            let end = if chain.open {
                u64::MAX
            } else {
                chain.received.iter().map(|&(n, _)| n).max().unwrap_or(0)
            };
            let mine = epoch.by_user.get(&h.user).map_or(&[][..], Vec::as_slice);
            let owed = merge_range(mine, &epoch.broadcasts, chain.start.n, end);
            v.owed += owed.len() as u64;
            for n in owed {
                if got.binary_search(&n).is_ok() {
                    v.delivered += 1;
                } else {
                    if !told_end && !h.at_end.is_empty() {
                        told_end = true;
                        v.example(format!(
                            "client {} ({}, user {}): {}",
                            h.client, h.kind, h.user, h.at_end
                        ));
                    }
                    v.lost += 1;
                    let push = epoch.by_n.get(&n).map(|&i| &pushes[i]);
                    let seq = push.map_or(0, |p| p.seq);
                    // Where it falls among what the chain received, and the chain's returns.
                    let before = chain.received.iter().filter(|&&(m, _)| m < n).count();
                    let returns: Vec<String> = chain
                        .resumes
                        .iter()
                        .take(4)
                        .map(|(at, from)| format!("#{at} from {from}"))
                        .collect();
                    v.example(format!(
                        "client {} ({}, user {}): lost seq {seq} (to {}) at {:x}-{n} (chain from {}{}; {before} of {} received before it; returns: {})",
                        h.client,
                        h.kind,
                        h.user,
                        push.map_or("unknown", |p| target_name(&p.target)),
                        chain.start.epoch,
                        chain.start.n,
                        if chain.open { ", open" } else { "" },
                        chain.received.len(),
                        if returns.is_empty() { "none".to_owned() } else { returns.join(", ") }
                    ));
                }
            }
        }
        seqs.sort_unstable();
        for pair in seqs.windows(2) {
            if pair[0] == pair[1] {
                v.duplicated += 1;
                v.example(format!(
                    "client {} ({}, user {}): seq {} received twice",
                    h.client, h.kind, h.user, pair[0]
                ));
            }
        }
    }
    v
}

/// Whom a push was for, in an example's words.
fn target_name(target: &Target) -> &'static str {
    match target {
        Target::All => "everyone",
        Target::User(_) => "its user",
        Target::Users(_) => "several users",
    }
}

/// The union of two sorted lists, limited to `start < n <= end`.
fn merge_range(a: &[u64], b: &[u64], start: u64, end: u64) -> Vec<u64> {
    let from = |l: &[u64]| l.partition_point(|&n| n <= start);
    let (mut i, mut j) = (from(a), from(b));
    let mut out = Vec::new();
    loop {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x == y => {
                i += 1;
                j += 1;
                x
            }
            (Some(&x), Some(&y)) if x < y => {
                i += 1;
                x
            }
            (_, Some(&y)) => {
                j += 1;
                y
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (None, None) => break,
        };
        if next > end {
            break;
        }
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: u64 = 0xabc;

    fn push(seq: u64, n: u64, target: Target) -> PushRecord {
        PushRecord {
            seq,
            target,
            status: 202,
            offset: Some(Offset { epoch: E, n }),
            degraded: false,
            node: 0,
            sent_ns: 0,
            answered_ns: 0,
        }
    }

    fn chain(start: u64, received: &[(u64, u64)], open: bool) -> Chain {
        Chain {
            start: Offset { epoch: E, n: start },
            received: received.to_vec(),
            foreign: Vec::new(),
            open,
            resumes: Vec::new(),
        }
    }

    fn history(user: u32, chains: Vec<Chain>) -> History {
        History {
            client: 7,
            user,
            chains,
            ..History::default()
        }
    }

    fn pushes() -> Vec<PushRecord> {
        vec![
            push(1, 1, Target::User(1)),
            push(2, 2, Target::User(2)),
            push(3, 3, Target::All),
            push(4, 4, Target::Users(vec![1, 3])),
            push(5, 5, Target::User(1)),
        ]
    }

    #[test]
    fn everything_owed_received_is_clean() {
        let h = history(1, vec![chain(0, &[(1, 1), (3, 3), (4, 4), (5, 5)], true)]);
        let v = verify(&pushes(), &[h]);
        assert!(v.clean(), "{v:?}");
        assert_eq!((v.owed, v.delivered), (4, 4));
    }

    #[test]
    fn a_gap_is_lost_and_the_start_bounds_what_is_owed() {
        let h = history(1, vec![chain(2, &[(3, 3), (5, 5)], true)]);
        let v = verify(&pushes(), &[h]);
        assert_eq!((v.owed, v.delivered, v.lost), (3, 2, 1));
        assert!(v.examples[0].contains("lost seq 4"), "{:?}", v.examples);
    }

    #[test]
    fn a_closed_chain_is_owed_up_to_its_last_notification_only() {
        // Refused after receiving 3: pushes 4 and 5 are not owed in that chain; a second chain
        // from 4 owes 5.
        let h = history(
            1,
            vec![
                chain(0, &[(1, 1), (3, 3)], false),
                chain(4, &[(5, 5)], true),
            ],
        );
        let v = verify(&pushes(), &[h]);
        assert!(v.clean(), "{v:?}");
        assert_eq!((v.owed, v.delivered, v.chains), (3, 3, 2));
        // Missing 5 in the open chain is a loss.
        let h = history(
            1,
            vec![chain(0, &[(1, 1), (3, 3)], false), chain(4, &[], true)],
        );
        assert_eq!(verify(&pushes(), &[h]).lost, 1);
    }

    #[test]
    fn twice_out_of_order_and_misrouted_are_caught() {
        let h = history(
            1,
            vec![chain(0, &[(1, 1), (3, 3), (1, 1), (4, 4), (5, 5)], true)],
        );
        let v = verify(&pushes(), &[h]);
        assert_eq!((v.duplicated, v.out_of_order, v.lost), (1, 1, 0));
        // The same push again in a later chain is still a duplicate.
        let h = history(
            1,
            vec![
                chain(0, &[(1, 1)], false),
                chain(2, &[(3, 3), (4, 4), (5, 5)], true),
            ],
        );
        let mut p = pushes();
        p.push(PushRecord {
            offset: Some(Offset { epoch: E + 1, n: 9 }),
            ..push(1, 0, Target::User(1))
        });
        assert_eq!(verify(&p, &[h]).duplicated, 0);
        let h = history(2, vec![chain(0, &[(1, 1), (2, 2), (3, 3)], true)]);
        let v = verify(&pushes(), &[h]);
        assert_eq!((v.misrouted, v.lost), (1, 0));
    }

    #[test]
    fn unanswered_pushes_are_unconfirmed_and_other_epochs_owe_nothing() {
        let mut p = pushes();
        p[4].status = 0;
        p[4].offset = None;
        // 5 arrived though its answer never came: counted, not owed, not a fault.
        let h = history(1, vec![chain(0, &[(1, 1), (3, 3), (4, 4), (5, 5)], true)]);
        let v = verify(&p, &[h]);
        assert!(v.clean(), "{v:?}");
        assert_eq!((v.owed, v.unconfirmed), (3, 1));
        // A chain of another epoch is owed nothing of this one.
        let h = history(
            1,
            vec![Chain {
                start: Offset { epoch: E + 1, n: 0 },
                received: vec![],
                foreign: vec![],
                open: true,
                resumes: vec![],
            }],
        );
        assert_eq!(verify(&pushes(), &[h]).owed, 0);
    }

    #[test]
    fn merge_range_is_a_bounded_union() {
        assert_eq!(merge_range(&[1, 3, 5], &[2, 3, 6], 1, 5), vec![2, 3, 5]);
        assert_eq!(merge_range(&[], &[2], 0, u64::MAX), vec![2]);
        assert_eq!(merge_range(&[4], &[], 4, 9), Vec::<u64>::new());
    }
}
