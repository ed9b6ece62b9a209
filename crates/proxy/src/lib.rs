//! The data plane's building blocks, in the mould of Pomerium's Envoy configuration but in one
//! Rust process (hyper + rustls).
//!
//! Each module is one stage a request passes through; the request pipeline (route match →
//! authorize → forward) composes them:
//!
//! - [`server`]: accept loops (TCP + optional TLS, HTTP/1 and HTTP/2), connection facts for the
//!   handler, header limits and timeouts, graceful shutdown, the HTTP→HTTPS redirect listener.
//! - [`tls`]: downstream TLS: certificates by SNI, PEM loading, the bootstrap self-signed
//!   certificate, client certificates.
//! - [`normalize`]: path and header checks before routing (Envoy's HCM knobs).
//! - [`headers`] and [`rewrite`]: pure functions from the incoming request to the upstream request
//!   (hop-by-hop removal, X-Forwarded-*, route header settings, path and host rewrites).
//! - [`balance`]: choosing an upstream endpoint, with passive outlier detection.
//! - [`upstream`]: the pooled upstream client, per-route TLS settings, timeouts.
//! - [`tunnel`]: upgrades (websocket, SPDY, ...) and CONNECT tunnels.
//! - [`error`]: the one proxy error type, its status mapping, and the error pages; [`deny`]: why a
//!   request was denied, for the deny page of a route with `show_error_details`.
//! - [`authorize`]: the decision for callers outside the pipeline (the `ext-authz` crate's
//!   server, benchmarks) and the boundary ([`RemoteAuthorize`]) to a remote authorize service.
//! - [`authn`]: sessions and the identity sent upstream, and the boundary ([`authn::SignIn`]) to
//!   the `authn` crate, which answers the sign-in endpoints and talks to the identity provider
//!   and the databroker.
//!
//! Every byte from the network is hostile: nothing here panics on input, and every size is
//! bounded.

pub mod authn;
pub mod authorize;
pub mod balance;
pub mod body;
mod decision;
pub mod deny;
pub mod error;
pub mod headers;
mod log_fields;
pub mod normalize;
pub mod pipeline;
mod render;
pub mod rewrite;
pub mod runtime;
pub mod server;
pub mod templates;
pub mod tls;
pub mod trace;
pub mod tunnel;
pub mod upstream;
mod upstream_headers;

pub use authorize::RemoteAuthorize;
pub use body::{BoxError, ProxyBody};
pub use error::{ErrorKind, ErrorPage, ProxyError, Source};
