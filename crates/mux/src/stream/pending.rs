//! The send direction's coalescing buffer: bytes the application wrote that are not yet
//! in a frame.
//!
//! The bytes are copied once, on write, into chunks that never grow: a chunk is allocated
//! with room for the write (at least a frame, at most [`MAX_CHUNK`]) and filled up before
//! the next is allocated; an emptied chunk is released at once. A frame's payload is then split off the front chunk without
//! copying, and kept as it is for retransmission. Only a frame that straddles two chunks
//! is copied again, at most one frame per chunk. (A single growing buffer reallocated and
//! copied all its waiting bytes each time it doubled: with 100 busy streams that was
//! about one extra copy of everything written.)

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// The largest chunk a write allocates.
pub(crate) const MAX_CHUNK: usize = 64 * 1024;

/// Emptied chunks kept for reuse (the send buffer's 256 KiB in 64 KiB chunks).
const MAX_SPARES: usize = 4;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct PendingBytes {
    /// Oldest first; every chunk but the last is full (its length is its capacity).
    chunks: VecDeque<BytesMut>,
    /// Bytes waiting, across the chunks (asked several times per operation).
    len: usize,
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

impl PendingBytes {
    /// Bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `data`, filling the last chunk's room first, then new chunks of at least
    /// `min_chunk` bytes (a frame's payload: small writes coalesce in one allocation).
    pub(crate) fn push(&mut self, data: &[u8], min_chunk: usize) {
        let mut rest = data;
        if let Some(back) = self.chunks.back_mut() {
            let n = (back.capacity() - back.len()).min(rest.len());
            back.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        while !rest.is_empty() {
            let cap = rest.len().clamp(min_chunk.clamp(1, MAX_CHUNK), MAX_CHUNK);
            let n = cap.min(rest.len());
            let mut chunk = self
                .reuse(cap)
                .unwrap_or_else(|| BytesMut::with_capacity(cap));
            chunk.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            self.chunks.push_back(chunk);
        }
        self.len += data.len();
    }

    /// Takes the first `n` bytes (at most [`len`](Self::len)) as one buffer, without
    /// copying while they lie in one chunk.
    pub(crate) fn take(&mut self, n: usize) -> Bytes {
        let n = n.min(self.len);
        self.len -= n;
        let Some(front) = self.chunks.front_mut() else {
            return Bytes::new();
        };
        if front.len() >= n {
            let out = front.split_to(n).freeze();
            self.drop_spent_front();
            return out;
        }
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let k = (n - out.len()).min(front.len());
            out.extend_from_slice(&front[..k]);
            front.advance(k);
            self.drop_spent_front();
        }
        out.freeze()
    }

    /// A spare chunk with room for `cap` bytes that no frame shares any more.
    fn reuse(&mut self, cap: usize) -> Option<BytesMut> {
        let spares = self.spares.as_mut()?;
        let i = spares.iter_mut().position(|c| c.try_reclaim(cap))?;
        Some(spares.swap_remove(i))
    }

    /// Moves the front chunk to the spares once it is empty, room or not (a chunk with
    /// room left is reclaimed whole once its frames are gone).
    fn drop_spent_front(&mut self) {
        if self.chunks.front().is_some_and(BytesMut::is_empty) {
            if let Some(spent) = self.chunks.pop_front() {
                let spares = self.spares.get_or_insert_with(Box::default);
                if spares.len() < MAX_SPARES {
                    spares.push(spent);
                }
            }
        }
    }

    /// Drops the spare chunks: the stream has nothing unacknowledged, so none would be
    /// reused soon, and an idle stream should hold no send memory.
    pub(crate) fn release_spares(&mut self) {
        self.spares = None;
    }

    /// Drops every waiting byte and the spares.
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
        self.release_spares();
    }

    /// Chunks held (for tests).
    #[cfg(test)]
    pub(crate) fn chunk_count(&self) -> usize {
        self.chunks.len()
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

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Whatever the write and frame sizes, the bytes come out in order and whole.
    #[test]
    fn bytes_come_out_in_order_across_chunks() {
        for (write, frame) in [(100, 1565), (65_536, 1565), (200_000, 1500), (3, 7)] {
            let data = pattern(300_000);
            let mut p = PendingBytes::default();
            let mut out = Vec::new();
            let mut written = 0;
            while out.len() < data.len() {
                if written < data.len() {
                    let end = (written + write).min(data.len());
                    p.push(&data[written..end], frame);
                    written = end;
                }
                // Alternate full frames and frames shortened by a piggybacked ack.
                let n = if out.len() % 2 == 0 { frame } else { frame - 2 };
                out.extend_from_slice(&p.take(n));
                assert_eq!(p.len(), written - out.len());
            }
            assert!(out == data, "write {write}, frame {frame}");
            assert!(p.is_empty());
            assert!(p.take(10).is_empty());
        }
    }

    /// A frame inside one chunk is a view of it: no copy. Writes into a chunk with room
    /// never reallocate it.
    #[test]
    fn frames_inside_a_chunk_share_its_memory() {
        let mut p = PendingBytes::default();
        p.push(&pattern(65_536), 1565);
        assert_eq!(p.chunk_count(), 1);
        let a = p.take(1565);
        let b = p.take(1565);
        assert_eq!(
            b.as_ptr() as usize - a.as_ptr() as usize,
            1565,
            "consecutive frames are consecutive views of one chunk"
        );
        // Small writes fill one frame-sized chunk.
        let mut q = PendingBytes::default();
        for _ in 0..15 {
            q.push(&[1u8; 100], 1565);
        }
        assert_eq!(q.chunk_count(), 1);
        let start = q.take(100).as_ptr();
        let next = q.take(1400).as_ptr();
        assert_eq!(next as usize - start as usize, 100, "no reallocation");
    }

    /// A frame that straddles two chunks is copied once into its own buffer; the chunks
    /// it emptied are released.
    #[test]
    fn a_frame_across_two_chunks_is_joined() {
        let data = pattern(MAX_CHUNK + 1000);
        let mut p = PendingBytes::default();
        p.push(&data, 1565);
        assert_eq!(p.chunk_count(), 2);
        let first = p.take(MAX_CHUNK - 500);
        assert_eq!(&first[..], &data[..MAX_CHUNK - 500]);
        let joined = p.take(1500);
        assert_eq!(&joined[..], &data[MAX_CHUNK - 500..MAX_CHUNK + 1000]);
        assert!(p.is_empty());
        assert_eq!(
            p.chunk_count(),
            0,
            "emptied chunks are released, room or not"
        );
        p.push(&[9u8; 500], 1565);
        assert_eq!(p.chunk_count(), 1);
        assert_eq!(&p.take(500)[..], &[9u8; 500][..]);
        assert_eq!(p.chunk_count(), 0);
        assert!(p.spare_count() > 0, "emptied chunks wait as spares");
        p.release_spares();
        assert_eq!(p.spare_count(), 0, "an idle stream holds no buffer");
    }

    /// A spare chunk is reused once the frames cut from it are gone, and not before.
    #[test]
    fn a_chunk_is_reused_once_its_frames_are_dropped() {
        let mut p = PendingBytes::default();
        p.push(&pattern(MAX_CHUNK), 1565);
        let frame = p.take(MAX_CHUNK);
        let first = frame.as_ptr();
        assert_eq!(p.spare_count(), 1);
        // The frame is still held (unacknowledged): a new write gets new memory.
        p.push(&pattern(100), 1565);
        assert_ne!(p.take(100).as_ptr(), first);
        // Acknowledged: the next large write reuses the chunk.
        drop(frame);
        p.push(&pattern(MAX_CHUNK), 1565);
        assert_eq!(
            p.take(10).as_ptr(),
            first,
            "the spare's memory, not a new allocation"
        );
    }
}
