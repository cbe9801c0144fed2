//! Stream ids and the decoded SphinxStream header.

use core::fmt;

use zerocopy::byteorder::{U32, U64};
use zerocopy::IntoBytes;

use crate::error::FrameError;
use crate::kind::{FrameKind, MessageType};
use crate::wire::{WireHeader, WireStreamAttributes};
use crate::HEADER_LEN;

/// Identifier of one stream within a client; chosen at random by the opener.
///
/// `Display` and `Debug` both print `StreamId(0x0123456789abcdef)` (16 lowercase hex digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StreamId(pub u64);

impl StreamId {
    /// Wraps a raw id.
    pub const fn new(v: u64) -> Self {
        Self(v)
    }

    /// The raw id.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for StreamId {
    fn from(v: u64) -> Self {
        Self(v)
    }
}

impl From<StreamId> for u64 {
    fn from(id: StreamId) -> Self {
        id.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({:#018x})", self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The decoded 16-byte header of a SphinxStream frame (the kind is implied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamHeader {
    /// Stream the frame belongs to.
    pub stream_id: StreamId,
    /// What the frame means.
    pub msg_type: MessageType,
    /// Sequence number for `Data`/`Close`, nonce for `Ping`/`Pong`, 0 for other control frames.
    pub seq: u32,
    /// The reserved byte: 0 on the reference wire, flag bits (see [`crate::ext`]) for nym-stream.
    pub reserved: u8,
}

impl StreamHeader {
    /// A header with the reserved byte set to 0.
    pub fn new(stream_id: StreamId, msg_type: MessageType, seq: u32) -> Self {
        Self {
            stream_id,
            msg_type,
            seq,
            reserved: 0,
        }
    }

    /// The same header with the reserved byte replaced.
    pub fn with_reserved(self, reserved: u8) -> Self {
        Self { reserved, ..self }
    }

    /// The 16 wire bytes of this header, with frame kind SphinxStream.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let attrs = WireStreamAttributes {
            stream_id: U64::new(self.stream_id.get()),
            msg_type: self.msg_type.as_u8(),
            seq: U32::new(self.seq),
            reserved: self.reserved,
        };
        let wire = WireHeader {
            kind: FrameKind::SphinxStream.as_u16().into(),
            attributes: attrs.to_attributes(),
        };
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(wire.as_bytes());
        out
    }

    /// Decodes the header at the front of `buf`; bytes after the first 16 are ignored.
    ///
    /// Fails if `buf` is shorter than 16 bytes, the frame kind is unknown or not
    /// SphinxStream, or the message type is unknown.
    pub fn parse(buf: &[u8]) -> Result<Self, FrameError> {
        let (wire, _) = WireHeader::view_prefix(buf).ok_or(FrameError::TooShort {
            len: buf.len(),
            needed: HEADER_LEN,
        })?;
        Self::from_wire(wire)
    }

    /// Decodes an already-sized wire header.
    pub(crate) fn from_wire(wire: &WireHeader) -> Result<Self, FrameError> {
        let kind = FrameKind::from_u16(wire.kind.get())?;
        if kind != FrameKind::SphinxStream {
            return Err(FrameError::NotAStreamFrame(kind));
        }
        Self::from_attributes(wire.stream_attributes())
    }

    /// Decodes the 14 attribute bytes of a SphinxStream frame.
    pub(crate) fn from_attributes(attrs: WireStreamAttributes) -> Result<Self, FrameError> {
        Ok(Self {
            stream_id: StreamId(attrs.stream_id.get()),
            msg_type: MessageType::from_u8(attrs.msg_type)?,
            seq: attrs.seq.get(),
            reserved: attrs.reserved,
        })
    }
}
