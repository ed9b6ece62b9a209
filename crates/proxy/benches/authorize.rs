//! B2, the full authorize evaluation in Pomerium's `BenchmarkEvaluate` shape, and B5, the
//! identity assertion (`shared/spec/benchmarks.md`).
//!
//! B2: [`proxy::authorize::authorize`] for a request to route 50 of 100 (`allowed_users`,
//! `pass_identity_headers`, `Authorization: Bearer ${pomerium.jwt}`) carrying Alice's session
//! cookie; her session and user are in an in-memory databroker that the policy's record cache
//! follows (`support/mod.rs`). Every call does the whole step: the route lookup, the cookie and
//! its HS256 session handle, the session's freshness against the cache, the policy, the identity
//! assertion, the identity headers and the header template. Two cases:
//! - `fresh_signature`: `Authn::forget_assertions` before every call, so every call signs the
//!   assertion (ES256); `forget_assertions_one_entry` measures that call alone, to subtract;
//! - `cached_assertion`: the assertion signed for (session, host, key) is reused.
//!
//! The calls run on a Tokio current-thread runtime, `block_on` once per batch of iterations
//! (`iter_custom`), so the executor's entry is not counted per call; `cached_assertion_block_on_each`
//! shows what one `block_on` per call adds.
//!
//! `part_session_handle` is one part of every call, for the breakdown: the cookie read and the
//! session handle (an HS256 JWT) verified and decoded.
//!
//! B5: the assertion's claims (`assertion_claims`) and its ES256 signature with the key derived
//! from the shared secret, every time. The cached path of B5 is B2's `cached_assertion`.
//!
//! `cargo bench -p proxy --bench authorize`; heap allocations per call:
//! `cargo bench -p proxy --bench authorize_allocations`.

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
use criterion::{Criterion, criterion_group, criterion_main};
use proxy::authorize::authorize;
use std::hint::black_box;
use std::time::{Duration, Instant};
use support::{SHARED_KEY, TARGET_ROUTE, host};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fixture = rt.block_on(support::fixture(support::ROUTES)).unwrap();
    let authority = host(TARGET_ROUTE);
    let headers = support::headers(Some(&fixture.alice_cookie), "text/html").unwrap();
    let probe = support::probe(&authority, &headers);
    let call = || authorize(&fixture.runtime, black_box(&probe));
    fixture.authn.forget_assertions();
    support::assert_allowed(&rt.block_on(call()), &authority);
    support::assert_allowed(&rt.block_on(call()), &authority);

    let mut group = c.benchmark_group("b2_authorize");
    group.bench_function("fresh_signature", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    fixture.authn.forget_assertions();
                    black_box(call().await);
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("cached_assertion", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(call().await);
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("cached_assertion_block_on_each", |b| b.iter(|| black_box(rt.block_on(call()))));
    // What `fresh_signature` spends in `forget_assertions`: clearing a cache that holds the one
    // assertion the previous call signed (the call itself untimed). Includes one `Instant::now`
    // pair per iteration, which `instant_pair` measures.
    group.bench_function("forget_assertions_one_entry", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                black_box(rt.block_on(call()));
                let start = Instant::now();
                fixture.authn.forget_assertions();
                total += start.elapsed();
            }
            total
        })
    });
    group.bench_function("instant_pair", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                total += black_box(start).elapsed();
            }
            total
        })
    });
    // A part of every call: the session cookie read and its HS256 handle verified and decoded.
    group.bench_function("part_session_handle", |b| {
        b.iter(|| {
            let token = authenticate::cookie::session_token(black_box(&headers), None, "_pomerium").unwrap();
            authenticate::handle::SessionHandle::from_jwt(&token, &SHARED_KEY).unwrap()
        })
    });
    group.finish();

    // B5: the assertion for Alice's session to route 50's host, signed every time.
    let key = SigningKey::derive(&SHARED_KEY).unwrap();
    let records = fixture.records.read();
    let subject = support::alice_subject(&records);
    let now = jiff::Timestamp::now().as_second();
    let claims = assertion_claims(&subject, &authority, IssuerFormat::Hostname, &[], now);
    let jwt = key.sign(&claims).unwrap();
    assert_eq!(key.verify(&jwt).unwrap()["email"], support::ALICE);

    let mut group = c.benchmark_group("b5_identity");
    group.bench_function("claims_and_signature", |b| {
        b.iter(|| {
            let claims = assertion_claims(black_box(&subject), &authority, IssuerFormat::Hostname, &[], now);
            key.sign(&claims).unwrap()
        })
    });
    group.bench_function("claims_only", |b| {
        b.iter(|| assertion_claims(black_box(&subject), &authority, IssuerFormat::Hostname, &[], now))
    });
    group.bench_function("signature_only", |b| b.iter(|| key.sign(black_box(&claims)).unwrap()));
    group.finish();
    drop(records);
}

criterion_group!(benches, bench);
criterion_main!(benches);
