//! The real Nym mixnet (feature `nym`): a transport adapter that carries our streams over
//! a `nym_sdk` client in **message mode**.
//!
//! The adapter, [`NymTransport`], is generic over nym-sdk's sending trait
//! ([`nym_sdk::mixnet::MixnetMessageSender`]) and a receiving stream of
//! [`nym_sdk::mixnet::ReconstructedMessage`]s, which is what a connected
//! `nym_sdk::mixnet::MixnetClient` is (`split_sender()` for the one, the client itself for
//! the other). Every frame of every stream becomes one
//! `InputMessage::new_anonymous(recipient, frame, reply_surbs, TransmissionLane::General, _)`
//! or `InputMessage::new_reply(sender_tag, frame, …)`; inbound messages come back as
//! `ReconstructedMessage { message, sender_tag }`. nym-sdk's own stream mode (`open_stream`,
//! `listener`) is never touched: it would switch the client out of message mode.
//!
//! Inbound order: for a client it owns, the facade reads whole delivered batches
//! (`wait_for_messages`) front to back, where nym-sdk's `Stream` would reverse each one.
//!
//! Sending: hand-offs are paced at nym's own rate by packet count ([`crate::pacer`]), so
//! frames wait in the multiplexer, where our timers and scheduling see them, rather than
//! in nym's unbounded lanes; every anonymous message may be retransmitted by nym at most
//! [`ANONYMOUS_MAX_RETRANSMISSIONS`] times.
//!
//! Backpressure: nym-sdk's input channel is bounded, so its `send` waits while the channel
//! is full. The adapter keeps at most one such send in flight and reports `Pending` from
//! [`mux::Transport::poll_ready`] until it completes, so the multiplexer stops emitting
//! frames, stream send buffers fill up, and writers wait.
//!
//! Most programs need none of this directly: use
//! [`MixnetClient::from_nym`](crate::mixnet::MixnetClient::from_nym),
//! [`MixnetClient::connect_new_nym`](crate::mixnet::MixnetClient::connect_new_nym) or
//! [`MixnetClientBuilder::nym_network`](crate::mixnet::MixnetClientBuilder::nym_network).
//! [`DisconnectedMixnetClient::wrap_nym_parts`](crate::mixnet::DisconnectedMixnetClient::wrap_nym_parts)
//! runs the facade over any sender and receiver (the offline tests use it with a fake).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use mux::SenderTag;
use mux::{Destination, Inbound, Transport, TransportError};
use nym_sdk::mixnet::{
    AnonymousSenderTag, InputMessage, MixnetMessageSender, ReconstructedMessage, TransmissionLane,
};

use crate::mixnet::Recipient;
use crate::pacer::{PacketPacer, SharedPacer};
use mixnet_sim::{packets_for, MessageKind};

pub use nym_sdk;

/// A real Nym address in its 96-byte form (identity key, encryption key, gateway
/// identity), validated on construction. Bytes rather than nym's `Recipient` because they
/// are small, and give `Eq`, `Hash` and `Ord`, which nym's type lacks.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct NymAddress([u8; nym_sdk::mixnet::Recipient::LEN]);

impl NymAddress {
    pub(crate) fn from_nym(recipient: &nym_sdk::mixnet::Recipient) -> Self {
        Self(recipient.to_bytes())
    }

    /// nym's `Recipient` again. The bytes came from a valid recipient, so this succeeds;
    /// the error is passed on rather than assumed away.
    pub(crate) fn to_nym(
        self,
    ) -> Result<nym_sdk::mixnet::Recipient, nym_sdk::mixnet::RecipientFormattingError> {
        nym_sdk::mixnet::Recipient::try_from_bytes(self.0)
    }

    pub(crate) fn bytes(&self) -> &[u8; nym_sdk::mixnet::Recipient::LEN] {
        &self.0
    }
}

/// Our sender tag (16 bytes) for nym's anonymous sender tag: the same bytes.
pub fn sender_tag_from_nym(tag: AnonymousSenderTag) -> SenderTag {
    SenderTag(tag.to_bytes())
}

/// Nym's anonymous sender tag for our sender tag: the same bytes.
pub fn sender_tag_to_nym(tag: SenderTag) -> AnonymousSenderTag {
    AnonymousSenderTag::from_bytes(tag.0)
}

pub use crate::ANONYMOUS_MAX_RETRANSMISSIONS;

/// What went wrong handing a message to nym-sdk.
#[derive(Debug, thiserror::Error)]
pub enum NymTransportError {
    /// nym-sdk refused the message (its client has shut down, or was switched to its own
    /// stream mode by someone calling `open_stream`/`listener` on it).
    #[error("nym-sdk refused a message: {reason}; the nym client has shut down (or was switched into its own stream mode): connect a new one")]
    Refused {
        /// What nym-sdk reported.
        reason: String,
    },
    /// A message was addressed to an address of another network (a simulator address).
    #[error("{recipient} is not an address on the real Nym mixnet")]
    NotANymAddress {
        /// The address given.
        recipient: String,
    },
    /// A stored Nym address no longer decodes (never expected: it was valid when stored).
    #[error("the Nym address {recipient} does not decode: {reason}")]
    BadAddress {
        /// The address, in hex.
        recipient: String,
        /// What nym's decoder reported.
        reason: String,
    },
    /// The multiplexer sent without waiting for `poll_ready` (a bug in the caller).
    #[error("send() was called while an earlier message was still being handed to nym-sdk; wait for poll_ready() first")]
    Busy,
}

type SendFuture = Pin<Box<dyn Future<Output = Result<(), NymTransportError>> + Send>>;

/// A [`mux::Transport`] over nym-sdk's message API: `S` sends (`MixnetClientSender` from
/// `split_sender()`, or any [`MixnetMessageSender`]), `R` yields received messages (the
/// `nym_sdk::mixnet::MixnetClient` itself, or any stream of [`ReconstructedMessage`]s).
pub struct NymTransport<S, R> {
    sender: Arc<S>,
    receiver: R,
    local: Recipient,
    in_flight: Option<SendFuture>,
    /// Paces hand-offs at nym's sending rate (see [`crate::pacer`]).
    pacer: SharedPacer,
    /// The queueing delay the pacer aims at (`MuxConfig::send_queue_target`).
    queue_target: std::time::Duration,
    /// The last destination decoded (decoding a Nym address checks two curve points).
    last_to: Option<(NymAddress, nym_sdk::mixnet::Recipient)>,
}

impl<S, R> fmt::Debug for NymTransport<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NymTransport")
            .field("local", &self.local)
            .field("send_in_flight", &self.in_flight.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, R> NymTransport<S, R>
where
    S: MixnetMessageSender + Send + Sync + 'static,
    R: Stream<Item = ReconstructedMessage> + Unpin + Send + 'static,
{
    /// An adapter for the client at `local` that sends through `sender` and receives from
    /// `receiver`.
    pub fn new(local: nym_sdk::mixnet::Recipient, sender: S, receiver: R) -> Self {
        Self {
            sender: Arc::new(sender),
            receiver,
            local: Recipient::from(local),
            in_flight: None,
            pacer: SharedPacer::new(PacketPacer::nym_default()),
            queue_target: mux::DEFAULT_SEND_QUEUE_TARGET,
            last_to: None,
        }
    }
}

impl<S, R> NymTransport<S, R> {
    /// The adapter's pacer, for waiting until nym had time to send what it was handed.
    pub fn pacer(&self) -> SharedPacer {
        self.pacer.clone()
    }
}

impl<S, R> Transport for NymTransport<S, R>
where
    S: MixnetMessageSender + Send + Sync + 'static,
    R: Stream<Item = ReconstructedMessage> + Unpin + Send + 'static,
{
    type Address = Recipient;
    type SenderTag = SenderTag;

    fn local_address(&self) -> Recipient {
        self.local
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        std::task::ready!(self.pacer.with(|p| p.poll_ready(cx)));
        if let Some(send) = self.in_flight.as_mut() {
            let Poll::Ready(outcome) = send.as_mut().poll(cx) else {
                self.pacer.with(|p| p.note_client_full());
                return Poll::Pending;
            };
            self.in_flight = None;
            outcome.map_err(TransportError::new)?;
        }
        Poll::Ready(Ok(()))
    }

    fn send(
        &mut self,
        to: Destination<Recipient, SenderTag>,
        payload: Bytes,
        reply_surbs: u32,
    ) -> Result<(), TransportError> {
        if self.in_flight.is_some() {
            return Err(TransportError::new(NymTransportError::Busy));
        }
        let lane = TransmissionLane::General;
        let packet_type = self.sender.packet_type();
        let kind = match to {
            Destination::Address(_) => MessageKind::Anonymous { reply_surbs },
            Destination::Reply(_) => MessageKind::Reply,
        };
        let packets = packets_for(payload.len(), kind);
        let data = Vec::from(payload);
        let message = match to {
            Destination::Address(r) => {
                let Some(addr) = r.nym_address() else {
                    return Err(TransportError::new(NymTransportError::NotANymAddress {
                        recipient: r.to_string(),
                    }));
                };
                let recipient = match self.last_to {
                    Some((last, decoded)) if last == addr => decoded,
                    _ => {
                        let decoded = addr.to_nym().map_err(|e| {
                            TransportError::new(NymTransportError::BadAddress {
                                recipient: hex(addr.bytes()),
                                reason: e.to_string(),
                            })
                        })?;
                        self.last_to = Some((addr, decoded));
                        decoded
                    }
                };
                InputMessage::new_anonymous(recipient, data, reply_surbs, lane, packet_type)
                    .with_max_retransmissions(ANONYMOUS_MAX_RETRANSMISSIONS)
            }
            Destination::Reply(tag) => {
                InputMessage::new_reply(sender_tag_to_nym(tag), data, lane, packet_type)
            }
        };
        self.pacer.with(|p| p.charge(packets));
        let sender = Arc::clone(&self.sender);
        self.in_flight = Some(Box::pin(async move {
            sender
                .send(message)
                .await
                .map_err(|e| NymTransportError::Refused {
                    reason: e.to_string(),
                })
        }));
        Ok(())
    }

    /// nym hides its queue: pace with a burst of the packets `target` takes.
    fn set_queue_target(&mut self, target: std::time::Duration) {
        self.queue_target = target;
        self.pacer
            .with(|p| p.set_burst(crate::pacer::burst_for(target)));
    }

    /// Slow the pace while the streams' round trips show more queueing than the target
    /// and their data waited for us.
    fn on_path_delay(&mut self, signal: mux::DelaySignal) {
        let target = self.queue_target;
        let d = signal.delay;
        self.pacer
            .with(|p| p.adapt(d.queueing, d.current, target, signal.data_waited));
    }

    fn send_pace(&self) -> Option<std::time::Duration> {
        Some(self.pacer.with(|p| p.interval()))
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound<SenderTag>>> {
        Pin::new(&mut self.receiver).poll_next(cx).map(|m| {
            m.map(|m| Inbound {
                payload: Bytes::from(m.message),
                sender_tag: m.sender_tag.map(sender_tag_from_nym),
            })
        })
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The receiving side of a real nym-sdk client, shared with the facade so that
/// `disconnect()` can take the client back and shut it down properly.
pub(crate) struct SharedNymClient(pub(crate) Arc<Mutex<Option<nym_sdk::mixnet::MixnetClient>>>);

impl SharedNymClient {
    pub(crate) fn take(&self) -> Option<nym_sdk::mixnet::MixnetClient> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// What a real nym-sdk client received, **in the order it delivered it**.
///
/// nym-sdk's own `Stream` for its client pops each delivered batch from the end, so a
/// batch of messages that completed together comes out reversed (and a stream's data
/// overtakes its `Open`). This reader takes whole batches (`wait_for_messages`, which
/// keeps the client's order: plain, then repliable, then replies, each as completed) and
/// hands them out front to back.
pub(crate) struct NymReceiver {
    client: SharedNymClient,
    batch: InOrder<ReconstructedMessage>,
}

impl NymReceiver {
    pub(crate) fn new(client: SharedNymClient) -> Self {
        Self {
            client,
            batch: InOrder::default(),
        }
    }
}

impl Stream for NymReceiver {
    type Item = ReconstructedMessage;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let shared = &this.client;
        this.batch.poll_next(cx, |cx| {
            let mut slot = shared.0.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_mut() {
                // Cancel-safe (nym-sdk's docs): a batch not yet there stays in the
                // channel, whose receiver keeps our waker.
                Some(client) => std::pin::pin!(client.wait_for_messages()).poll(cx),
                // Taken by disconnect(): the network is gone.
                None => Poll::Ready(None),
            }
        })
    }
}

/// The rest of the batch last taken, handed out front to back before the next is taken.
pub(crate) struct InOrder<T> {
    rest: std::collections::VecDeque<T>,
}

impl<T> Default for InOrder<T> {
    fn default() -> Self {
        Self {
            rest: std::collections::VecDeque::new(),
        }
    }
}

impl<T> InOrder<T> {
    /// The next item: from the batch at hand, else from the next batch `poll_batch` yields
    /// (empty batches are skipped; `None` ends the stream).
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        mut poll_batch: impl FnMut(&mut Context<'_>) -> Poll<Option<Vec<T>>>,
    ) -> Poll<Option<T>> {
        loop {
            if let Some(item) = self.rest.pop_front() {
                return Poll::Ready(Some(item));
            }
            match std::task::ready!(poll_batch(cx)) {
                Some(batch) => self.rest.extend(batch),
                None => return Poll::Ready(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch comes out in the order it was delivered (nym-sdk's `Stream` would give
    /// 3, 2, 1), empty batches are skipped, and the end is passed on.
    #[test]
    fn batches_are_read_front_to_back() {
        let mut batches = vec![
            Poll::Ready(None),
            Poll::Ready(Some(vec![4])),
            Poll::Pending,
            Poll::Ready(Some(vec![])),
            Poll::Ready(Some(vec![1, 2, 3])),
        ];
        let mut reader = InOrder::default();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut next = || reader.poll_next(&mut cx, |_| batches.pop().unwrap_or(Poll::Pending));
        let got: Vec<Poll<Option<i32>>> = (0..7).map(|_| next()).collect();
        assert_eq!(
            got,
            [
                Poll::Ready(Some(1)),
                Poll::Ready(Some(2)),
                Poll::Ready(Some(3)),
                Poll::Pending,
                Poll::Ready(Some(4)),
                Poll::Ready(None),
                Poll::Pending,
            ]
        );
    }
}
