//! Hosted authenticate (Pomerium's stateless flow) end to end, both sides ours: pomerium A is
//! the authenticate service in front of the test OpenID provider; pomerium B is a cluster with
//! its own shared secret, `authenticate_service_url` = A and
//! `DEBUG_FORCE_AUTHENTICATE_FLOW=stateless`. The sign-in request travels sealed (HPKE) to A's
//! key, the identity comes back sealed to B's, B makes the session in its own databroker and
//! signs the upstream's assertion with its own key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use authenticate::hpke::{self, PrivateKey, Version};
use base64::Engine as _;
use http::Method;
use support::browser::{Browser, OidcProvider};
use support::{Pomerium, Setup, echo_upstream, example_com_route};
use url::Url;

const AUTHENTICATE: &str = "https://authenticate.test.localhost";
/// B's shared secret (A's is `support::SHARED_KEY`).
const CLUSTER_KEY: [u8; 32] = [9; 32];

struct Deployment {
    _setup: Setup,
    idp: OidcProvider,
    a: Pomerium,
    b: Pomerium,
    _upstream: support::Upstream,
}

async fn deploy() -> Deployment {
    let setup = Setup::new();
    let idp = OidcProvider::start(
        &[&format!("{AUTHENTICATE}/oauth2/callback")],
        &[&format!("{AUTHENTICATE}/.pomerium/signed_out")],
        None,
    );
    // A answers B's key fetch on `localhost` too.
    let leaf = setup.pki.issue(&["*.test.localhost", "test.localhost", "localhost"]);
    let a_cert = setup.write("a.pem", &leaf.cert_pem);
    let a_key = setup.write("a-key.pem", &leaf.key_pem);
    let a_text = setup
        .config(&idp.config())
        .replace(&setup.cert_path.display().to_string(), &a_cert.display().to_string())
        .replace(&setup.key_path.display().to_string(), &a_key.display().to_string());
    let a_path = setup.write("a.yaml", &a_text);
    let a = Pomerium::spawn(&a_path, setup.pki.ca()).await;

    let upstream = echo_upstream("app", None).await;
    let secret = base64::engine::general_purpose::STANDARD.encode(CLUSTER_KEY);
    let b_text = format!(
        "address: 127.0.0.1:0\n\
         health_check_addr: 127.0.0.1:0\n\
         shared_secret: {secret}\n\
         cookie_secret: {secret}\n\
         authenticate_service_url: {AUTHENTICATE}\n\
         authenticate_internal_service_url: https://localhost:{port}\n\
         certificate_authority: {ca}\n\
         certificates:\n  - cert: {cert}\n    key: {key}\n\
         routes:\n\
         {app}",
        port = a.address.port(),
        ca = support::base64(&setup.pki.ca_pem()),
        cert = setup.cert_path.display(),
        key = setup.key_path.display(),
        app = example_com_route("app", upstream.address),
    );
    let b_path = setup.write("b.yaml", &b_text);
    let b = Pomerium::spawn_with(&b_path, setup.pki.ca(), "serving", &[("DEBUG_FORCE_AUTHENTICATE_FLOW", "stateless")])
        .await;
    Deployment { _setup: setup, idp, a, b, _upstream: upstream }
}

fn new_browser(deployment: &Deployment) -> Browser {
    let mut browser = Browser::new(&deployment.b);
    browser.hosts.insert("authenticate.test.localhost".into(), deployment.a.address);
    browser
}

fn logs(deployment: &Deployment) -> String {
    format!("A:\n{}\nB:\n{}", deployment.a.logs().join("\n"), deployment.b.logs().join("\n"))
}

async fn get(browser: &mut Browser, url: &str) -> support::Reply {
    browser.send(Method::GET, &Url::parse(url).unwrap(), None, &[("accept", "text/html")]).await
}

#[tokio::test]
async fn a_cluster_signs_in_through_our_authenticate_service() {
    let deployment = deploy().await;
    let mut browser = new_browser(&deployment);

    // A serves its key, derived from its shared secret.
    let key = get(&mut browser, &format!("{AUTHENTICATE}/.well-known/pomerium/hpke-public-key")).await;
    assert_eq!(key.status, 200);
    assert_eq!(key.header("content-type"), "application/octet-stream");
    assert_eq!(key.header("cache-control"), "max-age=60");
    assert_eq!(&key.body[..], PrivateKey::derive(&support::SHARED_KEY).public_key().as_bytes());

    // The route sends the browser to A with the request sealed, not signed.
    let first = get(&mut browser, "https://app.test.localhost/hello?x=1").await;
    assert_eq!(first.status, 302, "{}", logs(&deployment));
    let sign_in = Url::parse(first.header("location")).unwrap();
    assert_eq!(sign_in.host_str(), Some("authenticate.test.localhost"));
    assert_eq!(sign_in.path(), "/.pomerium/sign_in");
    let names: Vec<String> = sign_in.query_pairs().map(|(k, _)| k.into_owned()).collect();
    assert_eq!(names, ["k", "q"], "only the sender's key and the sealed query: {sign_in}");
    // Sealed for A: A's key opens it, and it says where to return.
    let pairs: Vec<(String, String)> = sign_in.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let opened = hpke::open_values(&PrivateKey::derive(&support::SHARED_KEY), &pairs).unwrap();
    assert_eq!(&opened.sender, PrivateKey::derive(&CLUSTER_KEY).public_key());
    assert_eq!(opened.get("pomerium_redirect_uri"), Some("https://app.test.localhost/hello?x=1"));

    let page = browser.open_provider_login(sign_in.as_str()).await;
    let page = browser.sign_in_at_provider(page, "alice").await;
    assert_eq!(page.reply.status, 200, "{:?}\n{}", browser.visited, logs(&deployment));
    assert_eq!(page.url.as_str(), "https://app.test.localhost/hello?x=1", "back where the user started");
    let callback = browser
        .visited
        .iter()
        .find(|u| u.starts_with("https://app.test.localhost/.pomerium/callback/?"))
        .expect("the identity came back to the cluster's callback")
        .clone();
    assert!(callback.contains("k=") && callback.contains("&q="), "{callback}");
    assert!(!callback.contains("alice"), "the identity travels sealed: {callback}");

    // The upstream gets an assertion signed by B's key (B's JWKS), with the provider's claims.
    let seen = page.reply.seen();
    let b_jwks = browser
        .send(Method::GET, &Url::parse("https://app.test.localhost/.well-known/pomerium/jwks.json").unwrap(), None, &[])
        .await
        .json();
    let a_jwks = browser
        .send(Method::GET, &Url::parse(&format!("{AUTHENTICATE}/.well-known/pomerium/jwks.json")).unwrap(), None, &[])
        .await
        .json();
    assert_ne!(b_jwks["keys"][0]["kid"], a_jwks["keys"][0]["kid"], "each side has its own signing key");
    let claims = support::verify_es256(&seen.header("x-pomerium-jwt-assertion").unwrap(), &b_jwks);
    assert_eq!(claims["iss"], "app.test.localhost");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["groups"], serde_json::json!(["engineering", "staff"]));
    assert!(claims["sid"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(browser.cookie("app.test.localhost", "_pomerium").is_some());

    // The callback URL, replayed (the same browser or another), opens no second session.
    let mut thief = Browser::new(&deployment.b);
    let replay = get(&mut thief, &callback).await;
    assert_eq!(replay.status, 400, "{}", replay.text());
    assert!(replay.text().contains("used already"), "{}", replay.text());
    assert!(thief.cookie("app.test.localhost", "_pomerium").is_none());

    // A second route visit needs no provider: A still has alice's session.
    let mut again = new_browser(&deployment);
    again.jar.insert(
        "authenticate.test.localhost".into(),
        browser.jar.get("authenticate.test.localhost").cloned().unwrap_or_default(),
    );
    let page = again.get("https://app.test.localhost/other").await;
    assert_eq!(page.reply.status, 200, "{:?}", again.visited);
    assert_eq!(page.reply.seen().target(), "/other");
    assert!(!again.visited.iter().any(|u| u.contains("/interaction/")), "{:?}", again.visited);
}

/// Replaces the `q` parameter of a sealed URL.
fn with_query(url: &Url, q: &str) -> Url {
    let mut out = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let value = if k == "q" { q.to_owned() } else { v.into_owned() };
            (k.into_owned(), value)
        })
        .collect();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out
}

/// A callback sealed by `sender` for B, carrying a profile for `login`, issued at `issued_ms`.
fn forged_callback(sender: &PrivateKey, issued_ms: i64) -> Url {
    let profile = serde_json::json!({
        "providerId": "x",
        "claims": {"sub": "mallory", "email": "mallory@example.com"}
    });
    let mut values = vec![
        ("pomerium_redirect_uri".to_owned(), "https://app.test.localhost/".to_owned()),
        ("pomerium_identity_profile".to_owned(), profile.to_string()),
    ];
    values.extend(hpke::time_parameters(issued_ms, 5 * 60 * 1000));
    let sealed =
        hpke::seal_values(Version::V1, sender, PrivateKey::derive(&CLUSTER_KEY).public_key(), &values).unwrap();
    let mut url = Url::parse("https://app.test.localhost/.pomerium/callback/").unwrap();
    url.query_pairs_mut().extend_pairs(sealed);
    url
}

#[tokio::test]
async fn tampered_forged_and_expired_sealed_links_are_refused() {
    let deployment = deploy().await;
    let mut browser = new_browser(&deployment);
    let now_ms =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap();

    // A sign-in request with a byte of its sealed query changed: 400 at A, and no provider.
    let first = get(&mut browser, "https://app.test.localhost/").await;
    let sign_in = Url::parse(first.header("location")).unwrap();
    let q = sign_in.query_pairs().find(|(k, _)| k == "q").unwrap().1.into_owned();
    let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&q).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let tampered = with_query(&sign_in, &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes));
    let reply = browser.send(Method::GET, &tampered, None, &[("accept", "text/html")]).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("cannot be opened"), "{}", reply.text());
    assert!(reply.headers.get("location").is_none(), "no redirect to the provider");

    // A callback sealed by anyone but A (here: a key of our own) makes no session.
    let forged = forged_callback(&PrivateKey::generate(), now_ms);
    let reply = browser.send(Method::GET, &forged, None, &[]).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("not sealed by the authenticate service"), "{}", reply.text());

    // Sealed by A's key (the test knows A's secret) but issued an hour ago: expired.
    let a_key = PrivateKey::derive(&support::SHARED_KEY);
    let old = forged_callback(&a_key, now_ms - 3_600_000);
    let reply = browser.send(Method::GET, &old, None, &[]).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("expired"), "{}", reply.text());

    // A tampered callback, and garbage where the sealed values go.
    let good = forged_callback(&a_key, now_ms);
    let q = good.query_pairs().find(|(k, _)| k == "pomerium_hpke_query").unwrap().1.into_owned();
    let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&q).unwrap();
    bytes[40] ^= 1;
    let mut bad = good.clone();
    bad.query_pairs_mut()
        .clear()
        .append_pair("pomerium_hpke_sender_pub", &a_key.public_key().to_base64())
        .append_pair("pomerium_hpke_query", &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes));
    for url in [bad.as_str(), "https://app.test.localhost/.pomerium/callback/?k=%00&q=%ff"] {
        let reply = browser.send(Method::GET, &Url::parse(url).unwrap(), None, &[]).await;
        assert_eq!(reply.status, 400, "{url}: {}", reply.text());
    }
    assert!(browser.cookie("app.test.localhost", "_pomerium").is_none());

    // The same, untouched and in time, is accepted: the refusals above were for what was wrong.
    let reply = browser.send(Method::GET, &good, None, &[]).await;
    assert_eq!(reply.status, 302, "{}\n{}", reply.text(), logs(&deployment));
    assert!(browser.cookie("app.test.localhost", "_pomerium").is_some());
}

#[tokio::test]
async fn sign_out_ends_the_cluster_session_and_then_the_authenticate_session() {
    let deployment = deploy().await;
    let mut browser = new_browser(&deployment);
    let page = browser.open_provider_login("https://app.test.localhost/").await;
    let page = browser.sign_in_at_provider(page, "alice").await;
    assert_eq!(page.reply.status, 200, "{:?}\n{}", browser.visited, logs(&deployment));
    let cookie = browser.cookie("app.test.localhost", "_pomerium").unwrap();

    let out = browser
        .send(
            Method::POST,
            &Url::parse("https://app.test.localhost/.pomerium/sign_out").unwrap(),
            Some(&[]),
            &[("origin", "https://app.test.localhost")],
        )
        .await;
    assert_eq!(out.status, 302);
    assert!(browser.cookie("app.test.localhost", "_pomerium").is_none(), "the cluster's cookie is cleared");
    let location = Url::parse(out.header("location")).unwrap();
    assert_eq!(location.as_str().split('?').next(), Some(&*format!("{AUTHENTICATE}/.pomerium/sign_out")));

    // The old cookie is no session on the cluster any more: its record was deleted (the deletion
    // reaches the serving side through the databroker's sync, so it may take a moment).
    let reply = support::eventually("the signed-out session to be refused", || async {
        let mut replay = Browser::new(&deployment.b);
        replay.set_cookie("app.test.localhost", "_pomerium", &cookie);
        let reply = get(&mut replay, "https://app.test.localhost/").await;
        (reply.status == 302).then_some(reply)
    })
    .await;
    assert!(reply.header("location").starts_with(&format!("{AUTHENTICATE}/.pomerium/sign_in?k=")));

    // A does not know B's signature, so it asks; confirmed, A's session ends at the provider too.
    let confirm = browser.follow(Method::GET, location, None).await;
    assert_eq!(confirm.reply.status, 200);
    let end = browser.submit_first_form_containing(confirm, "method=\"post\"").await;
    assert!(end.reply.status.is_success(), "{} {:?}", end.reply.status, browser.visited);
    assert!(browser.cookie("authenticate.test.localhost", "_pomerium_authenticate").is_none());

    // Signing in again goes through the provider: A's session is gone too.
    let seen = browser.visited.len();
    browser.get("https://app.test.localhost/").await;
    assert!(
        browser.visited[seen..].iter().any(|u| u.starts_with(&deployment.idp.issuer)),
        "{:?}",
        &browser.visited[seen..]
    );
}

#[tokio::test]
async fn a_command_line_tool_signs_in_through_the_authenticate_service() {
    let deployment = deploy().await;
    // The tool's local listener (any HTTP server will do: it only has to answer).
    let listener = echo_upstream("cli", None).await;
    let local = format!("http://localhost:{}/callback", listener.address.port());
    let mut browser = new_browser(&deployment);
    let mut login = Url::parse("https://app.test.localhost/.pomerium/api/v1/login").unwrap();
    login.query_pairs_mut().append_pair("pomerium_redirect_uri", &local);
    let reply = browser.send(Method::GET, &login, None, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sign_in = Url::parse(reply.text().trim()).expect("the answer is a URL");
    assert_eq!(sign_in.host_str(), Some("authenticate.test.localhost"));
    let names: Vec<String> = sign_in.query_pairs().map(|(k, _)| k.into_owned()).collect();
    assert_eq!(names, ["k", "q"], "sealed: {sign_in}");

    let page = browser.get(sign_in.as_str()).await;
    let page = browser.sign_in_at_provider(page, "alice").await;
    assert_eq!(page.url.host_str(), Some("localhost"), "{:?}\n{}", browser.visited, logs(&deployment));
    assert_eq!(page.url.path(), "/callback");
    let jwt = page
        .url
        .query_pairs()
        .find(|(k, _)| k == "pomerium_jwt")
        .map(|(_, v)| v.into_owned())
        .expect("the listener receives pomerium_jwt");

    // The JWT is a session of the cluster.
    let mut tool = Browser::new(&deployment.b);
    let authorization = format!("Pomerium {jwt}");
    let reply = tool
        .send(
            Method::GET,
            &Url::parse("https://app.test.localhost/api").unwrap(),
            None,
            &[("authorization", &authorization), ("accept", "application/json")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let assertion = reply.seen().header("x-pomerium-jwt-assertion").unwrap();
    let payload = assertion.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["email"], "alice@example.com");
}

#[tokio::test]
async fn without_the_authenticate_service_key_sign_in_is_a_clear_502() {
    let setup = Setup::new();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let text = setup.config(&format!(
        "authenticate_internal_service_url: https://localhost:{closed}\n\
         routes:\n  - from: https://app.test.localhost\n    to: http://127.0.0.1:9\n    allow_any_authenticated_user: true\n"
    ));
    let path = setup.write("b.yaml", &text);
    let b =
        Pomerium::spawn_with(&path, setup.pki.ca(), "serving", &[("DEBUG_FORCE_AUTHENTICATE_FLOW", "stateless")]).await;
    let mut browser = Browser::new(&b);
    let reply = get(&mut browser, "https://app.test.localhost/").await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(reply.text().contains("authenticate service is not available"), "{}", reply.text());
    // The log reader may be a moment behind the reply.
    support::eventually("the log to say which URL failed", || async {
        b.logs().iter().any(|l| l.contains("hpke-public-key")).then_some(())
    })
    .await;
}

/// `tests/idp/browser.mjs`: Chromium opens `start` (the test's hosts on port 443 lead to B, the
/// authenticate host to A), signs in as `login` at the provider, and reports where it lands.
async fn chromium(deployment: &Deployment, start: &str, login: &str) -> serde_json::Value {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/idp/browser.mjs");
    let args = [
        start.to_owned(),
        deployment.b.address.to_string(),
        login.to_owned(),
        "*.test.localhost".to_owned(),
        format!("authenticate.test.localhost={}", deployment.a.address),
    ];
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(90),
        tokio::task::spawn_blocking(move || std::process::Command::new("node").arg(script).args(args).output()),
    )
    .await
    .expect("the browser run ends within 90 s")
    .unwrap()
    .expect("node runs (Chromium must be installed: scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser run failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        logs(deployment)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[tokio::test]
async fn a_person_signs_in_on_the_cluster_with_chromium() {
    let deployment = deploy().await;
    let result = chromium(&deployment, "https://app.test.localhost/welcome", "alice").await;
    assert_eq!(result["url"], "https://app.test.localhost/welcome", "the browser lands where it started");
    let page: serde_json::Value = serde_json::from_str(result["text"].as_str().unwrap()).unwrap();
    assert_eq!(page["upstream"], "app");
    let assertion = page["headers"]["x-pomerium-jwt-assertion"][0].as_str().unwrap();
    let mut browser = new_browser(&deployment);
    let jwks = browser
        .send(Method::GET, &Url::parse("https://app.test.localhost/.well-known/pomerium/jwks.json").unwrap(), None, &[])
        .await
        .json();
    let claims = support::verify_es256(assertion, &jwks);
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["aud"], "app.test.localhost");
}
