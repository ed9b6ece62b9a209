//! OpenTelemetry tracing through the binary (the `otel_*` options, Pomerium's
//! `internal/telemetry/trace`): real OTLP receivers in the test, one speaking gRPC (the
//! `opentelemetry.proto.collector.trace.v1.TraceService` of `opentelemetry-proto`, served by tonic)
//! and one HTTP (`POST /v1/traces` with a protobuf body). Each request through a route makes a
//! server span with the route's id and the decision; the upstream gets a `traceparent` of the same
//! trace; an incoming `traceparent` is continued; `otel_traces_sampler_arg: 0` and
//! `otel_traces_exporter: none` send nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use http_body_util::BodyExt as _;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Pomerium, Setup, eventually, request, route, routes, spawn_upstream};

/// `name=value` pairs: a resource's attributes, an export's headers.
type Pairs = Vec<(String, String)>;

/// What a receiver got: every span with its resource's attributes, and the headers of each export.
#[derive(Default, Clone)]
struct Received {
    spans: Arc<Mutex<Vec<(Pairs, Span)>>>,
    headers: Arc<Mutex<Vec<Pairs>>>,
}

impl Received {
    fn take(&self, request: ExportTraceServiceRequest, headers: Pairs) {
        self.headers.lock().unwrap().push(headers);
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let resource: Pairs = resource_spans
                .resource
                .map(|r| r.attributes.iter().map(|kv| (kv.key.clone(), value_text(kv.value.as_ref()))).collect())
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push((resource.clone(), span));
                }
            }
        }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().iter().map(|(_, span)| span.clone()).collect()
    }

    fn resources(&self) -> Vec<Pairs> {
        self.spans.lock().unwrap().iter().map(|(resource, _)| resource.clone()).collect()
    }

    /// The span of the request with this `x-request-id`, once exported.
    async fn span_of(&self, request_id: &str) -> Span {
        eventually(&format!("the span of request {request_id}"), || async {
            self.spans().into_iter().find(|span| attribute(span, "guid:x-request-id").as_deref() == Some(request_id))
        })
        .await
    }
}

fn value_text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::ArrayValue(items)) => {
            items.values.iter().map(|v| value_text(Some(v))).collect::<Vec<_>>().join(",")
        }
        other => format!("{other:?}"),
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == key).map(|kv| value_text(kv.value.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The OTLP/gRPC receiver.
struct GrpcReceiver(Received);

#[async_trait::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        self.0.take(request.into_inner(), headers);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

async fn grpc_receiver() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let received = Received::default();
    let service = TraceServiceServer::new(GrpcReceiver(received.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (format!("http://{address}"), received)
}

/// The OTLP/HTTP receiver: `POST /v1/traces`, protobuf in and out; anything else is a 404. Over
/// TLS with `tls`.
async fn http_receiver(tls: Option<Arc<rustls::ServerConfig>>) -> (String, Received) {
    let received = Received::default();
    let sink = received.clone();
    let upstream = spawn_upstream(tls, move |request: http::Request<hyper::body::Incoming>| {
        let sink = sink.clone();
        async move {
            let ok = request.method() == http::Method::POST
                && request.uri().path() == "/v1/traces"
                && request.headers().get("content-type").is_some_and(|v| v == "application/x-protobuf");
            let headers = request
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                .collect();
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let mut response = http::Response::new(proxy::body::full(
                ExportTraceServiceResponse { partial_success: None }.encode_to_vec(),
            ));
            match ExportTraceServiceRequest::decode(body).ok().filter(|_| ok) {
                Some(export) => sink.take(export, headers),
                None => *response.status_mut() = http::StatusCode::NOT_FOUND,
            }
            response.headers_mut().insert("content-type", http::HeaderValue::from_static("application/x-protobuf"));
            response
        }
    })
    .await;
    (upstream.http(), received)
}

/// Two routes to an echo upstream: `app` (id `app-route`, public) and `private` (id
/// `private-route`, any signed-in user, so a request without a session is denied).
fn config(upstream: &str, otel: &str) -> String {
    format!(
        "{otel}otel_bsp_schedule_delay: 100\n{}",
        routes(&[
            route("app", &format!("id: app-route\nto: http://{upstream}\nallow_public_unauthenticated_access: true")),
            route("private", &format!("id: private-route\nto: http://{upstream}\nallow_any_authenticated_user: true")),
        ])
    )
}

/// GET `/path` on a route with extra headers: the status, the `x-request-id` and the
/// `traceparent` the upstream saw (for an answer that came from it).
async fn get(pomerium: &Pomerium, name: &str, headers: &[(&str, &str)]) -> (u16, String, Option<String>) {
    let mut builder = request(http::Method::GET, &pomerium.host(name), "/path?code=secret");
    for (header, value) in headers {
        builder = builder.header(*header, *value);
    }
    let reply = pomerium.fetch(builder.body(proxy::body::empty()).unwrap()).await;
    let seen = (reply.status == http::StatusCode::OK).then(|| reply.seen().header("traceparent")).flatten();
    (reply.status.as_u16(), reply.header("x-request-id").to_owned(), seen)
}

/// `00-<trace>-<span>-<flags>`: the trace id and the flags.
fn parse_traceparent(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    (parts[1].to_owned(), parts[2].to_owned(), parts[3].to_owned())
}

/// Requests to both routes, with and without a parent, and what the receiver must hold.
async fn requests_are_traced(pomerium: &Pomerium, received: &Received) {
    // A request with no parent: a new trace, which the upstream joins.
    let (status, id, seen) = get(pomerium, "app", &[]).await;
    assert_eq!(status, 200);
    let seen = seen.expect("the upstream gets a traceparent");
    let (trace, parent, flags) = parse_traceparent(&seen);
    assert_eq!(flags, "01", "sampled: {seen}");
    let span = received.span_of(&id).await;
    assert_eq!(hex(&span.trace_id), trace, "the upstream's traceparent is in the request's trace");
    assert_eq!(hex(&span.span_id), parent, "the upstream's parent is the request's span");
    assert!(span.parent_span_id.is_empty(), "a root span");
    assert_eq!(span.name, "GET app-route");
    assert_eq!(span.kind, 2, "a server span");
    assert_eq!(attribute(&span, "pomerium.route_id").as_deref(), Some("app-route"));
    assert_eq!(attribute(&span, "upstream_cluster").as_deref(), Some("app-route"));
    assert_eq!(attribute(&span, "pomerium.decision").as_deref(), Some("allow"));
    assert_eq!(attribute(&span, "pomerium.allow.reasons").as_deref(), Some("accept"));
    assert_eq!(attribute(&span, "http.method").as_deref(), Some("GET"));
    assert_eq!(attribute(&span, "http.status_code").as_deref(), Some("200"));
    let url = attribute(&span, "http.url").unwrap();
    assert!(url.starts_with("https://app.test.localhost:") && url.ends_with("/path?code=REDACTED"), "{url}");
    assert!(received.resources().iter().all(|r| r.contains(&("service.name".to_owned(), "pomerium".to_owned()))));

    // An incoming traceparent is continued: same trace, the client's span as parent.
    let incoming_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let incoming = format!("00-{incoming_trace}-00f067aa0ba902b7-01");
    let (status, id, seen) = get(pomerium, "app", &[("traceparent", &incoming), ("tracestate", "vendor=x")]).await;
    assert_eq!(status, 200);
    let (trace, parent, _) = parse_traceparent(&seen.unwrap());
    assert_eq!(trace, incoming_trace);
    assert_ne!(parent, "00f067aa0ba902b7", "the upstream's parent is the proxy's span");
    let span = received.span_of(&id).await;
    assert_eq!(hex(&span.trace_id), incoming_trace);
    assert_eq!(hex(&span.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(span.trace_state, "vendor=x");

    // A denied request: its span says so, with the reasons.
    let (status, id, _) = get(pomerium, "private", &[("accept", "application/json")]).await;
    assert_eq!(status, 401);
    let span = received.span_of(&id).await;
    assert_eq!(attribute(&span, "pomerium.route_id").as_deref(), Some("private-route"));
    assert_eq!(attribute(&span, "pomerium.decision").as_deref(), Some("deny"));
    assert_eq!(attribute(&span, "pomerium.allow.reasons").as_deref(), Some("user-unauthenticated"));
    assert_eq!(attribute(&span, "http.status_code").as_deref(), Some("401"));
}

#[tokio::test]
async fn spans_go_to_an_otlp_grpc_receiver() {
    let setup = Setup::new();
    let (endpoint, received) = grpc_receiver().await;
    let upstream = support::echo_upstream("app", None).await;
    let otel = format!(
        "otel_traces_exporter: otlp\notel_exporter_otlp_endpoint: {endpoint}\notel_exporter_otlp_protocol: grpc\n\
         otel_exporter_otlp_headers: [x-api-key=k1]\n"
    );
    let pomerium = setup.start(&config(&upstream.address.to_string(), &otel)).await;
    requests_are_traced(&pomerium, &received).await;
    let headers = received.headers.lock().unwrap().clone();
    assert!(headers.iter().all(|h| h.contains(&("x-api-key".to_owned(), "k1".to_owned()))), "{headers:?}");
}

#[tokio::test]
async fn spans_go_to_an_otlp_http_receiver() {
    let setup = Setup::new();
    let (endpoint, received) = http_receiver(None).await;
    let upstream = support::echo_upstream("app", None).await;
    // A general endpoint: `/v1/traces` is added; the resource attributes name the service.
    let otel = format!(
        "otel_traces_exporter: otlp\notel_exporter_otlp_endpoint: {endpoint}\n\
         otel_exporter_otlp_protocol: http/protobuf\notel_exporter_otlp_traces_headers: [x-api-key=k2]\n"
    );
    let pomerium = setup.start(&config(&upstream.address.to_string(), &otel)).await;
    requests_are_traced(&pomerium, &received).await;
    let headers = received.headers.lock().unwrap().clone();
    assert!(headers.iter().all(|h| h.contains(&("x-api-key".to_owned(), "k2".to_owned()))), "{headers:?}");
}

#[tokio::test]
async fn the_resource_and_the_variables_configure_the_exporter() {
    let setup = Setup::new();
    let (endpoint, received) = http_receiver(None).await;
    let upstream = support::echo_upstream("app", None).await;
    std::fs::write(setup.config_path(), setup.config(&config(&upstream.address.to_string(), ""))).unwrap();
    let traces = format!("{endpoint}/v1/traces");
    let env = [
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces.as_str()),
        ("OTEL_RESOURCE_ATTRIBUTES", "service.name=edge,deployment.environment=test"),
    ];
    let pomerium = Pomerium::spawn_with(&setup.config_path(), setup.pki.ca(), "serving", &env).await;
    let (status, id, _) = get(&pomerium, "app", &[]).await;
    assert_eq!(status, 200);
    received.span_of(&id).await;
    let resource = received.resources().remove(0);
    assert!(resource.contains(&("service.name".to_owned(), "edge".to_owned())), "{resource:?}");
    assert!(resource.contains(&("deployment.environment".to_owned(), "test".to_owned())), "{resource:?}");
}

/// `otel_traces_sampler_arg: 0`: no new trace is sampled (the upstream still gets a traceparent,
/// unsampled), but a sampled parent's decision is kept (parent-based, as Pomerium). Spans leave in
/// order, so once the parent's span arrived the earlier ones would have.
#[tokio::test]
async fn sampler_arg_zero_sends_nothing_but_a_sampled_parents_spans() {
    let setup = Setup::new();
    let (endpoint, received) = grpc_receiver().await;
    let upstream = support::echo_upstream("app", None).await;
    let otel = format!(
        "otel_traces_exporter: otlp\notel_exporter_otlp_endpoint: {endpoint}\notel_exporter_otlp_protocol: grpc\n\
         otel_traces_sampler_arg: 0\n"
    );
    let pomerium = setup.start(&config(&upstream.address.to_string(), &otel)).await;
    for _ in 0..5 {
        let (status, _, seen) = get(&pomerium, "app", &[]).await;
        assert_eq!(status, 200);
        let (_, _, flags) = parse_traceparent(&seen.unwrap());
        assert_eq!(flags, "00", "not sampled");
    }
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (_, id, _) = get(&pomerium, "app", &[("traceparent", incoming)]).await;
    received.span_of(&id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.spans().len(), 1, "only the sampled parent's request is exported");
}

/// `otel_traces_exporter: none` (the default): nothing is exported, and the upstream gets the
/// client's `traceparent` untouched.
#[tokio::test]
async fn exporter_none_sends_nothing() {
    let setup = Setup::new();
    let (endpoint, received) = grpc_receiver().await;
    let upstream = support::echo_upstream("app", None).await;
    let otel = format!("otel_traces_exporter: none\notel_exporter_otlp_endpoint: {endpoint}\n");
    let pomerium = setup.start(&config(&upstream.address.to_string(), &otel)).await;
    let (status, _, seen) = get(&pomerium, "app", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(seen, None, "no traceparent is made up");
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (_, _, seen) = get(&pomerium, "app", &[("traceparent", incoming)]).await;
    assert_eq!(seen.as_deref(), Some(incoming));
    // Five times the batch delay: a span would have been sent by then.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(received.spans().is_empty());
    assert!(received.headers.lock().unwrap().is_empty(), "no export at all");
}

/// A reload that turns tracing on starts the exporter (one per distinct `otel_*` settings): the
/// same process, with no restart, then traces requests.
#[tokio::test]
async fn a_reload_turns_tracing_on() {
    let setup = Setup::new();
    let (endpoint, received) = grpc_receiver().await;
    let upstream = support::echo_upstream("app", None).await;
    let mut pomerium = setup.start(&config(&upstream.address.to_string(), "")).await;
    let (status, _, seen) = get(&pomerium, "app", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(seen, None, "off by default");
    let otel = format!(
        "otel_traces_exporter: otlp\notel_exporter_otlp_endpoint: {endpoint}\notel_exporter_otlp_protocol: grpc\n"
    );
    setup.rewrite_config(&setup.config(&config(&upstream.address.to_string(), &otel)));
    pomerium.wait_for_log("configuration reloaded").await;
    let (status, id, seen) = get(&pomerium, "app", &[]).await;
    assert_eq!(status, 200);
    let (trace, _, _) = parse_traceparent(&seen.unwrap());
    assert_eq!(hex(&received.span_of(&id).await.trace_id), trace);
}

/// A collector over HTTPS is verified against the system's roots (`SSL_CERT_FILE` names them
/// here): untrusted, nothing is sent; trusted, the spans arrive.
#[tokio::test]
async fn an_https_collector_is_verified_against_the_system_roots() {
    let setup = Setup::new();
    let collector_pki = support::Pki::new("collector ca");
    let leaf = collector_pki.issue(&["localhost"]);
    let (endpoint, received) = http_receiver(Some(support::upstream_tls(&leaf, None))).await;
    let endpoint = endpoint.replace("http://127.0.0.1", "https://localhost");
    let upstream = support::echo_upstream("app", None).await;
    let otel = format!("otel_traces_exporter: otlp\notel_exporter_otlp_endpoint: {endpoint}\n");
    std::fs::write(setup.config_path(), setup.config(&config(&upstream.address.to_string(), &otel))).unwrap();
    let empty = setup.write("no-roots.pem", "");
    let roots = setup.write("collector-ca.pem", &collector_pki.ca_pem());
    let untrusting = Pomerium::spawn_with(
        &setup.config_path(),
        setup.pki.ca(),
        "serving",
        &[("SSL_CERT_FILE", empty.to_str().unwrap())],
    )
    .await;
    let (status, _, _) = get(&untrusting, "app", &[]).await;
    assert_eq!(status, 200);
    let trusting = Pomerium::spawn_with(
        &setup.config_path(),
        setup.pki.ca(),
        "serving",
        &[("SSL_CERT_FILE", roots.to_str().unwrap())],
    )
    .await;
    let (status, id, _) = get(&trusting, "app", &[]).await;
    assert_eq!(status, 200);
    received.span_of(&id).await;
    // Ten times the batch delay for the untrusting server's span, which must not come.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(received.spans().len(), 1, "only the trusting server's span arrives");
}
