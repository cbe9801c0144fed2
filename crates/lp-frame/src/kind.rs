//! The two enumerations of the header: LP frame kind and stream message type.

use crate::error::FrameError;

/// Kind of an LP frame: the little-endian `u16` at offset 0 of every message body.
///
/// Only [`FrameKind::SphinxStream`] frames belong to streams; the others are passed on
/// to the plain message API untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum FrameKind {
    /// Opaque application payload.
    Opaque = 0,
    /// Registration handshake traffic.
    Registration = 1,
    /// Traffic forwarded on behalf of another party.
    Forward = 2,
    /// A multiplexed stream frame; its 14 attribute bytes hold a [`crate::StreamHeader`].
    SphinxStream = 3,
}

impl FrameKind {
    /// Decodes a wire value, rejecting values above 3.
    pub fn from_u16(v: u16) -> Result<Self, FrameError> {
        match v {
            0 => Ok(Self::Opaque),
            1 => Ok(Self::Registration),
            2 => Ok(Self::Forward),
            3 => Ok(Self::SphinxStream),
            other => Err(FrameError::UnknownFrameKind(other)),
        }
    }

    /// The wire value of this kind.
    pub fn as_u16(self) -> u16 {
        self as u16
    }
}

/// Stream message type: the byte at offset 10 of a SphinxStream frame.
///
/// Types 0..=4 are those of the reference protocol; 5..=7 are the nym-stream extensions,
/// sent only to a peer that announced [`crate::ext::CAP_EXTENDED`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// Opens a stream; empty payload.
    Open = 0,
    /// Carries stream bytes; its sequence number orders it.
    Data = 1,
    /// Confirms an `Open`; empty payload.
    OpenAck = 2,
    /// Keepalive probe; the sequence field is a nonce.
    Ping = 3,
    /// Keepalive answer echoing the `Ping` nonce.
    Pong = 4,
    /// Extension: ordered end of the sender's byte stream (FIN or ordered abort).
    Close = 5,
    /// Extension: immediate abort with a reason code.
    Reset = 6,
    /// Extension: cumulative and selective acknowledgement plus flow-control credit.
    Ack = 7,
}

impl MessageType {
    /// Every message type, in wire order.
    pub const ALL: [MessageType; 8] = [
        Self::Open,
        Self::Data,
        Self::OpenAck,
        Self::Ping,
        Self::Pong,
        Self::Close,
        Self::Reset,
        Self::Ack,
    ];

    /// Decodes a wire value, rejecting values above 7.
    pub fn from_u8(v: u8) -> Result<Self, FrameError> {
        Self::ALL
            .get(usize::from(v))
            .copied()
            .ok_or(FrameError::UnknownMessageType(v))
    }

    /// The wire value of this type.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether this type is a nym-stream extension (`Close`, `Reset`, `Ack`) that a
    /// reference peer would drop.
    pub fn is_extension(self) -> bool {
        matches!(self, Self::Close | Self::Reset | Self::Ack)
    }
}
