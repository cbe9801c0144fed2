//! The echo tutorial on the **real Nym mixnet** (feature `nym`; needs internet access):
//! two ephemeral nym-sdk clients in this process, an echo server on one, and a stream from
//! the other that sends 4 KiB, half-closes, and reads the echo back to EOF.
//!
//! ```sh
//! cargo run -p nym-stream --features nym --example nym_echo
//! ```
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Duration;

use nym_stream::mixnet::{MixnetClient, MixnetListener, MixnetStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, Instant};

/// How many bytes the client sends: three Sphinx packets' worth.
const MESSAGE_LEN: usize = 4 * 1024;

/// Connecting picks and registers with a gateway: allow for a slow network.
const CONNECT_LIMIT: Duration = Duration::from_secs(120);

/// The whole echo, once both clients are up.
const ECHO_LIMIT: Duration = Duration::from_secs(180);

async fn serve(mut listener: MixnetListener) {
    while let Some(stream) = listener.accept().await {
        tokio::spawn(async move {
            if let Err(e) = echo(stream).await {
                println!("[server] stream failed: {e}");
            }
        });
    }
}

async fn echo(stream: MixnetStream) -> std::io::Result<()> {
    let id = stream.id();
    println!("[server] accepted {id}");
    let (mut rd, mut wr) = stream.into_split();
    let n = tokio::io::copy(&mut rd, &mut wr).await?;
    wr.shutdown().await?;
    println!("[server] {id}: echoed {n} bytes, then saw EOF and closed");
    Ok(())
}

async fn connect(who: &str) -> Result<MixnetClient, Box<dyn Error>> {
    let started = Instant::now();
    let client = timeout(CONNECT_LIMIT, MixnetClient::connect_new_nym())
        .await
        .map_err(|_| {
            format!("[{who}] no connection to the Nym mixnet within {CONNECT_LIMIT:?}")
        })??;
    println!(
        "[{who}] connected in {:.1} s, address {}",
        started.elapsed().as_secs_f64(),
        client.nym_address()
    );
    Ok(client)
}

async fn round_trip(
    client: &mut MixnetClient,
    server: &MixnetClient,
) -> Result<(), Box<dyn Error>> {
    let started = Instant::now();
    let mut stream = client.open_stream(*server.nym_address(), None).await?;
    println!("[client] opened {}", stream.id());

    let message: Vec<u8> = (0..MESSAGE_LEN).map(|i| (i * 31 % 251) as u8).collect();
    stream.write_all(&message).await?;
    stream.shutdown().await?;
    println!(
        "[client] sent {} bytes and shut down the write side",
        message.len()
    );

    let mut echoed = Vec::with_capacity(MESSAGE_LEN);
    stream.read_to_end(&mut echoed).await?;
    if echoed != message {
        return Err(format!(
            "echo differs: sent {} bytes, got {} bytes back",
            message.len(),
            echoed.len()
        )
        .into());
    }
    let m = stream.metrics();
    println!(
        "[client] {}: read {} bytes back to EOF, identical to what was sent",
        stream.id(),
        echoed.len()
    );
    println!(
        "[client] stream frames sent {}, received {}, retransmits {}, srtt {:?}",
        m.frames_sent, m.frames_received, m.retransmits, m.srtt
    );
    println!(
        "round trip: {:.1} s on the real Nym mixnet",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut server = connect("server").await?;
    let mut client = connect("client").await?;
    tokio::spawn(serve(server.listener()?));

    let outcome = match timeout(ECHO_LIMIT, round_trip(&mut client, &server)).await {
        Ok(r) => r,
        Err(_) => Err(format!("the echo did not finish within {ECHO_LIMIT:?}").into()),
    };
    // Shut both nym-sdk clients down properly (a few seconds each).
    client.disconnect().await;
    server.disconnect().await;
    outcome
}
