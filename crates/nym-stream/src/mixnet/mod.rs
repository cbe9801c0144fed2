//! The nym-sdk-compatible stream API: [`MixnetClient`], [`MixnetStream`],
//! [`MixnetListener`] and friends.
//!
//! A program written against `nym_sdk::mixnet` streams ports by changing its `use` lines
//! to `nym_stream::mixnet`.

mod builder;
mod client;
mod error;
mod network;
#[cfg(feature = "nym")]
mod nym_client;
mod stream;

pub use builder::{
    DisconnectedMixnetClient, MixnetClientBuilder, DEFAULT_PLAIN_MESSAGE_SURBS,
    DEFAULT_STREAM_IDLE_TIMEOUT,
};
pub use client::{MixnetClient, MixnetClientSender, MixnetMessageSender, ReconstructedMessage};
pub use error::{Error, Result};
pub use network::{default_network, Recipient, NETWORK_ENV, SEED_ENV};
pub use stream::{MixnetListener, MixnetStream, OwnedReadHalf, OwnedWriteHalf};

pub use lp_frame::StreamId;
pub use mixnet_sim::{ClientStats, Identity, Mixnet, SimConfig};
pub use mux::{ClientMetrics, MuxConfig, StreamError, StreamMetrics};

/// The tag through which a receiver answers an anonymous sender without learning its
/// address (on the simulator: 16 random bytes, stable per sender/recipient pair).
pub type AnonymousSenderTag = mux::SenderTag;

/// The reset or abort reason code carried by an error a stream returned, if any
/// (codes in [`crate::frame::ext::reset_code`]).
pub fn reset_code_of(err: &std::io::Error) -> Option<u32> {
    mux::reset_code(err)
}
