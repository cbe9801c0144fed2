//! Item 2 of the benchmark plan: bulk throughput of one stream, 256 MiB, side by side:
//!
//! - `mux_loopback`: our multiplexer over a zero-cost in-memory loopback transport (no
//!   simulator): the stream layer's own cost;
//! - `mux_instant`: our multiplexer on `SimConfig::instant()` (no latency, no loss, no
//!   pacing; every frame still goes through the simulator's packet accounting);
//! - `yamux_duplex`: `yamux` 0.14 over a `tokio::io::duplex`;
//! - `raw_duplex`: the bytes written straight into a `tokio::io::duplex`.
//!
//! All three write in 64 KiB writes, read with a 64 KiB buffer, run on a current-thread
//! tokio runtime with the real clock, and count the bytes the reader saw. Divan reports the
//! time per transfer and bytes/s.
//!
//! Run: `cargo bench -p nym-stream-bench --bench throughput` (or `cargo xtask bench`).
//! With `NYM_STREAM_BENCH_SMOKE=1` each transfer is 1 MiB.

use std::future::poll_fn;

use divan::counter::BytesCount;
use divan::Bencher;
use nym_stream_bench::{
    mux_loopback_transfer, mux_transfer, pattern, read_all, scaled, write_pattern,
};
use tokio_util::compat::FuturesAsyncReadCompatExt;

const CHUNK: usize = 64 * 1024;

fn main() {
    divan::main();
}

fn total() -> usize {
    scaled(256 << 20, 1 << 20)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn mux_loopback(bencher: Bencher<'_, '_>) {
    let rt = runtime();
    let total = total();
    bencher.counter(BytesCount::new(total)).bench_local(|| {
        let got = rt.block_on(mux_loopback_transfer(1, total, CHUNK));
        assert_eq!(got, total, "mux delivered a different byte count");
    });
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn mux_instant(bencher: Bencher<'_, '_>) {
    let rt = runtime();
    let total = total();
    bencher.counter(BytesCount::new(total)).bench_local(|| {
        let got = rt.block_on(mux_transfer(1, total, CHUNK));
        assert_eq!(got, total, "mux delivered a different byte count");
    });
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn yamux_duplex(bencher: Bencher<'_, '_>) {
    let rt = runtime();
    let total = total();
    bencher.counter(BytesCount::new(total)).bench_local(|| {
        let got = rt.block_on(yamux_transfer(total));
        assert_eq!(got, total, "yamux delivered a different byte count");
    });
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn raw_duplex(bencher: Bencher<'_, '_>) {
    let rt = runtime();
    let total = total();
    bencher.counter(BytesCount::new(total)).bench_local(|| {
        let got = rt.block_on(async {
            let (mut w, mut r) = tokio::io::duplex(CHUNK);
            let data = pattern(CHUNK);
            let writer =
                tokio::spawn(async move { write_pattern(&mut w, &data, total, CHUNK).await });
            let got = read_all(&mut r, CHUNK, None).await.expect("read");
            writer.await.expect("writer task").expect("write");
            got
        });
        assert_eq!(got, total, "duplex delivered a different byte count");
    });
}

/// One yamux stream over a duplex pipe: the client opens it and writes, the server
/// accepts it and reads; each side's connection is driven by its own task.
async fn yamux_transfer(total: usize) -> usize {
    let (c, s) = tokio::io::duplex(CHUNK);
    let cfg = yamux::Config::default();
    let mut client = yamux::Connection::new(
        tokio_util::compat::TokioAsyncReadCompatExt::compat(c),
        cfg.clone(),
        yamux::Mode::Client,
    );
    let mut server = yamux::Connection::new(
        tokio_util::compat::TokioAsyncReadCompatExt::compat(s),
        cfg,
        yamux::Mode::Server,
    );
    let reader = tokio::spawn(async move {
        let inbound = poll_fn(|cx| server.poll_next_inbound(cx))
            .await
            .expect("an inbound stream")
            .expect("yamux accept");
        // Keep driving the server connection while the stream is read.
        let driver = tokio::spawn(async move {
            while let Some(r) = poll_fn(|cx| server.poll_next_inbound(cx)).await {
                r.expect("yamux server");
            }
        });
        let got = read_all(&mut inbound.compat(), CHUNK, None)
            .await
            .expect("read");
        driver.abort();
        got
    });
    let outbound = poll_fn(|cx| client.poll_new_outbound(cx))
        .await
        .expect("yamux open");
    let driver = tokio::spawn(async move {
        while let Some(r) = poll_fn(|cx| client.poll_next_inbound(cx)).await {
            if r.is_err() {
                break;
            }
        }
    });
    let data = pattern(CHUNK);
    write_pattern(&mut outbound.compat(), &data, total, CHUNK)
        .await
        .expect("write");
    let got = reader.await.expect("reader task");
    driver.abort();
    got
}
