//! Identity-provider tokens as bearer credentials (`bearer_token_format: idp_access_token` or
//! `idp_identity_token`, Pomerium's `config/session.go` `incomingIDPTokenSessionCreator`).
//!
//! A command-line tool or a service that already holds a token from the identity provider sends
//! it as `Authorization: Bearer <token>` instead of signing in through a browser. The token is
//! checked with the provider once (an access token at its userinfo endpoint, an ID token against
//! its keys), and becomes a session like a signed-in one: a session record and a user record in
//! the databroker, under an id derived from the token, so that every replica, and every later
//! request with the same token, finds it without asking the provider again.
//!
//! A token the provider does not accept is a 403 and the policy is not evaluated; a provider
//! that cannot be reached is a 503.

use super::session::{Credential, RequestSession};
use super::store::StoreError;
use super::{Authn, AuthnSettings};
use crate::runtime::SharedRecords;
use authenticate::session::{SESSION_TYPE, StoredIdToken, StoredOAuthToken, StoredSession, StoredUser, USER_TYPE};
use config::options::BearerTokenFormat;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use policy::records::MemoryRecords;
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// What a request's `Authorization: Bearer` means on its route.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bearer<'a> {
    /// Not a token to read here (no header, or the default format): the session, if any, comes
    /// from the session handle.
    NotRead,
    /// An identity provider's token, to be checked with the provider.
    IdpToken(TokenKind, &'a str),
    /// `bearer_token_format: jwt`, which needs `jwt_allowed_issuers` (not supported yet).
    UnsupportedJwt,
    /// `bearer_token_format: jwt` with both a session cookie and a bearer token: Pomerium answers
    /// 400, since a browser session and a machine credential must not mix.
    CookieBesideToken,
}

/// Which token the provider issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Access,
    Identity,
}

/// Why a bearer token gave no session.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BearerError {
    /// The token is not accepted: 403, and the policy is not evaluated.
    #[error("{0}")]
    Refused(String),
    /// The identity provider or the databroker cannot be asked now: 503.
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for BearerError {
    fn from(error: StoreError) -> BearerError {
        BearerError::Unavailable(error.to_string())
    }
}

/// Reads the request's bearer token as the route's `bearer_token_format` says.
pub(crate) fn read<'a>(headers: &'a HeaderMap, format: Option<BearerTokenFormat>, cookie_name: &str) -> Bearer<'a> {
    let kind = match format {
        Some(BearerTokenFormat::IdpAccessToken) => Some(TokenKind::Access),
        Some(BearerTokenFormat::IdpIdentityToken) => Some(TokenKind::Identity),
        Some(BearerTokenFormat::Jwt) => None,
        Some(BearerTokenFormat::Default) | None => return Bearer::NotRead,
    };
    let Some(token) = bearer_token(headers) else { return Bearer::NotRead };
    match kind {
        Some(kind) => Bearer::IdpToken(kind, token),
        None if authenticate::cookie::read_cookie(headers, cookie_name).is_some() => Bearer::CookieBesideToken,
        None => Bearer::UnsupportedJwt,
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case), if not empty. A
/// `Pomerium-…` token is a session handle of ours (in any case, to be safe): it is never taken
/// to the identity provider, where it would be disclosed.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let scheme = value.get(..7)?;
    let token = value.get(7..)?;
    let is_handle = token.get(..9).is_some_and(|prefix| prefix.eq_ignore_ascii_case("pomerium-"));
    (scheme.eq_ignore_ascii_case("bearer ") && !token.is_empty() && !is_handle).then_some(token)
}

/// The session of an identity provider's token: the one made for it before (in the cache, or
/// in the databroker), or a new one once the provider accepts the token.
pub(crate) async fn session(
    settings: &AuthnSettings,
    authn: &Authn,
    records: &SharedRecords,
    kind: TokenKind,
    token: &str,
    allowed_audiences: Option<&[String]>,
) -> Result<RequestSession, BearerError> {
    let idp_id = Some(settings.idp_id.as_str()).filter(|id| !id.is_empty());
    let audiences = allowed_audiences.filter(|_| kind == TokenKind::Access);
    let id = session_id(kind, idp_id, audiences, token);
    let now = jiff::Timestamp::now();
    if policy::records::resolve_session(&*records.read(), Some(&id), now).is_some() {
        return Ok(RequestSession { credential: Credential::IdpToken(id), fetched: None });
    }
    if let Some(reason) = authn.bearer.refused(&id) {
        return Err(BearerError::Refused(reason));
    }
    let Some(store) = &authn.store else {
        return Err(BearerError::Unavailable("no databroker to keep sessions in".to_owned()));
    };
    // One check with the provider per token at a time: concurrent requests with a new token wait
    // for the first, then find the session it made.
    // The boarding pass leaves the flight when dropped, also when the client goes away midway.
    let boarding = authn.bearer.board(&id);
    let _turn = boarding.flight.lock().await;
    if let Some(reason) = authn.bearer.refused(&id) {
        return Err(BearerError::Refused(reason));
    }
    // Every new token costs a call to the databroker and one to the provider: at most
    // CHECKS_AT_ONCE at a time over all clients, so that a flood of made-up tokens can neither
    // pile up calls to the provider nor hold unbounded state here. Waiting is bounded too.
    let Ok(Ok(_permit)) = tokio::time::timeout(CHECK_WAIT, authn.bearer.checks.acquire()).await else {
        return Err(BearerError::Unavailable("too many new bearer tokens are being checked; try again".to_owned()));
    };
    let outcome = session_once(settings, authn, store, kind, token, audiences, id.clone(), now).await;
    if let Err(BearerError::Refused(reason)) = &outcome {
        authn.bearer.remember_refusal(&id, reason);
    }
    outcome
}

/// [`session`] once the token's flight is ours: the session made before, or a new one.
#[expect(clippy::too_many_arguments, reason = "the request's parts, passed down one level")]
async fn session_once(
    settings: &AuthnSettings,
    authn: &Authn,
    store: &super::SessionStore,
    kind: TokenKind,
    token: &str,
    allowed_audiences: Option<&[String]>,
    id: String,
    now: jiff::Timestamp,
) -> Result<RequestSession, BearerError> {
    if let Some(existing) = store.load(&id).await?.filter(|s| s.expires_at.is_none_or(|at| at > now)) {
        let user = store.load_user(&existing.user_id).await?;
        let fetched = overlay_records(&existing, user.as_ref());
        return Ok(RequestSession { credential: Credential::IdpToken(id), fetched: Some(fetched) });
    }
    let claims = verify(settings, authn, kind, token, allowed_audiences).await?;
    let session = new_session(settings, kind, token, id.clone(), &claims, now);
    let mut user = store.load_user(&session.user_id).await?.unwrap_or_else(|| StoredUser {
        id: session.user_id.clone(),
        name: None,
        email: None,
        claims: Map::new(),
    });
    super::store::apply_claims(&mut user, &claims);
    store.persist(&session, &user).await?;
    tracing::info!(session = %session.id, user = %session.user_id, kind = ?kind, "a session from an identity provider token");
    let fetched = overlay_records(&session, Some(&user));
    Ok(RequestSession { credential: Credential::IdpToken(id), fetched: Some(fetched) })
}

/// Asks the provider whether it accepts the token; its claims when it does.
async fn verify(
    settings: &AuthnSettings,
    authn: &Authn,
    kind: TokenKind,
    token: &str,
    allowed_audiences: Option<&[String]>,
) -> Result<Map<String, Value>, BearerError> {
    let Some(provider_settings) = &settings.provider else {
        return Err(BearerError::Refused("no identity provider is configured to check bearer tokens with".to_owned()));
    };
    let provider = authn.provider(provider_settings).await.map_err(|error| {
        tracing::warn!(%error, "the identity provider cannot be reached to check a bearer token");
        BearerError::Unavailable("the identity provider cannot be reached".to_owned())
    })?;
    let verified = match kind {
        TokenKind::Access => provider.verify_access_token(token, allowed_audiences).await,
        TokenKind::Identity => provider.verify_identity_token(token).await,
    };
    verified.map_err(|error| match error {
        oidc::OidcError::Http { .. } | oidc::OidcError::Discovery { .. } => {
            tracing::warn!(%error, "the identity provider cannot be reached to check a bearer token");
            BearerError::Unavailable("the identity provider cannot be reached".to_owned())
        }
        refused => {
            tracing::info!(error = %refused, kind = ?kind, "a bearer token was refused");
            let what = match kind {
                TokenKind::Access => "access token",
                TokenKind::Identity => "identity token",
            };
            BearerError::Refused(format!("the bearer token is not a valid {what} of the identity provider: {refused}"))
        }
    })
}

/// The session of a token the provider accepted (`newSessionFromIDPClaims`): it lasts as long as
/// the token says (`exp`), else `cookie_expire`; it is never refreshed.
fn new_session(
    settings: &AuthnSettings,
    kind: TokenKind,
    token: &str,
    id: String,
    claims: &Map<String, Value>,
    now: jiff::Timestamp,
) -> StoredSession {
    let time = |name: &str| claims.get(name).and_then(Value::as_i64).and_then(|s| jiff::Timestamp::from_second(s).ok());
    let lifetime =
        jiff::SignedDuration::try_from(settings.cookie_expire).unwrap_or(jiff::SignedDuration::from_hours(14));
    let issued_at = time("iat").unwrap_or(now);
    let expires_at = time("exp").or_else(|| now.checked_add(lifetime).ok());
    let subject = claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_owned();
    let audience = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let (oauth_token, id_token) = match kind {
        TokenKind::Access => (
            Some(StoredOAuthToken {
                access_token: token.to_owned(),
                token_type: "Bearer".to_owned(),
                expires_at,
                refresh_token: None,
            }),
            None,
        ),
        TokenKind::Identity => (
            None,
            Some(StoredIdToken {
                issuer: claims.get("iss").and_then(Value::as_str).unwrap_or_default().to_owned(),
                subject: subject.clone(),
                expires_at,
                issued_at: Some(issued_at),
                raw: token.to_owned(),
            }),
        ),
    };
    StoredSession {
        id,
        user_id: subject,
        idp_id: Some(settings.idp_id.clone()).filter(|id| !id.is_empty()),
        issued_at: Some(issued_at),
        expires_at,
        accessed_at: Some(now),
        id_token,
        oauth_token,
        claims: authenticate::session::claims_from(claims),
        audience,
        refresh_disabled: true,
    }
}

/// Records that stand in for the cache's until it has caught up with the databroker.
fn overlay_records(session: &StoredSession, user: Option<&StoredUser>) -> MemoryRecords {
    let mut records = MemoryRecords::default();
    let _ = records.upsert(SESSION_TYPE, &session.id, &session.to_data());
    if let Some(user) = user {
        let _ = records.upsert(USER_TYPE, &user.id, &user.to_data());
    }
    records
}

/// Pomerium's session id for a token (`getAccessTokenSessionID`, `getIdentityTokenSessionID`):
/// a name-based UUID (version 5) of the token, in a namespace per token kind and per identity
/// provider, so that the same token always finds the same session and a token alone never
/// reveals it.
///
/// Beyond Pomerium: with `idp_access_token_allowed_audiences`, the audiences (sorted) are part of
/// the namespace too. Pomerium's ids leave them out, so a session made for a token on a route
/// without an audience list is then accepted on a route whose list the token fails; here each
/// list gets its own sessions, each checked against it.
pub(crate) fn session_id(kind: TokenKind, idp_id: Option<&str>, audiences: Option<&[String]>, token: &str) -> String {
    let mut namespace = match kind {
        TokenKind::Access => ACCESS_TOKEN_NAMESPACE,
        TokenKind::Identity => IDENTITY_TOKEN_NAMESPACE,
    };
    if let Some(idp_id) = idp_id {
        namespace = uuid_v5(&namespace, idp_id.as_bytes());
    }
    if let Some(audiences) = audiences {
        // A marker first, so that an empty list differs from no list.
        namespace = uuid_v5(&namespace, b"idp_access_token_allowed_audiences");
        let mut sorted: Vec<&String> = audiences.iter().collect();
        sorted.sort();
        for audience in sorted {
            namespace = uuid_v5(&namespace, audience.as_bytes());
        }
    }
    format_uuid(&uuid_v5(&namespace, token.as_bytes()))
}

/// What the bearer path keeps across requests (part of [`Authn`]): the checks in flight, and
/// the tokens the provider refused lately, so that a client retrying a bad token does not turn
/// each retry into a request to the provider.
#[derive(Debug)]
pub(crate) struct BearerState {
    flights: std::sync::Mutex<std::collections::HashMap<String, Flight>>,
    refusals: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, String)>>,
    /// Checks of new tokens in progress, over all clients ([`CHECKS_AT_ONCE`]).
    checks: tokio::sync::Semaphore,
}

impl Default for BearerState {
    fn default() -> Self {
        BearerState {
            flights: std::sync::Mutex::default(),
            refusals: std::sync::Mutex::default(),
            checks: tokio::sync::Semaphore::new(CHECKS_AT_ONCE),
        }
    }
}

/// New tokens checked with the provider at once, at most.
const CHECKS_AT_ONCE: usize = 32;
/// How long a new token waits for its turn before the request gets a 503.
const CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

type Flight = std::sync::Arc<tokio::sync::Mutex<()>>;

/// A place on a token's flight; dropping it leaves, and the last to leave takes the flight off
/// the map, so that the map holds only checks in progress.
struct Boarding<'a> {
    state: &'a BearerState,
    id: String,
    flight: Flight,
}

impl Drop for Boarding<'_> {
    fn drop(&mut self) {
        let mut flights = self.state.flights.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Ours and the map's, no one else's.
        if std::sync::Arc::strong_count(&self.flight) <= 2 {
            flights.remove(&self.id);
        }
    }
}

/// How long a refused token is answered from memory.
const REFUSAL_MEMORY: std::time::Duration = std::time::Duration::from_secs(60);
/// Refusals kept at most; the memory starts over when full.
const REFUSAL_CAPACITY: usize = 10_000;

impl BearerState {
    /// Joins the token's flight (the one check in progress for it, or a new one).
    fn board(&self, id: &str) -> Boarding<'_> {
        let mut flights = self.flights.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let flight = std::sync::Arc::clone(flights.entry(id.to_owned()).or_default());
        Boarding { state: self, id: id.to_owned(), flight }
    }

    fn refused(&self, id: &str) -> Option<String> {
        let refusals = self.refusals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        refusals.get(id).filter(|(at, _)| at.elapsed() < REFUSAL_MEMORY).map(|(_, reason)| reason.clone())
    }

    fn remember_refusal(&self, id: &str, reason: &str) {
        let mut refusals = self.refusals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if refusals.len() >= REFUSAL_CAPACITY {
            refusals.clear();
        }
        refusals.insert(id.to_owned(), (std::time::Instant::now(), reason.to_owned()));
    }
}

/// Pomerium's namespaces: `0194f6f8-e760-76a0-8917-e28ac927a34d` and
/// `0194f6f9-aec0-704e-bb4a-51054f17ad17`.
const ACCESS_TOKEN_NAMESPACE: [u8; 16] =
    [0x01, 0x94, 0xf6, 0xf8, 0xe7, 0x60, 0x76, 0xa0, 0x89, 0x17, 0xe2, 0x8a, 0xc9, 0x27, 0xa3, 0x4d];
const IDENTITY_TOKEN_NAMESPACE: [u8; 16] =
    [0x01, 0x94, 0xf6, 0xf9, 0xae, 0xc0, 0x70, 0x4e, 0xbb, 0x4a, 0x51, 0x05, 0x4f, 0x17, 0xad, 0x17];

/// RFC 9562 §5.5: SHA-1 of the namespace and the name, with the version and variant bits set.
fn uuid_v5(namespace: &[u8; 16], name: &[u8]) -> [u8; 16] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(namespace);
    context.update(name);
    let digest = context.finish();
    let mut uuid = [0u8; 16];
    for (byte, digested) in uuid.iter_mut().zip(digest.as_ref()) {
        *byte = *digested;
    }
    uuid[6] = (uuid[6] & 0x0f) | 0x50;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
fn format_uuid(uuid: &[u8; 16]) -> String {
    let mut text = String::with_capacity(36);
    for (index, byte) in uuid.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use http::HeaderValue;

    #[test]
    fn session_ids_are_pomeriums() {
        // The values Pomerium's own tests pin (config/session_test.go `Test_getTokenSessionID`), so
        // that a Go Pomerium and this server sharing a databroker find the same session.
        assert_eq!(session_id(TokenKind::Access, None, None, "TOKEN"), "532b0a3d-b413-50a0-8c9f-e6eb340a05d3");
        assert_eq!(session_id(TokenKind::Identity, None, None, "TOKEN"), "e0b8096c-54dd-5623-8098-5488f9c302db");
        assert_eq!(session_id(TokenKind::Access, Some("IDP1"), None, "TOKEN"), "9c99d1d0-805e-51cb-b808-772ab654268b");
        assert_eq!(
            session_id(TokenKind::Identity, Some("IDP1"), None, "TOKEN"),
            "0fe0e289-40bb-5ffe-b328-e290e043a652"
        );
    }

    #[test]
    fn each_audience_list_has_its_own_sessions() {
        let list = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let plain = session_id(TokenKind::Access, None, None, "TOKEN");
        let empty = session_id(TokenKind::Access, None, Some(&list(&[])), "TOKEN");
        let ab = session_id(TokenKind::Access, None, Some(&list(&["a", "b"])), "TOKEN");
        let ba = session_id(TokenKind::Access, None, Some(&list(&["b", "a"])), "TOKEN");
        let a = session_id(TokenKind::Access, None, Some(&list(&["a"])), "TOKEN");
        assert_ne!(plain, empty, "an empty list is not no list");
        assert_eq!(ab, ba, "the order does not matter");
        assert_ne!(ab, a);
        assert_ne!(plain, a);
    }

    #[tokio::test]
    async fn flights_are_forgotten_once_everyone_left_and_refusals_remembered() {
        let state = BearerState::default();
        let first = state.board("s");
        let second = state.board("s");
        assert!(std::sync::Arc::ptr_eq(&first.flight, &second.flight), "one flight per token");
        drop(first);
        assert_eq!(state.flights.lock().unwrap().len(), 1, "someone still waits");
        drop(second);
        assert!(state.flights.lock().unwrap().is_empty());
        // A request given up while it waits (its future dropped) leaves too.
        let held = state.board("t");
        let guard = held.flight.lock().await;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), async {
            let boarding = state.board("t");
            let _turn = boarding.flight.lock().await;
        })
        .await;
        assert!(waiting.is_err(), "it waited behind the first");
        drop(guard);
        drop(held);
        assert!(state.flights.lock().unwrap().is_empty(), "nothing left behind");
        assert_eq!(state.refused("s"), None);
        state.remember_refusal("s", "no");
        assert_eq!(state.refused("s").as_deref(), Some("no"));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_format_decides_whether_a_bearer_token_is_read() {
        let bearer = headers(&[("authorization", "Bearer abc.def")]);
        assert_eq!(read(&bearer, None, "_pomerium"), Bearer::NotRead);
        assert_eq!(read(&bearer, Some(BearerTokenFormat::Default), "_pomerium"), Bearer::NotRead);
        assert_eq!(
            read(&bearer, Some(BearerTokenFormat::IdpAccessToken), "_pomerium"),
            Bearer::IdpToken(TokenKind::Access, "abc.def")
        );
        assert_eq!(
            read(&headers(&[("authorization", "bearer abc")]), Some(BearerTokenFormat::IdpIdentityToken), "_pomerium"),
            Bearer::IdpToken(TokenKind::Identity, "abc")
        );
        for other in ["Basic abc", "Bearer ", "Pomerium abc", "Bearer", "Bearer Pomerium-handle", "bearer pomerium-x"] {
            let map = headers(&[("authorization", other)]);
            assert_eq!(read(&map, Some(BearerTokenFormat::IdpAccessToken), "_pomerium"), Bearer::NotRead, "{other}");
        }
        assert_eq!(read(&HeaderMap::new(), Some(BearerTokenFormat::IdpAccessToken), "_pomerium"), Bearer::NotRead);
    }

    proptest::proptest! {
        /// Any header bytes: a token is read only from a `Bearer` value, never a panic.
        #[test]
        fn any_authorization_header_is_read_without_panicking(value in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut map = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                map.insert(AUTHORIZATION, value);
            }
            for format in [BearerTokenFormat::IdpAccessToken, BearerTokenFormat::IdpIdentityToken, BearerTokenFormat::Jwt] {
                if let Bearer::IdpToken(_, token) = read(&map, Some(format), "_pomerium") {
                    proptest::prop_assert!(!token.is_empty());
                    proptest::prop_assert!(map[AUTHORIZATION].to_str().unwrap().to_ascii_lowercase().starts_with("bearer "));
                }
            }
        }
    }

    #[test]
    fn a_jwt_route_refuses_a_cookie_with_a_bearer_token() {
        let both = headers(&[("authorization", "Bearer x"), ("cookie", "_pomerium=h")]);
        assert_eq!(read(&both, Some(BearerTokenFormat::Jwt), "_pomerium"), Bearer::CookieBesideToken);
        let other_cookie = headers(&[("authorization", "Bearer x"), ("cookie", "theme=dark")]);
        assert_eq!(read(&other_cookie, Some(BearerTokenFormat::Jwt), "_pomerium"), Bearer::UnsupportedJwt);
        assert_eq!(
            read(&headers(&[("cookie", "_pomerium=h")]), Some(BearerTokenFormat::Jwt), "_pomerium"),
            Bearer::NotRead
        );
    }
}
