//! The proxy's own pipeline in process: a [`Runtime`] built from a configuration text the way the
//! binary builds it (`config::load`, then [`Runtime::build`]), served by `proxy::server` with
//! `proxy::pipeline::handle` on a free port. The certificates, upstreams and clients are the
//! workspace's (`test-support`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "test support")]
#![allow(dead_code, reason = "each test uses a part of the support")]

use std::net::SocketAddr;
use std::sync::Arc;

use authn::{Authenticator, SignInState};
use base64::Engine as _;
use hyper::body::Incoming;
use proxy::authn::Authn;
use proxy::runtime::{Environment, Runtime, SharedRecords};
use proxy::server::{ConnectionInfo, ServerOptions, Shutdown};
use proxy::tls::{DownstreamClientAuth, ServerTls, SniResolver, certified_key};
use proxy::upstream::{ClientOptions, UpstreamClients};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use test_support::*;

/// The runtime for `yaml`, as the binary builds it (in process: no authorize service, no
/// databroker, sign-in by `authn`; fixed secrets when the text has none).
pub fn runtime(yaml: &str) -> Runtime {
    let loaded = config::load(yaml, config::Format::Yaml, &config::env::Empty);
    let errors: Vec<String> = loaded.errors.iter().map(|e| e.diagnostic.to_string()).collect();
    let config = loaded.config.filter(|_| errors.is_empty()).unwrap_or_else(|| panic!("bad config: {errors:?}"));
    let environment = Environment {
        fallback_shared_key: vec![7; 32],
        fallback_cookie_key: vec![8; 32],
        records: SharedRecords::default(),
        authn: Arc::new(Authn::new(Arc::new(Authenticator(Arc::new(SignInState::new(None)))))),
        remote_authorize: None,
        clients: Arc::new(UpstreamClients::new(ClientOptions::default())),
    };
    Runtime::build(&config, &environment).unwrap_or_else(|e| panic!("the configuration cannot run: {e}"))
}

/// A running listener.
pub struct RunningProxy {
    pub address: SocketAddr,
    pub shutdown: Shutdown,
    pub task: JoinHandle<()>,
}

/// Serves `yaml`'s routes with the real pipeline (`proxy::pipeline::handle`) on a free port.
pub async fn serve(yaml: &str, tls: Option<ServerTls>, options: ServerOptions) -> RunningProxy {
    let runtime = Arc::new(runtime(yaml));
    // The one place the tests call the pipeline.
    let handler = move |request: hyper::Request<Incoming>, connection: Arc<ConnectionInfo>| {
        proxy::pipeline::handle(Arc::clone(&runtime), request, connection)
    };
    spawn_server(tls, handler, options).await
}

/// Starts `proxy::server::serve` with `handler` on a free port (for what the server does
/// whatever the handler: TLS, limits, shutdown).
pub async fn spawn_server<H: proxy::server::Handler>(
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

/// The proxy's TLS: a certificate from `pki` for each set of `names` (the first is the default),
/// perhaps asking for client certificates.
pub fn proxy_tls(pki: &Pki, names: &[&[&str]], client_auth: Option<&DownstreamClientAuth>) -> ServerTls {
    let keys: Vec<_> = names
        .iter()
        .map(|names| {
            let (chain, key) = pki.issue(names).pair();
            certified_key(chain, key).unwrap()
        })
        .collect();
    ServerTls::new(Arc::new(SniResolver::new(&keys).unwrap()), client_auth).unwrap()
}

/// A route from `https://{host}` to `to`, open to anyone, with `fields` (YAML lines, unindented).
pub fn public_route(host: &str, to: &str, fields: &str) -> String {
    let mut item = format!("  - from: https://{host}\n    to: {to}\n    allow_public_unauthenticated_access: true\n");
    for line in fields.lines() {
        item.push_str("    ");
        item.push_str(line);
        item.push('\n');
    }
    item
}

/// A configuration with these routes.
pub fn config(routes: &[String]) -> String {
    format!("authenticate_service_url: https://authenticate.test\nroutes:\n{}", routes.concat())
}

pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A new connection to a TLS proxy (trusting `pki`, with `sni`), HTTP/2.
pub async fn h2(proxy: &RunningProxy, pki: &Pki, sni: &str) -> H2 {
    H2::handshake(tls_connect(proxy.address, client_tls(&pki.ca(), &[b"h2"], None), sni).await).await
}

/// A new connection to a TLS proxy (trusting `pki`, with `sni`), HTTP/1.1.
pub async fn h1(proxy: &RunningProxy, pki: &Pki, sni: &str) -> H1 {
    H1::handshake(tls_connect(proxy.address, client_tls(&pki.ca(), &[b"http/1.1"], None), sni).await).await
}
