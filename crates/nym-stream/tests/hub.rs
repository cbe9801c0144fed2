//! Streams through a simulated-mixnet hub: in one process, across a client restart with
//! an identity file, and between two OS processes. Real time, every wait bounded.
#![allow(clippy::print_stderr)]

use std::path::PathBuf;
use std::time::Duration;

use mixnet_sim::hub::{Hub, HubConfig};
use nym_stream::mixnet::{Identity, MixnetClient, MixnetClientBuilder, SimConfig, NETWORK_ENV};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);

async fn hub() -> Hub {
    Hub::start(
        HubConfig::new()
            .with_listen("127.0.0.1:0".parse().unwrap())
            .with_sim(SimConfig::instant().with_seed(9)),
    )
    .await
    .expect("a hub on a free loopback port")
}

async fn join(hub: &Hub) -> MixnetClient {
    MixnetClientBuilder::new_ephemeral()
        .hub(hub.local_addr())
        .build()
        .unwrap()
        .connect_to_mixnet()
        .await
        .expect("joins the hub")
}

fn temp_identity(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("nym-stream-hub-{}-{name}.key", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Opens a stream to `to`, sends `mine`, shuts down, and reads the peer's bytes to EOF.
async fn exchange(
    client: &mut MixnetClient,
    to: nym_stream::mixnet::Recipient,
    mine: &[u8],
) -> Vec<u8> {
    let mut s = client.open_stream(to, None).await.expect("open");
    s.write_all(mine).await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    got
}

/// Accepts one stream and echoes it back until EOF, then shuts down.
async fn echo_one(server: &mut MixnetClient) {
    let mut listener = server.listener().expect("listener");
    let mut s = listener.accept().await.expect("a stream");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    s.write_all(&buf).await.unwrap();
    s.shutdown().await.unwrap();
    s.closed().await.unwrap();
}

#[tokio::test]
async fn a_stream_crosses_the_hub_byte_exact_both_ways() {
    timeout(LIMIT, async {
        let hub = hub().await;
        let mut server = join(&hub).await;
        let mut client = join(&hub).await;
        let to = *server.nym_address();
        let echo = tokio::spawn(async move {
            echo_one(&mut server).await;
            server
        });
        let sent = payload(200_000, 3);
        let got = exchange(&mut client, to, &sent).await;
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "bytes differ");
        echo.await.unwrap().disconnect().await;
        client.disconnect().await;
        assert_eq!(hub.stats().malformed, 0);
    })
    .await
    .expect("done in time");
}

#[tokio::test]
async fn a_server_with_an_identity_file_keeps_its_address_across_restarts() {
    timeout(LIMIT, async {
        let hub = hub().await;
        let key = temp_identity("restart");
        let server_builder = || {
            MixnetClientBuilder::new_ephemeral()
                .hub(hub.local_addr())
                .identity_file(key.clone())
        };
        let first = server_builder()
            .build()
            .unwrap()
            .connect_to_mixnet()
            .await
            .unwrap();
        let address = *first.nym_address();
        // A second server with the same key is refused while the first runs.
        let err = server_builder()
            .build()
            .unwrap()
            .connect_to_mixnet()
            .await
            .expect_err("the identity is in use");
        assert!(err.to_string().contains("same identity"), "{err}");
        first.disconnect().await;
        // Restarted: same address, and a stream to it works.
        let mut second = loop {
            match server_builder().build().unwrap().connect_to_mixnet().await {
                Ok(c) => break c,
                // The hub may not have seen the first connection close yet.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        assert_eq!(*second.nym_address(), address);
        let mut client = join(&hub).await;
        let echo = tokio::spawn(async move {
            echo_one(&mut second).await;
            second
        });
        let got = exchange(&mut client, address, b"after the restart").await;
        assert_eq!(got, b"after the restart");
        echo.await.unwrap().disconnect().await;
        client.disconnect().await;
        let _ = std::fs::remove_file(&key);
    })
    .await
    .expect("done in time");
}

#[tokio::test]
async fn the_embedded_network_keeps_identities_too() {
    let net = nym_stream::mixnet::Mixnet::new(SimConfig::instant().with_seed(4));
    let key = temp_identity("embedded");
    let connect = || {
        MixnetClientBuilder::new_ephemeral()
            .network(net.clone())
            .identity_file(key.clone())
            .build()
            .unwrap()
            .connect_to_mixnet()
    };
    let first = connect().await.unwrap();
    let address = *first.nym_address();
    assert!(connect().await.is_err(), "the identity is in use");
    first.disconnect().await;
    let second = connect().await.unwrap();
    assert_eq!(*second.nym_address(), address);
    let (id, created) = Identity::load_or_create(&key).unwrap();
    assert!(!created);
    assert_eq!(
        nym_stream::mixnet::Recipient::from_sim_address(id.address()),
        address
    );
    second.disconnect().await;
    let _ = std::fs::remove_file(&key);
}

#[tokio::test]
async fn when_the_hub_stops_streams_and_opens_fail_with_clear_errors() {
    timeout(LIMIT, async {
        let hub = hub().await;
        let hub_addr = hub.local_addr();
        let mut server = join(&hub).await;
        let mut client = join(&hub).await;
        let mut listener = server.listener().unwrap();
        let mut s = client
            .open_stream(*server.nym_address(), None)
            .await
            .unwrap();
        s.write_all(b"hi").await.unwrap();
        s.flush().await.unwrap();
        let mut incoming = listener.accept().await.unwrap();
        let mut hi = [0u8; 2];
        incoming.read_exact(&mut hi).await.unwrap();
        hub.shutdown().await;
        // Reads end with an error, writes fail, new opens fail: nothing hangs.
        let mut buf = [0u8; 8];
        let read = s.read(&mut buf).await;
        assert!(read.is_err(), "{read:?}");
        let write = async {
            loop {
                s.write_all(&[0u8; 1024]).await?;
                s.flush().await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), std::io::Error>(())
        }
        .await;
        assert!(write.is_err());
        assert!(client
            .open_stream(*server.nym_address(), None)
            .await
            .is_err());
        // Joining a hub that is gone names it and says what to do.
        let err = MixnetClientBuilder::new_ephemeral()
            .hub(hub_addr)
            .build()
            .unwrap()
            .connect_to_mixnet()
            .await
            .expect_err("no hub");
        let text = err.to_string();
        assert!(
            text.contains(&hub_addr.to_string()) && text.contains("nym-stream hub"),
            "{text}"
        );
    })
    .await
    .expect("no hang");
}

/// The server half of [`two_processes_talk_through_a_hub`], run in a child process (this
/// test binary, re-executed). Without the variable it does nothing.
#[tokio::test]
async fn child_echo_server() {
    let Ok(key) = std::env::var("NYM_STREAM_TEST_CHILD_KEY") else {
        return;
    };
    // An unmodified program: the network comes from NYM_STREAM_NETWORK.
    let mut server = MixnetClientBuilder::new_ephemeral()
        .identity_file(key)
        .build()
        .unwrap()
        .connect_to_mixnet()
        .await
        .expect("the child joins the hub");
    eprintln!("child: serving at {}", server.nym_address());
    timeout(LIMIT, echo_one(&mut server))
        .await
        .expect("the parent's stream in time");
    server.disconnect().await;
}

#[tokio::test]
async fn two_processes_talk_through_a_hub() {
    let hub = hub().await;
    let key = temp_identity("child");
    // The parent knows the child's address from its key file.
    let (id, _) = Identity::load_or_create(&key).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = tokio::process::Command::new(exe)
        .args(["--exact", "child_echo_server", "--nocapture"])
        .env(NETWORK_ENV, format!("hub:{}", hub.local_addr()))
        .env("NYM_STREAM_TEST_CHILD_KEY", &key)
        .kill_on_drop(true)
        .spawn()
        .expect("re-executes the test binary");
    timeout(LIMIT, async {
        while hub.stats().clients_joined < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the child joins the hub in time");
    let mut client = join(&hub).await;
    let to = nym_stream::mixnet::Recipient::from_sim_address(id.address());
    let sent = payload(50_000, 7);
    let got = timeout(LIMIT, exchange(&mut client, to, &sent))
        .await
        .expect("the exchange in time");
    assert!(got == sent, "bytes differ");
    let status = timeout(LIMIT, child.wait())
        .await
        .expect("the child exits in time")
        .unwrap();
    assert!(status.success(), "child: {status}");
    client.disconnect().await;
    let _ = std::fs::remove_file(&key);
}
