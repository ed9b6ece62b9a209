//! HTTP/1.1 to plain `http://` upstreams, with the connection driven inside the request's own
//! task (as Pingora's proxy does).
//!
//! hyper-util's pooled client runs every connection in a task of its own, reached through a
//! channel (two cross-task wake-ups per request), behind a mutex-guarded pool and a boxed
//! future. Here the request's task polls the connection itself (hyper's `client::conn::http1`):
//! while it waits for the response head, then from the response body ([`PooledBody`]), which
//! puts the connection back on this thread's idle list once the exchange is complete and the
//! connection is ready for another one.
//!
//! - Idle lists are per thread: no lock, and with one runtime per core, no connection moves
//!   between cores. At most `pool_max_idle_per_host` per upstream and thread, the oldest closed
//!   first; past `pool_idle_timeout`, a connection is closed when next looked at (each thread
//!   sweeps its lists at most once a second, when it uses them).
//! - A connection is never reused once it errored, once the upstream closed it (polled before
//!   reuse: a close that arrived while it was idle is seen), when the response or the request
//!   body ended early, or when hyper does not report it ready for another request.
//! - A request goes out again, once, on a new connection only when hyper hands it back unsent
//!   (the pooled connection had closed before a byte was written).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, Uri};
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::ClientOptions;
use crate::body::ProxyBody;
use crate::error::{ErrorKind, ProxyError};

type Connection = http1::Connection<TokioIo<TcpStream>, ProxyBody>;

/// How often, at most, a thread looks through all its idle lists for expired connections.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// One client's HTTP/1 connections to plain upstreams. Copied into every response body, which
/// gives the connection back.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pool {
    id: u64,
    idle_timeout: Duration,
    max_idle: usize,
    connect_timeout: Duration,
}

/// A connection: the half that sends requests and the future that does the I/O.
struct Live {
    sender: http1::SendRequest<ProxyBody>,
    connection: Connection,
    /// The connection future has completed: it must not be polled again, nor reused.
    ended: bool,
}

impl Live {
    /// Polls the connection's I/O, unless it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if !self.ended && Pin::new(&mut self.connection).poll(cx).is_ready() {
            self.ended = true;
        }
    }

    /// Whether the connection can take another request now. Polls its I/O (without a waker:
    /// nobody waits on an idle connection), which reads what an upstream sent while it was
    /// idle: its close, or bytes it should not have sent (an error).
    fn reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        // The first poll may only finish the exchange; the second sees the connection idle.
        for _ in 0..2 {
            self.drive(&mut cx);
            if self.ended || self.sender.is_closed() {
                return false;
            }
            if self.sender.is_ready() {
                return true;
            }
        }
        false
    }
}

struct IdleConnection {
    live: Live,
    since: Instant,
}

/// One pool's idle connections on this thread, by upstream.
struct PoolLists {
    idle_timeout: Duration,
    lists: HashMap<Authority, VecDeque<IdleConnection>>,
}

/// This thread's idle connections, by pool.
#[derive(Default)]
struct ThreadIdle {
    pools: HashMap<u64, PoolLists>,
    swept: Option<Instant>,
}

impl ThreadIdle {
    /// Moves every expired connection to `discarded` (at most once every [`SWEEP_INTERVAL`]).
    fn sweep(&mut self, now: Instant, discarded: &mut Vec<IdleConnection>) {
        if self.swept.is_some_and(|at| now.saturating_duration_since(at) < SWEEP_INTERVAL) {
            return;
        }
        self.swept = Some(now);
        for pool in self.pools.values_mut() {
            let timeout = pool.idle_timeout;
            for list in pool.lists.values_mut() {
                while list.front().is_some_and(|idle| now.saturating_duration_since(idle.since) >= timeout) {
                    discarded.extend(list.pop_front());
                }
            }
            pool.lists.retain(|_, list| !list.is_empty());
        }
        self.pools.retain(|_, pool| !pool.lists.is_empty());
    }
}

thread_local! {
    static IDLE: RefCell<ThreadIdle> = RefCell::new(ThreadIdle::default());
}

/// Runs `f` on this thread's idle lists; connections it discards are dropped after the borrow
/// ends. Does nothing while the thread is exiting.
fn with_idle<T>(f: impl FnOnce(&mut ThreadIdle, &mut Vec<IdleConnection>) -> Option<T>) -> Option<T> {
    let mut discarded = Vec::new();
    let result = IDLE
        .try_with(|idle| idle.try_borrow_mut().ok().and_then(|mut idle| f(&mut idle, &mut discarded)))
        .ok()
        .flatten();
    drop(discarded);
    result
}

static NEXT_POOL: AtomicU64 = AtomicU64::new(0);

/// Why an exchange failed.
enum Failure {
    /// hyper gave the request back without having written any of it.
    Unsent(Box<Request<ProxyBody>>),
    Failed(ProxyError),
}

impl Pool {
    pub(super) fn new(options: &ClientOptions) -> Self {
        Self {
            id: NEXT_POOL.fetch_add(1, Ordering::Relaxed),
            idle_timeout: options.pool_idle_timeout,
            max_idle: options.pool_max_idle_per_host,
            connect_timeout: options.connect_timeout,
        }
    }

    /// Sends `request` (an absolute `http://` URI) over HTTP/1.1 on an idle connection to its
    /// upstream, or a new one, and returns the response head; the body gives the connection back.
    pub(super) async fn send(&self, mut request: Request<ProxyBody>) -> Result<Response<PooledBody>, ProxyError> {
        let authority = request
            .uri()
            .authority()
            .cloned()
            .ok_or_else(|| ProxyError::proxy(ErrorKind::Internal).with_context("the upstream url has no host"))?;
        to_origin_form(&mut request, &authority)?;
        let (mut live, mut reused) = match self.checkout(&authority) {
            Some(live) => (live, true),
            None => (self.connect(&authority).await?, false),
        };
        loop {
            match exchange(&mut live, request).await {
                Ok(response) => {
                    return Ok(response.map(|incoming| PooledBody {
                        incoming,
                        live: Some(live),
                        pool: *self,
                        authority,
                    }));
                }
                // The idle connection had closed before anything was written: once more, on a
                // new one.
                Err(Failure::Unsent(unsent)) if reused => {
                    request = *unsent;
                    reused = false;
                    live = self.connect(&authority).await?;
                }
                Err(Failure::Unsent(_)) => {
                    return Err(ProxyError::upstream(ErrorKind::Closed)
                        .with_context("sending the request: the new upstream connection closed"));
                }
                Err(Failure::Failed(error)) => return Err(error),
            }
        }
    }

    /// The most recently used idle connection to `authority` that can take a request.
    fn checkout(&self, authority: &Authority) -> Option<Live> {
        loop {
            let now = Instant::now();
            let idle = with_idle(|idle, discarded| {
                idle.sweep(now, discarded);
                idle.pools.get_mut(&self.id)?.lists.get_mut(authority)?.pop_back()
            })?;
            let mut live = idle.live;
            if now.saturating_duration_since(idle.since) < self.idle_timeout && live.reusable() {
                return Some(live);
            }
        }
    }

    /// Keeps `live` for the next request to `authority`, if it is ready for one.
    fn checkin(&self, authority: &Authority, mut live: Live) {
        if self.max_idle == 0 || !live.reusable() {
            return;
        }
        let now = Instant::now();
        let idle_timeout = self.idle_timeout;
        let max_idle = self.max_idle;
        with_idle(|idle, discarded| {
            idle.sweep(now, discarded);
            let pool = idle.pools.entry(self.id).or_insert_with(|| PoolLists { idle_timeout, lists: HashMap::new() });
            let list = match pool.lists.get_mut(authority) {
                Some(list) => list,
                None => pool.lists.entry(authority.clone()).or_default(),
            };
            while list.len() >= max_idle {
                discarded.extend(list.pop_front());
            }
            list.push_back(IdleConnection { live, since: now });
            Some(())
        });
    }

    /// A new connection to `authority`, within the connect timeout.
    async fn connect(&self, authority: &Authority) -> Result<Live, ProxyError> {
        let connected = tokio::time::timeout(self.connect_timeout, tcp_connect(authority)).await;
        let stream = match connected {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                let kind = match error.kind() {
                    io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
                    io::ErrorKind::TimedOut => ErrorKind::ConnectTimeout,
                    _ => ErrorKind::Connect,
                };
                return Err(ProxyError::upstream(kind).with_context("connecting to the upstream").with_cause(error));
            }
            Err(_) => {
                return Err(ProxyError::upstream(ErrorKind::ConnectTimeout)
                    .with_context("connecting to the upstream: no answer within the connect timeout"));
            }
        };
        stream.set_nodelay(true).ok();
        let (sender, connection) = http1::Builder::new().handshake(TokioIo::new(stream)).await.map_err(|error| {
            ProxyError::upstream(ErrorKind::Connect).with_context("connecting to the upstream").with_cause(error)
        })?;
        Ok(Live { sender, connection, ended: false })
    }
}

/// What HTTP/1.1 sends: the path and query as the target, and a Host header. The downstream
/// version says nothing about the upstream's (and hyper would not send chunked bodies for
/// another).
fn to_origin_form(request: &mut Request<ProxyBody>, authority: &Authority) -> Result<(), ProxyError> {
    *request.version_mut() = http::Version::HTTP_11;
    if !request.headers().contains_key(HOST) {
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| ProxyError::proxy(ErrorKind::Internal).with_context("setting the upstream host"))?;
        request.headers_mut().insert(HOST, host);
    }
    let target = request.uri().path_and_query().cloned();
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(target.unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")));
    *request.uri_mut() = Uri::from_parts(parts).map_err(|e| {
        ProxyError::proxy(ErrorKind::Internal).with_context("building the upstream target").with_cause(e)
    })?;
    Ok(())
}

/// Sends `request` on `live` and drives the connection until the response head arrives.
async fn exchange(live: &mut Live, request: Request<ProxyBody>) -> Result<Response<Incoming>, Failure> {
    let mut response = std::pin::pin!(live.sender.try_send_request(request));
    let result = poll_fn(|cx| {
        live.drive(cx);
        if let Poll::Ready(result) = response.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        // The connection is gone and no answer can come.
        if live.ended { Poll::Ready(None) } else { Poll::Pending }
    })
    .await;
    match result {
        Some(Ok(response)) => Ok(response),
        Some(Err(mut error)) => match error.take_message() {
            Some(request) => Err(Failure::Unsent(Box::new(request))),
            None => Err(Failure::Failed(super::classify_hyper(error.into_error()))),
        },
        None => {
            Err(Failure::Failed(ProxyError::upstream(ErrorKind::Closed).with_context("waiting for the response head")))
        }
    }
}

/// Resolves `authority` (a name, or an IP literal) and connects to the first address that
/// accepts.
async fn tcp_connect(authority: &Authority) -> io::Result<TcpStream> {
    let port = authority.port_u16().unwrap_or(80);
    let host = authority.host();
    let host = host.strip_prefix('[').and_then(|host| host.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return TcpStream::connect(SocketAddr::new(ip, port)).await;
    }
    let mut last_error = None;
    for address in tokio::net::lookup_host((host, port)).await? {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("`{host}` has no address"))))
}

/// An upstream response body that drives its connection while it is read, and gives the
/// connection back to the pool when it ends cleanly (or, never polled, is dropped complete).
pub(super) struct PooledBody {
    incoming: Incoming,
    /// `None` once given back, or dropped after an error.
    live: Option<Live>,
    pool: Pool,
    authority: Authority,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody").field("authority", &self.authority).finish_non_exhaustive()
    }
}

impl PooledBody {
    fn release(&mut self) {
        if let Some(live) = self.live.take() {
            self.pool.checkin(&self.authority, live);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        // The connection reads what the body yields: drive it first.
        if let Some(live) = &mut this.live {
            live.drive(cx);
        }
        let frame = Pin::new(&mut this.incoming).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Err(_))) => this.live = None,
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body with nothing to read may never be polled (HEAD, 204, 304, `Content-Length: 0`).
        if self.incoming.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;
    use http_body_util::BodyExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    /// An upstream that answers every request with `answer` and reports each connection it
    /// accepts; with `close_after_first`, it closes each connection after one answer.
    async fn upstream(answer: &'static [u8], close_after_first: bool) -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (accepted, connections) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                accepted.send(()).unwrap();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(read @ 1..) = stream.read(&mut chunk).await else { return };
                        buffer.extend_from_slice(&chunk[..read]);
                        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            buffer.drain(..end + 4);
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                            if close_after_first {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (address, connections)
    }

    fn options() -> ClientOptions {
        ClientOptions { connect_timeout: Duration::from_secs(5), ..ClientOptions::default() }
    }

    async fn get(pool: &Pool, address: SocketAddr, method: http::Method) -> (u16, Bytes) {
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{address}/x?y=1"))
            .body(crate::body::empty())
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), pool.send(request)).await.unwrap().unwrap();
        let status = response.status().as_u16();
        let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect()).await.unwrap();
        (status, body.unwrap().to_bytes())
    }

    fn accepted(connections: &mut mpsc::UnboundedReceiver<()>) -> usize {
        std::iter::from_fn(|| connections.try_recv().ok()).count()
    }

    #[tokio::test]
    async fn keep_alive_connections_are_reused() {
        let (address, mut connections) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false).await;
        let pool = Pool::new(&options());
        for _ in 0..5 {
            assert_eq!(get(&pool, address, http::Method::GET).await, (200, Bytes::from_static(b"hello")));
        }
        assert_eq!(accepted(&mut connections), 1);
    }

    #[tokio::test]
    async fn empty_bodies_give_their_connection_back_unread() {
        let (address, mut connections) = upstream(b"HTTP/1.1 204 No Content\r\n\r\n", false).await;
        let pool = Pool::new(&options());
        for _ in 0..3 {
            let request = Request::builder().uri(format!("http://{address}/")).body(crate::body::empty()).unwrap();
            let response = tokio::time::timeout(Duration::from_secs(10), pool.send(request)).await.unwrap();
            // Never polled, as hyper's server does with a body that is already at its end.
            assert!(response.unwrap().body().is_end_stream());
        }
        assert_eq!(accepted(&mut connections), 1);
    }

    #[tokio::test]
    async fn closed_connections_are_not_reused() {
        let (address, mut connections) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
        let pool = Pool::new(&options());
        for _ in 0..3 {
            assert_eq!(get(&pool, address, http::Method::GET).await, (200, Bytes::from_static(b"ok")));
            // Let the upstream's close arrive.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted(&mut connections), 3);
        let (address, mut connections) =
            upstream(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok", false).await;
        for _ in 0..3 {
            assert_eq!(get(&pool, address, http::Method::GET).await.0, 200);
        }
        assert_eq!(accepted(&mut connections), 3);
    }

    #[tokio::test]
    async fn unread_bodies_do_not_give_their_connection_back() {
        let (address, mut connections) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false).await;
        let pool = Pool::new(&options());
        for _ in 0..2 {
            let request = Request::builder().uri(format!("http://{address}/")).body(crate::body::empty()).unwrap();
            let response = tokio::time::timeout(Duration::from_secs(10), pool.send(request)).await.unwrap();
            drop(response);
        }
        assert_eq!(accepted(&mut connections), 2);
    }

    #[tokio::test]
    async fn idle_connections_expire() {
        let (address, mut connections) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false).await;
        let pool = Pool::new(&ClientOptions { pool_idle_timeout: Duration::from_millis(50), ..options() });
        get(&pool, address, http::Method::GET).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        get(&pool, address, http::Method::GET).await;
        assert_eq!(accepted(&mut connections), 2);
    }
}
