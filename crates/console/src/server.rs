//! The listener: TLS (the configured certificate, or a self-signed one) with HTTP/1.1 and h2 by
//! ALPN, or with `insecure_server: true` plain HTTP/1.1 and h2c. One port serves the public API
//! (`/api/v0`), the cluster API (`/cluster/v1`) and, as gRPC, the Connect stream.

use crate::api::{self, Reply};
use crate::cluster_api;
use crate::state::State;
use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Request bodies larger than this are refused (413).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// A request body must arrive within this.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// A request's head must arrive within this (HTTP/1.1).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// A TLS handshake must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// Binds `:port`, `host:port` or `[v6]:port`.
pub async fn bind(address: &str) -> Result<TcpListener, String> {
    proxy::server::bind(address).await.map_err(|error| format!("`address`: {error}"))
}

/// The TLS configuration: the configured certificate or a self-signed one for `localhost` and
/// the base domain.
pub fn tls(state: &State) -> Result<Arc<rustls::ServerConfig>, String> {
    let settings = &state.settings;
    let key = match (&settings.certificate_file, &settings.certificate_key_file) {
        (Some(cert), Some(key)) => {
            let chain = std::fs::read(cert).map_err(|e| format!("`certificate_file` `{cert}`: {e}"))?;
            let key_pem = std::fs::read(key).map_err(|e| format!("`certificate_key_file` `{key}`: {e}"))?;
            proxy::tls::certified_key_from_pem(&chain, &key_pem)
                .map_err(|e| format!("`certificate_file`/`certificate_key_file`: {e}"))?
        }
        _ => {
            let names = vec!["localhost".to_owned(), settings.base_domain.clone()];
            tracing::warn!(names = %names.join(", "), "no certificate configured: serving a self-signed one that clients will not trust");
            let (chain, key) = proxy::tls::self_signed(&names).map_err(|e| format!("self-signed certificate: {e}"))?;
            proxy::tls::certified_key(chain, key).map_err(|e| format!("self-signed certificate: {e}"))?
        }
    };
    let mut config = rustls::ServerConfig::builder_with_provider(proxy::tls::provider())
        .with_protocol_versions(proxy::tls::PROTOCOL_VERSIONS)
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves until `shutdown` completes; connections in flight get a few seconds to finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Every connection's task, so that none outlives the server (streams are long-lived).
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let service = hyper::service::service_fn(move |request| {
            let state = Arc::clone(&state);
            async move { Ok::<_, std::convert::Infallible>(handle(state, request).await) }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
        builder
            .http2()
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        connections.spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "tls handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(connection.into_owned()).await;
                }
                None => {
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(connection.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    state.closing.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

fn json_response(reply: Reply) -> Response<Body> {
    let mut builder = Response::builder().status(reply.status);
    let body = match reply.body {
        Some(value) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            full(serde_json::to_vec(&value).unwrap_or_default())
        }
        None => full(Bytes::new()),
    };
    builder.body(body).unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

/// Reads a request body, bounded in size and time.
pub async fn read_body(body: Incoming) -> Result<Bytes, Reply> {
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(Reply::error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {MAX_BODY_BYTES} bytes")))
        }
        Ok(Err(error)) => Err(Reply::error(StatusCode::BAD_REQUEST, format!("cannot read the body: {error}"))),
        Err(_) => Err(Reply::error(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time")),
    }
}

async fn handle(state: Arc<State>, request: http::Request<Incoming>) -> Response<Body> {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = route(state, request).await;
    tracing::debug!(%method, %path, status = response.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    response
}

async fn route(state: Arc<State>, request: http::Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    if path == "/healthz" || path == "/ping" {
        return json_response(Reply::ok(serde_json::json!({"status": "ok"})));
    }
    if path == "/console" || path.starts_with("/console/") {
        let host = host_of(&request);
        let (parts, body) = request.into_parts();
        let body = match read_body(body).await {
            Ok(body) => body,
            Err(reply) => return json_response(reply),
        };
        let assertion = parts.headers.get("x-pomerium-jwt-assertion").and_then(|v| v.to_str().ok());
        let segments: Vec<&str> = path.trim_start_matches("/console").split('/').filter(|s| !s.is_empty()).collect();
        let page = crate::web::handle(&state, &parts.method, &segments, assertion, &host, &body).await;
        let mut builder = Response::builder().status(page.status);
        if let Some(location) = &page.location {
            builder = builder.header(header::LOCATION, location);
        }
        return builder
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .header("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
            .header("x-frame-options", "DENY")
            .header(header::CACHE_CONTROL, "no-store")
            .body(full(page.html))
            .unwrap_or_else(|_| Response::new(full(Bytes::new())));
    }
    // The CA that issues the clusters' certificates: public, so that clients can trust it.
    if request.method() == http::Method::GET && path == format!("/api/v0/organizations/{}/ca.pem", state.org_id) {
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/x-pem-file")
            .body(full(state.ca.certificate.clone()))
            .unwrap_or_else(|_| Response::new(full(Bytes::new())));
    }
    if let Some(rest) = path.strip_prefix("/api/v0/") {
        let (parts, body) = request.into_parts();
        let body = match read_body(body).await {
            Ok(body) => body,
            Err(reply) => return json_response(reply),
        };
        let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let request = api::Request {
            method: &parts.method,
            segments: rest.split('/').filter(|s| !s.is_empty()).collect(),
            query: parts.uri.query(),
            authorization,
            body: &body,
            source: None,
        };
        return json_response(api::handle(&state, &request).await);
    }
    if let Some(method) = path.strip_prefix(crate::config_service::PREFIX) {
        let is_grpc_call = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        if !is_grpc_call {
            let method = method.to_owned();
            let (parts, body) = request.into_parts();
            let body = match read_body(body).await {
                Ok(body) => body,
                Err(reply) => return json_response(reply),
            };
            let header = |name| parts.headers.get(name).and_then(|v: &http::HeaderValue| v.to_str().ok());
            let answer = crate::config_service::handle(
                &state,
                &parts.method,
                &method,
                header(header::CONTENT_TYPE),
                header(header::AUTHORIZATION),
                &body,
            )
            .await;
            if let Some(bytes) = answer.proto {
                return Response::builder()
                    .status(answer.status)
                    .header(header::CONTENT_TYPE, "application/proto")
                    .body(full(bytes))
                    .unwrap_or_else(|_| Response::new(full(Bytes::new())));
            }
            return json_response(Reply::json(answer.status, answer.body));
        }
    }
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if is_grpc {
        return grpc(state, request).await;
    }
    if let Some(rest) = path.strip_prefix(cluster_api::DOWNLOAD_PREFIX) {
        let if_none_match = request.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
        let gzip = accepts_gzip(request.headers());
        let download = cluster_api::download(&state, rest, request.uri().query(), if_none_match).await;
        return download_response(download, gzip);
    }
    if let Some(rest) = path.strip_prefix("/cluster/v1/") {
        let host = host_of(&request);
        let (parts, body) = request.into_parts();
        let body = match read_body(body).await {
            Ok(body) => body,
            Err(reply) => return json_response(reply),
        };
        let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let request = cluster_api::ClusterRequest {
            method: &parts.method,
            segments: &segments,
            authorization,
            host: &host,
            import_hints: parts.headers.get("x-import-hints").and_then(|v| v.to_str().ok()),
            body: &body,
        };
        let reply = cluster_api::handle(&state, &request).await;
        return json_response(reply);
    }
    json_response(Reply::error(StatusCode::NOT_FOUND, format!("no endpoint `{path}`: the API is under /api/v0")))
}

/// The host a request was sent to: the URI's authority (HTTP/2) or the Host header.
fn host_of(request: &http::Request<Incoming>) -> String {
    request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_owned))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The Connect gRPC service (`/pomerium.zero.Connect/Subscribe`) and the OTLP trace service that
/// health reports arrive on, on the same port.
async fn grpc(state: Arc<State>, request: http::Request<Incoming>) -> Response<Body> {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    use tonic::codegen::Service as _;
    let answer = if request.uri().path().starts_with("/opentelemetry.proto.collector.trace.v1.TraceService/") {
        TraceServiceServer::new(cluster_api::Traces { state }).call(request).await
    } else {
        zero::connect::pb::connect_server::ConnectServer::new(cluster_api::Connect { state }).call(request).await
    };
    match answer {
        Ok(response) => response.map(|body| {
            body.map_err(|status| Box::new(status) as Box<dyn std::error::Error + Send + Sync>).boxed_unsync()
        }),
        Err(never) => match never {},
    }
}

/// Whether `Accept-Encoding` allows gzip (and does not refuse it with `q=0`).
fn accepts_gzip(headers: &http::HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q == 0.0)));
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        },
    )
}

fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).ok()?;
    encoder.finish().ok()
}

fn download_response(download: cluster_api::Download, accepts_gzip: bool) -> Response<Body> {
    match download {
        cluster_api::Download::Refused(reply) => json_response(reply),
        cluster_api::Download::NotModified { etag } => Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, etag)
            .body(full(Bytes::new()))
            .unwrap_or_else(|_| Response::new(full(Bytes::new()))),
        cluster_api::Download::Content { body, etag } => {
            let mut builder = Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::ETAG, etag)
                .header(header::CACHE_CONTROL, "no-cache")
                .header(header::VARY, "accept-encoding");
            let body = match accepts_gzip.then(|| gzip(&body)).flatten() {
                Some(compressed) => {
                    builder = builder.header(header::CONTENT_ENCODING, "gzip");
                    compressed
                }
                None => body,
            };
            builder.body(full(body)).unwrap_or_else(|_| Response::new(full(Bytes::new())))
        }
    }
}
