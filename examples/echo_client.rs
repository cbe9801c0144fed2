//! The echo client of the echo example as a program of its own: sends 4 KiB to the
//! server address given as its argument and checks the echo (see `echo_server`).
//!
//! ```sh
//! NYM_STREAM_NETWORK=hub cargo run --example echo_client -- sim:…
//! ```
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Duration;

use nym_stream::mixnet::{MixnetClient, Recipient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn run(server: Recipient) -> Result<(), Box<dyn Error>> {
    let mut client = MixnetClient::connect_new().await?;
    println!("[client] address {}", client.nym_address());
    let mut stream = client.open_stream(server, None).await?;
    let message: Vec<u8> = (0..4096).map(|i| (i * 31 % 251) as u8).collect();
    stream.write_all(&message).await?;
    stream.shutdown().await?;
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).await?;
    if echoed != message {
        return Err(format!("echo differs: sent 4096 bytes, got {}", echoed.len()).into());
    }
    println!("[client] {}: 4096 bytes echoed, identical", stream.id());
    client.disconnect().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let server: Recipient = std::env::args()
        .nth(1)
        .ok_or("usage: echo_client <server address> (as echo_server prints it)")?
        .parse()?;
    match tokio::time::timeout(Duration::from_secs(60), run(server)).await {
        Ok(result) => result,
        Err(_) => Err("the echo did not finish within 60 s".into()),
    }
}
