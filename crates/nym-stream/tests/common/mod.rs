//! Helpers shared by the facade's integration tests.
#![allow(dead_code)]

use nym_stream::mixnet::MixnetClient;
use tokio::io::AsyncWriteExt;

/// Serves every stream `server` accepts by echoing it back until EOF, then shutting
/// the write side down.
pub(crate) fn spawn_echo_server(server: &mut MixnetClient) {
    let mut listener = server.listener().expect("first listener");
    tokio::spawn(async move {
        while let Some(stream) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = stream.into_split();
                if tokio::io::copy(&mut rd, &mut wr).await.is_ok() {
                    wr.shutdown().await.ok();
                }
            });
        }
    });
}
