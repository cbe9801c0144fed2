//! Zero-copy codec for Nym LP frames and the nym-stream extension frames.
//!
//! Every stream message body is a 16-byte header followed by the payload:
//!
//! ```text
//! offset size field
//! 0      2    frame kind, u16 little-endian: 0 Opaque, 1 Registration, 2 Forward, 3 SphinxStream
//! 2      8    stream id, u64 big-endian          (bytes 2..16: the 14 attribute bytes)
//! 10     1    message type: 0 Open 1 Data 2 OpenAck 3 Ping 4 Pong | 5 Close 6 Reset 7 Ack
//! 11     4    sequence number, u32 big-endian (Ping/Pong: nonce)
//! 15     1    reserved: 0 on the reference wire; nym-stream flag bits
//! 16     N    payload
//! ```
//!
//! * [`RawFrame`] reads the header of any LP frame, so a router can pass non-stream frames on.
//! * [`StreamFrame`] (borrowed) and [`OwnedStreamFrame`] (payload shares the input [`bytes::Bytes`])
//!   decode SphinxStream frames. Parsing reads only the header, so its cost does not depend on the
//!   payload length.
//! * [`ext`] holds the extension payloads: [`ext::Ack`], [`ext::Close`], [`ext::Reset`], and the
//!   capability/flag bits of the reserved byte.
//!
//! The byte-level specification is `docs/PROTOCOL.md` in the repository. Parsers never panic on
//! any input; they return [`FrameError`].
//!
//! # Example
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use lp_frame::{MessageType, OwnedStreamFrame, StreamFrame, StreamHeader, StreamId, HEADER_LEN};
//!
//! // Encode a Data frame with sequence number 7 on stream 0x2a.
//! let header = StreamHeader::new(StreamId::new(0x2a), MessageType::Data, 7);
//! let frame = StreamFrame { header, payload: b"hello" };
//! let mut wire = BytesMut::new();
//! frame.encode(&mut wire);
//! assert_eq!(wire.len(), HEADER_LEN + 5);
//! assert_eq!(&wire[..2], &[3, 0]); // kind SphinxStream, little-endian
//!
//! // Decode it again, borrowing the payload...
//! let parsed = StreamFrame::parse(&wire)?;
//! assert_eq!(parsed, frame);
//!
//! // ...or owning it without a copy.
//! let owned = OwnedStreamFrame::parse(wire.freeze())?;
//! assert_eq!(owned.header.seq, 7);
//! assert_eq!(owned.payload, Bytes::from_static(b"hello"));
//! # Ok::<(), lp_frame::FrameError>(())
//! ```

mod error;
pub mod ext;
mod frame;
mod header;
mod kind;
mod wire;

pub use error::FrameError;
pub use frame::{encode_stream_frame, OwnedStreamFrame, RawFrame, StreamFrame};
pub use header::{StreamHeader, StreamId};
pub use kind::{FrameKind, MessageType};

/// Length of the LP frame header that precedes every payload.
pub const HEADER_LEN: usize = 16;
/// Length of the kind-specific attribute bytes (offsets 2..16) of the header.
pub const ATTRIBUTES_LEN: usize = 14;
