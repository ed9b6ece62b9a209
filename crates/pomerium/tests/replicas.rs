//! Replicas: two all-in-one `pomerium` processes with one configuration (the same secrets, the
//! same PostgreSQL databroker) behave as one deployment. A user signed in through one is signed
//! in on the other, with an identity assertion that verifies against either's JWKS; a sign-in
//! begun on one can end on the other; a sign-out on one ends the session on both (the other's
//! record cache follows PostgreSQL's LISTEN/NOTIFY); a restarted replica still knows the session.
//! Real parts only: PostgreSQL (`pg-test-cluster`), panva's `oidc-provider`, the binary over TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use http::Method;
use pg_test_cluster::TestPostgres;
use support::browser::{Browser, OidcProvider, Page};
use support::{Pomerium, Reply, Setup, echo_upstream, eventually};
use url::Url;

const CALLBACK: &str = "https://authenticate.test.localhost/oauth2/callback";
const JWKS: &str = "/.well-known/pomerium/jwks.json";

/// The one configuration both replicas run: the test options of [`Setup::config`] (shared
/// secret, cookie secret, certificates, authenticate URL), the provider, the PostgreSQL
/// databroker, and a route that lets example.com in and passes identity upstream.
fn write_config(setup: &Setup, idp: &OidcProvider, postgres_url: &str, upstream: std::net::SocketAddr) {
    let route = support::route(
        "app",
        &format!(
            "to: http://{upstream}\npass_identity_headers: true\n\
             policy:\n  allow:\n    and:\n      - domain:\n          is: example.com"
        ),
    );
    let rest = format!(
        "{}databroker_storage_type: postgres\n\
         databroker_storage_connection_string: {postgres_url}\n\
         jwt_claims_headers: [email, groups]\n{}",
        idp.config(),
        support::routes(&[route])
    );
    std::fs::write(setup.config_path(), setup.config(&rest)).unwrap();
}

/// A replica: the binary on the shared configuration file (its listener on a port of its own).
async fn replica(setup: &Setup) -> Pomerium {
    Pomerium::spawn(&setup.config_path(), setup.pki.ca()).await
}

/// What both replicas share, per test: a database of its own, a provider, an upstream, the config.
struct Deployment {
    setup: Setup,
    _idp: OidcProvider,
    _upstream: support::Upstream,
}

async fn deployment() -> Deployment {
    let postgres_url = TestPostgres::shared().unwrap().database().unwrap();
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let upstream = echo_upstream("app", None).await;
    write_config(&setup, &idp, &postgres_url, upstream.address);
    Deployment { setup, _idp: idp, _upstream: upstream }
}

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

/// Signs in as `login` through the whole flow, starting at `url`; the page it ends on.
async fn sign_in(browser: &mut Browser, url: &str, login: &str) -> Page {
    let page = browser.open_provider_login(url).await;
    browser.sign_in_at_provider(page, login).await
}

/// A GET to `url` on `replica` with only the session cookie `cookie`, no redirect followed.
async fn with_cookie(replica: &Pomerium, cookie: &str, url: &str, accept: &str) -> Reply {
    let mut browser = Browser::new(replica);
    browser.set_cookie("app.test.localhost", "_pomerium", cookie);
    browser.send(Method::GET, &Url::parse(url).unwrap(), None, &[("accept", accept)]).await
}

/// The replica's JWKS document.
async fn jwks(replica: &Pomerium) -> serde_json::Value {
    let reply = replica.get("app.test.localhost", JWKS).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// How many requests whose path starts with `prefix` the replica has logged (its access log).
fn served(replica: &Pomerium, prefix: &str) -> usize {
    replica
        .json_logs()
        .iter()
        .filter(|line| {
            line["target"] == "access"
                && line["fields"]["message"] == "request"
                && line["fields"]["path"].as_str().is_some_and(|path| path.starts_with(prefix))
        })
        .count()
}

/// Waits until the replica has logged `count` requests under `prefix` (the log is read from its
/// stderr by a thread, a little after the response).
async fn wait_served(replica: &Pomerium, prefix: &str, count: usize) {
    eventually(&format!("{count} request(s) to {prefix} in the log"), || async {
        (served(replica, prefix) >= count).then_some(())
    })
    .await;
    assert_eq!(served(replica, prefix), count, "requests to {prefix}:\n{}", replica.logs().join("\n"));
}

/// The identity the upstream saw: the email header, and the assertion verified against `jwks`.
fn identity(reply: &Reply, jwks: &serde_json::Value) -> serde_json::Value {
    let seen = reply.seen();
    assert_eq!(seen.header("x-pomerium-claim-email").as_deref(), Some("alice@example.com"));
    let claims = support::verify_es256(&seen.header("x-pomerium-jwt-assertion").expect("an assertion"), jwks);
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "app.test.localhost");
    claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_one_replica_holds_on_the_other_and_a_sign_out_there_ends_it_on_both() {
    let deployment = deployment().await;
    let a = replica(&deployment.setup).await;
    let b = replica(&deployment.setup).await;
    let mut browser = Browser::new(&a);

    // The whole sign-in on A: route host, authenticate host, IdP callback, route callback.
    let page = sign_in(&mut browser, "https://app.test.localhost/on-a", "alice").await;
    assert_eq!(page.reply.status, 200, "{:?}\n{}", browser.visited, a.logs().join("\n"));
    assert_eq!(page.url.as_str(), "https://app.test.localhost/on-a");
    wait_served(&a, "/oauth2/callback", 1).await;
    assert_eq!(a.count_logs("signed in"), 1, "{}", a.logs().join("\n"));
    assert_eq!(served(&b, "/"), 0, "B served none of the sign-in:\n{}", b.logs().join("\n"));
    let jwks_a = jwks(&a).await;
    let on_a = identity(&page.reply, &jwks_a);

    // The same cookies through B: the same user, the same session, no new sign-in.
    browser.switch_to(&b);
    let reply =
        browser.send(Method::GET, &url("https://app.test.localhost/on-b"), None, &[("accept", "text/html")]).await;
    assert_eq!(reply.status, 200, "B honours A's session: {}\n{}", reply.text(), b.logs().join("\n"));
    assert_eq!(reply.seen().target(), "/on-b");
    wait_served(&b, "/on-b", 1).await;
    assert_eq!(b.count_logs("signed in"), 0);
    // B's assertion verifies against B's JWKS and A's: one key, derived from the shared secret.
    let jwks_b = jwks(&b).await;
    assert_eq!(jwks_a, jwks_b, "both replicas publish the same key");
    let on_b = identity(&reply, &jwks_b);
    assert_eq!(identity(&reply, &jwks_a), on_b);
    assert_eq!(on_b["sid"], on_a["sid"], "the same session");
    assert!(on_b["sid"].as_str().is_some_and(|s| !s.is_empty()));

    // A still serves it (its cache holds the session, so what follows tests the cache).
    let cookie = browser.cookie("app.test.localhost", "_pomerium").expect("a session cookie");
    assert_eq!(with_cookie(&a, &cookie, "https://app.test.localhost/", "text/html").await.status, 200);

    // Sign out through B.
    let out = browser.send(Method::POST, &url("https://app.test.localhost/.pomerium/sign_out"), Some(&[]), &[]).await;
    assert_eq!(out.status, 302, "{}", out.text());
    assert!(browser.cookie("app.test.localhost", "_pomerium").is_none(), "the cookie is cleared");
    assert!(out.header("location").starts_with("https://authenticate.test.localhost/.pomerium/sign_out?"));
    assert_eq!(b.count_logs("signed out"), 1, "{}", b.logs().join("\n"));

    // The old cookie is no session on either replica: a browser is sent to sign in, an API
    // gets 401. A learns of the tombstone from PostgreSQL's notifications (its poll is 30 s).
    for (name, replica) in [("A", &a), ("B", &b)] {
        let reply = eventually(&format!("{name} to forget the session"), || async {
            let reply = with_cookie(replica, &cookie, "https://app.test.localhost/", "text/html").await;
            (reply.status != 200).then_some(reply)
        })
        .await;
        assert_eq!(reply.status, 302, "{name}: {}", reply.text());
        assert!(
            reply.header("location").starts_with("https://authenticate.test.localhost/.pomerium/sign_in?"),
            "{name}: {}",
            reply.header("location")
        );
        let reply = with_cookie(replica, &cookie, "https://app.test.localhost/", "application/json").await;
        assert_eq!(reply.status, 401, "{name}: {}", reply.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_begun_on_one_replica_ends_on_the_other_and_outlives_a_restart() {
    let deployment = deployment().await;
    let a = replica(&deployment.setup).await;
    let b = replica(&deployment.setup).await;
    let mut browser = Browser::new(&a);

    // A sends the browser to the provider: A made the state, the CSRF and PKCE cookies.
    let page = browser.open_provider_login("https://app.test.localhost/start?x=1").await;
    wait_served(&a, "/.pomerium/sign_in", 1).await;
    assert!(browser.cookie("authenticate.test.localhost", "_pomerium_csrf").is_some(), "{:?}", browser.jar);

    // The provider's redirect back, and all that follows, reach B.
    browser.switch_to(&b);
    let page = browser.sign_in_at_provider(page, "alice").await;
    assert_eq!(page.reply.status, 200, "{:?}\n{}", browser.visited, b.logs().join("\n"));
    assert_eq!(page.url.as_str(), "https://app.test.localhost/start?x=1", "back where the user started");
    assert_eq!(page.reply.seen().target(), "/start?x=1");
    wait_served(&b, "/oauth2/callback", 1).await;
    assert_eq!(served(&a, "/oauth2/callback"), 0, "{}", a.logs().join("\n"));
    assert_eq!(b.count_logs("signed in"), 1, "{}", b.logs().join("\n"));
    assert_eq!(a.count_logs("signed in"), 0);
    let session = identity(&page.reply, &jwks(&b).await)["sid"].clone();

    // A honours the session B wrote.
    let cookie = browser.cookie("app.test.localhost", "_pomerium").expect("a session cookie");
    let reply = with_cookie(&a, &cookie, "https://app.test.localhost/", "text/html").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(identity(&reply, &jwks(&a).await)["sid"], session);

    // A is killed and started again on the same database: the session is still there.
    let before = a.pid();
    drop(a);
    let a = replica(&deployment.setup).await;
    assert_ne!(a.pid(), before);
    let reply = with_cookie(&a, &cookie, "https://app.test.localhost/again", "text/html").await;
    assert_eq!(
        reply.status,
        200,
        "the restarted replica honours the cookie: {}\n{}",
        reply.text(),
        a.logs().join("\n")
    );
    assert_eq!(reply.seen().target(), "/again");
    assert_eq!(identity(&reply, &jwks(&a).await)["sid"], session);
    assert_eq!(a.count_logs("signed in"), 0);
}

/// The development provider on two replicas (its codes and refresh tokens are signed with a key
/// derived from the shared secret, not kept in one process's memory): the login form answered
/// on one replica, its code exchanged on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_provider_spans_replicas() {
    let postgres_url = TestPostgres::shared().unwrap().database().unwrap();
    let setup = Setup::new();
    let upstream = echo_upstream("app", None).await;
    let route = support::route("app", &format!("to: http://{}\nallow_any_authenticated_user: true", upstream.address));
    let rest = format!(
        "idp_provider: development\nidp_development_users:\n  - email: alice@example.com\n\
         databroker_storage_type: postgres\ndatabroker_storage_connection_string: {postgres_url}\n{}",
        support::routes(&[route])
    );
    std::fs::write(setup.config_path(), setup.config(&rest)).unwrap();
    let a = replica(&setup).await;
    let b = replica(&setup).await;
    let mut browser = Browser::new(&a);

    let login = browser.get("https://app.test.localhost/page").await;
    assert!(login.reply.text().contains("Sign in as alice@example.com"), "{}", login.reply.text());
    let (action, fields) = support::browser::first_form_containing(&login, "Sign in as");
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let answer = browser.send(Method::POST, &action, Some(&pairs), &[]).await;
    assert_eq!(answer.status, 302, "{}", answer.text());
    let callback = url(answer.header("location"));
    assert!(callback.query_pairs().any(|(k, _)| k == "code"), "{callback}");

    // The code A's provider issued, exchanged by B.
    browser.switch_to(&b);
    let page = browser.follow(Method::GET, callback, None).await;
    assert_eq!(page.reply.status, 200, "{:?}\n{}", browser.visited, b.logs().join("\n"));
    assert_eq!(page.reply.seen().target(), "/page");
    assert_eq!(b.count_logs("signed in"), 1, "{}", b.logs().join("\n"));
    assert_eq!(a.count_logs("signed in"), 0);
}
