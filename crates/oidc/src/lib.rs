//! The OpenID Connect relying party and the development identity provider.
//!
//! - [`Provider::new`] discovers a provider (`/.well-known/openid-configuration`, its JWKS);
//!   [`Provider::authorization_url`] starts the authorization-code flow (PKCE S256 when the
//!   provider offers it); [`Provider::exchange`] trades the code, validates the ID token (issuer,
//!   audience, nonce, expiry, signature against the JWKS, refetched once for an unknown key) and
//!   adds the userinfo claims; [`Provider::refresh`], [`Provider::revoke`] and
//!   [`Provider::end_session_url`] serve the session's later life.
//! - `idp_provider: development` is [`DevelopmentIdp`], a real (tiny) provider inside the
//!   authenticate service, for development only.
//!
//! The protocol is written here on aws-lc-rs and our own hyper client rather than with the
//! `openidconnect` crate: the parts an RP needs are small, and this keeps one crypto provider
//! and no `rsa` crate (RUSTSEC-2023-0071) in the build.

mod dev;
mod http;
mod jwt;

/// The JWKS and ID token readers, otherwise private, for the fuzz target `fuzz/fuzz_targets/jwks.rs`.
#[doc(hidden)]
pub mod fuzzing {
    use serde_json::{Map, Value};

    /// Reads `jwks`, finds `token`'s key id, verifies its signature, then checks its claims as an
    /// RP does (issuer, audience `client_id`, expiry, `nonce`) at `now`.
    pub fn verify_id_token(
        jwks: &[u8],
        token: &str,
        issuer: Option<&str>,
        client_id: &str,
        nonce: Option<&str>,
        now: i64,
    ) -> Result<Map<String, Value>, String> {
        let keys = crate::jwt::parse_jwks(jwks)?;
        let _ = crate::jwt::key_id(token)?;
        let claims = crate::jwt::verify(token, &keys)?;
        crate::jwt::check_claims(&claims, issuer, client_id, nonce, now)?;
        Ok(claims)
    }
}

pub use dev::{DevResponse, DevelopmentIdp};
pub use http::Fetcher;

use ::http::Method;
use ::http::header::{AUTHORIZATION, HeaderName};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use url::Url;

/// What configures a provider (Pomerium's `idp_*` options).
#[derive(Clone, PartialEq)]
pub struct ProviderSettings {
    pub provider: String,
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// Empty: `openid profile email offline_access`.
    pub scopes: Vec<String>,
    pub request_params: BTreeMap<String, String>,
    /// The authenticate service's callback.
    pub redirect_url: Url,
    pub ca_pem: Option<Vec<u8>>,
    pub development_users: Vec<DevelopmentUser>,
    /// The key the development provider signs its codes and refresh tokens with. Derived from
    /// the shared secret, so that every replica (and a restarted process) accepts what another
    /// issued; `None` makes a key per process.
    pub development_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("provider", &self.provider)
            .field("issuer_url", &self.issuer_url)
            .field("client_id", &self.client_id)
            .field("redirect_url", &self.redirect_url.as_str())
            .finish_non_exhaustive()
    }
}

/// A user of the development provider.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct DevelopmentUser {
    pub email: String,
    pub name: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub id: Option<String>,
}

/// The value of `idp_provider` for [`DevelopmentIdp`].
pub const DEVELOPMENT: &str = "development";

const DEFAULT_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// What went wrong talking to the provider. Messages name the endpoint, never a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OidcError {
    #[error("identity provider settings: {0}")]
    Config(String),
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("discovery at {url}: {reason}")]
    Discovery { url: String, reason: String },
    #[error("the token endpoint refused: {status} {error}")]
    Token { status: u16, error: String },
    #[error("the ID token is not valid: {0}")]
    IdToken(String),
    #[error("userinfo: {0}")]
    UserInfo(String),
    /// The userinfo endpoint refused the access token (401, 403): it is no longer valid.
    #[error("userinfo: the provider refused the access token ({status})")]
    UserInfoRefused { status: u16 },
    #[error("the development provider: {0}")]
    Development(String),
    /// Userinfo answered for another subject than the ID token's: the provider's answers
    /// contradict each other, and neither can be trusted.
    #[error("userinfo answered for another subject than the ID token's")]
    SubjectMismatch,
}

impl OidcError {
    /// For a refresh: the grant is dead (the session must end), rather than the provider being
    /// unreachable for now.
    pub fn is_permanent(&self) -> bool {
        match self {
            OidcError::Token { status, error } => {
                error == "invalid_grant" || error == "unauthorized_client" || *status == 400 || *status == 401
            }
            OidcError::IdToken(_)
            | OidcError::Development(_)
            | OidcError::UserInfoRefused { .. }
            | OidcError::SubjectMismatch => true,
            _ => false,
        }
    }

    /// The provider could not be asked (unreachable, a 5xx or 429): worth asking again later.
    pub fn is_temporary(&self) -> bool {
        !self.is_permanent() && !matches!(self, OidcError::Config(_))
    }
}

/// Which token a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenHint {
    AccessToken,
    RefreshToken,
}

/// Who signed in, and their tokens.
#[derive(Clone)]
pub struct Identity {
    pub subject: String,
    pub claims: Map<String, Value>,
    pub id_token: Option<IdToken>,
    pub access_token: String,
    pub token_type: String,
    pub refresh_token: Option<String>,
    pub expires_at: Option<jiff::Timestamp>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.subject)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct IdToken {
    pub raw: String,
    pub issuer: String,
    pub subject: String,
    pub issued_at: jiff::Timestamp,
    pub expires_at: jiff::Timestamp,
}

impl std::fmt::Debug for IdToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdToken").field("issuer", &self.issuer).field("subject", &self.subject).finish_non_exhaustive()
    }
}

/// A configured identity provider; cheap to clone.
#[derive(Clone, Debug)]
pub struct Provider(Arc<Inner>);

#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "one per provider, behind an Arc")]
enum Inner {
    Oidc(Oidc),
    Development(DevelopmentIdp),
}

#[derive(Debug)]
struct Oidc {
    settings: ProviderSettings,
    metadata: Metadata,
    http: http::HttpClient,
    keys: Mutex<Vec<jwt::Jwk>>,
    /// When the JWKS was last fetched because a token named an unknown key.
    unknown_key_refetch: Mutex<Option<std::time::Instant>>,
}

/// A token naming a key we do not know refetches the JWKS at most this often: bearer tokens come
/// from anyone, and must not turn into a request to the provider each.
const UNKNOWN_KEY_REFETCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone, serde::Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    userinfo_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    end_session_endpoint: Option<String>,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
}

impl Metadata {
    /// Every endpoint the document names, by its field name.
    fn endpoints(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("authorization_endpoint", Some(&self.authorization_endpoint)),
            ("token_endpoint", Some(&self.token_endpoint)),
            ("jwks_uri", Some(&self.jwks_uri)),
            ("userinfo_endpoint", self.userinfo_endpoint.as_ref()),
            ("revocation_endpoint", self.revocation_endpoint.as_ref()),
            ("end_session_endpoint", self.end_session_endpoint.as_ref()),
        ]
        .into_iter()
        .filter_map(|(name, endpoint)| endpoint.map(|e| (name, e.as_str())))
    }
}

/// Whether a provider's endpoint may carry codes and tokens: https, or http to a loopback host
/// (a provider on the same machine). A document that sends them elsewhere in the clear, by
/// mistake or by an attacker who could answer discovery, is refused.
fn is_secure_endpoint(endpoint: &str) -> bool {
    let Ok(url) = Url::parse(endpoint) else { return false };
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

impl Provider {
    /// Discovers the provider (no I/O for the development one).
    pub async fn new(settings: ProviderSettings) -> Result<Provider, OidcError> {
        if settings.provider == DEVELOPMENT {
            return Ok(Provider(Arc::new(Inner::Development(DevelopmentIdp::new(&settings)?))));
        }
        let settings = with_default_issuer(settings)?;
        if settings.issuer_url.is_empty() || settings.client_id.is_empty() {
            return Err(OidcError::Config(format!(
                "idp_provider `{}` needs idp_provider_url and idp_client_id",
                settings.provider
            )));
        }
        let http = http::HttpClient::new(settings.ca_pem.as_deref())?;
        let url = format!("{}/.well-known/openid-configuration", settings.issuer_url.trim_end_matches('/'));
        let discovery = |reason: String| OidcError::Discovery { url: url.clone(), reason };
        let answer = http.send(Method::GET, &url, None, &[]).await?;
        if !answer.status.is_success() {
            return Err(discovery(format!("status {}", answer.status)));
        }
        let metadata: Metadata = serde_json::from_slice(&answer.body).map_err(|e| discovery(e.to_string()))?;
        let mut metadata = metadata;
        if settings.provider == AZURE && metadata.issuer == AZURE_COMMON_DISCOVERED_ISSUER {
            // Azure's multi-tenant endpoint names no tenant in its document (Pomerium's
            // `wellKnownConfiguration`): it stands for the endpoint itself.
            metadata.issuer.clone_from(&settings.issuer_url);
        }
        if metadata.issuer.trim_end_matches('/') != settings.issuer_url.trim_end_matches('/') {
            return Err(discovery(format!("the document's issuer `{}` is not the configured one", metadata.issuer)));
        }
        if let Some((name, endpoint)) = metadata.endpoints().find(|(_, endpoint)| !is_secure_endpoint(endpoint)) {
            return Err(discovery(format!(
                "its {name} `{endpoint}` is not an https URL (only loopback addresses may use http)"
            )));
        }
        let oidc =
            Oidc { settings, metadata, http, keys: Mutex::new(Vec::new()), unknown_key_refetch: Mutex::new(None) };
        oidc.refetch_keys().await?;
        Ok(Provider(Arc::new(Inner::Oidc(oidc))))
    }

    pub fn development(&self) -> Option<&DevelopmentIdp> {
        match &*self.0 {
            Inner::Development(idp) => Some(idp),
            Inner::Oidc(_) => None,
        }
    }

    /// Where to send the browser, and the PKCE verifier to keep for the exchange.
    pub fn authorization_url(&self, state: &str, nonce: &str) -> (Url, Option<String>) {
        let (endpoint, settings, pkce) = match &*self.0 {
            Inner::Oidc(oidc) => (
                oidc.metadata.authorization_endpoint.as_str(),
                &oidc.settings,
                oidc.metadata.code_challenge_methods_supported.iter().any(|m| m == "S256"),
            ),
            Inner::Development(idp) => (idp.authorize_endpoint(), idp.settings(), true),
        };
        let Ok(mut url) = Url::parse(endpoint) else { return (settings.redirect_url.clone(), None) };
        let verifier = pkce.then(|| {
            let mut bytes = [0u8; 32];
            let _ = aws_lc_rs::rand::fill(&mut bytes);
            URL_SAFE_NO_PAD.encode(bytes)
        });
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &settings.client_id)
                .append_pair("redirect_uri", settings.redirect_url.as_str())
                .append_pair("scope", &scopes(settings))
                .append_pair("state", state)
                .append_pair("nonce", nonce);
            if let Some(verifier) = &verifier {
                query.append_pair("code_challenge", &challenge(verifier)).append_pair("code_challenge_method", "S256");
            }
            for (name, value) in &settings.request_params {
                query.append_pair(name, value);
            }
            for (name, value) in default_request_params(settings) {
                query.append_pair(name, value);
            }
        }
        (url, verifier)
    }

    /// Trades the code for tokens and checks the ID token.
    pub async fn exchange(&self, code: &str, pkce_verifier: Option<&str>, nonce: &str) -> Result<Identity, OidcError> {
        match &*self.0 {
            Inner::Development(idp) => idp.exchange(code, pkce_verifier, nonce),
            Inner::Oidc(oidc) => {
                let mut form = vec![
                    ("grant_type", "authorization_code".to_owned()),
                    ("code", code.to_owned()),
                    ("redirect_uri", oidc.settings.redirect_url.to_string()),
                ];
                if let Some(verifier) = pkce_verifier {
                    form.push(("code_verifier", verifier.to_owned()));
                }
                let tokens = oidc.token(form).await?;
                oidc.identity(tokens, Some(nonce), true).await
            }
        }
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<Identity, OidcError> {
        match &*self.0 {
            Inner::Development(idp) => idp.refresh(refresh_token),
            Inner::Oidc(oidc) => {
                let form =
                    vec![("grant_type", "refresh_token".to_owned()), ("refresh_token", refresh_token.to_owned())];
                let tokens = oidc.token(form).await?;
                oidc.identity(tokens, None, false).await
            }
        }
    }

    pub async fn revoke(&self, token: &str, hint: TokenHint) -> Result<(), OidcError> {
        match &*self.0 {
            Inner::Development(idp) => {
                idp.revoke(token);
                Ok(())
            }
            Inner::Oidc(oidc) => {
                let Some(endpoint) = &oidc.metadata.revocation_endpoint else { return Ok(()) };
                let hint = match hint {
                    TokenHint::AccessToken => "access_token",
                    TokenHint::RefreshToken => "refresh_token",
                };
                let form = form_encode(&[("token", token.to_owned()), ("token_type_hint", hint.to_owned())]);
                let answer = oidc.http.send(Method::POST, endpoint, Some(form), &oidc.client_auth()).await?;
                if answer.status.is_success() {
                    Ok(())
                } else {
                    Err(OidcError::Token { status: answer.status.as_u16(), error: token_error(&answer.body) })
                }
            }
        }
    }

    /// The provider's userinfo for a session's access token, which the refresher updates users
    /// with (Pomerium's `UpdateUserInfo`); `None` where there is nothing to ask (the development
    /// provider, or no userinfo endpoint). A token the provider refuses is a permanent error.
    pub async fn user_info(&self, access_token: &str) -> Result<Option<Map<String, Value>>, OidcError> {
        let Inner::Oidc(oidc) = &*self.0 else { return Ok(None) };
        let Some(endpoint) = &oidc.metadata.userinfo_endpoint else { return Ok(None) };
        oidc.userinfo(endpoint, access_token).await.map(Some)
    }

    /// Checks an access token a client presents as its bearer credential (`bearer_token_format:
    /// idp_access_token`), as Pomerium's generic OIDC provider does: the provider's userinfo
    /// endpoint must accept it. With `allowed_audiences`, the userinfo's `aud` claim must be one of
    /// them. The userinfo claims.
    pub async fn verify_access_token(
        &self,
        access_token: &str,
        allowed_audiences: Option<&[String]>,
    ) -> Result<Map<String, Value>, OidcError> {
        let Inner::Oidc(oidc) = &*self.0 else {
            return Err(OidcError::Development("access tokens are not accepted as bearer credentials".into()));
        };
        let Some(endpoint) = &oidc.metadata.userinfo_endpoint else {
            return Err(OidcError::UserInfo(
                "the provider has no userinfo endpoint to check access tokens with".into(),
            ));
        };
        let claims = oidc.userinfo(endpoint, access_token).await?;
        if let Some(allowed) = allowed_audiences {
            let audience = claims.get("aud").and_then(Value::as_str);
            if !audience.is_some_and(|aud| allowed.iter().any(|a| a == aud)) {
                return Err(OidcError::UserInfo(
                    "the token's audience is not in idp_access_token_allowed_audiences".into(),
                ));
            }
        }
        if claims.get("sub").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(OidcError::UserInfo("no subject".into()));
        }
        Ok(claims)
    }

    /// Checks an ID token a client presents as its bearer credential (`bearer_token_format:
    /// idp_identity_token`): signed by the provider, issued by it for this client, not expired.
    /// Its claims.
    pub async fn verify_identity_token(&self, raw: &str) -> Result<Map<String, Value>, OidcError> {
        let Inner::Oidc(oidc) = &*self.0 else {
            return Err(OidcError::Development("identity tokens are not accepted as bearer credentials".into()));
        };
        let claims = oidc.verify_id_token(raw, None, jiff::Timestamp::now()).await?;
        if claims.get("sub").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(OidcError::IdToken("no subject".into()));
        }
        Ok(claims)
    }

    pub fn end_session_url(&self, id_token_hint: Option<&str>, post_logout_redirect: &Url, state: &str) -> Option<Url> {
        let Inner::Oidc(oidc) = &*self.0 else { return None };
        let mut url = Url::parse(oidc.metadata.end_session_endpoint.as_deref()?).ok()?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(hint) = id_token_hint {
                query.append_pair("id_token_hint", hint);
            }
            query.append_pair("client_id", &oidc.settings.client_id);
            query.append_pair("post_logout_redirect_uri", post_logout_redirect.as_str());
            if !state.is_empty() {
                query.append_pair("state", state);
            }
        }
        Some(url)
    }
}

/// Providers whose issuer Pomerium knows without `idp_provider_url`.
const KNOWN_ISSUERS: &[(&str, &str)] = &[
    ("google", "https://accounts.google.com"),
    ("gitlab", "https://gitlab.com"),
    ("apple", "https://appleid.apple.com"),
    (AZURE, AZURE_COMMON),
];

/// Microsoft Entra ID (Azure AD), Pomerium's `azure` provider.
const AZURE: &str = "azure";
/// Its multi-tenant endpoint, the default without `idp_provider_url`.
const AZURE_COMMON: &str = "https://login.microsoftonline.com/common/v2.0";
/// The issuer that endpoint's discovery document states, which is not a URL of its own.
const AZURE_COMMON_DISCOVERED_ISSUER: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";

/// Whether ID tokens' issuer goes unchecked: on Azure's multi-tenant endpoint each token names
/// its user's tenant (Pomerium's `SkipIssuerCheck`, pomerium/pomerium#1605). Signature, audience
/// and expiry are still checked.
fn skips_issuer_check(settings: &ProviderSettings) -> bool {
    settings.provider == AZURE && settings.issuer_url.trim_end_matches('/') == AZURE_COMMON
}

/// Authorization request parameters a provider gets when `idp_request_params` sets none: Azure
/// asks which account to use (`prompt=select_account`, Pomerium's default for it).
fn default_request_params(settings: &ProviderSettings) -> &'static [(&'static str, &'static str)] {
    if settings.provider == AZURE && settings.request_params.is_empty() { &[("prompt", "select_account")] } else { &[] }
}

/// Providers Pomerium supports that are not OpenID Connect providers.
const NOT_OIDC: &[&str] = &["github"];

/// The settings with the issuer a known provider has when `idp_provider_url` is not set; a
/// provider that does not speak OpenID Connect is refused by name.
fn with_default_issuer(mut settings: ProviderSettings) -> Result<ProviderSettings, OidcError> {
    if NOT_OIDC.contains(&settings.provider.as_str()) {
        return Err(OidcError::Config(format!(
            "idp_provider `{}` is not an OpenID Connect provider and is not supported by this build; \
             use an OpenID Connect provider (idp_provider: oidc with idp_provider_url)",
            settings.provider
        )));
    }
    if settings.issuer_url.is_empty()
        && let Some((_, issuer)) = KNOWN_ISSUERS.iter().find(|(name, _)| *name == settings.provider)
    {
        settings.issuer_url = (*issuer).to_owned();
    }
    Ok(settings)
}

fn scopes(settings: &ProviderSettings) -> String {
    if settings.scopes.is_empty() { DEFAULT_SCOPES.join(" ") } else { settings.scopes.join(" ") }
}

/// The S256 code challenge of a verifier.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref())
}

fn form_encode(pairs: &[(&str, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))
        .finish()
}

fn token_error(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "unknown_error".to_owned())
}

/// A token endpoint's answer.
#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: String,
    refresh_token: Option<String>,
    expires_in: Option<i64>,
    id_token: Option<String>,
}

impl Oidc {
    fn client_auth(&self) -> Vec<(HeaderName, String)> {
        let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let secret = self.settings.client_secret.as_deref().unwrap_or_default();
        let basic = STANDARD.encode(format!("{}:{}", encode(&self.settings.client_id), encode(secret)));
        vec![(AUTHORIZATION, format!("Basic {basic}"))]
    }

    async fn token(&self, form: Vec<(&str, String)>) -> Result<TokenResponse, OidcError> {
        let answer = self
            .http
            .send(Method::POST, &self.metadata.token_endpoint, Some(form_encode(&form)), &self.client_auth())
            .await?;
        if !answer.status.is_success() {
            return Err(OidcError::Token { status: answer.status.as_u16(), error: token_error(&answer.body) });
        }
        serde_json::from_slice(&answer.body)
            .map_err(|e| OidcError::Token { status: answer.status.as_u16(), error: format!("unreadable answer: {e}") })
    }

    async fn refetch_keys(&self) -> Result<(), OidcError> {
        let answer = self.http.send(Method::GET, &self.metadata.jwks_uri, None, &[]).await?;
        if !answer.status.is_success() {
            return Err(OidcError::Discovery {
                url: self.metadata.jwks_uri.clone(),
                reason: format!("status {}", answer.status),
            });
        }
        let keys = jwt::parse_jwks(&answer.body)
            .map_err(|reason| OidcError::Discovery { url: self.metadata.jwks_uri.clone(), reason })?;
        *self.keys.lock().unwrap_or_else(PoisonError::into_inner) = keys;
        Ok(())
    }

    /// Checks the ID token (when there is one, or when `required`), adds userinfo claims.
    async fn identity(
        &self,
        tokens: TokenResponse,
        nonce: Option<&str>,
        required: bool,
    ) -> Result<Identity, OidcError> {
        let now = jiff::Timestamp::now();
        let (mut claims, id_token) = match &tokens.id_token {
            Some(raw) => {
                let claims = self.verify_id_token(raw, nonce, now).await?;
                let time = |name: &str| {
                    claims
                        .get(name)
                        .and_then(Value::as_i64)
                        .and_then(|s| jiff::Timestamp::from_second(s).ok())
                        .unwrap_or(now)
                };
                let token = IdToken {
                    raw: raw.clone(),
                    issuer: self.metadata.issuer.clone(),
                    subject: claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    issued_at: time("iat"),
                    expires_at: time("exp"),
                };
                (claims, Some(token))
            }
            None if required => return Err(OidcError::IdToken("the token endpoint returned no ID token".into())),
            None => (Map::new(), None),
        };
        if let Some(endpoint) = &self.metadata.userinfo_endpoint {
            match self.userinfo(endpoint, &tokens.access_token).await {
                Ok(info) => {
                    let subject = claims.get("sub").cloned();
                    if subject.is_some() && info.get("sub").is_some() && info.get("sub") != subject.as_ref() {
                        return Err(OidcError::SubjectMismatch);
                    }
                    for (name, value) in info {
                        claims.insert(name, value);
                    }
                }
                // Without an ID token (a refresh may come without one) the subject is userinfo's
                // to tell: failing to ask is the provider in trouble, not a refusal, so it must
                // not end a session.
                Err(error) if id_token.is_none() && error.is_temporary() => {
                    return Err(OidcError::UserInfo(format!("no ID token, and userinfo failed: {error}")));
                }
                Err(error) => tracing::warn!(%error, "userinfo failed; the ID token's claims are used alone"),
            }
        }
        let subject = claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_owned();
        if subject.is_empty() {
            return Err(OidcError::IdToken("no subject".into()));
        }
        Ok(Identity {
            subject,
            claims,
            id_token,
            access_token: tokens.access_token,
            token_type: tokens.token_type,
            refresh_token: tokens.refresh_token,
            expires_at: tokens.expires_in.and_then(|s| now.checked_add(jiff::SignedDuration::from_secs(s)).ok()),
        })
    }

    async fn verify_id_token(
        &self,
        raw: &str,
        nonce: Option<&str>,
        now: jiff::Timestamp,
    ) -> Result<Map<String, Value>, OidcError> {
        let kid = jwt::key_id(raw).map_err(OidcError::IdToken)?;
        let known = |kid: &Option<String>| {
            let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            keys.iter().any(|k| kid.is_none() || k.kid == *kid)
        };
        if !known(&kid) && self.may_refetch_for_unknown_key() {
            // A rotated key: fetch the JWKS once more.
            self.refetch_keys().await?;
        }
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let claims = jwt::verify(raw, &keys).map_err(OidcError::IdToken)?;
        let issuer = (!skips_issuer_check(&self.settings)).then_some(self.metadata.issuer.as_str());
        jwt::check_claims(&claims, issuer, &self.settings.client_id, nonce, now.as_second())
            .map_err(OidcError::IdToken)?;
        Ok(claims)
    }

    /// Whether a token with an unknown key may refetch the JWKS now (and notes that it does).
    fn may_refetch_for_unknown_key(&self) -> bool {
        let mut last = self.unknown_key_refetch.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < UNKNOWN_KEY_REFETCH_INTERVAL) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        true
    }

    async fn userinfo(&self, endpoint: &str, access_token: &str) -> Result<Map<String, Value>, OidcError> {
        let answer =
            self.http.send(Method::GET, endpoint, None, &[(AUTHORIZATION, format!("Bearer {access_token}"))]).await?;
        if matches!(answer.status.as_u16(), 401 | 403) {
            return Err(OidcError::UserInfoRefused { status: answer.status.as_u16() });
        }
        if answer.status.is_server_error() || answer.status.as_u16() == 429 {
            // The provider is in trouble, not the token: try again later.
            return Err(OidcError::Http { url: endpoint.to_owned(), reason: format!("status {}", answer.status) });
        }
        if !answer.status.is_success() {
            return Err(OidcError::UserInfo(format!("status {}", answer.status)));
        }
        match serde_json::from_slice(&answer.body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(OidcError::UserInfo("the answer is not a JSON object".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn settings(provider: &str, issuer: &str) -> ProviderSettings {
        ProviderSettings {
            provider: provider.into(),
            issuer_url: issuer.into(),
            client_id: "client".into(),
            client_secret: None,
            scopes: vec![],
            request_params: BTreeMap::new(),
            redirect_url: Url::parse("https://authenticate.example.com/oauth2/callback").unwrap(),
            ca_pem: None,
            development_users: vec![],
            development_key: None,
        }
    }

    #[test]
    fn known_providers_have_their_issuer_and_others_need_one() {
        assert_eq!(with_default_issuer(settings("google", "")).unwrap().issuer_url, "https://accounts.google.com");
        assert_eq!(with_default_issuer(settings("google", "https://x")).unwrap().issuer_url, "https://x");
        assert_eq!(with_default_issuer(settings("okta", "")).unwrap().issuer_url, "");
        let github = with_default_issuer(settings("github", "")).map(|_| ()).unwrap_err().to_string();
        assert!(github.contains("not an OpenID Connect provider"), "{github}");
    }

    #[test]
    fn azure_has_pomeriums_defaults() {
        let common = with_default_issuer(settings("azure", "")).unwrap();
        assert_eq!(common.issuer_url, "https://login.microsoftonline.com/common/v2.0");
        assert!(skips_issuer_check(&common), "the multi-tenant endpoint's tokens name each tenant");
        assert_eq!(default_request_params(&common), &[("prompt", "select_account")]);
        let tenant = settings("azure", "https://login.microsoftonline.com/f42bce3b-671c-4162-b24c-00ecc7641897/v2.0");
        assert!(!skips_issuer_check(&tenant), "a tenant's endpoint is checked");
        let mut chosen = settings("azure", "");
        chosen.request_params.insert("prompt".into(), "login".into());
        assert!(default_request_params(&chosen).is_empty(), "idp_request_params replace the default");
        assert!(default_request_params(&settings("okta", "https://x")).is_empty());
        assert!(!skips_issuer_check(&settings("oidc", "https://login.microsoftonline.com/common/v2.0")));
    }

    #[test]
    fn an_unchecked_issuer_still_checks_audience_and_expiry() {
        let claims = |iss: &str, aud: &str, exp: i64| {
            serde_json::json!({"iss": iss, "aud": aud, "exp": exp}).as_object().cloned().unwrap()
        };
        let tenant = "https://login.microsoftonline.com/f42bce3b/v2.0";
        assert!(jwt::check_claims(&claims(tenant, "client", 2000), None, "client", None, 1000).is_ok());
        assert!(jwt::check_claims(&claims(tenant, "client", 2000), Some(AZURE_COMMON), "client", None, 1000).is_err());
        assert!(jwt::check_claims(&claims(tenant, "other", 2000), None, "client", None, 1000).is_err());
        assert!(jwt::check_claims(&claims(tenant, "client", 10), None, "client", None, 1000).is_err());
    }

    /// Azure's multi-tenant discovery document names `{tenantid}` as its issuer; a stand-in for
    /// it (Azure cannot run here) on loopback, answering raw HTTP.
    #[tokio::test]
    async fn azures_multi_tenant_discovery_document_is_accepted() {
        use std::io::{BufRead as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let document = serde_json::json!({
            "issuer": AZURE_COMMON_DISCOVERED_ISSUER,
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "jwks_uri": format!("{base}/keys"),
        })
        .to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(4) {
                let mut stream = stream.unwrap();
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                let body = if request_line.contains("/keys") { r#"{"keys":[]}"#.to_owned() } else { document.clone() };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(answer.as_bytes()).unwrap();
            }
        });
        let common = format!("{base}/common/v2.0");
        let provider = Provider::new(settings("azure", &common)).await;
        assert!(provider.is_ok(), "{:?}", provider.err());
        // Another provider given the same document refuses it: the issuer is not the URL asked.
        let error = Provider::new(settings("oidc", &common)).await.unwrap_err().to_string();
        assert!(error.contains("is not the configured one"), "{error}");
    }

    #[tokio::test]
    async fn a_provider_without_an_issuer_says_which_options_it_needs() {
        let error = Provider::new(settings("okta", "")).await.unwrap_err().to_string();
        assert!(error.contains("idp_provider `okta` needs idp_provider_url"), "{error}");
    }
}
