//! Shared helpers for the nym-stream side-by-side benchmarks (`benches/`) and the
//! callgrind transfer binary. The benchmarks themselves live in `benches/`; see
//! `docs/BENCHMARKS.md` for what each measures and the latest figures.

use std::io;

mod loopback;
pub use loopback::Loopback;

use bytes::Bytes;
use mixnet_sim::{Mixnet, SimConfig};
use mux::MuxConfig;
use nym_stream::sim::SimTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Environment variable that turns every benchmark into a fast smoke run (tiny sizes,
/// few rounds); `cargo xtask test-all` and `cargo xtask bench --smoke` set it.
pub const SMOKE_ENV: &str = "NYM_STREAM_BENCH_SMOKE";

/// Whether this run is a smoke run (see [`SMOKE_ENV`]).
pub fn smoke() -> bool {
    std::env::var_os(SMOKE_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// `full` normally, `small` in a smoke run.
pub fn scaled(full: usize, small: usize) -> usize {
    if smoke() {
        small
    } else {
        full
    }
}

/// A deterministic payload of `len` bytes whose content depends on the position, so a
/// reordering, loss or duplication in transit shows up as a mismatch.
pub fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Writes `total` bytes in `chunk`-byte writes from `pattern`, then shuts down.
pub async fn write_pattern<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    data: &Bytes,
    total: usize,
    chunk: usize,
) -> io::Result<()> {
    let mut sent = 0;
    while sent < total {
        let n = chunk.min(total - sent);
        let at = sent % data.len();
        let n = n.min(data.len() - at);
        w.write_all(&data[at..at + n]).await?;
        sent += n;
    }
    w.shutdown().await
}

/// Reads to EOF with a `chunk`-byte buffer and returns the byte count; when `expect` is
/// given, checks every byte against it (repeating it cyclically).
pub async fn read_all<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    chunk: usize,
    expect: Option<&Bytes>,
) -> io::Result<usize> {
    let mut buf = vec![0u8; chunk];
    let mut got = 0usize;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(got);
        }
        if let Some(e) = expect {
            for (i, b) in buf[..n].iter().enumerate() {
                if *b != e[(got + i) % e.len()] {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "byte {} differs: got {b:#04x}, expected {:#04x}",
                            got + i,
                            e[(got + i) % e.len()]
                        ),
                    ));
                }
            }
        }
        got += n;
    }
}

/// Two multiplexers over one simulated mixnet: the opener (`a`) and the listener (`b`).
pub struct Pair {
    /// The network (for its per-client statistics).
    pub net: Mixnet,
    /// The client that opens streams.
    pub a: mux::MuxHandle<nym_stream::mixnet::Recipient, mux::SenderTag>,
    /// The client that accepts them.
    pub b: mux::MuxHandle<nym_stream::mixnet::Recipient, mux::SenderTag>,
}

impl Pair {
    /// Connects two clients with `cfg` on both ends; must run inside a tokio runtime.
    pub fn new(sim: SimConfig, cfg: MuxConfig) -> Self {
        let net = Mixnet::new(sim);
        let a = mux::spawn(SimTransport::new(net.connect()), cfg.clone());
        let b = mux::spawn(SimTransport::new(net.connect()), cfg);
        Pair { net, a, b }
    }
}

/// Moves `total_per_stream` bytes over each of `streams` concurrent mux streams on
/// `SimConfig::instant()` (openers write in `chunk`-byte writes, the listener's streams
/// read with a `chunk`-byte buffer). Returns the bytes read in total.
pub async fn mux_transfer(streams: usize, total_per_stream: usize, chunk: usize) -> usize {
    mux_transfer_with(MuxConfig::default(), streams, total_per_stream, chunk).await
}

/// The default configuration with the limits raised for `streams` concurrent streams to
/// one peer. The defaults cap peer-opened streams at 4096 (1024 per peer) and promise
/// every stream 64 KiB of credit within a 64 MiB budget (16 MiB per peer); credit is a
/// promise, not an allocation, so a many-streams benchmark raises those limits.
pub fn many_streams_config(streams: usize) -> MuxConfig {
    let promised = (streams as u64 + 16) * mux::INITIAL_CREDIT;
    MuxConfig::default()
        .with_max_inbound_streams(streams + 16)
        .with_max_streams_per_peer(streams + 16)
        .with_max_backlog_per_peer(streams + 16)
        .with_accept_backlog(streams + 16)
        .with_peer_receive_window(promised * 2)
        .with_inbound_budget(promised as usize * 4)
        .with_id_seed(Some(1))
}

/// [`mux_transfer`] with a given configuration on both ends.
pub async fn mux_transfer_with(
    cfg: MuxConfig,
    streams: usize,
    total_per_stream: usize,
    chunk: usize,
) -> usize {
    let pair = Pair::new(SimConfig::instant(), cfg);
    transfer_between(&pair.a, &pair.b, streams, total_per_stream, chunk).await
}

/// [`mux_transfer`] over a [`Loopback`] link instead of the simulator: the stream layer's
/// own cost.
pub async fn mux_loopback_transfer(streams: usize, total_per_stream: usize, chunk: usize) -> usize {
    let (ea, eb) = Loopback::pair();
    let a = mux::spawn(ea, MuxConfig::default());
    let b = mux::spawn(eb, MuxConfig::default());
    transfer_between(&a, &b, streams, total_per_stream, chunk).await
}

/// `streams` concurrent streams from `a` to `b`, `total_per_stream` bytes each.
async fn transfer_between<A: mux::Key, T: mux::Key>(
    a: &mux::MuxHandle<A, T>,
    b: &mux::MuxHandle<A, T>,
    streams: usize,
    total_per_stream: usize,
    chunk: usize,
) -> usize {
    let data = pattern(chunk.max(1));
    let mut listener = b.listener().expect("first listener");
    let reader = tokio::spawn(async move {
        let mut tasks = Vec::with_capacity(streams);
        for _ in 0..streams {
            let mut s = listener.accept().await.expect("an incoming stream");
            tasks.push(tokio::spawn(async move {
                read_all(&mut s, chunk, None).await.expect("read")
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("reader task");
        }
        total
    });
    let mut writers = Vec::with_capacity(streams);
    for _ in 0..streams {
        let mut s = a
            .open(b.local_address(), None)
            .await
            .expect("open a stream");
        let data = data.clone();
        writers.push(tokio::spawn(async move {
            write_pattern(&mut s, &data, total_per_stream, chunk)
                .await
                .expect("write");
        }));
    }
    for w in writers {
        w.await.expect("writer task");
    }
    reader.await.expect("reader")
}

/// Resident memory of this process from `/proc/self/status`: (current, peak) in bytes.
/// `None` where that file does not exist (not Linux).
pub fn rss() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
