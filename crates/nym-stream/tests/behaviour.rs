//! One integration test per example's behaviour, on seeded simulated networks under
//! tokio's paused clock (fast and repeatable), plus the facade's error paths.

mod scenarios;

mod common;

use common::spawn_echo_server;
use std::future::Future;
use std::io::ErrorKind;
use std::time::Duration;

use nym_stream::mixnet::{
    Error, Mixnet, MixnetClient, MixnetClientBuilder, MixnetMessageSender, MixnetStream, Recipient,
    SimConfig,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

fn builder(net: &Mixnet, seed: u64) -> MixnetClientBuilder {
    MixnetClientBuilder::new_ephemeral()
        .network(net.clone())
        .with_stream_id_seed(seed)
}

async fn client(net: &Mixnet, seed: u64) -> MixnetClient {
    builder(net, seed)
        .build()
        .expect("valid settings")
        .connect_to_mixnet()
        .await
        .expect("connects")
}

fn realistic(seed: u64) -> Mixnet {
    Mixnet::new(SimConfig::realistic().with_seed(seed))
}

#[tokio::test(start_paused = true)]
async fn echo_round_trip_to_eof() {
    let net = realistic(11);
    let mut server = client(&net, 1).await;
    let mut alice = client(&net, 2).await;
    spawn_echo_server(&mut server);

    let message: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut stream = alice
        .open_stream(*server.nym_address(), None)
        .await
        .expect("opens");
    stream.write_all(&message).await.expect("writes");
    stream.shutdown().await.expect("shuts down");
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).await.expect("reads to EOF");
    assert_eq!(echoed, message);
    assert!(alice.network_stats().expect("stats").packets_sent > 0);
}

async fn exchange(mut stream: MixnetStream, request: &[u8]) -> Vec<u8> {
    stream.write_all(request).await.expect("writes");
    stream.shutdown().await.expect("shuts down");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.expect("reads");
    reply
}

#[tokio::test(start_paused = true)]
async fn multi_stream_to_two_receivers_concurrently() {
    let net = realistic(12);
    let mut sender = client(&net, 1).await;
    let mut a = client(&net, 2).await;
    let mut b = client(&net, 3).await;
    spawn_echo_server(&mut a);
    spawn_echo_server(&mut b);
    let to_a = sender.open_stream(*a.nym_address(), None).await.unwrap();
    let to_b = sender.open_stream(*b.nym_address(), None).await.unwrap();
    assert_ne!(to_a.id(), to_b.id());
    let big: Vec<u8> = vec![0xab; 20_000];
    let (ra, rb) = tokio::join!(exchange(to_a, b"to A"), exchange(to_b, &big));
    assert_eq!(ra, b"to A");
    assert_eq!(rb, big);
    assert_eq!(sender.metrics().streams_opened, 2);
    assert_eq!(a.metrics().streams_accepted, 1);
    assert_eq!(b.metrics().streams_accepted, 1);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_reaps_a_silent_stream() {
    let net = realistic(13);
    let mut server = client(&net, 1).await;
    let mut c = builder(&net, 2)
        .with_stream_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .connect_to_mixnet()
        .await
        .unwrap();
    let mut listener = server.listener().unwrap();
    let mut stream = c.open_stream(*server.nym_address(), None).await.unwrap();
    stream.write_all(b"hi").await.unwrap();
    stream.flush().await.unwrap();
    let last_byte = Instant::now();
    let mut incoming = listener.accept().await.unwrap();
    let mut hi = [0u8; 2];
    incoming.read_exact(&mut hi).await.unwrap();

    let mut buf = [0u8; 8];
    // Neither side sent its FIN: the reap is no clean end, so reads fail.
    let err = stream
        .read(&mut buf)
        .await
        .expect_err("a reaped read fails");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(stream.is_reaped());
    // The idle clock restarts when the peer acknowledges "hi"; that ack comes a round
    // trip after the Open, which carries the peer client's SURB reserve too (30 SURBs,
    // about 22 packets at 20 ms).
    let waited = last_byte.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(8),
        "reaped after {waited:?}"
    );
    // Later reads keep failing, writes fail, and the peer (whose own timeout is the
    // default 30 minutes) is told and ends its side the same way.
    assert!(stream.read(&mut buf).await.is_err());
    assert!(stream.recv().await.is_err());
    let err = stream.write_all(b"late").await.expect_err("writes fail");
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    let err = incoming
        .read(&mut buf)
        .await
        .expect_err("the peer's reads fail too");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(incoming.is_reaped());
    let err = incoming.write_all(b"late").await.expect_err("writes fail");
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_is_pushed_out_by_traffic() {
    let net = realistic(14);
    let mut server = client(&net, 1).await;
    let mut c = builder(&net, 2)
        .with_stream_idle_timeout(Duration::from_secs(6))
        .build()
        .unwrap()
        .connect_to_mixnet()
        .await
        .unwrap();
    let mut listener = server.listener().unwrap();
    let mut stream = c.open_stream(*server.nym_address(), None).await.unwrap();
    stream.set_nodelay(true);
    stream.write_all(b"0").await.unwrap();
    let mut incoming = listener.accept().await.unwrap();
    // The server writes every 2 s for 10 s: longer than the 6 s timeout in total, but
    // (even with mixnet latency) never 6 s of silence, so the client's stream lives.
    let started = Instant::now();
    let server_task = tokio::spawn(async move {
        for i in 0..5u8 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            incoming.write_all(&[i]).await.unwrap();
            incoming.flush().await.unwrap();
        }
        incoming
    });
    let mut got = [0u8; 5];
    stream
        .read_exact(&mut got)
        .await
        .expect("traffic keeps the stream alive");
    assert_eq!(got, [0, 1, 2, 3, 4]);
    assert!(started.elapsed() > Duration::from_secs(8));
    assert!(!stream.is_reaped());
    let _incoming = server_task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn throughput_transfer_is_complete_and_ends_with_eof() {
    let net = realistic(15);
    let mut sender = client(&net, 1).await;
    let mut receiver = client(&net, 2).await;
    let mut listener = receiver.listener().unwrap();
    let mut data = vec![0u8; 256 * 1024];
    ChaCha8Rng::seed_from_u64(15).fill_bytes(&mut data);
    let mut stream = sender
        .open_stream(*receiver.nym_address(), None)
        .await
        .unwrap();
    let to_send = data.clone();
    let writer = tokio::spawn(async move {
        stream.write_all(&to_send).await.unwrap();
        stream.shutdown().await.unwrap();
        stream
    });
    let mut incoming = listener.accept().await.unwrap();
    let mut got = Vec::new();
    incoming.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "received bytes differ from sent bytes");
    let stream = writer.await.unwrap();
    assert_eq!(stream.metrics().bytes_written, data.len() as u64);
    let stats = sender.network_stats().unwrap();
    // Every packet carries at most 1604 message bytes, so the data alone needs this many.
    assert!(stats.packets_sent >= (data.len() / 1604) as u64);
}

#[tokio::test(start_paused = true)]
async fn plain_messages_and_streams_coexist() {
    let net = realistic(16);
    let mut alice = client(&net, 1).await;
    let mut bob = client(&net, 2).await;
    spawn_echo_server(&mut bob);
    let bob_addr = *bob.nym_address();

    let mut stream = alice.open_stream(bob_addr, None).await.unwrap();
    stream.write_all(b"stream bytes").await.unwrap();
    stream.shutdown().await.unwrap();
    let sender = alice.split_sender();
    for i in 0..3u8 {
        sender.send_plain_message(bob_addr, [i]).await.unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        for m in bob.wait_for_messages().await.expect("bob is connected") {
            let tag = m
                .sender_tag
                .expect("plain messages carry reply SURBs by default");
            bob.send_reply(tag, [m.message[0] + 100]).await.unwrap();
            seen.push(m.message[0]);
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2]);
    let mut replies = Vec::new();
    while replies.len() < 3 {
        for m in alice.wait_for_messages().await.unwrap() {
            assert_eq!(m.sender_tag, None, "replies carry no tag");
            replies.push(m.message[0]);
        }
    }
    replies.sort_unstable();
    assert_eq!(replies, [100, 101, 102]);
    let mut echo = Vec::new();
    stream.read_to_end(&mut echo).await.unwrap();
    assert_eq!(echo, b"stream bytes");
}

#[tokio::test(start_paused = true)]
async fn close_and_reset_semantics() {
    let net = realistic(17);
    let mut c = client(&net, 1).await;
    let mut server = client(&net, 2).await;
    scenarios::close_reset_and_drop(&mut c, &mut server).await;
}

#[tokio::test(start_paused = true)]
async fn second_listener_is_refused_and_disconnect_ends_accept() {
    let net = Mixnet::new(SimConfig::instant().with_seed(18));
    let mut c = client(&net, 1).await;
    let mut listener = c.listener().unwrap();
    assert!(matches!(c.listener(), Err(Error::ListenerAlreadyTaken)));
    let sender = c.split_sender();
    let me = *c.nym_address();
    c.disconnect().await;
    assert_eq!(listener.accept().await.map(|s| s.id()), None);
    let err = sender.send_plain_message(me, b"x").await.unwrap_err();
    assert!(matches!(err, Error::Disconnected), "got {err}");
}

#[tokio::test(start_paused = true)]
async fn network_loss_of_the_client_is_reported_as_disconnected() {
    let net = Mixnet::new(SimConfig::instant().with_seed(19));
    let mut c = client(&net, 1).await;
    let other = client(&net, 2).await;
    let to = *other.nym_address();
    assert!(c.open_stream(to, None).await.is_ok());
    assert!(net.disconnect_client(&c.nym_address().sim_address()));
    // The router notices the network closing on its next turn.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(c.is_disconnected());
    assert!(matches!(
        c.open_stream(to, None).await,
        Err(Error::Disconnected)
    ));
}

#[test]
fn builder_rejects_bad_settings_and_connect_needs_a_runtime() {
    let err = MixnetClientBuilder::new_ephemeral()
        .with_stream_idle_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("stream_idle_timeout"), "{err}");
    let err = MixnetClientBuilder::new_ephemeral()
        .with_receive_window(0)
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidConfig {
            knob: "receive_window",
            ..
        }
    ));
    let err = MixnetClientBuilder::new_ephemeral()
        .with_max_frame_payload(10)
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidConfig {
            knob: "max_frame_payload",
            ..
        }
    ));

    // Outside any runtime: an error, not a panic.
    let pending = MixnetClientBuilder::new_ephemeral().build().unwrap();
    // Poll the future by hand, outside any runtime context.
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut fut = std::pin::pin!(pending.connect_to_mixnet());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Err(Error::NoRuntime)) => {}
        other => panic!("expected NoRuntime, got {:?}", other.map(|r| r.map(|_| ()))),
    }
}

#[test]
fn recipients_parse_and_print() {
    let text = format!("sim:{}", "7a".repeat(32));
    let r: Recipient = text.parse().unwrap();
    assert_eq!(r.to_string(), text);
    assert_eq!(format!("{r:?}"), format!("Recipient({text})"));
    let err = "sim:xyz".parse::<Recipient>().unwrap_err();
    assert!(matches!(err, Error::InvalidRecipient(_)));
    assert!(err.to_string().contains("64 hex digits"), "{err}");
}

/// `connect_new` joins the process-wide realistic network, in real time.
#[tokio::test]
async fn connect_new_uses_the_shared_default_network() {
    let mut server = MixnetClient::connect_new().await.unwrap();
    let mut c = MixnetClient::connect_new().await.unwrap();
    assert_ne!(server.nym_address(), c.nym_address());
    spawn_echo_server(&mut server);
    let s = c.open_stream(*server.nym_address(), None).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(30), exchange(s, b"real time"))
        .await
        .expect("an echo within 30 s on the realistic preset");
    assert_eq!(reply, b"real time");
    let net = nym_stream::mixnet::default_network().unwrap();
    assert!(
        net.stats(&c.nym_address().sim_address())
            .unwrap()
            .packets_sent
            > 0
    );
}

/// Runs a paused-clock, current-thread test body on its own thread and fails if it
/// makes no progress within `limit` of wall time: a driver that spins while holding
/// the only thread never lets the paused clock move, so a plain test would hang.
fn within_wall_time<F, Fut>(limit: Duration, body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        rt.block_on(body());
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("no progress within {limit:?} of wall time: the client is wedged")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the test body panicked"),
    }
}

/// Opening a stream to an address nobody answers fails with a clear `TimedOut` (while
/// the handle is kept, the normal case) and the client goes on working.
#[test]
fn an_unanswered_open_times_out_and_the_client_keeps_working() {
    within_wall_time(Duration::from_secs(60), || async {
        let net = realistic(31);
        let mut server = client(&net, 1).await;
        spawn_echo_server(&mut server);
        let gone = client(&net, 2).await;
        let nobody = *gone.nym_address();
        assert!(net.disconnect_client(&nobody.sim_address()));
        let mut alice = builder(&net, 3)
            .with_max_retransmits(3)
            .build()
            .expect("valid settings")
            .connect_to_mixnet()
            .await
            .expect("connects");

        let dead = alice.open_stream(nobody, None).await.expect("opens");
        let err = dead.wait_established().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("never answered"), "{err}");

        // `dead` is still held; a stream to a live peer works.
        let reply = exchange(
            alice
                .open_stream(*server.nym_address(), None)
                .await
                .expect("opens"),
            b"still alive?",
        )
        .await;
        assert_eq!(reply, b"still alive?");
        drop(dead);
    });
}

/// `disconnect()` right after writing does not throw the written bytes away: it
/// drains (the peer acknowledges everything) before the client leaves.
#[tokio::test(start_paused = true)]
async fn disconnect_delivers_what_was_written_first() {
    let net = realistic(32);
    let mut server = client(&net, 1).await;
    let mut listener = server.listener().expect("first listener");
    let mut alice = client(&net, 2).await;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut stream = alice
        .open_stream(*server.nym_address(), None)
        .await
        .expect("opens");
    stream.write_all(&data).await.expect("writes");
    stream.shutdown().await.expect("shuts down");
    let started = Instant::now();
    alice.disconnect().await;
    let drained = started.elapsed();
    let mut inc = listener.accept().await.expect("a stream");
    let mut got = Vec::new();
    inc.read_to_end(&mut got).await.expect("reads to EOF");
    assert_eq!(got.len(), data.len());
    assert!(got == data);
    assert!(drained > Duration::ZERO, "disconnect did not wait at all");
    drop(stream);
}
