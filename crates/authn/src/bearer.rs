//! Identity-provider tokens as bearer credentials (`bearer_token_format: idp_access_token` or
//! `idp_identity_token`, Pomerium's `config/session.go` `incomingIDPTokenSessionCreator`).
//!
//! A command-line tool or a service that already holds a token from the identity provider sends
//! it as `Authorization: Bearer <token>` instead of signing in through a browser. The token is
//! checked with the provider once (an access token at its userinfo endpoint, an ID token against
//! its keys), and becomes a session like a signed-in one: a session record and a user record in
//! the databroker, under an id derived from the token, so that every replica, and every later
//! request with the same token, finds it without asking the provider again. Reading the header
//! and the session id are `proxy::authn::bearer`'s.
//!
//! A token the provider does not accept is a 403 and the policy is not evaluated; a provider
//! that cannot be reached is a 503.

use crate::SignInState;
use crate::store::{SessionStore, StoreError};
use authenticate::session::{SESSION_TYPE, StoredIdToken, StoredOAuthToken, StoredSession, StoredUser, USER_TYPE};
use oidc::ProviderSettings;
use policy::records::MemoryRecords;
use proxy::authn::AuthnSettings;
use proxy::authn::bearer::{BearerError, TokenKind, session_id};
use proxy::authn::session::{Credential, RequestSession};
use proxy::runtime::SharedRecords;
use serde_json::{Map, Value};

impl From<StoreError> for BearerError {
    fn from(error: StoreError) -> BearerError {
        BearerError::Unavailable(error.to_string())
    }
}

/// The session of an identity provider's token: the one made for it before (in the cache, or
/// in the databroker), or a new one once the provider accepts the token.
pub(crate) async fn session(
    settings: &AuthnSettings,
    authn: &SignInState,
    provider: Option<&ProviderSettings>,
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
    let outcome = session_once(settings, authn, provider, store, kind, token, audiences, id.clone(), now).await;
    if let Err(BearerError::Refused(reason)) = &outcome {
        authn.bearer.remember_refusal(&id, reason);
    }
    outcome
}

/// [`session`] once the token's flight is ours: the session made before, or a new one.
#[expect(clippy::too_many_arguments, reason = "the request's parts, passed down one level")]
async fn session_once(
    settings: &AuthnSettings,
    authn: &SignInState,
    provider: Option<&ProviderSettings>,
    store: &SessionStore,
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
    let claims = verify(authn, provider, kind, token, allowed_audiences).await?;
    let session = new_session(settings, kind, token, id.clone(), &claims, now);
    let mut user = store.load_user(&session.user_id).await?.unwrap_or_else(|| StoredUser {
        id: session.user_id.clone(),
        name: None,
        email: None,
        claims: Map::new(),
    });
    crate::store::apply_claims(&mut user, &claims);
    store.persist(&session, &user).await?;
    tracing::info!(session = %session.id, user = %session.user_id, kind = ?kind, "a session from an identity provider token");
    let fetched = overlay_records(&session, Some(&user));
    Ok(RequestSession { credential: Credential::IdpToken(id), fetched: Some(fetched) })
}

/// Asks the provider whether it accepts the token; its claims when it does.
async fn verify(
    authn: &SignInState,
    provider: Option<&ProviderSettings>,
    kind: TokenKind,
    token: &str,
    allowed_audiences: Option<&[String]>,
) -> Result<Map<String, Value>, BearerError> {
    let Some(provider_settings) = provider else {
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

/// What the bearer path keeps across requests (part of [`SignInState`]): the checks in flight, and
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

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
}
