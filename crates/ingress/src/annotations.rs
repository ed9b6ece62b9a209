//! The annotations Pomerium's controller understands under its prefix (`ingress.pomerium.io/`),
//! from the documented lists and `pomerium/ingress_annotations.go`, and what each one does.
//!
//! Three kinds: a route option (the value is YAML and becomes the route field of the same name);
//! a Secret name (the Secret's data becomes route fields); a flag read by the translation itself
//! (`"true"` turns it on). Anything else under the prefix is an error, as upstream.

/// What an annotation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The value, read as YAML, is the route option of the same name.
    Option,
    /// The value names a Secret in the Ingress's namespace.
    Secret(SecretUse),
    /// `"true"` turns on a behaviour of the translation.
    Flag(Flag),
    /// Pomerium removed it; the text says what replaced it.
    Removed(&'static str),
}

/// What a Secret named by an annotation supplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretUse {
    /// `ca.crt` → `tls_custom_ca`.
    CustomCa,
    /// `tls.crt` and `tls.key` → `tls_client_cert` and `tls_client_key`.
    ClientCertificate,
    /// `ca.crt` → `tls_downstream_client_ca`.
    DownstreamClientCa,
    /// A `kubernetes.io/service-account-token` Secret's `token` → `kubernetes_service_account_token`.
    ServiceAccountToken,
    /// An `Opaque` Secret's keys and values, merged into `set_request_headers`.
    RequestHeaders,
    /// An `Opaque` Secret's keys and values, merged into `set_response_headers`.
    ResponseHeaders,
}

/// A behaviour of the translation, turned on by `"true"` (any case; anything else is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flag {
    /// `ImplementationSpecific` paths are regular expressions.
    PathRegex,
    /// Upstreams are reached over HTTPS.
    SecureUpstream,
    /// Upstreams are the Service's cluster DNS name rather than its endpoints.
    ServiceProxyUpstream,
    /// The route is a TCP tunnel: `tcp+https://host:port`.
    TcpUpstream,
    /// The route is a UDP tunnel: `udp+https://host:port`.
    UdpUpstream,
    /// A rule without a host is allowed, and matches every host (`*`).
    SubtleAllowEmptyHost,
}

/// Every annotation, by its name after the prefix.
pub const ANNOTATIONS: &[(&str, Kind)] = &[
    // Route options: `baseAnnotations`, `policyAnnotations` and `envoyAnnotations` upstream, and
    // `name` (the route's name instead of the generated slug).
    ("allow_any_authenticated_user", Kind::Option),
    ("allow_public_unauthenticated_access", Kind::Option),
    ("allow_spdy", Kind::Option),
    ("allow_websockets", Kind::Option),
    ("cors_allow_preflight", Kind::Option),
    ("description", Kind::Option),
    ("host_path_regex_rewrite_pattern", Kind::Option),
    ("host_path_regex_rewrite_substitution", Kind::Option),
    ("host_rewrite", Kind::Option),
    ("host_rewrite_header", Kind::Option),
    ("idle_timeout", Kind::Option),
    ("logo_url", Kind::Option),
    ("name", Kind::Option),
    ("pass_identity_headers", Kind::Option),
    ("prefix_rewrite", Kind::Option),
    ("preserve_host_header", Kind::Option),
    ("regex_rewrite_pattern", Kind::Option),
    ("regex_rewrite_substitution", Kind::Option),
    ("remove_request_headers", Kind::Option),
    ("rewrite_response_headers", Kind::Option),
    ("set_request_headers", Kind::Option),
    ("set_response_headers", Kind::Option),
    ("timeout", Kind::Option),
    ("tls_server_name", Kind::Option),
    ("tls_skip_verify", Kind::Option),
    ("allowed_domains", Kind::Option),
    ("allowed_idp_claims", Kind::Option),
    ("allowed_users", Kind::Option),
    ("policy", Kind::Option),
    ("health_checks", Kind::Option),
    ("lb_policy", Kind::Option),
    ("least_request_lb_config", Kind::Option),
    ("maglev_lb_config", Kind::Option),
    ("outlier_detection", Kind::Option),
    ("ring_hash_lb_config", Kind::Option),
    // Secrets.
    ("tls_custom_ca_secret", Kind::Secret(SecretUse::CustomCa)),
    ("tls_client_secret", Kind::Secret(SecretUse::ClientCertificate)),
    ("tls_downstream_client_ca_secret", Kind::Secret(SecretUse::DownstreamClientCa)),
    ("kubernetes_service_account_token_secret", Kind::Secret(SecretUse::ServiceAccountToken)),
    // The documentation's name for the same annotation ("Name of a Kubernetes token Secret").
    ("kubernetes_service_account_token", Kind::Secret(SecretUse::ServiceAccountToken)),
    ("set_request_headers_secret", Kind::Secret(SecretUse::RequestHeaders)),
    ("set_response_headers_secret", Kind::Secret(SecretUse::ResponseHeaders)),
    // Flags (`handledElsewhere`).
    ("path_regex", Kind::Flag(Flag::PathRegex)),
    ("secure_upstream", Kind::Flag(Flag::SecureUpstream)),
    ("service_proxy_upstream", Kind::Flag(Flag::ServiceProxyUpstream)),
    ("tcp_upstream", Kind::Flag(Flag::TcpUpstream)),
    ("udp_upstream", Kind::Flag(Flag::UdpUpstream)),
    ("subtle_allow_empty_host", Kind::Flag(Flag::SubtleAllowEmptyHost)),
    // Removed (`unsupported`).
    (
        "allowed_groups",
        Kind::Removed(
            "pomerium no longer syncs directory groups; match the identity provider's groups claim in `policy`, e.g. `allow: {or: [{claim/groups: admins}]}`",
        ),
    ),
];

/// What the annotation named `name` (after the prefix) does, if it is one.
pub fn kind(name: &str) -> Option<Kind> {
    ANNOTATIONS.iter().find(|(n, _)| *n == name).map(|(_, kind)| *kind)
}

/// The names of the annotations still in use, for "did you mean".
pub(crate) fn names() -> Vec<&'static str> {
    ANNOTATIONS.iter().filter(|(_, kind)| !matches!(kind, Kind::Removed(_))).map(|(name, _)| *name).collect()
}

/// The flag's annotation name.
pub(crate) fn flag_name(flag: Flag) -> &'static str {
    ANNOTATIONS.iter().find(|(_, kind)| *kind == Kind::Flag(flag)).map_or("", |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_option_is_a_route_key_config_knows() {
        for (name, kind) in ANNOTATIONS {
            if *kind == Kind::Option {
                let known = config::keys::ROUTE.contains(name) || config::keys::ENVOY_CLUSTER.contains(name);
                assert!(known, "`{name}` is not a route option of the config crate");
            }
        }
    }
}
