//! The options this server knows (they are in [`crate::keys`]) but does not act on: each is either
//! accepted with a warning or refused, with the reason. No option is read and then silently
//! ignored: `tests/key_table.rs` fails unless every key of [`crate::keys`] is in [`UNSUPPORTED`]
//! exactly once or is read by the running server.
//!
//! Keys are qualified: `name` for a global option, `routes.name` for a route option,
//! `downstream_mtls.name` for a field of `downstream_mtls`. Removing an entry (once the option is
//! wired) is a one-line change.
//!
//! An option set to an "off" value (`false`, `0`, an empty string, list or object, or nothing) is
//! what the server does anyway, and is not reported.

use ppl::value::{Value, ValueKind};

/// How an option that the server does not act on is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Accepted with a warning (`config::option::not_supported`): the option has no effect here.
    Warned(&'static str),
    /// Refused (`config::option::refused`): running without what it asks for would be a surprise
    /// worse than not starting (a security control, a mode this server does not have).
    Refused(&'static str),
}

use Support::{Refused, Warned};

const TRACING_LOG: &str = "the exporter's own messages follow `log_level` here";
const ENVOY: &str = "there is no envoy here: one process serves every listener";
const DNS: &str = "upstream names are resolved by the system resolver here";
const BRANDING: &str = "the built-in pages are not branded here";
const PORTAL: &str = "the routes portal is not served here";
const SSH: &str = "ssh is not served here";
const MCP: &str = "mcp routes are not served here";
const CLUSTER: &str =
    "a raft-clustered databroker is not supported here; replicas share state with `databroker_storage_type: postgres`";
const ENVOY_CLUSTER: &str = "envoy cluster fields are not read here; the route's own options configure its upstream";

/// Every option the server knows but does not act on, with how it is treated and why.
pub const UNSUPPORTED: &[(&str, Support)] = &[
    // Listeners and protocols.
    ("codec_type", Warned("http/1.1 and http/2 are negotiated by alpn here; http/3 is not served")),
    ("grpc_client_timeout", Warned("calls between services use fixed timeouts here")),
    (
        "dns_lookup_family",
        Warned(
            "route upstreams ignore it (they use every address the system resolver gives); only the authorize and databroker clients follow it",
        ),
    ),
    ("dns_query_timeout", Warned(DNS)),
    ("dns_query_tries", Warned(DNS)),
    ("dns_udp_max_queries", Warned(DNS)),
    ("dns_use_tcp", Warned(DNS)),
    ("debug_address", Warned("there is no debug listener here")),
    ("health_check_systemd_disabled", Warned("systemd is not notified here")),
    ("circuit_breaker_thresholds", Warned("connections and requests to upstreams are not limited here")),
    // Certificates.
    ("override_certificate_name", Warned("certificates are chosen by the requested server name here")),
    ("tls_derive", Warned("no certificate is derived here; set `certificate`/`certificate_key` or `certificates`")),
    // Identity.
    ("identity_providers", Warned("bearer tokens are checked with the one configured identity provider here")),
    ("jwt_groups_filter", Warned("the identity headers carry every group here")),
    (
        "google_cloud_serverless_authentication_service_account",
        Warned("google cloud serverless authentication is not supported here"),
    ),
    // Logs, metrics, tracing.
    ("proxy_log_level", Warned("one level, `log_level`, applies to every log here")),
    ("pomerium_debug", Warned("there is no debug mode here")),
    ("installation_id", Warned("nothing is reported to pomerium here")),
    ("otel_log_level", Warned(TRACING_LOG)),
    // Envoy.
    ("envoy_admin_access_log_path", Warned(ENVOY)),
    ("envoy_admin_profile_path", Warned(ENVOY)),
    ("envoy_admin_address", Warned(ENVOY)),
    ("envoy_bind_config_source_address", Warned(ENVOY)),
    ("envoy_bind_config_freebind", Warned(ENVOY)),
    ("envoy_dynamic_extensions", Warned(ENVOY)),
    // Databroker clustering; managed mode's control plane setting.
    ("databroker_cluster_node_id", Refused(CLUSTER)),
    ("databroker_cluster_nodes", Refused(CLUSTER)),
    ("databroker_cluster_leader_id", Refused(CLUSTER)),
    ("databroker_raft_bind_address", Refused(CLUSTER)),
    (
        "auto_apply_changesets",
        Warned("a control plane setting: a managed cluster applies every configuration its control plane ships"),
    ),
    // Branding.
    ("primary_color", Warned(BRANDING)),
    ("secondary_color", Warned(BRANDING)),
    ("darkmode_primary_color", Warned(BRANDING)),
    ("darkmode_secondary_color", Warned(BRANDING)),
    ("logo_url", Warned(BRANDING)),
    ("favicon_url", Warned(BRANDING)),
    ("error_message_first_paragraph", Warned(BRANDING)),
    // SSH and MCP.
    ("ssh_address", Refused(SSH)),
    ("ssh_host_keys", Warned(SSH)),
    ("ssh_host_key_files", Warned(SSH)),
    ("ssh_user_ca_key", Warned(SSH)),
    ("ssh_user_ca_key_file", Warned(SSH)),
    ("ssh_rls_enabled", Warned(SSH)),
    ("ssh_rls_additional_entries", Warned(SSH)),
    ("blob_storage", Warned("sessions are not recorded here")),
    ("session_recording_concurrency", Warned("sessions are not recorded here")),
    ("mcp_allowed_client_id_domains", Warned(MCP)),
    ("mcp_allowed_as_metadata_domains", Warned(MCP)),
    // Routes.
    ("routes.description", Warned(PORTAL)),
    ("routes.logo_url", Warned(PORTAL)),
    (
        "routes.tls_downstream_server_name",
        Warned("routes are matched by the request's host here, not by its tls server name"),
    ),
    ("routes.tls_upstream_allow_renegotiation", Warned("tls renegotiation is not supported here")),
    (
        "routes.enable_google_cloud_serverless_authentication",
        Warned("google cloud serverless authentication is not supported here"),
    ),
    (
        "routes.idp_client_secret",
        Warned("sign-in uses the global identity provider's client here (`idp_client_secret`)"),
    ),
    ("routes.jwt_issuer_format", Warned("the global `jwt_issuer_format` applies to every route here")),
    ("routes.identity_providers", Warned("bearer tokens are checked with the one configured identity provider here")),
    ("routes.jwt_groups_filter", Warned("the identity headers carry every group here")),
    (
        "routes.health_checks",
        Warned("upstreams are not health-checked here; `outlier_detection` ejects failing endpoints"),
    ),
    ("routes.circuit_breaker_thresholds", Warned("connections and requests to upstreams are not limited here")),
    (
        "routes.mcp",
        Refused(
            "mcp routes are not served here: pomerium's mcp authorization (client registration, upstream tokens) is not implemented",
        ),
    ),
    ("routes.upstream_tunnel", Refused("upstream tunnels are not supported here")),
    ("routes.ssh_policy", Warned(SSH)),
    ("routes.ssh_policy_rego", Warned(SSH)),
    ("routes.session_recording", Warned("sessions are not recorded here")),
    // Envoy cluster fields on a route (Pomerium reads them into the route's cluster).
    ("routes.alt_stat_name", Warned(ENVOY_CLUSTER)),
    ("routes.type", Warned(ENVOY_CLUSTER)),
    ("routes.cluster_type", Warned(ENVOY_CLUSTER)),
    ("routes.eds_cluster_config", Warned(ENVOY_CLUSTER)),
    ("routes.connect_timeout", Warned(ENVOY_CLUSTER)),
    ("routes.per_connection_buffer_limit_bytes", Warned(ENVOY_CLUSTER)),
    ("routes.load_assignment", Warned(ENVOY_CLUSTER)),
    ("routes.max_requests_per_connection", Warned(ENVOY_CLUSTER)),
    ("routes.circuit_breakers", Warned(ENVOY_CLUSTER)),
    ("routes.upstream_http_protocol_options", Warned(ENVOY_CLUSTER)),
    ("routes.common_http_protocol_options", Warned(ENVOY_CLUSTER)),
    ("routes.http_protocol_options", Warned(ENVOY_CLUSTER)),
    ("routes.http2_protocol_options", Warned(ENVOY_CLUSTER)),
    ("routes.typed_extension_protocol_options", Warned(ENVOY_CLUSTER)),
    ("routes.dns_refresh_rate", Warned(ENVOY_CLUSTER)),
    ("routes.dns_failure_refresh_rate", Warned(ENVOY_CLUSTER)),
    ("routes.respect_dns_ttl", Warned(ENVOY_CLUSTER)),
    ("routes.dns_lookup_family", Warned(ENVOY_CLUSTER)),
    ("routes.dns_resolvers", Warned(ENVOY_CLUSTER)),
    ("routes.use_tcp_for_dns_lookups", Warned(ENVOY_CLUSTER)),
    ("routes.dns_resolution_config", Warned(ENVOY_CLUSTER)),
    ("routes.typed_dns_resolver_config", Warned(ENVOY_CLUSTER)),
    ("routes.wait_for_warm_on_init", Warned(ENVOY_CLUSTER)),
    ("routes.cleanup_interval", Warned(ENVOY_CLUSTER)),
    ("routes.upstream_bind_config", Warned(ENVOY_CLUSTER)),
    ("routes.lb_subset_config", Warned(ENVOY_CLUSTER)),
    ("routes.ring_hash_lb_config", Warned(ENVOY_CLUSTER)),
    ("routes.maglev_lb_config", Warned(ENVOY_CLUSTER)),
    ("routes.original_dst_lb_config", Warned(ENVOY_CLUSTER)),
    ("routes.least_request_lb_config", Warned(ENVOY_CLUSTER)),
    ("routes.round_robin_lb_config", Warned(ENVOY_CLUSTER)),
    ("routes.common_lb_config", Warned(ENVOY_CLUSTER)),
    ("routes.transport_socket", Warned(ENVOY_CLUSTER)),
    ("routes.transport_socket_matches", Warned(ENVOY_CLUSTER)),
    ("routes.metadata", Warned(ENVOY_CLUSTER)),
    ("routes.protocol_selection", Warned(ENVOY_CLUSTER)),
    ("routes.upstream_connection_options", Warned(ENVOY_CLUSTER)),
    ("routes.close_connections_on_host_health_failure", Warned(ENVOY_CLUSTER)),
    ("routes.ignore_health_on_host_removal", Warned(ENVOY_CLUSTER)),
    ("routes.filters", Warned(ENVOY_CLUSTER)),
    ("routes.lrs_server", Warned(ENVOY_CLUSTER)),
    ("routes.track_timeout_budgets", Warned(ENVOY_CLUSTER)),
    ("routes.upstream_config", Warned(ENVOY_CLUSTER)),
    ("routes.track_cluster_stats", Warned(ENVOY_CLUSTER)),
    ("routes.preconnect_policy", Warned(ENVOY_CLUSTER)),
    ("routes.connection_pool_per_downstream_connection", Warned(ENVOY_CLUSTER)),
];

/// How the option `qualified` (`name`, `routes.name`, `downstream_mtls.name`) is treated, when the
/// server does not act on it.
pub fn lookup(qualified: &str) -> Option<Support> {
    UNSUPPORTED.iter().find(|(key, _)| *key == qualified).map(|(_, support)| *support)
}

/// [`lookup`] of the route option `key` (`routes.<key>`).
pub(crate) fn lookup_route(key: &str) -> Option<Support> {
    UNSUPPORTED
        .iter()
        .find(|(qualified, _)| qualified.strip_prefix("routes.") == Some(key))
        .map(|(_, support)| *support)
}

/// Whether a value leaves the option at what the server does anyway: nothing, `false`, `0`, an
/// empty string, list or object (and `false` as Go's `strconv.ParseBool` spells it).
pub(crate) fn is_off(value: &Value) -> bool {
    match &value.kind {
        ValueKind::Null => true,
        ValueKind::Bool(on) => !on,
        ValueKind::Number(n) => n.as_f64() == 0.0,
        ValueKind::String(s) => matches!(s.trim(), "" | "0" | "f" | "F" | "false" | "FALSE" | "False"),
        ValueKind::Array(items) => items.is_empty(),
        ValueKind::Object(entries) => entries.is_empty(),
    }
}
