//! Unit tests of the sans-IO core with synthetic time: two `Core`s joined by a
//! hand-driven wire (see `common::wire`), one test per protocol transition.

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use common::pattern;
use common::wire::{Fate, Packet, Wire, A, B};
use lp_frame::ext::reset_code;
use lp_frame::MessageType;
use mux::{reset_code as code_of, Event, LocalId, MuxConfig, Read, Write};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const MINUTE: Duration = Duration::from_secs(60);

fn is_data(p: &Packet) -> bool {
    p.kind() == MessageType::Data
}

/// Takes the queued packets out of the wire.
fn drain(w: &mut Wire) -> Vec<Packet> {
    w.queue.drain(..).collect()
}

fn expect_failed(r: Read) -> std::io::Error {
    match r {
        Read::Failed(e) => e.into(),
        other => panic!("expected a failed read, got {other:?}"),
    }
}

fn expect_write_failed(w: Write) -> std::io::Error {
    match w {
        Write::Failed(e) => e.into(),
        other => panic!("expected a failed write, got {other:?}"),
    }
}

/// Reads at `addr` until the stream ends, pumping and firing timers in between.
fn read_to_end(w: &mut Wire, addr: u8, local: LocalId, limit: Duration) -> (Vec<u8>, Read) {
    let mut got = Vec::new();
    let mut end = Read::Pending;
    w.run(limit, &mut |w| {
        end = w.read_available(addr, local, &mut got);
        !matches!(end, Read::Pending)
    });
    (got, end)
}

#[test]
fn open_then_open_ack_establishes() {
    let mut w = Wire::default_pair();
    let (la, id) = w.a.open(w.now, B, None).unwrap();
    assert!(!w.a.established(la).unwrap());
    assert_eq!(w.a.stream_id(la), Some(id));

    w.collect();
    let sent = drain(&mut w);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind(), MessageType::Open);
    assert_eq!(sent[0].header().stream_id, id);
    assert!(sent[0].surbs > 0, "the Open carries reply SURBs");
    assert_eq!(sent[0].msg.sender_tag, Some(common::wire::tag_of(A)));
    w.deliver(sent[0].clone());
    assert!(w.events(B).contains(&Event::Incoming));
    assert_eq!(w.b.backlog(), 1);

    w.collect();
    let back = drain(&mut w);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].kind(), MessageType::OpenAck);
    assert_eq!(back[0].msg.sender_tag, None, "replies carry no sender tag");
    assert!(
        !w.a.established(la).unwrap(),
        "not before the OpenAck arrives"
    );
    w.deliver(back[0].clone());
    assert!(w.a.established(la).unwrap());
    assert!(w.events(A).contains(&Event::Established(la)));

    let (lb, idb) = w.b.accept().unwrap();
    assert_eq!(idb, id);
    assert!(w.b.established(lb).unwrap());
    assert!(w.b.accept().is_none());
    assert_eq!(w.a.metrics().streams_opened, 1);
    assert_eq!(w.b.metrics().streams_accepted, 1);
}

#[test]
fn zero_rtt_write_before_open_ack() {
    let mut w = Wire::default_pair();
    let (la, _) = w.a.open(w.now, B, None).unwrap();
    w.write_all(A, la, b"hello before any round trip");
    w.collect();
    let sent = drain(&mut w);
    let kinds: Vec<_> = sent.iter().map(Packet::kind).collect();
    assert_eq!(kinds, vec![MessageType::Open, MessageType::Data]);
    assert!(!w.a.established(la).unwrap());
    for p in sent {
        w.deliver(p);
    }
    let (lb, _) = w.b.accept().unwrap();
    let mut got = Vec::new();
    assert!(matches!(w.read_available(B, lb, &mut got), Read::Pending));
    assert_eq!(got, b"hello before any round trip");
    w.pump();
    assert!(w.a.established(la).unwrap());
}

#[test]
fn duplicate_open_is_ignored_and_re_acknowledged() {
    let mut w = Wire::default_pair();
    let (la, _) = w.a.open(w.now, B, None).unwrap();
    w.collect();
    let open = drain(&mut w).remove(0);
    w.deliver(open.clone());
    w.collect();
    w.deliver(open);
    w.collect();
    assert_eq!(w.b.backlog(), 1, "one stream, not two");
    assert_eq!(w.b.metrics().duplicate_opens, 1);
    assert_eq!(w.sent(B, MessageType::OpenAck), 2, "each Open is answered");
    w.pump();
    assert!(w.b.accept().is_some());
    assert!(w.b.accept().is_none());
    assert!(w.a.established(la).unwrap());
    assert_eq!(w.b.stream_count(), 1);
}

#[test]
fn data_overtaking_open_is_held_then_delivered() {
    let mut w = Wire::default_pair();
    let (la, _) = w.a.open(w.now, B, None).unwrap();
    w.write_all(A, la, b"early bytes");
    w.collect();
    let mut sent = drain(&mut w);
    assert_eq!(sent.len(), 2);
    let data = sent.pop().unwrap();
    let open = sent.pop().unwrap();
    w.deliver(data);
    assert!(w.b.accept().is_none());
    assert_eq!(w.b.metrics().orphan_frames_held, 1);
    assert_eq!(w.b.inbound_bytes(), b"early bytes".len());
    w.deliver(open);
    let (lb, _) = w.b.accept().unwrap();
    let mut got = Vec::new();
    w.read_available(B, lb, &mut got);
    assert_eq!(got, b"early bytes");
    assert_eq!(w.b.inbound_bytes(), 0);
}

#[test]
fn orphan_data_expires_and_stays_bounded() {
    let cfg_b = MuxConfig::default()
        .with_max_orphan_frames(2)
        .with_orphan_ttl(Duration::from_secs(30));
    let mut w = Wire::new(MuxConfig::default().with_nodelay(true), cfg_b);
    let (la, _) = w.a.open(w.now, B, None).unwrap();
    for chunk in [&b"one"[..], b"two", b"three"] {
        w.write_all(A, la, chunk);
        w.collect();
    }
    let sent = drain(&mut w);
    let data: Vec<_> = sent.into_iter().filter(is_data).collect();
    assert_eq!(data.len(), 3);
    for p in data {
        w.deliver(p);
    }
    let m = w.b.metrics();
    assert_eq!(m.orphan_frames_held, 2);
    assert_eq!(
        m.orphan_frames_dropped, 1,
        "third frame is over the per-id bound"
    );
    assert_eq!(w.b.inbound_bytes(), 6);
    assert!(
        w.b.poll_timeout().is_some(),
        "the orphan age timer is armed"
    );
    w.now += Duration::from_secs(31);
    w.b.handle_timeout(w.now);
    assert_eq!(w.b.metrics().orphan_frames_dropped, 3);
    assert_eq!(w.b.inbound_bytes(), 0);
}

#[test]
fn open_beyond_backlog_is_refused_with_reset() {
    let mut w = Wire::new(
        MuxConfig::default(),
        MuxConfig::default().with_accept_backlog(2),
    );
    let now = w.now;
    let streams: Vec<LocalId> = (0..3).map(|_| w.a.open(now, B, None).unwrap().0).collect();
    w.pump();
    assert_eq!(w.b.backlog(), 2);
    assert_eq!(w.b.metrics().opens_refused, 1);
    assert_eq!(w.sent(B, MessageType::Reset), 1);
    assert!(w.a.established(streams[0]).unwrap());
    assert!(w.a.established(streams[1]).unwrap());
    let err: std::io::Error = w.a.established(streams[2]).unwrap_err().into();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    assert_eq!(code_of(&err), Some(reset_code::REFUSED));
    let err = expect_failed(w.read_available(A, streams[2], &mut Vec::new()));
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    assert_eq!(code_of(&err), Some(reset_code::REFUSED));
    // Accepting frees a slot: the next Open gets in.
    assert!(w.b.accept().is_some());
    let (l4, _) = w.a.open(w.now, B, None).unwrap();
    w.pump();
    assert!(w.a.established(l4).unwrap());
    assert_eq!(w.b.backlog(), 2);
}

#[test]
fn ordered_delivery_under_reordering() {
    let mut w = Wire::default_pair();
    let (la, lb) = w.open_pair();
    let data = pattern(40_000, 1);
    w.write_all(A, la, &data);
    w.collect();
    let mut sent = drain(&mut w);
    assert!(sent.iter().filter(|p| is_data(p)).count() >= 20);
    sent.shuffle(&mut ChaCha8Rng::seed_from_u64(5));
    for p in sent {
        w.deliver(p);
    }
    let (got, end) = read_to_end_pending(&mut w, lb);
    assert!(matches!(end, Read::Pending));
    assert!(got == data, "bytes differ after reordering");
    assert!(w.b.stream_metrics(lb).unwrap().out_of_order > 0);
}

/// Reads what is available at B without pumping.
fn read_to_end_pending(w: &mut Wire, lb: LocalId) -> (Vec<u8>, Read) {
    let mut got = Vec::new();
    let end = w.read_available(B, lb, &mut got);
    (got, end)
}

/// Sends `len` bytes from A to B, drops the data frame `pick` chooses among those sent,
/// delivers the rest and runs until B has every byte. Returns whether it finished, the
/// bytes sent and received, A's retransmission count and how long the repair took.
fn repair_one_lost_frame(
    len: usize,
    seed: u64,
    pick: fn(&[Packet]) -> usize,
) -> (bool, Vec<u8>, Vec<u8>, u64, Duration) {
    let mut w = Wire::default_pair();
    let (la, lb) = w.open_pair();
    let data = pattern(len, seed);
    w.write_all(A, la, &data);
    w.collect();
    let mut sent = drain(&mut w);
    let lost = pick(&sent);
    sent.remove(lost);
    for p in sent {
        w.deliver(p);
    }
    let t0 = w.now;
    let mut got = Vec::new();
    let done = w.run(MINUTE, &mut |w| {
        w.read_available(B, lb, &mut got);
        got.len() == data.len()
    });
    let retransmits = w.a.stream_metrics(la).unwrap().retransmits;
    (done, data, got, retransmits, w.now - t0)
}

#[test]
fn lost_last_frame_is_resent_on_timer() {
    let (done, data, got, retransmits, took) =
        repair_one_lost_frame(4_000, 2, |sent| sent.iter().rposition(is_data).unwrap());
    assert!(done, "lost frame never repaired");
    assert!(got == data);
    assert_eq!(retransmits, 1);
    // No later frame exists to reveal the gap: only the timer can repair it.
    assert!(took >= MuxConfig::default().min_rto);
}

#[test]
fn lost_frame_is_resent_fast_on_sack() {
    let (done, data, got, retransmits, took) =
        repair_one_lost_frame(20_000, 3, |sent| sent.iter().position(is_data).unwrap());
    assert!(done);
    assert!(got == data);
    assert_eq!(retransmits, 1);
    assert!(
        took < MuxConfig::default().min_rto,
        "repaired after {took:?}: the SACK path should beat the timer"
    );
}

#[test]
fn duplicate_frames_are_dropped() {
    let mut w = Wire::default_pair();
    let (la, lb) = w.open_pair();
    let data = pattern(30_000, 4);
    w.write_all(A, la, &data);
    w.shutdown(A, la);
    let (got, end) = {
        let mut got = Vec::new();
        let mut end = Read::Pending;
        w.run_with(
            MINUTE,
            &mut |p| {
                if p.from == A {
                    Fate::Duplicate
                } else {
                    Fate::Deliver
                }
            },
            &mut |w| {
                end = w.read_available(B, lb, &mut got);
                !matches!(end, Read::Pending)
            },
        );
        (got, end)
    };
    assert!(matches!(end, Read::Eof), "{end:?}");
    assert!(got == data);
    let frames = w.sent(A, MessageType::Data) + w.sent(A, MessageType::Close);
    let m = w.b.stream_metrics(lb).unwrap();
    assert_eq!(m.duplicates as usize, frames, "{m:?}");
    assert_eq!(m.bytes_read as usize, data.len());
}

#[test]
fn writer_blocks_on_credit_and_resumes_after_read() {
    let window = 100_000u32;
    let mut w = Wire::new(
        MuxConfig::default().with_send_buffer(1 << 20),
        MuxConfig::default().with_receive_window(window),
    );
    let (la, lb) = w.open_pair();
    let data = pattern(300_000, 5);
    let mut off = w.write_some(A, la, &data);
    assert_eq!(
        off as u64,
        mux::INITIAL_CREDIT,
        "initial credit before any ack"
    );
    // Let the receiver's acks advertise its window; nobody reads.
    for _ in 0..5 {
        w.sleep(Duration::from_secs(2));
        off += w.write_some(A, la, &data[off..]);
    }
    assert_eq!(
        off, window as usize,
        "the writer may fill exactly the window"
    );
    assert!(matches!(w.write(A, la, &data[off..]), Write::Blocked));
    assert!(w.a.stream_metrics(la).unwrap().credit_stalls > 0);
    assert_eq!(w.b.inbound_bytes(), window as usize);
    assert!(w.peak_inbound[1] <= window as usize);

    // Reading reopens the window.
    let mut got = Vec::new();
    w.read_available(B, lb, &mut got);
    assert_eq!(got.len(), window as usize);
    w.pump();
    assert!(w.events(A).contains(&Event::Writable(la)));
    let more = w.write_some(A, la, &data[off..]);
    assert!(more > 0);
    off += more;
    let done = w.run(Duration::from_secs(600), &mut |w| {
        w.read_available(B, lb, &mut got);
        off += w.write_some(A, la, &data[off..]);
        w.flush(A, la);
        got.len() == data.len()
    });
    assert!(done);
    assert!(got == data);
    assert!(w.peak_inbound[1] <= window as usize);
}

#[test]
fn fin_gives_eof_exactly_after_the_last_byte() {
    let mut w = Wire::default_pair();
    let (la, lb) = w.open_pair();
    let data = pattern(5_000, 6);
    w.write_all(A, la, &data);
    assert!(!w.shutdown(A, la), "FIN waits for the data");
    w.collect();
    assert!(w.shutdown(A, la), "FIN sent");
    let mut sent = drain(&mut w);
    assert_eq!(sent.last().unwrap().kind(), MessageType::Close);
    let last_data = sent.iter().rposition(is_data).unwrap();
    let held = sent.remove(last_data);
    // The Close overtakes the last data frame.
    sent.reverse();
    for p in sent {
        w.deliver(p);
    }
    let mut got = Vec::new();
    assert!(matches!(w.read_available(B, lb, &mut got), Read::Pending));
    assert!(got.len() < data.len());
    w.deliver(held);
    assert!(matches!(w.read_available(B, lb, &mut got), Read::Eof));
    assert!(got == data);
    // EOF is sticky.
    assert!(matches!(w.read(B, lb, &mut [0u8; 16]), Read::Eof));
}

#[test]
fn half_close_keeps_the_other_direction_working() {
    let mut w = Wire::default_pair();
    let (la, lb) = w.open_pair();
    w.write_all(A, la, b"request");
    w.shutdown(A, la);
    let (got, end) = read_to_end(&mut w, B, lb, MINUTE);
    assert_eq!(got, b"request");
    assert!(matches!(end, Read::Eof));
    // A's write side is closed.
    let err = expect_write_failed(w.write(A, la, b"x"));
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);

    // The response, larger than the initial credit, still flows back.
    let response = pattern(200_000, 7);
    let mut off = 0;
    let mut back = Vec::new();
    let mut end = Read::Pending;
    let done = w.run(Duration::from_secs(600), &mut |w| {
        if off < response.len() {
            off += w.write_some(B, lb, &response[off..]);
            if off == response.len() {
                w.shutdown(B, lb);
            }
        }
        end = w.read_available(A, la, &mut back);
        !matches!(end, Read::Pending)
    });
    assert!(done);
    assert!(matches!(end, Read::Eof), "{end:?}");
    assert!(back == response);

    // Both directions finished: after the handles go and the linger passes, the
    // stream leaves both tables.
    w.drop_handle(A, la);
    w.drop_handle(B, lb);
    w.sleep(MuxConfig::default().linger + Duration::from_secs(1));
    assert_eq!(w.a.stream_count(), 0);
    assert_eq!(w.b.stream_count(), 0);
}

fn reset_one_way(resetter: u8) {
    let mut w = Wire::default_pair();
    let (la, lb) = w.open_pair();
    let (mine, theirs, peer) = if resetter == A {
        (la, lb, B)
    } else {
        (lb, la, A)
    };
    w.write_all(A, la, &pattern(3_000, 8));
    w.write_all(B, lb, &pattern(3_000, 9));
    w.pump();
    let code = 0x1234;
    w.reset(resetter, mine, code);
    w.pump();
    assert_eq!(w.sent(resetter, MessageType::Reset), 1);

    // The peer: reads fail with ConnectionReset (even with unread data), writes
    // with BrokenPipe, both carrying the code.
    let err = expect_failed(w.read_available(peer, theirs, &mut Vec::new()));
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    assert_eq!(code_of(&err), Some(code));
    let err = expect_write_failed(w.write(peer, theirs, b"more"));
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    assert_eq!(code_of(&err), Some(code));
    assert_eq!(w.core(peer).inbound_bytes(), 0, "buffers freed");

    // The resetter's own side fails too (aborted locally).
    let err = expect_failed(w.read_available(resetter, mine, &mut Vec::new()));
    assert_eq!(err.kind(), ErrorKind::ConnectionAborted);
    assert!(matches!(w.write(resetter, mine, b"x"), Write::Failed(_)));

    // Dropping the handles lets both streams leave the tables.
    w.drop_handle(A, la);
    w.drop_handle(B, lb);
    w.sleep(Duration::from_secs(30));
    assert_eq!(w.a.stream_count(), 0);
    assert_eq!(w.b.stream_count(), 0);
}

#[test]
fn reset_by_opener() {
    reset_one_way(A);
}

#[test]
fn reset_by_listener() {
    reset_one_way(B);
}

#[test]
fn drop_without_shutdown_delivers_then_aborts() {
    let mut w = Wire::default_pair();
    let (la, lb) = w.open_pair();
    let data = pattern(50_000, 10);
    w.write_all(A, la, &data[..40_000]);
    // Some bytes still sit in the coalescing buffer, unflushed, when the handle goes.
    assert!(matches!(
        w.write(A, la, &data[40_000..]),
        Write::Accepted(10_000)
    ));
    w.drop_handle(A, la);
    // Lose the first data frame once: the core must repair it without a handle.
    let mut lost = false;
    let mut got = Vec::new();
    let mut end = Read::Pending;
    w.run_with(
        Duration::from_secs(600),
        &mut |p| {
            if !lost && is_data(p) {
                lost = true;
                Fate::Drop
            } else {
                Fate::Deliver
            }
        },
        &mut |w| {
            end = w.read_available(B, lb, &mut got);
            !matches!(end, Read::Pending)
        },
    );
    assert!(lost);
    assert!(
        got == data,
        "got {} of {} bytes, end {end:?}, log {:?}",
        got.len(),
        data.len(),
        w.log
            .iter()
            .map(|p| (p.from, p.kind(), p.header().seq))
            .collect::<Vec<_>>()
    );
    let err = expect_failed(end);
    assert_eq!(err.kind(), ErrorKind::ConnectionAborted);
    assert_eq!(code_of(&err), Some(reset_code::CANCELLED));
    // The abandoned stream leaves A's table once everything was acknowledged.
    w.drop_handle(B, lb);
    w.sleep(Duration::from_secs(60));
    assert_eq!(w.a.stream_count(), 0);
    assert_eq!(w.b.stream_count(), 0);
}

#[test]
fn retry_limit_times_out_a_silent_peer() {
    let cfg = MuxConfig::default().with_max_retransmits(3);
    let mut w = Wire::new(cfg.clone(), cfg);
    let (la, _lb) = w.open_pair();
    w.write_all(A, la, b"into the void");
    let mut end = Read::Pending;
    let done = w.run_with(
        Duration::from_secs(3600),
        &mut |p| {
            if p.from == A {
                Fate::Drop
            } else {
                Fate::Deliver
            }
        },
        &mut |w| {
            end = w.read_available(A, la, &mut Vec::new());
            !matches!(end, Read::Pending)
        },
    );
    assert!(done);
    let err = expect_failed(end);
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    let err = expect_write_failed(w.write(A, la, b"x"));
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert_eq!(w.sent(A, MessageType::Data), 3, "one send plus two resends");
}

#[test]
fn unanswered_open_times_out() {
    let cfg = MuxConfig::default().with_max_retransmits(2);
    let mut w = Wire::new(cfg.clone(), cfg);
    let (la, _) = w.a.open(w.now, B, None).unwrap();
    let done = w.run_with(Duration::from_secs(3600), &mut |_| Fate::Drop, &mut |w| {
        w.a.established(la).is_err()
    });
    assert!(done);
    assert_eq!(w.a.established(la).unwrap_err().kind(), ErrorKind::TimedOut);
    assert_eq!(w.sent(A, MessageType::Open), 2);
}

/// The client-wide budget caps what is promised, not only what is held: a stream is
/// admitted only when its initial credit fits, so frames sent within credit are never
/// refused, and an open beyond the budget is refused cleanly instead of stalling.
#[test]
fn inbound_budget_is_never_exceeded_and_promises_are_kept() {
    // Room for three initial credits (no orphan store, so no share is set aside for it).
    let budget = 3 * mux::INITIAL_CREDIT as usize + 1000;
    let mut w = Wire::new(
        MuxConfig::default(),
        MuxConfig::default()
            .with_inbound_budget(budget)
            .with_max_orphan_streams(0),
    );
    let now = w.now;
    let opened: Vec<LocalId> = (0..4).map(|_| w.a.open(now, B, None).unwrap().0).collect();
    let data: Vec<Vec<u8>> = (0..4).map(|i| pattern(60_000, 20 + i)).collect();
    for (l, d) in opened.iter().zip(&data) {
        w.write_all(A, *l, d);
        w.core(A).shutdown(now, *l);
    }
    // Nobody reads for a while: what B holds stays within the budget.
    w.sleep(Duration::from_secs(30));
    assert!(w.peak_inbound[1] <= budget, "peak {}", w.peak_inbound[1]);
    assert!(w.b.inbound_bytes() > budget / 2, "the budget is used");
    assert!(w.b.promised_credit() <= budget as u64);
    let accepted: Vec<LocalId> = std::iter::from_fn(|| w.b.accept().map(|x| x.0)).collect();
    assert_eq!(accepted.len(), 3, "the fourth initial credit does not fit");
    assert_eq!(w.b.metrics().peer_limit_refusals, 1);
    let refused: u64 = accepted
        .iter()
        .map(|l| w.b.stream_metrics(*l).unwrap().frames_refused)
        .sum();
    assert_eq!(refused, 0, "a frame sent within credit was refused");
    let err = expect_failed(w.read_available(A, opened[3], &mut Vec::new()));
    assert_eq!(code_of(&err), Some(reset_code::REFUSED));

    let mut got = vec![Vec::new(); 3];
    let mut ends = 0;
    let done = w.run(Duration::from_secs(1200), &mut |w| {
        ends = 0;
        for (i, l) in accepted.iter().enumerate() {
            if matches!(w.read_available(B, *l, &mut got[i]), Read::Eof) {
                ends += 1;
            }
        }
        ends == 3
    });
    assert!(done, "{ends} of 3 streams finished");
    for (g, d) in got.iter().zip(&data) {
        assert!(g == d);
    }
    assert!(w.peak_inbound[1] <= budget);
}

#[test]
fn lost_window_update_is_repeated() {
    let window = 64 * 1024;
    let mut w = Wire::new(
        MuxConfig::default(),
        MuxConfig::default().with_receive_window(window),
    );
    let (la, lb) = w.open_pair();
    let data = pattern(200_000, 11);
    let mut off = w.write_some(A, la, &data);
    w.sleep(Duration::from_secs(5));
    off += w.write_some(A, la, &data[off..]);
    assert_eq!(off, window as usize, "blocked with a full window");
    // The reader drains the window; its window update is lost.
    let mut got = Vec::new();
    w.read_available(B, lb, &mut got);
    let mut lost = 0;
    w.pump_with(&mut |p| {
        if p.from == B && p.kind() == MessageType::Ack {
            lost += 1;
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    assert_eq!(lost, 1);
    let t0 = w.now;
    let done = w.run(Duration::from_secs(3600), &mut |w| {
        off += w.write_some(A, la, &data[off..]);
        w.flush(A, la);
        w.read_available(B, lb, &mut got);
        got.len() == data.len()
    });
    assert!(done, "stalled after a lost window update");
    assert!(got == data);
    // Recovered by the zero-credit probe (a Ping after one RTO, answered with the
    // ack), well before a keepalive interval.
    assert!(w.now - t0 < Duration::from_secs(30), "{:?}", w.now - t0);
}

/// A full-size frame resent while an ack is pending must not grow past one packet:
/// the ack goes separately. (It once went piggybacked: a 1,596-byte frame, 2 packets
/// and 2 SURBs counted as 1.)
#[test]
fn a_retransmission_with_an_ack_pending_stays_one_packet() {
    // With the smallest window, a first small frame from B does not make A ack at
    // once (that happens within a quarter window of the credit B believes in), so
    // A's ack is still pending when B's SACK makes it resend its lost frame.
    let small = MuxConfig::default().with_receive_window(64 * 1024);
    let mut w = Wire::new(small, MuxConfig::default());
    let (la, lb) = w.open_pair();
    let data = pattern(20 * 1600, 3);
    w.write_all(A, la, &data);
    w.collect();
    let mut sent = drain(&mut w);
    let first = sent.iter().position(is_data).expect("A sent data frames");
    sent.remove(first);
    for p in sent {
        w.deliver(p);
    }
    // B's reply carries a SACK showing the hole (the wire has no latency, so the
    // lost frame is old enough to resend at once) and leaves A owing an ack.
    w.write_all(B, lb, b"reply");
    w.pump();
    let first_frame_sends = w
        .log
        .iter()
        .filter(|p| p.from == A && p.kind() == MessageType::Data && p.header().seq == 0)
        .count();
    assert_eq!(first_frame_sends, 2, "the lost first frame was resent");
    let limit = lp_frame::HEADER_LEN + MuxConfig::default().max_frame_payload - 20;
    for p in w.log.iter().filter(|p| p.from == A) {
        assert!(
            p.msg.payload.len() <= limit,
            "A sent a {}-byte {:?} frame (limit {limit})",
            p.msg.payload.len(),
            p.kind()
        );
    }
    let mut got = Vec::new();
    w.run(MINUTE, &mut |w| {
        w.read_available(B, lb, &mut got);
        got.len() == data.len()
    });
    assert!(got == data);
}

/// Everything a stream may send before its `OpenAck` (the initial credit, ~42 full
/// frames) is held when the `Open` is lost, so the lost `Open` costs one resend of
/// the `Open` and no data retransmission.
#[test]
fn zero_rtt_data_of_a_whole_initial_credit_survives_a_lost_open() {
    let mut w = Wire::default_pair();
    let now = w.now;
    let (la, _) = w.a.open(now, B, None).unwrap();
    let data = pattern(mux::INITIAL_CREDIT as usize, 11);
    w.write_all(A, la, &data);
    w.shutdown(A, la);
    let mut first_open = true;
    let mut got = Vec::new();
    let mut lb = None;
    let done = w.run_with(
        MINUTE,
        &mut |p| {
            if p.kind() == MessageType::Open && std::mem::take(&mut first_open) {
                Fate::Drop
            } else {
                Fate::Deliver
            }
        },
        &mut |w| {
            if lb.is_none() {
                lb = w.b.accept().map(|(l, _)| l);
            }
            match lb {
                Some(l) => matches!(w.read_available(B, l, &mut got), Read::Eof),
                None => false,
            }
        },
    );
    assert!(done, "got {} bytes", got.len());
    assert!(got == data);
    assert_eq!(w.sent(A, MessageType::Open), 2);
    assert_eq!(w.b.metrics().orphan_frames_dropped, 0);
    assert_eq!(w.a.stream_metrics(la).unwrap().retransmits, 0);
}

/// Extension frames (Close, Reset) never go to a peer before it showed the
/// capability: they wait for its `OpenAck`, and a reference peer never gets them.
fn early_end_to(peer_extended: bool, end: fn(&mut Wire, LocalId)) -> (Wire, Option<LocalId>) {
    let b_cfg = MuxConfig::default().with_legacy_mode(!peer_extended);
    let mut w = Wire::new(MuxConfig::default(), b_cfg);
    let now = w.now;
    let (la, _) = w.a.open(now, B, None).unwrap();
    w.write_all(A, la, b"early");
    // The Open and the data leave; nothing has come back yet.
    w.collect();
    let in_flight = drain(&mut w);
    end(&mut w, la);
    w.collect();
    assert!(
        w.queue
            .iter()
            .all(|p| !matches!(p.kind(), MessageType::Close | MessageType::Reset)),
        "an extension frame left before the peer's OpenAck"
    );
    for p in in_flight {
        w.deliver(p);
    }
    let mut lb = None;
    w.run(MINUTE, &mut |w| {
        if lb.is_none() {
            lb = w.b.accept().map(|(l, _)| l);
        }
        false
    });
    (w, lb)
}

fn count_extension_frames(w: &Wire) -> usize {
    w.sent(A, MessageType::Close) + w.sent(A, MessageType::Reset)
}

#[test]
fn a_reset_before_the_open_ack_reaches_only_an_extended_peer() {
    let reset = |w: &mut Wire, la: LocalId| w.reset(A, la, 77);
    let (w, _) = early_end_to(false, reset);
    assert_eq!(
        count_extension_frames(&w),
        0,
        "a reference peer got a Reset"
    );
    let (mut w, lb) = early_end_to(true, reset);
    assert_eq!(
        w.sent(A, MessageType::Reset),
        1,
        "the extended peer is told"
    );
    let lb = lb.expect("B saw the stream");
    let err = expect_failed(w.read_available(B, lb, &mut Vec::new()));
    assert_eq!(code_of(&err), Some(77));
}

#[test]
fn a_shutdown_before_the_open_ack_sends_close_only_to_an_extended_peer() {
    let shut = |w: &mut Wire, la: LocalId| {
        w.shutdown(A, la);
    };
    let (w, _) = early_end_to(false, shut);
    assert_eq!(
        count_extension_frames(&w),
        0,
        "a reference peer got a Close"
    );
    let (mut w, lb) = early_end_to(true, shut);
    assert_eq!(w.sent(A, MessageType::Close), 1);
    let lb = lb.expect("B saw the stream");
    let mut got = Vec::new();
    assert!(matches!(w.read_available(B, lb, &mut got), Read::Eof));
    assert_eq!(got, b"early");
}

#[test]
fn a_reset_before_the_open_left_sends_nothing_at_all() {
    let mut w = Wire::default_pair();
    let now = w.now;
    let (la, _) = w.a.open(now, B, None).unwrap();
    w.reset(A, la, 5);
    w.drop_handle(A, la);
    w.run(MINUTE, &mut |_| false);
    assert!(w.log.iter().all(|p| p.from != A), "A sent {:?}", w.log);
    assert_eq!(w.a.stream_count(), 0);
}

/// An Ack from the listener establishes the stream even if its OpenAck was lost, as
/// PROTOCOL.md §7.2 says (the code used to wait for OpenAck, Data or Close).
#[test]
fn an_ack_establishes_an_opened_stream_whose_open_ack_was_lost() {
    let mut w = Wire::default_pair();
    let now = w.now;
    let (la, _) = w.a.open(now, B, None).unwrap();
    w.write_all(A, la, &pattern(3000, 4));
    w.run_with(
        Duration::from_secs(3),
        &mut |p| {
            if p.kind() == MessageType::OpenAck {
                Fate::Drop
            } else {
                Fate::Deliver
            }
        },
        &mut |w| w.sent(B, MessageType::Ack) > 0,
    );
    assert!(w.sent(B, MessageType::Ack) > 0, "B acked");
    assert_eq!(w.sent(B, MessageType::Data), 0);
    assert!(w.a.established(la).unwrap());
}

/// Where the network does not report the SURB stock (the real Nym client), a listener
/// does not ask for its whole need in every ack: what it asked for and has not used
/// yet counts as stock.
#[test]
fn a_listener_with_an_unknown_surb_stock_does_not_repeat_its_request() {
    let mut w = Wire::default_pair();
    let (la, lb) = w.open_pair();
    let now = w.now;
    // B has 30 frames to send but its transport lets nothing out yet.
    let data = pattern(30 * 1585, 5);
    w.core(B).write(now, lb, &data);
    w.core(B).flush(now, lb);
    let mut asked = Vec::new();
    for round in 0..3u64 {
        // A sends something so B owes an ack; B's transport takes one frame a round.
        w.write_all(A, la, &pattern(100, round));
        let t = w.now;
        while let Some(tx) = w.a.poll_transmit(t, &|_| None) {
            w.b.handle_inbound(
                t,
                mux::Inbound {
                    payload: tx.payload,
                    sender_tag: Some(common::wire::tag_of(A)),
                },
            );
        }
        w.now += Duration::from_secs(2);
        let t = w.now;
        w.b.handle_timeout(t);
        if let Some(tx) = w.b.poll_transmit(t, &|_| None) {
            let f = lp_frame::OwnedStreamFrame::parse(tx.payload).unwrap();
            if f.header.reserved & lp_frame::ext::FLAG_ACK != 0
                || f.header.msg_type == MessageType::Ack
            {
                let (ack, _) = lp_frame::ext::Ack::parse(&f.payload).unwrap();
                asked.push(ack.surbs_wanted);
            }
        }
    }
    assert!(asked[0] >= 30, "{asked:?}");
    let later: u32 = asked[1..].iter().map(|&a| u32::from(a)).sum();
    assert!(later < 30, "asked again for everything: {asked:?}");
}

/// Both directions start just below 2³²: data, a lost frame, its repair and the FIN
/// all cross the wrap, with latency on the wire.
#[test]
fn data_loss_and_fin_cross_the_sequence_wrap() {
    let cfg = MuxConfig::default().with_first_seq(u32::MAX - 10);
    let mut w = Wire::new(cfg.clone(), cfg).with_latency(Duration::from_millis(150));
    let (la, lb) = w.open_pair();
    let data = pattern(40 * 1565, 8);
    w.write_all(A, la, &data);
    w.shutdown(A, la);
    // Lose the first transmission of the frames at and right after the wrap.
    let mut lost = std::collections::HashSet::new();
    let mut got = Vec::new();
    let mut end = Read::Pending;
    let done = w.run_with(
        Duration::from_secs(600),
        &mut |p| {
            let seq = p.header().seq;
            if p.kind() == MessageType::Data && (seq == 0 || seq == 1) && lost.insert(seq) {
                Fate::Drop
            } else {
                Fate::Deliver
            }
        },
        &mut |w| {
            end = w.read_available(B, lb, &mut got);
            !matches!(end, Read::Pending)
        },
    );
    assert!(done);
    assert!(matches!(end, Read::Eof), "{end:?}");
    assert!(got == data, "{} of {} bytes", got.len(), data.len());
    assert_eq!(lost.len(), 2, "the frames at the wrap were sent and lost");
    let m = w.a.stream_metrics(la).unwrap();
    assert!(m.retransmits >= 2);
    assert!(
        m.srtt.is_some_and(|s| s >= Duration::from_millis(300)),
        "{m:?}"
    );
}

/// The order in which `a`'s streams send their data frames, as the stream each data
/// frame belongs to, after `bulk` queued 30 KB and then `small` 100 bytes.
fn send_order(priorities: (i32, i32)) -> (Vec<LocalId>, LocalId, LocalId) {
    let mut w = Wire::new(MuxConfig::default(), MuxConfig::default());
    let (bulk, _) = w.open_pair();
    let (small, _) = w.open_pair();
    w.a.set_priority(bulk, priorities.0);
    w.a.set_priority(small, priorities.1);
    assert_eq!(w.a.priority(small), priorities.1);
    let ids = [bulk, small].map(|l| (w.a.stream_id(l).expect("live"), l));
    w.write_all(A, bulk, &pattern(30_000, 1));
    w.write_all(A, small, &pattern(100, 2));
    let now = w.now;
    let mut order = Vec::new();
    while let Some(t) = w.a.poll_transmit(now, &|_| None) {
        let hdr = lp_frame::OwnedStreamFrame::parse(t.payload)
            .expect("a stream frame")
            .header;
        if hdr.msg_type == MessageType::Data {
            let (_, local) = *ids
                .iter()
                .find(|(id, _)| *id == hdr.stream_id)
                .expect("ours");
            order.push(local);
        }
    }
    (order, bulk, small)
}

/// Streams of equal priority take turns a frame each, so a 100-byte write on a second
/// stream is sent right after the first bulk frame, before the bulk backlog drains.
#[test]
fn a_small_write_beside_a_bulk_backlog_goes_next() {
    let (order, bulk, small) = send_order((0, 0));
    assert!(
        order.len() > 15,
        "the bulk stream queued {} frames",
        order.len()
    );
    let at = order.iter().position(|&l| l == small).expect("sent");
    assert!(at <= 1, "the small frame went out {at}th: {order:?}");
    assert_eq!(
        order.iter().filter(|&&l| l == bulk).count(),
        order.len() - 1
    );
}

/// A higher priority goes first; a lower one waits until the higher has nothing left.
#[test]
fn priorities_order_the_streams() {
    let (order, _, small) = send_order((0, 1));
    assert_eq!(order[0], small, "the higher-priority stream went first");
    let (order, _, small) = send_order((1, 0));
    assert_eq!(
        order.last(),
        Some(&small),
        "the lower-priority stream waited"
    );
}

/// What a self-pacing transport hears (`poll_path_delay`): the path delay, and whether a
/// stream still had data ready after a frame went out, which a lone 100-byte request
/// never has and a 20 KB write always has. The stream's metrics show its smallest round
/// trip and its send window.
#[test]
fn the_delay_signal_says_whether_our_data_waited() {
    let cfg = MuxConfig::default();
    let mut w = Wire::new(cfg.clone(), cfg).with_latency(Duration::from_millis(150));
    let (la, _lb) = w.open_pair();
    let _ = w.a.poll_path_delay();
    let mut all_acked = |w: &mut Wire| w.a.unacknowledged_bytes() == 0;

    w.write_all(A, la, &pattern(100, 1));
    w.flush(A, la);
    assert!(w.run(MINUTE, &mut all_acked));
    let signal = w.a.poll_path_delay().expect("the ack gave a sample");
    assert!(!signal.data_waited, "one frame said everything");
    assert!(
        signal.delay.base >= Duration::from_millis(300),
        "{signal:?}"
    );
    assert_eq!(w.a.poll_path_delay(), None, "no new sample, no new signal");

    w.write_all(A, la, &pattern(20_000, 2));
    assert!(w.run(MINUTE, &mut all_acked));
    let signal = w.a.poll_path_delay().expect("samples");
    assert!(
        signal.data_waited,
        "frames of the 20 KB waited for each other"
    );

    let m = w.a.stream_metrics(la).expect("live");
    let min = m.min_rtt.expect("measured");
    assert!(min >= Duration::from_millis(300), "{m:?}");
    assert!(m.srtt.is_some_and(|s| s >= min), "{m:?}");
    assert!(m.send_window > 20_000, "{m:?}");
    assert!(
        m.send_window <= MuxConfig::default().send_buffer as u64,
        "{m:?}"
    );
}

/// Zero copies on the receive path up to `recv()`: every chunk a reader gets is a view of
/// the message the transport delivered, however the frames arrived (here shuffled, so
/// most wait in the reorder buffer first). A receive path that copies payloads out of the
/// inbound message hands out chunks elsewhere on the heap and fails this.
#[test]
fn recv_hands_out_views_of_the_delivered_messages() {
    let mut w = Wire::default_pair();
    let (la, lb) = w.open_pair();
    let data = pattern(40_000, 9);
    w.write_all(A, la, &data);
    let now = w.now;
    let mut delivered = Vec::new();
    while let Some(tx) = w.a.poll_transmit(now, &|_| None) {
        delivered.push(tx.payload);
    }
    assert!(delivered.len() >= 20, "{} frames", delivered.len());
    delivered.shuffle(&mut ChaCha8Rng::seed_from_u64(3));
    for payload in &delivered {
        w.b.handle_inbound(
            now,
            mux::Inbound {
                payload: payload.clone(),
                sender_tag: Some(common::wire::tag_of(A)),
            },
        );
    }
    let mut got = Vec::new();
    while let Ok(Some(chunk)) = w.b.read_chunk(now, lb) {
        let start = chunk.as_ptr() as usize;
        assert!(
            delivered.iter().any(|m| {
                let m0 = m.as_ptr() as usize;
                start >= m0 && start + chunk.len() <= m0 + m.len()
            }),
            "a {}-byte chunk is not a view of any delivered message",
            chunk.len()
        );
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, data);
}

/// Streams that share a capped peer window do not answer every read with an ack. With
/// two streams and a 256 KiB window for their peer, each stream is granted about
/// 96 KiB, never its full 256 KiB receive window; a window update that waited for
/// "half the receive window reopened" was then owed after every read: one ack per frame
/// read, on a mixnet one packet each way. Now it waits until half of the last grant
/// was read.
#[test]
fn streams_under_a_capped_peer_window_do_not_ack_every_read() {
    let mut w = Wire::new(
        MuxConfig::default(),
        MuxConfig::default().with_peer_receive_window(256 * 1024),
    );
    let (a1, b1) = w.open_pair();
    let (a2, b2) = w.open_pair();
    let data = pattern(1 << 20, 4);
    let (mut sent, mut got) = ([0usize; 2], [Vec::new(), Vec::new()]);
    let mut rounds = 0;
    while got[0].len() < data.len() || got[1].len() < data.len() {
        rounds += 1;
        assert!(rounds < 100_000, "the transfer stalls");
        for (i, a) in [a1, a2].into_iter().enumerate() {
            sent[i] += w.write_some(A, a, &data[sent[i]..]);
            w.flush(A, a);
        }
        w.pump();
        // The reader takes one frame's worth at a time, each followed by whatever the
        // cores send in answer.
        for (i, b) in [b1, b2].into_iter().enumerate() {
            let mut buf = [0u8; 1585];
            let now = w.now;
            if let Read::Data(n) = w.b.read(now, b, &mut buf) {
                got[i].extend_from_slice(&buf[..n]);
            }
            w.pump();
        }
    }
    assert!(got[0] == data && got[1] == data);
    let (acks, data_frames) = (w.sent(B, MessageType::Ack), w.sent(A, MessageType::Data));
    assert!(
        acks * 8 <= data_frames,
        "{acks} acks for {data_frames} data frames: an ack for nearly every read"
    );
}

/// A frame that arrives after its peer-opened stream left the table meets the
/// time-wait record, not the departed stream: the router's memory of the stream it
/// last routed to (a cache in front of the keyed map) goes with the stream.
#[test]
fn a_late_frame_after_the_stream_left_meets_its_time_wait_record() {
    let mut w = Wire::default_pair();
    let (la, lb) = w.open_pair();
    let id = w.b.stream_id(lb).expect("B's stream");
    w.write_all(A, la, b"last words");
    w.shutdown(A, la);
    w.pump();
    let mut got = Vec::new();
    assert_eq!(w.read_available(B, lb, &mut got), Read::Eof);
    assert_eq!(got, b"last words");
    w.shutdown(B, lb);
    w.pump();
    w.drop_handle(A, la);
    w.drop_handle(B, lb);
    w.run(Duration::from_secs(600), &mut |w| w.b.stream_count() == 0);
    assert_eq!(w.b.stream_count(), 0, "B's stream left the table");
    let before = w.b.metrics().unknown_stream_frames;
    let mut late = lp_frame::StreamHeader::new(id, MessageType::Data, 0)
        .to_bytes()
        .to_vec();
    late.extend_from_slice(b"late");
    let now = w.now;
    w.b.handle_inbound(
        now,
        mux::Inbound {
            payload: bytes::Bytes::from(late),
            sender_tag: Some(common::wire::tag_of(A)),
        },
    );
    assert_eq!(
        w.b.metrics().unknown_stream_frames,
        before + 1,
        "the late frame was counted as a frame of a stream that ended"
    );
}

/// Uneven unflushed writes over a lossy wire with latency, so frames go out full and
/// partial, as the coalescing timer and acks allow, with retransmissions. Bytes arrive
/// whole and in order; on the way the core checks, in debug builds, after every frame
/// sent or received on its hot paths, that skipping the deadline recomputation there
/// left no earlier deadline unregistered (a partial frame left behind once armed a
/// coalescing deadline that was missed: that fails here).
#[test]
fn uneven_writes_over_a_lossy_wire_keep_every_deadline() {
    let mut w = Wire::default_pair().with_latency(Duration::from_millis(30));
    let (la, lb) = w.open_pair();
    let data = pattern(400_000, 8);
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let mut sent = 0;
    let mut got = Vec::new();
    let mut n = 0u64;
    let mut rounds = 0;
    while got.len() < data.len() {
        rounds += 1;
        assert!(
            rounds < 20_000,
            "stalled at {} of {} bytes",
            got.len(),
            data.len()
        );
        if sent < data.len() {
            let size = [700, 1_585, 3_000, 5_000, 20_000][rng.gen_range(0..5)];
            let end = (sent + size).min(data.len());
            sent += w.write_some(A, la, &data[sent..end]);
        }
        let start = w.now;
        let sleep = Duration::from_millis(rng.gen_range(1..12));
        w.run_with(
            sleep,
            &mut |_| {
                n += 1;
                if n % 23 == 0 {
                    Fate::Drop
                } else {
                    Fate::Deliver
                }
            },
            &mut |w| w.now >= start + sleep,
        );
        let _ = w.read_available(B, lb, &mut got);
    }
    assert!(got == data, "bytes differ");
}
