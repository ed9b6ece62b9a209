//! The HTTP client the relying party talks to its provider with: hyper over rustls (aws-lc-rs),
//! the system's roots plus any extra CA, a timeout per request, bodies bounded, no redirects.

use crate::OidcError;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);
const BODY_LIMIT: usize = 1024 * 1024;

#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl HttpClient {
    pub fn new(ca_pem: Option<&[u8]>) -> Result<HttpClient, OidcError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(pem) = ca_pem {
            use rustls_pki_types::pem::PemObject as _;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|_| OidcError::Config("the identity provider's CA is not PEM".into()))?;
                roots.add(cert).map_err(|e| OidcError::Config(format!("the identity provider's CA: {e}")))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| OidcError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
        Ok(HttpClient { client: Client::builder(TokioExecutor::new()).build(connector) })
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        form: Option<String>,
        headers: &[(header::HeaderName, String)],
    ) -> Result<Answer, OidcError> {
        let mut builder = Request::builder().method(method).uri(url).header(header::ACCEPT, "application/json");
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let body = match form {
            Some(form) => {
                builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Full::new(Bytes::from(form))
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder.body(body).map_err(|e| OidcError::Http { url: url.to_owned(), reason: e.to_string() })?;
        let http_error = |reason: String| OidcError::Http { url: url.to_owned(), reason };
        let response = tokio::time::timeout(TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| http_error("no answer within 10 s".into()))?
            .map_err(|e| http_error(e.to_string()))?;
        let status = response.status();
        let body = tokio::time::timeout(TIMEOUT, Limited::new(response.into_body(), BODY_LIMIT).collect())
            .await
            .map_err(|_| http_error("the body did not arrive within 10 s".into()))?
            .map_err(|e| http_error(format!("reading the body: {e}")))?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

/// A GET of a small document with the relying party's client (system roots plus the configured
/// CA, 10 s, 1 MiB): a cluster fetches its hosted authenticate service's HPKE key with it.
#[derive(Clone, Debug)]
pub struct Fetcher(HttpClient);

impl Fetcher {
    pub fn new(ca_pem: Option<&[u8]>) -> Result<Fetcher, OidcError> {
        HttpClient::new(ca_pem).map(Fetcher)
    }

    /// The status and body of `GET url`.
    pub async fn get(&self, url: &str) -> Result<(StatusCode, Bytes), OidcError> {
        let answer = self.0.send(Method::GET, url, None, &[]).await?;
        Ok((answer.status, answer.body))
    }
}
