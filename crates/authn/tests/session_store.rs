//! The session store's read-your-writes on a real (in-memory) databroker and its synced cache:
//! a handle the cache holds costs no call, one ahead of it is waited for briefly and then read
//! from the databroker, and one from another databroker is read at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

use authenticate::session::{StoredSession, StoredUser};
use authn::SessionStore;
use databroker::client::{Broker, SyncedCache};
use databroker::record::Versions;
use policy::records::Records;
use proxy::runtime::SharedRecords;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every wait in these tests is bounded by this.
const BOUND: Duration = Duration::from_secs(10);

fn session(id: &str, user_id: &str) -> (StoredSession, StoredUser) {
    let now = jiff::Timestamp::now();
    let session = StoredSession {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        idp_id: None,
        issued_at: Some(now),
        expires_at: now.checked_add(jiff::SignedDuration::from_hours(1)).ok(),
        accessed_at: Some(now),
        id_token: None,
        oauth_token: None,
        claims: serde_json::Map::new(),
        audience: vec![],
        refresh_disabled: false,
    };
    let user = StoredUser {
        id: user_id.to_owned(),
        name: Some("Alice".to_owned()),
        email: Some("alice@example.com".to_owned()),
        claims: serde_json::Map::new(),
    };
    (session, user)
}

#[tokio::test]
async fn a_lagging_cache_is_waited_for_then_bypassed_and_a_current_one_is_read() {
    let storage = databroker::open(&databroker::Backend::Memory).await.unwrap();
    let broker = Broker::Local(storage);
    let records = SharedRecords::default();
    let cache = SyncedCache::new(Arc::clone(&records.0), &[]);
    let task = cache.spawn(broker.clone());
    let store = SessionStore::new(broker.clone(), Some(Arc::clone(&cache)));

    let (stored, user) = session("s1", "u1");
    let versions = tokio::time::timeout(BOUND, store.persist(&stored, &user)).await.unwrap().unwrap();
    assert!(tokio::time::timeout(BOUND, cache.wait_for(versions, BOUND)).await.unwrap(), "the cache follows");

    // Caught up: the cache answers, with no call and no wait.
    assert!(store.cached(versions));
    let earlier = Versions { latest_record_version: versions.latest_record_version.saturating_sub(1), ..versions };
    assert!(store.cached(earlier), "an older handle is caught up with too");

    // Ahead of the cache (a write the cache has not seen): waited for briefly, then read from
    // the databroker; the records stand in for the cache's.
    let ahead = Versions { latest_record_version: versions.latest_record_version + 1000, ..versions };
    assert!(!store.cached(ahead));
    let started = Instant::now();
    let fetched = tokio::time::timeout(BOUND, store.fresh("s1", ahead)).await.unwrap().unwrap().expect("read");
    assert!(started.elapsed() >= Duration::from_millis(400), "the cache was waited for first");
    assert_eq!(fetched.session("s1").and_then(|s| s.user_id.as_deref()), Some("u1"));
    assert!(fetched.user("u1").is_some(), "with its user");

    // A handle from another databroker (another server version) is never caught up with: read
    // at once.
    let other = Versions { server_version: versions.server_version + 1, ..versions };
    assert!(!store.cached(other));
    let started = Instant::now();
    let fetched = tokio::time::timeout(BOUND, store.fresh("s1", other)).await.unwrap().unwrap().expect("read");
    assert!(started.elapsed() < Duration::from_millis(400), "not waited for: {:?}", started.elapsed());
    assert!(fetched.session("s1").is_some());

    // A session the databroker does not have: no records, not an error.
    let fetched = tokio::time::timeout(BOUND, store.fresh("gone", other)).await.unwrap().unwrap().expect("read");
    assert!(fetched.session("gone").is_none());

    // Without a cache (a process that does not follow the databroker), every handle is read.
    let uncached = SessionStore::new(broker, None);
    assert!(!uncached.cached(versions));
    let fetched = tokio::time::timeout(BOUND, uncached.fresh("s1", versions)).await.unwrap().unwrap().expect("read");
    assert!(fetched.session("s1").is_some());
    task.abort();
}
