//! OpenTelemetry export (cargo feature `otlp`): request spans go to an OTLP/HTTP
//! collector (protobuf) when `--otlp-endpoint` is given.
//!
//! Each request's span is parented on the W3C trace context of the request (or
//! on the trace id the server generated), so the exported trace id is the one
//! in the logs, in `x-trace-id` and in the audit records.
//!
//! Spans are batched on a background thread (the SDK's batch processor with a
//! blocking HTTP client), so export never slows a request; call
//! [`Exporter::shutdown`] at exit to flush.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The running exporter.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Flushes queued spans and stops the exporter (blocking; call outside async code).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: flushing OpenTelemetry spans failed: {e}");
        }
    }
}

/// Builds the exporter and the `tracing` layer that feeds it.
pub fn init<S>(
    endpoint: &str,
) -> Result<
    (
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
        Exporter,
    ),
    String,
>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("safemap").build())
        .build();
    let tracer = provider.tracer("safemap");
    Ok((
        tracing_opentelemetry::layer().with_tracer(tracer),
        Exporter { provider },
    ))
}

fn hex_to<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Parents `span` on the request's trace: its trace id, and the caller's span
/// id (or a fresh one when the server generated the trace id).
pub fn link_span(span: &tracing::Span, trace_id: &str, parent_id: Option<&str>) {
    let Some(tid) = hex_to::<16>(trace_id) else {
        return;
    };
    let sid = parent_id.and_then(hex_to::<8>).unwrap_or_else(|| {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        b[0] |= 1; // never the invalid all-zero id
        b
    });
    let sc = SpanContext::new(
        TraceId::from_bytes(tid),
        SpanId::from_bytes(sid),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
}
