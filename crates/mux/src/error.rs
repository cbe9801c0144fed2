//! Errors of the multiplexer.
//!
//! The sans-IO core reports what went wrong on a stream as a typed [`StreamError`] (which
//! stream, which operation, and a [`Failure`] saying why); no error text is built inside
//! the core. The stream handles turn it into the `io::Error` that `AsyncRead` and
//! `AsyncWrite` return, with the `StreamError` inside: the message is formatted only when
//! someone displays it.

use std::fmt;
use std::io;
use std::time::Duration;

use lp_frame::StreamId;

/// Why a stream (or one direction of it) ended without finishing in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The stream was reset with a reason code (`lp_frame::ext::reset_code`), by the
    /// peer or by us. A refused `Open` is a peer reset with code `REFUSED`.
    Reset {
        /// The reason code.
        code: u32,
        /// Whether the peer reset it (otherwise we did).
        by_peer: bool,
    },
    /// The peer dropped its write side without shutting it down: every byte it wrote
    /// was delivered, but the data may be incomplete.
    Aborted {
        /// The reason code its final `Close` carried.
        code: u32,
    },
    /// A timer gave up on the peer.
    TimedOut(Timeout),
    /// The idle timeout reaped the stream.
    Reaped(Reap),
    /// A reference-format peer (which cannot retransmit) sent what we could not hold.
    Overrun(Overrun),
    /// A write after the write side was shut down.
    WriteAfterShutdown,
    /// The stream is no longer in the multiplexer's table.
    Gone,
}

/// Which timer gave up on the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Timeout {
    /// The peer never answered the `Open`.
    OpenUnanswered,
    /// A frame was not acknowledged after the most transmissions allowed.
    Retransmissions,
    /// The peer answered none of the keepalive pings.
    Keepalive,
}

/// How an idle reap ended the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reap {
    /// Reaped while bytes we wrote were not acknowledged: they may not have arrived.
    Unacknowledged {
        /// Whether the peer reaped the stream (otherwise we did).
        by_peer: bool,
        /// Written bytes not yet acknowledged (a FIN counts one).
        bytes: usize,
    },
    /// Reads: reaped before the peer finished sending (no FIN, or a gap remained).
    Unfinished {
        /// The idle timeout.
        idle: Duration,
    },
    /// Reads: the peer wrote after our reap; those bytes were discarded.
    WrittenAfter,
    /// Writes: the stream was reaped, nothing more can be written.
    Idle {
        /// The idle timeout.
        idle: Duration,
    },
}

/// What a reference-format peer overran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overrun {
    /// It sent more than the receive buffer holds.
    Buffer,
    /// A gap in its sequence numbers outgrew the reorder buffer.
    Gap,
}

/// The operation that saw a failure: the same reset reads differently to a reader
/// and to a writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// Waiting for the open handshake.
    Establish,
    /// Reading.
    Read,
    /// Writing, flushing or shutting down.
    Write,
}

/// A failed stream operation: which stream, which operation, and why. This is what the
/// core's [`Read::Failed`](crate::Read::Failed) and [`Write::Failed`](crate::Write::Failed)
/// carry, and what the `io::Error`s of stream reads and writes hold inside. Get it back
/// with [`StreamError::from_io`]; [`reset_code`] reads the reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamError {
    stream: Option<StreamId>,
    op: Operation,
    failure: Failure,
}

impl StreamError {
    pub(crate) fn new(stream: Option<StreamId>, op: Operation, failure: Failure) -> Self {
        Self {
            stream,
            op,
            failure,
        }
    }

    /// The stream's wire id (`None` when the stream had already left the table).
    pub fn stream(&self) -> Option<StreamId> {
        self.stream
    }

    /// The operation that failed.
    pub fn operation(&self) -> Operation {
        self.op
    }

    /// Why it failed.
    pub fn failure(&self) -> Failure {
        self.failure
    }

    /// The reason code of a reset or an ordered abort, if the failure is one.
    pub fn code(&self) -> Option<u32> {
        match self.failure {
            Failure::Reset { code, .. } | Failure::Aborted { code } => Some(code),
            _ => None,
        }
    }

    /// The `io::ErrorKind` the failure maps to.
    pub fn kind(&self) -> io::ErrorKind {
        use io::ErrorKind as K;
        match self.failure {
            Failure::Reset { by_peer: true, .. } if self.op == Operation::Write => K::BrokenPipe,
            Failure::Reset { by_peer: true, .. } => K::ConnectionReset,
            Failure::Reset { by_peer: false, .. } | Failure::Aborted { .. } => K::ConnectionAborted,
            Failure::TimedOut(_) => K::TimedOut,
            Failure::Reaped(Reap::Idle { .. }) => K::BrokenPipe,
            Failure::Reaped(_) => K::TimedOut,
            Failure::Overrun(_) => K::InvalidData,
            Failure::WriteAfterShutdown => K::BrokenPipe,
            Failure::Gone => K::NotConnected,
        }
    }

    /// The `StreamError` inside an `io::Error` a stream returned, if it holds one.
    pub fn from_io(err: &io::Error) -> Option<&StreamError> {
        err.get_ref()?.downcast_ref::<StreamError>()
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(id) = self.stream {
            write!(f, "stream {id}: ")?;
        }
        let doing = match self.op {
            Operation::Establish => "establishing it",
            Operation::Read => "reading",
            Operation::Write => "writing",
        };
        match self.failure {
            Failure::Reset {
                code,
                by_peer: true,
            } if self.op == Operation::Write => {
                write!(f, "reset by the peer (code {code}); open a new stream")
            }
            Failure::Reset {
                code,
                by_peer: true,
            } => write!(
                f,
                "the peer reset the stream (code {code}) while we were {doing}"
            ),
            Failure::Reset {
                code,
                by_peer: false,
            } => write!(
                f,
                "the stream was reset locally (code {code}); open a new stream"
            ),
            Failure::Aborted { code } => write!(
                f,
                "the peer dropped its end without shutting it down (code {code}); every \
                 byte it wrote was delivered, but the data may be incomplete"
            ),
            Failure::TimedOut(t) => {
                let why = match t {
                    Timeout::OpenUnanswered => "the peer never answered the Open",
                    Timeout::Retransmissions => {
                        "a frame was not acknowledged after the maximum number of retransmissions"
                    }
                    Timeout::Keepalive => "the peer answered none of the keepalive pings",
                };
                write!(f, "{why}; the peer is unreachable or gone")
            }
            Failure::Reaped(Reap::Unacknowledged { by_peer, bytes }) => write!(
                f,
                "{} reaped the stream as idle while {bytes} written bytes were not yet \
                 acknowledged; they may not have arrived; open a new stream and resend",
                if by_peer { "the peer" } else { "we" }
            ),
            Failure::Reaped(Reap::Unfinished { idle }) => write!(
                f,
                "reaped after {idle:?} without data before the peer finished sending; what \
                 was read so far may be incomplete"
            ),
            Failure::Reaped(Reap::WrittenAfter) => f.write_str(
                "reaped as idle while the peer was still writing; the bytes it sent after \
                 the reap were discarded",
            ),
            Failure::Reaped(Reap::Idle { idle }) => {
                write!(f, "reaped after {idle:?} without data; open a new stream")
            }
            Failure::Overrun(Overrun::Buffer) => f.write_str(
                "the peer sent more than the receive buffer holds and cannot retransmit",
            ),
            Failure::Overrun(Overrun::Gap) => f.write_str(
                "a gap in the peer's sequence numbers outgrew the reorder buffer; a reference \
                 peer does not retransmit, so the stream cannot continue",
            ),
            Failure::WriteAfterShutdown => {
                f.write_str("write after shutdown of the write side; the stream only reads now")
            }
            Failure::Gone => f.write_str("the stream is no longer in the multiplexer's table"),
        }
    }
}

impl std::error::Error for StreamError {}

impl From<StreamError> for io::Error {
    fn from(e: StreamError) -> Self {
        io::Error::new(e.kind(), e)
    }
}

/// The reset or abort reason code carried by an error a stream returned, if any.
pub fn reset_code(err: &io::Error) -> Option<u32> {
    StreamError::from_io(err)?.code()
}

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
#[non_exhaustive]
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
