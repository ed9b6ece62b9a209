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

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use proxy::body::{self, ProxyBody};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

pub mod browser;

/// A generous bound for anything that should happen promptly.
pub const PROMPTLY: Duration = Duration::from_secs(10);

/// The shared secret every test configuration uses (32 bytes of 7), and its base64.
pub const SHARED_KEY: [u8; 32] = [7; 32];

pub fn shared_secret_base64() -> String {
    base64::engine::general_purpose::STANDARD.encode(SHARED_KEY)
}

pub fn base64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// A test certificate authority.
pub struct Pki {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate issued by a [`Pki`], in DER and PEM.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        Self { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    pub fn ca(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate for `names` (server or client; the first is also the common name).
    pub fn issue(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        if let Some(first) = names.first() {
            params.distinguished_name.push(rcgen::DnType::CommonName, *first);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client configuration trusting `ca`, offering `alpn`, perhaps with a client certificate.
pub fn client_tls(ca: &CertificateDer<'static>, alpn: &[&[u8]], client_cert: Option<&Leaf>) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client_cert {
        Some(leaf) => builder.with_client_auth_cert(leaf.chain.clone(), leaf.key()).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A client configuration that accepts any server certificate (to look at the one served).
pub fn accept_any_server(alpn: &[&[u8]]) -> ClientConfig {
    let mut config = proxy::upstream::client_config(&proxy::upstream::UpstreamTls {
        skip_verify: true,
        ..proxy::upstream::UpstreamTls::default()
    })
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A TLS configuration for a test upstream, perhaps requiring client certificates from `client_ca`.
pub fn upstream_tls(leaf: &Leaf, client_ca: Option<CertificateDer<'static>>) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca).unwrap();
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build().unwrap(),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(leaf.chain.clone(), leaf.key()).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
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

/// The server's log, as read from its stderr: JSON lines (and any plain line before logging
/// started).
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    /// Stderr reached its end: every line the process wrote is in `lines`.
    ended: std::sync::atomic::AtomicBool,
}

/// A running `pomerium` process; killed when dropped.
pub struct Pomerium {
    child: Child,
    log: Arc<Log>,
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
        let mut child = command
            .env("POMERIUM_LOG_FORMAT", "json")
            .env("POMERIUM_WATCH_INTERVAL_MS", "50")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the pomerium binary starts");
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lines.lock().unwrap().push(line);
            }
            sink.ended.store(true, std::sync::atomic::Ordering::Release);
        });
        let mut server = Pomerium { child, log, address: "0.0.0.0:0".parse().unwrap(), ca };
        server.address = server.listener(message).await;
        server
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.log.lines.lock().unwrap().clone()
    }

    /// The log lines so far as JSON (lines that are not JSON are skipped).
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.logs().iter().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    /// How many log lines have `message` so far.
    pub fn count_logs(&self, message: &str) -> usize {
        self.json_logs().iter().filter(|line| line["fields"]["message"] == message).count()
    }

    /// Waits for the `skip`+1-th log line whose message is `message`, failing if the process
    /// exits or it takes too long.
    pub async fn wait_for_log_after(&mut self, message: &str, skip: usize) -> serde_json::Value {
        let deadline = Instant::now() + PROMPTLY;
        loop {
            if let Some(line) =
                self.json_logs().into_iter().filter(|line| line["fields"]["message"] == message).nth(skip)
            {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader thread take the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                panic!("pomerium exited ({status}) before logging {message:?}:\n{}", self.logs().join("\n"));
            }
            assert!(Instant::now() < deadline, "no {message:?} in the log:\n{}", self.logs().join("\n"));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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
                while !self.log.ended.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < deadline {
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

pub async fn tls_connect(
    address: SocketAddr,
    config: ClientConfig,
    sni: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let stream = TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    tokio::time::timeout(PROMPTLY, tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream))
        .await
        .expect("the TLS handshake finishes")
        .expect("the TLS handshake succeeds")
}

/// A GET request with a `Host` header.
pub fn get(host: &str, path: &str) -> Request<ProxyBody> {
    request(Method::GET, host, path).body(body::empty()).unwrap()
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
    pub fn seen(&self) -> Seen {
        assert_eq!(self.status, 200, "not an upstream answer: {self:?}");
        Seen(self.json())
    }
}

/// An HTTP/1.1 connection the test holds.
pub struct H1 {
    sender: hyper::client::conn::http1::SendRequest<ProxyBody>,
    closed: tokio::sync::oneshot::Receiver<()>,
}

impl H1 {
    pub async fn handshake<I>(io: I) -> H1
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.unwrap();
        let (done, closed) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
            let _ = done.send(());
        });
        H1 { sender, closed }
    }

    pub async fn send(&mut self, request: Request<ProxyBody>) -> Response<Incoming> {
        tokio::time::timeout(PROMPTLY, self.sender.send_request(request))
            .await
            .expect("the response arrives")
            .expect("the request goes through")
    }

    pub async fn fetch(&mut self, request: Request<ProxyBody>) -> Reply {
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
    sender: hyper::client::conn::http2::SendRequest<ProxyBody>,
}

impl H2 {
    pub async fn handshake<I>(io: I) -> H2
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await.unwrap();
        tokio::spawn(connection);
        H2 { sender }
    }

    /// Sends `request`: its origin-form URI and `Host` header become `https://host/path`.
    pub async fn send(&mut self, request: Request<ProxyBody>) -> Response<Incoming> {
        tokio::time::timeout(PROMPTLY, self.sender.send_request(absolute(request)))
            .await
            .expect("the response arrives")
            .expect("the request goes through")
    }

    pub async fn fetch(&mut self, request: Request<ProxyBody>) -> Reply {
        let response = self.send(request).await;
        Reply::read(response).await
    }

    /// Sends `request`; `None` when the stream or the connection was refused.
    pub async fn try_send(&mut self, request: Request<ProxyBody>) -> Option<Response<Incoming>> {
        let sent = self.sender.send_request(absolute(request));
        tokio::time::timeout(PROMPTLY, sent).await.expect("an answer or an error").ok()
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// An HTTP/2 request: the origin-form URI and `Host` header become `https://host/path`.
fn absolute(mut request: Request<ProxyBody>) -> Request<ProxyBody> {
    if request.uri().authority().is_none() {
        let host = request.headers_mut().remove(HOST).unwrap();
        let target = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
        *request.uri_mut() = format!("https://{}{target}", host.to_str().unwrap()).parse().unwrap();
    }
    *request.version_mut() = Version::HTTP_2;
    request
}

/// Writes `bytes` on a new TLS connection and reads until the server closes it (or a response
/// head and its announced body have arrived, or a short while has passed); returns what came back.
///
/// Long inputs go out in 16 KiB pieces a few milliseconds apart, as over a real network: a
/// server that answers early must still let the client finish sending and read its answer.
pub async fn raw_exchange(server: &Pomerium, sni: &str, bytes: &[u8]) -> String {
    let mut stream = server.tls(sni, server.client_tls(&[b"http/1.1"])).await;
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

/// Writes `bytes` on a new TLS connection and reads everything until the server closes it.
pub async fn raw_exchange_until_close(server: &Pomerium, sni: &str, bytes: &[u8]) -> String {
    let mut stream = server.tls(sni, server.client_tls(&[b"http/1.1"])).await;
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

// ---------------------------------------------------------------------------------------------
// Upstreams

/// Starts a hyper server (HTTP/1.1 and HTTP/2, with upgrades) on 127.0.0.1; runs until the test
/// ends. Counts the connections it accepts.
pub async fn spawn_upstream<F, Fut>(tls: Option<Arc<ServerConfig>>, handler: F) -> Upstream
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
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
/// target, version, headers (name → values) and body length; and the client certificate's
/// presence is up to the TLS layer.
pub async fn echo_upstream(name: &str, tls: Option<Arc<ServerConfig>>) -> Upstream {
    let name = name.to_owned();
    spawn_upstream(tls, move |request: Request<Incoming>| {
        let name = name.clone();
        async move { Response::new(body::full(describe(&name, request).await.to_string())) }
    })
    .await
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

/// An HTTP GET over plain TCP on a new connection (metrics, redirect and insecure listeners).
pub async fn plain_get(address: SocketAddr, host: &str, path: &str) -> Reply {
    plain_fetch(address, get(host, path)).await
}

pub async fn plain_fetch(address: SocketAddr, request: Request<ProxyBody>) -> Reply {
    let stream = TcpStream::connect(address).await.unwrap();
    H1::handshake(stream).await.fetch(request).await
}

/// Polls `probe` until it returns `Some`, or fails after [`PROMPTLY`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PROMPTLY;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
