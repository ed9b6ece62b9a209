//! The fake API server through `kube`'s own client: what a controller relies on (lists with a
//! resource version, watches from a version or from scratch, namespaces and selectors, creates,
//! status patches, conflicts, deletes) and what a test reads back (recorded requests, objects).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

use fake_kube_api::FakeApi;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Event, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use std::time::Duration;

fn service(namespace: &str, name: &str, labels: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": {"ports": [{"port": 80}]}}))
        .unwrap()
}

fn name_of(event: &WatchEvent<Service>) -> String {
    match event {
        WatchEvent::Added(s) | WatchEvent::Modified(s) | WatchEvent::Deleted(s) => {
            format!("{} {}", event_kind(event), s.metadata.name.clone().unwrap())
        }
        other => format!("{other:?}"),
    }
}

fn event_kind(event: &WatchEvent<Service>) -> &'static str {
    match event {
        WatchEvent::Added(_) => "ADDED",
        WatchEvent::Modified(_) => "MODIFIED",
        WatchEvent::Deleted(_) => "DELETED",
        WatchEvent::Bookmark(_) => "BOOKMARK",
        WatchEvent::Error(_) => "ERROR",
    }
}

async fn next<S: futures::Stream<Item = kube::Result<WatchEvent<Service>>> + Unpin>(stream: &mut S) -> String {
    let event = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("no watch event").unwrap();
    name_of(&event.unwrap())
}

#[tokio::test]
async fn lists_carry_the_resource_version_and_filter_by_namespace_and_selector() {
    let api = FakeApi::start().await.unwrap();
    api.apply(&service("web", "a", json!({"app": "x"}))).unwrap();
    api.apply(&service("web", "b", json!({"app": "y"}))).unwrap();
    api.apply(&service("other", "c", json!({}))).unwrap();
    let client = api.client().unwrap();

    let all = Api::<Service>::all(client.clone()).list(&ListParams::default()).await.unwrap();
    assert_eq!(all.metadata.resource_version.as_deref(), Some("3"));
    let names: Vec<_> = all.items.iter().map(|s| s.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["c", "a", "b"], "ordered by namespace, then name");

    let web = Api::<Service>::namespaced(client.clone(), "web");
    assert_eq!(web.list(&ListParams::default()).await.unwrap().items.len(), 2);
    let labelled = web.list(&ListParams::default().labels("app=y")).await.unwrap();
    assert_eq!(labelled.items[0].metadata.name.as_deref(), Some("b"));
    let named =
        Api::<Service>::all(client.clone()).list(&ListParams::default().fields("metadata.name=c")).await.unwrap();
    assert_eq!(named.items.len(), 1);
    // An empty collection of a known kind lists as that kind.
    let classes = Api::<IngressClass>::all(client).list(&ListParams::default()).await.unwrap();
    assert!(classes.items.is_empty());

    let stored = api.get::<Service>("web", "a").unwrap();
    assert_eq!(stored.metadata.resource_version.as_deref(), Some("1"));
    assert!(stored.metadata.uid.is_some() && stored.metadata.creation_timestamp.is_some());
}

#[tokio::test]
async fn watches_stream_changes_from_a_version_or_everything_from_scratch() {
    let api = FakeApi::start().await.unwrap();
    api.apply(&service("web", "a", json!({}))).unwrap();
    let web = Api::<Service>::namespaced(api.client().unwrap(), "web");

    // From scratch: the current objects as ADDED, then changes.
    let mut fresh = web.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    assert_eq!(next(&mut fresh).await, "ADDED a");
    // From version 1: only what came after.
    let mut resumed = web.watch(&WatchParams::default(), "1").await.unwrap().boxed();
    api.apply(&service("other", "elsewhere", json!({}))).unwrap();
    api.apply(&service("web", "b", json!({}))).unwrap();
    api.apply(&service("web", "a", json!({"changed": "yes"}))).unwrap();
    assert!(api.delete::<Service>("web", "b"));
    for stream in [&mut fresh, &mut resumed] {
        assert_eq!(next(stream).await, "ADDED b");
        assert_eq!(next(stream).await, "MODIFIED a");
        assert_eq!(next(stream).await, "DELETED b");
    }
    // An object leaving a label selector is deleted for that watch.
    let mut labelled = web.watch(&WatchParams::default().labels("changed=yes"), "0").await.unwrap().boxed();
    assert_eq!(next(&mut labelled).await, "ADDED a");
    api.apply(&service("web", "a", json!({}))).unwrap();
    assert_eq!(next(&mut labelled).await, "DELETED a");

    assert_eq!(api.open_watches().len(), 3);
    api.close_watches();
    // The stream ends after what was sent before (the last change of `a`).
    let ended = tokio::time::timeout(Duration::from_secs(5), fresh.try_collect::<Vec<_>>()).await.unwrap().unwrap();
    assert_eq!(ended.iter().map(name_of).collect::<Vec<_>>(), ["MODIFIED a"]);
    let watches = api.requests().into_iter().filter(|r| r.is_watch()).count();
    assert_eq!(watches, 3);
}

#[tokio::test]
async fn writes_are_recorded_and_applied() {
    let api = FakeApi::start().await.unwrap();
    let ingress: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "app", "namespace": "web"},
        "spec": {"rules": [{"host": "app.example.com"}]}
    }))
    .unwrap();
    api.apply(&ingress).unwrap();
    let client = api.client().unwrap();

    // A status patch changes only the status.
    let ingresses = Api::<Ingress>::namespaced(client.clone(), "web");
    let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}, "spec": {"rules": []}});
    let patched = ingresses.patch_status("app", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    assert_eq!(patched.spec.as_ref().unwrap().rules.as_ref().unwrap().len(), 1);
    let stored = api.get::<Ingress>("web", "app").unwrap();
    let status = serde_json::to_value(stored.status.unwrap()).unwrap();
    assert_eq!(status, json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}));
    let request = api.requests().into_iter().find(|r| r.method == "PATCH").unwrap();
    assert_eq!(request.path, "/apis/networking.k8s.io/v1/namespaces/web/ingresses/app/status");
    assert_eq!(request.content_type.as_deref(), Some("application/merge-patch+json"));
    assert_eq!(request.body, Some(patch));

    // A replace with a stale resource version is a conflict.
    let mut stale = ingress.clone();
    stale.metadata.resource_version = Some("1".to_owned());
    let error = ingresses.replace("app", &PostParams::default(), &stale).await.unwrap_err();
    assert!(matches!(&error, kube::Error::Api(status) if status.code == 409), "{error:?}");

    // Events are created (with a generated name when asked) and read back.
    let events = Api::<Event>::namespaced(client.clone(), "web");
    let event: Event = serde_json::from_value(json!({
        "metadata": {"generateName": "app."},
        "involvedObject": {"kind": "Ingress", "name": "app", "namespace": "web"},
        "reason": "Updated", "message": "updated pomerium configuration", "type": "Normal"
    }))
    .unwrap();
    let created = events.create(&PostParams::default(), &event).await.unwrap();
    assert!(created.metadata.name.unwrap().starts_with("app."));
    let stored: Vec<Event> = api.list(Some("web"));
    assert_eq!(stored[0].reason.as_deref(), Some("Updated"));
    let error = events.create(&PostParams::default(), &stored[0]).await.unwrap_err();
    assert!(matches!(&error, kube::Error::Api(status) if status.code == 409), "{error:?}");

    // Delete, then not found.
    ingresses.delete("app", &DeleteParams::default()).await.unwrap();
    let error = ingresses.get("app").await.unwrap_err();
    assert!(
        matches!(&error, kube::Error::Api(status) if status.code == 404 && status.reason == "NotFound"),
        "{error:?}"
    );
    assert!(api.get::<Ingress>("web", "app").is_none());
}
