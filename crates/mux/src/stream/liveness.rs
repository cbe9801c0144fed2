//! Deadlines and liveness: the next timer, timeouts, keepalive, idle reaping, retransmission limits.

use super::*;

impl<A: Copy, T: Copy> StreamState<A, T> {
    // ----- timers ---------------------------------------------------------------

    /// When `timer` fires, as the stream's state arms it (`None`: not armed).
    #[inline(always)]
    pub(crate) fn deadline_of(&self, timer: Timer) -> Option<Instant> {
        let live = self.teardown.is_live();
        let reset = self.teardown.is_reset();
        match timer {
            Timer::SurbRetry => self.surb_wait.since().map(|at| at + SURB_RETRY),
            Timer::Idle if live => self.idle_deadline(),
            Timer::Keepalive if live => self.keepalive_due_at(),
            Timer::Open if live && !self.pending_ctl.open => match self.handshake {
                Handshake::Opening {
                    sent_at: Some(at), ..
                } => Some(at + self.rtt.rto()),
                _ => None,
            },
            Timer::Ack => match self.ack_due {
                AckDue::At(at) => Some(at),
                _ => None,
            },
            Timer::Suspect if !reset => self.suspects.iter().map(|&(_, at)| at).min(),
            Timer::Retransmit if !reset && self.reliable() && self.retransmit_queue.is_empty() => {
                self.rto_base().map(|at| at + self.rtt.rto())
            }
            // Only a partial frame waits to be coalesced: a full one can go at once.
            Timer::Coalesce
                if !self.pending.is_empty() && self.pending.len() < self.frame_payload() =>
            {
                self.pending_since
                    .map(|at| at + self.settings.coalesce_delay)
            }
            // An expired linger only waits for the stream's last frames to go out: the
            // transmit that sends them removes the stream, so no due deadline is kept.
            Timer::Linger => self.finished_at.map(|at| at + self.settings.linger),
            _ => None,
        }
    }

    /// Every armed timer of this stream.
    pub(crate) fn timers(&self) -> TimerTable {
        let mut t = TimerTable::default();
        for timer in Timer::ALL {
            t.set(timer, self.deadline_of(timer));
        }
        t
    }

    /// The earliest instant after `now` at which this stream has timed work. Work that
    /// is already due sits in the ready queue (see [`Self::wants_transmit`]) instead.
    pub(crate) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        // The same answer as `self.timers().next_after(now)`, without building the table
        // (this runs after every operation on the stream): one call per timer with a
        // constant argument, so each inlined `deadline_of` folds to that timer's arm.
        let mut next: Option<Instant> = None;
        let mut consider = |timer: Timer, at: Option<Instant>| {
            if let Some(at) = at {
                if (at > now || !timer.due_work_is_queued()) && next.is_none_or(|n| at < n) {
                    next = Some(at);
                }
            }
        };
        consider(Timer::SurbRetry, self.deadline_of(Timer::SurbRetry));
        consider(Timer::Idle, self.deadline_of(Timer::Idle));
        consider(Timer::Keepalive, self.deadline_of(Timer::Keepalive));
        consider(Timer::Open, self.deadline_of(Timer::Open));
        consider(Timer::Ack, self.deadline_of(Timer::Ack));
        consider(Timer::Suspect, self.deadline_of(Timer::Suspect));
        consider(Timer::Retransmit, self.deadline_of(Timer::Retransmit));
        consider(Timer::Coalesce, self.deadline_of(Timer::Coalesce));
        consider(Timer::Linger, self.deadline_of(Timer::Linger));
        next
    }

    /// Handles every timer due at `now`, in the order of [`Timer::ALL`]. Each is
    /// checked against the state the previous ones left (an `Open` timeout backs the
    /// RTO off, so a data timeout due at the same instant waits for the new RTO).
    pub(crate) fn on_timeout(&mut self, now: Instant) {
        let _enter = self.span().entered();
        let armed = self.timers();
        for timer in Timer::ALL {
            // Due when the timeout began, and still due after the handlers before it.
            if armed.get(timer).is_none_or(|at| at > now)
                || self.deadline_of(timer).is_none_or(|at| at > now)
            {
                continue;
            }
            let go_on = match timer {
                Timer::SurbRetry => {
                    self.on_surb_retry(now);
                    true
                }
                Timer::Idle => {
                    self.reap();
                    false
                }
                Timer::Keepalive => self.on_keepalive_timeout(now),
                Timer::Open => self.on_open_timeout(now),
                Timer::Ack => {
                    self.ack_due = AckDue::Now;
                    true
                }
                Timer::Suspect => {
                    self.on_suspect_timeout(now);
                    true
                }
                Timer::Retransmit => self.on_retransmit_timeout(now),
                // Their due work waits in the core's ready queue or removal check.
                Timer::Coalesce | Timer::Linger => true,
            };
            if !go_on {
                return;
            }
        }
    }

    /// The network may have received SURBs meanwhile (its own top-up requests do not
    /// pass through us): look at the stock again. A stream in the peer's queue of
    /// waiters stays blocked (the core releases it in turn); the timer only makes the
    /// driver look at the stock again.
    fn on_surb_retry(&mut self, now: Instant) {
        self.surb_wait = match self.surb_wait {
            SurbWait::Queued { .. } => SurbWait::Queued { since: now },
            _ => SurbWait::Ready,
        };
    }

    /// The `Open` went unanswered for an RTO: send it again, or give up. `false` when
    /// the stream failed.
    fn on_open_timeout(&mut self, now: Instant) -> bool {
        let Handshake::Opening { tries, .. } = self.handshake else {
            return true;
        };
        if tries >= self.transmission_limit(now) {
            self.fail_timeout(Timeout::OpenUnanswered);
            return false;
        }
        self.rtt.on_timeout();
        self.pending_ctl.open = true;
        true
    }

    /// Frames SACKed past that reached their deadline still unacknowledged are resent.
    fn on_suspect_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        self.suspects.retain(|&(seq, at)| {
            if at <= now {
                due.push(seq);
            }
            at > now
        });
        for seq in due {
            if self.send_buf.get(seq).is_some() && !self.retransmit_queue.contains(&seq) {
                self.retransmit_queue.push_back(seq);
            }
        }
    }

    /// The retransmission timeout. Like TCP, it resends only the oldest expired frame
    /// and backs off: acks delayed in the mixnet (or by a SURB shortage at the peer)
    /// must not trigger a resend of the whole window. Real holes behind it are repaired
    /// by SACK-driven fast retransmit. `false` when the stream failed.
    fn on_retransmit_timeout(&mut self, now: Instant) -> bool {
        let rto = self.rtt.rto();
        // The lowest expired seq (the buffer visits them in ascending order).
        let oldest = self.send_buf.expired_iter(now - rto).next();
        if let Some(seq) = oldest {
            // `max_retransmits` counts transmissions (as for the Open).
            let sent = self.send_buf.retransmits(seq).unwrap_or(0) + 1;
            if sent >= self.transmission_limit(now) {
                self.fail_timeout(Timeout::Retransmissions);
                return false;
            }
            self.retransmit_queue.push_back(seq);
        }
        self.recovery_point = Some(now);
        self.rtt.on_timeout();
        true
    }

    /// A keepalive (or zero-credit probe) is due: ping, or give up after too many
    /// unanswered. `false` when the stream failed.
    fn on_keepalive_timeout(&mut self, now: Instant) -> bool {
        if u32::from(self.pings_outstanding) >= self.settings.keepalive_max_missed {
            self.fail_timeout(Timeout::Keepalive);
            return false;
        }
        self.pending_ctl.ping = true;
        self.pings_outstanding = self.pings_outstanding.saturating_add(1);
        if self.credit_blocked() {
            // A zero-credit probe: the next one waits twice as long.
            self.probes = self.probes.saturating_add(1);
            self.last_probe = Some(now);
        }
        true
    }

    /// Transmissions of one frame (or of the Open) before the stream gives up:
    /// `max_retransmits`, or four times as many while the peer was heard from (on any
    /// stream) within the last RTO. Then the path works and the frame is only queued
    /// somewhere (a busy link, replies waiting for SURBs).
    pub(super) fn transmission_limit(&self, now: Instant) -> u32 {
        if self.heard_at() + self.rtt.rto() > now {
            self.settings.max_retransmits.saturating_mul(4)
        } else {
            self.settings.max_retransmits
        }
    }

    /// When we last heard from this stream's peer on any stream (per-peer liveness:
    /// a peer busy sending other streams' frames is alive), or from this stream.
    pub(super) fn heard_at(&self) -> Instant {
        self.peer_heard
            .map_or(self.last_recv, |p| p.max(self.last_recv))
    }

    /// When the next keepalive ping is due, for established streams whose read side
    /// is still open.
    pub(super) fn keepalive_due_at(&self) -> Option<Instant> {
        if !self.is_established() || !self.teardown.is_live() || self.pending_ctl.ping {
            return None;
        }
        if self.recv_state.is_done() && self.send_state.is_done() {
            return None;
        }
        // A writer stuck on zero credit probes sooner (like TCP's persist timer): the
        // Ping makes the peer repeat its ack, so a lost window update costs one RTO,
        // not a keepalive interval. Probes back off (RTO, 2 RTO, 4 RTO, … up to the
        // keepalive interval) until the credit opens, whatever else arrives meanwhile.
        if self.credit_blocked() {
            let backoff = self
                .rtt
                .rto()
                .checked_mul(1u32 << self.probes.min(16))
                .unwrap_or(self.settings.keepalive_interval)
                .min(self.settings.keepalive_interval);
            let base = self
                .last_probe
                .map_or(self.last_recv, |p| p.max(self.last_recv));
            return base.checked_add(backoff);
        }
        // Keepalive proper: silence from the whole peer, not just this stream.
        self.settings
            .keepalive_interval
            .checked_mul(u32::from(self.pings_outstanding) + 1)
            .and_then(|w| self.heard_at().checked_add(w))
    }

    /// Whether bytes wait that the peer's credit does not let us frame.
    pub(super) fn credit_blocked(&self) -> bool {
        self.extended()
            && self.peer_max_data <= self.send_offset + self.pending.len() as u64
            && self.send_buf.is_empty()
    }

    /// When the idle timeout reaps the stream (`None`: never, for huge timeouts).
    ///
    /// A stream that still holds bytes (or a FIN) to send or to have acknowledged is
    /// not idle, however long the acks take: its retransmission limit and keepalive
    /// end it if the peer is gone. Acknowledgements that make progress restart the
    /// idle clock.
    pub(super) fn idle_deadline(&self) -> Option<Instant> {
        if self.send_outstanding() > 0 {
            return None;
        }
        self.last_data.checked_add(self.settings.idle_timeout)
    }

    /// Whether the idle timeout reaped this stream.
    pub(crate) fn is_reaped(&self) -> bool {
        self.teardown == Teardown::Reaped
    }

    /// The idle timeout expired: writes fail; reads end with `Ok(0)` after the bytes
    /// already received only for a reference peer (as the reference does) and with a
    /// `TimedOut` error when an extended peer never sent its FIN. An extended peer is told
    /// with a `Reset(IDLE_TIMEOUT)` and reaps its end the same way, so neither side
    /// lingers until its own timeout.
    pub(super) fn reap(&mut self) {
        tracing::debug!("stream reaped after the idle timeout");
        if self.extended() {
            self.pending_ctl.reset = Some(reset_code::IDLE_TIMEOUT);
        }
        self.reap_quietly(false);
    }

    /// Ends the stream as reaped without telling the peer (it told us, or it will
    /// reap on its own).
    pub(super) fn reap_quietly(&mut self, by_peer: bool) {
        self.teardown = Teardown::Reaped;
        let unacked = self.send_outstanding();
        if unacked > 0 {
            // Bytes we wrote may not have arrived: never let that look like a clean end.
            let failure = Failure::Reaped(Reap::Unacknowledged {
                by_peer,
                bytes: unacked,
            });
            self.fail_read(failure);
            self.stop_sending(failure);
            self.wake_all();
            return;
        }
        // Ok(0) only where a clean end is all anyone could know: a reference peer has
        // no FIN, so the reference's Ok(0) is kept for it. An extended peer that never
        // sent its FIN may still have had bytes to send (starved of SURBs, say): its
        // reads end with an error, never a silent cut. So do reads with a known gap in
        // the reorder buffer.
        let unfinished = self.peer_kind == PeerKind::Extended || !self.reorder.is_empty();
        let idle = self.settings.idle_timeout;
        if self.recv_state == RecvState::Receiving {
            self.recv_state = if unfinished {
                RecvState::Failed(Failure::Reaped(Reap::Unfinished { idle }))
            } else {
                RecvState::Finished
            };
        }
        self.stop_sending(Failure::Reaped(Reap::Idle { idle }));
        self.wake_all();
    }

    pub(super) fn fail_timeout(&mut self, why: Timeout) {
        tracing::debug!(?why, "stream timed out");
        self.teardown = Teardown::TimedOut;
        self.fail_read(Failure::TimedOut(why));
        self.stop_sending(Failure::TimedOut(why));
        self.wake_all();
    }

    /// When a frame last arrived on this stream (`None` before the first).
    pub(crate) fn last_heard(&self) -> Option<Instant> {
        (self.metrics.frames_received > 0).then_some(self.last_recv)
    }
}
