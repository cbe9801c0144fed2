//! Addresses and networks: the only place that knows which network a client runs on.
//!
//! The default network is the embedded simulator (`mixnet_sim`); with the `nym` feature,
//! the real Nym mixnet through a `nym_sdk` client ([`Network::Nym`]). The multiplexer
//! below is generic over its transport; both networks use [`Recipient`] as the address.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::sync::OnceLock;

use mixnet_sim::{Address, Mixnet, SimConfig};

use super::{Error, Result};

/// The address of a mixnet client: where streams and plain messages are sent.
///
/// `Copy + Display + FromStr + Eq + Hash`, like `nym_sdk::mixnet::Recipient`. On the
/// embedded simulator it displays as `sim:` followed by 64 hex digits. With the `nym`
/// feature it can also hold a real Nym address (`identity.encryption@gateway` in base58),
/// and converts to and from `nym_sdk::mixnet::Recipient`.
///
/// ```
/// use nym_stream::mixnet::Recipient;
///
/// let text = format!("sim:{}", "ab".repeat(32));
/// let r: Recipient = text.parse()?;
/// assert_eq!(r.to_string(), text);
/// assert!(r.is_sim());
/// assert!("not-an-address".parse::<Recipient>().is_err());
/// # Ok::<(), nym_stream::mixnet::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Recipient(Repr);

/// Which network an address belongs to, and the address itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Repr {
    /// A client of a simulated mixnet.
    Sim(Address),
    /// A client of the real Nym mixnet.
    #[cfg(feature = "nym")]
    Nym(crate::nym::NymAddress),
}

impl Recipient {
    /// The recipient with this simulator address.
    pub fn from_sim_address(addr: Address) -> Self {
        Self(Repr::Sim(addr))
    }

    /// The simulator address behind this recipient.
    ///
    /// # Panics
    ///
    /// If this is an address of the real Nym network (possible only with the `nym`
    /// feature); use [`as_sim_address`](Self::as_sim_address) when that can happen.
    pub fn sim_address(&self) -> Address {
        match self.as_sim_address() {
            Some(addr) => addr,
            None => panic!("sim_address() called on the real-network recipient {self}"),
        }
    }

    /// The simulator address behind this recipient; `None` for a real Nym address.
    pub fn as_sim_address(&self) -> Option<Address> {
        match self.0 {
            Repr::Sim(addr) => Some(addr),
            #[cfg(feature = "nym")]
            Repr::Nym(_) => None,
        }
    }

    /// Whether this is an address on a simulated mixnet.
    pub fn is_sim(&self) -> bool {
        matches!(self.0, Repr::Sim(_))
    }

    /// Whether this is an address on the real Nym mixnet (always `false` without the
    /// `nym` feature).
    pub fn is_nym(&self) -> bool {
        !self.is_sim()
    }

    /// The real Nym address behind this recipient; `None` for a simulator address.
    #[cfg(feature = "nym")]
    pub fn as_nym(&self) -> Option<nym_sdk::mixnet::Recipient> {
        match self.0 {
            Repr::Sim(_) => None,
            // Valid when stored, so it decodes.
            Repr::Nym(addr) => addr.to_nym().ok(),
        }
    }

    #[cfg(feature = "nym")]
    pub(crate) fn nym_address(&self) -> Option<crate::nym::NymAddress> {
        match self.0 {
            Repr::Sim(_) => None,
            Repr::Nym(addr) => Some(addr),
        }
    }

    /// The name of the network this address belongs to, for messages.
    pub(crate) fn network_name(&self) -> &'static str {
        match self.0 {
            Repr::Sim(_) => "a simulated mixnet",
            #[cfg(feature = "nym")]
            Repr::Nym(_) => "the real Nym mixnet",
        }
    }
}

impl From<Address> for Recipient {
    fn from(addr: Address) -> Self {
        Self::from_sim_address(addr)
    }
}

#[cfg(feature = "nym")]
impl From<nym_sdk::mixnet::Recipient> for Recipient {
    fn from(addr: nym_sdk::mixnet::Recipient) -> Self {
        Self(Repr::Nym(crate::nym::NymAddress::from_nym(&addr)))
    }
}

#[cfg(feature = "nym")]
impl TryFrom<Recipient> for nym_sdk::mixnet::Recipient {
    type Error = Error;

    /// Fails with [`Error::WrongNetwork`] for a simulator address.
    fn try_from(r: Recipient) -> Result<Self> {
        r.as_nym().ok_or_else(|| Error::WrongNetwork {
            recipient: r.to_string(),
            recipient_network: r.network_name(),
            client_network: "the real Nym mixnet",
        })
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Sim(addr) => fmt::Display::fmt(addr, f),
            #[cfg(feature = "nym")]
            Repr::Nym(addr) => match addr.to_nym() {
                Ok(r) => fmt::Display::fmt(&r, f),
                Err(_) => write!(f, "nym-bytes:{}", crate::nym::hex(addr.bytes())),
            },
        }
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({self})")
    }
}

impl FromStr for Recipient {
    type Err = Error;

    /// Parses a simulator address (`sim:` + 64 hex digits) or, with the `nym` feature, a
    /// real Nym address (`identity.encryption@gateway`).
    fn from_str(s: &str) -> Result<Self> {
        #[cfg(feature = "nym")]
        if !s.starts_with(mixnet_sim::ADDRESS_PREFIX) {
            return s
                .parse::<nym_sdk::mixnet::Recipient>()
                .map(Self::from)
                .map_err(|e| Error::InvalidNymRecipient {
                    input: s.chars().take(200).collect(),
                    reason: e.to_string(),
                });
        }
        Ok(Self(Repr::Sim(s.parse::<Address>()?)))
    }
}

/// The network a client joins (internal: grows a variant per supported network).
#[derive(Clone, Debug)]
pub(crate) enum Network {
    /// A simulated mixnet, embedded in this process.
    Sim(Mixnet),
    /// A simulated mixnet shared through a hub (`nym-stream hub`), possibly in another
    /// process.
    Hub(SocketAddr),
    /// The real Nym mixnet, through a `nym_sdk` client.
    #[cfg(feature = "nym")]
    Nym,
}

/// Environment variable that fixes the seed of the process-wide simulated network.
pub const SEED_ENV: &str = "NYM_STREAM_SIM_SEED";

/// Environment variable that chooses the network of clients whose builder names none
/// ([`MixnetClient::connect_new`](super::MixnetClient::connect_new) among them), so an
/// unmodified program can run against a hub:
///
/// * unset, empty or `embedded`: the process-wide embedded simulated mixnet
///   ([`default_network`]);
/// * `hub` or `hub:HOST:PORT`: the simulated-mixnet hub at that address (default
///   `127.0.0.1:1977`), started with `nym-stream hub` or
///   [`mixnet_sim::hub::Hub::start`].
///
/// Anything else is an error ([`Error::InvalidConfig`]) when the client connects.
pub const NETWORK_ENV: &str = "NYM_STREAM_NETWORK";

/// The network [`NETWORK_ENV`] names (`None`: the embedded default).
pub(crate) fn network_from_env() -> Result<Option<Network>> {
    let Ok(value) = std::env::var(NETWORK_ENV) else {
        return Ok(None);
    };
    parse_network(&value)
}

fn parse_network(value: &str) -> Result<Option<Network>> {
    let v = value.trim();
    if v.is_empty() || v == "embedded" {
        return Ok(None);
    }
    let invalid = || Error::InvalidConfig {
        knob: NETWORK_ENV,
        value: value.chars().take(200).collect(),
        expected: "unset, `embedded`, `hub` or `hub:HOST:PORT` (e.g. hub:127.0.0.1:1977)",
    };
    let rest = v.strip_prefix("hub").ok_or_else(invalid)?;
    let addr = match rest.strip_prefix(':') {
        None if rest.is_empty() => {
            SocketAddr::from(([127, 0, 0, 1], mixnet_sim::hub::DEFAULT_HUB_PORT))
        }
        Some(hostport) => hostport
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(invalid)?,
        None => return Err(invalid()),
    };
    Ok(Some(Network::Hub(addr)))
}

static DEFAULT_NETWORK: OnceLock<std::result::Result<Mixnet, String>> = OnceLock::new();

/// The process-wide simulated mixnet that [`MixnetClient::connect_new`] joins.
///
/// It runs the **realistic** preset ([`SimConfig::realistic`]: 3 mix hops, ~80 KB/s per
/// client, 1% loss) in **real time**, on a dedicated background thread, so every
/// runtime of the process can use it. Its seed comes from the environment variable
/// `NYM_STREAM_SIM_SEED` if set (a decimal `u64`, to replay a run), otherwise from the
/// operating system's randomness. It is created on first use and lives until the process
/// exits. Under a paused tokio clock use a network of your own instead
/// ([`MixnetClientBuilder::network`]).
///
/// [`MixnetClient::connect_new`]: super::MixnetClient::connect_new
/// [`MixnetClientBuilder::network`]: super::MixnetClientBuilder::network
pub fn default_network() -> Result<&'static Mixnet> {
    DEFAULT_NETWORK
        .get_or_init(start_default_network)
        .as_ref()
        .map_err(|reason| Error::NetworkStart {
            reason: reason.clone(),
        })
}

fn default_seed() -> std::result::Result<u64, String> {
    match std::env::var(SEED_ENV) {
        Ok(text) => text.trim().parse::<u64>().map_err(|e| {
            format!("{SEED_ENV}={text:?} is not a decimal u64 ({e}); unset it or fix it")
        }),
        Err(_) => Ok(rand::RngCore::next_u64(&mut rand::rngs::OsRng)),
    }
}

fn start_default_network() -> std::result::Result<Mixnet, String> {
    let seed = default_seed()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("nym-stream-sim".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(format!("could not build its runtime: {e}")));
                    return;
                }
            };
            // Built inside the runtime, the network spawns its clock task here.
            let net = rt.block_on(async { Mixnet::new(SimConfig::realistic().with_seed(seed)) });
            if tx.send(Ok(net)).is_err() {
                return;
            }
            rt.block_on(std::future::pending::<()>());
        })
        .map_err(|e| format!("could not spawn its thread: {e}"))?;
    rx.recv()
        .map_err(|_| "its thread ended before the network started".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub_of(v: &str) -> Option<SocketAddr> {
        match parse_network(v).unwrap() {
            Some(Network::Hub(a)) => Some(a),
            _ => None,
        }
    }

    #[test]
    fn the_network_variable_names_the_embedded_network_or_a_hub() {
        assert!(parse_network("").unwrap().is_none());
        assert!(parse_network("embedded").unwrap().is_none());
        assert_eq!(hub_of("hub"), Some("127.0.0.1:1977".parse().unwrap()));
        assert_eq!(
            hub_of("hub:127.0.0.1:4000"),
            Some("127.0.0.1:4000".parse().unwrap())
        );
        assert_eq!(hub_of(" hub:[::1]:5 "), Some("[::1]:5".parse().unwrap()));
        for bad in ["hubby", "hub:", "hub:nowhere", "nym", "hub:1.2.3.4"] {
            let err = parse_network(bad).expect_err(bad).to_string();
            assert!(err.contains("NYM_STREAM_NETWORK"), "{err}");
        }
    }
}
