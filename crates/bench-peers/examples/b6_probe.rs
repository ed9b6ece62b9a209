//! Benchmark B6's counting tool (`benches/b6.sh` drives it): compiles the route policies of a
//! generated config `n` times inside `measured`, the one function callgrind collects in
//! (`--collect-atstart=no --toggle-collect='*measured*'`).
//!
//! ```text
//! b6_probe <each|document|server> <routes> <n>
//! ```

#![allow(clippy::unwrap_used, clippy::panic, reason = "a measuring tool: it fails loudly on inputs it knows")]

use bench_peers::b6::{self, Config};
use std::hint::black_box;
use std::time::Instant;

#[inline(never)]
fn measured(n: u32, compile: &dyn Fn() -> usize) -> usize {
    (0..n).map(|_| black_box(compile())).sum()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [way, routes, n] = args.as_slice() else {
        eprintln!("usage: b6_probe <each|document|server> <routes> <n>");
        std::process::exit(2);
    };
    let config = Config::generate(routes.parse().unwrap());
    let compile: Box<dyn Fn() -> usize> = match way.as_str() {
        "each" => Box::new(|| b6::compile_each(&config.policies).unwrap().len()),
        "document" => Box::new(|| b6::compile_document(&config.document).unwrap().len()),
        "server" => Box::new(|| b6::load_server(&config.document).unwrap()),
        other => panic!("unknown way `{other}`"),
    };
    let n: u32 = n.parse().unwrap();
    let start = Instant::now();
    let compiled = measured(n, &*compile);
    let elapsed = start.elapsed() / n.max(1);
    println!(
        "routes {} bytes {} elapsed_ms {:.3}",
        compiled / n.max(1) as usize,
        config.document.len(),
        elapsed.as_secs_f64() * 1000.0
    );
}
