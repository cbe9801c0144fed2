//! A test-only transport over a simulated-mixnet client, addressed by the simulator's
//! own `Address` (the facade's adapter, `nym_stream::sim::SimTransport`, uses
//! `Recipient`; the mux crate itself knows no network).

use std::task::{Context, Poll};

use bytes::Bytes;
use mixnet_sim::{Address, SenderTag, SimClient};
use mux::{Destination, Inbound, Transport, TransportError};

pub struct SimTransport(SimClient);

impl SimTransport {
    pub fn new(client: SimClient) -> Self {
        Self(client)
    }
}

impl Transport for SimTransport {
    type Address = Address;
    type SenderTag = SenderTag;

    fn local_address(&self) -> Address {
        self.0.address()
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        self.0
            .poll_ready(cx)
            .map(|r| r.map_err(TransportError::new))
    }

    fn send(
        &mut self,
        to: Destination<Address, SenderTag>,
        payload: Bytes,
        surbs: u32,
    ) -> Result<(), TransportError> {
        match to {
            Destination::Address(a) => self.0.send_anonymous(a, payload, surbs),
            Destination::Reply(tag) => self.0.send_reply(tag, payload),
        }
        .map_err(TransportError::new)
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound<SenderTag>>> {
        self.0.poll_recv(cx).map(|m| {
            m.map(|m| Inbound {
                payload: m.payload,
                sender_tag: m.sender_tag,
            })
        })
    }

    fn surbs_available(&self, tag: &SenderTag) -> Option<u32> {
        Some(self.0.surbs_available(tag))
    }
}
