//! Zero's public API v0 (`/api/v0`, zero.md §2): token exchange, organizations, namespaces,
//! clusters, cluster settings, routes, policies, key pairs, changesets. Field names, status codes,
//! bare-array lists and JSON Patch as Zero's; errors are `{"error": "..."}`; a deleted entity
//! answers 403. Every route and policy is checked by [`crate::check`] before it is stored, and
//! every change to a cluster's namespace is checked as the whole configuration the cluster
//! would load.

use crate::auth::{self, Subject};
use crate::check::{self, Diagnostic};
use crate::state::State;
use crate::store::{Found, Kind, new_id, now};
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

/// An API answer: status and JSON body (`None`: no body, 204).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Option<Value>,
}

impl Reply {
    pub fn json(status: StatusCode, body: Value) -> Reply {
        Reply { status, body: Some(body) }
    }

    pub fn ok(body: Value) -> Reply {
        Reply::json(StatusCode::OK, body)
    }

    pub fn error(status: StatusCode, message: impl Into<String>) -> Reply {
        Reply::json(status, json!({ "error": message.into() }))
    }

    pub fn no_content() -> Reply {
        Reply { status: StatusCode::NO_CONTENT, body: None }
    }

    fn diagnostics(what: &str, diagnostics: &[Diagnostic]) -> Reply {
        let errors = diagnostics.iter().filter(|d| d.severity == "error").count();
        let first =
            diagnostics.first().map(|d| format!(": {}:{}: {}", d.line, d.column, d.message)).unwrap_or_default();
        Reply::json(
            StatusCode::BAD_REQUEST,
            json!({
                "error": format!("{what} has {errors} error{}{first}", if errors == 1 { "" } else { "s" }),
                "diagnostics": diagnostics.iter().map(Diagnostic::to_json).collect::<Vec<_>>(),
            }),
        )
    }
}

type Result<T> = std::result::Result<T, Reply>;

pub(crate) fn storage_error(error: databroker::storage::StorageError) -> Reply {
    tracing::error!(%error, "storage");
    Reply::error(StatusCode::SERVICE_UNAVAILABLE, format!("the console's storage failed: {error}; try again"))
}

/// A request as the API sees it.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a Method,
    /// The path below `/api/v0`, split at `/`.
    pub segments: Vec<&'a str>,
    pub query: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
    /// The text as the user wrote it, when `body` is its JSON translation (YAML from the web
    /// console): diagnostics point into it.
    pub source: Option<&'a str>,
}

impl Request<'_> {
    pub(crate) fn query(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.unwrap_or_default().as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    pub(crate) fn text(&self) -> Result<&str> {
        if let Some(source) = self.source {
            return Ok(source);
        }
        std::str::from_utf8(self.body).map_err(|_| Reply::error(StatusCode::BAD_REQUEST, "the body is not UTF-8"))
    }

    pub(crate) fn json(&self) -> Result<Value> {
        serde_json::from_slice(self.body)
            .map_err(|e| Reply::error(StatusCode::BAD_REQUEST, format!("the body is not valid JSON: {e}")))
    }

    pub(crate) fn object(&self) -> Result<Map<String, Value>> {
        match self.json()? {
            Value::Object(map) => Ok(map),
            _ => Err(Reply::error(StatusCode::BAD_REQUEST, "the body must be a JSON object")),
        }
    }
}

/// Answers one API request.
pub async fn handle(state: &State, request: &Request<'_>) -> Reply {
    match route(state, request).await {
        Ok(reply) | Err(reply) => reply,
    }
}

async fn route(state: &State, request: &Request<'_>) -> Result<Reply> {
    let method = request.method;
    match request.segments.as_slice() {
        ["token"] if method == Method::POST => return exchange(state, request).await,
        ["version"] if method == Method::GET => {
            return Ok(Reply::ok(json!({ "version": env!("CARGO_PKG_VERSION") })));
        }
        _ => {}
    }
    authenticate(state, request)?;
    let segments = request.segments.as_slice();
    match (method.clone(), segments) {
        (Method::GET, ["generateSubdomainName"]) => Ok(Reply::ok(json!({ "name": crate::names::generate() }))),
        (Method::GET, ["organizations"]) => Ok(Reply::ok(json!([organization(state).await?]))),
        (Method::POST, ["organizations"]) => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            format!(
                "this control plane serves one organization (`{}`) and does not create others; use it: GET /api/v0/organizations",
                state.org_id
            ),
        )),
        (_, ["organizations", org, rest @ ..]) => {
            if *org != state.org_id {
                return Err(Reply::error(StatusCode::NOT_FOUND, format!("organization `{org}` not found")));
            }
            organization_routes(state, request, rest).await
        }
        _ => Err(not_found(request)),
    }
}

fn not_found(request: &Request<'_>) -> Reply {
    Reply::error(
        StatusCode::NOT_FOUND,
        format!("no API endpoint {} /api/v0/{}", request.method, request.segments.join("/")),
    )
}

async fn exchange(state: &State, request: &Request<'_>) -> Result<Reply> {
    let body = request.object()?;
    let token = body.get("refreshToken").and_then(Value::as_str).unwrap_or_default();
    let name = match auth::match_api_token(&state.settings.api_tokens, token) {
        Some(name) => name.to_owned(),
        None => {
            let stored = state.store.list(Kind::ApiToken).await.map_err(storage_error)?;
            auth::match_stored_api_token(&stored, token).ok_or_else(|| {
                Reply::error(
                    StatusCode::BAD_REQUEST,
                    "invalid refresh token: it is neither one of the console's `api_tokens` nor a token made on the web console's API Tokens page",
                )
            })?
        }
    };
    let id_token = state.keys.issue(&Subject::User(name), jiff::Timestamp::now().as_second());
    Ok(Reply::ok(json!({
        "idToken": id_token,
        "expiresInSeconds": auth::ID_TOKEN_LIFETIME_SECONDS.to_string(),
    })))
}

fn authenticate(state: &State, request: &Request<'_>) -> Result<String> {
    authenticate_header(state, request.authorization)
}

/// The API user an `Authorization` header's id token names (401 otherwise).
pub fn authenticate_header(state: &State, authorization: Option<&str>) -> Result<String> {
    let refused = |why: &str| {
        Reply::error(
            StatusCode::UNAUTHORIZED,
            format!("{why}: send `Authorization: Bearer <idToken>` with an id token from POST /api/v0/token"),
        )
    };
    let token = authorization.and_then(auth::bearer).ok_or_else(|| refused("no credentials"))?;
    match state.keys.check(token, jiff::Timestamp::now().as_second()) {
        Some(Subject::User(name)) => Ok(name),
        _ => Err(refused("invalid or expired id token")),
    }
}

async fn organization(state: &State) -> Result<Value> {
    match state.store.live(Kind::Organization, &state.org_id).await.map_err(storage_error)? {
        Some(org) => Ok(Value::Object(org)),
        None => Err(Reply::error(StatusCode::NOT_FOUND, "the organization is missing")),
    }
}

async fn organization_routes(state: &State, request: &Request<'_>, rest: &[&str]) -> Result<Reply> {
    let method = request.method.clone();
    match (method, rest) {
        (Method::GET, []) => Ok(Reply::ok(organization(state).await?)),
        (Method::PUT, []) => {
            let body = request.object()?;
            let mut org = organization(state).await?.as_object().cloned().unwrap_or_default();
            if let Some(name) = body.get("name").and_then(Value::as_str) {
                org.insert("name".to_owned(), json!(name));
            }
            org.insert("updatedAt".to_owned(), json!(now()));
            state.store.put(Kind::Organization, &state.org_id, org.clone()).await.map_err(storage_error)?;
            Ok(Reply::ok(Value::Object(org)))
        }
        (Method::DELETE, []) => {
            Err(Reply::error(StatusCode::BAD_REQUEST, "the console's organization cannot be deleted"))
        }
        (Method::GET, ["namespaces"]) => namespaces(state).await,
        (Method::GET, ["quotas"]) => quotas(state).await,
        (_, ["clusters", rest @ ..]) => crate::clusters::handle(state, request, rest).await,
        (_, ["routes", rest @ ..]) => entities(state, request, Kind::Route, rest).await,
        (_, ["policies", rest @ ..]) => entities(state, request, Kind::Policy, rest).await,
        (_, ["keyPairs", rest @ ..]) => entities(state, request, Kind::KeyPair, rest).await,
        (Method::GET, ["changesets"]) => {
            let mut list = state.store.list(Kind::Changeset).await.map_err(storage_error)?;
            if let Some(ns) = request.query("namespaceId") {
                list.retain(|c| c.get("namespaceId").and_then(Value::as_str) == Some(ns.as_str()));
            }
            Ok(Reply::ok(Value::Array(list.into_iter().map(|c| Value::Object(public(c))).collect())))
        }
        (Method::POST, ["changesets", id, "apply"]) => apply_changeset(state, id).await,
        _ => Err(not_found(request)),
    }
}

async fn namespaces(state: &State) -> Result<Reply> {
    let clusters = state.store.list(Kind::Cluster).await.map_err(storage_error)?;
    let list: Vec<Value> = clusters
        .iter()
        .map(|c| {
            json!({
                "id": c.get("namespaceId").cloned().unwrap_or(Value::Null),
                "name": c.get("name").cloned().unwrap_or(Value::Null),
                "type": "cluster",
                "role": "admin",
                "createdAt": c.get("createdAt").cloned().unwrap_or(Value::Null),
                "updatedAt": c.get("updatedAt").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Reply::ok(Value::Array(list)))
}

async fn quotas(state: &State) -> Result<Reply> {
    let count = |kind| async move { state.store.list(kind).await.map(|l| l.len()).map_err(storage_error) };
    let counts = json!({
        "clusters": count(Kind::Cluster).await?,
        "routes": count(Kind::Route).await?,
        "policies": count(Kind::Policy).await?,
        "certificates": count(Kind::KeyPair).await?,
        "apiUsers": state.settings.api_tokens.len(),
        "administrators": 0, "customDomains": 0, "hostedClusters": 0, "replicas": 0, "serviceAccounts": 0,
    });
    let limit = i64::from(i32::MAX);
    let limits = json!({
        "clusters": limit, "routes": limit, "policies": limit, "certificates": limit, "apiUsers": limit,
        "administrators": limit, "customDomains": limit, "hostedClusters": 0, "replicas": limit, "serviceAccounts": limit,
    });
    Ok(Reply::ok(json!({ "counts": counts, "limits": limits })))
}

/// Fields kept in the store that the API does not show.
const HIDDEN: &[&str] = &["tokenGeneration", "tokenId", "changesetVersion", "version", "key"];

pub fn public(mut entity: Map<String, Value>) -> Map<String, Value> {
    for field in HIDDEN {
        entity.remove(*field);
    }
    entity
}

/// Routes, policies and key pairs: list (`?namespaceId=` required), create, get, put, patch, delete.
async fn entities(state: &State, request: &Request<'_>, kind: Kind, rest: &[&str]) -> Result<Reply> {
    let method = request.method.clone();
    match (method, rest) {
        (Method::GET, []) => {
            let Some(ns) = request.query("namespaceId") else {
                return Err(Reply::error(
                    StatusCode::BAD_REQUEST,
                    "`namespaceId` is required: add `?namespaceId=<cluster id>`",
                ));
            };
            let list = state.store.list_where(kind, "namespaceId", &ns).await.map_err(storage_error)?;
            let mut out = Vec::with_capacity(list.len());
            for entity in list {
                out.push(Value::Object(present(state, kind, entity).await?));
            }
            Ok(Reply::ok(Value::Array(out)))
        }
        (Method::POST, []) => {
            let body = request.object()?;
            let id = new_id();
            let created = now();
            let stored = save(state, kind, &id, body, request.text()?, Some(&created)).await?;
            Ok(Reply::json(StatusCode::CREATED, Value::Object(present(state, kind, stored).await?)))
        }
        (Method::GET, [id]) => {
            let entity = existing(state, kind, id).await?;
            Ok(Reply::ok(Value::Object(present(state, kind, entity).await?)))
        }
        (Method::PUT, [id]) => {
            let old = existing(state, kind, id).await?;
            let body = request.object()?;
            same_namespace(&old, &body)?;
            let stored =
                save(state, kind, id, body, request.text()?, old.get("createdAt").and_then(Value::as_str)).await?;
            Ok(Reply::ok(Value::Object(present(state, kind, stored).await?)))
        }
        (Method::PATCH, [id]) => {
            let old = existing(state, kind, id).await?;
            let patched = crate::patch::apply(&Value::Object(old.clone()), &request.json()?)
                .map_err(|e| Reply::error(StatusCode::BAD_REQUEST, format!("cannot apply the JSON Patch: {e}")))?;
            let Value::Object(body) = patched else {
                return Err(Reply::error(StatusCode::BAD_REQUEST, "the patched entity is not an object"));
            };
            same_namespace(&old, &body)?;
            let text = serde_json::to_string_pretty(&body).unwrap_or_default();
            let stored = save(state, kind, id, body, &text, old.get("createdAt").and_then(Value::as_str)).await?;
            Ok(Reply::ok(Value::Object(present(state, kind, stored).await?)))
        }
        (Method::DELETE, [id]) => {
            let old = existing(state, kind, id).await?;
            let ns = old.get("namespaceId").and_then(Value::as_str).unwrap_or_default().to_owned();
            if kind == Kind::Policy {
                let routes = state.store.list_where(Kind::Route, "namespaceId", &ns).await.map_err(storage_error)?;
                let users: Vec<String> = routes
                    .iter()
                    .filter(|r| ids(r, "policyIds").iter().any(|p| p == id))
                    .map(|r| r.get("name").and_then(Value::as_str).unwrap_or_default().to_owned())
                    .collect();
                if !users.is_empty() {
                    return Err(Reply::error(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "policy `{id}` is attached to route(s) {}; remove it from their `policyIds` first",
                            users.join(", ")
                        ),
                    ));
                }
            }
            state.store.delete(kind, id).await.map_err(storage_error)?;
            changed(state, &ns).await?;
            Ok(Reply::no_content())
        }
        _ => Err(not_found(request)),
    }
}

/// The web console's way to a route or policy: the API's own handling of `method` on
/// `rest` (below `/routes` or `/policies`) with `body`, the same checks and diagnostics, for a user
/// the console has already verified.
/// The text may be YAML as well as JSON (the web console's forms): YAML is read with our
/// front end's reader, and diagnostics point into the YAML as written.
pub async fn entity(state: &State, method: &Method, kind: Kind, rest: &[&str], body: &[u8]) -> Reply {
    let text = std::str::from_utf8(body).unwrap_or_default();
    let (json, source) = if body.is_empty() || check::is_json(text) {
        (None, None)
    } else {
        match check::yaml_to_json(text) {
            Ok(value) => (Some(serde_json::to_vec(&value).unwrap_or_default()), Some(text)),
            Err(errors) => return Reply::diagnostics("the text", &errors),
        }
    };
    let body = json.as_deref().unwrap_or(body);
    let request = Request { method, segments: Vec::new(), query: None, authorization: None, body, source };
    match entities(state, &request, kind, rest).await {
        Ok(reply) | Err(reply) => reply,
    }
}

/// An entity stays in its namespace (its cluster): a move would leave the old cluster's
/// configuration behind.
fn same_namespace(old: &Map<String, Value>, body: &Map<String, Value>) -> Result<()> {
    if old.get("namespaceId") == body.get("namespaceId") {
        return Ok(());
    }
    Err(Reply::error(
        StatusCode::BAD_REQUEST,
        "`namespaceId` cannot change: make the entity anew in the other namespace, then delete this one",
    ))
}

fn ids(entity: &Map<String, Value>, field: &str) -> Vec<String> {
    entity
        .get(field)
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The live entity; 403 when it was deleted (as Zero), 404 when it never existed.
pub async fn existing(state: &State, kind: Kind, id: &str) -> Result<Map<String, Value>> {
    match state.store.get(kind, id).await.map_err(storage_error)? {
        Found::Live(entity) => Ok(entity),
        Found::Deleted => {
            Err(Reply::error(StatusCode::FORBIDDEN, format!("{} `{id}` was deleted", kind.name().to_lowercase())))
        }
        Found::Missing => {
            Err(Reply::error(StatusCode::NOT_FOUND, format!("{} `{id}` not found", kind.name().to_lowercase())))
        }
    }
}

/// The entity with its computed fields (a route's policies, a policy's routes).
async fn present(state: &State, kind: Kind, entity: Map<String, Value>) -> Result<Map<String, Value>> {
    let mut entity = public(entity);
    let ns = entity.get("namespaceId").and_then(Value::as_str).unwrap_or_default().to_owned();
    let info = |e: &Map<String, Value>| json!({"id": e.get("id"), "name": e.get("name")});
    match kind {
        Kind::Route => {
            let policies = state.store.list_where(Kind::Policy, "namespaceId", &ns).await.map_err(storage_error)?;
            let ids = ids(&entity, "policyIds");
            let attached: Vec<Value> = policies
                .iter()
                .filter(|p| p.get("id").and_then(Value::as_str).is_some_and(|id| ids.iter().any(|i| i == id)))
                .map(info)
                .collect();
            let enforced: Vec<&Map<String, Value>> =
                policies.iter().filter(|p| p.get("enforced").and_then(Value::as_bool) == Some(true)).collect();
            entity.insert("policies".to_owned(), Value::Array(attached));
            entity.insert(
                "enforcedPolicyIds".to_owned(),
                Value::Array(enforced.iter().map(|p| p.get("id").cloned().unwrap_or(Value::Null)).collect()),
            );
            entity.insert("enforcedPolicies".to_owned(), Value::Array(enforced.into_iter().map(info).collect()));
        }
        Kind::Policy => {
            let id = entity.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
            let routes = state.store.list_where(Kind::Route, "namespaceId", &ns).await.map_err(storage_error)?;
            let enforced = entity.get("enforced").and_then(Value::as_bool) == Some(true);
            let using: Vec<Value> = routes.iter().filter(|r| ids(r, "policyIds").contains(&id)).map(info).collect();
            let enforced_on: Vec<Value> = if enforced { routes.iter().map(info).collect() } else { Vec::new() };
            entity.insert("routes".to_owned(), Value::Array(using));
            entity.insert("enforcedRoutes".to_owned(), Value::Array(enforced_on));
        }
        Kind::KeyPair => {
            entity.insert(
                "hasKey".to_owned(),
                json!(entity.contains_key("hasKey") && entity.get("hasKey") == Some(&json!(true))),
            );
            entity.entry("origin").or_insert(json!("user"));
            let info = entity.get("certificate").and_then(Value::as_str).and_then(crate::certinfo::info);
            if let Some(info) = info {
                entity.insert("certificateInfo".to_owned(), info);
            }
        }
        _ => {}
    }
    Ok(entity)
}

/// Validates and stores a route, policy or key pair; checks the namespace's whole configuration
/// with the change in place; records the change in the namespace's changeset.
async fn save(
    state: &State,
    kind: Kind,
    id: &str,
    mut body: Map<String, Value>,
    source: &str,
    created: Option<&str>,
) -> Result<Map<String, Value>> {
    for computed in [
        "id",
        "createdAt",
        "updatedAt",
        "routes",
        "enforcedRoutes",
        "policies",
        "enforcedPolicies",
        "enforcedPolicyIds",
        "certificateInfo",
    ] {
        body.remove(computed);
    }
    let ns = body.get("namespaceId").and_then(Value::as_str).unwrap_or_default().to_owned();
    let cluster = state.store.live(Kind::Cluster, &ns).await.map_err(storage_error)?;
    if cluster.is_none() {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            format!(
                "`namespaceId` `{ns}` is not a cluster's namespace (GET /organizations/{}/namespaces)",
                state.org_id
            ),
        ));
    }
    match kind {
        Kind::Policy => {
            if let Err(errors) = check::policy(source) {
                return Err(Reply::diagnostics("the policy", &errors));
            }
            if body.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
                return Err(Reply::error(StatusCode::BAD_REQUEST, "a policy needs a `name`"));
            }
            for (field, default) in [
                ("description", json!("")),
                ("explanation", json!("")),
                ("remediation", json!("")),
                ("enforced", json!(false)),
            ] {
                body.entry(field).or_insert(default);
            }
        }
        Kind::Route => {
            let policies = state.store.list_where(Kind::Policy, "namespaceId", &ns).await.map_err(storage_error)?;
            let wanted = ids(&body, "policyIds");
            let mut attached = Vec::new();
            for policy_id in &wanted {
                match policies.iter().find(|p| p.get("id").and_then(Value::as_str) == Some(policy_id.as_str())) {
                    Some(p) => attached.push(p),
                    None => {
                        return Err(Reply::error(
                            StatusCode::BAD_REQUEST,
                            format!("`policyIds`: policy `{policy_id}` is not in namespace `{ns}`"),
                        ));
                    }
                }
            }
            if body.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
                return Err(Reply::error(StatusCode::BAD_REQUEST, "a route needs a `name`"));
            }
            let mut as_config = body.clone();
            as_config.insert("id".to_owned(), json!(id));
            if let Err(errors) = check::route(source, &as_config, &attached) {
                return Err(Reply::diagnostics("the route", &errors));
            }
            body.entry("policyIds").or_insert(json!([]));
            for flag in [
                "allowWebsockets",
                "allowSpdy",
                "preserveHostHeader",
                "tlsSkipVerify",
                "showErrorDetails",
                "tlsUpstreamAllowRenegotiation",
                "enableGoogleCloudServerlessAuthentication",
            ] {
                body.entry(flag).or_insert(json!(false));
            }
        }
        Kind::KeyPair => {
            let certificate = body.get("certificate").and_then(Value::as_str).unwrap_or_default();
            if proxy::tls::certificates_from_pem(certificate.as_bytes()).is_err() {
                return Err(Reply::error(
                    StatusCode::BAD_REQUEST,
                    "`certificate` must be PEM text of at least one certificate",
                ));
            }
            if let Some(key) = body.get("key").and_then(Value::as_str) {
                if proxy::tls::certified_key_from_pem(certificate.as_bytes(), key.as_bytes()).is_err() {
                    return Err(Reply::error(
                        StatusCode::BAD_REQUEST,
                        "`key` must be the PEM private key of `certificate`",
                    ));
                }
                body.insert("hasKey".to_owned(), json!(true));
            }
            body.entry("status").or_insert(json!("ready"));
        }
        _ => {}
    }
    body.insert("id".to_owned(), json!(id));
    body.insert("createdAt".to_owned(), json!(created.map_or_else(now, str::to_owned)));
    body.insert("updatedAt".to_owned(), json!(now()));
    if kind != Kind::KeyPair {
        let candidate = (kind, body.clone());
        let (_, result) = namespace_config(state, &ns, Some(&candidate)).await?;
        if let Err(errors) = result {
            return Err(Reply::diagnostics("the cluster's configuration with this change", &errors));
        }
    }
    state.store.put(kind, id, body.clone()).await.map_err(storage_error)?;
    changed(state, &ns).await?;
    Ok(body)
}

/// The configuration namespace `ns` would run, with `candidate` in place of (or beside) its
/// stored entity, checked.
pub async fn namespace_config(
    state: &State,
    ns: &str,
    candidate: Option<&(Kind, Map<String, Value>)>,
) -> Result<(String, std::result::Result<Vec<Diagnostic>, Vec<Diagnostic>>)> {
    let (document, _) = build_config(state, ns, candidate).await?;
    Ok(check::load(&document))
}

/// The configuration document of namespace `ns` (and the routes it has).
pub async fn build_config(
    state: &State,
    ns: &str,
    candidate: Option<&(Kind, Map<String, Value>)>,
) -> Result<(Value, usize)> {
    let mut routes = state.store.list_where(Kind::Route, "namespaceId", ns).await.map_err(storage_error)?;
    let mut policies = state.store.list_where(Kind::Policy, "namespaceId", ns).await.map_err(storage_error)?;
    let mut settings = state.store.live(Kind::Settings, ns).await.map_err(storage_error)?.unwrap_or_default();
    if let Some((kind, entity)) = candidate {
        let list = match kind {
            Kind::Settings => {
                settings = entity.clone();
                return Ok((check::cluster_config(&settings, &routes, &policies), routes.len()));
            }
            Kind::Route => &mut routes,
            Kind::Policy => &mut policies,
            _ => return Ok((check::cluster_config(&settings, &routes, &policies), routes.len())),
        };
        let id = entity.get("id");
        match list.iter_mut().find(|e| e.get("id") == id) {
            Some(slot) => *slot = entity.clone(),
            None => list.push(entity.clone()),
        }
    }
    Ok((check::cluster_config(&settings, &routes, &policies), routes.len()))
}

/// After a change in namespace `ns`: the namespace's pending changeset (made if there is none);
/// applied at once when the cluster's settings say `autoApplyChangesets`.
pub async fn changed(state: &State, ns: &str) -> Result<()> {
    let pending = state
        .store
        .list_where(Kind::Changeset, "namespaceId", ns)
        .await
        .map_err(storage_error)?
        .into_iter()
        .find(|c| c.get("status").and_then(Value::as_str) == Some("pending"));
    let id = match pending {
        Some(mut changeset) => {
            changeset.insert("updatedAt".to_owned(), json!(now()));
            let id = changeset.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
            state.store.put(Kind::Changeset, &id, changeset).await.map_err(storage_error)?;
            id
        }
        None => {
            let id = new_id();
            let at = now();
            let changeset = json!({"id": id, "namespaceId": ns, "status": "pending", "createdAt": at, "updatedAt": at});
            state
                .store
                .put(Kind::Changeset, &id, changeset.as_object().cloned().unwrap_or_default())
                .await
                .map_err(storage_error)?;
            id
        }
    };
    let settings = state.store.live(Kind::Settings, ns).await.map_err(storage_error)?.unwrap_or_default();
    if settings.get("autoApplyChangesets").and_then(Value::as_bool) == Some(true) {
        let reply = apply_changeset(state, &id).await?;
        if reply.status != StatusCode::OK {
            return Err(reply);
        }
    }
    Ok(())
}

/// Applies a changeset: the namespace's configuration is checked as the cluster would load it,
/// then becomes the cluster's bundle, and the cluster's replicas are told (Connect
/// `config_updated`). A configuration that does not load is rejected, not shipped.
pub async fn apply_changeset(state: &State, id: &str) -> Result<Reply> {
    let _serial = state.apply_lock.lock().await;
    let mut changeset = existing(state, Kind::Changeset, id).await?;
    let status = changeset.get("status").and_then(Value::as_str).unwrap_or_default().to_owned();
    if status != "pending" {
        return Err(Reply::error(StatusCode::BAD_REQUEST, format!("changeset `{id}` is {status}, not pending")));
    }
    let ns = changeset.get("namespaceId").and_then(Value::as_str).unwrap_or_default().to_owned();
    let Some(mut cluster) = state.store.live(Kind::Cluster, &ns).await.map_err(storage_error)? else {
        return Err(Reply::error(StatusCode::BAD_REQUEST, format!("the cluster of changeset `{id}` was deleted")));
    };
    let (document, _) = build_config(state, &ns, None).await?;
    let (_, mut result) = check::load(&document);
    // What the clusters get is protobuf `pomerium.config.Config`: a key it has no field for
    // would be left out of it, so the changeset is rejected instead.
    if result.is_ok()
        && let Err(error) =
            crate::cluster_api::bundle_bytes(Some(&Map::from_iter([("config".to_owned(), document.clone())])))
    {
        result = Err(vec![check::Diagnostic {
            code: "console::bundle::unshippable".to_owned(),
            severity: "error",
            message: format!("the configuration cannot be shipped to clusters: {error}"),
            line: 1,
            column: 1,
            help: Some(
                "remove the setting or route field it names: protobuf `pomerium.config.Config` has no field for it"
                    .to_owned(),
            ),
            field: None,
        }]);
    }
    if let Err(errors) = result {
        let message = errors
            .iter()
            .map(|d| format!("{}:{}: [{}] {}", d.line, d.column, d.code, d.message))
            .collect::<Vec<_>>()
            .join("; ");
        changeset.insert("status".to_owned(), json!("rejected"));
        changeset.insert("failureMessage".to_owned(), json!(message));
        changeset.insert("updatedAt".to_owned(), json!(now()));
        state.store.put(Kind::Changeset, id, changeset).await.map_err(storage_error)?;
        return Ok(Reply::diagnostics("the changeset", &errors));
    }
    let version = cluster.get("changesetVersion").and_then(Value::as_i64).unwrap_or(0) + 1;
    let certificates = bundle_certificates(state, &ns, &cluster).await?;
    let bundle = json!({
        "clusterId": ns, "version": version, "changesetId": id, "config": document,
        "certificates": certificates, "appliedAt": now(),
    });
    state.store.put(Kind::Bundle, &ns, bundle.as_object().cloned().unwrap_or_default()).await.map_err(storage_error)?;
    // The version last: other consoles announce it (`State::follow`) once the bundle is there.
    cluster.insert("changesetVersion".to_owned(), json!(version));
    state.store.put(Kind::Cluster, &ns, cluster).await.map_err(storage_error)?;
    for mut other in state.store.list_where(Kind::Changeset, "namespaceId", &ns).await.map_err(storage_error)? {
        if other.get("status").and_then(Value::as_str) == Some("current") {
            other.insert("status".to_owned(), json!("applied"));
            let other_id = other.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
            state.store.put(Kind::Changeset, &other_id, other).await.map_err(storage_error)?;
        }
    }
    changeset.insert("status".to_owned(), json!("current"));
    changeset.insert("updatedAt".to_owned(), json!(now()));
    state.store.put(Kind::Changeset, id, changeset.clone()).await.map_err(storage_error)?;
    // `State::follow` announces the new version to the cluster's streams, on every console.
    tracing::info!(cluster = %ns, changeset = %id, version, "changeset applied");
    Ok(Reply::ok(Value::Object(public(changeset))))
}

/// The cluster's certificates (`certificates` of the configuration record, PEM text): the key
/// pairs with their private keys, then the cluster's wildcard certificate from the console's CA
/// (issued or renewed here when due).
async fn bundle_certificates(state: &State, ns: &str, cluster: &Map<String, Value>) -> Result<Vec<Value>> {
    let mut certificates: Vec<Value> = state
        .store
        .list_where(Kind::KeyPair, "namespaceId", ns)
        .await
        .map_err(storage_error)?
        .iter()
        .filter_map(|pair| {
            let key = pair.get("key").and_then(Value::as_str)?;
            let cert = pair.get("certificate").and_then(Value::as_str)?;
            Some(json!({"cert": cert, "key": key}))
        })
        .collect();
    if let Some(fqdn) = cluster.get("fqdn").and_then(Value::as_str) {
        let issued = crate::ca::for_cluster(state, ns, fqdn).await.map_err(|e| {
            tracing::error!(cluster = %ns, error = %e, "cannot issue the cluster's certificate");
            Reply::error(StatusCode::SERVICE_UNAVAILABLE, format!("{e}; try again"))
        })?;
        certificates.push(json!({"cert": issued.certificate, "key": issued.key}));
    }
    Ok(certificates)
}

/// Ships a cluster's bundle again with its certificates renewed (its configuration unchanged,
/// a new version, so that the replicas fetch it): what [`crate::ca::RENEW_CHECK_EVERY`] does
/// for a cluster whose certificate is due. Nothing for a cluster never applied to.
pub async fn reship_certificates(state: &State, ns: &str) -> Result<()> {
    let _serial = state.apply_lock.lock().await;
    let Some(mut cluster) = state.store.live(Kind::Cluster, ns).await.map_err(storage_error)? else { return Ok(()) };
    let Some(mut bundle) = state.store.live(Kind::Bundle, ns).await.map_err(storage_error)? else { return Ok(()) };
    let version = cluster.get("changesetVersion").and_then(Value::as_i64).unwrap_or(0) + 1;
    let certificates = bundle_certificates(state, ns, &cluster).await?;
    bundle.insert("certificates".to_owned(), Value::Array(certificates));
    bundle.insert("version".to_owned(), json!(version));
    bundle.insert("appliedAt".to_owned(), json!(now()));
    state.store.put(Kind::Bundle, ns, bundle).await.map_err(storage_error)?;
    cluster.insert("changesetVersion".to_owned(), json!(version));
    state.store.put(Kind::Cluster, ns, cluster).await.map_err(storage_error)?;
    tracing::info!(cluster = %ns, version, "cluster certificate renewed and shipped");
    Ok(())
}

pub(crate) use self::storage_error as storage_failed;
