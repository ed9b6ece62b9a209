//! A route's identity when it has no `id`: a stable hash of what makes it the route it is.
//!
//! Pomerium's `generateRouteID` hashes `from`, `prefix`, `path`, `regex`, then whichever of `to`,
//! `redirect` or `response` the route has. This crate hashes the same fields, each written as its
//! length (8 bytes, big-endian) then its bytes, an absent value as the single byte 0 and a present
//! one as 1 followed by the value:
//!
//! ```text
//! from, prefix, path, regex,
//! then 1 and the number of upstreams, each upstream's url (as normalised by the url crate) and weight
//!   or 2 and https_redirect, scheme_redirect, host_redirect, port_redirect, path_redirect,
//!        prefix_rewrite, response_code, strip_query
//!   or 3 and status, body
//! ```
//!
//! with SHA-256, and writes the first 8 bytes of the digest as 16 hex digits. The value differs from
//! Pomerium's (which uses xxhash over Go's URL fields); it is stable across runs and releases.

use crate::route::{Action, Route};
use aws_lc_rs::digest;

struct Hasher(digest::Context);

impl Hasher {
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    fn text(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }

    fn optional(&mut self, value: Option<&[u8]>) {
        match value {
            None => self.0.update(&[0]),
            Some(bytes) => {
                self.0.update(&[1]);
                self.bytes(bytes);
            }
        }
    }

    fn tag(&mut self, tag: u8) {
        self.0.update(&[tag]);
    }
}

/// The route's id: hex of the first 8 bytes of the SHA-256 described above.
pub fn route_id(route: &Route) -> String {
    let mut h = Hasher(digest::Context::new(&digest::SHA256));
    h.text(&route.from.text);
    for part in [&route.prefix, &route.path, &route.regex] {
        h.text(part.as_deref().unwrap_or_default());
    }
    match &route.action {
        Action::Upstream(urls) => {
            h.tag(1);
            h.bytes(&(urls.len() as u64).to_be_bytes());
            for url in urls {
                h.text(url.url.as_str());
                h.bytes(&url.weight.unwrap_or(0).to_be_bytes());
            }
        }
        Action::Redirect(r) => {
            h.tag(2);
            let flag = |b: Option<bool>| b.map(|b| vec![u8::from(b)]);
            h.optional(flag(r.https_redirect).as_deref());
            h.optional(r.scheme_redirect.as_deref().map(str::as_bytes));
            h.optional(r.host_redirect.as_deref().map(str::as_bytes));
            h.optional(r.port_redirect.map(u16::to_be_bytes).as_ref().map(|b| b.as_slice()));
            h.optional(r.path_redirect.as_deref().map(str::as_bytes));
            h.optional(r.prefix_rewrite.as_deref().map(str::as_bytes));
            h.optional(r.response_code.map(u16::to_be_bytes).as_ref().map(|b| b.as_slice()));
            h.optional(flag(r.strip_query).as_deref());
        }
        Action::Response(response) => {
            h.tag(3);
            h.bytes(&response.status.to_be_bytes());
            h.text(&response.body);
        }
    }
    let digest = h.0.finish();
    digest.as_ref().iter().take(8).map(|b| format!("{b:02x}")).collect()
}
