//! Statistical checks of the network model against its configured figures.
//!
//! Each tolerance is several standard deviations of the quantity measured, so a correct model
//! passes for any seed and a wrong mean, rate or loss figure fails.

mod common;

use common::{index, payload, recv_within};
use std::time::Duration;

use bytes::Bytes;
use mixnet_sim::{
    packets_for, sample_hop_delay, sample_lognormal, sample_route_delay, MessageKind, Mixnet,
    SimConfig,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

fn within(measured: f64, expected: f64, rel: f64) -> bool {
    (measured - expected).abs() <= rel * expected
}

#[test]
fn sampled_delays_have_the_configured_means() {
    let cfg = SimConfig::realistic();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let n = 200_000;
    // Exponential hops: sd = mean, so the sample mean's relative sd is 1/sqrt(n) = 0.22%.
    let hop: f64 = (0..n)
        .map(|_| sample_hop_delay(&cfg, &mut rng).as_secs_f64())
        .sum::<f64>()
        / n as f64;
    assert!(within(hop, 0.015, 0.02), "mean hop delay {hop}");

    // Lognormal links: the median is the configured one.
    let mut links: Vec<f64> = (0..n)
        .map(|_| sample_lognormal(cfg.link_median, cfg.link_sigma, &mut rng).as_secs_f64())
        .collect();
    links.sort_by(f64::total_cmp);
    let median = links[n / 2];
    assert!(within(median, 0.030, 0.02), "link median {median}");
    let link_mean = links.iter().sum::<f64>() / n as f64;
    assert!(
        within(link_mean, cfg.mean_link_delay().as_secs_f64(), 0.02),
        "link mean {link_mean}"
    );

    let route: f64 = (0..n / 4)
        .map(|_| sample_route_delay(&cfg, &mut rng).as_secs_f64())
        .sum::<f64>()
        / (n / 4) as f64;
    let expected = cfg.mean_route_delay().as_secs_f64();
    assert!(
        within(expected, 0.249, 0.01),
        "analytic route mean {expected}"
    );
    assert!(
        within(route, expected, 0.02),
        "route mean {route} vs {expected}"
    );

    // The clamp holds.
    let clamped = SimConfig {
        max_hop_delay: Duration::from_millis(5),
        ..cfg
    };
    assert!((0..10_000).all(|_| sample_hop_delay(&clamped, &mut rng) <= Duration::from_millis(5)));
    assert!(clamped.mean_hop_delay_clamped() < Duration::from_millis(5));
}

/// End to end through the network: mean latency of single-packet messages without pacing or
/// loss equals the analytic route mean; and messages overtake one another.
#[tokio::test(start_paused = true)]
async fn end_to_end_latency_matches_route_model_and_reorders() {
    // Per-message latency: no delivery batches (they hold messages up to 20 ms).
    let cfg = SimConfig {
        send_interval_mean: None,
        loss_probability: 0.0,
        delivery_batch: None,
        ..SimConfig::realistic().with_seed(5)
    };
    let expected = cfg.mean_route_delay().as_secs_f64();
    let net = Mixnet::new(cfg);
    let mut a = net.connect();
    let mut b = net.connect();
    let n = 4000u32;
    let start = Instant::now();
    for i in 0..n {
        a.send_regular(b.address(), payload(i, 16)).expect("send");
    }
    let mut total = 0.0;
    let mut order = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let m = recv_within(&mut b, Duration::from_secs(60))
            .await
            .expect("arrives");
        total += start.elapsed().as_secs_f64();
        order.push(index(&m));
    }
    let mean = total / f64::from(n);
    // Route delay sd is about 80 ms: relative sd of the mean is ~0.5%.
    assert!(
        within(mean, expected, 0.03),
        "mean latency {mean} vs {expected}"
    );
    let inversions = order.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(
        inversions > 100,
        "messages sent together must overtake one another: {inversions}"
    );
}

/// Under realistic pacing, consecutive messages still overtake one another.
#[tokio::test(start_paused = true)]
async fn realistic_preset_reorders_paced_messages() {
    let net = Mixnet::new(SimConfig::realistic().with_seed(8));
    let mut a = net.connect();
    let mut b = net.connect();
    for i in 0..300 {
        a.reserve().await.expect("ready");
        a.send_regular(b.address(), payload(i, 16)).expect("send");
    }
    let mut order = vec![];
    while let Some(m) = recv_within(&mut b, Duration::from_secs(30)).await {
        order.push(index(&m));
    }
    assert_eq!(order.len(), 300);
    let inversions = order.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(
        inversions > 10,
        "paced messages should still reorder: {inversions}"
    );
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..300).collect::<Vec<_>>(), "each exactly once");
}

/// A saturated client emits packets at the configured Poisson rate.
#[tokio::test(start_paused = true)]
async fn saturated_client_sends_at_the_configured_rate() {
    let cfg = SimConfig {
        loss_probability: 0.0,
        ..SimConfig::realistic().with_seed(2)
    };
    let interval = cfg.send_interval_mean.expect("paced");
    let net = Mixnet::new(cfg);
    let mut a = net.connect();
    let b = net.connect();
    // 20 000 packets queued: far more than 300 s can drain.
    a.send_regular(b.address(), payload(0, 20_000 * 1604))
        .expect("send");
    let secs = 300.0;
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let sent = a.stats().packets_sent as f64;
    let expected = secs / interval.as_secs_f64();
    // Poisson count: sd = sqrt(15 000) = 122, i.e. 0.8%.
    assert!(
        within(sent, expected, 0.03),
        "sent {sent} packets, expected about {expected}"
    );
}

/// Loss and retransmission counts follow the configured probability, and every forward
/// message is still delivered.
#[tokio::test(start_paused = true)]
async fn loss_and_retransmissions_match_the_configured_rate() {
    for (cfg, n, rel) in [
        // Expected 500 losses, sd 22 (4.5%).
        (SimConfig::realistic().with_seed(3), 50_000u32, 0.15),
        // Expected 2 220 losses (incl. retransmissions lost again), sd ~47 (2.1%).
        (SimConfig::hostile().with_seed(3), 20_000, 0.08),
    ] {
        let p = cfg.loss_probability;
        // Without pacing, 50,000 messages arrive within a second: delivery batches would
        // hand thousands over at once, beyond the receive queue.
        let cfg = SimConfig {
            send_interval_mean: None,
            duplicate_probability: 0.0,
            delivery_batch: None,
            ..cfg
        };
        let net = Mixnet::new(cfg);
        let mut a = net.connect();
        let mut b = net.connect();
        for i in 0..n {
            a.send_regular(b.address(), payload(i, 8)).expect("send");
        }
        let mut seen = vec![false; n as usize];
        for _ in 0..n {
            let m = recv_within(&mut b, Duration::from_secs(600))
                .await
                .expect("all arrive");
            let i = index(&m) as usize;
            assert!(!seen[i], "no duplicates by default");
            seen[i] = true;
        }
        let s = a.stats();
        assert_eq!(
            s.packets_lost, s.packets_retransmitted,
            "every lost forward packet is resent"
        );
        assert_eq!(s.packets_sent, u64::from(n) + s.packets_retransmitted);
        let rate = s.packets_lost as f64 / s.packets_sent as f64;
        assert!(within(rate, p, rel), "loss rate {rate} vs configured {p}");
        assert_eq!(b.stats().messages_received, u64::from(n));
    }
}

/// A lost packet comes back after the acknowledgement timeout plus its route delay: with 50%
/// loss a message is lost p/(1-p) = 1 time on average, so the mean latency is
/// 2 · route + 1 · timeout.
#[tokio::test(start_paused = true)]
async fn retransmission_delay_follows_the_ack_timeout() {
    let cfg = SimConfig {
        send_interval_mean: None,
        loss_probability: 0.5,
        ..SimConfig::realistic().with_seed(4)
    };
    let route = cfg.mean_route_delay().as_secs_f64();
    let expected = 2.0 * route + cfg.retransmit_timeout.as_secs_f64();
    let net = Mixnet::new(cfg);
    let mut a = net.connect();
    let mut b = net.connect();
    let n = 4000u32;
    let start = Instant::now();
    for i in 0..n {
        a.send_regular(b.address(), payload(i, 8)).expect("send");
    }
    let mut total = 0.0;
    let mut fast = 0;
    for _ in 0..n {
        recv_within(&mut b, Duration::from_secs(600))
            .await
            .expect("arrives");
        let t = start.elapsed().as_secs_f64();
        total += t;
        if t < 1.5 {
            fast += 1;
        }
    }
    let mean = total / f64::from(n);
    // Latency sd ~1.9 s: relative sd of the mean ~1.5%.
    assert!(
        within(mean, expected, 0.06),
        "mean latency {mean} vs {expected}"
    );
    // Only never-lost messages can beat the timeout: about half.
    assert!(
        within(f64::from(fast), f64::from(n) / 2.0, 0.08),
        "fast {fast}"
    );
}

/// Replies are retried at most `reply_max_retries` times, then dropped and counted.
#[tokio::test(start_paused = true)]
async fn replies_give_up_after_the_retry_limit() {
    let cfg = SimConfig {
        send_interval_mean: None,
        loss_probability: 0.5,
        reply_max_retries: 1,
        ..SimConfig::realistic().with_seed(6)
    };
    let net = Mixnet::new(cfg);
    let mut a = net.connect();
    let mut b = net.connect();
    a.send_anonymous(b.address(), Bytes::from_static(b"q"), 2000)
        .expect("send");
    let tag = recv_within(&mut b, Duration::from_secs(600))
        .await
        .and_then(|m| m.sender_tag)
        .expect("arrives");
    let n = 800u32;
    for i in 0..n {
        b.send_reply(tag, payload(i, 8)).expect("reply");
    }
    let mut got = 0u32;
    while recv_within(&mut a, Duration::from_secs(60)).await.is_some() {
        got += 1;
    }
    let dropped = b.stats().replies_dropped;
    assert_eq!(
        u64::from(got) + dropped,
        u64::from(n),
        "each reply arrives or is counted"
    );
    // P(two losses in a row) = 0.25: expected 200, sd 12.
    assert!(within(dropped as f64, 200.0, 0.2), "dropped {dropped}");
    // A retransmitted reply spends a fresh SURB.
    let s = b.stats();
    assert_eq!(s.surbs_used, s.packets_sent);
    assert_eq!(s.packets_sent, u64::from(n) + s.packets_retransmitted);
}

/// A multi-packet message arrives whole or not at all: a sender that disconnects mid-message
/// delivers nothing, one that finishes delivers exactly the bytes sent.
#[tokio::test(start_paused = true)]
async fn multi_packet_messages_are_all_or_nothing() {
    let net = Mixnet::new(SimConfig {
        duplicate_probability: 0.0,
        ..SimConfig::hostile().with_seed(9)
    });
    let mut a = net.connect();
    let mut b = net.connect();
    let big = payload(1, 100 * 1604);
    let packets = packets_for(big.len(), MessageKind::Regular);
    assert_eq!(packets, 101);
    a.send_regular(b.address(), big.clone()).expect("send");
    let m = recv_within(&mut b, Duration::from_secs(600))
        .await
        .expect("arrives");
    assert_eq!(m.payload, big);
    assert!(a.stats().packets_sent >= u64::from(packets));
    // Messages sent together arrive only after their last packet: the big one needs all 101
    // paced packets, so at 20 ms each it cannot arrive within the first second.
    let mut c = net.connect();
    let start = Instant::now();
    c.send_regular(b.address(), big.clone()).expect("send");
    let m = recv_within(&mut b, Duration::from_secs(600))
        .await
        .expect("arrives");
    assert!(
        start.elapsed() > Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(m.payload, big);

    // Partial transmission: the sender leaves after about a quarter of the packets.
    let mut d = net.connect();
    d.send_regular(b.address(), big).expect("send");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let partial = d.stats().packets_sent;
    assert!(
        partial > 0 && partial < u64::from(packets),
        "partial {partial}"
    );
    d.disconnect();
    assert!(
        recv_within(&mut b, Duration::from_secs(600))
            .await
            .is_none(),
        "nothing partial"
    );
    assert_eq!(b.stats().messages_received, 2);
}
