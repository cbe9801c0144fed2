//! Inbound frames to streams: the id maps, opens (taken or refused), frames that
//! overtook their `Open` (orphans), stateless resets, and recently closed ids.

use lp_frame::ext::{self, reset_code};
use lp_frame::{FrameKind, MessageType, OwnedStreamFrame, RawFrame, StreamHeader, StreamId};

use super::transmit::{peer_surbs, reset_transmit};
use super::*;
use crate::orphans::HoldOutcome;

/// Most queued stateless control frames (resets answering refused or unknown streams);
/// beyond it they are dropped, since the peer's own timers recover.
pub(super) const MAX_CONTROL_QUEUE: usize = 256;
/// Most non-stream messages waiting for the application.
const MAX_PLAIN_QUEUE: usize = 1024;

impl<A, T> Core<A, T>
where
    A: Copy + Eq + Hash + std::fmt::Debug,
    T: Copy + Eq + Hash + std::fmt::Debug,
{
    fn budget_left(&self) -> usize {
        self.cfg.inbound_budget.saturating_sub(self.inbound_bytes())
    }

    /// Handles one message from the network.
    pub fn handle_inbound(&mut self, now: Instant, msg: Inbound<T>) {
        let raw_kind = RawFrame::parse(&msg.payload).map(|r| r.kind);
        if raw_kind != Ok(FrameKind::SphinxStream) {
            // Not a stream frame: other LP kinds and bytes without an LP header go to
            // the plain-message channel.
            self.push_plain(msg);
            return;
        }
        let tag = msg.sender_tag;
        let frame = match OwnedStreamFrame::parse(msg.payload) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "malformed stream frame dropped");
                self.metrics.malformed_frames += 1;
                return;
            }
        };
        let header = frame.header;
        match tag {
            None => self.handle_for_outbound(now, header, frame.payload),
            Some(tag) => self.handle_for_inbound(now, tag, header, frame.payload),
        }
    }

    fn push_plain(&mut self, msg: Inbound<T>) {
        if self.plain.len() >= MAX_PLAIN_QUEUE {
            self.metrics.plain_messages_dropped += 1;
            return;
        }
        self.metrics.plain_messages += 1;
        self.plain.push_back(msg);
        self.events.push_back(Event::Plain);
    }

    /// A frame without a sender tag: a reply on a stream we opened.
    fn handle_for_outbound(&mut self, now: Instant, header: StreamHeader, payload: Bytes) {
        let Some(&local) = self.outbound.get(&header.stream_id) else {
            if self.inbound_ids.contains_key(&header.stream_id) {
                // The id belongs to a stream a peer opened, and frames for it must come
                // under that peer's sender tag.
                self.metrics.wrong_sender += 1;
            } else {
                self.metrics.unknown_stream_frames += 1;
            }
            return;
        };
        if header.msg_type == MessageType::Open {
            // An Open must come with a sender tag; without one we could never answer.
            self.metrics.wrong_sender += 1;
            return;
        }
        self.deliver(now, local, header, payload);
    }

    fn handle_for_inbound(&mut self, now: Instant, tag: T, header: StreamHeader, payload: Bytes) {
        let key = (tag, header.stream_id);
        let found = match self.last_inbound {
            Some((last, local)) if last == key => Some(local),
            _ => {
                let found = self.inbound.get(&key).copied();
                if let Some(local) = found {
                    self.last_inbound = Some((key, local));
                }
                found
            }
        };
        if let Some(local) = found {
            if header.msg_type == MessageType::Open {
                self.metrics.duplicate_opens += 1;
            }
            self.deliver(now, local, header, payload);
            return;
        }
        if let Some(&(until, refused)) = self.recently_closed.get(&key) {
            if until > now {
                // A late frame of a stream that ended (a retransmitted Open, a FIN resent
                // after our linger): never a new stream.
                if header.msg_type == MessageType::Open {
                    self.metrics.duplicate_opens += 1;
                    if refused {
                        // Our Reset(REFUSED) may have been lost: say it again.
                        self.answer_reset(now, tag, header.stream_id, reset_code::REFUSED);
                    }
                } else {
                    self.metrics.unknown_stream_frames += 1;
                }
                return;
            }
        }
        match header.msg_type {
            MessageType::Open => self.on_open(now, tag, header),
            _ if self.inbound_ids.contains_key(&header.stream_id) => {
                // A live stream with this id is bound to another sender tag: this frame
                // is not from its opener.
                self.metrics.wrong_sender += 1;
            }
            MessageType::Data | MessageType::Close => self.hold_orphan(now, key, header, payload),
            MessageType::Ack | MessageType::Ping => {
                // The peer believes in a stream we do not have (our Reset may have been
                // lost): tell it, so it does not wait for its keepalive to fail.
                self.metrics.unknown_stream_frames += 1;
                if self.answer_reset(now, tag, header.stream_id, reset_code::UNKNOWN_STREAM) {
                    self.metrics.unknown_stream_resets += 1;
                }
            }
            _ => {
                // Resets, pongs, open-acks for streams we do not know: nothing to do
                // (answering a Reset with a Reset could loop).
                self.metrics.unknown_stream_frames += 1;
            }
        }
    }

    /// Remembers a peer-opened stream that left the table, for twice the largest RTO,
    /// in a bounded memory (the oldest entries go first).
    pub(super) fn remember_closed(&mut self, key: (T, StreamId), now: Instant, refused: bool) {
        const MAX_RECENTLY_CLOSED: usize = 4096;
        let until = now + self.cfg.max_rto * 2;
        while let Some(&(old, at)) = self.recently_closed_order.front() {
            if at > now && self.recently_closed_order.len() < MAX_RECENTLY_CLOSED {
                break;
            }
            self.recently_closed_order.pop_front();
            if self
                .recently_closed
                .get(&old)
                .is_some_and(|&(u, _)| u == at)
            {
                self.recently_closed.remove(&old);
            }
        }
        self.recently_closed.insert(key, (until, refused));
        self.recently_closed_order.push_back((key, until));
    }

    /// Queues a stateless `Reset` for a stream we do not have (an unknown stream, or an
    /// `Open` we refused before), at most `STATELESS_RESETS_PER_SECOND` a second: a
    /// flood costs us nothing more. Returns whether it was queued.
    fn answer_reset(&mut self, now: Instant, tag: T, id: StreamId, code: u32) -> bool {
        const STATELESS_RESETS_PER_SECOND: u32 = 16;
        if self.cfg.legacy_mode || self.control.len() >= MAX_CONTROL_QUEUE {
            return false;
        }
        let (since, sent) = self.stateless_replies.get_or_insert((now, 0));
        if now.saturating_duration_since(*since) >= std::time::Duration::from_secs(1) {
            *since = now;
            *sent = 0;
        }
        if *sent >= STATELESS_RESETS_PER_SECOND {
            return false;
        }
        *sent += 1;
        self.control
            .push_back(reset_transmit(id, Destination::Reply(tag), code));
        true
    }

    /// Holds a frame that overtook its `Open`, within the orphan store's bounds and
    /// the sending peer's share of it.
    fn hold_orphan(
        &mut self,
        now: Instant,
        key: (T, StreamId),
        header: StreamHeader,
        payload: Bytes,
    ) {
        let peer = Destination::Reply(key.0);
        let new_id = !self.orphans.contains(&key);
        if new_id {
            self.expire_orphans(now);
            if self.peers.full_for(&peer) {
                // Beyond `max_peers`, a peer that holds nothing but orphan data gives
                // way: the oldest such entry is evicted (only for a new peer; a peer at
                // its own orphan limit evicts nobody).
                let peers = &self.peers;
                let evicted = self.orphans.evict_oldest_peer(|tag| {
                    let p = peers.get(&Destination::Reply(*tag));
                    p.streams == 0 && *tag != key.0
                });
                if let Some((tag, ids, frames)) = evicted {
                    tracing::debug!(?tag, ids, "orphan-only peer evicted");
                    self.metrics.orphan_frames_dropped += frames as u64;
                    self.peers
                        .update(Destination::Reply(tag), |p| p.orphan_ids -= ids);
                }
            }
            if !self.peers.may_hold_orphans(&peer) {
                self.metrics.orphan_frames_dropped += 1;
                return;
            }
        }
        let budget = self.budget_left();
        match self.orphans.hold(key, header, payload, now, budget) {
            HoldOutcome::Held => {
                self.metrics.orphan_frames_held += 1;
                if new_id {
                    self.peers.update(peer, |p| p.orphan_ids += 1);
                }
            }
            HoldOutcome::Dropped => self.metrics.orphan_frames_dropped += 1,
        }
    }

    /// Takes the orphan frames held for a stream, keeping the counts exact.
    fn take_orphans(&mut self, key: &(T, StreamId)) -> Vec<crate::orphans::HeldFrame> {
        let held = self.orphans.take(key);
        if !held.is_empty() {
            self.peers
                .update(Destination::Reply(key.0), |p| p.orphan_ids -= 1);
        }
        held
    }

    /// Drops orphan data past its time-to-live, keeping the counts exact.
    pub(super) fn expire_orphans(&mut self, now: Instant) {
        let (dropped, tags) = self.orphans.expire(now);
        if tags.is_empty() {
            return;
        }
        self.metrics.orphan_frames_dropped += dropped as u64;
        for tag in tags {
            self.peers
                .update(Destination::Reply(tag), |p| p.orphan_ids -= 1);
        }
    }

    /// Answers an `Open` we do not take with `Reset(REFUSED)` and drops what the
    /// peer sent ahead of it.
    fn refuse_open(&mut self, now: Instant, tag: T, id: StreamId, why: &str) {
        tracing::debug!(stream = %id, why, "open refused");
        self.metrics.opens_refused += 1;
        // Frames following a refused Open are dropped, not held as orphans.
        self.remember_closed((tag, id), now, true);
        let _ = self.take_orphans(&(tag, id));
        if !self.cfg.legacy_mode && self.control.len() < MAX_CONTROL_QUEUE {
            self.control.push_back(reset_transmit(
                id,
                Destination::Reply(tag),
                reset_code::REFUSED,
            ));
        }
    }

    fn on_open(&mut self, now: Instant, tag: T, header: StreamHeader) {
        let id = header.stream_id;
        if !self.listening {
            self.refuse_open(now, tag, id, "nobody accepts streams (no listener)");
            return;
        }
        if self.accept_queue.len() >= self.cfg.accept_backlog
            || self.live_inbound >= self.cfg.max_inbound_streams
        {
            self.refuse_open(now, tag, id, "backlog or stream limit full");
            return;
        }
        let peer_extended = header.reserved & ext::CAP_EXTENDED != 0;
        // The credit the new stream holds from the start must fit the peer's window
        // and the client-wide budget: a promise we could not keep is not made.
        let reserve = StreamState::<A, T>::initial_reservation(peer_extended, &self.cfg);
        if let Err(r) = self.peers.admit(&Destination::Reply(tag), reserve) {
            self.metrics.peer_limit_refusals += 1;
            self.refuse_open(now, tag, id, &r.to_string());
            return;
        }
        let local = self.alloc_local();
        let state =
            StreamState::new_inbound(id, tag, peer_extended, now, &self.cfg, &self.settings);
        tracing::debug!(stream = %id, peer_extended, "incoming stream");
        self.streams.insert(local, Entry::new(state, false));
        self.inbound.insert((tag, id), local);
        *self.inbound_ids.entry(id).or_insert(0) += 1;
        self.live_inbound += 1;
        self.peers.update(Destination::Reply(tag), |p| {
            p.streams += 1;
            p.backlog += 1;
        });
        self.accept_queue.push_back((local, now));
        self.events.push_back(Event::Incoming);
        // Count its credit before replaying what overtook the Open.
        self.after(local, now);
        let held = self.take_orphans(&(tag, id));
        for f in held {
            self.deliver(now, local, f.header, f.payload);
        }
        self.after(local, now);
    }

    fn deliver(&mut self, now: Instant, local: LocalId, header: StreamHeader, payload: Bytes) {
        let budget = self.budget_left();
        if matches!(header.msg_type, MessageType::Data | MessageType::Close)
            && payload.len() > budget
        {
            // The stream refuses it; count why.
            self.metrics.budget_refusals += 1;
        }
        let Some(e) = self.streams.get_mut(&local) else {
            return;
        };
        let counted_credit = u64::from(e.counted_credit);
        let s = &mut e.state;
        let reply = matches!(s.peer, Destination::Address(_));
        // Liveness needs the peer's last-heard time only coarsely: a stream heard
        // within the last 100 ms has already told its peer's session (saves a lookup
        // per frame). Replies are always counted (each used one of our SURBs).
        let recently = s.last_heard().is_some_and(|t| {
            now.saturating_duration_since(t) < std::time::Duration::from_millis(100)
        });
        if reply || !recently {
            self.peers.heard(&s.peer, now, reply);
        }
        // Per-peer figures a frame may need, looked up only for the frames that use
        // them (an OpenAck may reveal a reference peer; an ack may ask for SURBs).
        if header.msg_type == MessageType::OpenAck {
            s.credit_room = self.peers.growth_room(&s.peer, counted_credit);
        }
        let carries_ack =
            header.msg_type == MessageType::Ack || header.reserved & lp_frame::ext::FLAG_ACK != 0;
        if reply && carries_ack {
            s.peer_surbs = Some(peer_surbs(&self.peers, &s.peer, &self.cfg));
        }
        s.on_frame(&header, payload, now, budget);
        self.after(local, now);
    }
}
