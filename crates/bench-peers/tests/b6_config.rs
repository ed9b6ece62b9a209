//! Benchmark B6's two ways of compiling a config's policies compile the same policies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use bench_peers::b6::{Config, compile_document, compile_each};
use policy::contract::OwnedInput;

#[test]
fn both_ways_compile_every_route() {
    let config = Config::generate(100);
    let each = compile_each(&config.policies).unwrap();
    let document = compile_document(&config.document).unwrap();
    assert_eq!(each.len(), 100);
    assert_eq!(document.len(), 100);
    let now = "2026-01-01T00:00:00Z".parse().unwrap();
    for (i, (a, b)) in each.iter().zip(&document).enumerate() {
        assert_eq!(a.test_count(), b.test_count(), "route {i}");
        // A request the route's policy is about: the same decision from both.
        let request = OwnedInput::parse(&format!(
            r#"{{"http": {{"method": "GET", "path": "/admin{i}/x", "ip": "10.0.{i}.1"}}, "session": {{"id": "s"}},
                "records": [{{"type": "session", "id": "s", "data": {{"user_id": "u"}}}},
                            {{"type": "user", "id": "u", "data": {{"email": "user{i}@example.com"}}}}]}}"#
        ))
        .unwrap();
        let input = request.input(now);
        assert_eq!(a.evaluate(&input, &request.records), b.evaluate(&input, &request.records), "route {i}");
    }
}

#[test]
fn policies_are_distinct() {
    let config = Config::generate(1_000);
    let mut sorted = config.policies.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 1_000);
}
