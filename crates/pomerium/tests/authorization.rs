//! Authorization in the request path of the `pomerium` binary: public routes, the sign-in
//! redirect and 401, policy denials in HTML and JSON, client certificates (495), unknown hosts,
//! the proxy's own endpoints, and ALPN on the main listener.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests"
)]

mod support;

use http::Method;
use proxy::body;
use support::*;

fn browser(host: &str, path: &str) -> http::Request<proxy::body::ProxyBody> {
    request(Method::GET, host, path)
        .header("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
        .body(body::empty())
        .unwrap()
}

fn api_client(host: &str, path: &str) -> http::Request<proxy::body::ProxyBody> {
    request(Method::GET, host, path).header("accept", "application/json").body(body::empty()).unwrap()
}

#[tokio::test]
async fn users_are_sent_to_sign_in_and_api_clients_get_401() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let config = routes(&[
        route("public", &format!("to: {}\nallow_public_unauthenticated_access: true", upstream.http())),
        route("private", &format!("to: {}\nallow_any_authenticated_user: true", upstream.http())),
        route("team", &format!("to: {}\nallowed_domains: [example.com]", upstream.http())),
        route(
            "multi",
            &format!(
                "to: {}\nallow_any_authenticated_user: true\nidp_client_id: my-idp\ndepends_on: [other.test.localhost]",
                upstream.http()
            ),
        ),
    ]);
    let mut server = setup.start(&config).await;

    let reply = server.fetch(browser(&server.host("public"), "/")).await;
    assert_eq!(reply.seen().upstream(), "u", "public routes need no user");
    let before = upstream.requests();

    for name in ["private", "team"] {
        let host = server.host(name);
        let reply = server.fetch(browser(&host, "/a/b?q=1")).await;
        assert_eq!(reply.status, 302, "{name}: a browser is sent to sign in");
        let location = url::Url::parse(reply.header("location")).unwrap();
        assert_eq!(location.host_str(), Some("authenticate.test.localhost"));
        assert_eq!(location.path(), "/.pomerium/sign_in");
        let redirect_uri = location.query_pairs().find(|(k, _)| k == "pomerium_redirect_uri").unwrap().1.into_owned();
        assert_eq!(redirect_uri, format!("https://{host}/a/b?q=1"), "{name}: back to where the user was going");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        authenticate::verify(&location, &SHARED_KEY, now).expect("signed with the shared secret");
        assert_eq!(reply.header("x-request-id").len(), 36);
        assert!(reply.headers.contains_key("strict-transport-security"), "the proxy's answers carry the headers");

        let reply = server.fetch(api_client(&host, "/a")).await;
        assert_eq!(reply.status, 401, "{name}: an API client cannot follow a sign-in");
        assert_eq!(reply.header("x-frame-options"), "SAMEORIGIN");
        assert_eq!(reply.json()["error"], "Unauthenticated");
        assert_eq!(reply.json()["request_id"], reply.header("x-request-id"));
    }
    let reply = server.fetch(browser(&server.host("multi"), "/")).await;
    let location = url::Url::parse(reply.header("location")).unwrap();
    let query = |name: &str| location.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    assert_eq!(query("pomerium_idp_id").as_deref(), Some("my-idp"), "idp_client_id");
    assert_eq!(query("pomerium_additional_hosts").as_deref(), Some("other.test.localhost"), "depends_on");
    assert_eq!(upstream.requests(), before, "nothing reached the upstream");
    server.assert_running();
}

#[tokio::test]
async fn policy_denials_are_pomerium_error_pages() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let fields = format!(
        "to: {}\nallow_public_unauthenticated_access: true\npolicy:\n  deny:\n    or:\n      - http_path:\n          starts_with: /admin",
        upstream.http()
    );
    let details = format!("{fields}\nshow_error_details: true");
    let mut server = setup.start(&routes(&[route("app", &fields), route("verbose", &details)])).await;
    let host = server.host("app");
    assert_eq!(server.fetch(browser(&host, "/public")).await.seen().target(), "/public");

    let reply = server.fetch(browser(&host, "/admin/users")).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(reply.header("x-pomerium-intercepted-response"), "true");
    let request_id = reply.header("x-request-id");
    assert_eq!(request_id.len(), 36);
    let page = reply.text();
    assert!(page.contains("403 Forbidden") && page.contains(request_id), "{page}");
    assert!(!page.contains("allow:"), "no details unless the route asks");
    assert_eq!(reply.header("x-frame-options"), "SAMEORIGIN", "error pages carry the response headers");

    let reply = server.fetch(api_client(&host, "/admin")).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("content-type"), "application/json");
    let json = reply.json();
    assert_eq!(json["error"], "Forbidden");
    assert_eq!(json["request_id"], reply.header("x-request-id"));

    let reply = server.fetch(browser(&server.host("verbose"), "/admin")).await;
    assert_eq!(reply.status, 403);
    assert!(reply.text().contains("deny: true"), "show_error_details: {}", reply.text());
    assert_eq!(upstream.requests(), 1, "denied requests never reach the upstream");
    server.assert_running();
}

#[tokio::test]
async fn client_certificates_are_required_where_configured() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let client_pki = Pki::new("client ca");
    let ca_file = setup.write("client-ca.pem", &client_pki.ca_pem());
    let config = format!(
        "downstream_mtls:\n  ca_file: {}\n{}",
        ca_file.display(),
        routes(&[route("app", &format!("to: {}\nallow_public_unauthenticated_access: true", upstream.http()))])
    );
    let mut server = setup.start(&config).await;
    let host = server.host("app");

    let reply = server.fetch(browser(&host, "/")).await;
    assert_eq!(reply.status, 495, "no client certificate");
    assert_eq!(reply.header("x-pomerium-intercepted-response"), "true");
    assert!(reply.text().contains("a valid client certificate is required"), "{}", reply.text());

    let untrusted = Pki::new("someone else").issue(&["mallory"]);
    let trusted = client_pki.issue(&["alice"]);
    for (leaf, status) in [(&untrusted, 495), (&trusted, 200)] {
        let config = client_tls(&server.ca, &[b"h2"], Some(leaf));
        let mut connection = H2::handshake(server.tls("app.test.localhost", config).await).await;
        let reply = connection.fetch(browser(&host, "/")).await;
        assert_eq!(reply.status.as_u16(), status, "{}", reply.text());
    }
    assert_eq!(upstream.requests(), 1);
    server.assert_running();
}

#[tokio::test]
async fn unknown_hosts_and_the_proxys_own_paths() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let config =
        routes(&[route("app", &format!("to: {}\nallow_public_unauthenticated_access: true", upstream.http()))]);
    let mut server = setup.start(&config).await;

    let reply = server.fetch(browser("unknown.example.com", "/")).await;
    assert_eq!(reply.status, 404);
    assert!(reply.text().contains("route not found"), "{}", reply.text());
    assert_eq!(reply.header("x-pomerium-intercepted-response"), "true");
    let reply = server.fetch(api_client(&server.host("unknown"), "/")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"], "route not found");

    for host in [server.host("app"), "unknown.example.com".to_owned()] {
        for path in ["/ping", "/healthz"] {
            let reply = server.get(&host, path).await;
            assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "OK"), "{host}{path}");
        }
        for path in ["/.pomerium/nothing-here", "/.well-known/pomerium/nothing"] {
            assert_eq!(server.get(&host, path).await.status, 404, "{host}{path}");
        }
    }
    // A route's host serves Pomerium's pages (the user info page, the sign-out confirmation, the
    // well-known document); a host with no route serves none of them.
    for path in ["/.pomerium/", "/.pomerium/sign_out", "/.well-known/pomerium"] {
        assert_eq!(server.get(&server.host("app"), path).await.status, 200, "{path}");
        assert_eq!(server.get("unknown.example.com", path).await.status, 404, "{path}");
    }
    assert_eq!(upstream.requests(), 0, "the proxy answers these itself");
    assert_eq!(server.get(&server.host("app"), "/pingpong").await.seen().target(), "/pingpong");
    server.assert_running();
}

#[tokio::test]
async fn alpn_negotiates_h2_and_http11() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let config =
        routes(&[route("app", &format!("to: {}\nallow_public_unauthenticated_access: true", upstream.http()))]);
    let mut server = setup.start(&config).await;
    let host = server.host("app");
    for (offer, expected, version) in [
        (vec![&b"h2"[..], b"http/1.1"], &b"h2"[..], http::Version::HTTP_2),
        (vec![&b"http/1.1"[..]], &b"http/1.1"[..], http::Version::HTTP_11),
    ] {
        let stream = server.tls("app.test.localhost", server.client_tls(&offer)).await;
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(expected));
        let reply = if expected == b"h2" {
            H2::handshake(stream).await.fetch(get(&host, "/")).await
        } else {
            H1::handshake(stream).await.fetch(get(&host, "/")).await
        };
        assert_eq!(reply.version, version);
        assert_eq!(reply.status, 200);
    }
    // Without ALPN, HTTP/1.1.
    let stream = server.tls("app.test.localhost", server.client_tls(&[])).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), None);
    assert_eq!(H1::handshake(stream).await.fetch(get(&host, "/")).await.status, 200);
    server.assert_running();
}

#[tokio::test]
async fn the_host_header_picks_the_route_not_the_sni() {
    let setup = Setup::new();
    let (a, b) = (echo_upstream("a", None).await, echo_upstream("b", None).await);
    let config = routes(&[
        route("a", &format!("to: {}\nallow_public_unauthenticated_access: true", a.http())),
        route("b", &format!("to: {}\nallow_public_unauthenticated_access: true", b.http())),
    ]);
    let mut server = setup.start(&config).await;
    let mut connection = server.h1("a.test.localhost").await;
    assert_eq!(connection.fetch(get(&server.host("a"), "/")).await.seen().upstream(), "a");
    assert_eq!(connection.fetch(get(&server.host("b"), "/")).await.seen().upstream(), "b");
    assert_eq!(connection.fetch(get("c.test.localhost", "/")).await.status, 404);
    let mut connection = server.h2("a.test.localhost").await;
    assert_eq!(connection.fetch(get(&server.host("b"), "/")).await.seen().upstream(), "b", ":authority decides");
    server.assert_running();
}
