//! Talking to the databroker: [`Broker`] reaches it in process (all-in-one: no network hop) or
//! over gRPC with a service token; [`SyncedCache`] keeps a local copy of every record for the
//! authorize path.
//!
//! The cache follows Pomerium's sync protocol: `SyncLatest` (every record, then the versions),
//! then `Sync` from those versions; on `Aborted` (a new server version, or changes compacted away)
//! it starts over with `SyncLatest`; on any other failure it resumes `Sync` from the last version
//! it applied, so nothing is lost or applied twice.

use crate::auth::{METADATA_KEY, ServiceAuth};
use crate::query::Query;
use crate::record::{Record, Versions};
use crate::server::status;
use crate::storage::{AnyStorage, QueryResult, Snapshot, Storage, Written};
use crate::wire::{self, pb};
use policy::records::MemoryRecords;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tonic::Code;
pub use tonic::Status;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;

/// Signs every outgoing call with a fresh service token.
#[derive(Clone, Debug)]
pub struct TokenInterceptor(pub ServiceAuth);

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let token = MetadataValue::try_from(self.0.sign()).map_err(|_| Status::internal("unprintable token"))?;
        request.metadata_mut().insert(METADATA_KEY, token);
        Ok(request)
    }
}

type GrpcClient = pb::data_broker_service_client::DataBrokerServiceClient<
    InterceptedService<crate::pool::GrpcPool, TokenInterceptor>,
>;

/// How a remote [`Broker`] verifies an `https://` databroker.
#[derive(Clone, Debug, Default)]
pub struct RemoteOptions {
    /// PEM CA certificate(s) to trust instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any server certificate (handshake signatures are still checked). For tests and
    /// trusted networks only.
    pub insecure_skip_verify: bool,
}

fn tls_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The rustls client configuration for an `https://` databroker. Its ALPN stays empty: the
/// hyper-rustls builder requires that, and offers `h2` (from `enable_http2`) itself.
pub(crate) fn tls_client_config(options: &RemoteOptions) -> Result<ClientConfig, String> {
    let provider = tls_provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("databroker TLS: {e}"))?;
    let config = if options.insecure_skip_verify {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!("databroker TLS certificate verification is disabled (insecure_skip_verify)");
        });
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(tls_trust::SkipVerification(provider)))
            .with_no_client_auth()
    } else {
        let roots = match &options.ca_pem {
            Some(pem) => Arc::new(ca_roots(pem)?),
            None => tls_trust::system_roots(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(config)
}

/// The CA certificates in `pem`: at least one, each parsable.
fn ca_roots(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("databroker TLS CA: {e}"))?;
        roots.add(cert).map_err(|e| format!("databroker TLS CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err("databroker TLS CA: no certificate in the PEM text".to_owned());
    }
    Ok(roots)
}

/// The databroker, in this process or over gRPC. Errors are gRPC statuses either way, so callers
/// handle `Aborted`, `NotFound` and `Unavailable` once.
#[derive(Clone, Debug)]
pub enum Broker {
    Local(Arc<AnyStorage>),
    Remote(Box<GrpcClient>),
}

impl Broker {
    /// A client for a databroker at `url` (`http://host:port` or `https://host:port`, trusting
    /// the system's roots), connecting lazily and reconnecting as needed.
    pub fn remote(url: &str, auth: ServiceAuth) -> Result<Broker, String> {
        Broker::remote_with(url, auth, &RemoteOptions::default())
    }

    /// [`Broker::remote`] with TLS options for `https://` URLs (`http://` stays plaintext and
    /// ignores them).
    pub fn remote_with(url: &str, auth: ServiceAuth, options: &RemoteOptions) -> Result<Broker, String> {
        Broker::remote_all(&[url.to_owned()], auth, options, crate::pool::Family::All)
    }

    /// A client for the databrokers at `urls` (`databroker_service_urls`): every address of every
    /// URL, spread and failed over ([`crate::pool::GrpcPool`]). Needs a Tokio runtime when a URL
    /// names a host (it is resolved in the background, and again every few seconds).
    pub fn remote_all(
        urls: &[String],
        auth: ServiceAuth,
        options: &RemoteOptions,
        family: crate::pool::Family,
    ) -> Result<Broker, String> {
        let pool = crate::pool::GrpcPool::start("databroker", urls, options, family, crate::pool::system_resolver())?;
        Ok(Broker::Remote(Box::new(pb::data_broker_service_client::DataBrokerServiceClient::with_interceptor(
            pool,
            TokenInterceptor(auth),
        ))))
    }

    pub async fn get(&self, record_type: &str, id: &str) -> Result<Option<Record>, Status> {
        match self {
            Broker::Local(storage) => storage.get(record_type, id).await.map_err(status),
            Broker::Remote(client) => {
                let request = pb::GetRequest { r#type: record_type.to_owned(), id: id.to_owned() };
                match (**client).clone().get(request).await {
                    Ok(response) => response.into_inner().record.map(|r| from_wire(0, r)).transpose(),
                    Err(error) if error.code() == Code::NotFound => Ok(None),
                    Err(error) => Err(error),
                }
            }
        }
    }

    pub async fn put(&self, records: Vec<Record>) -> Result<Written, Status> {
        match self {
            Broker::Local(storage) => storage.put(records).await.map_err(status),
            Broker::Remote(client) => {
                let request = pb::PutRequest { records: records.iter().map(wire::record_to_wire).collect() };
                let response = (**client).clone().put(request).await?.into_inner();
                Ok(Written { server_version: response.server_version, records: from_wire_all(response.records)? })
            }
        }
    }

    pub async fn query(
        &self,
        query: &Query,
        filter: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<QueryResult, Status> {
        match self {
            Broker::Local(storage) => storage.query(query).await.map_err(status),
            Broker::Remote(client) => {
                let request = pb::QueryRequest {
                    r#type: query.record_type.clone(),
                    query: query.search.clone(),
                    offset: i64::try_from(query.offset).unwrap_or(i64::MAX),
                    limit: query.limit.map_or(0, |l| i64::try_from(l).unwrap_or(i64::MAX)),
                    filter: filter.map(wire::json_to_struct),
                    minimum_record_version_hint: None,
                };
                let response = (**client).clone().query(request).await?.into_inner();
                Ok(QueryResult {
                    page: crate::query::QueryPage {
                        records: from_wire_all(response.records)?,
                        total_count: usize::try_from(response.total_count).unwrap_or(0),
                    },
                    versions: Versions {
                        server_version: response.server_version,
                        latest_record_version: response.record_version,
                    },
                })
            }
        }
    }

    /// Every live record (of a type, or all) and the versions to continue from.
    pub async fn latest(&self, record_type: Option<&str>) -> Result<Snapshot, Status> {
        match self {
            Broker::Local(storage) => storage.latest(record_type).await.map_err(status),
            Broker::Remote(client) => {
                let request = pb::SyncLatestRequest { r#type: record_type.unwrap_or_default().to_owned() };
                let mut stream = (**client).clone().sync_latest(request).await?.into_inner();
                let mut records = Vec::new();
                while let Some(message) = stream.message().await? {
                    match message.response {
                        Some(pb::sync_latest_response::Response::Record(record)) => {
                            records.push(from_wire(records.len(), record)?);
                        }
                        Some(pb::sync_latest_response::Response::Versions(versions)) => {
                            let versions = Versions {
                                server_version: versions.server_version,
                                latest_record_version: versions.latest_record_version,
                            };
                            return Ok(Snapshot { records, versions });
                        }
                        None => {}
                    }
                }
                Err(Status::unavailable("the SyncLatest stream ended before its versions"))
            }
        }
    }

    /// The changes after `from`, as they happen.
    pub async fn feed(&self, from: Versions, record_type: Option<&str>) -> Result<ChangeFeed, Status> {
        match self {
            Broker::Local(storage) => {
                let mut watch = storage.watch();
                watch.borrow_and_update();
                let first = storage.changes(from, record_type).await.map_err(status)?;
                Ok(ChangeFeed::Local {
                    storage: Arc::clone(storage),
                    watch,
                    cursor: from,
                    record_type: record_type.map(str::to_owned),
                    pending: first.into(),
                })
            }
            Broker::Remote(client) => {
                let request = pb::SyncRequest {
                    server_version: from.server_version,
                    record_version: from.latest_record_version,
                    r#type: record_type.unwrap_or_default().to_owned(),
                    wait: Some(true),
                };
                Ok(ChangeFeed::Remote((**client).clone().sync(request).await?.into_inner()))
            }
        }
    }

    /// Takes a lease; `None` when another holder has it.
    pub async fn acquire_lease(&self, name: &str, duration: Duration) -> Result<Option<String>, Status> {
        match self {
            Broker::Local(storage) => storage.acquire_lease(name, duration).await.map_err(status),
            Broker::Remote(client) => {
                let request =
                    pb::AcquireLeaseRequest { name: name.to_owned(), duration: Some(wire::duration_to_wire(duration)) };
                match (**client).clone().acquire_lease(request).await {
                    Ok(response) => Ok(Some(response.into_inner().id)),
                    Err(error) if error.code() == Code::AlreadyExists => Ok(None),
                    Err(error) => Err(error),
                }
            }
        }
    }

    /// Extends a lease; `false` when it was lost.
    pub async fn renew_lease(&self, name: &str, id: &str, duration: Duration) -> Result<bool, Status> {
        match self {
            Broker::Local(storage) => storage.renew_lease(name, id, duration).await.map_err(status),
            Broker::Remote(client) => {
                let request = pb::RenewLeaseRequest {
                    name: name.to_owned(),
                    id: id.to_owned(),
                    duration: Some(wire::duration_to_wire(duration)),
                };
                match (**client).clone().renew_lease(request).await {
                    Ok(_) => Ok(true),
                    Err(error) if error.code() == Code::AlreadyExists => Ok(false),
                    Err(error) => Err(error),
                }
            }
        }
    }

    pub async fn release_lease(&self, name: &str, id: &str) -> Result<(), Status> {
        match self {
            Broker::Local(storage) => storage.release_lease(name, id).await.map_err(status),
            Broker::Remote(client) => {
                let request = pb::ReleaseLeaseRequest { name: name.to_owned(), id: id.to_owned() };
                (**client).clone().release_lease(request).await.map(|_| ())
            }
        }
    }
}

fn from_wire(index: usize, record: pb::Record) -> Result<Record, Status> {
    wire::record_from_wire(index, record)
        .map_err(|e| Status::internal(format!("the databroker sent a bad record: {e}")))
}

fn from_wire_all(records: Vec<pb::Record>) -> Result<Vec<Record>, Status> {
    records.into_iter().enumerate().map(|(i, r)| from_wire(i, r)).collect()
}

/// A stream of changes (see [`Broker::feed`]).
#[derive(Debug)]
pub enum ChangeFeed {
    Local {
        storage: Arc<AnyStorage>,
        watch: watch::Receiver<u64>,
        cursor: Versions,
        record_type: Option<String>,
        pending: VecDeque<Record>,
    },
    Remote(tonic::Streaming<pb::SyncResponse>),
}

impl ChangeFeed {
    /// The next change; waits for one.
    pub async fn next(&mut self) -> Result<Record, Status> {
        match self {
            ChangeFeed::Local { storage, watch, cursor, record_type, pending } => loop {
                if let Some(record) = pending.pop_front() {
                    cursor.latest_record_version = record.version;
                    return Ok(record);
                }
                if watch.changed().await.is_err() {
                    return Err(Status::unavailable("the databroker stopped"));
                }
                watch.borrow_and_update();
                pending.extend(storage.changes(*cursor, record_type.as_deref()).await.map_err(status)?);
            },
            ChangeFeed::Remote(stream) => loop {
                match stream.message().await? {
                    Some(pb::SyncResponse { record: Some(record) }) => return from_wire(0, record),
                    Some(_) => {}
                    None => return Err(Status::unavailable("the Sync stream ended")),
                }
            },
        }
    }
}

/// A local copy of every record, kept in sync with the databroker, that the authorize path reads
/// without a network hop.
#[derive(Debug)]
pub struct SyncedCache {
    records: Arc<RwLock<MemoryRecords>>,
    versions: watch::Sender<Versions>,
    retained: Vec<String>,
    raw: Mutex<BTreeMap<(String, String), Record>>,
    raw_changed: watch::Sender<u64>,
}

/// How long a sync failure waits before the next attempt, at most.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl SyncedCache {
    /// A cache writing into `records`, which the request path reads. Records of the `retained`
    /// types are also kept as they are (the dynamic configuration's records).
    pub fn new(records: Arc<RwLock<MemoryRecords>>, retained: &[&str]) -> Arc<SyncedCache> {
        Arc::new(SyncedCache {
            records,
            versions: watch::Sender::new(Versions::default()),
            retained: retained.iter().map(|t| (*t).to_owned()).collect(),
            raw: Mutex::new(BTreeMap::new()),
            raw_changed: watch::Sender::new(0),
        })
    }

    /// Syncs from `broker` until the returned task is aborted.
    pub fn spawn(self: &Arc<Self>, broker: Broker) -> tokio::task::JoinHandle<()> {
        let cache = Arc::clone(self);
        tokio::spawn(async move { cache.run(broker).await })
    }

    /// The versions the cache holds.
    pub fn versions(&self) -> Versions {
        *self.versions.borrow()
    }

    /// Read-your-writes: waits (at most `timeout`) until the cache holds at least `min`. `false`
    /// when it does not; the caller then reads from the databroker itself.
    pub async fn wait_for(&self, min: Versions, timeout: Duration) -> bool {
        let mut versions = self.versions.subscribe();
        let fresh = |v: &Versions| {
            v.server_version == min.server_version && v.latest_record_version >= min.latest_record_version
        };
        tokio::time::timeout(timeout, versions.wait_for(fresh)).await.is_ok_and(|r| r.is_ok())
    }

    /// The retained records of a type, by id.
    pub fn retained(&self, record_type: &str) -> Vec<Record> {
        let raw = self.raw.lock().unwrap_or_else(PoisonError::into_inner);
        raw.iter().filter(|((t, _), _)| t == record_type).map(|(_, r)| r.clone()).collect()
    }

    /// Ticks whenever a retained record changes.
    pub fn watch_retained(&self) -> watch::Receiver<u64> {
        self.raw_changed.subscribe()
    }

    async fn run(&self, broker: Broker) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let snapshot = match broker.latest(None).await {
                Ok(snapshot) => snapshot,
                Err(error) => {
                    tracing::warn!(code = ?error.code(), message = error.message(), "databroker cache: SyncLatest failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let mut cursor = snapshot.versions;
            self.install(snapshot);
            backoff = Duration::from_millis(50);
            // Follow changes until the databroker says to start over.
            loop {
                match self.follow(&broker, &mut cursor).await {
                    Ok(()) => {}
                    Err(error) if error.code() == Code::Aborted => {
                        tracing::info!(message = error.message(), "databroker cache: re-syncing from scratch");
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(code = ?error.code(), message = error.message(), "databroker cache: Sync failed; resuming");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
    }

    async fn follow(&self, broker: &Broker, cursor: &mut Versions) -> Result<(), Status> {
        let mut feed = broker.feed(*cursor, None).await?;
        loop {
            let record = feed.next().await?;
            if record.version <= cursor.latest_record_version {
                continue;
            }
            cursor.latest_record_version = record.version;
            self.apply(&record);
            self.versions.send_replace(*cursor);
        }
    }

    /// Replaces the whole cache with a snapshot.
    fn install(&self, snapshot: Snapshot) {
        let mut fresh = MemoryRecords::default();
        let mut raw = BTreeMap::new();
        for record in snapshot.records {
            if let Err(error) = fresh.upsert(&record.record_type, &record.id, &record.data) {
                tracing::warn!(%error, "databroker cache: a record cannot be read; treated as absent");
            }
            if self.retained.contains(&record.record_type) {
                raw.insert((record.record_type.clone(), record.id.clone()), record);
            }
        }
        *self.records.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        *self.raw.lock().unwrap_or_else(PoisonError::into_inner) = raw;
        self.raw_changed.send_modify(|t| *t = t.wrapping_add(1));
        self.versions.send_replace(snapshot.versions);
    }

    fn apply(&self, record: &Record) {
        {
            let mut records = self.records.write().unwrap_or_else(PoisonError::into_inner);
            if record.is_deleted() {
                records.remove(&record.record_type, &record.id);
            } else if let Err(error) = records.upsert(&record.record_type, &record.id, &record.data) {
                tracing::warn!(%error, "databroker cache: a record cannot be read; treated as absent");
            }
        }
        if self.retained.contains(&record.record_type) {
            let key = (record.record_type.clone(), record.id.clone());
            let mut raw = self.raw.lock().unwrap_or_else(PoisonError::into_inner);
            if record.is_deleted() {
                raw.remove(&key);
            } else {
                raw.insert(key, record.clone());
            }
            drop(raw);
            self.raw_changed.send_modify(|t| *t = t.wrapping_add(1));
        }
    }
}
