//! Where a rule path's requests go (`getPathServiceHosts`): the ExternalName, the Service's cluster
//! DNS name (`service_proxy_upstream`), or one `ip:port` per ready endpoint address, falling back
//! to the DNS name when no endpoint is ready or none has the port.
//!
//! The endpoint port is found by name when the Ingress names the Service port (endpoint ports
//! carry the Service port's name), and through the Service port's `targetPort` when it gives a
//! number (the Ingress's number is the Service port, not the container's).

use crate::annotations::Flag;
use crate::deps::ObjectKey;
use crate::doc::Rule;
use crate::error::{MissingService, MissingServicePort, NoPort, NoService, TranslateError};
use crate::translate::Cx;
use k8s_openapi::api::core::v1::{EndpointSubset, ServicePort};
use k8s_openapi::api::networking::v1::IngressBackend;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The upstreams of one backend, as `host:port`.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The Service port: the port of a tunnel's `from`.
    pub port: i32,
    pub hosts: Vec<String>,
    /// Whether the hosts are endpoint addresses (then the DNS name is the TLS server name).
    pub endpoints: bool,
    /// `<service>.<namespace>.svc.cluster.local`.
    pub service_dns: String,
}

/// Which endpoint ports serve the backend's Service port.
enum PortMatch {
    Name(String),
    Number(i32),
}

pub(crate) fn resolve(cx: &Cx<'_>, rule: &Rule, backend: &IngressBackend) -> Result<Resolved, TranslateError> {
    let ingress = cx.label.clone();
    let Some(service_ref) = &backend.service else {
        return Err(NoService { ingress, rule: Box::new(rule.clone()) }.into());
    };
    let key = ObjectKey::new(&cx.key.namespace, &service_ref.name);
    let Some(service) = cx.deps.services.get(&key) else {
        return Err(MissingService { ingress, rule: Box::new(rule.clone()), service: key.to_string() }.into());
    };
    let spec = service.spec.clone().unwrap_or_default();
    let ports = spec.ports.unwrap_or_default();
    let backend_port = service_ref.port.clone().unwrap_or_default();
    let port_name = backend_port.name.filter(|n| !n.is_empty());
    let port = service_port(cx, rule, &key, port_name.as_deref(), backend_port.number, &ports)?;
    let service_dns = format!("{}.{}.svc.cluster.local", key.name, key.namespace);
    let dns = vec![format!("{service_dns}:{port}")];
    if spec.type_.as_deref() == Some("ExternalName") {
        let external = spec.external_name.unwrap_or_default();
        return Ok(Resolved { port, hosts: vec![format!("{external}:{port}")], endpoints: false, service_dns });
    }
    if cx.flag(Flag::ServiceProxyUpstream) {
        return Ok(Resolved { port, hosts: dns, endpoints: false, service_dns });
    }
    let matcher = match port_name {
        Some(name) => Some(PortMatch::Name(name)),
        None => number_match(port, &ports),
    };
    let subsets = cx.deps.endpoints.get(&key).and_then(|e| e.subsets.clone()).unwrap_or_default();
    let hosts = matcher.map(|m| endpoint_hosts(&m, &subsets)).unwrap_or_default();
    if hosts.is_empty() {
        // No address is ready, or none has the port: the cluster DNS name still resolves.
        return Ok(Resolved { port, hosts: dns, endpoints: false, service_dns });
    }
    Ok(Resolved { port, hosts, endpoints: true, service_dns })
}

/// The Service port number the backend means: by name (looked up on the Service) or as given.
fn service_port(
    cx: &Cx<'_>,
    rule: &Rule,
    key: &ObjectKey,
    name: Option<&str>,
    number: Option<i32>,
    ports: &[ServicePort],
) -> Result<i32, TranslateError> {
    match (name, number) {
        (Some(name), _) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.port)
            .ok_or_else(|| missing_port(cx, rule, key, name, ports)),
        (None, Some(number)) => Ok(number),
        (None, None) => {
            Err(NoPort { ingress: cx.label.clone(), rule: Box::new(rule.clone()), service: key.to_string() }.into())
        }
    }
}

fn missing_port(cx: &Cx<'_>, rule: &Rule, key: &ObjectKey, port: &str, ports: &[ServicePort]) -> TranslateError {
    let names: Vec<String> = ports.iter().filter_map(|p| p.name.as_ref()).map(|n| format!("`{n}`")).collect();
    let help = (!names.is_empty()).then(|| format!("the service's ports are named {}", ppl::suggest::join_and(&names)));
    let port = port.to_owned();
    MissingServicePort { ingress: cx.label.clone(), rule: Box::new(rule.clone()), service: key.to_string(), port, help }
        .into()
}

/// The endpoint port behind a Service port number: its `targetPort` (the API server defaults a
/// missing one to the port itself). A named `targetPort` matches nothing, as upstream reads its
/// integer value (0); the route then falls back to the DNS name.
fn number_match(number: i32, ports: &[ServicePort]) -> Option<PortMatch> {
    let port = ports.iter().find(|p| p.port == number)?;
    match &port.target_port {
        None => Some(PortMatch::Number(port.port)),
        Some(IntOrString::Int(target)) => Some(PortMatch::Number(*target)),
        Some(IntOrString::String(_)) => None,
    }
}

/// `ip:port` for every ready address and matching port; not-ready addresses are skipped.
fn endpoint_hosts(matcher: &PortMatch, subsets: &[EndpointSubset]) -> Vec<String> {
    let mut hosts = Vec::new();
    for subset in subsets {
        let ports: Vec<i32> = subset
            .ports
            .iter()
            .flatten()
            .filter(|p| match matcher {
                PortMatch::Name(name) => p.name.as_deref() == Some(name.as_str()),
                PortMatch::Number(number) => p.port == *number,
            })
            .map(|p| p.port)
            .collect();
        for address in subset.addresses.iter().flatten() {
            for port in &ports {
                hosts.push(host_port(&address.ip, *port));
            }
        }
    }
    hosts
}

/// `ip:port`, with an IPv6 address in brackets so that the URL is valid (upstream writes it bare).
fn host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
}
