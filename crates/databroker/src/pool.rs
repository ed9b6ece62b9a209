//! A gRPC transport over every address of every URL of a service (seed 001's topology:
//! `authorize_service_urls`, `databroker_service_urls`, names that resolve to several
//! instances). One lazily connecting channel per address; requests go round robin over the
//! addresses not ejected; an address whose call fails at the transport is ejected for a while and
//! then tried again; names are resolved again periodically, so instances that come and go are
//! followed. A caller that may repeat its call (authorize's `Check`) retries a transport failure
//! on the next address ([`is_transport_failure`]).
//!
//! TLS: each address is dialled directly, but the handshake names the URL's host (SNI and
//! certificate verification), as a client of that URL would.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tonic::codegen::Service;
use tonic::codegen::http::{Request, Response, Uri};
use tonic::transport::{Channel, Endpoint};

use crate::client::RemoteOptions;

/// How long an address that failed is left alone before it is tried again.
const EJECTED_FOR: Duration = Duration::from_secs(3);
/// How often names are resolved again (Envoy's default `dns_refresh_rate`).
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Which addresses of a name to use (`dns_lookup_family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// IPv4 and IPv6 (Envoy's `ALL`; also `AUTO` and `V4_PREFERRED` here, which keep both and
    /// let failures move requests on).
    #[default]
    All,
    V4Only,
    V6Only,
}

impl Family {
    fn keeps(self, address: &SocketAddr) -> bool {
        match self {
            Family::All => true,
            Family::V4Only => address.is_ipv4(),
            Family::V6Only => address.is_ipv6(),
        }
    }
}

/// One URL of the service.
#[derive(Debug)]
struct Target {
    /// The URL as given (scheme, host, port), which endpoints keep as their URI.
    uri: Uri,
    host: String,
    port: u16,
    /// The host is an address: nothing to resolve.
    literal: Option<IpAddr>,
}

/// One address of one target, with its channel.
#[derive(Debug)]
struct Member {
    target: usize,
    address: SocketAddr,
    channel: Channel,
    ejected_until: Mutex<Option<Instant>>,
}

impl Member {
    fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.lock().unwrap_or_else(PoisonError::into_inner).is_some_and(|until| until > now)
    }
}

#[derive(Debug)]
struct Inner {
    what: String,
    targets: Vec<Target>,
    options: RemoteOptions,
    family: Family,
    members: RwLock<Vec<Arc<Member>>>,
    next: AtomicUsize,
    /// Whether the names have been resolved once (calls before that wait for it, briefly).
    resolved: tokio::sync::watch::Sender<bool>,
}

/// How long a call waits for the first resolution of the names.
const FIRST_RESOLUTION_WAIT: Duration = Duration::from_secs(5);

/// A cheaply cloned transport for a tonic client over every address of `urls`.
#[derive(Debug, Clone)]
pub struct GrpcPool(Arc<Inner>);

/// The error of a call that failed at the transport (the address was ejected).
#[derive(Debug, thiserror::Error)]
#[error("{what} at {address}: {source}")]
pub struct TransportFailure {
    what: String,
    address: SocketAddr,
    #[source]
    source: tonic::transport::Error,
}

/// No address to call: every name failed to resolve, or resolved to nothing usable.
#[derive(Debug, thiserror::Error)]
#[error("{0}: no address to connect to (its names did not resolve)")]
pub struct NoAddress(String);

/// Whether a call's status says the transport failed (so that the call may go to another
/// address): our own transport failure, or `Unavailable`.
pub fn is_transport_failure(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable
        || std::error::Error::source(status)
            .is_some_and(|source| source.is::<TransportFailure>() || source.is::<NoAddress>())
}

/// Resolves `host:port` to its addresses (the system resolver: `/etc/hosts`, DNS).
pub type Resolver = Arc<dyn Fn(String, u16) -> Pin<Box<dyn Future<Output = Vec<SocketAddr>> + Send>> + Send + Sync>;

/// The system resolver.
pub fn system_resolver() -> Resolver {
    Arc::new(|host: String, port: u16| {
        Box::pin(async move {
            match tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((host.as_str(), port))).await {
                Ok(Ok(addresses)) => addresses.collect(),
                Ok(Err(error)) => {
                    tracing::warn!(%host, %error, "resolving a service name");
                    Vec::new()
                }
                Err(_) => {
                    tracing::warn!(%host, "resolving a service name timed out");
                    Vec::new()
                }
            }
        })
    })
}

impl GrpcPool {
    /// A pool over `urls` (each `http://` or `https://`), with its names resolved before it
    /// returns, and again every few seconds from then on (in a task that ends when the last
    /// clone is dropped).
    pub async fn new(
        what: &str,
        urls: &[String],
        options: &RemoteOptions,
        family: Family,
        resolver: Resolver,
    ) -> Result<GrpcPool, String> {
        let (pool, names) = GrpcPool::build(what, urls, options, family)?;
        if names {
            refresh(&pool.0, &resolver).await;
            pool.follow(resolver, false);
        }
        Ok(pool)
    }

    /// [`GrpcPool::new`] without waiting: addresses given as such are used at once, names as soon
    /// as they resolve (a call before that fails as the transport, and is retried by the caller).
    /// Needs a Tokio runtime when a URL names a host.
    pub fn start(
        what: &str,
        urls: &[String],
        options: &RemoteOptions,
        family: Family,
        resolver: Resolver,
    ) -> Result<GrpcPool, String> {
        let (pool, names) = GrpcPool::build(what, urls, options, family)?;
        if names {
            pool.follow(resolver, true);
        }
        Ok(pool)
    }

    /// The pool with its literal addresses, and whether any URL names a host.
    fn build(what: &str, urls: &[String], options: &RemoteOptions, family: Family) -> Result<(GrpcPool, bool), String> {
        if urls.is_empty() {
            return Err(format!("{what}: no URL"));
        }
        let targets = urls.iter().map(|url| target(what, url)).collect::<Result<Vec<_>, _>>()?;
        // Check the TLS settings once, so that a bad CA is an error now rather than per address.
        if targets.iter().any(|t| t.uri.scheme_str() == Some("https")) {
            crate::client::tls_client_config(options)?;
        }
        let names = targets.iter().any(|t| t.literal.is_none());
        let inner = Arc::new(Inner {
            what: what.to_owned(),
            targets,
            options: options.clone(),
            family,
            members: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
            resolved: tokio::sync::watch::Sender::new(!names),
        });
        let literals: Vec<(usize, SocketAddr)> = inner
            .targets
            .iter()
            .enumerate()
            .filter_map(|(index, t)| t.literal.map(|ip| (index, SocketAddr::new(ip, t.port))))
            .filter(|(_, address)| family.keeps(address))
            .collect();
        apply(&inner, literals);
        Ok((GrpcPool(inner), names))
    }

    /// Resolves the names again every few seconds (at once first, when `now`), for as long as
    /// the pool lives.
    fn follow(&self, resolver: Resolver, now: bool) {
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            if !now {
                tokio::time::sleep(REFRESH_EVERY).await;
            }
            loop {
                let Some(inner) = weak.upgrade() else { return };
                refresh(&inner, &resolver).await;
                drop(inner);
                tokio::time::sleep(REFRESH_EVERY).await;
            }
        });
    }

    /// The addresses in use now.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.0.members.read().unwrap_or_else(PoisonError::into_inner).iter().map(|m| m.address).collect()
    }

    /// The next member: round robin over those not ejected; when all are, the one whose
    /// ejection ends first (a request still tries rather than fail without trying).
    fn pick(&self) -> Option<Arc<Member>> {
        let members = self.0.members.read().unwrap_or_else(PoisonError::into_inner);
        if members.is_empty() {
            return None;
        }
        let now = Instant::now();
        let start = self.0.next.fetch_add(1, Ordering::Relaxed);
        let count = members.len();
        (0..count)
            .filter_map(|offset| members.get((start + offset) % count))
            .find(|member| !member.is_ejected(now))
            .or_else(|| members.iter().min_by_key(|m| *m.ejected_until.lock().unwrap_or_else(PoisonError::into_inner)))
            .cloned()
    }
}

fn target(what: &str, url: &str) -> Result<Target, String> {
    let uri: Uri = url.trim_end_matches('/').parse().map_err(|e| format!("invalid {what} URL `{url}`: {e}"))?;
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        Some("http") => 80,
        _ => return Err(format!("{what} URL `{url}`: the scheme must be `http://` or `https://`")),
    };
    let host = uri.host().ok_or_else(|| format!("{what} URL `{url}`: no host"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    Ok(Target { literal: bare.parse().ok(), host: bare.to_owned(), port: uri.port_u16().unwrap_or(default_port), uri })
}

/// Resolves every target and brings the members in line: new addresses get a channel, gone
/// ones are dropped, the others keep theirs (and their ejection).
async fn refresh(inner: &Inner, resolver: &Resolver) {
    let mut wanted: Vec<(usize, SocketAddr)> = Vec::new();
    for (index, target) in inner.targets.iter().enumerate() {
        let addresses = match target.literal {
            Some(ip) => vec![SocketAddr::new(ip, target.port)],
            None => resolver(target.host.clone(), target.port).await,
        };
        let kept: Vec<SocketAddr> = addresses.into_iter().filter(|a| inner.family.keeps(a)).collect();
        if kept.is_empty() {
            // Keep what this target had: a resolver failure does not empty the pool.
            let members = inner.members.read().unwrap_or_else(PoisonError::into_inner);
            wanted.extend(members.iter().filter(|m| m.target == index).map(|m| (index, m.address)));
            continue;
        }
        for address in kept {
            if !wanted.contains(&(index, address)) {
                wanted.push((index, address));
            }
        }
    }
    apply(inner, wanted);
    inner.resolved.send_replace(true);
}

/// Makes the members those of `wanted`: new addresses get a channel, the others keep theirs.
fn apply(inner: &Inner, wanted: Vec<(usize, SocketAddr)>) {
    let current: Vec<Arc<Member>> = inner.members.read().unwrap_or_else(PoisonError::into_inner).clone();
    if current.len() == wanted.len() && current.iter().all(|m| wanted.contains(&(m.target, m.address))) {
        return;
    }
    let mut members = Vec::with_capacity(wanted.len());
    for (index, address) in wanted {
        if let Some(member) = current.iter().find(|m| m.target == index && m.address == address) {
            members.push(Arc::clone(member));
            continue;
        }
        let Some(target) = inner.targets.get(index) else { continue };
        match channel(&inner.what, target, address, &inner.options) {
            Ok(channel) => {
                members.push(Arc::new(Member { target: index, address, channel, ejected_until: Mutex::new(None) }))
            }
            Err(error) => tracing::warn!(%error, "a service address is left out"),
        }
    }
    tracing::info!(
        service = %inner.what,
        addresses = ?members.iter().map(|m| m.address).collect::<Vec<_>>(),
        "service addresses"
    );
    *inner.members.write().unwrap_or_else(PoisonError::into_inner) = members;
}

/// A lazy channel to `address` that speaks to it as `target`'s URL.
fn channel(what: &str, target: &Target, address: SocketAddr, options: &RemoteOptions) -> Result<Channel, String> {
    let endpoint = Endpoint::from(target.uri.clone())
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let dial = Dial(address);
    match target.uri.scheme_str() {
        Some("https") => {
            let config = crate::client::tls_client_config(options)?;
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_only()
                .enable_http2()
                .wrap_connector(dial);
            Ok(endpoint.connect_with_connector_lazy(connector))
        }
        Some("http") => Ok(endpoint.connect_with_connector_lazy(dial)),
        _ => Err(format!("{what}: the scheme must be `http://` or `https://`")),
    }
}

/// Connects to one address whatever the URI names (the URI still names the host for TLS).
#[derive(Debug, Clone, Copy)]
struct Dial(SocketAddr);

impl Service<Uri> for Dial {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let address = self.0;
        Box::pin(async move {
            let stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(address))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    }
}

type Body = tonic::body::Body;

impl Service<Request<Body>> for GrpcPool {
    type Response = Response<Body>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call readies the channel it picks.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let pool = self.clone();
        Box::pin(async move {
            let what = pool.0.what.clone();
            let mut picked = pool.pick();
            if picked.is_none() {
                // Started a moment ago: wait (briefly) for the names to resolve.
                let mut resolved = pool.0.resolved.subscribe();
                let _ = tokio::time::timeout(FIRST_RESOLUTION_WAIT, resolved.wait_for(|done| *done)).await;
                picked = pool.pick();
            }
            let Some(member) = picked else {
                return Err(tonic::Status::unavailable(NoAddress(what).to_string()).into());
            };
            let mut channel = member.channel.clone();
            let outcome = match std::future::poll_fn(|cx| channel.poll_ready(cx)).await {
                Ok(()) => channel.call(request).await,
                Err(error) => Err(error),
            };
            match outcome {
                Ok(response) => {
                    *member.ejected_until.lock().unwrap_or_else(PoisonError::into_inner) = None;
                    Ok(response)
                }
                Err(source) => {
                    tracing::warn!(service = %what, address = %member.address, error = %source, "a service address failed; it is left alone for a while");
                    *member.ejected_until.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(Instant::now() + EJECTED_FOR);
                    let failure = TransportFailure { what, address: member.address, source };
                    // As a status, so that callers see `Unavailable` (their cue to try again).
                    let status = tonic::Status::try_from_error(Box::new(failure))
                        .unwrap_or_else(|failure| tonic::Status::unavailable(failure.to_string()));
                    Err(status.into())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn resolver(answers: Arc<Mutex<Vec<SocketAddr>>>) -> Resolver {
        Arc::new(move |_, _| {
            let answer = answers.lock().unwrap().clone();
            Box::pin(async move { answer })
        })
    }

    fn address(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn a_name_is_every_address_it_resolves_to_and_follows_changes() {
        let answers = Arc::new(Mutex::new(vec![address("127.0.0.1:9"), address("[::1]:9")]));
        let urls = ["http://authorize.internal:9".to_owned(), "http://10.0.0.7:9".to_owned()];
        let pool =
            GrpcPool::new("authorize", &urls, &RemoteOptions::default(), Family::All, resolver(Arc::clone(&answers)))
                .await
                .unwrap();
        assert_eq!(pool.addresses(), [address("127.0.0.1:9"), address("[::1]:9"), address("10.0.0.7:9")]);
        // Round robin over all of them.
        let picks: Vec<SocketAddr> = (0..6).map(|_| pool.pick().unwrap().address).collect();
        for a in pool.addresses() {
            assert_eq!(picks.iter().filter(|p| **p == a).count(), 2, "{a} in {picks:?}");
        }
        // An ejected address is skipped until its time is up.
        let first = pool.pick().unwrap();
        *first.ejected_until.lock().unwrap() = Some(Instant::now() + Duration::from_secs(60));
        assert!((0..6).all(|_| pool.pick().unwrap().address != first.address));
        // The name now resolves to one new address: the members follow, the literal stays.
        *answers.lock().unwrap() = vec![address("127.0.0.2:9")];
        refresh(&pool.0, &resolver(Arc::clone(&answers))).await;
        assert_eq!(pool.addresses(), [address("127.0.0.2:9"), address("10.0.0.7:9")]);
        // A failed resolution keeps what the name had.
        answers.lock().unwrap().clear();
        refresh(&pool.0, &resolver(Arc::clone(&answers))).await;
        assert_eq!(pool.addresses(), [address("127.0.0.2:9"), address("10.0.0.7:9")]);
    }

    #[tokio::test]
    async fn the_lookup_family_filters_addresses() {
        let answers = Arc::new(Mutex::new(vec![address("127.0.0.1:9"), address("[::1]:9")]));
        let urls = ["http://authorize.internal:9".to_owned()];
        let v6 = GrpcPool::new(
            "authorize",
            &urls,
            &RemoteOptions::default(),
            Family::V6Only,
            resolver(Arc::clone(&answers)),
        )
        .await
        .unwrap();
        assert_eq!(v6.addresses(), [address("[::1]:9")]);
        let v4 = GrpcPool::new("authorize", &urls, &RemoteOptions::default(), Family::V4Only, resolver(answers))
            .await
            .unwrap();
        assert_eq!(v4.addresses(), [address("127.0.0.1:9")]);
    }

    #[tokio::test]
    async fn bad_urls_are_refused_with_the_url() {
        let error = GrpcPool::new(
            "authorize",
            &["ftp://x".to_owned()],
            &RemoteOptions::default(),
            Family::All,
            system_resolver(),
        )
        .await
        .unwrap_err();
        assert!(error.contains("ftp://x") && error.contains("scheme"), "{error}");
    }
}
