//! What every request handler shares: the settings, the entity store, the signing keys, the
//! organization, and the events that Connect streams forward to clusters.

use crate::auth::Keys;
use crate::settings::Settings;
use crate::store::{Kind, Store, new_id, now};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Something a cluster's Connect streams must hear about.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A changeset was applied: the cluster's bundle has this version.
    ConfigUpdated { cluster: String, version: i64 },
    /// The cluster's settings that go into its bootstrap changed.
    BootstrapUpdated { cluster: String },
    /// "Check again": run the health checks now.
    RunHealthChecks { cluster: String },
    /// The cluster's token was rotated, or the cluster deleted: its streams end.
    TokenRevoked { cluster: String },
}

impl Event {
    pub fn cluster(&self) -> &str {
        match self {
            Event::ConfigUpdated { cluster, .. }
            | Event::BootstrapUpdated { cluster }
            | Event::RunHealthChecks { cluster }
            | Event::TokenRevoked { cluster } => cluster,
        }
    }
}

#[derive(Debug)]
pub struct State {
    pub settings: Settings,
    pub store: Store,
    pub keys: Keys,
    pub org_id: String,
    /// Applies are serialized (one version counter per cluster).
    pub apply_lock: tokio::sync::Mutex<()>,
    /// Set when the console stops: long-lived streams end.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// The web console's route JWKS, cached.
    pub jwks: crate::web::Jwks,
    events: broadcast::Sender<Event>,
}

impl State {
    /// Opens the storage; makes the console's secret and its organization at first start.
    pub async fn open(settings: Settings) -> Result<State, String> {
        let backend = match &settings.storage {
            crate::settings::Storage::Memory => databroker::Backend::Memory,
            crate::settings::Storage::Postgres(url) => databroker::Backend::Postgres(url.clone()),
        };
        let storage = databroker::open(&backend)
            .await
            .map_err(|e| format!("cannot open the storage (`storage_type`, `storage_connection_string`): {e}"))?;
        let store = Store::new(storage);
        let failed = |e: databroker::storage::StorageError| format!("storage: {e}");
        let secret = match store.live(Kind::Secret, "console").await.map_err(failed)? {
            Some(data) => data
                .get("secret")
                .and_then(Value::as_str)
                .and_then(|s| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s).ok())
                .ok_or("the stored console secret is unreadable; delete the record to make a new one")?,
            None => {
                let secret = crate::auth::new_secret()?;
                let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &secret);
                let data = json!({"secret": encoded}).as_object().cloned().unwrap_or_default();
                store.put(Kind::Secret, "console", data).await.map_err(failed)?;
                secret
            }
        };
        let orgs = store.list(Kind::Organization).await.map_err(failed)?;
        let org_id = match orgs.first().and_then(|o| o.get("id")).and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => {
                let id = new_id();
                let at = now();
                let org = json!({
                    "id": id, "name": "Personal", "createdAt": at, "updatedAt": at, "joinedAt": at,
                    "organizationType": "personal", "ownerUserId": "", "readOnly": false, "role": "owner",
                    "quotas": {},
                });
                store
                    .put(Kind::Organization, &id, org.as_object().cloned().unwrap_or_default())
                    .await
                    .map_err(failed)?;
                tracing::info!(organization = %id, "organization made");
                id
            }
        };
        let (events, _) = broadcast::channel(1024);
        Ok(State {
            settings,
            store,
            keys: Keys::new(&secret),
            org_id,
            apply_lock: tokio::sync::Mutex::new(()),
            closing: tokio::sync::watch::Sender::new(false),
            jwks: crate::web::Jwks::default(),
            events,
        })
    }

    pub fn publish(&self, event: Event) {
        // No subscriber is fine: no replica is connected.
        let _ = self.events.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}
