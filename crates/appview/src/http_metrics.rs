//! HTTP metrics of the public listener: request counts by XRPC method and status code, and
//! latency histograms by method, kept in a `metrics-exporter-prometheus` recorder owned by
//! the state (not the process-global recorder, so several routers in one process, as in
//! tests, keep their own figures) and rendered on the admin listener's `/metrics`.
//!
//! Labels are bounded: the method label is one of [`METHODS`] or `other` (any path a client
//! makes up), and the status label is a three-digit code.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Key, Label, Level, Metadata, Recorder as _, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Name of the request counter.
pub const REQUESTS: &str = "guildhall_http_requests_total";
/// Name of the latency histogram (seconds).
pub const DURATION: &str = "guildhall_http_request_duration_seconds";

/// Name of the counter of refused service-auth tokens, by XRPC error name.
pub const AUTH_FAILURES: &str = "guildhall_service_auth_failures_total";

/// Paths with a method label of their own (any other path counts as `other`).
pub const METHODS: &[(&str, &str)] = &[
    (
        "/xrpc/dev.guildhall.searchServices",
        "dev.guildhall.searchServices",
    ),
    ("/xrpc/dev.guildhall.getService", "dev.guildhall.getService"),
    (
        "/xrpc/dev.guildhall.getOperator",
        "dev.guildhall.getOperator",
    ),
    (
        "/xrpc/dev.guildhall.getTrustPath",
        "dev.guildhall.getTrustPath",
    ),
    (
        "/xrpc/dev.guildhall.listEndorsements",
        "dev.guildhall.listEndorsements",
    ),
    (
        "/xrpc/dev.guildhall.listCapabilities",
        "dev.guildhall.listCapabilities",
    ),
    (
        "/xrpc/dev.guildhall.ledger.getBalance",
        "dev.guildhall.ledger.getBalance",
    ),
    (
        "/xrpc/dev.guildhall.ledger.listTransfers",
        "dev.guildhall.ledger.listTransfers",
    ),
    (
        "/xrpc/dev.guildhall.ledger.transfer",
        "dev.guildhall.ledger.transfer",
    ),
    ("/xrpc/_health", "_health"),
    ("/.well-known/did.json", "did.json"),
];

/// Histogram buckets, seconds: from a cache hit to the request timeout.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The recorder and its renderer.
pub struct HttpMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpMetrics")
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    /// An empty set of HTTP metrics.
    pub fn new() -> Self {
        // Only fails for an empty bucket list; without buckets the exporter would fall back
        // to a summary.
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DURATION.to_owned()), BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        recorder.describe_counter(
            REQUESTS.into(),
            None,
            "HTTP requests answered by the public listener, by XRPC method and status code.".into(),
        );
        recorder.describe_histogram(
            DURATION.into(),
            Some(Unit::Seconds),
            "Time to answer an HTTP request on the public listener, by XRPC method.".into(),
        );
        recorder.describe_counter(
            AUTH_FAILURES.into(),
            None,
            "Service-auth tokens refused, by XRPC error name (BadJwt includes issuers whose DID does not resolve).".into(),
        );
        Self { recorder, handle }
    }

    /// Counts one refused service-auth token (`reason`: its XRPC error name, a bounded set).
    pub fn auth_failure(&self, reason: &'static str) {
        let key = Key::from_parts(
            AUTH_FAILURES,
            vec![Label::from_static_parts("reason", reason)],
        );
        self.recorder.register_counter(&key, &METADATA).increment(1);
    }

    /// The method label of a request path.
    pub fn method_label(path: &str) -> &'static str {
        METHODS
            .iter()
            .find(|(p, _)| *p == path)
            .map_or("other", |(_, m)| m)
    }

    /// Counts one answered request.
    pub fn observe(&self, method: &'static str, status: u16, seconds: f64) {
        let counter = Key::from_parts(
            REQUESTS,
            vec![
                Label::from_static_parts("method", method),
                Label::new("status", status.to_string()),
            ],
        );
        self.recorder
            .register_counter(&counter, &METADATA)
            .increment(1);
        let hist = Key::from_parts(DURATION, vec![Label::from_static_parts("method", method)]);
        self.recorder
            .register_histogram(&hist, &METADATA)
            .record(seconds);
    }

    /// The Prometheus text exposition (format 0.0.4) of these metrics.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

/// Middleware: times every request and counts its answer.
pub async fn track(State(m): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
    let method = HttpMetrics::method_label(req.uri().path());
    let start = Instant::now();
    let res = next.run(req).await;
    m.observe(method, res.status().as_u16(), start.elapsed().as_secs_f64());
    res
}
