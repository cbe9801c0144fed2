//! What a tunnel costs over the library's own streams, side by side on one hub
//! (realistic preset, real time): bulk goodput and packets per byte through `forward` →
//! `serve` → a TCP target, against the same bytes on a direct stream; and the time to
//! the first response byte of a small request, through the tunnel against a direct
//! stream (the tunnel request must add no round trip).
//!
//! ```sh
//! cargo bench -p nym-stream-cli --bench tunnel          # 2 MiB bulk, 10 small rounds: ~2 minutes
//! TUNNEL_BULK_KIB=8192 cargo bench -p nym-stream-cli --bench tunnel
//! ```
//!
//! The forwarder and the service run in this process through the library functions the
//! command uses (`nym_stream_cli::tunnel`), each on its own hub client.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mixnet_sim::hub::{Hub, HubConfig};
use nym_stream::mixnet::{MixnetClient, MixnetClientBuilder, SimConfig};
use nym_stream_cli::tunnel::{self, Counters, ServiceConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn join(hub: SocketAddr) -> MixnetClient {
    MixnetClientBuilder::new_ephemeral()
        .hub(hub)
        .build()
        .unwrap()
        .connect_to_mixnet()
        .await
        .unwrap()
}

/// The target: small requests are answered with 100 bytes at once; bulk is read to EOF
/// and answered with its length.
async fn target() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_target(s));
        }
    });
    addr
}

async fn serve_target<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    let mut first = [0u8; 1];
    if s.read_exact(&mut first).await.is_err() {
        return;
    }
    if first[0] == b'?' {
        let mut rest = [0u8; 99];
        let _ = s.read_exact(&mut rest).await;
        let _ = s.write_all(&[b'!'; 100]).await;
        let _ = s.shutdown().await;
        return;
    }
    let mut n = 1u64;
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(k) = s.read(&mut buf).await {
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    let _ = s.write_all(&n.to_be_bytes()).await;
    let _ = s.shutdown().await;
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let smoke = std::env::var_os("NYM_STREAM_BENCH_SMOKE").is_some();
    let bulk = std::env::var("TUNNEL_BULK_KIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(if smoke { 64 } else { 2048 })
        * 1024;
    let rounds = if smoke { 2 } else { 10 };
    let sim = if smoke {
        SimConfig::instant()
    } else {
        SimConfig::realistic().with_seed(11)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let hub = Hub::start(
            HubConfig::new()
                .with_listen("127.0.0.1:0".parse().unwrap())
                .with_sim(sim),
        )
        .await
        .unwrap();
        let target = target().await;
        // The service: a client serving the target on virtual port 80.
        let mut service = join(hub.local_addr()).await;
        let service_addr = *service.nym_address();
        let listener = service.listener().unwrap();
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(tunnel::serve(
            listener,
            ServiceConfig::new(HashMap::from([(80, target.to_string())])),
            Arc::new(Counters::default()),
            stop.clone(),
            Duration::from_secs(1),
        ));
        // The forwarder.
        let fwd = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fwd_addr = fwd.local_addr().unwrap();
        let fwd_client = Arc::new(tokio::sync::Mutex::new(join(hub.local_addr()).await));
        tokio::spawn(tunnel::forward(
            fwd,
            fwd_client,
            service_addr,
            80,
            Arc::new(Counters::default()),
            stop.clone(),
            Duration::from_secs(1),
        ));
        // The direct baseline: a plain stream server on its own client.
        let mut direct = join(hub.local_addr()).await;
        let direct_addr = *direct.nym_address();
        let mut dl = direct.listener().unwrap();
        tokio::spawn(async move {
            while let Some(s) = dl.accept().await {
                tokio::spawn(serve_target(s));
            }
        });
        let mut opener = join(hub.local_addr()).await;

        let packets = || hub.network().total_stats().packets_sent;
        let data = vec![0x42u8; bulk];

        // Bulk through the tunnel.
        let p0 = packets();
        let t = Instant::now();
        let mut s = TcpStream::connect(fwd_addr).await.unwrap();
        s.write_all(&data).await.unwrap();
        s.shutdown().await.unwrap();
        let mut n = [0u8; 8];
        s.read_exact(&mut n).await.unwrap();
        let tunnel_time = t.elapsed();
        assert_eq!(u64::from_be_bytes(n), bulk as u64);
        let tunnel_packets = packets() - p0;

        // The same bytes on a direct stream.
        let p0 = packets();
        let t = Instant::now();
        let mut s = opener.open_stream(direct_addr, None).await.unwrap();
        s.write_all(&data).await.unwrap();
        s.shutdown().await.unwrap();
        s.read_exact(&mut n).await.unwrap();
        let direct_time = t.elapsed();
        assert_eq!(u64::from_be_bytes(n), bulk as u64);
        let direct_packets = packets() - p0;

        // Time to the first response byte of a 100-byte request.
        let mut via_tunnel = Vec::new();
        let mut via_stream = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            let mut s = TcpStream::connect(fwd_addr).await.unwrap();
            s.write_all(&[b'?'; 100]).await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            via_tunnel.push(t.elapsed());
            let t = Instant::now();
            let mut s = opener.open_stream(direct_addr, None).await.unwrap();
            s.write_all(&[b'?'; 100]).await.unwrap();
            s.flush().await.unwrap();
            s.read_exact(&mut b).await.unwrap();
            via_stream.push(t.elapsed());
        }
        let kib = bulk as f64 / 1024.0;
        println!("tunnel bench ({} preset): bulk {kib:.0} KiB one way, then {rounds} small request/response rounds",
            if smoke { "instant" } else { "realistic" });
        println!("| path | bulk time | goodput | packets (both ways) | packets per KiB | TTFB median |");
        println!("|---|---|---|---|---|---|");
        for (name, time, pkts, ttfb) in [
            ("direct stream (library)", direct_time, direct_packets, median(via_stream)),
            ("forward → serve → TCP target", tunnel_time, tunnel_packets, median(via_tunnel)),
        ] {
            println!(
                "| {name} | {:.1} s | {:.1} KB/s | {pkts} | {:.3} | {:.0} ms |",
                time.as_secs_f64(),
                bulk as f64 / time.as_secs_f64() / 1000.0,
                pkts as f64 / kib,
                ttfb.as_secs_f64() * 1000.0
            );
        }
        hub.shutdown().await;
    });
}
