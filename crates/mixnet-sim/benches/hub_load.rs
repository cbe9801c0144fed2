//! Load on a hub: N clients in a second process, each offering more than its link
//! carries (realistic preset: ~50 packets/s per client), so the hub's network emits
//! N × ~50 packets/s in real time. Reports packets and deliveries per second, the hub
//! process's CPU per packet, and how late its engine processed events against their
//! schedule (a hub that cannot keep up falls behind real time).
//!
//! ```sh
//! cargo bench -p mixnet-sim --bench hub_load                  # 1000 clients, 10 s
//! HUB_LOAD_CLIENTS=300 HUB_LOAD_SECS=20 cargo bench -p mixnet-sim --bench hub_load
//! ```
//!
//! The clients run in a child process (this binary, re-executed), so the hub's CPU is
//! its own; both share the machine's cores, as a hub and its clients would on one machine.
#![allow(clippy::print_stdout)]

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mixnet_sim::hub::{Hub, HubConfig};
use mixnet_sim::{Address, ClientStats, DriverLag, Identity, SimClient, SimConfig};

const CHILD_ENV: &str = "HUB_LOAD_CHILD";
const WARMUP: Duration = Duration::from_secs(2);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This process's CPU time (user + system), from /proc (Linux; USER_HZ is 100).
fn cpu_time() -> Option<Duration> {
    proc_cpu("/proc/self/stat")
}

fn proc_cpu(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn main() {
    if let Ok(addr) = std::env::var(CHILD_ENV) {
        child(addr.parse().expect("hub address"));
        return;
    }
    let smoke = std::env::var_os("NYM_STREAM_BENCH_SMOKE").is_some();
    let clients = env_or("HUB_LOAD_CLIENTS", if smoke { 10 } else { 1000 }) as usize;
    let secs = env_or("HUB_LOAD_SECS", if smoke { 1 } else { 10 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let hub = Hub::start(
            HubConfig::new()
                .with_listen("127.0.0.1:0".parse().unwrap())
                .with_sim(SimConfig::realistic().with_seed(1))
                .with_max_connections(clients + 16),
        )
        .await
        .expect("hub");
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, hub.local_addr().to_string())
            .env("HUB_LOAD_CLIENTS", clients.to_string())
            .env(
                "HUB_LOAD_RUN_SECS",
                (WARMUP.as_secs() + secs + 5).to_string(),
            )
            .kill_on_drop(true)
            .spawn()
            .expect("the client process");
        let joined = tokio::time::timeout(Duration::from_secs(120), async {
            while (hub.stats().clients_connected as usize) < clients {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(joined.is_ok(), "only {:?} joined", hub.stats());
        tokio::time::sleep(WARMUP).await;
        let snap = |hub: &Hub| {
            (
                Instant::now(),
                cpu_time(),
                hub.network().driver_lag(),
                hub.network().total_stats(),
            )
        };
        let child_cpu = |pid: Option<u32>| pid.and_then(|p| proc_cpu(&format!("/proc/{p}/stat")));
        let (t0, cpu0, lag0, s0) = snap(&hub);
        let c0 = child_cpu(child.id());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (t1, cpu1, lag1, s1) = snap(&hub);
        let c1 = child_cpu(child.id());
        if let (Some(a), Some(b)) = (c0, c1) {
            println!(
                "client process CPU {:.0} % of one core",
                100.0 * (b - a).as_secs_f64() / (t1 - t0).as_secs_f64()
            );
        }
        let _ = child.kill().await;
        report(clients, t1 - t0, cpu0.zip(cpu1), (lag0, lag1), (s0, s1));
        hub.shutdown().await;
    });
}

fn report(
    clients: usize,
    wall: Duration,
    cpu: Option<(Duration, Duration)>,
    (lag0, lag1): (DriverLag, DriverLag),
    (s0, s1): (ClientStats, ClientStats),
) {
    let secs = wall.as_secs_f64();
    let packets = s1.packets_sent - s0.packets_sent;
    let delivered = s1.messages_received - s0.messages_received;
    let events = lag1.events - lag0.events;
    let mean_lag = (lag1.total - lag0.total).as_secs_f64() / events.max(1) as f64;
    println!("hub_load: {clients} clients, realistic preset, {secs:.1} s measured after a {WARMUP:?} warm-up");
    println!(
        "  packets emitted {:.0}/s ({:.1} per client), messages delivered {:.0}/s",
        packets as f64 / secs,
        packets as f64 / secs / clients as f64,
        delivered as f64 / secs
    );
    if let Some((c0, c1)) = cpu {
        let cpu = (c1 - c0).as_secs_f64();
        println!(
            "  hub process CPU {:.0} % of one core, {:.1} µs per packet emitted",
            100.0 * cpu / secs,
            1e6 * cpu / packets.max(1) as f64
        );
    }
    println!(
        "  engine lag: {events} events, mean {:.2} ms, max so far {:?}, >10 ms {:.2} %, >100 ms {:.2} %",
        mean_lag * 1e3,
        lag1.max,
        100.0 * (lag1.over_10ms - lag0.over_10ms) as f64 / events.max(1) as f64,
        100.0 * (lag1.over_100ms - lag0.over_100ms) as f64 / events.max(1) as f64
    );
}

/// The client process: N clients, each offering 8 one-packet anonymous messages to
/// random other clients every 100 ms (80/s: more than its link carries, so its queue
/// stays busy) while draining what it receives.
fn child(hub: std::net::SocketAddr) {
    let clients = env_or("HUB_LOAD_CLIENTS", 10) as usize;
    let run = Duration::from_secs(env_or("HUB_LOAD_RUN_SECS", 10));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let mut all = Vec::with_capacity(clients);
        for _ in 0..clients {
            all.push(
                SimClient::connect_hub(hub, &Identity::generate())
                    .await
                    .expect("joins"),
            );
        }
        let addrs: Arc<Vec<Address>> = Arc::new(all.iter().map(SimClient::address).collect());
        let payload = Bytes::from(vec![0x5a; 1000]);
        for (i, mut c) in all.into_iter().enumerate() {
            let addrs = Arc::clone(&addrs);
            let payload = payload.clone();
            tokio::spawn(async move {
                let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        m = c.recv() => if m.is_none() { return },
                        _ = tick.tick() => {
                            for _ in 0..8 {
                                let ready = poll_fn(|cx| Poll::Ready(c.poll_ready(cx).is_ready())).await;
                                if !ready {
                                    break;
                                }
                                x ^= x << 13;
                                x ^= x >> 7;
                                x ^= x << 17;
                                let to = addrs[(x % addrs.len() as u64) as usize];
                                if c.send_anonymous(to, payload.clone(), 0).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            });
        }
        tokio::time::sleep(run).await;
    });
}
