//! Shared helpers for the mux integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod sim;
pub mod wire;

use mixnet_sim::{Address, Mixnet, SenderTag, SimConfig};
use mux::{MuxConfig, MuxHandle};
use sim::SimTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client handle on the simulated mixnet.
pub type Handle = MuxHandle<Address, SenderTag>;

/// Two clients on one simulated network.
pub fn pair(sim: SimConfig, cfg: MuxConfig) -> (Mixnet, Handle, Handle) {
    let net = Mixnet::new(sim);
    let a = mux::spawn(
        SimTransport::new(net.connect()),
        cfg.clone().with_id_seed(Some(1)),
    );
    let b = mux::spawn(SimTransport::new(net.connect()), cfg.with_id_seed(Some(2)));
    (net, a, b)
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Sends `len` bytes from a to b on one stream and checks they arrive exactly,
/// followed by EOF.
pub async fn one_way(sim: SimConfig, cfg: MuxConfig, len: usize, seed: u64) {
    let (_net, a, b) = pair(sim, cfg);
    let mut listener = b.listener().unwrap();
    let data = pattern(len, seed);
    let sent = data.clone();
    let to = b.local_address();
    let writer = tokio::spawn(async move {
        let mut s = a.open_stream(to, None).unwrap();
        s.write_all(&sent).await.unwrap();
        s.shutdown().await.unwrap();
        // Stay alive (and keep the client alive) until the peer closes its side.
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        a
    });
    let mut s = listener.accept().await.unwrap();
    let mut got = Vec::with_capacity(len);
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes differ");
    // EOF is sticky and nothing follows it.
    assert_eq!(s.read(&mut [0u8; 64]).await.unwrap(), 0);
    s.shutdown().await.unwrap();
    writer.await.unwrap();
}
