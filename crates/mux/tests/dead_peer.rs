//! A peer that never answers, at every level: the sans-IO core keeps its timer
//! contract, and a driver on a real (current-thread) runtime fails the stream with
//! `TimedOut` and keeps serving everything else.

mod common;

use std::io::ErrorKind;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::wire::{assert_timer_contract, Fate, Wire, A, B};
use lp_frame::MessageType;
use mux::{Core, Destination, Inbound, MuxConfig, Transport, TransportError};

/// Runs the core against silence until the open fails, checking the timer contract
/// after every timeout; returns the time it took.
#[test]
fn an_unanswered_open_fails_and_its_timer_moves_on() {
    let cfg = MuxConfig::default().with_max_retransmits(3);
    let mut core = Core::<u8, u8>::new(cfg);
    let t0 = Instant::now();
    let mut now = t0;
    let (local, _) = core.open(now, 9, None).unwrap();
    let mut opens = 0;
    for _ in 0..1000 {
        while let Some(t) = core.poll_transmit(now, &|_| None) {
            assert_eq!(t.to, Destination::Address(9));
            opens += 1;
        }
        if core.established(local).is_err() {
            break;
        }
        let Some(next) = core.poll_timeout() else {
            panic!("an unestablished stream must have a timer");
        };
        now = now.max(next);
        core.handle_timeout(now);
        assert_timer_contract(&mut core, now, "opener");
    }
    let err = core.established(local).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert_eq!(opens, 3, "the Open is sent max_retransmits times");
    // Keeping the handle (the normal case) must not leave a due timer behind.
    for _ in 0..3 {
        match core.poll_timeout() {
            None => break,
            Some(next) => {
                assert!(next > now, "a failed open left a deadline in the past");
                now = next;
                core.handle_timeout(now);
                assert_timer_contract(&mut core, now, "opener");
            }
        }
    }
    // The client still opens streams.
    assert!(core.open(now, 9, None).is_ok());
}

/// A lingering stream whose re-acknowledgement cannot go out (the transport is not
/// ready) must not keep an expired linger deadline.
#[test]
fn linger_with_an_ack_due_under_backpressure_keeps_the_timer_contract() {
    let mut w = Wire::default_pair();
    let (la, lb) = w.open_pair();
    w.write_all(A, la, b"bye");
    w.shutdown(A, la);
    w.shutdown(B, lb);
    w.pump();
    w.drop_handle(A, la);
    w.drop_handle(B, lb);
    w.pump();
    // B lingers to re-acknowledge A's FIN. A's FIN arrives again (a retransmission):
    // B owes an ack, but its transport takes nothing for a while.
    let fin = w
        .log
        .iter()
        .rev()
        .find(|p| p.from == A && p.kind() == MessageType::Close)
        .cloned()
        .expect("A sent its FIN");
    w.deliver(fin);
    let linger = MuxConfig::default().linger;
    let mut now = w.now;
    let end = now + linger * 3;
    while now < end {
        let Some(next) = w.b.poll_timeout() else {
            break;
        };
        now = next;
        w.b.handle_timeout(now);
        assert_timer_contract(&mut w.b, now, "B");
    }
    // Once the transport takes the ack, the stream leaves the table.
    w.now = now;
    w.run_with(linger * 2, &mut |_| Fate::Deliver, &mut |w| {
        w.b.stream_count() == 0
    });
    assert_eq!(w.b.stream_count(), 0);
}

/// A transport that takes every message and delivers nothing: a peer that is gone.
struct BlackHole {
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Transport for BlackHole {
    type Address = u8;
    type SenderTag = u8;

    fn local_address(&self) -> u8 {
        1
    }

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Poll::Ready(Ok(()))
    }

    fn send(
        &mut self,
        _to: Destination<u8, u8>,
        _payload: Bytes,
        _reply_surbs: u32,
    ) -> Result<(), TransportError> {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn poll_recv(&mut self, _cx: &mut Context<'_>) -> Poll<Option<Inbound<u8>>> {
        Poll::Pending
    }
}

/// Runs `f` on a current-thread runtime with a paused clock on its own thread and
/// fails the test if it does not finish within `limit` of wall time (a driver that
/// spins holding the thread never lets the paused clock move).
fn run_bounded<F, Fut>(limit: Duration, f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(f());
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("the runtime made no progress for {limit:?} of wall time (a driver spins)")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the test body panicked"),
    }
}

#[test]
fn a_driver_whose_open_is_never_answered_keeps_working() {
    run_bounded(Duration::from_secs(30), || async {
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let cfg = MuxConfig::default().with_max_retransmits(3);
        let handle = mux::spawn(BlackHole { sent: sent.clone() }, cfg);
        let stream = handle.open_stream(2, None).unwrap();
        let err = stream.wait_established().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        // Keep `stream` alive; the client must go on serving: time moves, a second
        // open is sent, plain messages go out.
        let before = sent.load(std::sync::atomic::Ordering::Relaxed);
        let second = handle.open_stream(2, None).unwrap();
        handle
            .send_plain(Destination::Address(2), Bytes::from_static(b"hi"), 0)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(sent.load(std::sync::atomic::Ordering::Relaxed) >= before + 2);
        let err = second.wait_established().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        drop(stream);
    });
}

/// A black hole that records when it is dropped (the driver released it).
struct Tracked {
    hole: BlackHole,
    dropped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.dropped
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

impl Transport for Tracked {
    type Address = u8;
    type SenderTag = u8;

    fn local_address(&self) -> u8 {
        self.hole.local_address()
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        self.hole.poll_ready(cx)
    }

    fn send(
        &mut self,
        to: Destination<u8, u8>,
        payload: Bytes,
        reply_surbs: u32,
    ) -> Result<(), TransportError> {
        self.hole.send(to, payload, reply_surbs)
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound<u8>>> {
        self.hole.poll_recv(cx)
    }
}

fn tracked() -> (Tracked, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t = Tracked {
        hole: BlackHole {
            sent: Default::default(),
        },
        dropped: dropped.clone(),
    };
    (t, dropped)
}

/// When the application drops every handle of a client, the driver stops and
/// releases the transport: at once when nothing is left to deliver, after the drain
/// timeout when bytes are still unacknowledged (here: by a peer that is gone).
#[tokio::test(start_paused = true)]
async fn dropping_every_handle_stops_the_driver_after_draining() {
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncWriteExt;

    let (t, dropped) = tracked();
    let handle = mux::spawn(t, MuxConfig::default());
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(handle);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        dropped.load(Ordering::Acquire),
        "an idle client was not released"
    );

    let drain = Duration::from_secs(5);
    let (t, dropped) = tracked();
    let handle = mux::spawn(t, MuxConfig::default().with_drain_timeout(drain));
    let mut s = handle.open_stream(2, None).unwrap();
    s.write_all(b"nobody will acknowledge this").await.unwrap();
    s.shutdown().await.unwrap();
    drop(s);
    drop(handle);
    tokio::time::sleep(drain - Duration::from_secs(1)).await;
    assert!(!dropped.load(Ordering::Acquire), "stopped before draining");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        dropped.load(Ordering::Acquire),
        "the driver outlived its handles"
    );
}

/// A router that is dropped before it finished (a cancelled task) tells every handle:
/// nobody waits forever.
#[tokio::test(start_paused = true)]
async fn a_dropped_router_closes_the_client() {
    let (t, _dropped) = tracked();
    let (handle, driver) = mux::new(t, MuxConfig::default());
    let s = handle.open_stream(2, None).unwrap();
    drop(driver);
    tokio::time::timeout(Duration::from_secs(1), handle.closed())
        .await
        .expect("closed() returned");
    assert!(handle.is_closed());
    assert!(s.wait_established().await.is_err());
}
