//! The receive direction: inbound frames, reordering, reads, EOF and resets from the peer.

use bytes::Buf;

use super::*;

impl<A: Copy, T: Copy> StreamState<A, T> {
    /// [`Self::read_into`] a slice (for the unit tests).
    #[cfg(test)]
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Read {
        let mut buf = buf;
        self.read_into(&mut buf)
    }

    /// Copies what is readable into `buf` (at most its `remaining_mut`), the one copy
    /// between the inbound message and the application. `buf` may be uninitialised
    /// memory (a tokio `ReadBuf`): nothing is zeroed first.
    pub(crate) fn read_into<B: BufMut>(&mut self, buf: &mut B) -> Read {
        if let RecvState::Reset { code, by_peer } = self.recv_state {
            return Read::Failed(self.error(Operation::Read, Failure::Reset { code, by_peer }));
        }
        let room = buf.remaining_mut();
        if room == 0 {
            return Read::Data(0);
        }
        let mut n = 0;
        while n < room {
            let Some(front) = self.recv_queue.front_mut() else {
                break;
            };
            let take = front.len().min(room - n);
            buf.put_slice(&front[..take]);
            front.advance(take);
            if front.is_empty() {
                self.recv_queue.pop_front();
            }
            n += take;
        }
        if n > 0 {
            self.on_consumed(n);
            return Read::Data(n);
        }
        self.read_end_outcome()
    }

    /// One chunk as it arrived (for `recv()`).
    pub(crate) fn read_chunk(&mut self) -> Result<Option<Bytes>, Read> {
        if let RecvState::Reset { code, by_peer } = self.recv_state {
            return Err(Read::Failed(
                self.error(Operation::Read, Failure::Reset { code, by_peer }),
            ));
        }
        if let Some(chunk) = self.recv_queue.pop_front() {
            self.on_consumed(chunk.len());
            return Ok(Some(chunk));
        }
        match self.read_end_outcome() {
            Read::Eof => Ok(None),
            other => Err(other),
        }
    }

    /// What a read returns once the queue is empty.
    pub(super) fn read_end_outcome(&self) -> Read {
        match self.recv_state {
            RecvState::Receiving => Read::Pending,
            RecvState::Finished => Read::Eof,
            RecvState::Failed(f) => Read::Failed(self.error(Operation::Read, f)),
            RecvState::Reset { code, by_peer } => {
                Read::Failed(self.error(Operation::Read, Failure::Reset { code, by_peer }))
            }
        }
    }

    pub(super) fn on_consumed(&mut self, n: usize) {
        self.recv_queued -= n;
        self.consumed += n as u64;
        self.metrics.bytes_read += n as u64;
        // Reopen the window once half of it was read since the last advertisement, and
        // half of what the last ack granted: where the peer's connection window capped
        // that grant (many streams share it), the full window is never reached, and
        // the first rule alone would ask for an ack after every read.
        let new_max = self.consumed + self.settings.window;
        let left = self.advertised_max.saturating_sub(self.consumed);
        if self.extended()
            && new_max.saturating_sub(self.advertised_max) >= self.settings.window / 2
            && left <= u64::from(self.last_grant / 2)
        {
            self.ack_due = AckDue::Now;
        }
    }

    /// The application dropped one or both halves of its handle.
    pub(crate) fn drop_handle(&mut self, read: bool, write: bool) {
        let before = self.handles;
        self.handles = before.without(read, write);
        if before.writes() && !self.handles.writes() {
            self.drop_write_handle();
        }
        if before.reads() && !self.handles.reads() {
            // From now on, what arrives is acknowledged and dropped.
            let dropped = self.recv_queued;
            self.recv_queue.clear();
            self.recv_queued = 0;
            self.consumed += dropped as u64;
        }
    }

    // ----- inbound frames -------------------------------------------------------

    /// Handles one frame for this stream. `budget` is what the client-wide inbound
    /// budget still allows (the core counts the bytes held afterwards).
    pub(crate) fn on_frame(
        &mut self,
        header: &StreamHeader,
        payload: Bytes,
        now: Instant,
        budget: usize,
    ) {
        let _enter = self.span().entered();
        self.deadlines_kept = false;
        // Every liveness deadline moves later with this frame, unless a ping was
        // outstanding (the keepalive multiplier drops) or the stream becomes established
        // now (the keepalive starts).
        let quiet = self.pings_outstanding == 0
            && self.is_established()
            && self.teardown.is_live()
            && header.msg_type == MessageType::Data
            && header.reserved & ext::FLAG_ACK == 0;
        self.last_activity = now;
        // Any inbound frame counts as life.
        self.last_recv = now;
        self.pings_outstanding = 0;
        if matches!(header.msg_type, MessageType::Data | MessageType::Close) {
            self.last_data = now;
        }
        self.metrics.frames_received += 1;
        if self.is_outbound() {
            self.replies_seen += 1;
        }
        // The opener's message may have brought SURBs (a stream in the peer's queue
        // of SURB waiters waits for its turn instead: the core releases it).
        if let SurbWait::Blocked { .. } = self.surb_wait {
            self.surb_wait = SurbWait::Ready;
        }
        if self.teardown == Teardown::Reaped {
            self.on_frame_after_reap(header);
            return;
        }
        if self.teardown.is_reset() {
            if header.msg_type == MessageType::OpenAck {
                if let Some(code) = self.deferred_reset.take() {
                    if header.reserved & ext::CAP_EXTENDED != 0 {
                        self.peer_kind = PeerKind::Extended;
                        self.pending_ctl.reset = Some(code);
                    } else {
                        self.peer_kind = PeerKind::Legacy;
                    }
                }
            }
            return;
        }
        match header.msg_type {
            MessageType::Open => {
                // Duplicate Open for a live stream: answer it again, nothing else.
                if !self.is_outbound() {
                    self.pending_ctl.open_ack = true;
                }
            }
            MessageType::OpenAck => self.on_open_ack(header.reserved, now),
            MessageType::Data | MessageType::Close => {
                if self.is_outbound() {
                    // Data from the listener proves it saw our Open; the OpenAck
                    // (which tells us its capabilities) may still be on its way.
                    self.establish();
                }
                let mut body = payload;
                if header.reserved & ext::FLAG_ACK != 0 && self.local_extended {
                    match Ack::parse(&body) {
                        Ok((ack, used)) => {
                            self.on_ack(&ack, now);
                            body.advance(used);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "malformed piggybacked ack; frame dropped");
                            return;
                        }
                    }
                }
                let seg = if header.msg_type == MessageType::Data {
                    Segment::Data(body)
                } else if !self.local_extended {
                    return;
                } else {
                    match Close::parse(&body) {
                        Ok(c) => Segment::Fin(c.error_code),
                        Err(e) => {
                            tracing::debug!(error = %e, "malformed close; frame dropped");
                            return;
                        }
                    }
                };
                let kept = self.on_segment(Seq::new(header.seq), seg, now, budget);
                self.deadlines_kept = quiet && kept;
            }
            MessageType::Ping => {
                self.pending_ctl.pong = Some(header.seq);
                // A peer that pings has heard nothing from us for a while: it may be
                // blocked on credit whose window update was lost, which nothing else
                // repeats. Answer with our current acknowledgement and window too.
                if self.extended() && !self.recv_state.is_done() {
                    self.ack_due = AckDue::Now;
                }
            }
            MessageType::Pong => {}
            MessageType::Reset => {
                if self.local_extended {
                    match Reset::parse(&payload) {
                        Ok(r) if r.code == reset_code::IDLE_TIMEOUT => self.reap_quietly(true),
                        Ok(r) => self.on_peer_reset(r.code),
                        Err(_) => {}
                    }
                }
            }
            MessageType::Ack => {
                if self.local_extended {
                    match Ack::parse(&payload) {
                        Ok((ack, _)) => {
                            if self.is_outbound() {
                                // Only a listener that has the stream acks it: as good as
                                // its OpenAck for establishment (PROTOCOL.md §7.2).
                                self.establish();
                            }
                            self.on_ack(&ack, now)
                        }
                        Err(e) => tracing::debug!(error = %e, "malformed ack dropped"),
                    }
                }
            }
        }
    }

    /// A frame for a stream we reaped as idle. New data means the peer wrote while our
    /// reap was on its way: the clean EOF we gave becomes an error (those bytes are
    /// discarded), and the peer hears the reap again in case our `Reset` was lost.
    pub(super) fn on_frame_after_reap(&mut self, header: &StreamHeader) {
        let new_data = matches!(header.msg_type, MessageType::Data | MessageType::Close)
            && !Seq::new(header.seq).is_before(self.reorder.next_expected());
        if !new_data {
            return;
        }
        if self.recv_state == RecvState::Finished {
            self.recv_state = RecvState::Failed(Failure::Reaped(Reap::WrittenAfter));
            self.wakes.read = true;
        }
        if self.extended() {
            self.pending_ctl.reset = Some(reset_code::IDLE_TIMEOUT);
        }
    }

    pub(super) fn on_open_ack(&mut self, reserved: u8, _now: Instant) {
        if !self.is_outbound() {
            return;
        }
        if self.peer_kind == PeerKind::Unknown {
            if reserved & ext::CAP_EXTENDED != 0 {
                self.peer_kind = PeerKind::Extended;
            } else {
                self.become_legacy();
            }
        }
        self.establish();
        self.pending_ctl.open = false;
    }

    /// The peer speaks only the reference format: stop keeping frames for
    /// retransmission and stop waiting for credit.
    pub(super) fn become_legacy(&mut self) {
        tracing::debug!("peer is a reference-format peer");
        self.peer_kind = PeerKind::Legacy;
        // A reference peer sends without credit, up to the whole legacy buffer; it was
        // admitted for the initial credit only, so it gets what the peer's connection
        // window still allows beyond that (a stream that outgrows it fails cleanly
        // with InvalidData rather than breaking the window).
        let allowed = INITIAL_CREDIT.saturating_add(self.credit_room);
        self.legacy_limit =
            u32::try_from(u64::from(self.legacy_limit).min(allowed)).unwrap_or(u32::MAX);
        self.release_sent();
        self.retransmit_queue.clear();
        self.peer_max_data = u64::MAX;
        self.wakes.write = true;
    }

    /// Most inbound bytes (reorder buffer plus unread) this stream holds: the window for
    /// an extended peer (whose credit keeps it there), more for a reference peer.
    pub(super) fn recv_limit(&self) -> usize {
        match self.peer_kind {
            PeerKind::Legacy => self.legacy_limit as usize,
            // Before the capability is known (a reference peer sends without credit).
            PeerKind::Unknown => self.settings.window as usize,
            // What we promised: a peer sending beyond its credit is refused.
            PeerKind::Extended => self.advertised_max.saturating_sub(self.consumed) as usize,
        }
    }

    /// Returns whether the segment went straight to the reader without arming the
    /// delayed ack (see [`Self::take_deadlines_kept`]).
    pub(super) fn on_segment(
        &mut self,
        seq: Seq,
        seg: Segment,
        now: Instant,
        budget: usize,
    ) -> bool {
        let len = reorder::ByteLen::byte_len(&seg);
        let slack = self.frame_payload();
        if len > 0 && (len > budget || self.inbound_bytes() + len > self.recv_limit() + slack) {
            crate::metrics::bump(&mut self.metrics.frames_refused);
            if self.peer_kind == PeerKind::Legacy && self.handles.reads() {
                self.fail_read(Failure::Overrun(Overrun::Buffer));
            }
            return false;
        }
        if self.reorder.take_in_order(seq, len) {
            // Next in order with nothing held: straight to the reader.
            let ack_was_idle = self.ack_due == AckDue::Nothing;
            let urgent = self.take_segment(seg);
            self.after_in_order(now, urgent);
            return !(ack_was_idle && matches!(self.ack_due, AckDue::At(_)));
        }
        let outcome = self.reorder.insert(seq, seg);
        match outcome {
            InsertOutcome::InOrder => {
                self.drain_in_order(now);
            }
            InsertOutcome::Buffered => {
                // Reordering is the norm on a mixnet: count it towards the next ack
                // (which carries the SACK blocks) instead of acking at once.
                crate::metrics::bump(&mut self.metrics.out_of_order);
                self.frames_since_ack += 1;
                self.schedule_ack(now);
            }
            InsertOutcome::Duplicate | InsertOutcome::TooOld => {
                // Our ack may have been lost: repeat it (delayed, so a burst of
                // retransmissions costs one ack).
                crate::metrics::bump(&mut self.metrics.duplicates);
                self.schedule_ack(now);
            }
            InsertOutcome::BeyondWindow | InsertOutcome::OverCapacity => {
                crate::metrics::bump(&mut self.metrics.frames_refused);
                if self.peer_kind == PeerKind::Legacy {
                    self.fail_read(Failure::Overrun(Overrun::Gap));
                }
            }
        }
        false
    }

    pub(super) fn drain_in_order(&mut self, now: Instant) {
        let mut urgent = false;
        while let Some((_, seg)) = self.reorder.pop() {
            urgent |= self.take_segment(seg);
        }
        self.after_in_order(now, urgent);
    }

    /// One segment delivered in order: its bytes to the reader, or the FIN. Returns
    /// whether it makes the ack urgent (a FIN).
    fn take_segment(&mut self, seg: Segment) -> bool {
        self.frames_since_ack += 1;
        match seg {
            Segment::Data(b) => {
                if b.is_empty() {
                    return false;
                }
                self.recv_offset += b.len() as u64;
                if self.handles.reads() {
                    self.recv_queued += b.len();
                    self.recv_queue.push_back(b);
                } else {
                    self.consumed += b.len() as u64;
                }
                self.wakes.read = true;
                false
            }
            Segment::Fin(code) => {
                if self.recv_state == RecvState::Receiving {
                    self.recv_state = match code {
                        None => RecvState::Finished,
                        Some(code) => RecvState::Failed(Failure::Aborted { code }),
                    };
                }
                self.wakes.read = true;
                true
            }
        }
    }

    /// The ack after in-order delivery.
    fn after_in_order(&mut self, now: Instant, mut urgent: bool) {
        // Credit running low: the peer is within a quarter window of the limit it
        // believes in, so it will stall without an ack (e.g. before our first ack,
        // when it only has INITIAL_CREDIT). Ack now instead of after the delay.
        if self.recv_offset + self.settings.window / 4 >= self.advertised_max {
            urgent = true;
        }
        self.schedule_ack_at(now, urgent);
    }

    /// An acknowledgement is owed: after the ack delay, or at once every `ack_every`
    /// frames.
    pub(super) fn schedule_ack(&mut self, now: Instant) {
        self.schedule_ack_at(now, false);
    }

    /// Like [`Self::schedule_ack`], at once when `urgent`.
    pub(super) fn schedule_ack_at(&mut self, now: Instant, urgent: bool) {
        if !(self.extended() || self.peer_kind == PeerKind::Unknown) {
            return;
        }
        self.ack_due = if urgent || self.frames_since_ack >= self.settings.ack_every {
            AckDue::Now
        } else {
            match self.ack_due {
                AckDue::Nothing => AckDue::At(now + self.settings.ack_delay),
                due => due,
            }
        };
    }

    /// The receive direction fails after the bytes queued so far.
    pub(super) fn fail_read(&mut self, failure: Failure) {
        if self.recv_state == RecvState::Receiving {
            self.recv_state = RecvState::Failed(failure);
            self.wakes.read = true;
        }
    }

    pub(super) fn on_peer_reset(&mut self, code: u32) {
        tracing::debug!(code, "reset by peer");
        self.enter_reset(code, true);
        self.wake_all();
    }
}
