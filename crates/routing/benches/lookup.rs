//! B3: route lookup with 100, 1,000 and 10,000 routes, for a request that hits a route in the
//! middle (benchmarks.md). Two shapes: every route on its own host (a typical config), and every
//! route on one host with its own path prefix (the worst case for a per-host scan).
//!
//! `cargo bench -p routing --bench lookup`; instructions: `benches/b3.sh`.

#![allow(clippy::unwrap_used, reason = "benchmarks fail loudly on bad fixtures")]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use routing::{Request, RouteTable};
use std::hint::black_box;

#[path = "../examples/shapes.rs"]
mod shapes;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("b3_route_lookup");
    for shape in shapes::SHAPES {
        for routes in [100, 1_000, 10_000] {
            let (table, authority, path): (RouteTable<usize>, String, String) = shapes::build(shape, routes);
            let request = Request { authority: &authority, path: &path, connect: false };
            assert_eq!(table.lookup(&request).map(|m| *m.value), Some(routes / 2));
            group.bench_with_input(BenchmarkId::new(shape, routes), &request, |b, request| {
                b.iter(|| black_box(&table).lookup(black_box(request)).map(|m| *m.value))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
