//! Sign-in's network half (system.md §3): everything of authentication that talks to the
//! identity provider or the databroker, so that the data plane (`proxy`) depends on neither.
//!
//! - [`SignInState`] is what survives reloads: the session store, the identity provider
//!   (discovered once per settings), the bearer tokens being checked, the stateless flow's key
//!   cache. It is the binary's [`proxy::authn::Authenticate`]: each configuration gets a
//!   [`Configured`] ([`proxy::authn::SignIn`]), which holds that configuration's provider
//!   settings.
//! - `endpoints.rs` answers the control-plane paths, with every refusal a [`Refusal`] (its
//!   status and message in one place, `refusal.rs`); `stateless.rs` is the hosted authenticate
//!   flow; `bearer.rs` turns an identity provider's token into a session; `store.rs` keeps
//!   sessions in the databroker; `refresher.rs` keeps sessions' tokens fresh under a databroker
//!   lease.
//!
//! What the request path needs without I/O (the session handle, the records cache, the signed
//! assertion) stays in `proxy::authn`, which this crate builds on.

pub mod bearer;
pub mod endpoints;
pub mod refresher;
pub mod refusal;
pub mod stateless;
pub mod store;

pub use refusal::Refusal;
pub use store::SessionStore;

use authenticate::handle::SessionHandle;
use config::Options;
use oidc::{DevelopmentUser, Provider, ProviderSettings};
use proxy::authn::{AuthnSettings, BoxFuture, Freshness, SignIn};
use proxy::runtime::SharedRecords;
use std::sync::Arc;
use url::Url;

/// What sign-in keeps across reloads.
#[derive(Debug, Default)]
pub struct SignInState {
    /// Where sessions are written and read; `None` where no databroker is reachable (then no one
    /// can sign in, and every protected route asks for a sign-in).
    pub store: Option<SessionStore>,
    /// The provider for the settings of this digest: discovered once (concurrent first uses wait
    /// for the one discovery), and no lock is held while it runs.
    provider: std::sync::Mutex<Option<(String, Arc<tokio::sync::OnceCell<Provider>>)>>,
    /// Identity provider tokens being checked, and those refused lately.
    pub(crate) bearer: bearer::BearerState,
    /// The stateless flow's cache of the authenticate service's key, and the callbacks used.
    pub(crate) stateless: stateless::StatelessState,
}

impl SignInState {
    pub fn new(store: Option<SessionStore>) -> SignInState {
        SignInState { store, ..SignInState::default() }
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

/// Sign-in as the binary hands it to the runtime: the state, shared by every configuration.
#[derive(Debug, Clone)]
pub struct Authenticator(pub Arc<SignInState>);

impl proxy::authn::Authenticate for Authenticator {
    fn configure(&self, options: &Options, settings: &AuthnSettings) -> Arc<dyn SignIn> {
        Arc::new(Configured {
            state: Arc::clone(&self.0),
            provider: provider_settings(options, &settings.authenticate_url, &settings.shared_key),
            hosted: settings.hosted,
        })
    }
}

/// The sign-in of one configuration.
#[derive(Debug)]
pub struct Configured {
    state: Arc<SignInState>,
    /// `None` when no identity provider is configured.
    provider: Option<ProviderSettings>,
    /// The authenticate URL is a hosted service's.
    hosted: bool,
}

impl Configured {
    /// The identity provider settings the session refresher uses: none with a hosted
    /// authenticate service (Pomerium's `SupportsUserRefresh`), whose sessions come from a
    /// provider this server has no client of.
    pub fn refresh_provider(&self) -> Option<ProviderSettings> {
        if self.hosted {
            return None;
        }
        self.provider.clone()
    }

    /// The runtime's sign-in, when it is this crate's.
    pub fn of(sign_in: &dyn SignIn) -> Option<&Configured> {
        let any: &dyn std::any::Any = sign_in;
        any.downcast_ref::<Configured>()
    }
}

impl SignIn for Configured {
    fn endpoint<'a>(
        &'a self,
        cx: &'a proxy::authn::endpoints::Context<'a>,
        request: &'a proxy::authn::endpoints::ControlRequest<'a>,
    ) -> BoxFuture<'a, http::Response<proxy::ProxyBody>> {
        Box::pin(async move {
            let inner = endpoints::Context {
                settings: cx.settings,
                authn: &self.state,
                sign_in: self,
                provider: self.provider.as_ref(),
                assertions: cx.assertions,
                records: cx.records,
                now: cx.now,
            };
            endpoints::handle(&inner, request, cx.callback_path).await
        })
    }

    fn bearer_session<'a>(
        &'a self,
        settings: &'a AuthnSettings,
        records: &'a SharedRecords,
        kind: proxy::authn::bearer::TokenKind,
        token: &'a str,
        allowed_audiences: Option<&'a [String]>,
    ) -> BoxFuture<'a, Result<proxy::authn::session::RequestSession, proxy::authn::bearer::BearerError>> {
        Box::pin(bearer::session(
            settings,
            &self.state,
            self.provider.as_ref(),
            records,
            kind,
            token,
            allowed_audiences,
        ))
    }

    fn sealed_sign_in_url<'a>(
        &'a self,
        settings: &'a AuthnSettings,
        redirect: &'a Url,
        idp_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Url, String>> {
        Box::pin(stateless::sign_in_url(settings, &self.state, redirect, idp_id, Vec::new()))
    }

    fn fresh<'a>(&'a self, handle: &'a SessionHandle) -> Freshness<'a> {
        let Some(store) = &self.state.store else { return Freshness::NoStore };
        let versions = databroker::record::Versions {
            server_version: handle.databroker_server_version,
            latest_record_version: handle.databroker_record_version,
        };
        if store.cached(versions) {
            return Freshness::Cached;
        }
        Freshness::Lagging(Box::pin(store.fresh(&handle.id, versions)))
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

/// The identity provider settings of `idp_*`, with the callback on the authenticate service.
pub fn provider_settings(options: &Options, authenticate_url: &Url, shared_key: &[u8]) -> Option<ProviderSettings> {
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
        ca_pem: options.certificate_authority.as_ref().map(|ca| proxy::tls::certificates_to_pem(ca.ders())),
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
