//! Managed mode through the real binary: a control plane in the test process speaks the cluster
//! API (HTTP/1.1) and the Connect stream (h2c gRPC) with the `zero` crate's wire types, and a
//! `pomerium` replica started with only its token, endpoints and listener settings serves what it
//! sends. Covered: routes from the `config` bundle and their changes through `ConfigUpdated`;
//! signed downloads without Authorization and with `If-None-Match`; the sealed `bootstrap.dat`;
//! a bundle that does not parse (reported, last good configuration kept); a start with the
//! control plane down (from `bootstrap.dat`, routes from the persistent databroker); a tampered
//! `bootstrap.dat` refused whole; a rotated token ending the replica with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use tokio::net::TcpListener;
use zero::api;
use zero::connect::Event;
use zero::connect::pb;

const TOKEN: &str = "cluster-token-for-tests";

/// A download as the control plane saw it: Authorization sent, If-None-Match sent, status.
type DownloadSeen = (Option<String>, Option<String>, u16);

/// The control plane's state.
struct Plane {
    token: Mutex<String>,
    generation: AtomicU64,
    shared_secret: Vec<u8>,
    storage: Option<String>,
    /// The `config` bundle's routes and its version (the ETag).
    routes: Mutex<(Value, u64)>,
    /// The `settings` of the configuration record.
    settings: Mutex<Option<Value>>,
    /// Serve bytes that are not a bundle.
    garbage: std::sync::atomic::AtomicBool,
    /// Protobuf appended to the configuration record's `pomerium.config.Config` (fields our
    /// encoder would not write).
    extra: Mutex<Vec<u8>>,
    /// Each download: (Authorization sent, If-None-Match sent, status answered).
    downloads: Mutex<Vec<DownloadSeen>>,
    /// Each bundle status report.
    statuses: Mutex<Vec<Value>>,
    subscribers: AtomicUsize,
    events: tokio::sync::broadcast::Sender<pb::Message>,
    http: Mutex<Option<SocketAddr>>,
}

/// The control plane's listeners; dropping it closes them and every connection.
struct ControlPlane {
    plane: Arc<Plane>,
    api: SocketAddr,
    connect: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ControlPlane {
    async fn start(storage: Option<String>) -> ControlPlane {
        let plane = Arc::new(Plane {
            token: Mutex::new(TOKEN.to_owned()),
            generation: AtomicU64::new(1),
            shared_secret: vec![7; 32],
            storage,
            routes: Mutex::new((json!([]), 1)),
            settings: Mutex::new(None),
            garbage: false.into(),
            extra: Mutex::new(Vec::new()),
            downloads: Mutex::new(Vec::new()),
            statuses: Mutex::new(Vec::new()),
            subscribers: AtomicUsize::new(0),
            events: tokio::sync::broadcast::channel(16).0,
            http: Mutex::new(None),
        });
        let api_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connect_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (api, connect) = (api_listener.local_addr().unwrap(), connect_listener.local_addr().unwrap());
        *plane.http.lock().unwrap() = Some(api);
        let task = tokio::spawn(serve(Arc::clone(&plane), api_listener, connect_listener));
        ControlPlane { plane, api, connect, task }
    }

    fn env(&self, bootstrap_file: &str) -> Vec<(String, String)> {
        vec![
            ("POMERIUM_ZERO_TOKEN".into(), TOKEN.into()),
            ("CLUSTER_API_ENDPOINT".into(), format!("http://{}/cluster/v1", self.api)),
            ("CONNECT_SERVER_ENDPOINT".into(), format!("http://{}", self.connect)),
            ("BOOTSTRAP_CONFIG_FILE".into(), bootstrap_file.into()),
            ("RUST_LOG".into(), "info".into()),
        ]
    }

    /// Replaces the routes and tells the subscribers.
    fn publish(&self, routes: Value) {
        let version = {
            let mut current = self.plane.routes.lock().unwrap();
            *current = (routes, current.1 + 1);
            current.1
        };
        let _ = self.plane.events.send(Event::ConfigUpdated(i64::try_from(version).unwrap()).to_message());
    }

    /// Rotates the token: the old one and its id tokens are refused from now on.
    fn rotate(&self) {
        *self.plane.token.lock().unwrap() = "the-next-token".to_owned();
        self.plane.generation.fetch_add(1, Ordering::SeqCst);
        let _ = self.plane.events.send(Event::BootstrapConfigUpdated.to_message());
    }
}

/// A route answering `body` directly on `{name}.test.localhost`.
fn direct(name: &str, body: &str) -> Value {
    json!({
        "from": format!("https://{name}.test.localhost"),
        "id": name,
        "allow_public_unauthenticated_access": true,
        "response": {"status": 200, "body": body}
    })
}

async fn serve(plane: Arc<Plane>, api: TcpListener, connect: TcpListener) {
    // Owned here: aborting this task drops every connection with it.
    let mut connections = tokio::task::JoinSet::new();
    let grpc = pb::connect_server::ConnectServer::new(ConnectService(Arc::clone(&plane)));
    loop {
        tokio::select! {
            Ok((stream, _)) = api.accept() => {
                let plane = Arc::clone(&plane);
                connections.spawn(async move {
                    let service = service_fn(move |request| handle(Arc::clone(&plane), request));
                    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
                });
            }
            Ok((stream, _)) = connect.accept() => {
                let grpc = grpc.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let mut grpc = grpc.clone();
                        async move { tonic::codegen::Service::call(&mut grpc, request).await }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .http2_only()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    reply(status, json!({"error": message}))
}

impl Plane {
    fn id_token(&self) -> String {
        format!("id-{}", self.generation.load(Ordering::SeqCst))
    }

    fn authorized(&self, authorization: Option<&str>) -> bool {
        authorization == Some(format!("Bearer {}", self.id_token()).as_str())
    }

    fn bundle(&self) -> (Vec<u8>, String) {
        let (routes, version) = self.routes.lock().unwrap().clone();
        let etag = format!("\"v{version}\"");
        if self.garbage.load(Ordering::SeqCst) {
            return (vec![0x05, 0xff, 0xff, 0xff, 0xff, 0xff], "\"garbage\"".to_owned());
        }
        let mut data = serde_json::Map::new();
        data.insert("name".into(), json!("config"));
        data.insert("routes".into(), routes);
        if let Some(settings) = self.settings.lock().unwrap().clone() {
            data.insert("settings".into(), settings);
        }
        let record = databroker::record::Record::new(databroker::record::CONFIG_TYPE, "config", data);
        let mut wire = zero::bundle::to_wire(&record).unwrap();
        wire.data.as_mut().unwrap().value.extend_from_slice(&self.extra.lock().unwrap());
        (prost::Message::encode_length_delimited_to_vec(&wire), etag)
    }
}

async fn handle(
    plane: Arc<Plane>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let path = parts.uri.path().to_owned();
    if parts.method == Method::POST && path == "/cluster/v1/exchangeToken" {
        let request: api::ExchangeTokenRequest = match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(_) => return Ok(error(StatusCode::BAD_REQUEST, "bad body")),
        };
        if request.refresh_token != *plane.token.lock().unwrap() {
            return Ok(error(StatusCode::BAD_REQUEST, "invalid cluster token"));
        }
        let response = api::ExchangeTokenResponse { id_token: plane.id_token(), expires_in_seconds: 3600 };
        return Ok(reply(StatusCode::OK, serde_json::to_value(response).unwrap()));
    }
    if parts.method == Method::GET && path == "/signed/config" {
        // The signed URL authenticates itself.
        let (bytes, etag) = plane.bundle();
        let sent = header("if-none-match");
        let status = if sent.as_deref() == Some(etag.as_str()) { 304 } else { 200 };
        plane.downloads.lock().unwrap().push((header("authorization"), sent, status));
        let mut response = Response::new(Full::new(if status == 200 { Bytes::from(bytes) } else { Bytes::new() }));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        response.headers_mut().insert("etag", etag.parse().unwrap());
        return Ok(response);
    }
    if !plane.authorized(header("authorization").as_deref()) {
        return Ok(error(StatusCode::UNAUTHORIZED, "invalid or expired id token"));
    }
    let answer = match (parts.method.clone(), path.as_str()) {
        (Method::GET, "/cluster/v1/bootstrap") => {
            let config = api::BootstrapConfig {
                cluster_id: "cluster-1".into(),
                organization_id: "org-1".into(),
                shared_secret: plane.shared_secret.clone(),
                pseudonymization_key: vec![1; 32],
                databroker_storage_connection: plane.storage.clone(),
            };
            reply(StatusCode::OK, serde_json::to_value(config).unwrap())
        }
        (Method::GET, "/cluster/v1/bundles") => reply(StatusCode::OK, json!({"bundles": [{"id": "config"}]})),
        (Method::GET, "/cluster/v1/bundles/config/download") => {
            let address = plane.http.lock().unwrap().unwrap();
            let url = api::DownloadBundleResponse {
                url: format!("http://{address}/signed/config?signature=abc"),
                expires_in_seconds: 600,
                capture_metadata_headers: vec![],
            };
            reply(StatusCode::OK, serde_json::to_value(url).unwrap())
        }
        (Method::POST, "/cluster/v1/bundles/config/status") => {
            plane.statuses.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(Value::Null));
            reply(StatusCode::NO_CONTENT, Value::Null)
        }
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    };
    Ok(answer)
}

#[derive(Clone)]
struct ConnectService(Arc<Plane>);

type Messages = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::Message, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl pb::connect_server::Connect for ConnectService {
    type SubscribeStream = Messages;

    async fn subscribe(
        &self,
        request: tonic::Request<pb::SubscribeRequest>,
    ) -> Result<tonic::Response<Messages>, tonic::Status> {
        let authorization = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        if !self.0.authorized(authorization) {
            return Err(tonic::Status::unauthenticated("invalid or expired id token"));
        }
        assert!(!request.get_ref().hostname.is_empty(), "a replica names its host");
        self.0.subscribers.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let mut events = self.0.events.subscribe();
        tokio::spawn(async move {
            while let Ok(message) = events.recv().await {
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

/// A `config.yaml` with only this replica's own settings (listeners, certificate); everything
/// else comes from the control plane.
fn local_config(setup: &Setup) -> std::path::PathBuf {
    local_config_with(setup, "")
}

fn local_config_with(setup: &Setup, extra: &str) -> std::path::PathBuf {
    setup.write(
        "config.yaml",
        &format!(
            "address: 127.0.0.1:0\nhealth_check_addr: 127.0.0.1:0\nauthenticate_service_url: https://authenticate.test.localhost\ncertificates:\n  - cert: {}\n    key: {}\n{extra}",
            setup.cert_path.display(),
            setup.key_path.display()
        ),
    )
}

async fn start_replica(setup: &Setup, env: &[(String, String)]) -> Pomerium {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Pomerium::spawn_with(&local_config(setup), setup.pki.ca(), "serving", &env).await
}

async fn serves(server: &Pomerium, name: &str, body: &str) {
    let host = server.host(name);
    let logs = || server.logs().join("\n");
    eventually(&format!("{host} answering {body:?}; the log:\n{}", logs()), || async {
        let reply = server.get(&host, "/").await;
        (reply.status == StatusCode::OK && reply.text() == body).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_replica_serves_the_control_planes_routes_and_follows_its_changes() {
    let plane = ControlPlane::start(None).await;
    plane.publish(json!([direct("app", "first")]));
    let setup = Setup::new();
    let file = setup.dir.path().join("cache/bootstrap.dat");
    let mut server = start_replica(&setup, &plane.env(file.to_str().unwrap())).await;
    serves(&server, "app", "first").await;
    assert!(plane.plane.subscribers.load(Ordering::SeqCst) >= 1, "the replica subscribed");

    // A change reaches the replica through ConfigUpdated, well before the periodic resync.
    let started = Instant::now();
    plane.publish(json!([direct("app", "second"), direct("other", "new")]));
    serves(&server, "app", "second").await;
    serves(&server, "other", "new").await;
    assert!(started.elapsed() < Duration::from_secs(5), "applied in {:?}", started.elapsed());

    // Downloads carry no Authorization; a known ETag is sent back.
    let downloads = plane.plane.downloads.lock().unwrap().clone();
    assert!(downloads.len() >= 2, "{downloads:?}");
    assert!(downloads.iter().all(|(authorization, _, _)| authorization.is_none()), "{downloads:?}");
    assert!(downloads.iter().skip(1).all(|(_, etag, _)| etag.is_some()), "{downloads:?}");
    assert!(plane.plane.statuses.lock().unwrap().iter().any(|s| s.get("success").is_some()));

    // The sealed cache: it opens with the key derived from the token, and with no other.
    let sealed = std::fs::read(&file).unwrap();
    let keys = zero::keys::DerivedKeys::from_token(TOKEN).unwrap();
    let bootstrap = zero::seal::open(&keys.file_key, &sealed).unwrap();
    assert_eq!((bootstrap.cluster_id.as_str(), bootstrap.shared_secret.as_slice()), ("cluster-1", &[7u8; 32][..]));
    let other = zero::keys::DerivedKeys::from_token("another").unwrap();
    assert!(zero::seal::open(&other.file_key, &sealed).is_err());

    // A bundle that does not parse is reported; the last good routes keep serving.
    plane.plane.garbage.store(true, Ordering::SeqCst);
    plane.publish(json!([direct("app", "never")]));
    eventually("the invalid bundle reported", || async {
        let statuses = plane.plane.statuses.lock().unwrap().clone();
        statuses.iter().any(|s| s["failure"]["source"] == "invalid_bundle").then_some(())
    })
    .await;
    serves(&server, "app", "second").await;

    // A bundle with a field this cluster does not take is refused whole and reported, naming the
    // field; so is one with a setting it does not know. The last good routes keep serving.
    plane.plane.garbage.store(false, Ordering::SeqCst);
    let mut route = Vec::new();
    zero::config_pb::wire::put_bytes(&mut route, 2, b"https://mtls.test.localhost");
    zero::config_pb::wire::put_bytes(&mut route, 84, b"key-pair-1");
    let mut unsupported = Vec::new();
    zero::config_pb::wire::put_bytes(&mut unsupported, 2, &route);
    let mut settings = Vec::new();
    zero::config_pb::wire::put_bytes(&mut settings, 171, b"okta");
    let mut unknown_setting = Vec::new();
    zero::config_pb::wire::put_bytes(&mut unknown_setting, 3, &settings);
    for (extra, named) in [
        (unsupported, "tls_downstream_client_ca_key_pair_id is not supported"),
        (unknown_setting, "unknown option `directory_provider`"),
    ] {
        *plane.plane.extra.lock().unwrap() = extra;
        plane.publish(json!([direct("app", "never")]));
        eventually("the refused bundle reported", || async {
            let statuses = plane.plane.statuses.lock().unwrap().clone();
            statuses
                .iter()
                .any(|s| {
                    s["failure"]["source"] == "invalid_bundle"
                        && s["failure"]["message"].as_str().is_some_and(|m| m.contains(named))
                })
                .then_some(())
        })
        .await;
        serves(&server, "app", "second").await;
    }

    // The control plane goes away: the replica keeps serving its last configuration.
    drop(plane);
    tokio::time::sleep(Duration::from_millis(500)).await;
    serves(&server, "app", "second").await;
    server.assert_running();
}

#[tokio::test]
async fn a_rotated_token_ends_the_replica_with_the_reason() {
    let plane = ControlPlane::start(None).await;
    plane.publish(json!([direct("app", "up")]));
    let setup = Setup::new();
    let file = setup.dir.path().join("bootstrap.dat");
    // The token from the file's `pomerium_zero_token` this time.
    let env: Vec<(String, String)> =
        plane.env(file.to_str().unwrap()).into_iter().filter(|(name, _)| name != "POMERIUM_ZERO_TOKEN").collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let path = local_config_with(&setup, &format!("pomerium_zero_token: {TOKEN}\n"));
    let mut server = Pomerium::spawn_with(&path, setup.pki.ca(), "serving", &env).await;
    serves(&server, "app", "up").await;
    server.wait_for_log("connected to the control plane").await;
    plane.rotate();
    let status = server.wait_exit().await;
    assert!(!status.success(), "{status}");
    let logs = server.logs().join("\n");
    assert!(logs.contains("the cluster token was rotated or revoked"), "{logs}");
    assert!(logs.contains("get the cluster's current token from the console"), "{logs}");

    // Started again with the old token: refused at once, with the same reason.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pomerium"));
    command.env_clear().stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    for (name, value) in plane.env(file.to_str().unwrap()) {
        command.env(name, value);
    }
    let out = tokio::time::timeout(PROMPTLY, tokio::task::spawn_blocking(move || command.output().unwrap()))
        .await
        .expect("a refused token ends the start promptly")
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the cluster token was rotated or revoked"), "{stderr}");
}

#[tokio::test]
async fn with_the_control_plane_down_a_replica_starts_from_bootstrap_dat_and_its_database() {
    let database = pg_test_cluster::TestPostgres::shared().unwrap().database().unwrap();
    let plane = ControlPlane::start(Some(database)).await;
    plane.publish(json!([direct("app", "persisted")]));
    let setup = Setup::new();
    let file = setup.dir.path().join("bootstrap.dat");
    let env = plane.env(file.to_str().unwrap());
    let server = start_replica(&setup, &env).await;
    serves(&server, "app", "persisted").await;
    drop(server);
    drop(plane);

    // No control plane (its port is closed): the cache and PostgreSQL are enough.
    let started = Instant::now();
    let mut server = start_replica(&setup, &env).await;
    serves(&server, "app", "persisted").await;
    eprintln!("start from bootstrap.dat to served route: {:?}", started.elapsed());
    server
        .wait_for_log(
            "starting from the cached bootstrap configuration; the control plane is tried again in the background",
        )
        .await;
    server.assert_running();
    drop(server);

    // A tampered cache is refused whole: the replica waits for its control plane rather than
    // start on half a file.
    let mut sealed = std::fs::read(&file).unwrap();
    let middle = sealed.len() / 2;
    sealed[middle] ^= 1;
    std::fs::write(&file, &sealed).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pomerium"));
    command.env_clear().stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    command.arg("--config").arg(local_config(&setup));
    for (name, value) in &env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let done = line.contains("no usable bootstrap cache");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    let deadline = Instant::now() + PROMPTLY;
    while !reader.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = reader.join().unwrap().join("\n");
    assert!(seen.contains("no usable bootstrap cache") && seen.contains("tampered"), "{seen}");
    assert!(!seen.contains("\"serving\""), "{seen}");
}

/// `POMERIUM_ZERO_TOKEN` and the environment alone: no `--config`.
#[tokio::test]
async fn no_configuration_file_is_needed() {
    let plane = ControlPlane::start(None).await;
    // Settings too: global response headers; and some the replica keeps its own of.
    *plane.plane.settings.lock().unwrap() = Some(json!({
        "set_response_headers": {"X-Control-Plane": "settings applied"},
        "shared_secret": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "databroker_storage_type": "postgres",
    }));
    plane.publish(json!([direct("app", "from the environment")]));
    let setup = Setup::new();
    let file = setup.dir.path().join("bootstrap.dat");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pomerium"));
    command.env_clear().stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    for (name, value) in plane.env(file.to_str().unwrap()) {
        command.env(name, value);
    }
    command
        .env("POMERIUM_LOG_FORMAT", "json")
        .env("ADDRESS", "127.0.0.1:0")
        .env("HEALTH_CHECK_ADDR", "127.0.0.1:0")
        .env("AUTHENTICATE_SERVICE_URL", "https://authenticate.test.localhost")
        .env("CERTIFICATE_FILE", &setup.cert_path)
        .env("CERTIFICATE_KEY_FILE", &setup.key_path);
    let mut child = command.spawn().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let address: SocketAddr = eventually("the main listener", || async {
        let lines = lines.lock().unwrap().clone();
        lines.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find_map(|l| {
            (l["fields"]["message"] == "serving").then(|| l["fields"]["address"].as_str().unwrap().parse().unwrap())
        })
    })
    .await;
    let host = format!("app.test.localhost:{}", address.port());
    let ca = setup.pki.ca();
    let served = tokio::time::timeout(PROMPTLY * 2, async {
        loop {
            let tls = tls_connect(address, client_tls(&ca, &[b"http/1.1"], None), "app.test.localhost").await;
            let reply = H1::handshake(tls).await.fetch(get(&host, "/")).await;
            if reply.status == StatusCode::OK
                && reply.text() == "from the environment"
                && reply.headers.get("x-control-plane").is_some_and(|v| v == "settings applied")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(served.is_ok(), "the route was not served:\n{}", lines.lock().unwrap().join("\n"));
}
