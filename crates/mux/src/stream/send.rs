//! The send direction: writes, coalescing, FIN, reset, and what is still to be acknowledged.

use super::*;

impl<A: Copy, T: Copy> StreamState<A, T> {
    /// The failure the write side reports once it was reset or failed; `None` while it
    /// works or after it finished cleanly (a later failure lost nothing we wrote).
    pub(crate) fn send_error(&self) -> Option<StreamError> {
        match self.send_state {
            SendState::Stopped(f) => Some(self.error(Operation::Write, f)),
            _ => None,
        }
    }

    /// Whether every written byte and the FIN were acknowledged by the peer (for a
    /// reference peer, which never acknowledges: sent). `Err` when the write side was
    /// reset or failed first.
    pub(crate) fn send_finished(&self) -> Result<bool, StreamError> {
        match self.send_state {
            SendState::Finished => Ok(true),
            SendState::Stopped(f) => Err(self.error(Operation::Write, f)),
            _ => Ok(false),
        }
    }

    pub(crate) fn write(&mut self, data: &[u8], now: Instant) -> Write {
        match self.send_state {
            SendState::Open => {}
            SendState::Stopped(f) => return Write::Failed(self.error(Operation::Write, f)),
            SendState::Closing { .. } | SendState::FinSent | SendState::Finished => {
                return Write::Failed(self.error(Operation::Write, Failure::WriteAfterShutdown))
            }
        }
        if data.is_empty() {
            return Write::Accepted(0);
        }
        let buffered = self.send_buf.unacked_bytes() + self.pending.len();
        let room = self.settings.send_limit.saturating_sub(buffered) as u64;
        let framed_end = self.send_offset + self.pending.len() as u64;
        let credit = self.peer_max_data.saturating_sub(framed_end);
        let n = (data.len() as u64).min(room).min(credit) as usize;
        let n = n.min(self.pending.room());
        if n == 0 {
            crate::metrics::bump(&mut self.metrics.credit_stalls);
            return Write::Blocked;
        }
        self.pending.push(&data[..n], self.frame_payload());
        self.last_data = now;
        if self.pending_since.is_none() {
            self.pending_since = Some(now);
        }
        self.metrics.bytes_written += n as u64;
        Write::Accepted(n)
    }

    pub(crate) fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.flush_requested = true;
        }
    }

    /// Whether everything written so far has left the stream's coalescing buffer (a
    /// stopped direction dropped it).
    pub(crate) fn flushed(&self) -> bool {
        self.pending.is_empty()
    }

    /// Shuts the write side down: the FIN follows the buffered bytes.
    pub(crate) fn shutdown(&mut self) {
        if self.send_state == SendState::Open {
            self.send_state = SendState::Closing { abort: None };
        }
    }

    /// Whether the FIN went out (or, with a reference peer, the write side is over).
    pub(crate) fn shutdown_complete(&self) -> bool {
        matches!(
            self.send_state,
            SendState::FinSent | SendState::Finished | SendState::Stopped(_)
        )
    }

    /// The application resets the stream with a reason code.
    pub(crate) fn reset(&mut self, code: u32) {
        if self.teardown.is_reset() {
            return;
        }
        match (self.peer_kind, self.handshake) {
            _ if !self.local_extended => {}
            (PeerKind::Extended, _) => self.pending_ctl.reset = Some(code),
            (PeerKind::Legacy, _) => {}
            // The Open never left: the peer knows nothing, so it is told nothing.
            (PeerKind::Unknown, Handshake::Opening { tries: 0, .. }) => {}
            (PeerKind::Unknown, _) if self.pending_ctl.open => {}
            // The peer may speak only the reference format, which has no Reset: wait
            // for its OpenAck to show whether it may be told (PROTOCOL.md §4).
            (PeerKind::Unknown, _) => self.deferred_reset = Some(code),
        }
        self.enter_reset(code, false);
        self.wake_all();
    }

    /// The application dropped its write half: unless it shut the direction down, this
    /// is an abortive close ordered after the data (everything written is still
    /// delivered, then the peer's read fails instead of seeing EOF).
    pub(super) fn drop_write_handle(&mut self) {
        if self.send_state == SendState::Open {
            self.send_state = SendState::Closing {
                abort: Some(reset_code::CANCELLED),
            };
        }
    }

    /// Gives the send direction up with `failure` (unless it finished): unsent and
    /// unacknowledged bytes are dropped.
    pub(super) fn stop_sending(&mut self, failure: Failure) {
        if self.send_state != SendState::Finished {
            self.send_state = SendState::Stopped(failure);
        }
        self.abandon_send();
    }

    /// Drops everything the send direction holds (its state says why).
    pub(super) fn abandon_send(&mut self) {
        self.pending.clear();
        self.retransmit_queue.clear();
        self.suspects.clear();
        self.release_sent();
        self.pending_ctl.open = false;
    }

    /// Forgets every sent frame (nothing will be retransmitted).
    pub(super) fn release_sent(&mut self) {
        let next = self.send_buf.next_seq();
        let _ = self.send_buf.on_ack(next, &[], self.last_activity);
        if self.pending.is_empty() {
            self.pending.release_spares();
        }
    }

    pub(super) fn discard_all(&mut self) {
        self.abandon_send();
        // Everything held goes, out-of-order frames beyond a gap included (popping
        // would only take the in-order ones).
        let (next, cfg) = (self.reorder.next_expected(), *self.reorder.config());
        self.reorder = ReorderBuffer::new(next, cfg);
        self.recv_queue.clear();
        self.recv_queued = 0;
        self.ack_due = AckDue::Nothing;
    }

    /// Bytes written but not yet acknowledged by the peer (unsent ones included), plus
    /// one for a FIN not yet acknowledged. Zero once everything arrived.
    /// The bytes this stream may have unacknowledged now: its send buffer, or less where
    /// the peer's credit ends sooner (counted from the oldest unacknowledged byte).
    pub(crate) fn send_window(&self) -> u64 {
        let acked = self
            .send_offset
            .saturating_sub(self.send_buf.unacked_bytes() as u64);
        let credit = self.peer_max_data.saturating_sub(acked);
        credit.min(self.settings.send_limit as u64)
    }

    pub(crate) fn send_outstanding(&self) -> usize {
        let fin = usize::from(self.send_state.shut_down());
        if !self.reliable() {
            return self.pending.len();
        }
        self.pending.len() + self.send_buf.unacked_bytes() + fin
    }

    // ----- outbound frames ------------------------------------------------------

    /// Whether data could go out right now if the transport took it: bytes ready in the
    /// coalescing buffer or a retransmission waiting. What tells a delay-based pacer
    /// that the stream is held back by the network rather than by its application.
    pub(crate) fn data_waiting(&self, now: Instant) -> bool {
        !self.retransmit_queue.is_empty() || self.data_sendable(now)
    }

    pub(super) fn data_sendable(&self, now: Instant) -> bool {
        if self.pending.is_empty() || self.pending_ctl.open {
            return false;
        }
        self.pending.len() >= self.frame_payload()
            || self.nodelay
            || self.flush_requested
            || self.send_state.shut_down()
            || self
                .pending_since
                .is_some_and(|t| t + self.settings.coalesce_delay <= now)
    }

    /// Whether the FIN (a `Close`, an extension) can go: only once the peer showed
    /// whether it speaks the extensions, so a reference peer never gets one.
    pub(super) fn fin_sendable(&self) -> bool {
        matches!(self.send_state, SendState::Closing { .. })
            && self.pending.is_empty()
            && !self.pending_ctl.open
            && (self.peer_kind != PeerKind::Unknown || !self.local_extended)
    }
}
