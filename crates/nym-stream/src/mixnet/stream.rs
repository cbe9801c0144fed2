//! Streams and the listener: thin newtypes over the multiplexer's handles.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use mux::SenderTag;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Recipient, StreamId, StreamMetrics};

type Inner = mux::MuxStream<Recipient, SenderTag>;

/// A reliable, ordered byte stream to one peer: `AsyncRead + AsyncWrite`.
///
/// Opened with [`MixnetClient::open_stream`](super::MixnetClient::open_stream) or accepted
/// with [`MixnetListener::accept`]. Writes are coalesced into packet-sized frames (see
/// [`set_nodelay`](Self::set_nodelay)); `flush()` sends at once. `shutdown()` ends the
/// write side in order: the peer reads every byte, then `Ok(0)`, and may keep writing
/// (half-close). Dropping the stream without `shutdown()` still delivers what was written,
/// then ends the peer's reads with an error rather than a clean EOF.
///
/// **Idle timeout.** A stream without data in either direction for the client's stream
/// idle timeout (default 30 minutes) is reaped, whether or not a task is using it: reads
/// return what already arrived and then fail with `TimedOut` (the peer never sent its
/// FIN, so nobody can tell it had nothing more to send; the reference implementation
/// returns `Ok(0)`, and so do we for a reference-format peer), and writes fail with
/// `BrokenPipe`. The peer is told (reset code `IDLE_TIMEOUT`) and reaps its end the same
/// way. A stream whose peer shut its side down ends reads with `Ok(0)` as usual.
#[derive(Debug)]
pub struct MixnetStream {
    inner: Inner,
}

impl MixnetStream {
    pub(crate) fn new(inner: Inner) -> Self {
        Self { inner }
    }

    /// The stream's id, chosen at random by the opener and shared by both ends.
    /// Displays as `StreamId(0x…)`.
    pub fn id(&self) -> StreamId {
        self.inner.id()
    }

    /// Waits until the peer acknowledged the open (returns at once for accepted streams).
    /// Writing does not need to wait for this; it tells that the peer is there.
    pub async fn wait_established(&self) -> io::Result<()> {
        self.inner.wait_established().await
    }

    /// One chunk of bytes as it arrived (at most one frame's payload); `Ok(None)` at the
    /// end of the stream (an error after the idle timeout reaped it before the end).
    pub async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        self.inner.recv().await
    }

    /// Waits until every byte written and the end of stream were acknowledged by the
    /// peer, so call `shutdown()` first. Then the bytes are in the peer's receive
    /// buffer, whatever happens to this side next. Fails if the stream was reset or
    /// timed out, or the client disconnected, before that. `shutdown()` itself only
    /// queues the end of stream; this is how to know it arrived.
    pub async fn closed(&self) -> io::Result<()> {
        self.inner.closed().await
    }

    /// `true` sends every write at once; `false` (the client's default unless configured
    /// otherwise) coalesces small writes into packet-sized frames for a few milliseconds.
    pub fn set_nodelay(&self, nodelay: bool) {
        self.inner.set_nodelay(nodelay);
    }

    /// Sets the stream's send priority (default 0): while streams of this client with a
    /// higher priority have something to send, this one waits; streams of equal priority
    /// take turns, a frame each. Raise it on a latency-sensitive stream beside bulk ones.
    pub fn set_priority(&self, priority: i32) {
        self.inner.set_priority(priority);
    }

    /// The stream's send priority.
    pub fn priority(&self) -> i32 {
        self.inner.priority()
    }

    /// Aborts the stream with a reason code (use codes from
    /// [`frame::ext::reset_code`](crate::frame::ext::reset_code), applications from
    /// `APPLICATION_MIN` up): the peer's reads and writes fail with `ConnectionReset`
    /// carrying the code (see [`reset_code_of`](super::reset_code_of)); unsent bytes are
    /// discarded.
    pub fn reset(&self, code: u32) {
        self.inner.reset(code);
    }

    /// The stream's counters (bytes, frames, retransmissions, RTT, …).
    pub fn metrics(&self) -> StreamMetrics {
        self.inner.metrics()
    }

    /// Whether the idle timeout has reaped this stream.
    pub fn is_reaped(&self) -> bool {
        self.inner.is_reaped()
    }

    /// For an accepted stream, the sender tag of the client that opened it: streams
    /// from the same opener share it, so a service can count (and limit) streams per
    /// peer without learning who the peer is. `None` for streams we opened.
    pub fn peer_tag(&self) -> Option<SenderTag> {
        match self.inner.peer() {
            Some(mux::Destination::Reply(tag)) => Some(tag),
            _ => None,
        }
    }

    /// Splits into owned read and write halves that can move to different tasks.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let (r, w) = self.inner.into_split();
        (OwnedReadHalf { inner: r }, OwnedWriteHalf { inner: w })
    }
}

impl AsyncRead for MixnetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for MixnetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The read half of a split [`MixnetStream`]. Dropping it discards further inbound bytes.
pub struct OwnedReadHalf {
    inner: mux::OwnedReadHalf<Recipient, SenderTag>,
}

impl OwnedReadHalf {
    /// The stream's id.
    pub fn id(&self) -> StreamId {
        self.inner.id()
    }

    /// One chunk of bytes as it arrived; `Ok(None)` at the end of the stream (an error
    /// after the idle timeout reaped it before the end).
    pub async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        self.inner.recv().await
    }

    /// Whether the idle timeout has reaped the stream.
    pub fn is_reaped(&self) -> bool {
        self.inner.is_reaped()
    }
}

impl AsyncRead for OwnedReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

/// The write half of a split [`MixnetStream`]. Dropping it without `shutdown()` ends the
/// stream with an error after the data, as for a whole stream.
pub struct OwnedWriteHalf {
    inner: mux::OwnedWriteHalf<Recipient, SenderTag>,
}

impl OwnedWriteHalf {
    /// The stream's id.
    pub fn id(&self) -> StreamId {
        self.inner.id()
    }

    /// Aborts the whole stream with a reason code (see [`MixnetStream::reset`]).
    pub fn reset(&self, code: u32) {
        self.inner.reset(code);
    }

    /// Waits until every written byte and the end of stream were acknowledged (see
    /// [`MixnetStream::closed`]).
    pub async fn closed(&self) -> io::Result<()> {
        self.inner.closed().await
    }
}

impl AsyncWrite for OwnedWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Accepts the streams peers open to this client. Also a `futures_core::Stream` of
/// [`MixnetStream`]s.
pub struct MixnetListener {
    inner: mux::MuxListener<Recipient, SenderTag>,
}

impl MixnetListener {
    pub(crate) fn new(inner: mux::MuxListener<Recipient, SenderTag>) -> Self {
        Self { inner }
    }

    /// Waits for the next incoming stream; `None` once the client is disconnected.
    /// Cancel-safe: a stream is taken only when this returns it.
    pub async fn accept(&mut self) -> Option<MixnetStream> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next incoming stream (the building block of [`accept`](Self::accept)).
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<MixnetStream>> {
        self.inner.poll_accept(cx).map(|s| s.map(MixnetStream::new))
    }
}

impl futures_core::Stream for MixnetListener {
    type Item = MixnetStream;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<MixnetStream>> {
        self.get_mut().poll_accept(cx)
    }
}

impl fmt::Debug for OwnedReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedReadHalf")
            .field("id", &self.inner.id())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for OwnedWriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedWriteHalf")
            .field("id", &self.inner.id())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for MixnetListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MixnetListener").finish_non_exhaustive()
    }
}
