//! The one body type that flows through the proxy, in both directions.
//!
//! Bodies are streamed, never collected: an incoming body is boxed as it is and polled frame by
//! frame by whoever consumes it.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;

/// The error type of [`ProxyBody`] (and of anything a body may fail with).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body: a downstream request body on its way up, or an upstream response body on its
/// way down, or a body the proxy made itself.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body of fixed bytes.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body received from a peer, streamed as it arrives.
pub fn incoming(body: Incoming) -> ProxyBody {
    body.map_err(BoxError::from).boxed_unsync()
}
