//! A request's session: the handle from its cookie or headers (system.md §3.4), checked, and the
//! records the policy reads for it (§3.5).

use super::{AuthnSettings, Freshness, SignIn, Unavailable};
use authenticate::handle::SessionHandle;
use http::HeaderMap;
use policy::records::{
    DeviceCredential, DeviceEnrollment, DirectoryUser, MemoryRecords, Records, ServiceAccount, Session, User,
};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// The session a request carries.
#[derive(Debug)]
pub struct RequestSession {
    pub credential: Credential,
    /// Records read from the databroker because the cache lagged behind the handle; they stand
    /// in for the cache's for this session and its user.
    pub fetched: Option<MemoryRecords>,
}

/// What named the session.
#[derive(Debug)]
pub enum Credential {
    /// A session handle (cookie, Pomerium's headers, query).
    Handle(Arc<SessionHandle>),
    /// An identity provider's token ([`super::bearer`]): the session id derived from it.
    IdpToken(String),
}

impl RequestSession {
    /// The session record's id.
    pub fn id(&self) -> &str {
        match &self.credential {
            Credential::Handle(handle) => &handle.id,
            Credential::IdpToken(id) => id,
        }
    }
}

/// Finds the request's session handle and makes sure the records it names can be read. A missing,
/// malformed, forged or expired handle is no session (the policy then asks for a sign-in); only
/// an unreachable databroker is an error.
pub async fn find(
    settings: &AuthnSettings,
    sign_in: &dyn SignIn,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<RequestSession>, Unavailable> {
    let Some(token) = authenticate::cookie::session_token(headers, query, &settings.cookie_name) else {
        return Ok(None);
    };
    let Some(handle) = settings.handles.verify(&token, &settings.shared_key) else { return Ok(None) };
    if !from_this_provider(&handle, &settings.idp_id) {
        tracing::debug!("the session handle names another identity provider; treated as no session");
        return Ok(None);
    }
    // Only a cache that lags the handle costs a call (and an allocation).
    let fetched = match sign_in.fresh(&handle) {
        Freshness::NoStore => return Ok(None),
        Freshness::Cached => None,
        Freshness::Lagging(fetch) => fetch.await?,
    };
    Ok(Some(RequestSession { credential: Credential::Handle(handle), fetched }))
}

/// Whether a handle was made by a sign-in with the identity provider configured now: one that
/// names another (the configuration changed providers) is no session, and its holder signs in
/// again (Pomerium's `ReadSessionHandleAndCheckIDP`). A handle naming none is not checked.
fn from_this_provider(handle: &SessionHandle, idp_id: &str) -> bool {
    handle.idp_id.as_deref().is_none_or(|named| named.is_empty() || named == idp_id)
}

/// The cache's records, with a session and user fetched from the databroker in their place.
#[derive(Debug)]
pub struct Overlay<'a> {
    pub base: &'a MemoryRecords,
    pub fetched: &'a MemoryRecords,
    pub session_id: &'a str,
}

impl Overlay<'_> {
    fn fetched_user(&self, id: &str) -> bool {
        self.fetched.sessions.get(self.session_id).and_then(|s| s.user_id.as_deref()) == Some(id)
    }
}

impl Records for Overlay<'_> {
    fn session(&self, id: &str) -> Option<&Session> {
        if id == self.session_id { self.fetched.session(id) } else { self.base.session(id) }
    }
    fn service_account(&self, id: &str) -> Option<&ServiceAccount> {
        self.base.service_account(id)
    }
    fn user(&self, id: &str) -> Option<&User> {
        if self.fetched_user(id) { self.fetched.user(id).or_else(|| self.base.user(id)) } else { self.base.user(id) }
    }
    fn directory_user(&self, id: &str) -> Option<&DirectoryUser> {
        self.base.directory_user(id)
    }
    fn device_credential(&self, id: &str) -> Option<&DeviceCredential> {
        self.base.device_credential(id)
    }
    fn device_enrollment(&self, id: &str) -> Option<&DeviceEnrollment> {
        self.base.device_enrollment(id)
    }
    fn external(&self, record_type: &str, id: &str) -> Option<&serde_json::Value> {
        self.base.external(record_type, id)
    }
}

/// Session handles already verified, by their exact text. A handle is a pure function of its text
/// under one key (the cache is part of a configuration's settings, so a new key starts afresh),
/// and nothing else about it changes: what changes is the session record it names, which is read
/// every time. Saves the HMAC, the base64 and the JSON of every request after a session's first.
#[derive(Debug, Default)]
pub struct HandleCache {
    verified: RwLock<HashMap<Box<str>, Arc<SessionHandle>, foldhash::fast::RandomState>>,
}

/// Handles kept at most; the cache starts over when full (only verified handles get in, and
/// only the shared secret makes them).
const HANDLE_CAPACITY: usize = 10_000;

impl HandleCache {
    /// The handle `token` holds, if it verifies under `key`.
    pub(crate) fn verify(&self, token: &str, key: &[u8]) -> Option<Arc<SessionHandle>> {
        if let Some(handle) = self.verified.read().unwrap_or_else(PoisonError::into_inner).get(token) {
            return Some(Arc::clone(handle));
        }
        let handle = match SessionHandle::from_jwt(token, key) {
            Ok(handle) => Arc::new(handle),
            Err(error) => {
                tracing::debug!(%error, "the session handle is not valid; treated as no session");
                return None;
            }
        };
        let mut verified = self.verified.write().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= HANDLE_CAPACITY {
            verified.clear();
        }
        verified.insert(token.into(), Arc::clone(&handle));
        Some(handle)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn only_verified_handles_are_kept_and_each_under_its_key() {
        let handle = SessionHandle {
            id: "s".into(),
            user_id: "u".into(),
            idp_id: None,
            issuer: "a".into(),
            audience: vec![],
            issued_at: 1,
            databroker_server_version: 1,
            databroker_record_version: 1,
        };
        let jwt = handle.to_jwt(b"key");
        let cache = HandleCache::default();
        assert!(cache.verify(&jwt, b"other").is_none());
        assert!(cache.verified.read().unwrap().is_empty(), "a refused handle is not kept");
        assert_eq!(cache.verify(&jwt, b"key").unwrap().id, "s");
        assert_eq!(cache.verify(&jwt, b"key").unwrap().id, "s", "from the cache");
        assert!(cache.verify(&format!("{jwt}x"), b"key").is_none(), "another text is verified anew");
    }

    #[test]
    fn a_handle_from_another_identity_provider_is_no_session() {
        let handle = |idp: Option<&str>| SessionHandle {
            id: "s".into(),
            user_id: "u".into(),
            idp_id: idp.map(str::to_owned),
            issuer: "a".into(),
            audience: vec![],
            issued_at: 1,
            databroker_server_version: 1,
            databroker_record_version: 1,
        };
        assert!(from_this_provider(&handle(Some("client-a")), "client-a"));
        assert!(!from_this_provider(&handle(Some("client-a")), "client-b"), "the provider changed");
        assert!(!from_this_provider(&handle(Some("client-a")), ""), "no provider now");
        assert!(from_this_provider(&handle(None), "client-b"), "a handle naming none (a service account's)");
        assert!(from_this_provider(&handle(Some("")), "client-b"));
    }
}
