//! Wrap-aware sequence numbers and the two buffers a reliable stream needs on top of an
//! unordered, lossy message transport:
//!
//! - [`Seq`]: `u32` sequence numbers with RFC 1982 serial-number arithmetic, correct across
//!   the wrap from `u32::MAX` to `0`.
//! - [`ReorderBuffer`]: the receiver's buffer. Accepts frames in any order, releases them in
//!   sequence, never skips a gap, and reports what to acknowledge (a cumulative point and SACK
//!   ranges). Bounded by item count, bytes and sequence distance.
//! - [`SendBuffer`]: the sender's retransmit buffer. Holds frames until acknowledged, applies
//!   cumulative and selective acks (each frame counted once), reports frames to fast-retransmit,
//!   RTT samples (Karn's rule) and frames whose retransmission timer expired.
//!
//! Pure data structures: no I/O, no clocks (instants are passed in), no async.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use reorder::{ReorderBuffer, ReorderConfig, SendBuffer, SendConfig, Seq, InsertOutcome};
//!
//! // Sender: three frames, starting just below the wrap.
//! let t0 = Instant::now();
//! let mut tx = SendBuffer::new(Seq::new(u32::MAX - 1), SendConfig::default());
//! let seqs: Vec<Seq> = ["a", "b", "c"]
//!     .into_iter()
//!     .map(|s| tx.push(Bytes::from(s), t0))
//!     .collect();
//! assert_eq!(seqs, [Seq::new(u32::MAX - 1), Seq::new(u32::MAX), Seq::new(0)]);
//!
//! // Receiver: the network delivers them out of order, the first one last.
//! let mut rx = ReorderBuffer::new(Seq::new(u32::MAX - 1), ReorderConfig::default());
//! assert_eq!(rx.insert(seqs[2], Bytes::from("c")), InsertOutcome::Buffered);
//! assert_eq!(rx.insert(seqs[1], Bytes::from("b")), InsertOutcome::Buffered);
//! assert!(rx.pop().is_none()); // a gap is never skipped
//!
//! // The receiver acknowledges what it holds; the sender releases those frames.
//! let ack = tx.on_ack(rx.cumulative_ack(), &rx.sack_ranges(4), t0 + Duration::from_millis(80));
//! assert_eq!(ack.newly_acked_frames, 2);
//! assert_eq!(ack.rtt_sample, Some(Duration::from_millis(80)));
//! assert_eq!(tx.oldest_unacked().map(|(s, _)| s), Some(seqs[0]));
//!
//! // The missing frame arrives; everything comes out in order.
//! assert_eq!(rx.insert(seqs[0], Bytes::from("a")), InsertOutcome::InOrder);
//! let data: Vec<Bytes> = rx.drain_ready().map(|(_, b)| b).collect();
//! assert_eq!(data, ["a", "b", "c"]);
//! assert_eq!(rx.next_expected(), Seq::new(1));
//! ```

mod byte_len;
mod reorder_buffer;
mod send_buffer;
mod seq;

pub use byte_len::ByteLen;
pub use reorder_buffer::{DrainReady, InsertOutcome, ReorderBuffer, ReorderConfig};
pub use send_buffer::{AckOutcome, SendBuffer, SendConfig};
pub use seq::{Seq, SeqRange};
