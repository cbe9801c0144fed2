//! Project automation for nym-stream.
//!
//! `cargo xtask test-all` is the one test command (what CI runs). Run `cargo xtask`
//! without arguments for the list of subcommands.
#![allow(clippy::print_stdout, clippy::print_stderr)]

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
        about: "fmt check, clippy -D warnings, all tests incl. doc tests, build + run every example (what CI runs)",
        run: test_all,
    },
    Task {
        name: "test-nym",
        about: "the `nym` feature of nym-stream (real nym-sdk transport): clippy, offline tests, doc tests, nym_echo build (CI runs it too)",
        run: test_nym,
    },
    Task {
        name: "bench",
        about: "run every benchmark (divan); `--smoke` runs each bench binary for a few iterations only",
        run: bench,
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
    Ok(())
}

fn bench(args: &[String]) -> Result<(), String> {
    let cargo = cargo();
    if args.iter().any(|a| a == "--smoke") {
        // Divan: one sample of one iteration per benchmark is enough to prove it runs.
        return run(
            "bench smoke",
            &cargo,
            &[
                "bench",
                "--workspace",
                "--",
                "--sample-count",
                "1",
                "--sample-size",
                "1",
            ],
        );
    }
    run("bench", &cargo, &["bench", "--workspace"])
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
    run(
        "clippy (nym)",
        &cargo,
        &with(&["clippy", "--all-targets", "--", "-D", "warnings"]),
    )?;
    run("tests (nym)", &cargo, &with(&["test", "--lib", "--tests"]))?;
    run("doc tests (nym)", &cargo, &with(&["test", "--doc"]))?;
    run(
        "build example nym_echo",
        &cargo,
        &with(&["build", "--example", "nym_echo"]),
    )?;
    Ok(())
}
