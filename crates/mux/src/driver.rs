//! The tokio driver: one router task per client that reads the transport, feeds the
//! core, fires timers and writes frames out. It only moves bytes and time.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use futures_util::task::AtomicWaker;

use crate::config::MuxConfig;
use crate::core::{Core, Event, LocalId, Transmit};
use crate::id_map::IdMap;
use crate::transport::{Destination, Inbound, Transport, TransportError};

/// Messages handled per driver wake-up before it yields to other tasks.
const INBOUND_BATCH: usize = 64;
/// Messages sent per driver wake-up before it yields: on a network without pacing, a
/// sender that never yields can bury a receiver (whose driver also takes 64 at a
/// time) until the network drops messages.
const OUTBOUND_BATCH: usize = 64;
/// Rounds of receive, timers and send per driver wake-up before it yields.
const MAX_ROUNDS: u32 = 4;
/// Plain messages the application may queue for sending before `send_plain` waits.
const PLAIN_SEND_QUEUE: usize = 64;

/// The current time on tokio's clock (paused in tests), as a std `Instant`.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// How the application asked the client to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseMode {
    /// Stop now: undelivered bytes are lost.
    Now,
    /// Keep running until every written byte is acknowledged or `drain_timeout`
    /// passed, then stop.
    Drain,
}

/// State shared by the driver and every handle, behind one mutex.
pub(crate) struct Inner<A, T> {
    pub(crate) core: Core<A, T>,
    read_wakers: IdMap<LocalId, Waker>,
    write_wakers: IdMap<LocalId, Waker>,
    established_wakers: IdMap<LocalId, Waker>,
    accept_waker: Option<Waker>,
    open_wakers: Vec<Waker>,
    plain_recv_waker: Option<Waker>,
    plain_send_waker: Option<Waker>,
    driver_waker: Option<Waker>,
    pub(crate) plain_out: VecDeque<Transmit<A, T>>,
    pub(crate) listener_taken: bool,
    /// Set when the driver stopped (transport closed, failed, or `close()`).
    pub(crate) closed: Option<String>,
    close_requested: Option<CloseMode>,
    /// While draining: when the driver stops even if bytes are still unacknowledged.
    drain_until: Option<Instant>,
    /// Tasks waiting for the driver to stop.
    closed_wakers: Vec<Waker>,
}

/// The shared handle on a client's state.
pub(crate) struct Shared<A, T> {
    inner: Mutex<Inner<A, T>>,
    /// Live application handles of any kind (control handles, streams, halves, the
    /// listener). When it drops to zero the driver drains and stops.
    handles: AtomicUsize,
    /// Wakes the driver when the last handle goes (without taking the lock, since a
    /// handle may be dropped anywhere).
    handles_gone: AtomicWaker,
}

/// An application handle's reference to the shared state: counted, so that the
/// driver learns when the application holds none any more.
pub(crate) struct SharedRef<A, T>(Arc<Shared<A, T>>);

impl<A, T> SharedRef<A, T> {
    pub(crate) fn new(shared: Arc<Shared<A, T>>) -> Self {
        shared.handles.fetch_add(1, Ordering::AcqRel);
        Self(shared)
    }
}

impl<A, T> Clone for SharedRef<A, T> {
    fn clone(&self) -> Self {
        Self::new(self.0.clone())
    }
}

impl<A, T> Drop for SharedRef<A, T> {
    fn drop(&mut self) {
        if self.0.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.handles_gone.wake();
        }
    }
}

impl<A, T> std::ops::Deref for SharedRef<A, T> {
    type Target = Shared<A, T>;

    fn deref(&self) -> &Shared<A, T> {
        &self.0
    }
}

impl<A, T> Shared<A, T> {
    /// Locks the state. A poisoned lock (a panic elsewhere) is taken over: the state
    /// holds no invariant a panic could half-update across the lock.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner<A, T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<A, T> Inner<A, T>
where
    A: Copy + Eq + std::hash::Hash + std::fmt::Debug,
    T: Copy + Eq + std::hash::Hash + std::fmt::Debug,
{
    /// Wakes whoever waits for the events the core produced, and the driver.
    pub(crate) fn dispatch(&mut self) {
        while let Some(ev) = self.core.poll_event() {
            let w = match ev {
                Event::Incoming => self.accept_waker.take(),
                Event::Readable(id) => self.read_wakers.remove(&id),
                Event::Writable(id) => self.write_wakers.remove(&id),
                Event::Established(id) => self.established_wakers.remove(&id),
                Event::Plain => self.plain_recv_waker.take(),
                Event::OpenRoom => {
                    for w in self.open_wakers.drain(..) {
                        w.wake();
                    }
                    None
                }
            };
            if let Some(w) = w {
                w.wake();
            }
        }
        if let Some(w) = self.driver_waker.take() {
            w.wake();
        }
    }

    pub(crate) fn register_read(&mut self, id: LocalId, w: &Waker) {
        self.read_wakers.insert(id, w.clone());
    }

    pub(crate) fn register_write(&mut self, id: LocalId, w: &Waker) {
        self.write_wakers.insert(id, w.clone());
    }

    pub(crate) fn register_established(&mut self, id: LocalId, w: &Waker) {
        self.established_wakers.insert(id, w.clone());
    }

    pub(crate) fn register_accept(&mut self, w: &Waker) {
        self.accept_waker = Some(w.clone());
    }

    pub(crate) fn register_open(&mut self, w: &Waker) {
        if !self.open_wakers.iter().any(|o| o.will_wake(w)) {
            self.open_wakers.push(w.clone());
        }
    }

    pub(crate) fn register_plain_recv(&mut self, w: &Waker) {
        self.plain_recv_waker = Some(w.clone());
    }

    /// Drops the wakers a released half registered.
    pub(crate) fn forget(&mut self, id: LocalId, read: bool, write: bool) {
        if read {
            self.read_wakers.remove(&id);
        }
        if write {
            self.write_wakers.remove(&id);
            self.established_wakers.remove(&id);
        }
    }

    /// Queues a plain message; `false` (and the waker kept) when the queue is full.
    pub(crate) fn try_queue_plain(
        &mut self,
        t: Transmit<A, T>,
        w: &Waker,
    ) -> Result<(), Transmit<A, T>> {
        if self.plain_out.len() >= PLAIN_SEND_QUEUE {
            self.plain_send_waker = Some(w.clone());
            return Err(t);
        }
        self.plain_out.push_back(t);
        if let Some(w) = self.driver_waker.take() {
            w.wake();
        }
        Ok(())
    }

    /// Asks the driver to stop, at once or after draining. A request to stop now
    /// overrides a drain in progress.
    pub(crate) fn request_close(&mut self, mode: CloseMode) {
        if self.close_requested != Some(CloseMode::Now) {
            self.close_requested = Some(mode);
        }
        if let Some(w) = self.driver_waker.take() {
            w.wake();
        }
    }

    /// Registers a task waiting for the driver to stop.
    pub(crate) fn register_closed(&mut self, w: &Waker) {
        if !self.closed_wakers.iter().any(|o| o.will_wake(w)) {
            self.closed_wakers.push(w.clone());
        }
    }

    fn wake_everyone(&mut self) {
        for (_, w) in self.read_wakers.drain() {
            w.wake();
        }
        for (_, w) in self.write_wakers.drain() {
            w.wake();
        }
        for (_, w) in self.established_wakers.drain() {
            w.wake();
        }
        for w in self.open_wakers.drain(..) {
            w.wake();
        }
        for w in self.closed_wakers.drain(..) {
            w.wake();
        }
        for w in [
            self.accept_waker.take(),
            self.plain_recv_waker.take(),
            self.plain_send_waker.take(),
        ]
        .into_iter()
        .flatten()
        {
            w.wake();
        }
    }
}

/// Creates the shared state for a core.
pub(crate) fn shared<A, T>(mut core: Core<A, T>) -> Arc<Shared<A, T>>
where
    A: Copy + Eq + std::hash::Hash + std::fmt::Debug,
    T: Copy + Eq + std::hash::Hash + std::fmt::Debug,
{
    // Until the application takes the listener, nobody accepts: refuse opens at once
    // instead of letting them fill the backlog.
    core.set_listening(now(), false);
    Arc::new(Shared {
        inner: Mutex::new(Inner {
            core,
            read_wakers: IdMap::default(),
            write_wakers: IdMap::default(),
            established_wakers: IdMap::default(),
            accept_waker: None,
            open_wakers: Vec::new(),
            plain_recv_waker: None,
            plain_send_waker: None,
            driver_waker: None,
            plain_out: VecDeque::new(),
            listener_taken: false,
            closed: None,
            close_requested: None,
            drain_until: None,
            closed_wakers: Vec::new(),
        }),
        handles: AtomicUsize::new(0),
        handles_gone: AtomicWaker::new(),
    })
}

/// The shared state of a driver over transport `Tr`.
pub(crate) type SharedFor<Tr> =
    Arc<Shared<<Tr as Transport>::Address, <Tr as Transport>::SenderTag>>;

/// The router task of one client. Spawn it (or `.await` it) on a tokio runtime; it
/// finishes when the transport closes, fails, or the client is closed.
#[must_use = "the driver does nothing unless spawned or awaited"]
pub struct Driver<Tr: Transport> {
    transport: Tr,
    shared: SharedFor<Tr>,
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: Option<Instant>,
}

impl<Tr: Transport> Driver<Tr> {
    pub(crate) fn new(mut transport: Tr, cfg: MuxConfig) -> (Self, SharedFor<Tr>) {
        transport.set_queue_target(cfg.send_queue_target);
        let shared = shared(Core::new(cfg));
        let driver = Self {
            transport,
            shared: shared.clone(),
            sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            armed: None,
        };
        (driver, shared)
    }

    fn finish(
        &mut self,
        inner: &mut Inner<Tr::Address, Tr::SenderTag>,
        why: String,
    ) -> Poll<Result<(), TransportError>> {
        tracing::debug!(why = %why, "multiplexer driver stopped");
        inner.closed = Some(why);
        inner.wake_everyone();
        Poll::Ready(Ok(()))
    }
}

impl<Tr: Transport> Drop for Driver<Tr> {
    /// A router that is dropped (its task cancelled or panicked) before it finished
    /// must not leave handles waiting forever: they learn the client is closed.
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        if inner.closed.is_none() {
            inner.closed = Some("the router task stopped (dropped or panicked)".into());
            inner.wake_everyone();
        }
    }
}

impl<Tr: Transport + Unpin> Future for Driver<Tr> {
    type Output = Result<(), TransportError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let shared = this.shared.clone();
        shared.handles_gone.register(cx.waker());
        let mut inner = shared.lock();
        inner.driver_waker = Some(cx.waker().clone());
        if inner.closed.is_some() {
            return Poll::Ready(Ok(()));
        }
        // Rounds of this loop per poll: a deadline that is due again after its round
        // (time moved on while we worked) gets another round, but never an unbounded
        // number while we hold the lock; then the task yields.
        let mut rounds = 0;
        loop {
            rounds += 1;
            if inner.close_requested == Some(CloseMode::Now) {
                return this.finish(&mut inner, "the client was closed".into());
            }
            let now = now();

            // 1. Inbound messages, a batch at a time.
            let mut handled = 0;
            while handled < INBOUND_BATCH {
                match this.transport.poll_recv(cx) {
                    Poll::Ready(Some(msg)) => {
                        inner.core.handle_inbound(now, msg);
                        handled += 1;
                    }
                    Poll::Ready(None) => {
                        return this.finish(&mut inner, "the network closed".into());
                    }
                    Poll::Pending => break,
                }
            }

            if handled > 0 {
                if let Some(signal) = inner.core.poll_path_delay() {
                    if inner.core.config().delay_control {
                        this.transport.on_path_delay(signal);
                    }
                    inner.core.set_send_pace(this.transport.send_pace());
                }
            }

            // 2. Timers. The core's contract: afterwards no deadline is due at `now`.
            inner.core.handle_timeout(now);

            // 3. Output, while the transport takes it.
            let mut sent = 0;
            while sent < OUTBOUND_BATCH {
                match this.transport.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => {
                        return this.finish(&mut inner, format!("the network failed: {e}"));
                    }
                    Poll::Pending => break,
                }
                let next = match inner.plain_out.pop_front() {
                    Some(t) => {
                        if let Some(w) = inner.plain_send_waker.take() {
                            w.wake();
                        }
                        Some(t)
                    }
                    None => {
                        let transport = &this.transport;
                        inner
                            .core
                            .poll_transmit(now, &|tag| transport.surbs_available(tag))
                    }
                };
                let Some(t) = next else { break };
                if let Err(e) = this.transport.send(t.to, t.payload, t.reply_surbs) {
                    return this.finish(&mut inner, format!("the network refused a message: {e}"));
                }
                sent += 1;
            }

            // 4. Wake the application.
            let driver_waker = inner.driver_waker.take();
            inner.dispatch();
            inner.driver_waker = driver_waker;

            // Closing gracefully, or nobody holds a handle any more: stop once every
            // written byte is acknowledged, or when the drain time is up.
            let orphaned = shared.handles.load(Ordering::Acquire) == 0;
            if orphaned || inner.close_requested == Some(CloseMode::Drain) {
                let limit = inner.core.config().drain_timeout;
                let until = *inner.drain_until.get_or_insert(now + limit);
                let unacked = inner.core.unacknowledged_bytes();
                if unacked == 0 || now >= until {
                    let why = match (orphaned, unacked) {
                        (true, 0) => "every handle was dropped".to_string(),
                        (false, 0) => "the client was closed".to_string(),
                        (_, n) => format!(
                            "the client was closed with {n} bytes still unacknowledged \
                             after draining for {limit:?}"
                        ),
                    };
                    return this.finish(&mut inner, why);
                }
            }

            if handled == INBOUND_BATCH || sent == OUTBOUND_BATCH {
                // More may be waiting: let other tasks run first.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }

            // 5. Arm the timer for the next deadline.
            let deadline = match (inner.core.poll_timeout(), inner.drain_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match deadline {
                Some(deadline) => {
                    if this.armed != Some(deadline) {
                        this.armed = Some(deadline);
                        this.sleep
                            .as_mut()
                            .reset(tokio::time::Instant::from_std(deadline));
                    }
                    if this.sleep.as_mut().poll(cx).is_ready() {
                        this.armed = None;
                        if rounds < MAX_ROUNDS {
                            continue;
                        }
                        // Still due after several rounds: yield (releasing the lock)
                        // instead of spinning; the scheduler polls us again.
                        tracing::debug!(rounds, "deadline still due; driver yields");
                        cx.waker().wake_by_ref();
                    }
                }
                None => this.armed = None,
            }
            return Poll::Pending;
        }
    }
}

/// Builds a plain-message transmit.
pub(crate) fn plain_transmit<A, T>(
    to: Destination<A, T>,
    payload: Bytes,
    reply_surbs: u32,
) -> Transmit<A, T> {
    Transmit {
        to,
        payload,
        reply_surbs,
    }
}

/// A received plain message, as the application sees it.
pub type PlainMessage<T> = Inbound<T>;
