//! `pomerium-ingress-controller controller`, the process: its Kubernetes configuration from
//! `KUBECONFIG` (naming the fake API server), the databroker over loopback gRPC, the probe and
//! metrics endpoints, SIGTERM; and its refusals of bad flags.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use base64::Engine as _;
use fake_kube_api::FakeApi;
use serde_json::json;
use std::io::{Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

const BINARY: &str = env!("CARGO_BIN_EXE_pomerium-ingress-controller");

/// The variables the controller reads, so that the test's environment does not leak in.
const CONTROLLER_VARIABLES: &[&str] = &[
    "DATABROKER_SERVICE_URL",
    "DATABROKER_TLS_CA",
    "DATABROKER_TLS_CA_FILE",
    "DATABROKER_TLS_INSECURE_SKIP_VERIFY",
    "SHARED_SECRET",
    "SHARED_SECRET_FILE",
    "HEALTH_PROBE_BIND_ADDRESS",
    "METRICS_BIND_ADDRESS",
    "NAMESPACES",
    "UPDATE_STATUS_FROM_SERVICE",
    "DEBOUNCE_MS",
    "KUBECONFIG",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
];

fn command() -> Command {
    let mut command = Command::new(BINARY);
    for variable in CONTROLLER_VARIABLES {
        command.env_remove(variable);
    }
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` over HTTP/1.1: the status code and the body, or `None` when nothing listens.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Some((status, body))
}

struct Process {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Process {
    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_process_writes_routes_serves_probes_and_metrics_and_stops_on_sigterm() {
    let api = FakeApi::start().await.unwrap();
    api.apply(&class("pomerium", OURS, true)).unwrap();
    api.apply(&service("web", "app")).unwrap();
    let databroker = Databroker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let secret_file = dir.path().join("shared-secret");
    std::fs::write(&secret_file, base64::engine::general_purpose::STANDARD.encode(SECRET)).unwrap();
    let (health, metrics) = (free_port(), free_port());
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = command()
        .arg("controller")
        .arg(format!("--databroker-service-url={}", databroker.url))
        .arg(format!("--health-probe-bind-address=127.0.0.1:{health}"))
        .arg(format!("--metrics-bind-address=127.0.0.1:{metrics}"))
        .env("SHARED_SECRET_FILE", &secret_file)
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let process = Process { child, log };

    eventually(Duration::from_secs(20), "readyz", || async {
        match get(health, "/readyz") {
            Some((200, _)) => Ok(()),
            other => Err(format!("{other:?}\n{}", process.log())),
        }
    })
    .await;
    assert_eq!(get(health, "/healthz"), Some((200, "ok\n".to_owned())));

    // A classless ingress: ours, since our class is the default.
    api.apply(&with_class(ingress("web", "app", "app.example.com", "app", json!({})), None)).unwrap();
    eventually(Duration::from_secs(2), "the route", || async {
        let routes = databroker.routes().await;
        if summary(&routes) == ["https://app.example.com /"] {
            Ok(())
        } else {
            Err(format!("{routes:?}\n{}", process.log()))
        }
    })
    .await;

    // The counters are updated once the reconcile that wrote the route has finished.
    let text = eventually(Duration::from_secs(5), "the metrics of that reconcile", || async {
        match get(metrics, "/metrics") {
            Some((200, text)) if text.contains("pomerium_ingress_controller_ingresses{outcome=\"applied\"} 1") => {
                Ok(text)
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    for line in [
        "# TYPE pomerium_ingress_controller_reconciles_total counter",
        "pomerium_ingress_controller_reconcile_errors_total 0",
        "pomerium_ingress_controller_ingresses{outcome=\"applied\"} 1",
        "pomerium_ingress_controller_ingresses{outcome=\"failed\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    let writes = text.lines().find_map(|l| l.strip_prefix("pomerium_ingress_controller_config_writes_total "));
    assert_eq!(writes, Some("1"), "{text}");
    let last_success =
        text.lines().find_map(|l| l.strip_prefix("pomerium_ingress_controller_last_success_timestamp_seconds "));
    assert!(last_success.unwrap().parse::<u64>().unwrap() > 1_600_000_000, "{text}");
    assert_eq!(get(metrics, "/healthz").map(|(status, _)| status), Some(404), "each listener serves its own paths");

    // SIGTERM: a clean exit, promptly.
    let mut process = process;
    let killed = Command::new("kill").arg("-TERM").arg(process.child.id().to_string()).status().unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = process.child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "still running 10 s after SIGTERM:\n{}", process.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}\n{}", process.log());
    assert!(process.log().contains("shutting down"), "{}", process.log());
}

fn run(args: &[&str]) -> (i32, String) {
    let output = command().args(args).stdin(Stdio::null()).output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn bad_flags_are_refused_before_anything_starts() {
    let (code, stderr) = run(&["controller"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("error: invalid `--shared-secret`: a shared secret is required"), "{stderr}");

    let (code, stderr) = run(&["controller", "--shared-secret=c2VjcmV0", "--update-status-from-service=proxy"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`proxy` is not `namespace/name`"), "{stderr}");

    let (code, stderr) = run(&["controller", "--shared-secret=c2VjcmV0", "--no-such-flag"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

#[test]
fn an_https_databroker_url_with_an_unusable_ca_file_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    // A kubeconfig that names a server nobody needs to reach: the databroker check comes first.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"http://127.0.0.1:9\"}\n\
         users:\n- name: u\n  user: {}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n",
    )
    .unwrap();
    // The file exists (the flag check passes) but holds no certificate: the client refuses it.
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let output = command()
        .args(["controller", "--shared-secret=c2VjcmV0", "--databroker-service-url=https://databroker:5443"])
        .arg(format!("--databroker-tls-ca-file={}", ca.display()))
        .args(["--health-probe-bind-address=0", "--metrics-bind-address=0"])
        .env("KUBECONFIG", &kubeconfig)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("error: databroker `https://databroker:5443`: databroker TLS CA: no certificate in the PEM text"),
        "{stderr}"
    );
    assert!(!stderr.contains("starting the ingress controller"), "refused before starting: {stderr}");
}
