//! Hostile-network soak through the public facade: many client pairs, many streams,
//! distinct payloads both ways, every byte checked, every stream ending in a clean EOF
//! after shutdown, handles dropped as soon as each stream is done.
//!
//! `soak_small` runs with the other tests; `soak_full` (1 GiB across 2,000 streams on 20
//! pairs at 20 % loss) is `cargo xtask soak` (release build, a few minutes of wall time).
//! Both run on tokio's paused clock: simulated time, fixed seeds.
#![allow(clippy::print_stderr)]

use std::time::Duration;

use nym_stream::mixnet::{
    Mixnet, MixnetClient, MixnetClientBuilder, MixnetStream, SimConfig, StreamMetrics,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The size of one soak.
#[derive(Clone, Copy, Debug)]
struct Soak {
    seed: u64,
    pairs: usize,
    streams_per_pair: usize,
    /// Bytes each way per stream.
    bytes_each_way: usize,
    loss: f64,
    /// Simulated time after which the soak counts as stalled.
    limit: Duration,
}

/// Deterministic, distinct bytes for (stream, direction).
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// When the soak started, in simulated time (for failure messages).
fn sim_start() -> tokio::time::Instant {
    static START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    *START.get_or_init(tokio::time::Instant::now)
}

fn stream_seed(pair: usize, stream: u64, from_opener: bool) -> u64 {
    ((pair as u64) << 40) ^ (stream << 1) ^ u64::from(from_opener)
}

async fn client(net: &Mixnet, seed: u64) -> MixnetClient {
    MixnetClientBuilder::new_ephemeral()
        .network(net.clone())
        .with_stream_id_seed(seed)
        .build()
        .expect("valid settings")
        .connect_to_mixnet()
        .await
        .expect("connects")
}

/// Writes `mine` and shuts down while reading the peer's bytes to EOF; checks them and
/// returns the stream's counters. The stream is dropped as soon as both are done.
async fn exchange(
    stream: MixnetStream,
    mine: Vec<u8>,
    theirs: Vec<u8>,
    side: &'static str,
) -> StreamMetrics {
    let id = stream.id();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = async move {
        if let Err(e) = wr.write_all(&mine).await {
            panic!("{side} write ({:?} simulated): {e}", sim_start().elapsed());
        }
        wr.shutdown().await.expect("shutdown");
        wr
    };
    let reader = async move {
        let mut got = Vec::with_capacity(theirs.len());
        if let Err(e) = rd.read_to_end(&mut got).await {
            panic!(
                "{side} read (after {} bytes, {:?} simulated): {e}",
                got.len(),
                sim_start().elapsed()
            );
        }
        assert_eq!(got.len(), theirs.len(), "{side} stream {id}: length");
        assert!(got == theirs, "stream {id}: bytes differ");
        rd
    };
    let (wr, rd) = tokio::join!(writer, reader);
    let stream = rd.unsplit(wr);
    stream
        .closed()
        .await
        .expect("everything written was acknowledged");
    let m = stream.metrics();
    drop(stream);
    m
}

#[derive(Default, Debug)]
struct Totals {
    streams: u64,
    frames_sent: u64,
    retransmits: u64,
    duplicates: u64,
}

impl Totals {
    fn add(&mut self, m: &StreamMetrics) {
        self.streams += 1;
        self.frames_sent += m.frames_sent;
        self.retransmits += m.retransmits;
        self.duplicates += m.duplicates;
    }
}

async fn run_pair(net: Mixnet, pair: usize, soak: Soak) -> (Totals, u64, u64, u64) {
    let mut server = client(&net, 2 * pair as u64 + 1).await;
    let mut opener = client(&net, 2 * pair as u64 + 2).await;
    let to = *server.nym_address();
    let mut listener = server.listener().expect("listener");
    // SOAK_TRACE=1: every 20 s simulated, what pair 0's two clients spent (diagnostics).
    if pair == 0 && std::env::var_os("SOAK_TRACE").is_some() {
        let net = net.clone();
        let sa = server.nym_address().as_sim_address().expect("sim");
        let oa = opener.nym_address().as_sim_address().expect("sim");
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                for (name, a) in [("server", sa), ("opener", oa)] {
                    if let Some(s) = net.stats(&a) {
                        eprintln!(
                            "{:>5.0}s {name}: sent {} msgs {} surbs att {} used {} req {} recv {} replies_dropped {} lost {}",
                            sim_start().elapsed().as_secs_f64(),
                            s.packets_sent, s.messages_sent, s.surbs_attached, s.surbs_used,
                            s.surbs_requested, s.surbs_received, s.replies_dropped, s.packets_lost
                        );
                    }
                }
            }
        });
    }
    let n = soak.streams_per_pair;
    let len = soak.bytes_each_way;
    let serve = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let mut s = listener.accept().await.expect("a stream");
            tasks.push(tokio::spawn(async move {
                let mut idx = [0u8; 8];
                s.read_exact(&mut idx).await.expect("index");
                let i = u64::from_be_bytes(idx);
                let mine = payload(len, stream_seed(pair, i, false));
                let theirs = payload(len, stream_seed(pair, i, true));
                exchange(s, mine, theirs, "listener").await
            }));
        }
        let mut t = Totals::default();
        for task in tasks {
            t.add(&task.await.expect("listener side"));
        }
        t
    });
    let mut tasks = Vec::new();
    for i in 0..n as u64 {
        let mut s = opener.open_stream(to, None).await.expect("open");
        tasks.push(tokio::spawn(async move {
            s.write_all(&i.to_be_bytes()).await.expect("index");
            let mine = payload(len, stream_seed(pair, i, true));
            let theirs = payload(len, stream_seed(pair, i, false));
            exchange(s, mine, theirs, "opener").await
        }));
    }
    let mut totals = Totals::default();
    for task in tasks {
        totals.add(&task.await.expect("opener side"));
    }
    let server_side = serve.await.expect("server");
    totals.streams += server_side.streams;
    totals.frames_sent += server_side.frames_sent;
    totals.retransmits += server_side.retransmits;
    totals.duplicates += server_side.duplicates;
    let (mut lost, mut packets, mut resent_packets) = (0, 0, 0);
    for c in [&server, &opener] {
        let s = c.network_stats().expect("simulator stats");
        lost += s.packets_lost;
        packets += s.packets_sent;
        resent_packets += s.packets_retransmitted;
    }
    opener.disconnect().await;
    server.disconnect().await;
    (totals, lost, packets, resent_packets)
}

/// Peak resident set size of this process, from /proc (Linux), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run(soak: Soak) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let wall = std::time::Instant::now();
    rt.block_on(async move {
        let mut sim = SimConfig::hostile().with_seed(soak.seed);
        sim.loss_probability = soak.loss;
        let net = Mixnet::new(sim);
        let started = sim_start();
        let pairs: Vec<_> = (0..soak.pairs)
            .map(|p| tokio::spawn(run_pair(net.clone(), p, soak)))
            .collect();
        let all = async {
            let mut out = Vec::new();
            for p in pairs {
                out.push(p.await.expect("pair"));
            }
            out
        };
        let results = tokio::time::timeout(soak.limit, all)
            .await
            .unwrap_or_else(|_| panic!("stalled: not done after {:?} simulated", soak.limit));
        let simulated = started.elapsed();
        let mut t = Totals::default();
        let (mut lost, mut packets, mut resent_packets) = (0, 0, 0);
        for (pt, l, p, r) in results {
            t.streams += pt.streams;
            t.frames_sent += pt.frames_sent;
            t.retransmits += pt.retransmits;
            t.duplicates += pt.duplicates;
            lost += l;
            packets += p;
            resent_packets += r;
        }
        let bytes = 2 * soak.bytes_each_way as u64 * (soak.pairs * soak.streams_per_pair) as u64;
        assert_eq!(t.streams, 2 * (soak.pairs * soak.streams_per_pair) as u64);
        eprintln!(
            "soak: {} MiB in {} streams on {} pairs at {:.0} % loss (hostile preset, seed {})",
            bytes >> 20,
            soak.pairs * soak.streams_per_pair,
            soak.pairs,
            soak.loss * 100.0,
            soak.seed
        );
        eprintln!(
            "  simulated {:.0} s, wall {:.1} s, peak RSS {} MiB",
            simulated.as_secs_f64(),
            wall.elapsed().as_secs_f64(),
            peak_rss_kib().map_or("?".into(), |k| (k / 1024).to_string())
        );
        eprintln!(
            "  stream frames sent {}, resent {} ({:.1} %), duplicates dropped {}",
            t.frames_sent,
            t.retransmits,
            100.0 * t.retransmits as f64 / t.frames_sent.max(1) as f64,
            t.duplicates
        );
        eprintln!(
            "  network packets sent {packets}, lost {lost} ({:.1} %), resent by the client layer {resent_packets}; \
             stream resends per lost packet {:.2}",
            100.0 * lost as f64 / packets.max(1) as f64,
            t.retransmits as f64 / lost.max(1) as f64
        );
    });
}

#[test]
fn soak_small() {
    run(Soak {
        seed: 7,
        pairs: 3,
        streams_per_pair: 20,
        bytes_each_way: 64 * 1024,
        loss: 0.2,
        limit: Duration::from_secs(4 * 3600),
    });
}

/// `cargo xtask soak`: 1 GiB (512 KiB per stream, 256 KiB each way) across 2,000
/// streams on 20 client pairs at 20 % loss.
#[test]
#[ignore = "long: run with `cargo xtask soak` (release build)"]
fn soak_full() {
    // SOAK_PAIRS / SOAK_STREAMS / SOAK_KIB / SOAK_SEED override the size for experiments.
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    run(Soak {
        seed: env("SOAK_SEED", 2026),
        pairs: env("SOAK_PAIRS", 20) as usize,
        streams_per_pair: env("SOAK_STREAMS", 100) as usize,
        bytes_each_way: env("SOAK_KIB", 256) as usize * 1024,
        loss: 0.2,
        limit: Duration::from_secs(12 * 3600),
    });
}
