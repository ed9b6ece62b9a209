//! The option names Pomerium knows (`config/options.go`, `config/policy.go`, `config/autocert.go`,
//! `config/mtls.go`), the ones it removed (`config/options_check.go`), and the Envoy cluster fields a
//! route may carry, which Pomerium reads separately and never reports as unknown. The typed
//! options' names come from their declarations (`crate::declare`), in `options.rs` and `route.rs`.

pub use crate::options::{DOWNSTREAM_MTLS, GLOBAL_TYPED};

/// Global options Pomerium knows that this crate keeps as written (in [`crate::Options::other`]):
/// tracing, Envoy bootstrap, branding, clustering, SSH and managed mode.
pub const GLOBAL_RAW: &[&str] = &[
    "installation_id",
    "pomerium_debug",
    "override_certificate_name",
    "tls_derive",
    "otel_log_level",
    "envoy_admin_access_log_path",
    "envoy_admin_profile_path",
    "envoy_admin_address",
    "envoy_bind_config_source_address",
    "envoy_bind_config_freebind",
    "envoy_dynamic_extensions",
    "dns_query_timeout",
    "dns_query_tries",
    "dns_udp_max_queries",
    "dns_use_tcp",
    "circuit_breaker_thresholds",
    "health_check_systemd_disabled",
    "blob_storage",
    "session_recording_concurrency",
    "mcp_allowed_client_id_domains",
    "mcp_allowed_as_metadata_domains",
    "google_cloud_serverless_authentication_service_account",
    "databroker_cluster_node_id",
    "databroker_cluster_nodes",
    "databroker_cluster_leader_id",
    "databroker_raft_bind_address",
    "pomerium_zero_token",
    "auto_apply_changesets",
    "primary_color",
    "secondary_color",
    "darkmode_primary_color",
    "darkmode_secondary_color",
    "logo_url",
    "favicon_url",
    "error_message_first_paragraph",
    "ssh_address",
    "ssh_host_keys",
    "ssh_host_key_files",
    "ssh_user_ca_key",
    "ssh_user_ca_key_file",
    "ssh_rls_enabled",
    "ssh_rls_additional_entries",
];

/// What replaced Pomerium's removed tracing options (`upgrading#removed-tracing-options`).
const TRACING_REMOVED: &str =
    "tracing is configured with the `otel_*` options (`otel_traces_exporter: otlp`, `otel_exporter_otlp_endpoint`)";

/// Options Pomerium removed, refusing to start when they are set, with what replaced them.
pub const REMOVED_GLOBAL: &[(&str, &str)] = &[
    ("client_ca", "use `downstream_mtls.ca`"),
    ("client_ca_file", "use `downstream_mtls.ca_file`"),
    ("idp_service_account", "directory sync moved out of pomerium; use the identity provider's claims in policies"),
    ("idp_refresh_directory_timeout", "directory sync moved out of pomerium"),
    ("idp_refresh_directory_interval", "directory sync moved out of pomerium"),
    ("idp_qps", "directory sync moved out of pomerium"),
    ("tracing_datadog_address", TRACING_REMOVED),
    ("tracing_jaeger_collector_endpoint", TRACING_REMOVED),
    ("tracing_jaeger_agent_endpoint", TRACING_REMOVED),
    ("tracing_zipkin_endpoint", TRACING_REMOVED),
    ("tracing_provider", TRACING_REMOVED),
    (
        "tracing_sample_rate",
        "tracing is configured with the `otel_*` options; the sample rate is `otel_traces_sampler_arg`",
    ),
    ("policy_file", "write the routes in the config file under `routes:`"),
];

pub use crate::route::ROUTE;

/// Route options Pomerium removed.
pub const REMOVED_ROUTE: &[(&str, &str)] = &[
    ("allowed_groups", "match groups in the route's `policy`, e.g. `allow: {or: [{claim/groups: admins}]}`"),
    (
        "set_authorization_header",
        "use `set_request_headers: {Authorization: \"Bearer ${pomerium.id_token}\"}` (or `${pomerium.access_token}`)",
    ),
];

/// Fields of Envoy's `Cluster` message, which Pomerium also reads from each route and never
/// reports as unknown (`config/options_check.go`). They are kept as written.
pub const ENVOY_CLUSTER: &[&str] = &[
    "alt_stat_name",
    "type",
    "cluster_type",
    "eds_cluster_config",
    "connect_timeout",
    "per_connection_buffer_limit_bytes",
    "lb_policy",
    "load_assignment",
    "max_requests_per_connection",
    "circuit_breakers",
    "upstream_http_protocol_options",
    "common_http_protocol_options",
    "http_protocol_options",
    "http2_protocol_options",
    "typed_extension_protocol_options",
    "dns_refresh_rate",
    "dns_failure_refresh_rate",
    "respect_dns_ttl",
    "dns_lookup_family",
    "dns_resolvers",
    "use_tcp_for_dns_lookups",
    "dns_resolution_config",
    "typed_dns_resolver_config",
    "wait_for_warm_on_init",
    "cleanup_interval",
    "upstream_bind_config",
    "lb_subset_config",
    "ring_hash_lb_config",
    "maglev_lb_config",
    "original_dst_lb_config",
    "least_request_lb_config",
    "round_robin_lb_config",
    "common_lb_config",
    "transport_socket",
    "transport_socket_matches",
    "metadata",
    "protocol_selection",
    "upstream_connection_options",
    "close_connections_on_host_health_failure",
    "ignore_health_on_host_removal",
    "filters",
    "lrs_server",
    "track_timeout_budgets",
    "upstream_config",
    "track_cluster_stats",
    "preconnect_policy",
    "connection_pool_per_downstream_connection",
];

/// The environment variable for an option: its name upper-cased (`bindEnvs`).
pub fn env_name(prefix: &str, key: &str) -> String {
    format!("{prefix}{}", key.to_ascii_uppercase())
}

pub fn removed(table: &[(&'static str, &'static str)], key: &str) -> Option<&'static str> {
    table.iter().find(|(name, _)| *name == key).map(|(_, help)| *help)
}
