//! Fixtures shared by the controller's tests: Kubernetes objects built from JSON, a databroker
//! served on loopback, and polling with a deadline.

#![allow(dead_code, reason = "each test file uses some of the fixtures")]

use databroker::auth::ServiceAuth;
use databroker::record::{CONFIG_TYPE, Record};
use databroker::storage::{AnyStorage, Storage as _};
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const SECRET: &[u8] = b"a shared secret of thirty-two b!";
pub const OURS: &str = "pomerium.io/ingress-controller";

pub fn object<K: serde::de::DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).unwrap()
}

pub fn class(name: &str, controller: &str, default: bool) -> IngressClass {
    let annotations = if default { json!({"ingressclass.kubernetes.io/is-default-class": "true"}) } else { json!({}) };
    object(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"controller": controller}
    }))
}

/// An Ingress of class `pomerium` with one `Prefix /` rule on `host` to service `service:80`.
pub fn ingress(namespace: &str, name: &str, host: &str, service: &str, annotations: Value) -> Ingress {
    object(json!({
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {
            "ingressClassName": "pomerium",
            "rules": [{"host": host, "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": service, "port": {"number": 80}}}}
            ]}}]
        }
    }))
}

pub fn with_class(mut ingress: Ingress, class: Option<&str>) -> Ingress {
    if let Some(spec) = ingress.spec.as_mut() {
        spec.ingress_class_name = class.map(str::to_owned);
    }
    ingress
}

pub fn with_tls(mut ingress: Ingress, secret: &str, host: &str) -> Ingress {
    if let Some(spec) = ingress.spec.as_mut() {
        spec.tls = Some(vec![object(json!({"hosts": [host], "secretName": secret}))]);
    }
    ingress
}

pub fn service(namespace: &str, name: &str) -> Service {
    object(json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }))
}

pub fn endpoints(namespace: &str, name: &str, ips: &[&str]) -> Endpoints {
    let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    object(json!({
        "metadata": {"name": name, "namespace": namespace},
        "subsets": [{"addresses": addresses, "ports": [{"name": "http", "port": 8080}]}]
    }))
}

/// The proxy's Service, of type LoadBalancer, with `ip` as its load-balancer ingress.
pub fn proxy_service(namespace: &str, name: &str, ip: &str) -> Service {
    object(json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 443}]},
        "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}
    }))
}

pub fn opaque_secret(namespace: &str, name: &str, data: Value) -> Secret {
    object(json!({"metadata": {"name": name, "namespace": namespace}, "type": "Opaque", "stringData": data}))
}

/// A `kubernetes.io/tls` Secret with a self-signed certificate for `host`; and the certificate.
pub fn tls_secret(namespace: &str, name: &str, host: &str) -> (Secret, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap().self_signed(&key).unwrap();
    let secret = object(json!({
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": cert.pem(), "tls.key": key.serialize_pem()}
    }));
    (secret, cert.pem())
}

/// A databroker with the memory backend, served over gRPC on loopback.
pub struct Databroker {
    pub url: String,
    pub storage: Arc<AnyStorage>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Databroker {
    pub async fn start() -> Databroker {
        let storage = databroker::open(&databroker::Backend::Memory).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = Arc::clone(&storage);
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            databroker::serve(listener, served, ServiceAuth::new(SECRET), shutdown).await.unwrap();
        });
        Databroker { url, storage, _stop: stop }
    }

    /// The `ingress-controller` record, when there is one.
    pub async fn record(&self) -> Option<Record> {
        self.storage.get(CONFIG_TYPE, "ingress-controller").await.unwrap().filter(|r| !r.is_deleted())
    }

    /// The routes of the record (none when there is no record).
    pub async fn routes(&self) -> Vec<Value> {
        let record = self.record().await;
        record.and_then(|r| r.data.get("routes").and_then(Value::as_array).cloned()).unwrap_or_default()
    }
}

/// Polls `check` until it returns `Some`, or fails the test after `within`, showing `what` and the
/// last value seen.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if start.elapsed() > within => {
                panic!("{what}: not within {within:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// The `from` and `prefix` of each route, for compact assertions.
pub fn summary(routes: &[Value]) -> Vec<String> {
    routes
        .iter()
        .map(|r| format!("{} {}", r["from"].as_str().unwrap_or("?"), r["prefix"].as_str().unwrap_or("")))
        .collect()
}
