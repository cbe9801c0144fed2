//! Errors of the multiplexer.

use std::io;

/// The detail inside the `io::Error`s that stream reads and writes return: a message
/// saying what happened and, for resets and aborts, the peer's reason code.
/// Get it back with [`reset_code`] or `err.get_ref()?.downcast_ref::<StreamError>()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StreamError {
    /// The reason code of a reset or an ordered abort, if this error comes from one.
    pub code: Option<u32>,
    message: String,
}

impl StreamError {
    /// Wraps a message and optional code into an `io::Error` of the given kind.
    pub(crate) fn io(kind: io::ErrorKind, code: Option<u32>, message: String) -> io::Error {
        io::Error::new(kind, StreamError { code, message })
    }
}

/// The reset or abort reason code carried by an error a stream returned, if any.
pub fn reset_code(err: &io::Error) -> Option<u32> {
    err.get_ref()?.downcast_ref::<StreamError>()?.code
}

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The client's router task is gone (the client was disconnected or its network
    /// closed); connect a new client.
    #[error(
        "the multiplexer is closed (client disconnected or its network failed); connect again"
    )]
    Closed,
    /// Too many of our opens are still unacknowledged; wait (the async `open` does)
    /// or raise `max_pending_opens`.
    #[error("{limit} opened streams are still waiting for the peer's OpenAck; wait for one to be established or raise max_pending_opens")]
    TooManyPendingOpens {
        /// The configured limit.
        limit: usize,
    },
    /// A per-peer limit or the client-wide inbound budget leaves no room for another
    /// stream's initial receive credit (64 KiB we promise the peer at once): close or
    /// read streams first, or raise `inbound_budget`, `peer_receive_window` or
    /// `max_streams_per_peer`.
    #[error("cannot open another stream: {reason}; close or read streams first, or raise the limit in MuxConfig")]
    Limit {
        /// Which limit.
        reason: LimitReason,
    },
    /// Every stream id we drew was in use; retry (practically unreachable with 64-bit ids).
    #[error("could not find a free stream id after {attempts} attempts; retry")]
    NoFreeId {
        /// How many ids were tried.
        attempts: u32,
    },
}

/// Which per-peer or client-wide limit refused a stream (see `MuxConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    /// The peer has `max_streams_per_peer` live streams.
    Streams,
    /// The peer has `max_backlog_per_peer` streams waiting to be accepted.
    Backlog,
    /// The peer's connection receive window (`peer_receive_window`) is fully promised.
    PeerWindow,
    /// The client-wide inbound budget (`inbound_budget`) is fully promised.
    Budget,
    /// `max_peers` other peers hold state.
    Peers,
}

impl std::fmt::Display for LimitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Streams => "the peer has its maximum of live streams",
            Self::Backlog => "the peer has its maximum of streams waiting to be accepted",
            Self::PeerWindow => "the peer's connection receive window is fully promised",
            Self::Budget => "the client-wide inbound budget is fully promised",
            Self::Peers => "too many peers hold state",
        })
    }
}
