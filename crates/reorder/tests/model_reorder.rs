//! Model-based property test: `ReorderBuffer` against a plain `BTreeMap` model.
//!
//! Random interleavings of inserts (gaps, duplicates, stale and out-of-window seqs, inserts that
//! fill the first gap) and pops, from start seqs near `u32::MAX` so runs cross the wrap. After
//! every step the buffer must agree with the model on the outcome, the delivered items, the
//! accounting, the cumulative point and the SACK ranges, and the bounds must hold.

use std::collections::BTreeMap;

use proptest::prelude::*;
use reorder::{InsertOutcome, ReorderBuffer, ReorderConfig, Seq, SeqRange};

#[derive(Clone, Debug)]
enum Op {
    /// Insert at `next_expected + offset` (offset may be negative: stale).
    Insert {
        offset: i64,
        len: usize,
        tag: u8,
    },
    /// Insert the item that fills the first gap (at the cumulative point).
    FillGap {
        len: usize,
        tag: u8,
    },
    /// `take_in_order` at `next_expected + offset`: the caller takes the item itself.
    TakeInOrder {
        offset: i64,
        len: usize,
        tag: u8,
    },
    Pop,
    Drain,
}

fn op(max_distance: u32) -> impl Strategy<Value = Op> {
    let reach = i64::from(max_distance) + 6;
    prop_oneof![
        6 => (-6..reach, 0usize..12, any::<u8>())
            .prop_map(|(offset, len, tag)| Op::Insert { offset, len, tag }),
        3 => (0usize..12, any::<u8>()).prop_map(|(len, tag)| Op::FillGap { len, tag }),
        3 => (-1i64..2, 0usize..12, any::<u8>())
            .prop_map(|(offset, len, tag)| Op::TakeInOrder { offset, len, tag }),
        2 => Just(Op::Pop),
        1 => Just(Op::Drain),
    ]
}

fn start() -> impl Strategy<Value = u32> {
    prop_oneof![3 => (u32::MAX - 40)..=u32::MAX, 1 => any::<u32>()]
}

fn config() -> impl Strategy<Value = ReorderConfig> {
    (0usize..14, 0usize..80, 1u32..40).prop_map(|(max_items, max_bytes, max_distance)| {
        ReorderConfig {
            max_items,
            max_bytes,
            max_distance,
        }
    })
}

/// The obvious implementation: a map from absolute position to item, everything by scanning.
struct Model {
    start: Seq,
    cfg: ReorderConfig,
    next: u64,
    held: BTreeMap<u64, Vec<u8>>,
    last: Option<u64>,
}

impl Model {
    fn seq(&self, pos: u64) -> Seq {
        self.start.add(pos as u32)
    }

    fn bytes(&self) -> usize {
        self.held.values().map(Vec::len).sum()
    }

    fn cum(&self) -> u64 {
        let mut p = self.next;
        while self.held.contains_key(&p) {
            p += 1;
        }
        p
    }

    fn insert(&mut self, offset: i64, item: Vec<u8>) -> InsertOutcome {
        if offset < 0 {
            return InsertOutcome::TooOld;
        }
        if offset >= i64::from(self.cfg.max_distance) {
            return InsertOutcome::BeyondWindow;
        }
        let pos = self.next + offset as u64;
        if self.held.contains_key(&pos) {
            return InsertOutcome::Duplicate;
        }
        let limit = if pos == self.cum() {
            self.cfg.max_items
        } else {
            self.cfg.max_items.saturating_sub(1)
        };
        if self.held.len() >= limit || self.bytes() + item.len() > self.cfg.max_bytes {
            return InsertOutcome::OverCapacity;
        }
        self.held.insert(pos, item);
        self.last = Some(pos);
        if offset == 0 {
            InsertOutcome::InOrder
        } else {
            InsertOutcome::Buffered
        }
    }

    fn pop(&mut self) -> Option<(Seq, Vec<u8>)> {
        let item = self.held.remove(&self.next)?;
        let seq = self.seq(self.next);
        self.next += 1;
        Some((seq, item))
    }

    fn sack(&self, max: usize) -> Vec<SeqRange> {
        let cum = self.cum();
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &p in self.held.keys().filter(|p| **p > cum) {
            match runs.last_mut() {
                Some((_, end)) if *end == p => *end += 1,
                _ => runs.push((p, p + 1)),
            }
        }
        runs.reverse();
        if let Some(last) = self.last {
            if let Some(i) = runs.iter().position(|(s, e)| (*s..*e).contains(&last)) {
                let recent = runs.remove(i);
                runs.insert(0, recent);
            }
        }
        runs.truncate(max);
        runs.into_iter()
            .map(|(s, e)| SeqRange::new(self.seq(s), self.seq(e)))
            .collect()
    }
}

fn check(rb: &ReorderBuffer<Vec<u8>>, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(rb.len(), model.held.len());
    prop_assert_eq!(rb.is_empty(), model.held.is_empty());
    prop_assert_eq!(rb.buffered_bytes(), model.bytes());
    prop_assert!(rb.len() <= model.cfg.max_items);
    prop_assert!(rb.buffered_bytes() <= model.cfg.max_bytes);
    prop_assert_eq!(rb.next_expected(), model.seq(model.next));
    let cum = model.cum();
    prop_assert_eq!(rb.cumulative_ack(), model.seq(cum));
    prop_assert_eq!(rb.has_gap(), model.held.keys().any(|p| *p > cum));
    for max in [1, 2, usize::MAX] {
        prop_assert_eq!(rb.sack_ranges(max), model.sack(max), "max {}", max);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn reorder_buffer_matches_model(
        start in start(),
        cfg in config(),
        ops in prop::collection::vec(op(40), 1..80),
    ) {
        let start = Seq::new(start);
        let mut rb = ReorderBuffer::new(start, cfg);
        let mut model = Model { start, cfg, next: 0, held: BTreeMap::new(), last: None };
        let mut delivered = Vec::new();
        for op in ops {
            match op {
                Op::Insert { offset, len, tag } => {
                    let seq = model.seq(model.next).add(offset as u32);
                    let got = rb.insert(seq, vec![tag; len]);
                    prop_assert_eq!(got, model.insert(offset, vec![tag; len]), "insert {}", seq);
                }
                Op::FillGap { len, tag } => {
                    let offset = (model.cum() - model.next) as i64;
                    let seq = rb.cumulative_ack();
                    let got = rb.insert(seq, vec![tag; len]);
                    prop_assert_eq!(got, model.insert(offset, vec![tag; len]), "fill {}", seq);
                }
                Op::TakeInOrder { offset, len, tag } => {
                    let seq = model.seq(model.next).add(offset as u32);
                    let got = rb.take_in_order(seq, len);
                    // The model: insert then pop, where nothing is held and the insert
                    // is accepted in order; otherwise nothing happens.
                    let want = offset == 0
                        && model.held.is_empty()
                        && model.insert(0, vec![tag; len]) == InsertOutcome::InOrder;
                    prop_assert_eq!(got, want, "take {} ({} bytes)", seq, len);
                    if want {
                        let item = model.pop();
                        prop_assert!(item.is_some());
                        delivered.extend(item);
                    }
                }
                Op::Pop => {
                    let got = rb.pop();
                    prop_assert_eq!(&got, &model.pop());
                    delivered.extend(got);
                }
                Op::Drain => {
                    let got: Vec<_> = rb.drain_ready().collect();
                    let mut want = Vec::new();
                    while let Some(x) = model.pop() {
                        want.push(x);
                    }
                    prop_assert_eq!(&got, &want);
                    delivered.extend(got);
                }
            }
            check(&rb, &model)?;
        }
        // Delivery is gap-free: consecutive seqs from the start.
        for (i, (seq, _)) in delivered.iter().enumerate() {
            prop_assert_eq!(*seq, start.add(i as u32));
        }
    }
}
