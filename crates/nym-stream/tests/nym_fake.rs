//! The `nym` feature, offline: our full stack (facade, multiplexer, [`NymTransport`]) over
//! an in-process fake of nym-sdk's message API built from real nym types: `Recipient`s from
//! freshly generated keys, `AnonymousSenderTag`s, `InputMessage`s in, and
//! `ReconstructedMessage`s out. The fake routes between its clients with random per-message
//! delays (so messages overtake one another), hands out one sender tag per
//! (sender, recipient) pair, routes replies by tag without revealing the sender's address,
//! and has a bounded input channel like nym-sdk's.
#![cfg(feature = "nym")]

mod scenarios;

mod common;

use common::spawn_echo_server;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;
use mux::{Destination, Transport};
use nym_stream::mixnet::{
    Error, MixnetClient, MixnetClientBuilder, MixnetMessageSender, Recipient,
};
use nym_stream::nym::nym_sdk::mixnet::{
    self as nym, ed25519, x25519, AnonymousSenderTag, InputMessage, ReconstructedMessage,
};
use nym_stream::nym::{sender_tag_from_nym, sender_tag_to_nym, NymTransport};
use rand::{Rng, RngCore, SeedableRng};
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

/// One fake client's mailbox: messages delivered and not yet taken.
#[derive(Default)]
struct Inbox {
    queue: VecDeque<ReconstructedMessage>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Counters {
    anonymous: u64,
    replies: u64,
    surbs_attached: u64,
}

struct NetState {
    rng: ChaCha8Rng,
    /// Inboxes by the recipient's byte form.
    inboxes: HashMap<[u8; nym::Recipient::LEN], Inbox>,
    /// The tag a sender gets at a recipient, per (sender, recipient).
    tags: HashMap<([u8; nym::Recipient::LEN], [u8; nym::Recipient::LEN]), AnonymousSenderTag>,
    /// Who is behind a tag (the fake's secret: the receiver never sees it).
    tag_owner: HashMap<[u8; 16], [u8; nym::Recipient::LEN]>,
    counters: Counters,
}

/// The fake network: per-message delays of 0..max_delay, so messages reorder.
#[derive(Clone)]
struct FakeNet {
    state: Arc<Mutex<NetState>>,
    max_delay_ms: u64,
}

impl FakeNet {
    fn new(seed: u64, max_delay_ms: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(NetState {
                rng: ChaCha8Rng::seed_from_u64(seed),
                inboxes: HashMap::new(),
                tags: HashMap::new(),
                tag_owner: HashMap::new(),
                counters: Counters::default(),
            })),
            max_delay_ms,
        }
    }

    /// A fake nym-sdk client: its address, a sender (bounded input channel of `capacity`
    /// messages, drained by a "gateway" task) and a receiver.
    fn join(&self, capacity: usize) -> (nym::Recipient, FakeSender, FakeReceiver) {
        let me = {
            let mut st = self.state.lock().unwrap();
            let me = generate_recipient(&mut st.rng);
            st.inboxes.insert(me.to_bytes(), Inbox::default());
            me
        };
        let (tx, mut rx) = mpsc::channel::<InputMessage>(capacity);
        let net = self.clone();
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                net.route(me, msg);
            }
        });
        (
            me,
            FakeSender { tx },
            FakeReceiver {
                net: self.clone(),
                me,
            },
        )
    }

    /// Sends one input message on its way, as the client `from` would.
    fn route(&self, from: nym::Recipient, msg: InputMessage) {
        let msg = match msg {
            InputMessage::MessageWrapper { message, .. } => *message,
            other => other,
        };
        let mut st = self.state.lock().unwrap();
        let (to, delivered) = match msg {
            InputMessage::Anonymous {
                recipient,
                data,
                reply_surbs,
                ..
            } => {
                st.counters.anonymous += 1;
                st.counters.surbs_attached += u64::from(reply_surbs);
                let key = (from.to_bytes(), recipient.to_bytes());
                let tag = match st.tags.get(&key) {
                    Some(tag) => *tag,
                    None => {
                        let mut bytes = [0u8; 16];
                        st.rng.fill_bytes(&mut bytes);
                        let tag = AnonymousSenderTag::from_bytes(bytes);
                        st.tags.insert(key, tag);
                        st.tag_owner.insert(bytes, from.to_bytes());
                        tag
                    }
                };
                (
                    recipient.to_bytes(),
                    ReconstructedMessage {
                        message: data,
                        sender_tag: Some(tag),
                    },
                )
            }
            InputMessage::Reply {
                recipient_tag,
                data,
                ..
            } => {
                st.counters.replies += 1;
                let Some(owner) = st.tag_owner.get(&recipient_tag.to_bytes()).copied() else {
                    return; // An unknown tag: the real network loses it too.
                };
                (
                    owner,
                    ReconstructedMessage {
                        message: data,
                        sender_tag: None,
                    },
                )
            }
            InputMessage::Regular {
                recipient, data, ..
            } => (
                recipient.to_bytes(),
                ReconstructedMessage {
                    message: data,
                    sender_tag: None,
                },
            ),
            // Neither premade packets nor nested wrappers come from the adapter.
            _ => return,
        };
        let delay = Duration::from_millis(st.rng.gen_range(0..=self.max_delay_ms));
        drop(st);
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut st = state.lock().unwrap();
            if let Some(inbox) = st.inboxes.get_mut(&to) {
                inbox.queue.push_back(delivered);
                if let Some(w) = inbox.waker.take() {
                    w.wake();
                }
            }
        });
    }

    fn counters(&self) -> (u64, u64, u64) {
        let st = self.state.lock().unwrap();
        (
            st.counters.anonymous,
            st.counters.replies,
            st.counters.surbs_attached,
        )
    }
}

/// The sending half of a fake client: a bounded channel, like nym-sdk's client input.
struct FakeSender {
    tx: mpsc::Sender<InputMessage>,
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
            self.tx
                .send(message)
                .await
                .map_err(|_| nym_stream::nym::nym_sdk::Error::MessageSendingFailure)
        })
    }
}

/// The receiving half of a fake client: a stream of reconstructed messages.
struct FakeReceiver {
    net: FakeNet,
    me: nym::Recipient,
}

impl Stream for FakeReceiver {
    type Item = ReconstructedMessage;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut st = self.net.state.lock().unwrap();
        let Some(inbox) = st.inboxes.get_mut(&self.me.to_bytes()) else {
            return Poll::Ready(None);
        };
        match inbox.queue.pop_front() {
            Some(m) => Poll::Ready(Some(m)),
            None => {
                inbox.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

fn fake_client_with(net: &FakeNet, builder: MixnetClientBuilder) -> MixnetClient {
    let (addr, sender, receiver) = net.join(64);
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
    let net = FakeNet::new(1, 80);
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
    let net = FakeNet::new(2, 60);
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
    let net = FakeNet::new(3, 40);
    let mut c = fake_client(&net, 20);
    let mut server = fake_client(&net, 21);
    scenarios::close_reset_and_drop(&mut c, &mut server).await;
}

#[tokio::test(start_paused = true)]
async fn plain_messages_and_replies_coexist_with_streams() {
    let net = FakeNet::new(4, 30);
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
    let net = FakeNet::new(5, 10);
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
    let (_, _, receiver) = FakeNet::new(9, 0).join(1);
    let mut transport = NymTransport::new(me, FakeSender { tx }, receiver);

    let ready = |t: &mut NymTransport<FakeSender, FakeReceiver>| {
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
/// 20 ms, a burst of 25 packets), charging each with the packets it takes, so frames
/// wait in the multiplexer instead of inside the client where our timers cannot see them.
#[tokio::test(start_paused = true)]
async fn hand_offs_are_paced_by_packet_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let me = generate_recipient(&mut rng);
    let peer = Recipient::from(generate_recipient(&mut rng));
    let (tx, mut rx) = mpsc::channel::<InputMessage>(1000);
    let (_, _, receiver) = FakeNet::new(11, 0).join(1);
    let mut transport = NymTransport::new(me, FakeSender { tx }, receiver);
    let ready = |t: &mut NymTransport<FakeSender, FakeReceiver>| {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(t.poll_ready(&mut cx), Poll::Ready(Ok(())))
    };
    // One-packet messages: the burst of 25, and one more on the last token.
    let mut accepted = 0;
    while ready(&mut transport) {
        transport
            .send(Destination::Address(peer), "x".into(), 0)
            .unwrap();
        accepted += 1;
        assert!(accepted < 100, "never paced");
    }
    assert_eq!(accepted, 26);
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
    assert_eq!(got, 27, "every accepted message reached nym");
}
