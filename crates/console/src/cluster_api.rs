//! The cluster API (`/cluster/v1`, zero.md §1) that managed `pomerium` replicas call, the signed
//! bundle downloads, and the Connect `Subscribe` stream. Wire types are the `zero` crate's.
//!
//! A cluster's id token names the cluster and the generation of its token: rotating the token
//! (or deleting the cluster) makes every id token of the old one fail (401, so the replica
//! exchanges again and gets 400 from `exchangeToken`: the terminal answer), and ends the
//! cluster's Connect streams.

use crate::api::{Reply, storage_failed};
use crate::auth::{self, Subject};
use crate::state::{Event, State};
use crate::store::{Kind, now};
use http::StatusCode;
use serde_json::{Map, Value, json};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use zero::api as wire;
use zero::connect::pb;

/// How long a signed download URL is valid.
pub const DOWNLOAD_VALIDITY_SECONDS: i64 = 10 * 60;
/// The path prefix of signed bundle downloads.
pub const DOWNLOAD_PREFIX: &str = "/cluster/v1/download/";
/// How often an open Connect stream refreshes its replica's "last seen".
pub const REPLICA_HEARTBEAT: Duration = Duration::from_secs(60);

type Result<T> = std::result::Result<T, Reply>;

/// The live cluster a valid id token names (its generation still current).
async fn cluster_of(state: &State, authorization: Option<&str>) -> Result<(String, Map<String, Value>)> {
    let refused = |why: &str| {
        Reply::error(
            StatusCode::UNAUTHORIZED,
            format!("{why}: exchange the cluster token at POST /cluster/v1/exchangeToken"),
        )
    };
    let token = authorization.and_then(auth::bearer).ok_or_else(|| refused("no credentials"))?;
    let Some(Subject::Cluster { id, generation }) = state.keys.check(token, jiff::Timestamp::now().as_second()) else {
        return Err(refused("invalid or expired id token"));
    };
    let cluster = state.store.live(Kind::Cluster, &id).await.map_err(storage_failed)?;
    match cluster {
        Some(cluster) if cluster.get("tokenGeneration").and_then(Value::as_u64) == Some(generation) => {
            Ok((id, cluster))
        }
        _ => Err(refused("the cluster token this id token came from was rotated or revoked")),
    }
}

/// `POST /exchangeToken`: a cluster token for an id token; 400 (terminal) for a token that was
/// rotated, revoked or never issued.
pub async fn exchange(state: &State, body: &[u8]) -> Reply {
    let Ok(request) = serde_json::from_slice::<wire::ExchangeTokenRequest>(body) else {
        return Reply::error(StatusCode::BAD_REQUEST, "the body must be `{\"refreshToken\": \"<cluster token>\"}`");
    };
    let refused = || {
        Reply::error(
            StatusCode::BAD_REQUEST,
            "invalid cluster token: it was rotated or revoked, or this console never issued it; get the cluster's current token from the console",
        )
    };
    let record = match state.store.live(Kind::ClusterToken, &auth::token_id(&request.refresh_token)).await {
        Ok(Some(record)) => record,
        Ok(None) => return refused(),
        Err(error) => return storage_failed(error),
    };
    let (Some(cluster_id), Some(generation)) =
        (record.get("clusterId").and_then(Value::as_str), record.get("generation").and_then(Value::as_u64))
    else {
        return refused();
    };
    match state.store.live(Kind::Cluster, cluster_id).await {
        Ok(Some(cluster)) if cluster.get("tokenGeneration").and_then(Value::as_u64) == Some(generation) => {}
        Ok(_) => return refused(),
        Err(error) => return storage_failed(error),
    }
    let subject = Subject::Cluster { id: cluster_id.to_owned(), generation };
    let answer = wire::ExchangeTokenResponse {
        id_token: state.keys.issue(&subject, jiff::Timestamp::now().as_second()),
        expires_in_seconds: u64::try_from(auth::ID_TOKEN_LIFETIME_SECONDS).unwrap_or(0),
    };
    Reply::ok(serde_json::to_value(answer).unwrap_or_default())
}

/// A cluster's shared secret and pseudonymization key: derived from the console's secret, so
/// they are stable across restarts and differ per cluster.
fn bootstrap(state: &State, cluster: &str, settings: &Map<String, Value>) -> wire::BootstrapConfig {
    let connection = settings.get("databrokerStorageConnection").and_then(Value::as_str).filter(|s| !s.is_empty());
    wire::BootstrapConfig {
        cluster_id: cluster.to_owned(),
        organization_id: state.org_id.clone(),
        shared_secret: state.keys.derive(&format!("shared-secret/{cluster}")),
        pseudonymization_key: state.keys.derive(&format!("pseudonymization-key/{cluster}")),
        databroker_storage_connection: connection.map(str::to_owned),
    }
}

/// A request under `/cluster/v1`.
#[derive(Debug)]
pub struct ClusterRequest<'a> {
    pub method: &'a http::Method,
    pub segments: &'a [&'a str],
    pub authorization: Option<&'a str>,
    pub host: &'a str,
    /// `X-Import-Hints` (`PUT /config/import`).
    pub import_hints: Option<&'a str>,
    pub body: &'a [u8],
}

/// Requests under `/cluster/v1` (except the download, see [`download`]).
pub async fn handle(state: &State, request: &ClusterRequest<'_>) -> Reply {
    let ClusterRequest { method, segments, authorization, host, body, .. } = *request;
    if let (&http::Method::POST, ["exchangeToken"]) = (method, segments) {
        return exchange(state, body).await;
    }
    let (cluster, _) = match cluster_of(state, authorization).await {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    match (method.as_str(), segments) {
        ("GET", ["bootstrap"]) => {
            let settings = match state.store.live(Kind::Settings, &cluster).await {
                Ok(settings) => settings.unwrap_or_default(),
                Err(error) => return storage_failed(error),
            };
            Reply::ok(serde_json::to_value(bootstrap(state, &cluster, &settings)).unwrap_or_default())
        }
        ("GET", ["bundles"]) => {
            let answer =
                wire::GetBundlesResponse { bundles: vec![wire::Bundle { id: zero::bundle::CONFIG_BUNDLE.to_owned() }] };
            Reply::ok(serde_json::to_value(answer).unwrap_or_default())
        }
        ("GET", ["bundles", bundle, "download"]) if *bundle == zero::bundle::CONFIG_BUNDLE => {
            let expires = jiff::Timestamp::now().as_second() + DOWNLOAD_VALIDITY_SECONDS;
            let signature = state.keys.sign(download_message(&cluster, bundle, expires).as_bytes());
            let scheme = if state.settings.insecure_server { "http" } else { "https" };
            let answer = wire::DownloadBundleResponse {
                url: format!(
                    "{scheme}://{host}{DOWNLOAD_PREFIX}{cluster}/{bundle}?expires={expires}&signature={signature}"
                ),
                expires_in_seconds: u64::try_from(DOWNLOAD_VALIDITY_SECONDS).unwrap_or(0),
                capture_metadata_headers: Vec::new(),
            };
            Reply::ok(serde_json::to_value(answer).unwrap_or_default())
        }
        ("GET", ["bundles", bundle, "download"]) => {
            Reply::error(StatusCode::NOT_FOUND, format!("no bundle `{bundle}`: this console serves `config`"))
        }
        ("POST", ["bundles", bundle, "status"]) => match serde_json::from_slice::<wire::BundleStatus>(body) {
            Ok(status) => {
                if let Some(failure) = &status.failure {
                    tracing::warn!(%cluster, %bundle, message = %failure.message, source = ?failure.source, "a replica could not apply a bundle");
                }
                let failure = status.failure.as_ref().map(|f| json!({"message": f.message, "source": f.source}));
                let data = json!({"clusterId": cluster, "bundle": bundle, "failure": failure, "updatedAt": now()});
                let id = format!("{cluster}/{bundle}");
                match state.store.put(Kind::BundleStatus, &id, data.as_object().cloned().unwrap_or_default()).await {
                    Ok(()) => Reply::no_content(),
                    Err(error) => storage_failed(error),
                }
            }
            Err(error) => Reply::error(StatusCode::BAD_REQUEST, format!("the bundle status is not valid: {error}")),
        },
        ("PUT", ["config", "import"]) => crate::import::import(state, &cluster, request.import_hints, body).await,
        ("POST", ["reportUsage"]) => match serde_json::from_slice::<wire::ReportUsageRequest>(body) {
            Ok(usage) => {
                tracing::debug!(%cluster, users = usage.users.len(), "usage reported");
                Reply::no_content()
            }
            Err(error) => Reply::error(StatusCode::BAD_REQUEST, format!("the usage report is not valid: {error}")),
        },
        _ => Reply::error(
            StatusCode::NOT_FOUND,
            format!("no cluster API endpoint {method} /cluster/v1/{}", segments.join("/")),
        ),
    }
}

fn download_message(cluster: &str, bundle: &str, expires: i64) -> String {
    format!("bundle-download\n{cluster}\n{bundle}\n{expires}")
}

/// What a signed download answers: the bundle, its ETag, or why not.
#[derive(Debug)]
pub enum Download {
    Content { body: Vec<u8>, etag: String },
    NotModified { etag: String },
    Refused(Reply),
}

/// `GET /cluster/v1/download/{cluster}/{bundle}?expires=&signature=`: no Authorization; the
/// signature (HMAC, checked in constant time) and the expiry authenticate it.
pub async fn download(state: &State, rest: &str, query: Option<&str>, if_none_match: Option<&str>) -> Download {
    let forbidden = |why: &str| {
        Download::Refused(Reply::error(
            StatusCode::FORBIDDEN,
            format!("{why}: ask GET /cluster/v1/bundles/config/download for a new URL"),
        ))
    };
    let Some((cluster, bundle)) = rest.split_once('/') else { return forbidden("not a bundle URL") };
    let params: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let (Some(expires), Some(signature)) =
        (params.get("expires").and_then(|e| e.parse::<i64>().ok()), params.get("signature"))
    else {
        return forbidden("the URL is not signed");
    };
    if !state.keys.verify(download_message(cluster, bundle, expires).as_bytes(), signature) {
        return forbidden("the URL's signature is not valid");
    }
    if expires < jiff::Timestamp::now().as_second() {
        return forbidden("the URL expired");
    }
    match state.store.live(Kind::Cluster, cluster).await {
        Ok(Some(_)) => {}
        Ok(None) => return forbidden("the cluster was deleted"),
        Err(error) => return Download::Refused(storage_failed(error)),
    }
    let bundle_record = match state.store.live(Kind::Bundle, cluster).await {
        Ok(record) => record,
        Err(error) => return Download::Refused(storage_failed(error)),
    };
    let body = match bundle_bytes(bundle_record.as_ref()) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%cluster, %error, "the cluster's bundle cannot be written as protobuf");
            return Download::Refused(Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the cluster's configuration cannot be shipped: {error}; fix it and apply again"),
            ));
        }
    };
    let etag = format!("\"{}\"", auth::digest_hex(&body));
    if if_none_match.is_some_and(|given| given.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*")) {
        return Download::NotModified { etag };
    }
    Download::Content { body, etag }
}

/// The `config` bundle: one record whose data is a protobuf `pomerium.config.Config` (as Pomerium
/// Zero ships it; `zero::config_pb`) with the cluster's routes (their policies attached as
/// sub-policies), settings and certificates; no record before the first apply. An error when the
/// configuration has a key protobuf `Config` cannot carry (it is never left out silently).
pub fn bundle_bytes(bundle: Option<&Map<String, Value>>) -> std::result::Result<Vec<u8>, zero::bundle::BundleError> {
    let Some(config) = bundle.and_then(|b| b.get("config")).and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let mut settings = config.clone();
    let routes = settings.remove("routes").unwrap_or_else(|| json!([]));
    let mut data = Map::new();
    data.insert("name".to_owned(), json!("config"));
    data.insert("routes".to_owned(), routes);
    data.insert("settings".to_owned(), Value::Object(settings));
    let certificates =
        bundle.and_then(|b| b.get("certificates")).filter(|c| c.as_array().is_some_and(|c| !c.is_empty()));
    if let Some(certificates) = certificates {
        data.insert("certificates".to_owned(), certificates.clone());
    }
    if let Some(version) = bundle.and_then(|b| b.get("version")) {
        data.insert("changesetVersion".to_owned(), version.clone());
    }
    let record = databroker::record::Record::new(databroker::record::CONFIG_TYPE, "config", data);
    zero::bundle::try_encode(&[record])
}

/// The cluster a gRPC call's bearer id token names.
async fn grpc_cluster(
    state: &State,
    metadata: &tonic::metadata::MetadataMap,
) -> std::result::Result<String, tonic::Status> {
    let authorization = metadata.get("authorization").and_then(|v| v.to_str().ok());
    let (cluster, _) = cluster_of(state, authorization).await.map_err(|reply| {
        let message =
            reply.body.as_ref().and_then(|b| b.get("error")).and_then(Value::as_str).unwrap_or("refused").to_owned();
        if reply.status == StatusCode::UNAUTHORIZED {
            tonic::Status::unauthenticated(message)
        } else {
            tonic::Status::unavailable(message)
        }
    })?;
    Ok(cluster)
}

/// The id of a replica's report of one health check.
pub fn report_id(cluster: &str, hostname: &str, check: &str) -> String {
    auth::token_id(&format!("{cluster}\n{hostname}\n{check}"))
}

/// At most this many spans of one export are kept (a replica sends one per check).
const MAX_REPORTED_SPANS: usize = 64;
/// A check's name or message is cut at this many characters.
const MAX_REPORT_CHARS: usize = 2000;

fn cut(text: &str) -> String {
    text.chars().take(MAX_REPORT_CHARS).collect()
}

/// OTLP `TraceService/Export`: a replica's health checks, one span per check (named after it,
/// status OK or Error with the message; the resource's `host.name` names the replica), as a Go
/// Pomerium sends them. The latest status per (replica, check) is kept for `GET .../health`.
#[derive(Debug, Clone)]
pub struct Traces {
    pub state: Arc<State>,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for Traces {
    async fn export(
        &self,
        request: tonic::Request<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
    ) -> std::result::Result<
        tonic::Response<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse>,
        tonic::Status,
    > {
        use opentelemetry_proto::tonic::common::v1::any_value;
        use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanCode;
        let cluster = grpc_cluster(&self.state, request.metadata()).await?;
        let at = now();
        let mut budget = MAX_REPORTED_SPANS;
        for resource_spans in request.into_inner().resource_spans {
            let hostname = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "host.name")
                .and_then(|a| a.value.as_ref()?.value.as_ref())
                .and_then(|v| if let any_value::Value::StringValue(s) = v { Some(cut(s)) } else { None })
                .unwrap_or_else(|| "unknown".to_owned());
            let spans: Vec<_> = resource_spans.scope_spans.iter().flat_map(|s| &s.spans).take(budget).collect();
            budget -= spans.len();
            for span in spans {
                let (status, message) = match &span.status {
                    Some(s) if s.code == i32::from(SpanCode::Error) => ("error", cut(&s.message)),
                    _ => ("ok", String::new()),
                };
                let check = cut(&span.name);
                let changeset = span
                    .attributes
                    .iter()
                    .find(|a| a.key == "pomerium.changeset.version")
                    .and_then(|a| a.value.as_ref()?.value.as_ref())
                    .and_then(|v| match v {
                        any_value::Value::StringValue(s) => s.parse::<i64>().ok(),
                        any_value::Value::IntValue(i) => Some(*i),
                        _ => None,
                    });
                let data = json!({
                    "clusterId": cluster, "hostname": hostname, "check": check, "status": status,
                    "message": message, "changesetVersion": changeset, "updatedAt": at,
                });
                let id = report_id(&cluster, &hostname, &check);
                self.state
                    .store
                    .put(Kind::HealthReport, &id, data.as_object().cloned().unwrap_or_default())
                    .await
                    .map_err(|e| tonic::Status::unavailable(format!("storage: {e}")))?;
            }
            tracing::debug!(%cluster, %hostname, "health checks reported");
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

/// The Connect service: `Subscribe` streams what a cluster's replicas must re-fetch.
#[derive(Debug, Clone)]
pub struct Connect {
    pub state: Arc<State>,
}

type MessageStream = Pin<Box<dyn tokio_stream::Stream<Item = std::result::Result<pb::Message, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl pb::connect_server::Connect for Connect {
    type SubscribeStream = MessageStream;

    async fn subscribe(
        &self,
        request: tonic::Request<pb::SubscribeRequest>,
    ) -> std::result::Result<tonic::Response<Self::SubscribeStream>, tonic::Status> {
        let cluster = grpc_cluster(&self.state, request.metadata()).await?;
        let hello = request.into_inner();
        let hostname = if hello.hostname.is_empty() { "unknown".to_owned() } else { hello.hostname };
        let replica =
            Replica { state: Arc::clone(&self.state), cluster: cluster.clone(), hostname, version: hello.version };
        replica.seen(true).await;
        tracing::info!(%cluster, hostname = %replica.hostname, version = %replica.version, "replica connected");
        let mut events = self.state.subscribe();
        let mut closing = self.state.closing.subscribe();
        let (sender, receiver) = tokio::sync::mpsc::channel::<std::result::Result<pb::Message, tonic::Status>>(16);
        tokio::spawn(async move {
            let mut heartbeat = tokio::time::interval(REPLICA_HEARTBEAT);
            heartbeat.tick().await;
            loop {
                tokio::select! {
                    () = sender.closed() => break,
                    changed = closing.changed() => {
                        let stopping = changed.is_err() || *closing.borrow_and_update();
                        if stopping {
                            let _ = sender.send(Err(tonic::Status::unavailable("the console is stopping"))).await;
                            break;
                        }
                    }
                    _ = heartbeat.tick() => replica.seen(true).await,
                    event = events.recv() => {
                        let event = match event {
                            Ok(event) if event.cluster() == replica.cluster => event,
                            Ok(_) => continue,
                            // Missed events: tell the replica to re-sync everything.
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Event::BootstrapUpdated { cluster: replica.cluster.clone() },
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                        };
                        let message = match event {
                            Event::ConfigUpdated { version, .. } => zero::connect::Event::ConfigUpdated(version).to_message(),
                            Event::BootstrapUpdated { .. } => zero::connect::Event::BootstrapConfigUpdated.to_message(),
                            Event::RunHealthChecks { .. } => zero::connect::Event::RunHealthChecks.to_message(),
                            Event::TokenRevoked { .. } => {
                                let _ = sender.send(Err(tonic::Status::unauthenticated("the cluster token was rotated or revoked"))).await;
                                break;
                            }
                        };
                        if sender.send(Ok(message)).await.is_err() {
                            break;
                        }
                    }
                }
            }
            replica.seen(false).await;
            tracing::info!(cluster = %replica.cluster, hostname = %replica.hostname, "replica disconnected");
        });
        Ok(tonic::Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }
}

struct Replica {
    state: Arc<State>,
    cluster: String,
    hostname: String,
    version: String,
}

impl Replica {
    /// Records the replica as seen now (its id: the cluster and hostname), with its Connect
    /// stream open (`connected`) or just closed.
    async fn seen(&self, connected: bool) {
        let id = auth::token_id(&format!("{}\n{}", self.cluster, self.hostname));
        let at = now();
        let created = match self.state.store.live(Kind::Replica, &id).await {
            Ok(Some(old)) => old.get("createdAt").cloned().unwrap_or_else(|| json!(at)),
            _ => json!(at),
        };
        let data = json!({
            "id": id, "clusterId": self.cluster, "hostname": self.hostname, "version": self.version,
            "createdAt": created, "updatedAt": at, "connected": connected,
        });
        if let Err(error) =
            self.state.store.put(Kind::Replica, &id, data.as_object().cloned().unwrap_or_default()).await
        {
            tracing::warn!(%error, "cannot record a replica");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    /// The bundle this console ships for a fixed cluster, byte for byte:
    /// `crates/zero/tests/fixtures/console_config.bundle`, which `config_bundle.py verify` reads
    /// with upstream's own `config.proto` (what a Go Pomerium would get). Set
    /// `WRITE_CONSOLE_GOLDEN=1` to write it again after a deliberate change, then run the script.
    #[test]
    fn the_shipped_bundle_is_the_golden_one_upstreams_schema_reads() {
        let as_map = |v: Value| v.as_object().cloned().unwrap();
        let settings = as_map(json!({"timeoutRead": "45s", "cookieName": "_console", "autoApplyChangesets": true}));
        let routes = [as_map(json!({
            "id": "r1", "name": "app2", "namespaceId": "c1", "from": "https://app2.example.com",
            "to": ["http://127.0.0.1:9000"], "prefixRewrite": "/v1", "timeout": "45s",
            "setRequestHeaders": {"X-Team": "blue"}, "allowWebsockets": true, "policyIds": ["p1"],
        }))];
        let policies = [as_map(json!({
            "id": "p1", "name": "admins", "namespaceId": "c1", "explanation": "admins only",
            "ppl": {"allow": {"and": [{"email": {"is": "admin@example.com"}}]}},
        }))];
        let document = crate::check::cluster_config(&settings, &routes, &policies);
        let bundle = as_map(json!({
            "config": document, "version": 3,
            "certificates": [{"cert": "CERT PEM", "key": "KEY PEM"}],
        }));
        let bytes = bundle_bytes(Some(&bundle)).unwrap();
        let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/../zero/tests/fixtures/console_config.bundle");
        if std::env::var_os("WRITE_CONSOLE_GOLDEN").is_some() {
            std::fs::write(golden, &bytes).unwrap();
        }
        assert_eq!(bytes, std::fs::read(golden).unwrap(), "the shipped bundle changed; see this test's doc");
        // And our cluster side reads it back.
        let records = zero::bundle::decode(&bytes).unwrap();
        assert_eq!(records[0].data["routes"][0]["from"], "https://app2.example.com");
        assert_eq!(records[0].data["changesetVersion"], 3);
    }

    #[test]
    fn a_configuration_protobuf_cannot_carry_is_refused_not_shipped_without_it() {
        let bundle = json!({"config": {"routes": [], "not_an_option": true}, "version": 1});
        let error = bundle_bytes(bundle.as_object()).unwrap_err().to_string();
        assert!(error.contains("config.settings.not_an_option"), "{error}");
    }
}
