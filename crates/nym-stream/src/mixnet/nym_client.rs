//! Clients on the real Nym mixnet (feature `nym`): constructors that put the multiplexer
//! on a `nym_sdk` client through [`NymTransport`].

use std::sync::{Arc, Mutex};

use futures_core::Stream;
use nym_sdk::mixnet::{MixnetMessageSender as NymMessageSender, ReconstructedMessage};

use super::network::Network;
use super::{DisconnectedMixnetClient, Error, MixnetClient, MixnetClientBuilder, Result};
use crate::nym::{NymTransport, SharedNymClient};

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
        let receiver = SharedNymClient(Arc::clone(&shared.0));
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
        let handle = mux::spawn(NymTransport::new(address, sender, receiver), mux);
        Ok(MixnetClient::from_handle(
            handle,
            Network::Nym,
            idle_timeout,
            plain_surbs,
        ))
    }
}
