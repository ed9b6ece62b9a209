//! The console's entities (organizations, clusters, routes, policies, changesets, replicas, ...)
//! kept as databroker records of console-specific types, in the databroker's own storage
//! (memory or PostgreSQL): no second storage layer.
//!
//! An entity is a JSON object with the API's field names. A deleted entity stays as a record with
//! `deletedAt` set, so that the API can answer 403 for it as Zero does (Terraform relies on it).

use databroker::record::Record;
use databroker::storage::{AnyStorage, Storage as _, StorageError};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The record type of an entity kind: `pomerium.io/console/<Kind>`.
pub fn record_type(kind: Kind) -> String {
    format!("pomerium.io/console/{}", kind.name())
}

/// The kinds of entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Organization,
    Cluster,
    /// A cluster's refresh token, by the SHA-256 of the token (the token itself is not stored).
    ClusterToken,
    Settings,
    Route,
    Policy,
    KeyPair,
    Changeset,
    /// What was last applied to a cluster: its bundle.
    Bundle,
    /// What a cluster last reported of applying a bundle.
    BundleStatus,
    Replica,
    /// A replica's latest status of one health check (OTLP spans from the cluster).
    HealthReport,
    /// The console's own secret (signing id tokens and download URLs).
    Secret,
    /// A cluster's wildcard certificate and key, issued by the console's CA (by cluster id).
    ClusterCertificate,
    /// An API user's refresh token made in the web console: its name and the SHA-256 of the token
    /// (`tokenDigest`; the token itself is not stored).
    ApiToken,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Organization => "Organization",
            Kind::Cluster => "Cluster",
            Kind::ClusterToken => "ClusterToken",
            Kind::Settings => "Settings",
            Kind::Route => "Route",
            Kind::Policy => "Policy",
            Kind::KeyPair => "KeyPair",
            Kind::Changeset => "Changeset",
            Kind::Bundle => "Bundle",
            Kind::BundleStatus => "BundleStatus",
            Kind::Replica => "Replica",
            Kind::HealthReport => "HealthReport",
            Kind::Secret => "Secret",
            Kind::ApiToken => "ApiToken",
            Kind::ClusterCertificate => "ClusterCertificate",
        }
    }
}

/// An entity as read: live, deleted (403), or missing (404).
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    Live(Map<String, Value>),
    Deleted,
    Missing,
}

/// The entity store.
#[derive(Clone, Debug)]
pub struct Store {
    storage: Arc<AnyStorage>,
}

impl Store {
    pub fn new(storage: Arc<AnyStorage>) -> Store {
        Store { storage }
    }

    pub fn storage(&self) -> &Arc<AnyStorage> {
        &self.storage
    }

    pub async fn get(&self, kind: Kind, id: &str) -> Result<Found, StorageError> {
        Ok(match self.storage.get(&record_type(kind), id).await? {
            None => Found::Missing,
            Some(record) if record.data.contains_key("deletedAt") => Found::Deleted,
            Some(record) => Found::Live(record.data),
        })
    }

    /// The live entity, or `None`.
    pub async fn live(&self, kind: Kind, id: &str) -> Result<Option<Map<String, Value>>, StorageError> {
        Ok(match self.get(kind, id).await? {
            Found::Live(data) => Some(data),
            _ => None,
        })
    }

    pub async fn put(&self, kind: Kind, id: &str, data: Map<String, Value>) -> Result<(), StorageError> {
        self.storage.put(vec![Record::new(record_type(kind), id, data)]).await.map(|_| ())
    }

    /// Marks an entity deleted (it then answers 403).
    pub async fn delete(&self, kind: Kind, id: &str) -> Result<(), StorageError> {
        let mut data = Map::new();
        data.insert("id".to_owned(), Value::String(id.to_owned()));
        data.insert("deletedAt".to_owned(), Value::String(now()));
        self.put(kind, id, data).await
    }

    /// Removes a record for good (tokens).
    pub async fn remove(&self, kind: Kind, id: &str) -> Result<(), StorageError> {
        self.storage.put(vec![Record::tombstone(record_type(kind), id)]).await.map(|_| ())
    }

    /// Every live entity of a kind, by `createdAt` then id.
    pub async fn list(&self, kind: Kind) -> Result<Vec<Map<String, Value>>, StorageError> {
        let snapshot = self.storage.latest(Some(&record_type(kind))).await?;
        let mut items: Vec<Map<String, Value>> = snapshot
            .records
            .into_iter()
            .filter(|r| !r.is_deleted() && !r.data.contains_key("deletedAt"))
            .map(|r| r.data)
            .collect();
        items.sort_by(|a, b| {
            let key = |m: &Map<String, Value>| {
                (
                    m.get("createdAt").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    m.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                )
            };
            key(a).cmp(&key(b))
        });
        Ok(items)
    }

    /// Every live entity of a kind whose `field` is `value`.
    pub async fn list_where(
        &self,
        kind: Kind,
        field: &str,
        value: &str,
    ) -> Result<Vec<Map<String, Value>>, StorageError> {
        let mut items = self.list(kind).await?;
        items.retain(|item| item.get(field).and_then(Value::as_str) == Some(value));
        Ok(items)
    }
}

/// Now, as RFC 3339 (what the API's `createdAt`/`updatedAt` carry).
pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// A new random id (hex, 16 bytes).
pub fn new_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}
