//! The error type of the facade.

use std::io;
use std::time::Duration;

use super::Recipient;

/// Everything that can go wrong in `nym_stream::mixnet`. Each message says what happened
/// and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// [`MixnetClient::listener`](super::MixnetClient::listener) was called a second time.
    #[error(
        "the listener of this client was already taken; a client has exactly one listener, \
         keep the first one (or connect another client)"
    )]
    ListenerAlreadyTaken,
    /// The client was disconnected, or its network stopped, so nothing can be sent.
    #[error(
        "the mixnet client is disconnected (disconnect() was called or its network stopped); \
         connect a new client"
    )]
    Disconnected,
    /// A stream could not be opened.
    #[error("could not open a stream to {recipient}: {source}")]
    Open {
        /// Who the stream was for.
        recipient: Recipient,
        /// Why the multiplexer refused.
        #[source]
        source: mux::OpenError,
    },
    /// A plain message could not be handed to the network.
    #[error("could not send a plain message to {to}: {source}")]
    Send {
        /// The recipient address or sender tag the message was for.
        to: String,
        /// What the client reported.
        #[source]
        source: io::Error,
    },
    /// Text that should be a recipient address is not one.
    #[error("invalid recipient address: {0}")]
    InvalidRecipient(#[from] mixnet_sim::AddressParseError),
    /// Text that should be a real Nym address (`identity.encryption@gateway`, base58) is
    /// not one (only with the `nym` feature).
    #[error("invalid Nym recipient address {input:?}: {reason}; expected identity.encryption@gateway in base58, as nym_address() prints it")]
    InvalidNymRecipient {
        /// The text given (at most 200 characters of it).
        input: String,
        /// What the Nym address parser reported.
        reason: String,
    },
    /// An address of one network was given to a client of another (a simulator address to
    /// a client on the real Nym mixnet, or the other way round).
    #[error("{recipient} is an address on {recipient_network}, but this client runs on {client_network}; use an address printed by a client of the same network")]
    WrongNetwork {
        /// The address given.
        recipient: String,
        /// The network it belongs to.
        recipient_network: &'static str,
        /// The network of the client.
        client_network: &'static str,
    },
    /// The nym-sdk client failed (connecting to the real Nym mixnet, or sending through
    /// it); only with the `nym` feature.
    #[error("the nym-sdk client failed while {what}: {reason}")]
    Nym {
        /// What was being done.
        what: &'static str,
        /// What nym-sdk reported.
        reason: String,
    },
    /// A builder setting is out of range.
    #[error("invalid client configuration: {knob} = {value}: {expected}")]
    InvalidConfig {
        /// The builder setting.
        knob: &'static str,
        /// The value given.
        value: String,
        /// What is accepted instead.
        expected: &'static str,
    },
    /// The client was connected outside a tokio runtime (it spawns a router task).
    #[error(
        "connect_to_mixnet() needs a running tokio runtime with the time driver enabled; \
         call it from inside one (e.g. #[tokio::main])"
    )]
    NoRuntime,
    /// The process-wide simulated network could not be started.
    #[error("could not start the embedded simulated mixnet: {reason}; join an explicit network with MixnetClientBuilder::network instead")]
    NetworkStart {
        /// What failed.
        reason: String,
    },
    /// The simulated network refused the client or could not be reached: a hub that is
    /// not running or refused (the identity already connected, say), or a hub that went
    /// away.
    #[error("{0}")]
    Network(#[from] mixnet_sim::SimError),
    /// The identity file could not be read or created.
    #[error("identity file {}: {source}", path.display())]
    Identity {
        /// The file named with [`MixnetClientBuilder::identity_file`](super::MixnetClientBuilder::identity_file).
        path: std::path::PathBuf,
        /// What failed (the message says what to do).
        #[source]
        source: io::Error,
    },
    /// An operation gave up after waiting.
    #[error("{what} did not complete within {after:?}; the peer may be unreachable, retry or raise the limit")]
    TimedOut {
        /// What was being waited for.
        what: &'static str,
        /// How long it waited.
        after: Duration,
    },
    /// Any other I/O failure.
    #[error("I/O error on the mixnet client: {0}")]
    Io(#[from] io::Error),
}

/// `Result` with the facade's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
