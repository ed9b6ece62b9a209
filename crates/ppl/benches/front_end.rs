//! The language front end: how long reading, checking and formatting a policy takes.
//!
//! `cargo bench -p ppl --bench front_end`. Inputs: every policy in `policies/` (realistic sizes),
//! and generated policies with 10, 100 and 1,000 allowed users, the shape `allowed_users` routes
//! take, to show that the cost grows linearly with the size of the policy.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmarks fail loudly on bad fixtures")]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ppl::Syntax;
use std::hint::black_box;
use std::path::Path;

fn example_policies() -> Vec<(String, Syntax, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let mut policies: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            if path.to_str()?.contains(".test.") {
                return None; // a test file, not a policy
            }
            let syntax = Syntax::from_extension(path.extension()?.to_str()?)?;
            let name = path.file_name()?.to_str()?.to_owned();
            Some((name, syntax, std::fs::read_to_string(&path).unwrap()))
        })
        .collect();
    policies.sort_by(|a, b| a.0.cmp(&b.0));
    policies
}

fn users_policy(users: usize) -> String {
    let mut text = String::from("allow:\n  or:\n    - email:\n        in:\n");
    for i in 0..users {
        text.push_str(&format!("          - user{i}@example.com\n"));
    }
    text.push_str("deny:\n  or:\n    - http_path:\n        starts_with: /admin\n");
    text
}

fn bench(c: &mut Criterion) {
    let examples = example_policies();
    let total: usize = examples.iter().map(|(_, _, text)| text.len()).sum();
    let mut group = c.benchmark_group("examples");
    group.throughput(Throughput::Bytes(total as u64));
    group.bench_function("compile all", |b| {
        b.iter(|| {
            for (_, syntax, text) in &examples {
                black_box(ppl::compile(black_box(text), *syntax));
            }
        })
    });
    group.bench_function("format all", |b| {
        b.iter(|| {
            for (_, syntax, text) in &examples {
                black_box(ppl::format::format_source(black_box(text), *syntax, *syntax).unwrap());
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("allowed users");
    for users in [10, 100, 1000] {
        let yaml = users_policy(users);
        let text = ppl::format::format_source(&yaml, Syntax::Yaml, Syntax::Text).unwrap().text;
        let json = ppl::format::format_source(&yaml, Syntax::Yaml, Syntax::Json).unwrap().text;
        group.throughput(Throughput::Elements(users as u64));
        for (syntax, source) in [(Syntax::Yaml, &yaml), (Syntax::Json, &json), (Syntax::Text, &text)] {
            group.bench_with_input(BenchmarkId::new(format!("compile {}", syntax.name()), users), source, |b, s| {
                b.iter(|| black_box(ppl::compile(black_box(s), syntax)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
