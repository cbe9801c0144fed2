//! `nym-stream`: TCP tunnels, a service mapper, a SOCKS5 proxy and a simulated-mixnet
//! hub over nym-stream streams. `nym-stream --help` lists the subcommands.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use mixnet_sim::hub::{Hub, HubConfig};
use nym_stream::mixnet::{MixnetClient, SimConfig};
use nym_stream_cli::names::{hostname, Service};
use nym_stream_cli::tunnel::proto::{Request, Response, Status};
use nym_stream_cli::tunnel::{self, Counters, ServiceConfig};
use nym_stream_cli::{connect, socks5, NetworkChoice};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(
    name = "nym-stream",
    version,
    about = "TCP tunnels, a service mapper and a SOCKS5 proxy over nym-stream streams"
)]
struct Cli {
    /// More log output (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// No status line; only warnings and errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

/// Options of every subcommand that joins a network.
#[derive(clap::Args, Debug)]
struct NetOpts {
    /// `hub` (127.0.0.1:1977), `hub:HOST:PORT`, or `nym` (the real network; feature `nym`).
    #[arg(long, default_value = "hub")]
    network: NetworkChoice,
    /// Key file for a stable address (created if missing).
    #[arg(long)]
    identity: Option<PathBuf>,
    /// Seconds between status lines on stderr.
    #[arg(long, default_value_t = 10)]
    status_interval: u64,
    /// Seconds open connections get to finish after Ctrl-C / SIGTERM.
    #[arg(long, default_value_t = 10)]
    grace: u64,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a simulated-mixnet hub that programs in other processes join.
    Hub {
        /// Where to listen (loopback unless you say otherwise).
        #[arg(long, default_value = "127.0.0.1:1977")]
        listen: SocketAddr,
        /// Network preset: realistic, instant or hostile.
        #[arg(long, default_value = "realistic")]
        preset: String,
        /// Packet loss probability (0.0-1.0), overriding the preset's.
        #[arg(long)]
        loss: Option<f64>,
        /// Seed of the network's random choices.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Serve local TCP services behind this client's mixnet address.
    Serve {
        /// `PORT=HOST:PORT`: streams asking for virtual port PORT reach HOST:PORT. Repeat
        /// for more; only mapped targets are reachable.
        #[arg(long = "map", required = true, value_parser = parse_map)]
        maps: Vec<(u16, String)>,
        /// Most tunnels open at once.
        #[arg(long, default_value_t = 256)]
        max_connections: usize,
        /// Most tunnels open at once from one peer.
        #[arg(long, default_value_t = 32)]
        max_per_peer: usize,
        #[command(flatten)]
        net: NetOpts,
    },
    /// Turn every TCP connection on a local port into a stream to a service.
    Forward {
        /// Local address to accept TCP connections on.
        #[arg(long)]
        listen: SocketAddr,
        /// The service: ADDRESS:PORT (the address as `serve` prints it, or its hostname
        /// form).
        #[arg(long)]
        to: Service,
        #[command(flatten)]
        net: NetOpts,
    },
    /// A SOCKS5 proxy to mixnet services (`curl --socks5-hostname … http://<name>.sim/`).
    Socks5 {
        /// Local address of the proxy.
        #[arg(long, default_value = "127.0.0.1:1080")]
        listen: SocketAddr,
        #[command(flatten)]
        net: NetOpts,
    },
    /// Pipe stdin and stdout through one stream to a service (like netcat).
    Connect {
        /// The service: ADDRESS:PORT.
        to: Service,
        #[command(flatten)]
        net: NetOpts,
    },
}

fn parse_map(s: &str) -> Result<(u16, String), String> {
    let (port, target) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected PORT=HOST:PORT, e.g. 80=127.0.0.1:8080"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{port:?} is not a port number (0-65535)"))?;
    if target
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .is_none()
    {
        return Err(format!("{target:?}: expected HOST:PORT"));
    }
    Ok((port, target.to_string()))
}

fn init_logs(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs a serving future until it ends or Ctrl-C / SIGTERM arrives; then tells it to stop
/// (it accepts nothing new and gives open connections `grace` seconds) and waits for it.
async fn until_interrupted(
    serve: impl std::future::Future<Output = ()>,
    stop: &watch::Sender<bool>,
    grace: u64,
) {
    tokio::pin!(serve);
    tokio::select! {
        () = &mut serve => {}
        () = interrupted() => {
            tracing::info!("interrupted: nothing new is accepted; open connections get {grace} s");
            let _ = stop.send(true);
            serve.await;
        }
    }
}

/// Prints a status line every `every` until `stop`.
fn status_line(
    counters: Arc<Counters>,
    net: &NetOpts,
    quiet: bool,
    mut stop: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(net.status_interval);
    if quiet || every.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut last = (Instant::now(), 0u64, 0u64);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
            let up = counters.bytes_up.load(Ordering::Relaxed);
            let down = counters.bytes_down.load(Ordering::Relaxed);
            let secs = last.0.elapsed().as_secs_f64().max(0.001);
            eprintln!(
                "[status] connections open {}, total {}, failed {}; bytes up {up}, down {down}; \
                 rate up {:.1} KB/s, down {:.1} KB/s",
                counters.open.load(Ordering::Relaxed),
                counters.total.load(Ordering::Relaxed),
                counters.failed.load(Ordering::Relaxed),
                (up - last.1) as f64 / secs / 1000.0,
                (down - last.2) as f64 / secs / 1000.0,
            );
            last = (Instant::now(), up, down);
        }
    });
}

async fn join(net: &NetOpts) -> Result<MixnetClient, String> {
    tracing::info!("joining {}", net.network);
    connect(net.network, net.identity.clone())
        .await
        .map_err(|e| e.to_string())
}

async fn run(cli: Cli) -> Result<(), String> {
    let (stop_tx, stop) = watch::channel(false);
    match cli.command {
        Command::Hub {
            listen,
            preset,
            loss,
            seed,
        } => {
            let mut sim = match preset.as_str() {
                "realistic" => SimConfig::realistic(),
                "instant" => SimConfig::instant(),
                "hostile" => SimConfig::hostile(),
                other => {
                    return Err(format!(
                        "unknown preset {other:?}: realistic, instant or hostile"
                    ))
                }
            }
            .with_seed(seed);
            if let Some(p) = loss {
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!("--loss {p}: a probability between 0.0 and 1.0"));
                }
                sim.loss_probability = p;
            }
            let hub = Hub::start(HubConfig::new().with_listen(listen).with_sim(sim))
                .await
                .map_err(|e| e.to_string())?;
            println!("hub listening on {}", hub.local_addr());
            tracing::info!(
                "preset {preset}, seed {seed}, loss {:.3}; join with --network hub:{} or NYM_STREAM_NETWORK=hub:{}",
                hub.network().config().loss_probability,
                hub.local_addr(),
                hub.local_addr()
            );
            interrupted().await;
            tracing::info!("stopping the hub");
            hub.shutdown().await;
            Ok(())
        }
        Command::Serve {
            maps,
            max_connections,
            max_per_peer,
            net,
        } => {
            let mut map = HashMap::new();
            for (port, target) in maps {
                if map.insert(port, target).is_some() {
                    return Err(format!("virtual port {port} is mapped twice"));
                }
            }
            let mut client = join(&net).await?;
            let address = *client.nym_address();
            println!("address {address}");
            println!("hostname {}", hostname(&address));
            for (port, target) in &map {
                tracing::info!("virtual port {port} -> {target}");
            }
            let listener = client.listener().map_err(|e| e.to_string())?;
            let counters = Arc::new(Counters::default());
            status_line(Arc::clone(&counters), &net, cli.quiet, stop.clone());
            let mut cfg = ServiceConfig::new(map);
            cfg.max_connections = max_connections;
            cfg.max_per_peer = max_per_peer;
            let serve = tunnel::serve(
                listener,
                cfg,
                counters,
                stop,
                Duration::from_secs(net.grace),
            );
            until_interrupted(serve, &stop_tx, net.grace).await;
            client.disconnect().await;
            Ok(())
        }
        Command::Forward { listen, to, net } => {
            let tcp = tunnel::bind(listen).await.map_err(|e| e.to_string())?;
            let client = join(&net).await?;
            println!(
                "forwarding {} -> {}:{}",
                tcp.local_addr().map_err(|e| e.to_string())?,
                to.address,
                to.port
            );
            let client = Arc::new(tokio::sync::Mutex::new(client));
            let counters = Arc::new(Counters::default());
            status_line(Arc::clone(&counters), &net, cli.quiet, stop.clone());
            let fwd = tunnel::forward(
                tcp,
                Arc::clone(&client),
                to.address,
                to.port,
                counters,
                stop,
                Duration::from_secs(net.grace),
            );
            until_interrupted(fwd, &stop_tx, net.grace).await;
            disconnect(client).await;
            Ok(())
        }
        Command::Socks5 { listen, net } => {
            let tcp = tunnel::bind(listen).await.map_err(|e| e.to_string())?;
            let client = join(&net).await?;
            println!(
                "SOCKS5 proxy on {}",
                tcp.local_addr().map_err(|e| e.to_string())?
            );
            let client = Arc::new(tokio::sync::Mutex::new(client));
            let counters = Arc::new(Counters::default());
            status_line(Arc::clone(&counters), &net, cli.quiet, stop.clone());
            let proxy = socks5::serve(
                tcp,
                Arc::clone(&client),
                counters,
                stop,
                Duration::from_secs(net.grace),
            );
            until_interrupted(proxy, &stop_tx, net.grace).await;
            disconnect(client).await;
            Ok(())
        }
        Command::Connect { to, net } => {
            let mut client = join(&net).await?;
            let result = pipe(&mut client, to).await;
            client.disconnect().await;
            result
        }
    }
}

async fn disconnect(client: Arc<tokio::sync::Mutex<MixnetClient>>) {
    match Arc::try_unwrap(client) {
        Ok(m) => m.into_inner().disconnect().await,
        Err(_) => tracing::debug!("connections still hold the client; leaving without draining"),
    }
}

/// `connect`: stdin → stream, stream → stdout.
async fn pipe(client: &mut MixnetClient, to: Service) -> Result<(), String> {
    let stream = client
        .open_stream(to.address, None)
        .await
        .map_err(|e| e.to_string())?;
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(&Request { port: to.port }.encode())
        .await
        .map_err(|e| e.to_string())?;
    let up = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = stdin.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            wr.write_all(&buf[..n]).await?;
        }
        wr.shutdown().await?;
        wr.closed().await
    };
    let down = async {
        let response = Response::read(&mut rd).await.map_err(|e| e.to_string())?;
        if response.status != Status::Accepted {
            return Err(format!(
                "the service refused: {} ({})",
                response.status, response.reason
            ));
        }
        let mut stdout = tokio::io::stdout();
        tokio::io::copy(&mut rd, &mut stdout)
            .await
            .map_err(|e| e.to_string())?;
        stdout.flush().await.map_err(|e| e.to_string())
    };
    let (up, down) = tokio::join!(up, down);
    down?;
    up.map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.verbose, cli.quiet);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nym-stream: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nym-stream: {e}");
            ExitCode::FAILURE
        }
    }
}
