//! Resource bundles into the databroker (`internal/zero/reconciler` upstream): under the
//! databroker lease `zero-ctrl`, one replica of a cluster lists the bundles, downloads each that
//! changed (ETag), puts its records and deletes those no longer in any bundle, in one write per
//! bundle; every replica then serves them through its record cache. Per-bundle state (ETag,
//! last modification, captured metadata, the records it holds) is kept as records of type
//! `pomerium.io/BundleCacheEntry`, so a new leader does not download what is current.
//!
//! A bundle that does not download or parse is reported to the control plane and changes
//! nothing: the last good records keep serving.

use super::Managed;
use databroker::client::Broker;
use databroker::record::Record;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use zero::api::{BundleFailureSource, BundleStatus, BundleStatusFailure, BundleStatusSuccess};
use zero::bundle::BUNDLE_CACHE_ENTRY_TYPE;
use zero::client::{ApiError, ClusterClient, Download};

pub const LEASE: &str = "zero-ctrl";
const LEASE_TTL: Duration = Duration::from_secs(30);
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often a replica that is not the leader tries to become it.
const RETRY_LEASE: Duration = Duration::from_secs(10);
/// A full sync this often even without a message from the Connect stream.
const RESYNC: Duration = Duration::from_secs(5 * 60);
/// Usage reports this often.
const USAGE_EVERY: Duration = Duration::from_secs(60);

/// Holds the lease when it can, and syncs while it does.
pub async fn run(managed: Arc<Managed>, broker: Broker, mut shutdown: proxy::server::ShutdownSignal) {
    loop {
        match broker.acquire_lease(LEASE, LEASE_TTL).await {
            Ok(Some(id)) => {
                tracing::info!(lease = LEASE, "this replica applies the control plane's bundles");
                let stopped = lead(&managed, &broker, &id, &mut shutdown).await;
                let _ = broker.release_lease(LEASE, &id).await;
                if stopped {
                    return;
                }
            }
            Ok(None) => {}
            Err(status) => tracing::warn!(lease = LEASE, error = %status.message(), "cannot take the lease"),
        }
        tokio::select! {
            () = shutdown.fired() => return,
            () = tokio::time::sleep(RETRY_LEASE) => {}
        }
    }
}

/// Syncs until the lease is lost (`false`) or the server stops (`true`).
async fn lead(managed: &Managed, broker: &Broker, id: &str, shutdown: &mut proxy::server::ShutdownSignal) -> bool {
    let (lost_tx, mut lost) = tokio::sync::watch::channel(false);
    let renewer = {
        let (broker, id) = (broker.clone(), id.to_owned());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                match broker.renew_lease(LEASE, &id, LEASE_TTL).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(status) => tracing::warn!(lease = LEASE, error = %status.message(), "cannot renew the lease"),
                }
            }
            let _ = lost_tx.send(true);
        })
    };
    // A new leader syncs at once.
    managed.sync.notify_one();
    let mut stopped = false;
    let mut usage = tokio::time::interval(USAGE_EVERY);
    usage.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = std::collections::BTreeMap::new();
    // An interval, not a sleep in the loop: the usage ticks must not keep putting it off.
    let mut resync = tokio::time::interval(RESYNC);
    resync.reset();
    loop {
        tokio::select! {
            () = shutdown.fired() => {
                stopped = true;
                break;
            }
            _ = lost.changed() => {
                tracing::warn!(lease = LEASE, "the lease was lost; another replica applies the bundles");
                break;
            }
            () = managed.sync.notified() => {}
            _ = resync.tick() => {}
            _ = usage.tick() => {
                let result = tokio::select! {
                    () = shutdown.fired() => {
                        stopped = true;
                        break;
                    }
                    result = super::usage::report(managed, broker, &mut reported) => result,
                };
                match result {
                    Ok(0) => {}
                    Ok(users) => tracing::debug!(users, "usage reported"),
                    Err(error) => tracing::warn!(%error, "usage not reported"),
                }
                continue;
            }
        }
        // A control plane that answers slowly must not hold up a shutdown.
        let result = tokio::select! {
            () = shutdown.fired() => {
                stopped = true;
                break;
            }
            result = sync_all(&managed.client, broker) => result,
        };
        if let Err(error) = result {
            managed.api_error("bundles not synced", &error).await;
        }
    }
    renewer.abort();
    stopped
}

/// Lists the bundles and syncs each; removes the records of bundles no longer listed.
pub async fn sync_all(client: &ClusterClient, broker: &Broker) -> Result<(), ApiError> {
    let listed = client.bundles().await?;
    let ids: BTreeSet<String> = listed.bundles.iter().map(|b| b.id.clone()).collect();
    for id in &ids {
        if let Err(error) = sync_bundle(client, broker, id).await {
            tracing::warn!(bundle = %id, %error, "bundle not applied; its last good records keep serving");
        }
    }
    match cache_entries(broker).await {
        Ok(entries) => {
            for entry in entries.iter().filter(|e| !ids.contains(&e.id)) {
                if let Err(error) = remove_bundle(broker, &entry.id).await {
                    tracing::warn!(bundle = %entry.id, %error, "the records of a removed bundle are not deleted");
                }
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read the bundle cache entries"),
    }
    Ok(())
}

async fn sync_bundle(client: &ClusterClient, broker: &Broker, id: &str) -> Result<(), String> {
    let entry = broker.get(BUNDLE_CACHE_ENTRY_TYPE, id).await.map_err(|s| s.message().to_owned())?;
    let etag = entry.as_ref().and_then(|e| e.data.get("etag")).and_then(Value::as_str).map(str::to_owned);
    let url = client.download_url(id).await.map_err(|e| e.to_string())?;
    let (body, state) = match client.download(&url, etag.as_deref()).await {
        Ok(Download::NotModified) => return Ok(()),
        Ok(Download::Content { body, etag, last_modified, metadata }) => {
            (body, BundleState { etag, last_modified, metadata })
        }
        Err(error) => {
            report(client, id, Some((BundleFailureSource::DownloadError, error.to_string()))).await;
            return Err(error.to_string());
        }
    };
    let records = match zero::bundle::decode(&body) {
        Ok(records) => records,
        Err(error) => {
            report(client, id, Some((BundleFailureSource::InvalidBundle, error.to_string()))).await;
            return Err(format!("the bundle does not parse: {error}"));
        }
    };
    // Checked as the replicas will load it: a bundle with a route or setting they would refuse,
    // or an option this build does not know, is reported and not applied.
    match crate::dynamic::check_bundle(&records) {
        Ok(warnings) => {
            for warning in warnings {
                tracing::warn!(bundle = %id, "{warning}");
            }
        }
        Err(problems) => {
            let message = problems.join("; ");
            report(client, id, Some((BundleFailureSource::InvalidBundle, message.clone()))).await;
            return Err(format!("the bundle's configuration is refused: {message}"));
        }
    }
    let count = records.len();
    let metadata = state.metadata.clone();
    if let Err(error) = apply_bundle(broker, id, records, state).await {
        report(client, id, Some((BundleFailureSource::DatabrokerError, error.clone()))).await;
        return Err(error);
    }
    tracing::info!(bundle = %id, records = count, "bundle applied");
    let status =
        BundleStatus { success: Some(BundleStatusSuccess { metadata: metadata.into_iter().collect() }), failure: None };
    if let Err(error) = client.report_bundle_status(id, &status).await {
        tracing::debug!(%error, "bundle status not reported");
    }
    Ok(())
}

async fn report(client: &ClusterClient, id: &str, failure: Option<(BundleFailureSource, String)>) {
    let status = BundleStatus {
        success: None,
        failure: failure.map(|(source, message)| BundleStatusFailure { message, source }),
    };
    if let Err(error) = client.report_bundle_status(id, &status).await {
        tracing::debug!(%error, "bundle status not reported");
    }
}

/// What a download said about a bundle.
#[derive(Debug, Clone, Default)]
pub struct BundleState {
    pub etag: String,
    pub last_modified: Option<String>,
    pub metadata: Vec<(String, String)>,
}

/// Puts a bundle's records, deletes those the bundle held before and no other bundle holds, and
/// writes its cache entry: one write.
pub async fn apply_bundle(broker: &Broker, id: &str, records: Vec<Record>, state: BundleState) -> Result<(), String> {
    if let Some(bad) = records.iter().find(|r| r.record_type == BUNDLE_CACHE_ENTRY_TYPE) {
        return Err(format!(
            "the bundle holds a record of type {} (`{}`), which the cluster keeps itself",
            bad.record_type, bad.id
        ));
    }
    let entries = cache_entries(broker).await?;
    let held_elsewhere: BTreeSet<(String, String)> = entries.iter().filter(|e| e.id != id).flat_map(held).collect();
    let before: BTreeSet<(String, String)> = entries.iter().filter(|e| e.id == id).flat_map(held).collect();
    let now: BTreeSet<(String, String)> = records.iter().map(|r| (r.record_type.clone(), r.id.clone())).collect();
    let mut writes: Vec<Record> = records.into_iter().map(|r| Record { version: 0, modified_at: None, ..r }).collect();
    for (record_type, record_id) in before.difference(&now).filter(|k| !held_elsewhere.contains(*k)) {
        writes.push(Record::tombstone(record_type.clone(), record_id.clone()));
    }
    let held: Vec<Value> = now.iter().map(|(t, i)| json!({"type": t, "id": i})).collect();
    let metadata: Map<String, Value> = state.metadata.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    let mut data = Map::new();
    data.insert("etag".into(), Value::String(state.etag));
    if let Some(last_modified) = state.last_modified {
        data.insert("lastModified".into(), Value::String(last_modified));
    }
    data.insert("metadata".into(), Value::Object(metadata));
    data.insert("records".into(), Value::Array(held));
    writes.push(Record::new(BUNDLE_CACHE_ENTRY_TYPE, id, data));
    broker.put(writes).await.map(|_| ()).map_err(|s| format!("databroker: {}", s.message()))
}

/// Deletes a bundle's records (those no other bundle holds) and its cache entry.
pub async fn remove_bundle(broker: &Broker, id: &str) -> Result<(), String> {
    let entries = cache_entries(broker).await?;
    let held_elsewhere: BTreeSet<(String, String)> = entries.iter().filter(|e| e.id != id).flat_map(held).collect();
    let mut writes: Vec<Record> = entries
        .iter()
        .filter(|e| e.id == id)
        .flat_map(held)
        .filter(|k| !held_elsewhere.contains(k))
        .map(|(t, i)| Record::tombstone(t, i))
        .collect();
    writes.push(Record::tombstone(BUNDLE_CACHE_ENTRY_TYPE, id));
    broker.put(writes).await.map(|_| ()).map_err(|s| format!("databroker: {}", s.message()))?;
    tracing::info!(bundle = %id, "bundle removed");
    Ok(())
}

async fn cache_entries(broker: &Broker) -> Result<Vec<Record>, String> {
    Ok(broker
        .latest(Some(BUNDLE_CACHE_ENTRY_TYPE))
        .await
        .map_err(|s| format!("databroker: {}", s.message()))?
        .records
        .into_iter()
        .filter(|r| !r.is_deleted())
        .collect())
}

/// The (type, id) of the records a cache entry says its bundle holds.
fn held(entry: &Record) -> Vec<(String, String)> {
    let Some(Value::Array(items)) = entry.data.get("records") else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| Some((item.get("type")?.as_str()?.to_owned(), item.get("id")?.as_str()?.to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use databroker::record::CONFIG_TYPE;
    use databroker::storage::{AnyStorage, MemoryStorage};

    fn broker() -> Broker {
        Broker::Local(Arc::new(AnyStorage::Memory(MemoryStorage::new())))
    }

    fn record(record_type: &str, id: &str, n: i64) -> Record {
        let mut data = Map::new();
        data.insert("n".into(), json!(n));
        Record::new(record_type, id, data)
    }

    fn state(etag: &str) -> BundleState {
        BundleState { etag: etag.into(), last_modified: None, metadata: vec![("x-meta".into(), "v".into())] }
    }

    async fn live(broker: &Broker, record_type: &str) -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = broker
            .latest(Some(record_type))
            .await
            .unwrap()
            .records
            .into_iter()
            .filter(|r| !r.is_deleted())
            .map(|r| (r.id, r.data.get("n").cloned().unwrap_or(Value::Null)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[tokio::test]
    async fn a_bundle_puts_its_records_and_deletes_the_ones_it_dropped() {
        let broker = broker();
        let records = vec![record(CONFIG_TYPE, "config", 1), record("t", "a", 1), record("t", "b", 1)];
        apply_bundle(&broker, "config", records, state("e1")).await.unwrap();
        assert_eq!(live(&broker, "t").await, [("a".into(), json!(1)), ("b".into(), json!(1))]);
        assert_eq!(live(&broker, CONFIG_TYPE).await, [("config".into(), json!(1))]);
        let entry = broker.get(BUNDLE_CACHE_ENTRY_TYPE, "config").await.unwrap().unwrap();
        assert_eq!(entry.data["etag"], "e1");
        assert_eq!(entry.data["metadata"]["x-meta"], "v");

        // The next version changes `a`, drops `b`.
        apply_bundle(&broker, "config", vec![record(CONFIG_TYPE, "config", 2), record("t", "a", 2)], state("e2"))
            .await
            .unwrap();
        assert_eq!(live(&broker, "t").await, [("a".into(), json!(2))]);
        assert_eq!(live(&broker, CONFIG_TYPE).await, [("config".into(), json!(2))]);
    }

    #[tokio::test]
    async fn records_another_bundle_holds_stay_and_a_removed_bundle_takes_its_own() {
        let broker = broker();
        apply_bundle(&broker, "one", vec![record("t", "shared", 1), record("t", "mine", 1)], state("1")).await.unwrap();
        apply_bundle(&broker, "two", vec![record("t", "shared", 2)], state("2")).await.unwrap();
        apply_bundle(&broker, "one", vec![], state("3")).await.unwrap();
        assert_eq!(live(&broker, "t").await, [("shared".into(), json!(2))]);
        apply_bundle(&broker, "one", vec![record("t", "mine", 3)], state("4")).await.unwrap();
        remove_bundle(&broker, "two").await.unwrap();
        assert_eq!(live(&broker, "t").await, [("mine".into(), json!(3))]);
        assert!(broker.get(BUNDLE_CACHE_ENTRY_TYPE, "two").await.unwrap().is_none());
        remove_bundle(&broker, "one").await.unwrap();
        assert_eq!(live(&broker, "t").await, []);
    }

    #[tokio::test]
    async fn a_bundle_may_not_write_the_cache_entries() {
        let broker = broker();
        let err = apply_bundle(&broker, "x", vec![record(BUNDLE_CACHE_ENTRY_TYPE, "config", 1)], state("1"))
            .await
            .unwrap_err();
        assert!(err.contains("BundleCacheEntry"), "{err}");
        assert_eq!(live(&broker, BUNDLE_CACHE_ENTRY_TYPE).await, []);
    }

    #[tokio::test]
    async fn one_replica_holds_the_lease() {
        let broker = broker();
        let id = broker.acquire_lease(LEASE, LEASE_TTL).await.unwrap().unwrap();
        assert!(broker.acquire_lease(LEASE, LEASE_TTL).await.unwrap().is_none());
        assert!(broker.renew_lease(LEASE, &id, LEASE_TTL).await.unwrap());
        broker.release_lease(LEASE, &id).await.unwrap();
        assert!(broker.acquire_lease(LEASE, LEASE_TTL).await.unwrap().is_some());
    }
}
