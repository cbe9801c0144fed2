//! A simulated mixnet that separate processes share: the **hub**.
//!
//! The in-process [`Mixnet`](crate::Mixnet) serves tests and demos inside one program.
//! A developer with a client program and a server program wants them to meet on a local
//! mixnet before touching the real network: start a hub ([`Hub::start`], or the
//! `nym-stream hub` command), and join it from each process with
//! [`SimClient::connect_hub`](crate::SimClient::connect_hub). A hub client offers the
//! same operations as an in-process one (anonymous messages with SURBs, replies by
//! sender tag, received messages with their tags, backpressure, SURB stock, statistics),
//! so code written against [`SimClient`](crate::SimClient) does not know which it has.
//!
//! The engine's semantics are the same as in process: packet sizes, the per-client rate,
//! mix delays, loss, single-use SURBs per sender tag, all-or-nothing delivery. A hub runs
//! in **real time**, so runs across processes are not deterministic; keep the in-process
//! network (with tokio's paused clock) for deterministic tests.
//!
//! # Protocol
//!
//! Length-delimited frames (4-byte big-endian length, at most 4 MiB), each a one-byte
//! type and its fields, integers big-endian. The client opens with a hello (`NSHB`,
//! protocol version, its address, derived from its [`Identity`](crate::Identity)); the hub
//! answers with a welcome or a refusal that says why (unsupported version, the address is
//! already connected, the hub is full). Then the client sends `SendRegular`,
//! `SendAnonymous` (with a SURB count) and `SendReply` frames; the hub sends `Received`
//! (with the sender tag and the SURB stock for it), `Stock` and `Stats` updates (every
//! 100 ms when they changed) and `SendFailed`. The hub reads a client's next send only
//! when the network has room for it, so the socket carries the backpressure. It carries
//! simulator traffic on one machine only: it is **not a network protocol for real use**
//! (no encryption, no authentication; the hub listens on loopback unless told otherwise).
//!
//! # Faults
//!
//! A connection that sends garbage, an unknown frame, a frame over the size limit, or no
//! hello within 5 s is dropped and counted ([`HubStats::malformed`]); every other client
//! keeps working. A client that does not read holds back only its own connection; the
//! network drops (and counts) what its inbox cannot take. When a client's process dies,
//! its connection closes and it leaves the network, like a client that went offline.
//! When the hub goes away, every operation of its clients fails with
//! [`SimError::HubGone`](crate::SimError::HubGone) and receiving ends.

mod client;
mod proto;
mod server;

pub(crate) use client::RemoteClient;
pub use proto::{MAX_FRAME, VERSION};
pub use server::{Hub, HubConfig, HubStats, DEFAULT_HUB_PORT};
