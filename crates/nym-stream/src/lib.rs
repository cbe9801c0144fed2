//! # nym-stream: reliable byte streams over the Nym mixnet
//!
//! The Nym mixnet carries independent messages: no connections, no ordering. nym-stream
//! gives it **persistent, ordered, reliable, flow-controlled, multiplexed byte streams**:
//! every [`MixnetStream`](mixnet::MixnetStream) is tokio `AsyncRead + AsyncWrite`, so
//! `tokio::io::copy`, codecs and `BufReader` work unchanged. The API mirrors the stream API
//! of `nym_sdk::mixnet`; a program ports by changing its `use` lines to
//! `nym_stream::mixnet`.
//!
//! ## The network: an embedded simulator
//!
//! **[`MixnetClient::connect_new`](mixnet::MixnetClient::connect_new) joins a simulated
//! mixnet that runs inside this process** (crate `mixnet-sim`, *realistic* preset: Sphinx
//! sized packets, 3 mix hops of random delay, ~80 KB/s per client, 1% loss, reply SURBs),
//! in real time, seeded from the OS or from `NYM_STREAM_SIM_SEED`. See
//! [`mixnet::default_network`]. To pick a preset or seed, or to run under tokio's paused
//! clock, build the client with
//! [`MixnetClientBuilder::network`](mixnet::MixnetClientBuilder::network).
//!
//! ## The real Nym network (feature `nym`)
//!
//! With the cargo feature `nym` (off by default: it builds `nym-sdk`), the same API runs
//! on the real mixnet through a `nym_sdk` client in message mode:
//! `MixnetClient::connect_new_nym()`, `MixnetClientBuilder::nym_network()`, or
//! `MixnetClient::from_nym(client)` around a nym-sdk client you connected yourself.
//! `Recipient` then also holds real Nym addresses and converts to and from
//! `nym_sdk::mixnet::Recipient`. The adapter lives in the `nym` module; every `nym-*`
//! crate is pinned to `=1.21.6` (see the README, "Running on the real Nym network").
//!
//! ## Example
//!
//! ```
//! use nym_stream::mixnet::{Mixnet, MixnetClientBuilder, SimConfig};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A seeded network under a paused clock replays exactly and runs in milliseconds.
//! let net = Mixnet::new(SimConfig::realistic().with_seed(42));
//! let connect = || MixnetClientBuilder::new_ephemeral().network(net.clone()).build();
//! let mut server = connect()?.connect_to_mixnet().await?;
//! let mut client = connect()?.connect_to_mixnet().await?;
//!
//! // Server: accept one stream and echo it until EOF.
//! let mut listener = server.listener()?;
//! tokio::spawn(async move {
//!     while let Some(stream) = listener.accept().await {
//!         let (mut rd, mut wr) = tokio::io::split(stream);
//!         tokio::io::copy(&mut rd, &mut wr).await.ok();
//!         wr.shutdown().await.ok();
//!     }
//! });
//!
//! // Client: write, half-close, read the echo to EOF.
//! let mut stream = client.open_stream(*server.nym_address(), None).await?;
//! stream.write_all(b"hello, mixnet").await?;
//! stream.shutdown().await?;
//! let mut echo = Vec::new();
//! stream.read_to_end(&mut echo).await?;
//! assert_eq!(echo, b"hello, mixnet");
//! # Ok(())
//! # }
//! ```
//!
//! The wire codec is re-exported as [`frame`]; the protocol is specified in
//! `docs/PROTOCOL.md`.
#![doc(test(attr(deny(warnings))))]

pub mod mixnet;
#[cfg(feature = "nym")]
pub mod nym;
pub mod pacer;
pub mod sim;

pub use lp_frame as frame;

/// Packet retransmissions the network client may make for one of our anonymous messages.
/// nym-client-core 1.21.6 retries anonymous messages without limit (replies 10 times): to
/// a peer whose gateway vanished, our copies would be retried forever and take send slots
/// from every other stream. Our own end-to-end recovery resends what still matters, so the
/// network's repair is bounded like its replies'. Both adapters set it: the real one on
/// every message, the simulator's on its client.
pub const ANONYMOUS_MAX_RETRANSMISSIONS: u32 = 10;
