//! The `nym` feature, offline: our full stack (facade, multiplexer, [`NymTransport`]) over
//! an in-process fake of nym-sdk's message API built from real nym types: `Recipient`s from
//! freshly generated keys, `AnonymousSenderTag`s, `InputMessage`s in, and
//! `ReconstructedMessage`s out. Behind the nym types runs the simulator's engine (the
//! realistic preset unless a test says otherwise), so the fake behaves as nym-client-core
//! 1.21.6 does: Poisson-paced sending one whole message per tick from a channel of 8 (which
//! is what `send` waits for; replies never wait), lanes, the replier's SURB reserve and
//! its own SURB requests, packet retransmissions up to the message's limit, batches
//! regrouped and reversed on delivery, and everything queued discarded when the client
//! goes away.
#![cfg(feature = "nym")]

mod scenarios;

mod common;

use common::spawn_echo_server;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_core::Stream;
use mixnet_sim::{Mixnet, SimClient, SimConfig};
use mux::{Destination, Transport};
use nym_stream::mixnet::{
    Error, MixnetClient, MixnetClientBuilder, MixnetMessageSender, Recipient,
};
use nym_stream::nym::nym_sdk::mixnet::{
    self as nym, ed25519, x25519, AnonymousSenderTag, InputMessage, ReconstructedMessage,
};
use nym_stream::nym::{sender_tag_from_nym, sender_tag_to_nym, NymTransport};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// A fresh real Nym address from generated keys (client identity, encryption key, and a
/// gateway identity).
fn generate_recipient(rng: &mut ChaCha8Rng) -> nym::Recipient {
    let identity = ed25519::KeyPair::new(rng);
    let encryption = x25519::KeyPair::new(rng);
    let gateway = ed25519::KeyPair::new(rng);
    nym::Recipient::new(
        *identity.public_key(),
        *encryption.public_key(),
        *gateway.public_key(),
    )
}

/// What the fake's clients handed to nym, by kind.
#[derive(Default)]
struct Counters {
    anonymous: u64,
    replies: u64,
    surbs_attached: u64,
}

struct Directory {
    rng: ChaCha8Rng,
    /// The simulator address behind each Nym address.
    addresses: HashMap<[u8; nym::Recipient::LEN], mixnet_sim::Address>,
    counters: Counters,
}

/// The fake network: nym types outside, the simulator's engine inside.
#[derive(Clone)]
struct FakeNet {
    net: Mixnet,
    directory: Arc<Mutex<Directory>>,
}

impl FakeNet {
    fn new(config: SimConfig) -> Self {
        Self {
            directory: Arc::new(Mutex::new(Directory {
                rng: ChaCha8Rng::seed_from_u64(config.seed),
                addresses: HashMap::new(),
                counters: Counters::default(),
            })),
            net: Mixnet::new(config),
        }
    }

    /// A fake nym-sdk client: its address, its sender and its receiver (both ends of one
    /// simulator client, which leaves the network when both are dropped).
    fn join(&self) -> (nym::Recipient, FakeSender, FakeReceiver) {
        let client = self.net.connect();
        let me = {
            let mut d = self.directory.lock().unwrap();
            let me = generate_recipient(&mut d.rng);
            d.addresses.insert(me.to_bytes(), client.address());
            me
        };
        let client = Arc::new(Mutex::new(client));
        (
            me,
            FakeSender {
                net: self.clone(),
                client: Arc::clone(&client),
            },
            FakeReceiver { client },
        )
    }

    /// The simulator address of a Nym address; one nobody joined with is unreachable.
    fn sim_address(&self, recipient: &nym::Recipient) -> mixnet_sim::Address {
        let bytes = recipient.to_bytes();
        let d = self.directory.lock().unwrap();
        d.addresses.get(&bytes).copied().unwrap_or_else(|| {
            let mut unknown = [0u8; 32];
            unknown.copy_from_slice(&bytes[..32]);
            mixnet_sim::Address::from_bytes(unknown)
        })
    }

    /// Takes `recipient`'s client off the network, as if its gateway vanished.
    fn vanish(&self, recipient: &nym::Recipient) {
        assert!(self.net.disconnect_client(&self.sim_address(recipient)));
    }

    /// The network statistics of `recipient`'s client.
    fn stats(&self, recipient: &nym::Recipient) -> mixnet_sim::ClientStats {
        self.net
            .stats(&self.sim_address(recipient))
            .expect("a client of this network")
    }

    fn counters(&self) -> (u64, u64, u64) {
        let d = self.directory.lock().unwrap();
        (
            d.counters.anonymous,
            d.counters.replies,
            d.counters.surbs_attached,
        )
    }
}

/// The sending half of a fake client. Like nym-sdk's, `send` waits while the client's
/// channel to its sending loop is full, except for replies, which nym's reply controller
/// takes without limit.
struct FakeSender {
    net: FakeNet,
    client: Arc<Mutex<SimClient>>,
}

impl FakeSender {
    async fn hand_over(&self, message: InputMessage) -> Result<(), mixnet_sim::SimError> {
        let message = match message {
            InputMessage::MessageWrapper { message, .. } => *message,
            other => other,
        };
        let ready = || std::future::poll_fn(|cx| self.client.lock().unwrap().poll_ready(cx));
        match message {
            InputMessage::Anonymous {
                recipient,
                data,
                reply_surbs,
                max_retransmissions,
                ..
            } => {
                {
                    let mut d = self.net.directory.lock().unwrap();
                    d.counters.anonymous += 1;
                    d.counters.surbs_attached += u64::from(reply_surbs);
                }
                let to = self.net.sim_address(&recipient);
                ready().await?;
                let mut c = self.client.lock().unwrap();
                c.set_max_retransmissions(max_retransmissions);
                c.send_anonymous(to, Bytes::from(data), reply_surbs)
            }
            InputMessage::Regular {
                recipient,
                data,
                max_retransmissions,
                ..
            } => {
                let to = self.net.sim_address(&recipient);
                ready().await?;
                let mut c = self.client.lock().unwrap();
                c.set_max_retransmissions(max_retransmissions);
                c.send_regular(to, Bytes::from(data))
            }
            InputMessage::Reply {
                recipient_tag,
                data,
                ..
            } => {
                self.net.directory.lock().unwrap().counters.replies += 1;
                let tag = mixnet_sim::SenderTag(recipient_tag.to_bytes());
                match self
                    .client
                    .lock()
                    .unwrap()
                    .send_reply(tag, Bytes::from(data))
                {
                    // nym only logs a reply to a tag it has no SURBs for.
                    Err(mixnet_sim::SimError::UnknownSenderTag(_)) => Ok(()),
                    other => other,
                }
            }
            // Premade packets never come from the adapter.
            _ => Ok(()),
        }
    }
}

impl nym::MixnetMessageSender for FakeSender {
    fn send<'life0, 'async_trait>(
        &'life0 self,
        message: InputMessage,
    ) -> Pin<Box<dyn Future<Output = nym_stream::nym::nym_sdk::Result<()>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.hand_over(message)
                .await
                .map_err(|_| nym_stream::nym::nym_sdk::Error::MessageSendingFailure)
        })
    }
}

/// The receiving half of a fake client: reconstructed messages, in the order nym-sdk's
/// `Stream` yields them (each delivered batch regrouped and reversed).
struct FakeReceiver {
    client: Arc<Mutex<SimClient>>,
}

impl Stream for FakeReceiver {
    type Item = ReconstructedMessage;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.client.lock().unwrap().poll_recv(cx).map(|m| {
            m.map(|m| ReconstructedMessage {
                message: m.payload.to_vec(),
                sender_tag: m.sender_tag.map(|t| AnonymousSenderTag::from_bytes(t.0)),
            })
        })
    }
}

/// A sender that only fills a bounded channel, for looking at what the adapter hands over.
struct ChannelSender {
    tx: mpsc::Sender<InputMessage>,
}

impl nym::MixnetMessageSender for ChannelSender {
    fn send<'life0, 'async_trait>(
        &'life0 self,
        message: InputMessage,
    ) -> Pin<Box<dyn Future<Output = nym_stream::nym::nym_sdk::Result<()>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.tx
                .send(message)
                .await
                .map_err(|_| nym_stream::nym::nym_sdk::Error::MessageSendingFailure)
        })
    }
}

fn fake_client_with(net: &FakeNet, builder: MixnetClientBuilder) -> MixnetClient {
    let (addr, sender, receiver) = net.join();
    builder
        .build()
        .expect("valid settings")
        .wrap_nym_parts(addr, sender, receiver)
        .expect("inside a runtime")
}

fn fake_client(net: &FakeNet, seed: u64) -> MixnetClient {
    fake_client_with(
        net,
        MixnetClientBuilder::new_ephemeral().with_stream_id_seed(seed),
    )
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(u64::from(salt));
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

#[tokio::test(start_paused = true)]
async fn large_echo_is_byte_exact_with_eof_over_reordering_fake() {
    let net = FakeNet::new(SimConfig::realistic().with_seed(1));
    let mut server = fake_client(&net, 1);
    let mut alice = fake_client(&net, 2);
    assert!(server.nym_address().is_nym());
    spawn_echo_server(&mut server);

    // 300 KB: about 190 frames each way, more than one receive window.
    let data = pattern(300_000, 7);
    let stream = alice
        .open_stream(*server.nym_address(), None)
        .await
        .expect("opens");
    let (mut rd, mut wr) = stream.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&sent).await.expect("writes");
        wr.shutdown().await.expect("shuts down");
    });
    let mut echoed = Vec::new();
    rd.read_to_end(&mut echoed).await.expect("reads to EOF");
    writer.await.expect("writer task");
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "echo differs from what was sent");

    // The server answered only through reply SURBs, never to alice's address.
    let (anonymous, replies, surbs) = net.counters();
    assert!(anonymous > 150, "alice sent {anonymous} anonymous messages");
    assert!(replies > 150, "the server sent {replies} replies");
    assert!(surbs > 0, "alice attached no reply SURBs");
    alice.disconnect().await;
    server.disconnect().await;
}

#[tokio::test(start_paused = true)]
async fn many_concurrent_streams_each_echo_their_own_bytes() {
    let net = FakeNet::new(SimConfig::realistic().with_seed(2));
    let mut server = fake_client(&net, 10);
    let mut alice = fake_client(&net, 11);
    spawn_echo_server(&mut server);
    let to = *server.nym_address();

    let mut tasks = Vec::new();
    for i in 0..24u8 {
        let data = pattern(2_000 + usize::from(i) * 500, i);
        let mut stream = alice.open_stream(to, None).await.expect("opens");
        tasks.push(tokio::spawn(async move {
            stream.write_all(&data).await.expect("writes");
            stream.shutdown().await.expect("shuts down");
            let mut echoed = Vec::new();
            stream.read_to_end(&mut echoed).await.expect("reads to EOF");
            (stream.id(), echoed == data)
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (id, same) = t.await.expect("stream task");
        assert!(same, "stream {id} echoed different bytes");
        assert!(ids.insert(id), "stream id {id} used twice");
    }
    assert_eq!(ids.len(), 24);
    let m = alice.metrics();
    assert_eq!(m.streams_opened, 24);
}

#[tokio::test(start_paused = true)]
async fn reset_and_drop_without_shutdown_reach_the_peer() {
    let net = FakeNet::new(SimConfig::realistic().with_seed(3));
    let mut c = fake_client(&net, 20);
    let mut server = fake_client(&net, 21);
    scenarios::close_reset_and_drop(&mut c, &mut server).await;
}

#[tokio::test(start_paused = true)]
async fn plain_messages_and_replies_coexist_with_streams() {
    let net = FakeNet::new(SimConfig::realistic().with_seed(4));
    let mut server = fake_client(&net, 30);
    let mut alice = fake_client(&net, 31);
    spawn_echo_server(&mut server);

    alice
        .send_plain_message(*server.nym_address(), b"hello")
        .await
        .unwrap();
    let got = server.wait_for_messages().await.expect("a message");
    assert_eq!(got[0].message, b"hello");
    let tag = got[0]
        .sender_tag
        .expect("anonymous messages carry a sender tag");
    server.send_reply(tag, b"hi back").await.unwrap();
    let reply = alice.wait_for_messages().await.expect("the reply");
    assert_eq!(reply[0].message, b"hi back");
    assert_eq!(reply[0].sender_tag, None);

    let mut s = alice
        .open_stream(*server.nym_address(), None)
        .await
        .unwrap();
    s.write_all(b"stream bytes").await.unwrap();
    s.shutdown().await.unwrap();
    let mut echo = Vec::new();
    s.read_to_end(&mut echo).await.unwrap();
    assert_eq!(echo, b"stream bytes");
}

#[tokio::test(start_paused = true)]
async fn addresses_of_the_other_network_are_refused() {
    let net = FakeNet::new(SimConfig::realistic().with_seed(5));
    let mut c = fake_client(&net, 40);
    let sim: Recipient = format!("sim:{}", "cd".repeat(32)).parse().unwrap();
    match c.open_stream(sim, None).await {
        Err(Error::WrongNetwork {
            recipient_network,
            client_network,
            ..
        }) => {
            assert_eq!(recipient_network, "a simulated mixnet");
            assert_eq!(client_network, "the real Nym mixnet");
        }
        other => panic!("expected WrongNetwork, got {other:?}"),
    }
    let err = c.send_plain_message(sim, b"x").await.expect_err("refused");
    assert!(matches!(err, Error::WrongNetwork { .. }), "{err}");
    // The client is still usable afterwards.
    assert!(!c.is_disconnected());
    assert!(c.network_stats().is_none());
}

#[test]
fn recipients_convert_to_and_from_nym_and_text() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let nym_addr = generate_recipient(&mut rng);
    let ours = Recipient::from(nym_addr);
    assert!(ours.is_nym() && !ours.is_sim());
    assert_eq!(ours.as_sim_address(), None);
    assert_eq!(ours.to_string(), nym_addr.to_string());
    let parsed: Recipient = nym_addr.to_string().parse().expect("parses");
    assert_eq!(parsed, ours);
    let back = nym::Recipient::try_from(parsed).expect("a nym address");
    assert_eq!(back.to_bytes(), nym_addr.to_bytes());

    // Different keys, different recipients; simulator text still parses as before.
    let other = Recipient::from(generate_recipient(&mut rng));
    assert_ne!(other, ours);
    let sim: Recipient = format!("sim:{}", "01".repeat(32)).parse().unwrap();
    assert!(sim.is_sim());
    assert!(matches!(
        nym::Recipient::try_from(sim),
        Err(Error::WrongNetwork { .. })
    ));

    // Bad Nym text is refused with the parser's reason.
    let bad = format!("{}x", nym_addr);
    match bad.parse::<Recipient>() {
        Err(Error::InvalidNymRecipient { input, .. }) => assert_eq!(input, bad),
        other => panic!("expected InvalidNymRecipient, got {other:?}"),
    }
    assert!("nonsense".parse::<Recipient>().is_err());

    // Sender tags keep their 16 bytes both ways.
    let tag = AnonymousSenderTag::from_bytes([7; 16]);
    assert_eq!(sender_tag_from_nym(tag).0, [7; 16]);
    assert_eq!(sender_tag_to_nym(sender_tag_from_nym(tag)), tag);
}

/// nym-sdk's input channel is bounded: while it is full, the adapter holds the message
/// and `poll_ready` is `Pending`, so the multiplexer stops emitting frames.
#[tokio::test(start_paused = true)]
async fn a_full_input_channel_is_backpressure() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let me = generate_recipient(&mut rng);
    let peer = Recipient::from(generate_recipient(&mut rng));
    let (tx, mut rx) = mpsc::channel::<InputMessage>(1);
    let (_, _, receiver) = FakeNet::new(SimConfig::instant()).join();
    let mut transport = NymTransport::new(me, ChannelSender { tx }, receiver);
    // A burst the pacer cannot run out of here: this is about nym's channel.
    transport.set_queue_target(std::time::Duration::from_secs(1));

    let ready = |t: &mut NymTransport<ChannelSender, FakeReceiver>| {
        let mut cx = Context::from_waker(Waker::noop());
        t.poll_ready(&mut cx)
    };
    assert!(matches!(ready(&mut transport), Poll::Ready(Ok(()))));
    transport
        .send(Destination::Address(peer), "one".into(), 3)
        .unwrap();
    // The channel had room: the first message went in.
    assert!(matches!(ready(&mut transport), Poll::Ready(Ok(()))));
    transport
        .send(
            Destination::Reply(sender_tag_from_nym([1; 16].into())),
            "two".into(),
            0,
        )
        .unwrap();
    // Full: the second waits, and nothing more may be sent.
    assert!(ready(&mut transport).is_pending());
    assert!(transport
        .send(Destination::Address(peer), "three".into(), 0)
        .is_err());

    // Draining one message lets the held one in.
    match rx.recv().await.expect("first message") {
        InputMessage::Anonymous {
            recipient,
            data,
            reply_surbs,
            max_retransmissions,
            ..
        } => {
            assert_eq!(Recipient::from(recipient), peer);
            assert_eq!(data, b"one");
            assert_eq!(reply_surbs, 3);
            // Bounded, unlike nym's default for anonymous messages.
            assert_eq!(
                max_retransmissions,
                Some(nym_stream::nym::ANONYMOUS_MAX_RETRANSMISSIONS)
            );
        }
        other => panic!("expected an anonymous message, got {other:?}"),
    }
    assert!(matches!(ready(&mut transport), Poll::Ready(Ok(()))));
    match rx.recv().await.expect("second message") {
        InputMessage::Reply {
            recipient_tag,
            data,
            ..
        } => {
            assert_eq!(recipient_tag.to_bytes(), [1; 16]);
            assert_eq!(data, b"two");
        }
        other => panic!("expected a reply, got {other:?}"),
    }

    // A closed client fails the transport instead of hanging.
    drop(rx);
    transport
        .send(Destination::Address(peer), "four".into(), 0)
        .unwrap();
    assert!(matches!(ready(&mut transport), Poll::Ready(Err(_))));
}

/// The adapter hands messages to nym at about nym's own sending rate (one packet per
/// 20 ms, a burst of 3 packets: the default 60 ms queue target), charging each with the
/// packets it takes, so frames wait in the multiplexer instead of inside the client where
/// our timers cannot see them.
#[tokio::test(start_paused = true)]
async fn hand_offs_are_paced_by_packet_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let me = generate_recipient(&mut rng);
    let peer = Recipient::from(generate_recipient(&mut rng));
    let (tx, mut rx) = mpsc::channel::<InputMessage>(1000);
    let (_, _, receiver) = FakeNet::new(SimConfig::instant()).join();
    let mut transport = NymTransport::new(me, ChannelSender { tx }, receiver);
    let ready = |t: &mut NymTransport<ChannelSender, FakeReceiver>| {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(t.poll_ready(&mut cx), Poll::Ready(Ok(())))
    };
    // One-packet messages: the burst of 3, and one more on the last token.
    let mut accepted = 0;
    while ready(&mut transport) {
        transport
            .send(Destination::Address(peer), "x".into(), 0)
            .unwrap();
        accepted += 1;
        assert!(accepted < 100, "never paced");
    }
    assert_eq!(accepted, 4);
    tokio::time::advance(std::time::Duration::from_millis(19)).await;
    assert!(!ready(&mut transport));
    tokio::time::advance(std::time::Duration::from_millis(1)).await;
    assert!(ready(&mut transport), "one sending delay pays one packet");
    // A message carrying 30 SURBs takes 22 packets: after it, the next waits ~440 ms.
    transport
        .send(Destination::Address(peer), "y".into(), 30)
        .unwrap();
    tokio::time::advance(std::time::Duration::from_millis(400)).await;
    assert!(!ready(&mut transport));
    tokio::time::advance(std::time::Duration::from_millis(100)).await;
    assert!(ready(&mut transport));
    let mut got = 0;
    while rx.try_recv().is_ok() {
        got += 1;
    }
    assert_eq!(got, 5, "every accepted message reached nym");
}

/// nym-sdk's `disconnect` discards what its client still queues; ours drains first, so a
/// FIN written just before reaches the peer (on the fake, whose client leaves the network
/// with whatever it still holds).
#[tokio::test(start_paused = true)]
async fn disconnect_right_after_shutdown_delivers_the_fin_over_nym_types() {
    for seed in [6, 7] {
        let net = FakeNet::new(SimConfig::realistic().with_seed(seed));
        let mut server = fake_client(&net, 50);
        let opener = fake_client(&net, 51);
        scenarios::disconnect_right_after_shutdown(opener, &mut server).await;
    }
}

/// A peer whose gateway vanished, over nym types: the bounded retransmission count the
/// adapter puts on every anonymous message is what stops the network's retries.
#[tokio::test(start_paused = true)]
async fn a_peer_whose_gateway_vanished_fails_the_stream_and_sending_stops_over_nym_types() {
    let net = FakeNet::new(SimConfig {
        loss_probability: 0.0,
        ..SimConfig::realistic().with_seed(8)
    });
    let mut server = fake_client(&net, 60);
    let mut opener = fake_client(&net, 61);
    let server_addr = nym::Recipient::try_from(*server.nym_address()).expect("nym");
    let opener_addr = nym::Recipient::try_from(*opener.nym_address()).expect("nym");
    scenarios::peer_gateway_vanishes(
        &mut opener,
        &mut server,
        || net.vanish(&server_addr),
        || net.stats(&opener_addr),
    )
    .await;
}

/// Round trips of ten 100-byte echoes on one stream while a second stream of the same
/// client uploads (`upload`) or downloads, on a fake whose clients send one packet per
/// `sending` (nym's nominal pace is 20 ms), with or without delay control. Median and
/// the largest.
async fn echo_beside_bulk(
    seed: u64,
    sending: std::time::Duration,
    upload: bool,
    delay_control: bool,
) -> (std::time::Duration, std::time::Duration, f64) {
    use std::time::Duration;
    let net = FakeNet::new(SimConfig {
        send_interval_mean: Some(sending),
        ..SimConfig::realistic().with_seed(seed)
    });
    let mux = nym_stream::mixnet::MuxConfig::default().with_delay_control(delay_control);
    let builder = |id: u64| {
        MixnetClientBuilder::new_ephemeral().with_mux_config(mux.clone().with_id_seed(Some(id)))
    };
    let mut server = fake_client_with(&net, builder(70));
    let mut opener = fake_client_with(&net, builder(71));
    let mut listener = server.listener().expect("listener");
    let up = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let down = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = up.clone();
    tokio::spawn(async move {
        while let Some(mut s) = listener.accept().await {
            let up = counter.clone();
            tokio::spawn(async move {
                // The first byte says what the stream is: `U`pload (read and dropped),
                // `D`ownload (the server writes until the stream fails) or `E`cho.
                let mut kind = [0u8; 1];
                if s.read_exact(&mut kind).await.is_err() {
                    return;
                }
                let (mut rd, mut wr) = s.into_split();
                match kind[0] {
                    b'U' => {
                        let _ = count_into(&mut rd, &up).await;
                    }
                    b'D' => {
                        let _ = wr.write_all(&vec![2u8; 8 << 20]).await;
                    }
                    _ => {
                        let _ = tokio::io::copy(&mut rd, &mut wr).await;
                    }
                }
            });
        }
    });
    let to = *server.nym_address();
    let mut echo = opener.open_stream(to, None).await.expect("open");
    echo.set_nodelay(true);
    echo.write_all(b"E").await.expect("kind");
    let mut bulk = opener.open_stream(to, None).await.expect("open");
    let counter = down.clone();
    let bulk_task = tokio::spawn(async move {
        if upload {
            let _ = bulk.write_all(b"U").await;
            let _ = bulk.write_all(&vec![1u8; 8 << 20]).await;
        } else {
            let _ = bulk.write_all(b"D").await;
            let _ = count_into(&mut bulk, &counter).await;
        }
        bulk
    });
    tokio::time::sleep(Duration::from_secs(20)).await;
    let moved = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let (up0, down0, t0) = (moved(&up), moved(&down), tokio::time::Instant::now());
    let mut rtts = Vec::new();
    for _ in 0..15 {
        let start = tokio::time::Instant::now();
        echo.write_all(&[9u8; 100]).await.expect("write");
        let mut back = [0u8; 100];
        echo.read_exact(&mut back).await.expect("echo");
        rtts.push(start.elapsed());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(!bulk_task.is_finished(), "the bulk ran beside every round");
    bulk_task.abort();
    let bytes = moved(&up) - up0 + moved(&down) - down0;
    let rate = bytes as f64 / t0.elapsed().as_secs_f64();
    rtts.sort();
    (rtts[7], rtts[14], rate)
}

/// Reads `rd` to its end, adding what it read to `count`.
async fn count_into(
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    count: &std::sync::atomic::AtomicU64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        count.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Delay control over nym types, where the adapter cannot see nym's queue. On a link
/// three times slower than nym's nominal pace the pacer hands the client more than it
/// sends: without the controller the interactive stream waits behind seconds of bulk
/// in nym's lanes; with it the pace follows the link. Beside a download the queue is
/// the client's own SURB answers, which the controller leaves alone (none of our data
/// waits), so it changes nothing there.
#[tokio::test(start_paused = true)]
async fn delay_control_follows_a_slow_link_and_leaves_a_download_alone() {
    use std::time::Duration;
    let slow = Duration::from_millis(60);
    let (off, _, off_rate) = echo_beside_bulk(1, slow, true, false).await;
    let (on, _, on_rate) = echo_beside_bulk(1, slow, true, true).await;
    assert!(on * 2 < off, "median {on:?} with, {off:?} without");
    assert!(
        on_rate > off_rate * 0.7,
        "bulk {on_rate:.0} B/s with, {off_rate:.0} B/s without"
    );
    let nominal = Duration::from_millis(20);
    let (off, _, off_rate) = echo_beside_bulk(1, nominal, false, false).await;
    let (on, _, on_rate) = echo_beside_bulk(1, nominal, false, true).await;
    assert_eq!(on, off, "beside a download");
    assert!(
        on_rate >= off_rate * 0.95,
        "{on_rate:.0} vs {off_rate:.0} B/s"
    );
}

/// The figures of BENCHMARKS.md section 4d (paused clock, so they are the same on
/// every machine): `cargo test -p nym-stream --features nym --test nym_fake --
/// --ignored --nocapture delay_control_figures`.
#[tokio::test(start_paused = true)]
#[ignore = "prints figures for docs/BENCHMARKS.md"]
#[allow(
    clippy::print_stdout,
    reason = "printing the figures is this test's job"
)]
async fn delay_control_figures() {
    use std::time::Duration;
    println!("| link | bulk | seed | median off / on | max off / on | bulk KB/s off / on |");
    println!("|---|---|---|---|---|---|");
    for sending in [20u64, 60] {
        for upload in [true, false] {
            for seed in 1..=5 {
                let link = Duration::from_millis(sending);
                let (m0, x0, r0) = echo_beside_bulk(seed, link, upload, false).await;
                let (m1, x1, r1) = echo_beside_bulk(seed, link, upload, true).await;
                println!(
                    "| {sending} ms | {} | {seed} | {:.2} / {:.2} s | {:.2} / {:.2} s | {:.1} / {:.1} |",
                    if upload { "upload" } else { "download" },
                    m0.as_secs_f64(),
                    m1.as_secs_f64(),
                    x0.as_secs_f64(),
                    x1.as_secs_f64(),
                    r0 / 1000.0,
                    r1 / 1000.0,
                );
            }
        }
    }
}
