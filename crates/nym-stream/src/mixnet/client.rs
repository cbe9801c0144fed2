//! The client: connect, open streams, take the listener, send and receive plain messages.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use mixnet_sim::ClientStats;
use mux::SenderTag;
use mux::{Destination, MuxHandle};

use super::network::Network;
use super::{
    AnonymousSenderTag, ClientMetrics, Error, MixnetClientBuilder, MixnetListener, MixnetStream,
    Recipient, Result,
};

pub(crate) type Handle = MuxHandle<Recipient, SenderTag>;

/// A message received outside any stream (the counterpart of nym-sdk's
/// `ReconstructedMessage`).
#[derive(Clone, PartialEq, Eq)]
pub struct ReconstructedMessage {
    /// The message bytes.
    pub message: Vec<u8>,
    /// The sender's anonymous tag, when it sent reply SURBs: answer with
    /// [`MixnetMessageSender::send_reply`]. `None` for replies to our own messages.
    pub sender_tag: Option<AnonymousSenderTag>,
}

impl fmt::Debug for ReconstructedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconstructedMessage")
            .field("len", &self.message.len())
            .field("sender_tag", &self.sender_tag)
            .finish()
    }
}

impl From<mux::PlainMessage<SenderTag>> for ReconstructedMessage {
    fn from(m: mux::PlainMessage<SenderTag>) -> Self {
        Self {
            message: m.payload.to_vec(),
            sender_tag: m.sender_tag,
        }
    }
}

/// Sending plain (non-stream) messages; implemented by [`MixnetClient`] and
/// [`MixnetClientSender`], as in nym-sdk. Plain messages and streams coexist on one
/// client.
pub trait MixnetMessageSender {
    /// Sends `message` to `address` as one anonymous message carrying the client's
    /// configured number of reply SURBs (default 10, see
    /// [`MixnetClientBuilder::with_plain_message_surbs`]), so the receiver can answer with
    /// [`send_reply`](Self::send_reply). Waits while the client's send queue is full.
    fn send_plain_message<M>(
        &self,
        address: Recipient,
        message: M,
    ) -> impl Future<Output = Result<()>> + Send
    where
        M: AsRef<[u8]> + Send;

    /// Answers the sender behind `recipient_tag` through the reply SURBs it sent us,
    /// without learning its address.
    fn send_reply<M>(
        &self,
        recipient_tag: AnonymousSenderTag,
        message: M,
    ) -> impl Future<Output = Result<()>> + Send
    where
        M: AsRef<[u8]> + Send;
}

/// Fails with [`Error::WrongNetwork`] unless `recipient` is on the network of `local`.
fn check_network(local: &Recipient, recipient: &Recipient) -> Result<()> {
    if local.is_sim() == recipient.is_sim() {
        Ok(())
    } else {
        Err(Error::WrongNetwork {
            recipient: recipient.to_string(),
            recipient_network: recipient.network_name(),
            client_network: local.network_name(),
        })
    }
}

async fn send_to(
    handle: &Handle,
    to: Destination<Recipient, SenderTag>,
    msg: &[u8],
    surbs: u32,
) -> Result<()> {
    if let Destination::Address(r) = &to {
        check_network(&handle.local_address(), r)?;
    }
    let what = match to {
        Destination::Address(a) => a.to_string(),
        Destination::Reply(t) => format!("sender tag {t}"),
    };
    handle
        .send_plain(to, Bytes::copy_from_slice(msg), surbs)
        .await
        .map_err(|source| {
            if handle.is_closed() {
                Error::Disconnected
            } else {
                Error::Send { to: what, source }
            }
        })
}

/// A client connected to a mixnet: one address, any number of streams (multiplexed over
/// the client's single connection by a background router task), one listener, and plain
/// messages beside them.
///
/// ```
/// use nym_stream::mixnet::{MixnetClientBuilder, SimConfig, Mixnet};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let net = Mixnet::new(SimConfig::realistic().with_seed(1));
/// let join = |net: &Mixnet| MixnetClientBuilder::new_ephemeral().network(net.clone()).build();
/// let mut alice = join(&net)?.connect_to_mixnet().await?;
/// let mut bob = join(&net)?.connect_to_mixnet().await?;
/// let mut listener = bob.listener()?;
///
/// let mut stream = alice.open_stream(*bob.nym_address(), None).await?;
/// stream.write_all(b"ping").await?;
/// stream.shutdown().await?;
///
/// let mut incoming = listener.accept().await.expect("bob is connected");
/// assert_eq!(incoming.id(), stream.id());
/// let mut got = Vec::new();
/// incoming.read_to_end(&mut got).await?;
/// assert_eq!(got, b"ping");
/// alice.disconnect().await;
/// bob.disconnect().await;
/// # Ok(())
/// # }
/// ```
pub struct MixnetClient {
    handle: Handle,
    address: Recipient,
    network: Network,
    idle_timeout: Option<Duration>,
    plain_surbs: u32,
    /// The nym-sdk client we must shut down on `disconnect()` (when we own one).
    #[cfg(feature = "nym")]
    nym_client: Option<crate::nym::SharedNymClient>,
    /// The nym adapter's pacer: `disconnect()` gives nym time to send what it was handed.
    #[cfg(feature = "nym")]
    nym_pacer: Option<crate::pacer::SharedPacer>,
}

/// Longest `disconnect()` waits for nym-sdk to send what it was handed before shutting it
/// down (nym discards everything still queued).
#[cfg(feature = "nym")]
const NYM_DRAIN_LIMIT: Duration = Duration::from_secs(5);

impl fmt::Debug for MixnetClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MixnetClient")
            .field("address", &self.address)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl MixnetClient {
    /// Connects a new client with default settings to the process-wide **simulated**
    /// mixnet (realistic preset, real time; see [`default_network`](super::default_network)). The same as
    /// `MixnetClientBuilder::new_ephemeral().build()?.connect_to_mixnet().await`.
    pub async fn connect_new() -> Result<Self> {
        MixnetClientBuilder::new_ephemeral()
            .build()?
            .connect_to_mixnet()
            .await
    }

    /// A client over a connected simulator client (in process or through a hub).
    pub(crate) fn connect_sim(
        client: mixnet_sim::SimClient,
        network: Network,
        cfg: mux::MuxConfig,
        idle_timeout: Option<Duration>,
        plain_surbs: u32,
    ) -> Self {
        let handle = mux::spawn(crate::sim::SimTransport::new(client), cfg);
        Self::from_handle(handle, network, idle_timeout, plain_surbs)
    }

    pub(crate) fn from_handle(
        handle: Handle,
        network: Network,
        idle_timeout: Option<Duration>,
        plain_surbs: u32,
    ) -> Self {
        Self {
            address: handle.local_address(),
            handle,
            network,
            idle_timeout,
            plain_surbs,
            #[cfg(feature = "nym")]
            nym_client: None,
            #[cfg(feature = "nym")]
            nym_pacer: None,
        }
    }

    /// Remembers the nym adapter's pacer, so `disconnect()` can wait for nym's queue.
    #[cfg(feature = "nym")]
    pub(crate) fn pacing_nym(mut self, pacer: crate::pacer::SharedPacer) -> Self {
        self.nym_pacer = Some(pacer);
        self
    }

    /// Remembers the nym-sdk client to shut down on [`disconnect`](Self::disconnect).
    #[cfg(feature = "nym")]
    pub(crate) fn owning_nym_client(mut self, client: crate::nym::SharedNymClient) -> Self {
        self.nym_client = Some(client);
        self
    }

    /// This client's address: give it to peers so they can open streams to us.
    pub fn nym_address(&self) -> &Recipient {
        &self.address
    }

    /// Opens a stream to `recipient`. Returns without a round trip: writing may begin
    /// immediately; [`MixnetStream::wait_established`] tells when the peer answered.
    /// When many opens still wait for their peers' answers (`max_pending_opens` of the
    /// multiplexer configuration, 64 by default), this waits for one of them to finish
    /// instead of flooding the network.
    ///
    /// Like a TCP connect whose data is queued before the handshake, writes and
    /// `shutdown()` made before the answer succeed locally even if the peer then refuses
    /// the stream (no listener, its backlog full): the refusal shows in
    /// `wait_established`, `closed()` and the next write or read, which fail with
    /// `ConnectionReset`. Call `wait_established` first when that matters.
    ///
    /// `reply_surbs`: `Some(k)` attaches exactly `k` reply SURBs to every message of the
    /// stream (what the reference does, with 10); `None` uses our adaptive policy, which
    /// attaches SURBs in proportion to what the peer will send back.
    pub async fn open_stream(
        &mut self,
        recipient: Recipient,
        reply_surbs: Option<u32>,
    ) -> Result<MixnetStream> {
        check_network(&self.address, &recipient)?;
        match self.handle.open(recipient, reply_surbs).await {
            Ok(s) => Ok(MixnetStream::new(s)),
            Err(mux::OpenError::Closed) => Err(Error::Disconnected),
            Err(source) => Err(Error::Open { recipient, source }),
        }
    }

    /// Takes the listener for streams peers open to us. A client has one at a time: a
    /// second call while it lives fails with [`Error::ListenerAlreadyTaken`].
    ///
    /// Until a listener is taken, and after it is dropped, streams peers open to us
    /// are refused at once (their `wait_established` fails with `ConnectionReset`,
    /// reason code `REFUSED`), and streams nobody accepts within the accept timeout
    /// (60 s by default) are refused the same way, so unaccepted streams never pile up.
    pub fn listener(&mut self) -> Result<MixnetListener> {
        self.handle
            .listener()
            .map(MixnetListener::new)
            .ok_or(Error::ListenerAlreadyTaken)
    }

    /// Waits for plain messages: returns the next one together with any others already
    /// waiting; `None` once the client is disconnected.
    pub async fn wait_for_messages(&mut self) -> Option<Vec<ReconstructedMessage>> {
        let first = self.handle.recv_plain().await?;
        let mut out = vec![ReconstructedMessage::from(first)];
        loop {
            let mut next = pin!(self.handle.recv_plain());
            // Poll once: take what is already queued, never wait for more.
            match poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await {
                Poll::Ready(Some(m)) => out.push(m.into()),
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        Some(out)
    }

    /// A cloneable handle that sends plain messages from other tasks.
    pub fn split_sender(&self) -> MixnetClientSender {
        MixnetClientSender {
            handle: self.handle.clone(),
            plain_surbs: self.plain_surbs,
        }
    }

    /// Counters of the whole client (streams opened and accepted, refusals, buffers).
    pub fn metrics(&self) -> ClientMetrics {
        self.handle.metrics()
    }

    /// What the network spent on this client (packets sent and retransmitted, SURBs,
    /// bytes), as the simulator counts it; `None` on the real Nym network, which does not
    /// report it, and on a hub (the network runs in the hub's process: ask the hub).
    pub fn network_stats(&self) -> Option<ClientStats> {
        match &self.network {
            Network::Sim(net) => net.stats(&self.address.as_sim_address()?),
            // The hub's network lives in another process.
            Network::Hub(_) => None,
            #[cfg(feature = "nym")]
            Network::Nym => None,
        }
    }

    /// The stream idle timeout in force (`None`: streams are never reaped).
    pub fn stream_idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// Whether the client has stopped (after [`disconnect`](Self::disconnect), or when its
    /// network went away).
    pub fn is_disconnected(&self) -> bool {
        self.handle.is_closed()
    }

    /// Leaves the network. First it drains: the router keeps running until every byte
    /// written to any stream was acknowledged by its peer, for at most the drain
    /// timeout (`MuxConfig::drain_timeout`, 15 s by default; a peer that is gone
    /// cannot acknowledge). Then the router stops, the listener's `accept` returns
    /// `None`, and every stream's reads and writes fail from now on.
    ///
    /// On the real Nym network this also shuts the nym-sdk client down (its own
    /// `disconnect()`, which can take a few seconds), when this client owns it.
    // `mut` is used only with the `nym` feature.
    #[cfg_attr(not(feature = "nym"), allow(unused_mut))]
    pub async fn disconnect(mut self) {
        self.handle.close_gracefully();
        self.handle.closed().await;
        // nym-sdk's disconnect discards what it still queues: the last acks, FINs and
        // resets would never leave. Give it the time its own pace needs for what we
        // handed over (bounded).
        #[cfg(feature = "nym")]
        if let Some(pacer) = self.nym_pacer.take() {
            let wait = pacer.with(|p| p.until_full()).min(NYM_DRAIN_LIMIT);
            tokio::time::sleep(wait).await;
        }
        #[cfg(feature = "nym")]
        if let Some(nym) = self.nym_client.take().and_then(|shared| shared.take()) {
            nym.disconnect().await;
        }
    }
}

impl Drop for MixnetClient {
    /// Dropping the client disconnects it like [`disconnect`](Self::disconnect),
    /// draining first, but without waiting (and without needing a runtime: only state
    /// changes; the router task does the rest). An owned nym-sdk client is shut down in
    /// a background task when a runtime is at hand; call `disconnect` to wait for that.
    fn drop(&mut self) {
        self.handle.close_gracefully();
        #[cfg(feature = "nym")]
        if let Some(shared) = self.nym_client.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                if let Some(nym) = shared.take() {
                    rt.spawn(nym.disconnect());
                }
            }
        }
    }
}

impl MixnetMessageSender for MixnetClient {
    async fn send_plain_message<M>(&self, address: Recipient, message: M) -> Result<()>
    where
        M: AsRef<[u8]> + Send,
    {
        self.split_sender()
            .send_plain_message(address, message)
            .await
    }

    async fn send_reply<M>(&self, recipient_tag: AnonymousSenderTag, message: M) -> Result<()>
    where
        M: AsRef<[u8]> + Send,
    {
        self.split_sender().send_reply(recipient_tag, message).await
    }
}

/// Sends plain messages on behalf of a [`MixnetClient`] from any task; from
/// [`MixnetClient::split_sender`]. Cheap to clone. Fails with [`Error::Disconnected`]
/// once the client is gone.
#[derive(Clone)]
pub struct MixnetClientSender {
    handle: Handle,
    plain_surbs: u32,
}

impl fmt::Debug for MixnetClientSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MixnetClientSender")
            .field("address", &self.handle.local_address())
            .finish_non_exhaustive()
    }
}

impl MixnetMessageSender for MixnetClientSender {
    async fn send_plain_message<M>(&self, address: Recipient, message: M) -> Result<()>
    where
        M: AsRef<[u8]> + Send,
    {
        let to = Destination::Address(address);
        send_to(&self.handle, to, message.as_ref(), self.plain_surbs).await
    }

    async fn send_reply<M>(&self, recipient_tag: AnonymousSenderTag, message: M) -> Result<()>
    where
        M: AsRef<[u8]> + Send,
    {
        send_to(
            &self.handle,
            Destination::Reply(recipient_tag),
            message.as_ref(),
            0,
        )
        .await
    }
}
