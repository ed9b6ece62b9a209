//! Programmatic sign-in, as Pomerium's command-line clients use it (system.md §3.1
//! `/.pomerium/api/v1/login`): the tool asks a route host for a sign-in URL that ends at its own
//! local listener, the user signs in at the real OpenID provider, the listener receives
//! `pomerium_jwt`, and the tool sends it as `Authorization: Pomerium …` (or the other places a
//! session handle may travel). Also `/.pomerium/jwt` and `/.pomerium/user` for such a client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use http::Method;
use support::browser::{Browser, OidcProvider};
use support::{Pomerium, Setup, echo_upstream};
use url::Url;

const CALLBACK: &str = "https://authenticate.test.localhost/oauth2/callback";

async fn start(setup: &Setup, idp: &OidcProvider) -> (Pomerium, support::Upstream) {
    let upstream = echo_upstream("app", None).await;
    let rest = format!(
        "{}access_log_fields: [method, path, query]\nruntime_flags:\n  pomerium_jwt_endpoint: true\n\
         routes:\n  - from: https://app.test.localhost\n    to: http://{}\n    allow_any_authenticated_user: true\n",
        idp.config(),
        upstream.address
    );
    std::fs::write(setup.config_path(), setup.config(&rest)).unwrap();
    (Pomerium::spawn(&setup.config_path(), setup.pki.ca()).await, upstream)
}

#[tokio::test]
async fn a_command_line_tool_signs_in_and_uses_the_returned_jwt() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let (pomerium, _upstream) = start(&setup, &idp).await;
    // The tool's local listener (any HTTP server will do: it only has to answer).
    let listener = echo_upstream("cli", None).await;
    let local = format!("http://localhost:{}/callback", listener.address.port());

    let mut browser = Browser::new(&pomerium);
    let mut login = Url::parse("https://app.test.localhost/.pomerium/api/v1/login").unwrap();
    login.query_pairs_mut().append_pair("pomerium_redirect_uri", &local);
    let reply = browser.send(Method::GET, &login, None, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.header("content-type").starts_with("text/plain"));
    let sign_in = Url::parse(reply.text().trim()).expect("the answer is a URL");
    assert_eq!(sign_in.host_str(), Some("authenticate.test.localhost"));
    assert!(sign_in.query_pairs().any(|(k, v)| k == "pomerium_programmatic" && v == "true"));

    // The user opens it and signs in; the flow ends at the tool's listener with the JWT.
    let page = browser.get(sign_in.as_str()).await;
    let page = browser.sign_in_at_provider(page, "alice").await;
    assert_eq!(page.url.host_str(), Some("localhost"), "{:?}", browser.visited);
    assert_eq!(page.url.path(), "/callback");
    let jwt = page
        .url
        .query_pairs()
        .find(|(k, _)| k == "pomerium_jwt")
        .map(|(_, v)| v.into_owned())
        .expect("the listener receives pomerium_jwt");
    assert_eq!(page.reply.seen().upstream(), "cli");

    // The tool has no cookies: it sends the JWT in each of the places Pomerium reads one from.
    let app = Url::parse("https://app.test.localhost/api/things").unwrap();
    let authorization = format!("Pomerium {jwt}");
    let bearer = format!("Bearer Pomerium-{jwt}");
    let mut in_query = app.clone();
    in_query.query_pairs_mut().append_pair("pomerium_session", &jwt);
    for (url, headers) in [
        (&app, vec![("authorization", authorization.as_str())]),
        (&app, vec![("authorization", bearer.as_str())]),
        (&app, vec![("x-pomerium-authorization", jwt.as_str())]),
        (&in_query, vec![]),
    ] {
        let mut tool = Browser::new(&pomerium);
        let mut headers = headers.clone();
        headers.push(("accept", "application/json"));
        let reply = tool.send(Method::GET, url, None, &headers).await;
        assert_eq!(reply.status, 200, "{headers:?}: {}", reply.text());
        let seen = reply.seen();
        // Pomerium's own credentials stay with the proxy.
        assert_eq!(seen.header("authorization"), None, "{headers:?}");
        assert_eq!(seen.header("x-pomerium-authorization"), None, "{headers:?}");
    }

    // `/.pomerium/user` and `/.pomerium/jwt` answer the tool too.
    let mut tool = Browser::new(&pomerium);
    let user = Url::parse("https://app.test.localhost/.pomerium/user").unwrap();
    let reply = tool.send(Method::GET, &user, None, &[("authorization", &authorization)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["email"], "alice@example.com");
    let raw = Url::parse("https://app.test.localhost/.pomerium/jwt").unwrap();
    let reply = tool.send(Method::GET, &raw, None, &[("authorization", &authorization)]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "application/jwt");
    assert_eq!(reply.text().split('.').count(), 3, "the assertion itself");

    // A garbled JWT is no session: 401 for the tool.
    let garbled = format!("Pomerium {}x", jwt);
    let reply =
        tool.send(Method::GET, &app, None, &[("authorization", &garbled), ("accept", "application/json")]).await;
    assert_eq!(reply.status, 401);

    // The handle went through the proxy in a query string, and its log never shows it.
    let logs = pomerium.logs().join("\n");
    assert!(logs.contains("pomerium_session=REDACTED"), "the access log line is there, redacted");
    assert!(!logs.contains(&jwt), "no session handle in the logs");
}

#[tokio::test]
async fn programmatic_login_only_returns_to_whitelisted_hosts() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let (pomerium, _upstream) = start(&setup, &idp).await;
    let mut browser = Browser::new(&pomerium);
    for target in ["https://evil.example.com/callback", "javascript:alert(1)", "not a url"] {
        let mut login = Url::parse("https://app.test.localhost/.pomerium/api/v1/login").unwrap();
        login.query_pairs_mut().append_pair("pomerium_redirect_uri", target);
        let reply = browser.send(Method::GET, &login, None, &[]).await;
        assert_eq!(reply.status, 400, "{target}: {}", reply.text());
        assert!(reply.header("location").is_empty());
    }
    let login = Url::parse("https://app.test.localhost/.pomerium/api/v1/login").unwrap();
    assert_eq!(browser.send(Method::GET, &login, None, &[]).await.status, 400, "no redirect URI at all");
}
