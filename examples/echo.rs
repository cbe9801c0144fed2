//! The echo tutorial (docs/TUTORIAL.md): an echo server and a client in one process,
//! talking over the embedded simulated mixnet (realistic preset, real time).
//!
//! ```sh
//! cargo run --example echo
//! ```
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Duration;

use nym_stream::mixnet::{MixnetClient, MixnetListener, MixnetStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// How many bytes the client sends (a few KB: three packets' worth).
const MESSAGE_LEN: usize = 4 * 1024;

/// The server: accept streams until the client goes away, one task per stream.
async fn serve(mut listener: MixnetListener) {
    while let Some(stream) = listener.accept().await {
        tokio::spawn(async move {
            if let Err(e) = echo(stream).await {
                println!("[server] stream failed: {e}");
            }
        });
    }
}

/// Echo one stream until the peer shuts its write side down, then shut ours down.
async fn echo(stream: MixnetStream) -> std::io::Result<()> {
    let id = stream.id();
    println!("[server] accepted {id}");
    let (mut rd, mut wr) = stream.into_split();
    let n = tokio::io::copy(&mut rd, &mut wr).await?;
    wr.shutdown().await?;
    println!("[server] {id}: echoed {n} bytes, then saw EOF and closed");
    Ok(())
}

async fn run() -> Result<(), Box<dyn Error>> {
    let started = Instant::now();

    // Two clients on the process-wide simulated mixnet.
    let mut server = MixnetClient::connect_new().await?;
    let mut client = MixnetClient::connect_new().await?;
    println!("[server] address {}", server.nym_address());
    println!("[client] address {}", client.nym_address());

    let listener = server.listener()?;
    tokio::spawn(serve(listener));

    // Open a stream: no round trip needed before writing.
    let mut stream = client.open_stream(*server.nym_address(), None).await?;
    println!("[client] opened {}", stream.id());

    let message: Vec<u8> = (0..MESSAGE_LEN).map(|i| (i * 31 % 251) as u8).collect();
    stream.write_all(&message).await?;
    // Half-close: the server reads every byte, then EOF; we can still read.
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
    if let Some(s) = client.network_stats() {
        println!(
            "[client] network: {} packets sent ({} retransmitted), {} reply SURBs attached",
            s.packets_sent, s.packets_retransmitted, s.surbs_attached
        );
    }
    println!(
        "elapsed: {:.2} s on the realistic simulated mixnet",
        started.elapsed().as_secs_f64()
    );

    client.disconnect().await;
    server.disconnect().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    match tokio::time::timeout(Duration::from_secs(60), run()).await {
        Ok(result) => result,
        Err(_) => Err("the echo round trip did not finish within 60 s".into()),
    }
}
