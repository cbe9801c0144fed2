//! Configuration of a multiplexer, with documented defaults.

use std::time::Duration;

/// The default [`MuxConfig::send_queue_target`]: 60 ms, three of nym's 20 ms sending slots.
pub const DEFAULT_SEND_QUEUE_TARGET: Duration = Duration::from_millis(60);

/// Every tunable of the multiplexer. Build one with [`MuxConfig::default`] and the
/// `with_*` methods; each field's documentation states its default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MuxConfig {
    /// Speak only the reference Nym stream format: never announce the extension
    /// capability, never send Close/Reset/Ack frames, no retransmission, no credit.
    /// Default: `false`.
    pub legacy_mode: bool,
    /// Largest stream payload carried by one frame (bytes after the 16-byte header).
    /// Default: 1585, which keeps a reply frame inside one Sphinx packet's 1604 message
    /// bytes (1604 − 2 length bytes − 1 reply marker − 16 header bytes). Frames the
    /// opener sends hold 20 bytes less, because an anonymous message
    /// carries 21 bytes of overhead instead of a reply's 1.
    pub max_frame_payload: usize,
    /// Per-stream receive window in bytes: how much the peer may send beyond what our
    /// application has read. Also bounds the stream's inbound buffers. Default: 256 KiB.
    pub receive_window: u32,
    /// Per-stream bound on buffered inbound bytes (out-of-order plus unread) when the
    /// peer is a reference peer. Such a peer has no credit and never retransmits, and
    /// the Nym client's own packet retransmission (~1.5 s) lets 100–300 KB overtake a
    /// delayed message at full rate; beyond this bound the stream fails with
    /// `InvalidData`. Default: 1 MiB.
    pub legacy_receive_buffer: u32,
    /// Per-stream bound on bytes accepted from the application but not yet acknowledged
    /// by the peer (the retransmission buffer plus not-yet-framed bytes). Default: 256 KiB.
    pub send_buffer: usize,
    /// Client-wide bound on buffered inbound bytes across all streams (reorder buffers,
    /// unread data and orphan data). Frames beyond it are refused. Default: 64 MiB.
    pub inbound_budget: usize,
    /// Send every write at once instead of coalescing (streams can override it with
    /// `set_nodelay`). Default: `false`.
    pub nodelay: bool,
    /// How long a partial frame may wait for more bytes before it is sent anyway.
    /// Default: 5 ms.
    pub coalesce_delay: Duration,
    /// How much queueing delay the transport may let build up in the network's send
    /// queue (told to it once, [`Transport::set_queue_target`](crate::Transport::set_queue_target)):
    /// frames beyond it wait in the multiplexer, whose scheduler picks what goes next, so a
    /// small write on one stream is not queued behind seconds of another stream's bulk.
    /// The simulator's adapter bounds its queue at this many sending slots (20 ms each, so
    /// 3 packets); the Nym adapter paces with a burst of as many. Larger keeps the link
    /// busier through gaps in what the application writes; smaller lowers latency under
    /// load (on the faithful simulator, 100 ms left an interactive stream beside a
    /// download at 1.5× its round trip alone, 60 ms at 1.4×, with bulk goodput alone
    /// unchanged). 500 ms is what the adapters kept before this knob. Default: 60 ms.
    pub send_queue_target: Duration,
    /// Whether a transport that cannot see the network's queue (the real Nym client)
    /// adapts its pace to the queueing delay the streams' round trips show
    /// ([`Transport::on_path_delay`](crate::Transport::on_path_delay)), as delay-based
    /// senders (LEDBAT, TCP Vegas) do: slower while the queueing is above
    /// `send_queue_target`, the network client pushes back and our streams' data waits
    /// ([`DelaySignal`](crate::DelaySignal)); back towards the nominal rate otherwise.
    /// On the offline nym fake with a link three times slower than nym's nominal pace,
    /// it cut an interactive stream's median round trip beside an upload from 5.4–6.4 s
    /// to 1.3–2.3 s at the same bulk goodput, and changed nothing beside a download, whose
    /// queue is the client's own SURB answers (docs/BENCHMARKS.md 4d). `false` paces at
    /// the nominal rate. Transports that bound their queue (the simulator) ignore it.
    /// Default: `true`.
    pub delay_control: bool,
    /// Send an acknowledgement after this many received frames without one (each
    /// acknowledgement costs a packet and, from the listener, a reply SURB). Default: 64.
    pub ack_every: u32,
    /// Longest an acknowledgement is delayed waiting to be coalesced or piggybacked.
    /// At the mixnet's ~50 packets/s, 64 frames take ~1.3 s, so the delay usually
    /// triggers first during bulk transfer. Default: 1 s.
    pub ack_delay: Duration,
    /// Retransmission timeout before any RTT sample exists. Default: 5 s.
    pub initial_rto: Duration,
    /// Lower bound of the retransmission timeout. Mixnet clients retransmit lost packets
    /// themselves after ~1.5 s, so a lower floor only causes spurious resends. Default: 3 s.
    pub min_rto: Duration,
    /// Upper bound of the retransmission timeout (after backoff). Default: 60 s.
    pub max_rto: Duration,
    /// Transmissions of one frame (or of an Open) before the stream fails with `TimedOut`.
    /// Default: 10.
    pub max_retransmits: u32,
    /// Maximum number of streams we opened whose `Open` the peer has not acknowledged
    /// yet; further opens wait for room (or fail with `TooManyPendingOpens` from the
    /// non-waiting call). Default: 64.
    pub max_pending_opens: usize,
    /// Maximum number of incoming streams waiting in the accept backlog; an `Open`
    /// beyond it is answered with a reset (code `REFUSED`). Default: 128.
    pub accept_backlog: usize,
    /// Connection-level receive window per peer: the most credit (bytes it may send us
    /// beyond what our application read) all streams with one peer hold together.
    /// Stream credit is carved out of it, and a new stream is refused when its initial
    /// credit (64 KiB; the whole `legacy_receive_buffer` for a reference peer) does not
    /// fit. So one peer can never take what was promised to another. Default: 16 MiB.
    pub peer_receive_window: u64,
    /// Most live streams with one peer (either direction); its further `Open`s are
    /// refused. Default: 1024.
    pub max_streams_per_peer: usize,
    /// Most streams from one peer waiting in the accept backlog, enforced once the
    /// backlog is at least half full (a lone peer's burst is not refused while there is
    /// room for everyone). Default: 64, half of `accept_backlog`.
    pub max_backlog_per_peer: usize,
    /// Most stream ids one peer may have orphan data held for. Default: 8.
    pub max_orphan_streams_per_peer: usize,
    /// Most peers holding state at once. Beyond it, a new peer's `Open` is refused and
    /// its orphan data evicts the oldest orphan data of a peer without streams (or is
    /// dropped). Default: 1024.
    pub max_peers: usize,
    /// How long an incoming stream may wait in the accept backlog; one nobody accepted
    /// by then is refused (`Reset(REFUSED)`) and removed. Default: 60 s.
    pub accept_timeout: Duration,
    /// Maximum number of peer-opened streams alive at once; further `Open`s are refused
    /// with a reset. Default: 4096.
    pub max_inbound_streams: usize,
    /// Maximum number of stream ids for which data arrived before its `Open`. Default: 64.
    pub max_orphan_streams: usize,
    /// Maximum frames held per orphan stream id. Default: 64, enough for the whole
    /// initial credit (64 KiB, about 42 full frames, plus the FIN) that a sender may
    /// send before its `Open` is answered. Held bytes per id are also bounded by that
    /// credit plus one frame, whatever this says.
    pub max_orphan_frames: usize,
    /// How long orphan data waits for its `Open` before it is discarded. Default: 60 s.
    pub orphan_ttl: Duration,
    /// Reply SURBs attached to the opener's `Open` message. Default: 10.
    pub initial_surbs: u32,
    /// Reply SURBs attached to every later opener message whatever the estimate says
    /// (a floor; the adaptive policy adds to it). Default: 0.
    pub surbs_per_message: u32,
    /// The opener tops the peer's SURB stock up when its estimate (SURBs sent minus
    /// replies seen) falls below this. Default: 12.
    pub surb_low_water: u32,
    /// The stock level a top-up aims for. Default: 24.
    pub surb_target: u32,
    /// SURBs the listener's network client keeps in reserve per sender tag: they carry its
    /// own SURB requests, never our replies, so the opener keeps this many more at the
    /// peer than its policy needs (paid once per peer, by the first stream). nym-client-core's
    /// ephemeral reply storage (`connect_new`) and the simulator keep 20. Default: 20.
    pub surb_reserve: u32,
    /// Most SURBs attached to one message. Each SURB costs about 0.73 packet on the
    /// opener's uplink, so a top-up of 32 made an ack 24 packets long; acks queued
    /// behind such top-ups arrived after the listener's 3 s minimum RTO. Eight (a 7-packet
    /// message) spreads the same SURBs over more acks at the same packet cost: four
    /// concurrent downloads on the faithful simulator went from 1–3 of ~680 frames
    /// retransmitted to none (10 seeds). Default: 8.
    pub max_surbs_per_message: u32,
    /// How long a fully closed stream stays in the table to re-acknowledge a peer's
    /// retransmitted final frames. Default: 10 s.
    pub linger: Duration,
    /// Send a keepalive `Ping` when nothing arrived on an established stream for this
    /// long. Default: 60 s.
    pub keepalive_interval: Duration,
    /// Unanswered pings after which the stream fails with `TimedOut` (delivered after
    /// the data before it). Default: 3; at most 65,535 counts.
    pub keepalive_max_missed: u32,
    /// Streams with no data in either direction for this long are reaped: reads
    /// return the bytes already received and then `Ok(0)`, writes fail. Keepalive
    /// pings do not count as data. Default: 30 min.
    pub idle_timeout: Duration,
    /// How long a closing client (graceful `close`, the facade's `disconnect()`, or
    /// every handle dropped) keeps its router running so that bytes already written
    /// are acknowledged before the network is released. Default: 15 s (three initial
    /// retransmission timeouts).
    pub drain_timeout: Duration,
    /// Sequence number of the first Data frame of each direction. The protocol says 0
    /// (PROTOCOL.md §3); both ends must agree, so change it only where both are
    /// configured together, e.g. to test the wrap at 2³² without sending 4 billion
    /// frames. Default: 0.
    pub first_seq: u32,
    /// Seed of the random generator that picks stream ids; `None` seeds from the OS
    /// (through the standard library's hasher keys). Default: `None`.
    pub id_seed: Option<u64>,
}

impl Default for MuxConfig {
    fn default() -> Self {
        Self {
            legacy_mode: false,
            max_frame_payload: 1585,
            receive_window: 256 * 1024,
            legacy_receive_buffer: 1024 * 1024,
            send_buffer: 256 * 1024,
            inbound_budget: 64 * 1024 * 1024,
            nodelay: false,
            coalesce_delay: Duration::from_millis(5),
            send_queue_target: DEFAULT_SEND_QUEUE_TARGET,
            delay_control: true,
            ack_every: 64,
            ack_delay: Duration::from_secs(1),
            initial_rto: Duration::from_secs(5),
            min_rto: Duration::from_secs(3),
            max_rto: Duration::from_secs(60),
            max_retransmits: 10,
            max_pending_opens: 64,
            accept_backlog: 128,
            peer_receive_window: 16 * 1024 * 1024,
            max_streams_per_peer: 1024,
            max_backlog_per_peer: 64,
            max_orphan_streams_per_peer: 8,
            max_peers: 1024,
            accept_timeout: Duration::from_secs(60),
            max_inbound_streams: 4096,
            max_orphan_streams: 64,
            max_orphan_frames: 64,
            orphan_ttl: Duration::from_secs(60),
            initial_surbs: 10,
            surbs_per_message: 0,
            surb_low_water: 12,
            surb_target: 24,
            surb_reserve: 20,
            max_surbs_per_message: 8,
            linger: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(60),
            keepalive_max_missed: 3,
            idle_timeout: Duration::from_secs(30 * 60),
            drain_timeout: Duration::from_secs(15),
            first_seq: 0,
            id_seed: None,
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $field:ident: $ty:ty;)*) => {
        impl MuxConfig {
            $(
                $(#[$doc])*
                #[must_use]
                pub fn $name(mut self, value: $ty) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

setters! {
    /// Sets [`MuxConfig::legacy_mode`].
    with_legacy_mode: legacy_mode: bool;
    /// Sets [`MuxConfig::max_frame_payload`] (clamped to at least 64 bytes when used).
    with_max_frame_payload: max_frame_payload: usize;
    /// Sets [`MuxConfig::receive_window`].
    with_receive_window: receive_window: u32;
    /// Sets [`MuxConfig::legacy_receive_buffer`].
    with_legacy_receive_buffer: legacy_receive_buffer: u32;
    /// Sets [`MuxConfig::send_buffer`].
    with_send_buffer: send_buffer: usize;
    /// Sets [`MuxConfig::inbound_budget`].
    with_inbound_budget: inbound_budget: usize;
    /// Sets [`MuxConfig::nodelay`].
    with_nodelay: nodelay: bool;
    /// Sets [`MuxConfig::coalesce_delay`].
    with_coalesce_delay: coalesce_delay: Duration;
    /// Sets [`MuxConfig::send_queue_target`].
    with_send_queue_target: send_queue_target: Duration;
    /// Sets [`MuxConfig::delay_control`].
    with_delay_control: delay_control: bool;
    /// Sets [`MuxConfig::ack_every`].
    with_ack_every: ack_every: u32;
    /// Sets [`MuxConfig::ack_delay`].
    with_ack_delay: ack_delay: Duration;
    /// Sets [`MuxConfig::initial_rto`].
    with_initial_rto: initial_rto: Duration;
    /// Sets [`MuxConfig::min_rto`].
    with_min_rto: min_rto: Duration;
    /// Sets [`MuxConfig::max_rto`].
    with_max_rto: max_rto: Duration;
    /// Sets [`MuxConfig::max_retransmits`].
    with_max_retransmits: max_retransmits: u32;
    /// Sets [`MuxConfig::max_pending_opens`].
    with_max_pending_opens: max_pending_opens: usize;
    /// Sets [`MuxConfig::accept_backlog`].
    with_accept_backlog: accept_backlog: usize;
    /// Sets [`MuxConfig::peer_receive_window`].
    with_peer_receive_window: peer_receive_window: u64;
    /// Sets [`MuxConfig::max_streams_per_peer`].
    with_max_streams_per_peer: max_streams_per_peer: usize;
    /// Sets [`MuxConfig::max_backlog_per_peer`].
    with_max_backlog_per_peer: max_backlog_per_peer: usize;
    /// Sets [`MuxConfig::max_orphan_streams_per_peer`].
    with_max_orphan_streams_per_peer: max_orphan_streams_per_peer: usize;
    /// Sets [`MuxConfig::max_peers`].
    with_max_peers: max_peers: usize;
    /// Sets [`MuxConfig::accept_timeout`].
    with_accept_timeout: accept_timeout: Duration;
    /// Sets [`MuxConfig::max_inbound_streams`].
    with_max_inbound_streams: max_inbound_streams: usize;
    /// Sets [`MuxConfig::max_orphan_streams`].
    with_max_orphan_streams: max_orphan_streams: usize;
    /// Sets [`MuxConfig::max_orphan_frames`].
    with_max_orphan_frames: max_orphan_frames: usize;
    /// Sets [`MuxConfig::orphan_ttl`].
    with_orphan_ttl: orphan_ttl: Duration;
    /// Sets [`MuxConfig::initial_surbs`].
    with_initial_surbs: initial_surbs: u32;
    /// Sets [`MuxConfig::surbs_per_message`].
    with_surbs_per_message: surbs_per_message: u32;
    /// Sets [`MuxConfig::surb_reserve`].
    with_surb_reserve: surb_reserve: u32;
    /// Sets [`MuxConfig::surb_low_water`].
    with_surb_low_water: surb_low_water: u32;
    /// Sets [`MuxConfig::surb_target`].
    with_surb_target: surb_target: u32;
    /// Sets [`MuxConfig::max_surbs_per_message`].
    with_max_surbs_per_message: max_surbs_per_message: u32;
    /// Sets [`MuxConfig::linger`].
    with_linger: linger: Duration;
    /// Sets [`MuxConfig::keepalive_interval`].
    with_keepalive_interval: keepalive_interval: Duration;
    /// Sets [`MuxConfig::keepalive_max_missed`].
    with_keepalive_max_missed: keepalive_max_missed: u32;
    /// Sets [`MuxConfig::idle_timeout`].
    with_idle_timeout: idle_timeout: Duration;
    /// Sets [`MuxConfig::drain_timeout`].
    with_drain_timeout: drain_timeout: Duration;
    /// Sets [`MuxConfig::first_seq`].
    with_first_seq: first_seq: u32;
    /// Sets [`MuxConfig::id_seed`].
    with_id_seed: id_seed: Option<u64>;
}

/// How many more overhead bytes an anonymous message carries than a reply
/// (21 − 1), taken off the frame payload of streams we opened.
pub(crate) const ANONYMOUS_EXTRA: usize = 20;

impl MuxConfig {
    /// The frame payload size actually used (never below 64 bytes).
    pub(crate) fn frame_payload(&self) -> usize {
        self.max_frame_payload.max(64)
    }
}
