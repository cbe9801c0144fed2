//! Item 3 of the benchmark plan: many streams on one client pair.
//!
//! - active: 10,000 concurrent streams, each moving 64 KiB from opener to listener on
//!   `SimConfig::instant()`, real clock; aggregate throughput (median of 3 runs) and the
//!   peak resident memory the run added, per stream;
//! - idle: 10,000 established streams that move nothing (both ends held open); resident
//!   memory they add, per stream.
//!
//! Each scenario runs in a fresh child process (this binary re-executed) so that its peak
//! RSS (`VmHWM`) is its own. Prints a markdown table.
//!
//! Run: `cargo bench -p nym-stream-bench --bench streams`. With `NYM_STREAM_BENCH_SMOKE=1`:
//! 200 streams of 4 KiB, one run.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::{Command, ExitCode};
use std::time::Instant;

use mixnet_sim::SimConfig;
use mux::MuxConfig;
use nym_stream_bench::{many_streams_config, mux_transfer_with, rss, scaled, Pair};

const CHILD_ENV: &str = "NYM_STREAM_BENCH_STREAMS_CHILD";
const CHUNK: usize = 16 * 1024;

fn streams() -> usize {
    scaled(10_000, 200)
}

fn per_stream() -> usize {
    scaled(64 * 1024, 4 * 1024)
}

fn config() -> MuxConfig {
    many_streams_config(streams())
}

fn main() -> ExitCode {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("active") => active(),
        Ok("idle") => idle(),
        _ => parent(),
    }
}

/// Prints `key=value` lines the parent parses.
fn report(pairs: &[(&str, String)]) {
    for (k, v) in pairs {
        println!("{k}={v}");
    }
}

fn active() -> ExitCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let Some((base, _)) = rss() else {
        eprintln!("streams: /proc/self/status is not readable; cannot measure memory");
        return ExitCode::FAILURE;
    };
    let (n, each) = (streams(), per_stream());
    let t = Instant::now();
    let got = rt.block_on(mux_transfer_with(config(), n, each, CHUNK));
    let secs = t.elapsed().as_secs_f64();
    if got != n * each {
        eprintln!("streams: moved {got} bytes, expected {}", n * each);
        return ExitCode::FAILURE;
    }
    let (_, peak) = rss().unwrap_or((0, 0));
    report(&[
        ("secs", format!("{secs}")),
        ("bytes", format!("{got}")),
        ("base_rss", format!("{base}")),
        ("peak_rss", format!("{peak}")),
    ]);
    ExitCode::SUCCESS
}

fn idle() -> ExitCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let n = streams();
    let out = rt.block_on(async move {
        let pair = Pair::new(SimConfig::instant(), config());
        let mut listener = pair.b.listener().expect("first listener");
        // Let both routers start, then take the baseline.
        tokio::task::yield_now().await;
        let (base, _) = rss()?;
        let acceptor = tokio::spawn(async move {
            let mut held = Vec::with_capacity(n);
            while held.len() < n {
                match listener.accept().await {
                    Some(s) => held.push(s),
                    None => break,
                }
            }
            held
        });
        let mut opened = Vec::with_capacity(n);
        for _ in 0..n {
            match pair.a.open(pair.b.local_address(), None).await {
                Ok(s) => opened.push(s),
                Err(_) => return None,
            }
        }
        for s in &opened {
            s.wait_established().await.ok()?;
        }
        let accepted = acceptor.await.ok()?;
        if accepted.len() != n {
            return None;
        }
        let live = pair.a.metrics().live_streams + pair.b.metrics().live_streams;
        let (now, _) = rss()?;
        drop((opened, accepted));
        Some((base, now, live))
    });
    let Some((base, now, live)) = out else {
        eprintln!("streams: could not establish {n} idle streams");
        return ExitCode::FAILURE;
    };
    report(&[
        ("base_rss", format!("{base}")),
        ("rss", format!("{now}")),
        ("live", format!("{live}")),
    ]);
    ExitCode::SUCCESS
}

/// Runs one scenario in a child process and returns its `key=value` report.
fn child(which: &str) -> Result<Vec<(String, f64)>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = Command::new(exe)
        .env(CHILD_ENV, which)
        .output()
        .map_err(|e| format!("could not start the {which} child: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the {which} child failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect())
}

fn get(kv: &[(String, f64)], k: &str) -> f64 {
    kv.iter().find(|(key, _)| key == k).map_or(0.0, |(_, v)| *v)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn parent() -> ExitCode {
    let runs = scaled(3, 1);
    let n = streams();
    let mut secs = Vec::new();
    let mut peak_added = Vec::new();
    for _ in 0..runs {
        match child("active") {
            Ok(kv) => {
                secs.push(get(&kv, "secs"));
                peak_added.push(get(&kv, "peak_rss") - get(&kv, "base_rss"));
            }
            Err(e) => {
                eprintln!("streams: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let idle = match child("idle") {
        Ok(kv) => kv,
        Err(e) => {
            eprintln!("streams: {e}");
            return ExitCode::FAILURE;
        }
    };
    let total = (n * per_stream()) as f64;
    let secs = median(secs);
    let peak = median(peak_added);
    let idle_added = get(&idle, "rss") - get(&idle, "base_rss");
    let idle_per = idle_added / n as f64;
    println!("| scenario | streams | figure | per stream | goal |");
    println!("|---|---|---|---|---|");
    println!(
        "| active, {} KiB each, instant preset | {n} | {:.1} MiB/s aggregate (median of {runs}: {:.2} s) | peak RSS added {:.1} KiB | – |",
        per_stream() / 1024,
        total / secs / (1 << 20) as f64,
        secs,
        peak / n as f64 / 1024.0,
    );
    println!(
        "| idle, established, both ends held | {n} (live table entries: {}) | RSS added {:.1} MiB | {:.0} B (both ends together) | ≤ 2048 B: {} |",
        get(&idle, "live"),
        idle_added / (1 << 20) as f64,
        idle_per,
        if idle_per <= 2048.0 { "met" } else { "**MISSED**" },
    );
    ExitCode::SUCCESS
}
