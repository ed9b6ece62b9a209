//! Connect-RPC `pomerium.config.ConfigService` on the same origin (zero.md §2): unary calls
//! `POST /pomerium.config.ConfigService/<Method>` with `Content-Type: application/json` (the
//! Connect protocol's JSON codec; messages in protojson, field names as `config.proto`'s in
//! lowerCamelCase). Routes, policies, key pairs and settings are the public API's entities, read
//! and written through the same handler (so with the same checks and diagnostics); errors are
//! Connect errors `{code, message}`. The binary codec (`application/proto`) is read and written
//! by [`crate::config_proto`] into and from the same protojson.

use crate::api::Reply;
use crate::state::State;
use crate::store::Kind;
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

/// The path prefix of the service.
pub const PREFIX: &str = "/pomerium.config.ConfigService/";

/// A Connect answer: HTTP status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    /// The answer in the binary codec (`application/proto`), when the request used it.
    pub proto: Option<Vec<u8>>,
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Answer {
    Answer { status, body: json!({"code": code, "message": message.into()}), proto: None }
}

fn invalid(message: impl Into<String>) -> Answer {
    error(StatusCode::BAD_REQUEST, "invalid_argument", message)
}

/// An API reply that is not a success, as a Connect error (the diagnostics in the message).
fn from_reply(reply: &Reply) -> Answer {
    let body = reply.body.as_ref();
    let mut message = body.and_then(|b| b.get("error")).and_then(Value::as_str).unwrap_or("refused").to_owned();
    for d in body.and_then(|b| b.get("diagnostics")).and_then(Value::as_array).into_iter().flatten() {
        let text = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let at = |k: &str| d.get(k).and_then(Value::as_u64).unwrap_or(0);
        message.push_str(&format!("; [{}] {}:{}: {}", text("code"), at("line"), at("column"), text("message")));
    }
    let (status, code) = match reply.status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => (StatusCode::BAD_REQUEST, "invalid_argument"),
        StatusCode::UNAUTHORIZED => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => (StatusCode::NOT_FOUND, "not_found"),
        StatusCode::CONFLICT => (StatusCode::CONFLICT, "already_exists"),
        StatusCode::SERVICE_UNAVAILABLE => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    error(status, code, message)
}

type Result<T> = std::result::Result<T, Answer>;

/// Runs the API's handler for `kind`; the entity it answers, or the Connect error.
async fn call(state: &State, method: &Method, kind: Kind, rest: &[&str], body: &Value) -> Result<Map<String, Value>> {
    let text = if body.is_null() { Vec::new() } else { serde_json::to_vec_pretty(body).unwrap_or_default() };
    let reply = crate::api::entity(state, method, kind, rest, &text).await;
    if !reply.status.is_success() {
        return Err(from_reply(&reply));
    }
    Ok(reply.body.and_then(|b| b.as_object().cloned()).unwrap_or_default())
}

/// A `google.protobuf.FieldMask`'s paths (protojson: one comma-separated string), in the API's
/// camelCase.
fn mask(request: &Map<String, Value>) -> Option<Vec<String>> {
    let paths = request.get("updateMask")?.as_str()?;
    Some(
        paths
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let mut out = String::new();
                let mut upper = false;
                for c in p.chars() {
                    if c == '_' {
                        upper = true;
                    } else if upper {
                        out.push(c.to_ascii_uppercase());
                        upper = false;
                    } else {
                        out.push(c);
                    }
                }
                out
            })
            .collect(),
    )
}

fn object<'a>(request: &'a Map<String, Value>, field: &str) -> Result<&'a Map<String, Value>> {
    request.get(field).and_then(Value::as_object).ok_or_else(|| invalid(format!("`{field}` is required")))
}

fn id_of(request: &Map<String, Value>) -> Result<String> {
    request
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| invalid("`id` is required"))
}

// --- The entities, between protojson and the API's JSON ---------------------------------------

fn policy_in(policy: &Map<String, Value>) -> Result<Value> {
    let mut out = Map::new();
    for key in ["namespaceId", "name", "description", "enforced", "explanation", "remediation"] {
        if let Some(value) = policy.get(key) {
            out.insert(key.to_owned(), value.clone());
        }
    }
    if policy.get("rego").and_then(Value::as_array).is_some_and(|r| !r.is_empty()) {
        return Err(invalid("`rego` is not supported: write the policy as PPL in `sourcePpl`"));
    }
    let mut rules = Vec::new();
    if let Some(source) = policy.get("sourcePpl").and_then(Value::as_str) {
        match crate::import::ppl_json(source) {
            Some(Value::Array(list)) => rules.extend(list),
            Some(rule) => rules.push(rule),
            None => return Err(invalid("`sourcePpl` is neither JSON nor YAML")),
        }
    }
    let list = |key: &str| -> Vec<String> {
        policy
            .get(key)
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let mut any: Vec<Value> = list("allowedUsers").iter().map(|u| json!({"email": {"is": u}})).collect();
    any.extend(list("allowedDomains").iter().map(|d| json!({"domain": {"is": d}})));
    if !any.is_empty() {
        rules.push(json!({"allow": {"or": any}}));
    }
    out.insert("ppl".to_owned(), if rules.len() == 1 { rules.remove(0) } else { Value::Array(rules) });
    Ok(Value::Object(out))
}

fn policy_out(policy: Map<String, Value>) -> Value {
    let mut out = Map::new();
    for key in ["id", "namespaceId", "name", "description", "enforced", "explanation", "remediation", "createdAt"] {
        if let Some(value) = policy.get(key) {
            out.insert(key.to_owned(), value.clone());
        }
    }
    if let Some(at) = policy.get("updatedAt") {
        out.insert("modifiedAt".to_owned(), at.clone());
    }
    if let Some(ppl) = policy.get("ppl") {
        out.insert("sourcePpl".to_owned(), json!(ppl.to_string()));
    }
    for (from, to) in [("routes", "assignedRoutes"), ("enforcedRoutes", "enforcedRoutes")] {
        if let Some(list) = policy.get(from) {
            out.insert(to.to_owned(), list.clone());
        }
    }
    Value::Object(out)
}

/// Route fields of `config.proto` that name entities inline; this service takes `policyIds`.
const ROUTE_INLINE: &[&str] = &["policies", "pplPolicies"];
/// Route fields that are computed (read only).
const ROUTE_COMPUTED: &[&str] =
    &["createdAt", "modifiedAt", "enforcedPolicies", "assignedPolicies", "namespaceName", "id", "originatorId"];

fn route_in(route: &Map<String, Value>) -> Result<Value> {
    if let Some(inline) =
        ROUTE_INLINE.iter().find(|k| route.get(**k).and_then(Value::as_array).is_some_and(|l| !l.is_empty()))
    {
        return Err(invalid(format!(
            "`{inline}` is not supported: create the policies, then list them in `policyIds`"
        )));
    }
    let mut out = route.clone();
    for key in ROUTE_INLINE.iter().chain(ROUTE_COMPUTED) {
        out.remove(*key);
    }
    Ok(Value::Object(out))
}

fn route_out(mut route: Map<String, Value>) -> Value {
    if let Some(at) = route.remove("updatedAt") {
        route.insert("modifiedAt".to_owned(), at);
    }
    route.remove("enforcedPolicyIds");
    if let Some(assigned) = route.remove("policies") {
        route.insert("assignedPolicies".to_owned(), assigned);
    }
    Value::Object(route)
}

fn pem_of(value: Option<&Value>, field: &str) -> Result<Option<String>> {
    let Some(text) = value.and_then(Value::as_str) else { return Ok(None) };
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text)
        .map_err(|_| invalid(format!("`{field}` must be base64 (protojson bytes) of PEM text")))?;
    String::from_utf8(bytes).map(Some).map_err(|_| invalid(format!("`{field}` must be PEM text")))
}

fn key_pair_in(pair: &Map<String, Value>) -> Result<Value> {
    let mut out = Map::new();
    for key in ["namespaceId", "name"] {
        if let Some(value) = pair.get(key) {
            out.insert(key.to_owned(), value.clone());
        }
    }
    if let Some(certificate) = pem_of(pair.get("certificate"), "certificate")? {
        out.insert("certificate".to_owned(), json!(certificate));
    }
    if let Some(key) = pem_of(pair.get("key"), "key")? {
        out.insert("key".to_owned(), json!(key));
    }
    Ok(Value::Object(out))
}

fn key_pair_out(pair: Map<String, Value>) -> Value {
    let mut out = Map::new();
    for key in ["id", "namespaceId", "name", "createdAt"] {
        if let Some(value) = pair.get(key) {
            out.insert(key.to_owned(), value.clone());
        }
    }
    if let Some(at) = pair.get("updatedAt") {
        out.insert("modifiedAt".to_owned(), at.clone());
    }
    if let Some(certificate) = pair.get("certificate").and_then(Value::as_str) {
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, certificate.as_bytes());
        out.insert("certificate".to_owned(), json!(encoded));
    }
    if let Some(info) = pair.get("certificateInfo") {
        out.insert("certificateInfo".to_owned(), json!([info]));
    }
    out.insert("status".to_owned(), json!("KEY_PAIR_STATUS_READY"));
    out.insert("origin".to_owned(), json!("KEY_PAIR_ORIGIN_USER"));
    Value::Object(out)
}

/// The kind a method is about, its request's entity field, and its answer's list field.
fn entity_kind(noun: &str) -> Option<(Kind, &'static str, &'static str)> {
    match noun {
        "Route" => Some((Kind::Route, "route", "routes")),
        "Policy" => Some((Kind::Policy, "policy", "policies")),
        "KeyPair" => Some((Kind::KeyPair, "keyPair", "keyPairs")),
        _ => None,
    }
}

fn to_api(kind: Kind, entity: &Map<String, Value>) -> Result<Value> {
    match kind {
        Kind::Route => route_in(entity),
        Kind::Policy => policy_in(entity),
        _ => key_pair_in(entity),
    }
}

fn from_api(kind: Kind, entity: Map<String, Value>) -> Value {
    match kind {
        Kind::Route => route_out(entity),
        Kind::Policy => policy_out(entity),
        _ => key_pair_out(entity),
    }
}

// --- The methods -------------------------------------------------------------------------------

async fn create(state: &State, kind: Kind, field: &str, request: &Map<String, Value>) -> Result<Value> {
    let body = to_api(kind, object(request, field)?)?;
    let created = call(state, &Method::POST, kind, &[], &body).await?;
    Ok(json!({ field: from_api(kind, created) }))
}

async fn get(state: &State, kind: Kind, field: &str, request: &Map<String, Value>) -> Result<Value> {
    let id = id_of(request)?;
    let found = call(state, &Method::GET, kind, &[&id], &Value::Null).await?;
    Ok(json!({ field: from_api(kind, found) }))
}

async fn update(state: &State, kind: Kind, field: &str, request: &Map<String, Value>) -> Result<Value> {
    let given = object(request, field)?;
    let id = id_of(given)?;
    let current = call(state, &Method::GET, kind, &[&id], &Value::Null).await?;
    // Without a mask the entity is replaced by the one given; with one, only its paths change.
    let merged = match mask(request) {
        None => given.clone(),
        Some(paths) => {
            let Value::Object(mut merged) = from_api(kind, current.clone()) else {
                return Err(invalid("not an entity"));
            };
            for path in paths {
                match given.get(&path) {
                    Some(value) => merged.insert(path, value.clone()),
                    None => merged.remove(&path),
                };
            }
            merged
        }
    };
    let mut body = to_api(kind, &merged)?;
    if let (Some(map), Some(ns)) = (body.as_object_mut(), current.get("namespaceId")) {
        map.entry("namespaceId").or_insert_with(|| ns.clone());
    }
    if kind == Kind::KeyPair
        && let Some(map) = body.as_object_mut()
    {
        // The stored key stays unless a new one is given.
        if !map.contains_key("key")
            && let Some(Value::String(key)) =
                state.store.live(Kind::KeyPair, &id).await.ok().flatten().and_then(|p| p.get("key").cloned())
        {
            map.insert("key".to_owned(), json!(key));
        }
    }
    let updated = call(state, &Method::PUT, kind, &[&id], &body).await?;
    Ok(json!({ field: from_api(kind, updated) }))
}

async fn delete(state: &State, kind: Kind, request: &Map<String, Value>) -> Result<Value> {
    let id = id_of(request)?;
    if kind == Kind::Policy && request.get("removeFromAnyAssignedRoutes").and_then(Value::as_bool) == Some(true) {
        let policy = call(state, &Method::GET, kind, &[&id], &Value::Null).await?;
        for route in policy.get("routes").and_then(Value::as_array).into_iter().flatten() {
            let Some(route_id) = route.get("id").and_then(Value::as_str) else { continue };
            let mut current = call(state, &Method::GET, Kind::Route, &[route_id], &Value::Null).await?;
            if let Some(Value::Array(ids)) = current.get_mut("policyIds") {
                ids.retain(|p| p.as_str() != Some(id.as_str()));
            }
            let Value::Object(shown) = route_out(current) else { continue };
            let body = route_in(&shown)?;
            call(state, &Method::PUT, Kind::Route, &[route_id], &body).await?;
        }
    }
    call(state, &Method::DELETE, kind, &[&id], &Value::Null).await?;
    Ok(json!({}))
}

async fn list(state: &State, kind: Kind, field: &str, request: &Map<String, Value>) -> Result<Value> {
    let filter = request.get("filter").and_then(Value::as_object);
    let namespace = filter
        .and_then(|f| f.get("namespace_id").or_else(|| f.get("namespaceId")))
        .and_then(|v| v.as_str().or_else(|| v.get("$eq").and_then(Value::as_str)));
    let mut items = state
        .store
        .list(kind)
        .await
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("storage: {e}")))?;
    if let Some(ns) = namespace {
        items.retain(|e| e.get("namespaceId").and_then(Value::as_str) == Some(ns));
    }
    let total = items.len();
    // protojson: uint64 as a string.
    let number =
        |key: &str| request.get(key).and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
    let offset = usize::try_from(number("offset").unwrap_or(0)).unwrap_or(usize::MAX);
    let limit = usize::try_from(number("limit").unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for entity in items.into_iter().skip(offset).take(limit) {
        let id = entity.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        // Through the handler: the computed fields as a GET shows them.
        out.push(from_api(kind, call(state, &Method::GET, kind, &[&id], &Value::Null).await?));
    }
    Ok(json!({ field: out, "totalCount": total.to_string() }))
}

/// The cluster whose settings a request names (`id`, `clusterId` or `namespaceId`; a cluster's
/// namespace has its id).
async fn settings_cluster(state: &State, given: &Map<String, Value>) -> Result<String> {
    let id = ["clusterId", "namespaceId", "id"]
        .iter()
        .find_map(|k| given.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
        .ok_or_else(|| invalid("name the cluster: `clusterId` (or `namespaceId`, `id`)"))?;
    match state.store.live(Kind::Cluster, id).await {
        Ok(Some(_)) => Ok(id.to_owned()),
        Ok(None) => Err(error(StatusCode::NOT_FOUND, "not_found", format!("cluster `{id}` not found"))),
        Err(e) => Err(error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("storage: {e}"))),
    }
}

fn settings_out(cluster: &str, mut settings: Map<String, Value>) -> Value {
    settings.insert("id".to_owned(), json!(cluster));
    settings.insert("clusterId".to_owned(), json!(cluster));
    settings.insert("namespaceId".to_owned(), json!(cluster));
    json!({ "settings": settings })
}

async fn cluster_settings(state: &State, cluster: &str, method: Method, body: &[u8]) -> Result<Map<String, Value>> {
    let request = crate::api::Request {
        method: &method,
        segments: Vec::new(),
        query: None,
        authorization: None,
        body,
        source: None,
    };
    let reply = match crate::clusters::handle(state, &request, &[cluster, "settings"]).await {
        Ok(reply) | Err(reply) => reply,
    };
    if !reply.status.is_success() {
        return Err(from_reply(&reply));
    }
    Ok(reply.body.and_then(|b| b.as_object().cloned()).unwrap_or_default())
}

async fn get_settings(state: &State, request: &Map<String, Value>) -> Result<Value> {
    let cluster = settings_cluster(state, request).await?;
    let settings = cluster_settings(state, &cluster, Method::GET, b"").await?;
    Ok(settings_out(&cluster, settings))
}

async fn update_settings(state: &State, request: &Map<String, Value>) -> Result<Value> {
    let given = object(request, "settings")?;
    let cluster = settings_cluster(state, given).await?;
    let mut settings = cluster_settings(state, &cluster, Method::GET, b"").await?;
    let paths = mask(request).unwrap_or_else(|| {
        given.keys().filter(|k| !matches!(k.as_str(), "id" | "clusterId" | "namespaceId")).cloned().collect()
    });
    for path in paths {
        match given.get(&path) {
            Some(value) if !value.is_null() => settings.insert(path, value.clone()),
            _ => settings.remove(&path),
        };
    }
    let body = serde_json::to_vec(&settings).unwrap_or_default();
    let updated = cluster_settings(state, &cluster, Method::PUT, &body).await?;
    Ok(settings_out(&cluster, updated))
}

/// Answers one call: `method` is the path's last segment, `content_type` the request's.
pub async fn handle(
    state: &State,
    http_method: &Method,
    method: &str,
    content_type: Option<&str>,
    authorization: Option<&str>,
    body: &[u8],
) -> Answer {
    if *http_method != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "unimplemented", "Connect unary calls are POST");
    }
    let codec = content_type.unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let proto = match codec.as_str() {
        "application/json" => false,
        "application/proto" => true,
        _ => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unimplemented",
                format!("codec `{codec}` is not served: send `Content-Type: application/json` or `application/proto`"),
            );
        }
    };
    if let Err(reply) = crate::api::authenticate_header(state, authorization) {
        return from_reply(&reply);
    }
    let schemas = crate::config_proto::schemas(method);
    let request = if proto {
        let Some((request_schema, _)) = &schemas else {
            return error(StatusCode::NOT_FOUND, "unimplemented", format!("`{method}` is not served"));
        };
        match crate::config_proto::read(body, request_schema, "the request") {
            Ok(map) => map,
            Err(e) => return invalid(e),
        }
    } else {
        match serde_json::from_slice::<Value>(if body.is_empty() { b"{}" } else { body }) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return invalid("the request must be a JSON object"),
            Err(e) => return invalid(format!("the request is not JSON: {e}")),
        }
    };
    match dispatch(state, method, &request).await {
        Ok(body) => {
            let encoded = match (proto, &schemas, body.as_object()) {
                (true, Some((_, answer_schema)), Some(map)) => Some(crate::config_proto::write(map, answer_schema)),
                (true, _, _) => Some(Vec::new()),
                _ => None,
            };
            Answer { status: StatusCode::OK, body, proto: encoded }
        }
        Err(answer) => answer,
    }
}

async fn dispatch(state: &State, method: &str, request: &Map<String, Value>) -> Result<Value> {
    let request = request.clone();
    match method {
        "GetServerInfo" => Ok(json!({"serverType": "SERVER_TYPE_ZERO", "version": env!("CARGO_PKG_VERSION")})),
        "GetSettings" => get_settings(state, &request).await,
        "UpdateSettings" => update_settings(state, &request).await,
        _ => {
            let (verb, noun) = ["Create", "Get", "Update", "Delete", "List"]
                .iter()
                .find_map(|verb| method.strip_prefix(verb).map(|noun| (*verb, noun)))
                .unwrap_or(("", method));
            let noun = if verb == "List" {
                match noun {
                    "Routes" => "Route",
                    "Policies" => "Policy",
                    "KeyPairs" => "KeyPair",
                    other => other,
                }
            } else {
                noun
            };
            match (verb, entity_kind(noun)) {
                ("Create", Some((kind, field, _))) => create(state, kind, field, &request).await,
                ("Get", Some((kind, field, _))) => get(state, kind, field, &request).await,
                ("Update", Some((kind, field, _))) => update(state, kind, field, &request).await,
                ("Delete", Some((kind, _, _))) => delete(state, kind, &request).await,
                ("List", Some((kind, _, list_field))) => list(state, kind, list_field, &request).await,
                _ => Err(error(
                    StatusCode::NOT_FOUND,
                    "unimplemented",
                    format!("`{method}` is not served (routes, policies, key pairs, settings, GetServerInfo)"),
                )),
            }
        }
    }
}
