//! Simulation knobs, presets, packet arithmetic and delay sampling.

use std::time::Duration;

use rand::Rng;

/// Message bytes carried by one Sphinx "regular" packet fragment on the real network.
pub const DEFAULT_PAYLOAD_PER_PACKET: usize = 1604;

/// Framing bytes every message pays on top of its payload (the 2-byte length/padding marker).
pub const MESSAGE_FRAMING_BYTES: u64 = 2;

/// Extra framing bytes of a reply (sent through a reply SURB).
pub const REPLY_EXTRA_BYTES: u64 = 1;

/// Fixed extra bytes of an anonymous message (the sender tag and SURB count).
pub const ANONYMOUS_EXTRA_BYTES: u64 = 21;

/// Bytes one attached reply SURB occupies inside an anonymous message.
pub const SURB_BYTES: u64 = 1164;

/// Maximum number of fragments in one fragment set; longer messages are split into linked sets.
pub const FRAGMENTS_PER_SET: u32 = 255;

/// What kind of message is being framed: decides the per-message overhead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A regular message: the receiver learns nothing about the sender (2 bytes overhead).
    Regular,
    /// A reply sent through the recipient's reply SURBs (3 bytes overhead).
    Reply,
    /// An anonymous message carrying `reply_surbs` reply SURBs (2 + 21 + 1164·k bytes overhead).
    Anonymous {
        /// Number of reply SURBs attached.
        reply_surbs: u32,
    },
}

impl MessageKind {
    /// Bytes this kind of message adds on top of its payload before fragmentation.
    pub fn overhead_bytes(self) -> u64 {
        match self {
            MessageKind::Regular => MESSAGE_FRAMING_BYTES,
            MessageKind::Reply => MESSAGE_FRAMING_BYTES + REPLY_EXTRA_BYTES,
            MessageKind::Anonymous { reply_surbs } => {
                MESSAGE_FRAMING_BYTES + ANONYMOUS_EXTRA_BYTES + SURB_BYTES * u64::from(reply_surbs)
            }
        }
    }

    /// Payload plus overhead: the number of bytes that get split into packets.
    pub fn framed_len(self, payload_len: usize) -> u64 {
        (payload_len as u64).saturating_add(self.overhead_bytes())
    }
}

/// Number of Sphinx packets a message of `payload_len` bytes costs on the real network with the
/// default 1604 message bytes per packet: `ceil((payload_len + 2 + extra) / 1604)`.
///
/// This is the ideal (loss-free) packet count benchmarks compare against. Saturates at
/// `u32::MAX` for absurd sizes. Linked fragment sets (beyond 255 fragments) cost nothing extra.
///
/// ```
/// use mixnet_sim::{packets_for, MessageKind};
/// assert_eq!(packets_for(0, MessageKind::Regular), 1);
/// assert_eq!(packets_for(1602, MessageKind::Regular), 1);
/// assert_eq!(packets_for(1603, MessageKind::Regular), 2);
/// // Ten SURBs alone cost about seven packets.
/// assert_eq!(packets_for(0, MessageKind::Anonymous { reply_surbs: 10 }), 8);
/// ```
pub fn packets_for(payload_len: usize, kind: MessageKind) -> u32 {
    packets_for_with(DEFAULT_PAYLOAD_PER_PACKET, payload_len, kind)
}

/// Like [`packets_for`] with an explicit number of message bytes per packet (0 is treated as 1).
pub fn packets_for_with(payload_per_packet: usize, payload_len: usize, kind: MessageKind) -> u32 {
    let per = payload_per_packet.max(1) as u64;
    let framed = kind.framed_len(payload_len);
    let packets = framed.div_ceil(per).max(1);
    u32::try_from(packets).unwrap_or(u32::MAX)
}

/// Every knob of the simulated network. Start from a preset ([`SimConfig::realistic`],
/// [`SimConfig::instant`], [`SimConfig::hostile`]) and change fields as needed.
///
/// Out-of-range values are clamped when the network is built ([`crate::Mixnet::new`]):
/// probabilities to `0.0..=1.0` (NaN becomes 0), the SURB request size to at least 1 (and
/// its maximum to at least its minimum), `surb_check_interval` to at least 1 ms, and
/// `payload_per_packet`, `outbound_queue_packets`, `input_channel_batches` and
/// `inbound_queue_messages` to at least 1.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Seed of the single random generator every random choice comes from. Default 0.
    pub seed: u64,
    /// Message bytes carried per packet fragment. Default 1604.
    pub payload_per_packet: usize,
    /// Number of mix hops on a route. Default 3.
    pub mix_hops: u32,
    /// Mean of each hop's exponential delay. Default 15 ms.
    pub mean_hop_delay: Duration,
    /// Clamp on a single hop's delay. Default 10 s.
    pub max_hop_delay: Duration,
    /// Number of network links on a route. Default 6.
    pub links: u32,
    /// Median of each link's lognormal delay. Default 30 ms.
    pub link_median: Duration,
    /// Sigma (shape) of each link's lognormal delay. Default 0.5.
    pub link_sigma: f64,
    /// Mean gap of each client's Poisson packet emission (the link capacity). Default
    /// `Some(20 ms)`; `None` or zero means unlimited (no pacing).
    pub send_interval_mean: Option<Duration>,
    /// Probability that a packet is lost on its way (each direction alike). Default 0.01.
    pub loss_probability: f64,
    /// Acknowledgement timeout after which a lost packet is retransmitted (plus the packet's
    /// sampled route delay). Default 1.5 s.
    pub retransmit_timeout: Duration,
    /// How many times a lost reply packet (or SURB request) is retransmitted, each time
    /// with a fresh SURB, before the reply is given up (counted in `replies_dropped`).
    /// Nym: 10. Default 10.
    pub reply_max_retries: u32,
    /// How many times a lost packet of an application's regular or anonymous message is
    /// retransmitted before the message is given up (counted in `messages_dropped`); a
    /// client may choose its own ([`crate::SimClient::set_max_retransmissions`]). SURB
    /// answers are always retried without limit. A packet to a client that left is never
    /// acknowledged, so it is retried until this limit. Nym: `None` (no limit). Default
    /// `None`.
    pub forward_max_retries: Option<u32>,
    /// Probability that a delivered application message is delivered a second time. Default 0.
    pub duplicate_probability: f64,
    /// SURBs a replier keeps in reserve per sender tag: a reply packet leaves only while the
    /// tag's stock is above this (the rest of the reply waits), and only the client's own
    /// SURB requests spend from the reserve. nym-client-core's ephemeral reply storage (what
    /// `connect_new` uses) hard-codes 20 (surb-storage `backend/mod.rs`). Default 20.
    pub reply_surb_reserve: u32,
    /// The replier asks the opener for more SURBs when its stock plus the SURBs already asked
    /// for is below both this and (reply packets waiting + `reply_surb_reserve`); 0 turns the
    /// client's own requests off. Nym's ephemeral storage: 200. Default 200.
    pub reply_surb_max_stock: u32,
    /// Smallest and largest SURB request: the waiting reply packets, at least `min`, at
    /// most `max`. Nym's defaults: 10 and 50. Default (10, 50).
    pub surb_request_size: (u32, u32),
    /// Most SURBs an opener sends in answer to one request, in messages of at most 100.
    /// Nym's `maximum_allowed_reply_surb_request_size`: 500. Default 500.
    pub surb_answer_max: u32,
    /// How often a replier with waiting replies checks on them. Nym: every 5 s. Default 5 s.
    pub surb_check_interval: Duration,
    /// A check asks again when no SURB arrived for this long. Nym's
    /// `maximum_reply_surb_rerequest_waiting_period`: 10 s. Default 10 s.
    pub surb_rerequest_after: Duration,
    /// Checks that asked again before the tag's waiting replies are dropped (the next check
    /// drops them; any SURB arriving starts the count over). Nym's
    /// `maximum_reply_surbs_rerequests`: 5. Default 5.
    pub surb_max_rerequests: u32,
    /// Waiting replies of a tag from which no SURB arrived for this long are dropped at the
    /// next check (counted in `replies_dropped`). Nym's
    /// `maximum_reply_surb_drop_waiting_period`: 5 min. Default 5 min.
    pub reply_wait_timeout: Duration,
    /// Bound, in packets, of a client's send queue (including replies waiting for SURBs):
    /// `poll_ready` is pending while the queue holds this many. Nym has no such bound (its
    /// lanes grow without limit); ours keeps a hub's memory bounded. Default 1024.
    pub outbound_queue_packets: usize,
    /// Batches (whole messages) that may wait for the sending loop, which admits one per
    /// Poisson tick into its lane and sends one packet per tick (so a many-packet message
    /// queues behind the link, not in the channel). `poll_ready` is pending while this many
    /// wait; replies, retransmissions and SURB traffic are handed over regardless, as nym's
    /// reply path is unbounded. Nym's channel between message handler and sending loop: 8.
    /// Without pacing everything leaves at once and this has no effect. Default 8.
    pub input_channel_batches: usize,
    /// Messages a client receives within this window after the first form one batch, which
    /// reaches the application as nym's client hands batches over: regrouped (plain, then
    /// repliable, then replies) and reversed (the SDK's `Stream` pops from the end), so of
    /// messages completing close together the later ones come first. The real batch is
    /// what the gateway delivered in one read; its length is not a nym setting, so the
    /// window is our estimate: one sending slot (20 ms). `None`: each message on its own,
    /// in arrival order. Default `Some(20 ms)`.
    pub delivery_batch: Option<Duration>,
    /// Bound, in messages, of a client's receive queue. When it is full, further arriving
    /// messages are dropped and counted (`dropped_receiver_full` at the receiver,
    /// `messages_dropped` at the sender). Default 4096.
    pub inbound_queue_messages: usize,
    /// Largest framed message (payload plus overhead) a client may send; larger sends fail
    /// with `MessageTooLarge`. Default 32 MiB.
    pub max_message_len: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self::realistic()
    }
}

impl SimConfig {
    /// The real network's figures (see the crate docs): 3 hops of 15 ms mean, 6 links of 30 ms
    /// median, 20 ms pacing, 1% loss, 1.5 s retransmit timeout, no duplicates.
    pub fn realistic() -> Self {
        SimConfig {
            seed: 0,
            payload_per_packet: DEFAULT_PAYLOAD_PER_PACKET,
            mix_hops: 3,
            mean_hop_delay: Duration::from_millis(15),
            max_hop_delay: Duration::from_secs(10),
            links: 6,
            link_median: Duration::from_millis(30),
            link_sigma: 0.5,
            send_interval_mean: Some(Duration::from_millis(20)),
            loss_probability: 0.01,
            retransmit_timeout: Duration::from_millis(1500),
            reply_max_retries: 10,
            forward_max_retries: None,
            duplicate_probability: 0.0,
            reply_surb_reserve: 20,
            reply_surb_max_stock: 200,
            surb_request_size: (10, 50),
            surb_answer_max: 500,
            surb_check_interval: Duration::from_secs(5),
            surb_rerequest_after: Duration::from_secs(10),
            surb_max_rerequests: 5,
            reply_wait_timeout: Duration::from_secs(300),
            delivery_batch: Some(Duration::from_millis(20)),
            outbound_queue_packets: 1024,
            input_channel_batches: 8,
            inbound_queue_messages: 4096,
            max_message_len: 32 << 20,
        }
    }

    /// No delays, no loss, no pacing: a message is handed to the receiver's queue at once
    /// (the receiving task sees it on its next poll). Packets and SURBs are still counted and
    /// SURB stocks still apply (refills are immediate). For functional tests and zero-latency
    /// benchmarks.
    pub fn instant() -> Self {
        SimConfig {
            delivery_batch: None,
            mean_hop_delay: Duration::ZERO,
            link_median: Duration::ZERO,
            send_interval_mean: None,
            loss_probability: 0.0,
            duplicate_probability: 0.0,
            ..Self::realistic()
        }
    }

    /// A bad day: 10% loss, long and highly variable delays (hops of 60 ms mean, links of
    /// 50 ms median with sigma 1.0) so messages overtake one another a lot, and 5% duplicates.
    pub fn hostile() -> Self {
        SimConfig {
            mean_hop_delay: Duration::from_millis(60),
            link_median: Duration::from_millis(50),
            link_sigma: 1.0,
            loss_probability: 0.10,
            duplicate_probability: 0.05,
            ..Self::realistic()
        }
    }

    /// The same configuration with another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Packets a message of `payload_len` bytes costs with this configuration's packet size.
    pub fn packets_for(&self, payload_len: usize, kind: MessageKind) -> u32 {
        packets_for_with(self.payload_per_packet, payload_len, kind)
    }

    /// The pacing interval in force, `None` when sending is unlimited.
    pub fn pacing_interval(&self) -> Option<Duration> {
        self.send_interval_mean.filter(|d| !d.is_zero())
    }

    /// Analytic mean of one mix hop's delay, taking the clamp at `max_hop_delay` into account:
    /// `mean · (1 − e^(−max/mean))`.
    pub fn mean_hop_delay_clamped(&self) -> Duration {
        let mean = self.mean_hop_delay.as_secs_f64();
        if mean <= 0.0 {
            return Duration::ZERO;
        }
        let max = self.max_hop_delay.as_secs_f64();
        Duration::from_secs_f64(mean * (1.0 - (-max / mean).exp()))
    }

    /// Analytic mean of one link's lognormal delay: `median · e^(σ²/2)`.
    pub fn mean_link_delay(&self) -> Duration {
        let sigma = self.link_sigma;
        Duration::from_secs_f64(self.link_median.as_secs_f64() * (sigma * sigma / 2.0).exp())
    }

    /// Analytic mean of a whole route's delay (all hops plus all links); about 249 ms with the
    /// realistic figures.
    pub fn mean_route_delay(&self) -> Duration {
        self.mean_hop_delay_clamped() * self.mix_hops + self.mean_link_delay() * self.links
    }

    /// Whether a route never takes any time (no hop and no link delay).
    pub fn zero_route_delay(&self) -> bool {
        (self.mix_hops == 0 || self.mean_hop_delay.is_zero())
            && (self.links == 0 || self.link_median.is_zero())
    }

    /// Copy with every out-of-range knob clamped into range (see the type's docs).
    pub(crate) fn sanitized(mut self) -> Self {
        fn prob(p: f64) -> f64 {
            if p.is_nan() {
                0.0
            } else {
                p.clamp(0.0, 1.0)
            }
        }
        self.loss_probability = prob(self.loss_probability);
        self.duplicate_probability = prob(self.duplicate_probability);
        if !self.link_sigma.is_finite() || self.link_sigma < 0.0 {
            self.link_sigma = 0.0;
        }
        self.surb_request_size.0 = self.surb_request_size.0.max(1);
        self.surb_request_size.1 = self.surb_request_size.1.max(self.surb_request_size.0);
        self.surb_check_interval = self.surb_check_interval.max(Duration::from_millis(1));
        self.payload_per_packet = self.payload_per_packet.max(1);
        self.outbound_queue_packets = self.outbound_queue_packets.max(1);
        self.input_channel_batches = self.input_channel_batches.max(1);
        self.inbound_queue_messages = self.inbound_queue_messages.max(1);
        self
    }
}

/// Sample an exponential delay with the given mean: `−mean · ln(1 − u)`.
pub fn sample_exponential<R: Rng + ?Sized>(mean: Duration, rng: &mut R) -> Duration {
    if mean.is_zero() {
        return Duration::ZERO;
    }
    let u: f64 = rng.gen();
    Duration::from_secs_f64(-mean.as_secs_f64() * (1.0 - u).ln())
}

/// Sample a lognormal delay with the given median and sigma (Box–Muller for the normal part).
pub fn sample_lognormal<R: Rng + ?Sized>(median: Duration, sigma: f64, rng: &mut R) -> Duration {
    if median.is_zero() {
        return Duration::ZERO;
    }
    let u1: f64 = rng.gen();
    let u2: f64 = rng.gen();
    // 1 - u1 lies in (0, 1], so the logarithm is finite.
    let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let secs = median.as_secs_f64() * (sigma * z).exp();
    // Guard against absurd tails turning into a panic in from_secs_f64.
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(86_400))
}

/// Sample one mix hop's delay: exponential with `mean_hop_delay`, clamped at `max_hop_delay`.
pub fn sample_hop_delay<R: Rng + ?Sized>(config: &SimConfig, rng: &mut R) -> Duration {
    sample_exponential(config.mean_hop_delay, rng).min(config.max_hop_delay)
}

/// Sample the delay of a whole route: `mix_hops` hop delays plus `links` link delays.
/// This is what one packet takes from its sender to its recipient.
pub fn sample_route_delay<R: Rng + ?Sized>(config: &SimConfig, rng: &mut R) -> Duration {
    let mut total = Duration::ZERO;
    if !config.mean_hop_delay.is_zero() {
        for _ in 0..config.mix_hops {
            total += sample_hop_delay(config, rng);
        }
    }
    if !config.link_median.is_zero() {
        for _ in 0..config.links {
            total += sample_lognormal(config.link_median, config.link_sigma, rng);
        }
    }
    total
}
