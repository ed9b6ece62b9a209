//! Authentication on the request path (system.md §3): the authenticate service's endpoints, the
//! route hosts' `/.pomerium/` endpoints, sessions read from cookies and headers, and the identity
//! sent upstream.
//!
//! - [`Authn`] is what survives reloads: the session store, the identity provider (discovered
//!   once per settings), the cache of signed assertions.
//! - [`AuthnSettings`] is what a configuration says: keys, cookie settings, URLs; part of the
//!   runtime, rebuilt on reload.
//! - `endpoints.rs` answers the control-plane paths; `session.rs` finds a request's session;
//!   `bearer.rs` turns an identity provider's token into a session;
//!   `identity.rs` signs the assertion and fills the identity headers; `refresher.rs` keeps
//!   sessions' tokens fresh under a databroker lease.

pub mod bearer;
pub mod endpoints;
pub mod identity;
pub mod pages;
pub mod refresher;
pub mod session;
pub mod stateless;
pub mod store;

use authenticate::aead::Aead;
use authenticate::assertion::IssuerFormat;
use authenticate::cookie::{CookieSettings, SameSite};
use authenticate::signing::SigningKey;
use config::Options;
use config::options::JwtIssuerFormat;
use oidc::{DevelopmentUser, Provider, ProviderSettings};
use std::collections::BTreeSet;
use std::sync::Arc;
use url::Url;

pub use store::SessionStore;

/// What authentication keeps across reloads.
#[derive(Debug, Default)]
pub struct Authn {
    /// Where sessions are written and read; `None` where no databroker is reachable (then no one
    /// can sign in, and every protected route asks for a sign-in).
    pub store: Option<SessionStore>,
    /// The provider for the settings of this digest: discovered once (concurrent first uses wait
    /// for the one discovery), and no lock is held while it runs.
    provider: std::sync::Mutex<Option<(String, Arc<tokio::sync::OnceCell<Provider>>)>>,
    pub(crate) assertions: identity::AssertionCache,
    /// Identity provider tokens being checked, and those refused lately.
    pub(crate) bearer: bearer::BearerState,
    /// The stateless flow's cache of the authenticate service's key, and the callbacks used.
    pub(crate) stateless: stateless::StatelessState,
}

impl Authn {
    pub fn new(store: Option<SessionStore>) -> Authn {
        Authn { store, ..Authn::default() }
    }

    /// Forgets every signed assertion, so that the next request of each session signs anew
    /// (benchmarks measure signing this way).
    pub fn forget_assertions(&self) {
        self.assertions.clear();
    }

    /// The identity provider for `settings`, discovered on first use and again when the settings
    /// change. A failed discovery is not kept: the next sign-in tries again.
    pub async fn provider(&self, settings: &ProviderSettings) -> Result<Provider, oidc::OidcError> {
        let key = provider_key(settings);
        let cell = {
            let mut slot = self.provider.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match slot.as_ref() {
                Some((held, cell)) if *held == key => Arc::clone(cell),
                _ => {
                    let cell = Arc::new(tokio::sync::OnceCell::new());
                    *slot = Some((key, Arc::clone(&cell)));
                    cell
                }
            }
        };
        // A failed discovery leaves the cell empty: the next caller tries again.
        cell.get_or_try_init(|| Provider::new(settings.clone())).await.cloned()
    }
}

/// A digest of the settings, so that a reload with new provider settings rediscovers.
fn provider_key(settings: &ProviderSettings) -> String {
    let text = format!(
        "{}\n{}\n{}\n{}\n{:?}\n{:?}\n{}\n{:?}\n{:?}",
        settings.provider,
        settings.issuer_url,
        settings.client_id,
        settings.client_secret.as_deref().unwrap_or_default(),
        settings.scopes,
        settings.request_params,
        settings.redirect_url,
        settings.ca_pem,
        settings.development_users,
    );
    // The development key is a secret: only whether it is the same goes into the digest.
    let text = match &settings.development_key {
        Some(key) => format!("{text}\n{}", hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key).as_ref())),
        None => text,
    };
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the configuration says about authentication.
#[derive(Debug)]
pub(crate) struct AuthnSettings {
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
    /// `None` when no identity provider is configured.
    pub provider: Option<ProviderSettings>,
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
    pub(crate) fn build(
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
        hpke_key_url.set_path(stateless::HPKE_KEY_PATH);
        hpke_key_url.set_query(None);
        Ok(AuthnSettings {
            provider: provider_settings(options, &authenticate_url, shared_key),
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

/// The identity provider settings of `idp_*`, with the callback on the authenticate service.
fn provider_settings(options: &Options, authenticate_url: &Url, shared_key: &[u8]) -> Option<ProviderSettings> {
    let idp = &options.idp;
    let provider = idp.provider.clone()?;
    let mut redirect_url = authenticate_url.clone();
    redirect_url.set_path(&options.authenticate_callback_path);
    redirect_url.set_query(None);
    let development = provider == config::options::DEVELOPMENT_PROVIDER;
    Some(ProviderSettings {
        provider,
        issuer_url: idp.provider_url.clone().unwrap_or_default(),
        client_id: idp
            .client_id
            .clone()
            .unwrap_or_else(|| if development { "pomerium".to_owned() } else { String::new() }),
        client_secret: idp.client_secret.as_ref().and_then(|s| s.expose_str()).map(str::to_owned),
        scopes: idp.scopes.clone().unwrap_or_default(),
        request_params: idp.request_params.clone(),
        redirect_url,
        ca_pem: options.certificate_authority.as_ref().map(|ca| crate::tls::certificates_to_pem(ca.ders())),
        development_users: idp
            .development_users
            .iter()
            .map(|u| DevelopmentUser {
                email: u.email.clone(),
                name: u.name.clone(),
                groups: u.groups.clone(),
                id: u.id.clone(),
            })
            .collect(),
        development_key: development.then(|| {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, shared_key);
            aws_lc_rs::hmac::sign(&key, b"pomerium development identity provider").as_ref().to_vec()
        }),
    })
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
}
