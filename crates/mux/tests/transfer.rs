//! Byte-exact transfers over the simulated mixnet.

mod common;

use common::{one_way, pair, pattern};
use mixnet_sim::SimConfig;
use mux::MuxConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(start_paused = true)]
async fn instant_small() {
    one_way(
        SimConfig::instant().with_seed(1),
        MuxConfig::default(),
        10_000,
        1,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn realistic_256k() {
    one_way(
        SimConfig::realistic().with_seed(2),
        MuxConfig::default(),
        256 * 1024,
        2,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn realistic_1m_stats() {
    let (net, a, b) = pair(SimConfig::realistic().with_seed(3), MuxConfig::default());
    let mut listener = b.listener().unwrap();
    let data = pattern(1 << 20, 7);
    let sent = data.clone();
    let to = b.local_address();
    let w = tokio::spawn(async move {
        let mut s = a.open_stream(to, None).unwrap();
        s.write_all(&sent).await.unwrap();
        s.shutdown().await.unwrap();
        let m = s.metrics();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        (a, m)
    });
    let mut s = listener.accept().await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert!(got == data);
    s.shutdown().await.unwrap();
    let (a, m) = w.await.unwrap();
    let sa = net.stats(&a.local_address()).unwrap();
    let sb = net.stats(&b.local_address()).unwrap();
    // 1 MiB at 1604 message bytes per packet needs 654 packets; the opener also pays
    // for the reply SURBs behind the listener's acks and for rare resends.
    let ideal = (1u64 << 20).div_ceil(1604);
    assert!(
        sa.packets_sent < ideal * 13 / 10,
        "opener spent {} packets for {} ideal",
        sa.packets_sent,
        ideal
    );
    // Acks are delayed and coalesced: far fewer than one per data frame.
    assert!(sb.messages_sent < sa.messages_sent / 4, "{sb:?}");
    assert!(m.retransmits < m.frames_sent / 10, "{m:?}");
}

/// On a network without delay, a bulk transfer must never wait for a timer (ack
/// delay, coalescing, retransmission): any simulated time that passes is a stall.
/// This caught a sender waiting a whole `ack_delay` on its initial credit.
#[tokio::test(start_paused = true)]
async fn instant_bulk_transfer_never_waits_for_a_timer() {
    let start = tokio::time::Instant::now();
    one_way(
        SimConfig::instant().with_seed(4),
        MuxConfig::default(),
        4 << 20,
        4,
    )
    .await;
    let waited = start.elapsed();
    assert!(
        waited < std::time::Duration::from_millis(50),
        "simulated time passed: {waited:?}"
    );
}

/// `poll_read` copies straight into the caller's buffer, uninitialised memory included:
/// after reading 3,000 bytes into a 64 KiB `ReadBuf::uninit`, exactly those bytes are
/// initialised (zeroing the rest first would cost a memset of the whole buffer per read).
#[tokio::test(start_paused = true)]
async fn a_read_into_uninitialised_memory_zeroes_nothing() {
    use std::mem::MaybeUninit;
    use tokio::io::{AsyncRead, ReadBuf};

    let (_net, a, b) = pair(SimConfig::instant().with_seed(4), MuxConfig::default());
    let mut listener = b.listener().unwrap();
    let data = pattern(3_000, 9);
    let mut s = a.open_stream(b.local_address(), None).unwrap();
    s.write_all(&data).await.unwrap();
    s.shutdown().await.unwrap();
    let mut r = listener.accept().await.unwrap();
    let mut storage = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
    let mut buf = ReadBuf::uninit(&mut storage);
    while buf.filled().len() < data.len() {
        let before = buf.filled().len();
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut r).poll_read(cx, &mut buf))
            .await
            .unwrap();
        assert!(buf.filled().len() > before, "EOF before all the data");
    }
    assert!(buf.filled() == &data[..]);
    assert_eq!(
        buf.initialized().len(),
        data.len(),
        "nothing beyond the data"
    );
}
