//! The cost of a client certificate revocation list on a downstream handshake: a full TLS 1.3
//! handshake in memory (client and server in one thread, both sides' CPU) with a client
//! certificate checked as the proxy checks it under the default enforcement (accepted in the
//! handshake, then verified by [`ServerTls::client_certificate`]), against the same CA with no
//! CRL, and with a CRL of 10,000 revoked serials (the client's not among them). `verify_only`
//! isolates the chain verification (what the CRL changes) from the handshake.
//!
//! `cargo bench -p proxy --bench handshake`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmarks fail loudly on bad fixtures"
)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use proxy::tls::{ChainVerifier, ClientCertMode, DownstreamClientAuth, ServerTls, SniResolver};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, IsCa, KeyIdMethod, KeyPair,
    RevokedCertParams, SerialNumber,
};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};

struct Fixture {
    client: Arc<ClientConfig>,
    without_crl: ServerTls,
    with_crl: ServerTls,
    chain: Vec<CertificateDer<'static>>,
    verify_without_crl: ChainVerifier,
    verify_with_crl: ChainVerifier,
}

fn fixture(revoked: u64) -> Fixture {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "bench client ca");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["bench.test".to_owned()]).unwrap().self_signed(&server_key).unwrap();
    let server_chain = vec![server_cert.der().clone()];
    let certified =
        proxy::tls::certified_key(server_chain.clone(), PrivateKeyDer::Pkcs8(server_key.serialize_der().into()))
            .unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["client.bench.test".to_owned()]).unwrap();
    client_params.serial_number = Some(SerialNumber::from(revoked + 1_000_000));
    let client_cert = client_params.signed_by(&client_key, &ca).unwrap();

    let crl = CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2020, 1, 1),
        next_update: rcgen::date_time_ymd(2100, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: (1..=revoked)
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from(serial),
                revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca)
    .unwrap();

    let mut roots = RootCertStore::empty();
    roots.add(server_chain[0].clone()).unwrap();
    let client = ClientConfig::builder_with_provider(proxy::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![client_cert.der().clone()], PrivateKeyDer::Pkcs8(client_key.serialize_der().into()))
        .unwrap();

    let ca_der: CertificateDer<'static> = ca.der().clone();
    let auth = |crls: Vec<CertificateRevocationListDer<'static>>| DownstreamClientAuth {
        crls,
        ..DownstreamClientAuth::new(vec![ca_der.clone()], ClientCertMode::Report)
    };
    let server = |crls| {
        let resolver = Arc::new(SniResolver::new(&[Arc::clone(&certified)]).unwrap());
        ServerTls::new(resolver, Some(&auth(crls))).unwrap()
    };
    Fixture {
        client: Arc::new(client),
        without_crl: server(Vec::new()),
        with_crl: server(vec![crl.der().clone()]),
        chain: vec![client_cert.der().clone()],
        verify_without_crl: ChainVerifier::new(&auth(Vec::new())).unwrap(),
        verify_with_crl: ChainVerifier::new(&auth(vec![crl.der().clone()])).unwrap(),
    }
}

/// One handshake in memory; the client certificate must verify.
fn handshake(client: &Arc<ClientConfig>, server: &ServerTls) {
    let mut client = ClientConnection::new(Arc::clone(client), ServerName::try_from("bench.test").unwrap()).unwrap();
    let mut server_connection = ServerConnection::new(Arc::clone(server.config())).unwrap();
    let mut buffer = Vec::with_capacity(16 * 1024);
    while client.is_handshaking() || server_connection.is_handshaking() {
        buffer.clear();
        while client.wants_write() {
            client.write_tls(&mut buffer).unwrap();
        }
        let mut read = &buffer[..];
        while !read.is_empty() {
            server_connection.read_tls(&mut read).unwrap();
        }
        server_connection.process_new_packets().unwrap();
        buffer.clear();
        while server_connection.wants_write() {
            server_connection.write_tls(&mut buffer).unwrap();
        }
        let mut read = &buffer[..];
        while !read.is_empty() {
            client.read_tls(&mut read).unwrap();
        }
        client.process_new_packets().unwrap();
    }
    let certificate = server.client_certificate(&server_connection).unwrap();
    assert!(certificate.verified);
}

fn bench(c: &mut Criterion) {
    let fixture = fixture(10_000);
    let mut group = c.benchmark_group("handshake");
    group.bench_function("client_certificate/no_crl", |b| b.iter(|| handshake(&fixture.client, &fixture.without_crl)));
    group.bench_function("client_certificate/crl_10000", |b| b.iter(|| handshake(&fixture.client, &fixture.with_crl)));
    group.bench_function("verify_only/no_crl", |b| {
        b.iter(|| assert!(fixture.verify_without_crl.verifies(&fixture.chain)))
    });
    group.bench_function("verify_only/crl_10000", |b| {
        b.iter(|| assert!(fixture.verify_with_crl.verifies(&fixture.chain)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
