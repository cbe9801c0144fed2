//! The library behind the `nym-stream` command: TCP tunnels over nym-stream streams.
//!
//! * [`tunnel::serve`]: a service mapper. Streams come in, each asks for a virtual port
//!   ([`tunnel::proto`]), and is connected to the local target mapped for that port
//!   (only mapped targets are reachable), with limits per peer and in total.
//! * [`tunnel::forward`]: every TCP connection accepted on a local port becomes one
//!   stream to a service's virtual port.
//! * [`socks5::serve`]: a SOCKS5 proxy whose destinations are mixnet services, named by
//!   the DNS-safe hostname form of their address ([`names`]).
//!
//! TCP semantics are carried through ([`tunnel::relay`]): half-close both ways, resets
//! both ways, backpressure end to end. A Rust program can embed a forwarder or a service
//! mapper with these functions instead of running the command:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::collections::HashMap;
//! use std::sync::Arc;
//! use nym_stream::mixnet::MixnetClient;
//! use nym_stream_cli::tunnel::{self, Counters, ServiceConfig};
//!
//! let mut client = MixnetClient::connect_new().await?;
//! println!("serving at {}", client.nym_address());
//! let listener = client.listener()?;
//! let map = HashMap::from([(80, "127.0.0.1:8080".to_string())]);
//! let (_stop, stop_rx) = tokio::sync::watch::channel(false);
//! tunnel::serve(listener, ServiceConfig::new(map), Arc::new(Counters::default()), stop_rx,
//!     std::time::Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```

pub mod names;
pub mod socks5;
pub mod tunnel;

use std::net::SocketAddr;
use std::path::PathBuf;

use nym_stream::mixnet::{MixnetClient, MixnetClientBuilder};

/// Which network a command's client joins (`--network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkChoice {
    /// A simulated-mixnet hub (`nym-stream hub`).
    Hub(SocketAddr),
    /// The real Nym network (feature `nym`).
    Nym,
}

impl std::str::FromStr for NetworkChoice {
    type Err = String;

    /// `hub` (the hub's default loopback address), `hub:HOST:PORT`, or `nym`.
    fn from_str(s: &str) -> Result<Self, String> {
        let default_hub = || SocketAddr::from(([127, 0, 0, 1], mixnet_sim::hub::DEFAULT_HUB_PORT));
        match s {
            "hub" => Ok(NetworkChoice::Hub(default_hub())),
            "nym" => Ok(NetworkChoice::Nym),
            _ => {
                let Some(addr) = s.strip_prefix("hub:") else {
                    return Err(format!(
                        "unknown network {s:?}: use hub, hub:HOST:PORT or nym"
                    ));
                };
                use std::net::ToSocketAddrs;
                addr.to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .map(NetworkChoice::Hub)
                    .ok_or_else(|| format!("{addr:?} is not a HOST:PORT address of a hub"))
            }
        }
    }
}

impl std::fmt::Display for NetworkChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkChoice::Hub(a) => write!(f, "the simulated-mixnet hub at {a}"),
            NetworkChoice::Nym => f.write_str("the real Nym mixnet"),
        }
    }
}

/// Connects a client to the chosen network, with a stable identity if a key file is
/// given.
pub async fn connect(
    network: NetworkChoice,
    identity: Option<PathBuf>,
) -> Result<MixnetClient, nym_stream::mixnet::Error> {
    let mut b = MixnetClientBuilder::new_ephemeral();
    if let Some(path) = identity {
        b = b.identity_file(path);
    }
    b = match network {
        NetworkChoice::Hub(addr) => b.hub(addr),
        #[cfg(feature = "nym")]
        NetworkChoice::Nym => b.nym_network(),
        #[cfg(not(feature = "nym"))]
        NetworkChoice::Nym => {
            return Err(nym_stream::mixnet::Error::InvalidConfig {
                knob: "--network",
                value: "nym".into(),
                expected: "hub or hub:HOST:PORT: this build has no real-network support \
                           (build with --features nym)",
            })
        }
    };
    b.build()?.connect_to_mixnet().await
}
