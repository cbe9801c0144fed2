//! The single-threaded network state: clients, queues, in-flight messages and the event heap.
//!
//! Everything here runs under one mutex, is driven by explicit instants and draws from one
//! seeded generator in a fixed order, so a run is a pure function of the seed and the sequence of
//! calls and clock readings.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// A map with a cheap hasher: the engine's keys are random addresses, tags and counters
/// of a simulation nobody attacks, and SipHash was a fifth of the instant preset's cost.
type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;
use std::task::Waker;
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use crate::config::{sample_exponential, sample_route_delay, MessageKind, SimConfig};
use crate::lanes::{Batch, Lane, SendQueue};
use crate::types::{Address, ClientStats, ReceivedMessage, SenderTag, SimError};

/// Index of a client in the engine's tables (never reused).
pub(crate) type ClientId = usize;

/// Payload size a SURB request is modelled with (it fits one reply packet).
const SURB_REQUEST_LEN: usize = 8;

/// Most SURBs an opener's answer carries per message (nym's sender controller sends an
/// answer in chunks of 100).
const SURBS_PER_ANSWER: u32 = 100;

/// Longest delay the engine ever schedules, so instant arithmetic cannot overflow.
const MAX_DELAY: Duration = Duration::from_secs(10 * 365 * 86_400);

#[derive(Debug)]
enum Event {
    /// A client's next Poisson emission slot.
    Tick(ClientId),
    /// The acknowledgement timer of a lost packet fired: send it again.
    Retransmit { msg: u64, attempt: u32 },
    /// The last fragment of a message arrived.
    Deliver { msg: u64, duplicate: bool },
    /// A replier's periodic look at the replies of `tag` waiting for SURBs: it asks the
    /// opener again, or drops them (nym's `inspect_stale_pending_data`).
    SurbCheck { client: ClientId, tag: SenderTag },
    /// The messages a client received in the last batch window reach its queue.
    FlushBatch(ClientId),
}

struct Scheduled {
    at: Instant,
    seq: u64,
    ev: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap and we want the earliest (then lowest seq) on top.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .at
            .cmp(&self.at)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// The event heap plus the bookkeeping that tells the driver task when to wake up.
#[derive(Default)]
struct Timeline {
    heap: BinaryHeap<Scheduled>,
    seq: u64,
    /// The instant the driver sleeps until (None: no timer armed).
    armed: Option<Instant>,
    notify_needed: bool,
}

impl Timeline {
    fn push(&mut self, at: Instant, ev: Event) {
        let seq = self.seq;
        self.seq += 1;
        if self.armed.is_none_or(|a| at < a) {
            self.notify_needed = true;
        }
        self.heap.push(Scheduled { at, seq, ev });
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    /// Application payload.
    App,
    /// A replier asks the opener for `surbs` more SURBs (sent as a reply).
    SurbRequest,
    /// The opener's answer carrying `surbs` SURBs (an anonymous message, not shown to the app).
    SurbRefill,
}

struct Msg {
    from: ClientId,
    to: Address,
    body: Body,
    payload: Bytes,
    /// The sender tag the receiver sees / files the SURBs under (anonymous messages, refills).
    tag: Option<SenderTag>,
    /// SURBs carried (App, SurbRefill) or asked for (SurbRequest).
    surbs: u32,
    /// For replies and SURB requests: the tag (at the sender) they travel through.
    reply_via: Option<SenderTag>,
    /// Retransmissions allowed per packet of a forward message (`None`: no limit); replies
    /// and SURB requests use `reply_max_retries`.
    max_retries: Option<u32>,
    /// Fragments not yet transmitted successfully.
    pending: u32,
    /// Arrival of the latest successful fragment so far.
    latest: Instant,
}

/// Reply packets of one message waiting for SURBs.
struct PendingReply {
    msg: u64,
    need: u32,
    attempt: u32,
}

/// A replier's state for one sender tag (nym's per-tag reply storage and queue).
struct TagState {
    /// SURBs held.
    stock: u32,
    /// Reply packets waiting for SURBs, oldest first (retransmissions go first).
    waiting: VecDeque<PendingReply>,
    /// Sum of `need` over `waiting`.
    waiting_packets: u32,
    /// SURBs asked for and not yet received.
    pending_reception: u32,
    /// When SURBs last arrived for this tag (any message carrying them).
    last_received: Instant,
    /// Checks that asked again since SURBs last arrived.
    rerequests: u32,
    /// Whether a `SurbCheck` is scheduled.
    check_armed: bool,
}

impl TagState {
    fn new(now: Instant) -> Self {
        TagState {
            stock: 0,
            waiting: VecDeque::new(),
            waiting_packets: 0,
            pending_reception: 0,
            last_received: now,
            rerequests: 0,
            check_armed: false,
        }
    }
}

struct ClientState {
    /// Packets handed to the sending loop: the channel of batches and the lanes.
    sendq: SendQueue,
    /// Packets in `sendq` plus packets of replies waiting for SURBs.
    queued_packets: usize,
    /// Retransmissions allowed per packet of this client's application messages (`None`:
    /// no limit, nym's default for anonymous messages).
    max_retransmissions: Option<u32>,
    ticking: bool,
    inbox: VecDeque<ReceivedMessage>,
    /// Messages received in the current batch window, with what kind each was.
    batch: Vec<(Arrival, ClientId, ReceivedMessage)>,
    /// A lower bound than `outbound_queue_packets` this client asked for.
    queue_limit: Option<usize>,
    recv_waker: Option<Waker>,
    ready_waker: Option<Waker>,
    /// Reply state per sender tag this client received anonymous messages from.
    tags: FastMap<SenderTag, TagState>,
}

impl ClientState {
    /// The bound on this client's send queue: its own limit within the network's.
    fn send_bound(&self, network: usize) -> usize {
        self.queue_limit.map_or(network, |l| l.min(network))
    }

    /// Whether another application message may be handed over: the channel to the sending
    /// loop has room for a batch and the queue is within its bound in packets.
    fn has_room(&self, cfg: &SimConfig) -> bool {
        self.sendq.channel_len() < cfg.input_channel_batches
            && self.queued_packets < self.send_bound(cfg.outbound_queue_packets)
    }
}

/// What kind of message arrived, in the order nym's received buffer regroups a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Arrival {
    Plain,
    Repliable,
    Reply,
}

/// What a reply-path step found for the head of a wait queue.
enum Head {
    Done,
    Skip,
    Send(u64, u32, u32),
}

pub(crate) struct Engine {
    cfg: SimConfig,
    pacing: Option<Duration>,
    zero_route: bool,
    rng: ChaCha8Rng,
    timeline: Timeline,
    clients: Vec<Option<ClientState>>,
    addrs: Vec<Address>,
    stats: Vec<ClientStats>,
    by_addr: FastMap<Address, ClientId>,
    pair_tags: FastMap<(ClientId, Address), SenderTag>,
    /// tag -> opener.
    tag_opener: FastMap<SenderTag, ClientId>,
    msgs: FastMap<u64, Msg>,
    next_msg: u64,
    to_wake: Vec<Waker>,
    lag: DriverLag,
}

/// How late the network processed its events against their schedule: in real time, a
/// driver that cannot keep up (a hub with too many clients for its CPU) shows here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverLag {
    /// Events processed (packet emissions, deliveries, retransmissions, timeouts).
    pub events: u64,
    /// Sum of every event's lag (processing time minus scheduled time).
    pub total: Duration,
    /// The largest lag seen.
    pub max: Duration,
    /// Events processed more than 10 ms late.
    pub over_10ms: u64,
    /// Events processed more than 100 ms late.
    pub over_100ms: u64,
}

impl DriverLag {
    /// The mean lag per event.
    pub fn mean(&self) -> Duration {
        if self.events == 0 {
            Duration::ZERO
        } else {
            self.total / u32::try_from(self.events).unwrap_or(u32::MAX)
        }
    }
}

impl Engine {
    /// Each client's sending pace (`None`: unlimited).
    pub(crate) fn pacing_interval(&self) -> Option<Duration> {
        self.pacing
    }

    pub(crate) fn new(cfg: SimConfig) -> Self {
        Engine {
            pacing: cfg.pacing_interval(),
            zero_route: cfg.zero_route_delay(),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            timeline: Timeline::default(),
            clients: Vec::new(),
            addrs: Vec::new(),
            stats: Vec::new(),
            by_addr: FastMap::default(),
            pair_tags: FastMap::default(),
            tag_opener: FastMap::default(),
            msgs: FastMap::default(),
            next_msg: 0,
            to_wake: Vec::new(),
            lag: DriverLag::default(),
        }
    }

    pub(crate) fn driver_lag(&self) -> DriverLag {
        self.lag
    }

    /// Statistics of every client that ever joined, summed.
    pub(crate) fn total_stats(&self) -> ClientStats {
        let mut t = ClientStats::default();
        for s in &self.stats {
            t.packets_sent += s.packets_sent;
            t.packets_retransmitted += s.packets_retransmitted;
            t.messages_sent += s.messages_sent;
            t.messages_received += s.messages_received;
            t.payload_bytes_sent += s.payload_bytes_sent;
            t.payload_bytes_received += s.payload_bytes_received;
            t.surbs_attached += s.surbs_attached;
            t.surbs_used += s.surbs_used;
            t.surbs_requested += s.surbs_requested;
            t.surbs_received += s.surbs_received;
            t.replies_dropped += s.replies_dropped;
            t.messages_dropped += s.messages_dropped;
            t.packets_lost += s.packets_lost;
            t.dropped_receiver_full += s.dropped_receiver_full;
        }
        t
    }

    // ----- driver interface ---------------------------------------------------------------

    /// Process every event due at or before `now`, in (time, sequence) order.
    pub(crate) fn run_due(&mut self, now: Instant) {
        while self.timeline.heap.peek().is_some_and(|s| s.at <= now) {
            let Some(s) = self.timeline.heap.pop() else {
                break;
            };
            let late = now.saturating_duration_since(s.at);
            self.lag.events += 1;
            self.lag.total += late;
            self.lag.max = self.lag.max.max(late);
            self.lag.over_10ms += u64::from(late > Duration::from_millis(10));
            self.lag.over_100ms += u64::from(late > Duration::from_millis(100));
            match s.ev {
                Event::Tick(c) => self.on_tick(c, s.at),
                Event::Retransmit { msg, attempt } => self.on_retransmit(msg, attempt, s.at),
                Event::Deliver { msg, duplicate } => self.on_deliver(msg, duplicate, s.at),
                Event::SurbCheck { client, tag } => self.on_surb_check(client, tag, s.at),
                Event::FlushBatch(c) => self.flush_batch(c),
            }
        }
    }

    /// The driver is about to sleep: remember until when, and return that instant.
    pub(crate) fn arm(&mut self) -> Option<Instant> {
        let next = self.timeline.heap.peek().map(|s| s.at);
        self.timeline.armed = next;
        self.timeline.notify_needed = false;
        next
    }

    /// Wakers to wake (after the lock is released) and whether the driver must re-arm.
    pub(crate) fn take_wakeups(&mut self) -> (Vec<Waker>, bool) {
        let notify = std::mem::take(&mut self.timeline.notify_needed);
        (std::mem::take(&mut self.to_wake), notify)
    }

    // ----- client interface ---------------------------------------------------------------

    pub(crate) fn connect(&mut self) -> (ClientId, Address) {
        let addr = loop {
            let mut b = [0u8; 32];
            self.rng.fill_bytes(&mut b);
            let a = Address::from_bytes(b);
            if !self.by_addr.contains_key(&a) {
                break a;
            }
        };
        (self.add_client(addr), addr)
    }

    /// Connects a client with a chosen address (derived from an identity). An address
    /// whose earlier client left is taken over (messages to it reach the new client); one
    /// whose client is still connected is refused.
    pub(crate) fn connect_address(&mut self, addr: Address) -> Result<ClientId, SimError> {
        if self
            .by_addr
            .get(&addr)
            .is_some_and(|&c| self.is_connected(c))
        {
            return Err(SimError::AddressInUse(addr));
        }
        Ok(self.add_client(addr))
    }

    fn add_client(&mut self, addr: Address) -> ClientId {
        let id = self.clients.len();
        self.clients.push(Some(ClientState {
            sendq: SendQueue::default(),
            queued_packets: 0,
            max_retransmissions: self.cfg.forward_max_retries,
            ticking: false,
            inbox: VecDeque::new(),
            batch: Vec::new(),
            queue_limit: None,
            recv_waker: None,
            ready_waker: None,
            tags: FastMap::default(),
        }));
        self.addrs.push(addr);
        self.stats.push(ClientStats::default());
        self.by_addr.insert(addr, id);
        id
    }

    /// For every tag this client has seen, the SURBs replies may use now (as
    /// [`Self::surbs_available`]).
    pub(crate) fn surb_stocks(&self, c: ClientId) -> Vec<(SenderTag, u32)> {
        let reserve = self.cfg.reply_surb_reserve;
        self.client(c)
            .map(|s| {
                s.tags
                    .iter()
                    .map(|(t, ts)| (*t, ts.stock.saturating_sub(reserve)))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn disconnect(&mut self, c: ClientId) {
        let Some(slot) = self.clients.get_mut(c) else {
            return;
        };
        let Some(state) = slot.take() else {
            return;
        };
        // Whatever was still queued never leaves: those messages can no longer complete.
        for msg in state.sendq.messages() {
            self.msgs.remove(&msg);
        }
        for ts in state.tags.values() {
            for p in &ts.waiting {
                self.msgs.remove(&p.msg);
            }
        }
        self.to_wake.extend(state.recv_waker);
        self.to_wake.extend(state.ready_waker);
    }

    pub(crate) fn is_connected(&self, c: ClientId) -> bool {
        matches!(self.clients.get(c), Some(Some(_)))
    }

    pub(crate) fn stats_of(&self, c: ClientId) -> ClientStats {
        self.stats.get(c).copied().unwrap_or_default()
    }

    pub(crate) fn stats_by_addr(&self, a: &Address) -> Option<ClientStats> {
        self.by_addr.get(a).map(|&c| self.stats_of(c))
    }

    pub(crate) fn id_of(&self, a: &Address) -> Option<ClientId> {
        self.by_addr.get(a).copied()
    }

    /// SURBs of `tag` that replies may use now: the stock above the reserve.
    pub(crate) fn surbs_available(&self, c: ClientId, tag: &SenderTag) -> u32 {
        self.client(c)
            .and_then(|s| s.tags.get(tag))
            .map_or(0, |t| t.stock.saturating_sub(self.cfg.reply_surb_reserve))
    }

    /// Ok(true): room in the send queue. Ok(false): full, waker stored.
    /// Sets (or with `None` lifts) a client's own bound on its send queue, below the
    /// network's `outbound_queue_packets`.
    pub(crate) fn set_queue_limit(&mut self, c: ClientId, packets: Option<usize>) {
        if let Some(s) = self.client_mut(c) {
            s.queue_limit = packets.map(|p| p.max(1));
        }
        self.wake_ready_if_room(c);
    }

    /// Sets the retransmissions allowed per packet of client `c`'s application messages
    /// (`None`: no limit).
    pub(crate) fn set_max_retransmissions(&mut self, c: ClientId, max: Option<u32>) {
        if let Some(s) = self.client_mut(c) {
            s.max_retransmissions = max;
        }
    }

    pub(crate) fn poll_ready(&mut self, c: ClientId, waker: &Waker) -> Result<bool, SimError> {
        let Some(s) = self.clients.get_mut(c).and_then(Option::as_mut) else {
            return Err(SimError::Disconnected);
        };
        if s.has_room(&self.cfg) {
            Ok(true)
        } else {
            store_waker(&mut s.ready_waker, waker);
            Ok(false)
        }
    }

    /// Some(Some(msg)): a message. Some(None): disconnected. None: empty, waker stored.
    pub(crate) fn poll_recv(
        &mut self,
        c: ClientId,
        waker: &Waker,
    ) -> Option<Option<ReceivedMessage>> {
        let Some(s) = self.client_mut(c) else {
            return Some(None);
        };
        match s.inbox.pop_front() {
            Some(m) => Some(Some(m)),
            None => {
                store_waker(&mut s.recv_waker, waker);
                None
            }
        }
    }

    /// Send a regular (`surbs == None`) or anonymous (`Some(k)`) message.
    pub(crate) fn send(
        &mut self,
        from: ClientId,
        to: Address,
        payload: Bytes,
        surbs: Option<u32>,
        now: Instant,
    ) -> Result<(), SimError> {
        if !self.is_connected(from) {
            return Err(SimError::Disconnected);
        }
        let kind = match surbs {
            None => MessageKind::Regular,
            Some(k) => MessageKind::Anonymous { reply_surbs: k },
        };
        let packets = self.check_size(payload.len(), kind)?;
        let tag = surbs.map(|_| self.pair_tag(from, to));
        let max_retries = self.client(from).and_then(|s| s.max_retransmissions);
        let st = &mut self.stats[from];
        st.messages_sent += 1;
        st.payload_bytes_sent += payload.len() as u64;
        st.surbs_attached += u64::from(surbs.unwrap_or(0));
        let msg = self.new_msg(Msg {
            from,
            to,
            body: Body::App,
            payload,
            tag,
            surbs: surbs.unwrap_or(0),
            reply_via: None,
            max_retries,
            pending: packets,
            latest: now,
        });
        self.enqueue(from, msg, packets, 0, now, false, Lane::General);
        self.run_due(now);
        Ok(())
    }

    pub(crate) fn send_reply(
        &mut self,
        from: ClientId,
        tag: SenderTag,
        payload: Bytes,
        now: Instant,
    ) -> Result<(), SimError> {
        let Some(s) = self.client(from) else {
            return Err(SimError::Disconnected);
        };
        if !s.tags.contains_key(&tag) {
            return Err(SimError::UnknownSenderTag(tag));
        }
        let Some(&opener) = self.tag_opener.get(&tag) else {
            return Err(SimError::UnknownSenderTag(tag));
        };
        let packets = self.check_size(payload.len(), MessageKind::Reply)?;
        let st = &mut self.stats[from];
        st.messages_sent += 1;
        st.payload_bytes_sent += payload.len() as u64;
        let to = self.addrs[opener];
        let msg = self.new_msg(Msg {
            from,
            to,
            body: Body::App,
            payload,
            tag: None,
            surbs: 0,
            reply_via: Some(tag),
            max_retries: None,
            pending: packets,
            latest: now,
        });
        self.queue_reply(from, tag, msg, packets, 0, now);
        self.maybe_request_surbs(from, tag, now);
        self.run_due(now);
        Ok(())
    }

    // ----- internals ----------------------------------------------------------------------

    fn client(&self, c: ClientId) -> Option<&ClientState> {
        self.clients.get(c).and_then(Option::as_ref)
    }

    fn client_mut(&mut self, c: ClientId) -> Option<&mut ClientState> {
        self.clients.get_mut(c).and_then(Option::as_mut)
    }

    fn check_size(&self, len: usize, kind: MessageKind) -> Result<u32, SimError> {
        let framed_len = kind.framed_len(len);
        if framed_len > self.cfg.max_message_len as u64 {
            return Err(SimError::MessageTooLarge {
                framed_len,
                max: self.cfg.max_message_len,
            });
        }
        Ok(self.cfg.packets_for(len, kind))
    }

    fn pair_tag(&mut self, from: ClientId, to: Address) -> SenderTag {
        if let Some(t) = self.pair_tags.get(&(from, to)) {
            return *t;
        }
        let tag = loop {
            let mut b = [0u8; 16];
            self.rng.fill_bytes(&mut b);
            let t = SenderTag(b);
            if !self.tag_opener.contains_key(&t) {
                break t;
            }
        };
        self.pair_tags.insert((from, to), tag);
        self.tag_opener.insert(tag, from);
        tag
    }

    fn new_msg(&mut self, m: Msg) -> u64 {
        let id = self.next_msg;
        self.next_msg += 1;
        self.msgs.insert(id, m);
        id
    }

    fn later(at: Instant, d: Duration) -> Instant {
        at + d.min(MAX_DELAY)
    }

    fn wake_ready_if_room(&mut self, c: ClientId) {
        if let Some(s) = self.clients.get_mut(c).and_then(Option::as_mut) {
            if s.has_room(&self.cfg) {
                if let Some(w) = s.ready_waker.take() {
                    self.to_wake.push(w);
                }
            }
        }
    }

    /// Hand `count` packets of `msg` to client `c`'s sending loop as one batch for `lane`
    /// (or straight out without pacing). `counted`: the packets are already included in
    /// `queued_packets` (replies leaving the SURB wait queue).
    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &mut self,
        c: ClientId,
        msg: u64,
        count: u32,
        attempt: u32,
        at: Instant,
        counted: bool,
        lane: Lane,
    ) {
        let Some(s) = self.clients.get_mut(c).and_then(Option::as_mut) else {
            self.msgs.remove(&msg);
            return;
        };
        match self.pacing {
            Some(interval) => {
                if !counted {
                    s.queued_packets += count as usize;
                }
                s.sendq.push(
                    lane,
                    Batch {
                        msg,
                        count,
                        attempt,
                    },
                );
                if !s.ticking {
                    s.ticking = true;
                    let gap = sample_exponential(interval, &mut self.rng);
                    self.timeline.push(Self::later(at, gap), Event::Tick(c));
                }
            }
            None => {
                if counted {
                    s.queued_packets = s.queued_packets.saturating_sub(count as usize);
                    self.wake_ready_if_room(c);
                }
                self.transmit(c, msg, count, attempt, at);
            }
        }
    }

    /// One Poisson slot of client `c`: one batch joins its lane, one packet leaves.
    fn on_tick(&mut self, c: ClientId, at: Instant) {
        let Some(s) = self.clients.get_mut(c).and_then(Option::as_mut) else {
            return;
        };
        s.sendq.admit_one();
        let msgs = &self.msgs;
        let popped = s.sendq.pop_packet(&mut self.rng, |m| msgs.contains_key(&m));
        let left = popped.discarded + usize::from(popped.packet.is_some());
        s.queued_packets = s.queued_packets.saturating_sub(left);
        let more = !s.sendq.is_empty();
        s.ticking = more;
        if more {
            if let Some(interval) = self.pacing {
                let gap = sample_exponential(interval, &mut self.rng);
                self.timeline.push(Self::later(at, gap), Event::Tick(c));
            }
        }
        self.wake_ready_if_room(c);
        if let Some((msg, attempt)) = popped.packet {
            self.transmit(c, msg, 1, attempt, at);
        }
    }

    /// `count` packets of `msg` leave client `c` at `at`: each is lost or arrives after its
    /// sampled route delay. Lost ones come back through the acknowledgement timer.
    fn transmit(&mut self, c: ClientId, msg: u64, count: u32, attempt: u32, at: Instant) {
        let st = &mut self.stats[c];
        st.packets_sent += u64::from(count);
        if attempt > 0 {
            st.packets_retransmitted += u64::from(count);
        }
        // A packet to a client that left (its gateway vanished) is never acknowledged: the
        // sender's timer fires and it is sent again, as long as its limit allows.
        let Some(to) = self.msgs.get(&msg).map(|m| m.to) else {
            return;
        };
        let gone = !self
            .by_addr
            .get(&to)
            .is_some_and(|&id| matches!(self.clients.get(id), Some(Some(_))));
        let Some(m) = self.msgs.get_mut(&msg) else {
            return;
        };
        let p = if gone { 1.0 } else { self.cfg.loss_probability };
        if p == 0.0 && self.zero_route {
            m.pending = m.pending.saturating_sub(count);
            m.latest = m.latest.max(at);
        } else {
            for _ in 0..count {
                let lost = gone || (p > 0.0 && self.rng.gen::<f64>() < p);
                let delay = sample_route_delay(&self.cfg, &mut self.rng);
                if lost {
                    st.packets_lost += 1;
                    let when = Self::later(at, self.cfg.retransmit_timeout + delay);
                    self.timeline.push(
                        when,
                        Event::Retransmit {
                            msg,
                            attempt: attempt + 1,
                        },
                    );
                } else {
                    m.pending = m.pending.saturating_sub(1);
                    m.latest = m.latest.max(Self::later(at, delay));
                }
            }
        }
        if m.pending == 0 {
            // Set pending to a sentinel so that a stray later success cannot schedule twice.
            m.pending = u32::MAX;
            let latest = m.latest;
            self.timeline.push(
                latest,
                Event::Deliver {
                    msg,
                    duplicate: false,
                },
            );
        }
    }

    fn on_retransmit(&mut self, msg: u64, attempt: u32, at: Instant) {
        let Some(m) = self.msgs.get(&msg) else {
            return;
        };
        let (from, body, reply_via, max_retries) = (m.from, m.body, m.reply_via, m.max_retries);
        if !self.is_connected(from) {
            // The sender is gone: nobody retransmits, the message never completes.
            self.msgs.remove(&msg);
            return;
        }
        match reply_via {
            None => {
                if max_retries.is_some_and(|max| attempt > max) {
                    // The client stops trying, silently, as nym's does.
                    self.msgs.remove(&msg);
                    self.stats[from].messages_dropped += 1;
                    return;
                }
                self.enqueue(from, msg, 1, attempt, at, false, Lane::Retransmission);
            }
            Some(tag) => {
                if attempt > self.cfg.reply_max_retries {
                    self.give_up_reply(msg);
                    return;
                }
                match body {
                    Body::SurbRequest => {
                        self.take_surb_if_any(from, tag);
                        self.enqueue(from, msg, 1, attempt, at, false, Lane::Retransmission);
                    }
                    _ => {
                        // A retransmitted reply packet needs a fresh single-use SURB.
                        self.queue_reply(from, tag, msg, 1, attempt, at);
                        self.maybe_request_surbs(from, tag, at);
                    }
                }
            }
        }
    }

    /// A reply (or a SURB request) is abandoned.
    fn give_up_reply(&mut self, msg: u64) {
        let Some(m) = self.msgs.remove(&msg) else {
            return;
        };
        // A SURB request given up leaves what it asked for counted as pending, as in
        // nym, until a check asks again (which forgets it).
        if m.body != Body::SurbRequest {
            self.stats[m.from].replies_dropped += 1;
        }
    }

    fn take_surb_if_any(&mut self, c: ClientId, tag: SenderTag) {
        if let Some(ts) = self.client_mut(c).and_then(|s| s.tags.get_mut(&tag)) {
            if ts.stock > 0 {
                ts.stock -= 1;
                self.stats[c].surbs_used += 1;
            }
        }
    }

    /// Queue `need` reply packets of `msg` behind the SURB stock of `tag` (a retransmission,
    /// `attempt > 0`, goes first, as nym sends buffered retransmissions before the queue).
    fn queue_reply(
        &mut self,
        c: ClientId,
        tag: SenderTag,
        msg: u64,
        need: u32,
        attempt: u32,
        at: Instant,
    ) {
        let Some(s) = self.clients.get_mut(c).and_then(Option::as_mut) else {
            self.msgs.remove(&msg);
            return;
        };
        let Some(ts) = s.tags.get_mut(&tag) else {
            self.msgs.remove(&msg);
            return;
        };
        s.queued_packets += need as usize;
        let p = PendingReply { msg, need, attempt };
        if attempt > 0 {
            ts.waiting.push_front(p);
        } else {
            ts.waiting.push_back(p);
        }
        ts.waiting_packets += need;
        self.drain_replies(c, tag, at);
        self.arm_surb_check(c, tag, at);
    }

    /// Send waiting reply packets of `tag`, oldest first, while the stock is above the
    /// reserve (a reply may leave in parts, as nym sends what the stock allows).
    fn drain_replies(&mut self, c: ClientId, tag: SenderTag, at: Instant) {
        let reserve = self.cfg.reply_surb_reserve;
        loop {
            let head = {
                let Some(s) = self.clients.get_mut(c).and_then(Option::as_mut) else {
                    return;
                };
                let Some(ts) = s.tags.get_mut(&tag) else {
                    return;
                };
                let usable = ts.stock.saturating_sub(reserve);
                match ts.waiting.front_mut() {
                    None => Head::Done,
                    Some(p) if !self.msgs.contains_key(&p.msg) => {
                        s.queued_packets = s.queued_packets.saturating_sub(p.need as usize);
                        ts.waiting_packets -= p.need;
                        ts.waiting.pop_front();
                        Head::Skip
                    }
                    Some(_) if usable == 0 => Head::Done,
                    Some(p) => {
                        let k = p.need.min(usable);
                        ts.stock -= k;
                        ts.waiting_packets -= k;
                        p.need -= k;
                        let h = Head::Send(p.msg, k, p.attempt);
                        if p.need == 0 {
                            ts.waiting.pop_front();
                        }
                        h
                    }
                }
            };
            match head {
                Head::Done => return,
                Head::Skip => self.wake_ready_if_room(c),
                Head::Send(msg, k, attempt) => {
                    self.stats[c].surbs_used += u64::from(k);
                    let lane = if attempt > 0 {
                        Lane::Retransmission
                    } else {
                        Lane::General
                    };
                    self.enqueue(c, msg, k, attempt, at, true, lane);
                }
            }
        }
    }

    /// Ask the opener of `tag` for more SURBs when nym's client would: the stock plus what
    /// was asked for is below both `reply_surb_max_stock` and (waiting packets + reserve).
    fn maybe_request_surbs(&mut self, c: ClientId, tag: SenderTag, at: Instant) {
        let (reserve, max_stock) = (self.cfg.reply_surb_reserve, self.cfg.reply_surb_max_stock);
        let Some(ts) = self.client(c).and_then(|s| s.tags.get(&tag)) else {
            return;
        };
        let have = ts.stock.saturating_add(ts.pending_reception);
        if have >= max_stock || have >= ts.waiting_packets.saturating_add(reserve) {
            return;
        }
        self.request_surbs(c, tag, at);
    }

    /// Sends one SURB request for `tag` (its size: the waiting packets within the
    /// configured range). It is a reply that spends a reserve SURB, ignoring the reserve;
    /// with no SURB at all nothing can be sent. Returns whether it went out.
    fn request_surbs(&mut self, c: ClientId, tag: SenderTag, at: Instant) -> bool {
        let (min, max) = self.cfg.surb_request_size;
        let Some(&opener) = self.tag_opener.get(&tag) else {
            return false;
        };
        let Some(ts) = self.client_mut(c).and_then(|s| s.tags.get_mut(&tag)) else {
            return false;
        };
        if ts.stock == 0 {
            return false;
        }
        let amount = ts.waiting_packets.clamp(min, max);
        ts.stock -= 1;
        ts.pending_reception = ts.pending_reception.saturating_add(amount);
        self.stats[c].surbs_used += 1;
        self.stats[c].surbs_requested += u64::from(amount);
        let packets = self.cfg.packets_for(SURB_REQUEST_LEN, MessageKind::Reply);
        let msg = self.new_msg(Msg {
            from: c,
            to: self.addrs[opener],
            body: Body::SurbRequest,
            payload: Bytes::new(),
            tag: None,
            surbs: amount,
            reply_via: Some(tag),
            max_retries: None,
            pending: packets,
            latest: at,
        });
        self.enqueue(c, msg, packets, 0, at, false, Lane::SurbRequest);
        true
    }

    /// Schedules the next look at `tag`'s waiting replies, unless one is due already.
    fn arm_surb_check(&mut self, c: ClientId, tag: SenderTag, at: Instant) {
        let every = self.cfg.surb_check_interval;
        let Some(ts) = self.client_mut(c).and_then(|s| s.tags.get_mut(&tag)) else {
            return;
        };
        if ts.check_armed || ts.waiting.is_empty() {
            return;
        }
        ts.check_armed = true;
        self.timeline
            .push(Self::later(at, every), Event::SurbCheck { client: c, tag });
    }

    /// Nym's look at stale pending replies: after `surb_rerequest_after` without SURBs it
    /// asks again on every check, and once it asked `surb_max_rerequests` times (or no SURB
    /// came for `reply_wait_timeout`) it drops every waiting reply of the tag.
    fn on_surb_check(&mut self, c: ClientId, tag: SenderTag, at: Instant) {
        let (after, max, drop_after) = (
            self.cfg.surb_rerequest_after,
            self.cfg.surb_max_rerequests,
            self.cfg.reply_wait_timeout,
        );
        let Some(ts) = self.client_mut(c).and_then(|s| s.tags.get_mut(&tag)) else {
            return;
        };
        ts.check_armed = false;
        if ts.waiting.is_empty() {
            return;
        }
        let silent = at.saturating_duration_since(ts.last_received);
        if ts.rerequests > max || silent > drop_after {
            self.drop_waiting_replies(c, tag);
            return;
        }
        if silent > after {
            ts.rerequests += 1;
            self.request_surbs(c, tag, at);
            // Nym forgets what it asked for before: the next check may ask again.
            if let Some(ts) = self.client_mut(c).and_then(|s| s.tags.get_mut(&tag)) {
                ts.pending_reception = 0;
            }
        }
        self.arm_surb_check(c, tag, at);
    }

    /// Drops every reply of `tag` still waiting for SURBs (counted in `replies_dropped`).
    fn drop_waiting_replies(&mut self, c: ClientId, tag: SenderTag) {
        let dropped = {
            let Some(s) = self.clients.get_mut(c).and_then(Option::as_mut) else {
                return;
            };
            let Some(ts) = s.tags.get_mut(&tag) else {
                return;
            };
            let waiting = std::mem::take(&mut ts.waiting);
            s.queued_packets = s.queued_packets.saturating_sub(ts.waiting_packets as usize);
            ts.waiting_packets = 0;
            waiting
        };
        tracing::debug!(client = c, %tag, replies = dropped.len(), "waiting replies dropped: no SURBs came");
        for p in dropped {
            self.give_up_reply(p.msg);
        }
        self.wake_ready_if_room(c);
    }

    /// Credit SURBs that arrived for `tag` at client `c` (`answered`: in answer to our
    /// request), then let waiting replies go and ask again if nym's rule says so.
    fn credit_surbs(
        &mut self,
        c: ClientId,
        tag: SenderTag,
        surbs: u32,
        answered: bool,
        at: Instant,
    ) {
        let Some(s) = self.client_mut(c) else {
            return;
        };
        let ts = s.tags.entry(tag).or_insert_with(|| TagState::new(at));
        ts.stock = ts.stock.saturating_add(surbs);
        if surbs > 0 {
            ts.last_received = at;
            ts.rerequests = 0;
        }
        if answered {
            ts.pending_reception = ts.pending_reception.saturating_sub(surbs);
        }
        self.stats[c].surbs_received += u64::from(surbs);
        self.drain_replies(c, tag, at);
        self.maybe_request_surbs(c, tag, at);
    }

    /// Puts a message from `from` into client `to`'s queue (or drops it when the queue is
    /// full), counting it.
    fn hand_over(&mut self, to: ClientId, from: ClientId, m: ReceivedMessage) {
        let cap = self.cfg.inbound_queue_messages;
        let len = m.payload.len() as u64;
        let Some(s) = self.clients.get_mut(to).and_then(Option::as_mut) else {
            return;
        };
        if s.inbox.len() >= cap {
            self.stats[to].dropped_receiver_full += 1;
            self.stats[from].messages_dropped += 1;
            return;
        }
        s.inbox.push_back(m);
        if let Some(w) = s.recv_waker.take() {
            self.to_wake.push(w);
        }
        let st = &mut self.stats[to];
        st.messages_received += 1;
        st.payload_bytes_received += len;
    }

    /// Holds a received message in the client's current batch (starting one if needed).
    fn add_to_batch(
        &mut self,
        to: ClientId,
        from: ClientId,
        kind: Arrival,
        m: ReceivedMessage,
        window: Duration,
        at: Instant,
    ) {
        let Some(s) = self.clients.get_mut(to).and_then(Option::as_mut) else {
            return;
        };
        if s.batch.is_empty() {
            self.timeline
                .push(Self::later(at, window), Event::FlushBatch(to));
        }
        s.batch.push((kind, from, m));
    }

    /// A batch reaches the application as the real client hands it over: regrouped
    /// (plain, then repliable, then replies; nym's `received_buffer.rs`) and then taken
    /// from the end (the SDK's `Stream::poll_next` pops), so fully reversed.
    fn flush_batch(&mut self, c: ClientId) {
        let Some(s) = self.clients.get_mut(c).and_then(Option::as_mut) else {
            return;
        };
        let mut batch = std::mem::take(&mut s.batch);
        batch.sort_by_key(|(kind, _, _)| *kind);
        for (_, from, m) in batch.into_iter().rev() {
            self.hand_over(c, from, m);
        }
    }

    fn on_deliver(&mut self, msg: u64, duplicate: bool, at: Instant) {
        let Some(m) = self.msgs.remove(&msg) else {
            return;
        };
        let to = self
            .by_addr
            .get(&m.to)
            .copied()
            .filter(|&id| self.is_connected(id));
        let Some(to) = to else {
            self.stats[m.from].messages_dropped += 1;
            return;
        };
        match m.body {
            Body::App => {
                if !duplicate {
                    if let Some(tag) = m.tag {
                        self.credit_surbs(to, tag, m.surbs, false, at);
                    }
                }
                let kind = match (m.tag, m.reply_via) {
                    (Some(_), _) => Arrival::Repliable,
                    (None, Some(_)) => Arrival::Reply,
                    (None, None) => Arrival::Plain,
                };
                let received = ReceivedMessage {
                    payload: m.payload.clone(),
                    sender_tag: m.tag,
                };
                match self.cfg.delivery_batch {
                    Some(window) => self.add_to_batch(to, m.from, kind, received, window, at),
                    None => self.hand_over(to, m.from, received),
                }
                let p = self.cfg.duplicate_probability;
                if !duplicate && p > 0.0 && self.rng.gen::<f64>() < p {
                    let delay = sample_route_delay(&self.cfg, &mut self.rng);
                    self.msgs.insert(msg, m);
                    self.timeline.push(
                        Self::later(at, delay),
                        Event::Deliver {
                            msg,
                            duplicate: true,
                        },
                    );
                }
            }
            Body::SurbRequest => {
                // `to` is the opener: its client answers on its own, with at most
                // `surb_answer_max` SURBs in messages of at most 100 (nym's sender
                // controller).
                let Some(tag) = m.reply_via else {
                    return;
                };
                let mut left = m.surbs.min(self.cfg.surb_answer_max);
                while left > 0 {
                    let amount = left.min(SURBS_PER_ANSWER);
                    left -= amount;
                    let packets = self.cfg.packets_for(
                        0,
                        MessageKind::Anonymous {
                            reply_surbs: amount,
                        },
                    );
                    self.stats[to].surbs_attached += u64::from(amount);
                    let refill = self.new_msg(Msg {
                        from: to,
                        to: self.addrs[m.from],
                        body: Body::SurbRefill,
                        payload: Bytes::new(),
                        tag: Some(tag),
                        surbs: amount,
                        reply_via: None,
                        max_retries: None,
                        pending: packets,
                        latest: at,
                    });
                    self.enqueue(to, refill, packets, 0, at, false, Lane::SurbAnswer);
                }
            }
            Body::SurbRefill => {
                let Some(tag) = m.tag else {
                    return;
                };
                self.credit_surbs(to, tag, m.surbs, true, at);
            }
        }
    }
}

fn store_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(w) if w.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}
