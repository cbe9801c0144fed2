//! Sender-tag binding, streams to ourselves, plain messages beside streams, and
//! opening under pressure.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::sim::SimTransport;
use common::{pair, pattern};
use lp_frame::{MessageType, StreamHeader};
use mixnet_sim::{Mixnet, SimConfig};
use mux::{Destination, MuxConfig, OpenError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(start_paused = true)]
async fn frames_from_another_sender_tag_never_reach_the_stream() {
    let (net, a, b) = pair(SimConfig::instant().with_seed(31), MuxConfig::default());
    let mut listener = b.listener().unwrap();
    let mut out = a.open_stream(b.local_address(), None).unwrap();
    out.write_all(b"genuine").await.unwrap();
    out.flush().await.unwrap();
    let mut inc = listener.accept().await.unwrap();
    let mut got = [0u8; 7];
    inc.read_exact(&mut got).await.unwrap();

    // An attacker who learned the stream id injects data for it: its messages carry
    // its own sender tag, so they are dropped and counted.
    let mut attacker = net.connect();
    let mut forged = StreamHeader::new(out.id(), MessageType::Data, 1)
        .to_bytes()
        .to_vec();
    forged.extend_from_slice(b"EVIL");
    for _ in 0..3 {
        attacker
            .send_anonymous(b.local_address(), Bytes::from(forged.clone()), 0)
            .unwrap();
    }
    // And as a regular message without any tag.
    attacker
        .send_regular(b.local_address(), Bytes::from(forged.clone()))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(b.metrics().wrong_sender, 4);

    out.write_all(b" bytes").await.unwrap();
    out.shutdown().await.unwrap();
    let mut rest = Vec::new();
    inc.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b" bytes");
}

#[tokio::test(start_paused = true)]
async fn a_client_can_open_a_stream_to_itself() {
    let net = Mixnet::new(SimConfig::realistic().with_seed(32));
    let me = mux::spawn(
        SimTransport::new(net.connect()),
        MuxConfig::default().with_id_seed(Some(5)),
    );
    let mut listener = me.listener().unwrap();
    let mut out = me.open_stream(me.local_address(), None).unwrap();
    let data = pattern(50_000, 3);
    out.write_all(&data).await.unwrap();
    out.shutdown().await.unwrap();
    let mut inc = listener.accept().await.unwrap();
    // Same wire id on both ends, two distinct table entries.
    assert_eq!(inc.id(), out.id());
    let mut got = Vec::new();
    inc.read_to_end(&mut got).await.unwrap();
    assert!(got == data);
    inc.write_all(b"reply to myself").await.unwrap();
    inc.shutdown().await.unwrap();
    let mut back = Vec::new();
    out.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"reply to myself");
}

#[tokio::test(start_paused = true)]
async fn plain_messages_flow_beside_streams_and_streams_stay_out_of_them() {
    let (_net, a, b) = pair(SimConfig::realistic().with_seed(33), MuxConfig::default());
    let mut listener = b.listener().unwrap();
    let mut out = a.open_stream(b.local_address(), None).unwrap();
    let data = pattern(20_000, 4);
    out.write_all(&data).await.unwrap();
    out.shutdown().await.unwrap();
    for i in 0..5u8 {
        a.send_plain(
            Destination::Address(b.local_address()),
            Bytes::from(vec![b'm', i]),
            0,
        )
        .await
        .unwrap();
    }
    let mut inc = listener.accept().await.unwrap();
    let mut got = Vec::new();
    inc.read_to_end(&mut got).await.unwrap();
    assert!(got == data);
    let mut plain = Vec::new();
    while plain.len() < 5 {
        let m = b.recv_plain().await.unwrap();
        plain.push(m.payload[1]);
    }
    plain.sort_unstable();
    assert_eq!(plain, vec![0, 1, 2, 3, 4]);
    // Nothing else arrived on the plain channel: no stream frame leaked there.
    assert_eq!(b.metrics().plain_messages, 5);
}

#[tokio::test(start_paused = true)]
async fn pending_opens_are_bounded_and_open_waits_for_room() {
    let cfg = MuxConfig::default().with_max_pending_opens(2);
    let (net, a, _b) = pair(SimConfig::realistic().with_seed(34), cfg.clone());
    // A peer that never answers: a client whose mux is not running.
    let silent = net.connect();
    let _s1 = a.open_stream(silent.address(), None).unwrap();
    let _s2 = a.open_stream(silent.address(), None).unwrap();
    match a.open_stream(silent.address(), None) {
        Err(OpenError::TooManyPendingOpens { limit: 2 }) => {}
        other => panic!("expected TooManyPendingOpens, got {other:?}"),
    }
    // The waiting variant waits, and gets room once a pending open resolves (here:
    // it times out after its retries and releases its slot).
    let waited = tokio::time::timeout(Duration::from_secs(1), a.open(silent.address(), None)).await;
    assert!(waited.is_err(), "open must wait while the limit is reached");
    let s3 = tokio::time::timeout(Duration::from_secs(3600), a.open(silent.address(), None))
        .await
        .expect("room appears once the unanswered opens fail")
        .unwrap();
    drop(s3);
}

#[tokio::test(start_paused = true)]
async fn opens_beyond_the_inbound_limit_are_refused_not_queued() {
    let cfg = MuxConfig::default()
        .with_max_inbound_streams(3)
        .with_max_pending_opens(100);
    let (_net, a, b) = pair(SimConfig::instant().with_seed(35), cfg);
    let _listener = b.listener().unwrap();
    let mut streams = Vec::new();
    for _ in 0..5 {
        streams.push(a.open_stream(b.local_address(), None).unwrap());
    }
    let mut refused = 0;
    for s in &streams {
        match s.wait_established().await {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
                assert_eq!(
                    mux::reset_code(&e),
                    Some(lp_frame::ext::reset_code::REFUSED)
                );
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 2);
    assert_eq!(b.metrics().opens_refused, 2);
}

/// `Drop` needs no runtime: a stream dropped after its runtime is gone (and outside
/// any runtime context) must not panic, and the state it leaves is consistent.
#[test]
fn dropping_a_stream_outside_any_runtime_does_not_panic() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let (handle, stream) = rt.block_on(async {
        let (_net, a, b) = pair(SimConfig::instant().with_seed(36), MuxConfig::default());
        let mut s = a.open_stream(b.local_address(), None).unwrap();
        s.write_all(b"unfinished").await.unwrap();
        (a, s)
    });
    drop(rt);
    // No runtime here: the drop only updates shared state.
    drop(stream);
    assert!(handle.metrics().live_streams <= 1);
}

fn assert_refused(e: &std::io::Error) {
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    assert_eq!(mux::reset_code(e), Some(lp_frame::ext::reset_code::REFUSED));
}

/// A client that never takes a listener refuses opens at once, a dropped listener
/// refuses what waited in its backlog, and a listener taken later accepts.
#[tokio::test(start_paused = true)]
async fn without_a_listener_opens_are_refused_and_a_later_listener_accepts() {
    let (_net, a, b) = pair(SimConfig::realistic().with_seed(37), MuxConfig::default());
    let s = a.open_stream(b.local_address(), None).unwrap();
    assert_refused(&s.wait_established().await.unwrap_err());
    assert_eq!(b.metrics().live_streams, 0);

    // A listener that is dropped with streams in its backlog refuses them.
    let listener = b.listener().unwrap();
    assert!(b.listener().is_none(), "one listener at a time");
    let mut s = a.open_stream(b.local_address(), None).unwrap();
    s.write_all(b"never read").await.unwrap();
    s.flush().await.unwrap();
    s.wait_established().await.unwrap();
    drop(listener);
    let err = s.read(&mut [0u8; 8]).await.unwrap_err();
    assert_refused(&err);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(b.metrics().live_streams, 0);

    // A new listener accepts again.
    let mut listener = b.listener().unwrap();
    let mut s = a.open_stream(b.local_address(), None).unwrap();
    s.write_all(b"hello").await.unwrap();
    s.shutdown().await.unwrap();
    let mut inc = listener.accept().await.unwrap();
    let mut got = Vec::new();
    inc.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"hello");
}
