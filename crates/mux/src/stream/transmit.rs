//! Transmit assembly: what the stream sends next and how a frame is encoded.

use super::*;

impl<A: Copy, T: Copy> StreamState<A, T> {
    /// Whether `poll_transmit` has something to send now.
    pub(crate) fn wants_transmit(&self, now: Instant) -> bool {
        if self.pending_ctl.reset.is_some() {
            return true;
        }
        if self.teardown.is_reset() {
            return false;
        }
        let payload_ready = self.surb_wait == SurbWait::Ready
            && (!self.retransmit_queue.is_empty()
                || self.data_sendable(now)
                || self.fin_sendable());
        self.pending_ctl.open
            || self.pending_ctl.open_ack
            || self.pending_ctl.pong.is_some()
            || self.pending_ctl.ping
            || payload_ready
            || (self.ack_due(now) && self.extended())
            || (self.surbs_wanted() && self.extended())
    }

    /// Whether the next transmit may build an ack (which grants credit): an ack is
    /// pending, SURBs are owed, or a listener may ask for SURBs.
    pub(crate) fn may_ack(&self) -> bool {
        self.ack_due.pending() || self.surbs_owed > 0 || (!self.is_outbound() && self.extended())
    }

    pub(super) fn header(&self, t: MessageType, seq: u32) -> StreamHeader {
        StreamHeader::new(self.id, t, seq)
    }

    pub(super) fn finish(&mut self, payload: Bytes, surbs: u32) -> OutFrame {
        // Every frame fits the packet it was sized for (retransmissions included), so
        // the packets and SURBs counted per frame are the ones spent.
        debug_assert!(
            payload.len() <= lp_frame::HEADER_LEN + self.frame_payload(),
            "frame of {} bytes exceeds the {}-byte frame size",
            payload.len(),
            lp_frame::HEADER_LEN + self.frame_payload()
        );
        self.metrics.frames_sent += 1;
        self.metrics.surbs_attached += u64::from(surbs);
        if !self.is_outbound() {
            self.replies_since_ask = self.replies_since_ask.saturating_add(1);
        }
        OutFrame {
            payload,
            reply_surbs: surbs,
        }
    }

    /// The next frame this stream wants to send, if any.
    pub(crate) fn poll_transmit(&mut self, now: Instant, stock: Option<u32>) -> Option<OutFrame> {
        let _enter = self.span().entered();
        self.deadlines_kept = false;
        let nothing_to_resend = self.retransmit_queue.is_empty();
        if stock.is_some() {
            self.metrics.surbs_available = stock;
        }
        self.maybe_request_surbs(now, stock);
        if let Some(code) = self.pending_ctl.reset.take() {
            let surbs = self.surbs_for(false).min(1);
            return Some(self.finish(Reset { code }.frame(self.id), surbs));
        }
        if self.teardown.is_reset() {
            return None;
        }
        if self.pending_ctl.open {
            self.pending_ctl.open = false;
            if let Handshake::Opening { sent_at, tries } = &mut self.handshake {
                *tries += 1;
                *sent_at = Some(now);
            }
            let reserved = if self.local_extended {
                ext::CAP_EXTENDED
            } else {
                0
            };
            let hdr = self.header(MessageType::Open, 0).with_reserved(reserved);
            let surbs = self.surbs_for(true);
            return Some(self.finish(Bytes::copy_from_slice(&hdr.to_bytes()), surbs));
        }
        if self.pending_ctl.open_ack {
            self.pending_ctl.open_ack = false;
            let reserved = if self.extended() {
                ext::CAP_EXTENDED
            } else {
                0
            };
            let hdr = self.header(MessageType::OpenAck, 0).with_reserved(reserved);
            return Some(self.finish(Bytes::copy_from_slice(&hdr.to_bytes()), 0));
        }
        if self.pending_ctl.ping {
            self.pending_ctl.ping = false;
            let nonce = self.next_ping_nonce;
            crate::metrics::bump(&mut self.metrics.pings_sent);
            self.next_ping_nonce = self.next_ping_nonce.wrapping_add(1);
            let hdr = self.header(MessageType::Ping, nonce);
            let surbs = self.surbs_for(false);
            return Some(self.finish(Bytes::copy_from_slice(&hdr.to_bytes()), surbs));
        }
        if let Some(nonce) = self.pending_ctl.pong.take() {
            let hdr = self.header(MessageType::Pong, nonce);
            let surbs = self.surbs_for(false);
            return Some(self.finish(Bytes::copy_from_slice(&hdr.to_bytes()), surbs));
        }
        if self.surb_starved(stock)
            && (!self.retransmit_queue.is_empty() || self.data_sendable(now) || self.fin_sendable())
        {
            // Keep the reserve for acks; look again shortly or when the opener's next
            // frame (which may carry SURBs) arrives. The ack below asks for more.
            self.surb_block(now);
            crate::metrics::bump(&mut self.metrics.surb_stalls);
            if self.extended() && (self.ack_due(now) || self.surbs_wanted()) {
                return self.poll_ack(now, stock);
            }
            return None;
        }
        while let Some(seq) = self.retransmit_queue.pop_front() {
            let Some(seg) = self.send_buf.get(seq).cloned() else {
                continue;
            };
            self.send_buf.mark_retransmitted(seq, now);
            crate::metrics::bump(&mut self.metrics.retransmits);
            tracing::trace!(seq = seq.get(), "retransmit");
            let frame = self.encode_segment(seq, &seg, stock, now);
            let surbs = self.surbs_for(false);
            return Some(self.finish(frame, surbs));
        }
        if self.data_sendable(now) {
            // A pending ack rides along when it fits beside some data; the data is cut
            // to leave it room.
            let piggyback = self.extended()
                && self.ack_due.pending()
                && self.ack_max_len() < self.frame_payload();
            let sacks = piggyback.then(|| self.reorder.sack_ranges(ext::MAX_SACK_BLOCKS));
            let ack_len = sacks
                .as_ref()
                .map_or(0, |s| Ack::new(0, 0, 0).encoded_len() + 8 * s.len());
            let n = self.pending.len().min(self.frame_payload() - ack_len);
            let slot = self.pending.take(n, lp_frame::HEADER_LEN + ack_len);
            if self.pending.is_empty() {
                self.pending_since = None;
                self.flush_requested = false;
            } else if !self.flush_requested {
                self.pending_since = Some(now);
            }
            // Built once the data left the buffer: the SURB request counts what is left.
            let ack = sacks.map(|s| self.build_ack_with(stock, now, &s));
            debug_assert_eq!(ack.as_ref().map_or(0, Ack::encoded_len), ack_len);
            let seq = self.send_buf.next_seq();
            // Others in flight: the retransmission timer keeps its oldest frame. A full
            // frame still waiting (or nothing) arms no coalescing deadline; a partial
            // frame left behind would (see `take_deadlines_kept`).
            self.deadlines_kept = nothing_to_resend
                && ack.is_none()
                && !self.send_buf.is_empty()
                && self.reliable()
                && (self.pending.is_empty() || self.pending.len() >= self.frame_payload());
            let (frame, body) = self.encode_data_in_place(slot, seq, ack.as_ref());
            self.send_offset += body.len() as u64;
            let pushed = self.send_buf.push(Segment::Data(body), now);
            debug_assert_eq!(pushed, seq, "the frame carries the sequence number it got");
            if !self.reliable() {
                // Nothing waits for an ack: the room is free now, so a writer blocked
                // on the send buffer must hear it (a reference peer never acks).
                self.release_sent();
                self.wakes.write = true;
            }
            let surbs = self.surbs_for(false);
            return Some(self.finish(frame, surbs));
        }
        if self.fin_sendable() {
            if !self.local_extended || self.peer_kind == PeerKind::Legacy {
                // A reference peer has no FIN: the write side simply ends (and whoever
                // waits in `closed()` hears it).
                self.send_state = SendState::Finished;
                self.wakes.write = true;
                return None;
            }
            // `fin_sendable` holds only in `Closing`.
            let abort = match self.send_state {
                SendState::Closing { abort } => abort,
                _ => None,
            };
            let seg = Segment::Fin(abort);
            let seq = self.send_buf.push(seg.clone(), now);
            self.send_state = SendState::FinSent;
            let frame = self.encode_segment(seq, &seg, stock, now);
            let surbs = self.surbs_for(false);
            return Some(self.finish(frame, surbs));
        }
        if self.extended() && (self.ack_due(now) || self.surbs_wanted()) {
            return self.poll_ack(now, stock);
        }
        None
    }

    /// Encodes a first transmission of data where the coalescing buffer keeps it: the
    /// header (and `ack`) go into the room right in front of the payload, so the frame is
    /// that same memory and nothing is copied. Returns the frame and its payload (kept
    /// for retransmission).
    fn encode_data_in_place(
        &mut self,
        taken: super::pending::Taken,
        seq: Seq,
        ack: Option<&Ack>,
    ) -> (Bytes, Bytes) {
        let super::pending::Taken { mut buf, room } = taken;
        let mut hdr = self.header(MessageType::Data, seq.get());
        if ack.is_some() {
            hdr = hdr.with_reserved(ext::FLAG_ACK);
        }
        let head_len = lp_frame::HEADER_LEN + ack.map_or(0, Ack::encoded_len);
        // `take` leaves at least the room it was asked for.
        let start = room.saturating_sub(head_len);
        let mut head = &mut buf[start..room];
        head.put_slice(&hdr.to_bytes());
        if let Some(a) = ack {
            a.encode(&mut head);
        }
        // Cut the unused room off before freezing: one reference-count increment (the
        // payload's view) per frame rather than three.
        buf.advance(start);
        let frame = buf.freeze();
        let payload = frame.slice(head_len..);
        (frame, payload)
    }

    /// Encodes a Data or Close frame, piggybacking a pending ack when both sides
    /// speak the extensions.
    pub(super) fn encode_segment(
        &mut self,
        seq: Seq,
        seg: &Segment,
        stock: Option<u32>,
        now: Instant,
    ) -> Bytes {
        let (t, body_len) = match seg {
            Segment::Data(b) => (MessageType::Data, b.len()),
            Segment::Fin(code) => (
                MessageType::Close,
                Close { error_code: *code }.encoded_len(),
            ),
        };
        // Piggyback only what fits the packet the frame was sized for: a segment cut
        // to a full frame (a retransmission, say) sends its ack separately instead of
        // spilling into a second Sphinx packet.
        let piggyback = self.extended()
            && self.ack_due.pending()
            && body_len + self.ack_max_len() <= self.frame_payload();
        let ack = piggyback.then(|| self.build_ack(stock, now));
        let ack_len = ack.as_ref().map_or(0, Ack::encoded_len);
        let mut hdr = self.header(t, seq.get());
        if ack.is_some() {
            hdr = hdr.with_reserved(ext::FLAG_ACK);
        }
        let mut buf = BytesMut::with_capacity(lp_frame::HEADER_LEN + ack_len + body_len);
        buf.put_slice(&hdr.to_bytes());
        if let Some(a) = &ack {
            a.encode(&mut buf);
        }
        match seg {
            Segment::Data(b) => buf.put_slice(b),
            Segment::Fin(code) => Close { error_code: *code }.encode(&mut buf),
        }
        buf.freeze()
    }
}
