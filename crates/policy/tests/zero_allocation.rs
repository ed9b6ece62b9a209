//! Evaluating a compiled program allocates nothing. Its own test binary, with one test, so that
//! no other test allocates while the global allocator's counters are read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use policy::Program;
use policy::contract::OwnedInput;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const RECORDS: &str = r#"{
  "http": {"method": "GET", "path": "/api/users", "ip": "10.1.2.3", "headers": {"Accept": "text/html"}},
  "session": {"id": "s1"},
  "records": [
    {"type": "session", "id": "s1", "data": {"user_id": "u1", "claims": {"groups": ["eng", "ops"]}}},
    {"type": "user", "id": "u1", "data": {"email": "user500@example.com", "claims": {"role": ["admin"]}}},
    {"type": "directory_user", "id": "u1", "data": {"group_ids": ["g1", "g2"]}}
  ]
}"#;

fn compile(text: &str) -> Program {
    let compiled = ppl::compile(text, ppl::Syntax::Text);
    Program::compile(&compiled.policy.unwrap_or_else(|| panic!("{:?}", compiled.errors)))
}

fn now() -> jiff::Timestamp {
    "2026-01-05T10:00:00Z".parse().unwrap()
}

#[test]
fn evaluation_allocates_nothing() {
    let policies = [
        "allow or(email in [\"a@example.com\", \"user500@example.com\", \"b@example.com\", \"c@example.com\", \"d@example.com\", \"e@example.com\", \"f@example.com\", \"g@example.com\", \"h@example.com\"])",
        "allow and(domain is \"example.com\", claim/groups has \"eng\", groups has \"g1\") deny or(http_method is \"DELETE\")",
        "allow or(source_ip [\"10.0.0.0/8\", \"192.168.0.0/16\"], http_path starts_with \"/api/\") deny nor(http_method in [\"GET\", \"HEAD\"], accept)",
        "allow not(email is \"mallory@example.com\", claim/a.b has \"x\") deny and(reject, user is \"u9\")",
        "allow or(claim/role exclude \"guest\", authenticated_user) deny or(cors_preflight, mcp_tool not_in [\"read\"])",
    ];
    let owned = OwnedInput::parse(RECORDS).unwrap();
    let input = owned.input(now());
    for text in policies {
        let program = compile(text);
        let _warm = program.evaluate(&input, &owned.records);
        let region = Region::new(GLOBAL);
        for _ in 0..100 {
            std::hint::black_box(program.evaluate(std::hint::black_box(&input), &owned.records));
        }
        let stats = region.change();
        // The counter works: an allocation in the same region would have been seen.
        let probe = Region::new(GLOBAL);
        std::hint::black_box(vec![0u8; 16]);
        assert!(probe.change().allocations > 0);
        assert_eq!((stats.allocations, stats.reallocations), (0, 0), "allocations while evaluating:\n{text}");
    }
}
