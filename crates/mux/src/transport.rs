//! The transport port: what the multiplexer needs from a message network.

use std::fmt::Debug;
use std::hash::Hash;
use std::task::{Context, Poll};

use bytes::Bytes;

/// Where an outbound message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Destination<A, T> {
    /// An anonymous message to a recipient address, carrying reply SURBs.
    Address(A),
    /// A reply through the reply SURBs the sender behind this tag gave us.
    Reply(T),
}

/// A network-neutral sender tag: the 16 opaque bytes a mixnet gives the receiver of
/// an anonymous message instead of the sender's address (the Nym client's
/// `AnonymousSenderTag`, the simulator's tag). Transports may use any `Copy + Eq +
/// Hash` type as their tag; adapters that want one type for every network use this.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct SenderTag(pub [u8; 16]);

impl std::fmt::Display for SenderTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A message the transport received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound<T> {
    /// The message body.
    pub payload: Bytes,
    /// The sender tag of an anonymous message (we can reply through it); `None` for
    /// replies to our own messages and for messages from senders that stay unreachable.
    pub sender_tag: Option<T>,
}

/// An error of the underlying network.
#[derive(Debug, thiserror::Error)]
#[error("transport failed: {0}")]
pub struct TransportError(#[from] pub Box<dyn std::error::Error + Send + Sync>);

impl TransportError {
    /// Wraps any error of the network.
    pub fn new<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        Self(Box::new(e))
    }
}

/// A message network the multiplexer runs over (the simulated mixnet, the real Nym
/// client, or a test fake). The driver task owns it; nothing else touches it.
pub trait Transport: Send + 'static {
    /// A recipient address.
    type Address: Copy + Eq + Hash + Debug + Send + Sync + 'static;
    /// An opaque sender tag through which replies can be sent.
    type SenderTag: Copy + Eq + Hash + Debug + Send + Sync + 'static;

    /// Our own address.
    fn local_address(&self) -> Self::Address;

    /// Ready when the transport accepts one more message; `Pending` is backpressure.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>>;

    /// Sends one message. Call only after `poll_ready` returned `Ready(Ok)`.
    /// `reply_surbs` is ignored for replies.
    fn send(
        &mut self,
        to: Destination<Self::Address, Self::SenderTag>,
        payload: Bytes,
        reply_surbs: u32,
    ) -> Result<(), TransportError>;

    /// The next received message; `Ready(None)` once the transport is closed.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound<Self::SenderTag>>>;

    /// How many reply SURBs we hold for replies to `tag`, when the network tells.
    fn surbs_available(&self, _tag: &Self::SenderTag) -> Option<u32> {
        None
    }

    /// How much queueing delay the transport should let build up in the network's
    /// send queue ([`MuxConfig::send_queue_target`](crate::MuxConfig::send_queue_target)),
    /// told once when the driver starts. A transport that can see its queue bounds it
    /// (the simulator); one that cannot paces itself. Default: ignored.
    fn set_queue_target(&mut self, _target: std::time::Duration) {}

    /// The client's path delay changed (new round-trip samples): a transport that paces
    /// itself without seeing the network's queue slows down while the queueing delay is
    /// above its target and our streams' data waited for it
    /// ([`DelaySignal::data_waited`](crate::DelaySignal::data_waited)), and speeds up
    /// again below it. Called by the driver only with
    /// [`MuxConfig::delay_control`](crate::MuxConfig::delay_control). Default: ignored.
    fn on_path_delay(&mut self, _signal: crate::DelaySignal) {}

    /// The pace a self-pacing transport sends at now, one packet per this interval: the
    /// delay controller's output, shown in
    /// [`ClientMetrics::send_pace`](crate::ClientMetrics::send_pace). Default: `None`
    /// (the transport does not pace itself).
    fn send_pace(&self) -> Option<std::time::Duration> {
        None
    }
}
