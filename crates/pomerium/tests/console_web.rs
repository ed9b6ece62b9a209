//! The web console in a real browser: the console (`pomerium-console`, in this process) behind a
//! route of the real `pomerium` binary, which signs the person in at the real OpenID provider and
//! injects `X-Pomerium-Jwt-Assertion`; headless Chromium (`tests/idp/console.mjs`) opens the form
//! of a new policy, saves it with a typo, sees the diagnostic with its line:column, fixes the
//! typo and sees the policy listed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests"
)]

mod support;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use support::browser::OidcProvider;
use support::{PROMPTLY, Setup};

const API_TOKEN: &str = "console-web-test-api-token-0123456789";

/// Zero's API on the console, signed in with the API token: (status, JSON).
async fn call(base: &str, token: Option<&str>, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut request = Request::builder().method(method).uri(format!("{base}/api/v0{path}"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request =
        request.header("content-type", "application/json").body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let response = tokio::time::timeout(PROMPTLY, client.request(request)).await.expect("an answer").unwrap();
    let status = response.status();
    let bytes = tokio::time::timeout(PROMPTLY, response.into_body().collect()).await.unwrap().unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Serves `body` (the route's JWKS as pomerium serves it) over plain HTTP on `listener`: the
/// console in this process trusts only the system's roots, not the test CA of pomerium's
/// certificate.
fn relay_jwks(listener: tokio::net::TcpListener, body: String) {
    support::json_upstream_on(listener, body);
}

#[tokio::test]
async fn a_person_fixes_a_policy_typo_in_the_web_console_with_chromium() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&["https://authenticate.test.localhost/oauth2/callback"], &[], None);
    let jwks_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_address = jwks_listener.local_addr().unwrap();
    let settings = console::settings::Settings {
        address: "127.0.0.1:0".to_owned(),
        insecure_server: true,
        storage: console::settings::Storage::Memory,
        base_domain: "test.localhost".to_owned(),
        api_tokens: vec![console::settings::ApiToken { name: "tests".to_owned(), token: API_TOKEN.to_owned() }],
        web_console_jwks_url: Some(format!("http://{jwks_address}/.well-known/pomerium/jwks.json")),
        ..console::settings::Settings::default()
    };
    let console = console::Console::open(settings).await.unwrap();
    let console_address = console.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(console.serve(async move {
        let _ = stopped.await;
    }));

    let base = format!("http://{console_address}");
    let (status, answer) = call(&base, None, Method::POST, "/token", json!({"refreshToken": API_TOKEN})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let token = answer["idToken"].as_str().unwrap().to_owned();
    let (_, orgs) = call(&base, Some(&token), Method::GET, "/organizations", Value::Null).await;
    let org = orgs[0]["id"].as_str().unwrap().to_owned();
    let (status, cluster) =
        call(&base, Some(&token), Method::POST, &format!("/organizations/{org}/clusters"), json!({"name": "web"}))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{cluster}");
    let cluster_id = cluster["id"].as_str().unwrap().to_owned();

    // The console's route: the person signed in, the assertion injected, the host kept (the
    // assertion's audience).
    let routes = format!(
        "routes:\n  - from: https://console.test.localhost\n    to: http://{console_address}\n    pass_identity_headers: true\n    preserve_host_header: true\n    allowed_domains: [example.com]\n"
    );
    let pomerium = setup.start(&format!("{}{routes}", idp.config())).await;
    let jwks = pomerium.get("console.test.localhost", "/.well-known/pomerium/jwks.json").await;
    assert!(jwks.json()["keys"][0]["kid"].is_string(), "{}", jwks.text());
    relay_jwks(jwks_listener, jwks.text());

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/idp/console.mjs");
    let args = [
        format!("https://console.test.localhost/console/clusters/{cluster_id}/policies/new"),
        pomerium.address.to_string(),
        "alice".to_owned(),
        "*.test.localhost".to_owned(),
        "admins only".to_owned(),
    ];
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(args)
            .output()
            .expect("node runs (Chromium must be installed: scripts/test installs it)")
    });
    let output =
        tokio::time::timeout(std::time::Duration::from_secs(120), run).await.expect("the browser finishes").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser run failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        pomerium.logs().join("\n")
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    // The refused save: the diagnostic with the typo's line:column, the text kept in the form.
    let typo = result["typo"].as_str().unwrap();
    let (line, column) =
        typo.lines().enumerate().find_map(|(n, text)| text.find("\"emial\"").map(|at| (n + 1, at + 1))).unwrap();
    let diagnostics = result["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains("ppl::"), "{result}");
    assert!(diagnostics.contains(&format!(" at {line}:{column}: ")), "line {line}, column {column}: {result}");
    assert!(diagnostics.contains("help: "), "{result}");
    assert_eq!(result["kept"], true, "the form keeps the text: {result}");
    // Fixed: saved and listed.
    assert_eq!(result["url"], format!("https://console.test.localhost/console/clusters/{cluster_id}/policies"));
    assert!(result["text"].as_str().unwrap().contains("admins only"), "{result}");
    assert!(result["text"].as_str().unwrap().contains("signed in as alice@example.com"), "{result}");
    let (_, policies) = call(
        &base,
        Some(&token),
        Method::GET,
        &format!("/organizations/{org}/policies?namespaceId={cluster_id}"),
        Value::Null,
    )
    .await;
    assert_eq!(policies[0]["name"], "admins only", "{policies}");
    assert_eq!(policies[0]["ppl"]["allow"]["and"][0]["email"]["is"], "user@example.com", "{policies}");

    drop(stop);
    tokio::time::timeout(PROMPTLY, served).await.expect("the console stops").unwrap();
}
