//! Peer engines, run on the same policies and inputs as ours.
//!
//! [`regorus_peer`] evaluates the Rego module Pomerium would generate for a policy
//! ([`policy::rego::emit`]) with [regorus](https://github.com/microsoft/regorus), a Rego
//! interpreter independent of our engine. The differential test
//! (`tests/regorus_differential.rs`) runs every case of `tests/eval/` through it and compares the
//! `allow` and `deny` results with the case's expected decision.
//!
//! Benchmark B1 (one decision, `benches/b1.rs`, `benches/b1.sh`) runs the cases of [`b1`] through
//! [`ours`], [`regorus_peer`] (the interpreter), [`regorus_vm`] (regorus's bytecode VM) and
//! [`cedar_peer`] (cedar-policy on hand-written Cedar); `tests/b1_cases_agree.rs` checks that the
//! engines agree on every case. Benchmark B6's policy part (`benches/b6.rs`, `benches/b6.sh`)
//! compiles the route policies of [`b6`].
//!
//! This crate is not a default member of the workspace: regorus and cedar-policy take minutes to
//! build, so only `cargo test -p bench-peers` (or `--workspace`) builds them.

pub mod b1;
pub mod b6;
pub mod cedar_peer;
pub mod ours;
pub mod regorus_peer;
pub mod regorus_vm;
