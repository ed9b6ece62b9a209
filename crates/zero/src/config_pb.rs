//! Protobuf `pomerium.config.Config` (pomerium's `pkg/grpc/config/config.proto`) to and from the
//! configuration document both sides work with: `{"name", "routes": [...], "settings": {...},
//! "certificates": [...]}`, routes and settings with `config.yaml` keys (a route's policies as its
//! `sub_policies`), certificates as `{cert, key, id}` PEM text. This is what a resource bundle's
//! `config` record carries on the wire (an `Any` of type [`CONFIG_TYPE_URL`], as Pomerium Zero
//! ships it) and what `PUT /cluster/v1/config/import` sends.
//!
//! Read and written by tables of the upstream field numbers. Reading is strict: a field this
//! build does not know, a field it knows but does not act on ([`Kind::Refused`]: key pairs by id,
//! MCP, SSH tunnels, Envoy's outlier detection and health checks...) or a value that does not read
//! is an error naming the field, never dropped. Fields that only say where an entity came from
//! (namespace, timestamps, ...) are [`Kind::Meta`]: read and left out. Writing refuses a key no
//! table has, so nothing the console checked is silently left out of what it ships.

use serde_json::{Map, Value, json};

/// The `Any` type of a configuration record's data.
pub const CONFIG_TYPE_URL: &str = "type.googleapis.com/pomerium.config.Config";

/// Protobuf at the wire level: enough for these tables and for the console's `ConfigService`.
pub mod wire {
    /// One field's value as read.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Wire<'a> {
        Varint(u64),
        Fixed64(u64),
        Bytes(&'a [u8]),
        Fixed32(u32),
    }

    /// A varint; `None` when it does not end within ten bytes or the input.
    pub fn varint(input: &mut &[u8]) -> Option<u64> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = input.split_first()?;
            *input = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// The fields of one message, in order; `None` when the bytes are not a protobuf message.
    pub fn fields(mut input: &[u8]) -> Option<Vec<(u64, Wire<'_>)>> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let tag = varint(&mut input)?;
            let number = tag >> 3;
            if number == 0 {
                return None;
            }
            let value = match tag & 7 {
                0 => Wire::Varint(varint(&mut input)?),
                1 => {
                    let (bytes, rest) = input.split_first_chunk::<8>()?;
                    input = rest;
                    Wire::Fixed64(u64::from_le_bytes(*bytes))
                }
                2 => {
                    let len = usize::try_from(varint(&mut input)?).ok()?;
                    let (bytes, rest) = input.split_at_checked(len)?;
                    input = rest;
                    Wire::Bytes(bytes)
                }
                5 => {
                    let (bytes, rest) = input.split_first_chunk::<4>()?;
                    input = rest;
                    Wire::Fixed32(u32::from_le_bytes(*bytes))
                }
                _ => return None,
            };
            out.push((number, value));
        }
        Some(out)
    }

    /// A string field's text.
    pub fn text(value: &Wire<'_>) -> Option<String> {
        match value {
            Wire::Bytes(bytes) => std::str::from_utf8(bytes).ok().map(str::to_owned),
            _ => None,
        }
    }

    /// A `google.protobuf.Duration` as a duration string (`90s`, `1500ms`, `7ns`); `None` for a
    /// negative one or one that does not read.
    pub fn duration(value: &Wire<'_>) -> Option<String> {
        let Wire::Bytes(bytes) = value else { return None };
        let mut seconds: i64 = 0;
        let mut nanos: i64 = 0;
        for (number, value) in fields(bytes)? {
            match (number, value) {
                #[expect(clippy::cast_possible_wrap, reason = "protobuf int64/int32 are two's complement varints")]
                (1, Wire::Varint(v)) => seconds = v as i64,
                #[expect(clippy::cast_possible_wrap, reason = "protobuf int64/int32 are two's complement varints")]
                (2, Wire::Varint(v)) => nanos = v as i64,
                _ => return None,
            }
        }
        if seconds < 0 || !(0..1_000_000_000).contains(&nanos) {
            return None;
        }
        Some(if nanos == 0 {
            format!("{seconds}s")
        } else if nanos % 1_000_000 == 0 {
            format!("{}ms", seconds.checked_mul(1000)?.checked_add(nanos / 1_000_000)?)
        } else {
            format!("{}ns", seconds.checked_mul(1_000_000_000)?.checked_add(nanos)?)
        })
    }

    /// A `map<string, string>` entry.
    pub fn map_entry(value: &Wire<'_>) -> Option<(String, String)> {
        let Wire::Bytes(bytes) = value else { return None };
        let mut key = String::new();
        let mut val = String::new();
        for (number, value) in fields(bytes)? {
            match number {
                1 => key = text(&value)?,
                2 => val = text(&value)?,
                _ => return None,
            }
        }
        Some((key, val))
    }

    pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
        loop {
            let byte = u8::try_from(value & 0x7f).unwrap_or(0);
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    pub fn put_bytes(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
        put_varint(out, (number << 3) | 2);
        put_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    pub fn put_uint(out: &mut Vec<u8>, number: u64, value: u64) {
        put_varint(out, number << 3);
        put_varint(out, value);
    }

    pub fn put_fixed64(out: &mut Vec<u8>, number: u64, value: u64) {
        put_varint(out, (number << 3) | 1);
        out.extend_from_slice(&value.to_le_bytes());
    }

    /// `30s`, `1m30s`, `1500ms`, `2h` (Go's duration syntax) as seconds and nanoseconds.
    pub fn parse_duration(text: &str) -> Option<(i64, i32)> {
        let mut nanos: i128 = 0;
        let mut rest = text.trim();
        if rest == "0" {
            return Some((0, 0));
        }
        if rest.is_empty() {
            return None;
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
            let (number, tail) = rest.split_at(digits);
            let number: f64 = number.parse().ok()?;
            let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            let scale: f64 = match unit {
                "h" => 3.6e12,
                "m" => 6e10,
                "s" => 1e9,
                "ms" => 1e6,
                "us" | "µs" => 1e3,
                "ns" => 1.0,
                _ => return None,
            };
            #[expect(clippy::cast_possible_truncation, reason = "durations are far below i128's range")]
            let part = (number * scale) as i128;
            nanos = nanos.checked_add(part)?;
            rest = tail;
        }
        let seconds = i64::try_from(nanos / 1_000_000_000).ok()?;
        let rest = i32::try_from(nanos % 1_000_000_000).ok()?;
        Some((seconds, rest))
    }

    /// A duration string as a `google.protobuf.Duration` field; `false` when it does not parse.
    #[expect(clippy::cast_sign_loss, reason = "protobuf int64/int32 are written as two's complement varints")]
    pub fn put_duration(out: &mut Vec<u8>, number: u64, text: &str) -> bool {
        let Some((seconds, nanos)) = parse_duration(text) else { return false };
        let mut inner = Vec::new();
        if seconds != 0 {
            put_uint(&mut inner, 1, seconds as u64);
        }
        if nanos != 0 {
            put_uint(&mut inner, 2, i64::from(nanos) as u64);
        }
        put_bytes(out, number, &inner);
        true
    }
}

use wire::{Wire, fields, put_bytes, put_fixed64, put_uint, text};

/// How a field is read and written.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `string` (or `bytes` holding text: PEM, PPL).
    Str,
    Bool,
    /// `uint32`/`uint64`.
    Uint,
    /// `int32`/`int64`.
    Int,
    Double,
    /// `google.protobuf.Duration`, as a duration string.
    Duration,
    /// `repeated string`.
    StrList,
    /// `repeated uint32` (packed or not).
    UintList,
    /// `map<string, string>`.
    StrMap,
    /// `map<string, bool>`.
    BoolMap,
    /// `map<string, google.protobuf.ListValue>` (`allowed_idp_claims`).
    Claims,
    /// A `StringList` message (`values = 1`), as a list.
    Words,
    /// `repeated SANMatcher`, as `[{<type>: pattern}]`.
    SanMatchers,
    /// An enum, by its values' `config.yaml` spellings (a value with an empty spelling is unset).
    Enum(&'static [(u64, &'static str)]),
    Msg(&'static [Field]),
    MsgList(&'static [Field]),
    /// Where the entity came from (ids, timestamps, namespace): read and left out.
    Meta,
    /// Known upstream, not acted on here: refused with the reason (unless empty or zero).
    Refused(&'static str),
}

/// A field: number, upstream name, `config.yaml` key (the same but for `idp_scopes`,
/// `idp_request_params`, `tls_derive` and a route's `sub_policies`), kind.
pub type Field = (u64, &'static str, &'static str, Kind);

const KEY_PAIRS: &str =
    "key pairs referenced by id are not resolved by this cluster; send the PEM text in the field beside it";
const ENVOY: &str = "envoy cluster settings are not read by this cluster";

const ISSUER_FORMAT: &[(u64, &str)] = &[(0, "hostOnly"), (1, "uri")];
const BEARER_TOKEN_FORMAT: &[(u64, &str)] =
    &[(0, ""), (1, "default"), (2, "idp_access_token"), (3, "idp_identity_token"), (4, "jwt")];
const CODEC_TYPE: &[(u64, &str)] = &[(0, "auto"), (1, "http1"), (2, "http2"), (3, "http3")];
const ESCAPED_SLASHES: &[(u64, &str)] =
    &[(0, ""), (1, "keep_unchanged"), (2, "reject_request"), (3, "unescape_and_redirect"), (4, "unescape_and_forward")];
const UNDERSCORES: &[(u64, &str)] = &[(0, ""), (1, "allow"), (2, "reject_request"), (3, "drop_header")];
const ENFORCEMENT: &[(u64, &str)] =
    &[(0, ""), (1, "policy"), (2, "policy_with_default_deny"), (3, "reject_connection")];
/// `SANMatcher.SANType`.
const SAN_TYPES: &[(u64, &str)] =
    &[(1, "email"), (2, "dns"), (3, "uri"), (4, "ip_address"), (5, "user_principal_name")];

pub const CONFIG: &[Field] = &[
    (1, "name", "name", Kind::Str),
    (2, "routes", "routes", Kind::MsgList(ROUTE)),
    (3, "settings", "settings", Kind::Msg(SETTINGS)),
];

pub const REDIRECT: &[Field] = &[
    (1, "https_redirect", "https_redirect", Kind::Bool),
    (2, "scheme_redirect", "scheme_redirect", Kind::Str),
    (3, "host_redirect", "host_redirect", Kind::Str),
    (4, "port_redirect", "port_redirect", Kind::Uint),
    (5, "path_redirect", "path_redirect", Kind::Str),
    (6, "prefix_rewrite", "prefix_rewrite", Kind::Str),
    (7, "response_code", "response_code", Kind::Int),
    (8, "strip_query", "strip_query", Kind::Bool),
];

pub const DIRECT_RESPONSE: &[Field] = &[(1, "status", "status", Kind::Uint), (2, "body", "body", Kind::Str)];

pub const REWRITE_HEADER: &[Field] =
    &[(1, "header", "header", Kind::Str), (3, "prefix", "prefix", Kind::Str), (2, "value", "value", Kind::Str)];

pub const CIRCUIT_BREAKER: &[Field] = &[
    (1, "max_connections", "max_connections", Kind::Uint),
    (2, "max_pending_requests", "max_pending_requests", Kind::Uint),
    (3, "max_requests", "max_requests", Kind::Uint),
    (4, "max_retries", "max_retries", Kind::Uint),
    (5, "max_connection_pools", "max_connection_pools", Kind::Uint),
];

pub const SESSION_RECORDING: &[Field] = &[(1, "enabled", "enabled", Kind::Bool)];

/// `pomerium.config.Policy`, as a route's `sub_policies` entry.
pub const POLICY: &[Field] = &[
    (1, "id", "id", Kind::Str),
    (11, "namespace_id", "namespace_id", Kind::Meta),
    (12, "originator_id", "originator_id", Kind::Meta),
    (2, "name", "name", Kind::Str),
    (13, "description", "description", Kind::Meta),
    (14, "enforced", "enforced", Kind::Meta),
    (3, "allowed_users", "allowed_users", Kind::StrList),
    (5, "allowed_domains", "allowed_domains", Kind::StrList),
    (7, "allowed_idp_claims", "allowed_idp_claims", Kind::Claims),
    (6, "rego", "rego", Kind::StrList),
    (10, "source_ppl", "source_ppl", Kind::Str),
    (8, "explanation", "explanation", Kind::Str),
    (9, "remediation", "remediation", Kind::Str),
    (15, "created_at", "created_at", Kind::Meta),
    (16, "modified_at", "modified_at", Kind::Meta),
    (17, "enforced_routes", "enforced_routes", Kind::Meta),
    (18, "assigned_routes", "assigned_routes", Kind::Meta),
    (19, "namespace_name", "namespace_name", Kind::Meta),
];

/// `pomerium.config.PPLPolicy`: its raw PPL, read as a sub-policy's `source_ppl`.
pub const PPL_POLICY: &[Field] = &[(1, "raw", "source_ppl", Kind::Str)];

pub const ROUTE: &[Field] = &[
    (28, "id", "id", Kind::Str),
    (80, "namespace_id", "namespace_id", Kind::Meta),
    (81, "originator_id", "originator_id", Kind::Meta),
    (1, "name", "name", Kind::Str),
    (75, "stat_name", "stat_name", Kind::Str),
    (67, "description", "description", Kind::Str),
    (68, "logo_url", "logo_url", Kind::Str),
    (2, "from", "from", Kind::Str),
    (3, "to", "to", Kind::StrList),
    (34, "redirect", "redirect", Kind::Msg(REDIRECT)),
    (62, "response", "response", Kind::Msg(DIRECT_RESPONSE)),
    (37, "load_balancing_weights", "load_balancing_weights", Kind::UintList),
    (4, "allowed_users", "allowed_users", Kind::StrList),
    (6, "allowed_domains", "allowed_domains", Kind::StrList),
    (32, "allowed_idp_claims", "allowed_idp_claims", Kind::Claims),
    (7, "prefix", "prefix", Kind::Str),
    (8, "path", "path", Kind::Str),
    (9, "regex", "regex", Kind::Str),
    (29, "prefix_rewrite", "prefix_rewrite", Kind::Str),
    (30, "regex_rewrite_pattern", "regex_rewrite_pattern", Kind::Str),
    (31, "regex_rewrite_substitution", "regex_rewrite_substitution", Kind::Str),
    (61, "regex_priority_order", "regex_priority_order", Kind::Int),
    (10, "cors_allow_preflight", "cors_allow_preflight", Kind::Bool),
    (11, "allow_public_unauthenticated_access", "allow_public_unauthenticated_access", Kind::Bool),
    (33, "allow_any_authenticated_user", "allow_any_authenticated_user", Kind::Bool),
    (12, "timeout", "timeout", Kind::Duration),
    (43, "idle_timeout", "idle_timeout", Kind::Duration),
    (13, "allow_websockets", "allow_websockets", Kind::Bool),
    (44, "allow_spdy", "allow_spdy", Kind::Bool),
    (14, "tls_skip_verify", "tls_skip_verify", Kind::Bool),
    (15, "tls_server_name", "tls_server_name", Kind::Str),
    (57, "tls_upstream_server_name", "tls_upstream_server_name", Kind::Str),
    (58, "tls_downstream_server_name", "tls_downstream_server_name", Kind::Str),
    (16, "tls_custom_ca", "tls_custom_ca", Kind::Str),
    (17, "tls_custom_ca_file", "tls_custom_ca_file", Kind::Str),
    (82, "tls_custom_ca_key_pair_id", "tls_custom_ca_key_pair_id", Kind::Refused(KEY_PAIRS)),
    (18, "tls_client_cert", "tls_client_cert", Kind::Str),
    (19, "tls_client_key", "tls_client_key", Kind::Str),
    (20, "tls_client_cert_file", "tls_client_cert_file", Kind::Str),
    (21, "tls_client_key_file", "tls_client_key_file", Kind::Str),
    (83, "tls_client_key_pair_id", "tls_client_key_pair_id", Kind::Refused(KEY_PAIRS)),
    (38, "tls_downstream_client_ca", "tls_downstream_client_ca", Kind::Str),
    (39, "tls_downstream_client_ca_file", "tls_downstream_client_ca_file", Kind::Str),
    (84, "tls_downstream_client_ca_key_pair_id", "tls_downstream_client_ca_key_pair_id", Kind::Refused(KEY_PAIRS)),
    (60, "tls_upstream_allow_renegotiation", "tls_upstream_allow_renegotiation", Kind::Bool),
    (22, "set_request_headers", "set_request_headers", Kind::StrMap),
    (23, "remove_request_headers", "remove_request_headers", Kind::StrList),
    (41, "set_response_headers", "set_response_headers", Kind::StrMap),
    (40, "rewrite_response_headers", "rewrite_response_headers", Kind::MsgList(REWRITE_HEADER)),
    (24, "preserve_host_header", "preserve_host_header", Kind::Bool),
    (25, "pass_identity_headers", "pass_identity_headers", Kind::Bool),
    (26, "kubernetes_service_account_token", "kubernetes_service_account_token", Kind::Str),
    (64, "kubernetes_service_account_token_file", "kubernetes_service_account_token_file", Kind::Str),
    (
        85,
        "kubernetes_service_account_token_key_pair_id",
        "kubernetes_service_account_token_key_pair_id",
        Kind::Refused(KEY_PAIRS),
    ),
    (42, "enable_google_cloud_serverless_authentication", "enable_google_cloud_serverless_authentication", Kind::Bool),
    (65, "jwt_issuer_format", "jwt_issuer_format", Kind::Enum(ISSUER_FORMAT)),
    (66, "jwt_groups_filter", "jwt_groups_filter", Kind::StrList),
    (89, "jwt_groups_filter_infer_from_ppl", "jwt_groups_filter_infer_from_ppl", Kind::Bool),
    (70, "bearer_token_format", "bearer_token_format", Kind::Enum(BEARER_TOKEN_FORMAT)),
    (71, "depends_on", "depends_on", Kind::StrList),
    (27, "policies", "sub_policies", Kind::MsgList(POLICY)),
    (63, "ppl_policies", "ppl_policies", Kind::MsgList(PPL_POLICY)),
    (86, "policy_ids", "policy_ids", Kind::Meta),
    (50, "host_rewrite", "host_rewrite", Kind::Str),
    (51, "host_rewrite_header", "host_rewrite_header", Kind::Str),
    (52, "host_path_regex_rewrite_pattern", "host_path_regex_rewrite_pattern", Kind::Str),
    (53, "host_path_regex_rewrite_substitution", "host_path_regex_rewrite_substitution", Kind::Str),
    (55, "idp_client_id", "idp_client_id", Kind::Str),
    (56, "idp_client_secret", "idp_client_secret", Kind::Str),
    (69, "idp_access_token_allowed_audiences", "idp_access_token_allowed_audiences", Kind::Words),
    (95, "identity_providers", "identity_providers", Kind::StrList),
    (59, "show_error_details", "show_error_details", Kind::Bool),
    (72, "mcp", "mcp", Kind::Refused("mcp routes are not served by this cluster")),
    (73, "circuit_breaker_thresholds", "circuit_breaker_thresholds", Kind::Msg(CIRCUIT_BREAKER)),
    (74, "upstream_tunnel", "upstream_tunnel", Kind::Refused("ssh upstream tunnels are not served by this cluster")),
    (76, "outlier_detection", "outlier_detection", Kind::Refused(ENVOY)),
    (77, "health_checks", "health_checks", Kind::Refused(ENVOY)),
    (78, "load_balancing_policy", "load_balancing_policy", Kind::Refused(ENVOY)),
    (79, "healthy_panic_threshold", "healthy_panic_threshold", Kind::Int),
    (93, "allow_upgrades", "allow_upgrades", Kind::Words),
    (94, "session_recording", "session_recording", Kind::Msg(SESSION_RECORDING)),
    (87, "created_at", "created_at", Kind::Meta),
    (88, "modified_at", "modified_at", Kind::Meta),
    (90, "enforced_policies", "enforced_policies", Kind::Meta),
    (91, "assigned_policies", "assigned_policies", Kind::Meta),
    (92, "namespace_name", "namespace_name", Kind::Meta),
];

/// `Settings.Certificate`: PEM text (read into the record's `certificates`).
pub const CERTIFICATE: &[Field] =
    &[(3, "cert_bytes", "cert", Kind::Str), (4, "key_bytes", "key", Kind::Str), (5, "id", "id", Kind::Str)];

pub const DOWNSTREAM_MTLS: &[Field] = &[
    (1, "ca", "ca", Kind::Str),
    (2, "crl", "crl", Kind::Str),
    (3, "enforcement", "enforcement", Kind::Enum(ENFORCEMENT)),
    (4, "match_subject_alt_names", "match_subject_alt_names", Kind::SanMatchers),
    (5, "max_verify_depth", "max_verify_depth", Kind::Uint),
    (6, "ca_key_pair_id", "ca_key_pair_id", Kind::Refused(KEY_PAIRS)),
];

pub const SETTINGS: &[Field] = &[
    (158, "id", "id", Kind::Meta),
    (159, "namespace_id", "namespace_id", Kind::Meta),
    (176, "cluster_id", "cluster_id", Kind::Meta),
    (160, "originator_id", "originator_id", Kind::Meta),
    (161, "name", "name", Kind::Meta),
    (71, "installation_id", "installation_id", Kind::Str),
    (3, "log_level", "log_level", Kind::Str),
    (114, "access_log_fields", "access_log_fields", Kind::Words),
    (115, "authorize_log_fields", "authorize_log_fields", Kind::Words),
    (4, "proxy_log_level", "proxy_log_level", Kind::Str),
    (5, "shared_secret", "shared_secret", Kind::Str),
    (6, "services", "services", Kind::Str),
    (7, "address", "address", Kind::Str),
    (8, "insecure_server", "insecure_server", Kind::Bool),
    (153, "dns_failure_refresh_rate", "dns_failure_refresh_rate", Kind::Duration),
    (60, "dns_lookup_family", "dns_lookup_family", Kind::Str),
    (149, "dns_query_timeout", "dns_query_timeout", Kind::Duration),
    (148, "dns_query_tries", "dns_query_tries", Kind::Uint),
    (154, "dns_refresh_rate", "dns_refresh_rate", Kind::Duration),
    (146, "dns_udp_max_queries", "dns_udp_max_queries", Kind::Uint),
    (147, "dns_use_tcp", "dns_use_tcp", Kind::Bool),
    (9, "certificates", "certificates", Kind::MsgList(CERTIFICATE)),
    (162, "certificate_key_pair_ids", "certificate_key_pair_ids", Kind::Refused(KEY_PAIRS)),
    (10, "http_redirect_addr", "http_redirect_addr", Kind::Str),
    (11, "timeout_read", "timeout_read", Kind::Duration),
    (12, "timeout_write", "timeout_write", Kind::Duration),
    (13, "timeout_idle", "timeout_idle", Kind::Duration),
    (14, "authenticate_service_url", "authenticate_service_url", Kind::Str),
    (82, "authenticate_internal_service_url", "authenticate_internal_service_url", Kind::Str),
    (93, "signout_redirect_url", "signout_redirect_url", Kind::Str),
    (16, "cookie_name", "cookie_name", Kind::Str),
    (17, "cookie_secret", "cookie_secret", Kind::Str),
    (18, "cookie_domain", "cookie_domain", Kind::Str),
    (20, "cookie_http_only", "cookie_http_only", Kind::Bool),
    (21, "cookie_expire", "cookie_expire", Kind::Duration),
    (113, "cookie_same_site", "cookie_same_site", Kind::Str),
    (22, "idp_client_id", "idp_client_id", Kind::Str),
    (23, "idp_client_secret", "idp_client_secret", Kind::Str),
    (24, "idp_provider", "idp_provider", Kind::Str),
    (25, "idp_provider_url", "idp_provider_url", Kind::Str),
    (137, "idp_access_token_allowed_audiences", "idp_access_token_allowed_audiences", Kind::Words),
    (
        188,
        "identity_providers",
        "identity_providers",
        Kind::Refused("bearer tokens are checked with the one configured identity provider here"),
    ),
    (26, "scopes", "idp_scopes", Kind::StrList),
    (30, "request_params", "idp_request_params", Kind::StrMap),
    (32, "authorize_service_urls", "authorize_service_urls", Kind::StrList),
    (83, "authorize_internal_service_url", "authorize_internal_service_url", Kind::Str),
    (33, "override_certificate_name", "override_certificate_name", Kind::Str),
    (34, "certificate_authority", "certificate_authority", Kind::Str),
    (163, "certificate_authority_key_pair_id", "certificate_authority_key_pair_id", Kind::Refused(KEY_PAIRS)),
    (96, "derive_tls", "tls_derive", Kind::Str),
    (36, "signing_key", "signing_key", Kind::Str),
    (69, "set_response_headers", "set_response_headers", Kind::StrMap),
    (63, "jwt_claims_headers", "jwt_claims_headers", Kind::StrMap),
    (139, "jwt_issuer_format", "jwt_issuer_format", Kind::Enum(ISSUER_FORMAT)),
    (119, "jwt_groups_filter", "jwt_groups_filter", Kind::StrList),
    (175, "jwt_groups_filter_infer_from_ppl", "jwt_groups_filter_infer_from_ppl", Kind::Bool),
    (138, "bearer_token_format", "bearer_token_format", Kind::Enum(BEARER_TOKEN_FORMAT)),
    (39, "default_upstream_timeout", "default_upstream_timeout", Kind::Duration),
    (156, "debug_address", "debug_address", Kind::Str),
    (40, "metrics_address", "metrics_address", Kind::Str),
    (64, "metrics_basic_auth", "metrics_basic_auth", Kind::Str),
    (
        65,
        "metrics_certificate",
        "metrics_certificate",
        Kind::Refused("the metrics listener's certificate is not taken from the control plane by this cluster"),
    ),
    (66, "metrics_client_ca", "metrics_client_ca", Kind::Str),
    (164, "metrics_client_ca_key_pair_id", "metrics_client_ca_key_pair_id", Kind::Refused(KEY_PAIRS)),
    (121, "otel_traces_exporter", "otel_traces_exporter", Kind::Str),
    (122, "otel_traces_sampler_arg", "otel_traces_sampler_arg", Kind::Double),
    (123, "otel_resource_attributes", "otel_resource_attributes", Kind::StrList),
    (124, "otel_log_level", "otel_log_level", Kind::Str),
    (125, "otel_attribute_value_length_limit", "otel_attribute_value_length_limit", Kind::Int),
    (126, "otel_exporter_otlp_endpoint", "otel_exporter_otlp_endpoint", Kind::Str),
    (127, "otel_exporter_otlp_traces_endpoint", "otel_exporter_otlp_traces_endpoint", Kind::Str),
    (128, "otel_exporter_otlp_protocol", "otel_exporter_otlp_protocol", Kind::Str),
    (129, "otel_exporter_otlp_traces_protocol", "otel_exporter_otlp_traces_protocol", Kind::Str),
    (130, "otel_exporter_otlp_headers", "otel_exporter_otlp_headers", Kind::StrList),
    (131, "otel_exporter_otlp_traces_headers", "otel_exporter_otlp_traces_headers", Kind::StrList),
    (132, "otel_exporter_otlp_timeout", "otel_exporter_otlp_timeout", Kind::Duration),
    (133, "otel_exporter_otlp_traces_timeout", "otel_exporter_otlp_traces_timeout", Kind::Duration),
    (134, "otel_bsp_schedule_delay", "otel_bsp_schedule_delay", Kind::Duration),
    (135, "otel_bsp_max_export_batch_size", "otel_bsp_max_export_batch_size", Kind::Int),
    (46, "grpc_address", "grpc_address", Kind::Str),
    (47, "grpc_insecure", "grpc_insecure", Kind::Bool),
    (99, "grpc_client_timeout", "grpc_client_timeout", Kind::Duration),
    (152, "databroker_cluster_leader_id", "databroker_cluster_leader_id", Kind::Str),
    (150, "databroker_cluster_node_id", "databroker_cluster_node_id", Kind::Str),
    (
        151,
        "databroker_cluster_nodes",
        "databroker_cluster_nodes",
        Kind::Refused("a raft-clustered databroker is not supported by this cluster"),
    ),
    (52, "databroker_service_urls", "databroker_service_urls", Kind::StrList),
    (84, "databroker_internal_service_url", "databroker_internal_service_url", Kind::Str),
    (155, "databroker_raft_bind_address", "databroker_raft_bind_address", Kind::Str),
    (101, "databroker_storage_type", "databroker_storage_type", Kind::Str),
    (102, "databroker_storage_connection_string", "databroker_storage_connection_string", Kind::Str),
    (116, "downstream_mtls", "downstream_mtls", Kind::Msg(DOWNSTREAM_MTLS)),
    (
        55,
        "google_cloud_serverless_authentication_service_account",
        "google_cloud_serverless_authentication_service_account",
        Kind::Str,
    ),
    (107, "use_proxy_protocol", "use_proxy_protocol", Kind::Bool),
    (56, "autocert", "autocert", Kind::Bool),
    (76, "autocert_ca", "autocert_ca", Kind::Str),
    (165, "autocert_ca_key_pair_id", "autocert_ca_key_pair_id", Kind::Refused(KEY_PAIRS)),
    (77, "autocert_email", "autocert_email", Kind::Str),
    (57, "autocert_use_staging", "autocert_use_staging", Kind::Bool),
    (78, "autocert_eab_key_id", "autocert_eab_key_id", Kind::Str),
    (79, "autocert_eab_mac_key", "autocert_eab_mac_key", Kind::Str),
    (58, "autocert_must_staple", "autocert_must_staple", Kind::Bool),
    (59, "autocert_dir", "autocert_dir", Kind::Str),
    (80, "autocert_trusted_ca", "autocert_trusted_ca", Kind::Str),
    (166, "autocert_trusted_ca_key_pair_id", "autocert_trusted_ca_key_pair_id", Kind::Refused(KEY_PAIRS)),
    (61, "skip_xff_append", "skip_xff_append", Kind::Bool),
    (70, "xff_num_trusted_hops", "xff_num_trusted_hops", Kind::Uint),
    (108, "envoy_admin_access_log_path", "envoy_admin_access_log_path", Kind::Str),
    (109, "envoy_admin_profile_path", "envoy_admin_profile_path", Kind::Str),
    (110, "envoy_admin_address", "envoy_admin_address", Kind::Str),
    (111, "envoy_bind_config_source_address", "envoy_bind_config_source_address", Kind::Str),
    (112, "envoy_bind_config_freebind", "envoy_bind_config_freebind", Kind::Bool),
    (68, "programmatic_redirect_domain_whitelist", "programmatic_redirect_domain_whitelist", Kind::StrList),
    (73, "codec_type", "codec_type", Kind::Enum(CODEC_TYPE)),
    (85, "primary_color", "primary_color", Kind::Str),
    (86, "secondary_color", "secondary_color", Kind::Str),
    (87, "darkmode_primary_color", "darkmode_primary_color", Kind::Str),
    (88, "darkmode_secondary_color", "darkmode_secondary_color", Kind::Str),
    (89, "logo_url", "logo_url", Kind::Str),
    (90, "favicon_url", "favicon_url", Kind::Str),
    (91, "error_message_first_paragraph", "error_message_first_paragraph", Kind::Str),
    (117, "pass_identity_headers", "pass_identity_headers", Kind::Bool),
    (118, "runtime_flags", "runtime_flags", Kind::BoolMap),
    (136, "http3_advertise_port", "http3_advertise_port", Kind::Uint),
    (140, "circuit_breaker_thresholds", "circuit_breaker_thresholds", Kind::Msg(CIRCUIT_BREAKER)),
    (141, "ssh_address", "ssh_address", Kind::Str),
    (142, "ssh_host_key_files", "ssh_host_key_files", Kind::Words),
    (143, "ssh_host_keys", "ssh_host_keys", Kind::Words),
    (167, "ssh_host_key_pair_ids", "ssh_host_key_pair_ids", Kind::Refused(KEY_PAIRS)),
    (144, "ssh_user_ca_key_file", "ssh_user_ca_key_file", Kind::Str),
    (145, "ssh_user_ca_key", "ssh_user_ca_key", Kind::Str),
    (168, "ssh_user_ca_key_pair_id", "ssh_user_ca_key_pair_id", Kind::Refused(KEY_PAIRS)),
    (157, "mcp_allowed_client_id_domains", "mcp_allowed_client_id_domains", Kind::StrList),
    (177, "mcp_allowed_as_metadata_domains", "mcp_allowed_as_metadata_domains", Kind::StrList),
    (171, "directory_provider", "directory_provider", Kind::Str),
    (
        172,
        "directory_provider_options",
        "directory_provider_options",
        Kind::Refused("directory sync is not supported by this cluster"),
    ),
    (173, "directory_provider_refresh_interval", "directory_provider_refresh_interval", Kind::Duration),
    (174, "directory_provider_refresh_timeout", "directory_provider_refresh_timeout", Kind::Duration),
    (179, "blob_storage", "blob_storage", Kind::Refused("blob storage is not supported by this cluster")),
    (180, "auto_apply_changesets", "auto_apply_changesets", Kind::Meta),
    (181, "allow_upgrades", "allow_upgrades", Kind::Words),
    (182, "envoy_dynamic_extensions", "envoy_dynamic_extensions", Kind::Words),
    (183, "session_recording_concurrency", "session_recording_concurrency", Kind::Uint),
    (184, "normalize_path", "normalize_path", Kind::Bool),
    (185, "merge_slashes", "merge_slashes", Kind::Bool),
    (186, "path_with_escaped_slashes_action", "path_with_escaped_slashes_action", Kind::Enum(ESCAPED_SLASHES)),
    (187, "headers_with_underscores_action", "headers_with_underscores_action", Kind::Enum(UNDERSCORES)),
    (169, "created_at", "created_at", Kind::Meta),
    (170, "modified_at", "modified_at", Kind::Meta),
];

/// The upstream name of field `number` of `schema`, for messages.
pub fn field_name(schema: &[Field], number: u64) -> Option<&'static str> {
    schema.iter().find(|f| f.0 == number).map(|f| f.1)
}

// --- Reading --------------------------------------------------------------------------------

fn nested<'a>(value: &Wire<'a>, what: &str) -> Result<Vec<(u64, Wire<'a>)>, String> {
    match value {
        Wire::Bytes(bytes) => fields(bytes).ok_or_else(|| format!("{what} is not a protobuf message")),
        _ => Err(format!("{what} is not a message")),
    }
}

/// A `google.protobuf.Value` as JSON (`null_value` 1, `number_value` 2, `string_value` 3,
/// `bool_value` 4, `struct_value` 5, `list_value` 6), to a bounded depth.
fn read_value(value: &Wire<'_>, what: &str, depth: usize) -> Result<Value, String> {
    if depth > 32 {
        return Err(format!("{what} is nested too deep"));
    }
    let mut out = Value::Null;
    for (number, part) in nested(value, what)? {
        out = match (number, &part) {
            (1, _) => Value::Null,
            (2, Wire::Fixed64(bits)) => {
                serde_json::Number::from_f64(f64::from_bits(*bits)).map_or(Value::Null, Value::Number)
            }
            (3, _) => json!(text(&part).ok_or_else(|| format!("{what} is not text"))?),
            (4, Wire::Varint(b)) => json!(*b != 0),
            (5, _) => {
                let mut object = Map::new();
                for (n, entry) in nested(&part, what)? {
                    if n != 1 {
                        return Err(format!("{what}: a struct has field {n}"));
                    }
                    let (key, val) = read_entry(&entry, what, |v| read_value(v, what, depth + 1))?;
                    object.insert(key, val);
                }
                Value::Object(object)
            }
            (6, _) => read_list_value(&part, what, depth + 1)?,
            _ => return Err(format!("{what}: field {number} of a value does not read")),
        };
    }
    Ok(out)
}

fn read_list_value(value: &Wire<'_>, what: &str, depth: usize) -> Result<Value, String> {
    let mut items = Vec::new();
    for (n, item) in nested(value, what)? {
        if n != 1 {
            return Err(format!("{what}: a list has field {n}"));
        }
        items.push(read_value(&item, what, depth)?);
    }
    Ok(Value::Array(items))
}

/// A map entry (`key = 1`, `value = 2`).
fn read_entry(
    value: &Wire<'_>,
    what: &str,
    read: impl Fn(&Wire<'_>) -> Result<Value, String>,
) -> Result<(String, Value), String> {
    let mut key = String::new();
    let mut val = None;
    for (n, part) in nested(value, what)? {
        match n {
            1 => key = text(&part).ok_or_else(|| format!("{what}: a key is not text"))?,
            2 => val = Some(read(&part)?),
            _ => return Err(format!("{what}: a map entry has field {n}")),
        }
    }
    Ok((key, val.unwrap_or(Value::Null)))
}

fn push(out: &mut Map<String, Value>, key: &str, item: Value) {
    let list = out.entry(key.to_owned()).or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut() {
        list.push(item);
    }
}

fn insert_entry(out: &mut Map<String, Value>, key: &str, (k, v): (String, Value)) {
    let map = out.entry(key.to_owned()).or_insert_with(|| json!({}));
    if let Some(map) = map.as_object_mut() {
        map.insert(k, v);
    }
}

/// Whether a field's value is "off" (zero, empty): a [`Kind::Refused`] field so set asks for
/// nothing.
fn is_off(value: &Wire<'_>) -> bool {
    match value {
        Wire::Varint(v) | Wire::Fixed64(v) => *v == 0,
        Wire::Fixed32(v) => *v == 0,
        Wire::Bytes(b) => b.is_empty(),
    }
}

/// A protobuf message as a JSON object with `config.yaml` keys, by `schema`; `what` names it in
/// errors (`routes[2]`, `settings`).
pub fn read(bytes: &[u8], schema: &[Field], what: &str) -> Result<Map<String, Value>, String> {
    read_fields(&fields(bytes).ok_or_else(|| format!("{what} is not a protobuf message"))?, schema, what)
}

fn read_fields(parsed: &[(u64, Wire<'_>)], schema: &[Field], what: &str) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (number, value) in parsed {
        let Some(&(_, name, key, kind)) = schema.iter().find(|f| f.0 == *number) else {
            return Err(format!("{what}: field {number} is not known to this cluster"));
        };
        let here = format!("{what}.{name}");
        let bad = || format!("{here} does not read as its type");
        let scalar = match kind {
            Kind::Meta => continue,
            Kind::Refused(reason) => {
                if is_off(value) {
                    continue;
                }
                return Err(format!("{here} is not supported: {reason}"));
            }
            Kind::Str => json!(text(value).ok_or_else(bad)?),
            Kind::Bool => match value {
                Wire::Varint(v) => json!(*v != 0),
                _ => return Err(bad()),
            },
            Kind::Uint => match value {
                Wire::Varint(v) => json!(*v),
                _ => return Err(bad()),
            },
            #[expect(clippy::cast_possible_wrap, reason = "protobuf int64/int32 are two's complement varints")]
            Kind::Int => match value {
                Wire::Varint(v) => json!(*v as i64),
                _ => return Err(bad()),
            },
            Kind::Double => match value {
                Wire::Fixed64(bits) => {
                    serde_json::Number::from_f64(f64::from_bits(*bits)).map(Value::Number).ok_or_else(bad)?
                }
                _ => return Err(bad()),
            },
            Kind::Duration => json!(wire::duration(value).ok_or_else(bad)?),
            Kind::Enum(names) => match value {
                Wire::Varint(v) => match names.iter().find(|(n, _)| n == v) {
                    Some((_, "")) => continue,
                    Some((_, spelled)) => json!(spelled),
                    None => return Err(format!("{here}: value {v} is not known to this cluster")),
                },
                _ => return Err(bad()),
            },
            Kind::Msg(inner) => match value {
                Wire::Bytes(b) => Value::Object(read(b, inner, &here)?),
                _ => return Err(bad()),
            },
            Kind::Words => {
                let mut items = Vec::new();
                for (n, item) in nested(value, &here)? {
                    if n != 1 {
                        return Err(format!("{here}: field {n} is not known to this cluster"));
                    }
                    items.push(json!(text(&item).ok_or_else(bad)?));
                }
                Value::Array(items)
            }
            Kind::StrList => {
                push(&mut out, key, json!(text(value).ok_or_else(bad)?));
                continue;
            }
            Kind::UintList => {
                match value {
                    Wire::Varint(v) => push(&mut out, key, json!(*v)),
                    Wire::Bytes(packed) => {
                        let mut packed: &[u8] = packed;
                        while !packed.is_empty() {
                            let v = wire::varint(&mut packed).ok_or_else(bad)?;
                            push(&mut out, key, json!(v));
                        }
                        out.entry(key.to_owned()).or_insert_with(|| json!([]));
                    }
                    _ => return Err(bad()),
                }
                continue;
            }
            Kind::StrMap => {
                let entry = wire::map_entry(value).ok_or_else(bad)?;
                insert_entry(&mut out, key, (entry.0, json!(entry.1)));
                continue;
            }
            Kind::BoolMap => {
                let entry = read_entry(value, &here, |v| match v {
                    Wire::Varint(b) => Ok(json!(*b != 0)),
                    _ => Err(bad()),
                })?;
                insert_entry(&mut out, key, entry);
                continue;
            }
            Kind::Claims => {
                let entry = read_entry(value, &here, |v| read_list_value(v, &here, 0))?;
                insert_entry(&mut out, key, entry);
                continue;
            }
            Kind::SanMatchers => {
                let mut san_type = 0;
                let mut pattern = String::new();
                for (n, part) in nested(value, &here)? {
                    match (n, &part) {
                        (1, Wire::Varint(v)) => san_type = *v,
                        (2, _) => pattern = text(&part).ok_or_else(bad)?,
                        _ => return Err(format!("{here}: field {n} is not known to this cluster")),
                    }
                }
                let spelled = SAN_TYPES
                    .iter()
                    .find(|(n, _)| *n == san_type)
                    .map(|(_, s)| *s)
                    .ok_or_else(|| format!("{here}: san type {san_type} is not known to this cluster"))?;
                push(&mut out, key, json!({ spelled: pattern }));
                continue;
            }
            Kind::MsgList(inner) => {
                let Wire::Bytes(b) = value else { return Err(bad()) };
                let index = out.get(key).and_then(Value::as_array).map_or(0, Vec::len);
                let item = Value::Object(read(b, inner, &format!("{here}[{index}]"))?);
                push(&mut out, key, item);
                continue;
            }
        };
        out.insert(key.to_owned(), scalar);
    }
    Ok(out)
}

/// A route as read, made into a `config.yaml` route: `ppl_policies` become sub-policies (their
/// PPL as `source_ppl`), and upstream's `load_balancing_weights` go onto the `to` URLs
/// (`url,weight`) when there is one for each.
fn finish_route(mut route: Map<String, Value>, what: &str) -> Result<Map<String, Value>, String> {
    if let Some(Value::Array(ppl)) = route.remove("ppl_policies") {
        for policy in ppl {
            push(&mut route, "sub_policies", policy);
        }
    }
    if let Some(Value::Array(weights)) = route.remove("load_balancing_weights") {
        let weights: Vec<u64> = weights.iter().filter_map(Value::as_u64).collect();
        if weights.iter().any(|w| *w != 0) {
            let to = route.get_mut("to").and_then(Value::as_array_mut);
            match to {
                Some(to) if to.len() == weights.len() => {
                    for (url, weight) in to.iter_mut().zip(&weights) {
                        if let Some(text) = url.as_str() {
                            *url = json!(format!("{text},{weight}"));
                        }
                    }
                }
                _ => {
                    return Err(format!(
                        "{what}.load_balancing_weights: {} weights for a different number of `to` urls",
                        weights.len()
                    ));
                }
            }
        }
    }
    Ok(route)
}

/// A protobuf `pomerium.config.Config` as the configuration document: `name`, `routes` (always
/// there), `settings` (when sent) and `certificates` (from `settings.certificates`).
pub fn decode_config(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let mut config = read(bytes, CONFIG, "config")?;
    let mut routes = Vec::new();
    if let Some(Value::Array(read_routes)) = config.remove("routes") {
        for (index, route) in read_routes.into_iter().enumerate() {
            let Value::Object(route) = route else { continue };
            routes.push(Value::Object(finish_route(route, &format!("config.routes[{index}]"))?));
        }
    }
    config.insert("routes".to_owned(), Value::Array(routes));
    if let Some(Value::Object(settings)) = config.get_mut("settings")
        && let Some(certificates) = settings.remove("certificates")
    {
        config.insert("certificates".to_owned(), certificates);
    }
    Ok(config)
}

// --- Writing --------------------------------------------------------------------------------

/// A JSON object's entries in key order: the bytes written must not depend on whether serde_json
/// keeps insertion order (its `preserve_order` feature, which another crate in a build may turn
/// on), or a bundle's bytes (and so its ETag) would change with the build.
fn by_key(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

/// A JSON object with `config.yaml` keys as a protobuf message, by `schema`. A key no field of
/// `schema` has, or a value of the wrong type, is an error (`what` names the message).
pub fn write(message: &Map<String, Value>, schema: &[Field], what: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (key, value) in by_key(message) {
        if value.is_null() {
            continue;
        }
        let Some(&(number, _, _, kind)) = schema.iter().find(|f| f.2 == key) else {
            return Err(format!("{what}.{key} has no field in pomerium.config's protobuf"));
        };
        let here = format!("{what}.{key}");
        let bad = || format!("{here}: {value} is not what the protobuf field takes");
        match kind {
            Kind::Meta | Kind::Refused(_) => {
                return Err(format!("{here} is not shipped to clusters"));
            }
            Kind::Str => put_bytes(&mut out, number, value.as_str().ok_or_else(bad)?.as_bytes()),
            Kind::Bool => put_uint(&mut out, number, u64::from(value.as_bool().ok_or_else(bad)?)),
            Kind::Uint => {
                let n = value.as_u64().or_else(|| value.as_str().and_then(|s| s.parse().ok())).ok_or_else(bad)?;
                put_uint(&mut out, number, n);
            }
            #[expect(clippy::cast_sign_loss, reason = "protobuf int64/int32 are two's complement varints")]
            Kind::Int => {
                let n = value.as_i64().or_else(|| value.as_str().and_then(|s| s.parse().ok())).ok_or_else(bad)?;
                put_uint(&mut out, number, n as u64);
            }
            Kind::Double => put_fixed64(&mut out, number, value.as_f64().ok_or_else(bad)?.to_bits()),
            Kind::Duration => {
                if !wire::put_duration(&mut out, number, value.as_str().ok_or_else(bad)?) {
                    return Err(bad());
                }
            }
            Kind::Enum(names) => {
                let spelled = value.as_str().ok_or_else(bad)?;
                let n = names.iter().find(|(_, s)| !s.is_empty() && *s == spelled).map(|(n, _)| *n).ok_or_else(bad)?;
                put_uint(&mut out, number, n);
            }
            Kind::Msg(inner) => {
                put_bytes(&mut out, number, &write(value.as_object().ok_or_else(bad)?, inner, &here)?);
            }
            Kind::MsgList(inner) => {
                for (index, item) in value.as_array().ok_or_else(bad)?.iter().enumerate() {
                    let item = item.as_object().ok_or_else(bad)?;
                    put_bytes(&mut out, number, &write(item, inner, &format!("{here}[{index}]"))?);
                }
            }
            Kind::Words => {
                let mut inner = Vec::new();
                for item in strings(value).ok_or_else(bad)? {
                    put_bytes(&mut inner, 1, item.as_bytes());
                }
                put_bytes(&mut out, number, &inner);
            }
            Kind::StrList => {
                for item in strings(value).ok_or_else(bad)? {
                    put_bytes(&mut out, number, item.as_bytes());
                }
            }
            Kind::UintList => {
                for item in value.as_array().ok_or_else(bad)? {
                    put_uint(&mut out, number, item.as_u64().ok_or_else(bad)?);
                }
            }
            Kind::StrMap | Kind::BoolMap | Kind::Claims => {
                for (k, v) in by_key(value.as_object().ok_or_else(bad)?) {
                    let mut entry = Vec::new();
                    put_bytes(&mut entry, 1, k.as_bytes());
                    match kind {
                        Kind::StrMap => put_bytes(&mut entry, 2, v.as_str().ok_or_else(bad)?.as_bytes()),
                        Kind::BoolMap => put_uint(&mut entry, 2, u64::from(v.as_bool().ok_or_else(bad)?)),
                        _ => {
                            let items = match v {
                                Value::Array(items) => items.clone(),
                                other => vec![other.clone()],
                            };
                            put_bytes(&mut entry, 2, &write_list_value(&items, 0).ok_or_else(bad)?);
                        }
                    }
                    put_bytes(&mut out, number, &entry);
                }
            }
            Kind::SanMatchers => {
                for item in value.as_array().ok_or_else(bad)? {
                    let (spelled, pattern) = item
                        .as_object()
                        .filter(|o| o.len() == 1)
                        .and_then(|o| o.iter().next())
                        .and_then(|(k, v)| Some((k.as_str(), v.as_str()?)))
                        .ok_or_else(bad)?;
                    let san_type = SAN_TYPES.iter().find(|(_, s)| *s == spelled).map(|(n, _)| *n).ok_or_else(bad)?;
                    let mut matcher = Vec::new();
                    put_uint(&mut matcher, 1, san_type);
                    put_bytes(&mut matcher, 2, pattern.as_bytes());
                    put_bytes(&mut out, number, &matcher);
                }
            }
        }
    }
    Ok(out)
}

/// A list of strings, or one string as a list of one (`to: http://a` in a `config.yaml`).
fn strings(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

fn write_value(value: &Value, depth: usize) -> Option<Vec<u8>> {
    if depth > 32 {
        return None;
    }
    let mut out = Vec::new();
    match value {
        Value::Null => put_uint(&mut out, 1, 0),
        Value::Number(n) => put_fixed64(&mut out, 2, n.as_f64()?.to_bits()),
        Value::String(s) => put_bytes(&mut out, 3, s.as_bytes()),
        Value::Bool(b) => put_uint(&mut out, 4, u64::from(*b)),
        Value::Object(object) => {
            let mut inner = Vec::new();
            for (k, v) in by_key(object) {
                let mut entry = Vec::new();
                put_bytes(&mut entry, 1, k.as_bytes());
                put_bytes(&mut entry, 2, &write_value(v, depth + 1)?);
                put_bytes(&mut inner, 1, &entry);
            }
            put_bytes(&mut out, 5, &inner);
        }
        Value::Array(items) => put_bytes(&mut out, 6, &write_list_value(items, depth + 1)?),
    }
    Some(out)
}

fn write_list_value(items: &[Value], depth: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for item in items {
        put_bytes(&mut out, 1, &write_value(item, depth)?);
    }
    Some(out)
}

/// The configuration document as a protobuf `pomerium.config.Config`: its `certificates` go into
/// `settings.certificates`, a route's `policy` (PPL) into `ppl_policies`.
pub fn encode_config(document: &Map<String, Value>) -> Result<Vec<u8>, String> {
    let mut config = Map::new();
    let mut settings = match document.get("settings") {
        Some(Value::Object(settings)) => Some(settings.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err("config.settings is not an object".to_owned()),
    };
    for (key, value) in document {
        match key.as_str() {
            "settings" | "changesetVersion" => {}
            "certificates" => {
                if value.as_array().is_some_and(|c| !c.is_empty()) {
                    let mut certificates = Vec::new();
                    for certificate in value.as_array().into_iter().flatten() {
                        let Some(certificate) = certificate.as_object() else {
                            return Err("config.certificates: an entry is not an object".to_owned());
                        };
                        // `secret` names an Ingress certificate; upstream's field is `id`.
                        let mut entry = certificate.clone();
                        if let Some(name) = entry.remove("secret") {
                            entry.entry("id".to_owned()).or_insert(name);
                        }
                        entry.remove("hosts");
                        certificates.push(Value::Object(entry));
                    }
                    settings.get_or_insert_with(Map::new).insert("certificates".to_owned(), Value::Array(certificates));
                }
            }
            "routes" => {
                let mut routes = Vec::new();
                for route in value.as_array().into_iter().flatten() {
                    let Some(route) = route.as_object() else {
                        return Err("config.routes: an entry is not an object".to_owned());
                    };
                    let mut route = route.clone();
                    if let Some(policy) = route.remove("policy").filter(|p| !p.is_null()) {
                        let raw = serde_json::to_string(&policy).map_err(|e| e.to_string())?;
                        push(&mut route, "ppl_policies", json!({ "source_ppl": raw }));
                    }
                    routes.push(Value::Object(route));
                }
                config.insert("routes".to_owned(), Value::Array(routes));
            }
            _ => {
                config.insert(key.clone(), value.clone());
            }
        }
    }
    if let Some(settings) = settings {
        config.insert("settings".to_owned(), Value::Object(settings));
    }
    write(&config, CONFIG, "config")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(wire::parse_duration("30s"), Some((30, 0)));
        assert_eq!(wire::parse_duration("1m30s"), Some((90, 0)));
        assert_eq!(wire::parse_duration("1500ms"), Some((1, 500_000_000)));
        assert_eq!(wire::parse_duration("forever"), None);
        assert_eq!(wire::parse_duration(""), None);
        assert_eq!(wire::duration(&Wire::Bytes(&[0x08, 0x1e])).as_deref(), Some("30s"));
    }

    #[test]
    fn a_document_round_trips() {
        let document = json!({
            "name": "config",
            "routes": [{
                "id": "r1", "from": "https://a.example.com", "to": ["http://b:80"], "timeout": "30s",
                "prefix_rewrite": "/v1", "set_request_headers": {"X-A": "1"}, "allow_websockets": true,
                "jwt_issuer_format": "uri", "allowed_idp_claims": {"groups": ["admin", 3.0, true]},
                "rewrite_response_headers": [{"header": "Location", "prefix": "http://b", "value": "https://a"}],
                "redirect": {"https_redirect": true, "response_code": 308},
                "sub_policies": [{"id": "p1", "name": "admins", "source_ppl": "[{\"allow\":{\"and\":[{\"accept\":true}]}}]"}],
            }],
            "settings": {"timeout_read": "45s", "runtime_flags": {"x": true}, "otel_traces_sampler_arg": 0.5,
                "downstream_mtls": {"enforcement": "reject_connection", "match_subject_alt_names": [{"dns": "*.corp"}]},
                "certificates": [{"cert": "C", "key": "K", "id": "one"}]},
        });
        let bytes = encode_config(document.as_object().unwrap()).unwrap();
        let back = decode_config(&bytes).unwrap();
        let mut expected = document.as_object().unwrap().clone();
        let certificates = expected["settings"].as_object_mut().unwrap().remove("certificates").unwrap();
        expected.insert("certificates".to_owned(), certificates);
        assert_eq!(Value::Object(back), Value::Object(expected));
    }

    #[test]
    fn unknown_and_refused_fields_are_errors_naming_the_field() {
        let route = write(&json!({"from": "https://a"}).as_object().unwrap().clone(), ROUTE, "r").unwrap();
        // Field 200 of a route: unknown.
        let mut unknown = route.clone();
        put_bytes(&mut unknown, 200, b"x");
        let mut config = Vec::new();
        put_bytes(&mut config, 2, &unknown);
        let err = decode_config(&config).unwrap_err();
        assert!(err.contains("config.routes[0]: field 200 is not known"), "{err}");
        // A key pair by id: refused; empty, it asks for nothing.
        let mut refused = route.clone();
        put_bytes(&mut refused, 84, b"kp1");
        let mut config = Vec::new();
        put_bytes(&mut config, 2, &refused);
        let err = decode_config(&config).unwrap_err();
        assert!(err.contains("tls_downstream_client_ca_key_pair_id is not supported"), "{err}");
        let mut off = route;
        put_bytes(&mut off, 84, b"");
        let mut config = Vec::new();
        put_bytes(&mut config, 2, &off);
        assert!(decode_config(&config).is_ok());
        // Writing a key with no field is refused too.
        let err =
            encode_config(json!({"routes": [{"from": "https://a", "nope": 1}]}).as_object().unwrap()).unwrap_err();
        assert!(err.contains("config.routes[0].nope"), "{err}");
    }

    #[test]
    fn ppl_policies_and_weights_read_as_config_keys() {
        let mut route = Vec::new();
        put_bytes(&mut route, 2, b"https://a.example.com");
        put_bytes(&mut route, 3, b"http://b:80");
        put_bytes(&mut route, 3, b"http://c:80");
        put_bytes(&mut route, 37, &[3, 1]);
        let mut ppl = Vec::new();
        put_bytes(&mut ppl, 1, br#"[{"allow":{"and":[{"email":{"is":"a@b.c"}}]}}]"#);
        put_bytes(&mut route, 63, &ppl);
        let mut config = Vec::new();
        put_bytes(&mut config, 2, &route);
        let read = decode_config(&config).unwrap();
        let route = &read["routes"][0];
        assert_eq!(route["to"], json!(["http://b:80,3", "http://c:80,1"]));
        assert_eq!(route["sub_policies"][0]["source_ppl"], r#"[{"allow":{"and":[{"email":{"is":"a@b.c"}}]}}]"#);
        assert!(decode_config(&[0x12, 0x05, 0x01]).is_err(), "a route cut short");
    }
}
