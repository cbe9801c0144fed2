//! The transport adapter for the simulated mixnet (`mixnet-sim`), the project's
//! embedded default network.

use std::task::{Context, Poll};

use bytes::Bytes;
use mixnet_sim::{Address, SenderTag, SimClient};

use crate::transport::{Destination, Inbound, Transport, TransportError};

/// A [`Transport`] over one client of a simulated mixnet.
pub struct SimTransport {
    client: SimClient,
}

impl SimTransport {
    /// Wraps a connected simulator client.
    pub fn new(client: SimClient) -> Self {
        Self { client }
    }

    /// The simulator client (for its statistics).
    pub fn client(&self) -> &SimClient {
        &self.client
    }
}

impl Transport for SimTransport {
    type Address = Address;
    type SenderTag = SenderTag;

    fn local_address(&self) -> Address {
        self.client.address()
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        self.client
            .poll_ready(cx)
            .map(|r| r.map_err(TransportError::new))
    }

    fn send(
        &mut self,
        to: Destination<Address, SenderTag>,
        payload: Bytes,
        reply_surbs: u32,
    ) -> Result<(), TransportError> {
        match to {
            Destination::Address(a) => self.client.send_anonymous(a, payload, reply_surbs),
            Destination::Reply(tag) => self.client.send_reply(tag, payload),
        }
        .map_err(TransportError::new)
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound<SenderTag>>> {
        self.client.poll_recv(cx).map(|m| {
            m.map(|m| Inbound {
                payload: m.payload,
                sender_tag: m.sender_tag,
            })
        })
    }

    fn surbs_available(&self, tag: &SenderTag) -> Option<u32> {
        Some(self.client.surbs_available(tag))
    }
}
