//! OpenTelemetry tracing of requests (the `otel_*` options): one server span per request, its
//! parent taken from an incoming W3C `traceparent`, and `traceparent`/`tracestate` sent to the
//! upstream so that its spans join the trace.
//!
//! The span carries Envoy's and Pomerium's names: `http.method`, `http.url` (credentials in the
//! query redacted), `http.host`, `http.status_code`, `upstream_cluster` and `pomerium.route_id`
//! (the route's id), `guid:x-request-id`, and the decision: `pomerium.decision` (`allow` or
//! `deny`), `pomerium.allow`/`pomerium.deny` with their reasons (`pomerium.allow.reasons`, ...).
//!
//! The exporter is set up by the binary (`pomerium::telemetry`); this module only needs a
//! tracer. With tracing off (the default) the runtime holds `None` and a request pays one
//! branch: no context, no span, no allocation.

use crate::runtime::{Global, RouteRuntime};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;

/// What requests are traced with: the tracer of the configuration's exporter.
#[derive(Debug, Clone)]
pub struct Tracing {
    tracer: SdkTracer,
    /// `otel_attribute_value_length_limit`: string values are cut to this many characters.
    value_limit: Option<usize>,
}

impl Tracing {
    pub fn new(tracer: SdkTracer, value_limit: Option<usize>) -> Tracing {
        Tracing { tracer, value_limit }
    }

    fn text(&self, text: &str) -> Value {
        let cut = match self.value_limit {
            Some(limit) => text.char_indices().nth(limit).map_or(text, |(at, _)| text.get(..at).unwrap_or(text)),
            None => text,
        };
        Value::String(StringValue::from(cut.to_owned()))
    }
}

/// The request's span, started with the facts known on arrival, as the current span of the
/// returned context (which the pipeline's phases run in).
pub(crate) fn start(
    tracing: &Tracing,
    method: &Method,
    headers: &HeaderMap,
    authority: Option<&str>,
    url: &str,
    request_id: &str,
) -> Context {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let mut attributes = vec![
        KeyValue::new("http.method", method.as_str().to_owned()),
        KeyValue::new("http.url", tracing.text(url)),
        KeyValue::new("guid:x-request-id", request_id.to_owned()),
        KeyValue::new("component", "proxy"),
    ];
    if let Some(authority) = authority {
        attributes.push(KeyValue::new("http.host", tracing.text(authority)));
    }
    let span = tracing
        .tracer
        .span_builder(method.as_str().to_owned())
        .with_kind(SpanKind::Server)
        .with_attributes(attributes)
        .start_with_context(&tracing.tracer, &parent);
    parent.with_span(span)
}

/// Ends the request's span with its route and status. The name is Envoy's for a routed request,
/// the method and the route (`GET route-id`).
pub(crate) fn finish(
    tracing: &Tracing,
    cx: &Context,
    method: &Method,
    status: StatusCode,
    route: Option<&RouteRuntime>,
) {
    let span = cx.span();
    if let Some(route) = route {
        span.update_name(format!("{} {}", method.as_str(), route.id));
        span.set_attribute(KeyValue::new("upstream_cluster", tracing.text(&route.id)));
        span.set_attribute(KeyValue::new("pomerium.route_id", tracing.text(&route.id)));
    }
    span.set_attribute(KeyValue::new("http.status_code", i64::from(status.as_u16())));
    if status.is_server_error() {
        span.set_status(Status::error(status.canonical_reason().unwrap_or("server error")));
    }
    span.end();
}

/// Records the policy's decision on the current span (the request's, when tracing is on).
pub(crate) fn record_decision(global: &Global, allowed: bool, decision: &policy::decision::Decision<'_>) {
    if global.tracing.is_none() {
        return;
    }
    let cx = Context::current();
    let span = cx.span();
    let reasons = |set: policy::reason::ReasonSet| {
        Value::Array(opentelemetry::Array::String(set.names().into_iter().map(StringValue::from).collect()))
    };
    span.set_attributes([
        KeyValue::new("pomerium.decision", if allowed { "allow" } else { "deny" }),
        KeyValue::new("pomerium.allow", decision.allow.value),
        KeyValue::new("pomerium.allow.reasons", reasons(decision.allow.reasons)),
        KeyValue::new("pomerium.deny", decision.deny.value),
        KeyValue::new("pomerium.deny.reasons", reasons(decision.deny.reasons)),
    ]);
}

/// Records the authorize service's answer (which gives no reasons) on the current span.
pub(crate) fn record_remote_decision(global: &Global, allowed: bool) {
    if global.tracing.is_none() {
        return;
    }
    Context::current().span().set_attribute(KeyValue::new("pomerium.decision", if allowed { "allow" } else { "deny" }));
}

/// Sets `traceparent` (and `tracestate`) on an upstream request: the request's span is the
/// upstream's parent. Replaces what the client sent.
pub(crate) fn inject(global: &Global, headers: &mut HeaderMap) {
    if global.tracing.is_none() {
        return;
    }
    headers.remove("tracestate");
    TraceContextPropagator::new().inject_context(&Context::current(), &mut HeaderInjector(headers));
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (http::HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;

    #[test]
    fn an_incoming_traceparent_is_continued_and_sent_on() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let tracing = Tracing::new(provider.tracer("test"), Some(4));
        let mut incoming = HeaderMap::new();
        incoming
            .insert("traceparent", HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        let cx = start(&tracing, &Method::GET, &incoming, Some("a.example.com"), "https://a.example.com/", "id");
        assert_eq!(cx.span().span_context().trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
        let mut upstream = HeaderMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut upstream));
        let sent = upstream.get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(sent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"), "{sent}");
        assert!(!sent.contains("b7ad6b7169203331"), "the upstream's parent is the proxy's span: {sent}");
        assert_eq!(tracing.text("abcdef"), Value::from("abcd"));
    }
}
