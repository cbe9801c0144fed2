//! The simulated mixnet (`mixnet-sim`): a transport adapter that carries our streams
//! over a [`SimClient`], in process or through a hub, beside the real network's adapter
//! in [`crate::nym`]. The multiplexer itself knows no network.
//!
//! Every frame of every stream becomes one anonymous message (with the reply SURBs the
//! multiplexer asks for) or one reply by sender tag; the network's send queue is the
//! backpressure; the SURB stock per tag is reported, so the multiplexer keeps its ack
//! reserve. Most programs need none of this directly: [`MixnetClient`](crate::mixnet::MixnetClient)
//! builds it.

use std::task::{Context, Poll};

use bytes::Bytes;
use mixnet_sim::SimClient;
use mux::{Destination, Inbound, SenderTag, Transport, TransportError};

use crate::mixnet::Recipient;

/// Packets the adapter lets wait in the simulated client's send queue until the
/// multiplexer sets its target (`MuxConfig::send_queue_target`, 60 ms: 3 packets at nym's
/// 20 ms per packet). Enough to keep the link busy; short enough that frames wait in the
/// multiplexer (which chooses what goes next) rather than in the network's FIFO, and that
/// round-trip times and retransmission timeouts measure the network, not our own queue (a
/// 1,024-packet queue is 20 s of link).
pub const SEND_QUEUE_PACKETS: usize = crate::pacer::DEFAULT_BURST_PACKETS as usize;

/// A [`Transport`] over one client of a simulated mixnet, addressed by [`Recipient`]
/// so one multiplexer handle type serves every network.
pub struct SimTransport {
    client: SimClient,
}

impl SimTransport {
    /// Wraps a connected simulator client, bounding its send queue at the sending slots
    /// of the default `send_queue_target` at the network's pace ([`SEND_QUEUE_PACKETS`]
    /// at nym's 20 ms; no bound on an unpaced network) and its retransmissions of a packet at
    /// [`ANONYMOUS_MAX_RETRANSMISSIONS`](crate::ANONYMOUS_MAX_RETRANSMISSIONS), as the real
    /// adapter does (an in-process client; a hub client keeps the hub's settings).
    pub fn new(mut client: SimClient) -> Self {
        let limit = queue_limit(&client, mux::DEFAULT_SEND_QUEUE_TARGET);
        client.set_send_queue_limit(limit);
        client.set_max_retransmissions(Some(crate::ANONYMOUS_MAX_RETRANSMISSIONS));
        Self { client }
    }

    /// The simulator client (for its statistics).
    pub fn client(&self) -> &SimClient {
        &self.client
    }
}

/// The send-queue bound that holds about `target` of queueing delay: the sending slots
/// it takes at the network's own pace (at least 1). A network without pacing (the
/// instant preset) sends everything at once and never builds a queue: no bound then,
/// beyond the network's own (a 3-packet bound there only made the driver hand over three
/// packets per wake-up: 10,000 streams moved 130 MiB/s instead of 469).
fn queue_limit(client: &SimClient, target: std::time::Duration) -> Option<usize> {
    let every = client.pacing_interval()?;
    let slots = target.as_nanos().div_ceil(every.as_nanos().max(1)).max(1);
    Some(usize::try_from(slots).unwrap_or(usize::MAX))
}

/// A simulator transport was asked to send to an address of another network.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not an address on the simulated mixnet this client runs on")]
struct NotASimAddress(String);

impl Transport for SimTransport {
    type Address = Recipient;
    type SenderTag = SenderTag;

    fn local_address(&self) -> Recipient {
        Recipient::from_sim_address(self.client.address())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        self.client
            .poll_ready(cx)
            .map(|r| r.map_err(TransportError::new))
    }

    fn send(
        &mut self,
        to: Destination<Recipient, SenderTag>,
        payload: Bytes,
        reply_surbs: u32,
    ) -> Result<(), TransportError> {
        match to {
            Destination::Address(r) => match r.as_sim_address() {
                Some(a) => self.client.send_anonymous(a, payload, reply_surbs),
                None => return Err(TransportError::new(NotASimAddress(r.to_string()))),
            },
            Destination::Reply(tag) => self
                .client
                .send_reply(mixnet_sim::SenderTag(tag.0), payload),
        }
        .map_err(TransportError::new)
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound<SenderTag>>> {
        self.client.poll_recv(cx).map(|m| {
            m.map(|m| Inbound {
                payload: m.payload,
                sender_tag: m.sender_tag.map(|t| SenderTag(t.0)),
            })
        })
    }

    fn surbs_available(&self, tag: &SenderTag) -> Option<u32> {
        Some(self.client.surbs_available(&mixnet_sim::SenderTag(tag.0)))
    }

    /// The simulator shows its queue: bound it at the sending slots `target` takes.
    fn set_queue_target(&mut self, target: std::time::Duration) {
        let limit = queue_limit(&self.client, target);
        self.client.set_send_queue_limit(limit);
    }
}
