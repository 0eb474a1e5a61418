//! Prometheus metrics (http-api.md, "Operations"), served by `GET /metrics`.
//!
//! Request counters and histograms are recorded per request through the
//! `metrics` facade; per-map figures (`safemap_entries`, `safemap_deletes_total`,
//! `safemap_breaker_open`) are read from the library's sharded statistics at
//! scrape time, so the hot path pays nothing for them.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::Shared;

/// Histogram buckets in seconds (1 ms .. 10 s).
pub const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder (installed on first use).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder is installed; /metrics shows only what reaches this one"
            );
        }
        describe();
        prime();
        handle
    })
}

/// Registers every server-wide family at zero, so the first scrape already
/// shows them (per-map families appear with their maps).
fn prime() {
    metrics::counter!("safemap_audit_records_total").increment(0);
    metrics::counter!("safemap_requests_total", "route" => "/metrics", "status" => "200")
        .increment(0);
    let _ = metrics::histogram!("safemap_request_duration_seconds", "route" => "/metrics");
    let _ = metrics::histogram!("safemap_fsync_duration_seconds");
}

fn describe() {
    metrics::describe_counter!(
        "safemap_requests_total",
        "HTTP requests by route and status"
    );
    metrics::describe_histogram!(
        "safemap_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request duration by route"
    );
    metrics::describe_gauge!("safemap_entries", "entries per map");
    metrics::describe_counter!(
        "safemap_deletes_total",
        "single-key and planned deletes by map and outcome"
    );
    metrics::describe_gauge!(
        "safemap_breaker_open",
        "1 while a map's delete breaker is open"
    );
    metrics::describe_counter!("safemap_audit_records_total", "audit records made durable");
    metrics::describe_histogram!(
        "safemap_fsync_duration_seconds",
        metrics::Unit::Seconds,
        "duration of one fdatasync of the write-ahead log (one group commit)"
    );
    metrics::describe_histogram!(
        "safemap_checkpoint_duration_seconds",
        metrics::Unit::Seconds,
        "duration of one fold of the write-ahead log into redb (background)"
    );
}

/// Publishes per-map figures and renders the text format.
pub fn render(st: &Shared) -> String {
    let h = handle();
    for (name, m) in st.all_maps() {
        let s = m.stats();
        metrics::gauge!("safemap_entries", "map" => name.clone()).set(s.entries as f64);
        for (outcome, n) in [
            ("deleted", s.deletes.deleted),
            ("vetoed", s.deletes.vetoed),
            ("mismatch", s.deletes.mismatch),
            ("breaker", s.deletes.breaker),
            ("not_found", s.deletes.not_found),
            ("referenced", s.deletes.referenced),
        ] {
            metrics::counter!("safemap_deletes_total", "map" => name.clone(), "outcome" => outcome)
                .absolute(n);
        }
        let open = m.breaker_state().is_some_and(|b| b.open);
        metrics::gauge!("safemap_breaker_open", "map" => name.clone()).set(if open {
            1.0
        } else {
            0.0
        });
    }
    h.render()
}
