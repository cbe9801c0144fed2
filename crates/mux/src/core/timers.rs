//! The core's timers: one queue of stream deadlines (each stream's earliest, from its
//! own timer table), the orphan store's expiry and the accept backlog's timeout.
//!
//! The stream queue is a binary heap with lazy deletion: a stream whose deadline moved
//! earlier pushes a new entry and leaves the old one, which is skipped when it surfaces
//! (cheaper than keeping an ordered set exact: a set's node shuffling cost 9 % of the
//! 100-stream transfer under callgrind). The heap's top is never stale: whatever can
//! uncover a stale entry (a removal, timers firing) prunes the top, so `poll_timeout`
//! only reads.

use std::cmp::Reverse;

use super::*;

/// Which of the core's timer sources is next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CoreTimer {
    /// The earliest stream deadline in the timer queue.
    Stream,
    /// Orphan frames reach their time-to-live.
    Orphans,
    /// The oldest unaccepted stream reaches `accept_timeout`.
    Backlog,
}

impl<A, T> Core<A, T>
where
    A: Copy + Eq + Hash + std::fmt::Debug,
    T: Copy + Eq + Hash + std::fmt::Debug,
{
    /// Each of the core's timer sources with its next deadline.
    fn core_timers(&self) -> [(CoreTimer, Option<Instant>); 3] {
        let backlog = self
            .accept_queue
            .front()
            .and_then(|&(_, since)| since.checked_add(self.cfg.accept_timeout));
        [
            (
                CoreTimer::Stream,
                self.timers.peek().map(|&Reverse((at, _))| at),
            ),
            (CoreTimer::Orphans, self.orphans.next_expiry()),
            (CoreTimer::Backlog, backlog),
        ]
    }

    /// When [`Core::handle_timeout`] should next be called (`None`: no timer is armed).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        debug_assert!(
            self.timers.peek().is_none_or(|&Reverse((at, local))| self
                .streams
                .get(&local)
                .is_some_and(|e| e.scheduled == Some(at))),
            "a stale entry on top of the timer queue"
        );
        self.core_timers()
            .into_iter()
            .filter_map(|(_, at)| at)
            .min()
    }

    /// Registers `local`'s deadline `at` (an earlier one than it had, or its first).
    pub(super) fn schedule(&mut self, local: LocalId, at: Instant) {
        self.timers.push(Reverse((at, local)));
    }

    /// Drops stale entries from the top of the timer queue: entries of removed streams
    /// and entries a stream replaced by an earlier deadline.
    pub(super) fn prune_timers(&mut self) {
        while let Some(&Reverse((at, local))) = self.timers.peek() {
            if self
                .streams
                .get(&local)
                .is_some_and(|e| e.scheduled == Some(at))
            {
                break;
            }
            self.timers.pop();
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (timer, at) in self.core_timers() {
            if at.is_none_or(|at| at > now) {
                continue;
            }
            match timer {
                CoreTimer::Orphans => self.expire_orphans(now),
                CoreTimer::Backlog => self.expire_backlog(now),
                CoreTimer::Stream => self.fire_stream_timers(now),
            }
        }
        #[cfg(debug_assertions)]
        if let Some(next) = self.poll_timeout() {
            debug_assert!(
                next > now,
                "timer contract: a deadline is still due after handle_timeout"
            );
        }
    }

    /// Streams nobody accepted in time are refused (the queue is in arrival order).
    fn expire_backlog(&mut self, now: Instant) {
        while let Some(&(local, since)) = self.accept_queue.front() {
            if since
                .checked_add(self.cfg.accept_timeout)
                .is_none_or(|d| d > now)
            {
                break;
            }
            self.accept_queue.pop_front();
            tracing::debug!(?local, "backlog entry aged out unaccepted");
            self.refuse_backlogged(now, local);
        }
    }

    /// Runs `on_timeout` on every stream whose deadline is due.
    fn fire_stream_timers(&mut self, now: Instant) {
        // Collect first: handling a timer may schedule a new one that is due at once,
        // and that one belongs to the next round.
        let mut due = Vec::new();
        while let Some(&Reverse((at, local))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(e) = self.streams.get_mut(&local) {
                if e.scheduled == Some(at) {
                    e.scheduled = None;
                    due.push(local);
                }
            }
        }
        for local in due {
            if let Some(e) = self.streams.get_mut(&local) {
                let s = &mut e.state;
                s.peer_heard = self.peers.get(&s.peer).last_heard;
                s.on_timeout(now);
                self.after(local, now);
            }
        }
        self.prune_timers();
    }
}
