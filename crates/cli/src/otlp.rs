//! OTLP trace export (cargo feature `otlp`): every `tracing` span (HTTP requests with their request id, upstream
//! attempts, indexer batches) goes to the collector at `[telemetry] otlp_endpoint` over OTLP/HTTP (protobuf).

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// Flushes the spans not yet exported when dropped, at the end of `main`.
pub(crate) struct Guard(SdkTracerProvider);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(err) = self.0.shutdown() {
            eprintln!("OTLP export: flushing the last spans failed: {err}");
        }
    }
}

/// The layer exporting spans to `endpoint` (a collector's base URL; spans go to `/v1/traces`), batched on a
/// background thread so a slow collector never slows requests.
pub(crate) fn layer<S>(endpoint: &str) -> anyhow::Result<(impl Layer<S> + use<S>, Guard)>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
        .context("building the OTLP exporter (telemetry.otlp_endpoint)")?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("chainmux").build())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("chainmux"));
    Ok((layer, Guard(provider)))
}
