//! A deterministic, in-process simulated Nym mixnet.
//!
//! This is the network every nym-stream test and benchmark runs on. It knows nothing of
//! streams: clients send whole messages to addresses and receive whole messages, with what the
//! real network does to them:
//!
//! - **Sphinx-sized packets.** A message of `L` bytes costs `ceil((L + 2 + extra) / 1604)`
//!   packets ([`packets_for`]); `extra` is 1 for a reply and `21 + 1164·k` for an anonymous
//!   message carrying `k` reply SURBs.
//! - **All-or-nothing delivery.** A message arrives when its last fragment does.
//! - **Mix delays.** Each packet crosses 3 mix hops (exponential, mean 15 ms, clamped at 10 s)
//!   and 6 links (lognormal, median 30 ms, sigma 0.5), so packets and messages overtake one
//!   another.
//! - **Send rate.** Each client emits packets as a Poisson process (mean gap 20 ms): that is
//!   the link capacity. As in nym's client, each tick admits one whole message from a
//!   channel of 8 into its lane (application, retransmissions, SURB requests, SURB answers)
//!   and sends one packet, from a short lane first.
//! - **Loss.** 1% of packets are lost; the sender retransmits each after the 1.5 s
//!   acknowledgement timeout plus its route delay (application messages forever unless the
//!   client set a limit, replies up to 10 times). Packets to a client that left are never
//!   acknowledged.
//! - **Reply SURBs and sender tags.** Anonymous messages carry single-use reply SURBs; the
//!   receiver sees only a 16-byte [`SenderTag`] (stable per sender/recipient pair), keeps a
//!   SURB stock per tag, keeps 20 in reserve, spends one per reply packet, and asks the
//!   opener for more on its own (the opener's client answers on its own), as
//!   nym-client-core 1.21.6 does. Replies without SURBs wait; after six unanswered
//!   re-requests (about 45 s without a SURB) they are dropped.
//!
//! Every random choice comes from one seeded ChaCha generator and every delay runs on tokio's
//! clock, so under `start_paused` a run replays exactly and simulated hours pass in seconds.
//! The network's events are processed by a background task spawned on the current tokio
//! runtime (when the [`Mixnet`] is built inside one, or else on first use inside one); the task
//! ends when the last [`Mixnet`] handle and [`SimClient`] are dropped.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use mixnet_sim::{Mixnet, SimConfig};
//!
//! # fn main() -> Result<(), mixnet_sim::SimError> {
//! let rt = tokio::runtime::Builder::new_current_thread()
//!     .enable_time()
//!     .start_paused(true)
//!     .build()
//!     .expect("a runtime");
//! rt.block_on(async {
//!     let net = Mixnet::new(SimConfig::realistic().with_seed(7));
//!     let mut alice = net.connect();
//!     let mut bob = net.connect();
//!
//!     // Alice writes anonymously, attaching 25 reply SURBs.
//!     alice.reserve().await?;
//!     alice.send_anonymous(bob.address(), Bytes::from_static(b"hello bob"), 25)?;
//!     let msg = bob.recv().await.expect("bob is connected");
//!     assert_eq!(&msg.payload[..], b"hello bob");
//!     let tag = msg.sender_tag.expect("anonymous messages carry a sender tag");
//!     // Like the real client, Bob keeps 20 of them in reserve for his own SURB requests.
//!     assert_eq!(bob.surbs_available(&tag), 5);
//!
//!     // Bob answers without ever learning Alice's address.
//!     bob.send_reply(tag, Bytes::from_static(b"hi, whoever you are"))?;
//!     let reply = alice.recv().await.expect("alice is connected");
//!     assert_eq!(&reply.payload[..], b"hi, whoever you are");
//!     assert_eq!(reply.sender_tag, None);
//!     assert!(alice.stats().packets_sent >= 4);
//!     Ok(())
//! })
//! # }
//! ```

mod config;
mod engine;
pub mod hub;
mod identity;
mod lanes;
mod types;

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

pub use config::{
    packets_for, packets_for_with, sample_exponential, sample_hop_delay, sample_lognormal,
    sample_route_delay, MessageKind, SimConfig, ANONYMOUS_EXTRA_BYTES, DEFAULT_PAYLOAD_PER_PACKET,
    FRAGMENTS_PER_SET, MESSAGE_FRAMING_BYTES, REPLY_EXTRA_BYTES, SURB_BYTES,
};
pub use types::{
    Address, AddressParseError, ClientStats, ReceivedMessage, SenderTag, SimError, ADDRESS_PREFIX,
};

pub use engine::DriverLag;
use engine::{ClientId, Engine};
pub use identity::Identity;

struct Shared {
    engine: Mutex<Engine>,
    notify: Arc<Notify>,
    config: SimConfig,
    driver_started: AtomicBool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Lets the driver notice that the network is gone and end.
        self.notify.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Engine> {
        // The engine never panics while holding the lock on purpose; if a panic did poison it,
        // its state is still consistent enough to keep a simulation running.
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ensure_driver(self: &Arc<Self>) {
        if self.driver_started.load(AtomicOrdering::Acquire) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self
            .driver_started
            .compare_exchange(false, true, AtomicOrdering::AcqRel, AtomicOrdering::Acquire)
            .is_ok()
        {
            handle.spawn(drive(Arc::downgrade(self), Arc::clone(&self.notify)));
        }
    }

    /// Run `f` on the engine, then wake whoever it made ready (outside the lock).
    fn with<R>(self: &Arc<Self>, f: impl FnOnce(&mut Engine) -> R) -> R {
        self.ensure_driver();
        let (r, wakers, notify) = {
            let mut e = self.lock();
            let r = f(&mut e);
            let (w, n) = e.take_wakeups();
            (r, w, n)
        };
        for w in wakers {
            w.wake();
        }
        if notify {
            self.notify.notify_one();
        }
        r
    }
}

/// The network's clock: processes due events, then sleeps until the next one or until a
/// client schedules something earlier.
async fn drive(weak: Weak<Shared>, notify: Arc<Notify>) {
    loop {
        let next = {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let (wakers, next) = {
                let mut e = shared.lock();
                e.run_due(Instant::now());
                let (w, _) = e.take_wakeups();
                (w, e.arm())
            };
            for w in wakers {
                w.wake();
            }
            next
        };
        match next {
            Some(at) => {
                // Either the deadline passed or something earlier was scheduled: loop anyway.
                let _ = tokio::time::timeout_at(at, notify.notified()).await;
            }
            None => notify.notified().await,
        }
    }
}

/// A simulated mixnet. Cheap to clone: all clones are the same network.
#[derive(Clone)]
pub struct Mixnet {
    shared: Arc<Shared>,
}

impl fmt::Debug for Mixnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mixnet")
            .field("seed", &self.shared.config.seed)
            .finish_non_exhaustive()
    }
}

impl Mixnet {
    /// A new network with this configuration (out-of-range knobs are clamped, see
    /// [`SimConfig`]). Call it inside a tokio runtime with the time driver enabled, or at least
    /// use the network only inside one: its background task is spawned on the current runtime.
    pub fn new(config: SimConfig) -> Self {
        let config = config.sanitized();
        let shared = Arc::new(Shared {
            engine: Mutex::new(Engine::new(config.clone())),
            notify: Arc::new(Notify::new()),
            config,
            driver_started: AtomicBool::new(false),
        });
        shared.ensure_driver();
        Mixnet { shared }
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// Connect a new client with a fresh random address (drawn from the seeded generator).
    pub fn connect(&self) -> SimClient {
        let (id, addr) = self.shared.with(|e| e.connect());
        self.client(id, addr)
    }

    /// Connect a client whose address is the identity's ([`Identity::address`]): the
    /// same identity gets the same address every time, and messages sent to the address
    /// while it was away are lost as for any offline client. Fails with
    /// [`SimError::AddressInUse`] while another client with that identity is connected.
    pub fn connect_with_identity(&self, identity: &Identity) -> Result<SimClient, SimError> {
        self.connect_address(identity.address())
    }

    pub(crate) fn connect_address(&self, addr: Address) -> Result<SimClient, SimError> {
        let id = self.shared.with(|e| e.connect_address(addr))?;
        Ok(self.client(id, addr))
    }

    fn client(&self, id: ClientId, addr: Address) -> SimClient {
        SimClient {
            inner: ClientInner::Local(LocalClient {
                shared: Arc::clone(&self.shared),
                id,
                addr,
            }),
        }
    }

    /// How late the network has processed its events against their schedule, so far
    /// (real time: whether the machine keeps up).
    pub fn driver_lag(&self) -> DriverLag {
        self.shared.lock().driver_lag()
    }

    /// Statistics of every client that ever joined this network, summed.
    pub fn total_stats(&self) -> ClientStats {
        self.shared.lock().total_stats()
    }

    /// Statistics of the client with this address, also after it disconnected; `None` if no
    /// client of this network ever had the address.
    pub fn stats(&self, addr: &Address) -> Option<ClientStats> {
        self.shared.lock().stats_by_addr(addr)
    }

    /// Forcibly disconnect the client with this address, as if its process died: its queued
    /// packets are dropped, its address becomes unreachable, and its [`SimClient`] gets
    /// [`SimError::Disconnected`] from sends and `None` from receives. Returns whether a
    /// connected client had the address.
    pub fn disconnect_client(&self, addr: &Address) -> bool {
        self.shared.with(|e| match e.id_of(addr) {
            Some(id) if e.is_connected(id) => {
                e.disconnect(id);
                true
            }
            _ => false,
        })
    }
}

/// One client's end of the network: of an in-process [`Mixnet`] ([`Mixnet::connect`]) or
/// of a [`hub::Hub`] in another process ([`SimClient::connect_hub`]); both offer the same
/// operations. Dropping it disconnects the client.
///
/// A driver task typically owns it and polls [`SimClient::poll_ready`] before each send and
/// [`SimClient::poll_recv`] for arrivals.
pub struct SimClient {
    inner: ClientInner,
}

enum ClientInner {
    Local(LocalClient),
    Remote(hub::RemoteClient),
}

struct LocalClient {
    shared: Arc<Shared>,
    id: ClientId,
    addr: Address,
}

impl fmt::Debug for SimClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimClient")
            .field("address", &self.address())
            .field("hub", &matches!(self.inner, ClientInner::Remote(_)))
            .finish_non_exhaustive()
    }
}

impl SimClient {
    /// Joins the hub at `hub` (a [`hub::Hub`], possibly in another process) with this
    /// identity: the client's address is [`Identity::address`], so the same identity
    /// gets the same address every time. Fails with a clear error when the hub cannot be
    /// reached ([`SimError::HubUnreachable`]) or refuses ([`SimError::HubRefused`]: an
    /// unsupported version, the address already connected, the hub full). Call it inside a
    /// tokio runtime with the I/O and time drivers.
    pub async fn connect_hub(hub: SocketAddr, identity: &Identity) -> Result<SimClient, SimError> {
        Ok(SimClient {
            inner: ClientInner::Remote(hub::RemoteClient::connect(hub, identity).await?),
        })
    }

    /// This client's address.
    pub fn address(&self) -> Address {
        match &self.inner {
            ClientInner::Local(c) => c.addr,
            ClientInner::Remote(c) => c.address(),
        }
    }

    /// Ready when the send queue has room: fewer than `input_channel_batches` messages wait
    /// for the sending loop, and fewer than `outbound_queue_packets` packets (or this
    /// client's own limit) are queued, counting replies that wait for SURBs.
    /// `Err(Disconnected)` after a forced disconnect,
    /// `Err(HubGone)` once a hub client lost its hub.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SimError>> {
        match &mut self.inner {
            ClientInner::Local(c) => match c.shared.with(|e| e.poll_ready(c.id, cx.waker())) {
                Ok(true) => Poll::Ready(Ok(())),
                Ok(false) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            ClientInner::Remote(c) => c.poll_ready(cx),
        }
    }

    /// Lowers this client's bound on its send queue to `packets` (at least 1), below the
    /// network's `outbound_queue_packets`; `None` lifts it. A sender that keeps the network's
    /// queue short keeps its data (and the choice of what goes next) with itself, and its
    /// round-trip estimates measure the network rather than its own queue. For in-process
    /// clients; a hub client keeps the hub's own bound.
    pub fn set_send_queue_limit(&mut self, packets: Option<usize>) {
        if let ClientInner::Local(c) = &mut self.inner {
            let id = c.id;
            c.shared.with(|e| e.set_queue_limit(id, packets));
        }
    }

    /// The network's sending pace for this client, one packet per this interval: `None`
    /// when sending is unlimited (the instant preset) or, for a hub client, not known here.
    pub fn pacing_interval(&self) -> Option<Duration> {
        match &self.inner {
            ClientInner::Local(c) => c.shared.with(|e| e.pacing_interval()),
            ClientInner::Remote(_) => None,
        }
    }

    /// How many times nym's client may retransmit a lost packet of this client's regular
    /// and anonymous messages before giving the message up (`None`: no limit, nym's
    /// default; `InputMessage::with_max_retransmissions` on the real client). Without a
    /// limit, messages to a client that left are retried forever and take sending slots
    /// from everything else. For in-process clients; a hub client keeps the network's
    /// `forward_max_retries`.
    pub fn set_max_retransmissions(&mut self, max: Option<u32>) {
        if let ClientInner::Local(c) = &mut self.inner {
            let id = c.id;
            c.shared.with(|e| e.set_max_retransmissions(id, max));
        }
    }

    /// Wait until the send queue has room (see [`SimClient::poll_ready`]).
    pub async fn reserve(&mut self) -> Result<(), SimError> {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// Send a regular message: the receiver sees `sender_tag: None`.
    ///
    /// Never blocks. Admission is the caller's business: call [`SimClient::poll_ready`] first;
    /// a send accepted with room for one packet may overshoot the queue bound by the rest of
    /// the message's packets. Messages to unknown or disconnected addresses cost their packets
    /// and are then counted in `messages_dropped`.
    pub fn send_regular(&mut self, to: Address, payload: Bytes) -> Result<(), SimError> {
        match &mut self.inner {
            ClientInner::Local(c) => {
                let id = c.id;
                c.shared
                    .with(|e| e.send(id, to, payload, None, Instant::now()))
            }
            ClientInner::Remote(c) => c.send_regular(to, payload),
        }
    }

    /// Send an anonymous message carrying `reply_surbs` reply SURBs (may be 0): the receiver
    /// sees `Some(tag)`, can reply through it, and never learns this client's address. Queue
    /// admission as for [`SimClient::send_regular`].
    pub fn send_anonymous(
        &mut self,
        to: Address,
        payload: Bytes,
        reply_surbs: u32,
    ) -> Result<(), SimError> {
        match &mut self.inner {
            ClientInner::Local(c) => {
                let id = c.id;
                c.shared
                    .with(|e| e.send(id, to, payload, Some(reply_surbs), Instant::now()))
            }
            ClientInner::Remote(c) => c.send_anonymous(to, payload, reply_surbs),
        }
    }

    /// Reply to the sender of an anonymous message through its tag. Each reply packet spends
    /// one SURB from the stock for `tag`, and only while the stock is above the reserve
    /// (`reply_surb_reserve`); the rest of the reply waits, in order with other replies to
    /// that tag. Like nym's client, this client asks the opener for more SURBs on its own,
    /// asks again while replies wait and no SURB comes, and drops the waiting replies after
    /// `surb_max_rerequests` such requests (or `reply_wait_timeout`). Nothing tells the
    /// caller: the reply is accepted either way. Arrives with `sender_tag: None`.
    pub fn send_reply(&mut self, tag: SenderTag, payload: Bytes) -> Result<(), SimError> {
        match &mut self.inner {
            ClientInner::Local(c) => {
                let id = c.id;
                c.shared
                    .with(|e| e.send_reply(id, tag, payload, Instant::now()))
            }
            ClientInner::Remote(c) => c.send_reply(tag, payload),
        }
    }

    /// The next received message; `Ready(None)` once the client is disconnected (or its
    /// hub is gone).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ReceivedMessage>> {
        match &mut self.inner {
            ClientInner::Local(c) => match c.shared.with(|e| e.poll_recv(c.id, cx.waker())) {
                Some(m) => Poll::Ready(m),
                None => Poll::Pending,
            },
            ClientInner::Remote(c) => c.poll_recv(cx),
        }
    }

    /// Wait for the next received message; `None` once the client is disconnected.
    pub async fn recv(&mut self) -> Option<ReceivedMessage> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// SURBs replies to `tag` may use now: the stock above the reserve (0 for unknown
    /// tags). A hub client knows the figure the hub last reported (with every message from
    /// the tag, and every 100 ms when it changed), less the replies sent since.
    pub fn surbs_available(&self, tag: &SenderTag) -> u32 {
        match &self.inner {
            ClientInner::Local(c) => c.shared.lock().surbs_available(c.id, tag),
            ClientInner::Remote(c) => c.surbs_available(tag),
        }
    }

    /// Usable SURBs for every sender tag this client has seen (for the hub's updates).
    pub(crate) fn surb_stocks(&self) -> Vec<(SenderTag, u32)> {
        match &self.inner {
            ClientInner::Local(c) => c.shared.lock().surb_stocks(c.id),
            ClientInner::Remote(_) => Vec::new(),
        }
    }

    /// This client's statistics so far (a hub client: as of the hub's last update, at
    /// most 100 ms old).
    pub fn stats(&self) -> ClientStats {
        match &self.inner {
            ClientInner::Local(c) => c.shared.lock().stats_of(c.id),
            ClientInner::Remote(c) => c.stats(),
        }
    }

    /// Leave the network (the same as dropping the client): queued packets are dropped and the
    /// address becomes unreachable. Packets already in the mixnet still arrive.
    pub fn disconnect(self) {
        drop(self);
    }
}

impl Drop for LocalClient {
    fn drop(&mut self) {
        let wakers = {
            let mut e = self.shared.lock();
            e.disconnect(self.id);
            e.take_wakeups().0
        };
        for w in wakers {
            w.wake();
        }
    }
}

impl futures_core::Stream for SimClient {
    type Item = ReceivedMessage;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ReceivedMessage>> {
        self.get_mut().poll_recv(cx)
    }
}
