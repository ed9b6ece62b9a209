//! Identity provider tokens as bearer credentials (`bearer_token_format: idp_access_token` and
//! `idp_identity_token`), end to end against the real `oidc-provider`: a command-line client
//! that ran its own code flow at the provider sends `Authorization: Bearer <token>`, the real
//! `pomerium` binary checks the token with the provider once, keeps a session for it, and
//! decides with the provider's claims. Refused tokens are 403 and write nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use http::Method;
use support::browser::{Browser, CLIENT_ID, CLIENT_SECRET, OidcProvider};
use support::{Pomerium, Reply, Setup, echo_upstream};
use url::Url;

const CALLBACK: &str = "https://authenticate.test.localhost/oauth2/callback";
const SCOPES: &str = "openid email profile groups";

/// `access` reads access tokens, `identity` ID tokens, `audience` access tokens for an audience
/// the provider's userinfo does not name, `jwt` the format this server cannot check yet, `app`
/// the default format (a bearer token is not read). All but `jwt` let example.com in.
fn routes(upstream: std::net::SocketAddr) -> String {
    let allow = "    pass_identity_headers: true\n    policy:\n      allow:\n        and:\n          - domain:\n              is: example.com\n";
    let route = |host: &str, extra: &str| {
        format!("  - from: https://{host}.test.localhost\n    to: http://UPSTREAM\n{extra}{allow}")
    };
    let text = [
        route("access", "    bearer_token_format: idp_access_token\n"),
        route("identity", "    bearer_token_format: idp_identity_token\n"),
        route(
            "audience",
            "    bearer_token_format: idp_access_token\n    idp_access_token_allowed_audiences: [inventory-api]\n",
        ),
        route("jwt", "    bearer_token_format: jwt\n"),
        route("app", ""),
    ]
    .concat();
    format!("jwt_claims_headers: [email]\nroutes:\n{text}").replace("UPSTREAM", &upstream.to_string())
}

async fn start(setup: &Setup, idp: &OidcProvider) -> (Pomerium, support::Upstream) {
    start_with_env(setup, idp, &[]).await
}

async fn start_with_env(setup: &Setup, idp: &OidcProvider, env: &[(&str, &str)]) -> (Pomerium, support::Upstream) {
    start_with(setup, idp, env, "").await
}

/// The server with `global` options besides the provider's and the routes.
async fn start_with(
    setup: &Setup,
    idp: &OidcProvider,
    env: &[(&str, &str)],
    global: &str,
) -> (Pomerium, support::Upstream) {
    let upstream = echo_upstream("api", None).await;
    let text = setup.config(&format!("{}{global}{}", idp.config(), routes(upstream.address)));
    std::fs::write(setup.config_path(), text).unwrap();
    let pomerium = Pomerium::spawn_with(&setup.config_path(), setup.pki.ca(), "serving", env).await;
    (pomerium, upstream)
}

/// A JSON API call with `Authorization: Bearer <token>`.
async fn call(browser: &mut Browser, url: &str, token: &str) -> Reply {
    let authorization = format!("Bearer {token}");
    let headers = [("authorization", authorization.as_str()), ("accept", "application/json")];
    browser.send(Method::GET, &Url::parse(url).unwrap(), None, &headers).await
}

/// Tokens for `login`, issued to pomerium's own client by a code flow the test runs itself.
async fn tokens_for(idp: &OidcProvider, pomerium: &Pomerium, login: &str) -> (String, String) {
    let mut client = Browser::new(pomerium);
    let tokens = idp.code_flow(&mut client, (CLIENT_ID, CLIENT_SECRET), CALLBACK, login, SCOPES).await;
    (tokens["access_token"].as_str().unwrap().to_owned(), tokens["id_token"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_access_token_from_the_provider_is_a_session() {
    let setup = Setup::new();
    // A slow userinfo endpoint, so that concurrent requests with a new token overlap its check.
    let idp = OidcProvider::start_with_env(&[CALLBACK], &[], None, &[("USERINFO_DELAY_MS", "300")]);
    let (pomerium, _upstream) = start(&setup, &idp).await;
    let (access_token, _) = tokens_for(&idp, &pomerium, "alice").await;
    let mut client = Browser::new(&pomerium);

    let reply = call(&mut client, "https://access.test.localhost/items", &access_token).await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), pomerium.logs().join("\n"));
    let seen = reply.seen();
    assert_eq!(seen.target(), "/items");
    assert_eq!(seen.header("x-pomerium-claim-email").as_deref(), Some("alice@example.com"));
    let jwks = client
        .send(
            Method::GET,
            &Url::parse("https://access.test.localhost/.well-known/pomerium/jwks.json").unwrap(),
            None,
            &[],
        )
        .await;
    let claims = support::verify_es256(&seen.header("x-pomerium-jwt-assertion").unwrap(), &jwks.json());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["groups"], serde_json::json!(["engineering", "staff"]));
    assert_eq!(claims["aud"], "access.test.localhost");

    // The same token again, and on the identity route's neighbour of the same kind: the session
    // made for it is found, the provider is not asked again.
    for path in ["/items/1", "/items/2"] {
        let reply = call(&mut client, &format!("https://access.test.localhost{path}"), &access_token).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    support::eventually("alice's session to be logged", || async {
        (pomerium.count_logs("a session from an identity provider token") >= 1).then_some(())
    })
    .await;
    assert_eq!(pomerium.count_logs("a session from an identity provider token"), 1, "{}", pomerium.logs().join("\n"));

    // bob's token is genuine, but the policy keeps other.org out: a policy deny, not a refusal.
    // Four requests at once with it: the provider is asked once, one session is made.
    let (bob_token, _) = tokens_for(&idp, &pomerium, "bob").await;
    let url = "https://access.test.localhost/items";
    let mut clients: [Browser; 4] = std::array::from_fn(|_| Browser::new(&pomerium));
    let [a, b, c, d] = &mut clients;
    let replies = tokio::join!(
        call(a, url, &bob_token),
        call(b, url, &bob_token),
        call(c, url, &bob_token),
        call(d, url, &bob_token)
    );
    for reply in [replies.0, replies.1, replies.2, replies.3] {
        assert_eq!(reply.status, 403, "{}", reply.text());
        assert!(!reply.text().contains("not a valid"), "{}", reply.text());
    }
    // The log is read from the process as it comes: wait for the line, then make sure of the count.
    support::eventually("bob's session to be logged", || async {
        (pomerium.count_logs("a session from an identity provider token") >= 2).then_some(())
    })
    .await;
    assert_eq!(pomerium.count_logs("a session from an identity provider token"), 2, "alice's, and one for bob's");

    // A token the provider never issued: 403 before any policy, and nothing written. Sent again,
    // the refusal is remembered rather than asked of the provider again.
    for _ in 0..2 {
        let reply = call(&mut client, "https://access.test.localhost/items", "made-up-token").await;
        assert_eq!(reply.status, 403);
        assert!(
            reply.text().contains("not a valid access token of the identity provider"),
            "says why: {}",
            reply.text()
        );
    }
    assert_eq!(pomerium.count_logs("a bearer token was refused"), 1, "{}", pomerium.logs().join("\n"));
    assert_eq!(pomerium.count_logs("a session from an identity provider token"), 2, "alice's and bob's only");

    // Where the route reads no bearer token, the token is not a session: sign in first (401 for
    // an API client).
    let reply = call(&mut client, "https://app.test.localhost/items", &access_token).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
}

#[tokio::test]
async fn an_id_token_for_this_client_is_a_session_and_others_are_refused() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let (pomerium, _upstream) = start(&setup, &idp).await;
    let (access_token, id_token) = tokens_for(&idp, &pomerium, "alice").await;
    let mut client = Browser::new(&pomerium);

    let reply = call(&mut client, "https://identity.test.localhost/", &id_token).await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), pomerium.logs().join("\n"));
    assert_eq!(reply.seen().header("x-pomerium-claim-email").as_deref(), Some("alice@example.com"));

    // A genuine ID token of the provider's other client: another audience.
    let mut other = Browser::new(&pomerium);
    let foreign = idp.code_flow_for_other_client(&mut other, CALLBACK, "alice").await;
    let reply = call(&mut client, "https://identity.test.localhost/", foreign["id_token"].as_str().unwrap()).await;
    assert_eq!(reply.status, 403);
    assert!(reply.text().contains("issued for another audience"), "says why: {}", reply.text());

    // An access token where an ID token is expected, and an ID token with its signature altered.
    let reply = call(&mut client, "https://identity.test.localhost/", &access_token).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    let mut forged = id_token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let reply = call(&mut client, "https://identity.test.localhost/", &forged).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(pomerium.count_logs("a session from an identity provider token"), 1, "only the genuine token");
}

#[tokio::test]
async fn audiences_and_unsupported_formats_are_refused_with_a_reason() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let (pomerium, upstream) = start(&setup, &idp).await;
    let (access_token, _) = tokens_for(&idp, &pomerium, "alice").await;
    let mut client = Browser::new(&pomerium);

    // `idp_access_token_allowed_audiences`: the provider's userinfo names no audience.
    let reply = call(&mut client, "https://audience.test.localhost/", &access_token).await;
    assert_eq!(reply.status, 403);
    assert!(reply.text().contains("idp_access_token_allowed_audiences"), "says why: {}", reply.text());

    // `jwt` needs `jwt_allowed_issuers`; a cookie beside a bearer token is a 400 there.
    let reply = call(&mut client, "https://jwt.test.localhost/", &access_token).await;
    assert_eq!(reply.status, 403);
    assert!(reply.text().contains("jwt_allowed_issuers"), "says why: {}", reply.text());
    client.set_cookie("jwt.test.localhost", "_pomerium", "anything");
    let reply = call(&mut client, "https://jwt.test.localhost/", &access_token).await;
    assert_eq!(reply.status, 400, "{}", reply.text());

    assert_eq!(upstream.requests(), 0, "nothing refused went upstream");
    assert_eq!(pomerium.count_logs("a session from an identity provider token"), 0);
}

/// The refresher asks the provider's userinfo about each user with each session's token (every
/// ten minutes; here every half second): a token revoked at the provider ends its session, and
/// the token is refused from then on.
#[tokio::test]
async fn a_token_revoked_at_the_provider_ends_its_session() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let env = [("POMERIUM_SESSION_REFRESH_INTERVAL_MS", "200"), ("POMERIUM_USER_INFO_INTERVAL_MS", "500")];
    let (mut pomerium, _upstream) = start_with_env(&setup, &idp, &env).await;
    let (access_token, _) = tokens_for(&idp, &pomerium, "alice").await;
    let mut client = Browser::new(&pomerium);
    let reply = call(&mut client, "https://access.test.localhost/", &access_token).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // The token's owner revokes it at the provider (RFC 7009).
    let basic =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let revocation = Url::parse(&format!("{}/token/revocation", idp.issuer)).unwrap();
    let form = [("token", access_token.as_str()), ("token_type_hint", "access_token")];
    let revoked =
        client.send(Method::POST, &revocation, Some(&form), &[("authorization", &format!("Basic {basic}"))]).await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());

    pomerium.wait_for_log("the identity provider no longer accepts the session's token; the session ends").await;
    let reply = support::eventually("the revoked token refused", || {
        let mut copy = Browser::new(&pomerium);
        let token = access_token.clone();
        async move {
            let reply = call(&mut copy, "https://access.test.localhost/", &token).await;
            (reply.status == 403).then_some(reply)
        }
    })
    .await;
    assert!(reply.text().contains("not a valid access token"), "{}", reply.text());
}

/// With a global `bearer_token_format`, the token is a session on every route that does not set
/// its own, and on the `/.pomerium/` pages (`/.pomerium/user` answers with the user's claims).
#[tokio::test]
async fn a_global_format_covers_routes_and_the_user_endpoint() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let (pomerium, _upstream) = start_with(&setup, &idp, &[], "bearer_token_format: idp_access_token\n").await;
    let (access_token, _) = tokens_for(&idp, &pomerium, "alice").await;
    let mut client = Browser::new(&pomerium);

    let reply = call(&mut client, "https://app.test.localhost/", &access_token).await;
    assert_eq!(reply.status, 200, "the app route inherits the format: {}", reply.text());
    let reply = call(&mut client, "https://app.test.localhost/.pomerium/user", &access_token).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["email"], "alice@example.com");
    // Without the token, the page has no one to show.
    let reply =
        client.send(Method::GET, &Url::parse("https://app.test.localhost/.pomerium/user").unwrap(), None, &[]).await;
    assert_ne!(reply.status, 200, "{}", reply.text());
}

/// A provider in trouble (its userinfo answers 500; failure injection) is not a refused token: the
/// client gets 503 and may retry, and the retry succeeds once the provider is back.
#[tokio::test]
async fn a_failing_provider_is_a_503_and_not_a_refusal() {
    let setup = Setup::new();
    let idp = OidcProvider::start_with_env(&[CALLBACK], &[], None, &[("USERINFO_FAIL_FIRST", "1")]);
    let (pomerium, upstream) = start(&setup, &idp).await;
    let (access_token, _) = tokens_for(&idp, &pomerium, "alice").await;
    let mut client = Browser::new(&pomerium);

    let reply = call(&mut client, "https://access.test.localhost/", &access_token).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    support::eventually("the provider's failure event", || async { (idp.count("userinfo.failed") == 1).then_some(()) })
        .await;
    assert_eq!(upstream.requests(), 0);
    let reply = call(&mut client, "https://access.test.localhost/", &access_token).await;
    assert_eq!(reply.status, 200, "the failure was not remembered as a refusal: {}", reply.text());
}

/// `Authorization: Bearer Pomerium-…` carries a session handle of ours, never an identity
/// provider's token: on a route that reads provider tokens it is not taken to the provider
/// (which would disclose the handle), and the request is no session.
#[tokio::test]
async fn a_pomerium_handle_as_a_bearer_token_never_reaches_the_provider() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let (pomerium, _upstream) = start(&setup, &idp).await;
    let mut client = Browser::new(&pomerium);
    for token in ["Pomerium-not.a.handle", "pomerium-lowercase"] {
        let reply = call(&mut client, "https://access.test.localhost/items", token).await;
        assert_eq!(reply.status, 401, "{token}: {}", reply.text());
    }
    // The provider's userinfo is counted: a genuine token does reach it, the handles did not.
    let (access_token, _) = tokens_for(&idp, &pomerium, "alice").await;
    assert_eq!(call(&mut client, "https://access.test.localhost/items", &access_token).await.status, 200);
    support::eventually("the genuine token's userinfo call", || async { (idp.count("userinfo") >= 1).then_some(()) })
        .await;
    assert_eq!(idp.count("userinfo"), 1, "only the genuine token was taken to the provider");
}
