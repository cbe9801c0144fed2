//! A short stream idle timeout reaping a stream (embedded simulated mixnet, realistic
//! preset, real time).
//!
//! The opener's client reaps streams after 2 s without data. Its stream says hello, then
//! both sides go quiet: the opener's blocked read fails with `TimedOut` at the deadline
//! (neither side sent its FIN, so this is no clean end: `Ok(0)` would claim the peer had
//! nothing more to say), a later write fails, and the reap is announced to the peer (reset
//! code `IDLE_TIMEOUT`), whose stream ends the same way, although its own idle timeout is
//! the default 30 minutes.
//!
//! ```sh
//! cargo run --example idle_timeout
//! ```
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Duration;

use nym_stream::mixnet::{MixnetClient, MixnetClientBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const IDLE: Duration = Duration::from_secs(2);

async fn run() -> Result<(), Box<dyn Error>> {
    let mut server = MixnetClient::connect_new().await?;
    let mut client = MixnetClientBuilder::new_ephemeral()
        .with_stream_idle_timeout(IDLE)
        .build()?
        .connect_to_mixnet()
        .await?;
    println!(
        "[client] address {}, stream idle timeout {IDLE:?}",
        client.nym_address()
    );
    println!(
        "[server] address {} (default idle timeout: 30 min)",
        server.nym_address()
    );
    let mut listener = server.listener()?;

    let mut stream = client.open_stream(*server.nym_address(), None).await?;
    stream.write_all(b"hello").await?;
    stream.flush().await?;
    // The idle clock of the client's stream starts at its last application byte.
    let quiet_since = Instant::now();
    let mut incoming = listener.accept().await.ok_or("the server stopped")?;
    let mut hello = [0u8; 5];
    incoming.read_exact(&mut hello).await?;
    println!(
        "[server] {} received {:?}",
        incoming.id(),
        String::from_utf8_lossy(&hello)
    );

    // Nobody writes any more. The client's read waits ... until the idle timeout.
    let mut buf = [0u8; 64];
    let read = stream.read(&mut buf).await;
    let waited = quiet_since.elapsed();
    println!(
        "[client] {}: read returned {read:?} {:.2} s after its last byte; reaped = {}",
        stream.id(),
        waited.as_secs_f64(),
        stream.is_reaped()
    );
    let timed_out = matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::TimedOut);
    if !timed_out || !stream.is_reaped() || waited < IDLE {
        return Err("the idle stream was not reaped at its deadline".into());
    }
    match stream.write_all(b"too late").await {
        Err(e) => println!("[client] a write after the reap fails: {e}"),
        Ok(()) => return Err("a write on a reaped stream succeeded".into()),
    }

    // The reap was announced to the server, whose end is reaped too.
    match incoming.read(&mut buf).await {
        Err(e) if incoming.is_reaped() => println!(
            "[server] {}: read failed ({e}): the client's reap ended this end too",
            incoming.id()
        ),
        other => return Err(format!("the server expected its end reaped, got {other:?}").into()),
    }
    client.disconnect().await;
    server.disconnect().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    match tokio::time::timeout(Duration::from_secs(60), run()).await {
        Ok(result) => result,
        Err(_) => Err("the idle-timeout demo did not finish within 60 s".into()),
    }
}
