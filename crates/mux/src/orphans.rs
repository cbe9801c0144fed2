//! Data that overtook its `Open`: held per (sender tag, stream id), bounded in the
//! number of ids, in frames per id and in age.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lp_frame::{StreamHeader, StreamId};

/// One held frame.
pub(crate) struct HeldFrame {
    pub(crate) header: StreamHeader,
    pub(crate) payload: Bytes,
}

struct Entry {
    first_seen: Instant,
    frames: Vec<HeldFrame>,
    bytes: usize,
}

/// What happened to a frame offered to the orphan store.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HoldOutcome {
    /// Held until the `Open` arrives.
    Held,
    /// Dropped: a bound was hit.
    Dropped,
}

/// The bounded orphan store.
pub(crate) struct Orphans<T> {
    entries: HashMap<(T, StreamId), Entry>,
    max_streams: usize,
    max_frames: usize,
    /// Most payload bytes held per stream: what a sender may send before our first
    /// ack (its initial credit) plus one frame of slack.
    max_bytes_per_stream: usize,
    /// Most payload bytes held in all (the orphan store's share of the budget).
    max_bytes: usize,
    ttl: Duration,
    bytes: usize,
}

impl<T: Copy + Eq + Hash> Orphans<T> {
    pub(crate) fn new(
        max_streams: usize,
        max_frames: usize,
        max_bytes_per_stream: usize,
        max_bytes: usize,
        ttl: Duration,
    ) -> Self {
        Self {
            entries: HashMap::new(),
            max_streams,
            max_frames,
            max_bytes_per_stream,
            max_bytes,
            ttl,
            bytes: 0,
        }
    }

    /// Bytes currently held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Offers a frame; `budget` is what the client-wide inbound budget still allows.
    pub(crate) fn hold(
        &mut self,
        key: (T, StreamId),
        header: StreamHeader,
        payload: Bytes,
        now: Instant,
        budget: usize,
    ) -> HoldOutcome {
        if payload.len() > budget || self.bytes + payload.len() > self.max_bytes {
            return HoldOutcome::Dropped;
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= self.max_streams {
            // The caller expires old entries first (it accounts for what they held).
            let _ = now;
            return HoldOutcome::Dropped;
        }
        // Check the per-id bounds before creating an entry: a dropped first frame must
        // not leave an empty entry behind (the caller counts ids it was told were held).
        let (frames, bytes) = self
            .entries
            .get(&key)
            .map_or((0, 0), |e| (e.frames.len(), e.bytes));
        if frames >= self.max_frames || bytes + payload.len() > self.max_bytes_per_stream {
            return HoldOutcome::Dropped;
        }
        let entry = self.entries.entry(key).or_insert_with(|| Entry {
            first_seen: now,
            frames: Vec::new(),
            bytes: 0,
        });
        entry.bytes += payload.len();
        self.bytes += payload.len();
        entry.frames.push(HeldFrame { header, payload });
        HoldOutcome::Held
    }

    /// Takes the frames held for a stream whose `Open` just arrived.
    pub(crate) fn take(&mut self, key: &(T, StreamId)) -> Vec<HeldFrame> {
        match self.entries.remove(key) {
            Some(e) => {
                self.bytes -= e.bytes;
                e.frames
            }
            None => Vec::new(),
        }
    }

    /// Whether frames are held for this stream.
    pub(crate) fn contains(&self, key: &(T, StreamId)) -> bool {
        self.entries.contains_key(key)
    }

    /// Drops entries older than the time-to-live; returns how many frames went and
    /// the sender tag of each entry that went.
    pub(crate) fn expire(&mut self, now: Instant) -> (usize, Vec<T>) {
        let ttl = self.ttl;
        let mut dropped = 0;
        let mut freed = 0;
        let mut tags = Vec::new();
        self.entries.retain(|(tag, _), e| {
            let keep = e.first_seen + ttl > now;
            if !keep {
                dropped += e.frames.len();
                freed += e.bytes;
                tags.push(*tag);
            }
            keep
        });
        self.bytes -= freed;
        (dropped, tags)
    }

    /// Evicts a whole peer: every entry of the sender tag, among those `evictable`
    /// accepts, that holds the oldest entry. Returns the tag, how many ids and how
    /// many frames went.
    pub(crate) fn evict_oldest_peer(
        &mut self,
        evictable: impl Fn(&T) -> bool,
    ) -> Option<(T, usize, usize)> {
        let tag = self
            .entries
            .iter()
            .filter(|((tag, _), _)| evictable(tag))
            .min_by_key(|(_, e)| e.first_seen)
            .map(|((tag, _), _)| *tag)?;
        let (mut ids, mut frames, mut freed) = (0, 0, 0);
        self.entries.retain(|(t, _), e| {
            if *t != tag {
                return true;
            }
            ids += 1;
            frames += e.frames.len();
            freed += e.bytes;
            false
        });
        self.bytes -= freed;
        Some((tag, ids, frames))
    }

    /// When the oldest entry expires.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.first_seen + self.ttl).min()
    }

    /// Number of stream ids with held frames.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lp_frame::MessageType;

    fn hdr(id: u64, seq: u32) -> StreamHeader {
        StreamHeader::new(StreamId::new(id), MessageType::Data, seq)
    }

    #[test]
    fn bounds_on_streams_frames_and_age() {
        let t0 = Instant::now();
        let mut o = Orphans::<u8>::new(2, 3, 1 << 20, 1 << 20, Duration::from_secs(10));
        let p = Bytes::from_static(b"abc");
        for seq in 0..3 {
            assert_eq!(
                o.hold((1, StreamId::new(1)), hdr(1, seq), p.clone(), t0, 1 << 20),
                HoldOutcome::Held
            );
        }
        // Fourth frame for the same id: over the per-id bound.
        assert_eq!(
            o.hold((1, StreamId::new(1)), hdr(1, 3), p.clone(), t0, 1 << 20),
            HoldOutcome::Dropped
        );
        assert_eq!(
            o.hold((1, StreamId::new(2)), hdr(2, 0), p.clone(), t0, 1 << 20),
            HoldOutcome::Held
        );
        // Third id: over the stream bound.
        assert_eq!(
            o.hold((1, StreamId::new(3)), hdr(3, 0), p.clone(), t0, 1 << 20),
            HoldOutcome::Dropped
        );
        assert_eq!(o.bytes(), 12);
        // Budget refuses.
        assert_eq!(
            o.hold((1, StreamId::new(2)), hdr(2, 1), p.clone(), t0, 2),
            HoldOutcome::Dropped
        );
        // Age: after the ttl everything goes and a new id fits.
        assert_eq!(o.expire(t0 + Duration::from_secs(10)).0, 4);
        assert_eq!(o.bytes(), 0);
        assert_eq!(o.len(), 0);
        assert_eq!(
            o.hold((1, StreamId::new(3)), hdr(3, 0), p, t0, 1 << 20),
            HoldOutcome::Held
        );
        assert_eq!(o.take(&(1, StreamId::new(3))).len(), 1);
        assert_eq!(o.bytes(), 0);
    }

    #[test]
    fn bytes_per_stream_are_bounded() {
        let t0 = Instant::now();
        let mut o = Orphans::<u8>::new(4, 100, 10, 14, Duration::from_secs(10));
        let p = Bytes::from_static(b"abcd");
        let key = (1, StreamId::new(1));
        assert_eq!(
            o.hold(key, hdr(1, 0), p.clone(), t0, 1 << 20),
            HoldOutcome::Held
        );
        assert_eq!(
            o.hold(key, hdr(1, 1), p.clone(), t0, 1 << 20),
            HoldOutcome::Held
        );
        // 12 bytes would exceed the 10-byte bound.
        assert_eq!(
            o.hold(key, hdr(1, 2), p.clone(), t0, 1 << 20),
            HoldOutcome::Dropped
        );
        assert_eq!(o.bytes(), 8);
        // Another stream has its own bound, within the store's total (14 bytes).
        let other = (1, StreamId::new(2));
        assert_eq!(
            o.hold(other, hdr(2, 0), p.clone(), t0, 1 << 20),
            HoldOutcome::Held
        );
        assert_eq!(
            o.hold(other, hdr(2, 1), p, t0, 1 << 20),
            HoldOutcome::Dropped
        );
        assert_eq!(o.take(&key).len(), 2);
        assert_eq!(o.bytes(), 4);
        // A first frame over the per-id bound leaves no empty entry behind.
        let big = Bytes::from(vec![0u8; 11]);
        let third = (1, StreamId::new(3));
        assert_eq!(
            o.hold(third, hdr(3, 0), big, t0, 1 << 20),
            HoldOutcome::Dropped
        );
        assert!(!o.contains(&third));
        assert_eq!(o.len(), 1);
    }
}
