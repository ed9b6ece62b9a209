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
    /// Pomerium's controller accepts it, for something this server does not serve; refused, the
    /// text says why.
    Unsupported(&'static str),
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
    /// A rule without a host is allowed, and matches every host (`*`).
    SubtleAllowEmptyHost,
}

/// Every annotation, by its name after the prefix.
pub const ANNOTATIONS: &[(&str, Kind)] = &[
    // Route options: `baseAnnotations`, `policyAnnotations` and `envoyAnnotations` upstream, and
    // `name` (the route's name instead of the generated slug).
    // A route option the server does not act on (`config::support::UNSUPPORTED`) is refused
    // when the Ingress is translated, with the table's reason.
    ("allow_any_authenticated_user", Kind::Option),
    ("allow_public_unauthenticated_access", Kind::Option),
    ("allow_spdy", Kind::Option),
    ("allow_upgrades", Kind::Option),
    ("allow_websockets", Kind::Option),
    ("bearer_token_format", Kind::Option),
    ("circuit_breaker_thresholds", Kind::Option),
    ("cors_allow_preflight", Kind::Option),
    ("depends_on", Kind::Option),
    ("description", Kind::Option),
    ("enable_google_cloud_serverless_authentication", Kind::Option),
    ("healthy_panic_threshold", Kind::Option),
    ("host_path_regex_rewrite_pattern", Kind::Option),
    ("host_path_regex_rewrite_substitution", Kind::Option),
    ("host_rewrite", Kind::Option),
    ("host_rewrite_header", Kind::Option),
    ("idle_timeout", Kind::Option),
    ("idp_access_token_allowed_audiences", Kind::Option),
    ("load_balancing_policy", Kind::Option),
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
    ("outlier_detection", Kind::Option),
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
    ("subtle_allow_empty_host", Kind::Flag(Flag::SubtleAllowEmptyHost)),
    // Removed (`unsupported`).
    (
        "allowed_groups",
        Kind::Removed(
            "pomerium no longer syncs directory groups; match the identity provider's groups claim in `policy`, e.g. `allow: {or: [{claim/groups: admins}]}`",
        ),
    ),
    // Removed from the controller's lists (replaced by `load_balancing_policy`).
    ("lb_policy", Kind::Removed(LB_REMOVED)),
    ("least_request_lb_config", Kind::Removed(LB_CONFIG_REMOVED)),
    ("maglev_lb_config", Kind::Removed(LB_CONFIG_REMOVED)),
    ("ring_hash_lb_config", Kind::Removed(LB_CONFIG_REMOVED)),
    // Accepted upstream, for what this server does not serve.
    ("ssh_upstream", Kind::Unsupported("ssh routes are not served here")),
    ("udp_upstream", Kind::Unsupported("udp routes (connect-udp) are not served here; `tcp_upstream` routes are")),
    ("upstream_tunnel", Kind::Unsupported(TUNNEL)),
    ("upstream_tunnel_ssh_policy", Kind::Unsupported(TUNNEL)),
    (
        "identity_provider_secret",
        Kind::Unsupported("a route's own identity provider is not supported here; routes sign in with the global one"),
    ),
    ("mcp_server", Kind::Unsupported(MCP)),
    ("mcp_client", Kind::Unsupported(MCP)),
    ("mcp_server_max_request_bytes", Kind::Unsupported(MCP)),
    ("mcp_server_path", Kind::Unsupported(MCP)),
    ("mcp_server_authorization_server_url", Kind::Unsupported(MCP)),
    ("mcp_server_upstream_oauth2_secret", Kind::Unsupported(MCP)),
    ("mcp_server_upstream_oauth2_auth_url", Kind::Unsupported(MCP)),
    ("mcp_server_upstream_oauth2_token_url", Kind::Unsupported(MCP)),
    ("mcp_server_upstream_oauth2_scopes", Kind::Unsupported(MCP)),
    ("mcp_server_upstream_oauth2_auth_style", Kind::Unsupported(MCP)),
    ("mcp_server_upstream_oauth2_authorization_url_params", Kind::Unsupported(MCP)),
];

const LB_REMOVED: &str =
    "use `load_balancing_policy` (`round_robin`, `least_request`, `ring_hash`, `random` or `maglev`)";
const LB_CONFIG_REMOVED: &str = "envoy's load balancer settings are no longer read from annotations; choose the policy with `load_balancing_policy`";
const TUNNEL: &str = "upstream tunnels are not supported here";
const MCP: &str = "mcp routes are not served here";

/// What the annotation named `name` (after the prefix) does, if it is one.
pub fn kind(name: &str) -> Option<Kind> {
    ANNOTATIONS.iter().find(|(n, _)| *n == name).map(|(_, kind)| *kind)
}

/// The names of the annotations still in use, for "did you mean".
pub(crate) fn names() -> Vec<&'static str> {
    ANNOTATIONS
        .iter()
        .filter(|(_, kind)| !matches!(kind, Kind::Removed(_) | Kind::Unsupported(_)))
        .map(|(name, _)| *name)
        .collect()
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

    /// The names Pomerium's controller accepts today (`pomerium/ingress_annotations.go`,
    /// `model/ingress_config.go`): none is "unknown" here; each is read or refused with a reason.
    #[test]
    fn every_annotation_of_the_upstream_controller_is_known() {
        let upstream = [
            "allow_any_authenticated_user",
            "allow_public_unauthenticated_access",
            "allow_spdy",
            "allow_upgrades",
            "allow_websockets",
            "bearer_token_format",
            "circuit_breaker_thresholds",
            "cors_allow_preflight",
            "depends_on",
            "description",
            "enable_google_cloud_serverless_authentication",
            "health_checks",
            "healthy_panic_threshold",
            "host_path_regex_rewrite_pattern",
            "host_path_regex_rewrite_substitution",
            "host_rewrite_header",
            "host_rewrite",
            "idle_timeout",
            "idp_access_token_allowed_audiences",
            "load_balancing_policy",
            "logo_url",
            "name",
            "outlier_detection",
            "pass_identity_headers",
            "prefix_rewrite",
            "preserve_host_header",
            "regex_rewrite_pattern",
            "regex_rewrite_substitution",
            "remove_request_headers",
            "rewrite_response_headers",
            "set_request_headers",
            "set_response_headers",
            "timeout",
            "tls_server_name",
            "tls_skip_verify",
            "allowed_domains",
            "allowed_idp_claims",
            "allowed_users",
            "policy",
            "tls_client_secret",
            "tls_custom_ca_secret",
            "tls_downstream_client_ca_secret",
            "kubernetes_service_account_token_secret",
            "set_request_headers_secret",
            "set_response_headers_secret",
            "mcp_server_upstream_oauth2_secret",
            "identity_provider_secret",
            "mcp_server",
            "mcp_server_max_request_bytes",
            "mcp_server_upstream_oauth2_authorization_url_params",
            "mcp_server_upstream_oauth2_token_url",
            "mcp_server_upstream_oauth2_auth_url",
            "mcp_server_upstream_oauth2_scopes",
            "mcp_server_upstream_oauth2_auth_style",
            "mcp_server_path",
            "mcp_server_authorization_server_url",
            "mcp_client",
            "upstream_tunnel",
            "upstream_tunnel_ssh_policy",
            "path_regex",
            "secure_upstream",
            "ssh_upstream",
            "tcp_upstream",
            "udp_upstream",
            "service_proxy_upstream",
            "subtle_allow_empty_host",
            "allowed_groups",
        ];
        for name in upstream {
            assert!(kind(name).is_some(), "`{name}` is an annotation of pomerium's controller, unknown here");
        }
    }
}
