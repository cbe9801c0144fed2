//! Example-based tests of `SendBuffer`: acks of every shape, fast retransmit, Karn, timers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reorder::{AckOutcome, SendBuffer, SendConfig, Seq, SeqRange};

fn range(start: u32, end: u32) -> SeqRange {
    SeqRange::new(Seq::new(start), Seq::new(end))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A buffer holding frames of 1, 2, 3, ... bytes, pushed 10 ms apart from `t0`.
fn filled(start: u32, frames: u32, k: u32, t0: Instant) -> SendBuffer<Bytes> {
    let mut sb = SendBuffer::new(
        Seq::new(start),
        SendConfig {
            fast_retransmit_threshold: k,
        },
    );
    for i in 0..frames {
        let seq = sb.push(
            Bytes::from(vec![7u8; i as usize + 1]),
            t0 + ms(10 * u64::from(i)),
        );
        assert_eq!(seq, Seq::new(start).add(i));
    }
    sb
}

#[test]
fn push_assigns_consecutive_seqs_across_the_wrap() {
    let t0 = Instant::now();
    let sb = filled(u32::MAX - 1, 4, 3, t0);
    assert_eq!(sb.next_seq(), Seq::new(2));
    assert_eq!(sb.len(), 4);
    assert_eq!(sb.unacked_bytes(), 1 + 2 + 3 + 4);
    let seqs: Vec<u32> = sb.iter().map(|(s, _)| s.get()).collect();
    assert_eq!(seqs, [u32::MAX - 1, u32::MAX, 0, 1]);
    assert_eq!(sb.get(Seq::new(0)).map(Bytes::len), Some(3));
    assert_eq!(sb.get(Seq::new(2)), None);
    assert_eq!(sb.get(Seq::new(u32::MAX - 2)), None);
    assert_eq!(sb.oldest_unacked(), Some((Seq::new(u32::MAX - 1), t0)));
    assert_eq!(SendConfig::default().fast_retransmit_threshold, 3);
}

#[test]
fn cumulative_acks_count_each_frame_once() {
    let t0 = Instant::now();
    let mut sb = filled(u32::MAX - 1, 5, 3, t0);
    let a = sb.on_ack(Seq::new(1), &[], t0 + ms(100));
    assert_eq!((a.newly_acked_frames, a.newly_acked_bytes), (3, 1 + 2 + 3));
    assert_eq!(a.rtt_sample, Some(ms(100 - 20)));
    assert!(!a.invalid);
    // Duplicate and older cumulative acks change nothing.
    for cum in [1u32, 0, u32::MAX - 1, u32::MAX - 30] {
        assert_eq!(
            sb.on_ack(Seq::new(cum), &[], t0 + ms(200)),
            AckOutcome::default()
        );
    }
    assert_eq!((sb.len(), sb.unacked_bytes()), (2, 4 + 5));
    assert_eq!(sb.oldest_unacked(), Some((Seq::new(1), t0 + ms(30))));
    let b = sb.on_ack(Seq::new(3), &[], t0 + ms(200));
    assert_eq!((b.newly_acked_frames, b.newly_acked_bytes), (2, 9));
    assert!(sb.is_empty());
    assert_eq!(sb.unacked_bytes(), 0);
    assert_eq!(sb.oldest_unacked(), None);
    assert_eq!(sb.next_seq(), Seq::new(3));
}

#[test]
fn sacked_frames_are_released_below_a_gap_and_not_counted_again() {
    let t0 = Instant::now();
    let mut sb = filled(100, 6, 3, t0);
    let a = sb.on_ack(
        Seq::new(100),
        &[range(102, 104), range(103, 105)],
        t0 + ms(90),
    );
    assert_eq!((a.newly_acked_frames, a.newly_acked_bytes), (3, 3 + 4 + 5));
    assert_eq!(a.rtt_sample, Some(ms(90 - 40)));
    assert_eq!(sb.unacked_bytes(), 1 + 2 + 6);
    let held: Vec<u32> = sb.iter().map(|(s, _)| s.get()).collect();
    assert_eq!(held, [100, 101, 105]);
    assert_eq!(sb.get(Seq::new(103)), None);
    // The cumulative ack that covers the SACKed frames counts only the rest.
    let b = sb.on_ack(Seq::new(105), &[range(102, 104)], t0 + ms(95));
    assert_eq!((b.newly_acked_frames, b.newly_acked_bytes), (2, 1 + 2));
    assert_eq!(sb.oldest_unacked().map(|(s, _)| s), Some(Seq::new(105)));
    assert_eq!((sb.len(), sb.unacked_bytes()), (1, 6));
}

#[test]
fn forged_acks_are_ignored_whole() {
    let t0 = Instant::now();
    let mut sb = filled(u32::MAX - 2, 4, 1, t0);
    // next_seq is 1.
    let forged: [(u32, Vec<SeqRange>); 4] = [
        (2, vec![]),
        (0, vec![range(u32::MAX, 2)]),
        (
            0,
            vec![range(u32::MAX - 1, u32::MAX), range(0, u32::MAX - 2)],
        ),
        (1 + (1 << 31), vec![]),
    ];
    for (cum, sack) in forged {
        let a = sb.on_ack(Seq::new(cum), &sack, t0 + ms(50));
        assert!(a.invalid, "cum {cum} sack {sack:?}");
        assert_eq!((a.newly_acked_frames, a.newly_acked_bytes), (0, 0));
        assert!(a.fast_retransmit.is_empty() && a.rtt_sample.is_none());
        assert_eq!((sb.len(), sb.unacked_bytes()), (4, 10));
    }
    // Exactly everything sent is valid.
    let ok = sb.on_ack(
        Seq::new(u32::MAX - 2),
        &[range(u32::MAX - 1, 1)],
        t0 + ms(50),
    );
    assert!(!ok.invalid);
    assert_eq!(ok.newly_acked_frames, 3);
    // An empty block is harmless.
    assert!(!sb.on_ack(Seq::new(0), &[range(5, 5)], t0).invalid);
}

#[test]
fn fast_retransmit_after_k_later_sacks_once_per_transmission() {
    let t0 = Instant::now();
    let mut sb = filled(u32::MAX - 1, 10, 3, t0);
    let s = |k: u32| Seq::new(u32::MAX - 1).add(k);
    let sack = |a: u32, b: u32| SeqRange::new(s(a), s(b));
    // Frame 0 lost; 1 and 2 SACKed: below threshold.
    assert!(sb
        .on_ack(s(0), &[sack(1, 3)], t0)
        .fast_retransmit
        .is_empty());
    // Third later SACK: frame 0 reported.
    assert_eq!(sb.on_ack(s(0), &[sack(3, 4)], t0).fast_retransmit, [s(0)]);
    // More SACKs and duplicate acks: not reported again. Frame 4 lost too; 5, 6 SACKed.
    assert!(sb
        .on_ack(s(0), &[sack(5, 7)], t0)
        .fast_retransmit
        .is_empty());
    assert!(sb
        .on_ack(s(0), &[sack(5, 7)], t0)
        .fast_retransmit
        .is_empty());
    // Frame 7 SACKed: frame 4 now has 3 later SACKs; frame 0 stays quiet.
    assert_eq!(sb.on_ack(s(0), &[sack(7, 8)], t0).fast_retransmit, [s(4)]);
    // Retransmit frame 0: it needs 3 SACKs of frames sent after the retransmission.
    assert!(sb.mark_retransmitted(s(0), t0 + ms(500)));
    assert_eq!(sb.retransmits(s(0)), Some(1));
    assert!(sb
        .on_ack(s(0), &[sack(8, 10)], t0)
        .fast_retransmit
        .is_empty());
    for _ in 0..3 {
        sb.push(Bytes::from_static(b"x"), t0 + ms(600));
    }
    assert!(sb
        .on_ack(s(0), &[sack(10, 12)], t0)
        .fast_retransmit
        .is_empty());
    assert_eq!(sb.on_ack(s(0), &[sack(12, 13)], t0).fast_retransmit, [s(0)]);
}

#[test]
fn fast_retransmit_reports_several_frames_ascending_and_zero_disables() {
    let t0 = Instant::now();
    let mut sb = filled(0, 8, 2, t0);
    let a = sb.on_ack(Seq::new(0), &[range(6, 8), range(2, 3)], t0);
    assert_eq!(
        a.fast_retransmit,
        [
            Seq::new(0),
            Seq::new(1),
            Seq::new(3),
            Seq::new(4),
            Seq::new(5)
        ]
    );
    let mut off = filled(0, 8, 0, t0);
    assert!(off
        .on_ack(Seq::new(0), &[range(1, 8)], t0)
        .fast_retransmit
        .is_empty());
}

#[test]
fn karn_rule_skips_retransmitted_frames() {
    let t0 = Instant::now();
    let mut sb = filled(0, 3, 3, t0);
    assert!(sb.mark_retransmitted(Seq::new(2), t0 + ms(300)));
    assert!(!sb.mark_retransmitted(Seq::new(3), t0));
    // Only the retransmitted frame is acked: no sample.
    let a = sb.on_ack(Seq::new(0), &[range(2, 3)], t0 + ms(400));
    assert_eq!((a.newly_acked_frames, a.rtt_sample), (1, None));
    // Frame 1 (sent at +10ms) is the newest clean one.
    let b = sb.on_ack(Seq::new(2), &[], t0 + ms(410));
    assert_eq!(b.rtt_sample, Some(ms(400)));
    assert_eq!(sb.retransmits(Seq::new(2)), None);
}

#[test]
fn timers_see_last_send_times() {
    let t0 = Instant::now();
    let mut sb = filled(u32::MAX, 4, 3, t0);
    assert_eq!(sb.earliest_send_time(), Some(t0));
    assert_eq!(sb.expired(t0 + ms(10)), [Seq::new(u32::MAX), Seq::new(0)]);
    assert!(sb.mark_retransmitted(Seq::new(u32::MAX), t0 + ms(100)));
    assert_eq!(sb.earliest_send_time(), Some(t0 + ms(10)));
    assert_eq!(
        sb.oldest_unacked(),
        Some((Seq::new(u32::MAX), t0 + ms(100)))
    );
    assert_eq!(sb.expired(t0 + ms(10)), [Seq::new(0)]);
    assert_eq!(sb.expired(t0 + ms(100)).len(), 4);
    sb.on_ack(Seq::new(u32::MAX), &[range(0, 3)], t0);
    assert_eq!(sb.earliest_send_time(), Some(t0 + ms(100)));
    assert!(sb.expired(t0 + ms(99)).is_empty());
}
