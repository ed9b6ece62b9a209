//! The in-memory backend: the default, embedded, nothing to set up; gone on restart.
//!
//! One mutex guards the whole state: every operation is a few map lookups, never held across an
//! await, so writers and readers see one total order, the same order the versions count.

use super::{
    CHANGE_BATCH, QueryResult, Snapshot, Storage, StorageError, StorageResult, Written, apply_field_mask, new_lease_id,
};
use crate::query::Query;
use crate::record::{CHANGE_LOG_RETENTION, Record, ServerInfo, TypeOptions, Versions, new_server_version};
use jiff::Timestamp;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The in-memory storage.
#[derive(Debug)]
pub struct MemoryStorage {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    server_version: u64,
    latest: u64,
    /// The change log no longer holds versions up to this one.
    compacted_through: u64,
    /// Live records by type, then id.
    records: HashMap<String, BTreeMap<String, Record>>,
    /// Every change still kept, by version.
    changes: BTreeMap<u64, Record>,
    options: HashMap<String, TypeOptions>,
    leases: HashMap<String, (String, Instant)>,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        MemoryStorage::new()
    }
}

impl MemoryStorage {
    pub fn new() -> MemoryStorage {
        let state = State { server_version: new_server_version(64), ..State::default() };
        MemoryStorage { state: Mutex::new(state), changed: watch::Sender::new(0) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the maps half-written: every mutation is a single insert
        // or remove, so the state is usable after a poison.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self, version: u64) {
        self.changed.send_replace(version);
    }
}

impl State {
    fn versions(&self) -> Versions {
        Versions { server_version: self.server_version, latest_record_version: self.latest }
    }

    /// Writes one record or tombstone with the next version.
    fn write(&mut self, mut record: Record, now: Timestamp) -> Record {
        self.latest += 1;
        record.version = self.latest;
        record.modified_at = Some(now);
        let of_type = self.records.entry(record.record_type.clone()).or_default();
        if record.is_deleted() {
            record.deleted_at = Some(now);
            record.data.clear();
            of_type.remove(&record.id);
        } else {
            of_type.insert(record.id.clone(), record.clone());
        }
        self.changes.insert(record.version, record.clone());
        record
    }

    /// Deletes the oldest records of a type beyond its capacity.
    fn enforce_capacity(&mut self, record_type: &str, now: Timestamp) {
        let Some(capacity) = self.options.get(record_type).and_then(|o| o.capacity) else { return };
        let Some(of_type) = self.records.get(record_type) else { return };
        let excess = of_type.len().saturating_sub(usize::try_from(capacity).unwrap_or(usize::MAX));
        if excess == 0 {
            return;
        }
        let mut by_age: Vec<(u64, String)> = of_type.values().map(|r| (r.version, r.id.clone())).collect();
        by_age.sort_unstable();
        for (_, id) in by_age.into_iter().take(excess) {
            self.write(Record::tombstone(record_type, id), now);
        }
    }

    fn check_reader(&self, from: Versions) -> StorageResult<()> {
        if from.server_version != self.server_version {
            return Err(StorageError::InvalidServerVersion {
                given: from.server_version,
                current: self.server_version,
            });
        }
        let given = from.latest_record_version;
        if given < self.compacted_through || given > self.latest {
            return Err(StorageError::InvalidRecordVersion {
                given,
                earliest: self.compacted_through,
                latest: self.latest,
            });
        }
        Ok(())
    }
}

impl Storage for MemoryStorage {
    async fn get(&self, record_type: &str, id: &str) -> StorageResult<Option<Record>> {
        Ok(self.lock().records.get(record_type).and_then(|of_type| of_type.get(id)).cloned())
    }

    async fn put(&self, records: Vec<Record>) -> StorageResult<Written> {
        super::validate_records(&records)?;
        let now = Timestamp::now();
        let (written, server_version, latest) = {
            let mut state = self.lock();
            let written: Vec<Record> = records.into_iter().map(|r| state.write(r, now)).collect();
            let mut types: Vec<&str> = written.iter().map(|r| r.record_type.as_str()).collect();
            types.sort_unstable();
            types.dedup();
            for record_type in types {
                state.enforce_capacity(record_type, now);
            }
            (written, state.server_version, state.latest)
        };
        self.notify(latest);
        Ok(Written { server_version, records: written })
    }

    async fn patch(&self, records: Vec<Record>, fields: &[String]) -> StorageResult<Written> {
        super::validate_records(&records)?;
        let now = Timestamp::now();
        let (written, server_version, latest) = {
            let mut state = self.lock();
            let mut written = Vec::new();
            for update in records {
                let existing = state.records.get(&update.record_type).and_then(|t| t.get(&update.id)).cloned();
                let Some(mut existing) = existing else { continue };
                apply_field_mask(&mut existing.data, &update.data, fields);
                written.push(state.write(existing, now));
            }
            (written, state.server_version, state.latest)
        };
        self.notify(latest);
        Ok(Written { server_version, records: written })
    }

    async fn query(&self, query: &Query) -> StorageResult<QueryResult> {
        let state = self.lock();
        let matches = state
            .records
            .get(&query.record_type)
            .map(|of_type| of_type.values().filter(|r| query.matches(r)).cloned().collect())
            .unwrap_or_default();
        Ok(QueryResult { page: query.page(matches), versions: state.versions() })
    }

    async fn server_info(&self) -> StorageResult<ServerInfo> {
        let state = self.lock();
        Ok(ServerInfo {
            server_version: state.server_version,
            earliest_record_version: state.compacted_through + 1,
            latest_record_version: state.latest,
        })
    }

    async fn changes(&self, from: Versions, record_type: Option<&str>) -> StorageResult<Vec<Record>> {
        let state = self.lock();
        state.check_reader(from)?;
        Ok(state
            .changes
            .range(from.latest_record_version + 1..)
            .map(|(_, record)| record)
            .filter(|record| record_type.is_none_or(|t| record.record_type == t))
            .take(CHANGE_BATCH)
            .cloned()
            .collect())
    }

    async fn latest(&self, record_type: Option<&str>) -> StorageResult<Snapshot> {
        let state = self.lock();
        let records = match record_type {
            Some(t) => state.records.get(t).map(|of_type| of_type.values().cloned().collect()).unwrap_or_default(),
            None => state.records.values().flat_map(|of_type| of_type.values().cloned()).collect(),
        };
        Ok(Snapshot { records, versions: state.versions() })
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    async fn list_types(&self) -> StorageResult<Vec<String>> {
        let state = self.lock();
        let mut types: Vec<String> =
            state.records.iter().filter(|(_, r)| !r.is_empty()).map(|(t, _)| t.clone()).collect();
        types.sort();
        Ok(types)
    }

    async fn get_options(&self, record_type: &str) -> StorageResult<TypeOptions> {
        Ok(self.lock().options.get(record_type).cloned().unwrap_or_default())
    }

    async fn set_options(&self, record_type: &str, options: TypeOptions) -> StorageResult<()> {
        let latest = {
            let mut state = self.lock();
            state.options.insert(record_type.to_owned(), options);
            state.enforce_capacity(record_type, Timestamp::now());
            state.latest
        };
        self.notify(latest);
        Ok(())
    }

    async fn clear(&self) -> StorageResult<(Versions, Versions)> {
        let (old, new) = {
            let mut state = self.lock();
            let old = state.versions();
            state.server_version = new_server_version(64);
            state.records.clear();
            state.changes.clear();
            state.options.clear();
            state.compacted_through = state.latest;
            (old, state.versions())
        };
        self.notify(new.latest_record_version);
        Ok((old, new))
    }

    async fn acquire_lease(&self, name: &str, duration: Duration) -> StorageResult<Option<String>> {
        let now = Instant::now();
        let mut state = self.lock();
        if state.leases.get(name).is_some_and(|(_, expires)| *expires > now) {
            return Ok(None);
        }
        let id = new_lease_id();
        state.leases.insert(name.to_owned(), (id.clone(), now + duration));
        Ok(Some(id))
    }

    async fn renew_lease(&self, name: &str, id: &str, duration: Duration) -> StorageResult<bool> {
        let now = Instant::now();
        let mut state = self.lock();
        match state.leases.get_mut(name) {
            Some((holder, expires)) if holder == id && *expires > now => {
                *expires = now + duration;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_lease(&self, name: &str, id: &str) -> StorageResult<()> {
        let mut state = self.lock();
        if state.leases.get(name).is_some_and(|(holder, _)| holder == id) {
            state.leases.remove(name);
        }
        Ok(())
    }

    async fn clean(&self) -> StorageResult<()> {
        let now = Timestamp::now();
        let latest = {
            let mut state = self.lock();
            expire_by_ttl(&mut state, now);
            compact_change_log(&mut state, now);
            state.latest
        };
        self.notify(latest);
        Ok(())
    }
}

fn expire_by_ttl(state: &mut State, now: Timestamp) {
    let mut expired = Vec::new();
    for (record_type, options) in &state.options {
        let Some(ttl) = options.ttl else { continue };
        let Ok(cutoff) = now.checked_sub(jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::MAX))
        else {
            continue;
        };
        let Some(of_type) = state.records.get(record_type) else { continue };
        expired.extend(
            of_type
                .values()
                .filter(|r| r.modified_at.is_some_and(|at| at < cutoff))
                .map(|r| (record_type.clone(), r.id.clone())),
        );
    }
    for (record_type, id) in expired {
        state.write(Record::tombstone(record_type, id), now);
    }
}

fn compact_change_log(state: &mut State, now: Timestamp) {
    let Ok(cutoff) = now.checked_sub(jiff::SignedDuration::try_from(CHANGE_LOG_RETENTION).unwrap_or_default()) else {
        return;
    };
    let newest = state.changes.keys().next_back().copied();
    let old: Vec<u64> = state
        .changes
        .iter()
        .take_while(|(version, record)| Some(**version) != newest && record.modified_at.is_some_and(|at| at < cutoff))
        .map(|(version, _)| *version)
        .collect();
    for version in old {
        state.changes.remove(&version);
        state.compacted_through = state.compacted_through.max(version);
    }
}

#[cfg(test)]
impl MemoryStorage {
    /// Ages every change and record, as if `by` had passed (tests of the cleanup).
    pub(crate) fn age(&self, by: Duration) {
        let by = jiff::SignedDuration::try_from(by).unwrap_or_default();
        let mut state = self.lock();
        let age = |record: &mut Record| {
            record.modified_at = record.modified_at.and_then(|at| at.checked_sub(by).ok());
        };
        state.changes.values_mut().for_each(age);
        state.records.values_mut().flat_map(|of_type| of_type.values_mut()).for_each(age);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[tokio::test]
    async fn cleanup_compacts_the_change_log_keeping_the_newest_change() {
        let storage = MemoryStorage::new();
        let server_version = storage.server_info().await.unwrap().server_version;
        for id in ["a", "b", "c"] {
            storage.put(vec![Record::new("t", id, data(json!({})))]).await.unwrap();
        }
        storage.age(CHANGE_LOG_RETENTION + Duration::from_secs(1));
        storage.clean().await.unwrap();
        let info = storage.server_info().await.unwrap();
        assert_eq!(info.earliest_record_version, 3, "changes 1 and 2 compacted, 3 kept");
        let stale = Versions { server_version, latest_record_version: 1 };
        assert!(matches!(storage.changes(stale, None).await, Err(StorageError::InvalidRecordVersion { .. })));
        let current = Versions { server_version, latest_record_version: 2 };
        assert_eq!(storage.changes(current, None).await.unwrap().len(), 1);
        assert_eq!(storage.latest(None).await.unwrap().records.len(), 3, "records outlive their changes");
    }

    #[tokio::test]
    async fn cleanup_deletes_records_past_their_types_ttl_with_tombstones() {
        let storage = MemoryStorage::new();
        let options = TypeOptions { ttl: Some(Duration::from_secs(60)), ..TypeOptions::default() };
        storage.set_options("short", options).await.unwrap();
        storage
            .put(vec![Record::new("short", "old", data(json!({}))), Record::new("long", "old", data(json!({})))])
            .await
            .unwrap();
        storage.age(Duration::from_secs(61));
        storage.put(vec![Record::new("short", "new", data(json!({})))]).await.unwrap();
        storage.clean().await.unwrap();
        assert!(storage.get("short", "old").await.unwrap().is_none());
        assert!(storage.get("short", "new").await.unwrap().is_some());
        assert!(storage.get("long", "old").await.unwrap().is_some(), "no TTL on this type");
        let tombstones = storage
            .changes(
                Versions {
                    server_version: storage.server_info().await.unwrap().server_version,
                    latest_record_version: 3,
                },
                None,
            )
            .await
            .unwrap();
        assert!(tombstones.iter().any(|r| r.id == "old" && r.is_deleted()));
    }
}
