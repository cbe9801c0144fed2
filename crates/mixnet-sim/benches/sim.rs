//! Wall-clock cost of the simulator itself (not of the modelled network).
//!
//! - `instant_transfer`: bytes moved per second through the zero-delay preset, in 16 KiB
//!   messages, one sender and one receiver, on a paused current-thread runtime.
//! - `realistic_hour`: wall time to simulate one hour of a saturated client (about 180 000
//!   paced packets, 1% loss) under tokio's paused clock.

use std::time::Duration;

use bytes::Bytes;
use divan::counter::BytesCount;
use divan::Bencher;
use mixnet_sim::{Mixnet, SimConfig};

fn main() {
    divan::main();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime")
}

const CHUNK: usize = 16 * 1024;

#[divan::bench(args = [16 << 20, 256 << 20], sample_count = 3, sample_size = 1)]
fn instant_transfer(bencher: Bencher<'_, '_>, total: usize) {
    let rt = runtime();
    let chunk = Bytes::from(vec![0x5a; CHUNK]);
    bencher.counter(BytesCount::new(total)).bench_local(|| {
        rt.block_on(async {
            let net = Mixnet::new(SimConfig::instant());
            let mut a = net.connect();
            let mut b = net.connect();
            let mut received = 0;
            while received < total {
                a.reserve().await.expect("connected");
                a.send_regular(b.address(), chunk.clone()).expect("send");
                received += b.recv().await.expect("delivered").payload.len();
            }
            assert_eq!(received, total);
        })
    });
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn realistic_hour(bencher: Bencher<'_, '_>) {
    let rt = runtime();
    bencher.bench_local(|| {
        rt.block_on(async {
            let net = Mixnet::new(SimConfig::realistic());
            let mut a = net.connect();
            let b = net.connect();
            let mut rx = net.connect();
            let sink = tokio::spawn(async move { while rx.recv().await.is_some() {} });
            let end = tokio::time::Instant::now() + Duration::from_secs(3600);
            let payload = Bytes::from(vec![1u8; 1500]);
            while tokio::time::Instant::now() < end {
                a.reserve().await.expect("connected");
                a.send_regular(b.address(), payload.clone()).expect("send");
            }
            let sent = a.stats().packets_sent;
            assert!(sent > 170_000, "saturated for an hour: {sent} packets");
            sink.abort();
        })
    });
}
