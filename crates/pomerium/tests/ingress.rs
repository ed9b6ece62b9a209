//! Kubernetes to a served route, end to end: Ingress objects on a fake API server
//! (`fake-kube-api`, serving list and watch on loopback), the ingress controller running against
//! it, writing its configuration record to the databroker of a running all-in-one `pomerium`,
//! which serves the routes. No restart anywhere.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use fake_kube_api::FakeApi;
use ingress::controller::{Controller, Settings, connect_databroker};
use k8s_openapi::api::core::v1::{Endpoints, Event, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::{Value, json};
use std::time::Instant;
use support::*;

fn object<K: for<'de> k8s_openapi::serde::Deserialize<'de>>(value: Value) -> K {
    serde_json::from_value(value).unwrap()
}

/// An Ingress of class `pomerium`: `Prefix /` on `{name}.test.localhost` to Service `name:80`.
fn ingress(name: &str, annotations: Value) -> Ingress {
    object(json!({
        "metadata": {"name": name, "namespace": "web", "annotations": annotations},
        "spec": {
            "ingressClassName": "pomerium",
            "rules": [{"host": format!("{name}.test.localhost"), "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": name, "port": {"number": 80}}}}
            ]}}]
        }
    }))
}

/// A Service `name:80` whose one ready endpoint is `upstream`'s loopback port.
fn service_for(api: &FakeApi, name: &str, upstream: &Upstream) {
    let port: u16 = upstream.http().rsplit(':').next().unwrap().parse().unwrap();
    api.apply::<Service>(&object(json!({
        "metadata": {"name": name, "namespace": "web"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]}
    })))
    .unwrap();
    api.apply::<Endpoints>(&object(json!({
        "metadata": {"name": name, "namespace": "web"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": port}]}]
    })))
    .unwrap();
}

fn public() -> Value {
    json!({"ingress.pomerium.io/allow_public_unauthenticated_access": "true"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_becomes_a_served_route_and_its_removal_removes_it() {
    let setup = Setup::new();
    let mut server = setup.start("grpc_address: 127.0.0.1:0\ngrpc_insecure: true\n").await;
    let grpc = server.listener("serving gRPC").await;

    let api = FakeApi::start().await.unwrap();
    api.apply::<IngressClass>(&object(json!({
        "metadata": {"name": "pomerium"},
        "spec": {"controller": "pomerium.io/ingress-controller"}
    })))
    .unwrap();
    let settings = Settings::new(&format!("http://{grpc}"), &SHARED_KEY);
    let controller = Controller::new(settings.clone(), api.client().unwrap(), connect_databroker(&settings).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(controller.run(async {
        let _ = stopped.await;
    }));

    let (a, b) = (echo_upstream("a", None).await, echo_upstream("b", None).await);
    service_for(&api, "app", &a);
    service_for(&api, "other", &b);
    let (app, other) = (server.host("app"), server.host("other"));

    let applied = Instant::now();
    api.apply(&ingress("app", public())).unwrap();
    let reply = eventually("the Ingress served as a route", || async {
        let reply = server.get(&app, "/").await;
        (reply.status == 200).then_some(reply)
    })
    .await;
    eprintln!("Ingress applied to route served: {:?}", applied.elapsed());
    assert_eq!(reply.seen().upstream(), "a");

    // A second Ingress with a bad policy annotation: a Warning event saying what is wrong, and
    // the first Ingress's route untouched.
    api.apply(&ingress(
        "other",
        json!({"ingress.pomerium.io/policy": "allow:\n  and:\n    - emial:\n        is: x@example.com\n"}),
    ))
    .unwrap();
    let warning = eventually("a Warning event on the bad Ingress", || async {
        api.list::<Event>(Some("web")).into_iter().find(|event| {
            event.involved_object.name.as_deref() == Some("other") && event.type_.as_deref() == Some("Warning")
        })
    })
    .await;
    assert_eq!(warning.reason.as_deref(), Some("UpdateError"));
    let message = warning.message.unwrap_or_default();
    assert!(message.contains("ingress.pomerium.io/policy") && message.contains("emial"), "{message}");
    assert_eq!(server.get(&app, "/").await.seen().upstream(), "a");
    assert_eq!(server.get(&other, "/").await.status, 404, "the bad Ingress has no route");

    // Fixed, it is served too; then the first one is removed and its route with it.
    api.apply(&ingress("other", public())).unwrap();
    eventually("the fixed Ingress served", || async { (server.get(&other, "/").await.status == 200).then_some(()) })
        .await;
    assert_eq!(server.get(&other, "/").await.seen().upstream(), "b");
    let deleted = Instant::now();
    assert!(api.delete::<Ingress>("web", "app"));
    eventually("the deleted Ingress's route gone", || async {
        (server.get(&app, "/").await.status == 404).then_some(())
    })
    .await;
    eprintln!("Ingress deleted to route gone: {:?}", deleted.elapsed());
    assert_eq!(server.get(&other, "/").await.seen().upstream(), "b");

    stop.send(()).unwrap();
    controller.await.unwrap().unwrap();
    server.assert_running();
}
