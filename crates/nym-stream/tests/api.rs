//! Compile-level check that `nym_stream::mixnet` has every item the facade issue lists,
//! with the listed signatures. If a name or a signature changes, this stops compiling.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::hash::Hash;
use std::io;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use nym_stream::mixnet::{
    AnonymousSenderTag, DisconnectedMixnetClient, Error, MixnetClient, MixnetClientBuilder,
    MixnetClientSender, MixnetListener, MixnetMessageSender, MixnetStream, OwnedReadHalf,
    OwnedWriteHalf, Recipient, ReconstructedMessage, Result, StreamId, StreamMetrics,
};
use tokio::io::{AsyncRead, AsyncWrite};

fn is_recipient<T: Copy + Display + FromStr + Eq + Hash + Debug + Send + Sync>() {}
fn is_io<T: AsyncRead + AsyncWrite + Unpin + Send>() {}
fn is_stream_of<S: futures_core::Stream<Item = MixnetStream>>() {}
fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
fn returns<F: Future<Output = O>, O>(_: &F) {}

#[allow(dead_code, unused_must_use, clippy::let_underscore_future)]
async fn api_shape(mut client: MixnetClient, to: Recipient, tag: AnonymousSenderTag) -> Result<()> {
    is_recipient::<Recipient>();
    is_io::<MixnetStream>();
    is_io::<tokio::io::Join<OwnedReadHalf, OwnedWriteHalf>>();
    is_stream_of::<MixnetListener>();
    is_error::<Error>();
    let _: fn(StreamId) -> String = |id| format!("{id} {id:?}");

    // Client construction, as in nym-sdk.
    let connect = MixnetClient::connect_new();
    returns::<_, Result<MixnetClient>>(&connect);
    let builder: MixnetClientBuilder = MixnetClientBuilder::new_ephemeral()
        .with_stream_idle_timeout(Duration::from_secs(1))
        .with_receive_window(1)
        .with_send_buffer(1)
        .with_max_frame_payload(64)
        .with_nodelay(true)
        .with_coalesce_delay(Duration::ZERO)
        .with_inbound_budget(1)
        .with_legacy_mode(false)
        .with_accept_backlog(1)
        .with_max_inbound_streams(1)
        .with_initial_reply_surbs(1)
        .with_max_retransmits(1)
        .with_keepalive_interval(Duration::from_secs(1))
        .with_keepalive_max_missed(1)
        .with_stream_id_seed(1)
        .with_plain_message_surbs(1)
        .network(nym_stream::mixnet::Mixnet::new(
            nym_stream::mixnet::SimConfig::instant(),
        ));
    let disconnected: DisconnectedMixnetClient = builder.build()?;
    let _: MixnetClient = disconnected.connect_to_mixnet().await?;

    // Client methods.
    let _: &Recipient = client.nym_address();
    let _: MixnetStream = client.open_stream(to, None).await?;
    let _: MixnetStream = client.open_stream(to, Some(10)).await?;
    let mut listener: MixnetListener = client.listener()?;
    let _: Option<MixnetStream> = listener.accept().await;
    let _: Option<Vec<ReconstructedMessage>> = client.wait_for_messages().await;
    client.send_plain_message(to, "text").await?;
    client.send_plain_message(to, vec![1u8, 2]).await?;
    client.send_reply(tag, b"bytes").await?;
    let sender: MixnetClientSender = client.split_sender();
    sender.send_plain_message(to, [0u8; 4]).await?;
    let _: Option<ReconstructedMessage> = None;
    let msg = ReconstructedMessage {
        message: Vec::new(),
        sender_tag: Some(tag),
    };
    let _: (Vec<u8>, Option<AnonymousSenderTag>) = (msg.message, msg.sender_tag);

    // Stream methods.
    let mut stream = client.open_stream(to, None).await?;
    let _: StreamId = stream.id();
    let _: io::Result<Option<Bytes>> = stream.recv().await;
    let _: io::Result<()> = stream.wait_established().await;
    stream.set_nodelay(true);
    let _: StreamMetrics = stream.metrics();
    stream.reset(0);
    let (_r, _w): (OwnedReadHalf, OwnedWriteHalf) = stream.into_split();

    // Errors the issue names.
    let _ = Error::ListenerAlreadyTaken;
    let _ = Error::Disconnected;
    let _: Result<Recipient> = "sim:00".parse::<Recipient>();

    client.disconnect().await;
    Ok(())
}

#[test]
fn api_items_exist() {
    // Naming the function proves every call in it type-checks; it is never run.
    let _ = api_shape;
    // A few values that need no network.
    let text = format!("sim:{}", "0f".repeat(32));
    let r: Recipient = text.parse().expect("a well-formed address parses");
    assert_eq!(r.to_string(), text);
    assert_eq!(
        format!("{}", StreamId::new(0xab)),
        "StreamId(0x00000000000000ab)"
    );
    assert_eq!(
        format!("{:?}", StreamId::new(0xab)),
        "StreamId(0x00000000000000ab)"
    );
}
