//! Extended and reference-format ("legacy") peers in every combination.

mod common;

use std::io::ErrorKind;

use common::sim::SimTransport;
use common::{pattern, Handle};
use mixnet_sim::{Mixnet, SimConfig};
use mux::MuxConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client(net: &Mixnet, legacy: bool, seed: u64) -> Handle {
    let cfg = MuxConfig::default()
        .with_legacy_mode(legacy)
        .with_id_seed(Some(seed));
    mux::spawn(SimTransport::new(net.connect()), cfg)
}

/// Moves `len` bytes each way (sizes known up front: a reference peer has no FIN).
async fn exchange(opener_legacy: bool, listener_legacy: bool, sim: SimConfig, len: usize) {
    let net = Mixnet::new(sim);
    let a = client(&net, opener_legacy, 1);
    let b = client(&net, listener_legacy, 2);
    let mut listener = b.listener().unwrap();
    let up = pattern(len, 1);
    let down = pattern(len, 2);
    let mut out = a.open_stream(b.local_address(), None).unwrap();
    out.write_all(&up).await.unwrap();
    out.flush().await.unwrap();
    let mut inc = listener.accept().await.unwrap();
    let mut got = vec![0u8; len];
    inc.read_exact(&mut got).await.unwrap();
    assert!(got == up, "opener → listener bytes differ");
    inc.write_all(&down).await.unwrap();
    inc.flush().await.unwrap();
    let mut back = vec![0u8; len];
    out.read_exact(&mut back).await.unwrap();
    assert!(back == down, "listener → opener bytes differ");

    let ma = out.metrics();
    let mb = inc.metrics();
    let extended = !opener_legacy && !listener_legacy;
    if extended {
        assert!(ma.acks_received > 0 && mb.acks_received > 0);
        // With both extended, FIN works.
        out.shutdown().await.unwrap();
        let mut rest = Vec::new();
        inc.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    } else {
        // Reference semantics: nobody sends or expects acks.
        assert_eq!(
            ma.acks_sent + ma.acks_received + mb.acks_sent + mb.acks_received,
            0
        );
        assert_eq!(ma.retransmits + mb.retransmits, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn extended_to_extended() {
    exchange(false, false, SimConfig::realistic().with_seed(21), 100_000).await;
}

#[tokio::test(start_paused = true)]
async fn extended_opener_legacy_listener() {
    exchange(false, true, SimConfig::realistic().with_seed(22), 100_000).await;
}

#[tokio::test(start_paused = true)]
async fn legacy_opener_extended_listener() {
    exchange(true, false, SimConfig::realistic().with_seed(23), 100_000).await;
}

#[tokio::test(start_paused = true)]
async fn legacy_to_legacy() {
    exchange(true, true, SimConfig::realistic().with_seed(24), 50_000).await;
}

/// A reference peer does not retransmit: when the network loses a message for good,
/// the gap outgrows the reorder buffer and the stream fails with InvalidData after
/// the bytes before the gap, instead of skipping it silently.
#[tokio::test(start_paused = true)]
async fn legacy_gap_fails_with_invalid_data() {
    use bytes::Bytes;
    use lp_frame::{MessageType, StreamHeader, StreamId};

    let net = Mixnet::new(SimConfig::instant().with_seed(25));
    let b = client(&net, false, 2);
    let mut listener = b.listener().unwrap();
    // A hand-driven reference peer: Open without the capability bit, then Data with
    // seq 1 missing.
    let mut peer = net.connect();
    let id = StreamId::new(77);
    let frame = |t, seq, body: &[u8]| {
        let mut v = StreamHeader::new(id, t, seq).to_bytes().to_vec();
        v.extend_from_slice(body);
        Bytes::from(v)
    };
    peer.send_anonymous(b.local_address(), frame(MessageType::Open, 0, b""), 10)
        .unwrap();
    peer.send_anonymous(b.local_address(), frame(MessageType::Data, 0, b"first"), 0)
        .unwrap();
    let mut inc = listener.accept().await.unwrap();
    let chunk = vec![7u8; 1000];
    // More than the legacy receive buffer (1 MiB) behind the gap.
    for seq in 2..1200 {
        peer.send_anonymous(b.local_address(), frame(MessageType::Data, seq, &chunk), 0)
            .unwrap();
        tokio::task::yield_now().await;
    }
    let mut first = [0u8; 5];
    inc.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"first");
    let err = inc.read(&mut [0u8; 16]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    // Memory stayed bounded by the legacy receive buffer.
    assert!(b.metrics().inbound_bytes <= 1024 * 1024 + 1585);
}

/// With a reference peer nothing is ever acknowledged, so room in the send buffer
/// frees as frames leave: a writer far ahead of `send_buffer` must keep going.
#[tokio::test(start_paused = true)]
async fn legacy_writer_beyond_the_send_buffer_is_not_stuck() {
    // Realistic pacing, so the reader keeps up (a reference peer has no flow control)
    // while the writer fills the network's send queue and then our send buffer.
    // No loss: a reference peer cannot repair the long gaps the network's own
    // retransmissions cause (tested above); this test is about the writer.
    let mut sim = SimConfig::realistic().with_seed(26);
    sim.loss_probability = 0.0;
    let net = Mixnet::new(sim);
    let a = client(&net, true, 1);
    let b = client(&net, true, 2);
    let mut listener = b.listener().unwrap();
    let len = 10 * 256 * 1024;
    let data = pattern(len, 9);
    let sent = data.clone();
    let to = b.local_address();
    let writer = tokio::spawn(async move {
        let mut out = a.open_stream(to, None).unwrap();
        out.write_all(&sent).await.unwrap();
        out.flush().await.unwrap();
        (a, out)
    });
    let mut inc = listener.accept().await.unwrap();
    let mut got = vec![0u8; len];
    tokio::time::timeout(
        std::time::Duration::from_secs(3600),
        inc.read_exact(&mut got),
    )
    .await
    .expect("the legacy writer stalled")
    .unwrap();
    assert!(got == data);
    let _ = writer.await.unwrap();
}

/// `closed()` returns once everything was sent when the peer is a reference peer
/// (which never acknowledges).
#[tokio::test(start_paused = true)]
async fn closed_returns_with_a_reference_peer() {
    let net = Mixnet::new(SimConfig::realistic().with_seed(81));
    let a = client(&net, false, 1);
    let b = client(&net, true, 2);
    let _listener = b.listener().unwrap();
    let mut s = a.open_stream(b.local_address(), None).unwrap();
    s.wait_established().await.unwrap();
    s.write_all(b"hello, reference peer").await.unwrap();
    s.flush().await.unwrap();
    // The data is out; the FIN (which a reference peer never sees) is all that is left.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    s.shutdown().await.unwrap();
    // Within seconds: the write side ends when the OpenAck shows a reference peer.
    tokio::time::timeout(std::time::Duration::from_secs(10), s.closed())
        .await
        .expect("closed() returned")
        .unwrap();
}
