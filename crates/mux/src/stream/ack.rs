//! Acknowledgements: processing the peer's acks (SACK, RTT, fast retransmit, recovery) and building ours.

use super::*;

impl<A: Copy, T: Copy> StreamState<A, T> {
    pub(super) fn on_ack(&mut self, ack: &Ack, now: Instant) {
        crate::metrics::bump(&mut self.metrics.acks_received);
        if self.peer_kind == PeerKind::Unknown {
            // Only an extended peer sends acks.
            self.peer_kind = PeerKind::Extended;
        }
        let sack: Vec<SeqRange> = ack
            .sack()
            .iter()
            .map(|b| SeqRange {
                start: Seq::new(b.start),
                end: Seq::new(b.end),
            })
            .collect();
        let out = self.send_buf.on_ack(Seq::new(ack.cumulative), &sack, now);
        if out.invalid {
            crate::metrics::bump(&mut self.metrics.forged_acks);
            tracing::debug!(cumulative = ack.cumulative, "ack for unsent data ignored");
            return;
        }
        if self.send_buf.is_empty() && self.pending.is_empty() {
            // Everything written is acknowledged: no spare chunk will be reused soon.
            self.pending.release_spares();
        }
        if let Some(sample) = out.rtt_sample {
            self.rtt.on_sample(sample);
            // The sample comes from a frame sent once: if it went out before the
            // timeout, its first transmission got through and the timeout was spurious
            // (the acks were only late, in a queue), so nothing sent before it is
            // presumed lost any more (like F-RTO, RFC 5682).
            if self
                .recovery_point
                .is_some_and(|point| now.checked_sub(sample).is_some_and(|sent| sent < point))
            {
                self.recovery_point = None;
            }
        }
        if !out.fast_retransmit.is_empty() {
            // Messages overtake each other all the time on a mixnet (and the client
            // layer resends lost packets itself, ~1.5 s later), so "3 later frames were
            // SACKed" alone means little. Like RACK, a frame also has to be older than
            // 1.5 smoothed RTTs before it counts as lost; a younger one is resent when
            // it reaches that age, if it is still unacknowledged then.
            let age = self.rtt.srtt().map_or(self.rtt.rto(), |s| s + s / 2);
            let cutoff = now.checked_sub(age);
            for seq in out.fast_retransmit {
                let old = cutoff
                    .zip(self.send_buf.sent_at(seq))
                    .is_some_and(|(cutoff, sent)| sent <= cutoff);
                if old {
                    self.retransmit_queue.push_back(seq);
                } else {
                    self.suspects.push((seq, now + age));
                }
            }
        }
        if out.newly_acked_frames > 0 {
            // Progress: the stream is not idle.
            self.last_data = now;
            self.continue_recovery();
        }
        if ack.max_data > self.peer_max_data {
            self.peer_max_data = ack.max_data;
            self.wakes.write = true;
            self.probes = 0;
            self.last_probe = None;
        }
        if self.is_outbound() {
            self.on_surb_request(ack.surbs_wanted, now);
        }
        if out.newly_acked_frames > 0 {
            self.wakes.write = true;
        }
        if self.send_state == SendState::FinSent && self.send_buf.is_empty() {
            tracing::trace!("final frame acknowledged");
            self.send_state = SendState::Finished;
        }
    }

    /// When the retransmission timer started: the earliest last-send time over the
    /// unacknowledged frames.
    pub(super) fn rto_base(&self) -> Option<Instant> {
        self.send_buf.earliest_send_time()
    }

    pub(super) fn ack_due(&self, now: Instant) -> bool {
        self.ack_due.due(now)
    }

    /// After a timeout, each ack that makes progress lets two more of the frames sent
    /// before the timeout go again (a slow start from one frame), instead of waiting
    /// one backed-off RTO per lost frame.
    pub(super) fn continue_recovery(&mut self) {
        let Some(point) = self.recovery_point else {
            return;
        };
        let mut queued = 0;
        for seq in self.send_buf.expired_iter(point) {
            if queued == 2 {
                break;
            }
            if !self.retransmit_queue.contains(&seq) {
                self.retransmit_queue.push_back(seq);
                queued += 1;
            }
        }
        if queued == 0 {
            self.recovery_point = None;
        }
    }

    pub(super) fn build_ack(&mut self, stock: Option<u32>, now: Instant) -> Ack {
        let sacks = self.reorder.sack_ranges(ext::MAX_SACK_BLOCKS);
        self.build_ack_with(stock, now, &sacks)
    }

    /// [`Self::build_ack`] with the SACK ranges already collected (a caller that sized
    /// the frame by them).
    pub(super) fn build_ack_with(
        &mut self,
        stock: Option<u32>,
        now: Instant,
        sacks: &[SeqRange],
    ) -> Ack {
        // The window, as far as the peer's connection window allows; never less than
        // what was already promised.
        let max_data = (self.consumed + self.settings.window)
            .min(self.advertised_max.saturating_add(self.credit_room))
            .max(self.advertised_max);
        let asked = self.surb_request(stock, now);
        if asked > 0 {
            self.surbs_asked = asked;
            self.replies_since_ask = 0;
            self.last_ask_at = Some(now);
        }
        let mut ack = Ack::new(self.reorder.cumulative_ack().get(), max_data, asked);
        for r in sacks {
            ack.push_sack(SackBlock {
                start: r.start.get(),
                end: r.end.get(),
            });
        }
        self.advertised_max = max_data;
        self.last_grant = u32::try_from(max_data.saturating_sub(self.consumed)).unwrap_or(u32::MAX);
        self.ack_due = AckDue::Nothing;
        self.frames_since_ack = 0;
        crate::metrics::bump(&mut self.metrics.acks_sent);
        ack
    }

    /// A standalone Ack frame.
    pub(super) fn poll_ack(&mut self, now: Instant, stock: Option<u32>) -> Option<OutFrame> {
        let ack = self.build_ack(stock, now);
        let mut buf = BytesMut::with_capacity(lp_frame::HEADER_LEN + ack.encoded_len());
        buf.put_slice(&self.header(MessageType::Ack, 0).to_bytes());
        ack.encode(&mut buf);
        let surbs = self.surbs_for(false);
        Some(self.finish(buf.freeze(), surbs))
    }

    pub(super) fn ack_max_len(&self) -> usize {
        Ack::new(0, 0, 0).encoded_len() + 8 * ext::MAX_SACK_BLOCKS
    }
}
