//! Property test: random application actions on both ends of one stream, over a
//! synthetic wire that drops, duplicates and reorders frames, never break
//! byte-exact delivery, EOF after the last byte, or the receive memory bounds.

mod common;

use std::time::Duration;

use common::pattern;
use common::wire::{Fate, Packet, Wire, A, B};
use mux::{LocalId, MuxConfig, Read};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Receive window of both ends (the smallest the core allows).
const WINDOW: u32 = 64 * 1024;
/// Client-wide inbound budget of both ends.
const BUDGET: usize = 96 * 1024;

#[derive(Clone, Debug)]
enum Action {
    /// The application at A (`true`) or B writes this many more bytes.
    Write(bool, usize),
    /// Flush at A or B.
    Flush(bool),
    /// Shut the write side of A or B down (after its bytes).
    Shutdown(bool),
    /// The application at A or B reads what is there.
    Read(bool),
    /// Synthetic time passes (milliseconds).
    Step(u64),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (any::<bool>(), 1usize..6000).prop_map(|(a, n)| Action::Write(a, n)),
        1 => (any::<bool>(), 20_000usize..90_000).prop_map(|(a, n)| Action::Write(a, n)),
        2 => any::<bool>().prop_map(Action::Flush),
        1 => any::<bool>().prop_map(Action::Shutdown),
        3 => any::<bool>().prop_map(Action::Read),
        3 => (0u64..8000).prop_map(Action::Step),
    ]
}

/// Network faults, in percent per frame.
#[derive(Clone, Copy, Debug)]
struct Faults {
    drop: u32,
    duplicate: u32,
    delay: u32,
    seed: u64,
}

fn faults() -> impl Strategy<Value = Faults> {
    (0u32..20, 0u32..15, 0u32..40, any::<u64>()).prop_map(|(drop, duplicate, delay, seed)| Faults {
        drop,
        duplicate,
        delay,
        seed,
    })
}

/// One direction of the stream as the application sees it.
struct Side {
    addr: u8,
    local: LocalId,
    /// Every byte the application asked to write, in order.
    intended: Vec<u8>,
    /// How many of them the core took.
    written: usize,
    shutdown_wanted: bool,
    shutdown_done: bool,
    /// Bytes read from the peer.
    got: Vec<u8>,
    eof: bool,
    seed: u64,
}

impl Side {
    fn new(addr: u8, local: LocalId) -> Self {
        Self {
            addr,
            local,
            intended: Vec::new(),
            written: 0,
            shutdown_wanted: false,
            shutdown_done: false,
            got: Vec::new(),
            eof: false,
            seed: u64::from(addr) * 1000,
        }
    }

    /// Hands the core what it takes of the pending bytes; shuts down when asked and
    /// everything was taken.
    fn push(&mut self, w: &mut Wire) {
        if self.written < self.intended.len() {
            self.written += w.write_some(self.addr, self.local, &self.intended[self.written..]);
        }
        if self.shutdown_wanted && !self.shutdown_done && self.written == self.intended.len() {
            w.shutdown(self.addr, self.local);
            self.shutdown_done = true;
        }
    }

    fn read(&mut self, w: &mut Wire) {
        if self.eof {
            return;
        }
        match w.read_available(self.addr, self.local, &mut self.got) {
            Read::Pending => {}
            Read::Eof => self.eof = true,
            Read::Data(_) => unreachable!("read_available drains data"),
            Read::Failed(e) => panic!("read at {} failed: {e}", self.addr),
        }
    }
}

fn check_bounds(w: &Wire) -> Result<(), TestCaseError> {
    for (i, peak) in w.peak_inbound.iter().enumerate() {
        prop_assert!(
            *peak <= WINDOW as usize,
            "core {} buffered {} bytes, window {}",
            i + 1,
            peak,
            WINDOW
        );
        prop_assert!(*peak <= BUDGET);
    }
    Ok(())
}

fn run_case(actions: Vec<Action>, f: Faults) -> Result<(), TestCaseError> {
    let cfg = MuxConfig::default()
        .with_receive_window(WINDOW)
        .with_inbound_budget(BUDGET)
        // Faults here are not bounded in a row; keep the retry limit out of the way.
        .with_max_retransmits(40);
    let mut w = Wire::new(cfg.clone(), cfg);
    let mut rng = ChaCha8Rng::seed_from_u64(f.seed);
    let mut fate = move |_: &Packet| {
        let roll = rng.gen_range(0..100);
        if roll < f.drop {
            Fate::Drop
        } else if roll < f.drop + f.duplicate {
            Fate::Duplicate
        } else if roll < f.drop + f.duplicate + f.delay {
            Fate::Delay
        } else {
            Fate::Deliver
        }
    };

    let (la, _) = w.a.open(w.now, B, None).unwrap();
    let mut lb = None;
    let accepted = w.run_with(Duration::from_secs(3600), &mut fate, &mut |w| {
        lb = w.b.accept().map(|x| x.0);
        lb.is_some()
    });
    prop_assert!(accepted, "the Open never got through");
    let mut sides = [Side::new(A, la), Side::new(B, lb.unwrap())];

    for act in actions {
        match act {
            Action::Write(at_a, n) => {
                let s = &mut sides[usize::from(!at_a)];
                if !s.shutdown_wanted {
                    s.seed += 1;
                    s.intended.extend(pattern(n, s.seed));
                    s.push(&mut w);
                }
            }
            Action::Flush(at_a) => {
                let s = &sides[usize::from(!at_a)];
                w.flush(s.addr, s.local);
            }
            Action::Shutdown(at_a) => {
                let s = &mut sides[usize::from(!at_a)];
                s.shutdown_wanted = true;
                s.push(&mut w);
            }
            Action::Read(at_a) => sides[usize::from(!at_a)].read(&mut w),
            Action::Step(ms) => {
                w.run_with(Duration::from_millis(ms), &mut fate, &mut |_| false);
                for s in &mut sides {
                    s.push(&mut w);
                }
            }
        }
        check_bounds(&w)?;
    }

    // Both ends finish writing and shut down; both read to EOF.
    for s in &mut sides {
        s.shutdown_wanted = true;
    }
    let done = w.run_with(Duration::from_secs(4 * 3600), &mut fate, &mut |w| {
        for s in &mut sides {
            s.push(w);
            w.flush(s.addr, s.local);
            s.read(w);
        }
        sides.iter().all(|s| s.eof)
    });
    check_bounds(&w)?;
    prop_assert!(
        done,
        "not finished after {:?}: A got {}/{} (eof {}), B got {}/{} (eof {})",
        w.elapsed(),
        sides[0].got.len(),
        sides[1].intended.len(),
        sides[0].eof,
        sides[1].got.len(),
        sides[0].intended.len(),
        sides[1].eof
    );
    prop_assert!(sides[1].got == sides[0].intended, "A -> B bytes differ");
    prop_assert!(sides[0].got == sides[1].intended, "B -> A bytes differ");
    Ok(())
}

proptest! {
    #![proptest_config(Config {
        cases: 64,
        rng_seed: RngSeed::Fixed(0x6d75_7874),
        ..Config::default()
    })]

    #[test]
    fn faults_never_break_byte_exactness_or_bounds(
        actions in proptest::collection::vec(action(), 1..40),
        f in faults(),
    ) {
        run_case(actions, f)?;
    }
}
