//! Integration tests over the simulated mixnet through the tokio driver (paused
//! clock, fixed seeds): large and many-stream transfers, half-close, reset, a reader
//! that never reads, loss and the hostile preset.

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use common::{one_way, pair, pattern, Handle};
use lp_frame::ext::reset_code;
use mixnet_sim::SimConfig;
use mux::MuxConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(start_paused = true)]
async fn eight_mib_on_one_stream_instant() {
    one_way(
        SimConfig::instant().with_seed(10),
        MuxConfig::default(),
        8 << 20,
        10,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn hostile_preset_transfer() {
    one_way(
        SimConfig::hostile().with_seed(11),
        MuxConfig::default(),
        256 << 10,
        11,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn twenty_percent_loss_realistic() {
    let mut sim = SimConfig::realistic().with_seed(12);
    sim.loss_probability = 0.2;
    one_way(sim, MuxConfig::default(), 256 << 10, 12).await;
}

#[tokio::test(start_paused = true)]
async fn twenty_percent_loss_hostile_with_duplicates() {
    let mut sim = SimConfig::hostile().with_seed(13);
    sim.loss_probability = 0.2;
    one_way(sim, MuxConfig::default(), 128 << 10, 13).await;
}

/// Opens `n` streams from a to b; on each both sides send `len` bytes at once and
/// read the other's bytes to EOF.
async fn many_streams_both_ways(sim: SimConfig, n: usize, len: usize) {
    let (_net, a, b) = pair(sim, MuxConfig::default());
    let mut listener = b.listener().unwrap();
    let to = b.local_address();

    // Each side writes pattern(len, seed) and expects the other side's pattern.
    async fn exchange(
        s: mux::MuxStream<mixnet_sim::Address, mixnet_sim::SenderTag>,
        mine: u64,
        theirs: u64,
        len: usize,
    ) {
        let (mut r, mut w) = s.into_split();
        let out = pattern(len, mine);
        let writer = tokio::spawn(async move {
            w.write_all(&out).await.unwrap();
            w.shutdown().await.unwrap();
            w
        });
        let mut got = Vec::with_capacity(len);
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), len);
        assert!(
            got == pattern(len, theirs),
            "stream {} bytes differ",
            r.id()
        );
        drop(writer.await.unwrap());
    }

    let server = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let s = listener.accept().await.unwrap();
            // The opener tells which stream this is in its first 8 bytes.
            tasks.push(tokio::spawn(async move {
                let mut s = s;
                let mut idx = [0u8; 8];
                s.read_exact(&mut idx).await.unwrap();
                let i = u64::from_be_bytes(idx);
                exchange(s, 2 * i + 1, 2 * i, len).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        listener
    });
    let mut clients = Vec::new();
    for i in 0..n as u64 {
        // At most `max_pending_opens` streams may await their OpenAck: the async
        // `open` waits for a slot instead of failing.
        let mut s = a.open(to, None).await.unwrap();
        clients.push(tokio::spawn(async move {
            s.write_all(&i.to_be_bytes()).await.unwrap();
            exchange(s, 2 * i, 2 * i + 1, len).await;
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    server.await.unwrap();
    assert_eq!(a.metrics().streams_opened, n as u64);
    assert_eq!(b.metrics().streams_accepted, n as u64);
}

#[tokio::test(start_paused = true)]
async fn hundred_streams_of_one_mib_both_ways_instant() {
    many_streams_both_ways(SimConfig::instant().with_seed(20), 100, 1 << 20).await;
}

#[tokio::test(start_paused = true)]
async fn eight_streams_both_ways_realistic() {
    many_streams_both_ways(SimConfig::realistic().with_seed(21), 8, 64 << 10).await;
}

#[tokio::test(start_paused = true)]
async fn half_close_through_copy_bidirectional_does_not_truncate() {
    let (_net, a, b) = pair(SimConfig::realistic().with_seed(30), MuxConfig::default());
    let mut listener = b.listener().unwrap();
    let request = pattern(100_000, 30);
    let response = pattern(300_000, 31);

    // The listener proxies the stream to an in-process "upstream" that answers only
    // after it has read the whole request (EOF), like an HTTP/1.0 server.
    let (expect_req, resp) = (request.clone(), response.clone());
    let proxy = tokio::spawn(async move {
        let mut s = listener.accept().await.unwrap();
        let (mut near, mut far) = tokio::io::duplex(16 << 10);
        let upstream = tokio::spawn(async move {
            let mut req = Vec::new();
            far.read_to_end(&mut req).await.unwrap();
            assert!(req == expect_req, "upstream saw a different request");
            far.write_all(&resp).await.unwrap();
            far.shutdown().await.unwrap();
        });
        let (up, down) = tokio::io::copy_bidirectional(&mut s, &mut near)
            .await
            .unwrap();
        upstream.await.unwrap();
        (up, down, listener)
    });

    let mut s = a.open_stream(b.local_address(), None).unwrap();
    s.write_all(&request).await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), response.len());
    assert!(got == response);
    let (up, down, _listener) = proxy.await.unwrap();
    assert_eq!(up as usize, request.len());
    assert_eq!(down as usize, response.len());
}

async fn reset_through_driver(opener_resets: bool) {
    let (_net, a, b) = pair(SimConfig::realistic().with_seed(40), MuxConfig::default());
    let mut listener = b.listener().unwrap();
    let mut out = a.open_stream(b.local_address(), None).unwrap();
    out.write_all(b"hello").await.unwrap();
    out.flush().await.unwrap();
    let mut inc = listener.accept().await.unwrap();
    let mut buf = [0u8; 5];
    inc.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    let code = 0x4242;
    let (mut resetter, mut victim) = if opener_resets {
        (out, inc)
    } else {
        (inc, out)
    };
    resetter.reset(code);
    let err = victim.read(&mut [0u8; 16]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    assert_eq!(mux::reset_code(&err), Some(code));
    let err = victim.write_all(b"more").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
    assert_eq!(mux::reset_code(&err), Some(code));
    // Flush, shutdown and `closed` report the reset too: nothing more will arrive.
    let err = victim.flush().await.unwrap_err();
    assert_eq!(mux::reset_code(&err), Some(code), "{err}");
    let err = victim.shutdown().await.unwrap_err();
    assert_eq!(mux::reset_code(&err), Some(code), "{err}");
    let err = victim.closed().await.unwrap_err();
    assert_eq!(mux::reset_code(&err), Some(code), "{err}");
    let err = resetter.flush().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionAborted, "{err}");
    drop((resetter, victim));
    // Both streams leave the tables once the handles are gone.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(a.metrics().live_streams, 0);
    assert_eq!(b.metrics().live_streams, 0);
}

#[tokio::test(start_paused = true)]
async fn reset_by_opener_through_driver() {
    reset_through_driver(true).await;
}

#[tokio::test(start_paused = true)]
async fn reset_by_listener_through_driver() {
    reset_through_driver(false).await;
}

#[tokio::test(start_paused = true)]
async fn drop_after_write_and_flush_loses_nothing_and_is_no_eof() {
    let (_net, a, b) = pair(SimConfig::realistic().with_seed(50), MuxConfig::default());
    let mut listener = b.listener().unwrap();
    let data = pattern(200_000, 50);
    let mut out = a.open_stream(b.local_address(), None).unwrap();
    out.write_all(&data).await.unwrap();
    out.flush().await.unwrap();
    drop(out);
    let mut inc = listener.accept().await.unwrap();
    let mut got = Vec::new();
    let err = inc.read_to_end(&mut got).await.unwrap_err();
    assert!(got == data, "got {} of {} bytes", got.len(), data.len());
    assert_eq!(err.kind(), ErrorKind::ConnectionAborted, "{err}");
    assert_eq!(mux::reset_code(&err), Some(reset_code::CANCELLED));
}

#[tokio::test(start_paused = true)]
async fn reader_that_never_reads_blocks_the_writer_within_the_window() {
    let window = 128 << 10;
    // The stream waits unaccepted for 120 s: longer than the default accept timeout.
    let cfg = MuxConfig::default()
        .with_receive_window(window)
        .with_accept_timeout(Duration::from_secs(600));
    let (_net, a, b): (_, Handle, Handle) = pair(SimConfig::instant().with_seed(60), cfg);
    let mut listener = b.listener().unwrap();
    let data = pattern(2 << 20, 60);
    let mut out = a.open_stream(b.local_address(), None).unwrap();
    // The write cannot finish: nobody reads.
    let stalled = tokio::time::timeout(Duration::from_secs(120), out.write_all(&data)).await;
    assert!(
        stalled.is_err(),
        "a 2 MiB write finished into a 128 KiB window"
    );
    let written = out.metrics().bytes_written;
    assert!(written >= u64::from(window), "only {written} bytes taken");
    assert!(out.metrics().credit_stalls > 0);
    let held = b.metrics().inbound_bytes;
    assert!(
        held <= u64::from(window),
        "receiver holds {held} bytes, window {window}"
    );
    assert!(held > 0);

    // Once the reader reads, everything arrives exactly.
    let mut inc = listener.accept().await.unwrap();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        inc.read_to_end(&mut got).await.unwrap();
        got
    });
    let rest = &data[written as usize..];
    out.write_all(rest).await.unwrap();
    out.shutdown().await.unwrap();
    let got = reader.await.unwrap();
    assert!(got == data);
    assert!(b.metrics().inbound_bytes <= u64::from(window));
}

/// `closed()` returns once every written byte and the FIN were acknowledged, which
/// `shutdown()` alone does not tell.
#[tokio::test(start_paused = true)]
async fn closed_waits_for_the_peer_to_acknowledge_everything() {
    let (_net, a, b) = pair(SimConfig::realistic().with_seed(41), MuxConfig::default());
    let mut listener = b.listener().unwrap();
    let data = pattern(100_000, 41);
    let mut out = a.open_stream(b.local_address(), None).unwrap();
    out.write_all(&data).await.unwrap();
    out.shutdown().await.unwrap();
    let sent_at = tokio::time::Instant::now();
    let reader = tokio::spawn(async move {
        let mut inc = listener.accept().await.unwrap();
        let mut got = Vec::new();
        inc.read_to_end(&mut got).await.unwrap();
        (got, tokio::time::Instant::now(), inc, listener)
    });
    out.closed().await.unwrap();
    let acked_at = tokio::time::Instant::now();
    let (got, eof_at, _inc, _listener) = reader.await.unwrap();
    assert!(got == data);
    // The ack of the FIN comes back after the reader saw EOF; shutdown returned at once.
    assert!(
        acked_at >= eof_at,
        "closed() returned before the peer had everything"
    );
    assert!(acked_at > sent_at);
    assert!(out.metrics().bytes_written == data.len() as u64);
}
