//! The sign-in in a real browser: headless Chromium (Debian's package), driven by
//! playwright-core (`tests/idp/browser.mjs`), types a user name into the real OpenID provider's
//! login form and lands on the upstream page through the real `pomerium` binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use std::path::PathBuf;
use std::process::Command;
use support::browser::OidcProvider;
use support::{Pomerium, Setup, echo_upstream};

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

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/idp/browser.mjs");
    let address = pomerium.address.to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg("https://wiki.test.localhost/welcome")
            .arg(address)
            .arg("alice")
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
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["url"], "https://wiki.test.localhost/welcome", "the browser lands where it started");
    // The page is the upstream's answer, which shows what it received: alice's identity.
    let page: serde_json::Value = serde_json::from_str(result["text"].as_str().unwrap()).unwrap();
    assert_eq!(page["upstream"], "wiki");
    assert_eq!(page["headers"]["x-pomerium-claim-email"][0], "alice@example.com");
    assert!(page["headers"]["x-pomerium-jwt-assertion"][0].as_str().is_some_and(|jwt| jwt.split('.').count() == 3));
}
