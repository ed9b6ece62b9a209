//! `pomerium-ingress-controller translate` as users run it: real processes, real files, exit codes,
//! stdout and stderr; and the round trip of its output through `config::load`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests fail by panicking, on fixtures they know"
)]

use assert_cmd::Command;
use test_support::cli::{file, run};

fn cli() -> Command {
    let mut command = Command::cargo_bin("pomerium-ingress-controller").expect("binary");
    command.env("NO_COLOR", "1");
    command
}

/// The documentation's example, a TCP route, endpoints behind `secure_upstream`, and most kinds of
/// annotation value: lists, maps, durations, a YAML policy.
const MANIFEST: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: hello
  annotations:
    ingress.pomerium.io/policy: '[{"allow":{"and":[{"email":{"is":"user@yourdomain.com"}}]}}]'
spec:
  rules:
  - host: hello.localhost.pomerium.io
    http:
      paths:
      - {backend: {service: {name: nginx-hello, port: {name: http}}}, path: /, pathType: Prefix}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: app
  namespace: apps
  annotations:
    ingress.pomerium.io/secure_upstream: "true"
    ingress.pomerium.io/allowed_users: '["alice@example.com"]'
    ingress.pomerium.io/timeout: 1m30s
    ingress.pomerium.io/set_request_headers: '{"X-Team": "apps"}'
    ingress.pomerium.io/policy: |
      - deny:
          or:
            - http_path:
                starts_with: /admin
spec:
  rules:
  - host: app.example.com
    http:
      paths:
      - {backend: {service: {name: app, port: {number: 443}}}, path: /api, pathType: Exact}
      - {backend: {service: {name: app, port: {number: 443}}}, path: /, pathType: Prefix}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: db
  annotations:
    ingress.pomerium.io/tcp_upstream: "true"
    ingress.pomerium.io/allow_any_authenticated_user: "true"
spec:
  rules:
  - host: db.example.com
    http: {paths: [{backend: {service: {name: db, port: {number: 5432}}}, pathType: ImplementationSpecific}]}
---
apiVersion: v1
kind: Service
metadata: {name: nginx-hello}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: apps}
spec: {ports: [{port: 443, targetPort: 8443}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: app, namespace: apps}
subsets: [{addresses: [{ip: 10.0.0.2}, {ip: 10.0.0.1}], ports: [{port: 8443}]}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {ports: [{port: 5432}]}
"#;

/// The documentation's "Becomes:" for its first example, with the port the Ingress names.
const SEED_BECOMES: &str = "routes:
- from: https://hello.localhost.pomerium.io
  to: http://nginx-hello.default.svc.cluster.local:80
  policy:
  - allow:
      and:
      - email:
          is: user@yourdomain.com
";

fn load(text: &str) -> config::Config {
    let loaded = config::load(text, config::Format::Yaml, &config::env::Empty);
    assert!(loaded.errors.is_empty(), "{:#?}\n{text}", loaded.errors);
    loaded.config.unwrap()
}

/// What a route matches and where it goes, as `config::load` read it.
fn summary(route: &config::Route) -> String {
    let to: Vec<&str> = route.upstreams().iter().map(|u| u.url.as_str().trim_end_matches('/')).collect();
    format!(
        "{} {:?} {:?} {:?} to={to:?} id={} name={:?} timeout={:?} headers={:?} tls_server_name={:?}",
        route.from.text,
        route.prefix,
        route.path,
        route.regex,
        route.id,
        route.name,
        route.timeout,
        route.set_request_headers,
        route.tls.server_name,
    )
}

/// The same from the translation's JSON route.
fn json_summary(route: &serde_json::Value) -> String {
    let text = |key: &str| route.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    // As the url crate writes them (`http://a:80` is `http://a/`), like `summary`.
    let to: Vec<String> = route["to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| url::Url::parse(u.as_str().unwrap()).unwrap().as_str().trim_end_matches('/').to_owned())
        .collect();
    let timeout = text("timeout").map(|t| config::duration::parse(&t).unwrap());
    let headers: std::collections::BTreeMap<String, String> = route
        .get("set_request_headers")
        .and_then(|h| h.as_object())
        .map(|h| h.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect())
        .unwrap_or_default();
    format!(
        "{} {:?} {:?} {:?} to={to:?} id={} name={:?} timeout={timeout:?} headers={headers:?} tls_server_name={:?}",
        text("from").unwrap(),
        text("prefix"),
        text("path"),
        text("regex"),
        text("id").unwrap(),
        text("name"),
        text("tls_server_name"),
    )
}

/// A route's assembled policy in the text form (spans differ between documents).
fn policy_text(route: &config::Route) -> String {
    ppl::format::format(&route.policy.ast, &ppl::comments::Trivia::default(), ppl::Syntax::Text)
}

#[test]
fn translate_prints_routes_that_load_as_the_same_routes() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = file(&dir, "manifest.yaml", MANIFEST);
    let result = run(cli().arg("translate").arg(&manifest));
    assert_eq!(result.code, 0, "{}", result.stderr);
    let printed = load(&result.stdout);

    let read = ingress::manifest::read("manifest.yaml", MANIFEST);
    let outcome = ingress::translate_all(&read.objects, &ingress::Options::default());
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let loaded: Vec<String> = printed.routes.iter().map(summary).collect();
    let translated: Vec<String> = outcome.routes.iter().map(json_summary).collect();
    assert_eq!(loaded, translated);
    assert_eq!(loaded.len(), 4);

    // The documentation's example: the same route, with the same policy, as its "Becomes:".
    let becomes = load(SEED_BECOMES);
    let hello = printed.routes.iter().find(|r| r.from.host == "hello.localhost.pomerium.io").unwrap();
    assert_eq!(policy_text(hello), policy_text(&becomes.routes[0]));
    assert_eq!(hello.upstreams(), becomes.routes[0].upstreams());

    // Legacy options and the policy annotation are assembled as in config.yaml: allow rule first.
    let app = printed.routes.iter().find(|r| r.path.as_deref() == Some("/api")).unwrap();
    assert_eq!(
        policy_text(app),
        "allow or(user is \"alice@example.com\", email is \"alice@example.com\")\ndeny or(http_path starts_with \"/admin\")\n"
    );
}

#[test]
fn errors_exit_3_with_the_span_in_the_annotation_value() {
    let dir = tempfile::tempdir().unwrap();
    let broken = MANIFEST.replace("            - http_path:", "            - http_pth:");
    let manifest = file(&dir, "manifest.yaml", &broken);
    let result = run(cli().arg("translate").arg(&manifest));
    assert_eq!(result.code, 3, "{}", result.stderr);
    assert!(result.stdout.is_empty(), "{}", result.stdout);
    let stderr = &result.stderr;
    assert!(stderr.contains("ppl::criterion::unknown"), "{stderr}");
    assert!(
        stderr.contains("ingress `apps/app`: annotation `ingress.pomerium.io/policy`: unknown criterion `http_pth`"),
        "{stderr}"
    );
    // The report shows the policy as written in the annotation, the criterion underlined.
    assert!(stderr.contains("[ingress.pomerium.io/policy:3:9]"), "{stderr}");
    assert!(stderr.contains("      - http_pth:"), "{stderr}");
    assert!(stderr.contains("did you mean `http_path`?"), "{stderr}");
    assert!(stderr.contains("no routes printed: 1 error"), "{stderr}");
}

#[test]
fn manifest_errors_exit_3_and_point_into_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: x\n  annotations:\n    ingress.pomerium.io/secure_upstream: true\n";
    let manifest = file(&dir, "bad.yaml", text);
    let result = run(cli().arg("translate").arg(&manifest));
    assert_eq!(result.code, 3, "{}", result.stderr);
    assert!(result.stderr.contains("bad.yaml:6:42"), "{}", result.stderr);
    assert!(result.stderr.contains("must be a string"), "{}", result.stderr);
}

#[test]
fn standard_input_several_files_and_the_annotation_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let service = file(
        &dir,
        "service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n",
    );
    let ingress = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\n  annotations: {example.com/allow_public_unauthenticated_access: \"true\"}\nspec:\n  rules:\n  - host: web.example.com\n    http: {paths: [{backend: {service: {name: web, port: {number: 80}}}, path: /, pathType: Prefix}]}\n";
    let result =
        run(cli().args(["translate", "--annotation-prefix", "example.com", "-"]).arg(&service).write_stdin(ingress));
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert!(result.stdout.contains("allow_public_unauthenticated_access: true"), "{}", result.stdout);
    assert!(result.stdout.contains("- http://web.default.svc.cluster.local:80"), "{}", result.stdout);
    load(&result.stdout);
}

#[test]
fn an_unreadable_file_exits_1() {
    let result = run(cli().args(["translate", "/nonexistent/manifest.yaml"]));
    assert_eq!(result.code, 1);
    assert!(result.stderr.contains("/nonexistent/manifest.yaml"), "{}", result.stderr);
}

#[test]
fn translate_needs_a_manifest() {
    let result = run(cli().arg("translate"));
    assert_eq!(result.code, 2, "{}", result.stderr);
}
