//! The identity sent upstream (system.md §3.6, §3.7): `X-Pomerium-Jwt-Assertion`, signed with
//! the signing key, and `X-Pomerium-Claim-*` from `jwt_claims_headers`.
//!
//! Signing costs tens of microseconds, so a signed assertion is reused for the same session,
//! host and key for a minute of its five-minute life (benchmark B2's cached case).

use super::AuthnSettings;
use authenticate::assertion::{self, AssertionSubject};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// How long a signed assertion is reused (it is valid for five minutes).
const REUSE_SECONDS: i64 = 60;
/// Entries kept at most; the cache starts over when full.
const CAPACITY: usize = 100_000;

/// What a request's identity headers and templates are made of.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub jwt: Arc<str>,
    pub claims: Arc<Map<String, Value>>,
    pub id_token: Option<String>,
    pub access_token: Option<String>,
}

/// A signed assertion and its claims.
type Signed = (Arc<str>, Arc<Map<String, Value>>);

#[derive(Debug)]
struct Cached {
    jwt: Arc<str>,
    claims: Arc<Map<String, Value>>,
    issued_at: i64,
}

/// Signed assertions by (session id, host name, key id).
#[derive(Debug, Default)]
pub(crate) struct AssertionCache {
    entries: Mutex<HashMap<(String, String, String), Cached>>,
}

impl AssertionCache {
    fn get(&self, key: &(String, String, String), now: i64) -> Option<Signed> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = entries.get(key)?;
        (now.saturating_sub(cached.issued_at) < REUSE_SECONDS && cached.issued_at <= now)
            .then(|| (Arc::clone(&cached.jwt), Arc::clone(&cached.claims)))
    }

    pub(crate) fn clear(&self) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    fn put(&self, key: (String, String, String), cached: Cached) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key, cached);
    }
}

/// The identity of a request with session `session_id` (or none, for a public route) to host
/// `hostname`. `None` only when signing fails, which a valid key never does.
pub(crate) fn identity(
    settings: &AuthnSettings,
    cache: &AssertionCache,
    records: &dyn policy::records::Records,
    session_id: Option<&str>,
    hostname: &str,
    now: i64,
) -> Option<Identity> {
    let session = session_id.and_then(|id| records.session(id));
    let tokens = |s: &policy::records::Session| {
        (s.id_token.as_ref().map(|t| t.0.clone()), s.access_token.as_ref().map(|t| t.0.clone()))
    };
    let (id_token, access_token) = session.map(tokens).unwrap_or_default();
    let key = (
        session.map(|s| s.id.clone()).unwrap_or_default(),
        hostname.to_owned(),
        settings.signing_key.key_id().to_owned(),
    );
    if let Some((jwt, claims)) = cache.get(&key, now) {
        return Some(Identity { jwt, claims, id_token, access_token });
    }
    let user_id = session.and_then(|s| s.user_id.as_deref());
    let subject = AssertionSubject {
        session_id: session.map_or("", |s| s.id.as_str()),
        session,
        user: user_id.and_then(|id| records.user(id)),
        directory_user: user_id.and_then(|id| records.directory_user(id)),
    };
    let extra: Vec<&str> = settings.extra_claims.iter().map(String::as_str).collect();
    let claims = assertion::assertion_claims(&subject, hostname, settings.issuer_format, &extra, now);
    let jwt: Arc<str> = match settings.signing_key.sign(&claims) {
        Ok(jwt) => jwt.into(),
        Err(error) => {
            tracing::error!(%error, "signing the identity assertion failed");
            return None;
        }
    };
    let claims = Arc::new(claims);
    cache.put(key, Cached { jwt: Arc::clone(&jwt), claims: Arc::clone(&claims), issued_at: now });
    Some(Identity { jwt, claims, id_token, access_token })
}

/// `X-Pomerium-Claim-*` values for `identity`, by header name.
pub(crate) fn claim_headers(settings: &AuthnSettings, identity: &Identity) -> Vec<(String, String)> {
    assertion::claim_headers(&identity.claims, &settings.claim_headers)
}
