//! The deny page explains itself on a route with `show_error_details`: what about the signed-in
//! user's request fell short (their own email, never the policy's list of other users), each
//! sub-policy's explanation and remediation (Pomerium's policy evaluation traces), and what to
//! do; in HTML for browsers and in JSON for API clients. Without the option, none of it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use http::Method;
use support::browser::{Browser, OidcProvider};
use support::{Pomerium, Setup, echo_upstream, shared_secret_base64};
use url::Url;

const CALLBACK: &str = "https://authenticate.test.localhost/oauth2/callback";

fn config(idp: &OidcProvider, upstream: std::net::SocketAddr, setup: &Setup) -> String {
    let route = |host: &str, details: bool| {
        format!(
            "\x20 - from: https://{host}.test.localhost\n\
             \x20   to: http://{upstream}\n\
             \x20   show_error_details: {details}\n\
             \x20   policy:\n\
             \x20     allow:\n\
             \x20       or:\n\
             \x20         - email:\n\
             \x20             in: [carol@example.com, dave@example.com]\n\
             \x20   sub_policies:\n\
             \x20     - id: eng\n\
             \x20       name: Engineering\n\
             \x20       explanation: Only engineers may use the build dashboard.\n\
             \x20       remediation: Ask the IT help desk to add you to the eng group.\n\
             \x20       source_ppl: '{{\"allow\": {{\"or\": [{{\"groups\": {{\"has\": \"eng-secret-group\"}}}}]}}}}'\n"
        )
    };
    format!(
        "shared_secret: {secret}\n\
         cookie_secret: {secret}\n\
         address: 127.0.0.1:0\n\
         authenticate_service_url: https://authenticate.test.localhost\n\
         certificates:\n  - cert: {cert}\n    key: {key}\n\
         {idp}\
         routes:\n\
         \x20 - from: https://home.test.localhost\n\
         \x20   to: http://{upstream}\n\
         \x20   allow_any_authenticated_user: true\n\
         {explained}{quiet}",
        secret = shared_secret_base64(),
        cert = setup.cert_path.display(),
        key = setup.key_path.display(),
        idp = idp.config(),
        explained = route("app", true),
        quiet = route("quiet", false),
    )
}

#[tokio::test]
async fn a_denied_user_is_told_why_without_the_policys_values() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let upstream = echo_upstream("app", None).await;
    let pomerium =
        Pomerium::spawn(&setup.write("config.yaml", &config(&idp, upstream.address, &setup)), setup.pki.ca()).await;
    let mut browser = Browser::new(&pomerium);
    let page = browser.open_provider_login("https://home.test.localhost/").await;
    let page = browser.sign_in_at_provider(page, "alice").await;
    assert_eq!(page.reply.status, 200, "{:?}", browser.visited);
    // Each route host gets the session through the authenticate service's redirects.
    for host in ["app", "quiet"] {
        let page = browser.get(&format!("https://{host}.test.localhost/")).await;
        assert_eq!(page.reply.status, 403, "{host}: {:?}", browser.visited);
    }

    let html = [("accept", "text/html")];
    let reply = browser.send(Method::GET, &Url::parse("https://app.test.localhost/").unwrap(), None, &html).await;
    assert_eq!(reply.status, 403);
    let page = reply.text();
    for expected in [
        "This route&#39;s policy does not allow this request.",
        "your email address is not one this route allows (yours: email alice@example.com)",
        "What you can do:",
        "<strong>Engineering</strong> does not allow this request",
        "Only engineers may use the build dashboard.",
        "Ask the IT help desk to add you to the eng group.",
        "email-unauthorized",
    ] {
        assert!(page.contains(expected), "`{expected}` missing from the deny page:\n{page}");
    }
    for secret in ["carol@", "dave@", "eng-secret-group"] {
        assert!(!page.contains(secret), "the deny page leaks `{secret}`:\n{page}");
    }

    let json = [("accept", "application/json")];
    let reply = browser.send(Method::GET, &Url::parse("https://app.test.localhost/").unwrap(), None, &json).await;
    assert_eq!(reply.status, 403);
    let body = reply.json();
    assert_eq!(body["error"], "Forbidden");
    assert_eq!(
        body["explanation"]["findings"][0],
        "your email address is not one this route allows (yours: email alice@example.com)"
    );
    assert_eq!(body["policy_evaluation_traces"][0]["id"], "eng");
    assert_eq!(body["policy_evaluation_traces"][0]["allow"], false);
    assert!(!reply.text().contains("carol@"), "{}", reply.text());

    let reply = browser.send(Method::GET, &Url::parse("https://quiet.test.localhost/").unwrap(), None, &html).await;
    assert_eq!(reply.status, 403);
    let page = reply.text();
    assert!(!page.contains("alice@example.com") && !page.contains("Engineering"), "no details unless asked:\n{page}");
    assert_eq!(upstream.requests(), 1, "only the signed-in landing reached the upstream");
}
