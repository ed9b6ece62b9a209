//! The OpenTelemetry exporter of the `otel_*` options: OTLP over gRPC (tonic) or HTTP
//! (protobuf, on our own hyper client), a batch span processor (`otel_bsp_*`), a parent-based
//! ratio sampler (`otel_traces_sampler_arg`) and the resource (`otel_resource_attributes`).
//!
//! One tracer provider per distinct settings: a reload that leaves the `otel_*` options alone
//! keeps the provider (and its queue); one that changes them starts a new provider and flushes
//! the old one. TLS to the collector is rustls on the workspace's provider (aws-lc-rs), verified
//! against the system's roots.

use bytes::Bytes;
use config::otel::{OtelOptions, OtlpExporter, OtlpProtocol};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The largest answer read from a collector.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The tracer provider of the settings now in force.
#[derive(Debug, Default)]
pub struct Telemetry {
    current: Mutex<Option<Current>>,
}

#[derive(Debug)]
struct Current {
    options: OtelOptions,
    provider: Option<SdkTracerProvider>,
    tracing: Option<proxy::trace::Tracing>,
}

impl Telemetry {
    /// The tracing for `options`: the current one when they have not changed, else a new
    /// provider (the old one is flushed and shut down in the background). `None` when tracing
    /// is off. Must be called in the server's runtime (exports run on it).
    pub fn tracing(&self, options: &OtelOptions) -> Result<Option<proxy::trace::Tracing>, String> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = current.as_ref().filter(|c| c.options == *options) {
            return Ok(current.tracing.clone());
        }
        let provider = options.exporter.as_ref().map(|exporter| provider(options, exporter)).transpose()?;
        let tracing = provider
            .as_ref()
            .map(|p| proxy::trace::Tracing::new(p.tracer("pomerium"), options.attribute_value_length_limit));
        if let Some(exporter) = &options.exporter {
            tracing::info!(
                host = exporter.endpoint.host_str().unwrap_or_default(),
                port = exporter.endpoint.port_or_known_default(),
                protocol = ?exporter.protocol,
                sampler_arg = options.sampler_arg,
                "exporting traces"
            );
        }
        let old = current.replace(Current { options: options.clone(), provider, tracing: tracing.clone() });
        if let Some(old) = old.and_then(|old| old.provider) {
            // A shutdown flushes what is queued, which blocks: not on the runtime's threads.
            std::thread::spawn(move || shutdown(&old));
        }
        Ok(tracing)
    }

    /// Exports what is queued and stops (at the server's end), within a bounded time.
    pub async fn shutdown(&self) {
        let provider = self.current.lock().unwrap_or_else(PoisonError::into_inner).take().and_then(|c| c.provider);
        if let Some(provider) = provider {
            let flushing = tokio::task::spawn_blocking(move || shutdown(&provider));
            let _ = tokio::time::timeout(Duration::from_secs(10), flushing).await;
        }
    }
}

fn shutdown(provider: &SdkTracerProvider) {
    if let Err(error) = provider.shutdown_with_timeout(Duration::from_secs(5)) {
        tracing::warn!(%error, "the trace exporter did not shut down cleanly");
    }
}

fn provider(options: &OtelOptions, exporter: &OtlpExporter) -> Result<SdkTracerProvider, String> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "otel: the trace exporter needs the server's runtime".to_owned())?;
    let inner = match exporter.protocol {
        OtlpProtocol::Grpc => grpc_exporter(exporter)?,
        OtlpProtocol::HttpProtobuf => http_exporter(exporter)?,
    };
    let exporter = OnRuntime { inner: Arc::new(inner), runtime };
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(options.bsp_schedule_delay)
        .with_max_export_batch_size(options.bsp_max_export_batch_size)
        .build();
    let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batch).build();
    let mut attributes: Vec<KeyValue> =
        options.resource_attributes.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
    if !options.resource_attributes.iter().any(|(k, _)| k == "service.name") {
        attributes.push(KeyValue::new("service.name", "pomerium"));
    }
    let resource = Resource::builder_empty().with_attributes(attributes).build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(options.sampler_arg))))
        .with_resource(resource)
        .build())
}

fn tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(certificate);
    }
    Ok(rustls::ClientConfig::builder_with_provider(proxy::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("otel: tls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn grpc_exporter(exporter: &OtlpExporter) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let url = exporter.endpoint.as_str();
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("otel_exporter_otlp_endpoint: not a grpc endpoint: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(exporter.timeout);
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let channel = if exporter.endpoint.scheme() == "https" {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?)
            .https_only()
            .enable_http2()
            .wrap_connector(http);
        endpoint.connect_with_connector_lazy(connector)
    } else {
        endpoint.connect_with_connector_lazy(http)
    };
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (name, value) in &exporter.headers {
        let name = tonic::metadata::MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("otel_exporter_otlp_headers: `{name}` is not a header name"))?;
        let value = value
            .expose_str()
            .unwrap_or_default()
            .parse()
            .map_err(|_| format!("otel_exporter_otlp_headers: the value of `{name}` is not a header value"))?;
        metadata.insert(name, value);
    }
    opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_channel(channel)
        .with_metadata(metadata)
        .with_timeout(exporter.timeout)
        .build()
        .map_err(|e| format!("otel: the grpc exporter: {e}"))
}

fn http_exporter(exporter: &OtlpExporter) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config()?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client =
        HyperClient { client: Client::builder(TokioExecutor::new()).build(connector), timeout: exporter.timeout };
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(exporter.endpoint.as_str())
        .with_headers(
            exporter
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.expose_str().unwrap_or_default().to_owned()))
                .collect(),
        )
        .with_timeout(exporter.timeout)
        .build()
        .map_err(|e| format!("otel: the http exporter: {e}"))
}

/// OTLP over HTTP on hyper and rustls (aws-lc-rs): every request bounded in time, every answer
/// in size.
#[derive(Debug, Clone)]
struct HyperClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for HyperClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let request = request.map(Full::new);
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES).collect().await?.to_bytes();
            Ok::<_, opentelemetry_http::HttpError>(http::Response::from_parts(parts, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("the collector did not answer within {:?}", self.timeout))?
    }
}

/// Runs each export on the server's runtime: the batch processor calls the exporter from its
/// own thread, and the clients (tonic, hyper) need a Tokio runtime to do I/O and keep time.
#[derive(Debug)]
struct OnRuntime {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
}

impl SpanExporter for OnRuntime {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = Arc::clone(&self.inner);
        match self.runtime.spawn(async move { inner.export(batch).await }).await {
            Ok(result) => result,
            Err(error) => Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(error.to_string())),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}
