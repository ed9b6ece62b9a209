//! Benchmark B6's counting tool (`benches/b6.sh` drives it): compiles the route policies of a
//! generated config `n` times inside `measured`, the one function callgrind collects in
//! (`--collect-atstart=no --toggle-collect='*measured*'`).
//!
//! ```text
//! b6_probe <each|document|server|reload|phases> <routes> <n>
//! ```
//!
//! `reload` is the server's whole path from the file to a serving runtime: the file read, loaded,
//! built into a runtime with upstream clients kept across reloads (as the server keeps them), the
//! previous runtime swapped out and dropped. `phases` runs `reload` `n` times and prints the
//! median of each phase (read, YAML parse alone, `config::load`, `Runtime::build`, drop).

#![allow(clippy::unwrap_used, clippy::panic, reason = "a measuring tool: it fails loudly on inputs it knows")]

use bench_peers::b6::{self, Config, Current};
use std::hint::black_box;
use std::time::{Duration, Instant};

#[inline(never)]
fn measured(n: u32, compile: &dyn Fn() -> usize) -> usize {
    (0..n).map(|_| black_box(compile())).sum()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [way, routes, n] = args.as_slice() else {
        eprintln!("usage: b6_probe <each|document|server|reload|phases> <routes> <n>");
        std::process::exit(2);
    };
    let config = Config::generate(routes.parse().unwrap());
    let n: u32 = n.parse().unwrap();
    let path = std::env::temp_dir().join(format!("b6-probe-{}.yaml", std::process::id()));
    std::fs::write(&path, &config.document).unwrap();
    let environment = b6::environment();
    let current = Current::default();
    if way == "phases" {
        phases(&path, &environment, &current, n);
        std::fs::remove_file(&path).unwrap();
        return;
    }
    let compile: Box<dyn Fn() -> usize> = match way.as_str() {
        "each" => Box::new(|| b6::compile_each(&config.policies).unwrap().len()),
        "document" => Box::new(|| b6::compile_document(&config.document).unwrap().len()),
        "server" => Box::new(|| b6::load_server(&config.document).unwrap()),
        "reload" => Box::new(|| b6::reload(&path, &environment, &current).unwrap()),
        other => panic!("unknown way `{other}`"),
    };
    let start = Instant::now();
    let compiled = measured(n, &*compile);
    let elapsed = start.elapsed() / n.max(1);
    std::fs::remove_file(&path).unwrap();
    println!(
        "routes {} bytes {} elapsed_ms {:.3}",
        compiled / n.max(1) as usize,
        config.document.len(),
        elapsed.as_secs_f64() * 1000.0
    );
}

/// Prints the median of each phase over `n` reloads.
fn phases(path: &std::path::Path, environment: &proxy::runtime::Environment, current: &Current, n: u32) {
    let runs: Vec<b6::Phases> = (0..n.max(1)).map(|_| b6::reload_phases(path, environment, current).unwrap()).collect();
    let median = |phase: fn(&b6::Phases) -> Duration| {
        let mut times: Vec<Duration> = runs.iter().map(phase).collect();
        times.sort();
        times.get(times.len() / 2).copied().unwrap_or_default().as_secs_f64() * 1000.0
    };
    println!(
        "read_ms {:.3} parse_ms {:.3} load_ms {:.3} build_ms {:.3} drop_ms {:.3}",
        median(|p| p.read),
        median(|p| p.parse),
        median(|p| p.load),
        median(|p| p.build),
        median(|p| p.drop)
    );
}
