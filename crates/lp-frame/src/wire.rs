//! Byte layouts of the 16-byte header, declared with zerocopy so no offset is written by hand.

use zerocopy::byteorder::{BigEndian, LittleEndian, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::{ATTRIBUTES_LEN, HEADER_LEN};

/// The LP frame header as any frame kind sees it: a kind and 14 opaque attribute bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub(crate) struct WireHeader {
    /// Frame kind, little-endian.
    pub(crate) kind: U16<LittleEndian>,
    /// Kind-specific attributes.
    pub(crate) attributes: [u8; ATTRIBUTES_LEN],
}

/// The 14 attribute bytes of a SphinxStream frame.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub(crate) struct WireStreamAttributes {
    /// Stream id, big-endian.
    pub(crate) stream_id: U64<BigEndian>,
    /// Message type byte.
    pub(crate) msg_type: u8,
    /// Sequence number or Ping/Pong nonce, big-endian.
    pub(crate) seq: U32<BigEndian>,
    /// Reserved byte, used by nym-stream for flags.
    pub(crate) reserved: u8,
}

// The layouts above must match the documented sizes exactly.
const _: () = assert!(core::mem::size_of::<WireHeader>() == HEADER_LEN);
const _: () = assert!(core::mem::size_of::<WireStreamAttributes>() == ATTRIBUTES_LEN);

impl WireHeader {
    /// Views the first 16 bytes of `buf` as a header without copying; `None` if `buf` is shorter.
    pub(crate) fn view_prefix(buf: &[u8]) -> Option<(&WireHeader, &[u8])> {
        WireHeader::ref_from_prefix(buf).ok()
    }

    /// The attribute bytes read as stream fields.
    pub(crate) fn stream_attributes(&self) -> WireStreamAttributes {
        zerocopy::transmute!(self.attributes)
    }
}

impl WireStreamAttributes {
    /// The 14 bytes of these fields.
    pub(crate) fn to_attributes(self) -> [u8; ATTRIBUTES_LEN] {
        zerocopy::transmute!(self)
    }
}
