//! The `config` bundle as Pomerium Zero ships it: `fixtures/upstream_config.bundle` was written by
//! `fixtures/config_bundle.py` with the classes protoc generates from upstream's own
//! `config.proto` (not with our codec); our cluster side reads it into the expected routes,
//! policies, settings and certificates, and the routes and settings load as a `config.yaml`'s.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use serde_json::json;

const UPSTREAM: &[u8] = include_bytes!("fixtures/upstream_config.bundle");

#[test]
fn a_bundle_written_with_upstreams_schema_reads_as_the_configuration_it_holds() {
    let records = zero::bundle::decode(UPSTREAM).unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.record_type, databroker::record::CONFIG_TYPE);
    assert_eq!(record.id, "config");
    let expected = json!({
        "name": "config",
        // The wire record's version: the changeset the control plane applied.
        "changesetVersion": 7,
        "routes": [
            {
                "id": "route-app",
                "name": "app",
                "description": "the app",
                "from": "https://app.example.com",
                // `load_balancing_weights` onto the urls.
                "to": ["http://127.0.0.1:9000,3", "http://127.0.0.1:9001,1"],
                "prefix": "/api",
                "prefix_rewrite": "/v1",
                "allow_websockets": true,
                "pass_identity_headers": true,
                "set_request_headers": {"X-Team": "blue"},
                "remove_request_headers": ["X-Secret"],
                "jwt_issuer_format": "uri",
                "timeout": "45s",
                "idle_timeout": "1500ms",
                // `policies`, then `ppl_policies`, as sub-policies; namespace, enforcement,
                // policy ids and timestamps say where things came from and are left out.
                "sub_policies": [
                    {
                        "id": "pol-admins",
                        "name": "admins",
                        "source_ppl": "[{\"allow\":{\"or\":[{\"email\":{\"is\":\"alice@example.com\"}}]}}]",
                        "explanation": "only admins",
                        "remediation": "ask an admin",
                    },
                    {"source_ppl": "[{\"allow\":{\"or\":[{\"domain\":{\"is\":\"example.com\"}}]}}]"},
                ],
            },
            {
                "id": "route-public",
                "name": "public",
                "from": "https://public.example.com",
                "allow_public_unauthenticated_access": true,
                "response": {"status": 200, "body": "ok"},
            },
        ],
        "settings": {
            "cookie_name": "_golden",
            "jwt_claims_headers": {"X-Email": "email"},
            "access_log_fields": ["method", "path"],
            "timeout_read": "30s",
        },
        "certificates": [{"cert": "CERT PEM", "key": "KEY PEM", "id": "wildcard"}],
    });
    assert_eq!(serde_json::Value::Object(record.data.clone()), expected);

    // The routes and settings load as a configuration file's would: no errors; the two route
    // options this server does not act on are reported as a file's would be.
    let mut document = record.data["settings"].as_object().unwrap().clone();
    document.insert("routes".to_owned(), record.data["routes"].clone());
    let text = serde_json::to_string_pretty(&document).unwrap();
    let loaded = config::load(&text, config::Format::Json, &config::env::Empty);
    assert!(
        loaded.errors.is_empty(),
        "{:?}",
        loaded.errors.iter().map(|e| e.diagnostic.to_string()).collect::<Vec<_>>()
    );
    // Sorted: their order follows the JSON object's, which serde_json's `preserve_order` (on in
    // some builds of the workspace) changes.
    let mut warnings: Vec<String> = loaded.warnings.iter().map(|w| w.diagnostic.to_string()).collect();
    warnings.sort();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].starts_with("`routes.description` is accepted but has no effect"), "{warnings:?}");
    assert!(warnings[1].starts_with("`routes.jwt_issuer_format` is accepted but has no effect"), "{warnings:?}");
    let config = loaded.config.unwrap();
    assert_eq!(config.routes.len(), 2);
    let app = config.routes.iter().find(|r| r.from.host == "app.example.com").unwrap();
    assert_eq!(app.sub_policies.len(), 2);
    assert_eq!(app.id, "route-app");
}

#[test]
fn an_unsupported_field_refuses_the_bundle_and_names_the_field() {
    // The golden bundle with `tls_downstream_client_ca_key_pair_id` (84) added to its first
    // route: a client CA this cluster cannot resolve; ignoring it would let any client in.
    let mut wire = databroker_wire(UPSTREAM);
    let any = wire.data.as_mut().unwrap();
    let mut config = zero::config_pb::wire::fields(&any.value).unwrap();
    let route_at = config.iter().position(|(n, _)| *n == 2).unwrap();
    let zero::config_pb::wire::Wire::Bytes(route) = config[route_at].1.clone() else { panic!("a route") };
    let mut route = route.to_vec();
    zero::config_pb::wire::put_bytes(&mut route, 84, b"kp-1");
    let mut rebuilt = Vec::new();
    for (index, (number, value)) in config.drain(..).enumerate() {
        match value {
            _ if index == route_at => zero::config_pb::wire::put_bytes(&mut rebuilt, number, &route),
            zero::config_pb::wire::Wire::Bytes(b) => zero::config_pb::wire::put_bytes(&mut rebuilt, number, b),
            other => panic!("unexpected {other:?}"),
        }
    }
    any.value = rebuilt;
    let bundle = prost::Message::encode_length_delimited_to_vec(&wire);
    let error = zero::bundle::decode(&bundle).unwrap_err().to_string();
    assert!(error.contains("config.routes[0].tls_downstream_client_ca_key_pair_id is not supported"), "{error}");
    assert!(error.contains("record 0 (`config`)"), "{error}");
}

fn databroker_wire(bundle: &[u8]) -> databroker::wire::pb::Record {
    let mut bytes = bundle;
    let len = prost::encoding::decode_varint(&mut bytes).unwrap();
    assert_eq!(len as usize, bytes.len());
    prost::Message::decode(bytes).unwrap()
}
