//! Whole frames: header plus payload, borrowed or owned.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use zerocopy::IntoBytes;

use crate::error::FrameError;
use crate::header::StreamHeader;
use crate::kind::FrameKind;
use crate::wire::WireHeader;
use crate::{ATTRIBUTES_LEN, HEADER_LEN};

/// Splits `buf` into its header view and payload, or reports that it is too short.
fn split(buf: &[u8]) -> Result<(&WireHeader, &[u8]), FrameError> {
    WireHeader::view_prefix(buf).ok_or(FrameError::TooShort {
        len: buf.len(),
        needed: HEADER_LEN,
    })
}

/// Header-level view of any LP frame, so a router can pass non-stream frames on as plain messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawFrame<'a> {
    /// The frame kind.
    pub kind: FrameKind,
    /// The 14 kind-specific attribute bytes (offsets 2..16), uninterpreted.
    pub attributes: [u8; ATTRIBUTES_LEN],
    /// Everything after the 16-byte header.
    pub payload: &'a [u8],
}

impl<'a> RawFrame<'a> {
    /// Decodes any LP frame. Fails only if `buf` is shorter than 16 bytes or the kind is unknown.
    pub fn parse(buf: &'a [u8]) -> Result<Self, FrameError> {
        let (wire, payload) = split(buf)?;
        Ok(Self {
            kind: FrameKind::from_u16(wire.kind.get())?,
            attributes: wire.attributes,
            payload,
        })
    }

    /// Writes the header then the payload into `dst`.
    ///
    /// # Panics
    /// As [`BufMut::put_slice`]: if `dst` cannot grow to hold [`Self::encoded_len`] more bytes.
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        let wire = WireHeader {
            kind: self.kind.as_u16().into(),
            attributes: self.attributes,
        };
        dst.put_slice(wire.as_bytes());
        dst.put_slice(self.payload);
    }

    /// Bytes [`Self::encode`] writes: 16 plus the payload length.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }
}

/// Writes a SphinxStream header then `payload` into `dst`.
///
/// # Panics
/// As [`BufMut::put_slice`]: if `dst` cannot grow to hold `16 + payload.len()` more bytes.
pub fn encode_stream_frame<B: BufMut>(header: &StreamHeader, payload: &[u8], dst: &mut B) {
    dst.put_slice(&header.to_bytes());
    dst.put_slice(payload);
}

/// Encodes into a buffer of exactly the frame's size.
fn to_exact_bytes(header: &StreamHeader, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
    encode_stream_frame(header, payload, &mut out);
    out.freeze()
}

/// A stream frame borrowing its payload from the received buffer.
///
/// Parsing checks the header only (length, kind SphinxStream, known message type); extension
/// payloads are decoded separately with the parsers in [`crate::ext`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamFrame<'a> {
    /// The decoded header.
    pub header: StreamHeader,
    /// Everything after the 16-byte header.
    pub payload: &'a [u8],
}

impl<'a> StreamFrame<'a> {
    /// Decodes a SphinxStream frame; its cost does not depend on the payload length.
    ///
    /// Errors, in the order checked: [`FrameError::TooShort`], [`FrameError::UnknownFrameKind`],
    /// [`FrameError::NotAStreamFrame`], [`FrameError::UnknownMessageType`].
    pub fn parse(buf: &'a [u8]) -> Result<Self, FrameError> {
        let (wire, payload) = split(buf)?;
        Ok(Self {
            header: StreamHeader::from_wire(wire)?,
            payload,
        })
    }

    /// Writes the header then the payload into `dst`.
    ///
    /// # Panics
    /// As [`BufMut::put_slice`]: if `dst` cannot grow to hold [`Self::encoded_len`] more bytes.
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        encode_stream_frame(&self.header, self.payload, dst);
    }

    /// Bytes [`Self::encode`] writes: 16 plus the payload length.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// The encoded frame in a buffer allocated at exactly [`Self::encoded_len`].
    pub fn to_bytes(&self) -> Bytes {
        to_exact_bytes(&self.header, self.payload)
    }

    /// An owned copy of this frame (the payload is copied).
    pub fn to_owned_frame(&self) -> OwnedStreamFrame {
        OwnedStreamFrame::new(self.header, Bytes::copy_from_slice(self.payload))
    }
}

/// A stream frame owning its payload; parsing from [`Bytes`] shares the input's storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedStreamFrame {
    /// The decoded header.
    pub header: StreamHeader,
    /// Everything after the 16-byte header.
    pub payload: Bytes,
}

impl OwnedStreamFrame {
    /// Pairs a header with a payload.
    pub fn new(header: StreamHeader, payload: Bytes) -> Self {
        Self { header, payload }
    }

    /// Decodes a SphinxStream frame; the payload is a slice of `buf`, not a copy.
    ///
    /// Errors exactly as [`StreamFrame::parse`].
    pub fn parse(mut buf: Bytes) -> Result<Self, FrameError> {
        let (wire, _) = split(&buf)?;
        let header = StreamHeader::from_wire(wire)?;
        // Moving the start on, rather than slicing a new view and dropping the old one,
        // costs no reference-count traffic on a shared buffer.
        buf.advance(HEADER_LEN);
        Ok(Self {
            header,
            payload: buf,
        })
    }

    /// Writes the header then the payload into `dst`.
    ///
    /// # Panics
    /// As [`BufMut::put_slice`]: if `dst` cannot grow to hold [`Self::encoded_len`] more bytes.
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        encode_stream_frame(&self.header, &self.payload, dst);
    }

    /// Bytes [`Self::encode`] writes: 16 plus the payload length.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// The encoded frame in a buffer allocated at exactly [`Self::encoded_len`].
    pub fn to_bytes(&self) -> Bytes {
        to_exact_bytes(&self.header, &self.payload)
    }

    /// A borrowed view of this frame.
    pub fn as_frame(&self) -> StreamFrame<'_> {
        StreamFrame {
            header: self.header,
            payload: &self.payload,
        }
    }
}
