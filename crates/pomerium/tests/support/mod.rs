//! Real parts for the server's tests: the `pomerium` binary run with a configuration file in a
//! temporary directory (its JSON logs read from stderr, killed when dropped), a test CA made by
//! rcgen, hyper upstreams on 127.0.0.1 (plain, TLS, client-certificate-checking), and clients over
//! TLS that speak HTTP/1.1 or HTTP/2 on connections the test holds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test support"
)]
#![allow(dead_code, reason = "each test file uses a part of the support")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::Request;
use http::header::HOST;
use proxy::body::ProxyBody;
use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;

pub use test_support::*;

pub mod browser;

/// The shared secret every test configuration uses (32 bytes of 7), and its base64.
pub const SHARED_KEY: [u8; 32] = [7; 32];

pub fn shared_secret_base64() -> String {
    base64::engine::general_purpose::STANDARD.encode(SHARED_KEY)
}

pub fn base64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

// ---------------------------------------------------------------------------------------------
// The server process

/// A temporary directory with a test CA and a certificate for `*.test.localhost` (and
/// `test.localhost`), the names every test route uses.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Default for Setup {
    fn default() -> Self {
        Self::new()
    }
}

impl Setup {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new("pomerium test ca");
        let leaf = pki.issue(&["*.test.localhost", "test.localhost"]);
        let cert_path = dir.path().join("server.pem");
        let key_path = dir.path().join("server-key.pem");
        std::fs::write(&cert_path, &leaf.cert_pem).unwrap();
        std::fs::write(&key_path, &leaf.key_pem).unwrap();
        Self { dir, pki, cert_path, key_path }
    }

    /// Writes a file in the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// The options every test shares: listeners on free ports, the test certificate, a known
    /// shared secret, an authenticate service URL. `rest` adds options and routes.
    pub fn config(&self, rest: &str) -> String {
        format!(
            "address: 127.0.0.1:0\n\
             health_check_addr: 127.0.0.1:0\n\
             shared_secret: {}\n\
             cookie_secret: {}\n\
             authenticate_service_url: https://authenticate.test.localhost\n\
             certificates:\n  - cert: {}\n    key: {}\n\
             {rest}",
            shared_secret_base64(),
            shared_secret_base64(),
            self.cert_path.display(),
            self.key_path.display(),
        )
    }

    /// Writes `config.yaml` with [`Setup::config`] and starts the server.
    pub async fn start(&self, rest: &str) -> Pomerium {
        self.start_raw(&self.config(rest)).await
    }

    /// Writes `config.yaml` as given and starts the server.
    pub async fn start_raw(&self, text: &str) -> Pomerium {
        std::fs::write(self.config_path(), text).unwrap();
        Pomerium::spawn(&self.config_path(), self.pki.ca()).await
    }

    /// Replaces `config.yaml` atomically (write then rename), so that the watcher never reads
    /// half a file.
    pub fn rewrite_config(&self, text: &str) {
        let staging = self.dir.path().join("config.yaml.new");
        std::fs::write(&staging, text).unwrap();
        std::fs::rename(&staging, self.config_path()).unwrap();
    }
}

/// What the gRPC listener logs.
pub const GRPC_LOG: &str = "serving gRPC";

/// A databroker-only process on a PostgreSQL at `postgres_url` (its configuration written as
/// `name`), and a client of it.
pub async fn databroker_process(
    setup: &Setup,
    name: &str,
    postgres_url: &str,
) -> (Pomerium, databroker::client::Broker) {
    let config = setup.write(
        name,
        &format!(
            "services: databroker\n\
             grpc_address: 127.0.0.1:0\n\
             grpc_insecure: true\n\
             health_check_addr: 127.0.0.1:0\n\
             shared_secret: {}\n\
             databroker_storage_type: postgres\n\
             databroker_storage_connection_string: \"{postgres_url}\"\n",
            shared_secret_base64()
        ),
    );
    let process = Pomerium::spawn_until(&config, setup.pki.ca(), GRPC_LOG).await;
    let auth = databroker::auth::ServiceAuth::new(&SHARED_KEY);
    let broker = databroker::client::Broker::remote(&format!("http://{}", process.address), auth).unwrap();
    (process, broker)
}

/// Runs the binary on `text` (written as `config.yaml`), which it must refuse: it exits with a
/// failure within a bounded time; its stderr.
pub fn refused(setup: &Setup, text: &str) -> String {
    std::fs::write(setup.config_path(), text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pomerium"))
        .arg("--config")
        .arg(setup.config_path())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + 2 * PROMPTLY;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pomerium did not refuse the configuration:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    stderr
}

/// A running `pomerium` process; killed when dropped.
pub struct Pomerium {
    child: Child,
    /// Its stderr: JSON lines (and any plain line before logging started).
    log: Arc<test_support::process::Log>,
    /// The main (TLS) listener's address.
    pub address: SocketAddr,
    /// The CA the test clients trust.
    pub ca: CertificateDer<'static>,
}

impl Drop for Pomerium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pomerium {
    /// Starts the binary with `--config path` and waits until it serves.
    pub async fn spawn(path: &Path, ca: CertificateDer<'static>) -> Pomerium {
        Pomerium::spawn_until(path, ca, "serving").await
    }

    /// Starts the binary and waits for the listener logged with `message`; its address becomes
    /// [`Pomerium::address`].
    pub async fn spawn_until(path: &Path, ca: CertificateDer<'static>, message: &str) -> Pomerium {
        Pomerium::spawn_with(path, ca, message, &[]).await
    }

    /// [`Pomerium::spawn_until`] with extra environment variables.
    pub async fn spawn_with(path: &Path, ca: CertificateDer<'static>, message: &str, env: &[(&str, &str)]) -> Pomerium {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pomerium"));
        // Only what the test sets: option variables (ADDRESS, POLICY, ...) must not leak in.
        command.arg("--config").arg(path).env_clear();
        for kept in ["LLVM_PROFILE_FILE", "RUST_BACKTRACE"] {
            if let Ok(value) = std::env::var(kept) {
                command.env(kept, value);
            }
        }
        for (name, value) in env {
            command.env(name, value);
        }
        command.env("POMERIUM_LOG_FORMAT", "json").env("POMERIUM_WATCH_INTERVAL_MS", "50");
        let (child, log) = test_support::process::Log::spawn(&mut command, "the pomerium binary");
        let mut server = Pomerium { child, log, address: "0.0.0.0:0".parse().unwrap(), ca };
        server.address = server.listener(message).await;
        server
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.log.lines()
    }

    /// The log lines so far as JSON (lines that are not JSON are skipped).
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.log.json()
    }

    /// How many log lines have `message` so far.
    pub fn count_logs(&self, message: &str) -> usize {
        self.json_logs().iter().filter(|line| line["fields"]["message"] == message).count()
    }

    /// Waits for the `skip`+1-th log line whose message is `message`, failing if the process
    /// exits or it takes too long.
    pub async fn wait_for_log_after(&mut self, message: &str, skip: usize) -> serde_json::Value {
        let what = format!("{message:?} from pomerium");
        self.log.wait_for(&mut self.child, &what, PROMPTLY, skip, |line| line["fields"]["message"] == message).await
    }

    /// Waits for a log line whose message is `message`.
    pub async fn wait_for_log(&mut self, message: &str) -> serde_json::Value {
        self.wait_for_log_after(message, 0).await
    }

    /// The address a listener logged with `message` (`serving`, `serving metrics`, ...).
    pub async fn listener(&mut self, message: &str) -> SocketAddr {
        let line = self.wait_for_log(message).await;
        line["fields"]["address"].as_str().unwrap().parse().unwrap()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Fails the test, with the log, if the process has exited.
    pub fn assert_running(&mut self) {
        assert!(self.is_running(), "pomerium is no longer running:\n{}", self.logs().join("\n"));
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (with the shell's `kill`: no libc in the tests).
    pub fn terminate(&self) {
        let status = Command::new("sh").arg("-c").arg(format!("kill -TERM {}", self.pid())).status().unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PROMPTLY;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Its last lines may still be on their way to the reader: wait for the end of
                // stderr (bounded), so that what it said before exiting can be read.
                while !self.log.ended() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                return status;
            }
            assert!(Instant::now() < deadline, "pomerium did not exit:\n{}", self.logs().join("\n"));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A client configuration trusting the test CA.
    pub fn client_tls(&self, alpn: &[&[u8]]) -> ClientConfig {
        client_tls(&self.ca, alpn, None)
    }

    /// A TLS connection to the main listener with `sni`.
    pub async fn tls(&self, sni: &str, config: ClientConfig) -> tokio_rustls::client::TlsStream<TcpStream> {
        tls_connect(self.address, config, sni).await
    }

    /// A new HTTP/1.1 connection over TLS with `sni`.
    pub async fn h1(&self, sni: &str) -> H1 {
        H1::handshake(self.tls(sni, self.client_tls(&[b"http/1.1"])).await).await
    }

    /// A new HTTP/2 connection over TLS with `sni`.
    pub async fn h2(&self, sni: &str) -> H2 {
        H2::handshake(self.tls(sni, self.client_tls(&[b"h2"])).await).await
    }

    /// Sends `request` (origin-form URI, `Host` header) on a new HTTP/1.1 connection whose SNI is
    /// the host, when it is one of the certificate's names, else `app.test.localhost`.
    pub async fn fetch(&self, request: Request<ProxyBody>) -> Reply {
        let host = request.headers().get(HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        let mut connection = self.h1(&sni_for(host)).await;
        connection.fetch(request).await
    }

    /// GET `path` on `host` on a new HTTP/1.1 connection.
    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.fetch(get(host, path)).await
    }
}

/// The SNI to use for a host: its name when the test certificate covers it.
pub fn sni_for(host: &str) -> String {
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    if name.ends_with(".test.localhost") { name.to_owned() } else { "app.test.localhost".to_owned() }
}

/// Writes `bytes` on a new TLS connection with `sni` and reads what comes back
/// ([`test_support::raw_exchange`]).
pub async fn raw_exchange(server: &Pomerium, sni: &str, bytes: &[u8]) -> String {
    test_support::raw_exchange(server.tls(sni, server.client_tls(&[b"http/1.1"])).await, bytes).await
}

/// Writes `bytes` on a new TLS connection and reads everything until the server closes it.
pub async fn raw_exchange_until_close(server: &Pomerium, sni: &str, bytes: &[u8]) -> String {
    test_support::raw_exchange_until_close(server.tls(sni, server.client_tls(&[b"http/1.1"])).await, bytes).await
}

// ---------------------------------------------------------------------------------------------
// Configuration text

/// One item of `routes:`: `from: https://{name}.test.localhost`, then `fields` (YAML, one field
/// per line, unindented).
pub fn route(name: &str, fields: &str) -> String {
    let mut item = format!("  - from: https://{name}.test.localhost\n");
    for line in fields.lines() {
        item.push_str("    ");
        item.push_str(line);
        item.push('\n');
    }
    item
}

/// A route open to anyone: [`route`] with `allow_public_unauthenticated_access: true`.
pub fn public(name: &str, fields: &str) -> String {
    route(name, &format!("{fields}\nallow_public_unauthenticated_access: true"))
}

/// The sign-in tests' route: identity headers passed upstream, users of `example.com` allowed.
pub fn example_com_route(name: &str, upstream: SocketAddr) -> String {
    let policy = "policy:\n  allow:\n    and:\n      - domain:\n          is: example.com";
    route(name, &format!("to: http://{upstream}\npass_identity_headers: true\n{policy}"))
}

/// A Check as Envoy builds it for Pomerium: headers only (`headers`, with `:authority`), no route
/// id, the client at `peer`, an HTTP/1.1 request for `https://{host}{path}`.
pub fn envoy_check(
    peer: &str,
    host: &str,
    path: &str,
    headers: impl IntoIterator<Item = (String, String)>,
) -> ext_authz::CheckRequest {
    use ext_authz::wire;
    let address = wire::SocketAddress {
        protocol: 0,
        address: peer.to_owned(),
        port_specifier: Some(wire::socket_address::PortSpecifier::PortValue(51000)),
    };
    ext_authz::CheckRequest {
        attributes: Some(wire::AttributeContext {
            source: Some(wire::attribute_context::Peer {
                address: Some(wire::Address { address: Some(wire::address::Address::SocketAddress(address)) }),
                ..Default::default()
            }),
            request: Some(wire::attribute_context::Request {
                time: None,
                http: Some(wire::attribute_context::HttpRequest {
                    id: "envoy-request-1".to_owned(),
                    method: "GET".to_owned(),
                    headers: headers.into_iter().collect(),
                    path: path.to_owned(),
                    host: host.to_owned(),
                    scheme: "https".to_owned(),
                    protocol: "HTTP/1.1".to_owned(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    }
}

/// `routes:` with these items.
pub fn routes(items: &[String]) -> String {
    format!("routes:\n{}", items.concat())
}

impl Pomerium {
    /// `{name}.test.localhost:{port}`: the Host a client of the route sends.
    pub fn host(&self, name: &str) -> String {
        format!("{name}.test.localhost:{}", self.address.port())
    }
}

/// Verifies an ES256 JWT against a JWKS document independently of the server's code (the JWK's x
/// and y as an uncompressed P-256 point, checked by aws-lc-rs); the claims.
pub fn verify_es256(jwt: &str, jwks: &serde_json::Value) -> serde_json::Value {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let key =
        jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).expect("the kid is published");
    let mut point = vec![4u8];
    point.extend(b64.decode(key["x"].as_str().unwrap()).unwrap());
    point.extend(b64.decode(key["y"].as_str().unwrap()).unwrap());
    let public = aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED, point);
    let signed = format!("{}.{}", parts[0], parts[1]);
    public.verify(signed.as_bytes(), &b64.decode(parts[2]).unwrap()).expect("the assertion verifies against the JWKS");
    serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap()
}
