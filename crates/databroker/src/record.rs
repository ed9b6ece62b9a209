//! The record model (system.md §5.1–§5.2): what every backend stores and every client caches.
//!
//! A record is `(type, id)` with JSON data. Every write, a delete included, gets the next
//! `version` from one counter shared by all types; a delete leaves a tombstone (`deleted_at` set)
//! in the change log so that sync streams see it. `server_version` names one storage epoch: it
//! changes when the storage is cleared, and tells clients to drop their caches.

use jiff::Timestamp;
use serde_json::{Map, Value};
use std::time::Duration;

/// One record, as stored or as one entry of the change log.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub record_type: String,
    pub id: String,
    /// Assigned by the storage on write; ignored on input.
    pub version: u64,
    pub data: Map<String, Value>,
    pub modified_at: Option<Timestamp>,
    /// Set on a tombstone: the record was deleted at this time.
    pub deleted_at: Option<Timestamp>,
}

impl Record {
    /// A record to write: the storage assigns its version and modification time.
    pub fn new(record_type: impl Into<String>, id: impl Into<String>, data: Map<String, Value>) -> Record {
        Record { record_type: record_type.into(), id: id.into(), version: 0, data, modified_at: None, deleted_at: None }
    }

    /// A delete: written like a record, with `deleted_at` set.
    pub fn tombstone(record_type: impl Into<String>, id: impl Into<String>) -> Record {
        Record { deleted_at: Some(Timestamp::now()), ..Record::new(record_type, id, Map::new()) }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

/// Where a storage is: its epoch and the newest record version written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Versions {
    pub server_version: u64,
    pub latest_record_version: u64,
}

/// `ServerInfo`: the versions and the oldest record version the change log still holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerInfo {
    pub server_version: u64,
    pub earliest_record_version: u64,
    pub latest_record_version: u64,
}

/// Per-type options (`SetOptions`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeOptions {
    /// At most this many records of the type; the oldest are deleted first.
    pub capacity: Option<u64>,
    /// Fields a `Query` filter may look up by (kept for compatibility; every field can be).
    pub indexable_fields: Vec<String>,
    /// Records not modified for this long are deleted by the periodic cleanup.
    pub ttl: Option<Duration>,
}

/// How long the change log keeps a change (the newest one is always kept).
pub const CHANGE_LOG_RETENTION: Duration = Duration::from_secs(60 * 60);

/// How often the cleanup runs.
pub const CLEANUP_INTERVAL: Duration = Duration::from_secs(60);

/// The type of the records that carry dynamic configuration (routes from the ingress controller).
pub const CONFIG_TYPE: &str = "type.googleapis.com/pomerium.config.Config";

/// A random, non-zero server version (zero means "none" on the wire).
pub fn new_server_version(bits: u32) -> u64 {
    loop {
        let candidate = if bits >= 64 { fastrand::u64(..) } else { fastrand::u64(..1u64 << bits) };
        if candidate != 0 {
            return candidate;
        }
    }
}
