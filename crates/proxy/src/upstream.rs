//! The upstream client: pooled connections over plain HTTP or HTTPS (ALPN `h2`, `http/1.1`),
//! with a route's TLS settings.
//!
//! One [`UpstreamClient`] holds one connection pool per TLS setting, so that routes with
//! different settings (another CA, a client certificate, verification off) never share a
//! connection; [`UpstreamClients`] hands out one client per distinct setting. Verification is
//! on by default, against the system's roots.
//!
//! Timeouts: the connect timeout is the client's; the route's timeout (Pomerium's `timeout` /
//! `default_upstream_timeout`) and idle timeout (`idle_timeout`) are given per request in
//! [`RequestTimeouts`]. The route timeout bounds the whole exchange: waiting for the response
//! head gives a 504, running out while the body streams cuts the body. Bodies stream both ways.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, ResolveServerName};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::time::{Instant, Sleep};

use crate::body::{BoxError, ProxyBody};
use crate::error::{ErrorKind, ProxyError};
use crate::tls::{PROTOCOL_VERSIONS, TlsError, provider};

mod pool;

/// A route's upstream TLS settings (`tls_skip_verify`, `tls_server_name`, `tls_custom_ca`,
/// `tls_client_cert` + `tls_client_key`).
#[derive(Debug, Default)]
pub struct UpstreamTls {
    /// Do not verify the upstream's certificate. Dangerous; off by default.
    pub skip_verify: bool,
    /// The name sent as SNI and verified in the certificate, instead of the URL's host.
    pub server_name: Option<String>,
    /// Trust these CAs instead of the system roots.
    pub custom_ca: Option<Vec<CertificateDer<'static>>>,
    /// Present this certificate chain and key to the upstream.
    pub client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl Clone for UpstreamTls {
    fn clone(&self) -> Self {
        Self {
            skip_verify: self.skip_verify,
            server_name: self.server_name.clone(),
            custom_ca: self.custom_ca.clone(),
            client_auth: self.client_auth.as_ref().map(|(chain, key)| (chain.clone(), key.clone_key())),
        }
    }
}

impl UpstreamTls {
    /// A digest identifying these settings, so that equal settings share a pool.
    fn fingerprint(&self) -> [u8; 32] {
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut field = |bytes: &[u8]| {
            context.update(&u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
            context.update(bytes);
        };
        field(&[u8::from(self.skip_verify)]);
        field(self.server_name.as_deref().unwrap_or("\0none").as_bytes());
        for certificate in self.custom_ca.iter().flatten() {
            field(certificate);
        }
        field(b"client-auth");
        if let Some((chain, key)) = &self.client_auth {
            chain.iter().for_each(|certificate| field(certificate));
            field(key.secret_der());
        }
        let digest = context.finish();
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(digest.as_ref().get(..32).unwrap_or(&[0; 32]));
        fingerprint
    }
}

/// Connection settings shared by every route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// How long a TCP connection may take (Pomerium's cluster `connect_timeout`: 10 s).
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// The most idle connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle_per_host: 64,
        }
    }
}

/// Per-request time limits, from the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestTimeouts {
    /// The whole exchange (`timeout`); `None`: no limit (websockets, TCP, Kubernetes routes).
    pub total: Option<Duration>,
    /// The longest wait between two body frames (`idle_timeout`); `None`: no limit.
    pub idle: Option<Duration>,
}

type Connector = HttpsConnector<HttpConnector>;

/// A pooled client for one TLS setting. Cheap to clone; clones share the pool.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    /// Negotiates `h2` or `http/1.1` by ALPN.
    client: Client<Connector, ProxyBody>,
    /// HTTP/1.1 only: upgrades (websockets) are an HTTP/1.1 mechanism.
    http1_client: Client<Connector, ProxyBody>,
    /// HTTP/2 only, with prior knowledge: `h2c://` upstreams (cleartext HTTP/2, gRPC servers).
    h2c_client: Client<Connector, ProxyBody>,
    /// HTTP/1.1 to `http://` upstreams, driven in the request's task (see [`pool`]).
    pool: pool::Pool,
}

impl UpstreamClient {
    /// A client with these TLS settings.
    pub fn new(tls: &UpstreamTls, options: &ClientOptions) -> Result<Self, TlsError> {
        let config = client_config(tls)?;
        let resolver: Arc<dyn ResolveServerName + Send + Sync> = match &tls.server_name {
            Some(name) => {
                let name = ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName(name.clone()))?;
                Arc::new(FixedServerNameResolver::new(name))
            }
            None => Arc::new(hyper_rustls::DefaultServerNameResolver::default()),
        };
        let connector = |alpn: &[&[u8]]| {
            let mut config = config.clone();
            config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
            HttpsConnector::new(http_connector(options), config, false, Arc::clone(&resolver))
        };
        let builder = |connector, http2_only| {
            Client::builder(TokioExecutor::new())
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(options.pool_idle_timeout)
                .pool_max_idle_per_host(options.pool_max_idle_per_host)
                .http2_only(http2_only)
                .build(connector)
        };
        Ok(Self {
            client: builder(connector(&[b"h2", b"http/1.1"]), false),
            http1_client: builder(connector(&[b"http/1.1"]), false),
            h2c_client: builder(connector(&[b"h2"]), true),
            pool: pool::Pool::new(options),
        })
    }

    /// Sends a request (absolute URI: `http://` or `https://`) and returns the response head
    /// with its body streaming, within `timeouts`.
    pub async fn send(
        &self,
        request: Request<ProxyBody>,
        timeouts: RequestTimeouts,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        if request.uri().scheme() == Some(&http::uri::Scheme::HTTP) {
            let deadline = timeouts.total.map(|total| Instant::now() + total);
            let response = within(deadline, self.pool.send(request)).await?;
            return Ok(response.map(|body| TimedBody::new(body, deadline, timeouts.idle).boxed_unsync()));
        }
        self.send_on(&self.client, request, timeouts).await
    }

    /// Like [`UpstreamClient::send`], over HTTP/2 with prior knowledge: what `h2c://` upstreams
    /// speak (Pomerium's `h2c` scheme), as no ALPN can choose it on a cleartext connection.
    pub async fn send_h2c(
        &self,
        request: Request<ProxyBody>,
        timeouts: RequestTimeouts,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        self.send_on(&self.h2c_client, request, timeouts).await
    }

    async fn send_on(
        &self,
        client: &Client<Connector, ProxyBody>,
        request: Request<ProxyBody>,
        timeouts: RequestTimeouts,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let deadline = timeouts.total.map(|total| Instant::now() + total);
        let response = self.request_head(client, request, deadline).await?;
        Ok(response.map(|body| TimedBody::new(body, deadline, timeouts.idle).boxed_unsync()))
    }

    /// Sends an upgrade request over HTTP/1.1 and returns the response as received, so that
    /// the caller can take the upgraded connection from a `101` (see [`crate::tunnel`]).
    pub async fn send_upgrade(
        &self,
        request: Request<ProxyBody>,
        timeout: Option<Duration>,
    ) -> Result<Response<Incoming>, ProxyError> {
        self.request_head(&self.http1_client, request, timeout.map(|timeout| Instant::now() + timeout)).await
    }

    async fn request_head(
        &self,
        client: &Client<Connector, ProxyBody>,
        mut request: Request<ProxyBody>,
        deadline: Option<Instant>,
    ) -> Result<Response<Incoming>, ProxyError> {
        // The downstream version says nothing about the upstream's: ALPN decides.
        *request.version_mut() = Version::HTTP_11;
        let future = client.request(request);
        let result = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, future)
                .await
                .map_err(|_| ProxyError::upstream(ErrorKind::Timeout).with_context("waiting for the response head"))?,
            None => future.await,
        };
        result.map_err(classify)
    }
}

/// `future`, failing with a 504 at `deadline`.
async fn within<T>(
    deadline: Option<Instant>,
    future: impl Future<Output = Result<T, ProxyError>>,
) -> Result<T, ProxyError> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, future)
            .await
            .map_err(|_| ProxyError::upstream(ErrorKind::Timeout).with_context("waiting for the response head"))?,
        None => future.await,
    }
}

/// One client per distinct TLS setting, made on first use.
#[derive(Debug, Default)]
pub struct UpstreamClients {
    options: ClientOptions,
    clients: Mutex<HashMap<[u8; 32], UpstreamClient>>,
}

impl UpstreamClients {
    /// An empty set of clients with these connection settings.
    pub fn new(options: ClientOptions) -> Self {
        Self { options, clients: Mutex::new(HashMap::new()) }
    }

    /// The client for `tls`, shared with every route of equal settings.
    pub fn client(&self, tls: &UpstreamTls) -> Result<UpstreamClient, TlsError> {
        let key = tls.fingerprint();
        let mut clients = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = UpstreamClient::new(tls, &self.options)?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Forgets every client (after a reload); connections close once their requests finish.
    pub fn clear(&self) {
        self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

fn http_connector(options: &ClientOptions) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(options.connect_timeout));
    connector
}

/// The rustls client configuration for one TLS setting (ALPN is set per pool).
pub fn client_config(tls: &UpstreamTls) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder =
        ClientConfig::builder_with_provider(Arc::clone(&provider)).with_protocol_versions(PROTOCOL_VERSIONS)?;
    let builder = if tls.skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(tls_trust::SkipVerification(provider)))
    } else {
        builder.with_root_certificates(root_store(tls.custom_ca.as_deref())?)
    };
    Ok(match &tls.client_auth {
        Some((chain, key)) => builder.with_client_auth_cert(chain.clone(), key.clone_key()).map_err(TlsError::Key)?,
        None => builder.with_no_client_auth(),
    })
}

fn root_store(custom_ca: Option<&[CertificateDer<'static>]>) -> Result<Arc<RootCertStore>, TlsError> {
    let Some(custom_ca) = custom_ca else { return Ok(tls_trust::system_roots()) };
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(custom_ca.iter().cloned());
    if added == 0 {
        return Err(TlsError::CustomCa(format!("no usable certificate ({ignored} ignored)")));
    }
    Ok(Arc::new(roots))
}

/// Turns a client error into a proxy error, by what its chain of causes says.
pub fn classify(error: hyper_util::client::legacy::Error) -> ProxyError {
    // The client's own body ran out of time while it was being sent: the client's failure, 408.
    if causes(&error).iter().any(|cause| cause.downcast_ref::<BodyTimeout>() == Some(&BodyTimeout::Request)) {
        return ProxyError::client(ErrorKind::Timeout).with_context("reading the request body").with_cause(error);
    }
    let kind = classify_kind(&error);
    ProxyError::upstream(kind).with_cause(error)
}

/// Turns an error of a connection driven in the request's task into a proxy error.
fn classify_hyper(error: hyper::Error) -> ProxyError {
    if causes(&error).iter().any(|cause| cause.downcast_ref::<BodyTimeout>() == Some(&BodyTimeout::Request)) {
        return ProxyError::client(ErrorKind::Timeout).with_context("reading the request body").with_cause(error);
    }
    let kind = if error.is_timeout() {
        ErrorKind::Timeout
    } else if error.is_parse() || error.is_parse_status() || error.is_parse_too_large() {
        ErrorKind::Protocol
    } else {
        ErrorKind::Closed
    };
    ProxyError::upstream(kind).with_cause(error)
}

fn classify_kind(error: &hyper_util::client::legacy::Error) -> ErrorKind {
    let causes = causes(error);
    let io_kind = causes.iter().find_map(|cause| cause.downcast_ref::<std::io::Error>().map(std::io::Error::kind));
    if causes.iter().any(|cause| cause.is::<rustls::Error>()) {
        return ErrorKind::Tls;
    }
    if error.is_connect() {
        return match io_kind {
            Some(std::io::ErrorKind::ConnectionRefused) => ErrorKind::ConnectRefused,
            Some(std::io::ErrorKind::TimedOut) => ErrorKind::ConnectTimeout,
            _ => ErrorKind::Connect,
        };
    }
    let hyper_error = causes.iter().find_map(|cause| cause.downcast_ref::<hyper::Error>());
    match hyper_error {
        Some(error) if error.is_timeout() => ErrorKind::Timeout,
        Some(error) if error.is_parse() || error.is_parse_status() || error.is_parse_too_large() => ErrorKind::Protocol,
        _ => ErrorKind::Closed,
    }
}

/// The error and every cause below it, looking inside `io::Error` wrappers (whose `source`
/// skips the wrapped error itself).
fn causes<'a>(error: &'a (dyn std::error::Error + 'static)) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut found = Vec::new();
    let mut pending = vec![error];
    while let Some(error) = pending.pop() {
        if found.len() > 32 {
            break;
        }
        found.push(error);
        if let Some(inner) = error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            pending.push(inner);
        }
        if let Some(source) = error.source() {
            pending.push(source);
        }
    }
    found
}

/// A response body held to the route's deadline and idle timeout: past either, it fails, and the
/// server aborts the response (Envoy resets the stream).
#[derive(Debug)]
pub struct TimedBody<B> {
    inner: B,
    deadline: Option<Pin<Box<Sleep>>>,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    /// What passing the deadline means.
    on_deadline: BodyTimeout,
}

/// Why a [`TimedBody`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyTimeout {
    /// The route's timeout ran out while the body was streaming.
    #[error("the upstream response exceeded the route timeout")]
    Deadline,
    /// No data for longer than the idle timeout.
    #[error("the upstream response was idle for too long")]
    Idle,
    /// The client's request body did not arrive within `timeout_read` of the request's start.
    #[error("the request did not arrive within timeout_read")]
    Request,
    /// The response did not complete within `timeout_write` of the request's start.
    #[error("the response did not complete within timeout_write")]
    Response,
}

impl<B> TimedBody<B> {
    /// Wraps `inner`: fails at `deadline`, or after `idle` without a frame.
    pub fn new(inner: B, deadline: Option<Instant>, idle: Option<Duration>) -> Self {
        Self {
            inner,
            deadline: deadline.map(|deadline| Box::pin(tokio::time::sleep_until(deadline))),
            idle: idle.map(|idle| (idle, Box::pin(tokio::time::sleep(idle)))),
            on_deadline: BodyTimeout::Deadline,
        }
    }

    /// A client's request body that must have arrived by `deadline` (`timeout_read`).
    pub fn request(inner: B, deadline: Instant) -> Self {
        Self { on_deadline: BodyTimeout::Request, ..Self::new(inner, Some(deadline), None) }
    }

    /// A response body that must be complete by `deadline` (`timeout_write`).
    pub fn response(inner: B, deadline: Instant) -> Self {
        Self { on_deadline: BodyTimeout::Response, ..Self::new(inner, Some(deadline), None) }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let Some((idle, sleep)) = &mut this.idle {
                sleep.as_mut().reset(Instant::now() + *idle);
            }
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(this.on_deadline.into())));
        }
        if let Some((_, sleep)) = &mut this.idle
            && sleep.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(BodyTimeout::Idle.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use http_body_util::channel::Channel;

    fn timed(
        deadline: Option<Duration>,
        idle: Option<Duration>,
    ) -> (http_body_util::channel::Sender<Bytes, BoxError>, TimedBody<Channel<Bytes, BoxError>>) {
        let (sender, channel) = Channel::new(4);
        (sender, TimedBody::new(channel, deadline.map(|d| Instant::now() + d), idle))
    }

    async fn next_error(body: &mut TimedBody<Channel<Bytes, BoxError>>) -> Option<BodyTimeout> {
        loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(error)) => return error.downcast_ref::<BodyTimeout>().copied(),
                None => return None,
            }
        }
    }

    #[tokio::test]
    async fn bodies_are_cut_at_the_deadline() {
        let (mut sender, mut body) = timed(Some(Duration::from_millis(50)), None);
        sender.send_data(Bytes::from_static(b"early")).await.unwrap();
        assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "early");
        assert_eq!(next_error(&mut body).await, Some(BodyTimeout::Deadline));
    }

    #[tokio::test]
    async fn idle_bodies_are_cut_but_busy_ones_are_not() {
        let (mut sender, mut body) = timed(None, Some(Duration::from_millis(300)));
        let feeder = tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                sender.send_data(Bytes::from_static(b"tick")).await.unwrap();
            }
            sender
        });
        for _ in 0..4 {
            assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "tick");
        }
        let _sender = feeder.await.unwrap();
        assert_eq!(next_error(&mut body).await, Some(BodyTimeout::Idle));
    }

    #[tokio::test]
    async fn untimed_bodies_end_normally() {
        let (mut sender, body) = timed(None, None);
        sender.send_data(Bytes::from_static(b"all")).await.unwrap();
        drop(sender);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "all");
    }

    #[test]
    fn equal_settings_share_a_fingerprint_and_different_ones_do_not() {
        let (chain, key) = crate::tls::self_signed(&["c.test".to_owned()]).unwrap();
        let base = UpstreamTls::default();
        let variants = [
            UpstreamTls { skip_verify: true, ..UpstreamTls::default() },
            UpstreamTls { server_name: Some("a.test".into()), ..UpstreamTls::default() },
            UpstreamTls { custom_ca: Some(chain.clone()), ..UpstreamTls::default() },
            UpstreamTls { client_auth: Some((chain, key)), ..UpstreamTls::default() },
        ];
        assert_eq!(base.fingerprint(), UpstreamTls::default().fingerprint());
        for (index, variant) in variants.iter().enumerate() {
            assert_ne!(variant.fingerprint(), base.fingerprint(), "variant {index}");
            assert_eq!(variant.fingerprint(), variant.clone().fingerprint(), "variant {index}");
            for other in variants.iter().skip(index + 1) {
                assert_ne!(variant.fingerprint(), other.fingerprint());
            }
        }
    }

    #[test]
    fn bad_tls_settings_are_configuration_errors() {
        let bad_name = UpstreamTls { server_name: Some("not a name!".into()), ..UpstreamTls::default() };
        assert!(matches!(UpstreamClient::new(&bad_name, &ClientOptions::default()), Err(TlsError::ServerName(_))));
        let bad_ca =
            UpstreamTls { custom_ca: Some(vec![CertificateDer::from(vec![1, 2, 3])]), ..UpstreamTls::default() };
        assert!(matches!(UpstreamClient::new(&bad_ca, &ClientOptions::default()), Err(TlsError::CustomCa(_))));
        let (chain, _) = crate::tls::self_signed(&["c.test".to_owned()]).unwrap();
        let (_, other_key) = crate::tls::self_signed(&["d.test".to_owned()]).unwrap();
        let mismatched = UpstreamTls { client_auth: Some((chain, other_key)), ..UpstreamTls::default() };
        assert!(matches!(client_config(&mismatched), Err(TlsError::Key(_))));
    }
}
