//! The send direction's coalescing buffer: bytes the application wrote that are not yet
//! in a frame, laid out so that a frame is encoded where the bytes already are.
//!
//! A write copies its bytes once, into *slots*: each slot is [`HEADROOM`] bytes of room
//! for the frame's header (and a small piggybacked ack) followed by up to a frame's worth
//! of payload. Slots are cut from chunks that never grow (at most [`MAX_CHUNK`]), one after
//! the other, so a chunk holds a run of frames ready to go. Taking a whole slot hands out
//! its memory without a copy; the caller writes the header into the room in front of the
//! payload and sends that very buffer, and keeps the payload as it is for
//! retransmission. So a byte is copied once on its way from the application to the
//! transport.
//!
//! A frame shorter than its slot (cut to leave room for a piggybacked ack) is still sent
//! in place: the few bytes cut off its end are copied into the room of the next slot,
//! in front of its payload, and go with the next frame. Only what does not fit that way
//! (a cut longer than the room, an ack too large for it) is copied into a buffer of its
//! own. A single growing buffer, the first design, reallocated and copied all its
//! waiting bytes each time it doubled.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, BytesMut};

/// The largest chunk a write allocates.
pub(crate) const MAX_CHUNK: usize = 64 * 1024;

/// Room kept in front of every slot's payload: the frame header and an ack with up to
/// two SACK blocks (15 + 2 × 8 bytes). A frame whose ack needs more is encoded into a
/// buffer of its own.
pub(crate) const HEADROOM: usize = lp_frame::HEADER_LEN + 15 + 2 * 8;

/// Emptied chunks kept for reuse (the send buffer's 256 KiB in 64 KiB chunks).
const MAX_SPARES: usize = 4;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct PendingBytes {
    /// Oldest first. Every slot starts with [`HEADROOM`] bytes of room, except the front
    /// one, which has `front_room`. The last slot owns the rest of its chunk's capacity:
    /// it is the one writes fill, and while it is empty the next write starts a fresh
    /// slot.
    slots: VecDeque<BytesMut>,
    /// Payload bytes waiting, across the slots (asked several times per operation). A
    /// `u32` (with `front_room`, 8 bytes of the stream rather than 16): writes are cut
    /// to [`Self::room`] before they are pushed.
    len: u32,
    /// Room in front of the front slot's payload: [`HEADROOM`], less the bytes carried
    /// into it from the end of a shorter frame before it; 0 for the rest of a slot a
    /// frame was copied out of.
    front_room: u8,
    /// Emptied chunks whose memory the frames cut from them still share: once those are
    /// acknowledged and dropped, a chunk is ours alone and is reused for the next write.
    /// Without them every 64 KiB written was a fresh allocation, which glibc handed back
    /// to the OS and faulted in again: 10,756 page faults and a fifth of the wall time of a
    /// 256 MiB single-stream transfer. Dropped when the stream has nothing unacknowledged
    /// ([`Self::release_spares`]), so an idle stream keeps none. (Boxed: 8 bytes in every
    /// stream rather than 24.)
    #[allow(
        clippy::box_collection,
        reason = "the box keeps every stream 16 bytes smaller; most streams have no spares"
    )]
    spares: Option<Box<Vec<BytesMut>>>,
}

impl Default for PendingBytes {
    fn default() -> Self {
        Self {
            slots: VecDeque::new(),
            len: 0,
            front_room: HEADROOM as u8,
            spares: None,
        }
    }
}

/// Bytes taken for one frame: `buf[room..]` is the payload, and the `room` bytes in front
/// of it are free for the header (at least what [`PendingBytes::take`] was asked for).
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) buf: BytesMut,
    pub(crate) room: usize,
}

impl PendingBytes {
    /// Payload bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// How many more bytes the buffer can count.
    pub(crate) fn room(&self) -> usize {
        (u32::MAX - self.len) as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room in front of the payload of slot `i`.
    fn head_room(&self, i: usize) -> usize {
        if i == 0 {
            usize::from(self.front_room)
        } else {
            HEADROOM
        }
    }

    /// Payload bytes of the front slot: what a frame can take without a copy.
    fn front_len(&self) -> usize {
        self.slots
            .front()
            .map_or(0, |s| s.len().saturating_sub(self.head_room(0)))
    }

    /// Appends `data` into slots of at most `frame` payload bytes each: the last slot's
    /// room first, then fresh slots, in new chunks when the current one cannot hold a
    /// whole slot (small writes coalesce in one slot). `data` is at most
    /// [`room`](Self::room) bytes.
    pub(crate) fn push(&mut self, data: &[u8], frame: usize) {
        debug_assert!(
            data.len() <= self.room(),
            "a write beyond what the count holds"
        );
        let frame = frame.max(1);
        let slot_size = HEADROOM + frame;
        let mut rest = data;
        while !rest.is_empty() {
            let last = self.slots.len().wrapping_sub(1);
            let room = if self.slots.is_empty() {
                0
            } else {
                self.head_room(last)
            };
            let open = self
                .slots
                .back()
                .filter(|s| !s.is_empty() && s.len() - room < frame);
            if open.is_none() {
                // A fresh slot, in the current chunk when a whole slot fits there.
                let fits = self
                    .slots
                    .back()
                    .is_some_and(|s| s.is_empty() && s.capacity() >= slot_size);
                if !fits {
                    if self.slots.back().is_some_and(BytesMut::is_empty) {
                        if let Some(spent) = self.slots.pop_back() {
                            self.retire(spent);
                        }
                    }
                    // A large write (bulk) gets whole chunks, which spares can replace;
                    // a small one just the slots it needs.
                    let want = if data.len() >= MAX_CHUNK / 4 {
                        MAX_CHUNK
                    } else {
                        rest.len().div_ceil(frame) * slot_size
                    };
                    let cap = want.clamp(slot_size, MAX_CHUNK.max(slot_size));
                    let chunk = self
                        .reuse(cap)
                        .unwrap_or_else(|| BytesMut::with_capacity(cap));
                    self.slots.push_back(chunk);
                }
                if let Some(back) = self.slots.back_mut() {
                    back.put_bytes(0, HEADROOM);
                }
            }
            let last = self.slots.len() - 1;
            let room = self.head_room(last);
            let Some(back) = self.slots.back_mut() else {
                return;
            };
            let n = rest
                .len()
                .min(frame - (back.len() - room))
                .min(back.capacity() - back.len());
            back.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            self.len += n as u32;
            if back.len() - room >= frame {
                // Full: the rest of the chunk becomes the next (empty) slot.
                let next = back.split_off(back.len());
                self.slots.push_back(next);
            }
        }
    }

    /// Takes up to `n` payload bytes (at most [`len`](Self::len)) for one frame, with at
    /// least `head` bytes of room in front of them for its header. A whole slot is
    /// handed out where it is; a slot cut shorter too, its cut-off end carried into the
    /// next slot's room. Anything else is copied into a buffer of its own.
    pub(crate) fn take(&mut self, n: usize, head: usize) -> Taken {
        let n = n.min(self.len());
        self.carry_bare_front(head);
        let room = self.head_room(0);
        let front = self.front_len();
        if n > 0 && room >= head {
            if front <= n {
                self.len -= front as u32;
                let buf = if self.slots.len() == 1 {
                    // The slot writes are filling: split it off, so the chunk's rest
                    // stays for the next write.
                    let Some(back) = self.slots.back_mut() else {
                        return Taken {
                            buf: BytesMut::new(),
                            room: 0,
                        };
                    };
                    let len = back.len();
                    back.split_to(len)
                } else {
                    self.slots.pop_front().unwrap_or_default()
                };
                self.front_room = HEADROOM as u8;
                return Taken { buf, room };
            }
            let cut = front - n;
            if cut <= HEADROOM - lp_frame::HEADER_LEN && self.next_has_payload() {
                // Cut shorter: its end goes into the next slot's room, in front of its
                // payload, and the frame is still sent where it is.
                let mut slot = self.slots.pop_front().unwrap_or_default();
                let end = slot.split_off(room + n);
                if let Some(next) = self.slots.front_mut() {
                    next[HEADROOM - cut..HEADROOM].copy_from_slice(&end);
                }
                self.front_room = (HEADROOM - cut) as u8;
                self.len -= n as u32;
                return Taken { buf: slot, room };
            }
        }
        let room = head.max(HEADROOM);
        let mut buf = BytesMut::with_capacity(room + n);
        buf.put_bytes(0, room);
        let mut left = n;
        while left > 0 {
            let front_room = self.head_room(0);
            let Some(front) = self.slots.front_mut() else {
                break;
            };
            let k = left.min(front.len().saturating_sub(front_room));
            buf.extend_from_slice(&front[front_room..front_room + k]);
            front.advance(front_room + k);
            left -= k;
            self.len -= k as u32;
            if !front.is_empty() {
                // Payload left in this slot, with no room in front of it any more.
                self.front_room = 0;
                if self.slots.len() == 1 {
                    // Writes must not extend a slot without room: the chunk's rest
                    // starts afresh.
                    if let Some(back) = self.slots.back_mut() {
                        let rest = back.split_off(back.len());
                        self.slots.push_back(rest);
                    }
                }
                break;
            }
            self.front_room = HEADROOM as u8;
            if self.slots.len() > 1 {
                if let Some(spent) = self.slots.pop_front() {
                    self.retire(spent);
                }
            } else {
                break;
            }
        }
        Taken { buf, room }
    }

    /// Whether a slot with payload follows the front one (its room can take a carry).
    fn next_has_payload(&self) -> bool {
        self.slots.get(1).is_some_and(|s| s.len() > HEADROOM)
    }

    /// A front slot without enough room for a header (the rest of a slot a frame was
    /// copied out of) moves its few bytes into the next slot's room when they fit, so
    /// that slot can go in place.
    fn carry_bare_front(&mut self, head: usize) {
        let front = self.front_len();
        if self.head_room(0) >= head
            || !self.next_has_payload()
            || front == 0
            || front > HEADROOM.saturating_sub(head.max(lp_frame::HEADER_LEN))
        {
            return;
        }
        let room = self.head_room(0);
        let Some(bare) = self.slots.pop_front() else {
            return;
        };
        if let Some(next) = self.slots.front_mut() {
            next[HEADROOM - front..HEADROOM].copy_from_slice(&bare[room..]);
        }
        self.front_room = (HEADROOM - front) as u8;
        self.retire(bare);
    }

    /// A spare chunk with room for `cap` bytes that no frame shares any more.
    fn reuse(&mut self, cap: usize) -> Option<BytesMut> {
        let spares = self.spares.as_mut()?;
        let i = spares.iter_mut().position(|c| c.try_reclaim(cap))?;
        Some(spares.swap_remove(i))
    }

    /// Keeps an emptied slot as a handle on its chunk, to reuse the chunk once no frame
    /// shares it (only empty handles are kept: they hold no bytes of their own).
    fn retire(&mut self, spent: BytesMut) {
        if spent.is_empty() {
            let spares = self.spares.get_or_insert_with(Box::default);
            if spares.len() >= MAX_SPARES {
                // The oldest goes: a small chunk must not hold a place for good.
                spares.remove(0);
            }
            spares.push(spent);
        }
    }

    /// Drops the spare chunks, and the rest of the current chunk when nothing waits: the
    /// stream has nothing unacknowledged, so none would be reused soon, and an idle stream
    /// should hold no send memory.
    pub(crate) fn release_spares(&mut self) {
        self.spares = None;
        if self.len == 0 {
            self.slots.clear();
            self.front_room = HEADROOM as u8;
        }
    }

    /// Drops every waiting byte and the spares.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.release_spares();
    }

    /// Slots held, the empty one writes fill next included (for tests).
    #[cfg(test)]
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Spare chunks held (for tests).
    #[cfg(test)]
    pub(crate) fn spare_count(&self) -> usize {
        self.spares.as_ref().map_or(0, |s| s.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: usize = 1565;
    const SLOT: usize = HEADROOM + FRAME;
    const HEAD: usize = lp_frame::HEADER_LEN;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// The payload of a taken buffer, after checking it left the room asked for.
    fn body(t: &Taken, head: usize) -> &[u8] {
        assert!(t.room >= head, "room {} for a {head}-byte header", t.room);
        &t.buf[t.room..]
    }

    /// Where the frame would start: right in front of the payload.
    fn frame_start(t: &Taken) -> usize {
        t.buf.as_ptr() as usize + t.room - HEAD
    }

    /// Whatever the write and frame sizes and however frames are cut, the bytes come
    /// out in order and whole.
    #[test]
    fn bytes_come_out_in_order_across_slots_and_chunks() {
        for (write, frame) in [(100, FRAME), (65_536, FRAME), (200_000, 1500), (3, 7)] {
            for cut_every in [0, 1, 2, 5] {
                let data = pattern(300_000);
                let mut p = PendingBytes::default();
                let mut out = Vec::new();
                let mut written = 0;
                let mut round = 0;
                while out.len() < data.len() {
                    if written < data.len() {
                        let end = (written + write).min(data.len());
                        p.push(&data[written..end], frame);
                        written = end;
                    }
                    // Full frames, and now and then one cut for a piggybacked ack (of
                    // varying size, so some acks do not fit the room).
                    round += 1;
                    let ack = if cut_every > 0 && round % cut_every == 0 {
                        2 + round % 40
                    } else {
                        0
                    };
                    let t = p.take(frame.saturating_sub(ack).max(1), HEAD + ack);
                    out.extend_from_slice(body(&t, HEAD + ack));
                    assert_eq!(p.len(), written - out.len());
                }
                assert!(out == data, "write {write}, frame {frame}, cut {cut_every}");
                assert!(p.is_empty());
                assert!(body(&p.take(10, HEAD), 0).is_empty());
            }
        }
    }

    /// A whole slot is handed out where the write put it: consecutive frames are
    /// consecutive slots of one chunk, room included, so encoding one copies nothing.
    #[test]
    fn whole_slots_are_taken_in_place() {
        let mut p = PendingBytes::default();
        p.push(&pattern(65_536), FRAME);
        let a = p.take(FRAME, HEAD);
        let b = p.take(FRAME, HEAD);
        assert_eq!((a.buf.len(), b.buf.len()), (SLOT, SLOT));
        assert_eq!(
            frame_start(&b) - frame_start(&a),
            SLOT,
            "consecutive frames are consecutive slots of one chunk"
        );
        // Small writes coalesce in one slot, without reallocating it.
        let mut q = PendingBytes::default();
        q.push(&[1u8; 100], FRAME);
        let slot = q.slots[0].as_ptr();
        for _ in 0..14 {
            q.push(&[1u8; 100], FRAME);
        }
        assert_eq!((q.len(), q.slot_count()), (1500, 1));
        let one = q.take(FRAME, HEAD);
        assert_eq!(one.buf.as_ptr(), slot, "no reallocation");
        assert_eq!(body(&one, HEAD), &[1u8; 1500][..]);
        // After a burst, the next write's slot follows in the same chunk.
        let mut r = PendingBytes::default();
        r.push(&pattern(20_000), FRAME);
        let mut last = r.take(FRAME, HEAD);
        while !r.is_empty() {
            let next = r.take(FRAME, HEAD);
            assert_eq!(frame_start(&next) - frame_start(&last), SLOT);
            last = next;
        }
        assert_eq!(
            body(&last, HEAD).len(),
            20_000 % FRAME,
            "the last slot, not full"
        );
        r.push(&pattern(100), FRAME);
        let after = r.take(FRAME, HEAD);
        assert_eq!(
            frame_start(&after) - frame_start(&last),
            HEADROOM + 20_000 % FRAME,
            "the next slot follows in the chunk"
        );
    }

    /// A frame cut shorter for an ack is still sent in place: its cut-off end moves into
    /// the next slot's room, and the frames after it stay in place too.
    #[test]
    fn a_cut_frame_carries_its_end_into_the_next_slot() {
        let data = pattern(4 * FRAME);
        let mut p = PendingBytes::default();
        p.push(&data, FRAME);
        let first = p.take(FRAME, HEAD);
        let ack = 15;
        let cut = p.take(FRAME - ack, HEAD + ack);
        assert_eq!(frame_start(&cut) - frame_start(&first), SLOT);
        assert_eq!(body(&cut, HEAD + ack).len(), FRAME - ack);
        // The next frame starts `ack` bytes earlier in its slot, with room for a header.
        let third = p.take(FRAME, HEAD);
        assert_eq!(frame_start(&third) - frame_start(&cut), SLOT - ack);
        let fourth = p.take(FRAME, HEAD);
        let fifth = p.take(FRAME, HEAD);
        assert_eq!(body(&fifth, HEAD).len(), ack, "the carry ends the burst");
        let mut out = Vec::new();
        for t in [&first, &cut, &third, &fourth, &fifth] {
            out.extend_from_slice(body(t, HEAD));
        }
        assert_eq!(out, data);
    }

    /// A frame asked with more header than the room gives is copied, as is a cut too long
    /// to carry; the bytes stay in order and later frames go in place again.
    #[test]
    fn what_does_not_fit_the_room_is_copied() {
        let data = pattern(3 * FRAME);
        let mut p = PendingBytes::default();
        p.push(&data, FRAME);
        let big_ack = HEADROOM;
        let copied = p.take(FRAME - big_ack, HEAD + big_ack);
        assert!(copied.room >= HEAD + big_ack);
        let long_cut = p.take(500, HEAD);
        let rest = p.take(FRAME, HEAD);
        let last = p.take(FRAME, HEAD);
        let mut out = Vec::new();
        for (t, h) in [
            (&copied, HEAD + big_ack),
            (&long_cut, HEAD),
            (&rest, HEAD),
            (&last, HEAD),
        ] {
            out.extend_from_slice(body(t, h));
        }
        let more = p.take(FRAME, HEAD);
        out.extend_from_slice(body(&more, HEAD));
        assert_eq!(out, data);
        assert!(p.is_empty());
        p.push(&pattern(2 * FRAME), FRAME);
        let a = p.take(FRAME, HEAD);
        let b = p.take(FRAME, HEAD);
        assert_eq!(frame_start(&b) - frame_start(&a), SLOT, "in place again");
    }

    /// A spare chunk is reused once the frames cut from it are gone, and not before;
    /// spares are released on request.
    #[test]
    fn a_chunk_is_reused_once_its_frames_are_dropped() {
        let mut p = PendingBytes::default();
        p.push(&pattern(MAX_CHUNK), FRAME);
        let mut frames = Vec::new();
        while !p.is_empty() {
            frames.push(p.take(FRAME, HEAD).buf.freeze());
        }
        let first = frames[0].as_ptr();
        // The frames are still held (unacknowledged): a new large write gets new memory.
        p.push(&pattern(MAX_CHUNK), FRAME);
        let other = p.take(FRAME, HEAD);
        assert_ne!(other.buf.as_ptr(), first);
        // Acknowledged: a later chunk reuses the first one's memory.
        drop(frames);
        let mut seen = false;
        for _ in 0..4 {
            p.push(&pattern(MAX_CHUNK), FRAME);
            while !p.is_empty() {
                seen |= p.take(FRAME, HEAD).buf.as_ptr() == first;
            }
        }
        assert!(seen, "the spare's memory, not a new allocation");
        assert!(p.spare_count() > 0);
        p.release_spares();
        assert_eq!(p.spare_count(), 0, "an idle stream holds no buffer");
        assert_eq!(p.slot_count(), 0, "nor the rest of a chunk");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Any mix of writes and takes (full, cut for acks of any size, or tiny): every
        /// byte comes out once, in order; each take leaves at least the room asked for,
        /// never more payload than asked, and something whenever bytes wait; the count
        /// stays exact.
        #[test]
        fn takes_return_the_written_bytes_in_order(
            frame in proptest::sample::select(vec![7usize, 64, 1565]),
            ops in proptest::collection::vec((0usize..3, 1usize..70_000, 0usize..60), 1..60),
        ) {
            let mut p = PendingBytes::default();
            let (mut written, mut out) = (Vec::new(), Vec::new());
            let mut next = 0u8;
            for (kind, size, ack) in ops {
                if kind == 0 {
                    let data: Vec<u8> = (0..size).map(|_| { next = next.wrapping_add(1); next }).collect();
                    p.push(&data, frame);
                    written.extend_from_slice(&data);
                } else {
                    let n = if kind == 1 { frame } else { frame.saturating_sub(ack).max(1) };
                    let head = HEAD + if kind == 1 { 0 } else { ack };
                    let waiting = p.len();
                    let t = p.take(n, head);
                    proptest::prop_assert!(t.room >= head, "room {} < {}", t.room, head);
                    let got = &t.buf[t.room..];
                    proptest::prop_assert!(got.len() <= n);
                    proptest::prop_assert_eq!(got.is_empty(), waiting == 0);
                    out.extend_from_slice(got);
                }
                proptest::prop_assert_eq!(p.len(), written.len() - out.len());
            }
            while !p.is_empty() {
                let t = p.take(frame, HEAD);
                out.extend_from_slice(&t.buf[t.room..]);
            }
            proptest::prop_assert!(out == written);
        }
    }
}
