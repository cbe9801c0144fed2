//! The hub server: runs a simulated mixnet in real time and lets clients in other
//! processes join it over a loopback socket.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::proto::{FromHub, ToHub, MAX_FRAME, VERSION};
use crate::types::{ClientStats, SenderTag};
use crate::{Mixnet, SimConfig};

/// The port a hub listens on unless told otherwise (`127.0.0.1:1977`).
pub const DEFAULT_HUB_PORT: u16 = 1977;

/// How a hub is set up. Build with [`HubConfig::new`] and the `with_*` methods.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Where to listen. Default `127.0.0.1:1977` (loopback: the hub is for one machine).
    pub listen: SocketAddr,
    /// The simulated network's settings. Default [`SimConfig::realistic`].
    pub sim: SimConfig,
    /// Most clients connected at once; later connections are refused with a reason.
    /// Default 4096.
    pub max_connections: usize,
    /// How long a new connection has to send its hello before it is dropped. Default 5 s.
    pub hello_timeout: Duration,
    /// Retransmissions per packet of a hub client's messages before the network gives
    /// them up; it replaces `sim.forward_max_retries`, as hub clients cannot set their own.
    /// Without a limit, a client sending to addresses nobody holds would make the hub
    /// retry forever, so the default bounds it like our adapters do. Default `Some(10)`.
    pub max_retransmissions: Option<u32>,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl HubConfig {
    /// The defaults: loopback port 1977, the realistic preset, 4096 clients, 5 s hello.
    pub fn new() -> Self {
        HubConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_HUB_PORT)),
            sim: SimConfig::realistic(),
            max_connections: 4096,
            hello_timeout: Duration::from_secs(5),
            max_retransmissions: Some(10),
        }
    }

    /// Sets [`HubConfig::listen`] (port 0 picks a free port: read it back with
    /// [`Hub::local_addr`]).
    pub fn with_listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        self
    }

    /// Sets [`HubConfig::sim`].
    pub fn with_sim(mut self, sim: SimConfig) -> Self {
        self.sim = sim;
        self
    }

    /// Sets [`HubConfig::max_connections`].
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets [`HubConfig::max_retransmissions`].
    pub fn with_max_retransmissions(mut self, max: Option<u32>) -> Self {
        self.max_retransmissions = max;
        self
    }

    /// Sets [`HubConfig::hello_timeout`].
    pub fn with_hello_timeout(mut self, t: Duration) -> Self {
        self.hello_timeout = t;
        self
    }
}

/// Counters of a running hub.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Connections that completed the hello and joined the network.
    pub clients_joined: u64,
    /// Clients connected now.
    pub clients_connected: u64,
    /// Connections refused with a reason: an unsupported protocol version, an address
    /// already connected, the connection limit.
    pub refused: u64,
    /// Connections dropped for garbage: a bad hello, an unknown or malformed frame, a
    /// frame over the size limit, no hello in time.
    pub malformed: u64,
}

#[derive(Default)]
struct Counters {
    joined: AtomicU64,
    connected: AtomicU64,
    refused: AtomicU64,
    malformed: AtomicU64,
}

/// A running hub: a simulated mixnet that clients of other processes join through
/// [`SimClient::connect_hub`]. Dropping it (or [`Hub::shutdown`]) closes every
/// connection; their clients' operations then fail with [`crate::SimError::HubGone`].
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use mixnet_sim::{hub::{Hub, HubConfig}, Identity, SimClient};
///
/// let hub = Hub::start(HubConfig::new().with_listen("127.0.0.1:0".parse().unwrap())).await?;
/// let client = SimClient::connect_hub(hub.local_addr(), &Identity::generate()).await
///     .map_err(std::io::Error::other)?;
/// println!("joined as {}", client.address());
/// # Ok(()) }
/// ```
pub struct Hub {
    local_addr: SocketAddr,
    net: Mixnet,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// Binds the listening socket and starts serving on the current tokio runtime (it
    /// must have the time and I/O drivers; the network runs in real time).
    pub async fn start(cfg: HubConfig) -> io::Result<Hub> {
        let listener = TcpListener::bind(cfg.listen).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("the hub could not listen on {}: {e}", cfg.listen),
            )
        })?;
        let local_addr = listener.local_addr()?;
        let net = Mixnet::new(SimConfig {
            forward_max_retries: cfg.max_retransmissions,
            ..cfg.sim.clone()
        });
        let counters = Arc::new(Counters::default());
        let (stop, stop_rx) = watch::channel(false);
        tracing::info!(%local_addr, seed = cfg.sim.seed, "simulated-mixnet hub listening");
        let task = tokio::spawn(accept_loop(
            listener,
            net.clone(),
            Arc::clone(&counters),
            stop_rx,
            cfg,
        ));
        Ok(Hub {
            local_addr,
            net,
            counters,
            stop,
            task: Some(task),
        })
    }

    /// The address the hub listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The simulated network the hub runs (statistics of its clients by address).
    pub fn network(&self) -> &Mixnet {
        &self.net
    }

    /// The hub's counters.
    pub fn stats(&self) -> HubStats {
        let c = &self.counters;
        HubStats {
            clients_joined: c.joined.load(Ordering::Relaxed),
            clients_connected: c.connected.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting, closes every connection (its client leaves the network) and
    /// waits until they are closed.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Serves until the process is interrupted (Ctrl-C), then shuts down.
    pub async fn run_until_ctrl_c(self) -> io::Result<()> {
        tokio::signal::ctrl_c().await?;
        tracing::info!("interrupted: the hub shuts down");
        self.shutdown().await;
        Ok(())
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

async fn accept_loop(
    listener: TcpListener,
    net: Mixnet,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
    cfg: HubConfig,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (sock, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, say: wait a little instead of spinning.
                tracing::warn!(error = %e, "the hub could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        if conns.len() >= cfg.max_connections {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            let reason = format!(
                "the hub is full ({} clients connected); try again later or start it with a higher limit",
                cfg.max_connections
            );
            conns.spawn(refuse(sock, reason));
            continue;
        }
        tracing::debug!(%peer, "connection");
        conns.spawn(serve(
            sock,
            net.clone(),
            Arc::clone(&counters),
            stop.clone(),
            cfg.hello_timeout,
        ));
    }
    // Shutdown: the connections see the stop signal too; wait for them.
    while conns.join_next().await.is_some() {}
}

async fn refuse(sock: TcpStream, reason: String) {
    let mut wr = FramedWrite::new(sock, codec());
    let send = wr.send(FromHub::Refused { reason }.encode());
    let _ = tokio::time::timeout(Duration::from_secs(1), send).await;
}

/// Most received messages written to a client in one batch.
const DELIVER_BATCH: usize = 64;

/// What woke a connection's loop.
enum Wake {
    Deliver(Option<crate::ReceivedMessage>),
    Frame(Option<io::Result<bytes::BytesMut>>),
    Tick,
}

async fn serve(
    sock: TcpStream,
    net: Mixnet,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
    hello_timeout: Duration,
) {
    let (rd, wr) = sock.into_split();
    let mut rd = FramedRead::new(rd, codec());
    let mut wr = FramedWrite::new(wr, codec());
    let malformed = |why: &str| {
        counters.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(why, "hub connection dropped");
    };
    let hello = match tokio::time::timeout(hello_timeout, rd.next()).await {
        Ok(Some(Ok(f))) => ToHub::decode(f.freeze()),
        Ok(Some(Err(_))) => return malformed("unreadable hello"),
        Ok(None) => return,
        Err(_) => return malformed("no hello in time"),
    };
    let address = match hello {
        Ok(ToHub::Hello { version, address }) if version == VERSION => address,
        Ok(ToHub::Hello { version, .. }) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            let reason = format!(
                "protocol version {version} is not supported: this hub speaks version {VERSION}; \
                 use the same nym-stream release for the hub and its clients"
            );
            let _ = wr.send(FromHub::Refused { reason }.encode()).await;
            return;
        }
        _ => return malformed("the first frame was not a hello"),
    };
    let mut client = match net.connect_address(address) {
        Ok(c) => c,
        Err(e) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            let _ = wr
                .send(
                    FromHub::Refused {
                        reason: e.to_string(),
                    }
                    .encode(),
                )
                .await;
            return;
        }
    };
    let welcome = FromHub::Welcome {
        version: VERSION,
        max_message_len: net.config().max_message_len as u64,
    };
    if wr.send(welcome.encode()).await.is_err() {
        return;
    }
    counters.joined.fetch_add(1, Ordering::Relaxed);
    counters.connected.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%address, "client joined the hub");
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut told_stats = ClientStats::default();
    let mut told_stock: HashMap<SenderTag, u32> = HashMap::new();
    loop {
        let wake = poll_fn(|cx| {
            if let Poll::Ready(m) = client.poll_recv(cx) {
                return Poll::Ready(Wake::Deliver(m));
            }
            // Read the client's next send only when the network takes it: the
            // socket's own backpressure then holds the sender back.
            match client.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    if let Poll::Ready(f) = rd.poll_next_unpin(cx) {
                        return Poll::Ready(Wake::Frame(f));
                    }
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Wake::Deliver(None)),
                Poll::Pending => {}
            }
            if tick.poll_tick(cx).is_ready() {
                return Poll::Ready(Wake::Tick);
            }
            Poll::Pending
        });
        let wake = tokio::select! {
            w = wake => w,
            _ = stop.changed() => break,
        };
        let out: Vec<Bytes> = match wake {
            Wake::Deliver(None) | Wake::Frame(None) => break,
            Wake::Deliver(Some(m)) => {
                // Everything already waiting goes out in one write.
                let mut out = Vec::new();
                let mut next = Some(m);
                while let Some(m) = next.take() {
                    let sender_tag = m.sender_tag.map(|t| {
                        let n = client.surbs_available(&t);
                        told_stock.insert(t, n);
                        (t, n)
                    });
                    out.push(
                        FromHub::Received {
                            sender_tag,
                            payload: m.payload,
                        }
                        .encode(),
                    );
                    if out.len() < DELIVER_BATCH {
                        next = poll_fn(|cx| match client.poll_recv(cx) {
                            Poll::Ready(m) => Poll::Ready(m),
                            Poll::Pending => Poll::Ready(None),
                        })
                        .await;
                    }
                }
                out
            }
            Wake::Frame(Some(Err(_))) => {
                malformed("a frame over the size limit or unreadable");
                break;
            }
            Wake::Frame(Some(Ok(f))) => {
                let result = match ToHub::decode(f.freeze()) {
                    Ok(ToHub::SendRegular { to, payload }) => client.send_regular(to, payload),
                    Ok(ToHub::SendAnonymous { to, surbs, payload }) => {
                        client.send_anonymous(to, payload, surbs)
                    }
                    Ok(ToHub::SendReply { tag, payload }) => client.send_reply(tag, payload),
                    Ok(ToHub::Hello { .. }) | Err(_) => {
                        malformed("an unknown or malformed frame");
                        break;
                    }
                };
                match result {
                    Ok(()) => Vec::new(),
                    Err(e) => vec![FromHub::SendFailed {
                        reason: e.to_string(),
                    }
                    .encode()],
                }
            }
            Wake::Tick => {
                let mut out = Vec::new();
                let stats = client.stats();
                if stats != told_stats {
                    told_stats = stats;
                    out.push(FromHub::Stats(stats).encode());
                }
                for (tag, surbs) in client.surb_stocks() {
                    if told_stock.get(&tag) != Some(&surbs) {
                        told_stock.insert(tag, surbs);
                        out.push(FromHub::Stock { tag, surbs }.encode());
                    }
                }
                out
            }
        };
        if out.is_empty() {
            continue;
        }
        // A client that does not read holds only this connection back: the network
        // drops (and counts) what its full inbox cannot take.
        let write = async {
            for frame in out {
                wr.feed(frame).await?;
            }
            SinkExt::<Bytes>::flush(&mut wr).await
        };
        let sent = tokio::select! {
            r = write => r.is_ok(),
            _ = stop.changed() => false,
        };
        if !sent {
            break;
        }
    }
    counters.connected.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(%address, "client left the hub");
    drop(client);
}
