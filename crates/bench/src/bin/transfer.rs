//! A small transfer program for CPU-cost measurement under `valgrind --tool=callgrind`
//! (`cargo xtask bench --callgrind` runs it): moves `--mib N` MiB in total, split evenly
//! over `--streams S` streams, opener to listener, on `SimConfig::instant()`, with 64 KiB
//! writes and reads, on a current-thread tokio runtime. With `--loopback` the network is
//! [`nym_stream_bench::Loopback`] instead, so only the stream layer's own instructions are
//! counted. `--many` raises the per-peer limits as the many-streams benchmark does (and
//! writes 16 KiB at a time, as it does). Exits non-zero when fewer bytes arrive than were
//! sent.
//!
//! The runtime's clock is paused (time moves only when every task waits on a timer), so
//! the instructions counted are the work of the transfer itself. On the real clock
//! (`--real-clock`) valgrind's fifty-fold slowdown lets the 1 s ack and 5 ms coalescing
//! timers fire about once per frame where a native run rarely sees one fire, which
//! inflated the many-stream figures.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use nym_stream_bench::{
    many_streams_config, mux_loopback_transfer, mux_transfer, mux_transfer_with,
};

fn arg(args: &[String], name: &str, default: usize) -> Result<usize, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .ok_or(format!("{name} needs a number"))?
            .parse()
            .map_err(|e| format!("{name}: {e}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mib, streams) = match (arg(&args, "--mib", 16), arg(&args, "--streams", 1)) {
        (Ok(m), Ok(s)) if s > 0 => (m, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("transfer: {e}\nusage: transfer [--mib N] [--streams S] [--per-stream BYTES] [--real-clock] [--loopback] [--many]");
            return ExitCode::from(2);
        }
        _ => {
            eprintln!("transfer: --streams must be at least 1");
            return ExitCode::from(2);
        }
    };
    let per_stream = match arg(&args, "--per-stream", 0) {
        Ok(0) => (mib << 20) / streams,
        Ok(n) => n,
        Err(e) => {
            eprintln!("transfer: {e}");
            return ExitCode::from(2);
        }
    };
    let real_clock = args.iter().any(|a| a == "--real-clock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(!real_clock)
        .build()
        .expect("a current-thread runtime");
    let loopback = args.iter().any(|a| a == "--loopback");
    let many = args.iter().any(|a| a == "--many");
    let got = if loopback {
        rt.block_on(mux_loopback_transfer(streams, per_stream, 64 * 1024))
    } else if many {
        let cfg = many_streams_config(streams);
        rt.block_on(mux_transfer_with(cfg, streams, per_stream, 16 * 1024))
    } else {
        rt.block_on(mux_transfer(streams, per_stream, 64 * 1024))
    };
    if got != per_stream * streams {
        eprintln!(
            "transfer: {got} bytes arrived, {} were sent",
            per_stream * streams
        );
        return ExitCode::FAILURE;
    }
    println!("moved {got} bytes over {streams} stream(s)");
    ExitCode::SUCCESS
}
