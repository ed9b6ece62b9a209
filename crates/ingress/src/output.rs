//! The order routes are applied in, and the `routes:` document the `translate` command prints.
//!
//! Order (`routeList.Less`, and the ingress documentation): `from` ascending, then `path`,
//! `regex` and `prefix` descending (so that `/prefix/a/` comes before `/prefix/` and exact paths
//! before prefixes), then `id` ascending. Envoy, and our route table, take the first match.

use crate::Certificate;
use crate::doc::{Node, NodeKind, RouteDoc, Source};
use crate::emit;
use std::cmp::Ordering;

/// Sorts routes (JSON objects with `config.yaml` route keys) into the order they apply in.
pub fn sort_routes(routes: &mut [serde_json::Value]) {
    routes.sort_by(|a, b| {
        let field =
            |route: &serde_json::Value, key: &str| route.get(key).and_then(|v| v.as_str()).unwrap_or("").to_owned();
        compare(&|key| field(a, key), &|key| field(b, key))
    });
}

pub(crate) fn sort_docs(routes: &mut [RouteDoc]) {
    let field = |route: &RouteDoc, key: &str| match route.get(key).map(|node| &node.kind) {
        Some(NodeKind::String(text)) => text.clone(),
        _ => String::new(),
    };
    routes.sort_by(|a, b| compare(&|key| field(a, key), &|key| field(b, key)));
}

fn compare(a: &dyn Fn(&str) -> String, b: &dyn Fn(&str) -> String) -> Ordering {
    a("from")
        .cmp(&b("from"))
        .then_with(|| b("path").cmp(&a("path")))
        .then_with(|| b("regex").cmp(&a("regex")))
        .then_with(|| b("prefix").cmp(&a("prefix")))
        .then_with(|| a("id").cmp(&b("id")))
}

/// The routes as a `config.yaml` document: `routes:` in block style, route keys in a fixed order
/// (`from`, `to`, the matcher, `id`, `name`, then the rest alphabetically). The certificates of
/// `spec.tls` cannot be written inline in `config.yaml` (its `certificates` are files), so they
/// are listed in a comment.
pub fn routes_yaml(routes: &[serde_json::Value], certificates: &[Certificate]) -> String {
    let mut out = String::new();
    for certificate in certificates {
        let hosts = certificate.hosts.join(", ");
        out.push_str(&format!("# certificate from secret {} (hosts: {hosts})\n", certificate.secret));
    }
    let documents: Vec<Vec<(String, Node)>> = routes
        .iter()
        .map(|route| match route {
            serde_json::Value::Object(map) => {
                let mut fields: Vec<(String, Node)> =
                    map.iter().map(|(key, value)| (key.clone(), Node::from_json(value, &Source::Rule))).collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                fields
            }
            _ => Vec::new(),
        })
        .collect();
    out.push_str(&emit::routes(&documents).text);
    out
}
