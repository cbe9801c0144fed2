//! Functional behaviour: addresses, tags, SURBs, queues, disconnects, determinism.

mod common;

use common::{index, payload, recv_within};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use mixnet_sim::{
    packets_for, Address, MessageKind, Mixnet, ReceivedMessage, SenderTag, SimClient, SimConfig,
    SimError,
};
use tokio::time::Instant;

fn poll_ready_now(c: &mut SimClient) -> Poll<Result<(), SimError>> {
    let mut cx = Context::from_waker(Waker::noop());
    c.poll_ready(&mut cx)
}

#[test]
fn address_text_round_trips_and_bad_text_is_explained() {
    let a = Address::from_bytes([0xab; 32]);
    let text = a.to_string();
    assert_eq!(text, format!("sim:{}", "ab".repeat(32)));
    assert_eq!(text.parse::<Address>().expect("own display parses"), a);
    assert_eq!(
        text.to_uppercase()
            .replace("SIM:", "sim:")
            .parse::<Address>()
            .expect("upper hex"),
        a
    );

    let no_prefix = "ab".repeat(32).parse::<Address>().expect_err("no prefix");
    assert!(
        no_prefix
            .to_string()
            .contains("missing the \"sim:\" prefix"),
        "{no_prefix}"
    );
    assert!(no_prefix
        .to_string()
        .contains("expected \"sim:\" followed by 64 hex digits"));

    let short = "sim:abcd".parse::<Address>().expect_err("too short");
    assert!(short.to_string().contains("has 4 characters"), "{short}");

    let bad = format!("sim:{}zz", "00".repeat(31));
    let err = bad.parse::<Address>().expect_err("bad digit");
    assert!(err.to_string().contains("'z' at position 66"), "{err}");
    assert_eq!(err.input, bad);

    let non_ascii = format!("sim:{}é", "0".repeat(62));
    assert!(non_ascii.parse::<Address>().is_err());
}

#[test]
fn sender_tag_displays_as_hex() {
    let t = SenderTag([
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 0, 0, 0, 0, 0, 0, 0xff,
    ]);
    assert_eq!(t.to_string(), "0123456789abcdef00000000000000ff");
}

#[test]
fn packet_arithmetic_matches_the_model() {
    assert_eq!(packets_for(0, MessageKind::Regular), 1);
    assert_eq!(packets_for(1602, MessageKind::Regular), 1);
    assert_eq!(packets_for(1603, MessageKind::Regular), 2);
    assert_eq!(packets_for(1601, MessageKind::Reply), 1);
    assert_eq!(packets_for(1602, MessageKind::Reply), 2);
    // 21 + 1164 + 2 = 1187 bytes of overhead for one SURB.
    assert_eq!(
        packets_for(417, MessageKind::Anonymous { reply_surbs: 1 }),
        1
    );
    assert_eq!(
        packets_for(418, MessageKind::Anonymous { reply_surbs: 1 }),
        2
    );
    // A 1 MiB message spans several linked 255-fragment sets; only the count matters.
    assert_eq!(
        packets_for(1 << 20, MessageKind::Regular),
        (((1 << 20) + 2) as u32).div_ceil(1604)
    );
    let huge = (2 + 21 + 1164 * u64::from(u32::MAX)).div_ceil(1604);
    assert_eq!(
        u64::from(packets_for(
            0,
            MessageKind::Anonymous {
                reply_surbs: u32::MAX
            }
        )),
        huge
    );
    assert_eq!(
        mixnet_sim::packets_for_with(1, usize::MAX, MessageKind::Regular),
        u32::MAX,
        "saturates"
    );
}

#[tokio::test(start_paused = true)]
async fn regular_anonymous_and_reply_round_trip_in_instant_mode() {
    // No reserve and no automatic SURB requests, so the accounting below is exact.
    let net = Mixnet::new(SimConfig {
        reply_surb_reserve: 0,
        reply_surb_max_stock: 0,
        ..SimConfig::instant()
    });
    let mut a = net.connect();
    let mut b = net.connect();
    assert_ne!(a.address(), b.address());

    a.send_regular(b.address(), Bytes::from_static(b"plain"))
        .expect("send");
    let m = b.recv().await.expect("delivered");
    assert_eq!(
        m,
        ReceivedMessage {
            payload: Bytes::from_static(b"plain"),
            sender_tag: None
        }
    );

    a.send_anonymous(b.address(), Bytes::from_static(b"anon"), 3)
        .expect("send");
    let m = b.recv().await.expect("delivered");
    let tag = m.sender_tag.expect("tag");
    assert_eq!(b.surbs_available(&tag), 3);
    b.send_reply(tag, Bytes::from_static(b"back"))
        .expect("reply");
    let r = a.recv().await.expect("reply delivered");
    assert_eq!(
        r,
        ReceivedMessage {
            payload: Bytes::from_static(b"back"),
            sender_tag: None
        }
    );

    let sa = a.stats();
    assert_eq!(sa.messages_sent, 2);
    assert_eq!(sa.surbs_attached, 3);
    assert_eq!(
        sa.packets_sent,
        u64::from(
            packets_for(5, MessageKind::Regular)
                + packets_for(4, MessageKind::Anonymous { reply_surbs: 3 })
        )
    );
    assert_eq!(sa.payload_bytes_received, 4);
    let sb = b.stats();
    assert_eq!(sb.surbs_used, 1);
    assert_eq!(sb.surbs_received, 3);
    assert_eq!(sb.messages_received, 2);
    assert_eq!(net.stats(&b.address()), Some(sb));
    assert_eq!(net.stats(&Address::from_bytes([9; 32])), None);
}

#[tokio::test(start_paused = true)]
async fn receiver_never_learns_the_sender_and_tags_differ_per_pair() {
    let net = Mixnet::new(SimConfig::instant().with_seed(3));
    let mut a = net.connect();
    let mut b = net.connect();
    let mut c = net.connect();
    let mut d = net.connect();

    let tag_of = |from: &mut SimClient, to: Address| from.send_anonymous(to, Bytes::new(), 0);
    tag_of(&mut a, c.address()).expect("send");
    tag_of(&mut b, c.address()).expect("send");
    tag_of(&mut a, c.address()).expect("send");
    tag_of(&mut a, d.address()).expect("send");
    let t_ac = c.recv().await.and_then(|m| m.sender_tag).expect("tag");
    let t_bc = c.recv().await.and_then(|m| m.sender_tag).expect("tag");
    let t_ac2 = c.recv().await.and_then(|m| m.sender_tag).expect("tag");
    let t_ad = d.recv().await.and_then(|m| m.sender_tag).expect("tag");
    assert_eq!(t_ac, t_ac2, "stable per pair");
    assert_ne!(t_ac, t_bc, "different senders, different tags");
    assert_ne!(t_ac, t_ad, "different recipients, different tags");
    // The tag shares nothing with the sender's address bytes.
    for t in [t_ac, t_ad] {
        assert!(!a.address().as_bytes().windows(16).any(|w| w == t.0));
    }
    // A tag is only usable by the recipient it was issued to.
    assert!(
        matches!(d.send_reply(t_ac, Bytes::new()), Err(SimError::UnknownSenderTag(t)) if t == t_ac)
    );
    let unknown = SenderTag([7; 16]);
    let err = c
        .send_reply(unknown, Bytes::new())
        .expect_err("unknown tag");
    assert!(err.to_string().contains("07070707"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn replies_stall_without_surbs_until_more_arrive() {
    let cfg = SimConfig {
        reply_surb_reserve: 0,
        reply_surb_max_stock: 0,
        loss_probability: 0.0,
        ..SimConfig::realistic()
    };
    let net = Mixnet::new(cfg);
    let mut a = net.connect();
    let mut b = net.connect();
    a.send_anonymous(b.address(), Bytes::from_static(b"q"), 2)
        .expect("send");
    let tag = b.recv().await.and_then(|m| m.sender_tag).expect("tag");
    assert_eq!(b.surbs_available(&tag), 2);

    // Needs 3 packets = 3 SURBs: two leave (as nym sends what the stock allows), the
    // third waits, and the client's own requests are off.
    let big = payload(1, 4000);
    assert_eq!(packets_for(big.len(), MessageKind::Reply), 3);
    b.send_reply(tag, big.clone()).expect("queued");
    // A later small reply must not overtake the waiting one (FIFO per tag).
    b.send_reply(tag, payload(2, 10)).expect("queued");
    assert!(
        recv_within(&mut a, Duration::from_secs(5)).await.is_none(),
        "stalled"
    );
    assert_eq!(b.surbs_available(&tag), 0);
    assert_eq!(b.stats().surbs_used, 2);
    assert_eq!(b.stats().packets_sent, 2);

    a.send_anonymous(b.address(), Bytes::from_static(b"more"), 5)
        .expect("send");
    assert_eq!(
        b.recv().await.map(|m| m.payload),
        Some(Bytes::from_static(b"more"))
    );
    let mut got = vec![];
    for _ in 0..2 {
        got.push(
            recv_within(&mut a, Duration::from_secs(60))
                .await
                .expect("reply"),
        );
    }
    got.sort_by_key(index);
    assert_eq!(got[0].payload, big);
    assert_eq!(index(&got[1]), 2);
    assert_eq!(b.surbs_available(&tag), 3);
    assert_eq!(b.stats().surbs_used, 4);
    assert_eq!(b.stats().surbs_requested, 0);
}

/// Nym's rule: the replier asks while its stock plus what it asked for is below the
/// waiting packets plus its reserve, 10 to 50 SURBs at a time, each request spending a
/// reserve SURB; the reply leaves once the stock is above the reserve.
#[tokio::test(start_paused = true)]
async fn a_stock_at_the_reserve_asks_the_opener_until_the_reply_can_leave() {
    let cfg = SimConfig {
        loss_probability: 0.0,
        ..SimConfig::realistic()
    };
    let net = Mixnet::new(cfg.clone());
    let mut a = net.connect();
    let mut b = net.connect();
    a.send_anonymous(b.address(), Bytes::from_static(b"q"), 2)
        .expect("send");
    let tag = b.recv().await.and_then(|m| m.sender_tag).expect("tag");
    assert_eq!(b.surbs_available(&tag), 0, "2 SURBs are all reserve");

    let start = Instant::now();
    let big = payload(9, 4000);
    b.send_reply(tag, big.clone()).expect("queued");
    let r = recv_within(&mut a, Duration::from_secs(60))
        .await
        .expect("reply after refills");
    assert_eq!(r.payload, big);
    // Three requests and answers (each a round trip) before the stock passed the reserve.
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );
    // stock 2 -> request (1 left, asks 10) -> 11 -> request (10) -> 20 -> request (19)
    // -> 29: 9 above the reserve, the 3 reply packets leave, 26 stay (6 usable).
    let sb = b.stats();
    let sa = a.stats();
    assert_eq!(sb.surbs_requested, 30);
    assert_eq!(sb.surbs_received, 32);
    assert_eq!(sb.surbs_used, 3 + 3, "three requests, three reply packets");
    assert_eq!(b.surbs_available(&tag), 6);
    assert_eq!(sa.surbs_attached, 32);
    // The answers cost the opener real packets.
    let answer = packets_for(0, MessageKind::Anonymous { reply_surbs: 10 });
    assert_eq!(
        sa.packets_sent,
        u64::from(packets_for(1, MessageKind::Anonymous { reply_surbs: 2 }) + 3 * answer)
    );
    assert_eq!(sb.packets_sent, 3 + 3);
    // The answers are not shown to the application.
    assert!(recv_within(&mut b, Duration::from_secs(10)).await.is_none());
}

/// With no SURB at all the client cannot even ask (its request is a reply): it counts its
/// re-requests every check, and drops the waiting reply at the check after the sixth,
/// about 45 s after the last SURB (nym's `inspect_stale_pending_data`).
#[tokio::test(start_paused = true)]
async fn a_reply_without_any_surb_is_dropped_after_the_rerequests() {
    let net = Mixnet::new(SimConfig::instant());
    let mut a = net.connect();
    let mut b = net.connect();
    a.send_anonymous(b.address(), Bytes::from_static(b"q"), 0)
        .expect("send");
    let tag = b.recv().await.and_then(|m| m.sender_tag).expect("tag");
    let start = Instant::now();
    b.send_reply(tag, Bytes::from_static(b"r"))
        .expect("accepted");
    tokio::time::sleep(Duration::from_secs(39)).await;
    assert_eq!(b.stats().replies_dropped, 0, "still waiting at 39 s");
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(b.stats().replies_dropped, 1, "dropped by 50 s");
    assert_eq!(b.stats().packets_sent, 0, "nothing could leave");
    assert!(recv_within(&mut a, Duration::from_secs(1)).await.is_none());
    assert!(start.elapsed() >= Duration::from_secs(50));
}

/// Every SURB that arrives starts the count of re-requests over: a replier whose opener
/// keeps answering never drops its waiting replies.
#[tokio::test(start_paused = true)]
async fn arriving_surbs_reset_the_rerequest_count() {
    // The opener never answers, so only the trickle below brings SURBs.
    let cfg = SimConfig {
        surb_answer_max: 0,
        ..SimConfig::instant()
    };
    let net = Mixnet::new(cfg);
    let mut a = net.connect();
    let mut b = net.connect();
    a.send_anonymous(b.address(), Bytes::new(), 0)
        .expect("send");
    let tag = b.recv().await.and_then(|m| m.sender_tag).expect("tag");
    b.send_reply(tag, Bytes::from_static(b"waits"))
        .expect("accepted");
    // A trickle of SURBs below the reserve, every 30 s, for two minutes.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(30)).await;
        a.send_anonymous(b.address(), Bytes::new(), 1)
            .expect("send");
        let _ = b.recv().await;
    }
    assert_eq!(b.stats().replies_dropped, 0);
    // Enough to pass the reserve: the reply leaves.
    a.send_anonymous(b.address(), Bytes::new(), 30)
        .expect("send");
    let _ = b.recv().await;
    let r = recv_within(&mut a, Duration::from_secs(5))
        .await
        .expect("reply");
    assert_eq!(&r.payload[..], b"waits");
}

#[tokio::test(start_paused = true)]
async fn waiting_reply_is_dropped_after_the_timeout() {
    let cfg = SimConfig {
        reply_surb_reserve: 0,
        reply_surb_max_stock: 0,
        ..SimConfig::instant()
    };
    let net = Mixnet::new(cfg);
    let mut a = net.connect();
    let mut b = net.connect();
    a.send_anonymous(b.address(), Bytes::new(), 0)
        .expect("send");
    let tag = b.recv().await.and_then(|m| m.sender_tag).expect("tag");
    b.send_reply(tag, Bytes::from_static(b"late"))
        .expect("queued");
    tokio::time::sleep(Duration::from_secs(301)).await;
    assert_eq!(b.stats().replies_dropped, 1);
    // SURBs arriving afterwards do not resurrect it.
    a.send_anonymous(b.address(), Bytes::new(), 5)
        .expect("send");
    let _ = b.recv().await;
    assert!(recv_within(&mut a, Duration::from_secs(10)).await.is_none());
    assert_eq!(b.surbs_available(&tag), 5);
}

#[tokio::test(start_paused = true)]
async fn outbound_queue_is_bounded() {
    let cfg = SimConfig {
        outbound_queue_packets: 64,
        input_channel_batches: 1_000,
        loss_probability: 0.0,
        ..SimConfig::realistic()
    };
    let net = Mixnet::new(cfg);
    let mut a = net.connect();
    let b = net.connect();
    let mut accepted = 0;
    while let Poll::Ready(r) = poll_ready_now(&mut a) {
        r.expect("connected");
        a.send_regular(b.address(), payload(accepted, 10))
            .expect("send");
        accepted += 1;
        assert!(accepted <= 64, "the bound was not enforced");
    }
    assert_eq!(accepted, 64);
    // The queue drains at the pacing rate and readiness comes back.
    let t0 = Instant::now();
    a.reserve().await.expect("ready again");
    assert!(t0.elapsed() > Duration::ZERO);
    assert!(a.stats().packets_sent >= 1);
    // A multi-packet message may overshoot by its own size (documented).
    a.send_regular(b.address(), payload(0, 20_000))
        .expect("overshoot allowed");
    assert!(poll_ready_now(&mut a).is_pending());
}

/// Nym's sending loop takes one whole message per tick from a channel of 8: a sender is held
/// back by the number of messages waiting, whatever their size.
#[tokio::test(start_paused = true)]
async fn the_sending_loop_admits_one_whole_message_per_tick() {
    let net = Mixnet::new(SimConfig {
        loss_probability: 0.0,
        ..SimConfig::realistic()
    });
    let mut a = net.connect();
    let mut b = net.connect();
    // Eight one-packet messages fill the channel.
    let mut accepted = 0;
    while poll_ready_now(&mut a).is_ready() {
        a.send_regular(b.address(), payload(accepted, 10))
            .expect("send");
        accepted += 1;
        assert!(accepted <= 8, "the channel bound was not enforced");
    }
    assert_eq!(accepted, 8);
    // One tick admits one message: room for exactly one more.
    a.reserve().await.expect("ready again");
    a.send_regular(b.address(), payload(8, 10)).expect("send");
    assert!(poll_ready_now(&mut a).is_pending());
    for _ in 0..9 {
        recv_within(&mut b, Duration::from_secs(10))
            .await
            .expect("every message arrives");
    }
    // A 60-packet message is one batch: after it is admitted the channel is free again
    // although its packets take ~1.2 s of link.
    a.send_regular(b.address(), payload(9, 60 * 1604 - 2))
        .expect("send");
    let t0 = Instant::now();
    a.reserve().await.expect("ready");
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    let m = recv_within(&mut b, Duration::from_secs(10))
        .await
        .expect("arrives");
    assert!(
        t0.elapsed() > Duration::from_millis(600),
        "sent packet by packet"
    );
    assert_eq!(index(&m), 9);
}

#[tokio::test(start_paused = true)]
async fn inbound_queue_is_bounded_and_overflow_is_counted() {
    let cfg = SimConfig {
        inbound_queue_messages: 5,
        ..SimConfig::instant()
    };
    let net = Mixnet::new(cfg);
    let mut a = net.connect();
    let mut b = net.connect();
    for i in 0..8 {
        a.send_regular(b.address(), payload(i, 4)).expect("send");
    }
    let mut got = vec![];
    while let Some(m) = recv_within(&mut b, Duration::from_millis(10)).await {
        got.push(index(&m));
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    assert_eq!(b.stats().dropped_receiver_full, 3);
    assert_eq!(a.stats().messages_dropped, 3);
}

#[tokio::test(start_paused = true)]
async fn disconnect_makes_the_address_unreachable() {
    let net = Mixnet::new(SimConfig {
        loss_probability: 0.0,
        forward_max_retries: Some(2),
        ..SimConfig::realistic()
    });
    let mut a = net.connect();
    let b = net.connect();
    let b_addr = b.address();
    b.disconnect();
    a.send_regular(b_addr, Bytes::from_static(b"anyone?"))
        .expect("sending still works");
    a.send_regular(Address::from_bytes([1; 32]), Bytes::from_static(b"nobody"))
        .expect("send");
    tokio::time::sleep(Duration::from_secs(30)).await;
    // Never acknowledged: each packet is sent once and retransmitted twice, then given up.
    assert_eq!(a.stats().messages_dropped, 2);
    assert_eq!(a.stats().packets_sent, 6);
    assert_eq!(a.stats().packets_retransmitted, 4);
    assert!(net.stats(&b_addr).is_some(), "stats survive the disconnect");

    // A forced disconnect: the handle reports it.
    let a_addr = a.address();
    assert!(net.disconnect_client(&a_addr));
    assert!(!net.disconnect_client(&a_addr));
    assert!(matches!(
        a.send_regular(b_addr, Bytes::new()),
        Err(SimError::Disconnected)
    ));
    assert!(matches!(a.reserve().await, Err(SimError::Disconnected)));
    assert_eq!(a.recv().await, None);
    assert!(SimError::Disconnected.to_string().contains("disconnected"));
}

/// Nym retries anonymous messages without limit: to a client whose gateway vanished they go
/// on forever, unless the client set its own limit (as our adapters do).
#[tokio::test(start_paused = true)]
async fn packets_to_a_vanished_client_are_retried_until_the_senders_limit() {
    let net = Mixnet::new(SimConfig {
        loss_probability: 0.0,
        ..SimConfig::realistic()
    });
    let mut unlimited = net.connect();
    let mut limited = net.connect();
    limited.set_max_retransmissions(Some(3));
    let gone = net.connect();
    let gone_addr = gone.address();
    gone.disconnect();
    unlimited
        .send_anonymous(gone_addr, Bytes::from_static(b"hello?"), 0)
        .expect("send");
    limited
        .send_anonymous(gone_addr, Bytes::from_static(b"hello?"), 0)
        .expect("send");
    tokio::time::sleep(Duration::from_secs(120)).await;
    let (u, l) = (unlimited.stats(), limited.stats());
    assert_eq!(l.packets_sent, 4, "one send and three retransmissions");
    assert_eq!(l.messages_dropped, 1);
    assert_eq!(u.messages_dropped, 0, "never given up");
    let sent_at_2min = u.packets_sent;
    assert!(sent_at_2min > 30, "retried every ~1.7 s: {sent_at_2min}");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(unlimited.stats().packets_sent > sent_at_2min + 15);
    assert_eq!(limited.stats().packets_sent, 4);
}

#[tokio::test(start_paused = true)]
async fn forced_disconnect_wakes_a_pending_receiver() {
    let net = Mixnet::new(SimConfig::realistic());
    let mut a = net.connect();
    let addr = a.address();
    let waiter = tokio::spawn(async move { a.recv().await });
    tokio::task::yield_now().await;
    net.disconnect_client(&addr);
    assert_eq!(waiter.await.expect("task"), None);
}

#[tokio::test(start_paused = true)]
async fn too_large_messages_are_refused() {
    let cfg = SimConfig {
        max_message_len: 10_000,
        ..SimConfig::instant()
    };
    let net = Mixnet::new(cfg);
    let mut a = net.connect();
    let b = net.connect();
    a.send_regular(b.address(), payload(0, 9_998))
        .expect("fits exactly");
    let err = a
        .send_regular(b.address(), payload(0, 9_999))
        .expect_err("too large");
    assert!(matches!(
        err,
        SimError::MessageTooLarge {
            framed_len: 10_001,
            max: 10_000
        }
    ));
    // SURBs count towards the size.
    assert!(a.send_anonymous(b.address(), Bytes::new(), 9).is_err());
    assert!(a.send_anonymous(b.address(), Bytes::new(), 8).is_ok());
    assert!(err
        .to_string()
        .contains("exceeds the maximum of 10000 bytes"));
}

#[tokio::test(start_paused = true)]
async fn duplicates_knob_delivers_twice() {
    // No reserve and no SURB requests: the stock below counts only what was attached.
    let cfg = SimConfig {
        duplicate_probability: 1.0,
        loss_probability: 0.0,
        reply_surb_reserve: 0,
        reply_surb_max_stock: 0,
        ..SimConfig::realistic()
    };
    let net = Mixnet::new(cfg);
    let mut a = net.connect();
    let mut b = net.connect();
    for i in 0..10 {
        a.send_anonymous(b.address(), payload(i, 8), 1)
            .expect("send");
    }
    let mut counts = [0u32; 10];
    while let Some(m) = recv_within(&mut b, Duration::from_secs(30)).await {
        counts[index(&m) as usize] += 1;
    }
    assert_eq!(counts, [2; 10]);
    // SURBs are single-use: duplicates do not double the stock.
    let tag = {
        a.send_anonymous(b.address(), payload(99, 8), 0)
            .expect("send");
        b.recv().await.and_then(|m| m.sender_tag).expect("tag")
    };
    assert_eq!(b.surbs_available(&tag), 10);

    // By default nothing is duplicated.
    let net = Mixnet::new(SimConfig::realistic());
    let mut a = net.connect();
    let mut b = net.connect();
    for i in 0..200 {
        a.reserve().await.expect("ready");
        a.send_regular(b.address(), payload(i, 8)).expect("send");
    }
    let mut n = 0;
    while recv_within(&mut b, Duration::from_secs(30)).await.is_some() {
        n += 1;
    }
    assert_eq!(n, 200);
}

#[tokio::test(start_paused = true)]
async fn client_is_a_stream() {
    let net = Mixnet::new(SimConfig::instant());
    let mut a = net.connect();
    let mut b = net.connect();
    a.send_regular(b.address(), Bytes::from_static(b"s"))
        .expect("send");
    assert_eq!(
        b.next().await.map(|m| m.payload),
        Some(Bytes::from_static(b"s"))
    );
}

/// Same seed and calls: identical (time, payload) trace. Another seed: a different one.
#[tokio::test(start_paused = true)]
async fn same_seed_replays_exactly() {
    async fn trace(seed: u64) -> Vec<(Duration, u32)> {
        let net = Mixnet::new(SimConfig::hostile().with_seed(seed));
        let mut a = net.connect();
        let mut b = net.connect();
        let start = Instant::now();
        for i in 0..100 {
            a.reserve().await.expect("ready");
            a.send_anonymous(b.address(), payload(i, 100 + 37 * i as usize), 1)
                .expect("send");
        }
        let mut out = vec![];
        while let Some(m) = recv_within(&mut b, Duration::from_secs(120)).await {
            out.push((start.elapsed(), index(&m)));
        }
        out
    }
    let one = trace(42).await;
    let two = trace(42).await;
    let other = trace(43).await;
    assert!(
        one.len() >= 100,
        "every message arrives (some twice): {}",
        one.len()
    );
    assert_eq!(one, two);
    assert_ne!(one, other);
}

#[tokio::test(start_paused = true)]
async fn dropping_everything_stops_the_network_task() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    {
        let net = Mixnet::new(SimConfig::realistic());
        let mut a = net.connect();
        let b = net.connect();
        a.send_regular(b.address(), payload(0, 50_000))
            .expect("send");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(metrics.num_alive_tasks(), before + 1);
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(metrics.num_alive_tasks(), before);
}

#[tokio::test(start_paused = true)]
async fn instant_mode_moves_many_bytes_with_exact_accounting() {
    let net = Mixnet::new(SimConfig::instant());
    let mut a = net.connect();
    let mut b = net.connect();
    let chunk = Bytes::from(vec![0x5a; 16 * 1024]);
    let total: u64 = 32 << 20;
    let n = total / chunk.len() as u64;
    let mut received = 0u64;
    for _ in 0..n {
        a.reserve().await.expect("ready");
        a.send_regular(b.address(), chunk.clone()).expect("send");
        received += b.recv().await.expect("delivered").payload.len() as u64;
    }
    assert_eq!(received, total);
    let s = a.stats();
    assert_eq!(
        s.packets_sent,
        n * u64::from(packets_for(chunk.len(), MessageKind::Regular))
    );
    assert_eq!(s.packets_retransmitted, 0);
    assert_eq!(b.stats().payload_bytes_received, total);
}

/// Messages arriving within one batch window reach the application as nym's client hands
/// a batch over: regrouped (plain, repliable, replies) and then reversed.
#[tokio::test(start_paused = true)]
async fn a_batch_arrives_regrouped_and_reversed() {
    let cfg = SimConfig {
        loss_probability: 0.0,
        mean_hop_delay: Duration::ZERO,
        link_median: Duration::ZERO,
        send_interval_mean: None,
        delivery_batch: Some(Duration::from_millis(20)),
        ..SimConfig::realistic()
    };
    let net = Mixnet::new(cfg);
    let mut a = net.connect();
    let mut b = net.connect();
    for i in 0..5 {
        a.send_regular(b.address(), payload(i, 8)).expect("send");
    }
    let mut order = Vec::new();
    for _ in 0..5 {
        order.push(index(&b.recv().await.expect("delivered")));
    }
    assert_eq!(order, [4, 3, 2, 1, 0]);

    // Mixed kinds in one batch: plain first and repliable next, then all reversed.
    a.send_anonymous(b.address(), payload(10, 8), 30)
        .expect("send");
    a.send_regular(b.address(), payload(11, 8)).expect("send");
    a.send_anonymous(b.address(), payload(12, 8), 30)
        .expect("send");
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = b.recv().await.expect("delivered");
        got.push((index(&m), m.sender_tag.is_some()));
    }
    assert_eq!(got, [(12, true), (10, true), (11, false)]);

    // Without a batch window, arrival order.
    let net = Mixnet::new(SimConfig {
        delivery_batch: None,
        ..net.config().clone()
    });
    let mut a = net.connect();
    let mut b = net.connect();
    for i in 0..5 {
        a.send_regular(b.address(), payload(i, 8)).expect("send");
    }
    let mut order = Vec::new();
    for _ in 0..5 {
        order.push(index(&b.recv().await.expect("delivered")));
    }
    assert_eq!(order, [0, 1, 2, 3, 4]);
}

/// A client's own send-queue bound holds below the network's, and lifting it restores
/// the network's.
#[tokio::test(start_paused = true)]
async fn a_clients_own_send_queue_limit_holds() {
    let net = Mixnet::new(SimConfig {
        loss_probability: 0.0,
        ..SimConfig::realistic()
    });
    let mut a = net.connect();
    let b = net.connect();
    a.set_send_queue_limit(Some(3));
    let mut accepted = 0;
    while poll_ready_now(&mut a).is_ready() {
        a.send_regular(b.address(), payload(accepted, 8))
            .expect("send");
        accepted += 1;
        assert!(accepted < 100, "never pushed back");
    }
    assert_eq!(accepted, 3, "one packet each, three queued");
    a.set_send_queue_limit(None);
    assert!(
        poll_ready_now(&mut a).is_ready(),
        "the network's bound is 1024"
    );
}
