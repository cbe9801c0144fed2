//! The single error type returned by every parser in this crate.

use crate::kind::{FrameKind, MessageType};

/// Why a byte buffer could not be decoded as an LP frame, a stream frame or an extension payload.
///
/// Every variant carries what was seen, and its message says what was expected, so a log line
/// is enough to tell a truncated message from a peer speaking another protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The buffer ends before the fixed-size part being decoded.
    #[error(
        "frame is {len} bytes, need at least {needed}: the message is truncated or is not an LP frame"
    )]
    TooShort {
        /// Bytes available.
        len: usize,
        /// Bytes required (the 16-byte header, for frame parsers).
        needed: usize,
    },
    /// The little-endian frame kind in bytes 0..2 is not one this codec knows.
    #[error(
        "unknown LP frame kind {0}, expected 0..=3 (Opaque, Registration, Forward, SphinxStream)"
    )]
    UnknownFrameKind(u16),
    /// A stream-level parser was given a well-formed LP frame of another kind.
    #[error(
        "LP frame kind {0:?} is not SphinxStream: pass it on as a plain message instead of to a stream"
    )]
    NotAStreamFrame(FrameKind),
    /// The message type byte (offset 10) of a SphinxStream frame is not one this codec knows.
    #[error(
        "unknown stream message type {0}, expected 0..=7 (Open, Data, OpenAck, Ping, Pong, Close, Reset, Ack)"
    )]
    UnknownMessageType(u8),
    /// The payload of an extension frame does not have the layout its message type requires.
    #[error("malformed {msg_type:?} payload of {len} bytes: {reason}")]
    BadPayload {
        /// The message type whose payload was being decoded.
        msg_type: MessageType,
        /// Length of the payload given to the parser.
        len: usize,
        /// What was expected instead.
        reason: &'static str,
    },
}
