//! Per-peer sessions: what one peer may make us hold, across all of its streams.
//!
//! A peer is the sender tag of the streams it opened to us, or the address of the
//! streams we opened to it. Each gets a connection-level receive window: the sum of
//! the credit outstanding on its streams (what we promised and it has not had read
//! yet) never exceeds `peer_receive_window`, and the sum over all peers never exceeds
//! the client-wide `inbound_budget`. Stream credit (the `max_data` of our acks) is
//! carved out of that window, and a new stream is admitted only if its initial
//! credit fits. So one peer pinning data behind gaps on hundreds of streams holds at
//! most its own window, and the credit promised to every other peer stays covered.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::Hash;

/// What the core tracks for one peer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerState {
    /// Live streams with this peer (either direction).
    pub(crate) streams: usize,
    /// Its streams waiting in the accept backlog.
    pub(crate) backlog: usize,
    /// Credit outstanding on its streams: bytes it may still send us that we have not
    /// had read (reserved buffers for reference-format streams).
    pub(crate) credit: u64,
    /// Stream ids with orphan data held for it.
    pub(crate) orphan_ids: usize,
    /// When a frame from it last arrived on any of its streams.
    pub(crate) last_heard: Option<std::time::Instant>,
    /// Peers we opened streams to: reply SURBs we attached for them on all streams.
    pub(crate) surbs_sent: u64,
    /// Peers we opened streams to: frames they sent back on all streams (each used at
    /// least one of our SURBs).
    pub(crate) replies_seen: u64,
}

impl PeerState {
    fn is_empty(&self) -> bool {
        self.streams == 0 && self.orphan_ids == 0 && self.credit == 0 && self.backlog == 0
    }
}

/// Limits that apply to every peer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerLimits {
    pub(crate) window: u64,
    pub(crate) budget: u64,
    pub(crate) max_streams: usize,
    pub(crate) max_backlog: usize,
    /// The client-wide accept backlog (`accept_backlog`).
    pub(crate) backlog: usize,
    pub(crate) max_orphan_ids: usize,
    pub(crate) max_peers: usize,
    /// The credit every stream gets at once (the fair share never goes below it).
    pub(crate) initial_credit: u64,
}

/// Why a peer may not have more of something.
pub(crate) type Refusal = crate::error::LimitReason;

/// Every peer that holds state, and the client-wide total of promised credit.
///
/// Peer keys are chosen by peers (sender tags) or are long addresses, so the index keeps
/// std's keyed hash; but the core consults a peer several times per frame, nearly always
/// the one it consulted last, so the last key and its slot are remembered and compared
/// before hashing (SipHash over these keys was a tenth of the core's instructions).
pub(crate) struct Peers<P> {
    /// Each peer's slot in `slots`.
    index: HashMap<P, usize>,
    slots: Vec<PeerState>,
    /// Slots of peers that left, for reuse.
    free: Vec<usize>,
    /// The peer found last and its slot.
    last: Cell<Option<(P, usize)>>,
    limits: PeerLimits,
    total_credit: u64,
    total_backlog: usize,
}

impl<P: Copy + Eq + Hash> Peers<P> {
    pub(crate) fn new(limits: PeerLimits) -> Self {
        Self {
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            last: Cell::new(None),
            limits,
            total_credit: 0,
            total_backlog: 0,
        }
    }

    /// The slot of a peer that holds state.
    fn slot(&self, peer: &P) -> Option<usize> {
        if let Some((p, i)) = self.last.get() {
            if p == *peer {
                return Some(i);
            }
        }
        let i = *self.index.get(peer)?;
        self.last.set(Some((*peer, i)));
        Some(i)
    }

    fn holds(&self, peer: &P) -> bool {
        self.slot(peer).is_some()
    }

    /// The state of one peer (empty if it holds none).
    pub(crate) fn get(&self, peer: &P) -> PeerState {
        self.slot(peer)
            .map_or_else(PeerState::default, |i| self.slots[i])
    }

    fn get_mut(&mut self, peer: &P) -> Option<&mut PeerState> {
        let i = self.slot(peer)?;
        Some(&mut self.slots[i])
    }

    /// Notes that a frame from `peer` arrived (only for peers that hold state).
    pub(crate) fn heard(&mut self, peer: &P, now: std::time::Instant, reply: bool) {
        if let Some(p) = self.get_mut(peer) {
            p.last_heard = Some(now);
            p.replies_seen += u64::from(reply);
        }
    }

    /// Notes reply SURBs attached for `peer`.
    pub(crate) fn surbs_sent(&mut self, peer: &P, surbs: u32) {
        if let Some(p) = self.get_mut(peer) {
            p.surbs_sent += u64::from(surbs);
        }
    }

    /// Number of peers holding state.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Credit promised over all peers.
    pub(crate) fn total_credit(&self) -> u64 {
        self.total_credit
    }

    /// Whether a new stream from `peer` needing `credit` may be admitted.
    pub(crate) fn admit(&self, peer: &P, credit: u64) -> Result<(), Refusal> {
        let p = self.get(peer);
        if !self.holds(peer) && self.len() >= self.limits.max_peers {
            return Err(Refusal::Peers);
        }
        if p.streams >= self.limits.max_streams {
            return Err(Refusal::Streams);
        }
        if p.backlog >= self.limits.max_backlog && self.backlog_contended() {
            return Err(Refusal::Backlog);
        }
        if p.credit + credit > self.limits.window {
            return Err(Refusal::PeerWindow);
        }
        if self.total_credit + credit > self.limits.budget {
            return Err(Refusal::Budget);
        }
        Ok(())
    }

    /// Whether the accept backlog is at least half full: only then does the per-peer
    /// backlog bound apply, so a lone peer opening a burst of streams is not refused
    /// while the backlog has room for others.
    fn backlog_contended(&self) -> bool {
        2 * self.total_backlog >= self.limits.backlog
    }

    /// How much more credit `peer` may be granted now (initial credit included).
    #[cfg(test)]
    pub(crate) fn credit_room(&self, peer: &P) -> u64 {
        let p = self.get(peer);
        let peer_room = self.limits.window.saturating_sub(p.credit);
        let budget_room = self.limits.budget.saturating_sub(self.total_credit);
        peer_room.min(budget_room)
    }

    /// How much more credit one stream of `peer`, holding `held` now, may be granted
    /// beyond its initial credit. Growth leaves a quarter of the peer's window (and of
    /// the budget) for the initial credit of new streams, and no stream grows past an
    /// equal share of the rest, so streams that opened first cannot crowd out later
    /// ones.
    pub(crate) fn growth_room(&self, peer: &P, held: u64) -> u64 {
        let p = self.get(peer);
        let reserve = self.limits.window / 4;
        let peer_room = self
            .limits
            .window
            .saturating_sub(reserve)
            .saturating_sub(p.credit);
        let budget_room =
            (self.limits.budget - self.limits.budget / 4).saturating_sub(self.total_credit);
        let share = ((self.limits.window - reserve) / p.streams.max(1) as u64)
            .max(self.limits.initial_credit);
        peer_room.min(budget_room).min(share.saturating_sub(held))
    }

    /// Whether `peer` holds no state and the table already has `max_peers` peers.
    pub(crate) fn full_for(&self, peer: &P) -> bool {
        !self.holds(peer) && self.len() >= self.limits.max_peers
    }

    /// Whether `peer` may hold orphan data for one more stream id.
    pub(crate) fn may_hold_orphans(&self, peer: &P) -> bool {
        if !self.holds(peer) && self.len() >= self.limits.max_peers {
            return false;
        }
        self.get(peer).orphan_ids < self.limits.max_orphan_ids
    }

    /// Applies a change to one peer's counters (and drops a peer left with nothing).
    pub(crate) fn update(&mut self, peer: P, f: impl FnOnce(&mut PeerState)) {
        let i = match self.slot(&peer) {
            Some(i) => i,
            None => {
                let i = self.free.pop().unwrap_or_else(|| {
                    self.slots.push(PeerState::default());
                    self.slots.len() - 1
                });
                self.index.insert(peer, i);
                self.last.set(Some((peer, i)));
                i
            }
        };
        let entry = &mut self.slots[i];
        let (credit, backlog) = (entry.credit, entry.backlog);
        f(entry);
        self.total_credit = self.total_credit + entry.credit - credit;
        self.total_backlog = self.total_backlog + entry.backlog - backlog;
        if entry.is_empty() {
            *entry = PeerState::default();
            self.index.remove(&peer);
            self.free.push(i);
            self.last.set(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> PeerLimits {
        PeerLimits {
            window: 100,
            budget: 150,
            max_streams: 3,
            max_backlog: 2,
            backlog: 4,
            max_orphan_ids: 1,
            max_peers: 2,
            initial_credit: 10,
        }
    }

    #[test]
    fn each_bound_refuses_with_its_reason() {
        let mut p = Peers::<u8>::new(limits());
        assert_eq!(p.admit(&1, 60), Ok(()));
        p.update(1, |s| {
            s.streams += 1;
            s.backlog += 1;
            s.credit += 60;
        });
        assert_eq!(p.admit(&1, 60), Err(Refusal::PeerWindow));
        assert_eq!(p.credit_room(&1), 40);
        p.update(2, |s| {
            s.streams += 1;
            s.credit += 80;
        });
        // 140 of 150 promised: the budget binds before peer 2's own window.
        assert_eq!(p.admit(&2, 20), Err(Refusal::Budget));
        assert_eq!(p.credit_room(&2), 10);
        assert_eq!(p.admit(&3, 0), Err(Refusal::Peers));
        assert!(!p.may_hold_orphans(&3));
        p.update(1, |s| s.backlog += 1);
        assert_eq!(p.admit(&1, 0), Err(Refusal::Backlog));
        p.update(1, |s| {
            s.backlog = 0;
            s.streams = 3;
        });
        assert_eq!(p.admit(&1, 0), Err(Refusal::Streams));
        // A peer left with nothing is forgotten, and its credit returns.
        p.update(2, |s| {
            s.streams = 0;
            s.credit = 0;
        });
        assert_eq!(p.len(), 1);
        assert_eq!(p.total_credit(), 60);
    }

    /// A peer that left frees its slot for the next, and no lookup finds it through the
    /// remembered last key afterwards.
    #[test]
    fn slots_are_reused_and_the_last_key_never_goes_stale() {
        let mut p = Peers::<u8>::new(PeerLimits {
            max_peers: 10,
            ..limits()
        });
        p.update(1, |s| s.streams = 1);
        p.update(2, |s| s.streams = 2);
        assert_eq!(p.get(&1).streams, 1);
        p.update(1, |s| s.streams = 0);
        assert_eq!(p.get(&1), PeerState::default());
        assert_eq!(p.len(), 1);
        // A peer without state is not written to, even right after it left.
        p.surbs_sent(&1, 5);
        p.heard(&1, std::time::Instant::now(), true);
        // Peer 3 takes peer 1's slot; peer 1 stays gone, peer 2 keeps its state.
        p.update(3, |s| s.streams = 3);
        assert_eq!(p.slots.len(), 2);
        assert_eq!(p.get(&1), PeerState::default());
        assert_eq!(p.get(&2).streams, 2);
        assert_eq!(p.get(&3).streams, 3);
        p.surbs_sent(&1, 5);
        assert_eq!(
            p.get(&3).surbs_sent,
            0,
            "nothing reached another peer's slot"
        );
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn growth_keeps_a_reserve_and_an_equal_share() {
        let mut p = Peers::<u8>::new(PeerLimits {
            budget: 1000,
            ..limits()
        });
        // One stream holding 10: it may grow to the whole window less the reserve.
        p.update(1, |s| {
            s.streams = 1;
            s.credit = 10;
        });
        assert_eq!(p.growth_room(&1, 10), 65);
        // Three streams: each may grow to a third of 75.
        p.update(1, |s| {
            s.streams = 3;
            s.credit = 30;
        });
        assert_eq!(p.growth_room(&1, 10), 15);
        // A stream at its share may not grow; the reserve still admits new streams.
        assert_eq!(p.growth_room(&1, 25), 0);
        p.update(1, |s| s.credit = 75);
        assert_eq!(p.growth_room(&1, 10), 0);
        assert_eq!(p.credit_room(&1), 25);
    }
}
