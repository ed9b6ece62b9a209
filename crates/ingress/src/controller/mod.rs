//! The controller (system.md §6, upstream's `controllers/ingress`): it watches the API server and
//! writes the routes of every Ingress it manages to the databroker, as one config record.
//!
//! ```text
//! API server ──watch──► stores (Ingress, IngressClass, Service, Endpoints, Secret, status Service)
//!                          │ any change → Notify → debounce (50 ms, at most 250 ms)
//!                          ▼
//!                     Snapshot ──record::plan──► Plan { record data, outcome per Ingress }
//!                          │ (pure: classes::managed, translate, certificates pruned)
//!                          ▼
//! databroker ◄── Get, Put if it differs ── Reconciler ──► Events (when an outcome changes),
//!                                                        Ingress status (when it differs)
//! ```
//!
//! All the I/O of the crate is here; the translation it calls ([`crate::translate`]) does none.
//! Every change recomputes the whole record from the stores, so a change to a Service, Endpoints
//! or Secret reaches every Ingress that refers to it without tracking who refers to what, and a
//! missed or reordered event cannot leave stale routes behind.
//!
//! Errors: a databroker failure is retried with backoff (0.5 s doubling to 30 s) and counted; a
//! failed Event or status patch is retried at the next reconcile; translation problems are
//! outcomes of their Ingress (a `Warning UpdateError` event; its previous routes are kept, see
//! [`record`]). Nothing here panics.

mod error;
pub mod events;
mod flags;
mod probes;
mod reconcile;
pub mod record;
mod watch;

pub use error::ControllerError;
pub use flags::{ControllerArgs, DatabrokerTls, Settings};
pub use probes::Metrics;
pub use reconcile::{Reconciler, Report};
pub use record::{CONFIG_ID, IngressOutcome, Plan, plan};

use databroker::auth::ServiceAuth;
use databroker::client::{Broker, RemoteOptions};
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Everything a reconcile reads: the objects of the watched namespaces.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub ingresses: Vec<Ingress>,
    pub classes: Vec<IngressClass>,
    pub services: Vec<Service>,
    pub endpoints: Vec<Endpoints>,
    pub secrets: Vec<Secret>,
    /// The Service of `--update-status-from-service`, when it is set and the Service exists.
    pub status_service: Option<Service>,
}

/// The first retry after a failure, and the longest wait between retries.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A configured controller, ready to run.
pub struct Controller {
    settings: Settings,
    client: kube::Client,
    broker: Broker,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Controller {
    pub fn new(settings: Settings, client: kube::Client, broker: Broker) -> Controller {
        Controller { settings, client, broker, metrics: Arc::new(Metrics::default()) }
    }

    /// The counters `/metrics` shows.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Runs until `shutdown` completes: binds the probe and metrics listeners, starts the
    /// watches, waits until each has listed its objects, then reconciles after every change.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ControllerError> {
        let Controller { settings, client, broker, metrics } = self;
        let mut tasks = JoinSet::new();
        let listeners = [
            (settings.health_probe_address, probes::Endpoints::Probes, "health probe"),
            (settings.metrics_address, probes::Endpoints::Metrics, "metrics"),
        ];
        for (address, endpoints, what) in listeners {
            let Some(addr) = address else { continue };
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ControllerError::Bind {
                what,
                addr,
                source,
            })?;
            tracing::info!(%addr, "serving {what}");
            tasks.spawn(probes::serve(listener, endpoints, Arc::clone(&metrics)));
        }
        let changed = Arc::new(Notify::new());
        let stores = watch::Stores::watch(&client, &settings, &changed, &mut tasks);
        let mut reconciler =
            Reconciler::new(client, broker, settings.options(), settings.status_service.clone(), Arc::clone(&metrics));
        let mut shutdown = std::pin::pin!(shutdown);
        tokio::select! {
            ready = stores.ready() => {
                ready.map_err(|_| ControllerError::WatchEnded { what: "the api server".to_owned() })?;
            }
            () = &mut shutdown => return Ok(()),
        }
        tracing::info!("watches listed everything; reconciling");
        let mut retry: Option<Duration> = None;
        loop {
            match reconciler.reconcile(&stores.snapshot()).await {
                Ok(report) => {
                    for failure in &report.failures {
                        tracing::warn!("{failure}");
                    }
                    retry = (!report.failures.is_empty()).then(|| next_retry(retry));
                    metrics.reconciled(&report);
                }
                Err(error) => {
                    let wait = next_retry(retry);
                    tracing::error!("reconcile failed, retrying in {wait:?}: {error}");
                    metrics.failed();
                    retry = Some(wait);
                }
            }
            let retry_timer = async {
                match retry {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = changed.notified() => {}
                () = retry_timer => {}
                () = &mut shutdown => break,
            }
            // Debounce: let a burst of changes settle, but not for ever.
            let deadline = tokio::time::Instant::now() + settings.debounce * 5;
            loop {
                tokio::select! {
                    () = changed.notified() => {}
                    () = tokio::time::sleep(settings.debounce) => break,
                    () = tokio::time::sleep_until(deadline) => break,
                    () = &mut shutdown => return Ok(()),
                }
            }
        }
        tracing::info!("shutting down");
        Ok(())
    }
}

fn next_retry(previous: Option<Duration>) -> Duration {
    previous.map_or(RETRY_FIRST, |wait| (wait * 2).min(RETRY_MAX))
}

/// A databroker client for `--databroker-service-url` and the shared secret.
///
/// An `https://` URL is verified with `--databroker-tls-ca`/`--databroker-tls-ca-file` when given,
/// else the system's roots (or not at all with `--databroker-tls-insecure-skip-verify`); an
/// `http://` URL is plain gRPC and the TLS flags have nothing to apply to.
pub fn connect_databroker(settings: &Settings) -> Result<Broker, ControllerError> {
    let url = settings.databroker_url.clone();
    let tls = &settings.databroker_tls;
    if !url.starts_with("https://") && (tls.ca_pem.is_some() || tls.insecure_skip_verify) {
        tracing::warn!(%url, "the databroker TLS flags apply to https:// URLs only, and are ignored");
    }
    let auth = ServiceAuth::new(&settings.shared_secret);
    let options = RemoteOptions { ca_pem: tls.ca_pem.clone(), insecure_skip_verify: tls.insecure_skip_verify };
    Broker::remote_with(&url, auth, &options).map_err(|reason| ControllerError::DatabrokerUrl { url, reason })
}
