//! `access_log_fields` and `authorize_log_fields` (Pomerium's `internal/log/access.go` and
//! `authorize.go`): the access log line and the "authorize check" line carry exactly the configured
//! fields, by Pomerium's names, with its defaults; an unknown name is refused at its location.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use std::collections::BTreeSet;
use support::browser::{Browser, OidcProvider};
use support::{Pomerium, Setup, echo_upstream, eventually, refused, request, route, routes};

/// Pomerium's `defaultAccessLogFields`.
const DEFAULT_ACCESS: &[&str] = &[
    "upstream-cluster",
    "method",
    "authority",
    "path",
    "user-agent",
    "referer",
    "forwarded-for",
    "request-id",
    "duration",
    "size",
    "response-code",
    "response-code-details",
];

/// What every "authorize check" line carries, whatever the fields.
const DECISION: &[&str] = &["allow", "allow-why-true", "allow-why-false", "deny", "deny-why-true", "deny-why-false"];

fn config(upstream: &str, options: &str) -> String {
    format!(
        "{options}{}",
        routes(&[
            route("app", &format!("to: http://{upstream}\nallow_public_unauthenticated_access: true")),
            route("private", &format!("to: http://{upstream}\nallow_any_authenticated_user: true")),
        ])
    )
}

/// The field names of a log line (without `message`).
fn keys(line: &serde_json::Value) -> BTreeSet<String> {
    line["fields"].as_object().unwrap().keys().filter(|k| *k != "message").cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// The log line with `message` whose `field` is `value`, once logged.
async fn line_where(pomerium: &Pomerium, message: &str, field: &str, value: &str) -> serde_json::Value {
    eventually(&format!("a {message:?} line with {field} {value}"), || async {
        pomerium
            .json_logs()
            .into_iter()
            .find(|line| line["fields"]["message"] == message && line["fields"][field] == value)
    })
    .await
}

/// GET `path` on route `name` with extra headers; the response's `x-request-id`.
async fn get(pomerium: &Pomerium, name: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut builder = request(http::Method::GET, &pomerium.host(name), path);
    for (header, value) in headers {
        builder = builder.header(*header, *value);
    }
    let reply = pomerium.fetch(builder.body(proxy::body::empty()).unwrap()).await;
    (reply.status.as_u16(), reply.header("x-request-id").to_owned())
}

#[tokio::test]
async fn default_fields_are_pomeriums() {
    let setup = Setup::new();
    let upstream = echo_upstream("app", None).await;
    let pomerium = setup.start(&config(&upstream.address.to_string(), "")).await;
    let (status, id) = get(&pomerium, "app", "/a/b?pomerium_session=secret", &[("user-agent", "tester/1")]).await;
    assert_eq!(status, 200);

    let access = line_where(&pomerium, "request", "request-id", &id).await;
    assert_eq!(access["target"], "access");
    assert_eq!(keys(&access), set(DEFAULT_ACCESS), "{access}");
    let fields = &access["fields"];
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["path"], "/a/b", "the path without its query");
    assert_eq!(fields["authority"], pomerium.host("app"));
    assert_eq!(fields["user-agent"], "tester/1");
    assert_eq!(fields["referer"], "");
    assert_eq!(fields["response-code"], 200);
    assert_eq!(fields["response-code-details"], "via_upstream");
    assert!(fields["duration"].as_f64().is_some(), "{access}");
    assert!(fields["size"].as_u64().is_some_and(|size| size > 0), "{access}");

    // The default authorize fields, of which this request (no session) has these.
    let authorize = line_where(&pomerium, "authorize check", "request-id", &id).await;
    let mut expected =
        set(&["request-id", "check-request-id", "method", "path", "host", "ip", "envoy-route-id", "route-id"]);
    expected.extend(set(DECISION));
    assert_eq!(keys(&authorize), expected, "{authorize}");
    let fields = &authorize["fields"];
    assert_eq!(fields["path"], "/a/b");
    assert_eq!(fields["host"], pomerium.host("app"));
    assert_eq!(fields["ip"], "127.0.0.1");
    assert_eq!(fields["allow"], true);
    assert!(fields["allow-why-true"].as_str().unwrap().contains("accept"), "{authorize}");

    let logs = pomerium.logs().join("\n");
    assert!(!logs.contains("secret"), "no credential in the logs: {logs}");
}

#[tokio::test]
async fn configured_fields_and_only_those() {
    let setup = Setup::new();
    let upstream = echo_upstream("app", None).await;
    let options = "access_log_fields: [request-id, ip, query, protocol-version, headers.x-foo]\n\
                   authorize_log_fields: [request-id, query, headers.X-Foo]\n";
    let pomerium = setup.start(&config(&upstream.address.to_string(), options)).await;
    let (status, id) = get(&pomerium, "private", "/p?code=secret&y=1", &[("x-foo", "bar"), ("x-other", "no")]).await;
    assert_eq!(status, 302, "signed out: to sign in");

    let access = line_where(&pomerium, "request", "request-id", &id).await;
    assert_eq!(keys(&access), set(&["request-id", "ip", "query", "protocol-version", "headers"]), "{access}");
    let fields = &access["fields"];
    assert_eq!(fields["ip"], "127.0.0.1");
    assert_eq!(fields["query"], "code=REDACTED&y=1");
    assert_eq!(fields["protocol-version"], "HTTP/1.1");
    assert_eq!(fields["headers"], r#"{"x-foo":"bar"}"#);

    let authorize = line_where(&pomerium, "authorize check", "request-id", &id).await;
    let mut expected = set(&["request-id", "query", "headers"]);
    expected.extend(set(DECISION));
    assert_eq!(keys(&authorize), expected, "{authorize}");
    let fields = &authorize["fields"];
    assert_eq!(fields["query"], "code=REDACTED&y=1");
    assert_eq!(fields["headers"], r#"{"x-foo":"bar"}"#);
    assert_eq!(fields["allow"], false);
    assert!(!pomerium.logs().join("\n").contains("secret"));
}

#[tokio::test]
async fn a_signed_in_users_decision_names_them_and_the_id_token_only_when_asked() {
    const CALLBACK: &str = "https://authenticate.test.localhost/oauth2/callback";
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let upstream = echo_upstream("app", None).await;
    let text =
        |options: &str| setup.config(&format!("{}{}", idp.config(), config(&upstream.address.to_string(), options)));
    let path = setup.write("config.yaml", &text(""));
    let mut pomerium = Pomerium::spawn(&path, setup.pki.ca()).await;
    let mut browser = Browser::new(&pomerium);
    let page = browser.open_provider_login("https://private.test.localhost/in").await;
    let page = browser.sign_in_at_provider(page, "alice").await;
    assert_eq!(page.reply.status, 200, "{:?}", browser.visited);

    let allowed = |line: &serde_json::Value| line["fields"]["path"] == "/in" && line["fields"]["allow"] == true;
    let line = eventually("the allowed decision", || async { pomerium.json_logs().into_iter().find(allowed) }).await;
    let fields = &line["fields"];
    assert_eq!(fields["user"], "alice", "{line}");
    assert_eq!(fields["email"], "alice@example.com");
    assert!(fields["session-id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(fields.get("id-token").is_none() && fields.get("id-token-claims").is_none());
    assert!(!pomerium.logs().join("\n").contains("eyJ"), "no token in the logs by default");

    // Asked for, the ID token is logged.
    setup.rewrite_config(&text("authorize_log_fields: [user, id-token]\n"));
    pomerium.wait_for_log("configuration reloaded").await;
    let reply = browser.get("https://private.test.localhost/again").await;
    assert_eq!(reply.reply.status, 200);
    let again = |line: &serde_json::Value| {
        line["fields"]["message"] == "authorize check"
            && line["fields"]["user"] == "alice"
            && line["fields"].get("path").is_none()
    };
    let line =
        eventually("the decision with the id token", || async { pomerium.json_logs().into_iter().find(again) }).await;
    let mut expected = set(&["user", "id-token"]);
    expected.extend(set(DECISION));
    assert_eq!(keys(&line), expected, "{line}");
    assert_eq!(line["fields"]["id-token"].as_str().unwrap().split('.').count(), 3, "a JWT");
}

#[test]
fn an_unknown_field_is_refused_at_start_where_it_is() {
    let setup = Setup::new();
    let text = setup.config("access_log_fields: [method, pathh]\nauthorize_log_fields: [emial]\nroutes: []\n");
    let stderr = refused(&setup, &text);
    let line = text.lines().position(|l| l.starts_with("access_log_fields")).unwrap() + 1;
    assert!(stderr.contains("`pathh` is not a valid value of `access_log_fields`"), "{stderr}");
    assert!(stderr.contains(&format!("config.yaml:{line}:29")), "{stderr}");
    assert!(stderr.contains("did you mean `path`?"), "{stderr}");
    assert!(stderr.contains("`emial` is not a valid value of `authorize_log_fields`"), "{stderr}");
    assert!(stderr.contains("did you mean `email`?"), "{stderr}");
}
