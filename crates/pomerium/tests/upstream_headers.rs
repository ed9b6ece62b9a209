//! One set of upstream headers, wherever the decision runs: the same requests of a signed-in user
//! (with forged identity and impersonation headers) reach the upstream with the same headers when
//! the proxy decides in process (all-in-one), when a proxy running apart asks the authorize
//! service, and when an Envoy asks it with an ext_authz `Check` (made here by the test). The
//! precedence is `proxy::upstream_headers`': strip what the client may not send, set identity then
//! `set_request_headers` (a template naming an identity header is joined after it, as Pomerium
//! sends it), remove `remove_request_headers`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use base64::Engine as _;
use databroker::auth::ServiceAuth;
use ext_authz::wire;
use http::Method;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use support::browser::{Browser, OidcProvider};
use support::{Pomerium, Setup, echo_upstream, shared_secret_base64};
use url::Url;

const CALLBACK: &str = "https://authenticate.test.localhost/oauth2/callback";

/// What a client sends beside its session cookie: forged identity and impersonation headers, a
/// header the route removes, and a value a template reads.
const CLIENT_HEADERS: &[(&str, &str)] = &[
    ("accept", "application/json"),
    ("x-pomerium-jwt-assertion", "forged.assertion.value"),
    ("x-pomerium-claim-groups", "admins"),
    ("impersonate-user", "root"),
    ("impersonate-group", "system:masters"),
    ("impersonate-extra-scopes", "everything"),
    ("x-remove-me", "client value"),
    ("x-who", "bob"),
];

/// Headers that legitimately differ between two requests (or two hops).
const PER_REQUEST: &[&str] = &["x-request-id", "traceparent", "tracestate", "content-length"];

/// The options both processes share, and the routes: one passing identity with templates that
/// name an identity header and read the identity, one to a Kubernetes API server whose template
/// names `Authorization`.
fn shared(idp: &OidcProvider, upstream: SocketAddr, setup: &Setup) -> String {
    format!(
        "shared_secret: {secret}\n\
         cookie_secret: {secret}\n\
         authenticate_service_url: https://authenticate.test.localhost\n\
         health_check_addr: 127.0.0.1:0\n\
         certificates:\n  - cert: {cert}\n    key: {key}\n\
         {idp}\
         jwt_claims_headers: [email, groups]\n\
         routes:\n\
         \x20 - from: https://app.test.localhost\n\
         \x20   to: http://{upstream}\n\
         \x20   pass_identity_headers: true\n\
         \x20   allow_any_authenticated_user: true\n\
         \x20   set_request_headers:\n\
         \x20     x-pomerium-claim-email: 'template-${{pomerium.request.headers[\"x-who\"]}}'\n\
         \x20     x-assertion-copy: ${{pomerium.jwt}}\n\
         \x20     x-static: static\n\
         \x20   remove_request_headers: [x-remove-me]\n\
         \x20 - from: https://kube.test.localhost\n\
         \x20   to: http://{upstream}\n\
         \x20   allow_any_authenticated_user: true\n\
         \x20   kubernetes_service_account_token: service-account-token\n\
         \x20   set_request_headers:\n\
         \x20     authorization: Bearer template-token\n\
         \x20     x-user-template: 'for-${{pomerium.request.headers[\"x-who\"]}}'\n",
        secret = shared_secret_base64(),
        cert = setup.cert_path.display(),
        key = setup.key_path.display(),
        idp = idp.config(),
    )
}

/// A header value made comparable: a JWT becomes its claims without the time-dependent ones.
fn comparable(value: &str) -> Value {
    let parts: Vec<&str> = value.split('.').collect();
    if parts.len() == 3 && value.starts_with("eyJ") {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
        let mut claims: serde_json::Map<String, Value> = serde_json::from_slice(&payload).unwrap();
        for time in ["iat", "exp", "nbf", "jti"] {
            claims.remove(time);
        }
        return serde_json::json!({ "jwt claims": claims });
    }
    Value::String(value.to_owned())
}

/// What the upstream saw, comparable: every header but the per-request ones.
fn upstream_headers(seen: &support::Seen) -> BTreeMap<String, Value> {
    let headers = seen.0["headers"].as_object().unwrap();
    headers
        .iter()
        .filter(|(name, _)| !PER_REQUEST.contains(&name.as_str()))
        .map(|(name, values)| {
            let values: Vec<&str> = values.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            (name.clone(), comparable(&values.join(", ")))
        })
        .collect()
}

/// The headers a `Check` answer sets, comparable.
fn check_headers(answer: &ext_authz::CheckResponse) -> BTreeMap<String, Value> {
    let Some(wire::check_response::HttpResponse::OkResponse(ok)) = &answer.http_response else {
        panic!("an allowed check: {answer:?}")
    };
    ok.headers
        .iter()
        .filter_map(|option| option.header.as_ref())
        .map(|header| {
            let value = if header.raw_value.is_empty() {
                header.value.clone()
            } else {
                String::from_utf8(header.raw_value.clone()).unwrap()
            };
            (header.key.clone(), comparable(&value))
        })
        .collect()
}

/// A Check as Envoy builds it for Pomerium, for `host` with the client's headers and cookie.
fn check_request(host: &str, cookie: &str) -> ext_authz::CheckRequest {
    let mut headers: BTreeMap<String, String> =
        CLIENT_HEADERS.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
    headers.insert("cookie".to_owned(), format!("_pomerium={cookie}"));
    headers.insert(":authority".to_owned(), host.to_owned());
    support::envoy_check("127.0.0.1", host, "/headers", headers)
}

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_split_and_ext_authz_send_the_same_headers_upstream() {
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let upstream = echo_upstream("app", None).await;
    let common = shared(&idp, upstream.address, &setup);

    // All-in-one, serving its databroker and authorize service over gRPC for the proxy apart.
    let mut all = Pomerium::spawn(
        &setup.write(
            "all.yaml",
            &format!("address: 127.0.0.1:0\ngrpc_address: 127.0.0.1:0\ngrpc_insecure: true\n{common}"),
        ),
        setup.pki.ca(),
    )
    .await;
    let grpc = format!("http://{}", all.listener("serving gRPC").await);
    let apart = Pomerium::spawn(
        &setup.write(
            "proxy.yaml",
            &format!(
                "services: proxy\naddress: 127.0.0.1:0\ndatabroker_service_url: {grpc}\n\
                 authorize_service_url: {grpc}\n{common}"
            ),
        ),
        setup.pki.ca(),
    )
    .await;

    // Alice signs in (all-in-one), to both hosts.
    let mut browser = Browser::new(&all);
    let page = browser.open_provider_login("https://app.test.localhost/").await;
    let page = browser.sign_in_at_provider(page, "alice").await;
    assert_eq!(page.reply.status, 200, "{:?}\n{}", browser.visited, all.logs().join("\n"));
    assert_eq!(browser.get("https://kube.test.localhost/").await.reply.status, 200, "{:?}", browser.visited);

    let client = ext_authz::Client::connect(
        std::slice::from_ref(&grpc),
        ServiceAuth::new(&support::SHARED_KEY),
        &databroker::client::RemoteOptions::default(),
        Default::default(),
    )
    .await
    .unwrap();

    for host in ["app.test.localhost", "kube.test.localhost"] {
        let target = url(&format!("https://{host}/headers"));
        // (a) decided in process.
        browser.switch_to(&all);
        let reply = browser.send(Method::GET, &target, None, CLIENT_HEADERS).await;
        assert_eq!(reply.status, 200, "{host}: {}", reply.text());
        let in_process = upstream_headers(&reply.seen());
        // (b) decided by the authorize service for the proxy apart.
        browser.switch_to(&apart);
        let reply = browser.send(Method::GET, &target, None, CLIENT_HEADERS).await;
        assert_eq!(reply.status, 200, "{host}: {}\n{}", reply.text(), apart.logs().join("\n"));
        let split = upstream_headers(&reply.seen());
        assert_eq!(in_process, split, "{host}: in process and split mode differ upstream");
        // (c) an Envoy's Check: what it sets is what the upstream got in process.
        let cookie = browser.cookie(host, "_pomerium").expect("a session cookie");
        let answer = client.check(check_request(host, &cookie)).await.unwrap();
        let set = check_headers(&answer);
        for (name, value) in &set {
            assert_eq!(in_process.get(name), Some(value), "{host}: `{name}` from Check differs from in process");
        }

        let header = |name: &str| in_process.get(name).and_then(Value::as_str).map(str::to_owned);
        let names: Vec<&str> = set.keys().map(String::as_str).collect();
        if host == "app.test.localhost" {
            assert_eq!(
                names,
                [
                    "x-assertion-copy",
                    "x-pomerium-claim-email",
                    "x-pomerium-claim-groups",
                    "x-pomerium-jwt-assertion",
                    "x-static"
                ]
            );
            // Identity first, the template joined after it (not either one alone).
            assert_eq!(header("x-pomerium-claim-email").as_deref(), Some("alice@example.com,template-bob"));
            assert_eq!(header("x-pomerium-claim-groups").as_deref(), Some("engineering,staff"), "not the forged value");
            let assertion = &in_process["x-pomerium-jwt-assertion"]["jwt claims"];
            assert_eq!(assertion["email"], "alice@example.com", "{in_process:?}");
            assert_eq!(in_process["x-assertion-copy"], in_process["x-pomerium-jwt-assertion"]);
            assert_eq!(header("x-static").as_deref(), Some("static"));
            assert_eq!(header("x-remove-me"), None, "remove_request_headers");
        } else {
            assert_eq!(names, ["authorization", "impersonate-group", "impersonate-user", "x-user-template"]);
            assert_eq!(
                header("authorization").as_deref(),
                Some("Bearer service-account-token,Bearer template-token"),
                "the service account token first, the template joined after it"
            );
            assert_eq!(header("impersonate-user").as_deref(), Some("alice@example.com"), "not the forged user");
            assert_eq!(header("impersonate-group").as_deref(), Some("engineering,staff"));
            assert_eq!(header("impersonate-extra-scopes"), None, "a client's impersonation headers never pass");
            assert_eq!(header("x-pomerium-jwt-assertion"), None, "the route does not pass identity");
            assert_eq!(header("x-pomerium-claim-groups"), None);
            assert_eq!(header("x-user-template").as_deref(), Some("for-bob"));
        }
        assert_eq!(header("cookie"), None, "the session cookie is the proxy's");
        assert_eq!(header("x-who").as_deref(), Some("bob"));
    }
}
