//! The decision engine: a checked PPL policy compiles into a decision IR ([`Program`]);
//! evaluating it against an [`Input`] and the [`Records`] gives Pomerium's exact result (value
//! and reasons per action) and the [`Verdict`] (allow, sign in, deny, ...).
//!
//! ```text
//! ppl::model::Policy ──Program::compile──► Program ──evaluate(input, records)──► Decision ──► Verdict
//!                    └──reference::evaluate──► Trace (what `explain` prints; the semantics' definition)
//! ```
//!
//! Invariant: no I/O and no panics. Evaluating a [`Program`] allocates nothing, with one
//! exception: `ssh_ca` verifies an SSH certificate signature (SSH routes, once per connection).

pub mod contract;
pub mod crypto;
pub mod decision;
pub mod explain;
pub mod input;
pub mod program;
pub mod reason;
pub mod records;
pub mod reference;
pub mod rego;
pub mod time;

pub use decision::{Decision, RuleResult, Verdict};
pub use input::Input;
pub use program::Program;
pub use reason::{Reason, ReasonSet};
pub use records::Records;
