//! Example-based tests of `ReorderBuffer`: every outcome, every bound, SACK reporting.

use reorder::{InsertOutcome, ReorderBuffer, ReorderConfig, Seq, SeqRange};

fn cfg(max_items: usize, max_bytes: usize, max_distance: u32) -> ReorderConfig {
    ReorderConfig {
        max_items,
        max_bytes,
        max_distance,
    }
}

fn item(n: usize) -> Vec<u8> {
    vec![0xAB; n]
}

fn range(start: u32, end: u32) -> SeqRange {
    SeqRange::new(Seq::new(start), Seq::new(end))
}

#[test]
fn default_config_is_documented_values() {
    let c = ReorderConfig::default();
    assert_eq!(
        (c.max_items, c.max_bytes, c.max_distance),
        (1024, 1 << 20, 4096)
    );
}

#[test]
fn every_outcome() {
    let mut rb = ReorderBuffer::new(Seq::new(10), cfg(4, 100, 8));
    assert_eq!(rb.insert(Seq::new(12), item(1)), InsertOutcome::Buffered);
    assert_eq!(rb.insert(Seq::new(12), item(5)), InsertOutcome::Duplicate);
    assert_eq!(rb.insert(Seq::new(10), item(2)), InsertOutcome::InOrder);
    assert_eq!(rb.insert(Seq::new(10), item(2)), InsertOutcome::Duplicate);
    assert_eq!(rb.insert(Seq::new(9), item(1)), InsertOutcome::TooOld);
    assert_eq!(
        rb.insert(Seq::new(18), item(1)),
        InsertOutcome::BeyondWindow
    );
    assert_eq!(
        rb.insert(Seq::new(17), item(200)),
        InsertOutcome::OverCapacity
    );
    assert_eq!(rb.len(), 2);
    assert_eq!(rb.buffered_bytes(), 3);
    // The duplicate did not replace the first copy.
    assert_eq!(rb.pop(), Some((Seq::new(10), item(2))));
    assert_eq!(rb.pop(), None);
    assert_eq!(rb.insert(Seq::new(10), item(1)), InsertOutcome::TooOld);
    assert!(InsertOutcome::InOrder.is_accepted() && InsertOutcome::Buffered.is_accepted());
    for refused in [
        InsertOutcome::Duplicate,
        InsertOutcome::TooOld,
        InsertOutcome::BeyondWindow,
        InsertOutcome::OverCapacity,
    ] {
        assert!(!refused.is_accepted());
    }
}

#[test]
fn in_order_delivery_across_the_wrap() {
    let start = Seq::new(u32::MAX - 2);
    let mut rb = ReorderBuffer::new(start, ReorderConfig::default());
    // Arrive in reverse: 2, 1, 0, MAX, MAX-1, MAX-2.
    for k in (0..6u32).rev() {
        let expect = if k == 0 {
            InsertOutcome::InOrder
        } else {
            InsertOutcome::Buffered
        };
        assert_eq!(rb.insert(start.add(k), vec![k as u8]), expect);
    }
    let got: Vec<(Seq, Vec<u8>)> = rb.drain_ready().collect();
    let want: Vec<(Seq, Vec<u8>)> = (0..6u32).map(|k| (start.add(k), vec![k as u8])).collect();
    assert_eq!(got, want);
    assert_eq!(rb.next_expected(), Seq::new(3));
    assert!(rb.is_empty());
    assert_eq!(rb.buffered_bytes(), 0);
    // Something from before the wrap is now too old.
    assert_eq!(
        rb.insert(Seq::new(u32::MAX), vec![1]),
        InsertOutcome::TooOld
    );
}

#[test]
fn drain_stops_at_gap_and_gap_is_never_skipped() {
    let mut rb = ReorderBuffer::new(Seq::new(0), ReorderConfig::default());
    for s in [0u32, 1, 3, 4] {
        assert!(rb.insert(Seq::new(s), item(1)).is_accepted());
    }
    let got: Vec<Seq> = rb.drain_ready().map(|(s, _)| s).collect();
    assert_eq!(got, [Seq::new(0), Seq::new(1)]);
    assert_eq!(rb.pop(), None);
    assert!(rb.has_gap());
    assert_eq!(rb.next_expected(), Seq::new(2));
    assert_eq!(rb.insert(Seq::new(2), item(1)), InsertOutcome::InOrder);
    assert_eq!(rb.drain_ready().count(), 3);
    assert!(!rb.has_gap());
}

#[test]
fn max_items_bound_reserves_a_slot_for_the_gap_filler() {
    let mut rb = ReorderBuffer::new(Seq::new(0), cfg(3, usize::MAX, 100));
    assert_eq!(rb.insert(Seq::new(5), item(1)), InsertOutcome::Buffered);
    assert_eq!(rb.insert(Seq::new(6), item(1)), InsertOutcome::Buffered);
    // A third out-of-order item would take the last slot: refused.
    assert_eq!(rb.insert(Seq::new(7), item(1)), InsertOutcome::OverCapacity);
    assert_eq!(rb.len(), 2);
    // The item that fills the gap still fits, reaching exactly max_items.
    assert_eq!(rb.insert(Seq::new(0), item(1)), InsertOutcome::InOrder);
    assert_eq!(rb.len(), 3);
    // Now full: even the next gap filler is refused (the caller should have popped).
    assert_eq!(rb.cumulative_ack(), Seq::new(1));
    assert_eq!(rb.insert(Seq::new(1), item(1)), InsertOutcome::OverCapacity);
    assert_eq!(rb.len(), 3);
    assert_eq!(rb.pop().map(|(s, _)| s), Some(Seq::new(0)));
    assert_eq!(rb.insert(Seq::new(1), item(1)), InsertOutcome::InOrder);
}

#[test]
fn max_items_zero_and_one() {
    let mut none = ReorderBuffer::new(Seq::new(0), cfg(0, usize::MAX, 100));
    assert_eq!(
        none.insert(Seq::new(0), item(1)),
        InsertOutcome::OverCapacity
    );
    assert!(none.is_empty());
    let mut one = ReorderBuffer::new(Seq::new(0), cfg(1, usize::MAX, 100));
    assert_eq!(
        one.insert(Seq::new(1), item(1)),
        InsertOutcome::OverCapacity
    );
    assert_eq!(one.insert(Seq::new(0), item(1)), InsertOutcome::InOrder);
    assert_eq!(one.len(), 1);
}

#[test]
fn max_bytes_bound() {
    let mut rb = ReorderBuffer::new(Seq::new(0), cfg(100, 10, 100));
    assert_eq!(rb.insert(Seq::new(2), item(6)), InsertOutcome::Buffered);
    assert_eq!(rb.insert(Seq::new(3), item(5)), InsertOutcome::OverCapacity);
    assert_eq!(rb.insert(Seq::new(3), item(4)), InsertOutcome::Buffered);
    assert_eq!(rb.buffered_bytes(), 10);
    // Bytes have no reserve: an in-order item that does not fit is refused too...
    assert_eq!(rb.insert(Seq::new(0), item(1)), InsertOutcome::OverCapacity);
    // ...but an empty one fits exactly.
    assert_eq!(rb.insert(Seq::new(0), item(0)), InsertOutcome::InOrder);
    assert_eq!(rb.buffered_bytes(), 10);
    assert!(rb.buffered_bytes() <= rb.config().max_bytes);
    let mut big = ReorderBuffer::new(Seq::new(0), cfg(100, 10, 100));
    assert_eq!(
        big.insert(Seq::new(0), item(11)),
        InsertOutcome::OverCapacity
    );
    assert_eq!(big.insert(Seq::new(0), item(10)), InsertOutcome::InOrder);
}

#[test]
fn max_distance_bound_slides_with_next_expected() {
    let start = Seq::new(u32::MAX - 3);
    let mut rb = ReorderBuffer::new(start, cfg(100, usize::MAX, 8));
    assert_eq!(
        rb.insert(start.add(8), item(1)),
        InsertOutcome::BeyondWindow
    );
    assert_eq!(rb.insert(start.add(7), item(1)), InsertOutcome::Buffered);
    assert_eq!(rb.insert(start, item(1)), InsertOutcome::InOrder);
    assert!(rb.pop().is_some());
    assert_eq!(rb.insert(start.add(8), item(1)), InsertOutcome::Buffered);
    assert_eq!(
        rb.insert(start.add(9), item(1)),
        InsertOutcome::BeyondWindow
    );
}

#[test]
fn huge_max_distance_is_capped_at_half_the_space() {
    let mut rb = ReorderBuffer::new(Seq::new(0), cfg(100, usize::MAX, u32::MAX));
    assert_eq!(
        rb.insert(Seq::new(1 << 31), item(1)),
        InsertOutcome::BeyondWindow
    );
    assert_eq!(
        rb.insert(Seq::new((1 << 31) + 1), item(1)),
        InsertOutcome::TooOld
    );
    assert_eq!(
        rb.insert(Seq::new((1 << 31) - 1), item(1)),
        InsertOutcome::Buffered
    );
    assert_eq!(rb.insert(Seq::new(0), item(1)), InsertOutcome::InOrder);
    assert_eq!(rb.len(), 2);
}

#[test]
fn cumulative_ack_counts_unpopped_in_order_items() {
    let mut rb = ReorderBuffer::new(Seq::new(u32::MAX), ReorderConfig::default());
    assert_eq!(rb.cumulative_ack(), Seq::new(u32::MAX));
    rb.insert(Seq::new(1), item(1));
    assert_eq!(rb.cumulative_ack(), Seq::new(u32::MAX));
    rb.insert(Seq::new(u32::MAX), item(1));
    assert_eq!(rb.cumulative_ack(), Seq::new(0));
    assert!(rb.has_gap());
    rb.insert(Seq::new(0), item(1));
    assert_eq!(rb.cumulative_ack(), Seq::new(2));
    assert!(!rb.has_gap());
    assert_eq!(rb.next_expected(), Seq::new(u32::MAX));
    assert_eq!(rb.drain_ready().count(), 3);
    assert_eq!(rb.cumulative_ack(), Seq::new(2));
}

#[test]
fn sack_ranges_put_the_newest_block_first_then_highest_first() {
    let mut rb = ReorderBuffer::new(Seq::new(0), ReorderConfig::default());
    assert!(rb.sack_ranges(8).is_empty());
    for s in [5u32, 6, 10, 20, 21, 3] {
        rb.insert(Seq::new(s), item(1));
    }
    assert_eq!(
        rb.sack_ranges(8),
        [range(3, 4), range(20, 22), range(10, 11), range(5, 7)]
    );
    assert_eq!(rb.sack_ranges(2), [range(3, 4), range(20, 22)]);
    assert_eq!(rb.sack_ranges(1), [range(3, 4)]);
    assert!(rb.sack_ranges(0).is_empty());
    // A new seq that merges two blocks: the merged block comes first.
    rb.insert(Seq::new(4), item(1));
    assert_eq!(
        rb.sack_ranges(8),
        [range(3, 7), range(20, 22), range(10, 11)]
    );
    // Filling the first gap moves the cumulative point: held blocks above it remain,
    // highest first (the newest seq is no longer above the cumulative point).
    rb.insert(Seq::new(0), item(1));
    rb.insert(Seq::new(1), item(1));
    rb.insert(Seq::new(2), item(1));
    assert_eq!(rb.cumulative_ack(), Seq::new(7));
    assert_eq!(rb.sack_ranges(8), [range(20, 22), range(10, 11)]);
    // Popping does not change what is reported.
    assert_eq!(rb.drain_ready().count(), 7);
    assert_eq!(rb.sack_ranges(8), [range(20, 22), range(10, 11)]);
}

#[test]
fn sack_ranges_across_the_wrap() {
    let mut rb = ReorderBuffer::new(Seq::new(u32::MAX - 5), ReorderConfig::default());
    for s in [u32::MAX - 1, u32::MAX, 0, 1, 4] {
        rb.insert(Seq::new(s), item(1));
    }
    rb.insert(Seq::new(u32::MAX - 3), item(1));
    assert_eq!(
        rb.sack_ranges(8),
        [
            range(u32::MAX - 3, u32::MAX - 2),
            range(4, 5),
            range(u32::MAX - 1, 2)
        ]
    );
    // A refused insert does not count as the newest.
    assert_eq!(rb.insert(Seq::new(4), item(1)), InsertOutcome::Duplicate);
    assert_eq!(rb.sack_ranges(1), [range(u32::MAX - 3, u32::MAX - 2)]);
}
