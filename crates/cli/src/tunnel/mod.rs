//! TCP tunnels over streams: the service mapper ([`Service`] side: streams in, TCP
//! connections to mapped local targets out) and the forwarder (TCP connections in, one
//! stream each out). Rust programs can embed either without the command.
//!
//! The first bytes of every tunnel stream are the [`proto`] header; see docs/PROTOCOL.md
//! ("Tunnels").

pub mod proto;
pub mod relay;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nym_stream::mixnet::{
    AnonymousSenderTag, MixnetClient, MixnetListener, MixnetStream, Recipient,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use proto::{Request, Response, Status};

/// Counters of a tunnel command, for its status line.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted so far.
    pub total: AtomicU64,
    /// Connections refused or failed.
    pub failed: AtomicU64,
    /// Bytes from TCP into streams.
    pub bytes_up: AtomicU64,
    /// Bytes from streams out to TCP.
    pub bytes_down: AtomicU64,
}

/// Counts a connection as open while alive.
struct OpenGuard<'a>(&'a Counters);

impl<'a> OpenGuard<'a> {
    fn new(c: &'a Counters) -> Self {
        c.open.fetch_add(1, Ordering::Relaxed);
        c.total.fetch_add(1, Ordering::Relaxed);
        OpenGuard(c)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a service maps, and its limits.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Virtual port → local target (`host:port`). Only mapped targets are reachable.
    pub map: HashMap<u16, String>,
    /// Most tunnels open at once. Default 256.
    pub max_connections: usize,
    /// Most tunnels open at once from one peer (one opener's sender tag). Default 32.
    pub max_per_peer: usize,
    /// How long a new stream has to send its tunnel request. Default 30 s.
    pub request_timeout: Duration,
    /// How long connecting to a target may take. Default 10 s.
    pub connect_timeout: Duration,
}

impl ServiceConfig {
    /// A service with this map and the default limits.
    pub fn new(map: HashMap<u16, String>) -> Self {
        ServiceConfig {
            map,
            max_connections: 256,
            max_per_peer: 32,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Open tunnels per peer (and in total), for the service's limits.
#[derive(Default)]
struct Occupancy {
    total: usize,
    per_peer: HashMap<Option<AnonymousSenderTag>, usize>,
}

struct Slot {
    occ: Arc<Mutex<Occupancy>>,
    peer: Option<AnonymousSenderTag>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self.occ.lock().unwrap_or_else(|p| p.into_inner());
        o.total -= 1;
        if let Some(n) = o.per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                o.per_peer.remove(&self.peer);
            }
        }
    }
}

/// Serves tunnel streams from `listener` until `stop` turns true, then waits up to
/// `grace` for open tunnels to finish.
pub async fn serve(
    mut listener: MixnetListener,
    cfg: ServiceConfig,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let cfg = Arc::new(cfg);
    let occ = Arc::new(Mutex::new(Occupancy::default()));
    let mut tasks = JoinSet::new();
    loop {
        let stream = tokio::select! {
            s = listener.accept() => match s {
                Some(s) => s,
                None => {
                    tracing::warn!("the network went away: no more streams");
                    break;
                }
            },
            _ = stop.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let peer = stream.peer_tag();
        let slot = {
            let mut o = occ.lock().unwrap_or_else(|p| p.into_inner());
            let mine = o.per_peer.get(&peer).copied().unwrap_or(0);
            if o.total >= cfg.max_connections {
                Err(format!(
                    "{} tunnels open, the most this service allows",
                    o.total
                ))
            } else if mine >= cfg.max_per_peer {
                Err(format!(
                    "{mine} tunnels open from this peer, the most this service allows one peer"
                ))
            } else {
                o.total += 1;
                *o.per_peer.entry(peer).or_default() += 1;
                Ok(Slot {
                    occ: Arc::clone(&occ),
                    peer,
                })
            }
        };
        let cfg = Arc::clone(&cfg);
        let counters = Arc::clone(&counters);
        tasks.spawn(async move {
            let id = stream.id();
            match slot {
                Ok(slot) => {
                    if let Err(why) = serve_one(stream, &cfg, &counters).await {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(stream = %id, "tunnel: {why}");
                    }
                    drop(slot);
                }
                Err(why) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(stream = %id, "tunnel refused: {why}");
                    refuse(stream, Response::refused(Status::Limit, why)).await;
                }
            }
        });
    }
    drain(&mut tasks, grace).await;
}

/// Waits up to `grace` for running tunnels, then aborts the rest.
async fn drain(tasks: &mut JoinSet<()>, grace: Duration) {
    if tasks.is_empty() {
        return;
    }
    tracing::info!(
        open = tasks.len(),
        ?grace,
        "waiting for open tunnels to finish"
    );
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
}

/// Answers a refusal and ends the stream (its optimistic bytes are discarded).
async fn refuse(mut stream: MixnetStream, response: Response) {
    let _ = response.write(&mut stream).await;
    let _ = stream.shutdown().await;
    // Let the refusal reach the opener before the stream goes.
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.closed()).await;
}

async fn serve_one(
    mut stream: MixnetStream,
    cfg: &ServiceConfig,
    counters: &Counters,
) -> Result<(), String> {
    let request = match tokio::time::timeout(cfg.request_timeout, Request::read(&mut stream)).await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let why = e.to_string();
            refuse(stream, Response::refused(Status::Malformed, why.clone())).await;
            return Err(why);
        }
        Err(_) => {
            stream.reset(relay::RESET_TCP_ABORTED);
            return Err(format!(
                "no tunnel request within {:?}",
                cfg.request_timeout
            ));
        }
    };
    let Some(target) = cfg.map.get(&request.port) else {
        let why = format!("virtual port {} is not mapped", request.port);
        refuse(stream, Response::refused(Status::NotMapped, why.clone())).await;
        return Err(why);
    };
    let tcp = match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(target.as_str()))
        .await
    {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            let why = format!("target {target} (port {}): {e}", request.port);
            refuse(stream, Response::refused(Status::TargetFailed, why.clone())).await;
            return Err(why);
        }
        Err(_) => {
            let why = format!(
                "target {target} did not answer within {:?}",
                cfg.connect_timeout
            );
            refuse(stream, Response::refused(Status::TargetFailed, why.clone())).await;
            return Err(why);
        }
    };
    let _ = tcp.set_nodelay(true);
    Response::accepted()
        .write(&mut stream)
        .await
        .map_err(|e| format!("answering the opener: {e}"))?;
    let _open = OpenGuard::new(counters);
    tracing::debug!(stream = %stream.id(), %target, "tunnel open");
    relay::relay(tcp.into_split(), stream.into_split(), counters, false)
        .await
        .map_err(|e| format!("relay to {target}: {e}"))
}

/// Opens a tunnel stream to `port` of the service at `to` for one TCP connection and
/// relays until both sides are done. The request and the connection's first bytes go
/// at once (optimistic data); a refusal from the service resets the TCP connection.
pub async fn tunnel_tcp(
    stream: MixnetStream,
    tcp: TcpStream,
    port: u16,
    counters: &Counters,
) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    let _open = OpenGuard::new(counters);
    let (s_rd, mut s_wr) = stream.into_split();
    s_wr.write_all(&Request { port }.encode())
        .await
        .map_err(|e| format!("sending the tunnel request: {e}"))?;
    relay::relay(tcp.into_split(), (s_rd, s_wr), counters, true)
        .await
        .map_err(|e| e.to_string())
}

/// Accepts TCP connections on `listener` until `stop` turns true and runs `handle` on
/// each in a task of its own (a failure is counted and logged with its reason); then
/// waits up to `grace` for the connections still open.
pub async fn serve_tcp<F, Fut>(
    listener: TcpListener,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    handle: F,
) where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    loop {
        let (tcp, from) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accepting a TCP connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let work = handle(tcp);
        let counters = Arc::clone(&counters);
        tasks.spawn(async move {
            if let Err(why) = work.await {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%from, "{why}");
            }
        });
    }
    drain(&mut tasks, grace).await;
}

/// Accepts TCP connections on `listener` and tunnels each to `port` of `to`, until
/// `stop` turns true; then waits up to `grace` for open tunnels.
pub async fn forward(
    listener: TcpListener,
    client: Arc<tokio::sync::Mutex<MixnetClient>>,
    to: Recipient,
    port: u16,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let c = Arc::clone(&counters);
    serve_tcp(listener, counters, stop, grace, move |tcp| {
        let client = Arc::clone(&client);
        let counters = Arc::clone(&c);
        async move {
            let stream = client.lock().await.open_stream(to, None).await;
            match stream {
                Ok(stream) => tunnel_tcp(stream, tcp, port, &counters)
                    .await
                    .map_err(|why| format!("connection failed: {why}")),
                Err(e) => {
                    reset_tcp_stream(tcp);
                    Err(format!("could not open a stream to {to}: {e}"))
                }
            }
        }
    })
    .await;
}

/// Closes a TCP connection with RST.
pub fn reset_tcp_stream(tcp: TcpStream) {
    // A zero linger never blocks (see `relay::reset_tcp`).
    #[allow(deprecated)]
    let _ = tcp.set_linger(Some(Duration::ZERO));
    drop(tcp);
}

/// Binds a TCP listener with an error that names the address.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}
