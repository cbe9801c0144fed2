//! Round-trip-time estimation and the retransmission timeout (RFC 6298 style), with
//! floors and ceilings suited to multi-second mixnet latency.

use std::time::Duration;

/// Smoothed RTT, RTT variance and the current retransmission timeout with backoff.
#[derive(Clone, Debug)]
pub(crate) struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    backoff: u32,
    /// The last sample in whole milliseconds (at least 1) until the client's delay
    /// tracker took it; 0: none. (A `u32` fits where an `Option<Duration>` would grow
    /// every stream by 16 bytes.)
    fresh_ms: u32,
    initial: Duration,
    min: Duration,
    max: Duration,
}

impl RttEstimator {
    pub(crate) fn new(initial: Duration, min: Duration, max: Duration) -> Self {
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
            backoff: 0,
            fresh_ms: 0,
            initial,
            min,
            max: max.max(min),
        }
    }

    /// Feeds one RTT sample (from a frame that was sent exactly once) and clears the
    /// backoff, as RFC 6298 §5.7 allows once a new sample arrives.
    pub(crate) fn on_sample(&mut self, sample: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(sample);
                // rttvar = 3/4 rttvar + 1/4 |srtt - sample|; srtt = 7/8 srtt + 1/8 sample
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
        self.backoff = 0;
        let ms = u32::try_from(sample.as_millis()).unwrap_or(u32::MAX);
        self.fresh_ms = ms.max(1);
    }

    /// The last sample, once (for the client's delay tracker).
    pub(crate) fn take_fresh_sample(&mut self) -> Option<Duration> {
        let ms = std::mem::take(&mut self.fresh_ms);
        (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
    }

    /// Doubles the timeout after a retransmission timer fired.
    pub(crate) fn on_timeout(&mut self) {
        self.backoff = (self.backoff + 1).min(16);
    }

    /// The smoothed RTT, if any sample was taken.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The retransmission timeout including backoff, clamped to `[min, max]`.
    pub(crate) fn rto(&self) -> Duration {
        let base = match self.srtt {
            None => self.initial,
            Some(srtt) => srtt + (self.rttvar * 4).max(Duration::from_millis(10)),
        };
        let backed = base.saturating_mul(1u32 << self.backoff.min(16));
        backed.clamp(self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est() -> RttEstimator {
        RttEstimator::new(
            Duration::from_secs(5),
            Duration::from_secs(3),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn initial_rto_before_samples() {
        assert_eq!(est().rto(), Duration::from_secs(5));
    }

    #[test]
    fn first_sample_sets_srtt_and_var() {
        let mut e = est();
        e.on_sample(Duration::from_secs(2));
        assert_eq!(e.srtt(), Some(Duration::from_secs(2)));
        // 2 s + 4 * 1 s = 6 s
        assert_eq!(e.rto(), Duration::from_secs(6));
    }

    #[test]
    fn floor_and_ceiling_hold() {
        let mut e = est();
        e.on_sample(Duration::from_millis(100));
        assert_eq!(e.rto(), Duration::from_secs(3));
        for _ in 0..20 {
            e.on_timeout();
        }
        assert_eq!(e.rto(), Duration::from_secs(60));
        e.on_sample(Duration::from_millis(100));
        assert!(e.rto() < Duration::from_secs(60));
    }

    #[test]
    fn backoff_doubles() {
        let mut e = est();
        e.on_timeout();
        assert_eq!(e.rto(), Duration::from_secs(10));
        e.on_timeout();
        assert_eq!(e.rto(), Duration::from_secs(20));
    }
}
