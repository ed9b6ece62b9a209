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
    /// The console's certificate authority (clusters' wildcard certificates).
    pub ca: crate::ca::Ca,
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
        let ca = crate::ca::Ca::open(&store, &org_id).await?;
        let (events, _) = broadcast::channel(1024);
        Ok(State {
            settings,
            store,
            keys: Keys::new(&secret),
            org_id,
            ca,
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

/// How often at most the stored state is compared for changes (this console's or another's).
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// What the events are derived from: each cluster's applied bundle version and token
/// generation.
type Seen = std::collections::HashMap<String, (i64, u64)>;

impl State {
    /// Follows the storage for applies, rotations and deleted clusters (this console's, or those
    /// of other consoles on the same PostgreSQL) and publishes them to this console's Connect
    /// streams: the one path by which `config_updated` and the end of a rotated token's streams
    /// reach replicas, whichever console they are connected to. Runs until the console stops.
    pub async fn follow(self: std::sync::Arc<Self>) {
        use databroker::storage::Storage as _;
        let mut changes = self.store.storage().watch();
        let mut closing = self.closing.subscribe();
        let mut seen = self.snapshot().await.unwrap_or_default();
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = closing.changed() => return,
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
            changes.borrow_and_update();
            let Ok(now) = self.snapshot().await else { continue };
            for (cluster, (version, generation)) in &now {
                // A cluster made since the last look starts from version 0 (it may have been
                // applied to already), with the generation it has.
                let (old_version, old_generation) = seen.get(cluster).copied().unwrap_or((0, *generation));
                if *generation != old_generation {
                    self.publish(Event::TokenRevoked { cluster: cluster.clone() });
                } else if *version > old_version {
                    self.publish(Event::ConfigUpdated { cluster: cluster.clone(), version: *version });
                }
            }
            for cluster in seen.keys().filter(|c| !now.contains_key(*c)) {
                self.publish(Event::TokenRevoked { cluster: cluster.clone() });
            }
            seen = now;
        }
    }

    /// Renews the clusters' certificates that are due (and ships them), now and every
    /// [`crate::ca::RENEW_CHECK_EVERY`]. Runs until the console stops.
    pub async fn renew_certificates(self: std::sync::Arc<Self>) {
        let mut closing = self.closing.subscribe();
        loop {
            self.renew_due().await;
            tokio::select! {
                () = tokio::time::sleep(crate::ca::RENEW_CHECK_EVERY) => {}
                _ = closing.changed() => return,
            }
        }
    }

    /// One look for clusters whose certificate is due: each is renewed and shipped.
    pub async fn renew_due(&self) {
        let Ok(bundles) = self.store.list(Kind::Bundle).await else { return };
        let now = jiff::Timestamp::now();
        for bundle in bundles {
            let Some(cluster) = bundle.get("clusterId").and_then(Value::as_str) else { continue };
            let due = match crate::ca::stored(&self.store, cluster).await {
                Ok(Some(issued)) => crate::ca::due(issued.not_after, now),
                Ok(None) => true,
                Err(_) => false,
            };
            if due && let Err(reply) = crate::api::reship_certificates(self, cluster).await {
                tracing::warn!(%cluster, error = ?reply.body, "cannot renew the cluster's certificate; trying again later");
            }
        }
    }

    async fn snapshot(&self) -> Result<Seen, databroker::storage::StorageError> {
        let mut seen = Seen::new();
        for cluster in self.store.list(Kind::Cluster).await? {
            let id = cluster.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
            let version = cluster.get("changesetVersion").and_then(Value::as_i64).unwrap_or(0);
            let generation = cluster.get("tokenGeneration").and_then(Value::as_u64).unwrap_or(0);
            seen.insert(id, (version, generation));
        }
        Ok(seen)
    }
}
