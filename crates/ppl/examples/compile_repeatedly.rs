//! Compiles one policy N times; run under callgrind to count instructions per compile, which is
//! stable on a noisy machine where wall time is not. See `benches/instructions.sh`.
//!
//! `cargo run --release -p ppl --example compile_repeatedly -- FILE yaml|json|text N`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a measuring tool; bad arguments end it"
)]

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let source = std::fs::read_to_string(&args[1]).expect("policy file");
    let syntax = match args[2].as_str() {
        "yaml" => ppl::Syntax::Yaml,
        "json" => ppl::Syntax::Json,
        _ => ppl::Syntax::Text,
    };
    let times: usize = args[3].parse().expect("count");
    for _ in 0..times {
        let compiled = ppl::compile(std::hint::black_box(&source), syntax);
        assert!(compiled.errors.is_empty());
        std::hint::black_box(compiled);
    }
}
