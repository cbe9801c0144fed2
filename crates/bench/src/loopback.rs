//! A zero-cost in-memory transport: two endpoints whose messages go straight into each
//! other's queue, with no packets, pacing or SURB accounting. Running the multiplexer on
//! it shows the stream layer's own cost apart from any network model's.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use mux::{Destination, Inbound, SenderTag, Transport, TransportError};

#[derive(Default)]
struct Inbox {
    queue: VecDeque<Inbound<SenderTag>>,
    waker: Option<Waker>,
    /// The other end is gone: `poll_recv` ends once the queue is empty.
    closed: bool,
}

type Shared = Arc<Mutex<Inbox>>;

/// One end of a loopback link; addresses are `0` and `1`.
pub struct Loopback {
    me: u8,
    mine: Shared,
    theirs: Shared,
}

impl Loopback {
    /// Two connected ends: messages one sends, the other receives, in order.
    pub fn pair() -> (Loopback, Loopback) {
        let (a, b) = (Shared::default(), Shared::default());
        (
            Loopback {
                me: 0,
                mine: Arc::clone(&a),
                theirs: Arc::clone(&b),
            },
            Loopback {
                me: 1,
                mine: b,
                theirs: a,
            },
        )
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        let waker = {
            let mut t = self.theirs.lock().unwrap_or_else(|e| e.into_inner());
            t.closed = true;
            t.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Transport for Loopback {
    type Address = u8;
    type SenderTag = SenderTag;

    fn local_address(&self) -> u8 {
        self.me
    }

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Poll::Ready(Ok(()))
    }

    fn send(
        &mut self,
        to: Destination<u8, SenderTag>,
        payload: Bytes,
        _reply_surbs: u32,
    ) -> Result<(), TransportError> {
        // Anonymous messages carry the sender's tag; replies carry none.
        let sender_tag = match to {
            Destination::Address(_) => Some(SenderTag([self.me; 16])),
            Destination::Reply(_) => None,
        };
        let waker = {
            let mut t = self.theirs.lock().unwrap_or_else(|e| e.into_inner());
            t.queue.push_back(Inbound {
                payload,
                sender_tag,
            });
            t.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound<SenderTag>>> {
        let mut m = self.mine.lock().unwrap_or_else(|e| e.into_inner());
        match m.queue.pop_front() {
            Some(msg) => Poll::Ready(Some(msg)),
            None if m.closed => Poll::Ready(None),
            None => {
                match &m.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => m.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// Replies never run out of SURBs here.
    fn surbs_available(&self, _tag: &SenderTag) -> Option<u32> {
        Some(u32::MAX / 2)
    }
}
