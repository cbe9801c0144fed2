//! A stream's timers, in one table.
//!
//! Every deadline a stream can have is one [`Timer`]. The table is derived from the
//! stream's state whenever it is needed (not set and cleared by hand at each
//! transition), so a timer can never outlive the state that armed it; the core keeps
//! only the earliest instant per stream in its timer queue.

use std::time::Instant;

/// One kind of stream deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Payload held back for reply SURBs looks at the stock again (listener side).
    SurbRetry,
    /// The idle timeout reaps the stream.
    Idle,
    /// A keepalive (or zero-credit probe) `Ping` is due; too many unanswered end it.
    Keepalive,
    /// The `Open` is retransmitted, or the stream fails once it was sent too often.
    Open,
    /// A delayed acknowledgement is due.
    Ack,
    /// A frame SACKed past while still young is presumed lost if still unacknowledged.
    Suspect,
    /// The retransmission timeout (RTO) of the oldest unacknowledged frame.
    Retransmit,
    /// Buffered small writes stop waiting to be coalesced.
    Coalesce,
    /// A finished stream stops lingering for late retransmissions.
    Linger,
}

impl Timer {
    /// Every timer, in the order [`on_timeout`](super::StreamState::on_timeout)
    /// handles expired ones.
    pub(crate) const ALL: [Timer; 9] = [
        Timer::SurbRetry,
        Timer::Idle,
        Timer::Keepalive,
        Timer::Open,
        Timer::Ack,
        Timer::Suspect,
        Timer::Retransmit,
        Timer::Coalesce,
        Timer::Linger,
    ];

    /// Timers whose work, once due, waits in the core's ready queue (a transmit or a
    /// removal) rather than in a timer: only their future deadlines count.
    pub(crate) fn due_work_is_queued(self) -> bool {
        matches!(self, Timer::Ack | Timer::Coalesce | Timer::Linger)
    }
}

/// The armed deadline of each [`Timer`] of one stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimerTable([Option<Instant>; 9]);

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Option<Instant>) {
        self.0[timer as usize] = at;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer as usize]
    }

    /// The earliest deadline the core must wake up for after `now`: due timers whose
    /// work waits in the ready queue do not count. (`StreamState::next_deadline` computes
    /// the same without building the table; a test holds them equal.)
    #[cfg(test)]
    pub(crate) fn next_after(&self, now: Instant) -> Option<Instant> {
        Timer::ALL
            .iter()
            .filter_map(|&t| {
                let at = self.get(t)?;
                (at > now || !t.due_work_is_queued()).then_some(at)
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn next_after_skips_due_timers_whose_work_is_queued() {
        let now = Instant::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next_after(now), None);
        t.set(Timer::Ack, Some(now));
        t.set(Timer::Linger, Some(now - Duration::from_secs(1)));
        assert_eq!(
            t.next_after(now),
            None,
            "due ack and linger wait in the ready queue"
        );
        t.set(Timer::Idle, Some(now + Duration::from_secs(5)));
        t.set(Timer::Coalesce, Some(now + Duration::from_millis(5)));
        assert_eq!(t.next_after(now), Some(now + Duration::from_millis(5)));
        t.set(Timer::Retransmit, Some(now));
        assert_eq!(t.next_after(now), Some(now), "a due RTO is still reported");
        assert_eq!(t.get(Timer::Retransmit), Some(now));
        t.set(Timer::Retransmit, None);
        assert_eq!(t.get(Timer::Retransmit), None);
        assert_eq!(t.next_after(now), Some(now + Duration::from_millis(5)));
    }
}
