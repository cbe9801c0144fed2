//! Helpers shared by the simulator's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use mixnet_sim::{ReceivedMessage, SimClient};
use tokio::time::timeout;

/// A message of `len` bytes (at least 4) that carries its index `i` up front.
pub(crate) fn payload(i: u32, len: usize) -> Bytes {
    let mut v = vec![0u8; len.max(4)];
    v[..4].copy_from_slice(&i.to_be_bytes());
    Bytes::from(v)
}

/// The index a [`payload`] carries.
pub(crate) fn index(m: &ReceivedMessage) -> u32 {
    u32::from_be_bytes([m.payload[0], m.payload[1], m.payload[2], m.payload[3]])
}

/// The next message within `d`, if one comes.
pub(crate) async fn recv_within(c: &mut SimClient, d: Duration) -> Option<ReceivedMessage> {
    timeout(d, c.recv()).await.ok().flatten()
}
