//! Sign-in end to end against a real, independent OpenID provider (panva's `oidc-provider`,
//! pinned in `tests/idp`): the stateful code flow of system.md §3.3 through the real `pomerium`
//! binary over TLS, the identity the upstream receives, refresh, sign-out, and the refusals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use base64::Engine as _;
use http::Method;
use support::browser::{Browser, OidcProvider, Page};
use support::{Pomerium, Setup, echo_upstream};
use url::Url;

const CALLBACK: &str = "https://authenticate.test.localhost/oauth2/callback";

/// Routes for the tests: `app` lets example.com in and passes identity; `sales` only lets the
/// `sales` group in; `token` shows the access token through a header template; `k8s` stands for
/// a Kubernetes API server reached with a service account token.
fn routes(upstream: std::net::SocketAddr) -> String {
    r#"jwt_claims_headers: [email, groups]
routes:
  - from: https://app.test.localhost
    to: http://UPSTREAM
    pass_identity_headers: true
    policy:
      allow:
        and:
          - domain:
              is: example.com
  - from: https://sales.test.localhost
    to: http://UPSTREAM
    policy:
      allow:
        and:
          - claim/groups: sales
  - from: https://token.test.localhost
    to: http://UPSTREAM
    allow_any_authenticated_user: true
    set_request_headers:
      x-token: ${pomerium.access_token}
  - from: https://k8s.test.localhost
    to: http://UPSTREAM
    kubernetes_service_account_token: the-service-account-token
    allow_any_authenticated_user: true
"#
    .replace("UPSTREAM", &upstream.to_string())
}

async fn start(setup: &Setup, idp: &OidcProvider, extra: &str, env: &[(&str, &str)]) -> (Pomerium, support::Upstream) {
    let upstream = echo_upstream("app", None).await;
    let text = setup.config(&format!("{}{extra}{}", idp.config(), routes(upstream.address)));
    std::fs::write(setup.config_path(), text).unwrap();
    let pomerium = Pomerium::spawn_with(&setup.config_path(), setup.pki.ca(), "serving", env).await;
    (pomerium, upstream)
}

/// Signs in as `login` through the whole flow, starting at `url`; the page it ends on.
async fn sign_in(browser: &mut Browser, url: &str, login: &str) -> Page {
    let page = browser.open_provider_login(url).await;
    browser.sign_in_at_provider(page, login).await
}

#[tokio::test]
async fn a_user_signs_in_and_the_upstream_gets_a_verifiable_identity() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let (pomerium, _upstream) = start(&setup, &idp, "", &[]).await;
    let mut browser = Browser::new(&pomerium);

    let page = sign_in(&mut browser, "https://app.test.localhost/hello?x=1", "alice").await;
    assert_eq!(page.reply.status, 200, "{:?}\n{}", browser.visited, pomerium.logs().join("\n"));
    assert_eq!(page.url.as_str(), "https://app.test.localhost/hello?x=1", "back where the user started");
    let seen = page.reply.seen();
    assert_eq!(seen.target(), "/hello?x=1");
    assert_eq!(seen.header("x-pomerium-claim-email").as_deref(), Some("alice@example.com"));
    assert_eq!(seen.header("x-pomerium-claim-groups").as_deref(), Some("engineering,staff"));
    let cookie = seen.header("cookie").unwrap_or_default();
    assert!(!cookie.contains("_pomerium="), "the session cookie never goes upstream: {cookie}");

    let jwks = browser
        .send(Method::GET, &Url::parse("https://app.test.localhost/.well-known/pomerium/jwks.json").unwrap(), None, &[])
        .await;
    assert_eq!(jwks.header("cache-control"), "max-age=60");
    assert_eq!(jwks.header("access-control-allow-origin"), "*");
    let claims = support::verify_es256(&seen.header("x-pomerium-jwt-assertion").unwrap(), &jwks.json());
    assert_eq!(claims["iss"], "app.test.localhost");
    assert_eq!(claims["aud"], "app.test.localhost");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["user"], "alice");
    assert_eq!(claims["name"], "Alice Example");
    assert_eq!(claims["groups"], serde_json::json!(["engineering", "staff"]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300);
    assert!(claims["sid"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(claims["jti"].as_str().is_some_and(|s| !s.is_empty()));

    // The policy decides on the provider's real claims: alice is not in sales.
    let page = browser.get("https://sales.test.localhost/").await;
    assert_eq!(page.reply.status, 403, "{:?}", browser.visited);

    // `/.pomerium/user` shows the claims without the JWT's bookkeeping.
    let user =
        browser.send(Method::GET, &Url::parse("https://app.test.localhost/.pomerium/user").unwrap(), None, &[]).await;
    assert_eq!(user.status, 200, "{}", user.text());
    let user = user.json();
    assert_eq!(user["email"], "alice@example.com");
    assert!(user.get("iss").is_none() && user.get("exp").is_none());

    // bob (other.org) signs in, but the app's policy keeps him out; sales lets him in.
    let mut bob = Browser::new(&pomerium);
    let page = sign_in(&mut bob, "https://sales.test.localhost/deal", "bob").await;
    assert_eq!(page.reply.status, 200);
    assert_eq!(page.reply.seen().target(), "/deal");
    let page = bob.get("https://app.test.localhost/").await;
    assert_eq!(page.reply.status, 403);
}

#[tokio::test]
async fn sign_out_ends_the_session_and_revokes_the_token() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &["https://authenticate.test.localhost/.pomerium/signed_out"], None);
    let (pomerium, _upstream) = start(&setup, &idp, "", &[]).await;
    let mut browser = Browser::new(&pomerium);
    let page = sign_in(&mut browser, "https://app.test.localhost/", "alice").await;
    assert_eq!(page.reply.status, 200);
    let cookie = browser.cookie("app.test.localhost", "_pomerium").expect("the route host has a session cookie");

    // An unsigned GET only asks.
    let confirm = browser
        .send(Method::GET, &Url::parse("https://app.test.localhost/.pomerium/sign_out").unwrap(), None, &[])
        .await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.text().contains("<form method=\"post\""));
    assert_eq!(browser.get("https://app.test.localhost/").await.reply.status, 200, "still signed in");

    // A POST from another site is refused, on the route host and on the authenticate host: an
    // origin the configuration does not serve, the opaque `null` origin, or no origin from a
    // browser that says the request is cross-site.
    let cross_site: [&[(&str, &str)]; 4] = [
        &[("origin", "https://evil.example.com")],
        &[("origin", "null")],
        &[("origin", "https://app.test.localhost.evil.example.com")],
        &[("sec-fetch-site", "cross-site")],
    ];
    for url in
        ["https://app.test.localhost/.pomerium/sign_out", "https://authenticate.test.localhost/.pomerium/sign_out"]
    {
        for headers in cross_site {
            let foreign = browser.send(Method::POST, &Url::parse(url).unwrap(), Some(&[]), headers).await;
            assert_eq!(foreign.status, 403, "{url} {headers:?}");
        }
    }
    assert_eq!(browser.get("https://app.test.localhost/").await.reply.status, 200, "still signed in");

    let revoked = idp.count("revoked");
    let first = browser
        .send(
            Method::POST,
            &Url::parse("https://app.test.localhost/.pomerium/sign_out").unwrap(),
            Some(&[]),
            &[("origin", "https://app.test.localhost"), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(first.status, 302);
    assert!(browser.cookie("app.test.localhost", "_pomerium").is_none(), "the cookie is cleared");
    let location = first.header("location").to_owned();
    assert!(location.starts_with("https://authenticate.test.localhost/.pomerium/sign_out?"), "{location}");
    let end = browser.follow(Method::GET, Url::parse(&location).unwrap(), None).await;
    assert!(
        browser.visited.iter().any(|u| u.starts_with(&format!("{}/session/end", idp.issuer))),
        "the IdP's end-session page: {:?}",
        browser.visited
    );
    assert!(end.reply.status.is_success(), "{}", end.reply.status);
    // The provider's events arrive on its own output, a moment behind pomerium's.
    support::eventually("the token revoked at the IdP", || async { (idp.count("revoked") > revoked).then_some(()) })
        .await;

    // The old cookie, replayed, is no session any more.
    let mut replay = Browser::new(&pomerium);
    replay.set_cookie("app.test.localhost", "_pomerium", &cookie);
    let reply = replay
        .send(Method::GET, &Url::parse("https://app.test.localhost/").unwrap(), None, &[("accept", "text/html")])
        .await;
    assert_eq!(reply.status, 302);
    assert!(reply.header("location").starts_with("https://authenticate.test.localhost/.pomerium/sign_in?"));
}

#[tokio::test]
async fn an_expired_session_is_sent_back_to_sign_in() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let (pomerium, _upstream) = start(&setup, &idp, "cookie_expire: 2s\n", &[]).await;
    let mut browser = Browser::new(&pomerium);
    assert_eq!(sign_in(&mut browser, "https://app.test.localhost/", "alice").await.reply.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let reply = browser
        .send(Method::GET, &Url::parse("https://app.test.localhost/").unwrap(), None, &[("accept", "text/html")])
        .await;
    assert_eq!(reply.status, 302, "an expired session is no session");
    assert!(reply.header("location").starts_with("https://authenticate.test.localhost/.pomerium/sign_in?"));
    let reply = browser
        .send(Method::GET, &Url::parse("https://app.test.localhost/").unwrap(), None, &[("accept", "application/json")])
        .await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire() {
    let setup = Setup::new();
    // Access tokens live 61 s; the refresher renews them a minute before expiry, so at once.
    let idp = OidcProvider::start(&[CALLBACK], &[], Some(61));
    let (mut pomerium, _upstream) = start(&setup, &idp, "", &[("POMERIUM_SESSION_REFRESH_INTERVAL_MS", "200")]).await;
    let mut browser = Browser::new(&pomerium);
    let page = sign_in(&mut browser, "https://token.test.localhost/", "alice").await;
    let first = page.reply.seen().header("x-token").expect("the access token template is filled");
    assert!(!first.is_empty());
    pomerium.wait_for_log("session refreshed").await;
    // The cache follows the databroker; the assertion cache does not hold tokens.
    support::eventually("a request with the refreshed token", || async {
        let page = browser_get(&pomerium, &browser, "https://token.test.localhost/").await;
        page.seen().header("x-token").filter(|token| *token != first)
    })
    .await;
}

/// A session whose refresh the provider refuses (its grant revoked there) ends: the refresher
/// deletes it, and the browser is sent to sign in again.
#[tokio::test]
async fn a_session_whose_refresh_is_refused_ends() {
    let setup = Setup::new();
    // Access tokens live 61 s, so the refresher tries at once; the provider refuses every refresh.
    let idp = OidcProvider::start_with_env(&[CALLBACK], &[], Some(61), &[("REFUSE_REFRESH", "1")]);
    let (mut pomerium, _upstream) = start(&setup, &idp, "", &[("POMERIUM_SESSION_REFRESH_INTERVAL_MS", "200")]).await;
    let mut browser = Browser::new(&pomerium);
    assert_eq!(sign_in(&mut browser, "https://app.test.localhost/", "alice").await.reply.status, 200);
    pomerium.wait_for_log("the identity provider refused the refresh; the session ends").await;
    // The provider's events arrive on its own output, a moment behind pomerium's.
    support::eventually("the provider to see the refresh and refuse it", || async {
        (idp.count("refresh.refused") >= 1).then_some(())
    })
    .await;
    let app = Url::parse("https://app.test.localhost/").unwrap();
    let reply = support::eventually("the ended session to be no session", || {
        let mut copy = Browser::new(&pomerium);
        copy.jar = browser.jar.clone();
        let app = app.clone();
        async move {
            let reply = copy.send(Method::GET, &app, None, &[("accept", "text/html")]).await;
            (reply.status == 302).then_some(reply)
        }
    })
    .await;
    assert!(reply.header("location").starts_with("https://authenticate.test.localhost/.pomerium/sign_in?"));
}

/// Pomerium's identity manager asks the provider's userinfo about every user every ten minutes
/// (here: every half second): a group given to alice at the provider reaches the policy without a
/// new sign-in.
#[tokio::test]
async fn a_change_at_the_provider_reaches_the_policy_without_a_new_sign_in() {
    let setup = Setup::new();
    let idp = OidcProvider::start_with_env(&[CALLBACK], &[], None, &[("MUTABLE_ACCOUNTS", "1")]);
    let env = [("POMERIUM_SESSION_REFRESH_INTERVAL_MS", "200"), ("POMERIUM_USER_INFO_INTERVAL_MS", "500")];
    let (mut pomerium, _upstream) = start(&setup, &idp, "", &env).await;
    let mut browser = Browser::new(&pomerium);
    assert_eq!(sign_in(&mut browser, "https://app.test.localhost/", "alice").await.reply.status, 200);
    // Through sign-in's hop to sales (its own session cookie), where alice is not let in.
    assert_eq!(browser.get("https://sales.test.localhost/").await.reply.status, 403);

    let hook = Url::parse(&format!("{}/__test/accounts/alice/groups", idp.issuer)).unwrap();
    let changed = browser.send(Method::POST, &hook, Some(&[("groups", "engineering,sales")]), &[]).await;
    assert_eq!(changed.status, 204);
    pomerium.wait_for_log("user info updated").await;
    support::eventually("alice let into sales", || async {
        let reply = browser_get(&pomerium, &browser, "https://sales.test.localhost/").await;
        (reply.status == 200).then_some(())
    })
    .await;
}

/// A route to a Kubernetes API server (`kubernetes_service_account_token`): the upstream gets the
/// service account's token and the signed-in user to impersonate, and never the client's own
/// impersonation headers (Pomerium's `fillKubernetesHeaders`, `remove-impersonate-headers.lua`).
#[tokio::test]
async fn a_kubernetes_route_impersonates_the_signed_in_user() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let (pomerium, _upstream) = start(&setup, &idp, "", &[]).await;
    let mut browser = Browser::new(&pomerium);
    assert_eq!(sign_in(&mut browser, "https://k8s.test.localhost/api", "alice").await.reply.status, 200);
    let forged = [
        ("accept", "application/json"),
        ("authorization", "Bearer the-clients-own-token"),
        ("impersonate-user", "system:admin"),
        ("impersonate-group", "system:masters"),
        ("impersonate-extra-scopes", "everything"),
    ];
    let reply =
        browser.send(Method::GET, &Url::parse("https://k8s.test.localhost/api/v1/pods").unwrap(), None, &forged).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = reply.seen();
    assert_eq!(seen.header("authorization").as_deref(), Some("Bearer the-service-account-token"));
    assert_eq!(seen.header("impersonate-user").as_deref(), Some("alice@example.com"));
    assert_eq!(seen.header("impersonate-group").as_deref(), Some("engineering,staff"));
    assert_eq!(seen.header("impersonate-extra-scopes"), None, "the client's own impersonation is dropped");
    assert!(!pomerium.logs().join("\n").contains("the-service-account-token"), "the token is never logged");
}

/// A token from `kubernetes_service_account_token_file` is read again while serving (Kubernetes
/// rotates the tokens it projects into pods): a rotated file reaches the upstream within seconds,
/// without a reload, and a file that goes missing leaves the last token in use.
#[tokio::test]
async fn a_rotated_kubernetes_token_file_is_used() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let token_file = setup.write("sa-token", "first-token\n");
    let (pomerium, _upstream) = start(&setup, &idp, "", &[]).await;
    // The `k8s` route with its token from the file instead.
    let text = std::fs::read_to_string(setup.config_path()).unwrap().replace(
        "kubernetes_service_account_token: the-service-account-token",
        &format!("kubernetes_service_account_token_file: {}", token_file.display()),
    );
    drop(pomerium);
    std::fs::write(setup.config_path(), text).unwrap();
    let pomerium = Pomerium::spawn_with(&setup.config_path(), setup.pki.ca(), "serving", &[]).await;
    let mut browser = Browser::new(&pomerium);
    let page = sign_in(&mut browser, "https://k8s.test.localhost/api", "alice").await;
    assert_eq!(page.reply.seen().header("authorization").as_deref(), Some("Bearer first-token"));

    std::fs::write(&token_file, "second-token").unwrap();
    support::eventually("the rotated token upstream", || async {
        let reply = browser_get(&pomerium, &browser, "https://k8s.test.localhost/api").await;
        (reply.seen().header("authorization").as_deref() == Some("Bearer second-token")).then_some(())
    })
    .await;
    std::fs::remove_file(&token_file).unwrap();
    let reply = support::eventually("the missing file noticed", || async {
        let reply = browser_get(&pomerium, &browser, "https://k8s.test.localhost/api").await;
        (pomerium.count_logs(
            "the Kubernetes service account token file could not be read again; the last token stays in use",
        ) > 0)
            .then_some(reply)
    })
    .await;
    assert_eq!(reply.seen().header("authorization").as_deref(), Some("Bearer second-token"), "the last token stays");
    assert!(!pomerium.logs().join("\n").contains("second-token"), "the token is never logged");
}

/// A session made through one identity provider client is no session once the configuration
/// names another (Pomerium's `ReadSessionHandleAndCheckIDP`): its holder signs in again.
#[tokio::test]
async fn sessions_of_a_replaced_identity_provider_end() {
    use support::browser::{OTHER_CLIENT_ID, OTHER_CLIENT_SECRET};
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let (mut pomerium, upstream) = start(&setup, &idp, "", &[]).await;
    let mut browser = Browser::new(&pomerium);
    assert_eq!(sign_in(&mut browser, "https://app.test.localhost/", "alice").await.reply.status, 200);
    assert_eq!(browser_get(&pomerium, &browser, "https://app.test.localhost/").await.status, 200);

    let replaced = idp
        .config()
        .replace(
            &format!("idp_client_id: {}", support::browser::CLIENT_ID),
            &format!("idp_client_id: {OTHER_CLIENT_ID}"),
        )
        .replace(
            &format!("idp_client_secret: {}", support::browser::CLIENT_SECRET),
            &format!("idp_client_secret: {OTHER_CLIENT_SECRET}"),
        );
    assert_ne!(replaced, idp.config());
    setup.rewrite_config(&setup.config(&format!("{replaced}{}", routes(upstream.address))));
    pomerium.wait_for_log("configuration reloaded").await;
    let reply = browser_get(&pomerium, &browser, "https://app.test.localhost/").await;
    assert_eq!(reply.status, 302, "sent to sign in again: {}", reply.text());
}

/// A GET with the browser's cookies, without changing the browser.
async fn browser_get(pomerium: &Pomerium, browser: &Browser, url: &str) -> support::Reply {
    let mut copy = Browser::new(pomerium);
    copy.jar = browser.jar.clone();
    copy.send(Method::GET, &Url::parse(url).unwrap(), None, &[]).await
}

#[tokio::test]
async fn forged_replayed_and_foreign_requests_are_refused_and_write_nothing() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let (pomerium, _upstream) = start(&setup, &idp, "", &[]).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();

    // A tampered session cookie is no session: a browser is sent to sign in, an API gets 401.
    let mut browser = Browser::new(&pomerium);
    browser.set_cookie("app.test.localhost", "_pomerium", "eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4In0.AAAA");
    let reply = browser
        .send(Method::GET, &Url::parse("https://app.test.localhost/").unwrap(), None, &[("accept", "text/html")])
        .await;
    assert_eq!(reply.status, 302);
    let reply = browser
        .send(Method::GET, &Url::parse("https://app.test.localhost/").unwrap(), None, &[("accept", "application/json")])
        .await;
    assert_eq!(reply.status, 401);

    // A sign-in link that is not signed, or signed for a foreign host, or expired.
    let unsigned = "https://authenticate.test.localhost/.pomerium/sign_in?pomerium_redirect_uri=https%3A%2F%2Fapp.test.localhost%2F";
    assert_eq!(browser.send(Method::GET, &Url::parse(unsigned).unwrap(), None, &[]).await.status, 400);
    let mut foreign = Url::parse("https://authenticate.test.localhost/.pomerium/sign_in").unwrap();
    foreign.query_pairs_mut().append_pair("pomerium_redirect_uri", "https://evil.example.com/steal");
    let foreign = authenticate::sign(&foreign, &support::SHARED_KEY, now);
    let reply = browser.send(Method::GET, &foreign, None, &[]).await;
    assert_eq!(reply.status, 400, "no redirect to a foreign host: {}", reply.text());
    assert!(reply.header("location").is_empty());
    let mut old = Url::parse("https://authenticate.test.localhost/.pomerium/sign_in").unwrap();
    old.query_pairs_mut().append_pair("pomerium_redirect_uri", "https://app.test.localhost/");
    let old = authenticate::sign(&old, &support::SHARED_KEY, now - 3600);
    assert_eq!(browser.send(Method::GET, &old, None, &[]).await.status, 400, "an expired signed URL");

    // A route host's callback with an expired signature, and one carrying garbage.
    let mut callback = Url::parse("https://app.test.localhost/.pomerium/callback/").unwrap();
    callback
        .query_pairs_mut()
        .append_pair("pomerium_redirect_uri", "https://app.test.localhost/")
        .append_pair("pomerium_session_encrypted", "AAAA");
    assert_eq!(
        browser
            .send(Method::GET, &authenticate::sign(&callback, &support::SHARED_KEY, now - 3600), None, &[])
            .await
            .status,
        400
    );
    assert_eq!(
        browser.send(Method::GET, &authenticate::sign(&callback, &support::SHARED_KEY, now), None, &[]).await.status,
        400
    );

    // The IdP's answer replayed after a completed sign-in, and a state from another browser.
    let mut alice = Browser::new(&pomerium);
    let page = sign_in(&mut alice, "https://app.test.localhost/", "alice").await;
    assert_eq!(page.reply.status, 200);
    let callback_url = alice.visited.iter().find(|u| u.starts_with(CALLBACK)).unwrap().clone();
    let replayed = alice.send(Method::GET, &Url::parse(&callback_url).unwrap(), None, &[]).await;
    assert_eq!(replayed.status, 400, "a replayed state: {}", replayed.text());
    let mut mallory = Browser::new(&pomerium);
    let stolen = mallory.send(Method::GET, &Url::parse(&callback_url).unwrap(), None, &[]).await;
    assert_eq!(stolen.status, 400, "a state from another browser: {}", stolen.text());

    // An IdP error.
    let denied = mallory
        .send(Method::GET, &Url::parse(&format!("{CALLBACK}?error=access_denied&state=x")).unwrap(), None, &[])
        .await;
    assert_eq!(denied.status, 401);

    // Only alice's one sign-in wrote a session.
    assert_eq!(pomerium.count_logs("signed in"), 1, "{}", pomerium.logs().join("\n"));
}

/// A token substitution attack: the provider (failure injection in `tests/idp/provider.mjs`)
/// answers pomerium's code exchange with a genuine ID token, signed by it, but issued to its other
/// client. The callback refuses it and nothing is written.
#[tokio::test]
async fn an_id_token_for_another_audience_is_refused_and_writes_nothing() {
    use support::browser::OTHER_CLIENT_ID;
    let setup = Setup::new();
    let idp = OidcProvider::start_with_env(&[CALLBACK], &[], None, &[("SUBSTITUTE_ID_TOKEN_FROM", OTHER_CLIENT_ID)]);
    let (mut pomerium, _upstream) = start(&setup, &idp, "", &[]).await;

    // The other client's own flow: a real ID token for alice, for the audience `someone-else`,
    // which the provider now remembers.
    let mut other = Browser::new(&pomerium);
    let tokens = idp.code_flow_for_other_client(&mut other, CALLBACK, "alice").await;
    let id_token = tokens["id_token"].as_str().expect("the other client gets an ID token");
    let payload = id_token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["aud"], OTHER_CLIENT_ID);
    assert_eq!(claims["iss"], idp.issuer.as_str());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(idp.count("id_token.substituted"), 0, "nothing substituted yet");

    // alice signs in through pomerium; the token endpoint hands pomerium that token.
    let mut browser = Browser::new(&pomerium);
    let page = sign_in(&mut browser, "https://app.test.localhost/", "alice").await;
    assert!(page.url.as_str().starts_with(CALLBACK), "ends at the callback: {:?}", browser.visited);
    assert_eq!(page.reply.status, 401, "{}\n{}", page.reply.text(), pomerium.logs().join("\n"));
    let text = page.reply.text();
    assert!(text.contains("the ID token is not valid: issued for another audience"), "says why: {text}");
    support::eventually("the provider's substitution event", || async {
        (idp.count("id_token.substituted") == 1).then_some(())
    })
    .await;
    let refused = pomerium.wait_for_log("refused").await;
    assert_eq!(refused["fields"]["status"], 401, "{refused}");
    assert!(refused["fields"]["reason"].as_str().unwrap_or_default().contains("another audience"), "{refused}");

    // Nothing written: no session cookie anywhere, no session.
    for (host, cookies) in &browser.jar {
        assert!(!cookies.contains_key("_pomerium_authenticate"), "{host}: {cookies:?}");
        assert!(!cookies.contains_key("_pomerium"), "{host}: {cookies:?}");
    }
    assert_eq!(pomerium.count_logs("signed in"), 0, "{}", pomerium.logs().join("\n"));
    let reply = browser
        .send(Method::GET, &Url::parse("https://app.test.localhost/").unwrap(), None, &[("accept", "text/html")])
        .await;
    assert_eq!(reply.status, 302, "still signed out");
    assert!(reply.header("location").starts_with("https://authenticate.test.localhost/.pomerium/sign_in?"));
}
