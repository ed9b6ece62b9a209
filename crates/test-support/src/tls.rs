//! TLS configurations for test clients and upstreams (rustls on aws-lc-rs, as the server), and a
//! client connection.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::PROMPTLY;
use crate::pki::Leaf;

pub fn provider() -> Arc<CryptoProvider> {
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

/// A client configuration that accepts any server certificate (to look at the one served); the
/// handshake's signatures are still checked.
pub fn accept_any_server(alpn: &[&[u8]]) -> ClientConfig {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(tls_trust::SkipVerification(provider())))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A TLS configuration for a test upstream (h2 and http/1.1), perhaps requiring client
/// certificates from `client_ca`.
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

/// A TLS connection to `address` with `sni`; the handshake is bounded by [`PROMPTLY`].
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
