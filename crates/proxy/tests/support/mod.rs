//! Real parts for the data-plane tests: a test CA, hyper upstream servers (plain and TLS), a
//! minimal forwarding handler wired from the proxy's pieces, and real clients.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "test support")]
#![allow(dead_code, reason = "each test uses a part of the support")]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::uri::Scheme;
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use proxy::body::{self, ProxyBody};
use proxy::error::new_request_id;
use proxy::headers::{ForwardingOptions, append_forwarded_host, remove_hop_by_hop, set_forwarding_headers};
use proxy::normalize::{NormalizeOptions, normalize_request};
use proxy::rewrite::{HostRewrite, upstream_uri};
use proxy::server::{ConnectionInfo, ServerOptions, Shutdown};
use proxy::tls::ServerTls;
use proxy::tunnel::{connect_tunnel, forward_upgrade, is_upgrade_allowed, requested_upgrade};
use proxy::upstream::{RequestTimeouts, UpstreamClient};
use proxy::{ProxyError, upstream};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Generous bound for anything that should happen promptly.
pub const PROMPTLY: Duration = Duration::from_secs(10);

/// A test certificate authority.
pub struct Pki {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        Self { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    pub fn ca(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A leaf certificate for `names` (server or client), and its key.
    pub fn issue(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        if let Some(first) = names.first() {
            params.distinguished_name.push(rcgen::DnType::CommonName, *first);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (vec![cert.der().clone()], PrivateKeyDer::Pkcs8(key.serialize_der().into()))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A TLS config for a test upstream, optionally requiring client certificates from `client_ca`.
pub fn upstream_tls(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<CertificateDer<'static>>,
) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca).unwrap();
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build().unwrap(),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Starts a hyper server (HTTP/1 + HTTP/2, upgrades) on a free port; runs until the test ends.
pub async fn spawn_upstream<F, Fut>(tls: Option<Arc<ServerConfig>>, handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (handler, tls) = (handler.clone(), tls.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let response = handler(request);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                match tls {
                    Some(config) => {
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await else { return };
                        let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await;
                    }
                    None => {
                        let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    address
}

/// A TCP echo server.
pub async fn spawn_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    address
}

/// An address nothing listens on.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A running proxy listener.
pub struct RunningProxy {
    pub address: SocketAddr,
    pub shutdown: Shutdown,
    pub task: JoinHandle<()>,
}

/// Starts `proxy::server::serve` with `handler` on a free port.
pub async fn spawn_proxy<H: proxy::server::Handler>(
    tls: Option<ServerTls>,
    handler: H,
    options: ServerOptions,
) -> RunningProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(proxy::server::serve(listener, tls, handler, options, shutdown.signal()));
    RunningProxy { address, shutdown, task }
}

/// One route of the minimal pipeline.
#[derive(Clone)]
pub struct Route {
    pub upstream: Uri,
    pub client: UpstreamClient,
    pub timeouts: RequestTimeouts,
    pub allowed_upgrades: Vec<String>,
    pub tcp_target: Option<String>,
}

impl Route {
    pub fn new(upstream: &str, client: UpstreamClient) -> Self {
        Self {
            upstream: upstream.parse().unwrap(),
            client,
            timeouts: RequestTimeouts { total: Some(Duration::from_secs(10)), idle: None },
            allowed_upgrades: Vec::new(),
            tcp_target: None,
        }
    }
}

/// The minimal pipeline: normalize → hop-by-hop → forwarding headers → host and URI → forward
/// (or upgrade, or CONNECT); errors rendered as the user would see them.
pub fn forwarding_handler(route: Route) -> impl proxy::server::Handler {
    let route = Arc::new(route);
    move |request: Request<Incoming>, connection: Arc<ConnectionInfo>| {
        let route = Arc::clone(&route);
        async move {
            let path = request.uri().path().to_owned();
            let headers = request.headers().clone();
            match forward(&route, request, &connection).await {
                Ok(response) => response,
                Err(error) => error.page(new_request_id()).render(&path, &headers),
            }
        }
    }
}

async fn forward(
    route: &Route,
    mut request: Request<Incoming>,
    connection: &ConnectionInfo,
) -> Result<Response<ProxyBody>, ProxyError> {
    if request.method() == Method::CONNECT {
        let target = route.tcp_target.clone().ok_or_else(|| ProxyError::client(proxy::ErrorKind::NoRoute))?;
        return connect_tunnel(hyper::upgrade::on(&mut request), &target, PROMPTLY).await;
    }
    if let Some(redirect) = normalize_request(&mut request, &NormalizeOptions::default())? {
        return Ok(redirect);
    }
    let upgrade =
        requested_upgrade(request.headers()).filter(|protocol| is_upgrade_allowed(protocol, &route.allowed_upgrades));
    let downstream_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));
    let (mut parts, incoming) = request.into_parts();
    let original_host = parts
        .headers
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|authority| authority.to_string()))
        .unwrap_or_default();
    remove_hop_by_hop(&mut parts.headers, upgrade.as_deref());
    set_forwarding_headers(
        &mut parts.headers,
        connection.peer.ip(),
        connection.tls.is_some(),
        ForwardingOptions::default(),
    );
    let authority = route.upstream.authority().cloned().unwrap();
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str()).to_owned();
    let host = HostRewrite::Upstream.host(&original_host, &parts.headers, &path, &authority);
    if host != original_host {
        append_forwarded_host(&mut parts.headers, &original_host);
    }
    parts.headers.insert(HOST, HeaderValue::from_str(&host).unwrap());
    let scheme = route.upstream.scheme().cloned().unwrap_or(Scheme::HTTP);
    parts.uri = upstream_uri(scheme, authority, &path)
        .map_err(|error| ProxyError::proxy(proxy::ErrorKind::Internal).with_cause(error))?;
    let upstream_request = Request::from_parts(parts, body::incoming(incoming));
    match downstream_upgrade {
        Some(downstream) => forward_upgrade(&route.client, downstream, upstream_request, Some(PROMPTLY)).await,
        None => {
            let mut response = route.client.send(upstream_request, route.timeouts).await?;
            remove_hop_by_hop(response.headers_mut(), None);
            Ok(response)
        }
    }
}

/// A client config trusting `ca`, offering `alpn`, optionally with a client certificate.
pub fn client_tls(
    ca: &CertificateDer<'static>,
    alpn: &[&[u8]],
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client_cert {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

pub type TestClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// A hyper-util client over rustls that sends `server_name` as SNI whatever the URL says.
pub fn https_client(config: ClientConfig, server_name: &str) -> TestClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let connector = HttpsConnector::new(http, config, false, Arc::new(FixedServerNameResolver::new(name)));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// A plain hyper-util client.
pub fn http_client() -> Client<HttpConnector, ProxyBody> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// GET `uri` with a Host header.
pub fn get(uri: &str, host: &str) -> Request<ProxyBody> {
    Request::builder().uri(uri).header(HOST, host).body(body::empty()).unwrap()
}

/// The whole body as text.
pub async fn text<B>(response: Response<B>) -> String
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// A TLS connection to the proxy, for tests that need the handshake's facts or raw HTTP/1.
pub async fn tls_connect(
    address: SocketAddr,
    config: ClientConfig,
    server_name: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let stream = TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream).await.unwrap()
}

/// An HTTP/1 connection (with upgrades) over `io`.
pub async fn http1<I>(io: I) -> hyper::client::conn::http1::SendRequest<ProxyBody>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.unwrap();
    tokio::spawn(connection.with_upgrades());
    sender
}

/// A client config that accepts any server certificate (to see which one is served).
pub fn accept_any_server(alpn: &[&[u8]]) -> ClientConfig {
    let mut config =
        upstream::client_config(&upstream::UpstreamTls { skip_verify: true, ..Default::default() }).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}
