//! Pomerium's stateless flow (`internal/authenticateflow/stateless.go`), used with a hosted
//! authenticate service (or `DEBUG_FORCE_AUTHENTICATE_FLOW=stateless`), on both sides:
//!
//! - **A cluster** (route hosts): a sign-in redirect carries the request sealed (HPKE, V2) for
//!   the authenticate service's key, fetched from its `/.well-known/pomerium/hpke-public-key`
//!   (kept a minute); `/.pomerium/callback/` opens the identity profile sealed back, checks it
//!   was sealed by that key and is in time (and, in this process, not used before), writes the
//!   session and user records to the local databroker and sets the session cookie.
//! - **The authenticate service**: `/.pomerium/sign_in` accepts a sealed request from any
//!   cluster (its public key comes with the request), runs the identity provider's code flow as
//!   the stateful flow does, then seals the identity profile (without the refresh token) to the
//!   cluster's key and sends the browser to the cluster's callback.
//!
//! `/.well-known/pomerium/hpke-public-key` serves this server's key (derived from the shared
//! secret) on every host.

use crate::SignInState;
use crate::endpoints;
use crate::refusal::Refusal;
use authenticate::handle::SessionHandle;
use authenticate::hpke::{self, PublicKey, Version};
use authenticate::profile::Profile;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use proxy::ProxyBody;
use proxy::authn::AuthnSettings;
use proxy::authn::endpoints::ControlRequest;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use url::Url;

/// How long a fetched key is used (the endpoint's `Cache-Control: max-age=60`).
const KEY_MAX_AGE: Duration = Duration::from_secs(60);
/// How soon a key is fetched again after a failure, or after a callback sealed by another key.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// The validity of a sealed sign-in request or callback (`signInExpiry`).
const VALIDITY_MS: i64 = 5 * 60 * 1000;
/// At most this many used callbacks are remembered.
const MAX_USED: usize = 100_000;
/// What this server says it is in `pomerium_version`.
const VERSION: &str = concat!("pomerium-rs ", env!("CARGO_PKG_VERSION"));

/// What the stateless flow keeps across requests and reloads.
#[derive(Default)]
pub(crate) struct StatelessState {
    /// The authenticate service's key: from which URL, and when it was fetched.
    key: Mutex<Option<(String, PublicKey, Instant)>>,
    /// The last failed fetch (URL, error, when): not tried again for a few seconds, so that a
    /// burst of sign-ins does not wait on an unreachable service one by one.
    failed: Mutex<Option<(String, String, Instant)>>,
    /// The HTTP client, for the CA it was built with.
    fetcher: Mutex<Option<(Option<Vec<u8>>, oidc::Fetcher)>>,
    /// Digests of the callbacks accepted, with when they expire (unix ms): a callback URL opens
    /// one session once.
    used: Mutex<HashMap<[u8; 32], i64>>,
}

impl std::fmt::Debug for StatelessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatelessState")
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StatelessState {
    /// Records a callback as used; false when it was used before.
    fn first_use(&self, sealed: &str, expires_ms: i64, now_ms: i64) -> bool {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, sealed.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        let mut used = lock(&self.used);
        if used.len() >= MAX_USED {
            used.retain(|_, expiry| *expiry > now_ms);
        }
        if used.len() >= MAX_USED {
            return false;
        }
        used.insert(key, expires_ms).is_none()
    }
}

/// The authenticate service's HPKE key: cached for a minute, else fetched.
pub(crate) async fn authenticate_key(settings: &AuthnSettings, authn: &SignInState) -> Result<PublicKey, String> {
    key(settings, authn, KEY_MAX_AGE).await
}

/// The key, fetched again when the cached one is older than `max_age`.
async fn key(settings: &AuthnSettings, authn: &SignInState, max_age: Duration) -> Result<PublicKey, String> {
    let url = settings.hpke_key_url.as_str();
    if let Some((from, key, at)) = lock(&authn.stateless.key).as_ref()
        && from == url
        && at.elapsed() < max_age
    {
        return Ok(key.clone());
    }
    if let Some((from, error, at)) = lock(&authn.stateless.failed).as_ref()
        && from == url
        && at.elapsed() < RETRY_AFTER
    {
        return Err(error.clone());
    }
    let fetched = fetch(settings, authn, url).await;
    match &fetched {
        Ok(key) => *lock(&authn.stateless.key) = Some((url.to_owned(), key.clone(), Instant::now())),
        Err(error) => *lock(&authn.stateless.failed) = Some((url.to_owned(), error.clone(), Instant::now())),
    }
    fetched
}

async fn fetch(settings: &AuthnSettings, authn: &SignInState, url: &str) -> Result<PublicKey, String> {
    let fetcher = {
        let mut slot = lock(&authn.stateless.fetcher);
        match slot.as_ref() {
            Some((ca, fetcher)) if *ca == settings.ca_pem => fetcher.clone(),
            _ => {
                let fetcher = oidc::Fetcher::new(settings.ca_pem.as_deref()).map_err(|e| e.to_string())?;
                *slot = Some((settings.ca_pem.clone(), fetcher.clone()));
                fetcher
            }
        }
    };
    let (status, body) = fetcher.get(url).await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    PublicKey::from_bytes(&body).map_err(|_| format!("{url} did not answer a 32-byte X25519 key"))
}

async fn key_or_cached(settings: &AuthnSettings, authn: &SignInState, cached: PublicKey) -> PublicKey {
    key(settings, authn, RETRY_AFTER).await.unwrap_or(cached)
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn pair(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

/// A random UUID (v4) for `pomerium_request_uuid`.
fn request_uuid() -> String {
    let mut bytes = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let part = |range: std::ops::Range<usize>| hex.get(range).unwrap_or_default().to_owned();
    format!("{}-{}-{}-{}-{}", part(0..8), part(8..12), part(12..16), part(16..20), part(20..32))
}

/// `urlutil.SignInURL`: the authenticate service's `/.pomerium/sign_in` with the request sealed
/// (V2) for its key; `extra` adds `pomerium_callback_uri` and `pomerium_programmatic`.
pub(crate) async fn sign_in_url(
    settings: &AuthnSettings,
    authn: &SignInState,
    redirect: &Url,
    idp_id: Option<&str>,
    extra: Vec<(String, String)>,
) -> Result<Url, String> {
    let key = authenticate_key(settings, authn).await?;
    let mut values = extra;
    values.push(pair("pomerium_redirect_uri", redirect.as_str()));
    values.push(pair("pomerium_idp_id", idp_id.unwrap_or(&settings.idp_id)));
    values.push(pair("pomerium_version", VERSION));
    values.push(pair("pomerium_request_uuid", request_uuid()));
    values.extend(hpke::time_parameters(now_ms(), VALIDITY_MS));
    let sealed = hpke::seal_values(Version::V2, &settings.hpke_key, &key, &values).map_err(|e| e.to_string())?;
    let mut url = settings.authenticate_path("/.pomerium/sign_in");
    url.set_query(Some(&authenticate::signed_url::go_encode(&sealed)));
    Ok(url)
}

/// `/.well-known/pomerium/hpke-public-key`: the raw 32 bytes, as Pomerium's handler serves them.
pub(crate) fn public_key_response(settings: &AuthnSettings, request: &ControlRequest<'_>) -> Response<ProxyBody> {
    let bytes = settings.hpke_key.public_key().as_bytes().to_vec();
    // Go's hash/fnv New64 (FNV-1).
    let hash =
        bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| h.wrapping_mul(0x0000_0100_0000_01b3) ^ u64::from(*b));
    let etag = format!("\"{hash:x}\"");
    let matches = request
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if matches {
        endpoints::text(StatusCode::NOT_MODIFIED, "application/octet-stream", bytes::Bytes::new())
    } else {
        endpoints::text(StatusCode::OK, "application/octet-stream", bytes)
    };
    let out = response.headers_mut();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    response
}

fn query_pairs(url: &Url) -> Vec<(String, String)> {
    url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// Whether the request's query is sealed (a hosted sign-in request, or a stateless callback).
pub(crate) fn is_sealed(url: &Url) -> bool {
    hpke::sealed_version(&query_pairs(url)).is_some()
}

fn absolute(text: Option<&str>) -> Option<Url> {
    Url::parse(text?).ok().filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
}

// ---- the authenticate service

/// `/.pomerium/sign_in` with a sealed request (`Stateless.SignIn`): with a session on this
/// host, the identity profile sealed back to the cluster; without, the provider's code flow,
/// which returns here.
pub(crate) async fn hosted_sign_in(cx: &endpoints::Context<'_>, request: &ControlRequest<'_>) -> Response<ProxyBody> {
    let settings = cx.settings;
    let opened = match hpke::open_values(&settings.hpke_key, &query_pairs(request.url)) {
        Ok(opened) => opened,
        Err(error) => {
            return Refusal::CannotOpen { what: "the sealed sign-in request", reason: error.to_string() }
                .respond(request);
        }
    };
    if let Err(error) = hpke::check_time_parameters(&opened.values, now_ms()) {
        return Refusal::OutOfTime { what: "the sign-in request", reason: error.to_string() }.respond(request);
    }
    let Some(redirect) = absolute(opened.get("pomerium_redirect_uri")) else {
        return Refusal::NoRedirectUri { what: "the sign-in request" }.respond(request);
    };
    let callback = match opened.get("pomerium_callback_uri") {
        Some(text) => match absolute(Some(text)) {
            Some(url) => url,
            None => {
                return Refusal::InvalidCallbackUri.respond(request);
            }
        },
        None => {
            let mut url = redirect.clone();
            url.set_path("/.pomerium/callback/");
            url.set_query(None);
            url.set_fragment(None);
            url
        }
    };
    let Some((handle, stored)) = endpoints::authenticate_session(cx, request.headers).await else {
        return endpoints::start_provider_sign_in(cx, request).await;
    };
    // The provider id the cluster asked for, echoed as Pomerium does: the cluster's sessions
    // name its own identity provider id.
    let provider_id = opened.get("pomerium_idp_id").unwrap_or_default();
    let profile = Profile::from_session(&stored, provider_id, profile_claims(&stored));
    let mut values = vec![
        pair("pomerium_redirect_uri", redirect.as_str()),
        pair("pomerium_identity_profile", profile.to_json()),
        pair("pomerium_version", VERSION),
    ];
    if opened.get("pomerium_programmatic").is_some() {
        values.push(pair("pomerium_programmatic", "true"));
    }
    values.extend(hpke::time_parameters(now_ms(), VALIDITY_MS));
    let sealed = match hpke::seal_values(opened.version, &settings.hpke_key, &opened.sender, &values) {
        Ok(sealed) => sealed,
        Err(error) => {
            return Refusal::SealIdentity(error.to_string()).respond(request);
        }
    };
    let mut location = callback;
    let mut query = query_pairs(&location);
    query.extend(sealed);
    location.set_query(Some(&authenticate::signed_url::go_encode(&query)));
    tracing::info!(
        session = %handle.id,
        cluster = %opened.sender.to_base64(),
        host = redirect.host_str().unwrap_or_default(),
        "identity sealed for a cluster"
    );
    endpoints::redirect(location.as_str())
}

/// The profile's claims: the session's (kept as lists), a one-element list read as its value,
/// and the ID token's own claims as the provider wrote them.
fn profile_claims(stored: &authenticate::session::StoredSession) -> Map<String, Value> {
    let mut claims: Map<String, Value> = stored
        .claims
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::Array(items) if items.len() == 1 => items.first().cloned().unwrap_or(Value::Null),
                other => other.clone(),
            };
            (k.clone(), value)
        })
        .collect();
    let payload = stored
        .id_token
        .as_ref()
        .and_then(|t| t.raw.split('.').nth(1).map(str::to_owned))
        .and_then(|part| base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, part).ok())
        .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
        .unwrap_or_default();
    claims.extend(payload);
    claims
}

// ---- a cluster

/// `/.pomerium/callback/` in the stateless flow (`Stateless.Callback`).
pub(crate) async fn route_callback(cx: &endpoints::Context<'_>, request: &ControlRequest<'_>) -> Response<ProxyBody> {
    let settings = cx.settings;
    let pairs = query_pairs(request.url);
    let opened = match hpke::open_values(&settings.hpke_key, &pairs) {
        Ok(opened) => opened,
        Err(error) => {
            return Refusal::CannotOpen { what: "the callback", reason: error.to_string() }.respond(request);
        }
    };
    let key = match authenticate_key(settings, cx.authn).await {
        Ok(key) => key,
        Err(error) => {
            tracing::warn!(%error, "the authenticate service's key is not available");
            return Refusal::AuthenticateKeyUnavailable.respond(request);
        }
    };
    // A key that changed within the cached minute (a new shared secret there) is fetched again,
    // at most every few seconds.
    let key = if opened.sender.same_as(&key) { key } else { key_or_cached(settings, cx.authn, key).await };
    if !opened.sender.same_as(&key) {
        return Refusal::ForeignSealer.respond(request);
    }
    let now = now_ms();
    if let Err(error) = hpke::check_time_parameters(&opened.values, now) {
        return Refusal::OutOfTime { what: "the callback", reason: error.to_string() }.respond(request);
    }
    let profile = match Profile::from_json(opened.get("pomerium_identity_profile").unwrap_or_default()) {
        Ok(profile) => profile,
        Err(error) => return Refusal::InvalidProfile(error.to_string()).respond(request),
    };
    let Some(user_id) = profile.user_id() else {
        return Refusal::ProfileWithoutUser.respond(request);
    };
    let programmatic = opened.get("pomerium_programmatic") == Some("true");
    let Some(mut redirect_to) = absolute(opened.get("pomerium_redirect_uri")) else {
        return Refusal::NoRedirectUri { what: "the callback" }.respond(request);
    };
    if !endpoints::allowed_redirect(settings, &redirect_to, programmatic) {
        return Refusal::ForeignHost { parameter: "pomerium_redirect_uri" }.respond(request);
    }
    let Some(store) = &cx.authn.store else {
        return Refusal::NoSessionStore.respond(request);
    };
    let sealed = pairs.iter().find(|(k, _)| k == "q" || k == "pomerium_hpke_query").map_or("", |(_, v)| v.as_str());
    let expires = opened.get("pomerium_expiry").and_then(|e| e.parse::<i64>().ok()).unwrap_or(now);
    if !cx.authn.stateless.first_use(sealed, expires.saturating_add(VALIDITY_MS), now) {
        return Refusal::CallbackReused.respond(request);
    }
    let issued = jiff::Timestamp::from_second(cx.now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let audience = vec![request.hostname.to_ascii_lowercase()];
    let (mut session, user) =
        profile.to_records(authenticate::csrf::new_token(), user_id, issued, settings.cookie_expire, audience.clone());
    // The session belongs to this cluster's provider id (what its handles are checked against),
    // whatever the authenticate service calls its own.
    session.idp_id = Some(settings.idp_id.clone()).filter(|id| !id.is_empty());
    let versions = match store.persist(&session, &user).await {
        Ok(versions) => versions,
        Err(error) => {
            tracing::warn!(%error, "the session could not be saved");
            return Refusal::SessionNotSaved.respond(request);
        }
    };
    let handle = SessionHandle {
        id: session.id.clone(),
        user_id: session.user_id.clone(),
        idp_id: session.idp_id.clone(),
        issuer: request.hostname.to_ascii_lowercase(),
        audience,
        issued_at: cx.now,
        databroker_server_version: versions.server_version,
        databroker_record_version: versions.latest_record_version,
    };
    tracing::info!(session = %session.id, user = %session.user_id, "signed in through the authenticate service");
    let jwt = handle.to_jwt(&settings.shared_key);
    if programmatic {
        redirect_to.query_pairs_mut().append_pair("pomerium_jwt", &jwt);
    }
    let mut response = endpoints::redirect(redirect_to.as_str());
    match authenticate::cookie::set_cookies(&settings.cookie, &settings.cookie_name, &jwt, cx.now) {
        Ok(cookies) => endpoints::add_cookies(&mut response, cookies),
        Err(error) => {
            return Refusal::SessionCookie(error.to_string()).respond(request);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn a_callback_is_accepted_once() {
        let state = StatelessState::default();
        assert!(state.first_use("abc", 10, 0));
        assert!(!state.first_use("abc", 10, 0));
        assert!(state.first_use("abd", 10, 0));
    }

    #[test]
    fn request_uuids_look_like_uuids() {
        let id = request_uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(id.chars().nth(14), Some('4'));
        assert_ne!(id, request_uuid());
    }

    #[test]
    fn the_etag_is_go_fnv64() {
        // fnv.New64() of "a" is 0xaf63bd4c8601b7be.
        let hash =
            b"a".iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| h.wrapping_mul(0x0000_0100_0000_01b3) ^ u64::from(*b));
        assert_eq!(hash, 0xaf63_bd4c_8601_b7be);
    }
}
