//! A token bucket that paces what an adapter hands to a network client by packet count.
//!
//! nym-client-core sends one packet per Poisson tick (20 ms on average) and queues
//! everything else without bound, out of our sight. A stream layer that hands over all
//! its window at once measures its round trips through that queue: retransmission
//! timeouts fire while frames still wait inside the client, and each spurious resend burns
//! a reply SURB. The pacer lets through about what the client sends, plus a short burst,
//! charging each message with the packets it will take, so frames wait in the multiplexer
//! (where the scheduler chooses what goes next) and our timers measure the network.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// nym's default `message_sending_average_delay`: one packet every 20 ms on average.
pub const NYM_SENDING_DELAY: Duration = Duration::from_millis(20);

/// Packets handed over ahead of the client's pace: the multiplexer's default
/// `send_queue_target` at 20 ms a packet (3; see [`burst_for`]).
pub const DEFAULT_BURST_PACKETS: u32 = burst_for(mux::DEFAULT_SEND_QUEUE_TARGET);

/// The slowest pace [`PacketPacer::adapt`] goes to, in multiples of the nominal interval:
/// nym's own sending delay grows at most 6-fold while its gateway link is backed up.
pub const MAX_SLOWDOWN: u32 = 6;

/// The largest slow-down of one [`PacketPacer::adapt`] step: the pace slows by at most a
/// quarter per round trip (half per step matched a slow link sooner but overshot it and
/// cost a fifth of the bulk's goodput; BENCHMARKS.md 4d).
const MAX_STEP_SLOWDOWN: f64 = 0.25;

/// Packets that take `target` at nym's pace (at least 1): the burst or queue bound that
/// keeps about `target` of queueing delay in the client.
pub const fn burst_for(target: Duration) -> u32 {
    let n = target.as_nanos().div_ceil(NYM_SENDING_DELAY.as_nanos());
    if n == 0 {
        1
    } else if n > u32::MAX as u128 {
        u32::MAX
    } else {
        n as u32
    }
}

/// A packet-count token bucket. `poll_ready` is `Pending` while the bucket is in debt;
/// `charge` takes a message's packets (a message is never split, so one larger than the
/// burst goes whole and the next waits until the client had time to send it).
#[derive(Debug)]
pub struct PacketPacer {
    interval: Duration,
    /// The network's own pace, which `adapt` never goes below.
    nominal: Duration,
    /// When `adapt` last changed the pace.
    adapted_at: Option<Instant>,
    /// Whether the network client's input channel was full since `adapt` last looked
    /// ([`PacketPacer::note_client_full`]): the client takes less than we hand it, so our
    /// own sending may be what queues (a sender whose round trips are long because of the
    /// peer's queue never fills it).
    client_full: bool,
    burst: f64,
    /// Packets that may go now; negative is the debt of the last message.
    tokens: f64,
    last: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl PacketPacer {
    /// A pacer letting through one packet per `interval` with a burst of `burst` packets
    /// (at least 1), full at first.
    pub fn new(interval: Duration, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        let interval = interval.max(Duration::from_micros(1));
        PacketPacer {
            interval,
            nominal: interval,
            adapted_at: None,
            client_full: false,
            burst,
            tokens: burst,
            last: Instant::now(),
            sleep: None,
        }
    }

    /// nym's pace: one packet per 20 ms, a burst of 3 packets.
    pub fn nym_default() -> Self {
        Self::new(NYM_SENDING_DELAY, DEFAULT_BURST_PACKETS)
    }

    /// Sets the burst (at least 1 packet): a full bucket stays full, tokens above the
    /// new burst are dropped.
    pub fn set_burst(&mut self, burst: u32) {
        self.refill(Instant::now());
        let full = self.tokens >= self.burst;
        self.burst = f64::from(burst.max(1));
        self.tokens = if full {
            self.burst
        } else {
            self.tokens.min(self.burst)
        };
    }

    /// The pace now: one packet per this interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Delay-based pacing (LEDBAT-like, on the rate), called with each new delay
    /// estimate: the streams' round trips show `queueing` delay above the path's base.
    ///
    /// - **Slow down** when the queueing is above `target`, the client's input channel
    ///   was full since the last look ([`note_client_full`](Self::note_client_full):
    ///   the client takes less than we hand it) and the multiplexer's streams had data
    ///   waiting (`data_waited`: our own bulk fills the queue, not only acks stuck
    ///   behind someone else's traffic). The step is proportional to the excess, an
    ///   eighth of `(queueing - target) / target`, at most a quarter per step, so a link
    ///   three times slower than nominal is matched in a handful of round trips rather
    ///   than a dozen.
    /// - **Speed up** by an eighth when the queueing is below half the target, or when
    ///   our data waited while the client never pushed back (we are held back by our own
    ///   pace, not by the client).
    /// - Otherwise hold. Never faster than the nominal pace, never more than
    ///   [`MAX_SLOWDOWN`] times slower, at most one change per `round_trip` (at least
    ///   100 ms): a change shows in the delays only a round trip later.
    ///
    /// Waiting on the pacer itself is not a reason to slow: at the nominal pace it is
    /// what a bulk sender always does.
    pub fn adapt(
        &mut self,
        queueing: Duration,
        round_trip: Duration,
        target: Duration,
        data_waited: bool,
    ) {
        let now = Instant::now();
        let every = round_trip.max(Duration::from_millis(100));
        if self
            .adapted_at
            .is_some_and(|at| now.saturating_duration_since(at) < every)
        {
            return;
        }
        let client_full = std::mem::take(&mut self.client_full);
        let slowest = self.nominal.saturating_mul(MAX_SLOWDOWN);
        let next = if queueing > target && client_full && data_waited {
            let excess = (queueing - target).as_secs_f64() / target.as_secs_f64().max(1e-3);
            let factor = 1.0 + (excess / 8.0).min(MAX_STEP_SLOWDOWN);
            self.interval.mul_f64(factor).min(slowest)
        } else if queueing < target / 2 || (data_waited && !client_full) {
            self.interval.mul_f64(1.0 / 1.125).max(self.nominal)
        } else {
            self.interval
        };
        self.adapted_at = Some(now);
        if next != self.interval {
            self.refill(now);
            self.interval = next;
        }
    }

    fn refill(&mut self, now: Instant) {
        let gained =
            now.saturating_duration_since(self.last).as_secs_f64() / self.interval.as_secs_f64();
        self.tokens = (self.tokens + gained).min(self.burst);
        self.last = now;
    }

    /// Ready when a message may be handed over; otherwise wakes the task when the debt is
    /// paid off.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        self.refill(now);
        if self.tokens >= 0.0 {
            self.sleep = None;
            return Poll::Ready(());
        }
        let wait = self.interval.mul_f64(-self.tokens);
        let at = now + wait;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if sleep.deadline() != at {
            sleep.as_mut().reset(at);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.sleep = None;
                self.refill(Instant::now());
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Notes that a sender waited for the network client itself (its input channel was
    /// full): our own sending outpaces the client, just as when it waits on the pacer.
    pub fn note_client_full(&mut self) {
        self.client_full = true;
    }

    /// Takes a message of `packets` packets from the bucket.
    pub fn charge(&mut self, packets: u32) {
        self.refill(Instant::now());
        self.tokens -= f64::from(packets);
    }

    /// Packets that may go now (negative: the debt still to pay off).
    pub fn tokens(&self) -> f64 {
        self.tokens
    }

    /// How long until the bucket is full again: by then the client, sending at the pace
    /// the pacer assumes, has had time to send everything handed to it.
    pub fn until_full(&self) -> Duration {
        let gained = Instant::now()
            .saturating_duration_since(self.last)
            .as_secs_f64()
            / self.interval.as_secs_f64();
        let missing = (self.burst - (self.tokens + gained)).max(0.0);
        self.interval.mul_f64(missing)
    }
}

/// A pacer shared between an adapter and whoever must wait for the client to send what
/// the adapter handed over (the facade's `disconnect`).
#[derive(Clone, Debug)]
pub struct SharedPacer(std::sync::Arc<std::sync::Mutex<PacketPacer>>);

impl SharedPacer {
    /// Shares `pacer`.
    pub fn new(pacer: PacketPacer) -> Self {
        SharedPacer(std::sync::Arc::new(std::sync::Mutex::new(pacer)))
    }

    /// Runs `f` on the pacer.
    pub fn with<R>(&self, f: impl FnOnce(&mut PacketPacer) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    /// Queueing above the target slows the pace in proportion to the excess (once per
    /// round trip, at most 6-fold) while the client pushes back and our data waits.
    /// Queueing well below the target brings the nominal pace back, never faster.
    #[tokio::test(start_paused = true)]
    async fn the_pace_follows_the_queueing_delay() {
        let ms = Duration::from_millis;
        let mut p = PacketPacer::new(ms(20), 5);
        // 200 ms over a 100 ms target: an eighth of twice the target, a quarter slower.
        p.note_client_full();
        p.adapt(ms(300), ms(800), ms(100), true);
        assert_eq!(p.interval(), ms(25));
        p.note_client_full();
        p.adapt(ms(400), ms(800), ms(100), true);
        assert_eq!(p.interval(), ms(25), "one change per round trip");
        // Far over the target: a quarter slower, no more.
        tokio::time::advance(ms(800)).await;
        p.note_client_full();
        p.adapt(ms(5000), ms(800), ms(100), true);
        assert_eq!(p.interval(), ms(31) + Duration::from_micros(250));
        // Just over the target: a small step (1 %).
        tokio::time::advance(ms(800)).await;
        p.note_client_full();
        p.adapt(ms(108), ms(800), ms(100), true);
        assert_eq!(p.interval(), ms(31) + Duration::from_micros(562_500) / 1000);
        for _ in 0..40 {
            tokio::time::advance(ms(800)).await;
            p.note_client_full();
            p.adapt(ms(400), ms(800), ms(100), true);
        }
        assert_eq!(p.interval(), ms(120), "at most six times slower");
        tokio::time::advance(ms(800)).await;
        p.note_client_full();
        p.adapt(ms(70), ms(800), ms(100), true);
        assert_eq!(
            p.interval(),
            ms(120),
            "between half the target and the target, with the client full: hold"
        );
        tokio::time::advance(ms(800)).await;
        p.adapt(ms(70), ms(800), ms(100), true);
        assert_eq!(
            p.interval(),
            ms(120).mul_f64(1.0 / 1.125),
            "our data waited but the client took everything: faster"
        );
        tokio::time::advance(ms(800)).await;
        p.adapt(ms(70), ms(800), ms(100), false);
        assert_eq!(
            p.interval(),
            ms(120).mul_f64(1.0 / 1.125),
            "nothing waited: hold"
        );
        for _ in 0..40 {
            tokio::time::advance(ms(800)).await;
            p.adapt(ms(10), ms(800), ms(100), false);
        }
        assert_eq!(p.interval(), ms(20), "back to the nominal pace, not beyond");
        assert_eq!(burst_for(ms(100)), 5);
        assert_eq!(burst_for(ms(1)), 1);
        assert_eq!(burst_for(ms(500)), 25);
    }

    /// Only a full client and our own waiting data slow the pace: waiting on the pacer
    /// (what a bulk sender at the nominal pace always does) does not, nor does queueing
    /// while none of our data waited (acks behind the client's own traffic).
    #[tokio::test(start_paused = true)]
    async fn only_a_full_client_and_our_waiting_data_slow_the_pace() {
        let ms = Duration::from_millis;
        let mut p = PacketPacer::new(ms(20), 3);
        p.charge(1000);
        assert!(!ready(&mut p));
        tokio::time::advance(ms(800)).await;
        assert!(!ready(&mut p));
        p.adapt(ms(300), ms(800), ms(100), true);
        assert!(
            p.interval() <= ms(20),
            "waiting on the pacer is not a reason"
        );
        tokio::time::advance(ms(800)).await;
        p.note_client_full();
        p.adapt(ms(300), ms(800), ms(100), false);
        assert_eq!(
            p.interval(),
            ms(20),
            "no data of ours waited: the queue is someone else's"
        );
        tokio::time::advance(ms(800)).await;
        p.note_client_full();
        p.adapt(ms(300), ms(800), ms(100), true);
        assert_eq!(p.interval(), ms(25));
    }

    fn ready(p: &mut PacketPacer) -> bool {
        p.poll_ready(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_then_the_pace_of_the_client() {
        let mut p = PacketPacer::new(Duration::from_millis(20), 5);
        for _ in 0..5 {
            assert!(ready(&mut p));
            p.charge(1);
        }
        // The burst is spent, exactly: zero tokens still let one message go.
        assert!(ready(&mut p));
        p.charge(1);
        assert!(!ready(&mut p), "in debt");
        tokio::time::advance(Duration::from_millis(19)).await;
        assert!(!ready(&mut p));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(ready(&mut p), "one interval pays one packet");
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_message_goes_whole_and_the_next_waits_for_it() {
        let mut p = PacketPacer::new(Duration::from_millis(20), 5);
        assert!(ready(&mut p));
        p.charge(30);
        assert!(!ready(&mut p));
        // 25 packets of debt take 500 ms to pay off.
        tokio::time::advance(Duration::from_millis(499)).await;
        assert!(!ready(&mut p));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(ready(&mut p));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_pacer_refills_only_up_to_its_burst() {
        let mut p = PacketPacer::new(Duration::from_millis(20), 5);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(ready(&mut p));
        assert_eq!(p.tokens(), 5.0);
    }

    #[tokio::test(start_paused = true)]
    async fn until_full_is_the_time_the_client_needs_for_what_it_was_given() {
        let mut p = PacketPacer::new(Duration::from_millis(20), 25);
        assert_eq!(p.until_full(), Duration::ZERO);
        p.charge(30);
        // 30 packets below full: 600 ms.
        assert_eq!(p.until_full(), Duration::from_millis(600));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(p.until_full(), Duration::from_millis(400));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(p.until_full(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_task_is_woken_when_the_debt_is_paid() {
        let mut p = PacketPacer::new(Duration::from_millis(20), 1);
        p.charge(3);
        let start = Instant::now();
        std::future::poll_fn(|cx| p.poll_ready(cx)).await;
        assert_eq!(start.elapsed(), Duration::from_millis(40));
    }
}
