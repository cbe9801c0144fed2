//! The hub: clients joining a simulated mixnet over a loopback socket. Real time (the
//! hub's clock is the wall clock), every wait bounded.

use std::time::Duration;

use bytes::Bytes;
use mixnet_sim::hub::{Hub, HubConfig};
use mixnet_sim::{Identity, SimClient, SimConfig, SimError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

async fn hub() -> Hub {
    Hub::start(
        HubConfig::new()
            .with_listen("127.0.0.1:0".parse().unwrap())
            .with_sim(SimConfig::instant().with_seed(5)),
    )
    .await
    .expect("a hub on a free loopback port")
}

async fn join(hub: &Hub) -> SimClient {
    SimClient::connect_hub(hub.local_addr(), &Identity::generate())
        .await
        .expect("joins the hub")
}

async fn recv(c: &mut SimClient) -> mixnet_sim::ReceivedMessage {
    timeout(LIMIT, c.recv())
        .await
        .expect("a message in time")
        .expect("still connected")
}

#[tokio::test]
async fn anonymous_messages_and_replies_cross_the_hub() {
    let hub = hub().await;
    let mut alice = join(&hub).await;
    let mut bob = join(&hub).await;
    alice.reserve().await.unwrap();
    alice
        .send_anonymous(bob.address(), Bytes::from_static(b"hello bob"), 25)
        .unwrap();
    let msg = recv(&mut bob).await;
    assert_eq!(&msg.payload[..], b"hello bob");
    let tag = msg.sender_tag.expect("a sender tag");
    // 20 of the 25 are the reserve of bob's client, as in process.
    assert_eq!(bob.surbs_available(&tag), 5);
    bob.send_reply(tag, Bytes::from_static(b"hi")).unwrap();
    let reply = recv(&mut alice).await;
    assert_eq!(&reply.payload[..], b"hi");
    assert_eq!(reply.sender_tag, None);
    // Regular messages too.
    bob.send_regular(alice.address(), Bytes::from_static(b"plain"))
        .unwrap();
    let plain = recv(&mut alice).await;
    assert_eq!(&plain.payload[..], b"plain");
    assert_eq!(plain.sender_tag, None);
    // Statistics arrive with the hub's next update.
    timeout(LIMIT, async {
        while alice.stats().messages_sent < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("stats in time");
    // A reply to a tag never seen is refused at once, as in process.
    assert!(matches!(
        alice.send_reply(mixnet_sim::SenderTag([1; 16]), Bytes::new()),
        Err(SimError::UnknownSenderTag(_))
    ));
    assert_eq!(hub.stats().clients_connected, 2);
}

#[tokio::test]
async fn an_identity_keeps_its_address_and_cannot_join_twice() {
    let hub = hub().await;
    let id = Identity::from_bytes([42; 32]);
    let first = SimClient::connect_hub(hub.local_addr(), &id).await.unwrap();
    assert_eq!(first.address(), id.address());
    let err = SimClient::connect_hub(hub.local_addr(), &id)
        .await
        .expect_err("a second client with the same identity is refused");
    assert!(matches!(err, SimError::HubRefused { .. }), "{err}");
    assert!(err.to_string().contains("same identity"), "{err}");
    // After the first leaves, the identity joins again, at the same address, and
    // messages to that address reach it.
    drop(first);
    let mut again = timeout(LIMIT, async {
        loop {
            match SimClient::connect_hub(hub.local_addr(), &id).await {
                Ok(c) => break c,
                // The hub may not have seen the first connection close yet.
                Err(SimError::HubRefused { .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("rejoins in time");
    assert_eq!(again.address(), id.address());
    let mut other = join(&hub).await;
    other
        .send_anonymous(id.address(), Bytes::from_static(b"still you?"), 1)
        .unwrap();
    assert_eq!(&recv(&mut again).await.payload[..], b"still you?");
}

#[tokio::test]
async fn garbage_and_unknown_versions_are_dropped_while_others_keep_working() {
    let hub = hub().await;
    let mut alice = join(&hub).await;
    let mut bob = join(&hub).await;
    // Garbage: a frame that is no hello.
    let mut junk = tokio::net::TcpStream::connect(hub.local_addr())
        .await
        .unwrap();
    junk.write_all(&[0, 0, 0, 3, 0xde, 0xad, 0xbe])
        .await
        .unwrap();
    // An oversized frame header.
    let mut huge = tokio::net::TcpStream::connect(hub.local_addr())
        .await
        .unwrap();
    huge.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    // A hello of a future protocol version: refused with a reason.
    let mut future = tokio::net::TcpStream::connect(hub.local_addr())
        .await
        .unwrap();
    let mut hello = vec![0, 0, 0, 39, 0x01];
    hello.extend_from_slice(b"NSHB");
    hello.extend_from_slice(&999u16.to_be_bytes());
    hello.extend_from_slice(&[7; 32]);
    future.write_all(&hello).await.unwrap();
    let mut answer = Vec::new();
    timeout(LIMIT, future.read_to_end(&mut answer))
        .await
        .expect("the hub answers and closes")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("version 999 is not supported"), "{text}");
    // The two garbage connections are closed by the hub.
    for mut s in [junk, huge] {
        let mut buf = [0u8; 16];
        let n = timeout(LIMIT, s.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(n, Ok(0) | Err(_)));
    }
    let stats = hub.stats();
    assert_eq!(stats.malformed, 2, "{stats:?}");
    assert_eq!(stats.refused, 1, "{stats:?}");
    // Everyone else is unaffected.
    alice
        .send_anonymous(bob.address(), Bytes::from_static(b"fine"), 0)
        .unwrap();
    assert_eq!(&recv(&mut bob).await.payload[..], b"fine");
}

#[tokio::test]
async fn when_the_hub_goes_away_clients_get_clear_errors_not_hangs() {
    let hub = hub().await;
    let addr = hub.local_addr();
    let mut alice = join(&hub).await;
    hub.shutdown().await;
    // Receiving ends...
    assert!(timeout(LIMIT, alice.recv())
        .await
        .expect("no hang")
        .is_none());
    // ...and every send fails, naming the hub.
    let err = timeout(LIMIT, alice.reserve())
        .await
        .expect("no hang")
        .expect_err("no hub");
    assert!(matches!(err, SimError::HubGone { .. }), "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    let err = alice
        .send_regular(alice.address(), Bytes::new())
        .expect_err("no hub");
    assert!(matches!(err, SimError::HubGone { .. }), "{err}");
    // Joining a hub that is not there says so.
    let err = SimClient::connect_hub(addr, &Identity::generate())
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, SimError::HubUnreachable { .. }), "{err}");
    assert!(err.to_string().contains("nym-stream hub"), "{err}");
}

#[tokio::test]
async fn a_client_that_leaves_is_offline_for_its_peers() {
    let hub = Hub::start(
        HubConfig::new()
            .with_listen("127.0.0.1:0".parse().unwrap())
            .with_sim(SimConfig::instant().with_seed(5))
            .with_max_retransmissions(Some(1)),
    )
    .await
    .expect("a hub on a free loopback port");
    let mut alice = join(&hub).await;
    let bob = join(&hub).await;
    let bob_addr = bob.address();
    drop(bob);
    // Messages to it are never acknowledged: the network retries them up to the hub's
    // limit (10), then gives them up (counted at the sender).
    timeout(LIMIT, async {
        loop {
            alice
                .send_anonymous(bob_addr, Bytes::from_static(b"anyone?"), 0)
                .unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
            if alice.stats().messages_dropped > 0 {
                break;
            }
        }
    })
    .await
    .expect("the network drops messages to a client that left");
    assert_eq!(
        hub.network().stats(&bob_addr).map(|s| s.messages_received),
        Some(0)
    );
}

/// A client that never reads holds back only its own connection: what its full inbox
/// cannot take is dropped and counted by the network, the hub's memory stays bounded, and
/// the sender keeps sending.
#[tokio::test]
async fn a_client_that_does_not_read_gets_its_messages_dropped_and_counted() {
    let hub = hub().await;
    let mut alice = join(&hub).await;
    let bob = join(&hub).await; // never reads
    let bob_addr = bob.address();
    let chunk = Bytes::from(vec![7u8; 1000]);
    timeout(Duration::from_secs(60), async {
        let mut sent = 0u64;
        loop {
            alice.reserve().await.unwrap();
            alice.send_regular(bob_addr, chunk.clone()).unwrap();
            sent += 1;
            if sent % 1000 == 0 {
                let s = hub.network().stats(&bob_addr).unwrap();
                if s.dropped_receiver_full > 0 {
                    break;
                }
                assert!(
                    sent < 200_000,
                    "nothing dropped after {sent} messages: {s:?}"
                );
            }
        }
    })
    .await
    .expect("the network starts dropping in time");
    // Alice is unaffected: a message to a reading client still goes through.
    let mut carol = join(&hub).await;
    alice
        .send_regular(carol.address(), Bytes::from_static(b"still here"))
        .unwrap();
    assert_eq!(&recv(&mut carol).await.payload[..], b"still here");
    drop(bob);
}
