//! Throughput of the reorder and send buffers under different arrival patterns.
//!
//! Each iteration pushes one window of 64-byte `Bytes` items through a fresh buffer whose
//! sequence numbers start just below `u32::MAX`, so every run crosses the wrap.

use std::time::{Duration, Instant};

use bytes::Bytes;
use divan::counter::ItemsCount;
use divan::Bencher;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use reorder::{ReorderBuffer, ReorderConfig, SendBuffer, SendConfig, Seq, SeqRange};

fn main() {
    divan::main();
}

const WINDOWS: [u32; 2] = [256, 4096];
static PAYLOAD: [u8; 64] = [0x5A; 64];

fn start(window: u32) -> Seq {
    Seq::new(u32::MAX - window / 2)
}

fn buffer(window: u32) -> ReorderBuffer<Bytes> {
    ReorderBuffer::new(
        start(window),
        ReorderConfig {
            max_items: window as usize,
            max_bytes: usize::MAX,
            max_distance: window,
        },
    )
}

/// Arrival order as offsets from the start seq, plus the items, built outside the timed loop.
fn arrivals(order: Vec<u32>) -> Vec<(u32, Bytes)> {
    order
        .into_iter()
        .map(|k| (k, Bytes::from_static(&PAYLOAD)))
        .collect()
}

/// Inserts every arrival, popping whatever became ready after each one; returns items popped.
fn run(window: u32, input: Vec<(u32, Bytes)>) -> usize {
    let mut rb = buffer(window);
    let base = start(window);
    let mut popped = 0;
    for (k, item) in input {
        rb.insert(base.add(k), item);
        popped += rb.drain_ready().count();
    }
    assert_eq!(popped, window as usize);
    popped
}

/// Items arrive in sequence order.
#[divan::bench(args = WINDOWS)]
fn insert_pop_in_order(bencher: Bencher<'_, '_>, window: u32) {
    bencher
        .counter(ItemsCount::new(window))
        .with_inputs(|| arrivals((0..window).collect()))
        .bench_local_values(|input| run(window, input));
}

/// The whole window arrives in reverse: everything waits for the last arrival.
#[divan::bench(args = WINDOWS)]
fn insert_pop_reversed_window(bencher: Bencher<'_, '_>, window: u32) {
    bencher
        .counter(ItemsCount::new(window))
        .with_inputs(|| arrivals((0..window).rev().collect()))
        .bench_local_values(|input| run(window, input));
}

/// A uniformly random permutation of the window (seeded).
#[divan::bench(args = WINDOWS)]
fn insert_pop_random_permutation(bencher: Bencher<'_, '_>, window: u32) {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    bencher
        .counter(ItemsCount::new(window))
        .with_inputs(|| {
            let mut order: Vec<u32> = (0..window).collect();
            order.shuffle(&mut rng);
            arrivals(order)
        })
        .bench_local_values(|input| run(window, input));
}

/// Sender side: push a window, acknowledge it in acks of 16 frames where the first frame of
/// each group is only SACKed-around (lost) until a final cumulative ack.
#[divan::bench(args = WINDOWS)]
fn send_push_sack_ack(bencher: Bencher<'_, '_>, window: u32) {
    let t0 = Instant::now();
    bencher.counter(ItemsCount::new(window)).bench_local(|| {
        let base = start(window);
        let mut sb = SendBuffer::new(base, SendConfig::default());
        for i in 0..window {
            sb.push(
                Bytes::from_static(&PAYLOAD),
                t0 + Duration::from_micros(u64::from(i)),
            );
        }
        let mut acked = 0;
        for group in (0..window).step_by(16) {
            let block = SeqRange::new(base.add(group + 1), base.add((group + 16).min(window)));
            let out = sb.on_ack(base, &[block], t0 + Duration::from_millis(100));
            acked += out.newly_acked_frames;
        }
        acked += sb.on_ack(base.add(window), &[], t0).newly_acked_frames;
        assert_eq!(acked, window as usize);
        acked
    });
}
