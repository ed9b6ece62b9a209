//! Pomerium-compatible configuration (system.md §1): `config.yaml` (or JSON) and the environment,
//! read into typed [`Options`] and [`Route`]s, with every problem reported at its span, and each
//! route's policy assembled (ppl.md §3.1) and checked.
//!
//! ```text
//! text + Environment ──load──► Loaded { config: Option<Config>, errors, warnings }
//!                                 Config { options: Options, routes: Vec<Route> }
//!                                 Route::policy() ──► ppl::model::Policy ──► policy::Program::compile
//! ```
//!
//! Invariant: this crate does no I/O (variables and `*_file` options are read through
//! [`Environment`]) and never panics on any input.
//!
//! ```
//! let source = "routes:\n  - from: https://app.example.com\n    to: http://app:8080\n    allowed_domains: [example.com]\n";
//! let loaded = config::load(source, config::Format::Yaml, &config::env::Empty);
//! assert!(loaded.errors.is_empty());
//! let config = loaded.config.unwrap();
//! assert_eq!(config.routes[0].from.host, "app.example.com");
//! assert_eq!(config.routes[0].policy().rules.len(), 1);
//! ```

#![cfg_attr(test, allow(clippy::string_slice, reason = "tests slice fixtures at offsets they know"))]

mod assemble;
mod declare;
pub mod diagnostic;
pub mod duration;
pub mod env;
mod headers;
pub mod identity;
pub mod keys;
mod load;
pub mod log_fields;
mod material;
pub mod options;
pub mod otel;
mod read;
pub mod route;
mod route_read;
mod secret;
mod section;
pub mod support;

pub use diagnostic::{Error, Located, Origin, Warning};
pub use env::{Environment, MapEnvironment};
pub use headers::{claim_header, is_header_name, template_references};
pub use load::{Config, Format, Loaded, MAX_CONFIG_BYTES, load};
pub use material::{Certificates, CertifiedKey, Crls, PrivateKey};
pub use options::Options;
pub use route::Route;
pub use secret::Secret;

/// Whether a YAML or JSON document is a configuration rather than a policy: its top level is an
/// object with at least one key that is a global option (a policy's top-level keys are `allow` and
/// `deny`, or it is a list), or it is a list of routes (which loading refuses with one error that
/// says where the routes go). Used by `pomerium-policy check` to tell the two apart.
pub fn looks_like_config(source: &str, format: Format) -> bool {
    let (value, _) = match format {
        Format::Yaml => ppl::syntax::yaml::parse(source),
        Format::Json => ppl::syntax::json::parse(source),
    };
    let is_option = |key: &str| {
        keys::GLOBAL_TYPED.contains(&key)
            || keys::GLOBAL_RAW.contains(&key)
            || keys::removed(keys::REMOVED_GLOBAL, key).is_some()
    };
    value
        .map(|value| {
            is_route_list(&value)
                || kubernetes_kind(&value).is_some()
                || value.as_object().is_some_and(|entries| entries.iter().any(|e| is_option(&e.key)))
        })
        .unwrap_or(false)
}

/// The `kind` of a Kubernetes manifest (an object with string `apiVersion` and `kind`): such a
/// file is refused with one error that says what it is, rather than read as options or a policy.
pub(crate) fn kubernetes_kind(value: &ppl::value::Value) -> Option<&str> {
    let text = |key: &str| value.get(key).and_then(|entry| entry.value.as_str());
    text("apiVersion")?;
    text("kind")
}

/// Whether a document is a list of routes (objects with `from`).
pub(crate) fn is_route_list(value: &ppl::value::Value) -> bool {
    let is_route = |item: &ppl::value::Value| item.as_object().is_some_and(|e| e.iter().any(|e| e.key == "from"));
    value.as_array().is_some_and(|items| !items.is_empty() && items.iter().all(is_route))
}

/// Why a route could not be found by [`Config::find_route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindRouteError {
    NotFound,
    /// Several routes match; each is described as `from` plus its path matcher.
    Ambiguous(Vec<String>),
}

impl Config {
    /// A route by its `id`, its `name`, or its `from` URL. When several routes share a `from`, the
    /// URL may carry the route's `path` or `prefix` (`https://app.example.com/admin`).
    pub fn find_route(&self, selector: &str) -> Result<&Route, FindRouteError> {
        let exact = |f: &dyn Fn(&Route) -> bool| self.routes.iter().filter(|r| f(r)).collect::<Vec<_>>();
        if let Some(found) = by(exact(&|r| r.id == selector)) {
            return found;
        }
        if let Some(found) = by(exact(&|r| r.name.as_deref() == Some(selector))) {
            return found;
        }
        if let Some(found) = by(exact(&|r| same_url(&r.from.text, selector))) {
            return found;
        }
        let Ok(url) = url::Url::parse(selector) else { return Err(FindRouteError::NotFound) };
        let origin = url.origin().ascii_serialization();
        let path = url.path();
        let with_path = exact(&|r| {
            url::Url::parse(&r.from.text).is_ok_and(|from| from.origin().ascii_serialization() == origin)
                && (r.path.as_deref() == Some(path) || r.prefix.as_deref() == Some(path))
        });
        by(with_path).unwrap_or(Err(FindRouteError::NotFound))
    }
}

/// The one route in `matches`, if there is exactly one; `None` if there is none.
fn by(matches: Vec<&Route>) -> Option<Result<&Route, FindRouteError>> {
    match matches.as_slice() {
        [] => None,
        [one] => Some(Ok(*one)),
        many => Some(Err(FindRouteError::Ambiguous(many.iter().map(|r| describe(r)).collect()))),
    }
}

/// Two URLs naming the same place (`https://a.example.com` and `https://a.example.com/`).
fn same_url(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `from` and the path matcher, to tell routes apart in messages.
pub fn describe(route: &Route) -> String {
    let matcher = [("path", &route.path), ("prefix", &route.prefix), ("regex", &route.regex)]
        .into_iter()
        .find_map(|(name, value)| value.as_ref().map(|v| format!(" {name}={v}")))
        .unwrap_or_default();
    format!("{}{matcher} (id {})", route.from.text, route.id)
}
