//! Application-facing handles: the client control handle, streams (`AsyncRead +
//! AsyncWrite`, splittable into owned halves) and the listener.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use lp_frame::StreamId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::MuxConfig;
use crate::core::{LocalId, Read, Write};
use crate::driver::{now, plain_transmit, CloseMode, Driver, Inner, PlainMessage, SharedRef};
use crate::error::OpenError;
use crate::metrics::{ClientMetrics, StreamMetrics};
use crate::transport::{Destination, Transport};

/// Bounds every handle type shares on address and tag types.
pub trait Key: Copy + Eq + std::hash::Hash + fmt::Debug + Send + Sync + 'static {}
impl<K: Copy + Eq + std::hash::Hash + fmt::Debug + Send + Sync + 'static> Key for K {}

/// Starts a multiplexer over `transport`: returns the control handle and the router
/// task, which the caller spawns (or use [`spawn`]).
pub fn new<Tr: Transport + Unpin>(
    transport: Tr,
    cfg: MuxConfig,
) -> (MuxHandle<Tr::Address, Tr::SenderTag>, Driver<Tr>) {
    let local = transport.local_address();
    let (driver, shared) = Driver::new(transport, cfg);
    (
        MuxHandle {
            shared: SharedRef::new(shared),
            local,
        },
        driver,
    )
}

/// Starts a multiplexer and spawns its router task on the current tokio runtime.
pub fn spawn<Tr: Transport + Unpin>(
    transport: Tr,
    cfg: MuxConfig,
) -> MuxHandle<Tr::Address, Tr::SenderTag> {
    let (handle, driver) = new(transport, cfg);
    tokio::spawn(async move {
        if let Err(e) = driver.await {
            tracing::warn!(error = %e, "multiplexer driver failed");
        }
    });
    handle
}

fn closed_error(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        format!("the client is disconnected ({why}); connect a new client"),
    )
}

/// The control handle of one client's multiplexer: open streams, take the listener,
/// send and receive plain messages. Cheap to clone.
pub struct MuxHandle<A, T> {
    shared: SharedRef<A, T>,
    local: A,
}

impl<A, T> Clone for MuxHandle<A, T>
where
    A: Copy,
{
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            local: self.local,
        }
    }
}

impl<A: Key, T: Key> MuxHandle<A, T> {
    /// Our own address on the network.
    pub fn local_address(&self) -> A {
        self.local
    }

    /// Opens a stream to `to`. Writing may begin at once (no round trip first).
    /// `reply_surbs`: `Some(k)` attaches exactly k reply SURBs to every message of the
    /// stream; `None` uses the adaptive policy (see docs/PROTOCOL.md).
    pub fn open_stream(
        &self,
        to: A,
        reply_surbs: Option<u32>,
    ) -> Result<MuxStream<A, T>, OpenError> {
        let mut inner = self.shared.lock();
        if inner.closed.is_some() {
            return Err(OpenError::Closed);
        }
        let (local, id) = inner.core.open(now(), to, reply_surbs)?;
        inner.dispatch();
        Ok(MuxStream::new(self.shared.clone(), local, id))
    }

    /// Opens a stream to `to` like [`MuxHandle::open_stream`], but when
    /// `max_pending_opens` streams are still waiting for their `OpenAck`, waits for
    /// one of them to finish instead of failing.
    pub async fn open(
        &self,
        to: A,
        reply_surbs: Option<u32>,
    ) -> Result<MuxStream<A, T>, OpenError> {
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            if inner.closed.is_some() {
                return Poll::Ready(Err(OpenError::Closed));
            }
            if !inner.core.can_open() {
                inner.register_open(cx.waker());
                return Poll::Pending;
            }
            let res = inner.core.open(now(), to, reply_surbs);
            inner.dispatch();
            Poll::Ready(res.map(|(local, id)| MuxStream::new(self.shared.clone(), local, id)))
        })
        .await
    }

    /// Takes the listener for incoming streams. Only one exists at a time: while it
    /// lives, a second call returns `None`. Until a listener is taken (and after it is
    /// dropped) peers' opens are refused at once with `Reset(REFUSED)`.
    pub fn listener(&self) -> Option<MuxListener<A, T>> {
        let mut inner = self.shared.lock();
        if inner.listener_taken {
            return None;
        }
        inner.listener_taken = true;
        inner.core.set_listening(now(), true);
        Some(MuxListener {
            shared: self.shared.clone(),
        })
    }

    /// Sends a plain (non-stream) message; waits while the send queue is full.
    pub async fn send_plain(
        &self,
        to: Destination<A, T>,
        payload: Bytes,
        reply_surbs: u32,
    ) -> io::Result<()> {
        let mut t = Some(plain_transmit(to, payload, reply_surbs));
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            if let Some(why) = &inner.closed {
                return Poll::Ready(Err(closed_error(why)));
            }
            let Some(msg) = t.take() else {
                return Poll::Ready(Ok(()));
            };
            match inner.try_queue_plain(msg, cx.waker()) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(back) => {
                    t = Some(back);
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Waits for the next plain message; `None` once the client is disconnected.
    pub async fn recv_plain(&self) -> Option<PlainMessage<T>> {
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            if let Some(m) = inner.core.take_plain() {
                return Poll::Ready(Some(m));
            }
            if inner.closed.is_some() {
                return Poll::Ready(None);
            }
            inner.register_plain_recv(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Counters of the whole client.
    pub fn metrics(&self) -> ClientMetrics {
        self.shared.lock().core.metrics()
    }

    /// Whether the router task has stopped.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Stops the router task at once: every stream's reads and writes fail afterwards
    /// and bytes not yet delivered are lost. See [`MuxHandle::close_gracefully`].
    pub fn close(&self) {
        self.shared.lock().request_close(CloseMode::Now);
    }

    /// Stops the router task once every byte written to any stream was acknowledged
    /// by its peer, or when [`MuxConfig::drain_timeout`] has passed, whichever comes
    /// first. Streams keep working meanwhile. Wait for the end with
    /// [`MuxHandle::closed`]. Dropping every handle of a client does the same.
    pub fn close_gracefully(&self) {
        self.shared.lock().request_close(CloseMode::Drain);
    }

    /// Waits until the router task has stopped (after [`MuxHandle::close`],
    /// [`MuxHandle::close_gracefully`], or because the network closed).
    pub async fn closed(&self) {
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            if inner.closed.is_some() {
                return Poll::Ready(());
            }
            inner.register_closed(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Why the router task stopped, once it has.
    pub fn close_reason(&self) -> Option<String> {
        self.shared.lock().closed.clone()
    }
}

/// Accepts streams peers open to us. Also a `futures_core::Stream` of streams.
pub struct MuxListener<A: Key, T: Key> {
    shared: SharedRef<A, T>,
}

impl<A: Key, T: Key> MuxListener<A, T> {
    /// Waits for the next incoming stream; `None` once the client is gone.
    /// Cancel-safe: a stream is taken only when this returns it.
    pub async fn accept(&mut self) -> Option<MuxStream<A, T>> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next incoming stream.
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<MuxStream<A, T>>> {
        let mut inner = self.shared.lock();
        if let Some((local, id)) = inner.core.accept() {
            return Poll::Ready(Some(MuxStream::new(self.shared.clone(), local, id)));
        }
        if inner.closed.is_some() {
            return Poll::Ready(None);
        }
        inner.register_accept(cx.waker());
        Poll::Pending
    }
}

impl<A: Key, T: Key> Drop for MuxListener<A, T> {
    /// Nobody accepts any more: streams still in the backlog are refused, and so are
    /// later opens, until a new listener is taken.
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.listener_taken = false;
        inner.core.set_listening(now(), false);
        inner.dispatch();
    }
}

impl<A: Key, T: Key> futures_core::Stream for MuxListener<A, T> {
    type Item = MuxStream<A, T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_accept(cx)
    }
}

/// What every stream handle (whole or half) holds.
struct Half<A, T> {
    shared: SharedRef<A, T>,
    local: LocalId,
    id: StreamId,
}

impl<A: Key, T: Key> Half<A, T> {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.shared.lock();
        // Straight into the caller's (possibly uninitialised) buffer: no zeroing.
        let out = inner.core.read_buf(now(), self.local, buf);
        let res = match out {
            Read::Data(_) => Poll::Ready(Ok(())),
            Read::Eof => Poll::Ready(Ok(())),
            Read::Failed(e) => Poll::Ready(Err(e.into())),
            Read::Pending => match &inner.closed {
                Some(why) => Poll::Ready(Err(closed_error(why))),
                None => {
                    inner.register_read(self.local, cx.waker());
                    Poll::Pending
                }
            },
        };
        inner.dispatch();
        res
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        let mut inner = self.shared.lock();
        let res = match inner.core.read_chunk(now(), self.local) {
            Ok(chunk) => Poll::Ready(Ok(chunk)),
            Err(Read::Failed(e)) => Poll::Ready(Err(e.into())),
            Err(Read::Eof) => Poll::Ready(Ok(None)),
            Err(_) => match &inner.closed {
                Some(why) => Poll::Ready(Err(closed_error(why))),
                None => {
                    inner.register_read(self.local, cx.waker());
                    Poll::Pending
                }
            },
        };
        inner.dispatch();
        res
    }

    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let mut inner = self.shared.lock();
        if let Some(why) = &inner.closed {
            return Poll::Ready(Err(closed_error(why)));
        }
        let res = match inner.core.write(now(), self.local, data) {
            Write::Accepted(n) => Poll::Ready(Ok(n)),
            Write::Failed(e) => Poll::Ready(Err(e.into())),
            Write::Blocked => {
                inner.register_write(self.local, cx.waker());
                Poll::Pending
            }
        };
        inner.dispatch();
        res
    }

    /// Hands buffered bytes to the router now. Fails when the stream was reset or
    /// failed (its bytes will not be delivered) or the client is closed.
    fn poll_flush(&self) -> Poll<io::Result<()>> {
        let mut inner = self.shared.lock();
        inner.core.flush(now(), self.local);
        let res = self.write_side_status(&inner);
        inner.dispatch();
        Poll::Ready(res)
    }

    /// Queues the FIN after the buffered bytes. Fails like [`Half::poll_flush`].
    fn poll_shutdown(&self) -> Poll<io::Result<()>> {
        let mut inner = self.shared.lock();
        inner.core.shutdown(now(), self.local);
        let res = self.write_side_status(&inner);
        inner.dispatch();
        Poll::Ready(res)
    }

    fn write_side_status(&self, inner: &Inner<A, T>) -> io::Result<()> {
        if let Some(e) = inner.core.send_error(self.local) {
            return Err(e.into());
        }
        // Bytes still to send cannot go anywhere once the router stopped.
        match &inner.closed {
            Some(why) if !matches!(inner.core.send_finished(self.local), Ok(true)) => {
                Err(closed_error(why))
            }
            _ => Ok(()),
        }
    }

    /// Waits until every written byte and the FIN were acknowledged by the peer.
    async fn finished(&self) -> io::Result<()> {
        self.wait_for(|core, l| core.send_finished(l), Inner::register_write)
            .await
    }

    /// Waits until `done` says `Ok(true)` (or fails, or the client closes), parking
    /// the task with `register` in between.
    async fn wait_for(
        &self,
        done: impl Fn(&crate::core::Core<A, T>, LocalId) -> Result<bool, crate::StreamError>,
        register: fn(&mut Inner<A, T>, LocalId, &std::task::Waker),
    ) -> io::Result<()> {
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            match done(&inner.core, self.local) {
                Ok(true) => Poll::Ready(Ok(())),
                Err(e) => Poll::Ready(Err(e.into())),
                Ok(false) => match &inner.closed {
                    Some(why) => Poll::Ready(Err(closed_error(why))),
                    None => {
                        register(&mut inner, self.local, cx.waker());
                        Poll::Pending
                    }
                },
            }
        })
        .await
    }

    fn reset(&self, code: u32) {
        let mut inner = self.shared.lock();
        inner.core.reset(now(), self.local, code);
        inner.dispatch();
    }

    fn set_nodelay(&self, nodelay: bool) {
        let mut inner = self.shared.lock();
        inner.core.set_nodelay(now(), self.local, nodelay);
        inner.dispatch();
    }

    fn set_priority(&self, priority: i32) {
        self.shared.lock().core.set_priority(self.local, priority);
    }

    fn priority(&self) -> i32 {
        self.shared.lock().core.priority(self.local)
    }

    async fn wait_established(&self) -> io::Result<()> {
        self.wait_for(|core, l| core.established(l), Inner::register_established)
            .await
    }

    fn is_reaped(&self) -> bool {
        self.shared.lock().core.is_reaped(self.local)
    }

    fn metrics(&self) -> StreamMetrics {
        self.shared
            .lock()
            .core
            .stream_metrics(self.local)
            .unwrap_or_default()
    }

    fn peer(&self) -> Option<Destination<A, T>> {
        self.shared.lock().core.stream_peer(self.local)
    }

    /// Cleanup needs no runtime: it only updates the shared state and wakes the
    /// router task, which sends whatever the drop requires.
    fn release(&self, read: bool, write: bool) {
        let mut inner = self.shared.lock();
        inner.core.drop_handle(now(), self.local, read, write);
        inner.forget(self.local, read, write);
        inner.dispatch();
    }
}

/// One bidirectional byte stream: `AsyncRead + AsyncWrite`.
///
/// Dropping it without `shutdown()` is an abortive close ordered after the data:
/// everything written is still delivered, then the peer's read fails instead of
/// returning EOF. See docs/PROTOCOL.md.
pub struct MuxStream<A: Key, T: Key> {
    half: Half<A, T>,
    released: bool,
}

impl<A: Key, T: Key> MuxStream<A, T> {
    fn new(shared: SharedRef<A, T>, local: LocalId, id: StreamId) -> Self {
        Self {
            half: Half { shared, local, id },
            released: false,
        }
    }

    /// The stream's wire id.
    pub fn id(&self) -> StreamId {
        self.half.id
    }

    /// Waits until the peer acknowledged the open (immediately for accepted streams).
    pub async fn wait_established(&self) -> io::Result<()> {
        self.half.wait_established().await
    }

    /// One chunk of bytes as it arrived; `Ok(None)` at EOF.
    pub async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        poll_fn(|cx| self.half.poll_recv(cx)).await
    }

    /// Waits until every byte written and the FIN (so call `shutdown()` first) were
    /// acknowledged by the peer: then they are in its receive buffer, whatever
    /// happens to this side afterwards. Fails if the stream was reset, timed out, or
    /// the client closed first. With a reference-format peer, which never
    /// acknowledges, it returns once everything was sent.
    pub async fn closed(&self) -> io::Result<()> {
        self.half.finished().await
    }

    /// Sends every write at once (`true`) instead of coalescing small writes.
    pub fn set_nodelay(&self, nodelay: bool) {
        self.half.set_nodelay(nodelay);
    }

    /// Sets the stream's send priority (default 0, like quinn's `SendStream::set_priority`):
    /// while streams of this client with a higher priority have frames to send, this one
    /// waits; streams of equal priority take turns, a frame each. Give a latency-sensitive
    /// stream a higher priority than a bulk one beside it.
    pub fn set_priority(&self, priority: i32) {
        self.half.set_priority(priority);
    }

    /// The stream's send priority.
    pub fn priority(&self) -> i32 {
        self.half.priority()
    }

    /// Aborts the stream at once with a reason code: the peer's reads and writes
    /// fail with `ConnectionReset`; unsent and in-flight bytes may be discarded.
    pub fn reset(&self, code: u32) {
        self.half.reset(code);
    }

    /// The stream's counters.
    pub fn metrics(&self) -> StreamMetrics {
        self.half.metrics()
    }

    /// Who is at the other end: the address we opened the stream to, or the sender tag
    /// of the opener of an accepted stream (`None` once the stream left the table).
    pub fn peer(&self) -> Option<Destination<A, T>> {
        self.half.peer()
    }

    /// Whether the idle timeout reaped the stream (reads then end with `Ok(0)`).
    pub fn is_reaped(&self) -> bool {
        self.half.is_reaped()
    }

    /// Splits into owned read and write halves usable from different tasks.
    pub fn into_split(mut self) -> (OwnedReadHalf<A, T>, OwnedWriteHalf<A, T>) {
        self.released = true;
        let read = Half {
            shared: self.half.shared.clone(),
            local: self.half.local,
            id: self.half.id,
        };
        let write = Half {
            shared: self.half.shared.clone(),
            local: self.half.local,
            id: self.half.id,
        };
        (OwnedReadHalf { half: read }, OwnedWriteHalf { half: write })
    }
}

impl<A: Key, T: Key> fmt::Debug for MuxStream<A, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxStream")
            .field("id", &self.half.id)
            .finish()
    }
}

impl<A: Key, T: Key> Drop for MuxStream<A, T> {
    fn drop(&mut self) {
        if !self.released {
            self.half.release(true, true);
        }
    }
}

impl<A: Key, T: Key> AsyncRead for MuxStream<A, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.half.poll_read(cx, buf)
    }
}

impl<A: Key, T: Key> AsyncWrite for MuxStream<A, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.half.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.half.poll_flush()
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.half.poll_shutdown()
    }
}

/// The read half of a split stream. Dropping it discards further inbound bytes.
pub struct OwnedReadHalf<A: Key, T: Key> {
    half: Half<A, T>,
}

impl<A: Key, T: Key> OwnedReadHalf<A, T> {
    /// The stream's wire id.
    pub fn id(&self) -> StreamId {
        self.half.id
    }

    /// Whether the idle timeout reaped the stream.
    pub fn is_reaped(&self) -> bool {
        self.half.is_reaped()
    }

    /// One chunk of bytes as it arrived; `Ok(None)` at EOF.
    pub async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        poll_fn(|cx| self.half.poll_recv(cx)).await
    }
}

impl<A: Key, T: Key> Drop for OwnedReadHalf<A, T> {
    fn drop(&mut self) {
        self.half.release(true, false);
    }
}

impl<A: Key, T: Key> AsyncRead for OwnedReadHalf<A, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.half.poll_read(cx, buf)
    }
}

/// The write half of a split stream. Dropping it without `shutdown()` is an
/// abortive close ordered after the data.
pub struct OwnedWriteHalf<A: Key, T: Key> {
    half: Half<A, T>,
}

impl<A: Key, T: Key> OwnedWriteHalf<A, T> {
    /// The stream's wire id.
    pub fn id(&self) -> StreamId {
        self.half.id
    }

    /// Aborts the whole stream with a reason code.
    pub fn reset(&self, code: u32) {
        self.half.reset(code);
    }

    /// Waits until every byte written and the FIN were acknowledged by the peer; see
    /// [`MuxStream::closed`].
    pub async fn closed(&self) -> io::Result<()> {
        self.half.finished().await
    }
}

impl<A: Key, T: Key> Drop for OwnedWriteHalf<A, T> {
    fn drop(&mut self) {
        self.half.release(false, true);
    }
}

impl<A: Key, T: Key> AsyncWrite for OwnedWriteHalf<A, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.half.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.half.poll_flush()
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.half.poll_shutdown()
    }
}
