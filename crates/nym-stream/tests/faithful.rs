//! The stream layer on a network that behaves like nym-client-core 1.21.6 (issue
//! "Faithful to the real Nym client"): the replier's client keeps 20 SURBs per sender tag
//! in reserve, asks for more on its own, and drops replies that wait too long.

mod scenarios;

use std::time::Duration;

use nym_stream::mixnet::{Mixnet, MixnetClient, MixnetClientBuilder, MuxConfig, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

async fn client(net: &Mixnet, seed: u64, mux: MuxConfig) -> MixnetClient {
    MixnetClientBuilder::new_ephemeral()
        .network(net.clone())
        .with_mux_config(mux.with_id_seed(Some(seed)))
        .build()
        .expect("valid settings")
        .connect_to_mixnet()
        .await
        .expect("connects")
}

/// What a server-first exchange showed.
struct FirstByte {
    /// From `open` to the first byte of the server's greeting at the client.
    after: Duration,
    /// SURBs the server's network client had to ask the opener for.
    server_asked: u64,
    /// Whole greeting, byte-exact.
    greeting: Vec<u8>,
}

/// The listener writes first (a greeting) and the opener only reads: every frame the
/// listener sends, its `OpenAck` included, is a reply that needs SURBs above its client's
/// reserve.
async fn server_first(seed: u64, mux: MuxConfig) -> FirstByte {
    let net = Mixnet::new(SimConfig {
        loss_probability: 0.0,
        ..SimConfig::realistic().with_seed(seed)
    });
    let mut server = client(&net, 1, mux.clone()).await;
    let mut client_side = client(&net, 2, mux).await;
    let mut listener = server.listener().expect("listener");
    let greeting: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let sent = greeting.clone();
    tokio::spawn(async move {
        let mut s = listener.accept().await.expect("a stream");
        s.write_all(&sent).await.expect("greeting");
        s.shutdown().await.expect("FIN");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    });
    let start = Instant::now();
    let mut s = client_side
        .open_stream(*server.nym_address(), None)
        .await
        .expect("open");
    let mut first = [0u8; 1];
    s.read_exact(&mut first).await.expect("first byte");
    let after = start.elapsed();
    let mut got = first.to_vec();
    s.read_to_end(&mut got).await.expect("rest");
    s.shutdown().await.expect("our FIN");
    let server_asked = server
        .network_stats()
        .expect("simulator stats")
        .surbs_requested;
    FirstByte {
        after,
        server_asked,
        greeting: got,
    }
}

/// With the mux's `surb_reserve` matching the network's, the Open carries the reserve
/// too: the listener answers from the Open's SURBs alone, and its first byte arrives one
/// round trip after the Open left. Without it (the same run with `surb_reserve` 0), the
/// listener's client must ask for SURBs before even the OpenAck can leave.
#[tokio::test(start_paused = true)]
async fn server_first_exchange_pays_the_reserve_up_front() {
    for seed in [1, 2, 3] {
        let with = server_first(seed, MuxConfig::default()).await;
        let without = server_first(seed, MuxConfig::default().with_surb_reserve(0)).await;
        let expected: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        assert!(with.greeting == expected && without.greeting == expected);
        assert_eq!(
            with.server_asked, 0,
            "seed {seed}: the Open's SURBs covered the reserve and the first replies"
        );
        assert!(
            without.server_asked > 0,
            "seed {seed}: without the reserve the server's client had to ask"
        );
        // The Open (30 SURBs, ~22 packets at 20 ms) and one round trip of ~0.5 s.
        assert!(
            with.after < Duration::from_millis(2000),
            "seed {seed}: first byte after {:?}",
            with.after
        );
        assert!(
            with.after < without.after,
            "seed {seed}: {:?} with the reserve, {:?} without",
            with.after,
            without.after
        );
    }
}

/// A full initial window written before the Open is answered (0-RTT) on a network that
/// hands batches over reversed: data frames overtake their Open, wait as orphans, and the
/// transfer completes without a single retransmission. The burst goes on a peer's second
/// stream: the first paid the peer client's SURB reserve (its Open is ~22 packets, which
/// one-packet data frames behind it rarely overtake); the second's Open is ~8 packets.
#[tokio::test(start_paused = true)]
async fn a_zero_rtt_burst_arriving_reversed_needs_no_retransmission() {
    let mut overtook = 0;
    for seed in [4, 5, 6] {
        let net = Mixnet::new(SimConfig {
            loss_probability: 0.0,
            ..SimConfig::realistic().with_seed(seed)
        });
        let mut server = client(&net, 1, MuxConfig::default()).await;
        let mut opener = client(&net, 2, MuxConfig::default()).await;
        let mut listener = server.listener().expect("listener");
        let to = *server.nym_address();
        let burst: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 253) as u8).collect();
        let sent = burst.clone();
        let writer = tokio::spawn(async move {
            let mut first = opener.open_stream(to, None).await.expect("open");
            first.write_all(b"warm-up").await.expect("write");
            first.shutdown().await.expect("FIN");
            let mut rest = Vec::new();
            first.read_to_end(&mut rest).await.expect("the peer's FIN");
            let mut s = opener.open_stream(to, None).await.expect("open");
            s.write_all(&sent).await.expect("0-RTT write");
            s.shutdown().await.expect("FIN");
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.expect("the peer's FIN");
            (s.metrics(), opener)
        });
        let mut warm_up = listener.accept().await.expect("the first stream");
        let mut got = Vec::new();
        warm_up.read_to_end(&mut got).await.expect("warm-up");
        warm_up.shutdown().await.expect("our FIN");
        let before = server.metrics().orphan_frames_held;
        let mut s = listener.accept().await.expect("the burst's stream");
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.expect("all of it");
        assert!(got == burst, "seed {seed}: bytes differ");
        s.shutdown().await.expect("our FIN");
        let (m, _opener) = writer.await.expect("writer");
        assert_eq!(m.retransmits, 0, "seed {seed}: {m:?}");
        assert_eq!(server.metrics().orphan_frames_dropped, 0, "seed {seed}");
        overtook += server.metrics().orphan_frames_held - before;
    }
    assert!(
        overtook > 0,
        "data frames overtook their Open on none of the seeds: the test shows nothing"
    );
}

/// Four downloads at once from one server to one client at zero loss: the listener's
/// replies all come out of one SURB pool behind its client's reserve. No frame needs an
/// end-to-end retransmission (each spurious RTO burns a SURB), and the SURBs the
/// client attaches are about the SURBs the server's client spends: each reply packet one,
/// each of its own requests one, and the reserve and what is left over at the end.
#[tokio::test(start_paused = true)]
async fn concurrent_downloads_need_no_retransmission_and_use_what_they_are_given() {
    const DOWNLOADS: usize = 4;
    const SIZE: usize = 256 * 1024;
    let net = Mixnet::new(SimConfig {
        loss_probability: 0.0,
        ..SimConfig::realistic().with_seed(8)
    });
    let mut server = client(&net, 1, MuxConfig::default()).await;
    let mut downloader = client(&net, 2, MuxConfig::default()).await;
    let mut listener = server.listener().expect("listener");
    let body: Vec<u8> = (0..SIZE as u32).map(|i| (i % 241) as u8).collect();
    let served = body.clone();
    let serve = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..DOWNLOADS {
            let mut s = listener.accept().await.expect("a download");
            let body = served.clone();
            tasks.push(tokio::spawn(async move {
                let mut ask = [0u8; 3];
                s.read_exact(&mut ask).await.expect("the request");
                s.write_all(&body).await.expect("the body");
                s.shutdown().await.expect("FIN");
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).await.expect("the client's FIN");
                s.metrics()
            }));
        }
        let mut metrics = Vec::new();
        for t in tasks {
            metrics.push(t.await.expect("server task"));
        }
        (metrics, listener)
    });
    let to = *server.nym_address();
    let mut streams = Vec::new();
    for _ in 0..DOWNLOADS {
        let mut s = downloader.open_stream(to, None).await.expect("open");
        s.write_all(b"get").await.expect("request");
        streams.push(s);
    }
    let mut readers = Vec::new();
    for mut s in streams {
        readers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.expect("the body");
            s.shutdown().await.expect("our FIN");
            got
        }));
    }
    for r in readers {
        assert!(r.await.expect("reader") == body, "a download differs");
    }
    let (metrics, _listener) = serve.await.expect("server");
    // None at all: at zero loss every frame's ack arrives before the RTO. (With top-ups
    // of 32 SURBs per ack, 24-packet acks queued behind one another on the downloader's
    // uplink and 1-3 of the ~680 frames went twice; `max_surbs_per_message` 8 spreads
    // them.)
    let frames: u64 = metrics.iter().map(|m| m.frames_sent).sum();
    let resent: u64 = metrics.iter().map(|m| m.retransmits).sum();
    assert_eq!(
        resent, 0,
        "{resent} of {frames} frames retransmitted: {metrics:?}"
    );
    let attached = downloader.network_stats().expect("stats").surbs_attached;
    let s = server.network_stats().expect("stats");
    assert_eq!(s.replies_dropped, 0);
    // Every SURB the client attached reached the server (no loss); what the server did not
    // spend is its stock at the end: at least the reserve (20), at most a few round trips
    // of top-ups.
    let unspent = attached - s.surbs_used;
    assert!(
        (20..=attached / 5).contains(&unspent),
        "attached {attached}, used {}, unspent {unspent}, server asked for {}",
        s.surbs_used,
        s.surbs_requested
    );
}

/// A peer whose gateway vanished (see the scenario), on the simulator's own adapter.
#[tokio::test(start_paused = true)]
async fn a_peer_whose_gateway_vanished_fails_the_stream_and_sending_stops() {
    let net = Mixnet::new(SimConfig {
        loss_probability: 0.0,
        ..SimConfig::realistic().with_seed(7)
    });
    let mut server = client(&net, 1, MuxConfig::default()).await;
    let mut opener = client(&net, 2, MuxConfig::default()).await;
    let server_addr = server
        .nym_address()
        .as_sim_address()
        .expect("a sim address");
    let opener_addr = opener
        .nym_address()
        .as_sim_address()
        .expect("a sim address");
    scenarios::peer_gateway_vanishes(
        &mut opener,
        &mut server,
        || assert!(net.disconnect_client(&server_addr)),
        || net.stats(&opener_addr).expect("stats"),
    )
    .await;
}

/// `disconnect()` right after `shutdown()` (see the scenario): the peer reads every byte
/// and the end of the stream before we are gone.
#[tokio::test(start_paused = true)]
async fn disconnect_right_after_shutdown_delivers_the_fin() {
    for seed in [1, 2, 3] {
        let net = Mixnet::new(SimConfig::realistic().with_seed(seed));
        let mut server = client(&net, 1, MuxConfig::default()).await;
        let opener = client(&net, 2, MuxConfig::default()).await;
        scenarios::disconnect_right_after_shutdown(opener, &mut server).await;
    }
}

/// The median round trip of ten 100-byte echoes on one stream while a second stream of
/// the same client uploads, with the given send-queue target.
async fn echo_beside_upload(target: Duration) -> Duration {
    let net = Mixnet::new(SimConfig::realistic().with_seed(3));
    let mux = MuxConfig::default().with_send_queue_target(target);
    let mut server = client(&net, 1, mux.clone()).await;
    let mut opener = client(&net, 2, mux).await;
    let mut listener = server.listener().expect("listener");
    tokio::spawn(async move {
        while let Some(mut s) = listener.accept().await {
            tokio::spawn(async move {
                // The first byte says what the stream is: `U`pload (read and dropped)
                // or `E`cho.
                let mut kind = [0u8; 1];
                if s.read_exact(&mut kind).await.is_err() {
                    return;
                }
                let (mut rd, mut wr) = s.into_split();
                if kind[0] == b'U' {
                    let _ = tokio::io::copy(&mut rd, &mut tokio::io::sink()).await;
                } else {
                    let _ = tokio::io::copy(&mut rd, &mut wr).await;
                }
            });
        }
    });
    let to = *server.nym_address();
    let mut echo = opener.open_stream(to, None).await.expect("open");
    echo.set_nodelay(true);
    echo.write_all(b"E").await.expect("kind");
    let mut bulk = opener.open_stream(to, None).await.expect("open");
    let upload = tokio::spawn(async move {
        let _ = bulk.write_all(b"U").await;
        let _ = bulk.write_all(&vec![1u8; 4 << 20]).await;
        bulk
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut rtts = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        echo.write_all(&[9u8; 100]).await.expect("write");
        let mut back = [0u8; 100];
        echo.read_exact(&mut back).await.expect("echo");
        rtts.push(start.elapsed());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(!upload.is_finished(), "the upload ran beside every round");
    upload.abort();
    rtts.sort();
    rtts[5]
}

/// The send-queue target keeps the network's queue short: frames beyond it wait in the
/// multiplexer, which gives the interactive stream the next turn, so its round trips
/// beside an upload stay within a few sending slots of an idle link's (about 0.6 s). With
/// a 5 s target the queue is what nym's client itself allows (8 messages waiting for its
/// sending loop, plus the lanes), and the same request waits behind the bulk in it.
#[tokio::test(start_paused = true)]
async fn a_short_send_queue_keeps_an_interactive_stream_fast_beside_an_upload() {
    let short = echo_beside_upload(Duration::from_millis(60)).await;
    let long = echo_beside_upload(Duration::from_secs(5)).await;
    assert!(
        short < Duration::from_millis(800),
        "median {short:?} with 60 ms"
    );
    assert!(
        long > short + Duration::from_millis(250),
        "median {long:?} with 5 s, {short:?} with 60 ms"
    );
}
