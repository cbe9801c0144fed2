//! Bulk transfer: 1 MiB of random bytes over one stream, checked byte for byte, with
//! goodput and the packets the transfer cost.
//!
//! Runs on a **seeded realistic simulated mixnet under tokio's paused clock**: the
//! network's delays, pacing and loss are those of the realistic preset, but simulated
//! time advances as fast as the machine can compute, so the figures are in simulated
//! seconds and the run is repeatable. The receiver does not know the size: it reads
//! until EOF.
//!
//! ```sh
//! cargo run --example throughput
//! ```
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Duration;

use nym_stream::mixnet::{Mixnet, MixnetClientBuilder, SimConfig};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const SIZE: usize = 1 << 20;
const SEED: u64 = 2024;

async fn run() -> Result<(), Box<dyn Error>> {
    let config = SimConfig::realistic().with_seed(SEED);
    let pacing = config.send_interval_mean;
    let net = Mixnet::new(config);
    let join = || {
        MixnetClientBuilder::new_ephemeral()
            .network(net.clone())
            .with_stream_id_seed(SEED)
            .build()
    };
    let mut sender = join()?.connect_to_mixnet().await?;
    let mut receiver = join()?.connect_to_mixnet().await?;
    let mut listener = receiver.listener()?;
    println!("network: realistic preset, seed {SEED}, paused tokio clock (simulated time)");
    println!("sender   {}", sender.nym_address());
    println!("receiver {}", receiver.nym_address());

    let mut data = vec![0u8; SIZE];
    ChaCha8Rng::seed_from_u64(SEED).fill_bytes(&mut data);

    let started = Instant::now();
    let wall = std::time::Instant::now();
    let mut stream = sender.open_stream(*receiver.nym_address(), None).await?;
    let id = stream.id();
    let to_send = data.clone();
    let writer = tokio::spawn(async move {
        stream.write_all(&to_send).await?;
        stream.shutdown().await?;
        Ok::<_, std::io::Error>(stream)
    });

    let mut incoming = listener.accept().await.ok_or("the receiver stopped")?;
    let mut got = Vec::new();
    incoming.read_to_end(&mut got).await?;
    let elapsed = started.elapsed();
    let stream = writer.await??;

    if got != data {
        let first_diff = got.iter().zip(&data).position(|(a, b)| a != b);
        return Err(format!(
            "integrity check failed: sent {} bytes, received {} (first difference at {:?})",
            data.len(),
            got.len(),
            first_diff
        )
        .into());
    }
    let secs = elapsed.as_secs_f64();
    println!(
        "{id}: {} bytes received to EOF, identical to the {} sent",
        got.len(),
        data.len()
    );
    println!(
        "simulated time {secs:.1} s -> goodput {:.1} KB/s ({:.2} s wall clock)",
        got.len() as f64 / secs / 1000.0,
        wall.elapsed().as_secs_f64()
    );
    let (s, r) = (
        sender.network_stats().ok_or("no sender statistics")?,
        receiver.network_stats().ok_or("no receiver statistics")?,
    );
    let payload_per_packet = nym_stream::mixnet::SimConfig::realistic().payload_per_packet;
    println!(
        "packets: sender {} ({} retransmitted), receiver {} ({} retransmitted); \
         {:.2} packets per {payload_per_packet} bytes of payload (1.00 would be no overhead)",
        s.packets_sent,
        s.packets_retransmitted,
        r.packets_sent,
        r.packets_retransmitted,
        (s.packets_sent + r.packets_sent) as f64 / (SIZE as f64 / payload_per_packet as f64)
    );
    if let Some(gap) = pacing {
        let capacity = payload_per_packet as f64 / gap.as_secs_f64() / 1000.0;
        println!(
            "link capacity {capacity:.1} KB/s of message bytes -> {:.0}% used for goodput",
            100.0 * got.len() as f64 / secs / 1000.0 / capacity
        );
    }
    let m = stream.metrics();
    println!(
        "stream: {} frames sent, {} retransmits, {} SURBs attached, {} credit stalls, srtt {:?}",
        m.frames_sent, m.retransmits, m.surbs_attached, m.credit_stalls, m.srtt
    );
    sender.disconnect().await;
    receiver.disconnect().await;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    rt.block_on(async {
        match tokio::time::timeout(Duration::from_secs(3600), run()).await {
            Ok(result) => result,
            Err(_) => Err("the transfer did not finish within an hour of simulated time".into()),
        }
    })
}
