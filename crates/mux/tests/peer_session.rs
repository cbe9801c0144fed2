//! Per-peer behaviour of the core: reply SURBs kept for acks, liveness judged on the
//! whole peer, and zero-credit probes that back off.

mod common;

use std::time::Duration;

use common::pattern;
use common::wire::{Wire, A, B};
use lp_frame::MessageType;
use mux::{MuxConfig, Write};

/// The listener's data waits in the stream while its reply SURBs are down to the ack
/// reserve, and acks still go: they are not queued behind data in the network.
#[test]
fn a_listener_short_of_surbs_keeps_its_reserve_for_acks() {
    let mut w = Wire::default_pair();
    let (la, lb) = w.open_pair();
    // B owes A an ack for A's data, and has data for A.
    w.write_all(A, la, &pattern(3_000, 2));
    w.collect();
    let from_a: Vec<_> = w.queue.drain(..).collect();
    for p in from_a {
        w.deliver(p);
    }
    let now = w.now + Duration::from_secs(2);
    w.now = now;
    w.b.handle_timeout(now);
    w.write_all(B, lb, &pattern(20_000, 1));
    // Three SURBs left: at or below the reserve of four.
    let mut kinds = Vec::new();
    while let Some(t) = w.b.poll_transmit(now, &|_| Some(3)) {
        let f = lp_frame::OwnedStreamFrame::parse(t.payload).unwrap();
        kinds.push(f.header.msg_type);
    }
    assert!(kinds.contains(&MessageType::Ack), "{kinds:?}");
    assert!(!kinds.contains(&MessageType::Data), "{kinds:?}");
    assert!(w.b.stream_metrics(lb).unwrap().surb_stalls > 0);
    // The stream looks again shortly...
    let next = w.b.poll_timeout().expect("a retry timer");
    assert!(next > now && next <= now + Duration::from_secs(1));
    let next = now + Duration::from_millis(300);
    w.b.handle_timeout(next);
    // ...and with SURBs in stock the data goes.
    let mut data = 0;
    while let Some(t) = w.b.poll_transmit(next, &|_| Some(500)) {
        let f = lp_frame::OwnedStreamFrame::parse(t.payload).unwrap();
        data += usize::from(f.header.msg_type == MessageType::Data);
    }
    assert!(data > 0);
}

/// A stream with nothing to say is not declared dead while its peer is busy on
/// another stream: keepalive judges the peer, not the stream.
#[test]
fn a_quiet_stream_of_a_busy_peer_does_not_fail_its_keepalive() {
    let cfg = MuxConfig::default()
        .with_keepalive_interval(Duration::from_secs(10))
        .with_keepalive_max_missed(2);
    let mut w = Wire::new(cfg.clone(), cfg);
    let (la_quiet, _lb_quiet) = w.open_pair();
    let (_la_busy, lb_busy) = w.open_pair();
    // B's answers on the quiet stream are lost; B keeps sending on the busy one.
    let quiet_id = w.a.stream_id(la_quiet).unwrap();
    for _ in 0..30 {
        w.write_all(B, lb_busy, b"tick");
        w.collect();
        let batch: Vec<_> = w.queue.drain(..).collect();
        for p in batch {
            if !(p.from == B && p.header().stream_id == quiet_id) {
                w.deliver(p);
            }
        }
        w.now += Duration::from_secs(5);
        let now = w.now;
        w.a.handle_timeout(now);
        w.b.handle_timeout(now);
    }
    // 150 s of silence on the quiet stream, 15 keepalive intervals: still alive.
    match w.write(A, la_quiet, b"still here") {
        Write::Accepted(_) => {}
        other => panic!("the quiet stream failed: {other:?}"),
    }
}

/// A writer blocked on zero credit probes with backoff (RTO, 2 RTO, 4 RTO, …) while
/// the peer, alive but not reading, answers every probe. (Each answer used to reset
/// the count: a probe every RTO for as long as the reader slept.)
#[test]
fn zero_credit_probes_back_off() {
    let small = MuxConfig::default()
        .with_receive_window(64 * 1024)
        .with_keepalive_interval(Duration::from_secs(3600));
    let mut w = Wire::new(small.clone(), small);
    let (la, lb) = w.open_pair();
    // A fills B's window; B never reads.
    let data = pattern(200_000, 3);
    let taken = w.write_some(A, la, &data);
    assert!(taken < data.len());
    w.pump();
    let _ = lb;
    let before = w.sent(A, MessageType::Ping);
    let pongs_before = w.sent(B, MessageType::Pong);
    w.sleep(Duration::from_secs(600));
    let probes = w.sent(A, MessageType::Ping) - before;
    assert!(
        w.sent(B, MessageType::Pong) > pongs_before,
        "B answers the probes"
    );
    // Ten minutes: without backoff one probe per RTO (3–5 s) would be 120+.
    assert!((1..=12).contains(&probes), "{probes} probes in 10 minutes");
}

/// Found by the fuzzer: a stream whose payload waited for SURBs and was then reset
/// kept its SURB retry deadline due forever (the timer contract broke).
#[test]
fn a_reset_while_waiting_for_surbs_keeps_the_timer_contract() {
    let mut w = Wire::default_pair();
    let (_la, lb) = w.open_pair();
    let now = w.now;
    w.write_all(B, lb, &pattern(5_000, 9));
    while w.b.poll_transmit(now, &|_| Some(0)).is_some() {}
    assert!(w.b.stream_metrics(lb).unwrap().surb_stalls > 0);
    w.b.reset(now, lb, 0x201);
    let later = now + Duration::from_secs(1);
    w.b.handle_timeout(later);
    common::wire::assert_timer_contract(&mut w.b, later, "B");
}

/// Under SURB scarcity a peer's streams take turns at the stock. Stream 0's opener
/// keeps sending (a byte a round): each of its frames used to unblock stream 0 at once,
/// so stream 0 took every SURB that arrived while its siblings starved (in the 1 GiB
/// soak, for 30 minutes, until the idle timeout reaped them).
#[test]
fn streams_short_of_surbs_take_turns() {
    let mut w = Wire::default_pair();
    let pairs: Vec<_> = (0..4).map(|_| w.open_pair()).collect();
    for (_, lb) in &pairs {
        w.write_all(B, *lb, &pattern(60_000, 5));
    }
    let ids: Vec<_> = pairs
        .iter()
        .map(|(_, lb)| w.b.stream_id(*lb).unwrap())
        .collect();
    let mut now = w.now;
    // No SURBs above the reserve: every stream's payload waits.
    while w.b.poll_transmit(now, &|_| Some(0)).is_some() {}
    let mut data = [0usize; 4];
    for _ in 0..40 {
        now += Duration::from_millis(100);
        w.a.handle_timeout(now);
        w.b.handle_timeout(now);
        let _ = w.a.write(now, pairs[0].0, b"x");
        w.a.flush(now, pairs[0].0);
        while let Some(t) = w.a.poll_transmit(now, &|_| None) {
            w.b.handle_inbound(
                now,
                mux::Inbound {
                    payload: t.payload,
                    sender_tag: Some(common::wire::tag_of(A)),
                },
            );
        }
        // Two SURBs above the reserve of four arrive each round.
        let mut stock = 6u32;
        loop {
            let s = stock;
            let Some(t) = w.b.poll_transmit(now, &|_| Some(s)) else {
                break;
            };
            stock = stock.saturating_sub(1);
            let f = lp_frame::OwnedStreamFrame::parse(t.payload).unwrap();
            if f.header.msg_type == MessageType::Data {
                let i = ids.iter().position(|id| *id == f.header.stream_id).unwrap();
                data[i] += 1;
            }
        }
    }
    let (min, max) = (*data.iter().min().unwrap(), *data.iter().max().unwrap());
    assert!(
        min >= 5 && max - min <= 3,
        "data frames per stream: {data:?}"
    );
}
