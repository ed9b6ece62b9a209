//! The request path in process: arbitrary HTTP/1.1 requests (method, target, host, headers, body
//! framing, and whatever bytes follow) parsed by hyper and answered by `proxy::pipeline::handle`
//! on a runtime built from a configuration with every kind of route (public and protected
//! forwards, a redirect, a direct response, a TCP tunnel). Each exchange must end without a panic
//! and within a bound (bad input never hangs a connection), and every answer must be HTTP.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use authn::{Authenticator, SignInState};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use proxy::authn::Authn;
use proxy::runtime::{Environment, Runtime, SharedRecords};
use proxy::server::{ConnectionInfo, TlsInfo};
use proxy::upstream::{ClientOptions, UpstreamClients};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Nothing listens on port 9 (discard): forwards fail fast with 502.
const CONFIG: &str = r#"
authenticate_service_url: https://authenticate.test
set_response_headers: {X-Frame-Options: DENY}
routes:
  - from: https://public.test
    to: http://127.0.0.1:9
    allow_public_unauthenticated_access: true
    preserve_host_header: true
  - from: https://app.test
    prefix: /admin
    to: http://127.0.0.1:9
    prefix_rewrite: /
    policy: {allow: {and: [{email: {is: admin@example.com}}]}}
  - from: https://app.test
    regex: "^/api/v[0-9]+/.*$"
    to: [http://127.0.0.1:9, http://127.0.0.1:19]
    allow_any_authenticated_user: true
    set_request_headers: {X-Api: "1"}
  - from: https://app.test
    to: http://127.0.0.1:9
    policy: {allow: {or: [{domain: {is: example.com}}, {http_method: {is: OPTIONS}}]}}
    cors_allow_preflight: true
    allow_websockets: true
  - from: https://redirect.test
    redirect: {host_redirect: example.org, https_redirect: true, strip_query: true}
  - from: https://status.test
    response: {status: 418, body: teapot}
  - from: tcp+https://db.test:5432
    to: tcp://127.0.0.1:9
    allow_public_unauthenticated_access: true
"#;

const HOSTS: &[&str] = &[
    "public.test",
    "app.test",
    "redirect.test",
    "status.test",
    "db.test:5432",
    "authenticate.test",
    "unknown.test",
    "APP.test:443",
    "app.test.",
];
const PATHS: &[&str] = &[
    "/",
    "/admin/x",
    "/api/v1/items?x=1",
    "/.pomerium/",
    "/.pomerium/sign_in?pomerium_redirect_uri=https://app.test/",
    "/.pomerium/callback/?pomerium_state=x",
    "/.pomerium/jwt",
    "/.pomerium/sign_out",
    "/.pomerium/user",
    "/.well-known/pomerium",
    "/.well-known/pomerium/jwks.json",
    "/oauth2/callback?state=x&code=y",
    "/ping",
    "/healthz",
    "/a/%2e%2e/admin",
    "//admin",
    "*",
    "https://app.test/admin",
    "db.test:5432",
];
const NAMES: &[&str] = &[
    "cookie",
    "authorization",
    "x-pomerium-authorization",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-proto",
    "accept",
    "origin",
    "access-control-request-method",
    "expect",
    "te",
    "x-request-id",
    "traceparent",
    "sec-websocket-key",
    "sec-websocket-version",
];

#[derive(Debug, Arbitrary)]
enum Text {
    Known(u8),
    Raw(String),
}

impl Text {
    fn render(&self, known: &[&str]) -> String {
        match self {
            Text::Known(i) => known[usize::from(*i) % known.len()].to_owned(),
            Text::Raw(text) => text.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Framing {
    None,
    Length,
    WrongLength(u32),
    Chunked,
    ChunkedRaw,
}

#[derive(Debug, Arbitrary)]
struct Input {
    method: Text,
    target: Text,
    suffix: String,
    http10: bool,
    host: Option<Text>,
    headers: Vec<(Text, Vec<u8>)>,
    framing: Framing,
    body: Vec<u8>,
    trailing: Vec<u8>,
}

const METHODS: &[&str] = &["GET", "POST", "HEAD", "OPTIONS", "CONNECT", "PUT", "DELETE", "PATCH", "TRACE"];

impl Input {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let version = if self.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        let target = format!("{}{}", self.target.render(PATHS), self.suffix);
        out.extend_from_slice(format!("{} {target} {version}\r\n", self.method.render(METHODS)).as_bytes());
        if let Some(host) = &self.host {
            out.extend_from_slice(format!("host: {}\r\n", host.render(HOSTS)).as_bytes());
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.render(NAMES).as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        match &self.framing {
            Framing::None => {}
            Framing::Length => out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes()),
            Framing::WrongLength(n) => out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
            Framing::Chunked | Framing::ChunkedRaw => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        out.extend_from_slice(b"\r\n");
        match &self.framing {
            Framing::Chunked => {
                for chunk in self.body.chunks(7) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            _ => out.extend_from_slice(&self.body),
        }
        out.extend_from_slice(&self.trailing);
        out
    }
}

struct World {
    tokio: tokio::runtime::Runtime,
    runtime: Arc<Runtime>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let loaded = config::load(CONFIG, config::Format::Yaml, &config::env::Empty);
        assert!(
            loaded.errors.is_empty(),
            "{:?}",
            loaded.errors.iter().map(|e| e.diagnostic.to_string()).collect::<Vec<_>>()
        );
        let config = loaded.config.unwrap();
        let runtime = tokio.block_on(async {
            let environment = Environment {
                fallback_shared_key: vec![7; 32],
                fallback_cookie_key: vec![8; 32],
                records: SharedRecords::default(),
                authn: Arc::new(Authn::new(Arc::new(Authenticator(Arc::new(SignInState::new(None)))))),
                remote_authorize: None,
                clients: Arc::new(UpstreamClients::new(ClientOptions::default())),
            };
            Runtime::build(&config, &environment).unwrap()
        });
        World { tokio, runtime: Arc::new(runtime) }
    })
}

fuzz_target!(|input: Input| {
    let World { tokio, runtime } = world();
    let request = input.bytes();
    let sni = input.host.as_ref().map(|h| h.render(HOSTS));
    let connection = Arc::new(ConnectionInfo {
        peer: SocketAddr::from(([192, 0, 2, 1], 50000)),
        local: SocketAddr::from(([127, 0, 0, 1], 443)),
        tls: Some(TlsInfo {
            server_name: sni,
            alpn: Some(b"http/1.1".to_vec()),
            client_certificate: None,
            client_ca: None,
        }),
    });
    tokio.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let runtime = Arc::clone(runtime);
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let (runtime, connection) = (Arc::clone(&runtime), Arc::clone(&connection));
            async move { Ok::<_, std::convert::Infallible>(proxy::pipeline::handle(runtime, request, connection).await) }
        });
        let served = tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .serve_connection(TokioIo::new(server), service)
                .with_upgrades(),
        );
        let exchange = async {
            let _ = client.write_all(&request).await;
            let _ = client.shutdown().await;
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
            answer
        };
        let answer = tokio::time::timeout(Duration::from_secs(20), exchange)
            .await
            .unwrap_or_else(|_| panic!("the exchange did not end within 20 s: {:?}", String::from_utf8_lossy(&request)));
        served.abort();
        assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1."),
            "not an HTTP answer: {:?}",
            String::from_utf8_lossy(&answer)
        );
    });
});
