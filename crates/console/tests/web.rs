//! The web console: pages only for a request whose `X-Pomerium-Jwt-Assertion` verifies against
//! the JWKS of the route in front (a JWKS served here, signed here), for this host; rotating a
//! token behind a confirmation with a CSRF token.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests fail by panicking"
)]

mod support;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use http::{Method, StatusCode};
use serde_json::json;
use support::{Console, Http};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Serves `body` as JSON to every request on a loopback port.
async fn serve_json(body: String) -> std::net::SocketAddr {
    test_support::json_upstream(body).await.address
}

/// A console that trusts `route`'s assertions (its JWKS served on a loopback port).
async fn web_console(route: &Signer) -> Console {
    let jwks = serve_json(json!({"keys": [route.jwk()]}).to_string()).await;
    Console::start(&format!("{}web_console_jwks_url: http://{jwks}/jwks.json\n", support::settings(""))).await
}

/// A signed-in API client, its organization's id and a new cluster named `name` (as the API
/// answered).
async fn with_cluster(console: &Console, name: &str) -> (Http, String, serde_json::Value) {
    let api = Http::signed_in(&console.base()).await;
    let org = api.get("/api/v0/organizations").await.json[0]["id"].as_str().unwrap().to_owned();
    let cluster = api.post(&format!("/api/v0/organizations/{org}/clusters"), json!({"name": name})).await;
    (api, org, cluster.json)
}

struct Signer {
    key: EcdsaKeyPair,
    kid: &'static str,
}

impl Signer {
    fn new(kid: &'static str) -> Signer {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        Signer { key: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap(), kid }
    }

    fn jwk(&self) -> serde_json::Value {
        let point = self.key.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": self.kid, "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])})
    }

    fn assertion(&self, audience: &str, expires_in: i64) -> String {
        let header = B64.encode(json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"}).to_string());
        let exp = jiff::Timestamp::now().as_second() + expires_in;
        let claims = B64.encode(json!({"email": "admin@example.com", "aud": audience, "exp": exp}).to_string());
        let message = format!("{header}.{claims}");
        let signature = self.key.sign(&SystemRandom::new(), message.as_bytes()).unwrap();
        format!("{message}.{}", B64.encode(signature.as_ref()))
    }
}

#[tokio::test]
async fn pages_need_the_routes_assertion_and_rotation_needs_the_confirmation() {
    let route = Signer::new("route-key");
    let stranger = Signer::new("route-key");
    let console = web_console(&route).await;
    let (_, _, cluster) = with_cluster(&console, "web<b>").await;
    let cluster_id = cluster["id"].as_str().unwrap().to_owned();
    let old_token = cluster["refreshToken"].as_str().unwrap().to_owned();

    let browser = Http::new(&console.base());
    let open = |path: String, assertion: Option<String>| {
        let browser = &browser;
        async move {
            let mut headers = vec![("host", "console.test".to_owned())];
            if let Some(assertion) = assertion {
                headers.push(("x-pomerium-jwt-assertion", assertion));
            }
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            browser.raw(Method::GET, &path, None, &headers).await
        }
    };
    // Refused: no assertion, another key with the same kid, another host, expired.
    for assertion in [
        None,
        Some(stranger.assertion("console.test", 300)),
        Some(route.assertion("other.test", 300)),
        Some(route.assertion("console.test", -600)),
    ] {
        let page = open("/console/".to_owned(), assertion.clone()).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{assertion:?}: {page:?}");
        assert!(!String::from_utf8_lossy(&page.bytes).contains("web&lt;b&gt;"));
    }
    let good = route.assertion("console.test", 300);
    let clusters = open("/console/".to_owned(), Some(good.clone())).await;
    assert_eq!(clusters.status, StatusCode::OK, "{clusters:?}");
    let html = String::from_utf8_lossy(&clusters.bytes).into_owned();
    assert!(html.contains("web&lt;b&gt;") && !html.contains("web<b>"), "escaped: {html}");
    assert!(html.contains("admin@example.com"), "{html}");
    let status = open(format!("/console/clusters/{cluster_id}"), Some(good.clone())).await;
    assert!(String::from_utf8_lossy(&status.bytes).contains("persistent_backend"), "{status:?}");
    // The CA that issues the cluster's certificate, linked for download.
    let html = String::from_utf8_lossy(&status.bytes).into_owned();
    let ca_link = html.split("id=\"ca\" href=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let ca = browser.raw(Method::GET, &ca_link, None, &[]).await;
    assert_eq!(ca.status, StatusCode::OK, "{ca_link}");
    assert!(String::from_utf8_lossy(&ca.bytes).starts_with("-----BEGIN CERTIFICATE-----"), "{ca:?}");

    // Rotate: the confirmation's form carries the CSRF token; without it, refused.
    let confirm = open(format!("/console/clusters/{cluster_id}/rotate"), Some(good.clone())).await;
    let html = String::from_utf8_lossy(&confirm.bytes).into_owned();
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let post = |form: String| {
        let browser = &browser;
        let good = good.clone();
        let path = format!("/console/clusters/{cluster_id}/rotate");
        async move {
            let headers = [
                ("host", "console.test"),
                ("x-pomerium-jwt-assertion", good.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
            ];
            browser.raw(Method::POST, &path, Some(&form), &headers).await
        }
    };
    assert_eq!(post("csrf=forged".to_owned()).await.status, StatusCode::FORBIDDEN);
    let exchange = |token: String| {
        let base = console.base();
        async move { Http::new(&base).post("/cluster/v1/exchangeToken", json!({"refreshToken": token})).await.status }
    };
    assert_eq!(exchange(old_token.clone()).await, StatusCode::OK, "nothing rotated yet");
    let rotated = post(format!("csrf={csrf}")).await;
    assert_eq!(rotated.status, StatusCode::OK, "{rotated:?}");
    let html = String::from_utf8_lossy(&rotated.bytes).into_owned();
    let new_token = html.split("<pre id=\"token\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert_eq!(exchange(old_token).await, StatusCode::BAD_REQUEST);
    assert_eq!(exchange(new_token).await, StatusCode::OK);
}

/// The `csrf` hidden field of a page's form.
fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned()
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

#[tokio::test]
async fn policies_are_made_edited_and_deleted_from_the_pages_with_the_apis_diagnostics() {
    let route = Signer::new("route-key");
    let console = web_console(&route).await;
    let (api, org, cluster) = with_cluster(&console, "web").await;
    let cluster_id = cluster["id"].as_str().unwrap().to_owned();

    let browser = Http::new(&console.base());
    let good = route.assertion("console.test", 300);
    let get = |path: String| {
        let (browser, good) = (&browser, good.clone());
        async move {
            let headers = [("host", "console.test"), ("x-pomerium-jwt-assertion", good.as_str())];
            let page = browser.raw(Method::GET, &path, None, &headers).await;
            (page.status, String::from_utf8_lossy(&page.bytes).into_owned())
        }
    };
    let post = |path: String, body: String| {
        let (browser, good) = (&browser, good.clone());
        async move {
            let headers = [
                ("host", "console.test"),
                ("x-pomerium-jwt-assertion", good.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
            ];
            let page = browser.raw(Method::POST, &path, Some(&body), &headers).await;
            let location = page.headers.get("location").map(|l| l.to_str().unwrap().to_owned());
            (page.status, String::from_utf8_lossy(&page.bytes).into_owned(), location)
        }
    };
    let list_path = format!("/console/clusters/{cluster_id}/policies");
    let new_path = format!("{list_path}/new");

    // Not without the route's assertion.
    let anonymous = browser.raw(Method::GET, &new_path, None, &[("host", "console.test")]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let (status, html) = get(new_path.clone()).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let csrf = csrf_of(&html);
    assert!(html.contains(&cluster_id), "the template names the namespace: {html}");

    // A typo in the rule: refused with the API's diagnostic (code, line:column, help), the text
    // kept in the form, escaped.
    let typo = format!(
        "{{\n  \"name\": \"admins <b>\",\n  \"namespaceId\": \"{cluster_id}\",\n  \"ppl\": {{\"allow\": {{\"and\": [\n    {{\"emial\": {{\"is\": \"a@example.com\"}}}}\n  ]}}}}\n}}"
    );
    let (status, html, _) = post(new_path.clone(), form(&[("csrf", &csrf), ("text", &typo)])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("<code>ppl::"), "the diagnostic's code: {html}");
    assert!(html.contains(" at 5:6: "), "line:column: {html}");
    assert!(html.contains("help: "), "{html}");
    assert!(
        html.contains("&quot;emial&quot;") && html.contains("admins &lt;b&gt;") && !html.contains("admins <b>"),
        "{html}"
    );
    assert!(api.get(&format!("/api/v0/organizations/{org}/policies?namespaceId={cluster_id}")).await.json == json!([]));

    // Without the form's CSRF token, or with another form's: 403, nothing saved.
    let fixed = typo.replace("emial", "email");
    let (status, _, _) = post(new_path.clone(), form(&[("text", &fixed)])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let rotate_csrf = csrf_of(&get(format!("/console/clusters/{cluster_id}/rotate")).await.1);
    let (status, _, _) = post(new_path.clone(), form(&[("csrf", &rotate_csrf), ("text", &fixed)])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Fixed: saved through the API's path, listed.
    let (status, html, location) = post(new_path.clone(), form(&[("csrf", &csrf), ("text", &fixed)])).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    assert_eq!(location.as_deref(), Some(list_path.as_str()));
    let policies = api.get(&format!("/api/v0/organizations/{org}/policies?namespaceId={cluster_id}")).await.json;
    let policy_id = policies[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(policies[0]["name"], "admins <b>");
    let (status, html) = get(list_path.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<td>admins &lt;b&gt;</td>"), "{html}");

    // The cluster does not apply changes at once: Apply from the page.
    assert!(html.contains("id=\"apply\""), "{html}");
    let changesets = format!("/api/v0/organizations/{org}/changesets?namespaceId={cluster_id}");
    assert_eq!(api.get(&changesets).await.json[0]["status"], "pending");
    let (status, _, _) = post(format!("/console/clusters/{cluster_id}/apply"), form(&[("csrf", &csrf)])).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another form's token");
    let (status, _, _) =
        post(format!("/console/clusters/{cluster_id}/apply"), form(&[("csrf", &csrf_of(&html))])).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(api.get(&changesets).await.json[0]["status"], "current");
    assert!(!get(list_path.clone()).await.1.contains("id=\"apply\""));

    // Edit: the stored JSON in the form; a bad edit refused with its diagnostic.
    let edit_path = format!("{list_path}/{policy_id}");
    let (status, html) = get(edit_path.clone()).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("&quot;email&quot;"), "{html}");
    let edit_csrf = csrf_of(&html);
    let renamed = fixed.replace("admins <b>", "admins");
    let (status, html, _) =
        post(edit_path.clone(), form(&[("csrf", &edit_csrf), ("text", &renamed.replace("\"is\"", "\"iz\""))])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("<code>ppl::"), "{html}");
    let (status, _, _) = post(edit_path.clone(), form(&[("csrf", &edit_csrf), ("text", &renamed)])).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(api.get(&format!("/api/v0/organizations/{org}/policies/{policy_id}")).await.json["name"], "admins");

    // YAML as well as JSON: a typo refused with the diagnostic at its place in the YAML, the
    // fixed text saved as the same policy JSON would make.
    let yaml_typo = format!(
        "name: from yaml\nnamespaceId: {cluster_id}\nppl:\n  allow:\n    and:\n      - emial:\n          is: b@example.com\n"
    );
    let (status, html, _) = post(new_path.clone(), form(&[("csrf", &csrf), ("text", &yaml_typo)])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("<code>ppl::"), "{html}");
    assert!(html.contains(" at 6:9: "), "line:column in the YAML: {html}");
    assert!(html.contains("emial:"), "the YAML kept in the form: {html}");
    let broken_yaml = format!("name: [unclosed\nnamespaceId: {cluster_id}\n");
    let (status, html, _) = post(new_path.clone(), form(&[("csrf", &csrf), ("text", &broken_yaml)])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("neither JSON nor valid YAML"), "{html}");
    let (status, html, _) =
        post(new_path.clone(), form(&[("csrf", &csrf), ("text", &yaml_typo.replace("emial", "email"))])).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let policies = api.get(&format!("/api/v0/organizations/{org}/policies?namespaceId={cluster_id}")).await.json;
    let from_yaml = policies.as_array().unwrap().iter().find(|p| p["name"] == "from yaml").unwrap();
    assert_eq!(from_yaml["ppl"], json!({"allow": {"and": [{"email": {"is": "b@example.com"}}]}}), "{from_yaml}");

    // Delete behind its confirmation.
    let delete_path = format!("{edit_path}/delete");
    let (status, html) = get(delete_path.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = post(delete_path.clone(), form(&[("csrf", &edit_csrf)])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = post(delete_path, form(&[("csrf", &csrf_of(&html))])).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        api.get(&format!("/api/v0/organizations/{org}/policies/{policy_id}")).await.status,
        StatusCode::FORBIDDEN
    );
    assert!(!get(list_path).await.1.contains("admins"));
}

#[tokio::test]
async fn api_tokens_are_made_shown_once_and_deleted_from_the_pages() {
    let route = Signer::new("route-key");
    let console = web_console(&route).await;
    let browser = Http::new(&console.base());
    let good = route.assertion("console.test", 300);
    let headers = [("host", "console.test"), ("x-pomerium-jwt-assertion", good.as_str())];
    let form_headers = [
        ("host", "console.test"),
        ("x-pomerium-jwt-assertion", good.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let exchange = |token: String| {
        let base = console.base();
        async move { Http::new(&base).post("/api/v0/token", json!({"refreshToken": token})).await.status }
    };

    let anonymous = browser.raw(Method::GET, "/console/tokens", None, &[("host", "console.test")]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let list = browser.raw(Method::GET, "/console/tokens", None, &headers).await;
    let html = String::from_utf8_lossy(&list.bytes).into_owned();
    assert_eq!(list.status, StatusCode::OK, "{html}");
    assert!(!html.contains(support::API_TOKEN), "the configuration's token's value is never shown: {html}");
    let csrf = csrf_of(&html);

    // Without the form's CSRF token: 403.
    let refused = browser.raw(Method::POST, "/console/tokens", Some(&form(&[("name", "ci")])), &form_headers).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let made = browser
        .raw(Method::POST, "/console/tokens", Some(&form(&[("csrf", &csrf), ("name", "ci <b>")])), &form_headers)
        .await;
    let html = String::from_utf8_lossy(&made.bytes).into_owned();
    assert_eq!(made.status, StatusCode::OK, "{html}");
    let token = html.split("<pre id=\"token\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert_eq!(exchange(token.clone()).await, StatusCode::OK, "the new token signs in to the API");

    // Listed by name, escaped, never by value.
    let list = browser.raw(Method::GET, "/console/tokens", None, &headers).await;
    let html = String::from_utf8_lossy(&list.bytes).into_owned();
    assert!(html.contains("ci &lt;b&gt;") && !html.contains(&token), "{html}");
    let delete = html.split("action=\"/console/tokens/").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let delete_csrf = html.split(&format!("action=\"/console/tokens/{delete}\"")).nth(1).unwrap();
    let delete_csrf = csrf_of(delete_csrf);
    let path = format!("/console/tokens/{delete}");
    let refused = browser.raw(Method::POST, &path, Some(&form(&[("csrf", &csrf)])), &form_headers).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "another form's token");
    let deleted = browser.raw(Method::POST, &path, Some(&form(&[("csrf", &delete_csrf)])), &form_headers).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(exchange(token).await, StatusCode::BAD_REQUEST, "a deleted token no longer signs in");
    let list = browser.raw(Method::GET, "/console/tokens", None, &headers).await;
    assert!(!String::from_utf8_lossy(&list.bytes).contains("ci &lt;b&gt;"));
}

#[tokio::test]
async fn a_cluster_is_renamed_and_its_ip_overridden_from_the_pages() {
    let route = Signer::new("route-key");
    let console = web_console(&route).await;
    let (api, org, cluster) = with_cluster(&console, "web").await;
    let cluster_id = cluster["id"].as_str().unwrap().to_owned();
    let browser = Http::new(&console.base());
    let good = route.assertion("console.test", 300);
    let headers = [("host", "console.test"), ("x-pomerium-jwt-assertion", good.as_str())];
    let form_headers = [
        ("host", "console.test"),
        ("x-pomerium-jwt-assertion", good.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let path = format!("/console/clusters/{cluster_id}/edit");
    let page = browser.raw(Method::GET, &path, None, &headers).await;
    let html = String::from_utf8_lossy(&page.bytes).into_owned();
    assert_eq!(page.status, StatusCode::OK, "{html}");
    assert!(html.contains("value=\"web\""), "{html}");
    let csrf = csrf_of(&html);

    let refused = browser.raw(Method::POST, &path, Some(&form(&[("name", "renamed")])), &form_headers).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // Not an IP address: the API's error, the values kept.
    let bad = form(&[("csrf", &csrf), ("name", "renamed"), ("ip", "not-an-ip")]);
    let page = browser.raw(Method::POST, &path, Some(&bad), &form_headers).await;
    let html = String::from_utf8_lossy(&page.bytes).into_owned();
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{html}");
    assert!(
        html.contains("`manualOverrideIpAddress` must be an IP address") && html.contains("value=\"not-an-ip\""),
        "{html}"
    );
    let cluster_path = format!("/api/v0/organizations/{org}/clusters/{cluster_id}");
    assert_eq!(api.get(&cluster_path).await.json["name"], "web");

    let good_form = form(&[("csrf", &csrf), ("name", "renamed"), ("ip", "192.0.2.7")]);
    let page = browser.raw(Method::POST, &path, Some(&good_form), &form_headers).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let stored = api.get(&cluster_path).await.json;
    assert_eq!(stored["name"], "renamed", "{stored}");
    assert_eq!(stored["manualOverrideIpAddress"], "192.0.2.7", "{stored}");
    // Emptied: the override removed.
    let cleared = form(&[("csrf", &csrf), ("name", "renamed"), ("ip", "")]);
    assert_eq!(browser.raw(Method::POST, &path, Some(&cleared), &form_headers).await.status, StatusCode::SEE_OTHER);
    assert!(api.get(&cluster_path).await.json.get("manualOverrideIpAddress").is_none());
}
