//! `autocert` against a real ACME server: Debian's `pebble`, with `pebble-challtestsrv` as its
//! DNS (every name resolves to 127.0.0.1), so that pebble validates the challenges against the
//! `pomerium` binary's own listeners (HTTP-01 on `http_redirect_addr`, TLS-ALPN-01 on the main
//! listener). The served certificate must chain to pebble's root (from its management port).
//! Also: a restart reuses the stored certificate (no new order), a host added by a reload or by
//! an Ingress (through the controller and the databroker) gets one without a restart, renewal (`POMERIUM_AUTOCERT_RENEW_AFTER_MS`), a second replica sharing
//! `autocert_dir` does not order what the first is ordering, and an unreachable or garbage ACME
//! directory keeps the server serving its self-signed certificate, logging why and retrying.
//!
//! Needs Debian's `pebble` package (scripts/test installs it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::{CertificateDer, ServerName};
use support::{Pki, Pomerium, shared_secret_base64};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The bound on an issuance (pebble validates in well under a second without its sleeps).
const ISSUANCE: Duration = Duration::from_secs(60);

const ISSUED: &str = "autocert: certificate issued";
const ORDERING: &str = "autocert: ordering a certificate";
const WAITING: &str = "autocert: another replica is ordering this certificate; waiting for it";
const FAILED_SELF_SIGNED: &str =
    "autocert: cannot obtain a certificate; the self-signed certificate is served until then";

/// Fails clearly when pebble is missing: scripts/test installs it.
fn require_pebble() {
    assert!(
        Path::new("/usr/bin/pebble").exists() && Path::new("/usr/bin/pebble-challtestsrv").exists(),
        "pebble is not installed: run scripts/test, which installs it, or `apt-get install pebble`"
    );
}

/// A port no listener holds now, and that no other test of this binary was given: pebble must be
/// told our ports before we listen on them, so they are chosen ahead. The tests run in parallel,
/// and without the record two of them could be handed the same released port.
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// pebble and its DNS, validating challenges on `http_port` and `tls_port` of 127.0.0.1.
struct Pebble {
    _dns: Killed,
    _pebble: Killed,
    dir: tempfile::TempDir,
    /// The CA of pebble's own HTTPS certificate.
    https_ca: Pki,
    directory_port: u16,
    management_port: u16,
}

impl Pebble {
    /// pebble; with `eab` (key id, base64url MAC key), accounts need external account binding.
    async fn start(http_port: u16, tls_port: u16, eab: Option<(&str, &str)>) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let https_ca = Pki::new("pebble https ca");
        let leaf = https_ca.issue(&["localhost", "127.0.0.1"]);
        std::fs::write(dir.path().join("cert.pem"), &leaf.cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &leaf.key_pem).unwrap();
        std::fs::write(dir.path().join("ca.pem"), https_ca.ca_pem()).unwrap();
        let (directory_port, management_port, dns_port) = (free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{directory_port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": eab.is_some(),
            "externalAccountMACKeys": eab.map(|(id, key)| serde_json::json!({ id: key })),
        }});
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).unwrap();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let dns = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns_port}"), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port())])
            .stdin(Stdio::null())
            .stdout(log("dns.log"))
            .stderr(log("dns.err"))
            .spawn()
            .unwrap();
        let dns = Killed(dns);
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdin(Stdio::null())
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .unwrap();
        let pebble = Pebble { _dns: dns, _pebble: Killed(pebble), dir, https_ca, directory_port, management_port };
        for port in [directory_port, management_port, dns_port] {
            wait_for_port(port).await;
        }
        pebble
    }

    fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.directory_port)
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// pebble's root (it makes a new one at each start).
    async fn root(&self) -> CertificateDer<'static> {
        let config = support::client_tls(&self.https_ca.ca(), &[b"http/1.1"], None);
        let address: SocketAddr = format!("127.0.0.1:{}", self.management_port).parse().unwrap();
        let stream = support::tls_connect(address, config, "localhost").await;
        let mut h1 = support::H1::handshake(stream).await;
        let reply = h1.fetch(support::get("localhost", "/roots/0")).await;
        assert_eq!(reply.status, 200, "pebble's root: {}", reply.text());
        proxy::tls::certificates_from_pem(reply.text().as_bytes()).unwrap().remove(0)
    }

    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("pebble.log"), read("pebble.err"))
    }
}

async fn wait_for_port(port: u16) {
    let deadline = Instant::now() + support::PROMPTLY;
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A test: pebble, the ports the server listens on, and its configuration directory.
struct Bench {
    pebble: Pebble,
    main_port: u16,
    http_port: u16,
    dir: tempfile::TempDir,
}

impl Bench {
    async fn new() -> Bench {
        Bench::with_eab(None).await
    }

    async fn with_eab(eab: Option<(&str, &str)>) -> Bench {
        let (main_port, http_port) = (free_port(), free_port());
        let pebble = Pebble::start(http_port, main_port, eab).await;
        Bench { pebble, main_port, http_port, dir: tempfile::tempdir().unwrap() }
    }

    fn autocert_dir(&self) -> PathBuf {
        self.dir.path().join("autocert")
    }

    /// The configuration: autocert from pebble, routes for `hosts`.
    fn config(&self, main_port: u16, http_port: u16, directory_url: &str, hosts: &[&str]) -> String {
        let mut text = format!(
            "address: 127.0.0.1:{main_port}\n\
             http_redirect_addr: 127.0.0.1:{http_port}\n\
             health_check_addr: 127.0.0.1:0\n\
             metrics_address: 127.0.0.1:0\n\
             shared_secret: {secret}\n\
             cookie_secret: {secret}\n\
             authenticate_service_url: https://authenticate.example.com\n\
             autocert: true\n\
             autocert_ca: {directory_url}\n\
             autocert_trusted_ca_file: {ca}\n\
             autocert_dir: {dir}\n\
             autocert_email: admin@example.com\n\
             routes:\n",
            secret = shared_secret_base64(),
            ca = self.pebble.ca_path().display(),
            dir = self.autocert_dir().display(),
        );
        for host in hosts {
            text.push_str(&format!("  - from: https://{host}\n    to: http://127.0.0.1:9\n"));
        }
        text
    }

    fn write(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("config.yaml");
        let staging = self.dir.path().join("config.yaml.new");
        std::fs::write(&staging, text).unwrap();
        std::fs::rename(&staging, &path).unwrap();
        path
    }

    async fn start(&self, hosts: &[&str], env: &[(&str, &str)]) -> Pomerium {
        let text = self.config(self.main_port, self.http_port, &self.pebble.directory_url(), hosts);
        let path = self.write(&text);
        Pomerium::spawn_with(&path, self.pebble.https_ca.ca(), "serving", env).await
    }
}

/// Waits until `count` log lines say `message` for `name`.
async fn wait_for(server: &mut Pomerium, pebble: Option<&Pebble>, message: &str, name: &str, count: usize) {
    let deadline = Instant::now() + ISSUANCE;
    loop {
        let seen = named(server, message, name);
        if seen >= count {
            return;
        }
        server.assert_running();
        assert!(
            Instant::now() < deadline,
            "{count} × {message:?} for {name} not logged:\n{}\n{}",
            server.logs().join("\n"),
            pebble.map(Pebble::logs).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn named(server: &Pomerium, message: &str, name: &str) -> usize {
    server
        .json_logs()
        .iter()
        .filter(|line| line["fields"]["message"] == message && line["fields"]["name"] == name)
        .count()
}

/// The chain the main listener presents for `sni` (any chain accepted).
async fn served_chain(address: SocketAddr, sni: &str) -> Vec<CertificateDer<'static>> {
    let stream = support::tls_connect(address, support::accept_any_server(&[b"http/1.1"]), sni).await;
    stream.get_ref().1.peer_certificates().unwrap().to_vec()
}

/// Whether a client that trusts only `root` accepts what the server presents for `sni`.
async fn verifies(address: SocketAddr, root: &CertificateDer<'static>, sni: &str) -> Result<(), String> {
    let config = support::client_tls(root, &[b"http/1.1"], None);
    let stream = TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    match tokio::time::timeout(
        support::PROMPTLY,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

async fn metrics(server: &mut Pomerium) -> String {
    let address = server.listener("serving metrics").await;
    support::plain_get(address, "localhost", "/metrics").await.text()
}

#[tokio::test]
async fn http_01_issues_a_certificate_that_chains_to_pebble_and_a_restart_reuses_it() {
    require_pebble();
    let bench = Bench::new().await;
    let started = Instant::now();
    let mut server = bench.start(&["app.example.com"], &[]).await;
    let root = bench.pebble.root().await;
    // Until it is issued the self-signed certificate is served (it does not chain to pebble).
    wait_for(&mut server, Some(&bench.pebble), ISSUED, "app.example.com", 1).await;
    wait_for(&mut server, Some(&bench.pebble), ISSUED, "authenticate.example.com", 1).await;
    eprintln!("certificates issued by pebble {:?} after the start", started.elapsed());
    assert!(server.logs().iter().any(|l| l.contains("Http01")), "HTTP-01 was not the challenge");
    verifies(server.address, &root, "app.example.com").await.unwrap();
    verifies(server.address, &root, "authenticate.example.com").await.unwrap();
    let chain = served_chain(server.address, "app.example.com").await;
    assert!(chain.len() >= 2, "the intermediate is served with the leaf");
    let text = metrics(&mut server).await;
    assert!(text.contains("pomerium_autocert_certificates_pending 0\n"), "{text}");
    assert!(text.contains("pomerium_autocert_certificates_issued_total 2\n"), "{text}");
    // The plain listener still redirects what is not a challenge.
    let redirect =
        support::plain_get(format!("127.0.0.1:{}", bench.http_port).parse().unwrap(), "app.example.com", "/x").await;
    assert_eq!(redirect.status, 301);
    let challenge = support::plain_get(
        format!("127.0.0.1:{}", bench.http_port).parse().unwrap(),
        "app.example.com",
        "/.well-known/acme-challenge/unknown",
    )
    .await;
    assert_eq!(challenge.status, 404);

    // A restart serves the stored certificate without a new order.
    drop(server);
    let mut server = bench.start(&["app.example.com"], &[]).await;
    support::eventually("the stored certificate served after a restart", || async {
        verifies(server.address, &root, "app.example.com").await.ok()
    })
    .await;
    assert_eq!(served_chain(server.address, "app.example.com").await, chain);
    let text = metrics(&mut server).await;
    assert!(text.contains("pomerium_autocert_certificates_pending 0\n"), "{text}");
    assert_eq!(server.count_logs(ORDERING), 0, "{}", server.logs().join("\n"));
}

#[tokio::test]
async fn tls_alpn_01_issues_a_certificate_on_the_main_listener() {
    require_pebble();
    let bench = Bench::new().await;
    // Without `http_redirect_addr` there is no plain listener (as in Pomerium): TLS-ALPN-01.
    let text = bench.config(bench.main_port, bench.http_port, &bench.pebble.directory_url(), &["alpn.example.com"]);
    let text = text.replace(&format!("http_redirect_addr: 127.0.0.1:{}\n", bench.http_port), "");
    let path = bench.write(&text);
    let mut server = Pomerium::spawn_with(&path, bench.pebble.https_ca.ca(), "serving", &[]).await;
    let root = bench.pebble.root().await;
    wait_for(&mut server, Some(&bench.pebble), ISSUED, "alpn.example.com", 1).await;
    assert!(server.logs().iter().any(|l| l.contains("TlsAlpn01")), "TLS-ALPN-01 was not the challenge");
    verifies(server.address, &root, "alpn.example.com").await.unwrap();
    // No challenge pending: a handshake asking for acme-tls/1 gets nothing.
    let mut config = support::accept_any_server(&[b"acme-tls/1"]);
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let stream = TcpStream::connect(server.address).await.unwrap();
    let name = ServerName::try_from("alpn.example.com").unwrap();
    let handshake = tokio::time::timeout(
        support::PROMPTLY,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream),
    )
    .await
    .unwrap();
    assert!(handshake.is_err(), "acme-tls/1 answered without a pending challenge");
}

#[tokio::test]
async fn external_account_binding_is_sent_when_configured() {
    require_pebble();
    const MAC_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let bench = Bench::with_eab(Some(("kid-1", MAC_KEY))).await;
    let env = [("POMERIUM_AUTOCERT_RETRY_MS", "200")];
    // Without the binding pebble refuses the account.
    let mut server = bench.start(&["eab.example.com"], &env).await;
    wait_for(&mut server, None, FAILED_SELF_SIGNED, "eab.example.com", 1).await;
    let refused = server.logs().into_iter().find(|line| line.contains(FAILED_SELF_SIGNED)).unwrap();
    assert!(refused.contains("xternal"), "{refused}");
    drop(server);
    let text = bench.config(bench.main_port, bench.http_port, &bench.pebble.directory_url(), &["eab.example.com"]);
    let path = bench.write(&format!(
        "{text}autocert_eab_key_id: kid-1\nautocert_eab_mac_key: {MAC_KEY}\nautocert_must_staple: true\n"
    ));
    let mut server = Pomerium::spawn_with(&path, bench.pebble.https_ca.ca(), "serving", &env).await;
    wait_for(&mut server, Some(&bench.pebble), ISSUED, "eab.example.com", 1).await;
    verifies(server.address, &bench.pebble.root().await, "eab.example.com").await.unwrap();
    // (pebble 2.4 does not copy the must-staple extension; the CSR's is under unit test.)
}

#[tokio::test]
async fn a_reload_adds_a_host_and_renewal_replaces_the_certificate() {
    require_pebble();
    let bench = Bench::new().await;
    let env = [("POMERIUM_AUTOCERT_RENEW_AFTER_MS", "4000")];
    let mut server = bench.start(&["one.example.com"], &env).await;
    let root = bench.pebble.root().await;
    wait_for(&mut server, Some(&bench.pebble), ISSUED, "one.example.com", 1).await;
    let first = served_chain(server.address, "one.example.com").await;

    // A host added by a reload gets its certificate without a restart.
    let text = bench.config(
        bench.main_port,
        bench.http_port,
        &bench.pebble.directory_url(),
        &["one.example.com", "two.example.com"],
    );
    bench.write(&text);
    wait_for(&mut server, Some(&bench.pebble), ISSUED, "two.example.com", 1).await;
    verifies(server.address, &root, "two.example.com").await.unwrap();

    // Renewal: a certificate older than the window is ordered again and served.
    wait_for(&mut server, Some(&bench.pebble), ISSUED, "one.example.com", 2).await;
    support::eventually("the renewed certificate served", || async {
        (served_chain(server.address, "one.example.com").await != first).then_some(())
    })
    .await;
    verifies(server.address, &root, "one.example.com").await.unwrap();
}

#[tokio::test]
async fn a_replica_sharing_the_directory_does_not_order_the_same_certificate() {
    require_pebble();
    let bench = Bench::new().await;
    // The first replica holds each name's lock for 2 s before ordering: the second finds it held.
    let mut first = bench.start(&["shared.example.com"], &[("POMERIUM_AUTOCERT_ORDER_DELAY_MS", "2000")]).await;
    let root = bench.pebble.root().await;
    wait_for(&mut first, Some(&bench.pebble), ISSUED, "authenticate.example.com", 1).await;
    // The second replica: its own listeners, the same directory, started while the first orders.
    let text = bench.config(free_port(), free_port(), &bench.pebble.directory_url(), &["shared.example.com"]);
    let path = bench.dir.path().join("replica.yaml");
    std::fs::write(&path, text).unwrap();
    let mut second =
        Pomerium::spawn_with(&path, bench.pebble.https_ca.ca(), "serving", &[("POMERIUM_AUTOCERT_RETRY_MS", "200")])
            .await;
    wait_for(&mut second, None, WAITING, "shared.example.com", 1).await;
    wait_for(&mut first, Some(&bench.pebble), ISSUED, "shared.example.com", 1).await;
    let deadline = Instant::now() + ISSUANCE;
    while verifies(second.address, &root, "shared.example.com").await.is_err() {
        assert!(Instant::now() < deadline, "the replica never served the certificate:\n{}", second.logs().join("\n"));
        second.assert_running();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(named(&second, ORDERING, "shared.example.com"), 0, "{}", second.logs().join("\n"));
    assert_eq!(
        served_chain(second.address, "shared.example.com").await,
        served_chain(first.address, "shared.example.com").await
    );
}

#[tokio::test]
async fn an_unreachable_or_garbage_acme_server_keeps_the_self_signed_certificate_and_retries() {
    require_pebble();
    let bench = Bench::new().await;
    let env = [("POMERIUM_AUTOCERT_RETRY_MS", "200")];
    // Nothing listens there.
    let unreachable = format!("https://127.0.0.1:{}/dir", free_port());
    let path = bench.write(&bench.config(bench.main_port, bench.http_port, &unreachable, &["down.example.com"]));
    let mut server = Pomerium::spawn_with(&path, bench.pebble.https_ca.ca(), "serving", &env).await;
    wait_for(&mut server, None, FAILED_SELF_SIGNED, "down.example.com", 2).await;
    let chain = served_chain(server.address, "down.example.com").await;
    assert_eq!(chain.len(), 1, "the self-signed certificate is served");
    let text = metrics(&mut server).await;
    assert!(text.contains("pomerium_autocert_certificates_pending 2\n"), "{text}");
    assert!(text.contains("pomerium_autocert_failing 1\n"), "{text}");
    drop(server);

    // A directory that answers garbage.
    let garbage = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let garbage_address = garbage.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = garbage.accept().await else { return };
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;
                let body = "<html>this is not an ACME directory</html>";
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    let path = bench.write(&bench.config(
        bench.main_port,
        bench.http_port,
        &format!("http://{garbage_address}/dir"),
        &["garbage.example.com"],
    ));
    let mut server = Pomerium::spawn_with(&path, bench.pebble.https_ca.ca(), "serving", &env).await;
    wait_for(&mut server, None, FAILED_SELF_SIGNED, "garbage.example.com", 2).await;
    let line = server.json_logs().into_iter().find(|line| line["fields"]["message"] == FAILED_SELF_SIGNED).unwrap();
    let error = line["fields"]["error"].as_str().unwrap().to_owned();
    assert!(error.contains(&format!("http://{garbage_address}/dir")), "{error}");
    server.assert_running();
    assert_eq!(served_chain(server.address, "garbage.example.com").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_an_ingress_adds_gets_a_certificate_without_a_restart() {
    use fake_kube_api::FakeApi;
    use ingress::controller::{Controller, Settings, connect_databroker};
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
    fn object<K: for<'de> k8s_openapi::serde::Deserialize<'de>>(value: serde_json::Value) -> K {
        serde_json::from_value(value).unwrap()
    }
    require_pebble();
    let bench = Bench::new().await;
    let text = bench.config(bench.main_port, bench.http_port, &bench.pebble.directory_url(), &["file.example.com"]);
    let path = bench.write(&format!("{text}grpc_address: 127.0.0.1:0\ngrpc_insecure: true\n"));
    let mut server = Pomerium::spawn_with(&path, bench.pebble.https_ca.ca(), "serving", &[]).await;
    let grpc = server.listener("serving gRPC").await;
    let root = bench.pebble.root().await;
    wait_for(&mut server, Some(&bench.pebble), ISSUED, "file.example.com", 1).await;

    let api = FakeApi::start().await.unwrap();
    api.apply::<IngressClass>(&object(serde_json::json!({
        "metadata": {"name": "pomerium"},
        "spec": {"controller": "pomerium.io/ingress-controller"}
    })))
    .unwrap();
    api.apply::<Service>(&object(serde_json::json!({
        "metadata": {"name": "kube", "namespace": "web"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 9}]}
    })))
    .unwrap();
    api.apply::<Endpoints>(&object(serde_json::json!({
        "metadata": {"name": "kube", "namespace": "web"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": 9}]}]
    })))
    .unwrap();
    let settings = Settings::new(&format!("http://{grpc}"), &support::SHARED_KEY);
    let controller = Controller::new(settings.clone(), api.client().unwrap(), connect_databroker(&settings).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(controller.run(async {
        let _ = stopped.await;
    }));
    api.apply::<Ingress>(&object(serde_json::json!({
        "metadata": {"name": "kube", "namespace": "web",
                     "annotations": {"ingress.pomerium.io/allow_public_unauthenticated_access": "true"}},
        "spec": {
            "ingressClassName": "pomerium",
            "rules": [{"host": "kube.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "kube", "port": {"number": 80}}}}
            ]}}]
        }
    })))
    .unwrap();
    wait_for(&mut server, Some(&bench.pebble), ISSUED, "kube.example.com", 1).await;
    verifies(server.address, &root, "kube.example.com").await.unwrap();
    verifies(server.address, &root, "file.example.com").await.unwrap();
    stop.send(()).unwrap();
    controller.await.unwrap().unwrap();
}
