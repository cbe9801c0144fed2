//! A SOCKS5 proxy (RFC 1928: no authentication, CONNECT) whose destinations are mixnet
//! services, named by the hostname form of their address ([`crate::names`]) with the
//! virtual port as the SOCKS port: `curl --socks5-hostname 127.0.0.1:1080
//! http://<hex>.<hex>.sim/`. Any other destination (an IP address, an ordinary hostname)
//! is refused with reply 0x02: the proxy is no exit to the internet.
//!
//! The proxy answers success as soon as the stream is open, without waiting for the
//! service (optimistic, like the tunnel request): the client's first bytes then reach the
//! service after one mixnet traversal. A service that refuses closes the connection.

use std::sync::Arc;
use std::time::Duration;

use nym_stream::mixnet::MixnetClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::names::{parse_host, Service};
use crate::tunnel::{self, Counters};

/// SOCKS5 reply codes (RFC 1928 §6).
pub mod reply {
    /// Succeeded.
    pub const OK: u8 = 0x00;
    /// General SOCKS server failure.
    pub const FAILURE: u8 = 0x01;
    /// Connection not allowed by ruleset.
    pub const NOT_ALLOWED: u8 = 0x02;
    /// Command not supported.
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x07;
    /// Address type not supported.
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;
}

/// How long a client has for its greeting and request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn answer(tcp: &mut TcpStream, code: u8) {
    let _ = tcp.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await;
}

/// Why a SOCKS handshake did not produce a destination (logged).
#[derive(Debug)]
struct Refused(String);

/// Reads the greeting and the request; answers the refusals itself.
async fn handshake(tcp: &mut TcpStream) -> Result<Service, Refused> {
    let io = |e: std::io::Error| Refused(format!("handshake: {e}"));
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await.map_err(io)?;
    if head[0] != 5 {
        return Err(Refused(format!(
            "SOCKS version {} (only 5 is spoken)",
            head[0]
        )));
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    tcp.read_exact(&mut methods).await.map_err(io)?;
    if !methods.contains(&0) {
        let _ = tcp.write_all(&[5, 0xff]).await;
        return Err(Refused(
            "the client offers no method without authentication".into(),
        ));
    }
    tcp.write_all(&[5, 0]).await.map_err(io)?;
    let mut req = [0u8; 4];
    tcp.read_exact(&mut req).await.map_err(io)?;
    if req[0] != 5 {
        answer(tcp, reply::FAILURE).await;
        return Err(Refused(format!("request version {}", req[0])));
    }
    // The address comes before we can answer for the command, so read it first.
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 6];
            tcp.read_exact(&mut a).await.map_err(io)?;
            None
        }
        4 => {
            let mut a = [0u8; 18];
            tcp.read_exact(&mut a).await.map_err(io)?;
            None
        }
        3 => {
            let mut len = [0u8; 1];
            tcp.read_exact(&mut len).await.map_err(io)?;
            let mut name = vec![0u8; usize::from(len[0])];
            tcp.read_exact(&mut name).await.map_err(io)?;
            Some(String::from_utf8_lossy(&name).into_owned())
        }
        other => {
            answer(tcp, reply::ADDRESS_TYPE_NOT_SUPPORTED).await;
            return Err(Refused(format!("address type {other}")));
        }
    };
    let mut port = [0u8; 2];
    if host.is_some() {
        tcp.read_exact(&mut port).await.map_err(io)?;
    }
    if req[1] != 1 {
        answer(tcp, reply::COMMAND_NOT_SUPPORTED).await;
        let cmd = match req[1] {
            2 => "BIND",
            3 => "UDP ASSOCIATE",
            _ => "unknown",
        };
        return Err(Refused(format!(
            "command {cmd} (only CONNECT is supported)"
        )));
    }
    let Some(host) = host else {
        answer(tcp, reply::NOT_ALLOWED).await;
        return Err(Refused(
            "an IP address: only mixnet services (names ending in .sim or .nym) are reachable"
                .into(),
        ));
    };
    match parse_host(&host) {
        Ok(address) => Ok(Service {
            address,
            port: u16::from_be_bytes(port),
        }),
        Err(e) => {
            answer(tcp, reply::NOT_ALLOWED).await;
            Err(Refused(e.to_string()))
        }
    }
}

async fn serve_one(
    mut tcp: TcpStream,
    client: Arc<tokio::sync::Mutex<MixnetClient>>,
    counters: Arc<Counters>,
) -> Result<(), String> {
    let service = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(Refused(why))) => return Err(format!("SOCKS request refused: {why}")),
        Err(_) => return Err(format!("no SOCKS request within {HANDSHAKE_TIMEOUT:?}")),
    };
    let stream = client.lock().await.open_stream(service.address, None).await;
    let stream = match stream {
        Ok(s) => s,
        Err(e) => {
            answer(&mut tcp, reply::FAILURE).await;
            return Err(format!(
                "could not open a stream to {}: {e}",
                service.address
            ));
        }
    };
    answer(&mut tcp, reply::OK).await;
    tunnel::tunnel_tcp(stream, tcp, service.port, &counters).await
}

/// Serves SOCKS5 clients on `listener` until `stop` turns true; then waits up to
/// `grace` for open connections.
pub async fn serve(
    listener: TcpListener,
    client: Arc<tokio::sync::Mutex<MixnetClient>>,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let c = Arc::clone(&counters);
    tunnel::serve_tcp(listener, counters, stop, grace, move |tcp| {
        serve_one(tcp, Arc::clone(&client), Arc::clone(&c))
    })
    .await;
}
