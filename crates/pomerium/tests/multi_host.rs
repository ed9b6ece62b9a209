//! Multi-host sign-in (`depends_on`, system.md §3.3 step 5): a route whose page calls other hosts
//! signs the user in to all of them at once, the callback hopping from host to host with the
//! sealed session, signed again at each hop; a hop to a host the configuration does not serve is
//! refused even when the link is signed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use http::Method;
use support::browser::{Browser, OidcProvider};
use support::{Pomerium, SHARED_KEY, Setup, echo_upstream};
use url::Url;

const CALLBACK: &str = "https://authenticate.test.localhost/oauth2/callback";

#[tokio::test]
async fn a_route_that_depends_on_other_hosts_signs_in_to_all_of_them() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let upstream = echo_upstream("app", None).await;
    let rest = format!(
        "{}routes:\n\
         \x20 - from: https://app.test.localhost\n    to: http://{up}\n    allow_any_authenticated_user: true\n\
         \x20   depends_on: [api.test.localhost, https://files.test.localhost]\n\
         \x20 - from: https://api.test.localhost\n    to: http://{up}\n    allow_any_authenticated_user: true\n\
         \x20 - from: https://files.test.localhost\n    to: http://{up}\n    allow_any_authenticated_user: true\n",
        idp.config(),
        up = upstream.address
    );
    std::fs::write(setup.config_path(), setup.config(&rest)).unwrap();
    let pomerium = Pomerium::spawn(&setup.config_path(), setup.pki.ca()).await;
    let mut browser = Browser::new(&pomerium);

    let page = browser.get("https://app.test.localhost/page").await;
    let page = browser.sign_in_at_provider(page, "alice").await;
    assert_eq!(page.reply.status, 200, "{:?}", browser.visited);
    assert_eq!(page.url.as_str(), "https://app.test.localhost/page", "back where the user started");
    // The callback ran on every host, in order, each hop signed.
    let hops: Vec<String> = browser
        .visited
        .iter()
        .filter(|u| u.contains("/.pomerium/callback/"))
        .map(|u| Url::parse(u).unwrap().host_str().unwrap().to_owned())
        .collect();
    assert_eq!(hops, ["app.test.localhost", "api.test.localhost", "files.test.localhost"], "{:?}", browser.visited);
    for host in ["app.test.localhost", "api.test.localhost", "files.test.localhost"] {
        assert!(browser.cookie(host, "_pomerium").is_some(), "a session cookie for {host}");
    }
    // The other hosts answer at once: no second trip to the authenticate service.
    let before = browser.visited.len();
    for url in ["https://api.test.localhost/v1", "https://files.test.localhost/f"] {
        let reply = browser.send(Method::GET, &Url::parse(url).unwrap(), None, &[("accept", "text/html")]).await;
        assert_eq!(reply.status, 200, "{url}: {}", reply.text());
    }
    assert_eq!(browser.visited.len(), before + 2);
    assert_eq!(pomerium.count_logs("signed in"), 1);
}

#[tokio::test]
async fn a_signed_callback_still_never_hops_to_a_foreign_host() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let upstream = echo_upstream("app", None).await;
    let rest = format!(
        "{}routes:\n  - from: https://app.test.localhost\n    to: http://{}\n    allow_any_authenticated_user: true\n",
        idp.config(),
        upstream.address
    );
    std::fs::write(setup.config_path(), setup.config(&rest)).unwrap();
    let pomerium = Pomerium::spawn(&setup.config_path(), setup.pki.ca()).await;
    let mut browser = Browser::new(&pomerium);
    let page = browser.get("https://app.test.localhost/").await;
    assert_eq!(browser.sign_in_at_provider(page, "alice").await.reply.status, 200);
    // The sealed session of a real callback, replayed in a link that is signed (as if an attacker
    // held the shared secret's signature for it) but hops to a foreign host next.
    let real = browser.visited.iter().find(|u| u.contains("/.pomerium/callback/")).unwrap();
    let sealed = Url::parse(real)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "pomerium_session_encrypted")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let mut hop = Url::parse("https://app.test.localhost/.pomerium/callback/").unwrap();
    hop.query_pairs_mut()
        .append_pair("pomerium_redirect_uri", "https://app.test.localhost/")
        .append_pair("pomerium_session_encrypted", &sealed)
        .append_pair("pomerium_additional_hosts", "evil.example.com");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let signed = authenticate::sign(&hop, &SHARED_KEY, now);
    let mut other = Browser::new(&pomerium);
    let reply = other.send(Method::GET, &signed, None, &[]).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply.text().contains("pomerium_additional_hosts names a host this server does not serve"),
        "{}",
        reply.text()
    );
    assert!(reply.header("location").is_empty(), "no redirect to the foreign host");
    assert!(other.cookie("app.test.localhost", "_pomerium").is_none(), "and no cookie set");
}
