//! The cluster API's HTTP client (`pkg/zero/cluster/client.go`, `token_fetcher.go` upstream): the
//! cluster token exchanged for an id token that is cached and exchanged again when it has less
//! left than a call wants (or on a 401); every answer classified by [`Outcome`]; bounded bodies
//! and a timeout on every request. Bundle downloads go to the signed URL without Authorization,
//! with `If-None-Match` and `Accept-Encoding: gzip` (inflated here, bounded).

use crate::api::{self, BootstrapConfig, BundleStatus, DownloadBundleResponse, ErrorResponse, GetBundlesResponse};
use crate::status::Outcome;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest JSON answer accepted.
const JSON_LIMIT: usize = 1 << 20;
/// What cluster API calls want left on the id token.
pub const MIN_TOKEN_LIFE_API: Duration = Duration::from_secs(5 * 60);
/// What the Connect stream wants left on it.
pub const MIN_TOKEN_LIFE_CONNECT: Duration = Duration::from_secs(55 * 60);

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// 400: refused for good (from `exchangeToken` or `bootstrap`: the token is rotated or revoked).
    #[error("{what}: the control plane refused the request (400): {message}")]
    Terminal { what: String, message: String },
    /// Anything else: try again later (with backoff).
    #[error("{what}: {message}")]
    Unavailable { what: String, message: String },
}

impl ApiError {
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Terminal { .. })
    }

    fn unavailable(what: &str, message: impl Into<String>) -> Self {
        Self::Unavailable { what: what.to_owned(), message: message.into() }
    }
}

/// A bundle download's result.
#[derive(Debug, Clone)]
pub enum Download {
    /// 304: the ETag still matches.
    NotModified,
    Content {
        body: Bytes,
        etag: String,
        last_modified: Option<String>,
        /// The values of `captureMetadataHeaders` found on the answer.
        metadata: Vec<(String, String)>,
    },
}

struct CachedToken {
    id_token: String,
    expires_at: Instant,
}

/// The cluster API client.
pub struct ClusterClient {
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    refresh_token: String,
    token: tokio::sync::Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClient").field("base", &self.base).finish_non_exhaustive()
    }
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl ClusterClient {
    /// `base`: the cluster API URL (`CLUSTER_API_ENDPOINT`), `http://` or `https://`; `tls`: the
    /// client configuration for `https://` (the caller's roots, aws-lc-rs).
    pub fn new(base: &str, refresh_token: &str, tls: rustls::ClientConfig) -> Result<Arc<Self>, String> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(format!("CLUSTER_API_ENDPOINT `{base}` must be an http:// or https:// URL"));
        }
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
        Ok(Arc::new(Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
            base,
            refresh_token: refresh_token.to_owned(),
            token: tokio::sync::Mutex::new(None),
        }))
    }

    /// An id token with at least `min_left` to live: the cached one, or a new one.
    pub async fn id_token(&self, min_left: Duration) -> Result<String, ApiError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && token.expires_at.saturating_duration_since(Instant::now()) >= min_left
        {
            return Ok(token.id_token.clone());
        }
        let fresh = self.exchange().await?;
        let id_token = fresh.id_token.clone();
        *cached = Some(fresh);
        Ok(id_token)
    }

    /// Forgets the cached id token (after a 401).
    pub async fn drop_token(&self) {
        *self.token.lock().await = None;
    }

    async fn exchange(&self) -> Result<CachedToken, ApiError> {
        const WHAT: &str = "exchangeToken";
        let body = serde_json::to_vec(&api::ExchangeTokenRequest { refresh_token: self.refresh_token.clone() })
            .map_err(|e| ApiError::unavailable(WHAT, e.to_string()))?;
        let started = Instant::now();
        let answer =
            self.send(WHAT, Method::POST, &self.url(api::paths::EXCHANGE_TOKEN), Some(body), None, &[]).await?;
        match Outcome::of(answer.status.as_u16()) {
            Outcome::Success => {
                let response: api::ExchangeTokenResponse = parse(WHAT, &answer.body)?;
                let expires_at = started + response.expires_in();
                Ok(CachedToken { id_token: response.id_token, expires_at })
            }
            // Only a 400 says the token itself is refused for good; anything else may pass.
            Outcome::Terminal => Err(terminal(WHAT, &answer)),
            Outcome::Reexchange | Outcome::Retry => Err(unavailable(WHAT, &answer)),
        }
    }

    /// A call with the bearer token; a 401 drops the token and tries once more with a new one.
    async fn call(&self, what: &str, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Answer, ApiError> {
        let url = self.url(path);
        for attempt in 0..2 {
            let token = self.id_token(MIN_TOKEN_LIFE_API).await?;
            let answer = self.send(what, method.clone(), &url, body.clone(), Some(&token), &[]).await?;
            match Outcome::of(answer.status.as_u16()) {
                Outcome::Success => return Ok(answer),
                Outcome::Reexchange if attempt == 0 => self.drop_token().await,
                Outcome::Terminal => return Err(terminal(what, &answer)),
                Outcome::Reexchange | Outcome::Retry => return Err(unavailable(what, &answer)),
            }
        }
        Err(ApiError::unavailable(what, "the id token was refused twice"))
    }

    pub async fn bootstrap(&self) -> Result<BootstrapConfig, ApiError> {
        let answer = self.call("bootstrap", Method::GET, api::paths::BOOTSTRAP, None).await?;
        parse("bootstrap", &answer.body)
    }

    pub async fn bundles(&self) -> Result<GetBundlesResponse, ApiError> {
        let answer = self.call("bundles", Method::GET, api::paths::BUNDLES, None).await?;
        parse("bundles", &answer.body)
    }

    pub async fn download_url(&self, bundle: &str) -> Result<DownloadBundleResponse, ApiError> {
        let answer = self.call("bundle download", Method::GET, &api::paths::bundle_download(bundle), None).await?;
        parse("bundle download", &answer.body)
    }

    pub async fn report_bundle_status(&self, bundle: &str, status: &BundleStatus) -> Result<(), ApiError> {
        let body = serde_json::to_vec(status).map_err(|e| ApiError::unavailable("bundle status", e.to_string()))?;
        self.call("bundle status", Method::POST, &api::paths::bundle_status(bundle), Some(body)).await.map(|_| ())
    }

    pub async fn report_usage(&self, usage: &api::ReportUsageRequest) -> Result<(), ApiError> {
        let body = serde_json::to_vec(usage).map_err(|e| ApiError::unavailable("reportUsage", e.to_string()))?;
        self.call("reportUsage", Method::POST, api::paths::REPORT_USAGE, Some(body)).await.map(|_| ())
    }

    /// GETs a bundle from its signed URL: no Authorization (the URL authenticates itself),
    /// `If-None-Match` when an ETag is known. A 200 must carry an ETag.
    pub async fn download(&self, url: &DownloadBundleResponse, etag: Option<&str>) -> Result<Download, ApiError> {
        const WHAT: &str = "bundle content";
        let mut headers = vec![(header::ACCEPT_ENCODING, "gzip".to_owned())];
        if let Some(etag) = etag {
            headers.push((header::IF_NONE_MATCH, etag.to_owned()));
        }
        let answer =
            self.send_limited(WHAT, Method::GET, &url.url, None, None, &headers, crate::bundle::MAX_BUNDLE_LEN).await?;
        match answer.status.as_u16() {
            304 => Ok(Download::NotModified),
            200 => {
                let header_text =
                    |name: &str| answer.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let etag = header_text("etag").ok_or_else(|| ApiError::unavailable(WHAT, "the answer has no ETag"))?;
                let metadata = url
                    .capture_metadata_headers
                    .iter()
                    .filter_map(|name| header_text(name).map(|value| (name.to_ascii_lowercase(), value)))
                    .collect();
                let gzip = header_text("content-encoding").is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip"));
                let body =
                    if gzip { gunzip(&answer.body).map_err(|e| ApiError::unavailable(WHAT, e))? } else { answer.body };
                Ok(Download::Content { body, etag, last_modified: header_text("last-modified"), metadata })
            }
            _ if answer.status == StatusCode::BAD_REQUEST => Err(terminal(WHAT, &answer)),
            _ => Err(unavailable(WHAT, &answer)),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(
        &self,
        what: &str,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        bearer: Option<&str>,
        headers: &[(header::HeaderName, String)],
    ) -> Result<Answer, ApiError> {
        self.send_limited(what, method, url, body, bearer, headers, JSON_LIMIT).await
    }

    #[expect(clippy::too_many_arguments, reason = "one private helper behind `send` and `download`")]
    async fn send_limited(
        &self,
        what: &str,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        bearer: Option<&str>,
        headers: &[(header::HeaderName, String)],
        limit: usize,
    ) -> Result<Answer, ApiError> {
        let mut builder = Request::builder().method(method).uri(url).header(header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let body = match body {
            Some(body) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(body))
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder.body(body).map_err(|e| ApiError::unavailable(what, format!("bad request: {e}")))?;
        let response = tokio::time::timeout(TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| ApiError::unavailable(what, format!("no answer within {} s", TIMEOUT.as_secs())))?
            .map_err(|e| ApiError::unavailable(what, format!("cannot reach the control plane: {}", error_chain(&e))))?;
        let status = response.status();
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(TIMEOUT, Limited::new(body, limit).collect())
            .await
            .map_err(|_| ApiError::unavailable(what, "the answer's body did not arrive in time"))?
            .map_err(|e| ApiError::unavailable(what, format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(Answer { status, headers: parts.headers, body })
    }
}

/// Decompresses a gzip body, at most [`MAX_BUNDLE_LEN`](crate::bundle::MAX_BUNDLE_LEN) bytes of
/// it (a small body may inflate to anything).
fn gunzip(body: &[u8]) -> Result<Bytes, String> {
    use std::io::Read as _;
    let limit = u64::try_from(crate::bundle::MAX_BUNDLE_LEN).unwrap_or(u64::MAX) + 1;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| format!("the gzip body does not inflate: {e}"))?;
    if out.len() > crate::bundle::MAX_BUNDLE_LEN {
        return Err(format!("the bundle inflates past {} bytes", crate::bundle::MAX_BUNDLE_LEN));
    }
    Ok(Bytes::from(out))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn parse<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::unavailable(what, format!("the answer is not what was expected: {e}")))
}

/// The message of an error answer: its `{"error"}`, with `X-Response-Id` when there is one.
fn describe(answer: &Answer) -> String {
    let message = serde_json::from_slice::<ErrorResponse>(&answer.body).map(|e| e.error).unwrap_or_else(|_| {
        String::from_utf8_lossy(answer.body.get(..200.min(answer.body.len())).unwrap_or_default()).into_owned()
    });
    let id = answer.headers.get(api::RESPONSE_ID_HEADER).and_then(|v| v.to_str().ok());
    match id {
        Some(id) => format!("{} {message} (response id {id})", answer.status),
        None => format!("{} {message}", answer.status),
    }
}

fn terminal(what: &str, answer: &Answer) -> ApiError {
    ApiError::Terminal { what: what.to_owned(), message: describe(answer) }
}

fn unavailable(what: &str, answer: &Answer) -> ApiError {
    ApiError::unavailable(what, describe(answer))
}
