//! Clients on the real Nym mixnet (feature `nym`): constructors that put the multiplexer
//! on a `nym_sdk` client through [`NymTransport`].

use std::sync::{Arc, Mutex};

use futures_core::Stream;
use nym_sdk::mixnet::{MixnetMessageSender as NymMessageSender, ReconstructedMessage};

use super::network::Network;
use super::{DisconnectedMixnetClient, Error, MixnetClient, MixnetClientBuilder, Result};
use crate::nym::{NymReceiver, NymTransport, SharedNymClient};

impl MixnetClient {
    /// Connects a new client with default settings to the **real Nym mixnet**: an
    /// ephemeral `nym_sdk` client (`nym_sdk::mixnet::MixnetClient::connect_new`) with our
    /// streams on top. Needs internet access; takes as long as nym-sdk needs to pick and
    /// register with a gateway. The same as
    /// `MixnetClientBuilder::new_ephemeral().nym_network().build()?.connect_to_mixnet().await`.
    pub async fn connect_new_nym() -> Result<Self> {
        MixnetClientBuilder::new_ephemeral()
            .nym_network()
            .build()?
            .connect_to_mixnet()
            .await
    }

    /// Runs our streams, with default settings, over a connected `nym_sdk` client (in its
    /// message mode: never call its `open_stream` or `listener`). The client is ours from
    /// now on: [`disconnect`](Self::disconnect) shuts it down. Needs a tokio runtime.
    pub fn from_nym(client: nym_sdk::mixnet::MixnetClient) -> Result<Self> {
        MixnetClientBuilder::new_ephemeral()
            .build()?
            .wrap_nym(client)
    }
}

impl DisconnectedMixnetClient {
    /// Runs our streams, with these settings, over a connected `nym_sdk` client (in its
    /// message mode: never call its `open_stream` or `listener`). The client is ours from
    /// now on: [`MixnetClient::disconnect`] shuts it down. Any simulated network chosen on
    /// the builder is ignored. Needs a tokio runtime.
    pub fn wrap_nym(self, client: nym_sdk::mixnet::MixnetClient) -> Result<MixnetClient> {
        let address = *client.nym_address();
        let sender = client.split_sender();
        let shared = SharedNymClient(Arc::new(Mutex::new(Some(client))));
        let receiver = NymReceiver::new(SharedNymClient(Arc::clone(&shared.0)));
        Ok(self
            .wrap_nym_parts(address, sender, receiver)?
            .owning_nym_client(shared))
    }

    /// Runs our streams, with these settings, over any nym-sdk sender and stream of
    /// received messages, for the client whose address is `address`: for example a
    /// `MixnetClientSender` and a receiver you feed yourself, or an in-process fake in
    /// tests. Shutting down whatever is behind them is up to you. Needs a tokio runtime.
    pub fn wrap_nym_parts<S, R>(
        self,
        address: nym_sdk::mixnet::Recipient,
        sender: S,
        receiver: R,
    ) -> Result<MixnetClient>
    where
        S: NymMessageSender + Send + Sync + 'static,
        R: Stream<Item = ReconstructedMessage> + Unpin + Send + 'static,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        let (_, mux, idle_timeout, plain_surbs) = self.into_parts();
        let transport = NymTransport::new(address, sender, receiver);
        let pacer = transport.pacer();
        let handle = mux::spawn(transport, mux);
        Ok(
            MixnetClient::from_handle(handle, Network::Nym, idle_timeout, plain_surbs)
                .pacing_nym(pacer),
        )
    }
}

/// Where nym-sdk keeps the keys and gateway registration of a client whose identity file
/// is `path` (feature `nym`): the directory `<path>.nym` beside it. The Nym address is
/// derived from those keys, so it survives restarts like a simulator address.
pub(crate) fn nym_storage_dir(path: &std::path::Path) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".nym");
    std::path::PathBuf::from(s)
}

/// nym-sdk's on-disk storage for `identity_file`'s client, created if missing (offline).
async fn nym_persistent_builder(
    identity_file: &std::path::Path,
) -> Result<nym_sdk::mixnet::MixnetClientBuilder<nym_sdk::mixnet::OnDiskPersistent>> {
    let dir = nym_storage_dir(identity_file);
    std::fs::create_dir_all(&dir).map_err(|source| Error::Identity {
        path: dir.clone(),
        source,
    })?;
    let nym = nym_error;
    let paths = nym_sdk::mixnet::StoragePaths::new_from_dir(&dir)
        .map_err(nym("preparing the client's key storage"))?;
    nym_sdk::mixnet::MixnetClientBuilder::new_with_default_storage(paths)
        .await
        .map_err(nym("opening the client's key storage"))
}

/// The nym-sdk settings chosen on [`MixnetClientBuilder`].
#[derive(Clone, Debug, Default)]
pub(crate) struct NymSettings {
    pub(crate) debug: Option<nym_sdk::DebugConfig>,
    pub(crate) gateway: Option<String>,
}

impl NymSettings {
    /// The debug settings to connect with: the ones given (or nym's defaults), with the
    /// reply-SURB reserve of on-disk storage at least the multiplexer's `surb_reserve`.
    fn debug_config(&self, surb_reserve: u32) -> nym_sdk::DebugConfig {
        let mut debug = self.debug.unwrap_or_default();
        let thresholds = &mut debug.reply_surbs;
        thresholds.minimum_reply_surb_storage_threshold = thresholds
            .minimum_reply_surb_storage_threshold
            .max(surb_reserve as usize);
        thresholds.maximum_reply_surb_storage_threshold = thresholds
            .maximum_reply_surb_storage_threshold
            .max(thresholds.minimum_reply_surb_storage_threshold);
        debug
    }
}

fn nym_error(what: &'static str) -> impl Fn(nym_sdk::Error) -> Error {
    move |e| Error::Nym {
        what,
        reason: e.to_string(),
    }
}

/// Applies our settings to a nym-sdk builder and connects it. A macro because the two
/// builders (ephemeral and on-disk storage) are different types whose shared methods
/// carry long storage bounds.
macro_rules! connect_with {
    ($builder:expr, $settings:expr, $surb_reserve:expr) => {{
        let settings: &NymSettings = $settings;
        let mut builder = $builder.debug_config(settings.debug_config($surb_reserve));
        if let Some(gateway) = &settings.gateway {
            builder = builder.request_gateway(gateway.clone());
        }
        builder
            .build()
            .map_err(nym_error("configuring the client"))?
            .connect_to_mixnet()
            .await
            .map_err(nym_error("connecting to the Nym mixnet"))
    }};
}

/// Connects an ephemeral nym-sdk client with these settings (its reply storage keeps
/// nym's hard-coded reserve of 20).
pub(crate) async fn connect_nym_ephemeral(
    settings: &NymSettings,
    surb_reserve: u32,
) -> Result<nym_sdk::mixnet::MixnetClient> {
    connect_with!(
        nym_sdk::mixnet::MixnetClientBuilder::new_ephemeral(),
        settings,
        surb_reserve
    )
}

/// Connects a nym-sdk client whose keys live beside `identity_file` (see
/// [`nym_storage_dir`]), so its Nym address is the same after a restart.
pub(crate) async fn connect_nym_persistent(
    identity_file: &std::path::Path,
    settings: &NymSettings,
    surb_reserve: u32,
) -> Result<nym_sdk::mixnet::MixnetClient> {
    connect_with!(
        nym_persistent_builder(identity_file).await?,
        settings,
        surb_reserve
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our reserve reaches nym's on-disk reply storage; a larger one chosen by the user
    /// stays, and the maximum never falls below the minimum.
    #[test]
    fn nym_settings_keep_the_reply_surb_reserve() {
        let defaults = NymSettings::default().debug_config(20);
        assert_eq!(
            defaults.reply_surbs.minimum_reply_surb_storage_threshold,
            20
        );
        assert_eq!(
            defaults.reply_surbs.maximum_reply_surb_storage_threshold,
            200
        );
        // Everything else is nym's default.
        let mut expected = nym_sdk::DebugConfig::default();
        expected.reply_surbs.minimum_reply_surb_storage_threshold = 20;
        assert_eq!(defaults, expected);

        let mut mine = nym_sdk::DebugConfig::default();
        mine.reply_surbs.minimum_reply_surb_storage_threshold = 300;
        mine.reply_surbs.minimum_reply_surb_request_size = 40;
        let settings = NymSettings {
            debug: Some(mine),
            gateway: None,
        };
        let chosen = settings.debug_config(20);
        assert_eq!(chosen.reply_surbs.minimum_reply_surb_storage_threshold, 300);
        assert_eq!(chosen.reply_surbs.maximum_reply_surb_storage_threshold, 300);
        assert_eq!(chosen.reply_surbs.minimum_reply_surb_request_size, 40);
    }

    /// Offline as far as nym types allow: the key storage beside an identity file is
    /// created (connecting needs the real network).
    #[tokio::test]
    async fn an_identity_file_gets_nym_key_storage_beside_it() {
        let file = std::env::temp_dir().join(format!("nym-stream-id-{}", std::process::id()));
        let dir = nym_storage_dir(&file);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(dir.to_string_lossy().ends_with(".nym"));
        nym_persistent_builder(&file)
            .await
            .expect("storage opens offline");
        assert!(dir.is_dir());
        assert!(
            std::fs::read_dir(&dir).unwrap().next().is_some(),
            "nym-sdk wrote its files"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
