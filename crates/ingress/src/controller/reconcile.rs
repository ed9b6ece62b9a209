//! One reconcile: from a [`Snapshot`] of the watched objects to the config record in the
//! databroker, then the Events and the status of each Ingress.
//!
//! 1. Get the current `ingress-controller` record; [`plan`](super::record::plan) the new one from
//!    the snapshot (a failing Ingress keeps its routes from the current record).
//! 2. Put it only when it differs.
//! 3. For each managed Ingress, in namespace/name order: post an Event when its outcome changed
//!    since the last one posted (`Normal Updated` once its routes are written; `Warning
//!    UpdateError` with the errors); then, with a status Service, patch `status.loadBalancer` of
//!    an Ingress whose routes were written when it differs.
//!
//! A databroker failure fails the reconcile (nothing else happens; the caller retries). A failed
//! Event or status patch does not: it is returned in the [`Report`], and its outcome is not
//! remembered, so the next reconcile tries again.

use super::events::{self, EventType};
use super::record::{CONFIG_ID, IngressOutcome, Plan};
use super::{ControllerError, Metrics, Snapshot};
use crate::{ObjectKey, Options};
use databroker::client::Broker;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the last Event posted on an Ingress said.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reported {
    Updated(u64),
    Failed(String),
}

/// What one reconcile did.
#[derive(Debug, Default)]
pub struct Report {
    /// Whether the record was written (it differed).
    pub written: bool,
    /// The outcome of every managed Ingress.
    pub ingresses: BTreeMap<ObjectKey, IngressOutcome>,
    /// Events posted, as `(ingress, reason)`.
    pub events: Vec<(ObjectKey, &'static str)>,
    /// Ingresses whose status was patched.
    pub statuses: Vec<ObjectKey>,
    /// Events and status patches that failed; they are tried again on the next reconcile.
    pub failures: Vec<ControllerError>,
}

/// Writes the record, Events and statuses; remembers what it reported on each Ingress.
pub struct Reconciler {
    client: kube::Client,
    broker: Broker,
    options: Options,
    status_service: Option<ObjectKey>,
    instance: String,
    reported: BTreeMap<ObjectKey, Reported>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("broker", &self.broker)
            .field("options", &self.options)
            .field("status_service", &self.status_service)
            .field("reported", &self.reported)
            .finish_non_exhaustive()
    }
}

impl Reconciler {
    pub fn new(
        client: kube::Client,
        broker: Broker,
        options: Options,
        status_service: Option<ObjectKey>,
        metrics: Arc<Metrics>,
    ) -> Reconciler {
        let instance = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "pomerium-ingress-controller".to_owned());
        Reconciler { client, broker, options, status_service, instance, reported: BTreeMap::new(), metrics }
    }

    /// Reconciles once; see the module documentation.
    pub async fn reconcile(&mut self, snapshot: &Snapshot) -> Result<Report, ControllerError> {
        let current = self
            .broker
            .get(databroker::record::CONFIG_TYPE, CONFIG_ID)
            .await
            .map_err(|status| ControllerError::GetRecord { id: CONFIG_ID, message: status.message().to_owned() })?
            .filter(|record| !record.is_deleted());
        let plan = super::record::plan(snapshot, &self.options, current.as_ref().map(|r| &r.data));
        for (ingress, reason) in &plan.skipped {
            tracing::debug!(%ingress, %reason, "ingress skipped");
        }
        let mut report = Report::default();
        if plan.differs_from(current.as_ref().map(|r| &r.data)) {
            self.broker
                .put(vec![plan.record()])
                .await
                .map_err(|status| ControllerError::PutRecord { id: CONFIG_ID, message: status.message().to_owned() })?;
            report.written = true;
            self.metrics.record_written();
            tracing::info!(routes = plan.routes().len(), "pomerium configuration written to the databroker");
        }
        self.report(snapshot, &plan, &mut report).await;
        report.ingresses = plan.ingresses;
        Ok(report)
    }

    async fn report(&mut self, snapshot: &Snapshot, plan: &Plan, report: &mut Report) {
        self.reported.retain(|key, _| plan.ingresses.contains_key(key));
        let by_key: BTreeMap<ObjectKey, &Ingress> =
            snapshot.ingresses.iter().map(|ingress| (ObjectKey::of(&ingress.metadata), ingress)).collect();
        let load_balancer = match (&self.status_service, &snapshot.status_service) {
            (Some(_), Some(service)) => Some(events::load_balancer_status(service)),
            (Some(name), None) => {
                tracing::warn!(service = %name, "the status service was not found: ingress status is left as it is");
                None
            }
            (None, _) => None,
        };
        for (key, outcome) in &plan.ingresses {
            let Some(ingress) = by_key.get(key) else { continue };
            let (now, kind, reason, message) = match outcome {
                IngressOutcome::Applied { fingerprint, .. } => (
                    Reported::Updated(*fingerprint),
                    EventType::Normal,
                    events::REASON_UPDATED,
                    events::MESSAGE_UPDATED.to_owned(),
                ),
                IngressOutcome::Failed { message, kept } => {
                    tracing::warn!(ingress = %key, kept_routes = kept, "ingress not translated: {message}");
                    let text = match kept {
                        0 => message.clone(),
                        1 => format!("{message} (its previous route is kept)"),
                        n => format!("{message} (its {n} previous routes are kept)"),
                    };
                    (Reported::Failed(message.clone()), EventType::Warning, events::REASON_UPDATE_ERROR, text)
                }
            };
            if self.reported.get(key) != Some(&now) {
                let event = events::event(ingress, kind, reason, &message, &self.instance);
                let namespace = crate::deps::namespace_of(&ingress.metadata);
                match Api::<Event>::namespaced(self.client.clone(), namespace)
                    .create(&PostParams::default(), &event)
                    .await
                {
                    Ok(_) => {
                        self.reported.insert(key.clone(), now);
                        report.events.push((key.clone(), reason));
                    }
                    Err(source) => report.failures.push(ControllerError::Event {
                        ingress: key.clone(),
                        reason,
                        source: Box::new(source),
                    }),
                }
            }
            if let (Some(desired), IngressOutcome::Applied { .. }) = (&load_balancer, outcome)
                && events::current_load_balancer(ingress) != *desired
            {
                let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": desired}}});
                let api = Api::<Ingress>::namespaced(self.client.clone(), &key.namespace);
                match api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => report.statuses.push(key.clone()),
                    Err(source) => {
                        report.failures.push(ControllerError::Status { ingress: key.clone(), source: Box::new(source) })
                    }
                }
            }
        }
    }
}
