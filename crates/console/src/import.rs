//! `PUT /cluster/v1/config/import` (what `pomerium zero import` sends): a zstd-compressed
//! protobuf `pomerium.config.Config` (routes and settings of a local `config.yaml`), imported into
//! the cluster's namespace. Each route, policy, certificate and setting goes through the same checks
//! as the API's creates; what cannot be imported (a field this console does not take, a policy in
//! Rego, an entity our front end refuses) is reported in `warnings`, never dropped silently. The
//! answer is `{messages[], warnings[]}` as Zero's.
//!
//! The protobuf is read at the wire level (field numbers and names of `pomerium.config.Config`,
//! `Route`, `Policy` and `Settings`, as pomerium's `pkg/grpc/config/config.proto` numbers them), so
//! that every field present is either imported or named in a warning.

use crate::api::{Reply, storage_failed};
use crate::state::State;
use crate::store::Kind;
use http::StatusCode;
use serde_json::{Map, Value, json};
use std::io::Read as _;

/// At most this many bytes once decompressed.
pub const MAX_DECOMPRESSED: u64 = 32 * 1024 * 1024;
/// The largest zstd window accepted.
const MAX_WINDOW: u64 = 8 * 1024 * 1024;

pub(crate) use zero::config_pb::wire::{Wire, duration, fields, map_entry, text};
use zero::config_pb::{Field, field_name};

/// How a field is imported.
#[derive(Clone, Copy, Debug)]
pub(crate) enum As {
    Text,
    Flag,
    List,
    Map,
    Duration,
}

/// A message being turned into an entity: the fields taken, and the warnings for the rest.
struct Reader<'a> {
    what: String,
    schema: &'static [Field],
    out: Map<String, Value>,
    warnings: &'a mut Vec<String>,
}

impl Reader<'_> {
    fn name(&self, number: u64) -> String {
        field_name(self.schema, number).map_or_else(|| format!("field {number}"), |name| format!("`{name}`"))
    }

    fn skipped(&mut self, number: u64, why: &str) {
        let name = self.name(number);
        if !self.warnings.iter().any(|w| w.starts_with(&format!("{}: {name} ", self.what))) {
            self.warnings.push(format!("{}: {name} {why}", self.what));
        }
    }

    fn take(&mut self, number: u64, value: &Wire<'_>, key: &str, how: As) {
        let ok = match how {
            As::Text => text(value).map(|t| {
                self.out.insert(key.to_owned(), json!(t));
            }),
            As::Flag => match value {
                Wire::Varint(v) => {
                    self.out.insert(key.to_owned(), json!(*v != 0));
                    Some(())
                }
                _ => None,
            },
            As::List => text(value).map(|t| {
                let list = self.out.entry(key.to_owned()).or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.push(json!(t));
                }
            }),
            As::Map => map_entry(value).map(|(k, v)| {
                let map = self.out.entry(key.to_owned()).or_insert_with(|| json!({}));
                if let Some(map) = map.as_object_mut() {
                    map.insert(k, json!(v));
                }
            }),
            As::Duration => duration(value).map(|d| {
                self.out.insert(key.to_owned(), json!(d));
            }),
        };
        if ok.is_none() {
            self.skipped(number, "could not be read and was not imported");
        }
    }
}

/// Route fields imported, by number: the API's camelCase name and how.
pub(crate) const ROUTE_FIELDS: &[(u64, &str, As)] = &[
    (1, "name", As::Text),
    (2, "from", As::Text),
    (3, "to", As::List),
    (7, "prefix", As::Text),
    (8, "path", As::Text),
    (9, "regex", As::Text),
    (10, "corsAllowPreflight", As::Flag),
    (11, "allowPublicUnauthenticatedAccess", As::Flag),
    (12, "timeout", As::Duration),
    (13, "allowWebsockets", As::Flag),
    (14, "tlsSkipVerify", As::Flag),
    (16, "tlsCustomCa", As::Text),
    (22, "setRequestHeaders", As::Map),
    (23, "removeRequestHeaders", As::List),
    (24, "preserveHostHeader", As::Flag),
    (25, "passIdentityHeaders", As::Flag),
    (29, "prefixRewrite", As::Text),
    (30, "regexRewritePattern", As::Text),
    (31, "regexRewriteSubstitution", As::Text),
    (33, "allowAnyAuthenticatedUser", As::Flag),
    (41, "setResponseHeaders", As::Map),
    (42, "enableGoogleCloudServerlessAuthentication", As::Flag),
    (43, "idleTimeout", As::Duration),
    (44, "allowSpdy", As::Flag),
    (50, "hostRewrite", As::Text),
    (51, "hostRewriteHeader", As::Text),
    (52, "hostPathRegexRewritePattern", As::Text),
    (53, "hostPathRegexRewriteSubstitution", As::Text),
    (57, "tlsUpstreamServerName", As::Text),
    (58, "tlsDownstreamServerName", As::Text),
    (59, "showErrorDetails", As::Flag),
    (60, "tlsUpstreamAllowRenegotiation", As::Flag),
    (67, "description", As::Text),
];

/// Route fields that say where the route came from, not what it does: not imported, no warning.
const ROUTE_PROVENANCE: &[u64] = &[28, 80, 81, 87, 88, 90, 91, 92];

/// Settings imported, by number.
pub(crate) const SETTINGS_FIELDS: &[(u64, &str, As)] = &[
    (3, "logLevel", As::Text),
    (4, "proxyLogLevel", As::Text),
    (7, "address", As::Text),
    (11, "timeoutRead", As::Duration),
    (12, "timeoutWrite", As::Duration),
    (13, "timeoutIdle", As::Duration),
    (14, "authenticateServiceUrl", As::Text),
    (16, "cookieName", As::Text),
    (18, "cookieDomain", As::Text),
    (20, "cookieHttpOnly", As::Flag),
    (21, "cookieExpire", As::Duration),
    (22, "idpClientId", As::Text),
    (23, "idpClientSecret", As::Text),
    (24, "idpProvider", As::Text),
    (25, "idpProviderUrl", As::Text),
    (26, "idpScopes", As::List),
    (30, "idpRequestParams", As::Map),
    (39, "defaultUpstreamTimeout", As::Duration),
    (61, "skipXffAppend", As::Flag),
    (63, "jwtClaimsHeaders", As::Map),
    (69, "setResponseHeaders", As::Map),
    (93, "signoutRedirectUrl", As::Text),
    (113, "cookieSameSite", As::Text),
    (117, "passIdentityHeaders", As::Flag),
];

/// Settings the control plane provides itself (derived per cluster): not imported.
const SETTINGS_PROVIDED: &[u64] = &[5, 17, 36];
/// Settings that say where they came from: not imported, no warning.
const SETTINGS_PROVENANCE: &[u64] = &[71, 158, 159, 160, 161, 169, 170, 176];

/// What the import did.
#[derive(Debug, Default)]
struct Outcome {
    messages: Vec<String>,
    warnings: Vec<String>,
}

/// A PPL document (JSON or YAML text) as JSON.
pub fn ppl_json(source: &str) -> Option<Value> {
    let trimmed = source.trim_start();
    let (tree, errors) = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        ppl::syntax::json::parse(source)
    } else {
        ppl::syntax::yaml::parse(source)
    };
    if !errors.is_empty() {
        return None;
    }
    tree.as_ref().map(crate::check::tree_to_json)
}

/// A route's rules: its policies (`source_ppl`, `allowed_users`, `allowed_domains`) and
/// `ppl_policies`, as a list of PPL rules.
fn route_rules(route: &[(u64, Wire<'_>)], what: &str, warnings: &mut Vec<String>) -> Vec<Value> {
    let mut rules = Vec::new();
    let mut users = Vec::new();
    let mut domains = Vec::new();
    for (number, value) in route {
        match (number, value) {
            (4, value) => users.extend(text(value)),
            (6, value) => domains.extend(text(value)),
            (63, Wire::Bytes(bytes)) => {
                let raw = fields(bytes)
                    .and_then(|f| f.into_iter().find(|(n, _)| *n == 1))
                    .and_then(|(_, v)| text(&v))
                    .unwrap_or_default();
                match ppl_json(&raw) {
                    Some(Value::Array(list)) => rules.extend(list),
                    Some(rule) => rules.push(rule),
                    None => warnings.push(format!("{what}: a `ppl_policies` entry is not PPL and was not imported")),
                }
            }
            (27, Wire::Bytes(bytes)) => {
                let Some(policy) = fields(bytes) else {
                    warnings.push(format!("{what}: a policy could not be read and was not imported"));
                    continue;
                };
                for (number, value) in &policy {
                    match number {
                        3 => users.extend(text(value)),
                        5 => domains.extend(text(value)),
                        10 => match text(value).as_deref().and_then(ppl_json) {
                            Some(Value::Array(list)) => rules.extend(list),
                            Some(rule) => rules.push(rule),
                            None => warnings
                                .push(format!("{what}: a policy's `source_ppl` is not PPL and was not imported")),
                        },
                        1 | 2 | 8 | 9 | 11 | 12 | 13 | 14 | 15 | 16 | 17 | 18 | 19 => {}
                        other => {
                            let name = field_name(zero::config_pb::POLICY, *other)
                                .map_or_else(|| format!("field {other}"), |n| format!("`{n}`"));
                            warnings.push(format!(
                                "{what}: a policy's {name} was not imported (this console takes PPL; rewrite it as PPL)"
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if !users.is_empty() || !domains.is_empty() {
        let mut any: Vec<Value> = users.iter().map(|u| json!({"email": {"is": u}})).collect();
        any.extend(domains.iter().map(|d| json!({"domain": {"is": d}})));
        rules.push(json!({"allow": {"or": any}}));
    }
    rules
}

/// The route's name: as sent, or from its `from` host.
fn route_name(route: &Map<String, Value>, index: usize) -> String {
    if let Some(name) = route.get("name").and_then(Value::as_str).filter(|n| !n.trim().is_empty()) {
        return name.to_owned();
    }
    route
        .get("from")
        .and_then(Value::as_str)
        .and_then(|f| url::Url::parse(f).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| format!("route {}", index + 1))
}

fn refusal(reply: &Reply) -> String {
    let body = reply.body.as_ref();
    let error = body.and_then(|b| b.get("error")).and_then(Value::as_str).unwrap_or("refused");
    let first = body
        .and_then(|b| b.get("diagnostics"))
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .and_then(|d| d.get("message"))
        .and_then(Value::as_str);
    match first {
        Some(first) if !error.contains(first) => format!("{error} ({first})"),
        _ => error.to_owned(),
    }
}

async fn import_route(
    state: &State,
    cluster: &str,
    index: usize,
    bytes: &[u8],
    outcome: &mut Outcome,
) -> Result<(), Reply> {
    let Some(route) = fields(bytes) else {
        outcome.warnings.push(format!("route {}: not a protobuf `Route`; not imported", index + 1));
        return Ok(());
    };
    let mut reader = Reader {
        what: format!("route {}", index + 1),
        schema: zero::config_pb::ROUTE,
        out: Map::new(),
        warnings: &mut outcome.warnings,
    };
    let mut pending = Vec::new();
    for (number, value) in &route {
        if let Some((_, key, how)) = ROUTE_FIELDS.iter().find(|(n, _, _)| n == number) {
            reader.take(*number, value, key, *how);
        } else {
            pending.push(*number);
        }
    }
    let mut body = reader.out;
    let name = route_name(&body, index);
    let what = format!("route `{name}`");
    body.insert("name".to_owned(), json!(name));
    body.insert("namespaceId".to_owned(), json!(cluster));
    let mut reader =
        Reader { what: what.clone(), schema: zero::config_pb::ROUTE, out: Map::new(), warnings: &mut outcome.warnings };
    for number in pending {
        match number {
            4 | 6 | 27 | 63 => {}
            n if ROUTE_PROVENANCE.contains(&n) => {}
            86 => reader.skipped(86, "names policies of another control plane and was not imported"),
            n => reader.skipped(n, "is not taken by this console and was not imported"),
        }
    }
    let rules = route_rules(&route, &what, &mut outcome.warnings);
    let mut policy_id = None;
    if !rules.is_empty() {
        let policy = json!({"name": name, "namespaceId": cluster, "ppl": rules});
        let source = serde_json::to_string_pretty(&policy).unwrap_or_default();
        let reply = crate::api::entity(state, &http::Method::POST, Kind::Policy, &[], source.as_bytes()).await;
        if reply.status != StatusCode::CREATED {
            outcome.warnings.push(format!(
                "{what}: its policy was refused: {}; the route was not imported (it would not be protected as it was)",
                refusal(&reply)
            ));
            return Ok(());
        }
        policy_id = reply.body.as_ref().and_then(|b| b.get("id")).cloned();
        outcome.messages.push(format!("imported the policy of route `{name}`"));
    }
    if let Some(id) = &policy_id {
        body.insert("policyIds".to_owned(), json!([id]));
    }
    let source = serde_json::to_string_pretty(&body).unwrap_or_default();
    let reply = crate::api::entity(state, &http::Method::POST, Kind::Route, &[], source.as_bytes()).await;
    if reply.status == StatusCode::CREATED {
        outcome.messages.push(format!("imported {what}"));
    } else {
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            return Err(reply);
        }
        outcome.warnings.push(format!("{what} was refused and not imported: {}", refusal(&reply)));
        if let Some(id) = policy_id.as_ref().and_then(Value::as_str) {
            state.store.delete(Kind::Policy, id).await.map_err(storage_failed)?;
        }
    }
    Ok(())
}

async fn import_settings(state: &State, cluster: &str, bytes: &[u8], outcome: &mut Outcome) -> Result<(), Reply> {
    let Some(settings) = fields(bytes) else {
        outcome.warnings.push("settings: not a protobuf `Settings`; not imported".to_owned());
        return Ok(());
    };
    let mut reader = Reader {
        what: "settings".to_owned(),
        schema: zero::config_pb::SETTINGS,
        out: Map::new(),
        warnings: &mut outcome.warnings,
    };
    let mut certificates = Vec::new();
    for (number, value) in &settings {
        if let Some((_, key, how)) = SETTINGS_FIELDS.iter().find(|(n, _, _)| n == number) {
            reader.take(*number, value, key, *how);
        } else if *number == 9 {
            certificates.push(value.clone());
        } else if SETTINGS_PROVIDED.contains(number) {
            reader.skipped(*number, "is provided by the control plane for each cluster and was not imported");
        } else if !SETTINGS_PROVENANCE.contains(number) {
            reader.skipped(*number, "is not taken by this console and was not imported");
        }
    }
    let wanted = reader.out;
    for (index, certificate) in certificates.iter().enumerate() {
        let parts = match certificate {
            Wire::Bytes(bytes) => fields(bytes).unwrap_or_default(),
            _ => Vec::new(),
        };
        let part = |n: u64| parts.iter().find(|(number, _)| *number == n).and_then(|(_, v)| text(v));
        let name = part(5).filter(|n| !n.is_empty()).unwrap_or_else(|| format!("imported certificate {}", index + 1));
        let (Some(cert), Some(key)) = (part(3), part(4)) else {
            outcome
                .warnings
                .push(format!("settings: certificate `{name}` came as file names, not PEM; add it as a key pair"));
            continue;
        };
        let pair = json!({"name": name, "namespaceId": cluster, "certificate": cert, "key": key});
        let reply =
            crate::api::entity(state, &http::Method::POST, Kind::KeyPair, &[], pair.to_string().as_bytes()).await;
        if reply.status == StatusCode::CREATED {
            outcome.messages.push(format!("imported certificate `{name}` as a key pair"));
        } else {
            outcome.warnings.push(format!("settings: certificate `{name}` was refused: {}", refusal(&reply)));
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    // One setting at a time, each checked with the others taken so far: a setting our front end
    // refuses is reported, the rest imported.
    let mut taken = state.store.live(Kind::Settings, cluster).await.map_err(storage_failed)?.unwrap_or_default();
    let mut names = Vec::new();
    for (key, value) in wanted {
        let mut candidate = taken.clone();
        candidate.insert(key.clone(), value);
        let (_, result) =
            crate::api::namespace_config(state, cluster, Some(&(Kind::Settings, candidate.clone()))).await?;
        match result {
            Ok(_) => {
                taken = candidate;
                names.push(format!("`{key}`"));
            }
            Err(errors) => {
                let first = errors.first().map(|d| d.message.clone()).unwrap_or_default();
                outcome.warnings.push(format!("settings: `{key}` was refused and not imported: {first}"));
            }
        }
    }
    if !names.is_empty() {
        crate::clusters::store_settings(state, cluster, taken).await?;
        outcome.messages.push(format!("imported the settings {}", names.join(", ")));
    }
    Ok(())
}

/// Reads `X-Import-Hints` (`key=value` pairs, comma-separated): logged; a malformed pair is a
/// warning.
fn hints(header: Option<&str>, outcome: &mut Outcome) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for pair in header.unwrap_or_default().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                pairs.push((key.trim().to_owned(), value.trim().to_owned()))
            }
            _ => outcome.warnings.push(format!("X-Import-Hints: `{pair}` is not `key=value`; ignored")),
        }
    }
    pairs
}

/// `PUT /cluster/v1/config/import` for `cluster`.
pub async fn import(state: &State, cluster: &str, hint_header: Option<&str>, body: &[u8]) -> Reply {
    let mut outcome = Outcome::default();
    let hints = hints(hint_header, &mut outcome);
    if !hints.is_empty() {
        tracing::info!(%cluster, hints = ?hints, "configuration import");
    }
    let decoder = match ruzstd::decoding::StreamingDecoder::new_with_max_window_size(body, MAX_WINDOW) {
        Ok(decoder) => decoder,
        Err(error) => {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                format!("the body is not a zstd-compressed protobuf `pomerium.config.Config`: {error}"),
            );
        }
    };
    let mut bytes = Vec::new();
    if let Err(error) = decoder.take(MAX_DECOMPRESSED + 1).read_to_end(&mut bytes) {
        return Reply::error(StatusCode::BAD_REQUEST, format!("the body's zstd stream is broken: {error}"));
    }
    if bytes.len() as u64 > MAX_DECOMPRESSED {
        return Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the configuration is larger than {MAX_DECOMPRESSED} bytes once decompressed"),
        );
    }
    let Some(config) = fields(&bytes) else {
        return Reply::error(StatusCode::BAD_REQUEST, "the body is not a protobuf `pomerium.config.Config`");
    };
    let mut index = 0;
    for (number, value) in &config {
        let result = match (number, value) {
            (1, _) => Ok(()),
            (2, Wire::Bytes(route)) => {
                index += 1;
                import_route(state, cluster, index - 1, route, &mut outcome).await
            }
            (3, Wire::Bytes(settings)) => import_settings(state, cluster, settings, &mut outcome).await,
            (n, _) => {
                outcome.warnings.push(format!("config: field {n} is not taken by this console and was not imported"));
                Ok(())
            }
        };
        if let Err(reply) = result {
            return reply;
        }
    }
    if outcome.messages.is_empty() {
        outcome.messages.push("nothing was imported".to_owned());
    }
    tracing::info!(%cluster, imported = outcome.messages.len(), warnings = outcome.warnings.len(), "configuration imported");
    Reply::ok(json!({"messages": outcome.messages, "warnings": outcome.warnings}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_fields_are_read_and_bad_bytes_refused() {
        // name = "a" (1), a route (2) with from = "x".
        let bytes = [0x0a, 0x01, b'a', 0x12, 0x03, 0x12, 0x01, b'x'];
        let read = fields(&bytes).unwrap_or_default();
        assert_eq!(read.len(), 2);
        assert_eq!(read.first(), Some(&(1, Wire::Bytes(b"a"))));
        assert!(fields(&[0x0a, 0x05, b'a']).is_none(), "a length past the end");
        assert!(fields(&[0x0f]).is_none(), "an unknown wire type");
        assert_eq!(duration(&Wire::Bytes(&[0x08, 0x1e])).as_deref(), Some("30s"));
    }
}
