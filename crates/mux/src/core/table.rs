//! The stream table: each stream's state with the core's own bookkeeping for it, and
//! what the core does after any operation touched a stream (wake-ups, ready queue,
//! timer queue, counts, removal).

use super::*;

/// One stream in the core's table (boxed there: an idle stream costs its entry once,
/// not times the map's spare capacity).
pub(super) struct Entry<A, T> {
    pub(super) state: StreamState<A, T>,
    /// The deadline the stream is registered under in the core's timer queue.
    pub(super) scheduled: Option<Instant>,
    /// Whether the stream sits in the core's ready queue.
    pub(super) in_ready: bool,
    /// Its send priority ([`Core::set_priority`]).
    pub(super) priority: i32,
    /// Whether the stream counts against the limit on unacknowledged opens.
    pub(super) pending_open: bool,
    /// Credit the stream holds in its peer's connection window, as last counted (see
    /// `StreamState::credit_held`).
    pub(super) counted_credit: u32,
    /// Inbound bytes the stream holds, as last counted.
    pub(super) counted_inbound: u32,
}

/// What touched a stream, for [`Core::after_touch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Touch {
    /// Anything: every figure is redone.
    Any,
    /// A read that took bytes (see [`Core::after_read`]).
    Read,
}

impl<A, T> Entry<A, T> {
    pub(super) fn new(state: StreamState<A, T>, pending_open: bool) -> Box<Self> {
        Box::new(Entry {
            state,
            scheduled: None,
            in_ready: false,
            priority: 0,
            pending_open,
            counted_credit: 0,
            counted_inbound: 0,
        })
    }
}

impl<A, T> Core<A, T>
where
    A: Copy + Eq + Hash + std::fmt::Debug,
    T: Copy + Eq + Hash + std::fmt::Debug,
{
    /// Bookkeeping after anything touched a stream: wake-ups, the ready queue, the
    /// timer queue and removal of finished streams.
    pub(super) fn after(&mut self, local: LocalId, now: Instant) {
        self.after_touch(local, now, Touch::Any);
    }

    /// [`Self::after`] following a read that took bytes. A read changes no input of any
    /// stream timer (it moves the receive queue, the credit and perhaps makes an ack due
    /// now, none of which is a deadline), so the deadline is not recomputed, except
    /// once the stream started lingering. At 100 busy streams every frame is read on
    /// its own, and this was a third of the deadline work. Debug builds check the claim.
    pub(super) fn after_read(&mut self, local: LocalId, now: Instant) {
        self.after_touch(local, now, Touch::Read);
    }

    fn after_touch(&mut self, local: LocalId, now: Instant, touch: Touch) {
        let Some(e) = self.streams.get_mut(&local) else {
            return;
        };
        let s = &mut e.state;
        if let Some(rtt) = s.take_rtt_sample() {
            self.delay.on_sample(now, rtt);
        }
        let (read, write, established) = s.take_wakes();
        if read {
            self.events.push_back(Event::Readable(local));
        }
        if write {
            self.events.push_back(Event::Writable(local));
        }
        if established {
            self.events.push_back(Event::Established(local));
        }
        if e.pending_open && (s.is_established() || s.establish_error().is_some()) {
            e.pending_open = false;
            self.pending_opens -= 1;
            self.events.push_back(Event::OpenRoom);
        }
        // The one place where a stream's buffered bytes and credit are counted into
        // the client's and its peer's totals, whatever touched the stream.
        let inbound = s.inbound_bytes() as u32;
        if inbound != e.counted_inbound {
            self.stream_inbound =
                self.stream_inbound + inbound as usize - e.counted_inbound as usize;
            e.counted_inbound = inbound;
        }
        // Credit is counted eagerly when it grows and in 16 KiB steps when it shrinks
        // (every read shrinks it a little): the peer's total stays an upper bound, at
        // far fewer session updates.
        let held = s.credit_held();
        let counted = u64::from(e.counted_credit);
        if held > counted || counted - held >= 16 * 1024 || (held == 0 && counted > 0) {
            let before = u64::from(e.counted_credit);
            e.counted_credit = u32::try_from(held).unwrap_or(u32::MAX);
            let after = u64::from(e.counted_credit);
            self.peers
                .update(s.peer, |p| p.credit = p.credit + after - before);
        }
        if s.removable(now) {
            self.remove(local, now);
            return;
        }
        if s.surb_enqueue() {
            self.surb_waiters
                .entry(s.peer)
                .or_default()
                .push_back(local);
        }
        if !e.in_ready && s.wants_transmit(now) {
            e.in_ready = true;
            self.ready.push_back(local, e.priority);
        }
        let kept = s.take_deadlines_kept();
        if (touch == Touch::Read || kept) && !s.lingering() {
            debug_assert!(
                s.next_deadline(now)
                    .is_none_or(|d| e.scheduled.is_some_and(|cur| cur <= d)),
                "a stream armed a timer earlier than the one registered ({touch:?}, kept {kept}): {:?} scheduled {:?} now {:?}",
                s.timers(), e.scheduled, now
            );
            return;
        }
        if let Some(d) = s.next_deadline(now) {
            // An earlier deadline replaces the registered one; a later one leaves it
            // (it fires early, finds nothing due and registers the new one).
            if e.scheduled.is_none_or(|cur| d < cur) {
                e.scheduled = Some(d);
                self.schedule(local, d);
            }
        }
    }

    pub(super) fn remove(&mut self, local: LocalId, now: Instant) {
        let Some(e) = self.streams.remove(&local) else {
            return;
        };
        let s = &e.state;
        tracing::debug!(stream = %s.id, "stream removed");
        if s.surb_queued() {
            if let Some(q) = self.surb_waiters.get_mut(&s.peer) {
                q.retain(|l| *l != local);
                if q.is_empty() {
                    self.surb_waiters.remove(&s.peer);
                }
            }
        }
        if e.pending_open {
            self.pending_opens -= 1;
            self.events.push_back(Event::OpenRoom);
        }
        self.stream_inbound -= e.counted_inbound as usize;
        let counted = u64::from(e.counted_credit);
        self.peers.update(s.peer, |p| {
            p.streams -= 1;
            p.credit -= counted;
        });
        match s.peer {
            Destination::Address(_) => {
                self.outbound.remove(&s.id);
            }
            Destination::Reply(tag) => {
                self.inbound.remove(&(tag, s.id));
                if self.last_inbound.is_some_and(|(key, _)| key == (tag, s.id)) {
                    self.last_inbound = None;
                }
                self.remember_closed((tag, s.id), now, false);
                if let Some(n) = self.inbound_ids.get_mut(&s.id) {
                    *n -= 1;
                    if *n == 0 {
                        self.inbound_ids.remove(&s.id);
                    }
                }
                self.live_inbound -= 1;
            }
        }
        // Its timer entries are stale now; one may be on top.
        self.prune_timers();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one stream costs in the table: its boxed entry (the state and the core's
    /// bookkeeping) plus a key and a pointer in the map. The entry stays within what the
    /// state alone was before the bookkeeping moved here (1,160 bytes).
    #[test]
    fn table_entry_stays_small() {
        let size = std::mem::size_of::<Entry<[u8; 32], [u8; 16]>>();
        assert!(size <= 992, "a table entry grew to {size} bytes");
    }
}
