//! What the session refresher keeps from a provider's answers, against the real `oidc-provider`
//! with failure injection: an identity for another subject ends the session rather than
//! becoming it, a partial userinfo answer never empties the user, and a provider in trouble
//! never ends a session.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use http::Method;
use support::browser::{Browser, OidcProvider};
use support::{Pomerium, Setup, echo_upstream};
use url::Url;

const CALLBACK: &str = "https://authenticate.test.localhost/oauth2/callback";

/// Access tokens live 61 s, so the refresher (every 200 ms here) renews them at once.
const ACCESS_TOKEN_TTL: Option<u64> = Some(61);

/// `app` lets anyone with an email at example.com or other.org in: what it decides with is the
/// user record the refresher keeps.
async fn start(setup: &Setup, idp: &OidcProvider) -> (Pomerium, support::Upstream) {
    let upstream = echo_upstream("app", None).await;
    let routes = format!(
        "routes:\n  - from: https://app.test.localhost\n    to: http://{}\n    policy:\n      allow:\n        or:\n          - domain:\n              is: example.com\n          - domain:\n              is: other.org\n",
        upstream.address
    );
    let text = setup.config(&format!("{}{routes}", idp.config()));
    std::fs::write(setup.config_path(), text).unwrap();
    let env = [("POMERIUM_SESSION_REFRESH_INTERVAL_MS", "200")];
    let pomerium = Pomerium::spawn_with(&setup.config_path(), setup.pki.ca(), "serving", &env).await;
    (pomerium, upstream)
}

async fn signed_in(pomerium: &Pomerium, login: &str) -> Browser {
    let mut browser = Browser::new(pomerium);
    let page = browser.open_provider_login("https://app.test.localhost/").await;
    let page = browser.sign_in_at_provider(page, login).await;
    assert_eq!(page.reply.status, 200, "{login} signs in");
    browser
}

/// The status of `app` for a copy of `browser`'s cookies (a copy: the jar is left as it is).
async fn app_status(pomerium: &Pomerium, browser: &Browser) -> u16 {
    let mut copy = Browser::new(pomerium);
    copy.jar = browser.jar.clone();
    let app = Url::parse("https://app.test.localhost/").unwrap();
    copy.send(Method::GET, &app, None, &[("accept", "text/html")]).await.status.as_u16()
}

/// A refresh answered with another user's (genuine) ID token must not turn alice's session into
/// bob's: it ends. With userinfo down, the ID token is all the refresher has to go on, so the
/// server's own subject check decides; with userinfo up, the provider's answers contradict each
/// other and the session ends too. bob's own refreshes are untouched.
#[tokio::test]
async fn a_refresh_for_another_subject_ends_the_session() {
    for userinfo_down in [true, false] {
        let setup = Setup::new();
        let mut env = vec![("REFRESH_ID_TOKEN_OF", "bob")];
        if userinfo_down {
            env.push(("USERINFO_FAIL_FIRST", "100000"));
        }
        let idp = OidcProvider::start_with_env(&[CALLBACK], &[], ACCESS_TOKEN_TTL, &env);
        let (mut pomerium, _upstream) = start(&setup, &idp).await;
        let bob = signed_in(&pomerium, "bob").await;
        let alice = signed_in(&pomerium, "alice").await;
        let ended = if userinfo_down {
            "the refreshed identity is another user's than the session's; the session ends"
        } else {
            "the identity provider refused the refresh; the session ends"
        };
        pomerium.wait_for_log(ended).await;
        support::eventually("the provider to substitute bob's token", || async {
            (idp.count("refresh.id_token_substituted") >= 1).then_some(())
        })
        .await;
        support::eventually("alice's session to end", || async {
            (app_status(&pomerium, &alice).await == 302).then_some(())
        })
        .await;
        assert_eq!(app_status(&pomerium, &bob).await, 200, "bob is still signed in");
        // bob's own refresh went through (its log line is read as it comes).
        support::eventually("bob's session to be refreshed", || async {
            (pomerium.count_logs("session refreshed") >= 1).then_some(())
        })
        .await;
    }
}

/// A refresh without an ID token whose userinfo answer is `sub` alone: the user record keeps its
/// email (the policy still lets alice in) rather than being replaced by the partial answer.
#[tokio::test]
async fn a_partial_answer_never_empties_the_user() {
    let setup = Setup::new();
    let env = [("REFRESH_WITHOUT_ID_TOKEN", "1"), ("USERINFO_ONLY_SUB", "1")];
    let idp = OidcProvider::start_with_env(&[CALLBACK], &[], ACCESS_TOKEN_TTL, &env);
    let (mut pomerium, _upstream) = start(&setup, &idp).await;
    let alice = signed_in(&pomerium, "alice").await;
    pomerium.wait_for_log("session refreshed").await;
    support::eventually("the provider to drop the ID token and answer userinfo in part", || async {
        (idp.count("refresh.id_token_dropped") >= 1 && idp.count("userinfo.partial") >= 1).then_some(())
    })
    .await;
    // Once the refreshed records reach the cache, alice's email still lets her in (a user record
    // replaced by the partial answer would have no email, and the policy would deny).
    stays_allowed(&pomerium, &alice).await;
}

/// `app` answers 200 for `browser` throughout two seconds (long enough for a written record to
/// reach the cache).
async fn stays_allowed(pomerium: &Pomerium, browser: &Browser) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < until {
        assert_eq!(app_status(pomerium, browser).await, 200, "{}", pomerium.logs().join("\n"));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A refresh without an ID token while userinfo fails (500): who the session is cannot be told,
/// which is the provider in trouble, not a refusal. The session is kept and retried (every 10 s).
#[tokio::test]
async fn a_provider_in_trouble_never_ends_a_session() {
    let setup = Setup::new();
    let env = [("REFRESH_WITHOUT_ID_TOKEN", "1"), ("USERINFO_FAIL_FIRST", "100000")];
    let idp = OidcProvider::start_with_env(&[CALLBACK], &[], ACCESS_TOKEN_TTL, &env);
    let (mut pomerium, _upstream) = start(&setup, &idp).await;
    let alice = signed_in(&pomerium, "alice").await;
    pomerium.wait_for_log("refreshing the session failed; will retry").await;
    support::eventually("the provider to drop the ID token and fail userinfo", || async {
        (idp.count("refresh.id_token_dropped") >= 1 && idp.count("userinfo.failed") >= 1).then_some(())
    })
    .await;
    stays_allowed(&pomerium, &alice).await;
    let logs = pomerium.logs().join("\n");
    assert!(!logs.contains("the session ends"), "{logs}");
}
