//! The state machine of one stream: both directions, acknowledgements, credit,
//! retransmission, close and reset. No I/O and no clock: time is passed in.
//!
//! The state and its constructors live here, the explicit lifecycle states in
//! [`state`] and the timers in [`timer`]; the behaviour is split by concern:
//! [`send`], [`recv`], [`ack`], [`liveness`], [`surb`] and [`transmit`].

mod ack;
mod liveness;
mod pending;
mod recv;
mod send;
mod settings;
mod state;
mod surb;
#[cfg(test)]
mod tests;
mod timer;
mod transmit;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use lp_frame::ext::{self, reset_code, Ack, Close, Reset, SackBlock};
use lp_frame::{MessageType, StreamHeader, StreamId};
use reorder::{InsertOutcome, ReorderBuffer, ReorderConfig, SendBuffer, SendConfig, Seq, SeqRange};

use crate::config::MuxConfig;
use crate::core::{Read, Write};
use crate::error::{Failure, Operation, Overrun, Reap, StreamError, Timeout};
use crate::metrics::{StreamCounters, StreamMetrics};
use crate::rtt::RttEstimator;
use crate::segment::Segment;
use crate::transport::Destination;
pub(crate) use settings::StreamSettings;
use state::{AckDue, Handles, Handshake, RecvState, SendState, SurbWait, Teardown, Wakes};
use timer::{Timer, TimerTable};

/// Credit an extended sender may use before the receiver's first acknowledgement.
/// Every extended receiver must accept at least this much (see docs/PROTOCOL.md).
pub const INITIAL_CREDIT: u64 = 64 * 1024;

/// SURBs a replier reserves for its acknowledgements when it asks for more.
pub(crate) const ACK_SURB_RESERVE: u32 = 4;

/// How soon payload held back for lack of reply SURBs looks at the stock again (an
/// inbound frame from the opener, which may carry SURBs, looks at once).
const SURB_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

/// What the peer turned out to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PeerKind {
    /// Not known yet (opener before the `OpenAck`).
    Unknown,
    /// Showed the extension capability.
    Extended,
    /// Reference format only.
    Legacy,
}

/// Control frames a stream owes its peer, sent before any data (in this order: Reset,
/// Open, OpenAck, Ping, Pong).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct PendingControl {
    /// The `Open` (re)transmission is due.
    open: bool,
    /// The `OpenAck` for an accepted stream is due.
    open_ack: bool,
    /// A keepalive or zero-credit probe `Ping` is due.
    ping: bool,
    /// A `Pong` answering the `Ping` with this nonce is due.
    pong: Option<u32>,
    /// A `Reset` with this code is due.
    reset: Option<u32>,
}

/// A frame ready to go out.
pub(crate) struct OutFrame {
    pub(crate) payload: Bytes,
    pub(crate) reply_surbs: u32,
}

/// The full state of one stream.
pub(crate) struct StreamState<A, T> {
    pub(crate) id: StreamId,
    pub(crate) peer: Destination<A, T>,
    local_extended: bool,
    pub(crate) peer_kind: PeerKind,
    fixed_surbs: Option<u32>,
    /// Settings every stream of the client shares (derived once from its `MuxConfig`).
    settings: Arc<StreamSettings>,
    /// The most payload one frame carries (`frame_payload()`); a `u32` keeps the
    /// stream 8 bytes smaller.
    frame_payload_len: u32,
    /// Out-of-order bytes a reference peer may make us hold (a `u32`: it is bounded by
    /// `legacy_receive_buffer` and the receive window, both `u32`).
    legacy_limit: u32,

    // Lifecycle: one explicit state each (see `state`).
    handshake: Handshake,
    send_state: SendState,
    recv_state: RecvState,
    teardown: Teardown,
    /// Control frames waiting to go (one struct, like quinn's pending retransmits).
    pending_ctl: PendingControl,
    /// A local reset made before the peer showed its capability: sent only if its
    /// `OpenAck` shows the extension.
    deferred_reset: Option<u32>,

    // Send direction.
    pending: pending::PendingBytes,
    pending_since: Option<Instant>,
    flush_requested: bool,
    nodelay: bool,
    /// The last transmit or received frame provably moved no deadline earlier (the
    /// per-frame hot paths; see [`Self::take_deadlines_kept`]).
    deadlines_kept: bool,
    send_buf: SendBuffer<Segment>,
    retransmit_queue: VecDeque<Seq>,
    /// Set when the retransmission timer fired: frames last sent before it are
    /// presumed lost and resent as acks show the path working again.
    recovery_point: Option<Instant>,
    /// Frames SACKed past but still young: resent at their deadline if still unacked.
    suspects: Vec<(Seq, Instant)>,
    send_offset: u64,
    peer_max_data: u64,

    // Receive direction.
    reorder: ReorderBuffer<Segment>,
    recv_queue: VecDeque<Bytes>,
    recv_queued: usize,
    consumed: u64,
    /// The credit limit the peer currently believes in (what we last advertised, or
    /// `INITIAL_CREDIT` before our first ack).
    advertised_max: u64,
    /// Stream bytes received in order so far (read, queued or discarded).
    recv_offset: u64,
    ack_due: AckDue,
    frames_since_ack: u32,
    /// The credit our last ack left the peer (`advertised_max − consumed` then), or
    /// `u32::MAX` before our first: a window update is owed once half of it was read.
    last_grant: u32,

    // Surb policy, opener side: SURBs the replier asked for and not sent yet, SURBs
    // sent, and frames received (each consumed at least one SURB at the replier).
    surbs_owed: u32,
    surbs_sent: u64,
    replies_seen: u64,
    // Opener side: when we last granted a SURB request.
    last_surb_grant: Option<Instant>,
    /// Opener side: the peer-wide SURB estimate and the room under the peer's ceiling,
    /// set by the core before this stream transmits or handles a frame.
    pub(crate) peer_surbs: Option<(u32, u32)>,
    /// Replier side: live streams of this stream's peer, set by the core before this
    /// stream transmits. The SURB stock belongs to the peer, so a stream asks for its
    /// own need less its share of the stock, not less all of it.
    pub(crate) peer_streams: u16,
    // Replier side: when we last asked for SURBs.
    last_surb_request: Option<Instant>,
    // Replier side: SURBs asked for in our last request, and replies sent since.
    surbs_asked: u16,
    replies_since_ask: u16,
    last_ask_at: Option<Instant>,
    /// Replier side: whether payload waits for reply SURBs (see `surb_starved`).
    pub(crate) surb_wait: SurbWait,

    // Liveness.
    last_recv: Instant,
    last_data: Instant,
    /// Keepalive pings unanswered (a `u16`; `keepalive_max_missed` is capped at
    /// `u16::MAX` in the settings, so the count always reaches it).
    pings_outstanding: u16,
    /// Zero-credit probes sent since the credit last opened (their backoff).
    probes: u8,
    last_probe: Option<Instant>,
    /// When the core last heard from this stream's peer on any stream; refreshed
    /// before timers fire (see [`Self::heard_at`]).
    pub(crate) peer_heard: Option<Instant>,
    next_ping_nonce: u32,

    // Life.
    rtt: RttEstimator,
    /// Which halves of its handle the application still holds.
    handles: Handles,
    finished_at: Option<Instant>,
    pub(crate) last_activity: Instant,
    wakes: Wakes,
    pub(crate) metrics: StreamCounters,
    /// How much more credit the peer's connection window allows now; set by the core
    /// before each transmit, read when an ack is built.
    pub(crate) credit_room: u64,
}

impl<A: Copy, T: Copy> StreamState<A, T> {
    fn new(
        id: StreamId,
        peer: Destination<A, T>,
        peer_kind: PeerKind,
        now: Instant,
        cfg: &MuxConfig,
        settings: &Arc<StreamSettings>,
    ) -> Self {
        let local_extended = !cfg.legacy_mode;
        let window = settings.window;
        // The reorder buffer is sized for the larger of the two per-kind bounds (the
        // peer's kind may only be learned later); `recv_limit` enforces the right one.
        let legacy_limit = u64::from(cfg.legacy_receive_buffer).max(window);
        let reorder_cfg = ReorderConfig {
            max_items: (legacy_limit as usize / 64).max(64),
            max_bytes: legacy_limit as usize,
            max_distance: ((legacy_limit as usize / 64).max(64)) as u32,
        };
        let rtt = RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto);
        let mut s = Self {
            id,
            peer,
            local_extended,
            peer_kind,
            fixed_surbs: None,
            settings: Arc::clone(settings),
            frame_payload_len: u32::try_from(cfg.frame_payload()).unwrap_or(u32::MAX),
            legacy_limit: u32::try_from(legacy_limit).unwrap_or(u32::MAX),
            handshake: Handshake::Established,
            send_state: SendState::Open,
            recv_state: RecvState::Receiving,
            teardown: Teardown::Live,
            pending_ctl: PendingControl::default(),
            deferred_reset: None,
            pending: pending::PendingBytes::default(),
            pending_since: None,
            flush_requested: false,
            nodelay: cfg.nodelay,
            deadlines_kept: false,
            send_buf: SendBuffer::new(Seq::new(cfg.first_seq), SendConfig::default()),
            retransmit_queue: VecDeque::new(),
            recovery_point: None,
            suspects: Vec::new(),
            send_offset: 0,
            peer_max_data: 0,
            reorder: ReorderBuffer::new(Seq::new(cfg.first_seq), reorder_cfg),
            recv_queue: VecDeque::new(),
            recv_queued: 0,
            consumed: 0,
            advertised_max: INITIAL_CREDIT,
            recv_offset: 0,
            ack_due: AckDue::Nothing,
            frames_since_ack: 0,
            last_grant: u32::MAX,
            surbs_owed: 0,
            surbs_sent: 0,
            replies_seen: 0,
            last_surb_grant: None,
            peer_surbs: None,
            peer_streams: 1,
            last_surb_request: None,
            surbs_asked: 0,
            replies_since_ask: 0,
            last_ask_at: None,
            surb_wait: SurbWait::Ready,
            last_recv: now,
            last_data: now,
            pings_outstanding: 0,
            probes: 0,
            last_probe: None,
            peer_heard: None,
            next_ping_nonce: 1,
            rtt,
            handles: Handles::Both,
            finished_at: None,
            last_activity: now,
            wakes: Wakes::default(),
            metrics: StreamCounters::default(),
            credit_room: u64::MAX,
        };
        s.peer_max_data = s.initial_credit();
        s
    }

    /// A stream we open towards `to`; the `Open` goes out on the next transmit.
    pub(crate) fn new_outbound(
        id: StreamId,
        to: A,
        fixed_surbs: Option<u32>,
        now: Instant,
        cfg: &MuxConfig,
        settings: &Arc<StreamSettings>,
    ) -> Self {
        let kind = if cfg.legacy_mode {
            PeerKind::Legacy
        } else {
            PeerKind::Unknown
        };
        let mut s = Self::new(id, Destination::Address(to), kind, now, cfg, settings);
        s.frame_payload_len = s
            .frame_payload_len
            .saturating_sub(crate::config::ANONYMOUS_EXTRA as u32)
            .max(64);
        s.fixed_surbs = fixed_surbs;
        s.handshake = Handshake::Opening {
            sent_at: None,
            tries: 0,
        };
        s.pending_ctl.open = true;
        s
    }

    /// A stream a peer opened through `tag`; the `OpenAck` goes out on the next transmit.
    pub(crate) fn new_inbound(
        id: StreamId,
        tag: T,
        peer_extended: bool,
        now: Instant,
        cfg: &MuxConfig,
        settings: &Arc<StreamSettings>,
    ) -> Self {
        let kind = if peer_extended && !cfg.legacy_mode {
            PeerKind::Extended
        } else {
            PeerKind::Legacy
        };
        let mut s = Self::new(id, Destination::Reply(tag), kind, now, cfg, settings);
        s.pending_ctl.open_ack = true;
        s
    }

    fn initial_credit(&self) -> u64 {
        if self.peer_kind == PeerKind::Legacy {
            u64::MAX
        } else {
            INITIAL_CREDIT
        }
    }

    /// The credit a new inbound stream holds from its first moment: the initial
    /// credit for an extended opener, the whole reference-peer buffer otherwise.
    pub(crate) fn initial_reservation(peer_extended: bool, cfg: &MuxConfig) -> u64 {
        if peer_extended && !cfg.legacy_mode {
            INITIAL_CREDIT
        } else {
            u64::from(cfg.legacy_receive_buffer).max(u64::from(cfg.receive_window))
        }
    }

    /// What this stream may make us hold in its peer's connection window: the credit
    /// outstanding (what we promised beyond what the application read) while the peer
    /// may still send, the whole reference-peer buffer for a reference peer, and only
    /// what is still buffered once the peer's direction ended.
    pub(crate) fn credit_held(&self) -> u64 {
        let buffered = self.inbound_bytes() as u64;
        if self.recv_state.is_done() {
            return buffered;
        }
        let promised = if self.peer_kind == PeerKind::Legacy {
            u64::from(self.legacy_limit)
        } else {
            self.advertised_max.saturating_sub(self.consumed)
        };
        promised.max(buffered)
    }

    /// Extended behaviour only once both sides showed it.
    fn extended(&self) -> bool {
        self.local_extended && self.peer_kind == PeerKind::Extended
    }

    /// Whether sent frames are kept for retransmission.
    fn reliable(&self) -> bool {
        self.local_extended && self.peer_kind != PeerKind::Legacy
    }

    /// The stream's tracing span (its id and direction), entered by the entry points
    /// that log: frames in, frames out, timeouts. Made when entered rather than stored:
    /// 40 bytes less in every stream, and while nothing records debug spans making one
    /// is a cached level check.
    pub(crate) fn span(&self) -> tracing::Span {
        if !tracing::level_enabled!(tracing::Level::DEBUG) {
            return tracing::Span::none();
        }
        let dir = if self.is_outbound() { "out" } else { "in" };
        tracing::debug_span!("stream", id = %self.id, dir)
    }

    pub(crate) fn is_outbound(&self) -> bool {
        matches!(self.peer, Destination::Address(_))
    }

    pub(crate) fn is_established(&self) -> bool {
        self.handshake == Handshake::Established
    }

    /// Marks the handshake done (the peer answered); wakes whoever waits for it.
    fn establish(&mut self) {
        if !self.is_established() {
            self.handshake = Handshake::Established;
            self.wakes.established = true;
        }
    }

    /// A typed error for this stream.
    fn error(&self, op: Operation, failure: Failure) -> StreamError {
        StreamError::new(Some(self.id), op, failure)
    }

    /// Why the stream as a whole failed, if it did: its reset, or the failure its
    /// directions report.
    fn stream_failure(&self) -> Option<Failure> {
        match self.teardown {
            Teardown::Live => None,
            Teardown::Reset { code, by_peer } => Some(Failure::Reset { code, by_peer }),
            Teardown::TimedOut | Teardown::Reaped => match (self.send_state, self.recv_state) {
                (SendState::Stopped(f), _) | (_, RecvState::Failed(f)) => Some(f),
                _ => None,
            },
        }
    }

    /// The error `wait_established` reports, if the stream died before establishment.
    pub(crate) fn establish_error(&self) -> Option<StreamError> {
        if self.is_established() {
            return None;
        }
        self.stream_failure()
            .map(|f| self.error(Operation::Establish, f))
    }

    /// The most payload one frame of this stream carries.
    pub(crate) fn frame_payload(&self) -> usize {
        self.frame_payload_len as usize
    }

    pub(crate) fn metrics(&self) -> StreamMetrics {
        let mut m = self.metrics.to_metrics();
        m.srtt = self.rtt.srtt();
        m.min_rtt = self.rtt.min_rtt();
        m.rto = self.rtt.rto();
        m.send_window = self.send_window();
        m
    }

    pub(crate) fn inbound_bytes(&self) -> usize {
        self.recv_queued + self.reorder.buffered_bytes()
    }

    /// The round-trip sample the last ack gave, once (for the client's delay tracker).
    pub(crate) fn take_rtt_sample(&mut self) -> Option<std::time::Duration> {
        self.rtt.take_fresh_sample()
    }

    pub(crate) fn take_wakes(&mut self) -> (bool, bool, bool) {
        let w = std::mem::take(&mut self.wakes);
        (w.read, w.write, w.established)
    }

    fn wake_all(&mut self) {
        self.wakes = Wakes::ALL;
    }

    /// The stream is reset (by us, or by the peer when `by_peer`): the send direction
    /// stops unless it had finished, the receive direction is reset unless the peer's
    /// direction had already ended in order when the peer reset (then every byte it
    /// wrote stays readable), and everything else held goes.
    fn enter_reset(&mut self, code: u32, by_peer: bool) {
        self.teardown = Teardown::Reset { code, by_peer };
        if self.send_state != SendState::Finished {
            self.send_state = SendState::Stopped(Failure::Reset { code, by_peer });
        }
        let keep_reads = by_peer && self.recv_state.is_done();
        let kept = keep_reads.then(|| (std::mem::take(&mut self.recv_queue), self.recv_queued));
        if !keep_reads {
            self.recv_state = RecvState::Reset { code, by_peer };
        }
        self.discard_all();
        if let Some((queue, queued)) = kept {
            self.recv_queue = queue;
            self.recv_queued = queued;
        }
    }

    // ----- application actions -------------------------------------------------

    pub(crate) fn set_nodelay(&mut self, nodelay: bool) {
        self.nodelay = nodelay;
    }

    /// Whether the operation just done provably moved none of this stream's deadlines
    /// earlier, so the core need not recompute the next one; resets the claim. Set only
    /// by the two per-frame hot paths: a first transmission of data while other data is
    /// in flight, leaving a full frame or nothing behind (the retransmission timer keeps
    /// its oldest frame; no partial frame starts to wait), and an in-order data frame
    /// with nothing held, on an established stream with no ping outstanding, that did
    /// not arm the delayed ack (every liveness deadline moves later). Debug builds check
    /// the claim on each use.
    pub(crate) fn take_deadlines_kept(&mut self) -> bool {
        std::mem::take(&mut self.deadlines_kept)
    }

    /// Whether the stream's linger has begun (its only timer a read could matter to).
    pub(crate) fn lingering(&self) -> bool {
        self.finished_at.is_some()
    }

    /// Whether the stream can leave the table.
    pub(crate) fn removable(&mut self, now: Instant) -> bool {
        if self.handles != Handles::Dropped {
            return false;
        }
        if self.teardown.is_reset() {
            if self.deferred_reset.is_some() {
                // Wait a linger for the OpenAck that decides whether the peer hears of
                // the reset; a peer that never answers has nothing to hear.
                let at = *self.finished_at.get_or_insert(now);
                return at + self.settings.linger <= now;
            }
            return self.pending_ctl.reset.is_none();
        }
        // Removal waits for the send direction to finish (or stop) and its last frames
        // to go; the receive direction needs no reader any more.
        if !self.send_state.is_done() || self.wants_transmit(now) {
            return false;
        }
        if !self.recv_state.is_done() && self.extended() {
            // We stop reading but the peer may still write: tell it to stop. Nobody reads
            // or resends any more, so everything held goes (suspect timers included).
            self.pending_ctl.reset = Some(reset_code::CANCELLED);
            self.enter_reset(reset_code::CANCELLED, false);
            return false;
        }
        if !self.extended() {
            return true;
        }
        let at = *self.finished_at.get_or_insert(now);
        at + self.settings.linger <= now
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// An idle stream's memory is mostly this struct (its buffers allocate nothing
    /// while empty); the table boxes it, so hash-map slack does not multiply it.
    /// Guard against it creeping up: the per-stream budget is 2 KiB. (1,280 bytes before
    /// the shared settings moved out of it, 1,160 before the explicit states and the
    /// core's bookkeeping moved to its table entry, 1,040 before the tracing span was
    /// made on demand and event counts became `u32`s.)
    #[test]
    fn stream_state_stays_small() {
        let size = std::mem::size_of::<StreamState<[u8; 32], [u8; 16]>>();
        assert!(size <= 960, "StreamState grew to {size} bytes");
    }
}
