//! The fault-injecting transport wrapper: each fault on a hand-fed transport, then a
//! byte-exact transfer through it over the simulated mixnet with loss, duplication and
//! reordering on top of the network's own.

mod common;

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use common::{pattern, sim::SimTransport};
use mixnet_sim::{Mixnet, SimConfig};
use mux::{Destination, FaultInjector, Faults, Inbound, MuxConfig, Transport, TransportError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A transport fed by hand: `inbox` is what it receives, `sent` what was sent.
#[derive(Default)]
struct Manual {
    inbox: VecDeque<Inbound<u8>>,
    sent: Vec<Bytes>,
    closed: bool,
}

impl Transport for Manual {
    type Address = u8;
    type SenderTag = u8;

    fn local_address(&self) -> u8 {
        0
    }

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Poll::Ready(Ok(()))
    }

    fn send(
        &mut self,
        _to: Destination<u8, u8>,
        payload: Bytes,
        _surbs: u32,
    ) -> Result<(), TransportError> {
        self.sent.push(payload);
        Ok(())
    }

    fn poll_recv(&mut self, _cx: &mut Context<'_>) -> Poll<Option<Inbound<u8>>> {
        match self.inbox.pop_front() {
            Some(m) => Poll::Ready(Some(m)),
            None if self.closed => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

fn manual(n: u8) -> Manual {
    let mut m = Manual::default();
    for i in 0..n {
        m.inbox.push_back(Inbound {
            payload: Bytes::from(vec![i]),
            sender_tag: None,
        });
    }
    m
}

/// Everything received until the transport would wait (or ended).
fn drain<Tr: Transport<SenderTag = u8>>(t: &mut Tr) -> Vec<u8> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut got = Vec::new();
    while let Poll::Ready(Some(m)) = t.poll_recv(&mut cx) {
        got.push(m.payload[0]);
    }
    got
}

#[test]
fn no_faults_pass_everything_through_in_order() {
    let mut t = FaultInjector::new(manual(50), Faults::default());
    assert_eq!(drain(&mut t), (0..50).collect::<Vec<_>>());
    for i in 0..10u8 {
        t.send(Destination::Address(1), Bytes::from(vec![i]), 0)
            .unwrap();
    }
    assert_eq!(t.inner().sent.len(), 10);
}

#[test]
fn loss_drops_about_its_share_both_ways() {
    let mut t = FaultInjector::new(manual(200), Faults::default().with_loss(0.25).with_seed(3));
    let got = drain(&mut t);
    for i in 0..200u8 {
        t.send(Destination::Reply(1), Bytes::from(vec![i]), 0)
            .unwrap();
    }
    let s = t.stats();
    assert_eq!(got.len() as u64, 200 - s.recvs_dropped);
    assert_eq!(t.inner().sent.len() as u64, 200 - s.sends_dropped);
    // 25 % of 200, within a wide margin for the draw.
    assert!((25..=75).contains(&s.recvs_dropped), "{s:?}");
    assert!((25..=75).contains(&s.sends_dropped), "{s:?}");
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "loss alone keeps the order"
    );
}

#[test]
fn duplication_delivers_the_twin_right_after_its_original() {
    let mut t = FaultInjector::new(manual(20), Faults::default().with_duplication(1.0));
    let got = drain(&mut t);
    let want: Vec<u8> = (0..20).flat_map(|i| [i, i]).collect();
    assert_eq!(got, want);
    assert_eq!(t.stats().recvs_duplicated, 20);
}

#[tokio::test(start_paused = true)]
async fn delay_holds_messages_back_and_reorders_them() {
    let mut inner = manual(100);
    inner.closed = true;
    let faults = Faults::default()
        .with_delay(Duration::from_millis(0), Duration::from_millis(500))
        .with_seed(9);
    let mut t = FaultInjector::new(inner, faults);
    let mut got = Vec::new();
    while let Some(m) = std::future::poll_fn(|cx| t.poll_recv(cx)).await {
        got.push(m.payload[0]);
    }
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..100).collect::<Vec<_>>(),
        "each message exactly once"
    );
    assert_ne!(
        got, sorted,
        "a 500 ms spread reorders back-to-back messages"
    );
    assert_eq!(t.stats().recvs_delayed, 100);
}

#[tokio::test(start_paused = true)]
async fn held_messages_are_bounded() {
    let mut inner = manual(50);
    inner.closed = true;
    let mut faults = Faults::default().with_delay(Duration::from_secs(60), Duration::from_secs(60));
    faults.max_held = 10;
    let mut t = FaultInjector::new(inner, faults);
    let mut cx = Context::from_waker(Waker::noop());
    // The first 10 are held for a minute; the other 40 pass at once.
    let mut now = Vec::new();
    while let Poll::Ready(Some(m)) = t.poll_recv(&mut cx) {
        now.push(m.payload[0]);
    }
    assert_eq!(now, (10..50).collect::<Vec<_>>());
    assert_eq!(t.stats().recvs_delayed, 10);
}

/// A stream through fault injectors on both clients (20 % loss each way, 5 %
/// duplication, up to 400 ms of extra reordering) on top of the realistic network
/// still delivers every byte in order, then EOF.
#[tokio::test(start_paused = true)]
async fn a_stream_survives_injected_loss_duplication_and_reordering() {
    let net = Mixnet::new(SimConfig::realistic().with_seed(21));
    let faults = |seed| {
        Faults::default()
            .with_loss(0.2)
            .with_duplication(0.05)
            .with_delay(Duration::ZERO, Duration::from_millis(400))
            .with_seed(seed)
    };
    let a = mux::spawn(
        FaultInjector::new(SimTransport::new(net.connect()), faults(1)),
        MuxConfig::default().with_id_seed(Some(1)),
    );
    let b = mux::spawn(
        FaultInjector::new(SimTransport::new(net.connect()), faults(2)),
        MuxConfig::default().with_id_seed(Some(2)),
    );
    let mut listener = b.listener().unwrap();
    let data = pattern(128 * 1024, 5);
    let sent = data.clone();
    let to = b.local_address();
    let writer = tokio::spawn(async move {
        let mut s = a.open_stream(to, None).unwrap();
        s.write_all(&sent).await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        let m = s.metrics();
        (a, m)
    });
    let mut s = listener.accept().await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert!(
        got == data,
        "bytes differ ({} of {})",
        got.len(),
        data.len()
    );
    s.shutdown().await.unwrap();
    let (_a, m) = writer.await.unwrap();
    assert!(
        m.retransmits > 0,
        "20 % loss must have cost retransmissions: {m:?}"
    );
    assert!(
        s.metrics().duplicates > 0,
        "duplicates were injected: {:?}",
        s.metrics()
    );
}
