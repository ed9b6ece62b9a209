//! Authentication on the request path (system.md §3): what the per-request decision needs in
//! process and without I/O (the session handle from a cookie or header, checked; the records it
//! names; the identity sent upstream), and the boundary to the `authn` crate, which answers the
//! sign-in endpoints and does everything that talks to the identity provider or the databroker.
//!
//! - [`Authn`] is what survives reloads: the cache of signed assertions, and the
//!   [`Authenticate`] implementation (the `authn` crate's, handed in by the binary).
//! - [`AuthnSettings`] is what a configuration says: keys, cookie settings, URLs; part of the
//!   runtime, rebuilt on reload, beside the [`SignIn`] that [`Authenticate::configure`] makes
//!   for the same configuration.
//! - `endpoints.rs` says which paths are sign-in endpoints; `session.rs` finds a request's
//!   session; `bearer.rs` reads an identity provider's token; `identity.rs` signs the assertion
//!   and fills the identity headers; `pages.rs` renders the HTML pages.
//!
//! Dependency rule: `proxy` depends on neither the OIDC client nor the databroker's client;
//! the network paths are [`SignIn`]'s methods, whose futures are boxed (a proxied request's
//! future stays small whatever they hold).

pub mod bearer;
pub mod endpoints;
pub mod identity;
pub mod pages;
pub mod session;

use crate::body::ProxyBody;
use crate::runtime::SharedRecords;
use authenticate::aead::Aead;
use authenticate::assertion::IssuerFormat;
use authenticate::cookie::{CookieSettings, SameSite};
use authenticate::handle::SessionHandle;
use authenticate::signing::SigningKey;
use config::Options;
use config::options::JwtIssuerFormat;
use policy::records::MemoryRecords;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use url::Url;

/// Where a server's HPKE public key is served (the stateless flow's).
pub const HPKE_KEY_PATH: &str = "/.well-known/pomerium/hpke-public-key";

/// A boxed future, as [`SignIn`]'s methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sign-in across reloads (the `authn` crate's `Authenticator`): makes each configuration's
/// [`SignIn`].
pub trait Authenticate: Send + Sync + std::fmt::Debug {
    /// The sign-in of one configuration (its identity provider settings are read here).
    fn configure(&self, options: &Options, settings: &AuthnSettings) -> Arc<dyn SignIn>;
}

/// The sign-in of one configuration: the paths of a request that need the identity provider or
/// the databroker. Every method's future is boxed.
pub trait SignIn: std::any::Any + Send + Sync + std::fmt::Debug {
    /// Answers a control-plane request ([`endpoints::is_endpoint`] said yes).
    fn endpoint<'a>(
        &'a self,
        cx: &'a endpoints::Context<'a>,
        request: &'a endpoints::ControlRequest<'a>,
    ) -> BoxFuture<'a, http::Response<ProxyBody>>;

    /// The session of an identity provider's token: the one made for it before (in the cache, or
    /// in the databroker), or a new one once the provider accepts the token.
    fn bearer_session<'a>(
        &'a self,
        settings: &'a AuthnSettings,
        records: &'a SharedRecords,
        kind: bearer::TokenKind,
        token: &'a str,
        allowed_audiences: Option<&'a [String]>,
    ) -> BoxFuture<'a, Result<session::RequestSession, bearer::BearerError>>;

    /// The stateless flow's sign-in URL: the authenticate service's `/.pomerium/sign_in` with the
    /// request sealed for its key (fetched, and kept a minute).
    fn sealed_sign_in_url<'a>(
        &'a self,
        settings: &'a AuthnSettings,
        redirect: &'a Url,
        idp_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Url, String>>;

    /// Read-your-writes for a request whose session handle carries the versions its session was
    /// written at.
    fn fresh<'a>(&'a self, handle: &'a SessionHandle) -> Freshness<'a>;
}

/// Whether the records cache can answer for a session handle.
pub enum Freshness<'a> {
    /// No databroker keeps sessions here: no handle names a session.
    NoStore,
    /// The cache holds the session's version: the policy reads the cache.
    Cached,
    /// The cache lags: this waits for it briefly, then reads the session and its user from the
    /// databroker; `Some` records stand in for the cache's.
    Lagging(BoxFuture<'a, Result<Option<MemoryRecords>, Unavailable>>),
}

impl std::fmt::Debug for Freshness<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Freshness::NoStore => "NoStore",
            Freshness::Cached => "Cached",
            Freshness::Lagging(_) => "Lagging",
        })
    }
}

/// The databroker could not be reached, or refused the call.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// No sign-in: no identity provider, no databroker (benchmarks, configuration checks). Every
/// endpoint is a 404, and no session is ever found.
#[derive(Debug, Default)]
pub struct NoSignIn;

impl Authenticate for NoSignIn {
    fn configure(&self, _: &Options, _: &AuthnSettings) -> Arc<dyn SignIn> {
        Arc::new(NoSignIn)
    }
}

impl SignIn for NoSignIn {
    fn endpoint<'a>(
        &'a self,
        _: &'a endpoints::Context<'a>,
        request: &'a endpoints::ControlRequest<'a>,
    ) -> BoxFuture<'a, http::Response<ProxyBody>> {
        let page = crate::ErrorPage::new(http::StatusCode::NOT_FOUND, request.request_id);
        Box::pin(std::future::ready(page.render_as(request.format)))
    }

    fn bearer_session<'a>(
        &'a self,
        _: &'a AuthnSettings,
        _: &'a SharedRecords,
        _: bearer::TokenKind,
        _: &'a str,
        _: Option<&'a [String]>,
    ) -> BoxFuture<'a, Result<session::RequestSession, bearer::BearerError>> {
        let error = bearer::BearerError::Unavailable("no databroker to keep sessions in".to_owned());
        Box::pin(std::future::ready(Err(error)))
    }

    fn sealed_sign_in_url<'a>(
        &'a self,
        _: &'a AuthnSettings,
        _: &'a Url,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Url, String>> {
        Box::pin(std::future::ready(Err("this server has no sign-in".to_owned())))
    }

    fn fresh<'a>(&'a self, _: &'a SessionHandle) -> Freshness<'a> {
        Freshness::NoStore
    }
}

/// What authentication keeps across reloads.
#[derive(Debug)]
pub struct Authn {
    pub(crate) assertions: identity::AssertionCache,
    authenticate: Arc<dyn Authenticate>,
}

impl Default for Authn {
    /// Without sign-in ([`NoSignIn`]).
    fn default() -> Authn {
        Authn::new(Arc::new(NoSignIn))
    }
}

impl Authn {
    pub fn new(authenticate: Arc<dyn Authenticate>) -> Authn {
        Authn { assertions: identity::AssertionCache::default(), authenticate }
    }

    /// Forgets every signed assertion, so that the next request of each session signs anew
    /// (benchmarks measure signing this way).
    pub fn forget_assertions(&self) {
        self.assertions.clear();
    }

    /// The sign-in of a configuration.
    pub(crate) fn configure(&self, options: &Options, settings: &AuthnSettings) -> Arc<dyn SignIn> {
        self.authenticate.configure(options, settings)
    }
}

/// What the configuration says about authentication.
#[derive(Debug)]
pub struct AuthnSettings {
    pub authenticate_url: Url,
    /// The authenticate service's host name, lowercase.
    pub authenticate_host: String,
    /// Signs URLs and session handles (HS256), and seals the handle sent to a route's callback.
    pub shared_key: Vec<u8>,
    pub shared_aead: Aead,
    /// Seals the OAuth state, the CSRF and PKCE cookies.
    pub cookie_aead: Aead,
    pub signing_key: Arc<SigningKey>,
    /// `/.well-known/pomerium/jwks.json`: every key of `signing_key` (the first signs).
    pub jwks: String,
    /// Session handles verified under `shared_key`.
    pub handles: session::HandleCache,
    pub cookie_name: String,
    pub cookie: CookieSettings,
    pub cookie_expire: std::time::Duration,
    pub idp_id: String,
    pub issuer_format: IssuerFormat,
    /// `jwt_claims_headers`: header name → claim name.
    pub claim_headers: Vec<(String, String)>,
    /// The claim names of `claim_headers`, added to the assertion.
    pub extra_claims: Vec<String>,
    pub signout_redirect_url: Option<Url>,
    pub programmatic_domains: Vec<String>,
    /// Host names of every route (`from`), the places a browser may be sent back to.
    pub route_hosts: BTreeSet<String>,
    pub serves_authenticate: bool,
    pub serves_routes: bool,
    /// Runtime flag `pomerium_jwt_endpoint`: `/.pomerium/jwt` answers.
    pub jwt_endpoint: bool,
    /// The global `bearer_token_format` and `idp_access_token_allowed_audiences`, for the
    /// `/.pomerium/` endpoints, which belong to no route.
    pub bearer_token_format: Option<config::options::BearerTokenFormat>,
    pub access_token_audiences: Option<Vec<String>>,
    /// Whether the main listener speaks TLS.
    pub tls: bool,
    /// Pomerium's stateless flow (`UseStatelessAuthenticateFlow`): sign-in requests sealed for
    /// the authenticate service's HPKE key, the identity sealed back and made a session here.
    pub stateless: bool,
    /// The authenticate URL is a hosted service's (`uses_hosted_authenticate`).
    pub hosted: bool,
    /// This server's HPKE key, derived from `shared_key` (`/.well-known/pomerium/hpke-public-key`).
    pub hpke_key: Arc<authenticate::hpke::PrivateKey>,
    /// Where the authenticate service's HPKE key is fetched (the internal authenticate URL).
    pub hpke_key_url: Url,
    /// `certificate_authority`, trusted (besides the system's roots) for that fetch.
    pub ca_pem: Option<Vec<u8>>,
}

/// Why authentication cannot be set up from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("signing_key: {0}")]
    SigningKey(String),
    #[error("{0} must be 32 bytes")]
    Key(&'static str),
}

impl AuthnSettings {
    pub fn build(
        options: &Options,
        routes: &[config::Route],
        shared_key: &[u8],
        cookie_key: &[u8],
    ) -> Result<AuthnSettings, SettingsError> {
        let authenticate_url = options.authenticate_url().unwrap_or_else(hosted_authenticate);
        let authenticate_host = authenticate_url.host_str().unwrap_or_default().to_ascii_lowercase();
        let mut keys = match &options.signing_key {
            Some(key) => SigningKey::all_from_pem(key.pem().expose()),
            None => SigningKey::derive(shared_key).map(|key| vec![key]),
        }
        .map_err(|e| SettingsError::SigningKey(e.to_string()))?;
        let jwks = authenticate::signing::jwks(&keys.iter().collect::<Vec<_>>()).to_string();
        if keys.is_empty() {
            return Err(SettingsError::SigningKey("no key".to_owned()));
        }
        let signing_key = keys.swap_remove(0);
        let claim_headers: Vec<(String, String)> =
            options.jwt_claims_headers.iter().map(|(h, c)| (h.to_ascii_lowercase(), c.clone())).collect();
        let mut extra_claims: Vec<String> = claim_headers.iter().map(|(_, c)| c.clone()).collect();
        extra_claims.sort();
        extra_claims.dedup();
        let mut hpke_key_url =
            options.authenticate_internal_service_url.clone().unwrap_or_else(|| authenticate_url.clone());
        hpke_key_url.set_path(HPKE_KEY_PATH);
        hpke_key_url.set_query(None);
        Ok(AuthnSettings {
            idp_id: options.idp.client_id.clone().unwrap_or_default(),
            authenticate_host,
            authenticate_url,
            shared_key: shared_key.to_vec(),
            shared_aead: Aead::new(shared_key).map_err(|_| SettingsError::Key("shared_secret"))?,
            cookie_aead: Aead::new(cookie_key).map_err(|_| SettingsError::Key("cookie_secret"))?,
            signing_key: Arc::new(signing_key),
            jwks,
            handles: session::HandleCache::default(),
            cookie_name: options.cookie.name.clone(),
            cookie: CookieSettings {
                domain: options.cookie.domain.clone(),
                http_only: options.cookie.http_only,
                same_site: options.cookie.same_site.map(|s| match s {
                    config::options::SameSite::Strict => SameSite::Strict,
                    config::options::SameSite::Lax => SameSite::Lax,
                    config::options::SameSite::None => SameSite::None,
                }),
                expire: options.cookie.expire,
            },
            cookie_expire: options.cookie.expire,
            issuer_format: match options.jwt_issuer_format {
                Some(JwtIssuerFormat::Uri) => IssuerFormat::Uri,
                _ => IssuerFormat::Hostname,
            },
            claim_headers,
            extra_claims,
            signout_redirect_url: options.signout_redirect_url.clone(),
            programmatic_domains: options.programmatic_redirect_domain_whitelist.clone(),
            route_hosts: routes.iter().map(|r| r.from.host.to_ascii_lowercase()).collect(),
            serves_authenticate: options.services.runs(config::options::Service::Authenticate),
            serves_routes: options.services.runs(config::options::Service::Proxy),
            jwt_endpoint: options.runtime_flag("pomerium_jwt_endpoint"),
            bearer_token_format: options.bearer_token_format,
            access_token_audiences: options.idp.access_token_allowed_audiences.clone(),
            tls: !options.insecure_server,
            stateless: stateless_flow(options),
            hosted: options.uses_hosted_authenticate(),
            hpke_key: Arc::new(authenticate::hpke::PrivateKey::derive(shared_key)),
            hpke_key_url,
            ca_pem: options.certificate_authority.as_ref().map(|ca| crate::tls::certificates_to_pem(ca.ders())),
        })
    }

    /// Cookie names: the route hosts' session cookie, and the authenticate host's.
    pub fn authenticate_cookie(&self) -> String {
        format!("{}_authenticate", self.cookie_name)
    }

    pub fn csrf_cookie(&self) -> String {
        format!("{}_csrf", self.cookie_name)
    }

    pub fn pkce_cookie(&self) -> String {
        format!("{}_pkce", self.cookie_name)
    }

    /// Whether `hostname` is the authenticate service's.
    pub fn is_authenticate_host(&self, hostname: &str) -> bool {
        hostname.eq_ignore_ascii_case(&self.authenticate_host)
    }

    /// The authenticate service's URL with `path`.
    pub fn authenticate_path(&self, path: &str) -> Url {
        let mut url = self.authenticate_url.clone();
        url.set_path(path);
        url.set_query(None);
        url.set_fragment(None);
        url
    }

    /// Whether `hostname` is the host of a route (exactly, or under a wildcard `from`).
    pub fn is_route_host(&self, hostname: &str) -> bool {
        let host = hostname.to_ascii_lowercase();
        self.route_hosts.contains(&host) || self.route_hosts.iter().any(|pattern| wildcard_matches(pattern, &host))
    }

    /// A browser may be sent to `url` only on a host this deployment serves.
    pub fn is_own_url(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else { return false };
        matches!(url.scheme(), "https" | "http") && (self.is_authenticate_host(host) || self.is_route_host(host))
    }
}

/// `UseStatelessAuthenticateFlow`; an unknown `DEBUG_FORCE_AUTHENTICATE_FLOW` is ignored, as
/// Pomerium does, and said.
fn stateless_flow(options: &Options) -> bool {
    if let Some(flow) = options.force_authenticate_flow.as_deref()
        && !matches!(flow, "stateless" | "stateful")
    {
        tracing::error!(value = flow, "ignoring DEBUG_FORCE_AUTHENTICATE_FLOW: it must be `stateless` or `stateful`");
    }
    options.uses_stateless_authenticate_flow()
}

/// `*.example.com` covers `a.example.com`.
fn wildcard_matches(pattern: &str, host: &str) -> bool {
    pattern
        .strip_prefix("*.")
        .is_some_and(|suffix| host.strip_suffix(suffix).is_some_and(|label| label.ends_with('.') && label.len() > 1))
}

#[expect(clippy::unwrap_used, reason = "a constant URL that parses")]
fn hosted_authenticate() -> Url {
    Url::parse(config::options::HOSTED_AUTHENTICATE_URL).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_or_more_labels_but_not_the_bare_domain() {
        assert!(wildcard_matches("*.example.com", "a.example.com"));
        assert!(wildcard_matches("*.example.com", "a.b.example.com"));
        assert!(!wildcard_matches("*.example.com", "example.com"));
        assert!(!wildcard_matches("*.example.com", "evilexample.com"));
        assert!(!wildcard_matches("example.com", "a.example.com"));
    }

    /// The dependency rule: the data plane reaches the identity provider and the databroker's
    /// client only through `SignIn` (the `authn` crate), and a remote authorize service only
    /// through `RemoteAuthorize` (the `ext-authz` crate), never by depending on them or on gRPC.
    #[test]
    fn the_data_plane_depends_on_neither_the_oidc_client_nor_the_databroker_nor_grpc() {
        let manifest = include_str!("../../Cargo.toml");
        let dependencies =
            manifest.split("\n[").find(|section| section.starts_with("dependencies]")).unwrap_or_default();
        assert!(dependencies.contains("authenticate.workspace"), "the [dependencies] section is read");
        for forbidden in ["oidc", "authn", "databroker", "ext-authz", "tonic", "prost", "prost-types"] {
            let named = dependencies
                .lines()
                .any(|line| line.split(['.', '=', ' ']).next().is_some_and(|name| name.trim() == forbidden));
            assert!(
                !named,
                "proxy's [dependencies] name `{forbidden}`: reach it through proxy::authn::SignIn or proxy::RemoteAuthorize"
            );
        }
    }
}
