//! Round-trip-time estimation and the retransmission timeout (RFC 6298 style), with
//! floors and ceilings suited to multi-second mixnet latency.

use std::time::Duration;

/// Smoothed RTT, RTT variance and the current retransmission timeout with backoff.
///
/// Every stream keeps one and reads its timeout after every operation, so it is kept in
/// whole microseconds and milliseconds (36 bytes, not 88 with `Duration`s) and the
/// timeout is computed when a sample or a timeout changes it, not on each read.
#[derive(Clone, Debug)]
pub(crate) struct RttEstimator {
    /// The smoothed RTT in microseconds, once `measured`.
    srtt_us: u32,
    rttvar_us: u32,
    /// The retransmission timeout with backoff, clamped, in milliseconds.
    rto_ms: u32,
    /// The last sample in whole milliseconds (at least 1) until the client's delay
    /// tracker took it; 0: none.
    fresh_ms: u32,
    /// The smallest sample in whole milliseconds (at least 1); 0: none.
    min_ms: u32,
    /// The configured timeout bounds, in milliseconds.
    initial_rto_ms: u32,
    min_rto_ms: u32,
    max_rto_ms: u32,
    backoff: u8,
    measured: bool,
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
        let mut e = Self {
            srtt_us: 0,
            rttvar_us: 0,
            rto_ms: 0,
            fresh_ms: 0,
            min_ms: 0,
            initial_rto_ms: whole_ms(initial),
            min_rto_ms: whole_ms(min),
            max_rto_ms: whole_ms(max.max(min)),
            backoff: 0,
            measured: false,
        };
        e.update_rto();
        e
    }

    /// Feeds one RTT sample (from a frame that was sent exactly once) and clears the
    /// backoff, as RFC 6298 §5.7 allows once a new sample arrives.
    pub(crate) fn on_sample(&mut self, sample: Duration) {
        let us = u32::try_from(sample.as_micros()).unwrap_or(u32::MAX);
        if self.measured {
            let delta = u64::from(self.srtt_us.abs_diff(us));
            // rttvar = 3/4 rttvar + 1/4 |srtt - sample|; srtt = 7/8 srtt + 1/8 sample
            self.rttvar_us = ((u64::from(self.rttvar_us) * 3 + delta) / 4) as u32;
            self.srtt_us = ((u64::from(self.srtt_us) * 7 + u64::from(us)) / 8) as u32;
        } else {
            self.measured = true;
            self.srtt_us = us;
            self.rttvar_us = us / 2;
        }
        self.backoff = 0;
        self.fresh_ms = whole_ms(sample).max(1);
        if self.min_ms == 0 || self.fresh_ms < self.min_ms {
            self.min_ms = self.fresh_ms;
        }
        self.update_rto();
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
        self.update_rto();
    }

    /// The smoothed RTT, if any sample was taken.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.measured
            .then(|| Duration::from_micros(u64::from(self.srtt_us)))
    }

    /// The retransmission timeout including backoff, clamped to `[min, max]`.
    pub(crate) fn rto(&self) -> Duration {
        from_ms(self.rto_ms)
    }

    /// `srtt + max(4 rttvar, 10 ms)` (the initial timeout before any sample), doubled per
    /// backoff step, rounded up to the millisecond and clamped.
    fn update_rto(&mut self) {
        let base_us = if self.measured {
            u64::from(self.srtt_us) + (u64::from(self.rttvar_us) * 4).max(10_000)
        } else {
            u64::from(self.initial_rto_ms) * 1000
        };
        let backed_ms = (base_us << self.backoff).div_ceil(1000);
        self.rto_ms =
            backed_ms.clamp(u64::from(self.min_rto_ms), u64::from(self.max_rto_ms)) as u32;
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
