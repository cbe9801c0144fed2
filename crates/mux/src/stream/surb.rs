//! Reply SURBs: what the opener attaches and grants, what the listener asks for, and the ack reserve.

use super::*;

impl<A: Copy, T: Copy> StreamState<A, T> {
    pub(super) fn surbs_wanted(&self) -> bool {
        self.is_outbound() && self.surbs_owed > 0 && self.fixed_surbs.is_none()
    }

    /// Replier side: ask for SURBs when our stock will not cover what we have queued,
    /// at most once per round trip.
    pub(super) fn maybe_request_surbs(&mut self, now: Instant, stock: Option<u32>) {
        if self.is_outbound() || !self.extended() || self.ack_due.pending() {
            return;
        }
        // Ask before running dry: once a few frames' worth is missing, or as soon as
        // payload had to wait for SURBs.
        let threshold = if self.surb_starved(stock) { 1 } else { 8 };
        if self.surb_request(stock, now) < threshold {
            return;
        }
        let interval = self.rtt.srtt().unwrap_or(self.rtt.rto());
        if self.last_surb_request.is_some_and(|t| t + interval > now) {
            return;
        }
        self.last_surb_request = Some(now);
        self.ack_due = AckDue::Now;
    }

    /// Listener side: whether the reply SURBs we hold for the opener are down to the
    /// ack reserve. Then data, retransmissions and the FIN wait in the stream (not in
    /// the network's queue of replies waiting for SURBs, where acks would queue behind
    /// them and the opener would resend what already arrived), and the reserve carries
    /// acks and control frames.
    pub(super) fn surb_starved(&self, stock: Option<u32>) -> bool {
        !self.is_outbound() && self.extended() && stock.is_some_and(|n| n <= ACK_SURB_RESERVE)
    }

    /// Payload had to wait for reply SURBs: the stream waits (staying in its peer's
    /// queue of SURB waiters if it is there already).
    pub(super) fn surb_block(&mut self, now: Instant) {
        self.surb_wait = match self.surb_wait {
            SurbWait::Queued { .. } => SurbWait::Queued { since: now },
            _ => SurbWait::Blocked { since: now },
        };
    }

    /// The core queues the stream among its peer's SURB waiters, if it just blocked;
    /// `true` when it did.
    pub(crate) fn surb_enqueue(&mut self) -> bool {
        match self.surb_wait {
            SurbWait::Blocked { since } => {
                self.surb_wait = SurbWait::Queued { since };
                true
            }
            _ => false,
        }
    }

    /// Whether the stream waits in its peer's queue of SURB waiters.
    pub(crate) fn surb_queued(&self) -> bool {
        matches!(self.surb_wait, SurbWait::Queued { .. })
    }

    /// The core gives this stream its turn at the SURB stock.
    pub(crate) fn surb_release(&mut self) {
        self.surb_wait = SurbWait::Ready;
    }

    /// Reply SURBs to attach to the next opener message. The peer's stock is
    /// estimated as SURBs sent minus frames received back; below the low-water mark
    /// (or when the peer asked) it is topped up in one batch, so most data messages
    /// carry none (each SURB costs ~1164 bytes, most of a packet).
    pub(super) fn surbs_for(&mut self, first: bool) -> u32 {
        let Destination::Address(_) = self.peer else {
            return 0;
        };
        let k = if let Some(k) = self.fixed_surbs {
            k
        } else if first {
            // The peer's network client keeps a reserve we can never use: the first
            // stream to a peer fills it.
            let (stock, _) = self.surb_stock_estimate();
            let reserve = u64::from(self.settings.surb_reserve);
            let missing = u32::try_from(reserve.saturating_sub(stock)).unwrap_or(u32::MAX);
            self.settings.initial_surbs.saturating_add(missing)
        } else {
            let (estimate, room) = self.surb_estimate();
            // What the peer's ceiling no longer allows is not owed any more (or an ack
            // carrying nothing would be sent again and again).
            self.surbs_owed = self.surbs_owed.min(u32::try_from(room).unwrap_or(u32::MAX));
            let estimate = u32::try_from(estimate).unwrap_or(u32::MAX);
            let top_up = if estimate < self.settings.surb_low_water || self.surbs_owed > 0 {
                self.settings
                    .surb_target
                    .saturating_sub(estimate)
                    .max(self.surbs_owed)
                    .min(u32::try_from(room).unwrap_or(u32::MAX))
            } else {
                0
            };
            (self.settings.surbs_per_message + top_up).min(self.settings.max_surbs_per_message)
        };
        self.surbs_owed = self.surbs_owed.saturating_sub(k);
        self.surbs_sent += u64::from(k);
        k
    }

    /// Opener side: the replier asked for `wanted` more SURBs. What we grant is ours to
    /// decide, never the peer's: at most what it could use to send us everything our
    /// window lets it send plus its ack reserve, within the peer's loss-tolerant room,
    /// and a new grant at most once per round trip. So a hostile ack
    /// asking for 65,535 costs a few messages, not thousands.
    pub(super) fn on_surb_request(&mut self, wanted: u16, now: Instant) {
        let interval = self.rtt.srtt().unwrap_or(self.rtt.rto());
        if self.last_surb_grant.is_some_and(|t| t + interval > now) {
            return;
        }
        // The peer's ask was computed from the stock it really holds, which our
        // estimate overstates under loss; its room (loss-tolerant, see the core's
        // `peer_surbs`) bounds the total, the stream's ceiling one grant.
        let ceiling = self.surb_ceiling();
        let (_, peer_room) = self.surb_estimate();
        let room = u64::from(ceiling).min(peer_room) as u32;
        let grant = u32::from(wanted).min(room);
        if grant < u32::from(wanted) {
            crate::metrics::bump(&mut self.metrics.surb_requests_capped);
        }
        if grant > 0 {
            self.last_surb_grant = Some(now);
        }
        self.surbs_owed = grant;
    }

    /// Our estimate of the reply SURBs the peer holds for us, and how many more its
    /// ceiling allows. SURBs belong to the sender tag, not to one stream, so the core
    /// supplies the peer-wide figures (SURBs sent on all streams minus frames received
    /// on all streams, each of which used at least one); a stream alone falls back on
    /// its own counts.
    ///
    /// The estimate is of the usable stock: the network client's reserve (see
    /// `MuxConfig::surb_reserve`) is not counted.
    pub(super) fn surb_estimate(&self) -> (u64, u64) {
        let (stock, room) = self.surb_stock_estimate();
        (
            stock.saturating_sub(u64::from(self.settings.surb_reserve)),
            room,
        )
    }

    /// Like [`Self::surb_estimate`], reserve included.
    pub(super) fn surb_stock_estimate(&self) -> (u64, u64) {
        match self.peer_surbs {
            Some((estimate, room)) => (u64::from(estimate), u64::from(room)),
            None => (self.surbs_sent.saturating_sub(self.replies_seen), u64::MAX),
        }
    }

    /// Most SURBs the peer can usefully hold for this stream: one per frame of the
    /// receive window it may fill (frames of the largest payload) plus its ack reserve.
    pub(super) fn surb_ceiling(&self) -> u32 {
        let frames = (self.settings.window as usize).div_ceil(self.frame_payload()) as u32;
        frames + ACK_SURB_RESERVE + self.settings.surb_target
    }

    /// How many more SURBs we (the replier) ask the opener for.
    pub(super) fn surb_request(&self, stock: Option<u32>, now: Instant) -> u16 {
        if self.is_outbound() {
            return 0;
        }
        let bytes = self.pending.len() + self.retransmit_queue.len() * self.frame_payload();
        // One receive window of frames (the ceiling the opener grants a stream) is what
        // the peer's link can carry back per round trip; streams of the same peer share
        // it, or a hundred streams would each ask for a window's worth the link cannot
        // use and the opener's uplink would fill with SURBs instead of its data.
        let peers = u32::from(self.peer_streams.max(1));
        let cap = (self.surb_ceiling() / peers).max(ACK_SURB_RESERVE);
        let need = (bytes.div_ceil(self.frame_payload()) as u32).min(cap) + ACK_SURB_RESERVE;
        // Where the network does not report the stock (the real Nym client), estimate
        // it: what we asked for last time, less the replies sent since (each used one).
        // Otherwise every request would ask for the whole need again.
        // An ask counts for a few round trips only: a grant that never came is asked
        // for again.
        let stock = stock.unwrap_or_else(|| {
            let fresh = self
                .last_ask_at
                .is_some_and(|t| t + self.rtt.rto() * 4 > now);
            if fresh {
                u32::from(self.surbs_asked.saturating_sub(self.replies_since_ask))
            } else {
                0
            }
        });
        let share = stock / peers;
        let want = need.saturating_sub(share);
        want.min(u32::from(u16::MAX)) as u16
    }
}
