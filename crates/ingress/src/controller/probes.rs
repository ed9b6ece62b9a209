//! The probe endpoints (`/healthz`: the process runs; `/readyz`: the watches have listed
//! everything and a reconcile has succeeded) and the metrics endpoint (`/metrics`, Prometheus
//! text), each on its own listener as controller-runtime serves them.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The controller's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    reconcile_errors: AtomicU64,
    last_success: AtomicU64,
    record_writes: AtomicU64,
    events: AtomicU64,
    side_effect_errors: AtomicU64,
    ingresses_applied: AtomicU64,
    ingresses_failed: AtomicU64,
    ready: AtomicBool,
}

impl Metrics {
    pub(crate) fn reconciled(&self, report: &super::Report) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.last_success.store(now, Ordering::Relaxed);
        self.events.fetch_add(report.events.len() as u64, Ordering::Relaxed);
        self.side_effect_errors.fetch_add(report.failures.len() as u64, Ordering::Relaxed);
        let failed =
            report.ingresses.values().filter(|o| matches!(o, super::IngressOutcome::Failed { .. })).count() as u64;
        self.ingresses_failed.store(failed, Ordering::Relaxed);
        self.ingresses_applied.store(report.ingresses.len() as u64 - failed, Ordering::Relaxed);
        self.ready.store(true, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        self.reconcile_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_written(&self) {
        self.record_writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a reconcile has succeeded.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        metric(
            "pomerium_ingress_controller_reconciles_total",
            "counter",
            "Reconciles of the configuration, successful or not.",
            get(&self.reconciles),
        );
        metric(
            "pomerium_ingress_controller_reconcile_errors_total",
            "counter",
            "Reconciles that failed (the databroker could not be read or written).",
            get(&self.reconcile_errors),
        );
        metric(
            "pomerium_ingress_controller_last_success_timestamp_seconds",
            "gauge",
            "When a reconcile last succeeded (Unix time).",
            get(&self.last_success),
        );
        metric(
            "pomerium_ingress_controller_config_writes_total",
            "counter",
            "Writes of the ingress-controller config record.",
            get(&self.record_writes),
        );
        metric("pomerium_ingress_controller_events_total", "counter", "Kubernetes events posted.", get(&self.events));
        metric(
            "pomerium_ingress_controller_api_errors_total",
            "counter",
            "Events and status updates the API server refused.",
            get(&self.side_effect_errors),
        );
        let _ = writeln!(
            out,
            "# HELP pomerium_ingress_controller_ingresses Managed ingresses by outcome.\n\
             # TYPE pomerium_ingress_controller_ingresses gauge\n\
             pomerium_ingress_controller_ingresses{{outcome=\"applied\"}} {}\n\
             pomerium_ingress_controller_ingresses{{outcome=\"failed\"}} {}",
            get(&self.ingresses_applied),
            get(&self.ingresses_failed)
        );
        out
    }
}

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoints {
    Probes,
    Metrics,
}

fn answer(endpoints: Endpoints, path: &str, metrics: &Metrics) -> (StatusCode, String) {
    match (endpoints, path) {
        (Endpoints::Probes, "/healthz") => (StatusCode::OK, "ok\n".to_owned()),
        (Endpoints::Probes, "/readyz") if metrics.is_ready() => (StatusCode::OK, "ok\n".to_owned()),
        (Endpoints::Probes, "/readyz") => {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: no configuration written yet\n".to_owned())
        }
        (Endpoints::Metrics, "/metrics") => (StatusCode::OK, metrics.render()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    }
}

/// Serves `endpoints` on `listener` until the task is dropped.
pub(crate) async fn serve(listener: tokio::net::TcpListener, endpoints: Endpoints, metrics: Arc<Metrics>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let metrics = Arc::clone(&metrics);
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let (status, body) = answer(endpoints, request.uri().path(), &metrics);
                let content_type = match endpoints {
                    Endpoints::Metrics => "text/plain; version=0.0.4; charset=utf-8",
                    Endpoints::Probes => "text/plain; charset=utf-8",
                };
                let mut response = Response::new(Full::new(Bytes::from(body)));
                *response.status_mut() = status;
                response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
        while connections.try_join_next().is_some() {}
    }
}
