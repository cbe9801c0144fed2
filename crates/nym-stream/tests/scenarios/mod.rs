//! Stream scenarios shared by the tests of every network (the simulator and the
//! offline nym-sdk fake).
#![allow(dead_code)]

use std::io::ErrorKind;

use nym_stream::frame::ext::reset_code;
use nym_stream::mixnet::{reset_code_of, MixnetClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Half-close both ways, a reset with an application code, and a stream dropped
/// without shutdown (its data, then an error, never a clean EOF), from `c` to `server`.
pub(crate) async fn close_reset_and_drop(c: &mut MixnetClient, server: &mut MixnetClient) {
    let to = *server.nym_address();
    let mut listener = server.listener().unwrap();

    // Half-close: EOF after the data, the other direction still works.
    let mut s = c.open_stream(to, None).await.unwrap();
    s.write_all(b"request").await.unwrap();
    s.shutdown().await.unwrap();
    let mut inc = listener.accept().await.unwrap();
    let mut req = Vec::new();
    inc.read_to_end(&mut req).await.unwrap();
    assert_eq!(req, b"request");
    inc.write_all(b"response").await.unwrap();
    inc.shutdown().await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    assert_eq!(resp, b"response");

    // Reset with an application code.
    let code = reset_code::APPLICATION_MIN + 3;
    let s = c.open_stream(to, None).await.unwrap();
    s.wait_established().await.unwrap();
    let mut inc = listener.accept().await.unwrap();
    s.reset(code);
    let mut buf = [0u8; 4];
    let err = inc.read(&mut buf).await.expect_err("reset");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    assert_eq!(reset_code_of(&err), Some(code));

    // Dropped without shutdown: data, then an error (never a clean EOF).
    let mut s = c.open_stream(to, None).await.unwrap();
    s.write_all(b"partial").await.unwrap();
    drop(s);
    let mut inc = listener.accept().await.unwrap();
    let mut got = Vec::new();
    let err = inc
        .read_to_end(&mut got)
        .await
        .expect_err("not a clean EOF");
    assert_eq!(got, b"partial");
    assert_eq!(reset_code_of(&err), Some(reset_code::CANCELLED));
}

/// `disconnect()` right after `shutdown()`: nym's own `disconnect` discards whatever its
/// client still queues, so ours first drains (the router runs until the peer acknowledged
/// every byte and the FIN, within `drain_timeout`) and only then leaves. The peer reads
/// every byte and the end of the stream before `disconnect` returns, within 10 s (about a
/// round trip), not minutes later from its keepalives.
pub(crate) async fn disconnect_right_after_shutdown(
    mut opener: MixnetClient,
    server: &mut MixnetClient,
) {
    use tokio::time::{Duration, Instant};
    let mut listener = server.listener().expect("listener");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut s = listener.accept().await.expect("a stream");
        let mut got = Vec::new();
        let outcome = s.read_to_end(&mut got).await.map(|_| got);
        let _ = tx.send((outcome, Instant::now()));
    });
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
    let mut s = opener
        .open_stream(*server.nym_address(), None)
        .await
        .expect("open");
    s.write_all(&data).await.expect("write");
    s.shutdown().await.expect("FIN");
    let left_at = Instant::now();
    opener.disconnect().await;
    let gone_at = Instant::now();
    let (outcome, eof_at) = rx.await.expect("the server task reports");
    let got = outcome.expect("a clean end of stream, not an error");
    assert!(got == data, "every byte, then EOF");
    let eof_after = eof_at.saturating_duration_since(left_at);
    assert!(
        eof_after < Duration::from_secs(10),
        "EOF {eof_after:?} after shutdown"
    );
    assert!(eof_at <= gone_at, "the peer had the FIN before we left");
}

/// A peer whose gateway vanished (`vanish` takes `server`'s client off the network
/// mid-stream): nothing acknowledges `opener`'s packets any more. nym's client would retry
/// anonymous messages forever; our adapters let it retry each packet at most
/// `ANONYMOUS_MAX_RETRANSMISSIONS` times. The stream gives up on its keepalives with a
/// clear error, and then nothing more leaves (`opener_stats`: its network statistics).
pub(crate) async fn peer_gateway_vanishes(
    opener: &mut MixnetClient,
    server: &mut MixnetClient,
    vanish: impl FnOnce(),
    opener_stats: impl Fn() -> mixnet_sim::ClientStats,
) {
    use tokio::time::{Duration, Instant};
    let mut listener = server.listener().expect("listener");
    tokio::spawn(async move {
        while let Some(s) = listener.accept().await {
            let (mut rd, mut wr) = tokio::io::split(s);
            let _ = tokio::io::copy(&mut rd, &mut wr).await;
        }
    });
    let mut s = opener
        .open_stream(*server.nym_address(), None)
        .await
        .expect("open");
    s.write_all(b"ping").await.expect("write");
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo)
        .await
        .expect("echo while the peer is there");

    vanish();
    let start = Instant::now();
    let data = vec![7u8; 64 * 1024];
    let outcome = tokio::time::timeout(Duration::from_secs(3600), async {
        s.write_all(&data).await?;
        s.flush().await?;
        let mut buf = [0u8; 1];
        s.read(&mut buf).await
    })
    .await
    .expect("the stream fails instead of hanging");
    let err = outcome.expect_err("nobody answers");
    let failed_after = start.elapsed();
    // Keepalives find the peer gone: 3 missed pings of 60 s after the last frame.
    assert!(
        failed_after <= Duration::from_secs(300),
        "failed after {failed_after:?}: {err}"
    );
    assert!(err.to_string().contains("unreachable or gone"), "{err}");

    // What was still being retried runs out within 10 retransmissions (~20 s); after
    // that, nothing is sent to the vanished peer.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let settled = opener_stats();
    tokio::time::sleep(Duration::from_secs(600)).await;
    let later = opener_stats();
    assert_eq!(later.packets_sent, settled.packets_sent, "sending stopped");
    assert!(later.messages_dropped > 0, "the network gave copies up");
    let first_sends = later.packets_sent - later.packets_retransmitted;
    let limit = u64::from(nym_stream::ANONYMOUS_MAX_RETRANSMISSIONS);
    assert!(
        later.packets_retransmitted <= first_sends * limit,
        "each packet retried at most the limit"
    );
}
