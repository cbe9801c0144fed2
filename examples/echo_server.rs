//! The echo server of the echo example as a program of its own, for two processes on a
//! hub: it prints its address and echoes every stream until Ctrl-C.
//!
//! ```sh
//! cargo run -p nym-stream-cli -- hub                                         # terminal 1
//! NYM_STREAM_NETWORK=hub cargo run --example echo_server -- server.key      # terminal 2
//! NYM_STREAM_NETWORK=hub cargo run --example echo_client -- <address>       # terminal 3
//! ```
//!
//! With a key file argument the server keeps its address across restarts (the file is
//! created if missing). The code names no network: `NYM_STREAM_NETWORK` picks it.
#![allow(clippy::print_stdout)]

use std::error::Error;

use nym_stream::mixnet::{MixnetClientBuilder, MixnetStream};
use tokio::io::AsyncWriteExt;

async fn echo(stream: MixnetStream) -> std::io::Result<()> {
    let id = stream.id();
    let (mut rd, mut wr) = stream.into_split();
    let n = tokio::io::copy(&mut rd, &mut wr).await?;
    wr.shutdown().await?;
    println!("[server] {id}: echoed {n} bytes");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut builder = MixnetClientBuilder::new_ephemeral();
    if let Some(key) = std::env::args().nth(1) {
        builder = builder.identity_file(key);
    }
    let mut server = builder.build()?.connect_to_mixnet().await?;
    println!("[server] address {}", server.nym_address());
    let mut listener = server.listener()?;
    let serve = async {
        while let Some(stream) = listener.accept().await {
            tokio::spawn(async move {
                if let Err(e) = echo(stream).await {
                    println!("[server] stream failed: {e}");
                }
            });
        }
    };
    tokio::select! {
        () = serve => println!("[server] the network went away"),
        _ = tokio::signal::ctrl_c() => println!("[server] interrupted"),
    }
    server.disconnect().await;
    Ok(())
}
