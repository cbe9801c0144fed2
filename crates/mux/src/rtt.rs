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
    /// The smallest sample in whole milliseconds (at least 1); 0: none.
    min_ms: u32,
    /// The configured timeout bounds, in whole milliseconds (every stream keeps them, so
    /// they are kept small).
    initial_rto_ms: u32,
    min_rto_ms: u32,
    max_rto_ms: u32,
}

/// `d` in whole milliseconds, saturating.
fn whole_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn from_ms(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

impl RttEstimator {
    pub(crate) fn new(initial: Duration, min: Duration, max: Duration) -> Self {
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
            backoff: 0,
            fresh_ms: 0,
            min_ms: 0,
            initial_rto_ms: whole_ms(initial),
            min_rto_ms: whole_ms(min),
            max_rto_ms: whole_ms(max.max(min)),
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
        self.fresh_ms = whole_ms(sample).max(1);
        if self.min_ms == 0 || self.fresh_ms < self.min_ms {
            self.min_ms = self.fresh_ms;
        }
    }

    /// The smallest sample taken (millisecond resolution).
    pub(crate) fn min_rtt(&self) -> Option<Duration> {
        (self.min_ms > 0).then(|| from_ms(self.min_ms))
    }

    /// The last sample, once (for the client's delay tracker).
    pub(crate) fn take_fresh_sample(&mut self) -> Option<Duration> {
        let ms = std::mem::take(&mut self.fresh_ms);
        (ms > 0).then(|| from_ms(ms))
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
            None => from_ms(self.initial_rto_ms),
            Some(srtt) => srtt + (self.rttvar * 4).max(Duration::from_millis(10)),
        };
        let backed = base.saturating_mul(1u32 << self.backoff.min(16));
        backed.clamp(from_ms(self.min_rto_ms), from_ms(self.max_rto_ms))
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
