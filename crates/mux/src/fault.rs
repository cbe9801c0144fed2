//! Faults around any transport: loss, duplication, delay and the reordering delay
//! brings, like smoltcp's `FaultInjector` around a device. For tests, and to exercise an
//! adapter (the real Nym client's, say) under conditions its network does not show on
//! demand.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use tokio::time::{Instant, Sleep};

use crate::transport::{Destination, Inbound, Transport, TransportError};

/// Which faults a [`FaultInjector`] applies, and how often (probabilities in 0.0..=1.0).
/// The default injects nothing.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Faults {
    /// Chance that an outbound message is dropped instead of sent. Default 0.
    pub send_loss: f64,
    /// Chance that an inbound message is dropped. Default 0.
    pub recv_loss: f64,
    /// Chance that an inbound message is delivered twice. Default 0.
    pub recv_duplicate: f64,
    /// Extra delay of each inbound message, drawn uniformly from this range (a range
    /// wider than the gap between messages reorders them). Default none.
    pub recv_delay: (Duration, Duration),
    /// Most inbound messages held back for their delay at once; beyond it, a message
    /// is delivered without one (memory stays bounded whatever the rates). Default 4096.
    pub max_held: usize,
    /// Seed of the fault draws: the same seed and the same traffic give the same faults.
    /// Default 0.
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            send_loss: 0.0,
            recv_loss: 0.0,
            recv_duplicate: 0.0,
            recv_delay: (Duration::ZERO, Duration::ZERO),
            max_held: 4096,
            seed: 0,
        }
    }
}

impl Faults {
    /// Sets [`Faults::send_loss`] and [`Faults::recv_loss`] to `p`.
    pub fn with_loss(mut self, p: f64) -> Self {
        self.send_loss = p;
        self.recv_loss = p;
        self
    }

    /// Sets [`Faults::recv_duplicate`].
    pub fn with_duplication(mut self, p: f64) -> Self {
        self.recv_duplicate = p;
        self
    }

    /// Sets [`Faults::recv_delay`] to `min..=max`.
    pub fn with_delay(mut self, min: Duration, max: Duration) -> Self {
        self.recv_delay = (min, max.max(min));
        self
    }

    /// Sets [`Faults::seed`].
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// What a [`FaultInjector`] did, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultStats {
    /// Outbound messages dropped.
    pub sends_dropped: u64,
    /// Inbound messages dropped.
    pub recvs_dropped: u64,
    /// Inbound messages delivered an extra time.
    pub recvs_duplicated: u64,
    /// Inbound messages held back for a delay.
    pub recvs_delayed: u64,
}

/// A [`Transport`] that wraps another and applies [`Faults`] to what passes through.
/// Time is tokio's, so a paused test clock drives the delays.
pub struct FaultInjector<Tr: Transport> {
    inner: Tr,
    faults: Faults,
    rng: ChaCha12Rng,
    /// Inbound messages waiting for their release instant (ordered by it, then arrival).
    held: BinaryHeap<Reverse<Held<Tr::SenderTag>>>,
    /// A duplicate waiting to be delivered right after its original.
    twin: Option<Inbound<Tr::SenderTag>>,
    arrivals: u64,
    timer: Option<Pin<Box<Sleep>>>,
    inner_closed: bool,
    stats: FaultStats,
}

struct Held<T> {
    at: Instant,
    order: u64,
    msg: Inbound<T>,
}

impl<T> PartialEq for Held<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl<T> Eq for Held<T> {}
impl<T> PartialOrd for Held<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Held<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

impl<Tr: Transport> FaultInjector<Tr> {
    /// Wraps `inner`.
    pub fn new(inner: Tr, faults: Faults) -> Self {
        FaultInjector {
            rng: ChaCha12Rng::seed_from_u64(faults.seed),
            inner,
            faults,
            held: BinaryHeap::new(),
            twin: None,
            arrivals: 0,
            timer: None,
            inner_closed: false,
            stats: FaultStats::default(),
        }
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &Tr {
        &self.inner
    }

    /// What was injected so far.
    pub fn stats(&self) -> FaultStats {
        self.stats
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen_bool(p.clamp(0.0, 1.0))
    }

    /// The next held message whose instant came, or `Pending` with the timer armed.
    fn poll_held(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound<Tr::SenderTag>>> {
        let Some(Reverse(first)) = self.held.peek() else {
            return Poll::Pending;
        };
        let at = first.at;
        if at <= Instant::now() {
            self.timer = None;
            return Poll::Ready(self.held.pop().map(|Reverse(h)| h.msg));
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timer = None;
                Poll::Ready(self.held.pop().map(|Reverse(h)| h.msg))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<Tr: Transport> Transport for FaultInjector<Tr> {
    type Address = Tr::Address;
    type SenderTag = Tr::SenderTag;

    fn local_address(&self) -> Self::Address {
        self.inner.local_address()
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        self.inner.poll_ready(cx)
    }

    fn send(
        &mut self,
        to: Destination<Self::Address, Self::SenderTag>,
        payload: Bytes,
        reply_surbs: u32,
    ) -> Result<(), TransportError> {
        if self.chance(self.faults.send_loss) {
            self.stats.sends_dropped += 1;
            return Ok(());
        }
        self.inner.send(to, payload, reply_surbs)
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound<Self::SenderTag>>> {
        if let Some(msg) = self.twin.take() {
            return Poll::Ready(Some(msg));
        }
        if let Poll::Ready(Some(msg)) = self.poll_held(cx) {
            return Poll::Ready(Some(msg));
        }
        while !self.inner_closed {
            let msg = match self.inner.poll_recv(cx) {
                Poll::Ready(Some(msg)) => msg,
                Poll::Ready(None) => {
                    self.inner_closed = true;
                    break;
                }
                Poll::Pending => return Poll::Pending,
            };
            if self.chance(self.faults.recv_loss) {
                self.stats.recvs_dropped += 1;
                continue;
            }
            if self.chance(self.faults.recv_duplicate) {
                self.stats.recvs_duplicated += 1;
                self.twin = Some(msg.clone());
            }
            let (min, max) = self.faults.recv_delay;
            if max.is_zero() || self.held.len() >= self.faults.max_held {
                return Poll::Ready(Some(msg));
            }
            let delay = self.rng.gen_range(min..=max);
            self.stats.recvs_delayed += 1;
            self.arrivals += 1;
            self.held.push(Reverse(Held {
                at: Instant::now() + delay,
                order: self.arrivals,
                msg,
            }));
            // A duplicate of a delayed message goes with it.
            if let Some(twin) = self.twin.take() {
                self.arrivals += 1;
                self.held.push(Reverse(Held {
                    at: Instant::now() + delay,
                    order: self.arrivals,
                    msg: twin,
                }));
            }
            if let Poll::Ready(Some(msg)) = self.poll_held(cx) {
                return Poll::Ready(Some(msg));
            }
        }
        // The inner transport closed: deliver what is still held, then end.
        if self.held.is_empty() {
            Poll::Ready(None)
        } else {
            self.poll_held(cx)
        }
    }

    fn surbs_available(&self, tag: &Self::SenderTag) -> Option<u32> {
        self.inner.surbs_available(tag)
    }

    fn set_queue_target(&mut self, target: std::time::Duration) {
        self.inner.set_queue_target(target);
    }

    fn on_path_delay(&mut self, signal: crate::DelaySignal) {
        self.inner.on_path_delay(signal);
    }

    fn send_pace(&self) -> Option<std::time::Duration> {
        self.inner.send_pace()
    }
}
