//! Streams and the listener: thin newtypes over the multiplexer's handles that add the
//! idle timeout.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use lp_frame::ext::reset_code;
use mixnet_sim::SenderTag;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::{Recipient, StreamId, StreamMetrics};

type Inner = mux::MuxStream<Recipient, SenderTag>;

/// Idle bookkeeping shared by a stream and both of its halves.
#[derive(Debug)]
struct Idle {
    timeout: Duration,
    deadline: Mutex<Instant>,
    reaped: AtomicBool,
}

impl Idle {
    fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            timeout,
            deadline: Mutex::new(deadline_after(timeout)),
            reaped: AtomicBool::new(false),
        })
    }

    fn deadline(&self) -> Instant {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Application bytes moved: push the deadline out.
    fn touch(&self) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline_after(self.timeout);
    }

    fn is_reaped(&self) -> bool {
        self.reaped.load(Ordering::Acquire)
    }

    /// Marks the stream reaped if its deadline has passed; returns whether it is reaped.
    fn check(&self) -> bool {
        if self.is_reaped() {
            return true;
        }
        if Instant::now() >= self.deadline() {
            self.reaped.store(true, Ordering::Release);
            return true;
        }
        false
    }

    fn reaped_error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            format!(
                "the stream was reaped after {:?} without traffic (stream idle timeout); \
                 open a new stream, or raise the timeout with with_stream_idle_timeout",
                self.timeout
            ),
        )
    }
}

fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// The read side's view of the idle timeout: the shared state plus a timer that wakes a
/// blocked reader at the deadline.
#[derive(Debug)]
struct IdleWatch {
    idle: Arc<Idle>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleWatch {
    /// `true` once the idle deadline passed while the reader waited.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.idle.check() {
                return true;
            }
            let deadline = self.idle.deadline();
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            // The timer fired: loop to re-check (traffic may have moved the deadline).
        }
    }
}

/// Whether the idle deadline passed while waiting (arms the timer otherwise).
fn expired(idle: &mut Option<IdleWatch>, cx: &mut Context<'_>) -> bool {
    match idle {
        Some(w) => w.poll_expired(cx),
        None => false,
    }
}

/// Reads from `inner`, applying the idle timeout. Returns the poll result and whether
/// the stream was reaped by this call.
fn poll_read_idle<R: AsyncRead + Unpin>(
    inner: &mut R,
    idle: &mut Option<IdleWatch>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> (Poll<io::Result<()>>, bool) {
    if let Some(w) = idle {
        if w.idle.is_reaped() {
            // As the reference does: reads of a reaped stream see end-of-stream.
            return (Poll::Ready(Ok(())), false);
        }
    }
    let before = buf.filled().len();
    match Pin::new(inner).poll_read(cx, buf) {
        Poll::Ready(Ok(())) => {
            let Some(w) = idle else {
                return (Poll::Ready(Ok(())), false);
            };
            if buf.filled().len() > before {
                w.idle.touch();
                (Poll::Ready(Ok(())), false)
            } else {
                // End of stream. If our deadline has passed too, the multiplexer's own
                // idle reaping got there first: record the reap like ours.
                (Poll::Ready(Ok(())), w.idle.check())
            }
        }
        Poll::Ready(Err(e)) => (Poll::Ready(Err(e)), false),
        Poll::Pending if expired(idle, cx) => (Poll::Ready(Ok(())), true),
        Poll::Pending => (Poll::Pending, false),
    }
}

/// Writes to `inner`, applying the idle timeout. Returns the poll result and whether the
/// stream was reaped by this call.
fn poll_write_idle<W: AsyncWrite + Unpin>(
    inner: &mut W,
    idle: Option<&Arc<Idle>>,
    cx: &mut Context<'_>,
    data: &[u8],
) -> (Poll<io::Result<usize>>, bool) {
    if let Some(idle) = idle {
        let was = idle.is_reaped();
        if idle.check() {
            return (Poll::Ready(Err(idle.reaped_error())), !was);
        }
    }
    let res = Pin::new(inner).poll_write(cx, data);
    if let (Poll::Ready(Ok(n)), Some(idle)) = (&res, idle) {
        if *n > 0 {
            idle.touch();
        }
    }
    (res, false)
}

/// A reliable, ordered byte stream to one peer: `AsyncRead + AsyncWrite`.
///
/// Opened with [`MixnetClient::open_stream`](super::MixnetClient::open_stream) or accepted
/// with [`MixnetListener::accept`]. Writes are coalesced into packet-sized frames (see
/// [`set_nodelay`](Self::set_nodelay)); `flush()` sends at once. `shutdown()` ends the
/// write side in order: the peer reads every byte, then `Ok(0)`, and may keep writing
/// (half-close). Dropping the stream without `shutdown()` still delivers what was written,
/// then ends the peer's reads with an error rather than a clean EOF.
///
/// **Idle timeout.** If no application byte is read or written for the client's stream
/// idle timeout (default 30 minutes), the stream is reaped: it is reset towards the peer
/// (code `NO_ERROR`), reads return `Ok(0)` as in the reference implementation, and writes
/// fail with `BrokenPipe`. A blocked read ends at the deadline. The multiplexer also
/// reaps streams no task touches, in the background (locally; the reset towards the
/// peer is sent when the stream is next used or dropped).
#[derive(Debug)]
pub struct MixnetStream {
    inner: Inner,
    idle: Option<IdleWatch>,
}

impl MixnetStream {
    pub(crate) fn new(inner: Inner, idle_timeout: Option<Duration>) -> Self {
        Self {
            inner,
            idle: idle_timeout.map(|t| IdleWatch {
                idle: Idle::new(t),
                sleep: None,
            }),
        }
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
    /// end of the stream, and after the idle timeout reaped it.
    pub async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        if self.is_reaped() {
            return Ok(None);
        }
        let outcome = {
            let mut fut = pin!(self.inner.recv());
            let idle = &mut self.idle;
            poll_fn(|cx| match fut.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending => {
                    if expired(idle, cx) {
                        Poll::Ready(None)
                    } else {
                        Poll::Pending
                    }
                }
            })
            .await
        };
        match outcome {
            Some(Ok(Some(chunk))) => {
                if let Some(w) = &self.idle {
                    w.idle.touch();
                }
                Ok(Some(chunk))
            }
            Some(other) => other,
            None => {
                self.inner.reset(reset_code::NO_ERROR);
                Ok(None)
            }
        }
    }

    /// `true` sends every write at once; `false` (the client's default unless configured
    /// otherwise) coalesces small writes into packet-sized frames for a few milliseconds.
    pub fn set_nodelay(&self, nodelay: bool) {
        self.inner.set_nodelay(nodelay);
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
        self.idle.as_ref().is_some_and(|w| w.idle.is_reaped())
    }

    /// Splits into owned read and write halves that can move to different tasks.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let (r, w) = self.inner.into_split();
        let shared = self.idle.as_ref().map(|w| Arc::clone(&w.idle));
        (
            OwnedReadHalf {
                inner: r,
                idle: self.idle,
            },
            OwnedWriteHalf {
                inner: w,
                idle: shared,
            },
        )
    }
}

impl AsyncRead for MixnetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (res, reaped) = poll_read_idle(&mut this.inner, &mut this.idle, cx, buf);
        if reaped {
            this.inner.reset(reset_code::NO_ERROR);
        }
        res
    }
}

impl AsyncWrite for MixnetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let idle = this.idle.as_ref().map(|w| &w.idle);
        let (res, reaped) = poll_write_idle(&mut this.inner, idle, cx, data);
        if reaped {
            this.inner.reset(reset_code::NO_ERROR);
        }
        res
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
    idle: Option<IdleWatch>,
}

impl OwnedReadHalf {
    /// The stream's id.
    pub fn id(&self) -> StreamId {
        self.inner.id()
    }

    /// One chunk of bytes as it arrived; `Ok(None)` at the end of the stream (and after
    /// the idle timeout reaped it).
    pub async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        if self.idle.as_ref().is_some_and(|w| w.idle.is_reaped()) {
            return Ok(None);
        }
        let mut fut = pin!(self.inner.recv());
        let idle = &mut self.idle;
        let out = poll_fn(|cx| match fut.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => {
                if expired(idle, cx) {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                }
            }
        })
        .await;
        match out {
            Some(Ok(Some(chunk))) => {
                if let Some(w) = &self.idle {
                    w.idle.touch();
                }
                Ok(Some(chunk))
            }
            Some(other) => other,
            None => Ok(None),
        }
    }
}

impl AsyncRead for OwnedReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The read half cannot reset; the write half resets on its next use, or its drop
        // ends the stream.
        poll_read_idle(&mut this.inner, &mut this.idle, cx, buf).0
    }
}

/// The write half of a split [`MixnetStream`]. Dropping it without `shutdown()` ends the
/// stream with an error after the data, as for a whole stream.
pub struct OwnedWriteHalf {
    inner: mux::OwnedWriteHalf<Recipient, SenderTag>,
    idle: Option<Arc<Idle>>,
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
}

impl AsyncWrite for OwnedWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let (res, reaped) = poll_write_idle(&mut this.inner, this.idle.as_ref(), cx, data);
        if reaped || this.idle.as_ref().is_some_and(|i| i.is_reaped()) {
            this.inner.reset(reset_code::NO_ERROR);
        }
        res
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
    idle_timeout: Option<Duration>,
}

impl MixnetListener {
    pub(crate) fn new(
        inner: mux::MuxListener<Recipient, SenderTag>,
        idle_timeout: Option<Duration>,
    ) -> Self {
        Self {
            inner,
            idle_timeout,
        }
    }

    /// Waits for the next incoming stream; `None` once the client is disconnected.
    /// Cancel-safe: a stream is taken only when this returns it.
    pub async fn accept(&mut self) -> Option<MixnetStream> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next incoming stream (the building block of [`accept`](Self::accept)).
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<MixnetStream>> {
        self.inner
            .poll_accept(cx)
            .map(|s| s.map(|s| MixnetStream::new(s, self.idle_timeout)))
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
        f.debug_struct("MixnetListener")
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}
