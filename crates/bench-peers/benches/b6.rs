//! Benchmark B6, the policy part, wall time: compiling the route policies of a config with 100,
//! 1,000 and 10,000 routes (`bench_peers::b6`), each policy from its own text (`each`) or the
//! document parsed once and each route's `policy:` lowered from the tree (`document`).
//!
//! `cargo bench -p bench-peers --bench b6`; results in `target/criterion/b6_<routes>/<way>/`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: it fails loudly on inputs it knows")]

use bench_peers::b6::{self, Config};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

fn compile(c: &mut Criterion) {
    for routes in b6::SIZES {
        let config = Config::generate(routes);
        let mut group = c.benchmark_group(format!("b6_{routes}"));
        group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
        group.bench_function("each", |b| b.iter(|| b6::compile_each(black_box(&config.policies)).unwrap()));
        group.bench_function("document", |b| b.iter(|| b6::compile_document(black_box(&config.document)).unwrap()));
        group.finish();
    }
}

criterion_group!(b6_group, compile);
criterion_main!(b6_group);
