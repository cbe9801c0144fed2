//! The data-path goals of issue 16, judged from the figures of one `cargo xtask bench`
//! run: every row says what was measured, the goal and whether it was met.

/// One callgrind figure: instructions per MiB moved.
pub(crate) struct CallgrindFigure {
    /// Over the zero-cost loopback transport (`true`) or the instant simulator.
    pub(crate) loopback: bool,
    pub(crate) streams: u64,
    pub(crate) per_mib: u64,
}

/// What the goals are judged on.
pub(crate) struct Figures<'a> {
    /// Divan medians of the throughput bench, ns: mux over loopback, over the instant
    /// simulator, yamux over a duplex pipe.
    pub(crate) loopback_ns: Option<f64>,
    pub(crate) instant_ns: Option<f64>,
    pub(crate) yamux_ns: Option<f64>,
    /// Bytes one throughput sample moves (256 MiB).
    pub(crate) throughput_bytes: f64,
    /// The streams bench's table.
    pub(crate) streams: &'a str,
    /// The goodput bench's table.
    pub(crate) goodput: &'a str,
    /// `None` without `--callgrind`.
    pub(crate) callgrind: Option<&'a [CallgrindFigure]>,
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

/// The cells of the first markdown row `matches` accepts.
fn row_cells(table: &str, matches: impl Fn(&str) -> bool) -> Option<Vec<&str>> {
    let line = table.lines().find(|l| matches(l))?;
    Some(line.split('|').map(str::trim).collect())
}

/// The leading number of a cell ("269.4 MiB/s aggregate" → 269.4, "1.069×" → 1.069).
fn leading_number(cell: &str) -> Option<f64> {
    let token = cell.split_whitespace().next()?;
    token.trim_end_matches(['×', '%']).parse().ok()
}

const MISSING: &str = "(not in this run's output)";

/// The goals table, markdown.
pub(crate) fn table(f: &Figures<'_>) -> String {
    let mut t = String::from("| figure | measured | goal | verdict |\n|---|---|---|---|\n");
    let mut row = |figure: &str, measured: String, goal: &str, met: Option<bool>| {
        let v = met.map_or("–", verdict);
        t.push_str(&format!("| {figure} | {measured} | {goal} | {v} |\n"));
    };
    // 1, 2: one stream against yamux.
    for (name, ns, goal) in [
        (
            "256 MiB one stream, mux over loopback vs yamux over duplex",
            f.loopback_ns,
            1.0,
        ),
        (
            "same, mux over the instant simulator vs yamux over duplex",
            f.instant_ns,
            0.7,
        ),
    ] {
        match (ns, f.yamux_ns) {
            (Some(ours), Some(yamux)) => {
                let ratio = yamux / ours;
                row(
                    name,
                    format!(
                        "{ratio:.2}× ({:.1} ms vs {:.1} ms)",
                        ours / 1e6,
                        yamux / 1e6
                    ),
                    &format!("≥ {goal:.1}×"),
                    Some(ratio >= goal),
                );
            }
            _ => row(name, MISSING.into(), &format!("≥ {goal:.1}×"), None),
        }
    }
    // 3, 4: callgrind.
    match f.callgrind {
        Some(cg) => {
            let get = |loopback: bool, streams: u64| {
                cg.iter()
                    .find(|c| c.loopback == loopback && c.streams == streams)
                    .map(|c| c.per_mib as f64)
            };
            match (get(false, 1), get(true, 1)) {
                (Some(sim), loop1) => row(
                    "callgrind instructions per MiB, 1 stream (instant simulator)",
                    format!(
                        "{:.2} M{}",
                        sim / 1e6,
                        loop1.map_or(String::new(), |l| format!(
                            " (over loopback: {:.2} M)",
                            l / 1e6
                        ))
                    ),
                    "≤ 2.0 M",
                    Some(sim <= 2.0e6),
                ),
                _ => row(
                    "callgrind instructions per MiB, 1 stream",
                    MISSING.into(),
                    "≤ 2.0 M",
                    None,
                ),
            }
            match (get(false, 1), get(false, 100)) {
                (Some(one), Some(hundred)) => {
                    let ratio = hundred / one;
                    let on_loopback = match (get(true, 1), get(true, 100)) {
                        (Some(a), Some(b)) => format!(" (over loopback: {:.2}×)", b / a),
                        _ => String::new(),
                    };
                    row(
                        "callgrind instructions per MiB, 100 streams vs 1 stream",
                        format!(
                            "{ratio:.2}× ({:.2} M / {:.2} M){on_loopback}",
                            hundred / 1e6,
                            one / 1e6
                        ),
                        "≤ 1.15×",
                        Some(ratio <= 1.15),
                    );
                }
                _ => row(
                    "callgrind, 100 streams vs 1 stream",
                    MISSING.into(),
                    "≤ 1.15×",
                    None,
                ),
            }
        }
        None => {
            for (name, goal) in [
                ("callgrind instructions per MiB, 1 stream", "≤ 2.0 M"),
                (
                    "callgrind instructions per MiB, 100 streams vs 1 stream",
                    "≤ 1.15×",
                ),
            ] {
                row(
                    name,
                    "not measured (run with `--callgrind`)".into(),
                    goal,
                    None,
                );
            }
        }
    }
    // 5: many streams against one, same network (instant simulator, real clock).
    let active =
        row_cells(f.streams, |l| l.starts_with("| active")).and_then(|c| leading_number(c.get(3)?));
    match (active, f.instant_ns) {
        (Some(mib_s), Some(ns)) => {
            let one = f.throughput_bytes / (1 << 20) as f64 / (ns / 1e9);
            let ratio = mib_s / one;
            row(
                "10,000 streams × 64 KiB aggregate vs 1 stream (instant simulator)",
                format!("{ratio:.2}× ({mib_s:.0} MiB/s vs {one:.0} MiB/s)"),
                "≥ 0.8×",
                Some(ratio >= 0.8),
            );
        }
        _ => row(
            "10,000 streams × 64 KiB aggregate vs 1 stream",
            MISSING.into(),
            "≥ 0.8×",
            None,
        ),
    }
    // 6: idle memory, per end (the bench measures both ends together).
    let idle =
        row_cells(f.streams, |l| l.starts_with("| idle")).and_then(|c| leading_number(c.get(4)?));
    match idle {
        Some(pair) => {
            let per_end = pair / 2.0;
            row(
                "idle stream, resident bytes per end",
                format!("{per_end:.0} B"),
                "≤ 1,024 B",
                Some(per_end <= 1024.0),
            );
        }
        None => row(
            "idle stream, resident bytes per end",
            MISSING.into(),
            "≤ 1,024 B",
            None,
        ),
    }
    // 7: goodput and packets, bulk on the realistic (faithful) preset at 1 % loss.
    let bulk = row_cells(f.goodput, |l| {
        l.starts_with("| faithful | bulk") && l.contains("| ours") && l.contains("| 1 % |")
    });
    let figures = bulk
        .as_ref()
        .and_then(|c| Some((leading_number(c.get(6)?)?, leading_number(c.get(7)?)?)));
    match figures {
        Some((goodput, ideal)) => row(
            "goodput and packets, 8 MiB bulk on the realistic preset, 1 % loss",
            format!("{goodput:.1} % / {ideal:.3}× ideal"),
            "no worse than 90 % / 1.08×",
            Some(goodput >= 90.0 && ideal <= 1.08),
        ),
        None => row(
            "goodput and packets on the realistic preset",
            MISSING.into(),
            "90 % / 1.08×",
            None,
        ),
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAMS: &str = "| scenario | streams | figure | per stream | goal |\n|---|---|---|---|---|\n\
        | active, 64 KiB each, instant preset | 10000 | 270.5 MiB/s aggregate (median of 3: 2.31 s) | peak RSS added 80.1 KiB | – |\n\
        | idle, established, both ends held | 10000 (live table entries: 20000) | RSS added 23.7 MiB | 2486 B (both ends together) | ≤ 2048 B: **MISSED** |\n";
    const GOODPUT: &str = "| faithful | bulk 8192 KiB | ours (default config) | 0 % | 5620 (5485 + 135) | 93.1 % | 1.048× | 0.02 | 110.3 | bytes verified |\n\
        | faithful | bulk 8192 KiB | ours (default config) | 1 % | 5763 (5603 + 160) | 90.7 % | 1.069× | 0.02 | 113.4 | bytes verified |\n";

    #[test]
    fn every_goal_is_judged_from_the_bench_output() {
        let cg = [
            CallgrindFigure {
                loopback: false,
                streams: 1,
                per_mib: 4_000_000,
            },
            CallgrindFigure {
                loopback: false,
                streams: 100,
                per_mib: 4_400_000,
            },
        ];
        let t = table(&Figures {
            loopback_ns: Some(40e6),
            instant_ns: Some(130e6),
            yamux_ns: Some(44e6),
            throughput_bytes: (256u64 << 20) as f64,
            streams: STREAMS,
            goodput: GOODPUT,
            callgrind: Some(&cg),
        });
        let rows: Vec<&str> = t.lines().skip(2).collect();
        assert_eq!(rows.len(), 7, "{t}");
        assert!(
            rows[0].contains("1.10×") && rows[0].ends_with("| met |"),
            "{t}"
        );
        assert!(
            rows[1].contains("0.34×") && rows[1].ends_with("**missed** |"),
            "{t}"
        );
        assert!(
            rows[2].contains("4.00 M") && rows[2].ends_with("**missed** |"),
            "{t}"
        );
        assert!(
            rows[3].contains("1.10×") && rows[3].ends_with("| met |"),
            "{t}"
        );
        // 256 MiB in 130 ms is 1969 MiB/s; 270.5 / 1969 = 0.14.
        assert!(
            rows[4].contains("0.14×") && rows[4].ends_with("**missed** |"),
            "{t}"
        );
        assert!(
            rows[5].contains("1243 B") && rows[5].ends_with("**missed** |"),
            "{t}"
        );
        assert!(
            rows[6].contains("90.7 % / 1.069×") && rows[6].ends_with("| met |"),
            "{t}"
        );
    }

    #[test]
    fn missing_figures_are_said_not_judged() {
        let t = table(&Figures {
            loopback_ns: None,
            instant_ns: None,
            yamux_ns: None,
            throughput_bytes: 0.0,
            streams: "",
            goodput: "",
            callgrind: None,
        });
        assert_eq!(t.lines().skip(2).count(), 7, "{t}");
        assert!(!t.contains("met |"), "nothing judged without figures: {t}");
    }
}
