//! How streams end: an orderly half-close, an abortive reset with a reason code, and a
//! stream dropped without shutdown. Embedded simulated mixnet, realistic preset.
//!
//! ```sh
//! cargo run --example close_and_reset
//! ```
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::io::ErrorKind;
use std::time::Duration;

use nym_stream::frame::ext::reset_code;
use nym_stream::mixnet::{reset_code_of, MixnetClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An application's own reset reason.
const GIVING_UP: u32 = reset_code::APPLICATION_MIN + 7;

async fn run() -> Result<(), Box<dyn Error>> {
    let mut client = MixnetClient::connect_new().await?;
    let mut server = MixnetClient::connect_new().await?;
    let to = *server.nym_address();
    let mut listener = server.listener()?;
    println!("[client] {}\n[server] {}", client.nym_address(), to);

    // 1. Half-close: the client finishes its request, the server reads it to EOF and
    //    can still answer on the same stream.
    let mut stream = client.open_stream(to, None).await?;
    stream.write_all(b"GET /weather").await?;
    stream.shutdown().await?;
    let mut incoming = listener.accept().await.ok_or("server stopped")?;
    let mut request = Vec::new();
    incoming.read_to_end(&mut request).await?;
    println!(
        "1. [server] {}: read {:?}, then EOF (the client half-closed)",
        incoming.id(),
        String::from_utf8_lossy(&request)
    );
    incoming.write_all(b"sunny").await?;
    incoming.shutdown().await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    println!(
        "   [client] {}: after its own shutdown still read {:?}, then EOF",
        stream.id(),
        String::from_utf8_lossy(&answer)
    );
    if request != b"GET /weather" || answer != b"sunny" {
        return Err("half-close exchange lost bytes".into());
    }

    // 2. Reset: the client aborts; the server's read fails with the client's code.
    let stream = client.open_stream(to, None).await?;
    stream.wait_established().await?;
    let mut incoming = listener.accept().await.ok_or("server stopped")?;
    stream.reset(GIVING_UP);
    let mut buf = [0u8; 16];
    match incoming.read(&mut buf).await {
        Err(e)
            if e.kind() == ErrorKind::ConnectionReset && reset_code_of(&e) == Some(GIVING_UP) =>
        {
            println!(
                "2. [server] {}: read failed, ConnectionReset with code {GIVING_UP:#x}: {e}",
                incoming.id()
            )
        }
        other => {
            return Err(format!("expected a reset with code {GIVING_UP:#x}, got {other:?}").into())
        }
    }

    // 3. Drop without shutdown: what was written still arrives, then an error rather
    //    than EOF, so a cancelled writer never looks like a complete message.
    let mut stream = client.open_stream(to, None).await?;
    let id = stream.id();
    stream.write_all(b"half a mess").await?;
    drop(stream);
    let mut incoming = listener.accept().await.ok_or("server stopped")?;
    let mut got = Vec::new();
    let mut chunk = [0u8; 64];
    let end = loop {
        match incoming.read(&mut chunk).await {
            Ok(0) => break Ok(()),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => break Err(e),
        }
    };
    match end {
        Err(e) => println!(
            "3. [server] {id}: read {:?}, then an error (code {:?}): {e}",
            String::from_utf8_lossy(&got),
            reset_code_of(&e)
        ),
        Ok(()) => return Err("a dropped stream ended with a clean EOF".into()),
    }
    if got != b"half a mess" {
        return Err(format!("the dropped stream's bytes were not delivered: {got:?}").into());
    }
    client.disconnect().await;
    server.disconnect().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    match tokio::time::timeout(Duration::from_secs(60), run()).await {
        Ok(result) => result,
        Err(_) => Err("the demo did not finish within 60 s".into()),
    }
}
