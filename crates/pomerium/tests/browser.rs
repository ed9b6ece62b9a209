//! The sign-in in a real browser: headless Chromium (Debian's package), driven by
//! playwright-core (`tests/idp/browser.mjs`), types a user name into the real OpenID provider's
//! login form and lands on the upstream page through the real `pomerium` binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use std::path::PathBuf;
use std::process::Command;
use support::browser::OidcProvider;
use support::{Pomerium, Setup, echo_upstream};

/// Runs `tests/idp/browser.mjs`: Chromium opens `start` (names of `hosts` on port 443 lead to
/// `pomerium`), signs in as `login`, and reports the page it lands on.
async fn chromium(start: &str, pomerium: &Pomerium, login: &str, hosts: &str) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/idp/browser.mjs");
    let args = [start.to_owned(), pomerium.address.to_string(), login.to_owned(), hosts.to_owned()];
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(args)
            .output()
            .expect("node runs (Chromium must be installed: scripts/test installs it)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser run failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        pomerium.logs().join("\n")
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[tokio::test]
async fn a_person_signs_in_with_chromium_and_sees_the_upstream_page() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&["https://authenticate.test.localhost/oauth2/callback"], &[], None);
    let upstream = echo_upstream("wiki", None).await;
    let routes = format!(
        "jwt_claims_headers: [email]\nroutes:\n  - from: https://wiki.test.localhost\n    to: http://{}\n    pass_identity_headers: true\n    allowed_domains: [example.com]\n",
        upstream.address
    );
    let text = setup.config(&format!("{}{routes}", idp.config()));
    std::fs::write(setup.config_path(), text).unwrap();
    let pomerium = Pomerium::spawn(&setup.config_path(), setup.pki.ca()).await;

    let result = chromium("https://wiki.test.localhost/welcome", &pomerium, "alice", "*.test.localhost").await;
    assert_eq!(result["url"], "https://wiki.test.localhost/welcome", "the browser lands where it started");
    // The page is the upstream's answer, which shows what it received: alice's identity.
    let page: serde_json::Value = serde_json::from_str(result["text"].as_str().unwrap()).unwrap();
    assert_eq!(page["upstream"], "wiki");
    assert_eq!(page["headers"]["x-pomerium-claim-email"][0], "alice@example.com");
    assert!(page["headers"]["x-pomerium-jwt-assertion"][0].as_str().is_some_and(|jwt| jwt.split('.').count() == 3));
}

/// The README's quickstart in a real browser: `examples/config.yaml` as it is (its listener moved
/// to a free port and the example upstream replaced by the test's), the self-signed certificate,
/// and the development identity provider's page, where Chromium clicks "Sign in as alice" and
/// lands on the wiki with alice's identity.
#[tokio::test]
async fn the_quickstart_signs_in_with_the_development_provider_in_chromium() {
    let setup = Setup::new();
    let upstream = echo_upstream("whoami", None).await;
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/config.yaml")).unwrap();
    for expected in ["address: \":8443\"", "http://localhost:8001", "https://authenticate.localhost.pomerium.io:8443"] {
        assert!(example.contains(expected), "the example config has {expected}");
    }
    // Chromium reaches the server on port 443 of these names (see browser.mjs), so the
    // authenticate URL drops its :8443.
    let text = example
        .replace("address: \":8443\"", "address: 127.0.0.1:0")
        .replace("http://localhost:8001", &format!("http://{}", upstream.address))
        .replace("https://authenticate.localhost.pomerium.io:8443", "https://authenticate.localhost.pomerium.io");
    std::fs::write(setup.config_path(), text).unwrap();
    let pomerium = Pomerium::spawn(&setup.config_path(), setup.pki.ca()).await;
    let result =
        chromium("https://wiki.localhost.pomerium.io/start", &pomerium, "alice@example.com", "*.localhost.pomerium.io")
            .await;
    assert_eq!(result["url"], "https://wiki.localhost.pomerium.io/start", "the browser lands where it started");
    let page: serde_json::Value = serde_json::from_str(result["text"].as_str().unwrap()).unwrap();
    assert_eq!(page["upstream"], "whoami");
    assert_eq!(page["headers"]["x-pomerium-claim-email"][0], "alice@example.com");
    assert_eq!(page["headers"]["x-pomerium-claim-groups"][0], "engineering");
}
