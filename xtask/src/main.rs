//! Project automation for nym-stream.
//!
//! `cargo xtask test-all` is the one test command (what CI runs). Run `cargo xtask`
//! without arguments for the list of subcommands.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod goals;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// One subcommand: its name, a one-line description and the function that runs it.
struct Task {
    name: &'static str,
    about: &'static str,
    run: fn(&[String]) -> Result<(), String>,
}

const TASKS: &[Task] = &[
    Task {
        name: "test-all",
        about: "fmt check, clippy -D warnings, all tests incl. doc tests, build + run every example, bench smoke, 30 s per fuzz target (what CI runs; --no-examples, --no-fuzz skip)",
        run: test_all,
    },
    Task {
        name: "test-nym",
        about: "the `nym` feature (real nym-sdk transport): clippy of nym-stream (all targets, nym_echo included) and of the command, the adapter's offline tests (CI runs it too)",
        run: test_nym,
    },
    Task {
        name: "bench",
        about: "side-by-side benchmarks -> target/bench-report.md; `--callgrind` adds instructions/MiB; `--smoke`: every bench binary once, tiny, dev profile",
        run: bench,
    },
    Task {
        name: "soak",
        about: "hostile-network soak through the facade: 1 GiB across 2,000 streams on 20 pairs at 20 % loss (release build)",
        run: soak,
    },
    Task {
        name: "fuzz",
        about: "`fuzz <lp-frame|mux> --seconds N`: run a cargo-fuzz target (installs cargo-fuzz if missing)",
        run: fuzz,
    },
];

/// Examples that `test-all` runs to completion, each with a time limit in seconds.
const EXAMPLES: &[(&str, u64)] = &[
    // Real time on the realistic simulated mixnet: each finishes in a few seconds; the
    // limits leave room for compiling and a slow machine.
    ("echo", 120),
    ("multi_stream", 120),
    ("idle_timeout", 120),
    ("messages_and_streams", 120),
    ("close_and_reset", 120),
    // Paused clock: simulated time, fast in wall time.
    ("throughput", 180),
];

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let Some(name) = args.first() else {
        usage();
        return ExitCode::SUCCESS;
    };
    let Some(task) = TASKS.iter().find(|t| t.name == name) else {
        eprintln!("xtask: unknown subcommand `{name}`\n");
        usage();
        return ExitCode::from(2);
    };
    let started = Instant::now();
    match (task.run)(&args[1..]) {
        Ok(()) => {
            println!(
                "xtask {}: OK in {:.1}s",
                task.name,
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!(
                "xtask {}: FAILED after {:.1}s: {e}",
                task.name,
                started.elapsed().as_secs_f64()
            );
            ExitCode::FAILURE
        }
    }
}

fn usage() {
    println!("usage: cargo xtask <subcommand> [args]\n\nsubcommands:");
    for t in TASKS {
        println!("  {:<10} {}", t.name, t.about);
    }
}

/// The workspace root (the parent of this crate's directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Runs `program args…` in the workspace root; an error names the step that failed.
fn run(step: &str, program: &str, args: &[&str]) -> Result<(), String> {
    println!("==> {step}: {program} {}", args.join(" "));
    let t = Instant::now();
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .status()
        .map_err(|e| format!("{step}: could not start `{program}`: {e}"))?;
    if status.success() {
        println!("    {step} ok ({:.1}s)", t.elapsed().as_secs_f64());
        Ok(())
    } else {
        Err(format!("step `{step}` failed ({status})"))
    }
}

fn has_nextest() -> bool {
    Command::new(cargo())
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn test_all(args: &[String]) -> Result<(), String> {
    let cargo = cargo();
    let skip_examples = args.iter().any(|a| a == "--no-examples");
    run("fmt", &cargo, &["fmt", "--all", "--check"])?;
    run(
        "clippy",
        &cargo,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    if has_nextest() {
        run(
            "tests (nextest)",
            &cargo,
            &["nextest", "run", "--workspace", "--no-fail-fast"],
        )?;
    } else {
        run(
            "tests (cargo test)",
            &cargo,
            &["test", "--workspace", "--lib", "--bins", "--tests"],
        )?;
    }
    run("doc tests", &cargo, &["test", "--workspace", "--doc"])?;
    run(
        "build examples",
        &cargo,
        &["build", "--workspace", "--examples"],
    )?;
    if !skip_examples {
        for (example, secs) in EXAMPLES {
            let limit = secs.to_string();
            run(
                &format!("example {example}"),
                "timeout",
                &[&limit, &cargo, "run", "--quiet", "--example", example],
            )?;
        }
    }
    bench_smoke()?;
    if args.iter().any(|a| a == "--no-fuzz") {
        println!("==> fuzz smoke skipped (--no-fuzz)");
        return Ok(());
    }
    // A short run of each fuzz target (installs cargo-fuzz if missing): the mux target
    // checks the budgets and the timer contract on arbitrary input.
    fuzz(&["lp-frame".into(), "--seconds".into(), "30".into()])?;
    fuzz(&["mux".into(), "--seconds".into(), "30".into()])
}

/// `cargo xtask soak`: the full soak (`soak_full` in crates/nym-stream/tests/soak.rs),
/// built in release mode; it prints simulated and wall time, resends against losses
/// and peak RSS.
fn soak(_args: &[String]) -> Result<(), String> {
    run(
        "soak",
        &cargo(),
        &[
            "test",
            "--release",
            "-p",
            "nym-stream",
            "--test",
            "soak",
            "--",
            "--ignored",
            "--nocapture",
            "soak_full",
        ],
    )
}

/// Environment variable the nym-stream-bench binaries read for a fast smoke run.
const BENCH_SMOKE_ENV: &str = "NYM_STREAM_BENCH_SMOKE";

/// The side-by-side benchmark binaries of `crates/bench`, in report order.
const SIDE_BY_SIDE: &[&str] = &["codec", "throughput", "streams", "goodput", "latency"];

fn bench(args: &[String]) -> Result<(), String> {
    let cargo = cargo();
    if args.iter().any(|a| a == "--smoke") {
        return bench_smoke();
    }
    let mut report = String::new();
    report.push_str(&format!(
        "# nym-stream benchmark report\n\nDate: {} · machine: {} · command: `cargo xtask bench{}`\n\n",
        capture("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default().trim(),
        machine(),
        if args.is_empty() { String::new() } else { format!(" {}", args.join(" ")) },
    ));
    let mut body = String::new();
    let mut outputs: Vec<(&str, String)> = Vec::new();
    for b in SIDE_BY_SIDE {
        println!("==> bench {b}");
        let out = capture(
            &cargo,
            &["bench", "-q", "-p", "nym-stream-bench", "--bench", b],
        )?;
        print!("{out}");
        body.push_str(&format!("## {b}\n\n"));
        match *b {
            "codec" => body.push_str(&codec_table(&parse_divan(&out))),
            "throughput" => body.push_str(&throughput_table(&parse_divan(&out))),
            _ => body.push_str(&out),
        }
        body.push('\n');
        outputs.push((b, out));
    }
    let callgrind_figures = if args.iter().any(|a| a == "--callgrind") {
        let (table, figures) = callgrind()?;
        body.push_str("## callgrind\n\n");
        body.push_str(&table);
        Some(figures)
    } else {
        None
    };
    let output = |name: &str| {
        outputs
            .iter()
            .find(|(b, _)| *b == name)
            .map_or("", |(_, o)| o.as_str())
    };
    let throughput = parse_divan(output("throughput"));
    let median = |name: &str| find(&throughput, name).map(|r| r.median_ns);
    report.push_str("## Goals of the data path (issue 16), from this run\n\n");
    report.push_str(&goals::table(&goals::Figures {
        loopback_ns: median("mux_loopback"),
        instant_ns: median("mux_instant"),
        yamux_ns: median("yamux_duplex"),
        throughput_bytes: (256u64 << 20) as f64,
        streams: output("streams"),
        goodput: output("goodput"),
        callgrind: callgrind_figures.as_deref(),
    }));
    report.push('\n');
    report.push_str(&body);
    let path = root().join("target").join("bench-report.md");
    std::fs::write(&path, &report).map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("\n{report}\nreport written to {}", path.display());
    Ok(())
}

/// Every benchmark binary of the workspace for a few iterations (divan: one sample of one
/// iteration; the nym-stream-bench tables shrink their workloads), so they do not rot.
fn bench_smoke() -> Result<(), String> {
    let cargo = cargo();
    // `cargo test --benches` runs every bench binary once in the dev profile (divan runs
    // each benchmark once in test mode; our table benches shrink their workloads under
    // the smoke variable): the same rot check as `cargo bench`, without a release build
    // of the whole workspace, which cost minutes of a cold CI run.
    let args = ["test", "--workspace", "--benches"];
    println!(
        "==> bench smoke: {BENCH_SMOKE_ENV}=1 {cargo} {}",
        args.join(" ")
    );
    let t = Instant::now();
    let status = Command::new(&cargo)
        .args(args)
        .env(BENCH_SMOKE_ENV, "1")
        .current_dir(root())
        .status()
        .map_err(|e| format!("bench smoke: could not start cargo: {e}"))?;
    if status.success() {
        println!("    bench smoke ok ({:.1}s)", t.elapsed().as_secs_f64());
        Ok(())
    } else {
        Err(format!("step `bench smoke` failed ({status})"))
    }
}

/// Runs a program in the workspace root and returns its stdout (stderr passes through).
fn capture(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("could not start `{program}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed ({})",
            args.join(" "),
            out.status
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// "N cores, M GiB memory" from the standard library and /proc/meminfo.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB", kib / (1024.0 * 1024.0)))
        })
        .unwrap_or_else(|| "unknown".into());
    format!("{cores} cores, {mem} memory")
}

/// One divan result: the bench path (`group/function/arg`), median in ns, and the median
/// throughput column when divan printed one (e.g. "1.2 GB/s").
struct DivanRow {
    path: String,
    median_ns: f64,
    median_text: String,
    throughput: Option<String>,
}

fn parse_time_ns(text: &str) -> Option<f64> {
    let mut it = text.split_whitespace();
    let v: f64 = it.next()?.parse().ok()?;
    let scale = match it.next()? {
        "ps" => 1e-3,
        "ns" => 1.0,
        "µs" | "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    Some(v * scale)
}

/// Reads divan's tree output. The tree's vertical lines use the same character as the
/// column separators, so columns are cut by position: everything left of the header's
/// "fastest" column is the name part (a name's depth is its column divided by 3, each tree
/// level being three characters wide); the rest splits on '│' into fastest, slowest,
/// median, …. Rows with a time in the median column are results; rows without a name
/// carry the previous result's throughput.
fn parse_divan(out: &str) -> Vec<DivanRow> {
    let mut stack: Vec<String> = Vec::new();
    let mut rows: Vec<DivanRow> = Vec::new();
    let mut name_width: Option<usize> = None;
    for line in out.lines() {
        let chars: Vec<char> = line.chars().collect();
        if let Some(pos) = line.find("fastest") {
            // The header row names the bench binary: the root of every path.
            name_width = Some(line[..pos].chars().count());
            stack = vec![line[..pos].trim().to_string()];
            continue;
        }
        let Some(width) = name_width else {
            continue;
        };
        if chars.len() <= width {
            continue;
        }
        let name_part: String = chars[..width].iter().collect();
        let rest: String = chars[width..].iter().collect();
        let cols: Vec<&str> = rest.split('│').collect();
        if cols.len() < 3 {
            continue;
        }
        let tree = |c: char| matches!(c, ' ' | '├' | '╰' | '─' | '│');
        let Some(depth_chars) = name_part.chars().position(|c| !tree(c)) else {
            // A continuation line: throughput figures of the previous result.
            if let Some(last) = rows.last_mut() {
                let t = cols[2].trim();
                if !t.is_empty() && last.throughput.is_none() {
                    last.throughput = Some(t.to_string());
                }
            }
            continue;
        };
        let name = name_part
            .trim_start_matches(tree)
            .split_whitespace()
            .next()
            .unwrap_or("");
        let depth = depth_chars / 3;
        stack.truncate(depth);
        stack.push(name.to_string());
        if let Some(ns) = parse_time_ns(cols[2].trim()) {
            rows.push(DivanRow {
                path: stack[1..].join("/"),
                median_ns: ns,
                median_text: cols[2].trim().to_string(),
                throughput: None,
            });
        }
    }
    rows
}

fn find<'a>(rows: &'a [DivanRow], path: &str) -> Option<&'a DivanRow> {
    rows.iter().find(|r| r.path == path)
}

fn codec_table(rows: &[DivanRow]) -> String {
    let mut t = String::from(
        "Divan medians, ns per frame. Ratio = nym-lp-data time / ours (higher is better for us).\n\n\
         | payload | parse ours (borrowed) | parse ours (owned) | parse nym-lp-data | ratio (borrowed / owned) | encode ours | encode nym-lp-data | ratio |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for size in ["0", "64", "1024", "2048", "32768"] {
        let get = |p: &str| find(rows, &format!("{p}/{size}"));
        let (Some(pb), Some(po), Some(pt), Some(eo), Some(et)) = (
            get("parse/ours_borrowed"),
            get("parse/ours_owned"),
            get("parse/nym_lp_data"),
            get("encode/ours"),
            get("encode/nym_lp_data"),
        ) else {
            t.push_str(&format!("| {size} B | (missing from divan output) |\n"));
            continue;
        };
        t.push_str(&format!(
            "| {size} B | {} | {} | {} | {:.1}× / {:.1}× | {} | {} | {:.1}× |\n",
            pb.median_text,
            po.median_text,
            pt.median_text,
            pt.median_ns / pb.median_ns,
            pt.median_ns / po.median_ns,
            eo.median_text,
            et.median_text,
            et.median_ns / eo.median_ns,
        ));
    }
    t
}

fn throughput_table(rows: &[DivanRow]) -> String {
    let mut t = String::from(
        "One stream, 256 MiB, 64 KiB writes and reads; divan medians of 5 runs.\n\n\
         | transport | median time | median throughput | mux / this (time ratio) |\n|---|---|---|---|\n",
    );
    let mux = find(rows, "mux_instant");
    for name in ["mux_loopback", "mux_instant", "yamux_duplex", "raw_duplex"] {
        let Some(r) = find(rows, name) else {
            t.push_str(&format!("| {name} | (missing from divan output) | | |\n"));
            continue;
        };
        let ratio = mux.map_or(String::from("–"), |m| {
            format!("{:.2}×", r.median_ns / m.median_ns)
        });
        t.push_str(&format!(
            "| {name} | {} | {} | {ratio} |\n",
            r.median_text,
            r.throughput.as_deref().unwrap_or("–")
        ));
    }
    t
}

/// Instructions per MiB for 1 and 100 streams, over the instant simulator and over the
/// zero-cost loopback transport: callgrind runs of the `transfer` binary at two sizes; the
/// difference divided by the extra MiB cancels start-up and set-up costs.
fn callgrind() -> Result<(String, Vec<goals::CallgrindFigure>), String> {
    let cargo = cargo();
    run(
        "build transfer",
        &cargo,
        &[
            "build",
            "--release",
            "-p",
            "nym-stream-bench",
            "--bin",
            "transfer",
        ],
    )?;
    let exe = root().join("target").join("release").join("transfer");
    let exe = exe.to_str().ok_or("non-UTF-8 target path")?.to_string();
    let (small, large) = (8u64, 24u64);
    let mut t = String::from(
        "`valgrind --tool=callgrind` on `target/release/transfer` (64 KiB writes, paused clock; \
         `--loopback` for the loopback rows); instructions per MiB = (Ir at 24 MiB − Ir at 8 MiB) / 16.\n\n\
         | network | streams | Ir at 8 MiB | Ir at 24 MiB | instructions per MiB |\n|---|---|---|---|---|\n",
    );
    let mut figures = Vec::new();
    for loopback in [false, true] {
        let network = if loopback {
            "loopback"
        } else {
            "instant simulator"
        };
        for streams in [1u64, 100] {
            let mut ir = Vec::new();
            for mib in [small, large] {
                let out_file = std::env::temp_dir()
                    .join(format!("callgrind.nym-{network}-{streams}-{mib}.out"));
                let out_arg = format!("--callgrind-out-file={}", out_file.display());
                let (m, s) = (mib.to_string(), streams.to_string());
                let mut argv = vec![
                    "--tool=callgrind",
                    &out_arg,
                    &exe,
                    "--mib",
                    &m,
                    "--streams",
                    &s,
                ];
                if loopback {
                    argv.push("--loopback");
                }
                run(
                    &format!("callgrind {network}, {streams} stream(s), {mib} MiB"),
                    "valgrind",
                    &argv,
                )?;
                let text = std::fs::read_to_string(&out_file)
                    .map_err(|e| format!("reading {}: {e}", out_file.display()))?;
                let total = text
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("summary:")
                            .or_else(|| l.strip_prefix("totals:"))
                    })
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                    .ok_or_else(|| format!("no summary/totals line in {}", out_file.display()))?;
                ir.push(total);
            }
            let per_mib = ir[1].saturating_sub(ir[0]) / (large - small);
            t.push_str(&format!(
                "| {network} | {streams} | {} | {} | {per_mib} |\n",
                ir[0], ir[1]
            ));
            figures.push(goals::CallgrindFigure {
                loopback,
                streams,
                per_mib,
            });
        }
    }
    Ok((t, figures))
}

fn fuzz(args: &[String]) -> Result<(), String> {
    let cargo = cargo();
    let target = args
        .first()
        .ok_or("usage: cargo xtask fuzz <lp-frame|mux> [--seconds N]")?;
    let seconds = match args.iter().position(|a| a == "--seconds") {
        Some(i) => args
            .get(i + 1)
            .ok_or("--seconds needs a number")?
            .parse::<u64>()
            .map_err(|e| format!("--seconds: {e}"))?,
        None => 60,
    };
    let (dir, fuzz_target) = match target.as_str() {
        "lp-frame" => ("crates/lp-frame", "parse"),
        "mux" => ("crates/mux", "core"),
        other => {
            return Err(format!(
                "unknown fuzz target `{other}` (expected lp-frame or mux)"
            ))
        }
    };
    let installed = Command::new(&cargo)
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !installed {
        run(
            "install cargo-fuzz",
            &cargo,
            &["install", "cargo-fuzz", "--locked"],
        )?;
    }
    // cargo-fuzz needs nightly sanitizer flags; on a stable toolchain RUSTC_BOOTSTRAP=1
    // unlocks them (this machine has only one toolchain).
    println!("==> fuzz {target} for {seconds}s");
    let status = Command::new(&cargo)
        .env("RUSTC_BOOTSTRAP", "1")
        .args([
            "fuzz",
            "run",
            fuzz_target,
            "--",
            &format!("-max_total_time={seconds}"),
        ])
        .current_dir(root().join(dir))
        .status()
        .map_err(|e| format!("could not start cargo fuzz: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("fuzzing {target} failed ({status})"))
    }
}

/// The `nym` feature builds nym-sdk (~75 crates, a few minutes cold), so it has its own
/// command instead of slowing every `test-all`; CI runs both. Nothing here touches the
/// network: the tests use an in-process fake of nym-sdk's message API.
fn test_nym(_args: &[String]) -> Result<(), String> {
    let cargo = cargo();
    let pkg = ["-p", "nym-stream", "--features", "nym"];
    let with = |cmd: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec![cmd[0]];
        v.extend_from_slice(&pkg);
        v.extend_from_slice(&cmd[1..]);
        v
    };
    // One clippy over the facade and the command together: one feature set for the
    // shared tree (two runs with different tokio features re-checked all of nym-sdk's).
    run(
        "clippy (nym)",
        &cargo,
        &[
            "clippy",
            "-p",
            "nym-stream",
            "-p",
            "nym-stream-cli",
            "--features",
            "nym-stream/nym,nym-stream-cli/nym",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // Only the tests that exercise the adapter: every other test binary (the integration
    // tests on the simulator, the API-shape test, the doc tests, which have no nym-only
    // examples) does not change with the feature, is type-checked by the clippy step above
    // (all targets, examples included), and would link the whole nym-sdk tree again.
    run(
        "tests (nym)",
        &cargo,
        &with(&["test", "--lib", "--test", "nym_fake"]),
    )?;
    Ok(())
}
