//! The controller against a mocked API server (tower-test): every call it makes, in order, with
//! its body: the Events (`Normal Updated`, `Warning UpdateError` naming the bad annotation), the
//! status patch; and nothing more when nothing changed. The databroker is the in-process memory
//! storage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use bytes::Bytes;
use databroker::client::Broker;
use databroker::storage::{AnyStorage, MemoryStorage};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use ingress::ObjectKey;
use ingress::controller::{Controller, IngressOutcome, Metrics, Reconciler, Settings, Snapshot};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tower_test::mock::{Handle, SendResponse};

type MockBody = UnsyncBoxBody<Bytes, Infallible>;
type MockHandle = Handle<Request<kube::client::Body>, Response<MockBody>>;

fn mock_client() -> (kube::Client, MockHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<kube::client::Body>, Response<MockBody>>();
    (kube::Client::new(service, "default"), handle)
}

fn local_broker() -> (Broker, Arc<AnyStorage>) {
    let storage = Arc::new(AnyStorage::Memory(MemoryStorage::new()));
    (Broker::Local(Arc::clone(&storage)), storage)
}

fn body(bytes: Vec<u8>) -> MockBody {
    http_body_util::Full::new(Bytes::from(bytes)).boxed_unsync()
}

fn respond(send: SendResponse<Response<MockBody>>, status: StatusCode, value: &Value) {
    let mut response = Response::new(body(serde_json::to_vec(value).unwrap()));
    *response.status_mut() = status;
    send.send_response(response);
}

/// One request the controller made: method, path and query, content type, JSON body.
#[derive(Debug)]
struct Call {
    method: Method,
    uri: String,
    content_type: Option<String>,
    body: Value,
}

async fn next_call(handle: &mut MockHandle) -> (Call, SendResponse<Response<MockBody>>) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("the controller made no further call")
        .expect("the client was dropped");
    let content_type = request.headers().get(http::header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
    let (method, uri) = (request.method().clone(), request.uri().to_string());
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (Call { method, uri, content_type, body }, send)
}

/// Expects an Event on `ingress` and answers it as the API server would.
async fn expect_event(handle: &mut MockHandle, ingress: &str, kind: &str, reason: &str) -> String {
    let (call, send) = next_call(handle).await;
    assert_eq!((call.method.as_str(), call.uri.as_str()), ("POST", "/api/v1/namespaces/web/events?"), "{call:?}");
    let event = &call.body;
    assert_eq!(event["apiVersion"], "v1");
    assert_eq!(event["kind"], "Event");
    assert_eq!(event["metadata"]["namespace"], "web");
    assert!(event["metadata"]["name"].as_str().unwrap().starts_with(&format!("{ingress}.")), "{event}");
    assert_eq!(
        event["involvedObject"],
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": ingress, "namespace": "web",
            "uid": format!("uid-{ingress}"), "resourceVersion": "7",
        })
    );
    assert_eq!((event["type"].as_str(), event["reason"].as_str()), (Some(kind), Some(reason)), "{event}");
    assert_eq!(event["source"], json!({"component": "pomerium-ingress"}));
    assert_eq!(event["reportingComponent"], "pomerium-ingress");
    assert_eq!(event["count"], 1);
    assert!(event["firstTimestamp"].is_string() && event["lastTimestamp"].is_string(), "{event}");
    respond(send, StatusCode::CREATED, event);
    event["message"].as_str().unwrap().to_owned()
}

fn with_identity(mut ingress: k8s_openapi::api::networking::v1::Ingress) -> k8s_openapi::api::networking::v1::Ingress {
    let name = ingress.metadata.name.clone().unwrap();
    ingress.metadata.uid = Some(format!("uid-{name}"));
    ingress.metadata.resource_version = Some("7".to_owned());
    ingress
}

const BAD_POLICY: &str = "allow:\n  or:\n    - emial: alice@example.com\n";

fn snapshot() -> Snapshot {
    let good = ingress(
        "web",
        "good",
        "good.example.com",
        "app",
        json!({"ingress.pomerium.io/allow_any_authenticated_user": "true"}),
    );
    let bad = ingress("web", "bad", "bad.example.com", "app", json!({"ingress.pomerium.io/policy": BAD_POLICY}));
    Snapshot {
        ingresses: vec![with_identity(good), with_identity(bad)],
        classes: vec![class("pomerium", OURS, false)],
        services: vec![service("web", "app")],
        status_service: Some(proxy_service("pomerium", "proxy", "203.0.113.7")),
        ..Snapshot::default()
    }
}

fn reconciler(client: kube::Client, broker: Broker) -> Reconciler {
    let settings = Settings::new("http://unused", SECRET);
    let status = Some(ObjectKey::new("pomerium", "proxy"));
    Reconciler::new(client, broker, settings.options(), status, Arc::new(Metrics::default()))
}

#[tokio::test]
async fn a_reconcile_writes_the_record_then_posts_each_event_and_status_patch_once() {
    let (client, mut handle) = mock_client();
    let (broker, storage) = local_broker();
    let mut reconciler = reconciler(client, broker.clone());
    let snapshot = snapshot();

    let api = tokio::spawn(async move {
        // Namespace/name order: `web/bad` first. It failed: a warning, and no status.
        let warning = expect_event(&mut handle, "bad", "Warning", "UpdateError").await;
        // Then `web/good`: written, so `Normal Updated`, then its status from the proxy service.
        let updated = expect_event(&mut handle, "good", "Normal", "Updated").await;
        let (call, send) = next_call(&mut handle).await;
        assert_eq!(call.method, Method::PATCH);
        assert_eq!(call.uri, "/apis/networking.k8s.io/v1/namespaces/web/ingresses/good/status?");
        assert_eq!(call.content_type.as_deref(), Some("application/merge-patch+json"));
        assert_eq!(call.body, json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}));
        let mut patched = serde_json::to_value(snapshot_ingress("good")).unwrap();
        patched["status"] = call.body["status"].clone();
        respond(send, StatusCode::OK, &patched);
        (warning, updated, handle)
    });
    let report = reconcile(&mut reconciler, &snapshot).await;
    let (warning, updated, handle) = api.await.unwrap();

    assert_eq!(updated, "updated pomerium configuration");
    // The annotation, what is wrong in its value, and the fix.
    assert_eq!(
        warning,
        "ingress `web/bad`: annotation `ingress.pomerium.io/policy`: unknown criterion `emial` (help: did you mean `email`?)"
    );
    assert!(report.written);
    assert_eq!(
        report.events,
        [(ObjectKey::new("web", "bad"), "UpdateError"), (ObjectKey::new("web", "good"), "Updated")]
    );
    assert_eq!(report.statuses, [ObjectKey::new("web", "good")]);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(matches!(report.ingresses[&ObjectKey::new("web", "bad")], IngressOutcome::Failed { kept: 0, .. }));

    // The record: the good ingress's route only.
    let record =
        Broker::Local(storage).get(databroker::record::CONFIG_TYPE, "ingress-controller").await.unwrap().unwrap();
    assert_eq!(record.data["name"], "ingress-controller");
    assert_eq!(summary(record.data["routes"].as_array().unwrap()), ["https://good.example.com /"]);
    assert_eq!(record.data["certificates"], json!([]));

    // The same objects again, with the status the patch set: no call at all, no write.
    let mut again = snapshot.clone();
    let good = again.ingresses.iter_mut().find(|i| i.metadata.name.as_deref() == Some("good")).unwrap();
    good.status = Some(object(json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}})));
    let unexpected = refuse_every_call(handle);
    let report = reconcile(&mut reconciler, &again).await;
    assert!(!report.written && report.events.is_empty() && report.statuses.is_empty(), "{report:?}");
    drop(reconciler);
    assert_eq!(unexpected.await.unwrap(), Vec::<String>::new(), "a second reconcile of the same objects made calls");
}

/// Answers every call with an error, and returns them once the client is dropped: for a
/// reconcile that should make none (and must not hang waiting for an answer if it does).
fn refuse_every_call(mut handle: MockHandle) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut calls = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            calls.push(format!("{} {}", request.method(), request.uri()));
            respond(send, StatusCode::INTERNAL_SERVER_ERROR, &json!({"kind": "Status", "code": 500}));
        }
        calls
    })
}

async fn reconcile(reconciler: &mut Reconciler, snapshot: &Snapshot) -> ingress::controller::Report {
    tokio::time::timeout(Duration::from_secs(10), reconciler.reconcile(snapshot))
        .await
        .expect("the reconcile hung")
        .unwrap()
}

fn snapshot_ingress(name: &str) -> k8s_openapi::api::networking::v1::Ingress {
    snapshot().ingresses.into_iter().find(|i| i.metadata.name.as_deref() == Some(name)).unwrap()
}

#[tokio::test]
async fn an_event_is_posted_when_the_outcome_changes_and_again_after_the_api_refused_it() {
    let (client, mut handle) = mock_client();
    let (broker, _) = local_broker();
    let mut reconciler = reconciler(client, broker);
    let mut snapshot = snapshot();
    snapshot.status_service = None;
    snapshot.ingresses.retain(|i| i.metadata.name.as_deref() == Some("bad"));

    // The API server refuses the first warning: the failure is reported, not remembered.
    let api = tokio::spawn(async move {
        let (call, send) = next_call(&mut handle).await;
        assert_eq!(call.body["reason"], "UpdateError");
        respond(
            send,
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd is sad", "reason": "InternalError", "code": 500
            }),
        );
        handle
    });
    let report = reconcile(&mut reconciler, &snapshot).await;
    let mut handle = api.await.unwrap();
    assert!(report.events.is_empty());
    assert_eq!(report.failures.len(), 1);
    let failure = report.failures[0].to_string();
    assert!(failure.starts_with("posting a `UpdateError` event on ingress `web/bad`: "), "{failure}");

    // Next reconcile: posted again, and accepted.
    let api = tokio::spawn(async move {
        let message = expect_event(&mut handle, "bad", "Warning", "UpdateError").await;
        (message, handle)
    });
    let report = reconcile(&mut reconciler, &snapshot).await;
    let (first_message, mut handle) = api.await.unwrap();
    assert_eq!(report.events.len(), 1);

    // A different error: a new warning. Then fixed: `Normal Updated`.
    let other = ingress("web", "bad", "bad.example.com", "app", json!({"ingress.pomerium.io/no_such_option": "1"}));
    snapshot.ingresses = vec![with_identity(other)];
    let api = tokio::spawn(async move {
        let message = expect_event(&mut handle, "bad", "Warning", "UpdateError").await;
        (message, handle)
    });
    reconcile(&mut reconciler, &snapshot).await;
    let (second_message, mut handle) = api.await.unwrap();
    assert_ne!(first_message, second_message);
    assert!(second_message.contains("unknown annotation `ingress.pomerium.io/no_such_option`"), "{second_message}");

    snapshot.ingresses = vec![with_identity(ingress("web", "bad", "bad.example.com", "app", json!({})))];
    let api = tokio::spawn(async move {
        let message = expect_event(&mut handle, "bad", "Normal", "Updated").await;
        (message, handle)
    });
    let report = reconcile(&mut reconciler, &snapshot).await;
    let (_, handle) = api.await.unwrap();
    assert!(report.written);
    // Nothing changed since: no call.
    let unexpected = refuse_every_call(handle);
    reconcile(&mut reconciler, &snapshot).await;
    drop(reconciler);
    assert_eq!(unexpected.await.unwrap(), Vec::<String>::new());
}

/// A never-ending response body: an idle watch.
fn idle_watch() -> MockBody {
    let stream = futures::stream::pending::<Result<hyper::body::Frame<Bytes>, Infallible>>();
    http_body_util::StreamBody::new(stream).boxed_unsync()
}

#[tokio::test]
async fn the_controller_lists_and_watches_each_kind_in_its_namespaces_then_reports() {
    let (client, mut handle) = mock_client();
    let (broker, storage) = local_broker();
    let mut settings = Settings::new("http://unused", SECRET);
    settings.namespaces = vec!["web".to_owned()];
    settings.status_service = Some(ObjectKey::new("pomerium", "proxy"));
    let controller = Controller::new(settings, client, broker);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller.run(async {
        let _ = stopped.await;
    }));

    let good = with_identity(ingress("web", "good", "good.example.com", "app", json!({})));
    let list = |kind: &str, items: Value| json!({"apiVersion": "v1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": "10"}, "items": items});
    let mut lists = Vec::new();
    let mut watches = Vec::new();
    let mut writes = Vec::new();
    // Six lists, six watches, then the event and the status patch (in that order).
    while writes.len() < 2 || watches.len() < 6 {
        let (call, send) = next_call(&mut handle).await;
        let (path, query) = call.uri.split_once('?').unwrap_or((call.uri.as_str(), ""));
        let watch = query.split('&').any(|p| p == "watch=true");
        match (call.method.as_str(), path) {
            ("GET", _) if watch => {
                assert!(
                    query.split('&').any(|p| p == "resourceVersion=10"),
                    "a watch from the list's version: {query}"
                );
                watches.push(path.to_owned());
                send.send_response(Response::new(idle_watch()));
            }
            ("GET", "/apis/networking.k8s.io/v1/namespaces/web/ingresses") => {
                lists.push(path.to_owned());
                respond(send, StatusCode::OK, &list("Ingress", json!([good])));
            }
            ("GET", "/apis/networking.k8s.io/v1/ingressclasses") => {
                lists.push(path.to_owned());
                respond(send, StatusCode::OK, &list("IngressClass", json!([class("pomerium", OURS, false)])));
            }
            ("GET", "/api/v1/namespaces/web/services") => {
                lists.push(path.to_owned());
                respond(send, StatusCode::OK, &list("Service", json!([service("web", "app")])));
            }
            ("GET", "/api/v1/namespaces/pomerium/services") => {
                assert!(query.contains("fieldSelector=metadata.name%3Dproxy"), "{query}");
                lists.push(format!("{path}?fieldSelector=metadata.name=proxy"));
                respond(
                    send,
                    StatusCode::OK,
                    &list("Service", json!([proxy_service("pomerium", "proxy", "203.0.113.7")])),
                );
            }
            ("GET", "/api/v1/namespaces/web/endpoints" | "/api/v1/namespaces/web/secrets") => {
                lists.push(path.to_owned());
                respond(send, StatusCode::OK, &list("Object", json!([])));
            }
            ("POST", "/api/v1/namespaces/web/events") => {
                assert_eq!(
                    (call.body["reason"].as_str(), call.body["involvedObject"]["name"].as_str()),
                    (Some("Updated"), Some("good"))
                );
                writes.push(format!("POST {path}"));
                respond(send, StatusCode::CREATED, &call.body);
            }
            ("PATCH", "/apis/networking.k8s.io/v1/namespaces/web/ingresses/good/status") => {
                assert_eq!(call.body, json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}));
                writes.push(format!("PATCH {path}"));
                respond(send, StatusCode::OK, &serde_json::to_value(&good).unwrap());
            }
            other => panic!("unexpected call {other:?}: {call:?}"),
        }
    }
    lists.sort();
    assert_eq!(
        lists,
        [
            "/api/v1/namespaces/pomerium/services?fieldSelector=metadata.name=proxy",
            "/api/v1/namespaces/web/endpoints",
            "/api/v1/namespaces/web/secrets",
            "/api/v1/namespaces/web/services",
            "/apis/networking.k8s.io/v1/ingressclasses",
            "/apis/networking.k8s.io/v1/namespaces/web/ingresses",
        ]
    );
    assert_eq!(
        writes,
        ["POST /api/v1/namespaces/web/events", "PATCH /apis/networking.k8s.io/v1/namespaces/web/ingresses/good/status"]
    );
    // Every list was followed by its watch.
    let mut watched = watches.clone();
    watched.sort();
    assert_eq!(watched, lists.iter().map(|l| l.split('?').next().unwrap().to_owned()).collect::<Vec<_>>());
    let record =
        Broker::Local(storage).get(databroker::record::CONFIG_TYPE, "ingress-controller").await.unwrap().unwrap();
    assert_eq!(summary(record.data["routes"].as_array().unwrap()), ["https://good.example.com /"]);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running).await.unwrap().unwrap().unwrap();
}
