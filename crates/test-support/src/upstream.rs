//! Test upstreams on 127.0.0.1: a hyper server with any handler (plain or TLS, HTTP/1.1 and
//! HTTP/2, upgrades), an echo of what it saw as JSON, a websocket echo, a TCP echo, and a port
//! nothing listens on.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::header::{CONNECTION, CONTENT_TYPE, UPGRADE};
use http::{Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::net::TcpListener;

use crate::client::{Body, empty, full};

/// Starts a hyper server (HTTP/1.1 and HTTP/2, with upgrades) on 127.0.0.1; runs until the test
/// ends. Counts the connections and requests it accepts.
pub async fn spawn_upstream<F, Fut>(tls: Option<Arc<ServerConfig>>, handler: F) -> Upstream
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_upstream_on(listener, tls, handler)
}

/// [`spawn_upstream`] on a listener the test has bound (to know its address beforehand).
pub fn spawn_upstream_on<F, Fut>(listener: TcpListener, tls: Option<Arc<ServerConfig>>, handler: F) -> Upstream
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (accepted, counted) = (Arc::clone(&connections), Arc::clone(&requests));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let (handler, tls, counted) = (handler.clone(), tls.clone(), Arc::clone(&counted));
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    counted.fetch_add(1, Ordering::SeqCst);
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
    Upstream { address, connections, requests }
}

/// A test upstream.
#[derive(Clone)]
pub struct Upstream {
    pub address: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Upstream {
    /// `http://127.0.0.1:port`.
    pub fn http(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `https://127.0.0.1:port`.
    pub fn https(&self) -> String {
        format!("https://{}", self.address)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// An upstream that answers every request with a JSON description of it: its `name`, method,
/// target, version, headers (name → values) and body length.
pub async fn echo_upstream(name: &str, tls: Option<Arc<ServerConfig>>) -> Upstream {
    let name = name.to_owned();
    spawn_upstream(tls, move |request: Request<Incoming>| {
        let name = name.clone();
        async move { Response::new(full(describe(&name, request).await.to_string())) }
    })
    .await
}

/// A plain HTTP upstream on `listener` that answers every request with `body` as JSON (a JWKS,
/// a discovery document).
pub fn json_upstream_on(listener: TcpListener, body: String) -> Upstream {
    spawn_upstream_on(listener, None, move |_: Request<Incoming>| {
        let body = body.clone();
        async move { Response::builder().header(CONTENT_TYPE, "application/json").body(full(body)).unwrap() }
    })
}

/// [`json_upstream_on`] on a free port.
pub async fn json_upstream(body: String) -> Upstream {
    json_upstream_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), body)
}

/// What an upstream saw of a request, as JSON.
pub async fn describe(name: &str, request: Request<Incoming>) -> serde_json::Value {
    let (parts, incoming) = request.into_parts();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (header, value) in &parts.headers {
        headers
            .entry(header.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body = incoming.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    serde_json::json!({
        "upstream": name,
        "method": parts.method.as_str(),
        "target": parts.uri.path_and_query().map_or("", |p| p.as_str()),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_length": body.len(),
    })
}

/// The upstream's description of a request it received.
#[derive(Debug)]
pub struct Seen(pub serde_json::Value);

impl Seen {
    pub fn upstream(&self) -> &str {
        self.0["upstream"].as_str().unwrap()
    }

    pub fn target(&self) -> &str {
        self.0["target"].as_str().unwrap()
    }

    pub fn version(&self) -> &str {
        self.0["version"].as_str().unwrap()
    }

    /// The header's values joined with ", "; `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        self.0["headers"][name]
            .as_array()
            .map(|values| values.iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>().join(", "))
    }
}

/// An upstream that accepts websocket upgrades and echoes the bytes; answers "no upgrade" to a
/// request without one.
pub async fn websocket_upstream() -> Upstream {
    spawn_upstream(None, |mut request: Request<Incoming>| async move {
        if request.headers().get(UPGRADE).is_none() {
            return Response::new(full("no upgrade"));
        }
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        });
        Response::builder()
            .status(101)
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "Upgrade")
            .body(empty())
            .unwrap()
    })
    .await
}

/// A TCP echo server.
pub async fn tcp_echo() -> SocketAddr {
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
