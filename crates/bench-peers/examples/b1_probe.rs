//! Benchmark B1's counting tool (`benches/b1.sh` drives it).
//!
//! ```text
//! b1_probe list                                  every case and probe, one `case probe` a line
//! b1_probe run <engine> <case> <probe> <n>       n decisions; prints allocations per decision
//! b1_probe report <counts.tsv> [<criterion run dir>...]   the markdown tables of BENCHMARKS.md
//! ```
//!
//! `run` sets the engine up for the case and probe (compiling, loading, building the input: not
//! counted), makes one decision to warm up, then makes `n` decisions inside `measured`, the one
//! function callgrind collects in (`--collect-atstart=no --toggle-collect='*measured*'`), so that
//! its instruction count divided by `n` is the cost of one decision. Engines: `ours`, `regorus`
//! (the interpreter), `rvm` (regorus's bytecode VM, answering host calls as it suspends),
//! `rvm_preloaded` (the VM run to completion with the answers queued in advance) and `cedar`. Allocations are counted by
//! `stats_alloc` around the same loop.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a measuring tool: it fails loudly on cases it knows"
)]

use bench_peers::b1::{self, Case, Probe};
use bench_peers::cedar_peer::CedarPeer;
use bench_peers::ours::Ours;
use bench_peers::regorus_peer::{PomeriumInput, RegorusPeer, action_result};
use bench_peers::regorus_vm::{RegorusVm, VmMode};
use regorus::Value as RegoValue;
use serde_json::Value as Json;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const ENGINES: [&str; 5] = ["ours", "regorus", "rvm", "rvm_preloaded", "cedar"];

/// The loop callgrind counts: `n` calls of `decide`.
#[inline(never)]
fn measured<T>(n: u64, decide: &mut dyn FnMut() -> T) {
    for _ in 0..n {
        black_box(decide());
    }
}

/// Warms up, then runs `n` decisions; allocations and bytes per decision.
fn count<T>(n: u64, mut decide: impl FnMut() -> T) -> (f64, f64) {
    black_box(decide());
    let region = Region::new(GLOBAL);
    measured(n, &mut decide);
    let stats = region.change();
    let per = |x: usize| x as f64 / n.max(1) as f64;
    (per(stats.allocations + stats.reallocations), per(stats.bytes_allocated))
}

fn rego_input(probe: &Probe) -> PomeriumInput {
    PomeriumInput::from_contract(&probe.facts.contract_input(), b1::NOW.parse().unwrap()).unwrap()
}

fn module(case: &Case) -> String {
    policy::rego::emit(&ppl::compile(&case.ppl, ppl::Syntax::Yaml).ast.unwrap()).unwrap()
}

/// Refuses to measure an engine that does not reach the probe's outcome (the agreement test
/// checks it too, in a debug build; this checks the build being measured).
fn check(engine: &str, case: &Case, probe: &Probe, allowed: bool) {
    assert_eq!(allowed, probe.allowed, "{engine} decides {} {} wrongly", case.name(), probe.label);
}

/// Pomerium's outcome of the Rego engines' `allow` and `deny` values.
fn rego_allowed(decision: &(RegoValue, RegoValue)) -> bool {
    let (allow, deny) = (action_result(&decision.0).unwrap(), action_result(&decision.1).unwrap());
    allow.value && !deny.value
}

fn run(engine: &str, case: &Case, probe: &Probe, n: u64) -> (f64, f64) {
    match engine {
        "ours" => {
            let ours = Ours::new(&case.ppl, &probe.facts).unwrap();
            check(engine, case, probe, ours.allowed());
            let input = ours.input();
            count(n, || ours.program.evaluate(black_box(&input), &ours.request.records))
        }
        "regorus" => {
            let mut peer = RegorusPeer::new(&module(case)).unwrap();
            let input = peer.prepare(&rego_input(probe));
            check(engine, case, probe, rego_allowed(&peer.evaluate_prepared(&input).unwrap()));
            count(n, || peer.evaluate_prepared(black_box(&input)).unwrap())
        }
        "rvm" | "rvm_preloaded" => {
            let mode = if engine == "rvm" { VmMode::Suspendable } else { VmMode::Preloaded };
            let mut vm = RegorusVm::new(&module(case), mode).unwrap();
            let input = vm.prepare(&rego_input(probe)).unwrap();
            check(engine, case, probe, rego_allowed(&vm.evaluate_prepared(&input).unwrap()));
            count(n, || vm.evaluate_prepared(black_box(&input)).unwrap())
        }
        "cedar" => {
            let cedar = CedarPeer::new(&case.cedar, &probe.facts).unwrap();
            check(engine, case, probe, cedar.allowed().unwrap());
            count(n, || cedar.decide())
        }
        other => panic!("unknown engine `{other}` (one of {ENGINES:?})"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["list"] => {
            for case in b1::cases() {
                for probe in &case.probes {
                    println!("{} {}", case.name(), probe.label);
                }
            }
        }
        ["run", engine, case, probe, n] => {
            let case = b1::find(case).unwrap_or_else(|| panic!("no case `{case}`"));
            let probe = case.probe(probe).unwrap_or_else(|| panic!("no probe `{probe}`"));
            let (allocations, bytes) = run(engine, &case, probe, n.parse().unwrap());
            println!("allocations {allocations} bytes {bytes}");
        }
        ["report", counts, runs @ ..] => print!("{}", report(counts, runs)),
        _ => {
            eprintln!(
                "usage: b1_probe list | run <engine> <case> <probe> <n> | report <counts.tsv> [<criterion dir>...]"
            );
            std::process::exit(2);
        }
    }
}

/// What was measured of one case, probe and engine.
#[derive(Default, Clone, Copy)]
struct Figures {
    instructions: Option<f64>,
    allocations: Option<f64>,
    /// Median of the runs' medians, in ns.
    median_ns: Option<f64>,
    /// The runs' medians: lowest and highest.
    range_ns: Option<(f64, f64)>,
}

type Key = (String, String, String);

/// Reads `case probe engine instructions allocations` lines, and each criterion run directory's
/// `b1_<family>_<size>_<probe>/<engine>/new/estimates.json`.
fn read(counts: &str, runs: &[&str]) -> BTreeMap<Key, Figures> {
    let mut figures: BTreeMap<Key, Figures> = BTreeMap::new();
    let text = std::fs::read_to_string(counts).unwrap_or_else(|e| panic!("{counts}: {e}"));
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [case, probe, engine, instructions, allocations] = fields[..] else { panic!("bad line `{line}`") };
        let entry = figures.entry((case.to_owned(), probe.to_owned(), engine.to_owned())).or_default();
        entry.instructions = instructions.parse().ok();
        entry.allocations = allocations.parse().ok();
    }
    for case in b1::cases() {
        for probe in &case.probes {
            for engine in ENGINES {
                let mut medians: Vec<f64> = runs
                    .iter()
                    .filter_map(|dir| {
                        let path = format!(
                            "{dir}/b1_{}_{}_{}/{engine}/new/estimates.json",
                            case.family, case.size, probe.label
                        );
                        let json: Json = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
                        json["median"]["point_estimate"].as_f64()
                    })
                    .collect();
                if medians.is_empty() {
                    continue;
                }
                medians.sort_by(f64::total_cmp);
                let entry = figures.entry((case.name(), probe.label.to_owned(), engine.to_owned())).or_default();
                entry.median_ns = Some(medians[medians.len() / 2]);
                entry.range_ns = Some((medians[0], medians[medians.len() - 1]));
            }
        }
    }
    figures
}

fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.round());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn time(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 10_000.0 {
        format!("{:.0} µs", ns / 1_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.1} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn or_dash(x: Option<String>) -> String {
    x.unwrap_or_else(|| "–".to_owned())
}

fn report(counts: &str, runs: &[&str]) -> String {
    let figures = read(counts, runs);
    let get = |case: &Case, probe: &str, engine: &str| {
        figures.get(&(case.name(), probe.to_owned(), engine.to_owned())).copied().unwrap_or_default()
    };
    let mut out = String::new();
    let _ = writeln!(out, "Instructions per decision (callgrind) and the peers' ratio to ours (theirs ÷ ours):\n");
    let _ = writeln!(out, "| case | probe | ours | regorus | ÷ | VM | ÷ | VM preloaded | ÷ | Cedar | ÷ |");
    let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let ratio = |theirs: Option<f64>, ours: Option<f64>| match (theirs, ours) {
        (Some(t), Some(o)) if o > 0.0 => Some(format!("{:.0}×", t / o)),
        _ => None,
    };
    let all = b1::cases();
    let measured = |case: &Case, probe: &str| {
        ENGINES.iter().any(|e| figures.contains_key(&(case.name(), probe.to_owned(), (*e).to_owned())))
    };
    for case in &all {
        for probe in case.probes.iter().filter(|p| measured(case, p.label)) {
            let counts = ENGINES.map(|e| get(case, probe.label, e).instructions);
            let ours = counts[0];
            let mut row = format!("| {} | {} | {} |", case.name(), probe.label, or_dash(ours.map(thousands)));
            for theirs in &counts[1..] {
                let _ = write!(row, " {} | {} |", or_dash(theirs.map(thousands)), or_dash(ratio(*theirs, ours)));
            }
            let _ = writeln!(out, "{row}");
        }
    }
    let _ = writeln!(
        out,
        "\nWall time, median of the runs' criterion medians (lowest–highest run), and heap allocations per decision:\n"
    );
    let _ = writeln!(
        out,
        "| case | probe | ours | regorus | VM | VM preloaded | Cedar | allocations: ours / regorus / VM / VM preloaded / Cedar |"
    );
    let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for case in &all {
        for probe in case.probes.iter().filter(|p| measured(case, p.label)) {
            let cells = ENGINES.map(|e| {
                let f = get(case, probe.label, e);
                or_dash(f.median_ns.map(|m| match f.range_ns {
                    Some((lo, hi)) if runs.len() > 1 => format!("{} ({}–{})", time(m), time(lo), time(hi)),
                    _ => time(m),
                }))
            });
            let allocations =
                ENGINES.map(|e| or_dash(get(case, probe.label, e).allocations.map(|a| format!("{a:.0}"))));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                case.name(),
                probe.label,
                cells.join(" | "),
                allocations.join(" / ")
            );
        }
    }
    out.push_str(&targets(&all, &get));
    out
}

/// Whether each target holds, with the worst case.
fn targets(all: &[Case], get: &dyn Fn(&Case, &str, &str) -> Figures) -> String {
    let mut out = String::from("\nTargets (ours):\n\n");
    let pairs: Vec<(&Case, &str)> = all.iter().flat_map(|c| c.probes.iter().map(move |p| (c, p.label))).collect();
    // The worst value of `metric` over the probes (the highest, or the lowest when `at_least`),
    // and whether it is within `limit`.
    let mut line = |what: &str,
                    limit: f64,
                    at_least: bool,
                    metric: &dyn Fn(&Case, &str) -> Option<f64>,
                    show: &dyn Fn(f64) -> String| {
        let values = pairs.iter().filter_map(|(c, p)| metric(c, p).map(|v| (v, format!("{} {p}", c.name()))));
        let worst = if at_least {
            values.min_by(|a, b| a.0.total_cmp(&b.0))
        } else {
            values.max_by(|a, b| a.0.total_cmp(&b.0))
        };
        let _ = match worst {
            Some((v, at)) => {
                let met = if at_least { v >= limit } else { v <= limit };
                writeln!(out, "- {what}: {} (worst: {}, {at})", if met { "**met**" } else { "**missed**" }, show(v))
            }
            None => writeln!(out, "- {what}: not measured"),
        };
    };
    let instructions = |c: &Case, p: &str, e: &str| get(c, p, e).instructions;
    let times = |v: f64| format!("{v:.1}×");
    line(
        "≤ 1/10 of Cedar's instructions",
        10.0,
        true,
        &|c, p| Some(instructions(c, p, "cedar")? / instructions(c, p, "ours")?),
        &|v| format!("Cedar {v:.1}× ours"),
    );
    line(
        "≤ 1/5 of regorus VM's instructions (the faster of its two modes)",
        5.0,
        true,
        &|c, p| {
            let vm = match (instructions(c, p, "rvm"), instructions(c, p, "rvm_preloaded")) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b)?,
            };
            Some(vm / instructions(c, p, "ours")?)
        },
        &|v| format!("the VM {v:.1}× ours"),
    );
    line("0 heap allocations per decision", 0.0, false, &|c, p| get(c, p, "ours").allocations, &|v| format!("{v:.2}"));
    line("median ≤ 250 ns", 250.0, false, &|c, p| get(c, p, "ours").median_ns, &|v| format!("{v:.0} ns"));
    let growth = |c: &Case, p: &str, of: &dyn Fn(Figures) -> Option<f64>| {
        if c.size != 100 {
            return None;
        }
        let one = b1::find(&format!("{}/1", c.family))?;
        Some(of(get(c, p, "ours"))? / of(get(&one, p, "ours"))?)
    };
    line("100 values ≤ 1.5× 1 value (instructions)", 1.5, false, &|c, p| growth(c, p, &|f| f.instructions), &times);
    line("100 values ≤ 1.5× 1 value (wall time)", 1.5, false, &|c, p| growth(c, p, &|f| f.median_ns), &times);
    out
}
