//! The send direction: writes, coalescing, FIN, reset, and what is still to be acknowledged.

use super::*;

impl<A: Copy, T: Copy> StreamState<A, T> {
    /// The error the write side reports once it was reset or failed; `None` while it
    /// works or after it finished cleanly.
    pub(crate) fn send_error(&self) -> Option<io::Error> {
        if self.all_acked {
            // Everything arrived: a later reset or failure lost nothing we wrote.
            return None;
        }
        if let Some(r) = self.reset {
            return Some(if r.by_peer {
                StreamError::io(
                    io::ErrorKind::BrokenPipe,
                    Some(r.code),
                    format!(
                        "stream {} was reset by the peer (code {}); open a new stream",
                        self.id, r.code
                    ),
                )
            } else {
                reset_error(r, "writing")
            });
        }
        self.write_error
            .as_ref()
            .map(|(kind, msg)| StreamError::io(*kind, None, msg.clone()))
    }

    /// Whether every written byte and the FIN were acknowledged by the peer (for a
    /// reference peer, which never acknowledges: sent). `Err` when the write side was
    /// reset or failed first.
    pub(crate) fn send_finished(&self) -> Result<bool, io::Error> {
        if self.all_acked {
            return Ok(true);
        }
        match self.send_error() {
            Some(e) => Err(e),
            None => Ok(false),
        }
    }

    pub(crate) fn write(&mut self, data: &[u8], now: Instant) -> WriteOutcome {
        if let Some(e) = self.send_error() {
            return WriteOutcome::Failed(e);
        }
        if self.shutdown_requested || self.fin_seq.is_some() {
            return WriteOutcome::Failed(StreamError::io(
                io::ErrorKind::BrokenPipe,
                None,
                format!(
                    "stream {}: write after shutdown of the write side; the stream only reads now",
                    self.id
                ),
            ));
        }
        if data.is_empty() {
            return WriteOutcome::Accepted(0);
        }
        let buffered = self.send_buf.unacked_bytes() + self.pending.len();
        let room = self.settings.send_limit.saturating_sub(buffered) as u64;
        let framed_end = self.send_offset + self.pending.len() as u64;
        let credit = self.peer_max_data.saturating_sub(framed_end);
        let n = (data.len() as u64).min(room).min(credit) as usize;
        if n == 0 {
            self.metrics.credit_stalls += 1;
            return WriteOutcome::Blocked;
        }
        self.pending.extend_from_slice(&data[..n]);
        self.last_data = now;
        if self.pending_since.is_none() {
            self.pending_since = Some(now);
        }
        self.metrics.bytes_written += n as u64;
        WriteOutcome::Accepted(n)
    }

    pub(crate) fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.flush_requested = true;
        }
    }

    /// Whether everything written so far has left the stream's coalescing buffer.
    pub(crate) fn flushed(&self) -> bool {
        self.pending.is_empty() || self.reset.is_some() || self.write_error.is_some()
    }

    pub(crate) fn shutdown(&mut self) {
        if self.reset.is_none() && self.write_error.is_none() {
            self.shutdown_requested = true;
        }
    }

    /// Whether the FIN went out (or, with a reference peer, the write side is over).
    pub(crate) fn shutdown_complete(&self) -> bool {
        self.fin_seq.is_some()
            || self.write_done
            || self.reset.is_some()
            || self.write_error.is_some()
    }

    pub(crate) fn reset(&mut self, code: u32) {
        if self.reset.is_some() {
            return;
        }
        self.reset = Some(ResetInfo {
            by_peer: false,
            code,
        });
        match self.peer_kind {
            _ if !self.local_extended => {}
            PeerKind::Extended => self.pending_ctl.reset = Some(code),
            PeerKind::Legacy => {}
            // The Open never left: the peer knows nothing, so it is told nothing.
            PeerKind::Unknown if self.pending_ctl.open || self.open_tries == 0 => {}
            // The peer may speak only the reference format, which has no Reset: wait
            // for its OpenAck to show whether it may be told (PROTOCOL.md §4).
            PeerKind::Unknown => self.deferred_reset = Some(code),
        }
        self.discard_all();
        self.wake_all();
    }

    /// Gives the send direction up: unsent and unacknowledged bytes are dropped.
    pub(super) fn abandon_send(&mut self) {
        self.pending.clear();
        self.retransmit_queue.clear();
        self.suspects.clear();
        self.release_sent();
        self.write_done = true;
        self.pending_ctl.open = false;
    }

    /// Forgets every sent frame (nothing will be retransmitted).
    pub(super) fn release_sent(&mut self) {
        let next = self.send_buf.next_seq();
        let _ = self.send_buf.on_ack(next, &[], self.last_activity);
    }

    pub(super) fn discard_all(&mut self) {
        self.abandon_send();
        // Everything held goes, out-of-order frames beyond a gap included (popping
        // would only take the in-order ones).
        let (next, cfg) = (self.reorder.next_expected(), *self.reorder.config());
        self.reorder = ReorderBuffer::new(next, cfg);
        self.recv_queue.clear();
        self.recv_queued = 0;
        self.ack_pending = false;
        self.ack_now = false;
    }

    /// Bytes written but not yet acknowledged by the peer (unsent ones included), plus
    /// one for a FIN not yet acknowledged. Zero once everything arrived.
    pub(crate) fn send_outstanding(&self) -> usize {
        let fin = usize::from(self.shutdown_requested && !self.write_done);
        if !self.reliable() {
            return self.pending.len();
        }
        self.pending.len() + self.send_buf.unacked_bytes() + fin
    }

    // ----- outbound frames ------------------------------------------------------

    pub(super) fn data_sendable(&self, now: Instant) -> bool {
        if self.pending.is_empty() || self.pending_ctl.open {
            return false;
        }
        self.pending.len() >= self.frame_payload
            || self.nodelay
            || self.flush_requested
            || self.shutdown_requested
            || self
                .pending_since
                .is_some_and(|t| t + self.settings.coalesce_delay <= now)
    }

    /// Whether the FIN (a `Close`, an extension) can go: only once the peer showed
    /// whether it speaks the extensions, so a reference peer never gets one.
    pub(super) fn fin_sendable(&self) -> bool {
        self.shutdown_requested
            && self.fin_seq.is_none()
            && self.pending.is_empty()
            && !self.write_done
            && !self.pending_ctl.open
            && (self.peer_kind != PeerKind::Unknown || !self.local_extended)
    }
}
