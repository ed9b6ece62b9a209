//! The identity sent upstream (system.md §3.6, §3.7): `X-Pomerium-Jwt-Assertion`, signed with
//! the signing key, and `X-Pomerium-Claim-*` from `jwt_claims_headers`.
//!
//! Signing costs tens of microseconds, so a signed assertion is reused for the same session,
//! host and key for a minute of its five-minute life (benchmark B2's cached case), and only while
//! the session and user records it was made from are the ones the cache holds (a user whose
//! groups changed at the provider gets a new assertion on their next request).

use super::AuthnSettings;
use authenticate::assertion::{self, AssertionSubject};
use http::HeaderValue;
use policy::records::Principal;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// How long a signed assertion is reused (it is valid for five minutes).
const REUSE_SECONDS: i64 = 60;
/// Assertions kept at most, over every session, host and key: a client sending requests for
/// many hosts (a wildcard route passing identity, even anonymously) or many sessions cannot
/// grow the cache past it (an entry is about a kilobyte).
const CAPACITY: usize = 8192;
/// What a request's identity headers and templates are made of.
#[derive(Debug, Clone)]
pub struct Identity {
    pub jwt: Arc<str>,
    /// The assertion as a header value, made once per signature (cloning it counts a reference).
    pub header: HeaderValue,
    pub claims: Arc<Map<String, Value>>,
    /// The session's tokens, read only for routes whose templates use them.
    pub id_token: Option<String>,
    pub access_token: Option<String>,
}

/// A signed assertion: its text, as a header value, and its claims.
type Signed = (Arc<str>, HeaderValue, Arc<Map<String, Value>>);

#[derive(Debug)]
struct Cached {
    /// The revisions of the session and user records the claims were made from.
    revisions: Revisions,
    jwt: Arc<str>,
    header: HeaderValue,
    claims: Arc<Map<String, Value>>,
    issued_at: i64,
}

/// The session's and its user's record revisions (0 for none).
type Revisions = (u64, u64);

type Map3<T> = HashMap<Box<str>, T, foldhash::fast::RandomState>;

/// Signed assertions by session id, then host name, then key id: each level a hash lookup by
/// `&str`, so a lookup allocates nothing and costs the same however many hosts a session (or
/// the anonymous session, `""`) has. Bounded by [`CAPACITY`] entries in all.
#[derive(Debug, Default)]
pub struct AssertionCache {
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_session: Map3<Map3<Map3<Cached>>>,
    len: usize,
}

impl Entries {
    /// Makes room for one more: first drops what is too old to be reused, and if the cache is
    /// still mostly full (a flood of fresh entries), starts over. Each sweep is paid for by the
    /// inserts that filled the cache, so an insert costs O(1) amortized.
    fn make_room(&mut self, now: i64) {
        if self.len < CAPACITY {
            return;
        }
        let mut kept = 0;
        self.by_session.retain(|_, hosts| {
            hosts.retain(|_, keys| {
                keys.retain(|_, cached| now.saturating_sub(cached.issued_at) < REUSE_SECONDS);
                kept += keys.len();
                !keys.is_empty()
            });
            !hosts.is_empty()
        });
        self.len = kept;
        if self.len >= CAPACITY / 4 * 3 {
            self.by_session.clear();
            self.len = 0;
        }
    }
}

impl AssertionCache {
    fn get(&self, session: &str, host: &str, key_id: &str, revisions: Revisions, now: i64) -> Option<Signed> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = entries.by_session.get(session)?.get(host)?.get(key_id)?;
        (cached.revisions == revisions
            && now.saturating_sub(cached.issued_at) < REUSE_SECONDS
            && cached.issued_at <= now)
            .then(|| (Arc::clone(&cached.jwt), cached.header.clone(), Arc::clone(&cached.claims)))
    }

    pub(crate) fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.by_session.clear();
        entries.len = 0;
    }

    fn put(&self, session: &str, host: &str, key_id: &str, cached: Cached) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.make_room(cached.issued_at);
        let keys = entries.by_session.entry(session.into()).or_default().entry(host.into()).or_default();
        let added = keys.insert(key_id.into(), cached).is_none();
        if added {
            entries.len += 1;
        }
    }

    /// Entries held (for tests and benchmarks).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len
    }
}

/// The identity of a request with session `session_id` (or none, for a public route) to host
/// `hostname`; with the session's tokens when `tokens` (a template reads them). `None` only when
/// signing fails, which a valid key never does.
pub fn identity(
    settings: &AuthnSettings,
    cache: &AssertionCache,
    records: &dyn policy::records::Records,
    session_id: Option<&str>,
    hostname: &str,
    now: i64,
    tokens: bool,
) -> Option<Identity> {
    // The session named, the one it impersonates, or a service account (Pomerium's
    // `getSessionOrServiceAccount`).
    let at = jiff::Timestamp::from_second(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let (session, user_id) = match session_id.and_then(|id| policy::records::resolve_session(records, Some(id), at)) {
        Some(Principal::Session(session)) => (Some(session), session.user_id.as_deref()),
        Some(Principal::ServiceAccount(account)) => (None, account.user_id.as_deref()),
        None => (None, None),
    };
    let (id_token, access_token) = match session.filter(|_| tokens) {
        Some(s) => (s.id_token.as_ref().map(|t| t.0.clone()), s.access_token.as_ref().map(|t| t.0.clone())),
        None => (None, None),
    };
    let session_key = session_id.filter(|_| user_id.is_some() || session.is_some()).unwrap_or("");
    let key_id = settings.signing_key.key_id();
    let user = user_id.and_then(|id| records.user(id));
    let revisions = (session.map_or(0, |s| s.revision), user.map_or(0, |u| u.revision));
    if let Some((jwt, header, claims)) = cache.get(session_key, hostname, key_id, revisions, now) {
        return Some(Identity { jwt, header, claims, id_token, access_token });
    }
    let subject = AssertionSubject {
        session_id: session_key,
        session,
        user_id: user_id.unwrap_or_default(),
        user,
        directory_user: user_id.and_then(|id| records.directory_user(id)),
    };
    let extra: Vec<&str> = settings.extra_claims.iter().map(String::as_str).collect();
    let claims = assertion::assertion_claims(&subject, hostname, settings.issuer_format, &extra, now);
    let signed = settings.signing_key.sign(&claims).map_err(|e| e.to_string()).and_then(|jwt| {
        let header = HeaderValue::from_str(&jwt).map_err(|e| e.to_string())?;
        Ok((Arc::<str>::from(jwt), header))
    });
    let (jwt, header) = match signed {
        Ok(signed) => signed,
        Err(error) => {
            tracing::error!(%error, "signing the identity assertion failed");
            return None;
        }
    };
    let claims = Arc::new(claims);
    cache.put(
        session_key,
        hostname,
        key_id,
        Cached {
            revisions,
            jwt: Arc::clone(&jwt),
            header: header.clone(),
            claims: Arc::clone(&claims),
            issued_at: now,
        },
    );
    Some(Identity { jwt, header, claims, id_token, access_token })
}

/// `X-Pomerium-Claim-*` values for `identity`, by header name.
pub fn claim_headers(settings: &AuthnSettings, identity: &Identity) -> Vec<(String, String)> {
    assertion::claim_headers(&identity.claims, &settings.claim_headers)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn cached(issued_at: i64) -> Cached {
        Cached {
            revisions: (1, 1),
            jwt: Arc::from("a.b.c"),
            header: HeaderValue::from_static("a.b.c"),
            claims: Arc::new(Map::new()),
            issued_at,
        }
    }

    #[test]
    fn many_hosts_stay_within_the_bound_and_keep_being_found() {
        let cache = AssertionCache::default();
        for n in 0..50_000 {
            let host = format!("h{n}.example.com");
            cache.put("", &host, "k", cached(1000));
            assert!(cache.len() <= CAPACITY);
            assert!(cache.get("", &host, "k", (1, 1), 1000).is_some(), "the newest entry is found");
        }
        cache.put("s", "app.example.com", "k", cached(1000));
        assert!(cache.get("s", "app.example.com", "k", (1, 1), 1059).is_some());
        assert!(cache.get("s", "app.example.com", "k", (1, 1), 1060).is_none(), "reused for a minute");
        assert!(cache.get("s", "app.example.com", "k", (1, 2), 1000).is_none(), "the user record changed");
        assert!(cache.get("s", "app.example.com", "other", (1, 1), 1000).is_none(), "another key");
    }

    #[test]
    fn a_full_cache_drops_what_is_too_old_first() {
        let cache = AssertionCache::default();
        for n in 0..CAPACITY - 1 {
            cache.put("old", &format!("h{n}"), "k", cached(0));
        }
        cache.put("fresh", "app", "k", cached(100));
        // Full: the next insert sweeps the old entries out and keeps the fresh one.
        cache.put("new", "app", "k", cached(100));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("fresh", "app", "k", (1, 1), 100).is_some());
    }
}
