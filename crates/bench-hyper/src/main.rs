//! Benchmark B4's hyper floor: a bare hyper reverse proxy with our server's settings and our
//! upstream client, and none of our pipeline (no routing, policy, header rewrites beyond
//! `X-Forwarded-For`, logging or metrics): what hyper itself costs per proxied request. Run by
//! `benches/b4.sh` beside nginx and ours on the same upstream.
//!
//! `bench-hyper LISTEN UPSTREAM [MAX_HEADERS] [pooled|per-connection]`, e.g.
//! `bench-hyper 127.0.0.1:18086 127.0.0.1:18080`.
//! The runtime is the one `pomerium` builds (multi-thread; `TOKIO_WORKER_THREADS=1` for one
//! worker); the server is hyper-util's `auto::Builder` configured as in
//! `crates/proxy/src/server.rs` (header read timeout 30 s, 128 KiB header buffer, keep-alive,
//! `max_headers` 1,000 unless MAX_HEADERS says otherwise: hyper's default is 100), serving with
//! upgrades; the client is hyper-util's pooled legacy client configured as in
//! `crates/proxy/src/upstream.rs` (TCP_NODELAY, 60 s idle, 64 idle connections per host).
//! `per-connection` replaces that client with one upstream connection per client connection
//! (`hyper::client::conn::http1`, opened at the first request): no pool checkout, no shared
//! client, still hyper's dispatch channel to the connection's task. The difference between the
//! two modes is what the pooled client costs.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

type Body = Either<Incoming, Empty<Bytes>>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let (listen, upstream, max_headers, mode) = match arguments.as_slice() {
        [listen, upstream] => (listen, upstream, "1000", "pooled"),
        [listen, upstream, max_headers] => (listen, upstream, max_headers.as_str(), "pooled"),
        [listen, upstream, max_headers, mode] => (listen, upstream, max_headers.as_str(), mode.as_str()),
        _ => {
            eprintln!(
                "usage: bench-hyper LISTEN UPSTREAM [MAX_HEADERS] [pooled|per-connection] (e.g. bench-hyper 127.0.0.1:18086 127.0.0.1:18080)"
            );
            return ExitCode::from(2);
        }
    };
    let per_connection = match mode {
        "pooled" => false,
        "per-connection" => true,
        _ => {
            eprintln!("bench-hyper: the mode is `pooled` or `per-connection`, not `{mode}`");
            return ExitCode::from(2);
        }
    };
    let (Ok(listen), Ok(address), Ok(authority), Ok(max_headers)) = (
        listen.parse::<SocketAddr>(),
        upstream.parse::<SocketAddr>(),
        upstream.parse::<Authority>(),
        max_headers.parse::<usize>(),
    ) else {
        eprintln!("bench-hyper: LISTEN and UPSTREAM must be IP:port addresses and MAX_HEADERS a number");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench-hyper: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let upstream = Upstream { authority, address, per_connection };
    match runtime.block_on(serve(listen, upstream, max_headers)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-hyper: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Where requests go, and how.
#[derive(Debug, Clone)]
struct Upstream {
    authority: Authority,
    address: SocketAddr,
    /// One upstream connection per client connection rather than the pooled client.
    per_connection: bool,
}

/// A client connection's own upstream connection (`per-connection`), opened at its first request.
type Dedicated = Arc<Mutex<Option<http1::SendRequest<Incoming>>>>;

async fn serve(listen: SocketAddr, upstream: Upstream, max_headers: usize) -> Result<(), String> {
    let listener = TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build(connector);

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(128 * 1024)
        .keep_alive(true);
    if max_headers != 100 {
        builder.http1().max_headers(max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(128 * 1024)
        .max_concurrent_streams(100)
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);

    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                eprintln!("bench-hyper: accepting a connection: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        stream.set_nodelay(true).ok();
        let builder = Arc::clone(&builder);
        let client = client.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let dedicated: Dedicated = Arc::default();
            let service = service_fn(move |request| {
                forward(client.clone(), Arc::clone(&dedicated), upstream.clone(), peer, request)
            });
            // A connection's errors (a client going away) are not the benchmark's concern.
            let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await;
        });
    }
}

/// Sends the request on to the upstream, `X-Forwarded-For` appended, and returns its response.
async fn forward(
    client: Client<HttpConnector, Incoming>,
    dedicated: Dedicated,
    upstream: Upstream,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    if !upstream.per_connection {
        // The pooled client takes an absolute URI; a connection of our own takes the path.
        let mut parts = request.uri().clone().into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(upstream.authority);
        let Ok(uri) = Uri::from_parts(parts) else { return Ok(bad_gateway()) };
        *request.uri_mut() = uri;
    }
    let forwarded = match request.headers().get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::try_from(forwarded) {
        request.headers_mut().insert(X_FORWARDED_FOR, value);
    }
    if upstream.per_connection {
        return Ok(send_dedicated(&dedicated, upstream.address, request).await.unwrap_or_else(bad_gateway));
    }
    match client.request(request).await {
        Ok(response) => Ok(response.map(Either::Left)),
        Err(_) => Ok(bad_gateway()),
    }
}

/// Sends on the client connection's own upstream connection, opening it (again) when there is
/// none or it has closed. Requests on one client connection come one at a time, so the lock is
/// never contended.
async fn send_dedicated(
    dedicated: &Dedicated,
    address: SocketAddr,
    request: Request<Incoming>,
) -> Option<Response<Body>> {
    let mut slot = dedicated.lock().await;
    if slot.as_ref().is_none_or(|sender| sender.is_closed()) {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(address)).await.ok()?.ok()?;
        stream.set_nodelay(true).ok();
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.ok()?;
        tokio::spawn(connection);
        *slot = Some(sender);
    }
    let sender = slot.as_mut()?;
    sender.ready().await.ok()?;
    let response = sender.send_request(request).await.ok()?;
    Some(response.map(Either::Left))
}

fn bad_gateway() -> Response<Body> {
    let mut response = Response::new(Either::Right(Empty::new()));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
