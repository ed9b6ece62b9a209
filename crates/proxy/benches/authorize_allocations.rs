//! Heap allocations per call of B2 and B5 (`benches/authorize.rs`), counted by `stats_alloc`
//! as in `crates/routing/tests/zero_allocation.rs`. A target of its own, so that the counting
//! allocator does not slow the timed benchmark. Prints allocations, deallocations and bytes
//! allocated per call, averaged over many calls after a warm-up.
//!
//! `cargo bench -p proxy --bench authorize_allocations`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmarks fail loudly on bad fixtures"
)]

mod support;

use authenticate::assertion::{IssuerFormat, assertion_claims};
use authenticate::signing::SigningKey;
use proxy::authorize::authorize;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::hint::black_box;
use support::{SHARED_KEY, TARGET_ROUTE, host};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CALLS: usize = 10_000;

fn report(name: &str, calls: usize, stats: stats_alloc::Stats) {
    let per = |n: usize| n as f64 / calls as f64;
    println!(
        "{name:<44} allocations {:>7.2}  deallocations {:>7.2}  reallocations {:>5.2}  bytes allocated {:>8.1}",
        per(stats.allocations),
        per(stats.deallocations),
        per(stats.reallocations),
        per(stats.bytes_allocated),
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fixture = rt.block_on(support::fixture(support::ROUTES)).unwrap();
    let authority = host(TARGET_ROUTE);
    let headers = support::headers(Some(&fixture.alice_cookie), "text/html").unwrap();
    let probe = support::probe(&authority, &headers);
    let call = || authorize(&fixture.runtime, black_box(&probe));
    support::assert_allowed(&rt.block_on(call()), &authority);

    rt.block_on(async {
        for _ in 0..100 {
            fixture.authn.forget_assertions();
            black_box(call().await);
        }

        let region = Region::new(GLOBAL);
        for _ in 0..CALLS {
            fixture.authn.forget_assertions();
            black_box(call().await);
        }
        report("b2 fresh_signature (with forget_assertions)", CALLS, region.change());

        let mut forget = stats_alloc::Stats::default();
        for _ in 0..CALLS {
            black_box(call().await);
            let region = Region::new(GLOBAL);
            fixture.authn.forget_assertions();
            let change = region.change();
            forget.allocations += change.allocations;
            forget.deallocations += change.deallocations;
            forget.reallocations += change.reallocations;
            forget.bytes_allocated += change.bytes_allocated;
        }
        report("b2 forget_assertions (one entry)", CALLS, forget);

        let region = Region::new(GLOBAL);
        for _ in 0..CALLS {
            black_box(call().await);
        }
        report("b2 cached_assertion", CALLS, region.change());

        let region = Region::new(GLOBAL);
        for _ in 0..CALLS {
            let token = authenticate::cookie::session_token(black_box(&headers), None, "_pomerium").unwrap();
            black_box(authenticate::handle::SessionHandle::from_jwt(&token, &SHARED_KEY).unwrap());
        }
        report("b2 part_session_handle", CALLS, region.change());
    });

    let key = SigningKey::derive(&SHARED_KEY).unwrap();
    let records = fixture.records.read();
    let subject = support::alice_subject(&records);
    let now = jiff::Timestamp::now().as_second();
    let claims = assertion_claims(&subject, &authority, IssuerFormat::Hostname, &[], now);
    black_box(key.sign(&claims).unwrap());

    let region = Region::new(GLOBAL);
    for _ in 0..CALLS {
        let claims = assertion_claims(black_box(&subject), &authority, IssuerFormat::Hostname, &[], now);
        black_box(key.sign(&claims).unwrap());
    }
    report("b5 claims_and_signature", CALLS, region.change());

    let region = Region::new(GLOBAL);
    for _ in 0..CALLS {
        black_box(assertion_claims(black_box(&subject), &authority, IssuerFormat::Hostname, &[], now));
    }
    report("b5 claims_only", CALLS, region.change());

    let region = Region::new(GLOBAL);
    for _ in 0..CALLS {
        black_box(key.sign(black_box(&claims)).unwrap());
    }
    report("b5 signature_only", CALLS, region.change());
    drop(records);
}
