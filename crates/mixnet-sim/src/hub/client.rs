//! The client end of a hub connection: the operations of an in-process client, carried
//! over the socket by two tasks (one writes, one reads).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::proto::{FromHub, ToHub, MAX_FRAME, VERSION};
use crate::types::{Address, ClientStats, ReceivedMessage, SenderTag, SimError};
use crate::Identity;

/// Sends queued towards the hub before `poll_ready` holds the caller back.
const SEND_QUEUE: usize = 64;
/// Received messages buffered in this process before the reader stops reading the
/// socket (the hub then stops delivering; the network drops what its inbox cannot take).
const INBOX: usize = 1024;
/// How long connecting and the hello may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the two tasks and the client share.
#[derive(Default)]
struct Mirror {
    /// SURBs held for each tag, as the hub last said (less the replies sent since).
    stocks: HashMap<SenderTag, u32>,
    stats: ClientStats,
    /// Why the connection ended, once it did.
    closed: Option<String>,
    /// Frames handed to the writer and not yet written.
    queued: usize,
    ready_waker: Option<Waker>,
}

pub(crate) struct RemoteClient {
    hub: SocketAddr,
    address: Address,
    max_message_len: u64,
    out: mpsc::UnboundedSender<Bytes>,
    inbox: mpsc::Receiver<ReceivedMessage>,
    shared: Arc<Mutex<Mirror>>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

fn lock(m: &Mutex<Mirror>) -> MutexGuard<'_, Mirror> {
    // A task that panicked while holding the lock leaves consistent counters.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RemoteClient {
    pub(crate) async fn connect(hub: SocketAddr, identity: &Identity) -> Result<Self, SimError> {
        let unreachable = |reason: String| SimError::HubUnreachable {
            hub: hub.to_string(),
            reason,
        };
        let sock = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(hub)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(format!("no answer in {CONNECT_TIMEOUT:?}"))),
        };
        let _ = sock.set_nodelay(true);
        let (rd, wr) = sock.into_split();
        let mut rd = FramedRead::new(rd, codec());
        let mut wr = FramedWrite::new(wr, codec());
        let address = identity.address();
        let hello = ToHub::Hello {
            version: VERSION,
            address,
        };
        let answer = tokio::time::timeout(CONNECT_TIMEOUT, async {
            wr.send(hello.encode()).await?;
            rd.next().await.transpose()
        })
        .await;
        let frame = match answer {
            Ok(Ok(Some(f))) => f,
            Ok(Ok(None)) => return Err(unreachable("the hub closed the connection".into())),
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(format!("no hello in {CONNECT_TIMEOUT:?}"))),
        };
        let max_message_len =
            match FromHub::decode(frame.freeze()) {
                Ok(FromHub::Welcome {
                    max_message_len, ..
                }) => max_message_len,
                Ok(FromHub::Refused { reason }) => {
                    return Err(SimError::HubRefused {
                        hub: hub.to_string(),
                        reason,
                    })
                }
                _ => return Err(unreachable(
                    "it answered with something other than a hub welcome (is it a nym-stream hub?)"
                        .into(),
                )),
            };
        let shared = Arc::new(Mutex::new(Mirror::default()));
        let (out, out_rx) = mpsc::unbounded_channel();
        let (inbox_tx, inbox) = mpsc::channel(INBOX);
        let writer = tokio::spawn(write_loop(wr, out_rx, Arc::clone(&shared), hub));
        let reader = tokio::spawn(read_loop(rd, inbox_tx, Arc::clone(&shared), hub));
        Ok(RemoteClient {
            hub,
            address,
            max_message_len,
            out,
            inbox,
            shared,
            tasks: [writer, reader],
        })
    }

    pub(crate) fn address(&self) -> Address {
        self.address
    }

    fn gone(&self, m: &Mirror) -> Option<SimError> {
        m.closed.as_ref().map(|reason| SimError::HubGone {
            hub: self.hub.to_string(),
            reason: reason.clone(),
        })
    }

    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SimError>> {
        let mut m = lock(&self.shared);
        if let Some(e) = self.gone(&m) {
            return Poll::Ready(Err(e));
        }
        if m.queued < SEND_QUEUE {
            return Poll::Ready(Ok(()));
        }
        m.ready_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn push(&mut self, frame: ToHub, payload_len: usize) -> Result<(), SimError> {
        let mut m = lock(&self.shared);
        if let Some(e) = self.gone(&m) {
            return Err(e);
        }
        if payload_len as u64 > self.max_message_len || payload_len + 64 > MAX_FRAME {
            return Err(SimError::MessageTooLarge {
                framed_len: payload_len as u64,
                max: (self.max_message_len as usize).min(MAX_FRAME - 64),
            });
        }
        if let ToHub::SendReply { tag, .. } = &frame {
            match m.stocks.get_mut(tag) {
                Some(n) => *n = n.saturating_sub(1),
                None => return Err(SimError::UnknownSenderTag(*tag)),
            }
        }
        m.queued += 1;
        drop(m);
        self.out
            .send(frame.encode())
            .map_err(|_| SimError::HubGone {
                hub: self.hub.to_string(),
                reason: "the connection's writer stopped".into(),
            })
    }

    pub(crate) fn send_regular(&mut self, to: Address, payload: Bytes) -> Result<(), SimError> {
        let n = payload.len();
        self.push(ToHub::SendRegular { to, payload }, n)
    }

    pub(crate) fn send_anonymous(
        &mut self,
        to: Address,
        payload: Bytes,
        surbs: u32,
    ) -> Result<(), SimError> {
        let n = payload.len();
        self.push(ToHub::SendAnonymous { to, surbs, payload }, n)
    }

    pub(crate) fn send_reply(&mut self, tag: SenderTag, payload: Bytes) -> Result<(), SimError> {
        let n = payload.len();
        self.push(ToHub::SendReply { tag, payload }, n)
    }

    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ReceivedMessage>> {
        self.inbox.poll_recv(cx)
    }

    pub(crate) fn surbs_available(&self, tag: &SenderTag) -> u32 {
        lock(&self.shared).stocks.get(tag).copied().unwrap_or(0)
    }

    pub(crate) fn stats(&self) -> ClientStats {
        lock(&self.shared).stats
    }
}

impl Drop for RemoteClient {
    fn drop(&mut self) {
        // Closing the socket is leaving the network.
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn close(shared: &Mutex<Mirror>, reason: String) {
    let waker = {
        let mut m = lock(shared);
        m.closed.get_or_insert(reason);
        m.ready_waker.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

async fn write_loop(
    mut wr: FramedWrite<tokio::net::tcp::OwnedWriteHalf, LengthDelimitedCodec>,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Mutex<Mirror>>,
    hub: SocketAddr,
) {
    while let Some(frame) = rx.recv().await {
        // Everything already queued goes out in one write.
        let mut written = 1;
        let mut result = wr.feed(frame).await;
        while result.is_ok() {
            match rx.try_recv() {
                Ok(f) => {
                    written += 1;
                    result = wr.feed(f).await;
                }
                Err(_) => break,
            }
        }
        if let Err(e) = result.and(SinkExt::<Bytes>::flush(&mut wr).await) {
            close(&shared, format!("writing to the hub at {hub} failed: {e}"));
            return;
        }
        let waker = {
            let mut m = lock(&shared);
            m.queued = m.queued.saturating_sub(written);
            m.ready_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

async fn read_loop(
    mut rd: FramedRead<tokio::net::tcp::OwnedReadHalf, LengthDelimitedCodec>,
    inbox: mpsc::Sender<ReceivedMessage>,
    shared: Arc<Mutex<Mirror>>,
    hub: SocketAddr,
) {
    let reason = loop {
        let frame = match rd.next().await {
            Some(Ok(f)) => f,
            Some(Err(e)) => break format!("reading from the hub at {hub} failed: {e}"),
            None => break format!("the hub at {hub} closed the connection (it stopped?)"),
        };
        match FromHub::decode(frame.freeze()) {
            Ok(FromHub::Received {
                sender_tag,
                payload,
            }) => {
                if let Some((tag, n)) = sender_tag {
                    lock(&shared).stocks.insert(tag, n);
                }
                let msg = ReceivedMessage {
                    payload,
                    sender_tag: sender_tag.map(|(t, _)| t),
                };
                if inbox.send(msg).await.is_err() {
                    return;
                }
            }
            Ok(FromHub::Stock { tag, surbs }) => {
                lock(&shared).stocks.insert(tag, surbs);
            }
            Ok(FromHub::Stats(s)) => lock(&shared).stats = s,
            Ok(FromHub::SendFailed { reason }) => {
                tracing::warn!(%hub, reason, "the hub refused a send");
            }
            Ok(FromHub::Welcome { .. } | FromHub::Refused { .. }) => {}
            Err(e) => break format!("the hub at {hub} sent a malformed frame ({e})"),
        }
    };
    close(&shared, reason);
}
