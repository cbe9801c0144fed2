//! Keepalive pings and the idle timeout, on the simulated mixnet with a paused clock.

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use common::pair;
use mixnet_sim::SimConfig;
use mux::MuxConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn cfg() -> MuxConfig {
    MuxConfig::default()
        .with_keepalive_interval(Duration::from_secs(60))
        .with_keepalive_max_missed(3)
}

#[tokio::test(start_paused = true)]
async fn keepalive_keeps_a_quiet_stream_alive() {
    let (net, a, b) = pair(SimConfig::realistic().with_seed(11), cfg());
    let mut listener = b.listener().unwrap();
    let mut out = a.open_stream(b.local_address(), None).unwrap();
    out.write_all(b"hi").await.unwrap();
    out.flush().await.unwrap();
    let mut inc = listener.accept().await.unwrap();
    let mut buf = [0u8; 2];
    inc.read_exact(&mut buf).await.unwrap();
    // Ten quiet minutes: pings flow (counted as pings, not as any message), nobody
    // times out.
    let before = out.metrics().pings_sent + inc.metrics().pings_sent;
    tokio::time::sleep(Duration::from_secs(600)).await;
    let pings = out.metrics().pings_sent + inc.metrics().pings_sent - before;
    assert!(
        (5..=20).contains(&pings),
        "expected about one ping a minute, saw {pings}"
    );
    assert!(net.stats(&a.local_address()).is_some());
    inc.write_all(b"still here").await.unwrap();
    inc.flush().await.unwrap();
    let mut back = [0u8; 10];
    out.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"still here");
}

#[tokio::test(start_paused = true)]
async fn vanished_peer_fails_reads_after_missed_pings_in_order() {
    let (net, a, b) = pair(SimConfig::realistic().with_seed(12), cfg());
    let mut listener = b.listener().unwrap();
    let mut out = a.open_stream(b.local_address(), None).unwrap();
    out.write_all(b"x").await.unwrap();
    out.flush().await.unwrap();
    let mut inc = listener.accept().await.unwrap();
    inc.write_all(b"last words").await.unwrap();
    inc.flush().await.unwrap();
    let mut got = [0u8; 10];
    out.read_exact(&mut got).await.unwrap();
    // The listener's client disappears from the network.
    assert!(net.disconnect_client(&b.local_address()));
    let started = tokio::time::Instant::now();
    let err = out.read(&mut [0u8; 8]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    let waited = started.elapsed();
    // Three missed pings at 60 s intervals, then the failure.
    assert!(waited >= Duration::from_secs(180), "{waited:?}");
    assert!(waited <= Duration::from_secs(300), "{waited:?}");
}

/// An idle reap is not a clean end: neither side sent its FIN, so the peer may have had
/// bytes it could not send. Reads return what arrived, then `TimedOut` (never `Ok(0)`);
/// writes fail.
#[tokio::test(start_paused = true)]
async fn idle_timeout_reaps_and_reads_end_with_an_error() {
    let cfg = cfg().with_idle_timeout(Duration::from_secs(300));
    let (_net, a, b) = pair(SimConfig::realistic().with_seed(13), cfg);
    let mut listener = b.listener().unwrap();
    let mut out = a.open_stream(b.local_address(), None).unwrap();
    out.write_all(b"abc").await.unwrap();
    out.flush().await.unwrap();
    let mut inc = listener.accept().await.unwrap();
    let started = tokio::time::Instant::now();
    let mut got = [0u8; 3];
    inc.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"abc");
    let err = inc.read(&mut [0u8; 4]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(started.elapsed() >= Duration::from_secs(290));
    let err = inc.write_all(b"too late").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    let err = out.read(&mut [0u8; 4]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
}
