//! The receive direction: inbound frames, reordering, reads, EOF and resets from the peer.

use super::*;

impl<A: Copy, T: Copy> StreamState<A, T> {
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        if let Some(r) = self.reset.filter(|_| !self.reads_survive_reset()) {
            return ReadOutcome::Failed(reset_error(r, "reading"));
        }
        if buf.is_empty() {
            return ReadOutcome::Data(0);
        }
        let mut n = 0;
        while n < buf.len() {
            let Some(front) = self.recv_queue.front_mut() else {
                break;
            };
            let take = front.len().min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&front[..take]);
            let _ = front.split_to(take);
            if front.is_empty() {
                self.recv_queue.pop_front();
            }
            n += take;
        }
        if n > 0 {
            self.on_consumed(n);
            return ReadOutcome::Data(n);
        }
        self.read_end_outcome()
    }

    /// One chunk as it arrived (for `recv()`).
    pub(crate) fn read_chunk(&mut self) -> Result<Option<Bytes>, ReadOutcome> {
        if let Some(r) = self.reset.filter(|_| !self.reads_survive_reset()) {
            return Err(ReadOutcome::Failed(reset_error(r, "reading")));
        }
        if let Some(chunk) = self.recv_queue.pop_front() {
            self.on_consumed(chunk.len());
            return Ok(Some(chunk));
        }
        match self.read_end_outcome() {
            ReadOutcome::Eof => Ok(None),
            other => Err(other),
        }
    }

    pub(super) fn read_end_outcome(&self) -> ReadOutcome {
        match &self.read_end {
            None => ReadOutcome::Pending,
            Some(ReadEnd::Eof) => ReadOutcome::Eof,
            Some(ReadEnd::Aborted(code)) => ReadOutcome::Failed(StreamError::io(
                io::ErrorKind::ConnectionAborted,
                Some(*code),
                format!(
                    "stream {}: the peer dropped its end without shutting it down (code {code}); \
                     every byte it wrote was delivered, but the data may be incomplete",
                    self.id
                ),
            )),
            Some(ReadEnd::Failed(kind, msg)) => {
                ReadOutcome::Failed(StreamError::io(*kind, None, msg.clone()))
            }
        }
    }

    pub(super) fn on_consumed(&mut self, n: usize) {
        self.recv_queued -= n;
        self.consumed += n as u64;
        self.metrics.bytes_read += n as u64;
        // Reopen the window once half of it was read since the last advertisement.
        let new_max = self.consumed + self.settings.window;
        if self.extended()
            && new_max.saturating_sub(self.advertised_max) >= self.settings.window / 2
        {
            self.ack_pending = true;
            self.ack_now = true;
        }
    }

    /// The application dropped one or both halves of its handle.
    pub(crate) fn drop_handle(&mut self, read: bool, write: bool) {
        if write && self.write_handle {
            self.write_handle = false;
            if !self.shutdown_requested && self.reset.is_none() && self.write_error.is_none() {
                // Abortive close ordered after the data: everything written is still
                // delivered, then the peer's read fails instead of seeing EOF.
                self.shutdown_requested = true;
                self.abort_code = Some(reset_code::CANCELLED);
            }
        }
        if read && self.read_handle {
            self.read_handle = false;
            self.discard_reads = true;
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
        let _enter = self.span.clone().entered();
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
        if !self.in_surb_wait {
            self.surb_blocked_at = None;
        }
        if self.reaped && self.reset.is_none() {
            self.on_frame_after_reap(header);
            return;
        }
        if self.reset.is_some() {
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
                if self.is_outbound() && !self.established {
                    // Data from the listener proves it saw our Open; the OpenAck
                    // (which tells us its capabilities) may still be on its way.
                    self.established = true;
                    self.wake_established = true;
                }
                let mut body = payload;
                if header.reserved & ext::FLAG_ACK != 0 && self.local_extended {
                    match Ack::parse(&body) {
                        Ok((ack, used)) => {
                            self.on_ack(&ack, now);
                            let _ = body.split_to(used);
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
                self.on_segment(Seq::new(header.seq), seg, now, budget);
            }
            MessageType::Ping => {
                self.pending_ctl.pong = Some(header.seq);
                // A peer that pings has heard nothing from us for a while: it may be
                // blocked on credit whose window update was lost, which nothing else
                // repeats. Answer with our current acknowledgement and window too.
                if self.extended() && self.read_end.is_none() {
                    self.ack_pending = true;
                    self.ack_now = true;
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
                            if self.is_outbound() && !self.established {
                                // Only a listener that has the stream acks it: as good as
                                // its OpenAck for establishment (PROTOCOL.md §7.2).
                                self.established = true;
                                self.wake_established = true;
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
        if self.read_end == Some(ReadEnd::Eof) {
            self.read_end = Some(ReadEnd::Failed(
                io::ErrorKind::TimedOut,
                format!(
                    "stream {}: reaped as idle while the peer was still writing; \
                     the bytes it sent after the reap were discarded",
                    self.id
                ),
            ));
            self.wake_read = true;
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
        if !self.established {
            self.established = true;
            self.wake_established = true;
        }
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
        self.legacy_limit = self.legacy_limit.min(allowed);
        self.release_sent();
        self.retransmit_queue.clear();
        self.peer_max_data = u64::MAX;
        self.wake_write = true;
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

    pub(super) fn on_segment(&mut self, seq: Seq, seg: Segment, now: Instant, budget: usize) {
        let len = reorder::ByteLen::byte_len(&seg);
        let slack = self.frame_payload;
        if len > 0 && (len > budget || self.inbound_bytes() + len > self.recv_limit() + slack) {
            self.metrics.frames_refused += 1;
            if self.peer_kind == PeerKind::Legacy && !self.discard_reads {
                self.fail_read(
                    io::ErrorKind::InvalidData,
                    "the peer sent more than the receive buffer holds and cannot retransmit",
                );
            }
            return;
        }
        let outcome = self.reorder.insert(seq, seg);
        match outcome {
            InsertOutcome::InOrder => {
                self.drain_in_order(now);
            }
            InsertOutcome::Buffered => {
                // Reordering is the norm on a mixnet: count it towards the next ack
                // (which carries the SACK blocks) instead of acking at once.
                self.metrics.out_of_order += 1;
                self.frames_since_ack += 1;
                self.schedule_ack(now);
            }
            InsertOutcome::Duplicate | InsertOutcome::TooOld => {
                // Our ack may have been lost: repeat it (delayed, so a burst of
                // retransmissions costs one ack).
                self.metrics.duplicates += 1;
                self.schedule_ack(now);
            }
            InsertOutcome::BeyondWindow | InsertOutcome::OverCapacity => {
                self.metrics.frames_refused += 1;
                if self.peer_kind == PeerKind::Legacy {
                    self.fail_read(
                        io::ErrorKind::InvalidData,
                        "a gap in the peer's sequence numbers outgrew the reorder buffer; \
                         a reference peer does not retransmit, so the stream cannot continue",
                    );
                }
            }
        }
    }

    pub(super) fn drain_in_order(&mut self, now: Instant) {
        while let Some((_, seg)) = self.reorder.pop() {
            self.frames_since_ack += 1;
            match seg {
                Segment::Data(b) => {
                    if b.is_empty() {
                        continue;
                    }
                    self.recv_offset += b.len() as u64;
                    if self.discard_reads {
                        self.consumed += b.len() as u64;
                    } else {
                        self.recv_queued += b.len();
                        self.recv_queue.push_back(b);
                    }
                    self.wake_read = true;
                }
                Segment::Fin(code) => {
                    if self.read_end.is_none() {
                        self.read_end = Some(match code {
                            None => ReadEnd::Eof,
                            Some(c) => ReadEnd::Aborted(c),
                        });
                    }
                    self.wake_read = true;
                    self.ack_now = true;
                }
            }
        }
        // Credit running low: the peer is within a quarter window of the limit it
        // believes in, so it will stall without an ack (e.g. before our first ack,
        // when it only has INITIAL_CREDIT). Ack now instead of after the delay.
        if self.recv_offset + self.settings.window / 4 >= self.advertised_max {
            self.ack_now = true;
        }
        self.schedule_ack(now);
    }

    pub(super) fn schedule_ack(&mut self, now: Instant) {
        if self.extended() || self.peer_kind == PeerKind::Unknown {
            self.ack_pending = true;
            if self.frames_since_ack >= self.settings.ack_every {
                self.ack_now = true;
            } else if self.ack_deadline.is_none() {
                self.ack_deadline = Some(now + self.settings.ack_delay);
            }
        }
    }

    pub(super) fn fail_read(&mut self, kind: io::ErrorKind, why: &str) {
        if self.read_end.is_none() {
            self.read_end = Some(ReadEnd::Failed(kind, format!("stream {}: {why}", self.id)));
            self.wake_read = true;
        }
    }

    pub(super) fn on_peer_reset(&mut self, code: u32) {
        tracing::debug!(code, "reset by peer");
        self.reset = Some(ResetInfo {
            by_peer: true,
            code,
        });
        // A peer whose direction already ended in order (its FIN was delivered, so
        // every byte it wrote sits in our queue) resets only to stop our direction,
        // e.g. after dropping its handle: those bytes stay readable.
        let kept = self
            .read_end
            .is_some()
            .then(|| (std::mem::take(&mut self.recv_queue), self.recv_queued));
        self.discard_all();
        if let Some((queue, queued)) = kept {
            self.recv_queue = queue;
            self.recv_queued = queued;
        }
        self.wake_all();
    }

    /// Whether reads still deliver after a reset: only when the peer reset the stream
    /// after its direction had ended in order (see [`Self::on_peer_reset`]).
    pub(super) fn reads_survive_reset(&self) -> bool {
        self.reset.is_some_and(|r| r.by_peer) && self.read_end.is_some()
    }
}
