//! One test per state transition of a stream, each built from a small fixture that puts
//! one `StreamState` into the state under test (the smoltcp `socket/tcp.rs` manner).
//! The peer is played by hand: frames are built here and fed to `on_frame`.

use std::time::Duration;

use super::*;

/// Turns keepalives off (they would end a stream whose peer never answers before the
/// timer under test does).
fn without_keepalive(s: &mut S) {
    let mut settings = (*s.settings).clone();
    settings.keepalive_interval = Duration::from_secs(365 * 24 * 3600);
    s.settings = Arc::new(settings);
}

type S = StreamState<u8, u8>;

const ID: u64 = 0x5eed;

fn cfg() -> MuxConfig {
    MuxConfig::default()
}

fn settings(cfg: &MuxConfig) -> Arc<StreamSettings> {
    Arc::new(StreamSettings::new(cfg))
}

// ----- fixtures -------------------------------------------------------------------

/// An opener whose `Open` has not left yet.
fn opener_unsent(now: Instant) -> S {
    let c = cfg();
    S::new_outbound(StreamId::new(ID), 7, None, now, &c, &settings(&c))
}

/// An opener whose `Open` went out once, unanswered.
fn opener_opening(now: Instant) -> S {
    let mut s = opener_unsent(now);
    let open = s.poll_transmit(now, None).expect("the Open");
    assert_eq!(kind(&open), MessageType::Open);
    s
}

/// An opener the listener answered with an extended `OpenAck`.
fn opener_established(now: Instant) -> S {
    let mut s = opener_opening(now);
    s.on_frame(&open_ack(true), Bytes::new(), now, usize::MAX);
    assert_eq!(s.handshake, Handshake::Established);
    s
}

/// A listener's end of a stream an extended opener opened, `OpenAck` sent.
fn listener(now: Instant) -> S {
    let c = cfg();
    let mut s = S::new_inbound(StreamId::new(ID), 9, true, now, &c, &settings(&c));
    let ack = s.poll_transmit(now, None).expect("the OpenAck");
    assert_eq!(kind(&ack), MessageType::OpenAck);
    s
}

/// An established opener that wrote `data` and sent it in one frame (seq 0).
fn opener_with_data_in_flight(now: Instant, data: &[u8]) -> S {
    let mut s = opener_established(now);
    s.set_nodelay(true);
    assert_eq!(s.write(data, now), Write::Accepted(data.len()));
    let frame = s.poll_transmit(now, None).expect("the data frame");
    assert_eq!(kind(&frame), MessageType::Data);
    s
}

/// A listener that received `data` and the peer's FIN, nothing read yet.
fn listener_peer_finished(now: Instant, data: &[u8]) -> S {
    let mut s = listener(now);
    s.on_frame(
        &header(MessageType::Data, 0),
        Bytes::copy_from_slice(data),
        now,
        usize::MAX,
    );
    s.on_frame(&header(MessageType::Close, 1), close(None), now, usize::MAX);
    assert_eq!(s.recv_state, RecvState::Finished);
    s
}

// ----- frames the peer sends --------------------------------------------------------

fn header(t: MessageType, seq: u32) -> StreamHeader {
    StreamHeader::new(StreamId::new(ID), t, seq)
}

fn open_ack(extended: bool) -> StreamHeader {
    let h = header(MessageType::OpenAck, 0);
    if extended {
        h.with_reserved(ext::CAP_EXTENDED)
    } else {
        h
    }
}

fn close(code: Option<u32>) -> Bytes {
    let mut b = BytesMut::new();
    Close { error_code: code }.encode(&mut b);
    b.freeze()
}

fn reset_frame(code: u32) -> Bytes {
    let mut b = BytesMut::new();
    Reset { code }.encode(&mut b);
    b.freeze()
}

/// An ack of everything before `next` with a large window.
fn ack(next: u32) -> Bytes {
    let mut b = BytesMut::new();
    Ack::new(next, 1 << 30, 0).encode(&mut b);
    b.freeze()
}

fn kind(f: &OutFrame) -> MessageType {
    lp_frame::StreamHeader::parse(&f.payload)
        .expect("a stream header")
        .msg_type
}

fn failure_of(r: Read) -> Failure {
    match r {
        Read::Failed(e) => e.failure(),
        other => panic!("expected a failed read, got {other:?}"),
    }
}

fn read_all(s: &mut S) -> (Vec<u8>, Read) {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Read::Data(n) => out.extend_from_slice(&buf[..n]),
            end => return (out, end),
        }
    }
}

/// Fires timers until the stream's state satisfies `done`, checking the timer
/// contract each time (the next deadline lies in the future once one fired).
fn run_timers_until(s: &mut S, mut now: Instant, done: impl Fn(&S) -> bool) -> Instant {
    for _ in 0..10_000 {
        if done(s) {
            return now;
        }
        // Whatever a transmit owes goes out (as the core would send it).
        while s.poll_transmit(now, None).is_some() {}
        let Some(next) = s.next_deadline(now) else {
            panic!("no timer armed before the expected state");
        };
        now = next.max(now);
        s.on_timeout(now);
        while s.poll_transmit(now, None).is_some() {}
        if let Some(after) = s.next_deadline(now) {
            assert!(after > now, "a deadline stayed due after on_timeout");
        }
    }
    panic!("state not reached");
}

// ----- the handshake ----------------------------------------------------------------

#[test]
fn opening_to_established_on_open_ack() {
    let now = Instant::now();
    let mut s = opener_opening(now);
    assert_eq!(
        s.handshake,
        Handshake::Opening {
            sent_at: Some(now),
            tries: 1
        }
    );
    s.on_frame(&open_ack(true), Bytes::new(), now, usize::MAX);
    assert_eq!(s.handshake, Handshake::Established);
    assert_eq!(s.peer_kind, PeerKind::Extended);
    assert!(s.take_wakes().2, "the waiter for establishment is woken");
}

#[test]
fn opening_to_established_on_data_before_the_open_ack() {
    let now = Instant::now();
    let mut s = opener_opening(now);
    s.on_frame(
        &header(MessageType::Data, 0),
        Bytes::from_static(b"hi"),
        now,
        usize::MAX,
    );
    assert_eq!(s.handshake, Handshake::Established);
    assert_eq!(s.peer_kind, PeerKind::Unknown, "the OpenAck tells the kind");
}

#[test]
fn opening_resends_the_open_then_times_out() {
    let now = Instant::now();
    let mut s = opener_opening(now);
    let end = run_timers_until(&mut s, now, |s| s.teardown != Teardown::Live);
    assert_eq!(s.teardown, Teardown::TimedOut);
    let e = s.establish_error().expect("an establish error");
    assert_eq!(e.failure(), Failure::TimedOut(Timeout::OpenUnanswered));
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert!(end > now);
    assert_eq!(
        s.next_deadline(end),
        None,
        "a timed-out stream arms no timer"
    );
}

// ----- the send direction -----------------------------------------------------------

#[test]
fn open_to_closing_on_shutdown() {
    let now = Instant::now();
    let mut s = opener_established(now);
    assert_eq!(s.send_state, SendState::Open);
    s.shutdown();
    assert_eq!(s.send_state, SendState::Closing { abort: None });
    assert_eq!(s.send_outstanding(), 1, "the FIN is owed");
    assert!(!s.shutdown_complete());
}

#[test]
fn closing_to_fin_sent_when_the_fin_leaves() {
    let now = Instant::now();
    let mut s = opener_established(now);
    s.shutdown();
    let fin = s.poll_transmit(now, None).expect("the FIN");
    assert_eq!(kind(&fin), MessageType::Close);
    assert_eq!(s.send_state, SendState::FinSent);
    assert!(s.shutdown_complete());
    assert_eq!(s.send_finished(), Ok(false));
}

#[test]
fn fin_sent_to_finished_when_everything_is_acknowledged() {
    let now = Instant::now();
    let mut s = opener_with_data_in_flight(now, b"abc");
    s.shutdown();
    assert_eq!(
        kind(&s.poll_transmit(now, None).unwrap()),
        MessageType::Close
    );
    // An ack of the data alone leaves the FIN outstanding.
    s.on_frame(&header(MessageType::Ack, 0), ack(1), now, usize::MAX);
    assert_eq!(s.send_state, SendState::FinSent);
    s.on_frame(&header(MessageType::Ack, 0), ack(2), now, usize::MAX);
    assert_eq!(s.send_state, SendState::Finished);
    assert_eq!(s.send_finished(), Ok(true));
    assert_eq!(s.send_outstanding(), 0);
}

#[test]
fn closing_to_finished_at_once_for_a_reference_peer() {
    let now = Instant::now();
    let mut s = opener_opening(now);
    s.on_frame(&open_ack(false), Bytes::new(), now, usize::MAX);
    assert_eq!(s.peer_kind, PeerKind::Legacy);
    s.shutdown();
    assert!(
        s.poll_transmit(now, None).is_none(),
        "a reference peer gets no FIN"
    );
    assert_eq!(s.send_state, SendState::Finished);
}

#[test]
fn dropping_the_write_half_is_an_abortive_close_after_the_data() {
    let now = Instant::now();
    let mut s = opener_established(now);
    s.drop_handle(false, true);
    assert_eq!(
        s.send_state,
        SendState::Closing {
            abort: Some(reset_code::CANCELLED)
        }
    );
    let fin = s.poll_transmit(now, None).expect("the Close");
    let parsed = lp_frame::OwnedStreamFrame::parse(fin.payload).unwrap();
    assert_eq!(
        Close::parse(&parsed.payload).unwrap().error_code,
        Some(reset_code::CANCELLED)
    );
}

#[test]
fn a_write_after_shutdown_fails() {
    let now = Instant::now();
    let mut s = opener_established(now);
    s.shutdown();
    match s.write(b"late", now) {
        Write::Failed(e) => {
            assert_eq!(e.failure(), Failure::WriteAfterShutdown);
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
        }
        other => panic!("expected a failed write, got {other:?}"),
    }
}

#[test]
fn open_to_stopped_on_a_local_reset() {
    let now = Instant::now();
    let mut s = opener_with_data_in_flight(now, b"abc");
    s.reset(42);
    let stopped = Failure::Reset {
        code: 42,
        by_peer: false,
    };
    assert_eq!(s.send_state, SendState::Stopped(stopped));
    assert_eq!(s.send_outstanding(), 0, "unacknowledged bytes are dropped");
    let e = s.send_error().expect("the write side failed");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionAborted);
    assert_eq!(e.code(), Some(42));
    let frame = s.poll_transmit(now, None).expect("the Reset");
    assert_eq!(kind(&frame), MessageType::Reset);
    assert!(
        s.poll_transmit(now, None).is_none(),
        "nothing after the Reset"
    );
}

#[test]
fn a_peer_reset_stops_the_send_direction_as_a_broken_pipe() {
    let now = Instant::now();
    let mut s = opener_established(now);
    s.on_frame(
        &header(MessageType::Reset, 0),
        reset_frame(7),
        now,
        usize::MAX,
    );
    let e = s.send_error().expect("the write side failed");
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    assert_eq!(e.code(), Some(7));
}

#[test]
fn finished_stays_finished_after_a_reset() {
    let now = Instant::now();
    let mut s = opener_established(now);
    s.shutdown();
    let _ = s.poll_transmit(now, None);
    s.on_frame(&header(MessageType::Ack, 0), ack(1), now, usize::MAX);
    assert_eq!(s.send_state, SendState::Finished);
    s.reset(5);
    assert_eq!(s.send_state, SendState::Finished);
    assert_eq!(s.send_error(), None, "everything written arrived");
    assert_eq!(s.send_finished(), Ok(true));
}

#[test]
fn unacknowledged_data_fails_after_the_retransmission_limit() {
    let now = Instant::now();
    let mut s = opener_with_data_in_flight(now, b"abc");
    without_keepalive(&mut s);
    run_timers_until(&mut s, now, |s| s.teardown != Teardown::Live);
    assert_eq!(
        s.send_state,
        SendState::Stopped(Failure::TimedOut(Timeout::Retransmissions))
    );
    assert_eq!(
        s.recv_state,
        RecvState::Failed(Failure::TimedOut(Timeout::Retransmissions))
    );
    assert!(s.metrics.retransmits > 0);
}

// ----- the receive direction --------------------------------------------------------

#[test]
fn receiving_to_finished_on_the_fin() {
    let now = Instant::now();
    let mut s = listener_peer_finished(now, b"hello");
    let (got, end) = read_all(&mut s);
    assert_eq!(got, b"hello");
    assert_eq!(end, Read::Eof);
}

#[test]
fn receiving_to_failed_on_an_abortive_close() {
    let now = Instant::now();
    let mut s = listener(now);
    s.on_frame(
        &header(MessageType::Data, 0),
        Bytes::from_static(b"part"),
        now,
        usize::MAX,
    );
    s.on_frame(
        &header(MessageType::Close, 1),
        close(Some(9)),
        now,
        usize::MAX,
    );
    assert_eq!(
        s.recv_state,
        RecvState::Failed(Failure::Aborted { code: 9 })
    );
    let (got, end) = read_all(&mut s);
    assert_eq!(got, b"part", "bytes before the abort are delivered first");
    assert_eq!(failure_of(end), Failure::Aborted { code: 9 });
}

#[test]
fn the_fin_waits_for_a_gap_before_it() {
    let now = Instant::now();
    let mut s = listener(now);
    s.on_frame(&header(MessageType::Close, 1), close(None), now, usize::MAX);
    assert_eq!(s.recv_state, RecvState::Receiving, "seq 0 is missing");
    s.on_frame(
        &header(MessageType::Data, 0),
        Bytes::from_static(b"x"),
        now,
        usize::MAX,
    );
    assert_eq!(s.recv_state, RecvState::Finished);
}

#[test]
fn receiving_to_reset_on_a_peer_reset() {
    let now = Instant::now();
    let mut s = listener(now);
    s.on_frame(
        &header(MessageType::Data, 0),
        Bytes::from_static(b"lost"),
        now,
        usize::MAX,
    );
    s.on_frame(
        &header(MessageType::Reset, 0),
        reset_frame(3),
        now,
        usize::MAX,
    );
    assert_eq!(
        s.recv_state,
        RecvState::Reset {
            code: 3,
            by_peer: true
        }
    );
    let mut buf = [0u8; 8];
    let f = failure_of(s.read(&mut buf));
    assert_eq!(
        f,
        Failure::Reset {
            code: 3,
            by_peer: true
        }
    );
    assert_eq!(s.inbound_bytes(), 0, "queued bytes were dropped");
}

#[test]
fn a_peer_reset_after_the_fin_leaves_the_bytes_readable() {
    let now = Instant::now();
    let mut s = listener_peer_finished(now, b"all of it");
    s.on_frame(
        &header(MessageType::Reset, 0),
        reset_frame(3),
        now,
        usize::MAX,
    );
    assert_eq!(s.recv_state, RecvState::Finished);
    assert!(s.teardown.is_reset());
    let (got, end) = read_all(&mut s);
    assert_eq!(got, b"all of it");
    assert_eq!(end, Read::Eof);
}

#[test]
fn a_local_reset_after_the_fin_drops_the_bytes() {
    let now = Instant::now();
    let mut s = listener_peer_finished(now, b"dropped");
    s.reset(4);
    assert_eq!(
        s.recv_state,
        RecvState::Reset {
            code: 4,
            by_peer: false
        }
    );
    let mut buf = [0u8; 16];
    assert_eq!(
        failure_of(s.read(&mut buf)),
        Failure::Reset {
            code: 4,
            by_peer: false
        }
    );
}

#[test]
fn dropping_the_read_half_discards_what_arrives() {
    let now = Instant::now();
    let mut s = listener(now);
    s.drop_handle(true, false);
    s.on_frame(
        &header(MessageType::Data, 0),
        Bytes::from_static(b"unread"),
        now,
        usize::MAX,
    );
    assert_eq!(s.inbound_bytes(), 0);
    assert_eq!(s.recv_offset, 6, "still acknowledged in order");
}

// ----- liveness -----------------------------------------------------------------------

#[test]
fn an_idle_stream_is_reaped_and_the_peer_told() {
    let now = Instant::now();
    let mut s = listener(now);
    without_keepalive(&mut s);
    let idle = s.settings.idle_timeout;
    let at = run_timers_until(&mut s, now, |s| s.teardown != Teardown::Live);
    assert_eq!(s.teardown, Teardown::Reaped);
    assert!(at >= now + idle);
    assert!(s.is_reaped());
    // An extended peer never sent its FIN: the read is an error, not a clean end.
    assert_eq!(
        s.recv_state,
        RecvState::Failed(Failure::Reaped(Reap::Unfinished { idle }))
    );
    assert_eq!(
        s.send_state,
        SendState::Stopped(Failure::Reaped(Reap::Idle { idle }))
    );
}

#[test]
fn new_data_after_our_reap_turns_the_clean_end_into_an_error() {
    let now = Instant::now();
    let mut s = listener_peer_finished(now, b"x");
    s.reap_quietly(false);
    assert_eq!(s.recv_state, RecvState::Finished);
    s.on_frame(
        &header(MessageType::Data, 2),
        Bytes::from_static(b"late"),
        now,
        usize::MAX,
    );
    assert_eq!(
        s.recv_state,
        RecvState::Failed(Failure::Reaped(Reap::WrittenAfter))
    );
}

#[test]
fn a_reap_with_unacknowledged_bytes_fails_both_directions() {
    let now = Instant::now();
    let mut s = opener_with_data_in_flight(now, b"abcd");
    s.reap_quietly(true);
    let f = Failure::Reaped(Reap::Unacknowledged {
        by_peer: true,
        bytes: 4,
    });
    assert_eq!(s.send_state, SendState::Stopped(f));
    assert_eq!(s.recv_state, RecvState::Failed(f));
}

#[test]
fn a_delayed_ack_becomes_due_at_its_deadline() {
    let now = Instant::now();
    let mut s = listener(now);
    s.on_frame(
        &header(MessageType::Data, 0),
        Bytes::from_static(b"a"),
        now,
        usize::MAX,
    );
    // The first frame may be acked at once (credit low before the first ack);
    // send that, then a second frame waits for the delay.
    while s.poll_transmit(now, None).is_some() {}
    s.on_frame(
        &header(MessageType::Data, 1),
        Bytes::from_static(b"b"),
        now,
        usize::MAX,
    );
    let AckDue::At(at) = s.ack_due else {
        panic!("expected a delayed ack, got {:?}", s.ack_due);
    };
    assert_eq!(s.deadline_of(Timer::Ack), Some(at));
    assert!(!s.ack_due(now));
    s.on_timeout(at);
    assert_eq!(s.ack_due, AckDue::Now);
    let frame = s.poll_transmit(at, None).expect("the ack");
    assert_eq!(kind(&frame), MessageType::Ack);
    assert_eq!(s.ack_due, AckDue::Nothing);
}

#[test]
fn a_ping_is_answered_by_a_pong_with_its_nonce() {
    let now = Instant::now();
    let mut s = listener(now);
    s.on_frame(
        &header(MessageType::Ping, 77),
        Bytes::new(),
        now,
        usize::MAX,
    );
    assert_eq!(s.pending_ctl.pong, Some(77));
    let mut kinds = Vec::new();
    while let Some(f) = s.poll_transmit(now, None) {
        let h = lp_frame::StreamHeader::parse(&f.payload).unwrap();
        kinds.push((h.msg_type, h.seq));
    }
    assert!(kinds.contains(&(MessageType::Pong, 77)), "{kinds:?}");
}

#[test]
fn unanswered_keepalives_time_the_stream_out() {
    let now = Instant::now();
    let mut s = opener_established(now);
    // Keep the stream from being idle: a write the peer never acknowledges would hit
    // the retransmission limit first, so hold the read side open only.
    s.shutdown();
    let _ = s.poll_transmit(now, None);
    s.on_frame(&header(MessageType::Ack, 0), ack(1), now, usize::MAX);
    assert_eq!(s.send_state, SendState::Finished);
    let max = s.settings.keepalive_max_missed;
    run_timers_until(&mut s, now, |s| s.teardown != Teardown::Live);
    assert_eq!(s.teardown, Teardown::TimedOut);
    assert_eq!(u64::from(s.metrics.pings_sent), u64::from(max));
    assert_eq!(
        s.recv_state,
        RecvState::Failed(Failure::TimedOut(Timeout::Keepalive))
    );
    assert_eq!(
        s.send_state,
        SendState::Finished,
        "the finished direction stays so"
    );
}

// ----- SURB waiting (listener side) ---------------------------------------------------

#[test]
fn payload_short_of_surbs_waits_then_queues_then_is_released() {
    let now = Instant::now();
    let mut s = listener(now);
    s.set_nodelay(true);
    assert!(matches!(s.write(b"reply", now), Write::Accepted(5)));
    // The stock is down to the ack reserve: the data waits.
    let stock = Some(ACK_SURB_RESERVE);
    while let Some(f) = s.poll_transmit(now, stock) {
        assert_ne!(kind(&f), MessageType::Data, "data must wait for SURBs");
    }
    assert_eq!(s.surb_wait, SurbWait::Blocked { since: now });
    assert!(!s.wants_transmit(now));
    // The core queues it among its peer's waiters.
    assert!(s.surb_enqueue());
    assert!(s.surb_queued());
    // Its retry timer only refreshes the wait: the core releases it in turn.
    let retry = s.deadline_of(Timer::SurbRetry).expect("the retry timer");
    s.on_timeout(retry);
    assert_eq!(s.surb_wait, SurbWait::Queued { since: retry });
    s.surb_release();
    let f = s.poll_transmit(retry, Some(50)).expect("the data");
    assert_eq!(kind(&f), MessageType::Data);
}

#[test]
fn a_blocked_stream_not_yet_queued_looks_again_after_the_retry() {
    let now = Instant::now();
    let mut s = listener(now);
    s.set_nodelay(true);
    let _ = s.write(b"reply", now);
    while s.poll_transmit(now, Some(0)).is_some() {}
    assert_eq!(s.surb_wait, SurbWait::Blocked { since: now });
    let retry = s.deadline_of(Timer::SurbRetry).unwrap();
    s.on_timeout(retry);
    assert_eq!(s.surb_wait, SurbWait::Ready);
    assert!(s.wants_transmit(retry));
}

// ----- the timer table ----------------------------------------------------------------

/// `next_deadline` (computed without the table, on the hot path) agrees with the
/// table in every fixture state, before and after time passes.
#[test]
fn next_deadline_is_the_tables_next_after() {
    let now = Instant::now();
    let mut states = vec![
        opener_unsent(now),
        opener_opening(now),
        opener_established(now),
        opener_with_data_in_flight(now, b"abc"),
        listener(now),
        listener_peer_finished(now, b"x"),
    ];
    let mut coalescing = opener_established(now);
    let _ = coalescing.write(b"small", now);
    states.push(coalescing);
    for s in &states {
        for later in [0u64, 1, 30, 3600] {
            let t = now + Duration::from_secs(later);
            assert_eq!(s.next_deadline(t), s.timers().next_after(t));
        }
    }
}

// ----- handles ------------------------------------------------------------------------

#[test]
fn handles_drop_half_by_half() {
    let h = Handles::Both;
    assert_eq!(h.without(true, false), Handles::WriteOnly);
    assert_eq!(h.without(false, true), Handles::ReadOnly);
    assert_eq!(h.without(true, true), Handles::Dropped);
    assert_eq!(Handles::ReadOnly.without(true, false), Handles::Dropped);
    assert_eq!(Handles::ReadOnly.without(false, true), Handles::ReadOnly);
    assert_eq!(Handles::WriteOnly.without(false, true), Handles::Dropped);
}

#[test]
fn a_stream_stays_while_a_handle_is_held_and_leaves_after_its_linger() {
    let now = Instant::now();
    let mut s = opener_established(now);
    s.shutdown();
    let _ = s.poll_transmit(now, None);
    s.on_frame(&header(MessageType::Ack, 0), ack(1), now, usize::MAX);
    s.on_frame(&header(MessageType::Close, 0), close(None), now, usize::MAX);
    while s.poll_transmit(now, None).is_some() {}
    assert!(!s.removable(now), "the application still holds the stream");
    s.drop_handle(true, false);
    assert!(!s.removable(now), "the write half is still held");
    s.drop_handle(false, true);
    assert!(!s.removable(now), "lingers for late retransmissions");
    let linger = s.settings.linger;
    assert!(s.removable(now + linger));
}

/// Spare send chunks wait for reuse while data is unacknowledged, and go once the peer
/// acknowledged everything: an idle stream holds no send memory.
#[test]
fn spare_send_chunks_go_once_everything_is_acknowledged() {
    let now = Instant::now();
    let mut s = opener_with_data_in_flight(now, b"abc");
    assert_eq!(
        s.pending.slot_count(),
        1,
        "the rest of the chunk waits for the next write"
    );
    s.on_frame(&header(MessageType::Ack, 0), ack(1), now, usize::MAX);
    assert_eq!(s.send_outstanding(), 0);
    assert_eq!(s.pending.spare_count(), 0, "all acknowledged: released");
    assert_eq!(s.pending.slot_count(), 0, "and the chunk's rest with them");
}

/// One copy on the send path. The frames a write becomes are the memory the write copied
/// the bytes into, header in front of each payload: the frame sent, the payload kept for
/// retransmission and the next frame all lie in one chunk, one after the other. A frame
/// cut short for a piggybacked ack is no exception. (An encoder that copies each payload
/// into a new buffer puts frames anywhere on the heap and fails this.)
#[test]
fn a_written_byte_is_copied_once_on_its_way_to_the_transport() {
    let now = Instant::now();
    let mut s = opener_established(now);
    // The peer sent data: an ack is pending and rides on the first data frame.
    s.on_frame(
        &header(MessageType::Data, 0),
        Bytes::from_static(b"hi"),
        now,
        usize::MAX,
    );
    let data: Vec<u8> = (0..16 * 1024).map(|i| (i % 251) as u8).collect();
    assert_eq!(s.write(&data, now), Write::Accepted(data.len()));
    s.flush();
    let mut frames = Vec::new();
    while let Some(f) = s.poll_transmit(now, None) {
        if kind(&f) == MessageType::Data {
            frames.push(f.payload);
        }
    }
    let slot = super::pending::HEADROOM + s.frame_payload();
    assert!(frames.len() >= 10, "{} frames", frames.len());
    let mut sent = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let parsed = lp_frame::OwnedStreamFrame::parse(f.clone()).expect("a valid frame");
        let with_ack = parsed.header.reserved & ext::FLAG_ACK != 0;
        assert_eq!(with_ack, i == 0, "the ack rides on the first frame only");
        let payload_at = f.len() - parsed.payload.len();
        let body = if with_ack {
            let (ack, used) = Ack::parse(&parsed.payload).expect("the ack");
            assert!(ack.cumulative >= 1);
            parsed.payload[used..].to_vec()
        } else {
            parsed.payload.to_vec()
        };
        sent.extend_from_slice(&body);
        // The payload kept for retransmission is the frame's own memory.
        let Some(Segment::Data(kept)) = s.send_buf.get(Seq::new(i as u32)) else {
            panic!("frame {i} is held for retransmission");
        };
        assert_eq!(
            kept.as_ptr() as usize,
            f.as_ptr() as usize + f.len() - kept.len(),
            "frame {i}: the kept payload is the tail of the frame sent"
        );
        assert!(payload_at >= lp_frame::HEADER_LEN);
        if i > 0 {
            let gap = f.as_ptr() as usize - frames[i - 1].as_ptr() as usize;
            assert!(
                gap > 0 && gap <= slot,
                "frame {i} starts {gap} bytes after the one before, not within its slot"
            );
        }
    }
    assert_eq!(sent, data);
}

/// A huge `keepalive_max_missed` is capped at what the stream's (u16) count of unanswered
/// pings reaches, so a silent peer still ends the stream: the count saturates at
/// `u16::MAX`, which the cap then equals.
#[test]
fn keepalive_max_missed_is_capped_at_the_ping_count() {
    let c = cfg().with_keepalive_max_missed(100_000);
    assert_eq!(settings(&c).keepalive_max_missed, u32::from(u16::MAX));
    assert_eq!(
        settings(&cfg()).keepalive_max_missed,
        3,
        "the default stays"
    );
}
