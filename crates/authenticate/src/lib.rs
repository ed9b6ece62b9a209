//! The pure core of Pomerium's authenticate service (system.md §3): signed URLs (§3.2), the
//! sign-in redirect (§3.3 step 1), the OAuth state and the CSRF and PKCE cookies (§3.3, §3.4),
//! session handles and cookies (§3.4), the session and user records (§3.3, §3.5), and the
//! identity assertion: its signing key, JWKS and claims (§3.6, §3.7).
//!
//! Invariant: no I/O; the clock is a parameter. (Randomness comes from the system's generator.)
//! The endpoints that use these live in the `authn` crate, the request path's part in
//! `proxy::authn`.

pub mod aead;
pub mod assertion;
pub mod cookie;
pub mod csrf;
pub mod handle;
pub mod hpke;
pub mod jws;
pub mod mac;
pub mod profile;
pub mod session;
pub mod sign_in;
pub mod signed_url;
pub mod signing;
pub mod state;

pub use sign_in::sign_in_url;
pub use signed_url::{SignatureError, sign, verify};
