//! The real `pomerium-console` binary for tests: started with a `console.yaml` in a temporary
//! directory, its JSON log read from stderr, killed when dropped; a small HTTP client with
//! timeouts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test support"
)]
#![allow(dead_code, reason = "each test file uses a part of the support")]

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

/// A generous bound for anything that should happen promptly.
pub const PROMPTLY: Duration = Duration::from_secs(15);

/// The API token every test console accepts.
pub const API_TOKEN: &str = "test-api-token-0123456789";

pub struct Console {
    child: Child,
    log: Arc<test_support::process::Log>,
    pub address: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The settings of a test console on a free port, plain HTTP; `storage` is extra YAML.
pub fn settings(storage: &str) -> String {
    format!(
        "address: 127.0.0.1:0\ninsecure_server: true\nbase_domain: clusters.test\napi_tokens:\n  - name: tests\n    token: {API_TOKEN}\n{storage}"
    )
}

impl Console {
    pub async fn start(yaml: &str) -> Console {
        let dir = tempfile::tempdir().unwrap();
        Console::start_in(dir, yaml).await
    }

    pub async fn start_in(dir: tempfile::TempDir, yaml: &str) -> Console {
        let path: PathBuf = dir.path().join("console.yaml");
        std::fs::write(&path, yaml).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_pomerium-console"));
        command.arg("--config").arg(&path).env_clear().env("POMERIUM_LOG_FORMAT", "json").env("RUST_LOG", "info");
        let (child, log) = test_support::process::Log::spawn(&mut command, "the pomerium-console binary");
        let mut console = Console { child, log, address: "127.0.0.1:1".parse().unwrap(), dir };
        let serving = console.wait_for_log("serving").await;
        console.address = serving["address"].as_str().unwrap().parse().unwrap();
        console
    }

    pub fn logs(&self) -> Vec<String> {
        self.log.lines()
    }

    /// The first JSON log line whose message contains `message`; fails if the process ends or
    /// nothing comes within [`PROMPTLY`].
    pub async fn wait_for_log(&mut self, message: &str) -> Value {
        let what = format!("`{message}` from the console");
        let matches = |line: &Value| line["message"].as_str().is_some_and(|m| m.contains(message));
        self.log.wait_for(&mut self.child, &what, PROMPTLY, 0, matches).await
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

/// A TLS client configuration on the workspace's provider that trusts `roots`.
pub fn client_tls(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// An answer: status, headers, body as JSON (or `Null`).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub bytes: Bytes,
    pub json: Value,
}

pub struct Http {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    pub base: String,
    pub token: Option<String>,
}

impl Http {
    pub fn new(base: &str) -> Http {
        let roots = rustls::RootCertStore::empty();
        Http::with_roots(base, roots)
    }

    /// A client that trusts `roots` for `https://` bases.
    pub fn with_roots(base: &str, roots: rustls::RootCertStore) -> Http {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_tls(roots))
            .https_or_http()
            .enable_http1()
            .build();
        Http { client: Client::builder(TokioExecutor::new()).build(connector), base: base.to_owned(), token: None }
    }

    /// Signs in with the API token: `POST /api/v0/token`.
    pub async fn signed_in(base: &str) -> Http {
        let mut http = Http::new(base);
        let answer =
            http.send(Method::POST, "/api/v0/token", Some(serde_json::json!({"refreshToken": API_TOKEN}))).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert!(answer.json["expiresInSeconds"].is_string(), "{answer:?}");
        http.token = Some(answer.json["idToken"].as_str().unwrap().to_owned());
        http
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let body = body.map(|b| b.to_string());
        self.raw(method, path, body.as_deref(), &[]).await
    }

    pub async fn raw(&self, method: Method, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Answer {
        self.raw_bytes(method, path, body.map(str::as_bytes), headers).await
    }

    /// Like [`Http::raw`] with a body of bytes (protobuf).
    pub async fn raw_bytes(&self, method: Method, path: &str, body: Option<&[u8]>, headers: &[(&str, &str)]) -> Answer {
        let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) };
        let mut builder = Request::builder().method(method).uri(url);
        if let Some(token) = &self.token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if body.is_some() && !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder.body(Full::new(Bytes::from(body.unwrap_or_default().to_vec()))).unwrap();
        let response =
            tokio::time::timeout(PROMPTLY, self.client.request(request)).await.expect("an answer in time").unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = tokio::time::timeout(PROMPTLY, response.into_body().collect()).await.unwrap().unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status, headers, bytes, json }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body)).await
    }
}
