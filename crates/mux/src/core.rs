//! The sans-IO protocol core: the client-level stream table and router.
//!
//! Input: received messages, application actions and the current time. Output:
//! messages to transmit, events for the application and the next timer deadline.
//! No tokio, no clock, no I/O: the driver (or a test) moves bytes and time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::Hash;
use std::io;
use std::time::Instant;

use bytes::Bytes;
use lp_frame::ext::{self, reset_code, Reset};
use lp_frame::{FrameKind, MessageType, OwnedStreamFrame, RawFrame, StreamHeader, StreamId};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::config::MuxConfig;
use crate::error::OpenError;
use crate::id_map::IdMap;
use crate::metrics::{ClientMetrics, StreamMetrics};
use crate::orphans::{HoldOutcome, Orphans};
use crate::peer::{PeerLimits, Peers};
use crate::stream::{ReadOutcome, StreamState, WriteOutcome};
use crate::transport::{Destination, Inbound};

/// Most queued stateless control frames (resets answering refused or unknown streams);
/// beyond it they are dropped, since the peer's own timers recover.
const MAX_CONTROL_QUEUE: usize = 256;
/// Most non-stream messages waiting for the application.
const MAX_PLAIN_QUEUE: usize = 1024;

/// A local handle on one stream in the table (not the wire id: two peers may pick the
/// same wire id, and we may be both ends of a stream to ourselves).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalId(u64);

/// One message to hand to the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit<A, T> {
    /// Where it goes.
    pub to: Destination<A, T>,
    /// The encoded frame.
    pub payload: Bytes,
    /// Reply SURBs to attach (only for [`Destination::Address`]).
    pub reply_surbs: u32,
}

/// Something the application should learn about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A peer opened a stream; take it with [`Core::accept`].
    Incoming,
    /// The stream has bytes, EOF or an error to read.
    Readable(LocalId),
    /// The stream can take more bytes (or its writes now fail).
    Writable(LocalId),
    /// The stream's `OpenAck` arrived (or it failed before that).
    Established(LocalId),
    /// A non-stream message arrived; take it with [`Core::take_plain`].
    Plain,
    /// An unacknowledged open finished, so [`Core::can_open`] may be true again.
    OpenRoom,
}

/// Result of an application write through the core.
#[derive(Debug)]
pub enum Write {
    /// This many bytes were taken.
    Accepted(usize),
    /// No room: wait for [`Event::Writable`].
    Blocked,
    /// The write side failed.
    Failed(io::Error),
}

impl From<ReadOutcome> for Read {
    fn from(o: ReadOutcome) -> Self {
        match o {
            ReadOutcome::Data(n) => Read::Data(n),
            ReadOutcome::Eof => Read::Eof,
            ReadOutcome::Pending => Read::Pending,
            ReadOutcome::Failed(e) => Read::Failed(e),
        }
    }
}

/// Result of an application read through the core.
#[derive(Debug)]
pub enum Read {
    /// This many bytes were copied.
    Data(usize),
    /// End of stream.
    Eof,
    /// Nothing yet: wait for [`Event::Readable`].
    Pending,
    /// The read side failed.
    Failed(io::Error),
}

/// The protocol core of one client: every stream, the accept backlog, orphans,
/// budgets and timers.
///
/// # Call order
///
/// The core does no I/O and reads no clock; whoever drives it (the tokio
/// [`Driver`](crate::Driver), or a test) repeats, with `now` from one clock that never
/// goes backwards:
///
/// 1. [`Core::handle_inbound`] for each message the network delivered;
/// 2. [`Core::handle_timeout`] once, with the current time (calling it early is
///    harmless: timers not yet due are left alone);
/// 3. [`Core::poll_transmit`] while the transport can take a message, until `None`;
/// 4. [`Core::poll_event`] until `None`, waking the application;
/// 5. [`Core::poll_timeout`], then sleep until that instant or until a message or an
///    application action arrives.
///
/// Application actions ([`Core::open`], [`Core::write`], [`Core::read`],
/// [`Core::shutdown`], …) may come between any two steps; after one, continue from
/// step 3.
///
/// # Timer contract
///
/// After `handle_timeout(now)`, [`Core::poll_timeout`] returns `None` or an instant
/// strictly later than `now`: a timer that fired either did its work or moved on
/// (work that waits only for the transport waits in the transmit queue, not on a
/// timer). A driver can therefore sleep on the deadline without spinning. Debug
/// builds assert this at the end of every `handle_timeout`.
pub struct Core<A, T> {
    cfg: MuxConfig,
    /// What every stream shares, derived once from `cfg`.
    settings: std::sync::Arc<crate::stream::StreamSettings>,
    /// Boxed: an idle stream costs its state once, not times the map's spare capacity.
    streams: IdMap<LocalId, Box<StreamState<A, T>>>,
    outbound: IdMap<StreamId, LocalId>,
    inbound: HashMap<(T, StreamId), LocalId>,
    /// How many accepted streams use each wire id (under any sender tag).
    inbound_ids: HashMap<StreamId, u32>,
    /// Outbound opens not yet acknowledged by the peer.
    pending_opens: usize,
    next_local: u64,
    rng: ChaCha12Rng,
    /// Streams waiting for the application to accept them, with when they arrived.
    accept_queue: VecDeque<(LocalId, Instant)>,
    /// Whether an application accepts streams; without one an `Open` is refused.
    listening: bool,
    /// Peer-opened streams that left the table recently, until when they are
    /// remembered (TIME_WAIT): a late retransmitted `Open` is not a new stream.
    /// The value tells whether the `Open` was refused (then a repeated `Open` is
    /// answered with `Reset(REFUSED)` again, in case the first was lost).
    recently_closed: HashMap<(T, StreamId), (Instant, bool)>,
    recently_closed_order: VecDeque<((T, StreamId), Instant)>,
    /// Stateless `Reset` answers sent in the current one-second window.
    stateless_replies: Option<(Instant, u32)>,
    orphans: Orphans<T>,
    /// Per-peer sessions: streams, backlog, orphans and the connection receive window.
    peers: Peers<Destination<A, T>>,
    ready: VecDeque<LocalId>,
    /// Listener side: per peer, the streams whose payload waits for reply SURBs, in
    /// the order they began to wait. They take turns as the stock allows, so under
    /// SURB scarcity no stream of a peer starves while its siblings send.
    surb_waiters: HashMap<Destination<A, T>, VecDeque<LocalId>>,
    /// Waiters given their turn, served before the ready queue; no new turns are given
    /// until these were served (each took a SURB the stock count already promised).
    surb_turns: VecDeque<LocalId>,
    timers: BinaryHeap<Reverse<(Instant, LocalId)>>,
    control: VecDeque<Transmit<A, T>>,
    events: VecDeque<Event>,
    plain: VecDeque<Inbound<T>>,
    /// Inbound bytes held by streams (the sum of what each last counted); orphan data
    /// is counted by the orphan store.
    stream_inbound: usize,
    live_inbound: usize,
    metrics: ClientMetrics,
}

impl<A, T> Core<A, T>
where
    A: Copy + Eq + Hash + std::fmt::Debug,
    T: Copy + Eq + Hash + std::fmt::Debug,
{
    /// A core with the given configuration.
    pub fn new(cfg: MuxConfig) -> Self {
        let rng = match cfg.id_seed {
            Some(seed) => ChaCha12Rng::seed_from_u64(seed),
            None => ChaCha12Rng::seed_from_u64(os_seed()),
        };
        let per_orphan = crate::stream::INITIAL_CREDIT as usize + cfg.frame_payload();
        // The orphan store's share of the budget: enough for every id it may hold, at
        // most an eighth of the budget.
        let orphan_share = (cfg.max_orphan_streams * per_orphan).min(cfg.inbound_budget / 8);
        let orphans = Orphans::new(
            cfg.max_orphan_streams,
            cfg.max_orphan_frames,
            per_orphan,
            orphan_share,
            cfg.orphan_ttl,
        );
        let peers = Peers::new(PeerLimits {
            window: cfg.peer_receive_window,
            // Orphan data is held beside promised credit: its share is set aside, so
            // that no promise is ever broken by the budget.
            budget: (cfg.inbound_budget - orphan_share) as u64,
            max_streams: cfg.max_streams_per_peer,
            max_backlog: cfg.max_backlog_per_peer,
            backlog: cfg.accept_backlog,
            max_orphan_ids: cfg.max_orphan_streams_per_peer,
            max_peers: cfg.max_peers,
            initial_credit: crate::stream::INITIAL_CREDIT,
        });
        Self {
            settings: std::sync::Arc::new(crate::stream::StreamSettings::new(&cfg)),
            cfg,
            streams: IdMap::default(),
            outbound: IdMap::default(),
            inbound: HashMap::new(),
            inbound_ids: HashMap::new(),
            pending_opens: 0,
            next_local: 0,
            rng,
            accept_queue: VecDeque::new(),
            listening: true,
            recently_closed: HashMap::new(),
            recently_closed_order: VecDeque::new(),
            stateless_replies: None,
            orphans,
            peers,
            ready: VecDeque::new(),
            surb_waiters: HashMap::new(),
            surb_turns: VecDeque::new(),
            timers: BinaryHeap::new(),
            control: VecDeque::new(),
            events: VecDeque::new(),
            plain: VecDeque::new(),
            stream_inbound: 0,
            live_inbound: 0,
            metrics: ClientMetrics::default(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &MuxConfig {
        &self.cfg
    }

    fn alloc_local(&mut self) -> LocalId {
        self.next_local += 1;
        LocalId(self.next_local)
    }

    // ----- application actions -----------------------------------------------------

    /// Opens a stream to `to`. Writes may start at once; the `Open` goes out first.
    /// `fixed_surbs` attaches exactly that many reply SURBs to every message of the
    /// stream instead of the adaptive policy.
    pub fn open(
        &mut self,
        now: Instant,
        to: A,
        fixed_surbs: Option<u32>,
    ) -> Result<(LocalId, StreamId), OpenError> {
        if !self.can_open() {
            return Err(OpenError::TooManyPendingOpens {
                limit: self.cfg.max_pending_opens.max(1),
            });
        }
        // The peer may send the initial credit at once: like any promise, it must fit
        // the peer's window and the budget.
        let reserve = StreamState::<A, T>::initial_reservation(!self.cfg.legacy_mode, &self.cfg);
        if let Err(r) = self.peers.admit(&Destination::Address(to), reserve) {
            return Err(OpenError::Limit { reason: r });
        }
        let mut attempts = 0;
        let id = loop {
            attempts += 1;
            let id = StreamId::new(self.rng.next_u64());
            if !self.outbound.contains_key(&id) {
                break id;
            }
            if attempts >= 16 {
                return Err(OpenError::NoFreeId { attempts });
            }
        };
        let local = self.alloc_local();
        let state = StreamState::new_outbound(id, to, fixed_surbs, now, &self.cfg, &self.settings);
        tracing::debug!(stream = %id, "open");
        self.peers
            .update(Destination::Address(to), |p| p.streams += 1);
        self.streams.insert(local, Box::new(state));
        self.outbound.insert(id, local);
        self.pending_opens += 1;
        self.metrics.streams_opened += 1;
        self.after(local, now);
        Ok((local, id))
    }

    /// Whether another open fits under `max_pending_opens`.
    pub fn can_open(&self) -> bool {
        self.pending_opens < self.cfg.max_pending_opens.max(1)
    }

    /// Tells the core whether an application accepts streams (a new core does).
    /// While nobody does, an `Open` is refused at once with `Reset(REFUSED)`; turning
    /// it off also refuses every stream still waiting in the backlog.
    pub fn set_listening(&mut self, now: Instant, listening: bool) {
        self.listening = listening;
        if !listening {
            while let Some((local, _)) = self.accept_queue.pop_front() {
                self.refuse_backlogged(now, local);
            }
        }
    }

    /// Whether an application accepts streams (see [`Core::set_listening`]).
    pub fn is_listening(&self) -> bool {
        self.listening
    }

    /// Ends a stream that was never accepted: the peer is told `Reset(REFUSED)` and
    /// the stream leaves the table once that went out.
    fn refuse_backlogged(&mut self, now: Instant, local: LocalId) {
        self.metrics.opens_refused += 1;
        if let Some(s) = self.streams.get(&local) {
            self.peers.update(s.peer, |p| p.backlog -= 1);
        }
        self.with_stream(now, local, |s| {
            s.reset(reset_code::REFUSED);
            s.drop_handle(true, true);
        });
    }

    /// Takes the next stream a peer opened, if any.
    pub fn accept(&mut self) -> Option<(LocalId, StreamId)> {
        while let Some((local, _)) = self.accept_queue.pop_front() {
            if let Some(s) = self.streams.get(&local) {
                self.metrics.streams_accepted += 1;
                let id = s.id;
                self.peers.update(s.peer, |p| p.backlog -= 1);
                return Some((local, id));
            }
        }
        None
    }

    /// Number of streams waiting in the accept backlog.
    pub fn backlog(&self) -> usize {
        self.accept_queue.len()
    }

    /// Writes application bytes into a stream.
    pub fn write(&mut self, now: Instant, local: LocalId, data: &[u8]) -> Write {
        let Some(s) = self.streams.get_mut(&local) else {
            return Write::Failed(gone());
        };
        let out = match s.write(data, now) {
            WriteOutcome::Accepted(n) => Write::Accepted(n),
            WriteOutcome::Blocked => Write::Blocked,
            WriteOutcome::Failed(e) => Write::Failed(e),
        };
        self.after(local, now);
        out
    }

    /// Asks for buffered bytes to be sent now instead of waiting to coalesce.
    /// Returns whether the coalescing buffer is already empty.
    pub fn flush(&mut self, now: Instant, local: LocalId) -> bool {
        let Some(s) = self.streams.get_mut(&local) else {
            return true;
        };
        s.flush();
        let done = s.flushed();
        self.after(local, now);
        done
    }

    /// Shuts the write side down: the FIN follows the buffered bytes. Returns
    /// whether the FIN has been sent.
    pub fn shutdown(&mut self, now: Instant, local: LocalId) -> bool {
        let Some(s) = self.streams.get_mut(&local) else {
            return true;
        };
        s.shutdown();
        let done = s.shutdown_complete();
        self.after(local, now);
        done
    }

    /// Aborts a stream at once with a reason code.
    pub fn reset(&mut self, now: Instant, local: LocalId, code: u32) {
        if let Some(s) = self.streams.get_mut(&local) {
            s.reset(code);
            self.after(local, now);
        }
    }

    /// Sends every write at once (`true`) or coalesces small writes (`false`).
    pub fn set_nodelay(&mut self, now: Instant, local: LocalId, nodelay: bool) {
        if let Some(s) = self.streams.get_mut(&local) {
            s.set_nodelay(nodelay);
            self.after(local, now);
        }
    }

    /// Reads from a stream into `buf`.
    pub fn read(&mut self, now: Instant, local: LocalId, buf: &mut [u8]) -> Read {
        self.with_stream(now, local, |s| s.read(buf).into())
            .unwrap_or(Read::Eof)
    }

    /// Reads one chunk as it arrived: `Ok(None)` is EOF, `Err(Read::Pending)` means wait.
    pub fn read_chunk(&mut self, now: Instant, local: LocalId) -> Result<Option<Bytes>, Read> {
        self.with_stream(now, local, |s| s.read_chunk().map_err(Read::from))
            .unwrap_or(Ok(None))
    }

    /// The application dropped the read half, the write half, or both.
    pub fn drop_handle(&mut self, now: Instant, local: LocalId, read: bool, write: bool) {
        self.with_stream(now, local, |s| s.drop_handle(read, write));
    }

    /// Runs an application action on one stream, keeping the client-wide inbound byte
    /// count exact and doing the bookkeeping after it. `None` if the stream is gone.
    fn with_stream<R>(
        &mut self,
        now: Instant,
        local: LocalId,
        f: impl FnOnce(&mut StreamState<A, T>) -> R,
    ) -> Option<R> {
        let s = self.streams.get_mut(&local)?;
        let out = f(s);
        self.after(local, now);
        Some(out)
    }

    /// Whether the stream finished its open handshake; `Err` if it died before.
    pub fn established(&self, local: LocalId) -> Result<bool, io::Error> {
        match self.streams.get(&local) {
            None => Err(gone()),
            Some(s) => match s.establish_error() {
                Some(e) => Err(e),
                None => Ok(s.is_established()),
            },
        }
    }

    /// The error a flush or shutdown of the stream reports: the write side was reset
    /// or failed. `None` while it works, after a clean finish, or for a removed stream.
    pub fn send_error(&self, local: LocalId) -> Option<io::Error> {
        self.streams.get(&local).and_then(|s| s.send_error())
    }

    /// Whether every byte written to the stream and its FIN were acknowledged by the
    /// peer; `Err` if the write side was reset or failed first.
    pub fn send_finished(&self, local: LocalId) -> Result<bool, io::Error> {
        match self.streams.get(&local) {
            // Removed: it only leaves the table once its sending is over.
            None => Ok(true),
            Some(s) => s.send_finished(),
        }
    }

    /// Bytes written to any stream that the peers have not acknowledged yet (unsent
    /// ones included). Walks every stream: for draining at shutdown, not a hot path.
    pub fn unacknowledged_bytes(&self) -> usize {
        self.streams.values().map(|s| s.send_outstanding()).sum()
    }

    /// Whether the idle timeout reaped the stream.
    pub fn is_reaped(&self, local: LocalId) -> bool {
        self.streams.get(&local).is_some_and(|s| s.is_reaped())
    }

    /// The wire id of a stream.
    pub fn stream_id(&self, local: LocalId) -> Option<StreamId> {
        self.streams.get(&local).map(|s| s.id)
    }

    /// Counters of one stream.
    pub fn stream_metrics(&self, local: LocalId) -> Option<StreamMetrics> {
        self.streams.get(&local).map(|s| s.metrics())
    }

    /// The peer of a stream: the address we opened it to, or the sender tag of the
    /// opener that opened it to us.
    pub fn stream_peer(&self, local: LocalId) -> Option<Destination<A, T>> {
        self.streams.get(&local).map(|s| s.peer)
    }

    /// Counters of the whole client.
    pub fn metrics(&self) -> ClientMetrics {
        let mut m = self.metrics;
        m.inbound_bytes = self.inbound_bytes() as u64;
        m.live_streams = self.streams.len() as u64;
        m
    }

    /// Takes the next non-stream message.
    pub fn take_plain(&mut self) -> Option<Inbound<T>> {
        self.plain.pop_front()
    }

    /// Bytes buffered inbound across all streams and orphans (bounded by the budget).
    pub fn inbound_bytes(&self) -> usize {
        self.stream_inbound + self.orphans.bytes()
    }

    /// Number of peers that hold state with us (streams or orphan data).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Credit promised to the peer with this sender tag (inbound streams) and not yet
    /// read: what it may make us hold, bounded by `peer_receive_window`.
    pub fn peer_credit(&self, peer: Destination<A, T>) -> u64 {
        self.peers.get(&peer).credit
    }

    /// Credit promised over all peers and not yet read (bounded by the inbound budget
    /// less the orphan store's share).
    pub fn promised_credit(&self) -> u64 {
        self.peers.total_credit()
    }

    /// Number of streams in the table.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    // ----- network input -----------------------------------------------------------

    fn budget_left(&self) -> usize {
        self.cfg.inbound_budget.saturating_sub(self.inbound_bytes())
    }

    /// Handles one message from the network.
    pub fn handle_inbound(&mut self, now: Instant, msg: Inbound<T>) {
        let raw_kind = RawFrame::parse(&msg.payload).map(|r| r.kind);
        if raw_kind != Ok(FrameKind::SphinxStream) {
            // Not a stream frame: other LP kinds and bytes without an LP header go to
            // the plain-message channel.
            self.push_plain(msg);
            return;
        }
        let tag = msg.sender_tag;
        let frame = match OwnedStreamFrame::parse(msg.payload) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "malformed stream frame dropped");
                self.metrics.malformed_frames += 1;
                return;
            }
        };
        let header = frame.header;
        match tag {
            None => self.handle_for_outbound(now, header, frame.payload),
            Some(tag) => self.handle_for_inbound(now, tag, header, frame.payload),
        }
    }

    fn push_plain(&mut self, msg: Inbound<T>) {
        if self.plain.len() >= MAX_PLAIN_QUEUE {
            self.metrics.plain_messages_dropped += 1;
            return;
        }
        self.metrics.plain_messages += 1;
        self.plain.push_back(msg);
        self.events.push_back(Event::Plain);
    }

    /// A frame without a sender tag: a reply on a stream we opened.
    fn handle_for_outbound(&mut self, now: Instant, header: StreamHeader, payload: Bytes) {
        let Some(&local) = self.outbound.get(&header.stream_id) else {
            if self.inbound_ids.contains_key(&header.stream_id) {
                // The id belongs to a stream a peer opened, and frames for it must come
                // under that peer's sender tag.
                self.metrics.wrong_sender += 1;
            } else {
                self.metrics.unknown_stream_frames += 1;
            }
            return;
        };
        if header.msg_type == MessageType::Open {
            // An Open must come with a sender tag; without one we could never answer.
            self.metrics.wrong_sender += 1;
            return;
        }
        self.deliver(now, local, header, payload);
    }

    fn handle_for_inbound(&mut self, now: Instant, tag: T, header: StreamHeader, payload: Bytes) {
        let key = (tag, header.stream_id);
        if let Some(&local) = self.inbound.get(&key) {
            if header.msg_type == MessageType::Open {
                self.metrics.duplicate_opens += 1;
            }
            self.deliver(now, local, header, payload);
            return;
        }
        if let Some(&(until, refused)) = self.recently_closed.get(&key) {
            if until > now {
                // A late frame of a stream that ended (a retransmitted Open, a FIN resent
                // after our linger): never a new stream.
                if header.msg_type == MessageType::Open {
                    self.metrics.duplicate_opens += 1;
                    if refused {
                        // Our Reset(REFUSED) may have been lost: say it again.
                        self.answer_reset(now, tag, header.stream_id, reset_code::REFUSED);
                    }
                } else {
                    self.metrics.unknown_stream_frames += 1;
                }
                return;
            }
        }
        match header.msg_type {
            MessageType::Open => self.on_open(now, tag, header),
            _ if self.inbound_ids.contains_key(&header.stream_id) => {
                // A live stream with this id is bound to another sender tag: this frame
                // is not from its opener.
                self.metrics.wrong_sender += 1;
            }
            MessageType::Data | MessageType::Close => self.hold_orphan(now, key, header, payload),
            MessageType::Ack | MessageType::Ping => {
                // The peer believes in a stream we do not have (our Reset may have been
                // lost): tell it, so it does not wait for its keepalive to fail.
                self.metrics.unknown_stream_frames += 1;
                if self.answer_reset(now, tag, header.stream_id, reset_code::UNKNOWN_STREAM) {
                    self.metrics.unknown_stream_resets += 1;
                }
            }
            _ => {
                // Resets, pongs, open-acks for streams we do not know: nothing to do
                // (answering a Reset with a Reset could loop).
                self.metrics.unknown_stream_frames += 1;
            }
        }
    }

    /// Remembers a peer-opened stream that left the table, for twice the largest RTO,
    /// in a bounded memory (the oldest entries go first).
    fn remember_closed(&mut self, key: (T, StreamId), now: Instant, refused: bool) {
        const MAX_RECENTLY_CLOSED: usize = 4096;
        let until = now + self.cfg.max_rto * 2;
        while let Some(&(old, at)) = self.recently_closed_order.front() {
            if at > now && self.recently_closed_order.len() < MAX_RECENTLY_CLOSED {
                break;
            }
            self.recently_closed_order.pop_front();
            if self
                .recently_closed
                .get(&old)
                .is_some_and(|&(u, _)| u == at)
            {
                self.recently_closed.remove(&old);
            }
        }
        self.recently_closed.insert(key, (until, refused));
        self.recently_closed_order.push_back((key, until));
    }

    /// Queues a stateless `Reset` for a stream we do not have (an unknown stream, or an
    /// `Open` we refused before), at most `STATELESS_RESETS_PER_SECOND` a second: a
    /// flood costs us nothing more. Returns whether it was queued.
    fn answer_reset(&mut self, now: Instant, tag: T, id: StreamId, code: u32) -> bool {
        const STATELESS_RESETS_PER_SECOND: u32 = 16;
        if self.cfg.legacy_mode || self.control.len() >= MAX_CONTROL_QUEUE {
            return false;
        }
        let (since, sent) = self.stateless_replies.get_or_insert((now, 0));
        if now.saturating_duration_since(*since) >= std::time::Duration::from_secs(1) {
            *since = now;
            *sent = 0;
        }
        if *sent >= STATELESS_RESETS_PER_SECOND {
            return false;
        }
        *sent += 1;
        self.control
            .push_back(reset_transmit(id, Destination::Reply(tag), code));
        true
    }

    /// Holds a frame that overtook its `Open`, within the orphan store's bounds and
    /// the sending peer's share of it.
    fn hold_orphan(
        &mut self,
        now: Instant,
        key: (T, StreamId),
        header: StreamHeader,
        payload: Bytes,
    ) {
        let peer = Destination::Reply(key.0);
        let new_id = !self.orphans.contains(&key);
        if new_id {
            self.expire_orphans(now);
            if self.peers.full_for(&peer) {
                // Beyond `max_peers`, a peer that holds nothing but orphan data gives
                // way: the oldest such entry is evicted (only for a new peer; a peer at
                // its own orphan limit evicts nobody).
                let peers = &self.peers;
                let evicted = self.orphans.evict_oldest_peer(|tag| {
                    let p = peers.get(&Destination::Reply(*tag));
                    p.streams == 0 && *tag != key.0
                });
                if let Some((tag, ids, frames)) = evicted {
                    tracing::debug!(?tag, ids, "orphan-only peer evicted");
                    self.metrics.orphan_frames_dropped += frames as u64;
                    self.peers
                        .update(Destination::Reply(tag), |p| p.orphan_ids -= ids);
                }
            }
            if !self.peers.may_hold_orphans(&peer) {
                self.metrics.orphan_frames_dropped += 1;
                return;
            }
        }
        let budget = self.budget_left();
        match self.orphans.hold(key, header, payload, now, budget) {
            HoldOutcome::Held => {
                self.metrics.orphan_frames_held += 1;
                if new_id {
                    self.peers.update(peer, |p| p.orphan_ids += 1);
                }
            }
            HoldOutcome::Dropped => self.metrics.orphan_frames_dropped += 1,
        }
    }

    /// Takes the orphan frames held for a stream, keeping the counts exact.
    fn take_orphans(&mut self, key: &(T, StreamId)) -> Vec<crate::orphans::HeldFrame> {
        let held = self.orphans.take(key);
        if !held.is_empty() {
            self.peers
                .update(Destination::Reply(key.0), |p| p.orphan_ids -= 1);
        }
        held
    }

    /// Drops orphan data past its time-to-live, keeping the counts exact.
    fn expire_orphans(&mut self, now: Instant) {
        let (dropped, tags) = self.orphans.expire(now);
        if tags.is_empty() {
            return;
        }
        self.metrics.orphan_frames_dropped += dropped as u64;
        for tag in tags {
            self.peers
                .update(Destination::Reply(tag), |p| p.orphan_ids -= 1);
        }
    }

    /// Answers an `Open` we do not take with `Reset(REFUSED)` and drops what the
    /// peer sent ahead of it.
    fn refuse_open(&mut self, now: Instant, tag: T, id: StreamId, why: &str) {
        tracing::debug!(stream = %id, why, "open refused");
        self.metrics.opens_refused += 1;
        // Frames following a refused Open are dropped, not held as orphans.
        self.remember_closed((tag, id), now, true);
        let _ = self.take_orphans(&(tag, id));
        if !self.cfg.legacy_mode && self.control.len() < MAX_CONTROL_QUEUE {
            self.control.push_back(reset_transmit(
                id,
                Destination::Reply(tag),
                reset_code::REFUSED,
            ));
        }
    }

    fn on_open(&mut self, now: Instant, tag: T, header: StreamHeader) {
        let id = header.stream_id;
        if !self.listening {
            self.refuse_open(now, tag, id, "nobody accepts streams (no listener)");
            return;
        }
        if self.accept_queue.len() >= self.cfg.accept_backlog
            || self.live_inbound >= self.cfg.max_inbound_streams
        {
            self.refuse_open(now, tag, id, "backlog or stream limit full");
            return;
        }
        let peer_extended = header.reserved & ext::CAP_EXTENDED != 0;
        // The credit the new stream holds from the start must fit the peer's window
        // and the client-wide budget: a promise we could not keep is not made.
        let reserve = StreamState::<A, T>::initial_reservation(peer_extended, &self.cfg);
        if let Err(r) = self.peers.admit(&Destination::Reply(tag), reserve) {
            self.metrics.peer_limit_refusals += 1;
            self.refuse_open(now, tag, id, &r.to_string());
            return;
        }
        let local = self.alloc_local();
        let state =
            StreamState::new_inbound(id, tag, peer_extended, now, &self.cfg, &self.settings);
        tracing::debug!(stream = %id, peer_extended, "incoming stream");
        self.streams.insert(local, Box::new(state));
        self.inbound.insert((tag, id), local);
        *self.inbound_ids.entry(id).or_insert(0) += 1;
        self.live_inbound += 1;
        self.peers.update(Destination::Reply(tag), |p| {
            p.streams += 1;
            p.backlog += 1;
        });
        self.accept_queue.push_back((local, now));
        self.events.push_back(Event::Incoming);
        // Count its credit before replaying what overtook the Open.
        self.after(local, now);
        let held = self.take_orphans(&(tag, id));
        for f in held {
            self.deliver(now, local, f.header, f.payload);
        }
        self.after(local, now);
    }

    fn deliver(&mut self, now: Instant, local: LocalId, header: StreamHeader, payload: Bytes) {
        let budget = self.budget_left();
        if matches!(header.msg_type, MessageType::Data | MessageType::Close)
            && payload.len() > budget
        {
            // The stream refuses it; count why.
            self.metrics.budget_refusals += 1;
        }
        let Some(s) = self.streams.get_mut(&local) else {
            return;
        };
        let reply = matches!(s.peer, Destination::Address(_));
        // Liveness needs the peer's last-heard time only coarsely: a stream heard
        // within the last 100 ms has already told its peer's session (saves a lookup
        // per frame). Replies are always counted (each used one of our SURBs).
        let recently = s.last_heard().is_some_and(|t| {
            now.saturating_duration_since(t) < std::time::Duration::from_millis(100)
        });
        if reply || !recently {
            self.peers.heard(&s.peer, now, reply);
        }
        // Per-peer figures a frame may need, looked up only for the frames that use
        // them (an OpenAck may reveal a reference peer; an ack may ask for SURBs).
        if header.msg_type == MessageType::OpenAck {
            s.credit_room = self.peers.growth_room(&s.peer, u64::from(s.counted_credit));
        }
        let carries_ack =
            header.msg_type == MessageType::Ack || header.reserved & lp_frame::ext::FLAG_ACK != 0;
        if reply && carries_ack {
            s.peer_surbs = Some(peer_surbs(&self.peers, &s.peer, &self.cfg));
        }
        s.on_frame(&header, payload, now, budget);
        self.after(local, now);
    }

    // ----- output --------------------------------------------------------------------

    /// The next message to send. `surb_stock` tells, where the network knows it, how
    /// many reply SURBs we hold for a sender tag. Call repeatedly while the transport
    /// is ready; `None` means nothing to send now.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        surb_stock: &dyn Fn(&T) -> Option<u32>,
    ) -> Option<Transmit<A, T>> {
        if let Some(t) = self.control.pop_front() {
            return Some(t);
        }
        if self.surb_turns.is_empty() && !self.surb_waiters.is_empty() {
            self.release_surb_waiters(surb_stock);
        }
        while let Some((local, turn)) = self
            .surb_turns
            .pop_front()
            .map(|l| (l, true))
            .or_else(|| self.ready.pop_front().map(|l| (l, false)))
        {
            let Some(s) = self.streams.get_mut(&local) else {
                continue;
            };
            if !turn {
                s.in_ready = false;
            }
            let stock = match s.peer {
                Destination::Reply(tag) => surb_stock(&tag),
                Destination::Address(_) => None,
            };
            // Growth is granted only in acks: look the peer's room up only for a
            // stream that may build one now (none: no growth this time).
            s.credit_room = if s.may_ack() {
                self.peers.growth_room(&s.peer, u64::from(s.counted_credit))
            } else {
                0
            };
            match s.peer {
                Destination::Address(_) => {
                    s.peer_surbs = Some(peer_surbs(&self.peers, &s.peer, &self.cfg));
                }
                Destination::Reply(_) if stock.is_some() => {
                    s.peer_streams = u16::try_from(self.peers.get(&s.peer).streams)
                        .unwrap_or(u16::MAX)
                        .max(1);
                }
                Destination::Reply(_) => {}
            }
            let frame = s.poll_transmit(now, stock);
            let to = s.peer;
            if let Some(f) = &frame {
                if f.reply_surbs > 0 {
                    self.peers.surbs_sent(&to, f.reply_surbs);
                }
            }
            self.after(local, now);
            if let Some(f) = frame {
                return Some(Transmit {
                    to,
                    payload: f.payload,
                    reply_surbs: f.reply_surbs,
                });
            }
        }
        None
    }

    /// Gives SURB waiters their turn, oldest first, as far as each peer's stock above
    /// the ack reserve goes: each released stream is polled before the ready queue and
    /// sends one frame before it may wait again at the back.
    fn release_surb_waiters(&mut self, surb_stock: &dyn Fn(&T) -> Option<u32>) {
        let mut released = Vec::new();
        self.surb_waiters.retain(|peer, queue| {
            let stock = match peer {
                Destination::Reply(tag) => surb_stock(tag),
                Destination::Address(_) => None,
            };
            let mut free = stock.map_or(usize::MAX, |n| {
                n.saturating_sub(crate::stream::ACK_SURB_RESERVE) as usize
            });
            while free > 0 {
                let Some(local) = queue.pop_front() else {
                    break;
                };
                if let Some(s) = self.streams.get_mut(&local) {
                    if s.in_surb_wait {
                        s.surb_release();
                        released.push(local);
                        free -= 1;
                    }
                }
            }
            !queue.is_empty()
        });
        self.surb_turns.extend(released);
    }

    /// The next application event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Core::handle_timeout`] should next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Drop stale heap entries so the answer is a real deadline.
        while let Some(Reverse((at, local))) = self.timers.peek().copied() {
            match self.streams.get(&local) {
                Some(s) if s.scheduled == Some(at) => break,
                _ => {
                    self.timers.pop();
                }
            }
        }
        let stream_deadline = self.timers.peek().map(|Reverse((at, _))| *at);
        let backlog_expiry = self
            .accept_queue
            .front()
            .and_then(|&(_, since)| since.checked_add(self.cfg.accept_timeout));
        [stream_deadline, self.orphans.next_expiry(), backlog_expiry]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_orphans(now);
        // Streams nobody accepted in time are refused (the queue is in arrival order).
        while let Some(&(local, since)) = self.accept_queue.front() {
            if since
                .checked_add(self.cfg.accept_timeout)
                .is_none_or(|d| d > now)
            {
                break;
            }
            self.accept_queue.pop_front();
            tracing::debug!(?local, "backlog entry aged out unaccepted");
            self.refuse_backlogged(now, local);
        }
        // Collect first: handling a timer may schedule a new one that is due at once,
        // and that one belongs to the next round.
        let mut due = Vec::new();
        while let Some(Reverse((at, local))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(s) = self.streams.get_mut(&local) {
                if s.scheduled == Some(at) {
                    s.scheduled = None;
                    due.push(local);
                }
            }
        }
        for local in due {
            if let Some(s) = self.streams.get_mut(&local) {
                s.peer_heard = self.peers.get(&s.peer).last_heard;
                s.on_timeout(now);
                self.after(local, now);
            }
        }
        #[cfg(debug_assertions)]
        if let Some(next) = self.poll_timeout() {
            debug_assert!(
                next > now,
                "timer contract: a deadline is still due after handle_timeout"
            );
        }
    }

    /// Bookkeeping after anything touched a stream: wake-ups, the ready queue, the
    /// timer heap and removal of finished streams.
    fn after(&mut self, local: LocalId, now: Instant) {
        let Some(s) = self.streams.get_mut(&local) else {
            return;
        };
        let (read, write, established) = s.take_wakes();
        if read {
            self.events.push_back(Event::Readable(local));
        }
        if write {
            self.events.push_back(Event::Writable(local));
        }
        if established {
            self.events.push_back(Event::Established(local));
        }
        if s.pending_open && (s.is_established() || s.establish_error().is_some()) {
            s.pending_open = false;
            self.pending_opens -= 1;
            self.events.push_back(Event::OpenRoom);
        }
        // The one place where a stream's buffered bytes and credit are counted into
        // the client's and its peer's totals, whatever touched the stream.
        let inbound = s.inbound_bytes() as u32;
        if inbound != s.counted_inbound {
            self.stream_inbound =
                self.stream_inbound + inbound as usize - s.counted_inbound as usize;
            s.counted_inbound = inbound;
        }
        // Credit is counted eagerly when it grows and in 16 KiB steps when it shrinks
        // (every read shrinks it a little): the peer's total stays an upper bound, at
        // far fewer session updates.
        let held = s.credit_held();
        let counted = u64::from(s.counted_credit);
        if held > counted || counted - held >= 16 * 1024 || (held == 0 && counted > 0) {
            let before = u64::from(s.counted_credit);
            s.counted_credit = u32::try_from(held).unwrap_or(u32::MAX);
            let after = u64::from(s.counted_credit);
            self.peers
                .update(s.peer, |p| p.credit = p.credit + after - before);
        }
        if s.removable(now) {
            self.remove(local, now);
            return;
        }
        if s.surb_blocked() && !s.in_surb_wait {
            s.in_surb_wait = true;
            self.surb_waiters
                .entry(s.peer)
                .or_default()
                .push_back(local);
        }
        if !s.in_ready && s.wants_transmit(now) {
            s.in_ready = true;
            self.ready.push_back(local);
        }
        if let Some(d) = s.next_deadline(now) {
            if s.scheduled.is_none_or(|cur| d < cur) {
                s.scheduled = Some(d);
                self.timers.push(Reverse((d, local)));
            }
        }
    }

    fn remove(&mut self, local: LocalId, now: Instant) {
        let Some(s) = self.streams.remove(&local) else {
            return;
        };
        tracing::debug!(stream = %s.id, "stream removed");
        if s.in_surb_wait {
            if let Some(q) = self.surb_waiters.get_mut(&s.peer) {
                q.retain(|l| *l != local);
                if q.is_empty() {
                    self.surb_waiters.remove(&s.peer);
                }
            }
        }
        if s.pending_open {
            self.pending_opens -= 1;
            self.events.push_back(Event::OpenRoom);
        }
        self.stream_inbound -= s.counted_inbound as usize;
        let counted = u64::from(s.counted_credit);
        self.peers.update(s.peer, |p| {
            p.streams -= 1;
            p.credit -= counted;
        });
        match s.peer {
            Destination::Address(_) => {
                self.outbound.remove(&s.id);
            }
            Destination::Reply(tag) => {
                self.inbound.remove(&(tag, s.id));
                self.remember_closed((tag, s.id), now, false);
                if let Some(n) = self.inbound_ids.get_mut(&s.id) {
                    *n -= 1;
                    if *n == 0 {
                        self.inbound_ids.remove(&s.id);
                    }
                }
                self.live_inbound -= 1;
            }
        }
    }
}

/// A peer's reply-SURB estimate (SURBs we attached minus frames it sent back, over all
/// streams) and the room under its ceiling: one SURB per frame of the credit its
/// streams hold with us (what it may still send), plus the ack reserve and the target
/// stock. What a peer can make us spend on SURBs is bounded by this, whatever it asks.
///
/// The estimate counts one SURB per frame that came back, but a reply lost on the way
/// used one too (the mixnet client resends it with another), and so did a reply the
/// peer's client gave up: under loss the estimate drifts high, and a peer starved of
/// SURBs would be refused the very SURBs it asks for. So the room is measured against
/// a loss-tolerant figure that counts up to [`SURB_USE_PER_REPLY`] SURBs per frame
/// seen: SURBs we ever send a peer stay at most that many per frame it sent us, plus
/// the ceiling.
fn peer_surbs<A, T>(
    peers: &Peers<Destination<A, T>>,
    peer: &Destination<A, T>,
    cfg: &MuxConfig,
) -> (u32, u32)
where
    A: Copy + Eq + Hash,
    T: Copy + Eq + Hash,
{
    let p = peers.get(peer);
    let estimate = p.surbs_sent.saturating_sub(p.replies_seen);
    let used_at_most = p.replies_seen.saturating_mul(SURB_USE_PER_REPLY.0) / SURB_USE_PER_REPLY.1;
    let at_least = p.surbs_sent.saturating_sub(used_at_most);
    let frames = p.credit.div_ceil(cfg.frame_payload() as u64);
    let ceiling = frames + u64::from(crate::stream::ACK_SURB_RESERVE) + u64::from(cfg.surb_target);
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    (clamp(estimate), clamp(ceiling.saturating_sub(at_least)))
}

/// The most reply SURBs we count a peer's frame as having used (itself, and replies
/// lost or dropped on the way), as a ratio: 3/2 covers a third of the replies lost.
/// This bounds what a peer can make us send: per frame it sends us, at most this many
/// SURBs beyond its ceiling.
const SURB_USE_PER_REPLY: (u64, u64) = (3, 2);

/// A stateless `Reset` frame for stream `id`.
fn reset_transmit<A, T>(id: StreamId, to: Destination<A, T>, code: u32) -> Transmit<A, T> {
    let mut buf = bytes::BytesMut::with_capacity(lp_frame::HEADER_LEN + 4);
    bytes::BufMut::put_slice(
        &mut buf,
        &StreamHeader::new(id, MessageType::Reset, 0).to_bytes(),
    );
    Reset { code }.encode(&mut buf);
    Transmit {
        to,
        payload: buf.freeze(),
        reply_surbs: 0,
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the stream is no longer in the multiplexer's table",
    )
}

/// A seed from the standard library's per-process random hasher keys (no extra crate).
fn os_seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x6e79_6d2d_7374_7265);
    h.finish()
}
