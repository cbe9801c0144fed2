//! One client, streams to two receivers, round trips running concurrently over the
//! client's single mixnet connection (embedded simulated mixnet, realistic preset).
//!
//! ```sh
//! cargo run --example multi_stream
//! ```
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Duration;

use nym_stream::mixnet::{MixnetClient, MixnetListener, MixnetStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// A receiver: answer every stream with a greeting naming what it read.
async fn serve(name: &'static str, mut listener: MixnetListener) {
    while let Some(mut stream) = listener.accept().await {
        tokio::spawn(async move {
            let mut request = Vec::new();
            if stream.read_to_end(&mut request).await.is_err() {
                return;
            }
            let reply = format!(
                "receiver {name} read {} bytes on {}: {:?}",
                request.len(),
                stream.id(),
                String::from_utf8_lossy(&request)
            );
            if stream.write_all(reply.as_bytes()).await.is_ok() {
                stream.shutdown().await.ok();
            }
        });
    }
}

/// One round trip: write the request, half-close, read the reply to EOF.
async fn exchange(mut stream: MixnetStream, request: &str) -> std::io::Result<String> {
    stream.write_all(request.as_bytes()).await?;
    stream.shutdown().await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    Ok(reply)
}

async fn run() -> Result<(), Box<dyn Error>> {
    let started = Instant::now();
    let mut sender = MixnetClient::connect_new().await?;
    let mut a = MixnetClient::connect_new().await?;
    let mut b = MixnetClient::connect_new().await?;
    println!("[sender] address {}", sender.nym_address());
    println!("[A] address {}", a.nym_address());
    println!("[B] address {}", b.nym_address());
    tokio::spawn(serve("A", a.listener()?));
    tokio::spawn(serve("B", b.listener()?));

    // Two streams on one client, one to each receiver ...
    let to_a = sender.open_stream(*a.nym_address(), None).await?;
    let to_b = sender.open_stream(*b.nym_address(), None).await?;
    println!("[sender] opened {} to A and {} to B", to_a.id(), to_b.id());
    // ... and both round trips in flight at the same time.
    let (reply_a, reply_b) =
        tokio::try_join!(exchange(to_a, "hello A"), exchange(to_b, "hello B"))?;
    println!("[sender] got: {reply_a}");
    println!("[sender] got: {reply_b}");
    if !reply_a.starts_with("receiver A read 7 bytes")
        || !reply_b.starts_with("receiver B read 7 bytes")
    {
        return Err("a reply did not come from the expected receiver".into());
    }
    println!(
        "[sender] {} streams opened on one client; elapsed {:.2} s",
        sender.metrics().streams_opened,
        started.elapsed().as_secs_f64()
    );
    sender.disconnect().await;
    a.disconnect().await;
    b.disconnect().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    match tokio::time::timeout(Duration::from_secs(60), run()).await {
        Ok(result) => result,
        Err(_) => Err("the round trips did not finish within 60 s".into()),
    }
}
