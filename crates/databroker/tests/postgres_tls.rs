//! The PostgreSQL storage over TLS, against real Debian PostgreSQL clusters: one with `ssl = on`
//! serving a certificate for `localhost` from a test CA (made here with rcgen), one without TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

use databroker::record::Record;
use databroker::storage::{PostgresStorage, Storage, StorageError};
use pg_test_cluster::{ServerTls, TestPostgres};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// Every connection attempt and wait is bounded by this.
const LIMIT: Duration = Duration::from_secs(60);

/// The TLS cluster and the PEM files a client uses.
struct Fixture {
    cluster: TestPostgres,
    /// The CA that issued the server's and the client's certificates.
    ca: PathBuf,
    /// Another CA, which issued neither.
    other_ca: PathBuf,
    /// A client certificate for the user `certuser`, and its key.
    client_cert: PathBuf,
    client_key: PathBuf,
    _dir: tempfile::TempDir,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// The shared TLS cluster: `certuser` must log in with a client certificate, `scramuser` with a
/// password (SCRAM), `tlsonly` is refused without TLS, everyone else is trusted either way.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let issuer = ca("postgres test CA");
        let other = ca("another test CA");
        let server_key = KeyPair::generate().unwrap();
        let server =
            CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&server_key, &issuer).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client.distinguished_name.push(rcgen::DnType::CommonName, "certuser");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client.signed_by(&client_key, &issuer).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let fixture = Fixture {
            ca: write("ca.pem", issuer.pem()),
            other_ca: write("other-ca.pem", other.pem()),
            client_cert: write("client.pem", client.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
            cluster: TestPostgres::start_cluster_tls(
                &ServerTls {
                    cert_pem: server.pem(),
                    key_pem: server_key.serialize_pem(),
                    client_ca_pem: Some(issuer.pem()),
                    hba: Some(
                        "hostssl all certuser 127.0.0.1/32 cert\n\
                         hostssl all scramuser 127.0.0.1/32 scram-sha-256\n\
                         hostnossl all tlsonly 127.0.0.1/32 reject\n\
                         host all all 127.0.0.1/32 trust"
                            .to_owned(),
                    ),
                },
                &[],
            )
            .unwrap(),
            _dir: dir,
        };
        fixture
            .cluster
            .psql(
                "CREATE ROLE certuser LOGIN SUPERUSER; CREATE ROLE tlsonly LOGIN SUPERUSER; \
                 SET password_encryption = 'scram-sha-256'; \
                 CREATE ROLE scramuser LOGIN SUPERUSER PASSWORD 'scram secret'",
            )
            .unwrap();
        fixture
    })
}

/// A cluster without TLS.
fn plain_cluster() -> &'static TestPostgres {
    static PLAIN: OnceLock<TestPostgres> = OnceLock::new();
    PLAIN.get_or_init(|| TestPostgres::start_cluster(&[]).unwrap())
}

/// A new database's URL on the TLS cluster, with `query` appended.
fn tls_url(query: &str) -> String {
    format!("{}?{query}", fixture().cluster.database().unwrap())
}

/// The same, naming the host `localhost` (the certificate's name), still on 127.0.0.1.
fn localhost_url(query: &str) -> String {
    tls_url(&format!("hostaddr=127.0.0.1&{query}")).replace("@127.0.0.1:", "@localhost:")
}

fn ca_path(path: &std::path::Path) -> String {
    path.to_str().unwrap().to_owned()
}

async fn connect(url: &str) -> Result<PostgresStorage, StorageError> {
    tokio::time::timeout(LIMIT, PostgresStorage::connect(url)).await.expect("connecting took more than 60 s")
}

async fn connect_err(url: &str) -> String {
    match connect(url).await {
        Ok(_) => panic!("connected, but should have been refused"),
        Err(error) => error.to_string(),
    }
}

/// Whether the storage's pool connection runs over TLS, as the server sees it.
async fn ssl_in_use(storage: &PostgresStorage) -> bool {
    let client = storage.pool().get().await.unwrap();
    client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn require_connects_over_tls() {
    let storage = connect(&tls_url("sslmode=require")).await.unwrap();
    assert!(ssl_in_use(&storage).await);
}

#[tokio::test]
async fn prefer_uses_tls_when_offered_and_disable_does_not() {
    // `prefer` is the default.
    let storage = connect(&fixture().cluster.database().unwrap()).await.unwrap();
    assert!(ssl_in_use(&storage).await);
    let storage = connect(&tls_url("sslmode=prefer")).await.unwrap();
    assert!(ssl_in_use(&storage).await);
    let storage = connect(&tls_url("sslmode=disable")).await.unwrap();
    assert!(!ssl_in_use(&storage).await);
}

#[tokio::test]
async fn verify_full_with_the_right_ca_connects() {
    let url = localhost_url(&format!("sslmode=verify-full&sslrootcert={}", ca_path(&fixture().ca)));
    let storage = connect(&url).await.unwrap();
    assert!(ssl_in_use(&storage).await);
    // libpq: `require` with a root certificate verifies the chain.
    let storage = connect(&tls_url(&format!("sslmode=require&sslrootcert={}", ca_path(&fixture().ca)))).await.unwrap();
    assert!(ssl_in_use(&storage).await);
}

#[tokio::test]
async fn a_wrong_ca_is_refused_saying_so() {
    let other = ca_path(&fixture().other_ca);
    for mode in ["verify-full", "verify-ca", "require"] {
        let error = connect_err(&localhost_url(&format!("sslmode={mode}&sslrootcert={other}"))).await;
        assert!(error.contains("unknown CA"), "{mode}: {error}");
        assert!(error.contains("other-ca.pem"), "{mode}: {error}");
    }
}

#[tokio::test]
async fn a_wrong_host_name_is_refused_under_verify_full_only() {
    let ca = ca_path(&fixture().ca);
    // The certificate names `localhost`, not 127.0.0.1.
    let error = connect_err(&tls_url(&format!("sslmode=verify-full&sslrootcert={ca}"))).await;
    assert!(error.contains("host name mismatch"), "{error}");
    assert!(error.contains("127.0.0.1"), "{error}");
    let storage = connect(&tls_url(&format!("sslmode=verify-ca&sslrootcert={ca}"))).await.unwrap();
    assert!(ssl_in_use(&storage).await);
}

#[tokio::test]
async fn allow_tries_tls_when_the_server_refuses_plain() {
    let url = tls_url("sslmode=disable").replace("postgres@", "tlsonly@");
    let error = connect_err(&url).await;
    assert!(error.contains("no encryption") || error.contains("rejects connection"), "{error}");
    let storage = connect(&tls_url("sslmode=allow").replace("postgres@", "tlsonly@")).await.unwrap();
    assert!(ssl_in_use(&storage).await);
    // A server that takes plain connections gets one.
    let storage = connect(&tls_url("sslmode=allow")).await.unwrap();
    assert!(!ssl_in_use(&storage).await);
}

#[tokio::test]
async fn a_client_certificate_logs_in() {
    let f = fixture();
    let url = localhost_url(&format!(
        "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        ca_path(&f.ca),
        ca_path(&f.client_cert),
        ca_path(&f.client_key)
    ))
    .replace("postgres@", "certuser@");
    let storage = connect(&url).await.unwrap();
    assert!(ssl_in_use(&storage).await);
    let client = storage.pool().get().await.unwrap();
    let user: String = client.query_one("SELECT current_user::text", &[]).await.unwrap().get(0);
    assert_eq!(user, "certuser");
    // Without it, the same user is refused.
    let url =
        localhost_url(&format!("sslmode=verify-full&sslrootcert={}", ca_path(&f.ca))).replace("postgres@", "certuser@");
    let error = connect_err(&url).await;
    assert!(error.contains("certificate"), "{error}");
}

#[tokio::test]
async fn scram_binds_the_password_exchange_to_the_tls_connection() {
    let url = tls_url("sslmode=require&channel_binding=require").replace("postgres@", "scramuser:scram%20secret@");
    let storage = connect(&url).await.unwrap();
    assert!(ssl_in_use(&storage).await);
    let client = storage.pool().get().await.unwrap();
    let user: String = client.query_one("SELECT current_user::text", &[]).await.unwrap().get(0);
    assert_eq!(user, "scramuser");
}

#[tokio::test]
async fn without_tls_on_the_server_prefer_and_allow_connect_plain_and_require_fails() {
    let cluster = plain_cluster();
    for mode in ["prefer", "allow"] {
        let storage = connect(&format!("{}?sslmode={mode}", cluster.database().unwrap())).await.unwrap();
        assert!(!ssl_in_use(&storage).await, "{mode}");
    }
    let error = connect_err(&format!("{}?sslmode=require", cluster.database().unwrap())).await;
    assert!(error.contains("server does not support TLS"), "{error}");
    assert!(error.contains("sslmode=require"), "{error}");
}

#[tokio::test]
async fn an_unknown_sslmode_is_refused() {
    let url = "postgres://postgres:hunter2@127.0.0.1:1/x?sslmode=verify_full";
    match connect(url).await {
        Err(StorageError::InvalidArgument(message)) => {
            assert!(message.contains("unknown sslmode `verify_full`"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        other => panic!("expected an invalid argument, got {other:?}"),
    }
}

#[tokio::test]
async fn the_storage_writes_and_hears_other_writers_over_tls() {
    let url = localhost_url(&format!("sslmode=verify-full&sslrootcert={}", ca_path(&fixture().ca)));
    let writer = connect(&url).await.unwrap();
    let reader = connect(&url).await.unwrap();
    // Wait until the reader's LISTEN connection is up (and so done with its first tick); it is
    // a connection of its own, and over TLS too.
    let client = writer.pool().get().await.unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let listening = loop {
        let rows = client
            .query(
                "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.datname = current_database() AND a.query LIKE 'LISTEN%' AND a.state = 'idle'",
                &[],
            )
            .await
            .unwrap();
        if rows.len() == 2 {
            break rows.iter().map(|row| row.get::<_, bool>(0)).collect::<Vec<_>>();
        }
        assert!(tokio::time::Instant::now() < deadline, "the LISTEN connections did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(listening, vec![true, true]);

    let mut changes = reader.watch();
    changes.borrow_and_update();
    let written = writer.put(vec![Record::new("t", "1", serde_json::Map::new())]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), changes.changed())
        .await
        .expect("the reader heard of no change within 20 s")
        .unwrap();
    let got = reader.get("t", "1").await.unwrap().unwrap();
    assert_eq!(got.version, written.records[0].version);
}

#[tokio::test]
async fn a_server_that_stalls_the_tls_handshake_is_given_up_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Answers the SSLRequest with `S`, then says nothing more.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 8];
            if socket.read_exact(&mut request).await.is_ok() && socket.write_all(b"S").await.is_ok() {
                held.push(socket);
            }
        }
    });
    let started = std::time::Instant::now();
    let error = connect_err(&format!("postgres://postgres@127.0.0.1:{port}/x?sslmode=require&connect_timeout=1")).await;
    assert!(error.contains("no connection in time"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}
