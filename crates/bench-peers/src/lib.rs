//! Peer engines, run on the same policies and inputs as ours.
//!
//! [`regorus_peer`] evaluates the Rego module Pomerium would generate for a policy
//! ([`policy::rego::emit`]) with [regorus](https://github.com/microsoft/regorus), a Rego
//! interpreter independent of our engine. The differential test
//! (`tests/regorus_differential.rs`) runs every case of `tests/eval/` through it and compares the
//! `allow` and `deny` results with the case's expected decision.
//!
//! This crate is not a default member of the workspace: regorus takes minutes to build, so only
//! `cargo test -p bench-peers` builds it.

pub mod regorus_peer;
