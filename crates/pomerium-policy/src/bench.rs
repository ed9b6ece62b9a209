//! `pomerium-policy bench`: time per decision for a policy and an input, for the compiled program
//! (what the proxy runs) and for the reference interpreter (what `explain` runs).

use crate::report::{Format, Reporter};
use crate::{Exit, load};
use policy::{Program, reference};
use std::hint::black_box;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    eval: crate::eval::Args,
    /// How long to measure each engine.
    #[arg(long, default_value = "2", value_name = "SECONDS")]
    seconds: f64,
}

pub fn run(args: &Args, reporter: &Reporter) -> Exit {
    let (target, owned) = match load::target_and_input(&args.eval, reporter) {
        Ok(both) => both,
        Err(exit) => return exit,
    };
    let load::Target::Policy(loaded) = target else {
        reporter.message(miette::Severity::Error, "<arguments>", "nothing to time: `--route` names no route");
        return Exit::Usage;
    };
    let input = owned.input(load::now());
    let budget = Duration::from_secs_f64(args.seconds.clamp(0.1, 600.0));
    let compile = measure(budget / 4, || {
        black_box(Program::compile(black_box(&loaded.model)));
    });
    let program = Program::compile(&loaded.model);
    let fast = measure(budget, || {
        black_box(program.evaluate(black_box(&input), &owned.records));
    });
    let slow = measure(budget, || {
        black_box(reference::evaluate(black_box(&loaded.model), black_box(&input), &owned.records));
    });
    match reporter.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "program_ns_per_decision": fast.median,
                "program_ns_p90": fast.p90,
                "reference_ns_per_decision": slow.median,
                "compile_ns": compile.median,
                "tests": program.test_count(),
                "samples": fast.samples,
            })
        ),
        _ => println!(
            "decision (compiled program): {} per decision (median of {} samples, p90 {})\n\
             decision (reference):        {} per decision\n\
             compile:                     {}\n\
             tests after optimization:    {}",
            human(fast.median),
            fast.samples,
            human(fast.p90),
            human(slow.median),
            human(compile.median),
            program.test_count()
        ),
    }
    Exit::Ok
}

struct Measurement {
    median: f64,
    p90: f64,
    samples: usize,
}

/// Runs `f` in batches sized to about a millisecond, for `budget`; nanoseconds per call.
fn measure(budget: Duration, mut f: impl FnMut()) -> Measurement {
    let mut batch = 1usize;
    loop {
        let start = Instant::now();
        for _ in 0..batch {
            f();
        }
        if start.elapsed() >= Duration::from_millis(1) || batch >= 1 << 24 {
            break;
        }
        batch *= 2;
    }
    let mut per_call = Vec::new();
    let end = Instant::now() + budget;
    while Instant::now() < end || per_call.len() < 5 {
        let start = Instant::now();
        for _ in 0..batch {
            f();
        }
        per_call.push(start.elapsed().as_nanos() as f64 / batch as f64);
    }
    per_call.sort_by(f64::total_cmp);
    let at = |q: f64| per_call.get(((per_call.len() - 1) as f64 * q) as usize).copied().unwrap_or_default();
    Measurement { median: at(0.5), p90: at(0.9), samples: per_call.len() }
}

fn human(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{:.2} ms", ns / 1_000_000.0)
    }
}
