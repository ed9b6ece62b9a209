//! Health checks reported to the control plane (`internal/zero/healthcheck`,
//! `internal/zero/telemetry/reporter` upstream). What this replica can honestly compute:
//!
//! - `storage.backend`: the databroker's storage answers;
//! - `zero.connect`: the Connect stream is up, or why not;
//! - `zero.bootstrap-config.save`: the cache file was written, or why not;
//! - `config.databroker.build`: the configuration from the records loaded, or why not;
//! - `routes.reachable`: every `https` route host's `/.well-known/pomerium/jwks.json` (TLS
//!   verification off, 30 s) holds this cluster's own signing key, proof that the host points at
//!   the cluster. `*.localhost` names are loopback (RFC 6761) and a port in `from` is honoured.
//!
//! (`zero.resource-bundle.<id>` is the bundle status that [`super::reconcile`] reports.)
//!
//! Scheduling as Pomerium's: first run after a minute, then every 30 minutes; after a failure,
//! exponential backoff from a minute up to 30 minutes; a `RunHealthChecksRequest` or a
//! configuration change runs them at once. Each status goes to the control plane as an OTLP
//! trace span named after the check (status OK, or Error with the message), resource
//! `service.name=pomerium-managed-core`, `host.name`, `service.version`, over gRPC
//! `TraceService/Export` at `POMERIUM_OTEL_ENDPOINT` (default: the Connect server), with the id
//! token as bearer.

use super::Managed;
use databroker::client::Broker;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use zero::client::MIN_TOKEN_LIFE_CONNECT;
use zero::status::Backoff;

pub const STORAGE_BACKEND: &str = "storage.backend";
pub const ZERO_CONNECT: &str = "zero.connect";
pub const BOOTSTRAP_SAVE: &str = "zero.bootstrap-config.save";
pub const CONFIG_BUILD: &str = "config.databroker.build";
pub const ROUTES_REACHABLE: &str = "routes.reachable";

const FIRST_RUN: Duration = Duration::from_secs(60);
const EVERY: Duration = Duration::from_secs(30 * 60);
const REACH_TIMEOUT: Duration = Duration::from_secs(30);
const STORAGE_TIMEOUT: Duration = Duration::from_secs(10);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// The latest status of each check, and what wakes a run.
#[derive(Debug, Default)]
pub struct Health {
    statuses: Mutex<BTreeMap<String, Result<(), String>>>,
    /// `https` route hosts as `(host, port)`.
    routes: Mutex<Vec<(String, u16)>>,
    /// The control plane's changeset the configuration being served came from (sent with
    /// `config.databroker.build`, for the console's `cluster_config_current`).
    changeset: Mutex<Option<i64>>,
    /// Runs the checks now.
    pub run: Notify,
}

impl Health {
    pub fn set(&self, check: &str, result: Result<(), String>) {
        self.statuses.lock().unwrap_or_else(PoisonError::into_inner).insert(check.to_owned(), result);
    }

    /// The `https` route hosts of the configuration being served (skipping routes with a custom
    /// CA, as Pomerium does, and wildcard hosts).
    pub fn set_routes(&self, config: &config::Config) {
        let mut hosts: Vec<(String, u16)> = config
            .routes
            .iter()
            .filter(|r| r.from.scheme == config::route::FromScheme::Https && r.tls.custom_ca.is_none())
            .filter(|r| !r.from.host.contains('*'))
            .map(|r| (r.from.host.clone(), r.from.port.unwrap_or(443)))
            .collect();
        hosts.sort();
        hosts.dedup();
        *self.routes.lock().unwrap_or_else(PoisonError::into_inner) = hosts;
    }

    /// `config.databroker.build` (with the changeset of the records when they built), and a run
    /// of the checks for the change.
    pub fn configuration_built(&self, build: Result<(), String>, records: &[databroker::record::Record]) {
        if build.is_ok() {
            let changeset = records
                .iter()
                .filter(|r| r.record_type == databroker::record::CONFIG_TYPE && r.deleted_at.is_none())
                .find_map(|r| r.data.get("changesetVersion").and_then(Value::as_i64));
            *self.changeset.lock().unwrap_or_else(PoisonError::into_inner) = changeset;
        }
        self.set(CONFIG_BUILD, build);
        self.run.notify_one();
    }

    fn snapshot(&self) -> BTreeMap<String, Result<(), String>> {
        self.statuses.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Runs the checks on schedule and reports them, until the server stops.
pub async fn run(managed: Arc<Managed>, broker: Broker, mut shutdown: proxy::server::ShutdownSignal) {
    let mut backoff = Backoff::new(EVERY);
    let mut delay = FIRST_RUN;
    loop {
        tokio::select! {
            () = shutdown.fired() => return,
            () = managed.health.run.notified() => {}
            () = tokio::time::sleep(delay) => {}
        }
        let healthy = tokio::select! {
            () = shutdown.fired() => return,
            healthy = run_once(&managed, &broker) => healthy,
        };
        delay = if healthy {
            backoff.reset();
            EVERY
        } else {
            // From a minute up to 30 minutes.
            backoff.next_delay(0.0).max(FIRST_RUN)
        };
    }
}

/// Computes the checks, reports every status; whether all passed.
async fn run_once(managed: &Managed, broker: &Broker) -> bool {
    let storage = match tokio::time::timeout(STORAGE_TIMEOUT, broker.get(super::reconcile::LEASE, "health")).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => Err(format!("the databroker storage does not answer: {}", status.message())),
        Err(_) => Err(format!("the databroker storage did not answer within {STORAGE_TIMEOUT:?}")),
    };
    managed.health.set(STORAGE_BACKEND, storage);
    let routes = managed.health.routes.lock().unwrap_or_else(PoisonError::into_inner).clone();
    managed.health.set(ROUTES_REACHABLE, routes_reachable(&managed.signing_jwk(), &routes).await);
    let statuses = managed.health.snapshot();
    for (check, result) in &statuses {
        if let Err(message) = result {
            tracing::warn!(check = %check, "health check failed: {message}");
        }
    }
    match export(managed, &statuses).await {
        Ok(()) => tracing::info!(checks = statuses.len(), "health checks reported"),
        Err(error) => tracing::warn!(check = "zero.telemetry.collect-and-send", "health checks not reported: {error}"),
    }
    statuses.values().all(Result::is_ok)
}

/// `routes.reachable`: every host's JWKS holds `own` (a JWK); the error names each host that
/// failed and why.
pub async fn routes_reachable(own: &Value, routes: &[(String, u16)]) -> Result<(), String> {
    let mut failures = Vec::new();
    for (host, port) in routes {
        let outcome = tokio::time::timeout(REACH_TIMEOUT, reach(own, host, *port))
            .await
            .unwrap_or_else(|_| Err(format!("connection error: no answer within {REACH_TIMEOUT:?}")));
        if let Err(error) = outcome {
            failures.push(format!("{host}: {error}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("route hosts that do not point at this cluster: {}", failures.join("; ")))
    }
}

/// One host: `Err` starts with the error code (DNS error, connection error, invalid
/// certificate, unexpected response, key not found).
async fn reach(own: &Value, host: &str, port: u16) -> Result<(), String> {
    use http_body_util::BodyExt as _;
    let loopback = host == "localhost" || host.ends_with(".localhost");
    let address = if loopback {
        std::net::SocketAddr::from(([127, 0, 0, 1], port))
    } else {
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("DNS error: {e}"))?
            .next()
            .ok_or("DNS error: no address")?
    };
    let tcp = tokio::net::TcpStream::connect(address).await.map_err(|e| format!("connection error: {e}"))?;
    let tls = proxy::upstream::client_config(&proxy::upstream::UpstreamTls { skip_verify: true, ..Default::default() })
        .map_err(|e| format!("connection error: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("invalid certificate: `{host}` is not a server name: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("connection error: TLS: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| format!("connection error: {e}"))?;
    let driver = tokio::spawn(connection);
    let authority = if port == 443 { host.to_owned() } else { format!("{host}:{port}") };
    let request = http::Request::get("/.well-known/pomerium/jwks.json")
        .header(http::header::HOST, authority)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| format!("unexpected response: {e}"))?;
    let result = async {
        let response = sender.send_request(request).await.map_err(|e| format!("connection error: {e}"))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("unexpected response: HTTP {}", response.status()));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("unexpected response: {e}"))?
            .to_bytes();
        let jwks: Value = serde_json::from_slice(&body).map_err(|e| format!("unexpected response: not JSON: {e}"))?;
        let keys = jwks.get("keys").and_then(Value::as_array).ok_or("unexpected response: no `keys`")?;
        let same = |key: &Value| ["kty", "crv", "x", "y", "n", "e"].iter().all(|f| key.get(f) == own.get(f));
        if keys.iter().any(same) {
            Ok(())
        } else {
            Err("key not found: the host answers, but not with this cluster's signing key".to_owned())
        }
    }
    .await;
    driver.abort();
    result
}

/// The statuses as OTLP spans, to the control plane.
async fn export(managed: &Managed, statuses: &BTreeMap<String, Result<(), String>>) -> Result<(), String> {
    let endpoint = std::env::var("POMERIUM_OTEL_ENDPOINT")
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| managed.settings.connect.clone());
    let channel =
        super::connect::channel(&endpoint).map_err(|e| e.replace("CONNECT_SERVER_ENDPOINT", "the OTLP endpoint"))?;
    let token = managed.client.id_token(MIN_TOKEN_LIFE_CONNECT).await.map_err(|e| e.to_string())?;
    let changeset = *managed.health.changeset.lock().unwrap_or_else(PoisonError::into_inner);
    let mut request = tonic::Request::new(request(&super::connect::hostname(), statuses, changeset));
    let bearer =
        format!("Bearer {token}").parse().map_err(|_| "the id token is not a valid header value".to_owned())?;
    request.metadata_mut().insert("authorization", bearer);
    request.set_timeout(EXPORT_TIMEOUT);
    let answer = tokio::time::timeout(EXPORT_TIMEOUT, TraceServiceClient::new(channel).export(request))
        .await
        .map_err(|_| format!("{endpoint} did not answer within {EXPORT_TIMEOUT:?}"))?;
    answer.map(|_| ()).map_err(|status| format!("{endpoint}: {}", status.message()))
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }),
        ..Default::default()
    }
}

/// One span per check, as `internal/zero/telemetry/reporter/healthcheck.go` sends them.
/// The changeset, when known, is the attribute `pomerium.changeset.version` of
/// `config.databroker.build`.
pub fn request(
    hostname: &str,
    statuses: &BTreeMap<String, Result<(), String>>,
    changeset: Option<i64>,
) -> ExportTraceServiceRequest {
    let now = u64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(0);
    let trace_id: Vec<u8> = (0..16).map(|_| fastrand::u8(..)).collect();
    let spans = statuses
        .iter()
        .map(|(check, result)| {
            let status = match result {
                Ok(()) => Status { code: status::StatusCode::Ok.into(), message: String::new() },
                Err(message) => Status { code: status::StatusCode::Error.into(), message: message.clone() },
            };
            Span {
                trace_id: trace_id.clone(),
                span_id: (0..8).map(|_| fastrand::u8(..)).collect(),
                name: check.clone(),
                start_time_unix_nano: now,
                end_time_unix_nano: now,
                attributes: match changeset {
                    Some(version) if check == CONFIG_BUILD => vec![
                        attribute("health.check", check),
                        attribute("pomerium.changeset.version", &version.to_string()),
                    ],
                    _ => vec![attribute("health.check", check)],
                },
                status: Some(status),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    attribute("service.name", "pomerium-managed-core"),
                    attribute("host.name", hostname),
                    attribute("service.version", env!("CARGO_PKG_VERSION")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope { name: "pomerium.health".to_owned(), ..Default::default() }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn each_check_is_a_span_named_after_it_with_its_status() {
        let statuses = BTreeMap::from([
            (ZERO_CONNECT.to_owned(), Ok(())),
            (STORAGE_BACKEND.to_owned(), Err("no postgres".to_owned())),
        ]);
        let request = request("replica-a", &statuses, Some(3));
        let resource = request.resource_spans[0].resource.as_ref().unwrap();
        let value = |key: &str| {
            let found = resource.attributes.iter().find(|a| a.key == key).unwrap();
            match found.value.as_ref().unwrap().value.as_ref().unwrap() {
                any_value::Value::StringValue(s) => s.clone(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(value("service.name"), "pomerium-managed-core");
        assert_eq!(value("host.name"), "replica-a");
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        let storage = spans.iter().find(|s| s.name == STORAGE_BACKEND).unwrap();
        let status = storage.status.as_ref().unwrap();
        assert_eq!((status.code, status.message.as_str()), (i32::from(status::StatusCode::Error), "no postgres"));
        let connect = spans.iter().find(|s| s.name == ZERO_CONNECT).unwrap();
        assert_eq!(connect.status.as_ref().unwrap().code, i32::from(status::StatusCode::Ok));
        assert_eq!((connect.trace_id.len(), connect.span_id.len()), (16, 8));
    }

    #[tokio::test]
    async fn a_host_nothing_answers_on_is_a_connection_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let own = serde_json::json!({"kty": "EC", "x": "a", "y": "b"});
        assert_eq!(routes_reachable(&own, &[]).await, Ok(()));
        let error = routes_reachable(&own, &[("nowhere.localhost".to_owned(), port)]).await.unwrap_err();
        assert!(error.contains("nowhere.localhost: connection error"), "{error}");
    }
}
