//! Kubernetes Events on Ingresses, and their status (upstream's `controllers/reporter`).
//!
//! Events are core v1 `Event`s, as upstream's `record.EventRecorder` writes them: `Normal Updated`
//! "updated pomerium configuration" when an Ingress's routes were written, and `Warning
//! UpdateError` with every translation error when they were not. One is posted only when the
//! outcome of the Ingress changes (its routes, or the errors' text), so an unchanged Ingress
//! is not reported again on every recompute.
//!
//! Status: with `--update-status-from-service`, the Service's load-balancer ingress (or, for a
//! `NodePort` Service, its cluster IP) is copied to `status.loadBalancer` of every Ingress whose
//! routes were written (`svcStatusToIngress`).

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress, IngressPortStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

/// The component events are reported as (upstream's recorder name).
pub const COMPONENT: &str = "pomerium-ingress";
pub const REASON_UPDATED: &str = "Updated";
pub const REASON_UPDATE_ERROR: &str = "UpdateError";
/// The message of `Normal Updated`, as the documentation shows it.
pub const MESSAGE_UPDATED: &str = "updated pomerium configuration";
/// The API server's limit on an event's message (client-go truncates to it as well).
const MAX_MESSAGE: usize = 1024;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// A core v1 Event about `ingress`.
pub fn event(ingress: &Ingress, kind: EventType, reason: &str, message: &str, instance: &str) -> Event {
    let now = jiff::Timestamp::now();
    let name = ingress.metadata.name.clone().unwrap_or_default();
    let namespace = crate::deps::namespace_of(&ingress.metadata).to_owned();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("networking.k8s.io/v1".to_owned()),
            kind: Some("Ingress".to_owned()),
            name: Some(name),
            namespace: Some(namespace),
            uid: ingress.metadata.uid.clone(),
            resource_version: ingress.metadata.resource_version.clone(),
            ..ObjectReference::default()
        },
        reason: Some(reason.to_owned()),
        message: Some(truncate(message, MAX_MESSAGE)),
        type_: Some(kind.as_str().to_owned()),
        source: Some(EventSource { component: Some(COMPONENT.to_owned()), host: None }),
        reporting_component: Some(COMPONENT.to_owned()),
        reporting_instance: Some(instance.to_owned()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Event::default()
    }
}

/// At most `max` bytes, cut at a character boundary, with `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text.get(..end).unwrap_or_default())
}

/// What `status.loadBalancer.ingress` of a served Ingress should be, from the proxy's Service.
pub fn load_balancer_status(service: &Service) -> Vec<IngressLoadBalancerIngress> {
    let spec = service.spec.as_ref();
    match spec.and_then(|s| s.type_.as_deref()) {
        Some("LoadBalancer") => service
            .status
            .iter()
            .filter_map(|status| status.load_balancer.as_ref())
            .flat_map(|lb| lb.ingress.iter().flatten())
            .map(|ingress| IngressLoadBalancerIngress {
                hostname: ingress.hostname.clone(),
                ip: ingress.ip.clone(),
                ports: ingress.ports.as_ref().map(|ports| {
                    ports
                        .iter()
                        .map(|p| IngressPortStatus {
                            error: p.error.clone(),
                            port: p.port,
                            protocol: p.protocol.clone(),
                        })
                        .collect()
                }),
            })
            .collect(),
        Some("NodePort") => {
            vec![IngressLoadBalancerIngress { ip: spec.and_then(|s| s.cluster_ip.clone()), ..Default::default() }]
        }
        _ => Vec::new(),
    }
}

/// The Ingress's `status.loadBalancer.ingress` now (none and empty are the same).
pub fn current_load_balancer(ingress: &Ingress) -> Vec<IngressLoadBalancerIngress> {
    ingress.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let text = "é".repeat(600);
        let cut = truncate(&text, MAX_MESSAGE);
        assert!(cut.len() <= MAX_MESSAGE && cut.ends_with('…'), "{}", cut.len());
        assert_eq!(truncate("short", MAX_MESSAGE), "short");
    }

    #[test]
    fn load_balancer_status_follows_the_service_type() {
        let service = |value: serde_json::Value| serde_json::from_value::<Service>(value).unwrap();
        let lb = service(json!({
            "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1"},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com", "ports": [{"port": 443, "protocol": "TCP"}]}]}}
        }));
        let status = serde_json::to_value(load_balancer_status(&lb)).unwrap();
        assert_eq!(
            status,
            json!([{"ip": "203.0.113.7"}, {"hostname": "lb.example.com", "ports": [{"port": 443, "protocol": "TCP"}]}])
        );
        let node_port = service(json!({"spec": {"type": "NodePort", "clusterIP": "10.0.0.1"}}));
        assert_eq!(serde_json::to_value(load_balancer_status(&node_port)).unwrap(), json!([{"ip": "10.0.0.1"}]));
        let cluster_ip = service(json!({"spec": {"type": "ClusterIP", "clusterIP": "10.0.0.1"}}));
        assert!(load_balancer_status(&cluster_ip).is_empty());
    }
}
