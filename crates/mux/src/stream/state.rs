//! The explicit states of a stream: its opening handshake, each direction, how the
//! stream as a whole was torn down, when its acknowledgement is due and whether its
//! payload waits for reply SURBs. Every lifecycle question (`is it reset?`, `may it
//! still write?`) is a match on one of these, never a combination of flags.

use std::time::Instant;

use crate::error::Failure;

/// The opening handshake, seen from the opener (a stream a peer opened starts
/// [`Established`](Handshake::Established)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// No answer to our `Open` yet: sent `tries` times, last at `sent_at` (`None`
    /// before the first transmission).
    Opening {
        sent_at: Option<Instant>,
        tries: u32,
    },
    /// The peer answered (an `OpenAck`, an ack or data), or opened the stream itself.
    Established,
}

/// The send direction.
///
/// ```text
///  Open ──shutdown/drop──▶ Closing ──FIN sent──▶ FinSent ──all acked──▶ Finished
///    │                        │                     │
///    └─────── reset, timeout, reap ─────────────────┴──────▶ Stopped(failure)
/// ```
/// To a reference peer (no FIN, no acks) `Closing` goes straight to `Finished` once
/// the buffered bytes left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendState {
    /// Takes writes.
    Open,
    /// The write side was shut down (`abort: Some(code)`: dropped without shutdown, an
    /// abortive close ordered after the data); the FIN follows the buffered bytes.
    Closing { abort: Option<u32> },
    /// The FIN went out; waiting for it and everything before it to be acknowledged.
    FinSent,
    /// Every written byte and the FIN were acknowledged (to a reference peer: sent).
    /// A later reset or failure loses nothing we wrote, so this state is final.
    Finished,
    /// Given up before finishing: nothing more is sent or resent, and writes, flushes
    /// and shutdowns report the failure.
    Stopped(Failure),
}

impl SendState {
    /// Whether the application shut the write side down (the FIN is owed or sent).
    pub(crate) fn shut_down(self) -> bool {
        matches!(self, SendState::Closing { .. } | SendState::FinSent)
    }

    /// Whether the direction is over (finished in order or stopped).
    pub(crate) fn is_done(self) -> bool {
        matches!(self, SendState::Finished | SendState::Stopped(_))
    }
}

/// The receive direction.
///
/// ```text
///  Receiving ──FIN delivered──▶ Finished
///      │  └────abort Close, timeout, reap, overrun──▶ Failed(failure)
///      └──reset (by either side)──▶ Reset
/// ```
/// `Finished` and `Failed` still deliver the bytes queued before the end; a peer
/// reset leaves them so (the peer's direction had ended in order), a local reset
/// drops them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecvState {
    /// Frames arrive and are delivered in order.
    Receiving,
    /// The peer's FIN arrived after every byte before it: EOF after the queue.
    Finished,
    /// The direction ended with an error, reported after the queued bytes.
    Failed(Failure),
    /// Reset: queued bytes were dropped and reads fail at once.
    Reset { code: u32, by_peer: bool },
}

impl RecvState {
    /// Whether the peer's direction is over for us (no more bytes will be delivered).
    pub(crate) fn is_done(self) -> bool {
        !matches!(self, RecvState::Receiving)
    }
}

/// How the stream as a whole was torn down, if it was (a stream whose directions both
/// finished in order is `Live` until it leaves the table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Teardown {
    /// Not torn down: timers and frames are handled normally.
    Live,
    /// A timer gave up on the peer; frames are still taken (a late answer changes
    /// nothing the application was told), timers are stopped.
    TimedOut,
    /// The idle timeout reaped the stream (by us or by the peer's `Reset`).
    Reaped,
    /// Reset by either side: only control frames (the `Reset` itself) go out, and
    /// inbound frames are ignored apart from a deferred reset's `OpenAck`.
    Reset { code: u32, by_peer: bool },
}

impl Teardown {
    pub(crate) fn is_reset(self) -> bool {
        matches!(self, Teardown::Reset { .. })
    }

    pub(crate) fn is_live(self) -> bool {
        self == Teardown::Live
    }
}

/// When the stream's next acknowledgement is due.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum AckDue {
    /// No acknowledgement is owed.
    #[default]
    Nothing,
    /// Owed, delayed until then (more frames may arrive and share it).
    At(Instant),
    /// Owed at once (credit running low, a FIN, a window update, a ping's answer).
    Now,
}

impl AckDue {
    pub(crate) fn pending(self) -> bool {
        self != AckDue::Nothing
    }

    pub(crate) fn due(self, now: Instant) -> bool {
        match self {
            AckDue::Nothing => false,
            AckDue::At(at) => at <= now,
            AckDue::Now => true,
        }
    }
}

/// Listener side: whether payload waits for reply SURBs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum SurbWait {
    /// Payload goes when it is ready.
    #[default]
    Ready,
    /// The stock fell to the ack reserve at `since`; the core has not queued the
    /// stream among its peer's SURB waiters yet.
    Blocked { since: Instant },
    /// Waiting in the peer's queue of SURB waiters (since `since`, or the last look
    /// at the stock); the core gives it its turn.
    Queued { since: Instant },
}

impl SurbWait {
    pub(crate) fn since(self) -> Option<Instant> {
        match self {
            SurbWait::Ready => None,
            SurbWait::Blocked { since } | SurbWait::Queued { since } => Some(since),
        }
    }
}

/// Which halves of its handle the application still holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handles {
    /// The whole stream (or both halves of a split).
    Both,
    /// Only the read half: the write half was dropped.
    ReadOnly,
    /// Only the write half: what arrives is acknowledged and dropped.
    WriteOnly,
    /// Neither: the stream leaves the table once its work is done.
    Dropped,
}

impl Handles {
    pub(crate) fn reads(self) -> bool {
        matches!(self, Handles::Both | Handles::ReadOnly)
    }

    pub(crate) fn writes(self) -> bool {
        matches!(self, Handles::Both | Handles::WriteOnly)
    }

    /// What is left after dropping the read and/or the write half.
    pub(crate) fn without(self, read: bool, write: bool) -> Handles {
        match (self.reads() && !read, self.writes() && !write) {
            (true, true) => Handles::Both,
            (true, false) => Handles::ReadOnly,
            (false, true) => Handles::WriteOnly,
            (false, false) => Handles::Dropped,
        }
    }
}

/// Application tasks the last operation should wake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Wakes {
    pub(crate) read: bool,
    pub(crate) write: bool,
    pub(crate) established: bool,
}

impl Wakes {
    pub(crate) const ALL: Wakes = Wakes {
        read: true,
        write: true,
        established: true,
    };
}
