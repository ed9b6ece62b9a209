//! A fake Kubernetes API server for tests: plain HTTP on loopback, every object kept in memory
//! as JSON, enough of the API for controllers built on `kube` (list, watch, get, create, replace,
//! patch, delete, and the `status` subresource) without a cluster.
//!
//! ```text
//! test ──FakeApi::apply / delete──► objects + change log ──► open watches (JSON lines)
//!   ▲                                   ▲                         │
//!   └── requests(), list::<Event>() ◄── controller's POST/PATCH ◄─┘ controller (kube::Client)
//! ```
//!
//! What it serves, for any resource (no schema; the collection is named by its path):
//!
//! - `GET /api/v1/{plural}` and `/apis/{group}/{version}/{plural}` (all namespaces), and the same
//!   under `namespaces/{namespace}/`: a list whose `metadata.resourceVersion` is the current one.
//!   `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`) and `fieldSelector` (`metadata.name`,
//!   `metadata.namespace`, with `=`, `==`, `!=`) filter lists and watches.
//! - `?watch=1` (or `true`): a stream of JSON lines `{"type": "ADDED" | "MODIFIED" | "DELETED",
//!   "object": ...}`: every change after `resourceVersion` (the whole change log is kept, so
//!   every version is valid), or, without one (or `0`), the current objects as `ADDED` first.
//!   `timeoutSeconds` ends the stream; an object that stops (starts) matching a label selector is
//!   sent as `DELETED` (`ADDED`). Bookmarks are not sent.
//! - `GET`, `PUT` (a stale `metadata.resourceVersion` is a 409), `PATCH` (`merge-patch+json`,
//!   `strategic-merge-patch+json` and `apply-patch+yaml` in JSON, all applied as a JSON merge
//!   patch; JSON Patch is a 415) and `DELETE` of one object, and `.../{name}/status`, which reads
//!   the object and writes only its `status`; `POST` to a collection creates (with
//!   `generateName`). Errors are `Status` objects with the usual reasons and codes.
//!
//! Every request is recorded ([`FakeApi::requests`]) with its parsed JSON body, so that a test can
//! assert what a controller wrote (Events, status patches) as well as read the objects back.
//! [`FakeApi::close_watches`] ends every open watch, to test that a client resumes.

use bytes::Bytes;
use futures::StreamExt as _;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use k8s_openapi::{NamespaceResourceScope, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::any::TypeId;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A running fake API server; it stops when dropped.
#[derive(Debug)]
pub struct FakeApi {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string (empty when there is none).
    pub query: String,
    pub content_type: Option<String>,
    /// The body, when it was JSON.
    pub body: Option<Value>,
}

impl RecordedRequest {
    /// Whether the query has `key=value` (either encoding of a boolean `true` counts for `true`).
    pub fn has_param(&self, key: &str, value: &str) -> bool {
        query_pairs(&self.query)
            .iter()
            .any(|(k, v)| k == key && (v == value || (value == "true" && v == "1") || (value == "1" && v == "true")))
    }

    /// Whether this is a watch request.
    pub fn is_watch(&self) -> bool {
        self.method == "GET" && self.has_param("watch", "true")
    }
}

/// What changed, as a watch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// An error from the typed API of [`FakeApi`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeError(pub String);

impl std::fmt::Display for FakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FakeError {}

/// A collection: objects of one resource, by API group/version and plural.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CollectionKey {
    /// `v1` for the core group, `group/version` otherwise.
    api_version: String,
    plural: String,
}

#[derive(Debug, Default)]
struct Collection {
    kind: Option<String>,
    /// By `(namespace, name)`; cluster-scoped objects have an empty namespace.
    objects: BTreeMap<(String, String), Value>,
}

#[derive(Debug, Clone)]
struct Change {
    version: u64,
    collection: CollectionKey,
    change: ChangeType,
    namespace: String,
    object: Value,
    /// The object before a modification.
    previous: Option<Value>,
}

#[derive(Debug, Default)]
struct State {
    version: u64,
    uids: u64,
    collections: BTreeMap<CollectionKey, Collection>,
    log: Vec<Change>,
    requests: Vec<RecordedRequest>,
    open_watches: Vec<(u64, String)>,
    next_watch: u64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// The latest resource version; watches wake on every change.
    changed: watch::Sender<u64>,
    /// Bumped to end every open watch.
    epoch: watch::Sender<u64>,
    connections: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.accept.abort();
        let connections = std::mem::take(&mut *self.shared.connections.lock().unwrap_or_else(PoisonError::into_inner));
        connections.iter().for_each(tokio::task::AbortHandle::abort);
    }
}

impl FakeApi {
    /// Starts a server on a free loopback port (inside a Tokio runtime).
    pub async fn start() -> std::io::Result<FakeApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
            epoch: watch::channel(0).0,
            connections: Mutex::new(Vec::new()),
        });
        let accepting = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let serving = Arc::clone(&accepting);
                let connection = tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = Arc::clone(&serving);
                        async move { Ok::<_, Infallible>(handle(shared, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                let mut connections = accepting.connections.lock().unwrap_or_else(PoisonError::into_inner);
                connections.retain(|c| !c.is_finished());
                connections.push(connection.abort_handle());
            }
        });
        Ok(FakeApi { shared, addr, accept })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client configuration for this server (no credentials, namespace `default`).
    pub fn config(&self) -> kube::Config {
        let mut config = kube::Config::new(http::Uri::from_maybe_shared(self.url()).unwrap_or_default());
        config.connect_timeout = Some(Duration::from_secs(5));
        config
    }

    /// A client for this server.
    pub fn client(&self) -> Result<kube::Client, FakeError> {
        kube::Client::try_from(self.config()).map_err(|e| FakeError(format!("client: {e}")))
    }

    /// A kubeconfig document naming this server, for a process started with `KUBECONFIG`.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{url}\"}}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake, namespace: default}}\n\
             current-context: fake\n",
            url = self.url()
        )
    }

    /// Creates the object, or replaces the one of the same namespace and name (keeping its uid
    /// and creation time); open watches see `ADDED` or `MODIFIED`. An object without a namespace
    /// of a namespaced kind is put in `default`. Returns the object as stored.
    pub fn apply<K>(&self, object: &K) -> Result<K, FakeError>
    where
        K: Resource + Serialize + DeserializeOwned,
        K::Scope: 'static,
    {
        let mut value = serde_json::to_value(object).map_err(|e| FakeError(format!("serialize: {e}")))?;
        let namespaced = TypeId::of::<K::Scope>() == TypeId::of::<NamespaceResourceScope>();
        let key = collection_key::<K>();
        let meta = metadata_mut(&mut value)?;
        let namespace = match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if namespaced && !ns.is_empty() => ns.to_owned(),
            _ if namespaced => "default".to_owned(),
            _ => String::new(),
        };
        if namespaced {
            meta.insert("namespace".to_owned(), Value::String(namespace.clone()));
        }
        let name = meta.get("name").and_then(Value::as_str).map(str::to_owned).unwrap_or_default();
        if name.is_empty() {
            return Err(FakeError("the object has no metadata.name".to_owned()));
        }
        let stored = {
            let mut state = self.shared.lock();
            state.collections.entry(key.clone()).or_default().kind = Some(K::KIND.to_owned());
            state.upsert(&key, &namespace, &name, value, Write::Replace)
        };
        self.notify();
        from_value(stored.map_err(|(_, message)| FakeError(message))?)
    }

    /// Deletes an object (`namespace` is ignored for cluster-scoped kinds); open watches see
    /// `DELETED`. Whether it existed.
    pub fn delete<K>(&self, namespace: &str, name: &str) -> bool
    where
        K: Resource,
        K::Scope: 'static,
    {
        let namespace = scoped_namespace::<K>(namespace);
        let deleted = self.shared.lock().remove(&collection_key::<K>(), &namespace, name).is_some();
        self.notify();
        deleted
    }

    /// One object, as stored.
    pub fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: Resource + DeserializeOwned,
        K::Scope: 'static,
    {
        let namespace = scoped_namespace::<K>(namespace);
        let state = self.shared.lock();
        let value = state.collections.get(&collection_key::<K>())?.objects.get(&(namespace, name.to_owned()))?;
        from_value(value.clone()).ok()
    }

    /// The objects of a kind, in one namespace or all, ordered by namespace and name.
    pub fn list<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: Resource + DeserializeOwned,
    {
        let state = self.shared.lock();
        let Some(collection) = state.collections.get(&collection_key::<K>()) else { return Vec::new() };
        collection
            .objects
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|wanted| wanted == ns))
            .filter_map(|(_, value)| from_value(value.clone()).ok())
            .collect()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Forgets the requests recorded so far.
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// The paths (with queries) of the watches open now.
    pub fn open_watches(&self) -> Vec<String> {
        self.shared.lock().open_watches.iter().map(|(_, path)| path.clone()).collect()
    }

    /// Ends every open watch stream (clients are expected to resume from their last version).
    pub fn close_watches(&self) {
        self.shared.epoch.send_modify(|epoch| *epoch += 1);
    }

    /// The current resource version.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().version
    }

    fn notify(&self) {
        let version = self.shared.lock().version;
        self.shared.changed.send_replace(version);
    }
}

fn from_value<K: DeserializeOwned>(value: Value) -> Result<K, FakeError> {
    serde_json::from_value(value).map_err(|e| FakeError(format!("deserialize: {e}")))
}

fn collection_key<K: Resource>() -> CollectionKey {
    CollectionKey { api_version: K::API_VERSION.to_owned(), plural: K::URL_PATH_SEGMENT.to_owned() }
}

fn scoped_namespace<K>(namespace: &str) -> String
where
    K: Resource,
    K::Scope: 'static,
{
    if TypeId::of::<K::Scope>() == TypeId::of::<NamespaceResourceScope>() {
        namespace.to_owned()
    } else {
        String::new()
    }
}

fn metadata_mut(value: &mut Value) -> Result<&mut Map<String, Value>, FakeError> {
    let object = value.as_object_mut().ok_or_else(|| FakeError("an object must be a JSON object".to_owned()))?;
    let meta = object.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().ok_or_else(|| FakeError("metadata".to_owned()))
}

/// How a write treats the stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// Replace the object (create it when missing).
    Replace,
    /// Replace only `status` (the object must exist).
    Status,
}

/// An error response: status code and message.
type Failure = (StatusCode, String);

impl State {
    fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    fn kind_of(&self, key: &CollectionKey) -> String {
        self.collections.get(key).and_then(|c| c.kind.clone()).unwrap_or_else(|| known_kind(&key.plural))
    }

    /// Creates or replaces `(namespace, name)` with `value`, filling in the server's metadata.
    fn upsert(
        &mut self,
        key: &CollectionKey,
        namespace: &str,
        name: &str,
        mut value: Value,
        write: Write,
    ) -> Result<Value, Failure> {
        let kind = self.kind_of(key);
        let previous = self.collections.get(key).and_then(|c| c.objects.get(&(namespace.to_owned(), name.to_owned())));
        let previous = previous.cloned();
        if write == Write::Status {
            let Some(mut current) = previous.clone() else {
                return Err((StatusCode::NOT_FOUND, format!("{} \"{name}\" not found", key.plural)));
            };
            if let (Some(object), Some(status)) = (current.as_object_mut(), value.get("status")) {
                object.insert("status".to_owned(), status.clone());
            }
            value = current;
        }
        let version = self.next_version();
        self.uids += 1;
        let uid = format!("00000000-0000-4000-8000-{:012x}", self.uids);
        let Some(object) = value.as_object_mut() else {
            return Err((StatusCode::BAD_REQUEST, "the body must be a JSON object".to_owned()));
        };
        object.insert("apiVersion".to_owned(), Value::String(key.api_version.clone()));
        object.insert("kind".to_owned(), Value::String(kind));
        let old_meta = previous.as_ref().and_then(|p| p.get("metadata")).cloned().unwrap_or(Value::Null);
        let spec_changed =
            previous.as_ref().is_none_or(|p| without_meta_and_status(p) != without_meta_and_status(&value));
        let meta = metadata_mut(&mut value).map_err(|e| (StatusCode::BAD_REQUEST, e.0))?;
        meta.insert("name".to_owned(), Value::String(name.to_owned()));
        if namespace.is_empty() {
            meta.remove("namespace");
        } else {
            meta.insert("namespace".to_owned(), Value::String(namespace.to_owned()));
        }
        let keep = |field: &str, default: Value| old_meta.get(field).cloned().unwrap_or(default);
        meta.insert("uid".to_owned(), keep("uid", Value::String(uid)));
        meta.insert("creationTimestamp".to_owned(), keep("creationTimestamp", Value::String(now())));
        let generation = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
        let generation = if spec_changed && write == Write::Replace { generation + 1 } else { generation.max(1) };
        meta.insert("generation".to_owned(), json!(generation));
        meta.insert("resourceVersion".to_owned(), Value::String(version.to_string()));
        let collection = self.collections.entry(key.clone()).or_default();
        collection.objects.insert((namespace.to_owned(), name.to_owned()), value.clone());
        let change = if previous.is_some() { ChangeType::Modified } else { ChangeType::Added };
        self.log.push(Change {
            version,
            collection: key.clone(),
            change,
            namespace: namespace.to_owned(),
            object: value.clone(),
            previous,
        });
        Ok(value)
    }

    fn remove(&mut self, key: &CollectionKey, namespace: &str, name: &str) -> Option<Value> {
        let mut object = self.collections.get_mut(key)?.objects.remove(&(namespace.to_owned(), name.to_owned()))?;
        let version = self.next_version();
        if let Ok(meta) = metadata_mut(&mut object) {
            meta.insert("resourceVersion".to_owned(), Value::String(version.to_string()));
        }
        self.log.push(Change {
            version,
            collection: key.clone(),
            change: ChangeType::Deleted,
            namespace: namespace.to_owned(),
            object: object.clone(),
            previous: None,
        });
        Some(object)
    }
}

fn without_meta_and_status(value: &Value) -> Value {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object.remove("metadata");
        object.remove("status");
    }
    value
}

fn now() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

/// The kinds of the collections a controller may list before anything was stored in them.
fn known_kind(plural: &str) -> String {
    let kind = match plural {
        "ingresses" => "Ingress",
        "ingressclasses" => "IngressClass",
        "services" => "Service",
        "endpoints" => "Endpoints",
        "endpointslices" => "EndpointSlice",
        "secrets" => "Secret",
        "configmaps" => "ConfigMap",
        "events" => "Event",
        "pods" => "Pod",
        "namespaces" => "Namespace",
        _ => "Object",
    };
    kind.to_owned()
}

/// What a request's path names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    collection: CollectionKey,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (api_version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ((*version).to_owned(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (Some((*namespace).to_owned()), rest),
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, subresource] => (*plural, Some(*name), Some(*subresource)),
        _ => return None,
    };
    Some(Target {
        collection: CollectionKey { api_version, plural: plural.to_owned() },
        namespace,
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    })
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(decoded) => {
                        out.push(decoded);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A label or field selector: requirements that must all hold.
#[derive(Debug, Clone, Default)]
struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

#[derive(Debug, Clone)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

impl Requirement {
    fn parse_all(text: &str) -> Vec<Requirement> {
        text.split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| {
                if let Some((k, v)) = r.split_once("!=") {
                    Requirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
                } else if let Some((k, v)) = r.split_once("==").or_else(|| r.split_once('=')) {
                    Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
                } else if let Some(k) = r.strip_prefix('!') {
                    Requirement::NotExists(k.trim().to_owned())
                } else {
                    Requirement::Exists(r.to_owned())
                }
            })
            .collect()
    }

    fn holds(&self, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
        match self {
            Requirement::Equals(k, v) => lookup(k).as_deref() == Some(v.as_str()),
            Requirement::NotEquals(k, v) => lookup(k).as_deref() != Some(v.as_str()),
            Requirement::Exists(k) => lookup(k).is_some(),
            Requirement::NotExists(k) => lookup(k).is_none(),
        }
    }
}

impl Selector {
    fn from_query(pairs: &[(String, String)]) -> Selector {
        let mut selector = Selector::default();
        for (key, value) in pairs {
            match key.as_str() {
                "labelSelector" => selector.labels.extend(Requirement::parse_all(value)),
                "fieldSelector" => selector.fields.extend(Requirement::parse_all(value)),
                _ => {}
            }
        }
        selector
    }

    fn matches(&self, object: &Value) -> bool {
        let meta = object.get("metadata");
        let label = |key: &str| meta?.get("labels")?.get(key)?.as_str().map(str::to_owned);
        let field = |key: &str| {
            let mut node = object;
            for part in key.split('.') {
                node = node.get(part)?;
            }
            match node {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        };
        self.labels.iter().all(|r| r.holds(&label)) && self.fields.iter().all(|r| r.holds(&field))
    }
}

fn status_body(code: StatusCode, message: &str) -> Value {
    let reason = match code {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::CONFLICT => "Conflict",
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
        StatusCode::UNPROCESSABLE_ENTITY => "Invalid",
        _ => "InternalError",
    };
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    })
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)).boxed_unsync());
    *response.status_mut() = code;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

fn failure(code: StatusCode, message: &str) -> Response<Body> {
    json_response(code, &status_body(code, message))
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let content_type =
        parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|v| v.to_owned());
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    shared.lock().requests.push(RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
        body: body.clone(),
    });
    if path == "/version" {
        return json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "37", "gitVersion": "v1.37.0-fake", "platform": "linux/amd64"}),
        );
    }
    let Some(target) = parse_path(&path) else {
        return failure(StatusCode::NOT_FOUND, &format!("the server could not find the requested resource ({path})"));
    };
    let pairs = query_pairs(&query);
    let param = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let result = match (&parts.method, &target.name, target.subresource.as_deref()) {
        (&Method::GET, None, None) if matches!(param("watch").as_deref(), Some("1" | "true")) => {
            return start_watch(&shared, &target, &pairs, &path, &query);
        }
        (&Method::GET, None, None) => list(&shared, &target, &pairs),
        (&Method::GET, Some(name), None | Some("status")) => get(&shared, &target, name),
        (&Method::POST, None, None) => create(&shared, &target, body),
        (&Method::PUT, Some(name), sub @ (None | Some("status"))) => replace(&shared, &target, name, body, sub),
        (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            patch(&shared, &target, name, body, content_type.as_deref(), sub)
        }
        (&Method::DELETE, Some(name), None) => delete(&shared, &target, name),
        _ => Err((StatusCode::METHOD_NOT_ALLOWED, format!("{} {path} is not supported", parts.method))),
    };
    match result {
        Ok((code, value)) => json_response(code, &value),
        Err((code, message)) => failure(code, &message),
    }
}

type Outcome = Result<(StatusCode, Value), Failure>;

fn list(shared: &Shared, target: &Target, pairs: &[(String, String)]) -> Outcome {
    let selector = Selector::from_query(pairs);
    let state = shared.lock();
    let items: Vec<Value> = state
        .collections
        .get(&target.collection)
        .map(|c| {
            c.objects
                .iter()
                .filter(|((ns, _), _)| target.namespace.as_ref().is_none_or(|wanted| wanted == ns))
                .filter(|(_, object)| selector.matches(object))
                .map(|(_, object)| object.clone())
                .collect()
        })
        .unwrap_or_default();
    let kind = format!("{}List", state.kind_of(&target.collection));
    Ok((
        StatusCode::OK,
        json!({
            "apiVersion": target.collection.api_version, "kind": kind,
            "metadata": {"resourceVersion": state.version.to_string()}, "items": items,
        }),
    ))
}

fn object_key(target: &Target, name: &str) -> (String, String) {
    (target.namespace.clone().unwrap_or_default(), name.to_owned())
}

fn not_found(target: &Target, name: &str) -> Failure {
    (StatusCode::NOT_FOUND, format!("{} \"{name}\" not found", target.collection.plural))
}

fn get(shared: &Shared, target: &Target, name: &str) -> Outcome {
    let state = shared.lock();
    let object = state.collections.get(&target.collection).and_then(|c| c.objects.get(&object_key(target, name)));
    object.map(|o| (StatusCode::OK, o.clone())).ok_or_else(|| not_found(target, name))
}

fn body_object(body: Option<Value>) -> Result<Value, Failure> {
    body.filter(Value::is_object).ok_or((StatusCode::BAD_REQUEST, "the body must be a JSON object".to_owned()))
}

fn create(shared: &Shared, target: &Target, body: Option<Value>) -> Outcome {
    let mut value = body_object(body)?;
    let namespace = target.namespace.clone().unwrap_or_default();
    let name = {
        let meta = metadata_mut(&mut value).map_err(|e| (StatusCode::BAD_REQUEST, e.0))?;
        if let Some(ns) = meta.get("namespace").and_then(Value::as_str).filter(|ns| !ns.is_empty())
            && ns != namespace
        {
            let message = format!("the namespace of the object ({ns}) does not match the namespace of the request");
            return Err((StatusCode::BAD_REQUEST, message));
        }
        meta.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_owned)
    };
    let mut state = shared.lock();
    let name = match name {
        Some(name) => name,
        None => {
            let prefix = value.pointer("/metadata/generateName").and_then(Value::as_str).unwrap_or_default();
            if prefix.is_empty() {
                return Err((StatusCode::UNPROCESSABLE_ENTITY, "metadata.name: Required value".to_owned()));
            }
            format!("{prefix}{:05x}", state.version + 1)
        }
    };
    if let Some(kind) = value.get("kind").and_then(Value::as_str) {
        let collection = state.collections.entry(target.collection.clone()).or_default();
        collection.kind.get_or_insert_with(|| kind.to_owned());
    }
    let exists = state
        .collections
        .get(&target.collection)
        .is_some_and(|c| c.objects.contains_key(&(namespace.clone(), name.clone())));
    if exists {
        return Err((StatusCode::CONFLICT, format!("{} \"{name}\" already exists", target.collection.plural)));
    }
    let stored = state.upsert(&target.collection, &namespace, &name, value, Write::Replace)?;
    let version = state.version;
    drop(state);
    shared.changed.send_replace(version);
    Ok((StatusCode::CREATED, stored))
}

fn replace(shared: &Shared, target: &Target, name: &str, body: Option<Value>, sub: Option<&str>) -> Outcome {
    let value = body_object(body)?;
    let key = object_key(target, name);
    let mut state = shared.lock();
    let current = state.collections.get(&target.collection).and_then(|c| c.objects.get(&key)).cloned();
    let Some(current) = current else { return Err(not_found(target, name)) };
    let sent = value.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|v| !v.is_empty());
    let stored = current.pointer("/metadata/resourceVersion").and_then(Value::as_str);
    if let Some(sent) = sent
        && Some(sent) != stored
    {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            target.collection.plural
        );
        return Err((StatusCode::CONFLICT, message));
    }
    let write = if sub == Some("status") { Write::Status } else { Write::Replace };
    let stored = state.upsert(&target.collection, &key.0, name, value, write)?;
    let version = state.version;
    drop(state);
    shared.changed.send_replace(version);
    Ok((StatusCode::OK, stored))
}

fn patch(
    shared: &Shared,
    target: &Target,
    name: &str,
    body: Option<Value>,
    content_type: Option<&str>,
    sub: Option<&str>,
) -> Outcome {
    let merge = matches!(
        content_type.map(|c| c.split(';').next().unwrap_or_default().trim()),
        Some(
            "application/merge-patch+json" | "application/strategic-merge-patch+json" | "application/apply-patch+yaml"
        )
    );
    if !merge {
        let message =
            format!("patch type {} is not supported by the fake API server", content_type.unwrap_or("(none)"));
        return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, message));
    }
    let patch = body.ok_or((StatusCode::BAD_REQUEST, "the patch must be JSON".to_owned()))?;
    let key = object_key(target, name);
    let mut state = shared.lock();
    let current = state.collections.get(&target.collection).and_then(|c| c.objects.get(&key)).cloned();
    let Some(mut value) = current else { return Err(not_found(target, name)) };
    let write = if sub == Some("status") { Write::Status } else { Write::Replace };
    merge_patch(&mut value, &patch);
    let stored = state.upsert(&target.collection, &key.0, name, value, write)?;
    let version = state.version;
    drop(state);
    shared.changed.send_replace(version);
    Ok((StatusCode::OK, stored))
}

/// RFC 7386.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(object) = target {
        for (key, value) in patch {
            if value.is_null() {
                object.remove(key);
            } else {
                merge_patch(object.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn delete(shared: &Shared, target: &Target, name: &str) -> Outcome {
    let key = object_key(target, name);
    let mut state = shared.lock();
    let removed = state.remove(&target.collection, &key.0, name).ok_or_else(|| not_found(target, name))?;
    let version = state.version;
    drop(state);
    shared.changed.send_replace(version);
    Ok((StatusCode::OK, removed))
}

/// What one watch sends: changes to its collection, in its namespace, matching its selector.
struct WatchFilter {
    collection: CollectionKey,
    namespace: Option<String>,
    selector: Selector,
}

impl WatchFilter {
    fn event(&self, change: &Change) -> Option<Value> {
        if change.collection != self.collection || self.namespace.as_ref().is_some_and(|ns| *ns != change.namespace) {
            return None;
        }
        let now = self.selector.matches(&change.object);
        let before = change.previous.as_ref().is_some_and(|p| self.selector.matches(p));
        let kind = match change.change {
            ChangeType::Modified if now && !before => ChangeType::Added,
            ChangeType::Modified if !now && before => ChangeType::Deleted,
            _ if !now => return None,
            other => other,
        };
        Some(json!({"type": kind.as_str(), "object": change.object}))
    }
}

fn start_watch(
    shared: &Arc<Shared>,
    target: &Target,
    pairs: &[(String, String)],
    path: &str,
    query: &str,
) -> Response<Body> {
    let param = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let filter = WatchFilter {
        collection: target.collection.clone(),
        namespace: target.namespace.clone(),
        selector: Selector::from_query(pairs),
    };
    let from = param("resourceVersion").filter(|v| !v.is_empty() && v != "0");
    let from = match from.map(|v| v.parse::<u64>()) {
        Some(Ok(version)) => Some(version),
        Some(Err(_)) => return failure(StatusCode::BAD_REQUEST, "resourceVersion must be a number"),
        None => None,
    };
    let timeout = param("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).map(Duration::from_secs);
    let (sender, receiver) = mpsc::channel::<Bytes>(64);
    let (initial, cursor, id) = {
        let mut state = shared.lock();
        let initial: Vec<Value> = match from {
            Some(_) => Vec::new(),
            None => state
                .collections
                .get(&filter.collection)
                .map(|c| {
                    c.objects
                        .iter()
                        .filter(|((ns, _), _)| filter.namespace.as_ref().is_none_or(|wanted| wanted == ns))
                        .filter(|(_, object)| filter.selector.matches(object))
                        .map(|(_, object)| json!({"type": "ADDED", "object": object}))
                        .collect()
                })
                .unwrap_or_default(),
        };
        state.next_watch += 1;
        let id = state.next_watch;
        let shown = if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") };
        state.open_watches.push((id, shown));
        (initial, from.unwrap_or(state.version), id)
    };
    let watching = Arc::clone(shared);
    tokio::spawn(async move {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        stream_changes(&watching, &filter, initial, cursor, deadline, &sender).await;
        watching.lock().open_watches.retain(|(open, _)| *open != id);
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), receiver))
    });
    let mut response = Response::new(StreamBody::new(stream.boxed()).boxed_unsync());
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

fn line(event: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(event).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

async fn stream_changes(
    shared: &Shared,
    filter: &WatchFilter,
    initial: Vec<Value>,
    mut cursor: u64,
    deadline: Option<tokio::time::Instant>,
    sender: &mpsc::Sender<Bytes>,
) {
    let mut changed = shared.changed.subscribe();
    let mut epoch = shared.epoch.subscribe();
    epoch.mark_unchanged();
    for event in &initial {
        if sender.send(line(event)).await.is_err() {
            return;
        }
    }
    loop {
        changed.mark_unchanged();
        let events: Vec<Value> = {
            let state = shared.lock();
            let start = state.log.partition_point(|c| c.version <= cursor);
            let pending = state.log.get(start..).unwrap_or_default();
            cursor = pending.last().map_or(cursor, |c| c.version);
            pending.iter().filter_map(|change| filter.event(change)).collect()
        };
        for event in &events {
            if sender.send(line(event)).await.is_err() {
                return;
            }
        }
        let expired = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = changed.changed() => if result.is_err() { return },
            _ = epoch.changed() => return,
            () = expired => return,
            () = sender.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_collections_namespaces_objects_and_subresources() {
        let target = parse_path("/apis/networking.k8s.io/v1/namespaces/web/ingresses/app/status").unwrap();
        assert_eq!(target.collection.api_version, "networking.k8s.io/v1");
        assert_eq!(target.collection.plural, "ingresses");
        assert_eq!(target.namespace.as_deref(), Some("web"));
        assert_eq!(target.name.as_deref(), Some("app"));
        assert_eq!(target.subresource.as_deref(), Some("status"));
        let all = parse_path("/api/v1/services").unwrap();
        assert_eq!((all.collection.api_version.as_str(), all.namespace), ("v1", None));
        let namespace_object = parse_path("/api/v1/namespaces/web").unwrap();
        assert_eq!(namespace_object.collection.plural, "namespaces");
        assert_eq!(namespace_object.name.as_deref(), Some("web"));
        assert!(parse_path("/healthz").is_none());
    }

    #[test]
    fn selectors_match_labels_and_fields() {
        let object = json!({"metadata": {"name": "a", "namespace": "web", "labels": {"app": "x"}}});
        let select = |label: &str, field: &str| {
            Selector::from_query(&[
                ("labelSelector".to_owned(), label.to_owned()),
                ("fieldSelector".to_owned(), field.to_owned()),
            ])
            .matches(&object)
        };
        assert!(select("app=x", "metadata.name=a"));
        assert!(select("app", "metadata.namespace==web"));
        assert!(!select("app!=x", ""));
        assert!(!select("", "metadata.name=b"));
        assert!(select("!other", "metadata.name!=b"));
    }

    #[test]
    fn merge_patches_replace_merge_and_remove() {
        let mut value = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge_patch(&mut value, &json!({"a": {"b": null, "e": 3}, "d": [2]}));
        assert_eq!(value, json!({"a": {"c": 2, "e": 3}, "d": [2]}));
    }

    #[test]
    fn queries_are_percent_decoded() {
        assert_eq!(
            query_pairs("fieldSelector=metadata.name%3Dproxy&watch=true"),
            vec![
                ("fieldSelector".to_owned(), "metadata.name=proxy".to_owned()),
                ("watch".to_owned(), "true".to_owned())
            ]
        );
    }
}
