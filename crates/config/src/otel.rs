//! The `otel_*` options: OpenTelemetry tracing as Pomerium configures it (`config/otelconfig`,
//! `internal/telemetry/trace/client.go`). The names are those of OpenTelemetry's environment
//! variables in lower case, and each is also read from its variable (`OTEL_TRACES_EXPORTER`
//! for `otel_traces_exporter`); `OTEL_SDK_DISABLED=true` turns tracing off whatever the rest says.
//! Durations are whole milliseconds, as Pomerium (and the variables) write them.

use crate::diagnostic::UnknownValue;
use crate::env::Environment;
use crate::read::{Field, Sink};
use crate::secret::Secret;
use crate::section::Section;
use ppl::value::ValueKind;
use std::time::Duration;
use url::Url;

/// How spans leave the process (`otel_exporter_otlp_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (`grpc`).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (`http/protobuf`), to `/v1/traces`.
    HttpProtobuf,
}

/// Where and how spans are exported, when `otel_traces_exporter: otlp`.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpExporter {
    pub protocol: OtlpProtocol,
    /// The URL spans are sent to: for HTTP the full URL (`/v1/traces` added to a general
    /// endpoint), for gRPC the server's.
    pub endpoint: Url,
    /// `otel_exporter_otlp_traces_headers`, else `otel_exporter_otlp_headers`: sent with every
    /// export. The values are often credentials (API keys), so they are never printed.
    pub headers: Vec<(String, Secret)>,
    /// `otel_exporter_otlp_traces_timeout`, else `otel_exporter_otlp_timeout` (10 s).
    pub timeout: Duration,
}

/// The tracing settings: `exporter: None` (the default, `otel_traces_exporter: none`) traces nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct OtelOptions {
    pub exporter: Option<OtlpExporter>,
    /// `otel_traces_sampler_arg`: the share of new traces sampled (a parent's decision is kept).
    pub sampler_arg: f64,
    /// `otel_resource_attributes` as `key=value` pairs; `service.name` defaults to `pomerium`.
    pub resource_attributes: Vec<(String, String)>,
    /// `otel_attribute_value_length_limit`: string attribute values are cut to this many characters.
    pub attribute_value_length_limit: Option<usize>,
    /// `otel_bsp_schedule_delay` (5 s).
    pub bsp_schedule_delay: Duration,
    /// `otel_bsp_max_export_batch_size` (512).
    pub bsp_max_export_batch_size: usize,
}

/// OpenTelemetry's default export timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The batch span processor's defaults and Pomerium's minimums (`otelconfig`).
pub const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_millis(5000);
pub const MINIMUM_SCHEDULE_DELAY_MS: i64 = 100;
pub const DEFAULT_MAX_EXPORT_BATCH_SIZE: usize = 512;

impl Default for OtelOptions {
    fn default() -> Self {
        OtelOptions {
            exporter: None,
            sampler_arg: 1.0,
            resource_attributes: Vec::new(),
            attribute_value_length_limit: None,
            bsp_schedule_delay: DEFAULT_SCHEDULE_DELAY,
            bsp_max_export_batch_size: DEFAULT_MAX_EXPORT_BATCH_SIZE,
        }
    }
}

impl OtelOptions {
    /// Whether requests are traced at all.
    pub fn enabled(&self) -> bool {
        self.exporter.is_some()
    }
}

const EXPORTERS: &[(&str, bool)] = &[("otlp", true), ("none", false), ("noop", false), ("", false)];
const PROTOCOLS: &[(&str, OtlpProtocol)] =
    &[("grpc", OtlpProtocol::Grpc), ("http/protobuf", OtlpProtocol::HttpProtobuf)];

/// Reads the `otel_*` options of `section` (the environment already applied to it).
pub(crate) fn read(section: &Section, env: &dyn Environment, sink: &mut Sink) -> OtelOptions {
    let mut o = OtelOptions::default();
    let get = |key: &str| section.get(key).filter(|f| !f.is_null());
    if let Some(field) = get("otel_traces_sampler_arg")
        && let Some(arg) = ratio(field, sink)
    {
        o.sampler_arg = arg;
    }
    if let Some(field) = get("otel_resource_attributes") {
        o.resource_attributes = pairs(field, sink);
    }
    if let Some(field) = get("otel_attribute_value_length_limit") {
        o.attribute_value_length_limit =
            field.integer(sink, 0, i64::from(i32::MAX)).and_then(|n| usize::try_from(n).ok()).filter(|n| *n > 0);
    }
    if let Some(field) = get("otel_bsp_schedule_delay")
        && let Some(delay) = milliseconds(field, sink, MINIMUM_SCHEDULE_DELAY_MS)
    {
        o.bsp_schedule_delay = delay;
    }
    if let Some(field) = get("otel_bsp_max_export_batch_size")
        && let Some(size) = field.integer(sink, 1, i64::from(i32::MAX)).and_then(|n| usize::try_from(n).ok())
    {
        o.bsp_max_export_batch_size = size;
    }
    let traces_or = |specific: &str, general: &str| get(specific).or_else(|| get(general));
    let headers = traces_or("otel_exporter_otlp_traces_headers", "otel_exporter_otlp_headers")
        .map(|field| pairs(field, sink))
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| (name, Secret::new(value)))
        .collect();
    let timeout = traces_or("otel_exporter_otlp_traces_timeout", "otel_exporter_otlp_timeout")
        .and_then(|field| milliseconds(field, sink, 0))
        .unwrap_or(DEFAULT_TIMEOUT);
    let specific = get("otel_exporter_otlp_traces_endpoint");
    let endpoint_field = specific.or_else(|| get("otel_exporter_otlp_endpoint"));
    let endpoint = endpoint_field.and_then(|field| endpoint(field, sink));
    let protocol = match traces_or("otel_exporter_otlp_traces_protocol", "otel_exporter_otlp_protocol") {
        Some(field) => field.choice(sink, PROTOCOLS, true),
        None => Some(protocol_from_endpoint(endpoint.as_ref(), specific.is_some())),
    };
    let on = match get("otel_traces_exporter") {
        Some(field) => field.string(sink).map(|text| text.trim().to_ascii_lowercase()).and_then(|text| {
            let found = EXPORTERS.iter().find(|(name, _)| *name == text).map(|(_, on)| *on);
            if found.is_none() {
                let help = Some("write `otlp` to export traces, or `none`".to_owned());
                sink.error(
                    &field.origin,
                    UnknownValue { option: field.name.clone(), text, span: field.span().into(), help },
                );
            }
            found
        }),
        None => Some(false),
    };
    let disabled = env.var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if on == Some(true) && !disabled {
        let Some(protocol) = protocol else { return o };
        let endpoint = match endpoint {
            Some(url) if protocol == OtlpProtocol::HttpProtobuf && specific.is_none() => with_traces_path(url),
            Some(url) => url,
            None if endpoint_field.is_some() => return o,
            None => default_endpoint(protocol),
        };
        o.exporter = Some(OtlpExporter { protocol, endpoint, headers, timeout });
    }
    o
}

/// Pomerium's guess when no protocol is set (`BestEffortProtocolFromOTLPEndpoint`): the well-known
/// ports, else a path on a traces endpoint means HTTP, a path on a general one gRPC.
fn protocol_from_endpoint(endpoint: Option<&Url>, specific: bool) -> OtlpProtocol {
    let Some(url) = endpoint else { return OtlpProtocol::HttpProtobuf };
    match url.port() {
        Some(4318) => OtlpProtocol::HttpProtobuf,
        Some(4317) => OtlpProtocol::Grpc,
        _ => {
            let has_path = !url.path().trim_matches('/').is_empty();
            match (has_path, specific) {
                (true, true) | (false, false) => OtlpProtocol::HttpProtobuf,
                (false, true) | (true, false) => OtlpProtocol::Grpc,
            }
        }
    }
}

#[expect(clippy::unwrap_used, reason = "constant URLs that parse")]
fn default_endpoint(protocol: OtlpProtocol) -> Url {
    match protocol {
        OtlpProtocol::Grpc => Url::parse("http://localhost:4317").unwrap(),
        OtlpProtocol::HttpProtobuf => Url::parse("http://localhost:4318/v1/traces").unwrap(),
    }
}

/// A general endpoint gets the signal's path, as OpenTelemetry's HTTP exporters add it.
fn with_traces_path(mut url: Url) -> Url {
    let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

/// An `http://` or `https://` URL with a host.
fn endpoint(field: &Field, sink: &mut Sink) -> Option<Url> {
    let text = field.string(sink)?;
    let text = text.trim();
    let help = Some("write the collector's url, e.g. `http://otel-collector:4317`".to_owned());
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty()) => {
            Some(url)
        }
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            field.invalid(sink, format!("the scheme `{}` is not `http` or `https`", url.scheme()), help);
            None
        }
        Ok(_) => {
            field.invalid(sink, "the url has no host", help);
            None
        }
        Err(error) => {
            field.invalid(sink, format!("not a url: {error}"), help);
            None
        }
    }
}

/// A number from 0 to 1.
fn ratio(field: &Field, sink: &mut Sink) -> Option<f64> {
    let text = match &field.value.kind {
        ValueKind::Number(n) => n.as_str().to_owned(),
        ValueKind::String(s) => s.trim().to_owned(),
        _ => {
            field.wrong_type(sink, "a number from 0 to 1", None);
            return None;
        }
    };
    match text.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Some(ratio),
        _ => {
            let help = Some("write the share of traces to sample, from `0` (none) to `1` (all)".to_owned());
            field.invalid(sink, format!("`{text}` is not a number from 0 to 1"), help);
            None
        }
    }
}

/// Whole milliseconds, at least `min`.
fn milliseconds(field: &Field, sink: &mut Sink, min: i64) -> Option<Duration> {
    let text = match &field.value.kind {
        ValueKind::Number(n) => n.as_str().to_owned(),
        ValueKind::String(s) => s.trim().to_owned(),
        _ => {
            field.wrong_type(sink, "a whole number of milliseconds", None);
            return None;
        }
    };
    let help = Some(format!("write a whole number of milliseconds, e.g. `{}`", min.max(1000)));
    match text.parse::<u64>() {
        Ok(ms) if i64::try_from(ms).is_ok_and(|ms| ms >= min) => Some(Duration::from_millis(ms)),
        Ok(_) => {
            field.invalid(sink, format!("`{text}` is less than the minimum, {min} milliseconds"), help);
            None
        }
        Err(_) => {
            field.invalid(sink, format!("`{text}` is not a whole number of milliseconds"), help);
            None
        }
    }
}

/// `key=value` items (a list, or a string split at commas).
fn pairs(field: &Field, sink: &mut Sink) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for item in field.list(sink).unwrap_or_default() {
        match item.value.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => out.push((key.trim().to_owned(), value.trim().to_owned())),
            _ => {
                let error = crate::diagnostic::InvalidValue {
                    option: field.name.clone(),
                    reason: format!("`{}` is not `key=value`", item.value),
                    span: item.span.into(),
                    help: Some("write each item as `key=value`".to_owned()),
                };
                sink.error(&field.origin, error);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_is_guessed_as_pomerium_does() {
        let url = |s: &str| Url::parse(s).ok();
        assert_eq!(protocol_from_endpoint(url("http://c:4318").as_ref(), false), OtlpProtocol::HttpProtobuf);
        assert_eq!(protocol_from_endpoint(url("http://c:4317").as_ref(), true), OtlpProtocol::Grpc);
        assert_eq!(protocol_from_endpoint(url("http://c:9000/v1/traces").as_ref(), true), OtlpProtocol::HttpProtobuf);
        assert_eq!(protocol_from_endpoint(url("http://c:9000").as_ref(), true), OtlpProtocol::Grpc);
        assert_eq!(protocol_from_endpoint(url("http://c:9000/sub").as_ref(), false), OtlpProtocol::Grpc);
        assert_eq!(protocol_from_endpoint(url("http://c:9000").as_ref(), false), OtlpProtocol::HttpProtobuf);
        assert_eq!(protocol_from_endpoint(None, false), OtlpProtocol::HttpProtobuf);
    }

    #[test]
    fn a_general_http_endpoint_gets_the_traces_path() {
        let url = Url::parse("http://c:4318/").ok().map(with_traces_path).map(String::from);
        assert_eq!(url.as_deref(), Some("http://c:4318/v1/traces"));
    }
}
