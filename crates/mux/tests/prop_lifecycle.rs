//! Property test of the lifecycle under hostile schedules: several streams both ways,
//! random writes, reads, shutdowns, resets and dropped handles, a network that drops,
//! duplicates, delays and goes silent for minutes, idle reaps, and latency. After every
//! step the timer contract holds (the wire checks it on every timeout) and the memory
//! bounds hold; at the end, once every handle is dropped, both stream tables empty
//! and no timer stays armed forever.

mod common;

use std::time::Duration;

use common::pattern;
use common::wire::{Fate, Packet, Wire, A, B};
use mux::{LocalId, MuxConfig, Read};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const STREAMS: usize = 3;
const WINDOW: u32 = 64 * 1024;
const BUDGET: usize = 1 << 20;

#[derive(Clone, Debug)]
enum Action {
    /// Write this many bytes on stream i at A (`true`) or B.
    Write(usize, bool, usize),
    /// Read what is there on stream i.
    Read(usize, bool),
    /// Shut stream i's write side down.
    Shutdown(usize, bool),
    /// Reset stream i.
    Reset(usize, bool),
    /// Drop both handles of stream i.
    Drop(usize, bool),
    /// Time passes (milliseconds).
    Step(u64),
    /// The network loses everything for this many seconds.
    Silence(u64),
}

fn action() -> impl Strategy<Value = Action> {
    let i = 0..STREAMS;
    prop_oneof![
        5 => (i.clone(), any::<bool>(), 1usize..20_000).prop_map(|(i, a, n)| Action::Write(i, a, n)),
        3 => (i.clone(), any::<bool>()).prop_map(|(i, a)| Action::Read(i, a)),
        1 => (i.clone(), any::<bool>()).prop_map(|(i, a)| Action::Shutdown(i, a)),
        1 => (i.clone(), any::<bool>()).prop_map(|(i, a)| Action::Reset(i, a)),
        1 => (i, any::<bool>()).prop_map(|(i, a)| Action::Drop(i, a)),
        3 => (0u64..20_000).prop_map(Action::Step),
        1 => (1u64..400).prop_map(Action::Silence),
    ]
}

fn check_bounds(w: &Wire) -> Result<(), TestCaseError> {
    for core in [&w.a, &w.b] {
        prop_assert!(core.inbound_bytes() <= BUDGET);
        prop_assert!(core.promised_credit() <= BUDGET as u64);
    }
    Ok(())
}

fn run_case(
    actions: Vec<Action>,
    seed: u64,
    latency_ms: u64,
    idle_s: u64,
) -> Result<(), TestCaseError> {
    let cfg = MuxConfig::default()
        .with_receive_window(WINDOW)
        .with_inbound_budget(BUDGET)
        .with_idle_timeout(Duration::from_secs(idle_s))
        .with_keepalive_interval(Duration::from_secs(30));
    let mut w = Wire::new(cfg.clone(), cfg).with_latency(Duration::from_millis(latency_ms));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let silent_until = std::cell::Cell::new(w.now);
    let clock = std::cell::Cell::new(w.now);
    let mut fate = |_: &Packet| {
        if clock.get() < silent_until.get() {
            return Fate::Drop;
        }
        match rng.gen_range(0..100) {
            0..=9 => Fate::Drop,
            10..=14 => Fate::Duplicate,
            15..=34 => Fate::Delay,
            _ => Fate::Deliver,
        }
    };

    // Streams opened by A; B accepts them as they arrive.
    let now = w.now;
    let opened: Vec<LocalId> = (0..STREAMS)
        .map(|_| w.a.open(now, B, None).unwrap().0)
        .collect();
    let mut accepted: Vec<Option<LocalId>> = vec![None; STREAMS];
    let mut dropped = [[false; 2]; STREAMS];
    let mut n_accepted = 0;
    let mut accept = |w: &mut Wire, accepted: &mut Vec<Option<LocalId>>| {
        while let Some((l, _)) = w.b.accept() {
            if n_accepted < STREAMS {
                accepted[n_accepted] = Some(l);
                n_accepted += 1;
            }
        }
    };
    for act in actions {
        accept(&mut w, &mut accepted);
        let side = |i: usize, at_a: bool| -> Option<(u8, LocalId)> {
            if at_a {
                Some((A, opened[i]))
            } else {
                accepted[i].map(|l| (B, l))
            }
        };
        match act {
            Action::Write(i, a, n) => {
                if let Some((addr, l)) = side(i, a).filter(|_| !dropped[i][usize::from(!a)]) {
                    // Failures (reset, timed out, reaped) are expected here.
                    let now = w.now;
                    let _ = w.core(addr).write(now, l, &pattern(n, i as u64));
                    w.flush(addr, l);
                }
            }
            Action::Read(i, a) => {
                if let Some((addr, l)) = side(i, a).filter(|_| !dropped[i][usize::from(!a)]) {
                    let r = w.read_available(addr, l, &mut Vec::new());
                    prop_assert!(!matches!(r, Read::Data(_)));
                }
            }
            Action::Shutdown(i, a) => {
                if let Some((addr, l)) = side(i, a).filter(|_| !dropped[i][usize::from(!a)]) {
                    w.shutdown(addr, l);
                }
            }
            Action::Reset(i, a) => {
                if let Some((addr, l)) = side(i, a).filter(|_| !dropped[i][usize::from(!a)]) {
                    w.reset(addr, l, 0x200);
                }
            }
            Action::Drop(i, a) => {
                if let Some((addr, l)) = side(i, a).filter(|_| !dropped[i][usize::from(!a)]) {
                    w.drop_handle(addr, l);
                    dropped[i][usize::from(!a)] = true;
                }
            }
            Action::Step(ms) => {
                w.run_with(Duration::from_millis(ms), &mut fate, &mut |_| false);
            }
            Action::Silence(s) => {
                silent_until.set(w.now + Duration::from_secs(s));
            }
        }
        clock.set(w.now);
        check_bounds(&w)?;
    }
    // The application lets go of everything; the network heals.
    silent_until.set(w.now);
    accept(&mut w, &mut accepted);
    for i in 0..STREAMS {
        if !dropped[i][0] {
            w.drop_handle(A, opened[i]);
        }
        if let Some(l) = accepted[i].filter(|_| !dropped[i][1]) {
            w.drop_handle(B, l);
        }
    }
    // Streams B never accepted age out of its backlog, and everything else ends by
    // FIN, reset, retransmission limit, keepalive or idle reap.
    let emptied = w.run_with(Duration::from_secs(6 * 3600), &mut fate, &mut |w| {
        while w.b.accept().is_some_and(|(l, _)| {
            w.b.drop_handle(w.now, l, true, true);
            true
        }) {}
        w.a.stream_count() == 0 && w.b.stream_count() == 0
    });
    check_bounds(&w)?;
    prop_assert!(
        emptied,
        "streams left after every handle was dropped: A {}, B {}",
        w.a.stream_count(),
        w.b.stream_count()
    );
    // Late frames of ended streams may sit in the orphan store until its TTL.
    w.sleep(MuxConfig::default().orphan_ttl + Duration::from_secs(1));
    prop_assert_eq!(w.a.inbound_bytes(), 0, "A: {:?}", w.a.metrics());
    prop_assert_eq!(w.b.inbound_bytes(), 0, "B: {:?}", w.b.metrics());
    Ok(())
}

proptest! {
    #![proptest_config(Config {
        cases: 48,
        rng_seed: RngSeed::Fixed(0x6c69_6665),
        ..Config::default()
    })]

    #[test]
    fn hostile_schedules_keep_timers_bounds_and_cleanup(
        actions in proptest::collection::vec(action(), 1..40),
        seed in any::<u64>(),
        latency_ms in 0u64..400,
        idle_s in prop_oneof![Just(3600u64), 20u64..300],
    ) {
        run_case(actions, seed, latency_ms, idle_s)?;
    }
}
