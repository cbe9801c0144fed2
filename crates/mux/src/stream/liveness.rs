//! Deadlines and liveness: the next timer, timeouts, keepalive, idle reaping, retransmission limits.

use super::*;

impl<A: Copy, T: Copy> StreamState<A, T> {
    // ----- timers ---------------------------------------------------------------

    /// The earliest instant after `now` at which this stream has timed work. Work that
    /// is already due sits in the ready queue (see [`Self::wants_transmit`]) instead.
    pub(crate) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut consider = |t: Option<Instant>, only_future: bool| {
            if let Some(t) = t {
                if !only_future || t > now {
                    d = Some(d.map_or(t, |x| x.min(t)));
                }
            }
        };
        if !self.pending.is_empty() {
            consider(
                self.pending_since.map(|t| t + self.settings.coalesce_delay),
                true,
            );
        }
        if self.ack_pending && !self.ack_now {
            consider(self.ack_deadline, true);
        }
        if self.reliable() && self.reset.is_none() && self.retransmit_queue.is_empty() {
            consider(self.rto_base().map(|t| t + self.rtt.rto()), false);
        }
        if !self.pending_ctl.open
            && !self.established
            && self.reset.is_none()
            && self.write_error.is_none()
        {
            consider(self.open_sent_at.map(|at| at + self.rtt.rto()), false);
        }
        // An expired linger only waits for the stream's last frames to go out: the
        // transmit that sends them removes the stream, so no due deadline is kept.
        consider(self.finished_at.map(|t| t + self.settings.linger), true);
        if self.reset.is_none() {
            consider(self.suspects.iter().map(|&(_, at)| at).min(), false);
        }
        consider(self.surb_blocked_at.map(|t| t + SURB_RETRY), false);
        if !self.reaped && self.write_error.is_none() && self.reset.is_none() {
            consider(self.idle_deadline(), false);
            consider(self.keepalive_due_at(), false);
        }
        d
    }

    pub(crate) fn on_timeout(&mut self, now: Instant) {
        let _enter = self.span.clone().entered();
        if self.surb_blocked_at.is_some_and(|t| t + SURB_RETRY <= now) {
            // The network may have received SURBs meanwhile (its own top-up requests
            // do not pass through us): look at the stock again. First, before any
            // early return, so the deadline never stays due. A stream in the peer's
            // queue of waiters stays blocked (the core releases it in turn); the timer
            // only makes the driver look at the stock again.
            self.surb_blocked_at = self.in_surb_wait.then_some(now);
        }
        if self.reset.is_some() {
            return;
        }
        if self.liveness_timeout(now) {
            return;
        }
        if let (Some(at), false) = (self.open_sent_at, self.established) {
            if !self.pending_ctl.open && at + self.rtt.rto() <= now {
                if self.open_tries >= self.transmission_limit(now) {
                    self.fail_timeout("the peer never answered the Open");
                    return;
                }
                self.rtt.on_timeout();
                self.pending_ctl.open = true;
            }
        }
        if self.ack_pending {
            if let Some(d) = self.ack_deadline {
                if d <= now {
                    self.ack_now = true;
                }
            }
        }

        if !self.suspects.is_empty() {
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
        if self.reliable() {
            let rto = self.rtt.rto();
            if let Some(earliest) = self.rto_base() {
                if earliest + rto <= now {
                    // Like TCP, a timeout resends only the oldest expired frame and
                    // backs off: acks delayed in the mixnet (or by a SURB shortage at
                    // the peer) must not trigger a resend of the whole window. Real
                    // holes behind it are repaired by SACK-driven fast retransmit.
                    let oldest = self
                        .send_buf
                        .expired(now - rto)
                        .into_iter()
                        .min_by_key(|s| {
                            s.distance_from(self.send_buf.oldest_unacked().map_or(*s, |o| o.0))
                        });
                    if let Some(seq) = oldest {
                        // `max_retransmits` counts transmissions (as for the Open).
                        let sent = self.send_buf.retransmits(seq).unwrap_or(0) + 1;
                        if sent >= self.transmission_limit(now) {
                            self.fail_timeout("a frame was not acknowledged after the maximum number of retransmissions");
                            return;
                        }
                        self.retransmit_queue.push_back(seq);
                    }
                    self.recovery_point = Some(now);
                    self.rtt.on_timeout();
                }
            }
        }
    }

    /// Keepalive and idle reaping; `true` when the stream ended here.
    pub(super) fn liveness_timeout(&mut self, now: Instant) -> bool {
        if self.reaped || self.write_error.is_some() {
            return false;
        }
        if self.idle_deadline().is_some_and(|d| d <= now) {
            self.reap();
            return true;
        }
        if self.keepalive_due_at().is_some_and(|t| t <= now) {
            if self.pings_outstanding >= self.settings.keepalive_max_missed {
                self.fail_timeout("the peer answered none of the keepalive pings");
                return true;
            }
            self.pending_ctl.ping = true;
            self.pings_outstanding += 1;
            if self.credit_blocked() {
                // A zero-credit probe: the next one waits twice as long.
                self.probes = self.probes.saturating_add(1);
                self.last_probe = Some(now);
            }
        }
        false
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
        if !self.established || self.reset.is_some() || self.reaped || self.pending_ctl.ping {
            return None;
        }
        if self.read_end.is_some() && self.write_done {
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
            .checked_mul(self.pings_outstanding + 1)
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
        self.reaped
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
        self.reaped = true;
        let unacked = self.send_outstanding();
        if unacked > 0 {
            // Bytes we wrote may not have arrived: never let that look like a clean end.
            let who = if by_peer { "the peer" } else { "we" };
            let msg = format!(
                "stream {}: {who} reaped the stream as idle while {unacked} written bytes were \
                 not yet acknowledged; they may not have arrived; open a new stream and resend",
                self.id
            );
            self.write_error = Some((io::ErrorKind::TimedOut, msg.clone()));
            if self.read_end.is_none() {
                self.read_end = Some(ReadEnd::Failed(io::ErrorKind::TimedOut, msg));
            }
            self.abandon_send();
            self.wake_all();
            return;
        }
        if self.read_end.is_none() {
            // Ok(0) only where a clean end is all anyone could know: a reference peer
            // has no FIN, so the reference's Ok(0) is kept for it. An extended peer that
            // never sent its FIN may still have had bytes to send (starved of SURBs,
            // say): its reads end with an error, never a silent cut. So do reads with a
            // known gap in the reorder buffer.
            let unfinished = self.peer_kind == PeerKind::Extended;
            self.read_end = Some(if self.reorder.is_empty() && !unfinished {
                ReadEnd::Eof
            } else {
                ReadEnd::Failed(
                    io::ErrorKind::TimedOut,
                    format!(
                        "stream {}: reaped after {:?} without data before the peer finished \
                         sending; what was read so far may be incomplete",
                        self.id, self.settings.idle_timeout
                    ),
                )
            });
        }
        self.write_error = Some((
            io::ErrorKind::BrokenPipe,
            format!(
                "stream {}: reaped after {:?} without data; open a new stream",
                self.id, self.settings.idle_timeout
            ),
        ));
        self.abandon_send();
        self.wake_all();
    }

    pub(super) fn fail_timeout(&mut self, why: &str) {
        tracing::debug!(why, "stream timed out");
        let msg = format!("stream {}: {why}; the peer is unreachable or gone", self.id);
        self.write_error = Some((io::ErrorKind::TimedOut, msg.clone()));
        if self.read_end.is_none() {
            self.read_end = Some(ReadEnd::Failed(io::ErrorKind::TimedOut, msg));
        }
        self.abandon_send();
        self.wake_all();
    }

    /// When a frame last arrived on this stream (`None` before the first).
    pub(crate) fn last_heard(&self) -> Option<Instant> {
        (self.metrics.frames_received > 0).then_some(self.last_recv)
    }
}
