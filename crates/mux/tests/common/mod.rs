//! Shared helpers for the mux integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod wire;

use mixnet_sim::{Address, Mixnet, SenderTag, SimConfig};
use mux::{sim::SimTransport, MuxConfig, MuxHandle};

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
