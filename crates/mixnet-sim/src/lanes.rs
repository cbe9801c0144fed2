//! A client's outgoing packets as nym-client-core 1.21.6's sending loop holds them.
//!
//! Messages reach the loop as batches (all the packets of one message, or of one reply
//! release) through a channel; on every sending tick the loop admits at most **one** batch,
//! whole, into the batch's transmission lane, and then sends **one** packet, taken first in
//! first out from a lane it picks (`real_traffic_stream.rs`, `transmission_buffer.rs`):
//! uniformly among the lanes holding fewer than [`SMALL_LANE_PACKETS`], or, when none is that
//! small, among the busiest four (two times in three) or all lanes. With the four lanes
//! modelled here both of those are "any non-empty lane", so the rule is: small lanes first,
//! else any. Nothing bounds a lane; only the channel is bounded (the engine's `poll_ready`).

use std::collections::VecDeque;

use rand::Rng;

/// The transmission lanes a simulated client uses (nym's `TransmissionLane`, without the
/// per-connection lanes nobody here asks for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Every application message: regular, anonymous and replies.
    General,
    /// Packets sent again after their acknowledgement timed out.
    Retransmission,
    /// A replier's requests for more SURBs.
    SurbRequest,
    /// An opener's answers carrying SURBs.
    SurbAnswer,
}

const LANES: usize = 4;

impl Lane {
    fn index(self) -> usize {
        match self {
            Lane::General => 0,
            Lane::Retransmission => 1,
            Lane::SurbRequest => 2,
            Lane::SurbAnswer => 3,
        }
    }
}

/// A lane holding fewer packets than this is "small", and small lanes are served first
/// (nym's `is_small`).
pub(crate) const SMALL_LANE_PACKETS: usize = 100;

/// `count` packets of message `msg`, sent for the `attempt`-th time (0: first time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    pub(crate) msg: u64,
    pub(crate) count: u32,
    pub(crate) attempt: u32,
}

/// The channel of batches waiting for admission and the lanes of admitted packets.
#[derive(Default)]
pub(crate) struct SendQueue {
    channel: VecDeque<(Lane, Batch)>,
    lanes: [VecDeque<Batch>; LANES],
    lane_packets: [usize; LANES],
}

/// What [`SendQueue::pop_packet`] found.
pub(crate) struct Popped {
    /// The packet to send: its message and attempt.
    pub(crate) packet: Option<(u64, u32)>,
    /// Packets thrown away because their message no longer exists.
    pub(crate) discarded: usize,
}

impl SendQueue {
    /// Hands a batch to the sending loop (it waits in the channel for a tick).
    pub(crate) fn push(&mut self, lane: Lane, batch: Batch) {
        self.channel.push_back((lane, batch));
    }

    /// Batches handed over and not yet admitted to a lane.
    pub(crate) fn channel_len(&self) -> usize {
        self.channel.len()
    }

    /// Whether nothing waits, in the channel or in a lane.
    pub(crate) fn is_empty(&self) -> bool {
        self.channel.is_empty() && self.lanes.iter().all(VecDeque::is_empty)
    }

    /// Packets admitted to `lane` and not yet sent.
    #[cfg(test)]
    fn lane_len(&self, lane: Lane) -> usize {
        self.lane_packets[lane.index()]
    }

    /// One tick's admission: the oldest batch in the channel joins its lane, whole.
    pub(crate) fn admit_one(&mut self) {
        let Some((lane, batch)) = self.channel.pop_front() else {
            return;
        };
        let i = lane.index();
        self.lane_packets[i] += batch.count as usize;
        match self.lanes[i].back_mut() {
            Some(b) if b.msg == batch.msg && b.attempt == batch.attempt => b.count += batch.count,
            _ => self.lanes[i].push_back(batch),
        }
    }

    /// Takes one packet from a lane picked as nym picks (see the module docs). Packets of
    /// messages for which `alive` is false are discarded on the way and counted. The
    /// generator is drawn from only when more than one lane could be picked.
    pub(crate) fn pop_packet<R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        alive: impl Fn(u64) -> bool,
    ) -> Popped {
        let mut discarded = 0;
        loop {
            let Some(i) = self.pick_lane(rng) else {
                return Popped {
                    packet: None,
                    discarded,
                };
            };
            let lane = &mut self.lanes[i];
            let Some(front) = lane.front_mut() else {
                continue;
            };
            if !alive(front.msg) {
                let n = front.count as usize;
                self.lane_packets[i] -= n;
                discarded += n;
                lane.pop_front();
                continue;
            }
            front.count -= 1;
            self.lane_packets[i] -= 1;
            let packet = (front.msg, front.attempt);
            if front.count == 0 {
                lane.pop_front();
            }
            return Popped {
                packet: Some(packet),
                discarded,
            };
        }
    }

    fn pick_lane<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<usize> {
        let mut small = [0usize; LANES];
        let mut any = [0usize; LANES];
        let (mut n_small, mut n_any) = (0, 0);
        for i in 0..LANES {
            if self.lanes[i].is_empty() {
                continue;
            }
            any[n_any] = i;
            n_any += 1;
            if self.lane_packets[i] < SMALL_LANE_PACKETS {
                small[n_small] = i;
                n_small += 1;
            }
        }
        let (pool, n) = if n_small > 0 {
            (small, n_small)
        } else {
            (any, n_any)
        };
        match n {
            0 => None,
            1 => Some(pool[0]),
            n => Some(pool[rng.gen_range(0..n)]),
        }
    }

    /// Every message with packets waiting (for forgetting them on disconnect).
    pub(crate) fn messages(&self) -> impl Iterator<Item = u64> + '_ {
        self.channel
            .iter()
            .map(|(_, b)| b.msg)
            .chain(self.lanes.iter().flatten().map(|b| b.msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn batch(msg: u64, count: u32) -> Batch {
        Batch {
            msg,
            count,
            attempt: 0,
        }
    }

    #[test]
    fn one_batch_is_admitted_per_tick_whole() {
        let mut q = SendQueue::default();
        q.push(Lane::General, batch(1, 30));
        q.push(Lane::General, batch(2, 1));
        assert_eq!(q.channel_len(), 2);
        q.admit_one();
        assert_eq!(q.channel_len(), 1);
        assert_eq!(
            q.lane_len(Lane::General),
            30,
            "the whole message joins its lane"
        );
        q.admit_one();
        assert_eq!(q.lane_len(Lane::General), 31);
        assert!(!q.is_empty());
    }

    #[test]
    fn a_small_lane_goes_before_a_long_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut q = SendQueue::default();
        q.push(Lane::General, batch(1, 150));
        q.admit_one();
        q.push(Lane::Retransmission, batch(2, 3));
        q.admit_one();
        let order: Vec<u64> = (0..4)
            .map(|_| q.pop_packet(&mut rng, |_| true).packet.unwrap().0)
            .collect();
        assert_eq!(
            order,
            [2, 2, 2, 1],
            "the retransmissions overtake 150 queued packets"
        );
    }

    #[test]
    fn two_small_lanes_share_the_link() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut q = SendQueue::default();
        q.push(Lane::General, batch(1, 50));
        q.admit_one();
        q.push(Lane::SurbAnswer, batch(2, 50));
        q.admit_one();
        let first_40: Vec<u64> = (0..40)
            .map(|_| q.pop_packet(&mut rng, |_| true).packet.unwrap().0)
            .collect();
        let ones = first_40.iter().filter(|&&m| m == 1).count();
        assert!((10..=30).contains(&ones), "picked at random: {ones} of 40");
    }

    #[test]
    fn packets_of_dead_messages_are_discarded_and_counted() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut q = SendQueue::default();
        q.push(Lane::General, batch(1, 5));
        q.push(Lane::General, batch(2, 1));
        q.admit_one();
        q.admit_one();
        let p = q.pop_packet(&mut rng, |m| m != 1);
        assert_eq!(p.packet, Some((2, 0)));
        assert_eq!(p.discarded, 5);
        assert!(q.is_empty());
        assert!(q.pop_packet(&mut rng, |_| true).packet.is_none());
    }
}
