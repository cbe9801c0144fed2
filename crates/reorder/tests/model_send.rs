//! Model-based property test: `SendBuffer` against a plain `BTreeMap` model under random
//! pushes, retransmissions, clock steps and acks: fresh, duplicated, replayed out of order and
//! forged (naming seqs never sent), from start seqs near `u32::MAX` so runs cross the wrap.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use reorder::{AckOutcome, SendBuffer, SendConfig, Seq, SeqRange};

#[derive(Clone, Debug)]
enum Op {
    Push {
        len: usize,
    },
    Advance {
        ms: u64,
    },
    Retransmit {
        pick: u64,
    },
    /// Retransmit the lowest frame reported for fast retransmission, as a sender would.
    FastRetransmit,
    /// Positions are drawn around the outstanding window (some before it, some beyond it).
    Ack {
        cum: u64,
        blocks: Vec<(u64, i64)>,
    },
    /// Re-deliver an earlier ack (duplicated or reordered acks).
    Replay {
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0usize..20).prop_map(|len| Op::Push { len }),
        2 => (0u64..50).prop_map(|ms| Op::Advance { ms }),
        1 => any::<u64>().prop_map(|pick| Op::Retransmit { pick }),
        2 => Just(Op::FastRetransmit),
        4 => (any::<u64>(), prop::collection::vec((any::<u64>(), -2i64..8), 0..4))
            .prop_map(|(cum, blocks)| Op::Ack { cum, blocks }),
        1 => any::<usize>().prop_map(|pick| Op::Replay { pick }),
    ]
}

fn start() -> impl Strategy<Value = u32> {
    prop_oneof![3 => (u32::MAX - 40)..=u32::MAX, 1 => any::<u32>()]
}

#[derive(Clone, Debug)]
struct Frame {
    len: usize,
    sent: u64,
    retransmits: u32,
    reported: bool,
    later_from: i64,
}

/// Everything by scanning; positions are absolute (the start seq is position 0) and signed so
/// that acks can name positions before the start.
struct Model {
    start: Seq,
    k: u32,
    next: i64,
    unacked: BTreeMap<i64, Frame>,
    acked: BTreeSet<i64>,
}

impl Model {
    fn seq(&self, pos: i64) -> Seq {
        self.start.add(pos as u32)
    }

    fn low(&self) -> i64 {
        self.unacked.keys().next().copied().unwrap_or(self.next)
    }

    fn on_ack(&mut self, cum: i64, blocks: &[(i64, i64)], now: u64) -> AckOutcome {
        let forged = cum > self.next
            || blocks
                .iter()
                .any(|&(s, e)| s != e && (e < s || e > self.next));
        if forged {
            return AckOutcome {
                invalid: true,
                ..AckOutcome::default()
            };
        }
        let mut newly: Vec<i64> = self.unacked.range(..cum).map(|(p, _)| *p).collect();
        for &(s, e) in blocks {
            newly.extend(self.unacked.range(s..e.max(s)).map(|(p, _)| *p));
        }
        newly.sort_unstable();
        newly.dedup();
        let mut out = AckOutcome::default();
        let mut newest_clean = None;
        for p in newly {
            let f = self.unacked.remove(&p).expect("listed from the map");
            self.acked.insert(p);
            out.newly_acked_bytes += f.len;
            out.newly_acked_frames += 1;
            if f.retransmits == 0 {
                newest_clean = Some(f.sent);
            }
        }
        out.rtt_sample = newest_clean.map(|sent| Duration::from_millis(now - sent));
        if self.k > 0 {
            for (p, f) in self.unacked.iter_mut() {
                let later = self.acked.range(f.later_from..).count() as u32;
                if !f.reported && later >= self.k {
                    f.reported = true;
                    out.fast_retransmit.push(self.start.add(*p as u32));
                }
            }
        }
        out
    }
}

fn check(
    sb: &SendBuffer<Bytes>,
    model: &Model,
    t0: Instant,
    now: u64,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(sb.len(), model.unacked.len());
    prop_assert_eq!(sb.is_empty(), model.unacked.is_empty());
    prop_assert_eq!(
        sb.unacked_bytes(),
        model.unacked.values().map(|f| f.len).sum::<usize>()
    );
    prop_assert_eq!(sb.next_seq(), model.seq(model.next));
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let held: Vec<(Seq, Bytes)> = sb.iter().map(|(s, b)| (s, b.clone())).collect();
    let want: Vec<(Seq, Bytes)> = model
        .unacked
        .iter()
        .map(|(p, f)| (model.seq(*p), Bytes::from(vec![*p as u8; f.len])))
        .collect();
    prop_assert_eq!(held, want);
    prop_assert_eq!(
        sb.oldest_unacked(),
        model
            .unacked
            .iter()
            .next()
            .map(|(p, f)| (model.seq(*p), at(f.sent)))
    );
    prop_assert_eq!(
        sb.earliest_send_time(),
        model.unacked.values().map(|f| at(f.sent)).min()
    );
    let deadline = now.saturating_sub(40);
    let expired: Vec<Seq> = model
        .unacked
        .iter()
        .filter(|(_, f)| f.sent <= deadline)
        .map(|(p, _)| model.seq(*p))
        .collect();
    prop_assert_eq!(sb.expired(at(deadline)), expired);
    for p in model.low() - 1..=model.next {
        let f = model.unacked.get(&p);
        prop_assert_eq!(sb.retransmits(model.seq(p)), f.map(|f| f.retransmits));
        prop_assert_eq!(sb.get(model.seq(p)).map(Bytes::len), f.map(|f| f.len));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn send_buffer_matches_model(
        start in start(),
        k in 0u32..5,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let start = Seq::new(start);
        let t0 = Instant::now();
        let mut sb = SendBuffer::new(start, SendConfig { fast_retransmit_threshold: k });
        let mut model = Model { start, k, next: 0, unacked: BTreeMap::new(), acked: BTreeSet::new() };
        let mut now = 0u64;
        let (mut pushed_bytes, mut acked_bytes, mut acked_frames) = (0usize, 0usize, 0usize);
        let mut history: Vec<(i64, Vec<(i64, i64)>)> = Vec::new();
        for op in ops {
            let at = t0 + Duration::from_millis(now);
            let ack = match op {
                Op::Push { len } => {
                    let seq = sb.push(Bytes::from(vec![model.next as u8; len]), at);
                    prop_assert_eq!(seq, model.seq(model.next));
                    let later_from = model.next + 1;
                    model.unacked.insert(model.next, Frame { len, sent: now, retransmits: 0, reported: false, later_from });
                    model.next += 1;
                    pushed_bytes += len;
                    None
                }
                Op::Advance { ms } => {
                    now += ms;
                    None
                }
                Op::Retransmit { pick } => {
                    let low = model.low();
                    let p = low - 1 + (pick % (model.next - low + 3) as u64) as i64;
                    let next = model.next;
                    let want = model.unacked.get_mut(&p).map(|f| {
                        f.sent = now;
                        f.retransmits += 1;
                        f.reported = false;
                        f.later_from = next;
                    });
                    prop_assert_eq!(sb.mark_retransmitted(model.seq(p), at), want.is_some());
                    None
                }
                Op::FastRetransmit => {
                    let next = model.next;
                    if let Some((p, f)) = model.unacked.iter_mut().find(|(_, f)| f.reported) {
                        f.sent = now;
                        f.retransmits += 1;
                        f.reported = false;
                        f.later_from = next;
                        prop_assert!(sb.mark_retransmitted(model.start.add(*p as u32), at));
                    }
                    None
                }
                Op::Ack { cum, blocks } => {
                    // Draw around [low - 3, next + 3): mostly valid, sometimes stale or forged.
                    let low = model.low();
                    let span = (model.next - low + 6) as u64;
                    let pos = |r: u64| low - 3 + (r % span) as i64;
                    let blocks = blocks.iter().map(|&(s, l)| (pos(s), pos(s) + l)).collect();
                    Some((pos(cum), blocks))
                }
                Op::Replay { pick } => {
                    if history.is_empty() { None } else { Some(history[pick % history.len()].clone()) }
                }
            };
            if let Some((cum, blocks)) = ack {
                let ranges: Vec<SeqRange> = blocks
                    .iter()
                    .map(|&(s, e)| SeqRange::new(model.seq(s), model.seq(e)))
                    .collect();
                let got = sb.on_ack(model.seq(cum), &ranges, at);
                let want = model.on_ack(cum, &blocks, now);
                prop_assert_eq!(&got, &want, "ack cum {} blocks {:?}", cum, blocks);
                for seq in &got.fast_retransmit {
                    prop_assert!(sb.get(*seq).is_some(), "reported frame {} must be unacked", seq);
                }
                acked_bytes += got.newly_acked_bytes;
                acked_frames += got.newly_acked_frames;
                history.push((cum, blocks));
            }
            check(&sb, &model, t0, now)?;
            prop_assert_eq!(acked_bytes + sb.unacked_bytes(), pushed_bytes);
            prop_assert_eq!(acked_frames + sb.len(), model.next as usize);
        }
    }
}
