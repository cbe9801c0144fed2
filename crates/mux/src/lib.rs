//! # mux: reliable, ordered, flow-controlled streams over a message network
//!
//! A sans-IO protocol core ([`Core`]: stream state machines, acknowledgements,
//! retransmission, credit, close and reset; time passed in, frames out) plus a thin
//! tokio driver ([`Driver`], spawned by [`spawn`]) that moves messages between the core
//! and a [`Transport`], and handles ([`MuxStream`], [`MuxListener`], [`MuxHandle`]) that
//! give the application `AsyncRead + AsyncWrite` streams.
//!
//! The wire format and protocol are specified in `docs/PROTOCOL.md`; the layering in
//! `docs/ARCHITECTURE.md`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> std::io::Result<()> {
//! use mixnet_sim::{Mixnet, SimConfig};
//! use mux::{sim::SimTransport, MuxConfig};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let net = Mixnet::new(SimConfig::realistic().with_seed(7));
//! let alice = mux::spawn(SimTransport::new(net.connect()), MuxConfig::default());
//! let bob = mux::spawn(SimTransport::new(net.connect()), MuxConfig::default());
//! let mut listener = bob.listener().expect("first listener");
//!
//! let mut out = alice.open_stream(bob.local_address(), None).unwrap();
//! out.write_all(b"hello over the mixnet").await?;
//! out.shutdown().await?;
//!
//! let mut inc = listener.accept().await.expect("a stream");
//! let mut got = Vec::new();
//! inc.read_to_end(&mut got).await?;
//! assert_eq!(got, b"hello over the mixnet");
//! # Ok(())
//! # }
//! ```
#![doc(test(attr(deny(warnings))))]

mod config;
mod core;
mod driver;
mod error;
mod handle;
mod id_map;
mod metrics;
mod orphans;
mod peer;
mod rtt;
mod segment;
pub mod sim;
mod stream;
mod transport;

pub use crate::config::MuxConfig;
pub use crate::core::{Core, Event, LocalId, Read, Transmit, Write};
pub use crate::driver::{Driver, PlainMessage};
pub use crate::error::{reset_code, LimitReason, OpenError, StreamError};
pub use crate::handle::{
    new, spawn, Key, MuxHandle, MuxListener, MuxStream, OwnedReadHalf, OwnedWriteHalf,
};
pub use crate::metrics::{ClientMetrics, StreamMetrics};
pub use crate::stream::INITIAL_CREDIT;
pub use crate::transport::{Destination, Inbound, Transport, TransportError};
pub use lp_frame::StreamId;
