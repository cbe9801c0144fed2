//! The send-side retransmit buffer: frames sent but not yet acknowledged.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::{ByteLen, Seq, SeqRange};

/// Settings of a [`SendBuffer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendConfig {
    /// K: an unacknowledged frame is reported for fast retransmission once at least K frames
    /// sent after it have been selectively acknowledged. Default 3. `0` disables fast
    /// retransmission.
    pub fast_retransmit_threshold: u32,
}

impl Default for SendConfig {
    /// `fast_retransmit_threshold` 3.
    fn default() -> Self {
        SendConfig {
            fast_retransmit_threshold: 3,
        }
    }
}

/// What one acknowledgement did to a [`SendBuffer`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AckOutcome {
    /// Bytes of frames acknowledged for the first time by this ack.
    pub newly_acked_bytes: usize,
    /// Number of frames acknowledged for the first time by this ack.
    pub newly_acked_frames: usize,
    /// Unacknowledged frames (ascending) that at least K later-sent frames have now skipped
    /// in selective acks. A frame is reported once per transmission: after
    /// [`SendBuffer::mark_retransmitted`] it is reported again only when K frames sent after
    /// the retransmission have been selectively acknowledged.
    pub fast_retransmit: Vec<Seq>,
    /// Round-trip sample from the newest newly acknowledged frame that was never retransmitted
    /// (Karn's rule); `None` if every newly acknowledged frame had been retransmitted.
    pub rtt_sample: Option<Duration>,
    /// The ack names seqs never sent (cumulative point beyond `next_seq`, a non-empty SACK
    /// block ending beyond it, or a block whose end precedes its start): it was ignored entirely and
    /// nothing changed.
    pub invalid: bool,
}

#[derive(Debug)]
struct Entry<T> {
    item: T,
    /// Time of the last (re)transmission.
    sent: Instant,
    retransmits: u32,
    /// Already reported in `fast_retransmit` since the last transmission.
    fast_reported: bool,
    /// First seq sent after the last transmission of this frame: only SACKs of frames at or
    /// after it count towards fast retransmission.
    later_from: Seq,
}

/// Frames sent but not yet acknowledged, indexed by sequence number.
///
/// `push` assigns consecutive sequence numbers. Acknowledgements (a cumulative point plus SACK
/// blocks) release frames and their bytes; a frame acknowledged several times (cumulatively and
/// selectively, duplicated or reordered acks) is counted once, and acks older than what was
/// already acknowledged are harmless. Selectively acknowledged frames are released at once even
/// when earlier frames are still outstanding.
///
/// Frames are stored in a ring indexed by their distance from the oldest outstanding one,
/// so lookups are `O(1)`; `on_ack` is `O(frames acknowledged + SACK blocks)` plus one `O(n)`
/// scan when new selective acks may trigger fast retransmission.
/// [`SendBuffer::earliest_send_time`] (the retransmission timer, asked after every
/// operation) is `O(1)` while no held frame was retransmitted: first transmissions are
/// pushed in time order, so the oldest frame was sent earliest; with retransmitted frames
/// held it scans. The buffer must not hold 2^31 or more frames at once (the serial-number
/// space would become ambiguous).
#[derive(Debug)]
pub struct SendBuffer<T> {
    config: SendConfig,
    /// Slot `i` holds the frame with seq `base + i`; `None` marks a frame already acknowledged
    /// selectively. The front slot is always `Some` (acknowledged fronts are trimmed).
    slots: VecDeque<Option<Entry<T>>>,
    base: Seq,
    unacked: u32,
    /// Held frames that were retransmitted (their send times break the push order).
    retransmitted: u32,
    bytes: usize,
    /// Reused by `on_ack`: `scratch[i]` = number of acknowledged slots at offsets `>= i`.
    scratch: Vec<u32>,
}

impl<T: ByteLen> SendBuffer<T> {
    /// An empty buffer whose first frame gets sequence number `start`.
    pub fn new(start: Seq, config: SendConfig) -> Self {
        SendBuffer {
            config,
            slots: VecDeque::new(),
            base: start,
            unacked: 0,
            retransmitted: 0,
            bytes: 0,
            scratch: Vec::new(),
        }
    }

    /// Stores `item` as sent at `now`, returning the sequence number it was given.
    pub fn push(&mut self, item: T, now: Instant) -> Seq {
        let seq = self.next_seq();
        self.bytes += item.byte_len();
        self.unacked += 1;
        self.slots.push_back(Some(Entry {
            item,
            sent: now,
            retransmits: 0,
            fast_reported: false,
            later_from: seq.next(),
        }));
        seq
    }

    /// The sequence number the next `push` assigns.
    pub fn next_seq(&self) -> Seq {
        self.base.add(self.slots.len() as u32)
    }

    /// The unacknowledged frame with sequence number `seq`, if held.
    pub fn get(&self, seq: Seq) -> Option<&T> {
        self.entry(seq).map(|e| &e.item)
    }

    /// Records that `seq` was sent again at `now`: updates its send time, counts the
    /// retransmission and re-arms fast retransmission for it. `false` if `seq` is not held.
    pub fn mark_retransmitted(&mut self, seq: Seq, now: Instant) -> bool {
        let next = self.next_seq();
        let Some(offset) = self.offset_of(seq) else {
            return false;
        };
        match self.slots.get_mut(offset) {
            Some(Some(entry)) => {
                if entry.retransmits == 0 {
                    self.retransmitted += 1;
                }
                entry.sent = now;
                entry.retransmits = entry.retransmits.saturating_add(1);
                entry.fast_reported = false;
                entry.later_from = next;
                true
            }
            _ => false,
        }
    }

    /// How many times `seq` has been retransmitted, if it is held.
    pub fn retransmits(&self, seq: Seq) -> Option<u32> {
        self.entry(seq).map(|e| e.retransmits)
    }

    /// Applies an acknowledgement: every seq before `cumulative` was received, and so was every
    /// seq in the `sack` blocks. See [`AckOutcome`] for what is reported.
    pub fn on_ack(&mut self, cumulative: Seq, sack: &[SeqRange], now: Instant) -> AckOutcome {
        let next = self.next_seq();
        let not_after_next = |s: Seq| s == next || s.is_before(next);
        // An empty block names no seq, wherever it sits.
        let block_ok =
            |r: &SeqRange| r.start == r.end || (r.start.is_before(r.end) && not_after_next(r.end));
        if !not_after_next(cumulative) || !sack.iter().all(block_ok) {
            return AckOutcome {
                invalid: true,
                ..AckOutcome::default()
            };
        }

        let len = self.slots.len() as i64;
        let mut out = AckOutcome::default();
        // Offset and send time of the newest newly acknowledged, never retransmitted frame.
        let mut newest_clean: Option<(usize, Instant)> = None;

        let cum_end = i64::from(cumulative.diff(self.base)).clamp(0, len) as usize;
        for offset in 0..cum_end {
            self.ack_slot(offset, &mut out, &mut newest_clean);
        }
        let frames_before_sack = out.newly_acked_frames;
        for block in sack {
            let end = i64::from(block.end.diff(self.base));
            let start = end - i64::from(block.end.distance_from(block.start));
            let (start, end) = (start.clamp(0, len) as usize, end.clamp(0, len) as usize);
            for offset in start..end {
                self.ack_slot(offset, &mut out, &mut newest_clean);
            }
        }
        let newly_sacked = out.newly_acked_frames > frames_before_sack;

        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base = self.base.next();
        }
        if newly_sacked && self.config.fast_retransmit_threshold > 0 {
            self.detect_fast_retransmit(&mut out.fast_retransmit);
        }
        out.rtt_sample = newest_clean.map(|(_, sent)| now.saturating_duration_since(sent));
        out
    }

    /// The lowest unacknowledged seq and its last send time.
    pub fn oldest_unacked(&self) -> Option<(Seq, Instant)> {
        match self.slots.front() {
            Some(Some(entry)) => Some((self.base, entry.sent)),
            _ => None,
        }
    }

    /// The earliest last-send time over all unacknowledged frames (to arm the retransmission
    /// timer). `O(1)` while no held frame was retransmitted (then the oldest frame was sent
    /// first), `O(n)` otherwise. Assumes the `now`s given never go backwards.
    pub fn earliest_send_time(&self) -> Option<Instant> {
        if self.retransmitted == 0 {
            return self.oldest_unacked().map(|(_, sent)| sent);
        }
        self.entries().map(|(_, e)| e.sent).min()
    }

    /// Unacknowledged frames (ascending) whose last send time is `<= deadline`.
    pub fn expired(&self, deadline: Instant) -> Vec<Seq> {
        self.expired_iter(deadline).collect()
    }

    /// [`SendBuffer::expired`] without collecting: the unacknowledged frames (ascending)
    /// whose last send time is `<= deadline`, visited lazily; nothing when none is that old
    /// (checked in `O(1)`).
    pub fn expired_iter(&self, deadline: Instant) -> impl Iterator<Item = Seq> + '_ {
        let any = self.earliest_send_time().is_some_and(|t| t <= deadline);
        self.entries()
            .take_while(move |_| any)
            .filter(move |(_, e)| e.sent <= deadline)
            .map(|(seq, _)| seq)
    }

    /// The last send time of `seq`, if it is held unacknowledged.
    pub fn sent_at(&self, seq: Seq) -> Option<Instant> {
        self.entry(seq).map(|e| e.sent)
    }

    /// Unacknowledged frames in ascending sequence order.
    pub fn iter(&self) -> impl Iterator<Item = (Seq, &T)> {
        self.entries().map(|(seq, e)| (seq, &e.item))
    }

    /// Number of unacknowledged frames held.
    pub fn len(&self) -> usize {
        self.unacked as usize
    }

    /// Whether every frame pushed has been acknowledged.
    pub fn is_empty(&self) -> bool {
        self.unacked == 0
    }

    /// Sum of [`ByteLen::byte_len`] over the unacknowledged frames.
    pub fn unacked_bytes(&self) -> usize {
        self.bytes
    }

    fn entries(&self) -> impl Iterator<Item = (Seq, &Entry<T>)> {
        let base = self.base;
        self.slots
            .iter()
            .enumerate()
            .filter_map(move |(i, slot)| slot.as_ref().map(|e| (base.add(i as u32), e)))
    }

    fn offset_of(&self, seq: Seq) -> Option<usize> {
        let offset = seq.distance_from(self.base) as usize;
        (offset < self.slots.len()).then_some(offset)
    }

    fn entry(&self, seq: Seq) -> Option<&Entry<T>> {
        self.slots.get(self.offset_of(seq)?)?.as_ref()
    }

    fn ack_slot(
        &mut self,
        offset: usize,
        out: &mut AckOutcome,
        newest_clean: &mut Option<(usize, Instant)>,
    ) {
        let Some(entry) = self.slots.get_mut(offset).and_then(Option::take) else {
            return;
        };
        let n = entry.item.byte_len();
        self.bytes -= n;
        self.unacked -= 1;
        if entry.retransmits > 0 {
            self.retransmitted -= 1;
        }
        out.newly_acked_bytes += n;
        out.newly_acked_frames += 1;
        if entry.retransmits == 0 && newest_clean.is_none_or(|(o, _)| offset > o) {
            *newest_clean = Some((offset, entry.sent));
        }
    }

    fn detect_fast_retransmit(&mut self, report: &mut Vec<Seq>) {
        let k = self.config.fast_retransmit_threshold;
        let len = self.slots.len();
        self.scratch.clear();
        self.scratch.resize(len + 1, 0);
        for i in (0..len).rev() {
            self.scratch[i] = self.scratch[i + 1] + u32::from(self.slots[i].is_none());
        }
        let base = self.base;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(entry) = slot else { continue };
            if entry.fast_reported {
                continue;
            }
            let from = (entry.later_from.distance_from(base) as usize).clamp(i + 1, len);
            if self.scratch[from] >= k {
                entry.fast_reported = true;
                report.push(base.add(i as u32));
            }
        }
    }
}
