//! Stream scenarios shared by the tests of every network (the simulator and the
//! offline nym-sdk fake).
#![allow(dead_code)]

use std::io::ErrorKind;

use nym_stream::frame::ext::reset_code;
use nym_stream::mixnet::{reset_code_of, MixnetClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Half-close both ways, a reset with an application code, and a stream dropped
/// without shutdown (its data, then an error, never a clean EOF), from `c` to `server`.
pub(crate) async fn close_reset_and_drop(c: &mut MixnetClient, server: &mut MixnetClient) {
    let to = *server.nym_address();
    let mut listener = server.listener().unwrap();

    // Half-close: EOF after the data, the other direction still works.
    let mut s = c.open_stream(to, None).await.unwrap();
    s.write_all(b"request").await.unwrap();
    s.shutdown().await.unwrap();
    let mut inc = listener.accept().await.unwrap();
    let mut req = Vec::new();
    inc.read_to_end(&mut req).await.unwrap();
    assert_eq!(req, b"request");
    inc.write_all(b"response").await.unwrap();
    inc.shutdown().await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    assert_eq!(resp, b"response");

    // Reset with an application code.
    let code = reset_code::APPLICATION_MIN + 3;
    let s = c.open_stream(to, None).await.unwrap();
    s.wait_established().await.unwrap();
    let mut inc = listener.accept().await.unwrap();
    s.reset(code);
    let mut buf = [0u8; 4];
    let err = inc.read(&mut buf).await.expect_err("reset");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    assert_eq!(reset_code_of(&err), Some(code));

    // Dropped without shutdown: data, then an error (never a clean EOF).
    let mut s = c.open_stream(to, None).await.unwrap();
    s.write_all(b"partial").await.unwrap();
    drop(s);
    let mut inc = listener.accept().await.unwrap();
    let mut got = Vec::new();
    let err = inc
        .read_to_end(&mut got)
        .await
        .expect_err("not a clean EOF");
    assert_eq!(got, b"partial");
    assert_eq!(reset_code_of(&err), Some(reset_code::CANCELLED));
}
