//! The development identity provider (`idp_provider: development`): FOR DEVELOPMENT ONLY. A
//! small OpenID provider inside the authenticate service, at `<authenticate>/.pomerium/dev-idp`,
//! whose login page offers the configured users without a password. The relying party runs the
//! same code flow against it as against a real provider (state, PKCE, nonce, one-time codes,
//! signed ID tokens), so the quickstart exercises the real sign-in path with no network.
//!
//! Its codes and refresh tokens carry what they stand for, signed (HMAC-SHA-256) with a key
//! derived from the shared secret: a code issued by one replica is exchanged on another, and a
//! session made before a restart is still refreshed after it. A code is used once per process;
//! a revoked refresh token is refused by the process that revoked it.

use crate::{DevelopmentUser, IdToken, Identity, OidcError, ProviderSettings};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const CODE_LIFETIME: Duration = Duration::from_secs(60);
const TOKEN_LIFETIME: i64 = 3600;
const MAX_ENTRIES: usize = 10_000;
const PATH: &str = "/.pomerium/dev-idp";

/// An answer of the development provider's pages.
#[derive(Debug)]
pub struct DevResponse {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub location: Option<String>,
    pub body: String,
}

pub struct DevelopmentIdp {
    settings: ProviderSettings,
    issuer: String,
    authorize: String,
    key: EcdsaKeyPair,
    rng: aws_lc_rs::rand::SystemRandom,
    /// Signs codes and refresh tokens.
    token_key: aws_lc_rs::hmac::Key,
    /// Codes already exchanged here, and refresh tokens revoked here, with when.
    spent: Mutex<HashMap<String, Instant>>,
}

/// How long a refresh token lasts.
const REFRESH_LIFETIME: i64 = 7 * 24 * 3600;

impl std::fmt::Debug for DevelopmentIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevelopmentIdp").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

fn random() -> String {
    let mut bytes = [0u8; 24];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

use pages::escape;

fn page(status: StatusCode, body: String) -> DevResponse {
    DevResponse { status, content_type: "text/html; charset=utf-8", location: None, body }
}

fn refuse(reason: &str) -> DevResponse {
    page(
        StatusCode::BAD_REQUEST,
        pages::document("Development identity provider", &format!("<p>{}</p>\n", escape(reason))),
    )
}

impl DevelopmentIdp {
    pub(crate) fn new(settings: &ProviderSettings) -> Result<DevelopmentIdp, OidcError> {
        if settings.development_users.is_empty() {
            return Err(OidcError::Config("idp_provider development needs idp_development_users".into()));
        }
        let origin = settings.redirect_url.origin().ascii_serialization();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| OidcError::Development("cannot make a key".into()))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| OidcError::Development("cannot read its key".into()))?;
        let token_key = match &settings.development_key {
            Some(key) => aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
            None => aws_lc_rs::hmac::Key::generate(aws_lc_rs::hmac::HMAC_SHA256, &rng)
                .map_err(|_| OidcError::Development("cannot make a key".into()))?,
        };
        tracing::warn!(issuer = %format!("{origin}{PATH}"), "the development identity provider is on: FOR DEVELOPMENT ONLY");
        Ok(DevelopmentIdp {
            settings: settings.clone(),
            issuer: format!("{origin}{PATH}"),
            authorize: format!("{origin}{PATH}/authorize"),
            key,
            rng,
            token_key,
            spent: Mutex::new(HashMap::new()),
        })
    }

    /// `payload.signature`, both base64url: what a code or refresh token carries.
    fn seal(&self, payload: &Value) -> String {
        let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        let tag = aws_lc_rs::hmac::sign(&self.token_key, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The payload of a token this provider (or a replica with the same key) sealed, if it is
    /// of `kind`, unexpired and not spent here.
    fn open(&self, token: &str, kind: &str) -> Option<Map<String, Value>> {
        let (payload, tag) = token.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        aws_lc_rs::hmac::verify(&self.token_key, payload.as_bytes(), &tag).ok()?;
        let Value::Object(claims) = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()? else {
            return None;
        };
        let fresh = claims.get("e").and_then(Value::as_i64).is_some_and(|e| e > jiff::Timestamp::now().as_second());
        let spent = self.spent.lock().unwrap_or_else(PoisonError::into_inner).contains_key(token);
        (claims.get("k").and_then(Value::as_str) == Some(kind) && fresh && !spent).then_some(claims)
    }

    /// Marks a code exchanged or a refresh token revoked, in this process.
    fn spend(&self, token: &str) {
        let mut spent = self.spent.lock().unwrap_or_else(PoisonError::into_inner);
        let longest = Duration::from_secs(REFRESH_LIFETIME.unsigned_abs());
        spent.retain(|_, at| at.elapsed() < longest);
        if spent.len() >= MAX_ENTRIES {
            spent.clear();
        }
        spent.insert(token.to_owned(), Instant::now());
    }

    /// The index of the user with this email.
    fn user_index(&self, email: Option<&str>) -> Option<usize> {
        self.settings.development_users.iter().position(|user| Some(user.email.as_str()) == email)
    }

    pub(crate) fn authorize_endpoint(&self) -> &str {
        &self.authorize
    }

    pub(crate) fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    /// Serves `path` (below `/.pomerium/dev-idp`).
    pub fn handle(&self, method: &Method, path: &str, query: Option<&str>, form: &[u8]) -> DevResponse {
        match (method.as_str(), path) {
            ("GET", "/authorize") => self.login_page(query.unwrap_or_default().as_bytes()),
            ("POST", "/authorize") => self.login(form),
            ("GET", "/.well-known/openid-configuration") => {
                let document = json!({
                    "issuer": self.issuer,
                    "authorization_endpoint": self.authorize,
                    "jwks_uri": format!("{}/jwks", self.issuer),
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                    "id_token_signing_alg_values_supported": ["ES256"],
                });
                DevResponse {
                    status: StatusCode::OK,
                    content_type: "application/json",
                    location: None,
                    body: document.to_string(),
                }
            }
            _ => page(StatusCode::NOT_FOUND, pages::document("Not found", "<p>No such page.</p>\n")),
        }
    }

    fn params(bytes: &[u8]) -> HashMap<String, String> {
        url::form_urlencoded::parse(bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    /// The request must come from our relying party, back to its registered redirect.
    fn check(&self, params: &HashMap<String, String>) -> Result<(), &'static str> {
        if params.get("client_id") != Some(&self.settings.client_id) {
            return Err("unknown client_id");
        }
        if params.get("redirect_uri").map(String::as_str) != Some(self.settings.redirect_url.as_str()) {
            return Err("redirect_uri is not the registered one");
        }
        if params.get("response_type").map(String::as_str) != Some("code") {
            return Err("only response_type=code is supported");
        }
        Ok(())
    }

    fn login_page(&self, query: &[u8]) -> DevResponse {
        let params = Self::params(query);
        if let Err(reason) = self.check(&params) {
            return refuse(reason);
        }
        let hidden: String =
            ["client_id", "redirect_uri", "response_type", "state", "nonce", "code_challenge", "code_challenge_method"]
                .iter()
                .filter_map(|name| params.get(*name).map(|v| (name, v)))
                .map(|(name, value)| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", escape(value)))
                .collect();
        let mut forms = String::new();
        for (index, user) in self.settings.development_users.iter().enumerate() {
            let label = match &user.name {
                Some(name) => format!("{} &lt;{}&gt;", escape(name), escape(&user.email)),
                None => escape(&user.email),
            };
            forms.push_str(&format!(
                "<form method=\"post\" action=\"{PATH}/authorize\">{hidden}<input type=\"hidden\" name=\"user\" value=\"{index}\">\
                 <button type=\"submit\">Sign in as {label}</button></form>\n"
            ));
        }
        page(
            StatusCode::OK,
            pages::document(
                "Choose a user",
                &format!(
                    "<p class=\"warning\"><strong>Development identity provider — for development only.</strong> \
                     Anyone can sign in as these users without a password. Configure a real identity provider before \
                     exposing this server.</p>\n{forms}"
                ),
            ),
        )
    }

    fn login(&self, form: &[u8]) -> DevResponse {
        let params = Self::params(form);
        if let Err(reason) = self.check(&params) {
            return refuse(reason);
        }
        let Some(user) = params
            .get("user")
            .and_then(|u| u.parse::<usize>().ok())
            .filter(|u| *u < self.settings.development_users.len())
        else {
            return refuse("no such user");
        };
        let Some(email) = self.settings.development_users.get(user).map(|u| u.email.clone()) else {
            return refuse("no such user");
        };
        let lifetime = i64::try_from(CODE_LIFETIME.as_secs()).unwrap_or(60);
        let code = self.seal(&json!({
            "k": "code",
            "u": email,
            "e": jiff::Timestamp::now().as_second() + lifetime,
            "n": params.get("nonce").cloned().unwrap_or_default(),
            "c": params.get("code_challenge"),
            "r": random(),
        }));
        let mut location = self.settings.redirect_url.clone();
        location
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", params.get("state").map_or("", String::as_str))
            .append_pair("iss", &self.issuer);
        DevResponse {
            status: StatusCode::FOUND,
            content_type: "text/plain",
            location: Some(location.to_string()),
            body: String::new(),
        }
    }

    pub(crate) fn exchange(&self, code: &str, verifier: Option<&str>, nonce: &str) -> Result<Identity, OidcError> {
        let invalid = || OidcError::Token { status: 400, error: "invalid_grant".into() };
        let claims = self.open(code, "code").ok_or_else(invalid)?;
        // Used once, whatever the outcome.
        self.spend(code);
        if let Some(challenge) = claims.get("c").and_then(Value::as_str)
            && verifier.map(crate::challenge).as_deref() != Some(challenge)
        {
            return Err(invalid());
        }
        if claims.get("n").and_then(Value::as_str) != Some(nonce) {
            return Err(OidcError::IdToken("the nonce does not match this sign-in".into()));
        }
        let user = self.user_index(claims.get("u").and_then(Value::as_str)).ok_or_else(invalid)?;
        self.identity(user, Some(nonce))
    }

    pub(crate) fn refresh(&self, token: &str) -> Result<Identity, OidcError> {
        let invalid = || OidcError::Token { status: 400, error: "invalid_grant".into() };
        let claims = self.open(token, "refresh").ok_or_else(invalid)?;
        let user = self.user_index(claims.get("u").and_then(Value::as_str)).ok_or_else(invalid)?;
        self.identity(user, None)
    }

    pub(crate) fn revoke(&self, token: &str) {
        self.spend(token);
    }

    fn identity(&self, index: usize, nonce: Option<&str>) -> Result<Identity, OidcError> {
        let user: &DevelopmentUser = self
            .settings
            .development_users
            .get(index)
            .ok_or_else(|| OidcError::Development("the user is gone".into()))?;
        let subject = user.id.clone().unwrap_or_else(|| user.email.clone());
        let now = jiff::Timestamp::now();
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(subject.clone()));
        claims.insert("email".into(), Value::String(user.email.clone()));
        claims.insert("email_verified".into(), Value::Bool(true));
        if let Some(name) = &user.name {
            claims.insert("name".into(), Value::String(name.clone()));
        }
        claims.insert("groups".into(), Value::Array(user.groups.iter().cloned().map(Value::String).collect()));
        let mut token_claims = claims.clone();
        token_claims.insert("iss".into(), Value::String(self.issuer.clone()));
        token_claims.insert("aud".into(), Value::String(self.settings.client_id.clone()));
        token_claims.insert("iat".into(), Value::from(now.as_second()));
        token_claims.insert("exp".into(), Value::from(now.as_second() + TOKEN_LIFETIME));
        if let Some(nonce) = nonce {
            token_claims.insert("nonce".into(), Value::String(nonce.to_owned()));
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(Value::Object(token_claims).to_string())
        );
        let signature =
            self.key.sign(&self.rng, input.as_bytes()).map_err(|_| OidcError::Development("signing failed".into()))?;
        let raw = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
        let refresh_token = self.seal(&json!({
            "k": "refresh",
            "u": user.email,
            "e": now.as_second() + REFRESH_LIFETIME,
            "r": random(),
        }));
        let expires = now.checked_add(jiff::SignedDuration::from_secs(TOKEN_LIFETIME)).unwrap_or(now);
        Ok(Identity {
            subject: subject.clone(),
            claims,
            id_token: Some(IdToken { raw, issuer: self.issuer.clone(), subject, issued_at: now, expires_at: expires }),
            access_token: random(),
            token_type: "Bearer".into(),
            refresh_token: Some(refresh_token),
            expires_at: Some(expires),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;

    fn settings() -> ProviderSettings {
        ProviderSettings {
            provider: "development".into(),
            issuer_url: String::new(),
            client_id: "pomerium".into(),
            client_secret: None,
            scopes: vec![],
            request_params: Default::default(),
            redirect_url: url::Url::parse("https://authenticate.example.com/oauth2/callback").unwrap(),
            ca_pem: None,
            development_users: vec![DevelopmentUser {
                email: "a@example.com".into(),
                name: Some("<Alice>".into()),
                groups: vec!["eng".into()],
                id: None,
            }],
            development_key: Some(b"a key every replica derives alike".to_vec()),
        }
    }

    #[tokio::test]
    async fn the_code_flow_runs_once_with_the_right_verifier() {
        let provider = crate::Provider::new(settings()).await.unwrap();
        let idp = provider.development().unwrap();
        let (url, verifier) = provider.authorization_url("st", "no");
        let verifier = verifier.unwrap();
        let page = idp.handle(&Method::GET, "/authorize", url.query(), b"");
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("&lt;Alice&gt;") && !page.body.contains("<Alice>"));
        assert!(page.body.contains("for development only"));
        let form: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(url.query_pairs())
            .append_pair("user", "0")
            .finish();
        let answer = idp.handle(&Method::POST, "/authorize", None, form.as_bytes());
        let location = url::Url::parse(&answer.location.unwrap()).unwrap();
        assert!(location.as_str().starts_with("https://authenticate.example.com/oauth2/callback?"));
        let code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
        assert!(provider.exchange(&code, Some("wrong"), "no").await.is_err(), "a wrong verifier");
        // The failed attempt consumed the code.
        assert!(provider.exchange(&code, Some(&verifier), "no").await.is_err());

        let answer = idp.handle(&Method::POST, "/authorize", None, form.as_bytes());
        let location = url::Url::parse(&answer.location.unwrap()).unwrap();
        let code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
        let identity = provider.exchange(&code, Some(&verifier), "no").await.unwrap();
        assert_eq!(identity.claims["email"], "a@example.com");
        assert!(provider.exchange(&code, Some(&verifier), "no").await.is_err(), "a code is used once");
        let refreshed = provider.refresh(identity.refresh_token.as_deref().unwrap()).await.unwrap();
        assert_eq!(refreshed.subject, "a@example.com");
        assert!(provider.refresh("unknown").await.unwrap_err().is_permanent());

        // Another replica (the same key) exchanges a code this one issued, once, and refreshes
        // what this one issued; a provider with another key accepts neither.
        let answer = idp.handle(&Method::POST, "/authorize", None, form.as_bytes());
        let location = url::Url::parse(&answer.location.unwrap()).unwrap();
        let code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
        let replica = crate::Provider::new(settings()).await.unwrap();
        let mut other_key = settings();
        other_key.development_key = Some(b"another secret".to_vec());
        let stranger = crate::Provider::new(other_key).await.unwrap();
        assert!(stranger.exchange(&code, Some(&verifier), "no").await.is_err(), "another key");
        let on_replica = replica.exchange(&code, Some(&verifier), "no").await.unwrap();
        assert!(replica.exchange(&code, Some(&verifier), "no").await.is_err(), "once per process");
        let token = on_replica.refresh_token.unwrap();
        assert_eq!(provider.refresh(&token).await.unwrap().subject, "a@example.com");
        assert!(stranger.refresh(&token).await.is_err());
        provider.revoke(&token, crate::TokenHint::RefreshToken).await.unwrap();
        assert!(provider.refresh(&token).await.unwrap_err().is_permanent(), "revoked here");
        let mut tampered = token.clone();
        tampered.insert(3, if tampered.as_bytes()[3] == b'A' { 'B' } else { 'A' });
        assert!(replica.refresh(&tampered).await.is_err());

        let foreign = form.replace("authenticate.example.com", "evil.example.com");
        let answer = idp.handle(&Method::POST, "/authorize", None, foreign.as_bytes());
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert!(answer.location.is_none());
    }
}
