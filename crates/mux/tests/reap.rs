//! The idle timeout never cuts a stream silently: a stream that is still sending is
//! not idle, and a reap that races the peer's writes is an error on both sides.

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use common::pattern;
use common::wire::{Fate, Wire, A, B};
use lp_frame::MessageType;
use mux::{MuxConfig, Read, Write};

const IDLE: Duration = Duration::from_secs(20);

fn cfg() -> MuxConfig {
    MuxConfig::default()
        .with_idle_timeout(IDLE)
        .with_keepalive_interval(Duration::from_secs(3600))
}

/// Acks that take longer than the idle timeout (a listener out of SURBs, say) must
/// not get a sender with unacknowledged bytes reaped: it once was, and its peer read
/// a clean EOF short of the data.
#[test]
fn a_stream_waiting_for_acks_is_not_idle() {
    let mut w = Wire::new(cfg(), cfg());
    let (la, lb) = w.open_pair();
    let data = pattern(30_000, 9);
    w.write_all(A, la, &data);
    w.shutdown(A, la);
    // B's acks are lost for three idle timeouts.
    let mut got = Vec::new();
    w.run_with(
        IDLE * 3,
        &mut |p| {
            if p.from == B {
                Fate::Drop
            } else {
                Fate::Deliver
            }
        },
        &mut |_| false,
    );
    assert!(!w.a.is_reaped(la), "a sender with unacked bytes was reaped");
    // The path heals: everything arrives, then a clean EOF, and A's FIN is acked.
    let mut end = Read::Pending;
    w.run(IDLE * 6, &mut |w| {
        end = w.read_available(B, lb, &mut got);
        matches!(end, Read::Eof | Read::Failed(_))
    });
    assert!(matches!(end, Read::Eof), "{end:?}");
    assert!(got == data, "got {} of {} bytes", got.len(), data.len());
    assert!(!w.a.is_reaped(la));
    assert!(w.shutdown(A, la), "the FIN went out");
}

/// A writes while B's idle reap is on its way: A holds unacknowledged bytes when
/// B's `Reset(IDLE_TIMEOUT)` arrives, and B receives A's bytes after it reaped.
/// Neither side may see a clean end.
#[test]
fn a_write_racing_an_idle_reap_is_an_error_on_both_sides() {
    let mut w = Wire::new(cfg(), cfg());
    let (la, lb) = w.open_pair();
    w.write_all(A, la, b"early");
    w.pump();
    let mut got = Vec::new();
    w.read_available(B, lb, &mut got);
    assert_eq!(got, b"early");
    // Just before B's idle deadline, A writes; its frame is still in flight when B
    // reaps.
    let deadline = w.now + IDLE;
    w.sleep(IDLE - Duration::from_millis(1));
    w.write_all(A, la, b"late bytes");
    w.collect();
    let in_flight: Vec<_> = w.queue.drain(..).collect();
    assert!(in_flight.iter().any(|p| p.kind() == MessageType::Data));
    w.now = deadline;
    w.b.handle_timeout(deadline);
    assert!(w.b.is_reaped(lb));
    // B's Reset(IDLE_TIMEOUT) reaches A first, then A's data reaches B.
    w.collect();
    let resets: Vec<_> = w.queue.drain(..).collect();
    assert!(resets
        .iter()
        .any(|p| p.from == B && p.kind() == MessageType::Reset));
    for p in resets {
        w.deliver(p);
    }
    for p in in_flight {
        w.deliver(p);
    }
    w.pump();
    // A: its bytes were not acknowledged, so its writes and reads fail.
    let err = match w.read_available(A, la, &mut Vec::new()) {
        Read::Failed(e) => e,
        other => panic!("A's read ended with {other:?}, expected an error"),
    };
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(err.to_string().contains("not yet acknowledged"), "{err}");
    match w.write(A, la, b"more") {
        Write::Failed(e) => assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}"),
        other => panic!("A's write: {other:?}"),
    }
    // B: bytes arrived after its reap, so its read is no clean EOF either.
    let mut after = Vec::new();
    let end = w.read_available(B, lb, &mut after);
    assert!(after.is_empty());
    let err = match end {
        Read::Failed(e) => e,
        other => panic!("B's read ended with {other:?}, expected an error"),
    };
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
}

/// Without a race an idle reap is still no clean end for an extended peer: neither side
/// sent its FIN, so the reader cannot know it got everything. Reads return what arrived,
/// then `TimedOut`.
#[test]
fn a_quiet_idle_reap_ends_reads_with_an_error() {
    let mut w = Wire::new(cfg(), cfg());
    let (la, lb) = w.open_pair();
    w.write_all(A, la, b"hello");
    w.pump();
    w.sleep(IDLE + Duration::from_secs(1));
    assert!(w.a.is_reaped(la) && w.b.is_reaped(lb));
    let mut got = Vec::new();
    match w.read_available(B, lb, &mut got) {
        Read::Failed(e) => assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}"),
        other => panic!("B's read ended with {other:?}, expected an error"),
    }
    assert_eq!(got, b"hello");
    match w.read_available(A, la, &mut Vec::new()) {
        Read::Failed(e) => assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}"),
        other => panic!("A's read ended with {other:?}, expected an error"),
    }
}
