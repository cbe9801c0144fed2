//! The sans-IO protocol core: the client-level stream table and router.
//!
//! Input: received messages, application actions and the current time. Output:
//! messages to transmit, events for the application and the next timer deadline.
//! No tokio, no clock, no I/O: the driver (or a test) moves bytes and time.
//!
//! This file holds the [`Core`] type and the application's actions; the rest is split
//! by concern: [`routing`] (inbound frames to streams, opens, orphans, stateless
//! resets), [`transmit`] (what goes out next, SURB turns), [`timers`] (the timer
//! queue) and [`table`] (the stream table and the bookkeeping after each operation).

mod ready;
mod routing;
mod table;
mod timers;
mod transmit;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::Hash;
use std::time::Instant;

use bytes::Bytes;
use lp_frame::ext::reset_code;
use lp_frame::StreamId;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::config::MuxConfig;
use crate::delay::{DelaySignal, DelayTracker};
use crate::error::{Failure, OpenError, Operation, StreamError};
use crate::id_map::IdMap;
use crate::metrics::{ClientMetrics, StreamMetrics};
use crate::orphans::Orphans;
use crate::peer::{PeerLimits, Peers};
use crate::stream::StreamState;
use crate::transport::{Destination, Inbound};
use ready::ReadyQueue;
use table::Entry;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// This many bytes were taken.
    Accepted(usize),
    /// No room (credit or send buffer): wait for [`Event::Writable`].
    Blocked,
    /// The write side failed (turn it into an `io::Error` with `.into()`).
    Failed(StreamError),
}

/// Result of an application read through the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// This many bytes were copied.
    Data(usize),
    /// End of stream.
    Eof,
    /// Nothing yet: wait for [`Event::Readable`].
    Pending,
    /// The read side failed (turn it into an `io::Error` with `.into()`).
    Failed(StreamError),
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
    /// The stream table: each stream's state and the core's bookkeeping for it.
    streams: IdMap<LocalId, Box<Entry<A, T>>>,
    outbound: IdMap<StreamId, LocalId>,
    /// Peer-opened streams by sender tag and wire id. Its keys are chosen by peers, so
    /// it keeps std's keyed hash (SipHash).
    inbound: HashMap<(T, StreamId), LocalId>,
    /// The entry of `inbound` found last: consecutive frames nearly always belong to
    /// one stream, and a key comparison is cheaper than the keyed hash (a twentieth of
    /// the instructions of a one-stream transfer). Cleared when that stream leaves.
    last_inbound: Option<((T, StreamId), LocalId)>,
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
    /// Streams with something to send, by priority, round-robin within one.
    ready: ReadyQueue,
    /// Listener side: per peer, the streams whose payload waits for reply SURBs, in
    /// the order they began to wait. They take turns as the stock allows, so under
    /// SURB scarcity no stream of a peer starves while its siblings send.
    surb_waiters: HashMap<Destination<A, T>, VecDeque<LocalId>>,
    /// Waiters given their turn, served before the ready queue; no new turns are given
    /// until these were served (each took a SURB the stock count already promised).
    surb_turns: VecDeque<LocalId>,
    /// Stream deadlines, earliest first; entries a stream replaced or left behind are
    /// skipped (see [`timers`]).
    timers: BinaryHeap<Reverse<(Instant, LocalId)>>,
    control: VecDeque<Transmit<A, T>>,
    events: VecDeque<Event>,
    plain: VecDeque<Inbound<T>>,
    /// Inbound bytes held by streams (the sum of what each last counted); orphan data
    /// is counted by the orphan store.
    stream_inbound: usize,
    live_inbound: usize,
    metrics: ClientMetrics,
    /// The client's path delay from every stream's round-trip samples.
    delay: DelayTracker,
    /// Samples the last [`Core::poll_path_delay`] reported up to.
    delay_reported: u64,
    /// Whether, since the last [`Core::poll_path_delay`], a stream still had data ready
    /// after sending a frame (its bytes waited for the transport, not the application).
    data_waited: bool,
    /// Control frames sent since the last stream frame (see `poll_transmit`).
    control_run: u32,
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
            None => ChaCha12Rng::seed_from_u64(rand::rngs::OsRng.next_u64()),
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
            last_inbound: None,
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
            ready: ReadyQueue::default(),
            surb_waiters: HashMap::new(),
            surb_turns: VecDeque::new(),
            timers: BinaryHeap::new(),
            control: VecDeque::new(),
            events: VecDeque::new(),
            plain: VecDeque::new(),
            stream_inbound: 0,
            live_inbound: 0,
            metrics: ClientMetrics::default(),
            delay: DelayTracker::default(),
            delay_reported: 0,
            data_waited: false,
            control_run: 0,
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
        self.streams.insert(local, Entry::new(state, true));
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
        if let Some(peer) = self.stream(local).map(|s| s.peer) {
            self.peers.update(peer, |p| p.backlog -= 1);
        }
        self.with_stream(now, local, |s| {
            s.reset(reset_code::REFUSED);
            s.drop_handle(true, true);
        });
    }

    /// Takes the next stream a peer opened, if any.
    pub fn accept(&mut self) -> Option<(LocalId, StreamId)> {
        while let Some((local, _)) = self.accept_queue.pop_front() {
            if let Some((id, peer)) = self.stream(local).map(|s| (s.id, s.peer)) {
                self.metrics.streams_accepted += 1;
                self.peers.update(peer, |p| p.backlog -= 1);
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
        let Some(s) = self.stream_mut(local) else {
            return Write::Failed(gone(Operation::Write));
        };
        let out = s.write(data, now);
        // A blocked write changed nothing but a counter: no bookkeeping to redo.
        if !matches!(out, Write::Blocked) {
            self.after(local, now);
        }
        out
    }

    /// Asks for buffered bytes to be sent now instead of waiting to coalesce.
    /// Returns whether the coalescing buffer is already empty.
    pub fn flush(&mut self, now: Instant, local: LocalId) -> bool {
        let Some(s) = self.stream_mut(local) else {
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
        let Some(s) = self.stream_mut(local) else {
            return true;
        };
        s.shutdown();
        let done = s.shutdown_complete();
        self.after(local, now);
        done
    }

    /// Aborts a stream at once with a reason code.
    pub fn reset(&mut self, now: Instant, local: LocalId, code: u32) {
        if let Some(s) = self.stream_mut(local) {
            s.reset(code);
            self.after(local, now);
        }
    }

    /// Sends every write at once (`true`) or coalesces small writes (`false`).
    pub fn set_nodelay(&mut self, now: Instant, local: LocalId, nodelay: bool) {
        if let Some(s) = self.stream_mut(local) {
            s.set_nodelay(nodelay);
            self.after(local, now);
        }
    }

    /// Sets a stream's send priority (default 0): while streams of a higher priority have
    /// frames to send, streams of a lower one wait; streams of equal priority take turns,
    /// a frame each. Acknowledgements and other control frames ride with their stream's
    /// turn; the client's stateless control frames go before any stream.
    pub fn set_priority(&mut self, local: LocalId, priority: i32) {
        if let Some(e) = self.streams.get_mut(&local) {
            e.priority = priority;
        }
    }

    /// A stream's send priority (0 for an unknown stream).
    pub fn priority(&self, local: LocalId) -> i32 {
        self.streams.get(&local).map_or(0, |e| e.priority)
    }

    /// Reads from a stream into `buf`.
    pub fn read(&mut self, now: Instant, local: LocalId, buf: &mut [u8]) -> Read {
        let mut buf = buf;
        self.read_buf(now, local, &mut buf)
    }

    /// [`Core::read`] into any [`bytes::BufMut`], uninitialised memory included (a
    /// tokio `ReadBuf`, a `Vec`'s spare capacity): the bytes are copied once and nothing
    /// is zeroed first. `Read::Data(n)`: `buf` advanced by `n`.
    pub fn read_buf<B: bytes::BufMut>(
        &mut self,
        now: Instant,
        local: LocalId,
        buf: &mut B,
    ) -> Read {
        let Some(s) = self.stream_mut(local) else {
            return Read::Eof;
        };
        let out = s.read_into(buf);
        // Only a read that took bytes changed the stream (its queue, credit, maybe an ack
        // due); an empty one leaves nothing to redo (half the reads at 100 busy streams).
        if matches!(out, Read::Data(n) if n > 0) {
            self.after_read(local, now);
        }
        out
    }

    /// Reads one chunk as it arrived: `Ok(None)` is EOF, `Err(Read::Pending)` means wait.
    pub fn read_chunk(&mut self, now: Instant, local: LocalId) -> Result<Option<Bytes>, Read> {
        let Some(s) = self.stream_mut(local) else {
            return Ok(None);
        };
        let out = s.read_chunk();
        match &out {
            Ok(Some(_)) => self.after_read(local, now),
            _ => self.after(local, now),
        }
        out
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
        let s = self.stream_mut(local)?;
        let out = f(s);
        self.after(local, now);
        Some(out)
    }

    /// Whether the stream finished its open handshake; `Err` if it died before.
    pub fn established(&self, local: LocalId) -> Result<bool, StreamError> {
        match self.stream(local) {
            None => Err(gone(Operation::Establish)),
            Some(s) => match s.establish_error() {
                Some(e) => Err(e),
                None => Ok(s.is_established()),
            },
        }
    }

    /// The error a flush or shutdown of the stream reports: the write side was reset
    /// or failed. `None` while it works, after a clean finish, or for a removed stream.
    pub fn send_error(&self, local: LocalId) -> Option<StreamError> {
        self.stream(local).and_then(|s| s.send_error())
    }

    /// Whether every byte written to the stream and its FIN were acknowledged by the
    /// peer; `Err` if the write side was reset or failed first.
    pub fn send_finished(&self, local: LocalId) -> Result<bool, StreamError> {
        match self.stream(local) {
            // Removed: it only leaves the table once its sending is over.
            None => Ok(true),
            Some(s) => s.send_finished(),
        }
    }

    /// Bytes written to any stream that the peers have not acknowledged yet (unsent
    /// ones included). Walks every stream: for draining at shutdown, not a hot path.
    pub fn unacknowledged_bytes(&self) -> usize {
        self.streams
            .values()
            .map(|e| e.state.send_outstanding())
            .sum()
    }

    /// Whether the idle timeout reaped the stream.
    pub fn is_reaped(&self, local: LocalId) -> bool {
        self.stream(local).is_some_and(|s| s.is_reaped())
    }

    /// The wire id of a stream.
    pub fn stream_id(&self, local: LocalId) -> Option<StreamId> {
        self.stream(local).map(|s| s.id)
    }

    /// Counters of one stream.
    pub fn stream_metrics(&self, local: LocalId) -> Option<StreamMetrics> {
        self.stream(local).map(|s| s.metrics())
    }

    /// The peer of a stream: the address we opened it to, or the sender tag of the
    /// opener that opened it to us.
    pub fn stream_peer(&self, local: LocalId) -> Option<Destination<A, T>> {
        self.stream(local).map(|s| s.peer)
    }

    /// Counters of the whole client.
    pub fn metrics(&self) -> ClientMetrics {
        let mut m = self.metrics;
        m.inbound_bytes = self.inbound_bytes() as u64;
        m.live_streams = self.streams.len() as u64;
        m.path_delay = self.delay.estimate();
        m
    }

    /// Records the transport's pace ([`Transport::send_pace`](crate::Transport::send_pace))
    /// for [`ClientMetrics::send_pace`].
    pub fn set_send_pace(&mut self, pace: Option<std::time::Duration>) {
        self.metrics.send_pace = pace;
    }

    /// The client's path delay ([`PathDelay`](crate::PathDelay)) if round-trip samples arrived since the
    /// last call, and whether our streams had data waiting for the transport meanwhile:
    /// what a transport that paces itself adapts its rate to (see
    /// [`Transport::on_path_delay`](crate::Transport::on_path_delay)).
    pub fn poll_path_delay(&mut self) -> Option<DelaySignal> {
        let samples = self.delay.samples();
        if samples == self.delay_reported {
            return None;
        }
        self.delay_reported = samples;
        let delay = self.delay.estimate()?;
        Some(DelaySignal {
            delay,
            data_waited: std::mem::take(&mut self.data_waited),
        })
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

    /// The next application event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A stream's state, if it is in the table.
    fn stream(&self, local: LocalId) -> Option<&StreamState<A, T>> {
        self.streams.get(&local).map(|e| &e.state)
    }

    fn stream_mut(&mut self, local: LocalId) -> Option<&mut StreamState<A, T>> {
        self.streams.get_mut(&local).map(|e| &mut e.state)
    }
}

/// The failure of an operation on a stream that left the table.
fn gone(op: Operation) -> StreamError {
    StreamError::new(None, op, Failure::Gone)
}
