//! The client builder: every knob of the multiplexer, the idle timeout and the network.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mixnet_sim::{Identity, Mixnet, SimClient};
use mux::MuxConfig;

use super::network::{default_network, network_from_env, Network};
use super::{Error, MixnetClient, Result};

/// Default [`MixnetClientBuilder::with_stream_idle_timeout`]: 30 minutes.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What "no idle timeout" means to the multiplexer: a century.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Default [`MixnetClientBuilder::with_plain_message_surbs`]: 10, like the reference.
pub const DEFAULT_PLAIN_MESSAGE_SURBS: u32 = 10;

/// Configures a client before it connects, as nym-sdk's builder does:
/// `MixnetClientBuilder::new_ephemeral() … .build()?.connect_to_mixnet().await?`.
///
/// ```
/// use std::time::Duration;
/// use nym_stream::mixnet::{Mixnet, MixnetClientBuilder, SimConfig};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> nym_stream::mixnet::Result<()> {
/// let client = MixnetClientBuilder::new_ephemeral()
///     .network(Mixnet::new(SimConfig::instant().with_seed(3)))
///     .with_stream_idle_timeout(Duration::from_secs(60))
///     .with_receive_window(64 * 1024)
///     .with_nodelay(true)
///     .build()?
///     .connect_to_mixnet()
///     .await?;
/// assert_eq!(client.stream_idle_timeout(), Some(Duration::from_secs(60)));
/// client.disconnect().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until build() and connect_to_mixnet()"]
pub struct MixnetClientBuilder {
    network: Option<Network>,
    identity: Option<PathBuf>,
    mux: MuxConfig,
    idle_timeout: Option<Duration>,
    plain_surbs: u32,
    #[cfg(feature = "nym")]
    nym: super::nym_client::NymSettings,
}

impl MixnetClientBuilder {
    /// A builder for a client with fresh in-memory keys (on the simulator: a fresh random
    /// address), joining the process-wide simulated mixnet unless
    /// [`network`](Self::network) says otherwise.
    pub fn new_ephemeral() -> Self {
        Self {
            network: None,
            identity: None,
            mux: MuxConfig::default(),
            idle_timeout: Some(DEFAULT_STREAM_IDLE_TIMEOUT),
            plain_surbs: DEFAULT_PLAIN_MESSAGE_SURBS,
            #[cfg(feature = "nym")]
            nym: Default::default(),
        }
    }

    /// Joins this simulated mixnet (any preset, any seed) instead of the process-wide one.
    /// Use it under a paused tokio clock, and to make runs repeatable.
    pub fn network(mut self, mixnet: Mixnet) -> Self {
        self.network = Some(Network::Sim(mixnet));
        self
    }

    /// Joins the **real Nym mixnet** instead of a simulated one (feature `nym`):
    /// [`connect_to_mixnet`](DisconnectedMixnetClient::connect_to_mixnet) then connects a
    /// fresh ephemeral `nym_sdk` client (`nym_sdk::mixnet::MixnetClient::connect_new`),
    /// which needs internet access. To configure the nym-sdk client yourself, connect it
    /// and pass it to [`DisconnectedMixnetClient::wrap_nym`].
    #[cfg(feature = "nym")]
    pub fn nym_network(mut self) -> Self {
        self.network = Some(Network::Nym);
        self
    }

    /// nym-sdk's own settings (`nym_sdk::DebugConfig`: sending rates, acknowledgements,
    /// reply-SURB storage and requests) for the client that
    /// [`nym_network`](Self::nym_network) connects. Default: nym's defaults. Whatever is
    /// given, a client with on-disk keys (an [`identity_file`](Self::identity_file)) keeps
    /// its reply-SURB reserve (`minimum_reply_surb_storage_threshold`) at least at the
    /// multiplexer's `surb_reserve`, so the SURBs our peers send for that reserve are the
    /// ones nym holds back; an ephemeral client's storage always keeps 20. Feature `nym`.
    #[cfg(feature = "nym")]
    pub fn nym_debug_config(mut self, config: nym_sdk::DebugConfig) -> Self {
        self.nym.debug = Some(config);
        self
    }

    /// The gateway (its identity key, base58) the client that
    /// [`nym_network`](Self::nym_network) connects should register with, instead of
    /// one nym-sdk picks. Feature `nym`.
    #[cfg(feature = "nym")]
    pub fn nym_gateway(mut self, gateway_identity: impl Into<String>) -> Self {
        self.nym.gateway = Some(gateway_identity.into());
        self
    }

    /// Streams with no application bytes read or written for this long are reaped
    /// (default 30 minutes; see [`MixnetStream`](super::MixnetStream)). Must be non-zero.
    pub fn with_stream_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Joins the simulated-mixnet hub at `hub` (started with `nym-stream hub` or
    /// [`mixnet_sim::hub::Hub::start`], possibly in another process) instead of the
    /// embedded network. Without a network named here, the `NYM_STREAM_NETWORK`
    /// environment variable decides ([`NETWORK_ENV`](super::NETWORK_ENV)).
    pub fn hub(mut self, hub: SocketAddr) -> Self {
        self.network = Some(Network::Hub(hub));
        self
    }

    /// Keeps the client's identity in `path`, so its address survives restarts: the file
    /// is read if it exists and created otherwise (a fresh secret, readable by its owner
    /// only). Two clients with the same identity cannot be connected to one network at
    /// once. On the embedded network and on a hub; with feature `nym` on the real network,
    /// nym-sdk keeps the client's keys in the directory `<path>.nym` beside it, so the Nym
    /// address is stable too. (Without it, every client gets a fresh address, as with
    /// nym-sdk's `new_ephemeral`.)
    pub fn identity_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.identity = Some(path.into());
        self
    }

    /// Never reap idle streams.
    pub fn without_stream_idle_timeout(mut self) -> Self {
        self.idle_timeout = None;
        self
    }

    /// Reply SURBs attached to each plain message (default 10). Each SURB costs about
    /// 1.2 KB of the message, so 10 add roughly 7 packets; 0 means the receiver cannot
    /// answer with `send_reply`.
    pub fn with_plain_message_surbs(mut self, surbs: u32) -> Self {
        self.plain_surbs = surbs;
        self
    }

    /// Per-stream receive window in bytes (default 256 KiB): how far the peer may send
    /// ahead of what we read. Must be non-zero.
    pub fn with_receive_window(mut self, bytes: u32) -> Self {
        self.mux = self.mux.with_receive_window(bytes);
        self
    }

    /// Per-stream bound on written bytes not yet acknowledged (default 256 KiB); writers
    /// wait beyond it. Must be non-zero.
    pub fn with_send_buffer(mut self, bytes: usize) -> Self {
        self.mux = self.mux.with_send_buffer(bytes);
        self
    }

    /// Largest payload of one stream frame (default 1585 bytes: one Sphinx packet). At
    /// least 64.
    pub fn with_max_frame_payload(mut self, bytes: usize) -> Self {
        self.mux = self.mux.with_max_frame_payload(bytes);
        self
    }

    /// Default of [`MixnetStream::set_nodelay`](super::MixnetStream::set_nodelay) for new
    /// streams (default `false`: small writes are coalesced).
    pub fn with_nodelay(mut self, nodelay: bool) -> Self {
        self.mux = self.mux.with_nodelay(nodelay);
        self
    }

    /// How long a partial frame waits for more bytes when nodelay is off (default 5 ms).
    pub fn with_coalesce_delay(mut self, delay: Duration) -> Self {
        self.mux = self.mux.with_coalesce_delay(delay);
        self
    }

    /// Client-wide bound on buffered inbound bytes across all streams (default 64 MiB).
    /// Must be non-zero.
    pub fn with_inbound_budget(mut self, bytes: usize) -> Self {
        self.mux = self.mux.with_inbound_budget(bytes);
        self
    }

    /// Speak only the reference Nym stream format (no close, reset, acks or credit).
    /// Default `false`.
    pub fn with_legacy_mode(mut self, legacy: bool) -> Self {
        self.mux = self.mux.with_legacy_mode(legacy);
        self
    }

    /// Incoming streams waiting to be accepted before further opens are refused
    /// (default 128). Must be non-zero.
    pub fn with_accept_backlog(mut self, streams: usize) -> Self {
        self.mux = self.mux.with_accept_backlog(streams);
        self
    }

    /// Peer-opened streams alive at once before further opens are refused (default 4096).
    pub fn with_max_inbound_streams(mut self, streams: usize) -> Self {
        self.mux = self.mux.with_max_inbound_streams(streams);
        self
    }

    /// Reply SURBs attached to the `Open` of a stream we open (default 10).
    pub fn with_initial_reply_surbs(mut self, surbs: u32) -> Self {
        self.mux = self.mux.with_initial_surbs(surbs);
        self
    }

    /// Transmissions of one frame before the stream fails with `TimedOut` (default 10).
    /// Must be non-zero.
    pub fn with_max_retransmits(mut self, times: u32) -> Self {
        self.mux = self.mux.with_max_retransmits(times);
        self
    }

    /// Send a keepalive ping on an established stream when nothing arrived for this long
    /// (default 60 s). Must be non-zero.
    pub fn with_keepalive_interval(mut self, interval: Duration) -> Self {
        self.mux = self.mux.with_keepalive_interval(interval);
        self
    }

    /// Unanswered keepalive pings after which a stream fails with `TimedOut` (default 3).
    pub fn with_keepalive_max_missed(mut self, pings: u32) -> Self {
        self.mux = self.mux.with_keepalive_max_missed(pings);
        self
    }

    /// Seeds the stream-id generator (default: from the operating system), for
    /// repeatable tests.
    pub fn with_stream_id_seed(mut self, seed: u64) -> Self {
        self.mux = self.mux.with_id_seed(Some(seed));
        self
    }

    /// Replaces the whole multiplexer configuration (every knob the multiplexer has,
    /// including ones without a builder method here).
    pub fn with_mux_config(mut self, config: MuxConfig) -> Self {
        self.mux = config;
        self
    }

    /// The multiplexer configuration as it stands.
    pub fn mux_config(&self) -> &MuxConfig {
        &self.mux
    }

    /// Checks the settings and produces a client ready to connect.
    pub fn build(self) -> Result<DisconnectedMixnetClient> {
        fn invalid(knob: &'static str, value: impl ToString, expected: &'static str) -> Error {
            Error::InvalidConfig {
                knob,
                value: value.to_string(),
                expected,
            }
        }
        if self.idle_timeout == Some(Duration::ZERO) {
            return Err(invalid(
                "stream_idle_timeout",
                "0s",
                "a non-zero duration (or without_stream_idle_timeout())",
            ));
        }
        let m = &self.mux;
        if m.receive_window == 0 {
            return Err(invalid("receive_window", 0, "at least 1 byte"));
        }
        if m.send_buffer == 0 {
            return Err(invalid("send_buffer", 0, "at least 1 byte"));
        }
        if m.max_frame_payload < 64 {
            return Err(invalid(
                "max_frame_payload",
                m.max_frame_payload,
                "at least 64 bytes",
            ));
        }
        if m.inbound_budget == 0 {
            return Err(invalid("inbound_budget", 0, "at least 1 byte"));
        }
        if m.accept_backlog == 0 {
            return Err(invalid("accept_backlog", 0, "at least 1 stream"));
        }
        if m.keepalive_interval.is_zero() {
            return Err(invalid("keepalive_interval", "0s", "a non-zero duration"));
        }
        if m.max_retransmits == 0 {
            return Err(invalid("max_retransmits", 0, "at least 1 transmission"));
        }
        Ok(DisconnectedMixnetClient { builder: self })
    }
}

impl Default for MixnetClientBuilder {
    fn default() -> Self {
        Self::new_ephemeral()
    }
}

/// A configured client, not yet connected; from [`MixnetClientBuilder::build`].
#[derive(Clone, Debug)]
#[must_use = "call connect_to_mixnet() to get a client"]
pub struct DisconnectedMixnetClient {
    builder: MixnetClientBuilder,
}

impl DisconnectedMixnetClient {
    /// Joins the network: draws an address and starts the client's router task on the
    /// current tokio runtime (fails with [`Error::NoRuntime`] outside one).
    ///
    /// With [`MixnetClientBuilder::nym_network`] (feature `nym`) it connects to the real
    /// Nym mixnet instead, which takes a while and needs internet access.
    pub async fn connect_to_mixnet(self) -> Result<MixnetClient> {
        #[cfg(feature = "nym")]
        if matches!(self.builder.network, Some(Network::Nym)) {
            let settings = &self.builder.nym;
            let reserve = self.builder.mux.surb_reserve;
            let nym = match &self.builder.identity {
                // nym-sdk's on-disk storage beside the identity file: a stable address.
                Some(path) => {
                    super::nym_client::connect_nym_persistent(path, settings, reserve).await?
                }
                None => super::nym_client::connect_nym_ephemeral(settings, reserve).await?,
            };
            return self.wrap_nym(nym);
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        let identity = match &self.builder.identity {
            Some(path) => Some(
                Identity::load_or_create(path)
                    .map_err(|source| Error::Identity {
                        path: path.clone(),
                        source,
                    })?
                    .0,
            ),
            None => None,
        };
        let (network, mux, idle_timeout, plain_surbs) = self.into_parts();
        let network = match network {
            Some(n) => n,
            None => match network_from_env()? {
                Some(n) => n,
                None => Network::Sim(default_network()?.clone()),
            },
        };
        let client = match &network {
            Network::Sim(net) => match &identity {
                Some(id) => net.connect_with_identity(id)?,
                None => net.connect(),
            },
            Network::Hub(hub) => {
                let id = identity.unwrap_or_else(Identity::generate);
                SimClient::connect_hub(*hub, &id).await?
            }
            #[cfg(feature = "nym")]
            Network::Nym => unreachable!("handled above"),
        };
        Ok(MixnetClient::connect_sim(
            client,
            network,
            mux,
            idle_timeout,
            plain_surbs,
        ))
    }

    /// The settings: network, multiplexer configuration (with the idle timeout applied),
    /// idle timeout, plain-message SURBs.
    pub(crate) fn into_parts(self) -> (Option<Network>, MuxConfig, Option<Duration>, u32) {
        let b = self.builder;
        // The multiplexer reaps idle streams in the background too (also streams no
        // task touches); "never" becomes a century, which its clock arithmetic can hold.
        let mux_idle = b.idle_timeout.unwrap_or(NEVER);
        let mux = b.mux.with_idle_timeout(mux_idle);
        (b.network, mux, b.idle_timeout, b.plain_surbs)
    }
}
