//! Latency under load (issue "Latency under load"): does an interactive stream stay fast
//! beside a bulk transfer on the same client?
//!
//! On the realistic (faithful) preset, paused clock, seeds 1 to 5: a client runs 60
//! request/response rounds of 100 bytes on one stream (one round per second, `nodelay`),
//! - alone;
//! - beside a second stream on the same client uploading 16 MiB to the server;
//! - beside a second stream downloading 16 MiB from the server.
//!
//! It reports the median and 95th percentile round trip, each as a multiple of the same
//! seed's "alone" figure, and the bulk goodput during the rounds: application bytes the
//! bulk stream delivered while the rounds ran, over what the link carries in that time
//! (50 packets/s × 1604 bytes). Every configuration in `CONFIGS` runs side by side in one
//! run.
//!
//! Prints a markdown table. Run: `cargo bench -p nym-stream-bench --bench latency`.
//! With `NYM_STREAM_BENCH_SMOKE=1`: one seed, 5 rounds, 256 KiB.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use mixnet_sim::{SimConfig, DEFAULT_PAYLOAD_PER_PACKET};
use mux::MuxConfig;
use nym_stream_bench::{pattern, scaled, smoke, Pair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Simulated time after which a run is declared stalled.
const LIMIT: Duration = Duration::from_secs(3600);
const ROUND_BYTES: usize = 100;
/// Link capacity of one client: one packet per 20 ms.
const LINK_BYTES_PER_SEC: f64 = 50.0 * DEFAULT_PAYLOAD_PER_PACKET as f64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Load {
    Alone,
    Upload,
    Download,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::Alone => "alone",
            Load::Upload => "beside upload",
            Load::Download => "beside download",
        }
    }
    /// The first byte a stream's opener sends tells the server what it is.
    fn tag(self) -> u8 {
        match self {
            Load::Alone => b'E',
            Load::Upload => b'U',
            Load::Download => b'D',
        }
    }
}

struct Run {
    rtts: Vec<Duration>,
    /// Bulk bytes delivered while the rounds ran, and how long they ran.
    bulk_bytes: u64,
    window: Duration,
    error: Option<String>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

type Stream = mux::MuxStream<nym_stream::mixnet::Recipient, mux::SenderTag>;

/// Serves every stream: `E` echoes, `U` is read and dropped (its byte count published), `D`
/// gets `bulk` bytes written to it.
fn serve(pair: &Pair, bulk: usize, received: Rc<Cell<u64>>) {
    let mut listener = pair.b.listener().expect("the listener");
    tokio::task::spawn_local(async move {
        while let Some(mut s) = listener.accept().await {
            let received = Rc::clone(&received);
            tokio::task::spawn_local(async move {
                let mut kind = [0u8; 1];
                if s.read_exact(&mut kind).await.is_err() {
                    return;
                }
                match kind[0] {
                    b'E' => {
                        s.set_nodelay(true);
                        let mut buf = [0u8; ROUND_BYTES];
                        while s.read_exact(&mut buf).await.is_ok() {
                            if s.write_all(&buf).await.is_err() {
                                return;
                            }
                        }
                    }
                    b'U' => {
                        let mut buf = vec![0u8; 16 << 10];
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            received.set(received.get() + n as u64);
                        }
                    }
                    b'D' => {
                        let data = pattern(bulk);
                        let _ = s.write_all(&data).await;
                        let _ = s.shutdown().await;
                    }
                    _ => {}
                }
            });
        }
    });
}

async fn run(seed: u64, load: Load, mux: MuxConfig, rounds: usize, bulk: usize) -> Run {
    let sim = SimConfig::realistic().with_seed(seed);
    let pair = Pair::new(sim, mux);
    let uploaded = Rc::new(Cell::new(0u64));
    serve(&pair, bulk, Rc::clone(&uploaded));
    let to = pair.b.local_address();
    let downloaded = Rc::new(Cell::new(0u64));

    let mut echo: Stream = pair.a.open_stream(to, None).expect("open");
    echo.set_nodelay(true);
    echo.write_all(&[Load::Alone.tag()]).await.expect("tag");
    // Let the echo stream settle before the load starts.
    let mut probe = [0u8; ROUND_BYTES];
    echo.write_all(&probe).await.expect("probe");
    echo.read_exact(&mut probe).await.expect("probe echo");

    if load != Load::Alone {
        let mut s: Stream = pair.a.open_stream(to, None).expect("open bulk");
        s.write_all(&[load.tag()]).await.expect("tag");
        let downloaded = Rc::clone(&downloaded);
        tokio::task::spawn_local(async move {
            match load {
                Load::Upload => {
                    let data = pattern(bulk);
                    let _ = s.write_all(&data).await;
                    let _ = s.shutdown().await;
                }
                _ => {
                    let mut buf = vec![0u8; 16 << 10];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        downloaded.set(downloaded.get() + n as u64);
                    }
                }
            }
        });
        // Let the bulk transfer reach its steady state.
        tokio::time::sleep(Duration::from_secs(10)).await;
    }

    let bulk_total = || uploaded.get() + downloaded.get();
    let before = bulk_total();
    let start = Instant::now();
    let mut rtts = Vec::with_capacity(rounds);
    let mut error = None;
    let msg: Vec<u8> = (0..ROUND_BYTES as u8).collect();
    for i in 0..rounds {
        let due = start + Duration::from_secs(i as u64);
        tokio::time::sleep_until(due).await;
        let sent = Instant::now();
        let mut back = [0u8; ROUND_BYTES];
        let round = async {
            echo.write_all(&msg).await?;
            echo.read_exact(&mut back).await
        };
        match tokio::time::timeout(LIMIT, round).await {
            Ok(Ok(_)) if back[..] == msg[..] => rtts.push(sent.elapsed()),
            Ok(Ok(_)) => {
                error = Some(format!("round {i}: the echo differs"));
                break;
            }
            Ok(Err(e)) => {
                error = Some(format!("round {i}: {e}"));
                break;
            }
            Err(_) => {
                error = Some(format!("round {i}: stalled"));
                break;
            }
        }
    }
    let window = start.elapsed();
    Run {
        rtts,
        bulk_bytes: bulk_total() - before,
        window,
        error,
    }
}

/// The configurations compared side by side.
fn configs() -> Vec<(&'static str, MuxConfig)> {
    vec![
        ("queue target 60 ms (default)", MuxConfig::default()),
        (
            "queue target 500 ms (before)",
            MuxConfig::default().with_send_queue_target(Duration::from_millis(500)),
        ),
    ]
}

fn main() {
    let seeds: Vec<u64> = if smoke() { vec![1] } else { (1..=5).collect() };
    let rounds = scaled(60, 5);
    let bulk = scaled(16 << 20, 256 << 10);
    println!("| config | seed | load | median RTT | p95 RTT | median / alone | p95 / alone | bulk goodput during rounds | outcome |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for (name, cfg) in configs() {
        for &seed in &seeds {
            let mut alone = None;
            for load in [Load::Alone, Load::Upload, Load::Download] {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .start_paused(true)
                    .build()
                    .expect("a current-thread runtime");
                let local = tokio::task::LocalSet::new();
                let r = local.block_on(&rt, run(seed, load, cfg.clone(), rounds, bulk));
                let mut sorted = r.rtts.clone();
                sorted.sort();
                let (median, p95) = (percentile(&sorted, 0.5), percentile(&sorted, 0.95));
                if load == Load::Alone {
                    alone = Some((median, p95));
                }
                let (m0, p0) = alone.unwrap_or((median, p95));
                let ratio = |x: Duration, base: Duration| {
                    if base.is_zero() {
                        "–".to_string()
                    } else {
                        format!("{:.2}×", x.as_secs_f64() / base.as_secs_f64())
                    }
                };
                let goodput = if load == Load::Alone {
                    "–".to_string()
                } else {
                    format!(
                        "{:.1} %",
                        100.0 * r.bulk_bytes as f64 / (r.window.as_secs_f64() * LINK_BYTES_PER_SEC)
                    )
                };
                let outcome = match &r.error {
                    None => format!("{} rounds", r.rtts.len()),
                    Some(e) => {
                        failed = true;
                        e.clone()
                    }
                };
                println!(
                    "| {name} | {seed} | {} | {:.2} s | {:.2} s | {} | {} | {goodput} | {outcome} |",
                    load.name(),
                    median.as_secs_f64(),
                    p95.as_secs_f64(),
                    ratio(median, m0),
                    ratio(p95, p0),
                );
            }
        }
    }
    if failed {
        eprintln!("some runs did not complete");
        std::process::exit(1);
    }
}
