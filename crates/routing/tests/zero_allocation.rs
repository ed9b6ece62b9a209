//! A lookup allocates nothing. Alone in its test binary: the allocation counter is global, and
//! other tests running in parallel would allocate under it.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use routing::{Builder, Options, PathRule, Request};

#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

#[test]
fn lookups_do_not_allocate() {
    let mut builder = Builder::new(Options::default());
    for i in 0..1000 {
        builder.add(&format!("app{i}.example.com"), PathRule::Prefix(format!("/p{i}")), i).unwrap();
    }
    builder.add("*.example.com", PathRule::Regex("/r/[a-z]+".to_owned()), 1000).unwrap();
    builder.add("db.example.com:5432", PathRule::Connect, 1001).unwrap();
    let table = builder.build();
    let find = |authority, path, connect| table.lookup(&Request { authority, path, connect }).map(|m| *m.value);
    // Warm the regex's per-thread cache first.
    assert_eq!(find("x.example.com", "/r/abc", false), Some(1000));

    let region = stats_alloc::Region::new(GLOBAL);
    assert_eq!(find("APP500.example.com:443", "/p500/x", false), Some(500));
    assert_eq!(find("app500.example.com", "/p500/x", false), Some(500));
    assert_eq!(find("x.example.com", "/r/abc", false), Some(1000));
    assert_eq!(find("nothing.example.org", "/", false), None);
    assert_eq!(find("DB.example.com:5432", "", true), Some(1001));
    let stats = region.change();
    assert_eq!(stats.allocations + stats.reallocations, 0, "{stats:?}");
}
