//! The receive-side reorder buffer: holds items that arrived ahead of a gap and releases them
//! in sequence order.

use std::collections::BTreeMap;

use crate::seq::HALF;
use crate::{ByteLen, Seq, SeqRange};

/// Bounds of a [`ReorderBuffer`].
///
/// Every bound is enforced on insert; see [`ReorderBuffer`] for the exact capacity policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReorderConfig {
    /// Most items held at once (in-order items not yet popped included). Default 1024.
    pub max_items: usize,
    /// Most bytes (sum of [`ByteLen::byte_len`]) held at once. Default 1 MiB (1,048,576).
    pub max_bytes: usize,
    /// Items whose forward distance from `next_expected` is `>= max_distance` are refused.
    /// Default 4096. Values above 2^31 behave as 2^31 (beyond that serial order is undefined).
    pub max_distance: u32,
}

impl Default for ReorderConfig {
    /// `max_items` 1024, `max_bytes` 1 MiB, `max_distance` 4096.
    fn default() -> Self {
        ReorderConfig {
            max_items: 1024,
            max_bytes: 1 << 20,
            max_distance: 4096,
        }
    }
}

/// What [`ReorderBuffer::insert`] did with an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// `seq == next_expected`: accepted; `pop()` now yields it (and any buffered successors).
    InOrder,
    /// Accepted ahead of a gap; waits until the gap is filled.
    Buffered,
    /// An item with this seq is already held; the new one was dropped.
    Duplicate,
    /// The seq is before `next_expected` (already delivered); the item was dropped.
    TooOld,
    /// The seq's forward distance from `next_expected` is `>= max_distance`; refused.
    BeyondWindow,
    /// Accepting it would exceed `max_items` or `max_bytes`; refused.
    OverCapacity,
}

impl InsertOutcome {
    /// Whether the buffer now holds the item (`InOrder` or `Buffered`).
    pub fn is_accepted(self) -> bool {
        matches!(self, InsertOutcome::InOrder | InsertOutcome::Buffered)
    }
}

/// A bounded reorder buffer: accepts items tagged with sequence numbers in any order and hands
/// them out strictly in sequence, never skipping a gap.
///
/// # Capacity policy
///
/// The bounds always hold: `len() <= max_items` and `buffered_bytes() <= max_bytes` after every
/// call. To keep a full buffer from deadlocking the stream, the last item slot is reserved for
/// the item at [`cumulative_ack`](Self::cumulative_ack) (the one that fills the first gap, which
/// is `next_expected` when the caller pops promptly): any other item is refused with
/// [`InsertOutcome::OverCapacity`] if it would bring `len()` to `max_items`. The item at the
/// cumulative point is refused only if accepting it would itself exceed a bound. Bytes have no
/// such reserve (item sizes are not known in advance): a peer that keeps to a flow-control
/// window no larger than `max_bytes` can never fill the buffer, and one that ignores its window
/// can only stall its own stream. Items held ahead of a gap are never dropped (they may already
/// have been acknowledged), and a gap is never skipped.
///
/// # Cost
///
/// Items live in an ordered map keyed by position, so memory is proportional to the items held,
/// not to the distance between them. `insert` and `pop` are `O(log n)` (amortized),
/// `sack_ranges` is `O(n)` in the worst case; [`take_in_order`](Self::take_in_order) is
/// `O(1)` and does not touch the map.
#[derive(Debug)]
pub struct ReorderBuffer<T> {
    config: ReorderConfig,
    /// Held items keyed by absolute position: the seq that was `start` has position 0.
    items: BTreeMap<u64, T>,
    /// Seq of the next item `pop` returns.
    next_expected: Seq,
    /// Absolute position of `next_expected`.
    next_pos: u64,
    /// Absolute position of the first seq neither delivered nor held (`>= next_pos`).
    cum_pos: u64,
    /// Sum of `byte_len` over `items`.
    bytes: usize,
    /// Position of the most recently accepted item.
    last_inserted: Option<u64>,
}

impl<T: ByteLen> ReorderBuffer<T> {
    /// An empty buffer whose first expected item has sequence number `start`.
    pub fn new(start: Seq, config: ReorderConfig) -> Self {
        ReorderBuffer {
            config,
            items: BTreeMap::new(),
            next_expected: start,
            next_pos: 0,
            cum_pos: 0,
            bytes: 0,
            last_inserted: None,
        }
    }

    /// The bounds this buffer enforces.
    pub fn config(&self) -> &ReorderConfig {
        &self.config
    }

    /// Offers `item` with sequence number `seq`; see [`InsertOutcome`] for the possible results
    /// and the type docs for the capacity policy. Refused or dropped items are discarded.
    pub fn insert(&mut self, seq: Seq, item: T) -> InsertOutcome {
        if seq.is_before(self.next_expected) {
            return InsertOutcome::TooOld;
        }
        let distance = seq.distance_from(self.next_expected);
        if distance >= self.config.max_distance.min(HALF) {
            return InsertOutcome::BeyondWindow;
        }
        let pos = self.next_pos + u64::from(distance);
        if pos < self.cum_pos || self.items.contains_key(&pos) {
            return InsertOutcome::Duplicate;
        }
        let item_limit = if pos == self.cum_pos {
            self.config.max_items
        } else {
            self.config.max_items.saturating_sub(1)
        };
        let bytes_after = self.bytes.saturating_add(item.byte_len());
        if self.items.len() >= item_limit || bytes_after > self.config.max_bytes {
            return InsertOutcome::OverCapacity;
        }
        self.bytes = bytes_after;
        self.items.insert(pos, item);
        self.last_inserted = Some(pos);
        if pos == self.cum_pos {
            self.cum_pos += 1;
            while self.items.contains_key(&self.cum_pos) {
                self.cum_pos += 1;
            }
        }
        if distance == 0 {
            InsertOutcome::InOrder
        } else {
            InsertOutcome::Buffered
        }
    }

    /// Accepts the item at `next_expected` without holding it, when nothing is held: the
    /// same as [`insert`](Self::insert) followed by [`pop`](Self::pop), which the caller
    /// skips by taking the item straight away. Returns `false` (and changes nothing) when
    /// the item is not next in order, something is held, or the item alone exceeds a
    /// bound; then call `insert`. In-order traffic, the common case, so never touches
    /// the map (whose node an insert into an empty map allocates and a pop frees).
    pub fn take_in_order(&mut self, seq: Seq, byte_len: usize) -> bool {
        if seq != self.next_expected
            || !self.items.is_empty()
            || self.config.max_items == 0
            || byte_len > self.config.max_bytes
        {
            return false;
        }
        // Nothing held: the cumulative point is the head.
        self.last_inserted = Some(self.next_pos);
        self.next_pos += 1;
        self.cum_pos = self.next_pos;
        self.next_expected = seq.next();
        true
    }

    /// Removes and returns the item at `next_expected` if it is held, advancing
    /// `next_expected`; `None` while there is a gap there.
    pub fn pop(&mut self) -> Option<(Seq, T)> {
        let entry = self.items.first_entry()?;
        if *entry.key() != self.next_pos {
            return None;
        }
        let item = entry.remove();
        self.bytes -= item.byte_len();
        let seq = self.next_expected;
        self.next_pos += 1;
        self.next_expected = seq.next();
        Some((seq, item))
    }

    /// An iterator that pops every item ready in sequence (stops at the first gap).
    pub fn drain_ready(&mut self) -> DrainReady<'_, T> {
        DrainReady { buffer: self }
    }

    /// The sequence number the next `pop` returns.
    pub fn next_expected(&self) -> Seq {
        self.next_expected
    }

    /// The first sequence number neither delivered nor held: everything before it has been
    /// received. Equals `next_expected` unless in-order items are waiting to be popped.
    pub fn cumulative_ack(&self) -> Seq {
        self.seq_at(self.cum_pos)
    }

    /// Held ranges above [`cumulative_ack`](Self::cumulative_ack), at most `max` of them: the
    /// block containing the most recently inserted seq first (if it is still above the
    /// cumulative point), then the others from the highest down.
    pub fn sack_ranges(&self, max: usize) -> Vec<SeqRange> {
        let mut out = Vec::new();
        if max == 0 {
            return out;
        }
        let recent = self
            .last_inserted
            .filter(|p| *p >= self.cum_pos && self.items.contains_key(p))
            .map(|p| self.block_around(p));
        if let Some((start, end)) = recent {
            out.push(self.range_of(start, end));
            if out.len() >= max {
                return out;
            }
        }
        let mut run: Option<(u64, u64)> = None;
        for (&key, _) in self.items.range(self.cum_pos..).rev() {
            match run {
                Some((start, end)) if key + 1 == start => run = Some((key, end)),
                Some(done) => {
                    if recent != Some(done) {
                        out.push(self.range_of(done.0, done.1));
                        if out.len() >= max {
                            return out;
                        }
                    }
                    run = Some((key, key + 1));
                }
                None => run = Some((key, key + 1)),
            }
        }
        if let Some(done) = run {
            if recent != Some(done) {
                out.push(self.range_of(done.0, done.1));
            }
        }
        out.truncate(max);
        out
    }

    /// Whether some item is held beyond a gap (above the cumulative point).
    pub fn has_gap(&self) -> bool {
        self.items
            .last_key_value()
            .is_some_and(|(k, _)| *k >= self.cum_pos)
    }

    /// Number of items held (in-order items not yet popped included).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no item is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sum of [`ByteLen::byte_len`] over the items held.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    fn seq_at(&self, pos: u64) -> Seq {
        // Positions held or acknowledged are within `max_distance <= 2^31` of `next_pos`.
        self.next_expected.add((pos - self.next_pos) as u32)
    }

    fn range_of(&self, start: u64, end: u64) -> SeqRange {
        SeqRange::new(self.seq_at(start), self.seq_at(end))
    }

    /// The maximal run of held positions containing `pos` (which must be held), as `[start, end)`.
    fn block_around(&self, pos: u64) -> (u64, u64) {
        let mut end = pos + 1;
        for (k, _) in self.items.range(end..) {
            if *k != end {
                break;
            }
            end += 1;
        }
        let mut start = pos;
        for (k, _) in self.items.range(..pos).rev() {
            if *k + 1 != start {
                break;
            }
            start = *k;
        }
        (start, end)
    }
}

/// Iterator returned by [`ReorderBuffer::drain_ready`]: yields `(seq, item)` in order until the
/// next gap.
#[derive(Debug)]
pub struct DrainReady<'a, T> {
    buffer: &'a mut ReorderBuffer<T>,
}

impl<T: ByteLen> Iterator for DrainReady<'_, T> {
    type Item = (Seq, T);

    fn next(&mut self) -> Option<(Seq, T)> {
        self.buffer.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Taking an item in order is insert-then-pop without the map; it declines whatever
    /// insert would hold or refuse, and the buffer goes on as if the item had passed
    /// through it.
    #[test]
    fn take_in_order_is_insert_then_pop() {
        let mut rb: ReorderBuffer<Vec<u8>> =
            ReorderBuffer::new(Seq::new(7), ReorderConfig::default());
        for i in 0..100u32 {
            assert!(rb.take_in_order(Seq::new(7 + i), 10));
            assert!(rb.is_empty());
            assert_eq!(rb.cumulative_ack(), Seq::new(8 + i));
        }
        assert!(!rb.take_in_order(Seq::new(108), 10), "not next in order");
        assert!(
            !rb.take_in_order(Seq::new(107), (1 << 20) + 1),
            "over the byte bound"
        );
        assert_eq!(rb.insert(Seq::new(109), vec![3]), InsertOutcome::Buffered);
        assert!(!rb.take_in_order(Seq::new(107), 1), "something is held");
        assert_eq!(rb.insert(Seq::new(106), vec![0]), InsertOutcome::TooOld);
        assert_eq!(rb.insert(Seq::new(107), vec![1]), InsertOutcome::InOrder);
        assert_eq!(rb.insert(Seq::new(108), vec![2]), InsertOutcome::Buffered);
        let order: Vec<u8> = rb.drain_ready().map(|(_, v)| v[0]).collect();
        assert_eq!(order, [1, 2, 3]);
        assert_eq!(rb.sack_ranges(4), vec![]);
        assert!(rb.take_in_order(Seq::new(110), 1));
    }
}
