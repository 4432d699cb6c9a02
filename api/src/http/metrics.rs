//! Prometheus metrics (`GET /metrics`, OpenMetrics text): HTTP requests by
//! route and status, request latency, GraphQL operations, appends to the
//! log, and projection lag (measured when scraped).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_trait::async_trait;
use custodia_application::{
    AppendError, AppendRequest, AppendSignal, Appended, ChainSummary, ChainVerdict,
    CommittedCommand, EventStore, StoreError, StoredSnapshot,
};
use custodia_domain::{ChainId, CommandId, LogCursor, RecordedEvent, StreamId, StreamVersion};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabels {
    projection: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    graphql: Family<OutcomeLabels, Counter>,
    appends: Family<OutcomeLabels, Counter>,
    events: Counter,
    lag: Family<ProjectionLabels, Gauge<f64, AtomicU64>>,
    skipped: Counter,
    resets_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("custodia");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        let graphql = Family::<OutcomeLabels, Counter>::default();
        let appends = Family::<OutcomeLabels, Counter>::default();
        let events = Counter::default();
        let lag = Family::<ProjectionLabels, Gauge<f64, AtomicU64>>::default();
        let skipped = Counter::default();
        let resets_dropped = Counter::default();
        registry.register(
            "password_reset_requests_dropped",
            "Password reset requests dropped because their queue was full",
            resets_dropped.clone(),
        );
        registry.register(
            "projection_skipped_events",
            "Events a projection skipped because it handles no event of their type",
            skipped.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        registry.register(
            "graphql_operations",
            "GraphQL operations by outcome",
            graphql.clone(),
        );
        registry.register(
            "appends",
            "Appends to the event log by outcome",
            appends.clone(),
        );
        registry.register(
            "events_appended",
            "Events appended to the log",
            events.clone(),
        );
        registry.register(
            "projection_lag_seconds",
            "Age of the oldest event a projection has not applied",
            lag.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            graphql,
            appends,
            events,
            lag,
            skipped,
            resets_dropped,
        }
    }
}

impl Metrics {
    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    pub fn reset_dropped(&self) {
        self.resets_dropped.inc();
    }

    pub fn graphql(&self, outcome: &'static str) {
        self.graphql.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn projection_lag(&self, projection: &'static str, seconds: f64) {
        self.lag
            .get_or_create(&ProjectionLabels { projection })
            .set(seconds);
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        self.skipped.inner().store(
            custodia_projections::skipped_events(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The event store, counting appends (and bumping `appended` as each
/// append returns, which invalidates the authentication cache).
pub struct MeteredStore {
    pub inner: Arc<dyn EventStore>,
    pub metrics: Arc<Metrics>,
    pub appended: Arc<std::sync::atomic::AtomicU64>,
}

impl MeteredStore {
    /// Counts an append's outcome (and its events when it succeeded).
    fn count(&self, result: Result<(), &AppendError>, events: u64) {
        let outcome = match result {
            Ok(()) => {
                self.appended
                    .fetch_add(1, std::sync::atomic::Ordering::Release);
                self.metrics.events.inc_by(events);
                "ok"
            }
            Err(AppendError::Conflict { .. }) => "conflict",
            Err(_) => "error",
        };
        self.metrics
            .appends
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

#[async_trait]
impl EventStore for MeteredStore {
    async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError> {
        let events = request.events().len() as u64;
        let result = self.inner.append(request).await;
        self.count(result.as_ref().map(drop), events);
        result
    }

    async fn append_atomic(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Appended>, AppendError> {
        let events = requests.iter().map(|r| r.events().len() as u64).sum();
        let result = self.inner.append_atomic(requests).await;
        self.count(result.as_ref().map(drop), events);
        result
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after: StreamVersion,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, after, limit).await
    }

    async fn read_all(
        &self,
        after: LogCursor,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, limit).await
    }

    async fn read_chain(
        &self,
        chain: ChainId,
        from: custodia_domain::ChainIndex,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_chain(chain, from, limit).await
    }

    async fn chains(&self) -> Result<Vec<ChainSummary>, StoreError> {
        self.inner.chains().await
    }

    async fn committed_command(
        &self,
        command_id: CommandId,
    ) -> Result<Option<CommittedCommand>, StoreError> {
        self.inner.committed_command(command_id).await
    }

    async fn verify_chain(
        &self,
        chain: ChainId,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<ChainVerdict, StoreError> {
        self.inner.verify_chain(chain, progress).await
    }

    async fn head(&self) -> Result<LogCursor, StoreError> {
        self.inner.head().await
    }

    async fn durability(&self) -> Result<custodia_application::Durability, StoreError> {
        self.inner.durability().await
    }

    fn append_signal(&self) -> AppendSignal {
        self.inner.append_signal()
    }

    async fn snapshot(&self, stream: &StreamId) -> Result<Option<StoredSnapshot>, StoreError> {
        self.inner.snapshot(stream).await
    }

    async fn save_snapshot(
        &self,
        snapshot: StoredSnapshot,
        replacing: Option<StreamVersion>,
    ) -> Result<(), StoreError> {
        self.inner.save_snapshot(snapshot, replacing).await
    }

    async fn drop_snapshots(&self) -> Result<u64, StoreError> {
        self.inner.drop_snapshots().await
    }
}
