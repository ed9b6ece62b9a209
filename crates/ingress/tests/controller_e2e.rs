//! The controller end to end: a fake API server (`fake-kube-api`) serving list and watch on
//! loopback, the controller running in this process against it, and a databroker served over
//! loopback gRPC. Objects are created, changed and deleted through the fake server, and the test
//! polls the `ingress-controller` record, the Events and the Ingress status with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use fake_kube_api::FakeApi;
use ingress::controller::{Controller, ControllerError, Metrics, Settings, connect_databroker};
use k8s_openapi::api::core::v1::{Event, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// How long a change may take to reach the databroker. The issue asks for a second and it takes
/// 50-80 ms here (printed by `crates/pomerium/tests/ingress.rs`); the deadline is wider so that a
/// loaded CI machine is not mistaken for a regression, which a latency deadline must not decide.
const SOON: Duration = Duration::from_secs(5);
/// For what is not about speed: generous, for a loaded machine.
const EVENTUALLY: Duration = Duration::from_secs(10);

struct Harness {
    api: FakeApi,
    databroker: Databroker,
    metrics: Arc<Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ControllerError>>>,
}

impl Harness {
    /// A fake API server holding our IngressClass `pomerium` (and what `prepare` adds), a
    /// databroker, and the controller, started and past its first reconcile.
    async fn start(prepare: impl FnOnce(&FakeApi, &mut Settings)) -> Harness {
        let api = FakeApi::start().await.unwrap();
        api.apply(&class("pomerium", OURS, false)).unwrap();
        let databroker = Databroker::start().await;
        let mut settings = Settings::new(&databroker.url, SECRET);
        prepare(&api, &mut settings);
        let broker = connect_databroker(&settings).unwrap();
        let controller = Controller::new(settings, api.client().unwrap(), broker);
        let metrics = controller.metrics();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(controller.run(async {
            let _ = stopped.await;
        }));
        let harness = Harness { api, databroker, metrics, stop: Some(stop), task: Some(task) };
        let metrics = Arc::clone(&harness.metrics);
        eventually(EVENTUALLY, "the first reconcile", || {
            let ready = metrics.is_ready();
            async move { if ready { Ok(()) } else { Err("not ready".to_owned()) } }
        })
        .await;
        harness
    }

    /// Waits until the routes, summarised, are `expected`.
    async fn routes_become(&self, within: Duration, expected: &[&str]) -> Vec<Value> {
        eventually(within, &format!("routes {expected:?}"), || async {
            let routes = self.databroker.routes().await;
            if summary(&routes) == expected { Ok(routes) } else { Err(format!("{:?}", summary(&routes))) }
        })
        .await
    }

    /// The Events on an Ingress of namespace `web`: `(type, reason, message)`, oldest first.
    fn events(&self, ingress: &str) -> Vec<(String, String, String)> {
        self.api
            .list::<Event>(Some("web"))
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(ingress))
            .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect()
    }

    async fn event_arrives(&self, ingress: &str, reason: &str, count: usize) -> Vec<(String, String, String)> {
        eventually(EVENTUALLY, &format!("{count} `{reason}` events on {ingress}"), || async {
            let events = self.events(ingress);
            let found = events.iter().filter(|(_, r, _)| r == reason).count();
            if found >= count { Ok(events) } else { Err(format!("{events:?}")) }
        })
        .await
    }

    /// Lets the controller settle: several debounce periods with nothing to do.
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
        }
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap().unwrap();
    }
}

#[tokio::test]
async fn an_ingress_becomes_a_route_within_a_second_and_follows_updates_and_deletion() {
    let harness = Harness::start(|_, _| {}).await;
    harness.api.apply(&service("web", "app")).unwrap();
    let created = Instant::now();
    harness.api.apply(&ingress("web", "app", "app.example.com", "app", json!({}))).unwrap();
    let routes = harness.routes_become(SOON, &["https://app.example.com /"]).await;
    eprintln!("created → record: {:?}", created.elapsed());
    assert_eq!(routes[0]["to"], json!(["http://app.web.svc.cluster.local:80"]));
    assert_eq!(routes[0]["id"], r#"{"n":"app","ns":"web","h":"app.example.com","p":"/"}"#);
    let record = harness.databroker.record().await.unwrap();
    assert_eq!(record.data["name"], "ingress-controller");
    harness.event_arrives("app", "Updated", 1).await;

    // An update: a second path and an annotation.
    let mut updated = ingress(
        "web",
        "app",
        "app.example.com",
        "app",
        json!({"ingress.pomerium.io/allow_any_authenticated_user": "true"}),
    );
    let mut paths = updated.spec.as_ref().unwrap().rules.as_ref().unwrap()[0].http.as_ref().unwrap().paths.clone();
    let mut api_path = paths[0].clone();
    api_path.path = Some("/api".to_owned());
    paths.push(api_path);
    updated.spec.as_mut().unwrap().rules.as_mut().unwrap()[0].http.as_mut().unwrap().paths = paths;
    let changed = Instant::now();
    harness.api.apply(&updated).unwrap();
    let routes = harness.routes_become(SOON, &["https://app.example.com /api", "https://app.example.com /"]).await;
    eprintln!("updated → record: {:?}", changed.elapsed());
    assert!(routes.iter().all(|r| r["allow_any_authenticated_user"] == json!(true)), "{routes:?}");
    let events = harness.event_arrives("app", "Updated", 2).await;
    assert!(events.iter().all(|(kind, reason, message)| (kind.as_str(), reason.as_str(), message.as_str())
        == ("Normal", "Updated", "updated pomerium configuration")));

    // Deleted: its routes go.
    let deleted = Instant::now();
    assert!(harness.api.delete::<Ingress>("web", "app"));
    harness.routes_become(SOON, &[]).await;
    eprintln!("deleted → record: {:?}", deleted.elapsed());
    assert!(harness.databroker.record().await.is_some(), "the record stays, with no routes");
    harness.settle().await;
    assert_eq!(harness.events("app").len(), 2, "no event for a deleted ingress");
    harness.stop().await;
}

#[tokio::test]
async fn a_bad_annotation_is_a_warning_event_and_other_routes_are_untouched() {
    let harness = Harness::start(|_, _| {}).await;
    harness.api.apply(&service("web", "app")).unwrap();
    harness.api.apply(&ingress("web", "good", "good.example.com", "app", json!({}))).unwrap();
    let good_routes = harness.routes_become(SOON, &["https://good.example.com /"]).await;

    let bad_policy = "allow:\n  and:\n    - emial: alice@example.com\n";
    harness
        .api
        .apply(&ingress("web", "bad", "bad.example.com", "app", json!({"ingress.pomerium.io/policy": bad_policy})))
        .unwrap();
    let events = harness.event_arrives("bad", "UpdateError", 1).await;
    assert_eq!(
        events,
        [(
            "Warning".to_owned(),
            "UpdateError".to_owned(),
            "ingress `web/bad`: annotation `ingress.pomerium.io/policy`: unknown criterion `emial` (help: did you mean `email`?)"
                .to_owned()
        )]
    );
    assert_eq!(harness.databroker.routes().await, good_routes, "the good ingress's routes are untouched");

    // Now the good one breaks: its last good routes stay, and it gets a warning saying so.
    let broken =
        ingress("web", "good", "good.example.com", "app", json!({"ingress.pomerium.io/allowed_userz": "[bob]"}));
    harness.api.apply(&broken).unwrap();
    let events = harness.event_arrives("good", "UpdateError", 1).await;
    let (_, _, message) = events.iter().find(|(_, reason, _)| reason == "UpdateError").unwrap();
    assert!(
        message.starts_with("ingress `web/good`: unknown annotation `ingress.pomerium.io/allowed_userz`"),
        "{message}"
    );
    assert!(message.ends_with("(its previous route is kept)"), "{message}");
    harness.settle().await;
    assert_eq!(harness.databroker.routes().await, good_routes);
    // One event per outcome, however many reconciles ran.
    assert_eq!(harness.events("bad").len(), 1, "{:?}", harness.events("bad"));
    assert_eq!(harness.events("good").len(), 2, "{:?}", harness.events("good"));

    // Fixed: the new routes, and `Normal Updated`.
    harness.api.apply(&ingress("web", "good", "good2.example.com", "app", json!({}))).unwrap();
    harness.routes_become(SOON, &["https://good2.example.com /"]).await;
    harness.event_arrives("good", "Updated", 2).await;
    harness.stop().await;
}

#[tokio::test]
async fn ingress_status_is_copied_from_the_proxy_service() {
    let harness = Harness::start(|api, settings| {
        api.apply(&proxy_service("pomerium", "proxy", "203.0.113.7")).unwrap();
        settings.status_service = Some(ingress::ObjectKey::new("pomerium", "proxy"));
    })
    .await;
    harness.api.apply(&service("web", "app")).unwrap();
    harness.api.apply(&ingress("web", "app", "app.example.com", "app", json!({}))).unwrap();
    let status = |harness: &Harness| {
        let ingress = harness.api.get::<Ingress>("web", "app").unwrap();
        serde_json::to_value(ingress.status.and_then(|s| s.load_balancer)).unwrap()
    };
    eventually(EVENTUALLY, "the ingress status", || async {
        let now = status(&harness);
        if now == json!({"ingress": [{"ip": "203.0.113.7"}]}) { Ok(()) } else { Err(now.to_string()) }
    })
    .await;
    let patches: Vec<_> = harness.api.requests().into_iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(patches[0].path, "/apis/networking.k8s.io/v1/namespaces/web/ingresses/app/status");
    assert_eq!(patches[0].content_type.as_deref(), Some("application/merge-patch+json"));

    // The proxy's address changes: every ingress follows.
    harness.api.apply(&proxy_service("pomerium", "proxy", "198.51.100.9")).unwrap();
    eventually(EVENTUALLY, "the new ingress status", || async {
        let now = status(&harness);
        if now == json!({"ingress": [{"ip": "198.51.100.9"}]}) { Ok(()) } else { Err(now.to_string()) }
    })
    .await;
    harness.settle().await;
    let patches = harness.api.requests().into_iter().filter(|r| r.method == "PATCH").count();
    assert_eq!(patches, 2, "the status is patched only when it differs");

    // An ingress that fails is not given a status.
    harness.api.apply(&ingress("web", "bad", "bad.example.com", "missing", json!({}))).unwrap();
    harness.event_arrives("bad", "UpdateError", 1).await;
    harness.settle().await;
    assert!(harness.api.get::<Ingress>("web", "bad").unwrap().status.is_none());
    harness.stop().await;
}

#[tokio::test]
async fn only_ingresses_of_our_classes_are_served_and_the_default_class_takes_the_classless() {
    let harness = Harness::start(|api, _| {
        api.apply(&class("other", "example.com/other", false)).unwrap();
    })
    .await;
    harness.api.apply(&service("web", "app")).unwrap();
    harness.api.apply(&ingress("web", "ours", "ours.example.com", "app", json!({}))).unwrap();
    harness
        .api
        .apply(&with_class(ingress("web", "theirs", "theirs.example.com", "app", json!({})), Some("other")))
        .unwrap();
    harness
        .api
        .apply(&with_class(ingress("web", "classless", "classless.example.com", "app", json!({})), None))
        .unwrap();
    harness.routes_become(SOON, &["https://ours.example.com /"]).await;
    harness.settle().await;
    assert_eq!(summary(&harness.databroker.routes().await), ["https://ours.example.com /"]);
    assert!(harness.events("theirs").is_empty() && harness.events("classless").is_empty());

    // Our class becomes the default: the classless ingress is ours now.
    harness.api.apply(&class("pomerium", OURS, true)).unwrap();
    harness.routes_become(SOON, &["https://classless.example.com /", "https://ours.example.com /"]).await;

    // An ingress moved to another class loses its routes.
    harness
        .api
        .apply(&with_class(ingress("web", "ours", "ours.example.com", "app", json!({})), Some("other")))
        .unwrap();
    harness.routes_become(SOON, &["https://classless.example.com /"]).await;
    // And the deprecated annotation names a class too.
    let annotated = with_class(
        ingress("web", "theirs", "theirs.example.com", "app", json!({"kubernetes.io/ingress.class": "pomerium"})),
        None,
    );
    harness.api.apply(&annotated).unwrap();
    harness.routes_become(SOON, &["https://classless.example.com /", "https://theirs.example.com /"]).await;
    assert!(harness.api.list::<IngressClass>(None).len() == 2);
    harness.stop().await;
}

#[tokio::test]
async fn changes_to_secrets_services_and_endpoints_reconcile_the_ingresses_that_use_them() {
    let harness = Harness::start(|_, _| {}).await;
    harness.api.apply(&service("web", "app")).unwrap();
    let app = with_tls(
        ingress(
            "web",
            "app",
            "app.example.com",
            "app",
            json!({"ingress.pomerium.io/set_request_headers_secret": "headers"}),
        ),
        "app-tls",
        "app.example.com",
    );
    harness.api.apply(&app).unwrap();
    // The Secrets do not exist yet: an error naming them, and no routes.
    let events = harness.event_arrives("app", "UpdateError", 1).await;
    assert!(events[0].2.contains("secret `web/headers` not found"), "{events:?}");
    assert!(events[0].2.contains("secret `web/app-tls` not found"), "{events:?}");
    assert!(harness.databroker.routes().await.is_empty());

    // They appear: the ingress is reconciled without being touched.
    harness.api.apply(&opaque_secret("web", "headers", json!({"X-Token": "one"}))).unwrap();
    let (tls, cert) = tls_secret("web", "app-tls", "app.example.com");
    harness.api.apply(&tls).unwrap();
    let routes = harness.routes_become(SOON, &["https://app.example.com /"]).await;
    assert_eq!(routes[0]["set_request_headers"], json!({"X-Token": "one"}));
    let record = harness.databroker.record().await.unwrap();
    let certificates = record.data["certificates"].as_array().unwrap();
    assert_eq!(certificates.len(), 1);
    assert_eq!(certificates[0]["cert"], cert);
    assert_eq!(certificates[0]["secret"], "web/app-tls");
    assert_eq!(certificates[0]["hosts"], json!(["app.example.com"]));
    assert!(certificates[0]["key"].as_str().unwrap().contains("PRIVATE KEY"));

    // The header Secret changes.
    harness.api.apply(&opaque_secret("web", "headers", json!({"X-Token": "two"}))).unwrap();
    eventually(SOON, "the new header value", || async {
        let routes = harness.databroker.routes().await;
        let value = routes.first().map(|r| r["set_request_headers"].clone()).unwrap_or_default();
        if value == json!({"X-Token": "two"}) { Ok(()) } else { Err(value.to_string()) }
    })
    .await;

    // Endpoints: `to` is the ready addresses (by the Service's target port), and follows them.
    let to = |addresses: Value| {
        let harness = &harness;
        async move {
            eventually(SOON, &format!("to = {addresses}"), || async {
                let routes = harness.databroker.routes().await;
                let value = routes.first().map(|r| r["to"].clone()).unwrap_or_default();
                if value == addresses { Ok(()) } else { Err(value.to_string()) }
            })
            .await
        }
    };
    harness.api.apply(&endpoints("web", "app", &["10.0.0.1"])).unwrap();
    to(json!(["http://10.0.0.1:8080"])).await;
    harness.api.apply(&endpoints("web", "app", &["10.0.0.1", "10.0.0.2"])).unwrap();
    to(json!(["http://10.0.0.1:8080", "http://10.0.0.2:8080"])).await;

    // The certificate goes when no route needs it.
    harness
        .api
        .apply(&with_tls(ingress("web", "app", "other.example.com", "app", json!({})), "app-tls", "app.example.com"))
        .unwrap();
    harness.routes_become(SOON, &["https://other.example.com /"]).await;
    let record = harness.databroker.record().await.unwrap();
    assert_eq!(record.data["certificates"], json!([]), "a certificate no route uses is pruned");
    assert!(harness.api.list::<Secret>(Some("web")).len() == 2 && harness.api.list::<Service>(None).len() == 1);
    harness.stop().await;
}

#[tokio::test]
async fn the_namespaces_flag_limits_what_is_watched() {
    let harness = Harness::start(|_, settings| settings.namespaces = vec!["web".to_owned()]).await;
    harness.api.apply(&service("web", "app")).unwrap();
    harness.api.apply(&service("elsewhere", "app")).unwrap();
    harness.api.apply(&ingress("elsewhere", "app", "elsewhere.example.com", "app", json!({}))).unwrap();
    harness.api.apply(&ingress("web", "app", "web.example.com", "app", json!({}))).unwrap();
    harness.routes_become(SOON, &["https://web.example.com /"]).await;
    harness.settle().await;
    assert_eq!(summary(&harness.databroker.routes().await), ["https://web.example.com /"]);
    let mut paths: Vec<String> =
        harness.api.requests().into_iter().filter(|r| r.method == "GET").map(|r| r.path).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/web/endpoints",
            "/api/v1/namespaces/web/secrets",
            "/api/v1/namespaces/web/services",
            "/apis/networking.k8s.io/v1/ingressclasses",
            "/apis/networking.k8s.io/v1/namespaces/web/ingresses",
        ]
    );
    harness.stop().await;
}

#[tokio::test]
async fn watches_resume_after_the_api_server_ends_them() {
    let harness = Harness::start(|_, _| {}).await;
    harness.api.apply(&service("web", "app")).unwrap();
    harness.api.apply(&ingress("web", "one", "one.example.com", "app", json!({}))).unwrap();
    harness.routes_become(SOON, &["https://one.example.com /"]).await;
    let count = |harness: &Harness, watch: bool| {
        harness.api.requests().into_iter().filter(|r| r.method == "GET" && r.is_watch() == watch).count()
    };
    let (watches, lists) = (count(&harness, true), count(&harness, false));
    harness.api.close_watches();
    harness.api.apply(&ingress("web", "two", "two.example.com", "app", json!({}))).unwrap();
    harness.routes_become(EVENTUALLY, &["https://one.example.com /", "https://two.example.com /"]).await;
    assert!(count(&harness, true) >= watches + 5, "every watch is opened again");
    assert_eq!(count(&harness, false), lists, "from the version each had seen, without listing again");
    assert_eq!(harness.events("one").len(), 1);
    harness.stop().await;
}
