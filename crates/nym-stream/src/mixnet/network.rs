//! Addresses and networks: the only place that knows which network a client runs on.
//!
//! Today the one network is the embedded simulator (`mixnet_sim`). A real Nym network can
//! be added later as another [`Network`] variant behind a cargo feature; the multiplexer
//! below is generic over its transport and needs no change.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::OnceLock;

use mixnet_sim::{Address, Mixnet, SimConfig};

use super::{Error, Result};

/// The address of a mixnet client: where streams and plain messages are sent.
///
/// `Copy + Display + FromStr + Eq + Hash`, like `nym_sdk::mixnet::Recipient`. On the
/// embedded simulator it displays as `sim:` followed by 64 hex digits.
///
/// ```
/// use nym_stream::mixnet::Recipient;
///
/// let text = format!("sim:{}", "ab".repeat(32));
/// let r: Recipient = text.parse()?;
/// assert_eq!(r.to_string(), text);
/// assert!("not-an-address".parse::<Recipient>().is_err());
/// # Ok::<(), nym_stream::mixnet::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Recipient(Address);

impl Recipient {
    /// The recipient with this simulator address.
    pub fn from_sim_address(addr: Address) -> Self {
        Self(addr)
    }

    /// The simulator address behind this recipient.
    pub fn sim_address(&self) -> Address {
        self.0
    }
}

impl From<Address> for Recipient {
    fn from(addr: Address) -> Self {
        Self(addr)
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({})", self.0)
    }
}

impl FromStr for Recipient {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(Self(s.parse::<Address>()?))
    }
}

/// The network a client joins (internal: grows a variant per supported network).
#[derive(Clone, Debug)]
pub(crate) enum Network {
    /// A simulated mixnet, embedded in this process.
    Sim(Mixnet),
}

/// Environment variable that fixes the seed of the process-wide simulated network.
pub const SEED_ENV: &str = "NYM_STREAM_SIM_SEED";

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
        // The standard library seeds its hasher keys from the operating system.
        Err(_) => Ok(std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()),
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
