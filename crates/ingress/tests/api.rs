//! What the controller will rely on when it calls [`ingress::translate`] with objects fetched from
//! the API server: a pure function of the Ingress and its dependencies, errors it can match on,
//! spans into annotation values, and certificates whose keys never print.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests fail by panicking, on fixtures they know"
)]

use ingress::{Dependencies, TranslateError};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;

fn ingress(annotations: serde_json::Value) -> Ingress {
    serde_json::from_value(json!({
        "metadata": {"name": "app", "namespace": "web", "annotations": annotations},
        "spec": {
            "tls": [{"hosts": ["app.example.com"], "secretName": "app-tls"}],
            "rules": [{"host": "app.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "app", "port": {"number": 80}}}}
            ]}}]
        }
    }))
    .unwrap()
}

fn deps() -> Dependencies {
    let mut deps = Dependencies::default();
    let service: Service = serde_json::from_value(
        json!({"metadata": {"name": "app", "namespace": "web"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "app-tls", "namespace": "web"},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": "CERT", "tls.key": "SECRET KEY"}
    }))
    .unwrap();
    deps.add_service(service);
    deps.add_secret(secret);
    deps
}

#[test]
fn translates_with_objects_built_in_memory() {
    let translation =
        ingress::translate(&ingress(json!({"ingress.pomerium.io/allowed_domains": "[example.com]"})), &deps()).unwrap();
    assert_eq!(
        translation.routes,
        vec![json!({
            "from": "https://app.example.com",
            "to": ["http://app.web.svc.cluster.local:80"],
            "prefix": "/",
            "id": r#"{"n":"app","ns":"web","h":"app.example.com","p":"/"}"#,
            "name": "web-app-app-example-com",
            "allowed_domains": ["example.com"],
        })]
    );
    let certificate = &translation.certificates[0];
    assert_eq!(
        (certificate.cert.as_slice(), certificate.key.as_slice()),
        (b"CERT".as_slice(), b"SECRET KEY".as_slice())
    );
    let debug = format!("{certificate:?}");
    assert!(!debug.contains("SECRET KEY") && debug.contains("redacted"), "{debug}");
    assert!(translation.warnings.is_empty(), "{:?}", translation.warnings);
}

#[test]
fn errors_are_values_to_match_on_with_spans_into_annotation_values() {
    let mut deps = deps();
    deps.services.clear();
    let errors = ingress::translate(
        &ingress(json!({"ingress.pomerium.io/policy": "allow:\n  or:\n    - emial: a@example.com\n"})),
        &deps,
    )
    .unwrap_err();
    assert!(matches!(errors[0], TranslateError::MissingService(_)), "{errors:?}");
    assert_eq!(
        errors[0].to_string(),
        "ingress `web/app`: rule `app.example.com` path `/`: service `web/app` not found"
    );
    // Without routes, the annotations are still checked.
    let TranslateError::Invalid(invalid) = &errors[1] else { panic!("{errors:?}") };
    let (value, span) = invalid.value_span().unwrap();
    assert_eq!(&value[span.offset()..span.offset() + span.len()], "emial");
    assert_eq!(invalid.place(), &ingress::Place::Annotation("ingress.pomerium.io/policy".to_owned()));
}

#[test]
fn the_annotation_prefix_is_part_of_the_dependencies() {
    let mut deps = deps();
    deps.annotation_prefix = "example.com".to_owned();
    let translation =
        ingress::translate(&ingress(json!({"example.com/allow_public_unauthenticated_access": "true"})), &deps)
            .unwrap();
    assert_eq!(translation.routes[0]["allow_public_unauthenticated_access"], json!(true));
}

#[test]
fn an_ingress_without_a_name_is_an_error() {
    let nameless: Ingress = serde_json::from_value(json!({"metadata": {}})).unwrap();
    let errors = ingress::translate(&nameless, &deps()).unwrap_err();
    assert_eq!(errors[0].to_string(), "an ingress has no `metadata.name`");
}
