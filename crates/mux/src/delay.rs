//! The client's view of its path delay, from the round-trip samples of all its streams:
//! the base delay (the smallest round trip in the last minutes, what the path takes with
//! empty queues) and the current delay (the smallest of the last few samples). Their
//! difference estimates the queueing our own traffic causes, the signal a delay-based
//! sender (LEDBAT, RFC 6817; TCP Vegas) keeps near a target instead of waiting for loss,
//! which on a mixnet is mostly random rather than a sign of congestion.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long one bucket of the base-delay history covers.
const BASE_BUCKET: Duration = Duration::from_secs(60);
/// Buckets of base-delay history kept (LEDBAT's `BASE_HISTORY`: 10 minutes).
const BASE_BUCKETS: usize = 10;
/// Samples the current delay is the minimum of (LEDBAT's `CURRENT_FILTER`).
const CURRENT_FILTER: usize = 4;

/// The client's path delay as its streams measured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathDelay {
    /// The smallest round trip in the last 10 minutes: the path with empty queues.
    pub base: Duration,
    /// The smallest of the last 4 round trips.
    pub current: Duration,
    /// `current - base`: the queueing delay our own traffic adds (ours and, in the
    /// samples, the peer's for its acknowledgements).
    pub queueing: Duration,
}

/// What a transport that paces itself hears from the multiplexer
/// ([`Transport::on_path_delay`](crate::Transport::on_path_delay)) each time new
/// round-trip samples arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DelaySignal {
    /// The path delay now.
    pub delay: PathDelay,
    /// Whether, since the last signal, a stream still had data ready after its frame went
    /// out: its bytes waited for the transport, so our own sending may be what fills
    /// the queue. Without it the queueing is someone else's (the peer's acks, the network
    /// client's own traffic) and slowing down would only starve our streams.
    pub data_waited: bool,
}

/// Tracks [`PathDelay`] from round-trip samples.
#[derive(Debug, Default)]
pub(crate) struct DelayTracker {
    /// (bucket start, smallest sample in it), oldest first.
    base: VecDeque<(Instant, Duration)>,
    recent: VecDeque<Duration>,
    /// Samples taken so far (tells a consumer that a new estimate exists).
    samples: u64,
}

impl DelayTracker {
    /// Feeds one round-trip sample taken at `now`.
    pub(crate) fn on_sample(&mut self, now: Instant, rtt: Duration) {
        self.samples += 1;
        match self.base.back_mut() {
            Some((start, min)) if now.saturating_duration_since(*start) < BASE_BUCKET => {
                *min = (*min).min(rtt);
            }
            _ => {
                self.base.push_back((now, rtt));
                if self.base.len() > BASE_BUCKETS {
                    self.base.pop_front();
                }
            }
        }
        self.recent.push_back(rtt);
        if self.recent.len() > CURRENT_FILTER {
            self.recent.pop_front();
        }
    }

    /// The estimate, once a sample exists.
    pub(crate) fn estimate(&self) -> Option<PathDelay> {
        let base = self.base.iter().map(|&(_, m)| m).min()?;
        let current = self.recent.iter().copied().min()?;
        Some(PathDelay {
            base,
            current,
            queueing: current.saturating_sub(base),
        })
    }

    /// Samples taken so far.
    pub(crate) fn samples(&self) -> u64 {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn queueing_is_the_current_delay_above_the_base() {
        let t0 = Instant::now();
        let mut d = DelayTracker::default();
        assert_eq!(d.estimate(), None);
        d.on_sample(t0, ms(600));
        assert_eq!(d.estimate().unwrap().queueing, Duration::ZERO);
        // A queue builds: every sample is 400 ms later than the path's minimum.
        for i in 1..=4 {
            d.on_sample(t0 + ms(100 * i), ms(1000 + i));
        }
        let e = d.estimate().unwrap();
        assert_eq!(e.base, ms(600));
        assert_eq!(e.current, ms(1001));
        assert_eq!(e.queueing, ms(401));
        // One fast sample among slow ones shows the queue drained.
        d.on_sample(t0 + ms(600), ms(650));
        assert_eq!(d.estimate().unwrap().queueing, ms(50));
        assert_eq!(d.samples(), 6);
    }

    #[test]
    fn the_base_forgets_after_ten_minutes() {
        let t0 = Instant::now();
        let mut d = DelayTracker::default();
        d.on_sample(t0, ms(300));
        // The path got longer for good (a route change): after ten minutes the old
        // minimum no longer counts, so the longer path is not read as queueing.
        for m in 1..=11 {
            d.on_sample(t0 + BASE_BUCKET * m, ms(800));
        }
        let e = d.estimate().unwrap();
        assert_eq!(e.base, ms(800));
        assert_eq!(e.queueing, Duration::ZERO);
    }
}
