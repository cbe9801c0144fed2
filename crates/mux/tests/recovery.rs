//! Recovery after a retransmission timeout: real losses are repaired in round trips,
//! late acks (a timeout that was spurious) cost no resends.

mod common;

use std::time::Duration;

use common::pattern;
use common::wire::{Wire, A, B};
use lp_frame::MessageType;

/// A's frames and B's acks are only late (queued somewhere), not lost: the timer fires
/// and resends the oldest frame, then acks for first transmissions come in. Those show
/// the timeout was spurious, so the frames sent before it are not resent one after
/// another as each ack arrives (they were, two per ack, before this check).
#[test]
fn late_acks_after_a_timeout_cost_no_further_resends() {
    let mut w = Wire::default_pair();
    let (la, _lb) = w.open_pair();
    // Twenty frames of data; hold them all (in the network's queue, say).
    w.write_all(A, la, &pattern(20 * 1_500, 4));
    w.collect();
    let held: Vec<_> = w.queue.drain(..).collect();
    let data: Vec<_> = held
        .iter()
        .filter(|p| p.kind() == MessageType::Data)
        .cloned()
        .collect();
    assert!(data.len() >= 15, "{} data frames", data.len());
    // The retransmission timer fires (initial RTO 5 s): one frame goes again.
    w.now += Duration::from_secs(6);
    let now = w.now;
    w.a.handle_timeout(now);
    w.b.handle_timeout(now);
    w.collect();
    let resent: Vec<_> = w.queue.drain(..).collect();
    assert_eq!(w.a.stream_metrics(la).unwrap().retransmits, 1);
    // The first half of the original frames arrives; B acks them.
    for p in data.iter().take(data.len() / 2).cloned() {
        w.deliver(p);
    }
    w.now += Duration::from_secs(2);
    let now = w.now;
    w.b.handle_timeout(now);
    w.collect();
    let from_b: Vec<_> = w.queue.drain(..).filter(|p| p.from == B).collect();
    assert!(
        from_b.iter().any(|p| p.kind() == MessageType::Ack),
        "B acks what arrived"
    );
    for p in from_b {
        w.deliver(p);
    }
    // A resends nothing more: the other half is still on its way.
    w.collect();
    let again = w
        .queue
        .iter()
        .filter(|p| p.from == A && p.kind() == MessageType::Data)
        .count();
    assert_eq!(again, 0, "frames resent after a spurious timeout");
    assert_eq!(w.a.stream_metrics(la).unwrap().retransmits, 1);
    drop(resent);
}
