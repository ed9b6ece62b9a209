//! The databroker's place in the server (system.md §5, seeds 001 and 004).
//!
//! - `services: all`: the storage runs in process and the proxy's record cache follows it
//!   directly, with no network hop.
//! - `services: databroker`: the storage is served over gRPC on `grpc_address` by `crate::grpc`
//!   (TLS with the server's certificates unless `grpc_insecure: true`), every call checked
//!   against `shared_secret`. All-in-one serves it too when `grpc_address` is set, so that the
//!   ingress controller can write its configuration record.
//! - The `pomerium.config.Config` records are kept by the cache and applied by the server as
//!   routes and certificates (`crate::dynamic`).
//! - `services: proxy` (without `databroker`): the record cache follows the databroker at
//!   `databroker_service_url` over gRPC (`https://` verified against `certificate_authority` or
//!   the system roots).
//!
//! `databroker_storage_type` picks the backend: `memory` (the default) or `postgres` with
//! `databroker_storage_connection_string` (or `_file`).

use config::Options;
use config::options::{Service, StorageType};
use databroker::Backend;
use databroker::auth::ServiceAuth;
use databroker::client::{Broker, RemoteOptions, SyncedCache};
use databroker::record::CONFIG_TYPE;
use databroker::storage::AnyStorage;
use proxy::runtime::SharedRecords;
use std::sync::Arc;
use std::time::Duration;

/// How long startup waits for PostgreSQL to accept connections.
const STORAGE_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The databroker side of a running server.
#[derive(Debug)]
pub struct Databroker {
    /// The storage, when the databroker runs in this process.
    pub storage: Option<Arc<AnyStorage>>,
    /// How this process reaches the databroker (sessions are written through it).
    pub broker: Option<Broker>,
    /// The proxy's cache of records, when the proxy runs here.
    pub cache: Option<Arc<SyncedCache>>,
}

/// Opens the storage, or follows the databroker of another process, as the services require.
pub async fn start(config: &config::Config, records: &SharedRecords) -> Result<Databroker, String> {
    let options = &config.options;
    let services = &options.services;
    let storage = if services.runs(Service::Databroker) { Some(open_storage(options).await?) } else { None };
    let broker = match &storage {
        Some(storage) => Some(Broker::Local(Arc::clone(storage))),
        None if services.runs(Service::Proxy)
            || services.runs(Service::Authorize)
            || services.runs(Service::Authenticate) =>
        {
            Some(remote(options)?)
        }
        None => None,
    };
    let cache = match (&broker, services.runs(Service::Proxy) || services.runs(Service::Authorize)) {
        (Some(broker), true) => {
            let cache = SyncedCache::new(Arc::clone(&records.0), &[CONFIG_TYPE]);
            let task = cache.spawn(broker.clone());
            // Not in `tasks`: shutdown waits for those to finish, and the cache never does; it
            // ends with the runtime.
            tokio::spawn(async move {
                // The cache runs until the process ends; a panic in it must not go unnoticed.
                if let Err(error) = task.await {
                    tracing::error!(%error, "the databroker cache stopped");
                }
            });
            Some(cache)
        }
        _ => None,
    };
    Ok(Databroker { storage, broker, cache })
}

fn backend(options: &Options) -> Result<Backend, String> {
    match options.databroker.storage_type {
        StorageType::Memory => Ok(Backend::Memory),
        StorageType::Postgres => {
            let secret = options
                .databroker
                .storage_connection_string
                .as_ref()
                .ok_or("databroker_storage_type is postgres but databroker_storage_connection_string is not set")?;
            let text = secret.expose_str().ok_or("databroker_storage_connection_string is not UTF-8 text")?;
            Ok(Backend::Postgres(text.trim().to_owned()))
        }
        StorageType::File => {
            Err("databroker_storage_type `file` is not supported by this build: use `memory` or `postgres`".to_owned())
        }
    }
}

/// Opens the storage; PostgreSQL gets a while to come up (it often starts beside us).
async fn open_storage(options: &Options) -> Result<Arc<AnyStorage>, String> {
    let backend = backend(options)?;
    let deadline = tokio::time::Instant::now() + STORAGE_CONNECT_TIMEOUT;
    let mut delay = Duration::from_millis(200);
    loop {
        match databroker::open(&backend).await {
            Ok(storage) => {
                tracing::info!(storage = ?backend, "databroker storage ready");
                return Ok(storage);
            }
            Err(databroker::storage::StorageError::Unavailable(message)) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%message, "databroker storage not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(format!("databroker storage: {error}")),
        }
    }
}

pub(crate) fn service_auth(options: &Options) -> Result<ServiceAuth, String> {
    let secret = options
        .shared_secret
        .as_ref()
        .ok_or("the databroker needs shared_secret when services run apart: every call is signed with it")?;
    Ok(ServiceAuth::new(secret.expose()))
}

/// The databrokers of `databroker_service_urls` (`databroker_internal_service_url` instead, when
/// set): every address of every URL, spread and failed over.
fn remote(options: &Options) -> Result<Broker, String> {
    let urls: Vec<String> = match &options.databroker.internal_service_url {
        Some(url) => vec![url.to_string()],
        None => options.databroker.service_urls.iter().map(ToString::to_string).collect(),
    };
    if urls.is_empty() {
        return Err("databroker_service_url is required when the databroker runs in another process".to_owned());
    }
    let remote = RemoteOptions {
        ca_pem: options.certificate_authority.as_ref().map(|ca| proxy::tls::certificates_to_pem(ca.ders())),
        insecure_skip_verify: false,
    };
    Broker::remote_all(&urls, service_auth(options)?, &remote, lookup_family(options))
}

/// `dns_lookup_family` for the gRPC clients (`AUTO` and `V4_PREFERRED` keep both families).
pub(crate) fn lookup_family(options: &Options) -> databroker::pool::Family {
    use config::options::DnsLookupFamily;
    match options.dns_lookup_family {
        Some(DnsLookupFamily::V4Only) => databroker::pool::Family::V4Only,
        Some(DnsLookupFamily::V6Only) => databroker::pool::Family::V6Only,
        _ => databroker::pool::Family::All,
    }
}
