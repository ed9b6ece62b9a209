//! Configuration from the databroker (system.md §6, Pomerium's databroker `ConfigSource`): the
//! `pomerium.config.Config` records, one per source (`ingress-controller` for Ingress routes),
//! turned into routes and certificates that the server merges after its file's routes.
//!
//! A record's `data` is `{"name", "routes": [route, ...], "certificates": [{"cert", "key",
//! "hosts", "secret"}]}`: each route an object with `config.yaml` route keys, each certificate
//! PEM text. Routes are read by the same loader as the configuration file, so they are validated
//! exactly as file routes are. A route that does not load is left out and reported (with the
//! record and the route's place), and the others still apply: one bad Ingress must not take down
//! the rest. Routes are de-duplicated by id (the first wins, file routes before all) and sorted in
//! Pomerium's order.

use config::Route;
use databroker::record::Record;
use rustls::sign::CertifiedKey;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

/// What the databroker's configuration records add to the file's configuration.
#[derive(Default, Clone)]
pub struct DynamicConfig {
    pub routes: Vec<Route>,
    pub certificates: Vec<Arc<CertifiedKey>>,
    /// Routes and certificates left out, one line each.
    pub problems: Vec<String>,
    /// Global options (`config.yaml` keys) of the first record, by id, that has `settings`: a
    /// managed cluster's control plane sends them (applied by `crate::managed`).
    pub settings: Option<serde_json::Map<String, Value>>,
}

impl std::fmt::Debug for DynamicConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamicConfig")
            .field("routes", &self.routes.len())
            .field("certificates", &self.certificates.len())
            .field("problems", &self.problems)
            .field("settings", &self.settings.as_ref().map(serde_json::Map::len))
            .finish()
    }
}

/// Reads every configuration record, in id order, into routes (sorted, de-duplicated) and
/// certificates.
pub fn from_records(records: &[Record]) -> DynamicConfig {
    let mut records: Vec<&Record> = records.iter().filter(|r| !r.is_deleted()).collect();
    records.sort_by(|a, b| a.id.cmp(&b.id));
    let mut dynamic = DynamicConfig::default();
    for record in records {
        if let (None, Some(Value::Object(settings))) = (&dynamic.settings, record.data.get("settings")) {
            dynamic.settings = Some(settings.clone());
        }
        read_routes(record, &mut dynamic);
        read_certificates(record, &mut dynamic);
    }
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    dynamic.routes.retain(|route| {
        let unique = seen.insert(route.id.clone());
        if !unique {
            problems
                .push(format!("databroker configuration: route id `{}` appears twice; the first is kept", route.id));
        }
        unique
    });
    dynamic.problems.extend(problems);
    config::route::sort_routes(&mut dynamic.routes);
    dynamic
}

/// A managed cluster's bundle, checked before it is applied (`crate::managed::reconcile`): every
/// route loads, every certificate reads, no id repeats, and the routes with the settings load
/// as one `config.yaml` would with no error and no unknown option (a key this build does not know
/// would otherwise be accepted and ignored). `Err` lists every problem (the bundle is then
/// refused and the last good one keeps serving); `Ok` has the warnings a file would get for
/// options accepted without effect.
pub fn check_bundle(records: &[Record]) -> Result<Vec<String>, Vec<String>> {
    let configs: Vec<Record> =
        records.iter().filter(|r| r.record_type == databroker::record::CONFIG_TYPE).cloned().collect();
    if configs.is_empty() {
        return Ok(Vec::new());
    }
    let dynamic = from_records(&configs);
    let mut problems = dynamic.problems;
    let mut warnings = Vec::new();
    for record in &configs {
        // The settings a replica keeps its own of are not read from the control plane.
        let mut document: serde_json::Map<String, Value> = match record.data.get("settings") {
            Some(Value::Object(settings)) => settings
                .iter()
                .filter(|(key, _)| !crate::managed::LOCAL_ONLY.contains(&key.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            _ => serde_json::Map::new(),
        };
        document.insert("routes".to_owned(), record.data.get("routes").cloned().unwrap_or(Value::Array(Vec::new())));
        let text = serde_json::to_string_pretty(&Value::Object(document)).unwrap_or_default();
        let loaded = config::load(&text, config::Format::Json, &config::env::Empty);
        let name = format!("databroker config record `{}`", record.id);
        let (errors, lines) = crate::diagnostics::lines(&loaded, &name, &text);
        problems.extend(errors);
        for (warning, line) in loaded.warnings.iter().zip(lines) {
            if warning.diagnostic.code_str() == "config::option::unknown" {
                problems.push(line);
            } else {
                warnings.push(line);
            }
        }
    }
    problems.dedup();
    if problems.is_empty() { Ok(warnings) } else { Err(problems) }
}

/// The file's routes, then the databroker's whose ids the file does not already use.
pub fn merge(mut file: config::Config, dynamic: &DynamicConfig) -> (config::Config, Vec<String>) {
    let ids: BTreeSet<String> = file.routes.iter().map(|r| r.id.clone()).collect();
    let mut problems = Vec::new();
    for route in &dynamic.routes {
        if ids.contains(&route.id) {
            problems.push(format!(
                "databroker configuration: route id `{}` is already used by the configuration file; the file's route is kept",
                route.id
            ));
        } else {
            file.routes.push(route.clone());
        }
    }
    (file, problems)
}

fn read_routes(record: &Record, dynamic: &mut DynamicConfig) {
    let routes = match record.data.get("routes") {
        None | Some(Value::Null) => return,
        Some(Value::Array(routes)) => routes,
        Some(_) => {
            dynamic.problems.push(format!("databroker config record `{}`: `routes` is not a list", record.id));
            return;
        }
    };
    // All at once first (the common case: every route is good); one by one only to find out
    // which ones are not.
    match load_routes(record, routes) {
        Ok(loaded) => dynamic.routes.extend(loaded),
        Err(_) => {
            for (index, route) in routes.iter().enumerate() {
                match load_routes(record, std::slice::from_ref(route)) {
                    Ok(loaded) => dynamic.routes.extend(loaded),
                    Err(errors) => {
                        let name = route.get("id").or_else(|| route.get("from")).and_then(Value::as_str).unwrap_or("?");
                        for error in errors {
                            dynamic.problems.push(format!(
                                "databroker config record `{}`, route {index} (`{name}`) left out: {error}",
                                record.id
                            ));
                        }
                    }
                }
            }
        }
    }
}

/// Routes through the configuration file's loader, as a JSON document with only `routes`.
fn load_routes(record: &Record, routes: &[Value]) -> Result<Vec<Route>, Vec<String>> {
    let document = serde_json::json!({ "routes": routes });
    let text = serde_json::to_string_pretty(&document).unwrap_or_default();
    let loaded = config::load(&text, config::Format::Json, &config::env::Empty);
    let name = format!("databroker config record `{}`", record.id);
    let (errors, _) = crate::diagnostics::lines(&loaded, &name, &text);
    match loaded.config {
        Some(config) if errors.is_empty() => Ok(config.routes),
        _ => Err(errors),
    }
}

fn read_certificates(record: &Record, dynamic: &mut DynamicConfig) {
    let Some(Value::Array(certificates)) = record.data.get("certificates") else { return };
    for (index, certificate) in certificates.iter().enumerate() {
        let field = |key: &str| certificate.get(key).and_then(Value::as_str).unwrap_or("");
        let name = certificate.get("secret").and_then(Value::as_str).map_or_else(|| index.to_string(), str::to_owned);
        match proxy::tls::certified_key_from_pem(field("cert").as_bytes(), field("key").as_bytes()) {
            Ok(key) => dynamic.certificates.push(key),
            Err(error) => dynamic
                .problems
                .push(format!("databroker config record `{}`, certificate `{name}` left out: {error}", record.id)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::unreachable, reason = "tests")]
    use super::*;
    use serde_json::json;

    fn record(id: &str, data: Value) -> Record {
        let Value::Object(map) = data else { unreachable!("an object") };
        Record::new(databroker::record::CONFIG_TYPE, id, map)
    }

    #[test]
    fn the_settings_of_the_first_record_that_has_them_are_kept() {
        let a = record("a", json!({"routes": []}));
        let b = record("b", json!({"settings": {"timeout_read": "5s"}}));
        let c = record("c", json!({"settings": {"timeout_read": "9s"}}));
        let dynamic = from_records(&[c, a.clone(), b]);
        assert_eq!(dynamic.settings.unwrap()["timeout_read"], "5s");
        assert!(from_records(&[a]).settings.is_none());
    }

    #[test]
    fn routes_of_every_record_are_read_sorted_and_de_duplicated() {
        let a = record(
            "a",
            json!({"routes": [
                {"from": "https://b.example.com", "to": "http://b:80", "id": "b", "allow_public_unauthenticated_access": true},
                {"from": "https://a.example.com", "to": "http://a:80", "id": "a", "allow_public_unauthenticated_access": true},
            ]}),
        );
        let b = record(
            "b",
            json!({"routes": [{"from": "https://c.example.com", "to": "http://c:80", "id": "a", "allow_public_unauthenticated_access": true}]}),
        );
        let dynamic = from_records(&[b, a]);
        let ids: Vec<(&str, &str)> = dynamic.routes.iter().map(|r| (r.id.as_str(), r.from.host.as_str())).collect();
        assert_eq!(ids, [("a", "a.example.com"), ("b", "b.example.com")]);
        assert_eq!(dynamic.problems.len(), 1);
        assert!(dynamic.problems[0].contains("route id `a` appears twice"), "{:?}", dynamic.problems);
    }

    #[test]
    fn a_bad_route_is_left_out_with_its_place_and_the_rest_apply() {
        let r = record(
            "ingress-controller",
            json!({"routes": [
                {"from": "https://good.example.com", "to": "http://good:80", "id": "good", "allow_public_unauthenticated_access": true},
                {"from": "https://bad.example.com", "to": "not a url at all", "id": "bad"},
            ]}),
        );
        let dynamic = from_records(&[r]);
        assert_eq!(dynamic.routes.len(), 1);
        assert_eq!(dynamic.routes[0].id, "good");
        assert!(!dynamic.problems.is_empty());
        assert!(
            dynamic.problems.iter().all(|p| p.contains("record `ingress-controller`, route 1 (`bad`) left out")),
            "{:?}",
            dynamic.problems
        );
    }

    #[test]
    fn file_routes_win_over_databroker_routes_with_the_same_id() {
        let loaded = config::load(
            "routes: [{from: 'https://f.example.com', to: 'http://f:80', id: shared, allow_public_unauthenticated_access: true}]",
            config::Format::Yaml,
            &config::env::Empty,
        );
        let file = loaded.config.unwrap();
        let r = record(
            "x",
            json!({"routes": [
                {"from": "https://d.example.com", "to": "http://d:80", "id": "shared", "allow_public_unauthenticated_access": true},
                {"from": "https://e.example.com", "to": "http://e:80", "id": "other", "allow_public_unauthenticated_access": true},
            ]}),
        );
        let (merged, problems) = merge(file, &from_records(&[r]));
        let hosts: Vec<&str> = merged.routes.iter().map(|r| r.from.host.as_str()).collect();
        assert_eq!(hosts, ["f.example.com", "e.example.com"]);
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn certificates_are_read_and_bad_ones_reported() {
        let (chain, key) = proxy::tls::self_signed(&["a.example.com".to_owned()]).unwrap();
        let cert_pem = pem("CERTIFICATE", chain[0].as_ref());
        let key_pem = pem("PRIVATE KEY", key.secret_der());
        let r = record(
            "ingress-controller",
            json!({"certificates": [
                {"cert": cert_pem, "key": key_pem, "hosts": ["a.example.com"], "secret": "default/a"},
                {"cert": "garbage", "key": "garbage", "secret": "default/b"},
            ]}),
        );
        let dynamic = from_records(&[r]);
        assert_eq!(dynamic.certificates.len(), 1);
        assert_eq!(dynamic.problems.len(), 1);
        assert!(dynamic.problems[0].contains("certificate `default/b` left out"), "{:?}", dynamic.problems);
    }

    fn pem(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> =
            body.as_bytes().chunks(64).map(|chunk| std::str::from_utf8(chunk).unwrap_or_default()).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }
}
