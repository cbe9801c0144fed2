//! Item 4 of the benchmark plan: what the mixnet link is spent on, in simulated time.
//!
//! Workloads, each on two networks with 0 %, 1 % (the preset's default) and 5 % per-packet
//! loss, under tokio's paused clock (deterministic, seeded):
//!
//! - faithful: `SimConfig::realistic()`, which behaves like nym-client-core 1.21.6 (a
//!   20-SURB reserve per sender tag, the client's own SURB requests and re-requests, batches
//!   handed over reversed, one whole message admitted per sending tick from a channel of 8,
//!   lanes);
//! - idealised: the same without the reserve, the batches and the channel bound (every
//!   SURB usable, arrival order), and our opener paying no reserve: close to what the
//!   simulator modelled before.
//!
//!
//! - bulk: 8 MiB from opener to listener, `tokio::io::copy` (8 KiB buffer) on both ends;
//! - interactive: 100 rounds of a 1 KiB request and a 1 KiB response.
//!
//! Stacks: ours with the default `MuxConfig` (coalescing, adaptive SURBs, acks), and the
//! reference-semantics row: our own stack in legacy mode on both ends, every write its own
//! message (`nodelay`), exactly 10 reply SURBs on every opener message (what a nym-sdk 1.21.6
//! stream spends on the same workload).
//!
//! Prints a markdown table. Run: `cargo bench -p nym-stream-bench --bench goodput`.
//! With `NYM_STREAM_BENCH_SMOKE=1` the workloads shrink to 64 KiB and 5 rounds.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::cell::Cell;
use std::time::Duration;

use bytes::Bytes;
use mixnet_sim::{SimConfig, DEFAULT_PAYLOAD_PER_PACKET};
use mux::MuxConfig;
use nym_stream_bench::{pattern, scaled, Pair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Simulated time after which a run is declared stalled.
const LIMIT: Duration = Duration::from_secs(4 * 3600);
const SEED: u64 = 0x6e79_6d00;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stack {
    Ours,
    Reference,
}

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Stack::Ours => "ours (default config)",
            Stack::Reference => "reference semantics (legacy, nodelay, 10 SURBs/msg)",
        }
    }
    fn config(self) -> MuxConfig {
        match self {
            Stack::Ours => MuxConfig::default(),
            // The reference has unbounded per-stream queues; a send buffer larger than
            // the workload models that. (It also sidesteps a mux bug: a legacy-mode writer
            // blocked on a full send buffer is never woken, see docs/BENCHMARKS.md.)
            Stack::Reference => MuxConfig::default()
                .with_legacy_mode(true)
                .with_nodelay(true)
                .with_send_buffer(64 << 20),
        }
    }
    fn surbs(self) -> Option<u32> {
        match self {
            Stack::Ours => None,
            Stack::Reference => Some(10),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Network {
    Faithful,
    Idealised,
}

impl Network {
    fn name(self) -> &'static str {
        match self {
            Network::Faithful => "faithful",
            Network::Idealised => "idealised",
        }
    }

    fn sim(self) -> SimConfig {
        let realistic = SimConfig::realistic();
        match self {
            Network::Faithful => realistic,
            Network::Idealised => SimConfig {
                reply_surb_reserve: 0,
                delivery_batch: None,
                input_channel_batches: usize::MAX,
                ..realistic
            },
        }
    }

    /// The opener keeps the peer client's reserve only where there is one.
    fn mux(self, cfg: MuxConfig) -> MuxConfig {
        match self {
            Network::Faithful => cfg,
            Network::Idealised => cfg.with_surb_reserve(0),
        }
    }
}

#[derive(Clone, Copy)]
enum Workload {
    Bulk { bytes: usize },
    Interactive { rounds: usize, size: usize },
}

impl Workload {
    fn name(self) -> String {
        match self {
            Workload::Bulk { bytes } => format!("bulk {} KiB", bytes / 1024),
            Workload::Interactive { rounds, size } => {
                format!("interactive {rounds}×{size} B")
            }
        }
    }
}

/// How a run ended.
enum Outcome {
    /// Every byte arrived and matched.
    Verified,
    /// A byte differed from what was sent.
    Corrupt(String),
    /// The run did not finish (stall, error or early EOF).
    Incomplete(String),
}

struct Row {
    network: &'static str,
    workload: String,
    stack: &'static str,
    loss: f64,
    packets_ab: u64,
    packets_ba: u64,
    surbs: u64,
    app_bytes: u64,
    secs: f64,
    outcome: Outcome,
    ideal_packets: Option<u64>,
}

async fn run(network: Network, stack: Stack, loss: f64, workload: Workload) -> Row {
    let mut sim = network.sim();
    sim.seed = SEED;
    sim.loss_probability = loss;
    let pair = Pair::new(sim, network.mux(stack.config()));
    let mut listener = pair.b.listener().expect("first listener");
    let to = pair.b.local_address();
    let start = Instant::now();
    // Application bytes delivered so far (both directions), verified as they arrive.
    let delivered = Cell::new(0u64);
    let delivered = &delivered;

    let outcome = match tokio::time::timeout(LIMIT, async {
        match workload {
            Workload::Bulk { bytes } => {
                bulk(&pair, &mut listener, to, stack, bytes, delivered).await
            }
            Workload::Interactive { rounds, size } => {
                interactive(&pair, &mut listener, to, stack, rounds, size, delivered).await
            }
        }
    })
    .await
    {
        Ok(o) => o,
        Err(_) => Outcome::Incomplete(format!("not done after {} s", LIMIT.as_secs())),
    };
    let secs = start.elapsed().as_secs_f64();
    let sa = pair
        .net
        .stats(&pair.a.local_address().sim_address())
        .unwrap_or_default();
    let sb = pair.net.stats(&to.sim_address()).unwrap_or_default();
    let ideal_packets = match workload {
        // Ideal: the payload bytes packed into whole packets, plus whatever the listener
        // spent on acknowledgements (every listener packet in a bulk run is an ack).
        Workload::Bulk { bytes } => {
            Some((bytes as u64).div_ceil(DEFAULT_PAYLOAD_PER_PACKET as u64) + sb.packets_sent)
        }
        Workload::Interactive { .. } => None,
    };
    Row {
        network: network.name(),
        workload: workload.name(),
        stack: stack.name(),
        loss,
        packets_ab: sa.packets_sent,
        packets_ba: sb.packets_sent,
        surbs: sa.surbs_attached,
        app_bytes: delivered.get(),
        secs,
        outcome,
        ideal_packets,
    }
}

type Handle = mux::MuxHandle<nym_stream::mixnet::Recipient, mux::SenderTag>;
type Listener = mux::MuxListener<nym_stream::mixnet::Recipient, mux::SenderTag>;

fn open(
    a: &Handle,
    to: nym_stream::mixnet::Recipient,
    stack: Stack,
) -> Result<mux::MuxStream<nym_stream::mixnet::Recipient, mux::SenderTag>, Outcome> {
    a.open_stream(to, stack.surbs())
        .map_err(|e| Outcome::Incomplete(format!("open failed: {e}")))
}

fn compare(got: &[u8], want: &[u8], offset: usize) -> Option<Outcome> {
    if got.len() != want.len() {
        return Some(Outcome::Incomplete(format!(
            "{} of {} bytes",
            offset + got.len(),
            offset + want.len()
        )));
    }
    got.iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .map(|i| Outcome::Corrupt(format!("first bad byte at {}", offset + i)))
}

async fn bulk(
    pair: &Pair,
    listener: &mut Listener,
    to: nym_stream::mixnet::Recipient,
    stack: Stack,
    bytes: usize,
    delivered: &Cell<u64>,
) -> Outcome {
    let data = pattern(bytes);
    let mut out = match open(&pair.a, to, stack) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let src = data.clone();
    let writer = tokio::spawn(async move {
        let mut rd: &[u8] = &src;
        let r = tokio::io::copy(&mut rd, &mut out).await;
        let r = match r {
            Ok(_) => out.flush().await,
            Err(e) => Err(e),
        };
        // Keep the stream open until the reader is done (a legacy stream has no FIN, and
        // dropping it early must not be what ends the transfer).
        let _ = done_rx.await;
        r
    });
    let Some(mut inc) = listener.accept().await else {
        return Outcome::Incomplete("listener closed".into());
    };
    // Read with an 8 KiB buffer, as `tokio::io::copy` does, checking each chunk as it
    // arrives so that `delivered` counts only good bytes. Exactly `bytes` are read (a
    // legacy stream has no FIN to end the transfer).
    let mut buf = vec![0u8; 8 * 1024];
    let mut got = 0usize;
    while got < bytes {
        let want = buf.len().min(bytes - got);
        match inc.read(&mut buf[..want]).await {
            Ok(0) => break,
            Ok(n) => {
                if let Some(o) = compare(&buf[..n], &data[got..got + n], got) {
                    return o;
                }
                got += n;
                delivered.set(got as u64);
            }
            Err(e) => return Outcome::Incomplete(format!("read failed after {got} bytes: {e}")),
        }
    }
    let _ = done_tx.send(());
    if got < bytes {
        return Outcome::Incomplete(format!("EOF after {got} of {bytes} bytes"));
    }
    match writer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Outcome::Incomplete(format!("write failed: {e}")),
        Err(e) => return Outcome::Incomplete(format!("writer task: {e}")),
    }
    Outcome::Verified
}

async fn interactive(
    pair: &Pair,
    listener: &mut Listener,
    to: nym_stream::mixnet::Recipient,
    stack: Stack,
    rounds: usize,
    size: usize,
    delivered: &Cell<u64>,
) -> Outcome {
    let requests = pattern(rounds * size);
    let responses: Bytes = pattern(rounds * size + 7).slice(7..);
    let mut out = match open(&pair.a, to, stack) {
        Ok(s) => s,
        Err(o) => return o,
    };
    // The server answers each request with the matching slice of `responses` and checks
    // the request it got.
    let (req_check, resp_src) = (requests.clone(), responses.clone());
    let server = async move {
        let Some(mut inc) = listener.accept().await else {
            return Outcome::Incomplete("listener closed".into());
        };
        let mut buf = vec![0u8; size];
        for r in 0..rounds {
            if let Err(e) = inc.read_exact(&mut buf).await {
                return Outcome::Incomplete(format!("server read in round {r}: {e}"));
            }
            if let Some(o) = compare(&buf, &req_check[r * size..(r + 1) * size], r * size) {
                return o;
            }
            delivered.set(delivered.get() + size as u64);
            let resp = &resp_src[r * size..(r + 1) * size];
            if let Err(e) = async {
                inc.write_all(resp).await?;
                inc.flush().await
            }
            .await
            {
                return Outcome::Incomplete(format!("server write in round {r}: {e}"));
            }
        }
        // Hold the stream until the client has read the last answer.
        std::future::pending::<()>().await;
        Outcome::Verified
    };
    let client = async move {
        let mut buf = vec![0u8; size];
        for r in 0..rounds {
            let req = &requests[r * size..(r + 1) * size];
            if let Err(e) = async {
                out.write_all(req).await?;
                out.flush().await
            }
            .await
            {
                return Outcome::Incomplete(format!("client write in round {r}: {e}"));
            }
            if let Err(e) = out.read_exact(&mut buf).await {
                return Outcome::Incomplete(format!("client read in round {r}: {e}"));
            }
            if let Some(o) = compare(&buf, &responses[r * size..(r + 1) * size], r * size) {
                return o;
            }
            delivered.set(delivered.get() + size as u64);
        }
        Outcome::Verified
    };
    tokio::select! {
        o = client => o,
        o = server => o,
    }
}

fn fmt_row(r: &Row) -> String {
    let packets = r.packets_ab + r.packets_ba;
    let link = packets * DEFAULT_PAYLOAD_PER_PACKET as u64;
    let goodput = if link == 0 {
        0.0
    } else {
        r.app_bytes as f64 / link as f64
    };
    let kib = r.app_bytes as f64 / 1024.0;
    let ideal = match r.ideal_packets {
        Some(i) => format!("{:.3}×", packets as f64 / i as f64),
        None => "–".into(),
    };
    let outcome = match &r.outcome {
        Outcome::Verified => "bytes verified".to_string(),
        Outcome::Corrupt(s) => format!("**CORRUPT**: {s}"),
        Outcome::Incomplete(s) => format!("**INCOMPLETE**: {s}"),
    };
    format!(
        "| {} | {} | {} | {:.0} % | {} ({} + {}) | {:.1} % | {} | {:.2} | {:.1} | {} |",
        r.network,
        r.workload,
        r.stack,
        r.loss * 100.0,
        packets,
        r.packets_ab,
        r.packets_ba,
        goodput * 100.0,
        ideal,
        r.surbs as f64 / kib,
        r.secs,
        outcome
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let workloads = [
        Workload::Bulk {
            bytes: scaled(8 << 20, 64 << 10),
        },
        Workload::Interactive {
            rounds: scaled(100, 5),
            size: 1024,
        },
    ];
    println!("| network | workload | stack | loss | packets (A→B + B→A) | goodput (app bytes / packets×1604) | packets / ideal | SURBs per KiB | time (sim s) | outcome |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for w in workloads {
        for loss in [0.0, 0.01, 0.05] {
            for network in [Network::Faithful, Network::Idealised] {
                for stack in [Stack::Ours, Stack::Reference] {
                    let row = rt.block_on(run(network, stack, loss, w));
                    if stack == Stack::Ours && !matches!(row.outcome, Outcome::Verified) {
                        failed = true;
                    }
                    println!("{}", fmt_row(&row));
                }
            }
        }
    }
    if failed {
        // Our own stack must deliver every byte intact; a reference-row failure is a
        // finding (it is what the extensions fix), ours is a bug.
        eprintln!("goodput: our stack did not deliver the workload intact (see the table)");
        std::process::exit(1);
    }
}
