//! Sessions and users as databroker records (system.md §3.3 `PersistSession`, §3.5).
//!
//! Writes go to the databroker (in process or over gRPC). Reads on the request path come from
//! the record cache the policy reads too; a session handle carries the versions its session was
//! written at, and a cache that has not caught up with them is waited for briefly, then bypassed
//! (read-your-writes, as Pomerium's `authorize/databroker.go`).

use authenticate::session::{SESSION_TYPE, StoredSession, StoredUser, USER_TYPE};
use databroker::client::{Broker, Status, SyncedCache};
use databroker::record::{Record, Versions};
use policy::records::MemoryRecords;
use proxy::authn::Unavailable;
use std::sync::Arc;
use std::time::Duration;

/// How long a request waits for the cache to reach its session's version before reading the
/// databroker itself.
const FRESHNESS_WAIT: Duration = Duration::from_millis(500);

/// Where sessions live: the databroker, and this process's cache of it when there is one.
#[derive(Clone, Debug)]
pub struct SessionStore {
    broker: Broker,
    cache: Option<Arc<SyncedCache>>,
}

/// A store failure: the databroker could not be reached or refused the call.
#[derive(Debug, thiserror::Error)]
#[error("the databroker {action}: {message}")]
pub struct StoreError {
    action: &'static str,
    message: String,
}

impl StoreError {
    fn new(action: &'static str, status: &Status) -> StoreError {
        StoreError { action, message: status.message().to_owned() }
    }
}

impl SessionStore {
    pub fn new(broker: Broker, cache: Option<Arc<SyncedCache>>) -> SessionStore {
        SessionStore { broker, cache }
    }

    /// Writes the user and the session in one put; the versions go into the session handle.
    pub async fn persist(&self, session: &StoredSession, user: &StoredUser) -> Result<Versions, StoreError> {
        let records = vec![
            Record::new(USER_TYPE, user.id.clone(), user.to_data()),
            Record::new(SESSION_TYPE, session.id.clone(), session.to_data()),
        ];
        let written = self.broker.put(records).await.map_err(|s| StoreError::new("did not save the session", &s))?;
        let version = written.records.iter().map(|r| r.version).max().unwrap_or_default();
        Ok(Versions { server_version: written.server_version, latest_record_version: version })
    }

    /// Replaces a session (after a refresh), and its user when given.
    pub async fn update(&self, session: &StoredSession, user: Option<&StoredUser>) -> Result<(), StoreError> {
        let mut records = vec![Record::new(SESSION_TYPE, session.id.clone(), session.to_data())];
        if let Some(user) = user {
            records.push(Record::new(USER_TYPE, user.id.clone(), user.to_data()));
        }
        self.broker.put(records).await.map_err(|s| StoreError::new("did not update the session", &s))?;
        Ok(())
    }

    /// Replaces a user (the refresher's user info updates).
    pub async fn update_user(&self, user: &StoredUser) -> Result<(), StoreError> {
        let records = vec![Record::new(USER_TYPE, user.id.clone(), user.to_data())];
        self.broker.put(records).await.map_err(|s| StoreError::new("did not update the user", &s))?;
        Ok(())
    }

    /// Ends a session everywhere: a tombstone, which every replica's cache follows.
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.broker
            .put(vec![Record::tombstone(SESSION_TYPE, id)])
            .await
            .map_err(|s| StoreError::new("did not delete the session", &s))?;
        Ok(())
    }

    /// The session as the databroker has it now (not the cache).
    pub async fn load(&self, id: &str) -> Result<Option<StoredSession>, StoreError> {
        let record =
            self.broker.get(SESSION_TYPE, id).await.map_err(|s| StoreError::new("did not return the session", &s))?;
        Ok(record.filter(|r| !r.is_deleted()).and_then(|r| StoredSession::from_data(&r.data).ok()))
    }

    /// The user as the databroker has it now.
    pub async fn load_user(&self, id: &str) -> Result<Option<StoredUser>, StoreError> {
        let record =
            self.broker.get(USER_TYPE, id).await.map_err(|s| StoreError::new("did not return the user", &s))?;
        Ok(record.filter(|r| !r.is_deleted()).and_then(|r| StoredUser::from_data(&r.data).ok()))
    }

    /// Every session now, and the versions to follow changes from (the refresher).
    pub async fn session_snapshot(&self) -> Result<(Vec<StoredSession>, Versions), StoreError> {
        let snapshot = self
            .broker
            .latest(Some(SESSION_TYPE))
            .await
            .map_err(|s| StoreError::new("did not list the sessions", &s))?;
        let sessions = snapshot
            .records
            .iter()
            .filter(|r| !r.is_deleted())
            .filter_map(|r| StoredSession::from_data(&r.data).ok())
            .collect();
        Ok((sessions, snapshot.versions))
    }

    /// The sessions' changes after `from`, as they happen.
    pub async fn session_changes(&self, from: Versions) -> Result<databroker::client::ChangeFeed, StoreError> {
        self.broker
            .feed(from, Some(SESSION_TYPE))
            .await
            .map_err(|s| StoreError::new("did not stream session changes", &s))
    }

    /// Takes the named lease when it is free; its id, to renew it with.
    pub async fn acquire_lease(&self, name: &str, duration: Duration) -> Result<Option<String>, StoreError> {
        self.broker.acquire_lease(name, duration).await.map_err(|s| StoreError::new("did not grant the lease", &s))
    }

    /// Keeps a lease; `false` when another holder has it now.
    pub async fn renew_lease(&self, name: &str, id: &str, duration: Duration) -> Result<bool, StoreError> {
        self.broker.renew_lease(name, id, duration).await.map_err(|s| StoreError::new("did not renew the lease", &s))
    }

    /// Whether the cache holds `versions` now (the request path's common case, which costs no
    /// wait and no allocation).
    pub fn cached(&self, versions: Versions) -> bool {
        self.cache.as_ref().is_some_and(|cache| {
            let held = cache.versions();
            held.server_version == versions.server_version
                && held.latest_record_version >= versions.latest_record_version
        })
    }

    /// Read-your-writes for a request whose cache lags (see [`SessionStore::cached`]): waits for
    /// the cache to hold `versions` (`None`), else reads the session and its user from the
    /// databroker, as records that stand in for the cache's.
    pub async fn fresh(&self, id: &str, versions: Versions) -> Result<Option<MemoryRecords>, Unavailable> {
        if let Some(cache) = &self.cache {
            let held = cache.versions();
            // A handle from another server version (a databroker that was cleared or replaced)
            // is never caught up with: read the databroker at once rather than wait. Before its
            // first sync the cache has no server version yet, and is worth the wait.
            let other_server = held.server_version != 0 && held.server_version != versions.server_version;
            if !other_server && Box::pin(cache.wait_for(versions, FRESHNESS_WAIT)).await {
                return Ok(None);
            }
        }
        let (session, user) = self.fetch(id).await.map_err(|error| Unavailable(error.to_string()))?;
        let mut records = MemoryRecords::default();
        if let Some(session) = session {
            let _ = records.upsert(SESSION_TYPE, &session.id, &session.to_data());
        }
        if let Some(user) = user {
            let _ = records.upsert(USER_TYPE, &user.id, &user.to_data());
        }
        Ok(Some(records))
    }

    /// The session and its user, read from the databroker.
    async fn fetch(&self, id: &str) -> Result<(Option<StoredSession>, Option<StoredUser>), StoreError> {
        let session = self.load(id).await?;
        let user = match session.as_ref().map(|s| s.user_id.clone()) {
            Some(user_id) if !user_id.is_empty() => self.load_user(&user_id).await?,
            _ => None,
        };
        Ok((session, user))
    }
}

/// A user's name, email and claims from an identity provider's claims (Pomerium's
/// `fillUserFromIDPClaims`, `UpdateUserInfo`): what the claims hold replaces what the user had.
pub(crate) fn apply_claims(user: &mut StoredUser, claims: &serde_json::Map<String, serde_json::Value>) {
    let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    if let Some(name) = text("name") {
        user.name = Some(name);
    }
    if let Some(email) = text("email") {
        user.email = Some(email);
    }
    for (name, value) in authenticate::session::claims_from(claims) {
        user.claims.insert(name, value);
    }
}
