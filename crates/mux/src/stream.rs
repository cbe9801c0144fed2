//! The state machine of one stream: both directions, acknowledgements, credit,
//! retransmission, close and reset. No I/O and no clock: time is passed in.

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use lp_frame::ext::{self, reset_code, Ack, Close, Reset, SackBlock};
use lp_frame::{MessageType, StreamHeader, StreamId};
use reorder::{InsertOutcome, ReorderBuffer, ReorderConfig, SendBuffer, SendConfig, Seq, SeqRange};

use crate::config::MuxConfig;
use crate::error::StreamError;
use crate::metrics::StreamMetrics;
use crate::rtt::RttEstimator;
use crate::segment::Segment;
use crate::transport::Destination;

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

/// Outcome of an application write.
#[derive(Debug)]
pub(crate) enum WriteOutcome {
    /// This many bytes were taken.
    Accepted(usize),
    /// No room (credit or send buffer): wait for a writable event.
    Blocked,
    /// The write side cannot take bytes any more.
    Failed(io::Error),
}

/// Outcome of an application read.
#[derive(Debug)]
pub(crate) enum ReadOutcome {
    /// This many bytes were copied.
    Data(usize),
    /// End of stream.
    Eof,
    /// Nothing yet: wait for a readable event.
    Pending,
    /// The read side failed.
    Failed(io::Error),
}

/// How the read side ended (after every byte before it was delivered).
#[derive(Clone, Debug, PartialEq, Eq)]
enum ReadEnd {
    /// Clean FIN.
    Eof,
    /// The peer dropped its write side without shutdown.
    Aborted(u32),
    /// A failure detected by us, delivered in order.
    Failed(io::ErrorKind, String),
}

/// A reset, from either side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ResetInfo {
    by_peer: bool,
    code: u32,
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
    pub(crate) span: tracing::Span,
    local_extended: bool,
    pub(crate) peer_kind: PeerKind,
    fixed_surbs: Option<u32>,
    frame_payload: usize,
    window: u64,
    legacy_limit: u64,
    send_limit: usize,
    coalesce_delay: std::time::Duration,
    ack_every: u32,
    ack_delay: std::time::Duration,
    max_retransmits: u32,
    linger: std::time::Duration,
    initial_surbs: u32,
    surbs_per_message: u32,
    surb_low_water: u32,
    surb_target: u32,
    max_surbs_per_message: u32,

    // Opening.
    established: bool,
    need_open: bool,
    open_sent_at: Option<Instant>,
    open_tries: u32,
    need_open_ack: bool,

    // Send direction.
    pending: BytesMut,
    pending_since: Option<Instant>,
    flush_requested: bool,
    nodelay: bool,
    send_buf: SendBuffer<Segment>,
    retransmit_queue: VecDeque<Seq>,
    /// Set when the retransmission timer fired: frames last sent before it are
    /// presumed lost and resent as acks show the path working again.
    recovery_point: Option<Instant>,
    /// Frames SACKed past but still young: resent at their deadline if still unacked.
    suspects: Vec<(Seq, Instant)>,
    send_offset: u64,
    peer_max_data: u64,
    shutdown_requested: bool,
    abort_code: Option<u32>,
    fin_seq: Option<Seq>,
    write_done: bool,
    /// Every written byte and the FIN were acknowledged (or, to a reference peer, sent).
    all_acked: bool,

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
    read_end: Option<ReadEnd>,
    discard_reads: bool,
    ack_pending: bool,
    ack_now: bool,
    ack_deadline: Option<Instant>,
    frames_since_ack: u32,
    need_pong: Option<u32>,

    // Abort.
    reset: Option<ResetInfo>,
    need_reset: Option<u32>,
    /// A local reset made before the peer showed its capability: sent only if its
    /// `OpenAck` shows the extension.
    deferred_reset: Option<u32>,
    write_error: Option<(io::ErrorKind, String)>,

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
    // Replier side: when payload last had to wait for reply SURBs (see `surb_starved`).
    surb_blocked_at: Option<Instant>,
    /// Listener side: the stream waits in its peer's queue of SURB waiters (the core
    /// releases the queue in order as the stock allows, so streams take turns).
    pub(crate) in_surb_wait: bool,

    // Liveness.
    keepalive_interval: std::time::Duration,
    keepalive_max_missed: u32,
    idle_timeout: std::time::Duration,
    last_recv: Instant,
    last_data: Instant,
    pings_outstanding: u32,
    /// Zero-credit probes sent since the credit last opened (their backoff).
    probes: u8,
    last_probe: Option<Instant>,
    /// When the core last heard from this stream's peer on any stream; refreshed
    /// before timers fire (see [`Self::heard_at`]).
    pub(crate) peer_heard: Option<Instant>,
    next_ping_nonce: u32,
    need_ping: bool,
    reaped: bool,

    // Life.
    rtt: RttEstimator,
    pub(crate) read_handle: bool,
    pub(crate) write_handle: bool,
    finished_at: Option<Instant>,
    pub(crate) last_activity: Instant,
    wake_read: bool,
    wake_write: bool,
    wake_established: bool,
    pub(crate) metrics: StreamMetrics,
    /// The deadline this stream is registered under in the core's timer heap.
    pub(crate) scheduled: Option<Instant>,
    /// Whether the stream sits in the core's ready queue.
    pub(crate) in_ready: bool,
    /// Whether the stream counts against the core's limit on unacknowledged opens.
    pub(crate) pending_open: bool,
    /// Credit this stream holds in its peer's connection window, as last counted by
    /// the core (see [`Self::credit_held`]).
    pub(crate) counted_credit: u32,
    /// Inbound bytes this stream holds, as last counted by the core.
    pub(crate) counted_inbound: u32,
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
    ) -> Self {
        let local_extended = !cfg.legacy_mode;
        let window = u64::from(cfg.receive_window).max(INITIAL_CREDIT);
        // The reorder buffer is sized for the larger of the two per-kind bounds (the
        // peer's kind may only be learned later); `recv_limit` enforces the right one.
        let legacy_limit = u64::from(cfg.legacy_receive_buffer).max(window);
        let reorder_cfg = ReorderConfig {
            max_items: (legacy_limit as usize / 64).max(64),
            max_bytes: legacy_limit as usize,
            max_distance: ((legacy_limit as usize / 64).max(64)) as u32,
        };
        let direction = match peer {
            Destination::Address(_) => "out",
            Destination::Reply(_) => "in",
        };
        let rtt = RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto);
        let mut s = Self {
            id,
            peer,
            span: tracing::debug_span!("stream", id = %id, dir = direction),
            local_extended,
            peer_kind,
            fixed_surbs: None,
            frame_payload: cfg.frame_payload(),
            window,
            legacy_limit,
            send_limit: cfg.send_buffer.max(cfg.frame_payload()),
            coalesce_delay: cfg.coalesce_delay,
            ack_every: cfg.ack_every.max(1),
            ack_delay: cfg.ack_delay,
            max_retransmits: cfg.max_retransmits.max(1),
            linger: cfg.linger,
            initial_surbs: cfg.initial_surbs,
            surbs_per_message: cfg.surbs_per_message,
            surb_low_water: cfg.surb_low_water,
            surb_target: cfg.surb_target,
            max_surbs_per_message: cfg.max_surbs_per_message,
            established: false,
            need_open: false,
            open_sent_at: None,
            open_tries: 0,
            need_open_ack: false,
            pending: BytesMut::new(),
            pending_since: None,
            flush_requested: false,
            nodelay: cfg.nodelay,
            send_buf: SendBuffer::new(Seq::new(cfg.first_seq), SendConfig::default()),
            retransmit_queue: VecDeque::new(),
            recovery_point: None,
            suspects: Vec::new(),
            send_offset: 0,
            peer_max_data: 0,
            shutdown_requested: false,
            abort_code: None,
            fin_seq: None,
            write_done: false,
            all_acked: false,
            reorder: ReorderBuffer::new(Seq::new(cfg.first_seq), reorder_cfg),
            recv_queue: VecDeque::new(),
            recv_queued: 0,
            consumed: 0,
            advertised_max: INITIAL_CREDIT,
            recv_offset: 0,
            read_end: None,
            discard_reads: false,
            ack_pending: false,
            ack_now: false,
            ack_deadline: None,
            frames_since_ack: 0,
            need_pong: None,
            reset: None,
            need_reset: None,
            deferred_reset: None,
            write_error: None,
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
            surb_blocked_at: None,
            in_surb_wait: false,
            keepalive_interval: cfg.keepalive_interval,
            keepalive_max_missed: cfg.keepalive_max_missed.max(1),
            idle_timeout: cfg.idle_timeout,
            last_recv: now,
            last_data: now,
            pings_outstanding: 0,
            probes: 0,
            last_probe: None,
            peer_heard: None,
            next_ping_nonce: 1,
            need_ping: false,
            reaped: false,
            rtt,
            read_handle: true,
            write_handle: true,
            finished_at: None,
            last_activity: now,
            wake_read: false,
            wake_write: false,
            wake_established: false,
            metrics: StreamMetrics::default(),
            scheduled: None,
            in_ready: false,
            pending_open: false,
            counted_credit: 0,
            counted_inbound: 0,
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
    ) -> Self {
        let kind = if cfg.legacy_mode {
            PeerKind::Legacy
        } else {
            PeerKind::Unknown
        };
        let mut s = Self::new(id, Destination::Address(to), kind, now, cfg);
        s.frame_payload = (s.frame_payload - crate::config::ANONYMOUS_EXTRA).max(64);
        s.fixed_surbs = fixed_surbs;
        s.need_open = true;
        s.pending_open = true;
        s
    }

    /// A stream a peer opened through `tag`; the `OpenAck` goes out on the next transmit.
    pub(crate) fn new_inbound(
        id: StreamId,
        tag: T,
        peer_extended: bool,
        now: Instant,
        cfg: &MuxConfig,
    ) -> Self {
        let kind = if peer_extended && !cfg.legacy_mode {
            PeerKind::Extended
        } else {
            PeerKind::Legacy
        };
        let mut s = Self::new(id, Destination::Reply(tag), kind, now, cfg);
        s.established = true;
        s.need_open_ack = true;
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
        if self.reset.is_some() || self.read_end.is_some() || self.reaped {
            return buffered;
        }
        let promised = if self.peer_kind == PeerKind::Legacy {
            self.legacy_limit
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

    pub(crate) fn is_outbound(&self) -> bool {
        matches!(self.peer, Destination::Address(_))
    }

    pub(crate) fn is_established(&self) -> bool {
        self.established
    }

    /// The error `wait_established` reports, if the stream died before establishment.
    pub(crate) fn establish_error(&self) -> Option<io::Error> {
        if self.established {
            return None;
        }
        if let Some(r) = self.reset {
            return Some(reset_error(r, "establishing"));
        }
        self.write_error
            .as_ref()
            .map(|(k, m)| StreamError::io(*k, None, m.clone()))
    }

    pub(crate) fn metrics(&self) -> StreamMetrics {
        let mut m = self.metrics;
        m.srtt = self.rtt.srtt();
        m.rto = self.rtt.rto();
        m
    }

    pub(crate) fn inbound_bytes(&self) -> usize {
        self.recv_queued + self.reorder.buffered_bytes()
    }

    pub(crate) fn take_wakes(&mut self) -> (bool, bool, bool) {
        let w = (self.wake_read, self.wake_write, self.wake_established);
        self.wake_read = false;
        self.wake_write = false;
        self.wake_established = false;
        w
    }

    fn wake_all(&mut self) {
        self.wake_read = true;
        self.wake_write = true;
        self.wake_established = true;
    }

    // ----- application actions -------------------------------------------------

    pub(crate) fn set_nodelay(&mut self, nodelay: bool) {
        self.nodelay = nodelay;
    }

    /// The error the write side reports once it was reset or failed; `None` while it
    /// works or after it finished cleanly.
    pub(crate) fn send_error(&self) -> Option<io::Error> {
        if self.all_acked {
            // Everything arrived: a later reset or failure lost nothing we wrote.
            return None;
        }
        if let Some(r) = self.reset {
            return Some(if r.by_peer {
                StreamError::io(
                    io::ErrorKind::BrokenPipe,
                    Some(r.code),
                    format!(
                        "stream {} was reset by the peer (code {}); open a new stream",
                        self.id, r.code
                    ),
                )
            } else {
                reset_error(r, "writing")
            });
        }
        self.write_error
            .as_ref()
            .map(|(kind, msg)| StreamError::io(*kind, None, msg.clone()))
    }

    /// Whether every written byte and the FIN were acknowledged by the peer (for a
    /// reference peer, which never acknowledges: sent). `Err` when the write side was
    /// reset or failed first.
    pub(crate) fn send_finished(&self) -> Result<bool, io::Error> {
        if self.all_acked {
            return Ok(true);
        }
        match self.send_error() {
            Some(e) => Err(e),
            None => Ok(false),
        }
    }

    pub(crate) fn write(&mut self, data: &[u8], now: Instant) -> WriteOutcome {
        if let Some(e) = self.send_error() {
            return WriteOutcome::Failed(e);
        }
        if self.shutdown_requested || self.fin_seq.is_some() {
            return WriteOutcome::Failed(StreamError::io(
                io::ErrorKind::BrokenPipe,
                None,
                format!(
                    "stream {}: write after shutdown of the write side; the stream only reads now",
                    self.id
                ),
            ));
        }
        if data.is_empty() {
            return WriteOutcome::Accepted(0);
        }
        let buffered = self.send_buf.unacked_bytes() + self.pending.len();
        let room = self.send_limit.saturating_sub(buffered) as u64;
        let framed_end = self.send_offset + self.pending.len() as u64;
        let credit = self.peer_max_data.saturating_sub(framed_end);
        let n = (data.len() as u64).min(room).min(credit) as usize;
        if n == 0 {
            self.metrics.credit_stalls += 1;
            return WriteOutcome::Blocked;
        }
        self.pending.extend_from_slice(&data[..n]);
        self.last_data = now;
        if self.pending_since.is_none() {
            self.pending_since = Some(now);
        }
        self.metrics.bytes_written += n as u64;
        WriteOutcome::Accepted(n)
    }

    pub(crate) fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.flush_requested = true;
        }
    }

    /// Whether everything written so far has left the stream's coalescing buffer.
    pub(crate) fn flushed(&self) -> bool {
        self.pending.is_empty() || self.reset.is_some() || self.write_error.is_some()
    }

    pub(crate) fn shutdown(&mut self) {
        if self.reset.is_none() && self.write_error.is_none() {
            self.shutdown_requested = true;
        }
    }

    /// Whether the FIN went out (or, with a reference peer, the write side is over).
    pub(crate) fn shutdown_complete(&self) -> bool {
        self.fin_seq.is_some()
            || self.write_done
            || self.reset.is_some()
            || self.write_error.is_some()
    }

    pub(crate) fn reset(&mut self, code: u32) {
        if self.reset.is_some() {
            return;
        }
        self.reset = Some(ResetInfo {
            by_peer: false,
            code,
        });
        match self.peer_kind {
            _ if !self.local_extended => {}
            PeerKind::Extended => self.need_reset = Some(code),
            PeerKind::Legacy => {}
            // The Open never left: the peer knows nothing, so it is told nothing.
            PeerKind::Unknown if self.need_open || self.open_tries == 0 => {}
            // The peer may speak only the reference format, which has no Reset: wait
            // for its OpenAck to show whether it may be told (PROTOCOL.md §4).
            PeerKind::Unknown => self.deferred_reset = Some(code),
        }
        self.discard_all();
        self.wake_all();
    }

    /// Gives the send direction up: unsent and unacknowledged bytes are dropped.
    fn abandon_send(&mut self) {
        self.pending.clear();
        self.retransmit_queue.clear();
        self.suspects.clear();
        self.release_sent();
        self.write_done = true;
        self.need_open = false;
    }

    /// Forgets every sent frame (nothing will be retransmitted).
    fn release_sent(&mut self) {
        let next = self.send_buf.next_seq();
        let _ = self.send_buf.on_ack(next, &[], self.last_activity);
    }

    fn discard_all(&mut self) {
        self.abandon_send();
        // Everything held goes, out-of-order frames beyond a gap included (popping
        // would only take the in-order ones).
        let (next, cfg) = (self.reorder.next_expected(), *self.reorder.config());
        self.reorder = ReorderBuffer::new(next, cfg);
        self.recv_queue.clear();
        self.recv_queued = 0;
        self.ack_pending = false;
        self.ack_now = false;
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        if let Some(r) = self.reset.filter(|_| !self.reads_survive_reset()) {
            return ReadOutcome::Failed(reset_error(r, "reading"));
        }
        if buf.is_empty() {
            return ReadOutcome::Data(0);
        }
        let mut n = 0;
        while n < buf.len() {
            let Some(front) = self.recv_queue.front_mut() else {
                break;
            };
            let take = front.len().min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&front[..take]);
            let _ = front.split_to(take);
            if front.is_empty() {
                self.recv_queue.pop_front();
            }
            n += take;
        }
        if n > 0 {
            self.on_consumed(n);
            return ReadOutcome::Data(n);
        }
        self.read_end_outcome()
    }

    /// One chunk as it arrived (for `recv()`).
    pub(crate) fn read_chunk(&mut self) -> Result<Option<Bytes>, ReadOutcome> {
        if let Some(r) = self.reset.filter(|_| !self.reads_survive_reset()) {
            return Err(ReadOutcome::Failed(reset_error(r, "reading")));
        }
        if let Some(chunk) = self.recv_queue.pop_front() {
            self.on_consumed(chunk.len());
            return Ok(Some(chunk));
        }
        match self.read_end_outcome() {
            ReadOutcome::Eof => Ok(None),
            other => Err(other),
        }
    }

    fn read_end_outcome(&self) -> ReadOutcome {
        match &self.read_end {
            None => ReadOutcome::Pending,
            Some(ReadEnd::Eof) => ReadOutcome::Eof,
            Some(ReadEnd::Aborted(code)) => ReadOutcome::Failed(StreamError::io(
                io::ErrorKind::ConnectionAborted,
                Some(*code),
                format!(
                    "stream {}: the peer dropped its end without shutting it down (code {code}); \
                     every byte it wrote was delivered, but the data may be incomplete",
                    self.id
                ),
            )),
            Some(ReadEnd::Failed(kind, msg)) => {
                ReadOutcome::Failed(StreamError::io(*kind, None, msg.clone()))
            }
        }
    }

    fn on_consumed(&mut self, n: usize) {
        self.recv_queued -= n;
        self.consumed += n as u64;
        self.metrics.bytes_read += n as u64;
        // Reopen the window once half of it was read since the last advertisement.
        let new_max = self.consumed + self.window;
        if self.extended() && new_max.saturating_sub(self.advertised_max) >= self.window / 2 {
            self.ack_pending = true;
            self.ack_now = true;
        }
    }

    /// The application dropped one or both halves of its handle.
    pub(crate) fn drop_handle(&mut self, read: bool, write: bool) {
        if write && self.write_handle {
            self.write_handle = false;
            if !self.shutdown_requested && self.reset.is_none() && self.write_error.is_none() {
                // Abortive close ordered after the data: everything written is still
                // delivered, then the peer's read fails instead of seeing EOF.
                self.shutdown_requested = true;
                self.abort_code = Some(reset_code::CANCELLED);
            }
        }
        if read && self.read_handle {
            self.read_handle = false;
            self.discard_reads = true;
            let dropped = self.recv_queued;
            self.recv_queue.clear();
            self.recv_queued = 0;
            self.consumed += dropped as u64;
        }
    }

    // ----- inbound frames -------------------------------------------------------

    /// Handles one frame for this stream. `budget` is what the client-wide inbound
    /// budget still allows (the core counts the bytes held afterwards).
    pub(crate) fn on_frame(
        &mut self,
        header: &StreamHeader,
        payload: Bytes,
        now: Instant,
        budget: usize,
    ) {
        let _enter = self.span.clone().entered();
        self.last_activity = now;
        // Any inbound frame counts as life.
        self.last_recv = now;
        self.pings_outstanding = 0;
        if matches!(header.msg_type, MessageType::Data | MessageType::Close) {
            self.last_data = now;
        }
        self.metrics.frames_received += 1;
        if self.is_outbound() {
            self.replies_seen += 1;
        }
        // The opener's message may have brought SURBs (a stream in the peer's queue
        // of SURB waiters waits for its turn instead: the core releases it).
        if !self.in_surb_wait {
            self.surb_blocked_at = None;
        }
        if self.reaped && self.reset.is_none() {
            self.on_frame_after_reap(header);
            return;
        }
        if self.reset.is_some() {
            if header.msg_type == MessageType::OpenAck {
                if let Some(code) = self.deferred_reset.take() {
                    if header.reserved & ext::CAP_EXTENDED != 0 {
                        self.peer_kind = PeerKind::Extended;
                        self.need_reset = Some(code);
                    } else {
                        self.peer_kind = PeerKind::Legacy;
                    }
                }
            }
            return;
        }
        match header.msg_type {
            MessageType::Open => {
                // Duplicate Open for a live stream: answer it again, nothing else.
                if !self.is_outbound() {
                    self.need_open_ack = true;
                }
            }
            MessageType::OpenAck => self.on_open_ack(header.reserved, now),
            MessageType::Data | MessageType::Close => {
                if self.is_outbound() && !self.established {
                    // Data from the listener proves it saw our Open; the OpenAck
                    // (which tells us its capabilities) may still be on its way.
                    self.established = true;
                    self.wake_established = true;
                }
                let mut body = payload;
                if header.reserved & ext::FLAG_ACK != 0 && self.local_extended {
                    match Ack::parse(&body) {
                        Ok((ack, used)) => {
                            self.on_ack(&ack, now);
                            let _ = body.split_to(used);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "malformed piggybacked ack; frame dropped");
                            return;
                        }
                    }
                }
                let seg = if header.msg_type == MessageType::Data {
                    Segment::Data(body)
                } else if !self.local_extended {
                    return;
                } else {
                    match Close::parse(&body) {
                        Ok(c) => Segment::Fin(c.error_code),
                        Err(e) => {
                            tracing::debug!(error = %e, "malformed close; frame dropped");
                            return;
                        }
                    }
                };
                self.on_segment(Seq::new(header.seq), seg, now, budget);
            }
            MessageType::Ping => {
                self.need_pong = Some(header.seq);
                // A peer that pings has heard nothing from us for a while: it may be
                // blocked on credit whose window update was lost, which nothing else
                // repeats. Answer with our current acknowledgement and window too.
                if self.extended() && self.read_end.is_none() {
                    self.ack_pending = true;
                    self.ack_now = true;
                }
            }
            MessageType::Pong => {}
            MessageType::Reset => {
                if self.local_extended {
                    match Reset::parse(&payload) {
                        Ok(r) if r.code == reset_code::IDLE_TIMEOUT => self.reap_quietly(true),
                        Ok(r) => self.on_peer_reset(r.code),
                        Err(_) => {}
                    }
                }
            }
            MessageType::Ack => {
                if self.local_extended {
                    match Ack::parse(&payload) {
                        Ok((ack, _)) => {
                            if self.is_outbound() && !self.established {
                                // Only a listener that has the stream acks it: as good as
                                // its OpenAck for establishment (PROTOCOL.md §7.2).
                                self.established = true;
                                self.wake_established = true;
                            }
                            self.on_ack(&ack, now)
                        }
                        Err(e) => tracing::debug!(error = %e, "malformed ack dropped"),
                    }
                }
            }
        }
    }

    /// A frame for a stream we reaped as idle. New data means the peer wrote while our
    /// reap was on its way: the clean EOF we gave becomes an error (those bytes are
    /// discarded), and the peer hears the reap again in case our `Reset` was lost.
    fn on_frame_after_reap(&mut self, header: &StreamHeader) {
        let new_data = matches!(header.msg_type, MessageType::Data | MessageType::Close)
            && !Seq::new(header.seq).is_before(self.reorder.next_expected());
        if !new_data {
            return;
        }
        if self.read_end == Some(ReadEnd::Eof) {
            self.read_end = Some(ReadEnd::Failed(
                io::ErrorKind::TimedOut,
                format!(
                    "stream {}: reaped as idle while the peer was still writing; \
                     the bytes it sent after the reap were discarded",
                    self.id
                ),
            ));
            self.wake_read = true;
        }
        if self.extended() {
            self.need_reset = Some(reset_code::IDLE_TIMEOUT);
        }
    }

    fn on_open_ack(&mut self, reserved: u8, _now: Instant) {
        if !self.is_outbound() {
            return;
        }
        if self.peer_kind == PeerKind::Unknown {
            if reserved & ext::CAP_EXTENDED != 0 {
                self.peer_kind = PeerKind::Extended;
            } else {
                self.become_legacy();
            }
        }
        if !self.established {
            self.established = true;
            self.wake_established = true;
        }
        self.need_open = false;
    }

    /// The peer speaks only the reference format: stop keeping frames for
    /// retransmission and stop waiting for credit.
    fn become_legacy(&mut self) {
        tracing::debug!("peer is a reference-format peer");
        self.peer_kind = PeerKind::Legacy;
        // A reference peer sends without credit, up to the whole legacy buffer; it was
        // admitted for the initial credit only, so it gets what the peer's connection
        // window still allows beyond that (a stream that outgrows it fails cleanly
        // with InvalidData rather than breaking the window).
        let allowed = INITIAL_CREDIT.saturating_add(self.credit_room);
        self.legacy_limit = self.legacy_limit.min(allowed);
        self.release_sent();
        self.retransmit_queue.clear();
        self.peer_max_data = u64::MAX;
        self.wake_write = true;
    }

    /// Most inbound bytes (reorder buffer plus unread) this stream holds: the window for
    /// an extended peer (whose credit keeps it there), more for a reference peer.
    fn recv_limit(&self) -> usize {
        match self.peer_kind {
            PeerKind::Legacy => self.legacy_limit as usize,
            // Before the capability is known (a reference peer sends without credit).
            PeerKind::Unknown => self.window as usize,
            // What we promised: a peer sending beyond its credit is refused.
            PeerKind::Extended => self.advertised_max.saturating_sub(self.consumed) as usize,
        }
    }

    fn on_segment(&mut self, seq: Seq, seg: Segment, now: Instant, budget: usize) {
        let len = reorder::ByteLen::byte_len(&seg);
        let slack = self.frame_payload;
        if len > 0 && (len > budget || self.inbound_bytes() + len > self.recv_limit() + slack) {
            self.metrics.frames_refused += 1;
            if self.peer_kind == PeerKind::Legacy && !self.discard_reads {
                self.fail_read(
                    io::ErrorKind::InvalidData,
                    "the peer sent more than the receive buffer holds and cannot retransmit",
                );
            }
            return;
        }
        let outcome = self.reorder.insert(seq, seg);
        match outcome {
            InsertOutcome::InOrder => {
                self.drain_in_order(now);
            }
            InsertOutcome::Buffered => {
                // Reordering is the norm on a mixnet: count it towards the next ack
                // (which carries the SACK blocks) instead of acking at once.
                self.metrics.out_of_order += 1;
                self.frames_since_ack += 1;
                self.schedule_ack(now);
            }
            InsertOutcome::Duplicate | InsertOutcome::TooOld => {
                // Our ack may have been lost: repeat it (delayed, so a burst of
                // retransmissions costs one ack).
                self.metrics.duplicates += 1;
                self.schedule_ack(now);
            }
            InsertOutcome::BeyondWindow | InsertOutcome::OverCapacity => {
                self.metrics.frames_refused += 1;
                if self.peer_kind == PeerKind::Legacy {
                    self.fail_read(
                        io::ErrorKind::InvalidData,
                        "a gap in the peer's sequence numbers outgrew the reorder buffer; \
                         a reference peer does not retransmit, so the stream cannot continue",
                    );
                }
            }
        }
    }

    fn drain_in_order(&mut self, now: Instant) {
        while let Some((_, seg)) = self.reorder.pop() {
            self.frames_since_ack += 1;
            match seg {
                Segment::Data(b) => {
                    if b.is_empty() {
                        continue;
                    }
                    self.recv_offset += b.len() as u64;
                    if self.discard_reads {
                        self.consumed += b.len() as u64;
                    } else {
                        self.recv_queued += b.len();
                        self.recv_queue.push_back(b);
                    }
                    self.wake_read = true;
                }
                Segment::Fin(code) => {
                    if self.read_end.is_none() {
                        self.read_end = Some(match code {
                            None => ReadEnd::Eof,
                            Some(c) => ReadEnd::Aborted(c),
                        });
                    }
                    self.wake_read = true;
                    self.ack_now = true;
                }
            }
        }
        // Credit running low: the peer is within a quarter window of the limit it
        // believes in, so it will stall without an ack (e.g. before our first ack,
        // when it only has INITIAL_CREDIT). Ack now instead of after the delay.
        if self.recv_offset + self.window / 4 >= self.advertised_max {
            self.ack_now = true;
        }
        self.schedule_ack(now);
    }

    fn schedule_ack(&mut self, now: Instant) {
        if self.extended() || self.peer_kind == PeerKind::Unknown {
            self.ack_pending = true;
            if self.frames_since_ack >= self.ack_every {
                self.ack_now = true;
            } else if self.ack_deadline.is_none() {
                self.ack_deadline = Some(now + self.ack_delay);
            }
        }
    }

    fn fail_read(&mut self, kind: io::ErrorKind, why: &str) {
        if self.read_end.is_none() {
            self.read_end = Some(ReadEnd::Failed(kind, format!("stream {}: {why}", self.id)));
            self.wake_read = true;
        }
    }

    fn on_peer_reset(&mut self, code: u32) {
        tracing::debug!(code, "reset by peer");
        self.reset = Some(ResetInfo {
            by_peer: true,
            code,
        });
        // A peer whose direction already ended in order (its FIN was delivered, so
        // every byte it wrote sits in our queue) resets only to stop our direction,
        // e.g. after dropping its handle: those bytes stay readable.
        let kept = self
            .read_end
            .is_some()
            .then(|| (std::mem::take(&mut self.recv_queue), self.recv_queued));
        self.discard_all();
        if let Some((queue, queued)) = kept {
            self.recv_queue = queue;
            self.recv_queued = queued;
        }
        self.wake_all();
    }

    /// Whether reads still deliver after a reset: only when the peer reset the stream
    /// after its direction had ended in order (see [`Self::on_peer_reset`]).
    fn reads_survive_reset(&self) -> bool {
        self.reset.is_some_and(|r| r.by_peer) && self.read_end.is_some()
    }

    fn on_ack(&mut self, ack: &Ack, now: Instant) {
        self.metrics.acks_received += 1;
        if self.peer_kind == PeerKind::Unknown {
            // Only an extended peer sends acks.
            self.peer_kind = PeerKind::Extended;
        }
        let sack: Vec<SeqRange> = ack
            .sack()
            .iter()
            .map(|b| SeqRange {
                start: Seq::new(b.start),
                end: Seq::new(b.end),
            })
            .collect();
        let out = self.send_buf.on_ack(Seq::new(ack.cumulative), &sack, now);
        if out.invalid {
            self.metrics.forged_acks += 1;
            tracing::debug!(cumulative = ack.cumulative, "ack for unsent data ignored");
            return;
        }
        if let Some(sample) = out.rtt_sample {
            self.rtt.on_sample(sample);
            // The sample comes from a frame sent once: if it went out before the
            // timeout, its first transmission got through and the timeout was spurious
            // (the acks were only late, in a queue), so nothing sent before it is
            // presumed lost any more (like F-RTO, RFC 5682).
            if self
                .recovery_point
                .is_some_and(|point| now.checked_sub(sample).is_some_and(|sent| sent < point))
            {
                self.recovery_point = None;
            }
        }
        if !out.fast_retransmit.is_empty() {
            // Messages overtake each other all the time on a mixnet (and the client
            // layer resends lost packets itself, ~1.5 s later), so "3 later frames were
            // SACKed" alone means little. Like RACK, a frame also has to be older than
            // 1.5 smoothed RTTs before it counts as lost; a younger one is resent when
            // it reaches that age, if it is still unacknowledged then.
            let age = self.rtt.srtt().map_or(self.rtt.rto(), |s| s + s / 2);
            let old: Vec<Seq> = now
                .checked_sub(age)
                .map(|cutoff| self.send_buf.expired(cutoff))
                .unwrap_or_default();
            for seq in out.fast_retransmit {
                if old.contains(&seq) {
                    self.retransmit_queue.push_back(seq);
                } else {
                    self.suspects.push((seq, now + age));
                }
            }
        }
        if out.newly_acked_frames > 0 {
            // Progress: the stream is not idle.
            self.last_data = now;
            self.continue_recovery();
        }
        if ack.max_data > self.peer_max_data {
            self.peer_max_data = ack.max_data;
            self.wake_write = true;
            self.probes = 0;
            self.last_probe = None;
        }
        if self.is_outbound() {
            self.on_surb_request(ack.surbs_wanted, now);
        }
        if out.newly_acked_frames > 0 {
            self.wake_write = true;
        }
        if let Some(fin) = self.fin_seq {
            if self.send_buf.is_empty() && !self.write_done {
                tracing::trace!(fin = fin.get(), "final frame acknowledged");
                self.write_done = true;
                self.all_acked = true;
            }
        }
    }

    // ----- timers ---------------------------------------------------------------

    /// The earliest instant after `now` at which this stream has timed work. Work that
    /// is already due sits in the ready queue (see [`Self::wants_transmit`]) instead.
    pub(crate) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut consider = |t: Option<Instant>, only_future: bool| {
            if let Some(t) = t {
                if !only_future || t > now {
                    d = Some(d.map_or(t, |x| x.min(t)));
                }
            }
        };
        if !self.pending.is_empty() {
            consider(self.pending_since.map(|t| t + self.coalesce_delay), true);
        }
        if self.ack_pending && !self.ack_now {
            consider(self.ack_deadline, true);
        }
        if self.reliable() && self.reset.is_none() && self.retransmit_queue.is_empty() {
            consider(self.rto_base().map(|t| t + self.rtt.rto()), false);
        }
        if !self.need_open
            && !self.established
            && self.reset.is_none()
            && self.write_error.is_none()
        {
            consider(self.open_sent_at.map(|at| at + self.rtt.rto()), false);
        }
        // An expired linger only waits for the stream's last frames to go out: the
        // transmit that sends them removes the stream, so no due deadline is kept.
        consider(self.finished_at.map(|t| t + self.linger), true);
        if self.reset.is_none() {
            consider(self.suspects.iter().map(|&(_, at)| at).min(), false);
        }
        consider(self.surb_blocked_at.map(|t| t + SURB_RETRY), false);
        if !self.reaped && self.write_error.is_none() && self.reset.is_none() {
            consider(self.idle_deadline(), false);
            consider(self.keepalive_due_at(), false);
        }
        d
    }

    /// When the retransmission timer started: the earliest last-send time over the
    /// unacknowledged frames.
    fn rto_base(&self) -> Option<Instant> {
        self.send_buf.earliest_send_time()
    }

    fn ack_due(&self, now: Instant) -> bool {
        self.ack_pending && (self.ack_now || self.ack_deadline.is_some_and(|d| d <= now))
    }

    pub(crate) fn on_timeout(&mut self, now: Instant) {
        let _enter = self.span.clone().entered();
        if self.surb_blocked_at.is_some_and(|t| t + SURB_RETRY <= now) {
            // The network may have received SURBs meanwhile (its own top-up requests
            // do not pass through us): look at the stock again. First, before any
            // early return, so the deadline never stays due. A stream in the peer's
            // queue of waiters stays blocked (the core releases it in turn); the timer
            // only makes the driver look at the stock again.
            self.surb_blocked_at = self.in_surb_wait.then_some(now);
        }
        if self.reset.is_some() {
            return;
        }
        if self.liveness_timeout(now) {
            return;
        }
        if let (Some(at), false) = (self.open_sent_at, self.established) {
            if !self.need_open && at + self.rtt.rto() <= now {
                if self.open_tries >= self.transmission_limit(now) {
                    self.fail_timeout("the peer never answered the Open");
                    return;
                }
                self.rtt.on_timeout();
                self.need_open = true;
            }
        }
        if self.ack_pending {
            if let Some(d) = self.ack_deadline {
                if d <= now {
                    self.ack_now = true;
                }
            }
        }

        if !self.suspects.is_empty() {
            let mut due = Vec::new();
            self.suspects.retain(|&(seq, at)| {
                if at <= now {
                    due.push(seq);
                }
                at > now
            });
            for seq in due {
                if self.send_buf.get(seq).is_some() && !self.retransmit_queue.contains(&seq) {
                    self.retransmit_queue.push_back(seq);
                }
            }
        }
        if self.reliable() {
            let rto = self.rtt.rto();
            if let Some(earliest) = self.rto_base() {
                if earliest + rto <= now {
                    // Like TCP, a timeout resends only the oldest expired frame and
                    // backs off: acks delayed in the mixnet (or by a SURB shortage at
                    // the peer) must not trigger a resend of the whole window. Real
                    // holes behind it are repaired by SACK-driven fast retransmit.
                    let oldest = self
                        .send_buf
                        .expired(now - rto)
                        .into_iter()
                        .min_by_key(|s| {
                            s.distance_from(self.send_buf.oldest_unacked().map_or(*s, |o| o.0))
                        });
                    if let Some(seq) = oldest {
                        // `max_retransmits` counts transmissions (as for the Open).
                        let sent = self.send_buf.retransmits(seq).unwrap_or(0) + 1;
                        if sent >= self.transmission_limit(now) {
                            self.fail_timeout("a frame was not acknowledged after the maximum number of retransmissions");
                            return;
                        }
                        self.retransmit_queue.push_back(seq);
                    }
                    self.recovery_point = Some(now);
                    self.rtt.on_timeout();
                }
            }
        }
    }

    /// After a timeout, each ack that makes progress lets two more of the frames sent
    /// before the timeout go again (a slow start from one frame), instead of waiting
    /// one backed-off RTO per lost frame.
    fn continue_recovery(&mut self) {
        let Some(point) = self.recovery_point else {
            return;
        };
        let mut queued = 0;
        for seq in self.send_buf.expired(point) {
            if queued == 2 {
                break;
            }
            if !self.retransmit_queue.contains(&seq) {
                self.retransmit_queue.push_back(seq);
                queued += 1;
            }
        }
        if queued == 0 {
            self.recovery_point = None;
        }
    }

    /// Keepalive and idle reaping; `true` when the stream ended here.
    fn liveness_timeout(&mut self, now: Instant) -> bool {
        if self.reaped || self.write_error.is_some() {
            return false;
        }
        if self.idle_deadline().is_some_and(|d| d <= now) {
            self.reap();
            return true;
        }
        if self.keepalive_due_at().is_some_and(|t| t <= now) {
            if self.pings_outstanding >= self.keepalive_max_missed {
                self.fail_timeout("the peer answered none of the keepalive pings");
                return true;
            }
            self.need_ping = true;
            self.pings_outstanding += 1;
            if self.credit_blocked() {
                // A zero-credit probe: the next one waits twice as long.
                self.probes = self.probes.saturating_add(1);
                self.last_probe = Some(now);
            }
        }
        false
    }

    /// Transmissions of one frame (or of the Open) before the stream gives up:
    /// `max_retransmits`, or four times as many while the peer was heard from (on any
    /// stream) within the last RTO. Then the path works and the frame is only queued
    /// somewhere (a busy link, replies waiting for SURBs).
    fn transmission_limit(&self, now: Instant) -> u32 {
        if self.heard_at() + self.rtt.rto() > now {
            self.max_retransmits.saturating_mul(4)
        } else {
            self.max_retransmits
        }
    }

    /// When we last heard from this stream's peer on any stream (per-peer liveness:
    /// a peer busy sending other streams' frames is alive), or from this stream.
    fn heard_at(&self) -> Instant {
        self.peer_heard
            .map_or(self.last_recv, |p| p.max(self.last_recv))
    }

    /// When the next keepalive ping is due, for established streams whose read side
    /// is still open.
    fn keepalive_due_at(&self) -> Option<Instant> {
        if !self.established || self.reset.is_some() || self.reaped || self.need_ping {
            return None;
        }
        if self.read_end.is_some() && self.write_done {
            return None;
        }
        // A writer stuck on zero credit probes sooner (like TCP's persist timer): the
        // Ping makes the peer repeat its ack, so a lost window update costs one RTO,
        // not a keepalive interval. Probes back off (RTO, 2 RTO, 4 RTO, … up to the
        // keepalive interval) until the credit opens, whatever else arrives meanwhile.
        if self.credit_blocked() {
            let backoff = self
                .rtt
                .rto()
                .checked_mul(1u32 << self.probes.min(16))
                .unwrap_or(self.keepalive_interval)
                .min(self.keepalive_interval);
            let base = self
                .last_probe
                .map_or(self.last_recv, |p| p.max(self.last_recv));
            return base.checked_add(backoff);
        }
        // Keepalive proper: silence from the whole peer, not just this stream.
        self.keepalive_interval
            .checked_mul(self.pings_outstanding + 1)
            .and_then(|w| self.heard_at().checked_add(w))
    }

    /// Whether bytes wait that the peer's credit does not let us frame.
    fn credit_blocked(&self) -> bool {
        self.extended()
            && self.peer_max_data <= self.send_offset + self.pending.len() as u64
            && self.send_buf.is_empty()
    }

    /// When the idle timeout reaps the stream (`None`: never, for huge timeouts).
    ///
    /// A stream that still holds bytes (or a FIN) to send or to have acknowledged is
    /// not idle, however long the acks take: its retransmission limit and keepalive
    /// end it if the peer is gone. Acknowledgements that make progress restart the
    /// idle clock.
    fn idle_deadline(&self) -> Option<Instant> {
        if self.send_outstanding() > 0 {
            return None;
        }
        self.last_data.checked_add(self.idle_timeout)
    }

    /// Bytes written but not yet acknowledged by the peer (unsent ones included), plus
    /// one for a FIN not yet acknowledged. Zero once everything arrived.
    pub(crate) fn send_outstanding(&self) -> usize {
        let fin = usize::from(self.shutdown_requested && !self.write_done);
        if !self.reliable() {
            return self.pending.len();
        }
        self.pending.len() + self.send_buf.unacked_bytes() + fin
    }

    /// Whether the idle timeout reaped this stream.
    pub(crate) fn is_reaped(&self) -> bool {
        self.reaped
    }

    /// The idle timeout expired: writes fail; reads end with `Ok(0)` after the bytes
    /// already received only for a reference peer (as the reference does) and with a
    /// `TimedOut` error when an extended peer never sent its FIN. An extended peer is told
    /// with a `Reset(IDLE_TIMEOUT)` and reaps its end the same way, so neither side
    /// lingers until its own timeout.
    fn reap(&mut self) {
        tracing::debug!("stream reaped after the idle timeout");
        if self.extended() {
            self.need_reset = Some(reset_code::IDLE_TIMEOUT);
        }
        self.reap_quietly(false);
    }

    /// Ends the stream as reaped without telling the peer (it told us, or it will
    /// reap on its own).
    fn reap_quietly(&mut self, by_peer: bool) {
        self.reaped = true;
        let unacked = self.send_outstanding();
        if unacked > 0 {
            // Bytes we wrote may not have arrived: never let that look like a clean end.
            let who = if by_peer { "the peer" } else { "we" };
            let msg = format!(
                "stream {}: {who} reaped the stream as idle while {unacked} written bytes were \
                 not yet acknowledged; they may not have arrived; open a new stream and resend",
                self.id
            );
            self.write_error = Some((io::ErrorKind::TimedOut, msg.clone()));
            if self.read_end.is_none() {
                self.read_end = Some(ReadEnd::Failed(io::ErrorKind::TimedOut, msg));
            }
            self.abandon_send();
            self.wake_all();
            return;
        }
        if self.read_end.is_none() {
            // Ok(0) only where a clean end is all anyone could know: a reference peer
            // has no FIN, so the reference's Ok(0) is kept for it. An extended peer that
            // never sent its FIN may still have had bytes to send (starved of SURBs,
            // say): its reads end with an error, never a silent cut. So do reads with a
            // known gap in the reorder buffer.
            let unfinished = self.peer_kind == PeerKind::Extended;
            self.read_end = Some(if self.reorder.is_empty() && !unfinished {
                ReadEnd::Eof
            } else {
                ReadEnd::Failed(
                    io::ErrorKind::TimedOut,
                    format!(
                        "stream {}: reaped after {:?} without data before the peer finished \
                         sending; what was read so far may be incomplete",
                        self.id, self.idle_timeout
                    ),
                )
            });
        }
        self.write_error = Some((
            io::ErrorKind::BrokenPipe,
            format!(
                "stream {}: reaped after {:?} without data; open a new stream",
                self.id, self.idle_timeout
            ),
        ));
        self.abandon_send();
        self.wake_all();
    }

    fn fail_timeout(&mut self, why: &str) {
        tracing::debug!(why, "stream timed out");
        let msg = format!("stream {}: {why}; the peer is unreachable or gone", self.id);
        self.write_error = Some((io::ErrorKind::TimedOut, msg.clone()));
        if self.read_end.is_none() {
            self.read_end = Some(ReadEnd::Failed(io::ErrorKind::TimedOut, msg));
        }
        self.abandon_send();
        self.wake_all();
    }

    // ----- outbound frames ------------------------------------------------------

    fn data_sendable(&self, now: Instant) -> bool {
        if self.pending.is_empty() || self.need_open {
            return false;
        }
        self.pending.len() >= self.frame_payload
            || self.nodelay
            || self.flush_requested
            || self.shutdown_requested
            || self
                .pending_since
                .is_some_and(|t| t + self.coalesce_delay <= now)
    }

    /// Whether the FIN (a `Close`, an extension) can go: only once the peer showed
    /// whether it speaks the extensions, so a reference peer never gets one.
    fn fin_sendable(&self) -> bool {
        self.shutdown_requested
            && self.fin_seq.is_none()
            && self.pending.is_empty()
            && !self.write_done
            && !self.need_open
            && (self.peer_kind != PeerKind::Unknown || !self.local_extended)
    }

    fn surbs_wanted(&self) -> bool {
        self.is_outbound() && self.surbs_owed > 0 && self.fixed_surbs.is_none()
    }

    /// Replier side: ask for SURBs when our stock will not cover what we have queued,
    /// at most once per round trip.
    fn maybe_request_surbs(&mut self, now: Instant, stock: Option<u32>) {
        if self.is_outbound() || !self.extended() || self.ack_pending {
            return;
        }
        // Ask before running dry: once a few frames' worth is missing, or as soon as
        // payload had to wait for SURBs.
        let threshold = if self.surb_starved(stock) { 1 } else { 8 };
        if self.surb_request(stock, now) < threshold {
            return;
        }
        let interval = self.rtt.srtt().unwrap_or(self.rtt.rto());
        if self.last_surb_request.is_some_and(|t| t + interval > now) {
            return;
        }
        self.last_surb_request = Some(now);
        self.ack_pending = true;
        self.ack_now = true;
    }

    /// Whether `poll_transmit` has something to send now.
    pub(crate) fn wants_transmit(&self, now: Instant) -> bool {
        if self.need_reset.is_some() {
            return true;
        }
        if self.reset.is_some() {
            return false;
        }
        let payload_ready = self.surb_blocked_at.is_none()
            && (!self.retransmit_queue.is_empty()
                || self.data_sendable(now)
                || self.fin_sendable());
        self.need_open
            || self.need_open_ack
            || self.need_pong.is_some()
            || self.need_ping
            || payload_ready
            || (self.ack_due(now) && self.extended())
            || (self.surbs_wanted() && self.extended())
    }

    /// When a frame last arrived on this stream (`None` before the first).
    pub(crate) fn last_heard(&self) -> Option<Instant> {
        (self.metrics.frames_received > 0).then_some(self.last_recv)
    }

    /// Whether the next transmit may build an ack (which grants credit): an ack is
    /// pending, SURBs are owed, or a listener may ask for SURBs.
    pub(crate) fn may_ack(&self) -> bool {
        self.ack_pending || self.surbs_owed > 0 || (!self.is_outbound() && self.extended())
    }

    /// Listener side: whether the reply SURBs we hold for the opener are down to the
    /// ack reserve. Then data, retransmissions and the FIN wait in the stream (not in
    /// the network's queue of replies waiting for SURBs, where acks would queue behind
    /// them and the opener would resend what already arrived), and the reserve carries
    /// acks and control frames.
    fn surb_starved(&self, stock: Option<u32>) -> bool {
        !self.is_outbound() && self.extended() && stock.is_some_and(|n| n <= ACK_SURB_RESERVE)
    }

    /// Whether payload waits for reply SURBs (listener side).
    pub(crate) fn surb_blocked(&self) -> bool {
        self.surb_blocked_at.is_some()
    }

    /// The core gives this stream its turn at the SURB stock.
    pub(crate) fn surb_release(&mut self) {
        self.in_surb_wait = false;
        self.surb_blocked_at = None;
    }

    /// Whether the stream can leave the table.
    pub(crate) fn removable(&mut self, now: Instant) -> bool {
        if self.read_handle || self.write_handle {
            return false;
        }
        if self.reset.is_some() {
            if self.deferred_reset.is_some() {
                // Wait a linger for the OpenAck that decides whether the peer hears of
                // the reset; a peer that never answers has nothing to hear.
                let at = *self.finished_at.get_or_insert(now);
                return at + self.linger <= now;
            }
            return self.need_reset.is_none();
        }
        let write_finished = self.write_done;
        let read_finished = self.read_end.is_some()
            || self.peer_kind == PeerKind::Legacy
            || (self.discard_reads && write_finished);
        if !(write_finished && read_finished) || self.wants_transmit(now) {
            return false;
        }
        if self.read_end.is_none() && self.extended() {
            // We stop reading but the peer may still write: tell it to stop. Nobody reads
            // or resends any more, so everything held goes (suspect timers included).
            self.need_reset = Some(reset_code::CANCELLED);
            self.reset = Some(ResetInfo {
                by_peer: false,
                code: reset_code::CANCELLED,
            });
            self.discard_all();
            return false;
        }
        if !self.extended() {
            return true;
        }
        let at = *self.finished_at.get_or_insert(now);
        at + self.linger <= now
    }

    /// Reply SURBs to attach to the next opener message. The peer's stock is
    /// estimated as SURBs sent minus frames received back; below the low-water mark
    /// (or when the peer asked) it is topped up in one batch, so most data messages
    /// carry none (each SURB costs ~1164 bytes, most of a packet).
    fn surbs_for(&mut self, first: bool) -> u32 {
        let Destination::Address(_) = self.peer else {
            return 0;
        };
        let k = if let Some(k) = self.fixed_surbs {
            k
        } else if first {
            self.initial_surbs
        } else {
            let (estimate, room) = self.surb_estimate();
            // What the peer's ceiling no longer allows is not owed any more (or an ack
            // carrying nothing would be sent again and again).
            self.surbs_owed = self.surbs_owed.min(u32::try_from(room).unwrap_or(u32::MAX));
            let estimate = u32::try_from(estimate).unwrap_or(u32::MAX);
            let top_up = if estimate < self.surb_low_water || self.surbs_owed > 0 {
                self.surb_target
                    .saturating_sub(estimate)
                    .max(self.surbs_owed)
                    .min(u32::try_from(room).unwrap_or(u32::MAX))
            } else {
                0
            };
            (self.surbs_per_message + top_up).min(self.max_surbs_per_message)
        };
        self.surbs_owed = self.surbs_owed.saturating_sub(k);
        self.surbs_sent += u64::from(k);
        k
    }

    /// Opener side: the replier asked for `wanted` more SURBs. What we grant is ours to
    /// decide, never the peer's: at most what it could use to send us everything our
    /// window lets it send plus its ack reserve, within the peer's loss-tolerant room,
    /// and a new grant at most once per round trip. So a hostile ack
    /// asking for 65,535 costs a few messages, not thousands.
    fn on_surb_request(&mut self, wanted: u16, now: Instant) {
        let interval = self.rtt.srtt().unwrap_or(self.rtt.rto());
        if self.last_surb_grant.is_some_and(|t| t + interval > now) {
            return;
        }
        // The peer's ask was computed from the stock it really holds, which our
        // estimate overstates under loss; its room (loss-tolerant, see the core's
        // `peer_surbs`) bounds the total, the stream's ceiling one grant.
        let ceiling = self.surb_ceiling();
        let (_, peer_room) = self.surb_estimate();
        let room = u64::from(ceiling).min(peer_room) as u32;
        let grant = u32::from(wanted).min(room);
        if grant < u32::from(wanted) {
            self.metrics.surb_requests_capped += 1;
        }
        if grant > 0 {
            self.last_surb_grant = Some(now);
        }
        self.surbs_owed = grant;
    }

    /// Our estimate of the reply SURBs the peer holds for us, and how many more its
    /// ceiling allows. SURBs belong to the sender tag, not to one stream, so the core
    /// supplies the peer-wide figures (SURBs sent on all streams minus frames received
    /// on all streams, each of which used at least one); a stream alone falls back on
    /// its own counts.
    fn surb_estimate(&self) -> (u64, u64) {
        match self.peer_surbs {
            Some((estimate, room)) => (u64::from(estimate), u64::from(room)),
            None => (self.surbs_sent.saturating_sub(self.replies_seen), u64::MAX),
        }
    }

    /// Most SURBs the peer can usefully hold for this stream: one per frame of the
    /// receive window it may fill (frames of the largest payload) plus its ack reserve.
    fn surb_ceiling(&self) -> u32 {
        let frames = (self.window as usize).div_ceil(self.frame_payload) as u32;
        frames + ACK_SURB_RESERVE + self.surb_target
    }

    /// How many more SURBs we (the replier) ask the opener for.
    fn surb_request(&self, stock: Option<u32>, now: Instant) -> u16 {
        if self.is_outbound() {
            return 0;
        }
        let bytes = self.pending.len() + self.retransmit_queue.len() * self.frame_payload;
        // One receive window of frames (the ceiling the opener grants a stream) is what
        // the peer's link can carry back per round trip; streams of the same peer share
        // it, or a hundred streams would each ask for a window's worth the link cannot
        // use and the opener's uplink would fill with SURBs instead of its data.
        let peers = u32::from(self.peer_streams.max(1));
        let cap = (self.surb_ceiling() / peers).max(ACK_SURB_RESERVE);
        let need = (bytes.div_ceil(self.frame_payload) as u32).min(cap) + ACK_SURB_RESERVE;
        // Where the network does not report the stock (the real Nym client), estimate
        // it: what we asked for last time, less the replies sent since (each used one).
        // Otherwise every request would ask for the whole need again.
        // An ask counts for a few round trips only: a grant that never came is asked
        // for again.
        let stock = stock.unwrap_or_else(|| {
            let fresh = self
                .last_ask_at
                .is_some_and(|t| t + self.rtt.rto() * 4 > now);
            if fresh {
                u32::from(self.surbs_asked.saturating_sub(self.replies_since_ask))
            } else {
                0
            }
        });
        let share = stock / peers;
        let want = need.saturating_sub(share);
        want.min(u32::from(u16::MAX)) as u16
    }

    fn build_ack(&mut self, stock: Option<u32>, now: Instant) -> Ack {
        // The window, as far as the peer's connection window allows; never less than
        // what was already promised.
        let max_data = (self.consumed + self.window)
            .min(self.advertised_max.saturating_add(self.credit_room))
            .max(self.advertised_max);
        let asked = self.surb_request(stock, now);
        if asked > 0 {
            self.surbs_asked = asked;
            self.replies_since_ask = 0;
            self.last_ask_at = Some(now);
        }
        let mut ack = Ack::new(self.reorder.cumulative_ack().get(), max_data, asked);
        for r in self.reorder.sack_ranges(ext::MAX_SACK_BLOCKS) {
            ack.push_sack(SackBlock {
                start: r.start.get(),
                end: r.end.get(),
            });
        }
        self.advertised_max = max_data;
        self.ack_pending = false;
        self.ack_now = false;
        self.ack_deadline = None;
        self.frames_since_ack = 0;
        self.metrics.acks_sent += 1;
        ack
    }

    fn header(&self, t: MessageType, seq: u32) -> StreamHeader {
        StreamHeader::new(self.id, t, seq)
    }

    fn finish(&mut self, payload: Bytes, surbs: u32) -> OutFrame {
        // Every frame fits the packet it was sized for (retransmissions included), so
        // the packets and SURBs counted per frame are the ones spent.
        debug_assert!(
            payload.len() <= lp_frame::HEADER_LEN + self.frame_payload,
            "frame of {} bytes exceeds the {}-byte frame size",
            payload.len(),
            lp_frame::HEADER_LEN + self.frame_payload
        );
        self.metrics.frames_sent += 1;
        self.metrics.surbs_attached += u64::from(surbs);
        if !self.is_outbound() {
            self.replies_since_ask = self.replies_since_ask.saturating_add(1);
        }
        OutFrame {
            payload,
            reply_surbs: surbs,
        }
    }

    /// The next frame this stream wants to send, if any.
    pub(crate) fn poll_transmit(&mut self, now: Instant, stock: Option<u32>) -> Option<OutFrame> {
        let _enter = self.span.clone().entered();
        if stock.is_some() {
            self.metrics.surbs_available = stock;
        }
        self.maybe_request_surbs(now, stock);
        if let Some(code) = self.need_reset.take() {
            let mut buf = BytesMut::with_capacity(lp_frame::HEADER_LEN + 4);
            buf.put_slice(&self.header(MessageType::Reset, 0).to_bytes());
            Reset { code }.encode(&mut buf);
            let surbs = self.surbs_for(false).min(1);
            return Some(self.finish(buf.freeze(), surbs));
        }
        if self.reset.is_some() {
            return None;
        }
        if self.need_open {
            self.need_open = false;
            self.open_tries += 1;
            self.open_sent_at = Some(now);
            let reserved = if self.local_extended {
                ext::CAP_EXTENDED
            } else {
                0
            };
            let hdr = self.header(MessageType::Open, 0).with_reserved(reserved);
            let surbs = self.surbs_for(true);
            return Some(self.finish(Bytes::copy_from_slice(&hdr.to_bytes()), surbs));
        }
        if self.need_open_ack {
            self.need_open_ack = false;
            let reserved = if self.extended() {
                ext::CAP_EXTENDED
            } else {
                0
            };
            let hdr = self.header(MessageType::OpenAck, 0).with_reserved(reserved);
            return Some(self.finish(Bytes::copy_from_slice(&hdr.to_bytes()), 0));
        }
        if self.need_ping {
            self.need_ping = false;
            let nonce = self.next_ping_nonce;
            self.metrics.pings_sent += 1;
            self.next_ping_nonce = self.next_ping_nonce.wrapping_add(1);
            let hdr = self.header(MessageType::Ping, nonce);
            let surbs = self.surbs_for(false);
            return Some(self.finish(Bytes::copy_from_slice(&hdr.to_bytes()), surbs));
        }
        if let Some(nonce) = self.need_pong.take() {
            let hdr = self.header(MessageType::Pong, nonce);
            let surbs = self.surbs_for(false);
            return Some(self.finish(Bytes::copy_from_slice(&hdr.to_bytes()), surbs));
        }
        if self.surb_starved(stock)
            && (!self.retransmit_queue.is_empty() || self.data_sendable(now) || self.fin_sendable())
        {
            // Keep the reserve for acks; look again shortly or when the opener's next
            // frame (which may carry SURBs) arrives. The ack below asks for more.
            self.surb_blocked_at = Some(now);
            self.metrics.surb_stalls += 1;
            if self.extended() && (self.ack_due(now) || self.surbs_wanted()) {
                return self.poll_ack(now, stock);
            }
            return None;
        }
        while let Some(seq) = self.retransmit_queue.pop_front() {
            let Some(seg) = self.send_buf.get(seq).cloned() else {
                continue;
            };
            self.send_buf.mark_retransmitted(seq, now);
            self.metrics.retransmits += 1;
            tracing::trace!(seq = seq.get(), "retransmit");
            let frame = self.encode_segment(seq, &seg, stock, now);
            let surbs = self.surbs_for(false);
            return Some(self.finish(frame, surbs));
        }
        if self.data_sendable(now) {
            let ack_room = if self.extended() && self.ack_pending {
                self.ack_max_len()
            } else {
                0
            };
            let n = self.pending.len().min(self.frame_payload - ack_room);
            let chunk = self.pending.split_to(n).freeze();
            if self.pending.is_empty() {
                self.pending_since = None;
                self.flush_requested = false;
            } else if !self.flush_requested {
                self.pending_since = Some(now);
            }
            self.send_offset += n as u64;
            let seg = Segment::Data(chunk);
            let seq = self.send_buf.push(seg.clone(), now);
            let frame = self.encode_segment(seq, &seg, stock, now);
            if !self.reliable() {
                // Nothing waits for an ack: the room is free now, so a writer blocked
                // on the send buffer must hear it (a reference peer never acks).
                self.release_sent();
                self.wake_write = true;
            }
            let surbs = self.surbs_for(false);
            return Some(self.finish(frame, surbs));
        }
        if self.fin_sendable() {
            if !self.local_extended || self.peer_kind == PeerKind::Legacy {
                // A reference peer has no FIN: the write side simply ends (and whoever
                // waits in `closed()` hears it).
                self.write_done = true;
                self.all_acked = true;
                self.wake_write = true;
                self.fin_seq = Some(self.send_buf.next_seq());
                return None;
            }
            let seg = Segment::Fin(self.abort_code);
            let seq = self.send_buf.push(seg.clone(), now);
            self.fin_seq = Some(seq);
            let frame = self.encode_segment(seq, &seg, stock, now);
            let surbs = self.surbs_for(false);
            return Some(self.finish(frame, surbs));
        }
        if self.extended() && (self.ack_due(now) || self.surbs_wanted()) {
            return self.poll_ack(now, stock);
        }
        None
    }

    /// A standalone Ack frame.
    fn poll_ack(&mut self, now: Instant, stock: Option<u32>) -> Option<OutFrame> {
        let ack = self.build_ack(stock, now);
        let mut buf = BytesMut::with_capacity(lp_frame::HEADER_LEN + ack.encoded_len());
        buf.put_slice(&self.header(MessageType::Ack, 0).to_bytes());
        ack.encode(&mut buf);
        let surbs = self.surbs_for(false);
        Some(self.finish(buf.freeze(), surbs))
    }

    fn ack_max_len(&self) -> usize {
        Ack::new(0, 0, 0).encoded_len() + 8 * ext::MAX_SACK_BLOCKS
    }

    /// Encodes a Data or Close frame, piggybacking a pending ack when both sides
    /// speak the extensions.
    fn encode_segment(
        &mut self,
        seq: Seq,
        seg: &Segment,
        stock: Option<u32>,
        now: Instant,
    ) -> Bytes {
        let (t, body_len) = match seg {
            Segment::Data(b) => (MessageType::Data, b.len()),
            Segment::Fin(code) => (
                MessageType::Close,
                Close { error_code: *code }.encoded_len(),
            ),
        };
        // Piggyback only what fits the packet the frame was sized for: a segment cut
        // to a full frame (a retransmission, say) sends its ack separately instead of
        // spilling into a second Sphinx packet.
        let piggyback = self.extended()
            && self.ack_pending
            && body_len + self.ack_max_len() <= self.frame_payload;
        let ack = piggyback.then(|| self.build_ack(stock, now));
        let ack_len = ack.as_ref().map_or(0, Ack::encoded_len);
        let mut hdr = self.header(t, seq.get());
        if ack.is_some() {
            hdr = hdr.with_reserved(ext::FLAG_ACK);
        }
        let mut buf = BytesMut::with_capacity(lp_frame::HEADER_LEN + ack_len + body_len);
        buf.put_slice(&hdr.to_bytes());
        if let Some(a) = &ack {
            a.encode(&mut buf);
        }
        match seg {
            Segment::Data(b) => buf.put_slice(b),
            Segment::Fin(code) => Close { error_code: *code }.encode(&mut buf),
        }
        buf.freeze()
    }
}

fn reset_error(r: ResetInfo, doing: &str) -> io::Error {
    if r.by_peer {
        StreamError::io(
            io::ErrorKind::ConnectionReset,
            Some(r.code),
            format!(
                "the peer reset the stream (code {}) while we were {doing}",
                r.code
            ),
        )
    } else {
        StreamError::io(
            io::ErrorKind::ConnectionAborted,
            Some(r.code),
            format!(
                "the stream was reset locally (code {}); open a new stream",
                r.code
            ),
        )
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// An idle stream's memory is mostly this struct (its buffers allocate nothing
    /// while empty); the table boxes it, so hash-map slack does not multiply it.
    /// Guard against it creeping up: the per-stream budget is 2 KiB.
    #[test]
    fn stream_state_stays_small() {
        let size = std::mem::size_of::<StreamState<[u8; 32], [u8; 16]>>();
        assert!(size <= 1280, "StreamState grew to {size} bytes");
    }
}
