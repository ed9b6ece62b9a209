//! The cluster API client against a loopback HTTP server: the id token cached while it has
//! enough life left, exchanged again when it is short-lived or refused (401), 400 terminal,
//! other failures retryable with the control plane's message and response id, and signed
//! downloads without Authorization, with If-None-Match.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use zero::api::DownloadBundleResponse;
use zero::client::{ApiError, ClusterClient, Download};

/// A request as the server saw it: method, path, Authorization, If-None-Match, body.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    if_none_match: Option<String>,
    accept_encoding: Option<String>,
}

type Answer = (u16, Vec<(&'static str, String)>, Value);
type Handler = Arc<dyn Fn(&Seen, &[Seen]) -> Answer + Send + Sync>;

struct Server {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(handler: impl Fn(&Seen, &[Seen]) -> Answer + Send + Sync + 'static) -> Server {
        let handler: Handler = Arc::new(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (handler, log) = (Arc::clone(&handler), Arc::clone(&log));
                connections.spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (handler, log) = (Arc::clone(&handler), Arc::clone(&log));
                        async move {
                            let header = |name: &str| {
                                request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
                            };
                            let seen = Seen {
                                path: request.uri().path().to_owned(),
                                authorization: header("authorization"),
                                if_none_match: header("if-none-match"),
                                accept_encoding: header("accept-encoding"),
                            };
                            let _ = request.into_body().collect().await;
                            let before = log.lock().unwrap().clone();
                            let (status, headers, body) = handler(&seen, &before);
                            log.lock().unwrap().push(seen);
                            let bytes = match body {
                                Value::String(text) if text == "GZIP" => gzip(b"inflated bytes"),
                                Value::String(text) => text.into_bytes(),
                                Value::Null => Vec::new(),
                                other => other.to_string().into_bytes(),
                            };
                            let mut response = Response::new(Full::new(Bytes::from(bytes)));
                            *response.status_mut() = StatusCode::from_u16(status).unwrap();
                            for (name, value) in headers {
                                response.headers_mut().insert(name, value.parse().unwrap());
                            }
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Server { address, seen, task }
    }

    fn client(&self) -> Arc<ClusterClient> {
        ClusterClient::new(&format!("http://{}/cluster/v1", self.address), "refresh-token", tls()).unwrap()
    }

    fn count(&self, path: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|s| s.path == path).count()
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn tls() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

fn bootstrap() -> Value {
    json!({"clusterId": "c", "organizationId": "o", "sharedSecret": "AAAA", "pseudonymizationKey": ""})
}

const EXCHANGE: &str = "/cluster/v1/exchangeToken";
const BOOTSTRAP: &str = "/cluster/v1/bootstrap";

/// An exchange that answers `id-N` (N counting exchanges) living `lifetime` seconds.
fn exchange(seen: &[Seen], lifetime: &str) -> Answer {
    let n = seen.iter().filter(|s| s.path == EXCHANGE).count() + 1;
    (200, vec![], json!({"idToken": format!("id-{n}"), "expiresInSeconds": lifetime}))
}

#[tokio::test]
async fn the_id_token_is_cached_while_it_has_five_minutes_left() {
    let server = Server::start(|seen, before| match seen.path.as_str() {
        EXCHANGE => {
            assert_eq!(seen.authorization, None, "the exchange carries no bearer");
            exchange(before, "3600")
        }
        _ => {
            assert_eq!(seen.authorization.as_deref(), Some("Bearer id-1"));
            (200, vec![], bootstrap())
        }
    })
    .await;
    let client = server.client();
    for _ in 0..3 {
        assert_eq!(client.bootstrap().await.unwrap().cluster_id, "c");
    }
    assert_eq!(server.count(EXCHANGE), 1);
    // The Connect stream wants 55 minutes: an hour-long token still has them.
    assert_eq!(client.id_token(zero::client::MIN_TOKEN_LIFE_CONNECT).await.unwrap(), "id-1");
    assert_eq!(server.count(EXCHANGE), 1);
}

#[tokio::test]
async fn a_short_lived_token_is_exchanged_again_for_each_call() {
    let server = Server::start(|seen, before| match seen.path.as_str() {
        EXCHANGE => exchange(before, "240"),
        _ => (200, vec![], bootstrap()),
    })
    .await;
    let client = server.client();
    client.bootstrap().await.unwrap();
    client.bootstrap().await.unwrap();
    assert_eq!(server.count(EXCHANGE), 2, "four minutes left is less than the five a call wants");
}

#[tokio::test]
async fn a_401_drops_the_token_and_the_call_is_tried_once_more() {
    let server = Server::start(|seen, before| match seen.path.as_str() {
        EXCHANGE => exchange(before, "3600"),
        // The first id token is refused, the second accepted.
        _ if seen.authorization.as_deref() == Some("Bearer id-1") => (401, vec![], json!({"error": "expired"})),
        _ => (200, vec![], bootstrap()),
    })
    .await;
    let client = server.client();
    client.bootstrap().await.unwrap();
    assert_eq!((server.count(EXCHANGE), server.count(BOOTSTRAP)), (2, 2));

    // Refused every time: a retryable failure after one retry, not a loop.
    let server = Server::start(|seen, before| match seen.path.as_str() {
        EXCHANGE => exchange(before, "3600"),
        _ => (401, vec![], json!({"error": "no"})),
    })
    .await;
    let error = server.client().bootstrap().await.unwrap_err();
    assert!(!error.is_terminal(), "{error}");
    assert_eq!(server.count(BOOTSTRAP), 2);
}

#[tokio::test]
async fn a_400_is_terminal_and_other_failures_are_retryable_with_the_reason() {
    let server = Server::start(|seen, _| match seen.path.as_str() {
        EXCHANGE => (400, vec![("x-response-id", "r-42".to_owned())], json!({"error": "invalid cluster token"})),
        _ => panic!("no call without a token"),
    })
    .await;
    let error = server.client().bootstrap().await.unwrap_err();
    assert!(error.is_terminal(), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("invalid cluster token") && text.contains("r-42") && text.contains("exchangeToken"),
        "{text}"
    );

    let server = Server::start(|seen, _| match seen.path.as_str() {
        EXCHANGE => (401, vec![], json!({"error": "try later"})),
        _ => panic!("no call without a token"),
    })
    .await;
    let error = server.client().bootstrap().await.unwrap_err();
    assert!(!error.is_terminal(), "only a 400 is terminal: {error}");

    let server = Server::start(|seen, before| match seen.path.as_str() {
        EXCHANGE => exchange(before, "3600"),
        _ => (400, vec![], json!({"error": "cluster deleted"})),
    })
    .await;
    assert!(matches!(server.client().bootstrap().await, Err(ApiError::Terminal { .. })));

    let server = Server::start(|seen, before| match seen.path.as_str() {
        EXCHANGE => exchange(before, "3600"),
        _ => (503, vec![], Value::String("<html>down</html>".into())),
    })
    .await;
    let error = server.client().bootstrap().await.unwrap_err();
    assert!(!error.is_terminal() && error.to_string().contains("503"), "{error}");

    // An answer that is not the model is retryable, not a panic.
    let server = Server::start(|seen, before| match seen.path.as_str() {
        EXCHANGE => exchange(before, "3600"),
        _ => (200, vec![], json!({"clusterId": 5})),
    })
    .await;
    let error = server.client().bootstrap().await.unwrap_err();
    assert!(!error.is_terminal() && error.to_string().contains("not what was expected"), "{error}");

    // Nobody listening.
    let address = server.address;
    drop(server);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let client = ClusterClient::new(&format!("http://{address}/cluster/v1"), "t", tls()).unwrap();
    let error = client.bootstrap().await.unwrap_err();
    assert!(!error.is_terminal() && error.to_string().contains("cannot reach the control plane"), "{error}");
}

#[tokio::test]
async fn downloads_carry_no_authorization_and_send_the_etag_back() {
    let server = Server::start(|seen, _| match (seen.path.as_str(), seen.if_none_match.as_deref()) {
        ("/signed/no-etag", _) => (200, vec![], Value::String("x".into())),
        ("/signed/gzip", _) => (
            200,
            vec![("etag", "\"g\"".to_owned()), ("content-encoding", "gzip".to_owned())],
            Value::String("GZIP".into()),
        ),
        ("/signed/bad-gzip", _) => (
            200,
            vec![("etag", "\"g\"".to_owned()), ("content-encoding", "gzip".to_owned())],
            Value::String("not gzip".into()),
        ),
        (_, Some("\"v1\"")) => (304, vec![("etag", "\"v1\"".to_owned())], Value::Null),
        _ => (200, vec![("etag", "\"v1\"".to_owned()), ("x-meta-a", "1".to_owned())], Value::String("bytes".into())),
    })
    .await;
    let client = server.client();
    let url = |path: &str| DownloadBundleResponse {
        url: format!("http://{}{path}?sig=1", server.address),
        expires_in_seconds: 60,
        capture_metadata_headers: vec!["X-Meta-A".into(), "x-absent".into()],
    };
    let Download::Content { body, etag, metadata, .. } = client.download(&url("/signed/b"), None).await.unwrap() else {
        panic!("content expected")
    };
    assert_eq!((&body[..], etag.as_str()), (&b"bytes"[..], "\"v1\""));
    assert_eq!(metadata, [("x-meta-a".to_owned(), "1".to_owned())]);
    assert!(matches!(client.download(&url("/signed/b"), Some("\"v1\"")).await.unwrap(), Download::NotModified));
    let Download::Content { body, .. } = client.download(&url("/signed/gzip"), None).await.unwrap() else {
        panic!("content expected")
    };
    assert_eq!(&body[..], b"inflated bytes");
    let error = client.download(&url("/signed/bad-gzip"), None).await.unwrap_err();
    assert!(error.to_string().contains("does not inflate"), "{error}");
    let error = client.download(&url("/signed/no-etag"), None).await.unwrap_err();
    assert!(error.to_string().contains("no ETag"), "{error}");
    let seen = server.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s.authorization.is_none()), "{seen:?}");
    assert!(seen.iter().all(|s| s.accept_encoding.as_deref() == Some("gzip")), "{seen:?}");
    assert_eq!(seen[1].if_none_match.as_deref(), Some("\"v1\""));
    assert_eq!(server.count(EXCHANGE), 0, "a download needs no id token");
}
