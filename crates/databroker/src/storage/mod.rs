//! The storage trait and its backends: [`memory`] (the default, nothing to set up) and
//! [`postgres`] (shared by replicas, survives restarts). One conformance suite
//! (`tests/conformance.rs`) runs against both.
//!
//! Invariant: a backend assigns versions from one counter in commit order, so that a reader that
//! has seen version `v` has seen every change up to `v`. Sync streams rely on it to never skip a
//! change.

pub mod memory;
pub mod postgres;
pub mod postgres_tls;

use crate::query::{Query, QueryPage};
use crate::record::{Record, ServerInfo, TypeOptions, Versions};
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

pub use memory::MemoryStorage;
pub use postgres::PostgresStorage;

/// Why a storage call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// A reader's server version is not the storage's: it must drop its cache and re-sync.
    #[error("invalid server version {given}: the storage is at server version {current}")]
    InvalidServerVersion { given: u64, current: u64 },
    /// A reader asked for changes the change log no longer holds (or never held).
    #[error("invalid record version {given}: the change log holds versions after {earliest} up to {latest}")]
    InvalidRecordVersion { given: u64, earliest: u64, latest: u64 },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The backend could not be reached or failed; the call may be retried.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

pub type StorageResult<T> = Result<T, StorageError>;

/// What `Put` and `Patch` return: the server version and the records as written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Written {
    pub server_version: u64,
    pub records: Vec<Record>,
}

/// What `Query` returns: the page and the versions it was read at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryResult {
    pub page: QueryPage,
    pub versions: Versions,
}

/// Every current record (of a type, or all) and the versions they are current at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub records: Vec<Record>,
    pub versions: Versions,
}

/// Refuses records that no backend can store as given: text with NUL (U+0000), which
/// PostgreSQL's `text` and `jsonb` reject. Checked by every backend, so a record is accepted or
/// refused the same way whichever backend is configured.
pub(crate) fn validate_records(records: &[Record]) -> StorageResult<()> {
    fn has_nul(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(text) => text.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(has_nul),
            serde_json::Value::Object(map) => map.iter().any(|(key, value)| key.contains('\0') || has_nul(value)),
            _ => false,
        }
    }
    for record in records {
        let data_has_nul = record.data.iter().any(|(key, value)| key.contains('\0') || has_nul(value));
        if record.record_type.contains('\0') || record.id.contains('\0') || data_has_nul {
            return Err(StorageError::InvalidArgument(format!(
                "record {:?} of type {:?}: text may not contain NUL (U+0000)",
                record.id, record.record_type
            )));
        }
    }
    Ok(())
}

/// How many changes one `changes` call returns at most.
pub const CHANGE_BATCH: usize = 512;

/// A databroker storage backend.
pub trait Storage: Send + Sync + 'static {
    /// The live record, or `None` when it is missing or deleted.
    fn get(&self, record_type: &str, id: &str) -> impl Future<Output = StorageResult<Option<Record>>> + Send;
    /// Writes records (a record with `deleted_at` deletes), each with the next version, in one
    /// transaction; then enforces each touched type's capacity.
    fn put(&self, records: Vec<Record>) -> impl Future<Output = StorageResult<Written>> + Send;
    /// Replaces only the fields named by `fields` (dotted data paths) of existing live records;
    /// records that do not exist are skipped.
    fn patch(&self, records: Vec<Record>, fields: &[String]) -> impl Future<Output = StorageResult<Written>> + Send;
    fn query(&self, query: &Query) -> impl Future<Output = StorageResult<QueryResult>> + Send;
    fn server_info(&self) -> impl Future<Output = StorageResult<ServerInfo>> + Send;
    /// Changes (records and tombstones) after `from.latest_record_version`, oldest first, at most
    /// [`CHANGE_BATCH`]; `InvalidServerVersion` or `InvalidRecordVersion` when the reader must
    /// start over.
    fn changes(
        &self,
        from: Versions,
        record_type: Option<&str>,
    ) -> impl Future<Output = StorageResult<Vec<Record>>> + Send;
    /// Every live record and the versions of that state, read consistently.
    fn latest(&self, record_type: Option<&str>) -> impl Future<Output = StorageResult<Snapshot>> + Send;
    /// Ticks after every change (this process's or, for PostgreSQL, another's).
    fn watch(&self) -> watch::Receiver<u64>;
    fn list_types(&self) -> impl Future<Output = StorageResult<Vec<String>>> + Send;
    fn get_options(&self, record_type: &str) -> impl Future<Output = StorageResult<TypeOptions>> + Send;
    fn set_options(&self, record_type: &str, options: TypeOptions) -> impl Future<Output = StorageResult<()>> + Send;
    /// Deletes everything and starts a new server version; returns the old and new versions.
    fn clear(&self) -> impl Future<Output = StorageResult<(Versions, Versions)>> + Send;
    /// Takes the lease `name` when it is free or expired; `None` when someone else holds it.
    fn acquire_lease(
        &self,
        name: &str,
        duration: Duration,
    ) -> impl Future<Output = StorageResult<Option<String>>> + Send;
    /// Extends a lease its holder still has; `false` when it was lost.
    fn renew_lease(&self, name: &str, id: &str, duration: Duration)
    -> impl Future<Output = StorageResult<bool>> + Send;
    fn release_lease(&self, name: &str, id: &str) -> impl Future<Output = StorageResult<()>> + Send;
    /// Drops change-log entries older than the retention (keeping the newest) and records past
    /// their type's TTL.
    fn clean(&self) -> impl Future<Output = StorageResult<()>> + Send;
}

/// A new random lease id.
pub(crate) fn new_lease_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Copies the masked fields of `update` into `existing` (a field missing from `update` is
/// removed). Paths are dotted; intermediate objects are created as needed.
pub(crate) fn apply_field_mask(
    existing: &mut serde_json::Map<String, serde_json::Value>,
    update: &serde_json::Map<String, serde_json::Value>,
    fields: &[String],
) {
    for field in fields {
        let path: Vec<&str> = field.split('.').collect();
        let source = lookup(update, &path).cloned();
        set_path(existing, &path, source);
    }
}

fn lookup<'v>(data: &'v serde_json::Map<String, serde_json::Value>, path: &[&str]) -> Option<&'v serde_json::Value> {
    let (first, rest) = path.split_first()?;
    let mut value = data.get(*first)?;
    for key in rest {
        value = value.as_object()?.get(*key)?;
    }
    Some(value)
}

fn set_path(data: &mut serde_json::Map<String, serde_json::Value>, path: &[&str], value: Option<serde_json::Value>) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut object = data;
    for key in parents {
        let entry =
            object.entry((*key).to_owned()).or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if !entry.is_object() {
            *entry = serde_json::Value::Object(serde_json::Map::new());
        }
        let serde_json::Value::Object(next) = entry else { return };
        object = next;
    }
    match value {
        Some(value) => {
            object.insert((*last).to_owned(), value);
        }
        None => {
            object.remove(*last);
        }
    }
}

/// The storage the configuration selects.
#[derive(Debug)]
pub enum AnyStorage {
    Memory(MemoryStorage),
    Postgres(PostgresStorage),
}

macro_rules! dispatch {
    ($self:ident, $storage:ident => $call:expr) => {
        match $self {
            AnyStorage::Memory($storage) => $call,
            AnyStorage::Postgres($storage) => $call,
        }
    };
}

impl Storage for AnyStorage {
    async fn get(&self, record_type: &str, id: &str) -> StorageResult<Option<Record>> {
        dispatch!(self, s => s.get(record_type, id).await)
    }
    async fn put(&self, records: Vec<Record>) -> StorageResult<Written> {
        dispatch!(self, s => s.put(records).await)
    }
    async fn patch(&self, records: Vec<Record>, fields: &[String]) -> StorageResult<Written> {
        dispatch!(self, s => s.patch(records, fields).await)
    }
    async fn query(&self, query: &Query) -> StorageResult<QueryResult> {
        dispatch!(self, s => s.query(query).await)
    }
    async fn server_info(&self) -> StorageResult<ServerInfo> {
        dispatch!(self, s => s.server_info().await)
    }
    async fn changes(&self, from: Versions, record_type: Option<&str>) -> StorageResult<Vec<Record>> {
        dispatch!(self, s => s.changes(from, record_type).await)
    }
    async fn latest(&self, record_type: Option<&str>) -> StorageResult<Snapshot> {
        dispatch!(self, s => s.latest(record_type).await)
    }
    fn watch(&self) -> watch::Receiver<u64> {
        dispatch!(self, s => s.watch())
    }
    async fn list_types(&self) -> StorageResult<Vec<String>> {
        dispatch!(self, s => s.list_types().await)
    }
    async fn get_options(&self, record_type: &str) -> StorageResult<TypeOptions> {
        dispatch!(self, s => s.get_options(record_type).await)
    }
    async fn set_options(&self, record_type: &str, options: TypeOptions) -> StorageResult<()> {
        dispatch!(self, s => s.set_options(record_type, options).await)
    }
    async fn clear(&self) -> StorageResult<(Versions, Versions)> {
        dispatch!(self, s => s.clear().await)
    }
    async fn acquire_lease(&self, name: &str, duration: Duration) -> StorageResult<Option<String>> {
        dispatch!(self, s => s.acquire_lease(name, duration).await)
    }
    async fn renew_lease(&self, name: &str, id: &str, duration: Duration) -> StorageResult<bool> {
        dispatch!(self, s => s.renew_lease(name, id, duration).await)
    }
    async fn release_lease(&self, name: &str, id: &str) -> StorageResult<()> {
        dispatch!(self, s => s.release_lease(name, id).await)
    }
    async fn clean(&self) -> StorageResult<()> {
        dispatch!(self, s => s.clean().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_masks_copy_set_and_remove_nested_fields() {
        let mut existing = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 4}).as_object().unwrap().clone();
        let update = json!({"a": 10, "b": {"c": 20}, "x": 5}).as_object().unwrap().clone();
        apply_field_mask(&mut existing, &update, &["a".into(), "b.c".into(), "e".into(), "y.z".into()]);
        assert_eq!(serde_json::Value::Object(existing), json!({"a": 10, "b": {"c": 20, "d": 3}, "y": {}}));
    }
}
