//! Plain messages and streams on one client at the same time (the reference
//! implementation disables messages once streams are used; we do not).
//!
//! Bob runs an echo stream and answers plain messages through reply SURBs, while Alice
//! streams to him and, from another task, sends him plain messages through a split
//! sender. Embedded simulated mixnet, realistic preset, real time.
//!
//! ```sh
//! cargo run --example messages_and_streams
//! ```
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Duration;

use nym_stream::mixnet::{MixnetClient, MixnetMessageSender};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const MESSAGES: usize = 3;

async fn run() -> Result<(), Box<dyn Error>> {
    let started = Instant::now();
    let mut alice = MixnetClient::connect_new().await?;
    let mut bob = MixnetClient::connect_new().await?;
    println!("[alice] address {}", alice.nym_address());
    println!("[bob]   address {}", bob.nym_address());
    let bob_addr = *bob.nym_address();

    // Bob's streams: echo each one.
    let mut listener = bob.listener()?;
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

    // Alice: a stream ...
    let mut stream = alice.open_stream(bob_addr, None).await?;
    stream.write_all(b"bytes on a stream").await?;
    stream.shutdown().await?;
    println!("[alice] {} opened and written", stream.id());

    // ... and, from another task, plain messages through a split sender.
    let sender = alice.split_sender();
    let sending = tokio::spawn(async move {
        for i in 0..MESSAGES {
            sender
                .send_plain_message(bob_addr, format!("plain message {i}"))
                .await?;
        }
        Ok::<_, nym_stream::mixnet::Error>(())
    });

    // Bob: receive the plain messages and answer each through its sender tag.
    let mut received = 0;
    while received < MESSAGES {
        let batch = bob
            .wait_for_messages()
            .await
            .ok_or("bob was disconnected")?;
        for msg in batch {
            received += 1;
            let text = String::from_utf8_lossy(&msg.message).into_owned();
            println!(
                "[bob]   got {text:?} (reply SURBs came with it: {})",
                msg.sender_tag.is_some()
            );
            let tag = msg
                .sender_tag
                .ok_or("a plain message came without a sender tag")?;
            bob.send_reply(tag, format!("re: {text}")).await?;
        }
    }
    sending.await??;

    // Alice: the replies arrive as plain messages, the echo on the stream.
    let mut replies = 0;
    while replies < MESSAGES {
        let batch = alice
            .wait_for_messages()
            .await
            .ok_or("alice was disconnected")?;
        for msg in batch {
            replies += 1;
            println!("[alice] reply {:?}", String::from_utf8_lossy(&msg.message));
        }
    }
    let mut echo = Vec::new();
    stream.read_to_end(&mut echo).await?;
    if echo != b"bytes on a stream" {
        return Err(format!(
            "the stream echo differs: {:?}",
            String::from_utf8_lossy(&echo)
        )
        .into());
    }
    println!(
        "[alice] {} echoed {} bytes to EOF; {MESSAGES} messages and {replies} replies beside it; elapsed {:.2} s",
        stream.id(),
        echo.len(),
        started.elapsed().as_secs_f64()
    );
    alice.disconnect().await;
    bob.disconnect().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    match tokio::time::timeout(Duration::from_secs(60), run()).await {
        Ok(result) => result,
        Err(_) => Err("the demo did not finish within 60 s".into()),
    }
}
