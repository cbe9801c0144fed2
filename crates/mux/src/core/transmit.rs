//! What goes out next: stateless control frames first (at most four in a row while a
//! stream waits), then SURB waiters given their turn, then the ready queue in priority
//! and round-robin order.

use lp_frame::ext::Reset;

use super::*;

/// Control frames that go out in a row while streams have frames waiting.
const MAX_CONTROL_RUN: u32 = 4;

impl<A, T> Core<A, T>
where
    A: Copy + Eq + Hash + std::fmt::Debug,
    T: Copy + Eq + Hash + std::fmt::Debug,
{
    /// The next message to send. `surb_stock` tells, where the network knows it, how
    /// many reply SURBs we hold for a sender tag. Call repeatedly while the transport
    /// is ready; `None` means nothing to send now.
    #[must_use]
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        surb_stock: &dyn Fn(&T) -> Option<u32>,
    ) -> Option<Transmit<A, T>> {
        // Control frames first, but at most `MAX_CONTROL_RUN` in a row while a stream
        // waits: a peer that makes us answer (resets for unknown streams, refused opens)
        // cannot hold our streams' frames back for long.
        if self.control_run < MAX_CONTROL_RUN {
            if let Some(t) = self.control.pop_front() {
                self.control_run = self.control_run.saturating_add(1);
                return Some(t);
            }
        }
        if self.surb_turns.is_empty() && !self.surb_waiters.is_empty() {
            self.release_surb_waiters(surb_stock);
        }
        while let Some((local, turn)) = self
            .surb_turns
            .pop_front()
            .map(|l| (l, true))
            .or_else(|| self.ready.pop_front().map(|l| (l, false)))
        {
            let Some(e) = self.streams.get_mut(&local) else {
                continue;
            };
            if !turn {
                e.in_ready = false;
            }
            let counted_credit = u64::from(e.counted_credit);
            let s = &mut e.state;
            let stock = match s.peer {
                Destination::Reply(tag) => surb_stock(&tag),
                Destination::Address(_) => None,
            };
            // Growth is granted only in acks: look the peer's room up only for a
            // stream that may build one now (none: no growth this time).
            s.credit_room = if s.may_ack() {
                self.peers.growth_room(&s.peer, counted_credit)
            } else {
                0
            };
            match s.peer {
                Destination::Address(_) => {
                    s.peer_surbs = Some(peer_surbs(&self.peers, &s.peer, &self.cfg));
                }
                Destination::Reply(_) if stock.is_some() => {
                    s.peer_streams = u16::try_from(self.peers.get(&s.peer).streams)
                        .unwrap_or(u16::MAX)
                        .max(1);
                }
                Destination::Reply(_) => {}
            }
            let frame = s.poll_transmit(now, stock);
            if frame.is_some() && s.data_waiting(now) {
                self.data_waited = true;
            }
            let to = s.peer;
            if let Some(f) = &frame {
                if f.reply_surbs > 0 {
                    self.peers.surbs_sent(&to, f.reply_surbs);
                }
            }
            self.after(local, now);
            if let Some(f) = frame {
                self.control_run = 0;
                return Some(Transmit {
                    to,
                    payload: f.payload,
                    reply_surbs: f.reply_surbs,
                });
            }
        }
        // No stream had anything: the rest of the control frames may go.
        let t = self.control.pop_front()?;
        self.control_run = self.control_run.saturating_add(1);
        Some(t)
    }

    /// Gives SURB waiters their turn, oldest first, as far as each peer's stock above
    /// the ack reserve goes: each released stream is polled before the ready queue and
    /// sends one frame before it may wait again at the back.
    fn release_surb_waiters(&mut self, surb_stock: &dyn Fn(&T) -> Option<u32>) {
        let mut released = Vec::new();
        self.surb_waiters.retain(|peer, queue| {
            let stock = match peer {
                Destination::Reply(tag) => surb_stock(tag),
                Destination::Address(_) => None,
            };
            let mut free = stock.map_or(usize::MAX, |n| {
                n.saturating_sub(crate::stream::ACK_SURB_RESERVE) as usize
            });
            while free > 0 {
                let Some(local) = queue.pop_front() else {
                    break;
                };
                if let Some(e) = self.streams.get_mut(&local) {
                    if e.state.surb_queued() {
                        e.state.surb_release();
                        released.push(local);
                        free -= 1;
                    }
                }
            }
            !queue.is_empty()
        });
        self.surb_turns.extend(released);
    }
}

/// A peer's reply-SURB estimate (SURBs we attached minus frames it sent back, over all
/// streams) and the room under its ceiling: one SURB per frame of the credit its
/// streams hold with us (what it may still send), plus the ack reserve and the target
/// stock. What a peer can make us spend on SURBs is bounded by this, whatever it asks.
///
/// The estimate counts one SURB per frame that came back, but a reply lost on the way
/// used one too (the mixnet client resends it with another), and so did a reply the
/// peer's client gave up: under loss the estimate drifts high, and a peer starved of
/// SURBs would be refused the very SURBs it asks for. So the room is measured against
/// a loss-tolerant figure that counts up to [`SURB_USE_PER_REPLY`] SURBs per frame
/// seen: SURBs we ever send a peer stay at most that many per frame it sent us, plus
/// the ceiling.
pub(super) fn peer_surbs<A, T>(
    peers: &Peers<Destination<A, T>>,
    peer: &Destination<A, T>,
    cfg: &MuxConfig,
) -> (u32, u32)
where
    A: Copy + Eq + Hash,
    T: Copy + Eq + Hash,
{
    let p = peers.get(peer);
    let estimate = p.surbs_sent.saturating_sub(p.replies_seen);
    let used_at_most = p.replies_seen.saturating_mul(SURB_USE_PER_REPLY.0) / SURB_USE_PER_REPLY.1;
    let at_least = p.surbs_sent.saturating_sub(used_at_most);
    let frames = p.credit.div_ceil(cfg.frame_payload() as u64);
    let ceiling = frames
        + u64::from(crate::stream::ACK_SURB_RESERVE)
        + u64::from(cfg.surb_target)
        + u64::from(cfg.surb_reserve);
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    (clamp(estimate), clamp(ceiling.saturating_sub(at_least)))
}

/// The most reply SURBs we count a peer's frame as having used (itself, and replies
/// lost or dropped on the way), as a ratio: 3/2 covers a third of the replies lost.
/// This bounds what a peer can make us send: per frame it sends us, at most this many
/// SURBs beyond its ceiling.
const SURB_USE_PER_REPLY: (u64, u64) = (3, 2);

/// A stateless `Reset` frame for stream `id`.
pub(super) fn reset_transmit<A, T>(
    id: StreamId,
    to: Destination<A, T>,
    code: u32,
) -> Transmit<A, T> {
    Transmit {
        to,
        payload: Reset { code }.frame(id),
        reply_surbs: 0,
    }
}
