//! Downstream mTLS through the real `pomerium` binary, with client certificates and revocation
//! lists made here: CRLs (several, each enforcement mode), `match_subject_alt_names`,
//! `max_verify_depth`, a route's own client CA (and 421 for a request that borrows a connection
//! made for another route), and clear errors for material that does not parse.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests"
)]

mod support;

use http::Method;
use proxy::body;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, IsCa, KeyIdMethod, KeyPair,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use support::*;

/// A client certificate authority that can issue leaves with chosen SANs and serials, an
/// intermediate, and revocation lists.
struct ClientCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The chain above a leaf that the client sends (the intermediates), issuer first.
    above: Vec<CertificateDer<'static>>,
}

impl ClientCa {
    fn root(name: &str) -> ClientCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        ClientCa { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(), above: vec![] }
    }

    fn intermediate(&self, name: &str) -> ClientCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let issuer = CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &*self.issuer).unwrap();
        let mut above = vec![issuer.der().clone()];
        above.extend(self.above.iter().cloned());
        ClientCa { issuer, above }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A client certificate with `serial` and these SANs.
    fn issue(&self, serial: u64, sans: Vec<SanType>) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("client {serial}"));
        params.subject_alt_names = sans;
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.above.iter().cloned());
        Leaf {
            chain,
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn client(&self, serial: u64) -> Leaf {
        self.issue(serial, vec![SanType::DnsName(format!("client{serial}.example.com").try_into().unwrap())])
    }

    /// A CRL revoking `serials`.
    fn crl(&self, serials: &[u64]) -> String {
        let params = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2100, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(*serial),
                    revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

/// The status of a GET on `host` over a new HTTP/1.1 connection with SNI `sni` presenting
/// `leaf`; `None` when the handshake or the exchange fails (the server refused the connection).
async fn status_with(server: &Pomerium, sni: &str, host: &str, leaf: Option<&Leaf>) -> Option<u16> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(server.address).await.ok()?;
        let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).ok()?;
        let config = client_tls(&server.ca, &[b"http/1.1"], leaf);
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, stream).await.ok()?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.ok()?;
        tokio::spawn(connection);
        let request = request(Method::GET, host, "/").header("accept", "text/html").body(body::empty()).ok()?;
        let response = sender.send_request(request).await.ok()?;
        Some(response.status().as_u16())
    };
    tokio::time::timeout(PROMPTLY, attempt).await.expect("the exchange finishes")
}

async fn status(server: &Pomerium, leaf: Option<&Leaf>) -> Option<u16> {
    status_with(server, "app.test.localhost", &server.host("app"), leaf).await
}

fn public_app(upstream: &Upstream) -> String {
    routes(&[route("app", &format!("to: {}\nallow_public_unauthenticated_access: true", upstream.http()))])
}

#[tokio::test]
async fn revoked_certificates_are_invalid_in_every_enforcement_mode() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let root = ClientCa::root("client root");
    let other = ClientCa::root("other client root");
    let ca_file = setup.write("ca.pem", &format!("{}{}", root.pem(), other.pem()));
    // Several lists in one file: one per issuer.
    let crl_file = setup.write("crl.pem", &format!("{}{}", root.crl(&[2, 3]), other.crl(&[7])));
    let (good, revoked, other_good, other_revoked) = (root.client(1), root.client(2), other.client(2), other.client(7));

    let mtls = |enforcement: &str| {
        format!(
            "downstream_mtls:\n  ca_file: {}\n  crl_file: {}\n  enforcement: {enforcement}\n{}",
            ca_file.display(),
            crl_file.display(),
            public_app(&upstream)
        )
    };
    let server = setup.start(&mtls("policy_with_default_deny")).await;
    assert_eq!(status(&server, Some(&good)).await, Some(200));
    assert_eq!(status(&server, Some(&revoked)).await, Some(495), "a revoked certificate is invalid");
    assert_eq!(status(&server, Some(&other_good)).await, Some(200), "a serial revoked by another issuer");
    assert_eq!(status(&server, Some(&other_revoked)).await, Some(495), "the second list is read too");
    drop(server);

    let server = setup.start(&mtls("reject_connection")).await;
    assert_eq!(status(&server, Some(&good)).await, Some(200));
    assert_eq!(status(&server, Some(&revoked)).await, None, "the handshake fails");
    assert_eq!(status(&server, None).await, None, "a certificate is required");
    drop(server);

    // `policy`: no default rule; the route's policy sees the certificate as invalid.
    let server = setup
        .start(&format!(
            "downstream_mtls:\n  ca_file: {}\n  crl_file: {}\n  enforcement: policy\n{}",
            ca_file.display(),
            crl_file.display(),
            routes(&[route(
                "app",
                &format!(
                    "to: {}\npolicy:\n  - allow:\n      and:\n        - accept: true\n  - deny:\n      or:\n        - invalid_client_certificate: true",
                    upstream.http()
                )
            )])
        ))
        .await;
    assert_eq!(status(&server, Some(&good)).await, Some(200));
    assert_eq!(status(&server, Some(&revoked)).await, Some(495));
    assert_eq!(upstream.requests(), 4, "only the valid certificates reach the upstream");
}

#[tokio::test]
async fn subject_alt_names_must_match_a_rule() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let root = ClientCa::root("client root");
    let ca_file = setup.write("ca.pem", &root.pem());
    let config = format!(
        "downstream_mtls:\n  ca_file: {}\n  match_subject_alt_names:\n    - email: '.*@example\\.com'\n    - dns: 'client\\.example\\.com'\n{}",
        ca_file.display(),
        public_app(&upstream)
    );
    let server = setup.start(&config).await;
    let email = |address: &str| SanType::Rfc822Name(address.try_into().unwrap());
    let dns = |name: &str| SanType::DnsName(name.try_into().unwrap());
    let cases = [
        (root.issue(1, vec![email("alice@example.com")]), Some(200)),
        (root.issue(2, vec![dns("other.example.com"), dns("client.example.com")]), Some(200)),
        (root.issue(3, vec![dns("other.example.com")]), Some(495)),
        // Anchored at both ends.
        (root.issue(4, vec![email("alice@example.com.evil.test")]), Some(495)),
        (root.issue(5, vec![dns("xclient.example.com")]), Some(495)),
        // The type matters: an email that looks like the DNS name.
        (root.issue(6, vec![email("client.example.com")]), Some(495)),
    ];
    for (leaf, expected) in &cases {
        assert_eq!(status(&server, Some(leaf)).await, *expected, "{}", leaf.cert_pem);
    }
}

#[tokio::test]
async fn max_verify_depth_limits_intermediates() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let root = ClientCa::root("client root");
    let intermediate = root.intermediate("client intermediate");
    let ca_file = setup.write("ca.pem", &root.pem());
    let direct = root.client(1);
    let indirect = intermediate.client(2);
    for (depth, expected) in [(None, Some(495)), (Some(1), Some(495)), (Some(2), Some(200)), (Some(0), Some(200))] {
        let depth_line = depth.map(|d| format!("  max_verify_depth: {d}\n")).unwrap_or_default();
        let config =
            format!("downstream_mtls:\n  ca_file: {}\n{depth_line}{}", ca_file.display(), public_app(&upstream));
        let server = setup.start(&config).await;
        assert_eq!(status(&server, Some(&direct)).await, Some(200), "depth {depth:?}");
        assert_eq!(status(&server, Some(&indirect)).await, expected, "depth {depth:?}");
    }
}

#[tokio::test]
async fn material_that_does_not_parse_is_refused_with_its_location() {
    let setup = Setup::new();
    let root = ClientCa::root("client root");
    let ca_file = setup.write("ca.pem", &root.pem());
    let not_a_crl = setup.write("bad-crl.pem", "-----BEGIN X509 CRL\nAAAA\n-----END X509 CRL-----\n");
    let garbage_crl = setup.write("garbage-crl.pem", "-----BEGIN X509 CRL-----\nMAMCAQE=\n-----END X509 CRL-----\n");
    let garbage_ca =
        setup.write("garbage-ca.pem", "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n");
    let cases = [
        (
            format!("downstream_mtls:\n  ca_file: {}\n  crl_file: {}\n", ca_file.display(), not_a_crl.display()),
            "crl_file",
        ),
        (
            format!("downstream_mtls:\n  ca_file: {}\n  crl_file: {}\n", ca_file.display(), garbage_crl.display()),
            "crl_file",
        ),
        (format!("downstream_mtls:\n  ca_file: {}\n", garbage_ca.display()), "ca_file"),
        (
            format!(
                "downstream_mtls:\n  ca_file: {}\n  match_subject_alt_names:\n    - dns: '(unclosed'\n",
                ca_file.display()
            ),
            "match_subject_alt_names",
        ),
    ];
    for (config, key) in &cases {
        let stderr = refused(&setup, &setup.config(config));
        assert!(stderr.contains(key), "{key} in:\n{stderr}");
        assert!(stderr.contains("config.yaml"), "the file in:\n{stderr}");
    }
}

#[tokio::test]
async fn a_routes_own_client_ca_is_asked_for_on_its_host_only() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let route_ca = ClientCa::root("route client root");
    let stranger = ClientCa::root("another root");
    let ca_file = setup.write("route-ca.pem", &route_ca.pem());
    let config = routes(&[
        route(
            "app",
            &format!(
                "to: {}\nallow_public_unauthenticated_access: true\ntls_downstream_client_ca_file: {}",
                upstream.http(),
                ca_file.display()
            ),
        ),
        route("other", &format!("to: {}\nallow_public_unauthenticated_access: true", upstream.http())),
    ]);
    let server = setup.start(&config).await;
    let (app, other) = (server.host("app"), server.host("other"));
    let trusted = route_ca.client(1);
    let untrusted = stranger.client(1);

    assert_eq!(status_with(&server, "app.test.localhost", &app, Some(&trusted)).await, Some(200));
    assert_eq!(status_with(&server, "app.test.localhost", &app, Some(&untrusted)).await, Some(495));
    assert_eq!(status_with(&server, "app.test.localhost", &app, None).await, Some(495), "required");
    assert_eq!(status_with(&server, "other.test.localhost", &other, None).await, Some(200), "not asked");
    assert_eq!(upstream.requests(), 2);

    // A request for a host with other client certificate settings on a connection made for
    // another SNI: 421, whichever way round.
    assert_eq!(status_with(&server, "other.test.localhost", &app, None).await, Some(421));
    assert_eq!(status_with(&server, "other.test.localhost", &app, Some(&trusted)).await, Some(421));
    assert_eq!(status_with(&server, "app.test.localhost", &other, Some(&trusted)).await, Some(421));
    assert_eq!(upstream.requests(), 2, "misdirected requests never reach the upstream");
}

#[tokio::test]
async fn a_routes_own_client_ca_replaces_the_global_one_for_its_host() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let global = ClientCa::root("global client root");
    let own = ClientCa::root("route client root");
    let global_file = setup.write("global-ca.pem", &global.pem());
    let own_file = setup.write("own-ca.pem", &own.pem());
    let config = format!(
        "downstream_mtls:\n  ca_file: {}\n{}",
        global_file.display(),
        routes(&[
            route(
                "app",
                &format!(
                    "to: {}\nallow_public_unauthenticated_access: true\ntls_downstream_client_ca_file: {}",
                    upstream.http(),
                    own_file.display()
                ),
            ),
            route("other", &format!("to: {}\nallow_public_unauthenticated_access: true", upstream.http())),
        ])
    );
    let server = setup.start(&config).await;
    let (app, other) = (server.host("app"), server.host("other"));
    let (global_leaf, own_leaf) = (global.client(1), own.client(1));
    assert_eq!(status_with(&server, "app.test.localhost", &app, Some(&own_leaf)).await, Some(200));
    assert_eq!(status_with(&server, "app.test.localhost", &app, Some(&global_leaf)).await, Some(495));
    assert_eq!(status_with(&server, "other.test.localhost", &other, Some(&global_leaf)).await, Some(200));
    assert_eq!(status_with(&server, "other.test.localhost", &other, Some(&own_leaf)).await, Some(495));
    assert_eq!(status_with(&server, "other.test.localhost", &app, Some(&global_leaf)).await, Some(421));
}

#[tokio::test]
async fn a_reload_brings_a_routes_new_client_ca_to_its_host() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let first = ClientCa::root("first route root");
    let second = ClientCa::root("second route root");
    let first_file = setup.write("first.pem", &first.pem());
    let second_file = setup.write("second.pem", &second.pem());
    let config = |ca: &std::path::Path| {
        setup.config(&routes(&[route(
            "app",
            &format!(
                "to: {}\nallow_public_unauthenticated_access: true\ntls_downstream_client_ca_file: {}",
                upstream.http(),
                ca.display()
            ),
        )]))
    };
    let mut server = setup.start_raw(&config(&first_file)).await;
    let app = server.host("app");
    let (first_leaf, second_leaf) = (first.client(1), second.client(1));
    assert_eq!(status_with(&server, "app.test.localhost", &app, Some(&first_leaf)).await, Some(200));
    assert_eq!(status_with(&server, "app.test.localhost", &app, Some(&second_leaf)).await, Some(495));

    setup.rewrite_config(&config(&second_file));
    server.wait_for_log("configuration reloaded").await;
    assert_eq!(status_with(&server, "app.test.localhost", &app, Some(&second_leaf)).await, Some(200));
    assert_eq!(status_with(&server, "app.test.localhost", &app, Some(&first_leaf)).await, Some(495));
}

#[tokio::test]
async fn an_intermediates_revocation_list_is_checked_too() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let root = ClientCa::root("client root");
    let intermediate = root.intermediate("client intermediate");
    let ca_file = setup.write("ca.pem", &root.pem());
    // The root's list (checked once at start) and the intermediate's (checked on each handshake).
    let crl_file = setup.write("crl.pem", &format!("{}{}", root.crl(&[5]), intermediate.crl(&[9])));
    let config = format!(
        "downstream_mtls:\n  ca_file: {}\n  crl_file: {}\n  max_verify_depth: 2\n{}",
        ca_file.display(),
        crl_file.display(),
        public_app(&upstream)
    );
    let server = setup.start(&config).await;
    assert_eq!(status(&server, Some(&intermediate.client(8))).await, Some(200));
    assert_eq!(status(&server, Some(&intermediate.client(9))).await, Some(495), "revoked by the intermediate");
    assert_eq!(status(&server, Some(&root.client(9))).await, Some(200), "the same serial from the root");
    assert_eq!(status(&server, Some(&root.client(5))).await, Some(495), "revoked by the root");
}
