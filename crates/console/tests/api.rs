//! Zero's public API v0 and the cluster API of the real `pomerium-console` binary, through a real
//! HTTP client, on in-memory storage and on PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests fail by panicking"
)]

mod support;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Console, Http, PROMPTLY};
use zero::connect::pb;

async fn organization(http: &Http) -> String {
    let orgs = http.get("/api/v0/organizations").await;
    assert_eq!(orgs.status, StatusCode::OK, "{orgs:?}");
    assert_eq!(orgs.json.as_array().unwrap().len(), 1, "one organization made at first start: {orgs:?}");
    orgs.json[0]["id"].as_str().unwrap().to_owned()
}

/// Creates a cluster: 201, a starter domain under the base domain, and the token.
async fn create_cluster(http: &Http, org: &str, name: &str) -> Value {
    let subdomain = http.get("/api/v0/generateSubdomainName").await;
    assert_eq!(subdomain.status, StatusCode::OK);
    let name_ok = |n: &str| {
        let parts: Vec<&str> = n.split('-').collect();
        parts.len() == 3 && parts[2].len() == 4 && parts[2].bytes().all(|b| b.is_ascii_digit())
    };
    let domain = subdomain.json["name"].as_str().unwrap();
    assert!(name_ok(domain), "{domain}");
    let created =
        http.post(&format!("/api/v0/organizations/{org}/clusters"), json!({"name": name, "domain": domain})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(created.json["fqdn"], format!("{domain}.clusters.test"));
    assert_eq!(created.json["namespaceId"], created.json["id"]);
    assert!(created.json["refreshToken"].as_str().unwrap().len() >= 40);
    assert!(
        created.json.get("tokenGeneration").is_none() && created.json.get("tokenId").is_none(),
        "internal fields stay hidden: {created:?}"
    );
    created.json
}

async fn exchange(console: &Http, token: &str) -> support::Answer {
    let plain = Http::new(&console.base);
    plain.post("/cluster/v1/exchangeToken", json!({"refreshToken": token})).await
}

fn cluster_http(base: &str, id_token: &str) -> Http {
    let mut http = Http::new(base);
    http.token = Some(id_token.to_owned());
    http
}

async fn subscribe(base: &str, id_token: &str) -> tonic::Streaming<pb::Message> {
    let channel = tonic::transport::Endpoint::from_shared(base.to_owned()).unwrap().connect().await.unwrap();
    let mut client = pb::connect_client::ConnectClient::new(channel);
    let mut request =
        tonic::Request::new(pb::SubscribeRequest { hostname: "replica-a".into(), version: "0.0.0-test".into() });
    request.metadata_mut().insert("authorization", format!("Bearer {id_token}").parse().unwrap());
    tokio::time::timeout(PROMPTLY, client.subscribe(request)).await.unwrap().unwrap().into_inner()
}

async fn next_event(stream: &mut tonic::Streaming<pb::Message>) -> Result<zero::connect::Event, tonic::Status> {
    match tokio::time::timeout(PROMPTLY, stream.message()).await.expect("a message in time") {
        Ok(Some(message)) => Ok(zero::connect::Event::from(&message)),
        Ok(None) => Err(tonic::Status::ok("end of stream")),
        Err(status) => Err(status),
    }
}

/// The whole API, as a script or Terraform uses it, and a replica's side of the cluster API.
async fn scenario(console: &Console) {
    let base = console.base();
    // Credentials.
    let anonymous = Http::new(&base);
    let refused = anonymous.post("/api/v0/token", json!({"refreshToken": "not-the-token-at-all"})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
    assert!(refused.json["error"].is_string());
    let unauthenticated = anonymous.get("/api/v0/organizations").await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    assert!(unauthenticated.json["error"].as_str().unwrap().contains("Bearer"));
    assert_eq!(anonymous.get("/api/v0/version").await.status, StatusCode::OK);
    let http = Http::signed_in(&base).await;
    // The Go SDK's scheme.
    let token = http.token.clone().unwrap();
    let sdk = http.raw(Method::GET, "/api/v0/organizations", None, &[]).await;
    assert_eq!(sdk.status, StatusCode::OK);
    let mut go_sdk = Http::new(&base);
    go_sdk.token = None;
    let with_pomerium_scheme = go_sdk
        .raw(Method::GET, "/api/v0/organizations", None, &[("authorization", &format!("Pomerium {token}"))])
        .await;
    assert_eq!(with_pomerium_scheme.status, StatusCode::OK);

    let org = organization(&http).await;
    // One organization: another is refused, saying so.
    let another = http.post("/api/v0/organizations", json!({"name": "second"})).await;
    assert_eq!(another.status, StatusCode::BAD_REQUEST, "{another:?}");
    assert!(another.json["error"].as_str().unwrap().contains("serves one organization"), "{another:?}");
    assert!(another.json["error"].as_str().unwrap().contains(&org), "{another:?}");
    let cluster = create_cluster(&http, &org, "production").await;
    let cluster_id = cluster["id"].as_str().unwrap();
    let first_token = cluster["refreshToken"].as_str().unwrap();
    let listed = http.get(&format!("/api/v0/organizations/{org}/clusters")).await;
    assert!(listed.json.as_array().unwrap().iter().any(|c| c["id"] == cluster["id"]), "{listed:?}");
    let namespaces = http.get(&format!("/api/v0/organizations/{org}/namespaces")).await;
    assert!(namespaces.json.as_array().unwrap().iter().any(|n| n["id"] == cluster["id"]), "{namespaces:?}");

    // The replica's side: exchange, bootstrap.
    let exchanged = exchange(&http, first_token).await;
    assert_eq!(exchanged.status, StatusCode::OK, "{exchanged:?}");
    assert!(exchanged.json["expiresInSeconds"].is_string());
    let cluster_token = exchanged.json["idToken"].as_str().unwrap().to_owned();
    let replica = cluster_http(&base, &cluster_token);
    let bootstrap = replica.get("/cluster/v1/bootstrap").await;
    assert_eq!(bootstrap.status, StatusCode::OK, "{bootstrap:?}");
    let config: zero::api::BootstrapConfig = serde_json::from_value(bootstrap.json.clone()).unwrap();
    assert_eq!(config.cluster_id, cluster_id);
    assert_eq!(config.organization_id, org);
    assert_eq!(config.shared_secret.len(), 32);
    assert_eq!(config.databroker_storage_connection, None);
    // An API user's token is no cluster's, and the reverse.
    assert_eq!(cluster_http(&base, &token).get("/cluster/v1/bootstrap").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replica.get(&format!("/api/v0/organizations/{org}/clusters")).await.status, StatusCode::UNAUTHORIZED);

    // Ping: no replica yet; then one with its Connect stream open.
    let ping = format!("/api/v0/organizations/{org}/clusters/{cluster_id}/ping");
    let lonely = http.post(&ping, json!({})).await;
    assert_eq!(lonely.status, StatusCode::OK, "{lonely:?}");
    assert_eq!(lonely.json["success"], false, "{lonely:?}");
    assert_eq!(lonely.json["errorCode"], "err_cluster_ping_no_identity", "{lonely:?}");
    let mut stream = subscribe(&base, &cluster_token).await;
    let pinged = http.post(&ping, json!({})).await;
    assert_eq!(pinged.json, json!({"success": true}), "{pinged:?}");
    // Replicas in a window: RFC 3339 bounds, each checked.
    let replicas_path = format!("/api/v0/organizations/{org}/clusters/{cluster_id}/replicas");
    let bad = http.get(&format!("{replicas_path}?startTime=yesterday")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad:?}");
    assert!(bad.json["error"].as_str().unwrap().contains("`startTime`"), "{bad:?}");
    let bad = http.get(&format!("{replicas_path}?endTime=2024-13-01T00:00:00Z")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad:?}");
    assert!(bad.json["error"].as_str().unwrap().contains("`endTime`"), "{bad:?}");
    let before =
        http.get(&format!("{replicas_path}?startTime=2000-01-01T00:00:00Z&endTime=2000-01-02T00:00:00Z")).await;
    assert_eq!(before.json, json!([]), "not there in 2000: {before:?}");
    let window =
        http.get(&format!("{replicas_path}?startTime=2000-01-01T00:00:00Z&endTime=2999-01-01T00:00:00Z")).await;
    assert_eq!(window.json.as_array().unwrap().len(), 1, "{window:?}");
    let later = http.get(&format!("{replicas_path}?startTime=2999-01-01T00:00:00Z&endTime=2999-01-02T00:00:00Z")).await;
    assert_eq!(later.json, json!([]), "{later:?}");

    // A policy with errors: 400, every diagnostic with code, message, line:column and help.
    let policies = format!("/api/v0/organizations/{org}/policies");
    let bad_policy = "{\n  \"name\": \"admins\",\n  \"namespaceId\": \"NS\",\n  \"ppl\": {\"allow\": {\"and\": [\n    {\"emial\": {\"is\": \"a@example.com\"}},\n    {\"claim/groups\": {\"contains\": \"admin\"}}\n  ]}}\n}"
        .replace("NS", cluster_id);
    let rejected = http.raw(Method::POST, &policies, Some(&bad_policy), &[]).await;
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST, "{rejected:?}");
    let diagnostics = rejected.json["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 2, "{rejected:?}");
    assert_eq!(diagnostics[0]["line"], 5, "{rejected:?}");
    assert_eq!(diagnostics[0]["column"], 6, "{rejected:?}");
    assert!(diagnostics[0]["code"].as_str().unwrap().starts_with("ppl::"), "{rejected:?}");
    assert!(diagnostics[0]["help"].as_str().unwrap().contains("email"), "{rejected:?}");
    assert_eq!(diagnostics[1]["line"], 6, "{rejected:?}");
    assert!(rejected.json["error"].as_str().unwrap().contains("2 errors"), "{rejected:?}");

    // A good policy and a route using it.
    let policy = http
        .post(
            &policies,
            json!({"name": "admins", "namespaceId": cluster_id, "ppl": {"allow": {"and": [{"email": {"is": "admin@example.com"}}]}}}),
        )
        .await;
    assert_eq!(policy.status, StatusCode::CREATED, "{policy:?}");
    let policy_id = policy.json["id"].as_str().unwrap().to_owned();
    let routes = format!("/api/v0/organizations/{org}/routes");
    let route_body = json!({
        "name": "app", "namespaceId": cluster_id, "from": "https://app.example.com",
        "to": ["http://127.0.0.1:9"], "policyIds": [policy_id], "prefixRewrite": "/v1",
    });
    let route = http.post(&routes, route_body.clone()).await;
    assert_eq!(route.status, StatusCode::CREATED, "{route:?}");
    assert_eq!(route.json["policies"][0]["id"], policy_id.as_str(), "{route:?}");
    let route_id = route.json["id"].as_str().unwrap().to_owned();
    // A route that does not load: 400, at the field.
    let bad_route = http
        .post(
            &routes,
            json!({"name": "bad", "namespaceId": cluster_id, "from": "https://b.example.com", "to": ["not a url"]}),
        )
        .await;
    assert_eq!(bad_route.status, StatusCode::BAD_REQUEST, "{bad_route:?}");
    assert_eq!(bad_route.json["diagnostics"][0]["field"], "to", "{bad_route:?}");
    // Lists: `namespaceId` required, then a bare array.
    assert_eq!(http.get(&routes).await.status, StatusCode::BAD_REQUEST);
    let list = http.get(&format!("{routes}?namespaceId={cluster_id}")).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json.as_array().unwrap().len(), 1, "{list:?}");
    let policy_list = http.get(&format!("{policies}?namespaceId={cluster_id}")).await;
    assert_eq!(policy_list.json[0]["routes"][0]["id"], route_id.as_str(), "{policy_list:?}");

    // PATCH is a JSON Patch.
    let patched = http
        .send(
            Method::PATCH,
            &format!("{routes}/{route_id}"),
            Some(json!([{"op": "replace", "path": "/from", "value": "https://app2.example.com"}, {"op": "add", "path": "/allowWebsockets", "value": true}])),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
    assert_eq!(patched.json["from"], "https://app2.example.com");
    assert_eq!(patched.json["allowWebsockets"], true);
    let moved = http
        .send(
            Method::PATCH,
            &format!("{routes}/{route_id}"),
            Some(json!([{"op": "replace", "path": "/namespaceId", "value": "elsewhere"}])),
        )
        .await;
    assert_eq!(moved.status, StatusCode::BAD_REQUEST, "{moved:?}");
    let bad_patch = http
        .send(Method::PATCH, &format!("{routes}/{route_id}"), Some(json!([{"op": "remove", "path": "/nope"}])))
        .await;
    assert_eq!(bad_patch.status, StatusCode::BAD_REQUEST, "{bad_patch:?}");
    let breaking_patch = http
        .send(
            Method::PATCH,
            &format!("{routes}/{route_id}"),
            Some(json!([{"op": "replace", "path": "/to", "value": ["::"]}])),
        )
        .await;
    assert_eq!(breaking_patch.status, StatusCode::BAD_REQUEST, "{breaking_patch:?}");
    assert_eq!(http.get(&format!("{routes}/{route_id}")).await.json["from"], "https://app2.example.com");
    // A policy in use cannot be deleted.
    assert_eq!(
        http.send(Method::DELETE, &format!("{policies}/{policy_id}"), None).await.status,
        StatusCode::BAD_REQUEST
    );

    // Nothing applied yet: the bundle is empty.
    let bundles = replica.get("/cluster/v1/bundles").await;
    assert_eq!(bundles.json, json!({"bundles": [{"id": "config"}]}));
    let empty = download(&replica, None).await;
    assert_eq!(zero::bundle::decode(&empty.bytes).unwrap().len(), 0);

    // The changeset, applied: the replica hears of it and the bundle carries the route.
    let changesets = http.get(&format!("/api/v0/organizations/{org}/changesets?namespaceId={cluster_id}")).await;
    let pending: Vec<&Value> =
        changesets.json.as_array().unwrap().iter().filter(|c| c["status"] == "pending").collect();
    assert_eq!(pending.len(), 1, "{changesets:?}");
    let changeset_id = pending[0]["id"].as_str().unwrap();
    let applied = http.post(&format!("/api/v0/organizations/{org}/changesets/{changeset_id}/apply"), json!({})).await;
    assert_eq!(applied.status, StatusCode::OK, "{applied:?}");
    assert_eq!(applied.json["status"], "current");
    assert_eq!(next_event(&mut stream).await.unwrap(), zero::connect::Event::ConfigUpdated(1));
    let bundle = download(&replica, None).await;
    let etag = bundle.headers["etag"].to_str().unwrap().to_owned();
    let records = zero::bundle::decode(&bundle.bytes).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].record_type, "type.googleapis.com/pomerium.config.Config");
    let served_routes = records[0].data["routes"].as_array().unwrap();
    assert_eq!(served_routes[0]["from"], "https://app2.example.com");
    assert_eq!(served_routes[0]["prefix_rewrite"], "/v1");
    // Each attached policy is a sub-policy of the route, as Zero ships it.
    let sub_policy = &served_routes[0]["sub_policies"][0];
    let ppl: Value = serde_json::from_str(sub_policy["source_ppl"].as_str().unwrap()).unwrap();
    assert_eq!(ppl[0]["allow"]["and"][0]["email"]["is"], "admin@example.com", "{sub_policy}");
    assert!(sub_policy["id"].as_str().is_some_and(|id| !id.is_empty()), "{sub_policy}");
    assert_eq!(download(&replica, Some(&etag)).await.status, StatusCode::NOT_MODIFIED);
    // The cluster's wildcard certificate rides along, issued by the console's CA, which anyone
    // can download to trust it.
    let fqdn = cluster["fqdn"].as_str().unwrap();
    let shipped = records[0].data["certificates"].as_array().unwrap();
    assert_eq!(shipped.len(), 1, "{shipped:?}");
    let ca = anonymous.get(&format!("/api/v0/organizations/{org}/ca.pem")).await;
    assert_eq!(ca.status, StatusCode::OK);
    let ca_pem = String::from_utf8(ca.bytes.to_vec()).unwrap();
    verify_issued(&ca_pem, shipped[0]["cert"].as_str().unwrap(), &format!("app.{fqdn}"));
    assert!(shipped[0]["key"].as_str().unwrap().contains("PRIVATE KEY"));
    assert!(verify_fails(&ca_pem, shipped[0]["cert"].as_str().unwrap(), "app.example.com"), "only its own names");
    // Gzip when asked for.
    let url = replica.get("/cluster/v1/bundles/config/download").await.json["url"].as_str().unwrap().to_owned();
    let compressed = Http::new(&base).raw(Method::GET, &url, None, &[("accept-encoding", "gzip")]).await;
    assert_eq!(compressed.headers["content-encoding"], "gzip");
    assert_eq!(compressed.headers["etag"].to_str().unwrap(), etag);
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(compressed.bytes.as_ref()), &mut inflated).unwrap();
    assert_eq!(inflated, bundle.bytes.as_ref());
    // A tampered or unsigned URL is refused.
    let url = replica.get("/cluster/v1/bundles/config/download").await.json["url"].as_str().unwrap().to_owned();
    let tampered = url.replace("signature=", "signature=A");
    assert_eq!(Http::new(&base).get(&tampered).await.status, StatusCode::FORBIDDEN);
    let other_cluster = url.replace(cluster_id, "0000");
    assert_eq!(Http::new(&base).get(&other_cluster).await.status, StatusCode::FORBIDDEN);
    // Usage reports.
    let usage = replica.post("/cluster/v1/reportUsage", json!({"users": []})).await;
    assert_eq!(usage.status, StatusCode::NO_CONTENT);

    // Settings: camelCase of the global keys; auto-apply.
    let settings_path = format!("/api/v0/organizations/{org}/clusters/{cluster_id}/settings");
    let bad_settings = http.send(Method::PUT, &settings_path, Some(json!({"timeoutRead": "forever"}))).await;
    assert_eq!(bad_settings.status, StatusCode::BAD_REQUEST, "{bad_settings:?}");
    let settings = http
        .send(Method::PATCH, &settings_path, Some(json!([{"op": "add", "path": "/autoApplyChangesets", "value": true}, {"op": "add", "path": "/timeoutRead", "value": "45s"}])))
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{settings:?}");
    assert_eq!(next_event(&mut stream).await.unwrap(), zero::connect::Event::ConfigUpdated(2));
    let records = zero::bundle::decode(&download(&replica, None).await.bytes).unwrap();
    assert_eq!(records[0].data["settings"]["timeout_read"], "45s", "{:?}", records[0].data);

    // Replicas seen through Subscribe; the in-memory alert.
    let replicas = http.get(&format!("/api/v0/organizations/{org}/clusters/{cluster_id}/replicas")).await;
    assert_eq!(replicas.json[0]["hostname"], "replica-a", "{replicas:?}");
    let health = http.get(&format!("/api/v0/organizations/{org}/clusters/{cluster_id}/health")).await;
    assert!(
        health.json.as_array().unwrap().iter().any(|a| a["id"] == "persistent_backend" && a["status"] == "warning"),
        "{health:?}"
    );

    // Delete: 204, then 403 (not 404) as Zero answers.
    assert_eq!(http.send(Method::DELETE, &format!("{routes}/{route_id}"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(http.get(&format!("{routes}/{route_id}")).await.status, StatusCode::FORBIDDEN);
    assert_eq!(http.get(&format!("{routes}/never-was")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(next_event(&mut stream).await.unwrap(), zero::connect::Event::ConfigUpdated(3));

    // A key pair: its certificate reaches the bundle (the key never the API's answers), and
    // one expiring within ten days is alerted about.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["app.example.com".to_owned()]).unwrap();
    let soon = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_hours(72)).unwrap();
    let date = soon.to_zoned(jiff::tz::TimeZone::UTC).date();
    params.not_after =
        rcgen::date_time_ymd(i32::from(date.year()), date.month().try_into().unwrap(), date.day().try_into().unwrap());
    let certificate = params.self_signed(&key).unwrap();
    let key_pairs = format!("/api/v0/organizations/{org}/keyPairs");
    let pair = http
        .post(&key_pairs, json!({"name": "app", "namespaceId": cluster_id, "certificate": certificate.pem(), "key": key.serialize_pem()}))
        .await;
    assert_eq!(pair.status, StatusCode::CREATED, "{pair:?}");
    assert_eq!(pair.json["hasKey"], true);
    assert!(pair.json.get("key").is_none(), "{pair:?}");
    // What Zero says of its certificate, in its model's names.
    let info = &pair.json["certificateInfo"];
    assert_eq!(info["dnsNames"], json!(["app.example.com"]), "{pair:?}");
    assert_eq!(info["version"], 3, "{pair:?}");
    let not_after: jiff::Timestamp = info["notAfter"].as_str().unwrap().parse().unwrap();
    assert_eq!(not_after.to_zoned(jiff::tz::TimeZone::UTC).date(), date, "{pair:?}");
    assert!(info["notBefore"].as_str().unwrap().parse::<jiff::Timestamp>().is_ok(), "{pair:?}");
    assert_eq!(info["issuer"], info["subject"], "self-signed: {pair:?}");
    assert!(info["issuer"]["commonName"].is_string() && info["serial"].is_string(), "{pair:?}");
    assert_eq!(info["keyUsage"]["certSign"], false, "{pair:?}");
    let listed = http.get(&format!("{key_pairs}?namespaceId={cluster_id}")).await;
    assert_eq!(listed.json[0]["certificateInfo"]["dnsNames"], json!(["app.example.com"]), "{listed:?}");
    let not_a_certificate =
        http.post(&key_pairs, json!({"name": "x", "namespaceId": cluster_id, "certificate": "nope"})).await;
    assert_eq!(not_a_certificate.status, StatusCode::BAD_REQUEST);
    assert_eq!(next_event(&mut stream).await.unwrap(), zero::connect::Event::ConfigUpdated(4));
    let records = zero::bundle::decode(&download(&replica, None).await.bytes).unwrap();
    assert_eq!(records[0].data["certificates"][0]["cert"], certificate.pem());
    // The cluster reports a bundle it could not apply.
    let failed = replica
        .post(
            "/cluster/v1/bundles/config/status",
            json!({"failure": {"message": "route 0 left out", "source": "invalid_bundle"}}),
        )
        .await;
    assert_eq!(failed.status, StatusCode::NO_CONTENT, "{failed:?}");
    let health = http.get(&format!("/api/v0/organizations/{org}/clusters/{cluster_id}/health")).await;
    let alert =
        |id: &str| health.json.as_array().unwrap().iter().find(|a| a["id"] == id).cloned().unwrap_or(Value::Null);
    assert_eq!(alert("certificates_current")["status"], "warning", "{health:?}");
    assert!(alert("certificates_current")["description"].as_str().unwrap().contains("within 3 days"), "{health:?}");
    assert_eq!(alert("config_build")["status"], "error", "{health:?}");
    assert!(alert("config_build")["description"].as_str().unwrap().contains("route 0 left out"), "{health:?}");
    assert_eq!(alert("cluster_active_replicas")["status"], "success", "{health:?}");

    // Rotate: the old token is refused with 400 from then on, its id tokens with 401, its
    // streams end; the new token works.
    let rotated = http.post(&format!("/api/v0/organizations/{org}/clusters/{cluster_id}/token"), json!({})).await;
    assert_eq!(rotated.status, StatusCode::OK, "{rotated:?}");
    let new_token = rotated.json["refreshToken"].as_str().unwrap();
    assert_ne!(new_token, first_token);
    let old = exchange(&http, first_token).await;
    assert_eq!(old.status, StatusCode::BAD_REQUEST, "{old:?}");
    assert!(old.json["error"].as_str().unwrap().contains("rotated"), "{old:?}");
    assert_eq!(replica.get("/cluster/v1/bootstrap").await.status, StatusCode::UNAUTHORIZED);
    let ended = next_event(&mut stream).await.unwrap_err();
    assert_eq!(ended.code(), tonic::Code::Unauthenticated, "{ended:?}");
    // Its only stream ended: the cluster does not answer a ping.
    let deadline = std::time::Instant::now() + PROMPTLY;
    let unreachable = loop {
        let answer = http.post(&format!("/api/v0/organizations/{org}/clusters/{cluster_id}/ping"), json!({})).await;
        if answer.json["success"] == false {
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "still connected: {answer:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(unreachable.json["errorCode"], "err_cluster_ping_connection_error", "{unreachable:?}");
    assert!(unreachable.json["errorMessage"].as_str().unwrap().contains("Connect"), "{unreachable:?}");
    assert_eq!(exchange(&http, new_token).await.status, StatusCode::OK);
}

fn verifier(ca_pem: &str) -> std::sync::Arc<rustls::client::WebPkiServerVerifier> {
    let ca = proxy::tls::certificates_from_pem(ca_pem.as_bytes()).unwrap().remove(0);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .unwrap()
}

fn verify(ca_pem: &str, cert_pem: &str, host: &str) -> Result<(), rustls::Error> {
    use rustls::client::danger::ServerCertVerifier as _;
    let leaf = proxy::tls::certificates_from_pem(cert_pem.as_bytes()).unwrap().remove(0);
    let name = rustls_pki_types::ServerName::try_from(host.to_owned()).unwrap();
    verifier(ca_pem).verify_server_cert(&leaf, &[], &name, &[], rustls_pki_types::UnixTime::now()).map(|_| ())
}

/// `cert_pem` is valid for `host` to a client that trusts only `ca_pem`.
fn verify_issued(ca_pem: &str, cert_pem: &str, host: &str) {
    verify(ca_pem, cert_pem, host).unwrap_or_else(|e| panic!("{host}: {e}"));
}

fn verify_fails(ca_pem: &str, cert_pem: &str, host: &str) -> bool {
    verify(ca_pem, cert_pem, host).is_err()
}

async fn download(replica: &Http, etag: Option<&str>) -> support::Answer {
    let answer = replica.get("/cluster/v1/bundles/config/download").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert!(answer.json["expiresInSeconds"].is_string());
    let url = answer.json["url"].as_str().unwrap();
    // The URL authenticates itself: no Authorization.
    let anonymous = Http::new("http://unused");
    let headers: Vec<(&str, &str)> = etag.map(|e| vec![("if-none-match", e)]).unwrap_or_default();
    let content = anonymous.raw(Method::GET, url, None, &headers).await;
    if etag.is_none() {
        assert_eq!(content.status, StatusCode::OK, "{content:?}");
        assert!(content.headers.contains_key("etag"));
    }
    content
}

#[tokio::test]
async fn the_api_on_memory() {
    let console = Console::start(&support::settings("")).await;
    scenario(&console).await;
}

#[tokio::test]
async fn the_api_on_postgres_and_what_survives_a_restart() {
    let postgres = pg_test_cluster::TestPostgres::shared().unwrap();
    let url = postgres.database().unwrap();
    let yaml = support::settings(&format!("storage_type: postgres\nstorage_connection_string: {url}\n"));
    let console = Console::start(&yaml).await;
    scenario(&console).await;
    let http = Http::signed_in(&console.base()).await;
    let org = organization(&http).await;
    let cluster = create_cluster(&http, &org, "staging").await;
    let ca = http.get(&format!("/api/v0/organizations/{org}/ca.pem")).await.bytes;
    drop(console);
    // Restarted on the same database: the same organization, the cluster and its token.
    let console = Console::start(&yaml).await;
    let http = Http::signed_in(&console.base()).await;
    assert_eq!(organization(&http).await, org);
    assert_eq!(http.get(&format!("/api/v0/organizations/{org}/ca.pem")).await.bytes, ca, "the same CA");
    let again = http.get(&format!("/api/v0/organizations/{org}/clusters/{}", cluster["id"].as_str().unwrap())).await;
    assert_eq!(again.json["name"], "staging", "{again:?}");
    let exchanged = exchange(&http, cluster["refreshToken"].as_str().unwrap()).await;
    assert_eq!(exchanged.status, StatusCode::OK, "{exchanged:?}");
}

#[tokio::test]
async fn bad_settings_stop_the_console_with_the_place_and_unknown_keys_are_warned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.yaml");
    std::fs::write(&path, "address: 127.0.0.1:0\nstorage_type: redis\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pomerium-console"))
        .arg("--config")
        .arg(&path)
        .env_clear()
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("console.yaml:2:15") && stderr.contains("console::config::invalid"), "{stderr}");

    let mut console = Console::start(&format!("{}base_domian: x.test\n", support::settings(""))).await;
    let warning = console.wait_for_log("unknown key `base_domian`").await;
    let message = warning["message"].as_str().unwrap();
    assert!(message.contains(":7:1:") && message.contains("did you mean `base_domain`?"), "{message}");
}

#[tokio::test]
async fn two_consoles_on_one_database_reach_each_others_replicas() {
    let postgres = pg_test_cluster::TestPostgres::shared().unwrap();
    let url = postgres.database().unwrap();
    let yaml = support::settings(&format!("storage_type: postgres\nstorage_connection_string: {url}\n"));
    let first = Console::start(&yaml).await;
    let second = Console::start(&yaml).await;
    let http = Http::signed_in(&first.base()).await;
    let org = organization(&http).await;
    assert_eq!(organization(&Http::signed_in(&second.base()).await).await, org, "one organization");
    let cluster = create_cluster(&http, &org, "shared").await;
    let cluster_id = cluster["id"].as_str().unwrap();
    // The replica is connected to the second console; the changes are made on the first.
    let exchanged = exchange(&Http::new(&second.base()), cluster["refreshToken"].as_str().unwrap()).await;
    let mut stream = subscribe(&second.base(), exchanged.json["idToken"].as_str().unwrap()).await;
    let settings = http
        .send(
            Method::PUT,
            &format!("/api/v0/organizations/{org}/clusters/{cluster_id}/settings"),
            Some(json!({"autoApplyChangesets": true})),
        )
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{settings:?}");
    assert_eq!(next_event(&mut stream).await.unwrap(), zero::connect::Event::ConfigUpdated(1));
    let rotated = http.post(&format!("/api/v0/organizations/{org}/clusters/{cluster_id}/token"), json!({})).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let ended = next_event(&mut stream).await.unwrap_err();
    assert_eq!(ended.code(), tonic::Code::Unauthenticated, "{ended:?}");
}

/// The parts of `pomerium.config.Config` (pomerium's `config.proto` numbering) that
/// `pomerium zero import` sends, encoded by prost independently of the console's reader.
mod config_pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Config {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, repeated, tag = "2")]
        pub routes: Vec<Route>,
        #[prost(message, optional, tag = "3")]
        pub settings: Option<Settings>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Duration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Route {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, tag = "2")]
        pub from: String,
        #[prost(string, repeated, tag = "3")]
        pub to: Vec<String>,
        #[prost(message, optional, tag = "12")]
        pub timeout: Option<Duration>,
        #[prost(bool, tag = "13")]
        pub allow_websockets: bool,
        #[prost(map = "string, string", tag = "22")]
        pub set_request_headers: std::collections::HashMap<String, String>,
        #[prost(message, repeated, tag = "27")]
        pub policies: Vec<Policy>,
        #[prost(uint32, repeated, tag = "37")]
        pub load_balancing_weights: Vec<u32>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Policy {
        #[prost(string, repeated, tag = "3")]
        pub allowed_users: Vec<String>,
        #[prost(string, repeated, tag = "6")]
        pub rego: Vec<String>,
        #[prost(string, optional, tag = "10")]
        pub source_ppl: Option<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Certificate {
        #[prost(bytes = "vec", tag = "3")]
        pub cert_bytes: Vec<u8>,
        #[prost(bytes = "vec", tag = "4")]
        pub key_bytes: Vec<u8>,
        #[prost(string, tag = "5")]
        pub id: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Settings {
        #[prost(string, optional, tag = "3")]
        pub log_level: Option<String>,
        #[prost(string, optional, tag = "5")]
        pub shared_secret: Option<String>,
        #[prost(message, repeated, tag = "9")]
        pub certificates: Vec<Certificate>,
        #[prost(message, optional, tag = "11")]
        pub timeout_read: Option<Duration>,
        #[prost(string, optional, tag = "16")]
        pub cookie_name: Option<String>,
        #[prost(bool, optional, tag = "56")]
        pub autocert: Option<bool>,
    }
}

#[tokio::test]
async fn a_configuration_imported_with_what_could_not_be_said_as_warnings() {
    use config_pb::*;
    use prost::Message as _;
    let console = Console::start(&support::settings("")).await;
    let base = console.base();
    let http = Http::signed_in(&base).await;
    let org = organization(&http).await;
    let cluster = create_cluster(&http, &org, "imported").await;
    let cluster_id = cluster["id"].as_str().unwrap();
    let exchanged = exchange(&http, cluster["refreshToken"].as_str().unwrap()).await;
    let replica = cluster_http(&base, exchanged.json["idToken"].as_str().unwrap());

    let route = |name: &str, to: &str, policies: Vec<Policy>| Route {
        name: Some(name.to_owned()),
        from: format!("https://{name}.example.com"),
        to: vec![to.to_owned()],
        policies,
        ..Route::default()
    };
    let ppl = |text: &str| Policy { source_ppl: Some(text.to_owned()), ..Policy::default() };
    let mut app =
        route("app", "http://127.0.0.1:9", vec![ppl("allow:\n  and:\n    - email:\n        is: a@example.com\n")]);
    app.allow_websockets = true;
    app.timeout = Some(Duration { seconds: 30, nanos: 0 });
    app.set_request_headers.insert("X-From".to_owned(), "import".to_owned());
    app.load_balancing_weights = vec![1, 2];
    let users = route(
        "users",
        "http://127.0.0.1:9",
        vec![Policy { allowed_users: vec!["b@example.com".to_owned()], ..Policy::default() }],
    );
    let typo = route(
        "typo",
        "http://127.0.0.1:9",
        vec![ppl("{\"allow\": {\"and\": [{\"emial\": {\"is\": \"a@example.com\"}}]}}")],
    );
    let unroutable = route("broken", "not a url", Vec::new());
    let rego = route(
        "rego",
        "http://127.0.0.1:9",
        vec![Policy { rego: vec!["package pomerium.policy".to_owned()], ..Policy::default() }],
    );
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate =
        rcgen::CertificateParams::new(vec!["app.example.com".to_owned()]).unwrap().self_signed(&key).unwrap();
    let config = Config {
        name: "local".to_owned(),
        routes: vec![app, users, typo, unroutable, rego],
        settings: Some(Settings {
            log_level: Some("loudest".to_owned()),
            shared_secret: Some("c2VjcmV0".to_owned()),
            certificates: vec![Certificate {
                cert_bytes: certificate.pem().into_bytes(),
                key_bytes: key.serialize_pem().into_bytes(),
                id: "app-cert".to_owned(),
            }],
            timeout_read: Some(Duration { seconds: 45, nanos: 0 }),
            cookie_name: Some("_imported".to_owned()),
            autocert: Some(true),
        }),
    };
    let compressed = ruzstd::encoding::compress_to_vec(
        config.encode_to_vec().as_slice(),
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    // The body is bytes: send it with a raw client.
    let put = |body: Vec<u8>, hints: Option<&str>| {
        let base = base.clone();
        let token = replica.token.clone().unwrap();
        let hints = hints.map(str::to_owned);
        async move {
            let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
            let mut request = http::Request::builder()
                .method(Method::PUT)
                .uri(format!("{base}/cluster/v1/config/import"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/octet-stream");
            if let Some(hints) = hints {
                request = request.header("x-import-hints", hints);
            }
            let request = request.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap();
            let response = tokio::time::timeout(PROMPTLY, client.request(request)).await.unwrap().unwrap();
            let status = response.status();
            let body = tokio::time::timeout(PROMPTLY, http_body_util::BodyExt::collect(response.into_body()))
                .await
                .unwrap()
                .unwrap()
                .to_bytes();
            (status, serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null))
        }
    };
    let (status, answer) = put(compressed, Some("systemType=linux,argv0=/usr/bin/pomerium,nonsense")).await;
    assert_eq!(status, StatusCode::OK, "{answer:#}");
    let messages: Vec<&str> = answer["messages"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    let warnings: Vec<&str> = answer["warnings"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    let said = |list: &[&str], parts: &[&str]| list.iter().any(|m| parts.iter().all(|p| m.contains(p)));
    assert!(said(&messages, &["imported route `app`"]), "{answer:#}");
    assert!(said(&messages, &["imported route `users`"]), "{answer:#}");
    assert!(said(&messages, &["certificate `app-cert`", "key pair"]), "{answer:#}");
    assert!(said(&messages, &["`timeoutRead`", "`cookieName`"]), "{answer:#}");
    assert!(said(&warnings, &["route `app`", "`load_balancing_weights`"]), "{answer:#}");
    assert!(said(&warnings, &["route `typo`", "policy was refused", "not imported"]), "{answer:#}");
    assert!(said(&warnings, &["route `broken` was refused"]), "{answer:#}");
    assert!(said(&warnings, &["route `rego`", "`rego`"]), "{answer:#}");
    assert!(said(&warnings, &["`shared_secret`", "provided by the control plane"]), "{answer:#}");
    assert!(said(&warnings, &["`autocert`", "not imported"]), "{answer:#}");
    assert!(said(&warnings, &["`logLevel` was refused"]), "{answer:#}");
    assert!(said(&warnings, &["X-Import-Hints", "`nonsense`"]), "{answer:#}");

    // What was imported is there, checked and usable as any other entity.
    let routes = http.get(&format!("/api/v0/organizations/{org}/routes?namespaceId={cluster_id}")).await;
    let names: Vec<&str> = routes.json.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"app") && names.contains(&"users"), "{routes:?}");
    assert!(!names.contains(&"typo") && !names.contains(&"broken"), "{routes:?}");
    let app = routes.json.as_array().unwrap().iter().find(|r| r["name"] == "app").unwrap();
    assert_eq!(app["allowWebsockets"], true, "{app}");
    assert_eq!(app["timeout"], "30s", "{app}");
    assert_eq!(app["setRequestHeaders"]["X-From"], "import", "{app}");
    let policy =
        http.get(&format!("/api/v0/organizations/{org}/policies/{}", app["policyIds"][0].as_str().unwrap())).await;
    assert_eq!(policy.json["ppl"][0]["allow"]["and"][0]["email"]["is"], "a@example.com", "{policy:?}");
    let policies = http.get(&format!("/api/v0/organizations/{org}/policies?namespaceId={cluster_id}")).await;
    assert!(
        policies.json.as_array().unwrap().iter().all(|p| p["name"] != "typo"),
        "the refused policy is not left behind: {policies:?}"
    );
    let settings = http.get(&format!("/api/v0/organizations/{org}/clusters/{cluster_id}/settings")).await;
    assert_eq!(settings.json["timeoutRead"], "45s", "{settings:?}");
    assert_eq!(settings.json["cookieName"], "_imported", "{settings:?}");
    assert!(settings.json.get("logLevel").is_none(), "{settings:?}");

    // Bad bodies: 400 with the reason.
    let (status, answer) = put(b"not zstd at all".to_vec(), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("zstd"), "{answer}");
    let garbage =
        ruzstd::encoding::compress_to_vec(&[0xff, 0xff, 0xff][..], ruzstd::encoding::CompressionLevel::Fastest);
    let (status, answer) = put(garbage, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("pomerium.config.Config"), "{answer}");
    // Without a cluster's id token: refused.
    let anonymous = Http::new(&base).raw(Method::PUT, "/cluster/v1/config/import", Some(""), &[]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_config_service_over_connect_json() {
    let console = Console::start(&support::settings("")).await;
    let base = console.base();
    let http = Http::signed_in(&base).await;
    let org = organization(&http).await;
    let cluster = create_cluster(&http, &org, "connect").await;
    let ns = cluster["id"].as_str().unwrap().to_owned();
    let rpc = |method: &str, body: Value| {
        let path = format!("/pomerium.config.ConfigService/{method}");
        let http = &http;
        async move { http.post(&path, body).await }
    };

    // Credentials as the API's; the JSON codec only.
    let anonymous = Http::new(&base).post("/pomerium.config.ConfigService/GetServerInfo", json!({})).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{anonymous:?}");
    assert_eq!(anonymous.json["code"], "unauthenticated");
    let info = rpc("GetServerInfo", json!({})).await;
    assert_eq!(info.status, StatusCode::OK, "{info:?}");
    assert_eq!(info.json["serverType"], "SERVER_TYPE_ZERO");
    let proto = http
        .raw(Method::POST, "/pomerium.config.ConfigService/GetServerInfo", Some(""), &[("content-type", "text/xml")])
        .await;
    assert_eq!(proto.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{proto:?}");

    // Policies: PPL in `sourcePpl` (YAML or JSON), checked as everywhere.
    let typo = rpc(
        "CreatePolicy",
        json!({"policy": {"namespaceId": ns, "name": "typo", "sourcePpl": "allow:\n  and:\n    - emial:\n        is: a@example.com\n"}}),
    )
    .await;
    assert_eq!(typo.status, StatusCode::BAD_REQUEST, "{typo:?}");
    assert_eq!(typo.json["code"], "invalid_argument");
    assert!(typo.json["message"].as_str().unwrap().contains("[ppl::"), "{typo:?}");
    let policy = rpc(
        "CreatePolicy",
        json!({"policy": {"namespaceId": ns, "name": "admins", "sourcePpl": "allow:\n  and:\n    - email:\n        is: a@example.com\n"}}),
    )
    .await;
    assert_eq!(policy.status, StatusCode::OK, "{policy:?}");
    let policy_id = policy.json["policy"]["id"].as_str().unwrap().to_owned();
    let ppl: Value = serde_json::from_str(policy.json["policy"]["sourcePpl"].as_str().unwrap()).unwrap();
    assert_eq!(ppl["allow"]["and"][0]["email"]["is"], "a@example.com", "{policy:?}");
    // The same entity through the public API.
    let same = http.get(&format!("/api/v0/organizations/{org}/policies/{policy_id}")).await;
    assert_eq!(same.json["name"], "admins");

    // Routes: create, get, update with a field mask, list.
    let route = rpc(
        "CreateRoute",
        json!({"route": {"namespaceId": ns, "name": "app", "from": "https://app.example.com", "to": ["http://127.0.0.1:9"], "policyIds": [policy_id]}}),
    )
    .await;
    assert_eq!(route.status, StatusCode::OK, "{route:?}");
    let route_id = route.json["route"]["id"].as_str().unwrap().to_owned();
    assert_eq!(route.json["route"]["assignedPolicies"][0]["id"], policy_id.as_str(), "{route:?}");
    let bad_route = rpc(
        "CreateRoute",
        json!({"route": {"namespaceId": ns, "name": "bad", "from": "https://b.example.com", "to": ["not a url"]}}),
    )
    .await;
    assert_eq!(bad_route.json["code"], "invalid_argument", "{bad_route:?}");
    let updated = rpc(
        "UpdateRoute",
        json!({"route": {"id": route_id, "allowWebsockets": true, "name": "ignored"}, "updateMask": "allow_websockets"}),
    )
    .await;
    assert_eq!(updated.status, StatusCode::OK, "{updated:?}");
    assert_eq!(updated.json["route"]["allowWebsockets"], true);
    assert_eq!(updated.json["route"]["name"], "app", "only the mask's paths change: {updated:?}");
    let got = rpc("GetRoute", json!({"id": route_id})).await;
    assert_eq!(got.json["route"]["allowWebsockets"], true, "{got:?}");
    let listed = rpc("ListRoutes", json!({"filter": {"namespace_id": ns}})).await;
    assert_eq!(listed.json["totalCount"], "1", "{listed:?}");
    assert_eq!(listed.json["routes"][0]["id"], route_id.as_str());

    // Key pairs: PEM as protojson bytes (base64); the key never answered.
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate =
        rcgen::CertificateParams::new(vec!["app.example.com".to_owned()]).unwrap().self_signed(&key).unwrap();
    let b64 = |text: String| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text);
    let pair = rpc(
        "CreateKeyPair",
        json!({"keyPair": {"namespaceId": ns, "name": "app", "certificate": b64(certificate.pem()), "key": b64(key.serialize_pem())}}),
    )
    .await;
    assert_eq!(pair.status, StatusCode::OK, "{pair:?}");
    assert_eq!(pair.json["keyPair"]["certificateInfo"][0]["dnsNames"], json!(["app.example.com"]), "{pair:?}");
    assert!(pair.json["keyPair"].get("key").is_none(), "{pair:?}");

    // Settings of the cluster.
    let settings = rpc("GetSettings", json!({"clusterId": ns})).await;
    assert_eq!(settings.status, StatusCode::OK, "{settings:?}");
    let changed = rpc("UpdateSettings", json!({"settings": {"clusterId": ns, "timeoutRead": "45s"}})).await;
    assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
    assert_eq!(changed.json["settings"]["timeoutRead"], "45s");
    let refused = rpc("UpdateSettings", json!({"settings": {"clusterId": ns, "timeoutRead": "forever"}})).await;
    assert_eq!(refused.json["code"], "invalid_argument", "{refused:?}");
    let unknown = rpc("GetSettings", json!({"clusterId": "nope"})).await;
    assert_eq!(unknown.json["code"], "not_found", "{unknown:?}");

    // Delete: a policy in use is refused unless removed from its routes.
    let in_use = rpc("DeletePolicy", json!({"id": policy_id})).await;
    assert_eq!(in_use.json["code"], "invalid_argument", "{in_use:?}");
    let deleted = rpc("DeletePolicy", json!({"id": policy_id, "removeFromAnyAssignedRoutes": true})).await;
    assert_eq!(deleted.status, StatusCode::OK, "{deleted:?}");
    assert_eq!(rpc("GetRoute", json!({"id": route_id})).await.json["route"]["policyIds"], json!([]));
    let gone = rpc("GetPolicy", json!({"id": policy_id})).await;
    assert_eq!((gone.status, gone.json["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{gone:?}");
    let nothing = rpc("CreateServiceAccount", json!({})).await;
    assert_eq!(nothing.json["code"], "unimplemented", "{nothing:?}");
}

/// ConfigService messages (`config.proto`'s numbers), encoded by prost.
mod config_rpc {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerInfo {
        #[prost(int32, tag = "1")]
        pub server_type: i32,
        #[prost(string, tag = "2")]
        pub version: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Policy {
        #[prost(string, optional, tag = "1")]
        pub id: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "10")]
        pub source_ppl: Option<String>,
        #[prost(string, optional, tag = "11")]
        pub namespace_id: Option<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PolicyMessage {
        #[prost(message, optional, tag = "1")]
        pub policy: Option<Policy>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Route {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, tag = "2")]
        pub from: String,
        #[prost(string, repeated, tag = "3")]
        pub to: Vec<String>,
        #[prost(message, optional, tag = "12")]
        pub timeout: Option<super::config_pb::Duration>,
        #[prost(message, repeated, tag = "27")]
        pub policies: Vec<Policy>,
        #[prost(string, optional, tag = "28")]
        pub id: Option<String>,
        #[prost(string, optional, tag = "80")]
        pub namespace_id: Option<String>,
        #[prost(string, repeated, tag = "86")]
        pub policy_ids: Vec<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RouteMessage {
        #[prost(message, optional, tag = "1")]
        pub route: Option<Route>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListRoutes {
        #[prost(message, repeated, tag = "1")]
        pub routes: Vec<Route>,
        #[prost(uint64, tag = "2")]
        pub total_count: u64,
    }
}

#[tokio::test]
async fn the_config_service_over_connect_proto() {
    use config_rpc::*;
    use prost::Message as _;
    let console = Console::start(&support::settings("")).await;
    let http = Http::signed_in(&console.base()).await;
    let org = organization(&http).await;
    let cluster = create_cluster(&http, &org, "proto").await;
    let ns = cluster["id"].as_str().unwrap().to_owned();
    let rpc = |method: &str, body: Vec<u8>| {
        let path = format!("/pomerium.config.ConfigService/{method}");
        let http = &http;
        async move { http.raw_bytes(Method::POST, &path, Some(&body), &[("content-type", "application/proto")]).await }
    };
    let info = rpc("GetServerInfo", Vec::new()).await;
    assert_eq!(info.status, StatusCode::OK, "{info:?}");
    assert_eq!(info.headers["content-type"], "application/proto");
    assert_eq!(ServerInfo::decode(info.bytes.as_ref()).unwrap().server_type, 3, "SERVER_TYPE_ZERO");

    let policy = Policy {
        name: Some("admins".to_owned()),
        namespace_id: Some(ns.clone()),
        source_ppl: Some("allow:\n  and:\n    - email:\n        is: a@example.com\n".to_owned()),
        ..Policy::default()
    };
    let created = rpc("CreatePolicy", PolicyMessage { policy: Some(policy) }.encode_to_vec()).await;
    assert_eq!(created.status, StatusCode::OK, "{created:?}");
    let created = PolicyMessage::decode(created.bytes.as_ref()).unwrap().policy.unwrap();
    let policy_id = created.id.unwrap();
    assert!(created.source_ppl.unwrap().contains("a@example.com"));

    let route = Route {
        name: Some("app".to_owned()),
        from: "https://app.example.com".to_owned(),
        to: vec!["http://127.0.0.1:9".to_owned()],
        timeout: Some(config_pb::Duration { seconds: 30, nanos: 0 }),
        namespace_id: Some(ns.clone()),
        policy_ids: vec![policy_id.clone()],
        ..Route::default()
    };
    let made = rpc("CreateRoute", RouteMessage { route: Some(route.clone()) }.encode_to_vec()).await;
    assert_eq!(made.status, StatusCode::OK, "{made:?}");
    let made = RouteMessage::decode(made.bytes.as_ref()).unwrap().route.unwrap();
    assert_eq!(made.policy_ids, vec![policy_id.clone()]);
    assert_eq!(made.timeout, Some(config_pb::Duration { seconds: 30, nanos: 0 }));
    let stored = http.get(&format!("/api/v0/organizations/{org}/routes/{}", made.id.clone().unwrap())).await;
    assert_eq!(stored.json["timeout"], "30s", "{stored:?}");

    // A field this console does not take is refused, not dropped.
    let mut inline = route.clone();
    inline.policies = vec![Policy { name: Some("inline".to_owned()), ..Policy::default() }];
    let refused = rpc("CreateRoute", RouteMessage { route: Some(inline) }.encode_to_vec()).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
    assert!(refused.json["message"].as_str().unwrap().contains("field 27"), "{refused:?}");
    // Diagnostics come back as a Connect error (JSON), as with the JSON codec.
    let mut bad = route.clone();
    bad.to = vec!["not a url".to_owned()];
    let refused = rpc("CreateRoute", RouteMessage { route: Some(bad) }.encode_to_vec()).await;
    assert_eq!(refused.json["code"], "invalid_argument", "{refused:?}");

    let listed = rpc("ListRoutes", Vec::new()).await;
    let listed = ListRoutes::decode(listed.bytes.as_ref()).unwrap();
    assert_eq!(listed.total_count, 1);
    assert_eq!(listed.routes[0].name.as_deref(), Some("app"));
}
