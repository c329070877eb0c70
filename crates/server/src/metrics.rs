//! Prometheus metrics: requests and latency per route and status, cache hits and misses per
//! tier, pool gauges, and index sizes. Counters move as requests are served; gauges are read at
//! scrape time.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use reco_engine::{CacheStatus, Engine};
use reco_storage::Store;

/// The registry and its series.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    cache: IntCounterVec,
    pool: IntGaugeVec,
    entities: IntGaugeVec,
    interactions: IntGaugeVec,
    batch_sizes: Histogram,
    /// Per tenant: the served model's training seconds, its age, and its fold-ins.
    model: GaugeVec,
    /// Tenant loads by where their entities came from.
    loads: IntCounterVec,
    /// Per tenant: the graph's search breadth, and the recall measured at it.
    search: GaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("reco_http_requests_total", "HTTP requests served"),
            &["route", "method", "status"],
        )
        .expect("a valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("reco_http_request_duration_seconds", "HTTP request latency")
                .buckets(vec![
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            &["route", "method", "status"],
        )
        .expect("a valid metric");
        let cache = IntCounterVec::new(
            Opts::new(
                "reco_cache_requests_total",
                "Cache lookups by tier and level (memory is the engine's cache, redis the shared one)",
            ),
            &["tier", "level", "result"],
        )
        .expect("a valid metric");
        let pool = IntGaugeVec::new(
            Opts::new(
                "reco_db_pool_connections",
                "Database pool connections by state",
            ),
            &["state"],
        )
        .expect("a valid metric");
        let entities = IntGaugeVec::new(
            Opts::new("reco_index_entities", "Entities in memory, per tenant"),
            &["tenant"],
        )
        .expect("a valid metric");
        let interactions = IntGaugeVec::new(
            Opts::new(
                "reco_index_interactions",
                "Interactions recorded in memory, per tenant",
            ),
            &["tenant"],
        )
        .expect("a valid metric");
        let batch_sizes = Histogram::with_opts(
            HistogramOpts::new(
                "reco_batch_questions",
                "Questions answered per shared pass of the batcher",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .expect("a valid metric");
        let model = GaugeVec::new(
            Opts::new(
                "reco_model",
                "The served collaborative model, per tenant: training_seconds, age_seconds, and \
                 fold_ins (users folded in against it, restarting with each model)",
            ),
            &["tenant", "measure"],
        )
        .expect("a valid metric");
        let loads = IntCounterVec::new(
            Opts::new(
                "reco_tenant_loads_total",
                "Tenants loaded (at start, or again), by where their entities came from: `image` \
                 (the data folder's image, graph included) or `storage`",
            ),
            &["from"],
        )
        .expect("a valid metric");
        let search = GaugeVec::new(
            Opts::new(
                "reco_search",
                "Per tenant with a graph: `breadth` (how many candidates a search considers), and \
                 once enough questions were audited `recall` (the mean recall@k of graph \
                 questions re-answered exactly, at that breadth) and `recall_samples`",
            ),
            &["tenant", "measure"],
        )
        .expect("a valid metric");
        for collector in [
            Box::new(loads.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(search.clone()),
            Box::new(requests.clone()),
            Box::new(latency.clone()),
            Box::new(cache.clone()),
            Box::new(pool.clone()),
            Box::new(entities.clone()),
            Box::new(interactions.clone()),
            Box::new(batch_sizes.clone()),
            Box::new(model.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        Self {
            registry,
            requests,
            latency,
            cache,
            pool,
            entities,
            interactions,
            batch_sizes,
            model,
            loads,
            search,
        }
    }

    /// Counts a tenant's load, from its image or from storage.
    pub fn observe_load(&self, from_image: bool) {
        let from = if from_image { "image" } else { "storage" };
        self.loads.with_label_values(&[from]).inc();
    }

    /// The histogram of batch sizes, for the batcher to record into.
    pub fn batch_sizes(&self) -> Histogram {
        self.batch_sizes.clone()
    }

    /// Counts a request and its latency; `status` is the code's digits (`StatusCode::as_str`,
    /// which needs no allocation).
    pub fn observe_request(&self, route: &str, method: &str, status: &str, seconds: f64) {
        let labels = [route, method, status];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(seconds);
    }

    pub fn observe_cache(&self, tier: &str, level: &str, status: CacheStatus) {
        let result = match status {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
        };
        self.cache.with_label_values(&[tier, level, result]).inc();
    }

    /// The text exposition, with gauges read now; `recall_target` is the server's.
    pub fn render(&self, engine: &Engine, store: &Store, recall_target: f64) -> String {
        let pool = store.pool_stats();
        for (state, value) in [
            ("size", pool.size),
            ("idle", pool.idle),
            ("waiting", pool.waiting),
            ("max", pool.max),
        ] {
            self.pool.with_label_values(&[state]).set(i64::from(value));
        }
        self.entities.reset();
        self.interactions.reset();
        self.model.reset();
        self.search.reset();
        for tenant in engine.tenants() {
            let name = tenant.as_str();
            if let Ok(Some(breadth)) = engine.search_breadth(&tenant) {
                #[expect(clippy::cast_precision_loss, reason = "breadths are small")]
                let breadth = breadth as f64;
                self.search
                    .with_label_values(&[name, "breadth"])
                    .set(breadth);
                if let Ok(Some(estimate)) = engine.recall_estimate(&tenant, recall_target) {
                    #[expect(clippy::cast_precision_loss, reason = "at most a few hundred")]
                    let samples = estimate.samples as f64;
                    self.search
                        .with_label_values(&[name, "recall"])
                        .set(estimate.recall);
                    self.search
                        .with_label_values(&[name, "recall_samples"])
                        .set(samples);
                }
            }
            if let Ok(info) = engine.tenant_info(&tenant) {
                let name = tenant.as_str();
                self.entities
                    .with_label_values(&[name])
                    .set(i64::try_from(info.entities).unwrap_or(i64::MAX));
                self.interactions
                    .with_label_values(&[name])
                    .set(i64::try_from(info.interactions).unwrap_or(i64::MAX));
            }
            if let Ok(Some(model)) = engine.model_info(&tenant) {
                #[expect(
                    clippy::cast_precision_loss,
                    reason = "ages in milliseconds and counts of fold-ins are far below 2^52"
                )]
                let (age, fold_ins) = (
                    (engine.now() - model.trained_at) as f64 / 1000.0,
                    model.fold_ins as f64,
                );
                let name = tenant.as_str();
                for (measure, value) in [
                    ("training_seconds", model.seconds),
                    ("age_seconds", age),
                    ("fold_ins", fold_ins),
                ] {
                    self.model.with_label_values(&[name, measure]).set(value);
                }
            }
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}
