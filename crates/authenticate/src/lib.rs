//! Pomerium's authenticate service, as far as the proxy needs it today: signed URLs (system.md
//! §3.2) and the sign-in redirect a route answers when a user must sign in (§3.3 step 1).
//!
//! Invariant: no I/O; the clock is a parameter, so every function is deterministic.

pub mod mac;
pub mod sign_in;
pub mod signed_url;

pub use sign_in::sign_in_url;
pub use signed_url::{SignatureError, sign, verify};
