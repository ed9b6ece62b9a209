//! What the workspace's tests share, one copy each: a test CA made by rcgen ([`pki`]), TLS
//! configurations for clients and upstreams ([`tls`]), hyper upstreams ([`upstream`]), clients
//! that hold their connections and raw exchanges ([`client`]), bounded polling ([`eventually`]),
//! the corpus compare-or-rewrite step ([`expect`]) and the documentation checks ([`tidy`]).
//!
//! A dev-dependency only. The network parts are behind the `net` feature, so that the corpus and
//! documentation tests build light.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test support: a broken fixture fails the test that uses it, by panicking"
)]
#![allow(missing_debug_implementations, reason = "test fixtures; a failing test prints what it compared")]

#[cfg(feature = "cli")]
pub mod cli;
pub mod expect;
pub mod tidy;

#[cfg(feature = "net")]
pub mod client;
#[cfg(feature = "net")]
pub mod pki;
#[cfg(feature = "net")]
pub mod process;
#[cfg(feature = "net")]
pub mod tls;
#[cfg(feature = "net")]
pub mod upstream;

#[cfg(feature = "net")]
pub use client::*;
#[cfg(feature = "net")]
pub use pki::*;
#[cfg(feature = "net")]
pub use tls::*;
#[cfg(feature = "net")]
pub use upstream::*;

use std::time::Duration;

/// A generous bound for anything that should happen promptly.
pub const PROMPTLY: Duration = Duration::from_secs(10);

/// Polls `probe` until it returns `Some`, or fails after [`PROMPTLY`].
#[cfg(feature = "net")]
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + PROMPTLY;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
