//! Clients that hold their connections (HTTP/1.1 with upgrades, HTTP/2), whole responses, and raw
//! exchanges of bytes; every wait bounded by [`PROMPTLY`].

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::PROMPTLY;

/// The error of a [`Body`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body the clients send and the upstreams answer with (the proxy's `ProxyBody`).
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body of fixed bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A GET request with an origin-form path and a `Host` header.
pub fn get(host: &str, path: &str) -> Request<Body> {
    request(Method::GET, host, path).body(empty()).unwrap()
}

/// A request builder with a method, an origin-form path and a `Host` header.
pub fn request(method: Method, host: &str, path: &str) -> http::request::Builder {
    Request::builder().method(method).uri(path).header(HOST, host)
}

/// A response, its body read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub async fn read(response: Response<Incoming>) -> Reply {
        let (parts, incoming) = response.into_parts();
        let body = tokio::time::timeout(PROMPTLY, incoming.collect())
            .await
            .expect("the body arrives")
            .expect("the body is complete")
            .to_bytes();
        Reply { status: parts.status, version: parts.version, headers: parts.headers, body }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// A header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    /// What the echo upstream saw.
    pub fn seen(&self) -> crate::upstream::Seen {
        assert_eq!(self.status, 200, "not an upstream answer: {self:?}");
        crate::upstream::Seen(self.json())
    }
}

/// An HTTP/1.1 connection the test holds (upgrades allowed).
pub struct H1 {
    sender: hyper::client::conn::http1::SendRequest<Body>,
    closed: tokio::sync::oneshot::Receiver<()>,
}

impl H1 {
    pub async fn handshake<I>(io: I) -> H1
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let handshake = hyper::client::conn::http1::handshake(TokioIo::new(io));
        let (sender, connection) = tokio::time::timeout(PROMPTLY, handshake).await.unwrap().unwrap();
        let (done, closed) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
            let _ = done.send(());
        });
        H1 { sender, closed }
    }

    pub async fn send(&mut self, request: Request<Body>) -> Response<Incoming> {
        tokio::time::timeout(PROMPTLY, self.sender.send_request(request))
            .await
            .expect("the response arrives")
            .expect("the request goes through")
    }

    pub async fn fetch(&mut self, request: Request<Body>) -> Reply {
        let response = self.send(request).await;
        Reply::read(response).await
    }

    /// Whether the connection has closed.
    pub fn is_closed(&mut self) -> bool {
        !matches!(self.closed.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Empty))
    }
}

/// An HTTP/2 connection the test holds.
pub struct H2 {
    sender: hyper::client::conn::http2::SendRequest<Body>,
}

impl H2 {
    pub async fn handshake<I>(io: I) -> H2
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let handshake = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io));
        let (sender, connection) = tokio::time::timeout(PROMPTLY, handshake).await.unwrap().unwrap();
        tokio::spawn(connection);
        H2 { sender }
    }

    /// Sends `request`: its origin-form URI and `Host` header become `https://host/path`.
    pub async fn send(&mut self, request: Request<Body>) -> Response<Incoming> {
        tokio::time::timeout(PROMPTLY, self.sender.send_request(absolute(request)))
            .await
            .expect("the response arrives")
            .expect("the request goes through")
    }

    pub async fn fetch(&mut self, request: Request<Body>) -> Reply {
        let response = self.send(request).await;
        Reply::read(response).await
    }

    /// Sends `request`; `None` when the stream or the connection was refused.
    pub async fn try_send(&mut self, request: Request<Body>) -> Option<Response<Incoming>> {
        let sent = self.sender.send_request(absolute(request));
        tokio::time::timeout(PROMPTLY, sent).await.expect("an answer or an error").ok()
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// An HTTP/2 request: the origin-form URI and `Host` header become `https://host/path`.
fn absolute(mut request: Request<Body>) -> Request<Body> {
    if request.uri().authority().is_none() {
        let host = request.headers_mut().remove(HOST).unwrap();
        let target = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
        *request.uri_mut() = format!("https://{}{target}", host.to_str().unwrap()).parse().unwrap();
    }
    *request.version_mut() = Version::HTTP_2;
    request
}

/// An HTTP GET over plain TCP on a new connection.
pub async fn plain_get(address: SocketAddr, host: &str, path: &str) -> Reply {
    plain_fetch(address, get(host, path)).await
}

/// `request` over plain TCP (HTTP/1.1) on a new connection.
pub async fn plain_fetch(address: SocketAddr, request: Request<Body>) -> Reply {
    let stream = TcpStream::connect(address).await.unwrap();
    H1::handshake(stream).await.fetch(request).await
}

/// Writes `bytes` on `stream` and reads until the peer closes it (or a response head and its
/// announced body have arrived, or a short while has passed); returns what came back.
///
/// Long inputs go out in 16 KiB pieces a few milliseconds apart, as over a real network: a
/// server that answers early must still let the client finish sending and read its answer.
pub async fn raw_exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, bytes: &[u8]) -> String {
    for (index, piece) in bytes.chunks(16 * 1024).enumerate() {
        if index > 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        stream.write_all(piece).await.unwrap();
        stream.flush().await.unwrap();
    }
    let mut received = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
        if response_complete(&received) {
            break;
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// Writes `bytes` on `stream` and reads everything until the peer closes it (bounded).
pub async fn raw_exchange_until_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, bytes: &[u8]) -> String {
    stream.write_all(bytes).await.unwrap();
    stream.flush().await.unwrap();
    let mut received = Vec::new();
    let read = tokio::time::timeout(PROMPTLY, stream.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the server closes the connection");
    String::from_utf8_lossy(&received).into_owned()
}

/// Whether `bytes` hold a whole HTTP/1.1 response with a `content-length` body.
fn response_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
    });
    length.is_some_and(|length| body.len() >= length)
}

/// The status code of a raw HTTP/1.1 response ("" when nothing came back).
pub fn raw_status(response: &str) -> &str {
    response.strip_prefix("HTTP/1.1 ").and_then(|rest| rest.get(..3)).unwrap_or("")
}
