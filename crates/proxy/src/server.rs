//! Accept loops: TCP, optional TLS, HTTP/1.1 and HTTP/2 on the same port, a handler per request.
//!
//! [`serve`] accepts until the [`ShutdownSignal`] fires, then stops accepting, asks every
//! connection to finish (HTTP/1: close after the current response; HTTP/2: GOAWAY) and waits up
//! to [`ServerOptions::shutdown_grace`] before dropping what is left.
//!
//! The handler sees each request with its [`ConnectionInfo`]: peer and local addresses, and for
//! TLS the SNI, the ALPN protocol and the client certificate. It returns a response; errors are
//! the handler's to render (see [`crate::error::ErrorPage`]).
//!
//! Limits, for hostile clients: a TLS handshake timeout, a first-byte timeout on plain
//! connections, a header read timeout (HTTP/1; kept by the connection's watchdog, `idle`), header
//! size and count limits (128 KiB; 100 headers, as Pomerium's Envoy, which leaves
//! `max_request_headers_count` at its default), a cap on concurrent HTTP/2 streams.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::header::{HOST, LOCATION};
use http::uri::Authority;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::body::{self, ProxyBody};
use crate::tls::{ClientCertificate, ServerTls};

mod idle;
mod linger;
pub mod proxy_protocol;

/// Limits and timeouts of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// How long a client may take to send a request's headers (and, on a plain connection, its
    /// first byte).
    pub header_read_timeout: Duration,
    /// The most header bytes in a request (HTTP/1 read buffer, HTTP/2 header list); at least 8 KiB.
    pub max_header_bytes: usize,
    /// The most headers in an HTTP/1 request: 100, Envoy's default, which Pomerium keeps (its
    /// listeners set no `max_request_headers_count`). More get 431. hyper parses up to 100 in a
    /// stack array; a larger limit costs two vectors of that length per request.
    pub max_headers: usize,
    /// The most concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// How long in-flight requests may take to finish once shutdown begins.
    pub shutdown_grace: Duration,
    /// `timeout_idle`: a connection with nothing in flight and no bytes moving for this long is
    /// closed. `None`: never.
    pub idle_timeout: Option<Duration>,
    /// `use_proxy_protocol`: every connection begins with a PROXY protocol header (v1 or v2),
    /// whose source address is the client's; a connection without one is closed.
    pub proxy_protocol: bool,
    /// The most connections served at once; more are closed as soon as they are accepted (a
    /// client cannot exhaust file descriptors and memory by opening connections).
    pub max_connections: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 128 * 1024,
            max_headers: HYPER_DEFAULT_MAX_HEADERS,
            max_concurrent_streams: 100,
            shutdown_grace: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(300)),
            proxy_protocol: false,
            max_connections: 50_000,
        }
    }
}

/// hyper parses up to this many HTTP/1 headers in a stack array; any other limit makes it fill a
/// vector of that length for every request (about 5% of a proxied request's CPU at 1,000).
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// hyper's smallest accepted HTTP/1 buffer.
const MIN_HEADER_BYTES: usize = 8 * 1024;

/// What the handler knows about the connection a request came on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The client's address (or the last proxy's).
    pub peer: SocketAddr,
    /// The address the connection was accepted on.
    pub local: SocketAddr,
    /// TLS facts, when the listener terminates TLS.
    pub tls: Option<TlsInfo>,
}

/// What the TLS handshake established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The SNI the client sent.
    pub server_name: Option<String>,
    /// The protocol agreed by ALPN (`h2`, `http/1.1`).
    pub alpn: Option<Vec<u8>>,
    /// The client certificate, if one was presented.
    pub client_certificate: Option<ClientCertificate>,
    /// The client CA set of the SNI's host, when it has its own (a route's
    /// `tls_downstream_client_ca`); `None`: the listener's.
    pub client_ca: Option<crate::tls::ClientCaId>,
}

/// Handles one request. Implemented for closures
/// `Fn(Request<Incoming>, Arc<ConnectionInfo>) -> impl Future<Output = Response<ProxyBody>>`.
pub trait Handler: Clone + Send + Sync + 'static {
    /// The response, to come.
    type Future: Future<Output = Response<ProxyBody>> + Send + 'static;

    /// The response to `request`, which arrived on `connection`.
    fn handle(&self, request: Request<Incoming>, connection: Arc<ConnectionInfo>) -> Self::Future;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request<Incoming>, Arc<ConnectionInfo>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    type Future = Fut;

    fn handle(&self, request: Request<Incoming>, connection: Arc<ConnectionInfo>) -> Fut {
        self(request, connection)
    }
}

/// Starts a shutdown: every [`ShutdownSignal`] made from it fires. Dropping it fires them too.
#[derive(Debug)]
pub struct Shutdown {
    sender: watch::Sender<bool>,
}

/// Fires when shutdown begins. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    receiver: watch::Receiver<bool>,
}

impl Shutdown {
    /// A shutdown not yet started.
    pub fn new() -> Self {
        Self { sender: watch::channel(false).0 }
    }

    /// A signal that fires when [`Shutdown::trigger`] is called.
    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal { receiver: self.sender.subscribe() }
    }

    /// Begins the shutdown.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl ShutdownSignal {
    /// Waits until shutdown begins.
    pub async fn fired(&mut self) {
        // An error means the `Shutdown` is gone, which also means stop.
        let _ = self.receiver.wait_for(|started| *started).await;
    }
}

/// Serves connections from `listener` until `shutdown` fires, then drains them.
///
/// With `tls`, every connection must complete a TLS handshake first. Returns once every
/// connection has finished or the grace period is over.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<ServerTls>,
    handler: H,
    options: ServerOptions,
    shutdown: ShutdownSignal,
) {
    serve_counted(listener, tls, handler, options, shutdown, Arc::new(AtomicUsize::new(0))).await;
}

/// [`serve`], counting open connections in `open` (shared by the workers of one listener, so that
/// [`ServerOptions::max_connections`] bounds them all together).
async fn serve_counted<H: Handler>(
    listener: TcpListener,
    tls: Option<ServerTls>,
    handler: H,
    options: ServerOptions,
    mut shutdown: ShutdownSignal,
    open: Arc<AtomicUsize>,
) {
    let builder = Arc::new(http_builder(&options));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut refused_warned: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.fired() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // The slot is taken before the check, so that workers accepting at once
                    // cannot together pass the limit.
                    let Some(counted) = OpenConnection::reserve(&open, options.max_connections) else {
                        refused_over_limit(&mut refused_warned, peer, options.max_connections);
                        drop(stream);
                        continue;
                    };
                    let connection = Connection {
                        tls: tls.clone(),
                        handler: handler.clone(),
                        builder: Arc::clone(&builder),
                        watcher: graceful.watcher(),
                        options,
                    };
                    connections.spawn(async move {
                        connection.serve(stream, peer).await;
                        drop(counted);
                    });
                }
                Err(error) => pause_after_accept_error(&error).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(options.shutdown_grace, async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(remaining = connections.len(), "shutdown grace period over: closing the remaining connections");
        connections.abort_all();
    }
}

/// Says (at most every 10 s) that connections are being refused over the limit.
fn refused_over_limit(warned: &mut Option<std::time::Instant>, peer: SocketAddr, limit: usize) {
    if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
        *warned = Some(std::time::Instant::now());
        tracing::warn!(%peer, limit, "too many connections: new ones are closed until some end");
    }
}

/// Binds a listen address in Go's forms (`:port`, `host:port`, `[v6]:port`), as Pomerium's
/// options and the control plane's `address` write them.
pub async fn bind(address: &str) -> Result<TcpListener, String> {
    let addr = resolve(address).await?;
    TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on `{address}`: {e}"))
}

/// The socket address of a listen address in Go's forms.
async fn resolve(address: &str) -> Result<SocketAddr, String> {
    let resolved =
        if let Some(port) = address.strip_prefix(':') { format!("0.0.0.0:{port}") } else { address.to_owned() };
    let addr: SocketAddr = match resolved.parse() {
        Ok(addr) => addr,
        Err(_) => tokio::net::lookup_host(&resolved)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| format!("`{address}` is not an address to listen on"))?,
    };
    Ok(addr)
}

/// One open connection, counted while it lives.
struct OpenConnection(Arc<AtomicUsize>);

impl OpenConnection {
    /// Counts one more connection, or none when `limit` are already open.
    fn reserve(open: &Arc<AtomicUsize>, limit: usize) -> Option<Self> {
        let counted = Self(Arc::clone(open));
        // Dropping `counted` gives the slot back when it is over the limit.
        (open.fetch_add(1, Ordering::Relaxed) < limit).then_some(counted)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Like [`bind`], with `SO_REUSEPORT` when `shared`: [`serve_on_workers`] opens more sockets on
/// the same address, one per worker. (Linux lets only the same user share a port this way.)
pub async fn bind_shared(address: &str, shared: bool) -> Result<TcpListener, String> {
    if !shared {
        return bind(address).await;
    }
    let addr = resolve(address).await?;
    reuseport_listener(addr).map_err(|e| format!("cannot listen on `{address}`: {e}"))
}

/// A listening socket on `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`.
fn reuseport_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves `listener` on `workers` threads, each with a single-threaded runtime of its own and its
/// own socket on the listener's address (`SO_REUSEPORT`: the kernel spreads new connections over
/// them; no task moves between threads). `listener` must come from [`bind_shared`] when
/// `workers` > 1. The connection limit holds for all workers together. Returns once every worker
/// has drained after `shutdown`, as [`serve`] does.
pub fn serve_on_workers<H: Handler>(
    listener: TcpListener,
    workers: usize,
    tls: Option<ServerTls>,
    handler: H,
    options: ServerOptions,
    shutdown: ShutdownSignal,
) -> Result<impl Future<Output = ()> + Send + 'static, String> {
    let local = listener.local_addr().map_err(|e| format!("the proxy listener has no address: {e}"))?;
    let mut sockets = vec![listener.into_std().map_err(|e| format!("cannot hand the proxy listener over: {e}"))?];
    for _ in 1..workers {
        let socket = reuseport_listener(local)
            .and_then(TcpListener::into_std)
            .map_err(|e| format!("cannot open another socket on {local} for a proxy worker: {e}"))?;
        sockets.push(socket);
    }
    let open = Arc::new(AtomicUsize::new(0));
    let mut finished = Vec::with_capacity(sockets.len());
    for (index, socket) in sockets.into_iter().enumerate() {
        let (done, worker_finished) = tokio::sync::oneshot::channel::<()>();
        let (tls, handler, shutdown, open) = (tls.clone(), handler.clone(), shutdown.clone(), Arc::clone(&open));
        let worker = move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => return tracing::error!(%error, "cannot start a proxy worker's runtime"),
            };
            runtime.block_on(async move {
                match TcpListener::from_std(socket) {
                    Ok(listener) => serve_counted(listener, tls, handler, options, shutdown, open).await,
                    Err(error) => tracing::error!(%error, "a proxy worker cannot use its socket"),
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
            let _ = done.send(());
        };
        std::thread::Builder::new()
            .name(format!("proxy-worker-{index}"))
            .spawn(worker)
            .map_err(|e| format!("cannot start a proxy worker thread: {e}"))?;
        finished.push(worker_finished);
    }
    Ok(async move {
        for worker_finished in finished {
            let _ = worker_finished.await;
        }
    })
}

/// Accept errors are mostly about one connection; running out of file descriptors is about all
/// of them, and retrying at once would spin.
async fn pause_after_accept_error(error: &io::Error) {
    tracing::warn!(%error, "accepting a connection");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn http_builder(options: &ServerOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let header_bytes = options.max_header_bytes.max(MIN_HEADER_BYTES);
    // The header read timeout is the connection's watchdog's (`idle`): hyper's would allocate and
    // arm a timer for every request.
    builder.http1().header_read_timeout(None).max_buf_size(header_bytes).keep_alive(true);
    if options.max_headers != HYPER_DEFAULT_MAX_HEADERS {
        builder.http1().max_headers(options.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(options.max_concurrent_streams)
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Everything a connection task needs.
struct Connection<H> {
    tls: Option<ServerTls>,
    handler: H,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    options: ServerOptions,
}

impl<H: Handler> Connection<H> {
    async fn serve(self, mut stream: TcpStream, mut peer: SocketAddr) {
        let Ok(local) = stream.local_addr() else { return };
        stream.set_nodelay(true).ok();
        if self.options.proxy_protocol {
            let limit = self.options.tls_handshake_timeout.min(self.options.header_read_timeout);
            match tokio::time::timeout(limit, proxy_protocol::read_header(&mut stream)).await {
                Ok(Ok(proxy_protocol::Header::Proxied { source, .. })) => peer = source,
                Ok(Ok(proxy_protocol::Header::Local)) => {}
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "connection closed"),
                Err(_) => return tracing::debug!(%peer, "no PROXY protocol header in time: connection closed"),
            }
        }
        match self.tls.clone() {
            Some(tls) => self.serve_tls(stream, &tls, peer, local).await,
            None => self.serve_plain(stream, peer, local).await,
        }
    }

    async fn serve_tls(self, stream: TcpStream, tls: &ServerTls, peer: SocketAddr, local: SocketAddr) {
        let accept = async {
            if !tls.per_host() {
                return tls.acceptor().accept(stream).await;
            }
            // Some hosts have their own client CA: read the ClientHello, then pick by SNI.
            let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
            let config = tls.config_for(start.client_hello().server_name());
            start.into_stream(config).await
        };
        let handshake = tokio::time::timeout(self.options.tls_handshake_timeout, accept).await;
        let stream = match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
        };
        let (_, session) = stream.get_ref();
        if session.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) {
            // A TLS-ALPN-01 validation: the handshake was the answer (RFC 8737 §3).
            let mut stream = stream;
            let _ = tokio::time::timeout(self.options.tls_handshake_timeout, stream.shutdown()).await;
            return;
        }
        let info = TlsInfo {
            server_name: session.server_name().map(str::to_owned),
            alpn: session.alpn_protocol().map(<[u8]>::to_vec),
            client_certificate: tls.client_certificate(session),
            client_ca: tls.client_ca_for(session.server_name()),
        };
        self.serve_http(stream, ConnectionInfo { peer, local, tls: Some(info) }).await;
    }

    async fn serve_plain(self, stream: TcpStream, peer: SocketAddr, local: SocketAddr) {
        // hyper's header timeout starts once it knows the protocol; bound the wait before that.
        let mut first = [0u8; 1];
        match tokio::time::timeout(self.options.header_read_timeout, stream.peek(&mut first)).await {
            Ok(Ok(1..)) => {}
            _ => return,
        }
        self.serve_http(stream, ConnectionInfo { peer, local, tls: None }).await;
    }

    /// Serves HTTP on `stream`; a connection that ends in an error (a refused request head,
    /// say) is closed gently, so that the client reads the error response (see [`linger`]).
    async fn serve_http<T>(self, stream: T, info: ConnectionInfo)
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let info = Arc::new(info);
        let handler = self.handler;
        let peer = info.peer;
        let activity = idle::Activity::new();
        if info.tls.as_ref().is_some_and(|tls| tls.alpn.as_deref() == Some(b"h2".as_slice())) {
            activity.set_http2();
        }
        let requests = Arc::clone(&activity);
        let service = service_fn(move |request: Request<Incoming>| {
            if request.version() == http::Version::HTTP_2 {
                requests.set_http2();
            }
            let in_flight = requests.request();
            let response = handler.handle(request, Arc::clone(&info));
            async move {
                let response = response.await.map(|body| idle::InFlightBody::new(body, in_flight));
                Ok::<_, Infallible>(response)
            }
        });
        let (stream, returned) = linger::Returning::new(stream);
        let connection = self.builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = self.watcher.watch(connection);
        let watchdog = activity.watch(self.options.idle_timeout, Some(self.options.header_read_timeout));
        let outcome = tokio::select! {
            outcome = connection => outcome,
            expired = watchdog => {
                // Nothing in flight: closing loses nothing.
                return match expired {
                    idle::Expired::Idle => tracing::debug!(%peer, "idle connection closed (timeout_idle)"),
                    idle::Expired::HeaderRead => tracing::debug!(%peer, "no request head in time: connection closed"),
                };
            }
        };
        if let Err(error) = outcome {
            tracing::debug!(%peer, %error, "connection ended with an error");
            if let Ok(stream) = returned.await {
                linger::close_gently(stream).await;
            }
        }
    }
}

/// The answer of the HTTP→HTTPS redirect listener (`http_redirect_addr`): the same host and
/// path on `https`, with `https_port` unless it is 443. 301 for GET and HEAD, 308 otherwise
/// (which keeps the method and body). A Host that is not a plain `host[:port]` gets a 400, so
/// that the redirect can only point at the host the client asked for.
pub fn https_redirect<B>(request: &Request<B>, https_port: u16) -> Response<ProxyBody> {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| request.uri().authority().map(Authority::as_str));
    let Some(host) = host.and_then(redirect_host) else {
        return plain_response(StatusCode::BAD_REQUEST);
    };
    let path = request.uri().path_and_query().map_or("/", |path| path.as_str());
    let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
    let status = if matches!(*request.method(), Method::GET | Method::HEAD) {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    match http::HeaderValue::from_str(&format!("https://{host}{port}{path}")) {
        Ok(location) => {
            let mut response = plain_response(status);
            response.headers_mut().insert(LOCATION, location);
            response
        }
        Err(_) => plain_response(StatusCode::BAD_REQUEST),
    }
}

/// The host part of a Host header, when it is a DNS name or an IP literal (with an optional
/// numeric port, dropped); `None` for anything else (userinfo, paths, odd characters).
fn redirect_host(value: &str) -> Option<String> {
    if value.is_empty() || value.len() > 255 + 6 {
        return None;
    }
    let authority: Authority = value.parse().ok()?;
    if authority.as_str().contains('@') || authority.as_str() != value {
        return None;
    }
    let host = authority.host();
    if authority.as_str().len() != host.len() && authority.port_u16().is_none() {
        return None;
    }
    let is_ipv6 = host.starts_with('[')
        && host.ends_with(']')
        && host.trim_matches(['[', ']']).parse::<std::net::Ipv6Addr>().is_ok();
    let is_name = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    (is_ipv6 || is_name).then(|| host.to_ascii_lowercase())
}

fn plain_response(status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = status;
    response
}

/// Serves the HTTP→HTTPS redirect on `listener` until `shutdown` fires.
pub async fn serve_https_redirect(
    listener: TcpListener,
    https_port: u16,
    options: ServerOptions,
    shutdown: ShutdownSignal,
) {
    let handler =
        move |request: Request<Incoming>, _: Arc<ConnectionInfo>| async move { https_redirect(&request, https_port) };
    serve(listener, None, handler, options, shutdown).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn redirect(method: Method, uri: &str, host: Option<&str>, port: u16) -> (u16, Option<String>) {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(host) = host {
            builder = builder.header(HOST, host);
        }
        let response = https_redirect(&builder.body(()).unwrap(), port);
        let location = response.headers().get(LOCATION).map(|value| value.to_str().unwrap().to_owned());
        (response.status().as_u16(), location)
    }

    #[test]
    fn redirects_keep_host_and_path() {
        type Case = (Method, &'static str, Option<&'static str>, u16, u16, Option<&'static str>);
        let table: &[Case] = &[
            (Method::GET, "/a?b=1", Some("app.example.com"), 443, 301, Some("https://app.example.com/a?b=1")),
            (Method::GET, "/a", Some("App.Example.com:80"), 443, 301, Some("https://app.example.com/a")),
            (Method::HEAD, "/", Some("app.example.com:8080"), 8443, 301, Some("https://app.example.com:8443/")),
            (Method::POST, "/form", Some("app.example.com"), 443, 308, Some("https://app.example.com/form")),
            (
                Method::GET,
                "//evil.com/x",
                Some("app.example.com"),
                443,
                301,
                Some("https://app.example.com//evil.com/x"),
            ),
            (Method::GET, "/", Some("[::1]:80"), 443, 301, Some("https://[::1]/")),
            (Method::GET, "/", Some("10.0.0.1"), 443, 301, Some("https://10.0.0.1/")),
            (Method::GET, "http://abs.example.com/p", None, 443, 301, Some("https://abs.example.com/p")),
            (Method::GET, "/", Some("user@evil.com"), 443, 400, None),
            (Method::GET, "/", Some("evil.com/path"), 443, 400, None),
            (Method::GET, "/", Some("evil.com\\@x"), 443, 400, None),
            (Method::GET, "/", Some("a..b"), 443, 400, None),
            (Method::GET, "/", Some(""), 443, 400, None),
            (Method::GET, "/", Some("host:notaport"), 443, 400, None),
            (Method::GET, "/", None, 443, 400, None),
        ];
        for (method, uri, host, port, status, location) in table {
            let expected = (*status, location.map(str::to_owned));
            assert_eq!(redirect(method.clone(), uri, *host, *port), expected, "{method} {uri} host={host:?}");
        }
    }

    #[tokio::test]
    async fn shutdown_signal_fires_for_every_clone_and_on_drop() {
        let shutdown = Shutdown::new();
        let mut first = shutdown.signal();
        let mut second = first.clone();
        shutdown.trigger();
        first.fired().await;
        second.fired().await;
        let dropped = Shutdown::new();
        let mut signal = dropped.signal();
        drop(dropped);
        signal.fired().await;
    }
}
