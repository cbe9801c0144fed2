//! The nym-stream extension frames: capability and flag bits, `Ack`, `Close` and `Reset` payloads.
//!
//! A reference peer drops message types 5..=7 and ignores the reserved byte, so everything here is
//! used only after both sides set [`CAP_EXTENDED`] on their `Open`/`OpenAck`.
//! See `docs/PROTOCOL.md` for the byte layouts and their meaning.

use bytes::BufMut;
use zerocopy::byteorder::{BigEndian, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::FrameError;
use crate::kind::MessageType;

/// Reserved-byte bit on `Open`/`OpenAck`: "I speak the nym-stream extensions v1".
pub const CAP_EXTENDED: u8 = 0x01;
/// Reserved-byte bit on `Data`/`Close`: the payload starts with an encoded [`Ack`]; the frame's
/// own payload follows it.
pub const FLAG_ACK: u8 = 0x02;
/// Most selective-ack blocks one [`Ack`] carries.
pub const MAX_SACK_BLOCKS: usize = 16;

/// Half-open range `[start, end)` of raw `u32` sequence numbers received beyond the cumulative
/// point. The codec does not interpret the values (wrap-aware meaning belongs to the reorder layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SackBlock {
    /// First sequence number in the range.
    pub start: u32,
    /// One past the last sequence number in the range.
    pub end: u32,
}

/// Fixed 15-byte front of an ack payload.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct WireAckFixed {
    cumulative: U32<BigEndian>,
    max_data: U64<BigEndian>,
    surbs_wanted: U16<BigEndian>,
    sack_count: u8,
}

/// One 8-byte SACK block on the wire.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct WireSackBlock {
    start: U32<BigEndian>,
    end: U32<BigEndian>,
}

const ACK_FIXED_LEN: usize = core::mem::size_of::<WireAckFixed>();
const SACK_BLOCK_LEN: usize = core::mem::size_of::<WireSackBlock>();
const _: () = assert!(ACK_FIXED_LEN == 15 && SACK_BLOCK_LEN == 8);

/// Acknowledgement and credit: the payload of an `Ack` frame, or the front of a `Data`/`Close`
/// payload when [`FLAG_ACK`] is set.
///
/// Wire layout (big-endian): cumulative `u32`, max_data `u64`, surbs_wanted `u16`, block count
/// `u8` (0..=16), then each block as start `u32`, end `u32`. Holds its blocks inline (no heap).
#[derive(Clone, Copy)]
pub struct Ack {
    /// Next expected sequence number: every earlier one has been received.
    pub cumulative: u32,
    /// Absolute receive limit in stream bytes: the peer may send bytes at offsets below this.
    pub max_data: u64,
    /// How many more reply SURBs the replier asks the opener for.
    pub surbs_wanted: u16,
    sack: [SackBlock; MAX_SACK_BLOCKS],
    sack_len: u8,
}

impl PartialEq for Ack {
    fn eq(&self, other: &Self) -> bool {
        self.cumulative == other.cumulative
            && self.max_data == other.max_data
            && self.surbs_wanted == other.surbs_wanted
            && self.sack() == other.sack()
    }
}

impl Eq for Ack {}

impl core::fmt::Debug for Ack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Only the blocks in use, not the unused inline slots.
        f.debug_struct("Ack")
            .field("cumulative", &self.cumulative)
            .field("max_data", &self.max_data)
            .field("surbs_wanted", &self.surbs_wanted)
            .field("sack", &self.sack())
            .finish()
    }
}

impl Ack {
    /// An ack with no SACK blocks.
    pub fn new(cumulative: u32, max_data: u64, surbs_wanted: u16) -> Self {
        Self {
            cumulative,
            max_data,
            surbs_wanted,
            sack: [SackBlock::default(); MAX_SACK_BLOCKS],
            sack_len: 0,
        }
    }

    /// Appends a SACK block; returns `false` (and changes nothing) when 16 are already held.
    pub fn push_sack(&mut self, block: SackBlock) -> bool {
        let len = usize::from(self.sack_len);
        match self.sack.get_mut(len) {
            Some(slot) => {
                *slot = block;
                self.sack_len += 1;
                true
            }
            None => false,
        }
    }

    /// The SACK blocks, in the order pushed or received.
    pub fn sack(&self) -> &[SackBlock] {
        &self.sack[..usize::from(self.sack_len)]
    }

    /// Bytes [`Self::encode`] writes: 15 plus 8 per SACK block.
    pub fn encoded_len(&self) -> usize {
        ACK_FIXED_LEN + SACK_BLOCK_LEN * self.sack().len()
    }

    /// Writes the ack into `dst`.
    ///
    /// # Panics
    /// As [`BufMut::put_slice`]: if `dst` cannot grow to hold [`Self::encoded_len`] more bytes.
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        let fixed = WireAckFixed {
            cumulative: U32::new(self.cumulative),
            max_data: U64::new(self.max_data),
            surbs_wanted: U16::new(self.surbs_wanted),
            sack_count: self.sack_len,
        };
        dst.put_slice(fixed.as_bytes());
        for block in self.sack() {
            let wire = WireSackBlock {
                start: U32::new(block.start),
                end: U32::new(block.end),
            };
            dst.put_slice(wire.as_bytes());
        }
    }

    /// Decodes an ack at the front of `buf`, returning it and the number of bytes it used.
    /// Bytes after the ack are left to the caller (for a piggybacked ack they are the frame's
    /// own payload).
    ///
    /// Fails with [`FrameError::BadPayload`] if `buf` is shorter than 15 bytes, announces more
    /// than 16 blocks, or ends before the announced blocks.
    pub fn parse(buf: &[u8]) -> Result<(Ack, usize), FrameError> {
        let bad = |reason| FrameError::BadPayload {
            msg_type: MessageType::Ack,
            len: buf.len(),
            reason,
        };
        let (fixed, rest) = WireAckFixed::ref_from_prefix(buf)
            .map_err(|_| bad("need at least the 15-byte fixed part of an ack"))?;
        let count = usize::from(fixed.sack_count);
        if count > MAX_SACK_BLOCKS {
            return Err(bad("ack announces more than 16 SACK blocks"));
        }
        let (blocks, _) = <[WireSackBlock]>::ref_from_prefix_with_elems(rest, count)
            .map_err(|_| bad("ack ends before the 8 bytes of every announced SACK block"))?;
        let mut ack = Ack::new(
            fixed.cumulative.get(),
            fixed.max_data.get(),
            fixed.surbs_wanted.get(),
        );
        for block in blocks {
            ack.push_sack(SackBlock {
                start: block.start.get(),
                end: block.end.get(),
            });
        }
        Ok((ack, ACK_FIXED_LEN + SACK_BLOCK_LEN * count))
    }
}

/// Payload of a `Close` frame: the ordered end of the sender's byte stream.
///
/// Empty on the wire means a clean FIN (the peer reads EOF after all data); 4 bytes (`u32`
/// big-endian) mean an ordered abort: after all data the peer's read fails with this code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Close {
    /// `None` for a clean FIN, `Some(code)` for an ordered abort (codes as in [`reset_code`]).
    pub error_code: Option<u32>,
}

impl Close {
    /// Bytes [`Self::encode`] writes: 0 or 4.
    pub fn encoded_len(&self) -> usize {
        match self.error_code {
            Some(_) => 4,
            None => 0,
        }
    }

    /// Writes the payload into `dst` (nothing for a clean FIN).
    ///
    /// # Panics
    /// As [`BufMut::put_u32`]: if `dst` cannot grow to hold [`Self::encoded_len`] more bytes.
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        if let Some(code) = self.error_code {
            dst.put_u32(code);
        }
    }

    /// Decodes a `Close` payload (after any piggybacked ack); it must be 0 or 4 bytes long.
    pub fn parse(buf: &[u8]) -> Result<Close, FrameError> {
        match <[u8; 4]>::try_from(buf) {
            Ok(code) => Ok(Close {
                error_code: Some(u32::from_be_bytes(code)),
            }),
            Err(_) if buf.is_empty() => Ok(Close { error_code: None }),
            Err(_) => Err(FrameError::BadPayload {
                msg_type: MessageType::Close,
                len: buf.len(),
                reason: "a Close payload is empty (FIN) or a 4-byte error code",
            }),
        }
    }
}

/// Payload of a `Reset` frame: an immediate, unordered abort of both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reset {
    /// Why the stream was reset (see [`reset_code`]).
    pub code: u32,
}

impl Reset {
    /// Bytes [`Self::encode`] writes: always 4.
    pub fn encoded_len(&self) -> usize {
        4
    }

    /// Writes the reason code into `dst`.
    ///
    /// # Panics
    /// As [`BufMut::put_u32`]: if `dst` cannot grow to hold 4 more bytes.
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        dst.put_u32(self.code);
    }

    /// The whole `Reset` frame for `stream`: its header and this payload.
    pub fn frame(&self, stream: crate::StreamId) -> bytes::Bytes {
        let mut buf = bytes::BytesMut::with_capacity(crate::HEADER_LEN + self.encoded_len());
        buf.put_slice(&crate::StreamHeader::new(stream, MessageType::Reset, 0).to_bytes());
        self.encode(&mut buf);
        buf.freeze()
    }

    /// Decodes a `Reset` payload; it must be exactly 4 bytes long.
    pub fn parse(buf: &[u8]) -> Result<Reset, FrameError> {
        <[u8; 4]>::try_from(buf)
            .map(|code| Reset {
                code: u32::from_be_bytes(code),
            })
            .map_err(|_| FrameError::BadPayload {
                msg_type: MessageType::Reset,
                len: buf.len(),
                reason: "a Reset payload is exactly a 4-byte reason code",
            })
    }
}

/// Reason codes carried by [`Reset`] and by an ordered-abort [`Close`].
pub mod reset_code {
    /// No error: the stream is simply no longer wanted.
    pub const NO_ERROR: u32 = 0;
    /// The local handle was dropped before its write side was shut down.
    pub const CANCELLED: u32 = 1;
    /// The stream was refused: accept backlog full or stream limit reached.
    pub const REFUSED: u32 = 2;
    /// The peer broke the protocol (malformed or impossible frame).
    pub const PROTOCOL_ERROR: u32 = 3;
    /// The peer stopped answering (keepalive or retransmission limit reached).
    pub const TIMED_OUT: u32 = 4;
    /// A frame arrived for a stream id that is not open here.
    pub const UNKNOWN_STREAM: u32 = 5;
    /// The sender reaped the stream after its idle timeout; the receiver ends the
    /// stream the same way (reads return `Ok(0)` after what arrived).
    pub const IDLE_TIMEOUT: u32 = 6;
    /// First code available to applications; lower codes are reserved for the protocol.
    pub const APPLICATION_MIN: u32 = 0x100;
}
