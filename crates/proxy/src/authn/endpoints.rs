//! The control-plane endpoints of system.md §3.1: which paths they are, and what a request for
//! one carries. Answering them is the `authn` crate's (`authn::endpoints`), reached through
//! [`super::SignIn::endpoint`].
//!
//! On the authenticate host: `/.pomerium/sign_in`, the IdP callback (`/oauth2/callback`),
//! `/.pomerium/sign_out`, `/.pomerium/signed_out`, `/.pomerium/`, the development IdP's pages,
//! `/robots.txt`. On every route host: `/.pomerium/`, `/.pomerium/callback/`,
//! `/.pomerium/sign_out`, `/.pomerium/user`, `/.pomerium/jwt`, `/.pomerium/api/v1/login`. On
//! both: `/.well-known/pomerium` and its `jwks.json`.

use super::AuthnSettings;
use super::identity::AssertionCache;
use crate::error::ResponseFormat;
use crate::runtime::SharedRecords;
use bytes::Bytes;
use http::{HeaderMap, Method};
use url::Url;

/// A control-plane request, with its body read (bounded) when it has one.
#[derive(Debug)]
pub struct ControlRequest<'a> {
    pub method: &'a Method,
    /// The URL the client asked for (`https://host/path?query`).
    pub url: &'a Url,
    pub hostname: &'a str,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    pub request_id: &'a str,
    pub format: ResponseFormat,
}

/// What the runtime gives an endpoint besides the request.
#[derive(Debug)]
pub struct Context<'a> {
    pub settings: &'a AuthnSettings,
    /// Signed assertions, shared with the request path.
    pub assertions: &'a AssertionCache,
    pub records: &'a SharedRecords,
    /// `authenticate_callback_path` (`/oauth2/callback`).
    pub callback_path: &'a str,
    pub now: i64,
}

/// Whether `path` on `hostname` is an endpoint of this module (the caller then reads the body).
/// Route-host endpoints answer only on a route's host (as Envoy adds them to each route's virtual
/// host); a host with no route gets the 404 of any unknown host.
pub fn is_endpoint(settings: &AuthnSettings, hostname: &str, path: &str, callback_path: &str) -> bool {
    // Public, and fetched by clusters by whatever name reaches this server.
    if path == super::HPKE_KEY_PATH {
        return true;
    }
    if settings.serves_authenticate && settings.is_authenticate_host(hostname) {
        return path == "/"
            || path == "/robots.txt"
            || path == callback_path
            || path.starts_with("/.pomerium/")
            || path.starts_with("/.well-known/pomerium");
    }
    // The path first: it is a few byte comparisons, and most requests are not for these.
    settings.serves_routes
        && (matches!(
            path,
            "/.pomerium/"
                | "/.pomerium/callback/"
                | "/.pomerium/sign_out"
                | "/.pomerium/user"
                | "/.pomerium/jwt"
                | "/.pomerium/api/v1/login"
        ) || path.starts_with("/.well-known/pomerium"))
        && settings.is_route_host(hostname)
}
