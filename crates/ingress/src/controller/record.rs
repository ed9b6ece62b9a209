//! The one config record the controller writes, computed from everything it watches: a pure
//! function ([`plan`]) of the objects and of the record as it stands.
//!
//! Record: type `pomerium.config.Config`, id `ingress-controller`, data
//! `{"name": "ingress-controller", "routes": [...], "certificates": [{"cert", "key", "hosts",
//! "secret"}]}`: the routes of every managed Ingress, merged and sorted ([`crate::sort_routes`]),
//! and the certificates of their `spec.tls`, deduplicated, in a fixed order, and pruned to those
//! that serve a route's host (upstream's `removeUnusedCerts`).
//!
//! An Ingress that fails to translate keeps the routes (and the `spec.tls` certificates) it has in
//! the current record, as upstream's `Upsert` leaves the record alone when an Ingress fails; the
//! routes of an Ingress are those whose id (`{"n": name, "ns": namespace, ...}`) names it. Unlike
//! upstream, whose start-up `Set` drops a failing Ingress's routes, we keep them after a restart
//! too: the record itself is the memory, so the outcome does not depend on when the controller
//! last started. An Ingress that is deleted, or stops being ours, loses its routes.

use super::Snapshot;
use crate::{Certificate, Dependencies, ObjectKey, Options, TranslateError, classes};
use databroker::record::Record;
use miette::Diagnostic as _;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash as _, Hasher as _};

/// The id of the record Ingress routes are written to.
pub const CONFIG_ID: &str = "ingress-controller";

/// What became of one managed Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressOutcome {
    /// Translated: its routes (and certificates) are in the planned record.
    Applied {
        routes: usize,
        /// A hash of its routes and certificates: an event is posted when it changes.
        fingerprint: u64,
    },
    /// Not translated: why (every error, as text), and how many of its previous routes are kept.
    Failed { message: String, kept: usize },
}

/// The record to write, and the outcome of every Ingress.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The record's data.
    pub data: Map<String, Value>,
    /// Every managed Ingress, by namespace and name.
    pub ingresses: BTreeMap<ObjectKey, IngressOutcome>,
    /// The Ingresses that are not ours, and why.
    pub skipped: Vec<(ObjectKey, String)>,
}

impl Plan {
    /// The record to `Put`.
    pub fn record(&self) -> Record {
        Record::new(databroker::record::CONFIG_TYPE, CONFIG_ID, self.data.clone())
    }

    /// The routes of the planned record.
    pub fn routes(&self) -> &[Value] {
        self.data.get("routes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
    }

    /// Whether the planned record differs from `current` (the record's data, or none). No
    /// record and an empty plan are the same: there is nothing to write.
    pub fn differs_from(&self, current: Option<&Map<String, Value>>) -> bool {
        match current {
            Some(current) => *current != self.data,
            None => !self.routes().is_empty() || self.data.get("certificates").is_some_and(|c| c != &json!([])),
        }
    }
}

/// A certificate with what pruning reads of it.
#[derive(Debug, Clone)]
struct CertEntry {
    secret: String,
    hosts: BTreeSet<String>,
    cert: String,
    key: String,
    /// The DNS names (subject alternative names) of the leaf.
    names: Vec<String>,
    not_after: i64,
}

impl CertEntry {
    fn to_json(&self) -> Value {
        json!({"cert": self.cert, "key": self.key, "hosts": self.hosts, "secret": self.secret})
    }

    /// An entry of the current record (already checked when it was written).
    fn from_json(value: &Value) -> Option<CertEntry> {
        let cert = value.get("cert")?.as_str()?.to_owned();
        let (names, not_after) = certificate_names(cert.as_bytes()).ok()?;
        Some(CertEntry {
            secret: value.get("secret")?.as_str()?.to_owned(),
            hosts: value.get("hosts")?.as_array()?.iter().filter_map(|h| h.as_str().map(str::to_owned)).collect(),
            key: value.get("key")?.as_str()?.to_owned(),
            cert,
            names,
            not_after,
        })
    }
}

/// The DNS names and expiry (Unix seconds) of a PEM certificate's leaf.
fn certificate_names(pem: &[u8]) -> Result<(Vec<String>, i64), String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not PEM: {e}"))?;
    if block.label != "CERTIFICATE" {
        return Err(format!("expected a `CERTIFICATE` PEM block, found `{}`", block.label));
    }
    let cert = block.parse_x509().map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(format!("reading its subject alternative names: {e}")),
    };
    Ok((names, cert.validity().not_after.timestamp()))
}

fn certificate_entry(certificate: &Certificate) -> Result<CertEntry, String> {
    let text = |bytes: &[u8], key: &str| {
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("`{key}` is not PEM text (it is not UTF-8)"))
    };
    let cert = text(&certificate.cert, "tls.crt")?;
    let key = text(&certificate.key, "tls.key")?;
    let (names, not_after) = certificate_names(cert.as_bytes()).map_err(|e| format!("`tls.crt`: {e}"))?;
    Ok(CertEntry {
        secret: certificate.secret.to_string(),
        hosts: certificate.hosts.iter().cloned().collect(),
        cert,
        key,
        names,
        not_after,
    })
}

/// The namespace and name a route's id names (`{"n": ..., "ns": ...}`), when it is one of ours.
fn route_owner(route: &Value) -> Option<ObjectKey> {
    let id: Value = serde_json::from_str(route.get("id")?.as_str()?).ok()?;
    Some(ObjectKey::new(id.get("ns")?.as_str()?, id.get("n")?.as_str()?))
}

/// The host of a route's `from` (`https://host`, `tcp+https://host:port`), lowercase.
fn route_host(route: &Value) -> Option<String> {
    let from = route.get("from")?.as_str()?;
    let rest = from.split_once("://").map_or(from, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()));
    let host = host.map_or(authority, |(host, _)| host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// `(first label, rest)`, upstream's `domainKey`.
fn domain_key(name: &str) -> (String, String) {
    match name.split_once('.') {
        Some((host, domain)) => (host.to_owned(), domain.to_owned()),
        None => (name.to_owned(), String::new()),
    }
}

/// Deduplicates certificates (one per Secret and content, hosts merged), keeps for each DNS name
/// the one that expires last, and returns those that serve a route host (exactly, or by a
/// wildcard `*.rest`), ordered by Secret and content.
fn prune_certificates(entries: Vec<CertEntry>, routes: &[Value]) -> Vec<CertEntry> {
    let mut unique: BTreeMap<(String, String, String), CertEntry> = BTreeMap::new();
    for entry in entries {
        match unique.get_mut(&(entry.secret.clone(), entry.cert.clone(), entry.key.clone())) {
            Some(existing) => existing.hosts.extend(entry.hosts),
            None => {
                unique.insert((entry.secret.clone(), entry.cert.clone(), entry.key.clone()), entry);
            }
        }
    }
    let entries: Vec<CertEntry> = unique.into_values().collect();
    let mut by_name: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        for name in &entry.names {
            let slot = by_name.entry(domain_key(name)).or_insert(index);
            if entries.get(*slot).is_some_and(|current| current.not_after < entry.not_after) {
                *slot = index;
            }
        }
    }
    let mut used = BTreeSet::new();
    for host in routes.iter().filter_map(route_host) {
        let (first, domain) = domain_key(&host);
        let exact = by_name.get(&(first, domain.clone()));
        if let Some(index) = exact.or_else(|| by_name.get(&("*".to_owned(), domain))) {
            used.insert(*index);
        }
    }
    entries.into_iter().enumerate().filter(|(index, _)| used.contains(index)).map(|(_, entry)| entry).collect()
}

/// Every error on one line, `; `-separated, as an Event's message shows them: each message (which
/// names the Ingress and the annotation or rule), the text its span points at inside an
/// annotation's value, and the help, when there is one.
pub fn describe_errors(errors: &[TranslateError]) -> String {
    let mut lines = Vec::new();
    for error in errors {
        let mut line = error.to_string();
        if let Some((value, span)) = match error {
            TranslateError::Invalid(invalid) => invalid.value_span(),
            _ => None,
        } && let Some(at) = value.get(span.offset()..span.offset() + span.len()).map(str::trim)
            && !at.is_empty()
            && !line.contains(at)
        {
            line.push_str(&format!(" (at `{at}`)"));
        }
        if let Some(help) = error.help() {
            line.push_str(&format!(" (help: {help})"));
        }
        lines.push(line);
    }
    lines.join("; ")
}

/// The record the objects call for, given the record as it stands (`current`, its data).
pub fn plan(snapshot: &Snapshot, options: &Options, current: Option<&Map<String, Value>>) -> Plan {
    let mut deps = Dependencies::new(&options.annotation_prefix);
    snapshot.services.iter().cloned().for_each(|s| deps.add_service(s));
    snapshot.endpoints.iter().cloned().for_each(|e| deps.add_endpoints(e));
    snapshot.secrets.iter().cloned().for_each(|s| deps.add_secret(s));
    let previous_routes: Vec<&Value> =
        current.and_then(|c| c.get("routes")).and_then(Value::as_array).map(|r| r.iter().collect()).unwrap_or_default();
    let previous_certs: Vec<CertEntry> = current
        .and_then(|c| c.get("certificates"))
        .and_then(Value::as_array)
        .map(|certs| certs.iter().filter_map(CertEntry::from_json).collect())
        .unwrap_or_default();

    let mut ingresses: Vec<&k8s_openapi::api::networking::v1::Ingress> = snapshot.ingresses.iter().collect();
    ingresses.sort_by_key(|ingress| ObjectKey::of(&ingress.metadata));
    let mut routes = Vec::new();
    let mut certificates = Vec::new();
    let mut outcomes = BTreeMap::new();
    let mut skipped = Vec::new();
    for ingress in ingresses {
        let key = ObjectKey::of(&ingress.metadata);
        if let Err(reason) = classes::managed(ingress, &snapshot.classes, &options.controller_name) {
            skipped.push((key, reason));
            continue;
        }
        let translated = crate::translate(ingress, &deps).map_err(|errors| describe_errors(&errors)).and_then(|t| {
            let certs: Result<Vec<CertEntry>, String> = t
                .certificates
                .iter()
                .map(|c| {
                    certificate_entry(c).map_err(|e| format!("ingress `{key}`: `spec.tls`: secret `{}`: {e}", c.secret))
                })
                .collect();
            Ok((t.routes, certs?))
        });
        match translated {
            Ok((own_routes, own_certs)) => {
                let mut hasher = std::hash::DefaultHasher::new();
                Value::Array(own_routes.clone()).to_string().hash(&mut hasher);
                for cert in &own_certs {
                    (&cert.secret, &cert.cert, &cert.key, &cert.hosts).hash(&mut hasher);
                }
                let outcome = IngressOutcome::Applied { routes: own_routes.len(), fingerprint: hasher.finish() };
                outcomes.insert(key, outcome);
                routes.extend(own_routes);
                certificates.extend(own_certs);
            }
            Err(message) => {
                let kept: Vec<Value> = previous_routes
                    .iter()
                    .filter(|r| route_owner(r).as_ref() == Some(&key))
                    .map(|r| (*r).clone())
                    .collect();
                let tls_secrets: BTreeSet<String> = ingress
                    .spec
                    .iter()
                    .flat_map(|spec| spec.tls.iter().flatten())
                    .filter_map(|tls| tls.secret_name.as_ref())
                    .map(|name| ObjectKey::new(&key.namespace, name).to_string())
                    .collect();
                if !kept.is_empty() {
                    certificates.extend(previous_certs.iter().filter(|c| tls_secrets.contains(&c.secret)).cloned());
                }
                outcomes.insert(key, IngressOutcome::Failed { message, kept: kept.len() });
                routes.extend(kept);
            }
        }
    }
    crate::sort_routes(&mut routes);
    let certificates: Vec<Value> = prune_certificates(certificates, &routes).iter().map(CertEntry::to_json).collect();
    let mut data = Map::new();
    data.insert("name".to_owned(), Value::String(CONFIG_ID.to_owned()));
    data.insert("routes".to_owned(), Value::Array(routes));
    data.insert("certificates".to_owned(), Value::Array(certificates));
    Plan { data, ingresses: outcomes, skipped }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str], not_after_year: i32) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn entry(secret: &str, names: &[&str], year: i32) -> CertEntry {
        let (cert, key) = cert(names, year);
        let certificate = Certificate {
            secret: ObjectKey::new("web", secret),
            hosts: names.iter().map(|n| (*n).to_owned()).collect(),
            cert: cert.into_bytes(),
            key: key.into_bytes(),
        };
        certificate_entry(&certificate).unwrap()
    }

    #[test]
    fn route_hosts_drop_scheme_port_and_path() {
        let host = |from: &str| route_host(&json!({"from": from}));
        assert_eq!(host("https://App.example.com").as_deref(), Some("app.example.com"));
        assert_eq!(host("tcp+https://db.example.com:5432").as_deref(), Some("db.example.com"));
        assert_eq!(host("https://*.example.com").as_deref(), Some("*.example.com"));
        assert_eq!(host("https://"), None);
    }

    #[test]
    fn certificates_are_pruned_deduplicated_and_the_newest_wins() {
        let old = entry("old", &["a.example.com"], 2030);
        let new = entry("new", &["a.example.com"], 2040);
        let wildcard = entry("wild", &["*.example.com"], 2030);
        let unused = entry("unused", &["other.example.org"], 2030);
        let routes = vec![json!({"from": "https://a.example.com"}), json!({"from": "https://b.example.com"})];
        let kept = prune_certificates(vec![old.clone(), new.clone(), wildcard.clone(), unused, new.clone()], &routes);
        let secrets: Vec<&str> = kept.iter().map(|c| c.secret.as_str()).collect();
        assert_eq!(secrets, ["web/new", "web/wild"]);
    }

    fn ingress(name: &str, host: &str, annotations: Value) -> k8s_openapi::api::networking::v1::Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "web", "annotations": annotations},
            "spec": {"ingressClassName": "pomerium", "rules": [{"host": host, "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "app", "port": {"number": 80}}}}
            ]}}]}
        }))
        .unwrap()
    }

    fn snapshot(ingresses: Vec<k8s_openapi::api::networking::v1::Ingress>) -> Snapshot {
        Snapshot {
            ingresses,
            classes: vec![
                serde_json::from_value(
                    json!({"metadata": {"name": "pomerium"}, "spec": {"controller": "pomerium.io/ingress-controller"}}),
                )
                .unwrap(),
            ],
            services: vec![
                serde_json::from_value(
                    json!({"metadata": {"name": "app", "namespace": "web"}, "spec": {"ports": [{"port": 80}]}}),
                )
                .unwrap(),
            ],
            ..Snapshot::default()
        }
    }

    fn hosts(plan: &Plan) -> Vec<&str> {
        plan.routes().iter().map(|r| r["from"].as_str().unwrap()).collect()
    }

    #[test]
    fn a_failing_ingress_keeps_its_routes_from_the_record_and_a_deleted_one_loses_them() {
        let options = Options::default();
        let first = plan(
            &snapshot(vec![ingress("a", "a.example.com", json!({})), ingress("b", "b.example.com", json!({}))]),
            &options,
            None,
        );
        assert_eq!(hosts(&first), ["https://a.example.com", "https://b.example.com"]);
        assert!(first.differs_from(None));
        assert_eq!(first.data["name"], "ingress-controller");

        // `a` breaks (and would move to another host), `b` is deleted, `c` is new.
        let broken = ingress("a", "moved.example.com", json!({"ingress.pomerium.io/nope": "1"}));
        let second = plan(
            &snapshot(vec![broken.clone(), ingress("c", "c.example.com", json!({}))]),
            &options,
            Some(&first.data),
        );
        assert_eq!(hosts(&second), ["https://a.example.com", "https://c.example.com"]);
        let IngressOutcome::Failed { message, kept } = &second.ingresses[&ObjectKey::new("web", "a")] else {
            panic!("{:?}", second.ingresses)
        };
        assert_eq!(*kept, 1);
        assert!(message.contains("unknown annotation `ingress.pomerium.io/nope`"), "{message}");
        assert!(matches!(second.ingresses[&ObjectKey::new("web", "c")], IngressOutcome::Applied { routes: 1, .. }));

        // Without a record to keep them from (a first start), a failing ingress has no routes.
        let fresh = plan(&snapshot(vec![broken]), &options, None);
        assert!(fresh.routes().is_empty() && !fresh.differs_from(None));
        // The same objects and record: nothing to write.
        assert!(!second.differs_from(Some(&second.data)));
    }

    #[test]
    fn ingresses_that_are_not_ours_are_skipped_with_the_reason() {
        let mut theirs = ingress("theirs", "theirs.example.com", json!({}));
        theirs.spec.as_mut().unwrap().ingress_class_name = Some("other".to_owned());
        let plan = plan(&snapshot(vec![theirs]), &Options::default(), None);
        assert!(plan.ingresses.is_empty() && plan.routes().is_empty());
        assert_eq!(plan.skipped.len(), 1);
        assert!(plan.skipped[0].1.contains("`other`"), "{:?}", plan.skipped);
    }

    #[test]
    fn route_owners_come_from_the_route_id() {
        let route = json!({"id": r#"{"n":"app","ns":"web","h":"a.example.com","p":"/"}"#});
        assert_eq!(route_owner(&route), Some(ObjectKey::new("web", "app")));
        assert_eq!(route_owner(&json!({"id": "not json"})), None);
    }
}
