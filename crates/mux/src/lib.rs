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
//! The crate knows no network: a transport adapter (the simulator's and the real Nym
//! network's live in the `nym-stream` crate) implements [`Transport`]. The core can also be
//! driven by hand, which is how it is tested: here two cores exchange one stream.
//!
//! ```
//! use std::time::Instant;
//! use mux::{Core, Inbound, MuxConfig, Read};
//!
//! let now = Instant::now();
//! // Addresses and sender tags are whatever the network uses; here, bytes.
//! let mut alice = Core::<u8, u8>::new(MuxConfig::default());
//! let mut bob = Core::<u8, u8>::new(MuxConfig::default());
//! bob.set_listening(now, true);
//!
//! let (stream, _id) = alice.open(now, 2, None).expect("room for a stream");
//! alice.write(now, stream, b"hello over any message network");
//! alice.shutdown(now, stream);
//! // Carry alice's messages to bob: she writes anonymously, so bob sees a sender tag.
//! let to_bob = |alice: &mut Core<u8, u8>, bob: &mut Core<u8, u8>| {
//!     while let Some(t) = alice.poll_transmit(now, &|_| None) {
//!         bob.handle_inbound(now, Inbound { payload: t.payload, sender_tag: Some(1) });
//!     }
//! };
//! to_bob(&mut alice, &mut bob);
//! let (incoming, _id) = bob.accept().expect("alice's stream");
//! // Bob's answer (replies through the tag) tells alice he speaks the protocol's
//! // extensions; her FIN waits for that, then follows.
//! while let Some(t) = bob.poll_transmit(now, &|_| None) {
//!     alice.handle_inbound(now, Inbound { payload: t.payload, sender_tag: None });
//! }
//! to_bob(&mut alice, &mut bob);
//! let mut buf = [0u8; 64];
//! let Read::Data(n) = bob.read(now, incoming, &mut buf) else { panic!("data first") };
//! assert_eq!(&buf[..n], b"hello over any message network");
//! assert!(matches!(bob.read(now, incoming, &mut buf), Read::Eof));
//! ```
#![doc(test(attr(deny(warnings))))]

mod config;
mod core;
mod delay;
mod driver;
mod error;
mod fault;
mod handle;
mod id_map;
mod metrics;
mod orphans;
mod peer;
mod rtt;
mod segment;
mod stream;
mod transport;

pub use crate::config::{MuxConfig, DEFAULT_SEND_QUEUE_TARGET};
pub use crate::core::{Core, Event, LocalId, Read, Transmit, Write};
pub use crate::delay::{DelaySignal, PathDelay};
pub use crate::driver::{Driver, PlainMessage};
pub use crate::error::{
    reset_code, Failure, LimitReason, OpenError, Operation, Overrun, Reap, StreamError, Timeout,
};
pub use crate::fault::{FaultInjector, FaultStats, Faults};
pub use crate::handle::{
    new, spawn, Key, MuxHandle, MuxListener, MuxStream, OwnedReadHalf, OwnedWriteHalf,
};
pub use crate::metrics::{ClientMetrics, StreamMetrics};
pub use crate::stream::INITIAL_CREDIT;
pub use crate::transport::{Destination, Inbound, SenderTag, Transport, TransportError};
pub use lp_frame::StreamId;
