//! Addresses, sender tags, received messages, statistics and errors.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

/// Text prefix of an [`Address`] in its display form.
pub const ADDRESS_PREFIX: &str = "sim:";

/// A client's address on the simulated mixnet: 32 opaque bytes.
///
/// Displayed as `sim:` followed by 64 lowercase hex digits; [`FromStr`] parses that form back
/// (hex digits in either case).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address([u8; 32]);

impl Address {
    /// The address made of these bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Address(b)
    }

    /// The address's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ADDRESS_PREFIX)?;
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

/// Why a text could not be parsed as an [`Address`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid mixnet-sim address {input:?}: {reason}; expected \"sim:\" followed by 64 hex digits"
)]
pub struct AddressParseError {
    /// The offending text (cut to its first 100 characters).
    pub input: String,
    /// What was wrong with it.
    pub reason: String,
}

impl FromStr for Address {
    type Err = AddressParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| AddressParseError {
            input: s.chars().take(100).collect(),
            reason,
        };
        let Some(hex) = s.strip_prefix(ADDRESS_PREFIX) else {
            return Err(err(format!("missing the {ADDRESS_PREFIX:?} prefix")));
        };
        if hex.len() != 64 {
            return Err(err(format!(
                "has {} characters after the prefix",
                hex.chars().count()
            )));
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
            let digit = |c: u8, at: usize| -> Result<u8, AddressParseError> {
                (c as char).to_digit(16).map(|d| d as u8).ok_or_else(|| {
                    err(format!(
                        "character {:?} at position {} is not a hex digit",
                        c as char,
                        ADDRESS_PREFIX.len() + at
                    ))
                })
            };
            out[i] = (digit(pair[0], 2 * i)? << 4) | digit(pair[1], 2 * i + 1)?;
        }
        Ok(Address(out))
    }
}

/// The 16 random bytes a receiver sees instead of the sender's address on anonymous messages.
/// Stable per (sender client, recipient) pair; replies are addressed to it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct SenderTag(pub [u8; 16]);

impl fmt::Display for SenderTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

/// A message handed to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The message bytes.
    pub payload: Bytes,
    /// `Some` for anonymous messages (reply to it with [`crate::SimClient::send_reply`]),
    /// `None` for regular messages and replies.
    pub sender_tag: Option<SenderTag>,
}

/// What one client sent, received and lost. All counters only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Packets this client put on the network: first transmissions, retransmissions and the
    /// control traffic of SURB requests and refills.
    pub packets_sent: u64,
    /// The part of `packets_sent` that were retransmissions of lost packets.
    pub packets_retransmitted: u64,
    /// Messages the application submitted (regular, anonymous and replies).
    pub messages_sent: u64,
    /// Messages handed to this client's receive queue (duplicates included).
    pub messages_received: u64,
    /// Payload bytes the application submitted.
    pub payload_bytes_sent: u64,
    /// Payload bytes handed to this client's receive queue.
    pub payload_bytes_received: u64,
    /// Reply SURBs this client attached to its anonymous messages and SURB refills.
    pub surbs_attached: u64,
    /// Reply SURBs this client spent (one per reply packet, one per SURB request when held).
    pub surbs_used: u64,
    /// Reply SURBs this client asked openers for.
    pub surbs_requested: u64,
    /// Reply SURBs this client received from openers.
    pub surbs_received: u64,
    /// Replies of this client given up: too many retransmissions, or no SURB within
    /// `reply_wait_timeout`.
    pub replies_dropped: u64,
    /// Messages of this client that reached nobody: the address was unknown or disconnected,
    /// a packet was given up after its retransmission limit, or the receiver's queue was
    /// full.
    pub messages_dropped: u64,
    /// Packets of this client lost on the way (each was retransmitted or its reply given up).
    pub packets_lost: u64,
    /// Messages addressed to this client that were dropped because its receive queue was full.
    pub dropped_receiver_full: u64,
}

/// Errors of the simulated client.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The client was disconnected (by [`crate::Mixnet::disconnect_client`]); connect a new one.
    #[error("the mixnet client is disconnected; connect a new client to keep sending")]
    Disconnected,
    /// A reply named a sender tag this client never received an anonymous message from.
    #[error("no anonymous message was ever received from sender tag {0}; replies need a tag taken from a received message")]
    UnknownSenderTag(SenderTag),
    /// Another connected client has this address (the same identity used twice).
    #[error("another client with address {0} is connected to this network (the same identity used twice); stop the other client or use another identity file")]
    AddressInUse(Address),
    /// A hub could not be reached or did not answer as a hub.
    #[error("could not join the simulated-mixnet hub at {hub}: {reason}; start one with `nym-stream hub`, or check the address (NYM_STREAM_NETWORK)")]
    HubUnreachable {
        /// The hub's socket address.
        hub: String,
        /// What went wrong.
        reason: String,
    },
    /// The hub refused this client (and said why).
    #[error("the simulated-mixnet hub at {hub} refused this client: {reason}")]
    HubRefused {
        /// The hub's socket address.
        hub: String,
        /// The hub's reason.
        reason: String,
    },
    /// The connection to the hub ended: the client is off the network.
    #[error("the connection to the simulated-mixnet hub at {hub} is gone ({reason}); restart the hub and connect a new client")]
    HubGone {
        /// The hub's socket address.
        hub: String,
        /// What ended it.
        reason: String,
    },
    /// The message (payload plus framing and SURBs) exceeds the configured maximum.
    #[error("message of {framed_len} framed bytes (payload plus framing and reply SURBs) exceeds the maximum of {max} bytes; split it")]
    MessageTooLarge {
        /// Payload plus framing overhead and attached SURBs, in bytes.
        framed_len: u64,
        /// The configured `max_message_len`.
        max: usize,
    },
}
