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

/// Packets handed over ahead of the client's pace: half a second at 20 ms a packet.
pub const DEFAULT_BURST_PACKETS: u32 = 25;

/// A packet-count token bucket. `poll_ready` is `Pending` while the bucket is in debt;
/// `charge` takes a message's packets (a message is never split, so one larger than the
/// burst goes whole and the next waits until the client had time to send it).
#[derive(Debug)]
pub struct PacketPacer {
    interval: Duration,
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
        PacketPacer {
            interval: interval.max(Duration::from_micros(1)),
            burst,
            tokens: burst,
            last: Instant::now(),
            sleep: None,
        }
    }

    /// nym's pace: one packet per 20 ms, a burst of 25 packets.
    pub fn nym_default() -> Self {
        Self::new(NYM_SENDING_DELAY, DEFAULT_BURST_PACKETS)
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
